"""One figure style for the study, and saving figures into a run."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from pdstudy.core.io import write_with
from pdstudy.core.rundir import RunDir

#: Colours of the response groups in every figure.
RESPONSE_COLOURS = {"good": "#1b9e77", "poor": "#d95f02"}


def set_style() -> None:
    """The package's single figure style (seaborn whitegrid, readable font sizes)."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titleweight": "bold"})


def save_figure(fig: plt.Figure, run: RunDir, name: str) -> tuple[Path, Path]:
    """Save ``figures/<name>.png`` and ``.pdf`` atomically."""
    png = write_with(run.figures / f"{name}.png", lambda p: fig.savefig(p, format="png"))
    pdf = write_with(run.figures / f"{name}.pdf", lambda p: fig.savefig(p, format="pdf"))
    return png, pdf
