"""Contrast phase of a series, choice of the portal-venous series and slice ordering.

See docs/preprocessing.md.
"""

from __future__ import annotations

import re

import numpy as np

from pdstudy.data.dicom._scan import PatientDataError, ScanResult, Series, SliceRef

PHASES = ("portal_venous", "arterial", "delayed", "non_contrast", "unknown")

# Keyword rules on SeriesDescription + ProtocolName (lower-cased, punctuation -> space).
_PHASE_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("non_contrast", re.compile(r"\b(non ?contrast|noncon|plain|native|unenhanced|pre ?contrast|nc)\b")),
    ("portal_venous", re.compile(r"\b(portal|pvp|pv|venous|ven|portovenous|70 ?s)\b")),
    ("arterial", re.compile(r"\b(arterial|art|ap|late arterial|cta|35 ?s)\b")),
    ("delayed", re.compile(r"\b(delayed|equilibrium|excretory|late|3 ?min)\b")),
)

#: Seconds after bolus start that separate the phases when no keyword decides.
PHASE_DELAYS = {"arterial": (10.0, 50.0), "portal_venous": (50.0, 110.0), "delayed": (110.0, 900.0)}


def classify_phase(series: Series) -> tuple[str, str]:
    """Contrast phase of a series and the rule that decided it.

    Keywords in SeriesDescription/ProtocolName decide first; otherwise the delay between
    ContrastBolusStartTime and the acquisition time (arterial 10-50 s, portal venous
    50-110 s, delayed later); a series without a contrast agent and without timing is
    non-contrast.

    Returns
    -------
    (phase, rule) : tuple of str
        ``phase`` is one of :data:`PHASES`.
    """
    text = re.sub(r"[^a-z0-9]+", " ", f"{series.description} {series.protocol}".lower())
    for phase, pattern in _PHASE_KEYWORDS:
        if pattern.search(text):
            return phase, f"keyword in series description/protocol ({phase})"
    delay = series.delay
    if delay is not None and series.contrast_agent:
        for phase, (lo, hi) in PHASE_DELAYS.items():
            if lo <= delay < hi:
                return phase, f"{delay:.0f} s after contrast bolus start"
        return "unknown", f"contrast delay {delay:.0f} s outside known phases"
    if not series.contrast_agent and series.bolus_start is None:
        return "non_contrast", "no contrast agent recorded"
    return "unknown", "contrast recorded but no usable timing or keyword"


def select_portal_venous(scan: ScanResult, override_uid: str = "") -> tuple[Series, str]:
    """Pick the portal-venous series: the manifest's override first, then :func:`classify_phase`.

    Raises
    ------
    PatientDataError
        If no CT series exists, the override UID is absent, or no series is portal venous. The last message is
        one line: the phases found, how to choose a series (:data:`CHOOSE_SERIES_HINT`), then every series seen
        (:func:`describe_series`), so that ``qc.csv`` alone tells a user which series to pick.
    """
    if not scan.series:
        found = ", ".join(sorted(scan.modalities)) or "none"
        raise PatientDataError(f"no CT images with pixel data (modalities found: {found})" + _notes_summary(scan.notes))
    if override_uid:
        for s in scan.series:
            if s.uid == override_uid:
                return s, "pvp_series_uid from manifest"
        raise PatientDataError(f"pvp_series_uid from the manifest not found among {len(scan.series)} CT series")
    phases = [(s, *classify_phase(s)) for s in scan.series]
    pvp = [(s, rule) for s, phase, rule in phases if phase == "portal_venous"]
    if not pvp:
        seen = ", ".join(sorted({phase for _, phase, _ in phases}))
        raise PatientDataError(f"no portal-venous series (found {len(scan.series)} CT series: {seen}); "
                               f"{CHOOSE_SERIES_HINT}; series seen: {describe_series(scan.series)}")
    s, rule = max(pvp, key=lambda item: len(item[0].slices))
    if len(pvp) > 1:
        rule += f"; {len(pvp)} portal-venous candidates, kept the one with most slices"
    return s, rule


