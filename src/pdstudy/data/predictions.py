"""The prediction-file schema: one CSV per method, seed, fold and repeat (read, write, validate)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final, NoReturn, Protocol

import numpy as np
import pandas as pd

from pdstudy.core.io import write_csv
from pdstudy.core.methods import Method, method_from_id
from pdstudy.core.vocab import PREDICTION_SPLITS, RECIST_CODES, RECIST_TO_RESPONSE, RESPONSES


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
    """Every prediction file of a run, concatenated (empty frame with the schema if none).

    Parameters
    ----------
    pred_dir : str or pathlib.Path
        A run's ``predictions/`` folder.

    Returns
    -------
    pandas.DataFrame
        The files' rows (``patient_id`` as str, no NA conversion) with ``n_slices`` as nullable
        ``Int64``: <NA> for the rows of files written before the column existed.

    Raises
    ------
    ValueError
        If a file lacks a required column of :data:`PREDICTION_COLUMNS`, or an ``n_slices`` cell is
        neither empty nor an integer >= 1.
    """
    files = sorted(Path(pred_dir).glob("*.csv"))
    if not files:
        return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
    df = pd.concat([pd.read_csv(f, dtype={"patient_id": str}, keep_default_na=False) for f in files],
                   ignore_index=True)
    missing = set(PREDICTION_COLUMNS) - set(df.columns) - set(OPTIONAL_PREDICTION_COLUMNS)
    if missing:
        raise ValueError(f"prediction files in {pred_dir} lack columns {sorted(missing)}")
    df["n_slices"] = _n_slices(df, f"prediction files in {pred_dir}")
    return df


def _n_slices(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``n_slices`` of ``df`` as nullable integers (<NA> where absent: files written before it existed).

    Raises ValueError naming ``name`` and the first bad value when a cell is neither empty nor an integer >= 1.
    """
    if "n_slices" not in df.columns:
        return pd.Series(pd.NA, index=df.index, dtype="Int64")
    raw = df["n_slices"]
    blank = raw.isna() | raw.astype(str).str.strip().eq("")
    values = pd.to_numeric(raw.where(~blank), errors="coerce").astype("float64")
    bad = ~blank & (values.isna() | (values != values.round()) | (values < 1))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        who = f"patient {df['patient_id'].iloc[i]!r}" if "patient_id" in df.columns else f"row {i}"
        raise ValueError(f"{name}: column 'n_slices' must be an integer >= 1 (number of cached slices) or empty; "
                         f"{who} has {raw.tolist()[i]!r}")
    return values.astype("Int64")


