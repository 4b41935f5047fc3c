"""A procedurally generated synthetic cohort, written as real CT DICOM files.

The synthetic cohort is the package's default input. It takes every code path a hospital
export takes: nested ``<folder>/<study>/<series>/<n>.dcm`` folders named after a (fake)
header PatientID, several contrast phases per study told apart only by their headers,
stored integers that need RescaleSlope/RescaleIntercept to become Hounsfield units,
signed and unsigned pixels, 12- and 16-bit storage, pixel spacings and slice orders that
differ between patients, and screened patients that must be excluded.

Cohort structure
----------------
With the default 164 screened patients the cohort matches the paper: 19 patients are
flagged ``exclusion=metastasis_outside_abdominal_cavity`` (their DICOM is still written),
5 patients have a study without any portal-venous series (only arterial and/or
non-contrast; their exclusion must be *found* by reading the headers, so their manifest
``exclusion`` is empty), and the remaining 140 are split into ``train`` (112: 73 good,
39 poor) and ``test`` (28: 14 good, 14 poor). The 24 excluded patients have an empty
``split`` but do have ``response`` and ``recist``. For other cohort sizes every count is
scaled by the same ratios and rounded half up (see :func:`cohort_counts`), keeping at least
one patient per response group in each split where the split has two or more patients.
RECIST categories are drawn given the response (P(CR | good) = 0.12, P(PD | poor) = 0.3);
each split's good responders include at least one CR, so every RECIST category can be shown
(Fig. 4A, Fig. 5). RECIST is a label only: the images depend on the response.

Clinical covariates
-------------------
Sex, Lauren type, CEA, CA19-9 and clinical T/N/M stage are drawn per split x response group
from the margins of the paper's Table 1; at the paper's group sizes the counts are exactly
those of the table. Three printing errors of Table 1 are resolved as follows:

1. test-set good responders: 3 female + 12 male = 15, but the group has 14 patients. We
   trust n = 14 and the female count: 3 F / 11 M.
2. test-set poor responders: male printed as "1 (92.9%)"; 92.9 % of 14 is 13, so 13 M / 1 F.
3. CA19-9: the normal category is printed as "<= 5.0 U/ml" and elevated as "> 35.0 U/ml";
   we use the conventional 35.0 U/ml cut-off for both (the manifest code ``normal`` means
   <= 35.0 U/ml).

Ages come from a normal distribution clipped to each group's printed range, recentred on
the printed mean, with the printed minimum and maximum each given to one patient.

Images and signal
-----------------
Each patient's anatomy is a stack of axial slices (air, body outline, subcutaneous fat,
muscle, visceral fat and a few bowel loops, liver, spleen, kidneys, a gas-distended stomach
with a little dependent fluid, aorta, IVC, portal vein, vertebra) whose HU values depend on
the contrast phase. The gastric tumour is a bounded ellipsoidal mass centred on the stomach
wall near the greater curvature, half in the gas-filled lumen and half in a perigastric fat
plane kept free of bowel; a large mass invades the liver or spleen but never replaces
vessels, kidneys, muscle or bone. Three latent features depend on the response group
(:data:`TUMOUR_FEATURES`), chosen so that the response is visible mainly through size and
enhancement, which survive the quick profile's 6 mm pixels:

========================== ===================== ===================== ==================
feature                    good responders       poor responders       shift (SD units)
========================== ===================== ===================== ==================
radius (median)            24 mm (4.8 cm wide)   37 mm (7.4 cm wide)   +1.4 (log scale)
portal-venous mean HU      90                    72                    -0.75
texture SD (median)        14 HU                 18 HU                 +0.65 (log scale)
========================== ===================== ===================== ==================

with common SDs 0.3 (log radius), 24 HU and 0.4 (log texture SD); the texture is smooth
(blobs of about 1 cm). In the portal-venous phase the mass is hypo-attenuating relative to
the enhancing stomach wall (115 HU), liver (110 HU) and spleen (120 HU) and stands out against
the gas lumen and the fat around it. It spans about three quarters of the slices of the
annotated (liver) range, and at the quick profile's preprocessing (64 px, 6 mm pixels) the
per-patient tumour-mask area alone separates the groups with an AUC of about 0.8. In a
transformed space (log radius, enhancement, log texture SD) the features are Gaussian with a
shared covariance, so the log-likelihood ratio is linear and Bayes optimal; its AUC on 2000
generated patients is :data:`ORACLE_AUC` (0.889, the generator's documented signal strength,
which no image model can exceed on average). Nuisance variables (:data:`NUISANCE_COLUMNS`)
are drawn from a separate random stream and are independent of the response by
construction; their ranges (body size, fat and muscle thickness, contrast and noise levels,
tumour shape and position) are kept moderate, and the stomach's size and position do not
scale with the body, so that little irrelevant variability competes with the tumour.

Contrast phases are marked as scanners do (see :data:`PHASE_DESCRIPTIONS`): the phase is
named in SeriesDescription (style ``explicit``), in ProtocolName only (style ``protocol``)
or nowhere (style ``generic``: both contrast series share one description and only
ContrastBolusStartTime vs AcquisitionTime tells them apart: arterial 25-40 s, portal
venous 60-80 s after the bolus start). Contrast series carry ContrastBolusAgent; the
optional non-contrast series carries neither agent nor bolus start time. The truth is
written to ``series.csv`` next to the manifest.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from pdstudy.core.io import write_csv, write_json
from pdstudy.data.manifest import COLUMN_NAMES

__all__ = [
    "GENERATOR_VERSION",
    "NUISANCE_COLUMNS",
    "ORACLE_AUC",
    "PHASE_DESCRIPTIONS",
    "TUMOUR_FEATURES",
    "cohort_counts",
    "ensure_cohort",
    "generate_cohort",
    "oracle_auc",
    "plan_cohort",
    "sample_latent",
]

#: Bumped whenever the generated bytes change; part of :func:`ensure_cohort`'s cache key.
GENERATOR_VERSION: Final = "2.1.1"

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

# Table 1 of the paper as counts per (split, response), with the three corrections of the module
# docstring: test/good sex 3 F + 11 M (printed 3 + 12), test/poor sex 1 F + 13 M (printed "1 (92.9%)"),
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

_SLICE_MM: Final = 5.0
_FOV_SPACING_128: Final = (2.6, 3.3)  # pixel spacing (mm) at 128 px; scaled by 128 / size
_STUDY_DATES: Final = (_dt.date(2017, 9, 1), _dt.date(2022, 11, 30))

# Anatomy labels; each phase maps them to HU through _HU.
AIR, FAT, MUSCLE, VISCERAL, BOWEL, KIDNEY, LIVER, SPLEEN, WALL, FLUID, GAS, AORTA, IVC, PORTAL, BONE, CORTEX, TUMOUR = (
    range(17)
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
    [8, 8, 8],  # gastric fluid
    [-950, -950, -950],  # gastric gas
    [42, 280, 160],  # aorta
    [40, 80, 150],  # IVC
    [42, 110, 180],  # portal vein
    [220, 220, 220],  # cancellous bone
    [650, 650, 650],  # cortical bone
    [38, 38, 38],  # tumour (replaced by the tumour model)
], dtype=np.float32)
_TUMOUR_NC_HU: Final = 38.0
_TEXTURE_MM: Final = 7.0  # Gaussian SD of the tumour texture in-plane; survives 6 mm pixels
_STOMACH_MM: Final = (45.0, 35.0)  # semi-axes of the gas-distended stomach at its widest, whatever the body size
_STOMACH_OFFSET_MM: Final = (37.5, -33.0)  # stomach centre from the body centre (x = patient left, y = posterior)


# --------------------------------------------------------------------------- planning


def _rng(seed: int, stream: str, *extra: int) -> np.random.Generator:
    """An independent random stream per purpose, so nuisance draws never depend on the response."""
    key = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, key, *extra])


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


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


def _apportion(counts: dict[str, int], n: int) -> list[str]:
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


def _nuisance(patients: int, slices: int, size: int, seed: int) -> pd.DataFrame:
    """Per-patient acquisition and anatomy variables unrelated to the response."""
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
    return df


_UID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "pdstudy.synth")


def _uid(*parts: object) -> str:
    """A deterministic UID from its parts: ``2.25.`` + a name-based (version 5) UUID as integer."""
    name = "/".join([GENERATOR_VERSION, *map(str, parts)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _series_plan(row: pd.Series, key: tuple[int, ...]) -> list[dict[str, Any]]:
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


def _plan(patients: int, seed: int, slices: int = 24, size: int = 128) -> pd.DataFrame:
    """Everything about every patient except pixels: groups, covariates, latent features, nuisance, headers."""
    _check_params(patients, seed, slices, size)
    groups = _assign_groups(patients, seed)
    plan = pd.concat([
        groups,
        _clinical(groups, seed),
        _tumour_features((groups["response"] == "poor").to_numpy(dtype=float), seed),
        _nuisance(patients, slices, size, seed),
    ], axis=1)
    width = max(4, len(str(patients)))
    plan.insert(0, "patient_id", [f"SYN{i + 1:0{width}d}" for i in range(patients)])
    plan["y"] = (plan["response"] == "poor").astype(int)

    rng = _rng(seed, "identity")
    plan["header_id"] = [f"HOSP{v:06d}" for v in rng.choice(900_000, patients, replace=False) + 100_000]
    plan["header_name"] = [f"FAKE^PATIENT{v:0{width}d}" for v in rng.choice(10**width, patients, replace=False)]
    plan["accession"] = [f"ACC{v:08d}" for v in rng.integers(0, 10**8, patients)]
    plan["birth_days"] = rng.integers(0, 360, patients)

    key = (seed, patients, slices, size)
    plan["study_uid"] = [_uid(*key, i, "study") for i in range(patients)]
    plan["frame_uid"] = [_uid(*key, i, "frame") for i in range(patients)]
    plan["series"] = [_series_plan(row, (*key, i)) for i, row in plan.iterrows()]
    plan["liver_last"] = plan["liver_first"] + plan["liver_slices"] - 1
    return plan


def _z_positions(row: pd.Series, slices: int) -> np.ndarray:
    """ImagePositionPatient z of each slice, cranial (index 0) to caudal."""
    return float(row["z_top_mm"]) - _SLICE_MM * np.arange(slices)


def _manifest(plan: pd.DataFrame, slices: int) -> pd.DataFrame:
    """The cohort manifest (all columns of :data:`pdstudy.data.manifest.COLUMN_NAMES`, as strings)."""
    rows = []
    for _, p in plan.iterrows():
        z = _z_positions(p, slices)
        annotated = bool(p["has_pvp"])
        rows.append({
            "patient_id": p["patient_id"],
            "split": p["split"],
            "response": p["response"],
            "recist": p["recist"],
            "dicom_dir": p["header_id"],
            "pvp_series_uid": "",  # left to the header heuristics, as with a hospital export
            "z_from_mm": f"{z[p['liver_first']]:.1f}" if annotated else "",
            "z_to_mm": f"{z[p['liver_last']]:.1f}" if annotated else "",
            "exclusion": p["exclusion"],
            "mask_path": f"masks/{p['patient_id']}.npz" if annotated else "",
            "age": str(int(p["age"])),
            **{c: p[c] for c in ("sex", "lauren", "cea", "ca199", "ct_stage", "cn_stage", "cm_stage")},
        })
    return pd.DataFrame(rows, columns=list(COLUMN_NAMES))


def plan_cohort(patients: int = 164, seed: int = 0, *, slices: int = 24, size: int = 128) -> pd.DataFrame:
    """The manifest :func:`generate_cohort` writes, computed without writing any DICOM.

    Parameters
    ----------
    patients, seed, slices, size
        As for :func:`generate_cohort`.

    Returns
    -------
    pandas.DataFrame
        One row per screened patient, every manifest column as string.
    """
    return _manifest(_plan(patients, seed, slices, size), slices)


def sample_latent(n: int, seed: int) -> pd.DataFrame:
    """Latent per-patient variables of a cohort of ``n`` screened patients, without writing DICOM.

    The rows are the patients :func:`generate_cohort` would write with ``patients=n`` and the same
    ``seed`` (at the default ``slices``/``size``; the tumour features do not depend on them).

    Parameters
    ----------
    n : int
        Number of screened patients.
    seed : int
        Random seed.

    Returns
    -------
    pandas.DataFrame
        Columns ``patient_id``, ``split``, ``exclusion``, ``has_pvp``, ``response``, ``recist``, ``y``
        (1 = poor), the :data:`TUMOUR_FEATURES`, ``oracle_score`` (the generative model's
        log-likelihood ratio poor vs good) and the :data:`NUISANCE_COLUMNS`.
    """
    plan = _plan(n, seed)
    base = ["patient_id", "split", "exclusion", "has_pvp", "response", "recist", "y"]
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


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Anatomy:
    """One patient's anatomy: a label volume and the tumour texture (unit SD inside the tumour)."""

    labels: np.ndarray  # uint8 (slices, size, size)
    texture: np.ndarray  # float32, same shape, 0 outside the tumour
    z: np.ndarray  # slice z positions, index 0 cranial


