"""Patient-level splits: CV folds and the validation carve keep same-person groups together, and without such
groups they are exactly the draws of the implementation before ``groups`` existed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pdstudy.core.hashing import derive_seed
from pdstudy.data.splits import (
    LeakageError,
    carve_validation,
    check_no_leakage,
    external_splits,
    same_patient_keys,
    same_person_groups,
    stratified_folds,
)

# Pairs within one split are reported (DuplicatePatientWarning) by design; these tests build such pairs on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::pdstudy.data.splits.DuplicatePatientWarning")

# ---------------------------------------------------------------- the implementation before `groups` (reference)


def _old_stratified_folds(patients: pd.DataFrame, k: int, *, seed: int, repeat: int = 0) -> list[pd.DataFrame]:
    rng = np.random.default_rng(derive_seed(seed, "folds", repeat))
    fold_of: dict[str, int] = {}
    for _, grp in patients.groupby("response"):
        ids = rng.permutation(np.sort(grp["patient_id"].to_numpy()))
        for i, pid in enumerate(ids):
            fold_of[str(pid)] = i % k
    folds = []
    for f in range(k):
        df = patients.copy()
        df["split"] = np.where(df["patient_id"].map(fold_of) == f, "test", "train")
        folds.append(df)
    return folds


def _old_carve_validation(patients: pd.DataFrame, fraction: float, *, seed: int) -> pd.DataFrame:
    out = patients.copy()
    if fraction == 0:
        return out
    rng = np.random.default_rng(derive_seed(seed, "carve-val"))
    for _, grp in out[out["split"] == "train"].groupby("response"):
        n_val = max(1, int(round(fraction * len(grp))))
        ids = np.sort(grp["patient_id"].to_numpy())
        chosen = set(rng.choice(ids, size=n_val, replace=False))
        out.loc[out["patient_id"].isin(chosen), "split"] = "val"
    return out


def _cohort(n: int = 40, *, poor_every: int = 3, test_from: int | None = None) -> pd.DataFrame:
    test = [test_from is not None and i >= test_from for i in range(n)]
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)],
                         "split": ["test" if t else "train" for t in test],
                         "response": ["poor" if i % poor_every == 0 else "good" for i in range(n)]})


def _fold_of(folds: list[pd.DataFrame]) -> dict[str, int]:
    return {pid: f for f, df in enumerate(folds) for pid in df.loc[df["split"] == "test", "patient_id"]}


# ---------------------------------------------------------------- no shared keys: unchanged draws


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("repeat", [0, 2])
def test_folds_without_shared_keys_equal_the_old_folds(seed, k, repeat):
    patients = _cohort(41)
    old = _old_stratified_folds(patients, k, seed=seed, repeat=repeat)
    # No groups, an empty map, and a map whose keys are all different: the same draw as before.
    singleton_groups = {pid: f"key-{pid}" for pid in patients["patient_id"]}
    for groups in (None, {}, singleton_groups):
        new = stratified_folds(patients, k, seed=seed, repeat=repeat, groups=groups)
        assert len(new) == k
        for a, b in zip(old, new):
            pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("seed", [0, 3, 1000])
@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.35])
def test_carve_without_shared_keys_equals_the_old_carve(seed, fraction):
    patients = _cohort(50, test_from=40)
    old = _old_carve_validation(patients, fraction, seed=seed)
    for groups in (None, {}, {"P000": "a", "P041": "a"}):  # a pair with a test patient: one training patient only
        pd.testing.assert_frame_equal(carve_validation(patients, fraction, seed=seed, groups=groups), old)


# ---------------------------------------------------------------- same-person groups


def _pair_qc(patients: pd.DataFrame, pairs: list[tuple[str, str]], column: str = "study_key") -> pd.DataFrame:
    qc = pd.DataFrame({"patient_id": patients["patient_id"], "study_key": [f"s{i}" for i in range(len(patients))],
                       "pixel_key": [f"x{i}" for i in range(len(patients))]})
    for a, b in pairs:
        qc.loc[qc["patient_id"] == b, column] = qc.loc[qc["patient_id"] == a, column].iloc[0]
    return qc


def test_same_person_groups_from_either_key_and_chains():
    patients = _cohort(8)
    qc = _pair_qc(patients, [("P001", "P002")], "study_key")
    qc.loc[qc["patient_id"] == "P003", "pixel_key"] = qc.loc[qc["patient_id"] == "P002", "pixel_key"].iloc[0]
    qc.loc[qc["patient_id"] == "P005", ["study_key", "pixel_key"]] = ""  # empty keys never match
    qc.loc[qc["patient_id"] == "P006", ["study_key", "pixel_key"]] = ""
    groups = same_person_groups(same_patient_keys(qc))
    # P001-P002 share a study, P002-P003 share pixels: one person under three IDs.
    assert groups == {"P001": "P001", "P002": "P001", "P003": "P001"}
    assert same_person_groups({"A": "k", "B": "k", "C": "j"}) == {"A": "A", "B": "A"}  # a single flat map
    assert same_person_groups(None) == {} and same_person_groups({}) == {}
    with pytest.raises(TypeError, match="same_patient must be a mapping"):
        same_person_groups(["A", "B"])  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
def test_ids_sharing_a_study_key_never_span_folds(seed):
    patients = _cohort(40)
    pairs = [("P001", "P002"), ("P000", "P003"), ("P010", "P011"), ("P020", "P021")]  # P000/P003: poor + poor
    qc = _pair_qc(patients, pairs)
    groups = same_person_groups(same_patient_keys(qc))
    folds = stratified_folds(patients, 5, seed=seed, groups=groups)
    fold_of = _fold_of(folds)
    assert sorted(fold_of) == sorted(patients["patient_id"]), "every patient is test in exactly one fold"
    assert all(sum(df["split"] == "test") > 0 for df in folds)
    for a, b in pairs:
        assert fold_of[a] == fold_of[b], (a, b)
    for df in folds:  # the leakage guard agrees
        check_no_leakage(df, same_patient=same_patient_keys(qc))
    # Stratification as far as the groups allow: per fold, each response within one group size of k-equal shares.
    counts = patients["response"].value_counts()
    for response, n in counts.items():
        per_fold = [int(((df["split"] == "test") & (df["response"] == response)).sum()) for df in folds]
        assert max(per_fold) - min(per_fold) <= 2, (response, per_fold)
        assert sum(per_fold) == n


def test_ungrouped_folds_do_split_the_pairs_the_groups_keep_together():
    """The test above is not vacuous: without groups some seed separates a pair (leakage across folds)."""
    patients = _cohort(40)
    pairs = [("P001", "P002"), ("P000", "P003"), ("P010", "P011"), ("P020", "P021")]
    qc = _pair_qc(patients, pairs)
    split = 0
    for seed in range(6):
        folds = stratified_folds(patients, 5, seed=seed)
        fold_of = _fold_of(folds)
        split += sum(fold_of[a] != fold_of[b] for a, b in pairs)
        if any(fold_of[a] != fold_of[b] for a, b in pairs):
            with pytest.raises(LeakageError):
                for df in folds:
                    check_no_leakage(df, same_patient=same_patient_keys(qc))
    assert split > 0


def test_mixed_response_group_stays_in_one_fold_and_too_few_groups_fail():
    patients = _cohort(12, poor_every=2)
    groups = {"P000": "g", "P001": "g"}  # poor + good: the same person recorded twice with different labels
    for seed in range(5):
        fold_of = _fold_of(stratified_folds(patients, 3, seed=seed, groups=groups))
        assert fold_of["P000"] == fold_of["P001"]
    # Six poor patients in two groups of three: only two independent poor patients for three folds.
    poor = patients.loc[patients["response"] == "poor", "patient_id"].tolist()
    big = {p: ("a" if i < 3 else "b") for i, p in enumerate(poor)}
    with pytest.raises(ValueError, match=r"folds=3 exceeds the independent patients .* 'poor'"):
        stratified_folds(patients, 3, seed=0, groups=big)


@pytest.mark.parametrize("seed", range(8))
def test_carve_moves_a_same_person_group_together(seed):
    patients = _cohort(50, test_from=40)
    pairs = [("P001", "P002"), ("P004", "P005"), ("P007", "P008"), ("P010", "P011")]
    groups = same_person_groups(same_patient_keys(_pair_qc(patients, pairs)))
    carved = carve_validation(patients, 0.2, seed=seed, groups=groups)
    split_of = dict(zip(carved["patient_id"], carved["split"]))
    for a, b in pairs:
        assert split_of[a] == split_of[b], (a, b, split_of[a], split_of[b])
    assert set(carved.loc[patients["split"] == "test", "split"]) == {"test"}, "test patients never move"
    for response, grp in patients[patients["split"] == "train"].groupby("response"):
        n_val = int((carved.loc[grp.index, "split"] == "val").sum())
        target = max(1, round(0.2 * len(grp)))
        assert 1 <= n_val <= target + 1 and n_val < len(grp), (response, n_val, target)


def test_carve_with_groups_still_refuses_to_empty_a_response_group():
    patients = pd.DataFrame({"patient_id": ["A", "B", "C", "D"], "split": "train",
                             "response": ["poor", "poor", "good", "good"]})
    with pytest.raises(ValueError, match="no training patients with response 'poor'"):
        carve_validation(patients, 0.5, seed=0, groups={"A": "x", "B": "x"})


# ---------------------------------------------------------------- external validation: sites held out


def _site_cohort(sizes: dict[str, int], *, test_share: float = 0.3) -> pd.DataFrame:
    """Included patients per site: every third poor, the last ``test_share`` of each site in the manifest's test."""
    rows = []
    for site, n in sizes.items():
        n_test = int(round(test_share * n))
        for i in range(n):
            poor = i % 3 == 0
            rows.append({"patient_id": f"{site}{i:03d}", "split": "test" if i >= n - n_test else "train",
                         "response": "poor" if poor else "good", "recist": "SD" if poor else "PR", "site": site})
    return pd.DataFrame(rows)


