"""The external protocol of the Study (notebook 09): sites held out, contexts, prediction folder, provenance.

Everything runs on an in-memory prepared cohort (no DICOM); training is replaced by a stub where a run is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_factory import memory_cohort

from pdstudy.core.methods import Method
from pdstudy.core.params import STUDY_PARAMETERS, load_profile
from pdstudy.core.rundir import run_dir
from pdstudy.core.vocab import EXTERNAL_SPLIT, PREDICTION_SPLITS
from pdstudy.data import cohort as cohort_module
from pdstudy.data.cohort import Cohort
from pdstudy.data.predictions import PREDICTION_COLUMNS, read_predictions, validate_predictions
from pdstudy.data.splits import LeakageError, carve_validation
from pdstudy.learn.distill import ChainResult, ModelSettings, StageResult, stage_key, stage_predictions
from pdstudy.learn.train import TrainConfig
from pdstudy.study import protocol
from pdstudy.study.protocol import PROTOCOLS, Study, check_test_sites

SITES = {"A": 30, "B": 24, "C": 18}
SHORT = {"B001": 4, "C002": 3}  # cached slices of a few patients (default 12)


def site_cohort(root: Path, *, sites: dict[str, int] | None = None, with_site: bool = True,
                shared: dict[str, str] | None = None) -> Cohort:
    """A prepared cohort in memory: per site, every third patient poor, the last quarter in the manifest's test."""
    rows = []
    for site, n in (sites or SITES).items():
        for i in range(n):
            poor = i % 3 == 0
            rows.append({"patient_id": f"{site}{i:03d}", "split": "test" if i >= n - n // 4 else "train",
                         "response": "poor" if poor else "good", "recist": "PD" if poor else "CR",
                         "dicom_dir": f"{site}{i:03d}", "site": site})
    manifest = pd.DataFrame(rows)
    if not with_site:
        manifest = manifest.drop(columns="site")
    return memory_cohort(root, manifest, slices=SHORT, shared=shared, z_step=-5.0, meta={"pixel_mm": 6.0})


def study(tmp_path: Path, cohort: Cohort, **over) -> Study:
    kw = dict(seeds=(0, 1), protocol="external", val_fraction=0.2, top_k=10, split_seed=0)
    kw.update(over)
    return Study(cohort=cohort, rundir=run_dir(tmp_path / "run"), train_cfg=TrainConfig(),
                 settings=ModelSettings(stand_ins=True), stage_root=tmp_path / "stages", progress=False, **kw)


def _site_of(cohort: Cohort) -> dict[str, str]:
    return dict(zip(cohort.manifest["patient_id"], cohort.manifest["site"]))


# ---------------------------------------------------------------- splits and contexts


def test_protocols_and_the_notebook_choice():
    assert PROTOCOLS == ("fixed", "cv", "external")
    assert load_profile("quick")["protocol"] in PROTOCOLS[:2]  # notebooks 02-08 never choose external


def test_leave_one_site_out_holds_out_each_site_in_turn(tmp_path):
    cohort = site_cohort(tmp_path)
    s = study(tmp_path, cohort)
    assert s.held_out_sites() == [("A",), ("B",), ("C",)]
    splits = s.splits()
    assert [(fold, repeat) for _, fold, repeat in splits] == [(0, 0), (1, 0), (2, 0)]
    site_of = _site_of(cohort)
    manifest_split = dict(zip(cohort.manifest["patient_id"], cohort.manifest["split"]))
    for (patients, _, _), held in zip(splits, s.held_out_sites()):
        at_held = patients["patient_id"].map(site_of).isin(held)
        assert (patients.loc[at_held, "split"] == EXTERNAL_SPLIT).all()
        assert not patients.loc[~at_held, "split"].eq(EXTERNAL_SPLIT).any()
        internal = patients.loc[~at_held & patients["patient_id"].map(manifest_split).eq("test"), "split"]
        assert (internal == "test").all() and len(internal) > 0
        assert patients.loc[~at_held, "split"].eq("val").sum() > 0  # carved from the training sites only
        assert set(patients["patient_id"]) == set(cohort.manifest["patient_id"])
    contexts = list(s.contexts())
    assert [(c.seed, c.fold, c.repeat) for c in contexts] == [(seed, f, 0) for seed in (0, 1) for f in range(3)]
    keys = {stage_key(c, "efficientnet_b0", noisy=False, upstream_sha=None) for c in contexts}
    assert len(keys) == len(contexts)  # every fold and seed trains its own stages


