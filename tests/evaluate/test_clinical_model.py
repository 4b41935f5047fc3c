"""The clinical model on the synthetic cohort's plan (no DICOM, no CNN): its signal, its choice of C and its
coefficients against an independent fit, and missing values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold

from pdstudy.data.splits import carve_validation
from pdstudy.data.synth import plan_cohort
from pdstudy.evaluate import (
    CLINICAL_CATEGORIES,
    CLINICAL_CS,
    MISSING_LEVEL,
    clinical_cv_scores,
    clinical_fusion,
    clinical_fusion_table,
    clinical_table,
    fit_clinical_model,
    missing_counts,
)
from pdstudy.stats import delong_auc_ci


@pytest.fixture(scope="module")
def plans() -> dict[float, pd.DataFrame]:
    """The default cohort's manifest (164 screened) at clinical_signal 1 and 0, without writing any DICOM."""
    return {s: plan_cohort(clinical_signal=s) for s in (1.0, 0.0)}


def included(plan: pd.DataFrame) -> pd.DataFrame:
    """The 140 included patients: the 24 excluded (19 metastasis, 5 without a portal-venous series) have no split."""
    return plan[plan["split"] != ""].reset_index(drop=True)


def fixed_split(plan: pd.DataFrame) -> pd.DataFrame:
    """The fixed split as a Study draws it: validation carved from the training patients with split_seed 0."""
    return carve_validation(included(plan)[["patient_id", "split", "response", "recist"]], 0.2, seed=0)


@pytest.mark.parametrize("signal", [1.0, 0.0])
def test_cross_validated_auc_follows_the_clinical_signal(plans, signal):
    """Pooled out-of-fold scores, 5 stratified folds over the 140 included patients, DeLong 95% CI."""
    inc = included(plans[signal])
    assert len(inc) == 140
    oof = clinical_cv_scores(plans[signal], inc, folds=5, seed=0)
    assert sorted(oof["patient_id"]) == sorted(inc["patient_id"]) and oof["fold"].nunique() == 5
    auc, lo, hi = delong_auc_ci(oof["y"].to_numpy(), oof["score"].to_numpy())
    if signal == 1.0:
        assert lo > 0.5, f"clinical AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] should exceed chance at clinical_signal 1"
    else:
        assert lo <= 0.5 <= hi, f"clinical AUC {auc:.3f} [{lo:.3f}, {hi:.3f}] should cover 0.5 at clinical_signal 0"


def design(table: pd.DataFrame, train_ids: list[str]) -> np.ndarray:
    """The encoded covariates built by hand: standardised age (training mean and SD), one-hot categories."""
    age = table["age"].to_numpy(dtype=float)
    train_age = table.loc[train_ids, "age"].to_numpy(dtype=float)
    cols = [(age - train_age.mean()) / train_age.std()]
    for cov, codes in CLINICAL_CATEGORIES.items():
        cols += [(table[cov] == level).to_numpy(dtype=float) for level in (*codes, MISSING_LEVEL)]
    return np.column_stack(cols)


def test_choice_of_c_and_coefficients_match_an_independent_fit(plans):
    plan = plans[1.0]
    patients = fixed_split(plan)
    model = fit_clinical_model(plan, patients, seed=3)
    train = patients[patients["split"] == "train"].sort_values("patient_id")
    ids = list(train["patient_id"])
    y = (train["response"] == "poor").astype(int).to_numpy()
    x = design(clinical_table(plan), ids)
    table = clinical_table(plan)
    x_train = x[[table.index.get_loc(i) for i in ids]]
    folds = list(StratifiedKFold(5, shuffle=True, random_state=3).split(x_train, y))
    losses = []
    for c in CLINICAL_CS:
        fold_losses = []
        for tr, te in folds:
            lr = LogisticRegression(C=c, max_iter=10_000).fit(x_train[tr], y[tr])
            fold_losses.append(log_loss(y[te], lr.predict_proba(x_train[te])[:, 1]))
        losses.append(np.mean(fold_losses))
    assert model.C == CLINICAL_CS[int(np.argmin(losses))]
    np.testing.assert_allclose(model.cv_log_loss["log_loss"], losses, rtol=1e-6)
    lr = LogisticRegression(C=model.C, max_iter=10_000).fit(x_train, y)
    np.testing.assert_allclose(model.coefficients.to_numpy(), [lr.intercept_[0], *lr.coef_[0]], atol=1e-4)
    others = [table.index.get_loc(i) for i in patients.loc[patients["split"] != "train", "patient_id"]]
    np.testing.assert_allclose(model.linear_predictor(plan, patients.loc[patients["split"] != "train", "patient_id"]),
                               lr.decision_function(x[others]), atol=1e-4)
    assert model.n_train == len(ids) and model.n_train_poor == int(y.sum()) and model.train_ids == tuple(ids)


