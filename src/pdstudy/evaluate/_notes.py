"""Footer notes shared by the evaluation tables (``table.attrs["notes"]``); see ``docs/statistics.md``.

Besides the fixed notes (threshold policies, intervals, positive class, seeds) this module holds the
small-sample rule shared by the tables, their display versions and ``REPORT.md``: a number resting on
fewer than :data:`MIN_CLASS_PATIENTS` patients of either class is marked :data:`SMALL_MARK`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final

import pandas as pd

from pdstudy.core.methods import QUICK_STAND_INS, display_arch, method_from_id
from pdstudy.core.vocab import PAPER_LABEL_FOOTNOTE, SPLITS
from pdstudy.stats import check_auc_ci

__all__ = [
    "CI_NOTE",
    "CLASS_NOTE",
    "HYBRID_MODEL_NOTE",
    "MIN_CLASS_PATIENTS",
    "POLICY_NOTE",
    "SEED_NOTE",
    "seed_splits_note",
    "SMALL_MARK",
    "SMALL_SPLIT_EFFECT",
    "VOLUME_MODEL_NOTE",
    "architecture_notes",
    "ci_note",
    "class_counts",
    "counts_note",
    "quick_note",
    "small_sample_notes",
    "small_splits",
    "top_k_note",
    "training_note",
    "val_note",
]

#: What the two threshold policies are.
POLICY_NOTE: Final = (
    "Threshold policies: 'Youden on test, optimistic' (youden_test) picks the Youden threshold on the test "
    "patients and scores it on the same patients, as the paper did; tuning on the evaluated patients "
    "inflates ACC/SEN/SPE. 'Youden on val' (youden_val) picks it on the validation patients (carved "
    "from the training patients) and applies it unchanged to the test patients: the honest estimate."
)

#: How each scale of the DeLong AUC interval is described in the notes.
_AUC_CI_WORDS: Final = {
    "logit": "DeLong, built on the logit scale (always inside (0, 1))",
    "wald": "DeLong, Wald (AUC +/- 1.96 SE, clipped to [0, 1]; pROC's default)",
}


def ci_note(auc_ci: str = "logit") -> str:
    """The interval note of a table that shows AUC intervals, naming the AUC interval's method.

    Parameters
    ----------
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC interval (:func:`pdstudy.stats.delong_auc_ci`'s ``method``).

    Returns
    -------
    str
        ``95% intervals: DeLong, ... for AUC; Wilson for ACC, SEN and SPE.``
    """
    return f"95% intervals: {_AUC_CI_WORDS[check_auc_ci(auc_ci, 'auc_ci')]} for AUC; Wilson for ACC, SEN and SPE."


#: Which interval each metric carries (the default logit scale).
CI_NOTE: Final = ci_note("logit")
#: The positive class and the paper's response labels.
CLASS_NOTE: Final = (
    "Positive class = poor response: SEN = poor responders called poor, SPE = good responders called good. "
    + PAPER_LABEL_FOOTNOTE
)
#: Seed ensemble versus per-seed single models.
SEED_NOTE: Final = (
    "Several training seeds: AUC, its interval, thresholds, ACC/SEN/SPE and p-values are those of the SEED "
    "ENSEMBLE, each patient's mean score across the seeds (an ensemble of one model per seed, not a single "
    "model as in the paper). 'seeds' gives the "
    "mean +/- SD across seeds of SINGLE MODELS, each evaluated on its own seed's full train/val/test splits."
)

def seed_splits_note(df: pd.DataFrame) -> list[str]:
    """Whether every training seed used the same train/val/test patients (one note; none with one seed).

    Parameters
    ----------
    df : pandas.DataFrame
        Fixed-split prediction rows (``patient_id``, ``split``, ``seed``), e.g. the final stage of every method.

    Returns
    -------
    list of str
        With several seeds: the patients per split and that they are the same in every seed, or how many
        patients changed split between seeds (left out of the seed ensemble).
    """
    seeds = sorted(df["seed"].unique())
    if len(seeds) < 2:
        return []
    per_seed = {s: frozenset(map(tuple, g[["patient_id", "split"]].drop_duplicates().to_numpy()))
                for s, g in df.groupby("seed")}
    first = per_seed[seeds[0]]
    if all(v == first for v in per_seed.values()):
        counts = pd.Series([split for _, split in first]).value_counts()
        sizes = " / ".join(f"{int(counts.get(s, 0))} {s}" for s in SPLITS)
        return [f"Splits: the same patients in each of the {len(seeds)} seeds ({sizes}; drawn once from "
                "split_seed): the seed ensemble and every seed's numbers rest on the same validation and test "
                "patients."]
    split_of = df.groupby("patient_id")["split"].nunique()
    moved = int((split_of > 1).sum())
    return [f"Splits differ between the {len(seeds)} seeds (prediction files from before split_seed): {moved} "
            "patients are in different splits in different seeds and are left out of the seed ensemble."]


#: Numbers resting on fewer patients than this in either class are marked.
MIN_CLASS_PATIENTS: Final = 10
#: Marker of a number resting on fewer than :data:`MIN_CLASS_PATIENTS` patients of one class.
SMALL_MARK: Final = "†"
#: What rests on each split's patients, for the small-sample warnings.
SMALL_SPLIT_EFFECT: Final = {
    "train": "the training AUC and training ACC/SEN/SPE",
    "val": "the 'Youden on val' threshold and so every ACC/SEN/SPE under it",
    "test": "every test-set number (AUC, ACC/SEN/SPE, p-values)",
}


def class_counts(scores: pd.DataFrame) -> dict[str, int]:
    """Patients per split and class: ``n_<split>``, ``n_<split>_poor``, ``n_<split>_good`` for train, val, test.

    Parameters
    ----------
    scores : pandas.DataFrame
        Patient scores with columns ``split`` and ``y`` (1 = poor), one row per patient and split.

    Returns
    -------
    dict
        Nine integer counts.
    """
    out: dict[str, int] = {}
    for split in SPLITS:
        y = scores.loc[scores["split"] == split, "y"]
        out[f"n_{split}"] = len(y)
        out[f"n_{split}_poor"] = int(y.sum())
        out[f"n_{split}_good"] = len(y) - int(y.sum())
    return out


def _count(row: Mapping[str, Any], key: str) -> float:
    try:
        v = float(row.get(key, float("nan")))
    except (TypeError, ValueError):
        return float("nan")
    return v


def small_splits(row: Mapping[str, Any]) -> list[str]:
    """Splits of a table row with patients of which fewer than :data:`MIN_CLASS_PATIENTS` are of one class.

    A split without patients (``n_<split> == 0``, e.g. no validation carve) or without counts is not
    listed: nothing rests on it.

    Parameters
    ----------
    row : mapping
        A row of an evaluation table with ``n_<split>_poor`` / ``n_<split>_good`` counts.

    Returns
    -------
    list of str
        Subset of ``["train", "val", "test"]``, in that order.
    """
    out = []
    for split in SPLITS:
        poor, good = _count(row, f"n_{split}_poor"), _count(row, f"n_{split}_good")
        if math.isnan(poor) or math.isnan(good) or poor + good == 0:
            continue
        if min(poor, good) < MIN_CLASS_PATIENTS:
            out.append(split)
    return out


def _split_text(rows: list[Mapping[str, Any]], split: str) -> str:
    """``"23 (8 poor / 15 good)"``, or a range when the rows differ."""
    keys = ("n", "poor", "good")
    seen = {tuple(int(_count(r, f"n_{split}" if k == "n" else f"n_{split}_{k}")) for k in keys) for r in rows
            if not math.isnan(_count(r, f"n_{split}"))}
    if not seen:
        return "n/a"
    if len(seen) == 1:
        n, poor, good = next(iter(seen))
        return f"{n} ({poor} poor / {good} good)"
    lo = [min(s[i] for s in seen) for i in range(3)]
    hi = [max(s[i] for s in seen) for i in range(3)]
    return f"{lo[0]}-{hi[0]} ({lo[1]}-{hi[1]} poor / {lo[2]}-{hi[2]} good; differs by row)"


def _run_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("status", "run") == "run"]


def counts_note(rows: Iterable[Mapping[str, Any]], splits: Iterable[str] = SPLITS) -> list[str]:
    """Note giving the patients behind the numbers, per split and class (none without run rows).

    Parameters
    ----------
    rows : iterable of mapping
        Table rows with ``n_<split>``, ``n_<split>_poor``, ``n_<split>_good``.
    splits : iterable of str
        Splits to name.

    Returns
    -------
    list of str
        Zero or one note.
    """
    rows = _run_rows(rows)
    if not rows:
        return []
    parts = [f"{split} {_split_text(rows, split)}" for split in splits]
    return ["Patients (the 'Patients' column, per row): " + "; ".join(parts) + "."]


def small_sample_notes(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Warning note on the splits with fewer than :data:`MIN_CLASS_PATIENTS` patients of one class.

    Parameters
    ----------
    rows : iterable of mapping
        Table rows with the class counts (:func:`class_counts`).

    Returns
    -------
    list of str
        Zero or one note, starting with :data:`SMALL_MARK`.
    """
    rows = _run_rows(rows)
    small = [s for s in SPLITS if any(s in small_splits(r) for r in rows)]
    if not small:
        return []
    parts = [f"{s} {_split_text([r for r in rows if s in small_splits(r)], s)}: {SMALL_SPLIT_EFFECT[s]}"
             for s in small]
    return [f"{SMALL_MARK} Small samples: fewer than {MIN_CLASS_PATIENTS} patients of one class behind "
            + "; ".join(parts) + f". Numbers marked {SMALL_MARK} rest on them and are unstable; read them with "
            "their intervals."]


def training_note(rows: Iterable[Mapping[str, Any]] | None = None, *, cv: bool = False) -> str:
    """Note that the models train on the training patients minus the validation carve.

    Parameters
    ----------
    rows : iterable of mapping, optional
        Table rows with the class counts; when given, the note names the numbers of patients.
    cv : bool, default False
        Cross-validation wording (each fold's training patients).

    Returns
    -------
    str
        The note.
    """
    if cv:
        return ("Training: each fold's model is trained on that fold's training patients minus the validation "
                "patients carved from them (which choose the fold's 'Youden on val' threshold and are never "
                "trained on), not on all of the fold's training patients.")
    rows = _run_rows(rows or [])
    counts = ""
    if rows:
        counts = (f" ({_split_text(rows, 'train')} trained on; {_split_text(rows, 'val')} carved out as "
                  "validation patients)")
    return ("Training: every model is trained on the training patients minus the validation carve" + counts
            + ", not on all of the training patients as in the paper; the validation patients are never trained "
            "on and choose the 'Youden on val' threshold.")


def top_k_note(preds: pd.DataFrame, top_k: int | None) -> list[str]:
    """Note on the test and validation patients scored on fewer than ``top_k`` slices (none without data).

    A patient's score is the mean of the ``top_k`` highest slice probabilities; a patient with fewer
    cached slices (column ``n_slices`` of the prediction files) is scored on the mean of all of them.

    Parameters
    ----------
    preds : pandas.DataFrame
        Raw prediction rows (the ``n_slices`` column is optional: older runs lack it).
    top_k : int or None
        The notebooks' ``top_k``; None gives no note.

    Returns
    -------
    list of str
        Zero or one note.
    """
    if top_k is None:
        return []
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer (slices averaged per patient) or None, got {top_k!r}")
    unrecorded = [f"Top-k: each patient's score is the mean of its {top_k} highest slice probabilities; these "
                  "prediction files do not record how many slices each patient had (no n_slices values: an older "
                  "run), so patients with fewer slices cannot be counted."]
    if "n_slices" not in preds.columns:
        return unrecorded
    rows = preds[pd.to_numeric(preds["fold"], errors="coerce") == -1]
    rows = rows.assign(n_slices=pd.to_numeric(rows["n_slices"], errors="coerce").astype("float64"),
                       patient_id=rows["patient_id"].astype(str))
    if rows["n_slices"].isna().all():
        return unrecorded
    parts, unknown = [], 0
    for split, name in (("test", "test"), ("val", "validation")):
        per = rows[rows["split"] == split].groupby("patient_id")["n_slices"].min()
        unknown += int(per.isna().sum())
        parts.append(f"{int((per < top_k).sum())} of {len(per)} {name} patients")
    text = (f"Top-k: each patient's score is the mean of its {top_k} highest slice probabilities; "
            + " and ".join(parts) + f" had fewer than {top_k} cached slices and were scored on the mean of all "
            "their slices.")
    if unknown:
        text += f" {unknown} of them come from prediction files without n_slices (not counted)."
    return [text]


def val_note(rows: list[dict[str, Any]], key: str = "method") -> list[str]:
    """Note naming the run rows without a 'Youden on val' threshold (none if every row has one).

    Parameters
    ----------
    rows : list of dict
        Table rows (``status`` defaults to ``"run"``; ``youden_val_acc`` NaN when not available).
    key : str, default "method"
        Column that names a row in the note.

    Returns
    -------
    list of str
        Zero or one note.
    """
    missing = [r[key] for r in rows if r.get("status", "run") == "run" and math.isnan(r.get("youden_val_acc", 0.0))]
    if not missing:
        return []
    return [f"'Youden on val' is not available (no validation patients of both classes) for: "
            f"{', '.join(map(str, missing))}; shown as n/a."]


def quick_note() -> str:
    """Note that the quick profile's stand-ins replaced the paper's architectures.

    Returns
    -------
    str
        The note, naming each stand-in.
    """
    pairs = ", ".join(f"{display_arch(k)} -> {v}" for k, v in QUICK_STAND_INS.items())
    return ("Quick profile: the paper's architectures are replaced by tiny stand-ins (" + pairs + "; timm test "
            "models, the hybrid built the same way on the B7 stand-in, a tiny MONAI 3D ResNet) on small images; the "
            "numbers check the pipeline and do not reproduce the paper.")


#: What the 3D ResNet-50 row is and how its patient score is formed (Table 2's notes, when the row was run).
VOLUME_MODEL_NOTE: Final = (
    "3D ResNet-50: MONAI's 3D ResNet-50 (MedicalNet's configuration) trained on one volume per patient, its kept "
    "portal-venous slices resampled along z to a fixed number of slices (volume_depth) and cropped like the slices; "
    "its patient score is the model's probability of poor response for that volume (no top-k; n_slices counts "
    "the cached slices the volume was built from)."
)
#: What the hybrid row is and how its patient score is formed (Table 2's notes, when the row was run).
HYBRID_MODEL_NOTE: Final = (
    "Hybrid Model (B7 + Transformer): the paper does not specify its hybrid; this is one reading: the EfficientNet-B7 "
    "feature map as tokens (1x1 projection, learned positions) through Transformer blocks, their mean (global) "
    "concatenated with the pooled CNN map (local) before the classifier (docs/training.md). A 2D slice model: its "
    "patient score is the mean of the top-k slice probabilities, as for the CNNs."
)


def architecture_notes(method_ids: Iterable[str]) -> list[str]:
    """Notes on the models of other kinds among ``method_ids``: the 3D ResNet-50 and the hybrid (none otherwise).

    Parameters
    ----------
    method_ids : iterable of str
        Method IDs of a table's run rows.

    Returns
    -------
    list of str
        :data:`VOLUME_MODEL_NOTE` and/or :data:`HYBRID_MODEL_NOTE`, for the architectures some method's chain holds.
    """
    archs = {arch for mid in method_ids for arch in method_from_id(mid).chain}
    notes = []
    if "resnet50_3d" in archs:
        notes.append(VOLUME_MODEL_NOTE)
    if "efficientnet_b7_transformer" in archs:
        notes.append(HYBRID_MODEL_NOTE)
    return notes
