"""Tests of pdstudy.learn.cam: CAMs on the quick models, too-coarse maps, localisation arithmetic, examples, figure."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from pdstudy.data.cache import PreparedCohort  # noqa: E402
from pdstudy.evaluate.localisation import (
    best_slice,
    estimate_body_masks,
    localisation_scores,
    localisation_summary,
    select_examples,
)
from pdstudy.learn.cam import CAM_METHODS, compute_cam
from pdstudy.learn.models import build_model, gradcam_target_layer  # noqa: E402
from pdstudy.report.cam import example_title, plot_overlays
from pdstudy.stats import wilson_ci  # noqa: E402


def _model(name: str) -> torch.nn.Module:
    """Random-init quick model whose class-1 head weights are positive, so Grad-CAM of ``poor`` is not all zero."""
    torch.manual_seed(0)
    model = build_model(name)
    with torch.no_grad():
        model.get_classifier().weight[1].uniform_(0.5, 1.0)
    return model


def _images(n: int, size: int) -> np.ndarray:
    """Slices with a bright off-centre square, so activations vary in space."""
    rng = np.random.default_rng(1)
    x = rng.integers(20, 60, size=(n, size, size), dtype=np.uint8)
    x[:, size // 8: size // 2, size // 8: size // 2] = 230
    return x


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    return _model("test_resnet")


# --------------------------------------------------------------------------- compute_cam


def test_gradcam_shape_range_layer_and_mode(resnet, monkeypatch):
    hooked = []
    layer = gradcam_target_layer(resnet, "test_resnet")
    original = CAM_METHODS["gradcam"].__init__

    def spy(self, model, target_layers, *args, **kwargs):
        hooked.extend(target_layers)
        original(self, model, target_layers, *args, **kwargs)

    monkeypatch.setattr(CAM_METHODS["gradcam"], "__init__", spy)
    resnet.train()
    cams, info = compute_cam(resnet, "test_resnet", _images(2, 128), crop_size=112)
    assert hooked == [layer]
    assert info["target_layer"] == "layer4.0"
    assert cams.shape == (2, 112, 112) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0 and cams.max() > 0.5
    assert info["feature_map_size"] == (7, 7) and not info["too_coarse"] and info["message"] is None  # output_stride 16
    assert info["probs"].shape == (2,) and np.all((info["probs"] > 0) & (info["probs"] < 1))
    assert resnet.training, "training mode must be restored"
    assert all(p.requires_grad and p.grad is None for p in resnet.parameters())
    resnet.eval()
    compute_cam(resnet, "test_resnet", _images(1, 128), crop_size=112)
    assert not resnet.training


def test_probs_match_evaluation_pipeline(resnet):
    from pdstudy.learn.dataset import centre_crop, to_model_input
    from pdstudy.learn.train import input_norm

    images = _images(2, 128)
    _, info = compute_cam(resnet, "test_resnet", images, crop_size=112)
    x = centre_crop(torch.from_numpy(images).unsqueeze(1).float() / 255.0, 112)
    with torch.no_grad():
        expected = torch.softmax(resnet.eval()(to_model_input(x, *input_norm(resnet))), 1)[:, 1].numpy()
    np.testing.assert_allclose(info["probs"], expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["gradcam++", "eigencam"])
def test_other_methods_run(resnet, method):
    cams, info = compute_cam(resnet, "test_resnet", _images(2, 128), crop_size=112, method=method, batch_size=1)
    assert cams.shape == (2, 112, 112) and 0.0 <= cams.min() and cams.max() <= 1.0
    assert (info["method_note"] is not None) == (method == "eigencam")


def test_byobnet_runs():
    model = _model("test_byobnet")
    cams, info = compute_cam(model, "test_byobnet", _images(1, 128), crop_size=112)
    assert cams.shape == (1, 112, 112) and info["feature_map_size"] == (7, 7)  # output_stride 16


@pytest.mark.parametrize(("size", "crop", "side"), [(32, 24, 2), (24, 16, 1)])
def test_too_coarse_is_flagged(resnet, size, crop, side):
    with pytest.warns(RuntimeWarning, match="too coarse"):
        cams, info = compute_cam(resnet, "test_resnet", _images(2, size), crop_size=crop)
    assert cams.shape == (2, crop, crop)
    assert info["feature_map_size"] == (side, side)
    assert info["too_coarse"] is True
    assert info["message"] == f"feature map {side}x{side} is too coarse to interpret"


def test_rejects_bad_input(resnet):
    with pytest.raises(ValueError, match="unknown CAM method"):
        compute_cam(resnet, "test_resnet", _images(1, 64), crop_size=56, method="scorecam")
    with pytest.raises(ValueError, match="uint8"):
        compute_cam(resnet, "test_resnet", _images(1, 64).astype(np.float32), crop_size=56)


# --------------------------------------------------------------------------- localisation


def test_localisation_hand_worked():
    # 12x12 slices, crop 8 keeps rows/cols 2..9; the tumour (rows/cols 4..7) is crop rows/cols 2..5: 4x4 = 16 px.
    masks = np.zeros((2, 12, 12), np.uint8)
    masks[:, 4:8, 4:8] = 1
    cams = np.zeros((2, 8, 8))
    cams[0, 2:6, 2:6] = 0.5  # all energy inside the tumour
    cams[0, 3, 3] = 1.0  # peak inside
    cams[1, 7, 7] = 1.0  # all energy outside, peak two pixels from the dilated mask
    cams[1, 0, 0] = 0.5
    df = localisation_scores(cams, masks)
    assert df["tumour_px"].tolist() == [16, 16] and df["reference_px"].tolist() == [64, 64]
    assert df["energy_in_mask"].tolist() == pytest.approx([1.0, 0.0])
    assert df["chance_energy"].tolist() == pytest.approx([16 / 64] * 2)
    assert df["chance_pointing"].tolist() == pytest.approx([36 / 64] * 2)  # dilated 4x4 -> 6x6
    assert df["pointing_hit"].tolist() == [True, False]
    assert (df.loc[0, "peak_row"], df.loc[0, "peak_col"]) == (3, 3)
    assert (df.loc[1, "peak_row"], df.loc[1, "peak_col"]) == (7, 7)


def test_uniform_cam_scores_chance_and_constant_cam_is_unscored():
    masks = np.zeros((2, 10, 10), np.uint8)
    masks[:, 0:5, 0:2] = 1  # 10 px of 100
    cams = np.ones((2, 10, 10))
    cams[0, 9, 9] = 1.0 + 1e-3  # almost uniform, peak at the far corner
    df = localisation_scores(cams, masks)
    assert df.loc[0, "energy_in_mask"] == pytest.approx(10 / 100, rel=1e-4)
    assert df.loc[0, "chance_energy"] == pytest.approx(10 / 100)
    assert df.loc[0, "energy_in_mask"] == pytest.approx(df.loc[0, "chance_energy"], rel=1e-4)
    assert df.loc[0, "pointing_hit"] == False  # noqa: E712
    assert np.isnan(df.loc[1, "energy_in_mask"]) and pd.isna(df.loc[1, "pointing_hit"])


def test_pointing_tolerance_is_one_pixel():
    masks = np.zeros((3, 10, 10), np.uint8)
    masks[:, 4:6, 4:6] = 1
    cams = np.zeros((3, 10, 10))
    cams[0, 6, 6] = 1.0  # diagonal neighbour of the mask: hit
    cams[1, 3, 5] = 1.0  # edge neighbour: hit
    cams[2, 7, 5] = 1.0  # two pixels away: miss
    df = localisation_scores(cams, masks)
    assert df["pointing_hit"].tolist() == [True, True, False]
    assert df["energy_in_mask"].tolist() == [0.0, 0.0, 0.0]


def test_plateau_peak_is_nearest_its_centroid():
    masks = np.zeros((1, 9, 9), np.uint8)
    masks[0, 4, 4] = 1
    cams = np.zeros((1, 9, 9))
    cams[0, 2:7, 2:7] = 1.0  # 5x5 plateau centred on the one-pixel tumour
    df = localisation_scores(cams, masks)
    assert (df.loc[0, "peak_row"], df.loc[0, "peak_col"], df.loc[0, "n_peak_px"]) == (4, 4, 25)
    assert df.loc[0, "pointing_hit"]


def test_body_chance_and_resize_and_empty_mask():
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[0, 0:4, 0:4] = 1  # 16 px
    bodies = np.zeros((2, 8, 8), np.uint8)
    bodies[:, 0:8, 0:4] = 1  # 32 px
    cams = np.zeros((2, 4, 4))  # half resolution: nearest resize of the masks to 4x4
    cams[:, 0, 0] = 1.0
    df = localisation_scores(cams, masks, bodies, crop_size=8)
    assert df.loc[0, "tumour_px"] == 4 and df.loc[0, "reference_px"] == 8
    assert df.loc[0, "chance_energy"] == pytest.approx(4 / 8)
    assert df.loc[0, "energy_in_mask"] == pytest.approx(1.0) and df.loc[0, "pointing_hit"]
    # slice 1 has no tumour: unscored, no chance level
    assert np.isnan(df.loc[1, "energy_in_mask"]) and np.isnan(df.loc[1, "chance_energy"])
    assert pd.isna(df.loc[1, "pointing_hit"])


def test_summary_wilson_and_note():
    per_slice = pd.DataFrame({
        "energy_in_mask": [1.0, 0.5, 0.0, np.nan],
        "chance_energy": [0.25, 0.25, 0.25, np.nan],
        "pointing_hit": pd.array([True, True, False, pd.NA], dtype="boolean"),
        "chance_pointing": [0.5, 0.5, 0.5, np.nan],
    })
    info = {"too_coarse": True, "message": "feature map 2x2 is too coarse to interpret", "arch": "test_resnet",
            "crop_size": 56}
    summary = localisation_summary(per_slice, info=info).set_index("metric")
    assert summary.loc["energy_in_mask", "value"] == pytest.approx(0.5)
    assert summary.loc["energy_in_mask", "excess"] == pytest.approx(0.25)
    assert summary.loc["pointing_game", "value"] == pytest.approx(2 / 3)
    assert summary.loc["pointing_game", "hits"] == 2
    assert summary.loc["pointing_game", "n_slices"] == 3 and summary.loc["pointing_game", "n_unscored"] == 1
    lo, hi = wilson_ci(2, 3)
    assert (summary.loc["pointing_game", "ci_low"], summary.loc["pointing_game", "ci_high"]) == pytest.approx((lo, hi))
    assert "too coarse" in summary.loc["pointing_game", "note"]


def test_estimate_body_masks_fills_gas():
    img = np.zeros((1, 20, 20), np.uint8)
    img[0, 3:17, 3:17] = 120
    img[0, 8:11, 8:11] = 0  # gas inside the body
    img[0, 0, 19] = 200  # speck outside
    body = estimate_body_masks(img)
    assert body.sum() == 14 * 14 and not body[0, 0, 19]


# --------------------------------------------------------------------------- examples and figure


def _patients() -> pd.DataFrame:
    rows = [(f"P{i:02d}", "test" if i % 3 else "train", code) for i, code in enumerate(["CR", "PR", "SD", "PD"] * 5)]
    df = pd.DataFrame(rows, columns=["patient_id", "split", "recist"])
    df["response"] = df["recist"].map({"CR": "good", "PR": "good", "SD": "poor", "PD": "poor"})
    return df


def test_select_examples_one_per_category_deterministic():
    patients = _patients()
    a = select_examples(patients, seed=3)
    assert a["recist"].tolist() == ["CR", "PR", "SD", "PD"] and set(a["split"]) == {"test"}
    assert a["patient_id"].tolist() == select_examples(patients.sample(frac=1, random_state=1), seed=3)[
        "patient_id"].tolist()
    draws = {tuple(select_examples(patients, seed=s)["patient_id"]) for s in range(8)}
    assert len(draws) > 1
    partial = select_examples(patients[patients["recist"] != "CR"], seed=3)
    assert partial["recist"].tolist() == ["PR", "SD", "PD"] and partial.attrs["missing"] == ["CR"]
    assert partial["patient_id"].tolist() == a["patient_id"].tolist()[1:]


def test_best_slice_rules():
    index = pd.DataFrame({"patient_id": ["A"] * 3 + ["B"] * 3, "slice": [0, 1, 2] * 2, "z_mm": 0.0})
    images = np.zeros((6, 8, 8), np.uint8)
    masks = np.zeros((6, 8, 8), np.uint8)
    masks[1, :2, :2] = 1
    masks[2, :3, :3] = 1  # largest tumour of A at row 2
    prepared = PreparedCohort(root=None, images=images, index=index, qc=pd.DataFrame(), meta={}, masks=masks)
    assert best_slice(prepared, "A") == 2
    assert best_slice(prepared, "B", {3: 0.1, 4: 0.9, 5: 0.2}) == 4  # B has no tumour in its masks
    assert best_slice(prepared, "B") == 4  # middle
    prepared.masks = None
    assert best_slice(prepared, "A", {0: 0.7, 1: 0.7, 2: 0.1}) == 0  # tie -> first


def test_plot_overlays_and_save(tmp_path):
    from pdstudy.core.rundir import run_dir
    from pdstudy.report.style import save_figure

    images = _images(4, 64)
    masks = np.zeros((4, 64, 64), np.uint8)
    masks[:, 20:30, 20:30] = 1
    cams = np.random.default_rng(0).random((4, 56, 56)).astype(np.float32)
    titles = [example_title(code, score=0.1 * i, patient_id=f"P{i}") for i, code in enumerate(["CR", "PR", "SD", "PD"])]
    info = {"method": "gradcam", "arch": "test_resnet", "target_layer": "layer4.0", "feature_map_size": (2, 2),
            "too_coarse": True, "message": "feature map 2x2 is too coarse to interpret"}
    fig = plot_overlays(images, cams, titles, masks=masks, info=info)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 8 and len(fig.axes) == 9  # 2 x 4 panels + colorbar
    assert [ax.get_title() for ax in image_axes[:4]] == titles
    assert all(ax.images[0].get_array().shape == (56, 56) for ax in image_axes)
    assert sum("too coarse" in t.get_text() for ax in image_axes[4:] for t in ax.texts) == 4
    assert "stable disease" in titles[2] and "poor response" in titles[2]
    png, pdf = save_figure(fig, run_dir(tmp_path / "run"), "fig5_gradcam")
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    matplotlib.pyplot.close(fig)


def test_cam_is_aligned_with_the_feature_map(resnet):
    """The CAM's peak lies in the feature-map cell where a hand-computed Grad-CAM peaks (no flip/transpose)."""
    from pdstudy.learn.dataset import centre_crop, to_model_input
    from pdstudy.learn.train import input_norm

    images = _images(2, 128)
    images[1] = np.rot90(images[1])  # bright square in another quadrant
    cams, _ = compute_cam(resnet, "test_resnet", images, crop_size=112)
    layer = gradcam_target_layer(resnet, "test_resnet")
    store = {}
    hook = layer.register_forward_hook(lambda m, i, o: store.update(a=o) or o.retain_grad())
    x = to_model_input(centre_crop(torch.from_numpy(images.copy()).unsqueeze(1).float() / 255.0, 112),
                       *input_norm(resnet))
    resnet.eval()(x)[:, 1].sum().backward()
    hook.remove()
    resnet.zero_grad(set_to_none=True)
    a, g = store["a"].detach(), store["a"].grad
    manual = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1)).numpy()  # (2, 7, 7): 16 px cells
    for cam, ref in zip(cams, manual):
        r, c = np.unravel_index(np.argmax(cam), cam.shape)
        assert ref[r // 16, c // 16] == pytest.approx(ref.max())
