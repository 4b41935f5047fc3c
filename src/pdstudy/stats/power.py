"""Sample size and power for ROC AUC studies: one AUC against chance, two correlated AUCs on the same patients.

All computations are normal-approximation (Wald) calculations on the AUC scale. The estimated AUC is
taken to be normal with mean the true AUC and a variance given by a closed-form *variance function*
``V(auc, n_pos, n_neg)``; a z-test with the variance under the null hypothesis is applied, and its power
is evaluated with the variance under the alternative::

    power (greater)   = Phi((delta - z_{1-alpha} sd0) / sd1)
    power (two-sided) = Phi((delta - z_{1-alpha/2} sd0) / sd1) + Phi((-delta - z_{1-alpha/2} sd0) / sd1)

Two variance functions are available (``method``):

``"hanley-mcneil"`` (default)
    Hanley & McNeil (1982): the exact variance of the Mann-Whitney (empirical, midrank) AUC,
    ``[A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)] / (n_pos n_neg)``, with ``Q1 = A/(2-A)`` and
    ``Q2 = 2A^2/(1+A)``. The ``Q`` terms are exact for exponentially distributed scores and exact at
    ``A = 0.5`` for any continuous scores. Under a binormal model with equal variances (``b = 1``) ``Q1``
    is too small and ``Q2`` too large; in a balanced design (``n_pos = n_neg``) the errors nearly cancel
    and the variance of the empirical AUC is overstated only slightly (by at most 2 % for AUC <= 0.74,
    about 4 % at 0.80, 8-9 % at 0.87 and 11-13 % at 0.90), so sample sizes are mildly conservative.
    With unequal groups they do not cancel: with twice as many negatives as positives the variance is
    13 % (AUC 0.74) to 30 % (0.87) too high, with twice as many positives 10-13 % too low.
``"obuchowski"``
    Obuchowski & McClish (1997), eq. 4: the variance function of the AUC of a binormal ROC curve with
    parameters ``a = Phi^{-1}(A) sqrt(1 + b^2)`` and ``b`` (ratio of the negative to the positive score
    SD); for ``b = 1`` this is formula 3 of Obuchowski, Lieber & Wians (2004), which R's ``pROC``
    (``power.roc.test``) uses. Compared with the exact variance of the empirical AUC under the same
    binormal model it is 5-8 % low near ``A = 0.5`` and too high at larger AUCs (balanced design: about
    10-15 % at 0.74 and 35-45 % at 0.87).

The paired comparison uses Hanley & McNeil (1983): ``var(A1 - A2) = V1 + V2 - 2 r sqrt(V1 V2)`` with
``r`` (``corr``) the correlation between the two AUC *estimates* over repeated test sets, a design
parameter (Hanley & McNeil 1983 tabulate it against the score correlations; it is typically a little
below the average of the score correlations in positives and negatives). Under H0 both AUCs equal the
common value ``(A1 + A2) / 2`` and the null variance is ``2 (1 - r) V((A1 + A2) / 2)``.

References
----------
Hanley JA, McNeil BJ. The meaning and use of the area under a receiver operating characteristic (ROC)
curve. Radiology 1982; 143(1):29-36.

Hanley JA, McNeil BJ. A method of comparing the areas under receiver operating characteristic curves
derived from the same cases. Radiology 1983; 148(3):839-843.

Obuchowski NA, McClish DK. Sample size determination for diagnostic accuracy studies involving binormal
ROC curve indices. Statistics in Medicine 1997; 16(13):1529-1542.

Obuchowski NA, Lieber ML, Wians FH Jr. ROC curves in clinical chemistry: uses, misuses, and possible
solutions. Clinical Chemistry 2004; 50(7):1118-1125.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.stats import norm

VarianceMethod = Literal["hanley-mcneil", "obuchowski"]
Alternative = Literal["two-sided", "greater"]

METHODS: tuple[str, ...] = ("hanley-mcneil", "obuchowski")
ALTERNATIVES: tuple[str, ...] = ("two-sided", "greater")

#: Sample-size searches give up beyond this many positives, evaluating at most _BLOCK sizes at a time.
_MAX_N_POS = 1_000_000
_BLOCK = 65_536


class AUCSampleSize(NamedTuple):
    """Smallest test set reaching the target power; unpacks as ``n_pos, n_neg``."""

    n_pos: int
    n_neg: int

    @property
    def total(self) -> int:
        """``n_pos + n_neg``."""
        return self.n_pos + self.n_neg


# --------------------------------------------------------------------------- validation


def _check_real(x: object, name: str) -> float:
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise ValueError(f"{name} must be a finite real number, got {x!r}")
    return float(x)


def _check_auc(x: object, name: str, *, above_chance: bool = False) -> float:
    auc = _check_real(x, name)
    if above_chance and not 0.5 < auc < 1.0:
        raise ValueError(f"{name} must be an AUC strictly between 0.5 and 1 for a test against chance, got {auc}")
    if not 0.0 < auc < 1.0:
        raise ValueError(f"{name} must be an AUC strictly between 0 and 1, got {auc}")
    return auc


def _check_count(x: object, name: str) -> int:
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real) or not math.isfinite(float(x)):
        raise ValueError(f"{name} must be a positive integer number of patients, got {x!r}")
    if float(x) != int(x) or int(x) < 1:
        raise ValueError(f"{name} must be a positive integer number of patients (at least 1), got {x!r}")
    return int(x)


def _check_open_unit(x: object, name: str, example: str) -> float:
    v = _check_real(x, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1 (e.g. {example}), got {v}")
    return v


def _check_corr(x: object) -> float:
    r = _check_real(x, "corr")
    if not -1.0 <= r < 1.0:
        raise ValueError(
            "corr must be the correlation of the two AUC estimates, in [-1, 1) (typically in [0, 1); "
            f"corr = 1 would make the null variance of the difference zero), got {r}"
        )
    return r


def _check_ratio(x: object) -> float:
    ratio = _check_real(x, "ratio")
    if ratio <= 0.0:
        raise ValueError(f"ratio must be n_neg / n_pos, a positive number (e.g. 1.0 or 72 / 41), got {ratio}")
    return ratio


def _check_alternative(alternative: object) -> str:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return str(alternative)


def _check_method(method: object, b: object) -> tuple[str, float]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    b_ = _check_real(b, "b")
    if b_ <= 0.0:
        raise ValueError(f"b must be the positive binormal slope (SD of negatives / SD of positives), got {b_}")
    if method == "hanley-mcneil" and b_ != 1.0:
        raise ValueError(f"b applies only to method='obuchowski' (Hanley-McNeil has no binormal slope); got b={b_}")
    return str(method), b_


# --------------------------------------------------------------------------- variance functions (vectorised)


def _var_hanley_mcneil(auc: ArrayLike, m: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(auc, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    q1 = a / (2.0 - a)
    q2 = 2.0 * a * a / (1.0 + a)
    return (a * (1.0 - a) + (m - 1.0) * (q1 - a * a) + (n - 1.0) * (q2 - a * a)) / (m * n)


def _var_obuchowski(auc: ArrayLike, m: ArrayLike, n: ArrayLike, b: float) -> NDArray[np.float64]:
    m = np.asarray(m, dtype=np.float64)
    kappa = np.asarray(n, dtype=np.float64) / m
    s = 1.0 + b * b
    a = norm.ppf(np.asarray(auc, dtype=np.float64)) * math.sqrt(s)
    e = np.exp(-a * a / (2.0 * s))
    f = e / math.sqrt(2.0 * math.pi * s)
    g = -a * b * e / math.sqrt(2.0 * math.pi * s**3)
    per_case = f * f * (1.0 + b * b / kappa + a * a / 2.0) + g * g * b * b * (1.0 + kappa) / (2.0 * kappa)
    return per_case / m


def _variance(method: str, b: float) -> Callable[[ArrayLike, ArrayLike, ArrayLike], NDArray[np.float64]]:
    if method == "obuchowski":
        return lambda auc, m, n: _var_obuchowski(auc, m, n, b)
    return _var_hanley_mcneil


def auc_variance_hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    """Variance of the empirical AUC from Hanley & McNeil (1982).

    ``var = [A(1-A) + (n_pos - 1)(Q1 - A^2) + (n_neg - 1)(Q2 - A^2)] / (n_pos n_neg)`` with
    ``Q1 = A / (2 - A)`` (two positives both ranked above one negative) and ``Q2 = 2 A^2 / (1 + A)`` (one
    positive ranked above two negatives). The bracket is the exact variance of the Mann-Whitney AUC; the
    ``Q`` approximations are exact when the scores are exponentially distributed, exact at ``A = 0.5``
    (giving the Mann-Whitney null variance ``(n_pos + n_neg + 1) / (12 n_pos n_neg)``), and close to, but
    slightly above, the binormal values (see the module docstring).

    Parameters
    ----------
    auc : float
        True AUC in (0, 1).
    n_pos, n_neg : int
        Numbers of positive (1 = poor response) and negative patients, each at least 1.

    Returns
    -------
    float
        Variance of the AUC estimate.

    Raises
    ------
    ValueError
        If ``auc`` is not in (0, 1) or a count is not a positive integer.

    References
    ----------
    Hanley JA, McNeil BJ. The meaning and use of the area under a receiver operating characteristic (ROC)
    curve. Radiology 1982; 143(1):29-36 (equation for SE(W) with Q1, Q2 of the exponential model).
    """
    auc = _check_auc(auc, "auc")
    m = _check_count(n_pos, "n_pos")
    n = _check_count(n_neg, "n_neg")
    return float(_var_hanley_mcneil(auc, m, n))


def auc_variance_obuchowski(auc: float, n_pos: int, n_neg: int, b: float = 1.0) -> float:
    """Variance of the AUC of a binormal ROC curve, Obuchowski & McClish (1997) eq. 4.

    With ``b`` the binormal slope (SD of negative scores / SD of positive scores), ``a`` is chosen so that
    the curve has the requested AUC, ``a = Phi^{-1}(auc) sqrt(1 + b^2)``, and with ``kappa = n_neg / n_pos``::

        f = exp(-a^2 / (2 (1 + b^2))) / sqrt(2 pi (1 + b^2))
        g = -a b exp(-a^2 / (2 (1 + b^2))) / sqrt(2 pi (1 + b^2)^3)
        V = f^2 (1 + b^2 / kappa + a^2 / 2) + g^2 b^2 (1 + kappa) / (2 kappa)
        var = V / n_pos

    For ``b = 1`` this equals ``exp(-a^2/2) / (32 pi) [(5 a^2 + 8) + (a^2 + 8) / kappa] / n_pos``, formula 3
    of Obuchowski, Lieber & Wians (2004), printed there with the constants rounded to ``0.0099`` and
    ``a = 1.414 Phi^{-1}(auc)``; at ``auc = 0.5`` it gives the null value ``0.0796 (1 + 1/kappa) / n_pos``
    (``0.0792`` in the rounded form).

    Parameters
    ----------
    auc : float
        True AUC in (0, 1).
    n_pos, n_neg : int
        Numbers of positive (1 = poor response) and negative patients, each at least 1.
    b : float, default 1.0
        Binormal slope, positive.

    Returns
    -------
    float
        Variance of the AUC estimate.

    Raises
    ------
    ValueError
        If ``auc`` is not in (0, 1), a count is not a positive integer, or ``b`` is not positive.

    References
    ----------
    Obuchowski NA, McClish DK. Sample size determination for diagnostic accuracy studies involving
    binormal ROC curve indices. Statistics in Medicine 1997; 16(13):1529-1542 (eq. 4 and Table 1).

    Obuchowski NA, Lieber ML, Wians FH Jr. ROC curves in clinical chemistry: uses, misuses, and possible
    solutions. Clinical Chemistry 2004; 50(7):1118-1125 (formula 3, p. 1123).
    """
    auc = _check_auc(auc, "auc")
    m = _check_count(n_pos, "n_pos")
    n = _check_count(n_neg, "n_neg")
    _, b_ = _check_method("obuchowski", b)
    return float(_var_obuchowski(auc, m, n, b_))


# --------------------------------------------------------------------------- power of a z-test


def _z_power(
    delta: float, sd0: NDArray[np.float64], sd1: NDArray[np.float64], alpha: float, alternative: str
) -> NDArray[np.float64]:
    if alternative == "greater":
        return norm.cdf((delta - norm.isf(alpha) * sd0) / sd1)
    z = norm.isf(alpha / 2.0)
    return norm.cdf((delta - z * sd0) / sd1) + norm.cdf((-delta - z * sd0) / sd1)


def _n_neg_for(n_pos: NDArray[np.int64], ratio: float) -> NDArray[np.int64]:
    # ceil with a tolerance so that e.g. 1.7 * 10 = 17.000000000000004 gives 17, never fewer than 1
    return np.maximum(1, np.ceil(n_pos * ratio - 1e-9)).astype(np.int64)


def _smallest_n(
    power_at: Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.float64]], target: float, ratio: float
) -> AUCSampleSize:
    lo, size = 1, 256
    while lo <= _MAX_N_POS:
        n_pos = np.arange(lo, min(lo + size, _MAX_N_POS + 1), dtype=np.int64)
        n_neg = _n_neg_for(n_pos, ratio)
        reached = np.flatnonzero(power_at(n_pos, n_neg) >= target)
        if reached.size:
            i = int(reached[0])
            return AUCSampleSize(int(n_pos[i]), int(n_neg[i]))
        lo += size
        size = min(size * 8, _BLOCK)
    raise ValueError(
        f"the target power is not reached with up to {_MAX_N_POS} positives; the difference is too small "
        "for a sample-size calculation"
    )


def _power_vs_chance(
    auc: float, m: ArrayLike, n: ArrayLike, alpha: float, alternative: str, method: str, b: float
) -> NDArray[np.float64]:
    var1 = _variance(method, b)(auc, m, n)
    # Under H0 the scores of both classes share one distribution, so the binormal slope is 1 there.
    var0 = _var_obuchowski(0.5, m, n, 1.0) if method == "obuchowski" else _var_hanley_mcneil(0.5, m, n)
    return _z_power(auc - 0.5, np.sqrt(var0), np.sqrt(var1), alpha, alternative)


def auc_power_vs_chance(
    auc: float,
    n_pos: int,
    n_neg: int,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    method: VarianceMethod = "hanley-mcneil",
    b: float = 1.0,
) -> float:
    """Power of the z-test of H0: AUC = 0.5 for a test set of ``n_pos`` positives and ``n_neg`` negatives.

    The test rejects when ``(A_hat - 0.5) / sd0`` exceeds the normal quantile (``|.|`` for two-sided), with
    ``sd0`` the standard deviation of the AUC estimate under H0 (the variance function at AUC 0.5; for
    ``"hanley-mcneil"`` that is the Mann-Whitney null variance ``(n_pos + n_neg + 1) / (12 n_pos n_neg)``,
    for ``"obuchowski"`` the binormal value with ``b = 1``, since under H0 both classes share one score
    distribution). The power uses ``sd1``, the standard deviation at the true AUC::

        greater:   Phi((auc - 0.5 - z_{1-alpha} sd0) / sd1)
        two-sided: Phi((auc - 0.5 - z_{1-alpha/2} sd0) / sd1) + Phi((0.5 - auc - z_{1-alpha/2} sd0) / sd1)

    Parameters
    ----------
    auc : float
        True AUC under the alternative, in (0.5, 1).
    n_pos, n_neg : int
        Numbers of positive (1 = poor response) and negative patients, each at least 1.
    alpha : float, default 0.05
        Significance level in (0, 1).
    alternative : {"two-sided", "greater"}, default "two-sided"
        ``"greater"`` is the one-sided test of AUC > 0.5.
    method : {"hanley-mcneil", "obuchowski"}, default "hanley-mcneil"
        Variance function (see :func:`auc_variance_hanley_mcneil`, :func:`auc_variance_obuchowski`).
    b : float, default 1.0
        Binormal slope under the alternative; only with ``method="obuchowski"``.

    Returns
    -------
    float
        Power in (0, 1).

    Raises
    ------
    ValueError
        If ``auc`` is not in (0.5, 1), a count is not a positive integer, ``alpha`` is not in (0, 1), or
        ``alternative``, ``method`` or ``b`` is invalid.

    References
    ----------
    Hanley & McNeil (1982); Obuchowski & McClish (1997); Obuchowski, Lieber & Wians (2004), whose
    formula is the one-curve case of R's ``pROC::power.roc.test`` (see the module docstring).
    """
    auc = _check_auc(auc, "auc", above_chance=True)
    m = _check_count(n_pos, "n_pos")
    n = _check_count(n_neg, "n_neg")
    alpha = _check_open_unit(alpha, "alpha", "0.05")
    alternative = _check_alternative(alternative)
    method, b = _check_method(method, b)
    return float(_power_vs_chance(auc, m, n, alpha, alternative, method, b))


def auc_sample_size_vs_chance(
    auc: float,
    power: float = 0.8,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    method: VarianceMethod = "hanley-mcneil",
    b: float = 1.0,
) -> AUCSampleSize:
    """Smallest test set for which the test of H0: AUC = 0.5 reaches the target power.

    Searches ``n_pos = 1, 2, ...`` with ``n_neg = ceil(ratio * n_pos)`` and returns the first pair with
    :func:`auc_power_vs_chance` ``>= power``.

    Parameters
    ----------
    auc : float
        True AUC under the alternative, in (0.5, 1).
    power : float, default 0.8
        Target power in (0, 1).
    alpha : float, default 0.05
        Significance level in (0, 1).
    ratio : float, default 1.0
        Negatives per positive, ``n_neg / n_pos`` (``kappa`` in Obuchowski's notation), positive.
    alternative, method, b
        As in :func:`auc_power_vs_chance`.

    Returns
    -------
    AUCSampleSize
        Named tuple ``(n_pos, n_neg)`` with a ``total`` property.

    Raises
    ------
    ValueError
        On invalid input (as :func:`auc_power_vs_chance`, plus ``power`` not in (0, 1) or ``ratio`` not
        positive).
    """
    auc = _check_auc(auc, "auc", above_chance=True)
    power = _check_open_unit(power, "power", "0.8")
    alpha = _check_open_unit(alpha, "alpha", "0.05")
    ratio = _check_ratio(ratio)
    alternative = _check_alternative(alternative)
    method, b = _check_method(method, b)
    return _smallest_n(lambda m, n: _power_vs_chance(auc, m, n, alpha, alternative, method, b), power, ratio)


# --------------------------------------------------------------------------- two correlated AUCs


def _power_paired(
    auc1: float,
    auc2: float,
    m: ArrayLike,
    n: ArrayLike,
    corr: float,
    alpha: float,
    alternative: str,
    method: str,
    b: float,
) -> NDArray[np.float64]:
    var = _variance(method, b)
    v1, v2 = var(auc1, m, n), var(auc2, m, n)
    var1 = v1 + v2 - 2.0 * corr * np.sqrt(v1 * v2)
    var0 = 2.0 * (1.0 - corr) * var(0.5 * (auc1 + auc2), m, n)
    return _z_power(auc1 - auc2, np.sqrt(var0), np.sqrt(var1), alpha, alternative)


def _check_paired(
    auc1: object, auc2: object, corr: object, alpha: object, alternative: object, method: object, b: object
) -> tuple[float, float, float, float, str, str, float]:
    return (
        _check_auc(auc1, "auc1"),
        _check_auc(auc2, "auc2"),
        _check_corr(corr),
        _check_open_unit(alpha, "alpha", "0.05"),
        _check_alternative(alternative),
        *_check_method(method, b),
    )


def auc_power_paired(
    auc1: float,
    auc2: float,
    n_pos: int,
    n_neg: int,
    corr: float,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    method: VarianceMethod = "hanley-mcneil",
    b: float = 1.0,
) -> float:
    """Power of the z-test of H0: AUC1 = AUC2 for two scores measured on the same patients.

    Hanley & McNeil (1983): with ``V1``, ``V2`` the variances of the two AUC estimates (variance function
    ``method``) and ``r = corr`` the correlation between the two estimates,
    ``var(A1 - A2) = V1 + V2 - 2 r sqrt(V1 V2)`` under the alternative. Under H0 both AUCs equal the common
    value ``(auc1 + auc2) / 2``, so the null variance is ``2 (1 - r) V((auc1 + auc2) / 2)`` (``r`` held
    fixed). The power is that of the z-test with the null standard deviation (see the module docstring).
    A DeLong test (:func:`pdstudy.stats.delong_test`), which estimates the variance from the data, has
    nearly the same power.

    Parameters
    ----------
    auc1, auc2 : float
        True AUCs of the two scores, in (0, 1).
    n_pos, n_neg : int
        Numbers of positive (1 = poor response) and negative patients, each at least 1.
    corr : float
        Correlation between the two AUC estimates over repeated test sets, in [-1, 1) (typically in
        [0, 1): about 0.3-0.7 for two models or readers looking at the same images).
    alpha : float, default 0.05
        Significance level in (0, 1).
    alternative : {"two-sided", "greater"}, default "two-sided"
        ``"greater"`` is the one-sided test of AUC1 > AUC2.
    method : {"hanley-mcneil", "obuchowski"}, default "hanley-mcneil"
        Variance function for ``V1``, ``V2`` and the null variance.
    b : float, default 1.0
        Binormal slope of both curves; only with ``method="obuchowski"``.

    Returns
    -------
    float
        Power; equals ``alpha`` when ``auc1 == auc2``.

    Raises
    ------
    ValueError
        If an AUC is not in (0, 1), a count is not a positive integer, ``corr`` is not in [-1, 1),
        ``alpha`` is not in (0, 1), or ``alternative``, ``method`` or ``b`` is invalid.

    References
    ----------
    Hanley JA, McNeil BJ. A method of comparing the areas under receiver operating characteristic curves
    derived from the same cases. Radiology 1983; 148(3):839-843.
    """
    auc1, auc2, corr, alpha, alternative, method, b = _check_paired(auc1, auc2, corr, alpha, alternative, method, b)
    m = _check_count(n_pos, "n_pos")
    n = _check_count(n_neg, "n_neg")
    return float(_power_paired(auc1, auc2, m, n, corr, alpha, alternative, method, b))


def auc_sample_size_paired(
    auc1: float,
    auc2: float,
    corr: float,
    power: float = 0.8,
    alpha: float = 0.05,
    ratio: float = 1.0,
    alternative: Alternative = "two-sided",
    method: VarianceMethod = "hanley-mcneil",
    b: float = 1.0,
) -> AUCSampleSize:
    """Smallest test set for which the paired test of H0: AUC1 = AUC2 reaches the target power.

    Searches ``n_pos = 1, 2, ...`` with ``n_neg = ceil(ratio * n_pos)`` and returns the first pair with
    :func:`auc_power_paired` ``>= power``.

    Parameters
    ----------
    auc1, auc2 : float
        True AUCs, in (0, 1) and different (``auc1 > auc2`` for ``alternative="greater"``).
    corr : float
        Correlation between the two AUC estimates, in [-1, 1).
    power : float, default 0.8
        Target power in (0, 1).
    alpha : float, default 0.05
        Significance level in (0, 1).
    ratio : float, default 1.0
        Negatives per positive, ``n_neg / n_pos``, positive.
    alternative, method, b
        As in :func:`auc_power_paired`.

    Returns
    -------
    AUCSampleSize
        Named tuple ``(n_pos, n_neg)`` with a ``total`` property.

    Raises
    ------
    ValueError
        On invalid input (as :func:`auc_power_paired`, plus ``power`` not in (0, 1), ``ratio`` not
        positive, equal AUCs, or ``auc1 <= auc2`` with ``alternative="greater"``).
    """
    auc1, auc2, corr, alpha, alternative, method, b = _check_paired(auc1, auc2, corr, alpha, alternative, method, b)
    power = _check_open_unit(power, "power", "0.8")
    ratio = _check_ratio(ratio)
    if auc1 == auc2:
        raise ValueError(f"auc1 and auc2 must differ for a sample-size calculation, both are {auc1}")
    if alternative == "greater" and auc1 < auc2:
        raise ValueError(f"auc1 must exceed auc2 for alternative='greater', got auc1={auc1} < auc2={auc2}")
    return _smallest_n(lambda m, n: _power_paired(auc1, auc2, m, n, corr, alpha, alternative, method, b), power, ratio)


def power_table(
    auc_a: float,
    auc_b: float,
    n_pos: int,
    n_neg: int,
    corrs: Sequence[float] = (0.3, 0.5, 0.7),
    power: float = 0.8,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    method: VarianceMethod = "hanley-mcneil",
    b: float = 1.0,
) -> pd.DataFrame:
    """Power of a paired AUC comparison at the given test set, and the size needed, for several correlations.

    For each ``corr`` (correlation of the two AUC estimates): :func:`auc_power_paired` at ``n_pos``
    positives and ``n_neg`` negatives, and :func:`auc_sample_size_paired` for the target ``power`` at the
    same negative-to-positive ratio ``n_neg / n_pos``.

    Parameters
    ----------
    auc_a, auc_b : float
        AUCs of model A (e.g. the proposed model) and model B (e.g. the baseline), in (0, 1), different.
    n_pos, n_neg : int
        Size of the actual test set (positives = poor response, negatives = good response).
    corrs : sequence of float, default (0.3, 0.5, 0.7)
        Correlations to tabulate, each in [-1, 1); at least one.
    power : float, default 0.8
        Target power for the sample-size columns.
    alpha, alternative, method, b
        As in :func:`auc_power_paired`.

    Returns
    -------
    pandas.DataFrame
        One row per correlation, columns ``auc_a``, ``auc_b``, ``n_pos``, ``n_neg``, ``corr``, ``power``
        (at the given size), ``target_power``, ``n_pos_needed``, ``n_neg_needed``, ``n_total_needed``.

    Raises
    ------
    ValueError
        On invalid input (see :func:`auc_sample_size_paired`) or an empty ``corrs``.
    """
    m = _check_count(n_pos, "n_pos")
    n = _check_count(n_neg, "n_neg")
    corr_list = [corrs] if isinstance(corrs, numbers.Real) else list(corrs)
    if not corr_list:
        raise ValueError(f"corrs must hold at least one correlation in [-1, 1), got {corrs!r}")
    rows = []
    for corr in corr_list:
        kwargs = dict(alpha=alpha, alternative=alternative, method=method, b=b)
        pw = auc_power_paired(auc_a, auc_b, m, n, corr, **kwargs)
        need = auc_sample_size_paired(auc_a, auc_b, corr, power=power, ratio=n / m, **kwargs)
        rows.append(
            {
                "auc_a": float(auc_a),
                "auc_b": float(auc_b),
                "n_pos": m,
                "n_neg": n,
                "corr": float(corr),
                "power": pw,
                "target_power": float(power),
                "n_pos_needed": need.n_pos,
                "n_neg_needed": need.n_neg,
                "n_total_needed": need.total,
            }
        )
    return pd.DataFrame(rows)
