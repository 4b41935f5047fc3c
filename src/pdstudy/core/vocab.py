"""The study's fixed vocabulary: response and RECIST codes, splits, the positive class.

Every module, table and prediction file uses these names. The paper abbreviates
good response as ``GR`` and poor response as ``PR``; because ``PR`` is also
RECIST's *partial response*, code never uses ``PR`` for poor response. Tables may
display GR/PR (with a footnote) through :func:`paper_label`.
"""

from __future__ import annotations

import re
from typing import Any, Final

RESPONSES: Final = ("good", "poor")
RECIST_CODES: Final = ("CR", "PR", "SD", "PD")
SPLITS: Final = ("train", "val", "test")

#: Manifest column of the (pseudonymous) site code of a multi-centre cohort; optional.
SITE_COLUMN: Final = "site"
#: A pseudonymous site code (manifest column ``site``, notebook parameter ``test_sites``): 1-32 letters,
#: digits, ``-`` or ``_``.
SITE_CODE_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
#: Split of a prediction file's patients at a held-out site (external validation, notebook 09); never a manifest split.
EXTERNAL_SPLIT: Final = "external"
#: Splits a prediction file may carry.
PREDICTION_SPLITS: Final = (*SPLITS, EXTERNAL_SPLIT)

#: Class 1 of every model and metric: poor response (the paper's sensitivity 97.44% = 38/39
#: is only reachable with 39 training poor responders as positives).
POSITIVE_CLASS: Final = "poor"
NEGATIVE_CLASS: Final = "good"

RECIST_TO_RESPONSE: Final = {"CR": "good", "PR": "good", "SD": "poor", "PD": "poor"}

RECIST_NAMES: Final = {
    "CR": "complete response",
    "PR": "partial response",
    "SD": "stable disease",
    "PD": "progressive disease",
}

#: How the paper prints the response groups (display only).
PAPER_RESPONSE_LABELS: Final = {"good": "GR", "poor": "PR"}
PAPER_LABEL_FOOTNOTE: Final = (
    "GR = good response (RECIST CR or PR); PR = poor response (RECIST SD or PD), "
    "as printed in the paper. In code and data files these are 'good' and 'poor'."
)


def response_from_recist(recist: str) -> str:
    """Map a RECIST 1.1 category to the study's response group.

    Parameters
    ----------
    recist : str
        One of ``CR``, ``PR``, ``SD``, ``PD``.

    Returns
    -------
    str
        ``"good"`` for CR/PR, ``"poor"`` for SD/PD.
    """
    try:
        return RECIST_TO_RESPONSE[recist]
    except KeyError:
        raise ValueError(f"unknown RECIST category {recist!r}; expected one of {RECIST_CODES}") from None


def label_of(response: str) -> int:
    """Integer class of a response group: ``poor`` -> 1, ``good`` -> 0."""
    if response == POSITIVE_CLASS:
        return 1
    if response == NEGATIVE_CLASS:
        return 0
    raise ValueError(f"unknown response {response!r}; expected one of {RESPONSES}")


def paper_label(response: str) -> str:
    """Display label of a response group as the paper prints it (``GR``/``PR``)."""
    label_of(response)
    return PAPER_RESPONSE_LABELS[response]


def is_site_code(value: Any) -> bool:
    """Whether ``value`` is a pseudonymous site code (:data:`SITE_CODE_PATTERN`)."""
    return isinstance(value, str) and bool(SITE_CODE_PATTERN.match(value))
