"""A study as notebooks 02-05 run it: the cohort, the protocol (fixed split or CV), seeds and methods.

Notebooks build a :class:`Study` from their parameters (:meth:`Study.from_parameters`) and call
:meth:`Study.run` with the methods of their section; every stage goes through the stage cache
(:mod:`pdstudy.learn.distill`), every chain's predictions land in ``<run>/predictions/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.core.params import STUDY_PARAMETERS, load_profile
from pdstudy.core.rundir import RunDir, run_dir, update_provenance
from pdstudy.data.cohort import Cohort, load_cohort
from pdstudy.data.predictions import write_predictions
from pdstudy.data.splits import carve_validation, check_no_leakage, stratified_folds
from pdstudy.learn.dataset import AugmentConfig, check_crop
from pdstudy.learn.distill import ChainResult, Context, ModelSettings, parse_chain, run_method
from pdstudy.learn.train import TrainConfig
from pdstudy.stats import delong_auc_ci, roc_auc

PROTOCOLS = ("fixed", "cv")

@dataclass
class Study:
    """Cohort + protocol + training settings shared by notebooks 02-05."""

    cohort: Cohort
    rundir: RunDir
    train_cfg: TrainConfig
    settings: ModelSettings
    stage_root: Path
    seeds: tuple[int, ...] = (0,)
    protocol: str = "fixed"
    cv_folds: int = 5
    cv_repeats: int = 1
    val_fraction: float = 0.2
    top_k: int = 10
    progress: bool = True
    parameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], *, progress: bool = True) -> Study:
        """Build from a notebook's parameters (e.g. ``globals()``); every name of :data:`STUDY_PARAMETERS` is needed.

        Configuration errors (unknown protocol, crop larger than the image, top-k < 1, unknown
        architecture or unsupported noise) are raised here, before any training.
        """
        p, cfg, settings = study_configs(params)
        cohort = load_cohort(p["manifest"] or None, p["data_dir"], image_size=int(p["image_size"]),
                             fov_mm=float(p["fov_mm"]), synth_patients=int(p["synth_patients"]),
                             synth_seed=int(p["synth_seed"]), synth_slices=int(p["synth_slices"]),
                             synth_size=int(p["synth_size"]), workers=int(p["workers"]) or None,
                             show_progress=progress)
        return cls(cohort=cohort, rundir=run_dir(p["run_dir"]), train_cfg=cfg, settings=settings,
                   stage_root=Path(p["data_dir"]) / "stages", seeds=tuple(int(s) for s in p["seeds"]),
                   protocol=p["protocol"], cv_folds=int(p["cv_folds"]), cv_repeats=int(p["cv_repeats"]),
                   val_fraction=float(p["val_fraction"]), top_k=int(p["top_k"]), progress=progress,
                   parameters=p)

    def describe(self) -> str:
        """Two lines for a notebook: cohort, protocol and seeds; the models and how they are initialised."""
        return (f"cohort: {self.cohort.name}; protocol: {self.protocol}; seeds: {list(self.seeds)}\n"
                f"models: {'quick stand-ins' if self.settings.stand_ins else 'paper architectures'}, "
                f"{'ImageNet weights' if self.settings.pretrained else 'random initialisation'}")

    # ------------------------------------------------------------------ protocol

    def contexts(self) -> Iterator[Context]:
        """One training context per seed (fixed split) or per seed x repeat x fold (CV)."""
        base = self.cohort.patients()[["patient_id", "split", "response", "recist"]]
        check_no_leakage(base, same_patient=self.cohort.prepared.same_patient_keys())
        for seed in self.seeds:
            if self.protocol == "fixed":
                yield self._context(carve_validation(base, self.val_fraction, seed=seed), seed=seed)
                continue
            pooled = base.assign(split="train")
            for repeat in range(self.cv_repeats):
                for fold, df in enumerate(stratified_folds(pooled, self.cv_folds, seed=seed, repeat=repeat)):
                    carved = carve_validation(df, self.val_fraction, seed=seed * 1000 + repeat * 100 + fold)
                    yield self._context(carved, seed=seed, fold=fold, repeat=repeat)

    def _context(self, patients: pd.DataFrame, *, seed: int, fold: int = -1, repeat: int = 0) -> Context:
        return Context(prepared=self.cohort.prepared, patients=patients.reset_index(drop=True),
                       train_cfg=self.train_cfg, settings=self.settings, stage_root=self.stage_root, seed=seed,
                       fold=fold, repeat=repeat, top_k=self.top_k, progress=self.progress)

    # ------------------------------------------------------------------ running

    def run(self, methods: list[Method], *, section: str) -> list[ChainResult]:
        """Run every method in every context, write predictions, record provenance; returns all results."""
        results: list[ChainResult] = []
        t0 = time.perf_counter()
        for ctx in self.contexts():
            for method in methods:
                result = run_method(ctx, method)
                write_predictions(self.rundir.predictions, result.method, result.predictions, seed=ctx.seed,
                                  fold=ctx.fold, repeat=ctx.repeat)
                results.append(result)
        update_provenance(self.rundir, section, {
            "methods": [m.id for m in methods], "seeds": list(self.seeds), "protocol": self.protocol,
            "cv": {"folds": self.cv_folds, "repeats": self.cv_repeats} if self.protocol == "cv" else None,
            "manifest_sha256": self.cohort.prepared.meta["manifest_sha256"], "parameters": self.parameters,
            "stage_keys": {r.method.id: [s.key for s in r.stages] for r in results},
            "wall_seconds": round(time.perf_counter() - t0, 1), "device": str(self.train_cfg.device),
        })
        return results


def study_configs(params: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig, ModelSettings]:
    """Check study parameters and build the training and model settings (no cohort, no training).

    Returns the parameters (names of :data:`STUDY_PARAMETERS` only), the :class:`TrainConfig`
    and the :class:`ModelSettings`; raises ``ValueError`` naming the offending parameter.
    """
    missing = [k for k in STUDY_PARAMETERS if k not in params]
    if missing:
        raise ValueError(f"missing study parameter(s) {missing}")
    p = {k: params[k] for k in STUDY_PARAMETERS}
    if p["protocol"] not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {p['protocol']!r}")
    if int(p["top_k"]) < 1:
        raise ValueError(f"top_k must be >= 1, got {p['top_k']}")
    check_crop(int(p["image_size"]), int(p["crop_size"]))
    cfg = TrainConfig(
        epochs=int(p["epochs"]), batch_size=int(p["batch_size"]), optimizer=p["optimizer"], lr=float(p["lr"]),
        weight_decay=float(p["weight_decay"]), warmup_epochs=float(p["warmup_epochs"]), schedule=p["schedule"],
        beta=float(p["beta"]), alpha=float(p["alpha"]), temperature=float(p["temperature"]),
        kd_convention=p["kd_convention"], slices_per_patient=p["slices_per_patient"] or None,
        augment=AugmentConfig(crop_size=int(p["crop_size"])), select=p["select"],
    )
    settings = ModelSettings(pretrained=p["pretrained"], weights_dir=p["weights_dir"] or None,
                             stand_ins=bool(p["stand_ins"]), drop_rate=float(p["drop_rate"]),
                             drop_path_rate=float(p["drop_path_rate"]))
    return p, cfg, settings


def methods(kind: str, chains: list[str] | list[list[str]]) -> list[Method]:
    """Methods of one kind from chain strings (``"efficientnet_b0>efficientnet_b3"``) or architecture names."""
    return [Method(kind, parse_chain(c)) for c in chains]


def iteration_chain(arch: str, iterations: int) -> Method:
    """A PD chain of one architecture run to ``iterations`` noisy-student iterations (Fig. 6)."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    return Method("pd", parse_chain([arch] * (iterations + 1)))


