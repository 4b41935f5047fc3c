"""Tables and figures written into a run directory: one style, CSV + Markdown, PNG + PDF."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from pdstudy.core.io import write_csv, write_text
from pdstudy.core.rundir import RunDir
from pdstudy.report._format import format_evaluation_table

__all__ = ["format_evaluation_table", "markdown_table", "write_evaluation_table", "write_table"]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """Render a DataFrame as a GitHub Markdown table (no extra dependency)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(df: pd.DataFrame, run: RunDir, name: str, *, title: str = "", notes: list[str] | None = None,
                floatfmt: str = ".3g") -> tuple[Path, Path]:
    """Write ``tables/<name>.csv`` and ``tables/<name>.md`` (title, table, notes) atomically."""
    csv_path = write_csv(run.tables / f"{name}.csv", df)
    parts = [f"# {title}\n" if title else "", markdown_table(df, floatfmt)]
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    md_path = write_text(run.tables / f"{name}.md", "\n".join(p for p in parts if p))
    return csv_path, md_path


def write_evaluation_table(table: pd.DataFrame, run: Any, name: str, *, title: str = "",
                           extra_notes: Iterable[str] = ()) -> dict[str, Any]:
    """Write a table's display version as ``<name>`` and its numeric version as ``<name>_values``.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of a table function of :mod:`pdstudy.evaluate` (``table2``, ``table3``, ``table4``,
        ``iteration_curve``, ``cv_summary``); the display version is :func:`format_evaluation_table`.
    run : pdstudy.core.rundir.RunDir
        Run directory.
    name : str
        File stem under ``tables/``.
    title : str
        Markdown title.
    extra_notes : iterable of str
        Notes appended after ``table.attrs["notes"]``.

    Returns
    -------
    dict
        ``{"display": (csv, md), "values": (csv, md)}`` paths from :func:`write_table`.
    """
    return write_display_and_values(table, format_evaluation_table(table), run, name, title=title,
                                    notes=[*table.attrs.get("notes", []), *extra_notes])


def write_display_and_values(table: pd.DataFrame, display: pd.DataFrame, run: Any, name: str, *, title: str = "",
                             notes: Iterable[str] = ()) -> dict[str, Any]:
    """Write a table's display version as ``<name>`` and its numbers as ``<name>_values`` (same notes).

    Parameters
    ----------
    table : pandas.DataFrame
        The numbers (written with 4 significant digits).
    display : pandas.DataFrame
        Its display version (intervals, percentages and p-values as text).
    run : pdstudy.core.rundir.RunDir
        Run directory.
    name : str
        File stem under ``tables/``.
    title : str
        Markdown title (the numbers' gets " (numeric values)").
    notes : iterable of str
        Notes under both.

    Returns
    -------
    dict
        ``{"display": (csv, md), "values": (csv, md)}`` paths from :func:`write_table`.
    """
    notes = list(notes)
    paths = {"display": write_table(display, run, name, title=title, notes=notes)}
    paths["values"] = write_table(table, run, f"{name}_values", title=f"{title} (numeric values)" if title else "",
                                  notes=notes, floatfmt=".4g")
    return paths
