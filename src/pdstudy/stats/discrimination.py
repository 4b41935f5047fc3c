"""ROC AUC with uncertainty: midrank AUC, fast DeLong variance, DeLong paired test, patient-level bootstrap.

The AUC is the Mann-Whitney probability ``P(score_pos > score_neg) + 0.5 * P(tie)`` where the positive
class (label 1) is *poor* response. The DeLong computations follow Sun & Xu (2014), "Fast implementation
of DeLong's algorithm for comparing the areas under correlated receiver operating characteristic curves",
IEEE Signal Processing Letters 21(11):1389-1393: every structural component (placement value) is obtained
from midranks, so ties count one half and the cost is O(n log n).
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, logit
from scipy.stats import norm, rankdata

from pdstudy.core.params import PARAMETER_CHOICES
from pdstudy.stats._validation import as_binary, as_scores, check_level, check_same_length, require_both_classes
from pdstudy.stats.intervals import wilson_ci


class AUCInterval(NamedTuple):
    """Point AUC and confidence interval; unpacks as ``auc, lo, hi``."""

    auc: float
    lo: float
    hi: float


def _checked(y_true: ArrayLike, *scores: tuple[ArrayLike, str]) -> tuple[NDArray[np.int64], list[NDArray[np.float64]]]:
    y = as_binary(y_true, "y_true")
    arrays = [as_scores(s, name) for s, name in scores]
    check_same_length(y_true=y, **{name: a for a, (_, name) in zip(arrays, scores, strict=True)})
    require_both_classes(y, "y_true", "the ROC AUC")
    return y, arrays


class _Placements(NamedTuple):
    """Midrank structural components of k score vectors (rows) on the same patients.

    ``d10[r, i]`` is ``n * V10`` for positive ``i``: how many negatives score below it (ties count 1/2).
    ``d01[r, j]`` is ``m * (1 - V01)`` for negative ``j``: how many positives score below it (ties 1/2).
    Both are multiples of 1/2 and therefore exact in floating point.
    """

    auc: NDArray[np.float64]
    d10: NDArray[np.float64]
    d01: NDArray[np.float64]
    m: int
    n: int


def _placements(y: NDArray[np.int64], scores: NDArray[np.float64]) -> _Placements:
    scores = np.atleast_2d(scores)
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    tz = rankdata(scores, axis=1)  # midranks in the pooled sample
    tx = rankdata(scores[:, pos], axis=1)  # midranks among positives
    ty = rankdata(scores[:, neg], axis=1)  # midranks among negatives
    d10 = tz[:, pos] - tx
    d01 = tz[:, neg] - ty
    auc = d10.sum(axis=1) / (m * n)
    return _Placements(auc=auc, d10=d10, d01=d01, m=m, n=n)


def _contrast_variance(pl: _Placements, weights: NDArray[np.float64]) -> float:
    """DeLong variance of ``weights @ auc`` (exactly 0 when every contrasted placement is constant)."""
    c10 = weights @ pl.d10
    c01 = weights @ pl.d01
    if np.all(c10 == c10[0]) and np.all(c01 == c01[0]):
        return 0.0  # guards against round-off "variances" of 1e-34 when nothing varies
    if pl.m < 2 or pl.n < 2:
        return float("nan")
    s10 = np.var(c10 / pl.n, ddof=1)
    s01 = np.var(c01 / pl.m, ddof=1)
    return float(s10 / pl.m + s01 / pl.n)


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve from midranks (ties count one half).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response (positive class), 0 = good response.
    y_score : array-like of shape (n,)
        Finite scores; larger means more likely poor response.

    Returns
    -------
    float
        The AUC; equals ``sklearn.metrics.roc_auc_score(y_true, y_score)``.

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, a single class, or non-finite scores.
    """
    y, (s,) = _checked(y_true, (y_score, "y_score"))
    return float(_placements(y, s).auc[0])


def delong_auc_variance(y_true: ArrayLike, y_score: ArrayLike) -> tuple[float, float]:
    """AUC and its DeLong (1988) variance estimate, computed with the fast midrank algorithm.

    ``var = S10 / m + S01 / n`` where ``S10`` and ``S01`` are the sample variances (ddof=1) of the
    structural components ``V10`` (one per positive) and ``V01`` (one per negative); ``m`` and ``n``
    are the numbers of positives and negatives.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_score : array-like of shape (n,)
        Finite scores; larger means more likely poor response.

    Returns
    -------
    auc : float
        Midrank AUC.
    variance : float
        DeLong variance. Exactly 0 when every structural component is constant (e.g. all scores tied,
        or perfect separation). NaN when a class has a single patient and the components vary, since a
        sample variance needs two observations.

    Raises
    ------
    ValueError
        On invalid input (see :func:`roc_auc`).
    """
    y, (s,) = _checked(y_true, (y_score, "y_score"))
    pl = _placements(y, s)
    return float(pl.auc[0]), _contrast_variance(pl, np.ones(1))


