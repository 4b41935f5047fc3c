"""Functions notebooks 01-05 call instead of holding code: training logs, their wording, cohort outputs."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pdstudy.core.methods import Method, ablation_grid
from pdstudy.core.params import load_profile
from pdstudy.core.rundir import run_dir
from pdstudy.core.vocab import PAPER_LABEL_FOOTNOTE
from pdstudy.report.cohort import TABLE1_SYNTHETIC_NOTE, TABLE1_TEST_NOTE, table1_notes
from pdstudy.report.outputs import missing_outputs
from pdstudy.report.training import (
    LEARNING_MIN_VAL_AUC,
    TRAINING_TABLES,
    best_by_val_auc,
    learning_note,
    learns_on_validation,
    timing_ratio_note,
    write_training_table,
)
from pdstudy.study.protocol import ablation_summary, iteration_summary, training_summary, uses_quick_recipe


def fake_result(method: Method, *, seed: int = 0, shift: float = 0.0) -> SimpleNamespace:
    """A ChainResult stand-in: every stage scores 8 patients (4 test), stage i a little better than i - 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for stage in range(len(method.chain)):
        for i in range(8):
            resp = "poor" if i % 2 else "good"
            split = "test" if i >= 4 else ("val" if i in (2, 3) else "train")
            score = float(np.clip(0.5 + (0.1 + 0.05 * stage + shift) * (1 if resp == "poor" else -1)
                                  + rng.normal(0, 0.2), 0, 1))
            rows.append({"patient_id": f"P{i}", "split": split, "response": resp,
                         "recist": "PD" if resp == "poor" else "CR", "score": score, "method": method.id,
                         "stage": stage, "seed": seed, "fold": -1, "repeat": 0})
    stages = [SimpleNamespace(reused=i == 0, meta={}) for i in range(len(method.chain))]
    return SimpleNamespace(method=method, predictions=pd.DataFrame(rows), stages=stages,
                           train_seconds=1.25 * len(method.chain))


def test_iteration_summary_one_row_per_stage():
    chain = Method("pd", ("efficientnet_b7",) * 3)
    table = iteration_summary([fake_result(chain), fake_result(chain, seed=1)])
    assert list(table.columns) == ["chain", "seed", "iteration", "test_auc", "test_auc_lo", "test_auc_hi"]
    assert table["iteration"].tolist() == [0, 1, 2, 0, 1, 2]
    assert table["seed"].tolist() == [0, 0, 0, 1, 1, 1]
    assert (table["chain"] == chain.label).all()
    assert ((table["test_auc_lo"] <= table["test_auc"]) & (table["test_auc"] <= table["test_auc_hi"])).all()


def test_ablation_summary_keeps_grid_order_and_flags():
    grid = ablation_grid(["efficientnet_b7", "efficientnet_b3"])
    results = [fake_result(m) for m in grid.values()]
    table = ablation_summary(grid, results)
    assert table["method"].tolist() == [m.id for m in grid.values()]
    assert table[["kd", "mn", "mi"]].values.tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]] * 2
    assert table["model"].tolist() == ["efficientnet_b7"] * 4 + ["efficientnet_b3"] * 4
    summary = training_summary(results)
    assert table.drop(columns=["model", "kd", "mn", "mi", "method"]).equals(summary.drop(columns="method"))


def test_uses_quick_recipe():
    quick = load_profile("quick")
    assert uses_quick_recipe({**quick, "workers": 16, "unrelated": object()})
    assert uses_quick_recipe({"epochs": quick["epochs"]})
    assert not uses_quick_recipe({**quick, "epochs": quick["epochs"] + 1})


def test_write_training_table(tmp_path):
    run = run_dir(tmp_path / "run")
    df = pd.DataFrame({"method": ["EfficientNet-B0"], "test_auc": [0.71234]})
    csv_path, md_path = write_training_table(df, run, "02_baselines_training")
    assert csv_path.read_text().splitlines() == ["method,test_auc", "EfficientNet-B0,0.71234"]
    md = md_path.read_text()
    assert md.startswith("# Baselines: training log\n")
    assert all(f"- {note}" in md for note in TRAINING_TABLES["02_baselines_training"][1])
    write_training_table(df, run, "04_pd_training")
    assert "\n- " not in (run.tables / "04_pd_training.md").read_text()
    with pytest.raises(ValueError, match="unknown training table 'table9'"):
        write_training_table(df, run, "table9")


def test_best_baseline_is_chosen_on_validation_never_on_test():
    # A has the best test AUC, B the best validation AUC: B is chosen.
    summary = pd.DataFrame({"method": ["A", "B", "C"], "val_auc": [0.62, 0.71, 0.71], "test_auc": [0.9, 0.6, 0.99],
                            "test_auc_lo": [0.7, 0.4, 0.9], "test_auc_hi": [0.97, 0.8, 1.0]})
    best = best_by_val_auc(summary)
    assert best["method"] == "B", "ties on validation AUC go to the first method; test AUC plays no part"
    assert (best["val_auc"], best["test_auc"], best["runs"]) == (0.71, 0.6, 1)
    assert learns_on_validation(best)
    assert learning_note(best) == (
        "Chosen on validation: **B**, validation AUC 0.710: at or above the bar of 0.60 set before looking at any "
        "test AUC, so it learned something that carries over to patients it was not trained on. Test AUC 0.600 "
        "(DeLong 95% CI 0.400-0.800), for information only: it played no part in the choice.")
    # Shuffling the test columns never changes the choice.
    shuffled = summary.assign(test_auc=summary["test_auc"][::-1].to_numpy())
    assert best_by_val_auc(shuffled)["method"] == "B"
    with pytest.raises(ValueError, match="empty"):
        best_by_val_auc(summary.iloc[:0])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['val_auc'\]"):
        best_by_val_auc(summary.drop(columns="val_auc"))


