"""CLI: every verb has --help; README's command list matches the parsers; python -m pdstudy works; verify
detects changed files; prepare --profile builds the cache a run reuses; run refuses a path given twice."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from dicom_factory import write_series

import pdstudy.study.notebooks as runner
from pdstudy.cli import PREPARE_DEFAULTS, build_parser, main, prepare_settings
from pdstudy.core.params import load_profile
from pdstudy.core.paths import repo_root
from pdstudy.data.cohort import load_cohort
from pdstudy.data.verify import default_listing
from pdstudy.study.notebooks import check_path_options

REPO = repo_root()


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


# --- README's command list and the parsers ------------------------------------------------------------------------

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
CHOICES = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*) ([\w.-]+(?:\|[\w.-]+)+)")


def _readme_commands() -> dict[str, str]:
    """``verb -> line`` of the code block in README's "Command line" section (comments dropped)."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's Command line section has no bash code block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return {line.split()[1]: line for line in lines if line.startswith("pdstudy ")}


def _subparsers() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "verb").choices


def test_readme_lists_every_verb():
    assert set(_readme_commands()) == set(_subparsers())


@pytest.mark.parametrize("verb", _verbs())
def test_every_option_readme_shows_exists_in_the_parser(verb):
    line, parser = _readme_commands()[verb], _subparsers()[verb]
    for option in OPTION.findall(line):
        assert option in parser._option_string_actions, f"README shows `pdstudy {verb} {option}`, unknown to --help"
    for option, values in CHOICES.findall(line):
        choices = parser._option_string_actions[option].choices
        assert choices is not None and set(values.split("|")) == set(choices), (
            f"README shows `pdstudy {verb} {option} {values}`, the parser accepts {choices}")


@pytest.mark.parametrize("verb", _verbs())
def test_every_option_of_the_parser_is_in_readme(verb):
    line, parser = _readme_commands()[verb], _subparsers()[verb]
    shown = set(OPTION.findall(line))
    for action in parser._actions:
        names = set(action.option_strings) - {"-h", "--help", "--quiet"}
        if names:
            assert names & shown, f"`pdstudy {verb}` has {sorted(names)}, which README's command list does not show"


def test_readme_names_the_file_verify_writes_and_quiet():
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    assert default_listing("site/manifest.csv").name == "manifest.sha256"
    verify = next(line for line in section.splitlines() if line.startswith("pdstudy verify"))
    assert "manifest.sha256" in verify and "`--quiet`" in section


