"""The CNN + Transformer hybrid and the 3D ResNet: models, volumes, weights, training through the stage cache, CAMs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import DropPath
from timm.models.vision_transformer import Block
from torch import nn

from pdstudy.core.methods import QUICK_STAND_INS, Method, method_from_id
from pdstudy.data.predictions import PREDICTION_COLUMNS
from pdstudy.learn.cam import compute_cam, compute_volume_cam
from pdstudy.learn.dataset import AugmentConfig, augment_batch, augment_volumes
from pdstudy.learn.distill import Context, ModelSettings, parse_chain, run_method, stage_key
from pdstudy.learn.hybrid import CnnTransformer
from pdstudy.learn.models import (
    PretrainedWeightsUnavailableError,
    build_model,
    get_architecture,
    gradcam_target_layer,
    is_volumetric,
    local_weights_file,
    model_noise,
)
from pdstudy.learn.resnet3d import VolumeResNet, medicalnet_state_dict
from pdstudy.learn.train import TrainConfig, predict_slices
from pdstudy.learn.volumes import VolumeSet, resample_depth

HYBRID, VOLUME = "efficientnet_b7_transformer", "resnet50_3d"
TINY = TrainConfig(epochs=2, batch_size=8, lr=3e-3, warmup_epochs=0, slices_per_patient=3,
                   augment=AugmentConfig(crop_size=28), eval_batch_size=64)


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hugging Face hub offline with an empty cache: no test can download or hang."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))


def _ctx(tiny_prepared, tmp_path: Path, **settings) -> Context:
    prepared, patients = tiny_prepared
    patients = patients.copy()
    patients.loc[patients["patient_id"].isin(["T00", "T01", "T02", "T03"]), "split"] = "val"
    return Context(prepared, patients, TINY, ModelSettings(stand_ins=True, **settings), tmp_path / "stages",
                   progress=False)


# --------------------------------------------------------------------------- names and tables


def test_paper_rows_and_stand_ins_are_named():
    assert get_architecture(HYBRID).kind == "hybrid" and get_architecture(HYBRID).backbone == "efficientnet_b7"
    assert get_architecture("efficientnet_b7+transformer") is get_architecture(HYBRID)  # the paper's Table 2 id
    assert is_volumetric(VOLUME) and not is_volumetric(HYBRID)
    assert QUICK_STAND_INS[HYBRID] == "test_resnet_transformer" and QUICK_STAND_INS[VOLUME] == "test_resnet3d"
    assert get_architecture("test_resnet_transformer").backbone == QUICK_STAND_INS["efficientnet_b7"]
    assert method_from_id(f"baseline:{HYBRID}").label == "Hybrid Model (B7 + Transformer)"
    assert method_from_id(f"baseline:{VOLUME}").label == "3D ResNet-50"


def test_the_paper_3d_row_is_monais_resnet50():
    from monai.networks.nets import resnet50

    ours = build_model(VOLUME)
    theirs = resnet50(spatial_dims=3, n_input_channels=1, num_classes=2, feed_forward=False, shortcut_type="B",
                      bias_downsample=False, conv1_t_stride=2)
    assert {k: v.shape for k, v in ours.backbone.state_dict().items()} == \
        {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours.fc.in_features == 2048 and ours.fc.out_features == 2


def test_chains_do_not_mix_volumes_and_slices():
    assert parse_chain(f"{VOLUME}>{VOLUME}") == (VOLUME, VOLUME)
    assert parse_chain(f"efficientnet_b7>{HYBRID}") == ("efficientnet_b7", HYBRID)
    with pytest.raises(ValueError, match="mixes volume models"):
        parse_chain(f"efficientnet_b7>{VOLUME}")


# --------------------------------------------------------------------------- the hybrid


def test_hybrid_is_built_as_documented():
    torch.manual_seed(0)
    model = build_model(HYBRID, drop_rate=0.3, drop_path_rate=0.2)
    assert isinstance(model, CnnTransformer) and model.grid == 7 and model.fusion == "concat"
    assert len(model.blocks) == 4 and all(isinstance(b, Block) for b in model.blocks)
    assert model.proj.out_channels == 384 and model.blocks[0].attn.num_heads == 6
    assert model.head.in_features == 384 + 2560  # global tokens + pooled B7 map (conv_head width)
    assert gradcam_target_layer(model, HYBRID) is model.cnn.bn2
    rates = [m.drop_prob for m in model.blocks.modules() if isinstance(m, DropPath)]
    cnn_rates = [m.drop_prob for m in model.cnn.modules() if isinstance(m, DropPath)]
    assert max(rates) == pytest.approx(0.2) and 0 < max(cnn_rates) <= 0.2  # both parts carry stochastic depth
    assert model_noise(model)["drop_rate"] == 0.3
    # timm's ViT initialisation for the Transformer part: (truncated) normal, std 0.02, zero biases
    with torch.no_grad():
        weights = torch.cat([b.mlp.fc1.weight.flatten() for b in model.blocks])
        assert 0.019 < float(weights.std()) < 0.021 and abs(float(weights.mean())) < 1e-3
        assert all(float(b.attn.qkv.bias.abs().max()) == 0.0 for b in model.blocks)
        assert 0.015 < float(model.pos_embed.std()) < 0.025


def test_hybrid_options_and_other_input_sizes():
    torch.manual_seed(0)
    add = build_model("test_resnet_transformer", model_kwargs={"depth": 2, "fusion": "add"})
    assert len(add.blocks) == 2 and add.head.in_features == 32 and add.local_proj is not None
    for size in (44, 64, 96):  # position embeddings resampled from the 4x4 grid of the 64 px input
        assert add(torch.randn(2, 3, size, size)).shape == (2, 2)
    with pytest.raises(ValueError, match="unknown model_kwargs"):
        build_model("test_resnet_transformer", model_kwargs={"layers": 2})
    with pytest.raises(ValueError, match="fusion"):
        build_model("test_resnet_transformer", model_kwargs={"fusion": "gate"})


def test_hybrid_starts_from_its_cnns_weights_file(tmp_path):
    torch.manual_seed(3)
    cnn = timm.create_model("test_resnet", num_classes=1000, output_stride=16)
    tag = get_architecture("test_resnet").timm_tag
    save_file({k: v.contiguous() for k, v in cnn.state_dict().items()}, str(tmp_path / f"{tag}.safetensors"))
    assert local_weights_file(tmp_path, "test_resnet_transformer") == tmp_path / f"{tag}.safetensors"
    settings = ModelSettings(stand_ins=True, weights_dir=str(tmp_path))
    model = settings.build(HYBRID, noisy=False)
    loaded = model.cnn.state_dict()
    for key, value in cnn.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_hybrid_noise_makes_train_passes_differ_and_eval_passes_equal():
    torch.manual_seed(0)
    model = build_model("test_resnet_transformer", drop_rate=0.5, drop_path_rate=0.5)
    x = torch.randn(4, 3, 60, 60)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


# --------------------------------------------------------------------------- volumes


def test_resample_depth_interpolates_along_z():
    slices = np.stack([np.full((2, 2), v, np.uint8) for v in (0, 51, 102, 255)])
    same = resample_depth(slices, np.array([30.0, 25.0, 20.0, 15.0]), 4)
    np.testing.assert_allclose(same[:, 0, 0], [0, 0.2, 0.4, 1.0], atol=1e-6)
    seven = resample_depth(slices, None, 7)
    np.testing.assert_allclose(seven[:, 0, 0], [0, 0.1, 0.2, 0.3, 0.4, 0.7, 1.0], atol=1e-6)
    # uneven spacing: positions follow z, not the slice index
    uneven = resample_depth(slices[:3], np.array([0.0, 1.0, 3.0]), 4)
    np.testing.assert_allclose(uneven[:, 0, 0], [0, 0.2, 0.3, 0.4], atol=1e-6)
    np.testing.assert_array_equal(resample_depth(slices[:1], None, 3)[:, 0, 0], [0, 0, 0])
    with pytest.raises(ValueError, match="depth"):
        resample_depth(slices, None, 0)


def test_augment_volumes_moves_every_slice_of_a_volume_alike():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 5, 36, 36)
    cfg = AugmentConfig(crop_size=30)
    out = augment_volumes(x, cfg, torch.Generator().manual_seed(7))
    assert out.shape == (3, 1, 5, 30, 30)
    for j in range(5):  # slice j of each volume is augmented as augment_batch augments it with the same draws
        torch.testing.assert_close(out[:, :, j], augment_batch(x[:, :, j], cfg, torch.Generator().manual_seed(7)))
    shard = augment_volumes(x[1:], cfg, torch.Generator().manual_seed(7), batch=3, offset=1)
    torch.testing.assert_close(shard, out[1:])


def test_volume_set_batches(tiny_prepared):
    prepared, patients = tiny_prepared
    data = VolumeSet(prepared, patients, depth=4)
    assert len(data) == 24 and data.slices_per_epoch(3) == 24 and data.steps_per_epoch(10) == 3
    kw = dict(seed=1, epoch=0, batch_size=10, slices_per_patient=3, augment=AugmentConfig(crop_size=28))
    batches = list(data.train_batches(**kw))
    assert [x.shape for _, x, _ in batches] == [(10, 1, 4, 28, 28)] * 2 + [(4, 1, 4, 28, 28)]
    assert sorted(torch.cat([y for _, _, y in batches]).tolist()) == sorted(data.labels.values())
    again = list(data.train_batches(**kw))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    keys, x = next(data.eval_batches(batch_size=40, crop_size=28))
    assert x.shape == (10, 1, 4, 28, 28)  # 40 slices' worth: 10 volumes of 4 slices
    assert keys[0] == data.key_row(data.patient_ids[0]) == data.rows[data.patient_ids[0]][0]
    with pytest.raises(ValueError, match="volume_depth"):
        VolumeSet(prepared, patients, depth=0)


# --------------------------------------------------------------------------- 3D weights


def _medicalnet_file(model: VolumeResNet, path: Path) -> dict[str, torch.Tensor]:
    """Save ``model``'s backbone in MedicalNet's layout: a state_dict wrapper, module. prefixes, a conv_seg head."""
    state = {f"module.{k}": v.clone() for k, v in model.backbone.state_dict().items()}
    state["module.conv_seg.0.weight"] = torch.randn(32, 2048, 3, 3, 3)
    state["module.conv_seg.1.weight"] = torch.randn(32)
    torch.save({"state_dict": state, "epoch": 200}, path)
    return {k.removeprefix("module."): v for k, v in state.items() if "conv_seg" not in k}


def test_medicalnet_layout_loads_from_weights_dir(tmp_path):
    torch.manual_seed(5)
    source = build_model(VOLUME)
    expected = _medicalnet_file(source, tmp_path / "resnet50_3d.pth")
    assert local_weights_file(tmp_path, VOLUME) == tmp_path / "resnet50_3d.pth"
    assert set(medicalnet_state_dict(tmp_path / "resnet50_3d.pth")) == set(expected)
    torch.manual_seed(6)
    model = ModelSettings(pretrained=True, weights_dir=str(tmp_path)).build(VOLUME, noisy=False)
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    assert not torch.equal(model.fc.weight, source.fc.weight)  # the classifier is new


def test_3d_weights_errors(tmp_path):
    torch.manual_seed(0)
    small = build_model("test_resnet3d")
    state = {f"module.{k}": v for k, v in small.backbone.state_dict().items() if not k.startswith("layer4")}
    torch.save({"state_dict": state}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="tensors missing"):
        build_model("test_resnet3d", weights_path=tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="test_resnet3d"):  # another architecture's file
        build_model("test_resnet3d", weights_path=_save_full(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailableError, match="resnet50_3d.pth"):
        build_model(VOLUME, pretrained=True)  # offline, empty hub cache
    with pytest.warns(RuntimeWarning, match="random initialisation"):
        build_model("test_resnet3d", pretrained="auto")  # no pretrained weights exist for the stand-in
    with pytest.raises(ValueError, match="drop_path_rate"):
        build_model(VOLUME, drop_path_rate=0.1)
    with pytest.raises(ValueError, match="in_chans"):
        build_model(VOLUME, in_chans=3)


def _save_full(tmp_path: Path) -> Path:
    model = build_model("test_resnet3d", model_kwargs={"block_inplanes": (8, 16, 32, 48)})
    torch.save(model.state_dict(), tmp_path / "other.pth")
    return tmp_path / "other.pth"


# --------------------------------------------------------------------------- training through the study's path


def test_volume_baseline_trains_through_the_stage_cache(tiny_prepared, tmp_path):
    ctx = _ctx(tiny_prepared, tmp_path, volume_depth=4)
    method = Method("baseline", (VOLUME,))
    t0 = time.perf_counter()
    result = run_method(ctx, method)
    seconds = time.perf_counter() - t0
    stage = result.stages[0]
    assert stage.meta["built_arch"] == "test_resnet3d" and not stage.reused
    preds = result.predictions
    assert list(preds.columns) == list(PREDICTION_COLUMNS) and len(preds) == 24
    assert preds["method"].eq("baseline:resnet50_3d").all()
    slice_probs = pd.read_csv(stage.folder / "slice_probs.csv")
    assert len(slice_probs) == 24 and slice_probs["patient_id"].is_unique  # one row per patient
    prepared = tiny_prepared[0]
    counts = prepared.index["patient_id"].value_counts()
    assert (preds["n_slices"].to_numpy() == counts.loc[preds["patient_id"]].to_numpy()).all()
    probs = dict(zip(slice_probs["patient_id"], slice_probs["prob"]))
    np.testing.assert_allclose(preds["score"], [probs[p] for p in preds["patient_id"]])  # no top-k
    again = run_method(ctx, method)
    assert again.stages[0].reused
    pd.testing.assert_frame_equal(again.predictions, preds)
    assert seconds < 60, f"the tiny 3D stand-in took {seconds:.0f} s"


def test_hybrid_trains_as_teacher_and_noisy_student(tiny_prepared, tmp_path):
    ctx = _ctx(tiny_prepared, tmp_path)
    result = run_method(ctx, Method("pd", (HYBRID, HYBRID)))
    teacher, student = result.stages
    assert teacher.meta["built_arch"] == "test_resnet_transformer" and student.meta["noisy"]
    assert len(teacher.slice_probs) == len(tiny_prepared[0].index)  # a slice model: every slice scored
    assert set(result.predictions["stage"]) == {0, 1}
    kd = run_method(ctx, Method("kd", ("efficientnet_b7", HYBRID)))  # a CNN teacher of a hybrid student
    assert kd.stages[1].meta["teacher_key"] == kd.stages[0].key


def test_new_settings_key_only_the_new_models(tiny_prepared, tmp_path):
    base = _ctx(tiny_prepared, tmp_path)

    def key(ctx: Context, arch: str) -> str:
        return stage_key(ctx, arch, noisy=False, upstream_sha=None)

    other = _ctx(tiny_prepared, tmp_path, volume_depth=9, hybrid_depth=3)
    assert key(other, "efficientnet_b7") == key(base, "efficientnet_b7")
    assert key(other, VOLUME) != key(base, VOLUME) and key(other, HYBRID) != key(base, HYBRID)
    assert key(_ctx(tiny_prepared, tmp_path, hybrid_depth=1), HYBRID) == key(base, HYBRID)  # 1 = the stand-in's default
    assert len(ModelSettings(stand_ins=True, hybrid_depth=3).build(HYBRID, noisy=False).blocks) == 3
    with pytest.raises(ValueError, match="volume_depth"):
        ModelSettings(volume_depth=0)


# --------------------------------------------------------------------------- class activation maps


def test_hybrid_gradcam_at_its_cnns_last_block():
    torch.manual_seed(0)
    model = build_model("test_resnet_transformer")
    with torch.no_grad():
        model.head.weight[1].uniform_(0.5, 1.0)
    images = np.random.default_rng(0).integers(0, 255, size=(2, 64, 64), dtype=np.uint8)
    cams, info = compute_cam(model, "test_resnet_transformer", images, crop_size=60)
    assert cams.shape == (2, 60, 60) and info["target_layer"] == "cnn.layer4.0"
    assert info["feature_map_size"] == (4, 4) and cams.max() > 0


def test_volume_gradcam_has_the_input_depth():
    torch.manual_seed(0)
    model = build_model("test_resnet3d")
    volumes = np.random.default_rng(0).random((2, 8, 64, 64)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="too coarse"):  # the stand-in's 2x2 map at 60 px (224 px: 7x7)
        cams, info = compute_volume_cam(model, "test_resnet3d", volumes, crop_size=60)
    assert cams.shape == (2, 8, 60, 60) and cams.dtype == np.float32
    assert info["target_layer"] == "backbone.layer4.0" and len(info["feature_map_size"]) == 3
    assert np.all((cams >= 0) & (cams <= 1)) and info["probs"].shape == (2,)
    with pytest.raises(ValueError, match="compute_volume_cam"):
        compute_cam(model, "test_resnet3d", (volumes[0] * 255).astype(np.uint8), crop_size=60)


def test_predict_volumes_match_a_direct_forward(tiny_prepared):
    prepared, patients = tiny_prepared
    data = VolumeSet(prepared, patients.iloc[:5], depth=4)
    torch.manual_seed(0)
    model = build_model("test_resnet3d").eval()
    probs = predict_slices(model, data, TINY, device=torch.device("cpu"))
    x = torch.from_numpy(np.stack([data.volume(p) for p in data.patient_ids]))[:, None, :, 2:30, 2:30]
    with torch.no_grad():
        direct = torch.softmax(model(x), dim=1)[:, 1].numpy()
    np.testing.assert_allclose([probs[data.key_row(p)] for p in data.patient_ids], direct, rtol=1e-5, atol=1e-6)
    assert isinstance(model.get_classifier(), nn.Linear)
