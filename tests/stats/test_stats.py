"""Tests for pdstudy.stats against independent computations (slow direct formulas, SciPy, scikit-learn, hand work)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import binomtest, fisher_exact, mannwhitneyu, multivariate_hypergeom, norm, random_table
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

import pdstudy
from pdstudy import stats
from pdstudy.stats import (
    apply_threshold_policy,
    binary_metrics,
    bootstrap_auc_ci,
    brier_score,
    calibration_curve,
    delong_auc_ci,
    delong_auc_variance,
    delong_test,
    fisher_exact_rxc,
    holm,
    mann_whitney,
    mcnemar_exact,
    net_benefit,
    recalibrate,
    roc_auc,
    wilson_ci,
    youden_threshold,
)

Z95 = norm.ppf(0.975)


# --------------------------------------------------------------------------- independent reference implementations


def slow_delong(y, *scores):
    """DeLong (1988) by explicit double loops: psi = 1 if pos > neg, 0.5 if tied, 0 otherwise.

    Returns the AUCs and the covariance matrix S10 / m + S01 / n.
    """
    y = np.asarray(y)
    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]
    m, n = len(pos), len(neg)
    k = len(scores)
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r, s in enumerate(scores):
        for a, i in enumerate(pos):
            for b, j in enumerate(neg):
                psi = 1.0 if s[i] > s[j] else (0.5 if s[i] == s[j] else 0.0)
                v10[r, a] += psi / n
                v01[r, b] += psi / m
    aucs = v10.mean(axis=1)
    s10 = np.zeros((k, k))
    s01 = np.zeros((k, k))
    for r in range(k):
        for q in range(k):
            s10[r, q] = sum((v10[r, a] - aucs[r]) * (v10[q, a] - aucs[q]) for a in range(m)) / (m - 1)
            s01[r, q] = sum((v01[r, b] - aucs[r]) * (v01[q, b] - aucs[q]) for b in range(n)) / (n - 1)
    return aucs, s10 / m + s01 / n


def wilson_by_hand(k, n, z=Z95):
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def tied_data(seed, m=14, n=14, decimals=1, shift=0.8):
    """Two correlated scores on m poor + n good responders, rounded to force ties."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    latent = rng.normal(size=m + n) + shift * y
    a = np.round(latent + 0.5 * rng.normal(size=m + n), decimals)
    b = np.round(latent + 0.8 * rng.normal(size=m + n), decimals)
    perm = rng.permutation(m + n)
    return y[perm], a[perm], b[perm]


# --------------------------------------------------------------------------- import hygiene