def _check_external(df: pd.DataFrame, manifest: pd.DataFrame, held: tuple[str, ...], fraction: float) -> None:
    """What every external split must be, computed from the manifest independently of the implementation."""
    m = manifest.set_index("patient_id")
    d = df.set_index("patient_id")
    assert list(d.index) == list(m.index)  # same patients, same order, nothing else changed
    assert d.drop(columns="split").equals(m.drop(columns="split"))
    at_held = m["site"].isin(held)
    assert (d.loc[at_held, "split"] == "external").all()  # whatever their manifest split
    assert not d.loc[at_held, "split"].isin(["train", "val"]).any()
    training = m[~at_held]
    assert (d.loc[training.index, "split"] != "external").all()
    internal = training.index[training["split"] == "test"]
    assert (d.loc[internal, "split"] == "test").all()  # the internal test set is kept, never trained on
    trained = training[training["split"] == "train"]
    assert d.loc[trained.index, "split"].isin(["train", "val"]).all()
    for response, grp in trained.groupby("response"):  # the carve is stratified by response
        n_val = int((d.loc[grp.index, "split"] == "val").sum())
        assert n_val == max(1, int(round(fraction * len(grp)))), (response, n_val, len(grp))


def test_two_sites_leave_one_site_out():
    manifest = _site_cohort({"B": 30, "A": 40})
    out = external_splits(manifest, val_fraction=0.2, seed=0)
    assert [held for _, held in out] == [("A",), ("B",)]  # one fold per site, sorted
    for df, held in out:
        _check_external(df, manifest, held, 0.2)
    assert external_splits(manifest, [], val_fraction=0.2, seed=0)[1][0].equals(out[1][0])  # empty = LOSO


