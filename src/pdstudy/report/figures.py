"""Evaluation figures: ROC (Fig. 3), confusion by RECIST and decision curves (Fig. 4), calibration, iterations (Fig. 6).

Each function draws from prediction rows (or a table of :mod:`pdstudy.evaluate`) in the style of
:func:`pdstudy.report.style.set_style` and returns the :class:`matplotlib.figure.Figure`; save it with
:func:`pdstudy.report.style.save_figure`. What each figure shows (seed-averaged scores, recalibration,
net benefit, intervals) is described in ``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import roc_curve

from pdstudy.core.methods import method_from_id
from pdstudy.core.vocab import (
    PAPER_LABEL_FOOTNOTE,
    RECIST_CODES,
    RECIST_NAMES,
    RECIST_TO_RESPONSE,
    RESPONSES,
    paper_label,
)
from pdstudy.evaluate import (
    POLICIES,
    POLICY_LABELS,
    choose_threshold,
    has_both_classes,
    is_simulated,
    method_scores,
    patients_of_split,
    reader_metrics,
)
from pdstudy.report.style import RESPONSE_COLOURS, set_style
from pdstudy.stats import brier_score, calibration_curve, check_auc_ci, delong_auc_ci, net_benefit, recalibrate

__all__ = [
    "AUC_CI_LABELS",
    "dca_prevalence",
    "plot_calibration",
    "plot_confusion_by_recist",
    "plot_decision_curves",
    "plot_iteration_curve",
    "plot_roc",
]

_KIND_STYLE = {"baseline": ":", "kd": "--", "pd": "-"}
_PALETTE_SIZE = 10  # colours of seaborn's "colorblind" palette
_READER_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_METRIC_COLOURS = {"acc": "#4c72b0", "sen": RESPONSE_COLOURS["poor"], "spe": RESPONSE_COLOURS["good"]}
_METRIC_LABELS = {"acc": "ACC", "sen": "SEN (poor called poor)", "spe": "SPE (good called good)"}
_LEGEND_FONT = 10

#: How a figure names the scale of its DeLong AUC interval.
AUC_CI_LABELS = {"logit": "DeLong, logit scale", "wald": "DeLong, Wald"}


def _styles(method_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not method_ids:
        raise ValueError("method_ids is empty; name at least one method")
    n = max(len(method_ids), 3)
    # seaborn's colour-blind palette has 10 colours and repeats after them: more methods (the paper profile's
    # baseline panel has 12) get as many distinct hues
    palette = sns.color_palette("colorblind" if n <= _PALETTE_SIZE else "husl", n_colors=n)
    return {mid: {"color": palette[i], "linestyle": _KIND_STYLE[method_from_id(mid).kind], "linewidth": 2.0}
            for i, mid in enumerate(method_ids)}


def _split_rows(scores: pd.DataFrame, split: str, method_id: str) -> pd.DataFrame:
    rows = scores[scores["split"] == split]
    if not has_both_classes(rows["y"].to_numpy()):
        raise ValueError(f"method {method_id!r}: split {split!r} needs poor and good responders "
                         f"({int(rows['y'].sum())} poor of {len(rows)})")
    return rows


def _seed_tag(scores: pd.DataFrame) -> str:
    n = int(scores["n_seeds"].iloc[0])
    return f", seed ensemble of {n} models" if n > 1 else ""


def plot_roc(
    preds: pd.DataFrame,
    method_ids: Sequence[str],
    *,
    readers: pd.DataFrame | None = None,
    split: str = "test",
    auc_ci: str = "logit",
) -> plt.Figure:
    """ROC curves of the methods' final models, with reader operating points (Fig. 3).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_ids : sequence of str
        Methods to draw, in legend order (e.g. baselines, KD, PD).
    readers : pandas.DataFrame, optional
        Readers frame (:mod:`pdstudy.evaluate.readers`) calling the patients of ``split``; each reader is a
        marker at (1 - specificity, sensitivity).
    split : {"test", "val", "train"}, default "test"
        Split drawn.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC interval in the legend (named in the title).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: one line per method (legend: label, AUC and DeLong 95% CI), the chance diagonal, one
        marker per reader.
    """
    check_auc_ci(auc_ci, "auc_ci")
    set_style()
    styles = _styles(method_ids)
    fig, ax = plt.subplots(figsize=(7.6, 9.4))
    for mid in method_ids:
        scores = method_scores(preds, mid)
        rows = _split_rows(scores, split, mid)
        y, s = rows["y"].to_numpy(), rows["score"].to_numpy()
        fpr, tpr, _ = roc_curve(y, s)
        auc, lo, hi = delong_auc_ci(y, s, method=auc_ci)
        label = f"{method_from_id(mid).label}: AUC {auc:.2f} [{lo:.2f}, {hi:.2f}]{_seed_tag(scores)}"
        ax.plot(fpr, tpr, label=label, **styles[mid])
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=(0, (2, 3)), linewidth=1.2, label="Chance (AUC 0.50)")
    if readers is not None:
        patients = patients_of_split(preds, split)
        rm = reader_metrics(readers, patients)
        for i, r in rm.iterrows():
            name = str(r["reader_id"])
            if (r["simulated"] or is_simulated(name)) and "simulated" not in name.lower():
                name += " (simulated)"
            ax.plot([1 - r["spe"]], [r["sen"]], linestyle="none", marker=_READER_MARKERS[i % len(_READER_MARKERS)],
                    markersize=9, markeredgecolor="black", markerfacecolor="#f0e442" if i % 2 == 0 else "#cc79a7",
                    label=f"{name}: SEN {100 * r['sen']:.1f}%, SPE {100 * r['spe']:.1f}%", zorder=5)
            ax.annotate(name, (1 - r["spe"], r["sen"]), textcoords="offset points", xytext=(9, -12), fontsize=9.5,
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
                        zorder=6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (good responders called poor)")
    ax.set_ylabel("Sensitivity (poor responders called poor)")
    n, poor = len(rows), int(rows["y"].sum())
    ax.set_title(f"ROC, {split} set (n = {n}, {poor} poor); 95% CI: {AUC_CI_LABELS[auc_ci]}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, fontsize=_LEGEND_FONT, frameon=False)
    fig.tight_layout()
    return fig


def plot_confusion_by_recist(preds: pd.DataFrame, method_id: str, threshold_policy: str = "youden_val") -> plt.Figure:
    """Predicted good / poor response per RECIST category on the test set (Fig. 4, left).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_id : str
        Method (final stage, seed-averaged score).
    threshold_policy : {"youden_val", "youden_test"}, default "youden_val"
        How the threshold is chosen (``youden_test`` is optimistic and says so in the title).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: a 4 x 2 heatmap of counts (rows CR, PR, SD, PD; columns predicted good, predicted poor),
        each cell annotated with the count and the row percentage.

    Raises
    ------
    ValueError
        On an unknown policy, or ``youden_val`` without validation patients of both classes.
    """
    if threshold_policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {threshold_policy!r}; expected one of {POLICIES}")
    set_style()
    scores = method_scores(preds, method_id)
    test = scores[scores["split"] == "test"]
    thr = choose_threshold(scores, threshold_policy)
    if np.isnan(thr):
        raise ValueError(f"method {method_id!r}: threshold policy 'youden_val' needs validation patients of both "
                         "classes; this run has none (use threshold_policy='youden_test', labelled optimistic)")
    pred_poor = test["score"].to_numpy() >= thr
    counts = np.array([[int(((test["recist"] == rc).to_numpy() & ~pred_poor).sum()),
                        int(((test["recist"] == rc).to_numpy() & pred_poor).sum())] for rc in RECIST_CODES])
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    annot = np.array([[f"{c}\n({100 * p:.0f}%)" if t else "0" for c, p in zip(crow, prow)]
                      for crow, prow, t in zip(counts, share, totals[:, 0])])
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    sns.heatmap(share, annot=annot, fmt="", cmap="Blues", vmin=0, vmax=1, cbar=False, linewidths=1.5,
                linecolor="white", annot_kws={"fontsize": 12}, ax=ax)
    ax.set_xticklabels(["Predicted good", "Predicted poor"], fontsize=11)
    ylabels = [f"{rc}: {RECIST_NAMES[rc]}\n({RECIST_TO_RESPONSE[rc]} response, n = {int(t)})"
               for rc, t in zip(RECIST_CODES, totals[:, 0])]
    ax.set_yticklabels(ylabels, rotation=0, fontsize=10)
    for tick, rc in zip(ax.get_yticklabels(), RECIST_CODES):
        tick.set_color(RESPONSE_COLOURS[RECIST_TO_RESPONSE[rc]])
    ax.axhline(2, color="black", linewidth=2.0)
    ax.set_xlabel("")
    ax.set_ylabel("RECIST 1.1 category (truth)")
    policy = POLICY_LABELS[threshold_policy]
    ax.set_title(f"{method_from_id(method_id).label}{_seed_tag(scores)}\ntest set (n = {len(test)}), threshold "
                 f"{thr:.3f} ({policy})", fontsize=12)
    fig.tight_layout()
    return fig


def _calibration_word(any_cal: bool, any_raw: bool) -> str:
    if any_cal and not any_raw:
        return "recalibrated on validation (Platt)"
    return "uncalibrated scores" if not any_cal else "partly uncalibrated"


def _calibrated(scores: pd.DataFrame, method_id: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Test labels and probabilities, recalibrated (Platt) on the val rows when they have both classes."""
    test = _split_rows(scores, "test", method_id)
    val = scores[scores["split"] == "val"]
    y, s = test["y"].to_numpy(), test["score"].to_numpy()
    if has_both_classes(val["y"].to_numpy()):
        return y, recalibrate(val["score"].to_numpy(), val["y"].to_numpy(), s, "platt"), True
    return y, np.clip(s, 0.0, 1.0), False


