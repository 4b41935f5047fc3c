"""Where the checkout is, and how paths are kept out of outputs."""

from __future__ import annotations

from pathlib import Path


def repo_root(start: str | Path | None = None) -> Path:
    """The checkout the package runs from: the nearest folder above ``start`` holding ``pyproject.toml`` and
    ``notebooks/`` (default: this file's location, so it does not depend on the working directory).

    Raises
    ------
    FileNotFoundError
        When no folder above ``start`` is a checkout (e.g. pdstudy installed from a wheel, without the notebooks).
    """
    here = Path(start if start is not None else __file__).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    raise FileNotFoundError(f"no pdstudy checkout (a folder with pyproject.toml and notebooks/) above {here}")
