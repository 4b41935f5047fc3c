"""A corpus of bad and unusual inputs through one `pdstudy prepare`: each case's outcome in qc.csv.

Every patient is either included (with its warnings) or excluded with a reason naming what to fix;
the rest of the cohort proceeds, the summary counts exclusions by reason, and nothing prints a
traceback or an absolute path. Structural manifest errors are covered by tests/test_manifest.py.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import ct_dataset, write_series

from pdstudy.cli import main
from pdstudy.data import preprocess
from pdstudy.data.cache import load_prepared
from pdstudy.data.preprocess import PrepareConfig, prepare

STORED = 1100  # 76 HU with the factory's intercept of -1024
PVP = dict(description="PVP")
SIZE, FOV = 32, 64.0  # 2 mm output pixels


def _square(n: int, side_px: tuple[int, int], margin: tuple[int, int] | None = None) -> np.ndarray:
    """n slices with a centred bright rectangle of ``side_px`` (rows, cols) pixels on air."""
    (h, w), (mr, mc) = side_px, margin or (side_px[0] // 2, side_px[1] // 2)
    vol = np.zeros((n, h + 2 * mr, w + 2 * mc), dtype=np.uint16)
    vol[:, mr : mr + h, mc : mc + w] = STORED
    return vol


def _noisy(n: int, seed: int) -> np.ndarray:
    """A 20 mm square at 1 mm pixels plus noise (distinct pixel data per patient)."""
    rng = np.random.default_rng(seed)
    return _square(n, (20, 20)) + rng.integers(0, 30, size=(n, 40, 40)).astype(np.uint16)


def _save(folder: Path, name: str, ds) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name, enforce_file_format=True)
    return folder / name


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _build(root: Path) -> list[dict]:
    """Write the corpus below ``root``; returns the manifest rows."""
    rows: list[dict] = []

    def row(pid: str, **extra: str) -> None:
        rows.append(dict(patient_id=pid, split="train" if len(rows) % 3 else "test",
                         response="good" if len(rows) % 2 else "poor", recist="CR" if len(rows) % 2 else "PD",
                         dicom_dir=extra.pop("dicom_dir", pid), **extra))

    # Good patients, different matrix sizes and pixel spacings: the 20 mm square is 10 output pixels in each.
    write_series(root / "GOOD1", _noisy(4, 1), spacing=(1.0, 1.0), **PVP)
    write_series(root / "GOOD2", _square(4, (40, 40)), spacing=(0.5, 0.5), subdir="a/b", **PVP)
    write_series(root / "GOOD3", _square(4, (20, 40), margin=(30, 8)), spacing=(1.0, 0.5), **PVP)
    for pid in ("GOOD1", "GOOD2", "GOOD3"):
        row(pid)
    # Random bytes named .dcm: only that -> excluded naming it; beside a good series -> a warning.
    (root / "JUNK").mkdir()
    (root / "JUNK" / "junk.dcm").write_bytes(np.random.default_rng(0).bytes(4000))
    row("JUNK")
    write_series(root / "JUNKPLUS", _noisy(4, 2), **PVP)
    (root / "JUNKPLUS" / "junk.dcm").write_bytes(np.random.default_rng(1).bytes(4000))
    (root / "JUNKPLUS" / "README.txt").write_text("export notes")
    row("JUNKPLUS")
    # Header cut short: the only file -> excluded; one of five -> that slice skipped with a warning.
    (p,) = write_series(root / "TRUNCONLY", _noisy(1, 3), **PVP)
    _truncate(p, 300)
    row("TRUNCONLY")
    paths = write_series(root / "TRUNCHDR", _noisy(5, 4), subdir="s", **PVP)
    _truncate(paths[2], 300)
    row("TRUNCHDR")
    # Pixel data cut short: decoding fails -> excluded naming the file.
    paths = write_series(root / "TRUNCPIX", _noisy(4, 5), subdir="s", **PVP)
    _truncate(paths[1], len(paths[1].read_bytes()) - 500)
    row("TRUNCPIX")
    # Not CT / no pixel data / no portal-venous series / empty / missing folder.
    write_series(root / "MRONLY", _noisy(3, 6), modality="MR", **PVP)
    row("MRONLY")
    write_series(root / "NOPIX", _noisy(3, 7), pixel_data=False, **PVP)
    row("NOPIX")
    write_series(root / "NOPVP", _noisy(3, 8), description="ARTERIAL", contrast_agent="X")
    write_series(root / "NOPVP", _noisy(3, 8), description="plain", subdir="nc")
    row("NOPVP")
    (root / "EMPTY").mkdir()
    row("EMPTY")
    row("MISSING", dicom_dir="not_there")
    # Geometry: duplicate positions, no positions, uneven spacing; no rescale.
    write_series(root / "DUPES", _noisy(4, 9), series_uid="1.9.1", subdir="a", **PVP)
    write_series(root / "DUPES", _noisy(4, 10), series_uid="1.9.1", subdir="b", **PVP)
    row("DUPES")
    vol = _noisy(4, 11)
    for i in range(4):
        _save(root / "NOPOS", f"{i}.dcm", ct_dataset(vol[i], z=None, instance=4 - i, series_uid="1.9.2", **PVP))
    row("NOPOS")
    vol = _noisy(5, 12)
    for i, z in enumerate((0.0, -5.0, -10.0, -25.0, -30.0)):
        _save(root / "UNEVEN", f"{i}.dcm", ct_dataset(vol[i], z=z, instance=i + 1, series_uid="1.9.3", **PVP))
    row("UNEVEN")
    write_series(root / "NORESCALE", _noisy(3, 13) - 1024 * 0, slope=None, intercept=None, **PVP)
    row("NORESCALE")
    # Manifest fields that do not match the images.
    write_series(root / "BADUID", _noisy(3, 14), series_uid="1.9.4", **PVP)
    row("BADUID", pvp_series_uid="1.9.999")
    write_series(root / "ZOUT", _noisy(3, 15), **PVP)  # z = 0, -5, -10
    row("ZOUT", z_from_mm="100", z_to_mm="150")
    row("MANIFEST_EXCL", dicom_dir="GOOD1", exclusion="metastasis_outside_abdominal_cavity")
    return rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus prepared by one `pdstudy prepare` (2 workers); CLI output captured."""
    root = tmp_path_factory.mktemp("bad_corpus")
    pd.DataFrame(_build(root)).to_csv(root / "manifest.csv", index=False)
    out, err = io.StringIO(), io.StringIO()
    cache = tmp_path_factory.mktemp("bad_cache")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["prepare", "--manifest", str(root / "manifest.csv"), "--cache", str(cache), "--size", str(SIZE),
                   "--fov-mm", str(FOV), "--workers", "2", "--quiet"])
    (key,) = [p for p in cache.iterdir() if p.is_dir()]
    return dict(root=root, rc=rc, out=out.getvalue(), err=err.getvalue(), prepared=load_prepared(key))


