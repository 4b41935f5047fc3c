"""Notebook 10, the study report: its methods, the tables and figures written per method or panel, REPORT.md.

* :func:`report_plan`: the methods of notebooks 02-05 as the report uses them (:class:`ReportPlan`: the
  main methods, Fig. 6's iteration chains, the Table 4 ablation grid, the model of Fig. 4).
* :func:`write_iteration_curves`, :func:`write_roc_panels`, :func:`write_cv_tables`: the outputs the
  report writes one per architecture, kind of method, or protocol.
* :func:`write_study_report`: record the section's provenance, then write ``REPORT.md``
  (:func:`pdstudy.report.document.write_report`, which reads that provenance).
* :func:`check_report_outputs`: what is wrong with the written tables, figures and report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd

from pdstudy.core.methods import Method, ablation_grid, display_arch
from pdstudy.core.rundir import RunDir, update_provenance
from pdstudy.evaluate import cv_summary, iteration_curve
from pdstudy.evaluate.selection import select_predictions
from pdstudy.report.document import (
    THRESHOLD_NOTE,
    ReportContents,
    check_report,
    readers_status,
    report_links,
    write_report,
)
from pdstudy.report.figures import plot_roc
from pdstudy.report.style import save_figure
from pdstudy.report.tables import write_evaluation_table
from pdstudy.study.protocol import Study, iteration_chain, methods

__all__ = [
    "OPTIONAL_REPORT_PARAMETERS",
    "REPORT_PARAMETERS",
    "ROC_PANELS",
    "ReportPlan",
    "check_report_outputs",
    "report_plan",
    "write_cv_tables",
    "write_iteration_curves",
    "write_roc_panels",
    "write_study_report",
]

_B7: Final = "efficientnet_b7"

#: Kind of method -> caption of its ROC panel (Fig. 3A-C); the KD and PD panels repeat the B7 baseline.
ROC_PANELS: Final = {
    "baseline": "Fig. 3A. ROC curves of the baselines, test set",
    "kd": "Fig. 3B. ROC curves of knowledge distillation (B7 baseline for reference), test set",
    "pd": "Fig. 3C. ROC curves of Progressive Distill (B7 baseline for reference), test set",
}

#: Notebook parameters recorded in the provenance of the report section.
REPORT_PARAMETERS: Final = ("profile", "seed", "baselines", "kd_chains", "pd_chains", "curve_architectures",
                            "curve_iterations")
#: Notebook parameters recorded too when present (the evaluation's choices: AUC interval, decision-curve
#: prevalence, top-k, the validation carve).
OPTIONAL_REPORT_PARAMETERS: Final = ("auc_ci", "dca_prevalence", "top_k", "val_fraction", "split_seed")


@dataclass(frozen=True)
class ReportPlan:
    """The methods the report evaluates.

    Attributes
    ----------
    main : list of Method
        Baselines, KD chains and PD chains (Table 2, Fig. 3).
    curves : dict
        Architecture -> its PD chain over ``curve_iterations`` iterations (Fig. 6).
    grid : dict
        ``(model, kd, mn, mi) -> Method``: the ablation grid of Table 4.
    curve_iterations : int
        Iterations of the Fig. 6 chains.
    """

    main: list[Method]
    curves: dict[str, Method]
    grid: dict[tuple[str, int, int, int], Method]
    curve_iterations: int

    @property
    def everything(self) -> list[Method]:
        """Every method to run on the fixed split, without repeats: main, curves, grid."""
        return list(dict.fromkeys(self.main + list(self.curves.values()) + list(self.grid.values())))

    @property
    def ablation_ids(self) -> dict[tuple[str, int, int, int], str]:
        """The ablation grid by method ID, as :func:`pdstudy.evaluate.table4` takes it."""
        return {k: m.id for k, m in self.grid.items()}

    @property
    def fig4_model(self) -> Method:
        """The model of Fig. 4, fixed in advance: PD B7>B7>B7 when among the PD chains, else the first PD chain."""
        pd_chains = [m for m in self.main if m.kind == "pd"]
        if not pd_chains:
            raise ValueError("no PD chain among the methods: pd_chains is empty")
        return next((m for m in pd_chains if m.id == f"pd:{_B7}>{_B7}>{_B7}"), pd_chains[0])

    def fig4_methods(self, preds: pd.DataFrame) -> list[str]:
        """IDs of Fig. 4's decision and calibration curves: B7 baseline, its KD student, the Fig. 4 model (if run)."""
        present = set(preds["method"])
        return [m.id for m in (Method("baseline", (_B7,)), Method("kd", (_B7, _B7)), self.fig4_model)
                if m.id in present]


