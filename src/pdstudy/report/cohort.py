"""The cohort as notebook 01 reports it: Table 1 with its notes, example slices, the preprocessing record.

Counts and tests come from :mod:`pdstudy.data.cohort`; this module words and draws them (no torch).
"""

from __future__ import annotations

from typing import Any, Final

import pandas as pd
from matplotlib.figure import Figure

from pdstudy.core.rundir import RunDir
from pdstudy.core.vocab import PAPER_LABEL_FOOTNOTE
from pdstudy.data.cohort import Cohort, example_slices, table1
from pdstudy.report.figures import plot_example_slices
from pdstudy.report.tables import write_table

#: Note under Table 1 on the tests it reports.
TABLE1_TEST_NOTE: Final = ("p: Fisher's exact test (2 levels) or Fisher-Freeman-Halton exact test (3 levels) between "
                           "response groups within the split; age: Mann-Whitney U.")

#: Note under Table 1 of the synthetic cohort at its default ``clinical_signal`` of 1.
TABLE1_SYNTHETIC_NOTE: Final = (
    "Synthetic cohort: the covariates are drawn per split and response group from the paper's Table 1 margins "
    "(clinical_signal = 1), so they reproduce its counts and its differences between response groups (e.g. Lauren "
    "type): they carry some signal about the response, as in the paper; the images do not depend on them."
)


def table1_synthetic_note(clinical_signal: float = 1.0) -> str:
    """The note under the synthetic cohort's Table 1 for its ``clinical_signal``.

    Parameters
    ----------
    clinical_signal : float, default 1
        The synthetic cohort's parameter (:func:`pdstudy.data.synth.generate_cohort`).

    Returns
    -------
    str
        :data:`TABLE1_SYNTHETIC_NOTE` at 1; otherwise a note that the counts are not the paper's and how much of
        the covariates' dependence on the response is kept.
    """
    if float(clinical_signal) == 1.0:
        return TABLE1_SYNTHETIC_NOTE
    if float(clinical_signal) == 0.0:
        kept = ("every value is drawn from margins pooled over both response groups, so the covariates carry no "
                "signal about the response")
    else:
        kept = (f"each value is kept with probability {float(clinical_signal):g}, else redrawn from margins pooled "
                "over both response groups, which weakens their association with the response")
    return (f"Synthetic cohort, clinical_signal = {float(clinical_signal):g}: the covariates start from the paper's "
            f"Table 1 margins per split and response group, but {kept}; the counts are not the paper's.")


def table1_notes(cohort: Cohort) -> list[str]:
    """Notes under Table 1: the label footnote, the tests, and where the cohort comes from.

    Parameters
    ----------
    cohort : pdstudy.data.cohort.Cohort
        The run's cohort.

    Returns
    -------
    list of str
        Three notes; the last names the manifest file, or says the cohort is synthetic.
    """
    signal = getattr(cohort, "clinical_signal", 1.0)
    origin = table1_synthetic_note(signal) if cohort.synthetic else f"Manifest: {cohort.manifest_path.name}"
    return [PAPER_LABEL_FOOTNOTE, TABLE1_TEST_NOTE, origin]


def write_table1(cohort: Cohort, run: RunDir) -> pd.DataFrame:
    """Regenerate Table 1 from the cohort's included patients and write ``tables/table1.csv`` and ``.md``.

    Parameters
    ----------
    cohort : pdstudy.data.cohort.Cohort
        The run's cohort.
    run : pdstudy.core.rundir.RunDir
        Run directory.

    Returns
    -------
    pandas.DataFrame
        Table 1 (:func:`pdstudy.data.cohort.table1`).
    """
    t1 = table1(cohort.patients())
    write_table(t1, run, "table1", title=f"Table 1. Baseline characteristics, {cohort.name}",
                notes=table1_notes(cohort))
    return t1


def plot_cohort_examples(cohort: Cohort, *, per_group: int = 4, seed: int = 0) -> Figure:
    """Windowed example slices of randomly drawn patients per response group, with a 5 cm scale bar.

    Parameters
    ----------
    cohort : pdstudy.data.cohort.Cohort
        The run's cohort (its slice cache gives pixel size and HU window).
    per_group : int
        Patients drawn per response group.
    seed : int
        Seed of the draw (:func:`pdstudy.data.cohort.example_slices`).

    Returns
    -------
    matplotlib.figure.Figure
        The figure of :func:`pdstudy.report.figures.plot_example_slices`.
    """
    meta = cohort.prepared.meta
    examples = example_slices(cohort, per_group=per_group, seed=seed)
    return plot_example_slices(examples, pixel_mm=meta["pixel_mm"], window=tuple(meta["config"]["hu_window"]))


def preprocessing_record(cohort: Cohort, *, seed: int) -> dict[str, Any]:
    """Provenance record of notebook 01 (for :func:`pdstudy.core.rundir.update_provenance`).

    Parameters
    ----------
    cohort : pdstudy.data.cohort.Cohort
        The run's cohort.
    seed : int
        The notebook's seed (draw of example slices).

    Returns
    -------
    dict
        Cohort name, manifest hash, slice-cache folder, preprocessing settings, pixel size, seed and
        exclusions by reason.
    """
    prepared = cohort.prepared
    return {
        "cohort": cohort.name, "manifest_sha256": prepared.meta["manifest_sha256"], "cache": prepared.root.name,
        "preprocessing": prepared.meta["config"], "pixel_mm": prepared.meta["pixel_mm"], "seed": seed,
        "exclusions": prepared.meta["exclusions"],
    }
