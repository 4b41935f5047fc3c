"""Patient-level splits: validation carved from training patients, stratified k-fold, sites held out for external
validation, leakage guard."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from pdstudy.core.hashing import derive_seed, stable_hash
from pdstudy.core.vocab import EXTERNAL_SPLIT, SITE_COLUMN


def carve_validation(
    patients: pd.DataFrame,
    fraction: float,
    *,
    seed: int,
    groups: Mapping[str, str] | None = None,
) -> pd.DataFrame:
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
    groups : mapping, optional
        ``patient_id -> group key`` where equal keys mean the same person (:func:`same_person_groups`);
        a group's training patients move to ``val`` together or not at all (groups are drawn in a random
        order and skipped when they would overshoot the share). Patients not in the map are groups of
        their own. Without a group of two or more training patients the draw is exactly the one without
        ``groups``.

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
    train = out[out["split"] == "train"]
    units = _units(train, groups)
    if all(len(members) == 1 for members in units.values()):
        for _, grp in train.groupby("response"):
            n_val = max(1, int(round(fraction * len(grp))))
            if n_val >= len(grp):
                raise ValueError(f"val_fraction {fraction} leaves no training patients with response "
                                 f"{grp['response'].iloc[0]!r} ({len(grp)} patients)")
            ids = np.sort(grp["patient_id"].to_numpy())
            chosen = set(rng.choice(ids, size=n_val, replace=False))
            out.loc[out["patient_id"].isin(chosen), "split"] = "val"
        return out
    response_of = dict(zip(train["patient_id"].astype(str), train["response"]))
    stratum = _unit_strata(units, response_of)
    chosen: set[str] = set()
    for response, grp in train.groupby("response"):
        n_val = max(1, int(round(fraction * len(grp))))
        if n_val >= len(grp):
            raise ValueError(f"val_fraction {fraction} leaves no training patients with response "
                             f"{response!r} ({len(grp)} patients)")
        reps = sorted(u for u in units if stratum[u] == response)
        order = [reps[i] for i in rng.permutation(len(reps))]
        moved = 0
        for rep in order:  # drawn order; a group that would overshoot n_val is skipped
            if moved + len(units[rep]) <= n_val:
                chosen.update(units[rep])
                moved += len(units[rep])
            if moved == n_val:
                break
        if moved == 0 and order:  # every group is larger than n_val: the first one drawn
            chosen.update(units[order[0]])
    for response, grp in train.groupby("response"):
        if grp["patient_id"].astype(str).isin(chosen).all():
            raise ValueError(f"val_fraction {fraction} leaves no training patients with response {response!r}: "
                             "a same-person group holds them all")
    out.loc[out["patient_id"].astype(str).isin(chosen), "split"] = "val"
    return out


def stratified_folds(
    patients: pd.DataFrame,
    k: int,
    *,
    seed: int,
    repeat: int = 0,
    groups: Mapping[str, str] | None = None,
) -> list[pd.DataFrame]:
    """Repeated stratified patient-level k-fold: one DataFrame per fold with ``split`` train/test.

    Every patient is ``test`` in exactly one fold of a repeat; the ``repeat`` index changes the draw.

    Parameters
    ----------
    patients : DataFrame
        Included patients with ``patient_id`` and ``response``.
    k : int
        Number of folds (>= 2).
    seed : int
        Draw seed (the study's ``split_seed``).
    repeat : int, default 0
        Repeat index.
    groups : mapping, optional
        ``patient_id -> group key`` where equal keys mean the same person (:func:`same_person_groups`);
        a group always lands in one fold. Patients not in the map are groups of their own. Groups are
        dealt, largest first (in a random order within a size), to the fold holding the fewest patients
        of the group's response so far (ties: a random fold order), which keeps the folds stratified as
        far as the groups allow. Without a group of two or more patients the folds are exactly those
        without ``groups``.

    Returns
    -------
    list of DataFrame
        ``k`` copies of ``patients`` with ``split`` set to ``test`` (the fold) or ``train``.
    """
    if k < 2:
        raise ValueError(f"folds must be >= 2, got {k}")
    counts = patients["response"].value_counts()
    if (counts < k).any():
        raise ValueError(f"folds={k} exceeds the patients of a response group: {counts.to_dict()}")
    rng = np.random.default_rng(derive_seed(seed, "folds", repeat))
    units = _units(patients, groups)
    fold_of: dict[str, int] = {}
    if all(len(members) == 1 for members in units.values()):
        for _, grp in patients.groupby("response"):
            ids = rng.permutation(np.sort(grp["patient_id"].to_numpy()))
            for i, pid in enumerate(ids):
                fold_of[str(pid)] = i % k
    else:
        response_of = dict(zip(patients["patient_id"].astype(str), patients["response"]))
        stratum = _unit_strata(units, response_of)
        filled: dict[str, list[int]] = {str(r): [0] * k for r in counts.index}
        for response in sorted(counts.index):
            reps = sorted(u for u in units if stratum[u] == response)
            if len(reps) < k:
                raise ValueError(f"folds={k} exceeds the independent patients (same-person groups) with response "
                                 f"{response!r}: {len(reps)}")
            order = [reps[i] for i in rng.permutation(len(reps))]
            fold_order = rng.permutation(k)  # which fold wins a tie, drawn per response group
            for rep in sorted(order, key=lambda u: -len(units[u])):  # stable: the draw orders equal sizes
                target = int(fold_order[np.argmin([filled[str(response)][f] for f in fold_order])])
                for pid in units[rep]:
                    fold_of[pid] = target
                    filled[str(response_of[pid])][target] += 1
    folds = []
    for f in range(k):
        df = patients.copy()
        df["split"] = np.where(df["patient_id"].astype(str).map(fold_of) == f, "test", "train")
        folds.append(df)
    return folds


def external_splits(
    patients: pd.DataFrame,
    test_sites: Iterable[str] | str | None = None,
    *,
    val_fraction: float,
    seed: int,
    groups: Mapping[str, str] | None = None,
) -> list[tuple[pd.DataFrame, tuple[str, ...]]]:
    """Splits of external validation: train at some sites, test at the others (site-level hold-out).

    Patients of the held-out sites get split ``external`` whatever their manifest split; at the training
    sites the manifest's ``test`` patients stay ``test`` (the internal test set, never trained on) and a
    stratified share of the ``train`` patients is carved to ``val`` (:func:`carve_validation`, pooled over the
    training sites), on which thresholds and recalibration are fitted.

    Parameters
    ----------
    patients : DataFrame
        Included patients with ``patient_id``, ``split`` (train / val / test), ``response``, ``recist`` and
        ``site`` (the manifest's pseudonymous site code).
    test_sites : iterable of str, str or None
        Site codes to hold out together: one entry. None or empty: leave-one-site-out, one entry per site in
        sorted order.
    val_fraction : float
        Share of each response group's training patients carved to ``val`` (see :func:`carve_validation`).
    seed : int
        Draw seed of the carve (the study's ``split_seed``); each held-out set draws its own carve from it.
    groups : mapping, optional
        ``patient_id -> group key`` of same-person groups (:func:`same_person_groups`): a group stays on one
        side of the carve, and a group with patients at a held-out site and at a training site is leakage.

    Returns
    -------
    list of (DataFrame, tuple of str)
        Per held-out set: a copy of ``patients`` with ``split`` train / val / test / external, and the held-out
        site codes (sorted).

    Raises
    ------
    ValueError
        If ``patients`` has no ``site`` column, a patient has no site code, there are fewer than two sites,
        ``test_sites`` names an unknown site or every site, or the carve is impossible.
    LeakageError
        If a same-person group spans a held-out site and a training site, or the manifest puts one person
        in two splits of the training sites.
    """
    required = ["patient_id", "split", "response", SITE_COLUMN]
    missing = [c for c in required if c not in patients.columns]
    if missing:
        raise ValueError(f"patients lacks column(s) {missing}: external validation needs the manifest's "
                         f"'{SITE_COLUMN}' column (a pseudonymous site code per patient)")
    site_of = dict(zip(patients["patient_id"].astype(str), patients[SITE_COLUMN].fillna("").astype(str)))
    no_site = sorted(p for p, s in site_of.items() if not s)
    sites = sorted(set(site_of.values()) - {""})
    if not sites:
        raise ValueError(f"patients have no site code (column '{SITE_COLUMN}' is empty): a single-site cohort has "
                         "nothing to hold out for external validation")
    if no_site:
        raise ValueError(f"patient(s) {no_site[:5]} have no site code (column '{SITE_COLUMN}'); every patient needs "
                         "one for external validation")
    if len(sites) < 2:
        raise ValueError(f"external validation needs at least 2 sites, the cohort has 1 ({sites[0]!r})")
    if isinstance(test_sites, str):
        test_sites = [test_sites]
    given = [str(s) for s in (test_sites or [])]
    unknown = sorted(set(given) - set(sites))
    if unknown:
        raise ValueError(f"test_sites names unknown site(s) {unknown}; the cohort's sites are {sites}")
    held_sets = [tuple(sorted(set(given)))] if given else [(s,) for s in sites]
    if given and len(held_sets[0]) == len(sites):
        raise ValueError(f"test_sites holds out every site ({sites}): at least one site must remain to train on")
    out = []
    for held in held_sets:
        held_ids = {p for p, s in site_of.items() if s in held}
        if not (patients["split"].eq("train") & ~patients["patient_id"].astype(str).isin(held_ids)).any():
            raise ValueError(f"holding out site(s) {list(held)} leaves no training patient (split 'train') at the "
                             "other sites")
        _check_groups_within_side(held_ids, site_of, groups, held)
        df = patients.copy()
        external = df["patient_id"].astype(str).isin(held_ids)
        df.loc[external, "split"] = EXTERNAL_SPLIT
        df = carve_validation(df, val_fraction, seed=derive_seed(seed, "external", *held), groups=groups)
        leaked = df[external & (df["split"] != EXTERNAL_SPLIT)]
        if not leaked.empty:  # cannot happen: the carve moves training patients only
            raise AssertionError(f"held-out patient(s) {sorted(leaked['patient_id'].astype(str))[:5]} are "
                                 f"{sorted(set(leaked['split']))}")
        with warnings.catch_warnings():  # same-split pairs are not this function's to report
            warnings.simplefilter("ignore", DuplicatePatientWarning)
            check_no_leakage(df, same_patient=dict(groups or {}))
        out.append((df, held))
    return out


def _check_groups_within_side(held_ids: set[str], site_of: Mapping[str, str], groups: Mapping[str, str] | None,
                              held: tuple[str, ...]) -> None:
    """Raise LeakageError for a same-person group with patients both at the held-out and at a training site."""
    members: dict[str, list[str]] = {}
    for pid, key in (groups or {}).items():
        if str(pid) in site_of:
            members.setdefault(str(key), []).append(str(pid))
    for ids in members.values():
        sides = {pid in held_ids for pid in ids}
        if len(sides) > 1:
            where = ", ".join(f"{pid} (site {site_of[pid]})" for pid in sorted(ids))
            raise LeakageError(f"patients {where} look like one person (same-person keys) but lie on both sides of "
                               f"the held-out site(s) {list(held)}: the same person at a training and a test site")


def same_person_groups(
    same_patient: Mapping[str, str] | Mapping[str, Mapping[str, str]] | None,
) -> dict[str, str]:
    """Group key of every patient that shares a same-person key with another one.

    Parameters
    ----------
    same_patient : mapping or None
        ``patient_id -> key``, or several such maps by description as :func:`same_patient_keys`
        (and :meth:`pdstudy.data.cache.PreparedCohort.same_patient_keys`) returns them. Two IDs
        sharing a key of *any* map are the same person, and so is a chain of such pairs.

    Returns
    -------
    dict
        ``patient_id -> group key`` (the smallest patient ID of the group) for the patients of groups
        of two or more; pass it as ``groups`` to :func:`stratified_folds` and :func:`carve_validation`.
    """
    if not same_patient:
        return {}
    if not isinstance(same_patient, Mapping):
        raise TypeError(f"same_patient must be a mapping, got {type(same_patient).__name__}")
    maps = same_patient if all(isinstance(v, Mapping) for v in same_patient.values()) else {"": same_patient}
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for keys in maps.values():
        first_of: dict[str, str] = {}
        for pid, key in keys.items():  # type: ignore[union-attr]
            if not key:
                continue
            pid = str(pid)
            if key in first_of:
                a, b = find(first_of[key]), find(pid)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first_of[key] = pid
                find(pid)
    members: dict[str, list[str]] = {}
    for pid in parent:
        members.setdefault(find(pid), []).append(pid)
    return {pid: min(ids) for ids in members.values() if len(ids) > 1 for pid in ids}


def _units(patients: pd.DataFrame, groups: Mapping[str, str] | None) -> dict[str, list[str]]:
    """Same-person units of ``patients``: representative (smallest ID) -> sorted member IDs."""
    by_key: dict[tuple[str, str], list[str]] = {}
    for pid in patients["patient_id"].astype(str):
        key = ("group", str(groups[pid])) if groups and pid in groups else ("patient", pid)
        by_key.setdefault(key, []).append(pid)
    return {min(ids): sorted(set(ids)) for ids in by_key.values()}


def _unit_strata(units: Mapping[str, list[str]], response_of: Mapping[str, str]) -> dict[str, str]:
    """Response stratum of each unit: its members' most common response (ties: the first in sorted order)."""
    out = {}
    for rep, ids in units.items():
        values = pd.Series([response_of[p] for p in ids]).value_counts()
        out[rep] = str(sorted(values[values == values.max()].index)[0])
    return out


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
                          "the same person counted twice? (the CV folds and the validation carve keep them together)",
                          DuplicatePatientWarning, stacklevel=3)
