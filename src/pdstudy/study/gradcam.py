"""Notebook 07, where the model looks (Fig. 5, localisation): the CAMs of trained models, provenance, checks.

* :func:`gradcam_methods`: the PD chains to choose from plus the methods whose localisation is measured
  (:func:`localised_methods`: one architecture's baseline, KD student and PD chain; B7 by default).
* :func:`cam_examples`: one test patient per RECIST category, drawn at random (seeded), its slice of
  largest tumour area (or highest score) and the chosen model's CAM of it (Fig. 5,
  :func:`pdstudy.report.cam.plot_cam_examples`).
* :func:`localise`: the CAM of every test slice with tumour for each localised method, scored against
  the tumour mask, for all patients and for good and poor responders apart
  (:func:`pdstudy.evaluate.localisation_table.localisation_table`).
* :func:`other_model_cams`: for Fig. 5's patients, the maps of the other Table 2 models
  (:data:`OTHER_CAM_METHODS`: the CNN + Transformer hybrid on the same slices, the 3D ResNet on the middle
  slice of each patient's volume), one row each of :func:`pdstudy.report.cam.plot_cam_rows`;
  :func:`other_cam_methods`: those of them among the run's baselines.

Each map explains the class the model predicts for its slice (``cam_target="predicted"``, the default) or
the patient's true response class (``"true"``); see :func:`pdstudy.learn.cam.compute_cam`.

The model to explain is chosen on validation patients by
:func:`pdstudy.evaluate.selection.choose_on_validation`, before any map is computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from pdstudy.core.methods import ARCH_ALIASES, Method
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
from pdstudy.learn.cam import CAM_METHODS, CAM_TARGETS, compute_cam, compute_volume_cam
from pdstudy.learn.distill import ChainResult, StageResult
from pdstudy.learn.models import get_architecture
from pdstudy.learn.volumes import VolumeSet
from pdstudy.report.cam import CamRow, cam_row_notes, target_phrase
from pdstudy.study.protocol import Study

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "LOCALISED_METHODS",
    "OTHER_CAM_METHODS",
    "CamExamples",
    "Localisation",
    "OtherCams",
    "cam_examples",
    "check_cam_method",
    "check_cam_target",
    "check_gradcam_outputs",
    "final_stage_result",
    "gradcam_methods",
    "localise",
    "localised_methods",
    "other_cam_methods",
    "other_model_cams",
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


def gradcam_methods(candidates: Sequence[Method], localised: Sequence[Method] = LOCALISED_METHODS,
                    others: Sequence[Method] = ()) -> list[Method]:
    """The section's methods: the candidates to explain, the ``localised`` ones, then ``others``
    (:func:`other_cam_methods`), without repeats."""
    return list(dict.fromkeys([*candidates, *localised, *others]))


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


#: The other Table 2 models whose maps notebook 07 shows for Fig. 5's patients: the CNN + Transformer hybrid
#: (a slice model) and the 3D ResNet-50 (one volume per patient).
OTHER_CAM_METHODS: Final = (Method("baseline", ("efficientnet_b7_transformer",)), Method("baseline", ("resnet50_3d",)))


def _canonical(method: Method) -> Method:
    """``method`` with its architectures' canonical names (``efficientnet_b7+transformer`` -> ``..._transformer``)."""
    return Method(method.kind, tuple(ARCH_ALIASES.get(a, a) for a in method.chain))


def other_cam_methods(baselines: Sequence[str], others: Sequence[Method] = OTHER_CAM_METHODS) -> list[Method]:
    """The methods of ``others`` that the run trains: those among its ``baselines`` (notebook 02's parameter).

    Parameters
    ----------
    baselines : sequence of str
        The run's baseline architectures.
    others : sequence of Method, default OTHER_CAM_METHODS
        The methods wanted.

    Returns
    -------
    list of Method
        In ``baselines`` order, spelled as there (so notebook 02's stage cache is reused); an alias such
        as ``efficientnet_b7+transformer`` counts as its architecture.
    """
    if isinstance(baselines, str) or not all(isinstance(b, str) and b.strip() for b in baselines):
        raise ValueError(f"baselines must be a list of architecture names, got {baselines!r}")
    wanted = {_canonical(m) for m in others}
    found = [Method("baseline", (b.strip(),)) for b in baselines]
    return list(dict.fromkeys(m for m in found if _canonical(m) in wanted))


def _run_method(results: Sequence[ChainResult], method: Method) -> Method | None:
    """The method of ``results`` that is ``method`` (alias-insensitive), or None."""
    return next((r.method for r in results if _canonical(r.method) == _canonical(method)), None)


