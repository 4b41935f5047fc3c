"""Notebook 06, the PD model against clinicians (Table 3, Fig. 3 with readers): reader calls, provenance, checks.

The model is fixed in advance (:data:`CLINICIAN_MODEL`, the paper's PD B7>B7>B7). Reader calls come from a
readers CSV or are simulated at the paper's operating points (:func:`reader_calls`); the numbers are
:func:`pdstudy.evaluate.table3`, the words and Fig. 3 :mod:`pdstudy.report.clinicians`.
:func:`check_clinician_outputs` lists what is wrong with the section's written outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.core.rundir import RunDir, update_provenance
from pdstudy.evaluate import patients_of_split
from pdstudy.evaluate.readers import DEFAULT_OPERATING_POINTS, read_readers, simulate_readers

__all__ = ["CLINICIAN_MODEL", "ReaderCalls", "check_clinician_outputs", "reader_calls", "record_clinicians"]

#: The model compared with the clinicians: the paper's Progressive Distill chain B7>B7>B7.
CLINICIAN_MODEL: Final = Method("pd", ("efficientnet_b7",) * 3)

#: Files the section writes, relative to the run directory.
_OUTPUTS: Final = ("tables/table3.csv", "tables/table3.md", "tables/table3_values.csv",
                   "tables/table3_reader_calls.csv", "figures/fig3_roc_readers.png", "figures/fig3_roc_readers.pdf")


@dataclass(frozen=True)
class ReaderCalls:
    """The readers' calls on the test patients and where they come from.

    Attributes
    ----------
    calls : pandas.DataFrame
        One call per reader and test patient (:data:`pdstudy.evaluate.readers.READER_COLUMNS`).
    source : str
        Where the calls come from: the readers CSV's file name, or the simulation and its seed.
    simulated : bool
        Whether any reader is simulated.
    patients : pandas.DataFrame
        The test patients called (``patient_id, response, recist``).
    """

    calls: pd.DataFrame
    source: str
    simulated: bool
    patients: pd.DataFrame

    @property
    def n_readers(self) -> int:
        """Number of readers."""
        return int(self.calls["reader_id"].nunique())

    def describe(self) -> str:
        """One line: source, readers, test patients (poor responders)."""
        poor = int((self.patients["response"] == "poor").sum())
        return (f"readers: {self.source}; {self.n_readers} reader(s), {len(self.patients)} test patients "
                f"({poor} poor)")


def reader_calls(preds: pd.DataFrame, *, readers_csv: str | Path = "", seed: int) -> ReaderCalls:
    """The readers' calls on the fixed-split test patients: from a readers CSV, or simulated.

    Parameters
    ----------
    preds : pandas.DataFrame
        Fixed-split prediction rows (they name the test patients).
    readers_csv : str or pathlib.Path, default ""
        Readers CSV (:func:`pdstudy.evaluate.read_readers`), relative to the working directory or absolute;
        empty: readers simulated at the paper's operating points (:func:`pdstudy.evaluate.simulate_readers`).
    seed : int
        Draw seed of the simulated readers.

    Returns
    -------
    ReaderCalls
        The calls, their source, whether they are simulated, and the test patients.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    test_patients = patients_of_split(preds, "test")
    if readers_csv:
        calls = read_readers(readers_csv)
        source = f"readers CSV {Path(readers_csv).name}"
    else:
        calls = simulate_readers(test_patients, seed=seed)
        source = f"SIMULATED at the paper's operating points (seed {seed})"
    return ReaderCalls(calls=calls, source=source, simulated=bool(calls["simulated"].any()), patients=test_patients)