def test_given_test_sites_are_one_fold_and_the_same_patients_for_every_seed(tmp_path):
    s = study(tmp_path, site_cohort(tmp_path), test_sites=("C", "B"))
    assert s.test_sites == ("B", "C") and s.held_out_sites() == [("B", "C")]
    contexts = list(s.contexts())
    assert [(c.seed, c.fold) for c in contexts] == [(0, 0), (1, 0)]
    assert contexts[0].patients.equals(contexts[1].patients)
    ext = contexts[0].patients.loc[contexts[0].patients["split"] == EXTERNAL_SPLIT, "patient_id"]
    assert ext.str[0].isin(["B", "C"]).all() and len(ext) == SITES["B"] + SITES["C"]
    assert "test sites: ['B', 'C']" in s.describe()


def test_fixed_and_cv_are_unchanged_by_a_site_column(tmp_path):
    with_site, without = site_cohort(tmp_path), site_cohort(tmp_path, with_site=False)
    for proto in ("fixed", "cv"):
        a = study(tmp_path, with_site, protocol=proto, cv_folds=3, cv_repeats=1).splits()
        b = study(tmp_path, without, protocol=proto, cv_folds=3, cv_repeats=1).splits()
        assert all(x[0].equals(y[0]) and x[1:] == y[1:] for x, y in zip(a, b))
        assert list(a[0][0].columns) == ["patient_id", "split", "response", "recist"]
    base = with_site.patients()[["patient_id", "split", "response", "recist"]]
    assert study(tmp_path, with_site, protocol="fixed").splits()[0][0].equals(
        carve_validation(base, 0.2, seed=0, groups={}))
    fixed = study(tmp_path, with_site, protocol="fixed")
    assert fixed.held_out_sites() == [] and fixed.predictions_dir == fixed.rundir.predictions


def test_the_stage_key_hashes_train_and_val_patients_only(tmp_path):
    """Scoring external patients too must not change the key of a fixed-split stage."""
    s = study(tmp_path, site_cohort(tmp_path, with_site=False), protocol="fixed")
    ctx = next(s.contexts())
    relabelled = ctx.patients.assign(split=ctx.patients["split"].replace("test", EXTERNAL_SPLIT))
    other = type(ctx)(**{**ctx.__dict__, "patients": relabelled})
    key = stage_key(ctx, "efficientnet_b0", noisy=False, upstream_sha=None)
    assert stage_key(other, "efficientnet_b0", noisy=False, upstream_sha=None) == key
    moved = ctx.patients.assign(split=ctx.patients["split"].replace("val", "train"))
    assert stage_key(type(ctx)(**{**ctx.__dict__, "patients": moved}), "efficientnet_b0", noisy=False,
                     upstream_sha=None) != key


def test_stage_predictions_score_every_patient_of_the_context(tmp_path):
    s = study(tmp_path, site_cohort(tmp_path), test_sites=("C",))
    ctx = next(s.contexts())
    rng = np.random.default_rng(0)
    probs = {int(r): float(p) for r, p in zip(ctx.prepared.index.index, rng.uniform(size=len(ctx.prepared.index)))}
    stage = StageResult("k", tmp_path, tmp_path / "final.pt", "", probs, 0.0, True, {"arch": "efficientnet_b0"})
    preds = stage_predictions(ctx, stage, Method("baseline", ("efficientnet_b0",)), 0)
    assert list(preds.columns) == list(PREDICTION_COLUMNS)
    assert sorted(preds["patient_id"]) == sorted(ctx.patients["patient_id"])
    assert set(preds["split"]) == set(PREDICTION_SPLITS)
    ext = preds[preds["split"] == EXTERNAL_SPLIT]
    assert ext["patient_id"].str.startswith("C").all() and len(ext) == SITES["C"]
    c002 = preds.set_index("patient_id").loc["C002"]
    rows = ctx.prepared.patient_slices("C002")
    assert c002["n_slices"] == 3 and c002["score"] == pytest.approx(np.mean([probs[r] for r in rows]))
    validate_predictions(preds)


def test_top_k_short_lists_external_patients(tmp_path):
    s = study(tmp_path, site_cohort(tmp_path))
    short = s.top_k_short()
    assert set(short["patient_id"]) == set(SHORT)
    # B001 is external in fold 1 and train/val/test elsewhere; external sorts after the other splits
    b = short[short["patient_id"] == "B001"]["split"].tolist()
    assert b[-1] == EXTERNAL_SPLIT and len(b) == len(set(b)) >= 2


# ---------------------------------------------------------------- errors before any training


def test_single_site_and_unknown_sites_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['site'\]"):
        study(tmp_path, site_cohort(tmp_path, with_site=False)).splits()
    with pytest.raises(ValueError, match=r"at least 2 sites, the cohort has 1 \('A'\)"):
        study(tmp_path, site_cohort(tmp_path, sites={"A": 30})).held_out_sites()
    with pytest.raises(ValueError, match=r"test_sites names unknown site\(s\) \['D'\]"):
        study(tmp_path, site_cohort(tmp_path), test_sites=("D",)).splits()
    with pytest.raises(ValueError, match="holds out every site"):
        study(tmp_path, site_cohort(tmp_path), test_sites=("A", "B", "C")).run([], section="x")
    assert not (tmp_path / "stages").exists()


