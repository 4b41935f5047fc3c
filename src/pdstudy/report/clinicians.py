"""The clinician comparison as a person reads it: Table 3's title and notes, the McNemar view, the section's
summary sentence, and Fig. 3 with the readers' operating points (:func:`plot_roc_readers`).

Simulated readers are said to be simulated everywhere: in the title, the notes, the summary and the
figure (whose title turns red and says "not real clinicians").
"""

from __future__ import annotations

import inspect
from typing import Final

import matplotlib.pyplot as plt
import pandas as pd

from pdstudy.evaluate.clinicians import table3_rows
from pdstudy.report.figures import AUC_CI_LABELS, plot_roc

__all__ = [
    "SIMULATED_READERS_NOTE",
    "mcnemar_table",
    "plot_roc_readers",
    "table3_notes",
    "table3_summary",
    "table3_title",
]

#: Said above the stated operating points when the readers are simulated.
SIMULATED_READERS_NOTE: Final = (
    "**The readers below are SIMULATED, not real clinicians.** Their calls reproduce the paper's stated operating "
    "points (C20's specificity corrected from the impossible 75.57% to 11/14 = 78.57%); which patients each gets "
    "right is random."
)

_MCNEMAR_COLUMNS: Final = {"row": "reader", "mcnemar_b": "b (model right, reader wrong)",
                           "mcnemar_c": "c (model wrong, reader right)", "mcnemar_p": "p (exact)",
                           "mcnemar_p_holm": "p (Holm)"}
_WARNING_COLOUR: Final = "#a50f15"


def _check_table3(table3: pd.DataFrame) -> None:
    needed = {"row", "kind", "policy", "n", "acc", "sen", "spe", *_MCNEMAR_COLUMNS}
    if not isinstance(table3, pd.DataFrame) or not needed <= set(table3.columns):
        missing = sorted(needed - set(getattr(table3, "columns", ())))
        raise ValueError(f"table3 must be the output of pdstudy.evaluate.table3; missing columns {missing}")


def table3_title(model: str, *, simulated: bool) -> str:
    """Title of ``tables/table3``: ``Table 3. <model> against clinicians, test set`` (+ ``(SIMULATED readers)``).

    Parameters
    ----------
    model : str
        The model's label (``Method.label``).
    simulated : bool
        Whether the readers are simulated.
    """
    title = f"Table 3. {model} against clinicians, test set"
    return title + " (SIMULATED readers)" if simulated else title


def table3_notes(*, simulated: bool, source: str, stand_ins: bool) -> list[str]:
    """Notes added under Table 3 (after the table's own): where the calls come from, and the quick profile.

    Parameters
    ----------
    simulated : bool
        Whether the readers are simulated.
    source : str
        Where real calls come from (e.g. ``"readers CSV readers.csv"``); unused for simulated readers.
    stand_ins : bool
        Whether quick stand-ins replace the paper's EfficientNets.

    Returns
    -------
    list of str
        One or two notes.
    """
    notes = ["SIMULATED readers: no real clinician's calls were used; see tables/table3_reader_calls.csv."
             if simulated else f"Reader calls: {source}."]
    if stand_ins:
        notes.append("Quick profile: tiny stand-ins replace the paper's models; the model row checks the pipeline "
                     "and does not reproduce the paper.")
    return notes


def mcnemar_table(table3: pd.DataFrame) -> pd.DataFrame:
    """The exact McNemar tests of Table 3, one row per reader, with readable column names.

    Parameters
    ----------
    table3 : pandas.DataFrame
        Output of :func:`pdstudy.evaluate.table3`.

    Returns
    -------
    pandas.DataFrame
        ``reader``, ``b (model right, reader wrong)``, ``c (model wrong, reader right)``, ``p (exact)``,
        ``p (Holm)``.
    """
    _check_table3(table3)
    return table3.loc[table3["kind"] == "reader", list(_MCNEMAR_COLUMNS)].rename(columns=_MCNEMAR_COLUMNS)


