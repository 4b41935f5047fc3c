"""Names of the study's methods and architectures (torch-free, shared by training and evaluation).

A method is a kind (``baseline``, ``kd``, ``pd``) and a chain of architectures, teacher first.
Its ID (``pd:efficientnet_b0>efficientnet_b3>efficientnet_b7``) is what prediction files hold;
its label (``Progressive Distill (B0>B3>B7)``) is what tables and legends print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

METHOD_KINDS: Final = ("baseline", "kd", "pd")

#: Display names of the paper's architectures.
DISPLAY_NAMES: Final = {
    "resnet50": "ResNet-50", "resnet101": "ResNet-101", "resnext101_32x8d": "ResNeXt-101",
    "densenet121": "DenseNet-121", "densenet201": "DenseNet-201", "vgg11": "VGG-11", "vgg16": "VGG-16",
    "efficientnet_b0": "EfficientNet-B0", "efficientnet_b3": "EfficientNet-B3", "efficientnet_b7": "EfficientNet-B7",
    "efficientnet_b7_transformer": "Hybrid Model (B7 + Transformer)", "resnet50_3d": "3D ResNet-50",
}

#: Other spellings of architectures (the paper's Table 2 file writes ``resnext101`` and
#: ``efficientnet_b7+transformer``).
ARCH_ALIASES: Final = {"resnext101": "resnext101_32x8d", "efficientnet_b7+transformer": "efficientnet_b7_transformer"}

#: Paper architecture -> its quick-profile stand-in: tiny timm test models for the EfficientNets, the hybrid
#: built on the B7 stand-in, a tiny MONAI 3D ResNet for the 3D ResNet-50
#: (described by ``pdstudy.learn.models.QUICK_ARCHITECTURES``, whose ``stands_in_for`` must agree).
QUICK_STAND_INS: Final[Mapping[str, str]] = MappingProxyType(
    {"efficientnet_b0": "test_byobnet", "efficientnet_b3": "test_convnext", "efficientnet_b7": "test_resnet",
     "efficientnet_b7_transformer": "test_resnet_transformer", "resnet50_3d": "test_resnet3d"}
)

_STAGES: Final = {"baseline": (1, 1), "kd": (2, 2), "pd": (2, 99)}


def display_arch(name: str) -> str:
    """Display name of an architecture (its own name when it has none)."""
    return DISPLAY_NAMES.get(name, name)


@dataclass(frozen=True)
class Method:
    """A baseline, KD or PD method on one chain of architectures.

    ``baseline`` has one stage; ``kd`` two (one student, no noise); ``pd`` two or more (noisy
    students, each the next teacher; two stages = one noisy iteration, the Table 4 "KD + MN" cell).
    """

    kind: str
    chain: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in METHOD_KINDS:
            raise ValueError(f"method kind must be one of {list(METHOD_KINDS)}, got {self.kind!r}")
        lo, hi = _STAGES[self.kind]
        if not lo <= len(self.chain) <= hi:
            raise ValueError(f"{self.kind} needs {lo}-{hi} stages, got chain {'>'.join(self.chain)}")

    @property
    def id(self) -> str:
        """Machine name used in prediction files."""
        return f"{self.kind}:{'>'.join(self.chain)}"

    @property
    def label(self) -> str:
        """Display name as the tables print it."""
        if self.kind == "baseline":
            return display_arch(self.chain[0])
        short = ">".join(display_arch(a).replace("EfficientNet-", "") for a in self.chain)
        return f"{'Knowledge Distillation' if self.kind == 'kd' else 'Progressive Distill'} ({short})"

    @property
    def final_stage(self) -> int:
        """Index of the method's final model (the last stage)."""
        return len(self.chain) - 1

    @property
    def noisy_students(self) -> bool:
        return self.kind == "pd"


def method_from_id(method_id: str) -> Method:
    """Parse a method ID ``"kind:arch>arch>..."`` as written in prediction files.

    Raises
    ------
    ValueError
        If the ID is not ``kind:chain``, the kind is unknown, an architecture is empty, or the
        number of stages does not fit the kind.
    """
    if not isinstance(method_id, str) or ":" not in method_id:
        raise ValueError(f"method ID {method_id!r} must look like 'kind:arch>arch', e.g. 'baseline:efficientnet_b7'")
    kind, _, chain = method_id.partition(":")
    parts = tuple(p.strip() for p in chain.split(">"))
    if not parts or any(not p for p in parts):
        raise ValueError(f"method ID {method_id!r}: chain {chain!r} must name architectures separated by '>'")
    return Method(kind.strip(), parts)


#: Display names of the class-activation-map methods (``pdstudy.learn.CAM_METHODS``).
CAM_METHOD_LABELS: Final = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "eigencam": "EigenCAM"}


#: Table 4's ablation flags: knowledge distillation, model noise, multiple iterations.
ABLATION_FLAGS: Final = ("kd", "mn", "mi")


def ablation_grid(architectures: tuple[str, ...] | list[str] = ("efficientnet_b7", "efficientnet_b3"),
                  ) -> dict[tuple[str, int, int, int], Method]:
    """The paper's ablation grid (Table 4): ``(model, kd, mn, mi) -> Method``, four cells per architecture.

    Parameters
    ----------
    architectures : sequence of str
        Study architecture names, in table order (default B7, then B3, as in the paper).

    Returns
    -------
    dict
        Baseline (0, 0, 0), KD without noise (1, 0, 0), one noisy-student iteration (1, 1, 0) and two (1, 1, 1).
    """
    if isinstance(architectures, str) or not architectures:
        raise ValueError(f"architectures must be a non-empty list of architecture names, got {architectures!r}")
    out: dict[tuple[str, int, int, int], Method] = {}
    for arch in architectures:
        out[(arch, 0, 0, 0)] = Method("baseline", (arch,))
        out[(arch, 1, 0, 0)] = Method("kd", (arch, arch))
        out[(arch, 1, 1, 0)] = Method("pd", (arch, arch))
        out[(arch, 1, 1, 1)] = Method("pd", (arch, arch, arch))
    return out
