"""Fusion of the CT score with the clinical model and their comparison: no test patient influences a fitted
parameter, and every number of the table against an independent computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from pdstudy.data.splits import carve_validation, stratified_folds
from pdstudy.data.synth import plan_cohort
from pdstudy.evaluate import (
    FUSION_PD_MODEL,
    calibration_intercept_slope,
    choose_on_fold_validation,
    clinical_fusion,
    clinical_fusion_cv,
    clinical_fusion_table,
    fit_logistic_map,
    fold_scores,
)
from pdstudy.stats import recalibrate

BASELINE = "baseline:efficientnet_b3"
SMALL_CS = (0.01, 0.1, 1.0)  # a short grid keeps the cross-validation tests fast


@pytest.fixture(scope="module")
def plan() -> pd.DataFrame:
    return plan_cohort()


@pytest.fixture(scope="module")
def patients(plan) -> pd.DataFrame:
    """The fixed split of the default cohort's 140 included patients, validation carved with split_seed 0."""
    inc = plan.loc[plan["split"] != "", ["patient_id", "split", "response", "recist"]].reset_index(drop=True)
    return carve_validation(inc, 0.2, seed=0)


def ct_scores(assign: pd.DataFrame, separation: float, seed: int) -> pd.DataFrame:
    """CT scores as pdstudy.evaluate.method_scores returns them: a binormal latent through the logistic function."""
    y = (assign["response"] == "poor").astype(int).to_numpy()
    z = np.random.default_rng(seed).normal(size=len(y))
    out = assign[[c for c in ("repeat", "fold", "patient_id", "split") if c in assign.columns]].copy()
    return out.assign(y=y, score=expit(separation * y + z - separation / 2))


@pytest.fixture(scope="module")
def fixed(plan, patients):
    cts = {FUSION_PD_MODEL: ct_scores(patients, 1.5, 1), BASELINE: ct_scores(patients, 1.0, 2)}
    result = clinical_fusion(plan, patients, cts)
    return result, cts, clinical_fusion_table(result)


def perturb_patients(plan, patients, cts, ids):
    """Flip the labels of ``ids`` everywhere, change their covariates (some to missing) and their CT scores."""
    who = patients["patient_id"].isin(ids)
    p2 = patients.assign(response=np.where(who, patients["response"].map({"good": "poor", "poor": "good"}),
                                           patients["response"]))
    swap = {"F": "M", "M": "F", "intestinal": "undifferentiated", "diffuse_mixed": "intestinal",
            "undifferentiated": "diffuse_mixed", "normal": "elevated", "elevated": "", "T3": "T4b", "T4a": "T3",
            "T4b": "T4a", "N0-1": "N2-3", "N2-3": "N0-1", "M0": "M1", "M1": "M0"}
    mine = plan["patient_id"].isin(ids)
    plan2 = plan.copy()
    for col in ("sex", "lauren", "cea", "ca199", "ct_stage", "cn_stage", "cm_stage"):
        plan2.loc[mine, col] = plan.loc[mine, col].map(swap)
    plan2.loc[mine, "age"] = np.where(np.arange(mine.sum()) % 3 == 0, "", "99")
    cts2 = {}
    for mid, df in cts.items():
        hit = df["patient_id"].isin(ids)
        cts2[mid] = df.assign(y=np.where(hit, 1 - df["y"], df["y"]), score=np.where(hit, 1 - df["score"], df["score"]))
    return plan2, p2, cts2


FIT_COLUMNS = ["intercept", "coef_ct", "coef_clinical", "threshold", "n_fit", "n_fit_poor"]


def assert_same_fits(a, b, key):
    fa = a.fits[a.fits["fold"] == key[1]][FIT_COLUMNS].reset_index(drop=True)
    fb = b.fits[b.fits["fold"] == key[1]][FIT_COLUMNS].reset_index(drop=True)
    pd.testing.assert_frame_equal(fa, fb, check_exact=True)
    ma, mb = a.clinical_models[key], b.clinical_models[key]
    assert ma.C == mb.C and ma.train_ids == mb.train_ids
    pd.testing.assert_series_equal(ma.coefficients, mb.coefficients, check_exact=True)
    pd.testing.assert_frame_equal(ma.cv_log_loss, mb.cv_log_loss, check_exact=True)


