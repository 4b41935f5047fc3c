"""Learning-rate schedules: per-batch (Eq. 2) and per-epoch (Algorithm 1) with a per-step warmup."""

from __future__ import annotations

import math

import pytest
import torch

from pdstudy.learn import train as train_module
from pdstudy.learn.dataset import AugmentConfig, SliceSet
from pdstudy.learn.models import build_model
from pdstudy.learn.train import TrainConfig, lr_at, train_model

# 4 epochs x 5 steps, warmup 1 epoch (5 steps), base 1, floor 0: lr = 0.5 * (1 + cos(pi * progress)) after warmup.
KW = dict(total_steps=20, warmup_steps=5, base_lr=1.0, min_lr=0.0)


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def test_batch_schedule_values_by_hand():
    expected = {
        0: 1 / 5, 2: 3 / 5, 4: 5 / 5,  # warmup: (step + 1) / 5
        5: 1.0,  # cosine starts at progress 0 (15 steps of cosine)
        9: _cosine(4 / 15),
        10: 0.75,  # progress 1/3: cos(pi/3) = 1/2
        19: _cosine(14 / 15),
    }
    for step, value in expected.items():
        assert lr_at(step, **KW) == pytest.approx(value, abs=1e-12), step
        assert lr_at(step, **KW, schedule="batch", steps_per_epoch=5) == lr_at(step, **KW), step


def test_epoch_schedule_warms_up_per_step_then_steps_per_epoch():
    expected = {
        0: 1 / 5, 2: 3 / 5, 4: 5 / 5,  # warmup ramps every step, as with the batch schedule
        5: 1.0, 9: 1.0,  # epoch 1: progress 0 for the whole epoch
        10: 0.75,  # epoch 2: progress 5/15 = 1/3
        19: 0.25,  # epoch 3: progress 10/15 = 2/3, cos(2 pi/3) = -1/2
    }
    for step, value in expected.items():
        assert lr_at(step, **KW, schedule="epoch", steps_per_epoch=5) == pytest.approx(value, abs=1e-12), step


def test_epoch_schedule_with_floor_and_fractional_warmup():
    # min_lr 0.1, base 1.1; warmup 1.5 epochs of 4 steps = 6 steps; 3 epochs = 12 steps, cosine span 6.
    kw = dict(total_steps=12, warmup_steps=6, base_lr=1.1, min_lr=0.1, schedule="epoch", steps_per_epoch=4)
    assert lr_at(5, **kw) == pytest.approx(1.1 * 6 / 6)
    assert lr_at(6, **kw) == pytest.approx(1.1)  # epoch 1 started inside the warmup: stays at the peak
    assert lr_at(7, **kw) == pytest.approx(1.1)
    assert lr_at(8, **kw) == pytest.approx(0.1 + 1.0 * _cosine(2 / 6))  # epoch 2: progress (8 - 6) / 6
    assert lr_at(11, **kw) == lr_at(8, **kw)


def test_lr_at_rejects_bad_schedule():
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_at(0, **KW, schedule="step")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lr_at(0, **KW, schedule="epoch")


@pytest.mark.parametrize("schedule", ["batch", "epoch"])
def test_train_model_applies_the_schedule_per_step(tiny_prepared, tmp_path, monkeypatch, schedule):
    """The loop sets, at every step, the learning rate :func:`lr_at` gives (3 epochs x 3 steps, warmup 1 epoch)."""
    prepared, patients = tiny_prepared
    train_set = SliceSet(prepared, patients[patients["split"] == "train"])  # 16 patients x 3 slices = 3 batches
    cfg = TrainConfig(epochs=3, batch_size=16, lr=1.0, min_lr=0.0, warmup_epochs=1, schedule=schedule,
                      slices_per_patient=3, augment=AugmentConfig(crop_size=28), device="cpu", amp=False)
    assert train_set.steps_per_epoch(cfg.batch_size, cfg.slices_per_patient) == 3
    seen = []

    def record(forward, opt, x, y, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return torch.zeros(())

    monkeypatch.setattr(train_module, "train_step", record)
    train_model(build_model("test_resnet"), train_set, cfg, seed=0, ckpt_dir=tmp_path / "ckpt", progress=False)
    warmup = [1 / 3, 2 / 3, 1.0]
    if schedule == "batch":  # cosine over 6 steps from step 3
        expected = warmup + [_cosine(k / 6) for k in range(6)]
    else:  # epoch 1 at progress 0, epoch 2 at progress 3/6
        expected = warmup + [1.0] * 3 + [0.5] * 3
    assert seen == pytest.approx(expected, abs=1e-12)
