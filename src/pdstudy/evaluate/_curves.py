"""Fig. 6 data: per-stage test performance of one distillation chain; see ``docs/statistics.md``."""

from __future__ import annotations

import pandas as pd

from pdstudy.core.methods import method_from_id
from pdstudy.data.predictions import validate_predictions
from pdstudy.evaluate._notes import (
    CLASS_NOTE,
    POLICY_NOTE,
    SEED_NOTE,
    ci_note,
    counts_note,
    small_sample_notes,
    training_note,
    val_note,
)
from pdstudy.evaluate._scores import fixed_split, score_with_seeds
from pdstudy.stats import check_auc_ci

__all__ = ["iteration_curve"]


def iteration_curve(preds: pd.DataFrame, method_id: str, *, auc_ci: str = "logit") -> pd.DataFrame:
    """Per-stage test performance of one chain (Fig. 6: stage 0 = teacher, stage i = iteration i).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_id : str
        Method whose stages are evaluated, e.g. ``"pd:efficientnet_b7>efficientnet_b7>efficientnet_b7"``.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals, named in the notes.

    Returns
    -------
    pandas.DataFrame
        One row per stage present: ``method_id, method, stage, iteration, arch, n_seeds``, the patient
        counts ``n_<split>`` and ``n_<split>_poor`` / ``n_<split>_good``, ``test_auc`` with ``_lo``/``_hi``,
        the policy metrics and seed spread columns of :func:`table2`. ``attrs["table"] == "iteration_curve"``,
        ``attrs["auc_ci"]``.
    """
    check_auc_ci(auc_ci, "auc_ci")
    df = fixed_split(validate_predictions(preds), "iteration_curve")
    m = method_from_id(method_id)
    sub = df[df["method"] == method_id]
    if sub.empty:
        raise ValueError(f"iteration_curve: method {method_id!r} has no fixed-split predictions; methods present: "
                         f"{sorted(df['method'].unique())}")
    rows = []
    for stage in sorted(sub["stage"].unique()):
        res = score_with_seeds(sub[sub["stage"] == stage], f"iteration_curve, {method_id!r} stage {stage}",
                               auc_ci=auc_ci)
        rows.append({"method_id": method_id, "method": m.label, "stage": int(stage), "iteration": int(stage),
                     "arch": m.chain[stage], **res})
    table = pd.DataFrame(rows)
    notes = [f"{m.label}: stage 0 is the teacher (trained alone), stage i the student of iteration i. "
             "Exploratory: no tests, no adjustment.",
             POLICY_NOTE, ci_note(auc_ci), *counts_note(rows), *small_sample_notes(rows), training_note(rows)]
    if any(r["n_seeds"] > 1 for r in rows):
        notes.append(SEED_NOTE)
    notes += [*val_note(rows, key="stage"), CLASS_NOTE]
    table.attrs.update(table="iteration_curve", notes=notes, auc_ci=auc_ci)
    return table
