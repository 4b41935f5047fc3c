"""One training job: ``pdstudy train --config FILE``, and each job of ``pdstudy sweep``.

A job trains one method for one seed, fold and repeat through the notebooks' engine (the stage cache,
the prediction files), as one process or under ``torchrun``. The config file and what a job writes:
docs/cluster.md, "One job".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.distributed as dist
import yaml

from pdstudy.core.methods import Method, method_from_id
from pdstudy.core.params import PATH_PARAMETERS, STUDY_PARAMETERS, load_profile
from pdstudy.core.rundir import update_provenance
from pdstudy.data.predictions import write_predictions
from pdstudy.learn import distributed
from pdstudy.learn.distill import parse_chain, run_method
from pdstudy.study.protocol import MODEL_PARAMETERS, Study, study_configs

#: Keys of a train config besides the study parameters.
JOB_KEYS = ("profile", "method", "seed", "fold", "repeat", "device")
#: Study parameters a job takes: :data:`STUDY_PARAMETERS` and the optional :data:`MODEL_PARAMETERS`.
_PARAMETERS = tuple(dict.fromkeys((*STUDY_PARAMETERS, *MODEL_PARAMETERS)))
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class JobSpec:
    """One training job: complete study parameters, one method, and its seed, fold and repeat."""

    parameters: dict[str, Any] = field(hash=False)
    method: str
    seed: int
    fold: int = -1
    repeat: int = 0
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobSpec:
        return cls(**dict(d))

    @property
    def method_obj(self) -> Method:
        return method_from_id(self.method)


def base_parameters(profile: str) -> dict[str, Any]:
    """A profile's study parameters (``run_dir`` and ``data_dir`` are left to the config)."""
    prof = load_profile(profile)
    params = {k: prof[k] for k in _PARAMETERS if k in prof}
    params.setdefault("manifest", "")
    return params


def resolve_paths(params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Path parameters (:data:`pdstudy.core.params.PATH_PARAMETERS`) relative to ``base`` made absolute.

    Parameters
    ----------
    params : dict
        Study parameters; only path parameters that are non-empty relative strings change.
    base : pathlib.Path
        Folder they are relative to (the config or grid file's folder).

    Returns
    -------
    dict
        A copy of ``params``; empty strings stay empty, absent keys stay absent.
    """
    out = dict(params)
    for key in PATH_PARAMETERS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[key] = str((base / value).resolve())
    return out


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def check_job(spec: JobSpec) -> None:
    """Validate a job without touching data: parameters, method, fold and repeat, device."""
    p, _, settings = study_configs(spec.parameters)
    method = spec.method_obj
    parse_chain(method.chain)  # unknown architectures list the valid ones
    for arch in method.chain:
        settings.built_arch(arch)  # quick stand-ins exist
    if spec.device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {spec.device!r}")
    if p["protocol"] == "fixed" and spec.fold != -1:
        raise ValueError(f"fold must be -1 with protocol 'fixed', got {spec.fold}")
    if p["protocol"] == "cv":
        if not 0 <= spec.fold < int(p["cv_folds"]):
            raise ValueError(f"fold must be in 0..{int(p['cv_folds']) - 1} with cv_folds={p['cv_folds']}, "
                             f"got {spec.fold}")
        if not 0 <= spec.repeat < int(p["cv_repeats"]):
            raise ValueError(f"repeat must be in 0..{int(p['cv_repeats']) - 1} with cv_repeats={p['cv_repeats']}, "
                             f"got {spec.repeat}")


def load_train_config(path: str | Path) -> JobSpec:
    """Read and validate a ``pdstudy train`` config (format: docs/cluster.md, "One job")."""
    path = Path(path)
    raw = read_yaml_mapping(path, "train config")
    unknown = sorted(set(raw) - set(JOB_KEYS) - set(_PARAMETERS))
    if unknown:
        raise ValueError(f"train config {path}: unknown key(s) {unknown}; valid keys are "
                         f"{sorted(JOB_KEYS)} and the study parameters {sorted(_PARAMETERS)}")
    missing = [k for k in ("run_dir", "data_dir", "method") if not raw.get(k)]
    if missing:
        raise ValueError(f"train config {path}: missing {missing} (run_dir, data_dir and method are required)")
    try:
        params = base_parameters(str(raw.get("profile", "quick")))
        params.update({k: v for k, v in raw.items() if k in _PARAMETERS})
        params = resolve_paths(params, path.resolve().parent)
        seeds = params.get("seeds") or [0]
        fold_default = 0 if params.get("protocol") == "cv" else -1
        spec = JobSpec(parameters=params, method=str(raw["method"]), seed=int(raw.get("seed", seeds[0])),
                       fold=int(raw.get("fold", fold_default)), repeat=int(raw.get("repeat", 0)),
                       device=str(raw.get("device", "auto")))
        check_job(spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"train config {path}: {exc}") from None
    return spec


def run_job(spec: JobSpec, *, progress: bool = True, init_distributed: bool = True) -> dict[str, Any]:
    """Train the job's method (reusing cached stages), write its predictions and provenance.

    Under torchrun every process calls this; rank 0 prepares the cohort first, evaluates and
    writes every file. Returns a summary (also on the other ranks).

    Parameters
    ----------
    spec : JobSpec
    progress : bool
        Progress bars (rank 0 only).
    init_distributed : bool
        Join the torchrun process group described by the environment (and leave it at the end).
    """
    check_job(spec)
    owned = init_distributed and distributed.requested_world_size() > 1 and not _initialised()
    world = distributed.init_from_env(spec.device) if init_distributed else distributed.world()
    try:
        params = {**spec.parameters, "seeds": [spec.seed]}
        t0 = time.perf_counter()
        study = None
        if world.main:  # one process materialises the cohort and caches; the others then read them
            study = Study.from_parameters(params, progress=progress)
        distributed.barrier()
        if study is None:
            study = Study.from_parameters(params, progress=False)
        if spec.device != "auto":
            study.train_cfg = dataclasses.replace(study.train_cfg, device=spec.device)
        study.progress = progress and world.main
        ctx = next(c for c in study.contexts() if c.fold == spec.fold and c.repeat == spec.repeat)
        method = spec.method_obj
        result = run_method(ctx, method)
        batch = study.train_cfg.batch_size
        summary: dict[str, Any] = {
            "method": method.id, "seed": spec.seed, "fold": spec.fold, "repeat": spec.repeat,
            "stage_keys": [s.key for s in result.stages], "stages_reused": sum(s.reused for s in result.stages),
            "train_seconds": round(result.train_seconds, 1), "rows": len(result.predictions),
            "world_size": world.size, "global_batch_size": batch,
            "per_process_batch_size": sorted({hi - lo for lo, hi in (distributed.shard_bounds(batch, r, world.size)
                                                                     for r in range(world.size))}, reverse=True),
        }
        if world.main:
            path = write_predictions(study.rundir.predictions, result.method, result.predictions, seed=ctx.seed,
                                     fold=ctx.fold, repeat=ctx.repeat)
            summary["prediction_file"] = path.name
            update_provenance(study.rundir, f"train {method.id} seed{spec.seed} fold{spec.fold} rep{spec.repeat}", {
                **summary, "parameters": study.parameters, "device": str(study.train_cfg.device),
                "backend": _backend(), "manifest_sha256": study.cohort.prepared.meta["manifest_sha256"],
                "wall_seconds": round(time.perf_counter() - t0, 1),
            })
        distributed.barrier()
        return summary
    finally:
        if owned:
            distributed.shutdown()


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def _backend() -> str | None:
    return dist.get_backend() if _initialised() else None
