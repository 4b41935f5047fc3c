"""Tests for the tables of pdstudy.evaluate against independent computations (scikit-learn, SciPy, hand work)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prediction_factory import B0, B3, B7, KD7, METHODS, PD037, PD3, PD7, make_predictions  # noqa: E402, F401
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score

from pdstudy import evaluate as ev
from pdstudy.core.methods import method_from_id
from pdstudy.core.rundir import RunDir
from pdstudy.evaluate import simulate_readers
from pdstudy.report.tables import format_evaluation_table, write_evaluation_table
from pdstudy.stats import delong_test, youden_threshold


@pytest.fixture(scope="module")
def preds():
    return make_predictions()


@pytest.fixture(scope="module")
def t2(preds):
    return ev.table2(preds, quick=True)


def _rows(preds, mid, split, stage=None):
    stage = method_from_id(mid).final_stage if stage is None else stage
    return preds[(preds["method"] == mid) & (preds["stage"] == stage) & (preds["split"] == split)]


# --------------------------------------------------------------------------------------------- methods


def test_method_names_are_shared_with_training():
    """Evaluation parses the IDs training writes: one Method class, in the torch-free pdstudy.core.methods."""
    from pdstudy.core import methods

    assert ev.DEFAULT_ABLATION_METHODS == {k: m.id for k, m in methods.ablation_grid().items()}
    for kind, chain in [("baseline", (B7,)), ("kd", (B7, B3)), ("pd", (B0, B3, B7)), ("pd", (B7, B7))]:
        m = methods.Method(kind, chain)
        assert method_from_id(m.id) == m
    assert methods.Method("pd", (B0, B3, B7)).label == "Progressive Distill (B0>B3>B7)"
    assert methods.Method("baseline", ("resnext101_32x8d",)).label == "ResNeXt-101"
    for kind, chain in [("kd", (B7,)), ("baseline", (B7, B3)), ("xx", (B7,))]:
        with pytest.raises(ValueError):
            methods.Method(kind, chain)


def test_torch_free_import():
    code = ("import sys, pdstudy.evaluate, pdstudy.evaluate.readers, pdstudy.report.figures\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint('OK')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


def test_method_from_id():
    m = method_from_id(PD037)
    assert m.kind == "pd" and m.chain == (B0, B3, B7) and m.final_stage == 2
    assert m.label == "Progressive Distill (B0>B3>B7)"
    assert method_from_id(f"baseline:{B7}").label == "EfficientNet-B7"
    for bad, msg in [("efficientnet_b7", "kind:arch"), ("xx:efficientnet_b7", "kind"), (f"kd:{B7}>{B7}>{B7}", "kd"),
                     ("pd:a>", "architectures"), ("baseline:a>b", "baseline")]:
        with pytest.raises(ValueError, match=msg):
            method_from_id(bad)
    assert ev.default_baseline(method_from_id(PD037)) == f"baseline:{B7}"
    assert ev.default_baseline(method_from_id(f"baseline:{B3}")) is None


# --------------------------------------------------------------------------------------------- validation


def test_validation_messages(preds):
    with pytest.raises(ValueError, match="score"):
        ev.table2(preds.drop(columns="score"))
    bad = preds.copy()
    bad.loc[bad.index[5], "response"] = "PR"
    with pytest.raises(ValueError, match="'response'.*baseline:efficientnet_b7"):
        ev.final_stage(bad)
    bad = preds.copy()
    bad.loc[bad.index[0], "recist"] = "SD"  # patient 0 is a good responder
    with pytest.raises(ValueError, match="recist"):
        ev.final_stage(bad)
    bad = preds.copy()
    bad.loc[bad.index[3], "score"] = np.nan
    with pytest.raises(ValueError, match="'score'"):
        ev.final_stage(bad)
    with pytest.raises(ValueError, match="appears twice"):
        ev.final_stage(pd.concat([preds, preds.iloc[:1]]))
    bad = preds.copy()
    bad.loc[bad["method"] == KD7, "stage"] = 3
    with pytest.raises(ValueError, match="stage.*kd:"):
        ev.final_stage(bad)
    with pytest.raises(ValueError, match="final stage"):
        ev.final_stage(preds[~((preds["method"] == PD7) & (preds["stage"] == 2))])


def test_final_stage(preds):
    fs = ev.final_stage(preds)
    got = fs.groupby("method")["stage"].unique().map(list).to_dict()
    assert got == {mid: [len(s) - 1] for mid, s in METHODS.items()}


# --------------------------------------------------------------------------------------------- Table 2


def test_table2_rows_and_columns(t2):
    run = t2[t2["status"] == "run"]
    assert set(run["method_id"]) == set(METHODS)
    assert len(run) == len(METHODS)
    not_run = t2[t2["status"] == "not run"]
    names = set(not_run["method"])
    assert {"3D ResNet-50", "Hybrid Model (B7 + Transformer)", "ResNet-50", "EfficientNet-B0",
            "Knowledge Distillation (B7>B3)"} <= names
    assert not_run["reason"].str.len().gt(0).all()
    assert "method list" in not_run.loc[not_run["method"] == "3D ResNet-50", "reason"].iloc[0]
    for col in ["method_id", "method", "n_seeds", "train_auc", "train_auc_lo", "train_auc_hi", "test_auc",
                "test_auc_lo", "test_auc_hi", "test_auc_seed_mean", "test_auc_seed_sd", "compared_with", "p_delong",
                "p_delong_holm", "paper_test_auc", "status", "reason"]:
        assert col in t2.columns, col
    for pol in ev.POLICIES:
        for m in ("acc", "sen", "spe"):
            for suffix in ("", "_lo", "_hi", "_seed_mean", "_seed_sd"):
                assert f"{pol}_{m}{suffix}" in t2.columns
        assert f"{pol}_threshold" in t2.columns
    notes = " ".join(t2.attrs["notes"])
    assert "optimistic" in notes and "Holm" in notes and "GR = good response" in notes and "stand-in" in notes
    # paper order: the paper's first row comes first, the run-only method (pd b7>b7) last
    assert t2["method"].iloc[0] == "ResNet-50"
    assert t2["method_id"].iloc[-1] == f"pd:{B7}>{B7}"
    disp = format_evaluation_table(t2)
    assert len(disp) == len(t2)
    assert (disp.loc[t2["status"] == "not run", "Test AUC [95% CI]"] == "not run").all()


def test_table2_auc_matches_sklearn(preds, t2):
    for mid in METHODS:
        row = t2.set_index("method_id").loc[mid]
        for split in ("train", "test"):
            rows = _rows(preds, mid, split)
            expected = roc_auc_score(rows["response"] == "poor", rows["score"])
            assert row[f"{split}_auc"] == pytest.approx(expected, abs=1e-12)
            assert row[f"{split}_auc_lo"] <= expected <= row[f"{split}_auc_hi"]
        assert row["n_seeds"] == 1 and math.isnan(row["test_auc_seed_sd"])


def test_table2_delong_and_holm(preds, t2):
    tab = t2[t2["status"] == "run"].set_index("method_id")
    ps = {}
    for mid in METHODS:
        m = method_from_id(mid)
        if m.kind == "baseline":
            assert math.isnan(tab.loc[mid, "p_delong"])
            continue
        comp = f"baseline:{m.chain[-1]}"
        assert tab.loc[mid, "compared_with"] == comp
        a = _rows(preds, mid, "test").set_index("patient_id").sort_index()
        b = _rows(preds, comp, "test").set_index("patient_id").sort_index()
        _, p = delong_test((a["response"] == "poor").astype(int), a["score"], b["score"])
        assert tab.loc[mid, "p_delong"] == pytest.approx(p, rel=1e-12)
        ps[mid] = p
    # Holm by hand over the fixed family of the paper's 8 KD/PD rows: the family members of this run
    # (KD B7, PD B7, PD B3, PD B0>B3>B7), the 4 untested ones counting as p = 1; sorted p_(i) * (8 - i + 1),
    # running maximum, capped at 1. pd:b7>b7 is not a paper row: unadjusted (exploratory).
    family = {mid: p for mid, p in ps.items() if mid != f"pd:{B7}>{B7}"}
    order = sorted(family, key=family.get)
    k = ev.HOLM_FAMILY_SIZE
    running = 0.0
    for i, mid in enumerate(order):
        running = max(running, min(1.0, (k - i) * family[mid]))
        assert tab.loc[mid, "p_delong_holm"] == pytest.approx(running, rel=1e-12)
    assert math.isnan(tab.loc[f"pd:{B7}>{B7}", "p_delong_holm"]) and tab.loc[f"pd:{B7}>{B7}", "p_delong"] > 0
    assert tab.loc[f"pd:{B7}>{B7}", "analysis"].startswith("exploratory")


def test_youden_val_uses_only_val_rows(preds, t2):
    rng = np.random.default_rng(5)
    perturbed = preds.copy()
    test_mask = perturbed["split"] == "test"
    perturbed.loc[test_mask, "score"] = rng.uniform(size=int(test_mask.sum()))
    t2b = ev.table2(perturbed, include_paper=False).set_index("method_id")
    tab = t2.set_index("method_id")
    for mid in METHODS:
        assert t2b.loc[mid, "youden_val_threshold"] == tab.loc[mid, "youden_val_threshold"]
        val = _rows(preds, mid, "val")
        assert tab.loc[mid, "youden_val_threshold"] == youden_threshold((val["response"] == "poor").astype(int),
                                                                        val["score"])
        # youden_val metrics by hand on the test rows
        test = _rows(preds, mid, "test")
        thr = tab.loc[mid, "youden_val_threshold"]
        pred = test["score"] >= thr
        poor = test["response"] == "poor"
        assert tab.loc[mid, "youden_val_sen"] == pytest.approx((pred & poor).sum() / poor.sum())
        assert tab.loc[mid, "youden_val_spe"] == pytest.approx((~pred & ~poor).sum() / (~poor).sum())
        assert tab.loc[mid, "youden_val_acc"] == pytest.approx((pred == poor).mean())
    assert any(t2b.loc[mid, "youden_test_threshold"] != tab.loc[mid, "youden_test_threshold"] for mid in METHODS)


def test_no_val_patients_gives_nan_with_note():
    p = make_predictions({f"baseline:{B7}": [1.0], PD7: [1.0, 1.2, 1.5]}, n_val=0)
    t = ev.table2(p, include_paper=False)
    assert t["youden_val_acc"].isna().all() and t["youden_val_threshold"].isna().all()
    assert t["youden_test_acc"].notna().all()
    assert any("not available" in n for n in t.attrs["notes"])
    assert (format_evaluation_table(t)["ACC % (Youden on val)"] == "n/a").all()


def test_several_seeds_use_seed_averaged_score():
    p = make_predictions({f"baseline:{B7}": [1.0], PD7: [1.0, 1.2, 1.6]}, seeds=(0, 1, 2))
    t = ev.table2(p, include_paper=False).set_index("method_id")
    rows = _rows(p, PD7, "test")
    ens = rows.groupby("patient_id").agg(score=("score", "mean"), response=("response", "first"))
    assert t.loc[PD7, "n_seeds"] == 3
    assert t.loc[PD7, "test_auc"] == pytest.approx(roc_auc_score(ens["response"] == "poor", ens["score"]))
    per_seed = [roc_auc_score(g["response"] == "poor", g["score"]) for _, g in rows.groupby("seed")]
    assert t.loc[PD7, "test_auc_seed_mean"] == pytest.approx(np.mean(per_seed))
    assert t.loc[PD7, "test_auc_seed_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert any("SEED ENSEMBLE" in n and "SINGLE MODELS" in n for n in t.attrs["notes"])


def test_custom_baseline_and_missing_comparator(preds):
    t = ev.table2(preds, include_paper=False, baseline_for={PD037: f"baseline:{B3}"}).set_index("method_id")
    assert t.loc[PD037, "compared_with"] == f"baseline:{B3}"
    p = make_predictions({PD7: [1.0, 1.2, 1.5]})
    t = ev.table2(p, include_paper=False)
    assert t["p_delong"].isna().all()
    assert any("comparator not run" in n for n in t.attrs["notes"])


# --------------------------------------------------------------------------------------------- Table 3


def test_table3_mcnemar_matches_binomtest(preds):
    pts = ev.patients_of_split(preds)
    readers = simulate_readers(pts, seed=3)
    t3 = ev.table3(preds, readers, method_id=PD7)
    assert list(t3["kind"]) == ["reader"] * 3 + ["average", "model", "model"]
    assert t3["row"].iloc[:3].str.contains("simulated").all()
    assert any("NOT real clinicians" in n for n in t3.attrs["notes"])
    test = _rows(preds, PD7, "test").set_index("patient_id").sort_index()
    thr = ev.table2(preds, include_paper=False).set_index("method_id").loc[PD7, "youden_val_threshold"]
    model_poor = test["score"] >= thr
    truth_poor = test["response"] == "poor"
    model_ok = model_poor == truth_poor
    ps = []
    for _, r in t3[t3["kind"] == "reader"].iterrows():
        calls = readers[readers["reader_id"] == r["reader_id"]].set_index("patient_id").loc[test.index, "call"]
        reader_ok = (calls == "poor") == truth_poor
        b = int((model_ok & ~reader_ok).sum())
        c = int((~model_ok & reader_ok).sum())
        assert (r["mcnemar_b"], r["mcnemar_c"]) == (b, c)
        expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert r["mcnemar_p"] == pytest.approx(expected, rel=1e-12)
        ps.append(expected)
        assert r["sen"] == pytest.approx(((calls == "poor") & truth_poor).sum() / truth_poor.sum())
    avg = t3[t3["kind"] == "average"].iloc[0]
    assert avg["acc"] == pytest.approx(t3.loc[t3["kind"] == "reader", "acc"].mean())
    model = t3[(t3["kind"] == "model") & (t3["policy"] == "youden_val")].iloc[0]
    assert model["acc"] == pytest.approx(model_ok.mean())
    disp = format_evaluation_table(t3)
    assert "p (McNemar)" in disp.columns and len(disp) == len(t3)


def test_table3_reader_must_cover_test_patients(preds):
    pts = ev.patients_of_split(preds)
    readers = simulate_readers(pts, seed=0)
    with pytest.raises(ValueError, match="misses 1 patient"):
        ev.table3(preds, readers.iloc[1:], method_id=PD7)


# --------------------------------------------------------------------------------------------- Table 4, curve, CV


def test_table4_grid(preds):
    t4 = ev.table4(preds, quick=True)
    assert list(zip(t4["model"], t4["kd"], t4["mn"], t4["mi"])) == list(ev.DEFAULT_ABLATION_METHODS)
    assert ev.DEFAULT_ABLATION_METHODS[(B7, 1, 1, 1)] == PD7
    status = dict(zip(t4["method_id"], t4["status"]))
    assert status[PD7] == "run" and status[f"kd:{B3}>{B3}"] == "not run"
    row = t4.set_index("method_id").loc[f"pd:{B7}>{B7}"]
    rows = _rows(preds, f"pd:{B7}>{B7}", "test")
    assert row["test_auc"] == pytest.approx(roc_auc_score(rows["response"] == "poor", rows["score"]))
    assert t4.set_index("method_id").loc[PD7, "paper_auc"] == pytest.approx(0.87)
    assert "youden_val_spe" in t4.columns and "youden_test_acc_lo" in t4.columns
    disp = format_evaluation_table(t4)
    assert list(disp.columns[:4]) == ["Model", "KD", "MN", "MI"]


def test_iteration_curve(preds):
    cur = ev.iteration_curve(preds, PD037)
    assert list(cur["stage"]) == [0, 1, 2] and list(cur["arch"]) == [B0, B3, B7]
    for st in range(3):
        rows = _rows(preds, PD037, "test", stage=st)
        assert cur["test_auc"].iloc[st] == pytest.approx(roc_auc_score(rows["response"] == "poor", rows["score"]))
    assert {"youden_val_acc", "youden_test_sen", "test_auc_lo"} <= set(cur.columns)
    assert format_evaluation_table(cur)["Role"].iloc[0] == "teacher"


def test_cv_summary():
    p = make_predictions({f"baseline:{B7}": [1.0], f"kd:{B7}>{B7}": [1.0, 1.4]}, n_val=20, folds=4, repeats=3)
    per = ev.cv_summary(p, per_repeat=True)
    assert len(per) == 2 * 3
    for _, r in per.iterrows():
        rows = p[(p["method"] == r["method_id"]) & (p["repeat"] == r["repeat"]) & (p["split"] == "test")
                 & (p["stage"] == method_from_id(r["method_id"]).final_stage)]
        assert len(rows) == r["n_patients"] == 138
        assert r["auc"] == pytest.approx(roc_auc_score(rows["response"] == "poor", rows["score"]))
    summ = ev.cv_summary(p).set_index("method_id")
    g = per[per["method_id"] == KD7]["auc"]
    assert summ.loc[KD7, "auc_mean"] == pytest.approx(g.mean())
    assert summ.loc[KD7, "auc_sd"] == pytest.approx(g.std(ddof=1))
    assert summ.loc[KD7, "n_repeats"] == 3
    assert summ["youden_val_acc_mean"].notna().all()
    assert any("not independent" in n for n in summ.attrs["notes"])
    with pytest.raises(ValueError, match="fold >= 0"):
        ev.cv_summary(make_predictions({f"baseline:{B7}": [1.0]}))


def test_write_evaluation_table(t2, tmp_path):
    run = RunDir(tmp_path / "run").create()
    paths = write_evaluation_table(t2, run, "table2", title="Table 2")
    md = Path(paths["display"][1]).read_text()
    assert md.startswith("# Table 2") and "Holm" in md and "not run" in md
    values = pd.read_csv(paths["values"][0])
    assert len(values) == len(t2) and "test_auc" in values.columns
