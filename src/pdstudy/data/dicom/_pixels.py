"""Decoding image planes and converting stored values to Hounsfield units and the HU window.

See docs/preprocessing.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.pixels import pixel_array

from pdstudy.data.dicom._scan import (
    _DOUBLE_PIXEL_DATA,
    _FLOAT_PIXEL_DATA,
    _NUMBER_OF_FRAMES,
    _PIXEL_DATA,
    PatientDataError,
    SliceRef,
    _short,
    _value,
    quiet_pydicom,
)

#: Windowing of the paper (HU), applied before scaling to [0, 1].
HU_WINDOW = (-215.0, 285.0)


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


def windowed_hu(pixels: np.ndarray, slope: float | None, intercept: float | None, lo: float = HU_WINDOW[0],
                hi: float = HU_WINDOW[1]) -> np.ndarray:
    """``window(to_hu(pixels, slope, intercept), lo, hi)`` in one float32 buffer: the same values, bit for bit.

    The same float32 operations in the same order, done in place instead of through four temporaries:
    the conversion to float32 is fused with the first operation (NumPy casts each value to float32
    before operating, as ``astype`` does), and a slope of exactly 1 is not multiplied (``x * 1`` is
    ``x`` in floating point). Bounds that are not plain Python numbers (e.g. NumPy float64, which
    NumPy does not treat as weakly typed) take the two-step route, whose precision then differs.
    """
    if not hi > lo:
        raise ValueError(f"window upper bound must exceed lower bound, got [{lo}, {hi}]")
    if type(lo) not in (int, float) or type(hi) not in (int, float):
        return window(to_hu(pixels, slope, intercept), lo, hi)
    s = 1.0 if slope is None else float(slope)
    b = 0.0 if intercept is None else float(intercept)
    pixels = np.asarray(pixels)
    out = np.empty(pixels.shape, dtype=np.float32)
    if np.float32(s) == np.float32(1.0):
        np.add(pixels, np.float32(b), out=out, dtype=np.float32, casting="unsafe")
    else:
        np.multiply(pixels, np.float32(s), out=out, dtype=np.float32, casting="unsafe")
        np.add(out, np.float32(b), out=out)
    np.clip(out, lo, hi, out=out)
    np.subtract(out, lo, out=out)
    np.divide(out, hi - lo, out=out)
    return out


#: Uncompressed little-endian transfer syntaxes (implicit and explicit VR): pixel bytes are stored as is.
_NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _native_plane(path: Path, header: pydicom.Dataset, frame: int | None, content: bytes | None = None
                  ) -> np.ndarray | None:
    """Stored values of an uncompressed little-endian greyscale plane, read straight from ``path``.

    ``header`` is the file's dataset as :func:`scan_folder` read it (pixel data deferred) and
    ``content``, when given, the file's bytes as read then. The result equals
    ``pydicom.pixels.pixel_array(path, index=frame)`` (unused high bits cleared and sign-extended as
    pydicom does). Returns None whenever anything is unusual (another transfer syntax, a missing or
    out-of-range Image Pixel element, pixel data shorter than the plane, a read error), so that
    pydicom decodes the file and reports the problem in its own words.
    """
    meta = getattr(header, "file_meta", None)
    if meta is None or str(_value(meta, 0x00020010, "")) not in _NATIVE_LITTLE_ENDIAN:  # TransferSyntaxUID
        return None
    if _FLOAT_PIXEL_DATA in header or _DOUBLE_PIXEL_DATA in header:
        return None
    elem = header.get_item(_PIXEL_DATA, keep_deferred=True)
    if not isinstance(elem, RawDataElement) or elem.value is not None or elem.value_tell is None:
        return None  # not deferred (small plane read with the header) or already converted
    # Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation, SamplesPerPixel, PhotometricInterpretation
    values = [_value(header, tag) for tag in (0x00280010, 0x00280011, 0x00280100, 0x00280101, 0x00280103,
                                              0x00280002, 0x00280004)]
    if any(v is None for v in values):
        return None  # a required element is missing: pydicom names it
    try:
        rows, cols, allocated, stored, signed, samples = (int(v) for v in values[:6])  # type: ignore[call-overload]
        photometric = str(values[6])
        frames = int(_value(header, _NUMBER_OF_FRAMES)) if _NUMBER_OF_FRAMES in header else 1  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    index = 0 if frame is None else frame
    if (allocated not in (8, 16, 32) or not 1 <= stored <= allocated or signed not in (0, 1) or samples != 1
            or photometric not in ("MONOCHROME1", "MONOCHROME2") or not (0 < rows < 65536 and 0 < cols < 65536)
            or frames < 1 or (frame is None and frames != 1) or not 0 <= index < frames):
        return None
    plane_bytes = rows * cols * (allocated // 8)
    if elem.length == 0xFFFFFFFF or elem.length < (index + 1) * plane_bytes:
        return None
    start = elem.value_tell + index * plane_bytes
    dtype = np.dtype(f"<{'ui'[signed]}{allocated // 8}")
    if content is not None:
        if len(content) < start + plane_bytes:
            return None
        arr = np.frombuffer(content, dtype=dtype, count=rows * cols, offset=start).reshape(rows, cols).copy()
    else:
        arr = np.empty((rows, cols), dtype=dtype)  # filled by the read (no zero-filled buffer first)
        try:
            with open(path, "rb", buffering=0) as fh:
                fh.seek(start)
                done = 0
                view = memoryview(arr).cast("B")
                while done < plane_bytes:
                    step = fh.readinto(view[done:])
                    if not step:
                        return None
                    done += step
        except OSError:
            return None
    if stored < allocated:  # as pydicom: shift the unused high bits out (sign-extending signed values)
        shift = allocated - stored
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def read_plane(folder: Path, ref: SliceRef, header: pydicom.Dataset | None = None, content: bytes | None = None
               ) -> np.ndarray:
    """Decode one image plane's stored values (any transfer syntax pydicom's plugins handle).

    Only the requested frame of a multi-frame file is decoded. Values are as stored (no rescale),
    in native byte order. With the file's ``header`` from :func:`scan_folder` (``ScanResult.headers``),
    uncompressed little-endian planes are read straight from their offset in the file (or in its
    ``content``, ``ScanResult.contents``) instead of parsing the file again; the values are the same.

    Raises
    ------
    PatientDataError
        Naming the file relative to the patient's folder when decoding fails or the plane is not
        a 2D greyscale image.
    """
    with quiet_pydicom():
        return read_plane_quietly(folder, ref, header, content)


def read_plane_quietly(folder: Path, ref: SliceRef, header: pydicom.Dataset | None = None,
                       content: bytes | None = None) -> np.ndarray:
    """:func:`read_plane` for a caller already inside :func:`quiet_pydicom` (one block for many planes)."""
    try:
        arr = _native_plane(folder / ref.path, header, ref.frame, content) if header is not None else None
        if arr is None:
            arr = pixel_array(folder / ref.path, index=ref.frame)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {_short(exc)}"
        raise PatientDataError(f"cannot decode pixel data of {ref.path} ({reason})") from None
    if arr.ndim != 2:
        raise PatientDataError(f"{ref.path}: expected a 2D greyscale image, got array shape {arr.shape}")
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)
