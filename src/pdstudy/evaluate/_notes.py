"""Footer notes shared by the evaluation tables (``table.attrs["notes"]``); see ``docs/statistics.md``."""

from __future__ import annotations

import math
from typing import Any, Final

from pdstudy.core.methods import QUICK_STAND_INS, display_arch
from pdstudy.core.vocab import PAPER_LABEL_FOOTNOTE

__all__ = ["CI_NOTE", "CLASS_NOTE", "POLICY_NOTE", "SEED_NOTE", "quick_note", "val_note"]

#: What the two threshold policies are.
POLICY_NOTE: Final = (
    "Threshold policies: 'Youden on test, optimistic' (youden_test) picks the Youden threshold on the test "
    "patients and scores it on the same patients, as the paper did; tuning on the evaluated patients "
    "inflates ACC/SEN/SPE. 'Youden on val' (youden_val) picks it on the validation patients (carved "
    "from the training patients) and applies it unchanged to the test patients: the honest estimate."
)
#: Which interval each metric carries.
CI_NOTE: Final = "95% intervals: DeLong (logit scale) for AUC; Wilson for ACC, SEN and SPE."
#: The positive class and the paper's response labels.
CLASS_NOTE: Final = (
    "Positive class = poor response: SEN = poor responders called poor, SPE = good responders called good. "
    + PAPER_LABEL_FOOTNOTE
)
#: Seed ensemble versus per-seed spread.
SEED_NOTE: Final = (
    "With several seeds, AUC, intervals, ACC/SEN/SPE and p-values are those of the seed-averaged score "
    "(each patient's mean score over the seeds); 'seeds' gives the mean +/- SD of the per-seed values."
)


def val_note(rows: list[dict[str, Any]], key: str = "method") -> list[str]:
    """Note naming the run rows without a 'Youden on val' threshold (none if every row has one).

    Parameters
    ----------
    rows : list of dict
        Table rows (``status`` defaults to ``"run"``; ``youden_val_acc`` NaN when not available).
    key : str, default "method"
        Column that names a row in the note.

    Returns
    -------
    list of str
        Zero or one note.
    """
    missing = [r[key] for r in rows if r.get("status", "run") == "run" and math.isnan(r.get("youden_val_acc", 0.0))]
    if not missing:
        return []
    return [f"'Youden on val' is not available (no validation patients of both classes) for: "
            f"{', '.join(map(str, missing))}; shown as n/a."]


def quick_note() -> str:
    """Note that the quick profile's stand-ins replaced the paper's EfficientNets.

    Returns
    -------
    str
        The note, naming each stand-in.
    """
    pairs = ", ".join(f"{display_arch(k)} -> {v}" for k, v in QUICK_STAND_INS.items())
    return ("Quick profile: the paper's EfficientNets are replaced by tiny timm stand-ins (" + pairs + ") on "
            "small images; the numbers check the pipeline and do not reproduce the paper.")
