"""Batches of CT slices from the slice cache, with the paper's augmentation done batched on tensors.

Every random draw derives from ``(seed, epoch, step)``, so resumed and data-parallel runs draw what one
uninterrupted process would. See docs/training.md, "Slices and augmentation".
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pdstudy.core.hashing import derive_seed
from pdstudy.core.vocab import label_of
from pdstudy.data.cache import PreparedCohort
from pdstudy.learn.distributed import shard_bounds

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def loader_settings(device: torch.device) -> dict[str, int | bool]:
    """Batch loading for ``device``: ``{"workers": n, "pin_memory": bool}`` for :meth:`SliceSet.train_batches`.

    CPU: no worker processes (the cores are shared by loading and compute; augmentation is
    batched in-process). CUDA: worker processes prepare the next batches in pinned memory while
    the GPU trains (one core left to the main process, at most 8 workers).
    """
    if device.type != "cuda":
        return {"workers": 0, "pin_memory": False}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"workers": max(1, min(8, cores - 1)), "pin_memory": True}


@dataclass(frozen=True)
class AugmentConfig:
    """Random geometric augmentation of the paper (flip, rotation, scaling, shift) and the crop.

    Parameters
    ----------
    crop_size : int
        Side of the random (training) or centre (evaluation) crop; 224 of 256 in the paper.
    hflip : float
        Probability of a left-right flip.
    rotate_deg : float
        Rotations drawn uniformly from ``[-rotate_deg, rotate_deg]``.
    scale : (float, float)
        Isotropic zoom range.
    shift : float
        Translation as a fraction of the image side, drawn from ``[-shift, shift]`` per axis.
    """

    crop_size: int = 224
    hflip: float = 0.5
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.08


def check_crop(image_size: int, crop_size: int) -> None:
    """Raise a clear error when the crop cannot fit in the cached image."""
    if not 1 <= crop_size <= image_size:
        raise ValueError(f"crop_size must be between 1 and the cached image_size ({image_size}), got {crop_size}")


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator, *,
                  batch: int | None = None, offset: int = 0) -> torch.Tensor:
    """Augment a batch ``(B, 1, H, W)`` in [0, 1] and random-crop it to ``cfg.crop_size``.

    ``x`` may be the shard ``[offset, offset + B)`` of a global batch of ``batch`` images
    (data-parallel training): the parameters are drawn for the whole global batch, so each image
    is augmented exactly as it would be in one process.
    """
    b, _, h, w = x.shape
    params = _draw_augmentation(b, h, w, cfg, generator, batch=batch, offset=offset)
    if b == 0:
        return x.new_zeros((0, 1, cfg.crop_size, cfg.crop_size))
    return _warp_and_crop(x, params, cfg.crop_size)


def _draw_augmentation(b: int, h: int, w: int, cfg: AugmentConfig, generator: torch.Generator, *,
                       batch: int | None, offset: int) -> tuple[torch.Tensor, ...]:
    """Rotation, zoom, shifts, flip and crop corner of images ``[offset, offset + b)`` of a batch of ``batch``."""
    n = b if batch is None else batch
    if offset < 0 or offset + b > n:
        raise ValueError(f"shard [{offset}, {offset + b}) does not fit in a batch of {n}")
    check_crop(min(h, w), cfg.crop_size)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    c = cfg.crop_size
    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180.0
    zoom = uniform(*cfg.scale)
    tx, ty = uniform(-cfg.shift, cfg.shift) * 2.0, uniform(-cfg.shift, cfg.shift) * 2.0
    flip = torch.where(torch.rand(n, generator=generator) < cfg.hflip, -1.0, 1.0)
    top = torch.randint(0, h - c + 1, (n,), generator=generator)
    left = torch.randint(0, w - c + 1, (n,), generator=generator)
    params = (angle, zoom, tx, ty, flip, top, left)
    if n != b:
        keep = slice(offset, offset + b)
        params = tuple(t[keep] for t in params)
    return params


def _warp_and_crop(x: torch.Tensor, params: tuple[torch.Tensor, ...], c: int) -> torch.Tensor:
    """Apply one drawn transform per image of ``(B, 1, H, W)``, then crop each at its corner to ``c`` x ``c``."""
    angle, zoom, tx, ty, flip, top, left = params
    b = x.shape[0]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    rows = top[:, None] + torch.arange(c)[None]
    cols = left[:, None] + torch.arange(c)[None]
    idx = torch.arange(b)[:, None, None]
    return x[:, 0][idx, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def augment_volumes(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator, *,
                    batch: int | None = None, offset: int = 0) -> torch.Tensor:
    """Augment volumes ``(B, 1, D, H, W)`` in [0, 1]: one flip, rotation, zoom, shift and crop per volume.

    Every slice of a volume gets its volume's transform (drawn as :func:`augment_batch` draws one
    image's), so the volume stays aligned along z; nothing is drawn along z. ``batch`` and ``offset``
    as in :func:`augment_batch` (a shard of a global batch of volumes).
    """
    if x.ndim != 5 or x.shape[1] != 1:
        raise ValueError(f"volumes must have shape (B, 1, D, H, W), got {tuple(x.shape)}")
    b, _, d, h, w = x.shape
    params = _draw_augmentation(b, h, w, cfg, generator, batch=batch, offset=offset)
    c = cfg.crop_size
    if b == 0 or d == 0:
        return x.new_zeros((b, 1, d, c, c))
    per_slice = tuple(t.repeat_interleave(d) for t in params)
    out = _warp_and_crop(x.reshape(b * d, 1, h, w), per_slice, c)
    return out.reshape(b, 1, d, c, c)


def centre_crop(x: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Centre crop the last two axes (``(B, C, H, W)`` or volumes ``(B, C, D, H, W)``) to ``crop_size``."""
    h, w = x.shape[-2:]
    check_crop(min(h, w), crop_size)
    top, left = (h - crop_size) // 2, (w - crop_size) // 2
    return x[..., top:top + crop_size, left:left + crop_size]


