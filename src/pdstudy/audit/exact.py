"""Small exact and approximate tests for checking published summary numbers.

All functions work from counts and summary values only (no patient data): AUC
confidence intervals from group sizes (Hanley & McNeil, 1982), p-value ranges for
paired AUC differences over an unknown correlation, exact McNemar tests over every
discordance pattern that two sets of confusion counts allow, the exact
Fisher-Freeman-Halton test for 2 x c tables, the hypergeometric probability of a
split's class balance, and the optimism of choosing a Youden threshold on the test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from pdstudy.stats import auc_variance_hanley_mcneil, fisher_exact_rxc

#: Relative tolerance for "as or less probable than the observed table" (as in R's fisher.test).
_REL_TOL = 1e-7


def _check_n(**sizes: int) -> None:
    for name, n in sizes.items():
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")


def _check_auc(auc: float, name: str = "auc") -> None:
    if not 0.0 <= float(auc) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {auc!r}")


# --------------------------------------------------------------------------- AUC


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC from the group sizes (Hanley & McNeil, 1982, eq. 2).

    Parameters
    ----------
    auc : float
        Area under the ROC curve, in [0, 1].
    n_pos, n_neg : int
        Numbers of positive and negative cases.

    Returns
    -------
    float
        ``sqrt((A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)) / (n_pos n_neg))`` with
        ``Q1 = A/(2-A)`` and ``Q2 = 2A^2/(1+A)``.
    """
    _check_auc(auc)
    _check_n(n_pos=n_pos, n_neg=n_neg)
    a = float(auc)
    # the formula's variance is 0 at AUC 0 and 1, which pdstudy.stats (open interval) does not accept
    var = 0.0 if a in (0.0, 1.0) else auc_variance_hanley_mcneil(a, n_pos, n_neg)
    return math.sqrt(max(var, 0.0))


def hanley_mcneil_ci(auc: float, n_pos: int, n_neg: int, level: float = 0.95) -> tuple[float, float]:
    """Wald confidence interval of an AUC with the Hanley-McNeil standard error.

    Parameters
    ----------
    auc : float
        Area under the ROC curve, in [0, 1].
    n_pos, n_neg : int
        Numbers of positive and negative cases.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    (float, float)
        ``auc -/+ z * SE``, clipped to [0, 1].
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    se = hanley_mcneil_se(auc, n_pos, n_neg)
    z = stats.norm.ppf(0.5 + level / 2.0)
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def paired_auc_pvalues(
    auc_a: float,
    auc_b: float,
    n_pos: int,
    n_neg: int,
    correlations: Sequence[float] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
) -> dict[float, float]:
    """Two-sided p-values of a paired AUC difference over assumed correlations.

    Two models scored on the same patients have correlated AUC estimates; the
    correlation ``r`` is not reported, so the test is run for each assumed value with
    ``var(A - B) = varA + varB - 2 r sqrt(varA varB)`` (the DeLong / Hanley-McNeil
    relation) and Hanley-McNeil variances.

    Parameters
    ----------
    auc_a, auc_b : float
        The two AUCs.
    n_pos, n_neg : int
        Group sizes of the shared test set.
    correlations : sequence of float
        Assumed correlations between the two AUC estimates, each in [-1, 1).

    Returns
    -------
    dict
        ``{r: p}``, two-sided normal p-value of ``auc_a - auc_b`` for each ``r``.
    """
    _check_auc(auc_a, "auc_a")
    _check_auc(auc_b, "auc_b")
    if len(correlations) == 0:
        raise ValueError("correlations must not be empty")
    va = hanley_mcneil_se(auc_a, n_pos, n_neg) ** 2
    vb = hanley_mcneil_se(auc_b, n_pos, n_neg) ** 2
    out: dict[float, float] = {}
    for r in correlations:
        if not -1.0 <= r < 1.0:
            raise ValueError(f"each correlation must be in [-1, 1), got {r!r}")
        var = va + vb - 2.0 * r * math.sqrt(va * vb)
        if var <= 0.0:
            out[float(r)] = 0.0 if auc_a != auc_b else 1.0
            continue
        z = (auc_a - auc_b) / math.sqrt(var)
        out[float(r)] = float(2.0 * stats.norm.sf(abs(z)))
    return out


# --------------------------------------------------------------------------- McNemar


def mcnemar_exact_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the two discordant counts.

    Parameters
    ----------
    b, c : int
        Pairs where only the first / only the second rater is correct.

    Returns
    -------
    float
        ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1 when ``b + c == 0``.
    """
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, bool) or int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    n = int(b) + int(c)
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * stats.binom.cdf(min(b, c), n, 0.5)))


