"""Study parameters and the quick/paper profiles that set them."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

PROFILES = ("quick", "paper")


#: Parameters holding file or folder paths (made absolute before injection).
PATH_PARAMETERS = ("run_dir", "data_dir", "manifest", "readers_csv", "weights_dir")


def load_profile(name: str) -> dict[str, Any]:
    """Parameters of a profile (``quick`` or ``paper``), as notebook parameter names."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {list(PROFILES)}")

    text = resources.files("pdstudy.core").joinpath("profiles", f"{name}.yaml").read_text()
    return yaml.safe_load(text)


#: Notebook parameters a Study reads (all are keys of the profiles).
STUDY_PARAMETERS = (
    "run_dir", "data_dir", "manifest", "image_size", "fov_mm", "workers", "synth_patients", "synth_seed",
    "synth_slices", "synth_size", "seeds", "protocol", "cv_folds", "cv_repeats", "val_fraction", "split_seed",
    "pretrained", "weights_dir", "stand_ins", "epochs", "batch_size", "optimizer", "lr", "weight_decay",
    "warmup_epochs", "schedule", "beta", "alpha", "temperature", "kd_convention", "drop_rate", "drop_path_rate",
    "slices_per_patient", "crop_size", "top_k", "select",
)
