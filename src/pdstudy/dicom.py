"""Reading CT series from DICOM: header scanning, series grouping, phase detection, HU and geometry.

Everything here works on one patient's folder and reports files by their path relative to
that folder, never by absolute path or header identity.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array

#: Windowing of the paper (HU), applied before scaling to [0, 1].
HU_WINDOW = (-215.0, 285.0)

PHASES = ("portal_venous", "arterial", "delayed", "non_contrast", "unknown")

# Keyword rules on SeriesDescription + ProtocolName (lower-cased, punctuation -> space).
_PHASE_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("non_contrast", re.compile(r"\b(non ?contrast|noncon|plain|native|unenhanced|pre ?contrast|nc)\b")),
    ("portal_venous", re.compile(r"\b(portal|pvp|pv|venous|ven|portovenous|70 ?s)\b")),
    ("arterial", re.compile(r"\b(arterial|art|ap|late arterial|cta|35 ?s)\b")),
    ("delayed", re.compile(r"\b(delayed|equilibrium|excretory|late|3 ?min)\b")),
)

#: Seconds after bolus start that separate the phases when no keyword decides.
PHASE_DELAYS = {"arterial": (10.0, 50.0), "portal_venous": (50.0, 110.0), "delayed": (110.0, 900.0)}


class PatientDataError(Exception):
    """A problem with one patient's images; the patient is excluded with this message as reason."""


@dataclass
class SliceRef:
    """One image plane: a single-frame file, or one frame of a multi-frame file."""

    path: str  # relative to the patient's dicom_dir
    frame: int | None
    z: float
    position: tuple[float, float, float] | None
    pixel_spacing: tuple[float, float] | None
    slope: float | None
    intercept: float | None
    instance: int | None


@dataclass
class Series:
    """A CT series found in one patient's folder, with the header fields used to pick the phase."""

    uid: str
    study_uid: str
    description: str = ""
    protocol: str = ""
    contrast_agent: str = ""
    bolus_start: float | None = None  # seconds since midnight
    acquisition_time: float | None = None
    slices: list[SliceRef] = field(default_factory=list)

    @property
    def delay(self) -> float | None:
        """Seconds between contrast bolus start and acquisition, when both are recorded."""
        if self.bolus_start is None or self.acquisition_time is None:
            return None
        d = self.acquisition_time - self.bolus_start
        return d + 86400.0 if d < -43200.0 else d  # across midnight


@dataclass
class ScanResult:
    """Everything found in a patient's folder."""

    series: list[Series]
    n_files: int
    notes: list[str]  # non-fatal observations (skipped files, other modalities)
    modalities: set[str]


def dicom_time_seconds(value: object) -> float | None:
    """Parse a DICOM TM value (``HHMMSS.FFFFFF``, colons tolerated) to seconds since midnight."""
    if value is None:
        return None
    text = str(value).strip().replace(":", "")
    if not text:
        return None
    m = re.match(r"^(\d{2})(\d{2})?(\d{2})?(\.\d+)?$", text)
    if not m:
        return None
    h, mi, s, frac = m.groups()
    return int(h) * 3600 + int(mi or 0) * 60 + int(s or 0) + float(frac or 0.0)


def _normal(orientation: object) -> np.ndarray:
    """Unit slice normal from ImageOrientationPatient, pointing to the head (+z) for axial slices.

    The sign is canonical so that projecting ImagePositionPatient on it gives the patient z
    whatever the row/column directions (e.g. ``[-1, 0, 0, 0, 1, 0]`` in some Enhanced CT);
    a missing or degenerate orientation counts as axial.
    """
    try:
        o = np.asarray([float(v) for v in orientation], dtype=float)  # type: ignore[union-attr]
        if o.shape != (6,):
            raise ValueError
        n = np.cross(o[:3], o[3:])
        if np.linalg.norm(n) < 1e-6:
            raise ValueError
        n = n / np.linalg.norm(n)
        return -n if n[2] < 0 else n
    except (TypeError, ValueError):
        return np.array([0.0, 0.0, 1.0])


