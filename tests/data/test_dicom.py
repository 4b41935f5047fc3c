"""DICOM path: HU conversion, windowing, physical resampling, slice ordering, phase selection."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import ct_dataset, write_series

from pdstudy.data.cache import reason_category
from pdstudy.data.dicom import (
    CHOOSE_SERIES_HINT,
    PatientDataError,
    Series,
    SliceRef,
    classify_phase,
    describe_series,
    dicom_time_seconds,
    order_slices,
    read_plane,
    resample_to_grid,
    scan_folder,
    select_portal_venous,
    to_hu,
    window,
)
from pdstudy.data.preprocess import PrepareConfig, process_patient


def test_to_hu_applies_slope_and_intercept():
    stored = np.array([[0, 1024, 2048]], dtype=np.uint16)
    assert to_hu(stored, 1.0, -1024.0).tolist() == [[-1024.0, 0.0, 1024.0]]
    assert to_hu(stored, 0.5, -100.0).tolist() == [[-100.0, 412.0, 924.0]]
    # Missing slope/intercept default to 1 and 0.
    assert to_hu(stored, None, None).tolist() == [[0.0, 1024.0, 2048.0]]


def test_window_maps_paper_range_to_unit_interval():
    hu = np.array([-1000.0, -215.0, 35.0, 285.0, 3000.0])
    out = window(hu)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="upper bound"):
        window(hu, 10, 10)


def test_resample_gives_same_physical_scale_for_different_spacings():
    # A 100 mm wide square drawn on two grids with different pixel spacing.
    def square(n: int, spacing: float) -> np.ndarray:
        img = np.zeros((n, n), dtype=np.float32)
        half = 50.0 / spacing
        c = n / 2
        img[int(round(c - half)) : int(round(c + half)), int(round(c - half)) : int(round(c + half))] = 1.0
        return img

    a = resample_to_grid(square(200, 1.0), (1.0, 1.0), 2.0, 80)
    b = resample_to_grid(square(100, 2.5), (2.5, 2.5), 2.0, 80)
    # 100 mm at 2 mm/pixel = 50 pixels wide in both.
    for img in (a, b):
        width = (img[40] > 0.5).sum()
        assert abs(width - 50) <= 2, width
    assert a.shape == b.shape == (80, 80)


def test_resample_pads_small_fields_and_crops_large_ones():
    img = np.ones((10, 10), dtype=np.float32)
    padded = resample_to_grid(img, (1.0, 1.0), 1.0, 20)
    assert padded.sum() == pytest.approx(100.0)
    assert padded[0, 0] == 0.0 and padded[10, 10] == 1.0
    cropped = resample_to_grid(np.ones((50, 30), dtype=np.float32), (1.0, 1.0), 1.0, 20)
    assert cropped.shape == (20, 20) and cropped.min() == 1.0
    # Anisotropic pixels: 2 mm rows, 1 mm columns -> twice as many rows after resampling to 1 mm.
    aniso = resample_to_grid(np.ones((10, 10), dtype=np.float32), (2.0, 1.0), 1.0, 40)
    assert (aniso[:, 20] > 0.5).sum() == 20 and (aniso[20] > 0.5).sum() == 10


def _ref(z: float, path: str = "x", instance: int | None = None) -> SliceRef:
    return SliceRef(
        path=path,
        frame=None,
        z=z,
        position=(0.0, 0.0, z),
        pixel_spacing=(1.0, 1.0),
        slope=1.0,
        intercept=0.0,
        instance=instance,
    )


def test_order_slices_head_to_feet_and_reports_duplicates_and_gaps():
    refs = [_ref(z, f"f{z}") for z in (0.0, 10.0, -5.0, 5.0, 5.0)]
    ordered, notes = order_slices(refs)
    assert [r.z for r in ordered] == [10.0, 5.0, 0.0, -5.0]
    assert any("duplicate" in n for n in notes)
    _, notes = order_slices([_ref(z) for z in (0.0, -5.0, -10.0, -25.0, -30.0)])
    assert any("uneven slice spacing" in n for n in notes)
    _, notes = order_slices([_ref(z) for z in (0.0, -5.0, -10.0, -15.0)])
    assert notes == []


def test_order_slices_falls_back_to_instance_number():
    refs = [_ref(float("nan"), instance=i) for i in (3, 1, 2)]
    ordered, notes = order_slices(refs)
    assert [r.instance for r in ordered] == [1, 2, 3]
    assert any("InstanceNumber" in n for n in notes)
    with pytest.raises(PatientDataError, match="cannot order"):
        order_slices([_ref(float("nan"))])


def test_dicom_time_parsing():
    assert dicom_time_seconds("101530") == 10 * 3600 + 15 * 60 + 30
    assert dicom_time_seconds("101530.5") == pytest.approx(36930.5)
    assert dicom_time_seconds("10:15:30") == 36930
    assert dicom_time_seconds("") is None and dicom_time_seconds("garbage") is None


@pytest.mark.parametrize(
    ("description", "agent", "bolus", "acq", "expected"),
    [
        ("Abd PVP 70s", "IOHEXOL", "", "", "portal_venous"),
        ("Portal venous 1.25mm", "", "", "", "portal_venous"),
        ("ARTERIAL", "IOHEXOL", "", "", "arterial"),
        ("Abdomen 5.0 B31f", "IOHEXOL", "100000", "100030", "arterial"),
        ("Abdomen 5.0 B31f", "IOHEXOL", "100000", "100110", "portal_venous"),
        ("Abdomen 5.0 B31f", "IOHEXOL", "235950", "000100", "portal_venous"),  # across midnight: 70 s
        ("Abdomen 5.0 B31f", "IOHEXOL", "100000", "100400", "delayed"),
        ("Abdomen 5.0 B31f", "", "", "", "non_contrast"),
        ("Plain abdomen", "", "", "", "non_contrast"),
        ("Abdomen 5.0 B31f", "IOHEXOL", "", "", "unknown"),
    ],
)
def test_classify_phase(description, agent, bolus, acq, expected):
    s = Series(
        uid="1",
        study_uid="1",
        description=description,
        contrast_agent=agent,
        bolus_start=dicom_time_seconds(bolus),
        acquisition_time=dicom_time_seconds(acq),
    )
    assert classify_phase(s)[0] == expected


def _volume(n: int = 4, value: int = 1100) -> np.ndarray:
    return np.full((n, 16, 16), value, dtype=np.uint16)


def test_scan_and_select_portal_venous_from_headers(tmp_path):
    write_series(
        tmp_path,
        _volume(),
        subdir="a",
        series_uid="1.1",
        description="Abdomen",
        contrast_agent="X",
        bolus_start="100000",
        acquisition_time="100030",
    )
    write_series(
        tmp_path,
        _volume(5),
        subdir="b/c",
        series_uid="1.2",
        description="Abdomen",
        contrast_agent="X",
        bolus_start="100000",
        acquisition_time="100115",
    )
    (tmp_path / "a" / "notes.txt").write_text("not dicom")
    scan = scan_folder(tmp_path)
    assert {s.uid for s in scan.series} == {"1.1", "1.2"}
    assert any("non-DICOM" in n for n in scan.notes)
    series, rule = select_portal_venous(scan)
    assert series.uid == "1.2" and "after contrast bolus start" in rule
    # The manifest's override wins over the headers.
    series, rule = select_portal_venous(scan, "1.1")
    assert series.uid == "1.1" and "manifest" in rule
    with pytest.raises(PatientDataError, match="pvp_series_uid"):
        select_portal_venous(scan, "9.9")


def test_no_portal_venous_series_is_a_patient_error(tmp_path):
    write_series(tmp_path, _volume(), series_uid="1.1", description="ARTERIAL", contrast_agent="X")
    with pytest.raises(PatientDataError, match="no portal-venous series"):
        select_portal_venous(scan_folder(tmp_path))


def test_scan_skips_non_ct_and_pixelless_files(tmp_path):
    ds = ct_dataset(_volume(1)[0], modality="MR", series_uid="2.1")
    ds.save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    ds = ct_dataset(_volume(1)[0], series_uid="2.2", pixel_data=False)
    ds.save_as(tmp_path / "nopix.dcm", enforce_file_format=True)
    scan = scan_folder(tmp_path)
    assert scan.series == []
    assert any("modality MR" in n for n in scan.notes) and any("no pixel data" in n for n in scan.notes)
    with pytest.raises(PatientDataError, match="modalities found"):
        select_portal_venous(scan)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(PatientDataError, match="not found"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PatientDataError, match="empty"):
        scan_folder(tmp_path / "empty")


def test_truncated_pixel_data_names_the_relative_file(tmp_path):
    paths = write_series(tmp_path, _volume(2), subdir="s", series_uid="3.1", description="PVP")
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) - 300])
    scan = scan_folder(tmp_path)
    ref = next(r for r in scan.series[0].slices if r.path.endswith(paths[0].name))
    with pytest.raises(PatientDataError) as err:
        read_plane(tmp_path, ref)
    msg = str(err.value)
    assert f"s/{paths[0].name}" in msg and str(tmp_path) not in msg


# ---------------------------------------------------------------- fast paths equal the plain ones


def _native_variant(tmp_path, name: str, bits: int, stored: int, signed: bool, syntax: str, garbage: bool):
    """A CT file with ``bits`` allocated / ``stored`` bits stored, high bits optionally filled with garbage."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    rng = np.random.default_rng(bits * 100 + stored)
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
    lo, hi = (-(2 ** (stored - 1)), 2 ** (stored - 1)) if signed else (0, 2**stored)
    pixels = rng.integers(lo, hi, size=(40, 36)).astype(dtype)  # over 1 kB: deferred while scanning
    raw = pixels.copy()
    if garbage and stored < bits:  # values in the unused high bits, which pydicom clears / sign-extends
        raw = (raw.view(f"u{bits // 8}") | (0b1010 << stored)).view(dtype)
    ds = ct_dataset(np.zeros((40, 36), dtype=np.uint16), series_uid="9.9", description="PVP")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, stored, stored - 1, int(signed)
    ds.file_meta.TransferSyntaxUID = {"explicit": ExplicitVRLittleEndian, "implicit": ImplicitVRLittleEndian,
                                      "big": ExplicitVRBigEndian}[syntax]
    ds.PixelData = raw.astype(dtype.newbyteorder(">" if syntax == "big" else "<")).tobytes()
    folder = tmp_path / name
    folder.mkdir()
    ds.save_as(folder / "x.dcm", enforce_file_format=True)
    return folder


