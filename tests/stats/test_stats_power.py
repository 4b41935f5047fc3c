"""Tests for pdstudy.stats.power: published worked examples, exact binormal computations, Monte-Carlo power.

Published numbers used here (checked against their source text, see each test):

* R package pROC (Robin et al., BMC Bioinformatics 2011; 12:77), ``power.roc.test`` documentation example
  ``power.roc.test(ncases=41, ncontrols=72, auc=0.73, sig.level=0.05)`` and its test suite
  (tests/testthat/test-power.roc.test.R): power 0.9897453.
* Obuchowski, Lieber & Wians, Clin Chem 2004; 50(7):1118-1125, Table 4 (one-sided alpha 0.05, power 0.9),
  as transcribed in the same pROC test file.

Both use formula 3 of Obuchowski et al. (2004) with its printed, rounded constants (0.0099, 1.414, 0.0792);
the package uses the unrounded Obuchowski & McClish (1997) eq. 4, so agreement is to the rounding.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import owens_t
from scipy.stats import mannwhitneyu, norm, rankdata

import pdstudy
from pdstudy import stats
from pdstudy.stats import (
    AUCSampleSize,
    auc_power_paired,
    auc_power_vs_chance,
    auc_sample_size_paired,
    auc_sample_size_vs_chance,
    auc_variance_hanley_mcneil,
    auc_variance_obuchowski,
    delong_test,
    power_table,
)

# --------------------------------------------------------------------------- independent reference computations


def obuchowski_2004_formula3(theta, kappa):
    """Per-case variance V(theta), formula 3 of Obuchowski, Lieber & Wians (2004), constants as printed."""
    a = norm.ppf(theta) * 1.414
    return 0.0099 * math.exp(-(a**2) / 2) * ((5 * a**2 + 8) + (a**2 + 8) / kappa)


def obuchowski_2004_power(theta, ncases, ncontrols, alpha, one_sided):
    """Power as pROC's power.roc.test.numeric: null per-case variance 0.0792 (1 + 1/kappa), no far tail."""
    kappa = ncontrols / ncases
    z = norm.isf(alpha if one_sided else alpha / 2)
    v0 = 0.0792 * (1 + 1 / kappa)
    return norm.cdf(
        (math.sqrt(ncases) * (theta - 0.5) - z * math.sqrt(v0)) / math.sqrt(obuchowski_2004_formula3(theta, kappa))
    )


def phi2(h, k, rho):
    """Bivariate standard normal CDF P(Z1 <= h, Z2 <= k) with correlation rho, via Owen's T (h, k > 0 or h == k)."""
    s = math.sqrt(1 - rho * rho)
    if h == k:
        return norm.cdf(h) - 2 * owens_t(h, math.sqrt((1 - rho) / (1 + rho)))
    assert h > 0 and k > 0
    return 0.5 * (norm.cdf(h) + norm.cdf(k)) - owens_t(h, (k - rho * h) / (h * s)) - owens_t(k, (h - rho * k) / (k * s))


def exact_binormal_cov(auc1, auc2, m, n, rho_pos, rho_neg):
    """Exact covariance of two Mann-Whitney AUCs on the same m positives and n negatives.

    Scores: negatives (Y1, Y2) ~ N(0, [[1, rho_neg], [rho_neg, 1]]), positives (X1, X2) ~ N((mu1, mu2),
    [[1, rho_pos], [rho_pos, 1]]) with mu_k = sqrt(2) Phi^{-1}(auc_k), so P(Xk > Yk) = auc_k (binormal, b = 1).
    cov = [(t11 - p) + (n - 1)(t10 - p) + (m - 1)(t01 - p)] / (m n), p = auc1 auc2, where t11 pairs the same
    positive and negative, t10 the same positive and different negatives, t01 different positives and the
    same negative; each t is an orthant probability of (X1 - Y1, X2 - Y2) type differences. With auc1 = auc2
    and rho = 1 this is the exact variance (Hanley & McNeil 1982 eq. 1 with exact binormal Q1, Q2).
    """
    h1, h2 = norm.ppf(auc1), norm.ppf(auc2)
    p = auc1 * auc2
    t11 = phi2(h1, h2, (rho_pos + rho_neg) / 2)
    t10 = phi2(h1, h2, rho_pos / 2)
    t01 = phi2(h1, h2, rho_neg / 2)
    return ((t11 - p) + (n - 1) * (t10 - p) + (m - 1) * (t01 - p)) / (m * n)


