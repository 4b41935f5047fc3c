"""Fig. 5: CAM overlays on CT slices with the tumour outline, and the words that go with the Grad-CAM section.

* :func:`plot_overlays`: the overlay grid for any slices; :func:`plot_cam_examples`: Fig. 5 itself, one
  test patient per RECIST category, titled with the explained model, the class explained, layer and
  resolution (in red, with a warning, when the maps are too coarse to interpret).
* :func:`cam_notes`, :func:`explained_model_note`, :data:`SELECTION_NOTES`: what notebook 07 says about
  the figure and about the choice of the model; :func:`target_phrase`: which class the maps explain
  (each slice's predicted class by default, or the patient's true class).
* :func:`localisation_title`, :func:`localisation_notes`, :func:`highlighted_notes`,
  :data:`NO_MASKS_NOTE`: the title and notes of ``tables/gradcam_localisation``.
* :class:`CamRow`, :func:`plot_cam_rows`, :func:`cam_row_notes`: the maps of other models (the CNN +
  Transformer hybrid, the 3D ResNet on its volume's middle slice) for Fig. 5's patients, one row per model
  (``figures/fig5_gradcam_other``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from pdstudy.core.methods import CAM_METHOD_LABELS
from pdstudy.core.vocab import RECIST_CODES, RECIST_NAMES, RECIST_TO_RESPONSE, RESPONSES
from pdstudy.evaluate.localisation import explained_target, to_grid
from pdstudy.evaluate.selection import VALIDATION_CHOICE_RULE
from pdstudy.report.style import set_style

__all__ = [
    "CAM_ROW_KINDS",
    "NO_MASKS_NOTE",
    "SELECTION_NOTES",
    "CamRow",
    "cam_notes",
    "cam_row_notes",
    "example_title",
    "explained_model_note",
    "highlighted_notes",
    "localisation_notes",
    "localisation_title",
    "plot_cam_examples",
    "plot_cam_rows",
    "plot_overlays",
    "target_phrase",
]

#: Notes of ``tables/gradcam_selection``: the rule that chose the explained model.
SELECTION_NOTES: Final = (f"Rule, fixed before looking at any map: {VALIDATION_CHOICE_RULE}.",)

#: Said instead of the localisation table when the cohort's cache has no tumour masks.
NO_MASKS_NOTE: Final = ("**No tumour masks in this cohort's cache: localisation is not scored.** Fig. 5 above is "
                        "the only output; it shows where the maps are high, not whether that is the tumour.")

#: Title colour of a figure whose maps are too coarse to interpret (else black).
_WARNING_COLOUR: Final = "#a50f15"

_MASK_STYLE: Final = {"color": "white", "lw": 1.4,
                      "path_effects": [patheffects.withStroke(linewidth=2.6, foreground="black")]}


def example_title(recist: str, *, score: float | None = None, patient_id: str | None = None,
                  explained: str | None = None) -> str:
    """Panel title: RECIST category, response group, patient score (and ID), the class explained, one item per line.

    E.g. ``example_title("SD", score=0.62)`` -> ``"SD (stable disease)\\npoor response, score 0.62"``;
    ``explained="good (predicted)"`` adds the line ``"map of: good (predicted)"``.
    """
    lines = [f"{recist} ({RECIST_NAMES.get(recist, '?')})", f"{RECIST_TO_RESPONSE.get(recist, '?')} response"]
    if score is not None:
        lines[1] += f", score {score:.2f}"
    if patient_id:
        lines.append(str(patient_id))
    if explained:
        lines.append(f"map of: {explained}")
    return "\n".join(lines)


#: What the maps explain (:func:`pdstudy.evaluate.localisation.explained_target`) -> words for titles and notes.
_TARGET_PHRASES: Final = {"predicted": "of each slice's predicted class", "true": "of the patient's true class"}
_TARGET_SHORT: Final = {"predicted": "predicted class", "true": "true class"}


def target_phrase(target: str, *, short: bool = False) -> str:
    """Words for what the CAMs explain, from :func:`pdstudy.evaluate.localisation.explained_target`.

    ``"predicted"`` -> ``"of each slice's predicted class"``, ``"true"`` -> ``"of the patient's true
    class"``, a class name such as ``"poor"`` -> ``"for class 'poor'"``; with ``short=True``
    ``"predicted class"``, ``"true class"``, ``"class poor"`` (axis labels).
    """
    if target in _TARGET_PHRASES:
        return (_TARGET_SHORT if short else _TARGET_PHRASES)[target]
    if target not in RESPONSES:
        raise ValueError(f"target must be 'predicted', 'true' or one of {list(RESPONSES)}, got {target!r}")
    return f"class {target}" if short else f"for class '{target}'"


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
    suptitle_color: str | None = None,
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
        ``info`` of :func:`compute_cam`: names the method, the class explained (row label) and layer,
        and a too-coarse map gets a note on every CAM panel.
    notes : sequence of str or None, optional
        Extra per-column note shown on the CAM panel.
    suptitle : str, optional
        Figure title; a default naming method, the class explained (:func:`target_phrase`) and layer is
        used when ``info`` is given.
    suptitle_color : str, optional
        Colour of the figure title (default: the style's text colour).
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
    axes[1, 0].set_ylabel(f"{label}, {_explains(info, short=True)}" if info else label, fontsize=10)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=axes[1, :].tolist(), shrink=0.9, pad=0.02)
    bar.set_label("CAM (per-slice scaled)", fontsize=9)
    if masks is not None:
        fig.legend(handles=[Line2D([], [], **_MASK_STYLE, label="tumour mask")],
                   loc="lower center", bbox_to_anchor=(0.5, -0.04), frameon=False, fontsize=9)
    if suptitle is None and info:
        h, w = info["feature_map_size"]
        suptitle = (f"{label} {_explains(info)}: {info['arch']} at {info['target_layer']}, "
                    f"feature map {h}x{w} ({info.get('crop_size', '?')} px crop)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11, **({"color": suptitle_color} if suptitle_color else {}))
    return fig


def _explains(info: Mapping[str, Any], *, short: bool = False) -> str:
    """What the maps of ``info`` explain, in words (:func:`target_phrase`); EigenCAM: class-agnostic."""
    if info.get("method") == "eigencam":
        return "class-agnostic" if short else "(class-agnostic)"
    return target_phrase(explained_target(info), short=short)


def _cam_label(info: Mapping[str, Any]) -> str:
    missing = {"method", "arch", "target_layer", "crop_size", "feature_map_size", "cell_px", "too_coarse"} - set(info)
    if missing:
        raise ValueError(f"info lacks {sorted(missing)}; pass the info of pdstudy.learn.cam.compute_cam")
    return CAM_METHOD_LABELS.get(info["method"], str(info["method"]))


def plot_cam_examples(
    images: Mapping[str, np.ndarray],
    cams: Mapping[str, np.ndarray],
    *,
    patients: Mapping[str, str],
    scores: Mapping[str, float],
    info: Mapping[str, Any],
    model: str,
    seed: int,
    masks: Mapping[str, np.ndarray] | None = None,
    categories: Sequence[str] = RECIST_CODES,
    explained: Mapping[str, str] | None = None,
) -> plt.Figure:
    """Fig. 5: the CAM of one test patient per RECIST category, titled with what was explained and how finely.

    A grid of overlays (:func:`plot_overlays`), one column per category; a category without an example
    keeps an empty column titled "no test patient". The figure title names the CAM method, the class
    explained (:func:`target_phrase`: each slice's predicted class, the patient's true class or one
    class), the explained model and seed, the feature-map size, layer and crop; each panel title names
    the class its map explains (``explained``); when the map is too coarse to interpret
    (``info["too_coarse"]``) the title says so in red, with the cell size.

    Parameters
    ----------
    images : mapping of str to ndarray
        RECIST code -> windowed slice ``(S, S)`` shown for that category.
    cams : mapping of str to ndarray
        RECIST code -> CAM ``(c, c)`` in [0, 1] of that slice.
    patients : mapping of str to str
        RECIST code -> patient ID of the example.
    scores : mapping of str to float
        RECIST code -> the model's patient score.
    info : mapping
        ``info`` of :func:`pdstudy.learn.cam.compute_cam` for these CAMs.
    model : str
        Label of the explained model (``Method.label``).
    seed : int
        Training seed of the explained model.
    masks : mapping of str to ndarray, optional
        RECIST code -> tumour mask ``(S, S)``; drawn as a contour.
    categories : sequence of str, default RECIST_CODES
        Column order.
    explained : mapping of str to str, optional
        RECIST code -> the class (``good``/``poor``) its map explains (``CamExamples.explained``); shown
        in the panel title, with "(predicted)" or "(true)". Not shown for EigenCAM (class-agnostic).

    Returns
    -------
    matplotlib.figure.Figure
        The figure of :func:`plot_overlays` (a grid: no ``ax`` argument).
    """
    label = _cam_label(info)
    if explained is not None and (not set(images) <= set(explained)
                                  or not set(explained.values()) <= set(RESPONSES)):
        raise ValueError(f"explained must map every category shown ({sorted(images)}) to one of {list(RESPONSES)}, "
                         f"got {dict(explained)}")
    if set(images) != set(cams) or not set(images) <= set(patients) or not set(images) <= set(scores):
        raise ValueError("images, cams, patients and scores must name the same RECIST categories "
                         f"(images {sorted(images)}, cams {sorted(cams)}, patients {sorted(patients)}, "
                         f"scores {sorted(scores)})")
    unknown = sorted(set(images) - set(categories))
    if unknown:
        raise ValueError(f"categories {unknown} are not among the columns {list(categories)}")
    target = explained_target(info)
    suffix = f" ({target})" if target in _TARGET_PHRASES else ""
    shown = {} if explained is None or info.get("method") == "eigencam" else {c: explained[c] + suffix for c in images}
    titles = [example_title(c, score=scores[c], patient_id=patients[c], explained=shown.get(c)) if c in images
              else f"{c} ({RECIST_NAMES[c]})\nno test patient" for c in categories]
    h, w = info["feature_map_size"]
    suptitle = (f"Fig. 5. {label} {_explains(info)}: {model} ({info['arch']}), seed {seed}; "
                f"feature map {h}x{w} at {info['target_layer']}, {info['crop_size']} px crop")
    if info["too_coarse"]:
        suptitle += (f"\nWARNING: {info['message']}: each cell covers {info['cell_px']:.0f} x {info['cell_px']:.0f} "
                     "px, so these maps cannot show what inside the image the model uses")
    return plot_overlays([images.get(c) for c in categories], [cams.get(c) for c in categories], titles,
                         masks=None if masks is None else [masks.get(c) for c in categories], info=info,
                         suptitle=suptitle, suptitle_color=_WARNING_COLOUR if info["too_coarse"] else "black")


def cam_notes(info: Mapping[str, Any], *, missing: Sequence[str] = ()) -> list[str]:
    """Markdown paragraphs that go under Fig. 5: a too-coarse warning, empty categories, the method's caveat,
    which class the maps explain.

    Parameters
    ----------
    info : mapping
        ``info`` of :func:`pdstudy.learn.cam.compute_cam`.
    missing : sequence of str
        RECIST categories without a test patient.

    Returns
    -------
    list of str
        Zero to four paragraphs, in that order; the last (what the maps explain) whenever ``info`` has a
        ``target`` and the method uses one (not EigenCAM).
    """
    label = _cam_label(info)
    notes = []
    if info["too_coarse"]:
        h, w = info["feature_map_size"]
        notes.append(f"> **WARNING: the {label} maps are too coarse to interpret.** The target layer "
                     f"`{info['target_layer']}` of {info['arch']} gives a {h}x{w} feature map for a "
                     f"{info['crop_size']} px crop (one cell = {info['cell_px']:.0f} px). The paper profile's 224 px "
                     "crops give 7x7 maps on the EfficientNets. Do not read anatomy into these maps.")
    if missing:
        notes.append(f"No test patient in RECIST category {', '.join(missing)}: shown as an empty column.")
    if info.get("method_note"):
        notes.append(f"{label}: {info['method_note']}.")
    if "target" in info and info["method"] != "eigencam":
        notes.append(_TARGET_NOTES.get(explained_target(info), _TARGET_NOTES["fixed"]).format(
            label=label, cls=explained_target(info)))
    return notes


#: What :func:`cam_notes` says about the class explained, per target (``fixed``: one class for every slice).
_TARGET_NOTES: Final = {
    "predicted": ("Each {label} map explains the class the model predicts for that slice (the larger of its two "
                  "logits: `poor` when the slice's probability of poor response is above 0.5), named in the panel "
                  "title (`cam_target = 'predicted'`). The patient score is the mean of the top-k slice "
                  "probabilities, so a panel's slice can be called the other way than its patient."),
    "true": ("Each {label} map explains the patient's true response class (`good` for CR/PR, `poor` for SD/PD), "
             "whatever the model predicts (`cam_target = 'true'`); the panel title names it."),
    "fixed": "Each {label} map explains class `{cls}` for every slice, whatever the model predicts.",
}


def explained_model_note(model: str, seed: int) -> str:
    """Markdown: the selection rule and the model it chose (``model``: its label), final stage, ``seed``."""
    return f"Rule: {VALIDATION_CHOICE_RULE}.  \n**Explained model: {model}**, final stage, seed {seed}."


def localisation_title(cam_method: str) -> str:
    """Title of ``tables/gradcam_localisation`` for a CAM method key (``"gradcam"``, ...)."""
    if cam_method not in CAM_METHOD_LABELS:
        raise ValueError(f"cam_method must be one of {list(CAM_METHOD_LABELS)}, got {cam_method!r}")
    return f"Grad-CAM localisation of the tumour against chance ({CAM_METHOD_LABELS[cam_method]})"


def localisation_notes(localisation: pd.DataFrame, *, cam_method: str, model_seed: int) -> list[str]:
    """Notes of ``tables/gradcam_localisation``: what was scored, how, and what to distrust.

    Parameters
    ----------
    localisation : pandas.DataFrame
        Output of :func:`pdstudy.evaluate.localisation_table.localisation_table`.
    cam_method : str
        CAM method key (``"gradcam"``, ``"gradcam++"``, ``"eigencam"``).
    model_seed : int
        Training seed of the models explained.

    Returns
    -------
    list of str
        Four fixed notes (the setting, naming the class the maps explain from the table's ``target``
        column, the two metrics with their chance levels, the correlation of slices), then, with a
        ``group`` column, what the groups are. Put first, when they apply: a too-coarse warning naming
        the methods, feature maps and architectures (any map 2x2 or coarser); the methods no slice
        could be scored for, and why; the constant maps, per method and group (``n_constant`` > 0),
        which are not scored and so are left out of the values.
    """
    if cam_method not in CAM_METHOD_LABELS:
        raise ValueError(f"cam_method must be one of {list(CAM_METHOD_LABELS)}, got {cam_method!r}")
    needed = {"method", "level", "n_slices", "feature_map", "too_coarse", "arch"}
    if not isinstance(localisation, pd.DataFrame) or not needed <= set(localisation.columns):
        raise ValueError(f"localisation must be a localisation table with columns {sorted(needed)}")
    label = CAM_METHOD_LABELS[cam_method]
    targets = sorted(set(localisation["target"])) if "target" in localisation.columns else ["poor"]
    explains = ("(class-agnostic)" if cam_method == "eigencam"
                else " and ".join(target_phrase(t) for t in targets))
    notes = [f"{label} {explains} on the final model (seed {model_seed}) of each method; test slices "
             "containing tumour (synthetic cohort: exact masks).",
             "energy_in_mask: share of the CAM's sum inside the tumour mask; chance = the tumour's share of the body "
             "(body estimated by thresholding the windowed slice).",
             "pointing_game: hit when the CAM's maximum lies in the tumour mask dilated by one pixel; chance = the "
             "dilated mask's share of the body; 95% Wilson interval.",
             "Slices of one patient are correlated: the 'all tumour slices' interval is too narrow; 'one slice per "
             "patient' (largest tumour area) gives a patient-level interval."]
    if "group" in localisation.columns:
        notes.append("group: all test patients, then good and poor responders separately (the patient's true "
                     "response: RECIST CR/PR vs SD/PD)"
                     + ("; a map explains the class predicted for its slice, which need not be the group's."
                        if "predicted" in targets and cam_method != "eigencam" else "."))
    overall = localisation[localisation["level"] == "all tumour slices"]
    if "group" in overall.columns:
        overall = overall[overall["group"] == "all"]
    warnings_first = []
    if localisation["too_coarse"].any():
        coarse = localisation[localisation["too_coarse"]].drop_duplicates("method")
        warnings_first.append("WARNING: feature maps too coarse to interpret (2x2 cells or fewer; one cell covers a "
                              "quarter of the image or more): " + ", ".join(f"{r.method} ({r.feature_map} at {r.arch})"
                                                                          for r in coarse.itertuples())
                              + ". Their scores say little.")
    unscored = overall[overall["n_slices"] == 0]
    if len(unscored):
        why = {r.method: "a 1x1 feature map has a single cell, so its map carries no location" if r.feature_map == "1x1"
               else "the map is constant, e.g. all zero after Grad-CAM's ReLU" for r in unscored.itertuples()}
        warnings_first.append("No slice could be scored for " + "; ".join(f"{m} ({w})" for m, w in why.items()) + ".")
    if "n_constant" in localisation.columns:
        keys = ["method", "group"] if "group" in localisation.columns else ["method"]
        rows = localisation[(localisation["level"] == "all tumour slices")
                            & (localisation["n_constant"].fillna(0) > 0)].drop_duplicates(keys)
        if len(rows):
            counts = "; ".join(", ".join(str(getattr(r, k)) for k in keys)
                               + f": {int(r.n_constant)} of {int(r.n_slices + r.n_unscored)}"
                               for r in rows.itertuples())
            warnings_first.append("Constant maps (no peak, e.g. all zero after Grad-CAM's ReLU) are not scored: they "
                                  "are left out of value, chance and interval, and counted in n_constant (and "
                                  f"n_unscored). Constant maps among all tumour slices: {counts}.")
    return warnings_first + notes


def highlighted_notes(notes: Sequence[str]) -> list[str]:
    """The warnings among table notes (those starting "WARNING", "No slice" or "Constant maps"), as bold quotes."""
    return [f"> **{n}**" for n in notes if n.startswith(("WARNING", "No slice", "Constant maps"))]


# --------------------------------------------------------------------------- other models (one row each)


#: What a :class:`CamRow` shows: a slice CNN's map, the CNN + Transformer hybrid's map (both on a cached
#: slice), or a volume model's 3D map on one slice of its volume.
CAM_ROW_KINDS: Final = ("slice", "hybrid", "volume")


@dataclass(frozen=True)
class CamRow:
    """One model's CAMs of the example patients: a row of :func:`plot_cam_rows`.

    The mappings are keyed by RECIST code and name the same categories (those with an example).

    Attributes
    ----------
    model : str
        The model's label (``Method.label``).
    kind : {"slice", "hybrid", "volume"}
        What the maps are (:data:`CAM_ROW_KINDS`; :func:`cam_row_notes` describes each).
    images : mapping of str to ndarray
        The slice shown, ``(S, S)``: uint8 from the slice cache, or float in [0, 1] (a volume's slice).
    cams : mapping of str to ndarray
        Its CAM ``(c, c)`` in [0, 1].
    patients : mapping of str to str
        Patient ID of each example.
    scores : mapping of str to float
        The model's test score of each example.
    info : mapping
        ``info`` of :func:`pdstudy.learn.cam.compute_cam` (``compute_volume_cam`` for volume rows).
    masks : mapping of str to ndarray, optional
        Tumour mask of the slice shown, drawn as a contour.
    explained : mapping of str to str, optional
        The class (``good``/``poor``) each map explains.
    slice_notes : mapping of str to str, optional
        A line under each panel title saying which slice is shown.
    volume_slice, volume_depth : int, optional
        Volume rows: the slice of the volume shown (0-based) and the volume's depth.
    """

    model: str
    kind: str
    images: Mapping[str, np.ndarray]
    cams: Mapping[str, np.ndarray]
    patients: Mapping[str, str]
    scores: Mapping[str, float]
    info: Mapping[str, Any] = field(repr=False)
    masks: Mapping[str, np.ndarray] | None = None
    explained: Mapping[str, str] | None = None
    slice_notes: Mapping[str, str] | None = None
    volume_slice: int | None = None
    volume_depth: int | None = None

    def __post_init__(self) -> None:
        _cam_label(self.info)
        if self.kind not in CAM_ROW_KINDS:
            raise ValueError(f"CamRow {self.model!r}: kind must be one of {list(CAM_ROW_KINDS)}, got {self.kind!r}")
        shown = set(self.images)
        named = {"cams": self.cams, "patients": self.patients, "scores": self.scores, "masks": self.masks,
                 "explained": self.explained, "slice_notes": self.slice_notes}
        for name, mapping in named.items():
            if mapping is not None and set(mapping) != shown:
                raise ValueError(f"CamRow {self.model!r}: {name} names categories {sorted(mapping)}, images "
                                 f"{sorted(shown)}")
        if self.explained is not None and not set(self.explained.values()) <= set(RESPONSES):
            raise ValueError(f"CamRow {self.model!r}: explained must map to {list(RESPONSES)}, got "
                             f"{dict(self.explained)}")
        if self.kind == "volume" and (self.volume_slice is None or self.volume_depth is None
                                      or not 0 <= self.volume_slice < self.volume_depth):
            raise ValueError(f"CamRow {self.model!r}: a volume row needs 0 <= volume_slice < volume_depth, got "
                             f"{self.volume_slice} and {self.volume_depth}")

    @property
    def label(self) -> str:
        """The CAM method's display name (``Grad-CAM``, ...)."""
        return _cam_label(self.info)


def plot_cam_rows(
    rows: Sequence[CamRow],
    *,
    seed: int,
    categories: Sequence[str] = RECIST_CODES,
    alpha: float = 0.4,
    cmap: str = "turbo",
    title: str = "Fig. 5, other models",
) -> plt.Figure:
    """CAMs of several models for the same example patients: one row per model, one column per category.

    Each panel is the slice a model saw with its CAM over it and the tumour outline; its title names the
    model, the RECIST category, the response group, the model's score, the patient and the class the map
    explains, then which slice is shown (``CamRow.slice_notes``). A category without an example keeps an
    empty column. A row whose maps are too coarse to interpret (``info["too_coarse"]``) is flagged as
    :func:`plot_cam_examples` flags Fig. 5: a note on each of its panels, its row label and a warning in
    the figure title, in red. A constant map (no peak, e.g. all zero after Grad-CAM's ReLU) is marked.

    Parameters
    ----------
    rows : sequence of CamRow
        The models, top to bottom (at least one).
    seed : int
        Training seed of the models.
    categories : sequence of str, default RECIST_CODES
        Column order.
    alpha : float
        Opacity of the CAM over the slice.
    cmap : str
        CAM colormap.
    title : str
        Start of the figure title.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(rows) * len(categories)`` image axes (row-major), then one colorbar axis.
    """
    if not rows:
        raise ValueError("rows is empty: no model to draw")
    unknown = sorted({c for r in rows for c in r.images} - set(categories))
    if unknown:
        raise ValueError(f"categories {unknown} are not among the columns {list(categories)}")
    set_style()
    n_rows, n_cols = len(rows), len(categories)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.8 * n_cols + 1.6, 4.4 * n_rows + 1.2), squeeze=False,
                             layout="constrained")
    for i, row in enumerate(rows):
        coarse = row.info["message"] if row.info.get("too_coarse") else None
        target = explained_target(row.info)
        suffix = f" ({target})" if target in _TARGET_PHRASES else ""
        for j, code in enumerate(categories):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if code not in row.images:
                ax.set_facecolor("none")
                for spine in ax.spines.values():
                    spine.set_visible(False)
                ax.set_title(f"{row.model}\n{code} ({RECIST_NAMES[code]})\nno test patient", fontsize=9)
                continue
            shown = (None if row.explained is None or row.info.get("method") == "eigencam"
                     else row.explained[code] + suffix)
            lines = [row.model, example_title(code, score=row.scores[code], patient_id=row.patients[code],
                                              explained=shown)]
            if row.slice_notes:
                lines.append(row.slice_notes[code])
            ax.set_title("\n".join(lines), fontsize=8.5)
            cam = np.asarray(row.cams[code], dtype=np.float32)
            side = cam.shape[-1]
            img = to_grid(np.asarray(row.images[code])[None], side)[0].astype(np.float32)
            img = img / (255.0 if img.max() > 1.0 else 1.0)
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.imshow(cam, cmap=cmap, vmin=0, vmax=1, alpha=alpha, interpolation="nearest")
            if row.masks is not None:
                mask = to_grid(np.asarray(row.masks[code])[None], side)[0] >= 0.5
                if mask.any():
                    ax.contour(mask, levels=[0.5], colors=_MASK_STYLE["color"], linewidths=_MASK_STYLE["lw"],
                               path_effects=_MASK_STYLE["path_effects"])
            panel_notes = [s for s in (coarse, "constant map (no peak)" if np.ptp(cam) == 0 else None) if s]
            if panel_notes:
                ax.text(0.5, 0.03, "\n".join(panel_notes), transform=ax.transAxes, ha="center", va="bottom",
                        fontsize=7.5, color=_WARNING_COLOUR,
                        bbox=dict(boxstyle="round,pad=0.25", facecolor="white", alpha=0.85,
                                  edgecolor=_WARNING_COLOUR))
        h, w = row.info["feature_map_size"][-2:]
        axes[i, 0].set_ylabel(f"{row.label} at {row.info['target_layer']}\n({_explains(row.info, short=True)}, "
                              f"{h}x{w} cells)", fontsize=9, color=_WARNING_COLOUR if coarse else "black")
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=cmap), ax=axes.ravel().tolist(), shrink=0.8, pad=0.02)
    bar.set_label("CAM (scaled per slice; per volume for 3D)", fontsize=9)
    if any(r.masks is not None for r in rows):
        fig.legend(handles=[Line2D([], [], **_MASK_STYLE, label="tumour mask")],
                   loc="lower center", bbox_to_anchor=(0.5, -0.03), frameon=False, fontsize=9)
    labels = " / ".join(dict.fromkeys(f"{r.label} {_row_explains(r.info)}" for r in rows))
    suptitle = f"{title}: {labels}; seed {seed}; the test patients of Fig. 5"
    coarse_rows = [r for r in rows if r.info.get("too_coarse")]
    for r in coarse_rows:
        suptitle += (f"\nWARNING: {r.model}: {r.info['message']}: each cell covers {r.info['cell_px']:.0f} x "
                     f"{r.info['cell_px']:.0f} px, so these maps cannot show what inside the image the model uses")
    fig.suptitle(suptitle, fontsize=11, color=_WARNING_COLOUR if coarse_rows else "black")
    return fig


