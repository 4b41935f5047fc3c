"""`pdstudy bench --clinical`: preprocessing at clinical size, a whole multi-phase hospital export of 512 px slices.

A synthetic cohort at clinical size (:data:`CLINICAL`: 512 x 512 slices, 100 per series, every patient's
study with all three phases named in SeriesDescription) is generated once in a temporary folder; subsets of
2, 4 and 8 patients are defined by manifests. Every measured program runs in a fresh Python process (no
torch), timed inside that process around its work, page cache warm after a warm-up:

================================= =================================================================== ==========
key                               what                                                                goal
================================= =================================================================== ==========
``export_speedup``                slices kept per second of :func:`pdstudy.data.preprocess.prepare`   >= 3
                                  (one worker per usable core) on the whole export of the largest
                                  subset vs :func:`naive_export` (one process); both keep the same
                                  slices (checked)
``preprocess_speedup``            the same-files ratio of ``pdstudy bench`` at 512 px: ``prepare`` on >= 2.0
                                  a cohort holding only the files of the slices it keeps vs
                                  :func:`pdstudy.study.bench.reference_loop` on those files
``peak_memory_gib``               maximum over time of the summed resident memory of ``prepare``'s   < 2
                                  process and its workers (:class:`PeakMemory`), over every run
``memory_slope_mib_per_patient``  slope of that peak over 2, 4 and 8 patients: flat                   < 50
``seconds_per_patient``           slope of ``prepare``'s wall time over 2, 4 and 8 patients          (reported)
================================= =================================================================== ==========

Each figure carries the raw rates, times and sizes behind it; :func:`extrapolate_export` states how long
a 164-patient export of this size would take, extrapolated from the slope. ``smoke`` runs the same code
on tiny sizes in a few seconds: no figure is a measurement and no pass flag is set.

The module is also the measured programs' entry point (``python -m pdstudy.study.bench_clinical
prepare|naive|reference ...``), so that each runs in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from pdstudy.data.cache import load_prepared
from pdstudy.data.manifest import read_manifest
from pdstudy.data.preprocess import PrepareConfig, prepare, usable_cpus
from pdstudy.data.synth import cohort_counts, generate_cohort
from pdstudy.study.bench import REFERENCE_SIZE, kept_cohort, kept_files, reference_loop

try:  # psutil comes with ipykernel; without it the process tree is read from /proc
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

#: Goal of each clinical-size figure: (comparison, bound).
CLINICAL_GOALS: dict[str, tuple[str, float]] = {
    "export_speedup": (">=", 3.0),
    "preprocess_speedup": (">=", 2.0),
    "peak_memory_gib": ("<", 2.0),
    "memory_slope_mib_per_patient": ("<", 50.0),
}
#: Patients of the paper's screened cohort, for :func:`extrapolate_export`.
PAPER_PATIENTS = 164
#: How :func:`naive_export` recognises the portal-venous series: its SeriesDescription names the phase.
NAIVE_PVP_PATTERN = re.compile(r"portal|\bpvp?\b", re.IGNORECASE)
#: Most seconds between two samples of :class:`PeakMemory` for its peak to count as measured.
MAX_SAMPLE_GAP_S = 0.05

Log = Callable[[str], None]


@dataclass(frozen=True)
class ClinicalSizes:
    """The clinical-size cohort and how much each measurement repeats.

    Parameters
    ----------
    size, slices : int
        Matrix (rows = columns) and slices per series of the synthetic export.
    patients : tuple of int
        Patients of each subset (ascending); the largest is the export of ``export_speedup``.
    seed : int
        Seed of the synthetic cohort (:func:`clinical_cohort`).
    repeats : int
        Timed runs of each measurement (interleaved).
    warmup : bool
        Run the naive script and the reference loop once, untimed, before the repeats (``prepare``
        always runs once first: its cache defines the files of ``preprocess_speedup``).
    image_size, fov_mm : int, float
        The cache's canvas (the paper's 256 px over 360 mm).
    """

    size: int = 512
    slices: int = 100
    patients: tuple[int, ...] = (2, 4, 8)
    seed: int = 0
    repeats: int = 5
    warmup: bool = True
    image_size: int = REFERENCE_SIZE
    fov_mm: float = 360.0


CLINICAL = ClinicalSizes()
CLINICAL_SMOKE = ClinicalSizes(size=64, slices=8, patients=(1, 2), repeats=1, warmup=False)


def _stderr(message: str) -> None:
    print(f"[bench clinical] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the naive user script


def naive_export(manifest: str | Path, size: int = REFERENCE_SIZE) -> dict[str, list[float]]:
    """The fixed naive user script: what the paper's preprocessing needs, written without pdstudy.

    One process, one file at a time. For every manifest row without an ``exclusion``:
    ``pydicom.dcmread(path)`` with its defaults on every file below its ``dicom_dir``; the series
    whose SeriesDescription matches :data:`NAIVE_PVP_PATTERN` is the portal-venous one (a patient
    with none, or several, is skipped); its slices sorted by ImagePositionPatient z, head first, and
    those inside the manifest's ``[z_from_mm, z_to_mm]`` kept; each kept slice's ``pixel_array``
    times RescaleSlope plus RescaleIntercept (HU), clipped to [-215, 285] HU and scaled to [0, 1],
    resized to ``size`` x ``size`` by Pillow (bilinear, float32). Nothing is written.

    Parameters
    ----------
    manifest : str or Path
        A cohort manifest (``dicom_dir``, ``z_from_mm`` and ``z_to_mm`` relative to its folder).
    size : int
        Output side in pixels (the paper's 256).

    Returns
    -------
    dict
        The z (mm) of the slices kept, head first, by patient ID, for the patients not skipped.
    """
    root = Path(manifest).parent
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    kept: dict[str, list[float]] = {}
    for row in frame.to_dict("records"):
        if row["exclusion"] or not row["z_from_mm"]:
            continue
        series: dict[str, list[pydicom.Dataset]] = {}
        for path in sorted(p for p in (root / row["dicom_dir"]).rglob("*") if p.is_file()):
            ds = pydicom.dcmread(path)
            series.setdefault(str(ds.get("SeriesDescription", "")), []).append(ds)
        portal = [files for description, files in series.items() if NAIVE_PVP_PATTERN.search(description)]
        if len(portal) != 1:
            continue
        lo, hi = sorted((float(row["z_from_mm"]), float(row["z_to_mm"])))
        z_kept = []
        for ds in sorted(portal[0], key=lambda d: -float(d.ImagePositionPatient[2])):
            z = float(ds.ImagePositionPatient[2])
            if not lo - 1e-3 <= z <= hi + 1e-3:
                continue
            hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            image = (np.clip(hu, -215.0, 285.0) + 215.0) / 500.0
            np.asarray(Image.fromarray(image.astype(np.float32)).resize((size, size), Image.BILINEAR))
            z_kept.append(z)
        kept[row["patient_id"]] = z_kept
    return kept


# --------------------------------------------------------------------------- memory of a process tree


def _children_proc(pid: int) -> list[int]:
    """Direct children of ``pid`` from ``/proc/<pid>/task/*/children``."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(v) for v in fh.read().split()]
        except OSError:
            continue
    return out


def _rss_proc(pid: int) -> int:
    """``VmRSS`` of ``pid`` in bytes from ``/proc/<pid>/status`` (0 when gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def tree_rss(pid: int, *, backend: str = "auto") -> int:
    """Summed resident set size (bytes) of process ``pid`` and all its descendants, now.

    Parameters
    ----------
    pid : int
        The root process.
    backend : {"auto", "psutil", "proc"}
        ``psutil`` where installed (``auto``), else ``/proc`` (Linux).

    Returns
    -------
    int
        0 when the process is gone.
    """
    if backend not in ("auto", "psutil", "proc"):
        raise ValueError(f"backend must be 'auto', 'psutil' or 'proc', got {backend!r}")
    if backend == "psutil" or (backend == "auto" and psutil is not None):
        if psutil is None:
            raise RuntimeError("backend 'psutil' needs psutil installed")
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in procs:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total
    total, pending, seen = 0, [pid], set()
    while pending:
        p = pending.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _rss_proc(p)
        pending += _children_proc(p)
    return total


class PeakMemory:
    """The maximum over time of the summed resident memory of a process and its descendants.

    A thread samples :func:`tree_rss` every ``interval_s`` seconds from :meth:`start` until :meth:`stop`
    (or until the process is gone): workers that come and go are counted while they live.
    (``getrusage(RUSAGE_CHILDREN)`` gives the largest single child, not a sum.)

    Parameters
    ----------
    pid : int
        The root process (e.g. ``subprocess.Popen(...).pid``).
    interval_s : float
        Pause between samples; the largest gap between two samples is reported as ``max_gap_s``.
    backend : str
        As for :func:`tree_rss`.
    """

    def __init__(self, pid: int, *, interval_s: float = 0.01, backend: str = "auto") -> None:
        if not 0 < interval_s <= MAX_SAMPLE_GAP_S:
            raise ValueError(f"interval_s must be in (0, {MAX_SAMPLE_GAP_S}] seconds, got {interval_s!r}")
        self.pid, self.interval_s, self.backend = int(pid), float(interval_s), backend
        tree_rss(self.pid, backend=backend)  # an unknown backend fails here, not in the thread
        self.peak_bytes, self.samples, self.max_gap_s = 0, 0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"peak-memory-{pid}", daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while True:
            rss = tree_rss(self.pid, backend=self.backend)
            now = time.perf_counter()
            if self.samples:
                self.max_gap_s = max(self.max_gap_s, now - last)
            last = now
            self.samples += 1
            self.peak_bytes = max(self.peak_bytes, rss)
            if rss == 0 or self._stop.wait(self.interval_s):
                return

    def start(self) -> PeakMemory:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop sampling; returns ``peak_bytes``, ``peak_gib``, ``samples`` and ``max_gap_s``."""
        self._stop.set()
        self._thread.join()
        return {"peak_bytes": self.peak_bytes, "peak_gib": self.peak_bytes / 2**30, "samples": self.samples,
                "max_gap_s": round(self.max_gap_s, 4)}

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the clinical-size cohort


@dataclass
class ClinicalCohort:
    """The generated clinical-size cohort and the subset manifests (``manifests[n]``: the first ``n`` measured
    patients); ``screened`` and ``seed`` are the synthetic cohort's."""

    root: Path
    manifests: dict[int, Path]
    patients: list[str]
    series_per_patient: list[int]
    files: int
    gigabytes: float
    generate_seconds: float
    screened: int
    seed: int


def _portal_named(series: pd.DataFrame) -> bool:
    """Whether exactly one series' description names the portal-venous phase, and it is that phase."""
    named = series[series["series_description"].map(lambda d: bool(NAIVE_PVP_PATTERN.search(str(d))))]
    return len(named) == 1 and named["phase"].iloc[0] == "portal_venous"


def screened_for(included: int) -> int:
    """The fewest screened patients (>= 4) of a synthetic cohort that includes at least ``included`` patients.

    Parameters
    ----------
    included : int
        Patients the cohort must include (its ``eligible`` count, :func:`pdstudy.data.synth.cohort_counts`).

    Returns
    -------
    int
        The ``patients`` argument of :func:`pdstudy.data.synth.generate_cohort`.
    """
    if isinstance(included, bool) or not isinstance(included, (int, np.integer)) or included < 1:
        raise ValueError(f"included must be an integer >= 1, got {included!r}")
    screened = max(4, int(included))
    while cohort_counts(screened)["eligible"] < included:
        screened += 1
    return screened


def clinical_cohort(folder: Path, sizes: ClinicalSizes, log: Log = _stderr) -> ClinicalCohort:
    """Generate the clinical-size synthetic cohort in ``folder``; write the subset manifests.

    One cohort of seed ``sizes.seed`` and of the fewest screened patients (:func:`screened_for`) that
    include ``max(sizes.patients)``, with ``phase_style="explicit"`` and ``all_phases=True``
    (:func:`pdstudy.data.synth.generate_cohort`): every measured patient's study holds three series (arterial,
    portal venous, non-contrast) whose SeriesDescriptions name the phase, the export :func:`naive_export` can
    read (checked, so that both sides keep the same slices). ``folder/manifest_<n>.csv`` holds the first ``n``
    included patients.

    Raises
    ------
    RuntimeError
        If a measured patient is not such a three-phase export.
    """
    need = max(sizes.patients)
    screened = screened_for(need)
    log(f"synthetic cohort: {screened} screened patients ({need} measured), three phases of {sizes.slices} slices "
        f"of {sizes.size} px each")
    t0 = time.perf_counter()
    manifest = generate_cohort(folder, patients=screened, seed=sizes.seed, slices=sizes.slices, size=sizes.size,
                               phase_style="explicit", all_phases=True, sites=1, show_progress=False)
    seconds = time.perf_counter() - t0
    frame = read_manifest(manifest)
    chosen = frame[(frame["exclusion"] == "") & (frame["z_from_mm"] != "")].head(need)
    series = pd.read_csv(folder / "series.csv", dtype=str, keep_default_na=False)
    for pid in chosen["patient_id"]:
        own = series[series["patient_id"] == pid]
        if len(own) != 3 or not _portal_named(own):
            raise RuntimeError(f"patient {pid} of the clinical cohort is not a three-phase export naming its "
                               f"portal-venous series: {own['series_description'].tolist()}")
    if len(chosen) < need:
        raise RuntimeError(f"the clinical cohort of {screened} screened patients includes {len(chosen)}, "
                           f"not {need}")
    manifests = {}
    for n in sizes.patients:
        manifests[n] = folder / f"manifest_{n}.csv"
        chosen.iloc[:n].to_csv(manifests[n], index=False)
    files = [p for d in chosen["dicom_dir"] for p in (folder / d).rglob("*") if p.is_file()]
    return ClinicalCohort(root=folder, manifests=manifests, patients=list(chosen["patient_id"]),
                          series_per_patient=[int((series["patient_id"] == pid).sum()) for pid in chosen["patient_id"]],
                          files=len(files), gigabytes=round(sum(p.stat().st_size for p in files) / 1e9, 3),
                          generate_seconds=round(seconds, 1), screened=screened, seed=sizes.seed)


# --------------------------------------------------------------------------- measured programs (child processes)


def _child(args: Sequence[str], *, memory: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``python -m pdstudy.study.bench_clinical <args>``; its JSON result and, if asked, its peak memory."""
    cmd = [sys.executable, "-m", "pdstudy.study.bench_clinical", *map(str, args)]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        sampler = PeakMemory(proc.pid).start() if memory else None
        code = proc.wait()
        peak = sampler.stop() if sampler is not None else {}
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if code != 0:
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise RuntimeError(f"{' '.join(cmd[2:5])} failed (exit {code}):\n{tail}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - t0, 3)
    return result, peak


def _run_prepare(manifest: Path, cache: Path, sizes: ClinicalSizes, workers: int
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``prepare`` into an empty ``cache`` in a child process, with its peak memory."""
    if cache.exists():
        shutil.rmtree(cache)
    return _child(["prepare", manifest, cache, workers, sizes.image_size, sizes.fov_mm], memory=True)


def _main_prepare(args: argparse.Namespace) -> dict[str, Any]:
    config = PrepareConfig(image_size=args.image_size, fov_mm=args.fov_mm)
    t0 = time.perf_counter()
    prepared = prepare(args.manifest, args.cache, config=config, workers=args.workers, show_progress=False,
                       force=True)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "slices": len(prepared.index), "cache": str(prepared.root),
            "patients": int(prepared.index["patient_id"].nunique()), "torch_imported": "torch" in sys.modules}


def _main_naive(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    kept = naive_export(args.manifest, args.size)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "slices": sum(map(len, kept.values())), "kept": kept,
            "torch_imported": "torch" in sys.modules}


def _main_reference(args: argparse.Namespace) -> dict[str, Any]:
    files = [Path(line) for line in Path(args.files).read_text(encoding="utf-8").splitlines() if line]
    t0 = time.perf_counter()
    n = reference_loop(files, args.size)
    return {"seconds": time.perf_counter() - t0, "slices": n, "torch_imported": "torch" in sys.modules}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the measured programs: prints one JSON line (``seconds`` and what was done)."""
    parser = argparse.ArgumentParser(prog="python -m pdstudy.study.bench_clinical")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("manifest", type=Path)
    p.add_argument("cache", type=Path)
    p.add_argument("workers", type=int)
    p.add_argument("image_size", type=int)
    p.add_argument("fov_mm", type=float)
    p = sub.add_parser("naive")
    p.add_argument("manifest", type=Path)
    p.add_argument("size", type=int)
    p = sub.add_parser("reference")
    p.add_argument("files", type=Path)
    p.add_argument("size", type=int)
    args = parser.parse_args(argv)
    run = {"prepare": _main_prepare, "naive": _main_naive, "reference": _main_reference}[args.what]
    print(json.dumps(run(args)))
    return 0


# --------------------------------------------------------------------------- figures


def _entry(name: str, value: float | None, smoke: bool, **raw: Any) -> dict[str, Any]:
    """A figure with its goal and pass flag (null when unmeasured or in smoke mode)."""
    op, goal = CLINICAL_GOALS[name]
    passed = None if value is None or smoke else bool({">=": value >= goal, "<": value < goal}[op])
    return {"value": None if value is None else round(float(value), 3), "goal": goal, "goal_op": op,
            "pass": passed, **raw}


def _slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ``y`` on ``x``."""
    slope, intercept = np.polyfit(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 1)
    return float(slope), float(intercept)


def extrapolate_export(seconds_per_patient: float, intercept_s: float, patients: int = PAPER_PATIENTS,
                       *, measured: Sequence[int] = ()) -> dict[str, Any]:
    """How long ``prepare`` would take on ``patients`` patients, extrapolated from the measured line.

    Parameters
    ----------
    seconds_per_patient, intercept_s : float
        Slope and intercept of ``prepare``'s wall time over the measured patient counts.
    patients : int
        Patients of the export (the paper's 164 screened patients).
    measured : sequence of int
        The patient counts the line was fitted on (for the note).

    Returns
    -------
    dict
        ``patients``, ``seconds``, ``minutes`` and ``note`` (which says it is an extrapolation).
    """
    if isinstance(patients, bool) or not isinstance(patients, (int, np.integer)) or patients < 1:
        raise ValueError(f"patients must be an integer >= 1, got {patients!r}")
    if not np.isfinite(seconds_per_patient) or not np.isfinite(intercept_s):
        raise ValueError(f"seconds_per_patient and intercept_s must be finite, got {seconds_per_patient!r}, "
                         f"{intercept_s!r}")
    seconds = max(0.0, intercept_s + seconds_per_patient * int(patients))
    counts = ", ".join(map(str, measured)) or "a few"
    return {"patients": int(patients), "seconds": round(seconds, 1), "minutes": round(seconds / 60.0, 1),
            "note": f"extrapolated from the straight line fitted to prepare's time on {counts} patients "
                    f"(intercept {intercept_s:.2f} s + {seconds_per_patient:.2f} s per patient), not measured"}


def _same_slices(prepared_cache: str, naive_kept: dict[str, list[float]]) -> int:
    """Check that ``naive_export`` kept exactly the slices of the cache; returns their number."""
    index = load_prepared(prepared_cache).index
    ours = {str(pid): [round(float(z), 3) for z in g["z_mm"]] for pid, g in index.groupby("patient_id", sort=False)}
    theirs = {pid: [round(z, 3) for z in zs] for pid, zs in naive_kept.items()}
    differ = sorted(pid for pid in set(ours) | set(theirs) if ours.get(pid) != theirs.get(pid))
    if differ:
        raise RuntimeError(f"the naive script and prepare kept different slices of patient(s) {differ}")
    return len(index)


def run_clinical_bench(*, smoke: bool = False, workdir: str | Path | None = None, log: Log = _stderr,
                       sizes: ClinicalSizes | None = None) -> dict[str, Any]:
    """Measure the clinical-size figures; returns the JSON-ready ``clinical`` section.

    Parameters
    ----------
    smoke : bool
        Tiny sizes (:data:`CLINICAL_SMOKE`): checks that the section works; no figure is a measurement.
    workdir : str or Path, optional
        Parent of the temporary cohort and caches (default: the system's temporary folder).
    log : callable
        Progress messages.
    sizes : ClinicalSizes, optional
        Overrides :data:`CLINICAL` / :data:`CLINICAL_SMOKE`.

    Returns
    -------
    dict
        ``export_speedup``, ``preprocess_speedup``, ``peak_memory_gib``, ``memory_slope_mib_per_patient``
        (each ``value``, ``goal``, ``goal_op``, ``pass`` and the raw figures), ``scaling`` (per patient
        count), ``seconds_per_patient``, ``extrapolated`` (:func:`extrapolate_export`), ``cohort`` and ``smoke``.
    """
    sizes = sizes or (CLINICAL_SMOKE if smoke else CLINICAL)
    counts = tuple(sorted(set(sizes.patients)))
    if len(counts) < 2 or counts[0] < 1:
        raise ValueError(f"sizes.patients must hold at least two different patient counts >= 1, got {sizes.patients}")
    if sizes.repeats < 1:
        raise ValueError(f"sizes.repeats must be >= 1, got {sizes.repeats}")
    t_start = time.perf_counter()
    workers = usable_cpus()
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pdstudy-bench-clinical-", dir=workdir) as tmp:
        root = Path(tmp)
        cohort = clinical_cohort(root / "cohort", sizes, log)
        largest = cohort.manifests[counts[-1]]
        caches = root / "caches"

        log(f"warm-up: prepare{' and the naive script' if sizes.warmup else ''} on {counts[-1]} patients")
        warm, _ = _run_prepare(largest, caches / "warm", sizes, workers)
        n_kept = len(load_prepared(warm["cache"]).index)
        if sizes.warmup:
            _same_slices(warm["cache"], _child(["naive", largest, sizes.image_size])[0]["kept"])
        kept_manifest = kept_cohort(load_prepared(warm["cache"]), largest)
        kept_list = root / "kept_files.txt"
        kept_paths = kept_files(load_prepared(warm["cache"]), largest)
        kept_list.write_text("".join(f"{p}\n" for p in kept_paths), encoding="utf-8")
        if sizes.warmup:
            _child(["reference", kept_list, sizes.image_size])

        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        naive_s, kept_s, ref_s = [], [], []
        for r in range(sizes.repeats):
            log(f"repeat {r + 1}/{sizes.repeats}: prepare on {', '.join(map(str, counts))} patients, the naive "
                "script, prepare and the reference loop on the kept files")
            for n in counts:
                result, peak = _run_prepare(cohort.manifests[n], caches / f"n{n}", sizes, workers)
                runs[n].append({**result, **{f"memory_{k}": v for k, v in peak.items()}})
            naive, _ = _child(["naive", largest, sizes.image_size])
            if _same_slices(runs[counts[-1]][-1]["cache"], naive["kept"]) != n_kept:  # checks every run
                raise RuntimeError("the number of kept slices changed between runs")
            naive_s.append(naive["seconds"])
            kept_run, _ = _run_prepare(kept_manifest, caches / "kept", sizes, workers)
            kept_s.append(kept_run["seconds"])
            ref_s.append(_child(["reference", kept_list, sizes.image_size])[0]["seconds"])

    per_count = {n: {"patients": n, "slices": runs[n][0]["slices"],
                     "seconds": statistics.median(r["seconds"] for r in runs[n]),
                     "peak_memory_gib": max(r["memory_peak_gib"] for r in runs[n]),
                     "memory_samples": sum(r["memory_samples"] for r in runs[n]),
                     "max_sample_gap_s": max(r["memory_max_gap_s"] for r in runs[n]),
                     "seconds_all": [round(r["seconds"], 3) for r in runs[n]]} for n in counts}
    slope_s, intercept_s = _slope(counts, [per_count[n]["seconds"] for n in counts])
    slope_mem, _ = _slope(counts, [per_count[n]["peak_memory_gib"] * 1024 for n in counts])
    prep_rate = n_kept / per_count[counts[-1]]["seconds"]
    naive_rate = n_kept / statistics.median(naive_s)
    kept_rate = len(kept_paths) / statistics.median(kept_s)
    ref_rate = len(kept_paths) / statistics.median(ref_s)
    peak = max(per_count[n]["peak_memory_gib"] for n in counts)
    gap = max(per_count[n]["max_sample_gap_s"] for n in counts)
    shape = f"{sizes.size} x {sizes.size} px, {sizes.slices} slices per series"
    out: dict[str, Any] = {
        "smoke": smoke,
        "cohort": {"size": sizes.size, "slices_per_series": sizes.slices, "patients": cohort.patients,
                   "series_per_patient": cohort.series_per_patient, "files": cohort.files,
                   "gigabytes": cohort.gigabytes, "generate_seconds": cohort.generate_seconds,
                   "screened": cohort.screened, "seed": cohort.seed, "generator": "pdstudy.data.synth",
                   "phase_style": "explicit", "all_phases": True,
                   "image_size": sizes.image_size, "fov_mm": sizes.fov_mm, "prepare_workers": workers,
                   "repeats": sizes.repeats},
        "export_speedup": _entry(
            "export_speedup", prep_rate / naive_rate, smoke,
            prepare_slices_per_s=round(prep_rate, 1), naive_slices_per_s=round(naive_rate, 1), slices=n_kept,
            patients=counts[-1], files=cohort.files,
            prepare_seconds=per_count[counts[-1]]["seconds_all"], naive_seconds=[round(s, 3) for s in naive_s],
            prepare_workers=workers,
            compared=(f"slices kept per second on the whole export of {counts[-1]} patients ({shape}, every phase "
                      f"of each study, {cohort.files} files): pdstudy prepare ({workers} worker processes, "
                      f"{sizes.image_size} px canvas over {sizes.fov_mm:g} mm, tumour masks, cache written) vs "
                      "naive_export (one process: pydicom.dcmread with its defaults on every file, portal-venous "
                      "series by SeriesDescription, z range, HU, window, Pillow resize; nothing written); both keep "
                      f"the same {n_kept} slices (checked). Each in a fresh process, timed around its work; median "
                      f"of {sizes.repeats} interleaved repeats after a warm-up")),
        "preprocess_speedup": _entry(
            "preprocess_speedup", kept_rate / ref_rate, smoke,
            prepare_slices_per_s=round(kept_rate, 1), reference_slices_per_s=round(ref_rate, 1),
            slices=len(kept_paths), files=len(kept_paths), image_size=sizes.image_size, dicom_size=sizes.size,
            prepare_workers=workers, prepare_seconds=[round(s, 3) for s in kept_s],
            reference_seconds=[round(s, 3) for s in ref_s],
            compared=(f"the same {len(kept_paths)} DICOM files of {shape} on both sides (pdstudy bench's "
                      "preprocess_speedup at clinical size): prepare on a cohort of hard links to the files of the "
                      "slices it keeps vs pdstudy.study.bench.reference_loop on those files (one process, "
                      f"float32 output, nothing written); median of {sizes.repeats} repeats")),
        "peak_memory_gib": _entry(
            "peak_memory_gib", peak, smoke,
            by_patients={str(n): round(per_count[n]["peak_memory_gib"], 3) for n in counts},
            max_sample_gap_s=gap, sample_interval_s=0.01, gaps_within_limit=gap <= MAX_SAMPLE_GAP_S,
            sampler="psutil" if psutil is not None else "/proc",
            compared=("maximum over time of the summed resident memory (RSS) of the prepare process and its worker "
                      "processes, sampled by a thread; the maximum over every run of each patient count")),
        "memory_slope_mib_per_patient": _entry(
            "memory_slope_mib_per_patient", slope_mem, smoke, patients=list(counts),
            compared="least-squares slope of peak_memory_gib (in MiB) over the patient counts: flat is below 50"),
        "seconds_per_patient": round(slope_s, 3),
        "scaling": {str(n): {k: (round(v, 3) if isinstance(v, float) else v) for k, v in per_count[n].items()}
                    for n in counts},
        "extrapolated": extrapolate_export(slope_s, intercept_s, measured=counts),
    }
    out["scaling"]["fit"] = {"seconds_per_patient": round(slope_s, 3), "intercept_s": round(intercept_s, 3),
                             "sizes": asdict(sizes)}
    out["section_seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def format_clinical_table(section: dict[str, Any]) -> str:
    """The clinical-size figures as plain-text lines (for ``pdstudy bench``'s table)."""
    rows = [("clinical figure", "value", "goal", "pass", "measured")]
    details = {
        "export_speedup": lambda e: f"prepare {e['prepare_slices_per_s']} vs naive {e['naive_slices_per_s']} "
                                    f"slices/s ({e['slices']} slices, {e['files']} files)",
        "preprocess_speedup": lambda e: f"prepare {e['prepare_slices_per_s']} vs reference "
                                        f"{e['reference_slices_per_s']} slices/s at {e['dicom_size']} px",
        "peak_memory_gib": lambda e: f"by patients {e['by_patients']}",
        "memory_slope_mib_per_patient": lambda e: f"over {e['patients']} patients",
    }
    for key, detail in details.items():
        e = section[key]
        flag = {True: "PASS", False: "FAIL", None: "-"}[e["pass"]]
        value = "-" if e["value"] is None else f"{e['value']:.3g}"
        rows.append((key, value, f"{e['goal_op']} {e['goal']:g}", flag, detail(e)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    x = section["extrapolated"]
    lines.append(f"prepare: {section['seconds_per_patient']:.3g} s per patient; {x['patients']} patients: "
                 f"~{x['minutes']:g} min ({x['note']})")
    return "\n".join(lines)


__all__ = ["CLINICAL", "CLINICAL_GOALS", "CLINICAL_SMOKE", "NAIVE_PVP_PATTERN", "ClinicalCohort", "ClinicalSizes",
           "PeakMemory", "clinical_cohort", "extrapolate_export", "format_clinical_table", "main", "naive_export",
           "run_clinical_bench", "screened_for", "tree_rss"]


if __name__ == "__main__":
    sys.exit(main())
