"""Planning the synthetic cohort: group sizes, responses, clinical covariates, latent tumour features,
nuisance variables, series headers and the manifest, all without pixels.

See docs/synthetic_cohort.md.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pdstudy.core.vocab import SITE_COLUMN, is_site_code
from pdstudy.data.manifest import COLUMN_NAMES

GENERATOR_VERSION: Final = "3.0"

#: ``oracle_auc(2000, seed=0)`` for this generator version (a test checks it).
ORACLE_AUC: Final = 0.8889

METASTASIS: Final = "metastasis_outside_abdominal_cavity"
NO_PVP_REASON: Final = "no_portal_venous_phase_ct"  # documented in series.csv / synth.json, not in the manifest

#: The paper's cohort (Table 1 and the flow chart); other sizes scale these ratios.
_PAPER_COUNTS: Final = {
    "screened": 164, "metastasis": 19, "no_pvp": 5,
    "eligible": 140, "test": 28, "train": 112, "train_poor": 39, "test_poor": 14,
}

#: Latent tumour features that carry the response signal (columns of :func:`sample_latent`).
TUMOUR_FEATURES: Final = ("tumour_radius_mm", "tumour_enhancement_hu", "tumour_heterogeneity_hu")

#: Nuisance variables, all independent of the response (columns of :func:`sample_latent`).
NUISANCE_COLUMNS: Final = (
    "body_a_mm", "body_b_mm", "fat_mm", "pixel_spacing_mm", "z_top_mm", "z_descending", "liver_slices",
    "pixel_representation", "bits_stored", "rescale_intercept", "kvp", "noise_sd_hu", "contrast_factor",
    "phase_style", "has_non_contrast", "pvp_series_number", "pvp_numbered_first", "arterial_delay_s", "pvp_delay_s",
    "time_style",
)

# Response model in the transformed space (log radius, HU, log heterogeneity): good-responder mean,
# common SD, and the poor-minus-good shift in SD units. Most of the signal is in what survives the
# quick profile's 6 mm pixels (size and enhancement). Oracle AUC = Phi(|shift| / sqrt(2)) with
# |shift| the Euclidean norm of the three shifts: Phi(sqrt(1.4^2 + 0.75^2 + 0.65^2) / sqrt(2)) = 0.889.
_TUMOUR_MODEL: Final = {
    "tumour_radius_mm": (math.log(24.0), 0.3, +1.4),
    "tumour_enhancement_hu": (90.0, 24.0, -0.75),
    "tumour_heterogeneity_hu": (math.log(14.0), 0.4, +0.65),
}
_LOG_FEATURES: Final = ("tumour_radius_mm", "tumour_heterogeneity_hu")

# Table 1 of the paper as counts per (split, response), with the three corrections of
# docs/synthetic_cohort.md: test/good sex 3 F + 11 M (printed 3 + 12), test/poor sex 1 F + 13 M (printed "1 (92.9%)"),
# CA19-9 normal = <= 35.0 U/ml (printed <= 5.0).
_TABLE1: Final[dict[tuple[str, str], dict[str, dict[str, int]]]] = {
    ("train", "good"): {
        "sex": {"F": 16, "M": 57},
        "lauren": {"intestinal": 11, "diffuse_mixed": 32, "undifferentiated": 30},
        "cea": {"normal": 43, "elevated": 30},
        "ca199": {"normal": 47, "elevated": 26},
        "ct_stage": {"T3": 19, "T4a": 41, "T4b": 13},
        "cn_stage": {"N0-1": 4, "N2-3": 69},
        "cm_stage": {"M0": 56, "M1": 17},
    },
    ("train", "poor"): {
        "sex": {"F": 6, "M": 33},
        "lauren": {"intestinal": 9, "diffuse_mixed": 27, "undifferentiated": 3},
        "cea": {"normal": 26, "elevated": 13},
        "ca199": {"normal": 22, "elevated": 17},
        "ct_stage": {"T3": 10, "T4a": 25, "T4b": 4},
        "cn_stage": {"N0-1": 3, "N2-3": 36},
        "cm_stage": {"M0": 34, "M1": 5},
    },
    ("test", "good"): {
        "sex": {"F": 3, "M": 11},  # printed 3 F + 12 M = 15 for n = 14
        "lauren": {"intestinal": 4, "diffuse_mixed": 3, "undifferentiated": 7},
        "cea": {"normal": 9, "elevated": 5},
        "ca199": {"normal": 9, "elevated": 5},
        "ct_stage": {"T3": 4, "T4a": 6, "T4b": 4},
        "cn_stage": {"N0-1": 2, "N2-3": 12},
        "cm_stage": {"M0": 12, "M1": 2},
    },
    ("test", "poor"): {
        "sex": {"F": 1, "M": 13},  # printed male "1 (92.9%)"
        "lauren": {"intestinal": 6, "diffuse_mixed": 6, "undifferentiated": 2},
        "cea": {"normal": 7, "elevated": 7},
        "ca199": {"normal": 7, "elevated": 7},
        "ct_stage": {"T3": 4, "T4a": 8, "T4b": 2},
        "cn_stage": {"N0-1": 3, "N2-3": 11},
        "cm_stage": {"M0": 11, "M1": 3},
    },
}
#: Age mean, min, max per (split, response) group; ``("", *)`` is used for excluded patients.
_AGES: Final = {
    ("train", "good"): (66.1, 41, 81), ("train", "poor"): (64.5, 39, 79),
    ("test", "good"): (64.3, 46, 81), ("test", "poor"): (68.4, 51, 81),
    ("", "good"): (66.0, 39, 81), ("", "poor"): (66.0, 39, 81),
}
#: P(CR | good) and P(PD | poor): CR is rare after conversion therapy.
_P_CR: Final = 0.12
_P_PD: Final = 0.3

#: SeriesDescription / ProtocolName per phase-tag style. Contrast agents are in :data:`CONTRAST_AGENTS`.
PHASE_DESCRIPTIONS: Final = {
    "explicit": {
        "arterial": ("ARTERIAL", "Abd Art 35s", "Arterial 5.0 B31f", "Late arterial 1.0"),
        "portal_venous": ("Abd PVP 70s", "Portal venous", "PORTAL VENOUS 5.0 B31f", "Abdomen PV 5mm"),
        "non_contrast": ("Non contrast", "Abdomen native", "PLAIN 5.0 B31f"),
        "protocol": ("Abdomen Routine", "ABDOMEN_MULTIPHASE", "Abdomen^Routine"),
    },
    "protocol": {  # SeriesDescription generic, the phase in ProtocolName
        "description": ("Abdomen 5.0 B31f", "ABD 5mm", "Body 5.0 I30f 3"),
        "arterial": ("ABD ARTERIAL", "Abdomen Arterial"),
        "portal_venous": ("ABD PORTAL", "Abdomen Portal Venous"),
        "non_contrast": ("ABD NATIVE", "Abdomen Non Contrast"),
    },
    "generic": {  # one description for every series; only contrast tags and timing tell
        "description": ("Abdomen 5.0 B31f", "ABD 5mm", "Body 5.0 I30f 3"),
        "protocol": ("Abdomen Routine", "ABDOMEN_MULTIPHASE", "Abdomen^Routine"),
    },
}
PHASE_STYLES: Final = ("explicit", "protocol", "generic")
CONTRAST_AGENTS: Final = ("Omnipaque 350", "Ultravist 370", "IOHEXOL", "Iopromide 300")
_ARTERIAL_DELAY: Final = (25.0, 40.0)
_PVP_DELAY: Final = (60.0, 80.0)

SLICE_MM: Final = 5.0
_FOV_SPACING_128: Final = (2.6, 3.3)  # pixel spacing (mm) at 128 px; scaled by 128 / size
_STUDY_DATES: Final = (_dt.date(2017, 9, 1), _dt.date(2022, 11, 30))


def _rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """An independent random stream per purpose, so nuisance draws never depend on the response."""
    key = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, key, *extra])


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


# ----------------------------------------------------------------- sites and scanners

#: Reference tube voltage: site A acquires at 120 kVp, where the iodine enhancement is the generator's.
_REFERENCE_KVP: Final = 120
#: Iodine enhancement scales by (120 / kVp) ** gamma; gamma makes 100 kVp about +25 % (an assumption, see
#: docs/synthetic_cohort.md, "Sites and scanners").
_KVP_GAMMA: Final = math.log(1.25) / math.log(120 / 100)


@dataclass(frozen=True)
class Site:
    """One site of the synthetic cohort: its scanner, how it acquires, and its case mix.

    The images are synthetic: the vendor strings only shape the DICOM headers. The defaults are site A,
    the acquisition of the single-site generator (docs/synthetic_cohort.md, "Sites and scanners").

    Parameters
    ----------
    code : str
        Pseudonymous site code, 1-32 letters, digits, ``-`` or ``_`` (the manifest's ``site``).
    share : float
        The site's share of the patients (> 0; the shares of a cohort's sites are normalised).
    poor_weight : float
        Odds-like weight of poor responders at this site (> 0; 1 = the cohort's poor share).
    manufacturer, model, kernel : str
        Manufacturer, ManufacturerModelName and ConvolutionKernel as the site's scanner writes them.
    kvp : int
        Tube voltage (KVP); the iodine enhancement scales by ``(120 / kvp) ** gamma`` (100 kVp: +25 %).
    slice_mm : float
        Slice thickness and spacing in mm, in (0, 10]; the same anatomy in mm, so ``5 / slice_mm`` times
        as many slices as at 5 mm.
    spacing_scale : float
        Pixel spacing (and field of view) relative to the generator's per-patient draw.
    noise_scale : float
        Image noise SD relative to the generator's per-patient draw (>= 0).
    blur : float
        Centre weight ``w1`` of the in-plane ``[w0, w1, w0]`` filter (``w0 = (1 - w1) / 2``), in (0, 2]:
        0.5 is the generator's [1, 2, 1] / 4, 1 no blur (a sharper kernel), 1/3 a box (a smoother one);
        above 1 the side taps turn negative (edge enhancement).
    hu_offset : float
        HU calibration offset added to every voxel before storage (air reads -1000 + offset).
    """

    code: str
    share: float
    poor_weight: float = 1.0
    manufacturer: str = "SIEMENS"
    model: str = "SOMATOM Definition AS+"
    kernel: str = "B31f"
    kvp: int = _REFERENCE_KVP
    slice_mm: float = 5.0
    spacing_scale: float = 1.0
    noise_scale: float = 1.0
    blur: float = 0.5
    hu_offset: float = 0.0

    def __post_init__(self) -> None:
        name = f"Site {self.code!r}"
        if not is_site_code(self.code):
            raise ValueError(f"Site.code must be 1-32 letters, digits, '-' or '_', got {self.code!r}")
        limits = {  # field: (low, high, low inclusive)
            "share": (0.0, math.inf, False), "poor_weight": (0.0, math.inf, False), "kvp": (50, 200, True),
            "slice_mm": (0.0, 10.0, False), "spacing_scale": (0.0, 10.0, False), "noise_scale": (0.0, 10.0, True),
            "blur": (0.0, 2.0, False), "hu_offset": (-200.0, 200.0, True),
        }
        for field, (lo, hi, closed) in limits.items():
            value = getattr(self, field)
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            ok = ok and math.isfinite(float(value)) and (lo <= value if closed else lo < value) and value <= hi
            if not ok:
                interval = f"{'[' if closed else '('}{lo:g}, {hi:g}]"
                raise ValueError(f"{name}: {field} must be a finite number in {interval}, got {value!r}")
        if float(self.kvp) != int(self.kvp):
            raise ValueError(f"{name}: kvp must be a whole number of kV, got {self.kvp!r}")
        for field, most in (("manufacturer", 64), ("model", 64), ("kernel", 16)):  # DICOM LO, LO, SH
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip() or len(value) > most or "\\" in value:
                raise ValueError(f"{name}: {field} must be a non-empty string of at most {most} characters "
                                 f"without a backslash, got {value!r}")

    @property
    def institution(self) -> str:
        """InstitutionName written in the headers (never a real hospital)."""
        return f"Synthetic Site {self.code}"

    @property
    def contrast_factor(self) -> float:
        """Factor on the iodine enhancement at this site's kVp: ``(120 / kvp) ** gamma``, 1 at 120 kVp."""
        return _kvp_factor(self.kvp)


def _kvp_factor(kvp: float) -> float:
    return 1.0 if int(kvp) == _REFERENCE_KVP else float((_REFERENCE_KVP / float(kvp)) ** _KVP_GAMMA)


#: Patient shares of the default sites, by number of sites.
_SITE_SHARES: Final = {1: (1.0,), 2: (0.6, 0.4), 3: (0.5, 0.3, 0.2), 4: (0.4, 0.25, 0.2, 0.15)}
#: Sites B-D at ``shift = 1`` (numbers interpolate linearly from site A's; strings are the site's scanner).
#: Every number is an assumption of plausible between-site differences (docs/synthetic_cohort.md).
_SITE_TARGETS: Final = {
    "B": {"manufacturer": "GE MEDICAL SYSTEMS", "model": "Revolution CT", "kernel": "DETAIL", "kvp": 100,
          "slice_mm": 3.0, "spacing_scale": 0.85, "noise_scale": 1.4, "blur": 1.0, "hu_offset": 8.0},
    "C": {"manufacturer": "Philips", "model": "iCT 256", "kernel": "A", "kvp": 120,
          "slice_mm": 5.0, "spacing_scale": 1.1, "noise_scale": 0.8, "blur": 1 / 3, "hu_offset": -6.0},
    "D": {"manufacturer": "TOSHIBA", "model": "Aquilion ONE", "kernel": "FC08", "kvp": 140,
          "slice_mm": 4.0, "spacing_scale": 0.95, "noise_scale": 0.9, "blur": 0.6, "hu_offset": 3.0},
}
_SITE_SHIFT_MAX: Final = 2.0


def _check_number(value: Any, name: str, lo: float, hi: float, *, lo_open: bool, what: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must be a number in {interval} ({what}), got {value!r}")
    return float(value)


def _check_site_count(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 1 <= int(value) <= len(_SITE_SHARES):
        raise ValueError(f"{name} must be a whole number of default sites from 1 to {len(_SITE_SHARES)} "
                         f"(pass a sequence of Site for other sites), got {value!r}")
    return int(value)


def default_sites(n: int = 2, shift: float = 1.0, poor: float = 1.0) -> tuple[Site, ...]:
    """The synthetic cohort's default sites A, B, ... (docs/synthetic_cohort.md, "Sites and scanners").

    Site A acquires as the single-site generator (5 mm slices, the [1, 2, 1] / 4 blur, the per-patient noise and
    pixel spacing draws) at 120 kVp. Sites B, C, D move away from A by ``shift`` times their differences at
    shift 1 (B: sharper kernel, 3 mm slices, 100 kVp, pixel spacing x 0.85, noise x 1.4, HU offset +8; C: smoother
    kernel, 5 mm, 120 kVp, x 1.1, x 0.8, -6; D: 4 mm, 140 kVp, x 0.95, x 0.9, +3, slightly sharper), every number
    linearly (kVp rounded to a whole number).

    Parameters
    ----------
    n : int
        Number of sites, 1-4. Shares: 1; 0.6 / 0.4; 0.5 / 0.3 / 0.2; 0.4 / 0.25 / 0.2 / 0.15.
    shift : float
        How far sites B-D acquire from site A, in [0, 2]: 0 = every site acquires exactly like A, 1 = the
        differences above, 2 = twice them.
    poor : float
        Poor-response weight of every site after A (> 0): the odds-like factor on their share of poor responders
        within each split (1 = the same poor share at every site).

    Returns
    -------
    tuple of Site
        Sites ``A``, ``B``, ... in order.

    Raises
    ------
    ValueError
        Naming ``n``, ``shift`` or ``poor`` and what was expected.
    """
    n = _check_site_count(n, "n")
    shift = _check_number(shift, "shift", 0.0, _SITE_SHIFT_MAX, lo_open=False,
                          what="0: every site acquires like site A; 1: the default differences")
    poor = _check_number(poor, "poor", 0.0, math.inf, lo_open=True,
                         what="odds-like weight of poor responders at the sites after A; 1: the same share")
    a = Site("A", _SITE_SHARES[n][0])
    out = [a]
    for code, share in zip("BCD", _SITE_SHARES[n][1:]):
        target = _SITE_TARGETS[code]
        numbers = {k: (1.0 - shift) * float(getattr(a, k)) + shift * float(v)
                   for k, v in target.items() if not isinstance(v, str)}
        numbers["kvp"] = _round_half_up(numbers["kvp"])
        strings = {k: v for k, v in target.items() if isinstance(v, str)}
        out.append(Site(code, share, poor, **strings, **numbers))
    return tuple(out)


def check_site_options(sites: Any = 2, site_shift: Any = 1.0, site_poor: Any = 1.0) -> tuple[Site, ...]:
    """Check the synthetic cohort's ``sites``, ``site_shift`` and ``site_poor`` and return its sites.

    Parameters
    ----------
    sites : int or sequence of Site
        A number of default sites (1-4, :func:`default_sites`) or the sites themselves (codes unique).
    site_shift : float
        How far the default sites B-D acquire from site A, in [0, 2]; must stay 1 with explicit sites.
    site_poor : float
        Poor-response weight of the default sites after A (> 0); must stay 1 with explicit sites.

    Returns
    -------
    tuple of Site
        The cohort's sites in order.

    Raises
    ------
    ValueError
        Naming the parameter and what was expected.
    """
    if isinstance(sites, Sequence) and not isinstance(sites, str):
        if not sites or not all(isinstance(s, Site) for s in sites):
            raise ValueError(f"sites must be a number of default sites or a non-empty sequence of Site, got {sites!r}")
        codes = [s.code for s in sites]
        if len(set(codes)) != len(codes):
            raise ValueError(f"sites: site codes must be unique, got {codes}")
        for name, value in (("site_shift", site_shift), ("site_poor", site_poor)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != 1.0:
                raise ValueError(f"{name} applies to the default sites only; with sites given as Site objects it "
                                 f"must stay 1, got {value!r}")
        return tuple(sites)
    n = _check_site_count(sites, "sites")
    shift = _check_number(site_shift, "site_shift", 0.0, _SITE_SHIFT_MAX, lo_open=False,
                          what="0: every site acquires like site A; 1: the default differences")
    poor = _check_number(site_poor, "site_poor", 0.0, math.inf, lo_open=True,
                         what="odds-like weight of poor responders at the sites after A; 1: the same share")
    return default_sites(n, shift, poor)


def _site_parameters(sites: Any = 2, site_shift: Any = 1.0, site_poor: Any = 1.0) -> dict[str, Any]:
    """``synth.json``'s site parameters: the count (or every Site's fields), the shift and the poor weight."""
    resolved = check_site_options(sites, site_shift, site_poor)
    if isinstance(sites, Sequence) and not isinstance(sites, str):
        return {"sites": [_site_fields(s) for s in resolved], "site_shift": 1.0, "site_poor": 1.0}
    return {"sites": int(sites), "site_shift": float(site_shift), "site_poor": float(site_poor)}


def _site_fields(site: Site) -> dict[str, Any]:
    out = asdict(site)
    out["kvp"] = int(site.kvp)
    for k in ("share", "poor_weight", "slice_mm", "spacing_scale", "noise_scale", "blur", "hu_offset"):
        out[k] = float(out[k])
    return out


def site_slices(site: Site, slices: int) -> int:
    """Slices of ``site``'s series covering the z range of ``slices`` slices at 5 mm."""
    return max(_round_half_up(slices * SLICE_MM / float(site.slice_mm)), 2)


def cohort_counts(patients: int) -> dict[str, int]:
    """Group sizes of a cohort of ``patients`` screened patients.

    Every count of the paper's cohort (164 screened; 19 metastasis, 5 without a portal-venous
    series; 112 train with 39 poor; 28 test with 14 poor) is scaled by ``patients / 164`` (test
    and poor counts by their ratio within the eligible patients and split) and rounded half up.
    A split with two or more patients keeps at least one patient per response group.

    Parameters
    ----------
    patients : int
        Number of screened patients (>= 4).

    Returns
    -------
    dict
        Keys ``metastasis``, ``no_pvp``, ``eligible``, ``train``, ``train_good``, ``train_poor``,
        ``test``, ``test_good``, ``test_poor``.
    """
    if patients < 4:
        raise ValueError(f"patients must be >= 4, got {patients}")
    p = _PAPER_COUNTS
    metastasis = _round_half_up(patients * p["metastasis"] / p["screened"])
    no_pvp = _round_half_up(patients * p["no_pvp"] / p["screened"])
    eligible = patients - metastasis - no_pvp
    test = min(max(_round_half_up(eligible * p["test"] / p["eligible"]), 2), eligible - 2)
    train = eligible - test
    train_poor = min(max(_round_half_up(train * p["train_poor"] / p["train"]), 1), train - 1)
    test_poor = min(max(_round_half_up(test * p["test_poor"] / p["test"]), 1), test - 1)
    return {
        "metastasis": metastasis, "no_pvp": no_pvp, "eligible": eligible,
        "train": train, "train_good": train - train_poor, "train_poor": train_poor,
        "test": test, "test_good": test - test_poor, "test_poor": test_poor,
    }


def _apportion(counts: dict[str, int] | dict[str, float], n: int) -> list[str]:
    """Codes for ``n`` patients in the proportions of ``counts`` (largest remainder; exact at the printed n)."""
    total = sum(counts.values())
    quota = {k: n * v / total for k, v in counts.items()}
    alloc = {k: int(math.floor(q)) for k, q in quota.items()}
    rest = sorted(counts, key=lambda k: (-(quota[k] - alloc[k]), list(counts).index(k)))
    for k in rest[: n - sum(alloc.values())]:
        alloc[k] += 1
    return [k for k in counts for _ in range(alloc[k])]


def _ages(n: int, mean: float, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """Integer ages in [lo, hi] with the given mean (to 0.5 / n), lo and hi each taken at least once (n >= 3)."""
    x = rng.normal(mean, 9.0, n)
    for _ in range(20):
        x = np.clip(x + (mean - x.mean()), lo, hi)
    ages = np.rint(x).astype(int)
    free = np.arange(n)
    if n >= 3:
        i_lo, i_hi = int(np.argmin(ages)), int(np.argmax(ages))
        ages[i_lo], ages[i_hi] = lo, hi
        free = np.setdiff1d(free, [i_lo, i_hi])
    # Nudge the others one year at a time until the sum matches the printed mean.
    diff = int(round(mean * n)) - int(ages.sum())
    while diff:
        step = 1 if diff > 0 else -1
        movable = free[(ages[free] + step >= lo) & (ages[free] + step <= hi)]
        if not len(movable):
            break
        pick = rng.choice(movable, min(abs(diff), len(movable)), replace=False)
        ages[pick] += step
        diff -= step * len(pick)
    return ages


def _pooled(response: str) -> dict[str, dict[str, int]]:
    """Table 1 margins pooled over train and test, for screened patients outside the splits."""
    out: dict[str, dict[str, int]] = {}
    for split in ("train", "test"):
        for cov, counts in _TABLE1[(split, response)].items():
            for code, c in counts.items():
                out.setdefault(cov, {}).setdefault(code, 0)
                out[cov][code] += c
    return out


def _merged(*tables: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Counts of several Table 1 groups added up, per covariate and code (codes in the first table's order)."""
    out: dict[str, dict[str, int]] = {}
    for table in tables:
        for cov, counts in table.items():
            for code, c in counts.items():
                out.setdefault(cov, {}).setdefault(code, 0)
                out[cov][code] += c
    return out


def check_clinical_signal(value: Any) -> float:
    """Check the ``clinical_signal`` of the synthetic cohort: a real number in [0, 1] (bool is not one).

    Parameters
    ----------
    value : Any
        The parameter's value.

    Returns
    -------
    float
        The value as a float.

    Raises
    ------
    ValueError
        Naming ``clinical_signal`` and what was expected.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError("clinical_signal must be a number in [0, 1] (1: the covariates' margins per response group "
                         f"as in the paper's Table 1; 0: the same margins for both response groups), got {value!r}")
    return float(value)


def check_phase_options(phase_style: Any = None, all_phases: Any = False) -> tuple[str | None, bool]:
    """Check the ``phase_style`` and ``all_phases`` of the synthetic cohort.

    Parameters
    ----------
    phase_style : Any
        None (drawn per patient) or one of :data:`PHASE_STYLES`.
    all_phases : Any
        A bool.

    Returns
    -------
    tuple
        ``(phase_style, all_phases)`` as ``str | None`` and ``bool``.

    Raises
    ------
    ValueError
        Naming the parameter and what was expected.
    """
    if phase_style is not None and (not isinstance(phase_style, str) or phase_style not in PHASE_STYLES):
        raise ValueError(f"phase_style must be None (drawn per patient) or one of {list(PHASE_STYLES)}, "
                         f"got {phase_style!r}")
    if not isinstance(all_phases, (bool, np.bool_)):
        raise ValueError(f"all_phases must be True or False, got {all_phases!r}")
    return phase_style, bool(all_phases)


def _assign_groups(patients: int, seed: int) -> pd.DataFrame:
    """Split, response, RECIST and exclusion of every screened patient, in random patient order."""
    c = cohort_counts(patients)
    groups = (
        [("train", "good", "")] * c["train_good"] + [("train", "poor", "")] * c["train_poor"]
        + [("test", "good", "")] * c["test_good"] + [("test", "poor", "")] * c["test_poor"]
        + [("", "", METASTASIS)] * c["metastasis"] + [("", "", "no_pvp")] * c["no_pvp"]
    )
    rng = _rng(seed, "assign")
    df = pd.DataFrame([groups[i] for i in rng.permutation(patients)], columns=["split", "response", "_group"])
    excluded = df["split"] == ""
    p_poor = _PAPER_COUNTS["train_poor"] + _PAPER_COUNTS["test_poor"]
    poor = _rng(seed, "excluded_response").random(patients) < p_poor / _PAPER_COUNTS["eligible"]
    df.loc[excluded, "response"] = np.where(poor[excluded.to_numpy()], "poor", "good")
    u = _rng(seed, "recist").random(patients)
    good = df["response"] == "good"
    df["recist"] = np.where(good, np.where(u < _P_CR, "CR", "PR"), np.where(u < _P_PD, "PD", "SD"))
    for split in ("train", "test"):  # every split shows each good-response category (Fig. 4A, Fig. 5)
        members = good & (df["split"] == split)
        if members.any() and not (df.loc[members, "recist"] == "CR").any():
            df.loc[df.index[members][np.argmin(u[members.to_numpy()])], "recist"] = "CR"
    df["exclusion"] = np.where(df["_group"] == METASTASIS, METASTASIS, "")
    df["has_pvp"] = df["_group"] != "no_pvp"
    return df.drop(columns="_group")


def _clinical(groups: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Age and Table 1 covariates per patient, drawn per split x response group."""
    rng = _rng(seed, "clinical")
    out = pd.DataFrame(index=groups.index, columns=["age", "sex", "lauren", "cea", "ca199",
                                                    "ct_stage", "cn_stage", "cm_stage"], dtype=object)
    for (split, response), idx in groups.groupby(["split", "response"], sort=True).groups.items():
        idx = np.asarray(idx)
        mean, lo, hi = _AGES[(split, response)]
        out.loc[idx, "age"] = _ages(len(idx), mean, lo, hi, rng)
        if split:
            for cov, counts in _TABLE1[(split, response)].items():
                out.loc[idx, cov] = rng.permutation(np.array(_apportion(counts, len(idx)), dtype=object))
        else:
            for cov, counts in _pooled(response).items():
                codes = list(counts)
                p = np.array([counts[k] for k in codes], dtype=float)
                out.loc[idx, cov] = np.array(codes, dtype=object)[rng.choice(len(codes), len(idx), p=p / p.sum())]
    out["age"] = out["age"].astype(int)
    return out


def _dilute(clinical: pd.DataFrame, groups: pd.DataFrame, seed: int, signal: float) -> pd.DataFrame:
    """Replace each covariate value, independently with probability ``1 - signal``, by a draw that ignores the response.

    The replacement comes from the margins pooled over both response groups: of the patient's split
    (Table 1), or of train and test for screened patients outside the splits; an age from a normal
    distribution (SD 9 years) around the pooled mean, clipped to the pooled range and rounded. At
    ``signal = 1`` nothing is drawn and the covariates are exactly :func:`_clinical`'s.
    """
    if signal == 1.0:
        return clinical
    rng = _rng(seed, "clinical_signal")
    out = clinical.copy()
    for split, idx in groups.groupby("split", sort=True).groups.items():
        idx = np.asarray(idx)
        tables = [_TABLE1[(split, r)] for r in ("good", "poor")] if split else [_pooled(r) for r in ("good", "poor")]
        pooled = _merged(*tables)
        sizes = [sum(t["sex"].values()) for t in tables]
        ages = [_AGES[(split, r)] for r in ("good", "poor")]
        mean = sum(a[0] * n for a, n in zip(ages, sizes)) / sum(sizes)
        lo, hi = min(a[1] for a in ages), max(a[2] for a in ages)
        replace = rng.random((len(idx), 1 + len(pooled))) >= signal
        drawn_age = np.rint(np.clip(rng.normal(mean, 9.0, len(idx)), lo, hi)).astype(int)
        out.loc[idx[replace[:, 0]], "age"] = drawn_age[replace[:, 0]]
        for j, (cov, counts) in enumerate(pooled.items(), start=1):
            codes = list(counts)
            p = np.array([counts[k] for k in codes], dtype=float)
            drawn = np.array(codes, dtype=object)[rng.choice(len(codes), len(idx), p=p / p.sum())]
            out.loc[idx[replace[:, j]], cov] = drawn[replace[:, j]]
    out["age"] = out["age"].astype(int)
    return out


def _assign_sites(groups: pd.DataFrame, seed: int, sites: tuple[Site, ...]) -> pd.Series:
    """Site code of every patient, from the ``site`` stream so that no other draw changes.

    Within every split x response group (and every group of excluded patients) the patients are apportioned to
    the sites by share x poor weight (for poor responders; largest remainder), then shuffled. In the train and
    test groups every site gets at least one patient when the group has at least as many patients as sites.
    """
    rng = _rng(seed, "site")
    out = pd.Series("", index=groups.index, dtype=object)
    keys = ["split", "exclusion", "has_pvp", "response"]
    for (split, _, _, response), idx in groups.groupby(keys, sort=True).groups.items():
        weights = {s.code: float(s.share) * (float(s.poor_weight) if response == "poor" else 1.0) for s in sites}
        codes = _apportion(weights, len(idx))
        if split and len(idx) >= len(sites):
            counts = {c: codes.count(c) for c in weights}
            for c in [c for c, k in counts.items() if k == 0]:
                donor = max(counts, key=lambda k: counts[k])
                counts[donor] -= 1
                counts[c] += 1
            codes = [c for c in weights for _ in range(counts[c])]
        out[np.asarray(idx)] = rng.permutation(np.array(codes, dtype=object))
    return out


def _apply_sites(plan: pd.DataFrame, sites: tuple[Site, ...], slices: int) -> None:
    """Each patient's acquisition at its site: the site's scanner and the per-patient draws scaled by the site.

    ``base_spacing_mm`` keeps the generator's pixel-spacing draw (the anatomy's bowel field is laid out on it);
    ``pixel_spacing_mm`` and ``noise_sd_hu`` become the site's, ``kvp`` the site's tube voltage (its per-patient draw
    is kept in the random stream and overwritten).
    """
    by_code = {s.code: s for s in sites}
    site = [by_code[c] for c in plan["site"]]
    plan["base_spacing_mm"] = plan["pixel_spacing_mm"]
    scale = np.array([float(s.spacing_scale) for s in site])
    plan["pixel_spacing_mm"] = np.where(scale == 1.0, plan["base_spacing_mm"],
                                        np.round(plan["base_spacing_mm"] * scale, 4))
    plan["noise_sd_hu"] = plan["noise_sd_hu"] * np.array([float(s.noise_scale) for s in site])
    plan["kvp"] = [int(s.kvp) for s in site]
    plan["slice_mm"] = [float(s.slice_mm) for s in site]
    plan["n_slices"] = [site_slices(s, slices) for s in site]
    plan["blur"] = [float(s.blur) for s in site]
    plan["hu_offset"] = [float(s.hu_offset) for s in site]
    for col in ("manufacturer", "model", "kernel", "institution"):
        plan[col] = [getattr(s, col) for s in site]


def _site_counts(plan: pd.DataFrame, sites: tuple[Site, ...], slices: int) -> list[dict[str, Any]]:
    """``synth.json``'s ``sites``: every Site's fields, its institution, slices and patient counts."""
    out = []
    for s in sites:
        rows = plan[plan["site"] == s.code]
        counts = {f"{split}_{r}": int(((rows["split"] == split) & (rows["response"] == r)).sum())
                  for split in ("train", "test") for r in ("good", "poor")}
        counts["excluded"] = int((rows["split"] == "").sum())
        out.append({**_site_fields(s), "institution": s.institution,
                    "n_slices": site_slices(s, slices), "counts": counts})
    return out


def _tumour_features(poor: np.ndarray, seed: int) -> pd.DataFrame:
    """Latent tumour features given the response (1 = poor), and the oracle log-likelihood ratio."""
    z = _rng(seed, "tumour").standard_normal((len(poor), len(_TUMOUR_MODEL)))
    feats: dict[str, np.ndarray] = {}
    for j, (name, (mean, sd, shift)) in enumerate(_TUMOUR_MODEL.items()):
        value = mean + sd * (z[:, j] + shift * poor)
        feats[name] = np.exp(value) if name in _LOG_FEATURES else value
    df = pd.DataFrame(feats)
    df["oracle_score"] = _oracle_score(df)
    return df


def _oracle_score(features: pd.DataFrame) -> np.ndarray:
    """Log-likelihood ratio poor vs good of the generative model (linear in the transformed features)."""
    score = np.zeros(len(features))
    for name, (mean, sd, shift) in _TUMOUR_MODEL.items():
        x = features[name].to_numpy(dtype=float)
        x = np.log(x) if name in _LOG_FEATURES else x
        mu0, mu1 = mean, mean + shift * sd
        score += (mu1 - mu0) / sd**2 * (x - (mu0 + mu1) / 2)
    return score


def _nuisance(patients: int, slices: int, size: int, seed: int, phase_style: str | None = None,
              all_phases: bool = False) -> pd.DataFrame:
    """Per-patient acquisition and anatomy variables unrelated to the response.

    ``phase_style`` and ``all_phases`` override two columns after every draw, so the random stream, and so
    every other variable, is the same with or without them.
    """
    rng = _rng(seed, "nuisance")
    n = patients
    df = pd.DataFrame(index=range(n))
    df["body_a_mm"] = rng.uniform(143, 157, n)
    df["body_b_mm"] = rng.uniform(103, 117, n)
    df["body_cx_mm"] = rng.uniform(-4, 4, n)
    df["body_cy_mm"] = rng.uniform(-6, 6, n)
    df["body_taper"] = rng.uniform(-0.05, 0.05, n)
    df["fat_mm"] = rng.uniform(12, 16, n)
    df["muscle_mm"] = rng.uniform(8, 11, n)
    lo, hi = _FOV_SPACING_128
    df["pixel_spacing_mm"] = np.round(rng.uniform(lo, hi, n) * 128 / size, 4)
    df["z_top_mm"] = np.round(rng.uniform(-120, 40, n) * 2) / 2
    df["z_descending"] = rng.integers(0, 2, n)  # 1: InstanceNumber 1 is the cranial slice
    liver = np.rint(rng.uniform(0.63, 0.7, n) * slices).astype(int)
    df["liver_slices"] = np.clip(liver, 3, slices - 2)
    # First liver slice: at least one slice above and one below the liver.
    df["liver_first"] = 1 + np.floor(rng.random(n) * (slices - 1 - df["liver_slices"])).astype(int)
    df["pixel_representation"] = rng.integers(0, 2, n)
    df["bits_stored"] = rng.choice([12, 16], n)
    df["rescale_intercept"] = rng.choice([-1024, -1000], n)
    df["kvp"] = rng.choice([100, 120], n)
    df["noise_sd_hu"] = rng.uniform(6, 10, n)
    df["contrast_factor"] = rng.uniform(0.95, 1.05, n)
    df["phase_style"] = rng.choice(len(PHASE_STYLES), n, p=[0.45, 0.25, 0.3])
    df["has_non_contrast"] = (rng.random(n) < 0.4).astype(int)
    df["arterial_delay_s"] = np.round(rng.uniform(*_ARTERIAL_DELAY, n), 1)
    df["pvp_delay_s"] = np.round(rng.uniform(*_PVP_DELAY, n), 1)
    df["time_style"] = rng.integers(0, 2, n)  # 0: HHMMSS.ffffff, 1: HHMMSS
    df["no_pvp_variant"] = rng.choice(3, n, p=[0.5, 0.3, 0.2])  # art + NC, art only, NC only
    # SeriesNumber of the arterial, portal-venous and non-contrast series (folder SE<number>), shuffled.
    df["series_numbers"] = [tuple(int(v) for v in rng.permutation(np.arange(2, 10))[:3]) for _ in range(n)]
    df["pvp_series_number"] = [nums[1] for nums in df["series_numbers"]]
    df["pvp_numbered_first"] = [int(nums[1] < nums[0]) for nums in df["series_numbers"]]
    df["description_choice"] = rng.integers(0, 1 << 30, n)
    df["agent_choice"] = rng.integers(0, len(CONTRAST_AGENTS), n)
    df["study_day"] = rng.integers(0, (_STUDY_DATES[1] - _STUDY_DATES[0]).days + 1, n)
    df["study_time_s"] = rng.uniform(7.5 * 3600, 17.5 * 3600, n)
    df["bolus_after_s"] = rng.uniform(60, 240, n)
    # Tumour placement on the stomach wall and shape (in mm / slices).
    df["tumour_angle"] = rng.uniform(-0.2 * np.pi, 0.2 * np.pi, n)
    df["tumour_aspect"] = rng.uniform(0.85, 1.0, n)
    df["tumour_z_aspect"] = rng.uniform(1.1, 1.3, n)
    df["tumour_z_pos"] = rng.random(n)
    if phase_style is not None:
        df["phase_style"] = PHASE_STYLES.index(phase_style)
    if all_phases:
        df["has_non_contrast"] = 1  # read only for patients with a portal-venous series (_series_plan)
    return df


_UID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "pdstudy.synth")


def _uid(*parts: object) -> str:
    """A deterministic UID from its parts: ``2.25.`` + a name-based (version 5) UUID as integer."""
    name = "/".join([GENERATOR_VERSION, *map(str, parts)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _uid_key(patients: int, seed: int, slices: int, size: int, clinical_signal: float = 1.0,
             phase_style: str | None = None, all_phases: bool = False, sites: Any = 2, site_shift: Any = 1.0,
             site_poor: Any = 1.0) -> tuple[Any, ...]:
    """The parameters that enter every UID of a cohort: the sites always (as their ``synth.json`` parameters);
    ``clinical_signal``, ``phase_style`` and ``all_phases`` only when they are not their defaults, so that
    cohorts of other values never share a UID."""
    site_key = json.dumps(_site_parameters(sites, site_shift, site_poor), sort_keys=True, separators=(",", ":"))
    key: tuple[Any, ...] = (seed, patients, slices, size, site_key)
    if float(clinical_signal) != 1.0:
        key = (*key, f"clinical_signal={float(clinical_signal)!r}")
    if phase_style is not None:
        key = (*key, f"phase_style={phase_style}")
    if all_phases:
        key = (*key, "all_phases=True")
    return key


def _series_plan(row: pd.Series, key: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The series of one patient's study: phase, number, descriptions, contrast tags and times."""
    if row["has_pvp"]:
        phases = ["arterial", "portal_venous"] + (["non_contrast"] if row["has_non_contrast"] else [])
    else:
        phases = [["arterial", "non_contrast"], ["arterial"], ["non_contrast"]][int(row["no_pvp_variant"])]
    style = PHASE_STYLES[int(row["phase_style"])]
    table = PHASE_DESCRIPTIONS[style]
    choice = int(row["description_choice"])

    def pick(options: tuple[str, ...], salt: int) -> str:
        return options[(choice >> (4 * salt)) % len(options)]

    bolus = float(row["study_time_s"]) + float(row["bolus_after_s"])
    delays = {"arterial": float(row["arterial_delay_s"]), "portal_venous": float(row["pvp_delay_s"])}
    series = []
    for j, phase in enumerate(phases):
        if style == "explicit":
            description, protocol = pick(table[phase], j), pick(table["protocol"], 3)
        elif style == "protocol":
            description, protocol = pick(table["description"], 3), pick(table[phase], j)
        else:
            description, protocol = pick(table["description"], 3), pick(table["protocol"], 4)
        description = _site_description(description, row)
        contrast = phase != "non_contrast"
        time_s = bolus + delays[phase] if contrast else float(row["study_time_s"]) + 20.0
        series.append({
            "phase": phase,
            "series_number": row["series_numbers"][j],
            "series_description": description,
            "protocol_name": protocol,
            "contrast_agent": CONTRAST_AGENTS[int(row["agent_choice"])] if contrast else "",
            "bolus_start_s": bolus if contrast else None,
            "acquisition_s": time_s,
            "delay_s": delays[phase] if contrast else None,
            "series_uid": _uid(*key, "series", j),
        })
    return series


def _site_description(text: str, row: pd.Series) -> str:
    """A SeriesDescription as the patient's site writes it: its slice thickness and kernel for site A's."""
    t, kernel = float(row["slice_mm"]), str(row["kernel"])
    if t == SLICE_MM and kernel == "B31f":
        return text
    for old in ("B31f", "I30f"):
        text = text.replace(old, kernel)
    return text.replace("5.0", f"{t:.1f}").replace("5mm", f"{t:.3g}mm")


def _check_params(patients: int, seed: int, slices: int, size: int, clinical_signal: float = 1.0,
                  phase_style: str | None = None, all_phases: bool = False, sites: Any = 2,
                  site_shift: Any = 1.0, site_poor: Any = 1.0) -> tuple[Site, ...]:
    check_clinical_signal(clinical_signal)
    check_phase_options(phase_style, all_phases)
    resolved = check_site_options(sites, site_shift, site_poor)
    if patients < 4:
        raise ValueError(f"patients must be >= 4, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if slices < 8:
        raise ValueError(f"slices must be >= 8, got {slices}")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    return resolved


def _plan(patients: int, seed: int, slices: int = 24, size: int = 128, clinical_signal: float = 1.0, *,
          phase_style: str | None = None, all_phases: bool = False, sites: Any = 2, site_shift: Any = 1.0,
          site_poor: Any = 1.0) -> pd.DataFrame:
    """Everything about every patient except pixels: groups, sites, covariates, latent features, nuisance,
    headers."""
    resolved = _check_params(patients, seed, slices, size, clinical_signal, phase_style, all_phases, sites,
                             site_shift, site_poor)
    clinical_signal = float(clinical_signal)
    all_phases = bool(all_phases)
    groups = _assign_groups(patients, seed)
    groups.insert(0, "site", _assign_sites(groups, seed, resolved))
    plan = pd.concat([
        groups,
        _dilute(_clinical(groups, seed), groups, seed, clinical_signal),
        _tumour_features((groups["response"] == "poor").to_numpy(dtype=float), seed),
        _nuisance(patients, slices, size, seed, phase_style, all_phases),
    ], axis=1)
    _apply_sites(plan, resolved, slices)
    width = max(4, len(str(patients)))
    plan.insert(0, "patient_id", [f"SYN{i + 1:0{width}d}" for i in range(patients)])
    plan["y"] = (plan["response"] == "poor").astype(int)

    rng = _rng(seed, "identity")
    plan["header_id"] = [f"HOSP{v:06d}" for v in rng.choice(900_000, patients, replace=False) + 100_000]
    plan["header_name"] = [f"FAKE^PATIENT{v:0{width}d}" for v in rng.choice(10**width, patients, replace=False)]
    plan["accession"] = [f"ACC{v:08d}" for v in rng.integers(0, 10**8, patients)]
    plan["birth_days"] = rng.integers(0, 360, patients)

    key = _uid_key(patients, seed, slices, size, clinical_signal, phase_style, all_phases, sites, site_shift,
                   site_poor)
    plan["study_uid"] = [_uid(*key, i, "study") for i in range(patients)]
    plan["frame_uid"] = [_uid(*key, i, "frame") for i in range(patients)]
    plan["series"] = [_series_plan(row, (*key, i)) for i, row in plan.iterrows()]
    plan["liver_last"] = plan["liver_first"] + plan["liver_slices"] - 1
    return plan


def slice_units(row: pd.Series, slices: int) -> np.ndarray:
    """Position of each of the patient's slices in units of the reference grid (``slices`` slices 5 mm apart,
    index 0 cranial), on which the anatomy is laid out; ``arange(slices)`` at 5 mm.

    A site with slice thickness ``t`` has :func:`site_slices` slices ``t`` apart, centred on the reference range.
    """
    t, n = float(row["slice_mm"]), int(row["n_slices"])
    if t == SLICE_MM and n == slices:
        return np.arange(slices, dtype=np.float64)
    return (slices - 1) / 2 - t / SLICE_MM * ((n - 1) / 2 - np.arange(n))


def z_positions(row: pd.Series, slices: int) -> np.ndarray:
    """ImagePositionPatient z of each of the patient's slices, cranial (index 0) to caudal."""
    return float(row["z_top_mm"]) - SLICE_MM * slice_units(row, slices)


def liver_slices(row: pd.Series, slices: int) -> np.ndarray:
    """Indices of the patient's slices within the liver range (reference slices ``liver_first``-``liver_last``)."""
    u = slice_units(row, slices)
    return np.flatnonzero((u >= row["liver_first"] - 1e-6) & (u <= row["liver_last"] + 1e-6))


def _manifest(plan: pd.DataFrame, slices: int) -> pd.DataFrame:
    """The cohort manifest (all columns of :data:`pdstudy.data.manifest.COLUMN_NAMES` and ``site``, as strings)."""
    rows = []
    for _, p in plan.iterrows():
        z = z_positions(p, slices)
        liver = liver_slices(p, slices)
        annotated = bool(p["has_pvp"])
        rows.append({
            "patient_id": p["patient_id"],
            SITE_COLUMN: p["site"],
            "split": p["split"],
            "response": p["response"],
            "recist": p["recist"],
            "dicom_dir": p["header_id"],
            "pvp_series_uid": "",  # left to the header heuristics, as with a hospital export
            "z_from_mm": f"{z[liver[0]]:.1f}" if annotated else "",
            "z_to_mm": f"{z[liver[-1]]:.1f}" if annotated else "",
            "exclusion": p["exclusion"],
            "mask_path": f"masks/{p['patient_id']}.npz" if annotated else "",
            "age": str(int(p["age"])),
            **{c: p[c] for c in ("sex", "lauren", "cea", "ca199", "ct_stage", "cn_stage", "cm_stage")},
        })
    # The site column goes where the manifest schema puts it (appended while the schema does not know it yet).
    columns = list(COLUMN_NAMES) if SITE_COLUMN in COLUMN_NAMES else [*COLUMN_NAMES, SITE_COLUMN]
    return pd.DataFrame(rows, columns=columns)


def plan_cohort(patients: int = 164, seed: int = 0, *, slices: int = 24, size: int = 128,
                clinical_signal: float = 1.0, phase_style: str | None = None, all_phases: bool = False,
                sites: int | Sequence[Site] = 2, site_shift: float = 1.0, site_poor: float = 1.0) -> pd.DataFrame:
    """The manifest :func:`generate_cohort` writes, computed without writing any DICOM.

    Parameters
    ----------
    patients, seed, slices, size, clinical_signal, phase_style, all_phases, sites, site_shift, site_poor
        As for :func:`generate_cohort`.

    Returns
    -------
    pandas.DataFrame
        One row per screened patient, every manifest column as string.
    """
    return _manifest(_plan(patients, seed, slices, size, clinical_signal, phase_style=phase_style,
                           all_phases=all_phases, sites=sites, site_shift=site_shift, site_poor=site_poor), slices)


def sample_latent(n: int, seed: int, *, sites: int | Sequence[Site] = 2, site_shift: float = 1.0,
                  site_poor: float = 1.0) -> pd.DataFrame:
    """Latent per-patient variables of a cohort of ``n`` screened patients, without writing DICOM.

    The rows are the patients :func:`generate_cohort` would write with ``patients=n`` and the same
    ``seed`` and sites (at the default ``slices``/``size``; the tumour features do not depend on them).

    Parameters
    ----------
    n : int
        Number of screened patients.
    seed : int
        Random seed.
    sites, site_shift, site_poor
        As for :func:`generate_cohort`.

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id``, ``site``, ``split``, ``exclusion``, ``has_pvp``, ``response``, ``recist``,
        ``y`` (1 = poor), the :data:`TUMOUR_FEATURES`, ``oracle_score`` (the generative model's
        log-likelihood ratio poor vs good) and the :data:`NUISANCE_COLUMNS` (``pixel_spacing_mm``,
        ``noise_sd_hu`` and ``kvp`` as the patient's site acquires).
    """
    plan = _plan(n, seed, sites=sites, site_shift=site_shift, site_poor=site_poor)
    base = ["patient_id", "site", "split", "exclusion", "has_pvp", "response", "recist", "y"]
    return plan[base + list(TUMOUR_FEATURES) + ["oracle_score"] + list(NUISANCE_COLUMNS)].copy()


def oracle_auc(n: int = 2000, seed: int = 0) -> float:
    """AUC (class 1 = poor) of the Bayes-optimal score built from the latent tumour features.

    Parameters
    ----------
    n : int
        Number of generated patients.
    seed : int
        Random seed.

    Returns
    -------
    float
        ``roc_auc_score(y, oracle_score)`` on ``n`` patients; :data:`ORACLE_AUC` for the defaults.
    """
    latent = sample_latent(n, seed)
    return float(roc_auc_score(latent["y"], latent["oracle_score"]))