def test_test_patients_influence_no_fitted_parameter(plan, patients, fixed):
    result, cts, _ = fixed
    test_ids = patients.loc[patients["split"] == "test", "patient_id"]
    plan2, p2, cts2 = perturb_patients(plan, patients, cts, test_ids)
    again = clinical_fusion(plan2, p2, cts2)
    assert_same_fits(result, again, (0, -1))
    clin = result.scores["model"] == "clinical"
    assert not np.allclose(result.scores.loc[clin, "score"], again.scores.loc[clin, "score"]), "test rows changed"
    # the comparison can fail: a validation label moves the fusion, a training label the clinical model
    val_id = patients.loc[patients["split"] == "val", "patient_id"].iloc[:1]
    moved = clinical_fusion(*perturb_patients(plan, patients, cts, val_id))
    assert not np.allclose(moved.fits["intercept"], result.fits["intercept"])
    train_id = patients.loc[patients["split"] == "train", "patient_id"].iloc[:3]
    moved = clinical_fusion(*perturb_patients(plan, patients, cts, train_id))
    assert not moved.clinical_models[(0, -1)].coefficients.equals(result.clinical_models[(0, -1)].coefficients)


def platt_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Intercept and coefficients minimising the Platt-smoothed negative log-likelihood (scipy, not sklearn)."""
    m, n = int(y.sum()), len(y) - int(y.sum())
    t = np.where(y == 1, (m + 1) / (m + 2), 1 / (n + 2))
    xx = np.column_stack([np.ones(len(y)), x])

    def nll(b):
        eta = xx @ b
        return float(np.sum(np.logaddexp(0, eta) - t * eta))

    return minimize(nll, np.zeros(xx.shape[1]), method="BFGS", options={"gtol": 1e-10}).x


def test_logistic_maps_match_recalibrate_and_a_direct_likelihood_fit():
    rng = np.random.default_rng(4)
    y = np.arange(40) % 2
    x = np.column_stack([y + rng.normal(size=40), 0.5 * y + rng.normal(size=40)])
    one = fit_logistic_map(x[:, 0], y, ["a"])
    np.testing.assert_allclose(one.predict(x[:, :1]), recalibrate(x[:, 0], y, x[:, 0], scale="identity"), atol=1e-7)
    two = fit_logistic_map(x, y, ["a", "b"])
    np.testing.assert_allclose([two.intercept, *two.coef], platt_fit(x, y), atol=1e-5)
    separated = fit_logistic_map(np.r_[np.zeros(5), np.ones(5)], np.r_[np.zeros(5), np.ones(5)], ["a"])
    assert np.isfinite(separated.coef[0])


def test_calibration_intercept_and_slope_match_direct_fits():
    rng = np.random.default_rng(5)
    prob = rng.uniform(0.05, 0.95, 60)
    y = (rng.uniform(size=60) < expit(0.3 + 0.6 * logit(prob))).astype(int)
    got = calibration_intercept_slope(y, prob)
    o = logit(prob)
    offset = minimize(lambda a: float(np.sum(np.logaddexp(0, a[0] + o) - y * (a[0] + o))), [0.0], method="BFGS").x
    slope = minimize(lambda b: float(np.sum(np.logaddexp(0, b[0] + b[1] * o) - y * (b[0] + b[1] * o))),
                     [0.0, 1.0], method="BFGS").x
    assert got["intercept"] == pytest.approx(offset[0], abs=1e-5)
    assert got["slope"] == pytest.approx(slope[1], abs=1e-4)
    assert np.isnan(calibration_intercept_slope(np.r_[0, 0, 1, 1], np.r_[0.1, 0.2, 0.8, 0.9])["slope"])


def delong_p(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Paired DeLong test written out from DeLong et al. (1988): structural components and their covariance."""
    pos, neg = y == 1, y == 0

    def components(s):
        d = s[pos][:, None] - s[neg][None, :]
        psi = (d > 0) + 0.5 * (d == 0)
        return psi.mean(axis=1), psi.mean(axis=0), psi.mean()

    (va10, va01, auc_a), (vb10, vb01, auc_b) = components(a), components(b)
    s10, s01 = np.cov(np.vstack([va10, vb10])), np.cov(np.vstack([va01, vb01]))
    var = (s10 / pos.sum() + s01 / neg.sum()) @ np.array([1.0, -1.0]) @ np.array([1.0, -1.0])
    return float(2 * norm.sf(abs(auc_a - auc_b) / np.sqrt(var)))


def youden(y: np.ndarray, s: np.ndarray) -> float:
    """Youden threshold by brute force (ties: higher accuracy, then the larger threshold)."""
    best = None
    for t in np.unique(s):
        pred = s >= t
        sen, spe = (pred & (y == 1)).sum() / (y == 1).sum(), (~pred & (y == 0)).sum() / (y == 0).sum()
        key = (round(sen + spe, 12), (pred == (y == 1)).mean(), t)
        best = key if best is None or key > best else best
    return float(best[2])


