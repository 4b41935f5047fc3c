"""Reading CT series from DICOM: header scanning, series grouping, phase detection, HU and geometry.

Everything here works on one patient's folder and reports files by their path relative to
that folder, never by absolute path or header identity.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError

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
    try:
        o = np.asarray([float(v) for v in orientation], dtype=float)  # type: ignore[union-attr]
        if o.shape != (6,):
            raise ValueError
        n = np.cross(o[:3], o[3:])
        if np.linalg.norm(n) < 1e-6:
            raise ValueError
        return n / np.linalg.norm(n)
    except (TypeError, ValueError):
        return np.array([0.0, 0.0, 1.0])


def _float_or_none(value: object) -> float | None:
    try:
        return None if value is None or value == "" else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _frame_refs(ds: pydicom.Dataset, rel: str) -> list[SliceRef]:
    """Image planes of a dataset: one for a classic CT image, one per frame for Enhanced CT."""
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n_frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        pos = getattr(ds, "ImagePositionPatient", None)
        normal = _normal(getattr(ds, "ImageOrientationPatient", None))
        position = tuple(float(v) for v in pos) if pos is not None else None
        spacing = getattr(ds, "PixelSpacing", None)
        inst = getattr(ds, "InstanceNumber", None)
        return [SliceRef(
            path=rel, frame=None,
            z=float(np.dot(position, normal)) if position else float("nan"),
            position=position,  # type: ignore[arg-type]
            pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
            slope=_float_or_none(getattr(ds, "RescaleSlope", None)),
            intercept=_float_or_none(getattr(ds, "RescaleIntercept", None)),
            instance=int(inst) if inst not in (None, "") else None,
        )]
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])

    def group(i: int, name: str) -> pydicom.Dataset | None:
        for source in (per_frame[i] if i < len(per_frame) else None, shared):
            if source is not None and name in source:
                return source[name][0]
        return None

    refs = []
    for i in range(n_frames):
        plane = group(i, "PlanePositionSequence")
        orient = group(i, "PlaneOrientationSequence")
        measures = group(i, "PixelMeasuresSequence")
        transform = group(i, "PixelValueTransformationSequence")
        pos = getattr(plane, "ImagePositionPatient", None) if plane is not None else None
        position = tuple(float(v) for v in pos) if pos is not None else None
        normal = _normal(getattr(orient, "ImageOrientationPatient", None) if orient is not None else None)
        spacing = getattr(measures, "PixelSpacing", None) if measures is not None else None
        refs.append(SliceRef(
            path=rel, frame=i,
            z=float(np.dot(position, normal)) if position else float("nan"),
            position=position,  # type: ignore[arg-type]
            pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing else None,
            slope=_float_or_none(getattr(transform, "RescaleSlope", None) if transform is not None
                                 else getattr(ds, "RescaleSlope", None)),
            intercept=_float_or_none(getattr(transform, "RescaleIntercept", None) if transform is not None
                                     else getattr(ds, "RescaleIntercept", None)),
            instance=i + 1,
        ))
    return refs


def scan_folder(folder: str | Path) -> ScanResult:
    """Read the headers of every file below ``folder`` and group CT images into series.

    Non-DICOM files and non-CT objects are skipped and noted; the folder layout does not
    matter (flat, nested, one folder per series).

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
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                # Large values (pixel data) are deferred, not read: headers only, one pass.
                ds = pydicom.dcmread(f, defer_size=1024)
        except InvalidDicomError:
            skipped_non_dicom.append(rel)
            continue
        except Exception as exc:  # truncated or corrupt header
            notes.append(f"unreadable file {rel} ({type(exc).__name__})")
            continue
        modality = str(getattr(ds, "Modality", "") or "")
        modalities.add(modality or "?")
        if modality != "CT":
            notes.append(f"skipped {rel}: modality {modality or 'missing'}, not CT")
            continue
        if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            notes.append(f"skipped {rel}: no pixel data")
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f"missing-series-uid:{Path(rel).parent}")
        s = series.get(uid)
        if s is None:
            s = series[uid] = Series(
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
        s.slices.extend(_frame_refs(ds, rel))
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
        raise PatientDataError(f"no CT images with pixel data (modalities found: {found})")
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

    Raises
    ------
    PatientDataError
        Naming the file relative to the patient's folder when decoding fails.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(folder / ref.path)
            arr = ds.pixel_array
    except Exception as exc:
        reason = f"{type(exc).__name__}: {_short(exc)}"
        raise PatientDataError(f"cannot decode pixel data of {ref.path} ({reason})") from None
    if ref.frame is not None and arr.ndim == 3:
        arr = arr[ref.frame]
    if arr.ndim != 2:
        raise PatientDataError(f"{ref.path}: expected a 2D greyscale image, got array shape {arr.shape}")
    return arr


def _short(exc: Exception, limit: int = 160) -> str:
    # Exception texts from decoders may embed absolute paths; keep only the file name.
    text = re.sub(r"(/[^\s'\"]+)+/([^\s/'\"]+)", r"\2", str(exc))
    return text[:limit]
