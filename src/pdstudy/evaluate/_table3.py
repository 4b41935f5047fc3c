"""Table 3: clinician readers against a model on the fixed-split test patients.

What the rows, McNemar columns and notes mean: ``docs/statistics.md``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from pdstudy.core.methods import method_from_id
from pdstudy.evaluate._notes import CLASS_NOTE, POLICY_NOTE, small_sample_notes, training_note
from pdstudy.evaluate._scores import METRICS, POLICIES, POLICY_LABELS, choose_threshold, method_scores
from pdstudy.evaluate.readers import rate_metrics, reader_metrics
from pdstudy.stats import holm, mcnemar_exact

__all__ = ["table3"]


def table3(
    preds: pd.DataFrame,
    readers: pd.DataFrame,
    *,
    method_id: str,
    policy: str = "youden_val",
) -> pd.DataFrame:
    """Table 3: clinician readers against a model on the fixed-split test patients.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows.
    readers : pandas.DataFrame
        Readers frame (:func:`pdstudy.evaluate.read_readers` or :func:`pdstudy.evaluate.simulate_readers`)
        with one call per reader and test patient.
    method_id : str
        The model (its final stage, seed-averaged score).
    policy : {"youden_val", "youden_test"}, default "youden_val"
        Threshold policy of the model row that the McNemar tests use. The table always also lists the
        model under the other policy.

    Returns
    -------
    pandas.DataFrame
        Rows: each reader, ``Average (readers)`` (unweighted mean of the readers' rates, as the paper;
        no interval), then the model under ``policy`` and under the other policy. Columns: ``row, kind``
        (``reader``/``average``/``model``), ``reader_id, years_experience, simulated, policy, threshold,
        n, tp, fp, tn, fn, acc, acc_lo, acc_hi, sen, sen_lo, sen_hi, spe, spe_lo, spe_hi``; on reader rows
        the exact McNemar test of the model (``policy``) against the reader: ``mcnemar_b`` (model right,
        reader wrong), ``mcnemar_c`` (model wrong, reader right), ``mcnemar_p`` and ``mcnemar_p_holm``
        (Holm over the readers). ``attrs["notes"]``, ``attrs["table"] == "table3"``.

    Raises
    ------
    ValueError
        On invalid inputs, a reader who does not call exactly the test patients, or an unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {POLICIES}")
    scores = method_scores(preds, method_id)
    test = scores[scores["split"] == "test"].sort_values("patient_id").reset_index(drop=True)
    label = method_from_id(method_id).label
    val = scores[scores["split"] == "val"]
    test_counts = {"n_test_poor": int(test["y"].sum()), "n_test_good": int(len(test) - test["y"].sum())}
    val_counts = {"n_val": len(val), "n_val_poor": int(val["y"].sum()), "n_val_good": int(len(val) - val["y"].sum())}
    rm = reader_metrics(readers, test[["patient_id", "response"]])
    calls = readers.assign(patient_id=readers["patient_id"].astype(str), reader_id=readers["reader_id"].astype(str))
    rows: list[dict[str, Any]] = []
    for _, r in rm.iterrows():
        name = str(r["reader_id"])
        if r["simulated"] and "simulated" not in name.lower():
            name += " (simulated)"
        rows.append({"row": name, "kind": "reader", **r.to_dict(), **test_counts})
    avg = {"row": "Average (readers)", "kind": "average", "n": int(rm["n"].iloc[0]) if len(rm) else 0,
           "simulated": bool(rm["simulated"].any()), **test_counts}
    for m in METRICS:
        avg[m] = float(rm[m].mean())
    rows.append(avg)
    y = test["y"].to_numpy()
    model_pred: dict[str, np.ndarray | None] = {}
    for pol in (policy, *(p for p in POLICIES if p != policy)):
        thr = choose_threshold(scores, pol)
        row: dict[str, Any] = {"row": f"{label} ({POLICY_LABELS[pol]})", "kind": "model", "policy": pol,
                               "threshold": thr, "n": len(test), "simulated": False, **test_counts,
                               **(val_counts if pol == "youden_val" else {})}
        if math.isnan(thr):
            model_pred[pol] = None
            row.update({k: float("nan") for k in ("tp", "fp", "tn", "fn")})
            row.update({f"{m}{s}": float("nan") for m in METRICS for s in ("", "_lo", "_hi")})
        else:
            pred = (test["score"].to_numpy() >= thr).astype(int)
            model_pred[pol] = pred
            counts = {"tp": int(((pred == 1) & (y == 1)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
                      "tn": int(((pred == 0) & (y == 0)).sum()), "fn": int(((pred == 0) & (y == 1)).sum())}
            row.update(counts)
            row.update(rate_metrics(**counts))
        rows.append(row)
    reader_rows = [r for r in rows if r["kind"] == "reader"]
    pred = model_pred[policy]
    for r in reader_rows:
        if pred is None:
            r.update(mcnemar_b=float("nan"), mcnemar_c=float("nan"), mcnemar_p=float("nan"))
            continue
        rc = calls[calls["reader_id"] == r["reader_id"]].set_index("patient_id").loc[test["patient_id"], "call"]
        res = mcnemar_exact(pred, (rc.to_numpy() == "poor").astype(int), y)
        r.update(mcnemar_b=res["b"], mcnemar_c=res["c"], mcnemar_p=res["p_value"])
    adj = holm(np.array([r["mcnemar_p"] for r in reader_rows], dtype=float)) if reader_rows else []
    for r, p in zip(reader_rows, adj):
        r["mcnemar_p_holm"] = float(p)
    columns = ["row", "kind", "reader_id", "years_experience", "simulated", "policy", "threshold", "n",
               "tp", "fp", "tn", "fn", *(f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi")),
               "mcnemar_b", "mcnemar_c", "mcnemar_p", "mcnemar_p_holm", "n_test_poor", "n_test_good", "n_val",
               "n_val_poor", "n_val_good"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    n_seeds = int(scores["n_seeds"].iloc[0])
    notes = [
        f"Test patients: {len(test)} ({int(y.sum())} poor, {int(len(y) - y.sum())} good); the 'Youden on val' "
        f"threshold is chosen on {len(val)} validation patients ({val_counts['n_val_poor']} poor, "
        f"{val_counts['n_val_good']} good). Model: {label}, final stage, {n_seeds} seed(s)"
        + (" (seed ensemble)." if n_seeds > 1 else "."),
        POLICY_NOTE,
        f"McNemar: exact two-sided test of the model ('{POLICY_LABELS[policy]}') against each reader on the "
        "same test patients; b = model right and reader wrong, c = model wrong and reader right; "
        "p (Holm) adjusts over the readers.",
        "Average (readers): unweighted mean of the readers' rates, as in the paper (no interval). "
        "95% intervals: Wilson.",
    ]
    if table["simulated"].fillna(False).astype(bool).any():
        notes.append("Readers marked '(simulated)' are NOT real clinicians: their calls are simulated to hit the "
                     "operating points the paper reports for its clinicians (C20's specificity taken as 11/14 = "
                     "78.57% because the printed 75.57% is impossible); which patients they get right is random, "
                     "so the McNemar p-values only illustrate the analysis.")
    if pred is None:
        notes.append(f"'{POLICY_LABELS[policy]}' is not available (no validation patients of both classes): no "
                     "McNemar tests; pass policy='youden_test' to compare the optimistic operating point.")
    notes.extend(small_sample_notes(rows))
    notes.append(training_note())
    if n_seeds > 1:
        notes.append(f"The model rows are the SEED ENSEMBLE: each test patient's mean score across {n_seeds} seeds "
                     "(an ensemble of one model per seed, not a single model as in the paper).")
    notes.append(CLASS_NOTE)
    table.attrs.update(table="table3", notes=notes)
    return table
