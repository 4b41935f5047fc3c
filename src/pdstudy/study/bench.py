"""`pdstudy bench`: the speed of preprocessing, the slice cache, the training pipeline and the quick run.

Every figure is a ratio (or a wall time) measured in one run on one machine, after a warm-up,
on a synthetic DICOM cohort generated in a temporary folder:

======================= ================================================================ =========
key                     what                                                             goal
======================= ================================================================ =========
``preprocess_speedup``  slices/s of :func:`pdstudy.data.preprocess.prepare` (all cores, 256 px)  >= 1.8
                        vs :func:`reference_loop`, both on the same files: a benchmark
                        cohort holding only the files of the cached slices (see
                        :func:`kept_cohort`); prepare on the full cohort is reported too
``cache_speedup``       one epoch of slices read from the cache vs decoded by the            >= 20
                        reference loop
``pipeline_efficiency`` training images/s through SliceSet + augment_batch + step vs the   >= 0.9
                        same step on batches already in memory (CPU: the quick profile's
                        largest CNN stand-in; CUDA: efficientnet_b7 at 224 px, bf16)
``quick_run_seconds``   wall time of ``pdstudy run --profile quick`` (fresh data folder)    <= 720
======================= ================================================================ =========

With CUDA, ``gpu`` also holds each paper architecture of :data:`GPU_ARCHITECTURES` at 224 px, bf16:
the EfficientNets and the CNN + Transformer hybrid in images/s, the 3D ResNet-50 in volumes/s (volumes
of the paper profile's ``volume_depth`` slices), with peak GPU memory.

``--smoke`` runs the same code on tiny sizes to check that it works; its figures are not
measurements and its pass flags are null.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from pdstudy.core.hashing import derive_seed
from pdstudy.core.methods import QUICK_STAND_INS
from pdstudy.core.params import load_profile
from pdstudy.data.cache import PreparedCohort, load_prepared
from pdstudy.data.dicom import order_slices, scan_folder, select_portal_venous
from pdstudy.data.manifest import read_manifest
from pdstudy.data.preprocess import PrepareConfig, prepare, usable_cpus
from pdstudy.data.synth import generate_cohort

# torch and the modules built on it are imported where they are used, after the preprocessing
# figure: `pdstudy prepare` runs in a process without torch, whose forks are cheaper (see bench_preprocess).
if TYPE_CHECKING:
    import torch  # lazy: torch loads only after prepare is timed

    from pdstudy.learn.dataset import SliceSet  # lazy: torch loads only after prepare is timed
    from pdstudy.learn.train import TrainConfig  # lazy: torch loads only after prepare is timed

#: Goal of each headline figure: (comparison, bound).
GOALS: dict[str, tuple[str, float]] = {
    "preprocess_speedup": (">=", 1.8),
    "cache_speedup": (">=", 20.0),
    "pipeline_efficiency": (">=", 0.9),
    "quick_run_seconds": ("<=", 720.0),
}
#: Side of the reference loop's output (and of ``prepare`` in the comparison): the paper's 256 px.
REFERENCE_SIZE = 256
GPU_ARCHITECTURES = ("efficientnet_b0", "efficientnet_b3", "efficientnet_b7", "efficientnet_b7_transformer",
                     "resnet50_3d")
#: Slices per volume of the 3D ResNet-50 when the paper profile sets no ``volume_depth``.
GPU_VOLUME_DEPTH = 32
#: The quick run is stopped (and reported unmeasured) after five times its goal.
QUICK_RUN_TIMEOUT_S = 3600
#: Folder (next to the manifest) and manifest of the benchmark cohort built by :func:`kept_cohort`.
KEPT_DIR, KEPT_MANIFEST = "bench_kept", "manifest_kept.csv"

Log = Callable[[str], None]


@dataclass(frozen=True)
class BenchSizes:
    """How much work each measurement does (``None``: the quick profile's synthetic DICOM setting)."""

    patients: int
    slices: int | None
    dicom_size: int | None
    repeats: int  # interleaved prepare / reference passes, and cache epochs
    warmup_steps: int
    steps: int  # training steps per round and mode
    rounds: int  # CPU: alternating pipeline / in-memory rounds
    gpu_steps: int
    gpu_architectures: tuple[str, ...]


FULL = BenchSizes(patients=40, slices=None, dicom_size=None, repeats=5, warmup_steps=3, steps=10, rounds=4,
                  gpu_steps=30, gpu_architectures=GPU_ARCHITECTURES)
SMOKE = BenchSizes(patients=6, slices=12, dicom_size=64, repeats=1, warmup_steps=1, steps=2, rounds=1,
                   gpu_steps=2, gpu_architectures=("efficientnet_b0", "efficientnet_b7_transformer", "resnet50_3d"))


def _stderr(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """CPU count, torch version and threads, device, Python and platform."""
    import torch  # lazy: torch loads only after prepare is timed

    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(), "cpus_usable": usable_cpus(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "python": platform.python_version(), "platform": platform.platform(),
    }


def _entry(name: str, value: float | None, smoke: bool, **raw: Any) -> dict[str, Any]:
    """A headline figure with its goal and pass flag (null when unmeasured or in smoke mode)."""
    op, goal = GOALS[name]
    passed = None if value is None or smoke else bool(value >= goal if op == ">=" else value <= goal)
    return {"value": None if value is None else round(float(value), 3), "goal": goal, "goal_op": op,
            "pass": passed, **raw}


# --------------------------------------------------------------------------- preprocessing and cache


def reference_loop(files: list[Path], size: int = REFERENCE_SIZE) -> int:
    """The fixed reference: one process, one file at a time, output float32 in [0, 1] at ``size`` px.

    ``pydicom.dcmread``, ``pixel_array``, RescaleSlope/Intercept, clip to [-215, 285] HU, scale to
    [0, 1], Pillow bilinear resize to ``size`` x ``size``. Returns the number of slices.
    """
    for path in files:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1.0)) + float(
            ds.get("RescaleIntercept", 0.0))
        img = (np.clip(hu, -215.0, 285.0) + 215.0) / 500.0
        np.asarray(Image.fromarray(img.astype(np.float32)).resize((size, size), Image.BILINEAR))
    return len(files)


