"""Scanning one patient's DICOM folder: file listing, header reading and grouping of CT images into series.

Files are reported by their path relative to the patient's folder, never by absolute path or header
identity. See docs/preprocessing.md.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from pdstudy.data.dicom._header import parse_header


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
    body_part: str = ""  # BodyPartExamined

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
    #: Header of every CT image file by relative path (pixel data not read), so that the planes
    #: kept are decoded without parsing their file a second time (see :func:`read_plane`).
    headers: dict[str, pydicom.Dataset] = field(default_factory=dict, repr=False, compare=False)
    #: Bytes of CT image files already read whole while scanning (up to a memory budget), by relative path.
    contents: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    #: Identity values of every readable DICOM file, by element keyword (:data:`IDENTITY_ELEMENTS`), for
    #: :func:`identity_matches` only: held in memory, never written, printed or put in a message.
    identity: dict[str, set[str]] = field(default_factory=dict, repr=False, compare=False)


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
    a missing or degenerate orientation counts as axial. The result is read-only (cached: a
    series repeats one orientation in every file).
    """
    try:
        key: tuple[float, ...] | None = tuple(float(v) for v in orientation)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        key = None
    return _normal_of(key)


@lru_cache(maxsize=256)
def _normal_of(o: tuple[float, ...] | None) -> np.ndarray:
    """:func:`_normal` of an orientation already converted to floats (None: not convertible)."""
    axial = np.array([0.0, 0.0, 1.0])
    if o is None or len(o) != 6:
        axial.flags.writeable = False
        return axial
    v = np.asarray(o, dtype=float)
    n = np.cross(v[:3], v[3:])
    if np.linalg.norm(n) < 1e-6:
        axial.flags.writeable = False
        return axial
    n = n / np.linalg.norm(n)
    out = -n if n[2] < 0 else n
    out.flags.writeable = False
    return out


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


#: Elements whose value :func:`_value` converts once per distinct encoding: a series repeats them byte for
#: byte in every file, and their value depends on nothing but their bytes (no character set, no other element).
_MEMO_TAGS = frozenset({
    0x00080060,  # Modality (CS)
    0x0020000E,  # SeriesInstanceUID (UI)
    0x00200037,  # ImageOrientationPatient (DS)
    0x00280002, 0x00280004, 0x00280008,  # SamplesPerPixel (US), PhotometricInterpretation (CS), NumberOfFrames (IS)
    0x00280010, 0x00280011, 0x00280030,  # Rows, Columns (US), PixelSpacing (DS)
    0x00280100, 0x00280101, 0x00280103,  # BitsAllocated, BitsStored, PixelRepresentation (US)
    0x00281052, 0x00281053,  # RescaleIntercept, RescaleSlope (DS)
})
_MEMO_VRS = frozenset({None, "CS", "UI", "US", "IS", "DS"})  # None: implicit VR (the dictionary's VR above)
_MEMO_LIMIT = 4096
_value_memo: dict[tuple, object] = {}
_MISSING = object()


#: pydicom keeps a dataset's elements in ``Dataset._dict`` (tag -> raw or converted element); reading it
#: directly is what ``Dataset.get_item(tag, keep_deferred=True)`` does, without its tag conversion.
_ELEMENTS_DICT = isinstance(getattr(pydicom.Dataset(), "_dict", None), dict)


def _value(ds: object, tag: int, default: object = None) -> object:
    """``getattr(ds, keyword, default)`` by tag, converting each distinct encoding of :data:`_MEMO_TAGS` once.

    pydicom converts an element's bytes on first access (tens of microseconds); scanning reads
    about ten elements of every file, most of them identical across a series.
    """
    if not isinstance(ds, pydicom.Dataset):
        return default
    elem = ds._dict.get(tag) if _ELEMENTS_DICT else ds.get_item(tag, keep_deferred=True)
    if elem is None:
        return default
    if tag in _MEMO_TAGS and type(elem) is RawDataElement and elem.value is not None and elem.VR in _MEMO_VRS:
        key = (tag, elem.VR, elem.is_implicit_VR, elem.is_little_endian, elem.value,
               pydicom.config.settings.reading_validation_mode)
        value = _value_memo.get(key, _MISSING)
        if value is _MISSING:
            if len(_value_memo) >= _MEMO_LIMIT:
                _value_memo.clear()
            value = _value_memo[key] = ds[tag].value
        return value
    return ds[tag].value


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    """``n`` numbers from a multi-valued header element, or None when absent or malformed."""
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


