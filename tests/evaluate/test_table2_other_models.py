"""Table 2's rows of other kinds of model: the 3D ResNet-50 and the CNN + Transformer hybrid (issue 15)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from prediction_factory import B7, METHODS, make_predictions
from sklearn.metrics import roc_auc_score

from pdstudy import evaluate as ev
from pdstudy.evaluate._notes import HYBRID_MODEL_NOTE, VOLUME_MODEL_NOTE, quick_note
from pdstudy.evaluate._table2 import OTHER_MODEL_COMPARATORS
from pdstudy.stats import delong_test

VOLUME, HYBRID = "baseline:resnet50_3d", "baseline:efficientnet_b7_transformer"
NEW = {VOLUME: [0.9], HYBRID: [1.2]}


@pytest.fixture(scope="module")
def preds() -> pd.DataFrame:
    return make_predictions({**METHODS, **NEW})


@pytest.fixture(scope="module")
def t2(preds) -> pd.DataFrame:
    return ev.table2(preds, quick=True)


def _test_rows(preds: pd.DataFrame, mid: str) -> pd.DataFrame:
    rows = preds[(preds["method"] == mid) & (preds["split"] == "test")]
    return rows.set_index("patient_id").sort_index()


@pytest.mark.parametrize("mid", [VOLUME, HYBRID])
def test_rows_are_evaluated_like_the_others(preds, t2, mid):
    row = t2[t2["method_id"] == mid].iloc[0]
    assert row["status"] == "run" and row["kind"] == "baseline"
    test = _test_rows(preds, mid)
    expected = roc_auc_score(test["response"] == "poor", test["score"])
    assert row["test_auc"] == pytest.approx(expected, abs=1e-12)
    assert row["test_auc_lo"] < expected < row["test_auc_hi"]
    for policy in ev.POLICIES:
        assert not math.isnan(row[f"{policy}_acc"]) and row[f"{policy}_acc_lo"] <= row[f"{policy}_acc"]
    assert row["n_test"] == len(test)


@pytest.mark.parametrize("mid", [VOLUME, HYBRID])
def test_paired_delong_against_the_b7_baseline_outside_the_holm_family(preds, t2, mid):
    row = t2[t2["method_id"] == mid].iloc[0]
    assert row["compared_with"] == OTHER_MODEL_COMPARATORS[mid] == f"baseline:{B7}"
    a, b = _test_rows(preds, mid), _test_rows(preds, f"baseline:{B7}")
    _, p = delong_test((a["response"] == "poor").astype(int).to_numpy(), a["score"].to_numpy(),
                       b.loc[a.index, "score"].to_numpy())
    assert row["p_delong"] == pytest.approx(p, rel=1e-12)
    assert math.isnan(row["p_delong_holm"]) and not row["holm_family"]
    assert row["analysis"] == ev.ANALYSIS_LABELS["other_model"]


def test_the_holm_family_is_unchanged_by_the_new_rows(t2):
    without = ev.table2(make_predictions(METHODS), quick=True)
    family = t2[t2["holm_family"].astype(bool) & (t2["status"] == "run")].set_index("method_id")
    before = without[without["holm_family"].astype(bool) & (without["status"] == "run")].set_index("method_id")
    assert set(family.index) == set(before.index)
    np.testing.assert_allclose(family.loc[before.index, "p_delong_holm"], before["p_delong_holm"], rtol=0, atol=0)
    assert without[without["method_id"] == f"baseline:{B7}"]["analysis"].iloc[0] == ev.ANALYSIS_LABELS["baseline"]


def test_notes_say_what_each_model_is_and_how_it_is_scored(t2):
    notes = t2.attrs["notes"]
    assert VOLUME_MODEL_NOTE in notes and HYBRID_MODEL_NOTE in notes
    assert "no top-k" in VOLUME_MODEL_NOTE and "top-k" in HYBRID_MODEL_NOTE and "one reading" in HYBRID_MODEL_NOTE
    assert any("compared with the EfficientNet-B7 baseline (exploratory)" in n for n in notes)
    assert quick_note() in notes and "test_resnet3d" in quick_note() and "test_resnet_transformer" in quick_note()
    plain = ev.table2(make_predictions(METHODS), quick=True).attrs["notes"]
    assert VOLUME_MODEL_NOTE not in plain and HYBRID_MODEL_NOTE not in plain


def test_the_papers_rows_map_to_the_new_methods(t2):
    """The paper's '3DResNet-50' and 'Hybrid Model' rows hold the runs, at the paper's places, with its numbers."""
    for paper_name, mid, paper_auc in (("3DResNet-50", VOLUME, 0.69), ("Hybrid Model", HYBRID, 0.75)):
        rows = t2[t2["paper_method"] == paper_name]
        assert len(rows) == 1 and rows["method_id"].iloc[0] == mid and rows["status"].iloc[0] == "run"
        assert rows["paper_test_auc"].iloc[0] == pytest.approx(paper_auc)
    order = list(t2["paper_method"])
    assert order.index("EfficientNet-B7") < order.index("3DResNet-50") < order.index("Hybrid Model")
    not_run = ev.table2(make_predictions(METHODS), quick=True)
    for mid in (VOLUME, HYBRID):
        row = not_run[not_run["method_id"] == mid].iloc[0]
        assert row["status"] == "not run" and "method list" in row["reason"]
