"""Claims against the numbers behind them, and the evaluation protocol."""

from __future__ import annotations

import numpy as np

from pdstudy.audit.exact import (
    hanley_mcneil_ci,
    mcnemar_pvalue_range,
    paired_auc_pvalues,
    split_balance_probability,
    youden_optimism,
)
from pdstudy.audit.feasibility import feasible_counts, single_value_repairs
from pdstudy.audit.rows import prange, pval, row
from pdstudy.core.paper import PaperNumbers, lookup
from pdstudy.core.vocab import NEGATIVE_CLASS, POSITIVE_CLASS
from pdstudy.stats import power_table

ALPHA = 0.05
#: Plausible correlations between the AUC estimates of two models scored on the same patients.
CORRELATIONS = tuple(np.round(np.arange(0.30, 0.901, 0.05), 2))
YOUDEN_REPS = 4000
SEED = 20250516

PD_B7 = "Progressive Distill (EfficientNet-B7)"
HEADLINE = (("EfficientNet-B7", "baseline B7"), ("Knowledge Distillation (EfficientNet-B7)", "KD B7"))


def _sizes(paper: PaperNumbers, split: str) -> tuple[int, int]:
    return paper.group_size(split, POSITIVE_CLASS), paper.group_size(split, NEGATIVE_CLASS)


def _counts(acc: str, sen: str, spe: str, n_pos: int, n_neg: int) -> tuple[list[tuple[int, int]], str]:
    """Candidate (tp, tn) for a printed triple; repaired (one value changed) when infeasible."""
    sols = feasible_counts(acc, sen, spe, n_pos, n_neg)
    if sols:
        return sols, ""
    repairs = single_value_repairs(acc, sen, spe, n_pos, n_neg)
    note = "; ".join(f"{m.upper()} read as {v:.2f}" for m, _, v in repairs)
    return sorted({c for _, c, _ in repairs}), f"printed triple impossible, used counts with {note}"


def auc_ci_rows(paper: PaperNumbers) -> list[dict]:
    """Hanley-McNeil 95% CI for every reported AUC (Table 2 both splits, Table 4 rows not in Table 2)."""
    items = []
    for split in ("test", "train"):
        # Highest AUC first, so the headline model leads its group.
        for _, r in paper.table2.sort_values(f"{split}_auc", key=lambda s: -s.astype(float), kind="stable").iterrows():
            items.append((f"Table 2 | {r['method']} | {split}", r[f"{split}_auc"], split))
    for _, r in paper.table4.iterrows():
        if r["mn"] == "1" and r["mi"] == "0":
            items.append((f"Table 4 | {r['model']} KD={r['kd']} MN={r['mn']} MI={r['mi']}", r["auc"], "test"))
    out = []
    for item, auc, split in items:
        n_pos, n_neg = _sizes(paper, split)
        lo, hi = hanley_mcneil_ci(float(auc), n_pos, n_neg)
        why = f"Wald interval with the Hanley-McNeil SE for {n_pos} poor + {n_neg} good."
        if lo <= 0.5:
            why += " The interval includes 0.5 (no discrimination)."
        out.append(row(item, "AUC 95% CI (Hanley-McNeil)", f"AUC {auc}", f"95% CI {lo:.2f}-{hi:.2f}", "note", why))
    return out


def _r_threshold(pvals: dict[float, float]) -> float | None:
    below = [r for r, p in sorted(pvals.items()) if p < ALPHA]
    return below[0] if below else None


