"""papermill used directly, as on a GPU server: outputs land where the parameters say, whatever the working
directory; misspelt names and bad values stop the notebook with a message naming them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pdstudy.core.paths import repo_root

REPO = repo_root()
AUDIT = REPO / "notebooks" / "00_paper_audit.ipynb"
PREPROCESSING = REPO / "notebooks" / "01_preprocessing.ipynb"


def papermill(book: Path, output: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "papermill", str(book), str(output), "--no-progress-bar", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def files_below(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_outputs_go_to_the_chosen_run_folder_from_two_working_directories(tmp_path):
    where = tmp_path / "here"            # papermill started here ...
    there = tmp_path / "there"           # ... or told to run the kernel there (--cwd)
    outs = tmp_path / "executed"
    for folder in (where, there, outs):
        folder.mkdir()
    run_a = tmp_path / "runs" / "a"      # absolute run_dir
    done = papermill(AUDIT, outs / "a.ipynb", "-p", "run_dir", str(run_a), cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    # relative run_dir: taken from the kernel's working directory (--cwd)
    done = papermill(AUDIT, outs / "b.ipynb", "-p", "run_dir", "run_b", "--cwd", str(there), cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (run_a / "tables" / "paper_audit.csv").is_file()
    assert (there / "run_b" / "tables" / "paper_audit.csv").is_file()
    written = files_below(tmp_path)
    outside = {p for p in written if not p.is_relative_to(run_a) and not p.is_relative_to(there / "run_b")
               and not p.is_relative_to(outs)}
    assert outside == set(), f"written outside the chosen folders: {sorted(outside)}"


def test_the_default_run_folder_is_the_checkouts_not_the_working_directorys_parent(tmp_path):
    """The trap: `../reports/quick` resolved against papermill's working directory wrote into its parent."""
    where = tmp_path / "work" / "here"
    where.mkdir(parents=True)
    out = tmp_path / "out.ipynb"
    done = papermill(AUDIT, out, cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    assert files_below(tmp_path / "work") == set(), "the default run_dir followed the working directory"
    assert f"run_dir = {REPO / 'reports' / 'quick'}" in out.read_text()
    assert (REPO / "reports" / "quick" / "tables" / "paper_audit.csv").is_file()


def test_a_misspelt_parameter_stops_the_notebook_with_the_valid_names(tmp_path):
    done = papermill(AUDIT, tmp_path / "out.ipynb", "-p", "run_dri", str(tmp_path / "x"), cwd=tmp_path)
    assert done.returncode != 0
    assert "unknown parameter(s) ['run_dri']" in done.stderr and "declares ['run_dir']" in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


def test_bad_values_stop_the_notebook_before_any_work(tmp_path):
    done = papermill(PREPROCESSING, tmp_path / "out.ipynb", "-p", "image_size", "64.5", "-p", "synth_patients",
                     "forty", "-p", "run_dir", str(tmp_path / "run"), "-p", "data_dir", str(tmp_path / "data"),
                     cwd=tmp_path)
    assert done.returncode != 0
    assert "image_size must be an integer >= 8, got 64.5" in done.stderr, done.stderr[-3000:]
    assert "synth_patients must be an integer >= 4, got 'forty'" in done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("override", ["image_size=64.5", "synth_patients=forty"])
def test_pdstudy_run_checks_values_before_the_first_notebook(tmp_path, monkeypatch, capsys, override):
    from pdstudy.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main(["run", "--only", "01", "-p", override, "--out", str(tmp_path / "run"), "--quiet"])
    assert rc != 0 and override.split("=")[0] + " must be an integer" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
