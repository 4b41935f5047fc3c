"""Every paper-profile architecture at the paper's input size: one noisy training step and a Grad-CAM, on CPU.

The quick profile trains tiny stand-ins, so this is the only test of the models a GPU run builds: the ten
2D CNNs of Table 2, the CNN + Transformer hybrid (224 x 224 crops of 256 x 256 slices) and the 3D
ResNet-50 (volumes of DEPTH x 224 x 224; the paper profile's depth is larger, the model the same). Random
initialisation (nothing is downloaded), a batch of 2, two CPU threads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from pdstudy.learn.cam import compute_cam, compute_volume_cam
from pdstudy.learn.dataset import AugmentConfig, augment_batch, augment_volumes
from pdstudy.learn.models import NOISE_CAPABILITIES, PAPER_ARCHITECTURES, build_model, model_noise
from pdstudy.learn.train import TrainConfig, input_norm, train_step

CANVAS, CROP, DEPTH, BATCH = 256, 224, 16, 2
NOISE = 0.2
STEP = TrainConfig(amp=False, channels_last=False, device="cpu", augment=AugmentConfig(crop_size=CROP))


@pytest.fixture(autouse=True, scope="module")
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _noise(name: str) -> dict[str, float]:
    caps = NOISE_CAPABILITIES[PAPER_ARCHITECTURES[name].family]
    return {"drop_rate": NOISE, "drop_path_rate": NOISE if caps["drop_path_rate"] else 0.0}


def test_every_paper_architecture_is_covered():
    assert len(PAPER_ARCHITECTURES) == 12
    assert {a.kind for a in PAPER_ARCHITECTURES.values()} == {"cnn", "hybrid", "volume"}


@pytest.mark.parametrize("name", list(PAPER_ARCHITECTURES))
def test_paper_size_training_step_and_gradcam(name: str):
    arch = PAPER_ARCHITECTURES[name]
    volume = arch.kind == "volume"
    assert arch.input_size == CROP
    torch.manual_seed(0)
    model = build_model(name, pretrained=False, **_noise(name))
    assert model_noise(model)["drop_rate"] == NOISE

    gen = torch.Generator().manual_seed(0)
    raw = torch.rand(BATCH, 1, DEPTH, CANVAS, CANVAS) if volume else torch.rand(BATCH, 1, CANVAS, CANVAS)
    x = (augment_volumes if volume else augment_batch)(raw, STEP.augment, gen)  # the training crop
    assert x.shape[-2:] == (CROP, CROP)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)  # no optimiser state: VGG-16 has 138 M parameters
    loss = train_step(model, opt, x, torch.tensor([0, 1]), cfg=STEP, device=torch.device("cpu"),
                      norm=input_norm(model), noise_seed=1)
    assert math.isfinite(float(loss))
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "every parameter gets a finite gradient"
    assert sum(float(g.abs().sum()) for g in grads) > 0
    opt.zero_grad(set_to_none=True)
    del opt

    if volume:  # pytorch-grad-cam's 3D support: one map per volume, at the input's depth
        volumes = (raw[:, 0].numpy() * 255).astype(np.uint8)
        cams, info = compute_volume_cam(model, name, volumes, crop_size=CROP, batch_size=BATCH)
        assert cams.shape == (BATCH, DEPTH, CROP, CROP)
        assert len(info["feature_map_size"]) == 3
    else:
        images = (raw[:, 0].numpy() * 255).astype(np.uint8)
        cams, info = compute_cam(model, name, images, crop_size=CROP, batch_size=BATCH)
        assert cams.shape == (BATCH, CROP, CROP)
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0
    assert min(info["feature_map_size"][-2:]) >= 7 and not info["too_coarse"]
    assert model.training, "compute_cam restores the training mode"
