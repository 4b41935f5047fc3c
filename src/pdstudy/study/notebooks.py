"""`pdstudy run`: execute the numbered notebooks in order with papermill, injecting parameters."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from pdstudy.core.io import write_text
from pdstudy.core.params import PATH_PARAMETERS, check_parameter_values, load_profile
from pdstudy.core.paths import redact, repo_root
from pdstudy.core.rundir import RunDir, run_dir, update_provenance

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"

#: Path parameter -> the keyword of :func:`run_notebooks` and the ``pdstudy run`` option that also set it.
PATH_OPTIONS = {"run_dir": ("out", "--out"), "data_dir": ("data_dir", "--data-dir"),
                "manifest": ("manifest", "--manifest")}


class RunError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell."""


def notebooks_dir() -> Path:
    """The numbered notebooks shipped with the checkout."""
    nb = repo_root() / "notebooks"
    if not nb.is_dir():
        raise RunError(f"notebooks folder not found at {nb}; run pdstudy from a checkout (pip install -e .)")
    return nb


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict, values parsed as YAML scalars (``3`` -> int, ``true`` -> bool)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"parameter {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _same_path(a: Any, b: Any) -> bool:
    """Two path values name the same file or folder (relative ones from the current directory)."""
    a, b = str(a).strip(), str(b).strip()
    if not a or not b:
        return a == b
    return Path(a).resolve() == Path(b).resolve()


def check_path_options(overrides: dict[str, Any], **options: str | Path | None) -> None:
    """Refuse a path given twice with two different values: as a ``-p`` override and as its own option.

    ``pdstudy run -p run_dir=X --out Y`` would otherwise write the notebooks' tables to X and the executed
    notebooks and ``provenance.json`` to Y.

    Parameters
    ----------
    overrides : dict
        The ``-p key=value`` parameters.
    **options : path or None
        The keywords of :func:`run_notebooks` that set a path parameter (``out``, ``data_dir``, ``manifest``,
        see :data:`PATH_OPTIONS`); None means not given.

    Raises
    ------
    ValueError
        Naming both values and how each was given, for every parameter given twice differently.
    """
    unknown = sorted(set(options) - {keyword for keyword, _ in PATH_OPTIONS.values()})
    if unknown:
        raise ValueError(f"options must be among {[k for k, _ in PATH_OPTIONS.values()]}, got {unknown}")
    clashes = []
    for key, (keyword, flag) in PATH_OPTIONS.items():
        given = options.get(keyword)
        if key in overrides and given is not None and not _same_path(overrides[key], given):
            clashes.append(f"-p {key}={overrides[key]} and {flag} {given} name different paths")
    if clashes:
        raise ValueError("contradictory parameters: " + "; ".join(clashes)
                         + ". Give each path once (or the same path to both).")


def select_notebooks(folder: Path, only: list[str] | None = None) -> list[Path]:
    """Numbered notebooks in order; ``only`` keeps those whose two-digit prefix is listed."""
    books = sorted(folder.glob(NOTEBOOK_GLOB))
    if only:
        wanted = {o.strip().zfill(2) for o in only if o.strip()}
        have = {b.name[:2] for b in books}
        missing = sorted(wanted - have)
        if missing:
            raise ValueError(f"no notebook numbered {missing}; available: {sorted(have)}")
        books = [b for b in books if b.name[:2] in wanted]
    return books


def declared_parameters(path: Path) -> dict[str, Any]:
    """Names and defaults of the notebook's ``parameters`` cell."""
    import papermill as pm  # lazy: papermill (and its Jupyter stack) only when notebooks are inspected or run

    return {name: info["default"] for name, info in pm.inspect_notebook(str(path)).items()}


def parameter_placeholders(parameters: dict[str, Any]) -> dict[str, str]:
    """Placeholders of the absolute path parameters: value -> ``<key>``, and for ``manifest`` and
    ``readers_csv`` also their folder -> ``<key folder>``.

    Parameters
    ----------
    parameters : dict
        Notebook parameters; only the keys of :data:`pdstudy.core.params.PATH_PARAMETERS` are read.

    Returns
    -------
    dict of str to str
        Machine path -> placeholder, for :func:`pdstudy.core.paths.redact` (a later key wins on equal paths).
    """
    swaps: dict[str, str] = {}
    for key in PATH_PARAMETERS:
        value = parameters.get(key)
        if isinstance(value, str) and value and Path(value).is_absolute():
            swaps[value] = f"<{key}>"
            if key in ("manifest", "readers_csv"):
                swaps[str(Path(value).parent)] = f"<{key} folder>"
    return swaps


