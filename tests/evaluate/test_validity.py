"""What the evaluation tables claim, checked against hand computations: patient counts and small-sample marks,
seed ensemble versus per-seed models, the paper's B7-B3 row, the fixed Holm family, training metrics, the AUC
interval's scale, the training-carve and top-k notes (issue 13)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prediction_factory import B0, B3, B7, KD7, PD037, PD3, PD7, make_predictions
from sklearn.metrics import roc_auc_score

from pdstudy import evaluate as ev
from pdstudy.report.tables import format_evaluation_table
from pdstudy.stats import delong_auc_ci, delong_test, holm, wilson_ci, youden_threshold

BASE7, BASE3, BASE0 = f"baseline:{B7}", f"baseline:{B3}", f"baseline:{B0}"
PD773 = f"pd:{B7}>{B7}>{B3}"  # the reading of the paper's "Progressive Distill (EfficientNetB7-B3)"
PD73 = f"pd:{B7}>{B3}"  # the alternative reading
KD73 = f"kd:{B7}>{B3}"
#: The 8 KD/PD rows of the paper's Table 2, in the reading Table 2 maps them to.
FAMILY = [f"kd:{B0}>{B0}", f"kd:{B3}>{B3}", KD7, KD73, PD037, PD773, PD3, PD7]
#: Every method of the paper's Table 2 that pdstudy implements, plus their baselines (B0, B3, B7).
PAPER_RUN = {BASE0: [0.7], BASE3: [0.8], BASE7: [1.0], f"kd:{B0}>{B0}": [0.7, 0.9], f"kd:{B3}>{B3}": [0.8, 1.0],
             KD7: [1.0, 1.3], KD73: [1.0, 1.4], PD037: [0.7, 1.2, 2.0], PD773: [1.0, 1.5, 1.9],
             PD3: [0.8, 1.1, 1.4], PD7: [1.0, 1.6, 2.2]}


def _final(preds, mid, split):
    stage = len(mid.split(":")[1].split(">")) - 1
    return preds[(preds["method"] == mid) & (preds["stage"] == stage) & (preds["split"] == split)]


def _small_val(preds, drop_poor=3):
    """Drop ``drop_poor`` poor validation patients: 23 val patients (11 poor) -> 20 (8 poor / 12 good)."""
    poor_val = sorted(preds.loc[(preds["split"] == "val") & (preds["response"] == "poor"), "patient_id"].unique())
    return preds[~preds["patient_id"].isin(poor_val[:drop_poor])].reset_index(drop=True)


@pytest.fixture(scope="module")
def paper_preds():
    return make_predictions(PAPER_RUN)


@pytest.fixture(scope="module")
def t2_paper(paper_preds):
    return ev.table2(paper_preds)


# --------------------------------------------------------------------------------------------- 1. counts


def test_counts_per_split_and_class_match_the_patients():
    p = _small_val(make_predictions({BASE7: [1.0], PD7: [1.0, 1.3, 1.6]}, n_val=23))
    t = ev.table2(p, include_paper=False).set_index("method_id")
    for split in ("train", "val", "test"):
        rows = _final(p, PD7, split)
        assert t.loc[PD7, f"n_{split}"] == len(rows)
        assert t.loc[PD7, f"n_{split}_poor"] == int((rows["response"] == "poor").sum())
        assert t.loc[PD7, f"n_{split}_good"] == int((rows["response"] == "good").sum())
    assert (t.loc[PD7, "n_val_poor"], t.loc[PD7, "n_val_good"]) == (8, 12)
    assert ev.small_splits(t.loc[PD7]) == ["val"]


def test_small_validation_set_is_marked_in_every_display_table():
    p = _small_val(make_predictions({BASE7: [1.0], KD7: [1.0, 1.3], f"pd:{B7}>{B7}": [1.0, 1.4],
                                     PD7: [1.0, 1.3, 1.6]}, n_val=23))
    mark = ev.SMALL_MARK
    t2 = ev.table2(p, include_paper=False)
    d2 = format_evaluation_table(t2)
    assert (d2["Patients train / val / test (poor)"] == f"90 (45) / 20 (8) {mark} / 28 (14)").all()
    assert d2["ACC % (Youden on val)"].str.endswith(mark).all()
    assert d2["Train SEN % (Youden on val)"].str.endswith(mark).all()
    assert not d2["Test AUC [95% CI]"].str.contains(mark).any()
    assert not d2["SEN % (Youden on test, optimistic)"].str.contains(mark).any()
    note = next(n for n in t2.attrs["notes"] if n.startswith(mark))
    assert "val 20 (8 poor / 12 good)" in note and "fewer than 10" in note
    assert any("val 20 (8 poor / 12 good)" in n and n.startswith("Patients") for n in t2.attrs["notes"])
    t4 = ev.table4(p, {(B7, 0, 0, 0): BASE7, (B7, 1, 0, 0): KD7, (B7, 1, 1, 0): f"pd:{B7}>{B7}", (B7, 1, 1, 1): PD7},
                   include_paper=False)
    d4 = format_evaluation_table(t4)
    assert d4["SPE % (Youden on val)"].str.endswith(mark).all() and any(n.startswith(mark) for n in t4.attrs["notes"])
    cur = ev.iteration_curve(p, PD7)
    dc = format_evaluation_table(cur)
    assert dc["Patients train / val / test (poor)"].str.contains(f"20 \\(8\\) {mark}").all()
    assert any(n.startswith(mark) for n in cur.attrs["notes"])
    t3 = ev.table3(p, ev.simulate_readers(ev.patients_of_split(p), seed=0), method_id=PD7)
    d3 = format_evaluation_table(t3).set_index("Reader / model")
    val_row = next(i for i in d3.index if "Youden on val" in i)
    test_row = next(i for i in d3.index if "optimistic" in i)
    assert d3.loc[val_row, "ACC %"].endswith(mark) and not d3.loc[test_row, "ACC %"].endswith(mark)
    assert (d3["Test patients (poor / good)"] == "28 (14 / 14)").all()
    assert t3.set_index("kind").loc["model"].iloc[0]["n_val_poor"] == 8
    assert any(n.startswith(mark) for n in t3.attrs["notes"])


def test_ten_of_each_class_carries_no_mark():
    p = make_predictions({BASE7: [1.0], PD7: [1.0, 1.3, 1.6]}, n_val=20)  # 10 poor / 10 good
    t2 = ev.table2(p, include_paper=False)
    assert not any(n.startswith(ev.SMALL_MARK) for n in t2.attrs["notes"])
    assert not format_evaluation_table(t2).apply(lambda c: c.astype(str).str.contains(ev.SMALL_MARK)).any().any()


def test_cv_tables_name_their_patients_and_mark_small_folds():
    p = make_predictions({BASE7: [1.0], KD7: [1.0, 1.4]}, n_val=20, folds=4, repeats=2)
    per = ev.cv_summary(p, per_repeat=True)
    for _, r in per.iterrows():
        rows = p[(p["method"] == r["method_id"]) & (p["repeat"] == r["repeat"]) & (p["fold"] >= 0)
                 & (p["stage"] == len(r["method_id"].split(">")) - 1)]
        test = rows[rows["split"] == "test"]
        assert (r["n_test"], r["n_test_poor"]) == (len(test), int((test["response"] == "poor").sum()))
        val_poor = [int((g["response"] == "poor").sum()) for _, g in rows[rows["split"] == "val"].groupby("fold")]
        val_good = [int((g["response"] == "good").sum()) for _, g in rows[rows["split"] == "val"].groupby("fold")]
        assert min(r["n_val_poor"], r["n_val_good"]) == min(min(val_poor), min(val_good))
    summ = ev.cv_summary(p)
    disp = format_evaluation_table(summ)
    assert "Test patients (poor)" in disp.columns and "Smallest fold's val patients (poor)" in disp.columns
    assert disp["Smallest fold's val patients (poor)"].str.endswith(ev.SMALL_MARK).all()  # 10 val patients a fold
    assert any(n.startswith(ev.SMALL_MARK) for n in summ.attrs["notes"])
    assert len(format_evaluation_table(per)) == len(per)


# --------------------------------------------------------------------------------------------- 2. seeds


def test_per_seed_spread_uses_each_seeds_full_splits():
    """Seeds with different validation patients: the ensemble keeps the patients in the same split in every
    seed; each seed's single model is evaluated on its own full splits (its own validation patients)."""
    p0 = make_predictions({BASE7: [1.0], PD7: [1.0, 1.3, 1.6]}, n_val=20, seed=0)
    p1 = make_predictions({BASE7: [1.0], PD7: [1.0, 1.3, 1.6]}, n_val=20, seed=1).assign(seed=1)
    moved = ["P090", "P091", "P092", "P093"]  # val in seed 0; train in seed 1
    p1.loc[p1["patient_id"].isin(moved), "split"] = "train"
    back = ["P000", "P001", "P002", "P003"]  # train in seed 0; val in seed 1
    p1.loc[p1["patient_id"].isin(back), "split"] = "val"
    p = pd.concat([p0, p1], ignore_index=True)
    t = ev.table2(p, include_paper=False).set_index("method_id")
    assert t.loc[PD7, "n_val"] == 16  # the ensemble: validation patients in both seeds
    per = []
    for frame in (p0, p1):
        val, test = _final(frame, PD7, "val"), _final(frame, PD7, "test")
        assert len(val) == 20  # full split of that seed
        thr = youden_threshold((val["response"] == "poor").astype(int), val["score"])
        per.append((roc_auc_score(test["response"] == "poor", test["score"]),
                    ((test["score"] >= thr) == (test["response"] == "poor")).mean()))
    assert t.loc[PD7, "test_auc_seed_mean"] == pytest.approx(np.mean([a for a, _ in per]), abs=1e-12)
    assert t.loc[PD7, "youden_val_acc_seed_mean"] == pytest.approx(np.mean([a for _, a in per]), abs=1e-12)
    assert t.loc[PD7, "youden_val_acc_seed_sd"] == pytest.approx(np.std([a for _, a in per], ddof=1), abs=1e-12)
    note = next(n for n in t.attrs["notes"] if "SEED ENSEMBLE" in n)
    assert "not a single model as in the paper" in note and "full train/val/test splits" in note


