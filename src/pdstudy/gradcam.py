"""Class activation maps for class ``poor``, their localisation of the tumour, and Fig. 5 overlays.

:func:`compute_cam` runs Grad-CAM (or Grad-CAM++ / EigenCAM, see :data:`CAM_METHODS`, from the
``grad-cam`` package) at the layer :func:`pdstudy.models.gradcam_target_layer` names: the last
convolutional feature map the classifier pools. Slices are centre-cropped and normalised exactly
as in training evaluation (:func:`pdstudy.dataset.centre_crop`, then
:func:`pdstudy.dataset.to_model_input` with :func:`pdstudy.train.input_norm`). The CAM is
upsampled (bilinearly, by ``grad-cam``) from that feature map to the crop and min-max scaled to
[0, 1] per slice, so its resolution is the feature map's, not the crop's: with a 32x downsampling
network a 56 px crop gives a 2x2 map, four cells of 28 px each (the quick profile builds its ResNet
and ByobNet stand-ins with ``output_stride=16`` for a 4x4 map at 60 px). Maps of 2x2 or smaller are
flagged ``too_coarse`` in the returned info, warned about, and noted on the figure; callers must
report the flag, not hide it.

Localisation against the tumour mask (:func:`localisation_scores`, :func:`localisation_summary`):

- energy in mask: share of the CAM's total energy (sum of its values) inside the tumour mask.
  Chance: the mask's share of the body (of the whole crop without a body mask), i.e. what a
  CAM spread uniformly over the body would score.
- pointing game: a hit when the CAM's peak lies in the tumour mask dilated by 1 pixel (3x3
  square, so a peak touching the mask edge, including diagonally, counts). When several pixels
  share the maximum (a plateau, common after upsampling a coarse map) the peak is the maximal
  pixel nearest the plateau's centroid. Chance: the dilated mask's share of the body (crop).

Slices whose cropped mask is empty, or whose CAM is constant, get no score (NaN).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy import ndimage
from torch import nn

from pdstudy.dataset import centre_crop, derive_seed, to_model_input
from pdstudy.models import gradcam_target_layer
from pdstudy.preprocess import PreparedCohort
from pdstudy.report import set_style
from pdstudy.stats import wilson_ci
from pdstudy.train import input_norm
from pdstudy.vocab import RECIST_CODES, RECIST_NAMES, RECIST_TO_RESPONSE

__all__ = [
    "CAM_METHODS",
    "COARSE_MAX_SIDE",
    "best_slice",
    "coarse_message",
    "compute_cam",
    "estimate_body_masks",
    "example_title",
    "localisation_scores",
    "localisation_summary",
    "plot_overlays",
    "select_examples",
]

#: CAM method name -> ``grad-cam`` class. EigenCAM uses no gradients and so ignores the target class.
CAM_METHODS: Final[Mapping[str, type[BaseCAM]]] = MappingProxyType(
    {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}
)

#: A feature map whose shorter side is at most this many cells is too coarse to interpret.
COARSE_MAX_SIDE: Final = 2

_METHOD_LABELS: Final = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "eigencam": "EigenCAM"}
_MASK_STYLE: Final = {"color": "white", "lw": 1.4,
                      "path_effects": [patheffects.withStroke(linewidth=2.6, foreground="black")]}


# --------------------------------------------------------------------------- CAMs


def _module_name(model: nn.Module, layer: nn.Module) -> str:
    """Dotted path of ``layer`` in ``model.named_modules()`` (``"?"`` if absent)."""
    return next((name for name, module in model.named_modules() if module is layer), "?")


def coarse_message(height: int, width: int) -> str | None:
    """``"feature map HxW is too coarse to interpret"`` when a side is <= :data:`COARSE_MAX_SIDE`, else None."""
    if min(height, width) <= COARSE_MAX_SIDE:
        return f"feature map {height}x{width} is too coarse to interpret"
    return None


def _as_uint8_slices(images_uint8: np.ndarray | torch.Tensor) -> np.ndarray:
    """Validate cached slices: a non-empty uint8 array ``(B, S, S)``."""
    arr = images_uint8.cpu().numpy() if isinstance(images_uint8, torch.Tensor) else np.asarray(images_uint8)
    if arr.dtype != np.uint8 or arr.ndim != 3 or not len(arr):
        raise ValueError(f"images must be uint8 slices of shape (B, S, S) with B >= 1, got {arr.dtype} {arr.shape}")
    return arr


def _model_input(model: nn.Module, images_uint8: np.ndarray, crop_size: int) -> torch.Tensor:
    """uint8 slices ``(B, S, S)`` -> centre-cropped, normalised model input, as training evaluation does."""
    x = torch.from_numpy(np.array(images_uint8)).unsqueeze(1).float().div_(255.0)
    return to_model_input(centre_crop(x, crop_size), *input_norm(model))


def compute_cam(
    model: nn.Module,
    arch_name: str,
    images_uint8: np.ndarray | torch.Tensor,
    *,
    crop_size: int,
    method: str = "gradcam",
    target_class: int = 1,
    batch_size: int = 32,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Class activation maps of ``target_class`` (1 = ``poor``) for a batch of cached slices.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier from :func:`pdstudy.models.build_model` (any device). It is run in eval mode;
        its training mode, ``requires_grad`` flags and parameter ``.grad`` are restored afterwards.
    arch_name : str
        The architecture name the model was built with (selects the target layer).
    images_uint8 : ndarray or Tensor
        Windowed slices ``(B, S, S)``, uint8, as in the slice cache (``PreparedCohort.images[rows]``).
    crop_size : int
        Centre crop fed to the model (the evaluation crop of the run).
    method : str
        Key of :data:`CAM_METHODS`.
    target_class : int
        Class whose logit is explained (``ClassifierOutputTarget``); 1 = ``poor``.
    batch_size : int
        Slices per forward/backward pass.

    Returns
    -------
    cams : ndarray
        ``(B, crop_size, crop_size)`` float32 in [0, 1], aligned with the centre crop.
    info : dict
        ``method``, ``arch``, ``target_class``, ``target_layer`` (module path), ``crop_size``,
        ``feature_map_size`` (h, w) at the target layer (hooked), ``cell_px`` (crop pixels per
        feature-map cell), ``too_coarse`` (bool), ``message`` (the too-coarse message or None),
        ``probs`` (``(B,)`` softmax probability of ``target_class`` from the same forward pass) and
        ``method_note`` (for EigenCAM: class-agnostic).

    Warns
    -----
    RuntimeWarning
        When the feature map is 2x2 or smaller (``info["too_coarse"]``).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; valid choices: {', '.join(CAM_METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layer = gradcam_target_layer(model, arch_name)
    images = _as_uint8_slices(images_uint8)
    _model_input(model, images[:1], crop_size)  # fail early on a bad crop, before touching the model
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    was_training = model.training
    shapes: list[tuple[int, ...]] = []

    def record_shape(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        shapes.append(tuple(output.shape))

    hook = layer.register_forward_hook(record_shape)
    cams, probs = [], []
    try:
        model.eval()
        for p in params:  # gradients are needed at the feature map only, not for the weights
            p.requires_grad_(False)
        with torch.enable_grad(), CAM_METHODS[method](model=model, target_layers=[layer]) as cam:
            device = next(model.parameters()).device
            for i in range(0, len(images), batch_size):
                x = _model_input(model, images[i:i + batch_size], crop_size).to(device).requires_grad_(True)
                targets = [ClassifierOutputTarget(target_class)] * len(x)
                try:
                    cams.append(cam(input_tensor=x, targets=targets))
                except IndexError as exc:  # grad-cam's __exit__ would swallow an IndexError
                    raise RuntimeError(f"{method} failed on {arch_name}: {exc}") from exc
                probs.append(torch.softmax(cam.outputs.detach().float(), dim=1)[:, target_class].cpu().numpy())
    finally:
        hook.remove()
        for p, (requires_grad, grad) in zip(params, saved):
            p.requires_grad_(requires_grad)
            p.grad = grad
        model.train(was_training)
    height, width = shapes[-1][-2:]
    message = coarse_message(height, width)
    layer_name = _module_name(model, layer)
    if message:
        warnings.warn(f"{message} ({_METHOD_LABELS[method]} at {layer_name} of {arch_name}, {crop_size} px crop: "
                      f"each cell covers {crop_size / height:.0f} px)", RuntimeWarning, stacklevel=2)
    info: dict[str, Any] = {
        "method": method,
        "arch": arch_name,
        "target_class": target_class,
        "target_layer": layer_name,
        "crop_size": crop_size,
        "feature_map_size": (int(height), int(width)),
        "cell_px": crop_size / height,
        "too_coarse": message is not None,
        "message": message,
        "probs": np.concatenate(probs),
        "method_note": ("class-agnostic: first principal component of the activations, target class ignored"
                        if method == "eigencam" else None),
    }
    return np.clip(np.concatenate(cams).astype(np.float32), 0.0, 1.0), info


# --------------------------------------------------------------------------- localisation


def _to_grid(arr: np.ndarray, side: int, crop_size: int | None = None) -> np.ndarray:
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
                         "chance_pointing", "peak_row", "peak_col", "n_peak_px")


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
        boolean), ``chance_pointing``, ``peak_row``, ``peak_col``, ``n_peak_px``. Scores are NaN
        (``pointing_hit`` NA) when the cropped mask is empty or the CAM is constant.

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
    tumour = _to_grid(masks, side, crop_size) >= 0.5
    reference = (_to_grid(bodies, side, crop_size) >= 0.5) if bodies is not None else np.ones_like(tumour)
    rows = []  # one dict per slice, keys in _SCORE_COLUMNS order
    for i, (cam, mask, ref) in enumerate(zip(cams, tumour, reference)):
        dilated = ndimage.binary_dilation(mask, structure=np.ones((3, 3), dtype=bool))
        total = cam.sum()
        row: dict[str, Any] = {
            "slice": i, "tumour_px": int(mask.sum()), "reference_px": int(ref.sum()),
            "energy_in_mask": np.nan, "chance_energy": np.nan, "pointing_hit": pd.NA, "chance_pointing": np.nan,
            "peak_row": -1, "peak_col": -1, "n_peak_px": 0,
        }
        if mask.any() and ref.any():
            row["chance_energy"] = float((mask & ref).sum() / ref.sum())
            row["chance_pointing"] = float((dilated & ref).sum() / ref.sum())
        if mask.any() and total > 0 and cam.max() > cam.min():
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
        Rows ``energy_in_mask`` and ``pointing_game`` with ``n_slices`` (scored), ``n_unscored``,
        ``value`` (mean energy / hit rate), ``chance`` (mean chance level), ``excess`` (value - chance),
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
    hits = int(scored["pointing_hit"].astype(bool).sum()) if n else 0
    lo, hi = wilson_ci(hits, n, level) if n else (np.nan, np.nan)
    energy = float(scored["energy_in_mask"].mean()) if n else np.nan
    chance_e = float(scored["chance_energy"].mean()) if n else np.nan
    rate = hits / n if n else np.nan
    chance_p = float(scored["chance_pointing"].mean()) if n else np.nan
    common = {"n_slices": n, "n_unscored": len(per_slice) - n, "note": "; ".join(notes)}
    return pd.DataFrame([
        {"metric": "energy_in_mask", **common, "value": energy, "chance": chance_e, "excess": energy - chance_e,
         "ci_low": np.nan, "ci_high": np.nan, "hits": pd.NA},
        {"metric": "pointing_game", **common, "value": rate, "chance": chance_p, "excess": rate - chance_p,
         "ci_low": lo, "ci_high": hi, "hits": hits},
    ], columns=["metric", "n_slices", "n_unscored", "value", "chance", "excess", "ci_low", "ci_high", "hits", "note"])


# --------------------------------------------------------------------------- examples


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
    :func:`pdstudy.train.predict_slices`); else the middle slice. Ties go to the first (head-most) slice.
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


def example_title(recist: str, *, score: float | None = None, patient_id: str | None = None) -> str:
    """Panel title: RECIST category, response group, patient score (and ID), one item per line.

    E.g. ``example_title("SD", score=0.62)`` -> ``"SD (stable disease)\\npoor response, score 0.62"``.
    """
    lines = [f"{recist} ({RECIST_NAMES.get(recist, '?')})", f"{RECIST_TO_RESPONSE.get(recist, '?')} response"]
    if score is not None:
        lines[1] += f", score {score:.2f}"
    if patient_id:
        lines.append(str(patient_id))
    return "\n".join(lines)


# --------------------------------------------------------------------------- figure


def plot_overlays(
    images: Sequence[np.ndarray | None] | np.ndarray,
    cams: Sequence[np.ndarray | None] | np.ndarray,
    titles: Sequence[str],
    *,
    masks: Sequence[np.ndarray | None] | np.ndarray | None = None,
    alpha: float = 0.4,
    info: Mapping[str, Any] | None = None,
    notes: Sequence[str | None] | None = None,
    suptitle: str | None = None,
    cmap: str = "turbo",
) -> plt.Figure:
    """Fig. 5: one column per example; windowed slice on top, CAM overlay below, tumour contour.

    Parameters
    ----------
    images : sequence of ndarray or None
        Windowed slices ``(S, S)``, uint8 or float in [0, 1]; centre-cropped to the CAM size. None
        keeps an empty, labelled column (e.g. a RECIST category without a patient in the split).
    cams : sequence of ndarray or None
        ``(c, c)`` CAMs in [0, 1] (None where the image is None).
    titles : sequence of str
        Column titles (see :func:`example_title`).
    masks : sequence of ndarray, optional
        Tumour masks ``(S, S)``, cropped like the images; drawn as a contour on both rows.
    alpha : float
        Opacity of the CAM over the slice.
    info : dict, optional
        ``info`` of :func:`compute_cam`: names the method and layer, and a too-coarse map gets a note
        on every CAM panel.
    notes : sequence of str or None, optional
        Extra per-column note shown on the CAM panel.
    suptitle : str, optional
        Figure title; a default naming method, class and layer is used when ``info`` is given.
    cmap : str
        CAM colormap.

    Returns
    -------
    matplotlib.figure.Figure
        ``2 * n`` image axes (row-major) followed by one colorbar axis.
    """
    n = len(images)
    if not n or len(cams) != n or len(titles) != n or (masks is not None and len(masks) != n):
        raise ValueError("images, cams, titles (and masks) must be non-empty and of equal length")
    set_style()
    fig, axes = plt.subplots(2, n, figsize=(2.5 * n + 1.0, 5.9), squeeze=False, layout="constrained")
    label = _METHOD_LABELS.get(info["method"], info["method"]) if info else "CAM"
    coarse = info["message"] if info and info.get("too_coarse") else None
    for j in range(n):
        top, bottom = axes[0, j], axes[1, j]
        top.set_title(titles[j], fontsize=10)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        if images[j] is None or cams[j] is None:
            for ax in (top, bottom):  # keep the axes (row labels live on column 0), hide the frame
                ax.set_facecolor("none")
                for spine in ax.spines.values():
                    spine.set_visible(False)
            top.text(0.5, 0.5, "no patient", transform=top.transAxes, ha="center", va="center", fontsize=10,
                     color="#555555")
            continue
        cam = np.asarray(cams[j], dtype=np.float32)
        side = cam.shape[-1]
        img = _to_grid(np.asarray(images[j])[None], side)[0].astype(np.float32)
        img = img / (255.0 if img.max() > 1.0 else 1.0)
        mask = None if masks is None or masks[j] is None else _to_grid(np.asarray(masks[j])[None], side)[0] >= 0.5
        top.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        bottom.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        bottom.imshow(cam, cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
        for ax in (top, bottom):
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors=_MASK_STYLE["color"], linewidths=_MASK_STYLE["lw"],
                           path_effects=_MASK_STYLE["path_effects"])
        panel_notes = [s for s in (coarse, notes[j] if notes else None) if s]
        if panel_notes:
            bottom.text(0.5, 0.03, "\n".join(panel_notes), transform=bottom.transAxes, ha="center", va="bottom",
                        fontsize=7.5, color="#a50f15", wrap=True,
                        bbox=dict(boxstyle="round,pad=0.25", facecolor="white", alpha=0.85, edgecolor="#a50f15"))
    axes[0, 0].set_ylabel("CT slice", fontsize=10)
    axes[1, 0].set_ylabel(f"{label}, class poor", fontsize=10)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=axes[1, :].tolist(), shrink=0.9, pad=0.02)
    bar.set_label("CAM (per-slice scaled)", fontsize=9)
    if masks is not None:
        fig.legend(handles=[Line2D([], [], **_MASK_STYLE, label="tumour mask")],
                   loc="lower center", bbox_to_anchor=(0.5, -0.04), frameon=False, fontsize=9)
    if suptitle is None and info:
        h, w = info["feature_map_size"]
        suptitle = (f"{label} for class 'poor': {info['arch']} at {info['target_layer']}, "
                    f"feature map {h}x{w} ({info.get('crop_size', '?')} px crop)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig
