"""The localisation table per response group, and constant CAMs counted instead of dropped silently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdstudy.core.methods import Method
from pdstudy.data.cache import PreparedCohort
from pdstudy.evaluate import LOCALISATION_GROUPS, explained_target
from pdstudy.evaluate.localisation import localisation_scores, localisation_summary
from pdstudy.evaluate.localisation_table import LOCALISATION_COLUMNS, localisation_table, tumour_slices
from pdstudy.report.cam import highlighted_notes, localisation_notes

PD7 = Method("pd", ("efficientnet_b7",) * 3)
INFO = {"method": "gradcam", "arch": "test_resnet", "target": "predicted", "target_class": None,
        "feature_map_size": (4, 4), "too_coarse": False, "message": None, "method_note": None, "crop_size": 12}
#: Six 12x12 slices of four patients; the tumour is rows/cols 4..7 (16 px) on every slice.
GROUPS = np.array(["good", "good", "good", "poor", "poor", "poor"])
ONE_PER_PATIENT = np.array([True, False, True, True, False, True])  # P0: 0-1, P1: 2, P2: 3-4, P3: 5


def _cams() -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((6, 12, 12), np.uint8)
    masks[:, 4:8, 4:8] = 1
    cams = np.zeros((6, 12, 12))
    cams[0, 4:8, 4:8] = 0.5
    cams[0, 5, 5] = 1.0  # energy 1, peak in the tumour: hit
    # slice 1: all zero (constant)
    cams[2, 0, 0] = 1.0
    cams[2, 4:8, 4:8] = 0.25  # energy 4 / 5 = 0.8, peak at (0, 0): miss
    cams[3] = 1.0  # all one (constant)
    cams[4, 10, 10] = 1.0  # energy 0, miss
    cams[5, 6, 6] = 1.0
    cams[5, 0:2, 0:2] = 0.5  # energy 1 / 3, hit
    return cams, masks


def _row(table: pd.DataFrame, group: str, level: str, metric: str) -> pd.Series:
    sel = table[(table["group"] == group) & (table["level"] == level) & (table["metric"] == metric)]
    assert len(sel) == 1, (group, level, metric)
    return sel.iloc[0]


def test_constant_maps_are_flagged_per_slice():
    cams, masks = _cams()
    per_slice = localisation_scores(cams, masks)
    assert per_slice["constant"].tolist() == [False, True, False, True, False, False]
    assert per_slice["energy_in_mask"].isna().tolist() == [False, True, False, True, False, False]
    assert per_slice["energy_in_mask"].dropna().tolist() == pytest.approx([1.0, 0.8, 0.0, 1 / 3])
    summary = localisation_summary(per_slice).set_index("metric")
    assert summary.loc["pointing_game", "n_constant"] == 2 and summary.loc["pointing_game", "n_unscored"] == 2
    assert "2 of 6 maps constant" in summary.loc["pointing_game", "note"]


def test_table_has_both_groups_and_counts_constant_maps():
    cams, masks = _cams()
    table = localisation_table([(PD7, localisation_scores(cams, masks), INFO)], ONE_PER_PATIENT, GROUPS)
    assert list(table.columns) == list(LOCALISATION_COLUMNS)
    assert tuple(dict.fromkeys(table["group"])) == LOCALISATION_GROUPS == ("all", "good", "poor")
    assert len(table) == 3 * 2 * 2 and set(table["target"]) == {"predicted"}
    slices, patient = "all tumour slices", "one slice per patient"
    # (group, level) -> (scored, unscored, constant, mean energy, hits)
    expected = {
        ("all", slices): (4, 2, 2, (1.0 + 0.8 + 0.0 + 1 / 3) / 4, 2),
        ("good", slices): (2, 1, 1, (1.0 + 0.8) / 2, 1),
        ("poor", slices): (2, 1, 1, (0.0 + 1 / 3) / 2, 1),
        ("all", patient): (3, 1, 1, (1.0 + 0.8 + 1 / 3) / 3, 2),
        ("good", patient): (2, 0, 0, (1.0 + 0.8) / 2, 1),
        ("poor", patient): (1, 1, 1, 1 / 3, 1),
    }
    for (group, level), (n, unscored, constant, energy, hits) in expected.items():
        e, p = _row(table, group, level, "energy_in_mask"), _row(table, group, level, "pointing_game")
        assert (e["n_slices"], e["n_unscored"], e["n_constant"]) == (n, unscored, constant), (group, level)
        assert (p["n_slices"], p["n_unscored"], p["n_constant"]) == (n, unscored, constant), (group, level)
        assert e["value"] == pytest.approx(energy) and e["chance"] == pytest.approx(16 / 144)
        assert p["hits"] == hits and p["value"] == pytest.approx(hits / n)
        assert p["chance"] == pytest.approx(36 / 144)  # the 6x6 dilated tumour in the 144 px crop


def test_table_without_groups_and_bad_groups():
    cams, masks = _cams()
    per_slice = localisation_scores(cams, masks)
    table = localisation_table([(PD7, per_slice, INFO)], ONE_PER_PATIENT)
    assert set(table["group"]) == {"all"} and len(table) == 4
    with pytest.raises(ValueError, match="one response per slice"):
        localisation_table([(PD7, per_slice, INFO)], ONE_PER_PATIENT, GROUPS[:3])
    with pytest.raises(ValueError, match="groups must be"):
        localisation_table([(PD7, per_slice, INFO)], ONE_PER_PATIENT, np.array(["good"] * 5 + ["CR"]))


def test_empty_group_keeps_its_rows():
    cams, masks = _cams()
    table = localisation_table([(PD7, localisation_scores(cams, masks), INFO)], ONE_PER_PATIENT,
                               np.array(["good"] * 6))
    poor = table[table["group"] == "poor"]
    assert len(poor) == 4 and (poor["n_slices"] == 0).all() and (poor["n_unscored"] == 0).all()
    assert (poor["n_constant"] == 0).all() and poor["value"].isna().all()


def test_notes_name_the_target_the_groups_and_the_constant_maps():
    cams, masks = _cams()
    table = localisation_table([(PD7, localisation_scores(cams, masks), INFO)], ONE_PER_PATIENT, GROUPS)
    notes = localisation_notes(table, cam_method="gradcam", model_seed=0)
    constant = [n for n in notes if n.startswith("Constant maps")]
    assert len(constant) == 1 and f"{PD7.label}, all: 2 of 6" in constant[0]
    assert f"{PD7.label}, good: 1 of 3" in constant[0] and f"{PD7.label}, poor: 1 of 3" in constant[0]
    assert f"> **{constant[0]}**" in highlighted_notes(notes)
    assert any(n.startswith("Grad-CAM of each slice's predicted class on the final model") for n in notes)
    assert any(n.startswith("group: all test patients, then good and poor responders") for n in notes)
    true_table = localisation_table([(PD7, localisation_scores(cams, masks), {**INFO, "target": "true"})],
                                    ONE_PER_PATIENT, GROUPS)
    assert any(n.startswith("Grad-CAM of the patient's true class") for n in
               localisation_notes(true_table, cam_method="gradcam", model_seed=0))


def test_explained_target():
    assert explained_target(INFO) == "predicted"
    assert explained_target({**INFO, "target": "true"}) == "true"
    assert explained_target({**INFO, "target": "fixed", "target_class": 0}) == "good"
    assert explained_target({"method": "gradcam"}) == "poor"  # info from before targets: class 1 only
    with pytest.raises(ValueError, match="info\\['target'\\]"):
        explained_target({**INFO, "target": "argmax"})


def test_tumour_slices_carry_the_patients_response():
    index = pd.DataFrame({"patient_id": np.repeat(["A", "B"], 2), "slice": [0, 1] * 2, "z_mm": 0.0})
    masks = np.zeros((4, 8, 8), np.uint8)
    masks[[1, 2, 3], 2:5, 2:5] = 1
    prepared = PreparedCohort(root=None, images=np.full((4, 8, 8), 100, np.uint8), index=index, qc=pd.DataFrame(),
                              meta={}, masks=masks)
    slices = tumour_slices(prepared, ["A", "B"], {"A": "poor", "B": "good"})
    assert slices.rows.tolist() == [1, 2, 3] and slices.responses.tolist() == ["poor", "good", "good"]
    assert tumour_slices(prepared, ["A", "B"]).responses is None
    with pytest.raises(ValueError, match="responses must map every patient"):
        tumour_slices(prepared, ["A", "B"], {"A": "poor"})
    with pytest.raises(ValueError, match="responses must map every patient"):
        tumour_slices(prepared, ["A", "B"], {"A": "poor", "B": "PR"})
