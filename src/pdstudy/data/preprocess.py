"""`pdstudy prepare`: DICOM cohort -> windowed, physically resampled slice cache + qc.csv.

One patient (:func:`process_patient`), the whole cohort in parallel processes with its keyed slice
cache (:func:`prepare`, :func:`cache_key`, :func:`cohort_signature`). The cache is read by
:mod:`pdstudy.data.cache`.
See docs/preprocessing.md.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pdstudy.core.hashing import sha256_file, stable_hash
from pdstudy.core.io import write_csv, write_json
from pdstudy.core.params import load_profile
from pdstudy.core.paths import redact
from pdstudy.data.cache import QC_COLUMNS, PreparedCohort, load_prepared, reason_category
from pdstudy.data.dicom import (
    HU_WINDOW,
    PatientDataError,
    identity_matches,
    order_slices,
    override_warnings,
    quiet_pydicom,
    read_plane_quietly,
    resample_mask_to_grid,
    resample_to_uint8,
    scan_folder,
    select_portal_venous,
    walk_files,
    windowed_hu,
)
from pdstudy.data.manifest import (
    MRN_DIGITS,
    PseudonymityError,
    PseudonymityWarning,
    looks_like_mrn,
    manifest_checksum,
    read_manifest,
)
from pdstudy.data.splits import DuplicatePatientWarning
from pdstudy.data.verify import default_listing

#: Bumped whenever the cache content for the same parameters would change.
CACHE_VERSION = "3"

#: Version of the pseudonymity check a cache was built under (``meta.json`` ``pseudonymity_check``). A cache
#: without it, or with an older one, is rebuilt (same key, same content) so that the check runs: bump it when
#: the check becomes stricter.
PSEUDONYMITY_CHECK = 1

#: ``qc.csv`` warning of a patient ID that looks like a hospital record number (:func:`looks_like_mrn`).
MRN_WARNING = (f"patient_id has {MRN_DIGITS} or more digits in a row, like a hospital record number (MRN): "
               "if it is one, replace it with a pseudonym")


@dataclass(frozen=True)
class PrepareConfig:
    """Preprocessing parameters; they, the manifest checksum and the cohort's files key the slice cache.

    Parameters
    ----------
    image_size : int
        Side of the square output canvas in pixels (paper: 256, quick profile: 64).
    fov_mm : float
        Physical width of the canvas; the output pixel is ``fov_mm / image_size`` mm for every
        patient whatever its PixelSpacing, so the distance scale is standardised.
    hu_window : (float, float)
        HU window mapped to [0, 1] (paper: [-215, 285]).
    """

    image_size: int = 256
    fov_mm: float = 360.0
    hu_window: tuple[float, float] = HU_WINDOW

    def __post_init__(self) -> None:
        if int(self.image_size) < 8:
            raise ValueError(f"image_size must be >= 8 pixels, got {self.image_size}")
        if not self.fov_mm > 0:
            raise ValueError(f"fov_mm must be > 0, got {self.fov_mm}")
        if not self.hu_window[1] > self.hu_window[0]:
            raise ValueError(f"hu_window must be (low, high) with high > low, got {self.hu_window}")

    @property
    def pixel_mm(self) -> float:
        return float(self.fov_mm) / int(self.image_size)


@dataclass
class PatientResult:
    """What one worker returns for one patient."""

    patient_id: str
    status: str
    reason: str = ""
    images: np.ndarray | None = None  # uint8 (n, S, S)
    masks: np.ndarray | None = None  # uint8 (n, S, S) or None
    z_mm: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pvp_rule: str = ""
    pixel_spacing_mm: float = float("nan")
    #: Median spacing between the kept slices along the slice normal (NaN: one slice, or no positions).
    slice_mm: float = float("nan")
    n_files: int = 0
    study_key: str = ""
    pixel_key: str = ""
    #: Set by a worker process instead of ``images`` / ``masks``: raw files holding their bytes.
    images_file: str = ""
    masks_file: str = ""
    #: Identity elements of the patient's files that ``patient_id`` equals (:func:`identity_matches`): the
    #: element names only. Not empty: the patient is excluded and :func:`prepare` stops.
    identity_elements: list[str] = field(default_factory=list)
    #: Planes of the series a manifest ``pvp_series_uid`` picked (0 without an override), for the ``top_k`` warning.
    override_slices: int = 0


def _digest(data: bytes | str) -> str:
    """First 16 hex digits of SHA-256: a same-person key that cannot be read back to the value."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:16]


