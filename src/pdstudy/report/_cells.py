"""Text of one table cell: a number with its interval, a percentage, a p-value (shared by every display table)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def number(v: Any) -> float:
    """``v`` as a float; NaN when it is missing or not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def interval_text(r: Mapping[str, Any], key: str, *, digits: int = 2, signed: bool = False) -> str:
    """``r[key]`` with ``[r[key_lo], r[key_hi]]`` (e.g. ``0.71 [0.52, 0.86]``); ``n/a`` without a value."""
    v, lo, hi = number(r.get(key)), number(r.get(f"{key}_lo")), number(r.get(f"{key}_hi"))
    if math.isnan(v):
        return "n/a"
    fmt = f"{'+' if signed else ''}.{digits}f"
    return f"{v:{fmt}}" + ("" if math.isnan(lo) else f" [{lo:{fmt}}, {hi:{fmt}}]")


def percent_text(r: Mapping[str, Any], key: str) -> str:
    """A rate in [0, 1] as a percentage with its interval (e.g. ``64.3 [45.8, 79.3]``); ``n/a`` without a value."""
    v, lo, hi = number(r.get(key)), number(r.get(f"{key}_lo")), number(r.get(f"{key}_hi"))
    if math.isnan(v):
        return "n/a"
    return f"{100 * v:.1f}" + ("" if math.isnan(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]")


def p_text(v: Any, *, missing: str = "n/a") -> str:
    """A p-value to three decimals, ``< 0.001`` below; ``missing`` without a value."""
    v = number(v)
    if math.isnan(v):
        return missing
    return "< 0.001" if v < 0.001 else f"{v:.3f}"