#: How a user picks the series by hand when the headers do not identify the portal-venous one.
CHOOSE_SERIES_HINT = "to use one, set pvp_series_uid in the manifest to its SeriesInstanceUID"

#: Parts of a BodyPartExamined value (upper case, letters and digits only) that cover the abdomen: DICOM's
#: defined terms (ABDOMEN, ABDOMENPELVIS, CHESTABDOMEN, CHESTABDPELVIS, STOMACH, LIVER, ..., WHOLEBODY) and
#: what scanners write instead (ABD, CHEST_ABDOMEN, ABD PELVIS, CHEST_TO_PELVIS, TORSO, BAUCH).
_ABDOMINAL_PARTS = ("ABD", "STOMACH", "GASTR", "LIVER", "HEPAT", "PANCREA", "SPLEEN", "KIDNEY", "RENAL",
                    "GALLBLADDER", "BILIA", "BOWEL", "COLON", "WHOLEBODY", "TOPELVIS", "TORSO", "TRUNK", "BAUCH")
#: Whole values that cover the abdomen: BODY, and the abbreviations of chest-abdomen-pelvis (thorax-...).
_ABDOMINAL_VALUES = frozenset({"BODY", "CAP", "TAP"})


def is_abdominal(body_part: str) -> bool:
    """Whether a BodyPartExamined value covers the abdomen, whatever its case and separators.

    ``ABDOMEN``, ``abd``, ``CHEST_ABDOMEN``, ``Abdomen Pelvis``, ``CHESTABDPELVIS``, ``CHEST_TO_PELVIS``,
    ``STOMACH``, ``LIVER``, ``WHOLEBODY`` and ``CAP`` do; ``HEAD``, ``CHEST``, ``PELVIS`` or ``LSPINE`` do not,
    nor does an empty value (the element absent: nothing is known).
    """
    text = re.sub(r"[^A-Z0-9]", "", str(body_part).upper())
    return text in _ABDOMINAL_VALUES or any(part in text for part in _ABDOMINAL_PARTS)


def override_warnings(series: Series) -> list[str]:
    """Why a series picked by the manifest's ``pvp_series_uid`` may not be the portal-venous one.

    The override is kept (the user chose it); each doubt becomes a warning in ``qc.csv``: the series has
    no contrast (neither ContrastBolusAgent nor ContrastBolusStartTime, or its description or protocol
    says non-contrast), or its BodyPartExamined is present and not the abdomen (:func:`is_abdominal`).
    :func:`pdstudy.data.preprocess.prepare` adds the one that depends on the study's ``top_k``.

    Returns
    -------
    list of str
        One sentence per doubt (empty when none), without semicolons.
    """
    out = []
    if not series.contrast_agent and series.bolus_start is None:
        out.append("pvp_series_uid selects a series without contrast (no ContrastBolusAgent or "
                   "ContrastBolusStartTime)")
    elif classify_phase(series)[0] == "non_contrast":
        out.append("pvp_series_uid selects a series without contrast (its description or protocol says so)")
    if series.body_part and not is_abdominal(series.body_part):
        out.append(f"pvp_series_uid selects a series with BodyPartExamined {_one_line(series.body_part, 24)!r}, "
                   "not the abdomen")
    return out


