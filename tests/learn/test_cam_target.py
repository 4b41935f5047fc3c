"""Which class a CAM explains: the class predicted for each slice (default), the true class, or a fixed one."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from pdstudy.core.methods import Method  # noqa: E402
from pdstudy.data.cache import PreparedCohort  # noqa: E402
from pdstudy.learn.cam import compute_cam  # noqa: E402
from pdstudy.report.cam import cam_notes, plot_cam_examples  # noqa: E402


class Brightness(nn.Module):
    """Logits set by the slice's brightness: ``poor`` (class 1) = mean normalised intensity, ``good`` = its negative.

    ``layer4[-1]`` (the resnet family's Grad-CAM layer) is a 4x4-stride convolution whose two channels are the
    local mean intensity (+ for class 1, - for class 0), so Grad-CAM of class 1 peaks where the slice is bright
    and Grad-CAM of class 0 where it is dark.
    """

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, kernel_size=4, stride=4, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0 / 48)
            conv.weight[0].mul_(-1.0)
        self.layer4 = nn.Sequential(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(x).mean(dim=(2, 3))


def _slices() -> np.ndarray:
    """Slice 0: bright with a dark square; slice 1: dark with a bright square (rows/cols 8..23 of 64)."""
    x = np.empty((2, 64, 64), np.uint8)
    x[0], x[1] = 230, 10
    x[0, 8:24, 8:24], x[1, 8:24, 8:24] = 10, 230
    return x


def _patch_vs_background(cam: np.ndarray) -> tuple[float, float]:
    return float(cam[10:22, 10:22].mean()), float(cam[40:60, 40:60].mean())


def test_predicted_explains_each_slices_argmax():
    model = Brightness()
    cams, info = compute_cam(model, "test_resnet", _slices(), crop_size=64)  # default: predicted
    assert info["target"] == "predicted" and info["target_class"] is None
    assert info["targets"].tolist() == [1, 0]  # bright slice -> poor, dark slice -> good
    assert info["probs"][0] > 0.5 > info["probs"][1]  # probability of poor, whatever is explained
    patch, background = _patch_vs_background(cams[1])
    assert background > 0.9 and patch < 0.1, "slice 1 is explained as 'good': its map is high where it is dark"
    patch, background = _patch_vs_background(cams[0])
    assert background > 0.9 and patch < 0.1, "slice 0 is explained as 'poor': its map is high where it is bright"
    fixed = {c: compute_cam(model, "test_resnet", _slices(), crop_size=64, target=c)[0] for c in (0, 1)}
    np.testing.assert_array_equal(cams[0], fixed[1][0])
    np.testing.assert_array_equal(cams[1], fixed[0][1])
    assert not np.allclose(fixed[1][1], cams[1]), "class poor on the dark slice would point at the bright square"


def test_true_explains_the_given_labels():
    model = Brightness()
    cams, info = compute_cam(model, "test_resnet", _slices(), crop_size=64, target="true", labels=[0, 1])
    assert info["target"] == "true" and info["targets"].tolist() == [0, 1]  # the opposite of the predictions
    fixed = {c: compute_cam(model, "test_resnet", _slices(), crop_size=64, target=c)[0] for c in (0, 1)}
    np.testing.assert_array_equal(cams[0], fixed[0][0])
    np.testing.assert_array_equal(cams[1], fixed[1][1])
    _, info = compute_cam(model, "test_resnet", _slices(), crop_size=64, target=1, batch_size=1)
    assert info["target"] == "fixed" and info["target_class"] == 1 and info["targets"].tolist() == [1, 1]


def test_target_arguments_are_checked():
    model, images = Brightness(), _slices()
    with pytest.raises(ValueError, match="needs labels"):
        compute_cam(model, "test_resnet", images, crop_size=64, target="true")
    with pytest.raises(ValueError, match="only used with target='true'"):
        compute_cam(model, "test_resnet", images, crop_size=64, labels=[0, 1])
    with pytest.raises(ValueError, match="labels must be 2 class indices"):
        compute_cam(model, "test_resnet", images, crop_size=64, target="true", labels=[0])
    with pytest.raises(ValueError, match="target must be one of"):
        compute_cam(model, "test_resnet", images, crop_size=64, target="argmax")
    with pytest.raises(ValueError, match="not among the model's 2 classes"):
        compute_cam(model, "test_resnet", images, crop_size=64, target="true", labels=[0, 2])


# --------------------------------------------------------------------------- notebook 07's section


def _cohort():
    """Four test patients CR, PR, SD, PD: two slices each, a bright tumour on the second."""
    ids, recist = ["P0", "P1", "P2", "P3"], ["CR", "PR", "SD", "PD"]
    index = pd.DataFrame({"patient_id": np.repeat(ids, 2), "slice": [0, 1] * 4, "z_mm": 0.0})
    images = np.full((8, 64, 64), 10, np.uint8)
    masks = np.zeros_like(images)
    images[1::2, 8:24, 8:24], masks[1::2, 8:24, 8:24] = 230, 1
    prepared = PreparedCohort(root=None, images=images, index=index, qc=pd.DataFrame(), meta={}, masks=masks)
    pd7 = Method("pd", ("efficientnet_b7",) * 3)
    preds = pd.DataFrame([{"patient_id": p, "split": "test", "response": "good" if r in ("CR", "PR") else "poor",
                           "recist": r, "score": 0.3, "method": m.id, "stage": st, "seed": 0, "fold": -1, "repeat": 0}
                          for m in (pd7, Method("baseline", ("efficientnet_b7",)),
                                    Method("kd", ("efficientnet_b7",) * 2))
                          for st in range(len(m.chain)) for p, r in zip(ids, recist)])
    return prepared, preds, pd7


def _study(model):
    from pdstudy.study.gradcam import LOCALISED_METHODS

    prepared, preds, pd7 = _cohort()
    stage = SimpleNamespace(load_model=lambda settings: model, meta={"built_arch": "test_resnet"}, slice_probs={})
    results = [SimpleNamespace(method=m, predictions=preds[preds["method"] == m.id], stages=[stage])
               for m in LOCALISED_METHODS]
    return SimpleNamespace(cohort=SimpleNamespace(prepared=prepared), settings=None), results, preds, pd7


@pytest.mark.parametrize("cam_target", ["predicted", "true"])
def test_section_explains_the_chosen_target(cam_target):
    from pdstudy.study.gradcam import cam_examples, localise

    model = Brightness()
    study, results, preds, pd7 = _study(model)
    examples = cam_examples(study, results, preds, pd7, seed=0, model_seed=0, crop_size=64, cam_method="gradcam",
                            cam_target=cam_target)
    # the slices shown (largest tumour) are dark with a bright square: mean intensity below ImageNet's mean -> good
    expected = {"predicted": ["good"] * 4, "true": ["good", "good", "poor", "poor"]}[cam_target]
    assert examples.info["target"] == cam_target
    assert examples.explained == dict(zip(["CR", "PR", "SD", "PD"], expected))
    fig = plot_cam_examples(examples.images, examples.cam_of, patients=examples.patients, scores=examples.scores,
                            info=examples.info, model=pd7.label, seed=0, masks=examples.masks,
                            explained=examples.explained)
    phrase = {"predicted": "of each slice's predicted class", "true": "of the patient's true class"}[cam_target]
    assert fig.get_suptitle().startswith(f"Fig. 5. Grad-CAM {phrase}: ")
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert [t.splitlines()[-1] for t in titles] == [f"map of: {c} ({cam_target})" for c in expected]
    assert fig.axes[4].get_ylabel() == f"Grad-CAM, {cam_target} class"
    assert cam_notes(examples.info)[-1].startswith("Each Grad-CAM map explains")
    matplotlib.pyplot.close(fig)
    localisation = localise(study, results, preds, model_seed=0, crop_size=64, cam_method="gradcam",
                            cam_target=cam_target)
    table = localisation.table
    assert set(table["target"]) == {cam_target} and set(table["group"]) == {"all", "good", "poor"}
    assert localisation.slices.responses.tolist() == ["good", "good", "poor", "poor"]
    examined = table["n_slices"] + table["n_unscored"]
    assert (examined[table["group"] == "all"] == 4).all() and (examined[table["group"] != "all"] == 2).all()


def test_section_rejects_an_unknown_target():
    from pdstudy.study.gradcam import cam_examples, check_cam_target

    study, results, preds, pd7 = _study(Brightness())
    with pytest.raises(ValueError, match="cam_target must be one of"):
        check_cam_target("both")
    with pytest.raises(ValueError, match="cam_target must be one of"):
        cam_examples(study, results, preds, pd7, seed=0, model_seed=0, crop_size=64, cam_method="gradcam",
                     cam_target="both")
