"""The experiment grid on a scheduler: ``pdstudy sweep --grid GRID.yaml --executor local|slurm``.

Methods x seeds x folds x parameter values, one :mod:`pdstudy.study.jobs` job each, submitted through
submitit (SLURM or local), keyed like the stage cache, retried, then collected into run directories.
The grid file and the output layout: docs/cluster.md, "The experiment grid".
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pdstudy.core.hashing import stable_hash
from pdstudy.core.io import write_csv, write_json, write_text, write_with
from pdstudy.core.methods import QUICK_STAND_INS, method_from_id
from pdstudy.core.params import STUDY_PARAMETERS
from pdstudy.core.rundir import redact_paths, run_dir, update_provenance
from pdstudy.data.cohort import cohort_from_parameters
from pdstudy.data.predictions import read_predictions
from pdstudy.learn import distributed
from pdstudy.learn.distill import TRAINING_CODE_VERSION
from pdstudy.learn.models import local_weights_file, weights_file_sha256
from pdstudy.study.jobs import JobSpec, base_parameters, check_job, read_yaml_mapping, resolve_paths, run_job

EXECUTORS = ("local", "slurm")
GRID_KEYS = ("name", "profile", "data_dir", "manifest", "parameters", "methods", "seeds", "folds", "repeats",
             "grid", "retries", "local", "slurm")
#: LocalExecutor parameters (submitit does not check them itself) and ours.
LOCAL_KEYS = ("timeout_min", "gpus_per_node", "tasks_per_node", "visible_gpus", "signal_delay_s",
              "stderr_to_stdout", "setup", "max_parallel")
#: Parameters that cannot vary per job: the run directory is the job's, paths are the grid's.
FIXED_KEYS = ("run_dir", "data_dir", "manifest", "seeds")
#: Study parameters that do not change results (left out of job keys).
UNKEYED = ("run_dir", "data_dir", "workers", "seeds")


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (format: docs/cluster.md, "The experiment grid")."""

    path: Path
    name: str
    profile: str
    base: dict[str, Any]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    folds: tuple[int, ...]
    repeats: tuple[int, ...]
    axes: dict[str, list[Any]]
    retries: int = 1
    local: dict[str, Any] = field(default_factory=dict)
    slurm: dict[str, Any] = field(default_factory=dict)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the parameter axes (one empty point without axes)."""
        names = list(self.axes)
        return [dict(zip(names, values)) for values in itertools.product(*(self.axes[n] for n in names))]


@dataclass(frozen=True)
class SweepJob:
    """One cell of the grid: its key, point and job spec (``run_dir`` = the job's folder)."""

    key: str
    point: str
    point_values: dict[str, Any]
    spec: JobSpec


@dataclass
class SweepReport:
    """What :func:`sweep` did."""

    out: Path
    jobs: list[SweepJob]
    skipped: int = 0
    submitted: int = 0
    attempts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    run_dirs: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


# --------------------------------------------------------------------------- grid file


def _int_list(value: Any, what: str, path: Path) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"grid file {path}: {what} must be integers, got {value!r}") from None
    if not out:
        raise ValueError(f"grid file {path}: {what} is empty")
    return out


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file; errors name the file and the key."""
    path = Path(path)
    raw = read_yaml_mapping(path, "grid file")
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise ValueError(f"grid file {path}: unknown key(s) {unknown}; valid keys are {list(GRID_KEYS)}")
    for key in ("data_dir", "methods"):
        if not raw.get(key):
            raise ValueError(f"grid file {path}: missing {key!r}")
    params = raw.get("parameters") or {}
    axes = raw.get("grid") or {}
    for what, mapping in (("parameters", params), ("grid", axes)):
        if not isinstance(mapping, dict):
            raise ValueError(f"grid file {path}: {what!r} must be a mapping of study parameters")
        bad = sorted(set(mapping) - set(STUDY_PARAMETERS))
        if bad:
            raise ValueError(f"grid file {path}: {what!r} has unknown study parameter(s) {bad}; "
                             f"valid: {sorted(STUDY_PARAMETERS)}")
        fixed = sorted(set(mapping) & set(FIXED_KEYS))
        if fixed:
            raise ValueError(f"grid file {path}: {what!r} cannot set {fixed} (data_dir and manifest are top-level "
                             "keys, seeds is the 'seeds' axis, run directories come from --out)")
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid file {path}: grid axis {name!r} must be a non-empty list of values")
    profile = str(raw.get("profile", "quick"))
    base = base_parameters(profile)
    base.update(params)
    base.update(data_dir=str(raw["data_dir"]), manifest=str(raw.get("manifest") or ""), run_dir="")
    base = resolve_paths(base, path.resolve().parent)
    methods = raw["methods"] if isinstance(raw["methods"], list) else [raw["methods"]]
    protocols = {str(p) for p in axes.get("protocol", [base["protocol"]])}
    if len(protocols) > 1:
        raise ValueError(f"grid file {path}: protocol cannot be a grid axis (folds differ between protocols)")
    cv = protocols == {"cv"}
    folds = raw.get("folds", "all" if cv else [-1])
    repeats = raw.get("repeats", "all" if cv else [0])
    if not cv and (folds not in ([-1], -1) or repeats not in ([0], 0)):
        raise ValueError(f"grid file {path}: folds and repeats need protocol 'cv' (got protocol "
                         f"{base['protocol']!r}); leave them out for the fixed split")
    n_folds = max(int(v) for v in axes.get("cv_folds", [base["cv_folds"]]))
    n_reps = max(int(v) for v in axes.get("cv_repeats", [base["cv_repeats"]]))
    retries = raw.get("retries", 1)
    if not isinstance(retries, int) or retries < 0:
        raise ValueError(f"grid file {path}: retries must be an integer >= 0, got {retries!r}")
    local, slurm = raw.get("local") or {}, raw.get("slurm") or {}
    for what, mapping in (("local", local), ("slurm", slurm)):
        if not isinstance(mapping, dict):
            raise ValueError(f"grid file {path}: {what!r} must be a mapping of executor parameters")
    bad = sorted(set(local) - set(LOCAL_KEYS))
    if bad:
        raise ValueError(f"grid file {path}: 'local' has unknown parameter(s) {bad}; valid: {list(LOCAL_KEYS)}")
    return Grid(
        path=path, name=str(raw.get("name") or path.stem), profile=profile, base=base,
        methods=tuple(str(m) for m in methods), seeds=_int_list(raw.get("seeds", base["seeds"]), "seeds", path),
        folds=tuple(range(n_folds)) if folds == "all" else _int_list(folds, "folds", path),
        repeats=tuple(range(n_reps)) if repeats == "all" else _int_list(repeats, "repeats", path),
        axes={k: list(v) for k, v in axes.items()}, retries=retries, local=dict(local), slurm=dict(slurm),
    )


def point_slug(values: dict[str, Any]) -> str:
    """Folder name of a point: ``alpha-0.3__temperature-2.0`` ("" without axes)."""
    parts = [f"{k}-{v}" for k, v in values.items()]
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", "__".join(parts))


# --------------------------------------------------------------------------- jobs


def _cohort_args(params: dict[str, Any]) -> tuple:
    return (*(params[k] for k in ("manifest", "data_dir", "image_size", "fov_mm", "synth_patients", "synth_seed",
                                  "synth_slices", "synth_size")), float(params.get("synth_clinical_signal", 1.0)),
            *(params.get(k) for k in ("synth_sites", "synth_site_shift", "synth_site_poor")))


def prepare_cohorts(specs: list[JobSpec], *, progress: bool = True) -> dict[tuple, dict[str, str]]:
    """Materialise every cohort the jobs use once, before submission (jobs then only read caches).

    Returns ``{cohort arguments: {"manifest_sha256", "cache"}}``.
    """
    out: dict[tuple, dict[str, str]] = {}
    for spec in specs:
        args = _cohort_args(spec.parameters)
        if args in out:
            continue
        cohort = cohort_from_parameters(spec.parameters, show_progress=progress)
        meta = cohort.prepared.meta
        out[args] = {"manifest_sha256": meta["manifest_sha256"],
                     "cache": meta.get("content_sha256", cohort.prepared.root.name)}
    return out


def job_key(spec: JobSpec, cohort: dict[str, str]) -> str:
    """The job's cache key: its parameters (paths and worker counts left out), method, seed, fold, repeat, cohort."""
    params = {k: v for k, v in spec.parameters.items() if k not in UNKEYED}
    params["weights_dir"] = bool(params.get("weights_dir"))
    params["manifest"] = bool(params.get("manifest"))
    return stable_hash({"parameters": params, "method": spec.method, "seed": spec.seed, "fold": spec.fold,
                        "repeat": spec.repeat, "device": spec.device, "cohort": cohort,
                        "code": TRAINING_CODE_VERSION, "weights": _weights_digests(spec)}, length=20)


