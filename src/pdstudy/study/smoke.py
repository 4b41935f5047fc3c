"""`make paper-smoke`: the paper profile end to end, with only the amount of work shrunk.

Real architectures at 224 px crops, ImageNet-style weights loaded from a local ``weights_dir`` and every
notebook executed for real, on a small synthetic cohort with one epoch, few slices per patient, one seed,
the B0 chains and the two models beyond the 2D CNNs (the CNN + Transformer hybrid, the 3D ResNet-50).
No weights can be downloaded here, so the smoke writes them itself first: randomly initialised models
saved in the layout a user's downloaded files have (timm's ImageNet checkpoints as ``<timm tag>.safetensors``,
MedicalNet's ``resnet50_3d.pth`` with its ``state_dict`` wrapper and ``module.`` prefixes).

Run ``python -m pdstudy.study.smoke --out DIR --data-dir DIR`` (what ``make paper-smoke`` does).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pdstudy.core.io import write_json
from pdstudy.core.rundir import RunDir

__all__ = ["PAPER_SMOKE_OVERRIDES", "SMOKE_ARCHITECTURES", "paper_smoke", "write_local_weights"]

_B0: Final = "efficientnet_b0"

#: The 2D CNN chains and the two other models the smoke trains.
SMOKE_ARCHITECTURES: Final = (_B0, "efficientnet_b7_transformer", "resnet50_3d")

#: Overrides of the paper profile: less work, the same code paths (architectures, crops, weights, notebooks).
PAPER_SMOKE_OVERRIDES: Final[dict[str, Any]] = {
    "synth_patients": 40,
    "seeds": [0],
    "epochs": 1,
    "slices_per_patient": 2,
    "batch_size": 8,
    "baselines": list(SMOKE_ARCHITECTURES),
    "kd_chains": [f"{_B0}>{_B0}"],
    "pd_chains": [f"{_B0}>{_B0}>{_B0}"],
    "curve_architectures": [_B0],
    "curve_iterations": 2,
    "cam_localise": _B0,
    "fusion_pd_chain": f"{_B0}>{_B0}>{_B0}",
    "external_baseline": _B0,
    "external_pd_chain": f"{_B0}>{_B0}>{_B0}",
    "test_sites": ["B"],
    "pretrained": True,
}


def write_local_weights(weights_dir: str | Path, architectures: Sequence[str] = SMOKE_ARCHITECTURES) -> list[Path]:
    """Write a stand-in for each architecture's downloadable weights file into ``weights_dir``.

    The files have the names and layouts :func:`pdstudy.learn.models.local_weights_file` looks for, with
    random values: a hybrid's file is its CNN's ImageNet checkpoint (1000 classes), the 3D ResNet-50's
    is MedicalNet's layout. Existing files are kept.

    Parameters
    ----------
    weights_dir : str or pathlib.Path
        Folder to write into (created).
    architectures : sequence of str
        Study architecture names (paper profile).

    Returns
    -------
    list of pathlib.Path
        One file per distinct weights name, in order.
    """
    import timm  # lazy: torch only when weights are written
    import torch
    from safetensors.torch import save_file

    from pdstudy.learn.models import get_architecture

    folder = Path(weights_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in architectures:
        arch = get_architecture(name)
        if arch.kind == "volume":
            path = folder / f"{arch.weights_stem}.pth"
            if not path.is_file():
                from pdstudy.learn.models import build_model

                model = build_model(name, pretrained=False)
                state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("fc.")}
                torch.save({"state_dict": state}, path)
        else:
            path = folder / f"{arch.weights_stem}.safetensors"
            if not path.is_file():
                model = timm.create_model(arch.timm_tag.split(".")[0], pretrained=False)
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        if path not in written:
            written.append(path)
    return written


def paper_smoke(out: str | Path, data_dir: str | Path, *, weights_dir: str | Path | None = None,
                progress: bool = True) -> RunDir:
    """Write the local weights, then run notebooks 00-10 with the paper profile and :data:`PAPER_SMOKE_OVERRIDES`.

    Parameters
    ----------
    out : str or pathlib.Path
        Run directory.
    data_dir : str or pathlib.Path
        Synthetic cohort, slice cache and stage cache (kept apart from the quick profile's ``data/``).
    weights_dir : str or pathlib.Path, optional
        Where the weights files are written and loaded from (default ``<data_dir>/weights``).
    progress : bool
        papermill's progress bars.

    Returns
    -------
    RunDir
        The run; its ``provenance.json`` records the smoke's overrides and time (section ``paper_smoke``).
    """
    from pdstudy.core.rundir import update_provenance
    from pdstudy.study.notebooks import run_notebooks

    t0 = time.perf_counter()
    weights = Path(weights_dir) if weights_dir else Path(data_dir) / "weights"
    files = write_local_weights(weights)
    overrides = {**PAPER_SMOKE_OVERRIDES, "weights_dir": str(weights.resolve())}
    run = run_notebooks(profile="paper", out=out, data_dir=data_dir, overrides=overrides, progress=progress)
    seconds = round(time.perf_counter() - t0, 1)
    update_provenance(run, "paper_smoke", {"overrides": {k: v for k, v in overrides.items() if k != "weights_dir"},
                                           "weights_files": [p.name for p in files], "seconds": seconds})
    write_json(run.root / "paper_smoke.json", {"seconds": seconds, "weights_files": [p.name for p in files]})
    return run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pdstudy.study.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--data-dir", type=Path, required=True, help="cohort, caches and weights")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    run = paper_smoke(args.out, args.data_dir, progress=not args.quiet)
    print(f"paper smoke finished: {run.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
