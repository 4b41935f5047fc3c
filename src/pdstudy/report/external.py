"""External validation as a person reads it: the table's display version and files, and the figure (per fold: ROC
internal vs external, calibration of the recalibrated probability, decision curves at the external prevalence, and
the final score against the slices each patient kept).

The numbers come from :mod:`pdstudy.evaluate.external`; what they mean is in ``docs/statistics.md`` ("External
validation").
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from sklearn.metrics import roc_curve

from pdstudy.core.methods import method_from_id
from pdstudy.core.rundir import RunDir
from pdstudy.evaluate import DCA_THRESHOLDS, EXTERNAL_POLICY_LABELS, MIN_CLASS_PATIENTS, SMALL_MARK, ExternalValidation
from pdstudy.report._cells import interval_text, p_text, percent_text
from pdstudy.report._cells import number as _num
from pdstudy.report.figures import AUC_CI_LABELS
from pdstudy.report.style import set_style
from pdstudy.report.tables import write_display_and_values
from pdstudy.stats import calibration_curve, net_benefit

__all__ = [
    "EXTERNAL_FIGURE",
    "EXTERNAL_TABLE",
    "EXTERNAL_TITLE",
    "format_external_table",
    "plot_external_calibration",
    "plot_external_decision_curves",
    "plot_external_roc",
    "plot_external_validation",
    "plot_score_vs_slices",
    "write_external_table",
]

#: File stem of the table (``tables/external_validation.csv`` / ``.md``, numbers in ``external_validation_values.*``).
EXTERNAL_TABLE: Final = "external_validation"
#: File stem of the figure (``figures/external_validation.png`` / ``.pdf``).
EXTERNAL_FIGURE: Final = "external_validation"
#: Title of the table.
EXTERNAL_TITLE: Final = "External validation: the training sites' test patients against the held-out site(s)"

_SET_STYLE: Final = {"internal": {"idx": 0, "linestyle": "--", "marker": "s"},
                     "external": {"idx": 3, "linestyle": "-", "marker": "o"}}
_SITE_MARKERS: Final = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Colours of the sites (indices of seaborn's "colorblind" palette), apart from the test sets' blue and vermilion.
_SITE_COLOURS: Final = (2, 4, 5, 9, 7, 8, 6, 1)
_METRIC_NAMES: Final = {"sen": "SEN", "spe": "SPE"}


# --------------------------------------------------------------------------------------------- the table


def _count(r: dict[str, Any], prefix: str) -> str:
    n, poor, good = (int(r[f"{prefix}{k}"]) for k in ("", "_poor", "_good"))
    return f"{n} ({poor})" + (SMALL_MARK if 0 < n and min(poor, good) < MIN_CLASS_PATIENTS else "")


def format_external_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display version of :func:`pdstudy.evaluate.external_validation`'s table: intervals, percentages, p as text.

    Parameters
    ----------
    table : pandas.DataFrame
        ``ExternalValidation.table`` (``attrs["table"] == "external_validation"``).

    Returns
    -------
    pandas.DataFrame
        String cells, one row per method x fold x test set: method, held-out site(s) (and the fold when there
        are several), test set with its sites, the test patients and the validation patients the map and threshold
        were fitted on as ``n (poor)`` (marked :data:`pdstudy.evaluate.SMALL_MARK` below
        :data:`pdstudy.evaluate.MIN_CLASS_PATIENTS` of a class), AUC, AUC drop and its p (external rows), SEN/SPE
        under both policies, calibration-in-the-large, calibration slope, Brier. ``attrs`` are kept.
    """
    if table.attrs.get("table") != "external_validation":
        raise ValueError("format_external_table expects the table of pdstudy.evaluate.external_validation "
                         f"(attrs['table'] == 'external_validation'), got {table.attrs.get('table')!r}")
    several = table["fold"].nunique() > 1
    out = []
    for r in table.to_dict("records"):
        external = r["test_set"] == "external"
        d: dict[str, str] = {"Method": str(r["label"])}
        if several:
            d["Fold"] = str(int(r["fold"]))
        d["Held out"] = str(r["held_out"]).replace("+", ", ")
        d["Test set (sites)"] = f"{r['test_set']} ({r['sites']})"
        d["Patients (poor)"] = _count(r, "n")
        d["Fitted on: val (poor)"] = _count(r, "n_val")
        d["AUC [95% CI]"] = interval_text(r, "auc")
        d["AUC drop, ext - int [95% CI]"] = interval_text(r, "auc_drop", signed=True) if external else ""
        d["p (drop)"] = p_text(r.get("auc_drop_p")) if external else ""
        for policy, words in EXTERNAL_POLICY_LABELS.items():
            for m, name in _METRIC_NAMES.items():
                shown = external or policy == "youden_val"
                d[f"{name} % ({words})"] = percent_text(r, f"{policy}_{m}") if shown else ""
        d["Calibration-in-the-large [95% CI]"] = interval_text(r, "cal_intercept", signed=True)
        d["Calibration slope [95% CI]"] = interval_text(r, "cal_slope")
        d["Brier"] = "n/a" if math.isnan(_num(r.get("brier"))) else f"{_num(r['brier']):.3f}"
        out.append(d)
    disp = pd.DataFrame(out)
    disp.attrs.update(table.attrs)
    return disp