def report_plan(*, baselines: Sequence[str], kd_chains: Sequence[str], pd_chains: Sequence[str],
                curve_architectures: Sequence[str], curve_iterations: int) -> ReportPlan:
    """The report's methods from notebook 10's parameters.

    Parameters
    ----------
    baselines : sequence of str
        Baseline architectures.
    kd_chains, pd_chains : sequence of str
        KD and PD chains (``"efficientnet_b7>efficientnet_b7"``).
    curve_architectures : sequence of str
        Architectures of Fig. 6 and of the ablation grid (Table 4).
    curve_iterations : int
        PD iterations of Fig. 6.

    Returns
    -------
    ReportPlan
        The methods.
    """
    for name, value in (("baselines", baselines), ("kd_chains", kd_chains), ("pd_chains", pd_chains),
                        ("curve_architectures", curve_architectures)):
        if isinstance(value, str):
            raise ValueError(f"{name} must be a list of names, got the string {value!r}")
    main = methods("baseline", list(baselines)) + methods("kd", list(kd_chains)) + methods("pd", list(pd_chains))
    curves = {a: iteration_chain(a, curve_iterations) for a in curve_architectures}
    return ReportPlan(main=main, curves=curves, grid=ablation_grid(list(curve_architectures)),
                      curve_iterations=int(curve_iterations))


def write_iteration_curves(preds: pd.DataFrame, plan: ReportPlan, run: RunDir, *,
                           auc_ci: str = "logit") -> dict[str, pd.DataFrame]:
    """Fig. 6's data: each curve chain's test performance per iteration, written as ``fig6_iterations_<arch>``.

    Parameters
    ----------
    preds : pandas.DataFrame
        Fixed-split prediction rows holding the curve chains.
    plan : ReportPlan
        The report's methods.
    run : pdstudy.core.rundir.RunDir
        The run directory.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals (the notebook's ``auc_ci``).

    Returns
    -------
    dict
        Column title (``"EfficientNet-B7, 4 iterations"``) -> :func:`pdstudy.evaluate.iteration_curve`, for
        :func:`pdstudy.report.iterations.plot_iteration_panels`.
    """
    curves = {}
    for a, m in plan.curves.items():
        curve = iteration_curve(preds, m.id, auc_ci=auc_ci)
        write_evaluation_table(curve, run, f"fig6_iterations_{a}",
                               title=f"Fig. 6 data: {m.label}, test set per iteration")
        curves[f"{display_arch(a)}, {plan.curve_iterations} iterations"] = curve
    return curves


def write_roc_panels(preds: pd.DataFrame, main: Sequence[Method], run: RunDir, *,
                     auc_ci: str = "logit") -> dict[str, str]:
    """Fig. 3A-C: one ROC figure per kind of method, saved as ``fig3_roc_<kind>``.

    The KD and PD panels start with the B7 baseline (when it was run) as a reference. The figures are
    left open, so a notebook shows them (``plt.show()``).

    Parameters
    ----------
    preds : pandas.DataFrame
        Fixed-split prediction rows.
    main : sequence of Method
        The report's main methods (:attr:`ReportPlan.main`).
    run : pdstudy.core.rundir.RunDir
        The run directory.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals in the legends (the notebook's ``auc_ci``).

    Returns
    -------
    dict
        Caption (:data:`ROC_PANELS`) -> figure name, for the kinds that have methods.
    """
    reference = [f"baseline:{_B7}"] if f"baseline:{_B7}" in set(preds["method"]) else []
    panels = {}
    for kind, caption in ROC_PANELS.items():
        ids = [m.id for m in main if m.kind == kind]
        if not ids:
            continue
        save_figure(plot_roc(preds, ids if kind == "baseline" else reference + ids, auc_ci=auc_ci), run,
                    f"fig3_roc_{kind}")
        panels[caption] = f"fig3_roc_{kind}"
    return panels