def _kept_planes(prepared: PreparedCohort, manifest: Path) -> list[tuple[str, str, list[str]]]:
    """``(patient_id, dicom_dir, files relative to it)`` of exactly the slices in a prepared cache."""
    rows = read_manifest(manifest).set_index("patient_id")
    out: list[tuple[str, str, list[str]]] = []
    n = 0
    for pid, group in prepared.index.groupby("patient_id", sort=False):
        folder = manifest.parent / rows.at[pid, "dicom_dir"]
        uid = rows.at[pid, "pvp_series_uid"] if "pvp_series_uid" in rows.columns else ""
        series, _ = select_portal_venous(scan_folder(folder), str(uid or ""))
        wanted = {round(float(z), 3) for z in group["z_mm"]}
        refs = [s for s in order_slices(series.slices)[0] if round(s.z, 3) in wanted]
        if any(s.frame is not None for s in refs):
            raise ValueError(f"patient {pid}: multi-frame files are outside the reference loop")
        out.append((str(pid), str(rows.at[pid, "dicom_dir"]), [s.path for s in refs]))
        n += len(refs)
    if n != len(prepared.index):
        raise RuntimeError(f"found {n} files for {len(prepared.index)} cached slices")
    return out


def kept_files(prepared: PreparedCohort, manifest: Path) -> list[Path]:
    """The DICOM files of exactly the slices in a prepared cache (the reference loop's input)."""
    return [manifest.parent / d / rel for _, d, rels in _kept_planes(prepared, manifest) for rel in rels]


