"""`prepare`: per-patient exclusions with reasons in qc.csv, HU/window values, physical grid, cache reuse."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dicom_factory import ct_dataset, write_series

from pdstudy.cli import main
from pdstudy.data.cache import QC_COLUMNS
from pdstudy.data.manifest import ManifestError
from pdstudy.data.preprocess import CACHE_VERSION, PrepareConfig, prepare, slice_spacing

STORED = 1100  # with intercept -1024: 76 HU -> (76 + 215) / 500 = 0.582 -> uint8 148
EXPECTED_UINT8 = int(np.rint((STORED - 1024 + 215) / 500 * 255))


def _square(n: int, side_px: int) -> np.ndarray:
    """n slices with a centred bright square (STORED) on air (0)."""
    vol = np.zeros((n, 2 * side_px, 2 * side_px), dtype=np.uint16)
    q = side_px // 2
    vol[:, q : q + side_px, q : q + side_px] = STORED
    return vol


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    pvp = dict(description="Abdomen", contrast_agent="IOHEXOL", bolus_start="100000", acquisition_time="100110")
    art = dict(description="Abdomen", contrast_agent="IOHEXOL", bolus_start="100000", acquisition_time="100030")
    # A: 6 slices, 1 mm pixels, 20 px square = 20 mm; z range keeps 4 of them (z = 0 ... -25).
    write_series(root / "A", _square(6, 20), subdir="art", spacing=(1.0, 1.0), **art)
    write_series(root / "A", _square(6, 20), subdir="pv", spacing=(1.0, 1.0), **pvp)
    # B: 0.5 mm pixels, 40 px square = the same 20 mm; keyword-labelled PVP, nested folders.
    write_series(root / "B", _square(5, 40), subdir="x/y", spacing=(0.5, 0.5), description="Portal venous")
    # C: arterial only.
    write_series(root / "C", _square(4, 20), **art)
    # F: a truncated file in the portal-venous series.
    paths = write_series(root / "F", _square(4, 20), subdir="s1", **pvp)
    paths[1].write_bytes(paths[1].read_bytes()[:-500])
    # G: no z range in the manifest; H: no RescaleSlope/Intercept (stored values taken as HU).
    write_series(root / "G", _square(3, 20), description="PVP")
    write_series(
        root / "H",
        (_square(3, 20).astype(np.int32) - 1024).clip(0).astype(np.uint16) + 0,
        description="PVP",
        slope=None,
        intercept=None,
    )
    (root / "E").mkdir()
    rows = [
        dict(patient_id="A", split="train", response="good", recist="CR", dicom_dir="A", z_from_mm="-5", z_to_mm="-20"),
        dict(patient_id="B", split="test", response="poor", recist="PD", dicom_dir="B", z_from_mm="0", z_to_mm="-20"),
        dict(patient_id="C", split="train", response="poor", recist="SD", dicom_dir="C", z_from_mm="0", z_to_mm="-20"),
        dict(patient_id="D", split="train", response="good", recist="PR", dicom_dir="D_missing"),
        dict(
            patient_id="E",
            split="",
            response="",
            recist="",
            dicom_dir="E",
            exclusion="metastasis_outside_abdominal_cavity",
        ),
        dict(patient_id="F", split="train", response="good", recist="PR", dicom_dir="F"),
        dict(patient_id="G", split="train", response="poor", recist="PD", dicom_dir="G"),
        dict(patient_id="H", split="test", response="good", recist="PR", dicom_dir="H"),
    ]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root


@pytest.fixture(scope="module")
def prepared(cohort, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return prepare(
        cohort / "manifest.csv", cache, config=PrepareConfig(image_size=32, fov_mm=64.0), workers=2, show_progress=False
    )


def test_every_patient_in_qc_with_reason(prepared):
    qc = prepared.qc.set_index("patient_id")
    assert list(prepared.qc["patient_id"]) == list("ABCDEFGH")
    assert set(qc.index[qc["status"] == "included"]) == {"A", "B", "G", "H"}
    assert "no portal-venous series" in qc.loc["C", "reason"]
    assert qc.loc["D", "reason"] == "DICOM folder not found (dicom_dir in the manifest)"
    assert qc.loc["E", "reason"] == "excluded in manifest: metastasis_outside_abdominal_cavity"
    assert "cannot decode pixel data of s1/" in qc.loc["F", "reason"]
    assert "no slice range in manifest" in qc.loc["G", "warnings"]
    assert "missing RescaleSlope/RescaleIntercept" in qc.loc["H", "warnings"]
    assert "after contrast bolus start" in qc.loc["A", "pvp_rule"]
    assert "keyword" in qc.loc["B", "pvp_rule"]
    summary = prepared.exclusion_summary()
    assert summary.sum() == 4 and summary["metastasis_outside_abdominal_cavity"] == 1


def test_no_absolute_paths_in_qc(prepared, cohort):
    text = (prepared.root / "qc.csv").read_text()
    assert str(cohort) not in text


def test_slice_range_and_order(prepared):
    idx = prepared.index
    a = idx[idx["patient_id"] == "A"]
    # z positions 0, -5, ..., -25; range [-20, -5] keeps 4, head to feet.
    assert a["z_mm"].tolist() == [-5.0, -10.0, -15.0, -20.0]
    assert (idx["patient_id"] == "G").sum() == 3  # no range: all slices


def test_hu_window_and_physical_grid(prepared):
    # 20 mm square at 2 mm/pixel (64 mm / 32 px) = 10 px, for 1 mm and 0.5 mm source pixels alike.
    for pid in ("A", "B"):
        img = np.asarray(prepared.images[prepared.patient_slices(pid)[0]])
        assert img.shape == (32, 32)
        assert abs(int((img[16] > 100).sum()) - 10) <= 1, pid
        assert abs(int(img[16, 16]) - EXPECTED_UINT8) <= 1
        assert img[0, 0] == 0  # air below the window
    # H: no slope/intercept -> stored values used as HU: 76 -> same value.
    h = np.asarray(prepared.images[prepared.patient_slices("H")[0]])
    assert abs(int(h[16, 16]) - EXPECTED_UINT8) <= 1


def test_cache_is_reused_and_keyed_by_parameters(prepared, cohort):
    cache_root = prepared.root.parent
    mtime = (prepared.root / "meta.json").stat().st_mtime_ns
    again = prepare(
        cohort / "manifest.csv",
        cache_root,
        config=PrepareConfig(image_size=32, fov_mm=64.0),
        workers=1,
        show_progress=False,
    )
    assert again.root == prepared.root and (again.root / "meta.json").stat().st_mtime_ns == mtime
    other = prepare(
        cohort / "manifest.csv",
        cache_root,
        config=PrepareConfig(image_size=16, fov_mm=64.0),
        workers=1,
        show_progress=False,
    )
    assert other.root != prepared.root and other.images.shape[1:] == (16, 16)


def test_structural_manifest_error_stops_before_work(tmp_path):
    pd.DataFrame([dict(patient_id="A", split="train", response="good", dicom_dir="A")]).to_csv(
        tmp_path / "m.csv", index=False
    )
    with pytest.raises(ManifestError, match="recist"):
        prepare(tmp_path / "m.csv", tmp_path / "cache", show_progress=False)
    assert not (tmp_path / "cache").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="image_size"):
        PrepareConfig(image_size=2)
    with pytest.raises(ValueError, match="hu_window"):
        PrepareConfig(hu_window=(100.0, -100.0))


def test_cli_prepare_writes_qc_and_summary(cohort, tmp_path, capsys):
    rc = main(
        [
            "prepare",
            "--manifest",
            str(cohort / "manifest.csv"),
            "--cache",
            str(tmp_path),
            "--size",
            "16",
            "--fov-mm",
            "64",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "qc.csv").exists()
    assert "4 included of 8 patients" in out and "metastasis_outside_abdominal_cavity" in out


def test_one_or_two_worker_processes_write_byte_identical_caches(cohort, tmp_path):
    # Masks for some included patients only (A has none: zeros for it, written before the first mask).
    rows = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    (cohort / "masks").mkdir(exist_ok=True)
    z = np.array([0.0, -5.0, -10.0, -15.0, -20.0, -25.0])
    for pid, side in (("B", 40), ("G", 40)):
        mask = np.zeros((6, side, side), dtype=np.uint8)
        mask[:, 5:15, 8:30] = 1
        np.savez_compressed(cohort / "masks" / f"{pid}.npz", mask=mask, z_mm=z)
    rows["mask_path"] = [f"masks/{p}.npz" if p in ("B", "G") else "" for p in rows["patient_id"]]
    rows.to_csv(tmp_path / "masked.csv", index=False)
    (cohort / "masked.csv").write_bytes((tmp_path / "masked.csv").read_bytes())
    config = PrepareConfig(image_size=32, fov_mm=64.0)
    one, two = (prepare(cohort / "masked.csv", tmp_path / f"w{w}", config=config, workers=w, show_progress=False)
                for w in (1, 2))
    for name in ("images.npy", "masks.npy", "index.csv", "qc.csv", "meta.json"):
        assert (one.root / name).read_bytes() == (two.root / name).read_bytes(), name
    assert not (two.root / ".planes").exists() and sorted(p.name for p in two.root.iterdir()) == sorted(
        p.name for p in one.root.iterdir())
    # The planes are written block by block; the file is the one np.save writes for the stacked array.
    for name in ("images.npy", "masks.npy"):
        np.save(tmp_path / name, np.load(one.root / name))
        assert (tmp_path / name).read_bytes() == (one.root / name).read_bytes(), name
    masks = np.asarray(one.masks)
    assert masks[one.patient_slices("A")].max() == 0 and masks[one.patient_slices("B")].max() == 1


# ---------------------------------------------------------------- qc.csv slice_mm: spacing between the kept slices


def test_qc_slice_mm_is_the_median_spacing_of_the_kept_slices(prepared):
    qc = prepared.qc.set_index("patient_id")
    assert list(prepared.qc.columns) == list(QC_COLUMNS)
    assert QC_COLUMNS.index("slice_mm") == QC_COLUMNS.index("pixel_spacing_mm") + 1
    for pid in ("A", "B", "G", "H"):  # included: the median gap of the cache's own z positions
        z = np.sort(prepared.index.loc[prepared.index["patient_id"] == pid, "z_mm"].to_numpy())
        assert float(qc.loc[pid, "slice_mm"]) == pytest.approx(np.median(np.diff(z))), pid
    assert float(qc.loc["A", "slice_mm"]) == 5.0
    assert (qc.loc[["C", "D", "E", "F"], "slice_mm"] == "").all()  # excluded patients: empty
    assert CACHE_VERSION == "3"


@pytest.fixture(scope="module")
def spacing_cohort(tmp_path_factory):
    """Series of other slice spacings: thin (2.5 mm), uneven (gaps 3, 3, 4, 4 mm), one slice, no positions."""
    root = tmp_path_factory.mktemp("spacing")
    write_series(root / "thin", _square(8, 20), dz=-2.5, study_uid="1.2.1", description="PVP")
    uid = "1.2.826.0.1.3680043.8.498.4242"
    write_series(root / "uneven", _square(3, 20), dz=-3.0, series_uid=uid, subdir="a", study_uid="1.2.2",
                 description="PVP")
    write_series(root / "uneven", _square(2, 20), z0=-10.0, dz=-4.0, series_uid=uid, subdir="b", study_uid="1.2.2",
                 description="PVP")
    write_series(root / "single", _square(4, 20), study_uid="1.2.3", description="PVP")
    (root / "nopos").mkdir()
    for i, img in enumerate(_square(3, 20)):
        ct_dataset(img, z=None, series_uid="1.2.826.0.1.3680043.8.498.4343", instance=i + 1, study_uid="1.2.4",
                   description="PVP").save_as(root / "nopos" / f"{i}.dcm", enforce_file_format=True)
    rows = [dict(patient_id=pid, split="train", response="good", recist="CR", dicom_dir=pid, z_from_mm=zf, z_to_mm=zt)
            for pid, zf, zt in (("thin", "", ""), ("uneven", "", ""), ("single", "-5", "-5"), ("nopos", "", ""))]
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return prepare(root / "manifest.csv", root / "cache", config=PrepareConfig(image_size=16, fov_mm=64.0),
                   workers=1, show_progress=False)


def test_slice_mm_of_thin_uneven_single_and_unpositioned_series(spacing_cohort):
    qc = spacing_cohort.qc.set_index("patient_id")
    assert (qc["status"] == "included").all(), qc["reason"].to_dict()
    assert float(qc.loc["thin", "slice_mm"]) == 2.5 and int(qc.loc["thin", "n_slices"]) == 8
    assert float(qc.loc["uneven", "slice_mm"]) == 3.5  # median of 3, 3, 4, 4
    assert int(qc.loc["single", "n_slices"]) == 1 and qc.loc["single", "slice_mm"] == ""
    assert qc.loc["nopos", "slice_mm"] == ""
    assert slice_spacing([0.0, -10.0, -5.0]) == 5.0 and np.isnan(slice_spacing([1.0]))
    assert np.isnan(slice_spacing([0.0, float("nan")]))
