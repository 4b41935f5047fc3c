"""Fig. 6 data: per-stage test performance of one distillation chain; see ``docs/statistics.md``."""

from __future__ import annotations

import pandas as pd

from pdstudy.core.methods import method_from_id
from pdstudy.data.predictions import validate_predictions
from pdstudy.evaluate._notes import CI_NOTE, CLASS_NOTE, POLICY_NOTE
from pdstudy.evaluate._scores import fixed_split, score_with_seeds

__all__ = ["iteration_curve"]


def iteration_curve(preds: pd.DataFrame, method_id: str) -> pd.DataFrame:
    """Per-stage test performance of one chain (Fig. 6: stage 0 = teacher, stage i = iteration i).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_id : str
        Method whose stages are evaluated, e.g. ``"pd:efficientnet_b7>efficientnet_b7>efficientnet_b7"``.

    Returns
    -------
    pandas.DataFrame
        One row per stage present: ``method_id, method, stage, iteration, arch, n_seeds``, ``test_auc``
        with ``_lo``/``_hi``, the policy metrics and seed spread columns of :func:`table2`.
        ``attrs["table"] == "iteration_curve"``.
    """
    df = fixed_split(validate_predictions(preds), "iteration_curve")
    m = method_from_id(method_id)
    sub = df[df["method"] == method_id]
    if sub.empty:
        raise ValueError(f"iteration_curve: method {method_id!r} has no fixed-split predictions; methods present: "
                         f"{sorted(df['method'].unique())}")
    rows = []
    for stage in sorted(sub["stage"].unique()):
        res = score_with_seeds(sub[sub["stage"] == stage], f"iteration_curve, {method_id!r} stage {stage}")
        rows.append({"method_id": method_id, "method": m.label, "stage": int(stage), "iteration": int(stage),
                     "arch": m.chain[stage], **res})
    table = pd.DataFrame(rows)
    table.attrs.update(table="iteration_curve", notes=[
        f"{m.label}: stage 0 is the teacher (trained alone), stage i the student of iteration i.",
        POLICY_NOTE, CI_NOTE, CLASS_NOTE])
    return table
