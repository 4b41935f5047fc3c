"""Confusion-matrix metrics at a threshold, the Youden threshold, and named threshold policies."""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike

from pdstudy.stats._validation import as_binary, as_scores, check_same_length, require_both_classes

#: Threshold policies understood by :func:`apply_threshold_policy`.
THRESHOLD_POLICIES: Final = ("youden_test", "youden_val", "fixed")


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def binary_metrics(y_true: ArrayLike, y_score: ArrayLike, threshold: float) -> dict[str, Any]:
    """Confusion matrix and the usual rates at one threshold.

    A patient is **predicted positive (poor response) iff** ``score >= threshold``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response (positive), 0 = good response.
    y_score : array-like of shape (n,)
        Finite scores (e.g. predicted probability of poor response).
    threshold : float
        Finite decision threshold.

    Returns
    -------
    dict
        ``accuracy``, ``sensitivity`` (TP / (TP + FN), recall of poor responders), ``specificity``
        (TN / (TN + FP)), ``ppv`` (TP / (TP + FP)), ``npv`` (TN / (TN + FN)) as floats, NaN when the
        denominator is 0 (e.g. sensitivity without poor responders, PPV with no positive prediction);
        ``tp``, ``fp``, ``tn``, ``fn`` as ints; and ``threshold`` as a float.

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, non-finite scores or a non-finite threshold. A single
        class is allowed (the undefined rates are NaN).
    """
    y = as_binary(y_true, "y_true")
    s = as_scores(y_score, "y_score")
    check_same_length(y_true=y, y_score=s)
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    pred = s >= threshold
    pos = y == 1
    tp = int(np.sum(pred & pos))
    fp = int(np.sum(pred & ~pos))
    tn = int(np.sum(~pred & ~pos))
    fn = int(np.sum(~pred & pos))
    return {
        "accuracy": (tp + tn) / len(y),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "threshold": threshold,
    }


def youden_threshold(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Observed score that maximises Youden's J = sensitivity + specificity - 1.

    Candidates are the distinct observed scores, used with the rule of :func:`binary_metrics`
    (positive iff ``score >= threshold``). Ties in J are broken by the higher accuracy, then by the
    larger threshold (the more conservative call of poor response). The comparison is done on exact
    integer counts, so ties are detected without floating-point error.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_score : array-like of shape (n,)
        Finite scores.

    Returns
    -------
    float
        The chosen threshold (one of the observed scores).

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, non-finite scores, or a single class (J is undefined).
    """
    y = as_binary(y_true, "y_true")
    s = as_scores(y_score, "y_score")
    check_same_length(y_true=y, y_score=s)
    require_both_classes(y, "y_true", "Youden's J")
    cand = np.unique(s)
    pos_sorted = np.sort(s[y == 1])
    neg_sorted = np.sort(s[y == 0])
    m, n = len(pos_sorted), len(neg_sorted)
    tp = m - np.searchsorted(pos_sorted, cand, side="left")  # positives with score >= t
    fp = n - np.searchsorted(neg_sorted, cand, side="left")
    tn = n - fp
    j_scaled = tp * n + tn * m  # (J + 1) * m * n, an integer
    correct = tp + tn
    best = np.lexsort((cand, correct, j_scaled))[-1]  # last key is primary
    return float(cand[best])


def apply_threshold_policy(
    policy: str,
    y_true_test: ArrayLike,
    score_test: ArrayLike,
    y_true_val: ArrayLike | None = None,
    score_val: ArrayLike | None = None,
    *,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Choose a threshold by a named policy and evaluate it on the test set.

    Parameters
    ----------
    policy : {"youden_test", "youden_val", "fixed"}
        Threshold policy:

        ``"youden_test"``
            Youden threshold chosen **on the test set itself** and evaluated on the same patients. This
            is optimistic (the threshold is tuned on the data it is scored on, which inflates
            sensitivity + specificity, markedly so with ~28 test patients); report it only to reproduce
            a paper that did this, labelled as such.
        ``"youden_val"``
            Youden threshold chosen on validation or out-of-fold predictions (``y_true_val``,
            ``score_val``) and applied unchanged to the test set: an honest estimate.
        ``"fixed"``
            A pre-specified ``threshold`` (e.g. 0.5 on a probability) applied to the test set.
    y_true_test, score_test : array-like of shape (n_test,)
        Test labels (1 = poor response) and scores.
    y_true_val, score_val : array-like of shape (n_val,), optional
        Validation / out-of-fold labels and scores; required by ``"youden_val"``.
    threshold : float, optional
        Keyword-only; required by ``"fixed"`` and rejected by the other policies.

    Returns
    -------
    dict
        :func:`binary_metrics` on the test set, plus ``policy`` (str) and ``threshold_source``
        (``"test"``, ``"val"`` or ``"fixed"``).

    Raises
    ------
    ValueError
        On an unknown policy, missing validation data for ``"youden_val"``, a missing or superfluous
        ``threshold``, or invalid arrays.
    """
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {THRESHOLD_POLICIES}")
    if policy == "fixed":
        if threshold is None:
            raise ValueError("policy 'fixed' needs threshold=<float>, e.g. threshold=0.5")
        chosen, source = float(threshold), "fixed"
    else:
        if threshold is not None:
            raise ValueError(f"policy {policy!r} chooses its own threshold; do not pass threshold={threshold!r}")
        if policy == "youden_test":
            chosen, source = youden_threshold(y_true_test, score_test), "test"
        else:
            if y_true_val is None or score_val is None:
                raise ValueError(
                    "policy 'youden_val' needs validation / out-of-fold data: pass both y_true_val and score_val"
                )
            yv = as_binary(y_true_val, "y_true_val")
            sv = as_scores(score_val, "score_val")
            check_same_length(y_true_val=yv, score_val=sv)
            chosen, source = youden_threshold(yv, sv), "val"
    out = binary_metrics(y_true_test, score_test, chosen)
    out["policy"] = policy
    out["threshold_source"] = source
    return out
