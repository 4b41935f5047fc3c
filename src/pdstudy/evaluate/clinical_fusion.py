"""Clinical model, CT + clinical fusion and their comparison on the test patients; see ``docs/statistics.md``.

* :func:`fit_clinical_model`: a scikit-learn pipeline (age median-imputed and scaled, with a missing indicator;
  the Table 1 categories one-hot encoded with an explicit ``missing`` level; L2 logistic regression whose ``C``
  is chosen by stratified cross-validation inside the training patients) fitted on the training patients only.
* :func:`fit_logistic_map`: a logistic regression of the response on one or two scores (Platt's target
  smoothing, no penalty), fitted on validation or out-of-fold patients: the recalibration of the CT score and of
  the clinical model, and the fusion of both.
* :func:`clinical_fusion` (fixed split) and :func:`clinical_fusion_cv` (cross-validation, per repeat): the three
  models' patient scores on the test patients; :func:`clinical_fusion_table` compares them.

Pure functions on DataFrames: the cohort table (manifest rows with the covariates) and the split assignment are
inputs, never built here. No torch, no matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from pdstudy.core.methods import Method, method_from_id
from pdstudy.core.vocab import RESPONSES
from pdstudy.data.manifest import CM_CODES, CN_CODES, CT_CODES, LAUREN_CODES, MARKER_CODES, SEX_CODES
from pdstudy.data.predictions import validate_predictions
from pdstudy.data.splits import stratified_folds
from pdstudy.evaluate import MIN_CLASS_PATIENTS, SMALL_MARK, ci_note, final_stage
from pdstudy.evaluate.readers import rate_metrics
from pdstudy.stats import brier_score, check_auc_ci, delong_auc_ci, delong_test, roc_auc, youden_threshold
from pdstudy.stats.calibration import LOGIT_EPS

__all__ = [
    "CLINICAL_CATEGORIES",
    "CLINICAL_COVARIATES",
    "CLINICAL_CS",
    "CLINICAL_CV_FOLDS",
    "FIT_ON",
    "FUSION_MODELS",
    "FUSION_PD_MODEL",
    "MISSING_LEVEL",
    "ClinicalFusion",
    "ClinicalModel",
    "LogisticMap",
    "calibration_intercept_slope",
    "choose_on_fold_validation",
    "clinical_cv_scores",
    "clinical_fusion",
    "clinical_fusion_cv",
    "clinical_fusion_table",
    "clinical_table",
    "fit_clinical_model",
    "fit_logistic_map",
    "fold_scores",
    "missing_counts",
]

#: The clinical model's categorical covariates (manifest columns) and their codes, in encoding order.
CLINICAL_CATEGORIES: Final = {
    "sex": SEX_CODES, "lauren": LAUREN_CODES, "cea": MARKER_CODES, "ca199": MARKER_CODES,
    "ct_stage": CT_CODES, "cn_stage": CN_CODES, "cm_stage": CM_CODES,
}
#: Every covariate of the clinical model: age (numeric) and the Table 1 categories.
CLINICAL_COVARIATES: Final = ("age", *CLINICAL_CATEGORIES)
#: The explicit level a missing categorical value gets (an empty manifest cell).
MISSING_LEVEL: Final = "missing"
#: Candidate inverse regularisation strengths of the L2 logistic regression (10^-3 .. 10^2).
CLINICAL_CS: Final = tuple(float(c) for c in np.logspace(-3, 2, 11))
#: Folds of the cross-validation that chooses ``C`` inside the training patients (fewer if a class is smaller).
CLINICAL_CV_FOLDS: Final = 5
#: The three models compared: the clinical model, the CT model, and their fusion.
FUSION_MODELS: Final = ("clinical", "ct", "fusion")
#: Where the cross-validation protocol fits its recalibrations, fusion and thresholds (:func:`clinical_fusion_cv`).
FIT_ON: Final = ("val", "oof")
#: The CT model fixed in advance: the paper's Progressive Distill B7>B7>B7.
FUSION_PD_MODEL: Final = "pd:efficientnet_b7>efficientnet_b7>efficientnet_b7"

_LABELS: Final = {"clinical": "Clinical model", "ct": "CT: {m}", "fusion": "Fusion: {m} + clinical"}


# --------------------------------------------------------------------------------------------- inputs


def clinical_table(clinical: pd.DataFrame) -> pd.DataFrame:
    """The covariates of every patient, checked: numeric age, categories with an explicit missing level.

    Parameters
    ----------
    clinical : pandas.DataFrame
        One row per patient: ``patient_id`` and any of :data:`CLINICAL_COVARIATES` (manifest rows, e.g.
        :meth:`pdstudy.data.cohort.Cohort.patients`, or :func:`pdstudy.data.synth.plan_cohort`). Cells are
        strings as in the manifest; an empty cell (or NaN) is a missing value, and a column that is absent is
        missing for every patient.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``patient_id`` (str), one column per covariate: ``age`` as float (NaN when missing), the
        categories as str with :data:`MISSING_LEVEL` for missing values.

    Raises
    ------
    ValueError
        Without ``patient_id``, on duplicate IDs, an age that is not a number >= 0, or a category outside its
        manifest codes; the message names the patient, the column and what was expected.
    """
    if not isinstance(clinical, pd.DataFrame) or "patient_id" not in clinical.columns:
        raise ValueError("clinical must be a DataFrame with a 'patient_id' column and the covariates "
                         f"{list(CLINICAL_COVARIATES)} (manifest rows), got {type(clinical).__name__}")
    ids = clinical["patient_id"].astype(str).to_numpy()
    dup = pd.Series(ids).duplicated()
    if dup.any():
        raise ValueError(f"clinical: patient {ids[int(np.flatnonzero(dup)[0])]!r} has more than one row")
    out = pd.DataFrame(index=pd.Index(ids, name="patient_id"))
    for col in CLINICAL_COVARIATES:
        if col not in clinical.columns:
            out[col] = np.nan if col == "age" else MISSING_LEVEL
            continue
        raw = clinical[col].to_numpy(dtype=object)
        text = np.array(["" if pd.isna(v) else str(v).strip() for v in raw], dtype=object)
        blank = (text == "") | (text == MISSING_LEVEL)
        if col == "age":
            values = pd.to_numeric(pd.Series(np.where(blank, None, text)), errors="coerce").to_numpy(dtype=float)
            bad = ~blank & ~(np.isfinite(values) & (values >= 0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"clinical: patient {ids[i]!r}, column 'age': {raw[i]!r} is not an age in years "
                                 "(a number >= 0, or empty when missing)")
            out[col] = np.where(blank, np.nan, values)
        else:
            codes = CLINICAL_CATEGORIES[col]
            bad = ~blank & ~np.isin(text, codes)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"clinical: patient {ids[i]!r}, column {col!r}: unknown code {raw[i]!r}; expected "
                                 f"one of {list(codes)} or empty when missing")
            out[col] = np.where(blank, MISSING_LEVEL, text).astype(object)
    return out


def _assignment(patients: pd.DataFrame, what: str, extra: Sequence[str] = ()) -> pd.DataFrame:
    """``patient_id`` (str), ``split``, ``y`` (1 = poor) and ``extra`` columns of a split assignment, checked."""
    if not isinstance(patients, pd.DataFrame) or not {"patient_id", "split"} <= set(patients.columns):
        raise ValueError(f"{what}: patients must be a DataFrame with columns 'patient_id', 'split' and 'response' "
                         f"(or 'y', 1 = poor), got {type(patients).__name__}")
    missing = [c for c in extra if c not in patients.columns]
    if missing:
        raise ValueError(f"{what}: patients lacks column(s) {missing}")
    out = patients[["patient_id", "split", *extra]].copy()
    out["patient_id"] = out["patient_id"].astype(str)
    if "y" in patients.columns:
        y = pd.to_numeric(patients["y"], errors="coerce")
        bad = ~y.isin([0, 1])
    elif "response" in patients.columns:
        bad = ~patients["response"].isin(RESPONSES)
        y = (patients["response"] == "poor").astype(int)
    else:
        raise ValueError(f"{what}: patients needs a 'response' (good | poor) or 'y' (1 = poor) column")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{what}: patient {out['patient_id'].iloc[i]!r} has no valid label (response good | poor, "
                         "or y 0 | 1)")
    out["y"] = y.astype(int).to_numpy()
    return out.reset_index(drop=True)


def missing_counts(clinical: pd.DataFrame, patients: pd.DataFrame) -> pd.DataFrame:
    """Missing values per covariate and split, over the patients of a split assignment.

    Parameters
    ----------
    clinical : pandas.DataFrame
        Manifest rows (:func:`clinical_table`).
    patients : pandas.DataFrame
        ``patient_id``, ``split`` (and ``response`` or ``y``): the patients counted.

    Returns
    -------
    pandas.DataFrame
        One row per covariate of :data:`CLINICAL_COVARIATES`: ``covariate``, ``n_missing_<split>`` for each split
        present (in the order train, val, test) and ``n_missing`` (all patients), ``n_patients``.
    """
    table = clinical_table(clinical)
    assign = _assignment(patients, "missing_counts").drop_duplicates("patient_id")
    _require_rows(table, assign["patient_id"], "missing_counts")
    sub = table.loc[assign["patient_id"]]
    is_missing = sub["age"].isna().to_frame().join(sub.drop(columns="age") == MISSING_LEVEL)[list(CLINICAL_COVARIATES)]
    splits = [s for s in ("train", "val", "test") if (assign["split"] == s).any()]
    rows = []
    for cov in CLINICAL_COVARIATES:
        row: dict[str, Any] = {"covariate": cov}
        for s in splits:
            row[f"n_missing_{s}"] = int(is_missing[cov].to_numpy()[(assign["split"] == s).to_numpy()].sum())
        row["n_missing"] = int(is_missing[cov].sum())
        row["n_patients"] = len(assign)
        rows.append(row)
    return pd.DataFrame(rows)


def _require_rows(table: pd.DataFrame, ids: Sequence[str] | pd.Series, what: str) -> None:
    absent = sorted(set(map(str, ids)) - set(table.index))
    if absent:
        raise ValueError(f"{what}: the clinical table has no row for patient(s) {absent[:5]}"
                         + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
                         + " (a patient with every covariate missing still needs a row)")


# --------------------------------------------------------------------------------------------- clinical model


@dataclass(frozen=True)
class ClinicalModel:
    """A clinical model fitted on training patients (:func:`fit_clinical_model`).

    Attributes
    ----------
    pipeline : sklearn.pipeline.Pipeline
        The fitted pipeline: ``prepare`` (ColumnTransformer) then ``model`` (GridSearchCV over ``C`` of an L2
        LogisticRegression, refitted on every training patient).
    covariates : tuple of str
        Covariates used (those with at least one observed value among the training patients).
    dropped : tuple of str
        Covariates left out because no training patient has a value.
    C : float
        The chosen inverse regularisation strength.
    cv_log_loss : pandas.DataFrame
        ``C``, ``log_loss`` (mean over the inner folds), ``log_loss_sd``: the choice of ``C``.
    coefficients : pandas.Series
        ``intercept`` and one coefficient per encoded feature (``age``, ``age_missing``, ``sex=F``, ...).
    train_ids : tuple of str
        The training patients, sorted.
    n_train, n_train_poor : int
        Training patients, and poor responders among them.
    inner_folds : int
        Folds of the inner cross-validation.
    """

    pipeline: Pipeline
    covariates: tuple[str, ...]
    dropped: tuple[str, ...]
    C: float
    cv_log_loss: pd.DataFrame
    coefficients: pd.Series
    train_ids: tuple[str, ...]
    n_train: int
    n_train_poor: int
    inner_folds: int

    @property
    def n_train_good(self) -> int:
        """Good responders among the training patients."""
        return self.n_train - self.n_train_poor

    def linear_predictor(self, clinical: pd.DataFrame, patient_ids: Sequence[str] | None = None) -> np.ndarray:
        """The model's log-odds of poor response for some patients (all rows of ``clinical`` by default).

        Parameters
        ----------
        clinical : pandas.DataFrame
            Manifest rows (:func:`clinical_table`).
        patient_ids : sequence of str, optional
            Patients to score, in this order.

        Returns
        -------
        numpy.ndarray
            One log-odds per patient.
        """
        table = clinical_table(clinical)
        ids = list(table.index) if patient_ids is None else [str(p) for p in patient_ids]
        _require_rows(table, ids, "linear_predictor")
        return np.asarray(self.pipeline.decision_function(table.loc[ids, list(self.covariates)]), dtype=float)

    def predict_proba(self, clinical: pd.DataFrame, patient_ids: Sequence[str] | None = None) -> np.ndarray:
        """Probability of poor response (:meth:`linear_predictor` through the logistic function)."""
        return expit(self.linear_predictor(clinical, patient_ids))


def _pipeline(covariates: Sequence[str], cs: Sequence[float], folds: int, seed: int) -> Pipeline:
    parts = []
    if "age" in covariates:
        parts.append(("age", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                                       ("scale", StandardScaler())]), ["age"]))
    cats = [c for c in covariates if c in CLINICAL_CATEGORIES]
    if cats:
        levels = [[*CLINICAL_CATEGORIES[c], MISSING_LEVEL] for c in cats]
        parts.append(("categories", OneHotEncoder(categories=levels, handle_unknown="error"), cats))
    search = GridSearchCV(LogisticRegression(max_iter=10_000), {"C": list(cs)}, scoring="neg_log_loss",
                          cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed), refit=True)
    return Pipeline([("prepare", ColumnTransformer(parts, remainder="drop")), ("model", search)])


def _feature_name(name: str) -> str:
    """``age__age`` -> ``age``, ``age__missingindicator_age`` -> ``age_missing``, ``categories__sex_F`` -> ``sex=F``."""
    block, _, rest = name.partition("__")
    if block == "age":
        return "age_missing" if rest.startswith("missingindicator") else "age"
    for cov in CLINICAL_CATEGORIES:
        if rest.startswith(cov + "_"):
            return f"{cov}={rest[len(cov) + 1:]}"
    return rest


def fit_clinical_model(
    clinical: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    seed: int = 0,
    cs: Sequence[float] = CLINICAL_CS,
    cv_folds: int = CLINICAL_CV_FOLDS,
) -> ClinicalModel:
    """Fit the clinical model on the training patients of a split assignment (``split == "train"``) only.

    The pipeline: age median-imputed (median of the training patients) with a missing indicator, then
    standardised; sex, Lauren type, CEA, CA19-9 and clinical T/N/M one-hot encoded over their manifest codes and
    :data:`MISSING_LEVEL`; an L2 logistic regression whose ``C`` is the candidate of ``cs`` with the lowest mean
    log-loss over a stratified ``cv_folds``-fold cross-validation inside the training patients (shuffled with
    ``seed``; ties to the smaller ``C``), then refitted on all of them. The imputation and scaling are fitted once
    on the training patients, before the inner folds. Patients of other splits play no part.

    Parameters
    ----------
    clinical : pandas.DataFrame
        Manifest rows with the covariates (:func:`clinical_table`); must hold every training patient.
    patients : pandas.DataFrame
        The split assignment: ``patient_id``, ``split`` and ``response`` (or ``y``, 1 = poor).
    seed : int, default 0
        Seed of the inner folds.
    cs : sequence of float, default :data:`CLINICAL_CS`
        Candidate values of ``C``.
    cv_folds : int, default :data:`CLINICAL_CV_FOLDS`
        Inner folds; fewer when a class has fewer training patients (at least 2).

    Returns
    -------
    ClinicalModel

    Raises
    ------
    ValueError
        On invalid inputs, fewer than 2 training patients of a class, or no covariate observed in training.
    """
    assign = _assignment(patients, "fit_clinical_model")
    train = assign[assign["split"] == "train"].drop_duplicates("patient_id").sort_values("patient_id")
    y = train["y"].to_numpy()
    n_poor = int(y.sum())
    if min(n_poor, len(y) - n_poor) < 2:
        raise ValueError(f"fit_clinical_model: the training patients need at least 2 poor and 2 good responders "
                         f"(the inner cross-validation); they have {n_poor} poor of {len(y)}")
    cs = [float(c) for c in cs]
    if not cs or not all(math.isfinite(c) and c > 0 for c in cs):
        raise ValueError(f"cs must be a non-empty sequence of positive numbers, got {cs!r}")
    if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
        raise ValueError(f"cv_folds must be an integer >= 2, got {cv_folds!r}")
    table = clinical_table(clinical)
    _require_rows(table, train["patient_id"], "fit_clinical_model")
    x = table.loc[train["patient_id"].to_numpy()]
    observed = {c: bool(x[c].notna().any()) if c == "age" else bool((x[c] != MISSING_LEVEL).any())
                for c in CLINICAL_COVARIATES}
    used = tuple(c for c in CLINICAL_COVARIATES if observed[c])
    if not used:
        raise ValueError("fit_clinical_model: no covariate has a value for any training patient")
    folds = min(cv_folds, n_poor, len(y) - n_poor)
    pipe = _pipeline(used, cs, folds, seed)
    with threadpool_limits(limits=1):  # ~100 x 25 problems: BLAS/OpenMP threads only contend (10x slower when busy)
        pipe.fit(x[list(used)], y)
    search: GridSearchCV = pipe.named_steps["model"]
    lr: LogisticRegression = search.best_estimator_
    names = [_feature_name(n) for n in pipe.named_steps["prepare"].get_feature_names_out()]
    coefficients = pd.Series([float(lr.intercept_[0]), *map(float, lr.coef_[0])], index=["intercept", *names])
    res = search.cv_results_
    cv = pd.DataFrame({"C": [float(c) for c in res["param_C"]], "log_loss": -np.asarray(res["mean_test_score"]),
                       "log_loss_sd": np.asarray(res["std_test_score"])})
    return ClinicalModel(pipeline=pipe, covariates=used, dropped=tuple(c for c in CLINICAL_COVARIATES if c not in used),
                         C=float(search.best_params_["C"]), cv_log_loss=cv, coefficients=coefficients,
                         train_ids=tuple(train["patient_id"]), n_train=len(y), n_train_poor=n_poor, inner_folds=folds)


def clinical_cv_scores(
    clinical: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    folds: int = 5,
    seed: int = 0,
    cs: Sequence[float] = CLINICAL_CS,
) -> pd.DataFrame:
    """Out-of-fold linear predictors of the clinical model over a set of patients (their splits ignored).

    The patients are dealt into ``folds`` stratified folds (:func:`pdstudy.data.splits.stratified_folds` with
    ``seed``, as the cross-validation protocol of the CNNs); each fold is scored by a clinical model
    (:func:`fit_clinical_model`, inner folds seeded with ``seed``) fitted on the other folds. The pooled
    scores give a cross-validated AUC of the clinical variables alone.

    Parameters
    ----------
    clinical : pandas.DataFrame
        Manifest rows with the covariates.
    patients : pandas.DataFrame
        ``patient_id`` and ``response`` (or ``y``); a ``split`` column, if any, is ignored.
    folds : int, default 5
        Outer folds.
    seed : int, default 0
        Seed of the outer and inner folds.
    cs : sequence of float
        Candidate values of ``C``.

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``y``, ``fold``, ``C`` (chosen in that fold), ``score`` (out-of-fold log-odds).
    """
    base = patients.drop(columns=[c for c in ("split",) if c in patients.columns]).assign(split="train")
    assign = _assignment(base, "clinical_cv_scores").drop_duplicates("patient_id")
    assign["response"] = np.where(assign["y"] == 1, "poor", "good")
    out = []
    for f, fold in enumerate(stratified_folds(assign, folds, seed=seed)):
        model = fit_clinical_model(clinical, fold, seed=seed, cs=cs)
        test = fold[fold["split"] == "test"]
        out.append(pd.DataFrame({"patient_id": test["patient_id"].to_numpy(), "y": test["y"].to_numpy(), "fold": f,
                                 "C": model.C, "score": model.linear_predictor(clinical, test["patient_id"])}))
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------------------------- logistic maps


@dataclass(frozen=True)
class LogisticMap:
    """``P(poor) = expit(intercept + coef . x)`` fitted on some patients (:func:`fit_logistic_map`).

    Attributes
    ----------
    inputs : tuple of str
        What each column of ``x`` is (``"ct_logit"``: the CT score's logit; ``"clinical_lp"``: the clinical
        model's log-odds).
    intercept : float
    coef : tuple of float
        One coefficient per input.
    n_fit, n_fit_poor : int
        Patients the map was fitted on, and poor responders among them.
    """

    inputs: tuple[str, ...]
    intercept: float
    coef: tuple[float, ...]
    n_fit: int
    n_fit_poor: int

    def linear(self, x: np.ndarray) -> np.ndarray:
        """``intercept + x @ coef`` for ``x`` of shape (n, len(inputs))."""
        x = np.asarray(x, dtype=float).reshape(-1, len(self.inputs))
        return self.intercept + x @ np.asarray(self.coef)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of poor response for ``x`` of shape (n, len(inputs))."""
        return expit(self.linear(x))


def fit_logistic_map(x: np.ndarray, y: np.ndarray, inputs: Sequence[str]) -> LogisticMap:
    """Logistic regression of the response on one or two scores, with Platt's target smoothing and no penalty.

    As :func:`pdstudy.stats.recalibrate` (``"platt"``): poor responders get target ``(m + 1) / (m + 2)`` and
    good ones ``1 / (n + 2)`` (``m``, ``n`` their numbers), which keeps the coefficients finite when the scores
    separate the classes, as they may on a few dozen validation patients. With one input this is Platt scaling;
    with the CT logit and the clinical log-odds it is the fusion.

    Parameters
    ----------
    x : array-like of shape (n,) or (n, k)
        Finite scores, one column per input.
    y : array-like of shape (n,)
        Labels, 1 = poor; both classes needed.
    inputs : sequence of str
        Names of the ``k`` inputs.

    Returns
    -------
    LogisticMap
    """
    inputs = tuple(inputs)
    x = np.asarray(x, dtype=float).reshape(len(np.asarray(y)), -1)
    y = np.asarray(y).astype(int)
    if x.shape[1] != len(inputs):
        raise ValueError(f"fit_logistic_map: x has {x.shape[1]} column(s) for inputs {list(inputs)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("fit_logistic_map: the scores must be finite")
    m = int(y.sum())
    n = len(y) - m
    if m == 0 or n == 0:
        raise ValueError(f"fit_logistic_map: the fitting patients need both classes; they have {m} poor of {len(y)}")
    target = np.where(y == 1, (m + 1.0) / (m + 2.0), 1.0 / (n + 2.0))
    lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=10_000, tol=1e-10)
    with threadpool_limits(limits=1):
        lr.fit(np.vstack([x, x]), np.concatenate([np.ones(len(y)), np.zeros(len(y))]),
               sample_weight=np.concatenate([target, 1.0 - target]))
    return LogisticMap(inputs=inputs, intercept=float(lr.intercept_[0]), coef=tuple(float(c) for c in lr.coef_[0]),
                       n_fit=len(y), n_fit_poor=m)


def _ct_logit(score: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(score, dtype=float), LOGIT_EPS, 1.0 - LOGIT_EPS))