def training_summary(results: list[ChainResult]) -> pd.DataFrame:
    """One row per chain run: final-stage AUCs per split (test with DeLong 95% CI) and training time.

    A training log for notebooks 02-05; the study's tables (both threshold policies, paired
    tests, seeds) are built from the prediction files by :mod:`pdstudy.evaluate`.
    """
    rows = []
    for r in results:
        p = r.predictions[r.predictions["stage"] == r.predictions["stage"].max()]
        row: dict[str, Any] = {"method": r.method.label, "seed": int(p["seed"].iloc[0]), "fold": int(p["fold"].iloc[0]),
                               "repeat": int(p["repeat"].iloc[0])}
        for split in ("train", "val", "test"):
            s = p[p["split"] == split]
            y = (s["response"] == "poor").astype(int).to_numpy()
            if len(set(y)) < 2:
                row[f"{split}_auc"] = float("nan")
                continue
            if split == "test":
                auc, lo, hi = delong_auc_ci(y, s["score"].to_numpy())
                row.update(test_auc=auc, test_auc_lo=lo, test_auc_hi=hi)
            else:
                row[f"{split}_auc"] = roc_auc(y, s["score"].to_numpy())
        row.update(train_seconds=round(r.train_seconds, 1), stages=len(r.stages),
                   stages_reused=sum(s.reused for s in r.stages))
        rows.append(row)
    return pd.DataFrame(rows)