def headline_rows(paper: PaperNumbers) -> list[dict]:
    """PD B7 against baseline B7 and KD B7: AUC over assumed correlations, accuracy by exact McNemar."""
    n_pos, n_neg = _sizes(paper, "test")
    pd_vals = lookup(paper, f"table2/{PD_B7}/test")
    out = []
    for other, label in HEADLINE:
        o = lookup(paper, f"table2/{other}/test")
        pvals = paired_auc_pvalues(float(pd_vals["auc"]), float(o["auc"]), n_pos, n_neg, CORRELATIONS)
        p_lo, p_hi = min(pvals.values()), max(pvals.values())
        r_star = _r_threshold(pvals)
        verdict = "supported" if p_hi < ALPHA else "unsupported"
        why = (f"Paired z-test with Hanley-McNeil variances, var(A-B) = varA + varB - 2r sqrt(varA varB), "
               f"r = {CORRELATIONS[0]:.2f}-{CORRELATIONS[-1]:.2f} (not reported): p = {prange(p_lo, p_hi)}. ")
        why += (f"Significant only if the two models' AUCs correlate at r >= {r_star:.2f}."
                if r_star is not None else "Not significant for any assumed correlation.")
        if verdict == "unsupported":
            why += " The reported numbers cannot establish the improvement; a DeLong test on the scores is needed."
        out.append(row(f"PD B7 vs {label} | AUC", "paired AUC difference, p-value range",
                       f"AUC {pd_vals['auc']} vs {o['auc']}", f"p < {ALPHA} for every plausible r", verdict, why))

        ca, _ = _counts(pd_vals["acc"], pd_vals["sen"], pd_vals["spe"], n_pos, n_neg)
        cb, _ = _counts(o["acc"], o["sen"], o["spe"], n_pos, n_neg)
        res = [mcnemar_pvalue_range(a, b, n_pos, n_neg) for a in ca for b in cb]
        p_min = min(r["p_min"] for r in res)
        p_max = max(r["p_max"] for r in res)
        best = min(res, key=lambda r: r["p_min"])["pattern_min"]
        out.append(row(
            f"PD B7 vs {label} | accuracy", "exact McNemar over all discordance patterns",
            f"ACC {pd_vals['acc']} vs {o['acc']}", f"p < {ALPHA} for every compatible pattern",
            "supported" if p_max < ALPHA else "unsupported",
            f"Over every split of the {n_pos}+{n_neg} test patients compatible with both confusion matrices, "
            f"p = {prange(p_min, p_max)}; even the most favourable pattern (discordant {best[0]} vs {best[1]}) "
            f"gives p = {pval(p_min)}.",
        ))
    return out


#: Correlations of the two AUC estimates shown in the power rows (a plausible range; the paper reports none).
POWER_CORRELATIONS = (0.3, 0.5, 0.7)
TARGET_POWER = 0.8


def power_rows(paper: PaperNumbers) -> list[dict]:
    """Power of the paper's headline comparisons on its test set, and the test-set size 80% power would need.

    Two correlated AUCs on the same patients (Hanley & McNeil 1983), variances of Hanley & McNeil 1982,
    two-sided z-test at alpha 0.05, over :data:`POWER_CORRELATIONS` (:func:`pdstudy.stats.power_table`).
    """
    n_pos, n_neg = _sizes(paper, "test")
    pd_vals = lookup(paper, f"table2/{PD_B7}/test")
    out = []
    for other, label in HEADLINE:
        o = lookup(paper, f"table2/{other}/test")
        table = power_table(float(pd_vals["auc"]), float(o["auc"]), n_pos, n_neg, corrs=POWER_CORRELATIONS,
                            power=TARGET_POWER, alpha=ALPHA)
        powers = ", ".join(f"{p:.2f} at r = {r:.1f}" for r, p in zip(table["corr"], table["power"]))
        needed = ", ".join(f"{int(n)} at r = {r:.1f}" for r, n in zip(table["corr"], table["n_total_needed"]))
        out.append(row(
            f"PD B7 vs {label} | power", "power of the paired AUC comparison on the test set",
            f"AUC {pd_vals['auc']} vs {o['auc']} on {n_pos}+{n_neg} test patients",
            f"power >= {TARGET_POWER:.0%}", "note",
            f"If the true AUCs were the reported ones, a two-sided test at alpha {ALPHA} on {n_pos} poor + {n_neg} "
            f"good patients would detect the difference with power {powers} (correlation of the two AUC "
            f"estimates, not reported). {TARGET_POWER:.0%} power needs {needed} test patients in all, at the "
            "same case mix (Hanley & McNeil 1982/1983; docs/power.md).",
        ))
    return out


