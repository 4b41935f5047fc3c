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
from pdstudy.evaluate import METRICS, POLICIES, POLICY_LABELS, SMALL_MARK, small_splits
from pdstudy.report._cells import interval_text, percent_text
from pdstudy.report._cells import number as _num
from pdstudy.report._cells import p_text as _fmt_p

__all__ = ["format_evaluation_table"]

_METRIC_NAMES: Final = {"acc": "ACC", "sen": "SEN", "spe": "SPE"}
#: Column of the patients behind each row.
_PATIENTS: Final = "Patients train / val / test (poor)"


def _fmt_auc(r: Mapping[str, Any], key: str) -> str:
    return interval_text(r, key)


def _fmt_pct(r: Mapping[str, Any], key: str, *, spread: bool) -> str:
    text = percent_text(r, key)
    sd = _num(r.get(f"{key}_seed_sd"))
    if spread and text != "n/a" and not math.isnan(sd):
        text += f"; seeds {100 * _num(r.get(f'{key}_seed_mean')):.1f} ± {100 * sd:.1f}"
    return text


def _mark(text: str, small: list[str], *splits: str) -> str:
    """``text`` with :data:`SMALL_MARK` when it rests on one of ``splits`` and that split is small."""
    return f"{text} {SMALL_MARK}" if text != "n/a" and any(s in small for s in splits) else text


def _patients(r: Mapping[str, Any], small: list[str], splits: tuple[str, ...] = ("train", "val", "test")) -> str:
    """``89 (31) / 23 (8) † / 28 (14)``: patients (poor) per split, small splits marked."""
    parts = []
    for split in splits:
        n, poor = _num(r.get(f"n_{split}")), _num(r.get(f"n_{split}_poor"))
        if math.isnan(n):
            parts.append("n/a")
            continue
        text = f"{int(n)}" + ("" if math.isnan(poor) else f" ({int(poor)})")
        parts.append(_mark(text, small, split))
    return " / ".join(parts)


def _metric_cells(r: Mapping[str, Any], spread: bool, small: list[str] | None = None) -> dict[str, str]:
    small = small or []
    out = {}
    for pol in POLICIES:
        splits = ("val", "test") if pol == "youden_val" else ("test",)
        for m in METRICS:
            out[f"{_METRIC_NAMES[m]} % ({POLICY_LABELS[pol]})"] = _mark(_fmt_pct(r, f"{pol}_{m}", spread=spread),
                                                                       small, *splits)
    return out


def _train_cells(r: Mapping[str, Any], small: list[str]) -> dict[str, str]:
    return {f"Train {_METRIC_NAMES[m]} % (Youden on val)": _mark(_fmt_pct(r, f"train_{m}", spread=False), small,
                                                               "train", "val") for m in METRICS}


def _fmt_mean_sd(r: Mapping[str, Any], key: str, *, pct: bool) -> str:
    v, sd = _num(r.get(f"{key}_mean")), _num(r.get(f"{key}_sd"))
    if math.isnan(v):
        return "n/a"
    f = 100.0 if pct else 1.0
    digits = 1 if pct else 2
    return f"{f * v:.{digits}f}" + ("" if math.isnan(sd) else f" ± {f * sd:.{digits}f}")


def _cv_rows(rows: list[dict[str, Any]], per_repeat: bool) -> list[dict[str, str]]:
    out = []
    for r in rows:
        small = small_splits(r)
        d = {"Method": str(r["method"])}
        if per_repeat:
            d.update({"Seed": str(int(r["seed"])), "Repeat": str(int(r["repeat"]))})
        else:
            d["Repeats"] = str(int(r["n_repeats"]))
        d["Folds"] = str(int(r["n_folds"]))
        d["Test patients (poor)"] = _mark(f"{int(r['n_test'])} ({int(r['n_test_poor'])})", small, "test")
        d["Smallest fold's val patients (poor)"] = _mark(f"{int(r['n_val'])} ({int(r['n_val_poor'])})", small, "val")
        if per_repeat:
            d["AUC [95% CI]"] = _mark(_fmt_auc(r, "auc"), small, "test")
            for m in METRICS:
                d[f"{_METRIC_NAMES[m]} % (Youden on val)"] = _mark(
                    "n/a" if math.isnan(_num(r.get(f"youden_val_{m}"))) else f"{100 * _num(r[f'youden_val_{m}']):.1f}",
                    small, "val", "test")
        else:
            d["AUC mean ± SD"] = _mark(_fmt_mean_sd(r, "auc", pct=False), small, "test")
            lo, hi = _num(r.get("auc_min")), _num(r.get("auc_max"))
            d["AUC min-max"] = "n/a" if math.isnan(lo) else f"{lo:.2f}-{hi:.2f}"
            for m in METRICS:
                d[f"{_METRIC_NAMES[m]} % (Youden on val) mean ± SD"] = _mark(
                    _fmt_mean_sd(r, f"youden_val_{m}", pct=True), small, "val", "test")
        out.append(d)
    return out