def _test_scores(preds: pd.DataFrame, method: Method, model_seed: int, patients: Mapping[str, str]) -> dict[str, float]:
    """RECIST code -> the method's final-stage test score of each example patient."""
    own = preds[(preds["method"] == method.id) & (preds["stage"] == method.final_stage) & (preds["seed"] == model_seed)
                & (preds["split"] == "test")].set_index("patient_id")["score"]
    lacking = sorted(pid for pid in patients.values() if pid not in own.index)
    if lacking:
        raise ValueError(f"no test score of {method.id} (seed {model_seed}) for patient(s) {lacking}; "
                         "pass the prediction rows of section_predictions for the same methods")
    return {code: float(own[pid]) for code, pid in patients.items()}


@dataclass(frozen=True)
class OtherCams:
    """The other models' maps of Fig. 5's patients (:func:`other_model_cams`), one :class:`CamRow` per model.

    Attributes
    ----------
    rows : list of CamRow
        One per model of the run, in the order asked (the hybrid, then the 3D model).
    methods : list of Method
        The method of each row, as the run spells it.
    omitted : list of Method
        Methods asked for that the run does not hold.
    volume_cams : ndarray or None
        The volume model's full maps ``(n, depth, crop, crop)`` in [0, 1], in RECIST order of the
        examples (None without a volume model).
    middle_slice : int or None
        The slice of each volume shown: ``depth // 2`` (counted from 0).
    stack_positions : dict
        RECIST code -> where the middle slice lies in the patient's cached stack
        (:meth:`pdstudy.learn.volumes.VolumeSet.positions`: a fractional index, 0 = first cached slice).
    stack_rows : dict
        RECIST code -> the cache row (``PreparedCohort.images``) nearest to that position.
    volume_probs, evaluated_probs : dict
        RECIST code -> the volume model's probability of ``poor`` from the CAM's forward pass, and the
        one its stage stored at evaluation (where the stage has it); they agree when the volume is the
        one the model was evaluated on.
    """

    rows: list[CamRow]
    methods: list[Method]
    omitted: list[Method]
    volume_cams: np.ndarray | None = field(default=None, repr=False)
    middle_slice: int | None = None
    stack_positions: dict[str, float] = field(default_factory=dict)
    stack_rows: dict[str, int] = field(default_factory=dict)
    volume_probs: dict[str, float] = field(default_factory=dict)
    evaluated_probs: dict[str, float] = field(default_factory=dict)


def other_model_cams(study: Study, results: Sequence[ChainResult], preds: pd.DataFrame, examples: CamExamples, *,
                     model_seed: int, crop_size: int, cam_method: str, cam_target: str = "predicted",
                     methods: Sequence[Method] = OTHER_CAM_METHODS) -> tuple[OtherCams | None, list[str]]:
    """The maps of other models (the hybrid, the 3D ResNet) for the example patients of Fig. 5.

    A slice model (the CNN + Transformer hybrid) is explained on Fig. 5's slices
    (:func:`pdstudy.learn.cam.compute_cam` at its CNN's last block). A volume model is explained on each
    example patient's volume, built as at evaluation (:class:`pdstudy.learn.volumes.VolumeSet` with the
    study's ``volume_depth``, centre-cropped to ``crop_size``), by
    :func:`pdstudy.learn.cam.compute_volume_cam`; its row shows the volume's middle slice
    (``depth // 2``) with the tumour masks resampled the same way, and says where that slice lies in the
    cached stack. Each map explains the final stage of the method's chain run for ``model_seed``.

    Parameters
    ----------
    study : Study
        The fixed-split study (cohort cache, model settings and their ``volume_depth``).
    results : sequence of ChainResult
        Chain runs; a method of ``methods`` without a run is omitted, with a note.
    preds : pandas.DataFrame
        Fixed-split prediction rows holding the methods' test scores.
    examples : CamExamples
        Fig. 5's examples (:func:`cam_examples`): the patients and slices.
    model_seed : int
        Training seed of the models.
    crop_size : int
        Centre crop fed to the models.
    cam_method : str
        Key of :data:`pdstudy.learn.cam.CAM_METHODS`.
    cam_target : {"predicted", "true"}
        Class each map explains (a volume's predicted class for the 3D model).
    methods : sequence of Method, default OTHER_CAM_METHODS
        The models, one row each.

    Returns
    -------
    other : OtherCams or None
        None when no method of ``methods`` is in ``results``.
    notes : list of str
        Markdown (:func:`pdstudy.report.cam.cam_row_notes`): warnings, omitted models, what each map is.
    """
    check_cam_method(cam_method)
    check_cam_target(cam_target)
    present, patients = examples.present, examples.patients
    labels = np.array([label_of(RECIST_TO_RESPONSE[c]) for c in present]) if cam_target == "true" else None
    found = {m: _run_method(results, m) for m in methods}
    omitted = [m for m, run in found.items() if run is None]
    rows, run_methods, extra = [], [], {}
    for method in (run for run in found.values() if run is not None):
        stage = final_stage_result(results, method, model_seed)
        model, arch = stage.load_model(study.settings), stage.meta["built_arch"]
        kind = get_architecture(arch).kind
        common = dict(model=method.label, patients=dict(patients),
                      scores=_test_scores(preds, method, model_seed, patients))
        with warnings.catch_warnings():  # too-coarse maps are flagged on the figure and in the notes
            warnings.simplefilter("ignore", RuntimeWarning)
            if kind == "volume":
                row, extra = _volume_row(study, stage, model, arch, examples, crop_size=crop_size,
                                         cam_method=cam_method, cam_target=cam_target, labels=labels, common=common)
            else:
                cams, info = compute_cam(model, arch, np.stack([examples.images[c] for c in present]),
                                         crop_size=crop_size, method=cam_method, target=cam_target, labels=labels)
                row = CamRow(kind="hybrid" if kind == "hybrid" else "slice", images=dict(examples.images),
                             cams=dict(zip(present, cams)), info=info, masks=examples.masks,
                             explained=_explained(present, info), **common)
        rows.append(row)
        run_methods.append(method)
    notes = cam_row_notes(rows, omitted={m.label: m.id for m in omitted})
    if not rows:
        return None, notes
    return OtherCams(rows=rows, methods=run_methods, omitted=omitted, **extra), notes