# --------------------------------------------------------------------------------------------- 3. B7-B3 row


def test_paper_b7_b3_row_maps_to_one_reading_with_the_other_as_alternative():
    ids = ev.paper_method_ids().set_index("paper_method")
    row = ids.loc[ev.PD_B7_B3_PAPER_ROW]
    assert (row["method_id"], row["alternative_id"]) == (PD773, PD73) == (ev.PD_B7_B3_READING, ev.PD_B7_B3_ALTERNATIVE)
    assert ids.loc["Knowledge Distillation (EfficientNetB7-B3)", "method_id"] == KD73
    assert ids["holm_family"].sum() == ev.HOLM_FAMILY_SIZE == 8
    assert sorted(ids.loc[ids["holm_family"], "method_id"]) == sorted(FAMILY)


def test_table2_puts_the_paper_number_on_the_trained_reading(t2_paper):
    t = t2_paper
    reading = t[t["method_id"] == PD773]
    assert len(reading) == 1 and reading["status"].iloc[0] == "run"
    assert reading["paper_test_auc"].iloc[0] == pytest.approx(0.81)
    assert reading["paper_method"].iloc[0] == ev.PD_B7_B3_PAPER_ROW and bool(reading["holm_family"].iloc[0])
    alt = t[t["method_id"] == PD73]
    assert len(alt) == 1 and alt["status"].iloc[0] == "not run" and "alternative reading" in alt["method"].iloc[0]
    assert alt["analysis"].iloc[0].startswith("exploratory")
    # the alternative follows its paper row, and every row run that the paper prints carries its number
    assert int(alt.index[0]) == int(reading.index[0]) + 1
    assert t.loc[t["status"] == "run", "paper_test_auc"].notna().all()
    assert ev.PD_B7_B3_READING_NOTE in t.attrs["notes"]


