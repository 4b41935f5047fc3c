"""Cross-validation summary: out-of-fold test AUC per repeat, mean and SD over repeats; see ``docs/statistics.md``."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from pdstudy.core.methods import method_from_id
from pdstudy.data.predictions import validate_predictions
from pdstudy.evaluate._notes import ci_note, small_sample_notes, training_note
from pdstudy.evaluate._scores import METRICS, final_stage_of, has_both_classes
from pdstudy.evaluate.readers import rate_metrics
from pdstudy.stats import apply_threshold_policy, check_auc_ci, delong_auc_ci

__all__ = ["cv_summary"]


def _smallest_val(g: pd.DataFrame) -> dict[str, int]:
    """``n_val, n_val_poor, n_val_good`` of the row whose smaller validation class is smallest."""
    r = g.loc[g[["n_val_poor", "n_val_good"]].min(axis=1).idxmin()]
    return {k: int(r[k]) for k in ("n_val", "n_val_poor", "n_val_good")}


def cv_summary(preds: pd.DataFrame, *, per_repeat: bool = False, auc_ci: str = "logit") -> pd.DataFrame:
    """Cross-validation summary: out-of-fold test AUC per repeat, then mean and SD over repeats.

    Within a repeat each patient is a test patient in exactly one fold; the folds' test predictions
    (final stage) are pooled into one out-of-fold score per patient and one AUC per repeat. With
    validation patients in every fold, each fold's ``youden_val`` threshold is applied to its own
    test patients and the pooled ACC/SEN/SPE are reported too.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows; only ``fold >= 0`` rows are used.
    per_repeat : bool, default False
        Return one row per (method, seed, repeat) instead of the per-method summary.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the per-repeat DeLong AUC intervals, named in the notes.

    Returns
    -------
    pandas.DataFrame
        Summary: ``method_id, method, n_repeats`` (distinct (seed, repeat) pairs), ``n_folds, n_patients,
        auc_mean, auc_sd`` (ddof 1), ``auc_min, auc_max``, ``youden_val_acc_mean``/``_sd`` (same for
        ``sen``, ``spe``). Per repeat: ``method_id, method, seed, repeat, n_folds, n_patients, auc,
        auc_lo, auc_hi`` (DeLong on the pooled scores), ``youden_val_acc`` / ``_sen`` / ``_spe``. Both
        carry the patient counts ``n_test_poor`` / ``n_test_good`` (the pooled out-of-fold test patients)
        and ``n_val``, ``n_val_poor`` / ``n_val_good``: the smallest fold's validation patients (of the
        repeat; of all repeats in the summary), on which that fold's threshold rests.
        ``attrs["notes"]`` says that folds and repeats share patients, so the SD is not a standard error.

    Raises
    ------
    ValueError
        Without cross-validation rows, or when a patient is a test patient in two folds of one repeat.
    """
    check_auc_ci(auc_ci, "auc_ci")
    df = validate_predictions(preds)
    cv = df[df["fold"] >= 0]
    if cv.empty:
        raise ValueError("cv_summary needs cross-validation predictions (fold >= 0); all rows are the fixed split")
    final = final_stage_of(cv)
    cv = cv[cv["stage"] == final]
    per: list[dict[str, Any]] = []
    for (mid, seed, rep), rows in cv.groupby(["method", "seed", "repeat"], sort=True):
        test = rows[rows["split"] == "test"]
        dup = test["patient_id"].duplicated()
        if dup.any():
            raise ValueError(f"cv_summary: method {mid!r}, seed {seed}, repeat {rep}: patient "
                             f"{test['patient_id'][dup].iloc[0]!r} is a test patient in more than one fold")
        y = test["y"].to_numpy()
        rec: dict[str, Any] = {"method_id": mid, "method": method_from_id(mid).label, "seed": int(seed),
                               "repeat": int(rep), "n_folds": int(rows["fold"].nunique()), "n_patients": len(test),
                               "n_test": len(test), "n_test_poor": int(y.sum()), "n_test_good": len(y) - int(y.sum())}
        vals = [fr.loc[fr["split"] == "val", "y"] for _, fr in rows.groupby("fold")]
        smallest = min(vals, key=lambda v: (min(int(v.sum()), len(v) - int(v.sum())), len(v)))
        rec.update(n_val=len(smallest), n_val_poor=int(smallest.sum()), n_val_good=len(smallest) - int(smallest.sum()))
        if has_both_classes(y):
            rec["auc"], rec["auc_lo"], rec["auc_hi"] = delong_auc_ci(y, test["score"].to_numpy(), method=auc_ci)
        else:
            rec["auc"] = rec["auc_lo"] = rec["auc_hi"] = float("nan")
        counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
        ok = True
        for _, fold_rows in rows.groupby("fold"):
            val = fold_rows[fold_rows["split"] == "val"]
            ft = fold_rows[fold_rows["split"] == "test"]
            if not has_both_classes(val["y"].to_numpy()) or ft.empty:
                ok = False
                break
            r = apply_threshold_policy("youden_val", ft["y"].to_numpy(), ft["score"].to_numpy(),
                                       val["y"].to_numpy(), val["score"].to_numpy())
            for k in counts:
                counts[k] += r[k]
        rates = rate_metrics(**counts) if ok else {m: float("nan") for m in METRICS}
        for m in METRICS:
            rec[f"youden_val_{m}"] = rates[m]
        per.append(rec)
    per_df = pd.DataFrame(per)
    notes = ["Cross-validation: each repeat pools its folds' out-of-fold test predictions (final stage) into one "
             "AUC; mean and SD are over repeats (and seeds). Folds and repeats reuse the same patients, so the "
             "repeats are not independent and the SD is not a standard error of the mean.",
             "youden_val: each fold's threshold is chosen on that fold's validation patients and applied to its "
             "test patients; the confusion counts are pooled over the folds.",
             "Patients: n_patients (n_test_poor / n_test_good) out-of-fold test patients per repeat; n_val "
             "(n_val_poor / n_val_good) the smallest fold's validation patients, on which its threshold rests.",
             *small_sample_notes(per), training_note(cv=True)]
    if per_repeat:
        notes.insert(1, ci_note(auc_ci))
        per_df.attrs.update(table="cv_per_repeat", notes=notes)
        return per_df
    summ = []
    for mid, g in per_df.groupby("method_id", sort=False):
        rec = {"method_id": mid, "method": method_from_id(mid).label, "n_repeats": len(g),
               "n_folds": int(g["n_folds"].max()), "n_patients": int(g["n_patients"].max()),
               "n_test": int(g["n_test"].max()), "n_test_poor": int(g["n_test_poor"].max()),
               "n_test_good": int(g["n_test_good"].max()),
               **_smallest_val(g),
               "auc_mean": float(g["auc"].mean()), "auc_sd": float(g["auc"].std(ddof=1)) if len(g) > 1 else math.nan,
               "auc_min": float(g["auc"].min()), "auc_max": float(g["auc"].max())}
        for m in METRICS:
            v = g[f"youden_val_{m}"]
            rec[f"youden_val_{m}_mean"] = float(v.mean())
            rec[f"youden_val_{m}_sd"] = float(v.std(ddof=1)) if len(g) > 1 else math.nan
        summ.append(rec)
    out = pd.DataFrame(summ)
    out.attrs.update(table="cv_summary", notes=notes)
    return out
