"""Experiment grid through submitit's local executor: all jobs run, results collected, resubmission is a no-op."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pdstudy.data.predictions import read_predictions, validate_predictions
from pdstudy.study.sweeps import load_grid, make_executor, sweep

TINY = {"image_size": 32, "fov_mm": 384.0, "crop_size": 28, "workers": 1, "epochs": 1, "batch_size": 16,
        "slices_per_patient": 2}


def _grid(tmp_path: Path, manifest: Path, **over) -> Path:
    grid = {"name": "tiny", "profile": "quick", "data_dir": "data", "manifest": str(manifest), "parameters": TINY,
            "methods": ["baseline:efficientnet_b0"], "seeds": [0, 1], "grid": {"lr": [0.003, 0.01]},
            "local": {"max_parallel": 2, "timeout_min": 10}}
    grid.update(over)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_two_by_two_grid_runs_collects_and_resubmits_nothing(tiny_synthetic_manifest, tmp_path, capsys, monkeypatch):
    from pdstudy.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two jobs at once on a small machine

    grid = _grid(tmp_path, tiny_synthetic_manifest)
    out = tmp_path / "reports" / "tiny"
    report = sweep(grid, "local", out, poll_s=0.5, progress=False)
    assert report.ok and report.submitted == 4 and report.skipped == 0
    assert sorted(p.name for p in report.run_dirs) == ["lr-0.003", "lr-0.01"]
    for run in report.run_dirs:
        preds = validate_predictions(read_predictions(run / "predictions"))
        assert sorted(preds["seed"].unique()) == [0, 1] and set(preds["method"]) == {"baseline:efficientnet_b0"}
        assert (run / "provenance.json").exists()
    status = pd.read_csv(out / "sweep" / "status.csv")
    assert len(status) == 4 and status["state"].eq("done").all() and status["attempts"].eq(1).all()
    for job_json in (out / "sweep" / "jobs").glob("*/job.json"):
        assert str(tiny_synthetic_manifest.parent) not in job_json.read_text()  # no site folders
    points = pd.read_csv(out / "sweep" / "points.csv")
    assert points["finished"].tolist() == [2, 2]
    assert all("--only 06,07,08,10" in c and "-p lr=" in c and "-p 'seeds=[0, 1]'" in c for c in points["notebooks"])
    # Submitting the same grid again runs nothing: every job is keyed and finished.
    again = sweep(grid, "local", out, poll_s=0.5, progress=False)
    assert again.ok and again.submitted == 0 and again.skipped == 4
    capsys.readouterr()
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--dry-run", "--quiet"]) == 0
    assert "4 job(s), 4 finished, 0 to run" in capsys.readouterr().out
    assert main(["sweep", "--grid", str(grid), "--out", str(out), "--collect", "--quiet"]) == 0


def test_a_failing_job_is_retried_once_and_reported(tiny_synthetic_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # best_val model selection without validation patients fails inside the job, not at expansion.
    grid = _grid(tmp_path, tiny_synthetic_manifest, seeds=[0], grid={"select": ["best_val"]},
                 parameters={**TINY, "val_fraction": 0.0})
    out = tmp_path / "out"
    report = sweep(grid, "local", out, poll_s=0.5, progress=False, log=lambda _: None)
    (key,) = report.failed
    assert report.attempts == {key: 2} and report.submitted == 2
    assert "select='best_val' needs a validation set" in report.failed[key]
    status = pd.read_csv(out / "sweep" / "status.csv")
    assert status.loc[0, "state"] == "failed" and status.loc[0, "attempts"] == 2
    assert "best_val" in status.loc[0, "error"]
    assert "needs a validation set" in (out / "sweep" / "jobs" / key / "error.txt").read_text()


def test_grid_errors_and_slurm_parameters_pass_through(tiny_synthetic_manifest, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"  # submitit's SlurmExecutor only checks that srun exists
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(ValueError, match=r"grid\.yaml: unknown key\(s\) \['seed'\]"):
        load_grid(_grid(tmp_path, tiny_synthetic_manifest, seed=[0]))
    with pytest.raises(ValueError, match="'grid' has unknown study parameter"):
        load_grid(_grid(tmp_path, tiny_synthetic_manifest, grid={"alhpa": [0.1]}))
    with pytest.raises(ValueError, match="folds and repeats need protocol 'cv'"):
        load_grid(_grid(tmp_path, tiny_synthetic_manifest, folds=[0, 1]))
    cv = load_grid(_grid(tmp_path, tiny_synthetic_manifest, parameters={**TINY, "protocol": "cv", "cv_folds": 3}))
    assert cv.folds == (0, 1, 2) and cv.repeats == (0,)
    slurm = {"partition": "gpu", "time": 30, "gpus_per_node": 1, "cpus_per_task": 8, "mem": "32G",
             "account": "mylab", "additional_parameters": {"mail_type": "FAIL"}}
    grid = load_grid(_grid(tmp_path, tiny_synthetic_manifest, slurm=slurm))
    executor, max_parallel = make_executor("slurm", grid, tmp_path / "submitit")
    assert max_parallel is None
    sbatch = executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--time=30", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32G",
                 "--account=mylab", "--mail-type=FAIL", "--job-name=pdstudy-tiny"):
        assert f"#SBATCH {line}" in sbatch, line
    with pytest.raises(ValueError, match=r"section 'slurm': Unavailable parameter\(s\): \['partiton'\]"):
        make_executor("slurm", load_grid(_grid(tmp_path, tiny_synthetic_manifest,
                                               slurm={"partiton": "gpu", "time": 5})), tmp_path)
    with pytest.raises(ValueError, match="set slurm.time"):
        make_executor("slurm", load_grid(_grid(tmp_path, tiny_synthetic_manifest, slurm={"partition": "gpu"})),
                      tmp_path)


def test_job_key_follows_the_weights_file_and_the_training_code(tmp_path, monkeypatch):
    """A sweep job is not reused when its local weights file or the training code changes (as for stages)."""
    from pdstudy.learn.models import get_architecture
    from pdstudy.study import sweeps
    from pdstudy.study.jobs import JobSpec

    weights = tmp_path / "weights"
    weights.mkdir()
    tag = get_architecture("test_resnet").timm_tag
    (weights / f"{tag}.pth").write_bytes(b"first weights")
    params = {"weights_dir": str(weights), "stand_ins": True, "epochs": 1}
    spec = JobSpec(parameters=params, method="baseline:efficientnet_b7", seed=0)
    cohort = {"cache": "abc"}
    first = sweeps.job_key(spec, cohort)
    assert sweeps.job_key(spec, cohort) == first
    (weights / f"{tag}.pth").write_bytes(b"other weights, same name")
    second = sweeps.job_key(spec, cohort)
    assert second != first
    monkeypatch.setattr(sweeps, "TRAINING_CODE_VERSION", "changed")
    assert sweeps.job_key(spec, cohort) != second
