"""Tests of pdstudy.learn.models: every architecture builds and trains, noise, local weights, offline hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import DropPath
from torch import nn

from pdstudy.core import methods
from pdstudy.core.methods import QUICK_STAND_INS
from pdstudy.learn import models
from pdstudy.learn.models import (
    NOISE_CAPABILITIES,
    PAPER_ARCHITECTURES,
    QUICK_ARCHITECTURES,
    PretrainedWeightsUnavailableError,
    available_architectures,
    build_model,
    count_parameters,
    get_architecture,
    gradcam_target_layer,
    model_noise,
)

ALL_ARCHITECTURES = {**PAPER_ARCHITECTURES, **QUICK_ARCHITECTURES}
#: The timm CNNs (the hybrid and the 3D ResNet: tests/learn/test_hybrid_and_volume.py).
CNN_ARCHITECTURES = {n: a for n, a in ALL_ARCHITECTURES.items() if a.kind == "cnn"}
#: The models that take 2D slices: the CNNs and the hybrid.
SLICE_ARCHITECTURES = {n: a for n, a in ALL_ARCHITECTURES.items() if a.kind != "volume"}

#: Grad-CAM layer expected per architecture, as a path in ``model.named_modules()``.
GRADCAM_LAYERS = {
    "resnet50": "layer4.2",
    "resnet101": "layer4.2",
    "resnext101_32x8d": "layer4.2",
    "densenet121": "features.norm5",
    "densenet201": "features.norm5",
    "vgg11": "features.19",  # ReLU after the last Conv2d (features.18)
    "vgg16": "features.29",  # ReLU after the last Conv2d (features.28)
    "efficientnet_b0": "bn2",
    "efficientnet_b3": "bn2",
    "efficientnet_b7": "bn2",
    "test_byobnet": "stages.3",
    "test_convnext": "stages.3",
    "test_resnet": "layer4.0",
    "efficientnet_b7_transformer": "cnn.bn2",
    "test_resnet_transformer": "cnn.layer4.0",
}


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Hugging Face hub offline with an empty cache, so no test can download or hang."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache / "hub"))
    return cache


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail on any attempt by timm to fetch weights remotely."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    for name in ("load_state_dict_from_hf", "load_state_dict_from_url", "download_cached_file"):
        monkeypatch.setattr(f"timm.models._builder.{name}", forbidden)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", forbidden)


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


# --- tables ---------------------------------------------------------------------------------------


def test_table2_architectures_present() -> None:
    expected = {
        "resnet50", "resnet101", "resnext101_32x8d", "densenet121", "densenet201",
        "vgg11", "vgg16", "efficientnet_b0", "efficientnet_b3", "efficientnet_b7",
    }  # fmt: skip
    assert {n for n, a in PAPER_ARCHITECTURES.items() if a.kind == "cnn"} == expected
    assert set(PAPER_ARCHITECTURES) == expected | {"efficientnet_b7_transformer", "resnet50_3d"}
    assert set(QUICK_STAND_INS) == set(PAPER_ARCHITECTURES) - expected | {"efficientnet_b0", "efficientnet_b3",
                                                                          "efficientnet_b7"}
    assert get_architecture("resnext101") is PAPER_ARCHITECTURES["resnext101_32x8d"]


@pytest.mark.parametrize("name", [n for n, a in ALL_ARCHITECTURES.items() if a.kind != "volume"])
def test_table_rows_match_timm(name: str) -> None:
    """Slice models' tags (a hybrid's: its CNN's) name timm models with ImageNet weights."""
    arch = ALL_ARCHITECTURES[name]
    if arch.kind == "hybrid":
        assert arch.timm_tag == ALL_ARCHITECTURES[arch.backbone].timm_tag
        assert arch.input_size == ALL_ARCHITECTURES[arch.backbone].input_size
        arch = ALL_ARCHITECTURES[arch.backbone]
    assert arch.timm_tag in timm.list_pretrained(arch.timm_tag), "tag must have ImageNet weights"
    cfg = timm.models.get_pretrained_cfg(arch.timm_tag)
    assert cfg.num_classes == 1000
    assert cfg.input_size[-1] == arch.native_input_size
    assert arch.timm_name in timm.list_models(module=arch.family)
    assert arch.family in NOISE_CAPABILITIES


