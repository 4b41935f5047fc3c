"""``REPORT.md``: one Markdown page that gathers a run's tables and figures with their provenance.

:func:`write_report` is called last by notebook 10. It writes ``<run>/REPORT.md`` (atomically,
through :func:`pdstudy.core.io.write_text`) with, in order:

1. a plain statement of the cohort (the built-in synthetic cohort, or the manifest's name);
2. provenance from ``provenance.json``: git commit, package versions, device, profile, the
   parameters of every notebook section (values that differ between sections are flagged),
   manifest checksum(s), seeds, and links to the executed notebooks under ``notebooks/``;
3. how to read the numbers: the threshold note (test-chosen thresholds are optimistic), the
   readers note (simulated or real clinicians, or no Table 3), the training note (models train on the
   training patients minus the validation carve), the seeds note (seed ensemble or single models),
   the decision curves' prevalence, a warning naming every embedded table with numbers resting on
   fewer than 10 patients of one class (:func:`small_sample_warnings`), and the caller's notes;
4. the paper audit of notebook 00 (verdict counts and a link) and the cohort of notebook 01
   (Table 1, patient flow, example slices), when those files exist;
5. every table given (its Markdown file embedded, with links to the CSV and numeric values) and
   every figure given (a relative link to the PNG, and to the PDF when present);
6. links to the run's other tables and figures.

Every link is relative to the run directory, so the folder can be moved or archived as a whole.
Machine paths never appear: path-valued parameters are shown by their file name only, and the run
directory, the checkout and the home folder are replaced by placeholders in any embedded text.
:func:`check_report` lists the problems of a written report (a link to a missing file, an absolute
link, a machine path); notebook 10 asserts that the list is empty.

:func:`report_contents` decides what notebook 10 puts into the report: the tables and figures of the
run with their captions (Table 3 and the Grad-CAM outputs only when notebooks 06 and 07 wrote them) and
the notes on how to read them. :func:`report_summary` and :func:`report_outline` describe a written
report in a line and by its headings.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from pdstudy.core.io import write_text
from pdstudy.core.methods import display_arch
from pdstudy.core.params import PATH_PARAMETERS
from pdstudy.core.paths import redact, repo_root
from pdstudy.core.rundir import RunDir
from pdstudy.evaluate import MIN_CLASS_PATIENTS, SMALL_MARK, SMALL_SPLIT_EFFECT, small_splits

__all__ = [
    "READERS_NOTES",
    "REPORT_NAME",
    "SYNTHETIC_STATEMENT",
    "THRESHOLD_NOTE",
    "TRAINING_NOTE",
    "ReportContents",
    "check_report",
    "readers_status",
    "report_contents",
    "report_links",
    "report_outline",
    "report_summary",
    "small_sample_warnings",
    "write_report",
]

REPORT_NAME: Final = "REPORT.md"

SYNTHETIC_STATEMENT: Final = (
    "**Cohort: the built-in SYNTHETIC cohort** (`pdstudy synth`): simulated CT studies with fake identities "
    "and a tumour whose appearance depends on a simulated response. No patient's data were used. The numbers "
    "below check that the pipeline works end to end; they are not a reproduction of the paper's results."
)

THRESHOLD_NOTE: Final = (
    "**Thresholds.** Accuracy, sensitivity and specificity depend on a threshold on the model's score. "
    "The paper chose it with Youden's index on the test patients and then scored the same patients; this "
    "report lists that policy as 'Youden on test, optimistic', because tuning on the evaluated patients "
    "inflates the metrics. The honest estimate is 'Youden on val': the threshold is chosen on validation "
    "patients carved from the training patients and applied unchanged to the test patients. AUCs do not "
    "depend on a threshold."
)

TRAINING_NOTE: Final = (
    "**Training patients.** Every model is trained on the training patients minus the validation patients "
    "carved from them (`val_fraction`), not on all training patients as in the paper; the validation patients "
    "are never trained on and choose the 'Youden on val' threshold. The tables give the patients of each split."
)

#: The readers note, by the state :func:`readers_status` returns.
READERS_NOTES: Final = {
    "simulated": (
        "**Readers are SIMULATED.** The paper does not publish its clinicians' calls. The readers in Table 3 and "
        "in the ROC figure with reader points are simulated: their calls hit the sensitivities and specificities "
        "the paper reports for its clinicians (C3, C20, C40) exactly on this run's test patients, but which "
        "patients they get right is random. Their McNemar tests only illustrate the analysis and say nothing "
        "about real clinicians."
    ),
    "real": (
        "**Readers.** Table 3 compares the model with real reader calls from the readers CSV given to notebook 06."
    ),
    None: (
        "**Readers.** No clinician comparison (Table 3) was written in this run; notebook 06 did not run."
    ),
}

_LINK: Final = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_ABS_PATH: Final = re.compile(r"(?<![\w:/.])(/(?:home|root|tmp|work|mnt|Users|var|srv|opt|data)/[^\s)|`'\"]*)")


# --------------------------------------------------------------------------------------------- helpers


def _resolve(run: RunDir, ref: str | Path, folder: Path, suffix: str, what: str) -> Path:
    """A file of the run: an absolute path inside it, a path relative to it, or a name in ``folder``."""
    ref = Path(ref)
    candidates = [ref] if ref.is_absolute() else [run.root / ref, folder / ref, folder / f"{ref}{suffix}"]
    for cand in candidates:
        if cand.is_file():
            cand = cand.resolve()
            try:
                cand.relative_to(run.root.resolve())
            except ValueError:
                raise ValueError(f"{what} {ref} lies outside the run directory; the report links files of the "
                                 "run only") from None
            return cand
    raise FileNotFoundError(f"{what} {ref} not found (looked for {', '.join(c.name for c in candidates)} in "
                            f"{folder.name}/ of the run)")


def _rel(run: RunDir, path: Path) -> str:
    return path.resolve().relative_to(run.root.resolve()).as_posix()


def _placeholders(run: RunDir) -> list[tuple[str, str]]:
    """(machine path, placeholder), longest first, for scrubbing embedded text."""
    pairs = {str(run.root.resolve()): ".", str(run.root): ".", str(repo_root()): "<checkout>",
             str(Path.home()): "~"}
    return sorted(((k, v) for k, v in pairs.items() if len(k) > 1), key=lambda kv: -len(kv[0]))


def _scrub(text: str, run: RunDir) -> str:
    return redact(text, dict(_placeholders(run)))


def _show_value(key: str, value: Any) -> str:
    """A parameter value for the report: path parameters by name only, lists compactly."""
    if value is None or value == "":
        return "(empty)"
    if key in PATH_PARAMETERS or (isinstance(value, str) and (value.startswith(("/", "~")) or ":\\" in value)):
        return f"{Path(str(value)).name} (name only)" if Path(str(value)).name else "(set)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _read_provenance(run: RunDir) -> dict[str, Any]:
    if not run.provenance.is_file():
        return {}
    try:
        return json.loads(run.provenance.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{run.provenance.name} is not valid JSON: {exc}") from None


def readers_status(run: RunDir) -> str | None:
    """``"simulated"`` or ``"real"`` from the run's Table 3 (``tables/table3_values.csv``); None without it."""
    path = run.tables / "table3_values.csv"
    if not path.is_file():
        return None
    t3 = pd.read_csv(path, keep_default_na=False)
    if "kind" in t3.columns:
        t3 = t3[t3["kind"] == "reader"]
    flags = t3.get("simulated", pd.Series([], dtype=str)).astype(str).str.strip().str.lower()
    names = t3.get("row", pd.Series([], dtype=str)).astype(str).str.lower()
    if flags.isin(["true", "1"]).any() or names.str.contains("simulated").any():
        return "simulated"
    return "real"


