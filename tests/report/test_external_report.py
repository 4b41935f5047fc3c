"""Tests for pdstudy.report.external: the external-validation table's display version, its files, and the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from external_factory import BASE, PD, make_patients, make_predictions, sites_of  # noqa: E402

from pdstudy.core.rundir import RunDir  # noqa: E402
from pdstudy.evaluate import SMALL_MARK, external_validation  # noqa: E402
from pdstudy.report import (  # noqa: E402
    EXTERNAL_FIGURE,
    EXTERNAL_TABLE,
    format_external_table,
    plot_external_calibration,
    plot_external_decision_curves,
    plot_external_roc,
    plot_external_validation,
    plot_score_vs_slices,
    save_figure,
    write_external_table,
)


@pytest.fixture(scope="module")
def result():
    patients = make_patients(("A", "B"), n_per_site=60)
    return external_validation(make_predictions(patients, [("A",), ("B",)], shift=1.0), sites_of(patients))


def test_display_table_formats_every_row(result):
    t = result.table
    disp = format_external_table(t)
    assert len(disp) == len(t) == 8 and disp.attrs["notes"] == t.attrs["notes"]
    assert list(disp.columns[:6]) == ["Method", "Fold", "Held out", "Test set (sites)", "Patients (poor)",
                                      "Fitted on: val (poor)"]
    first = t.iloc[1]  # baseline, fold 0, external
    assert first["test_set"] == "external" and disp["Test set (sites)"].iloc[1] == "external (A)"
    assert disp["Patients (poor)"].iloc[1] == "60 (30)"
    assert disp["Fitted on: val (poor)"].iloc[1] == f"12 (6){SMALL_MARK}"  # 6 poor validation patients: marked
    assert disp["AUC [95% CI]"].iloc[1] == f"{first['auc']:.2f} [{first['auc_lo']:.2f}, {first['auc_hi']:.2f}]"
    assert disp["AUC drop, ext - int [95% CI]"].iloc[1].startswith(f"{first['auc_drop']:+.2f} [")
    assert disp["AUC drop, ext - int [95% CI]"].iloc[0] == "" and disp["p (drop)"].iloc[0] == ""
    sen = first["youden_val_sen"]
    assert disp["SEN % (Youden on val, transported)"].iloc[1].startswith(f"{100 * sen:.1f} [")
    assert disp["SEN % (Youden on external, optimistic)"].iloc[0] == ""
    assert disp["SEN % (Youden on external, optimistic)"].iloc[1] != ""
    assert disp["Calibration-in-the-large [95% CI]"].iloc[1].startswith(f"{first['cal_intercept']:+.2f} [")
    with pytest.raises(ValueError, match="external_validation"):
        format_external_table(pd.DataFrame(t.to_dict("list")))  # no attrs: not the evaluate table


def test_one_fold_has_no_fold_column():
    patients = make_patients(("A", "B", "C"), n_per_site=40)
    res = external_validation(make_predictions(patients, [("C",)], methods=(PD,)), sites_of(patients))
    disp = format_external_table(res.table)
    assert "Fold" not in disp.columns and disp["Test set (sites)"].tolist() == ["internal (A, B)", "external (C)"]


def test_write_external_table_writes_display_and_values(result, tmp_path):
    run = RunDir(tmp_path / "run").create()
    paths = write_external_table(result, run, extra_notes=["Models fixed in advance."])
    assert paths["display"][0] == run.tables / f"{EXTERNAL_TABLE}.csv"
    md = (run.tables / f"{EXTERNAL_TABLE}.md").read_text()
    assert md.startswith("# External validation") and "Models fixed in advance." in md
    assert "validation patients only" in md and "fold 0: held out site(s) A" in md
    values = pd.read_csv(run.tables / f"{EXTERNAL_TABLE}_values.csv")
    assert values["auc"].tolist() == pytest.approx(result.table["auc"].tolist())
    assert {"n", "n_poor", "n_val", "n_val_poor", "test_set", "method", "fold"} <= set(values.columns)
    with pytest.raises(TypeError, match="ExternalValidation"):
        write_external_table(result.table, run)


def test_panels_take_an_axes(result):
    fig, axes = plt.subplots(1, 4)
    assert plot_external_roc(result, BASE, fold=1, ax=axes[0]) is axes[0]
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels[0].startswith("Internal (A): n = 18, 50% poor") and labels[1].startswith("External (B): n = 60")
    assert plot_external_calibration(result, fold=0, ax=axes[1]) is axes[1]
    assert "CITL" in axes[1].get_legend().get_texts()[1].get_text()
    assert plot_external_decision_curves(result, fold=0, ax=axes[2]) is axes[2]
    texts = [t.get_text() for t in axes[2].get_legend().get_texts()]
    assert texts[1] == "Treat all (50% poor)" and any("re-weighted to 50% poor" in t for t in texts)
    assert plot_score_vs_slices(result, fold=0, ax=axes[3]) is axes[3]
    marks = axes[3].collections
    assert len(marks) == 4  # two sites x (poor filled, good open)
    assert sum(len(m.get_offsets()) for m in marks) == 18 + 60
    texts = [t.get_text() for t in axes[3].get_legend().get_texts()]
    assert "site A (external, n = 60)" in texts and "site B (internal, n = 18)" in texts
    # per site: poor responders filled, then good responders open (no face colour)
    assert [len(np.asarray(m.get_facecolors())) for m in marks] == [1, 0, 1, 0]
    assert [len(m.get_offsets()) for m in marks] == [30, 30, 9, 9]
    plt.close(fig)
    with pytest.raises(ValueError, match="not in the result"):
        plot_external_roc(result, "baseline:vgg16")
    with pytest.raises(ValueError, match="fold 5"):
        plot_external_roc(result, fold=5)


def test_figure_has_a_row_of_four_panels_per_fold_and_saves(result, tmp_path):
    fig = plot_external_validation(result)
    assert len(fig.axes) == 8
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("ROC") and titles[1].startswith("Calibration") and titles[2].startswith("Decision")
    assert titles[3].startswith("Score against slices") and titles[4].endswith("held out B")
    assert all("Progressive Distill" in t for t in titles)  # the default method: the PD model
    run = RunDir(tmp_path / "run").create()
    png, pdf = save_figure(fig, run, EXTERNAL_FIGURE)
    assert png.stat().st_size > 10_000 and pdf.is_file()
    one = plot_external_validation(result, BASE, fold=1)
    assert len(one.axes) == 4 and all(t.endswith("held out B") for t in (ax.get_title() for ax in one.axes))
    plt.close("all")


def test_figure_draws_a_single_class_external_site():
    patients = make_patients(("A", "B"), n_per_site=40)
    preds = make_predictions(patients, [("A",), ("B",)], methods=(PD,), seeds=(0,))
    gone = preds["split"].eq("external") & preds["patient_id"].str.startswith("A") & preds["response"].eq("poor")
    preds.loc[gone, ["response", "recist"]] = ["good", "PR"]
    res = external_validation(preds, sites_of(patients))
    fig = plot_external_validation(res, fold=0)
    assert "one class" in fig.axes[0].get_legend().get_texts()[1].get_text()
    assert "no decision curve" in fig.axes[2].texts[0].get_text()
    assert format_external_table(res.table)["AUC [95% CI]"].iloc[1] == "n/a"
    plt.close("all")
