"""What the figures and REPORT.md disclose (issue 13): small samples, the training carve, seeds, the decision
curves' prevalence and the scale of the AUC interval."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from prediction_factory import B7, KD7, PD7, make_predictions  # noqa: E402

from pdstudy import evaluate as ev  # noqa: E402
from pdstudy.core.rundir import RunDir  # noqa: E402
from pdstudy.report import figures  # noqa: E402
from pdstudy.report.clinicians import plot_roc_readers  # noqa: E402
from pdstudy.report.document import TRAINING_NOTE, small_sample_warnings, write_report  # noqa: E402
from pdstudy.report.style import save_figure  # noqa: E402
from pdstudy.report.tables import write_evaluation_table  # noqa: E402
from pdstudy.stats import delong_auc_ci  # noqa: E402

BASE7 = f"baseline:{B7}"
METHODS = {BASE7: [1.0], KD7: [1.0, 1.3], PD7: [1.0, 1.6, 2.2]}


def _small_val(preds, drop_poor=3):
    poor_val = sorted(preds.loc[(preds["split"] == "val") & (preds["response"] == "poor"), "patient_id"].unique())
    return preds[~preds["patient_id"].isin(poor_val[:drop_poor])].reset_index(drop=True)


@pytest.fixture(scope="module")
def preds():
    return make_predictions(METHODS)


def _report(tmp_path, preds, *, seeds=(0,), figure=True, dca=""):
    run = RunDir(tmp_path / "run").create()
    write_evaluation_table(ev.table2(preds, include_paper=False), run, "table2", title="Table 2")
    if figure:
        save_figure(figures.plot_decision_curves(preds, [BASE7, PD7]), run, "fig4b_decision_curves")
        plt.close("all")
    run.provenance.write_text(json.dumps({"sections": {
        "02_baselines": {"seeds": list(seeds)},
        "08_report": {"parameters": {"dca_prevalence": dca}}}}))
    path = write_report(run, cohort_name="built-in synthetic cohort", synthetic=True, tables={"Table 2.": "table2"},
                        figures={"Fig. 4B.": "fig4b_decision_curves"} if figure else {}, notes=[])
    return run, path.read_text(encoding="utf-8")


def test_report_warns_about_small_validation_sets(tmp_path):
    run, text = _report(tmp_path, _small_val(make_predictions(METHODS, n_val=23)))
    assert "**Warning, small samples (†).** Table 2.: fewer than 10 patients" in text
    assert "val 20 (8 poor / 12 good): the 'Youden on val' threshold" in text
    warnings = small_sample_warnings(run, {"Table 2.": "table2"})
    assert len(warnings) == 1 and "fewer than 10" in warnings[0]
    assert "†" in (run.tables / "table2.md").read_text(encoding="utf-8")


def test_report_has_no_warning_with_ten_of_each_class(tmp_path):
    run, text = _report(tmp_path, make_predictions(METHODS, n_val=20))
    assert "Warning, small samples" not in text and small_sample_warnings(run, {"T": "table2"}) == []


def test_report_discloses_training_carve_seeds_and_prevalence(tmp_path, preds):
    _, text = _report(tmp_path / "one", preds)
    assert TRAINING_NOTE in text and "minus the validation patients" in TRAINING_NOTE
    assert "One training seed: every number is that of a single model" in text
    assert "drawn at the test set's prevalence" in text
    _, text = _report(tmp_path / "three", preds, seeds=(0, 1, 2), dca="0.3")
    assert "3 training seeds" in text and "SEED ENSEMBLE" in text and "own seed's full splits" in text
    assert "re-weighted to a prevalence of poor response of 0.3" in text
    _, text = _report(tmp_path / "nofig", preds, figure=False)
    assert "Decision curves" not in text


def test_decision_curves_say_which_prevalence(preds):
    fig = figures.plot_decision_curves(preds, [BASE7, PD7])
    assert "at the test set's prevalence (50% poor)" in fig.axes[0].get_title()
    plt.close(fig)
    for value in (0.3, "0.3"):
        fig = figures.plot_decision_curves(preds, [BASE7, PD7], prevalence=value)
        ax = fig.axes[0]
        assert "re-weighted to a prevalence of 30% poor (test set: 50%)" in ax.get_title()
        treat_all = next(ln for ln in ax.get_lines() if ln.get_label().startswith("Treat all"))
        pt = treat_all.get_xdata()
        np.testing.assert_allclose(treat_all.get_ydata(), 0.3 - 0.7 * pt / (1 - pt), atol=1e-12)
        plt.close(fig)
    assert figures.dca_prevalence("") is None and figures.dca_prevalence(None) is None
    for bad in ("abc", 1.5, 0, "1"):
        with pytest.raises(ValueError, match="dca_prevalence must be"):
            figures.plot_decision_curves(preds, [BASE7], prevalence=bad)


def test_roc_figures_name_the_auc_interval(preds):
    fig = figures.plot_roc(preds, [PD7], auc_ci="wald")
    ax = fig.axes[0]
    assert "95% CI: DeLong, Wald" in ax.get_title()
    test = preds[(preds["method"] == PD7) & (preds["stage"] == 2) & (preds["split"] == "test")]
    auc, lo, hi = delong_auc_ci((test["response"] == "poor").astype(int), test["score"], method="wald")
    assert f"AUC {auc:.2f} [{lo:.2f}, {hi:.2f}]" in ax.get_legend().get_texts()[0].get_text()
    plt.close(fig)
    assert "DeLong, logit scale" in figures.plot_roc(preds, [PD7]).axes[0].get_title()
    plt.close("all")
    readers = ev.simulate_readers(ev.patients_of_split(preds), seed=0)
    t3 = ev.table3(preds, readers, method_id=PD7)
    fig = plot_roc_readers(preds, PD7, readers, t3, auc_ci="wald")
    assert "DeLong, Wald" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="auc_ci must be one of"):
        figures.plot_roc(preds, [PD7], auc_ci="exact")
    fig = figures.plot_iteration_curve({"PD": ev.iteration_curve(preds, PD7, auc_ci="wald")})
    assert "95% CI (DeLong, Wald)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