def report_links(path: str | Path) -> list[str]:
    """Link targets of a Markdown file (``[text](target)`` and ``![alt](target)``), in order."""
    return _LINK.findall(Path(path).read_text(encoding="utf-8"))


def check_report(path: str | Path) -> list[str]:
    """Problems of a written report: absolute or broken links and machine paths in the text (empty = fine)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    problems = []
    for target in report_links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        if target.startswith(("/", "~")) or re.match(r"^[A-Za-z]:\\", target):
            problems.append(f"absolute link {target}")
        elif not (path.parent / target.split("#")[0]).exists():
            problems.append(f"broken link {target}")
    problems += [f"machine path {m}" for m in _ABS_PATH.findall(text)]
    return problems


# --------------------------------------------------------------------------------------------- sections


def _cohort_section(cohort_name: str, synthetic: bool, prov: Mapping[str, Any]) -> list[str]:
    shas = sorted({s["manifest_sha256"] for s in prov.get("sections", {}).values()
                   if isinstance(s, Mapping) and s.get("manifest_sha256")})
    out = ["## Cohort", ""]
    if synthetic:
        out.append(SYNTHETIC_STATEMENT)
    else:
        out.append(f"**Cohort: {Path(str(cohort_name)).name or 'unnamed manifest'}** (the manifest given to the "
                   "run; real data). Patients are named only by the manifest's pseudonymous IDs.")
    if shas:
        out += ["", f"Manifest checksum (SHA-256): `{shas[0]}`" if len(shas) == 1 else
                "**Warning: the notebooks of this run used different manifests:** "
                + ", ".join(f"`{s}`" for s in shas)]
    return out + [""]


def _provenance_section(run: RunDir, prov: Mapping[str, Any]) -> list[str]:
    sections: Mapping[str, Any] = prov.get("sections", {}) or {}
    out = ["## Provenance", ""]
    if not prov:
        return out + ["No `provenance.json` in this run: git commit, versions and parameters are unknown.", ""]
    profiles = sorted({str(v) for s in sections.values() if isinstance(s, Mapping)
                       for v in (s.get("profile"), (s.get("parameters") or {}).get("profile")) if v})
    seeds: set[int] = set()
    for s in sections.values():
        if isinstance(s, Mapping):
            seeds.update(int(x) for x in (s.get("seeds") or []))
    rng_seeds = sorted({int(s["seed"]) for s in sections.values() if isinstance(s, Mapping)
                        and isinstance(s.get("seed"), int)})
    device = prov.get("device") or {}
    dev = ", ".join(f"{k} {v}" for k, v in device.items() if k in ("gpu", "cuda", "cpu_count", "python"))
    out += [
        f"- Git commit: `{prov.get('git_commit') or 'unknown (not a git checkout)'}`"
        + (" (the checkout had uncommitted changes)" if str(prov.get("git_commit", "")).endswith("+dirty") else ""),
        f"- Profile: {', '.join(profiles) if profiles else 'not recorded'}",
        f"- Training seeds: {', '.join(map(str, sorted(seeds))) if seeds else 'not recorded'}"
        + (f"; draw seed (examples, simulated readers): {', '.join(map(str, rng_seeds))}" if rng_seeds else ""),
        f"- Device of the last writer: {dev or 'not recorded'}",
        "- Full record: [provenance.json](provenance.json)",
        "",
    ]
    if sections:
        out += ["### Notebook sections", "", "| section | written (UTC) | methods | seeds | wall time (s) |",
                "| --- | --- | --- | --- | --- |"]
        for name, s in sections.items():
            if not isinstance(s, Mapping):
                continue
            methods = s.get("methods") or []
            out.append(f"| {_md_cell(name)} | {s.get('written', '')} | {len(methods) if methods else ''} | "
                       f"{_md_cell(_show_value('seeds', s.get('seeds'))) if s.get('seeds') else ''} | "
                       f"{s.get('wall_seconds', '')} |")
        out.append("")
    params: dict[str, dict[str, list[str]]] = {}
    for name, s in sections.items():
        if not isinstance(s, Mapping):
            continue
        for k, v in (s.get("parameters") or {}).items():
            params.setdefault(k, {}).setdefault(_show_value(k, v), []).append(name)
    if params:
        out += ["### Parameters", "",
                "As recorded by the notebooks (`provenance.json`); paths are shown by file name only.", "",
                "| parameter | value |", "| --- | --- |"]
        differing = []
        for k in sorted(params):
            vals = params[k]
            if len(vals) == 1:
                out.append(f"| {_md_cell(k)} | {_md_cell(next(iter(vals)))} |")
            else:
                differing.append(k)
                cell = "; ".join(f"{v} ({', '.join(secs)})" for v, secs in vals.items())
                out.append(f"| {_md_cell(k)} | **differs between notebooks:** {_md_cell(cell)} |")
        out.append("")
        if differing:
            out += [f"**Warning:** the notebooks of this run did not all use the same value of "
                    f"{', '.join(differing)}.", ""]
    packages = prov.get("packages") or {}
    if packages:
        out += ["### Package versions", "", "| package | version |", "| --- | --- |"]
        out += [f"| {k} | {v if v else 'not installed'} |" for k, v in sorted(packages.items())]
        out.append("")
    books = sorted(run.notebooks.glob("*.ipynb")) if run.notebooks.is_dir() else []
    out += ["### Executed notebooks", ""]
    out += [f"- [{b.name}]({_rel(run, b)})" for b in books] or [
        "None under `notebooks/` (the notebooks were run interactively, not through `pdstudy run`)."]
    return out + [""]


def small_sample_warnings(run: RunDir, tables: Mapping[str, str | Path]) -> list[str]:
    """Warnings on the tables whose numbers rest on fewer than 10 patients of one class (empty: none).

    Each table's numeric version (``tables/<name>_values.csv``, written by
    :func:`pdstudy.report.tables.write_evaluation_table`) is read; a row run (``status`` ``run`` or no
    status) whose ``n_<split>_poor`` or ``n_<split>_good`` is below
    :data:`pdstudy.evaluate.MIN_CLASS_PATIENTS` (:func:`pdstudy.evaluate.small_splits`) is reported with the
    split, its patients and what rests on it. Tables without a numeric version or without counts are skipped.

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory.
    tables : mapping of str to path
        Caption -> table of the run (as :func:`write_report` takes them).

    Returns
    -------
    list of str
        One Markdown line per distinct warning, naming the tables it concerns.
    """
    by_text: dict[str, list[str]] = {}
    for caption, ref in tables.items():
        path = _resolve(run, ref, run.tables, ".md", "table")
        values = path.with_name(f"{path.stem}_values.csv")
        if not values.is_file():
            continue
        t = pd.read_csv(values)
        if "status" in t.columns:
            t = t[t["status"].astype(str) == "run"]
        found: dict[str, set[str]] = {}
        for r in t.to_dict("records"):
            for split in small_splits(r):
                counts = (int(r[f"n_{split}_poor"]), int(r[f"n_{split}_good"]))
                found.setdefault(split, set()).add(f"{sum(counts)} ({counts[0]} poor / {counts[1]} good)")
        if found:
            text = "; ".join(f"{split} {', '.join(sorted(found[split]))}: {SMALL_SPLIT_EFFECT[split]}"
                             for split in found)
            by_text.setdefault(text, []).append(caption)
    return [f"**Warning, small samples ({SMALL_MARK}).** {', '.join(captions)}: fewer than {MIN_CLASS_PATIENTS} "
            f"patients of one class behind {text}. These numbers are marked {SMALL_MARK} in the tables and are "
            "unstable." for text, captions in by_text.items()]


def _seeds_note(prov: Mapping[str, Any]) -> str:
    seeds: set[int] = set()
    for s in (prov.get("sections") or {}).values():
        if isinstance(s, Mapping):
            seeds.update(int(x) for x in (s.get("seeds") or []))
    if len(seeds) == 1:
        return ("**Seeds.** One training seed: every number is that of a single model per method, as in the "
                "paper.")
    head = f"{len(seeds)} training seeds" if seeds else "With several training seeds"
    return (f"**Seeds.** {head}: the tables' main numbers (AUC, intervals, thresholds, ACC/SEN/SPE, p-values) "
            "and the figures are those of the SEED ENSEMBLE, each patient's mean score across the seeds (an "
            "ensemble, not a single model as in the paper); the 'seeds' figures (mean ± SD) are per-seed single "
            "models, each evaluated on its own seed's full splits.")


def _dca_note(prov: Mapping[str, Any]) -> str:
    params = ((prov.get("sections") or {}).get("08_report") or {}).get("parameters") or {}
    value = params.get("dca_prevalence", "")
    if value in ("", None):
        return ("**Decision curves** (Fig. 4B) are drawn at the test set's prevalence of poor response, which the "
                "split balances by design; a clinic's prevalence differs (notebook parameter `dca_prevalence` "
                "re-weights them), and the figure's title says which prevalence is shown.")
    return (f"**Decision curves** (Fig. 4B) are re-weighted to a prevalence of poor response of {value} "
            "(`dca_prevalence`), not the test set's own; the figure's title gives both.")


def _notes_section(run: RunDir, notes: Sequence[str], *, prov: Mapping[str, Any] | None = None,
                   tables: Mapping[str, str | Path] | None = None, decision_curves: bool = False) -> list[str]:
    prov = prov or {}
    out = ["## Reading the numbers", ""]
    out += [f"- {w}" for w in small_sample_warnings(run, tables or {})]
    out += [f"- {THRESHOLD_NOTE}", f"- {READERS_NOTES[readers_status(run)]}", f"- {TRAINING_NOTE}",
            f"- {_seeds_note(prov)}"]
    if decision_curves:
        out.append(f"- {_dca_note(prov)}")
    out += [f"- {_scrub(str(n), run)}" for n in notes if str(n).strip()]
    return out + [""]


def _audit_section(run: RunDir) -> list[str]:
    csv, md = run.tables / "paper_audit.csv", run.tables / "paper_audit.md"
    if not csv.is_file():
        return []
    audit = pd.read_csv(csv, dtype=str, keep_default_na=False)
    counts = audit["verdict"].value_counts() if "verdict" in audit.columns else pd.Series(dtype=int)
    order = ["inconsistent", "unsupported", "ambiguous", "note", "supported", "consistent"]
    keys = [k for k in order if k in counts.index] + [k for k in counts.index if k not in order]
    out = ["## Paper audit (notebook 00)", "",
           f"{len(audit)} checks of the paper's printed numbers against each other: "
           + ", ".join(f"{int(counts[k])} {k}" for k in keys) + ".",
           "*inconsistent*: the printed numbers cannot all be true; *unsupported*: a claim the printed numbers "
           "do not establish.", ""]
    power = audit[audit["item"].str.endswith("| power")] if "item" in audit.columns else audit.iloc[0:0]
    if len(power):
        out += ["**How many patients would the headline claims need?** "
                + " ".join(f"{r['item'].removesuffix(' | power')}: {r['explanation']}" for _, r in power.iterrows()),
                ""]
    links = [f"[{p.name}]({_rel(run, p)})" for p in (md, csv) if p.is_file()]
    return out + ["Full audit: " + " · ".join(links), ""]


def _embed_table(run: RunDir, caption: str, md_path: Path) -> list[str]:
    lines = md_path.read_text(encoding="utf-8").strip("\n").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = [("###" + ln) if ln.startswith("#") else ln for ln in lines]  # keep the report's outline
    while body and not body[0].strip():
        body.pop(0)
    out = [f"### {caption}", "", *(_scrub(ln, run) for ln in body), ""]
    links = [f"[{md_path.stem}.md]({_rel(run, md_path)})"]
    for sibling in (md_path.with_suffix(".csv"), md_path.with_name(f"{md_path.stem}_values.csv")):
        if sibling.is_file():
            links.append(f"[{sibling.name}]({_rel(run, sibling)})")
    return out + ["Files: " + " · ".join(links), ""]


def _embed_figure(run: RunDir, caption: str, png: Path) -> list[str]:
    out = [f"### {caption}", "", f"![{caption}]({_rel(run, png)})", ""]
    links = [f"[{png.name}]({_rel(run, png)})"]
    if png.with_suffix(".pdf").is_file():
        links.append(f"[{png.with_suffix('.pdf').name}]({_rel(run, png.with_suffix('.pdf'))})")
    return out + ["Files: " + " · ".join(links), ""]


def _cohort_outputs(run: RunDir) -> tuple[list[str], set[Path]]:
    """Section of notebook 01's outputs (Table 1, flow, example slices) when present."""
    used: set[Path] = set()
    parts: list[str] = []
    t1 = run.tables / "table1.md"
    if t1.is_file():
        parts += _embed_table(run, "Table 1. Baseline characteristics", t1)
        used.add(t1.resolve())
    for name, caption in (("patient_flow", "Patient flow"), ("example_slices", "Example portal-venous slices")):
        png = run.figures / f"{name}.png"
        if png.is_file():
            parts += _embed_figure(run, caption, png)
            used.add(png.resolve())
    qc = run.tables / "qc.csv"
    if qc.is_file():
        parts += [f"Per-patient quality control (inclusion, exclusion reasons): [qc.csv]({_rel(run, qc)})", ""]
        used.add(qc.resolve())
    if not parts:
        return [], used
    return ["## Cohort and preprocessing (notebook 01)", "", *parts], used