def _ellipse(x: np.ndarray, y: np.ndarray, cx: Any, cy: Any, a: Any, b: Any) -> np.ndarray:
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0


def _anatomy(p: pd.Series, slices: int, size: int, rng: np.random.Generator) -> _Anatomy:
    """Build the label volume of one patient (geometry in mm; x = patient left, y = posterior)."""
    sp = float(p["pixel_spacing_mm"])
    coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * sp
    x, y = coords[None, None, :], coords[None, :, None]
    k = np.arange(slices, dtype=np.float32)[:, None, None]
    z = _z_positions(p, slices)

    a0, b0 = float(p["body_a_mm"]), float(p["body_b_mm"])
    scale = 1 + float(p["body_taper"]) * (k / max(slices - 1, 1) - 0.5)
    a, b = a0 * scale, b0 * scale
    cx, cy = float(p["body_cx_mm"]), float(p["body_cy_mm"])
    fat, muscle = float(p["fat_mm"]), float(p["muscle_mm"])

    shape = (slices, size, size)
    body = _ellipse(x, y, cx, cy, a, b)
    wall = _ellipse(x, y, cx, cy, a - fat, b - fat)
    inner = _ellipse(x, y, cx, cy, a - fat - muscle, b - fat - muscle)
    labels = np.where(body, FAT, AIR).astype(np.uint8)
    labels[wall] = MUSCLE
    labels[inner] = VISCERAL

    # Organ profiles along z relative to the liver (t = 0 at its first slice, 1 at its last).
    first, last = int(p["liver_first"]), int(p["liver_last"])
    t = (k - first) / max(last - first, 1)
    in_liver = (k >= first) & (k <= last)

    # Stomach geometry (drawn below) and the tumour: an ellipsoidal mass centred on the stomach wall,
    # half in the lumen and half in the perigastric fat, on a slice in the middle 60 % of the stomach.
    s_first = first + math.ceil(0.08 * (last - first))
    s_last = first + math.floor(0.8 * (last - first))
    in_stomach = (k >= s_first) & (k <= s_last)
    ts = (k - s_first) / max(s_last - s_first, 1)
    stomach_g = 0.6 + 0.4 * np.sin(np.pi * np.clip(ts, 0, 1))
    scx, scy = cx + _STOMACH_OFFSET_MM[0], cy + _STOMACH_OFFSET_MM[1]
    sa, sb = _STOMACH_MM[0] * stomach_g, _STOMACH_MM[1] * stomach_g  # not scaled with the body
    r = float(p["tumour_radius_mm"])
    ry, rz = r * float(p["tumour_aspect"]), r * float(p["tumour_z_aspect"])
    kt = s_first + int(round(float(p["tumour_z_pos"]) * 0.6 * (s_last - s_first) + 0.2 * (s_last - s_first)))
    g_t = 0.6 + 0.4 * math.sin(math.pi * min(max((kt - s_first) / max(s_last - s_first, 1), 0), 1))
    theta = float(p["tumour_angle"])
    tx = scx + (_STOMACH_MM[0] * g_t - 0.3 * r) * math.cos(theta)
    ty = scy + (_STOMACH_MM[1] * g_t - 0.3 * r) * math.sin(theta)
    dz = (k - kt) * _SLICE_MM

    def around_tumour(margin: float) -> np.ndarray:
        return ((x - tx) / (r + margin)) ** 2 + ((y - ty) / (ry + margin)) ** 2 + (dz / (rz + margin)) ** 2 <= 1.0

    # Bowel loops: sparse ribbons around the zero level of a smooth random field (~3 cm cells),
    # kept out of a perigastric fat plane so that the stomach and its mass have a clean border.
    n_low = max(int(size * sp / 30.0), 4)
    low = gaussian_filter(rng.standard_normal((slices, n_low, n_low)).astype(np.float32), (1.5, 1.0, 1.0))
    up = _linear_upsampler(n_low, size)
    field = np.abs(up @ low @ up.T)
    perigastric = (in_stomach & _ellipse(x, y, scx, scy, sa + 15.0, sb + 15.0)) | around_tumour(12.0)
    labels[inner & ~perigastric & (field < np.quantile(field, 0.06))] = BOWEL

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

    # Stomach distended with gas (as for CT gastrography), a little dependent fluid (patient supine).
    outer_s = in_stomach & _ellipse(x, y, scx, scy, sa, sb)
    lumen = in_stomach & _ellipse(x, y, scx, scy, sa - 5.0, sb - 5.0)
    organ(WALL, outer_s)
    organ(GAS, lumen)
    organ(FLUID, lumen & (y > scy + 0.7 * sb))

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
    tumour = around_tumour(0.0) & inner & ~np.isin(labels, (AORTA, IVC, PORTAL, KIDNEY, MUSCLE, CORTEX, BONE))
    labels[tumour] = TUMOUR
    return _Anatomy(labels=labels, texture=_texture(tumour, sp, rng), z=z)