_DS_BYTES = re.compile(rb"[0-9+\-.eE \\]+")  # what a plain decimal string (list) is made of
_IS_TEXT = re.compile(r" *[+-]?[0-9]+")


def _plain_raw(ds: pydicom.Dataset, tag: int, vr: str) -> bytes | None:
    """The undecoded bytes of element ``tag`` while still raw and of VR ``vr`` (or implicit), else None."""
    elem = ds._dict.get(tag) if _ELEMENTS_DICT else ds.get_item(tag, keep_deferred=True)
    if type(elem) is RawDataElement and elem.VR in (vr, None) and isinstance(elem.value, bytes) and elem.value:
        return elem.value
    return None


def _position(ds: pydicom.Dataset) -> tuple[float, ...] | None:
    """``_floats(ds.ImagePositionPatient, 3)``, parsing plain decimal strings without pydicom's conversion.

    Every file has its own position, so the value memo cannot help; pydicom converts it (and the
    character set) in tens of microseconds. A value of digits, signs, points, exponents, spaces
    and backslashes is split and parsed as pydicom does (``DSfloat`` is ``float`` of each item);
    anything a ``float`` rejects goes to pydicom, which raises as before.
    """
    raw = _plain_raw(ds, 0x00200032, "DS")
    if raw is None or not _DS_BYTES.fullmatch(raw):
        return _floats(_value(ds, 0x00200032), 3)
    items = raw.decode("ascii").strip().split("\\")
    numbers = []
    for item in items:
        if item.strip() == "":
            numbers.append(None)  # pydicom keeps a blank item as a string: no number
            continue
        try:
            numbers.append(float(item))
        except ValueError:
            return _floats(_value(ds, 0x00200032), 3)
    if len(items) != 3 or None in numbers:
        return None  # one value (not a list) or a blank item: _floats gives None
    out = tuple(numbers)
    return out if all(math.isfinite(v) for v in out) else None  # type: ignore[arg-type]


def _instance_number(ds: pydicom.Dataset) -> int | None:
    """``_int_or_none(ds.InstanceNumber)``, parsing a plain integer string without pydicom's conversion."""
    raw = _plain_raw(ds, 0x00200013, "IS")
    if raw is not None:
        text = raw.decode("latin-1").rstrip(" \x00")
        if _IS_TEXT.fullmatch(text):
            return _int_or_none(int(text))
    return _int_or_none(_value(ds, 0x00200013))