def pixel_key(stored: np.ndarray) -> str:
    """Key of one decoded plane, independent of transfer syntax, byte order and integer width.

    A uniform plane (e.g. all air) identifies nobody and gets no key (``""``).
    """
    arr = np.asarray(stored)
    if arr.size == 0 or arr.min() == arr.max():
        return ""
    canon = arr.astype("<i8" if arr.dtype.kind in "biu" else "<f8")
    return _digest(f"{arr.shape}".encode() + canon.tobytes())


def usable_cpus() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one, else the CPU count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _z_range(row: dict[str, str]) -> tuple[float, float] | None:
    a, b = row.get("z_from_mm", ""), row.get("z_to_mm", "")
    if not a or not b:
        return None
    lo, hi = sorted((float(a), float(b)))
    return lo, hi


def process_patient(row: dict[str, str], root: str, config: PrepareConfig) -> PatientResult:
    """Preprocess one manifest row; never raises (errors become an exclusion)."""
    pid = row["patient_id"]
    if row.get("exclusion"):
        return PatientResult(pid, "excluded", f"excluded in manifest: {row['exclusion']}")
    folder = Path(root) / row["dicom_dir"]
    try:
        return _process(pid, row, folder, Path(root), config)
    except PatientDataError as exc:
        return PatientResult(pid, "excluded", scrub_reason_paths(str(exc), folder, Path(root)))
    except Exception as exc:  # anything unexpected: keep the cohort going, record the cause
        last = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        text = scrub_reason_paths(str(exc), folder, Path(root))[:200]
        return PatientResult(pid, "excluded", f"unexpected error {type(exc).__name__} at {where}: {text}")


def scrub_reason_paths(text: str, folder: Path, root: Path) -> str:
    """Remove every path component above the patient's ``dicom_dir`` (and the manifest's folder) from ``text``.

    Paths below ``folder`` become relative to it, paths below ``root`` relative to the manifest;
    any other absolute path keeps only its last component.
    """
    for base in sorted({str(folder), str(folder.resolve()), str(root), str(root.resolve())}, key=len, reverse=True):
        text = redact(text, {base + os.sep: "", base: "."})
    return redact(text, inner_paths=True)


def _process(pid: str, row: dict[str, str], folder: Path, root: Path, config: PrepareConfig) -> PatientResult:
    scan = scan_folder(folder)
    matched = identity_matches(pid, scan.identity)
    scan.identity.clear()
    if matched:  # no pixel is read: prepare stops once every patient is checked
        return PatientResult(pid, "excluded", f"patient_id equals the DICOM {' and '.join(matched)} of these files: "
                             "not a pseudonym", n_files=scan.n_files, identity_elements=matched)
    override = row.get("pvp_series_uid", "")
    series, rule = select_portal_venous(scan, override)
    notes = (override_warnings(series) if override else []) + list(scan.notes)
    ordered, geometry_notes = order_slices(series.slices)
    notes += geometry_notes
    zr = _z_range(row)
    if zr is None:
        notes.append("no slice range in manifest: all slices kept")
        kept = ordered
    else:
        gaps = np.abs(np.diff([s.z for s in ordered])) if len(ordered) > 1 else np.array([1.0])
        tol = 0.25 * float(np.median(gaps)) if gaps.size else 0.5
        kept = [s for s in ordered if zr[0] - tol <= s.z <= zr[1] + tol]
        if not kept:
            raise PatientDataError(
                f"no slices inside the manifest's z range [{zr[0]:g}, {zr[1]:g}] mm "
                f"(series spans {min(s.z for s in ordered):g} to {max(s.z for s in ordered):g} mm)")
    if any(s.slope is None or s.intercept is None for s in kept):
        notes.append("missing RescaleSlope/RescaleIntercept: assumed 1 and 0")
    spacings = {s.pixel_spacing for s in kept}
    if None in spacings:
        raise PatientDataError("PixelSpacing missing or invalid: cannot resample to the physical grid")
    if len(spacings) > 1:
        notes.append(f"{len(spacings)} different pixel spacings in the series: each slice resampled on its own")
    mask_volume, mask_planes = _load_mask(root, row["mask_path"], kept) if row.get("mask_path") else (None, [])
    size, lo, hi = int(config.image_size), *config.hu_window
    images = np.empty((len(kept), size, size), dtype=np.uint8)
    masks = np.empty((len(kept), size, size), dtype=np.uint8) if mask_volume is not None else None
    middle = ""
    with quiet_pydicom():
        for i, ref in enumerate(kept):
            # Each kept file is read once: its header comes from the scan, its pixel bytes from their offset.
            stored = read_plane_quietly(folder, ref, scan.headers.get(ref.path), scan.contents.get(ref.path))
            if i == len(kept) // 2:
                middle = pixel_key(stored)
            resample_to_uint8(windowed_hu(stored, ref.slope, ref.intercept, lo, hi),  # type: ignore[arg-type]
                              ref.pixel_spacing, config.pixel_mm, size, out=images[i])  # type: ignore[arg-type]
            if masks is not None and mask_volume is not None:
                resample_mask_to_grid(mask_volume[mask_planes[i]], ref.pixel_spacing,  # type: ignore[arg-type]
                                      config.pixel_mm, size, out=masks[i])
    scan.headers.clear()
    scan.contents.clear()
    return PatientResult(
        pid, "included", "", images=images, masks=masks, z_mm=[s.z for s in kept], warnings=notes,
        pvp_rule=rule, pixel_spacing_mm=float(kept[0].pixel_spacing[0]),  # type: ignore[index]
        slice_mm=slice_spacing([s.z for s in kept]),
        n_files=scan.n_files, study_key=_digest(series.study_uid) if series.study_uid else "", pixel_key=middle,
        override_slices=len(ordered) if override else 0,
    )


