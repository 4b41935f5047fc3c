"""The clinical model, the CT model and their fusion as a person reads them: the table's display version and
the figure (ROC curves and decision curves of the three models).

The numbers come from :mod:`pdstudy.evaluate.clinical_fusion`; what they mean is in ``docs/statistics.md``
("Clinical model and fusion").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from sklearn.metrics import roc_curve

from pdstudy.core.methods import method_from_id
from pdstudy.core.rundir import RunDir
from pdstudy.evaluate import MIN_CLASS_PATIENTS, SMALL_MARK, ClinicalFusion
from pdstudy.report._cells import interval_text, p_text, percent_text
from pdstudy.report._cells import number as _num
from pdstudy.report.figures import AUC_CI_LABELS, dca_prevalence
from pdstudy.report.style import set_style
from pdstudy.report.tables import write_display_and_values
from pdstudy.stats import check_auc_ci, delong_auc_ci, net_benefit

__all__ = [
    "FUSION_FIGURE",
    "FUSION_TABLE",
    "FUSION_TITLE",
    "format_fusion_table",
    "plot_clinical_fusion",
    "plot_fusion_decision_curves",
    "plot_fusion_roc",
    "write_fusion_table",
]

#: File stem of the table (``tables/clinical_fusion.csv`` / ``.md``, numbers in ``clinical_fusion_values.*``).
FUSION_TABLE: Final = "clinical_fusion"
#: File stem of the figure (``figures/clinical_fusion.png`` / ``.pdf``).
FUSION_FIGURE: Final = "clinical_fusion"
#: Title of the table.
FUSION_TITLE: Final = "Clinical model, CT model and their fusion on the test patients"

_MODEL_STYLE: Final = {"clinical": {"linestyle": ":", "idx": 2}, "ct": {"linestyle": "--", "idx": 0},
                       "fusion": {"linestyle": "-", "idx": 1}}
_METRIC_NAMES: Final = {"acc": "ACC", "sen": "SEN", "spe": "SPE"}
_POLICY_WORDS: Final = {"youden_val": "Youden on val", "youden_test": "Youden on test, optimistic"}


def _auc_text(r: dict[str, Any]) -> str:
    return interval_text(r, "test_auc")


def _group_text(r: dict[str, Any], key: str) -> str:
    n, poor = int(r[f"n_{key}"]), int(r[f"n_{key}_poor"])
    small = min(poor, int(r[f"n_{key}_good"])) < MIN_CLASS_PATIENTS
    return f"{n} ({poor}){SMALL_MARK if small else ''}"


def format_fusion_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display version of :func:`pdstudy.evaluate.clinical_fusion_table`: intervals, percentages, p-values as text.

    Parameters
    ----------
    table : pandas.DataFrame
        The numeric table (``attrs["table"] == "clinical_fusion"``).

    Returns
    -------
    pandas.DataFrame
        String cells; a ``Repeat`` column when the table has several repeats; the patient counts as
        ``n (poor)``, marked with :data:`pdstudy.evaluate.SMALL_MARK` below
        :data:`pdstudy.evaluate.MIN_CLASS_PATIENTS` of a class. ``attrs`` are kept.
    """
    if table.attrs.get("table") != "clinical_fusion":
        raise ValueError("format_fusion_table expects the table of pdstudy.evaluate.clinical_fusion_table "
                         f"(attrs['table'] == 'clinical_fusion'), got {table.attrs.get('table')!r}")
    several = table["repeat"].nunique() > 1
    out = []
    for r in table.to_dict("records"):
        d: dict[str, str] = {"Repeat": str(int(r["repeat"]))} if several else {}
        d["Model"] = str(r["method"])
        d["Patients train / fit / test (poor)"] = " / ".join(_group_text(r, k) for k in ("train", "fit", "test"))
        d["Test AUC [95% CI]"] = _auc_text(r)
        d["p vs clinical (DeLong)"] = p_text(r.get("p_vs_clinical"), missing="")
        d["p vs CT (DeLong)"] = p_text(r.get("p_vs_ct"), missing="")
        for policy, words in _POLICY_WORDS.items():
            for m, name in _METRIC_NAMES.items():
                d[f"{name} % ({words})"] = percent_text(r, f"{policy}_{m}")
        slope, icpt = _num(r.get("cal_slope")), _num(r.get("cal_intercept"))
        d["Calibration intercept / slope"] = (f"{icpt:.2f}" if not math.isnan(icpt) else "n/a") + " / " + \
            (f"{slope:.2f}" if not math.isnan(slope) else "n/a")
        d["Brier"] = "n/a" if math.isnan(_num(r.get("brier"))) else f"{_num(r['brier']):.3f}"
        out.append(d)
    disp = pd.DataFrame(out)
    disp.attrs.update(table.attrs)
    return disp


