"""Calibration-in-the-large, calibration slope and the unpaired DeLong AUC difference against independent
computations: likelihoods written out and maximised with SciPy, a numeric Hessian, a brute-force DeLong and a
bootstrap (statsmodels is not installed in the project's environment)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.optimize import brentq, minimize, minimize_scalar
from scipy.special import expit, logit
from scipy.stats import chi2, norm

from pdstudy.stats import (
    CalibrationEstimate,
    calibration_in_the_large,
    calibration_slope,
    delong_auc_difference_unpaired,
    roc_auc,
)

Z95 = norm.ppf(0.975)


def draw(n, seed, a=0.0, b=1.0):
    """Probabilities and labels drawn from logit P(y = 1) = a + b logit(prob)."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.05, 0.95, n)
    y = (rng.uniform(size=n) < expit(a + b * logit(prob))).astype(int)
    return y, prob


def neg_loglik(eta, y):
    """Bernoulli negative log-likelihood written with log(p) and log(1 - p)."""
    p = expit(eta)
    return -float(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))


def numeric_hessian(f, x, h=1e-4):
    """Central-difference Hessian of a scalar function."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    hess = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            hess[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h * h)
    return hess


# --------------------------------------------------------------------------- calibration-in-the-large


@pytest.mark.parametrize("seed,shift", [(1, 0.0), (2, 0.8), (3, -1.2)])
def test_citl_matches_a_direct_likelihood_fit_and_its_profile_interval(seed, shift):
    y, prob = draw(70, seed, a=shift)
    o = logit(prob)
    fit = minimize_scalar(lambda a: neg_loglik(a + o, y), bounds=(-10, 10), method="bounded",
                          options={"xatol": 1e-10})
    a_hat = fit.x
    crit = chi2.ppf(0.95, 1)

    def deviance_gap(a):
        return 2 * (neg_loglik(a + o, y) - neg_loglik(a_hat + o, y)) - crit

    lo = brentq(deviance_gap, a_hat - 10, a_hat, xtol=1e-10)
    hi = brentq(deviance_gap, a_hat, a_hat + 10, xtol=1e-10)
    got = calibration_in_the_large(y, prob)
    assert isinstance(got, CalibrationEstimate) and got.reason == ""
    est, g_lo, g_hi = got
    assert est == pytest.approx(a_hat, abs=1e-6)
    assert g_lo == pytest.approx(lo, abs=1e-6)
    assert g_hi == pytest.approx(hi, abs=1e-6)
    assert g_lo < est < g_hi


def test_citl_profile_interval_is_close_to_wald_with_many_patients():
    y, prob = draw(2000, 4, a=0.3)
    est, lo, hi = calibration_in_the_large(y, prob)
    p = expit(est + logit(prob))
    se = 1 / np.sqrt(np.sum(p * (1 - p)))  # observed information, written independently
    assert lo == pytest.approx(est - Z95 * se, abs=0.01)
    assert hi == pytest.approx(est + Z95 * se, abs=0.01)


def test_citl_level_narrows_the_interval():
    y, prob = draw(60, 5)
    _, lo95, hi95 = calibration_in_the_large(y, prob)
    _, lo80, hi80 = calibration_in_the_large(y, prob, level=0.8)
    assert lo95 < lo80 < hi80 < hi95


def test_citl_single_class_is_nan_with_a_reason():
    got = calibration_in_the_large([1, 1, 1], [0.2, 0.5, 0.7])
    assert np.isnan(got).all()
    assert "both classes" in got.reason and "poor" in got.reason


def test_citl_and_slope_interval_coverage_is_near_nominal():
    # CITL: data drawn with slope 1 and intercept 0.4 (its true value); slope: slope 0.7, intercept 0.4
    citl = [calibration_in_the_large(*draw(80, 1000 + k, a=0.4)) for k in range(200)]
    slopes = [calibration_slope(*draw(80, 2000 + k, a=0.4, b=0.7)) for k in range(200)]
    assert not any(np.isnan(c.est) for c in citl + slopes)
    assert 0.9 <= np.mean([c.lo <= 0.4 <= c.hi for c in citl]) <= 0.99
    assert 0.9 <= np.mean([c.lo <= 0.7 <= c.hi for c in slopes]) <= 0.99


# --------------------------------------------------------------------------- calibration slope


@pytest.mark.parametrize("seed,slope", [(6, 1.0), (7, 0.5), (8, 1.6)])
def test_slope_matches_a_direct_fit_and_a_numeric_hessian(seed, slope):
    y, prob = draw(90, seed, a=0.2, b=slope)
    o = logit(prob)

    def f(beta):
        return neg_loglik(beta[0] + beta[1] * o, y)

    fit = minimize(f, [0.0, 1.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10_000})
    se = np.sqrt(np.linalg.inv(numeric_hessian(f, fit.x))[1, 1])
    est, lo, hi = calibration_slope(y, prob)
    assert est == pytest.approx(fit.x[1], abs=1e-5)
    assert (hi - lo) / 2 == pytest.approx(Z95 * se, rel=1e-4)
    assert (lo + hi) / 2 == pytest.approx(est, abs=1e-12)
    _, lo90, hi90 = calibration_slope(y, prob, level=0.9)
    assert (hi90 - lo90) / (hi - lo) == pytest.approx(norm.ppf(0.95) / Z95, rel=1e-9)


def test_slope_clips_probabilities_of_zero_and_one():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    prob = np.array([0.0, 0.3, 1.0, 0.6, 0.7, 0.2, 0.9, 0.1])
    est, lo, hi = calibration_slope(y, prob)
    assert np.isfinite([est, lo, hi]).all()
    o = logit(np.clip(prob, 1e-7, 1 - 1e-7))
    fit = minimize(lambda b: neg_loglik(b[0] + b[1] * o, y), [0.0, 0.5], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 10_000})
    assert est == pytest.approx(fit.x[1], abs=1e-5)


@pytest.mark.parametrize("y,prob,word", [
    ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], "separates"),
    ([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.9], "separates"),  # quasi-complete: a tie at the boundary
    ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], "wrong way"),
    ([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3], "constant"),
    ([0, 0, 0, 0], [0.1, 0.3, 0.5, 0.7], "both classes"),
])
def test_slope_nan_with_a_reason(y, prob, word):
    got = calibration_slope(y, prob)
    assert np.isnan(got).all()
    assert word in got.reason
    assert got.reason.startswith("calibration slope")


def test_estimate_unpacks_as_three_and_pickles():
    got = calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    est, lo, hi = got
    assert len(got) == 3 and np.isnan(est)
    back = pickle.loads(pickle.dumps(got))
    assert back.reason == got.reason and np.isnan(back.est)
    ok = calibration_in_the_large(*draw(30, 9))
    assert (ok.est, ok.lo, ok.hi) == tuple(ok)


@pytest.mark.parametrize("fn", [calibration_in_the_large, calibration_slope])
def test_calibration_inputs_are_validated(fn):
    with pytest.raises(ValueError, match="same length"):
        fn([0, 1, 1], [0.2, 0.4])
    with pytest.raises(ValueError, match="prob must hold probabilities"):
        fn([0, 1], [0.2, 1.4])
    with pytest.raises(ValueError, match="y must hold binary labels"):
        fn([0, 2], [0.2, 0.4])
    with pytest.raises(ValueError, match="level"):
        fn([0, 1, 0, 1], [0.2, 0.4, 0.3, 0.6], level=1.5)


# --------------------------------------------------------------------------- unpaired DeLong difference


def brute_delong(y, s):
    """AUC and DeLong variance from the explicit matrix of pairwise comparisons (ties 1/2)."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    d = s[y == 1][:, None] - s[y == 0][None, :]
    psi = (d > 0) + 0.5 * (d == 0)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01)