def kept_cohort(prepared: PreparedCohort, manifest: Path) -> Path:
    """A benchmark cohort whose folders hold only the files of the slices in ``prepared``; returns its manifest.

    Each included patient keeps its manifest row, with ``dicom_dir`` moved below :data:`KEPT_DIR`
    (next to ``manifest``), which holds hard links (copies where linking fails) to exactly the
    files of its cached slices at their relative paths: the portal-venous series cut to the
    annotated z range, without the other phases; ``mask_path`` is emptied (the reference loop reads
    no mask file). ``prepare`` on it reads the same files as :func:`reference_loop` on
    :func:`kept_files` of its cache, and must make the same images.
    """
    df = read_manifest(manifest)
    planes = _kept_planes(prepared, manifest)
    root = manifest.parent / KEPT_DIR
    if root.exists():
        shutil.rmtree(root)
    for _, dicom_dir, rels in planes:
        for rel in rels:
            src, dst = manifest.parent / dicom_dir / rel, root / dicom_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    kept = df.set_index("patient_id").loc[[pid for pid, _, _ in planes]].reset_index()
    kept["dicom_dir"] = [f"{KEPT_DIR}/{d}" for d in kept["dicom_dir"]]
    if "mask_path" in kept.columns:
        kept["mask_path"] = ""
    out = manifest.parent / KEPT_MANIFEST
    kept[list(df.columns)].to_csv(out, index=False)
    return out


