"""Patient-level splits: validation carved from training patients, stratified k-fold, leakage guard."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pdstudy.core.hashing import derive_seed, stable_hash


def carve_validation(patients: pd.DataFrame, fraction: float, *, seed: int) -> pd.DataFrame:
    """Move a stratified share of the ``train`` patients to ``val`` (patient level).

    Parameters
    ----------
    patients : DataFrame
        Included patients with ``patient_id``, ``split``, ``response``.
    fraction : float
        Share of each response group's training patients moved to ``val``, in [0, 0.5];
        0 leaves the splits unchanged. At least one patient per group moves when > 0.
    seed : int
        Draw seed (combine with fold and repeat upstream).

    Returns
    -------
    DataFrame
        A copy with ``split`` updated.
    """
    if not 0.0 <= fraction <= 0.5:
        raise ValueError(f"val_fraction must be in [0, 0.5], got {fraction}")
    out = patients.copy()
    if fraction == 0:
        return out
    rng = np.random.default_rng(derive_seed(seed, "carve-val"))
    for _, grp in out[out["split"] == "train"].groupby("response"):
        n_val = max(1, int(round(fraction * len(grp))))
        if n_val >= len(grp):
            raise ValueError(f"val_fraction {fraction} leaves no training patients with response "
                             f"{grp['response'].iloc[0]!r} ({len(grp)} patients)")
        ids = np.sort(grp["patient_id"].to_numpy())
        chosen = set(rng.choice(ids, size=n_val, replace=False))
        out.loc[out["patient_id"].isin(chosen), "split"] = "val"
    return out


def stratified_folds(patients: pd.DataFrame, k: int, *, seed: int, repeat: int = 0) -> list[pd.DataFrame]:
    """Repeated stratified patient-level k-fold: one DataFrame per fold with ``split`` train/test.

    Every patient is ``test`` in exactly one fold of a repeat; the ``repeat`` index changes the draw.
    """
    if k < 2:
        raise ValueError(f"folds must be >= 2, got {k}")
    counts = patients["response"].value_counts()
    if (counts < k).any():
        raise ValueError(f"folds={k} exceeds the patients of a response group: {counts.to_dict()}")
    rng = np.random.default_rng(derive_seed(seed, "folds", repeat))
    fold_of: dict[str, int] = {}
    for _, grp in patients.groupby("response"):
        ids = rng.permutation(np.sort(grp["patient_id"].to_numpy()))
        for i, pid in enumerate(ids):
            fold_of[str(pid)] = i % k
    folds = []
    for f in range(k):
        df = patients.copy()
        df["split"] = np.where(df["patient_id"].map(fold_of) == f, "test", "train")
        folds.append(df)
    return folds


def ids_hash(patient_ids) -> str:
    """Hash of a sorted set of patient IDs (part of every stage-cache key)."""
    return stable_hash(sorted(str(p) for p in patient_ids))


class LeakageError(ValueError):
    """The same patient appears in two splits."""


class DuplicatePatientWarning(UserWarning):
    """Two patient IDs in the same split look like the same person (not leakage, but not independent)."""


#: qc.csv key column -> what equal keys mean, for messages.
SAME_PATIENT_KEYS = {"study_key": "the same StudyInstanceUID", "pixel_key": "identical pixel data"}


def same_patient_keys(qc: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Same-person key maps from a prepared cohort's ``qc.csv``.

    Parameters
    ----------
    qc : DataFrame
        ``patient_id`` and the key columns of :data:`SAME_PATIENT_KEYS` (written by
        :func:`pdstudy.data.preprocess.prepare`: the first 16 hex digits of the SHA-256 of the
        portal-venous series' StudyInstanceUID, and of the decoded pixels of its middle kept
        slice; empty for excluded patients).

    Returns
    -------
    dict
        ``{description: {patient_id: key}}``, one map per key kind, empty keys left out; two IDs
        sharing a key of *either* kind are the same person. Pass it to :func:`check_no_leakage`.
    """
    out: dict[str, dict[str, str]] = {}
    for column, meaning in SAME_PATIENT_KEYS.items():
        if column not in qc.columns:
            continue
        keys = qc[["patient_id", column]].astype(str)
        out[meaning] = {p: k for p, k in zip(keys["patient_id"], keys[column]) if k and k != "nan"}
    return out


def check_no_leakage(
    patients: pd.DataFrame,
    *,
    same_patient: Mapping[str, str] | Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Raise :class:`LeakageError` if a patient (by ID or by a shared same-person key) is in two splits.

    Two IDs sharing a key within one split are not leakage but are not independent patients
    either: that gives a :class:`DuplicatePatientWarning`.

    Parameters
    ----------
    patients : DataFrame
        ``patient_id`` and ``split``.
    same_patient : dict, optional
        ``patient_id -> key`` where equal keys mean the same person (e.g. a StudyInstanceUID or a
        pixel-data hash), or several such maps by description (``{"identical pixel data": {...}}``,
        as :func:`same_patient_keys` returns); two IDs sharing a key of any map in different splits
        is leakage.
    """
    dup = patients[patients.duplicated("patient_id", keep=False)]
    for pid, grp in dup.groupby("patient_id"):
        splits = sorted(set(grp["split"]))
        if len(splits) > 1:
            raise LeakageError(f"patient {pid!r} is in several splits: {splits}")
    if not same_patient:
        return
    maps = same_patient if all(isinstance(v, Mapping) for v in same_patient.values()) \
        else {"a shared study or identical images": same_patient}
    split_of = dict(zip(patients["patient_id"].astype(str), patients["split"]))
    for meaning, keys in maps.items():
        _check_key_map(split_of, keys, meaning)  # type: ignore[arg-type]


def _check_key_map(split_of: dict[str, str], keys: Mapping[str, str], meaning: str) -> None:
    by_key: dict[str, list[str]] = {}
    for pid, key in keys.items():
        if pid in split_of and key:
            by_key.setdefault(key, []).append(pid)
    for ids in by_key.values():
        splits = {split_of[p] for p in ids}
        if len(splits) > 1:
            raise LeakageError(f"patients {sorted(ids)} share {meaning} but are in "
                               f"different splits ({sorted(splits)}): the same person under two IDs?")
        if len(ids) > 1:
            warnings.warn(f"patients {sorted(ids)} share {meaning} within split {next(iter(splits))!r}: "
                          "the same person counted twice? (cross-validation can put them in different folds)",
                          DuplicatePatientWarning, stacklevel=3)
