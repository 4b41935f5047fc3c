"""Numbers from prediction files: Tables 2-4, the iteration curve, cross-validation summaries, readers and
localisation scores. No torch, no matplotlib; what each table computes is described in ``docs/statistics.md``.

Every table function returns a numeric :class:`pandas.DataFrame` with ``attrs["table"]`` (its kind) and
``attrs["notes"]`` (footer lines); :func:`pdstudy.report.write_evaluation_table` writes it.
"""

from pdstudy.evaluate._curves import iteration_curve
from pdstudy.evaluate._cv import cv_summary
from pdstudy.evaluate._notes import (
    MIN_CLASS_PATIENTS,
    SMALL_MARK,
    SMALL_SPLIT_EFFECT,
    ci_note,
    class_counts,
    counts_note,
    small_sample_notes,
    small_splits,
    top_k_note,
    training_note,
)
from pdstudy.evaluate._scores import (
    HOLM_FAMILY_SIZE,
    METRICS,
    PD_B7_B3_ALTERNATIVE,
    PD_B7_B3_PAPER_ROW,
    PD_B7_B3_READING,
    PD_B7_B3_READING_NOTE,
    POLICIES,
    POLICY_LABELS,
    choose_threshold,
    default_baseline,
    final_stage,
    has_both_classes,
    method_scores,
    paper_method_ids,
    patients_of_split,
)
from pdstudy.evaluate._table2 import ANALYSIS_LABELS, table2
from pdstudy.evaluate._table3 import table3
from pdstudy.evaluate._table4 import DEFAULT_ABLATION_METHODS, table4
from pdstudy.evaluate.clinicians import (
    stated_operating_points,
    table3_rows,
)
from pdstudy.evaluate.localisation import (
    best_slice,
    estimate_body_masks,
    explained_target,
    localisation_scores,
    localisation_summary,
    select_examples,
    to_grid,
)
from pdstudy.evaluate.localisation_table import (
    LEVELS,
    LOCALISATION_COLUMNS,
    LOCALISATION_GROUPS,
    TumourSlices,
    localisation_table,
    tumour_slices,
)
from pdstudy.evaluate.readers import (
    DEFAULT_OPERATING_POINTS,
    READER_COLUMNS,
    SIMULATED_SUFFIX,
    OperatingPoint,
    is_simulated,
    rate_metrics,
    read_readers,
    reader_metrics,
    simulate_readers,
)
from pdstudy.evaluate.selection import (
    FOLDS,
    VALIDATION_CHOICE_RULE,
    choose_on_validation,
    preferred_policy,
    select_predictions,
)

__all__ = [
    "ANALYSIS_LABELS",
    "DEFAULT_ABLATION_METHODS",
    "DEFAULT_OPERATING_POINTS",
    "FOLDS",
    "HOLM_FAMILY_SIZE",
    "LEVELS",
    "LOCALISATION_COLUMNS",
    "LOCALISATION_GROUPS",
    "METRICS",
    "MIN_CLASS_PATIENTS",
    "OperatingPoint",
    "PD_B7_B3_ALTERNATIVE",
    "PD_B7_B3_PAPER_ROW",
    "PD_B7_B3_READING",
    "PD_B7_B3_READING_NOTE",
    "POLICIES",
    "POLICY_LABELS",
    "READER_COLUMNS",
    "SIMULATED_SUFFIX",
    "SMALL_MARK",
    "SMALL_SPLIT_EFFECT",
    "TumourSlices",
    "VALIDATION_CHOICE_RULE",
    "best_slice",
    "choose_on_validation",
    "choose_threshold",
    "ci_note",
    "class_counts",
    "counts_note",
    "cv_summary",
    "default_baseline",
    "estimate_body_masks",
    "explained_target",
    "final_stage",
    "has_both_classes",
    "is_simulated",
    "iteration_curve",
    "localisation_scores",
    "localisation_summary",
    "localisation_table",
    "method_scores",
    "paper_method_ids",
    "patients_of_split",
    "preferred_policy",
    "rate_metrics",
    "read_readers",
    "reader_metrics",
    "select_examples",
    "select_predictions",
    "simulate_readers",
    "small_sample_notes",
    "small_splits",
    "stated_operating_points",
    "table2",
    "table3",
    "table3_rows",
    "table4",
    "to_grid",
    "top_k_note",
    "training_note",
    "tumour_slices",
]
