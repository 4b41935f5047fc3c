"""Numbers stated in the text against the tables, and statements that contradict each other."""

from __future__ import annotations

from pdstudy.audit.feasibility import matches_printed, printed_decimals
from pdstudy.audit.rows import row
from pdstudy.core.paper import PaperNumbers, lookup

METRICS = ("auc", "acc", "sen", "spe")


def _agree(a: str, b: str) -> bool:
    """Printed numbers agree at the coarser of the two precisions ("75.0" == "75.00")."""
    return matches_printed(float(a), b, min(printed_decimals(a), printed_decimals(b)))


def _fmt(values: dict[str, str]) -> str:
    return " / ".join(f"{m.upper()} {values[m]}" for m in METRICS if m in values)


def text_result_rows(paper: PaperNumbers) -> list[dict]:
    """Each metric value stated in the text against the table row(s) it describes."""
    out = []
    for entry in paper.text["results"]:
        stated = {m: str(entry[m]) for m in METRICS if m in entry}
        candidates = [(ref, lookup(paper, ref)) for ref in entry["ref"]]
        matches = [ref for ref, vals in candidates if all(_agree(v, vals[m]) for m, v in stated.items())]
        label = entry.get("what", entry["ref"][0].split("/")[1])
        expected = " or ".join(f"{ref}: {_fmt({m: vals[m] for m in stated})}" for ref, vals in candidates)
        if matches:
            verdict, why = "consistent", f"Matches {matches[0]}."
        else:
            closest = []
            for ref, vals in candidates:
                diff = [f"{m.upper()} {v} vs {vals[m]}" for m, v in stated.items() if not _agree(v, vals[m])]
                closest.append(f"{ref} differs in {', '.join(diff)}")
            verdict, why = "inconsistent", "; ".join(closest) + "."
        out.append(row(f"Text ({entry['location']}) | {label}", "text number vs table", _fmt(stated), expected,
                       verdict, why))
    return out


def accrual_rows(paper: PaperNumbers) -> list[dict]:
    """The accrual period stated in two places."""
    periods = paper.text["accrual"]
    spans = {(p["start"], p["end"]) for p in periods}
    listing = "; ".join(f"{p['start']} to {p['end']} ({p['location']})" for p in periods)
    ok = len(spans) == 1
    return [row("Accrual period", "dates stated twice", listing, "one period", "consistent" if ok else "inconsistent",
                "The two statements agree." if ok else
                "The end of accrual differs by one year between the two places; the paper was received in "
                "January 2025, so either is possible and the cohort window is uncertain.")]


def _t2(paper: PaperNumbers, method: str, split: str = "test") -> dict[str, str]:
    return lookup(paper, f"table2/{method}/{split}")


def _t4(paper: PaperNumbers, model: str, code: str) -> dict[str, str]:
    return lookup(paper, f"table4/{model}/{code}")