def write_cv_tables(study_rows: pd.DataFrame, main: Sequence[Method], run: RunDir, *,
                    auc_ci: str = "logit") -> pd.DataFrame:
    """Cross-validation of the main methods: ``cv_summary`` and ``cv_per_repeat`` tables.

    Parameters
    ----------
    study_rows : pandas.DataFrame
        Prediction rows of the study's seeds (:attr:`pdstudy.study.sections.SectionPredictions.study_rows`).
    main : sequence of Method
        The methods summarised.
    run : pdstudy.core.rundir.RunDir
        The run directory.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the per-repeat DeLong AUC intervals (the notebook's ``auc_ci``).

    Returns
    -------
    pandas.DataFrame
        :func:`pdstudy.evaluate.cv_summary` of the main methods.
    """
    cv_preds = select_predictions(study_rows, method_ids={m.id for m in main}, folds="cv")
    cv = cv_summary(cv_preds, auc_ci=auc_ci)
    write_evaluation_table(cv, run, "cv_summary", title="Cross-validation: out-of-fold test AUC")
    write_evaluation_table(cv_summary(cv_preds, per_repeat=True, auc_ci=auc_ci), run, "cv_per_repeat",
                           title="Cross-validation: each repeat")
    return cv


def write_study_report(study: Study, contents: ReportContents, *, params: Mapping[str, Any], fig4_model: Method,
                       fig4_policy: str) -> Path:
    """Record the report section's provenance (``08_report``), then write ``REPORT.md``.

    Parameters
    ----------
    study : Study
        The run's study (cohort name, synthetic or not, run directory).
    contents : ReportContents
        :func:`pdstudy.report.document.report_contents`.
    params : mapping
        Notebook 10's parameters (e.g. its ``globals()``): :data:`REPORT_PARAMETERS` and ``stand_ins``; those
        of :data:`OPTIONAL_REPORT_PARAMETERS` are recorded too when present.
    fig4_model : Method
        The model of Fig. 4.
    fig4_policy : str
        Threshold policy of Fig. 4A.

    Returns
    -------
    pathlib.Path
        ``REPORT.md``.
    """
    missing = [k for k in (*REPORT_PARAMETERS, "stand_ins") if k not in params]
    if missing:
        raise ValueError(f"params lacks notebook 10 parameter(s) {missing}")
    run = study.rundir
    update_provenance(run, "08_report", {
        "profile": params["profile"], "seed": params["seed"], "stand_ins": bool(params["stand_ins"]),
        "tables": list(contents.tables.values()), "figures": list(contents.figures.values()),
        "fig4_model": fig4_model.id, "fig4_policy": fig4_policy,
        "parameters": {**{k: params[k] for k in REPORT_PARAMETERS},
                       **{k: params[k] for k in OPTIONAL_REPORT_PARAMETERS if k in params}},
    })
    return write_report(run, cohort_name=study.cohort.name, synthetic=study.cohort.synthetic, tables=contents.tables,
                        figures=contents.figures, notes=contents.notes)


