"""check_prediction_files: the check of written prediction files that notebooks 02-05 share; the n_slices column."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from pdstudy.core.methods import Method
from pdstudy.core.vocab import PREDICTION_SPLITS
from pdstudy.data.predictions import (
    PREDICTION_COLUMNS,
    check_prediction_file,
    check_prediction_files,
    prediction_path,
    read_predictions,
    validate_predictions,
    write_predictions,
)

PATIENTS = [("P1", "train", "good", "CR"), ("P2", "val", "poor", "PD"), ("P3", "test", "poor", "SD"),
            ("P4", "test", "good", "PR")]


def chain_predictions(method: Method, *, seed: int = 0, fold: int = -1, repeat: int = 0) -> pd.DataFrame:
    rows = [{"patient_id": pid, "split": split, "response": resp, "recist": recist, "score": 0.1 + 0.2 * i,
             "method": method.id, "stage": stage, "seed": seed, "fold": fold, "repeat": repeat, "n_slices": 6 + i}
            for stage in range(len(method.chain)) for i, (pid, split, resp, recist) in enumerate(PATIENTS)]
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def written_run(tmp_path, method: Method, **where) -> SimpleNamespace:
    """A chain result (method + predictions) whose file is written, like Study.run does."""
    where = {"seed": 0, **where}
    preds = chain_predictions(method, **where)
    write_predictions(tmp_path, method, preds, **where)
    return SimpleNamespace(method=method, predictions=preds)


KD = Method("kd", ("efficientnet_b7", "efficientnet_b3"))


def test_good_files_pass(tmp_path):
    runs = [written_run(tmp_path, KD), written_run(tmp_path, Method("baseline", ("efficientnet_b0",)), seed=3),
            written_run(tmp_path, KD, seed=1, fold=2, repeat=1)]
    paths = check_prediction_files(tmp_path, runs, n_patients=len(PATIENTS))
    assert paths == [prediction_path(tmp_path, r.method, seed=int(r.predictions["seed"][0]),
                                     fold=int(r.predictions["fold"][0]), repeat=int(r.predictions["repeat"][0]))
                     for r in runs]
    assert paths[2].name == "kd__efficientnet_b7_efficientnet_b3__seed1__fold2__rep1.csv"
    written = check_prediction_file(paths[0], KD, n_patients=len(PATIENTS))
    assert written["patient_id"].tolist()[:2] == ["P1", "P2"]


def corrupt(tmp_path, change) -> SimpleNamespace:
    run = written_run(tmp_path, KD)
    path = prediction_path(tmp_path, KD, seed=0)
    df = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False)
    change(df).to_csv(path, index=False)
    return run


@pytest.mark.parametrize(("change", "message"), [
    (lambda df: df.drop(columns="recist"), r"columns are \[.*expected"),
    (lambda df: df[list(reversed(PREDICTION_COLUMNS))], r"columns are \[.*expected"),
    (lambda df: df.assign(score=df["score"].where(df.index != 5, 1.5)),
     r"score must lie in \[0, 1\]; patient 'P2' has 1.5"),
    (lambda df: df.assign(score=df["score"].astype(object).where(df.index != 0, "x")), r"score must lie in \[0, 1\]"),
    (lambda df: df.assign(method="kd:efficientnet_b7>efficientnet_b7"), r"column 'method' holds"),
    (lambda df: df[df["stage"] == 0], r"stages are \[0\], expected 0\.\.1"),
    (lambda df: df.assign(stage=df["stage"] + 1), r"stages are \[1, 2\]"),
    (lambda df: df.drop(index=6), r"stage 1 has 3 rows; every stage scores every included patient once \(4\)"),
    (lambda df: df.assign(patient_id=df["patient_id"].where(df.index != 1, "P1")), r"patient 'P1' is scored twice"),
    (lambda df: df.assign(split=df["split"].replace("val", "validation")), r"column 'split' holds \['validation'\]"),
    (lambda df: df.assign(response=df["response"].replace("poor", "PD")), r"column 'response' holds \['PD'\]"),
    (lambda df: df.drop(columns="n_slices"), r"columns are \[.*expected"),
    (lambda df: df.assign(n_slices=df["n_slices"].where(df.index != 2, 0)),
     r"'n_slices' must be an integer >= 1 .*patient 'P3' has 0"),
    (lambda df: df.assign(n_slices=df["n_slices"].astype(object).where(df.index != 1, "")),
     r"'n_slices' must be an integer >= 1 .*patient 'P2' has ''"),
], ids=["missing-column", "column-order", "score-range", "score-text", "method", "missing-stage", "stage-offset",
        "missing-patient", "duplicate-patient", "split-vocab", "response-vocab", "no-n_slices", "n_slices-zero",
        "n_slices-empty"])
def test_bad_files_are_named(tmp_path, change, message):
    run = corrupt(tmp_path, change)
    with pytest.raises(ValueError, match=message) as err:
        check_prediction_files(tmp_path, [run], n_patients=len(PATIENTS))
    assert "kd__efficientnet_b7_efficientnet_b3__seed0.csv" in str(err.value)


def test_missing_file_and_no_results(tmp_path):
    run = SimpleNamespace(method=KD, predictions=chain_predictions(KD, seed=4))
    with pytest.raises(ValueError, match=r"kd__efficientnet_b7_efficientnet_b3__seed4\.csv: missing"):
        check_prediction_files(tmp_path, [run], n_patients=len(PATIENTS))
    with pytest.raises(ValueError, match="no chain results"):
        check_prediction_files(tmp_path, [], n_patients=len(PATIENTS))


def test_patient_count_must_match(tmp_path):
    run = written_run(tmp_path, KD)
    with pytest.raises(ValueError, match=r"stage 0 has 4 rows; .* \(5\)"):
        check_prediction_files(tmp_path, [run], n_patients=5)


def test_n_slices_is_the_last_column_and_older_files_still_read(tmp_path):
    assert PREDICTION_COLUMNS[-1] == "n_slices"
    new = written_run(tmp_path, KD)
    base = Method("baseline", ("efficientnet_b0",))
    old = chain_predictions(base, seed=1).drop(columns="n_slices")  # a file written before the column existed
    old.to_csv(prediction_path(tmp_path, base, seed=1), index=False)
    read = read_predictions(tmp_path)
    assert list(read.columns) == list(PREDICTION_COLUMNS) and str(read["n_slices"].dtype) == "Int64"
    by_method = read.groupby("method")["n_slices"]
    assert by_method.apply(lambda s: s.isna().all())[base.id]
    assert read.loc[read["method"] == KD.id, "n_slices"].tolist() == new.predictions["n_slices"].tolist()
    clean = validate_predictions(read)
    assert clean["n_slices"].isna().sum() == len(old) and clean["n_slices"].dropna().ge(6).all()
    only_old = validate_predictions(old)  # a frame without the column at all
    assert only_old["n_slices"].isna().all() and len(only_old) == len(old)


def test_bad_n_slices_is_named_by_readers(tmp_path):
    written_run(tmp_path, KD)
    path = prediction_path(tmp_path, KD, seed=0)
    df = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False)
    df.assign(n_slices=df["n_slices"].astype(object).where(df.index != 3, "x")).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"column 'n_slices' must be an integer >= 1 .*patient 'P4' has 'x'"):
        read_predictions(tmp_path)
    with pytest.raises(ValueError, match=r"preds: column 'n_slices' .*patient 'P2' has 2.5"):
        validate_predictions(chain_predictions(KD).assign(n_slices=[6, 2.5] + [6] * 6), name="preds")


def test_external_split_is_a_prediction_split_in_its_own_folder(tmp_path):
    """The external protocol's files (predictions/external/) carry split 'external'; the vocabulary stays closed."""
    assert PREDICTION_SPLITS == ("train", "val", "test", "external")
    folder = tmp_path / "external"
    run = written_run(folder, KD, fold=1)
    run.predictions.loc[run.predictions["patient_id"] == "P4", "split"] = "external"
    write_predictions(folder, KD, run.predictions, seed=0, fold=1)
    path, = check_prediction_files(folder, [run], n_patients=len(PATIENTS))
    assert path.parent == folder
    read = read_predictions(folder)
    assert read.loc[read["patient_id"] == "P4", "split"].eq("external").all()
    clean = validate_predictions(read)
    assert sorted(clean["split"].unique()) == ["external", "test", "train", "val"]
    assert read_predictions(tmp_path).empty  # the run's own folder does not read the external files
    for bad in ("holdout", "External"):
        with pytest.raises(ValueError, match=r"column 'split' must be one of \('train', 'val', 'test', 'external'\)"):
            validate_predictions(read.assign(split=read["split"].replace("external", bad)))
        frame = run.predictions.assign(split=run.predictions["split"].replace("external", bad))
        write_predictions(folder, KD, frame, seed=0, fold=1)
        with pytest.raises(ValueError, match=rf"column 'split' holds \['{bad}'\], allowed are \['train', 'val', "
                                             r"'test', 'external'\]"):
            check_prediction_files(folder, [run], n_patients=len(PATIENTS))
