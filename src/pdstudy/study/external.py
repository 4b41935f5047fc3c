"""The external-validation section (notebook 09): train at some sites, test at another.

* :func:`external_study`: the notebook's study on the external protocol (None for a single-site cohort).
* :func:`external_methods`: the two models fixed in advance, a baseline and a PD chain.
* :func:`site_overview`: Table 1 per site and what preprocessing changed per site, written to ``tables/``.
* :func:`external_section`: the evaluation of :mod:`pdstudy.evaluate.external` on the run's external predictions;
  :func:`write_external`, :func:`record_external`, :func:`check_external_outputs`: the table and figure, the
  provenance record and the checks at the end of the notebook.

The numbers come from :mod:`pdstudy.evaluate.external`; see docs/statistics.md ("External validation").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import matplotlib.pyplot as plt
import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.core.rundir import RunDir, update_provenance
from pdstudy.core.vocab import EXTERNAL_SPLIT, SITE_COLUMN
from pdstudy.data import site_summary
from pdstudy.data.predictions import read_predictions
from pdstudy.evaluate import ExternalValidation, external_validation, site_table1, slices_by_site
from pdstudy.evaluate.selection import select_predictions
from pdstudy.learn.distill import parse_chain
from pdstudy.report import write_table
from pdstudy.report.external import EXTERNAL_FIGURE, EXTERNAL_TABLE, plot_external_validation, write_external_table
from pdstudy.report.outputs import missing_outputs
from pdstudy.report.style import save_figure
from pdstudy.study.protocol import Study

__all__ = [
    "EXTERNAL_SECTION",
    "SITE_PREPROCESSING_TABLE",
    "SITE_TABLE1",
    "ExternalSection",
    "SiteOverview",
    "check_external_outputs",
    "external_methods",
    "external_section",
    "external_study",
    "record_external",
    "site_overview",
    "write_external",
]

#: The section's name in ``provenance.json``.
EXTERNAL_SECTION: Final = "09_external_validation"
#: ``tables/<name>.*`` of Table 1 per site and of what preprocessing changed per site.
SITE_TABLE1: Final = "table1_sites"
SITE_PREPROCESSING_TABLE: Final = "site_preprocessing"


def _sites(study: Study) -> list[str]:
    patients = study.cohort.patients()
    if SITE_COLUMN not in patients.columns:
        return []
    return sorted({str(s) for s in patients[SITE_COLUMN] if str(s)})


def external_study(params: Mapping[str, Any]) -> Study | None:
    """The study of a notebook's parameters on the external protocol; None for a cohort of fewer than two sites.

    Parameters
    ----------
    params : mapping
        The notebook's parameters (e.g. its ``globals()``): every name of
        :data:`pdstudy.core.params.STUDY_PARAMETERS`, and ``test_sites`` (empty: leave-one-site-out).

    Returns
    -------
    Study or None
        :meth:`Study.from_parameters` with ``protocol = "external"``; None, after printing why, when the
        manifest has no ``site`` column or a single site code (nothing to hold out).
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of the notebook's parameters, got {type(params).__name__}")
    study = Study.from_parameters({**params, "protocol": "external"})
    sites = _sites(study)
    if len(sites) < 2:
        print(f"{study.cohort.name}: {'no site column' if not sites else f'one site ({sites[0]})'} in the manifest; "
              "external validation needs two or more sites, so this section is skipped.")
        return None
    held = study.held_out_sites()
    print(f"{study.describe()}\nsites: {sites}; held out per training: "
          + "; ".join(f"fold {i}: {list(h)}" for i, h in enumerate(held)))
    return study


def external_methods(baseline: str, pd_chain: str) -> list[Method]:
    """The models of the section, fixed in advance: one baseline and one PD chain.

    Parameters
    ----------
    baseline : str
        Architecture of the baseline (e.g. ``"efficientnet_b7"``).
    pd_chain : str
        PD chain, teacher first (e.g. ``"efficientnet_b7>efficientnet_b7>efficientnet_b7"``).

    Returns
    -------
    list of Method
        ``[Method("baseline", [baseline]), Method("pd", chain)]``.
    """
    chain = parse_chain(pd_chain)
    if len(chain) < 2:
        raise ValueError(f"external_pd_chain must have a teacher and at least one student, got {pd_chain!r}")
    return [Method("baseline", parse_chain(baseline)), Method("pd", chain)]


@dataclass(frozen=True)
class SiteOverview:
    """Table 1 per site and what preprocessing changed per site (both written to ``tables/``)."""

    table1: pd.DataFrame
    preprocessing: pd.DataFrame


def site_overview(study: Study) -> SiteOverview:
    """Write ``tables/table1_sites.*`` and ``tables/site_preprocessing.*`` of the study's cohort.

    Parameters
    ----------
    study : Study
        The section's study (its cohort and run directory).

    Returns
    -------
    SiteOverview
        The two tables, for the notebook to show.
    """
    cohort = study.cohort
    table1 = site_table1(cohort.patients())
    counts = cohort.patients()[SITE_COLUMN].value_counts().sort_index()
    write_table(table1, study.rundir, SITE_TABLE1, title="Table 1 per site",
                notes=["Counts and percentages per site and response group of the included patients "
                       f"({', '.join(f'{s}: n = {n}' for s, n in counts.items())}); p: exact tests between "
                       "response groups within each site, as in Table 1."])
    prep = site_summary(cohort.manifest, cohort.prepared.qc, pixel_mm=float(cohort.prepared.meta["pixel_mm"]))
    write_table(prep, study.rundir, SITE_PREPROCESSING_TABLE, title="What preprocessing changed, per site",
                notes=["Source pixel spacing and slice spacing of the kept portal-venous series (qc.csv); every "
                       "slice is resampled in-plane to the cache's pixel size, not along z, so thinner slices keep "
                       "more slices per patient, and the top-k score averages the top top_k of them."])
    return SiteOverview(table1=table1, preprocessing=prep)


