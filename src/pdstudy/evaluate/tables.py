"""Evaluation tables from prediction files: Table 2 (models), Table 3 (readers), Table 4 (ablation), Fig. 6 data, CV.

Pure pandas / NumPy / :mod:`pdstudy.stats`; importing this module never imports torch (method IDs
are parsed by :func:`pdstudy.core.methods.method_from_id`).

Input: the concatenated prediction files of a run (:func:`pdstudy.learn.distill.read_predictions`), one
row per patient, method, stage, seed, fold and repeat, with the columns of
:data:`PREDICTION_COLUMNS`; ``score`` is the probability of class 1 (``poor``).

Conventions
-----------
Final stage
    A method's model is the last stage of its chain (stage ``len(chain) - 1``).
Fixed split
    Tables 2-4 and the iteration curve use the fixed split (``fold == -1``); cross-validation
    predictions (``fold >= 0``) are summarised by :func:`cv_summary`.
Threshold policies
    ``youden_test``: the Youden threshold chosen on the test patients and scored on them (the
    paper's protocol; optimistic). ``youden_val``: the Youden threshold chosen on the validation
    patients (carved from the training patients) and applied unchanged to the test patients; not
    available (NaN, with a note) when a run has no validation patients of both classes.
Several seeds
    The main numbers (AUC, its DeLong CI, ACC/SEN/SPE with Wilson CIs, DeLong p-values, McNemar)
    are those of the *seed-averaged score*: each patient's mean score over the seeds, over patients
    that are in the same split in every seed. The spread over seeds is given separately as the mean
    and SD (ddof 1) of the per-seed values (``*_seed_mean``, ``*_seed_sd``). With one seed both
    coincide and the SD is NaN.
Intervals
    95% intervals: DeLong on the logit scale for AUCs (:func:`pdstudy.stats.delong_auc_ci`), Wilson
    for proportions (:func:`pdstudy.stats.wilson_ci`). Metrics are proportions in [0, 1] in the
    numeric tables and percentages in the display tables.

Every table function returns a numeric :class:`pandas.DataFrame` whose ``attrs`` hold ``"table"``
(its kind) and ``"notes"`` (footer lines for the Markdown file); :func:`format_table` turns it into
the display table and :func:`write_evaluation_table` writes both through :func:`pdstudy.report.tables.write_table`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from pdstudy.core.methods import (
    ARCH_ALIASES,
    METHOD_KINDS,
    QUICK_STAND_INS,
    Method,
    display_arch,
    method_from_id,
)
from pdstudy.core.vocab import PAPER_LABEL_FOOTNOTE, SPLITS
from pdstudy.data.predictions import validate_predictions
from pdstudy.evaluate.readers import rate_metrics, reader_metrics
from pdstudy.stats import apply_threshold_policy, delong_auc_ci, delong_test, holm, mcnemar_exact

__all__ = [
    "DEFAULT_ABLATION_METHODS",
    "POLICIES",
    "POLICY_LABELS",
    "MethodInfo",
    "choose_threshold",
    "cv_summary",
    "default_baseline",
    "final_stage",
    "format_table",
    "iteration_curve",
    "method_scores",
    "paper_method_ids",
    "patients_of_split",
    "table2",
    "table3",
    "table4",
]

#: Paper Table 2 rows that this package does not implement, with the reason.
_NOT_IMPLEMENTED: Final = {
    "resnet50_3d": "3D CNN: pdstudy trains 2D slice CNNs only",
    "efficientnet_b7+transformer": "CNN + Transformer hybrid: its architecture is not specified in the paper",
}

#: The two threshold policies every table reports.
POLICIES: Final = ("youden_test", "youden_val")
POLICY_LABELS: Final = {"youden_test": "Youden on test, optimistic", "youden_val": "Youden on val"}
_METRICS: Final = ("acc", "sen", "spe")
_METRIC_NAMES: Final = {"acc": "ACC", "sen": "SEN", "spe": "SPE"}

_POLICY_NOTE: Final = (
    "Threshold policies: 'Youden on test, optimistic' (youden_test) picks the Youden threshold on the test "
    "patients and scores it on the same patients, as the paper did; tuning on the evaluated patients "
    "inflates ACC/SEN/SPE. 'Youden on val' (youden_val) picks it on the validation patients (carved "
    "from the training patients) and applies it unchanged to the test patients: the honest estimate."
)
_CI_NOTE: Final = "95% intervals: DeLong (logit scale) for AUC; Wilson for ACC, SEN and SPE."
_CLASS_NOTE: Final = (
    "Positive class = poor response: SEN = poor responders called poor, SPE = good responders called good. "
    + PAPER_LABEL_FOOTNOTE
)
_SEED_NOTE: Final = (
    "With several seeds, AUC, intervals, ACC/SEN/SPE and p-values are those of the seed-averaged score "
    "(each patient's mean score over the seeds); 'seeds' gives the mean +/- SD of the per-seed values."
)


# --------------------------------------------------------------------------------------------- methods


#: Kept for callers of the earlier name.
MethodInfo = Method


def default_baseline(method: MethodInfo) -> str | None:
    """Comparator of a method: the baseline CNN of the chain's final architecture (None for baselines)."""
    return None if method.kind == "baseline" else f"baseline:{method.chain[-1]}"


