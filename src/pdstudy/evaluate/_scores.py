"""Patient scores of a method (final stage, seed ensemble), threshold policies, and their evaluation.

Shared by the table modules of :mod:`pdstudy.evaluate`; what is computed and why is described in
``docs/statistics.md``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import pandas as pd

from pdstudy.core.methods import ARCH_ALIASES, Method, method_from_id
from pdstudy.core.paper import load_paper
from pdstudy.core.vocab import SPLITS
from pdstudy.data.predictions import validate_predictions
from pdstudy.evaluate._notes import class_counts
from pdstudy.evaluate.readers import rate_metrics
from pdstudy.stats import apply_threshold_policy, check_auc_ci, delong_auc_ci

__all__ = [
    "HOLM_FAMILY_SIZE",
    "METRICS",
    "PD_B7_B3_ALTERNATIVE",
    "PD_B7_B3_PAPER_ROW",
    "PD_B7_B3_READING",
    "PD_B7_B3_READING_NOTE",
    "POLICIES",
    "POLICY_LABELS",
    "choose_threshold",
    "default_baseline",
    "final_stage",
    "final_stage_of",
    "fixed_split",
    "has_both_classes",
    "method_scores",
    "paper_method_ids",
    "patients_of_split",
    "score_patients",
    "score_with_seeds",
    "seed_ensemble",
    "select_stage",
]

#: Paper Table 2 rows that this package does not implement, with the reason (none since the 3D ResNet-50 and the
#: CNN + Transformer hybrid exist; kept for rows a future paper table adds).
_NOT_IMPLEMENTED: Final[dict[str, str]] = {}

#: The two threshold policies every table reports.
POLICIES: Final = ("youden_test", "youden_val")
#: Display label of each threshold policy.
POLICY_LABELS: Final = {"youden_test": "Youden on test, optimistic", "youden_val": "Youden on val"}
#: Operating-point metrics every table reports at each policy's threshold: accuracy, sensitivity, specificity.
METRICS: Final = ("acc", "sen", "spe")


# --------------------------------------------------------------------------------------------- methods


def default_baseline(method: Method) -> str | None:
    """Comparator of a method: the baseline CNN of the chain's final architecture (None for baselines).

    Parameters
    ----------
    method : pdstudy.core.methods.Method
        The method.

    Returns
    -------
    str or None
        Method ID of the comparator (``"baseline:<arch>"``), or None for a baseline.
    """
    return None if method.kind == "baseline" else f"baseline:{method.chain[-1]}"


#: The paper's Table 2 row whose chain is ambiguous.
PD_B7_B3_PAPER_ROW: Final = "Progressive Distill (EfficientNetB7-B3)"
#: The reading Table 2 maps that row to (its confirmatory row, in the Holm family): B7 > noisy B7 > noisy B3.
PD_B7_B3_READING: Final = "pd:efficientnet_b7>efficientnet_b7>efficientnet_b3"
#: The other reading, shown as an exploratory "alternative reading" row: the row's name, B7 > noisy B3.
PD_B7_B3_ALTERNATIVE: Final = "pd:efficientnet_b7>efficientnet_b3"
#: Why :data:`PD_B7_B3_READING` is the reading (one sentence, in Table 2's notes).
PD_B7_B3_READING_NOTE: Final = (
    "Progressive Distill (EfficientNetB7-B3) is read as B7>B7>B3: the paper's text has the B3 student improve "
    "on 'EfficientNetB7 at 0.78', which is not the B7 baseline (0.74) but its first noisy-student iteration "
    "(0.78 in the text and in Table 4), and its best PD models use two iterations, so the printed 0.81 belongs "
    "to B7 > noisy B7 > noisy B3; the row's name read literally (B7>B3, one noisy B3 student of the B7 "
    "baseline) is shown as the 'alternative reading' row, exploratory."
)
#: Rows of the paper's Table 2 that the Holm family holds: every KD and PD row (mapped to one method each).
HOLM_FAMILY_SIZE: Final = 8

_PAPER_PERCENT_COLUMNS: Final = ("train_acc", "train_sen", "train_spe", "test_acc", "test_sen", "test_spe")


def paper_method_ids() -> pd.DataFrame:
    """The paper's Table 2 rows mapped to method IDs, with the Holm family fixed in advance.

    The KD and PD rows (:data:`HOLM_FAMILY_SIZE` of them) form the family of Table 2's Holm adjustment,
    each tested against the baseline of its final architecture. The ambiguous
    :data:`PD_B7_B3_PAPER_ROW` maps to :data:`PD_B7_B3_READING`, with :data:`PD_B7_B3_ALTERNATIVE` as its
    ``alternative_id`` (:data:`PD_B7_B3_READING_NOTE` says why).

    Returns
    -------
    pandas.DataFrame
        ``paper_method`` (as printed), ``method_id`` ("" for rows this package does not implement),
        ``alternative_id`` (another reading of the same row, else ""), ``reason`` (why not implemented,
        else ""), ``holm_family`` (bool: a KD or PD row), ``paper_train_auc``, ``paper_test_auc`` (floats,
        as printed) and ``paper_train_acc``, ``paper_train_sen``, ``paper_train_spe``, ``paper_test_acc``,
        ``paper_test_sen``, ``paper_test_spe`` (the printed percentages as proportions).
    """
    t2 = load_paper().table2
    rows = []
    for _, r in t2.iterrows():
        chain = r["teacher_chain"]
        name = r["method"]
        kind = "kd" if name.startswith("Knowledge") else "pd" if name.startswith("Progressive") else "baseline"
        alt = ""
        if chain in _NOT_IMPLEMENTED:
            mid, reason = "", _NOT_IMPLEMENTED[chain]
        elif name == PD_B7_B3_PAPER_ROW:
            mid, alt, reason = PD_B7_B3_READING, PD_B7_B3_ALTERNATIVE, ""
        else:
            archs = [ARCH_ALIASES.get(a, a) for a in chain.split(">")]
            mid, reason = Method(kind, tuple(archs)).id, ""
        row = {"paper_method": name, "method_id": mid, "alternative_id": alt, "reason": reason,
               "holm_family": bool(mid) and kind != "baseline",
               "paper_train_auc": float(r["train_auc"]), "paper_test_auc": float(r["test_auc"])}
        row.update({f"paper_{c}": float(r[c]) / 100.0 for c in _PAPER_PERCENT_COLUMNS})
        rows.append(row)
    out = pd.DataFrame(rows)
    if int(out["holm_family"].sum()) != HOLM_FAMILY_SIZE:
        raise ValueError(f"the paper's Table 2 should hold {HOLM_FAMILY_SIZE} KD/PD rows (the Holm family), found "
                         f"{int(out['holm_family'].sum())}; check pdstudy/core/paper_data/")
    return out


# --------------------------------------------------------------------------------------------- predictions


def final_stage_of(df: pd.DataFrame) -> pd.Series:
    """Final-stage index of each row's method.

    Parameters
    ----------
    df : pandas.DataFrame
        Validated prediction rows.

    Returns
    -------
    pandas.Series
        ``len(chain) - 1`` of each row's method, aligned with ``df``.
    """
    return df["method"].map({m: method_from_id(m).final_stage for m in df["method"].unique()})


def final_stage(preds: pd.DataFrame) -> pd.DataFrame:
    """Rows of each method's final stage (the last stage of its chain).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (any folds and seeds).

    Returns
    -------
    pandas.DataFrame
        The validated rows whose ``stage`` is ``len(chain) - 1`` of their method, with column ``y``.

    Raises
    ------
    ValueError
        On invalid predictions, or a method whose final stage is missing.
    """
    df = validate_predictions(preds)
    final = final_stage_of(df)
    for mid in df["method"].unique():
        if not (final[df["method"] == mid] == df.loc[df["method"] == mid, "stage"]).any():
            present = sorted(df.loc[df["method"] == mid, "stage"].unique())
            raise ValueError(f"method {mid!r} has no predictions for its final stage "
                             f"{method_from_id(mid).final_stage} (stages present: {present}); did its chain finish?")
    return df[df["stage"] == final].reset_index(drop=True)


def fixed_split(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Fixed-split rows (``fold == -1``) of validated predictions.

    Parameters
    ----------
    df : pandas.DataFrame
        Validated prediction rows.
    what : str
        Name of the caller, for the error message.

    Returns
    -------
    pandas.DataFrame
        The rows with ``fold == -1``.

    Raises
    ------
    ValueError
        When every row is a cross-validation fold.
    """
    out = df[df["fold"] == -1]
    if out.empty:
        raise ValueError(f"{what} needs fixed-split predictions (fold == -1), but all rows are cross-validation "
                         "folds; use cv_summary for those")
    return out