def _other_files(run: RunDir, used: set[Path]) -> list[str]:
    tables = sorted(p for p in run.tables.glob("*.md") if p.resolve() not in used
                    and not p.stem.endswith("_values")) if run.tables.is_dir() else []
    figures = sorted(p for p in run.figures.glob("*.png") if p.resolve() not in used) if run.figures.is_dir() else []
    if not tables and not figures:
        return []
    out = ["## Other outputs of the run", ""]
    if tables:
        out += ["Tables: " + " · ".join(f"[{p.stem}]({_rel(run, p)})" for p in tables), ""]
    if figures:
        out += ["Figures: " + " · ".join(f"[{p.stem}]({_rel(run, p)})" for p in figures), ""]
    return out


# --------------------------------------------------------------------------------------------- main


def write_report(
    run: RunDir,
    *,
    cohort_name: str,
    synthetic: bool,
    tables: Mapping[str, str | Path],
    figures: Mapping[str, str | Path],
    notes: Sequence[str],
) -> Path:
    """Write ``<run>/REPORT.md`` and return its path.

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory (its ``provenance.json``, ``tables/``, ``figures/`` and ``notebooks/`` are read).
    cohort_name : str
        The cohort's name (:attr:`pdstudy.data.cohort.Cohort.name`); for a manifest only its file name is shown.
    synthetic : bool
        Whether the run used the built-in synthetic cohort (the report then says so first).
    tables : mapping of str to path
        Caption -> Markdown table of the run (``tables/<name>.md``): a path inside the run, a path
        relative to it, or the bare name (``"table2"``). Embedded in the given order.
    figures : mapping of str to path
        Caption -> PNG figure of the run (``figures/<name>.png``), resolved like ``tables``.
    notes : sequence of str
        Extra lines for "Reading the numbers" (after the threshold and readers notes).

    Returns
    -------
    pathlib.Path
        ``run.root / "REPORT.md"``.

    Raises
    ------
    FileNotFoundError
        When a table or figure does not exist.
    ValueError
        When a table or figure lies outside the run directory.
    """
    table_paths = {cap: _resolve(run, ref, run.tables, ".md", "table") for cap, ref in tables.items()}
    figure_paths = {cap: _resolve(run, ref, run.figures, ".png", "figure") for cap, ref in figures.items()}
    prov = _read_provenance(run)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    commit = prov.get("git_commit") or "unknown"
    lines = [f"# Study report: Progressive Distill re-run ({run.root.name})", "",
             f"Written {now} by notebook 10 (`pdstudy.report.document.write_report`) from git commit `{commit}`; "
             "versions, parameters and seeds are under [Provenance](#provenance). All links are relative to "
             "this folder.", ""]
    lines += _cohort_section(cohort_name, synthetic, prov)
    lines += _notes_section(run, notes, prov=prov, tables=tables,
                            decision_curves=any(p.stem == "fig4b_decision_curves" for p in figure_paths.values()))
    cohort_lines, used = _cohort_outputs(run)
    lines += _audit_section(run)
    lines += cohort_lines
    used |= {(run.tables / n).resolve() for n in ("paper_audit.md",)}
    if table_paths:
        lines += ["## Tables", ""]
        for cap, path in table_paths.items():
            lines += _embed_table(run, cap, path)
            used.add(path)
    if figure_paths:
        lines += ["## Figures", ""]
        for cap, path in figure_paths.items():
            lines += _embed_figure(run, cap, path)
            used.add(path)
    lines += _other_files(run, used)
    lines += _provenance_section(run, prov)
    text = _scrub("\n".join(lines).rstrip("\n") + "\n", run)
    return write_text(run.root / REPORT_NAME, text)


