"""Real DICOM objects from pydicom and pydicom-data: every transfer syntax a CT archive holds, Enhanced CT.

Lossless encodings of one image must decode to identical stored values, lossy ones close to them.
What the installed plugins cannot *encode* (JPEG-LS needs pyjpegls; JPEG baseline has no pydicom
encoder) is covered by real encoded objects (JPEG-LS) or encoded with Pillow (JPEG baseline).
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_factory import ct_dataset, write_series
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from pdstudy.data.dicom import PatientDataError, order_slices, read_plane, scan_folder, to_hu, window
from pdstudy.data.preprocess import PrepareConfig, prepare


def _data_dirs() -> list[Path]:
    dirs = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return dirs


def real_file(name: str) -> Path:
    """Path of a test file shipped by pydicom or pydicom-data (skips the test when it is genuinely absent)."""
    for d in _data_dirs():
        if (d / name).is_file():
            return d / name
    pytest.skip(f"{name} is shipped by neither pydicom nor pydicom-data in this environment")


def _pixels(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path).pixel_array


def _as_ct(name: str, folder: Path) -> Path:
    """A copy of a real object relabelled Modality CT, its transfer syntax and pixel bytes unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(real_file(name))
    tsyntax = ds.file_meta.TransferSyntaxUID
    ds.Modality = "CT"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)
    assert pydicom.dcmread(folder / name, defer_size=64).file_meta.TransferSyntaxUID == tsyntax
    return folder / name


def _copy(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(real_file(name), folder / name))


def scan_ref(path: Path):
    """A plane reference for any greyscale object, CT or not (read_plane does not check the modality)."""
    from pdstudy.data.dicom._scan import _frame_refs

    return _frame_refs(pydicom.dcmread(path, defer_size=64), path.name)[0]


def _only_plane(folder: Path):
    scan = scan_folder(folder)
    assert len(scan.series) == 1, scan.notes
    return scan.series[0].slices


# ---------------------------------------------------------------- classic CT in several encodings


def test_ct_small_explicit_little_endian(tmp_path):
    _copy("CT_small.dcm", tmp_path)
    (ref,) = _only_plane(tmp_path)
    assert ref.path == "CT_small.dcm" and ref.frame is None
    assert ref.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert ref.z == pytest.approx(-75.699997) and (ref.slope, ref.intercept) == (1.0, -1024.0)
    np.testing.assert_array_equal(read_plane(tmp_path, ref), _pixels(tmp_path / "CT_small.dcm"))


def test_same_ct_slice_lossless_encodings_are_identical_and_lossy_close(tmp_path):
    planes = {}
    for name in ("693_UNCR.dcm", "693_J2KR.dcm", "693_UNCI.dcm", "693_J2KI.dcm"):
        _copy(name, tmp_path / name)
        (ref,) = _only_plane(tmp_path / name)
        planes[name] = read_plane(tmp_path / name, ref)
        assert planes[name].shape == (512, 512)
    # JPEG 2000 reversible = the uncompressed original, bit for bit.
    np.testing.assert_array_equal(planes["693_J2KR.dcm"], planes["693_UNCR.dcm"])
    # JPEG 2000 irreversible = its own uncompressed decode (UNCI), and close to the original.
    np.testing.assert_array_equal(planes["693_J2KI.dcm"], planes["693_UNCI.dcm"])
    a, b = (window(to_hu(planes[n], 1.0, -1024.0)) for n in ("693_UNCR.dcm", "693_J2KI.dcm"))
    assert float(np.abs(a - b).mean()) < 0.05
    assert float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) > 0.95


def test_jpeg_lossless_ct(tmp_path):
    _copy("bad_sequence.dcm", tmp_path)  # real CT, JPEG Lossless process 14 SV1, 12 bits stored
    (ref,) = _only_plane(tmp_path)
    arr = read_plane(tmp_path, ref)
    assert arr.shape == (512, 512) and 0 <= arr.min() and arr.max() < 2**12
    np.testing.assert_array_equal(arr, _pixels(tmp_path / "bad_sequence.dcm"))
    assert ref.pixel_spacing == pytest.approx((0.287109375, 0.287109375))


