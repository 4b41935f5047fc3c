"""What the evaluation sections (notebooks 06-10) share: their study and the run's predictions of their methods.

* :func:`fixed_split_study`: notebooks 06 and 07 are defined on the manifest's fixed train/test split,
  whatever the run's protocol; :func:`fixed_split_note` says so when the protocol is ``cv``.
* :func:`section_predictions`: read the run's prediction files once and keep this study's seeds, split
  into the section's methods on the fixed split (:attr:`SectionPredictions.fixed`), every row of the
  study's seeds (:attr:`SectionPredictions.study_rows`, e.g. for the cross-validation folds) and the
  methods of other settings found in the run directory (:attr:`SectionPredictions.ignored`), which are
  never used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.data.predictions import read_predictions
from pdstudy.evaluate.selection import select_predictions
from pdstudy.study.protocol import Study

__all__ = ["FIXED_SPLIT_NOTE", "SectionPredictions", "fixed_split_note", "fixed_split_study", "section_predictions"]

#: Markdown shown by notebooks 06 and 07 when the run's protocol is not the fixed split (``{protocol}``).
FIXED_SPLIT_NOTE: Final = (
    "**Protocol `{protocol}`:** this section is defined on the manifest's fixed train/test split, so it uses (and, "
    "if needed, trains) the fixed-split models; the cross-validation summary is in notebook 10."
)


def fixed_split_study(params: Mapping[str, Any]) -> Study:
    """The study of a notebook's parameters on the fixed split, whatever ``params["protocol"]`` says.

    Parameters
    ----------
    params : mapping
        The notebook's parameters (e.g. its ``globals()``), every name of
        :data:`pdstudy.core.params.STUDY_PARAMETERS`.

    Returns
    -------
    Study
        :meth:`Study.from_parameters` with ``protocol = "fixed"``.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of the notebook's parameters, got {type(params).__name__}")
    return Study.from_parameters({**params, "protocol": "fixed"})


def fixed_split_note(protocol: str) -> str | None:
    """:data:`FIXED_SPLIT_NOTE` for a protocol other than ``"fixed"``; None for the fixed split."""
    return None if protocol == "fixed" else FIXED_SPLIT_NOTE.format(protocol=protocol)


@dataclass(frozen=True)
class SectionPredictions:
    """The prediction rows a section reads from its run.

    Attributes
    ----------
    fixed : pandas.DataFrame
        The section's methods on the fixed split, the study's seeds; index ``0 .. n - 1``.
    study_rows : pandas.DataFrame
        Every row of the study's seeds (every method, fixed split and CV folds).
    ignored : tuple of str
        Methods in the run directory that are not the section's, sorted.
    """

    fixed: pd.DataFrame
    study_rows: pd.DataFrame
    ignored: tuple[str, ...]

    @property
    def seeds(self) -> list[int]:
        """The training seeds found in :attr:`fixed`."""
        return sorted(map(int, self.fixed["seed"].unique()))

    def describe(self, *, list_ignored: bool = False) -> str:
        """A line on the fixed-split rows (methods, seeds); with ``list_ignored``, a second naming the others."""
        text = (f"{len(self.fixed)} fixed-split prediction rows: {self.fixed['method'].nunique()} method(s), "
                f"seeds {self.seeds}")
        if list_ignored and self.ignored:
            text += "\nprediction files of other methods in this run directory, not used: " + ", ".join(self.ignored)
        return text


def section_predictions(study: Study, methods: Sequence[Method]) -> SectionPredictions:
    """Read the run's predictions and keep a section's methods and the study's seeds.

    Parameters
    ----------
    study : Study
        The section's study: its run directory (``predictions/``) and seeds.
    methods : sequence of Method
        The section's methods (run before, e.g. by :meth:`Study.run`).

    Returns
    -------
    SectionPredictions
        The fixed-split rows of ``methods`` (:func:`pdstudy.evaluate.selection.select_predictions`), all rows
        of the study's seeds, and the other methods present.

    Raises
    ------
    ValueError
        Without methods, or when none of them has fixed-split predictions of the study's seeds.
    """
    methods = list(methods)
    if not methods or not all(isinstance(m, Method) for m in methods):
        raise ValueError(f"methods must be a non-empty sequence of Method, got {methods!r}")
    wanted = [m.id for m in methods]
    study_rows = select_predictions(read_predictions(study.rundir.predictions), seeds=study.seeds, folds="all")
    fixed = select_predictions(study_rows, method_ids=wanted, folds="fixed")
    if fixed.empty:
        raise ValueError(f"no fixed-split predictions of {wanted} for seeds {list(study.seeds)} in "
                         f"{study.rundir.predictions.name}/ of the run; run the methods first (Study.run)")
    ignored = tuple(sorted(set(study_rows["method"]) - set(wanted)))
    return SectionPredictions(fixed=fixed, study_rows=study_rows, ignored=ignored)