def _explained(present: Sequence[str], info: Mapping[str, Any]) -> dict[str, str]:
    """RECIST code -> the class (``good``/``poor``) its map explains."""
    return {c: RESPONSES[int(k)] for c, k in zip(present, info["targets"])}


def _volume_row(study: Study, stage: StageResult, model: nn.Module, arch: str, examples: CamExamples, *, crop_size: int,
                cam_method: str, cam_target: str, labels: np.ndarray | None,
                common: dict[str, Any]) -> tuple[CamRow, dict[str, Any]]:
    """A volume model's row (middle slice of each example's volume) and the :class:`OtherCams` fields it fills."""
    present = examples.present
    chosen = examples.examples[examples.examples["patient_id"].isin(examples.patients.values())]
    volumes = VolumeSet(study.cohort.prepared, chosen, study.settings.volume_depth)
    pids = [examples.patients[c] for c in present]
    stacked = np.stack([volumes.volume(p) for p in pids])
    cams, info = compute_volume_cam(model, arch, stacked, crop_size=crop_size, method=cam_method, target=cam_target,
                                    labels=labels)
    depth = volumes.depth
    middle = depth // 2
    positions = {c: float(volumes.positions(p)[middle]) for c, p in zip(present, pids)}
    stack_rows = {c: int(volumes.rows[p][int(round(positions[c]))]) for c, p in zip(present, pids)}
    mask_volumes = {c: volumes.mask_volume(p) for c, p in zip(present, pids)}
    masks = None if any(m is None for m in mask_volumes.values()) else {c: m[middle] for c, m in mask_volumes.items()}
    slice_notes = {c: f"volume slice {middle} (of 0-{depth - 1})\n= cached slice {positions[c]:.1f} (of "
                      f"0-{len(volumes.rows[p]) - 1})" for c, p in zip(present, pids)}
    row = CamRow(kind="volume", images=dict(zip(present, stacked[:, middle])),
                 cams={c: cam[middle] for c, cam in zip(present, cams)}, info=info, masks=masks,
                 explained=_explained(present, info), slice_notes=slice_notes, volume_slice=middle,
                 volume_depth=depth, **common)
    evaluated = {c: float(stage.slice_probs[volumes.key_row(p)]) for c, p in zip(present, pids)
                 if volumes.key_row(p) in stage.slice_probs}
    return row, {"volume_cams": cams, "middle_slice": middle, "stack_positions": positions, "stack_rows": stack_rows,
                 "volume_probs": dict(zip(present, map(float, info["probs"]))), "evaluated_probs": evaluated}


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
