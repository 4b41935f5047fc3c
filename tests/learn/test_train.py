"""Training engine on a tiny cohort: schedule, augmentation, exact resume, corrupt checkpoints, stage cache."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from pdstudy.core.hashing import derive_seed
from pdstudy.core.methods import Method
from pdstudy.data.predictions import PREDICTION_COLUMNS
from pdstudy.data.splits import LeakageError, carve_validation, check_no_leakage, stratified_folds
from pdstudy.learn.dataset import AugmentConfig, SliceSet, augment_batch, centre_crop
from pdstudy.learn.distill import Context, ModelSettings, parse_chain, run_method, stage_key
from pdstudy.learn.train import TrainConfig, lr_at, predict_slices, top_k_mean, train_model

TINY = TrainConfig(
    epochs=3,
    batch_size=16,
    lr=3e-3,
    warmup_epochs=1,
    slices_per_patient=3,
    augment=AugmentConfig(crop_size=28),
    eval_batch_size=64,
)


def _ctx(tiny_prepared, tmp_path, **kw):
    prepared, patients = tiny_prepared
    return Context(
        prepared,
        patients,
        kw.pop("cfg", TINY),
        ModelSettings(stand_ins=True),
        tmp_path / "stages",
        progress=False,
        **kw,
    )


def _build():
    return ModelSettings(stand_ins=True).build("efficientnet_b0", noisy=True)


def test_lr_warmup_then_cosine():
    kw = dict(total_steps=100, warmup_steps=10, base_lr=1.0, min_lr=0.0)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_at(100, **kw) == pytest.approx(0.0)
    mid = lr_at(30, **kw)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 90)))


def test_top_k_mean():
    assert top_k_mean(np.array([0.1, 0.9, 0.5, 0.7]), 2) == pytest.approx(0.8)
    assert top_k_mean(np.array([0.2, 0.4]), 10) == pytest.approx(0.3)  # fewer slices than k: all
    with pytest.raises(ValueError, match="top_k"):
        top_k_mean(np.array([0.2]), 0)


def test_augmentation_is_reproducible_and_crops():
    x = torch.rand(4, 1, 32, 32)
    cfg = AugmentConfig(crop_size=24)
    a = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(2))
    assert a.shape == (4, 1, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    # No augmentation: identity up to the crop.
    ident = AugmentConfig(crop_size=32, hflip=0.0, rotate_deg=0.0, scale=(1.0, 1.0), shift=0.0)
    torch.testing.assert_close(augment_batch(x, ident, torch.Generator().manual_seed(0)), x, atol=1e-5, rtol=0)
    assert centre_crop(x, 16).shape == (4, 1, 16, 16)
    with pytest.raises(ValueError, match="crop_size"):
        centre_crop(x, 40)


def test_epoch_rows_depend_only_on_seed_and_epoch(tiny_prepared):
    prepared, patients = tiny_prepared
    s = SliceSet(prepared, patients[patients["split"] == "train"])
    r1, _ = s.epoch_rows(0, 1, 3)
    r2, _ = s.epoch_rows(0, 1, 3)
    r3, _ = s.epoch_rows(0, 2, 3)
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
    assert len(r1) == 16 * 3
    assert derive_seed(1, "a", 2) != derive_seed(1, "a", 3)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_after_interruption_is_bit_identical(tiny_prepared, tmp_path):
    prepared, patients = tiny_prepared
    train = SliceSet(prepared, patients[patients["split"] == "train"])
    torch.manual_seed(0)
    ref = train_model(_build(), train, TINY, seed=3, ckpt_dir=tmp_path / "a", progress=False)
    torch.manual_seed(0)
    # Crash mid-epoch 2 (after 1 full epoch + part of the next), then re-run the same call.
    steps = train.steps_per_epoch(TINY.batch_size, TINY.slices_per_patient)
    with pytest.raises(KeyboardInterrupt):
        train_model(_build(), train, TINY, seed=3, ckpt_dir=tmp_path / "b", progress=False, stop_after_steps=steps + 1)
    torch.manual_seed(123)  # a different initialisation is overwritten by the checkpoint
    resumed = train_model(_build(), train, TINY, seed=3, ckpt_dir=tmp_path / "b", progress=False)
    assert resumed.resumed_from_epoch == 1
    a, b = _weights(ref.model), _weights(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run must reach bit-identical weights"
    assert [h["loss"] for h in ref.history] == [h["loss"] for h in resumed.history]
    everyone = SliceSet(prepared, patients)
    assert predict_slices(ref.model, everyone, TINY) == predict_slices(resumed.model, everyone, TINY)


def test_corrupt_checkpoint_is_detected_and_not_loaded(tiny_prepared, tmp_path):
    prepared, patients = tiny_prepared
    train = SliceSet(prepared, patients[patients["split"] == "train"])
    cfg = TrainConfig(**{**TINY.to_dict(), "epochs": 2, "augment": TINY.augment})
    train_model(_build(), train, cfg, seed=0, ckpt_dir=tmp_path, progress=False)
    last = sorted(tmp_path.glob("epoch_*.pt"))[-1]
    last.write_bytes(last.read_bytes()[:-10] + b"corrupted!")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train_model(_build(), train, cfg, seed=0, ckpt_dir=tmp_path, progress=False)
    assert any("does not match its SHA-256" in str(w.message) for w in caught)
    assert out.resumed_from_epoch == 1  # fell back to the previous valid checkpoint and retrained epoch 1


def test_config_errors_list_choices():
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adamw', 'sgd'\]"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(alpha=1.5)
    with pytest.raises(ValueError, match="Unknown|unknown|valid"):
        parse_chain("efficientnet_b0>efficientnet_b99")
    with pytest.raises(ValueError, match="kd needs 2-2 stages"):
        Method("kd", ("efficientnet_b0",))


def test_chain_stage_cache_and_predictions(tiny_prepared, tmp_path):
    ctx = _ctx(tiny_prepared, tmp_path, cfg=TrainConfig(**{**TINY.to_dict(), "epochs": 2, "augment": TINY.augment}))
    kd = run_method(ctx, Method("kd", ("efficientnet_b0", "efficientnet_b0")))
    assert [s.reused for s in kd.stages] == [False, False]
    assert list(kd.predictions.columns) == list(PREDICTION_COLUMNS)
    assert set(kd.predictions["stage"]) == {0, 1} and len(kd.predictions) == 2 * 24
    assert kd.predictions["score"].between(0, 1).all()
    # n_slices: each patient's rows in the cache index, counted independently of the training code.
    counts = ctx.prepared.index["patient_id"].value_counts()
    assert kd.predictions["n_slices"].tolist() == counts.loc[kd.predictions["patient_id"]].tolist()
    assert set(kd.predictions["n_slices"]) == {6}
    # The baseline is the KD chain's teacher: reused, not retrained.
    base = run_method(ctx, Method("baseline", ("efficientnet_b0",)))
    assert base.stages[0].reused and base.stages[0].key == kd.stages[0].key
    # A PD student differs from the KD student (noise) but shares the teacher.
    pd_ = run_method(ctx, Method("pd", ("efficientnet_b0", "efficientnet_b0")))
    assert pd_.stages[0].reused and not pd_.stages[1].reused and pd_.stages[1].key != kd.stages[1].key
    # Other training patients -> another key (no reuse across folds).
    prepared, patients = tiny_prepared
    other = patients.copy()
    other.loc[other["patient_id"] == "T00", "split"] = "test"
    ctx2 = _ctx(tiny_prepared, tmp_path)
    ctx2 = Context(prepared, other, ctx.train_cfg, ctx.settings, ctx.stage_root, progress=False)
    assert stage_key(ctx2, "efficientnet_b0", noisy=False, upstream_sha=None) != kd.stages[0].key


def test_teacher_is_frozen_and_unchanged(tiny_prepared, tmp_path):
    prepared, patients = tiny_prepared
    train = SliceSet(prepared, patients[patients["split"] == "train"])
    teacher = _build().eval()
    before = _weights(teacher)
    cfg = TrainConfig(**{**TINY.to_dict(), "epochs": 1, "augment": TINY.augment})
    train_model(_build(), train, cfg, seed=0, ckpt_dir=tmp_path, teacher=teacher, progress=False)
    assert not teacher.training
    after = _weights(teacher)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_validation_carving_and_folds(tiny_prepared):
    _, patients = tiny_prepared
    carved = carve_validation(patients, 0.25, seed=0)
    val = carved[carved["split"] == "val"]
    assert len(val) == 4 and set(val["response"]) == {"good", "poor"}
    assert set(carved.loc[carved["split"] == "test", "patient_id"]) == set(
        patients.loc[patients["split"] == "test", "patient_id"]
    )
    folds = stratified_folds(patients, 4, seed=0)
    tests = [set(f.loc[f["split"] == "test", "patient_id"]) for f in folds]
    assert sum(len(t) for t in tests) == 24 and len(set().union(*tests)) == 24
    with pytest.raises(ValueError, match="val_fraction"):
        carve_validation(patients, 0.9, seed=0)


def test_leakage_guard():
    df = pd.DataFrame({"patient_id": ["A", "B", "A"], "split": ["train", "test", "test"]})
    with pytest.raises(LeakageError, match="'A' is in several splits"):
        check_no_leakage(df)
    df = pd.DataFrame({"patient_id": ["A", "B"], "split": ["train", "test"]})
    with pytest.raises(LeakageError, match="same person under two IDs"):
        check_no_leakage(df, same_patient={"A": "1.2.3", "B": "1.2.3"})
    check_no_leakage(df, same_patient={"A": "1.2.3", "B": "1.2.4"})
