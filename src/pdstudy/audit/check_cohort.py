"""Checks of Table 1 and the cohort flow: sums, percentages, definitions, group comparisons."""

from __future__ import annotations

import math
import re

import pandas as pd
from scipy import stats

from pdstudy.audit.exact import fisher_freeman_halton
from pdstudy.audit.feasibility import matches_printed, matches_truncated, printed_decimals
from pdstudy.audit.rows import pct, pval, row
from pdstudy.core.paper import PaperNumbers
from pdstudy.core.vocab import NEGATIVE_CLASS, POSITIVE_CLASS, RESPONSES

SPLITS_T1 = ("train", "test")
#: Variables the paper says did not differ between response groups -> Table 1 characteristic.
CLAIMED = {"sex": "Sex", "cN": "Clinical N stage", "cT": "Clinical T stage", "cM": "Clinical M stage"}
ALPHA = 0.05


def _groups(paper: PaperNumbers):
    t = paper.table1
    for characteristic in t["characteristic"].unique():
        for split in SPLITS_T1:
            for response in RESPONSES:
                cells = t[(t["characteristic"] == characteristic) & (t["split"] == split) & (t["response"] == response)]
                yield characteristic, split, response, cells


def _implied_count(percent: str, n_group: int) -> int | None:
    k = round(float(percent) * n_group / 100.0)
    return k if matches_printed(100.0 * k / n_group, percent) else None


def sum_rows(paper: PaperNumbers) -> list[dict]:
    """Counts of each characteristic add up to the group size."""
    out = []
    for characteristic, split, response, cells in _groups(paper):
        n_group = paper.group_size(split, response)
        total = int(cells["n"].astype(int).sum())
        ok = total == n_group
        listing = " + ".join(f"{lv} {n}" for lv, n in zip(cells["level"], cells["n"], strict=True))
        why = "Counts add up to the group size." if ok else (
            f"Counts add up to {total}, not {n_group}. " + _suggest(cells, n_group))
        out.append(row(f"Table 1 | {characteristic} | {split} | {response}", "counts sum to group size",
                       f"{listing} = {total}", str(n_group), "consistent" if ok else "inconsistent", why))
    return out


def _suggest(cells: pd.DataFrame, n_group: int) -> str:
    hints = []
    for _, c in cells.iterrows():
        k = _implied_count(c["percent"], n_group)
        if k is not None and k != int(c["n"]):
            hints.append(f"{c['level']} {c['percent']}% is {k}/{n_group}, so the printed {c['n']} looks like a "
                         f"typo for {k}")
    return ("; ".join(hints) + ".") if hints else "No single count explains the gap."


def percent_rows(paper: PaperNumbers) -> list[dict]:
    """Printed percentages agree with count / group size at their printed precision."""
    out = []
    for characteristic, split, response, cells in _groups(paper):
        n_group = paper.group_size(split, response)
        problems, kinds = [], set()
        for _, c in cells.iterrows():
            n, p = int(c["n"]), c["percent"]
            true = 100.0 * n / n_group
            if matches_printed(true, p):
                continue
            if matches_truncated(true, p):
                kinds.add("truncated")
                problems.append(f"{c['level']}: {n}/{n_group} = {true:.{printed_decimals(p) + 2}f}% printed as "
                                f"{p}% (cut, not rounded)")
                continue
            kinds.add("wrong")
            k = _implied_count(p, n_group)
            problems.append(f"{c['level']}: {n}/{n_group} = {true:.1f}% but printed {p}%"
                            + (f", which is {k}/{n_group}" if k is not None else ""))
        listing = ", ".join(f"{n} ({p}%)" for n, p in zip(cells["n"], cells["percent"], strict=True))
        verdict = "consistent" if not problems else "inconsistent"
        why = "Every percentage matches its count." if not problems else "; ".join(problems) + "."
        if kinds == {"truncated"}:
            why += " Typo-level: a rounding slip, the count is right."
        out.append(row(f"Table 1 | {characteristic} | {split} | {response}", "percent matches count",
                       listing, f"count / {n_group}", verdict, why))
    return out


def repaired_counts(
    paper: PaperNumbers, characteristic: str, split: str
) -> tuple[list[str], dict[str, list[int]], str]:
    """Counts for a group comparison, with impossible counts replaced by those their percentages imply.

    Returns
    -------
    (levels, {response: counts}, note)
        ``note`` says which counts were replaced (empty when none).
    """
    t = paper.table1
    sub = t[(t["characteristic"] == characteristic) & (t["split"] == split)]
    levels = list(dict.fromkeys(sub["level"]))
    counts, notes = {}, []
    for response in RESPONSES:
        cells = sub[sub["response"] == response].set_index("level").loc[levels]
        n_group = paper.group_size(split, response)
        ns = [int(x) for x in cells["n"]]
        if sum(ns) != n_group:
            fixed = [(_implied_count(p, n_group) or n) for n, p in zip(ns, cells["percent"], strict=True)]
            if sum(fixed) == n_group:
                notes.append(f"{response}: {ns} replaced by {fixed} (implied by the printed percentages)")
                ns = fixed
        counts[response] = ns
    return levels, counts, "; ".join(notes)