def test_three_sites_leave_one_site_out_and_given_test_sites():
    manifest = _site_cohort({"A": 40, "B": 30, "C": 24})
    loso = external_splits(manifest, None, val_fraction=0.25, seed=3)
    assert [held for _, held in loso] == [("A",), ("B",), ("C",)]
    for df, held in loso:
        _check_external(df, manifest, held, 0.25)
    (df, held), = external_splits(manifest, ["C", "B", "C"], val_fraction=0.2, seed=3)
    assert held == ("B", "C")
    _check_external(df, manifest, held, 0.2)
    (one, held), = external_splits(manifest, "C", val_fraction=0.2, seed=3)  # a single code as a string
    assert held == ("C",)
    _check_external(one, manifest, held, 0.2)


def test_external_carve_is_drawn_from_the_seed_and_zero_keeps_the_manifest_split():
    manifest = _site_cohort({"A": 40, "B": 30, "C": 24})
    a = external_splits(manifest, ["C"], val_fraction=0.2, seed=1)[0][0]
    assert a.equals(external_splits(manifest, ["C"], val_fraction=0.2, seed=1)[0][0])
    draws = {tuple(external_splits(manifest, ["C"], val_fraction=0.2, seed=s)[0][0]["split"]) for s in range(5)}
    assert len(draws) > 1
    zero = external_splits(manifest, ["C"], val_fraction=0.0, seed=1)[0][0]
    expected = manifest["split"].where(manifest["site"] != "C", "external")
    assert zero["split"].tolist() == expected.tolist()


