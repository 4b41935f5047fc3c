"""Arithmetic feasibility of printed metrics: which integer counts reproduce them.

A percentage printed with ``d`` decimals stands for every true value within half a
unit of its last printed digit. A printed accuracy / sensitivity / specificity triple
is therefore *feasible* for group sizes ``n_pos`` / ``n_neg`` when some integer pair
(true positives, true negatives) reproduces all three after rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

#: Slack added to every rounding half-width, so that values printed exactly at a
#: rounding boundary (e.g. 12.5 printed as "12" or "13") are accepted either way.
_EPS = 1e-9

Number = float | int | str


def printed_decimals(value: Number) -> int:
    """Number of decimals a value was printed with.

    Parameters
    ----------
    value : float, int or str
        The printed value. Strings keep trailing zeros (``"50.00"`` -> 2, ``"50"`` -> 0);
        numbers cannot, so a float is read through ``repr`` (``85.71`` -> 2, ``50.0`` -> 1).

    Returns
    -------
    int
        Digits after the decimal point.
    """
    text = value.strip() if isinstance(value, str) else repr(value)
    try:
        exponent = Decimal(text).as_tuple().exponent
    except InvalidOperation:
        raise ValueError(f"not a printed number: {value!r}") from None
    if not isinstance(exponent, int):
        raise ValueError(f"not a finite number: {value!r}")
    return max(0, -exponent)


def _as_float(value: Number, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a numeric string, got {value!r}") from None
    if out != out:  # NaN
        raise ValueError(f"{name} is NaN")
    return out


def matches_printed(true_value: float, printed: Number, decimals: int | None = None) -> bool:
    """Whether ``true_value`` rounds to ``printed`` at the printed precision.

    Parameters
    ----------
    true_value : float
        The exact value (same unit as ``printed``).
    printed : float, int or str
        The value as printed.
    decimals : int, optional
        Precision of ``printed``; inferred with :func:`printed_decimals` when omitted.

    Returns
    -------
    bool
        ``True`` when ``|true_value - printed| <= 0.5 * 10**-decimals`` (both rounding
        directions at an exact half are accepted).
    """
    d = printed_decimals(printed) if decimals is None else int(decimals)
    if d < 0:
        raise ValueError(f"decimals must be >= 0, got {d}")
    return abs(true_value - _as_float(printed, "printed")) <= 0.5 * 10.0**-d + _EPS


def matches_truncated(true_value: float, printed: Number, decimals: int | None = None) -> bool:
    """Whether ``printed`` is ``true_value`` cut (not rounded) to the printed precision."""
    d = printed_decimals(printed) if decimals is None else int(decimals)
    p = _as_float(printed, "printed")
    return p - _EPS <= true_value < p + 10.0**-d - _EPS


def _decimals3(decimals: int | Sequence[int] | None, values: tuple[Number, Number, Number]) -> list[int]:
    if decimals is None:
        return [printed_decimals(v) if isinstance(v, str) else 2 for v in values]
    if isinstance(decimals, int):
        return [decimals] * 3
    out = [int(d) for d in decimals]
    if len(out) != 3:
        raise ValueError(f"decimals must be an int or three ints (acc, sen, spe), got {decimals!r}")
    return out


def _check_sizes(n_pos: int, n_neg: int) -> None:
    for name, n in (("n_pos", n_pos), ("n_neg", n_neg)):
        if isinstance(n, bool) or int(n) != n or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")


def feasible_counts(
    acc: Number,
    sen: Number,
    spe: Number,
    n_pos: int,
    n_neg: int,
    decimals: int | Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """Integer confusion counts that reproduce a printed accuracy / sensitivity / specificity.

    Parameters
    ----------
    acc, sen, spe : float, int or str
        Accuracy, sensitivity and specificity **in percent**, as printed. Pass strings to
        keep the printed precision (``"75"`` vs ``"75.00"``).
    n_pos, n_neg : int
        Numbers of positive and negative cases.
    decimals : int or sequence of three ints, optional
        Printed decimals of (acc, sen, spe). When omitted, taken from each string
        (``"50"`` -> 0, ``"85.71"`` -> 2); numbers default to 2, the paper's usual precision.

    Returns
    -------
    list of (int, int)
        Every ``(tp, tn)`` with ``round(100 tp / n_pos) == sen``,
        ``round(100 tn / n_neg) == spe`` and ``round(100 (tp + tn) / (n_pos + n_neg)) == acc``
        at the printed precision, sorted. Empty when the triple is impossible.

    Examples
    --------
    >>> feasible_counts("85.71", "85.71", "85.71", 14, 14)
    [(12, 12)]
    >>> feasible_counts("98.11", "97.44", "98.63", 39, 73)
    []
    """
    _check_sizes(n_pos, n_neg)
    values = (acc, sen, spe)
    for name, v in zip(("acc", "sen", "spe"), values, strict=True):
        x = _as_float(v, name)
        if not 0.0 <= x <= 100.0:
            raise ValueError(f"{name} must be a percentage in [0, 100], got {v!r}")
    d_acc, d_sen, d_spe = _decimals3(decimals, values)
    tps = [tp for tp in range(n_pos + 1) if matches_printed(100.0 * tp / n_pos, sen, d_sen)]
    tns = [tn for tn in range(n_neg + 1) if matches_printed(100.0 * tn / n_neg, spe, d_spe)]
    n = n_pos + n_neg
    return [(tp, tn) for tp in tps for tn in tns if matches_printed(100.0 * (tp + tn) / n, acc, d_acc)]


def feasibility_verdict(solutions: Sequence[tuple[int, int]]) -> str:
    """``inconsistent`` (no solution), ``consistent`` (exactly one) or ``ambiguous`` (several)."""
    if len(solutions) == 0:
        return "inconsistent"
    return "consistent" if len(solutions) == 1 else "ambiguous"


def auc_bounds_at_operating_point(sen: float, spe: float, youden_optimal: bool = False) -> tuple[float, float]:
    """Range of empirical AUCs compatible with one point of the ROC curve.

    Parameters
    ----------
    sen, spe : float
        Sensitivity and specificity of the operating point, as fractions in [0, 1].
    youden_optimal : bool
        If ``True`` the point is known to maximise Youden's J = sen + spe - 1 over the
        empirical ROC curve (threshold chosen on the same data), which caps the curve at
        ``FPR + J`` everywhere.

    Returns
    -------
    (float, float)
        Lower and upper bound on the AUC. A monotone ROC curve through
        ``(FPR, TPR) = (1 - spe, sen)`` has AUC >= ``sen * spe``; without the Youden
        constraint the upper bound is ``1 - (1 - sen) * (1 - spe)``, with it
        ``1 - (1 - J)**2 / 2`` (when smaller).
    """
    for name, v in (("sen", sen), ("spe", spe)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {v!r}")
    lower = sen * spe
    upper = 1.0 - (1.0 - sen) * (1.0 - spe)
    if youden_optimal:
        j = max(0.0, sen + spe - 1.0)
        upper = min(upper, 1.0 - (1.0 - j) ** 2 / 2.0)
    return lower, upper


def single_value_repairs(
    acc: Number, sen: Number, spe: Number, n_pos: int, n_neg: int
) -> list[tuple[str, tuple[int, int], float]]:
    """Ways to make an impossible triple feasible by changing exactly one printed value.

    Parameters
    ----------
    acc, sen, spe : float, int or str
        Printed percentages (strings keep their precision).
    n_pos, n_neg : int
        Group sizes.

    Returns
    -------
    list of (str, (int, int), float)
        ``(metric_to_change, (tp, tn), value_it_would_have)`` for every count pair that
        reproduces the other two printed values; the value is in percent.
    """
    _check_sizes(n_pos, n_neg)
    n = n_pos + n_neg
    out: list[tuple[str, tuple[int, int], float]] = []
    for tp in range(n_pos + 1):
        for tn in range(n_neg + 1):
            ok = {
                "acc": matches_printed(100.0 * (tp + tn) / n, acc, _dec(acc)),
                "sen": matches_printed(100.0 * tp / n_pos, sen, _dec(sen)),
                "spe": matches_printed(100.0 * tn / n_neg, spe, _dec(spe)),
            }
            bad = [k for k, v in ok.items() if not v]
            if len(bad) == 1:
                value = {"acc": 100.0 * (tp + tn) / n, "sen": 100.0 * tp / n_pos, "spe": 100.0 * tn / n_neg}[bad[0]]
                out.append((bad[0], (tp, tn), value))
    return out


def _dec(value: Number) -> int:
    return printed_decimals(value) if isinstance(value, str) else 2
