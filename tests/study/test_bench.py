"""`pdstudy bench --smoke` writes well-formed JSON; the fast paths it measures return the same data.

Speed is never asserted here: the figures depend on the machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch

from pdstudy.learn.dataset import AugmentConfig, SliceSet

HEADLINE = ("preprocess_speedup", "cache_speedup", "pipeline_efficiency", "quick_run_seconds")


def test_bench_smoke_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "pdstudy", "bench", "--smoke", "--json", str(out),
                           "--workdir", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["smoke"] is True
    for key in HEADLINE:
        entry = results[key]
        assert {"value", "goal", "goal_op", "pass"} <= set(entry), key
        assert entry["pass"] is None  # smoke figures are not measurements
    for key in HEADLINE[:3]:
        assert isinstance(results[key]["value"], float) and results[key]["value"] > 0
    assert results["quick_run_seconds"]["value"] is None and "smoke" in results["quick_run_seconds"]["reason"]
    assert results["preprocess_speedup"]["prepare_slices_per_s"] > 0
    assert results["preprocess_speedup"]["reference_slices_per_s"] > 0
    assert results["pipeline_efficiency"]["in_memory_images_per_s"] > 0
    assert {"cpu_count", "torch", "device", "python", "platform"} <= set(results["machine"])
    assert ("gpu" in results) == torch.cuda.is_available()
    clinical = results["clinical"]  # the clinical-size section, at tiny size
    for key in ("export_speedup", "preprocess_speedup", "peak_memory_gib"):
        assert clinical[key]["pass"] is None and clinical[key]["value"] > 0, key
    assert "preprocess_speedup" in proc.stdout and "SMOKE" in proc.stdout  # the table
    assert "export_speedup" in proc.stdout  # the clinical table
    assert "[bench]" in proc.stderr  # progress on stderr
    assert not list((tmp_path / "work").iterdir())  # temporary cohort removed


def test_worker_loader_yields_the_in_process_batches(tiny_prepared):
    prepared, patients = tiny_prepared
    data = SliceSet(prepared, patients)
    kw = dict(seed=3, epoch=1, batch_size=8, slices_per_patient=3, augment=AugmentConfig(crop_size=28), start_step=1)
    inline = list(data.train_batches(**kw))
    workers = list(data.train_batches(**kw, workers=2, pin_memory=True))
    assert [s for s, _, _ in inline] == [s for s, _, _ in workers] and len(inline) > 1
    for (_, xa, ya), (_, xb, yb) in zip(inline, workers):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_cache_load_is_bitwise_the_torch_conversion(tiny_prepared):
    prepared, patients = tiny_prepared
    data = SliceSet(prepared, patients)
    rows = np.random.default_rng(0).permutation(len(data))[:20]
    expected = torch.from_numpy(np.asarray(prepared.images)[rows]).unsqueeze(1).float().div_(255.0)
    got = data.load(rows)
    assert got.dtype == torch.float32 and got.is_contiguous() and torch.equal(got, expected)
    every = np.arange(256, dtype=np.uint8)
    assert torch.equal(torch.from_numpy(np.divide(every, np.float32(255.0), dtype=np.float32)),
                       torch.from_numpy(every).float().div_(255.0))


def test_volume_pipeline_is_measured_in_volumes_and_worker_batches_match(tiny_prepared):
    """The GPU section's path for the 3D ResNet (here on CPU, with its stand-in): volumes/s, no channels-last."""
    from pdstudy.learn.models import build_model
    from pdstudy.learn.train import TrainConfig
    from pdstudy.learn.volumes import VolumeSet
    from pdstudy.study.bench import format_bench_table, measure_pipeline

    prepared, patients = tiny_prepared
    data = VolumeSet(prepared, patients, depth=4)
    kw = dict(seed=3, epoch=1, batch_size=8, slices_per_patient=3, augment=AugmentConfig(crop_size=28))
    inline = list(data.train_batches(**kw))
    workers = list(data.train_batches(**kw, workers=2))
    assert len(inline) == 3
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(inline, workers))
    cfg = TrainConfig(batch_size=8, augment=AugmentConfig(crop_size=28), device="cpu")
    torch.manual_seed(0)
    out = measure_pipeline(build_model("test_resnet3d"), data, cfg, torch.device("cpu"), warmup=1, steps=1, rounds=1)
    assert out["unit"] == "volumes" and out["volume_depth"] == 4 and out["pipeline_images_per_s"] > 0
    assert out["channels_last"] is False
    table = format_bench_table({
        **{k: {"value": None, "goal": 1.0, "goal_op": ">=", "pass": None, "reason": "x", "model": "m", "device": "cpu",
               "pipeline_images_per_s": 1, "in_memory_images_per_s": 1, "prepare_slices_per_s": 1,
               "reference_slices_per_s": 1, "slices": 1, "cache_slices_per_s": 1} for k in HEADLINE},
        "gpu": {"resnet50_3d": {**out, "efficiency": 1.0, "peak_memory_gib": 1.0}},
        "machine": {"cpu_count": 2, "torch": "x", "torch_threads": 2, "device": "cuda", "device_name": "x",
                    "python": "3.11"}})
    assert "volumes/s (4 slices)" in table


def test_cpu_pipeline_model_is_the_largest_cnn_stand_in():
    """Hybrid and 3D stand-ins in the baselines leave the CPU figure's model (the B7 stand-in) unchanged."""
    from pdstudy.core.params import load_profile
    from pdstudy.learn.models import build_model, count_parameters
    from pdstudy.study.bench import _largest_stand_in

    profile = load_profile("quick")
    before = _largest_stand_in(profile)
    extended = {**profile, "baselines": [*profile["baselines"], "efficientnet_b7_transformer", "resnet50_3d"]}
    assert _largest_stand_in(extended) == before == ("efficientnet_b7", "test_resnet")
    assert count_parameters(build_model("test_resnet_transformer")) > count_parameters(build_model("test_resnet"))