def test_verify_help_says_it_lists_every_file(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "every file below each patient's dicom_dir" in text and "not only DICOM" in text


def test_verify_lists_files_that_are_not_dicom(tmp_path):
    write_series(tmp_path / "HOSP1", np.ones((1, 8, 8), dtype=np.uint16), description="PVP")
    (tmp_path / "HOSP1" / "notes.txt").write_text("radiologist's note")
    pd.DataFrame([dict(patient_id="SYN1", split="train", response="good", recist="CR", dicom_dir="HOSP1")]).to_csv(
        tmp_path / "manifest.csv", index=False)
    assert main(["verify", "--manifest", str(tmp_path / "manifest.csv"), "--write", "--quiet"]) == 0
    assert "SYN1/notes.txt" in (tmp_path / "manifest.sha256").read_text()


# --- prepare --profile ----------------------------------------------------------------------------------------------

def test_prepare_settings_come_from_options_then_profile_then_defaults():
    assert prepare_settings() == PREPARE_DEFAULTS == {"image_size": 256, "fov_mm": 360.0, "workers": 0}
    for name in ("quick", "paper"):
        profile = load_profile(name)
        assert prepare_settings(name) == {k: profile[k] for k in ("image_size", "fov_mm", "workers")}
    assert prepare_settings("quick", size=32, workers=1) == {"image_size": 32, "fov_mm": 384.0, "workers": 1}
    assert prepare_settings(None, fov_mm=200.0)["fov_mm"] == 200.0


def test_prepare_with_a_profile_builds_the_cache_the_run_reuses(tmp_path, capsys):
    write_series(tmp_path / "cohort" / "HOSP1", np.full((3, 16, 16), 1100, dtype=np.uint16), description="PVP")
    manifest = tmp_path / "cohort" / "manifest.csv"
    pd.DataFrame([dict(patient_id="SYN1", split="train", response="good", recist="CR", dicom_dir="HOSP1")]).to_csv(
        manifest, index=False)
    cache = tmp_path / "data" / "cache"
    assert main(["prepare", "--manifest", str(manifest), "--cache", str(cache), "--profile", "quick", "--quiet"]) == 0
    (built,) = [p for p in cache.iterdir() if p.is_dir()]
    quick = load_profile("quick")
    meta = json.loads((built / "meta.json").read_text())
    assert (meta["config"]["image_size"], meta["config"]["fov_mm"]) == (quick["image_size"], quick["fov_mm"])
    # what notebook 01 of `pdstudy run --profile quick --manifest M --data-dir data` loads: the same folder
    cohort = load_cohort(manifest, tmp_path / "data", image_size=quick["image_size"], fov_mm=quick["fov_mm"],
                         show_progress=False)
    assert cohort.prepared.root == built
    assert "profile quick" in capsys.readouterr().out
    # an explicit --size wins over the profile
    assert main(["prepare", "--manifest", str(manifest), "--cache", str(cache), "--profile", "quick", "--size", "32",
                 "--quiet"]) == 0
    sizes = sorted(json.loads((p / "meta.json").read_text())["config"]["image_size"] for p in cache.iterdir()
                   if p.is_dir())
    assert sizes == [32, quick["image_size"]]


# --- run: a path given twice ----------------------------------------------------------------------------------------

@pytest.fixture
def fake_papermill(monkeypatch, tmp_path):
    """Record what `pdstudy run` would execute instead of executing it; work in an empty folder."""
    calls: list[tuple[str, str, dict]] = []

    def record(book, output, parameters, **_):
        calls.append((book.name, str(output), dict(parameters)))
        return output

    monkeypatch.setattr(runner, "execute_notebook", record)
    monkeypatch.chdir(tmp_path)
    return calls


@pytest.mark.parametrize(("key", "flag", "only"), [("run_dir", "--out", "00"), ("data_dir", "--data-dir", "01"),
                                                   ("manifest", "--manifest", "01")])
def test_run_refuses_a_path_given_as_parameter_and_option_with_different_values(fake_papermill, tmp_path, capsys,
                                                                                 key, flag, only):
    x, y = tmp_path / "X", tmp_path / "Y"
    argv = ["run", "--only", only, "-p", f"{key}={x}", flag, str(y), "--quiet"]
    if key != "run_dir":
        argv += ["--out", str(tmp_path / "run")]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and f"-p {key}={x}" in err and f"{flag} {y}" in err, err
    assert fake_papermill == [] and not x.exists() and not y.exists() and not (tmp_path / "run").exists()


def test_the_same_path_given_twice_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_path_options({"run_dir": "runs/a", "data_dir": str(tmp_path / "d")}, out=tmp_path / "runs" / "a",
                       data_dir="d")
    check_path_options({"manifest": ""}, manifest=None)
    with pytest.raises(ValueError, match=r"-p manifest= and --manifest m.csv"):
        check_path_options({"manifest": ""}, manifest="m.csv")
    with pytest.raises(ValueError, match="options must be among"):
        check_path_options({}, output="x")


def test_run_dir_parameter_alone_places_the_executed_notebooks_beside_the_tables(fake_papermill, tmp_path):
    assert main(["run", "--only", "00", "-p", "run_dir=elsewhere", "--quiet"]) == 0
    ((book, output, parameters),) = fake_papermill
    target = (tmp_path / "elsewhere").resolve()
    assert book.startswith("00_") and parameters["run_dir"] == str(target)
    assert output == str(target / "notebooks" / book) and (target / "provenance.json").is_file()
    assert not (tmp_path / "reports").exists()


def test_prepare_prints_the_warnings_by_category(tmp_path, capsys):
    """Two manifest patients in one DICOM study: prepare itself says so (not only the later leakage guard)."""
    for folder in ("HOSP1", "HOSP2"):
        write_series(tmp_path / "cohort" / folder, np.full((3, 16, 16), 1100, dtype=np.uint16), description="PVP",
                     study_uid="1.2.3.4")
    manifest = tmp_path / "cohort" / "manifest.csv"
    pd.DataFrame([dict(patient_id=f"SYN{i}", split="train", response="good", recist="CR", dicom_dir=f"HOSP{i}")
                  for i in (1, 2)]).to_csv(manifest, index=False)
    with pytest.warns(UserWarning, match="SYN1.*SYN2"):
        assert main(["prepare", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2  shared StudyInstanceUID" in out.split("warnings by category")[1], out