def test_a_reading_trained_only_under_the_other_id_is_never_not_run():
    p = make_predictions({BASE7: [1.0], BASE3: [0.8], PD73: [1.0, 1.5]})
    t = ev.table2(p).set_index("method_id")
    assert t.loc[PD773, "status"] == "other reading only" and "alternative reading" in t.loc[PD773, "reason"]
    assert t.loc[PD73, "status"] == "run" and t.loc[PD73, "paper_test_auc"] == pytest.approx(0.81)
    disp = format_evaluation_table(ev.table2(p))
    shown = disp[disp["Method"].str.startswith("Progressive Distill (B7>B7>B3)")]
    assert (shown["Test AUC [95% CI]"] == "other reading only").all()
    # and a method the run trained never appears as "not run"
    ran = set(p["method"])
    tt = ev.table2(p)
    assert not ((tt["status"] == "not run") & tt["method_id"].isin(ran)).any()


# --------------------------------------------------------------------------------------------- 4. Holm family


def test_holm_family_is_the_papers_eight_rows_whatever_else_is_run(paper_preds, t2_paper):
    t = t2_paper.set_index("method_id")
    assert set(t.index[t["holm_family"].astype(bool) & (t["status"] == "run")]) == set(FAMILY)
    # by hand: the paired DeLong p of each family row against its baseline, Holm over exactly these 8
    ps = []
    for mid in FAMILY:
        comp = f"baseline:{mid.split('>')[-1]}"
        a = _final(paper_preds, mid, "test").set_index("patient_id").sort_index()
        b = _final(paper_preds, comp, "test").set_index("patient_id").sort_index()
        ps.append(delong_test((a["response"] == "poor").astype(int), a["score"], b["score"])[1])
    expected = holm(np.array(ps))
    for mid, p_adj in zip(FAMILY, expected):
        assert t.loc[mid, "p_delong_holm"] == pytest.approx(p_adj, rel=1e-12)
    assert any(f"{ev.HOLM_FAMILY_SIZE} of {ev.HOLM_FAMILY_SIZE} tested" in n for n in t2_paper.attrs["notes"])

    more = make_predictions({**PAPER_RUN, PD73: [1.0, 1.5], f"pd:{B7}>{B7}": [1.0, 1.4],
                             f"pd:{B7}>{B7}>{B7}>{B7}>{B7}": [1.0, 1.6, 2.2, 2.0, 1.9],
                             f"pd:{B3}>{B3}>{B3}>{B3}>{B3}": [0.8, 1.1, 1.4, 1.3, 1.2]})
    t_more = ev.table2(more).set_index("method_id")
    for mid in FAMILY:
        assert t_more.loc[mid, "p_delong_holm"] == t.loc[mid, "p_delong_holm"]
    extra = [PD73, f"pd:{B7}>{B7}", f"pd:{B7}>{B7}>{B7}>{B7}>{B7}", f"pd:{B3}>{B3}>{B3}>{B3}>{B3}"]
    assert t_more.loc[extra, "p_delong"].notna().all() and t_more.loc[extra, "p_delong_holm"].isna().all()
    assert (t_more.loc[extra, "analysis"].str.startswith("exploratory")).all()
    assert (format_evaluation_table(ev.table2(more)).set_index("Method")
            .loc["Progressive Distill (B7>B7)", "p (Holm)"] == "exploratory")


