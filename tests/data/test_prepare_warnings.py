"""`prepare` warns about a doubtful hand-picked series and about patients sharing a study.

A ``pvp_series_uid`` override that picks a series without contrast, with fewer slices than ``top_k`` or of
a body part that is not the abdomen is kept, with a warning in qc.csv; two manifest patients whose series
share a StudyInstanceUID are reported by ``prepare`` itself (a warning and :meth:`PreparedCohort.shared_studies`).
:meth:`PreparedCohort.warnings_table` lists every warning by category (notebook 01's summary).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import write_series

from pdstudy.data.dicom import is_abdominal
from pdstudy.data.preprocess import PrepareConfig, prepare
from pdstudy.data.splits import DuplicatePatientWarning

CONFIG = PrepareConfig(image_size=16, fov_mm=32.0)
CONTRAST = dict(contrast_agent="IOHEXOL", bolus_start="100000", acquisition_time="100110")  # 70 s: portal venous
OVERRIDE_CATEGORIES = ("series override: no contrast", "series override: fewer slices than top_k",
                       "series override: not the abdomen")


def _volume(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1024 + rng.normal(40, 30, size=(n, 16, 16))).clip(0).astype(np.uint16)


def _row(pid: str, folder: str, i: int, **extra: str) -> dict:
    return dict(patient_id=pid, split="train", response="good" if i % 2 else "poor", recist="CR" if i % 2 else "PD",
                dicom_dir=folder, pvp_series_uid="", **extra)


def _override_cohort(root: Path) -> Path:
    """Each patient: an automatic PVP series, and the series its override picks (``None``: no override)."""
    picks = {
        "O1": dict(n=12, description="ABD PLAIN", body_part="ABDOMEN"),  # no contrast tags
        "O2": dict(n=4, description="Abdomen 5mm", body_part="ABDOMEN", **CONTRAST),  # 4 slices < top_k
        "O3": dict(n=12, description="Head 5mm", body_part="HEAD", **CONTRAST),  # not the abdomen
        "O4": dict(n=12, description="Abd/pelvis", body_part="ABDOMEN_PELVIS", **CONTRAST),
        "O5": dict(n=12, description="CAP", body_part="CHEST ABDOMEN", **CONTRAST),
        "O6": dict(n=12, description="no body part", **CONTRAST),
        "O7": dict(n=3, description="scout", body_part="CHEST"),  # all three
        "N1": None,
    }
    rows = []
    for i, (pid, pick) in enumerate(picks.items()):
        folder = root / pid
        write_series(folder, _volume(10, i), subdir="auto", spacing=(2.0, 2.0), description="PVP",
                     study_uid=f"1.2.3.{i}", body_part="HEAD" if pick is None else "ABDOMEN")
        row = _row(pid, pid, i)
        if pick is not None:
            pick = dict(pick)
            uid = f"1.2.826.0.1.{900000 + i}"  # the factory names files by the last 6 characters
            write_series(folder, _volume(pick.pop("n"), 100 + i), subdir="pick", spacing=(2.0, 2.0), series_uid=uid,
                         study_uid=f"1.2.3.{i}", **pick)
            row["pvp_series_uid"] = uid
        rows.append(row)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


@pytest.fixture(scope="module")
def override_manifest(tmp_path_factory) -> Path:
    return _override_cohort(tmp_path_factory.mktemp("override"))


def _prepare(manifest: Path, cache: Path, **kwargs):
    return prepare(manifest, cache, config=CONFIG, workers=1, show_progress=False, **kwargs)


@pytest.mark.parametrize(("body_part", "expected"), [
    ("ABDOMEN", True), ("abdomen", True), ("ABD", True), ("CHEST_ABDOMEN", True), ("ABDOMENPELVIS", True),
    ("Abdomen Pelvis", True), ("CHESTABDPELVIS", True), ("CHEST_TO_PELVIS", True), ("STOMACH", True),
    ("LIVER", True), ("WHOLEBODY", True), ("CAP", True), ("HEAD", False), ("CHEST", False), ("PELVIS", False),
    ("NECK", False), ("LSPINE", False), ("KNEE", False),
])
def test_abdomen_like_body_parts(body_part, expected):
    assert is_abdominal(body_part) is expected


def test_doubtful_overrides_are_kept_with_warnings(override_manifest, tmp_path):
    prepared = _prepare(override_manifest, tmp_path / "cache")
    qc = prepared.qc.set_index("patient_id")
    assert (qc["status"] == "included").all()
    assert (qc.drop(index="N1")["pvp_rule"] == "pvp_series_uid from manifest").all()
    assert qc.loc["O2", "n_slices"] == 4 and qc.loc["O1", "n_slices"] == 12
    w = qc["warnings"]
    assert "pvp_series_uid selects a series without contrast" in w["O1"]
    assert "pvp_series_uid selects a series of 4 slices, fewer than top_k = 10" in w["O2"]
    assert "pvp_series_uid selects a series with BodyPartExamined 'HEAD', not the abdomen" in w["O3"]
    for pid in ("O4", "O5", "O6", "N1"):
        assert "pvp_series_uid" not in w[pid], (pid, w[pid])
    table = prepared.warnings_table()
    assert list(table.columns) == ["patient_id", "status", "category", "warning"]
    by_category = table.groupby("category")["patient_id"].apply(set).to_dict()
    assert by_category["series override: no contrast"] == {"O1", "O7"}
    assert by_category["series override: fewer slices than top_k"] == {"O2", "O7"}
    assert by_category["series override: not the abdomen"] == {"O3", "O7"}
    assert set(table.loc[table["patient_id"] == "O7", "category"]) >= set(OVERRIDE_CATEGORIES)
    summary = prepared.warning_summary()
    assert summary["series override: not the abdomen"] == 2 and summary.name == "patients"
    assert set(prepared.warnings_table(OVERRIDE_CATEGORIES[1:2])["patient_id"]) == {"O2", "O7"}


def test_top_k_sets_the_slice_warning_and_keys_the_cache_only_with_overrides(override_manifest, tmp_path):
    default = _prepare(override_manifest, tmp_path / "cache")
    short = _prepare(override_manifest, tmp_path / "cache", top_k=4)
    assert short.root != default.root
    w = short.qc.set_index("patient_id")["warnings"]
    assert "top_k" not in w["O2"] and "a series of 3 slices, fewer than top_k = 4" in w["O7"]
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        _prepare(override_manifest, tmp_path / "cache", top_k=0)
    # Without overrides top_k changes nothing in the cache: the same key as before top_k existed.
    plain = pd.read_csv(override_manifest, dtype=str, keep_default_na=False).assign(pvp_series_uid="")
    plain.to_csv(override_manifest.parent / "plain.csv", index=False)
    a = _prepare(override_manifest.parent / "plain.csv", tmp_path / "cache2")
    b = _prepare(override_manifest.parent / "plain.csv", tmp_path / "cache2", top_k=3)
    assert a.root == b.root


def test_patients_sharing_a_study_are_reported_by_prepare(tmp_path):
    rows = []
    for i, (pid, study) in enumerate((("A", "1.2.9"), ("B", "1.2.7"), ("C", "1.2.9"), ("D", "1.2.8"))):
        write_series(tmp_path / pid, _volume(3, i), spacing=(2.0, 2.0), description="PVP", study_uid=study)
        rows.append(_row(pid, pid, i))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    with pytest.warns(DuplicatePatientWarning, match=r"\['A', 'C'\] share a StudyInstanceUID") as record:
        prepared = _prepare(tmp_path / "m.csv", tmp_path / "cache")
    assert not any("1.2.9" in str(w.message) for w in record)
    assert prepared.shared_studies() == [["A", "C"]]
    table = prepared.warnings_table()
    shared = table[table["category"] == "shared StudyInstanceUID"]
    assert shared["patient_id"].tolist() == ["A", "C"]
    assert shared["warning"].tolist() == ["shares its StudyInstanceUID with C", "shares its StudyInstanceUID with A"]
    assert prepared.warning_summary()["shared StudyInstanceUID"] == 2
    assert not prepared.qc["warnings"].str.contains("StudyInstanceUID").any()  # qc.csv keeps the keys only
    with pytest.warns(DuplicatePatientWarning, match="share a StudyInstanceUID"):
        _prepare(tmp_path / "m.csv", tmp_path / "cache")  # the reused cache reports it too


def test_a_cohort_without_warnings_has_an_empty_table(tmp_path):
    rows = []
    for i, pid in enumerate(("A", "B")):
        write_series(tmp_path / pid, _volume(3, i), spacing=(2.0, 2.0), description="PVP", study_uid=f"1.2.{i}")
        rows.append(_row(pid, pid, i, z_from_mm="0", z_to_mm="-10"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = _prepare(tmp_path / "m.csv", tmp_path / "cache")
    assert prepared.warnings_table().empty and prepared.shared_studies() == []
    assert prepared.warning_summary().empty
