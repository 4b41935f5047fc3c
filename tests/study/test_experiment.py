"""Study protocol on a tiny synthetic cohort: fixed split, cross-validation, external sites, configuration errors."""

from __future__ import annotations

import json

import pytest
import yaml

from pdstudy.core.params import STUDY_PARAMETERS
from pdstudy.data.predictions import check_prediction_files, read_predictions
from pdstudy.evaluate import table2
from pdstudy.study.protocol import Study, iteration_chain, methods


def _params(tmp_path, **over):
    from importlib import resources

    quick = yaml.safe_load(resources.files("pdstudy.core").joinpath("profiles", "quick.yaml").read_text())
    p = {k: quick[k] for k in STUDY_PARAMETERS if k in quick}
    p.update(run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), manifest="", synth_patients=24,
             synth_slices=12, synth_size=64, image_size=32, fov_mm=384.0, crop_size=28, workers=1, epochs=1,
             slices_per_patient=2, batch_size=16)
    p.update(over)
    return p


@pytest.mark.parametrize(("key", "value", "message"), [
    ("protocol", "loo", r"protocol must be one of \['fixed', 'cv', 'external'\]"),
    ("test_sites", "B", "test_sites must be a list of site codes"),
    ("test_sites", ["B"], "applies to protocol 'external' only"),
    ("crop_size", 64, "crop_size must be between 1 and the cached image_size"),
    ("top_k", 0, "top_k must be >= 1"),
    ("optimizer", "adam", "optimizer must be one of"),
    ("split_seed", -1, "split_seed must be a non-negative integer"),
    ("split_seed", 0.5, "split_seed must be a non-negative integer"),
])
def test_configuration_errors_fail_before_any_work(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=message):
        Study.from_parameters(_params(tmp_path, **{key: value}), progress=False)
    assert not (tmp_path / "data").exists(), "no cohort is generated for a bad configuration"


def test_unknown_architecture_lists_choices():
    with pytest.raises(ValueError, match="efficientnet_b7"):
        methods("baseline", ["efficientnet_b9"])
    assert iteration_chain("efficientnet_b3", 4).chain == ("efficientnet_b3",) * 5


def test_cross_validation_covers_every_patient_once_per_repeat(tmp_path):
    study = Study.from_parameters(_params(tmp_path, protocol="cv", cv_folds=2, cv_repeats=1), progress=False)
    results = study.run(methods("baseline", ["efficientnet_b0"]), section="test")
    assert len(results) == 2
    preds = read_predictions(study.rundir.predictions)
    test = preds[preds["split"] == "test"]
    assert sorted(test["fold"].unique()) == [0, 1]
    # Out-of-fold: every included patient is a test patient in exactly one fold.
    assert test["patient_id"].value_counts().eq(1).all()
    assert set(test["patient_id"]) == set(study.cohort.patients()["patient_id"])
    # Validation is carved inside each training fold, never from the fold's test patients.
    for _, fold in preds.groupby("fold"):
        val = set(fold.loc[fold["split"] == "val", "patient_id"])
        assert val and not val & set(fold.loc[fold["split"] == "test", "patient_id"])
    # The run records the split seed and the patients scored on fewer than top_k slices.
    record = json.loads(study.rundir.provenance.read_text())["sections"]["test"]
    assert record["split_seed"] == 0 and record["top_k_short"]["top_k"] == study.top_k
    assert (study.rundir.tables / "top_k_short.csv").exists()
    # A second run trains nothing: every stage comes from the stage cache.
    again = study.run(methods("baseline", ["efficientnet_b0"]), section="test")
    assert all(s.reused for r in again for s in r.stages)


def test_two_runs_with_the_same_seed_give_identical_predictions(tmp_path):
    frames = []
    for name in ("a", "b"):
        study = Study.from_parameters(_params(tmp_path / name, epochs=2), progress=False)
        study.run(methods("kd", ["efficientnet_b0>efficientnet_b0"]), section="test")
        frames.append(read_predictions(study.rundir.predictions))
    assert frames[0].equals(frames[1])
    assert frames[0]["score"].nunique() > 1
    # ... and therefore identical tables.
    t_a, t_b = (table2(f, quick=True) for f in frames)
    assert t_a.equals(t_b) and t_a["test_auc"].notna().any()


def test_external_protocol_trains_at_one_site_and_scores_the_other(tmp_path):
    """Leave-one-site-out on the two-site synthetic cohort: real stages, every patient scored, files apart."""
    study = Study.from_parameters(_params(tmp_path, protocol="external", synth_sites=2), progress=False)
    assert study.held_out_sites() == [("A",), ("B",)]
    method = methods("baseline", ["efficientnet_b0"])
    results = study.run(method, section="test")
    assert len(results) == 2
    check_prediction_files(study.predictions_dir, results, n_patients=len(study.cohort.patients()))
    assert read_predictions(study.rundir.predictions).empty
    preds = read_predictions(study.predictions_dir)
    site = study.cohort.patients().set_index("patient_id")["site"]
    for fold, (held,) in enumerate(study.held_out_sites()):
        f = preds[preds["fold"] == fold]
        assert set(f.loc[f["split"] == "external", "patient_id"].map(site)) == {held}
        assert not f.loc[f["split"].isin(["train", "val"]), "patient_id"].map(site).eq(held).any()
        assert f["score"].nunique() > 1
    record = json.loads(study.rundir.provenance.read_text())["sections"]["test"]
    assert record["external"]["held_out_sites"] == [["A"], ["B"]]


def test_leave_one_site_out_over_three_sites_end_to_end(tmp_path):
    """Issue 17: three synthetic sites, each held out in turn; no held-out patient is ever trained or validated on,
    and notebook 09's section writes its tables and figure (tiny sizes, well under 3 minutes)."""
    from pdstudy.study.external import (
        check_external_outputs,
        external_methods,
        external_section,
        external_study,
        site_overview,
        write_external,
    )

    study = external_study(_params(tmp_path, synth_sites=3, synth_patients=60, test_sites=[]))
    assert study is not None and study.protocol == "external"
    assert study.held_out_sites() == [("A",), ("B",), ("C",)]
    site = study.cohort.patients().set_index("patient_id")["site"]
    for (patients, fold, _), (held,) in zip(study.splits(), study.held_out_sites()):
        trained = patients.loc[patients["split"].isin(["train", "val"]), "patient_id"].map(site)
        assert not trained.eq(held).any(), f"fold {fold}: a patient of held-out site {held} is trained on"
        assert set(patients.loc[patients["split"] == "external", "patient_id"].map(site)) == {held}
        assert set(patients.loc[patients["split"] == "test", "patient_id"].map(site)) <= {"A", "B", "C"} - {held}
    site_overview(study)
    methods = external_methods("efficientnet_b0", "efficientnet_b0>efficientnet_b0")
    study.run(methods, section="09_external_validation")
    section = external_section(study, methods)
    assert section.leakage() == []
    assert sorted(section.table["fold"].unique()) == [0, 1, 2]
    write_external(section, study.rundir)
    assert check_external_outputs(study.rundir, section) == []
    # The check can fail: a held-out patient relabelled as a training patient is reported.
    tampered = section.rows.copy()
    tampered.loc[tampered.index[tampered["split"] == "external"][0], "split"] = "train"
    assert type(section)(section.result, tampered, section.held_out, section.top_k).leakage()


def test_external_study_skips_a_single_site_cohort(tmp_path, capsys):
    from pdstudy.study.external import external_study

    assert external_study(_params(tmp_path, synth_sites=1)) is None
    assert "needs two or more sites" in capsys.readouterr().out
