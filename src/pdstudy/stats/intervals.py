"""Confidence intervals for proportions."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.stats import norm

from pdstudy.stats._validation import check_level


def _as_count(x: object, name: str) -> int:
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real) or x != int(x):
        raise ValueError(f"{name} must be a non-negative integer count, got {x!r}")
    return int(x)


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion.

    With ``p = successes / n`` and ``z`` the two-sided normal quantile::

        centre = (p + z**2 / (2 n)) / (1 + z**2 / n)
        half   = z / (1 + z**2 / n) * sqrt(p (1 - p) / n + z**2 / (4 n**2))

    The interval ``(centre - half, centre + half)`` always lies in [0, 1]; it is exactly 0 (1) at its
    lower (upper) end when ``successes`` is 0 (``n``). It keeps close to nominal coverage for the small
    counts of this study (e.g. sensitivity out of 14 poor responders), where the Wald interval fails.

    Parameters
    ----------
    successes : int
        Number of successes, ``0 <= successes <= n``.
    n : int
        Number of trials, at least 1.
    level : float, default 0.95
        Two-sided confidence level in (0, 1).

    Returns
    -------
    lo, hi : float
        Interval bounds.

    Raises
    ------
    ValueError
        If the counts are not integers with ``0 <= successes <= n`` and ``n >= 1``, or the level is
        outside (0, 1).
    """
    k = _as_count(successes, "successes")
    n = _as_count(n, "n")
    level = check_level(level)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"successes must satisfy 0 <= successes <= n={n}, got {k}")
    z = norm.ppf(0.5 + level / 2)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return float(lo), float(hi)
