"""Cohort manifest: schema, loading and validation.

The manifest is a CSV with one row per screened patient. The schema is documented in
``data_manifest/README.md``; :data:`COLUMNS` is its machine-readable form. Structural
errors (missing columns, duplicate IDs, unknown codes) raise :class:`ManifestError`
naming the row and column before any work starts; per-patient problems found later
(missing folder, unreadable files) exclude only that patient.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pdstudy.core.vocab import RECIST_CODES, RECIST_TO_RESPONSE, RESPONSES, SITE_COLUMN, SPLITS, is_site_code


@dataclass(frozen=True)
class Column:
    """One manifest column: whether it is required and which codes it accepts."""

    name: str
    required: bool
    description: str
    codes: tuple[str, ...] | None = None


#: Codes of the clinical covariates (Table 1 of the paper).
SEX_CODES = ("F", "M")
LAUREN_CODES = ("intestinal", "diffuse_mixed", "undifferentiated")
MARKER_CODES = ("normal", "elevated")
CT_CODES = ("T3", "T4a", "T4b")
CN_CODES = ("N0-1", "N2-3")
CM_CODES = ("M0", "M1")

COLUMNS: tuple[Column, ...] = (
    Column("patient_id", True, "pseudonymous patient ID (letters, digits, '-', '_'); never a hospital ID"),
    Column("split", True, "train | val | test; empty for a screened patient not assigned to a split", SPLITS),
    Column("response", True, "good | poor (good = RECIST CR/PR, poor = SD/PD); empty only when split is empty",
           RESPONSES),
    Column("recist", True, "CR | PR | SD | PD (RECIST 1.1); may be empty only when split is empty", RECIST_CODES),
    Column("dicom_dir", True, "folder of this patient's DICOM files, relative to the manifest (any layout below it)"),
    Column("pvp_series_uid", False, "SeriesInstanceUID of the portal-venous series; overrides the header heuristics"),
    Column("z_from_mm", False, "one end of the slice range to keep, as ImagePositionPatient z in mm (inclusive)"),
    Column("z_to_mm", False, "other end of the slice range to keep, in mm (inclusive); either order"),
    Column("exclusion", False, "reason recorded before imaging was read (e.g. metastasis_outside_abdominal_cavity)"),
    Column("mask_path", False, "optional .npz with a tumour mask (synthetic cohort), relative to the manifest"),
    Column(SITE_COLUMN, False, "pseudonymous site code of a multi-centre cohort (1-32 letters, digits, '-', '_'); "
                               "never a hospital name; needed on every row with a split when the column exists"),
    Column("age", False, "age in years at baseline (integer)"),
    Column("sex", False, "F | M", SEX_CODES),
    Column("lauren", False, "Lauren type: intestinal | diffuse_mixed | undifferentiated", LAUREN_CODES),
    Column("cea", False, "CEA: normal (<= 5.0 ng/ml) | elevated", MARKER_CODES),
    Column("ca199", False, "CA19-9: normal (<= 35.0 U/ml) | elevated", MARKER_CODES),
    Column("ct_stage", False, "clinical T stage: T3 | T4a | T4b", CT_CODES),
    Column("cn_stage", False, "clinical N stage: N0-1 | N2-3", CN_CODES),
    Column("cm_stage", False, "clinical M stage: M0 | M1", CM_CODES),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
REQUIRED = tuple(c.name for c in COLUMNS if c.required)
COVARIATES = ("age", "sex", "lauren", "cea", "ca199", "ct_stage", "cn_stage", "cm_stage")

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ManifestError(ValueError):
    """A structural problem in the manifest; raised before any work starts."""


class PseudonymityError(ManifestError):
    """Manifest patient IDs equal to identity values of their patients' DICOM headers (raised by ``prepare``)."""


class PseudonymityWarning(UserWarning):
    """A manifest patient ID that looks like a hospital record number (:func:`looks_like_mrn`)."""


#: A run of this many digits in a patient ID looks like a hospital record number (MRN) or a date.
MRN_DIGITS = 6
_MRN_RE = re.compile(rf"[0-9]{{{MRN_DIGITS},}}")


