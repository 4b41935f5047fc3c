"""Tests of the paper audit (pdstudy.audit): solvers and tests against hand-worked values."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pdstudy import audit
from pdstudy.audit.feasibility import matches_printed, printed_decimals
from pdstudy.core.paper import load_paper, lookup

# --------------------------------------------------------------------------- feasibility solver


def test_feasible_counts_headline_triple_is_unique():
    # 12/14 poor and 12/14 good -> 85.71 / 85.71 / 85.71 (24/28).
    sols = audit.feasible_counts("85.71", "85.71", "85.71", 14, 14)
    assert sols == [(12, 12)]
    assert audit.feasibility_verdict(sols) == "consistent"
    assert audit.feasible_counts(85.71, 85.71, 85.71, 14, 14) == [(12, 12)]


@pytest.mark.parametrize(
    ("triple", "sizes"),
    [
        (("98.11", "97.44", "98.63"), (39, 73)),  # Table 2 hybrid, train: 110/112 = 98.21, 109/112 = 97.32
        (("82.14", "85.71", "75.57"), (14, 14)),  # Table 3 C20: 75.57% is not k/14 for any k
        (("84.52", "92.86", "75.19"), (42, 42)),  # Table 3 average, pooled over 3 x 28 reads
        (("75.00", "71.43", "71.43"), (14, 14)),  # 10 + 10 = 20/28 = 71.43, not 75
    ],
)
def test_feasible_counts_flags_impossible_triples(triple, sizes):
    sols = audit.feasible_counts(*triple, *sizes)
    assert sols == []
    assert audit.feasibility_verdict(sols) == "inconsistent"


def test_single_value_repair_points_at_the_typo():
    repairs = audit.single_value_repairs("82.14", "85.71", "75.57", 14, 14)
    assert [(m, c) for m, c, _ in repairs] == [("spe", (12, 11))]
    assert repairs[0][2] == pytest.approx(100 * 11 / 14)
    repairs = audit.single_value_repairs("98.11", "97.44", "98.63", 39, 73)
    assert [(m, c) for m, c, _ in repairs] == [("acc", (38, 72))]


def test_feasible_counts_ambiguous_at_low_precision():
    # Whole percents with 250 + 250 cases: 224, 225 and 226 of 250 all print as 90%,
    # and every sum from 448 to 452 of 500 prints as 90% too -> 3 x 3 solutions.
    sols = audit.feasible_counts("90", "90", "90", 250, 250)
    assert sols == list(itertools.product((224, 225, 226), repeat=2))
    assert audit.feasibility_verdict(sols) == "ambiguous"
    # The same values at two decimals pin the counts down.
    assert audit.feasible_counts("90.00", "90.00", "90.00", 250, 250) == [(225, 225)]


def test_printed_precision_is_respected():
    assert printed_decimals("50") == 0
    assert printed_decimals("50.00") == 2
    assert printed_decimals("0.9") == 1
    assert printed_decimals(85.71) == 2
    # "50" and "100" as printed in Table 2 (ResNet-50, test): 7/14 and 12/14.
    assert audit.feasible_counts("67.86", "50", "85.71", 14, 14) == [(7, 12)]
    # A value exactly at a rounding boundary is accepted either way.
    assert matches_printed(12.5, "12") and matches_printed(12.5, "13")
    assert not matches_printed(12.4, "13")
    # Explicit decimals override the string's precision.
    assert audit.feasible_counts("90", "90", "90", 250, 250, decimals=2) == [(225, 225)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("85.71", "85.71", "85.71", 0, 14), "n_pos"),
        (("85.71", "85.71", "85.71", 14, 2.5), "n_neg"),
        (("120", "85.71", "85.71", 14, 14), "acc"),
        (("85.71", "abc", "85.71", 14, 14), "sen"),
    ],
)
def test_feasible_counts_validates_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        audit.feasible_counts(*args)


def test_positive_class_is_poor():
    # Training set: 39 poor, 73 good. SEN 97.44% = 38/39 exists only with poor as positive.
    assert audit.feasible_counts("99.11", "97.44", "100", 39, 73) == [(38, 73)]
    assert audit.feasible_counts("99.11", "97.44", "100", 73, 39) == []
    df = audit.run_audit()
    row = df[df["item"] == "Positive class (class 1)"].iloc[0]
    assert row["verdict"] == "consistent"
    assert "poor" in row["expected"]


def test_auc_bounds_at_operating_point():
    lo, hi = audit.auc_bounds_at_operating_point(12 / 14, 12 / 14, youden_optimal=True)
    assert lo == pytest.approx((12 / 14) ** 2)
    j = 10 / 14
    assert hi == pytest.approx(1 - (1 - j) ** 2 / 2)
    lo2, hi2 = audit.auc_bounds_at_operating_point(12 / 14, 12 / 14)
    assert hi2 == pytest.approx(1 - (2 / 14) ** 2) and lo2 == lo
    with pytest.raises(ValueError):
        audit.auc_bounds_at_operating_point(1.2, 0.5)


# --------------------------------------------------------------------------- statistics


def test_hanley_mcneil_against_hand_worked_values():
    # A = 0.8, 50 + 50: Q1 = 2/3, Q2 = 1.28/1.8 = 0.711111;
    # var = (0.16 + 49 * 0.026667 + 49 * 0.071111) / 2500 = 4.951111 / 2500 -> SE = 0.044502.
    assert audit.hanley_mcneil_se(0.8, 50, 50) == pytest.approx(0.044502, abs=2e-6)
    # A = 0.87, 14 + 14: var = (0.1131 + 13 * 0.013012 + 13 * 0.052619) / 196 = 0.0049301 -> SE = 0.070215,
    # lower limit 0.87 - 1.959964 * 0.070215 = 0.73238, upper limit clipped to 1.
    lo, hi = audit.hanley_mcneil_ci(0.87, 14, 14)
    assert lo == pytest.approx(0.73238, abs=2e-5)
    assert hi == 1.0
    assert isinstance(lo, float)
    with pytest.raises(ValueError):
        audit.hanley_mcneil_ci(1.2, 14, 14)


def test_paired_auc_pvalues_monotone_in_correlation():
    p = audit.paired_auc_pvalues(0.87, 0.74, 14, 14, correlations=(0.0, 0.3, 0.6, 0.9))
    values = [p[r] for r in (0.0, 0.3, 0.6, 0.9)]
    assert values == sorted(values, reverse=True)
    # r = 0: an unpaired z-test.
    se_a, se_b = audit.hanley_mcneil_se(0.87, 14, 14), audit.hanley_mcneil_se(0.74, 14, 14)
    z = 0.13 / math.hypot(se_a, se_b)
    assert p[0.0] == pytest.approx(2 * stats.norm.sf(z))
    assert audit.paired_auc_pvalues(0.8, 0.8, 14, 14)[0.5] == pytest.approx(1.0)


def test_mcnemar_exact_matches_scipy_binomtest():
    for b, c in [(0, 0), (3, 0), (0, 3), (1, 4), (5, 5), (2, 9), (12, 3)]:
        expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
        assert audit.mcnemar_exact_p(b, c) == pytest.approx(expected)


def test_mcnemar_range_hand_enumerated():
    # PD (TP 12, TN 12) vs C40 (TP 13, TN 9) on 14 + 14: both right on 11-12 poor and 7-9 good
    # patients -> discordant (b, c) in {(3, 1), (4, 2), (5, 3), (6, 4)}.
    res = audit.mcnemar_pvalue_range((12, 12), (13, 9), 14, 14)
    patterns = [(3, 1), (4, 2), (5, 3), (6, 4)]
    pvals = [stats.binomtest(b, b + c, 0.5).pvalue for b, c in patterns]
    assert res["n_patterns"] == 4
    assert res["p_min"] == pytest.approx(min(pvals))
    assert res["p_max"] == pytest.approx(max(pvals))
    assert res["pattern_min"] == (3, 1)
    with pytest.raises(ValueError):
        audit.mcnemar_pvalue_range((15, 12), (13, 9), 14, 14)


def _brute_force_exact_p(table):
    """Exact conditional p-value by listing every way to deal the subjects into two rows."""
    table = np.asarray(table)
    labels = [j for j, n in enumerate(table.sum(axis=0)) for _ in range(n)]
    r1 = int(table[0].sum())
    counts = Counter()
    for subset in itertools.combinations(range(len(labels)), r1):
        counts[tuple(np.bincount([labels[i] for i in subset], minlength=table.shape[1]))] += 1
    total = sum(counts.values())
    probs = {t: n / total for t, n in counts.items()}
    p_obs = probs[tuple(table[0])]
    return sum(p for p in probs.values() if p <= p_obs * (1 + 1e-7))


@pytest.mark.parametrize("table", [[[2, 1, 0], [0, 1, 2]], [[3, 1, 1], [0, 2, 3]], [[1, 2, 2], [2, 1, 1]]])
def test_ffh_matches_brute_force(table):
    assert audit.fisher_freeman_halton(table) == pytest.approx(_brute_force_exact_p(table))


def test_ffh_reduces_to_fisher_for_two_columns():
    for t in ([[16, 57], [6, 33]], [[3, 11], [1, 13]], [[4, 69], [3, 36]]):
        expected = stats.fisher_exact(t).pvalue
        assert audit.fisher_freeman_halton(t) == pytest.approx(expected, rel=1e-9)
        with_empty = [[t[0][0], t[0][1], 0], [t[1][0], t[1][1], 0]]
        assert audit.fisher_freeman_halton(with_empty) == pytest.approx(expected, rel=1e-9)


def test_ffh_against_permutation_estimate():
    # Table 1, clinical T stage, training set (good / poor rows).
    table = np.array([[19, 41, 13], [10, 25, 4]])
    exact = audit.fisher_freeman_halton(table)
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), table.sum(axis=0))
    r1 = table[0].sum()
    cols = table.sum(axis=0)

    def logp(first):
        return sum(math.lgamma(c + 1) - math.lgamma(x + 1) - math.lgamma(c - x + 1) for c, x in zip(cols, first))

    obs = logp(table[0])
    hits = 0
    n_perm = 4000
    for _ in range(n_perm):
        first = np.bincount(rng.permutation(labels)[:r1], minlength=3)
        hits += logp(first) <= obs + 1e-9
    assert abs(hits / n_perm - exact) < 0.03
    with pytest.raises(ValueError):
        audit.fisher_freeman_halton([[1, 2, 3]])


def test_split_balance_probability_matches_math_comb():
    res = audit.split_balance_probability(28, 53, 87, 14)
    denom = math.comb(140, 28)
    p14 = math.comb(53, 14) * math.comb(87, 14) / denom
    p_ge = sum(math.comb(53, k) * math.comb(87, 28 - k) for k in range(14, 29)) / denom
    assert res["p_exact"] == pytest.approx(p14, rel=1e-9)
    assert res["p_at_least"] == pytest.approx(p_ge, rel=1e-9)
    assert res["expected"] == pytest.approx(28 * 53 / 140)
    assert res["p_exact"] <= res["p_at_least"] <= res["p_two_sided"] <= 1.0


def test_youden_optimism_is_positive_fast_and_seeded():
    t0 = time.perf_counter()
    a = audit.youden_optimism(0.87, 14, 14, n_reps=4000, seed=3)
    elapsed = time.perf_counter() - t0
    b = audit.youden_optimism(0.87, 14, 14, n_reps=4000, seed=3)
    assert a == b
    assert elapsed < 2.0
    assert a["optimism"] > 0.02
    d = math.sqrt(2) * stats.norm.ppf(0.87)
    assert a["acc_population"] == pytest.approx(stats.norm.cdf(d / 2))
    assert a["acc_prespecified"] == pytest.approx(a["acc_population"], abs=0.01)
    with pytest.raises(ValueError):
        audit.youden_optimism(0.4, 14, 14)


# --------------------------------------------------------------------------- package data


def test_package_data_loads_and_uses_project_vocabulary():
    paper = load_paper()
    assert len(paper.table1) == 64 and len(paper.table2) == 20
    assert len(paper.table3) == 5 and len(paper.table4) == 8
    assert set(paper.table1["response"]) == {"good", "poor"}
    assert paper.group_size("train", "poor") == 39 and paper.group_size("test", "good") == 14
    for entry in paper.text["results"]:
        for ref in entry["ref"]:
            assert lookup(paper, ref)  # every text reference resolves to one table row


# --------------------------------------------------------------------------- audit table and outputs


def _find(df: pd.DataFrame, item: str, check: str | None = None) -> pd.DataFrame:
    sub = df[df["item"] == item]
    return sub if check is None else sub[sub["check"] == check]


def test_run_audit_schema_and_known_findings():
    df = audit.run_audit()
    assert list(df.columns) == list(audit.COLUMNS)
    assert len(df) >= 150
    assert set(df["verdict"]) <= set(audit.VERDICTS)
    assert (df["item"].str.len() > 0).all() and (df["check"].str.len() > 0).all()
    inconsistent = set(df.loc[df["verdict"] == "inconsistent", "item"])
    for item in [
        "Table 1 | Sex | test | good",
        "Table 1 | Sex | test | poor",
        "Table 2 | Hybrid Model | train",
        "Table 3 | C20",
        "Table 1 | CA199",
        "Accrual period",
        "Protocol | distillation loss",
    ]:
        assert item in inconsistent, item
    pd_test = _find(df, "Table 2 | Progressive Distill (EfficientNet-B7) | test", "acc/sen/spe feasibility")
    assert pd_test["verdict"].tolist() == ["consistent"]
    assert "TP 12/14, TN 12/14" in pd_test["expected"].iloc[0]
    lauren = _find(df, "Table 1 | Lauren type | train", "good vs poor, exact test").iloc[0]
    assert float(re.search(r"p = ([0-9.e-]+)", lauren["explanation"]).group(1)) < 0.01
    # Problems come first.
    order = df["verdict"].map(
        {v: i for i, v in enumerate(["inconsistent", "unsupported", "ambiguous", "note", "supported", "consistent"])}
    )
    assert order.is_monotonic_increasing
    # Never "PR" for poor response in the audit's own words (RECIST 'PR' only in RECIST lists).
    text = " ".join(df["explanation"])
    assert not re.search(r"\bPR (group|responders?)\b", text)


def test_audit_markdown_lists_problems_first():
    df = audit.run_audit()
    md = audit.audit_markdown(df)
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[0].startswith("## Inconsistent")
    assert headings[-1].startswith("## Passed")
    n_bad = int((df["verdict"] == "inconsistent").sum())
    assert f"## Inconsistent ({n_bad})" in md
    with pytest.raises(ValueError):
        audit.audit_markdown(df.drop(columns=["verdict"]))


def test_write_audit_is_atomic_and_overwrites(tmp_path: Path):
    out = tmp_path / "run" / "tables"
    csv_path, md_path = audit.write_audit(out)
    assert csv_path == out / "paper_audit.csv" and md_path == out / "paper_audit.md"
    first = csv_path.read_text(encoding="utf-8")
    audit.write_audit(out)
    assert csv_path.read_text(encoding="utf-8") == first  # deterministic
    assert sorted(p.name for p in out.iterdir()) == ["paper_audit.csv", "paper_audit.md"]  # no temp files left
    written = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(written.columns) == list(audit.COLUMNS)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        audit.write_audit(tmp_path / "file")


def test_module_cli_runs_without_torch(tmp_path: Path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pdstudy.audit", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "paper_audit.csv").is_file() and (out / "paper_audit.md").is_file()
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert imported, "no -X importtime output"
    assert not [m for m in imported if m == "torch" or m.startswith("torch.")]
    # The library entry point, as the main CLI calls it.
    code = (
        f"import sys; from pdstudy.audit import write_audit; write_audit({str(out / 'lib')!r}); "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_power_rows_state_the_headline_comparisons_power_and_size():
    from pdstudy.stats import auc_power_paired, auc_sample_size_paired

    df = audit.run_audit()
    rows = df[df["item"].str.endswith("| power")]
    assert set(rows["item"]) == {"PD B7 vs baseline B7 | power", "PD B7 vs KD B7 | power"}
    text = rows.set_index("item").loc["PD B7 vs baseline B7 | power", "explanation"]
    # 14 + 14 test patients, AUC 0.87 vs 0.74 (paper Table 2): power and size recomputed here
    for r in (0.3, 0.5, 0.7):
        assert f"{auc_power_paired(0.87, 0.74, 14, 14, r):.2f} at r = {r:.1f}" in text
        assert f"{auc_sample_size_paired(0.87, 0.74, r).total} at r = {r:.1f}" in text
    assert auc_power_paired(0.87, 0.74, 14, 14, 0.5) < 0.5
