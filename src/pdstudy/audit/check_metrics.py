"""Checks of Tables 2-4: feasible confusion counts, the positive class, AUC vs operating point."""

from __future__ import annotations

from pdstudy.audit.feasibility import (
    auc_bounds_at_operating_point,
    feasibility_verdict,
    feasible_counts,
    matches_printed,
    printed_decimals,
    single_value_repairs,
)
from pdstudy.audit.rows import pct, row
from pdstudy.core.paper import PaperNumbers
from pdstudy.core.vocab import NEGATIVE_CLASS, POSITIVE_CLASS

CHECK_FEAS = "acc/sen/spe feasibility"
CHECK_AUC_POINT = "AUC vs Youden operating point"

#: Table 4 rows (kd, mn, mi) -> the Table 2 teacher chain they repeat, as a function of the model.
_T4_TO_CHAIN = {
    ("0", "0", "0"): lambda m: m,
    ("1", "0", "0"): lambda m: f"{m}>{m}",
    ("1", "1", "1"): lambda m: f"{m}>{m}>{m}",
}


def _triple(acc: str, sen: str, spe: str) -> str:
    return f"ACC {acc} / SEN {sen} / SPE {spe}"


def _counts_text(solutions: list[tuple[int, int]], n_pos: int, n_neg: int) -> str:
    if not solutions:
        return "no integer solution"
    return "; ".join(f"TP {tp}/{n_pos}, TN {tn}/{n_neg}" for tp, tn in solutions)


def feasibility_row(item: str, acc: str, sen: str, spe: str, n_pos: int, n_neg: int, extra: str = "") -> dict:
    """Feasibility row for one printed triple (poor responders as positives)."""
    sols = feasible_counts(acc, sen, spe, n_pos, n_neg)
    verdict = feasibility_verdict(sols)
    groups = f"{n_pos} {POSITIVE_CLASS} (positive) + {n_neg} {NEGATIVE_CLASS}"
    if verdict == "consistent":
        tp, tn = sols[0]
        why = f"Unique counts for {groups}: TP {tp}, TN {tn}, FN {n_pos - tp}, FP {n_neg - tn}."
    elif verdict == "ambiguous":
        why = f"{len(sols)} count pairs reproduce the printed values for {groups}."
    else:
        repairs = single_value_repairs(acc, sen, spe, n_pos, n_neg)
        fixes = "; ".join(
            f"{metric.upper()} would be {value:.2f} (TP {tp}, TN {tn})" for metric, (tp, tn), value in repairs
        )
        why = f"No integer counts for {groups} give all three values after rounding."
        if fixes:
            why += f" Changing one value makes it feasible: {fixes}."
    if extra:
        why += " " + extra
    return row(item, CHECK_FEAS, _triple(acc, sen, spe), _counts_text(sols, n_pos, n_neg), verdict, why)


def _sizes(paper: PaperNumbers, split: str) -> tuple[int, int]:
    return paper.group_size(split, POSITIVE_CLASS), paper.group_size(split, NEGATIVE_CLASS)


def table2_feasibility(paper: PaperNumbers) -> list[dict]:
    """One feasibility row per Table 2 method and split."""
    out = []
    for _, r in paper.table2.iterrows():
        for split in ("train", "test"):
            n_pos, n_neg = _sizes(paper, split)
            out.append(feasibility_row(f"Table 2 | {r['method']} | {split}", r[f"{split}_acc"], r[f"{split}_sen"],
                                       r[f"{split}_spe"], n_pos, n_neg))
    return out


def table3_feasibility(paper: PaperNumbers) -> list[dict]:
    """Feasibility of each reader's triple on the test set; the average pooled over readers."""
    n_pos, n_neg = _sizes(paper, "test")
    readers = paper.table3[paper.table3["reader"] != "Average"]
    n_readers = int(readers["reader"].str.match(r"^C\d+$").sum())
    out = []
    for _, r in paper.table3.iterrows():
        if r["reader"] == "Average":
            out.append(feasibility_row(
                "Table 3 | Average (pooled reads)", r["acc"], r["sen"], r["spe"], n_pos * n_readers, n_neg * n_readers,
                extra=f"The average of {n_readers} readers equals pooled counts over {n_readers} x 28 reads.",
            ))
        else:
            out.append(feasibility_row(f"Table 3 | {r['reader']}", r["acc"], r["sen"], r["spe"], n_pos, n_neg))
    return out


def table4_checks(paper: PaperNumbers) -> list[dict]:
    """Table 4: rows repeated from Table 2 must match it; new rows must be feasible."""
    n_pos, n_neg = _sizes(paper, "test")
    out = []
    for _, r in paper.table4.iterrows():
        key = (r["kd"], r["mn"], r["mi"])
        item = f"Table 4 | {r['model']} KD={r['kd']} MN={r['mn']} MI={r['mi']}"
        if key in _T4_TO_CHAIN:
            chain = _T4_TO_CHAIN[key](r["model"])
            t2 = paper.table2[paper.table2["teacher_chain"] == chain]
            if len(t2) != 1:
                raise ValueError(f"Table 2 has {len(t2)} rows with teacher chain {chain!r}")
            t2r = t2.iloc[0]
            diffs = [m for m in ("auc", "acc", "sen", "spe") if not _same_printed(r[m], t2r[f"test_{m}"])]
            reported = " / ".join(f"{m.upper()} {r[m]}" for m in ("auc", "acc", "sen", "spe"))
            expected = " / ".join(f"{m.upper()} {t2r['test_' + m]}" for m in ("auc", "acc", "sen", "spe"))
            out.append(row(item, "same as Table 2 row", reported, f"{t2r['method']}: {expected}",
                           "inconsistent" if diffs else "consistent",
                           f"Differs in {', '.join(diffs)}." if diffs else "Repeats the Table 2 test-set row exactly."))
        else:
            out.append(feasibility_row(item, r["acc"], r["sen"], r["spe"], n_pos, n_neg,
                                       extra="No Table 2 counterpart (model noise without further iterations)."))
    return out


