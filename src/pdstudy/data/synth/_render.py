"""Rendering the synthetic cohort: each patient's anatomy (label volume and tumour texture) and its HU
volume per contrast phase, as stored integers.

See docs/synthetic_cohort.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from pdstudy.data.synth._plan import SLICE_MM, _kvp_factor, slice_units, z_positions

# Anatomy labels; each phase maps them to HU through _HU.
AIR, FAT, MUSCLE, VISCERAL, BOWEL, KIDNEY, LIVER, SPLEEN, WALL, WATER, AORTA, IVC, PORTAL, BONE, CORTEX, TUMOUR = (
    range(16)
)
_PHASES: Final = ("non_contrast", "arterial", "portal_venous")
# HU per label: non-contrast, arterial, portal venous (typical literature values, rounded).
_HU: Final = np.array([
    [-1000, -1000, -1000],  # air
    [-100, -100, -100],  # subcutaneous fat
    [45, 55, 60],  # muscle
    [-90, -90, -90],  # visceral fat
    [25, 60, 70],  # bowel
    [30, 180, 170],  # kidney
    [58, 75, 110],  # liver
    [48, 110, 120],  # spleen
    [40, 120, 115],  # stomach wall (enhancing mucosa)
    [5, 5, 5],  # water distending the stomach (negative oral contrast, "hydro-CT")
    [42, 280, 160],  # aorta
    [40, 80, 150],  # IVC
    [42, 110, 180],  # portal vein
    [220, 220, 220],  # cancellous bone
    [650, 650, 650],  # cortical bone
    [38, 38, 38],  # tumour (replaced by the tumour model)
], dtype=np.float32)
_TUMOUR_NC_HU: Final = 38.0
_TEXTURE_MM: Final = 7.0  # Gaussian SD of the tumour texture in-plane; survives 6 mm pixels
# The stomach is distended with water (600-1000 mL, as in gastric CT protocols) and large enough to hold the
# biggest masses in-plane and along z, so that what lies around a mass does not change with its size.
_STOMACH_MM: Final = (65.0, 50.0)  # semi-axes of the water-distended stomach at its widest, whatever the body size
_STOMACH_Z: Final = (-0.5, 1.5)  # its first and last slice, as fractions of the liver range (clipped to the volume)
_TUMOUR_Z: Final = (0.08, 0.8)  # the mass's centre lies in the middle 60 % of this part of the liver range
_STOMACH_OFFSET_MM: Final = (20.0, -25.0)  # stomach centre from the body centre (x = patient left, y = posterior)
# Only the mass itself may depend on the response (through its radius, enhancement and texture): where it sits
# and the anatomy around it are drawn from nuisance variables alone (docs/synthetic_cohort.md, "What depends on
# the response").
_TUMOUR_DEPTH_MM: Final = 12.0  # tumour centre inside the stomach's outer contour, along the stomach's semi-axes
_CLEAR_RADIUS_MM: Final = 66.0  # the bowel-free zone fits a mass this large (~97.5th centile of poor responders)
_CLEAR_MARGIN_MM: Final = 12.0  # ... with this much fat beyond it


@dataclass
class _Anatomy:
    """One patient's anatomy: a label volume and the tumour texture (unit SD inside the tumour)."""

    labels: np.ndarray  # uint8 (n_slices, size, size): the site's slices
    texture: np.ndarray  # float32, same shape, 0 outside the tumour
    z: np.ndarray  # slice z positions, index 0 cranial


