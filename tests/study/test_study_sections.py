"""Tests of what notebooks 06-10 call: shared predictions, the clinician comparison, Grad-CAM and the study report.

Synthetic prediction rows and tiny fake cohorts stand in for a run; the Grad-CAM tests use the quick
``test_resnet`` model, untrained.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.special import expit  # noqa: E402

from pdstudy import evaluate  # noqa: E402
from pdstudy.core.methods import Method  # noqa: E402
from pdstudy.core.rundir import run_dir  # noqa: E402
from pdstudy.data.cache import PreparedCohort  # noqa: E402
from pdstudy.data.predictions import write_predictions  # noqa: E402
from pdstudy.evaluate.clinicians import stated_operating_points, table3_rows  # noqa: E402
from pdstudy.evaluate.localisation import localisation_scores  # noqa: E402
from pdstudy.evaluate.localisation_table import LOCALISATION_COLUMNS, localisation_table, tumour_slices  # noqa: E402
from pdstudy.evaluate.readers import DEFAULT_OPERATING_POINTS  # noqa: E402
from pdstudy.evaluate.selection import (  # noqa: E402
    VALIDATION_CHOICE_RULE,
    choose_on_validation,
    preferred_policy,
    select_predictions,
)
from pdstudy.report import cam as report_cam  # noqa: E402
from pdstudy.report.clinicians import (  # noqa: E402
    SIMULATED_READERS_NOTE,
    mcnemar_table,
    plot_roc_readers,
    table3_notes,
    table3_summary,
    table3_title,
)
from pdstudy.report.document import report_contents, report_outline, report_summary  # noqa: E402
from pdstudy.report.iterations import plot_iteration_panels  # noqa: E402
from pdstudy.report.style import save_figure  # noqa: E402
from pdstudy.report.tables import write_evaluation_table, write_table  # noqa: E402
from pdstudy.study.clinicians import (  # noqa: E402
    CLINICIAN_MODEL,
    check_clinician_outputs,
    reader_calls,
    record_clinicians,
)
from pdstudy.study.sections import (  # noqa: E402
    FIXED_SPLIT_NOTE,
    fixed_split_note,
    section_predictions,
)

B7, B3 = "efficientnet_b7", "efficientnet_b3"
PD7 = Method("pd", (B7, B7, B7))
PD3 = Method("pd", (B3, B3, B3))
GOOD, POOR = ("CR", "PR"), ("SD", "PD")


def make_preds(separations: dict[str, list[float]], *, seeds=(0,), n_train=40, n_val=20, n_test=28, seed=0,
               val_flip: set[str] | None = None) -> pd.DataFrame:
    """Fixed-split prediction rows: per method and stage a binormal score of separation ``d``.

    Methods in ``val_flip`` separate the classes the wrong way round on the validation patients only.
    """
    splits = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    y = np.concatenate([np.arange(k) % 2 for k in (n_train, n_val, n_test)])
    idx = np.arange(len(y))
    recist = np.where(y == 1, np.where(idx % 4 < 2, "SD", "PD"), np.where(idx % 4 < 2, "CR", "PR"))
    frames = []
    for k, (mid, seps) in enumerate(separations.items()):
        for st, d in enumerate(seps):
            for s in seeds:
                r = np.random.default_rng([seed, s, st, k])
                sign = np.where((splits == "val") & (mid in (val_flip or set())), -1.0, 1.0)
                lat = sign * d * (y - 0.5) + 0.7 * r.normal(size=len(y))
                frames.append(pd.DataFrame({
                    "patient_id": [f"P{i:03d}" for i in idx], "split": splits,
                    "response": np.where(y == 1, "poor", "good"), "recist": recist, "score": expit(lat),
                    "method": mid, "stage": st, "seed": s, "fold": -1, "repeat": 0}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------------------------- evaluate.selection


def test_select_predictions_filters_and_reindexes():
    preds = make_preds({PD7.id: [1, 2, 3], PD3.id: [1, 2, 3]}, seeds=(0, 1))
    cv = preds.assign(fold=1)
    both = pd.concat([preds, cv], ignore_index=True)
    out = select_predictions(both, method_ids=[PD7.id], seeds=[1])
    expected = both[(both["method"] == PD7.id) & (both["fold"] == -1) & (both["seed"] == 1)]
    assert out.index.tolist() == list(range(len(expected)))
    pd.testing.assert_frame_equal(out, expected.reset_index(drop=True))
    assert set(select_predictions(both, folds="cv")["fold"]) == {1}
    assert len(select_predictions(both, folds="all")) == len(both)
    with pytest.raises(ValueError, match="folds must be one of"):
        select_predictions(both, folds="test")
    with pytest.raises(ValueError, match="lacks columns"):
        select_predictions(both.drop(columns="fold"))
    with pytest.raises(ValueError, match="collection of method IDs"):
        select_predictions(both, method_ids=PD7.id)


def test_choose_on_validation_never_looks_at_test():
    # PD3 separates well everywhere but on validation, PD7 only moderately: the validation AUC decides
    preds = make_preds({PD7.id: [0, 0, 1.5], PD3.id: [0, 0, 4.0]}, val_flip={PD3.id})
    selection, chosen = choose_on_validation(preds, [PD3, PD7])
    assert chosen == PD7
    assert selection["chosen"].tolist() == [False, True] and "test_auc" not in selection.columns
    assert list(selection.columns) == ["method_id", "method", "n_val", "val_auc", "chosen"]
    assert selection["n_val"].tolist() == [20, 20] and "validation" in VALIDATION_CHOICE_RULE
    tie = make_preds({PD7.id: [0, 0, 1.0], PD3.id: [0, 0, 1.0]})
    tie.loc[tie["method"] == PD3.id, "score"] = tie.loc[tie["method"] == PD7.id, "score"].to_numpy()
    assert choose_on_validation(tie, [PD3, PD7])[1] == PD3, "ties go to the first candidate"
    no_val = make_preds({PD7.id: [0, 0, 1.0], PD3.id: [0, 0, 2.0]}, n_val=0)
    selection, chosen = choose_on_validation(no_val, [PD7, PD3])
    assert chosen == PD7 and selection["val_auc"].isna().all()
    with pytest.raises(ValueError, match="non-empty sequence of Method"):
        choose_on_validation(preds, [])


def test_preferred_policy():
    assert preferred_policy(make_preds({PD7.id: [0, 0, 1.0]}), PD7.id) == "youden_val"
    assert preferred_policy(make_preds({PD7.id: [0, 0, 1.0]}, n_val=0), PD7.id) == "youden_test"


# --------------------------------------------------------------------------------------------- Table 3


@pytest.fixture(scope="module")
def t3_inputs():
    preds = make_preds({CLINICIAN_MODEL.id: [0.5, 1.0, 2.0]})
    readers = evaluate.simulate_readers(evaluate.patients_of_split(preds, "test"), seed=0)
    return preds, readers, evaluate.table3(preds, readers, method_id=CLINICIAN_MODEL.id)


def test_stated_operating_points_and_table3_rows(t3_inputs):
    stated = stated_operating_points()
    assert stated["reader"].tolist() == [op.name for op in DEFAULT_OPERATING_POINTS]
    assert stated["stated SPE %"].tolist() == [85.71, 78.57, 64.29]
    model, avg = table3_rows(t3_inputs[2])
    assert model["kind"] == "model" and model["policy"] == "youden_val" and avg["row"] == "Average (readers)"
    with pytest.raises(ValueError, match="output of pdstudy.evaluate.table3"):
        table3_rows(pd.DataFrame({"x": [1]}))


def test_table3_words(t3_inputs):
    _, readers, t3 = t3_inputs
    assert table3_title("PD", simulated=True) == "Table 3. PD against clinicians, test set (SIMULATED readers)"
    assert table3_title("PD", simulated=False) == "Table 3. PD against clinicians, test set"
    assert table3_notes(simulated=True, source="x", stand_ins=False)[0].startswith("SIMULATED readers: no real")
    real = table3_notes(simulated=False, source="readers CSV r.csv", stand_ins=True)
    assert real[0] == "Reader calls: readers CSV r.csv." and real[1].startswith("Quick profile")
    view = mcnemar_table(t3)
    assert list(view.columns) == ["reader", "b (model right, reader wrong)", "c (model wrong, reader right)",
                                  "p (exact)", "p (Holm)"] and len(view) == 3
    text = table3_summary(t3, simulated=True)
    assert text.startswith("At the validation-chosen threshold the model reaches ACC") and "simulated readers" in text
    assert f"{t3['mcnemar_p_holm'].min():.3f}." in text
    no_thr = t3.copy()
    no_thr.loc[no_thr["policy"] == "youden_val", "acc"] = np.nan
    assert "not available" in table3_summary(no_thr, simulated=False)
    assert "SIMULATED" in SIMULATED_READERS_NOTE


def test_plot_roc_readers(t3_inputs):
    preds, readers, t3 = t3_inputs
    fig = plot_roc_readers(preds, CLINICIAN_MODEL.id, readers, t3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(s.startswith("Average of readers (simulated): SEN") for s in labels)
    assert any(s.startswith("Model at the validation-chosen threshold") for s in labels)
    assert "SIMULATED readers" in ax.get_title() and ax.title.get_color() == "#a50f15"
    real = readers.assign(simulated=False, reader_id=readers["reader_id"].str.replace(" (simulated)", ""))
    fig = plot_roc_readers(preds, CLINICIAN_MODEL.id, real, evaluate.table3(preds, real, method_id=CLINICIAN_MODEL.id))
    assert "SIMULATED" not in fig.axes[0].get_title()
    _, ax = plt.subplots()
    try:
        assert plot_roc_readers(preds, CLINICIAN_MODEL.id, readers, t3, ax=ax) is ax.figure
    except NotImplementedError as exc:  # until pdstudy.report.figures.plot_roc takes ax=
        assert "ax" in str(exc)
    with pytest.raises(ValueError, match="output of pdstudy.evaluate.table3"):
        plot_roc_readers(preds, CLINICIAN_MODEL.id, readers, t3.drop(columns="mcnemar_p"))


def test_reader_calls_record_and_checks(tmp_path, t3_inputs):
    preds, _, _ = t3_inputs
    run = run_dir(tmp_path / "run")
    readers = reader_calls(preds, seed=3)
    assert readers.simulated and readers.n_readers == 3 and len(readers.patients) == 28
    assert readers.describe() == ("readers: SIMULATED at the paper's operating points (seed 3); 3 reader(s), "
                                  "28 test patients (14 poor)")
    t3 = evaluate.table3(preds, readers.calls, method_id=CLINICIAN_MODEL.id)
    write_evaluation_table(t3, run, "table3", title=table3_title("PD", simulated=True),
                           extra_notes=table3_notes(simulated=True, source=readers.source, stand_ins=True))
    readers.calls.to_csv(run.tables / "table3_reader_calls.csv", index=False)
    assert check_clinician_outputs(run, readers) == ["figures/fig3_roc_readers.png missing or under 300 bytes",
                                                     "figures/fig3_roc_readers.pdf missing or under 300 bytes"]
    save_figure(plot_roc_readers(preds, CLINICIAN_MODEL.id, readers.calls, t3), run, "fig3_roc_readers")
    assert check_clinician_outputs(run, readers) == []
    md = run.tables / "table3.md"
    md.write_text(md.read_text().replace("SIMULATED", "simulated"))
    assert check_clinician_outputs(run, readers) == ["simulated readers are not labelled SIMULATED in table3"]
    record_clinicians(run, readers, seed=3)
    rec = json.loads(run.provenance.read_text())["sections"]["06_readers"]
    assert rec["model"] == CLINICIAN_MODEL.id and rec["simulated"] and rec["n_test"] == 28
    assert rec["readers"] == sorted(readers.calls["reader_id"].unique()) and len(rec["operating_points"]) == 3
    with pytest.raises(TypeError, match="seed must be an int"):
        reader_calls(preds, seed="0")


# --------------------------------------------------------------------------------------------- shared predictions


def test_section_predictions_and_fixed_split_note(tmp_path):
    run = run_dir(tmp_path / "run")
    preds = make_preds({PD7.id: [1, 2, 3], PD3.id: [1, 2, 3]}, seeds=(0, 1))
    for m in (PD7, PD3):
        for s in (0, 1):
            rows = preds[(preds["method"] == m.id) & (preds["seed"] == s)]
            write_predictions(run.predictions, m, rows, seed=s)
            write_predictions(run.predictions, m, rows.assign(fold=0), seed=s, fold=0)
    study = SimpleNamespace(rundir=run, seeds=(1,))
    section = section_predictions(study, [PD7])
    assert set(section.fixed["method"]) == {PD7.id} and set(section.fixed["seed"]) == {1}
    assert set(section.fixed["fold"]) == {-1} and section.fixed.index.tolist() == list(range(len(section.fixed)))
    assert section.ignored == (PD3.id,) and set(section.study_rows["fold"]) == {-1, 0}
    assert section.seeds == [1]
    assert section.describe() == f"{len(section.fixed)} fixed-split prediction rows: 1 method(s), seeds [1]"
    assert section.describe(list_ignored=True).endswith(f"not used: {PD3.id}")
    with pytest.raises(ValueError, match="no fixed-split predictions"):
        section_predictions(SimpleNamespace(rundir=run, seeds=(7,)), [PD7])
    with pytest.raises(ValueError, match="non-empty sequence of Method"):
        section_predictions(study, [])
    assert fixed_split_note("fixed") is None
    assert fixed_split_note("cv") == FIXED_SPLIT_NOTE.format(protocol="cv") and "`cv`" in fixed_split_note("cv")


# --------------------------------------------------------------------------------------------- Grad-CAM


CAM_INFO = {"method": "gradcam", "arch": "test_resnet", "target_layer": "layer4.0", "crop_size": 60,
            "feature_map_size": (2, 2), "cell_px": 30.0, "too_coarse": True,
            "message": "feature map 2x2 is too coarse to interpret", "method_note": None}


def test_plot_cam_examples_title_and_missing_column():
    rng = np.random.default_rng(0)
    codes = ["CR", "SD", "PD"]  # no PR patient
    images = {c: rng.integers(0, 255, (64, 64), dtype=np.uint8) for c in codes}
    cams = {c: rng.random((60, 60)).astype(np.float32) for c in codes}
    kwargs = dict(patients={c: f"P{i}" for i, c in enumerate(codes)}, scores=dict.fromkeys(codes, 0.5), model="PD",
                  seed=0)
    fig = report_cam.plot_cam_examples(images, cams, info=CAM_INFO, **kwargs)
    title = fig.get_suptitle()
    assert title.startswith("Fig. 5. Grad-CAM for class 'poor': PD (test_resnet), seed 0; feature map 2x2 at layer4.0")
    assert "WARNING: feature map 2x2 is too coarse" in title and "30 x 30 px" in title
    assert fig._suptitle.get_color() == "#a50f15"
    assert fig.axes[1].get_title() == "PR (partial response)\nno test patient"
    fine = {**CAM_INFO, "feature_map_size": (4, 4), "cell_px": 15.0, "too_coarse": False, "message": None}
    fig = report_cam.plot_cam_examples(images, cams, info=fine, masks={c: np.ones((64, 64)) for c in codes}, **kwargs)
    assert "WARNING" not in fig.get_suptitle() and fig._suptitle.get_color() == "black"
    with pytest.raises(ValueError, match="same RECIST categories"):
        report_cam.plot_cam_examples(images, {"CR": cams["CR"]}, info=fine, **kwargs)
    with pytest.raises(ValueError, match="info lacks"):
        report_cam.plot_cam_examples(images, cams, info={"method": "gradcam"}, **kwargs)


def test_cam_and_localisation_notes():
    notes = report_cam.cam_notes({**CAM_INFO, "method": "eigencam", "method_note": "class-agnostic"}, missing=["PR"])
    assert notes[0].startswith("> **WARNING: the EigenCAM maps are too coarse to interpret.**")
    assert notes[1] == "No test patient in RECIST category PR: shown as an empty column."
    assert notes[2] == "EigenCAM: class-agnostic."
    assert report_cam.cam_notes({**CAM_INFO, "too_coarse": False}) == []
    assert report_cam.explained_model_note("PD", 0).endswith("**Explained model: PD**, final stage, seed 0.")
    assert report_cam.localisation_title("gradcam++").endswith("(Grad-CAM++)")
    table = pd.DataFrame({"method": ["A", "A", "B", "B"], "level": ["all tumour slices"] * 4, "n_slices": [3, 3, 0, 0],
                          "feature_map": ["2x2", "2x2", "1x1", "1x1"], "too_coarse": [True, True, True, True],
                          "arch": ["a", "a", "b", "b"]})
    notes = report_cam.localisation_notes(table, cam_method="gradcam", model_seed=2)
    assert len(notes) == 6 and notes[0].startswith("WARNING: feature maps too coarse") and "A (2x2 at a)" in notes[0]
    assert notes[1] == "No slice could be scored for B (a 1x1 feature map has a single cell, so its map carries no " \
                       "location)."
    assert notes[2].startswith("Grad-CAM for class 'poor' on the final model (seed 2)")
    assert report_cam.highlighted_notes(notes) == [f"> **{n}**" for n in notes[:2]]
    assert len(report_cam.localisation_notes(table.assign(too_coarse=False, n_slices=1), cam_method="gradcam",
                                             model_seed=0)) == 4
    with pytest.raises(ValueError, match="cam_method must be one of"):
        report_cam.localisation_notes(table, cam_method="gradcam+", model_seed=0)


def _fake_cohort(n_patients=8, slices=3, size=64):
    """Test patients P000.. with RECIST CR, PR, SD, PD in turn; tumour masks on the middle slice only."""
    ids = [f"P{i:03d}" for i in range(n_patients)]
    index = pd.DataFrame({"patient_id": np.repeat(ids, slices), "slice": np.tile(np.arange(slices), n_patients),
                          "z_mm": 0.0})
    rng = np.random.default_rng(0)
    images = rng.integers(20, 60, (n_patients * slices, size, size)).astype(np.uint8)
    images[:, 16:48, 16:48] = 120
    masks = np.zeros_like(images)
    masks[1::slices, 24:36, 24:36] = 1
    images[1::slices, 24:36, 24:36] = 230
    prepared = PreparedCohort(root=None, images=images, index=index, qc=pd.DataFrame(), meta={}, masks=masks)
    recist = ["CR", "PR", "SD", "PD"] * (n_patients // 4)
    rows = [{"patient_id": pid, "split": "test", "response": "good" if r in GOOD else "poor", "recist": r,
             "score": 0.1 + 0.1 * i, "method": m.id, "stage": st, "seed": 0, "fold": -1, "repeat": 0}
            for m in (PD7, Method("baseline", (B7,)), Method("kd", (B7, B7))) for st in range(len(m.chain))
            for i, (pid, r) in enumerate(zip(ids, recist))]
    return prepared, pd.DataFrame(rows)


def test_tumour_slices_and_localisation_table():
    prepared, _ = _fake_cohort()
    slices = tumour_slices(prepared, [f"P{i:03d}" for i in range(4)])
    assert slices.rows.tolist() == [1, 4, 7, 10] and slices.n_patients == 4 and slices.one_per_patient.all()
    assert slices.describe() == "4 test slices with tumour from 4 patients" and slices.bodies.shape == (4, 64, 64)
    cams = np.random.default_rng(1).random((4, 60, 60))
    per_slice = localisation_scores(cams, slices.masks, slices.bodies)
    info = {**CAM_INFO, "feature_map_size": (4, 4), "too_coarse": False, "message": None}
    table = localisation_table([(PD7, per_slice, info), (PD3, per_slice, info)], slices.one_per_patient)
    assert list(table.columns) == list(LOCALISATION_COLUMNS) and len(table) == 8
    assert table["level"].tolist()[:4] == ["all tumour slices"] * 2 + ["one slice per patient"] * 2
    assert (table["n_slices"] + table["n_unscored"] == 4).all() and set(table["feature_map"]) == {"4x4"}
    with pytest.raises(ValueError, match="per-slice scores"):
        localisation_table([(PD7, per_slice.iloc[:2], info)], slices.one_per_patient)
    prepared.masks = None
    with pytest.raises(ValueError, match="no tumour masks"):
        tumour_slices(prepared, ["P000"])


def test_cam_examples_localise_record_and_check(tmp_path):
    import torch

    from pdstudy.learn.models import build_model
    from pdstudy.study.gradcam import (
        LOCALISED_METHODS,
        cam_examples,
        check_cam_method,
        check_gradcam_outputs,
        final_stage_result,
        gradcam_methods,
        localise,
        record_gradcam,
    )

    torch.manual_seed(0)
    model = build_model("test_resnet")
    with torch.no_grad():
        model.get_classifier().weight[1].uniform_(0.5, 1.0)
    prepared, preds = _fake_cohort()
    stage = SimpleNamespace(load_model=lambda settings: model, meta={"built_arch": "test_resnet"}, slice_probs={})
    results = [SimpleNamespace(method=m, predictions=preds[preds["method"] == m.id], stages=[stage])
               for m in LOCALISED_METHODS]
    study = SimpleNamespace(cohort=SimpleNamespace(prepared=prepared), settings=None)
    assert gradcam_methods([PD3, PD7]) == [PD3, PD7, *LOCALISED_METHODS[:2]]
    with pytest.raises(ValueError, match="cam_method must be one of"):
        check_cam_method("gradcam+")
    with pytest.raises(ValueError, match="no chain run"):
        final_stage_result(results, PD3, 0)

    examples = cam_examples(study, results, preds, PD7, seed=0, model_seed=0, crop_size=60, cam_method="gradcam")
    assert examples.present == ["CR", "PR", "SD", "PD"] and examples.missing == []
    assert examples.cams.shape == (4, 60, 60) and examples.info["feature_map_size"] == (4, 4)
    pid = examples.patients["SD"]
    assert examples.scores["SD"] == preds[(preds["method"] == PD7.id) & (preds["stage"] == 2)
                                          & (preds["patient_id"] == pid)]["score"].iloc[0]
    assert examples.masks["SD"].sum() > 0, "the slice shown is the one with tumour"
    localisation = localise(study, results, preds, model_seed=0, crop_size=60, cam_method="gradcam")
    assert len(localisation.table) == 36 and localisation.describe() == "8 test slices with tumour from 8 patients"

    run = run_dir(tmp_path / "run")
    selection = pd.DataFrame({"method_id": [PD7.id], "method": [PD7.label], "n_val": [0], "val_auc": [np.nan],
                              "chosen": [True]})
    fig = report_cam.plot_cam_examples(examples.images, examples.cam_of, patients=examples.patients,
                                       scores=examples.scores, info=examples.info, model=PD7.label, seed=0,
                                       masks=examples.masks)
    save_figure(fig, run, "fig5_gradcam")
    notes = report_cam.localisation_notes(localisation.table, cam_method="gradcam", model_seed=0)
    write_table(localisation.table, run, "gradcam_localisation", title="t", notes=notes)
    kwargs = dict(selection=selection, examples=examples, localisation=localisation, suptitle=fig.get_suptitle(),
                  test_patients=preds["patient_id"].unique())
    assert check_gradcam_outputs(run, **kwargs) == []
    assert check_gradcam_outputs(run, **{**kwargs, "test_patients": ["P000"]}) == ["an example is not a test patient"]
    record_gradcam(run, selection, examples, localised=True, cam_method="gradcam", seed=0, pd_chains=["x"])
    rec = json.loads(run.provenance.read_text())["sections"]["07_gradcam_maps"]
    assert rec["explained"] == PD7.id and rec["examples"] == examples.patients and rec["localisation"]
    study.cohort.prepared.masks = None
    assert localise(study, results, preds, model_seed=0, crop_size=60, cam_method="gradcam") is None


# --------------------------------------------------------------------------------------------- study report


def test_plot_iteration_panels_keeps_low_aucs_in_view():
    curve = pd.DataFrame({"stage": [0, 1, 2], "test_auc": [0.5, 0.4, 0.6], "test_auc_lo": [0.3, 0.1, 0.4],
                          "test_auc_hi": [0.7, 0.6, 0.8]})
    fig = plot_iteration_panels({"B7": curve, "B3": curve.assign(test_auc_lo=0.4)})
    assert fig.axes[0].get_ylim() == pytest.approx((0.05, 1.08)) and fig.axes[1].get_ylim()[0] == pytest.approx(0.05)
    fig = plot_iteration_panels({"B7": curve.assign(test_auc_lo=0.6)})
    assert fig.axes[0].get_ylim() == pytest.approx((0.3, 1.08)) and fig.axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="curves is empty"):
        plot_iteration_panels({})


def test_report_plan():
    from pdstudy.study.report_section import report_plan

    plan = report_plan(baselines=[B7, B3], kd_chains=[f"{B7}>{B7}"], pd_chains=[f"{B3}>{B3}>{B3}", f"{B7}>{B7}>{B7}"],
                       curve_architectures=[B7], curve_iterations=2)
    assert plan.fig4_model == PD7, "the paper's model, not the first chain"
    assert [m.id for m in plan.everything] == [f"baseline:{B7}", f"baseline:{B3}", f"kd:{B7}>{B7}", PD3.id, PD7.id,
                                               f"pd:{B7}>{B7}"]
    assert plan.ablation_ids[(B7, 1, 1, 1)] == PD7.id and len(plan.ablation_ids) == 4
    preds = make_preds({f"baseline:{B7}": [1.0], PD7.id: [1, 1, 1]})
    assert plan.fig4_methods(preds) == [f"baseline:{B7}", PD7.id]
    other = report_plan(baselines=[], kd_chains=[], pd_chains=[f"{B3}>{B3}>{B3}"], curve_architectures=[B3],
                        curve_iterations=1)
    assert other.fig4_model == PD3
    with pytest.raises(ValueError, match="no PD chain"):
        _ = report_plan(baselines=[B7], kd_chains=[], pd_chains=[], curve_architectures=[B7],
                        curve_iterations=1).fig4_model
    with pytest.raises(ValueError, match="list of names"):
        report_plan(baselines=B7, kd_chains=[], pd_chains=[], curve_architectures=[B7], curve_iterations=1)


def test_report_section_end_to_end(tmp_path):
    """Notebook 08 without training: tables, figures, REPORT.md and the checks on synthetic predictions."""
    from pdstudy.study.report_section import (
        check_report_outputs,
        report_plan,
        write_cv_tables,
        write_iteration_curves,
        write_roc_panels,
        write_study_report,
    )

    run = run_dir(tmp_path / "run")
    plan = report_plan(baselines=[B7], kd_chains=[f"{B7}>{B7}"], pd_chains=[f"{B7}>{B7}>{B7}"],
                       curve_architectures=[B7], curve_iterations=2)
    preds = make_preds({f"baseline:{B7}": [1.0], f"kd:{B7}>{B7}": [1.0, 1.2], f"pd:{B7}>{B7}": [1.0, 1.3],
                        PD7.id: [1.0, 1.3, 1.6]})
    write_evaluation_table(evaluate.table2(preds, quick=True), run, "table2", title="Table 2")
    write_evaluation_table(evaluate.table4(preds, plan.ablation_ids, quick=True), run, "table4", title="Table 4")
    curves = write_iteration_curves(preds, plan, run)
    assert list(curves) == ["EfficientNet-B7, 2 iterations"]
    assert (run.tables / f"fig6_iterations_{B7}_values.csv").is_file()
    save_figure(plot_iteration_panels(curves), run, "fig6_iterations")
    panels = write_roc_panels(preds, plan.main, run)
    assert list(panels.values()) == ["fig3_roc_baseline", "fig3_roc_kd", "fig3_roc_pd"]
    from pdstudy.report.figures import plot_calibration, plot_confusion_by_recist, plot_decision_curves

    policy = preferred_policy(preds, plan.fig4_model.id)
    save_figure(plot_confusion_by_recist(preds, plan.fig4_model.id, threshold_policy=policy), run,
                "fig4a_confusion_recist")
    save_figure(plot_decision_curves(preds, plan.fig4_methods(preds)), run, "fig4b_decision_curves")
    save_figure(plot_calibration(preds, plan.fig4_methods(preds)), run, "fig_calibration")
    contents = report_contents(run, roc_panels=panels, curve_architectures=[B7], fig4_model=plan.fig4_model.label,
                               fig4_policy=policy, cv=False, stand_ins=True, protocol="fixed", ignored=["x"])
    assert "table3" not in contents.tables.values() and "fig5_gradcam" not in contents.figures.values()
    assert contents.notes[0].startswith(f"Fig. 4 shows {PD7.label}, fixed in advance")
    assert any("Notebook 06" in n for n in contents.notes) and contents.notes[-1].startswith("Prediction files of 1")
    params = {"profile": "quick", "seed": 0, "baselines": [B7], "kd_chains": [], "pd_chains": [],
              "curve_architectures": [B7], "curve_iterations": 2, "stand_ins": True}
    study = SimpleNamespace(rundir=run, cohort=SimpleNamespace(name="built-in synthetic cohort", synthetic=True))
    path = write_study_report(study, contents, params=params, fig4_model=plan.fig4_model, fig4_policy=policy)
    assert json.loads(run.provenance.read_text())["sections"]["08_report"]["fig4_model"] == PD7.id
    assert report_summary(path).startswith("REPORT.md: ") and report_outline(path).startswith("# Study report")
    kwargs = dict(preds=preds, plan=plan, contents=contents, report_path=path, synthetic=True)
    assert check_report_outputs(run, **kwargs) == []
    assert check_report_outputs(run, **{**kwargs, "synthetic": False}) == [
        "REPORT.md's synthetic statement does not match the cohort"]
    with pytest.raises(ValueError, match="params lacks"):
        write_study_report(study, contents, params={}, fig4_model=plan.fig4_model, fig4_policy=policy)
    base = make_preds({f"baseline:{B7}": [1.0], f"baseline:{B3}": [1.0]}, n_val=10)
    folds = []
    for f in range(2):  # fold f tests every other test patient
        rows = base.assign(fold=f)
        rows.loc[(rows["split"] == "test") & (rows["patient_id"].str[-1].astype(int) % 2 != f), "split"] = "train"
        folds.append(rows)
    cv = write_cv_tables(pd.concat([base, *folds], ignore_index=True), plan.main, run)
    assert cv["method_id"].tolist() == [f"baseline:{B7}"] and cv["n_folds"].tolist() == [2]
    assert (run.tables / "cv_summary_values.csv").is_file() and (run.tables / "cv_per_repeat.md").is_file()


def test_report_contents_with_sections_06_and_07(tmp_path):
    run = run_dir(tmp_path / "run")
    pd.DataFrame({"row": ["C3 (simulated)"], "kind": ["reader"], "simulated": [True]}).to_csv(
        run.tables / "table3_values.csv", index=False)
    for name in ("table3.md", "gradcam_selection.md"):
        (run.tables / name).write_text("# t\n")
    for name in ("fig3_roc_readers.png", "fig5_gradcam.png"):
        (run.figures / name).write_bytes(b"png")
    contents = report_contents(run, roc_panels={"A": "fig3_roc_baseline"}, curve_architectures=[B7, B3],
                               fig4_model="PD", fig4_policy="youden_test", cv=True, stand_ins=False, protocol="cv")
    assert list(contents.tables) == ["Table 2. Final models on the test patients",
                                     "Table 3. The PD model against clinicians (SIMULATED readers)",
                                     "Table 4. Ablation", "Fig. 6 data: EfficientNet-B7",
                                     "Fig. 6 data: EfficientNet-B3", "Cross-validation summary",
                                     "Grad-CAM: choice of the model to explain"]
    assert list(contents.figures.values()) == ["fig3_roc_baseline", "fig3_roc_readers", "fig4a_confusion_recist",
                                               "fig4b_decision_curves", "fig_calibration", "fig5_gradcam",
                                               "fig6_iterations"]
    assert "Fig. 3 with the readers' operating points (SIMULATED readers)" in contents.figures
    assert contents.notes[1].startswith("Fig. 4A uses the test-chosen (optimistic) threshold")
    assert contents.notes[2].startswith("Protocol cv") and len(contents.notes) == 5
    assert contents.notes[3].startswith("Notebook 08 (clinical fusion) has not written")
    assert contents.notes[4].startswith("Notebook 09 (external validation) has not written")
    # with notebook 08's outputs: its table, figure and a note on what was fitted on which patients
    (run.tables / "clinical_fusion.md").write_text("# t\n")
    (run.figures / "clinical_fusion.png").write_bytes(b"png")
    contents = report_contents(run, roc_panels={"A": "fig3_roc_baseline"}, curve_architectures=[B7],
                               fig4_model="PD", fig4_policy="youden_val", cv=False, stand_ins=False, protocol="fixed")
    assert contents.tables["Beyond the paper: clinical variables, CT and their fusion"] == "clinical_fusion"
    assert list(contents.figures.values())[-1] == "clinical_fusion"
    assert "fig5_gradcam_other" not in contents.figures.values()
    (run.figures / "fig5_gradcam_other.png").write_bytes(b"png")  # notebook 07's other models
    contents = report_contents(run, roc_panels={"A": "fig3_roc_baseline"}, curve_architectures=[B7],
                               fig4_model="PD", fig4_policy="youden_val", cv=False, stand_ins=False, protocol="fixed")
    figures = list(contents.figures.values())
    assert figures.index("fig5_gradcam_other") == figures.index("fig5_gradcam") + 1
    assert any("fitted on the training patients" in n and "validation patients" in n for n in contents.notes)
    # with notebook 09's outputs: the per-site tables, the external-validation table and figure, and a note
    for name in ("site_preprocessing", "table1_sites", "external_validation"):
        (run.tables / f"{name}.md").write_text("# t\n")
    (run.figures / "external_validation.png").write_bytes(b"png")
    contents = report_contents(run, roc_panels={"A": "fig3_roc_baseline"}, curve_architectures=[B7],
                               fig4_model="PD", fig4_policy="youden_val", cv=False, stand_ins=False, protocol="fixed")
    assert list(contents.tables.values())[-3:] == ["site_preprocessing", "table1_sites", "external_validation"]
    assert list(contents.figures.values())[-1] == "external_validation"
    assert any(n.startswith("External validation (notebook 09") for n in contents.notes)


def test_localised_methods_follow_the_cam_localise_parameter():
    from pdstudy.study.gradcam import LOCALISED_METHODS, gradcam_methods, localised_methods

    b0 = localised_methods("efficientnet_b0")
    assert [m.id for m in b0] == ["baseline:efficientnet_b0", "kd:efficientnet_b0>efficientnet_b0",
                                  "pd:efficientnet_b0>efficientnet_b0>efficientnet_b0"]
    assert LOCALISED_METHODS == localised_methods("efficientnet_b7")
    assert gradcam_methods([b0[2]], b0) == list(b0[2:]) + list(b0[:2])
    for bad in ("", "efficientnet_b7>efficientnet_b7", None):
        with pytest.raises(ValueError, match="cam_localise must name one architecture"):
            localised_methods(bad)