@pytest.mark.parametrize(("patients", "test_sites", "message"), [
    (_site_cohort({"A": 20, "B": 20}).drop(columns="site"), None, r"lacks column\(s\) \['site'\]"),
    (_site_cohort({"A": 20}), None, r"at least 2 sites, the cohort has 1 \('A'\)"),
    (_site_cohort({"A": 20, "B": 20}).assign(site=""), None, "single-site cohort"),
    (_site_cohort({"A": 20, "B": 20}).assign(site=lambda d: d["site"].where(d.index != 3, "")), None,
     r"patient\(s\) \['A003'\] have no site code"),
    (_site_cohort({"A": 20, "B": 20}), ["B", "Z"], r"test_sites names unknown site\(s\) \['Z'\]"),
    (_site_cohort({"A": 20, "B": 20}), ["A", "B"], "holds out every site"),
    (_site_cohort({"A": 20, "B": 20}).assign(split=lambda d: d["split"].where(d["site"] == "B", "test")), ["B"],
     "leaves no training patient"),
])
def test_external_split_errors_name_what_is_wrong(patients, test_sites, message):
    with pytest.raises(ValueError, match=message):
        external_splits(patients, test_sites, val_fraction=0.2, seed=0)


def test_same_person_at_two_sites_is_leakage_when_one_is_held_out():
    manifest = _site_cohort({"A": 30, "B": 30, "C": 30})
    groups = same_person_groups({"A001": "k1", "B001": "k1"})
    with pytest.raises(LeakageError, match=r"A001 \(site A\), B001 \(site B\).*held-out site\(s\) \['A'\]"):
        external_splits(manifest, None, val_fraction=0.2, seed=0, groups=groups)
    with pytest.raises(LeakageError, match="held-out site"):
        external_splits(manifest, ["B"], val_fraction=0.2, seed=0, groups=groups)
    # Both training sites, or both held out: no leakage, and the pair stays on one side of the carve.
    for test_sites in (["C"], ["A", "B"]):
        for seed in range(6):
            (df, _), = external_splits(manifest, test_sites, val_fraction=0.3, seed=seed, groups=groups)
            splits = set(df.loc[df["patient_id"].isin(["A001", "B001"]), "split"])
            assert len(splits) == 1, (test_sites, seed, splits)


def test_a_held_out_patient_that_the_carve_trained_on_is_caught(monkeypatch):
    import pdstudy.data.splits as splits_module

    def leaky(patients, fraction, *, seed, groups=None):
        out = patients.copy()
        out.loc[out.index[out["split"] == "external"][:1], "split"] = "val"
        return out

    monkeypatch.setattr(splits_module, "carve_validation", leaky)
    with pytest.raises(AssertionError, match="held-out patient"):
        external_splits(_site_cohort({"A": 20, "B": 20}), ["B"], val_fraction=0.2, seed=0)