def _ellipse(x: np.ndarray, y: np.ndarray, cx: Any, cy: Any, a: Any, b: Any) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _anatomy(p: pd.Series, slices: int, size: int, rng: np.random.Generator) -> _Anatomy:
    """Build the label volume of one patient (geometry in mm; x = patient left, y = posterior).

    The anatomy is laid out on the reference grid of ``slices`` slices 5 mm apart (``k`` below counts its slices)
    and sampled at the patient's site: its slices (``slice_units``: positions on that grid) and pixel spacing.
    Site A's slices and pixels are the reference grid's.
    """
    sp = float(p["pixel_spacing_mm"])
    sp0 = float(p["base_spacing_mm"])  # the generator's draw (site A's spacing); the bowel field is laid out on it
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * sp
    x, y = coords[None, None, :], coords[None, :, None]
    units = slice_units(p, slices)
    n = len(units)
    k = units.astype(np.float32)[:, None, None]
    z = z_positions(p, slices)

    a0, b0 = float(p["body_a_mm"]), float(p["body_b_mm"])
    scale = 1 + float(p["body_taper"]) * (k / max(slices - 1, 1) - 0.5)
    a, b = a0 * scale, b0 * scale
    cx, cy = float(p["body_cx_mm"]), float(p["body_cy_mm"])
    fat, muscle = float(p["fat_mm"]), float(p["muscle_mm"])

    shape = (n, size, size)
    body = _ellipse(x, y, cx, cy, a, b)
    wall = _ellipse(x, y, cx, cy, a - fat, b - fat)
    inner = _ellipse(x, y, cx, cy, a - fat - muscle, b - fat - muscle)
    labels = np.where(body, FAT, AIR).astype(np.uint8)
    labels[wall] = MUSCLE
    labels[inner] = VISCERAL

    # Organ profiles along z relative to the liver (t = 0 at its first slice, 1 at its last).
    first, last = int(p["liver_first"]), int(p["liver_last"])
    t = (k - first) / max(last - first, 1)
    in_liver = (k >= first - 1e-4) & (k <= last + 1e-4)

    # Stomach geometry (drawn below): a water-distended stomach over most of the volume, widest at the middle
    # of the liver range. The tumour: an ellipsoidal mass centred in the stomach wall, partly in the lumen and
    # partly in the perigastric fat, on a slice in the middle 60 % of a band of the liver range (_TUMOUR_Z).
    # Its centre depends on nuisance variables only, never on its radius.
    length = last - first
    s_first = first + math.floor(_STOMACH_Z[0] * length)
    s_last = first + math.ceil(_STOMACH_Z[1] * length)
    in_stomach = (k >= s_first - 1e-4) & (k <= s_last + 1e-4)

    def stomach_g(kk: Any) -> Any:
        """The stomach's in-plane scale on slice ``kk``: 1 at its middle slice, 0.6 at its ends."""
        return 0.6 + 0.4 * np.sin(np.pi * np.clip((kk - s_first) / max(s_last - s_first, 1), 0, 1))

    scx, scy = cx + _STOMACH_OFFSET_MM[0], cy + _STOMACH_OFFSET_MM[1]
    sa, sb = _STOMACH_MM[0] * stomach_g(k), _STOMACH_MM[1] * stomach_g(k)  # not scaled with the body
    r = float(p["tumour_radius_mm"])  # the mass's size; used for the mass (below) and nothing else
    t_first = first + math.ceil(_TUMOUR_Z[0] * length)
    t_span = first + math.floor(_TUMOUR_Z[1] * length) - t_first
    kt = t_first + int(round(float(p["tumour_z_pos"]) * 0.6 * t_span + 0.2 * t_span))
    g_t = float(stomach_g(kt))
    theta = float(p["tumour_angle"])
    aspect, z_aspect = float(p["tumour_aspect"]), float(p["tumour_z_aspect"])
    tx = scx + (_STOMACH_MM[0] * g_t - _TUMOUR_DEPTH_MM) * math.cos(theta)
    ty = scy + (_STOMACH_MM[1] * g_t - _TUMOUR_DEPTH_MM) * math.sin(theta)
    dz = (k - kt) * SLICE_MM

    def around_tumour(radius: float, margin: float) -> np.ndarray:
        """The tumour-shaped ellipsoid of ``radius`` around the tumour centre, grown by ``margin`` mm."""
        semi_y, semi_z = radius * aspect + margin, radius * z_aspect + margin
        return ((x - tx) / (radius + margin)) ** 2 + ((y - ty) / semi_y) ** 2 + (dz / semi_z) ** 2 <= 1.0

    # Bowel loops: sparse ribbons around the zero level of a smooth random field (~3 cm cells), kept out of
    # a perigastric fat plane so that the stomach and its mass have a clean border. The plane around the
    # tumour is sized for a large mass, whatever this one's radius: a mass's radius never moves the bowel.
    n_low = max(int(size * sp0 / 30.0), 4)
    low = gaussian_filter(rng.standard_normal((slices, n_low, n_low)).astype(np.float32), (1.5, 1.0, 1.0))
    up = _linear_upsampler(n_low, size)
    field = np.abs(up @ low @ up.T)
    threshold = np.quantile(field, 0.06)
    if n != slices or sp != sp0 or not np.array_equal(units, np.arange(slices)):
        # Another site: the same field (and threshold) in mm, sampled at the site's slices and pixels.
        up = _linear_sampler(n_low, (coords / sp0 + (size - 1) / 2) * (n_low - 1) / (size - 1))
        low = np.tensordot(_linear_sampler(slices, units), low, axes=1).astype(np.float32)
        field = np.abs(up @ low @ up.T)
    clear = around_tumour(_CLEAR_RADIUS_MM, _CLEAR_MARGIN_MM)  # the same for every tumour radius
    perigastric = (in_stomach & _ellipse(x, y, scx, scy, sa + 15.0, sb + 15.0)) | clear
    labels[inner & ~perigastric & (field < threshold)] = BOWEL

    def organ(label: int, mask: np.ndarray) -> None:
        labels[mask & inner] = label

    kidney_g = np.clip(np.sin(np.pi * np.clip((t - 0.45) / 0.9, 0, 1)), 0, None)
    for side in (-1, 1):
        organ(KIDNEY, (kidney_g > 0.05) & _ellipse(x, y, cx + side * 0.42 * a0, cy + 0.42 * b0,
                                                    0.16 * a0 * kidney_g + 1e-3, 0.2 * b0 * kidney_g + 1e-3))
    liver_g = 0.3 + 0.7 * np.sin(np.pi * (0.12 + 0.8 * np.clip(t, 0, 1)))
    organ(LIVER, in_liver & _ellipse(x, y, cx - 0.42 * a0, cy - 0.02 * b0, 0.4 * a0 * liver_g, 0.58 * b0 * liver_g))
    spleen_g = np.where(t <= 0.6, 0.5 + 0.5 * np.sin(np.pi * np.clip(t / 0.6, 0, 1)), 0.0)
    organ(SPLEEN, in_liver & (spleen_g > 0) & _ellipse(x, y, cx + 0.5 * a0, cy + 0.22 * b0,
                                                         0.17 * a0 * spleen_g + 1e-3, 0.3 * b0 * spleen_g + 1e-3))

    # Stomach distended with water (negative oral contrast): an enhancing 5 mm wall around a water-filled lumen.
    outer_s = in_stomach & _ellipse(x, y, scx, scy, sa, sb)
    lumen = in_stomach & _ellipse(x, y, scx, scy, sa - 5.0, sb - 5.0)
    organ(WALL, outer_s)
    organ(WATER, lumen)

    # Vessels and spine.
    organ(PORTAL, in_liver & (t >= 0.3) & (t <= 0.6) & _ellipse(x, y, cx - 0.18 * a0, cy + 0.05 * b0, 7.0, 7.0))
    organ(IVC, _ellipse(x, y, cx - 0.12 * a0, cy + 0.3 * b0, 10.0, 10.0))
    organ(AORTA, _ellipse(x, y, cx + 0.05 * a0, cy + 0.33 * b0, 11.0, 11.0))
    for side in (-1, 1):
        para = _ellipse(x, y, cx + side * 0.2 * a0, cy + 0.72 * b0, 0.15 * a0, 0.18 * b0)
        labels[np.broadcast_to(para, shape) & wall] = MUSCLE
    vx, vy = cx, cy + 0.62 * b0
    labels[np.broadcast_to(_ellipse(x, y, vx, vy, 17.0, 17.0), shape)] = CORTEX
    labels[np.broadcast_to(_ellipse(x, y, vx, vy, 14.0, 14.0), shape)] = BONE

    # The mass replaces wall, lumen, fat, bowel and (invading) liver or spleen, never vessels, kidneys,
    # muscle or bone.
    tumour = around_tumour(r, 0.0) & inner & ~np.isin(labels, (AORTA, IVC, PORTAL, KIDNEY, MUSCLE, CORTEX, BONE))
    labels[tumour] = TUMOUR
    return _Anatomy(labels=labels, texture=_texture(tumour, sp, SLICE_MM / float(p["slice_mm"]), rng), z=z)


