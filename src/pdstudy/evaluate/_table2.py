"""Table 2: discrimination and operating points of every method's final model on the fixed split.

What the columns and notes mean: ``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from pdstudy.core.methods import METHOD_KINDS, Method, method_from_id
from pdstudy.evaluate._notes import (
    CLASS_NOTE,
    POLICY_NOTE,
    SEED_NOTE,
    architecture_notes,
    ci_note,
    counts_note,
    quick_note,
    seed_splits_note,
    small_sample_notes,
    top_k_note,
    training_note,
    val_note,
)
from pdstudy.evaluate._scores import (
    HOLM_FAMILY_SIZE,
    PD_B7_B3_READING_NOTE,
    default_baseline,
    final_stage,
    fixed_split,
    paper_method_ids,
    score_with_seeds,
    seed_ensemble,
)
from pdstudy.stats import check_auc_ci, delong_test, holm

__all__ = ["ANALYSIS_LABELS", "OTHER_MODEL_COMPARATORS", "table2"]

#: Values of Table 2's ``analysis`` column.
ANALYSIS_LABELS: Final = {
    "family": "Holm family (the paper's row)",
    "alternative": "exploratory (alternative reading of the paper's row)",
    "exploratory": "exploratory (not a row of the paper's Table 2)",
    "other_model": "exploratory (the paper's row, outside the Holm family)",
    "baseline": "comparator",
}

#: The paper's rows of other kinds of model (3D ResNet-50, CNN + Transformer hybrid) and their default comparator
#: in the paired DeLong test: the B7 baseline. Exploratory: the Holm family holds the KD/PD rows only.
OTHER_MODEL_COMPARATORS: Final = {
    "baseline:resnet50_3d": "baseline:efficientnet_b7",
    "baseline:efficientnet_b7_transformer": "baseline:efficientnet_b7",
}
_PAPER_VALUES: Final = ("paper_train_auc", "paper_test_auc", "paper_train_acc", "paper_train_sen",
                        "paper_train_spe", "paper_test_acc", "paper_test_sen", "paper_test_spe")


def _comparator(mid: str, baseline_for: Callable[[Method], str | None] | Mapping[str, str | None] | None) -> str:
    m = method_from_id(mid)
    if isinstance(baseline_for, Mapping) and mid in baseline_for:
        comp = baseline_for[mid]
    elif callable(baseline_for):
        comp = baseline_for(m)
    else:
        comp = default_baseline(m) or OTHER_MODEL_COMPARATORS.get(mid)
    return comp or ""


def _not_run_row(mid: str, label: str, status: str, reason: str) -> dict[str, Any]:
    m = method_from_id(mid) if mid else None
    return {"method_id": mid, "method": label, "kind": m.kind if m else "", "chain": ">".join(m.chain) if m else "",
            "status": status, "reason": reason}


def table2(
    preds: pd.DataFrame,
    *,
    baseline_for: Callable[[Method], str | None] | Mapping[str, str | None] | None = None,
    quick: bool = False,
    include_paper: bool = True,
    auc_ci: str = "logit",
    top_k: int | None = None,
) -> pd.DataFrame:
    """Table 2: discrimination and operating points of every method's final model on the fixed split.

    The Holm family is fixed in advance: the paper's :data:`~pdstudy.evaluate.HOLM_FAMILY_SIZE` KD and PD
    rows (:func:`pdstudy.evaluate.paper_method_ids`, the B7-B3 PD row in its chosen reading), each tested
    against its comparator. Every other DeLong test (the alternative reading, Fig. 6 chains, ablation
    cells, other chains) is shown unadjusted and labelled exploratory, so adding methods to a run never
    changes the adjusted p-values of the family.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows; only fixed-split rows (``fold == -1``) of final stages are used.
    baseline_for : callable or mapping, optional
        Comparator of each method for the paired DeLong test: a function of :class:`pdstudy.core.methods.Method`
        returning a method ID (or None), or a mapping from method ID to comparator ID (methods not in
        it fall back to the default). Default :func:`default_baseline`: the baseline CNN of the
        chain's final architecture; none for baselines, except the 3D ResNet-50 and the hybrid, compared
        with the B7 baseline (:data:`OTHER_MODEL_COMPARATORS`; exploratory, outside the Holm family).
    quick : bool, default False
        Add the note that quick-profile stand-ins replaced the paper's EfficientNets.
    include_paper : bool, default True
        Order rows as the paper does, add the paper's printed numbers (``paper_*``), the paper's rows that
        were not run (``status == "not run"`` with a reason) and the alternative reading of the B7-B3 PD
        row; methods not in the paper follow, baselines first.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals (:func:`pdstudy.stats.delong_auc_ci`), named in the notes.
    top_k : int, optional
        The notebooks' ``top_k``: with it, a note counts the test and validation patients with fewer
        cached slices (prediction column ``n_slices``, when present).

    Returns
    -------
    pandas.DataFrame
        One row per method. Columns: ``method_id, method`` (label), ``kind, chain, status`` (``run``,
        ``not run``, or ``other reading only`` for a paper row trained only in its alternative reading),
        ``reason, paper_method, analysis`` (:data:`ANALYSIS_LABELS`), ``holm_family`` (bool), ``n_seeds``,
        ``n_train, n_val, n_test`` with ``n_<split>_poor`` / ``n_<split>_good``;
        ``train_auc, train_auc_lo, train_auc_hi, test_auc, test_auc_lo, test_auc_hi``; for each policy
        ``P`` in :data:`POLICIES`: ``P_threshold, P_tp, P_fp, P_tn, P_fn`` and ``P_acc, P_acc_lo, P_acc_hi``
        (same for ``sen``, ``spe``) on the test patients; ``train_acc`` ... ``train_spe_hi``: the training
        patients at the ``youden_val`` threshold; ``*_seed_mean`` / ``*_seed_sd`` of ``test_auc`` and the
        policy metrics; ``compared_with`` (comparator ID), ``p_delong`` (two-sided paired DeLong on the test
        patients), ``p_delong_holm`` (Holm over the fixed family; NaN outside it); the paper's printed
        ``paper_train_auc, paper_test_auc`` and ACC/SEN/SPE (``paper_train_acc`` ..., proportions).
        ``attrs["notes"]`` holds the footer notes, ``attrs["table"] == "table2"``, ``attrs["auc_ci"]``.

    Raises
    ------
    ValueError
        On invalid predictions, no fixed-split predictions, an unknown ``auc_ci`` or a bad ``top_k``.
    """
    check_auc_ci(auc_ci, "auc_ci")
    extra_notes = top_k_note(preds, top_k)
    df = fixed_split(final_stage(preds), "table2")
    results: dict[str, dict[str, Any]] = {}
    ens: dict[str, pd.DataFrame] = {}
    for mid in df["method"].unique():
        m = method_from_id(mid)
        rows = df[df["method"] == mid]
        results[mid] = {"method_id": mid, "method": m.label, "kind": m.kind, "chain": ">".join(m.chain),
                        "status": "run", "reason": "",
                        **score_with_seeds(rows, f"table2, method {mid!r}", auc_ci=auc_ci)}
        ens[mid] = seed_ensemble(rows)

    paper = paper_method_ids()
    family = [mid for mid in paper.loc[paper["holm_family"], "method_id"]]
    alternatives = {alt: pm for alt, pm in zip(paper["alternative_id"], paper["paper_method"]) if alt}
    missing_comparators = []
    for mid, r in results.items():
        comp = _comparator(mid, baseline_for)
        r["compared_with"] = comp
        r["p_delong"] = float("nan")
        r["holm_family"] = mid in family
        r["analysis"] = (ANALYSIS_LABELS["family"] if mid in family else ANALYSIS_LABELS["alternative"]
                         if mid in alternatives else ANALYSIS_LABELS["other_model"] if mid in OTHER_MODEL_COMPARATORS
                         and comp else ANALYSIS_LABELS["baseline"] if r["kind"] == "baseline"
                         else ANALYSIS_LABELS["exploratory"])
        if not comp:
            continue
        if comp not in ens:
            missing_comparators.append(f"{r['method']} (needs {comp})")
            continue
        a = ens[mid][ens[mid]["split"] == "test"].set_index("patient_id")
        b = ens[comp][ens[comp]["split"] == "test"].set_index("patient_id")
        common = a.index.intersection(b.index)
        _, p = delong_test(a.loc[common, "y"].to_numpy(), a.loc[common, "score"].to_numpy(),
                           b.loc[common, "score"].to_numpy())
        r["p_delong"] = p
    # Holm over the fixed family: a family member without a test counts as p = 1 (conservative, size fixed)
    fam_p = np.array([results[mid]["p_delong"] if mid in results else np.nan for mid in family], dtype=float)
    tested = ~np.isnan(fam_p)
    adj = holm(np.where(tested, fam_p, 1.0))
    for r in results.values():
        r["p_delong_holm"] = float("nan")
    for mid, p_adj, ok in zip(family, adj, tested):
        if ok:
            results[mid]["p_delong_holm"] = float(p_adj)

    notes = [POLICY_NOTE, ci_note(auc_ci)]
    notes.append(
        "p (DeLong): two-sided paired DeLong test of the test-set AUC against the comparator (default: the "
        "baseline CNN of the chain's final architecture) on the same test patients. p (Holm): Holm-adjusted "
        f"over a family fixed in advance, the paper's {HOLM_FAMILY_SIZE} KD/PD rows of Table 2 against their "
        f"baselines ({int(tested.sum())} of {HOLM_FAMILY_SIZE} tested in this run; an untested one counts as "
        "p = 1). Every other p (alternative reading, Fig. 6 chains, ablation cells, other chains) is "
        "unadjusted and exploratory, marked in the 'Analysis' column. Baselines have no comparator (n/a)"
        + ("; the 3D ResNet-50 and the hybrid, other kinds of model than the CNNs, are compared with the "
           "EfficientNet-B7 baseline (exploratory)." if any(mid in OTHER_MODEL_COMPARATORS for mid in results)
           else "."))
    if missing_comparators:
        notes.append("No DeLong test (comparator not run): " + "; ".join(missing_comparators) + ".")

    out_rows: list[dict[str, Any]] = []
    if include_paper:
        seen: set[str] = set()
        for _, pr in paper.iterrows():
            mid, alt = pr["method_id"], pr["alternative_id"]
            values = {k: pr[k] for k in _PAPER_VALUES}
            base = {"paper_method": pr["paper_method"], **values}
            if mid and mid in results:
                label = results[mid]["method"] + (", the paper's B7-B3 row (see notes)" if alt else "")
                out_rows.append({**results[mid], **base, "method": label})
            elif not mid:
                out_rows.append({**_not_run_row("", pr["paper_method"], "not run", pr["reason"]), **base,
                                 "analysis": ""})
            elif alt and alt in results:
                out_rows.append({**_not_run_row(mid, method_from_id(mid).label, "other reading only",
                                                f"this reading was not trained; the run trained the alternative "
                                                f"reading {method_from_id(alt).label} (next row)"),
                                 **base, "holm_family": True, "analysis": ANALYSIS_LABELS["family"]})
            else:
                out_rows.append({**_not_run_row(mid, method_from_id(mid).label, "not run",
                                                "not trained in this run (the profile's method list leaves it "
                                                "out)"),
                                 **base, "holm_family": bool(pr["holm_family"]),
                                 "analysis": ANALYSIS_LABELS["family"] if pr["holm_family"] else ""})
            seen.add(mid)
            if alt:
                label = f"{method_from_id(alt).label}, alternative reading"
                row = ({**results[alt], "method": label} if alt in results else
                       {**_not_run_row(alt, label, "not run", "not trained in this run (the profile's method "
                                                              "list leaves it out)"),
                        "holm_family": False, "analysis": ANALYSIS_LABELS["alternative"]})
                out_rows.append({**row, **base})
                seen.add(alt)
        extra = sorted((k for k in results if k not in seen),
                       key=lambda k: (METHOD_KINDS.index(results[k]["kind"]), k))
        out_rows.extend({**results[k], "paper_method": ""} for k in extra)
        notes.append("Paper train/test AUC (and, in the numeric table, the paper's ACC/SEN/SPE): as printed in the "
                     "paper's Table 2 (not recomputed). Rows marked 'not run' are the paper's methods this run did "
                     "not train, with the reason.")
        notes.append(PD_B7_B3_READING_NOTE)
    else:
        out_rows = list(results.values())
    notes.append("Train ACC/SEN/SPE (the paper's training columns): the training patients scored at the "
                 "'Youden on val' threshold, by models trained on them, so optimistic; the paper does not say "
                 "how it chose its training threshold.")
    notes.extend(counts_note(out_rows))
    notes.extend(small_sample_notes(out_rows))
    notes.append(training_note(out_rows))
    notes.extend(architecture_notes(results))
    if any(r.get("n_seeds", 1) > 1 for r in results.values()):
        notes.append(SEED_NOTE)
        notes.extend(seed_splits_note(df))
    notes.extend(val_note(out_rows))
    notes.extend(extra_notes)
    notes.append(CLASS_NOTE)
    if quick:
        notes.append(quick_note())
    table = pd.DataFrame(out_rows)
    if "n_seeds" in table:
        table["n_seeds"] = table["n_seeds"].astype("Int64")
    table.attrs.update(table="table2", notes=notes, auc_ci=auc_ci)
    return table
