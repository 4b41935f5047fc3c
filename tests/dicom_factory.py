"""Tiny hand-built CT DICOM files for unit tests (independent of the synthetic-cohort generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def ct_dataset(
    pixels: np.ndarray,
    *,
    z: float | None = 0.0,
    series_uid: str = "1.2.3.4",
    study_uid: str = "1.2.3",
    spacing: tuple[float, float] | None = (1.0, 1.0),
    slope: float | None = 1.0,
    intercept: float | None = -1024.0,
    description: str = "",
    contrast_agent: str = "",
    bolus_start: str = "",
    acquisition_time: str = "",
    modality: str = "CT",
    instance: int | None = 1,
    pixel_data: bool = True,
    patient_name: str = "TEST^ONLY",
    patient_id: str = "TEST0001",
    other_patient_ids: str | list[str] = "",
    accession: str = "",
    body_part: str = "",
) -> Dataset:
    """A CT Image Storage dataset holding ``pixels`` (uint16 or int16) with the given header fields.

    ``patient_name`` is a DICOM PN value (``"Family^Given"``); ``other_patient_ids`` one ID or a list (multi-valued
    OtherPatientIDs); an empty ``other_patient_ids``, ``accession`` (AccessionNumber) or ``body_part``
    (BodyPartExamined) leaves the element out.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    if other_patient_ids:
        ds.OtherPatientIDs = other_patient_ids
    if accession:
        ds.AccessionNumber = accession
    if body_part:
        ds.BodyPartExamined = body_part
    if description:
        ds.SeriesDescription = description
    if contrast_agent:
        ds.ContrastBolusAgent = contrast_agent
    if bolus_start:
        ds.ContrastBolusStartTime = bolus_start
    if acquisition_time:
        ds.AcquisitionTime = acquisition_time
    if instance is not None:
        ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    if z is not None:
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 5.0
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    signed = pixels.dtype == np.int16
    ds.PixelRepresentation = 1 if signed else 0
    if pixel_data:
        ds.PixelData = pixels.astype(np.int16 if signed else np.uint16).tobytes()
    return ds


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    z0: float = 0.0,
    dz: float = -5.0,
    series_uid: str | None = None,
    study_uid: str = "1.2.3",
    subdir: str = "",
    **kwargs: object,
) -> list[Path]:
    """Write one file per slice of ``volume`` (n, rows, cols); returns the paths."""
    series_uid = series_uid or generate_uid()
    out = folder / subdir if subdir else folder
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(volume):
        ds = ct_dataset(img, z=z0 + i * dz, series_uid=series_uid, study_uid=study_uid, instance=i + 1, **kwargs)  # type: ignore[arg-type]
        p = out / f"{series_uid[-6:]}_{i:03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
