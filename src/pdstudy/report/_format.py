"""Display versions of the evaluation tables: AUCs with intervals, percentages and p-values as text.

The numeric tables come from :mod:`pdstudy.evaluate`; :func:`pdstudy.report.tables.write_evaluation_table`
writes both versions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import pandas as pd

from pdstudy.core.methods import display_arch, method_from_id
from pdstudy.evaluate import METRICS, POLICIES, POLICY_LABELS

__all__ = ["format_evaluation_table"]

_METRIC_NAMES: Final = {"acc": "ACC", "sen": "SEN", "spe": "SPE"}


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _fmt_auc(r: Mapping[str, Any], key: str) -> str:
    auc, lo, hi = _num(r.get(key)), _num(r.get(f"{key}_lo")), _num(r.get(f"{key}_hi"))
    if math.isnan(auc):
        return "n/a"
    ci = "" if math.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]"
    return f"{auc:.2f}{ci}"


def _fmt_pct(r: Mapping[str, Any], key: str, *, spread: bool) -> str:
    v, lo, hi = _num(r.get(key)), _num(r.get(f"{key}_lo")), _num(r.get(f"{key}_hi"))
    if math.isnan(v):
        return "n/a"
    text = f"{100 * v:.1f}" + ("" if math.isnan(lo) else f" [{100 * lo:.1f}, {100 * hi:.1f}]")
    sd = _num(r.get(f"{key}_seed_sd"))
    if spread and not math.isnan(sd):
        text += f"; seeds {100 * _num(r.get(f'{key}_seed_mean')):.1f} ± {100 * sd:.1f}"
    return text


def _fmt_p(v: Any) -> str:
    v = _num(v)
    if math.isnan(v):
        return "n/a"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _metric_cells(r: Mapping[str, Any], spread: bool) -> dict[str, str]:
    out = {}
    for pol in POLICIES:
        for m in METRICS:
            out[f"{_METRIC_NAMES[m]} % ({POLICY_LABELS[pol]})"] = _fmt_pct(r, f"{pol}_{m}", spread=spread)
    return out


def format_evaluation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display version of an evaluation table (percentages, intervals and p-values as text).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`pdstudy.evaluate.table2`, :func:`~pdstudy.evaluate.table3`,
        :func:`~pdstudy.evaluate.table4`, :func:`~pdstudy.evaluate.iteration_curve` or
        :func:`~pdstudy.evaluate.cv_summary` (recognised by ``attrs["table"]``); cross-validation
        tables are returned as a copy.

    Returns
    -------
    pandas.DataFrame
        String cells: ``0.84 [0.68, 0.95]`` for AUCs, ``85.7 [68.5, 94.3]`` for percentages, ``n/a``
        when undefined, ``not run`` for methods that were not run. ``attrs`` are kept.
    """
    kind = table.attrs.get("table")
    rows = table.to_dict("records")
    out: list[dict[str, str]] = []
    if kind in ("table2", "table4", "iteration_curve"):
        for r in rows:
            spread = _num(r.get("n_seeds")) > 1
            d: dict[str, str] = {}
            if kind == "table4":
                d.update({"Model": display_arch(r["model"]), "KD": str(r["kd"]), "MN": str(r["mn"]),
                          "MI": str(r["mi"])})
            elif kind == "iteration_curve":
                d.update({"Stage": str(r["stage"]), "Role": "teacher" if r["stage"] == 0 else f"iteration {r['stage']}",
                          "Architecture": display_arch(r["arch"])})
            else:
                d["Method"] = r["method"]
            if r.get("status", "run") != "run":
                d["Seeds"] = "-"
                cells = {"Train AUC [95% CI]": "not run"} if kind == "table2" else {}
                cells["Test AUC [95% CI]"] = "not run"
                cells.update({k: "not run" for k in _metric_cells({}, False)})
            else:
                d["Seeds"] = str(int(r["n_seeds"]))
                cells = {"Train AUC [95% CI]": _fmt_auc(r, "train_auc")} if kind == "table2" else {}
                cells["Test AUC [95% CI]"] = _fmt_auc(r, "test_auc")
                if spread:
                    cells["Test AUC [95% CI]"] += (f"; seeds {_num(r['test_auc_seed_mean']):.2f} ± "
                                                   f"{_num(r['test_auc_seed_sd']):.2f}")
                cells.update(_metric_cells(r, spread))
            d.update(cells)
            if kind == "table2":
                d["Compared with"] = (method_from_id(r["compared_with"]).label
                                      if isinstance(r.get("compared_with"), str) and r["compared_with"] else "n/a")
                d["p (DeLong)"] = _fmt_p(r.get("p_delong"))
                d["p (Holm)"] = _fmt_p(r.get("p_delong_holm"))
            if "paper_test_auc" in r or "paper_auc" in r:
                pv = _num(r.get("paper_test_auc", r.get("paper_auc")))
                d["Paper test AUC"] = "n/a" if math.isnan(pv) else f"{pv:.2f}"
            if kind in ("table2", "table4"):
                d["Note"] = r.get("reason") or ""
            out.append(d)
    elif kind == "table3":
        for r in rows:
            d = {"Reader / model": r["row"],
                 "Experience (years)": "" if pd.isna(r.get("years_experience")) else str(int(r["years_experience"]))}
            for m in METRICS:
                d[f"{_METRIC_NAMES[m]} %"] = _fmt_pct(r, m, spread=False)
            d["McNemar b / c"] = ("" if pd.isna(r.get("mcnemar_b"))
                                  else f"{int(r['mcnemar_b'])} / {int(r['mcnemar_c'])}")
            d["p (McNemar)"] = "" if r["kind"] != "reader" else _fmt_p(r.get("mcnemar_p"))
            d["p (Holm)"] = "" if r["kind"] != "reader" else _fmt_p(r.get("mcnemar_p_holm"))
            out.append(d)
    elif kind in ("cv_summary", "cv_per_repeat"):
        return table.copy()
    else:
        raise ValueError(f"format_evaluation_table: unknown table kind {kind!r} in attrs['table']; expected a "
                         "table from pdstudy.evaluate")
    disp = pd.DataFrame(out)
    disp.attrs.update(table.attrs)
    return disp

