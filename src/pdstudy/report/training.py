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
        "Thresholded metrics and paired tests: Table 2 (notebook 10).")),
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


#: Validation AUC (point estimate) the best quick baseline must reach on the synthetic cohort. Set from the
#: generator's documented signal (oracle AUC about 0.89) as "clearly above chance", without looking at any
#: test AUC.
LEARNING_MIN_VAL_AUC: Final = 0.6


def best_by_val_auc(summary: pd.DataFrame) -> pd.Series:
    """The method with the highest validation AUC in a training summary; test AUCs play no part in the choice.

    Each method's validation AUC is averaged over its rows (seeds, folds); ties go to the method listed first,
    and when no method has a validation AUC (no validation patients of both classes) the first one is returned
    with a NaN ``val_auc``.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of ``pdstudy.study.protocol.training_summary`` (columns ``method``, ``val_auc``, ``test_auc``;
        ``test_auc_lo`` and ``test_auc_hi`` are used when present).

    Returns
    -------
    pandas.Series
        ``method``, ``runs`` (rows averaged), ``val_auc`` (mean), ``test_auc`` (mean, for information) and
        ``test_auc_lo`` / ``test_auc_hi`` (the DeLong 95% CI of a single run; NaN when averaged over several).

    Raises
    ------
    ValueError
        On an empty summary or one without the columns above.
    """
    if not isinstance(summary, pd.DataFrame):
        raise TypeError(f"summary must be a training summary DataFrame, got {type(summary).__name__}")
    missing = sorted({"method", "val_auc", "test_auc"} - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks column(s) {missing}; expected the output of training_summary")
    if summary.empty:
        raise ValueError("training summary is empty: no method to choose from")
    df = summary.assign(test_auc_lo=summary.get("test_auc_lo", float("nan")),
                        test_auc_hi=summary.get("test_auc_hi", float("nan")))
    by = df.groupby("method", sort=False)
    table = by.agg(runs=("val_auc", "size"), val_auc=("val_auc", "mean"), test_auc=("test_auc", "mean"),
                   test_auc_lo=("test_auc_lo", "first"), test_auc_hi=("test_auc_hi", "first")).reset_index()
    table.loc[table["runs"] > 1, ["test_auc_lo", "test_auc_hi"]] = float("nan")
    pick = int(table["val_auc"].idxmax()) if table["val_auc"].notna().any() else 0  # first of ties; NaN skipped
    return table.iloc[pick]


def learns_on_validation(best: pd.Series, *, min_auc: float = LEARNING_MIN_VAL_AUC) -> bool:
    """Whether a model's validation AUC (point estimate) reaches ``min_auc``.

    The bar (:data:`LEARNING_MIN_VAL_AUC`, 0.6) was set without looking at any test AUC; it is a
    regression guard ("the quick recipe learns the synthetic signal"), not a test of the model.

    Parameters
    ----------
    best : pandas.Series
        A row with ``val_auc``, e.g. from :func:`best_by_val_auc`.
    min_auc : float, default :data:`LEARNING_MIN_VAL_AUC`
        The bar, in (0, 1).

    Returns
    -------
    bool
        True when ``val_auc >= min_auc``; False when it is lower or NaN.
    """
    if not 0.0 < float(min_auc) < 1.0:
        raise ValueError(f"min_auc must be in (0, 1), got {min_auc}")
    if "val_auc" not in best:
        raise ValueError("best must have a 'val_auc' (a row of best_by_val_auc)")
    return bool(pd.notna(best["val_auc"]) and float(best["val_auc"]) >= float(min_auc))


def learning_note(best: pd.Series, *, min_auc: float = LEARNING_MIN_VAL_AUC) -> str:
    """Markdown sentence on the baseline chosen on validation: its validation AUC, then its test AUC as information.

    Parameters
    ----------
    best : pandas.Series
        The row of :func:`best_by_val_auc` (``method``, ``runs``, ``val_auc``, ``test_auc``, ``test_auc_lo``,
        ``test_auc_hi``).
    min_auc : float, default :data:`LEARNING_MIN_VAL_AUC`
        The validation bar of :func:`learns_on_validation`.

    Returns
    -------
    str
        The sentence, naming the model, its validation AUC and whether it reaches the bar, and its test AUC
        (with the DeLong 95% CI of a single run), which played no part in the choice.
    """
    runs = int(best.get("runs", 1))
    mean = f" (mean of {runs} runs)" if runs > 1 else ""
    if pd.isna(best["val_auc"]):
        head = (f"Chosen on validation: **{best['method']}** (the first baseline: no validation patients of both "
                "classes, so no validation AUC).")
    else:
        verdict = (f"at or above the bar of {min_auc:.2f} set before looking at any test AUC, so it learned something "
                   "that carries over to patients it was not trained on" if learns_on_validation(best, min_auc=min_auc)
                   else f"below the bar of {min_auc:.2f} set before looking at any test AUC, so there is no evidence "
                   "that it learned anything that carries over to patients it was not trained on")
        head = (f"Chosen on validation: **{best['method']}**, validation AUC {best['val_auc']:.3f}{mean}: "
                f"{verdict}.")
    lo, hi = best.get("test_auc_lo", float("nan")), best.get("test_auc_hi", float("nan"))
    ci = f" (DeLong 95% CI {lo:.3f}-{hi:.3f})" if pd.notna(lo) and pd.notna(hi) else ""
    test = (f" Test AUC {best['test_auc']:.3f}{mean}{ci}, for information only: it played no part in the choice."
            if pd.notna(best.get("test_auc", float("nan"))) else "")
    return head + test


def timing_ratio_note(timing: pd.DataFrame, *, stand_ins: bool) -> str:
    """Markdown sentence comparing the training time of B0>B3>B7 with B7>B7>B7 (paper: about 0.5x).

    Parameters
    ----------
    timing : pandas.DataFrame
        Output of ``pdstudy.learn.distill.timing_table`` (columns ``chain``, ``train_seconds``; one row per
        chain and context, so several seeds or folds give several rows per chain: their mean is compared).
    stand_ins : bool
        Whether the quick stand-ins were trained (the ratio then says little about the real architectures).

    Returns
    -------
    str
        The sentence, or an empty string when either chain was not run.
    """
    by_chain = timing.groupby("chain")["train_seconds"].mean()
    if LADDER_CHAIN not in by_chain or B7_CHAIN not in by_chain:
        return ""
    ratio = by_chain[LADDER_CHAIN] / by_chain[B7_CHAIN]
    runs = int((timing["chain"] == B7_CHAIN).sum())
    per = f" (mean over {runs} runs each)" if runs > 1 else ""
    return (f"B0>B3>B7 took **{ratio:.2f}x** the time of B7>B7>B7{per} (paper: about 0.5x)"
            + (" - quick stand-ins, so the ratio says little about the real architectures." if stand_ins else "."))
