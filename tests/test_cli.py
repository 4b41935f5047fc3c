"""CLI: every verb has --help; python -m pdstudy works; verify detects changed files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from dicom_factory import write_series

from pdstudy.cli import build_parser, main


def _verbs() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    return sorted(sub.choices)


def test_expected_verbs_exist():
    assert {"synth", "prepare", "verify", "run", "audit"} <= set(_verbs())


@pytest.mark.parametrize("verb", _verbs())
def test_help_on_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    assert f"usage: pdstudy {verb}" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "pdstudy", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "synth" in out.stdout and "prepare" in out.stdout


def test_bad_manifest_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("patient_id,split\nA,train\n")
    rc = main(["prepare", "--manifest", str(tmp_path / "m.csv"), "--cache", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "missing required column" in err and "Traceback" not in err


def test_verify_write_then_check_detects_changes(tmp_path, capsys):
    write_series(tmp_path / "HOSP999", np.ones((2, 8, 8), dtype=np.uint16), description="PVP")
    pd.DataFrame([dict(patient_id="SYN1", split="train", response="good", recist="CR", dicom_dir="HOSP999")]).to_csv(
        tmp_path / "manifest.csv", index=False
    )
    m = str(tmp_path / "manifest.csv")
    assert main(["verify", "--manifest", m, "--write", "--quiet"]) == 0
    listing = (tmp_path / "manifest.sha256").read_text()
    assert listing.count("SYN1/") == 2 and "HOSP999" not in listing  # pseudonymous IDs only
    assert main(["verify", "--manifest", m, "--quiet"]) == 0
    victim = sorted((tmp_path / "HOSP999").glob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")
    capsys.readouterr()
    assert main(["verify", "--manifest", m, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"changed: SYN1/{victim.name}" in out and "MISMATCH" in out