#: Scales of :func:`delong_auc_ci`'s interval: ``"logit"`` (default) and ``"wald"`` (pROC's default).
AUC_CI_METHODS: Final = PARAMETER_CHOICES["auc_ci"]


def check_auc_ci(method: str, name: str = "method") -> str:
    """Return ``method`` if it is one of :data:`AUC_CI_METHODS`, else raise ``ValueError`` naming ``name``.

    Parameters
    ----------
    method : str
        ``"logit"`` or ``"wald"``.
    name : str, default "method"
        The parameter's name, for the message (e.g. ``"auc_ci"`` in the notebooks).

    Returns
    -------
    str
        ``method``.
    """
    if not isinstance(method, str) or method not in AUC_CI_METHODS:
        raise ValueError(f"{name} must be one of {list(AUC_CI_METHODS)} (the scale of the DeLong AUC interval), "
                         f"got {method!r}")
    return method


def delong_auc_ci(y_true: ArrayLike, y_score: ArrayLike, level: float = 0.95, *,
                  method: str = "logit") -> AUCInterval:
    """AUC with a DeLong confidence interval, built on the logit scale (default) or as a Wald interval.

    ``se`` is the square root of the DeLong variance (:func:`delong_auc_variance`) and ``z`` the normal
    quantile of ``level``.

    ``method="logit"`` (default)
        ``expit(logit(auc) -/+ z * se / (auc * (1 - auc)))`` (delta method). The back-transformed
        interval always lies inside (0, 1) and is asymmetric near the bounds, unlike the plain Wald
        interval, which can cross 1 on small test sets.
    ``method="wald"``
        ``auc -/+ z * se`` clipped to [0, 1]: pROC's default (``ci.auc(..., method = "delong")``), for
        comparison with studies that report it.

    Degenerate cases (documented choices):

    * ``auc`` exactly 1 or 0 (perfect separation either way), logit scale: the logit is infinite and
      the DeLong variance is 0, so the interval is replaced by a Wilson-type interval that treats the
      AUC as a proportion over ``min(m, n)`` independent units (the smaller class limits the
      information): ``(wilson_lo(k, k), 1)`` for AUC 1 and ``(0, wilson_hi(0, k))`` for AUC 0 with
      ``k = min(m, n)``. This is deliberately conservative; a bootstrap would return the useless
      ``(1, 1)``. The Wald interval keeps pROC's behaviour: ``se`` is 0, so the interval is the point.
    * DeLong variance exactly 0 with ``0 < auc < 1`` (e.g. all scores tied, AUC 0.5): every resample
      would give the same AUC, so the interval is the point ``(auc, auc)`` (both methods).
    * Variance undefined (a class with one patient and non-constant components): ``lo`` and ``hi``
      are NaN (both methods).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_score : array-like of shape (n,)
        Finite scores; larger means more likely poor response.
    level : float, default 0.95
        Two-sided confidence level in (0, 1).
    method : {"logit", "wald"}, default "logit"
        Scale of the interval (:data:`AUC_CI_METHODS`).

    Returns
    -------
    AUCInterval
        Named tuple ``(auc, lo, hi)``.

    Raises
    ------
    ValueError
        On invalid input (see :func:`roc_auc`), a level outside (0, 1) or an unknown ``method``.
    """
    level = check_level(level)
    method = check_auc_ci(method)
    auc, var = delong_auc_variance(y_true, y_score)
    if np.isnan(var):
        return AUCInterval(auc, float("nan"), float("nan"))
    z = norm.ppf(0.5 + level / 2)
    if method == "wald":
        half = z * np.sqrt(var)
        return AUCInterval(auc, float(max(0.0, auc - half)), float(min(1.0, auc + half)))
    if auc in (0.0, 1.0):
        y = as_binary(y_true)
        k = int(min(y.sum(), len(y) - y.sum()))
        if auc == 1.0:
            return AUCInterval(1.0, wilson_ci(k, k, level)[0], 1.0)
        return AUCInterval(0.0, 0.0, wilson_ci(0, k, level)[1])
    if var == 0.0:
        return AUCInterval(auc, auc, auc)
    half = z * np.sqrt(var) / (auc * (1.0 - auc))
    centre = logit(auc)
    return AUCInterval(auc, float(expit(centre - half)), float(expit(centre + half)))


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> tuple[float, float]:
    """Paired two-sided DeLong test of equal AUCs for two scores on the same patients.

    ``z = (auc_a - auc_b) / sqrt(var_a + var_b - 2 cov_ab)`` with the DeLong covariance of the midrank
    structural components (Sun & Xu 2014); ``p = 2 * (1 - Phi(|z|))``.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    score_a, score_b : array-like of shape (n,)
        Finite scores of the two models for the same patients in the same order.

    Returns
    -------
    z : float
        Positive when model A has the larger AUC.
    p : float
        Two-sided p-value.

    Notes
    -----
    If the two AUCs are exactly equal (in particular for identical scores, or scores with identical
    rankings) the result is ``z = 0, p = 1``. If they differ but the variance of the difference is 0
    (the difference of placements is constant, e.g. a constant score against a perfect one) or
    undefined (a class with one patient), the test is not estimable and ``(nan, nan)`` is returned;
    :func:`holm` passes NaN through.

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, a single class, or non-finite scores.
    """
    y, (a, b) = _checked(y_true, (score_a, "score_a"), (score_b, "score_b"))
    pl = _placements(y, np.vstack([a, b]))
    diff = float(pl.auc[0] - pl.auc[1])
    if diff == 0.0:
        return 0.0, 1.0
    var = _contrast_variance(pl, np.array([1.0, -1.0]))
    if not var > 0.0:
        return float("nan"), float("nan")
    z = diff / np.sqrt(var)
    return float(z), float(2.0 * norm.sf(abs(z)))


