"""The fast paths of `prepare` make the cache plain pydicom reads and the old per-slice functions make, byte for byte.

- The header parse (:mod:`pdstudy.data.dicom._header`) builds the dataset ``pydicom.dcmread`` builds, on every file of
  pydicom's and pydicom-data's test collections, whole and cut short.
- A file larger than the header prefix is parsed from its first bytes only (its pixel data is read only when the
  slice is kept), to the same dataset as the whole file; anything unusual falls back to the whole file.
- Every cached plane and mask of synthetic cohorts (every phase-tag style, 12- and 16-bit, signed and unsigned) and of
  hand-built series (BitsStored 12 with junk in the unused bits, RescaleSlope != 1, implicit VR, RLE, a header longer
  than the prefix, pydicom's CT_small, masks of several types) equals a reference computed with
  ``pydicom.dcmread`` (its defaults), ``to_hu``, ``window`` and ``resample_to_grid``.
"""

from __future__ import annotations

import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_factory import ct_dataset, write_series
from pydicom.dataelem import RawDataElement
from pydicom.uid import ImplicitVRLittleEndian, RLELossless, generate_uid

import pdstudy.data.dicom._pixels as pixels_module
import pdstudy.data.dicom._scan as scan_module
from pdstudy.data.dicom import resample_mask_to_grid, resample_to_grid, scan_folder, to_hu, window, windowed_hu
from pdstudy.data.dicom._header import parse_header
from pdstudy.data.preprocess import PrepareConfig, prepare
from pdstudy.data.synth import generate_cohort

HU = (-215.0, 285.0)


def _data_dirs() -> list[Path]:
    dirs = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data

        dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return dirs


def _corpus() -> list[Path]:
    return sorted(p for d in _data_dirs() for p in d.rglob("*") if p.is_file())


def _pydicom_header(buffer: bytes):
    return pydicom.dcmread(io.BytesIO(buffer), defer_size=1024, specific_tags=scan_module._HEADER_TAG_LIST)


def _same_dataset(fast, ref) -> bool:
    """The same elements (raw where both are raw, else the same converted values), file meta and encoding."""
    if type(fast) is not type(ref) or fast._dict.keys() != ref._dict.keys():
        return False
    for tag in fast._dict:
        a, b = fast._dict[tag], ref._dict[tag]
        same = a == b if type(a) is RawDataElement and type(b) is RawDataElement else fast[tag] == ref[tag]
        if not same:
            return False
    return (fast.file_meta == ref.file_meta and fast.preamble == ref.preamble
            and fast.original_encoding == ref.original_encoding
            and fast.original_character_set == ref.original_character_set
            and fast._character_set == ref._character_set)


# ---------------------------------------------------------------- the header parse


def test_header_parse_builds_pydicoms_dataset_on_every_test_file():
    files = _corpus()
    assert len(files) > 100  # pydicom's own test files at least
    tags = frozenset(scan_module._HEADER_TAGS)
    parsed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            data = path.read_bytes()
            for buffer in (data, data[:2048], data[:65536]):
                fast = parse_header(buffer, specific_tags=tags, defer_size=1024)
                if fast is None:
                    continue
                parsed += 1
                assert _same_dataset(fast, _pydicom_header(buffer)), (path.name, len(buffer))
    assert parsed > 100  # the fast path is the common case, not a rarity


def test_header_parse_leaves_strict_mode_and_odd_files_to_pydicom(tmp_path):
    ds = ct_dataset(np.zeros((4, 4), np.uint16))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    tags = frozenset(scan_module._HEADER_TAGS)
    assert parse_header(data, specific_tags=tags, defer_size=1024) is not None
    with pydicom.config.strict_reading():
        assert parse_header(data, specific_tags=tags, defer_size=1024) is None
    assert parse_header(data[128:], specific_tags=tags, defer_size=1024) is None  # no preamble
    assert parse_header(b"not a DICOM file at all" * 10, specific_tags=tags, defer_size=1024) is None


# ---------------------------------------------------------------- header-only reads