def table3_summary(table3: pd.DataFrame, *, simulated: bool) -> str:
    """One Markdown sentence: the model at the validation-chosen threshold against the readers' average.

    Parameters
    ----------
    table3 : pandas.DataFrame
        Output of :func:`pdstudy.evaluate.table3` (with the ``youden_val`` model row).
    simulated : bool
        Whether the readers are simulated (the sentence then says "simulated readers").

    Returns
    -------
    str
        ACC, SEN and SPE of the model and of the readers' average, and the smallest Holm-adjusted McNemar
        p; or a sentence saying the validation-chosen threshold is not available.
    """
    _check_table3(table3)
    model, avg = table3_rows(table3)
    if pd.isna(model["acc"]):
        return "The validation-chosen threshold is not available (no validation patients of both classes)."
    who = "simulated readers" if simulated else "readers"
    p_holm = table3.loc[table3["kind"] == "reader", "mcnemar_p_holm"].min()
    return (f"At the validation-chosen threshold the model reaches ACC {100 * model['acc']:.1f}%, SEN "
            f"{100 * model['sen']:.1f}% and SPE {100 * model['spe']:.1f}% on {int(model['n'])} test "
            f"patients; the {who} average ACC {100 * avg['acc']:.1f}%, SEN {100 * avg['sen']:.1f}%, SPE "
            f"{100 * avg['spe']:.1f}%. Smallest Holm-adjusted McNemar p: {p_holm:.3f}.")


def plot_roc_readers(
    preds: pd.DataFrame,
    method_id: str,
    readers: pd.DataFrame,
    table3: pd.DataFrame,
    *,
    ax: plt.Axes | None = None,
    auc_ci: str = "logit",
) -> plt.Figure:
    """Fig. 3 with the readers: the model's test ROC curve, each reader, their average, the model's threshold.

    The ROC curve and the reader points are :func:`pdstudy.report.figures.plot_roc`'s; this adds the
    readers' average (a white star), the model at its validation-chosen threshold (a cross in the curve's
    colour, when that threshold exists) and one legend below the axes. With simulated readers the title
    says so, in red.

    Parameters
    ----------
    preds : pandas.DataFrame
        Fixed-split prediction rows holding the method.
    method_id : str
        The model (final stage, seed-averaged score).
    readers : pandas.DataFrame
        Reader calls on the test patients (:func:`pdstudy.evaluate.read_readers` or
        :func:`pdstudy.evaluate.simulate_readers`).
    table3 : pandas.DataFrame
        :func:`pdstudy.evaluate.table3` of the same model and readers (its average and ``youden_val`` rows).
    ax : matplotlib.axes.Axes, optional
        Axes to draw into (needs a :func:`pdstudy.report.figures.plot_roc` that accepts ``ax``); by default
        a new figure is made.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC interval in the legend (the notebooks' ``auc_ci``).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into.
    """
    _check_table3(table3)
    if not isinstance(readers, pd.DataFrame) or "simulated" not in readers.columns:
        raise ValueError("readers must be a readers frame with a 'simulated' column (pdstudy.evaluate.readers)")
    model, avg = table3_rows(table3)
    simulated = bool(readers["simulated"].any())
    if ax is None:
        fig = plot_roc(preds, [method_id], readers=readers, auc_ci=auc_ci)
        ax, first = fig.axes[0], 0
    else:
        if "ax" not in inspect.signature(plot_roc).parameters:
            raise NotImplementedError("drawing into a given ax needs pdstudy.report.figures.plot_roc(..., ax=); "
                                      "call plot_roc_readers without ax")
        first = len(ax.get_lines())
        fig = plot_roc(preds, [method_id], readers=readers, ax=ax, auc_ci=auc_ci)
    tag = " (simulated)" if simulated else ""
    ax.plot([1 - avg["spe"]], [avg["sen"]], linestyle="none", marker="*", markersize=16, markerfacecolor="white",
            markeredgecolor="black", zorder=6,
            label=f"Average of readers{tag}: SEN {100 * avg['sen']:.1f}%, SPE {100 * avg['spe']:.1f}%")
    if pd.notna(model["acc"]):
        ax.plot([1 - model["spe"]], [model["sen"]], linestyle="none", marker="X", markersize=12,
                color=ax.get_lines()[first].get_color(), markeredgecolor="black", zorder=7,
                label=f"Model at the validation-chosen threshold: SEN {100 * model['sen']:.1f}%, "
                      f"SPE {100 * model['spe']:.1f}%")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=1, fontsize=10, frameon=False)
    if simulated:
        ax.set_title(f"ROC, test set (n = {int(model['n'])}), with SIMULATED readers; 95% CI: "
                     f"{AUC_CI_LABELS[auc_ci]}\n(the paper's operating points; not real clinicians)",
                     color=_WARNING_COLOUR, fontsize=12)
    return fig