def _one_line(text: str, limit: int) -> str:
    """``text`` on one line, without quotes or semicolons (the separators of a reason), at most ``limit`` chars."""
    text = " ".join(str(text).replace("'", "").replace('"', "").replace(";", ",").split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def describe_series(series: list[Series], *, limit: int = 6, width: int = 24) -> str:
    """The CT series of a patient in one line, in acquisition order, for an exclusion reason in ``qc.csv``.

    Each series: number, SeriesDescription (ProtocolName when empty), number of slices, the phase
    :func:`classify_phase` gives it, its contrast tags (ContrastBolusAgent; the delay after
    ContrastBolusStartTime or that it is absent) and its AcquisitionTime relative to the first series
    (``t+70 s``). No UIDs, dates or other identifying fields.

    Parameters
    ----------
    series : list of Series
        The patient's CT series (``ScanResult.series``).
    limit : int
        At most this many series are described; the rest are counted (``and 2 more``).
    width : int
        Descriptions and agent names longer than this are cut (``...``).

    Returns
    -------
    str
        ``"1) 'ABD PLAIN' 40 slices, non_contrast, no contrast tags, t+0 s | 2) ..."``, or ``"none"``.
    """
    if limit < 1 or width < 8:
        raise ValueError(f"limit must be >= 1 and width >= 8, got limit={limit}, width={width}")
    if not series:
        return "none"
    times = [s.acquisition_time for s in series if s.acquisition_time is not None]
    t0 = min(times) if times else 0.0
    ordered = sorted(series, key=lambda s: (s.acquisition_time is None, s.acquisition_time or 0.0,
                                            s.description, s.protocol, -len(s.slices)))
    parts = []
    for i, s in enumerate(ordered[:limit], start=1):
        name = _one_line(s.description or s.protocol, width) or "no description"
        tags = []
        if s.contrast_agent:
            tags.append(f"ContrastBolusAgent {_one_line(s.contrast_agent, width)}")
        if s.delay is not None:
            tags.append(f"{s.delay:.0f} s after ContrastBolusStartTime")
        elif s.bolus_start is not None:
            tags.append("ContrastBolusStartTime but no AcquisitionTime")
        elif s.contrast_agent:
            tags.append("no ContrastBolusStartTime")
        when = f"t+{s.acquisition_time - t0:.0f} s" if s.acquisition_time is not None else "no AcquisitionTime"
        parts.append(f"{i}) '{name}' {len(s.slices)} slices, {classify_phase(s)[0]}, "
                     f"{', '.join(tags) or 'no contrast tags'}, {when}")
    if len(ordered) > limit:
        parts.append(f"and {len(ordered) - limit} more")
    return " | ".join(parts)


def _notes_summary(notes: list[str], limit: int = 3) -> str:
    """``"; note; note ..."`` for an exclusion reason: which files were skipped and why."""
    if not notes:
        return ""
    more = f"; and {len(notes) - limit} more" if len(notes) > limit else ""
    return "; " + "; ".join(notes[:limit]) + more


def order_slices(slices: list[SliceRef]) -> tuple[list[SliceRef], list[str]]:
    """Sort planes head to feet by position and report geometry problems.

    Duplicate positions keep the first file; missing positions fall back to InstanceNumber;
    uneven spacing (any gap more than 10 % off the median) is reported.

    Returns
    -------
    (ordered, warnings) : list of SliceRef, list of str

    Raises
    ------
    PatientDataError
        If neither positions nor instance numbers allow ordering.
    """
    notes: list[str] = []
    if any(np.isnan(s.z) for s in slices):
        if any(s.instance is None for s in slices):
            raise PatientDataError("slices have neither ImagePositionPatient nor InstanceNumber; cannot order them")
        notes.append("missing ImagePositionPatient: slices ordered by InstanceNumber")
        return sorted(slices, key=lambda s: s.instance or 0), notes
    ordered = sorted(slices, key=lambda s: (-s.z, s.path, s.frame or 0))
    unique: list[SliceRef] = []
    dupes = 0
    for s in ordered:
        if unique and abs(unique[-1].z - s.z) < 1e-3:
            dupes += 1
            continue
        unique.append(s)
    if dupes:
        notes.append(f"{dupes} duplicate slice position(s) dropped")
    if len(unique) >= 3:
        gaps = -np.diff([s.z for s in unique])
        med = float(np.median(gaps))
        if med > 0 and np.any(np.abs(gaps - med) > 0.1 * med):
            notes.append(
                f"uneven slice spacing (median {med:.2f} mm, range {gaps.min():.2f}-{gaps.max():.2f} mm; "
                "missing slices?)"
            )
    return unique, notes
