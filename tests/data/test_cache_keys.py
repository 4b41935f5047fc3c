"""The slice-cache key covers the cohort's files, not only the manifest's bytes (issue 13, stale caches).

Each test changes one thing below an unchanged manifest and checks that ``prepare`` builds (and
fills) a new cache instead of returning the stale one, or that an unchanged cohort, wherever it lies,
keeps its key and reuses its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_factory import write_series

import pdstudy.data.preprocess as pp
from pdstudy.data.manifest import manifest_checksum
from pdstudy.data.verify import write_listing

CONFIG = pp.PrepareConfig(image_size=16, fov_mm=32.0)  # 2 mm output pixels = the source's: no resampling blur


def _volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1024 + rng.normal(40, 30, size=(3, 16, 16))).clip(0).astype(np.uint16)


def _make_cohort(root: Path) -> Path:
    """Three patients (3 slices of 16 px at 2 mm), P1 with a tumour mask, P3 excluded in the manifest."""
    rows = []
    for i, pid in enumerate(("P1", "P2", "P3")):
        write_series(root / pid, _volume(i), spacing=(2.0, 2.0), description="PVP")
        rows.append({"patient_id": pid, "split": "train" if i < 2 else "test", "response": "good" if i else "poor",
                     "recist": "CR" if i else "PD", "dicom_dir": pid, "mask_path": "", "exclusion": ""})
    (root / "masks").mkdir()
    mask = np.zeros((3, 16, 16), dtype=np.uint8)
    mask[:, 6:10, 6:10] = 1
    np.savez_compressed(root / "masks" / "P1.npz", mask=mask, z_mm=np.array([0.0, -5.0, -10.0]))
    rows[0]["mask_path"] = "masks/P1.npz"
    rows[2]["exclusion"] = "metastasis_outside_abdominal_cavity"
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    return _make_cohort(tmp_path / "cohort")


def _prepare(manifest: Path, cache: Path):
    return pp.prepare(manifest, cache, config=CONFIG, workers=1, show_progress=False)


def _key(manifest: Path) -> str:
    return pp.cache_key(manifest_checksum(manifest), CONFIG, pp.cohort_signature(manifest))


def _changed(path: Path, before: os.stat_result) -> None:
    """Make sure a rewritten file's stat differs, as a re-export's would (coarse file-system clocks)."""
    after = path.stat()
    if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
        os.utime(path, ns=(after.st_atime_ns, before.st_mtime_ns + 1_000_000))


def _first_file(folder: Path) -> Path:
    return sorted(folder.rglob("*.dcm"))[0]


def test_unchanged_cohort_keeps_its_key_and_cache(cohort, tmp_path):
    first = _prepare(cohort, tmp_path / "cache")
    stamp = (first.root / "meta.json").stat().st_mtime_ns
    again = _prepare(cohort, tmp_path / "cache")
    assert again.root == first.root and (again.root / "meta.json").stat().st_mtime_ns == stamp
    assert first.root.name == _key(cohort)
    signature = first.meta["cohort_signature"]
    assert signature == pp.cohort_signature(cohort)
    assert signature["n_files"] == 3 + 3 + 1  # P1 and P2's slices and P1's mask; P3 is excluded: not read


def test_one_changed_pixel_rebuilds_the_cache(cohort, tmp_path):
    old = _prepare(cohort, tmp_path / "cache")
    old_images = np.array(old.images)
    manifest_sha = manifest_checksum(cohort)
    # Re-export one slice of P2 with one pixel changed: same manifest, same file name, same size.
    path = _first_file(cohort.parent / "P2")
    before = path.stat()
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    pixels[8, 8] = 1024 + 250  # 250 HU: inside the window, far from the neighbourhood's ~40 HU
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    _changed(path, before)
    assert path.stat().st_size == before.st_size and manifest_checksum(cohort) == manifest_sha
    new = _prepare(cohort, tmp_path / "cache")
    assert new.root != old.root and new.root.name == _key(cohort)
    changed = np.flatnonzero((np.array(new.images) != old_images).reshape(len(old_images), -1).any(axis=1))
    assert changed.size == 1 and new.index.at[int(changed[0]), "patient_id"] == "P2"  # re-done from the new file


def test_touched_file_of_same_bytes_changes_the_key(cohort):
    key = _key(cohort)
    path = _first_file(cohort.parent / "P1")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert _key(cohort) != key  # no file is read: a new modification time counts as a change


def test_corrected_mask_rebuilds_the_cache(cohort, tmp_path):
    old = _prepare(cohort, tmp_path / "cache")
    mask_file = cohort.parent / "masks" / "P1.npz"
    before = mask_file.stat()
    with np.load(mask_file) as npz:
        mask, z = npz["mask"].copy(), npz["z_mm"]
    mask[1, 9, 10] = 1  # one voxel more
    np.savez_compressed(mask_file, mask=mask, z_mm=z)
    _changed(mask_file, before)
    new = _prepare(cohort, tmp_path / "cache")
    assert new.root != old.root
    assert old.masks is not None and new.masks is not None
    assert int(np.array(new.masks).sum()) == int(np.array(old.masks).sum()) + 1


def test_verify_listing_and_synthetic_generator_enter_the_key(cohort):
    key = _key(cohort)
    listing = write_listing(cohort, show_progress=False)
    with_listing = _key(cohort)
    assert with_listing != key
    signature = pp.cohort_signature(cohort)
    assert signature["listing"] == hashlib.sha256(listing.read_bytes()).hexdigest()
    # A synthetic cohort's generator version (synth.json beside the manifest) is part of the key.
    synth = cohort.parent / "synth.json"
    synth.write_text(json.dumps({"generator_version": "2.1.1", "parameters": {"patients": 3}}))
    v1 = _key(cohort)
    synth.write_text(json.dumps({"generator_version": "9.9.9", "parameters": {"patients": 3}}))
    assert v1 != with_listing and _key(cohort) != v1
    assert pp.cohort_signature(cohort)["synthetic"]["generator_version"] == "9.9.9"


def test_key_does_not_depend_on_where_the_cohort_lies(cohort, tmp_path):
    first = _prepare(cohort, tmp_path / "cache")
    stamp = (first.root / "meta.json").stat().st_mtime_ns
    moved = tmp_path / "elsewhere" / "deeper" / "copy"
    shutil.copytree(cohort.parent, moved)  # copy2: keeps modification times, as `cp -p` / `rsync -t` do
    assert _key(moved / "manifest.csv") == first.root.name
    again = _prepare(moved / "manifest.csv", tmp_path / "cache")
    assert again.root == first.root and (again.root / "meta.json").stat().st_mtime_ns == stamp


def test_files_that_are_not_read_do_not_change_the_key(cohort):
    key = _key(cohort)
    (cohort.parent / "P2" / ".DS_Store").write_bytes(b"finder")  # hidden: scan_folder ignores it
    (cohort.parent / "P3" / "extra.dcm").write_bytes(b"x")  # P3 is excluded in the manifest: never read
    (cohort.parent / "notes.txt").write_text("outside every dicom_dir")
    assert _key(cohort) == key
    (cohort.parent / "P2" / "extra.dcm").write_bytes(b"x")  # a new file below a read folder counts
    assert _key(cohort) != key


def test_missing_folder_and_mask_are_part_of_the_signature(cohort):
    key = _key(cohort)
    shutil.rmtree(cohort.parent / "P2")
    without = _key(cohort)
    assert without != key
    (cohort.parent / "masks" / "P1.npz").unlink()
    assert _key(cohort) != without


def test_cache_key_arguments_checked():
    signature = {"files": "0" * 64, "n_files": 0, "synthetic": None, "listing": None}
    assert pp.cache_key("ab" * 32, CONFIG, signature) == pp.cache_key("ab" * 32, CONFIG, dict(signature))
    with pytest.raises(ValueError, match="signature must be the mapping cohort_signature returns"):
        pp.cache_key("ab" * 32, CONFIG, {})
    with pytest.raises(ValueError, match="manifest_sha"):
        pp.cache_key("", CONFIG, signature)
    with pytest.raises(TypeError, match="config must be a PrepareConfig"):
        pp.cache_key("ab" * 32, {"image_size": 16}, signature)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame must be the manifest DataFrame"):
        pp.cohort_signature("m.csv", pd.DataFrame({"x": [1]}))