def _float_or_none(value: object) -> float | None:
    try:
        return None if value is None or value == "" else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int_or_none(value: object) -> int | None:
    number = _float_or_none(value)
    return int(number) if number is not None and np.isfinite(number) else None


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and value validation while reading.

    Their messages quote header values (``Invalid value for VR PN: 'NAME^...'``), i.e. patient
    identity, and would otherwise reach notebook outputs and logs.
    """
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom.config.settings.reading_validation_mode = mode


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    """``n`` numbers from a multi-valued header element, or None when absent or malformed."""
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _plane_ref(rel: str, frame: int | None, position: object, orientation: object, spacing: object,
               transform: object, instance: int | None) -> SliceRef:
    """A :class:`SliceRef` from raw header values (``transform`` holds RescaleSlope/Intercept)."""
    pos = _floats(position, 3)
    spacing_mm = _floats(spacing, 2)
    return SliceRef(
        path=rel, frame=frame,
        z=float(np.dot(pos, _normal(orientation))) if pos is not None else float("nan"),
        position=pos,  # type: ignore[arg-type]
        pixel_spacing=spacing_mm if spacing_mm is not None and min(spacing_mm) > 0 else None,  # type: ignore[arg-type]
        slope=_float_or_none(getattr(transform, "RescaleSlope", None)),
        intercept=_float_or_none(getattr(transform, "RescaleIntercept", None)),
        instance=instance,
    )


def _functional_group(ds: pydicom.Dataset, frame: int, name: str, default: pydicom.Dataset | None = None
                      ) -> pydicom.Dataset | None:
    """Item of functional group ``name`` for one frame: per-frame group first, then shared, else ``default``."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for items in (per_frame[frame:frame + 1], shared[:1]):
        for item in items:
            seq = item.get(name)
            if seq:
                return seq[0]
    return default


def _frame_refs(ds: pydicom.Dataset, rel: str) -> list[SliceRef]:
    """Image planes of a dataset: one for a classic CT image, one per frame for a multi-frame one.

    Enhanced CT keeps position, orientation, pixel spacing and rescale per frame in the per-frame
    or shared functional groups; anything absent there falls back to the top-level attribute,
    except the position (one position for several frames would make them duplicates): frames
    without one are ordered by frame number.
    """
    n_frames = max(1, _int_or_none(getattr(ds, "NumberOfFrames", 1)) or 1)
    if n_frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [_plane_ref(rel, None, getattr(ds, "ImagePositionPatient", None),
                           getattr(ds, "ImageOrientationPatient", None), getattr(ds, "PixelSpacing", None), ds,
                           _int_or_none(getattr(ds, "InstanceNumber", None)))]
    refs = []
    for i in range(n_frames):
        plane = _functional_group(ds, i, "PlanePositionSequence")
        orient = _functional_group(ds, i, "PlaneOrientationSequence", ds)
        measures = _functional_group(ds, i, "PixelMeasuresSequence", ds)
        transform = _functional_group(ds, i, "PixelValueTransformationSequence", ds)
        refs.append(_plane_ref(rel, i, getattr(plane, "ImagePositionPatient", None),
                               getattr(orient, "ImageOrientationPatient", None),
                               getattr(measures, "PixelSpacing", None), transform, i + 1))
    return refs


#: File names a DICOM export uses; such a file that does not parse is reported as unreadable by name.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima", ""})
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _read_header(path: Path, rel: str) -> tuple[pydicom.Dataset | None, str | None]:
    """Read one file's header (pixel data deferred): ``(dataset, None)`` or ``(None, why it was skipped)``.

    ``why`` is ``""`` for a file that is not DICOM and does not look like one (reported in bulk).
    """
    try:
        # Large values (pixel data) are deferred, not read: headers only, one pass.
        ds = pydicom.dcmread(path, defer_size=1024)
    except InvalidDicomError:
        return None, f"unreadable file {rel} (not a DICOM file)" if path.suffix.lower() in _DICOM_SUFFIXES else ""
    except Exception as exc:  # corrupt header
        return None, f"unreadable file {rel} ({type(exc).__name__}: {_short(exc, 80)})"
    if "SOPClassUID" not in ds and "Modality" not in ds:
        # pydicom stops quietly at the end of a file cut short: what is left has no identity at all.
        return None, f"unreadable file {rel} (incomplete DICOM header: truncated file?)"
    return ds, None


