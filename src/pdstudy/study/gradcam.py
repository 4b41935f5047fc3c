"""Notebook 07, where the model looks (Fig. 5, localisation): the CAMs of trained models, provenance, checks.

* :func:`gradcam_methods`: the PD chains to choose from plus the methods whose localisation is measured
  (:func:`localised_methods`: one architecture's baseline, KD student and PD chain; B7 by default).
* :func:`cam_examples`: one test patient per RECIST category, drawn at random (seeded), its slice of
  largest tumour area (or highest score) and the chosen model's CAM of it (Fig. 5,
  :func:`pdstudy.report.cam.plot_cam_examples`).
* :func:`localise`: the CAM of every test slice with tumour for each localised method, scored against
  the tumour mask, for all patients and for good and poor responders apart
  (:func:`pdstudy.evaluate.localisation_table.localisation_table`).

Each map explains the class the model predicts for its slice (``cam_target="predicted"``, the default) or
the patient's true response class (``"true"``); see :func:`pdstudy.learn.cam.compute_cam`.

The model to explain is chosen on validation patients by
:func:`pdstudy.evaluate.selection.choose_on_validation`, before any map is computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.core.rundir import RunDir, update_provenance
from pdstudy.core.vocab import RECIST_CODES, RECIST_TO_RESPONSE, RESPONSES, label_of
from pdstudy.evaluate import best_slice, explained_target, localisation_scores, patients_of_split, select_examples
from pdstudy.evaluate.localisation_table import (
    LEVELS,
    LOCALISATION_GROUPS,
    TumourSlices,
    localisation_table,
    tumour_slices,
)
from pdstudy.evaluate.selection import VALIDATION_CHOICE_RULE
from pdstudy.learn.cam import CAM_METHODS, CAM_TARGETS, compute_cam
from pdstudy.learn.distill import ChainResult, StageResult
from pdstudy.report.cam import target_phrase
from pdstudy.study.protocol import Study

__all__ = [
    "LOCALISED_METHODS",
    "CamExamples",
    "Localisation",
    "cam_examples",
    "check_cam_method",
    "check_cam_target",
    "check_gradcam_outputs",
    "final_stage_result",
    "gradcam_methods",
    "localise",
    "localised_methods",
    "record_gradcam",
]

def localised_methods(arch: str = "efficientnet_b7") -> tuple[Method, ...]:
    """Methods whose localisation of the tumour is measured: ``arch``'s baseline, its KD student and its PD chain.

    Parameters
    ----------
    arch : str
        Study architecture name (notebook 07's ``cam_localise``; the paper's Fig. 5 shows EfficientNet-B7).

    Returns
    -------
    tuple of Method
        Baseline, KD (``arch>arch``) and PD (``arch>arch>arch``).
    """
    if not isinstance(arch, str) or not arch.strip() or ">" in arch:
        raise ValueError(f"cam_localise must name one architecture (e.g. 'efficientnet_b7'), got {arch!r}")
    return Method("baseline", (arch,)), Method("kd", (arch, arch)), Method("pd", (arch, arch, arch))


#: The paper's localisation set: the B7 baseline, its KD student and the PD chain.
LOCALISED_METHODS: Final = localised_methods()


def check_cam_method(cam_method: str) -> None:
    """Raise ``ValueError`` unless ``cam_method`` is a key of :data:`pdstudy.learn.cam.CAM_METHODS`."""
    if cam_method not in CAM_METHODS:
        raise ValueError(f"cam_method must be one of {list(CAM_METHODS)}, got {cam_method!r}")


def check_cam_target(cam_target: str) -> None:
    """Raise ``ValueError`` unless ``cam_target`` is one of :data:`pdstudy.learn.cam.CAM_TARGETS`."""
    if cam_target not in CAM_TARGETS:
        raise ValueError(f"cam_target must be one of {list(CAM_TARGETS)}, got {cam_target!r}")


def gradcam_methods(candidates: Sequence[Method], localised: Sequence[Method] = LOCALISED_METHODS) -> list[Method]:
    """The section's methods: the candidates to explain, then the ``localised`` ones, without repeats."""
    return list(dict.fromkeys([*candidates, *localised]))