def check_report_outputs(run: RunDir, *, preds: pd.DataFrame, plan: ReportPlan, contents: ReportContents,
                         report_path: str | Path, synthetic: bool, cv: pd.DataFrame | None = None) -> list[str]:
    """What is wrong with the report's tables, figures and ``REPORT.md`` (empty: nothing).

    Checks Table 2 (a row per method with predictions, AUCs in [0, 1], lower bound below the AUC, test
    patients), Table 4 (four cells per architecture, all run), Fig. 6's data (one stage per iteration),
    every figure's PNG and PDF, the CV summary (one row per main method), and the report: no problems by
    :func:`pdstudy.report.document.check_report`, every table and figure linked, every relative link
    resolving, the threshold note, the synthetic statement exactly for a synthetic cohort, the readers
    note for simulated readers, and no machine path of the run.

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory.
    preds : pandas.DataFrame
        The fixed-split prediction rows the report used.
    plan : ReportPlan
        The report's methods.
    contents : ReportContents
        The tables and figures embedded.
    report_path : str or pathlib.Path
        The written ``REPORT.md``.
    synthetic : bool
        Whether the cohort is the built-in synthetic one.
    cv : pandas.DataFrame, optional
        The CV summary, when the protocol is ``cv``.

    Returns
    -------
    list of str
        One line per problem.
    """
    problems = _check_tables(run, preds, plan)
    problems += [f"figures/{name}.{ext} missing or under 1000 bytes" for name in contents.figures.values()
                 for ext in ("png", "pdf") if not (run.figures / f"{name}.{ext}").is_file()
                 or (run.figures / f"{name}.{ext}").stat().st_size <= 1000]
    if cv is not None and not (len(cv) == len(plan.main) and cv["auc_mean"].between(0, 1).all()):
        problems.append("cv_summary does not have one row with an AUC in [0, 1] per main method")
    report_path = Path(report_path)
    text = report_path.read_text(encoding="utf-8")
    problems += [f"REPORT.md: {p}" for p in check_report(report_path)]
    links = set(report_links(report_path))
    problems += [f"REPORT.md does not link figures/{n}.png" for n in contents.figures.values()
                 if f"figures/{n}.png" not in links]
    problems += [f"REPORT.md does not link tables/{n}.md" for n in contents.tables.values()
                 if f"tables/{n}.md" not in links]
    problems += [f"REPORT.md link {t} does not resolve" for t in sorted(links)
                 if not re.match(r"^[a-z]+:", t) and not (run.root / t.split("#")[0]).exists()]
    if THRESHOLD_NOTE not in text:
        problems.append("REPORT.md lacks the threshold note")
    if ("SYNTHETIC" in text) != bool(synthetic):
        problems.append("REPORT.md's synthetic statement does not match the cohort")
    if readers_status(run) == "simulated" and "Readers are SIMULATED" not in text:
        problems.append("REPORT.md does not say the readers are simulated")
    if str(run.root) in text:
        problems.append("REPORT.md contains the run directory's path")
    return problems


def _check_tables(run: RunDir, preds: pd.DataFrame, plan: ReportPlan) -> list[str]:
    problems = []
    t2 = pd.read_csv(run.tables / "table2_values.csv", keep_default_na=False)
    if not set(preds["method"]) <= set(t2["method_id"]):
        problems.append("a method with predictions is not a row of Table 2")
    ran = t2[t2["status"] == "run"]
    if len(ran) != preds["method"].nunique():
        problems.append(f"Table 2 has {len(ran)} rows run for {preds['method'].nunique()} methods with predictions")
    problems += [f"Table 2 column {col} outside [0, 1]"
                 for col in ("test_auc", "test_auc_lo", "test_auc_hi", "train_auc")
                 if not pd.to_numeric(ran[col], errors="coerce").dropna().between(0, 1).all()]
    if not (pd.to_numeric(ran["test_auc_lo"]) <= pd.to_numeric(ran["test_auc"]) + 1e-9).all():
        problems.append("Table 2: a lower AUC bound above its AUC")
    if not (pd.to_numeric(ran["n_test"]) > 0).all():
        problems.append("Table 2: a method without test patients")
    t4 = pd.read_csv(run.tables / "table4_values.csv")
    if not (len(t4) == len(plan.grid) and (t4["status"] == "run").all() and t4["test_auc"].between(0, 1).all()):
        problems.append(f"Table 4 does not have {len(plan.grid)} cells run with AUCs in [0, 1]")
    for a in plan.curves:
        c = pd.read_csv(run.tables / f"fig6_iterations_{a}_values.csv")
        if list(c["stage"]) != list(range(plan.curve_iterations + 1)) or not c["test_auc"].between(0, 1).all():
            problems.append(f"fig6_iterations_{a} does not have stages 0..{plan.curve_iterations} with AUCs in [0, 1]")
    return problems