def write_external_table(result: ExternalValidation, run: RunDir, name: str = EXTERNAL_TABLE, *,
                         title: str = EXTERNAL_TITLE, extra_notes: Iterable[str] = ()) -> dict[str, tuple[Path, Path]]:
    """Write ``tables/<name>.csv/.md`` (display) and ``tables/<name>_values.csv/.md`` (numbers), with the notes.

    The notes (``result.notes``) say what was fitted on which patients, the threshold policies, the intervals,
    the held-out sites per fold and the patients each number rests on.

    Parameters
    ----------
    result : pdstudy.evaluate.ExternalValidation
        :func:`pdstudy.evaluate.external_validation`.
    run : pdstudy.core.rundir.RunDir
        Run directory.
    name : str, default :data:`EXTERNAL_TABLE`
        File stem under ``tables/``.
    title : str
        Markdown title.
    extra_notes : iterable of str
        Notes after the result's.

    Returns
    -------
    dict
        ``{"display": (csv, md), "values": (csv, md)}``.
    """
    if not isinstance(result, ExternalValidation):
        raise TypeError(f"write_external_table expects an ExternalValidation, got {type(result).__name__}")
    return write_display_and_values(result.table, format_external_table(result.table), run, name, title=title,
                                    notes=[*result.notes, *extra_notes])


# --------------------------------------------------------------------------------------------- the figure


def _check(result: ExternalValidation, method: str | None, fold: int | None) -> tuple[str, int]:
    """The method (default: the first PD method, else KD, else the first) and fold (default: the first)."""
    if not isinstance(result, ExternalValidation):
        raise TypeError(f"expected an ExternalValidation (pdstudy.evaluate.external_validation), got "
                        f"{type(result).__name__}")
    if method is None:
        kinds = [method_from_id(m).kind for m in result.methods]
        method = next((m for kind in ("pd", "kd") for m, k in zip(result.methods, kinds) if k == kind),
                      result.methods[0])
    elif method not in result.methods:
        raise ValueError(f"method {method!r} is not in the result; methods: {list(result.methods)}")
    if fold is None:
        fold = result.folds[0]
    elif int(fold) not in result.held_out:
        raise ValueError(f"fold {fold!r} is not in the result; folds: {list(result.folds)}")
    return method, int(fold)


def _set_rows(result: ExternalValidation, method: str, fold: int, test_set: str) -> pd.DataFrame:
    c = result.curves
    return c[(c["method"] == method) & (c["fold"] == fold) & (c["test_set"] == test_set)]


def _row(result: ExternalValidation, method: str, fold: int, test_set: str) -> dict[str, Any]:
    t = result.table
    return t[(t["method"] == method) & (t["fold"] == fold) & (t["test_set"] == test_set)].iloc[0].to_dict()