def _big_series(folder: Path, n: int = 3, **kwargs) -> list[Path]:
    """Single-frame files of 300 x 300 px (about 180 kB, more than the header prefix)."""
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 2000, (n, 300, 300)).astype(np.uint16)
    return write_series(folder, vol, spacing=(1.2, 1.2), **kwargs)


def _long_header_file(path: Path) -> Path:
    """A file whose header (a 70 kB private element) is longer than the header prefix."""
    ds = ct_dataset(np.full((300, 300), 1100, np.uint16), z=0.0)
    ds.add_new(0x00090010, "LO", "PDSTUDY TEST")
    ds.add_new(0x00091010, "OB", bytes(70_000))
    ds.save_as(path, enforce_file_format=True)
    return path


def test_large_files_are_parsed_from_their_header_prefix(tmp_path):
    plain = _big_series(tmp_path / "plain", 1, description="PVP")[0]
    long_header = _long_header_file(tmp_path / "long.dcm")
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(plain.read_bytes()[:-5000])  # pixel data shorter than it says
    rle = tmp_path / "rle.dcm"
    ds = pydicom.dcmread(plain)
    ds.compress(RLELossless)
    ds.save_as(rle, enforce_file_format=True)
    assert min(p.stat().st_size for p in (plain, long_header, truncated, rle)) > scan_module._HEADER_PREFIX_BYTES
    expect_prefix = {plain: True, long_header: False, truncated: False, rle: False}
    with scan_module.quiet_pydicom():
        for path, prefix_only in expect_prefix.items():
            ds, data = scan_module._dcmread_header(path)
            ref = pydicom.dcmread(path, defer_size=1024, specific_tags=scan_module._HEADER_TAG_LIST)
            assert _same_dataset(ds, ref), path.name
            assert (data is None) == prefix_only, path.name  # the whole file is read only when it had to be
            assert ds.filename == str(path)


class _CountingFile:
    """A file object that counts the bytes read from it into ``counts[path]``."""

    def __init__(self, path, counts, *args, **kwargs):
        self._f = open(path, *args, **kwargs)  # noqa: SIM115
        self._key, self._counts = str(path), counts

    def read(self, *args):
        data = self._f.read(*args)
        self._counts[self._key] = self._counts.get(self._key, 0) + len(data)
        return data

    def readinto(self, buffer):
        n = self._f.readinto(buffer)
        self._counts[self._key] = self._counts.get(self._key, 0) + (n or 0)
        return n

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def test_files_not_kept_are_read_only_to_their_header(tmp_path, monkeypatch):
    folder = tmp_path / "P"
    arterial = _big_series(folder, 4, subdir="art", description="Arterial", study_uid="1.2.9")
    portal = _big_series(folder, 4, subdir="pv", description="Portal venous", study_uid="1.2.9")
    pd.DataFrame([dict(patient_id="P1", split="train", response="good", recist="CR", dicom_dir="P",
                       z_from_mm="-5", z_to_mm="-10")]).to_csv(tmp_path / "m.csv", index=False)
    counts: dict[str, int] = {}
    for module in (scan_module, pixels_module):
        monkeypatch.setattr(module, "open", lambda p, *a, **k: _CountingFile(p, counts, *a, **k), raising=False)
    prepared = prepare(tmp_path / "m.csv", tmp_path / "cache", config=PrepareConfig(image_size=32, fov_mm=360.0),
                       workers=1, show_progress=False)
    assert prepared.index["z_mm"].tolist() == [-5.0, -10.0]
    prefix = scan_module._HEADER_PREFIX_BYTES
    for path in arterial + [portal[0], portal[3]]:  # another phase, and slices outside the z range
        assert counts[str(path)] <= prefix, path
    plane = 300 * 300 * 2
    for path in portal[1:3]:  # the kept slices: the header prefix, then the plane from its offset
        assert prefix + plane >= counts[str(path)] >= plane, path


# ---------------------------------------------------------------- cached planes against the reference


