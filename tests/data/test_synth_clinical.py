"""The synthetic cohort's ``clinical_signal``: the default is today's cohort, byte for byte; other values weaken the
covariates' dependence on the response, and live in their own folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy.stats import chi2_contingency

from pdstudy.data import synth
from pdstudy.data.cohort import load_cohort, synthetic_dir
from pdstudy.data.synth._plan import _TABLE1, _assign_groups, _clinical, _dilute, _plan
from pdstudy.data.synth._write import _parameters

#: Digest of the default cohort's manifest and UIDs (:func:`plan_digest`), per generator version, taken before
#: ``clinical_signal`` existed: the default must stay exactly this cohort. A new generator version that changes
#: the bytes on purpose adds its own digest here.
DEFAULT_DIGEST = {"2.3": "e39634551fdbf474325da5262d5217b442fcb629c0acfd9e987a4fd3b76fbf74",
                  "3.0": "1bfeebe52f247ecd8816f9583f894dfd3476ea6ebeb560e0717f266c7cbeb859"}  # two sites (issue 17)
COVARIATES = ["age", "sex", "lauren", "cea", "ca199", "ct_stage", "cn_stage", "cm_stage"]
TINY = {"patients": 6, "seed": 1, "slices": 8, "size": 32}


def plan_digest(**kwargs: object) -> str:
    """SHA-256 of the manifest rows and every study and series UID of the plan."""
    plan = _plan(164, 0, **kwargs)
    manifest = synth.plan_cohort(164, 0, **kwargs)
    h = hashlib.sha256()
    for row in manifest.itertuples(index=False):
        h.update(("\t".join(map(str, row)) + "\n").encode())
    for uid in [*plan["study_uid"], *(s["series_uid"] for series in plan["series"] for s in series)]:
        h.update((uid + "\n").encode())
    return h.hexdigest()


def test_default_signal_is_the_cohort_of_before():
    assert synth.GENERATOR_VERSION in DEFAULT_DIGEST, "a new generator version needs its digest"
    expected = DEFAULT_DIGEST[synth.GENERATOR_VERSION]
    assert plan_digest() == expected
    assert plan_digest(clinical_signal=1) == expected
    pd.testing.assert_frame_equal(_plan(164, 0), _plan(164, 0, clinical_signal=1.0))


def test_default_parameters_keep_the_cache_key():
    """synth.json's parameters (part of the slice-cache key) name clinical_signal only when it is not 1."""
    default = _parameters(164, 0, 24, 128)
    assert default == {"patients": 164, "seed": 0, "slices": 24, "size": 128, "sites": 2, "site_shift": 1.0,
                       "site_poor": 1.0, "generator_version": synth.GENERATOR_VERSION}
    assert _parameters(164, 0, 24, 128, 1) == default
    assert _parameters(164, 0, 24, 128, 0.5)["clinical_signal"] == 0.5


def test_folder_name_holds_the_signal_only_when_not_default(tmp_path: Path):
    kw = {"patients": 164, "seed": 0, "slices": 24, "size": 128}
    default = synthetic_dir(tmp_path, **kw)
    assert default.name == "n164-seed0-k24-px128-sites2"
    assert synthetic_dir(tmp_path, **kw, clinical_signal=1) == default
    names = {v: synthetic_dir(tmp_path, **kw, clinical_signal=v).name for v in (0, 0.25, 0.5, 1 / 3)}
    assert names[0] == "n164-seed0-k24-px128-sites2-clin0" and names[0.5] == "n164-seed0-k24-px128-sites2-clin0.5"
    assert len(set(names.values()) | {default.name}) == 5


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5", float("nan"), None])
def test_clinical_signal_is_checked(bad: object):
    with pytest.raises(ValueError, match="clinical_signal"):
        synth.check_clinical_signal(bad)
    with pytest.raises(ValueError, match="clinical_signal"):
        synth.plan_cohort(20, 0, clinical_signal=bad)  # type: ignore[arg-type]


def cramers_v(clinical: pd.DataFrame, groups: pd.DataFrame, cov: str, split: str = "train") -> float:
    """Cramer's V between the response and one covariate within one split."""
    rows = groups["split"] == split
    table = pd.crosstab(groups.loc[rows, "response"], clinical.loc[rows, cov])
    chi2 = chi2_contingency(table, correction=False).statistic
    return float(np.sqrt(chi2 / table.to_numpy().sum() / (min(table.shape) - 1)))