def calibration_intercept_slope(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Calibration intercept (calibration-in-the-large) and slope of predicted probabilities.

    ``slope``: ``b`` of the logistic regression ``logit P(poor) = a + b * logit(prob)``; ``intercept``: ``a`` of
    ``logit P(poor) = a + logit(prob)`` (the slope fixed at 1, ``logit(prob)`` an offset). Ideal values 0 and 1;
    a slope below 1 means predictions too extreme. Maximum likelihood, no penalty; ``prob`` is clipped to
    ``[LOGIT_EPS, 1 - LOGIT_EPS]`` before the logit.

    Parameters
    ----------
    y : array-like of shape (n,)
        Labels, 1 = poor.
    prob : array-like of shape (n,)
        Predicted probabilities of poor response.

    Returns
    -------
    dict
        ``intercept``, ``slope``; NaN without both classes, and ``slope`` NaN when ``logit(prob)`` separates
        the classes (the maximum-likelihood slope is infinite) or is constant.
    """
    y = np.asarray(y).astype(int)
    o = _ct_logit(prob)
    m = int(y.sum())
    if m == 0 or m == len(y):
        return {"intercept": float("nan"), "slope": float("nan")}
    intercept = float(brentq(lambda a: float(np.sum(y - expit(a + o))), -50.0, 50.0, xtol=1e-12))
    separated = o[y == 1].min() > o[y == 0].max() or o[y == 1].max() < o[y == 0].min()
    if separated or np.ptp(o) == 0:
        return {"intercept": intercept, "slope": float("nan")}
    lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=10_000, tol=1e-12).fit(o[:, None], y)
    return {"intercept": intercept, "slope": float(lr.coef_[0, 0])}


# --------------------------------------------------------------------------------------------- CT scores


def fold_scores(preds: pd.DataFrame, method_id: str) -> pd.DataFrame:
    """Seed-averaged final-stage scores of one method in every cross-validation fold.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows (any folds; only ``fold >= 0`` is used).
    method_id : str
        Method ID.

    Returns
    -------
    pandas.DataFrame
        ``repeat, fold, patient_id, split, y, score``: one row per patient of each (repeat, fold), its score the
        mean over the seeds (patients whose split differs between seeds are left out).

    Raises
    ------
    ValueError
        Without cross-validation rows of the method.
    """
    df = validate_predictions(preds)
    rows = df[(df["fold"] >= 0) & (df["method"] == method_id)]
    if rows.empty:
        raise ValueError(f"fold_scores: method {method_id!r} has no cross-validation predictions (fold >= 0)")
    rows = final_stage(rows)
    n_seeds = rows.groupby(["repeat", "fold"])["seed"].nunique().rename("n_all")
    agg = (rows.groupby(["repeat", "fold", "patient_id", "split"], sort=True)
           .agg(y=("y", "first"), score=("score", "mean"), n_seeds=("seed", "nunique")).reset_index())
    agg = agg.join(n_seeds, on=["repeat", "fold"])
    agg = agg[agg["n_seeds"] == agg["n_all"]]
    return agg[["repeat", "fold", "patient_id", "split", "y", "score"]].astype({"repeat": int, "fold": int})


def choose_on_fold_validation(preds: pd.DataFrame, candidates: Sequence[Method]) -> tuple[pd.DataFrame, Method]:
    """The candidate with the highest mean validation AUC over the cross-validation folds (test rows unused).

    The cross-validation counterpart of :func:`pdstudy.evaluate.choose_on_validation`: each candidate's
    seed-averaged final-stage AUC on each fold's validation patients, averaged over folds and repeats; ties to
    the first candidate; no fold with validation patients of both classes: the first candidate.

    Parameters
    ----------
    preds : pandas.DataFrame
        Prediction rows holding every candidate's cross-validation folds.
    candidates : sequence of Method
        Candidates, in order of preference for ties.

    Returns
    -------
    selection : pandas.DataFrame
        ``method_id``, ``method``, ``n_folds`` (folds with an AUC), ``val_auc`` (mean), ``chosen``.
    chosen : Method
    """
    candidates = list(candidates)
    if not candidates or not all(isinstance(m, Method) for m in candidates):
        raise ValueError(f"candidates must be a non-empty sequence of Method, got {candidates!r}")
    rows = []
    for m in candidates:
        scores = fold_scores(preds, m.id)
        val = scores[scores["split"] == "val"]
        aucs = [roc_auc(g["y"].to_numpy(), g["score"].to_numpy()) for _, g in val.groupby(["repeat", "fold"])
                if g["y"].nunique() == 2]
        rows.append({"method_id": m.id, "method": m.label, "n_folds": len(aucs),
                     "val_auc": float(np.mean(aucs)) if aucs else float("nan")})
    selection = pd.DataFrame(rows)
    pick = int(selection["val_auc"].idxmax()) if selection["val_auc"].notna().any() else 0
    selection["chosen"] = selection.index == pick
    return selection, candidates[pick]


# --------------------------------------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class ClinicalFusion:
    """The clinical model, the CT models and their fusions on the test patients.

    Attributes
    ----------
    protocol : {"fixed", "cv"}
    fit_on : {"val", "oof"}
        Where the recalibrations, fusions and ``youden_val`` thresholds were fitted: the validation patients
        (of the fixed split or of each fold), or the out-of-fold test patients of the repeat's other folds.
    ct_methods : tuple of str
        The CT models' method IDs.
    scores : pandas.DataFrame
        One row per test patient, model and repeat: ``repeat, fold, patient_id, y, model`` (``clinical``, ``ct``,
        ``fusion``), ``ct_method`` ("" for the clinical model), ``score`` (the model's own output: the clinical
        log-odds, the CT score, the fused probability), ``prob`` (probability: the logistic map of the row's fit
        patients), ``threshold`` (the fold's ``youden_val`` threshold on ``score``).
    fits : pandas.DataFrame
        One row per logistic map: ``repeat, fold, model, ct_method, intercept, coef_ct, coef_clinical, n_fit,
        n_fit_poor, n_fit_good, threshold``.
    clinical_fits : pandas.DataFrame
        One row per clinical model: ``repeat, fold, C, n_train, n_train_poor, n_train_good, inner_folds,
        covariates, dropped``.
    clinical_models : dict
        ``(repeat, fold) -> ClinicalModel``.
    missing : pandas.DataFrame
        :func:`missing_counts` over the patients of the split assignment.
    excluded : pandas.DataFrame
        ``repeat, fold, patient_id, split, reason``: validation or test patients without a CT score, left out.
    """

    protocol: str
    fit_on: str
    ct_methods: tuple[str, ...]
    scores: pd.DataFrame
    fits: pd.DataFrame
    clinical_fits: pd.DataFrame
    clinical_models: dict[tuple[int, int], ClinicalModel]
    missing: pd.DataFrame
    excluded: pd.DataFrame


def _check_ct(ct_scores: Mapping[str, pd.DataFrame], cv: bool) -> dict[str, pd.DataFrame]:
    if not isinstance(ct_scores, Mapping) or not ct_scores:
        raise ValueError("ct_scores must be a non-empty mapping method_id -> patient scores (patient_id, split, y, "
                         "score)")
    need = {"patient_id", "split", "score"} | ({"repeat", "fold"} if cv else set())
    out = {}
    for mid, df in ct_scores.items():
        method_from_id(mid)
        if not isinstance(df, pd.DataFrame) or not need <= set(df.columns):
            raise ValueError(f"ct_scores[{mid!r}] must be a DataFrame with columns {sorted(need)} "
                             f"({'fold_scores' if cv else 'pdstudy.evaluate.method_scores'} of the predictions)")
        df = df.copy()
        df["patient_id"] = df["patient_id"].astype(str)
        if not cv:
            df["repeat"], df["fold"] = 0, -1
        if not np.all(np.isfinite(df["score"].to_numpy(dtype=float))):
            raise ValueError(f"ct_scores[{mid!r}]: the scores must be finite")
        out[mid] = df
    return out


def _fold_inputs(clinical: pd.DataFrame, group: pd.DataFrame, ct: dict[str, pd.DataFrame], repeat: int, fold: int,
                 seed: int, cs: Sequence[float]) -> tuple[pd.DataFrame, ClinicalModel, list[dict[str, Any]]]:
    """Validation and test patients of one (repeat, fold) with the clinical log-odds and every CT score."""
    model = fit_clinical_model(clinical, group, seed=seed, cs=cs)
    rows = group[group["split"].isin(["val", "test"])].copy()
    rows["lp"] = model.linear_predictor(clinical, rows["patient_id"]) if len(rows) else np.zeros(0)
    excluded: list[dict[str, Any]] = []
    keep = np.ones(len(rows), dtype=bool)
    for mid, df in ct.items():
        sub = df[(df["repeat"] == repeat) & (df["fold"] == fold)].drop_duplicates("patient_id").set_index("patient_id")
        split_of = sub["split"].reindex(rows["patient_id"]).to_numpy()
        clash = [(p, s, t) for p, s, t in zip(rows["patient_id"], rows["split"], split_of)
                 if isinstance(t, str) and t != s]
        if clash:
            p, s, t = clash[0]
            where = "" if fold < 0 else f" (repeat {repeat}, fold {fold})"
            raise ValueError(f"ct_scores[{mid!r}]: patient {p!r} is {t!r} in the CT predictions but {s!r} in the "
                             f"split assignment{where}; the clinical model must use the CNNs' patients")
        rows[f"ct::{mid}"] = sub["score"].reindex(rows["patient_id"]).to_numpy(dtype=float)
        absent = np.isnan(rows[f"ct::{mid}"].to_numpy())
        for p, s in zip(rows["patient_id"].to_numpy()[absent & keep], rows["split"].to_numpy()[absent & keep]):
            excluded.append({"repeat": repeat, "fold": fold, "patient_id": p, "split": s,
                             "reason": f"no score of {mid} (not in every seed's {s} split)"})
        keep &= ~absent
    return rows[keep].reset_index(drop=True), model, excluded


def _apply_models(fit: pd.DataFrame, apply: pd.DataFrame, ct_methods: Sequence[str], repeat: int,
                  fold: int) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
    """Fit each model's logistic map and threshold on ``fit``; score the ``apply`` patients."""
    y_fit = fit["y"].to_numpy()
    if y_fit.sum() == 0 or y_fit.sum() == len(y_fit):
        where = "the validation patients" if fold < 0 else f"repeat {repeat}, fold {fold}'s fitting patients"
        raise ValueError(f"clinical fusion: {where} need poor and good responders to fit the recalibration, the "
                         f"fusion and the thresholds; they have {int(y_fit.sum())} poor of {len(y_fit)}")
    specs: list[tuple[str, str, list[str]]] = [("clinical", "", ["clinical_lp"])]
    for mid in ct_methods:
        specs += [("ct", mid, ["ct_logit"]), ("fusion", mid, ["ct_logit", "clinical_lp"])]
    frames, fits = [], []
    for model, mid, inputs in specs:
        def design(df: pd.DataFrame, mid: str = mid, inputs: list[str] = inputs) -> np.ndarray:
            cols = {"clinical_lp": df["lp"].to_numpy(dtype=float)}
            if mid:
                cols["ct_logit"] = _ct_logit(df[f"ct::{mid}"].to_numpy(dtype=float))
            return np.column_stack([cols[i] for i in inputs])

        lmap = fit_logistic_map(design(fit), y_fit, inputs)
        if model == "clinical":
            s_fit, s_apply = fit["lp"].to_numpy(dtype=float), apply["lp"].to_numpy(dtype=float)
        elif model == "ct":
            s_fit, s_apply = fit[f"ct::{mid}"].to_numpy(dtype=float), apply[f"ct::{mid}"].to_numpy(dtype=float)
        else:
            s_fit, s_apply = lmap.predict(design(fit)), lmap.predict(design(apply))
        threshold = youden_threshold(y_fit, s_fit)
        coef = dict(zip(inputs, lmap.coef))
        fits.append({"repeat": repeat, "fold": fold, "model": model, "ct_method": mid, "intercept": lmap.intercept,
                     "coef_ct": coef.get("ct_logit", float("nan")),
                     "coef_clinical": coef.get("clinical_lp", float("nan")),
                     "n_fit": lmap.n_fit, "n_fit_poor": lmap.n_fit_poor, "n_fit_good": lmap.n_fit - lmap.n_fit_poor,
                     "threshold": threshold})
        frames.append(pd.DataFrame({"repeat": repeat, "fold": fold, "patient_id": apply["patient_id"].to_numpy(),
                                    "y": apply["y"].to_numpy(), "model": model, "ct_method": mid, "score": s_apply,
                                    "prob": lmap.predict(design(apply)), "threshold": threshold}))
    return frames, fits


def _clinical_fit_row(model: ClinicalModel, repeat: int, fold: int) -> dict[str, Any]:
    return {"repeat": repeat, "fold": fold, "C": model.C, "n_train": model.n_train, "n_train_poor": model.n_train_poor,
            "n_train_good": model.n_train_good, "inner_folds": model.inner_folds,
            "covariates": ",".join(model.covariates), "dropped": ",".join(model.dropped)}


_EXCLUDED_COLUMNS: Final = ["repeat", "fold", "patient_id", "split", "reason"]


def clinical_fusion(
    clinical: pd.DataFrame,
    patients: pd.DataFrame,
    ct_scores: Mapping[str, pd.DataFrame],
    *,
    seed: int = 0,
    cs: Sequence[float] = CLINICAL_CS,
) -> ClinicalFusion:
    """Clinical model, CT models and their fusions on the test patients of the fixed split.

    The clinical model is fitted on the training patients (:func:`fit_clinical_model`). On the validation
    patients, three logistic maps per CT model are fitted (:func:`fit_logistic_map`): the clinical log-odds
    alone (its recalibration), the CT score's logit alone (Platt scaling) and both (the fusion); each model's
    ``youden_val`` threshold is chosen there too. Test patients are only scored.

    Parameters
    ----------
    clinical : pandas.DataFrame
        Manifest rows with the covariates (:func:`clinical_table`), holding every patient of ``patients``.
    patients : pandas.DataFrame
        The split assignment of the CNNs (``patient_id``, ``split`` train / val / test, ``response`` or ``y``),
        e.g. the patients of :meth:`pdstudy.study.Study.splits` on the fixed split.
    ct_scores : mapping
        ``method_id -> pdstudy.evaluate.method_scores(preds, method_id)``: each CT model's seed-averaged
        score per patient; a patient's split there must be its split in ``patients``.
    seed : int, default 0
        Seed of the clinical model's inner folds.
    cs : sequence of float
        Candidate values of the clinical model's ``C``.

    Returns
    -------
    ClinicalFusion
        ``protocol="fixed"``, ``fit_on="val"``; repeat 0, fold -1.

    Raises
    ------
    ValueError
        On invalid inputs, a split that differs from the CT predictions', or validation or test patients
        without both classes.
    """
    assign = _assignment(patients, "clinical_fusion").drop_duplicates("patient_id")
    ct = _check_ct(ct_scores, cv=False)
    rows, model, excluded = _fold_inputs(clinical, assign, ct, 0, -1, seed, cs)
    fit, test = rows[rows["split"] == "val"], rows[rows["split"] == "test"]
    if test["y"].nunique() < 2:
        raise ValueError(f"clinical_fusion: the test patients need poor and good responders; they have "
                         f"{int(test['y'].sum())} poor of {len(test)}")
    frames, fits = _apply_models(fit, test, list(ct), 0, -1)
    return ClinicalFusion(protocol="fixed", fit_on="val", ct_methods=tuple(ct),
                          scores=pd.concat(frames, ignore_index=True),
                          fits=pd.DataFrame(fits), clinical_fits=pd.DataFrame([_clinical_fit_row(model, 0, -1)]),
                          clinical_models={(0, -1): model}, missing=missing_counts(clinical, assign),
                          excluded=pd.DataFrame(excluded, columns=_EXCLUDED_COLUMNS))


def clinical_fusion_cv(
    clinical: pd.DataFrame,
    folds: pd.DataFrame,
    ct_scores: Mapping[str, pd.DataFrame],
    *,
    fit_on: str = "val",
    seed: int = 0,
    cs: Sequence[float] = CLINICAL_CS,
) -> ClinicalFusion:
    """The comparison of :func:`clinical_fusion` under cross-validation: every fold, pooled per repeat.

    In each fold a clinical model is fitted on the fold's training patients (the CNN's). Each model's
    logistic map (recalibration or fusion) and ``youden_val`` threshold for the fold's test patients are
    fitted on

    ``"val"`` (default)
        the fold's own validation patients, as the fixed split does: nothing that depends on the fold's test
        patients enters the fold's fitted parameters (the CT model's thresholds are those of
        :func:`pdstudy.evaluate.cv_summary`).
    ``"oof"``
        the out-of-fold scores of the repeat's other folds: their test patients (the fold's own training and
        validation patients, about four times as many), each scored by its own fold's CNN and clinical model.
        The fold's test patients are not among them, but the other folds' models were trained with them, so
        their labels reach the fold's fusion through those scores: a second-order dependence usual in
        cross-validated stacking (docs/statistics.md), which breaks the rule that no test patient influences a
        fitted parameter.

    Parameters
    ----------
    clinical : pandas.DataFrame
        Manifest rows with the covariates.
    folds : pandas.DataFrame
        The split assignment of every fold: ``repeat``, ``fold``, ``patient_id``, ``split`` (train / val / test),
        ``response`` or ``y``; e.g. the frames of :meth:`pdstudy.study.Study.splits` concatenated.
    ct_scores : mapping
        ``method_id -> fold_scores(preds, method_id)``.
    fit_on : {"val", "oof"}, default "val"
        See above.
    seed : int, default 0
        Seed of the clinical models' inner folds.
    cs : sequence of float
        Candidate values of ``C``.

    Returns
    -------
    ClinicalFusion
        ``protocol="cv"``; every repeat's test patients once each.
    """
    if fit_on not in FIT_ON:
        raise ValueError(f"fit_on must be one of {list(FIT_ON)}, got {fit_on!r}")
    assign = _assignment(folds, "clinical_fusion_cv", extra=("repeat", "fold"))
    ct = _check_ct(ct_scores, cv=True)
    frames, fits, clin_rows, excluded = [], [], [], []
    models: dict[tuple[int, int], ClinicalModel] = {}
    for repeat, rep in assign.groupby("repeat", sort=True):
        per_fold = {}
        for fold, group in rep.groupby("fold", sort=True):
            rows, model, exc = _fold_inputs(clinical, group.drop_duplicates("patient_id"), ct, int(repeat), int(fold),
                                            seed, cs)
            per_fold[int(fold)] = rows
            models[(int(repeat), int(fold))] = model
            clin_rows.append(_clinical_fit_row(model, int(repeat), int(fold)))
            excluded += exc
        tests = {f: r[r["split"] == "test"] for f, r in per_fold.items()}
        ids = pd.concat(tests.values())["patient_id"]
        if ids.duplicated().any():
            raise ValueError(f"clinical_fusion_cv: repeat {repeat}: patient {ids[ids.duplicated()].iloc[0]!r} is a "
                             "test patient in more than one fold")
        for f, rows in per_fold.items():
            fit = rows[rows["split"] == "val"] if fit_on == "val" else \
                pd.concat([t for g, t in tests.items() if g != f], ignore_index=True)
            fr, ft = _apply_models(fit, tests[f], list(ct), int(repeat), f)
            frames += fr
            fits += ft
    return ClinicalFusion(protocol="cv", fit_on=fit_on, ct_methods=tuple(ct),
                          scores=pd.concat(frames, ignore_index=True),
                          fits=pd.DataFrame(fits), clinical_fits=pd.DataFrame(clin_rows), clinical_models=models,
                          missing=missing_counts(clinical, assign.drop_duplicates("patient_id").assign(split="cv")),
                          excluded=pd.DataFrame(excluded, columns=_EXCLUDED_COLUMNS))


# --------------------------------------------------------------------------------------------- the table


def _label(model: str, ct_method: str) -> str:
    return _LABELS[model].format(m=method_from_id(ct_method).label if ct_method else "")


def _pooled_counts(rows: pd.DataFrame, thresholds: pd.Series | float) -> dict[str, int]:
    pred = rows["score"].to_numpy() >= np.asarray(thresholds, dtype=float)
    y = rows["y"].to_numpy() == 1
    return {"tp": int((pred & y).sum()), "fp": int((pred & ~y).sum()), "tn": int((~pred & ~y).sum()),
            "fn": int((~pred & y).sum())}


def _policy_cells(prefix: str, counts: dict[str, int], threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {f"{prefix}_threshold": threshold}
    out.update({f"{prefix}_{k}": v for k, v in counts.items()})
    out.update({f"{prefix}_{k}": v for k, v in rate_metrics(**counts).items()})
    return out


def clinical_fusion_table(result: ClinicalFusion, *, auc_ci: str = "logit") -> pd.DataFrame:
    """Clinical model vs CT model vs fusion on the test patients: one row per model (and repeat).

    Parameters
    ----------
    result : ClinicalFusion
        :func:`clinical_fusion` or :func:`clinical_fusion_cv`.
    auc_ci : {"logit", "wald"}, default "logit"
        Scale of the DeLong AUC intervals.

    Returns
    -------
    pandas.DataFrame
        Rows: per repeat, the clinical model, then for each CT method its CT-only and fusion rows. Columns:
        ``repeat, model, ct_method, method`` (label); the patients: ``n_test``, ``n_test_poor``, ``n_test_good``
        (test patients, pooled over the folds), ``n_fit``, ``n_fit_poor``, ``n_fit_good`` (patients of the
        logistic map and threshold; under CV the smallest fold's), ``n_train``, ``n_train_poor``,
        ``n_train_good`` (the clinical model's and the CNN's training patients; under CV the smallest fold's);
        ``test_auc``, ``test_auc_lo``, ``test_auc_hi`` (DeLong on ``score``); ``p_vs_clinical``, ``p_vs_ct``
        (paired two-sided DeLong tests, exploratory: CT vs clinical on the CT rows, fusion vs each on the fusion
        rows); for ``P`` in ``youden_val`` (each fold's threshold from its fitting patients, counts pooled) and
        ``youden_test`` (chosen on the pooled test scores; optimistic): ``P_threshold`` (NaN when folds differ),
        ``P_tp`` .. ``P_fn``, ``P_acc`` .. ``P_spe_hi``; ``cal_intercept``, ``cal_slope`` and ``brier`` of
        ``prob`` on the test patients; the fitted map (fixed split): ``fit_intercept``, ``fit_coef_ct``,
        ``fit_coef_clinical`` (NaN under CV); ``clinical_C`` (the clinical model's ``C``; NaN under CV when the
        folds differ). ``attrs["table"] = "clinical_fusion"``, ``attrs["notes"]`` says what was fitted on which
        patients.
    """
    if not isinstance(result, ClinicalFusion):
        raise TypeError(f"clinical_fusion_table expects a ClinicalFusion, got {type(result).__name__}")
    check_auc_ci(auc_ci, "auc_ci")
    s, fits, cf = result.scores, result.fits, result.clinical_fits
    rows: list[dict[str, Any]] = []
    for repeat, rep in s.groupby("repeat", sort=True):
        order = [("clinical", ""), *[(m, mid) for mid in result.ct_methods for m in ("ct", "fusion")]]
        by = {k: g.sort_values("patient_id").reset_index(drop=True) for k, g in rep.groupby(["model", "ct_method"])}
        clin = by[("clinical", "")]
        for model, mid in order:
            g = by[(model, mid)]
            y, score = g["y"].to_numpy(), g["score"].to_numpy(dtype=float)
            f = fits[(fits["repeat"] == repeat) & (fits["model"] == model) & (fits["ct_method"] == mid)]
            c = cf[cf["repeat"] == repeat]
            smallest = f.loc[f[["n_fit_poor", "n_fit_good"]].min(axis=1).idxmin()]
            small_train = c.loc[c[["n_train_poor", "n_train_good"]].min(axis=1).idxmin()]
            auc, lo, hi = delong_auc_ci(y, score, method=auc_ci)
            row: dict[str, Any] = {
                "repeat": int(repeat), "model": model, "ct_method": mid, "method": _label(model, mid),
                "n_test": len(y), "n_test_poor": int(y.sum()), "n_test_good": len(y) - int(y.sum()),
                "n_fit": int(smallest["n_fit"]), "n_fit_poor": int(smallest["n_fit_poor"]),
                "n_fit_good": int(smallest["n_fit_good"]), "n_train": int(small_train["n_train"]),
                "n_train_poor": int(small_train["n_train_poor"]), "n_train_good": int(small_train["n_train_good"]),
                "test_auc": auc, "test_auc_lo": lo, "test_auc_hi": hi,
                "p_vs_clinical": float("nan"), "p_vs_ct": float("nan"),
            }
            if model != "clinical":
                if not np.array_equal(g["patient_id"].to_numpy(), clin["patient_id"].to_numpy()):
                    raise ValueError("clinical_fusion_table: the models' test patients differ")
                row["p_vs_clinical"] = delong_test(y, score, clin["score"].to_numpy(dtype=float))[1]
            if model == "fusion":
                row["p_vs_ct"] = delong_test(y, score, by[("ct", mid)]["score"].to_numpy(dtype=float))[1]
            thr = g["threshold"].to_numpy(dtype=float)
            row.update(_policy_cells("youden_val", _pooled_counts(g, thr),
                                     float(thr[0]) if np.unique(thr).size == 1 else float("nan")))
            t_test = youden_threshold(y, score)
            row.update(_policy_cells("youden_test", _pooled_counts(g, t_test), t_test))
            prob = g["prob"].to_numpy(dtype=float)
            cal = calibration_intercept_slope(y, prob)
            row.update(cal_intercept=cal["intercept"], cal_slope=cal["slope"], brier=brier_score(y, prob))
            one = len(f) == 1
            row.update(fit_intercept=float(f["intercept"].iloc[0]) if one else float("nan"),
                       fit_coef_ct=float(f["coef_ct"].iloc[0]) if one else float("nan"),
                       fit_coef_clinical=float(f["coef_clinical"].iloc[0]) if one else float("nan"),
                       clinical_C=float(c["C"].iloc[0]) if c["C"].nunique() == 1 else float("nan"))
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(table="clinical_fusion", notes=_notes(result, table, auc_ci))
    return table


def _range(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _notes(result: ClinicalFusion, table: pd.DataFrame, auc_ci: str) -> list[str]:
    cf, fits = result.clinical_fits, result.fits
    cv = result.protocol == "cv"
    where = "each fold's training patients" if cv else "the training patients"
    cs = cf["C"]
    c_text = f"C = {cs.iloc[0]:.3g}" if cs.nunique() == 1 else f"C = {cs.min():.3g}-{cs.max():.3g} across folds"
    used = cf["covariates"].iloc[0].replace(",", ", ")
    dropped = sorted({d for v in cf["dropped"] for d in v.split(",") if d})
    notes = [
        f"Clinical model: L2 logistic regression on {used} (age median-imputed with a missing indicator and "
        "standardised; the categories one-hot encoded with an explicit 'missing' level), fitted on "
        f"{where} only ({_range(cf['n_train'])} patients, {_range(cf['n_train_poor'])} poor / "
        f"{_range(cf['n_train_good'])} good); {c_text}, chosen from {len(CLINICAL_CS)} values "
        f"({min(CLINICAL_CS):g}-{max(CLINICAL_CS):g}) by the lowest log-loss of a stratified "
        f"{_range(cf['inner_folds'])}-fold cross-validation inside them (fixed seed)."
        + (f" Left out (no value in training): {', '.join(dropped)}." if dropped else ""),
    ]
    mp = result.missing
    split_cols = [c for c in mp.columns if c.startswith("n_missing_")]
    miss = [f"{r['covariate']} {r['n_missing']}" + (" (" + " / ".join(f"{int(r[c])} {c[10:]}" for c in split_cols) + ")"
                                                    if r["n_missing"] else "")
            for r in mp.to_dict("records")]
    notes.append(f"Missing values (of {int(mp['n_patients'].iloc[0])} patients, none dropped): " + ", ".join(miss)
                 + ".")
    fit_words = {"val": "each fold's validation patients" if cv else "the validation patients",
                 "oof": "the out-of-fold test patients of the repeat's other folds (each scored by its own fold's "
                        "CNN and clinical model)"}[result.fit_on]
    notes.append(
        "CT-only: the CNN's score (seed-averaged, final stage), Platt-recalibrated for calibration and decision "
        "curves. Clinical-only: the clinical model's log-odds, recalibrated the same way. Fusion: logistic "
        "regression of poor response on logit(CT score) and the clinical log-odds (two inputs). These logistic "
        f"maps (Platt's target smoothing, no penalty) and every 'Youden on val' threshold are fitted on {fit_words} "
        f"({_range(fits['n_fit'])} patients, {_range(fits['n_fit_poor'])} poor / {_range(fits['n_fit_good'])} good); "
        "the test patients are only scored.")
    if not cv:
        for mid in result.ct_methods:
            f = fits[(fits["model"] == "fusion") & (fits["ct_method"] == mid)].iloc[0]
            notes.append(f"Fusion with {method_from_id(mid).label}: logit P(poor) = {f['intercept']:.3f} + "
                         f"{f['coef_ct']:.3f} x logit(CT score) + {f['coef_clinical']:.3f} x clinical log-odds.")
    else:
        notes.append(f"Cross-validation ({result.scores['repeat'].nunique()} repeat(s)): each repeat pools its folds' "
                     "test patients (each once); AUCs and p-values are on the pooled scores, the 'Youden on val' "
                     "counts are pooled over the folds (each fold's own threshold). Repeats share patients: their "
                     "spread is not a standard error.")
        if result.fit_on == "oof":
            notes.append("The other folds' CNNs and clinical models were trained with the fold's test patients among "
                         "their training patients, so the out-of-fold scores the fold's fusion is fitted on are not "
                         "entirely independent of them (a second-order dependence of cross-validated stacking).")
    notes += [
        ci_note(auc_ci),
        "p vs clinical / p vs CT: paired two-sided DeLong tests of equal AUCs on the same test patients (fusion vs "
        "CT, fusion vs clinical, CT vs clinical), exploratory: not adjusted for multiplicity.",
        "Threshold policies: 'Youden on val' is chosen on the fitting patients above and applied unchanged to the "
        "test patients (honest); 'Youden on test' is chosen on the test patients themselves (optimistic).",
        "Calibration on the test patients of the recalibrated (or fused) probability: intercept (calibration-in-the-"
        "large, slope fixed at 1; ideal 0) and slope (ideal 1; NaN when the test patients are separated), Brier "
        "score.",
    ]
    if not result.excluded.empty:
        exc = result.excluded.drop_duplicates(["patient_id", "split"])
        notes.append(f"Left out: {len(exc)} validation/test patient(s) without a CT score of every model ("
                     + ", ".join(sorted(exc["patient_id"].astype(str))[:10]) + ").")
    small = [n for n, k in (("test", "n_test"), ("fitting", "n_fit"), ("training", "n_train"))
             if min(int(table[f"{k}_poor"].min()), int(table[f"{k}_good"].min())) < MIN_CLASS_PATIENTS]
    if small:
        notes.append(f"{SMALL_MARK} Small samples: fewer than {MIN_CLASS_PATIENTS} patients of one class among the "
                     f"{' and '.join(small)} patients; read the numbers with their intervals.")
    return notes