def _seconds(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _same_images(a: PreparedCohort, b: PreparedCohort) -> bool:
    """Whether two caches hold the same slices: patient, order, z and every image byte."""
    cols = ["patient_id", "slice", "z_mm"]
    return bool(a.index[cols].reset_index(drop=True).equals(b.index[cols].reset_index(drop=True))
                and np.array_equal(np.asarray(a.images), np.asarray(b.images)))


def bench_preprocess(manifest: Path, cache: Path, sizes: BenchSizes, smoke: bool, log: Log
                     ) -> tuple[dict[str, Any], PreparedCohort, float]:
    """``preprocess_speedup``; also returns the 256 px cache and the reference loop's slices/s.

    Both sides read the same files: the benchmark cohort of :func:`kept_cohort`. ``prepare`` on the
    full cohort (every phase, slices outside the range) is timed in the same repeats and reported
    beside it (``full_cohort_*``).
    """
    config = PrepareConfig(image_size=REFERENCE_SIZE, fov_mm=360.0)
    workers = usable_cpus()
    runs = itertools.count()

    def run_prepare(source: Path) -> PreparedCohort:
        # A fresh, empty cache folder each time: a first build (nothing to reuse, nothing to replace).
        folder = cache / f"run{next(runs)}"
        if folder.exists():
            shutil.rmtree(folder)
        return prepare(source, folder, config=config, workers=workers, show_progress=False)

    def timed_prepare(source: Path) -> float:
        t0 = time.perf_counter()
        done = run_prepare(source)
        seconds = time.perf_counter() - t0
        shutil.rmtree(done.root.parent)  # outside the timing
        return seconds

    log("prepare (full cohort): warm-up")
    prepared = run_prepare(manifest)
    log("benchmark cohort: the files of the cached slices only")
    kept_manifest = kept_cohort(prepared, manifest)
    log("prepare (benchmark cohort): warm-up")
    kept_prepared = run_prepare(kept_manifest)
    if not _same_images(kept_prepared, prepared):
        raise RuntimeError("prepare made a different cache from the benchmark cohort than from the full cohort")
    files = kept_files(kept_prepared, kept_manifest)
    n = len(files)
    log(f"reference loop: warm-up ({n} slices)")
    reference_loop(files)
    ref_s, prep_s, full_s = [], [], []
    for r in range(sizes.repeats):
        log(f"preprocess repeat {r + 1}/{sizes.repeats}")
        ref_s.append(_seconds(lambda: reference_loop(files)))
        prep_s.append(timed_prepare(kept_manifest))
        full_s.append(timed_prepare(manifest))
    ref_rate, prep_rate, full_rate = (n / statistics.median(t) for t in (ref_s, prep_s, full_s))
    torch_imported = "torch" in sys.modules
    n_patients = prepared.index["patient_id"].nunique()
    n_full = int(prepared.qc["n_files"].sum())  # every file below each patient's folder (not manifest-excluded)
    entry = _entry(
        "preprocess_speedup", prep_rate / ref_rate, smoke,
        prepare_slices_per_s=round(prep_rate, 1), reference_slices_per_s=round(ref_rate, 1), slices=n,
        files=n, patients=n_patients, prepare_workers=workers, image_size=REFERENCE_SIZE, fov_mm=config.fov_mm,
        repeats=sizes.repeats, prepare_seconds=[round(s, 3) for s in prep_s],
        reference_seconds=[round(s, 3) for s in ref_s],
        full_cohort_prepare_slices_per_s=round(full_rate, 1), full_cohort_files_scanned=n_full,
        full_cohort_patients=len(read_manifest(manifest)),
        full_cohort_speedup=round(full_rate / ref_rate, 3), full_cohort_prepare_seconds=[round(s, 3) for s in full_s],
        torch_imported=torch_imported,
        compared=(f"the same {n} DICOM files on both sides, nothing else ({n} slices of {n_patients} patients, one "
                  "file per slice): a benchmark cohort of hard links to the files of the slices prepare keeps from "
                  "the synthetic cohort (the portal-venous series cut to the annotated z range; no other phase, no "
                  f"mask file). prepare: {workers} worker processes (one per usable core), {REFERENCE_SIZE} px "
                  f"canvas, {config.fov_mm:g} mm field of view, into an empty cache folder: header read, "
                  "portal-venous selection, z range, HU, window, physical resampling, uint8 cache written and "
                  "reopened; its images are checked identical to those of the full cohort. Reference loop: one "
                  f"process, one file at a time, {REFERENCE_SIZE}x{REFERENCE_SIZE} float32 output, nothing written. "
                  f"Median of {sizes.repeats} interleaved repeats after a warm-up, page cache warm, in the benchmark "
                  f"process {'after' if torch_imported else 'before'} torch is imported (pdstudy prepare does not "
                  "import torch; in a process that has, each worker fork copies a larger address space). Not the "
                  f"headline, timed in the same repeats: prepare on the full cohort ({n_full} files read for the "
                  f"same {n} slices: every phase, the slices outside the range, tumour masks) -> "
                  "full_cohort_prepare_slices_per_s and full_cohort_speedup (vs the same reference rate)"),
    )
    return entry, prepared, ref_rate


def _included(prepared: PreparedCohort, manifest: Path) -> pd.DataFrame:
    """``patient_id`` and ``response`` of every included patient of the cache, in manifest order."""
    df = read_manifest(manifest)
    included = set(prepared.included["patient_id"])
    return df[df["patient_id"].isin(included)][["patient_id", "response"]]


def _slice_set(prepared: PreparedCohort, manifest: Path) -> SliceSet:
    """Every included patient of the cache as one :class:`~pdstudy.learn.dataset.SliceSet`."""
    from pdstudy.learn.dataset import SliceSet  # lazy: torch loads only after prepare is timed

    return SliceSet(prepared, _included(prepared, manifest))


def bench_cache(prepared: PreparedCohort, manifest: Path, reference_rate: float, sizes: BenchSizes, smoke: bool,
                log: Log) -> dict[str, Any]:
    """``cache_speedup``: every cached slice as float [0, 1] tensors vs the reference loop's slices/s."""
    data = _slice_set(load_prepared(prepared.root), manifest)
    n = len(data)

    def epoch() -> None:
        for _ in data.eval_batches(batch_size=32, crop_size=REFERENCE_SIZE):
            pass

    epochs = max(3, sizes.repeats)
    log(f"cache: warm-up + {epochs} epochs of {n} slices")
    epoch()
    rate = n / statistics.median(_seconds(epoch) for _ in range(epochs))
    return _entry(
        "cache_speedup", rate / reference_rate, smoke,
        cache_slices_per_s=round(rate, 1), reference_slices_per_s=round(reference_rate, 1), slices=n,
        compared=(f"one epoch of the {n} cached slices as float32 [0, 1] tensors ({REFERENCE_SIZE} px, batches of 32, "
                  "SliceSet.eval_batches on the uint8 memmap) vs the reference loop decoding the same slices "
                  "(its rate from preprocess_speedup); median of epochs after a warm-up epoch"),
    )


# --------------------------------------------------------------------------- training pipeline


class _Step:
    """The training step of :func:`pdstudy.learn.train_model` (:func:`pdstudy.learn.train_step`, teacher loss)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> None:
        import torch  # lazy: torch loads only after prepare is timed

        from pdstudy.learn.train import input_norm, make_optimizer  # lazy: torch loads only after prepare is timed

        self.device, self.cfg = device, cfg
        self.cuda = device.type == "cuda"
        volumetric = any(p.ndim == 5 for p in model.parameters())  # Conv3d: channels-last is a 4D layout
        self.channels_last = cfg.channels_last and self.cuda and not volumetric
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.norm = input_norm(model)
        self.opt = make_optimizer(self.model, cfg)
        self.n = 0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        from pdstudy.learn.train import train_step  # lazy: torch loads only after prepare is timed

        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr
        loss = train_step(self.model, self.opt, x, y, cfg=self.cfg, device=self.device, norm=self.norm,
                          noise_seed=derive_seed(0, "noise", 0, self.n), channels_last=self.channels_last)
        float(loss)  # the training loop records every loss (a device sync on CUDA)
        self.n += 1


def _pipeline_batches(data: SliceSet, cfg: TrainConfig, loader: dict[str, Any]
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches of epoch 0, 1, ... through the real SliceSet, augmentation and loader."""
    for epoch in itertools.count():
        for _, x, y in data.train_batches(seed=0, epoch=epoch, batch_size=cfg.batch_size,
                                          slices_per_patient=cfg.slices_per_patient, augment=cfg.augment, **loader):
            yield x, y


def _run(step: _Step, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], n: int) -> tuple[int, float]:
    """Images and seconds of ``n`` steps (batch fetch included)."""
    images, t0 = 0, time.perf_counter()
    for _ in range(n):
        x, y = next(batches)
        step(x, y)
        images += len(y)
    if step.cuda:
        import torch  # lazy: torch loads only after prepare is timed

        torch.cuda.synchronize()
    return images, time.perf_counter() - t0