def slice_spacing(z_mm: list[float] | np.ndarray) -> float:
    """Median spacing in mm between consecutive slice positions along the slice normal.

    Parameters
    ----------
    z_mm : sequence of float
        Positions of the kept slices (ImagePositionPatient projected on the slice normal), in any order.

    Returns
    -------
    float
        The median absolute difference between sorted positions; NaN for fewer than two slices or when a
        position is unknown (slices ordered by InstanceNumber).
    """
    z = np.asarray(z_mm, dtype=float)
    if z.size < 2 or not np.isfinite(z).all():
        return float("nan")
    return float(np.median(np.diff(np.sort(z))))


def _load_mask(root: Path, rel: str, kept: list) -> tuple[np.ndarray, list[int]]:
    """The mask volume of ``mask_path`` and the index of its plane at each kept slice's z.

    Planes are picked by index where used (no copy of the picked planes); integer and boolean masks
    keep their type (:func:`resample_mask_to_grid` thresholds them exactly as float32), others become
    float32 as before.
    """
    path = root / rel
    if not path.is_file():
        raise PatientDataError(f"mask file {rel} (mask_path in manifest) not found")
    with np.load(path) as npz:
        mask, z = npz["mask"], npz["z_mm"]
    picks = []
    for ref in kept:
        j = int(np.argmin(np.abs(z - ref.z)))
        if abs(float(z[j]) - ref.z) > 1e-2:
            raise PatientDataError(f"mask file {rel} has no plane at z = {ref.z:g} mm")
        picks.append(j)
    if mask.dtype.kind not in "biu":
        mask = np.asarray(mask, dtype=np.float32)
    return mask, picks


def cache_key(manifest_sha: str, config: PrepareConfig, signature: Mapping[str, object], *,
              top_k: int | None = None) -> str:
    """Cache folder name for a manifest checksum, preprocessing parameters and the cohort's files.

    Parameters
    ----------
    manifest_sha : str
        SHA-256 of the manifest file's bytes (:func:`pdstudy.data.manifest.manifest_checksum`).
    config : PrepareConfig
        Preprocessing parameters.
    signature : mapping
        :func:`cohort_signature` of the cohort: its files (relative paths, sizes, modification
        times), the synthetic generator version and the ``pdstudy verify`` listing's digest.
    top_k : int, optional
        The ``top_k`` of :func:`prepare`, given only when it changes the cache (the manifest picks a series
        by ``pvp_series_uid``: qc.csv then warns about a series of fewer slices); None leaves it out, so
        that the key is the one it was before ``top_k`` existed.

    Returns
    -------
    str
        16 hex digits; the same for the same inputs wherever the cohort folder lies.
    """
    if not isinstance(manifest_sha, str) or not manifest_sha:
        raise ValueError(f"manifest_sha must be the manifest's SHA-256 (a non-empty str), got {manifest_sha!r}")
    if not isinstance(config, PrepareConfig):
        raise TypeError(f"config must be a PrepareConfig, got {type(config).__name__}")
    if not isinstance(signature, Mapping) or "files" not in signature:
        raise ValueError("signature must be the mapping cohort_signature returns (with a 'files' entry), "
                         f"got {signature!r}")
    parts: dict[str, object] = {"manifest": manifest_sha, "config": asdict(config), "version": CACHE_VERSION,
                                "cohort": dict(signature)}
    if top_k is not None:
        parts["top_k"] = _check_top_k(top_k)
    return stable_hash(parts)


def _check_top_k(top_k: object) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1 (slices averaged per patient), got {top_k!r}")
    return int(top_k)