def _same_printed(a: str, b: str) -> bool:
    """Two printed numbers agree at the coarser of their precisions ("75" == "75.00")."""
    d = min(printed_decimals(a), printed_decimals(b))
    return matches_printed(float(a), b, d)


def positive_class_inference(paper: PaperNumbers) -> dict:
    """Which class the paper's sensitivity refers to, from the training-set triples."""
    n_poor, n_good = paper.group_size("train", "poor"), paper.group_size("train", "good")
    ok_poor = ok_good = 0
    total = 0
    for _, r in paper.table2.iterrows():
        total += 1
        ok_poor += bool(feasible_counts(r["train_acc"], r["train_sen"], r["train_spe"], n_poor, n_good))
        ok_good += bool(feasible_counts(r["train_acc"], r["train_sen"], r["train_spe"], n_good, n_poor))
    inferred = POSITIVE_CLASS if ok_poor > ok_good else NEGATIVE_CLASS
    verdict = "consistent" if inferred == POSITIVE_CLASS and ok_good == 0 else "ambiguous"
    return row(
        "Positive class (class 1)", "inferred from training-set triples",
        "class 1 not named; sensitivity/specificity printed",
        f"{POSITIVE_CLASS} responders as positives",
        verdict,
        f"With {n_poor} poor responders as positives {ok_poor} of {total} Table 2 training triples have integer "
        f"counts; with {n_good} good responders as positives {ok_good} do (e.g. SEN 97.44% = 38/39 has no "
        f"equivalent k/{n_good}). The 14/14 test set cannot tell the classes apart, so this rests on the training set.",
    )


def auc_point_rows(paper: PaperNumbers) -> list[dict]:
    """Test-set AUCs against the range a Youden-optimal operating point allows."""
    n_pos, n_neg = _sizes(paper, "test")
    items = [(f"Table 2 | {r['method']} | test", r["test_auc"], r["test_acc"], r["test_sen"], r["test_spe"])
             for _, r in paper.table2.iterrows()]
    items += [(f"Table 4 | {r['model']} KD={r['kd']} MN={r['mn']} MI={r['mi']}", r["auc"], r["acc"], r["sen"], r["spe"])
              for _, r in paper.table4.iterrows() if (r["kd"], r["mn"], r["mi"]) not in _T4_TO_CHAIN]
    out = []
    for item, auc, acc, sen, spe in items:
        sols = feasible_counts(acc, sen, spe, n_pos, n_neg)
        if len(sols) == 1:
            s, p = sols[0][0] / n_pos, sols[0][1] / n_neg
        else:
            s, p = float(sen) / 100.0, float(spe) / 100.0
        lo, hi = auc_bounds_at_operating_point(s, p, youden_optimal=True)
        tol = 0.5 * 10.0 ** -printed_decimals(auc)
        a = float(auc)
        ok = lo - tol <= a <= hi + tol
        out.append(row(
            item, CHECK_AUC_POINT, f"AUC {auc} at SEN {pct(100 * s)} / SPE {pct(100 * p)}",
            f"AUC in [{lo:.3f}, {hi:.3f}]", "consistent" if ok else "inconsistent",
            "An ROC curve through this point, with the point maximising Youden's J (threshold chosen on the "
            "test set), has an AUC in this range." + ("" if ok else " The printed AUC lies outside it."),
        ))
    return out


def identical_training_rows(paper: PaperNumbers) -> dict:
    """Several different models share one training-set row in Table 2."""
    cols = ["train_auc", "train_acc", "train_sen", "train_spe"]
    groups = paper.table2.groupby(cols)["method"].apply(list)
    biggest = max(groups.items(), key=lambda kv: len(kv[1]))
    values, methods = biggest
    return row(
        "Table 2 | training columns", "identical rows",
        f"{len(methods)} methods print AUC {values[0]} / ACC {values[1]} / SEN {values[2]} / SPE {values[3]}",
        "different models usually differ", "note",
        f"{', '.join(methods)} all report one misclassified training patient (a poor responder). Plausible for "
        "over-fitted models, but the training rows carry no information to rank them.",
    )


def all_metric_rows(paper: PaperNumbers) -> list[dict]:
    """Every Tables 2-4 row of the audit."""
    return [
        positive_class_inference(paper),
        *table2_feasibility(paper),
        *table3_feasibility(paper),
        *table4_checks(paper),
        *auc_point_rows(paper),
        identical_training_rows(paper),
    ]