def measure_pipeline(model: torch.nn.Module, data: SliceSet, cfg: TrainConfig, device: torch.device, *,
                     warmup: int, steps: int, rounds: int) -> dict[str, Any]:
    """Images/s of the real pipeline vs in-memory batches, same model, batch and step (alternating rounds).

    ``data`` may be a :class:`~pdstudy.learn.volumes.VolumeSet`: the counts are then volumes (``unit``).
    """
    import torch  # lazy: torch loads only after prepare is timed

    from pdstudy.learn.dataset import loader_settings  # lazy: torch loads only after prepare is timed

    loader = loader_settings(device)
    step = _Step(model, cfg, device)
    pipe = _pipeline_batches(data, cfg, loader)
    try:
        kept = [next(pipe) for _ in range(min(4, data.steps_per_epoch(cfg.batch_size, cfg.slices_per_patient)))]
        memory = itertools.cycle([(x.to(device), y.to(device)) for x, y in kept])
        if step.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        _run(step, pipe, warmup)
        _run(step, memory, warmup)
        totals = {"pipeline": [0, 0.0], "memory": [0, 0.0]}
        for _ in range(rounds):
            for name, source in (("pipeline", pipe), ("memory", memory)):
                images, seconds = _run(step, source, steps)
                totals[name][0] += images
                totals[name][1] += seconds
    finally:
        pipe.close()
    pipe_rate, mem_rate = (totals[k][0] / totals[k][1] for k in ("pipeline", "memory"))
    out = {"pipeline_images_per_s": round(pipe_rate, 1), "in_memory_images_per_s": round(mem_rate, 1),
           "efficiency": round(pipe_rate / mem_rate, 3), "batch_size": cfg.batch_size,
           "crop_size": cfg.augment.crop_size,
           "image_size": int(data.prepared.images.shape[-1]), "steps_per_mode": steps * rounds,
           "warmup_steps": warmup, "loader_workers": loader["workers"], "pinned_memory": loader["pin_memory"],
           "precision": "bf16 autocast" if step.cuda and cfg.amp else "fp32",
           "channels_last": step.channels_last}
    if getattr(data, "volumetric", False):
        out.update(unit="volumes", volume_depth=data.depth)
    if step.cuda:
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def _largest_stand_in(profile: dict[str, Any]) -> tuple[str, str]:
    """(paper architecture, quick model) of the profile's baseline with the most parameters."""
    from pdstudy.learn.models import (  # lazy: torch loads only after prepare is timed
        build_model,
        count_parameters,
        get_architecture,
    )

    def quick(name: str) -> str:
        return QUICK_STAND_INS.get(name, name) if profile.get("stand_ins", True) else name

    # slice CNNs only: the benchmark's pipeline is the slice pipeline (the hybrid and the 3D model are in ``gpu``)
    cnns = [a for a in profile["baselines"] if get_architecture(quick(a)).kind == "cnn"]
    arch = max(cnns, key=lambda a: count_parameters(build_model(quick(a))))
    return arch, quick(arch)