def cohort_signature(manifest: str | Path, frame: pd.DataFrame | None = None) -> dict[str, object]:
    """A fast fingerprint of the files a cohort's preprocessing reads, for :func:`cache_key`.

    No file is read (except the small ``synth.json`` and ``pdstudy verify`` listing): one
    ``os.scandir`` pass below every patient's ``dicom_dir`` (the files :func:`pdstudy.data.dicom.scan_folder`
    reads: hidden files left out, links to folders not followed) and a ``stat`` of each file and of
    each ``mask_path``. Patients excluded in the manifest are not read, so their files do not count.
    A re-exported series, a corrected mask or a regenerated synthetic cohort changes a size or a
    modification time, and so the signature; copying the cohort elsewhere keeps it as long as the
    copy keeps modification times (``cp -p``, ``rsync -t``), since only paths relative to the
    manifest's folder enter it.

    Parameters
    ----------
    manifest : str or Path
        Cohort manifest CSV; ``dicom_dir`` and ``mask_path`` are relative to its folder.
    frame : pandas.DataFrame, optional
        The manifest as :func:`pdstudy.data.manifest.read_manifest` returns it (read when omitted).

    Returns
    -------
    dict
        ``files``: SHA-256 (hex) of the sorted lines ``<path below the manifest folder> <size>
        <mtime in ns>`` (``missing`` for an absent folder or mask); ``n_files``: files counted;
        ``synthetic``: ``generator_version`` and ``parameters`` from the ``synth.json`` beside the
        manifest (a cohort of :mod:`pdstudy.data.synth`), else None; ``listing``: SHA-256 of the
        ``pdstudy verify`` listing beside the manifest (:func:`pdstudy.data.verify.default_listing`)
        when there is one, else None.
    """
    manifest = Path(manifest)
    if frame is None:
        frame = read_manifest(manifest)
    if not isinstance(frame, pd.DataFrame) or not {"patient_id", "dicom_dir"} <= set(frame.columns):
        raise ValueError("frame must be the manifest DataFrame (columns patient_id, dicom_dir, ...), "
                         f"got {type(frame).__name__}")
    root = manifest.parent
    lines: list[str] = []
    for row in frame.to_dict("records"):
        if row.get("exclusion"):
            continue
        rel = str(row["dicom_dir"])
        lines += _folder_lines(root, rel) if (root / rel).is_dir() else [f"{rel}\tmissing"]
        if row.get("mask_path"):
            lines.append(_file_line(root, str(row["mask_path"])))
    lines.sort()
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    listing = default_listing(manifest)
    return {"files": digest.hexdigest(), "n_files": sum(not line.endswith("\tmissing") for line in lines),
            "synthetic": _synthetic_version(root / "synth.json"),
            "listing": sha256_file(listing) if listing.is_file() else None}


def _file_line(root: Path, rel: str) -> str:
    try:
        st = (root / rel).stat()
    except OSError:
        return f"{rel}\tmissing"
    return f"{rel}\t{st.st_size}\t{st.st_mtime_ns}"


def _folder_lines(root: Path, rel: str) -> list[str]:
    """``<rel>/<path> <size> <mtime_ns>`` of the non-hidden files below ``root / rel`` (as in ``scan_folder``)."""
    out: list[str] = []
    prefix = rel.rstrip("/\\") + "/"
    for name, entry in walk_files(root / rel, skip=(OSError,)):  # an unreadable folder: nothing to read either
        try:
            st = entry.stat()
        except OSError:
            continue
        out.append(f"{prefix}{name}\t{st.st_size}\t{st.st_mtime_ns}")
    return out


