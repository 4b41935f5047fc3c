"""External validation: a model trained at some sites, tested on its internal test patients and at a held-out site.

* :func:`external_validation`: per method and fold (one fold per held-out set of sites), the Platt recalibration
  map and the Youden threshold fitted on the fold's validation patients only, then two test sets scored
  unchanged: ``internal`` (the training sites' test patients) and ``external`` (every patient of the held-out
  sites). Discrimination (AUC and its drop), both threshold policies, calibration-in-the-large and slope, Brier
  and decision curves; :class:`ExternalValidation` holds the table, the per-patient curves and the notes.
* :func:`slices_by_site`: slices kept and mean score per site (slice thickness changes the top-k score).
* :func:`site_table1`: Table 1 with the site as the group.

Pure functions on DataFrames; no torch, no matplotlib. What the numbers mean: ``docs/statistics.md``
("External validation").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy.special import logit

from pdstudy.core.methods import method_from_id
from pdstudy.core.vocab import EXTERNAL_SPLIT, RESPONSES, SITE_COLUMN
from pdstudy.data.cohort import table1
from pdstudy.data.predictions import validate_predictions
from pdstudy.evaluate import MIN_CLASS_PATIENTS, SMALL_MARK, ci_note, has_both_classes
from pdstudy.evaluate.clinical_fusion import fold_scores
from pdstudy.evaluate.readers import rate_metrics
from pdstudy.stats import (
    brier_score,
    calibration_in_the_large,
    calibration_slope,
    check_auc_ci,
    delong_auc_ci,
    delong_auc_difference_unpaired,
    net_benefit,
    recalibrate,
    youden_threshold,
)

__all__ = [
    "DCA_THRESHOLDS",
    "EXTERNAL_POLICY_LABELS",
    "TEST_SETS",
    "ExternalValidation",
    "external_validation",
    "site_table1",
    "slices_by_site",
]

#: The two test sets of every fold: the training sites' test patients, and every patient of the held-out sites.
TEST_SETS: Final = ("internal", "external")
#: Threshold probabilities of the decision curves.
DCA_THRESHOLDS: Final = tuple(float(t) for t in np.round(np.arange(0.01, 0.805, 0.01), 2))
#: Display label of each threshold policy of the table (``youden_test``: the external patients' own threshold).
EXTERNAL_POLICY_LABELS: Final = {"youden_val": "Youden on val, transported",
                                 "youden_test": "Youden on external, optimistic"}

_SPLIT_OF: Final = {"internal": "test", "external": EXTERNAL_SPLIT}
_COUNTS: Final = ("tp", "fp", "tn", "fn")
_RATES: Final = tuple(f"{m}{s}" for m in ("acc", "sen", "spe") for s in ("", "_lo", "_hi"))


@dataclass(frozen=True)
class ExternalValidation:
    """Internal against external test patients, per method and fold (:func:`external_validation`).

    Attributes
    ----------
    methods : tuple of str
        Method IDs, in the table's order.
    held_out : dict of int to tuple of str
        Fold -> the site codes held out in it (the sites of the fold's ``external`` patients).
    table : pandas.DataFrame
        One row per method x fold x test set (``internal``, ``external``); columns in
        :func:`external_validation`. ``attrs["table"] == "external_validation"``, ``attrs["notes"]``.
    curves : pandas.DataFrame
        One row per test patient, method and fold: ``method, fold, test_set, patient_id, site, y, response,
        score`` (seed-averaged final-stage score), ``prob`` (the fold's recalibration map applied to it; NaN when
        the map could not be fitted), ``n_slices`` (the patient's cached slices, <NA> when the files lack it).
    decision : pandas.DataFrame
        Decision curves of ``prob`` on each test set at its own prevalence: ``method, fold, test_set, n,
        prevalence, threshold, net_benefit, treat_all, treat_none``.
    fits : pandas.DataFrame
        One row per method and fold, what was fitted and on whom: ``method, fold, held_out, n_train,
        n_train_poor, n_train_good`` (the CNN's training patients), ``n_val, n_val_poor, n_val_good``,
        ``platt_intercept, platt_slope`` (``logit P(poor) = a + b logit(score)``), ``threshold`` (Youden on the
        validation scores), ``n_seeds``, ``reason`` (why nothing was fitted, else "").
    notes : tuple of str
        What was fitted on which patients, the policies, the intervals, the held-out sites per fold.
    auc_ci : str
        Scale of the DeLong AUC intervals.
    level : float
        Confidence level of every interval.
    """

    methods: tuple[str, ...]
    held_out: dict[int, tuple[str, ...]]
    table: pd.DataFrame
    curves: pd.DataFrame
    decision: pd.DataFrame
    fits: pd.DataFrame
    notes: tuple[str, ...]
    auc_ci: str = "logit"
    level: float = 0.95

    @property
    def folds(self) -> tuple[int, ...]:
        """The folds, sorted."""
        return tuple(sorted(self.held_out))

    def describe(self) -> str:
        """A few lines: the held-out sites and patients of each fold, and each method's AUCs and calibration."""
        pct = f"{100 * self.level:g}%"
        lines = [f"External validation of {len(self.methods)} method(s) in {len(self.held_out)} fold(s); "
                 f"{pct} intervals; fitted on each fold's validation patients only."]
        t = self.table
        for fold in self.folds:
            f = self.fits[self.fits["fold"] == fold].iloc[0]
            rows = t[t["fold"] == fold]
            internal = rows[rows["test_set"] == "internal"].iloc[0]
            external = rows[rows["test_set"] == "external"].iloc[0]
            lines.append(
                f"Fold {fold}: held out site(s) {', '.join(self.held_out[fold])} "
                f"(external: {_n_text(external)}); training sites {internal['sites'] or 'n/a'} "
                f"(train {int(f['n_train'])} ({int(f['n_train_poor'])} poor), val {int(f['n_val'])} "
                f"({int(f['n_val_poor'])} poor), internal test: {_n_text(internal)}).")
            for mid in self.methods:
                r = rows[rows["method"] == mid].set_index("test_set")
                if r.empty:
                    continue
                ext = r.loc["external"]
                lines.append(
                    f"  {method_from_id(mid).label}: AUC internal {_est(r.loc['internal'], 'auc')} -> external "
                    f"{_est(ext, 'auc')}; drop {_est(ext, 'auc_drop', signed=True)}, p {_p(ext['auc_drop_p'])}; "
                    f"external calibration-in-the-large {_est(ext, 'cal_intercept', signed=True)}, slope "
                    f"{_est(ext, 'cal_slope')}.")
        return "\n".join(lines)


def _n_text(r: Mapping[str, Any]) -> str:
    return f"n = {int(r['n'])}, {int(r['n_poor'])} poor"


def _est(r: Mapping[str, Any], key: str, *, signed: bool = False) -> str:
    v, lo, hi = (float(r[k]) for k in (key, f"{key}_lo", f"{key}_hi"))
    if math.isnan(v):
        return "n/a"
    fmt = "+.2f" if signed else ".2f"
    return f"{v:{fmt}}" + ("" if math.isnan(lo) else f" [{lo:{fmt}}, {hi:{fmt}}]")


def _p(v: float) -> str:
    v = float(v)
    return "n/a" if math.isnan(v) else "< 0.001" if v < 0.001 else f"{v:.3f}"


# --------------------------------------------------------------------------------------------- inputs


def _site_map(sites: pd.Series | Mapping[str, str]) -> dict[str, str]:
    if isinstance(sites, pd.Series):
        dup = sites.index.duplicated(keep=False)
        if dup.any() and (sites[dup].astype(str).groupby(level=0).nunique() > 1).any():
            pid = sites.index[dup][0]
            raise ValueError(f"sites: patient {pid!r} is listed with several site codes")
        items = sites.items()
    elif isinstance(sites, Mapping):
        items = sites.items()
    else:
        raise TypeError(f"sites must map patient_id -> site code (a pandas Series or a mapping), got "
                        f"{type(sites).__name__}")
    return {str(k): "" if pd.isna(v) else str(v) for k, v in items}


def _check_inputs(preds: pd.DataFrame, methods: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    df = validate_predictions(preds)
    cv_like = df[df["fold"] < 0]
    if not cv_like.empty:
        raise ValueError("external_validation needs external-protocol predictions (fold = index of the held-out "
                         f"set, >= 0); {len(cv_like)} row(s) have fold -1 (fixed split), e.g. method "
                         f"{cv_like['method'].iloc[0]!r}")
    if df["repeat"].nunique() > 1:
        raise ValueError(f"external_validation expects one repeat; the rows hold repeats "
                         f"{sorted(df['repeat'].unique())}")
    if not (df["split"] == EXTERNAL_SPLIT).any():
        raise ValueError(f"external_validation: no row has split {EXTERNAL_SPLIT!r}; are these the predictions of "
                         "the external protocol (<run>/predictions/external/)?")
    present = list(dict.fromkeys(df["method"]))
    if methods is None:
        return df, present
    if isinstance(methods, str):
        methods = [methods]
    chosen = list(dict.fromkeys(str(m) for m in methods))
    if not chosen:
        raise ValueError("methods is empty; name at least one method ID, or None for every method")
    missing = [m for m in chosen if m not in present]
    if missing:
        raise ValueError(f"external_validation: method(s) {missing} have no predictions; methods present: {present}")
    return df, chosen


def _method_scores(df: pd.DataFrame, mid: str, site_of: dict[str, str]) -> pd.DataFrame:
    """Seed-averaged final-stage scores per fold and patient, with the patient's site and cached slices."""
    rows = df[df["method"] == mid]
    scores = fold_scores(rows, mid)
    final = rows[rows["stage"] == method_from_id(mid).final_stage]
    slices = final.groupby(["fold", "patient_id"])["n_slices"].first()
    scores = scores.join(slices, on=["fold", "patient_id"])
    scores["n_seeds"] = int(final["seed"].nunique())
    site = scores["patient_id"].map(site_of)
    lacking = site.isna() | site.eq("")
    if lacking.any():
        pid = scores.loc[lacking, "patient_id"].iloc[0]
        raise ValueError(f"sites: patient {pid!r} (method {mid!r}, fold {int(scores.loc[lacking, 'fold'].iloc[0])}) "
                         f"has no site code; {int(lacking.sum())} row(s) lack one")
    scores[SITE_COLUMN] = site
    return scores


def _held_out(fold_rows: pd.DataFrame, mid: str, fold: int) -> tuple[str, ...]:
    ext = fold_rows[fold_rows["split"] == EXTERNAL_SPLIT]
    if ext.empty:
        raise ValueError(f"method {mid!r}, fold {fold}: no patient has split {EXTERNAL_SPLIT!r}, so nothing was held "
                         "out")
    held = tuple(sorted(ext[SITE_COLUMN].unique()))
    trained = fold_rows[fold_rows["split"] != EXTERNAL_SPLIT]
    clash = trained[trained[SITE_COLUMN].isin(held)]
    if not clash.empty:
        r = clash.iloc[0]
        raise ValueError(f"method {mid!r}, fold {fold}: site {r[SITE_COLUMN]!r} is held out (external patients) but "
                         f"patient {r['patient_id']!r} of that site has split {r['split']!r}")
    return held


# --------------------------------------------------------------------------------------------- one fold


def _fit(val: pd.DataFrame) -> dict[str, Any]:
    """Platt map and Youden threshold on the validation patients (NaN, with the reason, without both classes)."""
    y, s = val["y"].to_numpy(), val["score"].to_numpy(dtype=float)
    out: dict[str, Any] = {"n_val": len(y), "n_val_poor": int(y.sum()), "n_val_good": len(y) - int(y.sum())}
    if not has_both_classes(y):
        out.update(platt_intercept=float("nan"), platt_slope=float("nan"), threshold=float("nan"),
                   reason=f"the validation patients ({len(y)}, {int(y.sum())} poor) lack a class: no recalibration "
                          "map, no transported threshold")
        return out
    # The map is expit(a + b logit(score)); reading it at scores 1/2 and expit(1) (logit 0 and 1) gives a and b.
    ref = recalibrate(s, y, np.array([0.5, 1.0 / (1.0 + math.exp(-1.0))]), "platt", scale="logit")
    a, a_plus_b = logit(ref)
    out.update(platt_intercept=float(a), platt_slope=float(a_plus_b - a), threshold=youden_threshold(y, s),
               reason="")
    return out


def _test_row(g: pd.DataFrame, fit: Mapping[str, Any], test_set: str, level: float, auc_ci: str,
              reasons: list[str], where: str) -> dict[str, Any]:
    y, s = g["y"].to_numpy(), g["score"].to_numpy(dtype=float)
    n, poor = len(y), int(y.sum())
    row: dict[str, Any] = {"test_set": test_set, "sites": ", ".join(sorted(g[SITE_COLUMN].unique())), "n": n,
                           "n_poor": poor, "n_good": n - poor, "prevalence": poor / n if n else float("nan")}
    nan = float("nan")
    if has_both_classes(y):
        auc, lo, hi = delong_auc_ci(y, s, level, method=auc_ci)
    else:
        auc = lo = hi = nan
        reasons.append(f"{where}: AUC not defined ({n} patients, {poor} poor)")
    row.update(auc=auc, auc_lo=lo, auc_hi=hi, auc_drop=nan, auc_drop_lo=nan, auc_drop_hi=nan, auc_drop_p=nan)
    thr = float(fit["threshold"])
    row.update(_policy("youden_val", y, s, thr, level))
    ext_thr = youden_threshold(y, s) if test_set == "external" and has_both_classes(y) else nan
    row.update(_policy("youden_test", y, s, ext_thr, level))
    prob = g["prob"].to_numpy(dtype=float)
    if np.isnan(prob).any() or n == 0:
        row.update({k: nan for k in ("cal_intercept", "cal_intercept_lo", "cal_intercept_hi", "cal_slope",
                                     "cal_slope_lo", "cal_slope_hi", "brier")})
        return row
    for key, est in (("cal_intercept", calibration_in_the_large(y, prob, level)),
                     ("cal_slope", calibration_slope(y, prob, level))):
        row.update({key: est.est, f"{key}_lo": est.lo, f"{key}_hi": est.hi})
        if est.reason:
            reasons.append(f"{where}: {est.reason}")
    row["brier"] = brier_score(y, prob)
    return row


def _policy(prefix: str, y: np.ndarray, s: np.ndarray, thr: float, level: float) -> dict[str, Any]:
    if math.isnan(thr):
        return {f"{prefix}_{k}": float("nan") for k in ("threshold", *_COUNTS, *_RATES)}
    pred, pos = s >= thr, y == 1
    counts = {"tp": int((pred & pos).sum()), "fp": int((pred & ~pos).sum()), "tn": int((~pred & ~pos).sum()),
              "fn": int((~pred & pos).sum())}
    out: dict[str, Any] = {f"{prefix}_threshold": thr}
    out.update({f"{prefix}_{k}": v for k, v in counts.items()})
    out.update({f"{prefix}_{k}": v for k, v in rate_metrics(**counts, level=level).items()})
    return out


def _test_sets(fr: pd.DataFrame, val: pd.DataFrame, fit: Mapping[str, Any], mid: str,
               fold: int) -> dict[str, pd.DataFrame]:
    """The fold's internal and external patients, with the validation patients' map applied (``prob``)."""
    per_set = {}
    for test_set in TEST_SETS:
        g = fr[fr["split"] == _SPLIT_OF[test_set]].sort_values("patient_id").reset_index(drop=True)
        if g.empty:
            raise ValueError(f"method {mid!r}, fold {fold}: no {test_set} test patients (split "
                             f"{_SPLIT_OF[test_set]!r})")
        per_set[test_set] = g
    both = pd.concat(per_set.values(), ignore_index=True)["score"].to_numpy(dtype=float)
    if fit["reason"]:
        prob = np.full(len(both), np.nan)
    else:
        prob = recalibrate(val["score"].to_numpy(dtype=float), val["y"].to_numpy(), both, "platt", scale="logit")
    n_internal = len(per_set["internal"])
    per_set["internal"]["prob"] = prob[:n_internal]
    per_set["external"]["prob"] = prob[n_internal:]
    return per_set


# --------------------------------------------------------------------------------------------- the evaluation


def external_validation(preds: pd.DataFrame, sites: pd.Series | Mapping[str, str], *,
                        methods: Sequence[str] | None = None, auc_ci: str = "logit",
                        level: float = 0.95) -> ExternalValidation:
    """Internal against external test patients, per method and held-out set of sites (fold).

    For each method and fold the final stage's scores are averaged over the seeds per patient
    (:func:`pdstudy.evaluate.fold_scores`). On the fold's **validation patients only** (carved from the training
    sites' training patients) two things are fitted: the Platt recalibration map
    (:func:`pdstudy.stats.recalibrate`, ``"platt"``, on ``logit(score)``) and the Youden threshold on the score
    (:func:`pdstudy.stats.youden_threshold`). Both are then applied unchanged to two test sets: ``internal``, the
    training sites' test patients (split ``test``, never trained on), and ``external``, every patient of the
    held-out sites (split ``external``). Nothing is fitted on either test set (the external site's own Youden
    threshold is reported only as the optimistic bound, as such).

    Parameters
    ----------
    preds : pandas.DataFrame
        External-protocol prediction rows (:data:`pdstudy.data.predictions.PREDICTION_COLUMNS`; folds >= 0, one
        per held-out set; splits train, val, test and external; one repeat). Extra columns are ignored.
    sites : pandas.Series or mapping
        ``patient_id -> site code`` for every patient of the rows.
    methods : sequence of str, optional
        Method IDs, in the table's order (default: every method of ``preds``, in order of appearance).
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals (:func:`pdstudy.stats.delong_auc_ci`).
    level : float, default 0.95
        Level of every interval.

    Returns
    -------
    ExternalValidation
        ``.table`` has one row per method x fold x test set: ``method`` (ID), ``label``, ``fold``, ``held_out``
        (the fold's held-out codes, ``+``-joined), ``test_set``, ``sites`` (the row's patients' sites); its
        patients ``n, n_poor, n_good, prevalence``; the patients the map and threshold were fitted on ``n_val,
        n_val_poor, n_val_good`` and the CNN's ``n_train, n_train_poor, n_train_good``; ``auc, auc_lo, auc_hi``
        (DeLong); on the external row ``auc_drop, auc_drop_lo, auc_drop_hi, auc_drop_p`` (external minus internal,
        :func:`pdstudy.stats.delong_auc_difference_unpaired`; NaN on the internal row); ``youden_val_threshold``
        and its ``_tp .. _fn``, ``_acc/_sen/_spe`` with ``_lo/_hi`` (Wilson) at the transported threshold;
        ``youden_test_*`` the same at the external patients' own Youden threshold (external row only; optimistic);
        ``cal_intercept`` (calibration-in-the-large, profile-likelihood interval) and ``cal_slope`` (Wald) with
        ``_lo/_hi``, and ``brier``, all of the recalibrated probability; ``platt_intercept, platt_slope``;
        ``n_seeds``.

    Raises
    ------
    ValueError
        On invalid predictions, fixed-split or several-repeat rows, no external patients (in the rows or in a
        fold), an unknown method, a patient without a site code, a held-out site with patients in another split
        of the same fold, or folds whose held-out sites differ between methods.
    TypeError
        When ``sites`` is not a Series or a mapping.
    """
    check_auc_ci(auc_ci, "auc_ci")
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level}")
    site_of = _site_map(sites)
    df, mids = _check_inputs(preds, methods)
    held_out: dict[int, tuple[str, ...]] = {}
    rows: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    decision: list[pd.DataFrame] = []
    reasons: list[str] = []
    for mid in mids:
        label = method_from_id(mid).label
        scores = _method_scores(df, mid, site_of)
        for fold, fr in scores.groupby("fold", sort=True):
            fold = int(fold)
            held = _held_out(fr, mid, fold)
            if held_out.setdefault(fold, held) != held:
                raise ValueError(f"fold {fold}: method {mid!r} holds out sites {list(held)}, another method "
                                 f"{list(held_out[fold])}; the methods must share the external protocol's splits")
            train_y = fr.loc[fr["split"] == "train", "y"]
            fit = {"method": mid, "fold": fold, "held_out": "+".join(held), "n_train": len(train_y),
                   "n_train_poor": int(train_y.sum()), "n_train_good": len(train_y) - int(train_y.sum()),
                   **_fit(fr[fr["split"] == "val"]), "n_seeds": int(fr["n_seeds"].iloc[0])}
            if fit["reason"]:
                reasons.append(f"{label}, fold {fold}: {fit['reason']}")
            fits.append(fit)
            per_set = _test_sets(fr, fr[fr["split"] == "val"], fit, mid, fold)
            for test_set, g in per_set.items():
                where = f"{label}, fold {fold}, {test_set}"
                row = {"method": mid, "label": label, "fold": fold, "held_out": fit["held_out"],
                       **_test_row(g, fit, test_set, level, auc_ci, reasons, where),
                       **{k: fit[k] for k in ("n_val", "n_val_poor", "n_val_good", "n_train", "n_train_poor",
                                              "n_train_good", "platt_intercept", "platt_slope", "n_seeds")}}
                rows.append(row)
                curves.append(pd.DataFrame({
                    "method": mid, "fold": fold, "test_set": test_set, "patient_id": g["patient_id"],
                    "site": g[SITE_COLUMN], "y": g["y"].astype(int),
                    "response": np.where(g["y"] == 1, RESPONSES[1], RESPONSES[0]), "score": g["score"],
                    "prob": g["prob"], "n_slices": g["n_slices"].astype("Int64")}))
                if not fit["reason"]:
                    nb = net_benefit(g["y"].to_numpy(), g["prob"].to_numpy(), DCA_THRESHOLDS)
                    decision.append(nb.assign(method=mid, fold=fold, test_set=test_set, n=len(g),
                                              prevalence=nb.attrs["prevalence"]))
            internal, external = per_set["internal"], per_set["external"]
            if has_both_classes(internal["y"].to_numpy()) and has_both_classes(external["y"].to_numpy()):
                drop = delong_auc_difference_unpaired(internal["y"], internal["score"], external["y"],
                                                      external["score"], level)
                rows[-1].update(auc_drop=drop["diff"], auc_drop_lo=drop["lo"], auc_drop_hi=drop["hi"],
                                auc_drop_p=drop["p"])
    table = pd.DataFrame(rows)
    front = ["method", "label", "fold", "held_out", "test_set", "sites", "n", "n_poor", "n_good", "prevalence",
             "n_val", "n_val_poor", "n_val_good", "n_train", "n_train_poor", "n_train_good"]
    table = table[front + [c for c in table.columns if c not in front]]
    fits_df = pd.DataFrame(fits)
    notes = _notes(table, fits_df, held_out, auc_ci, level, reasons)
    table.attrs.update(table="external_validation", notes=list(notes))
    dec_cols = ["method", "fold", "test_set", "n", "prevalence", "threshold", "net_benefit", "treat_all",
                "treat_none"]
    dec = pd.concat(decision, ignore_index=True)[dec_cols] if decision else pd.DataFrame(columns=dec_cols)
    return ExternalValidation(methods=tuple(mids), held_out=dict(sorted(held_out.items())), table=table,
                              curves=pd.concat(curves, ignore_index=True), decision=dec, fits=fits_df, notes=notes,
                              auc_ci=auc_ci, level=level)


def _range(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _notes(table: pd.DataFrame, fits: pd.DataFrame, held_out: Mapping[int, tuple[str, ...]], auc_ci: str,
           level: float, reasons: list[str]) -> tuple[str, ...]:
    pct = f"{100 * level:g}%"
    first = table.drop_duplicates(["fold", "test_set"]).set_index(["fold", "test_set"])
    folds = []
    for fold, held in held_out.items():
        internal, external = first.loc[(fold, "internal")], first.loc[(fold, "external")]
        f = fits[fits["fold"] == fold].iloc[0]
        folds.append(f"fold {fold}: held out site(s) {', '.join(held)} ({int(external['n'])} patients, "
                     f"{int(external['n_poor'])} poor); trained at {internal['sites']} ({int(f['n_train'])} train, "
                     f"{int(f['n_val'])} val ({int(f['n_val_poor'])} poor), {int(internal['n'])} internal test "
                     f"({int(internal['n_poor'])} poor))")
    protocol = "leave-one-site-out" if len(held_out) > 1 and all(len(h) == 1 for h in held_out.values()) else \
        "held-out sites"
    notes = [
        f"Protocol ({protocol}, {len(held_out)} fold(s)): " + "; ".join(folds) + ".",
        "Test sets: 'internal' = the training sites' test patients (never trained on); 'external' = every patient "
        "of the held-out site(s), whatever their manifest split. Each row gives its patients (n, poor) and the "
        "validation patients its map and threshold rest on (n_val, poor); the AUC drop rests on both test sets "
        "of its fold.",
        "Fitted on which patients: the CNN on the training sites' training patients minus the validation carve "
        f"({_range(fits['n_train'])} patients); the Platt recalibration map logit P(poor) = a + b logit(score) "
        "and the 'Youden on val' threshold on the fold's validation patients only "
        f"({_range(fits['n_val'])} patients, {_range(fits['n_val_poor'])} poor / {_range(fits['n_val_good'])} "
        "good; training sites). The internal and external test patients are only scored: nothing is fitted on "
        "them.",
        f"Scores: each method's final stage, each patient's mean over the seeds ({_range(fits['n_seeds'])} "
        "seed(s)). Positive class = poor response: SEN = poor responders called poor, SPE = good responders "
        "called good.",
        "Threshold policies: 'Youden on val, transported' is chosen on the validation patients and applied "
        "unchanged to both test sets (what a site adopting the model would get); 'Youden on external, optimistic' "
        "is chosen on the external patients themselves and scored on them, an upper bound that tuning at the new "
        "site could at best reach (external rows only).",
        "Calibration of the recalibrated probability on each test set: calibration-in-the-large a of "
        "logit P(poor) = a + logit(p) (ideal 0; > 0: more poor responders than predicted), with a profile-"
        "likelihood interval; calibration slope b of logit P(poor) = a + b logit(p) (ideal 1; < 1: predictions "
        "too extreme), with a Wald interval from the inverse Hessian; Brier score.",
        "AUC drop = external AUC - internal AUC of the same fold and method; the two test sets share no patient, "
        f"so its {pct} interval and two-sided p add the two DeLong variances (exploratory, not adjusted for "
        "multiplicity).",
        ci_note(auc_ci).replace("95%", pct).rstrip(".") + "; profile likelihood for calibration-in-the-large, "
        "Wald for the calibration slope and the AUC drop.",
        "Decision curves: net benefit of the recalibrated probability on each test set at its own prevalence "
        "(the external one at the held-out site's share of poor responders).",
    ]
    small = table[(table[["n_poor", "n_good"]].min(axis=1) < MIN_CLASS_PATIENTS)
                  | (table[["n_val_poor", "n_val_good"]].min(axis=1) < MIN_CLASS_PATIENTS)]
    if not small.empty:
        which = sorted({f"fold {int(r['fold'])} {r['test_set']}" for r in small.to_dict("records")})
        notes.append(f"{SMALL_MARK} Small samples: fewer than {MIN_CLASS_PATIENTS} patients of one class in the "
                     f"test set or in the validation patients behind {', '.join(which)}; a few patients per site "
                     "leave wide intervals: a drop or a miscalibration whose interval covers 0 (1 for the slope) is "
                     "not shown to be absent.")
    if reasons:
        notes.append("Not estimable: " + "; ".join(dict.fromkeys(reasons)) + ".")
    return tuple(notes)


# --------------------------------------------------------------------------------------------- per site


def slices_by_site(result: ExternalValidation) -> pd.DataFrame:
    """Slices kept and the mean final score per response group, per method, fold and site of the test sets.

    Slice thickness changes how many slices a patient keeps and so what the top-k score averages; this puts the
    sites side by side (the patients of both test sets of each fold).

    Parameters
    ----------
    result : ExternalValidation
        :func:`external_validation`.

    Returns
    -------
    pandas.DataFrame
        ``method, fold, site, test_set, n, n_poor, n_good, slices_median, slices_min, slices_max`` (NaN when the
        prediction files lack ``n_slices``), ``mean_score_poor, mean_score_good`` (seed-averaged final-stage
        score; NaN without patients of that group).
    """
    if not isinstance(result, ExternalValidation):
        raise TypeError(f"slices_by_site expects an ExternalValidation, got {type(result).__name__}")
    out = []
    for (mid, fold, site), g in result.curves.groupby(["method", "fold", "site"], sort=False):
        k = pd.to_numeric(g["n_slices"], errors="coerce").astype(float)
        poor = g["y"] == 1
        out.append({"method": mid, "fold": int(fold), "site": site, "test_set": "+".join(dict.fromkeys(g["test_set"])),
                    "n": len(g), "n_poor": int(poor.sum()), "n_good": int((~poor).sum()),
                    "slices_median": float(k.median()), "slices_min": float(k.min()), "slices_max": float(k.max()),
                    "mean_score_poor": float(g.loc[poor, "score"].mean()) if poor.any() else float("nan"),
                    "mean_score_good": float(g.loc[~poor, "score"].mean()) if (~poor).any() else float("nan")})
    return pd.DataFrame(out).sort_values(["method", "fold", "site"], kind="stable").reset_index(drop=True)


def site_table1(patients: pd.DataFrame) -> pd.DataFrame:
    """Table 1 per site: :func:`pdstudy.data.cohort.table1` with the site as the group (all splits pooled).

    Parameters
    ----------
    patients : pandas.DataFrame
        Included patients (manifest columns with ``site``; ``response`` and the Table 1 covariates).

    Returns
    -------
    pandas.DataFrame
        ``characteristic, level``, per site and response ``site <code> GR (n=..)`` / ``PR``, and ``p (site <code>)``
        (exact tests between response groups within the site). Without a ``site`` column, or with every code
        empty (a single-site cohort), one group ``all``.

    Raises
    ------
    ValueError
        When some patients have a site code and others none (the message names one).
    """
    if "response" not in patients.columns:
        raise ValueError("site_table1: patients lack column 'response'")
    codes = (patients[SITE_COLUMN].fillna("").astype(str).str.strip() if SITE_COLUMN in patients.columns
             else pd.Series("", index=patients.index))
    if codes.eq("").all():
        groups = pd.Series("all", index=patients.index)
    else:
        if codes.eq("").any():
            pid = patients.loc[codes.eq(""), "patient_id"].iloc[0] if "patient_id" in patients else "?"
            raise ValueError(f"site_table1: patient {pid!r} has no site code while others have one")
        groups = "site " + codes
    order = tuple(sorted(groups.unique()))
    return table1(patients.assign(split=groups.to_numpy()), splits=order)
