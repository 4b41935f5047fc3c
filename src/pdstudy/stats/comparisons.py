"""Hypothesis tests for model comparison and Table 1: exact McNemar, Holm, Fisher-Freeman-Halton, Mann-Whitney."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln
from scipy.stats import binom, mannwhitneyu

from pdstudy.stats._validation import as_binary, as_scores, check_same_length

#: Relative tolerance when comparing table probabilities to the observed one (as R's fisher.test and SciPy).
_REL_TOL = 1e-7


def mcnemar_exact(pred_a: ArrayLike, pred_b: ArrayLike, y_true: ArrayLike) -> dict[str, Any]:
    """Exact (binomial) McNemar test comparing the accuracy of two classifiers on the same patients.

    Only discordant patients matter: ``b`` = A correct and B wrong, ``c`` = A wrong and B correct.
    Under H0 ``b ~ Binomial(b + c, 1/2)``, and the two-sided p-value is
    ``min(1, 2 * binom.cdf(min(b, c), b + c, 0.5))`` (1 when ``b + c = 0``).

    Parameters
    ----------
    pred_a, pred_b : array-like of shape (n,)
        Binary predictions (1 = poor response) of models A and B.
    y_true : array-like of shape (n,)
        Binary labels.

    Returns
    -------
    dict
        ``b``, ``c`` (discordant counts, int), ``n`` (patients, int), ``accuracy_a``, ``accuracy_b``
        (float) and ``p_value`` (float).

    Raises
    ------
    ValueError
        On mismatched lengths or non-binary predictions or labels.
    """
    a = as_binary(pred_a, "pred_a")
    b_ = as_binary(pred_b, "pred_b")
    y = as_binary(y_true, "y_true")
    n = check_same_length(pred_a=a, pred_b=b_, y_true=y)
    ok_a, ok_b = a == y, b_ == y
    b = int(np.sum(ok_a & ~ok_b))
    c = int(np.sum(~ok_a & ok_b))
    p = 1.0 if b + c == 0 else min(1.0, 2.0 * float(binom.cdf(min(b, c), b + c, 0.5)))
    return {
        "b": b,
        "c": c,
        "n": n,
        "accuracy_a": float(ok_a.mean()),
        "accuracy_b": float(ok_b.mean()),
        "p_value": p,
    }


def holm(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Holm (1979) step-down adjusted p-values.

    With the ``k`` non-NaN p-values sorted ascending, ``p_(1) <= ... <= p_(k)``, the adjusted values are
    ``max_{j <= i} min(1, (k - j + 1) * p_(j))``: monotone in the original order of significance and
    capped at 1. NaN entries (e.g. a test that was not estimable) are passed through and do not count
    towards ``k``. Rejecting where the adjusted value is ``<= alpha`` controls the family-wise error rate.

    Parameters
    ----------
    pvalues : array-like of float
        P-values in [0, 1] or NaN, any shape.

    Returns
    -------
    ndarray
        Adjusted p-values, same shape and order as the input.

    Raises
    ------
    ValueError
        If a value is neither NaN nor within [0, 1].
    """
    p = np.asarray(pvalues, dtype=np.float64)
    flat = p.ravel()
    ok = ~np.isnan(flat)
    if np.any((flat[ok] < 0) | (flat[ok] > 1)) or np.isinf(flat).any():
        raise ValueError("pvalues must lie in [0, 1] (NaN allowed and passed through)")
    out = np.full_like(flat, np.nan)
    vals = flat[ok]
    k = len(vals)
    if k:
        order = np.argsort(vals, kind="stable")
        scaled = np.minimum(1.0, (k - np.arange(k)) * vals[order])
        adj = np.empty(k)
        adj[order] = np.maximum.accumulate(scaled)
        out[ok] = adj
    return out.reshape(p.shape)


def _as_table(table: ArrayLike) -> NDArray[np.int64]:
    t = np.asarray(table)
    if t.ndim != 2:
        raise ValueError(f"table must be a 2-D contingency table of counts, got shape {t.shape}")
    if t.dtype.kind not in "iuf" or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
        raise ValueError("table must hold non-negative integer counts")
    return t.astype(np.int64)