def clinician_rows(paper: PaperNumbers) -> list[dict]:
    """PD B7 against each clinician: exact McNemar p-value range over compatible discordance patterns."""
    n_pos, n_neg = _sizes(paper, "test")
    t3 = paper.table3.set_index("reader")
    pd_row = t3.loc["PD (EfficientNet-B7)"]
    pd_counts, _ = _counts(pd_row["acc"], pd_row["sen"], pd_row["spe"], n_pos, n_neg)
    claim = paper.text["claims"]["pd_vs_clinicians"][-1]
    out = []
    for reader in [r for r in t3.index if r.startswith("C")]:
        c = t3.loc[reader]
        c_counts, note = _counts(c["acc"], c["sen"], c["spe"], n_pos, n_neg)
        res = [mcnemar_pvalue_range(a, b, n_pos, n_neg) for a in pd_counts for b in c_counts]
        p_min = min(r["p_min"] for r in res)
        p_max = max(r["p_max"] for r in res)
        pd_better = float(pd_row["acc"]) > float(c["acc"])
        why = (f"PD {pd_counts[0][0] + pd_counts[0][1]}/28 correct vs {reader} "
               f"{c_counts[0][0] + c_counts[0][1]}/28; exact McNemar p = {prange(p_min, p_max)} over "
               f"{sum(r['n_patterns'] for r in res)} discordance patterns.")
        if note:
            why += f" {reader}: {note}."
        if pd_better:
            verdict = "supported" if p_max < ALPHA else "unsupported"
            why += (f" The text ({claim['location']}) calls PD comparable or significantly better; no compatible "
                    "pattern makes the difference significant." if p_min >= ALPHA else "")
        else:
            verdict = "note"
            why += f" {reader} is at least as accurate as PD."
        out.append(row(f"PD B7 vs {reader}", "exact McNemar over all discordance patterns",
                       f"ACC {pd_row['acc']} vs {c['acc']}", f"p < {ALPHA} for every compatible pattern", verdict,
                       why))
    avg = t3.loc["Average"]
    out.append(row("PD B7 vs clinicians' average", "paired test possible?", f"ACC {pd_row['acc']} vs {avg['acc']}",
                   "a per-patient comparison", "note",
                   "An average of three readers is not one set of paired decisions; a significance claim against it "
                   "needs the readers' per-patient calls (e.g. a multi-reader analysis)."))
    return out


def split_rows(paper: PaperNumbers) -> list[dict]:
    """Probability of the 14/14 test split under a simple random 20% split."""
    c = paper.facts["cohort"]
    poor = c["train"]["poor"] + c["test"]["poor"]
    good = c["train"]["good"] + c["test"]["good"]
    res = split_balance_probability(c["test"]["n"], poor, good, c["test"]["poor"])
    return [row(
        "Protocol | test split", "class balance under a random split",
        f"{c['test']['poor']} poor of {c['test']['n']} in the test set",
        f"{res['expected']:.1f} on average (hypergeometric, {good} good / {poor} poor)", "note",
        f"P(exactly {c['test']['poor']}) = {pval(res['p_exact'])}, P(>= {c['test']['poor']}) = "
        f"{pval(res['p_at_least'])}, two-sided {pval(res['p_two_sided'])}. Possible by chance, but a balanced "
        "test set looks chosen rather than drawn; the paper does not say how the split was made.",
    )]


