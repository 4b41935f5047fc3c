"""Fig. 6 as the study report shows it: test performance over PD iterations, AUC axis widened for low AUCs."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from pdstudy.report.figures import plot_iteration_curve

__all__ = ["plot_iteration_panels"]


def plot_iteration_panels(curves: Mapping[str, pd.DataFrame]) -> plt.Figure:
    """Fig. 6: :func:`pdstudy.report.figures.plot_iteration_curve` with the AUC axis kept open for low AUCs.

    The AUC row starts at 0.3, or lower (down to 0) when a lower interval bound needs it, so that low AUCs
    and their DeLong intervals stay in view; the AUC legend goes where it covers the least of the curves.

    Parameters
    ----------
    curves : mapping of str to pandas.DataFrame
        Column title -> :func:`pdstudy.evaluate.iteration_curve` of one PD chain.

    Returns
    -------
    matplotlib.figure.Figure
        The grid of :func:`pdstudy.report.figures.plot_iteration_curve` (three rows, one column per chain;
        a grid, so no ``ax`` argument).
    """
    if not curves:
        raise ValueError("curves is empty; pass {title: iteration_curve(preds, method_id)}")
    bad = [t for t, c in curves.items() if not isinstance(c, pd.DataFrame) or "test_auc_lo" not in c.columns]
    if bad:
        raise ValueError(f"curves {bad} are not iteration_curve tables (a DataFrame with column 'test_auc_lo')")
    fig = plot_iteration_curve(curves)
    lowest = min(float(c["test_auc_lo"].min()) for c in curves.values())
    for ax in fig.axes[:len(curves)]:  # the AUC row: the first row of the grid
        ax.set_ylim(max(0.0, min(0.3, lowest - 0.05)), 1.08)
    fig.axes[0].legend(loc="best", fontsize=10)
    return fig
