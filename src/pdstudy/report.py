"""Tables and figures written into a run directory: one style, CSV + Markdown, PNG + PDF."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from pdstudy.io import write_csv, write_text, write_with
from pdstudy.runs import RunDir
from pdstudy.vocab import PAPER_LABEL_FOOTNOTE, RESPONSES, paper_label

#: Colours of the response groups in every figure.
RESPONSE_COLOURS = {"good": "#1b9e77", "poor": "#d95f02"}


def set_style() -> None:
    """The package's single figure style (seaborn whitegrid, readable font sizes)."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titleweight": "bold"})


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """Render a DataFrame as a GitHub Markdown table (no extra dependency)."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(df: pd.DataFrame, run: RunDir, name: str, *, title: str = "", notes: list[str] | None = None,
                floatfmt: str = ".3g") -> tuple[Path, Path]:
    """Write ``tables/<name>.csv`` and ``tables/<name>.md`` (title, table, notes) atomically."""
    csv_path = write_csv(run.tables / f"{name}.csv", df)
    parts = [f"# {title}\n" if title else "", markdown_table(df, floatfmt)]
    if notes:
        parts.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    md_path = write_text(run.tables / f"{name}.md", "\n".join(p for p in parts if p))
    return csv_path, md_path


def save_figure(fig: plt.Figure, run: RunDir, name: str) -> tuple[Path, Path]:
    """Save ``figures/<name>.png`` and ``.pdf`` atomically."""
    png = write_with(run.figures / f"{name}.png", lambda p: fig.savefig(p, format="png"))
    pdf = write_with(run.figures / f"{name}.pdf", lambda p: fig.savefig(p, format="pdf"))
    return png, pdf


def plot_patient_flow(flow: dict) -> plt.Figure:
    """Patient-flow diagram: screened -> exclusions by reason -> included -> splits by response."""
    set_style()
    fig, ax = plt.subplots(figsize=(8.5, 5.4))
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(1.3, 10)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.93, bottom=0.07)
    box = dict(boxstyle="round,pad=0.5", facecolor="#f2f2f2", edgecolor="#444444")
    exc_box = dict(boxstyle="round,pad=0.5", facecolor="#fde0dd", edgecolor="#a50f15")

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="#444444", lw=1.4))

    ax.text(3.0, 9.2, f"Screened patients\nn = {flow['screened']}", ha="center", va="center", fontsize=11, bbox=box)
    excluded = flow["excluded"]
    n_exc = sum(excluded.values())
    lines = [f"Excluded, n = {n_exc}"] + [f"{reason.replace('_', ' ')}: {k}" for reason, k in excluded.items()]
    ax.text(7.4, 7.4, "\n".join(lines), ha="center", va="center", fontsize=9.5, bbox=exc_box, wrap=True)
    arrow(3.0, 8.6, 3.0, 6.1)
    arrow(3.0, 7.4, 5.6, 7.4)
    ax.text(3.0, 5.6, f"Included\nn = {flow['included']}", ha="center", va="center", fontsize=11, bbox=box)
    splits = list(flow["splits"].items())
    xs = np.linspace(1.5, 8.5, max(len(splits), 1) + 2)[1:-1] if len(splits) > 2 else [1.8, 5.2][: len(splits)]
    for x, (split, c) in zip(xs, splits):
        arrow(3.0, 5.0, x, 2.9)
        label = "\n".join([f"{split.capitalize()} set, n = {c['n']}",
                           *[f"{paper_label(r)} ({r}): {c.get(r, 0)}" for r in RESPONSES]])
        ax.text(x, 2.2, label, ha="center", va="center", fontsize=10, bbox=box)
    if flow.get("unassigned"):
        ax.text(8.2, 4.3, f"Included, no split\nassigned: {flow['unassigned']}", ha="center", va="center",
                fontsize=9, bbox=box)
    ax.set_title("Patient flow", fontsize=13)
    fig.text(0.5, 0.015, PAPER_LABEL_FOOTNOTE, ha="center", va="bottom", fontsize=8, color="#555555")
    return fig


def plot_example_slices(
    images: dict[str, list[np.ndarray]], *, pixel_mm: float, window: tuple[float, float]
) -> plt.Figure:
    """Grid of windowed example slices, one row per response group.

    Parameters
    ----------
    images : dict
        ``{"good": [slice, ...], "poor": [...]}``, each slice a 2D array in [0, 1] or uint8.
    pixel_mm : float
        Physical pixel size, for the scale bar.
    window : (float, float)
        HU window shown (for the caption).
    """
    set_style()
    n_cols = max(len(v) for v in images.values())
    fig, axes = plt.subplots(len(images), n_cols, figsize=(2.3 * n_cols, 2.5 * len(images)), squeeze=False)
    for i, (resp, slices) in enumerate(images.items()):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if j >= len(slices):
                ax.set_axis_off()
                continue
            img = np.asarray(slices[j], dtype=np.float32)
            ax.imshow(img / (255.0 if img.max() > 1.0 else 1.0), cmap="gray", vmin=0, vmax=1)
            for spine in ax.spines.values():
                spine.set_edgecolor(RESPONSE_COLOURS[resp])
                spine.set_linewidth(2.5)
            if j == 0:
                ax.set_ylabel(f"{resp} response\n({paper_label(resp)})", fontsize=11, color=RESPONSE_COLOURS[resp])
            bar_px = 50.0 / pixel_mm
            h = img.shape[0]
            ax.plot([0.06 * h, 0.06 * h + bar_px], [0.93 * h] * 2, color="white", lw=2.5)
            ax.text(0.06 * h, 0.88 * h, "5 cm", color="white", fontsize=8)
    fig.suptitle(f"Example portal-venous slices, window [{window[0]:g}, {window[1]:g}] HU", fontsize=12)
    fig.tight_layout()
    return fig


def plot_training_curves(results: list, *, title: str = "Training curves") -> plt.Figure:
    """Loss and validation AUC per epoch of the final stage of each chain (one line per method and seed)."""
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    palette = sns.color_palette("tab10", n_colors=max(len(results), 1))
    for colour, r in zip(palette, results):
        hist = pd.DataFrame(r.stages[-1].meta["history"])
        seed = int(r.predictions["seed"].iloc[0])
        label = f"{r.method.label} (seed {seed})" if len({int(x.predictions['seed'].iloc[0]) for x in results}) > 1 \
            else r.method.label
        axes[0].plot(hist["epoch"] + 1, hist["loss"], color=colour, label=label, lw=1.6)
        if "val_auc" in hist:
            axes[1].plot(hist["epoch"] + 1, hist["val_auc"], color=colour, label=label, lw=1.6)
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Training loss")
    axes[1].set(xlabel="epoch", ylabel="AUC (validation patients)", title="Validation AUC", ylim=(0, 1))
    axes[1].axhline(0.5, color="grey", lw=1, ls="--")
    axes[1].legend(fontsize=8.5, loc="lower right", frameon=True)
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    return fig
