"""Sites of a multi-centre cohort: what the scanners gave and what preprocessing kept, per site.

A manifest's optional ``site`` column holds a pseudonymous site code (data_manifest/README.md,
"Multi-centre cohorts"); a manifest without one is a single-site cohort. The external-validation
splits are :func:`pdstudy.data.splits.external_splits`.
"""

from __future__ import annotations

import numbers
from typing import Final

import numpy as np
import pandas as pd

from pdstudy.core.vocab import SITE_COLUMN

#: Columns of :func:`site_summary`.
SITE_SUMMARY_COLUMNS: Final = ("site", "n_screened", "n_included", "n_excluded", "pixel_spacing_mm",
                               "cache_pixel_mm", "slice_mm", "n_slices")
#: :func:`site_summary`'s row of a single-site cohort (no ``site`` column, or no code on any row).
ALL_SITES: Final = "all"
#: :func:`site_summary`'s row of screened patients without a site code in a multi-centre manifest (patients
#: outside every split may lack one). Not a valid site code, so it never names a real site.
NO_SITE: Final = "(no site)"


def _median_range(values: pd.Series) -> str:
    """``"median (min-max)"`` of the numbers in ``values`` (empty cells skipped); ``""`` when there are none."""
    x = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if x.size == 0:
        return ""
    med, lo, hi = (float(f"{v:.4g}") for v in (np.median(x), x.min(), x.max()))
    return f"{med:g} ({lo:g}-{hi:g})"


def site_summary(manifest: pd.DataFrame, qc: pd.DataFrame, *, pixel_mm: float) -> pd.DataFrame:
    """One row per site: patients screened and kept, and the acquisition that preprocessing saw and made.

    Parameters
    ----------
    manifest : pandas.DataFrame
        The manifest (:func:`pdstudy.data.manifest.read_manifest`): ``patient_id`` and, for a multi-centre
        cohort, ``site``.
    qc : pandas.DataFrame
        The prepared cohort's ``qc.csv`` (:attr:`pdstudy.data.cache.PreparedCohort.qc`): ``patient_id``,
        ``status``, ``n_slices``, ``pixel_spacing_mm`` and ``slice_mm`` (caches written before ``slice_mm``
        existed lack it: the column is then empty).
    pixel_mm : float
        The slice cache's pixel size in mm (``fov_mm / image_size``; ``meta.json`` ``pixel_mm``): every slice
        of every site is resampled in-plane to it.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SITE_SUMMARY_COLUMNS`, one row per site code in sorted order (a single-site cohort:
        one row :data:`ALL_SITES`; screened patients without a code in a multi-centre manifest: a last row
        :data:`NO_SITE`). ``n_screened``: manifest rows; ``n_included`` / ``n_excluded``: ``qc.csv`` status.
        ``pixel_spacing_mm`` (the source PixelSpacing of the kept series), ``slice_mm`` (median spacing
        between kept slices) and ``n_slices`` (slices kept) are ``"median (min-max)"`` strings over the
        site's included patients (``""`` when none has a value); ``cache_pixel_mm`` is ``pixel_mm``.

    Raises
    ------
    ValueError
        If a column is missing, ``pixel_mm`` is not a positive number, or a manifest patient has no
        ``qc.csv`` row (the qc of another manifest?).
    """
    if not isinstance(pixel_mm, numbers.Real) or isinstance(pixel_mm, bool) or not np.isfinite(pixel_mm) \
            or pixel_mm <= 0:
        raise ValueError(f"pixel_mm must be a positive number (the cache's pixel size in mm), got {pixel_mm!r}")
    if "patient_id" not in manifest.columns:
        raise ValueError("manifest lacks column 'patient_id'")
    missing = [c for c in ("patient_id", "status", "n_slices", "pixel_spacing_mm") if c not in qc.columns]
    if missing:
        raise ValueError(f"qc lacks column(s) {missing}; expected the qc.csv of a prepared cohort")
    sites = manifest[SITE_COLUMN].fillna("").astype(str).str.strip() if SITE_COLUMN in manifest.columns \
        else pd.Series("", index=manifest.index)
    multi = bool((sites != "").any())
    frame = pd.DataFrame({"patient_id": manifest["patient_id"].astype(str).to_numpy(),
                          "site": sites.where(sites != "", NO_SITE if multi else ALL_SITES).to_numpy()})
    q = qc.assign(patient_id=qc["patient_id"].astype(str))
    if "slice_mm" not in q.columns:
        q = q.assign(slice_mm="")
    q = q[["patient_id", "status", "n_slices", "pixel_spacing_mm", "slice_mm"]]
    unknown = sorted(set(frame["patient_id"]) - set(q["patient_id"]))
    if unknown:
        raise ValueError(f"qc has no row for manifest patient(s) {unknown[:5]}: is it the qc.csv of this manifest?")
    frame = frame.merge(q, on="patient_id", how="left")
    order = sorted(s for s in frame["site"].unique() if s != NO_SITE) + ([NO_SITE] if (frame["site"] == NO_SITE).any()
                                                                          else [])
    rows = []
    for site in order:
        grp = frame[frame["site"] == site]
        kept = grp[grp["status"] == "included"]
        rows.append({
            "site": site, "n_screened": len(grp), "n_included": len(kept),
            "n_excluded": int((grp["status"] == "excluded").sum()),
            "pixel_spacing_mm": _median_range(kept["pixel_spacing_mm"]), "cache_pixel_mm": round(float(pixel_mm), 4),
            "slice_mm": _median_range(kept["slice_mm"]), "n_slices": _median_range(kept["n_slices"]),
        })
    return pd.DataFrame(rows, columns=list(SITE_SUMMARY_COLUMNS))