def _row_explains(info: Mapping[str, Any]) -> str:
    """What a row's maps explain, in words for a figure of several models (inputs are slices or volumes)."""
    if info.get("method") == "eigencam":
        return "(class-agnostic)"
    target = explained_target(info)
    return {"predicted": "of the class each model predicts", "true": "of the patient's true class"}.get(
        target, target_phrase(target) if target in RESPONSES else str(target))


def cam_row_notes(rows: Sequence[CamRow], *, omitted: Mapping[str, str] | None = None) -> list[str]:
    """Markdown paragraphs that go with :func:`plot_cam_rows`: warnings, omitted models, what each map is.

    Parameters
    ----------
    rows : sequence of CamRow
        The rows drawn (may be empty).
    omitted : mapping of str to str, optional
        Label -> method ID of each model asked for that the run does not hold; each gets a line saying its
        row is omitted.

    Returns
    -------
    list of str
        In this order: a too-coarse warning per row concerned; a line per omitted model; without rows, a
        line saying no figure is drawn; then one paragraph per row on what its map is (layer, feature
        map, for a volume row the upsampling and the slice shown) and what its score is; then which class
        the maps explain (:func:`cam_notes`'s wording).
    """
    notes = []
    for row in rows:
        if row.info.get("too_coarse"):
            message = str(row.info["message"])
            notes.append(f"> **WARNING: the {row.model} maps are too coarse to interpret.** {message[:1].upper()}"
                         f"{message[1:]} at "
                         f"`{row.info['target_layer']}` of {row.info['arch']} ({row.info['crop_size']} px crop, one "
                         f"cell = {row.info['cell_px']:.0f} px). Do not read anatomy into these maps.")
    for label, method_id in (omitted or {}).items():
        notes.append(f"{label} (`{method_id}`) is not among this run's methods: its row is omitted.")
    if not rows:
        notes.append("None of these models is among this run's methods: no figure of their maps is drawn.")
    notes += [_row_note(row) for row in rows]
    shown = [r for r in rows if "target" in r.info and r.info["method"] != "eigencam"]
    if shown:
        target = explained_target(shown[0].info)
        notes.append(_ROW_TARGET_NOTES.get(target, _ROW_TARGET_NOTES["fixed"]).format(cls=target))
    return notes


