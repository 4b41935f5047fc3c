"""The synthetic cohort: a procedurally generated CT cohort written as real DICOM files, the package's default input.

Planning (``_plan``), rendering (``_render``) and DICOM writing (``_write``) live in private modules; the public
names are re-exported here. See docs/synthetic_cohort.md.
"""

from pdstudy.data.synth._plan import (
    CONTRAST_AGENTS,
    GENERATOR_VERSION,
    METASTASIS,
    NO_PVP_REASON,
    NUISANCE_COLUMNS,
    ORACLE_AUC,
    PHASE_DESCRIPTIONS,
    PHASE_STYLES,
    TUMOUR_FEATURES,
    Site,
    check_clinical_signal,
    check_phase_options,
    check_site_options,
    cohort_counts,
    default_sites,
    oracle_auc,
    plan_cohort,
    sample_latent,
)
from pdstudy.data.synth._write import ensure_cohort, generate_cohort

__all__ = [
    "CONTRAST_AGENTS",
    "GENERATOR_VERSION",
    "METASTASIS",
    "NO_PVP_REASON",
    "NUISANCE_COLUMNS",
    "ORACLE_AUC",
    "PHASE_DESCRIPTIONS",
    "PHASE_STYLES",
    "TUMOUR_FEATURES",
    "Site",
    "check_clinical_signal",
    "check_phase_options",
    "check_site_options",
    "cohort_counts",
    "default_sites",
    "ensure_cohort",
    "generate_cohort",
    "oracle_auc",
    "plan_cohort",
    "sample_latent",
]
