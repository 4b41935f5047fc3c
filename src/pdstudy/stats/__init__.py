"""Statistics for small test sets: discrimination with uncertainty, thresholds, calibration, tests.

Pure functions on arrays (NumPy, SciPy, scikit-learn, pandas only; importing this package never
imports torch). Labels are 0/1 with **1 = poor response** (:data:`pdstudy.core.vocab.POSITIVE_CLASS`);
scores are larger for more likely poor response. Inputs are validated up front and invalid ones
raise ``ValueError`` saying what was expected.

Submodules
----------
discrimination
    :func:`roc_auc`, :func:`delong_auc_variance`, :func:`delong_auc_ci` (logit or Wald scale,
    :data:`AUC_CI_METHODS`, :func:`check_auc_ci`), :func:`delong_test`, :func:`bootstrap_auc_ci`,
    :func:`delong_auc_difference_unpaired` (two independent samples).
thresholds
    :func:`binary_metrics`, :func:`youden_threshold`, :func:`apply_threshold_policy`.
calibration
    :func:`recalibrate`, :func:`brier_score`, :func:`calibration_curve`, :func:`net_benefit`,
    :func:`calibration_in_the_large`, :func:`calibration_slope` (:class:`CalibrationEstimate`).
intervals
    :func:`wilson_ci`.
comparisons
    :func:`mcnemar_exact`, :func:`holm`, :func:`fisher_exact_rxc`, :func:`mann_whitney`.
power
    :func:`auc_variance_hanley_mcneil`, :func:`auc_variance_obuchowski`, :func:`auc_power_vs_chance`,
    :func:`auc_sample_size_vs_chance`, :func:`auc_power_paired`, :func:`auc_sample_size_paired`,
    :func:`power_table`.
"""

from __future__ import annotations

from pdstudy.stats.calibration import (
    CalibrationEstimate,
    brier_score,
    calibration_curve,
    calibration_in_the_large,
    calibration_slope,
    net_benefit,
    recalibrate,
)
from pdstudy.stats.comparisons import fisher_exact_rxc, holm, mann_whitney, mcnemar_exact
from pdstudy.stats.discrimination import (
    AUC_CI_METHODS,
    AUCInterval,
    bootstrap_auc_ci,
    check_auc_ci,
    delong_auc_ci,
    delong_auc_difference_unpaired,
    delong_auc_variance,
    delong_test,
    roc_auc,
)
from pdstudy.stats.intervals import wilson_ci
from pdstudy.stats.power import (
    AUCSampleSize,
    auc_power_paired,
    auc_power_vs_chance,
    auc_sample_size_paired,
    auc_sample_size_vs_chance,
    auc_variance_hanley_mcneil,
    auc_variance_obuchowski,
    power_table,
)
from pdstudy.stats.thresholds import THRESHOLD_POLICIES, apply_threshold_policy, binary_metrics, youden_threshold

__all__ = [
    "AUC_CI_METHODS",
    "THRESHOLD_POLICIES",
    "AUCInterval",
    "AUCSampleSize",
    "CalibrationEstimate",
    "apply_threshold_policy",
    "auc_power_paired",
    "auc_power_vs_chance",
    "auc_sample_size_paired",
    "auc_sample_size_vs_chance",
    "auc_variance_hanley_mcneil",
    "auc_variance_obuchowski",
    "binary_metrics",
    "bootstrap_auc_ci",
    "brier_score",
    "calibration_curve",
    "calibration_in_the_large",
    "calibration_slope",
    "check_auc_ci",
    "delong_auc_ci",
    "delong_auc_difference_unpaired",
    "delong_auc_variance",
    "delong_test",
    "fisher_exact_rxc",
    "holm",
    "mann_whitney",
    "mcnemar_exact",
    "net_benefit",
    "power_table",
    "recalibrate",
    "roc_auc",
    "wilson_ci",
    "youden_threshold",
]