def test_untested_family_members_keep_the_family_size():
    p = make_predictions({BASE7: [1.0], PD7: [1.0, 1.6, 2.2], KD7: [1.0, 1.3]})
    t = ev.table2(p, include_paper=False).set_index("method_id")
    ps = [t.loc[PD7, "p_delong"], t.loc[KD7, "p_delong"]]
    expected = holm(np.array(ps + [1.0] * 6))[:2]
    assert [t.loc[PD7, "p_delong_holm"], t.loc[KD7, "p_delong_holm"]] == pytest.approx(list(expected), rel=1e-12)
    assert any("2 of 8 tested" in n for n in t.attrs["notes"])


# --------------------------------------------------------------------------------------------- 5. training metrics


def test_training_acc_sen_spe_at_the_validation_threshold(paper_preds, t2_paper):
    t = t2_paper.set_index("method_id")
    for mid in (PD7, BASE3):
        val, train = _final(paper_preds, mid, "val"), _final(paper_preds, mid, "train")
        thr = youden_threshold((val["response"] == "poor").astype(int), val["score"])
        assert t.loc[mid, "youden_val_threshold"] == thr
        called, poor = train["score"] >= thr, train["response"] == "poor"
        tp, tn = int((called & poor).sum()), int((~called & ~poor).sum())
        assert t.loc[mid, "train_sen"] == pytest.approx(tp / poor.sum())
        assert t.loc[mid, "train_spe"] == pytest.approx(tn / (~poor).sum())
        assert t.loc[mid, "train_acc"] == pytest.approx((called == poor).mean())
        assert (t.loc[mid, "train_sen_lo"], t.loc[mid, "train_sen_hi"]) == pytest.approx(wilson_ci(tp, poor.sum()))
    assert t.loc[PD7, "paper_train_acc"] == pytest.approx(0.9911)
    disp = format_evaluation_table(t2_paper)
    assert {"Train ACC % (Youden on val)", "Train SEN % (Youden on val)", "Train SPE % (Youden on val)",
            "Paper train AUC"} <= set(disp.columns)
    assert any(n.startswith("Train ACC/SEN/SPE") for n in t2_paper.attrs["notes"])


