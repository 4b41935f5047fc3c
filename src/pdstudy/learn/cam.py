"""Class activation maps (Grad-CAM, Grad-CAM++, EigenCAM) at the classifier's last feature map.

Each slice's map explains the class the model predicts for it (``target="predicted"``, the default), the
patient's true class (``"true"``) or one fixed class (an int, 1 = ``poor``).

Maps as coarse as 2x2 are flagged ``too_coarse``. Scores against the tumour mask are in
:mod:`pdstudy.evaluate.localisation`, Fig. 5 overlays in :mod:`pdstudy.report.cam`. See docs/training.md,
"Class activation maps".
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from pdstudy.core.methods import CAM_METHOD_LABELS
from pdstudy.core.params import PARAMETER_CHOICES
from pdstudy.learn.dataset import centre_crop, to_model_input
from pdstudy.learn.models import gradcam_target_layer, is_volumetric
from pdstudy.learn.train import input_norm

__all__ = [
    "CAM_METHODS",
    "CAM_TARGETS",
    "COARSE_MAX_SIDE",
    "coarse_message",
    "compute_cam",
    "compute_volume_cam",
]

#: What a CAM explains, per slice: the class the model predicts (default) or the patient's true class.
CAM_TARGETS: Final = PARAMETER_CHOICES["cam_target"]

#: CAM method name -> ``grad-cam`` class. EigenCAM uses no gradients and so ignores the target class.
CAM_METHODS: Final[Mapping[str, type[BaseCAM]]] = MappingProxyType(
    {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM}
)



# --------------------------------------------------------------------------- CAMs


def _module_name(model: nn.Module, layer: nn.Module) -> str:
    """Dotted path of ``layer`` in ``model.named_modules()`` (``"?"`` if absent)."""
    return next((name for name, module in model.named_modules() if module is layer), "?")


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


def _check_target(target: str | int, labels: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray | None:
    """Validate ``target``/``labels``; returns the labels as an int array (``target="true"``) or None."""
    if isinstance(target, bool) or not isinstance(target, (str, int, np.integer)):
        raise ValueError(f"target must be one of {list(CAM_TARGETS)} or a class index, got {target!r}")
    if isinstance(target, str) and target not in CAM_TARGETS:
        raise ValueError(f"target must be one of {list(CAM_TARGETS)} or a class index, got {target!r}")
    if not isinstance(target, str) and target < 0:
        raise ValueError(f"target must be a class index >= 0, got {target}")
    if target != "true":
        if labels is not None:
            raise ValueError(f"labels are only used with target='true', got target={target!r}")
        return None
    if labels is None:
        raise ValueError("target='true' needs labels: the class (1 = poor) of each slice's patient")
    arr = np.asarray(labels)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any():
        raise ValueError(f"labels must be {n} class indices >= 0 (one per slice), got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def compute_cam(
    model: nn.Module,
    arch_name: str,
    images_uint8: np.ndarray | torch.Tensor,
    *,
    crop_size: int,
    method: str = "gradcam",
    target: str | int = "predicted",
    labels: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Class activation maps for a batch of cached slices, of the class each slice is predicted (default).

    Parameters
    ----------
    model : torch.nn.Module
        A classifier from :func:`pdstudy.learn.models.build_model` (any device). It is run in eval mode;
        its training mode, ``requires_grad`` flags and parameter ``.grad`` are restored afterwards.
    arch_name : str
        The architecture name the model was built with (selects the target layer).
    images_uint8 : ndarray or Tensor
        Windowed slices ``(B, S, S)``, uint8, as in the slice cache (``PreparedCohort.images[rows]``).
    crop_size : int
        Centre crop fed to the model (the evaluation crop of the run).
    method : str
        Key of :data:`CAM_METHODS`.
    target : {"predicted", "true"} or int
        Class whose logit is explained (``ClassifierOutputTarget``), per slice: ``"predicted"`` (default)
        the class the model predicts for that slice (argmax of its logits; with two classes,
        ``poor`` when p(poor) > 0.5); ``"true"`` the class in ``labels`` (the patient's true response);
        an int, that class for every slice (1 = ``poor``).
    labels : sequence of int, optional
        With ``target="true"`` (and only then): the class of each slice, e.g. ``label_of(response)`` of
        its patient.
    batch_size : int
        Slices per forward/backward pass.

    Returns
    -------
    cams : ndarray
        ``(B, crop_size, crop_size)`` float32 in [0, 1], aligned with the centre crop.
    info : dict
        ``method``, ``arch``, ``target`` (``"predicted"``, ``"true"`` or ``"fixed"``), ``target_class``
        (the int of a fixed target, else None), ``targets`` (``(B,)`` class explained per slice),
        ``target_layer`` (module path), ``crop_size``, ``feature_map_size`` (h, w) at the target layer
        (hooked), ``cell_px`` (crop pixels per feature-map cell), ``too_coarse`` (bool), ``message``
        (the too-coarse message or None), ``probs`` (``(B,)`` softmax probability of class 1, ``poor``,
        from the same forward pass) and ``method_note`` (for EigenCAM: class-agnostic).

    Warns
    -----
    RuntimeWarning
        When the feature map is 2x2 or smaller (``info["too_coarse"]``).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; valid choices: {', '.join(CAM_METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if is_volumetric(arch_name):
        raise ValueError(f"{arch_name} is a volume model: use compute_volume_cam on its volumes, not slices")
    layer = gradcam_target_layer(model, arch_name)
    images = _as_uint8_slices(images_uint8)
    true_labels = _check_target(target, labels, len(images))
    _model_input(model, images[:1], crop_size)  # fail early on a bad crop, before touching the model
    return _run_cams(model, arch_name, layer, lambda i, j: _model_input(model, images[i:j], crop_size), len(images),
                     method=method, target=target, true_labels=true_labels, batch_size=batch_size,
                     crop_size=crop_size)


def _run_cams(model: nn.Module, arch_name: str, layer: nn.Module, batch_input: Callable[[int, int], torch.Tensor],
              n: int, *, method: str, target: str | int, true_labels: np.ndarray | None, batch_size: int,
              crop_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    """CAMs of inputs ``batch_input(i, j)`` (items ``i:j`` of ``n``), model state restored; see :func:`compute_cam`."""
    params = list(model.parameters())
    saved = [(p.requires_grad, p.grad) for p in params]
    was_training = model.training
    shapes: list[tuple[int, ...]] = []

    def record_shape(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        shapes.append(tuple(output.shape))

    hook = layer.register_forward_hook(record_shape)
    cams, probs, explained = [], [], []
    try:
        model.eval()
        for p in params:  # gradients are needed at the feature map only, not for the weights
            p.requires_grad_(False)
        with torch.enable_grad(), CAM_METHODS[method](model=model, target_layers=[layer]) as cam:
            device = next(model.parameters()).device
            for i in range(0, n, batch_size):
                x = batch_input(i, i + batch_size).to(device).requires_grad_(True)
                with torch.no_grad():
                    logits = model(x)
                if target == "predicted":
                    classes = logits.argmax(dim=1).cpu().numpy()
                else:
                    classes = true_labels[i:i + batch_size] if target == "true" else np.full(len(x), int(target))
                if int(classes.max()) >= logits.shape[1]:
                    raise ValueError(f"target class {int(classes.max())} is not among the model's "
                                     f"{logits.shape[1]} classes")
                try:
                    cams.append(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes]))
                except IndexError as exc:  # grad-cam's __exit__ would swallow an IndexError
                    raise RuntimeError(f"{method} failed on {arch_name}: {exc}") from exc
                probs.append(torch.softmax(cam.outputs.detach().float(), dim=1)[:, 1].cpu().numpy())
                explained.append(np.asarray(classes, dtype=np.int64))
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
        warnings.warn(f"{message} ({CAM_METHOD_LABELS[method]} at {layer_name} of {arch_name}, {crop_size} px crop: "
                      f"each cell covers {crop_size / height:.0f} px)", RuntimeWarning, stacklevel=3)
    info: dict[str, Any] = {
        "method": method,
        "arch": arch_name,
        "target": target if isinstance(target, str) else "fixed",
        "target_class": None if isinstance(target, str) else int(target),
        "targets": np.concatenate(explained),
        "target_layer": layer_name,
        "crop_size": crop_size,
        "feature_map_size": tuple(int(v) for v in shapes[-1][2:]),
        "cell_px": crop_size / height,
        "too_coarse": message is not None,
        "message": message,
        "probs": np.concatenate(probs),
        "method_note": ("class-agnostic: first principal component of the activations, target class ignored"
                        if method == "eigencam" else None),
    }
    return np.clip(np.concatenate(cams).astype(np.float32), 0.0, 1.0), info


def compute_volume_cam(
    model: nn.Module,
    arch_name: str,
    volumes: np.ndarray | torch.Tensor,
    *,
    crop_size: int,
    method: str = "gradcam",
    target: str | int = "predicted",
    labels: Sequence[int] | np.ndarray | None = None,
    batch_size: int = 1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Class activation maps of a volume model for patient volumes: one 3D map per volume.

    pytorch-grad-cam handles ``Conv3d`` maps: the map at the target layer (``(d, h, w)`` cells) is
    upsampled (``scipy.ndimage.zoom``) to the volume's depth and the crop, so slice ``j`` of a map is
    aligned with slice ``j`` of the centre-cropped volume (e.g. its middle slice for Fig. 5).

    Parameters
    ----------
    model : torch.nn.Module
        A volume model from :func:`pdstudy.learn.models.build_model` (``kind == "volume"``); run in eval
        mode, its state restored as in :func:`compute_cam`.
    arch_name : str
        The architecture it was built with.
    volumes : ndarray or Tensor
        ``(B, D, S, S)`` float in [0, 1] (:meth:`pdstudy.learn.volumes.VolumeSet.volume`) or uint8.
    crop_size : int
        Centre crop of each slice fed to the model (the run's evaluation crop).
    method, target, labels :
        As :func:`compute_cam`; ``labels`` (with ``target="true"``) has one class per volume.
    batch_size : int
        Volumes per forward/backward pass.

    Returns
    -------
    cams : ndarray
        ``(B, D, crop_size, crop_size)`` float32 in [0, 1].
    info : dict
        As :func:`compute_cam`'s; ``feature_map_size`` is ``(d, h, w)``.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; valid choices: {', '.join(CAM_METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not is_volumetric(arch_name):
        raise ValueError(f"{arch_name} is a slice model: use compute_cam on its slices")
    layer = gradcam_target_layer(model, arch_name)
    arr = volumes.detach().cpu().numpy() if isinstance(volumes, torch.Tensor) else np.asarray(volumes)
    if arr.ndim != 4 or not len(arr) or not (arr.dtype == np.uint8 or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"volumes must be (B, D, S, S) float in [0, 1] or uint8 with B >= 1, got {arr.dtype} "
                         f"{arr.shape}")
    x_all = torch.from_numpy(arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)).unsqueeze(1)
    true_labels = _check_target(target, labels, len(arr))
    centre_crop(x_all[:1], crop_size)  # fail early on a bad crop

    def batch_input(i: int, j: int) -> torch.Tensor:
        return to_model_input(centre_crop(x_all[i:j], crop_size), *input_norm(model))

    return _run_cams(model, arch_name, layer, batch_input, len(arr), method=method, target=target,
                     true_labels=true_labels, batch_size=batch_size, crop_size=crop_size)


# --------------------------------------------------------------------------- localisation


# --------------------------------------------------------------------------- examples


# --------------------------------------------------------------------------- figure


#: A feature map whose shorter side is at most this many cells is too coarse to interpret.
COARSE_MAX_SIDE: Final = 2


def coarse_message(height: int, width: int) -> str | None:
    """``"feature map HxW is too coarse to interpret"`` when a side is <= :data:`COARSE_MAX_SIDE`, else None."""
    if min(height, width) <= COARSE_MAX_SIDE:
        return f"feature map {height}x{width} is too coarse to interpret"
    return None
