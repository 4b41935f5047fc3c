"""Tests for pdstudy.report.fusion: the clinical-fusion table's display version, its files, and the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy.special import expit  # noqa: E402

from pdstudy.core.rundir import RunDir  # noqa: E402
from pdstudy.data.splits import carve_validation  # noqa: E402
from pdstudy.data.synth import plan_cohort  # noqa: E402
from pdstudy.evaluate import FUSION_PD_MODEL, clinical_fusion, clinical_fusion_table  # noqa: E402
from pdstudy.report import (  # noqa: E402
    FUSION_FIGURE,
    FUSION_TABLE,
    format_fusion_table,
    plot_clinical_fusion,
    plot_fusion_decision_curves,
    plot_fusion_roc,
    save_figure,
    write_fusion_table,
)

BASELINE = "baseline:efficientnet_b3"


@pytest.fixture(scope="module")
def result():
    plan = plan_cohort()
    inc = plan.loc[plan["split"] != "", ["patient_id", "split", "response", "recist"]].reset_index(drop=True)
    patients = carve_validation(inc, 0.2, seed=0)
    y = (patients["response"] == "poor").astype(int).to_numpy()
    cts = {mid: patients[["patient_id", "split"]].assign(
        y=y, score=expit(sep * y + np.random.default_rng(k).normal(size=len(y)) - sep / 2))
        for k, (mid, sep) in enumerate([(FUSION_PD_MODEL, 1.5), (BASELINE, 1.0)])}
    return clinical_fusion(plan, patients, cts, cs=(0.1, 1.0))


def test_display_table_formats_every_row(result):
    table = clinical_fusion_table(result)
    disp = format_fusion_table(table)
    assert len(disp) == 5 and disp.attrs["notes"] == table.attrs["notes"]
    assert disp["Model"].tolist()[0] == "Clinical model" and disp["Model"].str.startswith("Fusion").sum() == 2
    assert disp["Patients train / fit / test (poor)"].iloc[0].endswith("/ 28 (14)")
    assert "†" in disp["Patients train / fit / test (poor)"].iloc[0]  # 8 poor validation patients
    auc = table["test_auc"].iloc[1]
    assert disp["Test AUC [95% CI]"].iloc[1].startswith(f"{auc:.2f} [")
    assert disp["p vs clinical (DeLong)"].iloc[0] == "" and disp["p vs CT (DeLong)"].iloc[2] != ""
    acc = table["youden_val_acc"].iloc[2]
    assert disp["ACC % (Youden on val)"].iloc[2].startswith(f"{100 * acc:.1f} [")
    assert "ACC % (Youden on test, optimistic)" in disp.columns
    with pytest.raises(ValueError, match="clinical_fusion"):
        format_fusion_table(pd.DataFrame(table.to_dict("list")))  # no attrs: not the evaluate table


def test_write_fusion_table_writes_display_and_values(result, tmp_path):
    run = RunDir(tmp_path / "run").create()
    table = clinical_fusion_table(result)
    paths = write_fusion_table(table, run, extra_notes=["CT models: chosen as described."])
    assert paths["display"][0] == run.tables / f"{FUSION_TABLE}.csv"
    md = (run.tables / f"{FUSION_TABLE}.md").read_text()
    assert md.startswith("# Clinical model, CT model and their fusion") and "CT models: chosen as described." in md
    values = pd.read_csv(run.tables / f"{FUSION_TABLE}_values.csv")
    assert values["test_auc"].tolist() == pytest.approx(table["test_auc"].tolist())


def test_plots_take_an_axes_and_the_figure_saves(result, tmp_path):
    fig, (a, b) = plt.subplots(1, 2)
    assert plot_fusion_roc(result, BASELINE, ax=a) is a
    assert [line.get_label().split(":")[0] for line in a.get_lines()][:3] == ["Clinical model", "CT",
                                                                              "Fusion (CT + clinical)"]
    assert plot_fusion_decision_curves(result, ax=b, prevalence=0.3) is b
    assert len(b.get_lines()) == 5 and "30% poor" in b.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="not in the result"):
        plot_fusion_roc(result, "baseline:vgg16")
    fig = plot_clinical_fusion(result)
    assert len(fig.axes) == 4
    run = RunDir(tmp_path / "run").create()
    png, pdf = save_figure(fig, run, FUSION_FIGURE)
    assert png.stat().st_size > 10_000 and pdf.is_file()
    plt.close("all")