def two_samples(seed, n1=50, n2=40, d1=1.5, d2=0.6):
    rng = np.random.default_rng(seed)
    y1, y2 = np.arange(n1) % 2, (np.arange(n2) % 3 == 0).astype(int)
    s1 = np.round(d1 * y1 + rng.normal(size=n1), 1)  # rounded: ties
    s2 = np.round(d2 * y2 + rng.normal(size=n2), 1)
    return y1, s1, y2, s2


@pytest.mark.parametrize("seed", [10, 11])
def test_unpaired_difference_matches_brute_force_delong(seed):
    y1, s1, y2, s2 = two_samples(seed)
    (a1, v1), (a2, v2) = brute_delong(y1, s1), brute_delong(y2, s2)
    got = delong_auc_difference_unpaired(y1, s1, y2, s2)
    se = np.sqrt(v1 + v2)
    assert got["auc1"] == pytest.approx(a1, abs=1e-12) and got["auc2"] == pytest.approx(a2, abs=1e-12)
    assert got["diff"] == pytest.approx(a2 - a1, abs=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-10)
    assert got["lo"] == pytest.approx(a2 - a1 - Z95 * se, abs=1e-10)
    assert got["hi"] == pytest.approx(a2 - a1 + Z95 * se, abs=1e-10)
    assert got["p"] == pytest.approx(2 * norm.sf(abs(a2 - a1) / se), rel=1e-9)
    swapped = delong_auc_difference_unpaired(y2, s2, y1, s1)
    assert swapped["diff"] == pytest.approx(-got["diff"]) and swapped["p"] == pytest.approx(got["p"])


def test_unpaired_se_agrees_with_an_independent_stratified_bootstrap():
    y1, s1, y2, s2 = two_samples(12, n1=80, n2=80)
    rng = np.random.default_rng(0)

    def resample(y, s):
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), size=int((y == c).sum())) for c in (0, 1)])
        return roc_auc(y[idx], s[idx])

    boot = np.array([resample(y2, s2) - resample(y1, s1) for _ in range(1500)])
    got = delong_auc_difference_unpaired(y1, s1, y2, s2)
    assert got["se"] == pytest.approx(boot.std(ddof=1), rel=0.15)


def test_unpaired_difference_degenerate_cases():
    perfect = ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    got = delong_auc_difference_unpaired(*perfect, *perfect)
    assert got["diff"] == 0 and got["lo"] == got["hi"] == 0 and got["p"] == 1
    tied = ([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5])
    got = delong_auc_difference_unpaired(*perfect, *tied)
    assert got["diff"] == -0.5 and got["lo"] == got["hi"] == -0.5 and np.isnan(got["p"])
    one_poor = ([0, 0, 0, 1], [0.1, 0.5, 0.3, 0.4])
    got = delong_auc_difference_unpaired(*one_poor, *perfect)
    assert np.isnan([got["se"], got["lo"], got["hi"], got["p"]]).all() and np.isfinite(got["diff"])


def test_unpaired_difference_validates_each_sample():
    y1, s1, y2, s2 = two_samples(13)
    with pytest.raises(ValueError, match="y2"):
        delong_auc_difference_unpaired(y1, s1, np.zeros_like(y2), s2)
    with pytest.raises(ValueError, match="same length"):
        delong_auc_difference_unpaired(y1, s1[:-1], y2, s2)
    with pytest.raises(ValueError, match="s2 must be finite"):
        delong_auc_difference_unpaired(y1, s1, y2, np.r_[s2[:-1], np.nan])
    with pytest.raises(ValueError, match="level"):
        delong_auc_difference_unpaired(y1, s1, y2, s2, level=0)
