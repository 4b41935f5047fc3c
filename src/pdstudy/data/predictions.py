"""The prediction-file schema: one CSV per method, seed, fold and repeat (read, write, validate)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from pdstudy.core.io import write_csv
from pdstudy.core.methods import Method, method_from_id
from pdstudy.core.vocab import RECIST_CODES, RECIST_TO_RESPONSE, RESPONSES, SPLITS


def prediction_path(pred_dir: Path, method: Method, *, seed: int, fold: int = -1, repeat: int = 0) -> Path:
    """``predictions/<kind>__<chain>__seed<s>[__fold<f>__rep<r>].csv``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(method.chain))
    tail = f"__fold{fold}__rep{repeat}" if fold >= 0 else ""
    return pred_dir / f"{method.kind}__{slug}__seed{seed}{tail}.csv"


def write_predictions(pred_dir: Path, method: Method, predictions: pd.DataFrame, *, seed: int, fold: int = -1,
                      repeat: int = 0) -> Path:
    """Write a chain's predictions (all stages) into the run's ``predictions/``, atomically."""
    return write_csv(prediction_path(pred_dir, method, seed=seed, fold=fold, repeat=repeat), predictions)


def read_predictions(pred_dir: str | Path) -> pd.DataFrame:
    """Every prediction file of a run, concatenated (empty frame with the schema if none)."""
    files = sorted(Path(pred_dir).glob("*.csv"))
    if not files:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    df = pd.concat([pd.read_csv(f, dtype={"patient_id": str}, keep_default_na=False) for f in files],
                   ignore_index=True)
    missing = set(PREDICTION_COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"prediction files in {pred_dir} lack columns {sorted(missing)}")
    return df


def validate_predictions(preds: pd.DataFrame, *, name: str = "predictions") -> pd.DataFrame:
    """Check a prediction frame and return a clean copy with an integer label column ``y`` (1 = poor).

    Parameters
    ----------
    preds : pandas.DataFrame
        Concatenated prediction files (columns :data:`PREDICTION_COLUMNS`).
    name : str
        What to call the frame in messages.

    Returns
    -------
    pandas.DataFrame
        Copy with ``patient_id``/``method`` as str, ``stage``/``seed``/``fold``/``repeat`` as int,
        ``score`` as float, and ``y``.

    Raises
    ------
    ValueError
        On missing columns, unknown splits / responses / RECIST codes, a RECIST code that disagrees
        with the response, non-finite scores, non-integer stage/seed/fold/repeat, an unparsable method
        ID, a stage outside the method's chain, or a patient listed twice for one method, stage, seed,
        fold and repeat. Messages name the column and the method.
    """
    if not isinstance(preds, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame (see pdstudy.learn.distill.read_predictions)")
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; prediction files have {list(PREDICTION_COLUMNS)}")
    if preds.empty:
        raise ValueError(f"{name} is empty: no prediction rows")
    df = preds[list(PREDICTION_COLUMNS)].copy()
    df["patient_id"] = df["patient_id"].astype(str)
    df["method"] = df["method"].astype(str)

    def fail(mask: pd.Series, col: str, what: str) -> None:
        i = int(np.flatnonzero(mask.to_numpy())[0])
        raise ValueError(f"{name}: column {col!r} {what}; method {df['method'].iloc[i]!r}, patient "
                         f"{df['patient_id'].iloc[i]!r} has {preds[col].iloc[i]!r}")

    for col, allowed in (("split", SPLITS), ("response", RESPONSES), ("recist", RECIST_CODES)):
        bad = ~df[col].isin(allowed)
        if bad.any():
            fail(bad, col, f"must be one of {allowed}")
    bad = df["recist"].map(RECIST_TO_RESPONSE) != df["response"]
    if bad.any():
        fail(bad, "recist", "disagrees with column 'response' (CR/PR = good, SD/PD = poor)")
    score = pd.to_numeric(df["score"], errors="coerce")
    bad = ~np.isfinite(score.to_numpy(dtype=float))
    if bad.any():
        fail(pd.Series(bad, index=df.index), "score", "must be a finite number")
    df["score"] = score.astype(float)
    for col in ("stage", "seed", "fold", "repeat"):
        v = pd.to_numeric(df[col], errors="coerce")
        bad = v.isna() | (v != v.round())
        if bad.any():
            fail(bad, col, "must be an integer")
        df[col] = v.astype(int)
    for mid in df["method"].unique():
        try:
            m = method_from_id(mid)
        except ValueError as exc:
            raise ValueError(f"{name}: column 'method': {exc}") from None
        stages = df.loc[df["method"] == mid, "stage"]
        if stages.min() < 0 or stages.max() > m.final_stage:
            raise ValueError(f"{name}: column 'stage' of method {mid!r} must lie in 0..{m.final_stage} "
                             f"(its chain has {len(m.chain)} stage(s)); found {sorted(stages.unique())}")
    dup = df.duplicated(["method", "stage", "seed", "fold", "repeat", "patient_id"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        r = df.iloc[i]
        raise ValueError(f"{name}: patient {r['patient_id']!r} appears twice for method {r['method']!r}, stage "
                         f"{r['stage']}, seed {r['seed']}, fold {r['fold']}, repeat {r['repeat']}")
    df["y"] = (df["response"] == "poor").astype(int)
    return df


#: Columns of ``reports/<run>/predictions/*.csv`` (schema in data_manifest/README.md).
PREDICTION_COLUMNS: Final = ("patient_id", "split", "response", "recist", "score", "method", "stage", "seed",
                             "fold", "repeat")