def _weights_digests(spec: JobSpec) -> dict[str, str | None]:
    """SHA-256 of the local weights file each architecture of the job's chain loads (as the stage key keys it)."""
    folder = spec.parameters.get("weights_dir")
    if not folder:
        return {}
    out: dict[str, str | None] = {}
    for arch in method_from_id(spec.method).chain:
        built = QUICK_STAND_INS.get(arch, arch) if spec.parameters.get("stand_ins") else arch
        path = local_weights_file(folder, built)
        out[arch] = weights_file_sha256(path) if path is not None else None
    return out


def jobs_dir(out: Path) -> Path:
    return out / "sweep" / "jobs"


def expand(grid: Grid, out: Path, *, progress: bool = True) -> list[SweepJob]:
    """All jobs of the grid, checked, with their keys (prepares the cohorts the keys depend on)."""
    drafts: list[tuple[str, dict[str, Any], JobSpec]] = []
    for values in grid.points():
        params = {**grid.base, **values}
        for method, seed, fold, repeat in itertools.product(grid.methods, grid.seeds, grid.folds, grid.repeats):
            spec = JobSpec(parameters=params, method=method, seed=seed, fold=fold, repeat=repeat)
            try:
                check_job(spec)
            except (ValueError, TypeError) as exc:
                where = f" at point {values}" if values else ""
                raise ValueError(f"grid file {grid.path}{where}, method {method!r}, seed {seed}, fold {fold}: "
                                 f"{exc}") from None
            drafts.append((point_slug(values), values, spec))
    cohorts = prepare_cohorts([d[2] for d in drafts], progress=progress)
    jobs = []
    for slug, values, spec in drafts:
        key = job_key(spec, cohorts[_cohort_args(spec.parameters)])
        folder = jobs_dir(out) / key
        spec = JobSpec(parameters={**spec.parameters, "run_dir": str(folder)}, method=spec.method, seed=spec.seed,
                       fold=spec.fold, repeat=spec.repeat, device=spec.device)
        jobs.append(SweepJob(key=key, point=slug, point_values=values, spec=spec))
    return jobs


