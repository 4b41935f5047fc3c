"""Notebook 07's maps of the other Table 2 models (hybrid, 3D ResNet) for Fig. 5's patients, on tiny stand-ins."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pdstudy.core.methods import Method  # noqa: E402
from pdstudy.core.vocab import RECIST_CODES  # noqa: E402
from pdstudy.data.cache import PreparedCohort  # noqa: E402
from pdstudy.learn import AugmentConfig, TrainConfig, VolumeSet, build_model, predict_slices  # noqa: E402
from pdstudy.report.cam import CamRow, cam_row_notes, plot_cam_rows  # noqa: E402
from pdstudy.study.gradcam import (  # noqa: E402
    LOCALISED_METHODS,
    OTHER_CAM_METHODS,
    cam_examples,
    gradcam_methods,
    other_cam_methods,
    other_model_cams,
)

HYBRID, VOLUME = OTHER_CAM_METHODS
PD7 = Method("pd", ("efficientnet_b7",) * 3)
CROP, DEPTH, SLICES = 60, 4, 5
#: Unequal spacing: the volume's middle slice (2 of 0-3, at 2/3 of the z range = 20 mm) is cached slice 2 exactly.
Z_MM = (0.0, 10.0, 20.0, 25.0, 30.0)
MIDDLE_CACHED = 2


def _cohort():
    """Four test patients (CR, PR, SD, PD), five slices each, every slice different; tumour on slices 1 and 2."""
    ids = [f"P{i:03d}" for i in range(4)]
    index = pd.DataFrame({"patient_id": np.repeat(ids, SLICES), "slice": np.tile(np.arange(SLICES), 4),
                          "z_mm": np.tile(Z_MM, 4)})
    rng = np.random.default_rng(0)
    images = rng.integers(20, 60, (4 * SLICES, 64, 64)).astype(np.uint8)
    images[:, 16:48, 16:48] = 120 + 10 * np.arange(4 * SLICES, dtype=np.uint8)[:, None, None]
    masks = np.zeros_like(images)
    masks[1::SLICES, 24:36, 24:36] = 1  # Fig. 5's slice (largest tumour) is cached slice 1
    masks[2::SLICES, 30:34, 30:34] = 1
    images[masks > 0] = 250
    prepared = PreparedCohort(root=None, images=images, index=index, qc=pd.DataFrame(), meta={}, masks=masks)
    recist = dict(zip(ids, RECIST_CODES))
    rows = [{"patient_id": pid, "split": "test", "response": "good" if r in ("CR", "PR") else "poor", "recist": r,
             "score": 0.2 + 0.1 * i + 0.01 * k, "method": m.id, "stage": st, "seed": 0, "fold": -1, "repeat": 0}
            for k, m in enumerate((PD7, HYBRID, VOLUME)) for st in range(len(m.chain))
            for i, (pid, r) in enumerate(recist.items())]
    return prepared, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    hybrid, volume = build_model("test_resnet_transformer"), build_model("test_resnet3d")
    with torch.no_grad():
        hybrid.get_classifier().weight[1].uniform_(0.5, 1.0)
    prepared, preds = _cohort()
    patients = preds.drop_duplicates("patient_id")
    cfg = TrainConfig(augment=AugmentConfig(crop_size=CROP), device="cpu", amp=False)
    evaluated = predict_slices(volume, VolumeSet(prepared, patients, DEPTH), cfg)  # the evaluation path
    stages = {PD7: SimpleNamespace(load_model=lambda s: hybrid, meta={"built_arch": "test_resnet_transformer"},
                                   slice_probs={}),
              HYBRID: SimpleNamespace(load_model=lambda s: hybrid, meta={"built_arch": "test_resnet_transformer"},
                                      slice_probs={}),
              VOLUME: SimpleNamespace(load_model=lambda s: volume, meta={"built_arch": "test_resnet3d"},
                                      slice_probs=evaluated)}
    results = [SimpleNamespace(method=m, predictions=preds[preds["method"] == m.id], stages=[stage])
               for m, stage in stages.items()]
    study = SimpleNamespace(cohort=SimpleNamespace(prepared=prepared), settings=SimpleNamespace(volume_depth=DEPTH))
    examples = cam_examples(study, results, preds, PD7, seed=0, model_seed=0, crop_size=CROP, cam_method="gradcam")
    s = SimpleNamespace(study=study, results=results, preds=preds, examples=examples, prepared=prepared)
    s.other, s.notes = _other(s)
    return s


def _other(s, results=None, **kwargs):
    return other_model_cams(s.study, s.results if results is None else results, s.preds, s.examples, model_seed=0,
                            crop_size=CROP, cam_method="gradcam", **kwargs)


def test_methods_from_baselines():
    assert other_cam_methods(["efficientnet_b0", "resnet50_3d", "efficientnet_b7+transformer"]) == [
        VOLUME, Method("baseline", ("efficientnet_b7+transformer",))]
    assert other_cam_methods(["efficientnet_b7"]) == []
    with pytest.raises(ValueError, match="baselines must be a list"):
        other_cam_methods("resnet50_3d")
    assert gradcam_methods([PD7], LOCALISED_METHODS[:1], OTHER_CAM_METHODS) == [PD7, LOCALISED_METHODS[0], HYBRID,
                                                                               VOLUME]


def test_hybrid_and_volume_maps(setup):
    s = setup
    other, notes = s.other, s.notes
    present = s.examples.present
    assert present == list(RECIST_CODES) and other.methods == [HYBRID, VOLUME] and other.omitted == []
    hybrid, volume = other.rows
    assert (hybrid.kind, volume.kind) == ("hybrid", "volume")
    assert hybrid.info["target_layer"].startswith("cnn.") and volume.info["target_layer"].startswith("backbone.")
    for method, row in zip(other.methods, other.rows):
        assert set(row.cams) == set(present) and row.patients == s.examples.patients and row.model == method.label
        own = s.preds[s.preds["method"] == method.id].set_index("patient_id")["score"]
        for code in present:
            cam = row.cams[code]
            assert cam.shape == (CROP, CROP) and cam.min() >= 0 and cam.max() <= 1, (row.model, code)
            assert row.scores[code] == own[row.patients[code]]
    # the hybrid explains Fig. 5's own slices
    for code in present:
        np.testing.assert_array_equal(hybrid.images[code], s.examples.images[code])
    # the 3D row: middle slice of each volume, reported as the cached slice it is
    assert other.middle_slice == DEPTH // 2 == volume.volume_slice and volume.volume_depth == DEPTH
    assert other.volume_cams.shape == (len(present), DEPTH, CROP, CROP)
    assert 0 <= other.volume_cams.min() and other.volume_cams.max() <= 1
    for i, code in enumerate(present):
        rows = s.prepared.patient_slices(s.examples.patients[code])
        assert other.stack_positions[code] == pytest.approx(MIDDLE_CACHED)
        assert other.stack_rows[code] == rows[MIDDLE_CACHED]
        np.testing.assert_array_equal(volume.cams[code], other.volume_cams[i, DEPTH // 2])
        np.testing.assert_allclose(volume.images[code], s.prepared.images[rows[MIDDLE_CACHED]] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(volume.masks[code], s.prepared.masks[rows[MIDDLE_CACHED]] > 0)
        assert volume.slice_notes[code] == f"volume slice {DEPTH // 2} (of 0-{DEPTH - 1})\n= cached slice " \
            f"{MIDDLE_CACHED}.0 (of 0-{SLICES - 1})"
    # the volume is the one the model was evaluated on: same probabilities as the evaluation path
    assert other.evaluated_probs.keys() == other.volume_probs.keys() == set(present)
    for code in present:
        assert other.volume_probs[code] == pytest.approx(other.evaluated_probs[code], abs=1e-5)
    assert any("middle slice (slice 2 of 4" in n for n in notes)
    assert any(hybrid.info["target_layer"] in n and "CNN's last block" in n for n in notes)


def test_missing_models_and_figure(setup):
    s = setup
    other, notes = s.other, s.notes
    fig = plot_cam_rows(other.rows, seed=0)
    assert len(fig.axes) == 2 * len(RECIST_CODES) + 1, "2 rows x 4 patients, then the colorbar"
    titles = [ax.get_title() for ax in fig.axes[:8]]
    assert all(t.startswith(HYBRID.label) for t in titles[:4]) and all(t.startswith(VOLUME.label) for t in titles[4:])
    assert all(s.examples.patients[c] in titles[j] and c in titles[j] for j, c in enumerate(RECIST_CODES))
    assert "volume slice 2" in titles[4] and "Grad-CAM of the class each model predicts" in fig.get_suptitle()
    if other.rows[1].info["too_coarse"]:  # the tiny 3D stand-in ends on a 2x2 map at a 60 px crop
        assert "WARNING" in fig.get_suptitle() and VOLUME.label in fig.get_suptitle()
        assert any(n.startswith("> **WARNING") and VOLUME.label in n for n in notes)
    plt.close(fig)

    only_hybrid, notes = _other(s, results=[r for r in s.results if r.method != VOLUME])
    assert [r.kind for r in only_hybrid.rows] == ["hybrid"] and only_hybrid.omitted == [VOLUME]
    assert only_hybrid.volume_cams is None and only_hybrid.middle_slice is None
    assert any(VOLUME.id in n and "omitted" in n for n in notes)
    fig = plot_cam_rows(only_hybrid.rows, seed=0)
    assert len(fig.axes) == len(RECIST_CODES) + 1 and "WARNING" not in fig.get_suptitle()
    plt.close(fig)

    none, notes = _other(s, results=[r for r in s.results if r.method == PD7])
    assert none is None and any("None of these models" in n for n in notes)
    assert sum("omitted" in n for n in notes) == 2
    with pytest.raises(ValueError, match="rows is empty"):
        plot_cam_rows([], seed=0)


def test_cam_row_validation(setup):
    row = setup.other.rows[0]
    with pytest.raises(ValueError, match="scores names categories"):
        CamRow(**{**row.__dict__, "scores": {"CR": 0.5}})
    with pytest.raises(ValueError, match="volume row needs"):
        CamRow(**{**row.__dict__, "kind": "volume"})
    assert cam_row_notes([]) == ["None of these models is among this run's methods: no figure of their maps is "
                                 "drawn."]