def looks_like_mrn(patient_id: str) -> bool:
    """Whether ``patient_id`` holds :data:`MRN_DIGITS` (6) or more digits in a row, as ``00123456`` or ``MRN-0012345``.

    Such an ID is allowed (``prepare`` warns about it): it may be a hospital record number, which no output
    should carry. Digits split by separators (``P-12-3456``) do not count.
    """
    return bool(_MRN_RE.search(str(patient_id)))


def _where(row: int, column: str) -> str:
    # Row numbers as a spreadsheet shows them: the header is line 1.
    return f"row {row + 2}, column '{column}'"


def validate_manifest(df: pd.DataFrame, source: str = "manifest") -> list[str]:
    """Check a manifest table and return every structural error found.

    Parameters
    ----------
    df : pandas.DataFrame
        The manifest, read with every column as string (see :func:`read_manifest`).
    source : str
        Name used in the messages (usually the file name).

    Returns
    -------
    list of str
        One message per problem, each naming the row and column; empty when valid.
    """
    errors: list[str] = []
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        return [f"{source}: missing required column(s) {missing}; expected at least {list(REQUIRED)}"]
    unknown_cols = [c for c in df.columns if c not in COLUMN_NAMES]
    if unknown_cols:
        errors.append(f"{source}: unknown column(s) {unknown_cols}; valid columns are {list(COLUMN_NAMES)}")

    seen: dict[str, int] = {}
    for i, pid in enumerate(df["patient_id"]):
        if not pid:
            errors.append(f"{source}: {_where(i, 'patient_id')}: empty patient_id")
        elif not _ID_RE.match(pid):
            errors.append(
                f"{source}: {_where(i, 'patient_id')}: {pid!r} is not a pseudonymous ID "
                "(1-64 letters, digits, '-' or '_', starting with a letter or digit)"
            )
        elif pid in seen:
            first = seen[pid] + 2
            errors.append(f"{source}: {_where(i, 'patient_id')}: duplicate patient_id {pid!r} (first at row {first})")
        else:
            seen[pid] = i

    for col in COLUMNS:
        if col.codes is None or col.name not in df.columns:
            continue
        for i, value in enumerate(df[col.name]):
            if value and value not in col.codes:
                errors.append(
                    f"{source}: {_where(i, col.name)}: unknown code {value!r}; expected one of {list(col.codes)}")

    for i, row in df.iterrows():
        assigned = bool(row["split"])
        for col in ("response", "recist"):
            if assigned and not row[col]:
                errors.append(f"{source}: {_where(i, col)}: empty, but the patient is in split {row['split']!r}")
        if row["recist"] in RECIST_TO_RESPONSE and row["response"] in RESPONSES:
            expected = RECIST_TO_RESPONSE[row["recist"]]
            if row["response"] != expected:
                errors.append(
                    f"{source}: {_where(i, 'response')}: {row['response']!r} contradicts recist {row['recist']!r} "
                    f"(RECIST {row['recist']} means {expected!r} response)"
                )
        if not row["dicom_dir"]:
            errors.append(f"{source}: {_where(i, 'dicom_dir')}: empty")
        elif Path(row["dicom_dir"]).is_absolute() or ".." in Path(row["dicom_dir"]).parts:
            errors.append(
                f"{source}: {_where(i, 'dicom_dir')}: must be a path inside the manifest's folder, "
                f"not {row['dicom_dir']!r}")
        for col in ("z_from_mm", "z_to_mm", "age"):
            if col in df.columns and row[col]:
                try:
                    float(row[col])
                except ValueError:
                    errors.append(f"{source}: {_where(i, col)}: {row[col]!r} is not a number")
        if "z_from_mm" in df.columns and "z_to_mm" in df.columns and bool(row["z_from_mm"]) != bool(row["z_to_mm"]):
            errors.append(f"{source}: {_where(i, 'z_to_mm')}: z_from_mm and z_to_mm must be given together")
        if SITE_COLUMN in df.columns:
            site = row[SITE_COLUMN]
            if site and not is_site_code(site):
                errors.append(f"{source}: {_where(i, SITE_COLUMN)}: {site!r} is not a pseudonymous site code "
                              "(1-32 letters, digits, '-' or '_'; never a hospital name)")
            elif assigned and not site:
                errors.append(f"{source}: {_where(i, SITE_COLUMN)}: empty, but the patient is in split "
                              f"{row['split']!r} (with a '{SITE_COLUMN}' column every patient of a split needs a "
                              "site code)")
    return errors