def test_jpeg_ls_lossless_equals_uncompressed(tmp_path):
    ref_pixels = _pixels(real_file("MR_small.dcm"))
    for name in ("MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm",
                 "MR_small_jp2klossless.dcm"):
        path = _as_ct(name, tmp_path / name)
        (ref,) = _only_plane(path.parent)
        np.testing.assert_array_equal(read_plane(path.parent, ref), ref_pixels, err_msg=name)


def test_jpeg_extended_12_bit_and_undecodable_file(tmp_path):
    # JPEG extended (process 2/4), 12-bit greyscale: the lossy JPEG a CT archive holds.
    path = _copy("JPGExtended.dcm", tmp_path / "ok")
    arr = read_plane(path.parent, scan_ref(path))
    assert arr.shape == (1024, 256) and arr.dtype == np.uint16
    # A real 12-bit JPEG the installed plugins reject: a clear error naming the file, never the full path.
    path = _copy("JPEG-lossy.dcm", tmp_path / "bad")
    try:
        arr = read_plane(path.parent, scan_ref(path))
    except PatientDataError as exc:
        assert "cannot decode pixel data of JPEG-lossy.dcm" in str(exc) and str(tmp_path) not in str(exc)
    else:  # a future plugin (e.g. GDCM) decodes it
        assert arr.ndim == 2


def test_8_bit_objects(tmp_path):
    # Real 8-bit JPEG lossless (an ultrasound object: decoding does not depend on the modality).
    path = _copy("JPGLosslessP14SV1_1s_1f_8b.dcm", tmp_path / "jll8")
    arr = read_plane(path.parent, scan_ref(path))
    assert arr.dtype == np.uint8 and arr.shape == (768, 1024)
    np.testing.assert_array_equal(arr, _pixels(path))
    # JPEG baseline (8-bit lossy): no greyscale one is shipped and pydicom cannot encode it, so Pillow does.
    path = _jpeg_baseline_ct(tmp_path / "baseline")
    (ref,) = _only_plane(path.parent)
    arr = read_plane(path.parent, ref)
    assert arr.dtype == np.uint8 and float(np.abs(arr.astype(int) - _BASELINE_SOURCE).mean()) < 4.0


_BASELINE_SOURCE = (np.add.outer(np.arange(64), np.arange(64)) * 2).astype(np.uint8)


def _jpeg_baseline_ct(folder: Path) -> Path:
    from PIL import Image
    from pydicom.encaps import encapsulate

    buf = io.BytesIO()
    Image.fromarray(_BASELINE_SOURCE, mode="L").save(buf, format="JPEG", quality=90)
    ds = ct_dataset(_BASELINE_SOURCE.astype(np.uint16), description="PVP")
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "baseline.dcm", enforce_file_format=True)
    return folder / "baseline.dcm"


# ---------------------------------------------------------------- multi-frame


def test_enhanced_ct_frames_positions_and_spacing(tmp_path):
    _copy("eCT_Supplemental.dcm", tmp_path)
    refs = _only_plane(tmp_path)
    assert [r.frame for r in refs] == [0, 1]
    # Per-frame PlanePositionSequence; shared orientation [-1 0 0 0 1 0]: z is still the patient z.
    assert [r.position for r in refs] == [(99.5, -301.5, -159.0), (99.5, -301.5, -149.0)]
    assert [r.z for r in refs] == [-159.0, -149.0]
    # Shared PixelMeasuresSequence and PixelValueTransformationSequence.
    assert all(r.pixel_spacing == pytest.approx((0.388672, 0.388672)) for r in refs)
    assert all((r.slope, r.intercept) == (1.0, -1024.0) for r in refs)
    ordered, notes = order_slices(refs)
    assert [r.frame for r in ordered] == [1, 0] and notes == []  # head (z = -149) first
    full = _pixels(tmp_path / "eCT_Supplemental.dcm")
    for r in refs:
        np.testing.assert_array_equal(read_plane(tmp_path, r), full[r.frame])


