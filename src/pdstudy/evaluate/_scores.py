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
from pdstudy.evaluate.readers import rate_metrics
from pdstudy.stats import apply_threshold_policy, delong_auc_ci

__all__ = [
    "METRICS",
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

#: Paper Table 2 rows that this package does not implement, with the reason.
_NOT_IMPLEMENTED: Final = {
    "resnet50_3d": "3D CNN: pdstudy trains 2D slice CNNs only",
    "efficientnet_b7+transformer": "CNN + Transformer hybrid: its architecture is not specified in the paper",
}

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


def paper_method_ids() -> pd.DataFrame:
    """The paper's Table 2 rows mapped to method IDs.

    Returns
    -------
    pandas.DataFrame
        ``paper_method`` (as printed), ``method_id`` ("" for rows this package does not implement),
        ``reason`` (why not, else ""), ``paper_train_auc``, ``paper_test_auc`` (floats, as printed).
    """
    t2 = load_paper().table2
    rows = []
    for _, r in t2.iterrows():
        chain = r["teacher_chain"]
        if chain in _NOT_IMPLEMENTED:
            mid, reason = "", _NOT_IMPLEMENTED[chain]
        else:
            archs = [ARCH_ALIASES.get(a, a) for a in chain.split(">")]
            name = r["method"]
            kind = "kd" if name.startswith("Knowledge") else "pd" if name.startswith("Progressive") else "baseline"
            mid, reason = Method(kind, tuple(archs)).id, ""
        rows.append({"paper_method": r["method"], "method_id": mid, "reason": reason,
                     "paper_train_auc": float(r["train_auc"]), "paper_test_auc": float(r["test_auc"])})
    return pd.DataFrame(rows)


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


def score_patients(scores: pd.DataFrame, what: str) -> dict[str, Any]:
    """AUCs with CIs and both policies' ACC/SEN/SPE of one set of patient scores.

    Parameters
    ----------
    scores : pandas.DataFrame
        Patient scores as returned by :func:`seed_ensemble`.
    what : str
        Name of the caller, for the error message.

    Returns
    -------
    dict
        ``n_train, n_val, n_test``, ``train_auc``/``test_auc`` with ``_lo``/``_hi``, and for each policy
        ``P``: ``P_threshold``, ``P_tp, P_fp, P_tn, P_fn`` and ``P_acc`` ... ``P_spe_hi``.

    Raises
    ------
    ValueError
        When the test split lacks poor or good responders.
    """
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        out[f"n_{split}"] = int((scores["split"] == split).sum())
    test = scores[scores["split"] == "test"]
    if not has_both_classes(test["y"].to_numpy()):
        raise ValueError(f"{what}: the test split needs poor and good responders; it has "
                         f"{int(test['y'].sum())} poor of {len(test)}")
    for split in ("train", "test"):
        sub = scores[scores["split"] == split]
        if has_both_classes(sub["y"].to_numpy()):
            auc, lo, hi = delong_auc_ci(sub["y"].to_numpy(), sub["score"].to_numpy())
        else:
            auc = lo = hi = float("nan")
        out[f"{split}_auc"], out[f"{split}_auc_lo"], out[f"{split}_auc_hi"] = auc, lo, hi
    for policy in POLICIES:
        thr = choose_threshold(scores, policy)
        out[f"{policy}_threshold"] = thr
        if math.isnan(thr):
            counts = dict.fromkeys(("tp", "fp", "tn", "fn"), float("nan"))
            rates = {f"{m}{s}": float("nan") for m in METRICS for s in ("", "_lo", "_hi")}
        else:
            pred = test["score"].to_numpy() >= thr
            y = test["y"].to_numpy() == 1
            counts = {"tp": int((pred & y).sum()), "fp": int((pred & ~y).sum()),
                      "tn": int((~pred & ~y).sum()), "fn": int((~pred & y).sum())}
            rates = rate_metrics(**counts)
        out.update({f"{policy}_{k}": v for k, v in counts.items()})
        out.update({f"{policy}_{k}": v for k, v in rates.items()})
    return out


_SPREAD_KEYS: Final = ("test_auc", *(f"{p}_{m}" for p in POLICIES for m in METRICS))


def score_with_seeds(rows: pd.DataFrame, what: str) -> dict[str, Any]:
    """:func:`score_patients` of the seed-averaged score, plus per-seed mean and SD of the main metrics.

    Parameters
    ----------
    rows : pandas.DataFrame
        Validated prediction rows of one method and stage (fixed split, any seeds).
    what : str
        Name of the caller, for the error message.

    Returns
    -------
    dict
        ``n_seeds``, the keys of :func:`score_patients`, and ``*_seed_mean`` / ``*_seed_sd`` (ddof 1) of
        ``test_auc`` and the policy metrics.
    """
    seeds = sorted(rows["seed"].unique())
    ens = seed_ensemble(rows)
    out = {"n_seeds": len(seeds), **score_patients(ens, what)}
    per_seed = [score_patients(seed_ensemble(rows[rows["seed"] == s]), f"{what}, seed {s}") for s in seeds]
    for key in _SPREAD_KEYS:
        vals = np.array([p[key] for p in per_seed], dtype=float)
        ok = vals[~np.isnan(vals)]
        out[f"{key}_seed_mean"] = float(ok.mean()) if len(ok) else float("nan")
        out[f"{key}_seed_sd"] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
    return out
