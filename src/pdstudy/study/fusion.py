"""The clinical-fusion section (notebook 08): does CT add anything to the clinical variables?

* :func:`fusion_methods`: the CT models the section needs, the PD model fixed in advance
  (:data:`pdstudy.evaluate.FUSION_PD_MODEL`) and the baselines among which one is chosen on validation.
* :func:`clinical_fusion_section`: the clinical model, the two CT models and their fusions on the study's own
  splits (:meth:`pdstudy.study.Study.splits`), fixed split or cross-validation, and the comparison table.
* :func:`write_clinical_fusion`, :func:`record_clinical_fusion`, :func:`check_fusion_outputs`: the table and
  figure, the provenance record and the checks at the end of the notebook.

The numbers come from :mod:`pdstudy.evaluate.clinical_fusion`; see docs/statistics.md ("Clinical model and fusion").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import matplotlib.pyplot as plt
import pandas as pd

from pdstudy.core.methods import Method, method_from_id
from pdstudy.core.rundir import RunDir, update_provenance
from pdstudy.evaluate import (
    FIT_ON,
    FUSION_PD_MODEL,
    ClinicalFusion,
    choose_on_fold_validation,
    choose_on_validation,
    clinical_fusion,
    clinical_fusion_cv,
    clinical_fusion_table,
    fold_scores,
    method_scores,
)
from pdstudy.report.fusion import FUSION_TABLE, FUSION_TITLE, plot_clinical_fusion, write_fusion_table
from pdstudy.report.outputs import missing_outputs
from pdstudy.report.style import save_figure
from pdstudy.study.protocol import Study

__all__ = [
    "FUSION_SECTION",
    "FusionSection",
    "check_fusion_outputs",
    "clinical_fusion_section",
    "fusion_methods",
    "record_clinical_fusion",
    "write_clinical_fusion",
]

#: The section's name in ``provenance.json``.
FUSION_SECTION: Final = "08_clinical_fusion"


def fusion_methods(baselines: Sequence[str], pd_chain: str | None = None) -> list[Method]:
    """The CT models of the section: the PD model fixed in advance, then one baseline per architecture.

    Parameters
    ----------
    baselines : sequence of str
        Baseline architectures (the ``baselines`` study parameter), candidates of the validation choice.
    pd_chain : str, optional
        The PD chain fixed in advance (notebook 08's ``fusion_pd_chain``, e.g.
        ``"efficientnet_b7>efficientnet_b7>efficientnet_b7"``); default :data:`pdstudy.evaluate.FUSION_PD_MODEL`.

    Returns
    -------
    list of Method
        :data:`pdstudy.evaluate.FUSION_PD_MODEL` and ``baseline:<arch>`` for each architecture: run them
        (:meth:`pdstudy.study.Study.run`) before :func:`clinical_fusion_section`.
    """
    if isinstance(baselines, str) or not baselines:
        raise ValueError(f"baselines must be a non-empty list of architectures, got {baselines!r}")
    pd_model = method_from_id(f"pd:{pd_chain}") if pd_chain else method_from_id(FUSION_PD_MODEL)
    return [pd_model, *(Method("baseline", (str(a),)) for a in baselines)]


@dataclass(frozen=True)
class FusionSection:
    """What :func:`clinical_fusion_section` computed.

    Attributes
    ----------
    result : pdstudy.evaluate.ClinicalFusion
        Patient scores, fitted maps and clinical models.
    table : pandas.DataFrame
        :func:`pdstudy.evaluate.clinical_fusion_table`.
    selection : pandas.DataFrame
        The baselines' validation AUCs and the chosen one (``chosen``).
    baseline : Method
        The baseline chosen on validation.
    notes : tuple of str
        Notes for the table beyond ``table.attrs["notes"]``: which CT models and how they were chosen.
    """

    result: ClinicalFusion
    table: pd.DataFrame
    selection: pd.DataFrame
    baseline: Method
    notes: tuple[str, ...]

    def describe(self) -> str:
        """Two lines: the protocol and fitting patients; the CT models."""
        r = self.result
        fit = "validation patients" if r.fit_on == "val" else "out-of-fold scores of the other folds"
        return (f"protocol: {r.protocol}; clinical model fitted on the training patients; recalibration, fusion and "
                f"thresholds on the {fit}\nCT models: {method_from_id(r.ct_methods[0]).label} (fixed in advance), "
                f"{self.baseline.label} (best baseline on validation)")


def clinical_fusion_section(study: Study, preds: pd.DataFrame, *, baselines: Sequence[str], auc_ci: str = "logit",
                            fit_on: str = "val", pd_chain: str | None = None) -> FusionSection:
    """The clinical model, the PD model, the best baseline and their fusions on the study's splits.

    Fixed protocol: the fixed split's train / val / test patients (:meth:`Study.splits`), the CT scores of
    :func:`pdstudy.evaluate.method_scores`, the baseline of the highest validation AUC
    (:func:`pdstudy.evaluate.choose_on_validation`), :func:`pdstudy.evaluate.clinical_fusion`. Protocol ``cv``:
    every fold of every repeat, :func:`pdstudy.evaluate.fold_scores`, the baseline of the highest mean validation
    AUC over the folds (:func:`pdstudy.evaluate.choose_on_fold_validation`),
    :func:`pdstudy.evaluate.clinical_fusion_cv` with ``fit_on``. The clinical models' inner folds are seeded
    with the study's ``split_seed``.

    Parameters
    ----------
    study : Study
        The section's study (cohort, protocol, splits).
    preds : pandas.DataFrame
        The run's prediction rows of the study's seeds holding :func:`fusion_methods` (e.g.
        ``section_predictions(study, fusion_methods(baselines)).study_rows``): fixed-split rows for the fixed
        protocol, cross-validation folds for ``cv``.
    baselines : sequence of str
        Baseline architectures, candidates of the validation choice.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals.
    fit_on : {"val", "oof"}, default "val"
        Protocol ``cv`` only: where the fusion is fitted (:func:`pdstudy.evaluate.clinical_fusion_cv`; ``"oof"``
        fits on more patients but lets the fold's test labels reach the fusion through the other folds' models).
    pd_chain : str, optional
        The PD chain fixed in advance (as for :func:`fusion_methods`).

    Returns
    -------
    FusionSection
    """
    if fit_on not in FIT_ON:
        raise ValueError(f"fit_on must be one of {list(FIT_ON)}, got {fit_on!r}")
    pd_model, *candidates = fusion_methods(baselines, pd_chain)
    clinical = study.cohort.patients()
    if study.protocol == "fixed":
        selection, chosen = choose_on_validation(preds, candidates)
        ct = {mid: method_scores(preds, mid) for mid in dict.fromkeys([pd_model.id, chosen.id])}
        patients = study.splits()[0][0]
        result = clinical_fusion(clinical, patients, ct, seed=study.split_seed)
        rule = ("among the baselines, the highest AUC on the validation patients (seed-averaged score; ties: first in "
                "baselines; no validation patients of both classes: the first); test AUCs are not used")
    else:
        selection, chosen = choose_on_fold_validation(preds, candidates)
        ct = {mid: fold_scores(preds, mid) for mid in dict.fromkeys([pd_model.id, chosen.id])}
        folds = pd.concat([p.assign(fold=f, repeat=r) for p, f, r in study.splits()], ignore_index=True)
        result = clinical_fusion_cv(clinical, folds, ct, fit_on=fit_on, seed=study.split_seed)
        rule = ("among the baselines, the highest mean AUC on the folds' validation patients (seed-averaged score; "
                "ties: first in baselines); test AUCs are not used")
    aucs = ", ".join(f"{r['method']} {r['val_auc']:.2f}" if not math.isnan(r["val_auc"]) else f"{r['method']} n/a"
                     for r in selection.to_dict("records"))
    notes = (f"CT models: {pd_model.label}, fixed in advance (the paper's PD model unless fusion_pd_chain says "
             f"otherwise), and "
             f"{chosen.label}, the baseline chosen on validation ({rule}; validation AUCs: {aucs}).",)
    table = clinical_fusion_table(result, auc_ci=auc_ci)
    return FusionSection(result=result, table=table, selection=selection, baseline=chosen, notes=notes)


def write_clinical_fusion(section: FusionSection, run: RunDir, *, name: str = FUSION_TABLE, auc_ci: str = "logit",
                          prevalence: float | str | None = None) -> plt.Figure:
    """Write ``tables/<name>.*`` (display and ``<name>_values``) and ``figures/<name>.png/.pdf``.

    Parameters
    ----------
    section : FusionSection
        :func:`clinical_fusion_section`.
    run : pdstudy.core.rundir.RunDir
        Run directory.
    name : str, default "clinical_fusion"
        File stem of the table and the figure (e.g. ``"clinical_fusion_cv"`` for the cross-validation's).
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong intervals in the figure's legends.
    prevalence : float or str, optional
        The decision curves' prevalence (the ``dca_prevalence`` parameter; default the test patients').

    Returns
    -------
    matplotlib.figure.Figure
        The figure (first repeat under cross-validation), for the notebook to show.
    """
    title = FUSION_TITLE + (", cross-validation" if section.result.protocol == "cv" else "")
    write_fusion_table(section.table, run, name, title=title, extra_notes=section.notes)
    repeat = int(section.result.scores["repeat"].min())
    fig = plot_clinical_fusion(section.result, repeat=repeat, auc_ci=auc_ci, prevalence=prevalence)
    save_figure(fig, run, name)
    return fig


def record_clinical_fusion(run: RunDir, section: FusionSection, *, params: dict | None = None,
                           name: str = FUSION_SECTION) -> Path:
    """Record the section in the run's ``provenance.json`` (under ``name``, default :data:`FUSION_SECTION`).

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        Run directory.
    section : FusionSection
        What was computed.
    params : dict, optional
        Parameters of the notebook worth recording (e.g. ``auc_ci``, ``dca_prevalence``).
    name : str, default :data:`FUSION_SECTION`
        Section name (e.g. ``"08_clinical_fusion_cv"`` for the cross-validation's).

    Returns
    -------
    pathlib.Path
        ``provenance.json``.
    """
    r = section.result
    return update_provenance(run, name, {
        "protocol": r.protocol, "fit_on": r.fit_on, "ct_methods": list(r.ct_methods),
        "baseline_selection": section.selection.to_dict("records"),
        "clinical_models": r.clinical_fits.to_dict("records"),
        "fits": r.fits.to_dict("records"), "missing": r.missing.to_dict("records"),
        "excluded": r.excluded.to_dict("records"), "parameters": dict(params or {}),
    })


def check_fusion_outputs(run: RunDir, section: FusionSection, *, name: str = FUSION_TABLE) -> list[str]:
    """What is wrong with the section's written outputs (empty: nothing).

    Checks that the table and figure files exist; that the written table has, per repeat, the clinical model
    and a CT and a fusion row per CT model, each on the same test patients; that AUCs, their intervals, rates
    and p-values lie in [0, 1]; and that no model was fitted on test patients (the fitting, training and test
    counts add up to no more than the included patients).

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        Run directory.
    section : FusionSection
        What the section computed.
    name : str, default "clinical_fusion"
        File stem of the table and the figure (as for :func:`write_clinical_fusion`).

    Returns
    -------
    list of str
        One line per problem.
    """
    problems = missing_outputs(run, figures=[name], tables=[name, f"{name}_values"])
    path = run.tables / f"{name}_values.csv"
    if not path.is_file():
        return problems
    t = pd.read_csv(path, keep_default_na=True).fillna({"ct_method": ""})
    r = section.result
    expected = ["clinical", *(m for _ in r.ct_methods for m in ("ct", "fusion"))] * r.scores["repeat"].nunique()
    if list(t["model"]) != expected:
        problems.append(f"clinical_fusion rows are {list(t['model'])}, expected {expected}")
    if t.groupby("repeat")["n_test"].nunique().max() != 1:
        problems.append("the models of one repeat rest on different test patients")
    cols = ["test_auc", "test_auc_lo", "test_auc_hi", "p_vs_clinical", "p_vs_ct",
            *(f"{p}_{m}" for p in ("youden_val", "youden_test") for m in ("acc", "sen", "spe"))]
    problems += [f"clinical_fusion column {c} outside [0, 1]" for c in cols if not t[c].dropna().between(0, 1).all()]
    if not ((t["test_auc_lo"] <= t["test_auc"] + 1e-12) & (t["test_auc"] <= t["test_auc_hi"] + 1e-12)).all():
        problems.append("a test AUC lies outside its interval")
    if r.protocol == "fixed" and ((t["n_train"] + t["n_fit"] + t["n_test"]) > r.missing["n_patients"].iloc[0]).any():
        problems.append("training, fitting and test patients overlap (more than the included patients)")
    return problems