def test_enhanced_ct_through_prepare(tmp_path):
    _copy("eCT_Supplemental.dcm", tmp_path / "P1")
    uid = str(pydicom.dcmread(tmp_path / "P1" / "eCT_Supplemental.dcm", defer_size=64).SeriesInstanceUID)
    pd.DataFrame([dict(patient_id="E1", split="train", response="good", recist="CR", dicom_dir="P1",
                       pvp_series_uid=uid)]).to_csv(tmp_path / "m.csv", index=False)
    prepared = prepare(tmp_path / "m.csv", tmp_path / "cache", config=PrepareConfig(image_size=32, fov_mm=256.0),
                       workers=1, show_progress=False)
    qc = prepared.qc.set_index("patient_id")
    assert qc.loc["E1", "status"] == "included", qc.loc["E1", "reason"]
    assert qc.loc["E1", "n_slices"] == 2 and qc.loc["E1", "pixel_spacing_mm"] == pytest.approx(0.3887, abs=1e-4)
    assert prepared.index["z_mm"].tolist() == [-149.0, -159.0]
    assert prepared.images[:].max() > 0


EMRI = ("emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm", "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm")


def test_multiframe_in_five_transfer_syntaxes_decodes_identically(tmp_path):
    """Enhanced MR (10 frames, no functional groups) relabelled CT: explicit LE, RLE, big endian, J2K, JPEG-LS."""
    decoded = {}
    for name in EMRI:
        path = _as_ct(name, tmp_path / name)
        refs = _only_plane(path.parent)
        assert [r.frame for r in refs] == list(range(10))
        ordered, notes = order_slices(refs)  # no positions: frame order, with a warning
        assert [r.frame for r in ordered] == list(range(10)) and any("InstanceNumber" in n for n in notes)
        decoded[name] = np.stack([read_plane(path.parent, r) for r in refs])
        assert decoded[name].dtype.isnative
    for name in EMRI[1:]:
        np.testing.assert_array_equal(decoded[name], decoded[EMRI[0]], err_msg=name)
    np.testing.assert_array_equal(decoded[EMRI[0]], _pixels(real_file(EMRI[0])))


# ---------------------------------------------------------------- generated series, compressed, end to end


def test_compressed_series_prepare_like_uncompressed(tmp_path):
    rng = np.random.default_rng(3)
    vol = (1024 + rng.normal(60, 80, size=(5, 48, 48))).clip(0, 4095).astype(np.uint16)
    rows = []
    for pid, syntax in (("NATIVE", None), ("RLE", RLELossless), ("J2KR", JPEG2000Lossless)):
        paths = write_series(tmp_path / pid, vol, spacing=(0.8, 0.8), description="PVP", study_uid=f"1.2.{len(rows)}")
        for p in paths:
            if syntax is not None:
                ds = pydicom.dcmread(p)
                ds.compress(syntax)
                ds.save_as(p, enforce_file_format=True)
                assert pydicom.dcmread(p, defer_size=64).file_meta.TransferSyntaxUID == syntax
        rows.append(dict(patient_id=pid, split="train", response="good", recist="CR", dicom_dir=pid,
                         z_from_mm="0", z_to_mm="-20"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    prepared = prepare(tmp_path / "m.csv", tmp_path / "cache", config=PrepareConfig(image_size=32, fov_mm=48.0),
                       workers=1, show_progress=False)
    qc = prepared.qc.set_index("patient_id")
    assert (qc["status"] == "included").all(), qc["reason"].to_dict()
    assert qc["n_slices"].tolist() == [5, 5, 5] and qc["warnings"].nunique() == 1
    native = np.asarray(prepared.images[prepared.patient_slices("NATIVE")])
    for pid in ("RLE", "J2KR"):
        np.testing.assert_array_equal(np.asarray(prepared.images[prepared.patient_slices(pid)]), native, err_msg=pid)
    # Same pixels whatever the encoding: the same-person pixel key agrees too.
    assert qc["pixel_key"].nunique() == 1 and qc["study_key"].nunique() == 3