def dca_prevalence(value: float | str | None) -> float | None:
    """The prevalence of the decision curves from the notebooks' ``dca_prevalence`` parameter.

    Parameters
    ----------
    value : float, str or None
        ``""`` or None: the test set's own prevalence; otherwise a number (or its text) strictly between
        0 and 1.

    Returns
    -------
    float or None
        The prevalence, or None for the test set's.

    Raises
    ------
    ValueError
        When the value is not empty and not a number strictly between 0 and 1.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        pi = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"dca_prevalence must be '' (the test set's prevalence) or a number strictly between 0 "
                         f"and 1, got {value!r}") from None
    if isinstance(value, bool) or not 0.0 < pi < 1.0:
        raise ValueError(f"dca_prevalence must be '' (the test set's prevalence) or a number strictly between 0 "
                         f"and 1, got {value!r}")
    return pi


def plot_decision_curves(
    preds: pd.DataFrame,
    method_ids: Sequence[str],
    *,
    thresholds: Sequence[float] | None = None,
    prevalence: float | str | None = None,
) -> plt.Figure:
    """Decision curves (net benefit) on the test set after recalibration on validation (Fig. 4, right).

    Each method's test scores are recalibrated with Platt scaling fitted on its validation patients
    (:func:`pdstudy.stats.recalibrate`); without validation patients of both classes the raw scores
    are used and the legend says "uncalibrated". The net benefit is computed at the test set's
    prevalence of poor response (by design about half of the test patients), unless ``prevalence``
    re-weights the test set's sensitivity and false-positive rate to another one
    (:func:`pdstudy.stats.net_benefit`); the title says which.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_ids : sequence of str
        Methods to draw.
    thresholds : sequence of float, optional
        Threshold probabilities; default 0.01, 0.02, ..., 0.80.
    prevalence : float or str, optional
        Prevalence of poor response to re-weight to (:func:`dca_prevalence`: ``""`` or None for the test
        set's own).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: one line per method, "Treat all" and "Treat none".
    """
    target = dca_prevalence(prevalence)
    set_style()
    styles = _styles(method_ids)
    pt = np.round(np.arange(0.01, 0.805, 0.01), 2) if thresholds is None else np.asarray(thresholds, dtype=float)
    fig, ax = plt.subplots(figsize=(7.6, 7.2))
    test_prev, n, any_raw, any_cal = 0.0, 0, False, False
    for mid in method_ids:
        scores = method_scores(preds, mid)
        y, p, cal = _calibrated(scores, mid)
        any_raw |= not cal
        any_cal |= cal
        nb = net_benefit(y, p, pt, prevalence=target)
        tag = "recalibrated on val" if cal else "uncalibrated"
        ax.plot(pt, nb["net_benefit"], label=f"{method_from_id(mid).label} ({tag}{_seed_tag(scores)})", **styles[mid])
        test_prev, n = float(y.mean()), len(y)
        treat_all = nb["treat_all"]
    shown = test_prev if target is None else target
    ax.plot(pt, treat_all, color="#444444", linewidth=1.6, linestyle="-.", label="Treat all (act on every patient)")
    ax.plot(pt, np.zeros_like(pt), color="#888888", linewidth=1.6, linestyle=(0, (1, 1)),
            label="Treat none (act on no one)")
    ax.set_ylim(-0.05, max(shown, 0.05) * 1.15)
    ax.set_xlim(pt.min(), pt.max())
    ax.set_xlabel("Threshold probability of poor response\n"
                  "(treat = act on a predicted poor response, e.g. reconsider conversion therapy)")
    ax.set_ylabel("Net benefit")
    cal_word = _calibration_word(any_cal, any_raw)
    where = (f"at the test set's prevalence ({100 * test_prev:.0f}% poor)" if target is None else
             f"re-weighted to a prevalence of {100 * target:.0f}% poor (test set: {100 * test_prev:.0f}%)")
    ax.set_title(f"Decision curves, test set (n = {n})\n{where}; {cal_word}", fontsize=12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.21), fontsize=_LEGEND_FONT, frameon=False)
    fig.tight_layout()
    return fig


def plot_calibration(
    preds: pd.DataFrame,
    method_ids: Sequence[str],
    *,
    n_bins: int = 4,
    recalibrated: bool = True,
) -> plt.Figure:
    """Reliability diagram on the test set with Wilson intervals and Brier scores.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_ids : sequence of str
        Methods to draw.
    n_bins : int, default 4
        Quantile bins (few: the test set is small).
    recalibrated : bool, default True
        Recalibrate on validation first (as the decision curves); methods without validation patients
        of both classes are drawn uncalibrated and labelled so.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: one error-bar series per method (legend: label and Brier score) and the diagonal.
    """
    set_style()
    styles = _styles(method_ids)
    fig, ax = plt.subplots(figsize=(7.0, 6.2))
    ax.plot([0, 1], [0, 1], color="#888888", linestyle=(0, (2, 3)), linewidth=1.2, label="Perfect calibration")
    offsets = np.linspace(-0.012, 0.012, len(method_ids)) if len(method_ids) > 1 else [0.0]
    n, any_cal, any_raw = 0, False, False
    for mid, off in zip(method_ids, offsets):
        scores = method_scores(preds, mid)
        if recalibrated:
            y, p, cal = _calibrated(scores, mid)
            tag = "recalibrated on val" if cal else "uncalibrated"
        else:
            test = _split_rows(scores, "test", mid)
            y, p, tag, cal = test["y"].to_numpy(), np.clip(test["score"].to_numpy(), 0, 1), "uncalibrated", False
        any_cal |= cal
        any_raw |= not cal
        n = len(y)
        cc = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
        obs = cc["observed"]
        yerr = np.vstack([obs - cc["observed_lo"], cc["observed_hi"] - obs])
        st = styles[mid]
        ax.errorbar(cc["mean_predicted"] + off, obs, yerr=yerr, color=st["color"], linestyle=st["linestyle"],
                    linewidth=st["linewidth"], marker="o", markersize=6, capsize=4,
                    label=f"{method_from_id(mid).label} ({tag}): Brier {brier_score(y, p):.3f}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("Mean predicted probability of poor response (bin)")
    ax.set_ylabel("Observed share of poor responders (95% Wilson CI)")
    ax.set_title(f"Calibration, test set (n = {n}), {n_bins} quantile bins\n{_calibration_word(any_cal, any_raw)}",
                 fontsize=12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=_LEGEND_FONT, frameon=False)
    fig.tight_layout()
    return fig


def plot_iteration_curve(curve_df_by_chain: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Test performance per PD iteration for each chain (Fig. 6).

    Parameters
    ----------
    curve_df_by_chain : mapping of str to pandas.DataFrame
        Column title (e.g. ``"PD (B7>B7>B7)"`` or the method label) -> :func:`pdstudy.evaluate.iteration_curve`.

    Returns
    -------
    matplotlib.figure.Figure
        A grid with one column per chain and three rows: test AUC with its DeLong 95% band; ACC/SEN/SPE
        at the validation-chosen threshold; ACC/SEN/SPE at the test-chosen (optimistic) threshold.
    """
    if not curve_df_by_chain:
        raise ValueError("curve_df_by_chain is empty; pass {title: iteration_curve(preds, method_id)}")
    set_style()
    n_cols = len(curve_df_by_chain)
    fig, axes = plt.subplots(3, n_cols, figsize=(5.2 * n_cols, 10.5), sharey="row", squeeze=False)
    for j, (title, curve) in enumerate(curve_df_by_chain.items()):
        missing = {"stage", "test_auc", "test_auc_lo", "test_auc_hi"} - set(curve.columns)
        if missing:
            raise ValueError(f"curve {title!r} lacks columns {sorted(missing)}; pass iteration_curve(...) output")
        x = curve["stage"].to_numpy()
        ax = axes[0, j]
        ci_label = AUC_CI_LABELS.get(str(curve.attrs.get("auc_ci", "logit")), "DeLong")
        ax.fill_between(x, curve["test_auc_lo"], curve["test_auc_hi"], color="#4c72b0", alpha=0.2,
                        label=f"95% CI ({ci_label})")
        ax.plot(x, curve["test_auc"], color="#4c72b0", marker="o", linewidth=2.2, label="Test AUC")
        for xi, v in zip(x, curve["test_auc"]):
            ax.annotate(f"{v:.2f}", (xi, v), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=10)
        ax.axhline(0.5, color="#888888", linestyle=(0, (2, 3)), linewidth=1.0)
        ax.set_ylim(0.3, 1.08)
        ax.set_title(title, fontsize=12)
        if j == 0:
            ax.set_ylabel("Test AUC")
            ax.legend(loc="lower right", fontsize=_LEGEND_FONT)
        for i, pol in enumerate(("youden_val", "youden_test"), start=1):
            ax = axes[i, j]
            vals = {m: curve.get(f"{pol}_{m}", pd.Series([np.nan] * len(curve))).to_numpy(dtype=float)
                    for m in ("acc", "sen", "spe")}
            if all(np.isnan(v).all() for v in vals.values()):
                ax.text(0.5, 0.5, "not available\n(no validation patients)", ha="center", va="center",
                        transform=ax.transAxes, fontsize=11, color="#555555")
            for m, v in vals.items():
                ax.plot(x, 100 * v, marker="o", linewidth=2.0, color=_METRIC_COLOURS[m], label=_METRIC_LABELS[m])
            ax.set_ylim(-3, 103)
            if j == 0:
                ax.set_ylabel(f"% ({POLICY_LABELS[pol]})")
        for ax in axes[:, j]:
            ax.set_xticks(x)
            ax.set_xticklabels([f"{s}\nteacher" if s == 0 else f"{s}" for s in x])
            ax.set_xlim(x.min() - 0.3, x.max() + 0.3)
        axes[2, j].set_xlabel("PD iteration (stage)")
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=_LEGEND_FONT, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle("Test performance per Progressive Distill iteration", fontsize=13, fontweight="bold")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return fig


def plot_patient_flow(flow: dict) -> plt.Figure:
    """Patient-flow diagram: screened -> exclusions by reason -> included -> splits by response."""
    set_style()
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(1.3, 10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.93, bottom=0.07)
    box = dict(boxstyle="round,pad=0.5", facecolor="#f2f2f2", edgecolor="#444444")
    exc_box = dict(boxstyle="round,pad=0.5", facecolor="#fde0dd", edgecolor="#a50f15")

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="#444444", lw=1.4))

    ax.text(3.0, 9.2, f"Screened patients\nn = {flow['screened']}", ha="center", va="center", fontsize=11, bbox=box)
    excluded = flow["excluded"]
    n_exc = sum(excluded.values())
    lines = [f"Excluded, n = {n_exc}"] + [f"{reason.replace('_', ' ')}: {k}" for reason, k in excluded.items()]
    ax.text(7.4, 7.4, "\n".join(lines), ha="center", va="center", fontsize=9.5, bbox=exc_box, wrap=True)
    arrow(3.0, 8.6, 3.0, 6.1)
    arrow(3.0, 7.4, 5.6, 7.4)
    ax.text(3.0, 5.6, f"Included\nn = {flow['included']}", ha="center", va="center", fontsize=11, bbox=box)
    splits = list(flow["splits"].items())
    xs = np.linspace(1.5, 8.5, max(len(splits), 1) + 2)[1:-1] if len(splits) > 2 else [1.8, 5.2][: len(splits)]
    for x, (split, c) in zip(xs, splits):
        arrow(3.0, 5.0, x, 2.9)
        label = "\n".join([f"{split.capitalize()} set, n = {c['n']}",
                           *[f"{paper_label(r)} ({r}): {c.get(r, 0)}" for r in RESPONSES]])
        ax.text(x, 2.2, label, ha="center", va="center", fontsize=10, bbox=box)
    if flow.get("unassigned"):
        ax.text(8.2, 4.3, f"Included, no split\nassigned: {flow['unassigned']}", ha="center", va="center",
                fontsize=9, bbox=box)
    ax.set_title("Patient flow", fontsize=13)
    fig.text(0.5, 0.015, PAPER_LABEL_FOOTNOTE, ha="center", va="bottom", fontsize=8, color="#555555")
    return fig