#: What :func:`cam_row_notes` says about the class explained, per target (``fixed``: one class for every input).
_ROW_TARGET_NOTES: Final = {
    "predicted": ("Each map explains the class its model predicts for its input (the hybrid: the slice shown; the 3D "
                  "model: the whole volume), named in the panel title (`cam_target = 'predicted'`)."),
    "true": ("Each map explains the patient's true response class (`good` for CR/PR, `poor` for SD/PD), whatever "
             "the model predicts (`cam_target = 'true'`); the panel title names it."),
    "fixed": "Each map explains class `{cls}` for every input, whatever the model predicts.",
}


def _row_note(row: CamRow) -> str:
    """What one row's maps are, in Markdown (:func:`cam_row_notes`)."""
    info, label = row.info, row.label
    size = "x".join(str(v) for v in info["feature_map_size"])
    if row.kind == "volume":
        return (f"**{row.model}**: a 3D {label} at `{info['target_layer']}` ({size} cells, depth x height x width, "
                f"for a {row.volume_depth}-slice volume cropped to {info['crop_size']} px), upsampled to the "
                "input's depth and crop (pytorch-grad-cam, `scipy.ndimage.zoom`) and scaled to [0, 1] over the "
                "whole volume, so the slice shown is dim where the map peaks on other slices. Each volume is built "
                "as the model saw it at evaluation (the patient's cached slices resampled along z to "
                f"{row.volume_depth} slices). Shown: the volume's middle slice (slice {row.volume_slice} of "
                f"{row.volume_depth}, counted from 0), an interpolation of two cached slices whose position in the "
                "patient's cached stack is under each panel; it need not be Fig. 5's slice, and its tumour outline "
                "is the masks resampled the same way. Score: the volume's probability of poor response.")
    if row.kind == "hybrid":
        return (f"**{row.model}**: {label} at the CNN's last block, `{info['target_layer']}` ({size} feature map "
                f"for the {info['crop_size']} px crop), on Fig. 5's slices. Both the Transformer's tokens and the "
                "pooled local feature come from this map, so its gradient carries the global and the local path; "
                "the attention of the Transformer blocks is not mapped. Score: the mean of the top-k slice "
                "probabilities, as for Fig. 5.")
    return (f"**{row.model}**: {label} at `{info['target_layer']}` ({size} feature map for the "
            f"{info['crop_size']} px crop), on Fig. 5's slices.")
