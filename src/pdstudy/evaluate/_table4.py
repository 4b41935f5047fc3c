"""Table 4: the ablation grid (knowledge distillation, model noise, multiple iterations).

What the grid cells and notes mean: ``docs/statistics.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pandas as pd

from pdstudy.core.methods import ablation_grid, method_from_id
from pdstudy.core.paper import load_paper
from pdstudy.evaluate._notes import (
    CLASS_NOTE,
    POLICY_NOTE,
    SEED_NOTE,
    ci_note,
    counts_note,
    quick_note,
    small_sample_notes,
    training_note,
    val_note,
)
from pdstudy.evaluate._scores import final_stage, fixed_split, score_with_seeds
from pdstudy.stats import check_auc_ci

__all__ = ["DEFAULT_ABLATION_METHODS", "table4"]

#: The paper's ablation grid (Table 4): (model, KD, model noise, multiple iterations) -> method ID
#: (:func:`pdstudy.core.methods.ablation_grid`: B7, then B3).
DEFAULT_ABLATION_METHODS: Final = {k: m.id for k, m in ablation_grid().items()}


def table4(
    preds: pd.DataFrame,
    ablation_methods: Mapping[tuple[str, int, int, int], str] | None = None,
    *,
    quick: bool = False,
    include_paper: bool = True,
    auc_ci: str = "logit",
) -> pd.DataFrame:
    """Table 4: the ablation grid (knowledge distillation, model noise, multiple iterations).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split, final stages used).
    ablation_methods : mapping, optional
        ``(model, kd, mn, mi) -> method ID``; default :data:`DEFAULT_ABLATION_METHODS` (B7 and B3).
    quick : bool, default False
        Add the quick-profile stand-in note.
    include_paper : bool, default True
        Add the paper's printed AUC (``paper_auc``) for the matching grid cell.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals, named in the notes.

    Returns
    -------
    pandas.DataFrame
        One row per grid cell, in the mapping's order: ``model`` (architecture), ``kd, mn, mi`` (0/1),
        ``method_id, method, status, reason, n_seeds``, the patient counts ``n_<split>`` and
        ``n_<split>_poor`` / ``n_<split>_good``, ``test_auc`` with ``_lo``/``_hi``, the policy metrics as
        in :func:`table2` (``youden_test_acc`` ... ``youden_val_spe_hi``), the seed spread columns, and
        ``paper_auc``. ``attrs["notes"]``, ``attrs["table"] == "table4"``, ``attrs["auc_ci"]``.
    """
    check_auc_ci(auc_ci, "auc_ci")
    grid = dict(DEFAULT_ABLATION_METHODS if ablation_methods is None else ablation_methods)
    df = fixed_split(final_stage(preds), "table4")
    paper = None
    if include_paper:
        paper = load_paper().table4
    rows = []
    for key, mid in grid.items():
        if len(key) != 4:
            raise ValueError(f"ablation_methods keys must be (model, kd, mn, mi); got {key!r}")
        model, kd, mn, mi = key
        for flag_name, flag in (("kd", kd), ("mn", mn), ("mi", mi)):
            if flag not in (0, 1):
                raise ValueError(f"ablation cell {key!r}: flag {flag_name} must be 0 or 1, got {flag!r}")
        m = method_from_id(mid)
        row: dict[str, Any] = {"model": model, "kd": int(kd), "mn": int(mn), "mi": int(mi), "method_id": mid,
                               "method": m.label}
        sub = df[df["method"] == mid]
        if sub.empty:
            row.update(status="not run", reason="not trained in this run")
        else:
            row.update(status="run", reason="", **score_with_seeds(sub, f"table4, method {mid!r}", auc_ci=auc_ci))
        if paper is not None:
            hit = paper[(paper["model"] == model) & (paper["kd"] == str(kd)) & (paper["mn"] == str(mn))
                        & (paper["mi"] == str(mi))]
            row["paper_auc"] = float(hit["auc"].iloc[0]) if len(hit) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    notes = [
        "KD = knowledge distillation (a student of the same architecture); MN = model noise in the student "
        "(dropout + stochastic depth); MI = multiple iterations (the student becomes the next teacher).",
        POLICY_NOTE, ci_note(auc_ci),
        "No tests in this table: the ablation cells are descriptive (exploratory); the confirmatory tests are "
        "Table 2's Holm family.",
    ]
    if include_paper:
        notes.append("Paper AUC: as printed in the paper's Table 4 (not recomputed).")
    notes.extend(counts_note(rows))
    notes.extend(small_sample_notes(rows))
    notes.append(training_note(rows))
    if "n_seeds" in table and (table["n_seeds"].fillna(1) > 1).any():
        notes.append(SEED_NOTE)
    notes.extend(val_note(rows))
    notes.append(CLASS_NOTE)
    if quick:
        notes.append(quick_note())
    table.attrs.update(table="table4", notes=notes, auc_ci=auc_ci)
    return table