# --------------------------------------------------------------------------------------------- 6. AUC interval


def test_auc_ci_reaches_every_table():
    p = make_predictions({BASE7: [1.0], KD7: [1.0, 1.3], f"pd:{B7}>{B7}": [1.0, 1.4], PD7: [1.0, 1.3, 1.6]})
    rows = _final(p, PD7, "test")
    y, s = (rows["response"] == "poor").astype(int).to_numpy(), rows["score"].to_numpy()
    wald = delong_auc_ci(y, s, method="wald")
    t2 = ev.table2(p, include_paper=False, auc_ci="wald").set_index("method_id")
    assert (t2.loc[PD7, "test_auc_lo"], t2.loc[PD7, "test_auc_hi"]) == pytest.approx((wald.lo, wald.hi))
    assert t2.attrs["auc_ci"] == "wald" and any("Wald" in n for n in t2.attrs["notes"])
    logit = ev.table2(p, include_paper=False).set_index("method_id")
    assert logit.loc[PD7, "test_auc_lo"] == pytest.approx(delong_auc_ci(y, s).lo)
    assert logit.loc[PD7, "test_auc_lo"] != pytest.approx(wald.lo)
    assert any("logit scale" in n for n in logit.attrs["notes"])
    t4 = ev.table4(p, {(B7, 0, 0, 0): BASE7, (B7, 1, 1, 1): PD7}, include_paper=False, auc_ci="wald")
    assert t4.set_index("method_id").loc[PD7, "test_auc_lo"] == pytest.approx(wald.lo)
    assert any("Wald" in n for n in t4.attrs["notes"])
    cur = ev.iteration_curve(p, PD7, auc_ci="wald")
    assert cur["test_auc_lo"].iloc[-1] == pytest.approx(wald.lo) and any("Wald" in n for n in cur.attrs["notes"])
    cv = make_predictions({BASE7: [1.0]}, n_val=20, folds=4)
    per = ev.cv_summary(cv, per_repeat=True, auc_ci="wald")
    test = cv[(cv["fold"] >= 0) & (cv["split"] == "test")]
    w = delong_auc_ci((test["response"] == "poor").astype(int), test["score"], method="wald")
    assert per["auc_lo"].iloc[0] == pytest.approx(w.lo) and any("Wald" in n for n in per.attrs["notes"])
    for call in (lambda: ev.table2(p, auc_ci="bootstrap"), lambda: ev.table4(p, auc_ci="x"),
                 lambda: ev.iteration_curve(p, PD7, auc_ci="x"), lambda: ev.cv_summary(cv, auc_ci="x")):
        with pytest.raises(ValueError, match="auc_ci must be one of"):
            call()