def test_import_does_not_pull_in_torch():
    src = str(Path(pdstudy.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    code = "import sys, pdstudy.stats; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_api_is_exported():
    for name in stats.__all__:
        assert hasattr(stats, name), name


# --------------------------------------------------------------------------- AUC and DeLong


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed):
    y, a, _ = tied_data(seed, m=9, n=13, decimals=0)
    assert len(np.unique(a)) < len(a)  # ties present
    assert roc_auc(y, a) == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert delong_auc_ci(y, a).auc == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert bootstrap_auc_ci(y, a, n_boot=10).auc == pytest.approx(roc_auc_score(y, a), abs=1e-12)


def test_hanley_mcneil_1982_rating_example():
    # Hanley & McNeil (1982), Radiology 143:29-36, Table 1: 5-point ratings of 109 CT images.
    normal = [33, 6, 6, 11, 2]  # 58 normal
    abnormal = [3, 2, 2, 11, 33]  # 51 abnormal
    ratings = np.r_[np.repeat(np.arange(1, 6), normal), np.repeat(np.arange(1, 6), abnormal)]
    y = np.r_[np.zeros(58, int), np.ones(51, int)]
    auc, var = delong_auc_variance(y, ratings)
    assert round(auc, 3) == 0.893  # published area
    assert auc == pytest.approx(roc_auc_score(y, ratings), abs=1e-12)
    _ref_auc, ref_cov = slow_delong(y, ratings)
    assert var == pytest.approx(ref_cov[0, 0], rel=1e-10)


def test_delong_hand_worked_tiny_example():
    # positives 0.35, 0.8; negatives 0.1, 0.4 -> V10 = [0.5, 1], V01 = [1, 0.5]
    # AUC = 0.75; S10 = S01 = var([0.5, 1], ddof=1) = 0.125; var = 0.125/2 + 0.125/2 = 0.125
    auc, var = delong_auc_variance([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert auc == pytest.approx(0.75)
    assert var == pytest.approx(0.125)


@pytest.mark.parametrize(("seed", "m", "n", "decimals"), [(0, 14, 14, 1), (1, 5, 9, 0), (2, 20, 7, 1), (3, 2, 3, 0)])
def test_delong_variance_matches_slow_double_loop(seed, m, n, decimals):
    y, a, _ = tied_data(seed, m=m, n=n, decimals=decimals)
    auc, var = delong_auc_variance(y, a)
    ref_auc, ref_cov = slow_delong(y, a)
    assert auc == pytest.approx(ref_auc[0], abs=1e-12)
    assert var == pytest.approx(ref_cov[0, 0], rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_delong_test_matches_slow_paired_z(seed):
    y, a, b = tied_data(seed, m=12, n=16, decimals=1)
    ref_auc, cov = slow_delong(y, a, b)
    z_ref = (ref_auc[0] - ref_auc[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z, p = delong_test(y, a, b)
    assert z == pytest.approx(z_ref, rel=1e-9)
    assert p == pytest.approx(2 * norm.sf(abs(z_ref)), rel=1e-9)
    z_rev, p_rev = delong_test(y, b, a)
    assert z_rev == pytest.approx(-z)
    assert p_rev == pytest.approx(p)


def test_delong_test_identical_or_same_ranking_scores():
    y, a, _ = tied_data(7)
    assert delong_test(y, a, a) == (0.0, 1.0)
    assert delong_test(y, a, 3 * a + 1) == (0.0, 1.0)  # same ranks, same AUC


def test_delong_test_not_estimable_returns_nan():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    constant = np.full(6, 0.5)  # placement differences are constant -> zero variance
    z, p = delong_test(y, perfect, constant)
    assert math.isnan(z)
    assert math.isnan(p)


def test_delong_ci_logit_scale_formula_and_bounds():
    y, a, _ = tied_data(11, m=14, n=14)
    auc, var = delong_auc_variance(y, a)
    half = Z95 * math.sqrt(var) / (auc * (1 - auc))
    res = delong_auc_ci(y, a)
    assert res.lo == pytest.approx(expit(logit(auc) - half))
    assert res.hi == pytest.approx(expit(logit(auc) + half))
    assert 0 < res.lo < auc < res.hi < 1
    narrow = delong_auc_ci(y, a, level=0.5)
    assert res.lo < narrow.lo < narrow.hi < res.hi


def test_delong_ci_stays_inside_unit_interval_near_one():
    # AUC close to 1 on a small set: the Wald interval would exceed 1, the logit one must not.
    y = np.r_[np.ones(8, int), np.zeros(8, int)]
    s = np.r_[np.arange(8) + 6.5, np.arange(8)]  # positive 6.5 below negative 7: one discordant pair
    auc, var = delong_auc_variance(y, s)
    assert auc + Z95 * math.sqrt(var) > 1
    _, lo, hi = delong_auc_ci(y, s)
    assert 0 < lo < auc < hi < 1


def test_delong_ci_degenerate_cases():
    y = np.r_[np.ones(14, int), np.zeros(14, int)]
    perfect = np.r_[np.arange(14) + 100.0, np.arange(14)]
    k = 14
    assert delong_auc_ci(y, perfect) == pytest.approx((1.0, k / (k + Z95**2), 1.0))  # Wilson lower bound of 14/14
    assert delong_auc_ci(y, -perfect) == pytest.approx((0.0, 0.0, Z95**2 / (k + Z95**2)))
    assert tuple(delong_auc_ci(y, np.full(28, 0.3))) == (0.5, 0.5, 0.5)  # all tied
    # one positive only: the DeLong variance needs two of each class
    auc, lo, hi = delong_auc_ci([1, 0, 0, 0], [0.5, 0.2, 0.7, 0.1])
    assert auc == pytest.approx(2 / 3)
    assert math.isnan(lo)
    assert math.isnan(hi)


def test_tiny_n2_and_all_tied():
    assert roc_auc([0, 1], [0.2, 0.7]) == 1.0
    assert delong_auc_ci([0, 1], [0.2, 0.7]) == pytest.approx((1.0, 1 / (1 + Z95**2), 1.0))
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert delong_auc_variance([0, 1], [0.5, 0.5]) == (0.5, 0.0)
    assert tuple(bootstrap_auc_ci([0, 1], [0.5, 0.5], n_boot=50)) == (0.5, 0.5, 0.5)
    assert delong_test([0, 1], [0.2, 0.7], [0.2, 0.7]) == (0.0, 1.0)
    y = [0, 0, 1, 1]
    assert youden_threshold(y, [0.4] * 4) == 0.4
    assert binary_metrics(y, [0.4] * 4, 0.4)["sensitivity"] == 1.0


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_contains_point_and_is_reproducible():
    y, a, _ = tied_data(3, m=14, n=14)
    res = bootstrap_auc_ci(y, a, n_boot=1000, seed=42)
    assert res.lo <= res.auc <= res.hi
    assert res == bootstrap_auc_ci(y, a, n_boot=1000, seed=42)
    assert res != bootstrap_auc_ci(y, a, n_boot=1000, seed=43)
    assert bootstrap_auc_ci(y, a, n_boot=1000, seed=np.random.default_rng(42)) == res


def test_bootstrap_singleton_groups_equal_patient_bootstrap():
    y, a, _ = tied_data(4)
    assert bootstrap_auc_ci(y, a, n_boot=300, seed=1, groups=np.arange(len(y))) == bootstrap_auc_ci(
        y, a, n_boot=300, seed=1
    )


def test_bootstrap_agrees_with_delong_on_moderate_sample():
    y, a, _ = tied_data(5, m=100, n=100, decimals=2)
    boot = bootstrap_auc_ci(y, a, n_boot=2000, seed=0)
    dl = delong_auc_ci(y, a)
    assert boot.lo == pytest.approx(dl.lo, abs=0.02)
    assert boot.hi == pytest.approx(dl.hi, abs=0.02)


def test_bootstrap_cluster_resampling():
    y, a, _ = tied_data(6, m=10, n=10)
    # two rows (e.g. two series) per patient, label-pure groups -> stratified cluster bootstrap
    y2, s2 = np.repeat(y, 2), np.repeat(a, 2) + np.tile([0.0, 0.01], len(a))
    g = np.repeat(np.arange(len(y)), 2)
    res = bootstrap_auc_ci(y2, s2, n_boot=500, seed=0, groups=g)
    assert res.auc == pytest.approx(roc_auc_score(y2, s2))
    assert res.lo <= res.auc <= res.hi
    # mixed-label groups -> unstratified cluster bootstrap, replicates redrawn until both classes present
    g_mixed = np.arange(len(y)) // 3
    res_mixed = bootstrap_auc_ci(y, a, n_boot=300, seed=0, groups=g_mixed)
    assert res_mixed.lo <= res_mixed.auc <= res_mixed.hi
    with pytest.raises(ValueError, match="same length"):
        bootstrap_auc_ci(y, a, groups=g)


# --------------------------------------------------------------------------- Wilson


def test_wilson_textbook_value_and_hand_formula():
    lo, hi = wilson_ci(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    for k, n in [(81, 263), (1, 14), (13, 14), (7, 14), (38, 39)]:
        assert wilson_ci(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)
    z90 = norm.ppf(0.95)
    assert wilson_ci(3, 10, level=0.9) == pytest.approx(wilson_by_hand(3, 10, z90), abs=1e-12)


def test_wilson_edges():
    assert wilson_ci(0, 14)[0] == 0.0
    assert wilson_ci(14, 14)[1] == 1.0
    assert wilson_ci(14, 14)[0] == pytest.approx(14 / (14 + Z95**2))
    for bad in [(5, 3), (-1, 3), (1, 0), (1.5, 3)]:
        with pytest.raises(ValueError, match=r"successes|n must"):
            wilson_ci(*bad)


# --------------------------------------------------------------------------- thresholds


def test_binary_metrics_hand_worked_confusion_matrix():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    s = [0.9, 0.6, 0.4, 0.5, 0.2, 0.1, 0.6, 0.7]
    # threshold 0.5, score >= 0.5 positive: pred = [1,1,0,1,0,0,1,1] -> TP 3, FN 1, FP 2, TN 2
    out = binary_metrics(y, s, 0.5)
    assert (out["tp"], out["fn"], out["fp"], out["tn"]) == (3, 1, 2, 2)
    assert out["accuracy"] == pytest.approx(5 / 8)
    assert out["sensitivity"] == pytest.approx(3 / 4)
    assert out["specificity"] == pytest.approx(2 / 4)
    assert out["ppv"] == pytest.approx(3 / 5)
    assert out["npv"] == pytest.approx(2 / 3)
    assert out["threshold"] == 0.5
    assert set(out) == {"accuracy", "sensitivity", "specificity", "ppv", "npv", "tp", "fp", "tn", "fn", "threshold"}


def test_binary_metrics_undefined_rates_are_nan():
    out = binary_metrics([0, 0, 0], [0.1, 0.7, 0.3], 0.5)  # no poor responders
    assert math.isnan(out["sensitivity"])
    assert out["specificity"] == pytest.approx(2 / 3)
    out = binary_metrics([0, 1, 1], [0.1, 0.2, 0.3], 0.9)  # nobody predicted poor
    assert math.isnan(out["ppv"])
    assert out["npv"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="threshold must be finite"):
        binary_metrics([0, 1], [0.1, 0.2], float("nan"))


def test_youden_hand_examples_with_ties():
    # J = 2/3 at both 0.4 (acc 5/6) and 0.7 (acc 5/6) -> larger threshold wins
    assert youden_threshold([0, 0, 0, 1, 1, 1], [0.1, 0.3, 0.5, 0.4, 0.7, 0.9]) == 0.7
    # J = 1/2 at 0.2 (TP 4, TN 1: acc 5/6) and 0.8 (TP 2, TN 2: acc 4/6) -> higher accuracy wins
    assert youden_threshold([1, 1, 1, 1, 0, 0], [0.9, 0.8, 0.3, 0.2, 0.5, 0.1]) == 0.2


@pytest.mark.parametrize("seed", range(5))
def test_youden_matches_brute_force(seed):
    y, a, _ = tied_data(seed, m=11, n=17, decimals=1)
    best = None
    for t in np.unique(a):
        met = binary_metrics(y, a, t)
        key = (round(met["sensitivity"] + met["specificity"] - 1, 12), round(met["accuracy"], 12), t)
        best = key if best is None or key > best else best
    assert youden_threshold(y, a) == best[2]


def test_threshold_policies():
    yv, sv, _ = tied_data(1)
    yt, st, _ = tied_data(2)
    t_test = youden_threshold(yt, st)
    t_val = youden_threshold(yv, sv)
    out = apply_threshold_policy("youden_test", yt, st)
    assert out == {**binary_metrics(yt, st, t_test), "policy": "youden_test", "threshold_source": "test"}
    out = apply_threshold_policy("youden_val", yt, st, yv, sv)
    assert out["threshold"] == t_val
    assert out["threshold_source"] == "val"
    assert out["tp"] == binary_metrics(yt, st, t_val)["tp"]
    assert apply_threshold_policy("fixed", yt, st, threshold=0.5)["threshold"] == 0.5
    with pytest.raises(ValueError, match="y_true_val and score_val"):
        apply_threshold_policy("youden_val", yt, st)
    with pytest.raises(ValueError, match="needs threshold"):
        apply_threshold_policy("fixed", yt, st)
    with pytest.raises(ValueError, match="chooses its own threshold"):
        apply_threshold_policy("youden_test", yt, st, threshold=0.5)
    with pytest.raises(ValueError, match="unknown threshold policy"):
        apply_threshold_policy("youden", yt, st)


# --------------------------------------------------------------------------- calibration and decision curves


def platt_by_scipy(s_fit, y_fit, s_apply):
    """Platt scaling on logit(score) with Platt's smoothed targets, fitted by direct minimisation."""
    y_fit = np.asarray(y_fit)
    m, n = y_fit.sum(), len(y_fit) - y_fit.sum()
    t = np.where(y_fit == 1, (m + 1) / (m + 2), 1 / (n + 2))
    x = logit(np.asarray(s_fit))

    def loss(ab):
        z = ab[0] * x + ab[1]
        return np.sum(t * np.logaddexp(0, -z) + (1 - t) * np.logaddexp(0, z))

    ab = minimize(loss, [1.0, 0.0], method="BFGS", options={"gtol": 1e-10}).x
    return expit(ab[0] * logit(np.asarray(s_apply)) + ab[1])


def test_platt_matches_direct_minimisation_and_is_in_open_unit_interval():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = expit(2.5 * (y - 0.5) + rng.normal(size=40))
    grid = np.linspace(0.01, 0.99, 25)
    out = recalibrate(s, y, grid, method="platt")
    assert out == pytest.approx(platt_by_scipy(s, y, grid), abs=1e-5)
    assert np.all((out > 0) & (out < 1))
    assert np.all(np.diff(out) > 0)


def test_platt_handles_perfect_separation_and_raw_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.05, 0.1, 0.2, 0.8, 0.9, 0.95])
    out = recalibrate(s, y, [0.0, 0.5, 1.0])
    assert np.all(np.isfinite(out))
    assert np.all((out > 0) & (out < 1))
    raw = recalibrate(logit(s) * 3, y, [-10.0, 0.0, 10.0])  # logits: scale="auto" -> identity
    assert np.all((raw > 0) & (raw < 1))
    assert raw[0] < raw[1] < raw[2]
    with pytest.raises(ValueError, match="scale='logit' needs scores in"):
        recalibrate(logit(s), y, [0.0], scale="logit")


def test_isotonic_is_monotone_and_clipped():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 30)
    s = rng.uniform(0.2, 0.8, 30) + 0.1 * y
    grid = np.linspace(0, 1, 101)
    out = recalibrate(s, y, grid, method="isotonic")
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0
    assert out.max() <= 1
    assert np.all(out[grid < s.min()] == out[0])
    assert np.all(out[grid > s.max()] == out[-1])
    with pytest.raises(ValueError, match="unknown recalibration method"):
        recalibrate(s, y, grid, method="beta")


def test_brier_score_hand_and_sklearn():
    assert brier_score([1, 0], [0.8, 0.3]) == pytest.approx((0.2**2 + 0.3**2) / 2)
    y, _, _ = tied_data(0)
    p = np.random.default_rng(0).uniform(size=len(y))
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        brier_score([0, 1], [0.5, 1.2])


def test_calibration_curve_quantile_bins_by_hand():
    y = [0, 0, 1, 0, 1, 1, 1, 0]
    p = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    cc = calibration_curve(y, p, n_bins=2)  # median edge 0.5 -> [0.1, 0.5), [0.5, 0.9]
    df = pd.DataFrame(cc)
    assert list(df["n"]) == [4, 4]
    assert list(df["n_pos"]) == [1, 3]
    assert df["mean_predicted"].tolist() == pytest.approx([0.25, 0.75])
    assert df["observed"].tolist() == pytest.approx([0.25, 0.75])
    assert df["bin_lower"].tolist() == pytest.approx([0.1, 0.5])
    assert df["bin_upper"].tolist() == pytest.approx([0.5, 0.9])
    assert (df["observed_lo"].iloc[0], df["observed_hi"].iloc[0]) == pytest.approx(wilson_by_hand(1, 4))
    tied = calibration_curve([0, 1, 1], [0.4, 0.4, 0.4], n_bins=5)
    assert list(tied["n"]) == [3]
    assert tied["observed"][0] == pytest.approx(2 / 3)


def test_calibration_curve_uniform_matches_sklearn():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.001, 0.999, 200)
    y = (rng.uniform(size=200) < p).astype(int)
    cc = calibration_curve(y, p, n_bins=10, strategy="uniform")
    prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert cc["observed"] == pytest.approx(prob_true)
    assert cc["mean_predicted"] == pytest.approx(prob_pred)
    assert cc["n"].sum() == 200


def test_net_benefit_hand_example():
    y = [1, 1, 0, 0, 0]
    p = [0.8, 0.3, 0.6, 0.2, 0.1]
    df = net_benefit(y, p, [0.0, 0.25, 0.5])
    assert list(df.columns) == ["threshold", "net_benefit", "treat_all", "treat_none"]
    # pt = 0.25: treat p >= 0.25 -> TP 2, FP 1 -> 2/5 - 1/5 * 1/3
    # pt = 0.5:  treat p >= 0.5  -> TP 1, FP 1 -> 1/5 - 1/5 * 1
    assert df["net_benefit"].tolist() == pytest.approx([0.4 - 0.6 * 0.0, 0.4 - 0.2 / 3, 0.0])
    prev = 0.4
    assert df["treat_all"].tolist() == pytest.approx([prev - (1 - prev) * pt / (1 - pt) for pt in (0.0, 0.25, 0.5)])
    assert (df["treat_none"] == 0).all()
    with pytest.raises(ValueError, match=r"thresholds must be probabilities in \[0, 1\)"):
        net_benefit(y, p, [0.5, 1.0])


# --------------------------------------------------------------------------- tests for comparisons and Table 1


def test_holm_hand_example_nan_and_cap():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.01, np.nan, 0.04, 0.03, 0.005])
    assert math.isnan(out[1])
    assert out[[0, 2, 3, 4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.3, 0.6, 0.9]) == pytest.approx([0.9, 1.0, 1.0])
    assert holm([0.3, 0.6, 0.9]).max() == 1.0
    assert np.isnan(holm([np.nan, np.nan])).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_holm_is_monotone_in_significance_order():
    p = np.random.default_rng(0).uniform(size=20) ** 3
    adj = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p)
    assert adj.max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_binomtest(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 28)
    a = np.where(rng.uniform(size=28) < 0.8, y, 1 - y)
    b = np.where(rng.uniform(size=28) < 0.6, y, 1 - y)
    out = mcnemar_exact(a, b, y)
    assert out["b"] == np.sum((a == y) & (b != y))
    assert out["c"] == np.sum((a != y) & (b == y))
    assert out["p_value"] == pytest.approx(binomtest(out["b"], out["b"] + out["c"], 0.5).pvalue, rel=1e-10)
    assert out["accuracy_a"] == pytest.approx(np.mean(a == y))


