"""The AUC interval's scale (logit / Wald), net benefit at another prevalence, and isotonic recalibration's
interpolation, each against an independent hand computation (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from pdstudy import stats
from pdstudy.stats import delong_auc_ci, net_benefit, recalibrate


def _delong_by_definition(y, s):
    """AUC and DeLong variance from the O(m n) definition of the placement values (DeLong et al. 1988)."""
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    x, z = s[y == 1], s[y == 0]
    psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / len(x) + v01.var(ddof=1) / len(z)


def _data(seed, m=14, n=14, decimals=1):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(m, int), np.zeros(n, int)]
    s = np.round(rng.normal(size=m + n) + 1.0 * y, decimals)  # rounding makes ties
    return y, s


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("level", [0.95, 0.9])
def test_wald_and_logit_intervals_match_a_hand_computation(seed, level):
    y, s = _data(seed)
    auc, var = _delong_by_definition(y, s)
    assert auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    z, se = norm.ppf(0.5 + level / 2), np.sqrt(var)
    wald = delong_auc_ci(y, s, level, method="wald")
    assert tuple(wald) == pytest.approx((auc, max(0.0, auc - z * se), min(1.0, auc + z * se)), abs=1e-12)
    lo_logit = expit(logit(auc) - z * se / (auc * (1 - auc)))
    hi_logit = expit(logit(auc) + z * se / (auc * (1 - auc)))
    assert tuple(delong_auc_ci(y, s, level, method="logit")) == pytest.approx((auc, lo_logit, hi_logit), abs=1e-12)
    assert tuple(delong_auc_ci(y, s, level)) == tuple(delong_auc_ci(y, s, level, method="logit"))  # default


def test_wald_clips_at_one_where_logit_stays_inside():
    y = np.r_[np.ones(6, int), np.zeros(6, int)]
    s = np.array([0.9, 0.8, 0.85, 0.7, 0.95, 0.3, 0.1, 0.2, 0.4, 0.35, 0.25, 0.75])
    auc, var = _delong_by_definition(y, s)
    assert auc + 1.96 * np.sqrt(var) > 1  # the unclipped Wald bound crosses 1
    wald = delong_auc_ci(y, s, method="wald")
    assert wald.hi == 1.0 and wald.lo == pytest.approx(auc - norm.ppf(0.975) * np.sqrt(var), abs=1e-12)
    assert delong_auc_ci(y, s).hi < 1.0


def test_degenerate_cases_of_each_method():
    y = np.r_[np.ones(5, int), np.zeros(5, int)]
    perfect = np.arange(10.0)[::-1]
    assert tuple(delong_auc_ci(y, perfect, method="wald")) == (1.0, 1.0, 1.0)  # pROC: SE 0, point interval
    assert delong_auc_ci(y, perfect).lo < 1.0  # logit: Wilson-type lower bound
    assert tuple(delong_auc_ci(y, np.zeros(10), method="wald")) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="method must be one of"):
        delong_auc_ci(y, perfect, method="bootstrap")
    assert stats.AUC_CI_METHODS == ("logit", "wald")
    with pytest.raises(ValueError, match="auc_ci must be one of"):
        stats.check_auc_ci("Wald", "auc_ci")


def test_net_benefit_at_another_prevalence_by_hand():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.7, 0.4, 0.2, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05])
    pt = np.array([0.1, 0.25, 0.5, 0.6])
    # by hand: treated iff p >= pt
    tp = np.array([4, 3, 2, 2])  # poor responders with p >= 0.1, 0.25, 0.5, 0.6
    fp = np.array([5, 3, 2, 1])  # good responders with p >= 0.1 (0.8, 0.5, 0.3, 0.2, 0.1), 0.25, 0.5, 0.6
    w = pt / (1 - pt)
    df = net_benefit(y, p, pt, prevalence=0.3)
    assert df["net_benefit"].to_numpy() == pytest.approx(tp / 4 * 0.3 - fp / 6 * 0.7 * w, abs=1e-12)
    assert df["treat_all"].to_numpy() == pytest.approx(0.3 - 0.7 * w, abs=1e-12)
    assert df.attrs["prevalence"] == 0.3
    own = net_benefit(y, p, pt)
    assert own["net_benefit"].to_numpy() == pytest.approx(tp / 10 - fp / 10 * w, abs=1e-12)
    assert own.attrs["prevalence"] == pytest.approx(0.4)
    at_own = net_benefit(y, p, pt, prevalence=0.4)  # re-weighting to the sample's own prevalence changes nothing
    assert at_own["net_benefit"].to_numpy() == pytest.approx(own["net_benefit"].to_numpy(), abs=1e-12)
    for bad in (0.0, 1.0, -0.2, "0.3", True):
        with pytest.raises(ValueError, match="prevalence must be a number strictly between 0 and 1"):
            net_benefit(y, p, pt, prevalence=bad)
    with pytest.raises(ValueError, match="both classes"):
        net_benefit(np.ones(4, int), p[:4], pt, prevalence=0.3)


def test_isotonic_recalibration_interpolates_linearly():
    fit, y = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1])  # fit: 0 at 0.1, 0.5 at 0.2-0.3, 1 at 0.4
    out = recalibrate(fit, y, np.array([0.15, 0.25, 0.35, 0.05, 0.9]), "isotonic")
    assert out == pytest.approx([0.25, 0.5, 0.75, 0.0, 1.0])  # a step function would give 0 or 0.5 at 0.15
    doc = recalibrate.__doc__
    assert "linear interpolation" in doc and "a non-decreasing step function;" not in doc