def iteration_summary(results: list[ChainResult]) -> pd.DataFrame:
    """Test AUC with DeLong 95% CI of every stage of each chain: the data of Fig. 6 (notebook 04).

    Parameters
    ----------
    results : list of ChainResult
        Chain runs, e.g. :func:`iteration_chain` methods run by :meth:`Study.run`.

    Returns
    -------
    pandas.DataFrame
        One row per chain run and stage, columns ``chain`` (the method label), ``seed``, ``iteration``
        (0 = the teacher, i = the i-th noisy student), ``test_auc``, ``test_auc_lo``, ``test_auc_hi``.
    """
    rows = []
    for r in results:
        for stage, grp in r.predictions.groupby("stage"):
            test = grp[grp["split"] == "test"]
            auc, lo, hi = delong_auc_ci((test["response"] == "poor").astype(int).to_numpy(), test["score"].to_numpy())
            rows.append({"chain": r.method.label, "seed": int(grp["seed"].iloc[0]), "iteration": int(stage),
                         "test_auc": auc, "test_auc_lo": lo, "test_auc_hi": hi})
    return pd.DataFrame(rows)


def ablation_summary(grid: Mapping[tuple[str, int, int, int], Method], results: list[ChainResult]) -> pd.DataFrame:
    """Training log of the ablation grid (Table 4 cells, notebook 05).

    Parameters
    ----------
    grid : mapping
        ``(model, kd, mn, mi) -> Method``, as :func:`pdstudy.core.methods.ablation_grid` returns it.
    results : list of ChainResult
        The grid's methods run by :meth:`Study.run` (in the grid's order).

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``kd``, ``mn``, ``mi``, ``method`` (the method ID), then the columns of
        :func:`training_summary`; one row per grid cell and training context, in the grid's order.
    """
    summary = training_summary(results)
    cells = pd.DataFrame([{"model": k[0], "kd": k[1], "mn": k[2], "mi": k[3], "method": m.id} for k, m in grid.items()])
    return cells.merge(summary.assign(method=[r.method.id for r in results]), on="method")


def uses_quick_recipe(params: Mapping[str, Any]) -> bool:
    """Whether every quick-profile parameter found in ``params`` has its quick value (``workers`` aside).

    Parameters
    ----------
    params : mapping
        A notebook's parameters, e.g. its ``globals()``; names that are not profile keys are ignored.

    Returns
    -------
    bool
        True when the run uses the quick recipe, whose regression guards (e.g. "the best baseline
        learns the synthetic signal") then apply.
    """
    return all(params[k] == v for k, v in load_profile("quick").items() if k in params and k != "workers")