def bench_pipeline_cpu(manifest: Path, cache: Path, sizes: BenchSizes, smoke: bool, log: Log) -> dict[str, Any]:
    """``pipeline_efficiency`` on CPU: the quick profile's largest stand-in at the quick profile's sizes."""
    import torch  # lazy: torch loads only after prepare is timed

    from pdstudy.learn.dataset import AugmentConfig  # lazy: torch loads only after prepare is timed
    from pdstudy.learn.models import build_model  # lazy: torch loads only after prepare is timed
    from pdstudy.learn.train import TrainConfig  # lazy: torch loads only after prepare is timed

    p = load_profile("quick")
    arch, name = _largest_stand_in(p)
    log(f"pipeline (cpu): {name} for {arch}, {p['image_size']} px, crop {p['crop_size']}, batch {p['batch_size']}")
    config = PrepareConfig(image_size=int(p["image_size"]), fov_mm=float(p["fov_mm"]))
    prepared = prepare(manifest, cache, config=config, show_progress=False)
    cfg = TrainConfig(batch_size=int(p["batch_size"]), optimizer=p["optimizer"], lr=float(p["lr"]),
                      weight_decay=float(p["weight_decay"]), beta=float(p["beta"]),
                      slices_per_patient=p["slices_per_patient"] or None,
                      augment=AugmentConfig(crop_size=int(p["crop_size"])), device="cpu")
    torch.manual_seed(0)
    result = measure_pipeline(build_model(name), _slice_set(prepared, manifest), cfg, torch.device("cpu"),
                              warmup=sizes.warmup_steps, steps=sizes.steps, rounds=sizes.rounds)
    return _entry("pipeline_efficiency", result.pop("efficiency"), smoke, model=name, stands_in_for=arch,
                  device="cpu", profile="quick", **result,
                  compared=("training images/s: SliceSet.train_batches (uint8 memmap, batched augmentation and crop) "
                            "+ the training step vs the same step on batches already in memory; alternating rounds "
                            "after warm-up"))


