"""Tests of the synthetic DICOM cohort (small cohorts on disk; the default 164 through the planning fast path)."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from scipy.ndimage import binary_dilation, binary_erosion
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from pdstudy.data import synth
from pdstudy.data.manifest import read_manifest
from pdstudy.data.synth._plan import _AGES, _TABLE1, _plan
from pdstudy.data.synth._render import _HU, LIVER
from pdstudy.data.synth._write import _series_dataset, _SeriesEncoder

SMALL = {"patients": 20, "seed": 0, "slices": 16, "size": 64}
REFERENCE = Path("/work/shared/reference/table1_cohort.csv")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "cohort"
    synth.generate_cohort(root, show_progress=False, **SMALL)
    return root


@pytest.fixture(scope="module")
def headers(cohort: Path) -> pd.DataFrame:
    """One row per DICOM file with the header fields the tests need (pixels not decoded)."""
    rows = []
    for f in sorted(cohort.rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        rel = f.relative_to(cohort)
        rows.append(
            {
                "folder": rel.parts[0],
                "series_dir": rel.parent.as_posix(),
                "file": rel.as_posix(),
                "transfer_syntax": ds.file_meta.TransferSyntaxUID,
                "meta_sop": ds.file_meta.MediaStorageSOPInstanceUID,
                "sop_class": ds.SOPClassUID,
                "sop": ds.SOPInstanceUID,
                "series_uid": ds.SeriesInstanceUID,
                "study_uid": ds.StudyInstanceUID,
                "frame_uid": ds.FrameOfReferenceUID,
                "modality": ds.Modality,
                "patient_id": ds.PatientID,
                "patient_name": str(ds.PatientName),
                "spacing": float(ds.PixelSpacing[0]),
                "z": float(ds.ImagePositionPatient[2]),
                "instance": int(ds.InstanceNumber),
                "slope": float(ds.RescaleSlope),
                "intercept": float(ds.RescaleIntercept),
                "rescale_type": ds.RescaleType,
                "pixel_representation": int(ds.PixelRepresentation),
                "bits_stored": int(ds.BitsStored),
                "description": ds.get("SeriesDescription", ""),
                "protocol": ds.get("ProtocolName", ""),
                "agent": ds.get("ContrastBolusAgent", ""),
                "bolus": ds.get("ContrastBolusStartTime", ""),
                "acquisition": ds.AcquisitionTime,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def latent() -> pd.DataFrame:
    return synth.sample_latent(2000, 0)


def _seconds(tm: str) -> float:
    return int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:])


def _hu_volume(cohort: Path, series_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """HU volume of a series, cranial slice first, and its z positions."""
    dss = sorted(
        (pydicom.dcmread(f) for f in (cohort / series_dir).glob("*.dcm")),
        key=lambda d: -float(d.ImagePositionPatient[2]),
    )
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    return hu, np.array([float(d.ImagePositionPatient[2]) for d in dss])


# ----------------------------------------------------------------- cohort structure (fast path)


def test_default_cohort_counts_match_the_paper():
    m = synth.plan_cohort()
    assert len(m) == 164
    counts = m.groupby(["split", "response"]).size()
    assert counts[("train", "good")] == 73 and counts[("train", "poor")] == 39
    assert counts[("test", "good")] == 14 and counts[("test", "poor")] == 14
    assert (m["exclusion"] == synth.METASTASIS).sum() == 19
    no_pvp = m[(m["split"] == "") & (m["exclusion"] == "")]
    assert len(no_pvp) == 5 and (no_pvp["mask_path"] == "").all() and (no_pvp["z_from_mm"] == "").all()
    assert (m.loc[m["split"] == "", ["response", "recist"]] != "").all().all()
    assert synth.sample_latent(164, 0)["has_pvp"].sum() == 164 - 5
    for split in ("train", "test"):  # every RECIST category present in each split
        assert set(m.loc[m["split"] == split, "recist"]) == {"CR", "PR", "SD", "PD"}, split


@pytest.mark.parametrize("n", [4, 12, 20, 30, 50, 164, 500])
def test_scaled_counts_keep_both_classes(n: int):
    c = synth.cohort_counts(n)
    assert c["metastasis"] + c["no_pvp"] + c["train"] + c["test"] == n
    if n >= 12:
        assert min(c["train_good"], c["train_poor"], c["test_good"], c["test_poor"]) >= 1


def test_table1_margins_reproduced_with_corrections():
    m = synth.plan_cohort()
    inc = m[m["split"] != ""]
    for (split, response), table in _TABLE1.items():
        group = inc[(inc["split"] == split) & (inc["response"] == response)]
        for cov, counts in table.items():
            assert group[cov].value_counts().to_dict() == {k: v for k, v in counts.items() if v}
        mean, lo, hi = _AGES[(split, response)]
        ages = group["age"].astype(int)
        assert ages.min() == lo and ages.max() == hi and abs(ages.mean() - mean) < 0.05
    assert _TABLE1[("test", "good")]["sex"] == {"F": 3, "M": 11}
    assert _TABLE1[("test", "poor")]["sex"] == {"F": 1, "M": 13}


@pytest.mark.skipif(not REFERENCE.is_file(), reason="paper reference tables not available")
def test_table1_transcription_matches_reference():
    ref = pd.read_csv(REFERENCE)
    names = {
        "Sex": "sex",
        "Lauren type": "lauren",
        "CEA": "cea",
        "CA199": "ca199",
        "Clinical T stage": "ct_stage",
        "Clinical N stage": "cn_stage",
        "Clinical M stage": "cm_stage",
    }
    corrected = {("Sex", "test", "GR"), ("Sex", "test", "PR")}
    for (char, split, group), rows in ref.groupby(["characteristic", "split", "response"]):
        if (char, split, group) in corrected:
            continue
        counts = _TABLE1[(split, {"GR": "good", "PR": "poor"}[group])][names[char]]
        assert sorted(counts.values()) == sorted(rows["n"].tolist()), (char, split, group)


def test_liver_range_has_at_least_12_slices_at_default_size():
    m = synth.plan_cohort()
    eligible = m[m["split"] != ""]
    sites = {s.code: s for s in synth.default_sites()}
    thickness = eligible["site"].map(lambda c: sites[c].slice_mm)
    n_in_range = (eligible["z_from_mm"].astype(float) - eligible["z_to_mm"].astype(float)).abs() / thickness + 1
    n_slices = 24 * 5.0 / thickness  # the site's slices over the 24 x 5 mm of site A
    assert (n_in_range >= 12).all() and (n_in_range < n_slices).all()
    assert set(eligible["site"]) == {"A", "B"}


# ----------------------------------------------------------------- signal and nuisance


def test_oracle_auc_in_documented_range():
    auc = synth.oracle_auc(2000)
    assert 0.80 <= auc <= 0.90
    assert auc == pytest.approx(synth.ORACLE_AUC, abs=5e-5)


def test_nuisance_variables_do_not_predict_response(latent: pd.DataFrame):
    for col in synth.NUISANCE_COLUMNS:
        auc = roc_auc_score(latent["y"], latent[col].astype(float))
        assert 0.44 <= auc <= 0.56, (col, auc)
    for col in synth.TUMOUR_FEATURES:
        auc = roc_auc_score(latent["y"], latent[col])
        assert abs(auc - 0.5) > 0.15, (col, auc)


def test_latent_matches_generated_cohort(latent: pd.DataFrame):
    small = synth.sample_latent(SMALL["patients"], SMALL["seed"])
    plan = synth.plan_cohort(SMALL["patients"], SMALL["seed"])
    assert small["patient_id"].tolist() == plan["patient_id"].tolist()
    assert small["response"].tolist() == plan["response"].tolist()
    assert set(latent["y"]) == {0, 1}


# ----------------------------------------------------------------- DICOM files


def test_files_are_valid_ct_dicom(cohort: Path, headers: pd.DataFrame):
    assert len(headers) > 0
    assert (headers["transfer_syntax"] == ExplicitVRLittleEndian).all()
    assert (headers["sop_class"] == CTImageStorage).all() and (headers["modality"] == "CT").all()
    assert (headers["meta_sop"] == headers["sop"]).all()
    assert headers["sop"].is_unique
    assert headers.groupby("series_dir")["series_uid"].nunique().eq(1).all()
    assert headers["series_uid"].nunique() == headers["series_dir"].nunique()
    per_patient = headers.groupby("folder")
    assert per_patient["study_uid"].nunique().eq(1).all() and per_patient["frame_uid"].nunique().eq(1).all()
    assert headers["study_uid"].nunique() == SMALL["patients"]
    assert per_patient["spacing"].first().nunique() > 5
    assert (headers["slope"] == 1).all() and set(headers["intercept"]) == {-1024.0, -1000.0}
    assert (headers["rescale_type"] == "HU").all()
    assert set(headers["pixel_representation"]) == {0, 1} and set(headers["bits_stored"]) == {12, 16}
    # Instance 1 is the cranial slice for some patients and the caudal one for others.
    first = headers[headers["instance"] == 1].groupby("series_dir")["z"].first()
    top = headers.groupby("series_dir")["z"].max()
    assert (first == top[first.index]).any() and (first != top[first.index]).any()


def test_pixels_need_rescaling_to_hu(cohort: Path, headers: pd.DataFrame):
    series = pd.read_csv(cohort / "series.csv", dtype=str, keep_default_na=False)
    pvp = series[series["phase"] == "portal_venous"].iloc[0]
    f = next((cohort / pvp["series_dir"]).glob("*.dcm"))
    ds = pydicom.dcmread(f)
    stored = ds.pixel_array
    hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert not np.array_equal(stored, hu)
    assert hu.min() < -900 and np.median(hu[hu > -500]) > -200
    volume, _ = _hu_volume(cohort, pvp["series_dir"])
    masks = np.load(cohort / f"masks/{pvp['patient_id']}.npz")
    assert abs(np.median(volume[masks["liver"] == 1]) - 110) < 30  # enhanced liver in portal venous phase


def test_encoder_writes_the_same_bytes_as_save_as():
    plan = _plan(**SMALL)
    p = plan.iloc[0]
    template = _series_dataset(p, p["series"][0], SMALL["size"])
    pixels = np.arange(SMALL["size"] ** 2, dtype="<u2").tobytes()
    encoded = _SeriesEncoder(template).encode("2.25.12345", 7, ["-1.5", "-1.5", "-20"], "-20", pixels)
    ds = copy.deepcopy(template)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "2.25.12345"
    ds.InstanceNumber, ds.ImagePositionPatient = 7, ["-1.5", "-1.5", "-20"]
    ds.SliceLocation, ds.PixelData = "-20", pixels
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert buffer.getvalue() == encoded


# ----------------------------------------------------------------- manifest and identities


def test_manifest_is_valid_and_pseudonymous(cohort: Path, headers: pd.DataFrame):
    m = read_manifest(cohort / "manifest.csv")
    assert m["patient_id"].tolist() == synth.plan_cohort(**SMALL)["patient_id"].tolist()
    folders = {p.name for p in cohort.iterdir() if p.is_dir() and p.name != "masks"}
    assert set(m["dicom_dir"]) == folders
    ids = headers.groupby("folder")["patient_id"].unique()
    assert all(len(v) == 1 and v[0] == folder for folder, v in ids.items())  # folder = header PatientID
    assert not set(m["patient_id"]) & set(headers["patient_id"])
    text = (cohort / "manifest.csv").read_text()
    assert not any(name in text for name in headers["patient_name"].unique())
    assert all(name.startswith("FAKE^") for name in headers["patient_name"])
    assert not any(pid in f for pid in m["patient_id"] for f in headers["file"])


def test_phases_marked_by_headers(cohort: Path, headers: pd.DataFrame):
    m = read_manifest(cohort / "manifest.csv")
    series = headers.groupby("series_dir").first()
    series["delay"] = [
        _seconds(a) - _seconds(b) if b else np.nan for a, b in zip(series["acquisition"], series["bolus"])
    ]
    assert ((series["agent"] != "") == (series["bolus"] != "")).all()
    truth = pd.read_csv(cohort / "series.csv", dtype=str, keep_default_na=False).set_index("series_dir")
    arterial = series["delay"].between(25, 40)
    pvp = series["delay"].between(60, 80)
    assert (arterial == (truth.loc[series.index, "phase"] == "arterial")).all()
    assert (pvp == (truth.loc[series.index, "phase"] == "portal_venous")).all()
    has_pvp = series[pvp].groupby("folder").size()
    has_art = series[arterial].groupby("folder").size()
    no_pvp = m[(m["split"] == "") & (m["exclusion"] == "")]
    assert len(no_pvp) == 1 and no_pvp["dicom_dir"].iloc[0] not in has_pvp.index
    for folder in m.loc[m["split"] != "", "dicom_dir"]:
        assert has_pvp.get(folder, 0) == 1 and has_art.get(folder, 0) == 1
    assert series["description"].nunique() > 3  # explicit and generic naming both occur


def test_phases_agree_with_package_reader(cohort: Path):
    dicom = pytest.importorskip("pdstudy.data.dicom")
    m = read_manifest(cohort / "manifest.csv")
    truth = pd.read_csv(cohort / "series.csv", dtype=str, keep_default_na=False).set_index("series_uid")
    for folder in m["dicom_dir"]:
        for s in dicom.scan_folder(cohort / folder).series:
            assert dicom.classify_phase(s)[0] == truth.loc[s.uid, "phase"], (folder, s.description)


def test_masks_align_with_images(cohort: Path, headers: pd.DataFrame):
    m = read_manifest(cohort / "manifest.csv")
    truth = pd.read_csv(cohort / "series.csv", dtype=str, keep_default_na=False)
    for _, row in m.iterrows():
        if not row["mask_path"]:
            continue
        arrays = np.load(cohort / row["mask_path"])
        mask, body, liver, z = arrays["mask"], arrays["body"], arrays["liver"], arrays["z_mm"]
        pvp_dir = truth[(truth["patient_id"] == row["patient_id"]) & (truth["phase"] == "portal_venous")]
        shape = (int(pvp_dir["n_slices"].iloc[0]), SMALL["size"], SMALL["size"])  # the site's slices
        assert mask.shape == body.shape == liver.shape == shape and mask.dtype == np.uint8
        assert mask.any() and not (mask & (1 - body)).any()
        series_z = headers[headers["series_dir"] == pvp_dir["series_dir"].iloc[0]]["z"]
        np.testing.assert_allclose(z, np.sort(series_z.to_numpy())[::-1])
        lo, hi = sorted((float(row["z_from_mm"]), float(row["z_to_mm"])))
        in_range = (z >= lo - 1e-6) & (z <= hi + 1e-6)
        assert (liver.any(axis=(1, 2)) == in_range).all() and (~in_range).any()
        assert mask[in_range].any()


def test_tumour_is_a_visible_mass_carrying_the_latent_features(
    cohort: Path, headers: pd.DataFrame, latent: pd.DataFrame
):
    """The mask's volume tracks the latent radius, the mass's portal-venous HU tracks the latent
    enhancement, and the mass stands out from its surroundings and is darker than the liver."""
    plan = _plan(**SMALL).set_index("patient_id")
    m = read_manifest(cohort / "manifest.csv")
    truth = pd.read_csv(cohort / "series.csv", dtype=str, keep_default_na=False)
    in_plane = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], dtype=bool)
    rows = []
    for _, row in m[m["mask_path"] != ""].iterrows():
        arrays = np.load(cohort / row["mask_path"])
        mask, liver = arrays["mask"] > 0, arrays["liver"] > 0
        pvp = truth[(truth["patient_id"] == row["patient_id"]) & (truth["phase"] == "portal_venous")]
        series_dir = pvp["series_dir"].iloc[0]
        hu, _ = _hu_volume(cohort, series_dir)
        spacing = headers.loc[headers["series_dir"] == series_dir, "spacing"].iloc[0]
        core = binary_erosion(mask, in_plane)  # away from the partial-volume edge
        ring = binary_dilation(mask, in_plane, iterations=2) & ~binary_dilation(mask, in_plane)
        tumour_hu = float(hu[core].mean()) if core.sum() >= 5 else np.nan
        rows.append({
            "volume": mask.sum() * spacing**2 * plan.loc[row["patient_id"], "slice_mm"], "tumour_hu": tumour_hu,
            "contrast": float(np.median(np.abs(hu[ring] - tumour_hu))), "liver_hu": float(np.median(hu[liver])),
            "radius": plan.loc[row["patient_id"], "tumour_radius_mm"],
            "enhancement": plan.loc[row["patient_id"], "tumour_enhancement_hu"],
            "noise": plan.loc[row["patient_id"], "noise_sd_hu"],
        })
    f = pd.DataFrame(rows).dropna()
    assert len(f) >= 10
    assert spearmanr(f["volume"], f["radius"])[0] > 0.9
    assert spearmanr(f["tumour_hu"], f["enhancement"])[0] > 0.8
    # Water (5 HU), fat or enhancing wall around the mass, not more of the same: every mass differs from the
    # 1-2 pixels around it by more than 3 noise SDs, the typical mass by more than 50 HU.
    assert (f["contrast"] > 3 * f["noise"]).all(), f[["contrast", "noise", "tumour_hu"]]
    assert f["contrast"].median() > 50
    # Hypo-attenuating relative to the liver: in these few patients' images, and by design (the latent enhancement
    # of 2000 patients against the liver's portal-venous HU).
    assert f["tumour_hu"].median() < f["liver_hu"].median()
    assert latent["tumour_enhancement_hu"].median() < _HU[LIVER, 2] - 15


# ----------------------------------------------------------------- determinism and caching


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path):
    kwargs = {"patients": 6, "slices": 8, "size": 32, "show_progress": False}
    roots = [tmp_path / name for name in ("a", "b", "c")]
    for root, seed in zip(roots, (3, 3, 4)):
        synth.generate_cohort(root, seed=seed, **kwargs)
    a, b, c = roots
    assert (a / "manifest.csv").read_bytes() == (b / "manifest.csv").read_bytes()
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.dcm"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.dcm"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    for npz in (a / "masks").glob("*.npz"):
        x, y = np.load(npz), np.load(b / "masks" / npz.name)
        assert all(np.array_equal(x[k], y[k]) for k in x.files)
    assert (a / "manifest.csv").read_bytes() != (c / "manifest.csv").read_bytes()
    pixels_a = pydicom.dcmread(next(a.rglob("*.dcm"))).PixelData
    assert all(pydicom.dcmread(f).PixelData != pixels_a for f in c.rglob("*.dcm"))


def test_ensure_cohort_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "cohort"
    kwargs = {"patients": 5, "slices": 8, "size": 32, "show_progress": False}
    manifest = synth.ensure_cohort(out, **kwargs)
    assert manifest == out / "manifest.csv" and (out / "synth.json").is_file()
    with pytest.raises(FileExistsError):
        synth.generate_cohort(out, **kwargs)

    def fail(*args: object, **kw: object) -> None:
        raise AssertionError("regenerated")

    with monkeypatch.context() as mp:
        mp.setattr("pdstudy.data.synth._write.generate_cohort", fail)  # looked up there by ensure_cohort
        assert synth.ensure_cohort(out, **kwargs) == manifest
    synth.ensure_cohort(out, **{**kwargs, "seed": 1})
    expected = synth.plan_cohort(5, 1, slices=8, size=32)["dicom_dir"].tolist()
    assert read_manifest(manifest)["dicom_dir"].tolist() == expected
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left

    other = tmp_path / "not_a_cohort"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        synth.ensure_cohort(other, **kwargs)
    assert (other / "notes.txt").read_text() == "keep me"
