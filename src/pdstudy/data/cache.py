"""The slice cache reader: images, index and qc of a prepared cohort."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pdstudy.data.splits import SAME_PATIENT_KEYS, same_patient_keys, same_person_groups


@dataclass
class PreparedCohort:
    """A finished slice cache: images, per-slice index, qc table and metadata."""

    root: Path
    images: np.ndarray  # uint8 memmap (N, S, S)
    index: pd.DataFrame  # one row per cached slice: patient_id, slice, z_mm
    qc: pd.DataFrame
    meta: dict
    masks: np.ndarray | None = None

    @property
    def included(self) -> pd.DataFrame:
        return self.qc[self.qc["status"] == "included"]

    def exclusion_summary(self) -> pd.Series:
        """Number of excluded patients per reason."""
        exc = self.qc[self.qc["status"] == "excluded"]
        return exc["reason"].map(reason_category).value_counts().rename("patients")

    def same_patient_keys(self) -> dict[str, dict[str, str]]:
        """Same-person keys of the included patients, for :func:`pdstudy.data.splits.check_no_leakage`."""
        return same_patient_keys(self.qc)

    def shared_studies(self) -> list[list[str]]:
        """Groups of included patients whose series share a StudyInstanceUID (``study_key``), in manifest order.

        Two manifest IDs with one study are most likely one person (:func:`pdstudy.data.splits.same_person_groups`
        on the study keys alone; the leakage guard uses these keys and the pixel keys).
        """
        keys = same_patient_keys(self.qc).get(SAME_PATIENT_KEYS["study_key"], {})
        groups = same_person_groups(keys)
        order = {pid: i for i, pid in enumerate(self.qc["patient_id"].astype(str))}
        members: dict[str, list[str]] = {}
        for pid, group in groups.items():
            members.setdefault(group, []).append(pid)
        return sorted((sorted(ids, key=order.__getitem__) for ids in members.values()), key=lambda ids: order[ids[0]])

    def warnings_table(self, categories: Iterable[str] | None = None) -> pd.DataFrame:
        """Every warning of every patient, one row each, with its category (:func:`warning_category`).

        The ``qc.csv`` warnings, plus a ``shared StudyInstanceUID`` row for each patient of
        :meth:`shared_studies`. For notebook 01's summary and ``pdstudy prepare``.

        Parameters
        ----------
        categories : iterable of str, optional
            Keep only these categories (e.g. ``["series override: no contrast"]``); all when None.

        Returns
        -------
        DataFrame
            ``patient_id``, ``status``, ``category``, ``warning``; patients in manifest order, each patient's
            warnings in ``qc.csv`` order. Empty (with these columns) when there is no warning.
        """
        rows = []
        status = dict(zip(self.qc["patient_id"].astype(str), self.qc["status"]))
        shared = {pid: [other for other in ids if other != pid] for ids in self.shared_studies() for pid in ids}
        for pid, text in zip(self.qc["patient_id"].astype(str), self.qc["warnings"].astype(str)):
            for warning in split_warnings(text):
                rows.append((pid, status[pid], warning_category(warning), warning))
            if pid in shared:
                others = ", ".join(shared[pid])
                rows.append((pid, status[pid], SHARED_STUDY, f"shares its StudyInstanceUID with {others}"))
        table = pd.DataFrame(rows, columns=["patient_id", "status", "category", "warning"])
        if categories is not None:
            wanted = [categories] if isinstance(categories, str) else list(categories)
            table = table[table["category"].isin(wanted)].reset_index(drop=True)
        return table

    def warning_summary(self) -> pd.Series:
        """Number of patients with at least one warning of each category (:meth:`warnings_table`), most first."""
        table = self.warnings_table()
        counts = table.groupby("category")["patient_id"].nunique().sort_values(ascending=False, kind="stable")
        return counts.rename("patients").astype(int)

    def patient_slices(self, patient_id: str) -> np.ndarray:
        """Row numbers of one patient's slices in :attr:`images` (head to feet)."""
        rows = self.index.index[self.index["patient_id"] == patient_id]
        if len(rows) == 0:
            raise KeyError(f"patient {patient_id!r} has no slices in the cache (excluded or unknown)")
        return rows.to_numpy()