def _synthetic_version(path: Path) -> dict[str, object] | None:
    """``generator_version`` and ``parameters`` of a synthetic cohort's ``synth.json`` (None if there is none)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    return {"generator_version": meta.get("generator_version"), "parameters": meta.get("parameters")}


def prepare(
    manifest: str | Path,
    cache: str | Path,
    *,
    config: PrepareConfig | None = None,
    workers: int | None = None,
    show_progress: bool = True,
    force: bool = False,
    top_k: int | None = None,
) -> PreparedCohort:
    """Preprocess a cohort into a slice cache, or reuse the matching cache.

    Every manifest ID is checked against the identity elements of its patient's DICOM headers first
    (:func:`pdstudy.data.dicom.identity_matches`); see docs/preprocessing.md, "Pseudonymity check".

    Parameters
    ----------
    manifest : str or Path
        Cohort manifest CSV (validated before any work).
    cache : str or Path
        Cache root; the cohort lands in ``cache/<key>/`` where the key (:func:`cache_key`) hashes the
        manifest checksum, ``config`` and the cohort's files (:func:`cohort_signature`), so a changed
        image or mask file builds a new cache.
    config : PrepareConfig, optional
        Preprocessing parameters (default: the paper's 256 px).
    workers : int, optional
        Worker processes (default: one per usable CPU core, see :func:`usable_cpus`; at most the
        number of patients).
    show_progress : bool
        Show a tqdm bar.
    force : bool
        Rebuild even if a matching cache exists.
    top_k : int, optional
        Slices the study averages per patient (default: the quick and paper profiles' ``top_k``, 10). A
        series picked by ``pvp_series_uid`` with fewer slices gets a warning in ``qc.csv``; only then does
        ``top_k`` enter the cache key.

    Returns
    -------
    PreparedCohort
        Its :meth:`~pdstudy.data.cache.PreparedCohort.warnings_table` and
        :meth:`~pdstudy.data.cache.PreparedCohort.shared_studies` summarise the warnings.

    Raises
    ------
    ManifestError
        The manifest is invalid (before any work).
    PseudonymityError
        A ``patient_id`` equals an identity element of its patient's files; every such row is named, with
        the element, after all patients are scanned and before any cache file is kept.

    Warns
    -----
    PseudonymityWarning
        IDs with 6 or more digits in a row (:func:`pdstudy.data.manifest.looks_like_mrn`), also recorded
        in those patients' ``qc.csv`` warnings.
    DuplicatePatientWarning
        Included patients whose series share a StudyInstanceUID (the same person under two IDs?).
        Both warnings are given again when the cache is reused.
    """
    config = config or PrepareConfig()
    top_k = _check_top_k(load_profile("quick")["top_k"] if top_k is None else top_k)
    manifest = Path(manifest).resolve()
    df = read_manifest(manifest)
    sha = manifest_checksum(manifest)
    signature = cohort_signature(manifest, df)
    overrides = "pvp_series_uid" in df.columns and bool((df["pvp_series_uid"] != "").any())
    key = cache_key(sha, config, signature, top_k=top_k if overrides else None)
    final = Path(cache).resolve() / key
    # The key covers the manifest (its IDs) and the sizes and times of the files (their headers), so a cache
    # whose build passed the pseudonymity check passed it for these inputs; caches without the mark are rebuilt.
    if not force and _checked_cache(final):
        cached = load_prepared(final)
        _warn(cached, df, manifest.name)
        return cached

    rows = df.to_dict("records")
    n_workers = max(1, min(workers or usable_cpus(), len(rows)))
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        with _PlaneWriter(tmp, int(config.image_size)) as planes:
            results = _process_all(rows, manifest.parent, config, n_workers, planes, show_progress)
        _check_pseudonyms(df, results, manifest.name)
        _add_cohort_warnings(df, results, top_k)
        _write_cache(tmp, df, results, config, sha, manifest, signature)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    prepared = load_prepared(final)
    _warn(prepared, df, manifest.name)
    return prepared


def _checked_cache(folder: Path) -> bool:
    """Whether ``folder`` holds a finished cache built under the current pseudonymity check."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and int(meta.get("pseudonymity_check", 0) or 0) >= PSEUDONYMITY_CHECK


def _check_pseudonyms(df: pd.DataFrame, results: Mapping[str, PatientResult], source: str) -> None:
    """Raise :class:`PseudonymityError` naming every manifest row whose ID equals a header identity.

    The message names the row, the ID (as the manifest writes it) and the elements, never their values.
    """
    offending = [f"row {i + 2}, patient_id {pid!r}: equals the DICOM {' and '.join(results[pid].identity_elements)}"
                 for i, pid in enumerate(df["patient_id"]) if results[pid].identity_elements]
    if offending:
        raise PseudonymityError(
            f"{source}: {len(offending)} patient_id(s) equal an identity element of their own DICOM files "
            "(PatientID, PatientName, OtherPatientIDs or AccessionNumber, compared without case, spaces or "
            "punctuation); patient IDs appear in every output, so give these patients pseudonyms that appear "
            "nowhere in their headers (nothing was cached):\n  " + "\n  ".join(offending))


def _add_cohort_warnings(df: pd.DataFrame, results: dict[str, PatientResult], top_k: int) -> None:
    """Add the ``qc.csv`` warnings that depend on the study's ``top_k`` or on the patient ID, not on the images."""
    for pid in df["patient_id"]:
        r = results[pid]
        if 0 < r.override_slices < top_k:
            at = sum(w.startswith("pvp_series_uid") for w in r.warnings)
            r.warnings.insert(at, f"pvp_series_uid selects a series of {r.override_slices} slices, "
                                  f"fewer than top_k = {top_k}")
        if looks_like_mrn(pid):
            r.warnings.insert(0, MRN_WARNING)


def _warn(prepared: PreparedCohort, df: pd.DataFrame, source: str) -> None:
    """The cohort-level warnings of :func:`prepare`, for a new cache and a reused one alike."""
    mrn = [f"row {i + 2} ({pid!r})" for i, pid in enumerate(df["patient_id"]) if looks_like_mrn(pid)]
    if mrn:
        warnings.warn(f"{source}: patient_id of {', '.join(mrn)} has {MRN_DIGITS} or more digits in a row, "
                      "like a hospital record number (MRN); it matches no identity element of the DICOM headers, "
                      "but if it is a hospital ID, replace it with a pseudonym: it appears in every output",
                      PseudonymityWarning, stacklevel=3)
    for group in prepared.shared_studies():
        warnings.warn(f"{source}: patients {group} share a StudyInstanceUID: the same person under several IDs? "
                      "(the leakage guard stops a study that puts them in different splits; cross-validation "
                      "keeps them together)", DuplicatePatientWarning, stacklevel=3)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The ``.npy`` (version 1.0) header ``np.save`` writes for a C-ordered uint8 array of ``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.dtype(np.uint8).str, "fortran_order": False,
                                                  "shape": tuple(int(v) for v in shape)})
    return buffer.getvalue()