def job_result(folder: Path) -> dict[str, Any] | None:
    """The finished job's summary, or None when it has not finished (or its predictions are gone)."""
    marker = folder / "result.json"
    if not marker.exists():
        return None
    try:
        result = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return None
    pred = folder / "predictions" / str(result.get("prediction_file", ""))
    return result if pred.is_file() else None


def run_sweep_job(spec: dict[str, Any]) -> dict[str, Any]:
    """What one submitit job executes: train, then leave ``result.json`` as the finished marker.

    A job with several tasks (``tasks_per_node``/``nodes`` in the executor parameters) trains
    data-parallel: submitit's task environment is exported as torch.distributed's variables.
    """
    try:
        import submitit  # lazy: submitit only inside a submitted job or where a sweep submits

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except RuntimeError:  # not inside a submitit job (called directly)
        pass
    job = JobSpec.from_dict(spec)
    folder = Path(job.parameters["run_dir"])
    summary = run_job(job, progress=False)
    if distributed.requested_world_size() <= 1 or int(os.environ.get("RANK", "0")) == 0:
        (folder / "error.txt").unlink(missing_ok=True)
        write_json(folder / "result.json", summary)
    return summary


# --------------------------------------------------------------------------- executors


def make_executor(kind: str, grid: Grid, folder: Path) -> tuple[Any, int | None]:
    """A submitit executor with the grid's parameters, and how many jobs may run at once (None: no limit)."""
    import submitit  # lazy: submitit only inside a submitted job or where a sweep submits

    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {kind!r}")
    folder = folder / "%j"
    if kind == "slurm":
        params = dict(grid.slurm)
        if "time" not in params:
            raise ValueError(f"grid file {grid.path}: set slurm.time (minutes per job); submitit's default is 5")
        params.setdefault("job_name", f"pdstudy-{grid.name}")
        try:
            executor = submitit.SlurmExecutor(folder=folder)
        except RuntimeError as exc:  # no srun on PATH
            raise ValueError(f"--executor slurm: {exc} (run pdstudy sweep where SLURM's commands are available, "
                             "e.g. a login node)") from None
        try:
            executor.update_parameters(**params)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"grid file {grid.path}, section 'slurm': {exc}") from None
        return executor, None
    params = dict(grid.local)
    max_parallel = int(params.pop("max_parallel", 1))
    if max_parallel < 1:
        raise ValueError(f"grid file {grid.path}: local.max_parallel must be >= 1, got {max_parallel}")
    params.setdefault("timeout_min", 24 * 60)
    if "gpus_per_node" not in params:
        params["gpus_per_node"] = 1 if torch.cuda.is_available() else 0
    executor = submitit.LocalExecutor(folder=folder)
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"grid file {grid.path}, section 'local': {exc}") from None
    return executor, max_parallel


