"""Data-parallel training on CPU (gloo, 2 processes): sharding, equivalence with one process, torchrun end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from pdstudy.learn.dataset import AugmentConfig, SliceSet, augment_batch
from pdstudy.learn.distributed import shard_bounds
from pdstudy.learn.train import TrainConfig, train_model

EQUIV = TrainConfig(epochs=2, batch_size=7, lr=1e-2, warmup_epochs=1, slices_per_patient=3,
                    augment=AugmentConfig(crop_size=28), eval_batch_size=64, device="cpu")


class TinyNet(nn.Module):
    """No batch norm, no dropout: nothing but the gradient differs between 1 and N processes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shard_bounds_cover_every_item_once():
    for n in (0, 1, 6, 7, 32):
        for size in (1, 2, 3):
            bounds = [shard_bounds(n, r, size) for r in range(size)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(h - lo for lo, h in bounds) - min(h - lo for lo, h in bounds) <= 1
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(4, 2, 2)


def test_a_shard_is_augmented_as_in_the_global_batch():
    x = torch.rand(7, 1, 32, 32)
    cfg = AugmentConfig(crop_size=24)
    whole = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    parts = [augment_batch(x[lo:hi], cfg, torch.Generator().manual_seed(5), batch=7, offset=lo)
             for lo, hi in (shard_bounds(7, r, 2) for r in range(2))]
    torch.testing.assert_close(torch.cat(parts), whole, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="does not fit"):
        augment_batch(x[:4], cfg, torch.Generator(), batch=7, offset=5)


def _equivalence_worker(rank: int, world: int, port: int, cache: str, patients: list[dict], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from pdstudy.data.cache import load_prepared
    from pdstudy.learn import distributed

    distributed.init_from_env("cpu")
    try:
        train = SliceSet(load_prepared(cache), pd.DataFrame(patients))
        outcome = train_model(_tiny_net(), train, EQUIV, seed=3, ckpt_dir=Path(out) / "ddp", progress=False)
        if rank == 0:
            torch.save({"model": outcome.model.state_dict(), "history": outcome.history}, Path(out) / "ddp.pt")
    finally:
        distributed.shutdown()


def test_two_processes_reach_the_weights_of_one(tiny_prepared, tmp_path):
    prepared, patients = tiny_prepared
    train_pts = patients[patients["split"] == "train"]
    train = SliceSet(prepared, train_pts)
    assert len(train_pts) * EQUIV.slices_per_patient % EQUIV.batch_size >= 4, "last batch: 2+ slices per process"
    single = train_model(_tiny_net(), train, EQUIV, seed=3, ckpt_dir=tmp_path / "single", progress=False)
    torch.multiprocessing.spawn(_equivalence_worker, nprocs=2, join=True, args=(
        2, _free_port(), str(prepared.root), train_pts.to_dict("records"), str(tmp_path)))
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    ref = single.model.state_dict()
    assert ref.keys() == ddp["model"].keys()
    for k in ref:
        torch.testing.assert_close(ddp["model"][k], ref[k], atol=1e-5, rtol=0, msg=f"parameter {k}")
    assert [h["loss"] for h in ddp["history"]] == pytest.approx([h["loss"] for h in single.history], abs=1e-5)
    assert sorted(p.name for p in (tmp_path / "ddp").glob("epoch_*.pt")) == ["epoch_000.pt", "epoch_001.pt"]


def _train_config(tmp_path: Path, manifest: Path, **over) -> Path:
    cfg = {"profile": "quick", "run_dir": "run", "data_dir": "data", "manifest": str(manifest),
           "method": "kd:efficientnet_b0>efficientnet_b0", "seed": 1, "image_size": 32, "fov_mm": 384.0,
           "crop_size": 28, "workers": 1, "epochs": 1, "batch_size": 8, "slices_per_patient": 2,
           "select": "best_val", "device": "cpu"}
    cfg.update(over)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_config_errors_name_the_file_and_key(tiny_synthetic_manifest, tmp_path):
    from pdstudy.study.jobs import load_train_config

    manifest = tiny_synthetic_manifest
    with pytest.raises(ValueError, match=r"train\.yaml: unknown key\(s\) \['epoch'\]"):
        load_train_config(_train_config(tmp_path, manifest, epoch=3))
    with pytest.raises(ValueError, match="fold must be -1 with protocol 'fixed'"):
        load_train_config(_train_config(tmp_path, manifest, fold=2))
    with pytest.raises(ValueError, match="method kind must be one of"):
        load_train_config(_train_config(tmp_path, manifest, method="kdd:efficientnet_b0"))
    spec = load_train_config(_train_config(tmp_path, manifest, protocol="cv", cv_folds=3, fold=2))
    assert spec.fold == 2 and Path(spec.parameters["run_dir"]) == (tmp_path / "run").resolve()


def test_train_command_under_torchrun_writes_once_and_matches_the_stage_cache(tiny_synthetic_manifest, tmp_path):
    from pdstudy.cli import main

    manifest = tiny_synthetic_manifest
    config = _train_config(tmp_path, manifest)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pdstudy", "train", "--config", str(config), "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("trained kd:efficientnet_b0>efficientnet_b0") == 1  # rank 0 reports
    assert "2 process(es), global batch 8 (per process [4])" in out.stdout
    files = list((tmp_path / "run" / "predictions").glob("*.csv"))
    assert [f.name for f in files] == ["kd__efficientnet_b0_efficientnet_b0__seed1.csv"]
    preds = pd.read_csv(files[0], dtype={"patient_id": str})
    # Every included patient scored exactly once per stage (no sampler padding).
    (qc_file,) = (tmp_path / "data" / "cache").glob("*/qc.csv")
    n = int((pd.read_csv(qc_file)["status"] == "included").sum())
    assert len(preds) == 2 * n and not preds.duplicated(["stage", "patient_id"]).any()
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    section = prov["sections"]["train kd:efficientnet_b0>efficientnet_b0 seed1 fold-1 rep0"]
    assert section["world_size"] == 2 and section["backend"] == "gloo"
    stages = sorted((tmp_path / "data" / "stages").iterdir())
    assert len(stages) == 2
    for stage in stages:
        meta = json.loads((stage / "meta.json").read_text())
        assert meta["world_size"] == 2 and (stage / "final.pt").exists()
        assert not list(stage.glob("**/.*.tmp")), "no temporary files left by concurrent writers"
    # One process with the same config reuses both stages and writes the same predictions.
    before = files[0].read_bytes()
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    assert files[0].read_bytes() == before
