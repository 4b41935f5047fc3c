"""Whether a manifest patient ID is one of the identity values in that patient's DICOM headers.

:func:`pdstudy.data.dicom.scan_folder` reads the identity elements of every file (``ScanResult.identity``,
kept in memory only); :func:`identity_matches` compares a manifest ID with them. See docs/preprocessing.md,
"Pseudonymity check".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: The header elements a manifest ``patient_id`` must not equal. OtherPatientIDsSequence holds the
#: ``PatientID`` of each of its items.
IDENTITY_ELEMENTS = ("PatientID", "PatientName", "OtherPatientIDs", "OtherPatientIDsSequence", "AccessionNumber")

#: At most this many PN components are combined (family, given, middle, prefix, suffix).
_PN_COMPONENTS = 5


def normalise_identity(text: str) -> str:
    """``text`` case-folded, with every character that is not a letter or a digit dropped.

    ``"Zhang_Wei"``, ``"zhang wei"`` and ``"ZHANG-WEI"`` all give ``"zhangwei"``.
    """
    return "".join(ch for ch in str(text).casefold() if ch.isalnum())


def _name_components(value: str) -> list[list[str]]:
    """The normalised, non-empty components of each component group of a DICOM PN value.

    ``"Yamada^Taro=山田^太郎"`` has two groups (alphabetic, ideographic), each ``family^given^middle^prefix^suffix``.
    """
    groups = []
    for group in str(value).split("="):
        parts = [normalise_identity(p) for p in group.split("^")[:_PN_COMPONENTS]]
        parts = [p for p in parts if p]
        if parts:
            groups.append(parts)
    return groups


def _joins(target: str, parts: list[str]) -> bool:
    """Whether ``target`` is the concatenation of some of ``parts``, each used at most once, in any order."""
    if not target:
        return True
    for i, part in enumerate(parts):
        if target.startswith(part) and _joins(target[len(part):], parts[:i] + parts[i + 1:]):
            return True
    return False


def identity_matches(patient_id: str, identity: Mapping[str, Iterable[str]]) -> list[str]:
    """The identity elements whose value ``patient_id`` equals, in :data:`IDENTITY_ELEMENTS` order.

    Both sides are compared after :func:`normalise_identity` (case-folded, letters and digits only), as
    whole strings: a value that merely contains the ID, or is contained in it, does not match. A
    PatientName matches when the ID is made of its components in any order (``Zhang_Wei`` and
    ``Wei Zhang`` both match ``Zhang^Wei``; a single component, e.g. ``Zhang``, matches too), within one
    component group (alphabetic, ideographic or phonetic).

    Parameters
    ----------
    patient_id : str
        A manifest ``patient_id``.
    identity : mapping
        Element keyword (one of :data:`IDENTITY_ELEMENTS`) -> the values found in the patient's files
        (as :attr:`pdstudy.data.dicom.ScanResult.identity`); PatientName values as DICOM PN strings
        (``"Family^Given^Middle"``).

    Returns
    -------
    list of str
        Keywords of the matching elements; empty when the ID is none of the values. The values themselves
        are never returned.
    """
    unknown = sorted(set(identity) - set(IDENTITY_ELEMENTS))
    if unknown:
        raise ValueError(f"unknown identity element(s) {unknown}; expected some of {list(IDENTITY_ELEMENTS)}")
    target = normalise_identity(patient_id)
    if not target:
        return []
    found = []
    for element in IDENTITY_ELEMENTS:
        values = identity.get(element, ())
        if element == "PatientName":
            hit = any(_joins(target, parts) for value in values for parts in _name_components(value))
        else:
            hit = any(normalise_identity(value) == target for value in values)
        if hit:
            found.append(element)
    return found