def _plane_ref(rel: str, frame: int | None, pos: tuple[float, ...] | None, orientation: object, spacing: object,
               transform: object, instance: int | None) -> SliceRef:
    """A :class:`SliceRef` from header values (``pos`` parsed by :func:`_floats`; ``transform`` holds rescale)."""
    spacing_mm = _floats(spacing, 2)
    return SliceRef(
        path=rel, frame=frame,
        z=float(np.dot(pos, _normal(orientation))) if pos is not None else float("nan"),
        position=pos,  # type: ignore[arg-type]
        pixel_spacing=spacing_mm if spacing_mm is not None and min(spacing_mm) > 0 else None,  # type: ignore[arg-type]
        slope=_float_or_none(_value(transform, 0x00281053)),  # RescaleSlope
        intercept=_float_or_none(_value(transform, 0x00281052)),  # RescaleIntercept
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
    n_frames = max(1, _int_or_none(_value(ds, _NUMBER_OF_FRAMES, 1)) or 1)
    if n_frames == 1 and _PER_FRAME_TAG not in ds:
        # ImagePositionPatient, ImageOrientationPatient, PixelSpacing, InstanceNumber
        return [_plane_ref(rel, None, _position(ds), _value(ds, 0x00200037), _value(ds, 0x00280030), ds,
                           _instance_number(ds))]
    refs = []
    for i in range(n_frames):
        plane = _functional_group(ds, i, "PlanePositionSequence")
        orient = _functional_group(ds, i, "PlaneOrientationSequence", ds)
        measures = _functional_group(ds, i, "PixelMeasuresSequence", ds)
        transform = _functional_group(ds, i, "PixelValueTransformationSequence", ds)
        refs.append(_plane_ref(rel, i, _floats(_value(plane, 0x00200032), 3), _value(orient, 0x00200037),
                               _value(measures, 0x00280030), transform, i + 1))
    return refs


#: File names a DICOM export uses; such a file that does not parse is reported as unreadable by name.
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima", ""})
# Tags as integers: a membership test by keyword costs a keyword lookup, and scanning tests every file.
_PIXEL_DATA, _FLOAT_PIXEL_DATA, _DOUBLE_PIXEL_DATA = 0x7FE00010, 0x7FE00008, 0x7FE00009
_PIXEL_TAGS = (_PIXEL_DATA, _FLOAT_PIXEL_DATA, _DOUBLE_PIXEL_DATA)
_SOP_CLASS_UID, _MODALITY, _NUMBER_OF_FRAMES, _PER_FRAME_TAG = 0x00080016, 0x00080060, 0x00280008, 0x52009230


#: Identity elements (:data:`IDENTITY_ELEMENTS`) by tag, read for :func:`identity_matches`.
_IDENTITY_TAGS = {
    0x00080050: "AccessionNumber",
    0x00100010: "PatientName",
    0x00100020: "PatientID",
    0x00101000: "OtherPatientIDs",
    0x00101002: "OtherPatientIDsSequence",  # the PatientID of each item
}
_SPECIFIC_CHARACTER_SET = 0x00080005


#: The only elements scanning and decoding read (pydicom adds SpecificCharacterSet): the others are
#: skipped, not stored. Every attribute read from a :func:`scan_folder` dataset must be listed here.
_HEADER_TAGS = (
    0x00080016, _MODALITY,  # SOPClassUID, Modality
    0x00080031, 0x00080032, 0x00080033, 0x0008103E,  # SeriesTime, AcquisitionTime, ContentTime, SeriesDescription
    0x00180010, 0x00180015,  # ContrastBolusAgent, BodyPartExamined
    0x00181030, 0x00181042,  # ProtocolName, ContrastBolusStartTime
    *_IDENTITY_TAGS,  # for the pseudonymity check only
    0x0020000D, 0x0020000E, 0x00200013,  # StudyInstanceUID, SeriesInstanceUID, InstanceNumber
    0x00200032, 0x00200037,  # ImagePositionPatient, ImageOrientationPatient
    0x00280002, 0x00280004, _NUMBER_OF_FRAMES,  # SamplesPerPixel, PhotometricInterpretation, NumberOfFrames
    0x00280010, 0x00280011, 0x00280030,  # Rows, Columns, PixelSpacing
    0x00280100, 0x00280101, 0x00280103,  # BitsAllocated, BitsStored, PixelRepresentation
    0x00281052, 0x00281053,  # RescaleIntercept, RescaleSlope
    0x52009229, _PER_FRAME_TAG,  # Shared / PerFrame FunctionalGroupsSequence (read whole)
    *_PIXEL_TAGS,
)
_HEADER_TAG_LIST = [BaseTag(t) for t in _HEADER_TAGS]  # as dcmread converts them (once, not per file)
_HEADER_TAG_SET = frozenset(_HEADER_TAGS)
_DEFER_SIZE = 1024


#: Files up to this size are read in one piece and parsed from memory (pydicom parses a bytes buffer
#: about a fifth faster than a file); larger ones (multi-frame objects) are parsed from the file.
_WHOLE_FILE_BYTES = 1 << 20
#: Bytes of such files one scan keeps (:attr:`ScanResult.contents`), so that the planes kept are
#: decoded without reading their file again; files beyond the budget are read again when decoded.
_CONTENTS_BYTES = 64 << 20
#: Files larger than this are parsed from their first this-many bytes when their header ends inside them
#: (:func:`_header_from_prefix`): the pixel data of a file that is not kept is never read. Smaller files are
#: read whole (as cheap, and their bytes serve the decoding of the planes kept).
_HEADER_PREFIX_BYTES = 64 << 10


def _parse_header(buffer: bytes) -> pydicom.Dataset:
    """``pydicom.dcmread(io.BytesIO(buffer), defer_size=1024, specific_tags=_HEADER_TAGS)``.

    The common case (preamble, little endian, no undefined length) is parsed by
    :func:`pdstudy.data.dicom._header.parse_header`, which builds the same dataset several times
    faster; anything else by pydicom.
    """
    ds = parse_header(buffer, specific_tags=_HEADER_TAG_SET, defer_size=_DEFER_SIZE)
    if ds is None:
        ds = pydicom.dcmread(io.BytesIO(buffer), defer_size=_DEFER_SIZE, specific_tags=_HEADER_TAG_LIST)
    return ds


def _header_from_prefix(prefix: bytes, file_size: int) -> pydicom.Dataset | None:
    """The header dataset parsed from a file's first bytes, or None when it cannot be the whole file's.

    It is the whole file's (the same elements, values and offsets) when the parse reaches an uncompressed
    PixelData element that is deferred, that runs to or past the end of ``prefix`` and ends inside the
    file: every element :data:`_HEADER_TAGS` names lies before PixelData (tags ascend), and nothing
    after it is kept. Anything else (compressed or float pixel data, a header longer than ``prefix``, a
    file cut short, a parse error) gives None, and the caller parses the whole file as before.
    """
    try:
        ds = _parse_header(prefix)
    except Exception:
        return None
    elem = _element(ds, _PIXEL_DATA)
    if (type(elem) is not RawDataElement or elem.value is not None or elem.value_tell is None
            or elem.length == 0xFFFFFFFF or _FLOAT_PIXEL_DATA in ds or _DOUBLE_PIXEL_DATA in ds):
        return None
    end = elem.value_tell + elem.length
    return ds if len(prefix) <= end <= file_size else None


def _dcmread_header(path: Path) -> tuple[pydicom.Dataset, bytes | None]:
    """``pydicom.dcmread(path, defer_size=1024, specific_tags=_HEADER_TAGS)``, the same dataset, parsed faster.

    Returns the dataset and, for a file read in one piece, its bytes (None when only its header, or
    nothing, was read into memory). A file larger than :data:`_HEADER_PREFIX_BYTES` is parsed from
    its first bytes when its header ends there (:func:`_header_from_prefix`); otherwise a file up to
    :data:`_WHOLE_FILE_BYTES` is read whole and parsed from memory (:func:`_parse_header`), a larger
    one by pydicom from the file. A dataset parsed from memory is tied back to its path (as if parsed
    from the file), so that deferred values (pixel data, large sequences) are read from the file when
    needed.
    """
    with open(path, "rb") as fh:
        stat = os.fstat(fh.fileno())
        if stat.st_size > _HEADER_PREFIX_BYTES:
            ds = _header_from_prefix(fh.read(_HEADER_PREFIX_BYTES), stat.st_size)
            if ds is not None:
                ds.buffer, ds.filename, ds.fileobj_type, ds.timestamp = None, str(path), open, stat.st_mtime
                return ds, None
            fh.seek(0)
        data = fh.read() if stat.st_size <= _WHOLE_FILE_BYTES else None
    if data is None:
        return pydicom.dcmread(path, defer_size=_DEFER_SIZE, specific_tags=_HEADER_TAG_LIST), None
    ds = _parse_header(data)
    ds.buffer, ds.filename, ds.fileobj_type, ds.timestamp = None, str(path), open, stat.st_mtime
    return ds, data


def _read_header(path: Path, rel: str) -> tuple[pydicom.Dataset | None, str | None, bytes | None]:
    """Read one file's header (pixel data deferred): ``(dataset, None, bytes)`` or ``(None, why skipped, None)``.

    Only :data:`_HEADER_TAGS` are kept; ``bytes`` is the whole file when it was read in one piece
    (else None). ``why`` is ``""`` for a file that is not DICOM and does not look like one (reported
    in bulk).
    """
    try:
        # Large values (pixel data) are deferred, not parsed: headers only, one pass.
        ds, data = _dcmread_header(path)
    except InvalidDicomError:
        why = f"unreadable file {rel} (not a DICOM file)" if path.suffix.lower() in _DICOM_SUFFIXES else ""
        return None, why, None
    except Exception as exc:  # corrupt header
        return None, f"unreadable file {rel} ({type(exc).__name__}: {_short(exc, 80)})", None
    if _SOP_CLASS_UID not in ds and _MODALITY not in ds:
        # pydicom stops quietly at the end of a file cut short: what is left has no identity at all.
        return None, f"unreadable file {rel} (incomplete DICOM header: truncated file?)", None
    return ds, None, data


def _skip_reason(ds: pydicom.Dataset, rel: str) -> str | None:
    """Why a readable DICOM object is not a usable CT image plane, or None when it is one."""
    modality = str(_value(ds, _MODALITY, "") or "")
    if modality != "CT":
        return f"skipped {rel}: modality {modality or 'missing'}, not CT"
    if not any(t in ds for t in _PIXEL_TAGS):
        return f"skipped {rel}: no pixel data"
    if int(_value(ds, 0x00280002, 1) or 1) != 1:  # SamplesPerPixel
        return f"skipped {rel}: colour image ({ds.SamplesPerPixel} samples per pixel), not a CT slice"
    return None


def _new_series(ds: pydicom.Dataset, uid: str) -> Series:
    return Series(
        uid=uid,
        study_uid=str(getattr(ds, "StudyInstanceUID", "") or ""),
        description=str(getattr(ds, "SeriesDescription", "") or ""),
        protocol=str(getattr(ds, "ProtocolName", "") or ""),
        contrast_agent=str(getattr(ds, "ContrastBolusAgent", "") or ""),
        body_part=str(getattr(ds, "BodyPartExamined", "") or "").strip(),
        bolus_start=dicom_time_seconds(getattr(ds, "ContrastBolusStartTime", None)),
        acquisition_time=dicom_time_seconds(
            getattr(ds, "AcquisitionTime", None) or getattr(ds, "SeriesTime", None)
            or getattr(ds, "ContentTime", None)),
    )


def walk_files(folder: str | Path, *, skip: tuple[type[OSError], ...] = (PermissionError,),
               ) -> Iterator[tuple[str, os.DirEntry]]:
    """``(relative POSIX path, entry)`` of the files below ``folder``, hidden ones (``.*``) left out, unsorted.

    From ``os.scandir`` entries (no ``stat`` call or ``Path`` object per file): symbolic links to files
    count, links to folders are not followed, folders raising one of ``skip`` are passed over.
    """
    pending = [("", str(folder))]
    while pending:
        prefix, path = pending.pop()
        try:
            with os.scandir(path) as entries:
                found = [(prefix, entry) for entry in entries]
        except skip:  # as rglob: an unreadable folder has nothing to list
            continue
        for prefix, entry in found:
            if entry.is_dir():
                if not entry.is_symlink():
                    pending.append((f"{prefix}{entry.name}/", entry.path))
            elif entry.is_file() and not entry.name.startswith("."):
                yield prefix + entry.name, entry


def _list_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files below ``folder``, hidden ones (``.*``) left out.

    The files and the order of ``sorted(p for p in folder.rglob("*") if p.is_file() and not
    p.name.startswith("."))`` (:func:`walk_files`).
    """
    found = [rel for rel, _ in walk_files(folder)]
    return sorted(found, key=lambda rel: rel.split("/"))


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
    files = _list_files(folder)
    if not files:
        raise PatientDataError("DICOM folder is empty")
    series: dict[str, Series] = {}
    notes: list[str] = []
    modalities: set[str] = set()
    skipped_non_dicom: list[str] = []
    headers: dict[str, pydicom.Dataset] = {}
    contents: dict[str, bytes] = {}
    identity: dict[str, set[str]] = {}
    identity_memo: dict[tuple, list[str]] = {}
    budget = _CONTENTS_BYTES
    with quiet_pydicom():  # header values are parsed lazily: keep every access inside
        for rel in files:
            f = folder / rel
            ds, why, data = _read_header(f, rel)
            if ds is None:
                if why:
                    notes.append(why)
                else:
                    skipped_non_dicom.append(rel)
                continue
            modalities.add(str(_value(ds, _MODALITY, "") or "?"))
            _collect_identity(ds, identity, identity_memo)
            why = _skip_reason(ds, rel)
            if why:
                notes.append(why)
                continue
            uid = str(_value(ds, 0x0020000E, "") or f"missing-series-uid:{Path(rel).parent}")  # SeriesInstanceUID
            found = series.get(uid)
            if found is None:  # series-level fields are read from the first file of each series
                found = series[uid] = _new_series(ds, uid)
            found.slices.extend(_frame_refs(ds, rel))
            headers[rel] = ds
            if data is not None and len(data) <= budget:
                contents[rel] = data
                budget -= len(data)
    if skipped_non_dicom:
        notes.append(f"skipped {len(skipped_non_dicom)} non-DICOM file(s), e.g. {skipped_non_dicom[0]}")
    return ScanResult(series=list(series.values()), n_files=len(files), notes=notes, modalities=modalities,
                      headers=headers, contents=contents, identity=identity)


def _element(ds: pydicom.Dataset, tag: int) -> object:
    """The element ``tag`` of ``ds`` as stored (raw or converted), or None."""
    return ds._dict.get(tag) if _ELEMENTS_DICT else ds.get_item(tag, keep_deferred=True)


def _identity_strings(ds: pydicom.Dataset, tag: int) -> list[str]:
    """The non-empty values of identity element ``tag`` (each value of a multi-valued one) as text."""
    try:
        value = ds[tag].value
        if tag == 0x00101002:  # OtherPatientIDsSequence: the PatientID of each item
            value = [item.get("PatientID", "") for item in value or []]
    except Exception:  # a value pydicom cannot convert (e.g. an unknown character set): its raw text
        raw = getattr(_element(ds, tag), "value", b"")
        value = raw.decode("latin-1").split("\\") if isinstance(raw, bytes) and tag != 0x00101002 else ""
    if isinstance(value, (list, tuple, MultiValue)):
        items = list(value)
    else:
        items = [value]
    return [text for text in (str(v).strip(" \x00") for v in items if v is not None) if text]


def _collect_identity(ds: pydicom.Dataset, found: dict[str, set[str]], memo: dict[tuple, list[str]]) -> None:
    """Add the identity values of ``ds`` to ``found`` (element keyword -> values).

    A patient's files repeat the same bytes: each distinct raw value (and character set) is converted once.
    """
    charset = _element(ds, _SPECIFIC_CHARACTER_SET)
    charset_key = None if charset is None else str(charset.value)  # type: ignore[attr-defined]
    for tag, name in _IDENTITY_TAGS.items():
        elem = _element(ds, tag)
        if elem is None:
            continue
        if type(elem) is RawDataElement and isinstance(elem.value, bytes):
            key = (tag, elem.VR, elem.is_little_endian, elem.value, charset_key)
            values = memo.get(key)
            if values is None:
                values = memo[key] = _identity_strings(ds, tag)
        else:
            values = _identity_strings(ds, tag)
        if values:
            found.setdefault(name, set()).update(values)


def _short(exc: Exception, limit: int = 160) -> str:
    # Exception texts from decoders may embed absolute paths; keep only the file name.
    text = re.sub(r"(/[^\s'\"]+)+/([^\s/'\"]+)", r"\2", str(exc))
    return text[:limit]
