"""Training logs of notebooks 02-05: their tables' titles and notes, and the sentences that read them.

The logs themselves are computed by :mod:`pdstudy.study.protocol` (``training_summary``,
``iteration_summary``, ``ablation_summary``) and :func:`pdstudy.learn.distill.timing_table`; this
module only writes and words them (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pandas as pd

from pdstudy.core.rundir import RunDir
from pdstudy.report.tables import write_table

#: Table name under ``tables/`` -> (Markdown title, notes) of every training log of notebooks 02-05.
TRAINING_TABLES: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    "02_baselines_training": ("Baselines: training log", (
        "AUC of the final model per split; test AUC with DeLong 95% CI (logit scale).",
        "Thresholded metrics and paired tests: Table 2 (notebook 08).")),
    "03_kd_training": ("Knowledge distillation: training log", (
        "Teachers are the baselines of notebook 02 (stage cache); stages_reused counts them.",)),
    "04_pd_training": ("Progressive Distill: training log", ()),
    "04_pd_iterations": ("PD: test AUC per iteration", (
        "Iteration 0 is the teacher (baseline); iteration i is the i-th noisy student.",)),
    "04_pd_timing": ("Training wall time per PD chain", (
        "Reused stages count with the time they took when trained.",)),
    "05_ablation_training": ("Ablation grid: training log", (
        "kd / mn / mi: knowledge distillation, model noise, multiple iterations (1 = used).",)),
}

#: The chains whose training times the paper compares (B0>B3>B7 "about half" of B7>B7>B7).
LADDER_CHAIN: Final = "efficientnet_b0>efficientnet_b3>efficientnet_b7"
B7_CHAIN: Final = ">".join(["efficientnet_b7"] * 3)


def write_training_table(df: pd.DataFrame, run: RunDir, name: str) -> tuple[Path, Path]:
    """Write a training log as ``tables/<name>.csv`` and ``.md`` with its title and notes.

    Parameters
    ----------
    df : pandas.DataFrame
        The log (e.g. ``pdstudy.study.protocol.training_summary(results)``).
    run : pdstudy.core.rundir.RunDir
        Run directory.
    name : str
        One of :data:`TRAINING_TABLES`.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The CSV and Markdown files written.

    Raises
    ------
    ValueError
        If ``name`` is not a training log of :data:`TRAINING_TABLES`.
    """
    if name not in TRAINING_TABLES:
        raise ValueError(f"unknown training table {name!r}; choose one of {list(TRAINING_TABLES)}")
    title, notes = TRAINING_TABLES[name]
    return write_table(df, run, name, title=title, notes=list(notes))


def best_by_test_auc(summary: pd.DataFrame) -> pd.Series:
    """The row of a training summary with the highest test AUC (the first one on ties).

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of ``pdstudy.study.protocol.training_summary`` (columns ``method``, ``test_auc``,
        ``test_auc_lo``, ``test_auc_hi``).

    Returns
    -------
    pandas.Series
        That row.
    """
    if summary.empty:
        raise ValueError("training summary is empty: no method to choose from")
    return summary.sort_values("test_auc", ascending=False).iloc[0]


def learning_note(best: pd.Series) -> str:
    """Markdown sentence on whether a model learned: its test AUC's 95% lower bound above 0.5 or not.

    Parameters
    ----------
    best : pandas.Series
        A row of a training summary (``method``, ``test_auc``, ``test_auc_lo``, ``test_auc_hi``),
        e.g. from :func:`best_by_test_auc`.

    Returns
    -------
    str
        The sentence, naming the model and its test AUC with 95% CI.
    """
    learns = bool(best["test_auc_lo"] > 0.5)
    return (f"Best baseline: **{best['method']}**, test AUC {best['test_auc']:.3f} "
            f"(95% CI {best['test_auc_lo']:.3f}-{best['test_auc_hi']:.3f}): "
            + ("the lower bound is above 0.5, so it learned something that carries over to the test patients."
               if learns else "the lower bound is not above 0.5, so there is no evidence that it learned "
               "anything that carries over to the test patients."))


def timing_ratio_note(timing: pd.DataFrame, *, stand_ins: bool) -> str:
    """Markdown sentence comparing the training time of B0>B3>B7 with B7>B7>B7 (paper: about 0.5x).

    Parameters
    ----------
    timing : pandas.DataFrame
        Output of ``pdstudy.learn.distill.timing_table`` (columns ``chain``, ``train_seconds``).
    stand_ins : bool
        Whether the quick stand-ins were trained (the ratio then says little about the real architectures).

    Returns
    -------
    str
        The sentence, or an empty string when either chain was not run.
    """
    by_chain = timing.set_index("chain")["train_seconds"]
    if LADDER_CHAIN not in by_chain or B7_CHAIN not in by_chain:
        return ""
    ratio = by_chain[LADDER_CHAIN] / by_chain[B7_CHAIN]
    return (f"B0>B3>B7 took **{ratio:.2f}x** the time of B7>B7>B7 (paper: about 0.5x)"
            + (" - quick stand-ins, so the ratio says little about the real architectures." if stand_ins else "."))
