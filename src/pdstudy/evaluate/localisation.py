"""How well a class activation map points at the tumour: energy in mask, pointing game, chance levels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import ndimage

from pdstudy.core.hashing import derive_seed
from pdstudy.core.vocab import RECIST_CODES, RESPONSES
from pdstudy.data.cache import PreparedCohort
from pdstudy.stats import wilson_ci


def explained_target(info: Mapping[str, Any]) -> str:
    """What a set of CAMs explains, from the ``info`` of :func:`pdstudy.learn.cam.compute_cam`.

    Returns ``"predicted"`` (each slice's predicted class), ``"true"`` (the patient's true class) or,
    for one fixed class, its response name (``"poor"`` for class 1). An ``info`` without ``target``
    (maps of class 1 only, as before targets existed) gives ``"poor"``.
    """
    target = info.get("target", "fixed")
    if target in ("predicted", "true"):
        return str(target)
    if target != "fixed":
        raise ValueError(f"info['target'] must be 'predicted', 'true' or 'fixed', got {target!r}")
    cls = info.get("target_class", 1)
    if cls not in range(len(RESPONSES)):
        raise ValueError(f"info['target_class'] must be 0 (good) or 1 (poor), got {cls!r}")
    return RESPONSES[cls]


def to_grid(arr: np.ndarray, side: int, crop_size: int | None = None) -> np.ndarray:
    """``(B, S, S)`` -> centre crop to ``crop_size`` (default: ``side``, if S is larger), nearest resize to ``side``."""
    arr = np.asarray(arr)
    s = arr.shape[-1]
    crop = crop_size if crop_size is not None else min(side, s)
    if not 1 <= crop <= s:
        raise ValueError(f"crop_size must be between 1 and the mask size ({s}), got {crop}")
    top = (arr.shape[-2] - crop) // 2
    left = (s - crop) // 2
    arr = arr[..., top:top + crop, left:left + crop]
    if crop != side:  # nearest neighbour, sampling at pixel centres
        idx = np.minimum(((np.arange(side) + 0.5) * crop / side).astype(int), crop - 1)
        arr = arr[..., idx[:, None], idx[None, :]]
    return arr


def estimate_body_masks(images_uint8: np.ndarray, *, threshold: int = 20) -> np.ndarray:
    """Rough body masks of windowed slices: pixels above ``threshold``, holes filled, largest component.

    Air maps to 0 in the study window ([-215, 285] HU: 20 is about -175 HU); bowel gas inside
    the body is enclosed and filled. For the chance level of :func:`localisation_scores` when
    no body segmentation is stored.
    """
    out = np.zeros(np.shape(images_uint8), dtype=bool)
    for i, img in enumerate(np.asarray(images_uint8)):
        labels, n = ndimage.label(ndimage.binary_fill_holes(img > threshold))
        if n:
            sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
            out[i] = labels == 1 + int(np.argmax(sizes))
    return out


_SCORE_COLUMNS: Final = ("slice", "tumour_px", "reference_px", "energy_in_mask", "chance_energy", "pointing_hit",
                         "chance_pointing", "peak_row", "peak_col", "n_peak_px", "constant")


def _peak(cam: np.ndarray) -> tuple[int, int, int]:
    """``(row, col, n_max)``: the maximal pixel nearest the centroid of all maximal pixels."""
    top = cam.max()
    rows, cols = np.nonzero(cam >= top - 1e-6 * abs(top))
    d2 = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
    k = int(np.argmin(d2))
    return int(rows[k]), int(cols[k]), len(rows)


def localisation_scores(
    cams: np.ndarray, masks: np.ndarray, bodies: np.ndarray | None = None, *, crop_size: int | None = None
) -> pd.DataFrame:
    """Per-slice localisation of the tumour by the CAM: energy in mask and pointing game, with chance levels.

    Parameters
    ----------
    cams : ndarray
        ``(B, c, c)`` non-negative CAMs (from :func:`compute_cam`).
    masks : ndarray
        ``(B, S, S)`` tumour masks of the uncropped slices (>= 0.5 is tumour).
    bodies : ndarray, optional
        ``(B, S, S)`` body masks (e.g. :func:`estimate_body_masks`); chance is then the share of the body,
        otherwise of the whole crop.
    crop_size : int, optional
        Centre crop the CAMs were computed on; default ``c`` (what :func:`compute_cam` returns). Masks
        and bodies are centre-cropped to it, then resized to ``c`` (nearest) if it differs.

    Returns
    -------
    DataFrame
        One row per slice, in order: ``slice`` (position in the batch), ``tumour_px``, ``reference_px``
        (body or crop pixels), ``energy_in_mask``, ``chance_energy``, ``pointing_hit`` (nullable
        boolean), ``chance_pointing``, ``peak_row``, ``peak_col``, ``n_peak_px``, ``constant`` (the CAM
        has no peak: all its values equal, e.g. all zero after Grad-CAM's ReLU). Scores are NaN
        (``pointing_hit`` NA) when the cropped mask is empty or the CAM is constant; constant maps are
        counted by :func:`localisation_summary` (``n_constant``).

    Notes
    -----
    Pointing tolerance: the mask is dilated by one pixel (3x3 square) before testing the peak, and
    ``chance_pointing`` uses the same dilated mask (share of the body/crop), so both sides of the
    comparison carry the same tolerance.
    """
    cams = np.asarray(cams, dtype=np.float64)
    if cams.ndim != 3 or cams.shape[1] != cams.shape[2]:
        raise ValueError(f"cams must have shape (B, c, c), got {cams.shape}")
    if len(masks) != len(cams) or (bodies is not None and len(bodies) != len(cams)):
        raise ValueError("cams, masks (and bodies) must have the same number of slices")
    side = cams.shape[-1]
    tumour = to_grid(masks, side, crop_size) >= 0.5
    reference = (to_grid(bodies, side, crop_size) >= 0.5) if bodies is not None else np.ones_like(tumour)
    rows = []  # one dict per slice, keys in _SCORE_COLUMNS order
    for i, (cam, mask, ref) in enumerate(zip(cams, tumour, reference)):
        dilated = ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))
        total = cam.sum()
        constant = not (total > 0 and cam.max() > cam.min())
        row: dict[str, Any] = {
            "slice": i, "tumour_px": int(mask.sum()), "reference_px": int(ref.sum()),
            "energy_in_mask": np.nan, "chance_energy": np.nan, "pointing_hit": pd.NA, "chance_pointing": np.nan,
            "peak_row": -1, "peak_col": -1, "n_peak_px": 0, "constant": constant,
        }
        if mask.any() and ref.any():
            row["chance_energy"] = float((mask & ref).sum() / ref.sum())
            row["chance_pointing"] = float((dilated & ref).sum() / ref.sum())
        if mask.any() and not constant:
            r, c, n = _peak(cam)
            row |= {"energy_in_mask": float(cam[mask].sum() / total), "pointing_hit": bool(dilated[r, c]),
                    "peak_row": r, "peak_col": c, "n_peak_px": n}
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(_SCORE_COLUMNS))
    out["pointing_hit"] = out["pointing_hit"].astype("boolean")
    return out


def localisation_summary(
    per_slice: pd.DataFrame, *, info: Mapping[str, Any] | None = None, level: float = 0.95
) -> pd.DataFrame:
    """Mean energy in mask and pointing-game hit rate (Wilson CI) against their chance levels.

    Parameters
    ----------
    per_slice : DataFrame
        Output of :func:`localisation_scores` (several batches concatenated is fine).
    info : dict, optional
        The ``info`` of :func:`compute_cam`; a too-coarse feature map is written into ``note``.
    level : float
        Confidence level of the Wilson interval.

    Returns
    -------
    DataFrame
        Rows ``energy_in_mask`` and ``pointing_game`` with ``n_slices`` (scored), ``n_unscored`` (not
        scored: empty cropped mask or constant map), ``n_constant`` (constant maps, no peak; counted in
        ``n_unscored``; NA when ``per_slice`` has no ``constant`` column), ``value`` (mean energy / hit
        rate), ``chance`` (mean chance level), ``excess`` (value - chance),
        ``ci_low``/``ci_high`` (pointing game only), ``hits`` and ``note``.

    Notes
    -----
    Units are slices, and slices of one patient are correlated: the Wilson interval treats them
    as independent and is therefore too narrow. Restrict to one slice per patient for a patient-level
    interval.
    """
    scored = per_slice.dropna(subset=["energy_in_mask"])
    notes = ["slices of one patient are correlated; the interval treats them as independent"]
    if info is not None and info.get("too_coarse"):
        notes.insert(0, f"{info['message']} ({info.get('arch', '?')}, {info.get('crop_size', '?')} px crop)")
    if info is not None and info.get("method_note"):
        notes.insert(0, str(info["method_note"]))
    n = len(scored)
    flagged = "constant" in per_slice.columns
    n_constant = int(per_slice["constant"].astype(bool).sum()) if flagged else pd.NA
    if flagged and n_constant:
        notes.insert(0, f"{n_constant} of {len(per_slice)} maps constant (no peak): not scored")
    hits = int(scored["pointing_hit"].astype(bool).sum()) if n else 0
    lo, hi = wilson_ci(hits, n, level) if n else (np.nan, np.nan)
    energy = float(scored["energy_in_mask"].mean()) if n else np.nan
    chance_e = float(scored["chance_energy"].mean()) if n else np.nan
    rate = hits / n if n else np.nan
    chance_p = float(scored["chance_pointing"].mean()) if n else np.nan
    common = {"n_slices": n, "n_unscored": len(per_slice) - n, "n_constant": n_constant, "note": "; ".join(notes)}
    return pd.DataFrame([
        {"metric": "energy_in_mask", **common, "value": energy, "chance": chance_e, "excess": energy - chance_e,
         "ci_low": np.nan, "ci_high": np.nan, "hits": pd.NA},
        {"metric": "pointing_game", **common, "value": rate, "chance": chance_p, "excess": rate - chance_p,
         "ci_low": lo, "ci_high": hi, "hits": hits},
    ], columns=["metric", "n_slices", "n_unscored", "n_constant", "value", "chance", "excess", "ci_low", "ci_high",
                "hits", "note"])


def select_examples(
    patients: pd.DataFrame, *, seed: int, split: str | None = "test", categories: Sequence[str] = RECIST_CODES
) -> pd.DataFrame:
    """One patient per RECIST category (CR, PR, SD, PD), drawn reproducibly from one split.

    Parameters
    ----------
    patients : DataFrame
        Included patients with ``patient_id``, ``recist`` (and ``split`` unless ``split`` is None).
    seed : int
        Draw seed; each category is drawn with its own derived seed, so one missing category does not
        change the others' picks.
    split : str or None
        Split to draw from; None draws from all rows.
    categories : sequence of str
        Categories, in column order.

    Returns
    -------
    DataFrame
        The chosen rows in category order; ``attrs["missing"]`` lists categories without patients.
    """
    pool = patients if split is None else patients[patients["split"] == split]
    chosen, missing = [], []
    for code in categories:
        candidates = pool[pool["recist"] == code].sort_values("patient_id", kind="stable")
        if candidates.empty:
            missing.append(code)
            continue
        rng = np.random.default_rng(derive_seed(seed, "gradcam-examples", split or "all", code))
        chosen.append(candidates.iloc[[int(rng.integers(len(candidates)))]])
    out = pd.concat(chosen).reset_index(drop=True) if chosen else patients.iloc[:0].copy()
    out.attrs["missing"] = missing
    return out


def best_slice(prepared: PreparedCohort, pid: str, slice_probs: Mapping[int, float] | None = None) -> int:
    """Cache row of the slice to show for a patient.

    Largest tumour area when the cache has masks and this patient's are not empty; else the highest
    slice probability of ``poor`` (``slice_probs``: ``{cache row: p}`` as from
    :func:`pdstudy.learn.train.predict_slices`); else the middle slice. Ties go to the first (head-most) slice.
    """
    rows = prepared.patient_slices(pid)
    if prepared.masks is not None:
        area = np.asarray(prepared.masks[rows]).reshape(len(rows), -1).sum(axis=1)
        if area.max() > 0:
            return int(rows[int(np.argmax(area))])
    if slice_probs is not None:
        scored = [(float(slice_probs[r]), -k, int(r)) for k, r in enumerate(rows.tolist()) if r in slice_probs]
        if scored:
            return max(scored)[2]
    return int(rows[len(rows) // 2])