def test_table_numbers_match_independent_computations(plan, patients, fixed):
    result, cts, table = fixed
    model = result.clinical_models[(0, -1)]
    val = patients[patients["split"] == "val"].sort_values("patient_id")
    test = patients[patients["split"] == "test"].sort_values("patient_id")
    y_val = (val["response"] == "poor").astype(int).to_numpy()
    y_test = (test["response"] == "poor").astype(int).to_numpy()
    lp_val, lp_test = model.linear_predictor(plan, val["patient_id"]), model.linear_predictor(plan, test["patient_id"])
    scores = {"clinical": lp_test}
    fitted = {"clinical": (lp_val, lp_test)}
    for mid, df in cts.items():
        ct = df.set_index("patient_id")["score"]
        ct_val, ct_test = ct[val["patient_id"]].to_numpy(), ct[test["patient_id"]].to_numpy()
        b = platt_fit(np.column_stack([logit(ct_val), lp_val]), y_val)
        fused_val = expit(b[0] + b[1] * logit(ct_val) + b[2] * lp_val)
        fused_test = expit(b[0] + b[1] * logit(ct_test) + b[2] * lp_test)
        row = table[(table["model"] == "fusion") & (table["ct_method"] == mid)].iloc[0]
        np.testing.assert_allclose([row["fit_intercept"], row["fit_coef_ct"], row["fit_coef_clinical"]], b, atol=1e-4)
        scores[f"ct {mid}"], scores[f"fusion {mid}"] = ct_test, fused_test
        fitted[f"ct {mid}"], fitted[f"fusion {mid}"] = (ct_val, ct_test), (fused_val, fused_test)
    for r in table.to_dict("records"):
        key = r["model"] if r["model"] == "clinical" else f"{r['model']} {r['ct_method']}"
        s = scores[key]
        assert (r["n_test"], r["n_test_poor"], r["n_fit"], r["n_fit_poor"]) == (28, 14, len(val), int(y_val.sum()))
        assert r["n_train"] == model.n_train and r["n_train_poor"] == model.n_train_poor
        assert r["test_auc"] == pytest.approx(roc_auc_score(y_test, s), abs=1e-6)
        assert r["test_auc_lo"] < r["test_auc"] < r["test_auc_hi"]
        t_val = youden(y_val, fitted[key][0])
        assert r["youden_val_threshold"] == pytest.approx(t_val, abs=1e-6)
        pred = s >= t_val
        assert r["youden_val_acc"] == pytest.approx((pred == (y_test == 1)).mean())
        assert r["youden_val_sen"] == pytest.approx(pred[y_test == 1].mean())
        t_test = youden(y_test, s)
        assert r["youden_test_spe"] == pytest.approx((s[y_test == 0] < t_test).mean())
        if r["model"] != "clinical":
            assert r["p_vs_clinical"] == pytest.approx(delong_p(y_test, s, scores["clinical"]), rel=1e-6)
        if r["model"] == "fusion":
            assert r["p_vs_ct"] == pytest.approx(delong_p(y_test, s, scores[f"ct {r['ct_method']}"]), rel=1e-6)
        else:
            assert np.isnan(r["p_vs_ct"])
        prob = result.scores.query("model == @r['model'] and ct_method == @r['ct_method']").sort_values("patient_id")
        assert r["brier"] == pytest.approx(np.mean((prob["prob"].to_numpy() - y_test) ** 2))
    assert list(table["model"]) == ["clinical", "ct", "fusion", "ct", "fusion"]
    notes = " ".join(table.attrs["notes"])
    assert f"fitted on the training patients only ({model.n_train} patients" in notes
    assert f"validation patients ({len(val)} patients, {int(y_val.sum())} poor" in notes


def test_splits_must_be_the_cnns(plan, patients):
    cts = {FUSION_PD_MODEL: ct_scores(patients, 1.5, 1)}
    moved = cts[FUSION_PD_MODEL].copy()
    moved.loc[moved["split"] == "val", "split"] = "train"
    with pytest.raises(ValueError, match="in the CT predictions but 'val'"):
        clinical_fusion(plan, patients, {FUSION_PD_MODEL: moved})
    val_id = patients.loc[patients["split"] == "val", "patient_id"].iloc[0]
    gap = cts[FUSION_PD_MODEL][cts[FUSION_PD_MODEL]["patient_id"] != val_id]
    result = clinical_fusion(plan, patients, {FUSION_PD_MODEL: gap}, cs=SMALL_CS)
    assert list(result.excluded["patient_id"]) == [val_id]
    assert (result.fits["n_fit"] == (patients["split"] == "val").sum() - 1).all()
    assert "Left out: 1 validation/test patient(s)" in " ".join(clinical_fusion_table(result).attrs["notes"])


@pytest.fixture(scope="module")
def cv_setup(plan):
    """Five folds of one repeat, validation carved in each, as Study.splits draws them for protocol cv."""
    inc = plan.loc[plan["split"] != "", ["patient_id", "response", "recist"]].assign(split="train")
    folds = pd.concat([carve_validation(df, 0.2, seed=f).assign(fold=f, repeat=0)
                       for f, df in enumerate(stratified_folds(inc, 5, seed=0))], ignore_index=True)
    ct = ct_scores(folds, 1.5, 3)[["repeat", "fold", "patient_id", "split", "y", "score"]]
    return folds, {FUSION_PD_MODEL: ct}


def test_cv_pools_each_test_patient_once_and_keeps_folds_apart(plan, cv_setup):
    folds, cts = cv_setup
    result = clinical_fusion_cv(plan, folds, cts, cs=SMALL_CS)
    table = clinical_fusion_table(result)
    assert result.fit_on == "val" and list(table["n_test"]) == [140] * 3
    clin = result.scores[result.scores["model"] == "clinical"]
    assert clin["patient_id"].is_unique and len(clin) == 140
    pooled = result.scores[result.scores["model"] == "ct"]
    assert table.loc[1, "test_auc"] == pytest.approx(roc_auc_score(pooled["y"], pooled["score"]))
    fold = 2
    test_ids = folds.loc[(folds["fold"] == fold) & (folds["split"] == "test"), "patient_id"]
    plan2, folds2, cts2 = perturb_patients(plan, folds, cts, test_ids)
    again = clinical_fusion_cv(plan2, folds2, cts2, cs=SMALL_CS)
    assert_same_fits(result, again, (0, fold))
    other = again.fits[again.fits["fold"] != fold]["intercept"].to_numpy()
    assert not np.allclose(other, result.fits[result.fits["fold"] != fold]["intercept"].to_numpy())


def test_cv_out_of_fold_fitting_uses_more_patients_and_leaks_at_second_order(plan, cv_setup):
    folds, cts = cv_setup
    result = clinical_fusion_cv(plan, folds, cts, fit_on="oof", cs=SMALL_CS)
    assert (result.fits["n_fit"] == 140 - result.fits["fold"].map(
        folds[folds["split"] == "test"].groupby("fold").size())).all()
    test_ids = folds.loc[(folds["fold"] == 0) & (folds["split"] == "test"), "patient_id"]
    again = clinical_fusion_cv(*perturb_patients(plan, folds, cts, test_ids), fit_on="oof", cs=SMALL_CS)
    assert again.clinical_models[(0, 0)].coefficients.equals(result.clinical_models[(0, 0)].coefficients)
    fusion = (result.fits["model"] == "fusion") & (result.fits["fold"] == 0)
    assert result.fits.loc[fusion, "coef_clinical"].iloc[0] != again.fits.loc[fusion, "coef_clinical"].iloc[0], \
        "documented: the other folds' clinical models see the fold's test labels"


def test_fold_scores_and_the_cv_choice_of_baseline():
    from prediction_factory import make_predictions

    from pdstudy.core.methods import method_from_id

    preds = make_predictions(methods={"baseline:efficientnet_b7": [1.5], BASELINE: [0.2]}, seeds=(0, 1), folds=3,
                             repeats=1)
    scores = fold_scores(preds, BASELINE)
    assert set(scores.columns) == {"repeat", "fold", "patient_id", "split", "y", "score"}
    assert not scores.duplicated(["repeat", "fold", "patient_id"]).any()
    rows = preds[(preds["method"] == BASELINE) & (preds["fold"] == 1)]
    mean = rows.groupby("patient_id")["score"].mean()
    got = scores[scores["fold"] == 1].set_index("patient_id")["score"]
    np.testing.assert_allclose(got.sort_index(), mean.sort_index())
    selection, chosen = choose_on_fold_validation(preds, [method_from_id(BASELINE),
                                                          method_from_id("baseline:efficientnet_b7")])
    assert chosen.id == "baseline:efficientnet_b7" and selection["chosen"].sum() == 1