def final_stage_result(results: Sequence[ChainResult], method: Method, seed: int) -> StageResult:
    """The final stage (checkpoint and slice probabilities) of a method's chain run for one training seed.

    Parameters
    ----------
    results : sequence of ChainResult
        Chain runs, as :meth:`pdstudy.study.protocol.Study.run` returns them.
    method : Method
        The method.
    seed : int
        The training seed.

    Raises
    ------
    ValueError
        When ``results`` holds no run of the method for that seed.
    """
    for r in results:
        if r.method == method and int(r.predictions["seed"].iloc[0]) == seed:
            return r.stages[-1]
    raise ValueError(f"no chain run of {method.id} for seed {seed} among the {len(results)} results; "
                     "run the method with Study.run first")


@dataclass(frozen=True)
class CamExamples:
    """Fig. 5's examples: one test patient per RECIST category and the explained model's CAM of its slice.

    Mappings are keyed by RECIST code and hold the categories with an example only.

    Attributes
    ----------
    method : Method
        The explained model (final stage).
    seed : int
        Its training seed.
    examples : pandas.DataFrame
        The drawn patients (:func:`pdstudy.evaluate.select_examples`).
    missing : list of str
        Categories without a test patient.
    patients, scores : dict
        Patient ID and the model's test score of each example.
    images, masks : dict
        The slice shown (uint8) and its tumour mask (None when the cache has no masks).
    cams : ndarray
        ``(n, crop, crop)`` CAMs in [0, 1], in RECIST order of the examples.
    info : dict
        ``info`` of :func:`pdstudy.learn.cam.compute_cam` (what was explained, layer, feature map,
        too-coarse flag, ...).
    """

    method: Method
    seed: int
    examples: pd.DataFrame
    missing: list[str]
    patients: dict[str, str]
    scores: dict[str, float]
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray] | None
    cams: np.ndarray
    info: dict[str, Any] = field(repr=False)

    @property
    def present(self) -> list[str]:
        """RECIST categories with an example, in RECIST order."""
        return [c for c in RECIST_CODES if c in self.patients]

    @property
    def cam_of(self) -> dict[str, np.ndarray]:
        """RECIST code -> CAM."""
        return dict(zip(self.present, self.cams))

    @property
    def explained(self) -> dict[str, str]:
        """RECIST code -> the class (``good``/``poor``) its map explains (``info["targets"]``)."""
        return {c: RESPONSES[int(k)] for c, k in zip(self.present, self.info["targets"])}


def cam_examples(study: Study, results: Sequence[ChainResult], preds: pd.DataFrame, method: Method, *, seed: int,
                 model_seed: int, crop_size: int, cam_method: str, cam_target: str = "predicted") -> CamExamples:
    """Draw one test patient per RECIST category and compute the CAM of the model's final stage on its slice.

    Parameters
    ----------
    study : Study
        The fixed-split study (cohort cache, model settings).
    results : sequence of ChainResult
        Chain runs holding ``method`` (its final-stage checkpoint).
    preds : pandas.DataFrame
        Fixed-split prediction rows (test patients, the model's scores).
    method : Method
        The model to explain.
    seed : int
        Draw seed of the examples.
    model_seed : int
        Training seed of the explained model.
    crop_size : int
        Centre crop fed to the model.
    cam_method : str
        Key of :data:`pdstudy.learn.cam.CAM_METHODS`.
    cam_target : {"predicted", "true"}
        Class each map explains: the one the model predicts for the slice, or the patient's true
        response (:func:`pdstudy.learn.cam.compute_cam`).

    Returns
    -------
    CamExamples
        The examples, their slices, masks and CAMs, and the CAM info (``info["targets"]``: the class
        each map explains).
    """
    check_cam_method(cam_method)
    check_cam_target(cam_target)
    prepared = study.cohort.prepared
    stage = final_stage_result(results, method, model_seed)
    model = stage.load_model(study.settings)
    arch = stage.meta["built_arch"]
    examples = select_examples(patients_of_split(preds, "test"), seed=seed, split=None)
    own = preds[(preds["method"] == method.id) & (preds["stage"] == method.final_stage) & (preds["seed"] == model_seed)]
    score_of = own[own["split"] == "test"].set_index("patient_id")["score"]
    by_code = {r["recist"]: r["patient_id"] for _, r in examples.iterrows()}
    cache_rows = {code: best_slice(prepared, pid, stage.slice_probs) for code, pid in by_code.items()}
    present = [c for c in RECIST_CODES if c in by_code]
    labels = [label_of(RECIST_TO_RESPONSE[c]) for c in present] if cam_target == "true" else None
    cams, info = compute_cam(model, arch, np.asarray(prepared.images[[cache_rows[c] for c in present]]),
                             crop_size=crop_size, method=cam_method, target=cam_target, labels=labels)
    masks = None
    if prepared.masks is not None:
        masks = {c: np.asarray(prepared.masks[cache_rows[c]]) for c in present}
    return CamExamples(method=method, seed=model_seed, examples=examples, missing=list(examples.attrs["missing"]),
                       patients={c: by_code[c] for c in present},
                       scores={c: float(score_of[by_code[c]]) for c in present},
                       images={c: np.asarray(prepared.images[cache_rows[c]]) for c in present}, masks=masks,
                       cams=cams, info=info)