def load_prepared(cache_dir: str | Path) -> PreparedCohort:
    """Open a finished cache folder (images memory-mapped read-only)."""
    root = Path(cache_dir)
    meta = json.loads((root / "meta.json").read_text())
    images = np.load(root / "images.npy", mmap_mode="r")
    masks = np.load(root / "masks.npy", mmap_mode="r") if (root / "masks.npy").exists() else None
    index = pd.read_csv(root / "index.csv", dtype={"patient_id": str})
    qc = pd.read_csv(root / "qc.csv", dtype={"patient_id": str, **dict.fromkeys(KEY_COLUMNS, str)},
                     keep_default_na=False)
    return PreparedCohort(root=root, images=images, index=index, qc=qc, meta=meta, masks=masks)


#: ``study_key`` / ``pixel_key``: same-person keys of included patients (see :func:`same_patient_keys`);
#: ``slice_mm``: median spacing between the kept slices (empty: excluded, a single slice, or no slice positions).
QC_COLUMNS = ("patient_id", "status", "reason", "n_slices", "warnings", "pvp_rule", "pixel_spacing_mm", "slice_mm",
              "n_files", "study_key", "pixel_key")


KEY_COLUMNS = ("study_key", "pixel_key")


#: Category of the :meth:`PreparedCohort.warnings_table` rows of patients sharing a StudyInstanceUID.
SHARED_STUDY = "shared StudyInstanceUID"

#: Words of a ``qc.csv`` warning -> its category, tried in this order (:func:`warning_category`).
WARNING_CATEGORIES = (
    ("pvp_series_uid selects a series without contrast", "series override: no contrast"),
    ("pvp_series_uid selects a series of", "series override: fewer slices than top_k"),
    ("pvp_series_uid selects a series with BodyPartExamined", "series override: not the abdomen"),
    ("like a hospital record number", "patient_id like a record number"),
    ("no slice range in manifest", "no slice range in manifest"),
    ("uneven slice spacing", "uneven slice spacing"),
    ("duplicate slice position", "duplicate slice positions"),
    ("missing ImagePositionPatient", "slices ordered by InstanceNumber"),
    ("missing RescaleSlope/RescaleIntercept", "missing RescaleSlope/RescaleIntercept"),
    ("different pixel spacings", "mixed pixel spacings"),
    ("unreadable file", "unreadable files"),
    ("skipped", "skipped files"),
)


def warning_category(warning: str) -> str:
    """Short category of one ``qc.csv`` warning (:data:`WARNING_CATEGORIES`), else its first words."""
    for words, category in WARNING_CATEGORIES:
        if words in warning:
            return category
    return warning.split(" (")[0].split(":")[0][:60]


def split_warnings(text: str) -> list[str]:
    """The warnings of one ``qc.csv`` cell: split at ``"; "`` outside parentheses (a warning may hold one inside)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth <= 0 and text.startswith("; ", i):
            out.append(text[start:i])
            start = i + 2
    out.append(text[start:])
    return [w.strip() for w in out if w.strip()]


def reason_category(reason: str) -> str:
    """Short category of an exclusion reason, for the run summary."""
    if reason.startswith("excluded in manifest: "):
        return reason.removeprefix("excluded in manifest: ")
    for key in ("no portal-venous series", "DICOM folder not found", "DICOM folder is empty",
                "no CT images", "cannot decode pixel data", "no slices inside", "pvp_series_uid",
                "PixelSpacing missing", "unexpected error"):
        if key in reason:
            return key
    return reason.split(" (")[0][:60]