def _reference_plane(ds: pydicom.Dataset, size: int, fov: float, frame: int | None = None) -> np.ndarray:
    """The old per-slice path: stored values (pydicom), HU, window, resample, rint to uint8."""
    stored = ds.pixel_array if frame is None else ds.pixel_array[frame]
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    hu = to_hu(stored, None if slope is None else float(slope), None if intercept is None else float(intercept))
    spacing = tuple(float(v) for v in ds.PixelSpacing)
    return np.rint(resample_to_grid(window(hu, *HU), spacing, fov / size, size) * 255.0).astype(np.uint8)


def _reference_mask(plane: np.ndarray, spacing: tuple[float, float], size: int, fov: float) -> np.ndarray:
    binary = resample_to_grid(np.asarray(plane, dtype=np.float32), spacing, fov / size, size, nearest=True) > 0.5
    return binary.astype(np.uint8)


def _files_by_z(folder: Path) -> dict[float, Path]:
    out = {}
    for path in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[round(float(ds.ImagePositionPatient[2]), 3)] = path
    return out


def _check_against_reference(prepared, root: Path, portal_dirs: dict[str, Path], config: PrepareConfig) -> int:
    """Compare every cached plane (and mask) with the reference; returns the number of planes compared."""
    size, fov = int(config.image_size), float(config.fov_mm)
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    images = np.asarray(prepared.images)
    masks = None if prepared.masks is None else np.asarray(prepared.masks)
    compared = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pid, group in prepared.index.groupby("patient_id", sort=False):
            by_z = _files_by_z(portal_dirs[str(pid)])
            mask_path = manifest.at[pid, "mask_path"] if "mask_path" in manifest.columns else ""
            volume = dict(np.load(root / mask_path)) if mask_path else None
            for row, z in zip(group.index, group["z_mm"]):
                ds = pydicom.dcmread(by_z[round(float(z), 3)])
                np.testing.assert_array_equal(images[row], _reference_plane(ds, size, fov), err_msg=f"{pid} z={z}")
                if volume is not None:
                    j = int(np.argmin(np.abs(volume["z_mm"] - float(z))))
                    spacing = tuple(float(v) for v in ds.PixelSpacing)
                    np.testing.assert_array_equal(masks[row], _reference_mask(volume["mask"][j], spacing, size, fov),
                                                  err_msg=f"mask {pid} z={z}")
                compared += 1
    return compared


