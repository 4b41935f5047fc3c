"""The synthetic cohort's ``phase_style`` and ``all_phases``: the defaults are today's cohort, byte for byte; set,
they give every patient one phase style and every patient with a portal-venous series all three phases, without
changing any other draw."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from pdstudy.data import synth
from pdstudy.data.synth._plan import _plan
from pdstudy.data.synth._write import _parameters

#: Per generator version, taken before ``phase_style`` and ``all_phases`` existed: :func:`header_digest` of the
#: :data:`TINY` cohort and :func:`series_digest` of the default 164-patient plan. A new generator version that
#: changes the bytes on purpose adds its own digests here.
TINY = {"patients": 6, "seed": 1, "slices": 8, "size": 32}
DEFAULT_HEADER_DIGEST = {"2.3": "90ecdef99e0cbbbb7f2260db70948a356116cdcfc896a1d93b876ef58451c8c5",
                         "3.0": "247b444c43a6d76a0b6abaca52cd6beb764889a915c2a58400689eaa8c6713e6"}
DEFAULT_SERIES_DIGEST = {"2.3": "c234d3c6494c7ec24ff7d4f18556e4117982faa53b78aed823be83f0bccdd5ca",
                         "3.0": "5744eae08200cc1f029e238ec39c5b5892a0b8187616a3538a717d7a208addd2"}
#: A cohort with one patient without a portal-venous series by design, one excluded for metastasis.
SMALL = {"patients": 20, "seed": 0, "slices": 8, "size": 32}
OPTIONS = {"phase_style": "explicit", "all_phases": True}
#: Words that name each phase, as a reader would look for them (independent of the generator's tables).
NAMES = {
    "arterial": re.compile(r"\bart(erial)?\b", re.IGNORECASE),
    "portal_venous": re.compile(r"portal|\bpvp?\b", re.IGNORECASE),
    "non_contrast": re.compile(r"non contrast|native|plain", re.IGNORECASE),
}
#: Plan columns the two options may change: the overridden columns, the series they describe and the UIDs.
CHANGED = {"phase_style", "has_non_contrast", "series", "study_uid", "frame_uid"}
_PIXEL_DATA = b"\xe0\x7f\x10\x00OW"  # tag (7FE0,0010) and VR in explicit VR little endian


def header_digest(root: Path) -> str:
    """SHA-256 of the text files and of every DICOM file up to its PixelData (pixels are float-rendered; their
    equality is checked on one machine by :func:`test_options_keep_every_other_draw_and_the_pixels`)."""
    h = hashlib.sha256()
    for name in ("manifest.csv", "series.csv", "synth.json"):
        h.update((root / name).read_bytes())
    for f in sorted(root.rglob("*.dcm")):
        data = f.read_bytes()
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + data[: data.index(_PIXEL_DATA)])
    return h.hexdigest()


def series_digest(**kwargs: object) -> str:
    """SHA-256 of every series of the 164-patient plan: phase, number, description, protocol, agent, delay."""
    keys = ("phase", "series_number", "series_description", "protocol_name", "contrast_agent", "delay_s")
    h = hashlib.sha256()
    plan = _plan(164, 0, **kwargs)
    for pid, series in zip(plan["patient_id"], plan["series"]):
        for s in series:
            h.update(("\t".join([pid, *(repr(s[k]) for k in keys)]) + "\n").encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phases")
    synth.generate_cohort(root / "default", show_progress=False, **SMALL)
    synth.generate_cohort(root / "options", show_progress=False, **SMALL, **OPTIONS)
    return {"default": root / "default", "options": root / "options"}


def test_defaults_are_the_cohort_of_before(tmp_path: Path):
    assert synth.GENERATOR_VERSION in DEFAULT_HEADER_DIGEST, "a new generator version needs its digests"
    assert series_digest() == DEFAULT_SERIES_DIGEST[synth.GENERATOR_VERSION]
    assert series_digest(phase_style=None, all_phases=False) == DEFAULT_SERIES_DIGEST[synth.GENERATOR_VERSION]
    pd.testing.assert_frame_equal(_plan(164, 0), _plan(164, 0, phase_style=None, all_phases=False))
    synth.generate_cohort(tmp_path / "a", show_progress=False, **TINY)
    synth.generate_cohort(tmp_path / "b", show_progress=False, phase_style=None, all_phases=False, **TINY)
    assert header_digest(tmp_path / "a") == DEFAULT_HEADER_DIGEST[synth.GENERATOR_VERSION]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_default_parameters_keep_the_cache_key():
    default = {"patients": 164, "seed": 0, "slices": 24, "size": 128, "sites": 2, "site_shift": 1.0, "site_poor": 1.0,
               "generator_version": synth.GENERATOR_VERSION}
    assert _parameters(164, 0, 24, 128) == default
    assert _parameters(164, 0, 24, 128, 1.0, None, False) == default
    assert _parameters(164, 0, 24, 128, 1.0, "protocol", False) == {**default, "phase_style": "protocol"}
    assert _parameters(164, 0, 24, 128, 1.0, None, True) == {**default, "all_phases": True}


def test_options_give_every_patient_the_style_and_three_phases():
    default, plan = _plan(164, 0), _plan(164, 0, **OPTIONS)
    assert (default["phase_style"] != 0).any() and (default.loc[default["has_pvp"], "series"].map(len) == 2).any()
    assert (plan["phase_style"] == synth.PHASE_STYLES.index("explicit")).all()
    for pvp, series in zip(plan["has_pvp"], plan["series"]):
        if not pvp:
            continue
        assert [s["phase"] for s in series] == ["arterial", "portal_venous", "non_contrast"]
        for s in series:
            named = {phase for phase, pattern in NAMES.items() if pattern.search(s["series_description"])}
            assert named == {s["phase"]}, s["series_description"]
    # Patients without a portal-venous series by design keep the series of the default plan.
    no_pvp = ~plan["has_pvp"]
    assert no_pvp.sum() == synth.cohort_counts(164)["no_pvp"] == 5
    for a, b in zip(default.loc[no_pvp, "series"], plan.loc[no_pvp, "series"]):
        assert [s["phase"] for s in a] == [s["phase"] for s in b] and all(s["phase"] != "portal_venous" for s in b)
    pd.testing.assert_frame_equal(synth.plan_cohort(164, 0), synth.plan_cohort(164, 0, **OPTIONS))


def test_options_keep_every_other_draw_and_the_pixels(cohorts: dict[str, Path]):
    for options in ({"phase_style": "generic"}, {"all_phases": True}, OPTIONS):
        default, plan = _plan(164, 0), _plan(164, 0, **options)
        same = [c for c in default.columns if c not in CHANGED]
        pd.testing.assert_frame_equal(default[same], plan[same])
        assert not set(default["study_uid"]) & set(plan["study_uid"])  # never the default cohort's UIDs
    a, b = cohorts["default"], cohorts["options"]
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.dcm"))
    files_b = {p.relative_to(b) for p in b.rglob("*.dcm")}
    assert set(files_a) < files_b  # the default's series, and the added non-contrast ones
    for f in files_a:
        da, db = pydicom.dcmread(a / f), pydicom.dcmread(b / f)
        assert da.PixelData == db.PixelData and da.SOPInstanceUID != db.SOPInstanceUID
    for npz in (a / "masks").glob("*.npz"):
        x, y = np.load(npz), np.load(b / "masks" / npz.name)
        assert all(np.array_equal(x[k], y[k]) for k in x.files)


def test_written_cohort_names_every_phase_of_every_included_patient(cohorts: dict[str, Path]):
    root = cohorts["options"]
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    included = manifest[(manifest["split"] != "") & (manifest["exclusion"] == "")]
    assert len(included) == synth.cohort_counts(SMALL["patients"])["eligible"]
    truth = pd.read_csv(root / "series.csv", dtype=str, keep_default_na=False).set_index("series_dir")
    for folder in included["dicom_dir"]:
        series = sorted(p for p in (root / folder / "ST0001").iterdir() if p.is_dir())
        assert len(series) == 3, folder
        phases = set()
        for d in series:
            ds = pydicom.dcmread(next(d.glob("*.dcm")), stop_before_pixels=True)
            named = [phase for phase, pattern in NAMES.items() if pattern.search(str(ds.SeriesDescription))]
            assert named == [truth.loc[d.relative_to(root).as_posix(), "phase"]], (folder, ds.SeriesDescription)
            phases.add(named[0])
        assert phases == set(NAMES)
    no_pvp = manifest.loc[(manifest["split"] == "") & (manifest["exclusion"] == ""), "dicom_dir"]
    assert len(no_pvp) == 1
    assert "portal_venous" not in set(truth.loc[truth.index.str.startswith(no_pvp.iloc[0] + "/"), "phase"])
    meta = json.loads((root / "synth.json").read_text())
    assert meta["parameters"]["phase_style"] == "explicit" and meta["parameters"]["all_phases"] is True
    assert "phase_style" not in json.loads((cohorts["default"] / "synth.json").read_text())["parameters"]


def test_ensure_cohort_keys_on_the_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "cohort"
    kw = {**TINY, "show_progress": False}
    synth.ensure_cohort(out, **kw, **OPTIONS)
    with monkeypatch.context() as mp:
        mp.setattr("pdstudy.data.synth._write.generate_cohort", lambda *a, **k: pytest.fail("regenerated"))
        synth.ensure_cohort(out, **kw, **OPTIONS)
    synth.ensure_cohort(out, **kw)  # other parameters: regenerated
    assert "phase_style" not in json.loads((out / "synth.json").read_text())["parameters"]


@pytest.mark.parametrize(("name", "bad"), [("phase_style", "Explicit"), ("phase_style", ""), ("phase_style", 0),
                                           ("all_phases", 1), ("all_phases", "yes"), ("all_phases", None)])
def test_options_are_checked(tmp_path: Path, name: str, bad: object):
    with pytest.raises(ValueError, match=name):
        synth.check_phase_options(**{name: bad})
    with pytest.raises(ValueError, match=name):
        synth.plan_cohort(20, 0, **{name: bad})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        synth.generate_cohort(tmp_path / "c", show_progress=False, **TINY, **{name: bad})  # type: ignore[arg-type]
    assert not (tmp_path / "c").exists()
