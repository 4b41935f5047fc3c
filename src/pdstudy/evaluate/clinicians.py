"""The clinician comparison in numbers: the readers' stated operating points and the rows of Table 3 that the
section summarises (the model at its validation-chosen threshold, the readers' average).

Pure functions; Table 3 itself is :func:`pdstudy.evaluate.table3`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pdstudy.evaluate.readers import DEFAULT_OPERATING_POINTS, OperatingPoint

__all__ = ["stated_operating_points", "table3_rows"]


def stated_operating_points(points: Sequence[OperatingPoint] = DEFAULT_OPERATING_POINTS) -> pd.DataFrame:
    """The operating points simulated readers are drawn to hit, as a table.

    Parameters
    ----------
    points : sequence of OperatingPoint, default DEFAULT_OPERATING_POINTS
        Operating points (:class:`pdstudy.evaluate.readers.OperatingPoint`); default the paper's three
        clinicians, C20's specificity corrected to 11/14.

    Returns
    -------
    pandas.DataFrame
        One row per point: ``reader``, ``years_experience``, ``stated SEN %`` and ``stated SPE %``
        (rounded to two decimals).
    """
    points = list(points)
    if not all(isinstance(op, OperatingPoint) for op in points):
        raise TypeError("points must be OperatingPoint objects (pdstudy.evaluate.readers.OperatingPoint)")
    return pd.DataFrame([{"reader": op.name, "years_experience": op.years_experience,
                          "stated SEN %": round(100 * op.sensitivity, 2),
                          "stated SPE %": round(100 * op.specificity, 2)} for op in points])


def table3_rows(table3: pd.DataFrame, policy: str = "youden_val") -> tuple[pd.Series, pd.Series]:
    """The model's row under one threshold policy and the readers' average row of Table 3.

    Parameters
    ----------
    table3 : pandas.DataFrame
        Output of :func:`pdstudy.evaluate.table3`.
    policy : str, default "youden_val"
        The model row's threshold policy.

    Returns
    -------
    model : pandas.Series
        The model row (its ``acc``, ``sen``, ``spe`` are NaN when the policy has no threshold).
    average : pandas.Series
        The ``Average (readers)`` row.

    Raises
    ------
    ValueError
        When the table lacks ``kind``/``policy`` columns or either row.
    """
    if not isinstance(table3, pd.DataFrame) or not {"kind", "policy"} <= set(table3.columns):
        raise ValueError("table3 must be the output of pdstudy.evaluate.table3 (columns 'kind' and 'policy')")
    model = table3[(table3["kind"] == "model") & (table3["policy"] == policy)]
    average = table3[table3["kind"] == "average"]
    if model.empty or average.empty:
        raise ValueError(f"table3 has no model row under policy {policy!r} or no 'average' row")
    return model.iloc[0], average.iloc[0]