def seed_ensemble(rows: pd.DataFrame) -> pd.DataFrame:
    """Seed-averaged score per (patient, split), over patients in that split in every seed.

    Parameters
    ----------
    rows : pandas.DataFrame
        Validated prediction rows of one method and stage.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, split, response, recist, y, score, n_seeds``.
    """
    n_seeds = rows["seed"].nunique()
    agg = (rows.groupby(["patient_id", "split"], sort=False)
           .agg(response=("response", "first"), recist=("recist", "first"), y=("y", "first"),
                score=("score", "mean"), n_seeds=("seed", "nunique")).reset_index())
    return agg[agg["n_seeds"] == n_seeds].reset_index(drop=True)


def select_stage(df: pd.DataFrame, method_id: str, stage: int | None, what: str) -> pd.DataFrame:
    """Rows of one method and stage (default: its final stage).

    Parameters
    ----------
    df : pandas.DataFrame
        Validated prediction rows.
    method_id : str
        Method ID.
    stage : int or None
        Stage index; None for the method's final stage.
    what : str
        Name of the caller, for the error message.

    Returns
    -------
    pandas.DataFrame
        The selected rows.

    Raises
    ------
    ValueError
        When the method or the stage has no rows.
    """
    if method_id not in set(df["method"]):
        raise ValueError(f"{what}: method {method_id!r} has no predictions; methods present: "
                         f"{sorted(df['method'].unique())}")
    m = method_from_id(method_id)
    stage = m.final_stage if stage is None else int(stage)
    rows = df[(df["method"] == method_id) & (df["stage"] == stage)]
    if rows.empty:
        raise ValueError(f"{what}: method {method_id!r} has no predictions for stage {stage}")
    return rows


