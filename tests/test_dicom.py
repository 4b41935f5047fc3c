"""DICOM path: HU conversion, windowing, physical resampling, slice ordering, phase selection."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import ct_dataset, write_series

from pdstudy.dicom import (
    PatientDataError,
    Series,
    SliceRef,
    classify_phase,
    dicom_time_seconds,
    order_slices,
    read_plane,
    resample_to_grid,
    scan_folder,
    select_portal_venous,
    to_hu,
    window,
)


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
