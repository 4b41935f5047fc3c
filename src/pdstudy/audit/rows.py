"""Rows of the audit table and the verdict vocabulary."""

from __future__ import annotations

from typing import Final

COLUMNS: Final = ("item", "check", "reported", "expected", "verdict", "explanation")

#: Verdicts. Arithmetic checks: consistent / inconsistent / ambiguous. Claims checked
#: against the numbers behind them: supported / unsupported. Context worth knowing
#: that is neither right nor wrong: note.
VERDICTS: Final = ("consistent", "inconsistent", "ambiguous", "supported", "unsupported", "note")

#: Order in which findings are listed: problems first.
VERDICT_ORDER: Final = {"inconsistent": 0, "unsupported": 1, "ambiguous": 2, "note": 3, "supported": 4, "consistent": 5}


def row(item: str, check: str, reported: str, expected: str, verdict: str, explanation: str) -> dict[str, str]:
    """One audit row; raises on an unknown verdict."""
    if verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
    return {
        "item": item,
        "check": check,
        "reported": reported,
        "expected": expected,
        "verdict": verdict,
        "explanation": explanation,
    }


def pct(x: float, decimals: int = 2) -> str:
    """Format a percentage (already in percent)."""
    return f"{x:.{decimals}f}"


def pval(p: float) -> str:
    """Format a p-value compactly."""
    if p < 0.001:
        return f"{p:.1e}"
    return f"{p:.3f}"


def prange(lo: float, hi: float) -> str:
    """Format a p-value range; a single value when both ends agree at the printed precision."""
    a, b = pval(lo), pval(hi)
    return a if a == b else f"{a}-{b}"