@dataclass(frozen=True)
class Localisation:
    """The localisation table and the slices it scores.

    Attributes
    ----------
    table : pandas.DataFrame
        :func:`pdstudy.evaluate.localisation_table.localisation_table`.
    slices : TumourSlices
        The test slices with tumour.
    infos : dict
        Method ID -> ``info`` of its CAMs.
    """

    table: pd.DataFrame
    slices: TumourSlices
    infos: dict[str, dict[str, Any]] = field(repr=False)

    def describe(self) -> str:
        """One line: slices and patients scored."""
        return self.slices.describe()


def localise(study: Study, results: Sequence[ChainResult], preds: pd.DataFrame,
             methods: Sequence[Method] = LOCALISED_METHODS, *, model_seed: int, crop_size: int,
             cam_method: str, cam_target: str = "predicted") -> Localisation | None:
    """Score how well each method's CAMs point at the tumour on every test slice with tumour.

    The table has rows for all test patients and for good and poor responders apart
    (:data:`pdstudy.evaluate.localisation_table.LOCALISATION_GROUPS`), and counts the constant maps it
    could not score (``n_constant``).

    Parameters
    ----------
    study : Study
        The fixed-split study (its cohort cache needs tumour masks).
    results : sequence of ChainResult
        Chain runs holding every method.
    preds : pandas.DataFrame
        Fixed-split prediction rows (they name the test patients).
    methods : sequence of Method, default LOCALISED_METHODS
        Methods scored (final stage, training seed ``model_seed``).
    model_seed : int
        Training seed of the models.
    crop_size : int
        Centre crop fed to the models.
    cam_method : str
        Key of :data:`pdstudy.learn.cam.CAM_METHODS`.
    cam_target : {"predicted", "true"}
        Class each map explains (:func:`pdstudy.learn.cam.compute_cam`).

    Returns
    -------
    Localisation or None
        None when the cohort's cache has no tumour masks. Too-coarse maps are not warned about here:
        the table's ``feature_map`` and ``too_coarse`` columns report them.
    """
    check_cam_method(cam_method)
    check_cam_target(cam_target)
    prepared = study.cohort.prepared
    if prepared.masks is None:
        return None
    test = patients_of_split(preds, "test")
    slices = tumour_slices(prepared, test["patient_id"], dict(zip(test["patient_id"], test["response"])))
    labels = np.array([label_of(r) for r in slices.responses]) if cam_target == "true" else None
    scored, infos = [], {}
    for m in methods:
        stage = final_stage_result(results, m, model_seed)
        with warnings.catch_warnings():  # too-coarse maps are reported in the table's feature_map columns
            warnings.simplefilter("ignore", RuntimeWarning)
            cams, info = compute_cam(stage.load_model(study.settings), stage.meta["built_arch"], slices.images,
                                     crop_size=crop_size, method=cam_method, target=cam_target, labels=labels)
        infos[m.id] = info
        scored.append((m, localisation_scores(cams, slices.masks, slices.bodies), info))
    table = localisation_table(scored, slices.one_per_patient, slices.responses)
    return Localisation(table=table, slices=slices, infos=infos)


