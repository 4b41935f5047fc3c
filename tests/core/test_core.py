"""pdstudy.core: the checkout finder, path redaction as each output uses it, and which imports pull in torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import write_series

from pdstudy.core.paths import is_absolute_path, redact, repo_root
from pdstudy.core.rundir import redact_paths, run_dir, update_provenance
from pdstudy.data.preprocess import scrub_reason_paths as scrub_reason
from pdstudy.study.notebooks import parameter_placeholders
from pdstudy.study.notebooks import scrub_notebook_paths as scrub_notebook

REPO = repo_root()

# --------------------------------------------------------------------------- repo_root


def test_repo_root_from_a_nested_folder_of_a_checkout(tmp_path):
    (tmp_path / "co" / "notebooks").mkdir(parents=True)
    (tmp_path / "co" / "pyproject.toml").write_text("[project]\n")
    nested = tmp_path / "co" / "tests" / "core" / "deeper"
    nested.mkdir(parents=True)
    (nested / "test_x.py").write_text("")
    assert repo_root(nested) == (tmp_path / "co").resolve()
    assert repo_root(nested / "test_x.py") == (tmp_path / "co").resolve()  # a file works as a start too
    assert repo_root(tmp_path / "co") == (tmp_path / "co").resolve()


def test_repo_root_needs_both_pyproject_and_notebooks(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "pyproject.toml").write_text("")  # no notebooks/: not a checkout
    if any((p / "pyproject.toml").is_file() and (p / "notebooks").is_dir() for p in tmp_path.resolve().parents):
        pytest.skip("the temporary folder lies inside a checkout")
    with pytest.raises(FileNotFoundError, match="no pdstudy checkout"):
        repo_root(tmp_path / "a" / "b")


def test_repo_root_default_is_this_checkout():
    assert repo_root() == REPO
    assert (REPO / "pyproject.toml").is_file() and (REPO / "notebooks").is_dir()


# --------------------------------------------------------------------------- redact, as each output uses it
# The expected strings below are what the four implementations replaced by pdstudy.core.paths.redact wrote.


def test_redact_replaces_longest_path_first_and_leaves_other_text():
    swaps = {"/srv": "<srv>", "/srv/runs/r1": ".", "": "never"}  # an empty key is ignored
    assert redact("/srv/runs/r1/tables and /srv/x and r1", swaps) == "./tables and <srv>/x and r1"
    assert redact(["/srv/a", {"k": ("/srv/runs/r1",)}, 3, None], swaps) == ["<srv>/a", {"k": ["."]}, 3, None]
    assert redact("/srv/a") == "/srv/a"  # no placeholders, no rules: unchanged


def test_is_absolute_path():
    assert all(map(is_absolute_path, ["/", "/a/b", "C:\\x", "c:/x"]))
    assert not any(map(is_absolute_path, ["", "a/b", "./a", "~/a", "C:", "C:x"]))


def test_qc_reasons_drop_folders_above_the_patient(tmp_path):
    """preprocess.scrub_reason_paths (qc.csv exclusion reasons): patient folder -> '.', others -> last component."""
    folder, root = Path("/nonexistent-site/cohort/HOSP123"), Path("/nonexistent-site/cohort")
    cases = {
        "cannot read /nonexistent-site/cohort/HOSP123/IM0001.dcm: truncated": "cannot read IM0001.dcm: truncated",
        "no series in /nonexistent-site/cohort/HOSP123": "no series in .",
        "mask /nonexistent-site/cohort/masks/HOSP123.nii.gz missing": "mask masks/HOSP123.nii.gz missing",
        "[Errno 2] No such file: '/opt/lib/python3.11/site-packages/pydicom/filereader.py'":
            "[Errno 2] No such file: 'filereader.py'",
        "ratio 1/2 and ./a/b stay": "ratio 1/2 and ./a/b stay",
    }
    for text, expected in cases.items():
        assert scrub_reason(text, folder, root) == expected
    (tmp_path / "real" / "P1").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    text = f"bad {tmp_path / 'real' / 'P1' / 'x.dcm'} in {tmp_path / 'link'}"
    assert scrub_reason(text, tmp_path / "link" / "P1", tmp_path / "link") == "bad x.dcm in ."  # resolved too


def test_executed_notebooks_show_path_parameters_as_placeholders(tmp_path):
    """notebooks.scrub_notebook_paths: raw and JSON-escaped spellings; manifest's folder -> '<manifest folder>'."""
    params = {"run_dir": "/srv/runs/r1", "data_dir": "/srv/data", "manifest": "/srv/Zürich cohort/manifest.csv",
              "readers_csv": "", "weights_dir": "rel/weights", "epochs": 3}
    assert parameter_placeholders(params) == {"/srv/runs/r1": "<run_dir>", "/srv/data": "<data_dir>",
                                              "/srv/Zürich cohort/manifest.csv": "<manifest>",
                                              "/srv/Zürich cohort": "<manifest folder>"}
    book = tmp_path / "01.ipynb"
    book.write_text(json.dumps({
        "source": ['run_dir = "/srv/runs/r1"\n', 'manifest = "/srv/Zürich cohort/manifest.csv"\n'],
        "out": "read /srv/Zürich cohort/other.csv and /srv/data/cache/x; wrote /srv/runs/r1/tables"}),
        encoding="utf-8")
    assert "Z\\u00fcrich" in book.read_text(encoding="utf-8")  # JSON escapes the umlaut
    scrub_notebook(book, params)
    assert book.read_text(encoding="utf-8") == (
        '{"source": ["run_dir = \\"<run_dir>\\"\\n", "manifest = \\"<manifest>\\"\\n"], '
        '"out": "read <manifest folder>/other.csv and <data_dir>/cache/x; wrote <run_dir>/tables"}')
    before = book.stat().st_mtime_ns
    scrub_notebook(book, {"manifest": "", "run_dir": "relative/run"})  # no absolute path parameter: untouched
    assert book.stat().st_mtime_ns == before


