"""Manifest validation: structural errors stop before any work, naming row and column."""

from __future__ import annotations

import zipfile

import pandas as pd
import pytest

from pdstudy.core.paths import repo_root
from pdstudy.core.vocab import label_of, response_from_recist
from pdstudy.data.manifest import COLUMN_NAMES, REQUIRED, ManifestError, read_manifest, validate_manifest

REPO = repo_root()

GOOD = [
    {"patient_id": "P001", "split": "train", "response": "good", "recist": "PR", "dicom_dir": "p1"},
    {"patient_id": "P002", "split": "test", "response": "poor", "recist": "SD", "dicom_dir": "p2"},
    {
        "patient_id": "P003",
        "split": "",
        "response": "",
        "recist": "",
        "dicom_dir": "p3",
        "exclusion": "metastasis_outside_abdominal_cavity",
    },
]


def _write(tmp_path, rows, columns=None):
    df = pd.DataFrame(rows, columns=columns)
    path = tmp_path / "manifest.csv"
    df.to_csv(path, index=False)
    return path


def test_valid_manifest_reads_as_strings(tmp_path):
    df = read_manifest(_write(tmp_path, GOOD))
    assert list(df["patient_id"]) == ["P001", "P002", "P003"]
    assert df.loc[2, "split"] == ""


def test_missing_required_column_is_named(tmp_path):
    path = _write(tmp_path, [{k: v for k, v in GOOD[0].items() if k != "recist"}])
    with pytest.raises(ManifestError, match=r"missing required column\(s\) \['recist'\]"):
        read_manifest(path)


def test_duplicate_ids_and_unknown_codes_name_row_and_column(tmp_path):
    rows = [dict(GOOD[0]), dict(GOOD[0], split="tset"), dict(GOOD[1], recist="XX", response="poor")]
    with pytest.raises(ManifestError) as err:
        read_manifest(_write(tmp_path, rows))
    msg = str(err.value)
    assert "row 3, column 'patient_id': duplicate patient_id 'P001' (first at row 2)" in msg
    assert "row 3, column 'split': unknown code 'tset'" in msg
    assert "row 4, column 'recist': unknown code 'XX'" in msg


def test_response_must_agree_with_recist(tmp_path):
    rows = [dict(GOOD[0], response="poor", recist="CR")]
    with pytest.raises(ManifestError, match="'poor' contradicts recist 'CR'"):
        read_manifest(_write(tmp_path, rows))


def test_identifying_ids_and_escaping_paths_are_rejected():
    df = pd.DataFrame([dict(GOOD[0], patient_id="Doe, John", dicom_dir="../other")]).astype(str)
    errors = validate_manifest(df)
    assert any("not a pseudonymous ID" in e for e in errors)
    assert any("inside the manifest's folder" in e for e in errors)


def test_assigned_patient_needs_labels_and_numbers_must_parse():
    df = pd.DataFrame([dict(GOOD[0], response="", recist="", z_from_mm="abc", z_to_mm="")]).astype(str)
    errors = validate_manifest(df)
    assert any("column 'response': empty" in e for e in errors)
    assert any("'abc' is not a number" in e for e in errors)
    assert any("given together" in e for e in errors)


def test_unknown_column_listed_with_valid_ones():
    df = pd.DataFrame([dict(GOOD[0], favourite_colour="blue")]).astype(str)
    errors = validate_manifest(df)
    assert any("unknown column(s) ['favourite_colour']" in e for e in errors)


def test_schema_constants_and_vocabulary():
    assert set(REQUIRED) <= set(COLUMN_NAMES)
    assert [response_from_recist(c) for c in ("CR", "PR", "SD", "PD")] == ["good", "good", "poor", "poor"]
    assert label_of("poor") == 1 and label_of("good") == 0
    with pytest.raises(ValueError, match="expected one of"):
        label_of("PR")  # the paper's abbreviation for poor response is not accepted in code


def test_example_manifest_in_data_manifest_is_valid():
    example = REPO / "data_manifest" / "example_manifest.csv"
    df = read_manifest(example)
    assert len(df) >= 3


def _manifest_text(sep: str = ",") -> str:
    frame = pd.DataFrame(GOOD, columns=list(REQUIRED) + ["exclusion"]).fillna("")
    return frame.to_csv(index=False, sep=sep)


