"""The clinical-fusion section on an in-memory cohort (the synthetic plan, no DICOM) and fake prediction files:
the Study's own splits, the baseline chosen on validation, the written table and figure, their checks."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.special import expit  # noqa: E402

from pdstudy.core.rundir import run_dir  # noqa: E402
from pdstudy.data.cache import PreparedCohort  # noqa: E402
from pdstudy.data.cohort import Cohort  # noqa: E402
from pdstudy.data.synth import plan_cohort  # noqa: E402
from pdstudy.evaluate import FUSION_PD_MODEL  # noqa: E402
from pdstudy.learn.distill import ModelSettings  # noqa: E402
from pdstudy.learn.train import TrainConfig  # noqa: E402
from pdstudy.study.fusion import (  # noqa: E402
    FUSION_SECTION,
    check_fusion_outputs,
    clinical_fusion_section,
    fusion_methods,
    record_clinical_fusion,
    write_clinical_fusion,
)
from pdstudy.study.protocol import Study  # noqa: E402

BASELINES = ["efficientnet_b0", "efficientnet_b7"]
SEPARATION = {FUSION_PD_MODEL: 1.5, "baseline:efficientnet_b0": 0.2, "baseline:efficientnet_b7": 1.2}


def planned_study(tmp_path: Path, protocol: str) -> Study:
    plan = plan_cohort()
    inc = plan[plan["split"] != ""].reset_index(drop=True)
    ids = inc["patient_id"].tolist()
    qc = pd.DataFrame({"patient_id": ids, "status": "included", "reason": "", "n_slices": 12,
                       "study_key": [f"s-{p}" for p in ids], "pixel_key": [f"p-{p}" for p in ids]})
    index = pd.DataFrame({"patient_id": np.repeat(ids, 12), "slice": np.tile(np.arange(12), len(ids))})
    index["z_mm"] = index["slice"] * 5.0
    prepared = PreparedCohort(root=tmp_path / "cache", images=np.zeros((len(index), 4, 4), np.uint8), index=index,
                              qc=qc, meta={"manifest_sha256": "0" * 64})
    cohort = Cohort(manifest_path=tmp_path / "manifest.csv", manifest=plan, prepared=prepared, synthetic=True)
    return Study(cohort=cohort, rundir=run_dir(tmp_path / "run"), train_cfg=TrainConfig(),
                 settings=ModelSettings(stand_ins=True), stage_root=tmp_path / "stages", progress=False,
                 protocol=protocol, cv_folds=3, cv_repeats=1, val_fraction=0.2, split_seed=0, seeds=(0, 1))


def fake_predictions(study: Study) -> pd.DataFrame:
    """Prediction rows of the section's methods on the study's own splits, final stage, two seeds."""
    frames = []
    for k, method in enumerate(fusion_methods(BASELINES)):
        for patients, fold, repeat in study.splits():
            for seed in study.seeds:
                y = (patients["response"] == "poor").to_numpy(dtype=float)
                z = np.random.default_rng([k, seed, fold + 1]).normal(size=len(y))
                sep = SEPARATION[method.id]
                frames.append(patients.assign(score=expit(sep * y + z - sep / 2), method=method.id,
                                              stage=method.final_stage, seed=seed, fold=fold, repeat=repeat))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("protocol", ["fixed", "cv"])
def test_section_writes_a_checked_table_and_figure(tmp_path, protocol):
    study = planned_study(tmp_path, protocol)
    section = clinical_fusion_section(study, fake_predictions(study), baselines=BASELINES)
    assert section.baseline.id == "baseline:efficientnet_b7" and section.selection["chosen"].sum() == 1
    assert section.result.protocol == protocol and section.result.ct_methods == (FUSION_PD_MODEL, section.baseline.id)
    n_test = 28 if protocol == "fixed" else 140
    assert (section.table["n_test"] == n_test).all() and len(section.table) == 5
    assert "chosen on validation" in section.notes[0]
    name = "clinical_fusion" if protocol == "fixed" else "clinical_fusion_cv"
    write_clinical_fusion(section, study.rundir, name=name)
    assert check_fusion_outputs(study.rundir, section, name=name) == []
    md = (study.rundir.tables / f"{name}.md").read_text()
    assert "Fusion: Progressive Distill (B7>B7>B7) + clinical" in md and section.notes[0] in md
    record_clinical_fusion(study.rundir, section, params={"auc_ci": "logit"})
    prov = json.loads((study.rundir.root / "provenance.json").read_text())
    assert prov["sections"][FUSION_SECTION]["ct_methods"] == list(section.result.ct_methods)
    (study.rundir.figures / f"{name}.png").write_bytes(b"")
    assert check_fusion_outputs(study.rundir, section, name=name) != []