def _skip_reason(ds: pydicom.Dataset, rel: str) -> str | None:
    """Why a readable DICOM object is not a usable CT image plane, or None when it is one."""
    modality = str(getattr(ds, "Modality", "") or "")
    if modality != "CT":
        return f"skipped {rel}: modality {modality or 'missing'}, not CT"
    if not any(t in ds for t in _PIXEL_TAGS):
        return f"skipped {rel}: no pixel data"
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        return f"skipped {rel}: colour image ({ds.SamplesPerPixel} samples per pixel), not a CT slice"
    return None


def _new_series(ds: pydicom.Dataset, uid: str) -> Series:
    return Series(
        uid=uid,
        study_uid=str(getattr(ds, "StudyInstanceUID", "") or ""),
        description=str(getattr(ds, "SeriesDescription", "") or ""),
        protocol=str(getattr(ds, "ProtocolName", "") or ""),
        contrast_agent=str(getattr(ds, "ContrastBolusAgent", "") or ""),
        bolus_start=dicom_time_seconds(getattr(ds, "ContrastBolusStartTime", None)),
        acquisition_time=dicom_time_seconds(
            getattr(ds, "AcquisitionTime", None) or getattr(ds, "SeriesTime", None)
            or getattr(ds, "ContentTime", None)),
    )