def _set_name(r: dict[str, Any]) -> str:
    """``External (A): n = 40, 45% poor``."""
    return f"{r['test_set'].capitalize()} ({r['sites']}): n = {int(r['n'])}, {100 * float(r['prevalence']):.0f}% poor"


def _colour(test_set: str) -> Any:
    return sns.color_palette("colorblind", n_colors=10)[_SET_STYLE[test_set]["idx"]]


def _new_axes(ax: Axes | None, size: tuple[float, float] = (6.0, 6.0)) -> Axes:
    if ax is None:
        set_style()
        _, ax = plt.subplots(figsize=size)
    return ax


def _title(result: ExternalValidation, method: str, fold: int, what: str) -> str:
    return f"{what}\n{method_from_id(method).label}, held out {', '.join(result.held_out[fold])}"


def plot_external_roc(result: ExternalValidation, method: str | None = None, *, fold: int | None = None,
                      ax: Axes | None = None) -> Axes:
    """ROC curves of one method on the internal and the external test patients of one fold.

    Parameters
    ----------
    result : pdstudy.evaluate.ExternalValidation
        The evaluation.
    method : str, optional
        Method ID (default: the result's first PD method, else its first KD method, else its first).
    fold : int, optional
        Fold (default: the first).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (default: a new figure's).

    Returns
    -------
    matplotlib.axes.Axes
        Legend: each test set's sites, n, prevalence and AUC with its interval.
    """
    method, fold = _check(result, method, fold)
    ax = _new_axes(ax)
    for test_set in ("internal", "external"):
        rows, r = _set_rows(result, method, fold, test_set), _row(result, method, fold, test_set)
        y = rows["y"].to_numpy()
        label = f"{_set_name(r)}\nAUC {interval_text(r, 'auc')}"
        if 0 < y.sum() < len(y):
            fpr, tpr, _ = roc_curve(y, rows["score"].to_numpy(dtype=float))
            ax.plot(fpr, tpr, color=_colour(test_set), linestyle=_SET_STYLE[test_set]["linestyle"], linewidth=2.2,
                    label=label)
        else:
            ax.plot([], [], color=_colour(test_set), label=f"{_set_name(r)}\nAUC n/a (one class)")
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=(0, (2, 3)), linewidth=1.2, label="Chance")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (good called poor)")
    ax.set_ylabel("Sensitivity (poor called poor)")
    ax.set_title(_title(result, method, fold, f"ROC ({AUC_CI_LABELS[result.auc_ci]} CI)"), fontsize=11)
    drop = _row(result, method, fold, "external")
    ax.text(0.98, 0.02, f"drop {interval_text(drop, 'auc_drop', signed=True)}\np {p_text(drop['auc_drop_p'])}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#cccccc"})
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=9, frameon=False)
    return ax