def write_fusion_table(table: pd.DataFrame, run: RunDir, name: str = FUSION_TABLE, *, title: str = FUSION_TITLE,
                       extra_notes: Iterable[str] = ()) -> dict[str, tuple[Path, Path]]:
    """Write the display version as ``tables/<name>.csv/.md`` and the numbers as ``tables/<name>_values.csv/.md``.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`pdstudy.evaluate.clinical_fusion_table`.
    run : pdstudy.core.rundir.RunDir
        Run directory.
    name : str, default :data:`FUSION_TABLE`
        File stem under ``tables/``.
    title : str
        Markdown title.
    extra_notes : iterable of str
        Notes after ``table.attrs["notes"]`` (e.g. how the CT models were chosen).

    Returns
    -------
    dict
        ``{"display": (csv, md), "values": (csv, md)}``.
    """
    return write_display_and_values(table, format_fusion_table(table), run, name, title=title,
                                    notes=[*table.attrs.get("notes", []), *extra_notes])


def _rows(result: ClinicalFusion, model: str, ct_method: str, repeat: int) -> pd.DataFrame:
    s = result.scores
    rows = s[(s["repeat"] == repeat) & (s["model"] == model) & (s["ct_method"] == (ct_method if model != "clinical"
                                                                                   else ""))]
    if rows.empty:
        raise ValueError(f"no {model} scores for {ct_method or 'the clinical model'!r} in repeat {repeat}; CT methods: "
                         f"{list(result.ct_methods)}, repeats: {sorted(s['repeat'].unique())}")
    return rows


def _ct_method(result: ClinicalFusion, ct_method: str | None) -> str:
    if not isinstance(result, ClinicalFusion):
        raise TypeError(f"expected a ClinicalFusion (pdstudy.evaluate.clinical_fusion), got {type(result).__name__}")
    if ct_method is None:
        return result.ct_methods[0]
    if ct_method not in result.ct_methods:
        raise ValueError(f"ct_method {ct_method!r} is not in the result; CT methods: {list(result.ct_methods)}")
    return ct_method


def _styles() -> dict[str, dict[str, Any]]:
    palette = sns.color_palette("colorblind", n_colors=3)
    return {m: {"color": palette[st["idx"]], "linestyle": st["linestyle"], "linewidth": 2.0}
            for m, st in _MODEL_STYLE.items()}


def _names(ct_method: str) -> dict[str, str]:
    label = method_from_id(ct_method).label
    return {"clinical": "Clinical model", "ct": f"CT: {label}", "fusion": "Fusion (CT + clinical)"}


def _where(result: ClinicalFusion, repeat: int) -> str:
    return "test set" if result.protocol == "fixed" else f"pooled out-of-fold test patients, repeat {repeat}"