@pytest.mark.parametrize(("bits", "stored", "signed", "syntax", "garbage"), [
    (16, 16, False, "explicit", False), (16, 16, True, "explicit", False), (16, 12, False, "explicit", True),
    (16, 12, True, "explicit", True), (8, 8, False, "explicit", False), (32, 32, True, "explicit", False),
    (16, 12, True, "implicit", True), (16, 16, True, "big", False),
])
def test_planes_read_from_the_scan_equal_pydicom(tmp_path, bits, stored, signed, syntax, garbage):
    from pydicom.pixels import pixel_array

    from pdstudy.data.dicom import quiet_pydicom
    from pdstudy.data.dicom._pixels import _native_plane

    folder = _native_variant(tmp_path, "v", bits, stored, signed, syntax, garbage)
    scan = scan_folder(folder)
    (ref,) = scan.series[0].slices
    expected = pixel_array(folder / ref.path)
    with quiet_pydicom():  # the fast path is taken for little endian, pydicom decodes big endian
        fast = _native_plane(folder / ref.path, scan.headers[ref.path], ref.frame)
    assert (fast is None) == (syntax == "big")
    for content in (None, scan.contents.get(ref.path)):
        got = read_plane(folder, ref, scan.headers[ref.path], content)
        assert got.dtype == expected.dtype.newbyteorder("=") and got.flags.writeable
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(read_plane(folder, ref), expected)


