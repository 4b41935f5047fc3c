"""`pdstudy bench --clinical` in smoke mode returns every figure; its memory sampler sums a process tree.

Speed is never asserted here: the figures depend on the machine.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest

from pdstudy.data.synth import cohort_counts
from pdstudy.study.bench_clinical import (
    CLINICAL_GOALS,
    CLINICAL_SMOKE,
    PeakMemory,
    extrapolate_export,
    format_clinical_table,
    naive_export,
    run_clinical_bench,
    screened_for,
    tree_rss,
)

MIB = 1 << 20
#: A child that holds 150 MiB and starts a grandchild holding 150 MiB more, both for a second.
_TREE = f"""
import subprocess, sys, time
held = b"\\x01" * (150 * {MIB})
grandchild = subprocess.Popen([sys.executable, "-c",
    "import time; held = b'\\\\x01' * (150 * {MIB}); print('ready', flush=True); time.sleep(1.5)"],
    stdout=subprocess.PIPE, text=True)
grandchild.stdout.readline()
print("ready", flush=True)
time.sleep(1.0)
grandchild.wait()
"""


@pytest.mark.parametrize("backend", ["auto", "proc"])
def test_peak_memory_sums_the_process_tree(backend):
    if backend == "proc" and not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux only")
    proc = subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True)
    sampler = PeakMemory(proc.pid, backend=backend).start()
    assert proc.stdout.readline().strip() == "ready"  # both hold their memory now
    now = tree_rss(proc.pid, backend=backend)
    proc.wait(timeout=60)
    peak = sampler.stop()
    # Each process alone holds ~150 MiB (plus the interpreter): only their sum reaches 300 MiB.
    assert now >= 300 * MIB and peak["peak_bytes"] >= 300 * MIB, (now, peak)
    assert peak["samples"] >= 10 and peak["max_gap_s"] <= 0.05 * 4  # a loaded test machine may stall a sample
    assert tree_rss(proc.pid, backend=backend) == 0  # gone (reaped)


def test_peak_memory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="interval_s"):
        PeakMemory(1, interval_s=0.2)
    with pytest.raises(ValueError, match="backend"):
        tree_rss(1, backend="ps")


def test_extrapolation_says_it_is_one():
    x = extrapolate_export(2.0, 1.5, measured=(2, 4, 8))
    assert x["patients"] == 164 and x["seconds"] == pytest.approx(1.5 + 2.0 * 164)
    assert "extrapolated" in x["note"] and "2, 4, 8" in x["note"]
    with pytest.raises(ValueError, match="patients"):
        extrapolate_export(1.0, 0.0, patients=0)


@pytest.fixture(scope="module")
def smoke_section(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench-clinical")
    t0 = time.perf_counter()
    section = run_clinical_bench(smoke=True, workdir=work, log=lambda _: None)
    return section, time.perf_counter() - t0, work


def test_smoke_section_returns_every_figure(smoke_section):
    section, _, work = smoke_section
    assert section["smoke"] is True
    for key, (op, goal) in CLINICAL_GOALS.items():
        entry = section[key]
        assert {"value", "goal", "goal_op", "pass"} <= set(entry), key
        assert (entry["goal_op"], entry["goal"], entry["pass"]) == (op, goal, None), key  # smoke: no verdict
        assert isinstance(entry["value"], float), key
    export = section["export_speedup"]
    assert export["prepare_slices_per_s"] > 0 and export["naive_slices_per_s"] > 0 and export["slices"] > 0
    assert section["preprocess_speedup"]["reference_slices_per_s"] > 0
    assert section["peak_memory_gib"]["value"] > 0 and section["peak_memory_gib"]["gaps_within_limit"] in (True, False)
    counts = [str(n) for n in CLINICAL_SMOKE.patients]
    assert set(counts) <= set(section["scaling"]) and isinstance(section["seconds_per_patient"], float)
    assert section["extrapolated"]["patients"] == 164 and "extrapolated" in section["extrapolated"]["note"]
    assert section["cohort"]["size"] == CLINICAL_SMOKE.size and len(section["cohort"]["patients"]) == 2
    assert "export_speedup" in format_clinical_table(section)
    assert not list(work.iterdir())  # the temporary cohort is removed


def test_naive_script_keeps_what_prepare_keeps(tmp_path):
    """On a cohort of 'explicit' phase style, the naive script and prepare keep the same slices."""
    from pdstudy.data.preprocess import PrepareConfig, prepare
    from pdstudy.study.bench_clinical import clinical_cohort

    cohort = clinical_cohort(tmp_path / "cohort", CLINICAL_SMOKE, log=lambda _: None)
    manifest = cohort.manifests[2]
    kept = naive_export(manifest, size=32)
    prepared = prepare(manifest, tmp_path / "cache", config=PrepareConfig(image_size=32, fov_mm=360.0), workers=1,
                       show_progress=False)
    ours = {pid: [round(z, 3) for z in g["z_mm"]] for pid, g in prepared.index.groupby("patient_id", sort=False)}
    assert {pid: [round(z, 3) for z in zs] for pid, zs in kept.items()} == ours and len(ours) == 2
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert frame["patient_id"].tolist() == cohort.patients[:2] and (frame["exclusion"] == "").all()
    # One cohort, every measured patient a three-phase export whose descriptions name each phase.
    assert (cohort.screened, cohort.seed) == (screened_for(2), CLINICAL_SMOKE.seed)
    assert cohort.series_per_patient == [3, 3]
    series = pd.read_csv(cohort.root / "series.csv", dtype=str, keep_default_na=False)
    own = series[series["patient_id"].isin(cohort.patients)]
    assert sorted(own["phase"]) == sorted(["arterial", "portal_venous", "non_contrast"] * 2)
    assert own["series_description"].str.contains(r"portal|\bpvp?\b", case=False).sum() == 2
    assert (own["series_description"].str.contains(r"art", case=False) == (own["phase"] == "arterial")).all()


def test_screened_for_is_the_fewest_screened_patients():
    for included in range(1, 40):
        n = screened_for(included)
        assert cohort_counts(n)["eligible"] >= included
        assert n == 4 or cohort_counts(n - 1)["eligible"] < included
    assert screened_for(8) == 9  # one patient excluded for metastasis
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="included"):
            screened_for(bad)
