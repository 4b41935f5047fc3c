"""No output identifies a patient other than by the manifest's pseudonymous ID.

A synthetic cohort with fake identities in its headers (PatientName, PatientID, birth date,
institution, accession number) and in its folder names (the header PatientID) is prepared
through the CLI, trained on for one tiny epoch and run through notebook 01 with papermill;
then every file the run wrote (run directory, cache, stages, captured console output) is
searched, bytes and all, including the compressed streams of PDFs, PNG text chunks, zip
members (checkpoints, .npz) and the images embedded in executed notebooks, for every identity
value and for the cohort's absolute path. Text rendered into figure pixels is not searched.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import pydicom
import pytest

SITE = ("hospital_site", "export_2024")  # the cohort lives in <tmp>/hospital_site/export_2024

#: Leaks found in files this test's authors do not own; each must disappear (then drop it here).
KNOWN_LEAKS: set[tuple[str, str]] = set()


# ---------------------------------------------------------------- identities and the byte scanner


class LeakFound(AssertionError):
    """An identity value found in an output (lets the known-leak xfail fail for that reason only)."""


def identities(cohort: Path) -> dict[str, str]:
    """Every identity value in the cohort's headers and folder names, labelled for messages."""
    found: dict[str, str] = {
        str(cohort): "cohort folder path",
        str(cohort.parent): "cohort parent folder path",
    }
    for path in sorted(cohort.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        name = str(ds.PatientName)
        birth = str(ds.PatientBirthDate)
        found[name] = found[name.replace("^", " ")] = "PatientName"
        found[str(ds.PatientID)] = "PatientID"
        found[birth] = found[f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"] = "PatientBirthDate"
        found[str(ds.InstitutionName)] = "InstitutionName"
        found[str(ds.AccessionNumber)] = "AccessionNumber"
    ids = {v for v, label in found.items() if label == "PatientID"}
    folders = {p.name for p in cohort.iterdir() if p.is_dir() and p.name.startswith("HOSP")}
    # The folders are named by the header PatientID, so searching the IDs searches the folder names too.
    assert len(ids) == 20 and folders == ids
    return found


def _png_texts(data: bytes) -> list[bytes]:
    """Decompressed zTXt / iTXt chunks of a PNG (tEXt is plain and searched as is)."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        with contextlib.suppress(zlib.error, ValueError):
            if kind == b"zTXt":
                out.append(zlib.decompress(body[body.index(b"\0") + 2:]))
            elif kind == b"iTXt" and body[body.index(b"\0") + 1] == 1:
                out.append(zlib.decompress(body.split(b"\0", 3)[3].split(b"\0", 1)[1]))
        pos += 12 + length
    return out


def _pdf_streams(data: bytes) -> list[bytes]:
    """Decompressed streams of a PDF, plus the text of their kerned ``[(F) 12 (AKE)] TJ`` arrays joined up."""
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        with contextlib.suppress(zlib.error):
            stream = zlib.decompress(m.group(1))
            out.append(stream)
            for arr in re.finditer(rb"\[(.*?)\]\s*TJ", stream, re.S):
                parts = re.findall(rb"\(((?:\\.|[^\\)])*)\)", arr.group(1))
                out.append(re.sub(rb"\\(.)", rb"\1", b"".join(parts)))
    return out


def _notebook_images(data: bytes) -> list[bytes]:
    nb = json.loads(data)
    out = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            for mime, payload in output.get("data", {}).items():
                if mime.startswith("image/") and mime != "image/svg+xml":
                    out.append(base64.b64decode("".join(payload) if isinstance(payload, list) else payload))
    return out


def expand(data: bytes, name: str, depth: int = 0) -> list[bytes]:
    """``data`` and every decoded layer inside it that a byte search would otherwise miss."""
    blobs = [data]
    if depth > 3:
        return blobs
    inner: list[tuple[bytes, str]] = []
    if data.startswith(b"\x89PNG"):
        inner += [(b, "") for b in _png_texts(data)]
    elif data.startswith(b"%PDF"):
        inner += [(b, "") for b in _pdf_streams(data)]
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            inner += [(zf.read(info), info.filename) for info in zf.infolist()]
    elif name.endswith(".ipynb"):
        inner += [(b, "") for b in _notebook_images(data)]
    for blob, inner_name in inner:
        blobs += expand(blob, inner_name, depth + 1)
    return blobs


def scan(folder: Path, values: dict[str, str]) -> set[tuple[str, str]]:
    """``{(file relative to folder, identity label)}`` for every identity value found in any file."""
    hits = set()
    needles = {v.encode(): label for v, label in values.items()} | {
        v.encode("utf-16-le"): label for v, label in values.items()}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        for blob in expand(path.read_bytes(), path.name):
            hits |= {(rel, label) for needle, label in needles.items() if needle in blob}
    return hits


def test_scanner_finds_what_it_must(tmp_path):
    """The scanner itself: plain, PDF-compressed, PNG zTXt, zip member and notebook-embedded values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("FAKE^SECRET")
    fig.savefig(tmp_path / "f.pdf", metadata={"Author": "x"})
    fig.savefig(tmp_path / "f.png", metadata={"Comment": "zz"})
    plt.close(fig)
    png = (tmp_path / "f.png").read_bytes()
    text = zlib.compress(b"HOSP777")
    chunk = b"zTXt" + b"k\0\0" + text
    png = png[:33] + struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]
    (tmp_path / "z.png").write_bytes(png)
    with zipfile.ZipFile(tmp_path / "a.npz", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x", "ACC123")
    nb = {"cells": [{"outputs": [{"data": {"image/png": base64.b64encode(png).decode()}}]}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    hits = scan(tmp_path, {"FAKE^SECRET": "name", "HOSP777": "id", "ACC123": "acc"})
    assert hits == {("f.pdf", "name"), ("z.png", "id"), ("a.npz", "acc"), ("n.ipynb", "id")}


# ---------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Synthetic cohort -> CLI prepare -> one tiny training run -> notebook 01; returns the folders."""
    from pdstudy.cli import main
    from pdstudy.data.synth import generate_cohort

    base = tmp_path_factory.mktemp("privacy")
    cohort = base.joinpath(*SITE)
    manifest = generate_cohort(cohort, patients=20, slices=12, size=64, show_progress=False)
    out = base / "out"
    data = out / "data"
    console = io.StringIO()
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        rc = main(["prepare", "--manifest", str(manifest), "--cache", str(data / "cache"), "--size", "32",
                   "--fov-mm", "384", "--workers", "1", "--quiet"])
    assert rc == 0, console.getvalue()
    (out / "console.txt").write_text(console.getvalue())
    params = _study_params(out, manifest)
    _train(params, out)
    _notebook01(params, out)
    return dict(cohort=cohort, manifest=manifest, out=out)


def _study_params(out: Path, manifest: Path) -> dict:
    from importlib import resources

    import yaml

    from pdstudy.core.params import STUDY_PARAMETERS

    quick = yaml.safe_load(resources.files("pdstudy.core").joinpath("profiles", "quick.yaml").read_text())
    p = {k: quick[k] for k in STUDY_PARAMETERS if k in quick}
    p.update(run_dir=str(out / "run"), data_dir=str(out / "data"), manifest=str(manifest), image_size=32,
             fov_mm=384.0, crop_size=28, workers=1, epochs=1, slices_per_patient=2, batch_size=16)
    return p


def _train(params: dict, out: Path) -> None:
    from pdstudy.study.protocol import Study, methods

    console = io.StringIO()
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        study = Study.from_parameters(params, progress=False)
        study.run(methods("baseline", ["efficientnet_b0"]), section="privacy")
    (out / "train_console.txt").write_text(console.getvalue())


def _notebook01(params: dict, out: Path) -> None:
    from pdstudy.study.notebooks import execute_notebook, notebooks_dir

    folder = notebooks_dir()
    names = ("run_dir", "data_dir", "manifest", "image_size", "fov_mm", "workers")
    executed = out / "run" / "notebooks" / "01_preprocessing.ipynb"
    # The runner's executor: papermill, then the executed copy is scrubbed of site paths.
    execute_notebook(folder / "01_preprocessing.ipynb", executed, {k: params[k] for k in names})


def test_the_run_wrote_what_a_run_writes(run):
    out = run["out"]
    for rel in ("console.txt", "data/cache", "run/provenance.json", "run/tables/qc.csv", "run/tables/table1.md",
                "run/figures/patient_flow.pdf", "run/figures/example_slices.png",
                "run/notebooks/01_preprocessing.ipynb"):
        assert (out / rel).exists(), rel
    assert list(out.glob("run/predictions/*.csv")) and list(out.glob("data/stages/*/final.pt"))
    (cache,) = (out / "data" / "cache").glob("*/meta.json")
    for name in ("qc.csv", "index.csv", "images.npy"):
        assert (cache.parent / name).exists()


@pytest.fixture(scope="module")
def hits(run):
    return scan(run["out"], identities(run["cohort"]))


def test_scanner_sees_the_identities_in_the_cohort_itself(run, tmp_path):
    """Positive control on real files: the manifest names folders by header PatientID, the DICOM holds all."""
    import shutil

    shutil.copy(run["manifest"], tmp_path / "manifest.csv")
    shutil.copy(next(run["cohort"].rglob("*.dcm")), tmp_path / "one.dcm")
    (tmp_path / "paths.txt").write_text(str(run["manifest"]))
    labels = {label for _, label in scan(tmp_path, identities(run["cohort"]))}
    assert labels == {"PatientName", "PatientID", "PatientBirthDate",
                      "InstitutionName", "AccessionNumber", "cohort folder path", "cohort parent folder path"}


def test_no_output_carries_patient_identity(hits):
    assert not hits - KNOWN_LEAKS, f"identity found in outputs: {sorted(hits - KNOWN_LEAKS)}"


def test_qc_names_patients_only_by_pseudonymous_id(run):
    import pandas as pd

    (qc_path,) = (run["out"] / "data" / "cache").glob("*/qc.csv")
    qc = pd.read_csv(qc_path, dtype=str, keep_default_na=False)
    manifest = pd.read_csv(run["manifest"], dtype=str, keep_default_na=False)
    assert list(qc["patient_id"]) == list(manifest["patient_id"])
    assert qc["patient_id"].str.fullmatch(r"SYN\d{4}").all()


def test_missing_or_corrupt_patient_messages_have_no_absolute_path(tmp_path):
    """Reasons for a missing folder, an undecodable file and an unexpected error stay below dicom_dir."""
    import numpy as np
    import pandas as pd
    from dicom_factory import write_series

    from pdstudy.data.preprocess import PrepareConfig, prepare

    site = tmp_path.joinpath(*SITE)
    vol = np.random.default_rng(0).integers(1000, 1200, size=(3, 16, 16)).astype(np.uint16)
    paths = write_series(site / "HOSP123456" / "ST1", vol, description="PVP")
    paths[1].write_bytes(paths[1].read_bytes()[:-200])
    write_series(site / "HOSP654321", vol, description="PVP")
    (site / "m").mkdir()
    (site / "m" / "bad.npz").write_bytes(b"garbage")
    rows = [dict(patient_id="P1", split="train", response="good", recist="CR", dicom_dir="HOSP123456"),
            dict(patient_id="P2", split="train", response="good", recist="CR", dicom_dir="HOSP999999"),
            dict(patient_id="P3", split="test", response="poor", recist="PD", dicom_dir="HOSP654321",
                 mask_path="m/bad.npz")]
    pd.DataFrame(rows).to_csv(site / "manifest.csv", index=False)
    prepared = prepare(site / "manifest.csv", tmp_path / "cache", config=PrepareConfig(image_size=16, fov_mm=64.0),
                       workers=1, show_progress=False)
    reasons = prepared.qc.set_index("patient_id")["reason"]
    assert reasons["P1"].startswith("cannot decode pixel data of ST1/")
    assert reasons["P2"] == "DICOM folder not found (dicom_dir in the manifest)"
    assert reasons["P3"].startswith("unexpected error")
    for reason in reasons:
        assert str(tmp_path) not in reason and "hospital_site" not in reason and "HOSP" not in reason, reason
