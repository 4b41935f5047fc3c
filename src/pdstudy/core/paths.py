"""Where the checkout is, and how machine paths are kept out of outputs.

Every output that could carry a path of the machine it was written on goes through :func:`redact`:
``provenance.json`` (absolute values -> ``<file name>``), ``qc.csv`` exclusion reasons (the patient's
folder -> ``.``, other folders dropped), executed notebooks (path parameters -> ``<run_dir>``,
``<manifest folder>``, ...) and ``REPORT.md`` (the run -> ``.``, the checkout -> ``<checkout>``,
the home folder -> ``~``). Each caller keeps its own placeholders; the replacing is done here once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

__all__ = ["is_absolute_path", "redact", "repo_root"]

#: An absolute POSIX path of two or more components inside text; group 1 is its last component.
_INNER_PATH: Final = re.compile(r"(?<![\w.])(?:/[^\s'\"/:]+)+/([^\s/'\":]+)")


def repo_root(start: str | Path | None = None) -> Path:
    """The checkout the package runs from: the nearest folder above ``start`` holding ``pyproject.toml`` and
    ``notebooks/`` (default: this file's location, so it does not depend on the working directory).

    Parameters
    ----------
    start : str or pathlib.Path, optional
        File or folder to search upward from (itself included).

    Returns
    -------
    pathlib.Path
        The checkout's root folder, resolved.

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


def is_absolute_path(text: str) -> bool:
    """Whether ``text`` as a whole is an absolute path: POSIX (``/...``) or Windows (``C:\\...``, ``C:/...``)."""
    return text.startswith("/") or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


def redact(
    obj: Any,
    placeholders: Mapping[str, str] | None = None,
    *,
    json_escaped: bool = False,
    whole_paths: str | None = None,
    inner_paths: bool = False,
) -> Any:
    """Replace machine paths in a string, or in every string of a nested dict/list/tuple.

    Per string, in this order:

    1. every occurrence of each key of ``placeholders`` is replaced by its value, longest key first
       (keys of equal length in the mapping's order), so a folder's placeholder never splits a longer
       path below it;
    2. with ``whole_paths``, a string that is itself an absolute path (:func:`is_absolute_path`) becomes
       ``whole_paths.format(name=<its last component>)``;
    3. with ``inner_paths``, every absolute POSIX path of two or more components left inside the text
       keeps only its last component.

    Parameters
    ----------
    obj : Any
        A string, or a dict (values are redacted, keys kept), list or tuple (returned as a list) of such;
        anything else is returned unchanged.
    placeholders : mapping of str to str, optional
        Machine path -> its placeholder. Empty keys are ignored.
    json_escaped : bool
        Also replace each key as spelled inside a JSON string (``json.dumps(key)[1:-1]``, e.g. backslashes
        doubled, non-ASCII as ``\\uXXXX``), before the key itself: for text of a JSON file such as a notebook.
    whole_paths : str, optional
        Format string with ``{name}`` for strings that are an absolute path (e.g. ``"<{name}>"``).
    inner_paths : bool
        Reduce absolute paths embedded in text (error messages) to their last component.

    Returns
    -------
    Any
        ``obj`` with its strings redacted (a new object; ``obj`` is not modified).
    """
    swaps = sorted(((k, v) for k, v in (placeholders or {}).items() if k), key=lambda kv: len(kv[0]), reverse=True)
    return _redact(obj, swaps, json_escaped, whole_paths, inner_paths)


def _redact(obj: Any, swaps: list[tuple[str, str]], json_escaped: bool, whole_paths: str | None,
            inner_paths: bool) -> Any:
    if isinstance(obj, str):
        for path, placeholder in swaps:
            if json_escaped:
                obj = obj.replace(json.dumps(path)[1:-1], placeholder)
            obj = obj.replace(path, placeholder)
        if whole_paths is not None and is_absolute_path(obj):
            return whole_paths.format(name=Path(obj).name)
        return _INNER_PATH.sub(r"\1", obj) if inner_paths else obj
    if isinstance(obj, dict):
        return {k: _redact(v, swaps, json_escaped, whole_paths, inner_paths) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact(v, swaps, json_escaped, whole_paths, inner_paths) for v in obj]
    return obj
