import sys
from pathlib import Path

# Test helpers (tests/dicom_factory.py) are imported as top-level modules.
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pdstudy.core.paths import repo_root  # noqa: E402

#: The checkout these tests belong to, found upward from this file at any depth.
REPO = repo_root(Path(__file__))


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """A prepared cohort of 24 hand-built patients (6 slices, 32 px); poor responders carry a bright blob."""
    from dicom_factory import write_series

    from pdstudy.data.preprocess import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("tiny_cohort")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        poor = i % 2 == 1
        split = "test" if i >= 16 else "train"
        vol = (1024 + rng.normal(40, 30, size=(6, 32, 32))).clip(0).astype(np.uint16)
        if poor:
            r, c = rng.integers(8, 24, size=2)
            vol[:, r - 4 : r + 4, c - 4 : c + 4] += 200
        write_series(root / f"p{i:02d}", vol, spacing=(2.0, 2.0), description="PVP")
        rows.append(
            dict(
                patient_id=f"T{i:02d}",
                split=split,
                response="poor" if poor else "good",
                recist="PD" if poor else "CR",
                dicom_dir=f"p{i:02d}",
            )
        )
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    prepared = prepare(
        root / "manifest.csv",
        root / "cache",
        config=PrepareConfig(image_size=32, fov_mm=64.0),
        workers=1,
        show_progress=False,
    )
    patients = pd.DataFrame(rows)
    return prepared, patients


@pytest.fixture(scope="session")
def tiny_synthetic_manifest(tmp_path_factory):
    """Manifest of a tiny synthetic DICOM cohort (24 screened, 12 slices, 64 px), generated once per session."""
    from pdstudy.data.synth import ensure_cohort

    return ensure_cohort(tmp_path_factory.mktemp("tiny_synth") / "cohort", patients=24, seed=0, slices=12, size=64,
                         show_progress=False)