def bench_gpu(prepared: PreparedCohort, manifest: Path, sizes: BenchSizes, log: Log) -> dict[str, Any]:
    """``gpu``: images/s (volumes/s) of paper architectures at 224 px, bf16, real pipeline vs in memory."""
    import torch  # lazy: torch loads only after prepare is timed

    from pdstudy.learn.dataset import AugmentConfig  # lazy: torch loads only after prepare is timed
    from pdstudy.learn.models import build_model, is_volumetric  # lazy: torch loads only after prepare is timed
    from pdstudy.learn.train import TrainConfig  # lazy: torch loads only after prepare is timed
    from pdstudy.learn.volumes import VolumeSet  # lazy: torch loads only after prepare is timed

    p = load_profile("paper")
    torch.backends.cudnn.benchmark = True
    cfg = TrainConfig(batch_size=int(p["batch_size"]), lr=float(p["lr"]), beta=float(p["beta"]),
                      slices_per_patient=p["slices_per_patient"] or None,
                      augment=AugmentConfig(crop_size=int(p["crop_size"])), device="cuda")
    data = _slice_set(prepared, manifest)
    volumes = VolumeSet(prepared, _included(prepared, manifest), int(p.get("volume_depth") or GPU_VOLUME_DEPTH))
    out: dict[str, Any] = {}
    for arch in sizes.gpu_architectures:
        volumetric = is_volumetric(arch)
        log(f"gpu: {arch} at {cfg.augment.crop_size} px, batch {cfg.batch_size}"
            + (f" volumes of {volumes.depth} slices" if volumetric else ""))
        torch.manual_seed(0)
        out[arch] = measure_pipeline(build_model(arch), volumes if volumetric else data, cfg, torch.device("cuda"),
                                     warmup=max(3, sizes.warmup_steps), steps=sizes.gpu_steps, rounds=1)
        torch.cuda.empty_cache()
    return out



# --------------------------------------------------------------------------- quick run


def bench_quick_run(workdir: Path, log: Log) -> dict[str, Any]:
    """``quick_run_seconds``: ``pdstudy run --profile quick`` into a fresh run and data folder."""
    cmd = [sys.executable, "-m", "pdstudy", "run", "--profile", "quick", "--out", str(workdir / "run"),
           "--data-dir", str(workdir / "data"), "--quiet"]
    log("quick run: pdstudy run --profile quick (several minutes)")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=QUICK_RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return _entry("quick_run_seconds", None, False, reason=f"pdstudy run stopped after {QUICK_RUN_TIMEOUT_S} s")
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return _entry("quick_run_seconds", None, False, reason=f"pdstudy run failed (exit {proc.returncode})",
                      error_tail=tail, seconds_until_failure=round(seconds, 1))
    return _entry("quick_run_seconds", seconds, False,
                  compared="pdstudy run --profile quick, notebooks 00-10, synthetic cohort generated and prepared "
                           "in a fresh data folder; the virtual environment already exists")


# --------------------------------------------------------------------------- driver


