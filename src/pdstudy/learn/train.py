"""One training loop for teachers and students, with exact resume, and batched slice inference.

Warmup then cosine learning rate (Eq. 2; per batch or per epoch), atomic per-epoch checkpoints with their
SHA-256, model selection, top-k patient scores. See docs/training.md, "The training loop".
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from pdstudy.core.hashing import derive_seed, sha256_file
from pdstudy.core.io import atomic_path, write_json
from pdstudy.core.params import PARAMETER_CHOICES
from pdstudy.learn import distributed
from pdstudy.learn.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    SliceSet,
    loader_settings,
    to_model_input,
)
from pdstudy.learn.device import resolve_device
from pdstudy.learn.losses import distillation_loss, label_smoothing_ce
from pdstudy.learn.volumes import VolumeSet
from pdstudy.stats import delong_auc_ci

OPTIMIZERS = PARAMETER_CHOICES["optimizer"]
SCHEDULES = PARAMETER_CHOICES["schedule"]
SELECTIONS = PARAMETER_CHOICES["select"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training stage (documented defaults per profile in ``pdstudy/core/profiles/*.yaml``)."""

    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 3e-4
    weight_decay: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_lr: float = 1e-6
    schedule: str = "batch"
    beta: float = 0.1
    alpha: float = 0.5
    temperature: float = 4.0
    kd_convention: str = "algorithm1"
    slices_per_patient: int | None = 16
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    eval_batch_size: int = 128
    select: str = "last"
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}"),
            (self.select in SELECTIONS, f"select must be one of {list(SELECTIONS)}, got {self.select!r}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0.0 <= self.beta < 1.0, f"beta (label smoothing) must be in [0, 1), got {self.beta}"),
            (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
            (self.temperature > 0, f"temperature must be > 0, got {self.temperature}"),
            (self.slices_per_patient is None or self.slices_per_patient >= 1,
             f"slices_per_patient must be >= 1 or None, got {self.slices_per_patient}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_norm(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Input mean and std the model's weights expect (timm ``pretrained_cfg``; ImageNet otherwise)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def lr_at(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    base_lr: float,
    min_lr: float,
    schedule: str = "batch",
    steps_per_epoch: int | None = None,
) -> float:
    """Learning rate at global step ``step``: linear warmup to ``base_lr``, then cosine decay to ``min_lr`` (Eq. 2).

    Parameters
    ----------
    step : int
        Global optimisation step (0-based), ``epoch * steps_per_epoch + step in epoch``.
    total_steps : int
        Steps of the whole training.
    warmup_steps : int
        Steps of the linear warmup; step ``s < warmup_steps`` gets ``base_lr * (s + 1) / warmup_steps``.
    base_lr, min_lr : float
        Peak learning rate and the floor of the cosine.
    schedule : {"batch", "epoch"}
        ``"batch"``: the cosine moves every step (Eq. 2). ``"epoch"``: the warmup still ramps every
        step, but after it the cosine moves once per epoch (Algorithm 1): every step of an epoch gets
        the value of the epoch's first step, and an epoch that starts inside the warmup stays at
        ``base_lr`` once the warmup is over.
    steps_per_epoch : int, optional
        Steps per epoch; required with ``schedule="epoch"``.

    Returns
    -------
    float
        The learning rate.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    if schedule == "epoch" and (steps_per_epoch is None or steps_per_epoch < 1):
        raise ValueError(f"steps_per_epoch must be an int >= 1 with schedule='epoch', got {steps_per_epoch!r}")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    at = step if schedule == "batch" else (step // steps_per_epoch) * steps_per_epoch
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (at - warmup_steps) / span))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov momentum); no weight decay on biases and norm parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, state: dict[str, Any]) -> str:
    """Write ``state`` atomically with a ``.sha256`` sidecar; returns the hash.

    Serialised in memory first: ``torch.save`` to a file names its archive after the (temporary)
    file name, so equal weights would hash differently and break stage-cache keys.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with atomic_path(path.with_name(path.name + ".sha256")) as tmp:
        tmp.write_text(digest + "\n")
    return digest


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """Load a checkpoint whose hash matches its sidecar; None (and a warning) if corrupt or unhashed.

    Only tensors and plain containers are unpickled (``weights_only=True``).
    """
    sidecar = path.with_name(path.name + ".sha256")
    if not path.exists() or not sidecar.exists():
        return None
    if sha256_file(path) != sidecar.read_text().strip():
        warnings.warn(f"checkpoint {path.name} does not match its SHA-256; ignored and retrained", stacklevel=2)
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def _latest_valid(ckpt_dir: Path) -> dict[str, Any] | None:
    for path in sorted(ckpt_dir.glob("epoch_*.pt"), reverse=True):
        state = load_checkpoint(path)
        if state is not None:
            return state
    return None


# --------------------------------------------------------------------------- training


@dataclass
class TrainOutcome:
    """Result of :func:`train_model`."""

    model: nn.Module
    history: list[dict[str, float]]
    wall_seconds: float
    resumed_from_epoch: int | None
    selected_epoch: int


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def train_step(
    forward: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    cfg: TrainConfig,
    device: torch.device,
    norm: tuple[tuple[float, ...], tuple[float, ...]],
    noise_seed: int,
    teacher: nn.Module | None = None,
    teacher_norm: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    channels_last: bool = False,
    loss_scale: float | None = None,
) -> torch.Tensor:
    """One optimisation step on a batch in [0, 1]; returns the detached loss.

    Teacher (``teacher is None``): label-smoothed CE (Eq. 3); student: :func:`pdstudy.learn.losses.distillation_loss`.
    Dropout and stochastic depth draw from ``noise_seed``; ``loss_scale`` weights the backward pass (DDP shards).

    Parameters
    ----------
    forward : nn.Module
        The model being trained (possibly DDP-wrapped or compiled).
    opt : torch.optim.Optimizer
        Its optimiser.
    x : Tensor
        The augmented batch ``(B, 1, H, W)`` in [0, 1] (not yet normalised), or volumes ``(B, 1, D, H, W)``.
    y : Tensor
        Labels ``(B,)`` (1 = ``poor``).
    cfg : TrainConfig
    device : torch.device
    norm : (mean, std)
        Input normalisation of the trained model (:func:`input_norm`).
    noise_seed : int
        Seed of dropout and stochastic depth in this step.
    teacher : nn.Module, optional
        Frozen teacher (distillation); it sees the same augmented batch, normalised with its own statistics.
    teacher_norm : (mean, std), optional
        The teacher's input normalisation; default ``input_norm(teacher)``. Teacher and student may
        expect different statistics (e.g. ImageNet's and Inception's 0.5/0.5).
    channels_last : bool
        Channels-last memory format for the inputs (CUDA).
    loss_scale : float, optional
        Factor on the loss before ``backward`` (a DDP shard's share of the global batch).

    Returns
    -------
    Tensor
        The (unscaled) loss, detached.
    """
    raw = x.to(device, non_blocking=True)
    x = to_model_input(raw, *norm)
    x_teacher = None
    if teacher is not None:
        teacher_norm = input_norm(teacher) if teacher_norm is None else teacher_norm
        x_teacher = x if _same_norm(teacher_norm, norm) else to_model_input(raw, *teacher_norm)
    y = y.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        if x_teacher is not None:
            x_teacher = x_teacher.contiguous(memory_format=torch.channels_last)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(noise_seed)
        with _autocast(device, cfg.amp):
            logits = forward(x)
            if teacher is None:
                loss = label_smoothing_ce(logits.float(), y, cfg.beta)
            else:
                with torch.no_grad():
                    t_logits = teacher(x_teacher)
                loss = distillation_loss(logits.float(), t_logits.float(), y, alpha=cfg.alpha,
                                         temperature=cfg.temperature, beta=cfg.beta, convention=cfg.kd_convention)
    opt.zero_grad(set_to_none=True)
    (loss if loss_scale is None else loss * loss_scale).backward()
    opt.step()
    return loss.detach()


def _same_norm(a: tuple[tuple[float, ...], tuple[float, ...]], b: tuple[tuple[float, ...], tuple[float, ...]]) -> bool:
    """Whether two ``(mean, std)`` pairs are the same statistics."""
    return tuple(map(tuple, a)) == tuple(map(tuple, b))


def train_model(
    model: nn.Module,
    train_set: SliceSet,
    cfg: TrainConfig,
    *,
    seed: int,
    ckpt_dir: str | Path,
    teacher: nn.Module | None = None,
    val_set: SliceSet | None = None,
    top_k: int = 10,
    progress: bool = True,
    desc: str = "train",
    stop_after_steps: int | None = None,
) -> TrainOutcome:
    """Train ``model`` (a teacher, or a student of ``teacher``) with exact resume.

    Parameters
    ----------
    model : nn.Module
        Freshly built (ImageNet-initialised) network; its state is replaced on resume.
    train_set : SliceSet or VolumeSet
        Training patients' slices (or one volume per patient, :class:`pdstudy.learn.volumes.VolumeSet`).
    cfg : TrainConfig
    seed : int
        Every random draw derives from ``(seed, epoch, step)``.
    ckpt_dir : path
        Per-epoch checkpoints (``epoch_###.pt`` + ``.sha256``); resumed from when present.
    teacher : nn.Module, optional
        Frozen teacher for distillation; run in eval mode (no noise) on the same augmented batch,
        normalised with the teacher's own ``pretrained_cfg`` mean and std (:func:`input_norm`).
    val_set : SliceSet or VolumeSet, optional
        Validation patients (carved from training patients) for ``select="best_val"``.
    top_k : int
        Patient score = mean of the top-k slice probabilities (for the validation AUC; a volume's
        probability for volumes).
    stop_after_steps : int, optional
        Stop (without saving) after this many steps of this call: simulates a crash in tests.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    # channels-last is a 4D layout: volumes (and Conv3d weights) keep the default one
    use_cl = cfg.channels_last and device.type == "cuda" and not getattr(train_set, "volumetric", False)
    loader = loader_settings(device)  # CUDA: worker processes + pinned memory; CPU: batched in-process
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
    model = model.to(device)
    if use_cl:
        model = model.to(memory_format=torch.channels_last)
    world = distributed.world()  # torchrun: shard each global batch, DDP, rank 0 evaluates and writes
    model = distributed.sync_batchnorm(model, device)
    if teacher is not None:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    opt = make_optimizer(model, cfg)
    if cfg.select == "best_val" and val_set is None:
        raise ValueError("select='best_val' needs a validation set carved from the training patients")
    steps = train_set.steps_per_epoch(cfg.batch_size, cfg.slices_per_patient)
    total = steps * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps))

    history: list[dict[str, float]] = []
    start_epoch, resumed = 0, None
    distributed.barrier()  # every rank resumes from the checkpoints rank 0 wrote
    state = _latest_valid(ckpt_dir)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = json.loads(state["history"])
        start_epoch = resumed = int(state["epoch"]) + 1
    forward = distributed.wrap_ddp(model, device)
    forward = torch.compile(forward) if cfg.compile else forward
    shard = (world.rank, world.size) if world.active else None
    n_epoch = train_set.slices_per_epoch(cfg.slices_per_patient)
    norm = input_norm(model)
    teacher_norm = input_norm(teacher) if teacher is not None else None  # the teacher's own statistics

    t0 = time.perf_counter()
    done_steps = 0
    bar = tqdm(total=total, initial=start_epoch * steps, desc=desc, unit="step", leave=False,
               disable=not progress or not world.main)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        losses = []
        for step, x, y in train_set.train_batches(seed=seed, epoch=epoch, batch_size=cfg.batch_size,
                                                  slices_per_patient=cfg.slices_per_patient, augment=cfg.augment,
                                                  shard=shard, **loader):
            n_global = min(cfg.batch_size, n_epoch - step * cfg.batch_size)
            if world.active and n_global < 2 * world.size:
                continue  # a last batch this small would leave a process < 2 slices (batch norm needs 2)
            g = epoch * steps + step
            lr = lr_at(g, total_steps=total, warmup_steps=warmup, base_lr=cfg.lr, min_lr=cfg.min_lr,
                       schedule=cfg.schedule, steps_per_epoch=steps)
            for group in opt.param_groups:
                group["lr"] = lr
            noise_seed = (derive_seed(seed, "noise", epoch, step) if not world.active
                          else derive_seed(seed, "noise", epoch, step, "rank", world.rank))
            # DDP averages gradients over ranks: weight each shard by its share of the global batch
            scale = distributed.shard_loss_scale(len(y), n_global) if world.active else None
            loss = train_step(forward, opt, x, y, cfg=cfg, device=device, norm=norm, noise_seed=noise_seed,
                              teacher=teacher, teacher_norm=teacher_norm, channels_last=use_cl, loss_scale=scale)
            if world.active:
                loss = distributed.global_mean(loss, len(y), n_global)
            losses.append(float(loss.detach()))
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", lr=f"{lr:.2e}")
            done_steps += 1
            if stop_after_steps is not None and done_steps >= stop_after_steps:
                bar.close()
                raise KeyboardInterrupt(f"stopped after {done_steps} steps (simulated interruption)")
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": lr}
        if val_set is not None and world.main:
            scores = patient_scores(val_set, predict_slices(model, val_set, cfg, device=device), k=top_k)
            y_val = np.array([val_set.labels[p] for p in scores.index])
            record["val_auc"] = float(delong_auc_ci(y_val, scores.to_numpy())[0]) if len(set(y_val)) == 2 else math.nan
        history.append(distributed.broadcast_object(record))
        if world.main:
            save_checkpoint(ckpt_dir / f"epoch_{epoch:03d}.pt", {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "history": json.dumps(history),
            })
            if cfg.select == "best_val" and _is_best(history):
                save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
            _prune(ckpt_dir, cfg.keep_checkpoints)
    bar.close()
    selected = len(history) - 1
    if cfg.select == "best_val":
        distributed.barrier()
        best = load_checkpoint(ckpt_dir / "best.pt")
        if best is not None:
            model.load_state_dict(best["model"])
            selected = int(best["epoch"])
    if world.main:
        write_json(ckpt_dir / "history.json", history)
    return TrainOutcome(model=model, history=history, wall_seconds=time.perf_counter() - t0,
                        resumed_from_epoch=resumed, selected_epoch=selected)


def _is_best(history: list[dict[str, float]]) -> bool:
    aucs = [h.get("val_auc", math.nan) for h in history]
    last = aucs[-1]
    return not math.isnan(last) and all(math.isnan(a) or last > a for a in aucs[:-1])


def _prune(ckpt_dir: Path, keep: int) -> None:
    for path in sorted(ckpt_dir.glob("epoch_*.pt"))[:-keep]:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)


# --------------------------------------------------------------------------- inference


@torch.inference_mode()
def predict_slices(model: nn.Module, data: SliceSet | VolumeSet, cfg: TrainConfig, *,
                   device: torch.device | None = None) -> dict[int, float]:
    """Probability of class 1 (``poor``) for every slice of ``data``: ``{cache row: p}``.

    For a :class:`~pdstudy.learn.volumes.VolumeSet`, one probability per patient's volume, keyed by
    its :meth:`~pdstudy.learn.volumes.VolumeSet.key_row`.
    """
    device = device or resolve_device(cfg.device)
    was_training = model.training
    model.eval()
    out: dict[int, float] = {}
    for rows, x in data.eval_batches(batch_size=cfg.eval_batch_size, crop_size=cfg.augment.crop_size):
        x = to_model_input(x.to(device), *input_norm(model))
        if device.type == "cuda" and cfg.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, cfg.amp):
            p = torch.softmax(model(x).float(), dim=1)[:, 1].cpu().numpy()
        out.update(zip(rows.tolist(), p.tolist()))
    model.train(was_training)
    return out


def top_k_mean(probs: np.ndarray, k: int) -> float:
    """Mean of the ``k`` highest slice probabilities (all of them when fewer)."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    probs = np.sort(np.asarray(probs, dtype=float))[::-1]
    return float(probs[:k].mean())


def patient_scores(data: SliceSet | VolumeSet, slice_probs: dict[int, float], *, k: int = 10):
    """Patient score = mean of the top-k slice probabilities of class 1, as a Series by patient ID.

    For a :class:`~pdstudy.learn.volumes.VolumeSet` the score is the volume's probability (no top-k).
    """
    if isinstance(data, VolumeSet):
        return pd.Series({pid: float(slice_probs[data.key_row(pid)]) for pid in data.patient_ids}, name="score")
    return pd.Series({pid: top_k_mean(np.array([slice_probs[r] for r in data.rows[pid]]), k)
                      for pid in data.patient_ids}, name="score")
