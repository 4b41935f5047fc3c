"""One CT volume per patient, built from the slice cache, for the volumetric model (3D ResNet-50).

A patient's kept portal-venous slices (the rows of the slice cache, head to feet) are resampled along z
to a fixed number of slices, ``depth``, by linear interpolation at equally spaced positions between the
first and the last slice. :class:`VolumeSet` gives the training loop and inference the same interface as
:class:`pdstudy.learn.dataset.SliceSet`, with one item per patient. See docs/training.md, "The 3D ResNet-50".
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch

from pdstudy.core.hashing import derive_seed
from pdstudy.core.vocab import label_of
from pdstudy.data.cache import PreparedCohort
from pdstudy.learn.dataset import AugmentConfig, _EpochSteps, augment_volumes, centre_crop

__all__ = ["VolumeSet", "depth_positions", "resample_depth"]


def resample_depth(images: np.ndarray, z_mm: np.ndarray | None, depth: int) -> np.ndarray:
    """Slices ``(n, H, W)`` (uint8 or float) -> ``(depth, H, W)`` float32 in [0, 1] by linear interpolation along z.

    Parameters
    ----------
    images : ndarray
        One patient's slices in cache order (head to feet); uint8 is divided by 255.
    z_mm : ndarray or None
        Their positions (mm). When strictly monotonic, the volume samples ``depth`` equally spaced
        positions between the first and last slice; otherwise (or None) equally spaced slice indices.
    depth : int
        Slices of the volume (>= 1). One slice is repeated; ``depth == n`` with equal spacing returns
        the slices unchanged.

    Returns
    -------
    ndarray
        float32 ``(depth, H, W)``.
    """
    if depth < 1:
        raise ValueError(f"volume depth must be >= 1, got {depth}")
    arr = np.asarray(images)
    if arr.ndim != 3 or len(arr) == 0:
        raise ValueError(f"images must be slices (n, H, W) with n >= 1, got shape {arr.shape}")
    vol = arr.astype(np.float32) / np.float32(255.0) if arr.dtype == np.uint8 else arr.astype(np.float32)
    n = len(vol)
    if n == 1:
        return np.repeat(vol, depth, axis=0)
    position = depth_positions(z_mm, n, depth)
    lo = np.clip(np.floor(position).astype(int), 0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    weight = (position - lo).astype(np.float32)[:, None, None]
    return (1.0 - weight) * vol[lo] + weight * vol[hi]


def depth_positions(z_mm: np.ndarray | None, n: int, depth: int) -> np.ndarray:
    """Where each slice of a resampled volume lies in the patient's stack of ``n`` cached slices.

    The positions :func:`resample_depth` interpolates at: fractional indices into the stack (0 = its first
    slice, ``n - 1`` its last); volume slice ``j`` blends stack slices ``floor(p[j])`` and the next.

    Parameters
    ----------
    z_mm : ndarray or None
        The slices' positions (mm), as for :func:`resample_depth`.
    n : int
        Cached slices of the patient (>= 1).
    depth : int
        Slices of the volume (>= 1).

    Returns
    -------
    ndarray
        float64 ``(depth,)`` in ``[0, n - 1]``.
    """
    if depth < 1 or n < 1:
        raise ValueError(f"volume depth and slice count must be >= 1, got depth={depth}, n={n}")
    if n == 1:
        return np.zeros(depth)
    target = np.linspace(0.0, 1.0, depth)
    z = None if z_mm is None else np.asarray(z_mm, dtype=np.float64)
    if z is not None and len(z) == n and (np.all(np.diff(z) > 0) or np.all(np.diff(z) < 0)):
        return np.interp(target, (z - z[0]) / (z[-1] - z[0]), np.arange(n, dtype=np.float64))
    return target * (n - 1)


class VolumeSet:
    """One volume per patient of a prepared cohort, with labels (1 = poor): the 3D counterpart of ``SliceSet``.

    Parameters
    ----------
    prepared : PreparedCohort
        The slice cache.
    patients : DataFrame
        Rows with ``patient_id`` and ``response``; every patient must be in the cache.
    depth : int
        Slices per volume (:func:`resample_depth`).

    Notes
    -----
    ``rows[pid]`` are the patient's cache rows, as in ``SliceSet`` (so ``len(rows[pid])`` is the number of
    cached slices its volume is built from); a volume's prediction is keyed by :meth:`key_row`, its first
    cache row, so prediction dictionaries and ``slice_probs.csv`` hold one row per patient. Counts
    named after slices in the training loop (``slices_per_epoch``) count volumes here.
    """

    volumetric = True

    def __init__(self, prepared: PreparedCohort, patients: pd.DataFrame, depth: int) -> None:
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"volume_depth must be an integer >= 1, got {depth!r}")
        self.prepared = prepared
        self.depth = int(depth)
        self.patient_ids = [str(p) for p in patients["patient_id"]]
        self.labels = {str(p): label_of(r) for p, r in zip(patients["patient_id"], patients["response"])}
        self.rows = {pid: prepared.patient_slices(pid) for pid in self.patient_ids}
        z = prepared.index["z_mm"] if "z_mm" in prepared.index.columns else None
        self._z = {pid: None if z is None else z.loc[self.rows[pid]].to_numpy(dtype=float) for pid in self.patient_ids}

    def __len__(self) -> int:
        return len(self.patient_ids)

    def key_row(self, patient_id: str) -> int:
        """The cache row a patient's volume prediction is stored under (its first slice)."""
        return int(self.rows[patient_id][0])

    def volume(self, patient_id: str) -> np.ndarray:
        """The patient's volume ``(depth, S, S)``, float32 in [0, 1]."""
        rows = self.rows[patient_id]
        return resample_depth(np.asarray(self.prepared.images[rows]), self._z[patient_id], self.depth)

    def positions(self, patient_id: str) -> np.ndarray:
        """Where each slice of the patient's volume lies in its cached stack ``rows[patient_id]``
        (:func:`depth_positions`: fractional indices, 0 = the first cached slice)."""
        return depth_positions(self._z[patient_id], len(self.rows[patient_id]), self.depth)

    def mask_volume(self, patient_id: str) -> np.ndarray | None:
        """The patient's tumour masks resampled as its volume, ``(depth, S, S)`` bool (interpolated >= 0.5);
        None when the cache has no masks."""
        if self.prepared.masks is None:
            return None
        masks = np.asarray(self.prepared.masks[self.rows[patient_id]], dtype=np.float32)
        return resample_depth(masks, self._z[patient_id], self.depth) >= 0.5

    def load(self, patient_ids: list[str]) -> torch.Tensor:
        """Volumes of ``patient_ids`` as a float tensor ``(B, 1, depth, S, S)`` in [0, 1]."""
        if not patient_ids:
            size = self.prepared.images.shape[-1]
            return torch.zeros((0, 1, self.depth, size, size))
        return torch.from_numpy(np.stack([self.volume(p) for p in patient_ids])).unsqueeze(1)

    def epoch_order(self, seed: int, epoch: int) -> tuple[list[str], np.ndarray]:
        """Shuffled patients and their labels for one training epoch (depends only on seed and epoch)."""
        rng = np.random.default_rng(derive_seed(seed, "epoch-volumes", epoch))
        order = rng.permutation(len(self.patient_ids))
        pids = [self.patient_ids[i] for i in order]
        return pids, np.array([self.labels[p] for p in pids])

    def slices_per_epoch(self, slices_per_patient: int | None = None) -> int:
        """Training items per epoch: one volume per patient (``slices_per_patient`` does not apply)."""
        return len(self.patient_ids)

    def steps_per_epoch(self, batch_size: int, slices_per_patient: int | None = None) -> int:
        return math.ceil(len(self.patient_ids) / batch_size)

    def train_batches(
        self, *, seed: int, epoch: int, batch_size: int, slices_per_patient: int | None, augment: AugmentConfig,
        start_step: int = 0, workers: int = 0, pin_memory: bool = False, shard: tuple[int, int] | None = None,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(step, volumes, labels)`` of one epoch; volumes ``(B, 1, depth, c, c)`` augmented and cropped.

        As :meth:`pdstudy.learn.dataset.SliceSet.train_batches` (same arguments, same worker and shard
        rules); every batch depends only on ``(seed, epoch, step)``.
        """
        pids, labels = self.epoch_order(seed, epoch)
        steps = _VolumeSteps(self, pids, labels, seed=seed, epoch=epoch, batch_size=batch_size, augment=augment,
                             start_step=start_step, shard=shard)
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

    def eval_batches(self, *, batch_size: int, crop_size: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """``(key rows, centre-cropped volumes)`` of every patient, in order.

        ``batch_size`` counts slices, as for ``SliceSet``: each batch holds ``max(1, batch_size // depth)``
        volumes, so evaluation memory stays that of a slice batch.
        """
        per_batch = max(1, batch_size // self.depth)
        for i in range(0, len(self.patient_ids), per_batch):
            pids = self.patient_ids[i:i + per_batch]
            yield np.array([self.key_row(p) for p in pids]), centre_crop(self.load(pids), crop_size)


class _VolumeSteps(_EpochSteps):
    """One epoch's augmented volume batches (patient IDs instead of slice rows), for DataLoader workers."""

    _seed_tag = "augment-volumes"

    def _augment(self, pids, gen: torch.Generator, **kwargs) -> torch.Tensor:
        return augment_volumes(self.data.load(pids), self.augment, gen, **kwargs)