def _write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


class _Stack:
    """A uint8 ``(n, size, size)`` ``.npy`` file written plane block by plane block, ``n`` known at the end.

    The header is written last, into the room reserved for it (``.npy`` headers are padded to 64
    bytes, so the room does not depend on ``n``): the finished file is the one ``np.save`` writes
    for the stacked array, never held in memory as a whole.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.size, self.n = size, 0
        self.header_bytes = len(_npy_header((0, size, size)))
        if len(_npy_header((10**15, size, size))) != self.header_bytes:
            raise ValueError(f"image_size {size} is too large for a .npy cache")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
        os.lseek(self.fd, self.header_bytes, os.SEEK_SET)

    def add(self, planes: np.ndarray | None = None, *, file: str = "", count: int = 0) -> None:
        """Append ``planes`` (uint8, (k, size, size)), or the ``count`` planes in raw ``file`` (then deleted)."""
        if planes is not None:
            arr = np.ascontiguousarray(planes, dtype=np.uint8)
            if arr.ndim != 3 or arr.shape[1:] != (self.size, self.size):
                raise ValueError(f"planes of shape {arr.shape} do not fit a stack of {self.size} px planes")
            _write_all(self.fd, arr.data)
            self.n += len(arr)
            return
        _copy_into(self.fd, file, count * self.size * self.size)
        os.unlink(file)
        self.n += count

    def add_zeros(self, count: int) -> None:
        zeros = np.zeros((min(count, 64), self.size, self.size), dtype=np.uint8)
        while count > 0:
            self.add(zeros[:count])
            count -= min(count, len(zeros))

    def finish(self) -> None:
        header = _npy_header((self.n, self.size, self.size))
        if len(header) != self.header_bytes:  # cannot happen: see __init__
            raise RuntimeError("the .npy header outgrew its room")
        os.lseek(self.fd, 0, os.SEEK_SET)
        _write_all(self.fd, header)
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _PlaneWriter:
    """Writes ``images.npy`` (and ``masks.npy`` once a patient has a mask) into the temporary cache folder.

    Patients' planes are appended in manifest order as soon as each patient and all before it are
    done, while the others are still being processed; worker processes hand them over as raw files
    in ``.planes`` (see :func:`_pool_task`).
    """

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size = folder, size
        self.parts = folder / ".planes"
        self.images = _Stack(folder / "images.npy", size)
        self.masks: _Stack | None = None

    def __enter__(self) -> _PlaneWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        stacks = [s for s in (self.images, self.masks) if s is not None]
        if exc_type is None:
            for stack in stacks:
                stack.finish()
            shutil.rmtree(self.parts, ignore_errors=True)
        else:
            for stack in stacks:
                stack.close()

    def add(self, result: PatientResult) -> None:
        """Append an included patient's planes (excluded patients have none)."""
        if result.status != "included":
            return
        k = len(result.z_mm)
        if result.masks is not None or result.masks_file:
            if self.masks is None:  # the patients before had no mask: zeros for them
                self.masks = _Stack(self.folder / "masks.npy", self.size)
                self.masks.add_zeros(self.images.n)
            self.masks.add(result.masks, file=result.masks_file, count=k)
        elif self.masks is not None:
            self.masks.add_zeros(k)
        self.images.add(result.images, file=result.images_file, count=k)
        result.images = result.masks = None  # written: not kept in memory
        result.images_file = result.masks_file = ""


