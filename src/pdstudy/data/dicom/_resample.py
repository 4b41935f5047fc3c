"""Resampling image planes and masks to a square physical pixel on a fixed square canvas.

See docs/preprocessing.md.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image


def _pil_array(im: Image.Image, dtype: type[np.generic]) -> np.ndarray:
    """``np.asarray(im, dtype)`` of an ``F`` (float32) or ``L`` (uint8) image, copied in one piece.

    ``np.asarray`` goes through ``Image.tobytes``, which encodes in 64 kB chunks and joins them:
    as slow as the resize itself for a 256 px float image. The raw encoder asked for the whole
    image at once gives the same bytes; any surprise falls back to ``np.asarray``.
    """
    width, height = im.size
    nbytes = width * height * np.dtype(dtype).itemsize
    try:
        encoder = Image._getencoder(im.mode, "raw", im.mode)
        try:
            encoder.setimage(im.im, (0, 0, width, height))
            _, status, data = encoder.encode(nbytes)
        finally:
            encoder.cleanup()
        if status == 1 and len(data) == nbytes:
            return np.frombuffer(data, dtype=dtype).reshape(height, width)
    except Exception:  # another Pillow: the public, slower way
        pass
    return np.asarray(im, dtype=dtype)


def _float_image(image: np.ndarray) -> Image.Image:
    """``Image.fromarray(image as float32, mode="F")``: the same image, on the array's memory where Pillow allows.

    ``fromarray`` copies a float image into Pillow's memory (as long as a fifth of the bilinear resize
    of a 512 px slice); Pillow's ``map_buffer`` reads the C-contiguous float32 array in place (the
    image holds a reference to it). Where that is not available, ``fromarray``.
    """
    arr = np.ascontiguousarray(image, dtype=np.float32)
    if arr.ndim == 2 and arr.dtype.isnative and arr.size:
        try:
            mapped = Image.core.map_buffer(arr, (arr.shape[1], arr.shape[0]), "raw", 0, ("F", 0, 1))
            if mapped.mode == "F" and mapped.size == (arr.shape[1], arr.shape[0]):
                return Image.new("F", (0, 0))._new(mapped)
        except Exception:  # another Pillow: the public way
            pass
    return Image.fromarray(arr, mode="F")


def _grid_shape(shape: tuple[int, ...], pixel_spacing: tuple[float, float], target_spacing: float,
                size: int) -> tuple[int, int]:
    """(rows, cols) of an image of ``shape`` resampled to ``target_spacing`` mm pixels."""
    if target_spacing <= 0 or size < 1:
        raise ValueError(f"target_spacing must be > 0 and size >= 1, got {target_spacing} and {size}")
    rows, cols = shape
    return (max(1, round(rows * pixel_spacing[0] / target_spacing)),
            max(1, round(cols * pixel_spacing[1] / target_spacing)))


def _crop_pad(resized: np.ndarray, size: int, fill: float, out: np.ndarray | None) -> np.ndarray:
    """Centre-crop or pad ``resized`` to ``size`` x ``size``, independently per axis (into ``out`` if given)."""
    new_h, new_w = resized.shape
    if out is None:
        out = np.full((size, size), fill, dtype=resized.dtype)
    elif new_h < size or new_w < size:
        out.fill(fill)
    src_r0, dst_r0 = max(0, (new_h - size) // 2), max(0, (size - new_h) // 2)
    src_c0, dst_c0 = max(0, (new_w - size) // 2), max(0, (size - new_w) // 2)
    h, w = min(size, new_h), min(size, new_w)
    out[dst_r0:dst_r0 + h, dst_c0:dst_c0 + w] = resized[src_r0:src_r0 + h, src_c0:src_c0 + w]
    return out


@lru_cache(maxsize=128)
def _nearest_picks(n_in: int, n_out: int, axis: int) -> np.ndarray | None:
    """Source index of each output pixel along ``axis`` when Pillow resizes ``n_in`` to ``n_out`` pixels, NEAREST.

    Pillow's nearest-neighbour resize picks rows and columns independently; resizing a ramp of
    source indices (along that axis, through Pillow itself) reads its picks off. None when a
    pick falls outside the source (Pillow would fill it).
    """
    ramp = np.arange(1, n_in + 1, dtype=np.float32)
    image = Image.fromarray(ramp[:, None] if axis == 0 else ramp[None, :], mode="F")
    resized = image.resize((1, n_out) if axis == 0 else (n_out, 1), Image.NEAREST)
    picks = np.asarray(resized, dtype=np.float32).ravel().astype(np.intp) - 1
    if picks.size != n_out or picks.min() < 0 or picks.max() >= n_in:
        return None
    picks.flags.writeable = False
    return picks


def resample_mask_to_grid(mask: np.ndarray, pixel_spacing: tuple[float, float], target_spacing: float,
                          size: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """``resample_to_grid(mask, ..., nearest=True) > 0.5`` as uint8 0/1, into ``out`` if given.

    Nearest neighbour only picks source pixels, and which ones depends on nothing but the sizes:
    the picks Pillow makes (:func:`_nearest_picks`) are applied by indexing, for the canvas part
    only, and the picked pixels thresholded (as float32, as :func:`resample_to_grid` would see
    them). An integer or boolean mask is thresholded as it is (``> 0``: for integers the same as
    their float32 value ``> 0.5``), without a float32 copy.
    """
    new_h, new_w = _grid_shape(mask.shape, pixel_spacing, target_spacing, size)
    mask = np.asarray(mask)
    picks_r, picks_c = _nearest_picks(mask.shape[0], new_h, 0), _nearest_picks(mask.shape[1], new_w, 1)
    if picks_r is None or picks_c is None:  # not expected for a whole-image resize: Pillow does it
        binary = mask > 0 if mask.dtype.kind in "biu" else np.asarray(mask, dtype=np.float32) > 0.5
        image = Image.fromarray(binary.astype(np.uint8), mode="L")
        return _crop_pad(_pil_array(image.resize((new_w, new_h), Image.NEAREST), np.uint8), size, 0, out)
    if out is None:
        out = np.zeros((size, size), dtype=np.uint8)
    elif new_h < size or new_w < size:
        out.fill(0)
    src_r0, dst_r0 = max(0, (new_h - size) // 2), max(0, (size - new_h) // 2)
    src_c0, dst_c0 = max(0, (new_w - size) // 2), max(0, (size - new_w) // 2)
    h, w = min(size, new_h), min(size, new_w)
    # Rows first, then columns: two plain gathers (an np.ix_ gather is several times slower); the comparison
    # writes its 0/1 straight into the canvas.
    picked = mask.take(picks_r[src_r0:src_r0 + h], axis=0).take(picks_c[src_c0:src_c0 + w], axis=1)
    canvas = out[dst_r0:dst_r0 + h, dst_c0:dst_c0 + w]
    if picked.dtype.kind in "biu":
        np.greater(picked, 0, out=canvas, casting="unsafe")
    else:
        np.greater(np.asarray(picked, dtype=np.float32), 0.5, out=canvas, casting="unsafe")
    return out


def resample_to_uint8(image: np.ndarray, pixel_spacing: tuple[float, float], target_spacing: float, size: int,
                      out: np.ndarray) -> np.ndarray:
    """``np.rint(resample_to_grid(image, ...) * 255.0).astype(np.uint8)`` written into ``out`` (uint8, size x size).

    The padding is 0 either way; only the resampled part is scaled and rounded (the same float32
    operations), straight from Pillow's output, without the intermediate float canvas.
    """
    new_h, new_w = _grid_shape(image.shape, pixel_spacing, target_spacing, size)
    resized = _pil_array(_float_image(image).resize((new_w, new_h), Image.BILINEAR), np.float32)
    src_r0, dst_r0 = max(0, (new_h - size) // 2), max(0, (size - new_h) // 2)
    src_c0, dst_c0 = max(0, (new_w - size) // 2), max(0, (size - new_w) // 2)
    h, w = min(size, new_h), min(size, new_w)
    part = np.multiply(resized[src_r0:src_r0 + h, src_c0:src_c0 + w], 255.0)
    np.rint(part, out=part)
    out[:dst_r0] = 0  # the padding (none where the image is cropped)
    out[dst_r0 + h:] = 0
    out[dst_r0:dst_r0 + h, :dst_c0] = 0
    out[dst_r0:dst_r0 + h, dst_c0 + w:] = 0
    np.copyto(out[dst_r0:dst_r0 + h, dst_c0:dst_c0 + w], part, casting="unsafe")  # integers in [0, 255]
    return out


def resample_to_grid(
    image: np.ndarray,
    pixel_spacing: tuple[float, float],
    target_spacing: float,
    size: int,
    *,
    nearest: bool = False,
    fill: float = 0.0,
    out: np.ndarray | None = None,
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
    out : ndarray of shape (size, size), float32, optional
        Written in place and returned (e.g. one plane of a volume) instead of a new array.

    Returns
    -------
    ndarray of shape (size, size), float32
    """
    new_h, new_w = _grid_shape(image.shape, pixel_spacing, target_spacing, size)
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    resized = _pil_array(pil.resize((new_w, new_h), Image.NEAREST if nearest else Image.BILINEAR), np.float32)
    return _crop_pad(resized, size, fill, out)
