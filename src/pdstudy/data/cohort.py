"""The cohort a run works on: the synthetic default or a user's manifest, its patient flow and Table 1."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from pdstudy.core.vocab import RESPONSES, paper_label
from pdstudy.data.cache import PreparedCohort, reason_category
from pdstudy.data.manifest import read_manifest
from pdstudy.data.preprocess import PrepareConfig, prepare
from pdstudy.data.synth import check_clinical_signal, check_site_options, ensure_cohort
from pdstudy.stats import fisher_exact_rxc

#: Table 1 rows: manifest column -> (display name, ordered levels with display labels).
TABLE1_CATEGORICAL: dict[str, tuple[str, dict[str, str]]] = {
    "sex": ("Sex", {"F": "Female", "M": "Male"}),
    "lauren": ("Lauren type", {"intestinal": "Intestinal", "diffuse_mixed": "Diffuse or mixed",
                               "undifferentiated": "Undifferentiated"}),
    "cea": ("CEA, ng/ml", {"normal": "<= 5.0 (normal)", "elevated": "> 5.0 (elevated)"}),
    "ca199": ("CA19-9, U/ml", {"normal": "<= 35.0 (normal)", "elevated": "> 35.0 (elevated)"}),
    "ct_stage": ("Clinical T stage", {"T3": "T3", "T4a": "T4a", "T4b": "T4b"}),
    "cn_stage": ("Clinical N stage", {"N0-1": "N0 + N1", "N2-3": "N2 + N3"}),
    "cm_stage": ("Clinical M stage", {"M0": "M0", "M1": "M1"}),
}


@dataclass
class Cohort:
    """A validated manifest together with its prepared slice cache.

    ``clinical_signal`` is the synthetic cohort's :func:`pdstudy.data.synth.generate_cohort` parameter (how
    strongly its clinical covariates depend on the response; 1 for a user's manifest, where it means nothing).
    """

    manifest_path: Path
    manifest: pd.DataFrame
    prepared: PreparedCohort
    synthetic: bool
    clinical_signal: float = 1.0

    @property
    def name(self) -> str:
        return "built-in synthetic cohort" if self.synthetic else self.manifest_path.name

    def patients(self) -> pd.DataFrame:
        """Manifest rows of included patients that belong to a split, with their slice counts."""
        qc = self.prepared.qc[["patient_id", "status", "n_slices"]]
        df = self.manifest.merge(qc, on="patient_id", how="left")
        return df[(df["status"] == "included") & (df["split"] != "")].reset_index(drop=True)


def _number(value: float) -> str:
    return f"{value:g}" if float(f"{value:g}") == value else repr(value)


def synthetic_dir(data_dir: str | Path, *, patients: int, seed: int, slices: int, size: int,
                  clinical_signal: float = 1.0, sites: int = 2, site_shift: float = 1.0,
                  site_poor: float = 1.0) -> Path:
    """Where the synthetic cohort with these generator settings lives under ``data_dir``.

    ``synthetic/n<patients>-seed<seed>-k<slices>-px<size>-sites<sites>``, followed by ``-shift<site_shift>`` and
    ``-poor<site_poor>`` when they are not 1 and by ``-clin<clinical_signal>`` (e.g. ``-clin0``, ``-clin0.5``) when
    ``clinical_signal`` is not the default 1, so that cohorts of different settings never overwrite each other.
    ``sites`` is a number of default sites (:func:`pdstudy.data.synth.default_sites`).
    """
    signal = check_clinical_signal(clinical_signal)
    check_site_options(sites, site_shift, site_poor)
    if not isinstance(sites, int | np.integer):
        raise ValueError(f"sites must be a number of default sites (1-4) for a cached synthetic cohort, got {sites!r}")
    name = f"n{patients}-seed{seed}-k{slices}-px{size}-sites{int(sites)}"
    if float(site_shift) != 1.0:
        name += f"-shift{_number(float(site_shift))}"
    if float(site_poor) != 1.0:
        name += f"-poor{_number(float(site_poor))}"
    if signal != 1.0:
        name += f"-clin{_number(signal)}"
    return Path(data_dir) / "synthetic" / name


def load_cohort(
    manifest: str | Path | None,
    data_dir: str | Path,
    *,
    image_size: int,
    fov_mm: float,
    synth_patients: int = 164,
    synth_seed: int = 0,
    synth_slices: int = 24,
    synth_size: int = 128,
    synth_clinical_signal: float = 1.0,
    synth_sites: int = 2,
    synth_site_shift: float = 1.0,
    synth_site_poor: float = 1.0,
    workers: int | None = None,
    show_progress: bool = True,
) -> Cohort:
    """Materialise the cohort: generate the synthetic one if no manifest is given, then prepare it.

    Both steps are cached under ``data_dir`` (``synthetic/`` and ``cache/``), so every notebook
    can call this and only the first pays. ``synth_*`` are the synthetic cohort's parameters
    (:func:`pdstudy.data.synth.generate_cohort`; ``synth_clinical_signal`` is its ``clinical_signal``,
    ``synth_sites``, ``synth_site_shift`` and ``synth_site_poor`` its ``sites``, ``site_shift`` and ``site_poor``),
    ignored when a manifest is given.
    """
    synthetic = not manifest
    signal = check_clinical_signal(synth_clinical_signal)
    if synthetic:
        sites = {"sites": synth_sites, "site_shift": synth_site_shift, "site_poor": synth_site_poor}
        out = synthetic_dir(data_dir, patients=synth_patients, seed=synth_seed, slices=synth_slices, size=synth_size,
                            clinical_signal=signal, **sites)
        manifest = ensure_cohort(out, patients=synth_patients, seed=synth_seed, slices=synth_slices,
                                 size=synth_size, clinical_signal=signal, show_progress=show_progress, **sites)
    manifest_path = Path(manifest).resolve()  # type: ignore[arg-type]
    df = read_manifest(manifest_path)
    prepared = prepare(manifest_path, Path(data_dir) / "cache",
                       config=PrepareConfig(image_size=int(image_size), fov_mm=float(fov_mm)),
                       workers=workers, show_progress=show_progress)
    return Cohort(manifest_path=manifest_path, manifest=df, prepared=prepared, synthetic=synthetic,
                  clinical_signal=signal if synthetic else 1.0)


#: Notebook parameters :func:`cohort_from_parameters` needs, and the synthetic cohort's, read when present.
COHORT_PARAMETERS: tuple[str, ...] = ("manifest", "data_dir", "image_size", "fov_mm", "workers")
SYNTH_PARAMETERS: dict[str, type] = {
    "synth_patients": int, "synth_seed": int, "synth_slices": int, "synth_size": int, "synth_clinical_signal": float,
    "synth_sites": int, "synth_site_shift": float, "synth_site_poor": float,
}


def cohort_from_parameters(params: Mapping[str, Any], *, show_progress: bool = True) -> Cohort:
    """:func:`load_cohort` with a notebook's parameters (e.g. its ``globals()`` or a profile).

    Parameters
    ----------
    params : mapping
        Every name of :data:`COHORT_PARAMETERS` (``manifest`` empty: the synthetic cohort; ``workers`` 0: one per
        usable core); the names of :data:`SYNTH_PARAMETERS` when present (else :func:`load_cohort`'s defaults).
    show_progress : bool
        Show progress bars.

    Returns
    -------
    Cohort
        The validated manifest and its prepared slice cache.

    Raises
    ------
    ValueError
        Naming the missing parameters.
    """
    missing = [k for k in COHORT_PARAMETERS if k not in params]
    if missing:
        raise ValueError(f"missing cohort parameter(s) {missing}")
    synth = {k: kind(params[k]) for k, kind in SYNTH_PARAMETERS.items() if k in params}
    return load_cohort(params["manifest"] or None, params["data_dir"], image_size=int(params["image_size"]),
                       fov_mm=float(params["fov_mm"]), workers=int(params["workers"]) or None,
                       show_progress=show_progress, **synth)


def patient_flow(manifest: pd.DataFrame, qc: pd.DataFrame) -> dict:
    """Counts for the patient-flow diagram: screened, exclusions by reason, included, per split."""

    merged = manifest[["patient_id", "split", "response"]].merge(qc[["patient_id", "status", "reason"]],
                                                                  on="patient_id", how="left")
    excluded = merged[merged["status"] != "included"]
    included = merged[merged["status"] == "included"]
    splits = {}
    for split, grp in included[included["split"] != ""].groupby("split", sort=False):
        splits[split] = {r: int((grp["response"] == r).sum()) for r in RESPONSES} | {"n": len(grp)}
    return {
        "screened": len(merged),
        "excluded": excluded["reason"].fillna("not processed").map(reason_category).value_counts().to_dict(),
        "included": len(included),
        "unassigned": int((included["split"] == "").sum()),
        "splits": splits,
    }


def _percent(k: int, n: int) -> str:
    return f"{k} ({100.0 * k / n:.1f}%)" if n else f"{k} (-)"


def table1(patients: pd.DataFrame, splits: tuple[str, ...] = ("train", "test")) -> pd.DataFrame:
    """Table 1 regenerated from the manifest: counts and percentages per split x response.

    Each categorical row gets an exact test of response group vs level within each split
    (Fisher's exact test for 2 levels, Fisher-Freeman-Halton for more); age gets a
    Mann-Whitney U test and is shown as mean (min-max).

    Parameters
    ----------
    patients : DataFrame
        Included patients (manifest columns; see :meth:`Cohort.patients`).
    splits : tuple of str
        Splits to tabulate, in column order.

    Returns
    -------
    DataFrame
        Columns ``characteristic, level`` then one column per split x response (headed like
        ``train GR (n=73)``) and ``p (<split>)`` per split.
    """
    groups = {(s, r): patients[(patients["split"] == s) & (patients["response"] == r)]
              for s in splits for r in RESPONSES}
    headers = {(s, r): f"{s} {paper_label(r)} (n={len(groups[s, r])})" for s in splits for r in RESPONSES}
    rows: list[dict] = []
    if "age" in patients and (patients["age"] != "").any():
        row = {"characteristic": "Age, years", "level": "mean (min-max)"}
        for s in splits:
            ages = {}
            for r in RESPONSES:
                a = pd.to_numeric(groups[s, r]["age"], errors="coerce").dropna()
                ages[r] = a
                row[headers[s, r]] = f"{a.mean():.1f} ({a.min():.0f}-{a.max():.0f})" if len(a) else "-"
            ok = all(len(a) > 0 for a in ages.values())
            row[f"p ({s})"] = float(sps.mannwhitneyu(ages["good"], ages["poor"]).pvalue) if ok else np.nan
        rows.append(row)
    for col, (name, levels) in TABLE1_CATEGORICAL.items():
        if col not in patients or (patients[col] == "").all():
            continue
        pvals = {}
        for s in splits:
            counts = np.array([[int((groups[s, r][col] == lv).sum()) for lv in levels] for r in RESPONSES])
            keep = counts.sum(axis=0) > 0
            pvals[s] = fisher_exact_rxc(counts[:, keep]) if keep.sum() >= 2 and (counts.sum(axis=1) > 0).all() \
                else np.nan
        for i, (lv, label) in enumerate(levels.items()):
            row = {"characteristic": name if i == 0 else "", "level": label}
            for s in splits:
                for r in RESPONSES:
                    g = groups[s, r]
                    row[headers[s, r]] = _percent(int((g[col] == lv).sum()), int((g[col] != "").sum()))
                row[f"p ({s})"] = pvals[s] if i == 0 else np.nan
            rows.append(row)
    cols = ["characteristic", "level", *[headers[s, r] for s in splits for r in RESPONSES],
            *[f"p ({s})" for s in splits]]
    return pd.DataFrame(rows, columns=cols)


def example_slices(cohort: Cohort, *, per_group: int = 4, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """A few windowed slices per response group for a figure.

    Patients are drawn at random (fixed ``seed``); for each, the slice with the largest tumour
    mask when masks exist (synthetic cohort), otherwise the middle slice of the kept range.
    """
    rng = np.random.default_rng(seed)
    pts = cohort.patients()
    prepared = cohort.prepared
    out: dict[str, list[np.ndarray]] = {}
    for resp in RESPONSES:
        ids = pts.loc[pts["response"] == resp, "patient_id"].to_numpy()
        chosen = rng.choice(ids, size=min(per_group, len(ids)), replace=False) if len(ids) else []
        imgs = []
        for pid in chosen:
            rows = prepared.patient_slices(str(pid))
            if prepared.masks is not None:
                area = np.asarray(prepared.masks[rows]).reshape(len(rows), -1).sum(axis=1)
                row = rows[int(np.argmax(area))]
            else:
                row = rows[len(rows) // 2]
            imgs.append(np.asarray(prepared.images[row]))
        out[resp] = imgs
    return out