def mcnemar_pvalue_range(
    counts_a: tuple[int, int],
    counts_b: tuple[int, int],
    n_pos: int,
    n_neg: int,
) -> dict[str, object]:
    """Exact McNemar p-values over every discordance pattern two confusion counts allow.

    Only the marginal counts of each rater are known, not which patients they got
    right. Within the positives, the number both got right can be anything from
    ``max(0, tp_a + tp_b - n_pos)`` to ``min(tp_a, tp_b)`` (likewise for negatives);
    each choice gives one pair of discordant counts.

    Parameters
    ----------
    counts_a, counts_b : (int, int)
        ``(tp, tn)`` of the two raters on the same patients.
    n_pos, n_neg : int
        Numbers of positive and negative patients.

    Returns
    -------
    dict
        ``p_min``, ``p_max`` (over all patterns), ``pattern_min`` and ``pattern_max``
        (the ``(b, c)`` discordant counts achieving them), ``n_patterns``.
    """
    _check_n(n_pos=n_pos, n_neg=n_neg)
    (tp_a, tn_a), (tp_b, tn_b) = counts_a, counts_b
    for name, v, hi in (("tp_a", tp_a, n_pos), ("tn_a", tn_a, n_neg), ("tp_b", tp_b, n_pos), ("tn_b", tn_b, n_neg)):
        if not 0 <= v <= hi:
            raise ValueError(f"{name} = {v} is outside [0, {hi}]")
    results: dict[tuple[int, int], float] = {}
    for k_pos in range(max(0, tp_a + tp_b - n_pos), min(tp_a, tp_b) + 1):
        for k_neg in range(max(0, tn_a + tn_b - n_neg), min(tn_a, tn_b) + 1):
            b = (tp_a - k_pos) + (tn_a - k_neg)
            c = (tp_b - k_pos) + (tn_b - k_neg)
            results[(b, c)] = mcnemar_exact_p(b, c)
    pattern_min = min(results, key=lambda bc: (results[bc], bc))
    pattern_max = max(results, key=lambda bc: (results[bc], bc))
    return {
        "p_min": results[pattern_min],
        "p_max": results[pattern_max],
        "pattern_min": pattern_min,
        "pattern_max": pattern_max,
        "n_patterns": len(results),
    }


# --------------------------------------------------------------------------- contingency tables


