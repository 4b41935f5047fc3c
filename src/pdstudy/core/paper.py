"""The paper's published numbers, shipped as package data (``pdstudy/core/paper_data/``).

Tables are read with every value as a string so that the printed precision survives
(``"75"`` vs ``"75.00"``); convert with ``float`` where needed. See
``data_manifest/paper_reference.md`` for the columns and the known printing errors.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

_PACKAGE = "pdstudy"
_FOLDER = ("core", "paper_data")

TABLE_FILES = {
    "table1": "table1_cohort.csv",
    "table2": "table2_model_performance.csv",
    "table3": "table3_clinicians.csv",
    "table4": "table4_ablation.csv",
}
FACTS_FILE = "facts.yaml"
TEXT_FILE = "text_numbers.yaml"


def _read_text(name: str) -> str:
    node = resources.files(_PACKAGE)
    for part in _FOLDER:
        node = node / part
    node = node / name
    if not node.is_file():
        raise FileNotFoundError(f"package data file pdstudy/{'/'.join(_FOLDER)}/{name} is missing; reinstall pdstudy")
    return node.read_text(encoding="utf-8")


@dataclass(frozen=True)
class PaperNumbers:
    """Everything the audit knows about the paper: four tables, facts and text numbers."""

    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    table4: pd.DataFrame
    facts: dict[str, Any]
    text: dict[str, Any]

    def group_size(self, split: str, response: str) -> int:
        """Patients in one split and response group (Table 1 header)."""
        return int(self.facts["cohort"][split][response])


@lru_cache(maxsize=1)
def load_paper() -> PaperNumbers:
    """Load the shipped tables and YAML files.

    Returns
    -------
    PaperNumbers
        Tables as string-valued DataFrames; YAML as nested dicts.
    """
    tables = {key: pd.read_csv(io.StringIO(_read_text(fn)), dtype=str, keep_default_na=False)
              for key, fn in TABLE_FILES.items()}
    facts = yaml.safe_load(_read_text(FACTS_FILE))
    text = yaml.safe_load(_read_text(TEXT_FILE))
    return PaperNumbers(facts=facts, text=text, **tables)


def lookup(paper: PaperNumbers, ref: str) -> dict[str, str]:
    """Metric values of one table row named by a reference string.

    Parameters
    ----------
    paper : PaperNumbers
        The loaded paper numbers.
    ref : str
        ``table2/<method>/<train|test>``, ``table3/<reader>`` or
        ``table4/<model>/<kd><mn><mi>`` (e.g. ``table4/efficientnet_b7/110``).

    Returns
    -------
    dict
        ``{"auc", "acc", "sen", "spe"}`` (those the table has) as printed strings.
    """
    parts = ref.split("/")
    kind = parts[0]
    if kind == "table2" and len(parts) == 3:
        method, split = parts[1], parts[2]
        if split not in ("train", "test"):
            raise ValueError(f"bad split in reference {ref!r}")
        rows = paper.table2[paper.table2["method"] == method]
        keys = {m: f"{split}_{m}" for m in ("auc", "acc", "sen", "spe")}
    elif kind == "table3" and len(parts) == 2:
        rows = paper.table3[paper.table3["reader"] == parts[1]]
        keys = {m: m for m in ("acc", "sen", "spe")}
    elif kind == "table4" and len(parts) == 3 and len(parts[2]) == 3:
        kd, mn, mi = parts[2]
        t = paper.table4
        rows = t[(t["model"] == parts[1]) & (t["kd"] == kd) & (t["mn"] == mn) & (t["mi"] == mi)]
        keys = {m: m for m in ("auc", "acc", "sen", "spe")}
    else:
        raise ValueError(f"malformed table reference {ref!r}")
    if len(rows) != 1:
        raise ValueError(f"reference {ref!r} matches {len(rows)} rows, expected 1")
    row = rows.iloc[0]
    return {m: str(row[col]) for m, col in keys.items()}