def _qc(corpus) -> pd.DataFrame:
    return corpus["prepared"].qc.set_index("patient_id")


@pytest.mark.parametrize(("pid", "reason"), [
    ("JUNK", "no CT images with pixel data (modalities found: none); unreadable file junk.dcm (not a DICOM file)"),
    ("TRUNCONLY", "no CT images with pixel data (modalities found: none); unreadable file "),
    ("TRUNCPIX", "cannot decode pixel data of s/"),
    ("MRONLY", "no CT images with pixel data (modalities found: MR); skipped "),
    ("NOPIX", "no CT images with pixel data (modalities found: CT); skipped "),
    ("NOPVP", "no portal-venous series (found 2 CT series: arterial, non_contrast)"),
    ("EMPTY", "DICOM folder is empty"),
    ("MISSING", "DICOM folder not found (dicom_dir in the manifest)"),
    ("BADUID", "pvp_series_uid from the manifest not found among 1 CT series"),
    ("ZOUT", "no slices inside the manifest's z range [100, 150] mm (series spans -10 to 0 mm)"),
    ("MANIFEST_EXCL", "excluded in manifest: metastasis_outside_abdominal_cavity"),
])
def test_excluded_with_reason(corpus, pid, reason):
    qc = _qc(corpus)
    assert qc.loc[pid, "status"] == "excluded"
    assert qc.loc[pid, "reason"].startswith(reason), qc.loc[pid, "reason"]
    assert qc.loc[pid, "n_slices"] == 0 and qc.loc[pid, "study_key"] == "" and qc.loc[pid, "pixel_key"] == ""