def method_scores(preds: pd.DataFrame, method_id: str, *, stage: int | None = None) -> pd.DataFrame:
    """Seed-averaged patient scores of one method and stage on the fixed split.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows.
    method_id : str
        Method ID.
    stage : int, optional
        Stage index; default the method's final stage.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, split, response, recist, y, score, n_seeds``; one row per patient and split
        (patients whose split differs between seeds are left out).
    """
    df = fixed_split(validate_predictions(preds), "method_scores")
    return seed_ensemble(select_stage(df, method_id, stage, "method_scores"))


def patients_of_split(preds: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Fixed-split patients of one split: ``patient_id, response, recist`` (one row each, sorted by ID).

    Use the test patients as the ``patients`` of :func:`pdstudy.evaluate.simulate_readers`.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows.
    split : {"test", "val", "train"}, default "test"
        Split.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, response, recist``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    df = fixed_split(validate_predictions(preds), "patients_of_split")
    rows = df[df["split"] == split].drop_duplicates("patient_id")
    return rows[["patient_id", "response", "recist"]].sort_values("patient_id").reset_index(drop=True)


def has_both_classes(y: np.ndarray) -> bool:
    """Whether 0/1 labels are non-empty and hold both classes.

    Parameters
    ----------
    y : numpy.ndarray
        Binary labels (1 = poor response).

    Returns
    -------
    bool
        True when there is at least one poor and one good responder.
    """
    return len(y) > 0 and 0 < int(y.sum()) < len(y)


def choose_threshold(scores: pd.DataFrame, policy: str) -> float:
    """Threshold of a policy on seed-averaged scores (:func:`method_scores`); NaN if not available.

    ``youden_test`` uses the test rows, ``youden_val`` only the val rows (NaN when there are no val
    patients of both classes).

    Parameters
    ----------
    scores : pandas.DataFrame
        Output of :func:`method_scores`.
    policy : {"youden_test", "youden_val"}
        Threshold policy.

    Returns
    -------
    float
        The threshold (a patient is called poor iff ``score >= threshold``), or NaN.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {POLICIES}")
    test = scores[scores["split"] == "test"]
    val = scores[scores["split"] == "val"]
    if policy == "youden_val" and not has_both_classes(val["y"].to_numpy()):
        return float("nan")
    return float(apply_threshold_policy(policy, test["y"].to_numpy(), test["score"].to_numpy(),
                                        val["y"].to_numpy(), val["score"].to_numpy())["threshold"])


def _confusion(scores: pd.DataFrame, thr: float) -> dict[str, Any]:
    """Confusion counts of ``score >= thr`` on some patients, and ACC/SEN/SPE with Wilson intervals."""
    if math.isnan(thr):
        counts: dict[str, Any] = dict.fromkeys(("tp", "fp", "tn", "fn"), float("nan"))
        return {**counts, **{f"{m}{s}": float("nan") for m in METRICS for s in ("", "_lo", "_hi")}}
    pred = scores["score"].to_numpy() >= thr
    y = scores["y"].to_numpy() == 1
    counts = {"tp": int((pred & y).sum()), "fp": int((pred & ~y).sum()),
              "tn": int((~pred & ~y).sum()), "fn": int((~pred & y).sum())}
    return {**counts, **rate_metrics(**counts)}


def score_patients(scores: pd.DataFrame, what: str, *, auc_ci: str = "logit") -> dict[str, Any]:
    """AUCs with CIs, both policies' test ACC/SEN/SPE and the training ACC/SEN/SPE of one set of patient scores.

    Parameters
    ----------
    scores : pandas.DataFrame
        Patient scores as returned by :func:`seed_ensemble`.
    what : str
        Name of the caller, for the error message.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals (:func:`pdstudy.stats.delong_auc_ci`).

    Returns
    -------
    dict
        ``n_train, n_val, n_test`` and ``n_<split>_poor`` / ``n_<split>_good``; ``train_auc``/``test_auc``
        with ``_lo``/``_hi``; for each policy ``P``: ``P_threshold``, ``P_tp, P_fp, P_tn, P_fn`` and
        ``P_acc`` ... ``P_spe_hi`` on the test patients; ``train_acc`` ... ``train_spe_hi`` (and
        ``train_tp`` ... ``train_fn``): the training patients at the ``youden_val`` threshold (NaN without one).

    Raises
    ------
    ValueError
        When the test split lacks poor or good responders, or on an unknown ``auc_ci``.
    """
    check_auc_ci(auc_ci, "auc_ci")
    out: dict[str, Any] = dict(class_counts(scores))
    test = scores[scores["split"] == "test"]
    if not has_both_classes(test["y"].to_numpy()):
        raise ValueError(f"{what}: the test split needs poor and good responders; it has "
                         f"{int(test['y'].sum())} poor of {len(test)}")
    for split in ("train", "test"):
        sub = scores[scores["split"] == split]
        if has_both_classes(sub["y"].to_numpy()):
            auc, lo, hi = delong_auc_ci(sub["y"].to_numpy(), sub["score"].to_numpy(), method=auc_ci)
        else:
            auc = lo = hi = float("nan")
        out[f"{split}_auc"], out[f"{split}_auc_lo"], out[f"{split}_auc_hi"] = auc, lo, hi
    for policy in POLICIES:
        thr = choose_threshold(scores, policy)
        out[f"{policy}_threshold"] = thr
        out.update({f"{policy}_{k}": v for k, v in _confusion(test, thr).items()})
    train = scores[scores["split"] == "train"]
    thr = out["youden_val_threshold"] if len(train) else float("nan")
    out.update({f"train_{k}": v for k, v in _confusion(train, thr).items()})
    return out


_SPREAD_KEYS: Final = ("test_auc", *(f"{p}_{m}" for p in POLICIES for m in METRICS))


def score_with_seeds(rows: pd.DataFrame, what: str, *, auc_ci: str = "logit") -> dict[str, Any]:
    """:func:`score_patients` of the seed ensemble, plus the mean and SD of per-seed single models.

    The main numbers are those of the seed ensemble (each patient's mean score over the seeds, over the
    patients in the same split in every seed). The spread evaluates each seed's model on its own, on that
    seed's full train/val/test splits (its own validation patients choose its own threshold).

    Parameters
    ----------
    rows : pandas.DataFrame
        Validated prediction rows of one method and stage (fixed split, any seeds).
    what : str
        Name of the caller, for the error message.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals.

    Returns
    -------
    dict
        ``n_seeds``, the keys of :func:`score_patients`, and ``*_seed_mean`` / ``*_seed_sd`` (ddof 1) of
        ``test_auc`` and the policy metrics.
    """
    seeds = sorted(rows["seed"].unique())
    ens = seed_ensemble(rows)
    out = {"n_seeds": len(seeds), **score_patients(ens, what, auc_ci=auc_ci)}
    per_seed = [score_patients(seed_ensemble(rows[rows["seed"] == s]), f"{what}, seed {s}", auc_ci=auc_ci)
                for s in seeds]
    for key in _SPREAD_KEYS:
        vals = np.array([p[key] for p in per_seed], dtype=float)
        ok = vals[~np.isnan(vals)]
        out[f"{key}_seed_mean"] = float(ok.mean()) if len(ok) else float("nan")
        out[f"{key}_seed_sd"] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
    return out