def validate_predictions(preds: pd.DataFrame, *, name: str = "predictions") -> pd.DataFrame:
    """Check a prediction frame and return a clean copy with an integer label column ``y`` (1 = poor).

    Parameters
    ----------
    preds : pandas.DataFrame
        Concatenated prediction files (columns :data:`PREDICTION_COLUMNS`; ``n_slices``, see
        :data:`OPTIONAL_PREDICTION_COLUMNS`, may be absent or empty: files written before it existed).
    name : str
        What to call the frame in messages.

    Returns
    -------
    pandas.DataFrame
        Copy with ``patient_id``/``method`` as str, ``stage``/``seed``/``fold``/``repeat`` as int,
        ``score`` as float, ``n_slices`` as nullable ``Int64`` (<NA> where unknown), and ``y``.

    Raises
    ------
    ValueError
        On missing columns, unknown splits (:data:`pdstudy.core.vocab.PREDICTION_SPLITS`: train, val, test and
        ``external``, a held-out site's patient) / responses / RECIST codes, a RECIST code that disagrees
        with the response, non-finite scores, non-integer stage/seed/fold/repeat, an unparsable method
        ID, a stage outside the method's chain, or a patient listed twice for one method, stage, seed,
        fold and repeat, or an ``n_slices`` that is neither empty nor an integer >= 1. Messages name the
        column and the method.
    """
    if not isinstance(preds, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame (see pdstudy.data.predictions.read_predictions)")
    missing = [c for c in PREDICTION_COLUMNS if c not in preds.columns and c not in OPTIONAL_PREDICTION_COLUMNS]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; prediction files have {list(PREDICTION_COLUMNS)}")
    if preds.empty:
        raise ValueError(f"{name} is empty: no prediction rows")
    df = preds[[c for c in PREDICTION_COLUMNS if c in preds.columns]].copy()
    df["n_slices"] = _n_slices(preds, name)
    df["patient_id"] = df["patient_id"].astype(str)
    df["method"] = df["method"].astype(str)

    def fail(mask: pd.Series, col: str, what: str) -> None:
        i = int(np.flatnonzero(mask.to_numpy())[0])
        raise ValueError(f"{name}: column {col!r} {what}; method {df['method'].iloc[i]!r}, patient "
                         f"{df['patient_id'].iloc[i]!r} has {preds[col].iloc[i]!r}")

    for col, allowed in (("split", PREDICTION_SPLITS), ("response", RESPONSES), ("recist", RECIST_CODES)):
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


#: Columns of ``reports/<run>/predictions/*.csv`` (schema in data_manifest/README.md). ``split``: one of
#: :data:`pdstudy.core.vocab.PREDICTION_SPLITS` (``external``: a held-out site's patient, in
#: ``predictions/external/``). ``n_slices``: the patient's number of slices in the slice cache (``score``
#: averages the top ``min(top_k, n_slices)`` of them).
PREDICTION_COLUMNS: Final = ("patient_id", "split", "response", "recist", "score", "method", "stage", "seed",
                             "fold", "repeat", "n_slices")

#: Columns of :data:`PREDICTION_COLUMNS` that files written by older versions lack; readers fill them with <NA>.
OPTIONAL_PREDICTION_COLUMNS: Final = ("n_slices",)


class ChainOutput(Protocol):
    """What :func:`check_prediction_files` reads of a chain run (e.g. ``pdstudy.learn.distill.ChainResult``)."""

    method: Method
    predictions: pd.DataFrame


def check_prediction_file(path: str | Path, method: Method, *, n_patients: int) -> pd.DataFrame:
    """Read one written prediction file and check it against the method that wrote it.

    Parameters
    ----------
    path : str or pathlib.Path
        A file of ``<run>/predictions/`` (see :func:`prediction_path`).
    method : pdstudy.core.methods.Method
        The method whose chain the file holds.
    n_patients : int
        Number of included patients; every stage scores each of them exactly once.

    Returns
    -------
    pandas.DataFrame
        The file as read (``patient_id`` as str, no NA conversion).

    Raises
    ------
    ValueError
        If the file is missing, its columns are not :data:`PREDICTION_COLUMNS` in order, a score lies
        outside [0, 1] (or is not a number), an ``n_slices`` is not an integer >= 1, the method column is
        not ``method.id``, the stages are not ``0 .. len(method.chain) - 1``, a stage does not hold one row
        per included patient, or a split or response is not in the vocabulary. The message names the file
        and what was wrong. (The file was just written by this code, so ``n_slices`` is required here;
        :func:`read_predictions` and :func:`validate_predictions` also read older files without it.)
    """
    path = Path(path)

    def fail(what: str) -> NoReturn:
        raise ValueError(f"prediction file {path}: {what}")

    if not path.is_file():
        fail("missing (was the method run and its predictions written?)")
    written = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False)
    if list(written.columns) != list(PREDICTION_COLUMNS):
        fail(f"columns are {list(written.columns)}, expected {list(PREDICTION_COLUMNS)}")
    score = pd.to_numeric(written["score"], errors="coerce")
    bad = ~score.between(0, 1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        fail(f"score must lie in [0, 1]; patient {written['patient_id'].tolist()[i]!r} has "
             f"{written['score'].tolist()[i]!r}")
    n_slices = pd.to_numeric(written["n_slices"], errors="coerce")
    bad = n_slices.isna() | (n_slices != n_slices.round()) | (n_slices < 1)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        fail(f"column 'n_slices' must be an integer >= 1 (the patient's cached slices); patient "
             f"{written['patient_id'].tolist()[i]!r} has {written['n_slices'].tolist()[i]!r}")
    methods = sorted(set(written["method"].astype(str)))
    if methods != [method.id]:
        fail(f"column 'method' holds {methods}, expected [{method.id!r}]")
    stages = sorted(set(written["stage"].tolist()))
    if stages != list(range(len(method.chain))):
        fail(f"stages are {stages}, expected 0..{method.final_stage} for the {len(method.chain)}-stage chain "
             f"{'>'.join(method.chain)}")
    counts = written.groupby("stage").size()
    if not counts.eq(n_patients).all():
        stage = counts.index[~counts.eq(n_patients)][0]
        fail(f"stage {stage} has {counts[stage]} rows; every stage scores every included patient once "
             f"({n_patients})")
    dup = written.duplicated(["stage", "patient_id"])
    if dup.any():
        r = written[dup].iloc[0]
        fail(f"patient {r['patient_id']!r} is scored twice in stage {r['stage']}")
    for col, allowed in (("split", PREDICTION_SPLITS), ("response", RESPONSES)):
        unknown = sorted(set(written[col].astype(str)) - set(allowed))
        if unknown:
            fail(f"column {col!r} holds {unknown}, allowed are {list(allowed)}")
    return written


def check_prediction_files(pred_dir: str | Path, results: Iterable[ChainOutput], *, n_patients: int) -> list[Path]:
    """Check the prediction file written for every chain run (notebooks 02-05).

    Parameters
    ----------
    pred_dir : str or pathlib.Path
        The run's ``predictions/`` folder.
    results : iterable of ChainOutput
        Chain runs (``pdstudy.learn.distill.ChainResult``); seed, fold and repeat of each are read
        from the first row of its predictions, the file name from :func:`prediction_path`.
    n_patients : int
        Number of included patients (every stage scores each once).

    Returns
    -------
    list of pathlib.Path
        The files checked, in the order of ``results``.

    Raises
    ------
    ValueError
        If there is no result to check or a file fails :func:`check_prediction_file`.
    """
    paths = []
    for r in results:
        first = r.predictions.iloc[0]
        path = prediction_path(Path(pred_dir), r.method, seed=int(first["seed"]), fold=int(first["fold"]),
                               repeat=int(first["repeat"]))
        check_prediction_file(path, r.method, n_patients=n_patients)
        paths.append(path)
    if not paths:
        raise ValueError(f"no chain results given: nothing to check in {pred_dir}")
    return paths