def test_reasons_name_the_file_below_dicom_dir(corpus):
    qc = _qc(corpus)
    assert "TRUNCONLY" not in qc.loc["TRUNCONLY", "reason"]  # relative to the patient's folder
    assert "(incomplete DICOM header: truncated file?)" in qc.loc["TRUNCONLY", "reason"]
    assert ".dcm: modality MR, not CT" in qc.loc["MRONLY", "reason"]
    assert ".dcm: no pixel data" in qc.loc["NOPIX", "reason"]
    assert ".dcm (ValueError" in qc.loc["TRUNCPIX", "reason"]


@pytest.mark.parametrize(("pid", "n_slices", "warning"), [
    ("GOOD1", 4, "no slice range in manifest: all slices kept"),
    ("JUNKPLUS", 4, "unreadable file junk.dcm (not a DICOM file); skipped 1 non-DICOM file(s), e.g. README.txt"),
    ("TRUNCHDR", 4, "unreadable file s/"),
    ("DUPES", 4, "4 duplicate slice position(s) dropped"),
    ("NOPOS", 4, "missing ImagePositionPatient: slices ordered by InstanceNumber"),
    ("UNEVEN", 5, "uneven slice spacing (median 5.00 mm, range 5.00-15.00 mm; missing slices?)"),
    ("NORESCALE", 3, "missing RescaleSlope/RescaleIntercept: assumed 1 and 0"),
])
def test_included_with_warning(corpus, pid, n_slices, warning):
    qc = _qc(corpus)
    assert qc.loc[pid, "status"] == "included", qc.loc[pid, "reason"]
    assert qc.loc[pid, "n_slices"] == n_slices
    assert warning in qc.loc[pid, "warnings"], qc.loc[pid, "warnings"]
    assert len(qc.loc[pid, "study_key"]) == 16 and len(qc.loc[pid, "pixel_key"]) == 16


def test_truncated_header_slice_is_skipped_and_reported(corpus):
    warnings = _qc(corpus).loc["TRUNCHDR", "warnings"]
    assert "(incomplete DICOM header: truncated file?)" in warnings and "uneven slice spacing" in warnings


def test_instance_number_order_without_positions(corpus):
    prepared = corpus["prepared"]
    # NOPOS files 0..3 carry InstanceNumber 4..1: the cache holds them in instance order.
    assert len(prepared.patient_slices("NOPOS")) == 4
    assert prepared.index.loc[prepared.index["patient_id"] == "NOPOS", "z_mm"].isna().all()