def test_mcnemar_no_discordance_and_hand_counts():
    y = [1, 0, 1, 0]
    assert mcnemar_exact(y, y, y)["p_value"] == 1.0
    # A correct everywhere, B wrong on 3 -> b = 3, c = 0, p = 2 * 0.5**3 = 0.25
    out = mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 0], y)
    assert (out["b"], out["c"], out["n"]) == (3, 0, 4)
    assert out["p_value"] == pytest.approx(0.25)


@pytest.mark.parametrize("table", [[[3, 1], [1, 3]], [[8, 2], [1, 5]], [[0, 5], [6, 1]], [[10, 12], [4, 2]]])
def test_fisher_2x2_matches_scipy(table):
    assert fisher_exact_rxc(table) == pytest.approx(fisher_exact(table).pvalue, rel=1e-9)
    assert fisher_exact_rxc(np.asarray(table).T) == pytest.approx(fisher_exact(table).pvalue, rel=1e-9)


def test_fisher_2x3_matches_monte_carlo_permutation():
    table = np.array([[7, 2, 5], [2, 8, 4]])  # e.g. poor/good x three categories
    p_exact = fisher_exact_rxc(table)
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    p_obs = multivariate_hypergeom.pmf(table[0], m=cols, n=rows[0])
    category = np.repeat(np.arange(3), cols)
    rng = np.random.default_rng(0)
    n_perm = 20_000
    # shuffle the category labels over the patients; the first rows[0] patients form row 1 (margins fixed)
    shuffled = np.argsort(rng.uniform(size=(n_perm, len(category))), axis=1)[:, : rows[0]]
    first_row = np.stack([(category[shuffled] == c).sum(axis=1) for c in range(3)], axis=1)
    probs = multivariate_hypergeom.pmf(first_row, m=cols, n=rows[0])
    p_mc = np.mean(probs <= p_obs * (1 + 1e-7))
    assert p_exact == pytest.approx(p_mc, abs=4 * math.sqrt(p_mc * (1 - p_mc) / n_perm) + 1e-3)
    assert fisher_exact_rxc(table.T) == pytest.approx(p_exact)
    assert fisher_exact_rxc(np.c_[table, [0, 0]]) == pytest.approx(p_exact)  # empty column dropped


