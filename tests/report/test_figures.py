"""Tests for pdstudy.report.figures: what each figure draws, readable fonts, and saving through report.save_figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from prediction_factory import B3, B7, KD7, PD3, PD7, make_predictions  # noqa: E402

from pdstudy import evaluate as ev  # noqa: E402
from pdstudy.core.rundir import RunDir  # noqa: E402
from pdstudy.evaluate import simulate_readers  # noqa: E402
from pdstudy.report import figures  # noqa: E402
from pdstudy.report.style import save_figure  # noqa: E402

BASE7 = f"baseline:{B7}"
METHODS = {BASE7: [1.0], f"baseline:{B3}": [0.8], KD7: [1.0, 1.3], PD7: [1.0, 1.6, 2.2], PD3: [0.8, 1.1, 1.4]}
SHOWN = [BASE7, KD7, PD7]


@pytest.fixture(scope="module")
def preds():
    return make_predictions(METHODS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return RunDir(tmp_path_factory.mktemp("figrun")).create()


def _check_and_save(fig, run, name):
    """Fonts >= 9 pt for every visible text; PNG + PDF saved and non-trivial."""
    for t in fig.findobj(Text):
        if t.get_visible() and t.get_text().strip():
            assert t.get_fontsize() >= 9, f"{name}: text {t.get_text()!r} is {t.get_fontsize()} pt"
    png, pdf = save_figure(fig, run, name)
    assert png.suffix == ".png" and pdf.suffix == ".pdf"
    assert png.stat().st_size > 1024 and pdf.stat().st_size > 1024
    plt.close(fig)


def _legend_texts(ax_or_fig):
    leg = ax_or_fig.get_legend() if hasattr(ax_or_fig, "get_legend") else None
    return [t.get_text() for t in leg.get_texts()] if leg else []


def test_roc(preds, run):
    readers = simulate_readers(ev.patients_of_split(preds), seed=0)
    fig = figures.plot_roc(preds, SHOWN, readers=readers)
    (ax,) = fig.axes
    lines = ax.get_lines()
    curves = [ln for ln in lines if ln.get_linestyle() != "None"]
    markers = [ln for ln in lines if ln.get_linestyle() == "None"]
    assert len(curves) == len(SHOWN) + 1  # methods + chance diagonal
    assert len(markers) == 3
    texts = _legend_texts(ax)
    assert texts[0].startswith("EfficientNet-B7: AUC ") and "[" in texts[0]
    assert texts[2].startswith("Progressive Distill (B7>B7>B7): AUC")
    t2 = ev.table2(preds, include_paper=False).set_index("method_id")
    assert f"AUC {t2.loc[PD7, 'test_auc']:.2f} [{t2.loc[PD7, 'test_auc_lo']:.2f}" in texts[2]
    assert sum("(simulated)" in t for t in texts) == 3
    _check_and_save(fig, run, "roc")


def test_confusion_by_recist(preds, run):
    fig = figures.plot_confusion_by_recist(preds, PD7, "youden_val")
    (ax,) = fig.axes
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == 8
    assert sum(int(c.split("\n")[0]) for c in cells) == 28
    assert "Youden on val" in ax.get_title()
    _check_and_save(fig, run, "confusion_by_recist")
    fig = figures.plot_confusion_by_recist(preds, PD7, "youden_test")
    assert "optimistic" in fig.axes[0].get_title()
    plt.close(fig)
    no_val = make_predictions({PD7: METHODS[PD7]}, n_val=0)
    with pytest.raises(ValueError, match="youden_test"):
        figures.plot_confusion_by_recist(no_val, PD7, "youden_val")


def test_decision_curves(preds, run):
    fig = figures.plot_decision_curves(preds, SHOWN)
    (ax,) = fig.axes
    assert len(ax.get_lines()) == len(SHOWN) + 2  # methods + treat all + treat none
    texts = _legend_texts(ax)
    assert all("recalibrated on val" in t for t in texts[: len(SHOWN)])
    assert "treat = act on a predicted poor response" in ax.get_xlabel()
    _check_and_save(fig, run, "decision_curves")
    no_val = make_predictions({BASE7: [1.0], PD7: METHODS[PD7]}, n_val=0)
    fig = figures.plot_decision_curves(no_val, [BASE7, PD7])
    assert "uncalibrated" in fig.axes[0].get_title()
    assert all("uncalibrated" in t for t in _legend_texts(fig.axes[0])[:2])
    plt.close(fig)


def test_calibration(preds, run):
    fig = figures.plot_calibration(preds, SHOWN)
    (ax,) = fig.axes
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == len(SHOWN)
    texts = _legend_texts(ax)
    assert sum("Brier" in t for t in texts) == len(SHOWN)
    _check_and_save(fig, run, "calibration")


def test_iteration_curve(preds, run):
    curves = {"PD (B7>B7>B7)": ev.iteration_curve(preds, PD7), "PD (B3>B3>B3)": ev.iteration_curve(preds, PD3)}
    fig = figures.plot_iteration_curve(curves)
    assert len(fig.axes) == 6
    auc_ax = fig.axes[0]
    auc_line = [ln for ln in auc_ax.get_lines() if ln.get_label() == "Test AUC"][0]
    np.testing.assert_allclose(auc_line.get_ydata(), curves["PD (B7>B7>B7)"]["test_auc"])
    assert len(auc_ax.collections) == 1  # the CI band
    assert auc_ax.get_title() == "PD (B7>B7>B7)"
    assert [t.get_text() for t in fig.legends[0].get_texts()][0] == "ACC"
    _check_and_save(fig, run, "iteration_curve")
    with pytest.raises(ValueError, match="empty"):
        figures.plot_iteration_curve({})