# --------------------------------------------------------------------------------------------- 8, 10. notes


def test_tables_disclose_the_validation_carve():
    p = make_predictions({BASE7: [1.0], KD7: [1.0, 1.3], f"pd:{B7}>{B7}": [1.0, 1.4], PD7: [1.0, 1.3, 1.6]})
    tables = [ev.table2(p, include_paper=False), ev.table4(p, include_paper=False), ev.iteration_curve(p, PD7),
              ev.table3(p, ev.simulate_readers(ev.patients_of_split(p), seed=0), method_id=PD7),
              ev.cv_summary(make_predictions({BASE7: [1.0]}, n_val=20, folds=4))]
    for t in tables:
        assert any(n.startswith("Training:") and "minus the validation" in n for n in t.attrs["notes"]), t.attrs
    note = next(n for n in tables[0].attrs["notes"] if n.startswith("Training:"))
    assert "90 (45 poor / 45 good) trained on" in note and "20 (10 poor / 10 good) carved out" in note


def test_top_k_note_counts_patients_with_fewer_slices():
    p = make_predictions({BASE7: [1.0], PD7: [1.0, 1.3, 1.6]}, n_val=20)
    ids = sorted(p["patient_id"].unique())
    n_slices = {pid: 10 for pid in ids}
    test_ids = sorted(p.loc[p["split"] == "test", "patient_id"].unique())
    val_ids = sorted(p.loc[p["split"] == "val", "patient_id"].unique())
    n_slices.update({test_ids[0]: 4, test_ids[1]: 9, test_ids[2]: 10, val_ids[0]: 3})
    with_col = p.assign(n_slices=p["patient_id"].map(n_slices))
    t = ev.table2(with_col, include_paper=False, top_k=10)
    note = next(n for n in t.attrs["notes"] if n.startswith("Top-k"))
    assert "2 of 28 test patients and 1 of 20 validation patients had fewer than 10" in note
    assert "mean of all their slices" in note
    t_old = ev.table2(p, include_paper=False, top_k=10)  # an older run: no n_slices column
    assert any(n.startswith("Top-k") and "do not record" in n for n in t_old.attrs["notes"])
    assert t_old["test_auc"].tolist() == t["test_auc"].tolist()
    assert not any(n.startswith("Top-k") for n in ev.table2(p, include_paper=False).attrs["notes"])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        ev.table2(p, top_k=0)



def test_table2_notes_say_every_seed_had_the_same_patients():
    """With several seeds the notes state that the splits are the same in every seed (split_seed), with counts."""
    preds = make_predictions(methods={f"baseline:{B7}": [1.0]}, seeds=(0, 1, 2))
    notes = " ".join(ev.table2(preds).attrs["notes"])
    assert "the same patients in each of the 3 seeds" in notes
    n = preds[(preds["seed"] == 0) & (preds["stage"] == 0)]["split"].value_counts()
    assert f"{n['train']} train / {n['val']} val / {n['test']} test" in notes


def test_table2_notes_count_patients_whose_split_moved_between_seeds():
    from pdstudy.evaluate._notes import seed_splits_note

    df = pd.DataFrame({"patient_id": ["a", "b", "a", "b"], "split": ["val", "test", "train", "test"],
                       "seed": [0, 0, 1, 1]})
    assert "1 patients are in different splits" in seed_splits_note(df)[0]
    assert seed_splits_note(df[df["seed"] == 0]) == []