def test_mixed_matrix_sizes_and_spacings_share_one_physical_grid(corpus):
    prepared = corpus["prepared"]
    expected = int(np.rint((STORED - 1024 + 215) / 500 * 255))
    for pid in ("GOOD1", "GOOD2", "GOOD3"):
        img = np.asarray(prepared.images[prepared.patient_slices(pid)[0]]).astype(int)
        assert img.shape == (SIZE, SIZE)
        row, col = img[SIZE // 2], img[:, SIZE // 2]
        assert abs(int((row > 100).sum()) - 10) <= 1, pid  # 20 mm at 2 mm per pixel
        assert abs(int((col > 100).sum()) - 10) <= 1, pid
        assert 0 <= img[SIZE // 2, SIZE // 2] - expected <= (16 if pid == "GOOD1" else 1), pid  # GOOD1: + noise
    assert [float(v) for v in _qc(corpus).loc[["GOOD1", "GOOD2", "GOOD3"], "pixel_spacing_mm"]] == [1.0, 0.5, 1.0]


def test_the_rest_of_the_cohort_proceeds_and_summary_counts_reasons(corpus):
    prepared = corpus["prepared"]
    qc = _qc(corpus)
    included = set(qc.index[qc["status"] == "included"])
    assert included == {"GOOD1", "GOOD2", "GOOD3", "JUNKPLUS", "TRUNCHDR", "DUPES", "NOPOS", "UNEVEN", "NORESCALE"}
    assert (qc.loc[qc["status"] == "excluded", "reason"].str.len() > 0).all()
    summary = prepared.exclusion_summary()
    assert summary.to_dict() == {
        "no CT images": 4, "cannot decode pixel data": 1, "no portal-venous series": 1, "DICOM folder is empty": 1,
        "DICOM folder not found": 1, "pvp_series_uid": 1, "no slices inside": 1,
        "metastasis_outside_abdominal_cavity": 1,
    }
    assert prepared.meta["exclusions"] == summary.to_dict()
    assert prepared.meta["n_included"] == len(included)


def test_cli_reports_without_traceback_or_absolute_paths(corpus):
    assert corpus["rc"] == 0
    assert "Traceback" not in corpus["err"] and "Traceback" not in corpus["out"]
    assert "9 included of 20 patients" in corpus["out"]
    assert "   4  no CT images" in corpus["out"]
    root = str(corpus["root"])
    for path in corpus["prepared"].root.iterdir():
        if path.suffix in (".csv", ".json"):
            assert root not in path.read_text(), path.name
    assert root not in corpus["out"] + corpus["err"]


# ---------------------------------------------------------------- a worker that dies


_real_process_patient = preprocess.process_patient


def _die_on_crash_patient(row: dict, root: str, config: PrepareConfig):
    """Stands in for a decoder that kills its process (segfault) on one patient's file."""
    if row["patient_id"] == "CRASH":
        os._exit(11)
    return _real_process_patient(row, root, config)


def test_a_crashing_worker_excludes_only_its_patient(tmp_path, monkeypatch):
    rows = []
    for i, pid in enumerate(("A", "CRASH", "B", "C")):
        write_series(tmp_path / pid, _noisy(3, 20 + i), **PVP)
        rows.append(dict(patient_id=pid, split="train", response="good", recist="CR", dicom_dir=pid))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    monkeypatch.setattr(preprocess, "process_patient", _die_on_crash_patient)
    prepared = prepare(tmp_path / "m.csv", tmp_path / "cache", config=PrepareConfig(image_size=16, fov_mm=64.0),
                       workers=2, show_progress=False)
    qc = prepared.qc.set_index("patient_id")
    assert qc.loc["CRASH", "status"] == "excluded" and "worker process crashed" in qc.loc["CRASH", "reason"]
    assert (qc.drop(index="CRASH")["status"] == "included").all()


def test_unexpected_errors_never_carry_absolute_paths(tmp_path):
    write_series(tmp_path / "P", _noisy(3, 30), **PVP)
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "P.npz").write_bytes(b"not a zip file")
    pd.DataFrame([dict(patient_id="P", split="train", response="good", recist="CR", dicom_dir="P",
                       mask_path="masks/P.npz")]).to_csv(tmp_path / "m.csv", index=False)
    prepared = prepare(tmp_path / "m.csv", tmp_path / "cache", config=PrepareConfig(image_size=16, fov_mm=64.0),
                       workers=1, show_progress=False)
    reason = prepared.qc.set_index("patient_id").loc["P", "reason"]
    assert reason.startswith("unexpected error") and str(tmp_path) not in reason, reason


# ---------------------------------------------------------------- leakage guard


def _study_params(tmp_path: Path, manifest: Path) -> dict:
    from importlib import resources

    import yaml

    from pdstudy.core.params import STUDY_PARAMETERS

    quick = yaml.safe_load(resources.files("pdstudy.core").joinpath("profiles", "quick.yaml").read_text())
    p = {k: quick[k] for k in STUDY_PARAMETERS if k in quick}
    p.update(run_dir=str(tmp_path / "run"), data_dir=str(tmp_path / "data"), manifest=str(manifest), image_size=32,
             fov_mm=64.0, crop_size=28, workers=1, epochs=1, slices_per_patient=2, batch_size=8, val_fraction=0.0)
    return p


def _leak_cohort(tmp_path: Path, dup_split: str) -> Path:
    """Six patients; DUP is patient T1's folder again under a second ID, in ``dup_split``."""
    rows = []
    for i, (pid, split, resp) in enumerate((("T1", "train", "good"), ("T2", "train", "poor"), ("T3", "train", "good"),
                                            ("S1", "test", "good"), ("S2", "test", "poor"))):
        write_series(tmp_path / pid, _noisy(3, 40 + i), study_uid=f"1.2.40.{i}", **PVP)
        rows.append(dict(patient_id=pid, split=split, response=resp, recist="CR" if resp == "good" else "PD",
                         dicom_dir=pid))
    rows.append(dict(patient_id="DUP", split=dup_split, response="good", recist="CR", dicom_dir="T1"))
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    return tmp_path / "m.csv"


def test_same_person_under_two_ids_in_two_splits_stops_before_training(tmp_path):
    from pdstudy.data.splits import LeakageError
    from pdstudy.study.protocol import Study, methods

    study = Study.from_parameters(_study_params(tmp_path, _leak_cohort(tmp_path, "test")), progress=False)
    qc = study.cohort.prepared.qc.set_index("patient_id")
    assert qc.loc["DUP", "study_key"] == qc.loc["T1", "study_key"] != qc.loc["T2", "study_key"]
    assert qc.loc["DUP", "pixel_key"] == qc.loc["T1", "pixel_key"] != qc.loc["T2", "pixel_key"]
    with pytest.raises(LeakageError, match=r"\['DUP', 'T1'\] share the same StudyInstanceUID"):
        study.run(methods("baseline", ["efficientnet_b0"]), section="leak")
    assert not (tmp_path / "data" / "stages").exists(), "nothing was trained"


def test_same_person_twice_in_one_split_is_allowed_with_a_warning(tmp_path):
    from pdstudy.data.splits import DuplicatePatientWarning
    from pdstudy.study.protocol import Study

    study = Study.from_parameters(_study_params(tmp_path, _leak_cohort(tmp_path, "train")), progress=False)
    with pytest.warns(DuplicatePatientWarning, match=r"\['DUP', 'T1'\] share .* within split 'train'"):
        contexts = list(study.contexts())
    assert len(contexts) == 1


def test_either_key_alone_identifies_the_same_person():
    from pdstudy.data.splits import LeakageError, check_no_leakage, same_patient_keys

    patients = pd.DataFrame({"patient_id": ["A", "B", "C"], "split": ["train", "test", "test"]})
    qc = pd.DataFrame({"patient_id": ["A", "B", "C"], "study_key": ["s1", "s2", ""], "pixel_key": ["p1", "p1", ""]})
    # Re-exported under new UIDs, same pixels.
    with pytest.raises(LeakageError, match=r"\['A', 'B'\] share identical pixel data"):
        check_no_leakage(patients, same_patient=same_patient_keys(qc))
    # Same study, different slices kept (another z range).
    qc["study_key"], qc["pixel_key"] = ["s1", "s1", ""], ["p1", "p2", ""]
    with pytest.raises(LeakageError, match="share the same StudyInstanceUID"):
        check_no_leakage(patients, same_patient=same_patient_keys(qc))
    # Empty keys (excluded patients, uniform slices) never match.
    qc["study_key"], qc["pixel_key"] = ["s1", "", ""], ["p1", "", ""]
    check_no_leakage(patients, same_patient=same_patient_keys(qc))
