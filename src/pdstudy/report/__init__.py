"""What a person reads: tables (CSV + Markdown), one figure style, every figure, and the study report.
No torch: anything that needs a model happens in ``pdstudy.learn`` or ``pdstudy.study``."""

from pdstudy.report.cam import (
    example_title,
    plot_overlays,
)
from pdstudy.report.document import (
    PATH_PARAMETERS,
    READERS_NOTES,
    REPORT_NAME,
    SYNTHETIC_STATEMENT,
    THRESHOLD_NOTE,
    check_report,
    readers_status,
    report_links,
    write_report,
)
from pdstudy.report.figures import (
    plot_calibration,
    plot_confusion_by_recist,
    plot_decision_curves,
    plot_iteration_curve,
    plot_roc,
)
from pdstudy.report.style import (
    RESPONSE_COLOURS,
    save_figure,
    set_style,
)
from pdstudy.report.tables import (
    markdown_table,
    write_evaluation_table,
    write_table,
)

__all__ = [
    "PATH_PARAMETERS",
    "READERS_NOTES",
    "REPORT_NAME",
    "RESPONSE_COLOURS",
    "SYNTHETIC_STATEMENT",
    "THRESHOLD_NOTE",
    "check_report",
    "example_title",
    "markdown_table",
    "plot_calibration",
    "plot_confusion_by_recist",
    "plot_decision_curves",
    "plot_iteration_curve",
    "plot_overlays",
    "plot_roc",
    "readers_status",
    "report_links",
    "save_figure",
    "set_style",
    "write_evaluation_table",
    "write_report",
    "write_table",
]
