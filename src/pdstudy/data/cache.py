"""The slice cache reader: images, index and qc of a prepared cohort."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pdstudy.data.splits import same_patient_keys


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


#: ``study_key`` / ``pixel_key``: same-person keys of included patients (see :func:`same_patient_keys`).
QC_COLUMNS = ("patient_id", "status", "reason", "n_slices", "warnings", "pvp_rule", "pixel_spacing_mm", "n_files",
              "study_key", "pixel_key")


KEY_COLUMNS = ("study_key", "pixel_key")


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
