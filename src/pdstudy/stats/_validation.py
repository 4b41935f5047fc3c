"""Up-front input checks shared by :mod:`pdstudy.stats` (messages say what was expected)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

_LABEL_HINT = "1 = poor response, 0 = good response; see pdstudy.core.vocab.label_of"


def _as_1d(x: ArrayLike, name: str) -> NDArray[Any]:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; expected at least one value")
    return arr


def as_binary(x: ArrayLike, name: str = "y_true") -> NDArray[np.int64]:
    """Return ``x`` as a 1-D int64 array of 0/1 values, or raise ``ValueError``."""
    arr = _as_1d(x, name)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold numeric binary labels in {{0, 1}} ({_LABEL_HINT}); got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        found = np.unique(arr[bad])[:5].tolist()
        raise ValueError(
            f"{name} must hold binary labels in {{0, 1}} ({_LABEL_HINT}); "
            f"found {int(bad.sum())} other value(s), e.g. {found}"
        )
    return arr.astype(np.int64)


def as_scores(x: ArrayLike, name: str = "y_score", *, probability: bool = False) -> NDArray[np.float64]:
    """Return ``x`` as a finite 1-D float64 array (within [0, 1] if ``probability``), or raise ``ValueError``."""
    arr = _as_1d(x, name)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.all():
        raise ValueError(
            f"{name} must be finite; found {int((~finite).sum())} NaN/inf value(s) (first at index "
            f"{int(np.flatnonzero(~finite)[0])})"
        )
    if probability and ((arr < 0).any() or (arr > 1).any()):
        raise ValueError(f"{name} must hold probabilities in [0, 1]; got range [{arr.min():g}, {arr.max():g}]")
    return arr


def check_same_length(**arrays: NDArray[Any]) -> int:
    """Raise ``ValueError`` unless all named arrays have the same length; return that length."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length (one entry per patient); got {shown}")
    return next(iter(lengths.values()))


def require_both_classes(y: NDArray[np.int64], name: str = "y_true", purpose: str = "this statistic") -> None:
    """Raise ``ValueError`` unless ``y`` holds at least one 0 and one 1."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "positive (1 = poor)" if n_pos else "negative (0 = good)"
        raise ValueError(f"{purpose} needs both classes in {name}, but all {len(y)} label(s) are {only}")


def check_level(level: float) -> float:
    """Return ``level`` as a float in (0, 1), or raise ``ValueError``."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be a confidence level strictly between 0 and 1 (e.g. 0.95); got {level}")
    return level