#: Delimiters a spreadsheet may have used instead of commas, with how a message names them.
_OTHER_DELIMITERS = ((";", "semicolon-separated"), ("\t", "tab-separated"), ("|", "pipe-separated"))


def _spreadsheet_kind(path: Path) -> str:
    """What a zip file is: an Excel workbook, an OpenDocument spreadsheet or another zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype").decode("ascii", "replace") if "mimetype" in names else ""
    except (zipfile.BadZipFile, OSError):
        return "a zip archive"
    if any(name.startswith("xl/") for name in names):
        return "an Excel workbook (.xlsx, a zip archive)"
    if "opendocument.spreadsheet" in mimetype:
        return "an OpenDocument spreadsheet (.ods, a zip archive)"
    return "a zip archive"


def _looks_utf16(sample: bytes) -> bool:
    """ASCII text in UTF-16 without a byte-order mark: every other byte is zero, the others are not."""
    if len(sample) < 4:
        return False
    for zeros, chars in ((sample[1::2], sample[0::2]), (sample[0::2], sample[1::2])):
        if zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) == 0:
            return True
    return False


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _csv_problem(path: str | Path) -> str | None:
    """Why a file is not a comma-separated, UTF-8 CSV, from its first bytes; None when it looks like one.

    Recognises an Excel workbook (.xlsx zip or old .xls), an OpenDocument spreadsheet, UTF-16/UTF-32 text
    (Excel's "Unicode Text"), other binary files, text that is not UTF-8, and a header line separated by
    semicolons, tabs or pipes instead of commas (a spreadsheet saved with a regional list separator).

    Parameters
    ----------
    path : str or Path
        An existing file.

    Returns
    -------
    str or None
        What was seen, e.g. ``"semicolon-separated"`` or ``"an Excel workbook (.xlsx, a zip archive)"``.
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(65536)
    if not head.strip():
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return _spreadsheet_kind(path)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "an old Excel workbook (.xls)"
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32 text"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(head[:200]):
        return "UTF-16 text (e.g. Excel's 'Unicode Text')"
    if b"\x00" in head:
        return "a binary file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the 64 KiB read
            return f"text that is not UTF-8 (byte {head[exc.start]:#04x} at offset {exc.start})"
        text = head[: exc.start].decode("utf-8")
    header = next((line for line in text.lstrip("\ufeff").splitlines() if line.strip()), "")
    for delimiter, name in _OTHER_DELIMITERS:
        if header.count(delimiter) > header.count(","):
            return f"{name}: header {_short(header)!r}"
    return None


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest CSV.

    Parameters
    ----------
    path : str or Path
        The manifest file.

    Returns
    -------
    pandas.DataFrame
        All columns as strings (empty string for missing values), in file order. A manifest without a
        ``site`` column (a single-site cohort) gets one, empty on every row, after its own columns.

    Raises
    ------
    ManifestError
        If the file is missing, is not a comma-separated UTF-8 CSV (``not a CSV file: <path> (what was seen; ...)``,
        checked from its first bytes), or any structural check fails; the message lists every problem with its row
        and column.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    problem = _csv_problem(path)
    if problem:
        raise ManifestError(f"not a CSV file: {path} ({problem}; save it as comma-separated CSV, UTF-8)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path.name}: not a readable CSV file ({exc})") from exc
    df.columns = [c.strip() for c in df.columns]
    df = df.apply(lambda s: s.str.strip())
    errors = validate_manifest(df, source=path.name)
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise ManifestError(f"{len(errors)} problem(s) in the manifest:\n  {shown}{more}")
    if SITE_COLUMN not in df.columns:
        df[SITE_COLUMN] = ""
    return df


def manifest_checksum(path: str | Path) -> str:
    """SHA-256 of the manifest file's bytes (identifies the cohort definition in caches and provenance)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