def _linear_upsampler(n: int, size: int) -> np.ndarray:
    """Matrix (size, n) of linear interpolation from ``n`` to ``size`` evenly spread samples."""
    pos = np.linspace(0, n - 1, size)
    lo = np.minimum(np.floor(pos).astype(int), n - 2)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((size, n), dtype=np.float32)
    w[np.arange(size), lo] = 1 - frac
    w[np.arange(size), lo + 1] = frac
    return w


def _texture(tumour: np.ndarray, spacing: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random texture (blobs of ~1 cm), zero mean and unit SD over the tumour voxels, 0 elsewhere."""
    out = np.zeros(tumour.shape, dtype=np.float32)
    idx = np.nonzero(tumour)
    if len(idx[0]) < 2:
        return out
    box = tuple(slice(max(int(i.min()) - 2, 0), min(int(i.max()) + 3, n)) for i, n in zip(idx, tumour.shape))
    inside = tumour[box]
    sigma = (1.0, _TEXTURE_MM / spacing, _TEXTURE_MM / spacing)
    smooth = gaussian_filter(rng.standard_normal(inside.shape, dtype=np.float32), sigma)
    vals = smooth[inside]
    out[box][inside] = (vals - vals.mean()) / max(float(vals.std()), 1e-6)
    return out


def _render(anat: _Anatomy, p: pd.Series, phase: str, rng: np.random.Generator) -> np.ndarray:
    """HU volume of one contrast phase: per-label values, tumour model, slight blur, noise."""
    j = _PHASES.index(phase)
    nc = _HU[:, 0]
    lut = nc + float(p["contrast_factor"]) * (_HU[:, j] - nc)
    hu = lut[anat.labels]
    enh = float(p["tumour_enhancement_hu"])
    het = float(p["tumour_heterogeneity_hu"])
    tumour_hu, het_scale = {
        "portal_venous": (enh, 1.0),
        "arterial": (_TUMOUR_NC_HU + 0.7 * (enh - _TUMOUR_NC_HU), 0.8),
        "non_contrast": (_TUMOUR_NC_HU, 0.3),
    }[phase]
    tumour = anat.labels == TUMOUR
    hu[tumour] = tumour_hu + het * het_scale * anat.texture[tumour]
    # [1, 2, 1] / 4 in-plane blur: partial-volume edges at a fraction of a Gaussian filter's cost.
    hu[:, 1:-1, :] = 0.25 * hu[:, :-2, :] + 0.5 * hu[:, 1:-1, :] + 0.25 * hu[:, 2:, :]
    hu[:, :, 1:-1] = 0.25 * hu[:, :, :-2] + 0.5 * hu[:, :, 1:-1] + 0.25 * hu[:, :, 2:]
    hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(p["noise_sd_hu"])
    return hu


def _stored(hu: np.ndarray, p: pd.Series) -> np.ndarray:
    """HU to the stored integers of the patient's pixel format (slope 1, intercept -1024 or -1000)."""
    bits = int(p["bits_stored"])
    values = np.rint(hu) - float(p["rescale_intercept"])
    if int(p["pixel_representation"]):
        return np.clip(values, -(1 << (bits - 1)), (1 << (bits - 1)) - 1).astype("<i2")
    return np.clip(values, 0, (1 << bits) - 1).astype("<u2")


# --------------------------------------------------------------------------- DICOM


def _tm(seconds: float, style: int) -> str:
    """DICOM TM: ``HHMMSS.ffffff`` (style 0) or ``HHMMSS`` (style 1)."""
    whole = int(seconds)
    h, m, s = whole // 3600, whole % 3600 // 60, whole % 60
    if style:
        return f"{h:02d}{m:02d}{s:02d}"
    return f"{h:02d}{m:02d}{s:02d}.{int(round((seconds - whole) * 1e6)) % 1_000_000:06d}"


def _ds(value: float) -> str:
    """A DS string within DICOM's 16 characters."""
    text = f"{float(value):.10g}"
    return text if len(text) <= 16 else f"{float(value):.6g}"


def _series_dataset(p: pd.Series, s: dict[str, Any], size: int) -> Dataset:
    """A CT Image Storage dataset with everything but the per-slice elements filled in."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    study_date = _STUDY_DATES[0] + _dt.timedelta(days=int(p["study_day"]))
    age = int(p["age"])
    birth = study_date.replace(year=study_date.year - age, day=min(study_date.day, 28))
    birth -= _dt.timedelta(days=int(p["birth_days"]))
    style = int(p["time_style"])
    date = study_date.strftime("%Y%m%d")
    acq = _tm(s["acquisition_s"], style)

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = _tm(float(p["study_time_s"]) - 300.0, style)
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = acq
    ds.AccessionNumber = p["accession"]
    ds.Modality = "CT"
    ds.Manufacturer = "pdstudy synthetic"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT ABDOMEN"
    ds.SeriesDescription = s["series_description"]
    ds.ManufacturerModelName = "Procedural CT"
    ds.PatientName = p["header_name"]
    ds.PatientID = p["header_id"]
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = p["sex"]
    ds.PatientAge = f"{age:03d}Y"
    if s["contrast_agent"]:
        ds.ContrastBolusAgent = s["contrast_agent"]
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "90"
        ds.ContrastBolusStartTime = _tm(s["bolus_start_s"], style)
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = _ds(_SLICE_MM)
    ds.KVP = str(int(p["kvp"]))
    ds.ProtocolName = s["protocol_name"]
    ds.ConvolutionKernel = "B31f"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = p["study_uid"]
    ds.SeriesInstanceUID = s["series_uid"]
    ds.StudyID = "1"
    ds.SeriesNumber = s["series_number"]
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = p["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.PixelSpacing = [_ds(p["pixel_spacing_mm"])] * 2
    bits = int(p["bits_stored"])
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = int(p["pixel_representation"])
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = str(int(p["rescale_intercept"]))
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    return ds


#: Elements that change from slice to slice; everything else is encoded once per series.
_PER_SLICE: Final = (
    (0x00080018, "UI"),  # SOPInstanceUID
    (0x00200013, "IS"),  # InstanceNumber
    (0x00200032, "DS"),  # ImagePositionPatient
    (0x00201041, "DS"),  # SliceLocation
    (0x7FE00010, "OW"),  # PixelData
)


class _SeriesEncoder:
    """Encode the files of one series with pydicom's writer, the constant elements only once.

    The bytes equal those of ``Dataset.save_as(path, enforce_file_format=True)`` (a test checks
    this); caching the ~60 constant elements makes writing about ten times faster.
    """

    def __init__(self, template: Dataset) -> None:
        self._meta = template.file_meta
        tags = sorted(int(t) for t in template.keys())
        bounds = [t for t, _ in _PER_SLICE]
        self._segments = []
        for lo, hi in zip([-1, *bounds], [*bounds, 1 << 32]):
            part = Dataset()
            for t in tags:
                if lo < t < hi:
                    part[t] = template[t]
            self._segments.append(_encode_elements(part.values()))

    def encode(self, uid: str, instance: int, position: list[str], location: str, pixels: bytes) -> bytes:
        """Bytes of one Part 10 file: preamble, file meta, dataset."""
        fp = _buffer()
        fp.write(b"\0" * 128 + b"DICM")
        meta = FileMetaDataset(self._meta)
        meta.MediaStorageSOPInstanceUID = uid
        write_file_meta_info(fp, meta, enforce_standard=True)
        values = (uid, instance, position, location, pixels)
        for segment, (tag, vr), value in zip(self._segments, _PER_SLICE, values):
            fp.write(segment)
            write_data_element(fp, DataElement(tag, vr, value))
        fp.write(self._segments[-1])
        return fp.getvalue()


def _buffer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    return fp


def _encode_elements(elements: Any) -> bytes:
    fp = _buffer()
    for elem in elements:
        write_data_element(fp, elem)
    return fp.getvalue()


def _write_series(folder: Path, ds: Dataset, stored: np.ndarray, z: np.ndarray, p: pd.Series,
                  uid_key: tuple[object, ...]) -> None:
    """Write one file per slice, named ``<InstanceNumber>.dcm``."""
    folder.mkdir(parents=True, exist_ok=True)
    encoder = _SeriesEncoder(ds)
    slices = len(z)
    origin = _ds(-(stored.shape[1] - 1) / 2 * float(p["pixel_spacing_mm"]))
    for k in range(slices):
        instance = k + 1 if int(p["z_descending"]) else slices - k
        data = encoder.encode(_uid(*uid_key, k), instance, [origin, origin, _ds(z[k])], _ds(z[k]),
                              stored[k].tobytes())
        (folder / f"{instance}.dcm").write_bytes(data)


def _write_patient(root: Path, p: pd.Series, i: int, slices: int, size: int, seed: int,
                   key: tuple[int, ...]) -> list[dict[str, Any]]:
    """Write one patient's study (and tumour mask); return its series.csv rows."""
    anat = _anatomy(p, slices, size, _rng(seed, "anatomy", i))
    rows = []
    for j, s in enumerate(p["series"]):
        hu = _render(anat, p, s["phase"], _rng(seed, "noise", i, j))
        rel = Path(p["header_id"]) / "ST0001" / f"SE{s['series_number']:04d}"
        _write_series(root / rel, _series_dataset(p, s, size), _stored(hu, p), anat.z, p, (*key, i, "sop", j))
        rows.append({"patient_id": p["patient_id"], "series_dir": rel.as_posix(), "n_slices": slices,
                     **{c: s[c] for c in ("series_uid", "phase", "series_number", "series_description",
                                          "protocol_name", "contrast_agent", "delay_s")}})
    if p["has_pvp"]:
        liver = np.zeros_like(anat.labels)
        liver[anat.labels == LIVER] = 1
        np.savez_compressed(
            root / "masks" / f"{p['patient_id']}.npz",
            mask=(anat.labels == TUMOUR).astype(np.uint8),
            z_mm=anat.z.astype(np.float64),
            body=(anat.labels != AIR).astype(np.uint8),
            liver=liver,
        )
    return rows


def _check_params(patients: int, seed: int, slices: int, size: int) -> None:
    if patients < 4:
        raise ValueError(f"patients must be >= 4, got {patients}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if slices < 8:
        raise ValueError(f"slices must be >= 8, got {slices}")
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")


def _parameters(patients: int, seed: int, slices: int, size: int) -> dict[str, Any]:
    return {"patients": int(patients), "seed": int(seed), "slices": int(slices), "size": int(size),
            "generator_version": GENERATOR_VERSION}


def generate_cohort(out: str | Path, *, patients: int = 164, seed: int = 0, slices: int = 24, size: int = 128,
                    show_progress: bool = True) -> Path:
    """Write a synthetic cohort as CT DICOM files, tumour masks and a manifest.

    Writes ``out/<folder>/ST0001/SE<nnnn>/<n>.dcm`` (``<folder>`` = the header PatientID),
    ``out/masks/<patient_id>.npz`` (arrays ``mask``, ``body``, ``liver``: uint8 of shape
    (slices, size, size) for the portal-venous series, cranial slice first; ``z_mm``: their
    z positions), ``out/series.csv`` (the phase of every series, for checking readers),
    ``out/manifest.csv`` and, last, ``out/synth.json``.

    Parameters
    ----------
    out : str or Path
        Output folder; must not exist or be empty (use :func:`ensure_cohort` to regenerate).
    patients : int
        Number of screened patients (default: the paper's 164).
    seed : int
        Random seed; the same seed gives the same manifest and the same pixel bytes.
    slices : int
        Axial slices per series (5 mm apart).
    size : int
        Rows and columns per slice; pixel spacing scales with ``128 / size``.
    show_progress : bool
        Show a tqdm progress bar over patients.

    Returns
    -------
    Path
        The manifest file.

    Raises
    ------
    FileExistsError
        If ``out`` exists and is not empty.
    ValueError
        If ``patients < 4``, ``seed < 0``, ``slices < 8`` or ``size < 32``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; generate into a new folder or use ensure_cohort")
    plan = _plan(patients, seed, slices, size)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    key = (seed, patients, slices, size)
    series_rows: list[dict[str, Any]] = []
    for i, p in tqdm(plan.iterrows(), total=len(plan), desc="synthetic cohort", unit="patient",
                     disable=not show_progress):
        series_rows.extend(_write_patient(out, p, i, slices, size, seed, key))
    write_csv(out / "series.csv", pd.DataFrame(series_rows))
    manifest = write_csv(out / "manifest.csv", _manifest(plan, slices))
    c = cohort_counts(patients)
    write_json(out / "synth.json", {
        "parameters": _parameters(patients, seed, slices, size),
        "generator_version": GENERATOR_VERSION,
        "oracle_auc": {"value": ORACLE_AUC, "n": 2000, "seed": 0},
        "counts": {**c, "no_pvp_reason": NO_PVP_REASON, "metastasis_reason": METASTASIS},
    })
    return manifest


def _matches(out: Path, params: dict[str, Any]) -> bool:
    try:
        meta = json.loads((out / "synth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (out / "manifest.csv").is_file() and meta.get("parameters") == params


def ensure_cohort(out: str | Path, **kwargs: Any) -> Path:
    """Generate a synthetic cohort once; reuse it while its parameters and generator version match.

    Parameters
    ----------
    out : str or Path
        Cohort folder. An existing folder is replaced only if it is empty or holds a synthetic
        cohort (``synth.json``); anything else raises :class:`FileExistsError`.
    **kwargs
        Passed to :func:`generate_cohort` (``patients``, ``seed``, ``slices``, ``size``, ``show_progress``).

    Returns
    -------
    Path
        The manifest file.

    Raises
    ------
    FileExistsError
        If ``out`` holds files but no ``synth.json``.
    """
    out = Path(out)
    defaults = {"patients": 164, "seed": 0, "slices": 24, "size": 128}
    unknown = set(kwargs) - set(defaults) - {"show_progress"}
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)}")
    params = _parameters(**{k: kwargs.get(k, v) for k, v in defaults.items()})
    if _matches(out, params):
        return out / "manifest.csv"
    if out.exists() and any(out.iterdir()) and not (out / "synth.json").is_file():
        raise FileExistsError(f"{out} exists and is not a synthetic cohort; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        generate_cohort(tmp, **kwargs)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / "cohort")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.csv"
