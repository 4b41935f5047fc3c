"""Table 2: discrimination and operating points of every method's final model on the fixed split.

What the columns and notes mean: ``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pdstudy.core.methods import METHOD_KINDS, Method, method_from_id
from pdstudy.evaluate._notes import CI_NOTE, CLASS_NOTE, POLICY_NOTE, SEED_NOTE, quick_note, val_note
from pdstudy.evaluate._scores import (
    default_baseline,
    final_stage,
    fixed_split,
    paper_method_ids,
    score_with_seeds,
    seed_ensemble,
)
from pdstudy.stats import delong_test, holm

__all__ = ["table2"]


def table2(
    preds: pd.DataFrame,
    *,
    baseline_for: Callable[[Method], str | None] | Mapping[str, str | None] | None = None,
    quick: bool = False,
    include_paper: bool = True,
) -> pd.DataFrame:
    """Table 2: discrimination and operating points of every method's final model on the fixed split.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows; only fixed-split rows (``fold == -1``) of final stages are used.
    baseline_for : callable or mapping, optional
        Comparator of each method for the paired DeLong test: a function of :class:`pdstudy.core.methods.Method`
        returning a method ID (or None), or a mapping from method ID to comparator ID (methods not in
        it fall back to the default). Default :func:`default_baseline`: the baseline CNN of the
        chain's final architecture; none for baselines.
    quick : bool, default False
        Add the note that quick-profile stand-ins replaced the paper's EfficientNets.
    include_paper : bool, default True
        Add the paper's Table 2 rows that were not run (as ``status == "not run"`` with a reason) and
        the paper's printed test AUC (``paper_test_auc``), and order rows as the paper does (methods
        not in the paper follow, baselines first).

    Returns
    -------
    pandas.DataFrame
        One row per method. Columns: ``method_id, method`` (label), ``kind, chain, status``
        (``run``/``not run``), ``reason, n_seeds, n_train, n_val, n_test``;
        ``train_auc, train_auc_lo, train_auc_hi, test_auc, test_auc_lo, test_auc_hi``; for each policy
        ``P`` in :data:`POLICIES`: ``P_threshold, P_tp, P_fp, P_tn, P_fn`` and ``P_acc, P_acc_lo, P_acc_hi``
        (same for ``sen``, ``spe``); ``*_seed_mean`` / ``*_seed_sd`` of ``test_auc`` and the policy
        metrics; ``compared_with`` (comparator ID), ``p_delong`` (two-sided paired DeLong on the test
        patients), ``p_delong_holm`` (Holm over all p-values of the table); ``paper_test_auc``.
        ``attrs["notes"]`` holds the footer notes, ``attrs["table"] == "table2"``.

    Raises
    ------
    ValueError
        On invalid predictions or no fixed-split predictions.
    """
    df = fixed_split(final_stage(preds), "table2")
    results: dict[str, dict[str, Any]] = {}
    ens: dict[str, pd.DataFrame] = {}
    for mid in df["method"].unique():
        m = method_from_id(mid)
        rows = df[df["method"] == mid]
        results[mid] = {"method_id": mid, "method": m.label, "kind": m.kind, "chain": ">".join(m.chain),
                        "status": "run", "reason": "", **score_with_seeds(rows, f"table2, method {mid!r}")}
        ens[mid] = seed_ensemble(rows)

    notes = [POLICY_NOTE, CI_NOTE]
    missing_comparators = []
    for mid, r in results.items():
        m = method_from_id(mid)
        if isinstance(baseline_for, Mapping) and mid in baseline_for:
            comp = baseline_for[mid]
        elif callable(baseline_for):
            comp = baseline_for(m)
        else:
            comp = default_baseline(m)
        r["compared_with"] = comp or ""
        r["p_delong"] = float("nan")
        if not comp:
            continue
        if comp not in ens:
            missing_comparators.append(f"{m.label} (needs {comp})")
            continue
        a = ens[mid][ens[mid]["split"] == "test"].set_index("patient_id")
        b = ens[comp][ens[comp]["split"] == "test"].set_index("patient_id")
        common = a.index.intersection(b.index)
        _, p = delong_test(a.loc[common, "y"].to_numpy(), a.loc[common, "score"].to_numpy(),
                           b.loc[common, "score"].to_numpy())
        r["p_delong"] = p
    ordered = list(results)
    adj = holm(np.array([results[k]["p_delong"] for k in ordered], dtype=float)) if ordered else np.array([])
    for k, p in zip(ordered, adj):
        results[k]["p_delong_holm"] = float(p)
    k_tests = int(np.sum(~np.isnan([results[k]["p_delong"] for k in ordered])))
    notes.append(
        "p (DeLong): two-sided paired DeLong test of the test-set AUC against the comparator (default: the "
        "baseline CNN of the chain's final architecture) on the same test patients; p (Holm): Holm-adjusted "
        f"over the {k_tests} comparison(s) in this table. Baselines have no comparator (n/a).")
    if missing_comparators:
        notes.append("No DeLong test (comparator not run): " + "; ".join(missing_comparators) + ".")

    out_rows: list[dict[str, Any]] = []
    if include_paper:
        paper = paper_method_ids()
        seen = set()
        for _, pr in paper.iterrows():
            mid = pr["method_id"]
            if mid and mid in results:
                out_rows.append({**results[mid], "paper_test_auc": pr["paper_test_auc"]})
                seen.add(mid)
            elif not mid or mid not in seen:
                label = method_from_id(mid).label if mid else pr["paper_method"]
                reason = pr["reason"] or "not trained in this run (the profile's method list leaves it out)"
                out_rows.append({"method_id": mid or "", "method": label,
                                 "kind": method_from_id(mid).kind if mid else "",
                                 "chain": ">".join(method_from_id(mid).chain) if mid else "",
                                 "status": "not run", "reason": reason, "paper_test_auc": pr["paper_test_auc"]})
                if mid:
                    seen.add(mid)
        extra = sorted((k for k in results if k not in seen),
                       key=lambda k: (METHOD_KINDS.index(results[k]["kind"]), k))
        out_rows.extend({**results[k], "paper_test_auc": float("nan")} for k in extra)
        notes.append("Paper test AUC: as printed in the paper's Table 2 (not recomputed). Rows marked 'not run' "
                     "are the paper's methods this run did not train, with the reason.")
    else:
        out_rows = list(results.values())
    if any(r.get("n_seeds", 1) > 1 for r in results.values()):
        notes.append(SEED_NOTE)
    notes.extend(val_note(out_rows))
    notes.append(CLASS_NOTE)
    if quick:
        notes.append(quick_note())
    table = pd.DataFrame(out_rows)
    if "n_seeds" in table:
        table["n_seeds"] = table["n_seeds"].astype("Int64")
    table.attrs.update(table="table2", notes=notes)
    return table