def _process_all(rows: list[dict], root: Path, config: PrepareConfig, n_workers: int, planes: _PlaneWriter,
                 show_progress: bool) -> dict[str, PatientResult]:
    """Every manifest row's :class:`PatientResult`, in this process or ``n_workers`` worker processes.

    Planes go to ``planes`` in manifest order as results come in.
    """
    results: dict[str, PatientResult] = {}
    order = [row["patient_id"] for row in rows]
    written = 0

    def collect(pid: str, result: PatientResult) -> None:
        nonlocal written
        results[pid] = result
        bar.update()
        while written < len(order) and order[written] in results:
            planes.add(results[order[written]])
            written += 1

    bar = tqdm(total=len(rows), desc="prepare", unit="patient", disable=not show_progress)
    if n_workers == 1:
        for row in rows:
            collect(row["patient_id"], process_patient(row, str(root), config))
    else:
        planes.parts.mkdir()
        crashed = _run_pool(rows, str(root), config, n_workers, collect, planes.parts)
        # A worker that dies (a decoder crashing on a corrupt file) takes the pool down: retry the
        # patients it left unfinished one process each, so only the culprit is excluded.
        for row in crashed:
            if _run_pool([row], str(root), config, 1, collect, planes.parts):
                collect(row["patient_id"], PatientResult(
                    row["patient_id"], "excluded",
                    "worker process crashed while reading this patient's images (corrupt file or decoder fault?)"))
    bar.close()
    if written != len(order):
        raise RuntimeError(f"{len(order) - written} patient(s) left unprocessed")
    return results


def _init_worker() -> None:
    """Worker process setup: keep freed memory for reuse rather than handing it back to the kernel (glibc).

    A worker allocates and frees the same few megabytes for every patient; glibc's defaults return
    large blocks to the kernel and fault them back in, zero-filled page by page, for the next one.
    Elsewhere (no ``mallopt``) nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc <malloc.h>
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 512 << 20)


def _pool_task(row: dict[str, str], root: str, config: PrepareConfig, stem: str) -> PatientResult:
    """:func:`process_patient` in a worker process, its planes written to ``stem.images`` / ``stem.masks``.

    The parent copies those files into the cache (in the kernel where it can), instead of receiving
    every plane through the result pipe and copying it again from Python.
    """
    result = process_patient(row, root, config)
    for name in ("images", "masks"):
        planes = getattr(result, name)
        if planes is not None:
            path = f"{stem}.{name}"
            np.ascontiguousarray(planes, dtype=np.uint8).tofile(path)
            setattr(result, name, None)
            setattr(result, f"{name}_file", path)
    return result


def _run_pool(rows: list[dict], root: str, config: PrepareConfig, n_workers: int,
              collect: Callable[[str, PatientResult], None], parts: Path) -> list[dict]:
    """Process ``rows`` in worker processes, each result to ``collect``; returns the rows lost to a crashed worker."""
    # fork (Linux) needs no `if __name__ == "__main__"` guard in user scripts; workers touch no torch.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    lost: list[dict] = []
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker)
    finished = False
    try:
        # Forked workers inherit this process's objects; frozen, the workers' garbage collector leaves
        # them alone instead of walking (and copying page by page) the whole inherited heap. (Not if
        # the caller froze objects itself: unfreezing would undo that too.)
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            futures = {pool.submit(_pool_task, row, root, config, str(parts / _plane_stem(row))): row
                       for row in _largest_first(rows, root)}
        finally:
            if freeze:
                gc.unfreeze()
        for fut in as_completed(futures):
            pid = futures[fut]["patient_id"]
            try:
                result = fut.result()
            except BrokenProcessPool:
                lost.append(futures[fut])
                continue
            except Exception as exc:  # e.g. a result that cannot be sent back
                result = PatientResult(pid, "excluded", f"worker process failed ({type(exc).__name__})")
            collect(pid, result)
        finished = True
    finally:
        # Every task done: the idle workers exit in the background while the cache is finished.
        pool.shutdown(wait=not finished, cancel_futures=not finished)
    return lost


def _largest_first(rows: list[dict], root: str) -> list[dict]:
    """``rows`` ordered by the number of entries below their ``dicom_dir``, most first (a stable sort).

    Workers take patients in this order, so the last ones handed out are small and the workers
    finish together; results are still written in manifest order.
    """
    def entries(row: dict) -> int:
        if row.get("exclusion"):
            return 0
        count, pending = 0, [os.path.join(root, row["dicom_dir"])]
        while pending:
            try:
                with os.scandir(pending.pop()) as it:
                    for entry in it:
                        count += 1
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(entry.path)
            except OSError:
                continue
        return count

    sizes = {id(row): entries(row) for row in rows}
    return sorted(rows, key=lambda row: -sizes[id(row)])


def _plane_stem(row: dict[str, str]) -> str:
    """File name stem of one patient's plane files (the ID may hold any character: hash it)."""
    return hashlib.sha256(str(row["patient_id"]).encode()).hexdigest()[:32]


