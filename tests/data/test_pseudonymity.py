"""`prepare` checks the manifest's patient IDs against the identity elements of each patient's DICOM headers.

An ID equal to the patient's PatientID, PatientName (its components in either order), OtherPatientIDs or
AccessionNumber, after case-folding and dropping everything but letters and digits, stops ``prepare``
before any cache is written, naming every offending row and the element it matched, never the header's
own value. An ID of 6 or more digits in a row that matches nothing gets a warning (it looks like a
hospital record number). Substrings never match, so the synthetic cohort's IDs pass.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_factory import write_series
from pydicom.dataset import Dataset

from pdstudy.cli import main
from pdstudy.data import preprocess
from pdstudy.data.dicom import IDENTITY_ELEMENTS, identity_matches, scan_folder
from pdstudy.data.manifest import ManifestError, PseudonymityError, PseudonymityWarning, looks_like_mrn
from pdstudy.data.preprocess import PrepareConfig, prepare
from pdstudy.data.synth._plan import _plan

CONFIG = PrepareConfig(image_size=16, fov_mm=32.0)


def _volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1024 + rng.normal(40, 30, size=(3, 16, 16))).clip(0).astype(np.uint16)


def _cohort(root: Path, patients: list[tuple[str, dict]]) -> Path:
    """One PVP series per ``(patient_id, header fields)``; folders are named F0, F1, ... (not by the ID)."""
    rows = []
    for i, (pid, header) in enumerate(patients):
        write_series(root / f"F{i}", _volume(i), spacing=(2.0, 2.0), description="PVP", study_uid=f"1.2.3.{i}",
                     **header)
        rows.append(dict(patient_id=pid, split="train", response="good" if i % 2 else "poor",
                         recist="CR" if i % 2 else "PD", dicom_dir=f"F{i}", z_from_mm="0", z_to_mm="-10"))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _prepare(manifest: Path, cache: Path, **kwargs):
    return prepare(manifest, cache, config=CONFIG, workers=1, show_progress=False, **kwargs)


def _written_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.parametrize(("patient_id", "identity", "expected"), [
    ("Zhang_Wei", {"PatientName": ["Zhang^Wei"]}, ["PatientName"]),
    ("Wei Zhang", {"PatientName": ["Zhang^Wei"]}, ["PatientName"]),
    ("wei-zhang", {"PatientName": ["ZHANG^WEI^^^"]}, ["PatientName"]),
    ("ZhangWeiMing", {"PatientName": ["Zhang^Wei^Ming"]}, ["PatientName"]),
    ("Ming_Zhang_Wei", {"PatientName": ["Zhang^Wei^Ming"]}, ["PatientName"]),
    ("Yamada_Taro", {"PatientName": ["Yamada^Taro=山田^太郎=やまだ^たろう"]}, ["PatientName"]),
    ("CQ500-CT-310", {"PatientID": ["cq500ct310"]}, ["PatientID"]),
    ("X77", {"OtherPatientIDs": ["A1", "X-77"]}, ["OtherPatientIDs"]),
    ("acc_0009", {"AccessionNumber": ["ACC0009"]}, ["AccessionNumber"]),
    ("H1", {"PatientID": ["H1"], "AccessionNumber": ["h-1"]}, ["PatientID", "AccessionNumber"]),
    # No substring, prefix or partial matches:
    ("Wei1", {"PatientName": ["Zhang^Wei"]}, []),
    ("ZhangWe", {"PatientName": ["Zhang^Wei"]}, []),
    ("ZhangZhang", {"PatientName": ["Zhang^Wei"]}, []),
    ("H1234", {"PatientID": ["H12345"], "AccessionNumber": ["ACC1234"]}, []),
    ("P1", {"PatientID": [""], "PatientName": [""]}, []),
])
def test_identity_matches_whole_normalised_values(patient_id, identity, expected):
    assert identity_matches(patient_id, identity) == expected


def test_identity_matches_checks_its_arguments():
    with pytest.raises(ValueError, match="unknown identity element"):
        identity_matches("P1", {"PatientBirthDate": ["19700101"]})
    assert set(IDENTITY_ELEMENTS) >= {"PatientID", "PatientName", "OtherPatientIDs", "AccessionNumber"}


@pytest.mark.parametrize(("patient_id", "expected"), [
    ("00123456", True), ("123456", True), ("MRN-0012345", True), ("12345", False), ("SYN0001", False),
    ("P-12-3456", False),
])
def test_ids_with_six_digits_in_a_row_look_like_record_numbers(patient_id, expected):
    assert looks_like_mrn(patient_id) is expected


def test_scan_reads_the_identity_elements(tmp_path):
    paths = write_series(tmp_path, _volume(0), description="PVP", patient_name="Zhang^Wei", patient_id="CQ500-CT-310",
                 other_patient_ids=["A1", "X-77"], accession="ACC0009", body_part="ABDOMEN")
    item = Dataset()
    item.PatientID = "SEQ-ID-1"
    ds = pydicom.dcmread(paths[0])
    ds.OtherPatientIDsSequence = [item]
    ds.save_as(paths[0])
    scan = scan_folder(tmp_path)
    assert scan.identity == {"PatientName": {"Zhang^Wei"}, "PatientID": {"CQ500-CT-310"},
                             "OtherPatientIDs": {"A1", "X-77"}, "AccessionNumber": {"ACC0009"},
                             "OtherPatientIDsSequence": {"SEQ-ID-1"}}
    assert identity_matches("seq_id_1", scan.identity) == ["OtherPatientIDsSequence"]
    assert scan.series[0].body_part == "ABDOMEN"
    assert "identity" not in repr(scan)


def test_ids_equal_to_header_identities_stop_prepare_naming_every_row(tmp_path):
    header = dict(patient_name="Zhang^Wei", patient_id="CQ500-CT-310", other_patient_ids=["A1", "X-77"],
                  accession="ACC0009")
    manifest = _cohort(tmp_path / "cohort", [
        ("Zhang_Wei", header),
        ("P2", header),  # a pseudonym: passes
        ("wei-zhang", header),
        ("cq500-ct-310", header),
        ("x77", header),
        ("acc_0009", header),
        ("Wei1", header),  # only a substring of the name: passes
    ])
    cache = tmp_path / "cache"
    with pytest.raises(PseudonymityError) as info:
        _prepare(manifest, cache)
    assert isinstance(info.value, ManifestError)
    text = str(info.value)
    for row, pid, element in [(2, "Zhang_Wei", "PatientName"), (4, "wei-zhang", "PatientName"),
                              (5, "cq500-ct-310", "PatientID"), (6, "x77", "OtherPatientIDs"),
                              (7, "acc_0009", "AccessionNumber")]:
        assert f"row {row}, patient_id {pid!r}: equals the DICOM {element}" in text, text
    assert "P2" not in text and "Wei1" not in text
    for value in ("Zhang^Wei", "CQ500-CT-310", "X-77", "ACC0009"):  # the headers' own spellings
        assert value not in text
    # Nothing of the cache was written (the temporary folder with the planes is removed too).
    assert _written_files(cache) == []


def test_the_cli_prints_the_rows_without_a_traceback(tmp_path, capsys):
    manifest = _cohort(tmp_path / "cohort", [("P1", {}), ("Zhang_Wei", {"patient_name": "Zhang^Wei"})])
    assert main(["prepare", "--manifest", str(manifest), "--cache", str(tmp_path / "cache"), "--quiet",
                 "--size", "16", "--fov-mm", "32", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "row 3, patient_id 'Zhang_Wei': equals the DICOM PatientName" in err
    assert "Traceback" not in err and "Zhang^Wei" not in err


def test_identity_check_runs_with_several_workers(tmp_path):
    manifest = _cohort(tmp_path / "cohort", [("P1", {}), ("Smith_John", {"patient_name": "SMITH^JOHN"}),
                                             ("P3", {}), ("HX9", {"patient_id": "hx9"})])
    with pytest.raises(PseudonymityError, match=r"row 3, patient_id 'Smith_John'.*\n.*row 5, patient_id 'HX9'"):
        prepare(manifest, tmp_path / "cache", config=CONFIG, workers=2, show_progress=False)
    assert _written_files(tmp_path / "cache") == []


def test_record_number_like_ids_only_warn_and_the_warning_is_recorded(tmp_path):
    manifest = _cohort(tmp_path / "cohort", [("00123456", {"patient_id": "H77"}), ("P2", {}),
                                             ("MRN-0012345", {})])
    with pytest.warns(PseudonymityWarning) as record:
        prepared = _prepare(manifest, tmp_path / "cache")
    text = " ".join(str(w.message) for w in record)
    assert "row 2" in text and "'00123456'" in text and "row 4" in text and "'MRN-0012345'" in text
    assert "P2" not in text
    qc = prepared.qc.set_index("patient_id")
    assert (qc["status"] == "included").all()
    assert "like a hospital record number" in qc.loc["00123456", "warnings"]
    assert "like a hospital record number" in qc.loc["MRN-0012345", "warnings"]
    assert qc.loc["P2", "warnings"] == ""
    table = prepared.warnings_table()
    assert set(table.loc[table["category"] == "patient_id like a record number", "patient_id"]) == {
        "00123456", "MRN-0012345"}
    # The reused cache warns again.
    with pytest.warns(PseudonymityWarning, match="00123456"):
        again = _prepare(manifest, tmp_path / "cache")
    assert again.root == prepared.root


def test_a_record_number_equal_to_the_header_is_an_error_not_a_warning(tmp_path):
    manifest = _cohort(tmp_path / "cohort", [("00123456", {"patient_id": "00123456"}), ("P2", {})])
    with pytest.raises(PseudonymityError, match=r"row 2, patient_id '00123456': equals the DICOM PatientID"):
        _prepare(manifest, tmp_path / "cache")


def test_identity_values_never_reach_the_outputs(tmp_path):
    header = dict(patient_name="Zhang^Wei", patient_id="CQ500-CT-310", other_patient_ids=["OTHERX1"],
                  accession="ACCX0009", body_part="ABDOMEN")
    manifest = _cohort(tmp_path / "cohort", [("P1", header), ("P2", {"patient_name": "Li^Na", "body_part": "HEAD"})])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all: these IDs are clean
        prepared = _prepare(manifest, tmp_path / "cache")
    assert prepared.meta["pseudonymity_check"] >= 1
    for path in _written_files(tmp_path / "cache"):
        data = path.read_bytes()
        for value in ("Zhang", "CQ500", "OTHERX1", "ACCX0009", "Li^Na", "TEST0001"):
            assert value.encode() not in data, (path.name, value)


def test_a_cache_written_without_the_check_is_not_reused(tmp_path, monkeypatch):
    """A cache hit cannot bypass the check: a cache not marked as checked (older version) is rebuilt."""
    manifest = _cohort(tmp_path / "cohort", [("Zhang_Wei", {"patient_name": "Zhang^Wei"}), ("P2", {})])
    monkeypatch.setattr(preprocess, "identity_matches", lambda pid, identity: [])
    built = _prepare(manifest, tmp_path / "cache")
    meta_path = built.root / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["pseudonymity_check"]
    meta_path.write_text(json.dumps(meta))
    monkeypatch.undo()
    with pytest.raises(PseudonymityError, match="row 2, patient_id 'Zhang_Wei'"):
        _prepare(manifest, tmp_path / "cache")


def test_a_checked_cache_is_reused_without_reading_the_images(tmp_path, monkeypatch):
    manifest = _cohort(tmp_path / "cohort", [("P1", {}), ("P2", {})])
    built = _prepare(manifest, tmp_path / "cache")
    stamp = (built.root / "meta.json").stat().st_mtime_ns

    def no_scan(*args, **kwargs):
        raise AssertionError("a checked cache must be reused without scanning")

    monkeypatch.setattr(preprocess, "process_patient", no_scan)
    again = _prepare(manifest, tmp_path / "cache")
    assert again.root == built.root and (again.root / "meta.json").stat().st_mtime_ns == stamp


def test_synthetic_ids_never_collide_with_their_headers():
    plan = _plan(300, 0, slices=8, size=32)
    for p in plan.itertuples():
        identity = {"PatientID": [p.header_id], "PatientName": [p.header_name], "AccessionNumber": [p.accession]}
        assert identity_matches(p.patient_id, identity) == [], p.patient_id
        assert not looks_like_mrn(p.patient_id)