def paper_method_ids() -> pd.DataFrame:
    """The paper's Table 2 rows mapped to method IDs.

    Returns
    -------
    pandas.DataFrame
        ``paper_method`` (as printed), ``method_id`` ("" for rows this package does not implement),
        ``reason`` (why not, else ""), ``paper_train_auc``, ``paper_test_auc`` (floats, as printed).
    """
    from pdstudy.core.paper import load_paper

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
            mid, reason = MethodInfo(kind, tuple(archs)).id, ""
        rows.append({"paper_method": r["method"], "method_id": mid, "reason": reason,
                     "paper_train_auc": float(r["train_auc"]), "paper_test_auc": float(r["test_auc"])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- predictions


def _final_stage_of(df: pd.DataFrame) -> pd.Series:
    """Final-stage index of each row's method."""
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
    final = _final_stage_of(df)
    for mid in df["method"].unique():
        if not (final[df["method"] == mid] == df.loc[df["method"] == mid, "stage"]).any():
            present = sorted(df.loc[df["method"] == mid, "stage"].unique())
            raise ValueError(f"method {mid!r} has no predictions for its final stage "
                             f"{method_from_id(mid).final_stage} (stages present: {present}); did its chain finish?")
    return df[df["stage"] == final].reset_index(drop=True)


def _fixed(df: pd.DataFrame, what: str) -> pd.DataFrame:
    out = df[df["fold"] == -1]
    if out.empty:
        raise ValueError(f"{what} needs fixed-split predictions (fold == -1), but all rows are cross-validation "
                         "folds; use cv_summary for those")
    return out


def _ensemble(rows: pd.DataFrame) -> pd.DataFrame:
    """Seed-averaged score per (patient, split), over patients in that split in every seed."""
    n_seeds = rows["seed"].nunique()
    agg = (rows.groupby(["patient_id", "split"], sort=False)
           .agg(response=("response", "first"), recist=("recist", "first"), y=("y", "first"),
                score=("score", "mean"), n_seeds=("seed", "nunique")).reset_index())
    return agg[agg["n_seeds"] == n_seeds].reset_index(drop=True)


def _select(df: pd.DataFrame, method_id: str, stage: int | None, what: str) -> pd.DataFrame:
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
    df = _fixed(validate_predictions(preds), "method_scores")
    return _ensemble(_select(df, method_id, stage, "method_scores"))


def patients_of_split(preds: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Fixed-split patients of one split: ``patient_id, response, recist`` (one row each, sorted by ID).

    Use the test patients as the ``patients`` of :func:`pdstudy.evaluate.readers.simulate_readers`.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    df = _fixed(validate_predictions(preds), "patients_of_split")
    rows = df[df["split"] == split].drop_duplicates("patient_id")
    return rows[["patient_id", "response", "recist"]].sort_values("patient_id").reset_index(drop=True)


def has_both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < int(y.sum()) < len(y)


def choose_threshold(scores: pd.DataFrame, policy: str) -> float:
    """Threshold of a policy on seed-averaged scores (:func:`method_scores`); NaN if not available.

    ``youden_test`` uses the test rows, ``youden_val`` only the val rows (NaN when there are no val
    patients of both classes).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {POLICIES}")
    test = scores[scores["split"] == "test"]
    val = scores[scores["split"] == "val"]
    if policy == "youden_val" and not has_both_classes(val["y"].to_numpy()):
        return float("nan")
    return float(apply_threshold_policy(policy, test["y"].to_numpy(), test["score"].to_numpy(),
                                        val["y"].to_numpy(), val["score"].to_numpy())["threshold"])


def _evaluate(scores: pd.DataFrame, what: str) -> dict[str, Any]:
    """AUCs with CIs and both policies' ACC/SEN/SPE of one set of patient scores."""
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
            rates = {f"{m}{s}": float("nan") for m in _METRICS for s in ("", "_lo", "_hi")}
        else:
            pred = test["score"].to_numpy() >= thr
            y = test["y"].to_numpy() == 1
            counts = {"tp": int((pred & y).sum()), "fp": int((pred & ~y).sum()),
                      "tn": int((~pred & ~y).sum()), "fn": int((~pred & y).sum())}
            rates = rate_metrics(**counts)
        out.update({f"{policy}_{k}": v for k, v in counts.items()})
        out.update({f"{policy}_{k}": v for k, v in rates.items()})
    return out


_SPREAD_KEYS: Final = ("test_auc", *(f"{p}_{m}" for p in POLICIES for m in _METRICS))


def _evaluate_with_seeds(rows: pd.DataFrame, what: str) -> dict[str, Any]:
    """:func:`_evaluate` of the seed-averaged score, plus per-seed mean and SD of the main metrics."""
    seeds = sorted(rows["seed"].unique())
    ens = _ensemble(rows)
    out = {"n_seeds": len(seeds), **_evaluate(ens, what)}
    per_seed = [_evaluate(_ensemble(rows[rows["seed"] == s]), f"{what}, seed {s}") for s in seeds]
    for key in _SPREAD_KEYS:
        vals = np.array([p[key] for p in per_seed], dtype=float)
        ok = vals[~np.isnan(vals)]
        out[f"{key}_seed_mean"] = float(ok.mean()) if len(ok) else float("nan")
        out[f"{key}_seed_sd"] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
    return out


def _val_note(rows: list[dict[str, Any]], key: str = "method") -> list[str]:
    missing = [r[key] for r in rows if r.get("status", "run") == "run" and math.isnan(r.get("youden_val_acc", 0.0))]
    if not missing:
        return []
    return [f"'Youden on val' is not available (no validation patients of both classes) for: "
            f"{', '.join(map(str, missing))}; shown as n/a."]


def _quick_note() -> str:
    pairs = ", ".join(f"{display_arch(k)} -> {v}" for k, v in QUICK_STAND_INS.items())
    return ("Quick profile: the paper's EfficientNets are replaced by tiny timm stand-ins (" + pairs + ") on "
            "small images; the numbers check the pipeline and do not reproduce the paper.")


# --------------------------------------------------------------------------------------------- Table 2


def table2(
    preds: pd.DataFrame,
    *,
    baseline_for: Callable[[MethodInfo], str | None] | Mapping[str, str | None] | None = None,
    quick: bool = False,
    include_paper: bool = True,
) -> pd.DataFrame:
    """Table 2: discrimination and operating points of every method's final model on the fixed split.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows; only fixed-split rows (``fold == -1``) of final stages are used.
    baseline_for : callable or mapping, optional
        Comparator of each method for the paired DeLong test: a function of :class:`MethodInfo`
        returning a method ID (or None), or a mapping from method ID to comparator ID (methods not in
        it fall back to the default). Default :func:`default_baseline`: the baseline CNN of the
        chain's final architecture; none for baselines.
    quick : bool, default False
        Add the note that quick-profile stand-ins replaced the paper's EfficientNets.
    include_paper : bool, default True
        Add the paper's Table 2 rows that were not run (as ``status == "not run"`` with a reason) and
        the paper's printed test AUC (``paper_test_auc``), and order rows as the paper does (methods
        not in the paper follow, baselines first).

    Returns
    -------
    pandas.DataFrame
        One row per method. Columns: ``method_id, method`` (label), ``kind, chain, status``
        (``run``/``not run``), ``reason, n_seeds, n_train, n_val, n_test``;
        ``train_auc, train_auc_lo, train_auc_hi, test_auc, test_auc_lo, test_auc_hi``; for each policy
        ``P`` in :data:`POLICIES`: ``P_threshold, P_tp, P_fp, P_tn, P_fn`` and ``P_acc, P_acc_lo, P_acc_hi``
        (same for ``sen``, ``spe``); ``*_seed_mean`` / ``*_seed_sd`` of ``test_auc`` and the policy
        metrics; ``compared_with`` (comparator ID), ``p_delong`` (two-sided paired DeLong on the test
        patients), ``p_delong_holm`` (Holm over all p-values of the table); ``paper_test_auc``.
        ``attrs["notes"]`` holds the footer notes, ``attrs["table"] == "table2"``.

    Raises
    ------
    ValueError
        On invalid predictions or no fixed-split predictions.
    """
    df = _fixed(final_stage(preds), "table2")
    results: dict[str, dict[str, Any]] = {}
    ens: dict[str, pd.DataFrame] = {}
    for mid in df["method"].unique():
        m = method_from_id(mid)
        rows = df[df["method"] == mid]
        results[mid] = {"method_id": mid, "method": m.label, "kind": m.kind, "chain": ">".join(m.chain),
                        "status": "run", "reason": "", **_evaluate_with_seeds(rows, f"table2, method {mid!r}")}
        ens[mid] = _ensemble(rows)

    notes = [_POLICY_NOTE, _CI_NOTE]
    missing_comparators = []
    for mid, r in results.items():
        m = method_from_id(mid)
        if isinstance(baseline_for, Mapping) and mid in baseline_for:
            comp = baseline_for[mid]
        elif callable(baseline_for):
            comp = baseline_for(m)
        else:
            comp = default_baseline(m)
        r["compared_with"] = comp or ""
        r["p_delong"] = float("nan")
        if not comp:
            continue
        if comp not in ens:
            missing_comparators.append(f"{m.label} (needs {comp})")
            continue
        a = ens[mid][ens[mid]["split"] == "test"].set_index("patient_id")
        b = ens[comp][ens[comp]["split"] == "test"].set_index("patient_id")
        common = a.index.intersection(b.index)
        _, p = delong_test(a.loc[common, "y"].to_numpy(), a.loc[common, "score"].to_numpy(),
                           b.loc[common, "score"].to_numpy())
        r["p_delong"] = p
    ordered = list(results)
    adj = holm(np.array([results[k]["p_delong"] for k in ordered], dtype=float)) if ordered else np.array([])
    for k, p in zip(ordered, adj):
        results[k]["p_delong_holm"] = float(p)
    k_tests = int(np.sum(~np.isnan([results[k]["p_delong"] for k in ordered])))
    notes.append(
        "p (DeLong): two-sided paired DeLong test of the test-set AUC against the comparator (default: the "
        "baseline CNN of the chain's final architecture) on the same test patients; p (Holm): Holm-adjusted "
        f"over the {k_tests} comparison(s) in this table. Baselines have no comparator (n/a).")
    if missing_comparators:
        notes.append("No DeLong test (comparator not run): " + "; ".join(missing_comparators) + ".")

    out_rows: list[dict[str, Any]] = []
    if include_paper:
        paper = paper_method_ids()
        seen = set()
        for _, pr in paper.iterrows():
            mid = pr["method_id"]
            if mid and mid in results:
                out_rows.append({**results[mid], "paper_test_auc": pr["paper_test_auc"]})
                seen.add(mid)
            elif not mid or mid not in seen:
                label = method_from_id(mid).label if mid else pr["paper_method"]
                reason = pr["reason"] or "not trained in this run (the profile's method list leaves it out)"
                out_rows.append({"method_id": mid or "", "method": label,
                                 "kind": method_from_id(mid).kind if mid else "",
                                 "chain": ">".join(method_from_id(mid).chain) if mid else "",
                                 "status": "not run", "reason": reason, "paper_test_auc": pr["paper_test_auc"]})
                if mid:
                    seen.add(mid)
        extra = sorted((k for k in results if k not in seen),
                       key=lambda k: (METHOD_KINDS.index(results[k]["kind"]), k))
        out_rows.extend({**results[k], "paper_test_auc": float("nan")} for k in extra)
        notes.append("Paper test AUC: as printed in the paper's Table 2 (not recomputed). Rows marked 'not run' "
                     "are the paper's methods this run did not train, with the reason.")
    else:
        out_rows = list(results.values())
    if any(r.get("n_seeds", 1) > 1 for r in results.values()):
        notes.append(_SEED_NOTE)
    notes.extend(_val_note(out_rows))
    notes.append(_CLASS_NOTE)
    if quick:
        notes.append(_quick_note())
    table = pd.DataFrame(out_rows)
    if "n_seeds" in table:
        table["n_seeds"] = table["n_seeds"].astype("Int64")
    table.attrs.update(table="table2", notes=notes)
    return table


# --------------------------------------------------------------------------------------------- Table 3


def table3(
    preds: pd.DataFrame,
    readers: pd.DataFrame,
    *,
    method_id: str,
    policy: str = "youden_val",
) -> pd.DataFrame:
    """Table 3: clinician readers against a model on the fixed-split test patients.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows.
    readers : pandas.DataFrame
        Readers frame (:func:`pdstudy.evaluate.read_readers` or :func:`pdstudy.evaluate.simulate_readers`)
        with one call per reader and test patient.
    method_id : str
        The model (its final stage, seed-averaged score).
    policy : {"youden_val", "youden_test"}, default "youden_val"
        Threshold policy of the model row that the McNemar tests use. The table always also lists the
        model under the other policy.

    Returns
    -------
    pandas.DataFrame
        Rows: each reader, ``Average (readers)`` (unweighted mean of the readers' rates, as the paper;
        no interval), then the model under ``policy`` and under the other policy. Columns: ``row, kind``
        (``reader``/``average``/``model``), ``reader_id, years_experience, simulated, policy, threshold,
        n, tp, fp, tn, fn, acc, acc_lo, acc_hi, sen, sen_lo, sen_hi, spe, spe_lo, spe_hi``; on reader rows
        the exact McNemar test of the model (``policy``) against the reader: ``mcnemar_b`` (model right,
        reader wrong), ``mcnemar_c`` (model wrong, reader right), ``mcnemar_p`` and ``mcnemar_p_holm``
        (Holm over the readers). ``attrs["notes"]``, ``attrs["table"] == "table3"``.

    Raises
    ------
    ValueError
        On invalid inputs, a reader who does not call exactly the test patients, or an unknown policy.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown threshold policy {policy!r}; expected one of {POLICIES}")
    scores = method_scores(preds, method_id)
    test = scores[scores["split"] == "test"].sort_values("patient_id").reset_index(drop=True)
    label = method_from_id(method_id).label
    rm = reader_metrics(readers, test[["patient_id", "response"]])
    calls = readers.assign(patient_id=readers["patient_id"].astype(str), reader_id=readers["reader_id"].astype(str))
    rows: list[dict[str, Any]] = []
    for _, r in rm.iterrows():
        name = str(r["reader_id"])
        if r["simulated"] and "simulated" not in name.lower():
            name += " (simulated)"
        rows.append({"row": name, "kind": "reader", **r.to_dict()})
    avg = {"row": "Average (readers)", "kind": "average", "n": int(rm["n"].iloc[0]) if len(rm) else 0,
           "simulated": bool(rm["simulated"].any())}
    for m in _METRICS:
        avg[m] = float(rm[m].mean())
    rows.append(avg)
    y = test["y"].to_numpy()
    model_pred: dict[str, np.ndarray | None] = {}
    for pol in (policy, *(p for p in POLICIES if p != policy)):
        thr = choose_threshold(scores, pol)
        row: dict[str, Any] = {"row": f"{label} ({POLICY_LABELS[pol]})", "kind": "model", "policy": pol,
                               "threshold": thr, "n": len(test), "simulated": False}
        if math.isnan(thr):
            model_pred[pol] = None
            row.update({k: float("nan") for k in ("tp", "fp", "tn", "fn")})
            row.update({f"{m}{s}": float("nan") for m in _METRICS for s in ("", "_lo", "_hi")})
        else:
            pred = (test["score"].to_numpy() >= thr).astype(int)
            model_pred[pol] = pred
            counts = {"tp": int(((pred == 1) & (y == 1)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
                      "tn": int(((pred == 0) & (y == 0)).sum()), "fn": int(((pred == 0) & (y == 1)).sum())}
            row.update(counts)
            row.update(rate_metrics(**counts))
        rows.append(row)
    reader_rows = [r for r in rows if r["kind"] == "reader"]
    pred = model_pred[policy]
    for r in reader_rows:
        if pred is None:
            r.update(mcnemar_b=float("nan"), mcnemar_c=float("nan"), mcnemar_p=float("nan"))
            continue
        rc = calls[calls["reader_id"] == r["reader_id"]].set_index("patient_id").loc[test["patient_id"], "call"]
        res = mcnemar_exact(pred, (rc.to_numpy() == "poor").astype(int), y)
        r.update(mcnemar_b=res["b"], mcnemar_c=res["c"], mcnemar_p=res["p_value"])
    adj = holm(np.array([r["mcnemar_p"] for r in reader_rows], dtype=float)) if reader_rows else []
    for r, p in zip(reader_rows, adj):
        r["mcnemar_p_holm"] = float(p)
    columns = ["row", "kind", "reader_id", "years_experience", "simulated", "policy", "threshold", "n",
               "tp", "fp", "tn", "fn", *(f"{m}{s}" for m in _METRICS for s in ("", "_lo", "_hi")),
               "mcnemar_b", "mcnemar_c", "mcnemar_p", "mcnemar_p_holm"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    notes = [
        f"Test patients: {len(test)} ({int(y.sum())} poor, {int(len(y) - y.sum())} good). Model: {label}, final "
        f"stage, {scores['n_seeds'].iloc[0]} seed(s)"
        + (" (seed-averaged score)." if scores["n_seeds"].iloc[0] > 1 else "."),
        _POLICY_NOTE,
        f"McNemar: exact two-sided test of the model ('{POLICY_LABELS[policy]}') against each reader on the "
        "same test patients; b = model right and reader wrong, c = model wrong and reader right; "
        "p (Holm) adjusts over the readers.",
        "Average (readers): unweighted mean of the readers' rates, as in the paper (no interval). "
        "95% intervals: Wilson.",
    ]
    if table["simulated"].fillna(False).astype(bool).any():
        notes.append("Readers marked '(simulated)' are NOT real clinicians: their calls are simulated to hit the "
                     "operating points the paper reports for its clinicians (C20's specificity taken as 11/14 = "
                     "78.57% because the printed 75.57% is impossible); which patients they get right is random, "
                     "so the McNemar p-values only illustrate the analysis.")
    if pred is None:
        notes.append(f"'{POLICY_LABELS[policy]}' is not available (no validation patients of both classes): no "
                     "McNemar tests; pass policy='youden_test' to compare the optimistic operating point.")
    notes.append(_CLASS_NOTE)
    table.attrs.update(table="table3", notes=notes)
    return table


# --------------------------------------------------------------------------------------------- Table 4


def _ablation_defaults() -> dict[tuple[str, int, int, int], str]:
    out = {}
    for arch in ("efficientnet_b7", "efficientnet_b3"):
        out[(arch, 0, 0, 0)] = f"baseline:{arch}"
        out[(arch, 1, 0, 0)] = f"kd:{arch}>{arch}"
        out[(arch, 1, 1, 0)] = f"pd:{arch}>{arch}"
        out[(arch, 1, 1, 1)] = f"pd:{arch}>{arch}>{arch}"
    return out


#: The paper's ablation grid (Table 4): (model, KD, model noise, multiple iterations) -> method ID.
DEFAULT_ABLATION_METHODS: Final = _ablation_defaults()


def table4(
    preds: pd.DataFrame,
    ablation_methods: Mapping[tuple[str, int, int, int], str] | None = None,
    *,
    quick: bool = False,
    include_paper: bool = True,
) -> pd.DataFrame:
    """Table 4: the ablation grid (knowledge distillation, model noise, multiple iterations).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split, final stages used).
    ablation_methods : mapping, optional
        ``(model, kd, mn, mi) -> method ID``; default :data:`DEFAULT_ABLATION_METHODS` (B7 and B3).
    quick : bool, default False
        Add the quick-profile stand-in note.
    include_paper : bool, default True
        Add the paper's printed AUC (``paper_auc``) for the matching grid cell.

    Returns
    -------
    pandas.DataFrame
        One row per grid cell, in the mapping's order: ``model`` (architecture), ``kd, mn, mi`` (0/1),
        ``method_id, method, status, reason, n_seeds``, ``test_auc`` with ``_lo``/``_hi``, the policy
        metrics as in :func:`table2` (``youden_test_acc`` ... ``youden_val_spe_hi``), the seed spread
        columns, and ``paper_auc``. ``attrs["notes"]``, ``attrs["table"] == "table4"``.
    """
    grid = dict(DEFAULT_ABLATION_METHODS if ablation_methods is None else ablation_methods)
    df = _fixed(final_stage(preds), "table4")
    paper = None
    if include_paper:
        from pdstudy.core.paper import load_paper

        paper = load_paper().table4
    rows = []
    for key, mid in grid.items():
        if len(key) != 4:
            raise ValueError(f"ablation_methods keys must be (model, kd, mn, mi); got {key!r}")
        model, kd, mn, mi = key
        for flag_name, flag in (("kd", kd), ("mn", mn), ("mi", mi)):
            if flag not in (0, 1):
                raise ValueError(f"ablation cell {key!r}: flag {flag_name} must be 0 or 1, got {flag!r}")
        m = method_from_id(mid)
        row: dict[str, Any] = {"model": model, "kd": int(kd), "mn": int(mn), "mi": int(mi), "method_id": mid,
                               "method": m.label}
        sub = df[df["method"] == mid]
        if sub.empty:
            row.update(status="not run", reason="not trained in this run")
        else:
            row.update(status="run", reason="", **_evaluate_with_seeds(sub, f"table4, method {mid!r}"))
        if paper is not None:
            hit = paper[(paper["model"] == model) & (paper["kd"] == str(kd)) & (paper["mn"] == str(mn))
                        & (paper["mi"] == str(mi))]
            row["paper_auc"] = float(hit["auc"].iloc[0]) if len(hit) else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    notes = [
        "KD = knowledge distillation (a student of the same architecture); MN = model noise in the student "
        "(dropout + stochastic depth); MI = multiple iterations (the student becomes the next teacher).",
        _POLICY_NOTE, _CI_NOTE,
    ]
    if include_paper:
        notes.append("Paper AUC: as printed in the paper's Table 4 (not recomputed).")
    if "n_seeds" in table and (table["n_seeds"].fillna(1) > 1).any():
        notes.append(_SEED_NOTE)
    notes.extend(_val_note(rows))
    notes.append(_CLASS_NOTE)
    if quick:
        notes.append(_quick_note())
    table.attrs.update(table="table4", notes=notes)
    return table


# --------------------------------------------------------------------------------------------- Fig. 6, CV


def iteration_curve(preds: pd.DataFrame, method_id: str) -> pd.DataFrame:
    """Per-stage test performance of one chain (Fig. 6: stage 0 = teacher, stage i = iteration i).

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (fixed split).
    method_id : str
        Method whose stages are evaluated, e.g. ``"pd:efficientnet_b7>efficientnet_b7>efficientnet_b7"``.

    Returns
    -------
    pandas.DataFrame
        One row per stage present: ``method_id, method, stage, iteration, arch, n_seeds``, ``test_auc``
        with ``_lo``/``_hi``, the policy metrics and seed spread columns of :func:`table2`.
        ``attrs["table"] == "iteration_curve"``.
    """
    df = _fixed(validate_predictions(preds), "iteration_curve")
    m = method_from_id(method_id)
    sub = df[df["method"] == method_id]
    if sub.empty:
        raise ValueError(f"iteration_curve: method {method_id!r} has no fixed-split predictions; methods present: "
                         f"{sorted(df['method'].unique())}")
    rows = []
    for stage in sorted(sub["stage"].unique()):
        res = _evaluate_with_seeds(sub[sub["stage"] == stage], f"iteration_curve, {method_id!r} stage {stage}")
        rows.append({"method_id": method_id, "method": m.label, "stage": int(stage), "iteration": int(stage),
                     "arch": m.chain[stage], **res})
    table = pd.DataFrame(rows)
    table.attrs.update(table="iteration_curve", notes=[
        f"{m.label}: stage 0 is the teacher (trained alone), stage i the student of iteration i.",
        _POLICY_NOTE, _CI_NOTE, _CLASS_NOTE])
    return table


def cv_summary(preds: pd.DataFrame, *, per_repeat: bool = False) -> pd.DataFrame:
    """Cross-validation summary: out-of-fold test AUC per repeat, then mean and SD over repeats.

    Within a repeat each patient is a test patient in exactly one fold; the folds' test predictions
    (final stage) are pooled into one out-of-fold score per patient and one AUC per repeat. With
    validation patients in every fold, each fold's ``youden_val`` threshold is applied to its own
    test patients and the pooled ACC/SEN/SPE are reported too.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows; only ``fold >= 0`` rows are used.
    per_repeat : bool, default False
        Return one row per (method, seed, repeat) instead of the per-method summary.

    Returns
    -------
    pandas.DataFrame
        Summary: ``method_id, method, n_repeats`` (distinct (seed, repeat) pairs), ``n_folds, n_patients,
        auc_mean, auc_sd`` (ddof 1), ``auc_min, auc_max``, ``youden_val_acc_mean``/``_sd`` (same for
        ``sen``, ``spe``). Per repeat: ``method_id, method, seed, repeat, n_folds, n_patients, auc,
        auc_lo, auc_hi`` (DeLong on the pooled scores), ``youden_val_acc`` / ``_sen`` / ``_spe``.
        ``attrs["notes"]`` says that folds and repeats share patients, so the SD is not a standard error.

    Raises
    ------
    ValueError
        Without cross-validation rows, or when a patient is a test patient in two folds of one repeat.
    """
    df = validate_predictions(preds)
    cv = df[df["fold"] >= 0]
    if cv.empty:
        raise ValueError("cv_summary needs cross-validation predictions (fold >= 0); all rows are the fixed split")
    final = _final_stage_of(cv)
    cv = cv[cv["stage"] == final]
    per: list[dict[str, Any]] = []
    for (mid, seed, rep), rows in cv.groupby(["method", "seed", "repeat"], sort=True):
        test = rows[rows["split"] == "test"]
        dup = test["patient_id"].duplicated()
        if dup.any():
            raise ValueError(f"cv_summary: method {mid!r}, seed {seed}, repeat {rep}: patient "
                             f"{test['patient_id'][dup].iloc[0]!r} is a test patient in more than one fold")
        y = test["y"].to_numpy()
        rec: dict[str, Any] = {"method_id": mid, "method": method_from_id(mid).label, "seed": int(seed),
                               "repeat": int(rep), "n_folds": int(rows["fold"].nunique()), "n_patients": len(test)}
        if has_both_classes(y):
            rec["auc"], rec["auc_lo"], rec["auc_hi"] = delong_auc_ci(y, test["score"].to_numpy())
        else:
            rec["auc"] = rec["auc_lo"] = rec["auc_hi"] = float("nan")
        counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
        ok = True
        for _, fold_rows in rows.groupby("fold"):
            val = fold_rows[fold_rows["split"] == "val"]
            ft = fold_rows[fold_rows["split"] == "test"]
            if not has_both_classes(val["y"].to_numpy()) or ft.empty:
                ok = False
                break
            r = apply_threshold_policy("youden_val", ft["y"].to_numpy(), ft["score"].to_numpy(),
                                       val["y"].to_numpy(), val["score"].to_numpy())
            for k in counts:
                counts[k] += r[k]
        rates = rate_metrics(**counts) if ok else {m: float("nan") for m in _METRICS}
        for m in _METRICS:
            rec[f"youden_val_{m}"] = rates[m]
        per.append(rec)
    per_df = pd.DataFrame(per)
    notes = ["Cross-validation: each repeat pools its folds' out-of-fold test predictions (final stage) into one "
             "AUC; mean and SD are over repeats (and seeds). Folds and repeats reuse the same patients, so the "
             "repeats are not independent and the SD is not a standard error of the mean.",
             "youden_val: each fold's threshold is chosen on that fold's validation patients and applied to its "
             "test patients; the confusion counts are pooled over the folds."]
    if per_repeat:
        per_df.attrs.update(table="cv_per_repeat", notes=notes)
        return per_df
    summ = []
    for mid, g in per_df.groupby("method_id", sort=False):
        rec = {"method_id": mid, "method": method_from_id(mid).label, "n_repeats": len(g),
               "n_folds": int(g["n_folds"].max()), "n_patients": int(g["n_patients"].max()),
               "auc_mean": float(g["auc"].mean()), "auc_sd": float(g["auc"].std(ddof=1)) if len(g) > 1 else math.nan,
               "auc_min": float(g["auc"].min()), "auc_max": float(g["auc"].max())}
        for m in _METRICS:
            v = g[f"youden_val_{m}"]
            rec[f"youden_val_{m}_mean"] = float(v.mean())
            rec[f"youden_val_{m}_sd"] = float(v.std(ddof=1)) if len(g) > 1 else math.nan
        summ.append(rec)
    out = pd.DataFrame(summ)
    out.attrs.update(table="cv_summary", notes=notes)
    return out


# --------------------------------------------------------------------------------------------- display, writing


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _fmt_auc(r: Mapping[str, Any], key: str) -> str:
    auc, lo, hi = _num(r.get(key)), _num(r.get(f"{key}_lo")), _num(r.get(f"{key}_hi"))
    if math.isnan(auc):
        return "n/a"
    ci = "" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]"
    return f"{auc:.2f}{ci}"


def _fmt_pct(r: Mapping[str, Any], key: str, *, spread: bool) -> str:
    v, lo, hi = _num(r.get(key)), _num(r.get(f"{key}_lo")), _num(r.get(f"{key}_hi"))
    if math.isnan(v):
        return "n/a"
    text = f"{100 * v:.1f}" + ("" if math.isnan(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]")
    sd = _num(r.get(f"{key}_seed_sd"))
    if spread and not math.isnan(sd):
        text += f"; seeds {100 * _num(r.get(f'{key}_seed_mean')):.1f} ± {100 * sd:.1f}"
    return text


def _fmt_p(v: Any) -> str:
    v = _num(v)
    if math.isnan(v):
        return "n/a"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _metric_cells(r: Mapping[str, Any], spread: bool) -> dict[str, str]:
    out = {}
    for pol in POLICIES:
        for m in _METRICS:
            out[f"{_METRIC_NAMES[m]} % ({POLICY_LABELS[pol]})"] = _fmt_pct(r, f"{pol}_{m}", spread=spread)
    return out


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display version of a table from this module (percentages, intervals and p-values as text).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`table2`, :func:`table3`, :func:`table4`, :func:`iteration_curve` or
        :func:`cv_summary` (recognised by ``attrs["table"]``).

    Returns
    -------
    pandas.DataFrame
        String cells: ``0.84 [0.68, 0.95]`` for AUCs, ``85.7 [68.5, 94.3]`` for percentages, ``n/a``
        when undefined, ``not run`` for methods that were not run. ``attrs`` are kept.
    """
    kind = table.attrs.get("table")
    rows = table.to_dict("records")
    out: list[dict[str, str]] = []
    if kind in ("table2", "table4", "iteration_curve"):
        for r in rows:
            spread = _num(r.get("n_seeds")) > 1
            d: dict[str, str] = {}
            if kind == "table4":
                d.update({"Model": display_arch(r["model"]), "KD": str(r["kd"]), "MN": str(r["mn"]),
                          "MI": str(r["mi"])})
            elif kind == "iteration_curve":
                d.update({"Stage": str(r["stage"]), "Role": "teacher" if r["stage"] == 0 else f"iteration {r['stage']}",
                          "Architecture": display_arch(r["arch"])})
            else:
                d["Method"] = r["method"]
            if r.get("status", "run") != "run":
                d["Seeds"] = "-"
                cells = {"Train AUC [95% CI]": "not run"} if kind == "table2" else {}
                cells["Test AUC [95% CI]"] = "not run"
                cells.update({k: "not run" for k in _metric_cells({}, False)})
            else:
                d["Seeds"] = str(int(r["n_seeds"]))
                cells = {"Train AUC [95% CI]": _fmt_auc(r, "train_auc")} if kind == "table2" else {}
                cells["Test AUC [95% CI]"] = _fmt_auc(r, "test_auc")
                if spread:
                    cells["Test AUC [95% CI]"] += (f"; seeds {_num(r['test_auc_seed_mean']):.2f} ± "
                                                   f"{_num(r['test_auc_seed_sd']):.2f}")
                cells.update(_metric_cells(r, spread))
            d.update(cells)
            if kind == "table2":
                d["Compared with"] = (method_from_id(r["compared_with"]).label
                                      if isinstance(r.get("compared_with"), str) and r["compared_with"] else "n/a")
                d["p (DeLong)"] = _fmt_p(r.get("p_delong"))
                d["p (Holm)"] = _fmt_p(r.get("p_delong_holm"))
            if "paper_test_auc" in r or "paper_auc" in r:
                pv = _num(r.get("paper_test_auc", r.get("paper_auc")))
                d["Paper test AUC"] = "n/a" if math.isnan(pv) else f"{pv:.2f}"
            if kind in ("table2", "table4"):
                d["Note"] = r.get("reason") or ""
            out.append(d)
    elif kind == "table3":
        for r in rows:
            d = {"Reader / model": r["row"],
                 "Experience (years)": "" if pd.isna(r.get("years_experience")) else str(int(r["years_experience"]))}
            for m in _METRICS:
                d[f"{_METRIC_NAMES[m]} %"] = _fmt_pct(r, m, spread=False)
            d["McNemar b / c"] = ("" if pd.isna(r.get("mcnemar_b"))
                                  else f"{int(r['mcnemar_b'])} / {int(r['mcnemar_c'])}")
            d["p (McNemar)"] = "" if r["kind"] != "reader" else _fmt_p(r.get("mcnemar_p"))
            d["p (Holm)"] = "" if r["kind"] != "reader" else _fmt_p(r.get("mcnemar_p_holm"))
            out.append(d)
    elif kind in ("cv_summary", "cv_per_repeat"):
        return table.copy()
    else:
        raise ValueError(f"format_table: unknown table kind {kind!r} in attrs['table']; expected a table from "
                         "pdstudy.evaluate.tables")
    disp = pd.DataFrame(out)
    disp.attrs.update(table.attrs)
    return disp