def plot_example_slices(
    images: dict[str, list[np.ndarray]], *, pixel_mm: float, window: tuple[float, float]
) -> plt.Figure:
    """Grid of windowed example slices, one row per response group.

    Parameters
    ----------
    images : dict
        ``{"good": [slice, ...], "poor": [...]}``, each slice a 2D array in [0, 1] or uint8.
    pixel_mm : float
        Physical pixel size, for the scale bar.
    window : (float, float)
        HU window shown (for the caption).
    """
    set_style()
    n_cols = max(len(v) for v in images.values())
    fig, axes = plt.subplots(len(images), n_cols, figsize=(2.3 * n_cols, 2.5 * len(images)), squeeze=False)
    for i, (resp, slices) in enumerate(images.items()):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j >= len(slices):
                ax.set_axis_off()
                continue
            img = np.asarray(slices[j], dtype=np.float32)
            ax.imshow(img / (255.0 if img.max() > 1.0 else 1.0), cmap="gray", vmin=0, vmax=1)
            for spine in ax.spines.values():
                spine.set_edgecolor(RESPONSE_COLOURS[resp])
                spine.set_linewidth(2.5)
            if j == 0:
                ax.set_ylabel(f"{resp} response\n({paper_label(resp)})", fontsize=11, color=RESPONSE_COLOURS[resp])
            bar_px = 50.0 / pixel_mm
            h = img.shape[0]
            ax.plot([0.06 * h, 0.06 * h + bar_px], [0.93 * h] * 2, color="white", lw=2.5)
            ax.text(0.06 * h, 0.88 * h, "5 cm", color="white", fontsize=8)
    fig.suptitle(f"Example portal-venous slices, window [{window[0]:g}, {window[1]:g}] HU", fontsize=12)
    fig.tight_layout()
    return fig


def plot_training_curves(results: list, *, title: str = "Training curves") -> plt.Figure:
    """Loss and validation AUC per epoch of the final stage of each chain (one line per method and seed)."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    palette = sns.color_palette("tab10", n_colors=max(len(results), 1))
    for colour, r in zip(palette, results):
        hist = pd.DataFrame(r.stages[-1].meta["history"])
        seed = int(r.predictions["seed"].iloc[0])
        label = f"{r.method.label} (seed {seed})" if len({int(x.predictions['seed'].iloc[0]) for x in results}) > 1 \
            else r.method.label
        axes[0].plot(hist["epoch"] + 1, hist["loss"], color=colour, label=label, lw=1.6)
        if "val_auc" in hist:
            axes[1].plot(hist["epoch"] + 1, hist["val_auc"], color=colour, label=label, lw=1.6)
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel="AUC (validation patients)", title="Validation AUC", ylim=(0, 1))
    axes[1].axhline(0.5, color="grey", lw=1, ls="--")
    axes[1].legend(fontsize=8.5, loc="lower right", frameon=True)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
