"""The study as a whole: the Study of notebooks 02-05, notebook helpers, the papermill runner, training jobs,
sweeps and the benchmark.

Names are re-exported lazily (PEP 562): ``pdstudy.study.run_bench`` imports ``pdstudy.study.bench`` on first
use, so a process that needs only the benchmark or the papermill runner does not load torch through the Study.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "BenchSizes": "pdstudy.study.bench",
    "CLINICIAN_MODEL": "pdstudy.study.clinicians",
    "CamExamples": "pdstudy.study.gradcam",
    "DEVICES": "pdstudy.study.jobs",
    "EXECUTORS": "pdstudy.study.sweeps",
    "FIXED_KEYS": "pdstudy.study.sweeps",
    "FIXED_SPLIT_NOTE": "pdstudy.study.sections",
    "FULL": "pdstudy.study.bench",
    "GOALS": "pdstudy.study.bench",
    "GRID_KEYS": "pdstudy.study.sweeps",
    "Grid": "pdstudy.study.sweeps",
    "JOB_KEYS": "pdstudy.study.jobs",
    "JobSpec": "pdstudy.study.jobs",
    "FUSION_SECTION": "pdstudy.study.fusion",
    "FusionSection": "pdstudy.study.fusion",
    "check_fusion_outputs": "pdstudy.study.fusion",
    "clinical_fusion_section": "pdstudy.study.fusion",
    "fusion_methods": "pdstudy.study.fusion",
    "record_clinical_fusion": "pdstudy.study.fusion",
    "write_clinical_fusion": "pdstudy.study.fusion",
    "LOCALISED_METHODS": "pdstudy.study.gradcam",
    "localised_methods": "pdstudy.study.gradcam",
    "OTHER_CAM_METHODS": "pdstudy.study.gradcam",
    "OtherCams": "pdstudy.study.gradcam",
    "other_cam_methods": "pdstudy.study.gradcam",
    "other_model_cams": "pdstudy.study.gradcam",
    "LOCAL_KEYS": "pdstudy.study.sweeps",
    "Localisation": "pdstudy.study.gradcam",
    "NOTEBOOK_GLOB": "pdstudy.study.notebooks",
    "OPTIONAL_REPORT_PARAMETERS": "pdstudy.study.report_section",
    "PATH_OPTIONS": "pdstudy.study.notebooks",
    "PROTOCOLS": "pdstudy.study.protocol",
    "REPORT_PARAMETERS": "pdstudy.study.report_section",
    "ROC_PANELS": "pdstudy.study.report_section",
    "ReaderCalls": "pdstudy.study.clinicians",
    "ReportPlan": "pdstudy.study.report_section",
    "RunError": "pdstudy.study.notebooks",
    "SMOKE": "pdstudy.study.bench",
    "SectionPredictions": "pdstudy.study.sections",
    "Study": "pdstudy.study.protocol",
    "SweepJob": "pdstudy.study.sweeps",
    "SweepReport": "pdstudy.study.sweeps",
    "TOP_K_SHORT_COLUMNS": "pdstudy.study.protocol",
    "TOP_K_SHORT_NOTES": "pdstudy.study.protocol",
    "TOP_K_SHORT_TITLE": "pdstudy.study.protocol",
    "UNKEYED": "pdstudy.study.sweeps",
    "ablation_summary": "pdstudy.study.protocol",
    "base_parameters": "pdstudy.study.jobs",
    "cam_examples": "pdstudy.study.gradcam",
    "check_cam_method": "pdstudy.study.gradcam",
    "check_cam_target": "pdstudy.study.gradcam",
    "check_clinician_outputs": "pdstudy.study.clinicians",
    "check_gradcam_outputs": "pdstudy.study.gradcam",
    "check_job": "pdstudy.study.jobs",
    "check_path_options": "pdstudy.study.notebooks",
    "check_report_outputs": "pdstudy.study.report_section",
    "check_split_seed": "pdstudy.study.protocol",
    "collect": "pdstudy.study.sweeps",
    "declared_parameters": "pdstudy.study.notebooks",
    "execute_notebook": "pdstudy.study.notebooks",
    "expand": "pdstudy.study.sweeps",
    "final_stage_result": "pdstudy.study.gradcam",
    "fixed_split_note": "pdstudy.study.sections",
    "fixed_split_study": "pdstudy.study.sections",
    "format_bench_table": "pdstudy.study.bench",
    "gradcam_methods": "pdstudy.study.gradcam",
    "iteration_chain": "pdstudy.study.protocol",
    "iteration_summary": "pdstudy.study.protocol",
    "job_key": "pdstudy.study.sweeps",
    "job_result": "pdstudy.study.sweeps",
    "jobs_dir": "pdstudy.study.sweeps",
    "kept_cohort": "pdstudy.study.bench",
    "kept_files": "pdstudy.study.bench",
    "load_grid": "pdstudy.study.sweeps",
    "load_train_config": "pdstudy.study.jobs",
    "localise": "pdstudy.study.gradcam",
    "machine_info": "pdstudy.study.bench",
    "make_executor": "pdstudy.study.sweeps",
    "measure_pipeline": "pdstudy.study.bench",
    "methods": "pdstudy.study.protocol",
    "notebook_command": "pdstudy.study.sweeps",
    "notebooks_dir": "pdstudy.study.notebooks",
    "parameter_placeholders": "pdstudy.study.notebooks",
    "parse_overrides": "pdstudy.study.notebooks",
    "point_slug": "pdstudy.study.sweeps",
    "prepare_cohorts": "pdstudy.study.sweeps",
    "read_yaml_mapping": "pdstudy.study.jobs",
    "reader_calls": "pdstudy.study.clinicians",
    "record_clinicians": "pdstudy.study.clinicians",
    "record_gradcam": "pdstudy.study.gradcam",
    "reference_loop": "pdstudy.study.bench",
    "report_plan": "pdstudy.study.report_section",
    "resolve_paths": "pdstudy.study.jobs",
    "run_bench": "pdstudy.study.bench",
    "run_job": "pdstudy.study.jobs",
    "run_jobs": "pdstudy.study.sweeps",
    "run_notebooks": "pdstudy.study.notebooks",
    "run_sweep_job": "pdstudy.study.sweeps",
    "scrub_notebook_paths": "pdstudy.study.notebooks",
    "section_predictions": "pdstudy.study.sections",
    "select_notebooks": "pdstudy.study.notebooks",
    "short_error": "pdstudy.study.sweeps",
    "study_configs": "pdstudy.study.protocol",
    "sweep": "pdstudy.study.sweeps",
    "top_k_short": "pdstudy.study.protocol",
    "training_summary": "pdstudy.study.protocol",
    "uses_quick_recipe": "pdstudy.study.protocol",
    "write_cv_tables": "pdstudy.study.report_section",
    "write_iteration_curves": "pdstudy.study.report_section",
    "write_roc_panels": "pdstudy.study.report_section",
    "write_status": "pdstudy.study.sweeps",
    "write_study_report": "pdstudy.study.report_section",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pdstudy.study' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
