"""The stage key covers the local weights file's bytes and the training code's version (issue 13, stale caches)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from pdstudy.core.methods import Method
from pdstudy.learn import distill, models
from pdstudy.learn.dataset import AugmentConfig
from pdstudy.learn.distill import Context, ModelSettings, run_method, stage_key
from pdstudy.learn.models import get_architecture, local_weights_file, weights_file_sha256
from pdstudy.learn.train import TrainConfig

ONE_EPOCH = TrainConfig(epochs=1, batch_size=16, lr=3e-3, warmup_epochs=0, slices_per_patient=2,
                        augment=AugmentConfig(crop_size=28), eval_batch_size=64)
BASELINE = Method("baseline", ("efficientnet_b0",))
BUILT = "test_byobnet"  # the quick stand-in of efficientnet_b0


def _write_weights(folder: Path, seed: int) -> Path:
    """An ImageNet-shaped state dict of the stand-in, saved as ``<timm tag>.safetensors`` (other bytes per seed)."""
    torch.manual_seed(seed)
    model = timm.create_model(get_architecture(BUILT).timm_name, num_classes=1000)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{get_architecture(BUILT).timm_tag}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)  # replaced under the same name, as a new download would be
    return path


def _ctx(tiny_prepared, tmp_path: Path, weights_dir: Path | None) -> Context:
    prepared, patients = tiny_prepared
    settings = ModelSettings(stand_ins=True, weights_dir=str(weights_dir) if weights_dir else None)
    return Context(prepared, patients, ONE_EPOCH, settings, tmp_path / "stages", progress=False)


def _key(ctx: Context) -> str:
    return stage_key(ctx, "efficientnet_b0", noisy=False, upstream_sha=None)


def test_changed_weights_file_changes_the_key_and_retrains(tiny_prepared, tmp_path):
    weights = tmp_path / "weights"
    path = _write_weights(weights, seed=1)
    ctx = _ctx(tiny_prepared, tmp_path, weights)
    first = run_method(ctx, BASELINE).stages[0]
    assert not first.reused and first.meta["weights_file"] == {
        "suffix": ".safetensors", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert run_method(ctx, BASELINE).stages[0].reused  # same file: reused
    _write_weights(weights, seed=2)  # same name, other bytes
    assert _key(ctx) != first.key
    second = run_method(ctx, BASELINE).stages[0]
    assert not second.reused and second.key != first.key
    assert second.meta["weights_file"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_dir_without_a_file_for_the_model_builds_as_without_one(tiny_prepared, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _key(_ctx(tiny_prepared, tmp_path, empty)) == _key(_ctx(tiny_prepared, tmp_path, None))
    _write_weights(tmp_path / "full", seed=1)
    assert _key(_ctx(tiny_prepared, tmp_path, tmp_path / "full")) != _key(_ctx(tiny_prepared, tmp_path, None))


def test_training_code_version_is_part_of_the_key(tiny_prepared, tmp_path, monkeypatch):
    ctx = _ctx(tiny_prepared, tmp_path, None)
    before = _key(ctx)
    monkeypatch.setattr(distill, "TRAINING_CODE_VERSION", distill.TRAINING_CODE_VERSION + "-next")
    assert _key(ctx) != before


def test_the_stage_key_follows_the_cache_content_not_its_folder(tiny_prepared, tmp_path):
    """The stage key inherits what the slice cache holds (``content_sha256``): other pixels retrain, while the
    same content under another folder name (a regenerated, identical cohort) keeps the key, so a run is
    reproducible from its inputs."""
    prepared, patients = tiny_prepared
    ctx = _ctx(tiny_prepared, tmp_path, None)
    assert prepared.meta["content_sha256"]
    moved = dataclasses.replace(prepared, root=prepared.root.parent / "0123456789abcdef")
    assert _key(dataclasses.replace(ctx, prepared=moved)) == _key(ctx)
    other = dataclasses.replace(prepared, meta={**prepared.meta, "content_sha256": "0" * 64})
    assert _key(dataclasses.replace(ctx, prepared=other)) != _key(ctx)


def test_content_digest_covers_the_planes(tmp_path):
    from pdstudy.data.preprocess import content_digest

    (tmp_path / "index.csv").write_text("patient_id,slice,z_mm\nA,0,0.0\n")
    (tmp_path / "images.npy").write_bytes(b"\x93NUMPY" + bytes(100))
    first = content_digest(tmp_path)
    (tmp_path / "images.npy").write_bytes(b"\x93NUMPY" + bytes(99) + b"\x01")
    assert content_digest(tmp_path) != first


def test_weights_file_hash_is_computed_once_per_unchanged_file(tmp_path, monkeypatch):
    path = _write_weights(tmp_path / "w", seed=1)
    reads: list[str] = []
    real = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda p: reads.append(str(p)) or real(p))
    models._cached_sha256.cache_clear()
    first = weights_file_sha256(path)
    assert weights_file_sha256(path) == first == hashlib.sha256(path.read_bytes()).hexdigest()
    assert len(reads) == 1
    _write_weights(tmp_path / "w", seed=2)
    assert weights_file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first
    assert len(reads) == 2
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        weights_file_sha256(tmp_path / "absent.safetensors")


def test_local_weights_file_resolution(tmp_path):
    tag = get_architecture(BUILT).timm_tag
    assert local_weights_file(None, BUILT) is None and local_weights_file("", BUILT) is None
    assert local_weights_file(tmp_path, BUILT) is None
    (tmp_path / f"{tag}.pt").write_bytes(b"pt")
    assert local_weights_file(tmp_path, BUILT) == tmp_path / f"{tag}.pt"
    (tmp_path / f"{tag}.safetensors").write_bytes(b"st")
    assert local_weights_file(str(tmp_path), BUILT) == tmp_path / f"{tag}.safetensors"  # safetensors first
    assert ModelSettings(stand_ins=True, weights_dir=str(tmp_path)).weights_file("efficientnet_b0") == (
        tmp_path / f"{tag}.safetensors")
    with pytest.raises(ValueError, match="unknown architecture"):
        local_weights_file(tmp_path, "no_such_net")
    with pytest.raises(TypeError, match="weights_dir must be a folder path"):
        local_weights_file(3, BUILT)  # type: ignore[arg-type]