def record_gradcam(run: RunDir, selection: pd.DataFrame, examples: CamExamples, *, localised: bool, cam_method: str,
                   seed: int, pd_chains: Sequence[str]) -> Path:
    """Record the section in the run's ``provenance.json`` (section ``07_gradcam_maps``).

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory.
    selection : pandas.DataFrame
        The candidates and their validation AUCs (:func:`pdstudy.evaluate.selection.choose_on_validation`).
    examples : CamExamples
        Fig. 5's examples (explained model, seed, CAM info).
    localised : bool
        Whether the localisation table was written.
    cam_method : str
        The CAM method.
    seed : int
        Draw seed of the examples.
    pd_chains : sequence of str
        The notebook's ``pd_chains`` parameter.

    Returns
    -------
    pathlib.Path
        ``provenance.json``.
    """
    info = examples.info
    return update_provenance(run, "07_gradcam_maps", {
        "rule": VALIDATION_CHOICE_RULE, "candidates": selection.to_dict("records"), "explained": examples.method.id,
        "model_seed": examples.seed, "cam_method": cam_method, "cam_target": explained_target(info),
        "explained_classes": examples.explained, "target_layer": info["target_layer"],
        "feature_map_size": list(info["feature_map_size"]), "too_coarse": info["too_coarse"], "seed": seed,
        "examples": examples.patients, "missing_categories": examples.missing, "localisation": localised,
        "parameters": {"cam_method": cam_method, "cam_target": info.get("target"), "pd_chains": pd_chains,
                       "seed": seed},
    })


def check_gradcam_outputs(run: RunDir, *, selection: pd.DataFrame, examples: CamExamples,
                          localisation: Localisation | None, methods: Sequence[Method] = LOCALISED_METHODS,
                          suptitle: str = "", test_patients: Sequence[str] | None = None) -> list[str]:
    """What is wrong with the section's outputs (empty: nothing).

    Checks Fig. 5's files; that every RECIST category has an example or is listed missing, and examples
    are test patients; the CAMs' shape and range; that the chosen model has the highest validation AUC
    and the choice never saw a test AUC; that the figure's title (``suptitle``) says which class the
    maps explain, and warns when they are too coarse; and, with a localisation table, its rows
    (methods x groups x 2 levels x 2 metrics), ranges, that every tumour slice and patient of each
    group was examined, the constant-map counts, and the warnings of its Markdown file.

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory.
    selection : pandas.DataFrame
        :func:`pdstudy.evaluate.selection.choose_on_validation`'s table.
    examples : CamExamples
        Fig. 5's examples.
    localisation : Localisation or None
        The localisation (None without tumour masks).
    methods : sequence of Method, default LOCALISED_METHODS
        The methods localised.
    suptitle : str
        Fig. 5's title (``fig.get_suptitle()``).
    test_patients : sequence of str, optional
        The test patients' IDs; examples must be among them.

    Returns
    -------
    list of str
        One line per problem.
    """
    problems = [f"figures/fig5_gradcam.{ext} missing or under 1000 bytes" for ext in ("png", "pdf")
                if not (run.figures / f"fig5_gradcam.{ext}").is_file()
                or (run.figures / f"fig5_gradcam.{ext}").stat().st_size <= 1000]
    if len(examples.examples) + len(examples.missing) != len(RECIST_CODES):
        problems.append("RECIST categories neither drawn nor listed missing")
    if test_patients is not None and not set(examples.examples["patient_id"]) <= set(test_patients):
        problems.append("an example is not a test patient")
    crop = examples.info["crop_size"]
    cams = examples.cams
    if cams.shape != (len(examples.present), crop, crop) or cams.min() < 0 or cams.max() > 1:
        problems.append(f"CAMs of shape {cams.shape} in [{cams.min()}, {cams.max()}]: expected "
                        f"({len(examples.present)}, {crop}, {crop}) in [0, 1]")
    if selection["val_auc"].notna().any():
        if selection.loc[selection["chosen"], "val_auc"].iloc[0] != selection["val_auc"].max():
            problems.append("the explained model does not have the highest validation AUC")
        if "test_auc" in selection.columns:
            problems.append("the choice of the model saw test AUCs")
    if examples.info["too_coarse"] and not ("WARNING" in suptitle and "too coarse" in suptitle):
        problems.append("Fig. 5 shows too-coarse maps without a warning in its title")
    says = ("class-agnostic" if examples.info["method"] == "eigencam"
            else target_phrase(explained_target(examples.info)))
    if says not in suptitle:
        problems.append(f"Fig. 5's title does not say which class the maps explain ({says!r})")
    if localisation is not None:
        problems += _check_localisation(run, localisation, methods)
    return problems