def test_fisher_3x3_matches_scipy_random_table_monte_carlo():
    table = np.array([[5, 3, 6], [9, 2, 3], [1, 6, 4]])
    dist = random_table(table.sum(axis=1), table.sum(axis=0), seed=0)
    p_obs = dist.pmf(table)
    draws = dist.rvs(size=20_000)
    p_mc = np.mean(dist.pmf(draws) <= p_obs * (1 + 1e-7))
    assert fisher_exact_rxc(table) == pytest.approx(p_mc, abs=4 * math.sqrt(p_mc * (1 - p_mc) / 20_000) + 1e-3)


def test_fisher_edge_cases_and_validation():
    assert fisher_exact_rxc([[3, 4, 5], [0, 0, 0]]) == 1.0
    with pytest.raises(ValueError, match="non-negative integer counts"):
        fisher_exact_rxc([[1, -1], [2, 3]])
    with pytest.raises(ValueError, match="2-D"):
        fisher_exact_rxc([1, 2, 3])
    with pytest.raises(ValueError, match="max_tables"):
        fisher_exact_rxc([[10, 10, 10], [10, 10, 10]], max_tables=10)


def test_mann_whitney_wrapper():
    u, p = mann_whitney([1, 2, 3], [4, 5])
    assert u == 0.0
    assert p == pytest.approx(2 / math.comb(5, 2))
    x, y = [1.5, 2.0, 2.0, 3.1, 4.0], [2.0, 3.5, 4.4, 5.0, 5.5, 6.1]
    ref = mannwhitneyu(x, y, alternative="two-sided")
    assert mann_whitney(x, y) == pytest.approx((ref.statistic, ref.pvalue))
    with pytest.raises(ValueError, match="finite"):
        mann_whitney([1, np.nan], [2, 3])