def test_signal_scales_the_dependence_on_the_response():
    """A large cohort: Lauren type depends on the response at 1, much less at 0.5, hardly at 0."""
    groups = _assign_groups(3000, 0)
    base = _clinical(groups, 0)
    v = {s: cramers_v(_dilute(base, groups, 0, s), groups, "lauren") for s in (0.0, 0.5, 1.0)}
    assert v[1.0] > 0.3 and v[0.0] < 0.1 and v[0.0] + 0.05 < v[0.5] < v[1.0] - 0.05
    mixed = _dilute(base, groups, 0, 0.5)
    kept = (mixed[COVARIATES[1:]] == base[COVARIATES[1:]]).to_numpy().mean()
    assert 0.5 < kept < 0.85  # half kept, and some redraws land on the same code


def test_signal_zero_draws_do_not_see_the_response():
    """At 0 every value is redrawn from margins pooled over the responses: shuffling the responses within each
    split changes nothing; at 1 it changes the covariates."""
    groups = _assign_groups(300, 2)
    shuffled = groups.copy()
    rng = np.random.default_rng(0)
    for _, idx in groups.groupby("split").groups.items():
        shuffled.loc[idx, "response"] = rng.permutation(groups.loc[idx, "response"].to_numpy())
    assert (shuffled["response"] != groups["response"]).any()
    at_zero = [_dilute(_clinical(g, 2), g, 2, 0.0) for g in (groups, shuffled)]
    pd.testing.assert_frame_equal(at_zero[0], at_zero[1])
    assert not _clinical(groups, 2).equals(_clinical(shuffled, 2))


def test_signal_zero_ignores_the_response_and_table1_counts_hold_only_at_one():
    m0, m1 = (synth.plan_cohort(clinical_signal=s) for s in (0, 1))
    assert (m0[["patient_id", "split", "response", "recist", "dicom_dir"]]
            == m1[["patient_id", "split", "response", "recist", "dicom_dir"]]).all().all()
    inc = m0[m0["split"] != ""]
    differs = [cov for (split, response), table in _TABLE1.items() for cov, counts in table.items()
               if inc[(inc["split"] == split) & (inc["response"] == response)][cov].value_counts().to_dict()
               != {k: v for k, v in counts.items() if v}]
    assert differs, "at clinical_signal 0 the counts should no longer be the paper's"
    assert set(inc["age"].astype(int)) <= set(range(39, 82))


def test_generated_cohort_records_the_signal_and_keeps_the_pixels(tmp_path: Path):
    a = synth.generate_cohort(tmp_path / "a", show_progress=False, **TINY).parent
    b = synth.generate_cohort(tmp_path / "b", show_progress=False, clinical_signal=0, **TINY).parent
    meta_a, meta_b = (json.loads((d / "synth.json").read_text()) for d in (a, b))
    assert "clinical_signal" not in meta_a["parameters"] and meta_b["parameters"]["clinical_signal"] == 0.0
    manifest = pd.read_csv(b / "manifest.csv", dtype=str, keep_default_na=False)
    assert (manifest[COVARIATES] == synth.plan_cohort(**TINY, clinical_signal=0)[COVARIATES]).all().all()
    files_a, files_b = sorted(a.rglob("*.dcm")), sorted(b.rglob("*.dcm"))
    assert [f.relative_to(a) for f in files_a] == [f.relative_to(b) for f in files_b]
    da, db = pydicom.dcmread(files_a[0]), pydicom.dcmread(files_b[0])
    assert da.PixelData == db.PixelData and da.StudyInstanceUID != db.StudyInstanceUID
    assert synth.ensure_cohort(tmp_path / "b", show_progress=False, clinical_signal=0, **TINY) == b / "manifest.csv"


def test_load_cohort_puts_each_signal_in_its_own_folder(tmp_path: Path):
    kw = {"image_size": 32, "fov_mm": 96.0, "synth_patients": 6, "synth_seed": 1, "synth_slices": 8,
          "synth_size": 32, "workers": 1, "show_progress": False}
    default = load_cohort(None, tmp_path, **kw)
    weak = load_cohort(None, tmp_path, synth_clinical_signal=0.0, **kw)
    assert default.manifest_path.parent.name == "n6-seed1-k8-px32-sites2" and default.clinical_signal == 1.0
    assert weak.manifest_path.parent.name == "n6-seed1-k8-px32-sites2-clin0" and weak.clinical_signal == 0.0
    assert default.prepared.root != weak.prepared.root
    assert np.array_equal(default.manifest["patient_id"], weak.manifest["patient_id"])
