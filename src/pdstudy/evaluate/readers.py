"""Clinician readers: the readers CSV, simulated readers at stated operating points, reader metrics.

The readers CSV schema (one call per reader and test patient; ``call`` is ``good`` or ``poor``, poor being
the positive class) and how simulated readers are drawn are described in ``docs/statistics.md`` (Table 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from pdstudy.core.vocab import RESPONSES
from pdstudy.stats import binary_metrics, wilson_ci

__all__ = [
    "DEFAULT_OPERATING_POINTS",
    "READER_COLUMNS",
    "SIMULATED_SUFFIX",
    "OperatingPoint",
    "is_simulated",
    "rate_metrics",
    "read_readers",
    "reader_metrics",
    "simulate_readers",
]

READER_COLUMNS: Final = ("patient_id", "reader_id", "years_experience", "call")
SIMULATED_SUFFIX: Final = " (simulated)"


@dataclass(frozen=True)
class OperatingPoint:
    """A reader's stated operating point.

    Attributes
    ----------
    name : str
        Reader name (``"C3"``); simulated readers are called ``name + " (simulated)"``.
    years_experience : int
        Years of experience.
    sensitivity, specificity : float
        Proportions in [0, 1] (not percentages).
    """

    name: str
    years_experience: int
    sensitivity: float
    specificity: float

    def __post_init__(self) -> None:
        for field in ("sensitivity", "specificity"):
            v = getattr(self, field)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"operating point {self.name!r}: {field} must be a proportion in [0, 1], got {v!r}")


#: The paper's three clinicians (Table 3), C20's specificity corrected from the impossible 75.57% to 11/14.
DEFAULT_OPERATING_POINTS: Final = (
    OperatingPoint("C3", 3, 1.0, 12 / 14),
    OperatingPoint("C20", 20, 12 / 14, 11 / 14),
    OperatingPoint("C40", 40, 13 / 14, 9 / 14),
)


def is_simulated(reader_id: str) -> bool:
    """Whether a reader ID names a simulated reader (it contains ``simulated``, any case).

    Parameters
    ----------
    reader_id : str
        Reader ID, e.g. ``"C3 (simulated)"``.

    Returns
    -------
    bool
        True for a simulated reader.
    """
    return "simulated" in str(reader_id).lower()


def _check_patients(patients: pd.DataFrame, name: str = "patients") -> pd.DataFrame:
    if not isinstance(patients, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame with columns patient_id, response")
    missing = [c for c in ("patient_id", "response") if c not in patients.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; expected patient_id, response (good|poor)")
    out = patients[["patient_id", "response"]].copy()
    out["patient_id"] = out["patient_id"].astype(str)
    bad = ~out["response"].isin(RESPONSES)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{name}: column 'response' must be one of {RESPONSES}; patient "
                         f"{out['patient_id'].iloc[i]!r} has {out['response'].iloc[i]!r}")
    dup = out["patient_id"].duplicated()
    if dup.any():
        raise ValueError(f"{name}: patient_id {out['patient_id'][dup].iloc[0]!r} appears more than once")
    if out.empty:
        raise ValueError(f"{name} is empty")
    return out.reset_index(drop=True)


def _validate_readers(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check a readers frame; messages name the source, the (1-based data) row and the column."""
    missing = [c for c in READER_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; the readers CSV needs {list(READER_COLUMNS)}")
    df = df.copy()
    for col in ("patient_id", "reader_id", "call"):
        df[col] = df[col].astype(str).str.strip()
        empty = df[col].isin(["", "nan", "None"])
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0]) + 1
            raise ValueError(f"{source}: row {row}, column {col!r} is empty")
    bad = ~df["call"].isin(RESPONSES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        val = df["call"].iloc[row - 1]
        hint = " (GR/PR are the paper's print labels; the CSV uses good/poor)" if val in ("GR", "PR") else ""
        raise ValueError(f"{source}: row {row}, column 'call' has unknown call {val!r}; "
                         f"expected one of {RESPONSES}{hint}")
    years = pd.to_numeric(df["years_experience"], errors="coerce")
    bad = years.isna() | (years < 0) | (years != years.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise ValueError(f"{source}: row {row}, column 'years_experience' must be a whole number >= 0, "
                         f"got {df['years_experience'].iloc[row - 1]!r}")
    df["years_experience"] = years.astype(int)
    per_reader = df.groupby("reader_id")["years_experience"].nunique()
    if (per_reader > 1).any():
        rid = per_reader[per_reader > 1].index[0]
        raise ValueError(f"{source}: column 'years_experience' differs between the rows of reader {rid!r}")
    dup = df.duplicated(["reader_id", "patient_id"], keep="first")
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        first = int(np.flatnonzero(((df["reader_id"] == df["reader_id"].iloc[row - 1])
                                    & (df["patient_id"] == df["patient_id"].iloc[row - 1])).to_numpy())[0]) + 1
        raise ValueError(f"{source}: row {row} repeats reader {df['reader_id'].iloc[row - 1]!r} on patient "
                         f"{df['patient_id'].iloc[row - 1]!r} (first at row {first}); one call per reader and patient")
    if "simulated" in df.columns and df["simulated"].dtype == bool:
        pass
    elif "simulated" in df.columns:
        text = df["simulated"].astype(str).str.strip().str.lower()
        bad = ~text.isin(["true", "false", "1", "0"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
            raise ValueError(f"{source}: row {row}, column 'simulated' must be true or false, "
                             f"got {df['simulated'].iloc[row - 1]!r}")
        df["simulated"] = text.isin(["true", "1"])
    else:
        df["simulated"] = df["reader_id"].map(is_simulated)
    return df.reset_index(drop=True)


def read_readers(path: str | Path) -> pd.DataFrame:
    """Read and validate a readers CSV (schema: :data:`READER_COLUMNS`, see ``docs/statistics.md``).

    Parameters
    ----------
    path : str or Path
        CSV file.

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id``, ``reader_id`` (str), ``years_experience`` (int), ``call`` (str),
        ``simulated`` (bool; from the column when present, else whether the ID says "simulated"),
        plus any extra columns of the file.

    Raises
    ------
    ValueError
        On a missing column, an empty cell, an unknown call, a bad ``years_experience`` or
        ``simulated`` value, or a reader calling a patient twice. Messages name the data row
        (1 = first row after the header) and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"readers CSV {path} does not exist")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return _validate_readers(df, f"readers CSV {path.name}")


def simulate_readers(
    patients: pd.DataFrame,
    *,
    seed: int = 0,
    operating_points: Sequence[OperatingPoint] = DEFAULT_OPERATING_POINTS,
) -> pd.DataFrame:
    """Simulated readers whose calls hit stated operating points exactly on the given patients.

    For a reader with sensitivity ``se`` and specificity ``sp`` on ``m`` poor and ``n`` good
    responders, ``round(se * m)`` poor responders (chosen at random) are called poor and the rest
    good, and ``round(sp * n)`` good responders are called good and the rest poor.

    Parameters
    ----------
    patients : pandas.DataFrame
        The patients to read (normally the test set): ``patient_id`` and ``response`` (good|poor).
    seed : int, default 0
        Seed; reader ``i`` uses ``numpy.random.default_rng([seed, i])``, so the same seed gives the
        same calls.
    operating_points : sequence of OperatingPoint
        Default: the paper's three clinicians (:data:`DEFAULT_OPERATING_POINTS`).

    Returns
    -------
    pandas.DataFrame
        Readers CSV schema plus ``simulated`` (True): ``reader_id`` is ``"<name> (simulated)"``;
        rows ordered by reader, then as ``patients``.

    Raises
    ------
    ValueError
        On invalid patients or operating points, or no operating points.
    """
    pts = _check_patients(patients)
    if not operating_points:
        raise ValueError("operating_points is empty; give at least one OperatingPoint")
    poor = pts["response"].to_numpy() == "poor"
    pos_idx, neg_idx = np.flatnonzero(poor), np.flatnonzero(~poor)
    frames = []
    for i, op in enumerate(operating_points):
        if not isinstance(op, OperatingPoint):
            raise TypeError(f"operating_points[{i}] must be an OperatingPoint, got {type(op).__name__}")
        rng = np.random.default_rng([int(seed), i])
        calls = np.array(["good"] * len(pts), dtype=object)
        k_pos = int(round(op.sensitivity * len(pos_idx)))
        k_neg = int(round(op.specificity * len(neg_idx)))
        calls[rng.choice(pos_idx, size=k_pos, replace=False)] = "poor"
        wrong_neg = rng.choice(neg_idx, size=len(neg_idx) - k_neg, replace=False)
        calls[wrong_neg] = "poor"
        frames.append(pd.DataFrame({
            "patient_id": pts["patient_id"], "reader_id": op.name + SIMULATED_SUFFIX,
            "years_experience": int(op.years_experience), "call": calls, "simulated": True,
        }))
    return pd.concat(frames, ignore_index=True)


def reader_metrics(readers: pd.DataFrame, patients: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Accuracy, sensitivity and specificity of each reader, with Wilson intervals.

    Parameters
    ----------
    readers : pandas.DataFrame
        Readers frame (:func:`read_readers` or :func:`simulate_readers`).
    patients : pandas.DataFrame
        The read patients with the truth: ``patient_id``, ``response``. Every reader must call
        exactly these patients.
    level : float, default 0.95
        Level of the Wilson intervals.

    Returns
    -------
    pandas.DataFrame
        One row per reader (in order of first appearance): ``reader_id``, ``years_experience``,
        ``simulated``, ``n``, ``tp``, ``fp``, ``tn``, ``fn`` (poor = positive), ``acc``, ``sen``, ``spe``
        (proportions, NaN when undefined) and ``acc_lo``, ``acc_hi``, ``sen_lo``, ... (Wilson).

    Raises
    ------
    ValueError
        On invalid frames, or a reader who misses patients or calls patients not in ``patients``.
    """
    pts = _check_patients(patients)
    if not isinstance(readers, pd.DataFrame):
        raise TypeError("readers must be a pandas DataFrame (see read_readers / simulate_readers)")
    rd = _validate_readers(readers, "readers")
    truth = pts.set_index("patient_id")["response"]
    want = set(truth.index)
    rows = []
    for rid, sub in rd.groupby("reader_id", sort=False):
        got = set(sub["patient_id"])
        if got != want:
            miss, extra = sorted(want - got), sorted(got - want)
            parts = []
            if miss:
                parts.append(f"misses {len(miss)} patient(s), e.g. {miss[:3]}")
            if extra:
                parts.append(f"calls {len(extra)} patient(s) not in patients, e.g. {extra[:3]}")
            raise ValueError(f"reader {rid!r} " + " and ".join(parts))
        y = (truth.loc[sub["patient_id"]].to_numpy() == "poor").astype(int)
        pred = (sub["call"].to_numpy() == "poor").astype(float)
        bm = binary_metrics(y, pred, 0.5)
        row = {"reader_id": rid, "years_experience": int(sub["years_experience"].iloc[0]),
               "simulated": bool(sub["simulated"].iloc[0]), "n": len(sub),
               "tp": bm["tp"], "fp": bm["fp"], "tn": bm["tn"], "fn": bm["fn"]}
        row.update(rate_metrics(bm["tp"], bm["fp"], bm["tn"], bm["fn"], level))
        rows.append(row)
    return pd.DataFrame(rows)


def rate_metrics(tp: int, fp: int, tn: int, fn: int, level: float = 0.95) -> dict[str, float]:
    """ACC/SEN/SPE with Wilson intervals from confusion counts (NaN when a denominator is 0).

    Parameters
    ----------
    tp, fp, tn, fn : int
        Confusion counts, poor response = positive.
    level : float, default 0.95
        Level of the Wilson intervals.

    Returns
    -------
    dict of str to float
        ``acc, acc_lo, acc_hi, sen, sen_lo, sen_hi, spe, spe_lo, spe_hi`` (proportions).
    """
    out: dict[str, float] = {}
    for name, k, n in (("acc", tp + tn, tp + fp + tn + fn), ("sen", tp, tp + fn), ("spe", tn, tn + fp)):
        if n == 0:
            out[name] = out[f"{name}_lo"] = out[f"{name}_hi"] = float("nan")
        else:
            out[name] = k / n
            out[f"{name}_lo"], out[f"{name}_hi"] = wilson_ci(k, n, level)
    return out