def _column_fills(total: int, caps: list[int]) -> list[tuple[int, ...]]:
    """All ways to split ``total`` over len(caps) cells with cell i <= caps[i]."""
    if len(caps) == 1:
        return [(total,)] if total <= caps[0] else []
    out = []
    rest_cap = sum(caps[1:])
    for first in range(max(0, total - rest_cap), min(caps[0], total) + 1):
        out.extend((first, *tail) for tail in _column_fills(total - first, caps[1:]))
    return out


def fisher_exact_rxc(table: ArrayLike, max_tables: int = 2_000_000) -> float:
    """Exact Fisher-Freeman-Halton test of independence for a small R x C table (e.g. 2 x 3 in Table 1).

    All tables with the observed row and column sums are enumerated. Under independence with fixed
    margins a table has hypergeometric probability
    ``prod(row_sums!) prod(col_sums!) / (N! prod(cells!))``; the p-value is the total probability of
    the tables no more probable than the observed one (relative tolerance 1e-7, as in R's
    ``fisher.test`` and :func:`scipy.stats.fisher_exact`). For a 2 x 2 table this is the two-sided
    Fisher exact test. Rows or columns that are all zero are dropped; if fewer than two rows or columns
    remain, the p-value is 1.

    Parameters
    ----------
    table : array-like of shape (R, C)
        Contingency table of non-negative integer counts (e.g. response group x category).
    max_tables : int, default 2_000_000
        Give up (``ValueError``) when more tables than this would have to be enumerated.

    Returns
    -------
    float
        Two-sided exact p-value.

    Raises
    ------
    ValueError
        If the table is not 2-D, holds anything but non-negative integers, or is too large to enumerate.
    """
    t = _as_table(table)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.shape[0] < 2 or t.shape[1] < 2:
        return 1.0
    if t.shape[0] > t.shape[1]:
        t = t.T  # enumerate column by column over the shorter dimension
    rows = [int(r) for r in t.sum(axis=1)]
    cols = [int(c) for c in t.sum(axis=0)]
    total = sum(rows)
    const = float(sum(gammaln(r + 1) for r in rows) + sum(gammaln(c + 1) for c in cols) - gammaln(total + 1))
    lgf = gammaln(np.arange(total + 1) + 1.0)  # log factorials
    obs = const - float(lgf[t].sum())

    log_probs: list[float] = []

    def walk(col: int, remaining: list[int], acc: float) -> None:
        if col == len(cols) - 1:  # last column is forced by the remaining row sums
            log_probs.append(acc - float(sum(lgf[r] for r in remaining)))
            if len(log_probs) > max_tables:
                raise ValueError(
                    f"table {t.shape} with N={total} needs more than max_tables={max_tables} tables; "
                    "use a permutation (Monte-Carlo) test instead"
                )
            return
        for fill in _column_fills(cols[col], remaining):
            walk(col + 1, [r - f for r, f in zip(remaining, fill, strict=True)], acc - float(sum(lgf[f] for f in fill)))

    walk(0, rows, const)
    lp = np.array(log_probs)
    keep = lp <= obs + math.log1p(_REL_TOL)
    p = float(np.exp(lp[keep]).sum())
    return min(1.0, p)


def mann_whitney(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test (thin wrapper over :func:`scipy.stats.mannwhitneyu`).

    SciPy's ``method="auto"`` is used: the exact null distribution for small samples without ties, the
    normal approximation with tie correction (and continuity correction) otherwise.

    Parameters
    ----------
    x, y : array-like
        Finite samples of the two groups (e.g. age of poor vs good responders), at least one value each.

    Returns
    -------
    U : float
        The U statistic of ``x`` (number of pairs with ``x > y``, ties counting 1/2).
    p : float
        Two-sided p-value.

    Raises
    ------
    ValueError
        If a sample is empty, not 1-D, or holds NaN/inf.
    """
    xa = as_scores(x, "x")
    ya = as_scores(y, "y")
    res = mannwhitneyu(xa, ya, alternative="two-sided", method="auto")
    return float(res.statistic), float(res.pvalue)