def comparison_rows(paper: PaperNumbers) -> list[dict]:
    """Recompute good-vs-poor comparisons of every categorical characteristic (Fisher / FFH exact)."""
    claimed = set(CLAIMED.values())
    where = paper.text["claims"]["no_baseline_differences"]["location"]
    out = []
    for characteristic in paper.table1["characteristic"].unique():
        for split in SPLITS_T1:
            levels, counts, note = repaired_counts(paper, characteristic, split)
            table = [counts[NEGATIVE_CLASS], counts[POSITIVE_CLASS]]
            if len(levels) == 2:
                p = float(stats.fisher_exact(table).pvalue)
                test = "Fisher exact"
            else:
                p = fisher_freeman_halton(table)
                test = "Fisher-Freeman-Halton exact"
            differs = p < ALPHA
            if characteristic in claimed:
                verdict = "unsupported" if differs else "supported"
                why = (f"Paper ({where}) reports no difference between response groups; {test} p = {pval(p)}"
                       + (" contradicts it." if differs else " agrees (absence of evidence at this size, not "
                          "evidence of balance)."))
            else:
                verdict = "note"
                why = (f"Not among the variables the paper calls balanced; {test} p = {pval(p)}"
                       + (" - the groups differ. A possible confounder: image features of histological type could "
                          "drive part of the prediction." if differs else "."))
            if note:
                why += f" Counts used: {note}."
            reported = "; ".join(f"{r}: " + ", ".join(f"{lv} {n}" for lv, n in zip(levels, counts[r], strict=True))
                                 for r in RESPONSES)
            out.append(row(f"Table 1 | {characteristic} | {split}", "good vs poor, exact test", reported,
                           f"p >= {ALPHA} if no difference", verdict, why))
    return out


def age_rows(paper: PaperNumbers) -> list[dict]:
    """What can be checked about age from means and ranges only."""
    c = paper.facts["cohort"]
    ages = c["age_by_group"]
    out = []
    for split in SPLITS_T1:
        g, p = ages[f"{split}_good"], ages[f"{split}_poor"]
        n_g, n_p = paper.group_size(split, "good"), paper.group_size(split, "poor")
        mean = (n_g * g[0] + n_p * p[0]) / (n_g + n_p)
        lo, hi = min(g[1], p[1]), max(g[2], p[2])
        ok_mean = matches_printed(mean, str(c[split]["mean_age"]))
        ok_range = [lo, hi] == list(c[split]["age_range"])
        out.append(row(
            f"Table 1 | Age | {split}", "overall mean and range from group values",
            f"mean {c[split]['mean_age']}, range {c[split]['age_range'][0]}-{c[split]['age_range'][1]}",
            f"mean {mean:.2f}, range {lo}-{hi}", "consistent" if ok_mean and ok_range else "inconsistent",
            "Size-weighted group means and the union of group ranges reproduce the text's values."
            if ok_mean and ok_range else "Group means/ranges do not reproduce the overall values."))
        # Illustrative Welch t-test with SD guessed as range / 4 (only means and ranges are printed).
        sd_g, sd_p = (g[2] - g[1]) / 4.0, (p[2] - p[1]) / 4.0
        se = math.sqrt(sd_g**2 / n_g + sd_p**2 / n_p)
        t = (g[0] - p[0]) / se
        dof = se**4 / ((sd_g**2 / n_g) ** 2 / (n_g - 1) + (sd_p**2 / n_p) ** 2 / (n_p - 1))
        pv = float(2 * stats.t.sf(abs(t), dof))
        out.append(row(
            f"Table 1 | Age | {split}", "good vs poor (cannot be tested exactly)",
            f"good {g[0]} ({g[1]}-{g[2]}), poor {p[0]} ({p[1]}-{p[2]})", "SDs or patient ages needed", "note",
            f"Only means and ranges are printed, so no exact test is possible. Guessing SD = range/4 "
            f"({sd_g:.1f}, {sd_p:.1f}) a Welch t-test gives p ~ {pval(pv)} (illustration only).",
        ))
    return out


_CUT_RE = re.compile(r"(<=|>)\s*([0-9.]+)")