@pytest.mark.parametrize(("over", "message"), [
    (dict(protocol="loso"), r"protocol must be one of \['fixed', 'cv', 'external'\], got 'loso'"),
    (dict(test_sites="B"), "test_sites must be a list of site codes"),
    (dict(test_sites=("St Mary",)), "test_sites must be a list of site codes"),
    (dict(protocol="fixed", test_sites=("B",)), "applies to protocol 'external' only"),
])
def test_bad_protocol_or_test_sites_name_the_parameter(tmp_path, over, message):
    with pytest.raises(ValueError, match=message):
        study(tmp_path, site_cohort(tmp_path), **over)


def test_check_test_sites():
    assert check_test_sites(None) == () and check_test_sites([]) == ()
    assert check_test_sites(["C", "A", "C"]) == ("A", "C")
    assert check_test_sites([], protocol="fixed") == ()


@pytest.mark.filterwarnings("ignore::pdstudy.data.splits.DuplicatePatientWarning")  # the pair shares a split
def test_the_same_person_at_a_held_out_and_a_training_site_is_leakage(tmp_path):
    cohort = site_cohort(tmp_path, shared={"C003": "A004"})  # one study under two IDs at two sites
    with pytest.raises(LeakageError, match="held-out site"):
        study(tmp_path, cohort).splits()
    # holding out B only: both are training patients (manifest train), kept on one side of the carve
    patients = study(tmp_path, cohort, test_sites=("B",)).splits()[0][0].set_index("patient_id")
    assert patients.loc["C003", "split"] == patients.loc["A004", "split"]


# ---------------------------------------------------------------- a run, training stubbed


def _stub_run_method(ctx, method):
    p = ctx.patients
    preds = pd.DataFrame({"patient_id": p["patient_id"], "split": p["split"], "response": p["response"],
                          "recist": p["recist"], "score": 0.5, "method": method.id, "stage": 0, "seed": ctx.seed,
                          "fold": ctx.fold, "repeat": ctx.repeat, "n_slices": 12}, columns=list(PREDICTION_COLUMNS))
    return ChainResult(method, [], preds, 0.0)


def test_run_writes_external_predictions_apart_and_records_the_held_out_sites(tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "run_method", _stub_run_method)
    s = study(tmp_path, site_cohort(tmp_path), seeds=(0,))
    assert s.predictions_dir == s.rundir.predictions / "external"
    results = s.run([Method("baseline", ("efficientnet_b0",))], section="09_external")
    assert len(results) == 3
    assert read_predictions(s.rundir.predictions).empty  # Tables 2-4 never see them
    preds = read_predictions(s.predictions_dir)
    assert sorted(preds["fold"].unique()) == [0, 1, 2]
    for fold, held in enumerate(s.held_out_sites()):
        f = preds[preds["fold"] == fold]
        assert set(f.loc[f["split"] == EXTERNAL_SPLIT, "patient_id"].str[0]) == set(held)
    record = json.loads(s.rundir.provenance.read_text())["sections"]["09_external"]
    assert record["protocol"] == "external"
    assert record["external"] == {"test_sites": [], "held_out_sites": [["A"], ["B"], ["C"]]}
    assert (s.rundir.tables / "top_k_short.csv").exists()


def test_from_parameters_passes_the_site_parameters_and_reads_test_sites(tmp_path, monkeypatch):
    seen = {}

    def fake_load_cohort(manifest, data_dir, **kwargs):
        seen.update(kwargs)
        return site_cohort(tmp_path)

    monkeypatch.setattr(cohort_module, "load_cohort", fake_load_cohort)
    quick = load_profile("quick")
    params = {k: quick[k] for k in STUDY_PARAMETERS if k in quick}
    params.update(run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), manifest="", protocol="external",
                  synth_sites=3, synth_site_shift=0.5, synth_site_poor=2.0, test_sites=["B"])
    s = Study.from_parameters(params, progress=False)
    assert (seen["synth_sites"], seen["synth_site_shift"], seen["synth_site_poor"]) == (3, 0.5, 2.0)
    assert s.protocol == "external" and s.test_sites == ("B",) and s.held_out_sites() == [("B",)]
    del params["test_sites"]  # optional: leave-one-site-out
    assert Study.from_parameters(params, progress=False).held_out_sites() == [("A",), ("B",), ("C",)]
    with pytest.raises(ValueError, match="test_sites must be a list of site codes"):
        Study.from_parameters({**params, "test_sites": "B"}, progress=False)