# --------------------------------------------------------------------------- input validation


Y = [0, 1, 0, 1]
S = [0.1, 0.9, 0.3, 0.6]
SCORE_FUNCS = {
    "roc_auc": lambda y, s: roc_auc(y, s),
    "delong_auc_ci": lambda y, s: delong_auc_ci(y, s),
    "delong_test": lambda y, s: delong_test(y, s, s),
    "bootstrap_auc_ci": lambda y, s: bootstrap_auc_ci(y, s, n_boot=5),
    "youden_threshold": lambda y, s: youden_threshold(y, s),
    "binary_metrics": lambda y, s: binary_metrics(y, s, 0.5),
    "brier_score": lambda y, s: brier_score(y, s),
    "calibration_curve": lambda y, s: calibration_curve(y, s),
    "net_benefit": lambda y, s: net_benefit(y, s, [0.2]),
    "recalibrate": lambda y, s: recalibrate(s, y, s),
}
NEEDS_BOTH_CLASSES = ["roc_auc", "delong_auc_ci", "delong_test", "bootstrap_auc_ci", "youden_threshold", "recalibrate"]


@pytest.mark.parametrize("name", SCORE_FUNCS)
def test_validation_mismatched_lengths(name):
    with pytest.raises(ValueError, match="same length"):
        SCORE_FUNCS[name](Y, S[:3])