def short_error(exc: BaseException) -> str:
    """The last line of a job's traceback (the exception and its message)."""
    text = str(exc)
    parts = text.split("----------------------")
    body = parts[1] if len(parts) >= 3 else text
    lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__


def _local_gpus(executor: Any, slot: int) -> None:
    """Give local slot ``slot`` its own GPUs when the machine has enough of them."""
    n = int(executor.parameters.get("gpus_per_node", 0) or 0)
    if n < 1 or executor.parameters.get("visible_gpus"):
        return
    total = torch.cuda.device_count()
    first = slot * n
    if first + n <= total:
        executor.update_parameters(visible_gpus=tuple(range(first, first + n)))


def run_jobs(executor: Any, jobs: list[SweepJob], *, max_parallel: int | None, poll_s: float = 2.0
             ) -> dict[str, str | None]:
    """Submit ``jobs`` (at most ``max_parallel`` at once) and wait; ``{key: None or error}``."""
    outcome: dict[str, str | None] = {}
    if max_parallel is None:  # a scheduler: one job array, the scheduler throttles
        with executor.batch():
            handles = [(j, executor.submit(run_sweep_job, j.spec.to_dict())) for j in jobs]
        for j, h in handles:
            outcome[j.key] = _finish(j, h)
        return outcome
    pending = list(jobs)
    running: dict[int, tuple[SweepJob, Any]] = {}
    while pending or running:
        for slot in range(max_parallel):
            if slot not in running and pending:
                j = pending.pop(0)
                _local_gpus(executor, slot)
                running[slot] = (j, executor.submit(run_sweep_job, j.spec.to_dict()))
        for slot, (j, h) in list(running.items()):
            if h.done():
                outcome[j.key] = _finish(j, h)
                del running[slot]
        if running:
            time.sleep(poll_s)
    return outcome


def _finish(job: SweepJob, handle: Any) -> str | None:
    exc = handle.exception()  # waits for the job
    folder = Path(job.spec.parameters["run_dir"])
    if exc is None and job_result(folder) is not None:
        return None
    message = short_error(exc) if exc is not None else "job ended without result.json"
    write_text(folder / "error.txt", f"job {handle.job_id}: {exc if exc is not None else message}\n")
    return message


# --------------------------------------------------------------------------- sweep and collect


def sweep(grid_path: str | Path, executor: str = "local", out: str | Path | None = None, *,
          collect_only: bool = False, dry_run: bool = False, poll_s: float = 2.0, progress: bool = True,
          log: Callable[[str], None] = print) -> SweepReport:
    """Run the grid: submit unfinished jobs, retry failures, then collect predictions.

    Parameters
    ----------
    grid_path : path
        Grid file (format: docs/cluster.md).
    executor : {"local", "slurm"}
    out : path, optional
        Run directory of the grid (default ``reports/<name>``).
    collect_only : bool
        Submit nothing; merge the finished jobs' predictions.
    dry_run : bool
        Submit nothing, collect nothing; report which jobs would run.
    """
    grid = load_grid(grid_path)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    out = Path(out or Path("reports") / grid.name).resolve()
    jobs = expand(grid, out, progress=progress)
    report = SweepReport(out=out, jobs=jobs)
    for j in jobs:
        folder = Path(j.spec.parameters["run_dir"])
        if not (folder / "job.json").exists():
            write_json(folder / "job.json", redact_paths({"key": j.key, "point": j.point_values, **j.spec.to_dict()}))
    todo = [j for j in jobs if job_result(Path(j.spec.parameters["run_dir"])) is None]
    report.skipped = len(jobs) - len(todo)
    log(f"sweep {grid.name}: {len(jobs)} job(s), {report.skipped} finished, {len(todo)} to run")
    if dry_run:
        for j in todo:
            log(f"  would run {j.key}  {j.spec.method} seed {j.spec.seed} fold {j.spec.fold} rep {j.spec.repeat}"
                + (f"  {j.point_values}" if j.point_values else ""))
        return report
    if not collect_only and todo:
        ex, max_parallel = make_executor(executor, grid, out / "sweep" / "submitit")
        remaining = todo
        for attempt in range(1 + grid.retries):
            if not remaining:
                break
            if attempt:
                log(f"retrying {len(remaining)} failed job(s) (attempt {attempt + 1} of {1 + grid.retries})")
            report.submitted += len(remaining)
            for j in remaining:
                report.attempts[j.key] = report.attempts.get(j.key, 0) + 1
            outcome = run_jobs(ex, remaining, max_parallel=max_parallel, poll_s=poll_s)
            report.failed = {k: e for k, e in outcome.items() if e is not None}
            remaining = [j for j in remaining if j.key in report.failed]
    report.run_dirs = collect(grid, jobs, out, executor=executor)
    write_status(report)
    for j in jobs:
        if j.key in report.failed:
            log(f"FAILED {j.key}  {j.spec.method} seed {j.spec.seed} fold {j.spec.fold}"
                + (f" {j.point_values}" if j.point_values else "")
                + f" after {report.attempts.get(j.key, 0)} attempt(s): {report.failed[j.key]}")
    return report


