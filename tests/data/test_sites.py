"""Per-site summary of a multi-centre cohort: patients screened and kept, source and cache geometry, per site."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdstudy.data import SITE_SUMMARY_COLUMNS, site_summary
from pdstudy.data.sites import ALL_SITES, NO_SITE

# site, status, pixel spacing (mm), slice spacing (mm), slices kept; None: excluded
PATIENTS = {
    "A1": ("A", 0.70, 5.0, 20), "A2": ("A", 0.80, 5.0, 24), "A3": ("A", 0.74, 4.0, 23), "A4": ("A", None, None, 0),
    "B1": ("B", 0.60, 2.5, 44), "B2": ("B", 0.62, 3.0, 40),
    "X1": ("", None, None, 0),  # screened, outside every split, no site code
}


def _frames(*, with_site: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = list(PATIENTS)
    manifest = pd.DataFrame({"patient_id": ids, "split": ["" if p == "X1" else "train" for p in ids]})
    if with_site:
        manifest["site"] = [PATIENTS[p][0] for p in ids]
    qc = pd.DataFrame({
        "patient_id": ids,
        "status": ["excluded" if PATIENTS[p][1] is None else "included" for p in ids],
        "n_slices": [PATIENTS[p][3] for p in ids],
        "pixel_spacing_mm": ["" if PATIENTS[p][1] is None else PATIENTS[p][1] for p in ids],
        "slice_mm": ["" if PATIENTS[p][2] is None else PATIENTS[p][2] for p in ids],
    })
    return manifest, qc


def _expected(values: list[float]) -> str:
    x = np.asarray(values, dtype=float)
    return f"{np.median(x):g} ({x.min():g}-{x.max():g})"


def test_one_row_per_site_with_counts_and_median_and_range():
    manifest, qc = _frames()
    table = site_summary(manifest, qc, pixel_mm=384 / 64)
    assert list(table.columns) == list(SITE_SUMMARY_COLUMNS)
    assert table["site"].tolist() == ["A", "B", NO_SITE]
    t = table.set_index("site")
    assert t.loc["A", ["n_screened", "n_included", "n_excluded"]].tolist() == [4, 3, 1]
    assert t.loc["B", ["n_screened", "n_included", "n_excluded"]].tolist() == [2, 2, 0]
    assert t.loc[NO_SITE, ["n_screened", "n_included", "n_excluded"]].tolist() == [1, 0, 1]
    assert t["n_screened"].sum() == len(manifest)
    for site in ("A", "B"):
        kept = [v for v in PATIENTS.values() if v[0] == site and v[1] is not None]
        assert t.loc[site, "pixel_spacing_mm"] == _expected([v[1] for v in kept])
        assert t.loc[site, "slice_mm"] == _expected([v[2] for v in kept])
        assert t.loc[site, "n_slices"] == _expected([v[3] for v in kept])
    assert t.loc["A", "pixel_spacing_mm"] == "0.74 (0.7-0.8)" and t.loc["B", "n_slices"] == "42 (40-44)"
    assert (t["cache_pixel_mm"] == 6.0).all()
    assert t.loc[NO_SITE, ["pixel_spacing_mm", "slice_mm", "n_slices"]].tolist() == ["", "", ""]


def test_a_single_site_cohort_is_one_row():
    manifest, qc = _frames(with_site=False)
    table = site_summary(manifest, qc, pixel_mm=1.40625)
    assert table["site"].tolist() == [ALL_SITES]
    row = table.iloc[0]
    assert (row["n_screened"], row["n_included"], row["n_excluded"]) == (7, 5, 2)
    assert row["cache_pixel_mm"] == 1.4062
    kept = [v for v in PATIENTS.values() if v[1] is not None]
    assert row["slice_mm"] == _expected([v[2] for v in kept])
    # An empty site column (read_manifest's single-site frame) is the same cohort.
    assert site_summary(manifest.assign(site=""), qc, pixel_mm=1.40625).equals(table)


def test_a_cache_written_before_slice_mm_leaves_it_empty():
    manifest, qc = _frames()
    table = site_summary(manifest, qc.drop(columns="slice_mm"), pixel_mm=6.0)
    assert (table["slice_mm"] == "").all() and table["pixel_spacing_mm"].ne("").sum() == 2


@pytest.mark.parametrize(("change", "message"), [
    (lambda m, q: (m, q, 0.0), "pixel_mm must be a positive number"),
    (lambda m, q: (m, q, True), "pixel_mm must be a positive number"),
    (lambda m, q: (m, q.iloc[1:], 6.0), r"qc has no row for manifest patient\(s\) \['A1'\]"),
    (lambda m, q: (m, q.drop(columns="status"), 6.0), r"qc lacks column\(s\) \['status'\]"),
    (lambda m, q: (m.drop(columns="patient_id"), q, 6.0), "manifest lacks column 'patient_id'"),
])
def test_bad_inputs_are_named(change, message):
    manifest, qc, pixel_mm = change(*_frames())
    with pytest.raises(ValueError, match=message):
        site_summary(manifest, qc, pixel_mm=pixel_mm)
