"""`pdstudy verify`: a SHA-256 listing of every file of a cohort, so two sites can confirm identical data.

Listing lines are ``<sha256>  <patient_id>/<path relative to dicom_dir>`` (sha256sum format):
pseudonymous IDs only, no folder names from the hospital export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from pdstudy.core.hashing import sha256_file
from pdstudy.core.io import write_text
from pdstudy.data.manifest import read_manifest


@dataclass
class VerifyReport:
    """Outcome of comparing a cohort with a listing."""

    matched: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra)


def default_listing(manifest: str | Path) -> Path:
    """``<manifest stem>.sha256`` beside the manifest."""
    m = Path(manifest)
    return m.with_suffix(".sha256")


def cohort_hashes(manifest: str | Path, *, show_progress: bool = True) -> dict[str, str]:
    """SHA-256 of every file below each patient's ``dicom_dir``, keyed ``patient_id/relpath``."""
    manifest = Path(manifest)
    df = read_manifest(manifest)
    items: list[tuple[str, Path]] = []
    for pid, rel in zip(df["patient_id"], df["dicom_dir"]):
        folder = manifest.parent / rel
        if folder.is_dir():
            items += [(f"{pid}/{f.relative_to(folder).as_posix()}", f)
                      for f in sorted(folder.rglob("*")) if f.is_file()]
    return {key: sha256_file(f) for key, f in tqdm(items, desc="sha256", unit="file", disable=not show_progress)}


def write_listing(manifest: str | Path, listing: str | Path | None = None, *, show_progress: bool = True) -> Path:
    """Write the listing for a cohort (atomic) and return its path."""
    hashes = cohort_hashes(manifest, show_progress=show_progress)
    text = "".join(f"{h}  {key}\n" for key, h in sorted(hashes.items()))
    return write_text(listing or default_listing(manifest), text)


def read_listing(path: str | Path) -> dict[str, str]:
    """Parse a sha256sum-style listing; raises ValueError naming the bad line."""
    out: dict[str, str] = {}
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(f"{Path(path).name}, line {i}: expected '<sha256>  <patient_id>/<file>'")
        out[parts[1].strip()] = parts[0].lower()
    return out


def verify_cohort(
    manifest: str | Path, listing: str | Path | None = None, *, show_progress: bool = True
) -> VerifyReport:
    """Compare the cohort's files with a listing."""
    listing = Path(listing or default_listing(manifest))
    if not listing.is_file():
        raise FileNotFoundError(f"listing {listing} not found; create it with `pdstudy verify --manifest M --write`")
    expected = read_listing(listing)
    actual = cohort_hashes(manifest, show_progress=show_progress)
    rep = VerifyReport()
    for key, h in expected.items():
        if key not in actual:
            rep.missing.append(key)
        elif actual[key] != h:
            rep.changed.append(key)
        else:
            rep.matched += 1
    rep.extra = sorted(set(actual) - set(expected))
    return rep