def test_truncated_pixel_data_read_from_the_scan_fails_like_pydicom(tmp_path):
    paths = write_series(tmp_path, _volume(2), subdir="s", series_uid="3.2", description="PVP")
    paths[0].write_bytes(paths[0].read_bytes()[:-300])
    scan = scan_folder(tmp_path)
    ref = next(r for r in scan.series[0].slices if r.path.endswith(paths[0].name))
    messages = []
    scanned, whole = scan.headers[ref.path], scan.contents[ref.path]
    for header, content in ((None, None), (scanned, None), (scanned, whole)):
        with pytest.raises(PatientDataError) as err:
            read_plane(tmp_path, ref, header, content)
        messages.append(str(err.value))
    assert len(set(messages)) == 1 and f"s/{paths[0].name}" in messages[0]


def test_file_listing_matches_sorted_rglob(tmp_path):
    import os

    from pdstudy.data.dicom._scan import _list_files

    for rel in ("a/b/c.dcm", "a-b/x", "a/b.dcm", "A/z", ".hid/y.dcm", "a/.h", "z", "a b/q", "a.b/c", "a0/x", "a/0"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    os.symlink(tmp_path / "a", tmp_path / "linkdir")
    os.symlink(tmp_path / "z", tmp_path / "linkfile")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken")
    expected = [p.relative_to(tmp_path).as_posix()
                for p in sorted(p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("."))]
    assert _list_files(tmp_path) == expected


def test_fused_window_and_resampling_are_bitwise_the_plain_steps():
    from pdstudy.data.dicom import resample_mask_to_grid, resample_to_uint8, windowed_hu

    rng = np.random.default_rng(5)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(3, 90, 2))
        spacing = tuple(float(v) for v in rng.uniform(0.3, 4.0, 2))
        target, size = float(rng.uniform(0.5, 5.0)), int(rng.integers(8, 120))
        stored = rng.integers(0, 4096, (h, w)).astype(np.uint16 if trial % 2 else np.int16)
        slope, intercept = [(1.0, -1024.0), (None, None), (0.7, -1000.5)][trial % 3]
        lo, hi = [(-215.0, 285.0), (-1000, 400), (np.float64(-215.3), 285.0)][trial % 3]
        plain = window(to_hu(stored, slope, intercept), lo, hi)
        fused = windowed_hu(stored, slope, intercept, lo, hi)
        assert fused.dtype == plain.dtype and np.array_equal(fused, plain)
        out = np.full((size, size), 7, dtype=np.uint8)
        expected = np.rint(resample_to_grid(plain, spacing, target, size) * 255.0).astype(np.uint8)
        assert resample_to_uint8(plain, spacing, target, size, out) is out and np.array_equal(out, expected)
        mask = (rng.random((h, w)) < 0.3).astype(np.float32) * [1.0, 0.5, 0.7][trial % 3]
        expected_mask = resample_to_grid(mask, spacing, target, size, nearest=True) > 0.5
        assert np.array_equal(resample_mask_to_grid(mask, spacing, target, size), expected_mask)


