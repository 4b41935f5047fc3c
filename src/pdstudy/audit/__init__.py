"""Paper audit: check the PD study's published numbers against themselves.

Runs from the numbers the paper prints (shipped as package data under
``pdstudy/core/paper_data/``, documented in ``data_manifest/paper_reference.md``); needs
no patient data and never imports torch. ``python -m pdstudy.audit --out DIR`` (or
:func:`write_audit`) writes ``paper_audit.csv`` and ``paper_audit.md``.

Every check is one row ``item, check, reported, expected, verdict, explanation``.

Verdicts
--------
consistent
    An arithmetic check passes (for a metric triple: exactly one integer solution).
inconsistent
    The printed numbers cannot all be true (no integer solution, counts that do not
    add up, two places that disagree).
ambiguous
    Several integer solutions or readings fit the printed numbers.
supported / unsupported
    A claim in the text is / is not established by the numbers reported behind it.
note
    Context a reproduction needs (a CI, a protocol detail, a value that cannot be checked).

Public API
----------
feasible_counts, feasibility_verdict, hanley_mcneil_se, hanley_mcneil_ci,
paired_auc_pvalues, mcnemar_exact_p, mcnemar_pvalue_range, fisher_freeman_halton,
split_balance_probability, youden_optimism, run_audit, audit_markdown, write_audit, main.
"""

from __future__ import annotations

from pdstudy.audit.exact import (
    fisher_freeman_halton,
    hanley_mcneil_ci,
    hanley_mcneil_se,
    mcnemar_exact_p,
    mcnemar_pvalue_range,
    paired_auc_pvalues,
    split_balance_probability,
    youden_optimism,
)
from pdstudy.audit.feasibility import (
    auc_bounds_at_operating_point,
    feasibility_verdict,
    feasible_counts,
    single_value_repairs,
)
from pdstudy.audit.rows import COLUMNS, VERDICTS
from pdstudy.audit.summary import audit_markdown, main, run_audit, write_audit
from pdstudy.core.paper import load_paper

__all__ = [
    "COLUMNS",
    "VERDICTS",
    "audit_markdown",
    "auc_bounds_at_operating_point",
    "feasibility_verdict",
    "feasible_counts",
    "fisher_freeman_halton",
    "hanley_mcneil_ci",
    "hanley_mcneil_se",
    "load_paper",
    "main",
    "mcnemar_exact_p",
    "mcnemar_pvalue_range",
    "paired_auc_pvalues",
    "run_audit",
    "single_value_repairs",
    "split_balance_probability",
    "write_audit",
    "youden_optimism",
]