def exact_binormal_var(auc, m, n):
    return exact_binormal_cov(auc, auc, m, n, 1.0, 1.0)


def mw_auc(pos, neg):
    """Mann-Whitney AUC of each row (repetition): pos (R, m), neg (R, n), continuous scores."""
    m, n = pos.shape[1], neg.shape[1]
    r = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    return (r[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)


# --------------------------------------------------------------------------- import hygiene and exports


def test_import_does_not_pull_in_torch():
    src = str(Path(pdstudy.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    code = "import sys, pdstudy.stats.power; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_power_names_are_exported():
    names = {
        "AUCSampleSize",
        "auc_power_paired",
        "auc_power_vs_chance",
        "auc_sample_size_paired",
        "auc_sample_size_vs_chance",
        "auc_variance_hanley_mcneil",
        "auc_variance_obuchowski",
        "power_table",
    }
    assert names <= set(stats.__all__)


# ------------------------------------------------------------------ published worked examples (pROC, Obuchowski)


def test_rounded_formula3_reproduces_proc_example():
    # pROC documents power.roc.test(ncases=41, ncontrols=72, auc=0.73, sig.level=0.05); its test suite
    # expects power 0.9897453. The printed formula 3 reproduces it to 1e-7, so the reading of the formula is right.
    assert obuchowski_2004_power(0.73, 41, 72, 0.05, one_sided=False) == pytest.approx(0.9897453, abs=1e-7)


def test_power_vs_chance_obuchowski_matches_proc_example():
    # Unrounded constants move the power by 2.8e-4 (0.98946 instead of 0.98975).
    p = auc_power_vs_chance(0.73, 41, 72, alpha=0.05, method="obuchowski")
    assert p == pytest.approx(0.9897453, abs=5e-4)


@pytest.mark.parametrize("theta", [0.55, 0.6, 0.73, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("kappa", [0.25, 0.5, 1.0, 1.7, 4.0])
def test_obuchowski_variance_b1_is_formula3(theta, kappa):
    n_pos = 100
    n_neg = round(kappa * n_pos)
    per_case = auc_variance_obuchowski(theta, n_pos, n_neg) * n_pos
    # same formula with exact constants 1/(32 pi) and sqrt(2): equal to round-off
    a = norm.ppf(theta) * math.sqrt(2)
    exact = math.exp(-(a**2) / 2) / (32 * math.pi) * ((5 * a**2 + 8) + (a**2 + 8) / kappa)
    assert per_case == pytest.approx(exact, rel=1e-12)
    # the printed constants differ by < 1 %
    assert per_case == pytest.approx(obuchowski_2004_formula3(theta, kappa), rel=0.01)


def test_obuchowski_null_variance_is_0792():
    # Obuchowski et al. (2004) / pROC: null per-case variance 0.0792 (1 + 1/kappa); exactly (1 + 1/kappa) / (4 pi)
    assert auc_variance_obuchowski(0.5, 41, 72) * 41 == pytest.approx((1 + 41 / 72) / (4 * math.pi), rel=1e-12)
    assert auc_variance_obuchowski(0.5, 41, 72) * 41 == pytest.approx(0.0792 * (1 + 41 / 72), rel=0.01)


# Obuchowski, Lieber & Wians (2004), Table 4: cases needed for a one-sided test of AUC = 0.5 at alpha 0.05,
# power 0.9, by kappa = controls / cases (rows) and AUC (columns), as transcribed in pROC's test suite with
# the printed values (pROC corrects ncases[0.5, 0.6] from 201 to 202). Only cells where the table's minimum
# of 10 per group did not bind are used.
TABLE4_NCASES = {
    (0.25, 0.6): 334,
    (0.25, 0.7): 80,
    (0.5, 0.6): 201,
    (0.5, 0.7): 49,
    (1.0, 0.6): 135,
    (1.0, 0.7): 33,
    (1.0, 0.8): 14,
    (2.0, 0.6): 102,
    (2.0, 0.7): 25,
    (2.0, 0.8): 11,
    (4.0, 0.6): 85,
    (4.0, 0.7): 21,
}


@pytest.mark.parametrize(("kappa", "theta"), sorted(TABLE4_NCASES))
def test_sample_size_vs_chance_reproduces_obuchowski_2004_table4(kappa, theta):
    published = TABLE4_NCASES[(kappa, theta)]
    n_pos, n_neg = auc_sample_size_vs_chance(
        theta, power=0.9, alpha=0.05, ratio=kappa, alternative="greater", method="obuchowski"
    )
    # rounding of the printed constants moves the requirement by up to 1 % (e.g. 203 instead of 201)
    assert abs(n_pos - published) <= max(1, round(0.01 * published))
    assert n_neg == max(1, math.ceil(kappa * n_pos - 1e-9))


# ---------------------------------------------------------------- Hanley-McNeil against independent computations


def test_hanley_mcneil_at_chance_is_mann_whitney_null_variance():
    rng = np.random.default_rng(3)
    for m, n in [(5, 9), (14, 14), (41, 72)]:
        x, y = rng.normal(size=m), rng.normal(size=n)
        res = mannwhitneyu(x, y, method="asymptotic", use_continuity=False)
        sd_u = abs(res.statistic - m * n / 2) / norm.isf(res.pvalue / 2)  # SciPy's null SD of U
        assert auc_variance_hanley_mcneil(0.5, m, n) == pytest.approx((sd_u / (m * n)) ** 2, rel=1e-9)
        assert auc_variance_hanley_mcneil(0.5, m, n) == pytest.approx((m + n + 1) / (12 * m * n), rel=1e-12)


def test_hanley_mcneil_is_exact_for_exponential_scores():
    # Q1 = A/(2-A), Q2 = 2A^2/(1+A) are exact when scores are exponential: negatives Exp(1), positives with
    # rate 1/A - 1 give P(pos > neg) = A. Empirical variance of the Mann-Whitney AUC over 40,000 test sets.
    rng = np.random.default_rng(11)
    auc, m, n, reps = 0.8, 20, 30, 40_000
    pos = rng.exponential(scale=1 / (1 / auc - 1), size=(reps, m))
    neg = rng.exponential(scale=1.0, size=(reps, n))
    a = mw_auc(pos, neg)
    assert a.mean() == pytest.approx(auc, abs=0.002)
    assert a.var(ddof=1) == pytest.approx(auc_variance_hanley_mcneil(auc, m, n), rel=0.03)


def test_exact_binormal_variance_matches_simulation():
    # validates the reference helper used below
    rng = np.random.default_rng(5)
    auc, m, n, reps = 0.8, 25, 35, 40_000
    a = mw_auc(rng.normal(norm.ppf(auc) * math.sqrt(2), 1, (reps, m)), rng.normal(0, 1, (reps, n)))
    assert a.var(ddof=1) == pytest.approx(exact_binormal_var(auc, m, n), rel=0.03)


@pytest.mark.parametrize(("m", "n"), [(14, 14), (50, 50), (100, 100)])
def test_variance_functions_against_exact_binormal_variance_balanced(m, n):
    """The accuracy stated in the module docstring, for binormal scores with b = 1 and n_pos = n_neg."""

    def ratio(fn, auc):
        return fn(auc, m, n) / exact_binormal_var(auc, m, n)

    assert ratio(auc_variance_hanley_mcneil, 0.5) == pytest.approx(1.0, rel=1e-9)
    for auc in (0.6, 0.7, 0.74):
        assert 1.0 <= ratio(auc_variance_hanley_mcneil, auc) <= 1.02
    assert 1.02 <= ratio(auc_variance_hanley_mcneil, 0.80) <= 1.05
    assert 1.07 <= ratio(auc_variance_hanley_mcneil, 0.87) <= 1.09
    assert 1.11 <= ratio(auc_variance_hanley_mcneil, 0.90) <= 1.14
    assert 0.92 <= ratio(auc_variance_obuchowski, 0.5) <= 0.951
    assert 1.10 <= ratio(auc_variance_obuchowski, 0.74) <= 1.15
    assert 1.35 <= ratio(auc_variance_obuchowski, 0.87) <= 1.45


def test_hanley_mcneil_error_with_unequal_groups():
    """The caveat in the module docstring: with unequal groups the Q1/Q2 errors do not cancel."""
    for m, n in [(14, 28), (41, 82)]:  # twice as many negatives: too high
        assert 1.12 <= auc_variance_hanley_mcneil(0.74, m, n) / exact_binormal_var(0.74, m, n) <= 1.15
        assert 1.28 <= auc_variance_hanley_mcneil(0.87, m, n) / exact_binormal_var(0.87, m, n) <= 1.31
    for m, n in [(28, 14), (82, 41)]:  # twice as many positives: too low
        for auc in (0.74, 0.8, 0.87):
            assert 0.86 <= auc_variance_hanley_mcneil(auc, m, n) / exact_binormal_var(auc, m, n) <= 0.91


@pytest.mark.parametrize("b", [0.5, 1.0, 1.6])
def test_obuchowski_general_b_is_delta_method_of_binormal_parameters(b):
    """Eq. 4 = (dA/da)^2 var(a_hat) + (dA/db)^2 var(b_hat), A = Phi(a / sqrt(1 + b^2)), with
    var(a_hat) = (1 + a^2/2) / m + b^2 / n and var(b_hat) = b^2 (1/m + 1/n) / 2 for normal samples."""
    auc, m, n = 0.8, 30, 45
    a = norm.ppf(auc) * math.sqrt(1 + b * b)

    def area(a_, b_):
        return norm.cdf(a_ / math.sqrt(1 + b_ * b_))

    h = 1e-6
    da = (area(a + h, b) - area(a - h, b)) / (2 * h)
    db = (area(a, b + h) - area(a, b - h)) / (2 * h)
    expected = da**2 * ((1 + a * a / 2) / m + b * b / n) + db**2 * b * b * (1 / m + 1 / n) / 2
    assert auc_variance_obuchowski(auc, m, n, b=b) == pytest.approx(expected, rel=1e-7)


# --------------------------------------------------------------------------- power formulas: hand work and properties


def test_power_vs_chance_hand_computed():
    # Hanley-McNeil at A = 0.8, 20 + 20: Q1 = 0.8/1.2, Q2 = 1.28/1.8
    q1, q2 = 0.8 / 1.2, 1.28 / 1.8
    v1 = (0.16 + 19 * (q1 - 0.64) + 19 * (q2 - 0.64)) / 400  # 0.00504444
    v0 = 41 / (12 * 400)  # 0.00854167
    z = norm.isf(0.025)
    expected = norm.cdf((0.3 - z * math.sqrt(v0)) / math.sqrt(v1)) + norm.cdf(
        (-0.3 - z * math.sqrt(v0)) / math.sqrt(v1)
    )
    assert v1 == pytest.approx(0.0050444444, rel=1e-8)
    assert auc_power_vs_chance(0.8, 20, 20) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.9529, abs=1e-4)
    one_sided = norm.cdf((0.3 - norm.isf(0.05) * math.sqrt(v0)) / math.sqrt(v1))
    assert auc_power_vs_chance(0.8, 20, 20, alternative="greater") == pytest.approx(one_sided, rel=1e-12)


def test_power_paired_hand_computed():
    auc1, auc2, m, n, r = 0.87, 0.74, 14, 14, 0.5
    v1, v2 = auc_variance_hanley_mcneil(auc1, m, n), auc_variance_hanley_mcneil(auc2, m, n)
    va = v1 + v2 - 2 * r * math.sqrt(v1 * v2)
    v0 = 2 * (1 - r) * auc_variance_hanley_mcneil(0.805, m, n)
    z = norm.isf(0.025)
    expected = norm.cdf((0.13 - z * math.sqrt(v0)) / math.sqrt(va)) + norm.cdf(
        (-0.13 - z * math.sqrt(v0)) / math.sqrt(va)
    )
    assert auc_power_paired(auc1, auc2, m, n, r) == pytest.approx(expected, rel=1e-12)


def test_power_paired_properties():
    # size at equal AUCs, symmetry of the two-sided test, monotone in corr and in n
    assert auc_power_paired(0.8, 0.8, 30, 30, 0.5) == pytest.approx(0.05, abs=1e-12)
    assert auc_power_paired(0.8, 0.8, 30, 30, 0.5, alpha=0.01, alternative="greater") == pytest.approx(0.01, abs=1e-12)
    assert auc_power_paired(0.87, 0.74, 14, 14, 0.5) == pytest.approx(auc_power_paired(0.74, 0.87, 14, 14, 0.5))
    by_corr = [auc_power_paired(0.87, 0.74, 14, 14, r) for r in (-0.5, 0.0, 0.3, 0.5, 0.7, 0.9)]
    assert np.all(np.diff(by_corr) > 0)
    by_n = [auc_power_paired(0.87, 0.74, k, k, 0.5) for k in (5, 10, 20, 40, 80)]
    assert np.all(np.diff(by_n) > 0)
    assert auc_power_paired(0.87, 0.74, 14, 14, 0.5, alternative="greater") > auc_power_paired(0.87, 0.74, 14, 14, 0.5)
    # Obuchowski variances are larger at these AUCs, so the power is lower
    assert auc_power_paired(0.87, 0.74, 14, 14, 0.5, method="obuchowski") < auc_power_paired(0.87, 0.74, 14, 14, 0.5)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (auc_sample_size_vs_chance, (0.7,), dict(power=0.8, ratio=1.0)),
        (auc_sample_size_vs_chance, (0.73,), dict(power=0.95, ratio=1.7, method="obuchowski")),
        (auc_sample_size_vs_chance, (0.9,), dict(power=0.9, ratio=0.4, alternative="greater")),
        (auc_sample_size_paired, (0.87, 0.74, 0.5), dict(power=0.8, ratio=1.0)),
        (auc_sample_size_paired, (0.8, 0.85, 0.3), dict(power=0.9, ratio=2.5, alpha=0.01)),
        (auc_sample_size_paired, (0.75, 0.7, 0.6), dict(power=0.8, alternative="greater", method="obuchowski", b=0.8)),
    ],
)
def test_sample_size_is_smallest_reaching_target(fn, args, kwargs):
    res = fn(*args, **kwargs)
    assert isinstance(res, AUCSampleSize)
    assert res.total == res.n_pos + res.n_neg
    ratio = kwargs.get("ratio", 1.0)
    assert res.n_neg == max(1, math.ceil(ratio * res.n_pos - 1e-9))
    power_fn = auc_power_vs_chance if fn is auc_sample_size_vs_chance else auc_power_paired
    pkw = {k: v for k, v in kwargs.items() if k not in ("power", "ratio")}

    def power_at(n_pos):
        n_neg = max(1, math.ceil(ratio * n_pos - 1e-9))
        if fn is auc_sample_size_vs_chance:
            return power_fn(args[0], n_pos, n_neg, **pkw)
        return power_fn(args[0], args[1], n_pos, n_neg, args[2], **pkw)

    assert power_at(res.n_pos) >= kwargs["power"]
    assert all(power_at(k) < kwargs["power"] for k in range(1, res.n_pos))


# --------------------------------------------------------------------------- Monte-Carlo power under the binormal model


@pytest.mark.parametrize(
    ("auc", "n", "method"),
    [(0.65, 50, "hanley-mcneil"), (0.70, 40, "hanley-mcneil"), (0.65, 50, "obuchowski"), (0.70, 40, "obuchowski")],
)
def test_power_vs_chance_monte_carlo(auc, n, method):
    """Binormal scores (b = 1) with the given AUC; the z-test with the method's null SD is applied to the
    Mann-Whitney AUC of each of 4,000 simulated test sets (MC SE of the power about 0.007)."""
    rng = np.random.default_rng(20240601)
    reps = 4000
    pos = rng.normal(norm.ppf(auc) * math.sqrt(2), 1.0, (reps, n))
    neg = rng.normal(0.0, 1.0, (reps, n))
    a = mw_auc(pos, neg)
    var0 = auc_variance_hanley_mcneil(0.5, n, n) if method == "hanley-mcneil" else auc_variance_obuchowski(0.5, n, n)
    simulated = np.mean(np.abs(a - 0.5) / math.sqrt(var0) > norm.isf(0.025))
    formula = auc_power_vs_chance(auc, n, n, method=method)
    assert 0.6 < formula < 0.95
    assert abs(simulated - formula) <= 0.02


@pytest.fixture(scope="module")
def paired_simulation():
    """4,000 test sets of 80 + 80 patients, two binormal scores (AUC 0.80 and 0.70, b = 1) whose scores correlate
    0.5 within positives and within negatives."""
    rng = np.random.default_rng(7)
    reps, m, n, rho = 4000, 80, 80, 0.5
    auc1, auc2 = 0.80, 0.70
    chol = np.linalg.cholesky([[1.0, rho], [rho, 1.0]])
    zp = rng.standard_normal((reps, m, 2)) @ chol.T
    zn = rng.standard_normal((reps, n, 2)) @ chol.T
    mu1, mu2 = norm.ppf(auc1) * math.sqrt(2), norm.ppf(auc2) * math.sqrt(2)
    pos1, pos2 = zp[..., 0] + mu1, zp[..., 1] + mu2
    neg1, neg2 = zn[..., 0], zn[..., 1]
    c = exact_binormal_cov(auc1, auc2, m, n, rho, rho)
    r_exact = c / math.sqrt(exact_binormal_var(auc1, m, n) * exact_binormal_var(auc2, m, n))
    return dict(
        auc1=auc1, auc2=auc2, m=m, n=n, r_exact=r_exact,
        a1=mw_auc(pos1, neg1), a2=mw_auc(pos2, neg2), pos1=pos1, pos2=pos2, neg1=neg1, neg2=neg2,
    )  # fmt: skip


def test_paired_auc_correlation_exact_vs_simulated(paired_simulation):
    s = paired_simulation
    r_sim = np.corrcoef(s["a1"], s["a2"])[0, 1]
    assert 0.40 < s["r_exact"] < 0.50  # a little below the score correlation 0.5 (Hanley & McNeil 1983)
    assert abs(r_sim - s["r_exact"]) < 0.03


def test_power_paired_monte_carlo_z_test(paired_simulation):
    """The z-test of the formula (null SD from the common AUC), with corr = the exact AUC correlation."""
    s = paired_simulation
    m, n, r = s["m"], s["n"], s["r_exact"]
    var0 = 2 * (1 - r) * auc_variance_hanley_mcneil((s["auc1"] + s["auc2"]) / 2, m, n)
    simulated = np.mean(np.abs(s["a1"] - s["a2"]) / math.sqrt(var0) > norm.isf(0.025))
    formula = auc_power_paired(s["auc1"], s["auc2"], m, n, r)
    assert 0.6 < formula < 0.8
    assert abs(simulated - formula) <= 0.02
    # the check can fail: ignoring the pairing (corr = 0) is far off
    assert abs(simulated - auc_power_paired(s["auc1"], s["auc2"], m, n, 0.0)) > 0.15


def test_power_paired_monte_carlo_delong(paired_simulation):
    """The DeLong test the study runs (pdstudy.stats.delong_test) on the first 2,000 simulated test sets."""
    s = paired_simulation
    m, n = s["m"], s["n"]
    y = np.r_[np.ones(m), np.zeros(n)]
    k = 2000
    rejected = [
        delong_test(y, np.r_[s["pos1"][i], s["neg1"][i]], np.r_[s["pos2"][i], s["neg2"][i]])[1] < 0.05 for i in range(k)
    ]
    formula = auc_power_paired(s["auc1"], s["auc2"], m, n, s["r_exact"])
    assert abs(np.mean(rejected) - formula) <= 0.03


# --------------------------------------------------------------------------- power_table


def test_power_table_headline_comparison():
    table = power_table(0.87, 0.74, 14, 14)
    assert list(table.columns) == [
        "auc_a", "auc_b", "n_pos", "n_neg", "corr", "power", "target_power",
        "n_pos_needed", "n_neg_needed", "n_total_needed",
    ]  # fmt: skip
    assert table["corr"].tolist() == [0.3, 0.5, 0.7]
    for row in table.itertuples():
        assert row.power == pytest.approx(auc_power_paired(0.87, 0.74, 14, 14, row.corr))
        assert (row.n_pos_needed, row.n_neg_needed) == tuple(auc_sample_size_paired(0.87, 0.74, row.corr, power=0.8))
        assert row.n_total_needed == row.n_pos_needed + row.n_neg_needed
        assert row.power < 0.8 and row.n_total_needed > 28
    assert table["power"].is_monotonic_increasing
    assert table["n_total_needed"].is_monotonic_decreasing
    # regression values of this implementation (Hanley-McNeil variances, two-sided alpha 0.05)
    assert table["power"].round(3).tolist() == [0.255, 0.338, 0.510]
    assert table["n_total_needed"].tolist() == [126, 92, 56]


def test_power_table_keeps_case_control_ratio():
    table = power_table(0.85, 0.75, 20, 50, corrs=[0.4], power=0.9, method="obuchowski")
    assert isinstance(table, pd.DataFrame) and len(table) == 1
    row = table.iloc[0]
    assert row["n_neg_needed"] == math.ceil(2.5 * row["n_pos_needed"] - 1e-9)
    assert power_table(0.85, 0.75, 20, 50, corrs=0.4).shape[0] == 1


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: auc_variance_hanley_mcneil(1.0, 10, 10), "auc"),
        (lambda: auc_variance_hanley_mcneil(float("nan"), 10, 10), "auc"),
        (lambda: auc_variance_hanley_mcneil(0.7, 0, 10), "n_pos"),
        (lambda: auc_variance_hanley_mcneil(0.7, 10, 2.5), "n_neg"),
        (lambda: auc_variance_hanley_mcneil(0.7, True, 10), "n_pos"),
        (lambda: auc_variance_obuchowski(0.7, 10, 10, b=0.0), "b"),
        (lambda: auc_power_vs_chance(0.5, 10, 10), "auc"),
        (lambda: auc_power_vs_chance(0.4, 10, 10), "auc"),
        (lambda: auc_power_vs_chance(0.7, 10, 10, alpha=0.0), "alpha"),
        (lambda: auc_power_vs_chance(0.7, 10, 10, alpha=1.5), "alpha"),
        (lambda: auc_power_vs_chance(0.7, 10, 10, alternative="less"), "alternative"),
        (lambda: auc_power_vs_chance(0.7, 10, 10, method="delong"), "method"),
        (lambda: auc_power_vs_chance(0.7, 10, 10, b=2.0), "b"),
        (lambda: auc_sample_size_vs_chance(0.7, power=1.0), "power"),
        (lambda: auc_sample_size_vs_chance(0.7, power=0.8, ratio=0.0), "ratio"),
        (lambda: auc_sample_size_vs_chance("0.7"), "auc"),
        (lambda: auc_power_paired(0.0, 0.7, 10, 10, 0.5), "auc1"),
        (lambda: auc_power_paired(0.8, 1.2, 10, 10, 0.5), "auc2"),
        (lambda: auc_power_paired(0.8, 0.7, 10, 10, 1.0), "corr"),
        (lambda: auc_power_paired(0.8, 0.7, 10, 10, -1.5), "corr"),
        (lambda: auc_power_paired(0.8, 0.7, -3, 10, 0.5), "n_pos"),
        (lambda: auc_sample_size_paired(0.8, 0.8, 0.5), "auc1 and auc2 must differ"),
        (lambda: auc_sample_size_paired(0.7, 0.8, 0.5, alternative="greater"), "auc1 must exceed auc2"),
        (lambda: auc_sample_size_paired(0.8, 0.7, 0.5, power=0.0), "power"),
        (lambda: power_table(0.87, 0.74, 14, 14, corrs=()), "corrs"),
        (lambda: power_table(0.87, 0.74, 14, 0, corrs=(0.5,)), "n_neg"),
    ],
)
def test_invalid_inputs_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unreachable_sample_size_is_reported():
    with pytest.raises(ValueError, match="not reached"):
        auc_sample_size_paired(0.8, 0.8 - 1e-6, 0.5)