def youden_rows(paper: PaperNumbers) -> list[dict]:
    """Accuracy optimism of a test-set Youden threshold, simulated at each reported test AUC."""
    n_pos, n_neg = _sizes(paper, "test")
    by_auc: dict[float, list[str]] = {}
    for _, r in paper.table2.iterrows():
        by_auc.setdefault(round(float(r["test_auc"]), 2), []).append(f"{r['method']} {r['test_acc']}")
    for _, r in paper.table4.iterrows():
        if r["mn"] == "1" and r["mi"] == "0":
            by_auc.setdefault(round(float(r["auc"]), 2), []).append(f"{r['model']}+KD+MN {r['acc']}")
    out, optimism = [], {}
    for auc in sorted(by_auc, reverse=True):
        sim = youden_optimism(auc, n_pos, n_neg, n_reps=YOUDEN_REPS, seed=SEED)
        optimism[auc] = sim
        out.append(row(
            f"Protocol | Youden on test | AUC {auc:.2f}", "accuracy inflation from a test-set threshold",
            "reported ACC: " + "; ".join(by_auc[auc]),
            f"{100 * sim['acc_prespecified']:.1f}% with a fixed threshold, {100 * sim['acc_test_optimal']:.1f}% "
            "with a test-chosen one", "note",
            f"Binormal simulation ({YOUDEN_REPS} test sets of {n_pos}+{n_neg}, seed {SEED}): choosing the Youden "
            f"cut on the test set adds {100 * sim['optimism']:.1f} accuracy points on average (95th percentile "
            f"{100 * sim['q95_test_optimal']:.1f}%).",
        ))
    pd_vals = lookup(paper, f"table2/{PD_B7}/test")
    pd_auc = round(float(pd_vals["auc"]), 2)
    mean_opt = 100 * float(np.mean([s["optimism"] for s in optimism.values()]))
    out.insert(0, row(
        "Protocol | threshold", "where the threshold was chosen", paper.facts["evaluation"]["threshold"],
        "threshold fixed before the test set is seen", "unsupported",
        f"Every test-set accuracy, sensitivity and specificity in Tables 2-4 is measured at a cut-off tuned on "
        f"the same {n_pos + n_neg} patients. At the reported AUCs this inflates accuracy by about {mean_opt:.1f} "
        f"points on average; for PD B7 (AUC {pd_auc:.2f}) a pre-specified threshold would give about "
        f"{100 * optimism[pd_auc]['acc_prespecified']:.1f}% rather than the reported {pd_vals['acc']}%.",
    ))
    return out


def protocol_rows(paper: PaperNumbers) -> list[dict]:
    """Other protocol findings: loss weighting, model selection on the test set, unreported settings."""
    w = paper.facts["training"]["alpha_weighting"]
    out = [row(
        "Protocol | distillation loss", "Eq. 1 vs Algorithm 1",
        f"Eq. 1: hard x {w['eq_1']['hard']}, soft x {w['eq_1']['soft']}",
        f"Algorithm 1: hard x {w['algorithm_1']['hard']}, soft x {w['algorithm_1']['soft']}", "inconsistent",
        "The equation puts alpha on the label term and (1 - alpha) T^2 on the distillation term; the algorithm "
        "puts alpha on the distillation term, (1 - alpha) on the label term and drops T^2. With alpha unreported "
        "the two readings weight teacher and labels differently; a re-implementation must pick one.",
    )]
    tr = paper.facts["training"]
    out.append(row(
        "Protocol | learning-rate schedule", "Eq. 2 vs Algorithm 1",
        f"Eq. 2: {tr['lr_schedule_step']['eq_2']}", f"Algorithm 1: {tr['lr_schedule_step']['algorithm_1']}",
        "inconsistent",
        "The equation anneals the learning rate per batch over all training batches; the algorithm calls the "
        "schedule once per epoch. The text also credits warm restarts, which cannot occur when the period is the "
        "whole run. A re-implementation must choose (per-batch cosine over the run is the literal Eq. 2).",
    ))
    it = paper.text["claims"]["iterations"]
    out.append(row(
        "Protocol | number of iterations", "model selection data",
        f"best after {it['best']} iterations, chosen from test-set curves ({it['location']})",
        "selection on training or validation data", "note",
        "The iteration count (and the best of 20 methods) was picked by test-set performance, another source of "
        "optimism on top of the test-set threshold; no validation split is described.",
    ))
    out.append(row(
        "Protocol | hyper-parameters", "reported for re-implementation",
        ", ".join(paper.facts["unreported"]), "reported", "note",
        "These settings are not given in the paper; a reproduction has to choose them and report its choices.",
    ))
    return out


def all_claim_rows(paper: PaperNumbers) -> list[dict]:
    """Every claims and protocol row of the audit."""
    return [*headline_rows(paper), *power_rows(paper), *clinician_rows(paper), *split_rows(paper), *youden_rows(paper),
            *protocol_rows(paper), *auc_ci_rows(paper)]
