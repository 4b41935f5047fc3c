"""The Study's splits come from ``split_seed``, never from a training seed: every training seed trains, validates
and tests on the same patients, so the seed ensemble keeps every validation patient. Also: same-person groups in
the CV folds, the ``split_seed`` parameter, and the ``top_k_short`` table. No training anywhere in this file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cohort_factory import memory_cohort

from pdstudy.core.params import STUDY_PARAMETERS, load_profile
from pdstudy.core.rundir import run_dir
from pdstudy.data.cohort import Cohort
from pdstudy.data.splits import carve_validation, same_patient_keys, same_person_groups, stratified_folds
from pdstudy.evaluate import choose_threshold, method_scores
from pdstudy.learn.distill import ModelSettings
from pdstudy.learn.train import TrainConfig
from pdstudy.stats import recalibrate
from pdstudy.study.protocol import TOP_K_SHORT_COLUMNS, Study, check_split_seed, study_configs, top_k_short

SEEDS = (0, 1, 2)
METHOD = "baseline:efficientnet_b0"


def fake_cohort(root: Path, *, n: int = 60, n_test: int = 14, slices: dict[str, int] | None = None,
                shared: dict[str, str] | None = None) -> Cohort:
    """An in-memory prepared cohort (no DICOM): ``n`` patients, the last ``n_test`` in test, every third poor.

    ``slices`` overrides the cached slice count (default 12) of some patients; ``shared`` gives some patients
    the study_key of another (``{patient: other}``), i.e. the same person under two IDs.
    """
    ids = [f"P{i:03d}" for i in range(n)]
    poor = [i % 3 == 0 for i in range(n)]
    manifest = pd.DataFrame({"patient_id": ids, "split": ["test" if i >= n - n_test else "train" for i in range(n)],
                             "response": ["poor" if p else "good" for p in poor],
                             "recist": ["PD" if p else "CR" for p in poor], "dicom_dir": ids})
    return memory_cohort(root, manifest, slices=slices, shared=shared)


def fake_study(tmp_path: Path, cohort: Cohort, **over) -> Study:
    kw = dict(seeds=SEEDS, protocol="fixed", val_fraction=0.2, cv_folds=3, cv_repeats=2, top_k=10, split_seed=0)
    kw.update(over)
    return Study(cohort=cohort, rundir=run_dir(tmp_path / "run"), train_cfg=TrainConfig(),
                 settings=ModelSettings(stand_ins=True), stage_root=tmp_path / "stages", progress=False, **kw)


def _ids(ctx, split: str) -> list[str]:
    return sorted(ctx.patients.loc[ctx.patients["split"] == split, "patient_id"])


# ---------------------------------------------------------------- the same patients for every training seed


@pytest.mark.parametrize("protocol", ["fixed", "cv"])
def test_every_training_seed_gets_the_same_splits(tmp_path, protocol):
    study = fake_study(tmp_path, fake_cohort(tmp_path), protocol=protocol)
    contexts = list(study.contexts())
    per_seed = 1 if protocol == "fixed" else study.cv_folds * study.cv_repeats
    assert len(contexts) == len(SEEDS) * per_seed
    assert [c.seed for c in contexts] == [s for s in SEEDS for _ in range(per_seed)]
    by_seed = {s: [c for c in contexts if c.seed == s] for s in SEEDS}
    for s in SEEDS[1:]:
        for a, b in zip(by_seed[SEEDS[0]], by_seed[s]):
            assert (a.fold, a.repeat) == (b.fold, b.repeat)
            for split in ("train", "val", "test"):
                assert _ids(a, split) == _ids(b, split), (protocol, s, a.fold, a.repeat, split)
            assert _ids(a, "val"), "a validation set is carved"


def test_split_seed_zero_keeps_the_old_seed_zero_splits(tmp_path):
    cohort = fake_cohort(tmp_path)
    base = cohort.patients()[["patient_id", "split", "response", "recist"]]
    # Fixed split: the carve the old code made for training seed 0.
    fixed = next(fake_study(tmp_path, cohort, seeds=(0,)).contexts())
    expected = carve_validation(base, 0.2, seed=0).reset_index(drop=True)
    pd.testing.assert_frame_equal(fixed.patients, expected)
    # CV: folds seeded with 0 and carves seeded with 0 * 1000 + repeat * 100 + fold, as the old code did for seed 0.
    cv = list(fake_study(tmp_path, cohort, seeds=(0,), protocol="cv").contexts())
    pooled = base.assign(split="train")
    for ctx in cv:
        fold = stratified_folds(pooled, 3, seed=0, repeat=ctx.repeat)[ctx.fold]
        old = carve_validation(fold, 0.2, seed=ctx.repeat * 100 + ctx.fold).reset_index(drop=True)
        pd.testing.assert_frame_equal(ctx.patients, old)


@pytest.mark.parametrize("protocol", ["fixed", "cv"])
def test_split_seed_moves_the_splits_for_every_training_seed_alike(tmp_path, protocol):
    cohort = fake_cohort(tmp_path)
    a = list(fake_study(tmp_path, cohort, protocol=protocol, split_seed=0).contexts())
    b = list(fake_study(tmp_path, cohort, protocol=protocol, split_seed=5).contexts())
    assert any(_ids(x, "val") != _ids(y, "val") for x, y in zip(a, b))
    vals = {tuple(_ids(c, "val")) for c in b if (c.fold, c.repeat) == (b[0].fold, b[0].repeat)}
    assert len(vals) == 1


def test_split_seed_and_short_patients_are_recorded_in_provenance(tmp_path):
    study = fake_study(tmp_path, fake_cohort(tmp_path), split_seed=3)
    assert "split_seed: 3" in study.describe()
    study.run([], section="splits")
    record = json.loads(study.rundir.provenance.read_text())["sections"]["splits"]
    assert record["split_seed"] == 3 and record["seeds"] == list(SEEDS)
    assert record["top_k_short"] == {"top_k": 10, "patients": []}


# ---------------------------------------------------------------- what the seed ensemble then sees


def fabricate_predictions(contexts, *, method: str = METHOD) -> pd.DataFrame:
    """Prediction rows of every context (schema of pdstudy.data.predictions), scores correlated with the label."""
    frames = []
    for ctx in contexts:
        p = ctx.patients
        rng = np.random.default_rng(100 + ctx.seed)
        y = (p["response"] == "poor").to_numpy(int)
        z = 1.5 * (2 * y - 1) + rng.normal(0, 1.0, len(p))
        frames.append(p[["patient_id", "split", "response", "recist"]].assign(
            score=1 / (1 + np.exp(-z)), method=method, stage=0, seed=ctx.seed, fold=ctx.fold, repeat=ctx.repeat,
            n_slices=12))
    return pd.concat(frames, ignore_index=True)


def _youden(y: np.ndarray, s: np.ndarray) -> float:
    """Independent Youden threshold: the candidate score maximising sens + spec - 1 (lowest on ties)."""
    best, thr = -np.inf, np.nan
    for t in np.unique(s):
        pred = s >= t
        j = pred[y == 1].mean() + (~pred[y == 0]).mean() - 1
        if j > best + 1e-12:
            best, thr = j, t
    return float(thr)


def test_seed_ensemble_threshold_and_calibration_use_every_validation_patient(tmp_path):
    study = fake_study(tmp_path, fake_cohort(tmp_path))
    contexts = list(study.contexts())
    preds = fabricate_predictions(contexts)
    carve = contexts[0].patients
    val_ids = sorted(carve.loc[carve["split"] == "val", "patient_id"])
    assert len(val_ids) == 9  # round(0.2 * 31) + round(0.2 * 15)

    scores = method_scores(preds, METHOD)
    val = scores[scores["split"] == "val"]
    assert sorted(val["patient_id"]) == val_ids and (val["n_seeds"] == len(SEEDS)).all()
    assert (scores["split"] == "test").sum() == (carve["split"] == "test").sum()

    # Independent seed average of the validation patients, straight from the fabricated rows.
    mean = preds[preds["split"] == "val"].groupby("patient_id").agg(y=("response", lambda r: int(r.iloc[0] == "poor")),
                                                                     score=("score", "mean"))
    assert len(mean) == len(val_ids)
    expected = _youden(mean["y"].to_numpy(), mean["score"].to_numpy())
    # apply_threshold_policy may return the midpoint between neighbouring scores; it must split the same patients.
    thr = choose_threshold(scores, "youden_val")
    s = mean["score"].to_numpy()
    np.testing.assert_array_equal(s >= thr, s >= expected)

    test = scores[scores["split"] == "test"]["score"].to_numpy()
    got = recalibrate(val["score"].to_numpy(), val["y"].to_numpy(), test)
    want = recalibrate(mean["score"].to_numpy(), mean["y"].to_numpy(), test)
    np.testing.assert_allclose(got, want)


# ---------------------------------------------------------------- same-person groups in the CV folds


@pytest.mark.filterwarnings("ignore::pdstudy.data.splits.DuplicatePatientWarning")  # the pairs are on purpose
def test_cv_folds_keep_a_same_person_pair_together(tmp_path):
    shared = {"P002": "P001", "P011": "P010"}
    cohort = fake_cohort(tmp_path, shared=shared)
    groups = same_person_groups(same_patient_keys(cohort.prepared.qc))
    assert groups == {"P001": "P001", "P002": "P001", "P010": "P010", "P011": "P010"}
    pooled = cohort.patients()[["patient_id", "split", "response", "recist"]].assign(split="train")
    assert any(  # without the groups some fold of some split seed would separate a pair
        dict(zip(f["patient_id"], f["split"]))[a] != dict(zip(f["patient_id"], f["split"]))[b]
        for s in range(4) for f in stratified_folds(pooled, 3, seed=s) for a, b in shared.items())
    for split_seed in range(4):
        for ctx in fake_study(tmp_path, cohort, protocol="cv", split_seed=split_seed, seeds=(0,)).contexts():
            split_of = dict(zip(ctx.patients["patient_id"], ctx.patients["split"]))
            for a, b in shared.items():
                assert split_of[a] == split_of[b], (split_seed, ctx.fold, ctx.repeat, a, b)


# ---------------------------------------------------------------- split_seed parameter


@pytest.mark.parametrize("value", [-1, 1.5, True, "0", None])
def test_split_seed_must_be_a_non_negative_integer(tmp_path, value):
    with pytest.raises(ValueError, match=r"split_seed must be a non-negative integer .*got"):
        check_split_seed(value)
    params = {k: v for k, v in load_profile("quick").items() if k in STUDY_PARAMETERS}
    params.update(run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), manifest="", split_seed=value)
    with pytest.raises(ValueError, match="split_seed must be a non-negative integer"):
        study_configs(params)
    with pytest.raises(ValueError, match="split_seed must be a non-negative integer"):
        fake_study(tmp_path, fake_cohort(tmp_path), split_seed=value)
    assert check_split_seed(np.int64(4)) == 4 and check_split_seed(0) == 0


def test_split_seed_is_a_study_parameter():
    assert "split_seed" in STUDY_PARAMETERS
    params = {k: v for k, v in load_profile("quick").items() if k in STUDY_PARAMETERS}
    del params["split_seed"]
    with pytest.raises(ValueError, match=r"missing study parameter\(s\) \['split_seed'\]"):
        study_configs({**params, "run_dir": "r", "data_dir": "d", "manifest": ""})


# ---------------------------------------------------------------- patients with fewer slices than top_k


def test_patients_with_fewer_slices_than_top_k_are_listed(tmp_path):
    cohort = fake_cohort(tmp_path, slices={"P004": 3, "P059": 9, "P010": 10})
    study = fake_study(tmp_path, cohort, top_k=10)
    short = study.top_k_short()
    split_of = dict(zip(next(study.contexts()).patients["patient_id"], next(study.contexts()).patients["split"]))
    assert list(short.columns) == list(TOP_K_SHORT_COLUMNS)
    assert short.to_dict("records") == [
        {"patient_id": "P004", "split": split_of["P004"], "n_slices": 3, "top_k": 10},
        {"patient_id": "P059", "split": "test", "n_slices": 9, "top_k": 10},
    ], "P010 has exactly top_k slices: not short"
    study.run([], section="short")
    table = pd.read_csv(study.rundir.tables / "top_k_short.csv", dtype={"patient_id": str})
    pd.testing.assert_frame_equal(table, short)
    md = (study.rundir.tables / "top_k_short.md").read_text()
    assert md.startswith("# Patients with fewer cached slices than top_k") and "mean of all of them" in md
    record = json.loads(study.rundir.provenance.read_text())["sections"]["short"]
    assert record["top_k_short"] == {"top_k": 10, "patients": ["P004", "P059"]}
    # Under CV a patient has several splits across folds: one row per (patient, split).
    cv = fake_study(tmp_path, cohort, protocol="cv", top_k=4).top_k_short()
    assert set(cv["patient_id"]) == {"P004"} and "test" in set(cv["split"]) and len(cv) == cv["split"].nunique()


def test_top_k_short_function_checks_its_inputs():
    patients = pd.DataFrame({"patient_id": ["A", "B"], "split": ["train", "test"]})
    assert top_k_short(patients, {"A": 2, "B": 5}, 3)["patient_id"].tolist() == ["A"]
    assert top_k_short(patients, {"A": 2, "B": 5}, 1).empty
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        top_k_short(patients, {"A": 2, "B": 5}, 0)
    with pytest.raises(ValueError, match=r"no slice count for patient\(s\) \['B'\]"):
        top_k_short(patients, {"A": 2}, 3)
    with pytest.raises(ValueError, match="columns 'patient_id' and 'split'"):
        top_k_short(patients.drop(columns="split"), {"A": 2, "B": 5}, 3)


def test_real_prepared_cohort_gives_the_same_splits_for_every_seed(tmp_path, tiny_prepared):
    prepared, patients = tiny_prepared
    # The fixture writes every series under one StudyInstanceUID (dicom_factory's default): blank that key, or
    # the leakage guard rightly sees one person under 24 IDs. The pixel keys differ and stay.
    prepared = dataclasses.replace(prepared, qc=prepared.qc.assign(study_key=""))
    cohort = Cohort(manifest_path=tmp_path / "manifest.csv", manifest=patients, prepared=prepared, synthetic=False)
    study = fake_study(tmp_path, cohort, val_fraction=0.25)
    contexts = list(study.contexts())
    assert len({tuple(_ids(c, "val")) for c in contexts}) == 1 and _ids(contexts[0], "val")
    n = prepared.index["patient_id"].value_counts()
    k = int(n.min()) + 1
    short = fake_study(tmp_path, cohort, top_k=k).top_k_short()
    assert sorted(short["patient_id"]) == sorted(n.index[n < k])
