"""The Grad-CAM localisation table: which test slices are scored, and the per-method summary against chance.

:func:`tumour_slices` gathers the test slices that contain tumour (with their body masks, their patient's
response and the one slice per patient of largest tumour area); :func:`localisation_table` summarises
per-slice scores (:func:`pdstudy.evaluate.localisation.localisation_scores`) of several methods, for all
patients and separately for good and poor responders (:data:`LOCALISATION_GROUPS`), at two levels, all
tumour slices and one slice per patient, into one table, counting the constant maps it could not score.
The CAMs themselves need a model and are computed by :mod:`pdstudy.study.gradcam`. No torch, no matplotlib.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.core.vocab import RESPONSES
from pdstudy.data.cache import PreparedCohort
from pdstudy.evaluate.localisation import best_slice, estimate_body_masks, explained_target, localisation_summary

__all__ = ["LEVELS", "LOCALISATION_COLUMNS", "LOCALISATION_GROUPS", "TumourSlices", "localisation_table",
           "tumour_slices"]

#: The two levels of the table: every test slice with tumour, and one slice (largest tumour area) per patient.
LEVELS: Final = ("all tumour slices", "one slice per patient")

#: Patient groups of the table: every patient, then good and poor responders (their true response).
LOCALISATION_GROUPS: Final = ("all", *RESPONSES)

#: Columns of :func:`localisation_table`, in order.
LOCALISATION_COLUMNS: Final = ("method", "target", "group", "level", "metric", "n_slices", "n_unscored", "n_constant",
                               "value", "chance", "excess", "ci_low", "ci_high", "hits", "feature_map", "too_coarse",
                               "arch", "method_id")


@dataclass(frozen=True)
class TumourSlices:
    """Test slices that contain tumour, in cache order of the patients given.

    Attributes
    ----------
    rows : ndarray
        Cache rows (``PreparedCohort.images`` index) of the slices.
    patient_ids : ndarray
        Patient of each slice.
    images, masks, bodies : ndarray
        ``(n, S, S)`` windowed slices (uint8), tumour masks and estimated body masks.
    one_per_patient : ndarray
        Boolean, True on the slice of largest tumour area of each patient.
    responses : ndarray or None
        The response group (``good``/``poor``) of each slice's patient; None when not given.
    """

    rows: np.ndarray
    patient_ids: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    bodies: np.ndarray
    one_per_patient: np.ndarray
    responses: np.ndarray | None = None

    @property
    def n_patients(self) -> int:
        """Patients with at least one tumour slice."""
        return len(np.unique(self.patient_ids))

    def describe(self) -> str:
        """One line: how many slices from how many patients."""
        return f"{len(self.rows)} test slices with tumour from {self.n_patients} patients"


def tumour_slices(
    prepared: PreparedCohort, patient_ids: Iterable[str], responses: Mapping[str, str] | None = None
) -> TumourSlices:
    """The slices of some patients (the test patients) whose tumour mask is not empty.

    Parameters
    ----------
    prepared : PreparedCohort
        The slice cache, with tumour masks (the synthetic cohort has exact ones).
    patient_ids : iterable of str
        Patients whose slices are examined, in order.
    responses : mapping of str to str, optional
        Patient ID -> response group (``good``/``poor``) of every patient in ``patient_ids``; gives
        :attr:`TumourSlices.responses` (the groups of :func:`localisation_table`).

    Returns
    -------
    TumourSlices
        The slices, their masks, body masks (:func:`pdstudy.evaluate.localisation.estimate_body_masks`)
        and the largest-tumour slice of each patient (:func:`pdstudy.evaluate.localisation.best_slice`).

    Raises
    ------
    ValueError
        When the cache has no tumour masks, no patient is given, no slice contains tumour, or
        ``responses`` lacks a patient or holds a value other than ``good``/``poor``.
    """
    if prepared.masks is None:
        raise ValueError("the slice cache has no tumour masks; localisation cannot be scored")
    patient_ids = [str(p) for p in patient_ids]
    if not patient_ids:
        raise ValueError("patient_ids is empty; pass the test patients' IDs")
    if responses is not None:
        responses = {str(k): v for k, v in responses.items()}
        missing = [p for p in patient_ids if p not in responses]
        bad = sorted({str(responses[p]) for p in patient_ids if p in responses} - set(RESPONSES))
        if missing or bad:
            raise ValueError(f"responses must map every patient to one of {list(RESPONSES)}; "
                             f"missing {missing[:5]}, unknown values {bad}")
    test_rows = np.concatenate([prepared.patient_slices(pid) for pid in patient_ids])
    row_patient = np.concatenate([[pid] * len(prepared.patient_slices(pid)) for pid in patient_ids])
    has_tumour = np.asarray(prepared.masks[test_rows]).reshape(len(test_rows), -1).any(axis=1)
    if not has_tumour.any():
        raise ValueError(f"none of the {len(test_rows)} slices of the {len(patient_ids)} patients contains tumour")
    rows_t, pid_t = test_rows[has_tumour], row_patient[has_tumour]
    images_t = np.asarray(prepared.images[rows_t])
    masks_t = np.asarray(prepared.masks[rows_t])
    largest = {pid: best_slice(prepared, pid) for pid in np.unique(pid_t)}
    one_per_patient = np.array([largest[p] == r for p, r in zip(pid_t, rows_t)])
    return TumourSlices(rows=rows_t, patient_ids=pid_t, images=images_t, masks=masks_t,
                        bodies=estimate_body_masks(images_t), one_per_patient=one_per_patient,
                        responses=None if responses is None else np.array([responses[p] for p in pid_t]))


def localisation_table(
    scored: Sequence[tuple[Method, pd.DataFrame, Mapping[str, Any]]],
    one_per_patient: np.ndarray,
    groups: Sequence[str] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Localisation of the tumour against chance, per method, patient group and level.

    Parameters
    ----------
    scored : sequence of (Method, DataFrame, dict)
        For each method: the method, its per-slice scores
        (:func:`pdstudy.evaluate.localisation.localisation_scores`, one row per tumour slice) and the
        ``info`` of :func:`pdstudy.learn.cam.compute_cam` (what was explained, feature map size,
        too-coarse flag, arch).
    one_per_patient : ndarray
        Boolean mask over the slices (:attr:`TumourSlices.one_per_patient`).
    groups : sequence of str, optional
        The response group (``good``/``poor``) of each slice's patient (:attr:`TumourSlices.responses`).
        Without it, only the group ``all`` is reported.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LOCALISATION_COLUMNS`; for each method, group of :data:`LOCALISATION_GROUPS` (``all``
        only without ``groups``) and level of :data:`LEVELS` the rows ``energy_in_mask`` and ``pointing_game``
        of :func:`pdstudy.evaluate.localisation.localisation_summary` (with ``n_constant``, the constant
        maps that could not be scored), with the method's label and ID, ``target`` (what the maps explain:
        ``predicted``, ``true`` or a class name, :func:`pdstudy.evaluate.localisation.explained_target`),
        ``feature_map`` (``"HxW"``), ``too_coarse`` and ``arch``. A group without slices keeps its rows,
        with ``n_slices`` 0.

    Raises
    ------
    ValueError
        Without methods, or when a method's scores or ``groups`` do not have one row per slice, or
        ``groups`` holds a value other than ``good``/``poor``.
    """
    if not scored:
        raise ValueError("scored is empty; pass (method, per-slice scores, cam info) for at least one method")
    one_per_patient = np.asarray(one_per_patient, dtype=bool)
    n = len(one_per_patient)
    selections = {LOCALISATION_GROUPS[0]: np.ones(n, dtype=bool)}
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        if groups.shape != (n,):
            raise ValueError(f"groups must give one response per slice ({n}), got shape {groups.shape}")
        unknown = sorted({str(g) for g in groups} - set(RESPONSES))
        if unknown:
            raise ValueError(f"groups must be {list(RESPONSES)}, got {unknown}")
        selections |= {g: groups == g for g in LOCALISATION_GROUPS[1:]}
    parts = []
    for m, per_slice, info in scored:
        if len(per_slice) != n:
            raise ValueError(f"{m.id}: {len(per_slice)} per-slice scores for {n} slices")
        fh, fw = info["feature_map_size"]
        for group, in_group in selections.items():
            for level, sel in ((LEVELS[0], in_group), (LEVELS[1], in_group & one_per_patient)):
                summ = localisation_summary(per_slice[sel].reset_index(drop=True), info=info)
                parts.append(summ.assign(method=m.label, method_id=m.id, target=explained_target(info),
                                         group=group, level=level, arch=info["arch"], feature_map=f"{fh}x{fw}",
                                         too_coarse=info["too_coarse"]))
    return pd.concat(parts, ignore_index=True)[list(LOCALISATION_COLUMNS)]