def scrub_notebook_paths(notebook: Path, parameters: dict[str, Any]) -> None:
    """Replace absolute path parameters (and the cohort folder) in an executed notebook by placeholders.

    papermill records injected parameters in the notebook; site folders above a patient's
    ``dicom_dir`` must not reach outputs, so ``/site/cohort/manifest.csv`` becomes ``<manifest>``
    (:func:`parameter_placeholders`, replaced raw and JSON-escaped by :func:`pdstudy.core.paths.redact`).

    Parameters
    ----------
    notebook : pathlib.Path
        Executed notebook, rewritten in place (atomically) when a path parameter is set.
    parameters : dict
        The parameters injected into it.
    """
    swaps = parameter_placeholders(parameters)
    if not swaps:
        return
    text = notebook.read_text(encoding="utf-8")
    write_text(notebook, redact(text, swaps, json_escaped=True))


def execute_notebook(book: Path, output: Path, parameters: dict[str, Any], *, kernel: str | None = None,
                     progress: bool = False) -> Path:
    """Execute one notebook with papermill (cwd = its folder), then :func:`scrub_notebook_paths` the copy.

    Raises
    ------
    RunError
        Naming the notebook and the cell that failed.
    """
    import papermill as pm  # lazy: papermill (and its Jupyter stack) only when notebooks are inspected or run

    try:
        pm.execute_notebook(str(book), str(output), parameters=parameters, cwd=str(book.parent), kernel_name=kernel,
                            progress_bar=progress, log_output=False)
    except pm.PapermillExecutionError as exc:
        raise RunError(
            f"notebook {book.name} failed in cell {exc.exec_count} (index {exc.cell_index}): "
            f"{exc.ename}: {exc.evalue}\n  executed copy: {output}"
        ) from None
    finally:
        if output.exists():
            scrub_notebook_paths(output, parameters)
    return output


def run_notebooks(
    *,
    profile: str = "quick",
    manifest: str | Path | None = None,
    out: str | Path | None = None,
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    data_dir: str | Path | None = None,
    kernel: str | None = None,
    progress: bool = True,
) -> RunDir:
    """Execute the notebooks with papermill into ``out/notebooks`` and return the run directory.

    Parameters
    ----------
    profile : {"quick", "paper"}
        Parameter set injected into every notebook that declares the parameter.
    manifest : path, optional
        Cohort manifest; None uses the synthetic cohort (generated once, cached in ``data_dir``).
    out : path, optional
        Run directory (default ``reports/<profile>`` of the checkout, like the notebooks' own default).
    only : list of str, optional
        Two-digit notebook numbers to run (e.g. ``["01", "03"]``).
    overrides : dict, optional
        Parameters overriding the profile; each must be declared by at least one selected notebook.
        ``run_dir``, ``data_dir`` and ``manifest`` here must agree with ``out``, ``data_dir`` and ``manifest``
        when both are given (:func:`check_path_options`); ``run_dir`` alone also places the executed notebooks.
    data_dir : path, optional
        Synthetic cohort and slice cache root (default ``data/`` beside ``notebooks/``).
    kernel : str, optional
        Jupyter kernel name (default: the notebook's, i.e. ``python3`` of this interpreter).

    Raises
    ------
    RunError
        Naming the notebook and cell when a notebook fails; later notebooks do not run.
    ValueError
        An unknown parameter, a value a parameter cannot have (:class:`pdstudy.core.ParameterError`), or a path
        given twice with different values (nothing is written then).
    """
    overrides = dict(overrides or {})
    check_path_options(overrides, out=out, data_dir=data_dir, manifest=manifest)
    folder = notebooks_dir()
    books = select_notebooks(folder, only)
    params = load_profile(profile)
    declared = {b.name: declared_parameters(b) for b in books}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; the selected notebooks declare {sorted(known)}")
    check_parameter_values({**params, **overrides})
    # -p run_dir=X alone places the executed notebooks and provenance.json in X too, beside the tables
    run_root = out or (str(overrides["run_dir"]) if str(overrides.get("run_dir", "")).strip() else None)
    run = run_dir(run_root or folder.parent / "reports" / profile)
    params.update(run_dir=str(run.root), data_dir=str(Path(data_dir or folder.parent / "data").resolve()),
                  manifest=str(Path(manifest).resolve()) if manifest else "")
    params.update({k: v for k, v in overrides.items() if k != "run_dir"})
    for key, value in params.items():
        # Paths given on the command line are relative to where the user is, not to notebooks/.
        if key in PATH_PARAMETERS and isinstance(value, str) and value and not Path(value).is_absolute():
            params[key] = str(Path(value).resolve())
    timings: dict[str, float] = {}
    for book in books:
        injected = {k: v for k, v in params.items() if k in declared[book.name]}
        t0 = time.perf_counter()
        execute_notebook(book, run.notebooks / book.name, injected, kernel=kernel, progress=progress)
        timings[book.name] = round(time.perf_counter() - t0, 1)
    update_provenance(run, "run", {"profile": profile, "parameters": params, "notebooks": timings})
    return run