def delong_auc_difference_unpaired(y1: ArrayLike, s1: ArrayLike, y2: ArrayLike, s2: ArrayLike,
                                   level: float = 0.95) -> dict[str, float]:
    """Difference of the AUCs of two independent samples (e.g. an internal and an external test set), DeLong.

    ``diff = AUC2 - AUC1`` (midrank AUCs); the two samples share no patient, so the variance of the difference is
    the sum of the two DeLong variances (:func:`delong_auc_variance`), ``se = sqrt(var1 + var2)``; the interval
    is ``diff -/+ z * se`` (normal, Wald) and ``p = 2 * (1 - Phi(|diff| / se))`` tests equal AUCs, two-sided.
    For the same patients scored twice use the paired :func:`delong_test`, which subtracts the covariance.

    Parameters
    ----------
    y1, s1 : array-like of shape (n1,)
        Labels (1 = poor response) and finite scores of sample 1 (e.g. the internal test set).
    y2, s2 : array-like of shape (n2,)
        Labels and scores of sample 2 (e.g. the external test set).
    level : float, default 0.95
        Two-sided confidence level in (0, 1).

    Returns
    -------
    dict of str to float
        ``diff``, ``lo``, ``hi``, ``p``, and ``se``, ``auc1``, ``auc2``. Degenerate cases (as
        :func:`delong_auc_ci` and :func:`delong_test`): both variances 0 (e.g. both samples perfectly separated)
        gives the point interval ``(diff, diff)`` and ``p = 1`` when ``diff == 0``, NaN otherwise (the test is
        not estimable); a variance undefined (a class with one patient in a sample) gives NaN ``se``, ``lo``,
        ``hi`` and ``p``.

    Raises
    ------
    ValueError
        On mismatched lengths within a sample, non-binary labels, a sample with a single class, non-finite
        scores, or a level outside (0, 1).
    """
    level = check_level(level)
    aucs, variances = [], []
    for k, (y, s) in enumerate(((y1, s1), (y2, s2)), start=1):
        yy = as_binary(y, f"y{k}")
        ss = as_scores(s, f"s{k}")
        check_same_length(**{f"y{k}": yy, f"s{k}": ss})
        require_both_classes(yy, f"y{k}", f"the AUC of sample {k}")
        pl = _placements(yy, ss)
        aucs.append(float(pl.auc[0]))
        variances.append(_contrast_variance(pl, np.ones(1)))
    diff = aucs[1] - aucs[0]
    var = variances[0] + variances[1]
    out = {"diff": diff, "lo": float("nan"), "hi": float("nan"), "p": float("nan"), "se": float("nan"),
           "auc1": aucs[0], "auc2": aucs[1]}
    if np.isnan(var):
        return out
    se = float(np.sqrt(var))
    out["se"] = se
    if se == 0.0:
        out.update(lo=diff, hi=diff, p=1.0 if diff == 0.0 else float("nan"))
        return out
    half = float(norm.ppf(0.5 + level / 2)) * se
    out.update(lo=diff - half, hi=diff + half, p=float(2.0 * norm.sf(abs(diff) / se)))
    return out