def test_quick_stand_ins_grow_like_the_ladder() -> None:
    sizes = [count_parameters(build_model(QUICK_STAND_INS[f"efficientnet_b{i}"])) for i in (0, 3, 7)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


@pytest.mark.parametrize("family", sorted({a.family for a in CNN_ARCHITECTURES.values()}))
def test_noise_capabilities_match_timm(family: str) -> None:
    """The table says what timm's constructors really accept (timm raises TypeError otherwise)."""
    name = min(
        (n for n, a in CNN_ARCHITECTURES.items() if a.family == family),
        key=lambda n: (n not in QUICK_ARCHITECTURES, n),
    )
    timm_name = ALL_ARCHITECTURES[name].timm_name
    if NOISE_CAPABILITIES[family]["drop_path_rate"]:
        model = timm.create_model(timm_name, num_classes=2, drop_path_rate=0.2)
        assert any(isinstance(m, DropPath) and m.drop_prob > 0 for m in model.modules())
    else:
        with pytest.raises(TypeError, match="drop_path_rate"):
            timm.create_model(timm_name, num_classes=2, drop_path_rate=0.2)
    assert NOISE_CAPABILITIES[family]["drop_rate"]


# --- build, forward, backward, Grad-CAM layer -----------------------------------------------------


@pytest.mark.parametrize("name", list(SLICE_ARCHITECTURES))
def test_forward_backward_and_gradcam_layer(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name)
    layer = gradcam_target_layer(model, name)
    assert _module_name(model, layer) == GRADCAM_LAYERS[name]

    captured: dict[str, torch.Tensor] = {}

    def keep(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        captured["act"] = output.detach().clone()
        output.register_hook(lambda grad: captured.__setitem__("grad", grad))

    hooks = [
        layer.register_forward_hook(keep),
        layer.register_full_backward_hook(lambda m, gi, go: captured.__setitem__("full_grad", go[0])),
    ]
    model.train()
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 2)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    for hook in hooks:
        hook.remove()

    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    act, grad = captured["act"], captured["grad"]
    assert act.ndim == 4 and act.shape[0] == 2 and grad.shape == act.shape
    if get_architecture(get_architecture(name).backbone or name).family in ("resnet", "densenet", "vgg", "byobnet"):
        assert (act >= 0).all(), "rectified feature map"
    torch.testing.assert_close(captured["full_grad"], grad)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_vgg_gradcam_layer_is_in_features_not_pre_logits() -> None:
    model = build_model("vgg11")
    layer = gradcam_target_layer(model, "vgg11")
    assert isinstance(layer, nn.ReLU) and not layer.inplace
    assert any(m is layer for m in model.features.modules())
    assert not any(m is layer for m in model.pre_logits.modules())


def test_in_chans_and_num_classes() -> None:
    model = build_model("test_byobnet", in_chans=1, num_classes=3)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_count_parameters() -> None:
    model = build_model("test_byobnet")
    assert count_parameters(model) == 200_370 == sum(p.numel() for p in model.parameters())
    model.head.fc.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 200_370 - model.head.fc.weight.numel() - 2


# --- model noise ----------------------------------------------------------------------------------

NOISE_CASES = [
    ("efficientnet_b0", 0.5, 0.0),
    ("efficientnet_b0", 0.0, 0.5),
    ("test_byobnet", 0.5, 0.0),
    ("test_byobnet", 0.0, 0.5),
    ("test_convnext", 0.5, 0.0),
    ("test_convnext", 0.0, 0.5),
    ("test_resnet", 0.5, 0.0),
    ("test_resnet", 0.0, 0.5),
    ("densenet121", 0.5, 0.0),
    ("vgg11", 0.5, 0.0),
    ("test_resnet_transformer", 0.5, 0.0),
    ("test_resnet_transformer", 0.0, 0.5),
    ("test_resnet3d", 0.5, 0.0),
]


@pytest.mark.parametrize(("name", "drop_rate", "drop_path_rate"), NOISE_CASES)
def test_noise_is_applied(name: str, drop_rate: float, drop_path_rate: float) -> None:
    torch.manual_seed(0)
    model = build_model(name, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    noise = model_noise(model)
    assert noise["drop_rate"] == drop_rate
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    if drop_path_rate:
        assert rates and 0 < max(rates) <= drop_path_rate == pytest.approx(noise["drop_path_rate"], abs=0.1)
    else:
        assert max(rates, default=0.0) == 0.0 == noise["drop_path_rate"]

    x = torch.randn(4, 1, 8, 32, 32) if get_architecture(name).kind == "volume" else torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        # timm zero-initialises the last norm of each residual branch, which hides stochastic depth
        # until the branches have trained; perturbing the weights stands in for training.
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
        model.train()
        assert not torch.equal(model(x), model(x)), "train mode: noise makes passes differ"
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(QUICK_ARCHITECTURES))
def test_no_noise_train_passes_equal(name: str) -> None:
    model = build_model(name).train()
    x = torch.randn(4, 1, 8, 32, 32) if QUICK_ARCHITECTURES[name].kind == "volume" else torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    assert model_noise(model) == {"drop_rate": 0.0, "drop_path_rate": 0.0}


@pytest.mark.parametrize("name", ["vgg11", "vgg16", "densenet121", "densenet201", "resnet50_3d"])
def test_unsupported_noise_raises(name: str) -> None:
    family = get_architecture(name).family
    with pytest.raises(ValueError, match=rf"drop_path_rate.*{family}.*drop_rate") as info:
        build_model(name, drop_path_rate=0.1)
    assert name in str(info.value)


def test_noise_range_checked() -> None:
    with pytest.raises(ValueError, match="drop_rate"):
        build_model("test_resnet", drop_rate=1.0)
    with pytest.raises(ValueError, match="drop_path_rate"):
        build_model("test_resnet", drop_path_rate=-0.1)


def test_unknown_architecture_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'efficientnet_b8'") as info:
        build_model("efficientnet_b8")
    for name in available_architectures():
        assert name in str(info.value)


def test_pretrained_argument_checked() -> None:
    with pytest.raises(ValueError, match="pretrained"):
        build_model("test_resnet", pretrained="yes")  # type: ignore[arg-type]


# --- weights ----------------------------------------------------------------------------------------


def _imagenet_like_state(name: str) -> dict[str, torch.Tensor]:
    """State dict of a 1000-class (ImageNet-shaped) model with random weights."""
    torch.manual_seed(1)
    source = timm.create_model(ALL_ARCHITECTURES[name].timm_name, num_classes=1000)
    return {k: v.clone() for k, v in source.state_dict().items()}


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("filename", ["weights.pth", "weights.safetensors", "weights.pt"])
@pytest.mark.usefixtures("no_network")
def test_weights_path_loads_backbone_and_resets_head(tmp_path: Path, filename: str) -> None:
    state = _imagenet_like_state("efficientnet_b0")
    path = _save(state, tmp_path / filename)
    model = build_model("efficientnet_b0", weights_path=path, drop_path_rate=0.2)
    assert model.classifier.out_features == 2
    loaded = model.state_dict()
    backbone = [k for k in state if not k.startswith("classifier.")]
    assert backbone and all(torch.equal(loaded[k], state[k]) for k in backbone)
    assert model_noise(model)["drop_path_rate"] > 0
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


@pytest.mark.usefixtures("no_network")
def test_weights_path_training_checkpoint_and_matching_head_kept(tmp_path: Path) -> None:
    teacher = build_model("test_resnet")
    path = tmp_path / "teacher.pth"
    torch.save({"state_dict": teacher.state_dict(), "epoch": 3}, path)
    student = build_model("test_resnet", weights_path=path)
    for key, value in teacher.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key


@pytest.mark.usefixtures("no_network")
def test_weights_path_adapts_first_conv_to_one_channel(tmp_path: Path) -> None:
    state = _imagenet_like_state("efficientnet_b0")
    model = build_model("efficientnet_b0", weights_path=_save(state, tmp_path / "w.safetensors"), in_chans=1)
    assert model.conv_stem.weight.shape[1] == 1
    torch.testing.assert_close(model.conv_stem.weight[:, 0], state["conv_stem.weight"].sum(dim=1))


@pytest.mark.usefixtures("no_network")
def test_weights_path_wrong_architecture_raises(tmp_path: Path) -> None:
    other = _save(_imagenet_like_state("test_resnet"), tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="efficientnet_b0"):
        build_model("efficientnet_b0", weights_path=other)
    renamed = {f"backbone.{k}": v for k, v in _imagenet_like_state("efficientnet_b0").items()}
    with pytest.raises(ValueError, match="missing"):
        build_model("efficientnet_b0", weights_path=_save(renamed, tmp_path / "renamed.pth"))


def test_weights_path_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_model("test_resnet", weights_path=tmp_path / "absent.pth")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="safetensors"):
        build_model("test_resnet", weights_path=tmp_path / "weights.npz")


def test_pretrained_offline_without_cache_names_both_remedies() -> None:
    with pytest.raises(PretrainedWeightsUnavailableError) as info:
        build_model("test_byobnet", pretrained=True)
    message = str(info.value)
    for remedy in ("HF_HOME", "HF_HUB_OFFLINE", "weights_path", "timm/test_byobnet.r160_in1k"):
        assert remedy in message


def test_pretrained_auto_warns_and_falls_back() -> None:
    with pytest.warns(RuntimeWarning, match="random initialisation"):
        model = build_model("test_byobnet", pretrained="auto")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_stand_in_and_alias_tables_agree_with_pdstudy_methods():
    stands_in = {arch.stands_in_for: name for name, arch in QUICK_ARCHITECTURES.items()}
    assert stands_in == dict(methods.QUICK_STAND_INS)  # one table of stand-ins, described by QUICK_ARCHITECTURES
    assert dict(models.ALIASES) == methods.ARCH_ALIASES
