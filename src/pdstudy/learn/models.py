"""Classifiers of the study: timm CNNs by registry name, the CNN + Transformer hybrid and the 3D ResNet.

:func:`build_model` creates a study architecture (:data:`PAPER_ARCHITECTURES`, the Table 2 models, or
:data:`QUICK_ARCHITECTURES`, the quick profile's stand-ins) with dropout and stochastic depth
(:data:`NOISE_CAPABILITIES`) and ImageNet or local weights. An architecture's ``kind`` says what it is:
a timm CNN (``"cnn"``), a timm CNN with Transformer blocks (``"hybrid"``, :mod:`pdstudy.learn.hybrid`)
or a MONAI 3D ResNet on one volume per patient (``"volume"``, :mod:`pdstudy.learn.resnet3d`). Tables,
choices and caveats: docs/training.md, "Models by registry name".
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

import timm
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from timm.layers import DropPath
from torch import nn

from pdstudy.core.hashing import sha256_file
from pdstudy.core.methods import ARCH_ALIASES, QUICK_STAND_INS
from pdstudy.learn.hybrid import HYBRID_DEFAULTS, CnnTransformer
from pdstudy.learn.resnet3d import MEDICALNET_HUB, VolumeResNet, build_volume_backbone, load_backbone_weights

__all__ = [
    "ALIASES",
    "ARCHITECTURE_KINDS",
    "NOISE_CAPABILITIES",
    "PAPER_ARCHITECTURES",
    "QUICK_ARCHITECTURES",
    "Architecture",
    "PretrainedWeightsUnavailableError",
    "available_architectures",
    "build_model",
    "count_parameters",
    "get_architecture",
    "gradcam_target_layer",
    "is_volumetric",
    "local_weights_file",
    "model_noise",
    "weights_file_sha256",
]


#: What an architecture is: a timm CNN on slices, a timm CNN with Transformer blocks on slices, a 3D CNN on volumes.
ARCHITECTURE_KINDS: Final = ("cnn", "hybrid", "volume")


@dataclass(frozen=True)
class Architecture:
    """One row of an architecture table.

    Attributes
    ----------
    timm_tag : str
        timm model name with pretrained tag, e.g. ``"resnet50.tv_in1k"``; for a hybrid, its CNN's tag
        (whose ImageNet weights it starts from); empty for a volume model (not a timm model).
    family : str
        timm module defining the model (``"hybrid"`` and ``"resnet3d"`` for the models of
        :mod:`pdstudy.learn.hybrid` and :mod:`pdstudy.learn.resnet3d`), a key of :data:`NOISE_CAPABILITIES`.
    input_size : int
        Side of the square input the study trains at (paper: 224 crops; quick: CPU smoke size).
    native_input_size : int
        Side of the square input the ImageNet weights were trained at.
    notes : str
        Provenance and caveats.
    stands_in_for : str or None
        For quick-profile models, the paper architecture they replace.
    model_kwargs : Mapping
        Extra keyword arguments for ``timm.create_model`` (e.g. ``output_stride``); for a hybrid, the
        Transformer part's (:class:`pdstudy.learn.hybrid.CnnTransformer`); for a volume model, MONAI's
        ``ResNet`` (:func:`pdstudy.learn.resnet3d.build_volume_backbone`).
    kind : str
        One of :data:`ARCHITECTURE_KINDS`.
    backbone : str or None
        For a hybrid, the architecture (a ``"cnn"`` row) of its CNN.
    weights_name : str or None
        Stem of its local weights file in a ``weights_dir`` when it has no timm tag (volume models).
    """

    timm_tag: str
    family: str
    input_size: int
    native_input_size: int
    notes: str = ""
    stands_in_for: str | None = None
    model_kwargs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    kind: str = "cnn"
    backbone: str | None = None
    weights_name: str | None = None

    @property
    def timm_name(self) -> str:
        """timm registry name without the pretrained tag."""
        return self.timm_tag.partition(".")[0]

    @property
    def weights_stem(self) -> str:
        """File name, without suffix, of its local weights in a ``weights_dir``: ``weights_name`` or the timm tag."""
        return self.weights_name or self.timm_tag


_TV = "torchvision weights as re-hosted by timm (what torchvision's pretrained=True gave)"
_TF_EFFNET = (
    "TF-ported EfficientNet ('same' padding, BN eps 1e-3), original AutoAugment checkpoints; "
    "the same recipe for the whole B0/B3/B7 ladder (timm has no native-PyTorch B7 weights)"
)

PAPER_ARCHITECTURES: Final[Mapping[str, Architecture]] = MappingProxyType(
    {
        "resnet50": Architecture("resnet50.tv_in1k", "resnet", 224, 224, _TV),
        "resnet101": Architecture("resnet101.tv_in1k", "resnet", 224, 224, _TV),
        "resnext101_32x8d": Architecture(
            "resnext101_32x8d.tv_in1k",
            "resnet",
            224,
            224,
            _TV + "; the paper prints ResNext-101 without width, 32x8d is torchvision's classic ResNeXt-101",
        ),
        "densenet121": Architecture("densenet121.tv_in1k", "densenet", 224, 224, _TV),
        "densenet201": Architecture("densenet201.tv_in1k", "densenet", 224, 224, _TV),
        "vgg11": Architecture(
            "vgg11.tv_in1k",
            "vgg",
            224,
            224,
            _TV + "; no BatchNorm; torchvision's head had dropout 0.5 built in",
        ),
        "vgg16": Architecture(
            "vgg16.tv_in1k",
            "vgg",
            224,
            224,
            _TV + "; no BatchNorm; torchvision's head had dropout 0.5 built in",
        ),
        "efficientnet_b0": Architecture("tf_efficientnet_b0.aa_in1k", "efficientnet", 224, 224, _TF_EFFNET),
        "efficientnet_b3": Architecture("tf_efficientnet_b3.aa_in1k", "efficientnet", 224, 300, _TF_EFFNET),
        "efficientnet_b7": Architecture("tf_efficientnet_b7.aa_in1k", "efficientnet", 224, 600, _TF_EFFNET),
        "efficientnet_b7_transformer": Architecture(
            "tf_efficientnet_b7.aa_in1k",
            "hybrid",
            224,
            600,
            "the paper's 'Hybrid Model', unspecified there: EfficientNet-B7 (its ImageNet weights) feature map -> "
            "1x1 projection to tokens + learned positions -> timm ViT blocks -> mean token fused with the pooled "
            "CNN map; Transformer depth, width, heads and fusion are choices (docs/training.md)",
            kind="hybrid",
            backbone="efficientnet_b7",
            model_kwargs=MappingProxyType(dict(HYBRID_DEFAULTS)),
        ),
        "resnet50_3d": Architecture(
            "",
            "resnet3d",
            224,
            224,
            "MONAI's 3D ResNet-50 (monai.networks.nets.resnet50's configuration, MedicalNet's shortcut B and "
            "stride-2 first convolution) on one volume per patient; pretrained 3D weights: MedicalNet, from "
            "weights_dir/resnet50_3d.pth or the hub",
            kind="volume",
            weights_name="resnet50_3d",
            model_kwargs=MappingProxyType({"block": "bottleneck", "layers": (3, 4, 6, 3),
                                           "block_inplanes": (64, 128, 256, 512), "shortcut_type": "B",
                                           "bias_downsample": False, "conv1_t_stride": 2}),
        ),
    }
)

#: Quick model -> the paper architecture it stands in for (the pairs are pdstudy.core.methods.QUICK_STAND_INS).
_STANDS_IN_FOR: Final = {quick: paper for paper, quick in QUICK_STAND_INS.items()}

QUICK_ARCHITECTURES: Final[Mapping[str, Architecture]] = MappingProxyType(
    {
        "test_byobnet": Architecture(
            "test_byobnet.r160_in1k",
            "byobnet",
            64,
            160,
            "200,370 params (2 classes); 4 blocks: edge (fused-MBConv-like), dark, basic, bottleneck, with SE",
            stands_in_for=_STANDS_IN_FOR["test_byobnet"],
            model_kwargs=MappingProxyType({"output_stride": 16}),
        ),
        "test_convnext": Architecture(
            "test_convnext.r160_in1k",
            "convnext",
            64,
            160,
            "207,258 params (2 classes); 9 ConvNeXt blocks (depthwise 7x7 conv, LayerNorm, GELU)",
            stands_in_for=_STANDS_IN_FOR["test_convnext"],
            model_kwargs=MappingProxyType({"ls_init_value": 1.0}),
        ),
        "test_resnet": Architecture(
            "test_resnet.r160_in1k",
            "resnet",
            64,
            160,
            "372,882 params (2 classes); ResNet basic/bottleneck blocks",
            stands_in_for=_STANDS_IN_FOR["test_resnet"],
            model_kwargs=MappingProxyType({"output_stride": 16}),
        ),
        "test_resnet_transformer": Architecture(
            "test_resnet.r160_in1k",
            "hybrid",
            64,
            160,
            "the hybrid built the same way on test_resnet (the B7 stand-in) with one small Transformer block "
            "(width 32, 2 heads)",
            stands_in_for=_STANDS_IN_FOR["test_resnet_transformer"],
            kind="hybrid",
            backbone="test_resnet",
            model_kwargs=MappingProxyType({"depth": 1, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2.0,
                                           "fusion": "concat"}),
        ),
        "test_resnet3d": Architecture(
            "",
            "resnet3d",
            64,
            64,
            "a tiny MONAI 3D ResNet (basic blocks, one per stage, widths 8-64), built like resnet50_3d; no "
            "pretrained weights exist for it",
            stands_in_for=_STANDS_IN_FOR["test_resnet3d"],
            kind="volume",
            weights_name="test_resnet3d",
            model_kwargs=MappingProxyType({"block": "basic", "layers": (1, 1, 1, 1), "block_inplanes": (8, 16, 32, 64),
                                           "shortcut_type": "B", "bias_downsample": False, "conv1_t_stride": 2}),
        ),
    }
)


#: Other spellings accepted by :func:`get_architecture`.
ALIASES: Final[Mapping[str, str]] = MappingProxyType(dict(ARCH_ALIASES))

#: Which model noise each timm family accepts (checked against timm's constructors in the tests).
NOISE_CAPABILITIES: Final[Mapping[str, Mapping[str, bool]]] = MappingProxyType(
    {
        "resnet": MappingProxyType({"drop_rate": True, "drop_path_rate": True}),
        "efficientnet": MappingProxyType({"drop_rate": True, "drop_path_rate": True}),
        "byobnet": MappingProxyType({"drop_rate": True, "drop_path_rate": True}),
        "convnext": MappingProxyType({"drop_rate": True, "drop_path_rate": True}),
        "densenet": MappingProxyType({"drop_rate": True, "drop_path_rate": False}),
        "vgg": MappingProxyType({"drop_rate": True, "drop_path_rate": False}),
        # dropout before the classifier; stochastic depth in the Transformer blocks and in the CNN (when its
        # family has it)
        "hybrid": MappingProxyType({"drop_rate": True, "drop_path_rate": True}),
        # dropout before the classifier; MONAI's ResNet has no stochastic depth
        "resnet3d": MappingProxyType({"drop_rate": True, "drop_path_rate": False}),
    }
)

_NOISE_MEANING: Final = {"drop_rate": "dropout", "drop_path_rate": "stochastic depth"}
_WEIGHT_SUFFIXES: Final = (".safetensors", ".pth", ".pt", ".bin")
#: Names looked for in a ``weights_dir``, in this order: ``<timm tag><suffix>``.
_WEIGHTS_DIR_SUFFIXES: Final = (".safetensors", ".pth", ".pt")


class PretrainedWeightsUnavailableError(RuntimeError):
    """ImageNet weights are neither in the Hugging Face hub cache nor downloadable."""


def available_architectures() -> tuple[str, ...]:
    """Names accepted by :func:`build_model` (paper, then quick profile)."""
    return (*PAPER_ARCHITECTURES, *QUICK_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    """Table row of a study or quick-profile architecture name (aliases resolved).

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`PAPER_ARCHITECTURES` or :data:`QUICK_ARCHITECTURES`.
    """
    key = ALIASES.get(name, name)
    if key in PAPER_ARCHITECTURES:
        return PAPER_ARCHITECTURES[key]
    if key in QUICK_ARCHITECTURES:
        return QUICK_ARCHITECTURES[key]
    raise ValueError(
        f"unknown architecture {name!r}; valid choices: {', '.join(available_architectures())}"
        f" (aliases: {', '.join(f'{a}={t}' for a, t in ALIASES.items())})"
    )


def local_weights_file(weights_dir: str | Path | None, name: str) -> Path | None:
    """The weights file a study build of ``name`` loads from ``weights_dir``, or None.

    Parameters
    ----------
    weights_dir : str or Path or None
        Folder of local weight files named ``<timm tag>.safetensors`` (or ``.pth``, ``.pt``, looked
        for in that order); None or ``""``: no folder. A hybrid loads its CNN's file (the CNN's timm
        tag); a volume model its ``weights_name`` (``resnet50_3d.pth``: MedicalNet's ResNet-50).
    name : str
        Architecture actually built (a key of :data:`PAPER_ARCHITECTURES` or :data:`QUICK_ARCHITECTURES`,
        or an alias); its table row gives the file name (:attr:`Architecture.weights_stem`).

    Returns
    -------
    pathlib.Path or None
        The first existing file, or None when ``weights_dir`` is unset or holds none for this tag (the
        model is then built as ``pretrained`` says).
    """
    tag = get_architecture(name).weights_stem
    if weights_dir is None or str(weights_dir) == "":
        return None
    if not isinstance(weights_dir, (str, Path)):
        raise TypeError(f"weights_dir must be a folder path (str or Path) or None, got {type(weights_dir).__name__}")
    for suffix in _WEIGHTS_DIR_SUFFIXES:
        candidate = Path(weights_dir) / f"{tag}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def weights_file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a weights file's bytes, computed once per process while the file is unchanged.

    The digest is cached under the file's resolved path, size, inode and modification and change
    times (ns), so the same file is read once per process however many stage keys use it, and a
    file replaced or rewritten under the same name is read again.

    Parameters
    ----------
    path : str or Path
        An existing file.

    Returns
    -------
    str
        64 hex digits.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p} (path)")
    st = p.stat()
    return _cached_sha256(str(p.resolve()), st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=64)
def _cached_sha256(path: str, size: int, inode: int, mtime_ns: int, ctime_ns: int) -> str:
    """SHA-256 of a file, memoised on its identity (the arguments after ``path``; see :func:`weights_file_sha256`)."""
    return sha256_file(path)


def _noise_kwargs(name: str, family: str, drop_rate: float, drop_path_rate: float) -> dict[str, float]:
    """timm keyword arguments for the requested noise; raise for noise the family lacks."""
    capabilities = NOISE_CAPABILITIES[family]
    supported = [key for key, ok in capabilities.items() if ok]
    kwargs = {}
    for key, rate in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {rate}")
        if capabilities[key]:
            kwargs[key] = float(rate)
        elif rate > 0.0:
            raise ValueError(
                f"{name} (timm family {family!r}) does not support {key} ({_NOISE_MEANING[key]}); "
                f"supported model noise for {family!r}: {', '.join(supported) or 'none'}"
            )
    return kwargs


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning 'weights could not be fetched from the hub or its cache'."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx", "httpx2"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _unavailable_message(name: str, arch: Architecture, exc: BaseException) -> str:
    cache = f"{hf_constants.HF_HUB_CACHE}"
    repo = f"timm/{arch.timm_tag}"
    reason = str(exc).rstrip(". ")
    return (
        f"ImageNet weights for {name!r} (timm tag {arch.timm_tag!r}, hub repo {repo!r}) are not available: "
        f"{type(exc).__name__}: {reason}. Remedies: (1) put them in the Hugging Face hub cache - on a machine "
        f"with network run `hf download {repo}`, copy the cache (here {cache}) over, point HF_HOME at it "
        "and set HF_HUB_OFFLINE=1 to skip network retries; or (2) pass weights_path= a local .safetensors "
        f"or .pth state dict of {arch.timm_tag} (e.g. model.safetensors from {repo})."
    )


class _LoadReport(logging.Filter):
    """Collect timm's pretrained-loading log messages; pass on only those the user would have seen."""

    def __init__(self, passthrough_level: int) -> None:
        super().__init__()
        self.passthrough_level = passthrough_level
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return record.levelno >= self.passthrough_level

    def missing_keys(self) -> list[str]:
        keys: list[str] = []
        for message in self.messages:
            match = re.search(r"Missing keys \((.*)\) discovered", message)
            if match:
                keys += [key for key in match.group(1).split(", ") if key]
        return keys


@contextmanager
def _timm_load_report() -> Iterator[_LoadReport]:
    """Capture the missing keys timm reports (at INFO) while loading pretrained weights."""
    logger = logging.getLogger("timm.models._builder")
    report = _LoadReport(logger.getEffectiveLevel())
    old_level = logger.level
    logger.addFilter(report)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield report
    finally:
        logger.setLevel(old_level)
        logger.removeFilter(report)


def _classifier_rows(path: Path, classifiers: tuple[str, ...]) -> int | None:
    """Number of classes of the classifier stored in a weights file (None when absent)."""
    state_dict = timm.models.load_state_dict(str(path), weights_only=True)  # never unpickle arbitrary objects
    for classifier in classifiers:
        weight = state_dict.get(f"{classifier}.weight")
        if weight is not None:
            return int(weight.shape[0])
    return None


def _build_from_file(name: str, arch: Architecture, path: Path, kwargs: dict) -> nn.Module:
    """Create a timm model and load a local weights file through timm's ``pretrained_cfg_overlay``."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix not in _WEIGHT_SUFFIXES:
        raise ValueError(f"weights file must be one of {', '.join(_WEIGHT_SUFFIXES)}, got {path.name!r}")
    cfg = timm.models.get_pretrained_cfg(arch.timm_tag)
    classifiers = cfg.classifier if isinstance(cfg.classifier, (tuple, list)) else (cfg.classifier,)
    overlay: dict[str, object] = {"file": str(path)}
    rows = _classifier_rows(path, tuple(classifiers))
    if rows is not None:
        # timm drops the stored head when its class count differs from num_classes, and keeps it otherwise.
        overlay["num_classes"] = rows
    with _timm_load_report() as report:
        try:
            model = timm.create_model(arch.timm_tag, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except RuntimeError as exc:
            raise ValueError(f"could not load weights file {path} into {name!r} ({arch.timm_tag}): {exc}") from exc
    head_keys = {f"{c}.{p}" for c in classifiers for p in ("weight", "bias")}
    missing = [key for key in report.missing_keys() if key not in head_keys]
    if missing:
        raise ValueError(
            f"weights file {path} does not fit {name!r} ({arch.timm_tag}): {len(missing)} tensors missing, "
            f"e.g. {', '.join(missing[:5])}"
        )
    return model


def build_model(
    name: str,
    *,
    num_classes: int = 2,
    pretrained: bool | Literal["auto"] = False,
    weights_path: str | Path | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    in_chans: int | None = None,
    model_kwargs: Mapping[str, object] | None = None,
) -> nn.Module:
    """Create a study classifier by name.

    Parameters
    ----------
    name : str
        Key of :data:`PAPER_ARCHITECTURES` or :data:`QUICK_ARCHITECTURES` (or an :data:`ALIASES` key).
    num_classes : int
        Output logits; the study uses 2 (class 1 = ``poor``).
    pretrained : bool or "auto"
        ``False``: random init. ``True``: ImageNet weights of the table's timm tag from the Hugging Face
        hub cache (downloaded if online); raises :class:`PretrainedWeightsUnavailableError` naming the
        remedies if neither works. ``"auto"``: like ``True`` but warns and falls back to random init.
        Ignored when ``weights_path`` is given. Without network, set ``HF_HUB_OFFLINE=1``: otherwise the
        hub client retries for about a minute before giving up.
    weights_path : str or Path, optional
        Local ``.safetensors`` or ``.pth``/``.pt`` state dict (timm or torchvision layout; training
        checkpoints with a ``state_dict``/``model`` entry work too) loaded without any network access.
        A stored classifier with a different class count (ImageNet's 1000) is dropped and re-initialised;
        one with ``num_classes`` rows (a study checkpoint) is kept. A file that leaves other tensors
        unloaded raises ``ValueError``.
    drop_rate : float
        Dropout rate, in [0, 1).
    drop_path_rate : float
        Stochastic depth rate, in [0, 1); ``ValueError`` for families without it (see :data:`NOISE_CAPABILITIES`).
    in_chans : int, optional
        Input channels; default 3 for slice models (slices replicated by the data pipeline; pretrained
        first convolutions are adapted to other counts) and 1 for volume models (the only count they take).
    model_kwargs : mapping, optional
        Overrides of the table row's ``model_kwargs`` (e.g. ``{"depth": 2}`` for a hybrid's Transformer).

    Returns
    -------
    torch.nn.Module
        The model; ``model.pretrained_cfg`` holds the input normalisation of its weights. Slice models
        take ``(B, 3, H, W)``, volume models ``(B, 1, D, H, W)``.

    Notes
    -----
    A hybrid (``kind == "hybrid"``) builds its CNN through this function (ImageNet weights, local file,
    ``pretrained`` as above, the CNN's stochastic depth) and adds the Transformer part
    (:class:`pdstudy.learn.hybrid.CnnTransformer`). A volume model (``kind == "volume"``) is a MONAI 3D
    ResNet (:class:`pdstudy.learn.resnet3d.VolumeResNet`); ``weights_path`` takes MedicalNet's layout and
    ``pretrained=True`` fetches MedicalNet's ResNet-50 from the Hugging Face hub (cache first).
    """
    arch = get_architecture(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_chans is not None and in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    if pretrained not in (False, True, "auto"):
        raise ValueError(f"pretrained must be False, True or 'auto', got {pretrained!r}")
    overrides = dict(model_kwargs or {})
    if arch.kind == "hybrid":
        return _build_hybrid(name, arch, num_classes=num_classes, pretrained=pretrained, weights_path=weights_path,
                             drop_rate=drop_rate, drop_path_rate=drop_path_rate, in_chans=3 if in_chans is None
                             else in_chans, overrides=overrides)
    if arch.kind == "volume":
        return _build_volume(name, arch, num_classes=num_classes, pretrained=pretrained, weights_path=weights_path,
                             drop_rate=drop_rate, drop_path_rate=drop_path_rate, in_chans=1 if in_chans is None
                             else in_chans, overrides=overrides)
    in_chans = 3 if in_chans is None else in_chans
    kwargs = {
        **arch.model_kwargs,
        **overrides,
        "num_classes": num_classes,
        "in_chans": in_chans,
        **_noise_kwargs(name, arch.family, drop_rate, drop_path_rate),
    }
    if weights_path is not None:
        return _build_from_file(name, arch, Path(weights_path), kwargs)
    if pretrained is False:
        return timm.create_model(arch.timm_tag, pretrained=False, **kwargs)
    try:
        return timm.create_model(arch.timm_tag, pretrained=True, **kwargs)
    except _hub_errors() as exc:
        message = _unavailable_message(name, arch, exc)
        if pretrained == "auto":
            warnings.warn(f"{message} Falling back to random initialisation.", RuntimeWarning, stacklevel=2)
            return timm.create_model(arch.timm_tag, pretrained=False, **kwargs)
        raise PretrainedWeightsUnavailableError(message) from exc


def _build_hybrid(name: str, arch: Architecture, *, num_classes: int, pretrained: bool | str,
                  weights_path: str | Path | None, drop_rate: float, drop_path_rate: float, in_chans: int,
                  overrides: dict[str, object]) -> nn.Module:
    """The CNN of ``arch.backbone`` (weights as :func:`build_model` loads them) with the Transformer part on top."""
    _noise_kwargs(name, arch.family, drop_rate, drop_path_rate)  # range checks
    cnn_arch = get_architecture(str(arch.backbone))
    cnn_drop_path = drop_path_rate if NOISE_CAPABILITIES[cnn_arch.family]["drop_path_rate"] else 0.0
    cnn = build_model(str(arch.backbone), num_classes=num_classes, pretrained=pretrained,  # type: ignore[arg-type]
                      weights_path=weights_path, drop_path_rate=cnn_drop_path, in_chans=in_chans)
    cnn.reset_classifier(0)  # the hybrid has its own classifier
    grid = math.ceil(arch.input_size / int(cnn.feature_info[-1]["reduction"]))
    unknown = sorted(set(overrides) - set(HYBRID_DEFAULTS))
    if unknown:
        raise ValueError(f"{name}: unknown model_kwargs {unknown}; the hybrid takes {sorted(HYBRID_DEFAULTS)}")
    options = {**HYBRID_DEFAULTS, **arch.model_kwargs, **overrides}
    return CnnTransformer(cnn, grid=grid, num_classes=num_classes, drop_rate=drop_rate,
                          drop_path_rate=drop_path_rate, **options)  # type: ignore[arg-type]


#: Hub file of the pretrained weights of each volume model that has some (stand-ins have none).
_VOLUME_HUB: Final = {"resnet50_3d": MEDICALNET_HUB}


def _volume_weights(name: str, arch: Architecture, pretrained: bool | str) -> Path | None:
    """MedicalNet's file from the Hugging Face hub (cache first) for ``pretrained``; None to start at random."""
    if pretrained is False:
        return None
    key = next((k for k in (name, ALIASES.get(name, name)) if k in _VOLUME_HUB), None)
    remedy = (f"put a MedicalNet-layout file in weights_dir as {arch.weights_stem}.pth (or pass weights_path=), "
              "or use pretrained=False")
    try:
        if key is None:
            raise FileNotFoundError(f"no pretrained weights exist for {name!r}")
        repo, filename = _VOLUME_HUB[key]
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except _hub_errors() as exc:
        message = (f"pretrained 3D weights for {name!r} are not available: {type(exc).__name__}: {exc}. "
                   f"Remedy: {remedy}.")
        if pretrained == "auto":
            warnings.warn(f"{message} Falling back to random initialisation.", RuntimeWarning, stacklevel=3)
            return None
        raise PretrainedWeightsUnavailableError(message) from exc


def _build_volume(name: str, arch: Architecture, *, num_classes: int, pretrained: bool | str,
                  weights_path: str | Path | None, drop_rate: float, drop_path_rate: float, in_chans: int,
                  overrides: dict[str, object]) -> nn.Module:
    """A MONAI 3D ResNet on one-channel volumes, with MedicalNet-layout weights when given or asked for."""
    if in_chans != 1:
        raise ValueError(f"{name} takes one-channel volumes (B, 1, D, H, W); in_chans must be 1, got {in_chans}")
    _noise_kwargs(name, arch.family, drop_rate, drop_path_rate)
    backbone = build_volume_backbone({**arch.model_kwargs, **overrides})
    path = Path(weights_path) if weights_path is not None else _volume_weights(name, arch, pretrained)
    if path is not None:
        if path.suffix not in _WEIGHT_SUFFIXES:
            raise ValueError(f"weights file must be one of {', '.join(_WEIGHT_SUFFIXES)}, got {path.name!r}")
        load_backbone_weights(backbone, path, name)
    return VolumeResNet(backbone, int(backbone.in_planes), num_classes=num_classes, drop_rate=drop_rate)


def is_volumetric(name: str) -> bool:
    """Whether architecture ``name`` takes one volume per patient (``kind == "volume"``) instead of slices."""
    return get_architecture(name).kind == "volume"


def gradcam_target_layer(model: nn.Module, name: str) -> nn.Module:
    """Module whose output is the last convolutional feature map, for Grad-CAM hooks.

    Per family, the rectified map that the classifier pools:

    - resnet: ``layer4[-1]`` (last residual block, after its ReLU);
    - densenet: ``features.norm5`` (BatchNorm + ReLU over the concatenated ``denseblock4`` output);
    - efficientnet: ``bn2`` (BatchNorm + SiLU after ``conv_head``);
    - byobnet: ``final_conv`` if present, else ``stages[-1]``;
    - convnext: ``stages[-1]`` (its head pools, then normalises);
    - vgg: the ReLU after the last ``Conv2d`` of ``features`` (not the classifier's pre-logits convs).
      It is switched to out-of-place (same numbers): in place, it would overwrite the hooked map
      of the convolution and break full backward hooks.
    - hybrid: its CNN's layer as above (``cnn.bn2`` for EfficientNet-B7), the map that both the tokens
      and the pooled local feature come from;
    - resnet3d (volume models): ``backbone.layer4[-1]``, a ``(B, C, d, h, w)`` map.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`build_model`.
    name : str
        The architecture name it was built with.
    """
    arch = get_architecture(name)
    if arch.kind == "hybrid":
        return gradcam_target_layer(model.cnn, str(arch.backbone))
    if arch.kind == "volume":
        return model.backbone.layer4[-1]
    family = arch.family
    if family == "resnet":
        return model.layer4[-1]
    if family == "densenet":
        return model.features.norm5
    if family == "efficientnet":
        return model.bn2
    if family == "convnext":
        return model.stages[-1]
    if family == "byobnet":
        return model.stages[-1] if isinstance(model.final_conv, nn.Identity) else model.final_conv
    if family == "vgg":
        layers = list(model.features)
        last_conv = max(i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d))
        act = layers[last_conv + 1]
        if hasattr(act, "inplace"):
            act.inplace = False
        return act
    raise ValueError(f"no Grad-CAM layer defined for family {family!r}")


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_noise(model: nn.Module) -> dict[str, float]:
    """Model noise a model carries: its dropout rate and largest stochastic-depth rate.

    ``drop_rate`` is the largest of ``model.drop_rate`` and the ``nn.Dropout`` rates;
    ``drop_path_rate`` is the largest ``DropPath`` rate (timm decays it over depth, so for
    EfficientNet it is below the requested rate).
    """
    dropout = [float(getattr(model, "drop_rate", 0.0) or 0.0)]
    dropout += [float(m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    drop_path = [float(m.drop_prob) for m in model.modules() if isinstance(m, DropPath)]
    return {"drop_rate": max(dropout), "drop_path_rate": max(drop_path, default=0.0)}