# --------------------------------------------------------------------------------------------- contents


@dataclass(frozen=True)
class ReportContents:
    """What :func:`write_report` embeds: captions -> table and figure names of the run, and the notes."""

    tables: dict[str, str]
    figures: dict[str, str]
    notes: list[str]


def report_contents(
    run: RunDir,
    *,
    roc_panels: Mapping[str, str],
    curve_architectures: Sequence[str],
    fig4_model: str,
    fig4_policy: str,
    cv: bool,
    stand_ins: bool,
    protocol: str,
    ignored: Sequence[str] = (),
) -> ReportContents:
    """The tables, figures and notes of notebook 10's report, in report order.

    Table 3, Fig. 3 with the readers, the Grad-CAM outputs, the clinical fusion and the external validation are
    included when notebooks 06, 07, 08 and 09 wrote them into the run (and flagged as SIMULATED when the readers
    are); a note says when they are missing.

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory (its ``tables/`` and ``figures/`` are looked at).
    roc_panels : mapping of str to str
        Caption -> figure name of the ROC panels (Fig. 3A-C) written by notebook 10.
    curve_architectures : sequence of str
        Architectures of Fig. 6 (one table ``fig6_iterations_<arch>`` each).
    fig4_model : str
        Label of the model shown in Fig. 4.
    fig4_policy : str
        Threshold policy of Fig. 4A (``"youden_val"`` or, without validation patients, ``"youden_test"``).
    cv : bool
        Whether a cross-validation summary (``tables/cv_summary``) was written.
    stand_ins : bool
        Whether quick stand-ins replaced the paper's EfficientNets.
    protocol : str
        The run's protocol (``"fixed"`` or ``"cv"``).
    ignored : sequence of str
        Methods with prediction files in the run that the report does not use.

    Returns
    -------
    ReportContents
        ``tables`` and ``figures`` (caption -> name, as :func:`write_report` takes them) and ``notes``.
    """
    if isinstance(curve_architectures, str):
        raise ValueError(f"curve_architectures must be a list of architecture names, got {curve_architectures!r}")
    simulated = " (SIMULATED readers)" if readers_status(run) == "simulated" else ""
    has_table3 = (run.tables / "table3.md").exists()
    has_fig5 = (run.figures / "fig5_gradcam.png").exists()
    tables = {"Table 2. Final models on the test patients": "table2"}
    if has_table3:
        tables[f"Table 3. The PD model against clinicians{simulated}"] = "table3"
    tables["Table 4. Ablation"] = "table4"
    tables.update({f"Fig. 6 data: {display_arch(a)}": f"fig6_iterations_{a}" for a in curve_architectures})
    if cv:
        tables["Cross-validation summary"] = "cv_summary"
    for name, caption in (("gradcam_selection", "Grad-CAM: choice of the model to explain"),
                          ("gradcam_localisation", "Grad-CAM localisation of the tumour against chance"),
                          ("clinical_fusion", "Beyond the paper: clinical variables, CT and their fusion"),
                          ("clinical_fusion_cv", "Beyond the paper: clinical variables, CT and their fusion, "
                                                 "cross-validation"),
                          ("site_preprocessing", "Beyond the paper: what preprocessing changed, per site"),
                          ("table1_sites", "Beyond the paper: Table 1 per site"),
                          ("external_validation", "Beyond the paper: external validation, internal against "
                                                  "external test patients")):
        if (run.tables / f"{name}.md").exists():
            tables[caption] = name
    figures = dict(roc_panels)
    if (run.figures / "fig3_roc_readers.png").exists():
        figures["Fig. 3 with the readers' operating points" + simulated] = "fig3_roc_readers"
    figures.update({f"Fig. 4A. {fig4_model}: calls per RECIST category": "fig4a_confusion_recist",
                    "Fig. 4B. Decision curves": "fig4b_decision_curves", "Calibration, test set": "fig_calibration"})
    if has_fig5:
        figures["Fig. 5. Class activation maps, one test patient per RECIST category"] = "fig5_gradcam"
    if (run.figures / "fig5_gradcam_other.png").exists():
        figures["Fig. 5, other models: the hybrid and the 3D ResNet-50 on the same patients"] = "fig5_gradcam_other"
    figures["Fig. 6. Performance over PD iterations"] = "fig6_iterations"
    has_fusion = (run.figures / "clinical_fusion.png").exists()
    if has_fusion:
        figures["Beyond the paper: clinical model, CT model and fusion on the test patients"] = "clinical_fusion"
    has_external = (run.figures / "external_validation.png").exists()
    if has_external:
        figures["Beyond the paper: external validation (ROC, calibration, decision curves, slices kept)"] = (
            "external_validation")
    notes = [f"Fig. 4 shows {fig4_model}, fixed in advance (the paper's PD model), not chosen on the test set."]
    if fig4_policy != "youden_val":
        notes.append("Fig. 4A uses the test-chosen (optimistic) threshold: no validation patients of both classes.")
    if stand_ins:
        notes.append("Quick profile: tiny stand-ins replace the paper's EfficientNets, the hybrid and the 3D ResNet-50 "
                     "and train from random initialisation on small images; the numbers check the pipeline, they do "
                     "not reproduce the paper.")
    if protocol == "cv":
        notes.append("Protocol cv: Tables 2-4 and the figures use the fixed split (trained for this purpose); the "
                     "cross-validation summary is the protocol's own result.")
    if not has_table3:
        notes.append("Notebook 06 (clinician comparison) has not written Table 3 in this run.")
    if not has_fig5:
        notes.append("Notebook 07 (Grad-CAM) has not written Fig. 5 in this run.")
    if has_fusion:
        notes.append("Clinical fusion (notebook 08, beyond the paper): the clinical model is fitted on the training "
                     "patients; recalibration, the CT + clinical fusion and the thresholds on the validation patients; "
                     "its DeLong p-values are exploratory (outside the Holm family), and 'Youden on test' is the "
                     "optimistic policy.")
    else:
        notes.append("Notebook 08 (clinical fusion) has not written its table in this run.")
    if has_external:
        notes.append("External validation (notebook 09, beyond the paper): the models are trained at the training "
                     "sites only; recalibration and the transported threshold come from those sites' validation "
                     "patients; the external site's own Youden threshold is the optimistic bound.")
    else:
        notes.append("Notebook 09 (external validation) has not written its table in this run (it needs a "
                     "cohort of two or more sites).")
    if ignored:
        notes.append(f"Prediction files of {len(ignored)} other method(s) in this run directory were not used.")
    return ReportContents(tables=tables, figures=figures, notes=notes)


def report_summary(path: str | Path) -> str:
    """One line on a written report: ``REPORT.md: <n> lines, <k> links``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    return f"{path.name}: {len(text.splitlines())} lines, {len(report_links(path))} links"


def report_outline(path: str | Path) -> str:
    """The headings of a written report (its lines starting with ``#``), as Markdown."""
    text = Path(path).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if line.startswith("#"))