def test_validation_bar_and_note_below_it():
    assert LEARNING_MIN_VAL_AUC == 0.6
    row = pd.Series({"method": "A", "runs": 1, "val_auc": 0.599, "test_auc": 0.95, "test_auc_lo": 0.9,
                     "test_auc_hi": 0.99})
    assert not learns_on_validation(row), "a high test AUC does not rescue a low validation AUC"
    assert learns_on_validation(row.copy().replace(0.599, 0.6))
    assert "below the bar of 0.60" in learning_note(row) and "no evidence" in learning_note(row)
    assert not learns_on_validation(row.copy().replace(0.599, float("nan")))
    with pytest.raises(ValueError, match="min_auc must be in"):
        learns_on_validation(row, min_auc=1.5)


def test_best_baseline_averages_seeds_and_handles_missing_validation():
    summary = pd.DataFrame({"method": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1], "val_auc": [0.9, 0.5, 0.72, 0.74],
                            "test_auc": [0.8, 0.6, 0.7, 0.7], "test_auc_lo": 0.5, "test_auc_hi": 0.9})
    best = best_by_val_auc(summary)
    assert best["method"] == "B" and best["runs"] == 2 and best["val_auc"] == pytest.approx(0.73)
    assert np.isnan(best["test_auc_lo"]), "no single DeLong CI for a mean over runs"
    note = learning_note(best)
    assert "validation AUC 0.730 (mean of 2 runs)" in note
    assert "Test AUC 0.700 (mean of 2 runs), for information" in note
    none = summary.assign(val_auc=float("nan"))
    first = best_by_val_auc(none)
    assert first["method"] == "A" and np.isnan(first["val_auc"]) and not learns_on_validation(first)
    assert learning_note(first).startswith("Chosen on validation: **A** (the first baseline: no validation patients")


def test_timing_ratio_note():
    ladder, b7 = "efficientnet_b0>efficientnet_b3>efficientnet_b7", ">".join(["efficientnet_b7"] * 3)
    timing = pd.DataFrame({"chain": [b7, ladder], "train_seconds": [40.0, 20.0]})
    expected = "B0>B3>B7 took **0.50x** the time of B7>B7>B7 (paper: about 0.5x)"
    assert timing_ratio_note(timing, stand_ins=False) == expected + "."
    assert timing_ratio_note(timing, stand_ins=True) == (expected + " - quick stand-ins, so the ratio says little "
                                                         "about the real architectures.")
    assert timing_ratio_note(timing.iloc[:1], stand_ins=True) == ""


def test_timing_ratio_note_with_several_seeds_compares_mean_times():
    """Three seeds give three rows per chain (the paper profile): the note compares the chains' mean times."""
    ladder, b7 = "efficientnet_b0>efficientnet_b3>efficientnet_b7", ">".join(["efficientnet_b7"] * 3)
    timing = pd.DataFrame({"chain": [b7, ladder] * 3, "train_seconds": [40.0, 10.0, 60.0, 30.0, 50.0, 20.0]})
    note = timing_ratio_note(timing, stand_ins=False)
    assert note == "B0>B3>B7 took **0.40x** the time of B7>B7>B7 (mean over 3 runs each) (paper: about 0.5x)."


def test_table1_notes_name_the_origin(tmp_path):
    synthetic = SimpleNamespace(synthetic=True, manifest_path=tmp_path / "manifest.csv")
    assert table1_notes(synthetic) == [PAPER_LABEL_FOOTNOTE, TABLE1_TEST_NOTE, TABLE1_SYNTHETIC_NOTE]
    user = SimpleNamespace(synthetic=False, manifest_path=tmp_path / "site_a.csv")
    assert table1_notes(user)[-1] == "Manifest: site_a.csv"


def test_missing_outputs(tmp_path):
    run = run_dir(tmp_path / "run")
    (run.figures / "flow.png").write_bytes(b"x" * 2000)
    (run.figures / "flow.pdf").write_bytes(b"x" * 10)
    (run.tables / "t1.csv").write_text("a\n1\n")
    problems = missing_outputs(run, figures=["flow"], tables=["t1"])
    assert len(problems) == 2
    assert "flow.pdf has 10 bytes" in problems[0] and "t1.md is missing" in problems[1]
    (run.figures / "flow.pdf").write_bytes(b"x" * 2000)
    (run.tables / "t1.md").write_text("# t1\n")
    assert missing_outputs(run, figures=["flow"], tables=["t1"]) == []