def to_model_input(
    x: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> torch.Tensor:
    """Grey ``(B, 1, H, W)`` in [0, 1] -> ``(B, len(mean), H, W)`` normalised as the model's weights expect.

    The slice is replicated to every channel, so ImageNet weights apply unchanged. Volumes
    ``(B, 1, D, H, W)`` are normalised the same way along their channel axis.
    """
    channels = len(mean)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x = x.expand(-1, channels, *x.shape[2:]) if channels > 1 else x
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


class SliceSet:
    """The slices of a set of patients in a prepared cohort, with their labels (1 = poor).

    Parameters
    ----------
    prepared : PreparedCohort
        The slice cache.
    patients : DataFrame
        Rows with ``patient_id`` and ``response``; every patient must be in the cache.
    """

    def __init__(self, prepared: PreparedCohort, patients: pd.DataFrame) -> None:
        self.prepared = prepared
        self.patient_ids = [str(p) for p in patients["patient_id"]]
        self.labels = {str(p): label_of(r) for p, r in zip(patients["patient_id"], patients["response"])}
        self.rows = {pid: prepared.patient_slices(pid) for pid in self.patient_ids}

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values())

    def epoch_rows(self, seed: int, epoch: int, slices_per_patient: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Shuffled cache rows and labels for one training epoch.

        With ``slices_per_patient`` each patient contributes that many of its slices, drawn
        afresh every epoch (all of them when it has fewer), so large and small patients weigh
        alike.
        """
        rng = np.random.default_rng(derive_seed(seed, "epoch-rows", epoch))
        rows, labels = [], []
        for pid in self.patient_ids:
            r = self.rows[pid]
            if slices_per_patient and len(r) > slices_per_patient:
                r = np.sort(rng.choice(r, size=slices_per_patient, replace=False))
            rows.append(r)
            labels.append(np.full(len(r), self.labels[pid]))
        rows_a, labels_a = np.concatenate(rows), np.concatenate(labels)
        order = rng.permutation(len(rows_a))
        return rows_a[order], labels_a[order]

    def load(self, rows: np.ndarray) -> torch.Tensor:
        """Cache rows -> float tensor ``(B, 1, H, W)`` in [0, 1]."""
        idx = np.sort(rows)
        inverse = np.argsort(np.argsort(rows))
        arr = np.asarray(self.prepared.images[idx])[inverse]
        # One pass uint8 -> float32 / 255 (bitwise equal to torch's .float().div_(255.0), several times faster).
        return torch.from_numpy(np.divide(arr, np.float32(255.0), dtype=np.float32)).unsqueeze(1)

    def train_batches(
        self, *, seed: int, epoch: int, batch_size: int, slices_per_patient: int | None, augment: AugmentConfig,
        start_step: int = 0, workers: int = 0, pin_memory: bool = False, shard: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(step, images, labels)`` of one epoch; images augmented, cropped, not yet normalised.

        ``workers > 0`` builds the batches in DataLoader worker processes (CUDA, see
        :func:`loader_settings`); ``pin_memory`` returns them in page-locked memory. Every batch
        depends only on ``(seed, epoch, step)``, so both paths yield identical tensors.
        ``shard=(rank, world_size)`` yields only that process's contiguous share of each global
        batch (:func:`pdstudy.learn.distributed.shard_bounds`), augmented as in the global batch.
        """
        steps = _EpochSteps(self, *self.epoch_rows(seed, epoch, slices_per_patient), seed=seed, epoch=epoch,
                            batch_size=batch_size, augment=augment, start_step=start_step, shard=shard)
        if workers > 0:
            loader = torch.utils.data.DataLoader(steps, batch_size=None, shuffle=False, num_workers=workers,
                                                 pin_memory=pin_memory and torch.cuda.is_available())
            for i, (x, y) in enumerate(loader):
                yield start_step + i, x, y
            return
        pin = pin_memory and torch.cuda.is_available()
        for i in range(len(steps)):
            x, y = steps[i]
            yield start_step + i, (x.pin_memory() if pin else x), y

    def slices_per_epoch(self, slices_per_patient: int | None) -> int:
        """Training slices drawn per epoch (all of a patient's slices when ``slices_per_patient`` is None)."""
        return sum(min(len(r), slices_per_patient) if slices_per_patient else len(r) for r in self.rows.values())

    def steps_per_epoch(self, batch_size: int, slices_per_patient: int | None) -> int:
        n = self.slices_per_epoch(slices_per_patient)
        return math.ceil(n / batch_size)

    def eval_batches(self, *, batch_size: int, crop_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(cache rows, centre-cropped images)`` over every slice of every patient, in order."""
        rows = np.concatenate([self.rows[p] for p in self.patient_ids])
        for i in range(0, len(rows), batch_size):
            r = rows[i:i + batch_size]
            yield r, centre_crop(self.load(r), crop_size)


class _EpochSteps(torch.utils.data.Dataset):
    """One epoch's augmented training batches, indexed by step (from ``start_step``), for DataLoader workers.

    Subclasses change what a batch item is through :attr:`_seed_tag` and :meth:`_augment` (volumes:
    ``pdstudy.learn.volumes``)."""

    #: Name of the augmentation's random stream (with seed, epoch and step).
    _seed_tag = "augment"

    def __init__(self, data: SliceSet, rows: np.ndarray, labels: np.ndarray, *, seed: int, epoch: int,
                 batch_size: int, augment: AugmentConfig, start_step: int = 0,
                 shard: tuple[int, int] | None = None) -> None:
        self.data, self.rows, self.labels = data, rows, labels
        self.seed, self.epoch, self.batch_size, self.augment = seed, epoch, batch_size, augment
        self.start_step = start_step
        self.shard = shard
        self.n_steps = math.ceil(len(rows) / batch_size)

    def __len__(self) -> int:
        return max(0, self.n_steps - self.start_step)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        step = self.start_step + i
        if not 0 <= i < len(self):
            raise IndexError(f"step {step} out of range (epoch has {self.n_steps} steps)")
        sl = slice(step * self.batch_size, (step + 1) * self.batch_size)
        rows, labels = self.rows[sl], self.labels[sl]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self._seed_tag, self.epoch, step))
        if self.shard is not None:  # data-parallel: this process's contiguous share of the global batch
            lo, hi = shard_bounds(len(rows), *self.shard)
            x = self._augment(rows[lo:hi], gen, batch=len(rows), offset=lo)
            return x, torch.from_numpy(labels[lo:hi]).long()
        return self._augment(rows, gen), torch.from_numpy(labels).long()

    def _augment(self, rows, gen: torch.Generator, **kwargs) -> torch.Tensor:
        return augment_batch(self.data.load(rows), self.augment, gen, **kwargs)