@dataclass(frozen=True)
class ExternalSection:
    """What notebook 09 computed: the evaluation and the prediction rows behind it."""

    result: ExternalValidation
    rows: pd.DataFrame
    held_out: tuple[tuple[str, ...], ...]
    top_k: int

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table

    def describe(self) -> str:
        return self.result.describe()

    def slices_by_site(self) -> pd.DataFrame:
        """Per fold and site: slices kept and the mean final score per response group."""
        return slices_by_site(self.result)

    def leakage(self) -> list[str]:
        """Patients of a held-out site that a fold trained or validated on (empty: none)."""
        site = self.rows[SITE_COLUMN].astype(str)
        problems = []
        for fold, held in enumerate(self.held_out):
            r = self.rows[self.rows["fold"] == fold]
            bad = r[site.loc[r.index].isin(held) & (r["split"] != EXTERNAL_SPLIT)]
            problems += [f"fold {fold}: patient {p} of held-out site(s) {list(held)} has split {s!r}"
                         for p, s in zip(bad["patient_id"], bad["split"])]
            wrong = r[~site.loc[r.index].isin(held) & (r["split"] == EXTERNAL_SPLIT)]
            problems += [f"fold {fold}: patient {p} of a training site is in the external set"
                         for p in wrong["patient_id"]]
        return problems


def external_section(study: Study, methods: list[Method], *, auc_ci: str = "logit") -> ExternalSection:
    """Evaluate the section's methods on the run's external-protocol predictions.

    Parameters
    ----------
    study : Study
        :func:`external_study` (its run directory, seeds and held-out sites).
    methods : list of Method
        :func:`external_methods`, run before by :meth:`Study.run`.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong intervals.

    Returns
    -------
    ExternalSection
        The evaluation (:func:`pdstudy.evaluate.external_validation`) and the prediction rows it used.
    """
    ids = [m.id for m in methods]
    rows = select_predictions(read_predictions(study.predictions_dir), method_ids=ids, seeds=study.seeds,
                              folds="all")
    if rows.empty:
        raise ValueError(f"no external predictions of {ids} for seeds {list(study.seeds)} in the run; run the "
                         "methods first (Study.run)")
    sites = study.cohort.patients().set_index("patient_id")[SITE_COLUMN].astype(str)
    rows = rows.assign(**{SITE_COLUMN: rows["patient_id"].map(sites)})
    result = external_validation(rows, sites, methods=ids, auc_ci=auc_ci)
    return ExternalSection(result=result, rows=rows, held_out=tuple(study.held_out_sites()), top_k=study.top_k)


def write_external(section: ExternalSection, run: RunDir) -> plt.Figure:
    """Write ``tables/external_validation.*`` (display and ``_values``) and ``figures/external_validation.*``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure (every fold, the PD model), for the notebook to show.
    """
    write_external_table(section.result, run)
    fig = plot_external_validation(section.result)
    save_figure(fig, run, EXTERNAL_FIGURE)
    return fig


def record_external(run: RunDir, section: ExternalSection, *, params: dict | None = None) -> Path:
    """Record the section in the run's ``provenance.json`` under :data:`EXTERNAL_SECTION` ("_evaluation")."""
    t = section.table
    return update_provenance(run, f"{EXTERNAL_SECTION}_evaluation", {
        "held_out_sites": [list(h) for h in section.held_out],
        "methods": sorted(t["method"].unique().tolist()) if "method" in t else [],
        "patients": {"internal": int(t.loc[t["test_set"] == "internal", "n"].max()),
                     "external": int(t.loc[t["test_set"] == "external", "n"].max())},
        "parameters": dict(params or {}),
    })


def check_external_outputs(run: RunDir, section: ExternalSection) -> list[str]:
    """What is wrong with the section's written outputs (empty: nothing).

    Checks that the table and figure exist, that every fold has an internal and an external row per method, that
    AUCs and their intervals lie in [0, 1], and that no held-out patient was trained or validated on.
    """
    problems = missing_outputs(run, figures=[EXTERNAL_FIGURE], tables=[EXTERNAL_TABLE, f"{EXTERNAL_TABLE}_values",
                                                                       SITE_TABLE1, SITE_PREPROCESSING_TABLE])
    path = run.tables / f"{EXTERNAL_TABLE}_values.csv"
    if not path.is_file():
        return problems
    t = pd.read_csv(path)
    for (method, fold), grp in t.groupby(["method", "fold"]):
        if set(grp["test_set"]) != {"internal", "external"}:
            problems.append(f"{method} fold {fold}: test sets {sorted(grp['test_set'])}, expected internal and "
                            "external")
    for col in ("auc", "auc_lo", "auc_hi"):
        bad = t[col].dropna()
        if not bad.between(0, 1).all():
            problems.append(f"column {col} has values outside [0, 1]")
    return problems + section.leakage()