def _auc_fast(pos: NDArray[np.bool_], s: NDArray[np.float64]) -> float:
    m = int(pos.sum())
    n = len(s) - m
    r = rankdata(s)
    return float((r[pos].sum() - m * (m + 1) / 2.0) / (m * n))


def bootstrap_auc_ci(
    y_true: ArrayLike,
    y_score: ArrayLike,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    groups: ArrayLike | None = None,
) -> AUCInterval:
    """AUC with a patient-level stratified percentile bootstrap interval.

    Without ``groups`` each row is one patient: every replicate draws the positives (poor) and the
    negatives (good) separately with replacement, keeping both class sizes fixed, and recomputes the
    midrank AUC. The interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    replicate AUCs (linear interpolation); the point estimate is the AUC of the original sample.

    With ``groups`` (e.g. several lesions, series or slices per patient) whole groups are resampled.
    If every group has a single label the resampling is stratified by that label (the numbers of
    positive and negative groups are kept fixed). Otherwise groups are drawn without stratification
    and a replicate lacking one of the classes is redrawn, i.e. the bootstrap is conditional on both
    classes being present.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_score : array-like of shape (n,)
        Finite scores; larger means more likely poor response.
    n_boot : int, default 2000
        Number of bootstrap replicates (at least 1).
    level : float, default 0.95
        Two-sided confidence level in (0, 1).
    seed : int, numpy Generator or None, default 0
        Seed for :func:`numpy.random.default_rng`; the same seed gives the same interval.
    groups : array-like of shape (n,), optional
        Cluster identifier of each row (any hashable values).

    Returns
    -------
    AUCInterval
        Named tuple ``(auc, lo, hi)``.

    Raises
    ------
    ValueError
        On invalid input (see :func:`roc_auc`), ``n_boot < 1``, a level outside (0, 1), ``groups`` of the
        wrong length, or mixed-label groups for which no replicate with both classes can be drawn.
    """
    y, (s,) = _checked(y_true, (y_score, "y_score"))
    level = check_level(level)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    n_boot = int(n_boot)
    rng = np.random.default_rng(seed)
    pos = y == 1
    auc = _auc_fast(pos, s)

    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
        group_label = y.copy()
        stratified = True
    else:
        g = np.asarray(groups)
        if g.ndim != 1:
            raise ValueError(f"groups must be a 1-D array, got shape {g.shape}")
        check_same_length(y_true=y, groups=g)
        _, inverse = np.unique(g, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.flatnonzero(np.diff(inverse[order])) + 1
        members = np.split(order, bounds)
        labels = [np.unique(y[idx]) for idx in members]
        stratified = all(len(lab) == 1 for lab in labels)
        group_label = np.array([lab[0] if len(lab) == 1 else -1 for lab in labels])

    boot = np.empty(n_boot)
    if stratified:
        strata = [np.flatnonzero(group_label == 1), np.flatnonzero(group_label == 0)]
        for k in range(n_boot):
            picked = np.concatenate([rng.choice(st, size=len(st), replace=True) for st in strata])
            idx = np.concatenate([members[i] for i in picked])
            boot[k] = _auc_fast(pos[idx], s[idx])
    else:
        n_groups = len(members)
        max_tries = 100 * n_boot
        tries = 0
        k = 0
        while k < n_boot:
            tries += 1
            if tries > max_tries:
                raise ValueError(
                    f"could not draw {n_boot} cluster-bootstrap replicates containing both classes "
                    f"in {max_tries} tries; "
                    "too few groups contain poor or good responders"
                )
            idx = np.concatenate([members[i] for i in rng.integers(0, n_groups, size=n_groups)])
            p = pos[idx]
            if p.all() or not p.any():
                continue
            boot[k] = _auc_fast(p, s[idx])
            k += 1

    alpha = 1.0 - level
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return AUCInterval(auc, float(lo), float(hi))