def plot_external_calibration(result: ExternalValidation, method: str | None = None, *, fold: int | None = None,
                              n_bins: int = 4, ax: Axes | None = None) -> Axes:
    """Reliability of the recalibrated probability (map fitted on the fold's validation patients) per test set.

    Parameters
    ----------
    result : pdstudy.evaluate.ExternalValidation
        The evaluation.
    method : str, optional
        Method ID (default as :func:`plot_external_roc`).
    fold : int, optional
        Fold (default: the first).
    n_bins : int, default 4
        Quantile bins per test set (few: the sets are small).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    matplotlib.axes.Axes
        Observed share of poor responders (Wilson intervals) against the mean probability per bin; the legend
        gives each test set's n, prevalence, calibration-in-the-large and slope.
    """
    method, fold = _check(result, method, fold)
    ax = _new_axes(ax)
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=(0, (2, 3)), linewidth=1.2, label="Perfect calibration")
    for off, test_set in zip((-0.01, 0.01), ("internal", "external"), strict=True):
        rows, r = _set_rows(result, method, fold, test_set), _row(result, method, fold, test_set)
        prob = rows["prob"].to_numpy(dtype=float)
        label = (f"{_set_name(r)}\nCITL {interval_text(r, 'cal_intercept', signed=True)}, "
                 f"slope {interval_text(r, 'cal_slope')}")
        if np.isnan(prob).any():
            ax.plot([], [], color=_colour(test_set), label=f"{_set_name(r)}\nno recalibration map")
            continue
        cc = calibration_curve(rows["y"].to_numpy(), prob, n_bins=n_bins, strategy="quantile")
        obs = cc["observed"]
        ax.errorbar(cc["mean_predicted"] + off, obs, yerr=np.vstack([obs - cc["observed_lo"], cc["observed_hi"] - obs]),
                    color=_colour(test_set), linestyle=_SET_STYLE[test_set]["linestyle"], linewidth=2.0,
                    marker=_SET_STYLE[test_set]["marker"], markersize=6, capsize=4, label=label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("Mean recalibrated probability of poor response (bin)")
    ax.set_ylabel("Observed share poor (95% Wilson CI)")
    ax.set_title(_title(result, method, fold, f"Calibration, map fitted on val ({n_bins} quantile bins)"), fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=9, frameon=False)
    return ax


def plot_external_decision_curves(result: ExternalValidation, method: str | None = None, *, fold: int | None = None,
                                  ax: Axes | None = None) -> Axes:
    """Decision curves at the external prevalence: the model on the external patients, and on the internal ones
    re-weighted to the external prevalence (their sensitivity and specificity at each threshold taken as is).

    Parameters
    ----------
    result : pdstudy.evaluate.ExternalValidation
        The evaluation.
    method : str, optional
        Method ID (default as :func:`plot_external_roc`).
    fold : int, optional
        Fold (default: the first).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    matplotlib.axes.Axes
        Net benefit of the recalibrated probability (:func:`pdstudy.stats.net_benefit`), treat all at the external
        prevalence, treat none.
    """
    method, fold = _check(result, method, fold)
    ax = _new_axes(ax)
    pt = np.asarray(DCA_THRESHOLDS)
    ext_rows, ext = _set_rows(result, method, fold, "external"), _row(result, method, fold, "external")
    pi = float(ext["prevalence"])
    ax.plot(pt, np.zeros_like(pt), color="#888888", linewidth=1.4, linestyle=(0, (1, 1)), label="Treat none")
    if not 0.0 < pi < 1.0 or ext_rows["prob"].isna().any():
        ax.text(0.5, 0.5, "no decision curve:\none class or no recalibration map", ha="center", va="center",
                transform=ax.transAxes, fontsize=10)
    else:
        ax.plot(pt, pi - (1 - pi) * pt / (1 - pt), color="#444444", linewidth=1.4, linestyle="-.",
                label=f"Treat all ({100 * pi:.0f}% poor)")
        for test_set in ("internal", "external"):
            rows, r = _set_rows(result, method, fold, test_set), _row(result, method, fold, test_set)
            y = rows["y"].to_numpy()
            if not 0 < y.sum() < len(y):
                continue
            nb = net_benefit(y, rows["prob"].to_numpy(dtype=float), pt, prevalence=pi)
            extra = "" if test_set == "external" else f"\nre-weighted to {100 * pi:.0f}% poor"
            ax.plot(pt, nb["net_benefit"], color=_colour(test_set), linestyle=_SET_STYLE[test_set]["linestyle"],
                    linewidth=2.2, label=_set_name(r) + extra)
    ax.set_xlim(pt.min(), pt.max())
    ax.set_ylim(-0.05, max(pi, 0.05) * 1.15 if 0 < pi < 1 else 0.5)
    ax.set_xlabel("Threshold probability of poor response")
    ax.set_ylabel("Net benefit")
    ax.set_title(_title(result, method, fold, "Decision curves at the external prevalence"), fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=9, frameon=False)
    return ax


def plot_score_vs_slices(result: ExternalValidation, method: str | None = None, *, fold: int | None = None,
                         ax: Axes | None = None) -> Axes:
    """Final score against the slices each patient kept, per site (filled = poor, open = good).

    Slice thickness sets how many slices a patient keeps, and the top-k score averages the top ``top_k`` of them;
    a site whose scores move with its slice count shows it here. Internal and external test patients of the fold;
    the horizontal line is the transported validation threshold.

    Parameters
    ----------
    result : pdstudy.evaluate.ExternalValidation
        The evaluation.
    method : str, optional
        Method ID (default as :func:`plot_external_roc`).
    fold : int, optional
        Fold (default: the first).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on.

    Returns
    -------
    matplotlib.axes.Axes
    """
    method, fold = _check(result, method, fold)
    ax = _new_axes(ax)
    c = result.curves
    rows = c[(c["method"] == method) & (c["fold"] == fold)]
    k = pd.to_numeric(rows["n_slices"], errors="coerce").astype(float).to_numpy()
    if np.isnan(k).all():
        ax.text(0.5, 0.5, "slices kept not recorded\n(prediction files without n_slices)", ha="center", va="center",
                transform=ax.transAxes, fontsize=10)
    sites = sorted(rows["site"].unique())
    palette = [sns.color_palette("colorblind", n_colors=10)[i] for i in _SITE_COLOURS]
    held = set(result.held_out[fold])
    handles = []
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, len(rows))
    for i, site in enumerate(sites):
        at = (rows["site"] == site).to_numpy()
        colour, marker = palette[i % len(palette)], _SITE_MARKERS[i % len(_SITE_MARKERS)]
        for poor in (True, False):
            sel = at & ((rows["y"] == 1).to_numpy() == poor)
            ax.scatter(k[sel] + jitter[sel], rows["score"].to_numpy()[sel], s=36, marker=marker, linewidths=1.3,
                       edgecolors=colour, facecolors=colour if poor else "none", alpha=0.85)
        handles.append(Line2D([], [], linestyle="", marker=marker, markersize=7, color=colour,
                              label=f"site {site} ({'external' if site in held else 'internal'}, n = {int(at.sum())})"))
    handles += [Line2D([], [], linestyle="", marker="o", markersize=7, color="#555555", label="poor (filled)"),
                Line2D([], [], linestyle="", marker="o", markersize=7, markerfacecolor="none", color="#555555",
                       label="good (open)")]
    thr = _row(result, method, fold, "external")["youden_val_threshold"]
    if not math.isnan(_num(thr)):
        ax.axhline(float(thr), color="#444444", linestyle=":", linewidth=1.4)
        handles.append(Line2D([], [], color="#444444", linestyle=":", label="threshold (Youden on val)"))
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("Slices kept (cached slices of the patient)")
    ax.set_ylabel("Final score (seed mean of top-k slices)")
    ax.set_title(_title(result, method, fold, "Score against slices kept"), fontsize=11)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=9, frameon=False, ncol=2)
    return ax