def run_bench(*, smoke: bool = False, skip_run: bool = False, workdir: str | Path | None = None,
              log: Log = _stderr) -> dict[str, Any]:
    """Measure every figure and return the JSON-ready results."""
    sizes = SMOKE if smoke else FULL
    quick = load_profile("quick")
    slices = sizes.slices or int(quick["synth_slices"])
    dicom_size = sizes.dicom_size or int(quick["synth_size"])
    results: dict[str, Any] = {"smoke": smoke, "machine": {},
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                               "cohort": {"patients": sizes.patients, "slices_per_series": slices,
                                          "dicom_size": dicom_size, "generator": "pdstudy.data.synth"}}
    if smoke:
        results["note"] = "smoke run: tiny sizes to check that the benchmark works; the figures are not measurements"
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pdstudy-bench-", dir=workdir) as tmp:
        root = Path(tmp)
        log(f"synthetic cohort: {sizes.patients} patients, {slices} slices of {dicom_size} px")
        manifest = generate_cohort(root / "cohort", patients=sizes.patients, seed=0, slices=slices, size=dicom_size,
                                   sites=1, show_progress=False)
        results["preprocess_speedup"], prepared, ref_rate = bench_preprocess(manifest, root / "cache", sizes, smoke,
                                                                             log)
        results["machine"] = machine_info()  # imports torch: after the preprocessing figure
        results["cache_speedup"] = bench_cache(prepared, manifest, ref_rate, sizes, smoke, log)
        if results["machine"]["device"] == "cuda":
            results["gpu"] = bench_gpu(prepared, manifest, sizes, log)
            arch = "efficientnet_b7" if "efficientnet_b7" in results["gpu"] else next(iter(results["gpu"]))
            gpu = dict(results["gpu"][arch])
            results["pipeline_efficiency"] = _entry(
                "pipeline_efficiency", gpu.pop("efficiency"), smoke, model=arch, device="cuda", profile="paper", **gpu,
                compared="training images/s: real SliceSet + worker loader + pinned memory + step vs the same step on "
                         "batches already on the GPU")
        else:
            results["pipeline_efficiency"] = bench_pipeline_cpu(manifest, root / "cache", sizes, smoke, log)
        if smoke:
            results["quick_run_seconds"] = _entry("quick_run_seconds", None, smoke,
                                                  reason="not measured in --smoke mode")
        elif skip_run:
            results["quick_run_seconds"] = _entry("quick_run_seconds", None, smoke, reason="skipped (--skip-run)")
        else:
            results["quick_run_seconds"] = bench_quick_run(root / "quick", log)
    return results


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3g}{unit}"


def format_bench_table(results: dict[str, Any]) -> str:
    """The headline figures (and the GPU rows when present) as a plain-text table."""
    rows = [("figure", "value", "goal", "pass", "measured")]
    details = {
        "preprocess_speedup": lambda e: f"prepare {e['prepare_slices_per_s']} vs reference "
                                        f"{e['reference_slices_per_s']} slices/s ({e['slices']} slices)",
        "cache_speedup": lambda e: f"cache {e['cache_slices_per_s']} vs reference "
                                   f"{e['reference_slices_per_s']} slices/s",
        "pipeline_efficiency": lambda e: f"{e['model']} ({e['device']}): pipeline {e['pipeline_images_per_s']} vs "
                                         f"in memory {e['in_memory_images_per_s']} images/s",
        "quick_run_seconds": lambda e: e.get("reason", "pdstudy run --profile quick"),
    }
    for key, detail in details.items():
        e = results[key]
        unit = " s" if key == "quick_run_seconds" else "x"
        flag = {True: "PASS", False: "FAIL", None: "-"}[e["pass"]]
        rows.append((key, _fmt(e["value"], unit), f"{e['goal_op']} {e['goal']:g}", flag, detail(e)))
    for arch, g in results.get("gpu", {}).items():
        unit = f"volumes/s ({g['volume_depth']} slices)" if g.get("unit") == "volumes" else "images/s"
        rows.append((f"gpu {arch}", _fmt(g["efficiency"]), "", "",
                     f"pipeline {g['pipeline_images_per_s']} vs in memory {g['in_memory_images_per_s']} {unit}, "
                     f"peak {g['peak_memory_gib']} GiB"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    m = results["machine"]
    lines.append(f"machine: {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
                 f"{m['device']} {m['device_name']}, Python {m['python']}")
    if results.get("smoke"):
        lines.append("SMOKE RUN: tiny sizes; these figures are not measurements.")
    return "\n".join(lines)


__all__ = ["FULL", "GOALS", "SMOKE", "BenchSizes", "format_bench_table", "kept_cohort", "kept_files", "machine_info",
           "measure_pipeline", "reference_loop", "run_bench"]
