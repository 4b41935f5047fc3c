"""Tests of pdstudy.report.document.write_report on a small fake run directory."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from pdstudy.core.rundir import RunDir
from pdstudy.report.document import (
    READERS_NOTES,
    SYNTHETIC_STATEMENT,
    THRESHOLD_NOTE,
    check_report,
    readers_status,
    report_links,
    write_report,
)
from pdstudy.report.tables import write_table

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64  # content does not matter: the report only links it


def _fake_run(tmp_path, *, simulated: bool | None = True, audit: bool = True, cohort: bool = True,
              manifest_path: str | None = None) -> RunDir:
    run = RunDir(tmp_path / "myrun").create()
    write_table(pd.DataFrame({"Method": ["EfficientNet-B7", "Progressive Distill (B7>B7>B7)"],
                              "Test AUC [95% CI]": ["0.70 [0.50, 0.85]", "0.80 [0.62, 0.91]"]}),
                run, "table2", title="Table 2. Models", notes=["a note under table 2"])
    write_table(pd.DataFrame({"method_id": ["baseline:efficientnet_b7"], "test_auc": [0.7]}), run, "table2_values")
    write_table(pd.DataFrame({"Stage": [0, 1]}), run, "04_pd_training", title="training log")
    if simulated is not None:
        name = "C3 (simulated)" if simulated else "C3"
        write_table(pd.DataFrame({"row": [name, "Average (readers)", "PD (Youden on val)"],
                                  "kind": ["reader", "average", "model"], "simulated": [simulated, simulated, False]}),
                    run, "table3_values")
        write_table(pd.DataFrame({"Reader / model": [name]}), run, "table3", title="Table 3")
    for name in ("fig3_roc", "fig6_iterations", "02_training_curves"):
        (run.figures / f"{name}.png").write_bytes(PNG)
    (run.figures / "fig3_roc.pdf").write_bytes(b"%PDF-1.4")
    if audit:
        pd.DataFrame({"item": ["a", "b", "c"], "check": ["x"] * 3, "verdict": ["consistent", "inconsistent",
                                                                               "consistent"]}).to_csv(
            run.tables / "paper_audit.csv", index=False)
        (run.tables / "paper_audit.md").write_text("# Paper audit\n\n3 checks\n")
    if cohort:
        write_table(pd.DataFrame({"characteristic": ["Age"], "train": ["60"]}), run, "table1", title="Table 1")
        (run.figures / "patient_flow.png").write_bytes(PNG)
    (run.notebooks / "06_clinician_comparison.ipynb").write_text("{}")
    params = {"run_dir": str(tmp_path / "myrun"), "data_dir": str(tmp_path / "data"),
              "manifest": manifest_path or "", "seeds": [0, 1], "epochs": 12, "weights_dir": ""}
    prov = {
        "git_commit": "0123456789abcdef+dirty",
        "packages": {"torch": "2.4.0", "pdstudy": "0.1.0", "grad-cam": None},
        "device": {"cpu_count": 2, "python": "3.11.7"},
        "sections": {
            "02_baselines": {"methods": ["baseline:efficientnet_b7"], "seeds": [0, 1], "parameters": params,
                             "manifest_sha256": "ab" * 32, "written": "2025-01-01T00:00:00+00:00",
                             "wall_seconds": 12.5},
            "05_ablation": {"methods": [], "seeds": [0, 1], "parameters": {**params, "epochs": 30},
                            "manifest_sha256": "ab" * 32, "written": "2025-01-01T00:00:00+00:00"},
            "10_study_report": {"profile": "quick", "seed": 0, "written": "2025-01-01T00:00:00+00:00"},
        },
    }
    run.provenance.write_text(json.dumps(prov))
    return run


def _write(run, **kw):
    args = dict(cohort_name="built-in synthetic cohort", synthetic=True,
                tables={"Table 2. Models": "table2", "Table 3. Readers": run.tables / "table3.md"},
                figures={"Fig. 3. ROC": "fig3_roc", "Fig. 6. Iterations": "figures/fig6_iterations.png"},
                notes=["Quick profile: stand-ins."])
    args.update(kw)
    return write_report(run, **args)


def test_content_links_and_provenance(tmp_path):
    run = _fake_run(tmp_path)
    path = _write(run)
    assert path == run.root / "REPORT.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Study report")
    # cohort statement, threshold and simulated-readers notes, caller's notes
    assert SYNTHETIC_STATEMENT in text and "SYNTHETIC" in text
    assert THRESHOLD_NOTE in text and READERS_NOTES["simulated"] in text and "SIMULATED" in text
    assert "Quick profile: stand-ins." in text
    # tables embedded (their Markdown, not only a link), captions as headings, CSV links
    assert "### Table 2. Models" in text and "0.80 [0.62, 0.91]" in text and "a note under table 2" in text
    assert "[table2_values.csv](tables/table2_values.csv)" in text
    assert "# Table 2. Models\n" not in text.replace("### Table 2. Models", "")  # the file's own title is dropped
    # figures: relative PNG link, PDF when present
    assert "![Fig. 3. ROC](figures/fig3_roc.png)" in text and "(figures/fig3_roc.pdf)" in text
    assert "![Fig. 6. Iterations](figures/fig6_iterations.png)" in text
    # notebook 00 and 01 outputs
    assert "3 checks" in text and "1 inconsistent" in text and "(tables/paper_audit.md)" in text
    assert "Table 1. Baseline characteristics" in text and "(figures/patient_flow.png)" in text
    # other files of the run are linked, not lost
    assert "(tables/04_pd_training.md)" in text and "(figures/02_training_curves.png)" in text
    # provenance: commit, profile, seeds, versions, manifest checksum, notebooks, differing parameter flagged
    assert "0123456789abcdef+dirty" in text and "uncommitted changes" in text
    assert "Profile: quick" in text and "Training seeds: 0, 1" in text
    assert "| torch | 2.4.0 |" in text and "| grad-cam | not installed |" in text
    assert "ab" * 32 in text
    assert "[06_clinician_comparison.ipynb](notebooks/06_clinician_comparison.ipynb)" in text
    assert re.search(r"\| epochs \| \*\*differs between notebooks:\*\* 12 \(02_baselines\); 30 \(05_ablation\)", text)
    assert "[provenance.json](provenance.json)" in text


def test_every_link_resolves_and_no_machine_paths(tmp_path):
    run = _fake_run(tmp_path, manifest_path=str(tmp_path / "cohorts" / "site_a.csv"))
    path = _write(run, notes=[f"written from {run.root}/tables"])
    text = path.read_text(encoding="utf-8")
    links = report_links(path)
    assert len(links) >= 10
    for target in links:
        assert not target.startswith("/"), target
        assert (run.root / target.split("#")[0]).exists(), target
    assert check_report(path) == []
    assert str(tmp_path) not in text
    assert "site_a.csv (name only)" in text and "myrun (name only)" in text  # path parameters: name only
    assert "written from ./tables" in text  # the run root in a caller's note is scrubbed


def test_check_report_finds_problems(tmp_path):
    run = _fake_run(tmp_path)
    bad = run.root / "BAD.md"
    bad.write_text("![x](figures/missing.png) [y](/etc/passwd) [z](https://example.org) see /tmp/secret/file\n")
    problems = check_report(bad)
    assert "broken link figures/missing.png" in problems
    assert "absolute link /etc/passwd" in problems
    assert "machine path /tmp/secret/file" in problems
    assert not any("example.org" in p for p in problems)


def test_real_cohort_readers_and_missing_inputs(tmp_path):
    run = _fake_run(tmp_path, simulated=False, audit=False, cohort=False)
    text = _write(run, cohort_name="site_a_manifest.csv", synthetic=False,
                  tables={"Table 2. Models": "table2"}).read_text(encoding="utf-8")
    assert "**Cohort: site_a_manifest.csv**" in text and SYNTHETIC_STATEMENT not in text
    assert READERS_NOTES["real"] in text and "SIMULATED" not in text
    assert "Paper audit" not in text and "notebook 01" not in text
    assert readers_status(run) == "real"
    with pytest.raises(FileNotFoundError, match="table2_nope"):
        _write(run, tables={"missing": "table2_nope"})
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(PNG)
    with pytest.raises(ValueError, match="outside the run"):
        _write(run, figures={"outside": outside})


def test_no_table3_and_no_provenance(tmp_path):
    run = _fake_run(tmp_path, simulated=None)
    run.provenance.unlink()
    text = _write(run, tables={"Table 2. Models": "table2"}).read_text(encoding="utf-8")
    assert readers_status(run) is None and READERS_NOTES[None] in text
    assert "No `provenance.json`" in text
    assert check_report(run.root / "REPORT.md") == []


def test_report_states_the_power_of_the_headline_comparisons(tmp_path):
    """REPORT.md repeats the audit's power rows (power at the paper's test size, size needed for 80%)."""
    from pdstudy.audit import run_audit

    run = _fake_run(tmp_path)
    run_audit().to_csv(run.tables / "paper_audit.csv", index=False)
    text = _write(run).read_text()
    assert "How many patients would the headline claims need?" in text
    assert "PD B7 vs baseline B7:" in text and "PD B7 vs KD B7:" in text
    assert "80% power needs" in text


def test_report_without_power_rows_says_nothing_about_power(tmp_path):
    text = _write(_fake_run(tmp_path)).read_text()
    assert "How many patients" not in text
