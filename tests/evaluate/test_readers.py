"""Tests for pdstudy.evaluate.readers: the readers CSV, simulated readers, reader metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pdstudy.core.paths import repo_root
from pdstudy.evaluate import (
    DEFAULT_OPERATING_POINTS,
    OperatingPoint,
    is_simulated,
    read_readers,
    reader_metrics,
    simulate_readers,
)

REPO = repo_root()


@pytest.fixture()
def patients():
    """28 test patients, 14 poor and 14 good, in mixed order."""
    resp = ["poor", "good"] * 14
    order = np.random.default_rng(1).permutation(28)
    return pd.DataFrame({"patient_id": [f"T{i:02d}" for i in order], "response": resp})


def test_simulated_readers_hit_operating_points_exactly(patients):
    readers = simulate_readers(patients, seed=0)
    assert list(readers.columns) == ["patient_id", "reader_id", "years_experience", "call", "simulated"]
    assert readers["simulated"].all() and readers["reader_id"].str.endswith("(simulated)").all()
    rm = reader_metrics(readers, patients).set_index("reader_id")
    # C3: SEN 14/14, SPE 12/14; C20: 12/14, 11/14; C40: 13/14, 9/14 (paper Table 3, C20 SPE corrected)
    expected = {"C3 (simulated)": (14, 12, 3), "C20 (simulated)": (12, 11, 20), "C40 (simulated)": (13, 9, 40)}
    for rid, (tp, tn, years) in expected.items():
        r = rm.loc[rid]
        assert (r["tp"], r["tn"], r["fn"], r["fp"]) == (tp, tn, 14 - tp, 14 - tn)
        assert r["years_experience"] == years and bool(r["simulated"])
        assert r["sen"] == pytest.approx(tp / 14) and r["spe"] == pytest.approx(tn / 14)
        assert r["acc"] == pytest.approx((tp + tn) / 28)
        assert r["sen_lo"] <= r["sen"] <= r["sen_hi"]
    assert round(100 * rm.loc["C20 (simulated)", "sen"], 2) == 85.71
    assert round(100 * rm.loc["C20 (simulated)", "spe"], 2) == 78.57


def test_simulation_is_seeded(patients):
    a = simulate_readers(patients, seed=7)
    b = simulate_readers(patients, seed=7)
    c = simulate_readers(patients, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a["call"].equals(c["call"])


def test_default_operating_points_match_paper_table3():
    from pdstudy.core.paper import load_paper

    t3 = load_paper().table3.set_index("reader")
    for op in DEFAULT_OPERATING_POINTS:
        row = t3.loc[op.name]
        assert int(row["years_experience"]) == op.years_experience
        assert round(100 * op.sensitivity, 2) == float(row["sen"])
        assert round(100 * (op.sensitivity + op.specificity) / 2, 2) == float(row["acc"])  # 14 poor, 14 good
        if op.name != "C20":  # printed 75.57% is impossible; 11/14 = 78.57% is used
            assert round(100 * op.specificity, 2) == float(row["spe"])
    assert DEFAULT_OPERATING_POINTS[1].specificity == 11 / 14


def test_custom_operating_point_and_validation(patients):
    r = simulate_readers(patients, seed=0, operating_points=[OperatingPoint("R1", 5, 0.5, 1.0)])
    rm = reader_metrics(r, patients)
    assert (rm["tp"].iloc[0], rm["tn"].iloc[0]) == (7, 14)
    with pytest.raises(ValueError, match="sensitivity"):
        OperatingPoint("R", 1, 85.7, 0.5)
    with pytest.raises(ValueError, match="empty"):
        simulate_readers(patients, operating_points=[])
    bad = patients.copy()
    bad.loc[0, "response"] = "PR"
    with pytest.raises(ValueError, match="response"):
        simulate_readers(bad)


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "readers.csv"
    path.write_text(text)
    return path


def test_read_readers_roundtrip(tmp_path, patients):
    sim = simulate_readers(patients, seed=2)
    path = tmp_path / "sim.csv"
    sim.to_csv(path, index=False)
    back = read_readers(path)
    pd.testing.assert_frame_equal(back[list(sim.columns)], sim, check_dtype=False)
    assert back["simulated"].dtype == bool
    real = _write(tmp_path, "patient_id,reader_id,years_experience,call\nT00,C3,3,good\nT01,C3,3,poor\n")
    got = read_readers(real)
    assert list(got["call"]) == ["good", "poor"] and not got["simulated"].any()
    assert is_simulated("C3 (simulated)") and not is_simulated("C3")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("patient_id,reader_id,call\nT00,C3,good\n", r"missing column\(s\) \['years_experience'\]"),
        ("patient_id,reader_id,years_experience,call\nT00,C3,3,good\nT01,C3,3,PR\n",
         r"row 2, column 'call' has unknown call 'PR'.*GR/PR"),
        ("patient_id,reader_id,years_experience,call\nT00,C3,3,good\nT01,C3,3,maybe\n", r"row 2, column 'call'"),
        ("patient_id,reader_id,years_experience,call\nT00,C3,3,good\nT00,C3,3,poor\n",
         r"row 2 repeats reader 'C3' on patient 'T00' \(first at row 1\)"),
        ("patient_id,reader_id,years_experience,call\nT00,C3,three,good\n", r"row 1, column 'years_experience'"),
        ("patient_id,reader_id,years_experience,call\nT00,,3,good\n", r"row 1, column 'reader_id' is empty"),
        ("patient_id,reader_id,years_experience,call\nT00,C3,3,good\nT01,C3,4,good\n", r"differs.*'C3'"),
    ],
)
def test_read_readers_errors_name_row_and_column(tmp_path, text, pattern):
    with pytest.raises(ValueError, match=pattern):
        read_readers(_write(tmp_path, text))


def test_reader_metrics_needs_all_patients(patients):
    readers = simulate_readers(patients, seed=0)
    with pytest.raises(ValueError, match="misses 1 patient"):
        reader_metrics(readers.iloc[1:], patients)
    with pytest.raises(ValueError, match="not in patients"):
        reader_metrics(readers, patients.iloc[1:])


def test_manifest_readme_documents_readers_csv():
    text = (REPO / "data_manifest" / "README.md").read_text()
    section = text.split("## Readers CSV", 1)[1]
    for col in ("patient_id", "reader_id", "years_experience", "call", "simulated"):
        assert f"`{col}`" in section