def _xlsx(path) -> None:
    """A minimal .xlsx container (a zip with the workbook parts' names), as a spreadsheet program saves it."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")


@pytest.mark.parametrize(("name", "write", "seen"), [
    ("manifest.csv", lambda p: p.write_text(_manifest_text(";")), "semicolon-separated"),
    ("manifest.tsv", lambda p: p.write_text(_manifest_text("\t")), "tab-separated"),
    ("manifest.xlsx", _xlsx, "an Excel workbook"),
    ("manifest.xls", lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)), "old Excel workbook"),
    ("manifest.csv", lambda p: p.write_bytes(_manifest_text().encode("utf-16")), "UTF-16"),
    ("manifest.csv", lambda p: p.write_bytes(_manifest_text().encode("utf-16-le")), "UTF-16"),
    ("manifest.csv", lambda p: p.write_bytes(_manifest_text().replace("P001", "Pé01").encode("latin-1")),
     "not UTF-8"),
    ("manifest.csv", lambda p: p.write_text(""), "empty"),
])
def test_a_file_that_is_not_comma_separated_csv_is_named_as_such(tmp_path, name, write, seen):
    path = tmp_path / name
    write(path)
    with pytest.raises(ManifestError) as exc:
        read_manifest(path)
    msg = str(exc.value)
    assert msg.startswith(f"not a CSV file: {path} (") and seen in msg, msg
    assert "save it as comma-separated CSV" in msg and "missing required column" not in msg


def test_comma_csv_with_semicolons_in_values_or_a_utf8_bom_is_still_csv(tmp_path):
    rows = [dict(GOOD[0], exclusion=""), dict(GOOD[2], exclusion="note; with; semicolons")]
    path = _write(tmp_path, rows)
    assert list(read_manifest(path)["exclusion"]) == ["", "note; with; semicolons"]
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert list(read_manifest(path).columns[:2]) == ["patient_id", "split"]


def test_manifest_readme_says_dicom_dir_must_be_inside_the_manifest_folder_and_why():
    row = next(line for line in (REPO / "data_manifest" / "README.md").read_text().splitlines()
               if line.startswith("| `dicom_dir` |"))
    assert "inside the manifest's folder" in row and "Why:" in row
    errors = validate_manifest(pd.DataFrame([dict(GOOD[0], dicom_dir="../elsewhere")]).astype(str))
    assert any("must be a path inside the manifest's folder" in e for e in errors)


# ---------------------------------------------------------------- site codes (multi-centre cohorts)


def test_site_codes_are_read_and_an_unassigned_row_may_lack_one(tmp_path):
    rows = [dict(GOOD[0], site="A"), dict(GOOD[1], site="site-2_b"), dict(GOOD[2], site="")]
    df = read_manifest(_write(tmp_path, rows))
    assert list(df["site"]) == ["A", "site-2_b", ""]
    assert COLUMN_NAMES.index("site") > COLUMN_NAMES.index("mask_path")  # an imaging column, before the clinical ones
    assert COLUMN_NAMES.index("site") < COLUMN_NAMES.index("age")


def test_without_a_site_column_every_row_reads_back_as_one_site(tmp_path):
    path = _write(tmp_path, GOOD)
    assert "site" not in pd.read_csv(path).columns
    df = read_manifest(path)
    assert list(df["site"]) == ["", "", ""]
    assert list(df.columns[:2]) == ["patient_id", "split"] and df.columns[-1] == "site"


def test_a_patient_of_a_split_without_a_site_code_is_named_by_row(tmp_path):
    rows = [dict(GOOD[0], site="A"), dict(GOOD[1], site=""), dict(GOOD[2], site="")]
    with pytest.raises(ManifestError) as err:
        read_manifest(_write(tmp_path, rows))
    msg = str(err.value)
    assert "1 problem(s)" in msg  # row 4 (no split) may lack a code
    assert "row 3, column 'site': empty, but the patient is in split 'test'" in msg


@pytest.mark.parametrize("code", ["St Mary's Hospital", "A/B", "Zürich", "x" * 33, "A.1"])
def test_a_site_code_that_is_not_a_pseudonym_is_refused(tmp_path, code):
    rows = [dict(GOOD[0], site="A"), dict(GOOD[1], site=code)]
    with pytest.raises(ManifestError) as err:
        read_manifest(_write(tmp_path, rows))
    msg = str(err.value)
    assert f"row 3, column 'site': {code!r} is not a pseudonymous site code" in msg
    assert "1-32 letters, digits, '-' or '_'" in msg


def test_manifest_readme_documents_the_site_column_and_multi_centre_cohorts():
    text = (REPO / "data_manifest" / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `site` |"))
    assert "pseudonymous" in row and "never a hospital" in row
    assert "## Multi-centre cohorts" in text and "leave-one-site-out" in text
