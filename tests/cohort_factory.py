"""In-memory prepared cohorts for study tests: a manifest, its qc and slice index, no DICOM and no pixels."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pdstudy.data.cache import PreparedCohort
from pdstudy.data.cohort import Cohort


def memory_cohort(root: Path, manifest: pd.DataFrame, *, slices: Mapping[str, int] | None = None,
                  shared: Mapping[str, str] | None = None, z_step: float = 5.0,
                  meta: Mapping[str, Any] | None = None) -> Cohort:
    """Every manifest patient included with 12 cached slices (``slices`` overrides some) of 4x4 zero pixels.

    ``shared`` gives some patients the study_key of another (``{patient: other}``: one person under two IDs);
    ``z_step`` is the z spacing of the slice index; ``meta`` adds to the cache's meta (manifest_sha256 is zeros).
    """
    ids = manifest["patient_id"].tolist()
    counts = {pid: (slices or {}).get(pid, 12) for pid in ids}
    study_key = {pid: f"study-{pid}" for pid in ids}
    for pid, other in (shared or {}).items():
        study_key[pid] = study_key[other]
    qc = pd.DataFrame({"patient_id": ids, "status": "included", "reason": "", "n_slices": [counts[p] for p in ids],
                       "study_key": [study_key[p] for p in ids], "pixel_key": [f"px-{p}" for p in ids]})
    index = pd.DataFrame({"patient_id": [p for p in ids for _ in range(counts[p])],
                          "slice": [s for p in ids for s in range(counts[p])]})
    index["z_mm"] = index["slice"] * z_step
    prepared = PreparedCohort(root=root / "cache", images=np.zeros((len(index), 4, 4), np.uint8), index=index,
                              qc=qc, meta={"manifest_sha256": "0" * 64, **(meta or {})})
    return Cohort(manifest_path=root / "manifest.csv", manifest=manifest, prepared=prepared, synthetic=True)