def record_clinicians(run: RunDir, readers: ReaderCalls, *, seed: int, readers_csv: str | Path = "",
                      model: Method = CLINICIAN_MODEL, policy: str = "youden_val") -> Path:
    """Record the section in the run's ``provenance.json`` (section ``06_readers``).

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory.
    readers : ReaderCalls
        The calls compared with the model.
    seed : int
        Draw seed of simulated readers.
    readers_csv : str or pathlib.Path, default ""
        The notebook's ``readers_csv`` parameter.
    model : Method, default CLINICIAN_MODEL
        The model compared.
    policy : str, default "youden_val"
        Threshold policy of the McNemar tests.

    Returns
    -------
    pathlib.Path
        ``provenance.json``.
    """
    return update_provenance(run, "06_readers", {
        "model": model.id, "policy": policy, "readers_source": readers.source, "simulated": readers.simulated,
        "seed": seed, "readers": sorted(readers.calls["reader_id"].unique()), "n_test": len(readers.patients),
        "operating_points": [vars(op) for op in DEFAULT_OPERATING_POINTS] if readers.simulated else None,
        "parameters": {"readers_csv": readers_csv, "seed": seed},
    })


def check_clinician_outputs(run: RunDir, readers: ReaderCalls) -> list[str]:
    """What is wrong with the written Table 3, reader calls and Fig. 3 (empty: nothing).

    Checks that every output file exists and is not trivially small; that Table 3 has the readers, their
    average and the model under both policies, in that order, with rates in [0, 1] and every reader
    scored on every test patient; that the McNemar p-values are in [0, 1], Holm never lowers one, and
    the discordant patients are at most the test patients; and that simulated readers are labelled so
    and hit the paper's operating points exactly (real readers: no "SIMULATED" anywhere).

    Parameters
    ----------
    run : pdstudy.core.rundir.RunDir
        The run directory.
    readers : ReaderCalls
        The calls the section used.

    Returns
    -------
    list of str
        One line per problem.
    """
    problems = [f"{name} missing or under 300 bytes" for name in _OUTPUTS
                if not (run.root / name).is_file() or (run.root / name).stat().st_size <= 300]
    if not (run.tables / "table3_values.csv").is_file():
        return problems
    t3 = pd.read_csv(run.tables / "table3_values.csv")
    n_readers, n_test = readers.n_readers, len(readers.patients)
    if list(t3["kind"]) != ["reader"] * n_readers + ["average", "model", "model"]:
        problems.append(f"table3 rows are {list(t3['kind'])}: expected {n_readers} readers, their average, the "
                        "model under two policies")
    problems += [f"table3 column {col} outside [0, 1]" for col in ("acc", "sen", "spe", "acc_lo", "acc_hi")
                 if not t3[col].dropna().between(0, 1).all()]
    rows = t3[t3["kind"] == "reader"]
    if not (rows["n"] == n_test).all():
        problems.append(f"a reader is not scored on all {n_test} test patients")
    p, p_holm = rows["mcnemar_p"], rows["mcnemar_p_holm"]
    if not (p.dropna().between(0, 1).all() and p_holm.dropna().between(0, 1).all()):
        problems.append("McNemar p-values outside [0, 1]")
    if not (p_holm >= p - 1e-12).where(p.notna(), True).all():
        problems.append("a Holm-adjusted p-value is below its unadjusted p-value")
    if not ((rows["mcnemar_b"] + rows["mcnemar_c"]).dropna() <= n_test).all():
        problems.append("more discordant patients than test patients")
    md_text = (run.tables / "table3.md").read_text() if (run.tables / "table3.md").is_file() else ""
    if not readers.simulated:
        return problems + (["table3.md says SIMULATED for real readers"] if "SIMULATED" in md_text else [])
    if "SIMULATED" not in md_text or not rows["row"].str.contains("simulated").all():
        problems.append("simulated readers are not labelled SIMULATED in table3")
    poor = int((readers.patients["response"] == "poor").sum())
    good = n_test - poor
    for op, (_, r) in zip(DEFAULT_OPERATING_POINTS, rows.iterrows()):
        if not (math.isclose(r["sen"], round(op.sensitivity * poor) / poor)
                and math.isclose(r["spe"], round(op.specificity * good) / good)):
            problems.append(f"simulated reader {op.name} misses its operating point")
    return problems