def fisher_freeman_halton(table: Sequence[Sequence[int]]) -> float:
    """Exact Fisher-Freeman-Halton test of independence for a 2 x c table.

    The audit's 2 x c entry point to :func:`pdstudy.stats.fisher_exact_rxc` (exact enumeration
    of the tables with the observed margins). For c = 2 this is Fisher's exact two-sided test.

    Parameters
    ----------
    table : 2 x c array-like of non-negative ints
        Counts; rows are the two groups.

    Returns
    -------
    float
        Two-sided exact p-value.
    """
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[0] != 2 or t.shape[1] < 2:
        raise ValueError(f"table must be 2 x c with c >= 2, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer) and not np.all(np.equal(np.mod(t, 1), 0)):
        raise ValueError("table must hold integer counts")
    if (t < 0).any():
        raise ValueError("table counts must be non-negative")
    if t.sum() == 0:
        raise ValueError("table is empty")
    return fisher_exact_rxc(t.astype(int))


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def split_balance_probability(n_test: int, n_pos_total: int, n_neg_total: int, k_pos_test: int) -> dict[str, float]:
    """How likely a test split's positive count is under a simple random split.

    Parameters
    ----------
    n_test : int
        Test-set size drawn at random without replacement.
    n_pos_total, n_neg_total : int
        Positives and negatives in the whole cohort.
    k_pos_test : int
        Positives observed in the test set.

    Returns
    -------
    dict
        ``expected`` (mean positives in the test set), ``p_exact`` = P(X = k),
        ``p_at_least`` = P(X >= k), ``p_two_sided`` (sum of the probabilities of counts no
        more likely than k), with X hypergeometric.
    """
    _check_n(n_test=n_test, n_pos_total=n_pos_total, n_neg_total=n_neg_total)
    total = n_pos_total + n_neg_total
    if n_test > total:
        raise ValueError(f"n_test = {n_test} exceeds the cohort size {total}")
    if not 0 <= k_pos_test <= min(n_test, n_pos_total):
        raise ValueError(f"k_pos_test = {k_pos_test} is impossible for these sizes")
    dist = stats.hypergeom(total, n_pos_total, n_test)
    support = np.arange(max(0, n_test - n_neg_total), min(n_test, n_pos_total) + 1)
    pmf = dist.pmf(support)
    p_k = float(dist.pmf(k_pos_test))
    return {
        "expected": float(dist.mean()),
        "p_exact": p_k,
        "p_at_least": float(dist.sf(k_pos_test - 1)),
        "p_two_sided": float(min(1.0, pmf[pmf <= p_k * (1 + _REL_TOL)].sum())),
    }


# --------------------------------------------------------------------------- threshold optimism


def youden_optimism(
    auc: float,
    n_pos: int,
    n_neg: int,
    n_reps: int = 4000,
    seed: int = 0,
) -> dict[str, float]:
    """Accuracy inflation from picking the Youden threshold on the test set itself.

    Scores are simulated from an equal-variance binormal model with separation
    ``d' = sqrt(2) * Phi^-1(auc)`` (negatives N(0, 1), positives N(d', 1)). For each
    replicate test set the accuracy at the threshold maximising the sample Youden index
    is compared with the accuracy at the population-optimal threshold ``d'/2`` (fixed
    before seeing the data).

    Parameters
    ----------
    auc : float
        Population AUC, in (0.5, 1).
    n_pos, n_neg : int
        Test-set group sizes.
    n_reps : int
        Simulated test sets.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    dict
        ``acc_test_optimal`` and ``acc_prespecified`` (mean accuracies, fractions),
        ``optimism`` (their difference), ``acc_population`` (``Phi(d'/2)``, the accuracy
        a pre-specified threshold reaches on average), ``sd_test_optimal``, and
        ``q95_test_optimal`` (95th percentile of the test-optimal accuracy).
    """
    _check_auc(auc)
    if not 0.5 < auc < 1.0:
        raise ValueError(f"auc must be in (0.5, 1) for a binormal simulation, got {auc!r}")
    _check_n(n_pos=n_pos, n_neg=n_neg, n_reps=n_reps)
    rng = np.random.default_rng(seed)
    d = math.sqrt(2.0) * stats.norm.ppf(auc)
    pos = rng.normal(d, 1.0, size=(n_reps, n_pos))
    neg = rng.normal(0.0, 1.0, size=(n_reps, n_neg))
    scores = np.concatenate([pos, neg], axis=1)
    labels = np.concatenate([np.ones(n_pos, dtype=bool), np.zeros(n_neg, dtype=bool)])
    order = np.argsort(-scores, axis=1)
    is_pos = labels[order]
    # Threshold after the k-th highest score (k = 0..n): predict positive for the top k.
    tp = np.concatenate([np.zeros((n_reps, 1)), np.cumsum(is_pos, axis=1)], axis=1)
    fp = np.concatenate([np.zeros((n_reps, 1)), np.cumsum(~is_pos, axis=1)], axis=1)
    youden = tp / n_pos - fp / n_neg
    best = np.argmax(youden, axis=1)
    rows = np.arange(n_reps)
    acc_opt = (tp[rows, best] + (n_neg - fp[rows, best])) / (n_pos + n_neg)
    acc_pre = ((pos > d / 2.0).sum(axis=1) + (neg <= d / 2.0).sum(axis=1)) / (n_pos + n_neg)
    return {
        "acc_test_optimal": float(acc_opt.mean()),
        "acc_prespecified": float(acc_pre.mean()),
        "optimism": float(acc_opt.mean() - acc_pre.mean()),
        "acc_population": float(stats.norm.cdf(d / 2.0)),
        "sd_test_optimal": float(acc_opt.std(ddof=1)),
        "q95_test_optimal": float(np.quantile(acc_opt, 0.95)),
    }