@pytest.mark.parametrize("value", [
    b"-171.03725\\-171.03725\\-49 ", b"1\\2\\3", b"1\\2", b"1", b" ", b"1\\\\3", b"1.2.3\\4\\5", b"1e400\\1\\2",
    b"+1.5E-3\\-.5\\5.", b" 1 \\ 2 \\ 3 ", b"1 2\\3\\4", b"1\\2\\3\\4", b"1e\\2\\3", b"1\\2\\3\x00", b"1\\2\\nan",
])
def test_position_and_instance_number_parse_as_pydicom_converts(value):
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import BaseTag

    from pdstudy.data.dicom import quiet_pydicom
    from pdstudy.data.dicom._scan import _floats, _instance_number, _int_or_none, _position, _value

    def outcome(fn, ds):
        try:
            return "ok", fn(ds)
        except Exception as exc:  # pydicom raises on some malformed values: the fast path must too
            return "error", type(exc).__name__

    def dataset(tag: int, vr: str, raw: bytes, implicit: bool) -> Dataset:
        ds = Dataset()
        ds._dict[BaseTag(tag)] = RawDataElement(BaseTag(tag), None if implicit else vr, len(raw), raw, 0, implicit,
                                                True)
        return ds

    int_value = value.split(b"\\")[0].replace(b".", b"")  # integer-like strings for InstanceNumber too
    with quiet_pydicom():
        for implicit in (False, True):
            assert (outcome(_position, dataset(0x00200032, "DS", value, implicit))
                    == outcome(lambda d: _floats(_value(d, 0x00200032), 3), dataset(0x00200032, "DS", value, implicit)))
            for raw in (value, int_value or b"0"):
                plain = outcome(lambda d: _int_or_none(_value(d, 0x00200013)), dataset(0x00200013, "IS", raw, implicit))
                assert outcome(_instance_number, dataset(0x00200013, "IS", raw, implicit)) == plain