def write_status(report: SweepReport) -> Path:
    """``<out>/sweep/status.csv``: one row per job."""
    rows = []
    for j in report.jobs:
        folder = Path(j.spec.parameters["run_dir"])
        done = job_result(folder) is not None
        error = report.failed.get(j.key, "")
        if not done and not error and (folder / "error.txt").exists():
            error = (folder / "error.txt").read_text().strip().splitlines()[-1]
        rows.append({"key": j.key, "point": j.point or "-", "method": j.spec.method, "seed": j.spec.seed,
                     "fold": j.spec.fold, "repeat": j.spec.repeat,
                     "state": "done" if done else ("failed" if error else "not run"),
                     "attempts": report.attempts.get(j.key, 0), "error": error})
    return write_csv(report.out / "sweep" / "status.csv", pd.DataFrame(rows))


def collect(grid: Grid, jobs: list[SweepJob], out: Path, *, executor: str = "local") -> list[Path]:
    """Merge every finished job's predictions into its point's run directory; returns the run directories.

    Each run directory gets the prediction files (schema of ``pdstudy.data.predictions``)
    and a ``sweep`` section in ``provenance.json``; ``<out>/sweep/points.csv`` lists the points with
    the ``pdstudy run`` command that evaluates one with notebooks 06-10.
    """
    points: dict[str, list[SweepJob]] = {}
    for j in jobs:
        points.setdefault(j.point, []).append(j)
    rows, dirs = [], []
    for slug, members in points.items():
        run = run_dir(out / slug if slug else out)
        done = []
        for j in members:
            folder = Path(j.spec.parameters["run_dir"])
            result = job_result(folder)
            if result is None:
                continue
            src = folder / "predictions" / result["prediction_file"]
            dst = run.predictions / src.name
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                write_with(dst, lambda tmp, src=src: shutil.copyfile(src, tmp))
            done.append(j)
        if done:
            read_predictions(run.predictions)  # schema check of the merged folder
        values = members[0].point_values
        update_provenance(run, "sweep", {
            "grid": grid.name, "grid_file": grid.path.name, "executor": executor, "point": values,
            "parameters": {**grid.base, **values, "seeds": list(grid.seeds)},
            "jobs": {j.key: {"method": j.spec.method, "seed": j.spec.seed, "fold": j.spec.fold,
                             "repeat": j.spec.repeat, "finished": j in done} for j in members},
        })
        rows.append({"point": slug or "-", "run_dir": str(run.root.relative_to(out)) if slug else ".",
                     "parameters": json.dumps(values, sort_keys=True), "jobs": len(members), "finished": len(done),
                     "notebooks": notebook_command(grid, values, run.root)})
        dirs.append(run.root)
    write_csv(out / "sweep" / "points.csv", pd.DataFrame(rows))
    return dirs


def notebook_command(grid: Grid, values: dict[str, Any], run: Path) -> str:
    """``pdstudy run`` evaluating a point with notebooks 06-10 on the same parameters (so the stage cache is hit).

    Paths are relative to the current directory (no site folders in the run directory).
    """
    profile = base_parameters(grid.profile)
    params = {**grid.base, **values, "seeds": list(grid.seeds)}
    args = ["pdstudy", "run", "--profile", grid.profile, "--only", "06,07,08,10", "--out", os.path.relpath(run),
            "--data-dir", os.path.relpath(params["data_dir"])]
    if params.get("manifest"):
        args += ["--manifest", os.path.relpath(params["manifest"])]
    for key in STUDY_PARAMETERS:
        if key in ("run_dir", "data_dir", "manifest", "workers"):
            continue
        if key in params and (params[key] != profile.get(key) or key in values or key == "seeds"):
            args += ["-p", f"{key}={json.dumps(params[key])}"]
    return shlex.join(args)
