"""Recalibration, Brier score, reliability (calibration) curve, decision-curve net benefit, and the
calibration-in-the-large and calibration slope of predicted probabilities with confidence intervals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import chi2, norm
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from pdstudy.stats._validation import as_binary, as_scores, check_level, check_same_length, require_both_classes
from pdstudy.stats.intervals import wilson_ci

RECALIBRATION_METHODS: Final = ("platt", "isotonic")
#: Probabilities are clipped to [EPS, 1 - EPS] before the logit in Platt scaling (float32 softmax resolution).
LOGIT_EPS: Final = 1e-7


def recalibrate(
    scores_fit: ArrayLike,
    y_fit: ArrayLike,
    scores_apply: ArrayLike,
    method: str = "platt",
    *,
    scale: str = "auto",
) -> NDArray[np.float64]:
    """Fit a recalibration map on validation / out-of-fold data and apply it to other scores.

    Fit only on data the model was not trained on **and** that is not the test set being evaluated
    (validation or out-of-fold predictions); the map is then applied to the test scores.

    ``"platt"``
        Logistic regression ``P(poor) = expit(a * x + b)`` (scikit-learn ``LogisticRegression`` without
        penalty), where ``x = logit(score)`` for probability scores or the raw score otherwise (see
        ``scale``). Platt's (1999) target smoothing is used: positives get target ``(m + 1) / (m + 2)``
        and negatives ``1 / (n + 2)`` (as in scikit-learn's ``CalibratedClassifierCV``), implemented
        with duplicated rows and sample weights. This keeps ``a`` and ``b`` finite when the validation
        scores separate the classes perfectly, which is common with a few dozen patients. The output
        lies strictly inside (0, 1) and is monotone in the score (decreasing only if ``a < 0``).
    ``"isotonic"``
        ``IsotonicRegression(increasing=True, y_min=0, y_max=1, out_of_bounds="clip")`` on the raw
        scores: the fit is a non-decreasing sequence of values at the fitted scores (constant over each
        pooled block), and scikit-learn predicts a new score by *linear interpolation* between the two
        neighbouring fitted scores, so the map is piecewise linear and non-decreasing, not a step
        function; scores outside the fitted range get the end values. Outputs may be exactly 0 or 1.

    Parameters
    ----------
    scores_fit : array-like of shape (n_fit,)
        Validation / out-of-fold scores used to fit the map.
    y_fit : array-like of shape (n_fit,)
        Their binary labels (1 = poor response); both classes are required.
    scores_apply : array-like of shape (n_apply,)
        Scores to recalibrate (e.g. the test set).
    method : {"platt", "isotonic"}, default "platt"
        Recalibration method.
    scale : {"auto", "logit", "identity"}, default "auto"
        Platt only: feature transform. ``"logit"`` uses ``logit(clip(score, LOGIT_EPS, 1 - LOGIT_EPS))``
        and requires scores in [0, 1]; ``"identity"`` uses the raw score (e.g. a logit or margin);
        ``"auto"`` picks ``"logit"`` when all fit and apply scores lie in [0, 1], else ``"identity"``.

    Returns
    -------
    ndarray of shape (n_apply,)
        Recalibrated probabilities of poor response.

    Raises
    ------
    ValueError
        On an unknown method or scale, mismatched fit lengths, non-binary or single-class ``y_fit``,
        non-finite scores, or ``scale="logit"`` with scores outside [0, 1].
    """
    if method not in RECALIBRATION_METHODS:
        raise ValueError(f"unknown recalibration method {method!r}; expected one of {RECALIBRATION_METHODS}")
    if scale not in ("auto", "logit", "identity"):
        raise ValueError(f"unknown scale {scale!r}; expected 'auto', 'logit' or 'identity'")
    s_fit = as_scores(scores_fit, "scores_fit")
    y = as_binary(y_fit, "y_fit")
    s_app = as_scores(scores_apply, "scores_apply")
    check_same_length(scores_fit=s_fit, y_fit=y)
    require_both_classes(y, "y_fit", "recalibration")

    if method == "isotonic":
        iso = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(s_fit, y.astype(np.float64))
        return np.asarray(iso.predict(s_app), dtype=np.float64)

    in_unit = bool(np.all((s_fit >= 0) & (s_fit <= 1)) and np.all((s_app >= 0) & (s_app <= 1)))
    if scale == "auto":
        scale = "logit" if in_unit else "identity"
    if scale == "logit":
        if not in_unit:
            raise ValueError("scale='logit' needs scores in [0, 1]; use scale='identity' for logits or margins")
        x_fit = logit(np.clip(s_fit, LOGIT_EPS, 1 - LOGIT_EPS))
        x_app = logit(np.clip(s_app, LOGIT_EPS, 1 - LOGIT_EPS))
    else:
        x_fit, x_app = s_fit, s_app
    m = int(y.sum())
    n = len(y) - m
    target = np.where(y == 1, (m + 1.0) / (m + 2.0), 1.0 / (n + 2.0))
    x2 = np.concatenate([x_fit, x_fit])[:, None]
    y2 = np.concatenate([np.ones(len(y)), np.zeros(len(y))])
    w2 = np.concatenate([target, 1.0 - target])
    lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=10_000, tol=1e-10)
    lr.fit(x2, y2, sample_weight=w2)
    return np.asarray(lr.predict_proba(x_app[:, None])[:, 1], dtype=np.float64)


def brier_score(y_true: ArrayLike, y_prob: ArrayLike) -> float:
    """Brier score: mean squared difference between the predicted probability and the 0/1 outcome.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_prob : array-like of shape (n,)
        Predicted probabilities of poor response, in [0, 1].

    Returns
    -------
    float
        ``mean((y_prob - y_true) ** 2)``; 0 is perfect, ``prevalence * (1 - prevalence)`` is the score of
        always predicting the prevalence.

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, or probabilities that are non-finite or outside [0, 1].
    """
    y = as_binary(y_true, "y_true")
    p = as_scores(y_prob, "y_prob", probability=True)
    check_same_length(y_true=y, y_prob=p)
    return float(np.mean((p - y) ** 2))


def calibration_curve(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    n_bins: int = 5,
    strategy: str = "quantile",
    level: float = 0.95,
) -> dict[str, NDArray[np.float64] | NDArray[np.int64]]:
    """Reliability curve: observed frequency of poor response against the mean predicted probability per bin.

    Bins are half-open ``[lower, upper)`` except the last, which is closed. With ``"quantile"`` the edges
    are the quantiles of ``y_prob`` at ``0, 1/n_bins, ..., 1`` (duplicate edges from tied predictions are
    merged, so fewer bins may result); with ``"uniform"`` they split [0, 1] evenly. Empty bins are dropped.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_prob : array-like of shape (n,)
        Predicted probabilities of poor response, in [0, 1].
    n_bins : int, default 5
        Requested number of bins (at least 1). Keep it small for ~28 patients.
    strategy : {"quantile", "uniform"}, default "quantile"
        Bin edges as described above.
    level : float, default 0.95
        Level of the Wilson interval on each bin's observed frequency.

    Returns
    -------
    dict of str to ndarray
        Equal-length arrays, one entry per non-empty bin, ready for ``pandas.DataFrame(...)``:
        ``bin_lower``, ``bin_upper`` (edges), ``n`` (patients), ``n_pos`` (poor responders),
        ``mean_predicted``, ``observed`` (``n_pos / n``), ``observed_lo``, ``observed_hi`` (Wilson).

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, invalid probabilities, ``n_bins < 1`` or an unknown
        strategy.
    """
    y = as_binary(y_true, "y_true")
    p = as_scores(y_prob, "y_prob", probability=True)
    check_same_length(y_true=y, y_prob=p)
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    n_bins = int(n_bins)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; expected 'quantile' or 'uniform'")
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    idx = np.searchsorted(edges[1:-1], p, side="right")
    n_total = len(edges) - 1
    counts = np.bincount(idx, minlength=n_total)
    n_pos = np.bincount(idx, weights=y, minlength=n_total).astype(np.int64)
    sum_p = np.bincount(idx, weights=p, minlength=n_total)
    keep = counts > 0
    counts, n_pos, sum_p = counts[keep], n_pos[keep], sum_p[keep]
    cis = np.array([wilson_ci(int(k), int(c), level) for k, c in zip(n_pos, counts, strict=True)]).reshape(-1, 2)
    return {
        "bin_lower": edges[:-1][keep],
        "bin_upper": edges[1:][keep],
        "n": counts.astype(np.int64),
        "n_pos": n_pos,
        "mean_predicted": sum_p / counts,
        "observed": n_pos / counts,
        "observed_lo": cis[:, 0],
        "observed_hi": cis[:, 1],
    }


def net_benefit(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    thresholds: ArrayLike,
    *,
    prevalence: float | None = None,
) -> pd.DataFrame:
    """Decision-curve net benefit of acting on predicted poor response, with the treat-all/none references.

    Here the positive class is **poor response**, so to "treat" a patient means to *act on a predicted
    poor response*: e.g. spare the patient a conversion therapy that is expected to be futile and choose
    an alternative strategy. A patient is treated iff ``y_prob >= pt``. The threshold probability ``pt``
    encodes how many unnecessary actions (good responders wrongly steered away, FP) one accepts per
    correctly handled poor responder (TP): the odds ``w = pt / (1 - pt)``. With ``n`` patients, of whom a
    share ``pi`` (the sample's prevalence) are poor responders, ``TPR = TP / #poor`` and
    ``FPR = FP / #good``::

        net_benefit = TP / n - FP / n * w  =  TPR * pi - FPR * (1 - pi) * w
        treat_all   = pi - (1 - pi) * w                                   # act on every patient
        treat_none  = 0                                                   # act on no one

    By default ``pi`` is the sample's own prevalence. ``prevalence`` re-weights the same TPR and FPR to
    another prevalence (e.g. the clinic's rather than the test set's, whose classes were balanced by
    design); the model's TPR and FPR at each threshold are taken as transportable.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Binary labels, 1 = poor response.
    y_prob : array-like of shape (n,)
        Predicted probabilities of poor response, in [0, 1] (calibrated, for the weights to be meaningful).
    thresholds : array-like of float
        Threshold probabilities ``pt`` in [0, 1).
    prevalence : float, optional
        Prevalence ``pi`` of poor response in (0, 1) at which the net benefit is computed; default
        (None) the sample's prevalence. Needs both classes in ``y_true``.

    Returns
    -------
    pandas.DataFrame
        One row per threshold, columns ``threshold``, ``net_benefit`` (model), ``treat_all``,
        ``treat_none``; ``attrs["prevalence"]`` is the ``pi`` used.

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, invalid probabilities, thresholds outside [0, 1), a
        prevalence outside (0, 1), or a prevalence with a single class in ``y_true``.
    """
    y = as_binary(y_true, "y_true")
    p = as_scores(y_prob, "y_prob", probability=True)
    check_same_length(y_true=y, y_prob=p)
    pt = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if pt.ndim != 1 or pt.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {pt.shape}")
    if not np.all(np.isfinite(pt)) or (pt < 0).any() or (pt >= 1).any():
        raise ValueError("thresholds must be probabilities in [0, 1) (pt / (1 - pt) is infinite at 1)")
    n = len(y)
    pos = y == 1
    treated = p[None, :] >= pt[:, None]
    tp = (treated & pos).sum(axis=1)
    fp = (treated & ~pos).sum(axis=1)
    odds = pt / (1.0 - pt)
    if prevalence is None:
        pi = float(pos.mean())
        nb = tp / n - fp / n * odds
    else:
        if isinstance(prevalence, bool) or not isinstance(prevalence, (int, float, np.floating)) \
                or not 0.0 < float(prevalence) < 1.0:
            raise ValueError(f"prevalence must be a number strictly between 0 and 1 (the share of poor "
                             f"responders to re-weight to), or None for the sample's own; got {prevalence!r}")
        require_both_classes(y, "y_true", "net benefit at a given prevalence (TPR and FPR)")
        pi = float(prevalence)
        nb = tp / pos.sum() * pi - fp / (~pos).sum() * (1.0 - pi) * odds
    out = pd.DataFrame(
        {
            "threshold": pt,
            "net_benefit": nb,
            "treat_all": pi - (1.0 - pi) * odds,
            "treat_none": np.zeros_like(pt),
        }
    )
    out.attrs["prevalence"] = pi
    return out


# --------------------------------------------------------------------------------------------- calibration with CIs


class CalibrationEstimate(tuple[float, float, float]):
    """An estimate with its confidence interval; unpacks as ``est, lo, hi``.

    ``reason`` is ``""`` when the estimate exists and otherwise says why ``est``, ``lo`` and ``hi`` are NaN
    (a single class, constant probabilities, separation), for a table's notes.
    """

    reason: str

    def __new__(cls, est: float, lo: float, hi: float, reason: str = "") -> CalibrationEstimate:
        self = super().__new__(cls, (float(est), float(lo), float(hi)))
        self.reason = reason
        return self

    def __getnewargs__(self) -> tuple[float, float, float, str]:  # type: ignore[override]
        return (*self, self.reason)

    @property
    def est(self) -> float:
        """The estimate."""
        return self[0]

    @property
    def lo(self) -> float:
        """Lower bound of the interval."""
        return self[1]

    @property
    def hi(self) -> float:
        """Upper bound of the interval."""
        return self[2]

    def __repr__(self) -> str:
        extra = f", reason={self.reason!r}" if self.reason else ""
        return f"CalibrationEstimate(est={self[0]!r}, lo={self[1]!r}, hi={self[2]!r}{extra})"


def _nan_estimate(reason: str) -> CalibrationEstimate:
    nan = float("nan")
    return CalibrationEstimate(nan, nan, nan, reason)


def _calibration_inputs(y: ArrayLike, prob: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Labels and ``logit(clip(prob))``, validated."""
    yy = as_binary(y, "y")
    p = as_scores(prob, "prob", probability=True)
    check_same_length(y=yy, prob=p)
    return yy, logit(np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS))


def _one_class(y: NDArray[np.int64]) -> str:
    m = int(y.sum())
    if 0 < m < len(y):
        return ""
    only = "poor (1)" if m else "good (0)"
    return f"needs both classes, but all {len(y)} label(s) are {only} (the maximum-likelihood fit is infinite)"


def _bracket_root(f: Callable[[float], float], start: float, step: float, direction: float) -> float:
    """Root of ``f`` (negative at ``start``, increasing away from it) in ``direction``: bracketed, then Brent."""
    lo, hi = start, start + direction * step
    for _ in range(200):
        if f(hi) > 0:
            return float(brentq(f, min(lo, hi), max(lo, hi), xtol=1e-12))
        lo, step = hi, 2.0 * step
        hi = start + direction * step
    return float("inf") * direction


def calibration_in_the_large(y: ArrayLike, prob: ArrayLike, level: float = 0.95) -> CalibrationEstimate:
    """Calibration-in-the-large: ``a`` of ``logit P(poor) = a + logit(prob)``, with a profile-likelihood interval.

    The slope is fixed at 1 (``logit(prob)`` enters as an offset), so ``a`` is the shift of the predicted
    log-odds needed to match the observed share of poor responders: 0 is ideal, ``a > 0`` means the
    probabilities are too low on average (more poor responders than predicted), ``a < 0`` too high. It is the
    maximum-likelihood estimate (no penalty; the root of ``sum(y - expit(a + logit(prob)))``), and ``prob``
    is clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` before the logit.

    The interval is the **profile-likelihood** (likelihood-ratio) interval: the values of ``a`` whose deviance
    ``2 (l(a_hat) - l(a))`` is at most the ``level`` quantile of chi-squared with 1 degree of freedom. With a
    single parameter it is the likelihood-ratio test inverted; unlike the Wald interval (``a_hat -/+ z /
    sqrt(sum p (1 - p))``, the observed information) it is asymmetric when few patients of one class carry the
    estimate, and it keeps close to the nominal level there.

    Parameters
    ----------
    y : array-like of shape (n,)
        Binary labels, 1 = poor response.
    prob : array-like of shape (n,)
        Predicted probabilities of poor response, in [0, 1].
    level : float, default 0.95
        Two-sided confidence level in (0, 1).

    Returns
    -------
    CalibrationEstimate
        ``(est, lo, hi)``; all NaN with ``reason`` set when ``y`` holds a single class (the estimate is then
        infinite).

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, probabilities that are non-finite or outside [0, 1], or a level
        outside (0, 1).
    """
    yy, o = _calibration_inputs(y, prob)
    level = check_level(level)
    reason = _one_class(yy)
    if reason:
        return _nan_estimate(f"calibration-in-the-large: {reason}")

    def score(a: float) -> float:
        return float(np.sum(yy - expit(a + o)))

    def loglik(a: float) -> float:
        eta = a + o
        return float(np.sum(yy * eta - np.logaddexp(0.0, eta)))

    # score(a) decreases from #poor (a -> -inf) to #poor - n (a -> +inf): a single root.
    lo, hi = -1.0, 1.0
    while score(lo) < 0:
        lo *= 2.0
    while score(hi) > 0:
        hi *= 2.0
    a_hat = float(brentq(score, lo, hi, xtol=1e-13))
    p_hat = expit(a_hat + o)
    se = 1.0 / np.sqrt(float(np.sum(p_hat * (1.0 - p_hat))))
    crit = float(chi2.ppf(level, 1))
    ll_hat = loglik(a_hat)

    def excess(a: float) -> float:
        return 2.0 * (ll_hat - loglik(a)) - crit

    lo = _bracket_root(excess, a_hat, se, -1.0)
    hi = _bracket_root(excess, a_hat, se, 1.0)
    return CalibrationEstimate(a_hat, lo, hi)


def _separation(y: NDArray[np.int64], x: NDArray[np.float64]) -> str:
    """Why the logistic regression of ``y`` on ``x`` (with intercept) has no finite maximum ("" if it has one)."""
    pos, neg = x[y == 1], x[y == 0]
    if np.ptp(x) == 0:
        return (f"logit(prob) is constant (all {len(x)} probabilities equal after clipping): the slope is not "
                "identifiable")
    if pos.min() >= neg.max():
        return ("logit(prob) separates the classes (every poor responder's probability >= every good "
                "responder's): the maximum-likelihood slope is +infinite")
    if pos.max() <= neg.min():
        return ("logit(prob) separates the classes the wrong way (every poor responder's probability <= every "
                "good responder's): the maximum-likelihood slope is -infinite")
    return ""


def _logistic_newton(x: NDArray[np.float64], y: NDArray[np.int64]) -> tuple[NDArray[np.float64],
                                                                            NDArray[np.float64], bool]:
    """Maximum-likelihood ``(a, b)`` of ``logit P = a + b x`` by Newton-Raphson with step halving, and the Hessian."""
    design = np.column_stack([np.ones_like(x), x])

    def loglik(beta: NDArray[np.float64]) -> float:
        eta = design @ beta
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    def info(beta: NDArray[np.float64]) -> NDArray[np.float64]:
        p = expit(design @ beta)
        return design.T @ (design * (p * (1.0 - p))[:, None])

    beta = np.zeros(2)
    for _ in range(200):
        p = expit(design @ beta)
        grad = design.T @ (y - p)
        try:
            step = np.linalg.solve(info(beta), grad)
        except np.linalg.LinAlgError:  # every p(1 - p) underflowed: near-separated
            return beta, info(beta), False
        t, ll0 = 1.0, loglik(beta)
        while loglik(beta + t * step) < ll0 - 1e-12 and t > 1e-10:
            t /= 2.0
        beta = beta + t * step
        if np.max(np.abs(t * step)) < 1e-11 * (1.0 + np.max(np.abs(beta))):
            return beta, info(beta), True
    return beta, info(beta), False


def calibration_slope(y: ArrayLike, prob: ArrayLike, level: float = 0.95) -> CalibrationEstimate:
    """Calibration slope: ``b`` of ``logit P(poor) = a + b logit(prob)``, with a Wald interval.

    1 is ideal; ``b < 1`` means the predictions are too extreme (over-fitted: high probabilities too high, low
    ones too low), ``b > 1`` too modest. Maximum likelihood without penalty by Newton-Raphson (with step
    halving); ``prob`` is clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` before the logit. The interval is
    ``b -/+ z * se`` with ``se`` from the inverse of the observed information (the Hessian of the negative
    log-likelihood at the estimate; for the logistic model it equals the expected information).

    Parameters
    ----------
    y : array-like of shape (n,)
        Binary labels, 1 = poor response.
    prob : array-like of shape (n,)
        Predicted probabilities of poor response, in [0, 1].
    level : float, default 0.95
        Two-sided confidence level in (0, 1).

    Returns
    -------
    CalibrationEstimate
        ``(est, lo, hi)``; all NaN with ``reason`` set when the maximum-likelihood slope does not exist: a single
        class in ``y``, ``logit(prob)`` constant, or ``logit(prob)`` separating the classes (completely or with
        ties at the boundary: the likelihood keeps increasing as ``|b|`` grows), or Newton-Raphson not
        converging.

    Raises
    ------
    ValueError
        On mismatched lengths, non-binary labels, probabilities that are non-finite or outside [0, 1], or a level
        outside (0, 1).
    """
    yy, o = _calibration_inputs(y, prob)
    level = check_level(level)
    reason = _one_class(yy) or _separation(yy, o)
    if reason:
        return _nan_estimate(f"calibration slope: {reason}")
    beta, hessian, converged = _logistic_newton(o, yy)
    if not converged or np.linalg.cond(hessian) > 1e14:
        return _nan_estimate("calibration slope: Newton-Raphson did not converge (near-separated probabilities)")
    se = float(np.sqrt(np.linalg.inv(hessian)[1, 1]))
    half = float(norm.ppf(0.5 + level / 2)) * se
    return CalibrationEstimate(beta[1], beta[1] - half, beta[1] + half)