def _count_prefix_parses(monkeypatch) -> list[int]:
    used = [0]
    original = scan_module._header_from_prefix

    def counting(prefix, size):
        ds = original(prefix, size)
        used[0] += ds is not None
        return ds

    monkeypatch.setattr(scan_module, "_header_from_prefix", counting)
    return used


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A synthetic cohort holding every phase-tag style and every pixel format of the generator."""
    root = tmp_path_factory.mktemp("synthetic") / "cohort"
    generate_cohort(root, patients=16, seed=0, slices=8, size=48, show_progress=False)
    series = pd.read_csv(root / "series.csv", dtype=str, keep_default_na=False)
    portal = series[series["phase"] == "portal_venous"]
    named = portal["series_description"].str.contains(r"(?i)portal|\bpvp?\b")
    in_protocol = portal["protocol_name"].str.contains(r"(?i)portal")
    styles = {"description" if d else "protocol" if p else "generic" for d, p in zip(named, in_protocol)}
    assert styles == {"description", "protocol", "generic"}  # the explicit, protocol and generic styles
    formats = set()
    for rel in portal["series_dir"]:
        ds = pydicom.dcmread(next((root / rel).glob("*.dcm")), stop_before_pixels=True)
        formats.add((int(ds.BitsStored), int(ds.PixelRepresentation)))
    assert formats == {(12, 0), (12, 1), (16, 0), (16, 1)}
    return root, {pid: root / rel for pid, rel in zip(portal["patient_id"], portal["series_dir"])}


@pytest.mark.parametrize("prefix_bytes", [None, 2048])
def test_synthetic_cache_equals_the_reference(synthetic, tmp_path, monkeypatch, prefix_bytes):
    root, portal_dirs = synthetic
    used = _count_prefix_parses(monkeypatch)
    if prefix_bytes is not None:  # files of 48 px are smaller than the default prefix: force header-only reads
        monkeypatch.setattr(scan_module, "_HEADER_PREFIX_BYTES", prefix_bytes)
    config = PrepareConfig(image_size=40, fov_mm=360.0)
    prepared = prepare(root / "manifest.csv", tmp_path / "cache", config=config, workers=1, show_progress=False)
    assert prepared.masks is not None
    assert _check_against_reference(prepared, root, portal_dirs, config) == len(prepared.index) > 50
    assert (used[0] > 100) == (prefix_bytes is not None)


def _write(ds: pydicom.Dataset, path: Path, syntax: str | None = None) -> None:
    if syntax == RLELossless:
        ds.compress(RLELossless)
    elif syntax is not None:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


def _variant_series(folder: Path, *, kind: str, n: int = 4, shape: tuple[int, int] = (40, 52)) -> None:
    """One series of ``n`` slices in a pixel format or encoding ``kind``."""
    rng = np.random.default_rng(abs(hash(kind)) % 2**32)
    uid, study = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        z = -5.0 * i
        if kind in ("u12", "s12"):  # BitsStored 12 in 16 allocated, junk in the four unused bits
            signed = kind == "s12"
            values = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, shape)
            raw = (values & 0xFFF) | (rng.integers(0, 16, shape) << 12)
            ds = ct_dataset(values.astype(np.int16 if signed else np.uint16), z=z, series_uid=uid, study_uid=study,
                            instance=i + 1, description="PVP", spacing=(0.8, 0.9),
                            intercept=-1024.0 if not signed else 0.0)
            ds.BitsStored, ds.HighBit = 12, 11
            ds.PixelData = raw.astype(np.uint16).tobytes()
        else:
            dtype = np.int16 if kind in ("s16", "implicit") else np.uint16
            low, high = (-1500, 1500) if dtype is np.int16 else (0, 4000)
            values = rng.integers(low, high, shape).astype(dtype)
            slope, intercept = {"slope": (0.5, -1000.5), "s16": (2.5, 3.0)}.get(kind, (1.0, -1024.0))
            if dtype is np.int16 and kind == "implicit":
                intercept = 0.0
            ds = ct_dataset(values, z=z, series_uid=uid, study_uid=study, instance=i + 1, description="PVP",
                            spacing=(0.7, 0.7), slope=slope, intercept=intercept)
            if kind == "long_header":
                ds.add_new(0x00090010, "LO", "PDSTUDY TEST")
                ds.add_new(0x00091010, "OB", bytes(5000))  # longer than the 2048-byte prefix below
        syntax = {"implicit": ImplicitVRLittleEndian, "rle": RLELossless}.get(kind)
        _write(ds, folder / f"{i:03d}.dcm", syntax)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    kinds = ["u12", "s12", "slope", "s16", "implicit", "rle", "long_header"]
    rows, portal = [], {}
    for kind in kinds:
        _variant_series(root / kind, kind=kind)
        portal[kind] = root / kind
        rows.append(dict(patient_id=kind.replace("_", "-"), split="train", response="good", recist="CR",
                         dicom_dir=kind, z_from_mm="-5", z_to_mm="-15"))
    # Masks of three types, on the first three patients.
    for row, dtype in zip(rows[:3], (np.uint8, bool, np.float64)):
        rng = np.random.default_rng(len(row["patient_id"]))
        mask = (rng.random((4, 40, 52)) < 0.4) * (0.7 if dtype is np.float64 else 1)
        (root / "masks").mkdir(exist_ok=True)
        np.savez_compressed(root / "masks" / f"{row['dicom_dir']}.npz", mask=mask.astype(dtype),
                            z_mm=np.array([0.0, -5.0, -10.0, -15.0]))
        row["mask_path"] = f"masks/{row['dicom_dir']}.npz"
    # pydicom's CT_small (one slice) with an arterial series of another patient's shape beside it.
    ct_small = pydicom.data.get_testdata_file("CT_small.dcm")
    (root / "ctsmall" / "pv").mkdir(parents=True)
    shutil.copy(ct_small, root / "ctsmall" / "pv" / "ct.dcm")
    write_series(root / "ctsmall", np.full((2, 20, 20), 1000, np.uint16), subdir="art", description="Arterial")
    portal["ctsmall"] = root / "ctsmall" / "pv"
    rows.append(dict(patient_id="ctsmall", split="test", response="poor", recist="PD", dicom_dir="ctsmall",
                     pvp_series_uid=str(pydicom.dcmread(ct_small, stop_before_pixels=True).SeriesInstanceUID)))
    frame = pd.DataFrame(rows).fillna("")
    frame.to_csv(root / "manifest.csv", index=False)
    return root, {row["patient_id"]: portal[row["dicom_dir"]] for row in rows}


@pytest.mark.parametrize("prefix_bytes", [None, 2048])
def test_hand_built_series_cache_equals_the_reference(variants, tmp_path, monkeypatch, prefix_bytes):
    root, portal_dirs = variants
    if prefix_bytes is not None:
        monkeypatch.setattr(scan_module, "_HEADER_PREFIX_BYTES", prefix_bytes)
    config = PrepareConfig(image_size=24, fov_mm=40.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(root / "manifest.csv", tmp_path / "cache", config=config, workers=1, show_progress=False)
    qc = prepared.qc.set_index("patient_id")
    assert (qc["status"] == "included").all(), qc["reason"].to_dict()
    assert qc.loc["ctsmall", "n_slices"] == 1 and qc.loc["u12", "n_slices"] == 3
    assert _check_against_reference(prepared, root, portal_dirs, config) == len(prepared.index)
    assert np.asarray(prepared.masks)[:9].any()  # the masked patients' masks are not empty


def test_scan_of_large_files_equals_whole_file_scan(variants, monkeypatch):
    """Header-only and whole-file reads give the same series, slices and notes."""
    root, _ = variants
    whole = {kind: scan_folder(root / kind) for kind in ("u12", "implicit", "rle", "long_header", "ctsmall")}
    monkeypatch.setattr(scan_module, "_HEADER_PREFIX_BYTES", 2048)
    for kind, expected in whole.items():
        got = scan_folder(root / kind)
        assert [(s.uid, s.description, s.slices) for s in got.series] == \
               [(s.uid, s.description, s.slices) for s in expected.series], kind
        assert got.notes == expected.notes and got.identity == expected.identity and got.n_files == expected.n_files


# ---------------------------------------------------------------- the per-slice functions


@pytest.mark.parametrize("dtype", [np.uint8, bool, np.int16, np.int32, np.float32, np.float64])
def test_mask_threshold_is_the_float32_one_for_every_type(dtype):
    rng = np.random.default_rng(7)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(5, 80, 2))
        spacing = tuple(float(v) for v in rng.uniform(0.4, 3.0, 2))
        target, size = float(rng.uniform(0.5, 4.0)), int(rng.integers(8, 64))
        mask = rng.integers(-2, 3, (h, w)) if dtype is not bool else rng.random((h, w)) < 0.5
        if np.issubdtype(dtype, np.floating):
            mask = mask * 0.3 + 0.45  # values on both sides of 0.5, and 0.5 itself never exactly
        mask = np.asarray(mask).astype(dtype)
        expected = resample_to_grid(np.asarray(mask, dtype=np.float32), spacing, target, size, nearest=True) > 0.5
        np.testing.assert_array_equal(resample_mask_to_grid(mask, spacing, target, size), expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.float32, np.float64])
def test_fused_window_is_bitwise_the_plain_steps_for_every_type(dtype):
    rng = np.random.default_rng(11)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        stored = rng.integers(info.min, info.max, (50, 60), endpoint=True).astype(dtype)
    else:
        stored = (rng.standard_normal((50, 60)) * 3000).astype(dtype)
    for slope, intercept in ((1.0, -1024.0), (None, None), (0.5, -1000.5), (1.00000001, 0.25), (2.5, 3.0)):
        for lo, hi in (HU, (-1000, 400)):
            plain = window(to_hu(stored, slope, intercept), lo, hi)
            fused = windowed_hu(stored, slope, intercept, lo, hi)
            assert fused.dtype == plain.dtype and np.array_equal(fused, plain), (slope, intercept, lo, hi)
