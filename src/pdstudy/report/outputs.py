"""What a notebook wrote into its run directory: a check that its figures and tables are there."""

from __future__ import annotations

from collections.abc import Iterable

from pdstudy.core.rundir import RunDir

#: File types of a saved figure (:func:`pdstudy.report.style.save_figure`) and a written table.
FIGURE_EXTENSIONS = ("png", "pdf")
TABLE_EXTENSIONS = ("csv", "md")


def missing_outputs(run: RunDir, *, figures: Iterable[str] = (), tables: Iterable[str] = (),
                    min_bytes: int = 1000) -> list[str]:
    """Figures and tables of a run that are missing, or figures smaller than ``min_bytes``.

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        Run directory.
    figures : iterable of str
        Figure names (``figures/<name>.png`` and ``.pdf`` must exist with at least ``min_bytes``).
    tables : iterable of str
        Table names (``tables/<name>.csv`` and ``.md`` must exist).
    min_bytes : int
        Smallest size of a figure file that is taken to hold a drawing.

    Returns
    -------
    list of str
        One line per missing or too small file (empty when everything is there).
    """
    problems = []
    for name in figures:
        for ext in FIGURE_EXTENSIONS:
            path = run.figures / f"{name}.{ext}"
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif path.stat().st_size <= min_bytes:
                problems.append(f"{path} has {path.stat().st_size} bytes (<= {min_bytes})")
    for name in tables:
        for ext in TABLE_EXTENSIONS:
            path = run.tables / f"{name}.{ext}"
            if not path.is_file():
                problems.append(f"{path} is missing")
    return problems
