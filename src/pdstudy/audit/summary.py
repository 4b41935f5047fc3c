"""Assemble the audit table, render its Markdown summary and write both files."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pdstudy.audit.check_claims import all_claim_rows
from pdstudy.audit.check_cohort import all_cohort_rows
from pdstudy.audit.check_metrics import all_metric_rows
from pdstudy.audit.check_text import all_text_rows
from pdstudy.audit.rows import COLUMNS, VERDICT_ORDER, VERDICTS
from pdstudy.core.paper import load_paper

CSV_NAME = "paper_audit.csv"
MD_NAME = "paper_audit.md"
#: In the Markdown summary, a check with more notes than this is collapsed to one line.
_COLLAPSE = 8


def run_audit() -> pd.DataFrame:
    """Run every check on the shipped paper numbers.

    Returns
    -------
    pandas.DataFrame
        One row per check with columns ``item, check, reported, expected, verdict,
        explanation``; problems first (inconsistent, unsupported, ambiguous, note,
        supported, consistent), otherwise in section order (cohort and Table 1, Tables
        2-4, text, claims and protocol).
    """
    paper = load_paper()
    rows = [*all_cohort_rows(paper), *all_metric_rows(paper), *all_text_rows(paper), *all_claim_rows(paper)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    bad = set(df["verdict"]) - set(VERDICTS)
    if bad:
        raise RuntimeError(f"audit produced unknown verdicts {sorted(bad)}")
    order = df["verdict"].map(VERDICT_ORDER)
    return df.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _bullet(r: pd.Series) -> str:
    line = f"- **{_md_escape(r['item'])}** ({r['check']}): reported {_md_escape(r['reported'])}"
    if r["expected"]:
        line += f"; expected {_md_escape(r['expected'])}"
    if r["explanation"]:
        line += f". {_md_escape(r['explanation'])}"
    return line


def audit_markdown(df: pd.DataFrame) -> str:
    """Short Markdown summary of an audit table, every non-consistent finding first.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`run_audit`.

    Returns
    -------
    str
        Markdown: verdict counts, then inconsistent, unsupported, ambiguous findings one
        bullet each, notes (large groups of the same check collapsed), then a count of
        the consistent / supported checks by check type.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"audit table lacks columns {missing}")
    counts = df["verdict"].value_counts()
    lines = [
        "# Paper audit: the published numbers checked against themselves",
        "",
        f"{len(df)} checks: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)) + ".",
        "Verdicts: *inconsistent* = the numbers cannot all be true; *unsupported* = a claim the reported numbers do "
        "not establish; *ambiguous* = several readings fit; *note* = context for a reproduction; "
        "*consistent* / *supported* = the check passes.",
        "",
    ]
    titles = {"inconsistent": "Inconsistent", "unsupported": "Unsupported claims", "ambiguous": "Ambiguous"}
    for verdict, title in titles.items():
        sub = df[df["verdict"] == verdict]
        if len(sub):
            lines += [f"## {title} ({len(sub)})", "", *(_bullet(r) for _, r in sub.iterrows()), ""]
    notes = df[df["verdict"] == "note"]
    if len(notes):
        lines += [f"## Notes ({len(notes)})", ""]
        for check, sub in notes.groupby("check", sort=False):
            if len(sub) > _COLLAPSE:
                first = sub.iloc[0]
                lines.append(f"- **{check}** ({len(sub)} rows, see the CSV), e.g. {_md_escape(first['item'])}: "
                             f"{_md_escape(first['reported'])} -> {_md_escape(first['expected'])}. "
                             f"{_md_escape(first['explanation'])}")
            else:
                lines += [_bullet(r) for _, r in sub.iterrows()]
        lines.append("")
    ok = df[df["verdict"].isin(["consistent", "supported"])]
    if len(ok):
        lines += [f"## Passed ({len(ok)})", ""]
        for (check, verdict), sub in ok.groupby(["check", "verdict"], sort=False):
            lines.append(f"- {check}: {len(sub)} {verdict}")
        lines.append("")
    return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_audit(out_dir: str | Path) -> tuple[Path, Path]:
    """Run the audit and write ``paper_audit.csv`` and ``paper_audit.md`` into ``out_dir``.

    Each file is written to a temporary file in ``out_dir`` and moved into place with
    :func:`os.replace`, so a reader never sees a half-written file.

    Parameters
    ----------
    out_dir : str or Path
        Target folder; created if missing.

    Returns
    -------
    (Path, Path)
        Paths of the CSV and the Markdown file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out must be a folder, got the file {out}")
    out.mkdir(parents=True, exist_ok=True)
    df = run_audit()
    csv_path, md_path = out / CSV_NAME, out / MD_NAME
    _atomic_write(csv_path, df.to_csv(index=False, lineterminator="\n"))
    _atomic_write(md_path, audit_markdown(df))
    return csv_path, md_path


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m pdstudy.audit [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m pdstudy.audit",
        description="Check the PD paper's published numbers against themselves (no data, no torch).",
    )
    parser.add_argument("--out", default=".", help="folder for paper_audit.csv and paper_audit.md (default: .)")
    args = parser.parse_args(argv)
    csv_path, md_path = write_audit(args.out)
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    counts = df["verdict"].value_counts()
    print(f"wrote {csv_path} and {md_path}: {len(df)} checks, "
          + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)))
    return 0