def scan_folder(folder: str | Path) -> ScanResult:
    """Read the headers of every file below ``folder`` and group CT images into series.

    Non-DICOM files, unreadable or truncated files, non-CT objects and files without pixel
    data are skipped, each with a note naming the file relative to ``folder``; the folder
    layout does not matter (flat, nested, one folder per series). Hidden files (``.*``, e.g.
    ``.DS_Store``) are ignored.

    Raises
    ------
    PatientDataError
        If the folder is missing or holds no files at all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PatientDataError("DICOM folder not found (dicom_dir in the manifest)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise PatientDataError("DICOM folder is empty")
    series: dict[str, Series] = {}
    notes: list[str] = []
    modalities: set[str] = set()
    skipped_non_dicom: list[str] = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        with quiet_pydicom():  # header values are parsed lazily: keep every access inside
            ds, why = _read_header(f, rel)
            if ds is None:
                if why:
                    notes.append(why)
                else:
                    skipped_non_dicom.append(rel)
                continue
            modalities.add(str(getattr(ds, "Modality", "") or "?"))
            why = _skip_reason(ds, rel)
            if why:
                notes.append(why)
                continue
            uid = str(getattr(ds, "SeriesInstanceUID", "") or f"missing-series-uid:{Path(rel).parent}")
            series.setdefault(uid, _new_series(ds, uid)).slices.extend(_frame_refs(ds, rel))
    if skipped_non_dicom:
        notes.append(f"skipped {len(skipped_non_dicom)} non-DICOM file(s), e.g. {skipped_non_dicom[0]}")
    return ScanResult(series=list(series.values()), n_files=len(files), notes=notes, modalities=modalities)


def classify_phase(series: Series) -> tuple[str, str]:
    """Contrast phase of a series and the rule that decided it.

    Keywords in SeriesDescription/ProtocolName decide first; otherwise the delay between
    ContrastBolusStartTime and the acquisition time (arterial 10-50 s, portal venous
    50-110 s, delayed later); a series without a contrast agent and without timing is
    non-contrast.

    Returns
    -------
    (phase, rule) : tuple of str
        ``phase`` is one of :data:`PHASES`.
    """
    text = re.sub(r"[^a-z0-9]+", " ", f"{series.description} {series.protocol}".lower())
    for phase, pattern in _PHASE_KEYWORDS:
        if pattern.search(text):
            return phase, f"keyword in series description/protocol ({phase})"
    delay = series.delay
    if delay is not None and series.contrast_agent:
        for phase, (lo, hi) in PHASE_DELAYS.items():
            if lo <= delay < hi:
                return phase, f"{delay:.0f} s after contrast bolus start"
        return "unknown", f"contrast delay {delay:.0f} s outside known phases"
    if not series.contrast_agent and series.bolus_start is None:
        return "non_contrast", "no contrast agent recorded"
    return "unknown", "contrast recorded but no usable timing or keyword"


def select_portal_venous(scan: ScanResult, override_uid: str = "") -> tuple[Series, str]:
    """Pick the portal-venous series: the manifest's override first, then :func:`classify_phase`.

    Raises
    ------
    PatientDataError
        If no CT series exists, the override UID is absent, or no series is portal venous.
    """
    if not scan.series:
        found = ", ".join(sorted(scan.modalities)) or "none"
        raise PatientDataError(f"no CT images with pixel data (modalities found: {found})" + _notes_summary(scan.notes))
    if override_uid:
        for s in scan.series:
            if s.uid == override_uid:
                return s, "pvp_series_uid from manifest"
        raise PatientDataError(f"pvp_series_uid from the manifest not found among {len(scan.series)} CT series")
    phases = [(s, *classify_phase(s)) for s in scan.series]
    pvp = [(s, rule) for s, phase, rule in phases if phase == "portal_venous"]
    if not pvp:
        seen = ", ".join(sorted({phase for _, phase, _ in phases}))
        raise PatientDataError(f"no portal-venous series (found {len(scan.series)} CT series: {seen})")
    s, rule = max(pvp, key=lambda item: len(item[0].slices))
    if len(pvp) > 1:
        rule += f"; {len(pvp)} portal-venous candidates, kept the one with most slices"
    return s, rule


def _notes_summary(notes: list[str], limit: int = 3) -> str:
    """``"; note; note ..."`` for an exclusion reason: which files were skipped and why."""
    if not notes:
        return ""
    more = f"; and {len(notes) - limit} more" if len(notes) > limit else ""
    return "; " + "; ".join(notes[:limit]) + more


def order_slices(slices: list[SliceRef]) -> tuple[list[SliceRef], list[str]]:
    """Sort planes head to feet by position and report geometry problems.

    Duplicate positions keep the first file; missing positions fall back to InstanceNumber;
    uneven spacing (any gap more than 10 % off the median) is reported.

    Returns
    -------
    (ordered, warnings) : list of SliceRef, list of str

    Raises
    ------
    PatientDataError
        If neither positions nor instance numbers allow ordering.
    """
    notes: list[str] = []
    if any(np.isnan(s.z) for s in slices):
        if any(s.instance is None for s in slices):
            raise PatientDataError("slices have neither ImagePositionPatient nor InstanceNumber; cannot order them")
        notes.append("missing ImagePositionPatient: slices ordered by InstanceNumber")
        return sorted(slices, key=lambda s: s.instance or 0), notes
    ordered = sorted(slices, key=lambda s: (-s.z, s.path, s.frame or 0))
    unique: list[SliceRef] = []
    dupes = 0
    for s in ordered:
        if unique and abs(unique[-1].z - s.z) < 1e-3:
            dupes += 1
            continue
        unique.append(s)
    if dupes:
        notes.append(f"{dupes} duplicate slice position(s) dropped")
    if len(unique) >= 3:
        gaps = -np.diff([s.z for s in unique])
        med = float(np.median(gaps))
        if med > 0 and np.any(np.abs(gaps - med) > 0.1 * med):
            notes.append(
                f"uneven slice spacing (median {med:.2f} mm, range {gaps.min():.2f}-{gaps.max():.2f} mm; "
                "missing slices?)"
            )
    return unique, notes


def to_hu(pixels: np.ndarray, slope: float | None, intercept: float | None) -> np.ndarray:
    """Stored values to Hounsfield units (missing slope/intercept count as 1 and 0)."""
    s = 1.0 if slope is None else float(slope)
    b = 0.0 if intercept is None else float(intercept)
    return pixels.astype(np.float32) * np.float32(s) + np.float32(b)


def window(hu: np.ndarray, lo: float = HU_WINDOW[0], hi: float = HU_WINDOW[1]) -> np.ndarray:
    """Clip HU to ``[lo, hi]`` and scale linearly to ``[0, 1]`` (float32)."""
    if not hi > lo:
        raise ValueError(f"window upper bound must exceed lower bound, got [{lo}, {hi}]")
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def resample_to_grid(
    image: np.ndarray,
    pixel_spacing: tuple[float, float],
    target_spacing: float,
    size: int,
    *,
    nearest: bool = False,
    fill: float = 0.0,
) -> np.ndarray:
    """Resample a 2D image to a square physical pixel and centre-crop or pad it to ``size``.

    Parameters
    ----------
    image : ndarray of shape (rows, cols)
    pixel_spacing : (row_mm, col_mm)
        DICOM PixelSpacing of ``image``.
    target_spacing : float
        Output pixel size in mm (the same for every patient, so the distance scale is standard).
    size : int
        Output side length in pixels.
    nearest : bool
        Nearest-neighbour instead of bilinear (for masks).
    fill : float
        Value of padded pixels (0 = below the window, i.e. air).

    Returns
    -------
    ndarray of shape (size, size), float32
    """
    if target_spacing <= 0 or size < 1:
        raise ValueError(f"target_spacing must be > 0 and size >= 1, got {target_spacing} and {size}")
    rows, cols = image.shape
    new_h = max(1, round(rows * pixel_spacing[0] / target_spacing))
    new_w = max(1, round(cols * pixel_spacing[1] / target_spacing))
    pil = Image.fromarray(image.astype(np.float32), mode="F")
    resized = np.asarray(pil.resize((new_w, new_h), Image.NEAREST if nearest else Image.BILINEAR), dtype=np.float32)
    out = np.full((size, size), fill, dtype=np.float32)
    # Centre crop / pad independently per axis.
    src_r0, dst_r0 = max(0, (new_h - size) // 2), max(0, (size - new_h) // 2)
    src_c0, dst_c0 = max(0, (new_w - size) // 2), max(0, (size - new_w) // 2)
    h, w = min(size, new_h), min(size, new_w)
    out[dst_r0:dst_r0 + h, dst_c0:dst_c0 + w] = resized[src_r0:src_r0 + h, src_c0:src_c0 + w]
    return out


def read_plane(folder: Path, ref: SliceRef) -> np.ndarray:
    """Decode one image plane's stored values (any transfer syntax pydicom's plugins handle).

    Only the requested frame of a multi-frame file is decoded. Values are as stored (no rescale),
    in native byte order.

    Raises
    ------
    PatientDataError
        Naming the file relative to the patient's folder when decoding fails or the plane is not
        a 2D greyscale image.
    """
    try:
        with quiet_pydicom():
            arr = pixel_array(folder / ref.path, index=ref.frame)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {_short(exc)}"
        raise PatientDataError(f"cannot decode pixel data of {ref.path} ({reason})") from None
    if arr.ndim != 2:
        raise PatientDataError(f"{ref.path}: expected a 2D greyscale image, got array shape {arr.shape}")
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _short(exc: Exception, limit: int = 160) -> str:
    # Exception texts from decoders may embed absolute paths; keep only the file name.
    text = re.sub(r"(/[^\s'\"]+)+/([^\s/'\"]+)", r"\2", str(exc))
    return text[:limit]