def _linear_upsampler(n: int, size: int) -> np.ndarray:
    """Matrix (size, n) of linear interpolation from ``n`` to ``size`` evenly spread samples."""
    pos = np.linspace(0, n - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((size, n), dtype=np.float32)
    w[np.arange(size), lo] = 1 - frac
    w[np.arange(size), lo + 1] = frac
    return w


def _linear_sampler(n: int, pos: np.ndarray) -> np.ndarray:
    """Matrix (len(pos), n) of linear interpolation of ``n`` samples at positions ``pos`` (clipped to the ends)."""
    pos = np.clip(np.asarray(pos, dtype=np.float64), 0, n - 1)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((len(pos), n), dtype=np.float32)
    w[np.arange(len(pos)), lo] = 1 - frac
    w[np.arange(len(pos)), lo + 1] = frac
    return w


def _texture(tumour: np.ndarray, spacing: float, z_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random texture (blobs of ~1 cm), zero mean and unit SD over the tumour voxels, 0 elsewhere.

    ``z_sigma``: the Gaussian's SD along z in slices (1 at 5 mm, so the blobs keep their size in mm).
    """
    out = np.zeros(tumour.shape, dtype=np.float32)
    idx = np.nonzero(tumour)
    if len(idx[0]) < 2:
        return out
    box = tuple(slice(max(int(i.min()) - 2, 0), min(int(i.max()) + 3, n)) for i, n in zip(idx, tumour.shape))
    inside = tumour[box]
    sigma = (z_sigma, _TEXTURE_MM / spacing, _TEXTURE_MM / spacing)
    smooth = gaussian_filter(rng.standard_normal(inside.shape, dtype=np.float32), sigma)
    vals = smooth[inside]
    out[box][inside] = (vals - vals.mean()) / max(float(vals.std()), 1e-6)
    return out


def _render(anat: _Anatomy, p: pd.Series, phase: str, rng: np.random.Generator) -> np.ndarray:
    """HU volume of one contrast phase as the patient's site reports it: per-label values, tumour model, the
    site's kVp contrast and in-plane kernel, noise, HU calibration offset."""
    j = _PHASES.index(phase)
    nc = _HU[:, 0]
    gain = _kvp_factor(p["kvp"])  # the iodine enhancement over the non-contrast value scales with the kVp
    factor = float(p["contrast_factor"]) if gain == 1.0 else float(p["contrast_factor"]) * gain
    lut = nc + factor * (_HU[:, j] - nc)
    hu = lut[anat.labels]
    enh = float(p["tumour_enhancement_hu"])
    het = float(p["tumour_heterogeneity_hu"])
    tumour_hu, het_scale = {
        "portal_venous": (enh, 1.0),
        "arterial": (_TUMOUR_NC_HU + 0.7 * (enh - _TUMOUR_NC_HU), 0.8),
        "non_contrast": (_TUMOUR_NC_HU, 0.3),
    }[phase]
    if gain != 1.0:
        tumour_hu = _TUMOUR_NC_HU + gain * (tumour_hu - _TUMOUR_NC_HU)
    tumour = anat.labels == TUMOUR
    hu[tumour] = tumour_hu + het * het_scale * anat.texture[tumour]
    # [w0, w1, w0] in-plane kernel (site A: [1, 2, 1] / 4): partial-volume edges at a fraction of a Gaussian
    # filter's cost; w1 = 1 is no blur.
    w1 = float(p["blur"])
    if w1 != 1.0:
        w0 = (1.0 - w1) / 2
        hu[:, 1:-1, :] = w0 * hu[:, :-2, :] + w1 * hu[:, 1:-1, :] + w0 * hu[:, 2:, :]
        hu[:, :, 1:-1] = w0 * hu[:, :, :-2] + w1 * hu[:, :, 1:-1] + w0 * hu[:, :, 2:]
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(p["noise_sd_hu"])
    offset = float(p["hu_offset"])
    if offset:
        hu += np.float32(offset)
    return hu


def _stored(hu: np.ndarray, p: pd.Series) -> np.ndarray:
    """HU to the stored integers of the patient's pixel format (slope 1, intercept -1024 or -1000)."""
    bits = int(p["bits_stored"])
    values = np.rint(hu) - float(p["rescale_intercept"])
    if int(p["pixel_representation"]):
        return np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype("<i2")
    return np.clip(values, 0, (1 << bits) - 1).astype("<u2")
