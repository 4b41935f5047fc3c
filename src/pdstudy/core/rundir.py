"""The run directory layout shared by every notebook and CLI verb.

``reports/<run>/`` holds::

    notebooks/        executed copies of the notebooks (papermill output)
    tables/           CSV and Markdown tables
    figures/          PNG and PDF figures
    predictions/      per-stage prediction CSVs (schema in data_manifest/README.md)
    provenance.json   git commit, package versions, parameters, manifest checksum, seeds, device
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from pdstudy.core.io import write_json
from pdstudy.core.paths import redact

SUBDIRS = ("notebooks", "tables", "figures", "predictions")
TRACKED_PACKAGES = (
    "pdstudy", "torch", "torchvision", "timm", "pydicom", "numpy", "scipy", "pandas",
    "scikit-learn", "papermill", "grad-cam", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg",
)


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory; :meth:`create` makes the layout."""

    root: Path

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def provenance(self) -> Path:
        return self.root / "provenance.json"

    def create(self) -> RunDir:
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        return self


def run_dir(path: str | Path) -> RunDir:
    """Create (if needed) and return the run directory at ``path``."""
    return RunDir(Path(path).resolve()).create()


def git_commit(cwd: str | Path | None = None) -> str | None:
    """Commit hash of the checkout the package runs from (``+dirty`` when modified), or None."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that determine results (None when absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    """CPU count and, when torch is already imported, its device; never imports torch itself."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["cuda"] = bool(torch.cuda.is_available())
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


#: How provenance shows a value that is an absolute path: its last component in angle brackets.
PROVENANCE_PATH: Final = "<{name}>"


def redact_paths(obj: Any) -> Any:
    """Absolute paths -> ``<last component>``, recursively (provenance names files, not site folders).

    Parameters
    ----------
    obj : Any
        A string, or a dict/list/tuple of such (tuples become lists); other values pass unchanged.

    Returns
    -------
    Any
        ``obj`` with every string that is an absolute path replaced (:func:`pdstudy.core.paths.redact`).
    """
    return redact(obj, whole_paths=PROVENANCE_PATH)


def update_provenance(run: RunDir, section: str, record: dict[str, Any]) -> Path:
    """Merge ``record`` under ``section`` in the run's provenance.json (atomic rewrite).

    The file always carries the git commit, package versions and device of the latest writer.
    Absolute paths in ``record`` are reduced to their last component (:func:`redact_paths`), so no
    folder above a patient's ``dicom_dir`` reaches the file.
    """
    current: dict[str, Any] = {}
    if run.provenance.exists():
        current = json.loads(run.provenance.read_text())
    current.setdefault("sections", {})[section] = {
        **redact_paths(record), "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    current.update(git_commit=git_commit(), packages=package_versions(), device=device_info())
    return write_json(run.provenance, current)