def claim_rows(paper: PaperNumbers) -> list[dict]:
    """Qualitative statements checked against each other and the numbers."""
    claims = paper.text["claims"]
    out = []

    # Hybrid CNN + Transformer vs the 2D baselines.
    hyb = claims["hybrid_vs_2d_baselines"]
    h = _t2(paper, "Hybrid Model")
    b7 = _t2(paper, "EfficientNet-B7")
    baselines = [_t2(paper, m) for m in paper.table2["method"] if _is_2d_baseline(m)]
    best_auc = max(float(b["auc"]) for b in baselines)
    out.append(row(
        "Hybrid CNN + Transformer", "statements agree",
        "; ".join(f"{s['location']}: {s['says'].replace('_', ' ')}" for s in hyb),
        "one direction", "inconsistent" if len({s["says"] for s in hyb}) > 1 else "consistent",
        f"One place says the 3D and hybrid models did not beat the 2D baselines, another that they gave modest gains. "
        f"Table 2: hybrid test AUC {h['auc']} / ACC {h['acc']} vs its EfficientNet-B7 backbone {b7['auc']} / "
        f"{b7['acc']}; best 2D baseline AUC {best_auc:.2f}.",
    ))

    # Model noise on the small model (B3): Table 4 KD -> KD + MN.
    small = claims["model_noise_small_model"]
    kd3, mn3 = _t4(paper, "efficientnet_b3", "100"), _t4(paper, "efficientnet_b3", "110")
    out.append(row(
        "Model noise, EfficientNet-B3", "statements agree",
        "; ".join(f"{s['location']}: {s['says'].replace('_', ' ')}" for s in small),
        "one direction", "inconsistent" if len({s["says"] for s in small}) > 1 else "consistent",
        f"Results call the effect of model noise on the small model negative, the ablation section a slight gain. "
        f"Table 4 (KD -> KD + MN): AUC {kd3['auc']} -> {mn3['auc']}, ACC {kd3['acc']} -> {mn3['acc']}, "
        f"SEN {kd3['sen']} -> {mn3['sen']}, SPE {kd3['spe']} -> {mn3['spe']}: AUC up, accuracy unchanged, the "
        "operating point traded sensitivity for specificity.",
    ))

    # Model noise on the large model (B7): "substantial" gain.
    large = claims["model_noise_large_model"][0]
    kd7, mn7 = _t4(paper, "efficientnet_b7", "100"), _t4(paper, "efficientnet_b7", "110")
    n_test = paper.facts["cohort"]["test"]["n"]
    d_correct = round((float(mn7["acc"]) - float(kd7["acc"])) * n_test / 100)
    out.append(row(
        "Model noise, EfficientNet-B7", "claim vs numbers", f"{large['location']}: {large['says'].replace('_', ' ')}",
        f"AUC {kd7['auc']} -> {mn7['auc']}, ACC {kd7['acc']} -> {mn7['acc']}", "unsupported",
        f"The gain from adding model noise is {float(mn7['auc']) - float(kd7['auc']):.2f} AUC and {d_correct} more "
        f"correctly classified patient(s) out of {n_test}; most of the B7 improvement in Table 4 comes with the "
        "further iterations, not with the noise.",
    ))

    # PD vs KD over the three chains reported both ways.
    pairs = [("Knowledge Distillation (EfficientNet-B7)", "Progressive Distill (EfficientNet-B7)"),
             ("Knowledge Distillation (EfficientNet-B3)", "Progressive Distill (EfficientNet-B3)"),
             ("Knowledge Distillation (EfficientNetB7-B3)", "Progressive Distill (EfficientNetB7-B3)")]
    parts, worse = [], []
    for kd_name, pd_name in pairs:
        k, p = _t2(paper, kd_name), _t2(paper, pd_name)
        parts.append(f"{pd_name}: AUC {k['auc']} -> {p['auc']}, ACC {k['acc']} -> {p['acc']}")
        if float(p["acc"]) < float(k["acc"]) or float(p["auc"]) < float(k["auc"]):
            worse.append(pd_name)
    out.append(row(
        "PD vs KD", "claim vs numbers", "PD outperforms KD (results, para on PD)", "; ".join(parts), "note",
        "AUC is higher with PD in all three pairs"
        + (f", but accuracy is lower for {', '.join(worse)} (the text concedes the B7-to-B3 gain is smaller)."
           if worse else "."),
    ))

    # PD vs clinicians.
    clin = claims["pd_vs_clinicians"]
    t3 = paper.table3.set_index("reader")
    pd_row = t3.loc["PD (EfficientNet-B7)"]
    better = [r for r in t3.index if r.startswith("C") and float(t3.loc[r, "acc"]) > float(pd_row["acc"])]
    out.append(row(
        "PD vs clinicians", "statements vs Table 3",
        "; ".join(f"{s['location']}: {s['says']}" for s in clin),
        f"PD ACC {pd_row['acc']}; " + ", ".join(f"{r} {t3.loc[r, 'acc']}" for r in t3.index if r.startswith("C")),
        "inconsistent" if better else "consistent",
        (f"The introduction and discussion present PD as better than the clinicians, but {', '.join(better)} "
         f"is more accurate (and more sensitive: SEN {t3.loc[better[0], 'sen']} vs {pd_row['sen']}) in Table 3; "
         "only the results paragraph restricts the comparison to C20, C40 and the average.") if better else "",
    ))

    # "No bias" read from equal sensitivity and specificity.
    bias = claims["no_bias"]
    out.append(row(
        "Absence of bias", "claim vs numbers", "; ".join(f"{b['location']}: {b['basis']}" for b in bias),
        "evidence about bias (calibration, subgroups, an independent threshold)", "unsupported",
        f"SEN = SPE = {pd_row['sen']}% at a Youden cut-off chosen on the same test patients says the cut sits "
        "where the two error rates balance; it carries no information about bias, and a 28-patient confusion "
        "matrix split over four RECIST categories cannot show its absence.",
    ))

    # Surgery eligibility vs label definition.
    elig = claims["surgery_eligibility"]
    poor_codes = paper.facts["labels"]["poor"]
    overlap = [c for c in elig["eligible_after"] if c in poor_codes]
    out.append(row(
        "Label definition", "labels vs conversion-surgery criterion",
        f"surgery considered after RECIST {', '.join(elig['eligible_after'])} ({elig['location']})",
        f"poor = {', '.join(poor_codes)}", "note",
        f"{', '.join(overlap)} counts as poor response in the labels, yet qualifies for conversion surgery; "
        "the endpoint is RECIST response, not resectability, which readers may conflate.",
    ))

    # Citation of EfficientNet.
    cit = paper.text["citations"]["efficientnet"]
    out.append(row(
        "Citation", "in-text reference number", f"EfficientNet cited as ref. {cit['cited_as']} ({cit['location']})",
        f"ref. {cit['reference_number']}",
        "inconsistent" if cit["cited_as"] != cit["reference_number"] else "consistent",
        f"Reference {cit['cited_as']} is {cit['reference_21']}; the EfficientNet paper is reference "
        f"{cit['reference_number']} (typo-level).",
    ))
    return out


def _is_2d_baseline(method: str) -> bool:
    return not any(k in method for k in ("Distill", "Hybrid", "3D"))


def all_text_rows(paper: PaperNumbers) -> list[dict]:
    """Every text-vs-table and contradiction row of the audit."""
    return [*accrual_rows(paper), *text_result_rows(paper), *claim_rows(paper)]