def with_gaps(plan: pd.DataFrame, patients: pd.DataFrame) -> pd.DataFrame:
    """Missing values: 5 training ages, 3 training Lauren types, 2 test sexes, one test patient with none at all;
    the CEA column absent."""
    out = plan.drop(columns="cea").copy()
    train = patients.loc[patients["split"] == "train", "patient_id"].to_numpy()
    test = patients.loc[patients["split"] == "test", "patient_id"].to_numpy()
    out.loc[out["patient_id"].isin(train[:5]), "age"] = ""
    out.loc[out["patient_id"].isin(train[5:8]), "lauren"] = ""
    out.loc[out["patient_id"].isin(test[:2]), "sex"] = np.nan
    out.loc[out["patient_id"] == test[2], ["age", "sex", "lauren", "ca199", "ct_stage", "cn_stage", "cm_stage"]] = ""
    return out


def test_missing_values_are_handled_and_reported(plans):
    patients = fixed_split(plans[1.0])
    plan = with_gaps(plans[1.0], patients)
    counts = missing_counts(plan, patients).set_index("covariate")
    per_split = ["n_missing_train", "n_missing_val", "n_missing_test", "n_missing"]
    assert counts.loc["age", per_split].tolist() == [5, 0, 1, 6]
    assert counts.loc["lauren", "n_missing"] == 4 and counts.loc["sex", "n_missing_test"] == 3
    assert counts.loc["cea", "n_missing"] == 140 and (counts["n_patients"] == 140).all()

    model = fit_clinical_model(plan, patients)
    assert "cea" not in model.covariates and model.dropped == ("cea",)
    assert {"age_missing", "lauren=missing", "sex=missing"} <= set(model.coefficients.index)
    train_ages = clinical_table(plan).loc[list(model.train_ids), "age"]
    imputer = model.pipeline.named_steps["prepare"].named_transformers_["age"].named_steps["impute"]
    assert imputer.statistics_[0] == np.nanmedian(train_ages)
    lp = model.linear_predictor(plan, patients["patient_id"])
    assert len(lp) == len(patients) and np.isfinite(lp).all()

    ct = {"baseline:efficientnet_b7": patients.assign(y=(patients["response"] == "poor").astype(int),
                                                        score=np.linspace(0.1, 0.9, len(patients)))}
    notes = " ".join(clinical_fusion_table(clinical_fusion(plan, patients, ct)).attrs["notes"])
    assert "age 6 (5 train / 0 val / 1 test)" in notes and "cea 140" in notes
    assert "Left out (no value in training): cea" in notes


def test_bad_clinical_values_name_the_patient(plans):
    plan = plans[1.0].copy()
    pid = plan["patient_id"].iloc[3]
    with pytest.raises(ValueError, match=f"{pid}.*'lauren'.*unknown code 'signet'"):
        clinical_table(plan.assign(lauren=np.where(plan["patient_id"] == pid, "signet", plan["lauren"])))
    with pytest.raises(ValueError, match=f"{pid}.*'age'"):
        clinical_table(plan.assign(age=np.where(plan["patient_id"] == pid, "sixty", plan["age"])))
    patients = fixed_split(plan)
    with pytest.raises(ValueError, match="no row for patient"):
        fit_clinical_model(plan[plan["patient_id"] != patients["patient_id"].iloc[0]], patients)
    with pytest.raises(ValueError, match="at least 2 poor"):
        fit_clinical_model(plan, patients.assign(response="good"))