def test_provenance_names_files_not_folders(tmp_path):
    """core.rundir.redact_paths (provenance.json, sweep job.json): an absolute path value -> '<last component>'."""
    record = {"manifest": "/srv/Zürich cohort/manifest.csv", "weights": "C:\\Users\\me\\w.pth", "rel": "data/x",
              "list": ["/a/b", ("C:/x/y.csv", 3)], "n": 1.5, "none": None, "root": "/", "text": "see /a/b"}
    expected = {"manifest": "<manifest.csv>", "weights": "<C:\\Users\\me\\w.pth>" if os.name != "nt" else "<w.pth>",
                "rel": "data/x", "list": ["<b>", ["<y.csv>", 3]], "n": 1.5, "none": None, "root": "<>",
                "text": "see /a/b"}
    assert redact_paths(record) == expected
    run = run_dir(tmp_path / "run")
    update_provenance(run, "s", {"parameters": {"data_dir": str(tmp_path / "data")}})
    assert json.loads(run.provenance.read_text())["sections"]["s"]["parameters"] == {"data_dir": "<data>"}


def test_report_placeholders_run_checkout_home():
    """report.document's map: run folder -> '.', checkout -> '<checkout>', home -> '~', longest first."""
    swaps = {"/srv/runs/r1": ".", "/home/me/pdstudy": "<checkout>", "/home/me": "~"}
    text = "written from /srv/runs/r1/tables by /home/me/pdstudy/notebooks in /home/me/x"
    assert redact(text, swaps) == "written from ./tables by <checkout>/notebooks in ~/x"
    assert redact(text, dict(reversed(swaps.items()))) == redact(text, swaps)  # order of the map does not matter


# --------------------------------------------------------------------------- torch stays out


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_torch_free_packages_do_not_import_torch(tmp_path):
    proc = _python("import sys\nimport pdstudy.data, pdstudy.evaluate, pdstudy.stats, pdstudy.audit, pdstudy.report, "
                   "pdstudy.core, pdstudy.cli\nassert 'torch' not in sys.modules, 'torch imported'", tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_prepare_and_audit_verbs_do_not_import_torch(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        write_series(tmp_path / f"p{i}", (1024 + rng.normal(40, 30, (3, 16, 16))).clip(0).astype(np.uint16),
                     spacing=(2.0, 2.0), description="PVP")
        rows.append(dict(patient_id=f"T{i}", split="train", response=("good", "poor")[i], recist=("CR", "PD")[i],
                         dicom_dir=f"p{i}"))
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    code = (
        "import sys\nfrom pdstudy.cli import main\n"
        "rc = main(['prepare', '--manifest', 'manifest.csv', '--cache', 'cache', '--size', '16', '--fov-mm', '32', "
        "'--workers', '1', '--quiet'])\n"
        "assert rc == 0, rc\n"
        "assert main(['audit', '--out', 'audit']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "cache" / "qc.csv").is_file() and (tmp_path / "audit" / "paper_audit.csv").is_file()


def test_import_contracts_hold():
    """pyproject.toml [tool.importlinter]: layers, independence, report without learn, torch-free packages."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    proc = subprocess.run([str(lint), "--no-cache", "--no-logo"], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