def format_evaluation_table(table: pd.DataFrame) -> pd.DataFrame:
    """Display version of an evaluation table (percentages, intervals and p-values as text).

    Every row names the patients its numbers rest on (a ``Patients`` column: all, and poor responders,
    per split); a number resting on fewer than :data:`pdstudy.evaluate.MIN_CLASS_PATIENTS` patients of
    one class carries :data:`pdstudy.evaluate.SMALL_MARK`, explained in the table's notes.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`pdstudy.evaluate.table2`, :func:`~pdstudy.evaluate.table3`,
        :func:`~pdstudy.evaluate.table4`, :func:`~pdstudy.evaluate.iteration_curve` or
        :func:`~pdstudy.evaluate.cv_summary` (recognised by ``attrs["table"]``).

    Returns
    -------
    pandas.DataFrame
        String cells: ``0.84 [0.68, 0.95]`` for AUCs, ``85.7 [68.5, 94.3]`` for percentages, ``n/a``
        when undefined, the status (``not run``, ``other reading only``) for methods that were not run.
        ``attrs`` are kept.
    """
    kind = table.attrs.get("table")
    rows = table.to_dict("records")
    out: list[dict[str, str]] = []
    if kind in ("table2", "table4", "iteration_curve"):
        for r in rows:
            spread = _num(r.get("n_seeds")) > 1
            small = small_splits(r)
            d: dict[str, str] = {}
            if kind == "table4":
                d.update({"Model": display_arch(r["model"]), "KD": str(r["kd"]), "MN": str(r["mn"]),
                          "MI": str(r["mi"])})
            elif kind == "iteration_curve":
                d.update({"Stage": str(r["stage"]), "Role": "teacher" if r["stage"] == 0 else f"iteration {r['stage']}",
                          "Architecture": display_arch(r["arch"])})
            else:
                d["Method"] = r["method"]
            status = r.get("status", "run")
            if status != "run":
                d["Seeds"] = "-"
                d[_PATIENTS] = "-"
                cells = {"Train AUC [95% CI]": status} if kind == "table2" else {}
                cells["Test AUC [95% CI]"] = status
                cells.update({k: status for k in _metric_cells({}, False)})
                if kind == "table2":
                    cells.update({k: status for k in _train_cells({}, [])})
            else:
                d["Seeds"] = str(int(r["n_seeds"]))
                d[_PATIENTS] = _patients(r, small)
                cells = {"Train AUC [95% CI]": _mark(_fmt_auc(r, "train_auc"), small, "train")} \
                    if kind == "table2" else {}
                test_auc = _fmt_auc(r, "test_auc")
                if spread:
                    test_auc += (f"; seeds {_num(r['test_auc_seed_mean']):.2f} ± "
                                 f"{_num(r['test_auc_seed_sd']):.2f}")
                cells["Test AUC [95% CI]"] = _mark(test_auc, small, "test")
                cells.update(_metric_cells(r, spread, small))
                if kind == "table2":
                    cells.update(_train_cells(r, small))
            d.update(cells)
            if kind == "table2":
                d["Compared with"] = (method_from_id(r["compared_with"]).label
                                      if isinstance(r.get("compared_with"), str) and r["compared_with"] else "n/a")
                d["p (DeLong)"] = _mark(_fmt_p(r.get("p_delong")), small, "test")
                in_family = str(r.get("holm_family")) in ("True", "1", "1.0")
                d["p (Holm)"] = (_mark(_fmt_p(r.get("p_delong_holm")), small, "test") if in_family else
                                 "exploratory" if not math.isnan(_num(r.get("p_delong"))) else "n/a")
                d["Analysis"] = "" if pd.isna(r.get("analysis")) else str(r.get("analysis") or "")
            if "paper_train_auc" in r:
                pv = _num(r.get("paper_train_auc"))
                d["Paper train AUC"] = "n/a" if math.isnan(pv) else f"{pv:.2f}"
            if "paper_test_auc" in r or "paper_auc" in r:
                pv = _num(r.get("paper_test_auc", r.get("paper_auc")))
                d["Paper test AUC"] = "n/a" if math.isnan(pv) else f"{pv:.2f}"
            if kind in ("table2", "table4"):
                d["Note"] = r.get("reason") or ""
            out.append(d)
    elif kind == "table3":
        for r in rows:
            small = small_splits(r)
            d = {"Reader / model": r["row"],
                 "Experience (years)": "" if pd.isna(r.get("years_experience")) else str(int(r["years_experience"]))}
            poor, good = _num(r.get("n_test_poor")), _num(r.get("n_test_good"))
            d["Test patients (poor / good)"] = ("" if math.isnan(poor)
                                                else f"{int(poor + good)} ({int(poor)} / {int(good)})")
            for m in METRICS:
                d[f"{_METRIC_NAMES[m]} %"] = _mark(_fmt_pct(r, m, spread=False), small, "val", "test")
            d["McNemar b / c"] = ("" if pd.isna(r.get("mcnemar_b"))
                                  else f"{int(r['mcnemar_b'])} / {int(r['mcnemar_c'])}")
            d["p (McNemar)"] = "" if r["kind"] != "reader" else _fmt_p(r.get("mcnemar_p"))
            d["p (Holm)"] = "" if r["kind"] != "reader" else _fmt_p(r.get("mcnemar_p_holm"))
            out.append(d)
    elif kind in ("cv_summary", "cv_per_repeat"):
        out = _cv_rows(rows, per_repeat=kind == "cv_per_repeat")
    else:
        raise ValueError(f"format_evaluation_table: unknown table kind {kind!r} in attrs['table']; expected a "
                         "table from pdstudy.evaluate")
    disp = pd.DataFrame(out)
    disp.attrs.update(table.attrs)
    return disp
