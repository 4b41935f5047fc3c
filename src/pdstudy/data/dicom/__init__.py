"""Reading CT series from DICOM: header scanning and series grouping (``_scan``, its fast header parse in
``_header``), contrast phase, series choice and slice order (``_phase``), manifest IDs against header identities
(``_identity``), stored values to HU and the window (``_pixels``), physical resampling (``_resample``).

The public names are re-exported here. See docs/preprocessing.md.
"""

from pdstudy.data.dicom._identity import IDENTITY_ELEMENTS, identity_matches, normalise_identity
from pdstudy.data.dicom._phase import (
    CHOOSE_SERIES_HINT,
    PHASE_DELAYS,
    PHASES,
    classify_phase,
    describe_series,
    is_abdominal,
    order_slices,
    override_warnings,
    select_portal_venous,
)
from pdstudy.data.dicom._pixels import HU_WINDOW, read_plane, read_plane_quietly, to_hu, window, windowed_hu
from pdstudy.data.dicom._resample import resample_mask_to_grid, resample_to_grid, resample_to_uint8
from pdstudy.data.dicom._scan import (
    PatientDataError,
    ScanResult,
    Series,
    SliceRef,
    dicom_time_seconds,
    quiet_pydicom,
    scan_folder,
    walk_files,
)

__all__ = [
    "walk_files",
    "CHOOSE_SERIES_HINT",
    "HU_WINDOW",
    "IDENTITY_ELEMENTS",
    "PHASES",
    "PHASE_DELAYS",
    "PatientDataError",
    "ScanResult",
    "Series",
    "SliceRef",
    "classify_phase",
    "describe_series",
    "dicom_time_seconds",
    "identity_matches",
    "is_abdominal",
    "normalise_identity",
    "order_slices",
    "override_warnings",
    "quiet_pydicom",
    "read_plane",
    "read_plane_quietly",
    "resample_mask_to_grid",
    "resample_to_grid",
    "resample_to_uint8",
    "scan_folder",
    "select_portal_venous",
    "to_hu",
    "window",
    "windowed_hu",
]
