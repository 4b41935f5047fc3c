"""Fig. 5: CAM overlays on CT slices with the tumour outline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from pdstudy.core.methods import CAM_METHOD_LABELS
from pdstudy.core.vocab import RECIST_NAMES, RECIST_TO_RESPONSE
from pdstudy.evaluate.localisation import to_grid
from pdstudy.report.style import set_style

_MASK_STYLE: Final = {"color": "white", "lw": 1.4,
                      "path_effects": [patheffects.withStroke(linewidth=2.6, foreground="black")]}


def example_title(recist: str, *, score: float | None = None, patient_id: str | None = None) -> str:
    """Panel title: RECIST category, response group, patient score (and ID), one item per line.

    E.g. ``example_title("SD", score=0.62)`` -> ``"SD (stable disease)\\npoor response, score 0.62"``.
    """
    lines = [f"{recist} ({RECIST_NAMES.get(recist, '?')})", f"{RECIST_TO_RESPONSE.get(recist, '?')} response"]
    if score is not None:
        lines[1] += f", score {score:.2f}"
    if patient_id:
        lines.append(str(patient_id))
    return "\n".join(lines)


def plot_overlays(
    images: Sequence[np.ndarray | None] | np.ndarray,
    cams: Sequence[np.ndarray | None] | np.ndarray,
    titles: Sequence[str],
    *,
    masks: Sequence[np.ndarray | None] | np.ndarray | None = None,
    alpha: float = 0.4,
    info: Mapping[str, Any] | None = None,
    notes: Sequence[str | None] | None = None,
    suptitle: str | None = None,
    cmap: str = "turbo",
) -> plt.Figure:
    """Fig. 5: one column per example; windowed slice on top, CAM overlay below, tumour contour.

    Parameters
    ----------
    images : sequence of ndarray or None
        Windowed slices ``(S, S)``, uint8 or float in [0, 1]; centre-cropped to the CAM size. None
        keeps an empty, labelled column (e.g. a RECIST category without a patient in the split).
    cams : sequence of ndarray or None
        ``(c, c)`` CAMs in [0, 1] (None where the image is None).
    titles : sequence of str
        Column titles (see :func:`example_title`).
    masks : sequence of ndarray, optional
        Tumour masks ``(S, S)``, cropped like the images; drawn as a contour on both rows.
    alpha : float
        Opacity of the CAM over the slice.
    info : dict, optional
        ``info`` of :func:`compute_cam`: names the method and layer, and a too-coarse map gets a note
        on every CAM panel.
    notes : sequence of str or None, optional
        Extra per-column note shown on the CAM panel.
    suptitle : str, optional
        Figure title; a default naming method, class and layer is used when ``info`` is given.
    cmap : str
        CAM colormap.

    Returns
    -------
    matplotlib.figure.Figure
        ``2 * n`` image axes (row-major) followed by one colorbar axis.
    """
    n = len(images)
    if not n or len(cams) != n or len(titles) != n or (masks is not None and len(masks) != n):
        raise ValueError("images, cams, titles (and masks) must be non-empty and of equal length")
    set_style()
    fig, axes = plt.subplots(2, n, figsize=(2.5 * n + 1.0, 5.9), squeeze=False, layout="constrained")
    label = CAM_METHOD_LABELS.get(info["method"], info["method"]) if info else "CAM"
    coarse = info["message"] if info and info.get("too_coarse") else None
    for j in range(n):
        top, bottom = axes[0, j], axes[1, j]
        top.set_title(titles[j], fontsize=10)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        if images[j] is None or cams[j] is None:
            for ax in (top, bottom):  # keep the axes (row labels live on column 0), hide the frame
                ax.set_facecolor("none")
                for spine in ax.spines.values():
                    spine.set_visible(False)
            top.text(0.5, 0.5, "no patient", transform=top.transAxes, ha="center", va="center", fontsize=10,
                     color="#555555")
            continue
        cam = np.asarray(cams[j], dtype=np.float32)
        side = cam.shape[-1]
        img = to_grid(np.asarray(images[j])[None], side)[0].astype(np.float32)
        img = img / (255.0 if img.max() > 1.0 else 1.0)
        mask = None if masks is None or masks[j] is None else to_grid(np.asarray(masks[j])[None], side)[0] >= 0.5
        top.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        bottom.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        bottom.imshow(cam, cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
        for ax in (top, bottom):
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors=_MASK_STYLE["color"], linewidths=_MASK_STYLE["lw"],
                           path_effects=_MASK_STYLE["path_effects"])
        panel_notes = [s for s in (coarse, notes[j] if notes else None) if s]
        if panel_notes:
            bottom.text(0.5, 0.03, "\n".join(panel_notes), transform=bottom.transAxes, ha="center", va="bottom",
                        fontsize=7.5, color="#a50f15", wrap=True,
                        bbox=dict(boxstyle="round,pad=0.25", facecolor="white", alpha=0.85, edgecolor="#a50f15"))
    axes[0, 0].set_ylabel("CT slice", fontsize=10)
    axes[1, 0].set_ylabel(f"{label}, class poor", fontsize=10)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=axes[1, :].tolist(), shrink=0.9, pad=0.02)
    bar.set_label("CAM (per-slice scaled)", fontsize=9)
    if masks is not None:
        fig.legend(handles=[Line2D([], [], **_MASK_STYLE, label="tumour mask")],
                   loc="lower center", bbox_to_anchor=(0.5, -0.04), frameon=False, fontsize=9)
    if suptitle is None and info:
        h, w = info["feature_map_size"]
        suptitle = (f"{label} for class 'poor': {info['arch']} at {info['target_layer']}, "
                    f"feature map {h}x{w} ({info.get('crop_size', '?')} px crop)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig
