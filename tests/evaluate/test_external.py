"""Tests for pdstudy.evaluate.external on a synthetic external-protocol prediction frame (tests/external_factory.py):
two sites, one fold per held-out site, two methods, two seeds; numbers checked against direct computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from external_factory import BASE, PD, make_patients, make_predictions, sites_of
from scipy.special import expit, logit
from sklearn.metrics import roc_auc_score

from pdstudy.evaluate import (
    DCA_THRESHOLDS,
    TEST_SETS,
    ExternalValidation,
    external_validation,
    site_table1,
    slices_by_site,
)
from pdstudy.stats import calibration_in_the_large, recalibrate, youden_threshold


@pytest.fixture(scope="module")
def loso():
    patients = make_patients()
    preds = make_predictions(patients, [("A",), ("B",)])
    return patients, preds, external_validation(preds, sites_of(patients))


def by_hand(preds, mid, fold):
    """Seed-averaged final-stage scores of one method and fold, written out."""
    final = 1 if mid == PD else 0
    rows = preds[(preds["method"] == mid) & (preds["fold"] == fold) & (preds["stage"] == final)]
    return rows.groupby(["patient_id", "split"], as_index=False).agg(
        score=("score", "mean"), y=("response", lambda r: int((r == "poor").all())))


def test_table_has_a_row_per_method_fold_and_test_set(loso):
    _, _, res = loso
    assert isinstance(res, ExternalValidation)
    t = res.table
    assert len(t) == 2 * 2 * 2
    assert t.attrs["table"] == "external_validation" and t.attrs["notes"] == list(res.notes)
    assert set(map(tuple, t[["method", "fold", "test_set"]].to_numpy())) == {
        (m, f, s) for m in (BASE, PD) for f in (0, 1) for s in TEST_SETS}
    assert res.held_out == {0: ("A",), 1: ("B",)}
    ext = t[t["test_set"] == "external"]
    assert (ext["n"] == 100).all() and (ext["n_poor"] == 50).all()
    assert ext.set_index("fold")["sites"].to_dict() == {0: "A", 1: "B"}
    internal = t[t["test_set"] == "internal"]
    assert (internal["n"] == 30).all() and (internal["n_val"] == 20).all() and (internal["n_train"] == 50).all()
    assert internal["auc_drop"].isna().all() and ext["auc_drop"].notna().all()
    assert internal["youden_test_threshold"].isna().all() and ext["youden_test_threshold"].notna().all()
    assert (t["n_seeds"] == 2).all()
    for col in ("n", "n_poor", "n_val", "n_val_poor", "auc", "auc_lo", "cal_intercept_lo", "cal_slope_hi"):
        assert col in t.columns
    notes = " ".join(res.notes)
    assert "fold 0: held out site(s) A" in notes and "fold 1: held out site(s) B" in notes
    assert "validation patients only" in notes and "leave-one-site-out" in notes
    text = res.describe()
    assert "Fold 0: held out site(s) A" in text and "Fold 1: held out site(s) B" in text
    assert text.count("AUC internal") == 4


def test_numbers_match_direct_computations(loso):
    _, preds, res = loso
    t = res.table.set_index(["method", "fold", "test_set"])
    for mid in (BASE, PD):
        for fold in (0, 1):
            s = by_hand(preds, mid, fold)
            val, internal, ext = (s[s["split"] == k] for k in ("val", "test", "external"))
            r_int, r_ext = t.loc[(mid, fold, "internal")], t.loc[(mid, fold, "external")]
            a_int = roc_auc_score(internal["y"], internal["score"])
            a_ext = roc_auc_score(ext["y"], ext["score"])
            assert r_int["auc"] == pytest.approx(a_int) and r_ext["auc"] == pytest.approx(a_ext)
            assert r_ext["auc_drop"] == pytest.approx(a_ext - a_int)
            assert r_ext["auc_drop_lo"] < r_ext["auc_drop"] < r_ext["auc_drop_hi"]
            thr = youden_threshold(val["y"], val["score"])
            assert r_int["youden_val_threshold"] == r_ext["youden_val_threshold"] == pytest.approx(thr)
            called = ext["score"] >= thr
            assert r_ext["youden_val_tp"] == int((called & (ext["y"] == 1)).sum())
            assert r_ext["youden_val_sen"] == pytest.approx(((called & (ext["y"] == 1)).sum()) / ext["y"].sum())
            own = youden_threshold(ext["y"], ext["score"])
            assert r_ext["youden_test_threshold"] == pytest.approx(own)
            sen_spe_own = r_ext["youden_test_sen"] + r_ext["youden_test_spe"]
            assert sen_spe_own >= r_ext["youden_val_sen"] + r_ext["youden_val_spe"] - 1e-12  # optimistic bound
            # the map: a logistic curve in logit(score) fitted on val (Platt), the same as recalibrating directly
            c = res.curves
            cur = c[(c["method"] == mid) & (c["fold"] == fold) & (c["test_set"] == "external")]
            cur = cur.set_index("patient_id").loc[ext["patient_id"]]
            direct = recalibrate(val["score"], val["y"], ext["score"], "platt")
            np.testing.assert_allclose(cur["prob"], direct, rtol=1e-9)
            np.testing.assert_allclose(cur["prob"], expit(r_ext["platt_intercept"]
                                                          + r_ext["platt_slope"] * logit(ext["score"].to_numpy())),
                                       rtol=1e-7)
            citl = calibration_in_the_large(ext["y"], direct)
            assert r_ext["cal_intercept"] == pytest.approx(citl.est) and r_ext["cal_intercept_lo"] == pytest.approx(
                citl.lo)
            assert r_ext["brier"] == pytest.approx(np.mean((direct - ext["y"].to_numpy()) ** 2))


def test_curves_and_decision_curves(loso):
    patients, _, res = loso
    c = res.curves
    assert list(c.columns) == ["method", "fold", "test_set", "patient_id", "site", "y", "response", "score", "prob",
                               "n_slices"]
    assert len(c) == 2 * 2 * (30 + 100)
    site = sites_of(patients)
    assert (c["site"] == c["patient_id"].map(site)).all()
    assert c["n_slices"].notna().all() and str(c["n_slices"].dtype) == "Int64"
    d = res.decision
    assert len(d) == 2 * 2 * 2 * len(DCA_THRESHOLDS)
    one = d[(d["method"] == PD) & (d["fold"] == 1) & (d["test_set"] == "external")]
    assert one["prevalence"].iloc[0] == pytest.approx(0.5) and (one["n"] == 100).all()
    cur = c[(c["method"] == PD) & (c["fold"] == 1) & (c["test_set"] == "external")]
    pt = one["threshold"].to_numpy()[20]
    called = cur["prob"].to_numpy() >= pt
    y = cur["y"].to_numpy() == 1
    nb = (called & y).sum() / len(y) - (called & ~y).sum() / len(y) * pt / (1 - pt)
    assert one["net_benefit"].to_numpy()[20] == pytest.approx(nb)


def test_a_shifted_site_moves_calibration_in_the_large_and_an_unshifted_one_does_not():
    patients = make_patients()
    same = external_validation(make_predictions(patients, [("A",), ("B",)]), sites_of(patients)).table
    shifted = external_validation(make_predictions(patients, [("A",), ("B",)], shift=1.5), sites_of(patients)).table
    for t in (same, shifted):
        internal = t[t["test_set"] == "internal"]
        assert ((internal["cal_intercept_lo"] < 0) & (internal["cal_intercept_hi"] > 0)).all()
    ext_same = same[same["test_set"] == "external"]
    assert ((ext_same["cal_intercept_lo"] < 0) & (ext_same["cal_intercept_hi"] > 0)).all()
    ext_shift = shifted[shifted["test_set"] == "external"]
    # scores read higher at the held-out site: probabilities too high, fewer poor responders than predicted
    assert (ext_shift["cal_intercept_hi"] < 0).all()
    assert (ext_shift["cal_intercept"] < ext_same["cal_intercept"].to_numpy() - 1).all()
    # the AUC (a rank statistic) barely moves with a monotone shift, but the transported threshold calls more poor
    assert (ext_shift["youden_val_sen"].to_numpy() >= ext_same["youden_val_sen"].to_numpy()).all()


def _perturb(preds, patients, which, rng):
    """Flip labels and redraw scores of the patients whose (fold, split) is in ``which``."""
    out = preds.copy()
    mask = out["split"].isin(which)
    ids = out.loc[mask, "patient_id"].unique()
    flip = set(rng.choice(ids, size=len(ids) // 3, replace=False))
    f = mask & out["patient_id"].isin(flip)
    poor = out.loc[f, "response"] == "poor"
    out.loc[f, "response"] = np.where(poor, "good", "poor")
    out.loc[f, "recist"] = np.where(poor, "CR", "PD")
    out.loc[mask, "score"] = rng.uniform(0.01, 0.99, int(mask.sum()))
    return out


def test_nothing_is_fitted_on_internal_test_or_external_patients(loso):
    patients, preds, res = loso
    rng = np.random.default_rng(7)
    keys = ["method", "fold"]
    fitted = ["platt_intercept", "platt_slope", "threshold", "n_val", "n_val_poor"]
    base = res.fits.set_index(keys)[fitted]
    moved = external_validation(_perturb(preds, patients, ["test", "external"], rng), sites_of(patients))
    pd.testing.assert_frame_equal(moved.fits.set_index(keys)[fitted], base)
    thr = ["youden_val_threshold", "platt_intercept", "platt_slope"]
    pd.testing.assert_frame_equal(moved.table.set_index([*keys, "test_set"])[thr],
                                  res.table.set_index([*keys, "test_set"])[thr])
    assert not np.allclose(moved.table["auc"], res.table["auc"])  # the test sets did change
    changed = external_validation(_perturb(preds, patients, ["val"], rng), sites_of(patients))
    new = changed.fits.set_index(keys)
    for col in ("platt_intercept", "platt_slope", "threshold"):
        assert not np.allclose(new[col], base[col])


def test_one_fold_with_given_test_sites_and_one_method():
    patients = make_patients(("A", "B", "C"), n_per_site=60)
    preds = make_predictions(patients, [("C",)], methods=(PD,), seeds=(0,))
    res = external_validation(preds, sites_of(patients).to_dict())
    assert res.held_out == {0: ("C",)} and res.methods == (PD,)
    t = res.table
    assert len(t) == 2 and set(t["test_set"]) == set(TEST_SETS)
    assert t.set_index("test_set").loc["internal", "sites"] == "A, B"
    assert t.set_index("test_set").loc["external", "n"] == 60
    assert "(held-out sites, 1 fold(s))" in res.notes[0] and "fold 0: held out site(s) C" in res.notes[0]
    assert "trained at A, B" in res.notes[0]
    two = external_validation(make_predictions(patients, [("B", "C")]), sites_of(patients), methods=[PD, BASE])
    assert two.held_out == {0: ("B", "C")} and list(dict.fromkeys(two.table["method"])) == [PD, BASE]
    assert (two.table["held_out"] == "B+C").all()


def test_validation_patients_without_a_class_leave_nan_and_say_why():
    patients = make_patients()
    preds = make_predictions(patients, [("A",), ("B",)])
    val_poor = preds["split"].eq("val") & preds["response"].eq("poor")
    preds.loc[val_poor, "response"] = "good"
    preds.loc[val_poor, "recist"] = "PR"
    res = external_validation(preds, sites_of(patients))
    t = res.table
    assert t["youden_val_threshold"].isna().all() and t["cal_intercept"].isna().all() and t["auc"].notna().all()
    assert res.curves["prob"].isna().all() and res.decision.empty
    assert "lack a class" in res.notes[-1]


def test_bad_input_raises_naming_what():
    patients = make_patients()
    preds = make_predictions(patients, [("A",), ("B",)])
    sites = sites_of(patients)
    with pytest.raises(ValueError, match="patient 'A007'.*no site code"):
        external_validation(preds, sites.drop("A007"))
    with pytest.raises(TypeError, match="sites must map"):
        external_validation(preds, list(sites))
    with pytest.raises(ValueError, match="fold -1"):
        external_validation(preds.assign(fold=-1), sites)
    with pytest.raises(ValueError, match="no row has split 'external'"):
        external_validation(preds[preds["split"] != "external"], sites)
    with pytest.raises(ValueError, match="have no predictions"):
        external_validation(preds, sites, methods=["baseline:efficientnet_b7"])
    with pytest.raises(ValueError, match="auc_ci"):
        external_validation(preds, sites, auc_ci="exact")
    clash = sites.copy()
    clash["B003"] = "A"  # a training patient of fold 0 at the held-out site
    with pytest.raises(ValueError, match="site 'A' is held out.*'B003'"):
        external_validation(preds, clash)


def test_slices_by_site(loso):
    _, preds, res = loso
    s = slices_by_site(res)
    assert set(s["site"]) == {"A", "B"} and len(s) == 2 * 2 * 2
    row = s[(s["method"] == PD) & (s["fold"] == 0) & (s["site"] == "B")].iloc[0]
    c = res.curves
    cur = c[(c["method"] == PD) & (c["fold"] == 0) & (c["site"] == "B")]
    assert row["test_set"] == "internal" and row["n"] == 30
    k = preds.drop_duplicates("patient_id").set_index("patient_id")["n_slices"].loc[cur["patient_id"]]
    assert row["slices_median"] == np.median(k) and row["slices_min"] == k.min() and row["slices_max"] == k.max()
    assert row["mean_score_poor"] == pytest.approx(cur.loc[cur["y"] == 1, "score"].mean())
    a = s[(s["fold"] == 0) & (s["site"] == "A")]
    assert (a["slices_median"] < 30).all() and (a["test_set"] == "external").all()


def test_site_table1():
    patients = make_patients(("A", "B"), n_per_site=20).rename(columns={"manifest_split": "split"})
    patients["sex"] = np.where(np.arange(len(patients)) % 3 == 0, "F", "M")
    t = site_table1(patients)
    assert "site A GR (n=10)" in t.columns and "site B PR (n=10)" in t.columns and "p (site B)" in t.columns
    single = site_table1(patients.drop(columns="site"))
    assert "all GR (n=20)" in single.columns
    patients.loc[3, "site"] = ""
    with pytest.raises(ValueError, match="'A003' has no site code"):
        site_table1(patients)


def test_an_external_site_without_poor_responders_leaves_its_discrimination_nan():
    patients = make_patients(n_per_site=40)
    preds = make_predictions(patients, [("A",), ("B",)], methods=(PD,), seeds=(0,))
    gone = preds["split"].eq("external") & preds["patient_id"].str.startswith("A") & preds["response"].eq("poor")
    preds.loc[gone, ["response", "recist"]] = ["good", "PR"]
    res = external_validation(preds, sites_of(patients))
    ext = res.table.set_index(["fold", "test_set"]).loc[(0, "external")]
    assert ext["n_poor"] == 0 and np.isnan([ext["auc"], ext["auc_drop"], ext["cal_intercept"], ext["cal_slope"]]).all()
    assert ext["youden_val_spe"] >= 0 and np.isnan(ext["youden_val_sen"]) and ext["brier"] >= 0
    assert "fold 0, external: AUC not defined (40 patients, 0 poor)" in res.notes[-1]
    assert res.table.set_index(["fold", "test_set"]).loc[(1, "external"), "auc"] > 0.5