@pytest.mark.parametrize("name", SCORE_FUNCS)
def test_validation_non_binary_labels(name):
    with pytest.raises(ValueError, match=r"binary labels in \{0, 1\}"):
        SCORE_FUNCS[name]([0, 1, 2, 1], S)
    with pytest.raises(ValueError, match=r"binary labels in \{0, 1\}"):
        SCORE_FUNCS[name](["good", "poor", "good", "poor"], S)


@pytest.mark.parametrize("name", SCORE_FUNCS)
def test_validation_nan_scores(name):
    with pytest.raises(ValueError, match="finite"):
        SCORE_FUNCS[name](Y, [0.1, np.nan, 0.3, 0.6])


@pytest.mark.parametrize("name", NEEDS_BOTH_CLASSES)
def test_validation_single_class(name):
    with pytest.raises(ValueError, match="needs both classes"):
        SCORE_FUNCS[name]([1, 1, 1, 1], S)


def test_validation_shapes_and_level():
    with pytest.raises(ValueError, match="1-D"):
        roc_auc([[0, 1]], [[0.1, 0.2]])
    with pytest.raises(ValueError, match="empty"):
        roc_auc([], [])
    with pytest.raises(ValueError, match="level"):
        delong_auc_ci(Y, S, level=95)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_auc_ci(Y, S, n_boot=0)
    with pytest.raises(ValueError, match="same length"):
        mcnemar_exact([0, 1], [0, 1, 1], [0, 1])
    assert roc_auc(np.array([False, True, False, True]), S) == roc_auc(Y, S)  # bool labels accepted