def plot_external_validation(result: ExternalValidation, method: str | None = None, *,
                             fold: int | None = None) -> plt.Figure:
    """The figure of the section: per fold, ROC, calibration, decision curves and score against slices kept.

    Parameters
    ----------
    result : pdstudy.evaluate.ExternalValidation
        The evaluation.
    method : str, optional
        Method ID drawn (default: the result's first PD method, else its first KD method, else its first).
    fold : int, optional
        One fold; default every fold, one row each.

    Returns
    -------
    matplotlib.figure.Figure
        ``n_folds`` rows x 4 columns (:func:`plot_external_roc`, :func:`plot_external_calibration`,
        :func:`plot_external_decision_curves`, :func:`plot_score_vs_slices`).
    """
    method, first = _check(result, method, fold)
    folds = list(result.folds) if fold is None else [first]
    set_style()
    fig, axes = plt.subplots(len(folds), 4, figsize=(24.0, 8.0 * len(folds)), squeeze=False)
    for i, f in enumerate(folds):
        plot_external_roc(result, method, fold=f, ax=axes[i, 0])
        plot_external_calibration(result, method, fold=f, ax=axes[i, 1])
        plot_external_decision_curves(result, method, fold=f, ax=axes[i, 2])
        plot_score_vs_slices(result, method, fold=f, ax=axes[i, 3])
    fig.tight_layout(h_pad=3.0)
    return fig