def definition_rows(paper: PaperNumbers) -> list[dict]:
    """Category definitions agree with each other and with the inclusion criteria."""
    t = paper.table1
    out = []
    for marker in ("CEA", "CA199"):
        levels = list(dict.fromkeys(t.loc[t["characteristic"] == marker, "level"]))
        cuts = {op: float(v) for op, v in (_CUT_RE.search(lv).groups() for lv in levels)}
        ok = cuts.get("<=") == cuts.get(">")
        why = "Normal and elevated categories meet at one cut-off." if ok else (
            f"'Normal' ends at {cuts.get('<=')} but 'elevated' starts above {cuts.get('>')}: values in between "
            "belong to neither category, yet every patient is counted. The usual upper limit of normal for CA19-9 "
            "is 35 U/ml, so the lower bound looks copied from the CEA row.")
        out.append(row(f"Table 1 | {marker}", "category cut-offs agree", " / ".join(levels),
                       "one cut-off for both categories", "consistent" if ok else "inconsistent", why))
    lauren = list(dict.fromkeys(t.loc[t["characteristic"] == "Lauren type", "level"]))
    out.append(row("Table 1 | Lauren type", "categories are Lauren types", " / ".join(lauren),
                   "intestinal / diffuse / mixed (/ indeterminate)", "note",
                   "Lauren's classification has no 'undifferentiated' type (that is a grading term); diffuse and "
                   "mixed are pooled. The categories are usable but not the standard Lauren ones."))
    stage = paper.facts["cohort"]["inclusion_stage"]
    t_levels = list(dict.fromkeys(t.loc[t["characteristic"] == "Clinical T stage", "level"]))
    out.append(row("Table 1 | Clinical T stage", "levels match inclusion criteria", " / ".join(t_levels),
                   stage, "consistent", "T3, T4a and T4b are exactly the cT3-4 range of the inclusion criteria."))
    m1 = t[(t["characteristic"] == "Clinical M stage") & (t["level"] == "M1")]["n"].astype(int).sum()
    out.append(row("Table 1 | Clinical M stage", "M1 vs exclusion of distant metastasis",
                   f"{m1} M1 patients included", "M1 limited to the abdominal cavity", "note",
                   "Patients with metastasis outside the abdominal cavity were excluded, so the M1 patients must have "
                   "intra-abdominal (e.g. peritoneal) metastasis only; Table 1 does not say which."))
    return out


def flow_rows(paper: PaperNumbers) -> list[dict]:
    """Cohort flow: screened, excluded, included, split sizes, response rates."""
    c = paper.facts["cohort"]
    excl = c["excluded"]
    n_excl = sum(excl.values())
    out = [row("Cohort flow", "screened - excluded = included",
               f"{c['screened']} - {' - '.join(str(v) for v in excl.values())}", str(c["included"]),
               "consistent" if c["screened"] - n_excl == c["included"] else "inconsistent",
               f"{c['screened']} - {n_excl} = {c['screened'] - n_excl}.")]
    flow_text = paper.text["cohort_text"][0]
    out.append(row("Cohort flow", "wording of the screened count",
                   f"n = {flow_text['screened']} given for the excluded",
                   f"{flow_text['screened']} screened, {n_excl} excluded", "note",
                   f"In the text ({flow_text['location']}) the number attached to the excluded patients is the "
                   "number screened; the arithmetic only works with that reading."))
    tr, te = c["train"], c["test"]
    out.append(row("Cohort flow", "train + test = included", f"{tr['n']} + {te['n']}", str(c["included"]),
                   "consistent" if tr["n"] + te["n"] == c["included"] else "inconsistent", ""))
    frac = te["n"] / c["included"]
    out.append(row("Cohort flow", "test fraction", f"{100 * c['test_fraction']:.0f}% test",
                   f"{te['n']}/{c['included']} = {100 * frac:.1f}%",
                   "consistent" if abs(frac - c["test_fraction"]) < 0.005 else "inconsistent", ""))
    for split in SPLITS_T1:
        s = c[split]
        out.append(row(f"Cohort flow | {split}", "good + poor = split size", f"{s['good']} + {s['poor']}", str(s["n"]),
                       "consistent" if s["good"] + s["poor"] == s["n"] else "inconsistent", ""))
    for rate in paper.text["response_rates"]:
        s = c[rate["split"]]
        true = 100.0 * s[rate["response"]] / s["n"]
        ok = matches_printed(true, rate["percent"])
        trunc = (not ok) and matches_truncated(true, rate["percent"])
        out.append(row(
            f"Cohort flow | {rate['split']}", f"{rate['response']}-response rate in the text",
            f"{rate['percent']}% ({rate['location']})", f"{s[rate['response']]}/{s['n']} = {pct(true, 3)}%",
            "consistent" if ok else "inconsistent",
            "" if ok else ("Cut instead of rounded (typo-level)." if trunc else "Does not match the group sizes.")))
    good = c["train"]["good"] + c["test"]["good"]
    poor = c["train"]["poor"] + c["test"]["poor"]
    out.append(row("Cohort flow", "class balance by split",
                   f"poor: train {c['train']['poor']}/{c['train']['n']}, test {c['test']['poor']}/{c['test']['n']}",
                   f"{poor}/{c['included']} = {100 * poor / c['included']:.1f}% poor overall", "note",
                   f"The test set is balanced 14/14 while the cohort is {good} good / {poor} poor; a random "
                   "or stratified 20% split would hold about 10-11 poor responders (see the protocol checks)."))
    return out


def all_cohort_rows(paper: PaperNumbers) -> list[dict]:
    """Every Table 1 and cohort-flow row of the audit."""
    return [*flow_rows(paper), *sum_rows(paper), *percent_rows(paper), *definition_rows(paper),
            *comparison_rows(paper), *age_rows(paper)]