def _three_phases_without_pvp(folder):
    """Plain at 10:00:00, arterial 30 s after a 10:01:00 bolus (10:01:30), a contrast series without timing."""
    write_series(folder, _volume(3), subdir="s1", series_uid="7.1", description="ABD  PLAIN\n5mm",
                 acquisition_time="100000")
    write_series(folder, _volume(5), subdir="s2", series_uid="7.2", description="Abdomen 1.0 B31f",
                 contrast_agent="Iohexol", bolus_start="100100", acquisition_time="100130")
    write_series(folder, _volume(4), subdir="s3", series_uid="7.3", contrast_agent="Iohexol")


def test_no_portal_venous_series_lists_the_series_seen_and_how_to_choose(tmp_path):
    _three_phases_without_pvp(tmp_path)
    with pytest.raises(PatientDataError) as exc:
        select_portal_venous(scan_folder(tmp_path))
    reason = str(exc.value)
    assert "\n" not in reason and len(reason) < 500, reason
    # The category stays first (pdstudy.data.cache.reason_category), then how to choose, then the series.
    assert reason.startswith("no portal-venous series (found 3 CT series: arterial, non_contrast, unknown); ")
    assert reason.index("pvp_series_uid") < reason.index("series seen:")
    assert CHOOSE_SERIES_HINT in reason and "SeriesInstanceUID" in reason
    seen = reason.split("series seen: ", 1)[1].split(" | ")
    # in acquisition order: plain at t+0, arterial 90 s later, then the series without an AcquisitionTime
    assert seen[0] == "1) 'ABD PLAIN 5mm' 3 slices, non_contrast, no contrast tags, t+0 s"
    assert seen[1] == ("2) 'Abdomen 1.0 B31f' 5 slices, arterial, ContrastBolusAgent Iohexol, "
                       "30 s after ContrastBolusStartTime, t+90 s")
    assert seen[2] == ("3) 'no description' 4 slices, unknown, ContrastBolusAgent Iohexol, no ContrastBolusStartTime, "
                       "no AcquisitionTime")
    assert "7.1" not in reason and "7.2" not in reason  # no UIDs


def test_series_listing_stays_short_with_many_series():
    many = [Series(uid=str(i), study_uid="1", description="x" * 80 + str(i), acquisition_time=36000.0 + i,
                   slices=[_ref(0.0)]) for i in range(10)]
    text = describe_series(many)
    assert text.count(" | ") == 6 and text.endswith("and 4 more") and "xxx..." in text
    assert len(text) < 600
    assert describe_series([]) == "none"
    with pytest.raises(ValueError, match="limit"):
        describe_series(many, limit=0)


def test_qc_reason_of_a_patient_without_portal_venous_series_lists_the_series(tmp_path):
    _three_phases_without_pvp(tmp_path / "HOSP1")
    row = dict(patient_id="SYN1", split="train", response="good", recist="CR", dicom_dir="HOSP1")
    result = process_patient(row, str(tmp_path), PrepareConfig(image_size=16, fov_mm=32.0))
    assert result.status == "excluded"
    assert "series seen: 1) 'ABD PLAIN 5mm' 3 slices" in result.reason and "t+90 s" in result.reason
    assert reason_category(result.reason) == "no portal-venous series"
    assert str(tmp_path) not in result.reason