def _copy_into(fd: int, source: str, nbytes: int) -> None:
    """Append the ``nbytes`` bytes of file ``source`` to ``fd`` (a kernel-side copy where the OS has one)."""
    with open(source, "rb") as src:
        size = os.fstat(src.fileno()).st_size
        if size != nbytes:
            raise ValueError(f"plane file {Path(source).name} holds {size} bytes, expected {nbytes}")
        done = 0
        if hasattr(os, "copy_file_range"):
            try:
                while done < nbytes:
                    step = os.copy_file_range(src.fileno(), fd, nbytes - done)
                    if step == 0:
                        break
                    done += step
            except OSError:
                pass  # e.g. not supported between these files: copy the rest in Python
        src.seek(done)
        while done < nbytes:
            chunk = src.read(min(nbytes - done, 1 << 22))
            if not chunk:
                raise ValueError(f"plane file {Path(source).name} ended early")
            _write_all(fd, chunk)
            done += len(chunk)


def content_digest(folder: str | Path) -> str:
    """SHA-256 of what a slice cache holds (``images.npy``, ``masks.npy`` if present, ``index.csv``).

    The identity that trained models inherit: two caches with the same pixels and slices have the same
    digest, wherever and whenever their cohort was written (the cache's folder name also covers file
    sizes and modification times, so that a changed file is never reused, and differs between copies).
    """
    folder = Path(folder)
    names = [name for name in ("images.npy", "masks.npy", "index.csv") if (folder / name).is_file()]

    def digest(name: str) -> bytes:
        with (folder / name).open("rb") as f:
            return hashlib.file_digest(f, "sha256").digest()

    # The files are hashed side by side (hashlib and file reads release the GIL), combined in order.
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        digests = list(pool.map(digest, names))
    h = hashlib.sha256()
    for name, file_hash in zip(names, digests):
        h.update(name.encode() + b"\0")
        h.update(file_hash)
    return h.hexdigest()


def _write_cache(tmp: Path, df: pd.DataFrame, results: dict[str, PatientResult], config: PrepareConfig,
                 sha: str, manifest: Path, signature: Mapping[str, object]) -> None:
    """index.csv, qc.csv and meta.json of a cache whose planes :class:`_PlaneWriter` wrote."""
    order = [pid for pid in df["patient_id"]]
    included = [results[p] for p in order if results[p].status == "included"]
    n = sum(len(r.z_mm) for r in included)
    index_rows = [{"patient_id": r.patient_id, "slice": i, "z_mm": round(z, 3)}
                  for r in included for i, z in enumerate(r.z_mm)]
    write_csv(tmp / "index.csv", pd.DataFrame(index_rows, columns=["patient_id", "slice", "z_mm"]))
    qc = pd.DataFrame([{
        "patient_id": r.patient_id, "status": r.status, "reason": r.reason,
        "n_slices": len(r.z_mm), "warnings": "; ".join(r.warnings), "pvp_rule": r.pvp_rule,
        "pixel_spacing_mm": round(r.pixel_spacing_mm, 4) if r.status == "included" else "",
        "slice_mm": round(r.slice_mm, 4) if r.status == "included" and np.isfinite(r.slice_mm) else "",
        "n_files": r.n_files, "study_key": r.study_key, "pixel_key": r.pixel_key,
    } for r in (results[p] for p in order)], columns=list(QC_COLUMNS))
    write_csv(tmp / "qc.csv", qc)
    summary = Counter(reason_category(r.reason) for r in results.values() if r.status == "excluded")
    write_json(tmp / "meta.json", {
        "cache_version": CACHE_VERSION, "config": asdict(config), "pixel_mm": config.pixel_mm,
        "manifest_sha256": sha, "manifest_name": manifest.name, "cohort_signature": dict(signature),
        "content_sha256": content_digest(tmp),
        "n_patients": len(order),
        "n_included": len(included), "n_slices": n, "exclusions": dict(summary),
        "pseudonymity_check": PSEUDONYMITY_CHECK,
    })