def _examined(slices: TumourSlices) -> dict[tuple[str, str], int]:
    """(group, level) -> how many slices the localisation table must have examined."""
    groups = {LOCALISATION_GROUPS[0]: np.ones(len(slices.rows), dtype=bool)}
    if slices.responses is not None:
        groups |= {g: slices.responses == g for g in LOCALISATION_GROUPS[1:]}
    counts = {}
    for g, sel in groups.items():
        counts[(g, LEVELS[0])] = int(sel.sum())
        counts[(g, LEVELS[1])] = int((sel & slices.one_per_patient).sum())
    return counts


def _check_localisation(run: RunDir, localisation: Localisation, methods: Sequence[Method]) -> list[str]:
    written = pd.read_csv(run.tables / "gradcam_localisation.csv")
    md_text = (run.tables / "gradcam_localisation.md").read_text()
    problems = []
    expected = _examined(localisation.slices)
    n_groups = len({g for g, _ in expected})
    if len(written) != len(methods) * n_groups * len(LEVELS) * 2:
        problems.append(f"gradcam_localisation has {len(written)} rows, expected {len(methods)} methods x "
                        f"{n_groups} groups x {len(LEVELS)} levels x 2 metrics")
    if set(written["method"]) != {m.label for m in methods}:
        problems.append(f"gradcam_localisation methods are {sorted(set(written['method']))}")
    if set(written["group"]) != {g for g, _ in expected}:
        problems.append(f"gradcam_localisation groups are {sorted(set(written['group']))}, "
                        f"expected {sorted({g for g, _ in expected})}")
    problems += [f"gradcam_localisation column {col} outside [0, 1]" for col in ("value", "chance", "ci_low", "ci_high")
                 if not written[col].dropna().between(0, 1).all()]
    examined = written["n_slices"] + written["n_unscored"]
    problems += [f"gradcam_localisation: not every slice examined in group {group!r} at level {level!r}"
                 for (group, level), n in expected.items()
                 if not (examined[(written["group"] == group) & (written["level"] == level)] == n).all()]
    if written["n_constant"].isna().any() or (written["n_constant"] > written["n_unscored"]).any():
        problems.append("gradcam_localisation n_constant missing or above n_unscored")
    if (written["n_constant"] > 0).any() and "Constant maps" not in md_text:
        problems.append("gradcam_localisation.md does not report the constant maps")
    overall = written[written["group"] == LOCALISATION_GROUPS[0]]
    if (overall["n_slices"] == 0).any() and "No slice could be scored" not in md_text:
        problems.append("gradcam_localisation.md does not say which method no slice could be scored for")
    if not written["feature_map"].str.match(r"^\d+x\d+$").all():
        problems.append("gradcam_localisation feature_map is not HxW")
    if written["too_coarse"].any() and "WARNING" not in md_text:
        problems.append("gradcam_localisation.md does not warn about too-coarse maps")
    return problems
