"""The volumetric classifier of Table 2 ("3DResNet-50"): MONAI's 3D ResNet on one CT volume per patient.

:class:`VolumeResNet` wraps a :class:`monai.networks.nets.ResNet` without its classifier, standardises
each volume (MedicalNet's input convention) and adds dropout and a new linear classifier.
:func:`medicalnet_state_dict` reads pretrained 3D weights in MedicalNet's layout. The model is built by
:func:`pdstudy.learn.models.build_model`; choices: docs/training.md, "The 3D ResNet-50".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import torch
from safetensors.torch import load_file
from torch import nn

__all__ = ["MEDICALNET_HUB", "VolumeResNet", "build_volume_backbone", "load_backbone_weights", "medicalnet_state_dict"]

#: Hugging Face hub repository and file of MedicalNet's ResNet-50 (Chen et al. 2019, "Med3D"), as MONAI fetches it.
MEDICALNET_HUB: Final = ("TencentMedicalNet/MedicalNet-Resnet50", "resnet_50_23dataset.pth")

#: Keys of a weights file that are never loaded: MedicalNet's segmentation head, any classifier.
_IGNORED_PREFIXES: Final = ("conv_seg.", "fc.")
_PREFIXES: Final = ("module.", "backbone.")


def build_volume_backbone(kwargs: Mapping[str, Any]) -> nn.Module:
    """A MONAI 3D ResNet without classifier (``feed_forward=False``) from a table row's ``model_kwargs``.

    Parameters
    ----------
    kwargs : mapping
        ``block`` ("basic" | "bottleneck"), ``layers``, ``block_inplanes`` and optionally ``shortcut_type``,
        ``bias_downsample`` and ``conv1_t_stride``, passed to :class:`monai.networks.nets.ResNet` with one
        input channel. The paper row is ``monai.networks.nets.resnet50``'s configuration.

    Returns
    -------
    monai.networks.nets.ResNet
        Outputs pooled features ``(B, block_inplanes[-1] * expansion)``.
    """
    # lazy: importing monai loads its whole package (several seconds); only volumetric models need it
    from monai.networks.nets import ResNet

    kw = dict(kwargs)
    return ResNet(block=kw.pop("block"), layers=list(kw.pop("layers")), block_inplanes=list(kw.pop("block_inplanes")),
                  spatial_dims=3, n_input_channels=1, feed_forward=False, **kw)


class VolumeResNet(nn.Module):
    """Per-volume standardisation -> MONAI 3D ResNet -> dropout -> linear classifier.

    Parameters
    ----------
    backbone : torch.nn.Module
        From :func:`build_volume_backbone`.
    num_features : int
        Width of the backbone's pooled output.
    num_classes : int
        Output logits.
    drop_rate : float
        Dropout before the classifier, in [0, 1).

    Notes
    -----
    Input: ``(B, 1, D, H, W)`` in [0, 1]. Each volume is standardised to zero mean and unit variance over
    its voxels, as MedicalNet normalised its training volumes, so ``pretrained_cfg`` asks the data
    pipeline for no further normalisation (mean 0, std 1).
    """

    def __init__(self, backbone: nn.Module, num_features: int, *, num_classes: int = 2, drop_rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.backbone = backbone
        self.drop_rate = float(drop_rate)
        self.num_features = int(num_features)
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.fc.bias)  # as MONAI initialises its classifier
        self.pretrained_cfg = {"mean": (0.0,), "std": (1.0,), "input": "volume (B, 1, D, H, W), standardised inside"}

    @staticmethod
    def standardise(x: torch.Tensor) -> torch.Tensor:
        """Each volume of ``(B, 1, D, H, W)`` to zero mean and unit variance (float32 statistics)."""
        dims = tuple(range(1, x.ndim))
        xf = x.float()
        mean = xf.mean(dim=dims, keepdim=True)
        std = xf.std(dim=dims, keepdim=True).clamp_min(1e-6)
        return ((xf - mean) / std).to(x.dtype)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm's name for it)."""
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"VolumeResNet takes volumes (B, 1, D, H, W), got shape {tuple(x.shape)}")
        return self.fc(self.head_drop(self.backbone(self.standardise(x))))


def medicalnet_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Backbone tensors of a 3D ResNet weights file, in MONAI's names.

    Accepts MedicalNet's layout (``{"state_dict": {"module.conv1.weight": ...}}``, with its
    ``conv_seg`` segmentation head), a plain state dict (``.pth``/``.pt``/``.safetensors``), or a study
    checkpoint of :class:`VolumeResNet` (``backbone.`` prefixes, a ``model`` entry). The ``module.`` and
    ``backbone.`` prefixes are removed; ``conv_seg.*`` and ``fc.*`` are dropped (the classifier is new).

    Parameters
    ----------
    path : str or Path
        The weights file.

    Returns
    -------
    dict
        Name -> tensor, e.g. ``conv1.weight``, ``layer4.2.bn3.bias``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it holds no tensors.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        raw: Any = load_file(str(p))
    else:
        raw = torch.load(p, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    for entry in ("state_dict", "model"):
        if isinstance(raw, Mapping) and isinstance(raw.get(entry), Mapping):
            raw = raw[entry]
            break
    if not isinstance(raw, Mapping):
        raise ValueError(f"weights file {p} holds no state dict (got {type(raw).__name__})")
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        if not name.startswith(_IGNORED_PREFIXES):
            out[name] = value
    if not out:
        raise ValueError(f"weights file {p} holds no backbone tensors (keys like 'conv1.weight' or "
                         "'module.conv1.weight')")
    return out


def load_backbone_weights(backbone: nn.Module, path: str | Path, name: str) -> None:
    """Load :func:`medicalnet_state_dict` of ``path`` into ``backbone``; every backbone tensor must be in it.

    Raises
    ------
    ValueError
        Naming the file and ``name`` when tensors are missing, left over or of another shape.
    """
    state = medicalnet_state_dict(path)
    try:
        result = backbone.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"could not load weights file {path} into {name!r}: {exc}") from exc
    if result.missing_keys:
        raise ValueError(f"weights file {path} does not fit {name!r}: {len(result.missing_keys)} tensors missing, "
                         f"e.g. {', '.join(result.missing_keys[:5])}")
    if result.unexpected_keys:
        raise ValueError(f"weights file {path} does not fit {name!r}: {len(result.unexpected_keys)} tensors it "
                         f"does not have, e.g. {', '.join(result.unexpected_keys[:5])}")
