"""Writing the synthetic cohort: CT DICOM datasets and their encoding, series and patients on disk,
:func:`generate_cohort` and :func:`ensure_cohort`.

See docs/synthetic_cohort.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from tqdm.auto import tqdm

from pdstudy.core.io import write_csv, write_json
from pdstudy.data.synth._plan import (
    _STUDY_DATES,
    GENERATOR_VERSION,
    METASTASIS,
    NO_PVP_REASON,
    ORACLE_AUC,
    Site,
    _manifest,
    _plan,
    _rng,
    _site_counts,
    _site_parameters,
    _uid,
    _uid_key,
    check_clinical_signal,
    check_phase_options,
    check_site_options,
    cohort_counts,
)
from pdstudy.data.synth._render import AIR, LIVER, TUMOUR, _anatomy, _render, _stored


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
    ds.Manufacturer = p["manufacturer"]  # the site's scanner; the images are synthetic
    ds.InstitutionName = p["institution"]
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "CT ABDOMEN"
    ds.SeriesDescription = s["series_description"]
    ds.ManufacturerModelName = p["model"]
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
    ds.SliceThickness = _ds(p["slice_mm"])
    ds.KVP = str(int(p["kvp"]))
    ds.ProtocolName = s["protocol_name"]
    ds.SpacingBetweenSlices = _ds(p["slice_mm"])
    ds.ConvolutionKernel = p["kernel"]
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
                   key: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Write one patient's study (and tumour mask); return its series.csv rows."""
    anat = _anatomy(p, slices, size, _rng(seed, "anatomy", i))
    n_slices = len(anat.z)
    rows = []
    for j, s in enumerate(p["series"]):
        hu = _render(anat, p, s["phase"], _rng(seed, "noise", i, j))
        rel = Path(p["header_id"]) / "ST0001" / f"SE{s['series_number']:04d}"
        _write_series(root / rel, _series_dataset(p, s, size), _stored(hu, p), anat.z, p, (*key, i, "sop", j))
        rows.append({"patient_id": p["patient_id"], "site": p["site"], "series_dir": rel.as_posix(),
                     "n_slices": n_slices,
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


def _parameters(patients: int, seed: int, slices: int, size: int, clinical_signal: float = 1.0,
                phase_style: str | None = None, all_phases: bool = False, sites: Any = 2, site_shift: Any = 1.0,
                site_poor: Any = 1.0) -> dict[str, Any]:
    """``synth.json``'s parameters: the sites always (``sites``, ``site_shift``, ``site_poor``; every Site's fields
    when they are given as Site objects); ``clinical_signal``, ``phase_style`` and ``all_phases`` only when they are
    not their defaults."""
    out: dict[str, Any] = {"patients": int(patients), "seed": int(seed), "slices": int(slices), "size": int(size),
                           **_site_parameters(sites, site_shift, site_poor)}
    if check_clinical_signal(clinical_signal) != 1.0:
        out["clinical_signal"] = float(clinical_signal)
    phase_style, all_phases = check_phase_options(phase_style, all_phases)
    if phase_style is not None:
        out["phase_style"] = phase_style
    if all_phases:
        out["all_phases"] = True
    return {**out, "generator_version": GENERATOR_VERSION}


def generate_cohort(out: str | Path, *, patients: int = 164, seed: int = 0, slices: int = 24, size: int = 128,
                    clinical_signal: float = 1.0, phase_style: str | None = None, all_phases: bool = False,
                    sites: int | Sequence[Site] = 2, site_shift: float = 1.0, site_poor: float = 1.0,
                    show_progress: bool = True) -> Path:
    """Write a synthetic cohort as CT DICOM files, tumour masks and a manifest.

    Writes ``out/<folder>/ST0001/SE<nnnn>/<n>.dcm`` (``<folder>`` = the header PatientID),
    ``out/masks/<patient_id>.npz`` (arrays ``mask``, ``body``, ``liver``: uint8 of shape
    (the site's slices, size, size) for the portal-venous series, cranial slice first; ``z_mm``: their
    z positions), ``out/series.csv`` (the site and phase of every series, for checking readers),
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
        Axial slices per series at 5 mm (site A); a site with slice thickness ``t`` has ``round(slices * 5 / t)``
        slices over the same z range.
    size : int
        Rows and columns per slice; pixel spacing scales with ``128 / size`` (and the site's ``spacing_scale``).
    clinical_signal : float
        How strongly the clinical covariates depend on the response, in [0, 1]: 1 (default) draws each
        split x response group from its own Table 1 margins (the paper's counts, and their association with
        the response); 0 draws both response groups of a split from the same pooled margins (no
        association); values between mix the two (docs/synthetic_cohort.md, "Clinical covariates"). The
        images do not depend on it.
    phase_style : {None, "explicit", "protocol", "generic"}
        How every patient's series are told apart (:data:`PHASE_STYLES`, docs/synthetic_cohort.md, "Contrast
        phases"): None (default) draws the style per patient (about 45 % ``explicit``, 25 % ``protocol``,
        30 % ``generic``); a style gives it to every patient. ``explicit`` names the phase in SeriesDescription.
    all_phases : bool
        False (default): about 40 % of the patients with a portal-venous series also have a non-contrast one.
        True: every patient with a portal-venous series (the included ones and those excluded for metastasis)
        has all three (arterial, portal venous, non-contrast). The patients without a portal-venous series by
        design (``counts["no_pvp"]`` of :func:`cohort_counts`) keep the series the plan gives them (arterial
        and/or non-contrast), so they are still excluded for it. Neither parameter changes any other draw:
        patients, manifest, masks and the pixels of each series are those of the default cohort (the UIDs
        and the headers that name the phase differ).
    sites : int or sequence of Site
        The sites that acquire the cohort (docs/synthetic_cohort.md, "Sites and scanners"): a number of default
        sites, 1-4 (:func:`default_sites`; default 2: site A acquires as the single-site generator at 120 kVp,
        site B with a sharper kernel, 3 mm slices, 100 kVp, smaller pixels, more noise and a +8 HU offset), or
        the :class:`Site` objects themselves. Every split x response group is apportioned to the sites by their
        shares (poor responders weighted by ``poor_weight``); the cohort's counts stay those of
        :func:`cohort_counts`.
    site_shift : float
        How far the default sites after A acquire from A, in [0, 2] (0: every site acquires like A; 1 the
        default differences). Must stay 1 when ``sites`` are Site objects.
    site_poor : float
        Poor-response weight (> 0) of every default site after A: 1 (default) gives every site the same poor
        share; 2 about doubles the odds of poor response there. Must stay 1 when ``sites`` are Site objects.
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
        If ``patients < 4``, ``seed < 0``, ``slices < 8``, ``size < 32``, ``clinical_signal`` outside [0, 1],
        ``phase_style`` not None or one of :data:`PHASE_STYLES`, ``all_phases`` not a bool, or the sites invalid
        (:func:`check_site_options`).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; generate into a new folder or use ensure_cohort")
    site_options = {"sites": sites, "site_shift": site_shift, "site_poor": site_poor}
    plan = _plan(patients, seed, slices, size, clinical_signal, phase_style=phase_style, all_phases=all_phases,
                 **site_options)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    key = _uid_key(patients, seed, slices, size, clinical_signal, phase_style, bool(all_phases), **site_options)
    series_rows: list[dict[str, Any]] = []
    for i, p in tqdm(plan.iterrows(), total=len(plan), desc="synthetic cohort", unit="patient",
                     disable=not show_progress):
        series_rows.extend(_write_patient(out, p, i, slices, size, seed, key))
    write_csv(out / "series.csv", pd.DataFrame(series_rows))
    manifest = write_csv(out / "manifest.csv", _manifest(plan, slices))
    c = cohort_counts(patients)
    write_json(out / "synth.json", {
        "parameters": _parameters(patients, seed, slices, size, clinical_signal, phase_style, all_phases,
                                  **site_options),
        "generator_version": GENERATOR_VERSION,
        "sites": _site_counts(plan, check_site_options(**site_options), slices),
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
        Passed to :func:`generate_cohort` (``patients``, ``seed``, ``slices``, ``size``, ``clinical_signal``,
        ``phase_style``, ``all_phases``, ``sites``, ``site_shift``, ``site_poor``, ``show_progress``).

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
    defaults = {"patients": 164, "seed": 0, "slices": 24, "size": 128, "clinical_signal": 1.0,
                "phase_style": None, "all_phases": False, "sites": 2, "site_shift": 1.0, "site_poor": 1.0}
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
