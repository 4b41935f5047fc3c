"""Choices made before looking at the test set: which prediction rows a section reads, which model to explain,
which threshold policy a figure can use.

* :func:`select_predictions`: the prediction rows of some methods and seeds on the fixed split (or the
  cross-validation folds), re-indexed; the read-and-filter step of notebooks 06-10.
* :func:`choose_on_validation`: among candidate methods, the final model with the highest AUC on the
  validation patients (:data:`VALIDATION_CHOICE_RULE`); test AUCs play no part.
* :func:`preferred_policy`: ``youden_val`` when the validation patients allow it, else ``youden_test``.

Pure functions on prediction frames (:data:`pdstudy.data.predictions.PREDICTION_COLUMNS`); no torch, no
matplotlib.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.evaluate import choose_threshold, method_scores
from pdstudy.stats import roc_auc

__all__ = [
    "FOLDS",
    "VALIDATION_CHOICE_RULE",
    "choose_on_validation",
    "preferred_policy",
    "select_predictions",
]

#: Which folds :func:`select_predictions` keeps: the fixed split (``fold == -1``), the cross-validation
#: folds (``fold >= 0``) or all rows.
FOLDS: Final = ("fixed", "cv", "all")

#: The rule of :func:`choose_on_validation`, as the Grad-CAM section states it (``pd_chains``: the candidates).
VALIDATION_CHOICE_RULE: Final = (
    "among the final models of the PD chains in pd_chains, the highest AUC on the validation patients "
    "(seed-averaged score; ties: first in pd_chains; no validation patients of both classes: the first chain); "
    "test AUCs are not used"
)


def _check_frame(preds: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(preds, pd.DataFrame):
        raise TypeError(f"{what} expects a prediction DataFrame, got {type(preds).__name__}")
    missing = sorted(set(columns) - set(preds.columns))
    if missing:
        raise ValueError(f"{what}: the prediction frame lacks columns {missing}; expected the prediction-file "
                         "schema (pdstudy.data.predictions.PREDICTION_COLUMNS)")


def select_predictions(
    preds: pd.DataFrame,
    *,
    method_ids: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    folds: str = "fixed",
) -> pd.DataFrame:
    """Prediction rows of some methods and seeds on the fixed split or the CV folds, with a fresh index.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows, e.g. :func:`pdstudy.data.predictions.read_predictions` of a run.
    method_ids : iterable of str, optional
        Methods to keep (``Method.id``); None keeps every method.
    seeds : iterable of int, optional
        Training seeds to keep; None keeps every seed.
    folds : {"fixed", "cv", "all"}, default "fixed"
        ``"fixed"`` keeps the fixed train/test split (``fold == -1``), ``"cv"`` the cross-validation folds
        (``fold >= 0``), ``"all"`` both.

    Returns
    -------
    pandas.DataFrame
        The kept rows in their original order, index ``0 .. n - 1``.

    Raises
    ------
    ValueError
        On an unknown ``folds`` or a frame without the ``method``, ``seed`` and ``fold`` columns.
    """
    if folds not in FOLDS:
        raise ValueError(f"folds must be one of {list(FOLDS)}, got {folds!r}")
    _check_frame(preds, ("method", "seed", "fold"), "select_predictions")
    keep = pd.Series(True, index=preds.index)
    if method_ids is not None:
        if isinstance(method_ids, str):
            raise ValueError(f"method_ids must be a collection of method IDs, got the string {method_ids!r}")
        keep &= preds["method"].isin(list(method_ids))
    if folds == "fixed":
        keep &= preds["fold"] == -1
    elif folds == "cv":
        keep &= preds["fold"] >= 0
    if seeds is not None:
        keep &= preds["seed"].isin(list(seeds))
    return preds[keep].reset_index(drop=True)


def choose_on_validation(preds: pd.DataFrame, candidates: Sequence[Method]) -> tuple[pd.DataFrame, Method]:
    """The candidate whose final model has the highest AUC on the validation patients.

    Implements :data:`VALIDATION_CHOICE_RULE`: seed-averaged scores of each candidate's final stage
    (:func:`pdstudy.evaluate.method_scores`), AUC on the ``val`` rows; ties go to the first candidate, and
    without validation patients of both classes (every AUC NaN) the first candidate is chosen. Test rows
    are never looked at.

    Parameters
    ----------
    preds : pandas.DataFrame
        Fixed-split prediction rows holding every candidate.
    candidates : sequence of Method
        Candidate methods, in order of preference for ties.

    Returns
    -------
    selection : pandas.DataFrame
        One row per candidate: ``method_id``, ``method`` (label), ``n_val`` (validation patients),
        ``val_auc`` (NaN without both classes) and ``chosen`` (bool, one True).
    chosen : Method
        The chosen candidate.

    Raises
    ------
    ValueError
        Without candidates, or when a candidate has no predictions.
    """
    candidates = list(candidates)
    if not candidates or not all(isinstance(m, Method) for m in candidates):
        raise ValueError(f"candidates must be a non-empty sequence of Method, got {candidates!r}")
    rows = []
    for m in candidates:
        scores = method_scores(preds, m.id)
        val = scores[scores["split"] == "val"]
        both = val["y"].nunique() == 2
        rows.append({"method_id": m.id, "method": m.label, "n_val": len(val),
                     "val_auc": roc_auc(val["y"].to_numpy(), val["score"].to_numpy()) if both else float("nan")})
    selection = pd.DataFrame(rows)
    pick = int(selection["val_auc"].idxmax()) if selection["val_auc"].notna().any() else 0
    selection["chosen"] = selection.index == pick
    return selection, candidates[pick]


def preferred_policy(preds: pd.DataFrame, method_id: str) -> str:
    """``"youden_val"`` when the method's validation patients fix a threshold, else ``"youden_test"``.

    Parameters
    ----------
    preds : pandas.DataFrame
        Fixed-split prediction rows holding the method.
    method_id : str
        The method (final stage, seed-averaged score).

    Returns
    -------
    str
        ``"youden_val"`` (the honest policy) when the validation patients include both classes;
        ``"youden_test"`` (optimistic, and labelled so wherever it is shown) otherwise.
    """
    threshold = choose_threshold(method_scores(preds, method_id), "youden_val")
    return "youden_val" if pd.notna(threshold) else "youden_test"