def plot_fusion_roc(result: ClinicalFusion, ct_method: str | None = None, *, repeat: int = 0, auc_ci: str = "logit",
                    ax: Axes | None = None) -> Axes:
    """ROC curves of the clinical model, one CT model and their fusion on the test patients.

    Parameters
    ----------
    result : pdstudy.evaluate.ClinicalFusion
        :func:`pdstudy.evaluate.clinical_fusion` or :func:`~pdstudy.evaluate.clinical_fusion_cv`.
    ct_method : str, optional
        The CT model (default: the result's first).
    repeat : int, default 0
        Repeat drawn (cross-validation).
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC interval in the legend.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (default: a new figure's).

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_auc_ci(auc_ci, "auc_ci")
    ct_method = _ct_method(result, ct_method)
    if ax is None:
        set_style()
        _, ax = plt.subplots(figsize=(6.4, 6.4))
    styles, names = _styles(), _names(ct_method)
    n = poor = 0
    for model in ("clinical", "ct", "fusion"):
        rows = _rows(result, model, ct_method, repeat)
        y, s = rows["y"].to_numpy(), rows["score"].to_numpy(dtype=float)
        fpr, tpr, _ = roc_curve(y, s)
        auc, lo, hi = delong_auc_ci(y, s, method=auc_ci)
        ax.plot(fpr, tpr, label=f"{names[model]}: AUC {auc:.2f} [{lo:.2f}, {hi:.2f}]", **styles[model])
        n, poor = len(y), int(y.sum())
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=(0, (2, 3)), linewidth=1.2, label="Chance (AUC 0.50)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (good responders called poor)")
    ax.set_ylabel("Sensitivity (poor responders called poor)")
    ax.set_title(f"ROC, {_where(result, repeat)} (n = {n}, {poor} poor)\n95% CI: {AUC_CI_LABELS[auc_ci]}",
                 fontsize=11)
    ax.legend(loc="lower right", fontsize=9, frameon=True)
    return ax


def plot_fusion_decision_curves(result: ClinicalFusion, ct_method: str | None = None, *, repeat: int = 0,
                                thresholds: Sequence[float] | None = None, prevalence: float | str | None = None,
                                ax: Axes | None = None) -> Axes:
    """Decision curves (net benefit) of the clinical model, one CT model and their fusion on the test patients.

    Each model's probability is its logistic map fitted on the fitting patients (validation or out-of-fold):
    the recalibrated clinical and CT scores and the fused probability (:func:`pdstudy.stats.net_benefit`).

    Parameters
    ----------
    result : pdstudy.evaluate.ClinicalFusion
        The comparison.
    ct_method : str, optional
        The CT model (default: the result's first).
    repeat : int, default 0
        Repeat drawn.
    thresholds : sequence of float, optional
        Threshold probabilities; default 0.01, 0.02, ..., 0.80.
    prevalence : float or str, optional
        Prevalence of poor response to re-weight to (:func:`pdstudy.report.dca_prevalence`; default the test
        patients' own).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ct_method = _ct_method(result, ct_method)
    target = dca_prevalence(prevalence)
    if ax is None:
        set_style()
        _, ax = plt.subplots(figsize=(6.4, 6.0))
    pt = np.round(np.arange(0.01, 0.805, 0.01), 2) if thresholds is None else np.asarray(thresholds, dtype=float)
    styles, names = _styles(), _names(ct_method)
    nb = pd.DataFrame()
    y = np.zeros(0)
    for model in ("clinical", "ct", "fusion"):
        rows = _rows(result, model, ct_method, repeat)
        y = rows["y"].to_numpy()
        nb = net_benefit(y, rows["prob"].to_numpy(dtype=float), pt, prevalence=target)
        ax.plot(pt, nb["net_benefit"], label=names[model], **styles[model])
    ax.plot(pt, nb["treat_all"], color="#444444", linewidth=1.4, linestyle="-.", label="Treat all")
    ax.plot(pt, np.zeros_like(pt), color="#888888", linewidth=1.4, linestyle=(0, (1, 1)), label="Treat none")
    shown = float(nb.attrs["prevalence"])
    ax.set_ylim(-0.05, max(shown, 0.05) * 1.15)
    ax.set_xlim(pt.min(), pt.max())
    ax.set_xlabel("Threshold probability of poor response")
    ax.set_ylabel("Net benefit")
    fit = "validation" if result.fit_on == "val" else "out-of-fold"
    where = (f"at the test prevalence ({100 * y.mean():.0f}% poor)" if target is None
             else f"re-weighted to {100 * target:.0f}% poor")
    ax.set_title(f"Decision curves, {_where(result, repeat)} (n = {len(y)})\n{where}; probabilities fitted on "
                 f"{fit} patients", fontsize=11)
    ax.legend(loc="upper right", fontsize=9, frameon=True)
    return ax


def plot_clinical_fusion(result: ClinicalFusion, *, ct_methods: Sequence[str] | None = None, repeat: int = 0,
                         auc_ci: str = "logit", prevalence: float | str | None = None) -> plt.Figure:
    """The figure of the comparison: per CT model, ROC curves and decision curves of the three models.

    Parameters
    ----------
    result : pdstudy.evaluate.ClinicalFusion
        The comparison.
    ct_methods : sequence of str, optional
        CT models, one row of panels each (default: every CT model of the result).
    repeat : int, default 0
        Repeat drawn (cross-validation).
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals.
    prevalence : float or str, optional
        Prevalence of the decision curves (:func:`pdstudy.report.dca_prevalence`).

    Returns
    -------
    matplotlib.figure.Figure
        ``len(ct_methods)`` rows x 2 columns (ROC, decision curves).
    """
    if not isinstance(result, ClinicalFusion):
        raise TypeError(f"expected a ClinicalFusion (pdstudy.evaluate.clinical_fusion), got {type(result).__name__}")
    methods = list(result.ct_methods if ct_methods is None else ct_methods)
    if not methods:
        raise ValueError("ct_methods is empty; name at least one CT model of the result")
    set_style()
    fig, axes = plt.subplots(len(methods), 2, figsize=(13.0, 6.4 * len(methods)), squeeze=False)
    for i, mid in enumerate(methods):
        plot_fusion_roc(result, mid, repeat=repeat, auc_ci=auc_ci, ax=axes[i, 0])
        plot_fusion_decision_curves(result, mid, repeat=repeat, prevalence=prevalence, ax=axes[i, 1])
        axes[i, 0].annotate(method_from_id(mid).label, xy=(0, 1.18), xycoords="axes fraction", fontsize=12,
                            fontweight="bold")
    fig.tight_layout()
    return fig
