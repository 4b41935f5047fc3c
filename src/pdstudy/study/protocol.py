"""A study as notebooks 02-05 and 09 run it: the cohort, the protocol, seeds and methods.

Protocols: ``fixed`` (the manifest's split), ``cv`` (repeated stratified k-fold) and ``external`` (notebook 09:
train at some sites, test at the others, :func:`pdstudy.data.splits.external_splits`). Notebooks build a
:class:`Study` from their parameters (:meth:`Study.from_parameters`) and call :meth:`Study.run` with the methods
of their section; every stage goes through the stage cache (:mod:`pdstudy.learn.distill`), every chain's
predictions land in ``<run>/predictions/`` (external protocol: ``<run>/predictions/external/``).
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pdstudy.core.methods import Method
from pdstudy.core.params import PARAMETER_CHOICES, STUDY_PARAMETERS, load_profile
from pdstudy.core.rundir import RunDir, run_dir, update_provenance
from pdstudy.core.vocab import EXTERNAL_SPLIT, PREDICTION_SPLITS, SITE_COLUMN, is_site_code
from pdstudy.data.cohort import Cohort, cohort_from_parameters
from pdstudy.data.predictions import write_predictions
from pdstudy.data.splits import (
    DuplicatePatientWarning,
    carve_validation,
    check_no_leakage,
    external_splits,
    same_person_groups,
    stratified_folds,
)
from pdstudy.learn.dataset import AugmentConfig, check_crop
from pdstudy.learn.distill import ChainResult, Context, ModelSettings, parse_chain, run_method
from pdstudy.learn.train import TrainConfig
from pdstudy.report import write_table
from pdstudy.stats import delong_auc_ci, roc_auc

#: Protocols a :class:`Study` runs: the notebook parameter ``protocol`` (fixed | cv, notebooks 02-08) and
#: ``external`` (notebook 09 always runs it).
PROTOCOLS = (*PARAMETER_CHOICES["protocol"], "external")
#: Folder of ``<run>/predictions/`` holding the external protocol's prediction files (:attr:`Study.predictions_dir`).
EXTERNAL_PREDICTIONS = EXTERNAL_SPLIT

#: Model parameters a Study reads when present (else their defaults): slices per patient volume of the 3D
#: ResNet, and Transformer blocks of the CNN + Transformer hybrid (0 or empty: the architecture's default).
MODEL_PARAMETERS = ("volume_depth", "hybrid_depth")
#: Slices per volume when ``volume_depth`` is not given.
VOLUME_DEPTH_DEFAULT = 16

#: Columns of ``tables/top_k_short.csv`` (:func:`top_k_short`).
TOP_K_SHORT_COLUMNS = ("patient_id", "split", "n_slices", "top_k")

#: Title and notes of ``tables/top_k_short.md``.
TOP_K_SHORT_TITLE = "Patients with fewer cached slices than top_k"
TOP_K_SHORT_NOTES = (
    "A patient's score is the mean of its top_k highest slice probabilities; a patient with fewer slices is "
    "scored on the mean of all of them, a different scale from the other patients' scores.",
    "One row per patient and split it has in the run's training contexts (fixed split: one split per patient).",
)

#: Order of splits in :func:`top_k_short`.
_SPLIT_ORDER = {split: i for i, split in enumerate(PREDICTION_SPLITS)}


@dataclass
class Study:
    """Cohort + protocol + training settings shared by notebooks 02-05 and 09.

    ``protocol`` is one of :data:`PROTOCOLS`; ``test_sites`` (external protocol only) are the site codes held out
    together, empty for leave-one-site-out.
    """

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
    split_seed: int = 0
    test_sites: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_split_seed(self.split_seed)
        check_protocol(self.protocol)
        self.test_sites = check_test_sites(self.test_sites, protocol=self.protocol)

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], *, progress: bool = True) -> Study:
        """Build from a notebook's parameters (e.g. ``globals()``); every name of :data:`STUDY_PARAMETERS` is needed.

        ``test_sites`` is read when given (default: empty, leave-one-site-out; only with protocol ``external``).
        Configuration errors (unknown protocol, bad ``test_sites``, crop larger than the image, top-k < 1, unknown
        architecture or unsupported noise) are raised here, before any training; test sites the cohort does not
        have are raised by :meth:`splits`, before any training too.
        """
        p, cfg, settings = study_configs(params)
        cohort = cohort_from_parameters(p, show_progress=progress)
        return cls(cohort=cohort, rundir=run_dir(p["run_dir"]), train_cfg=cfg, settings=settings,
                   stage_root=Path(p["data_dir"]) / "stages", seeds=tuple(int(s) for s in p["seeds"]),
                   protocol=p["protocol"], cv_folds=int(p["cv_folds"]), cv_repeats=int(p["cv_repeats"]),
                   val_fraction=float(p["val_fraction"]), top_k=int(p["top_k"]), progress=progress,
                   parameters=p, split_seed=int(p["split_seed"]), test_sites=tuple(p.get("test_sites", ())))

    def describe(self) -> str:
        """Two lines for a notebook: cohort, protocol and seeds; the models and how they are initialised."""
        held = ""
        if self.protocol == "external":
            held = f" (test sites: {list(self.test_sites)})" if self.test_sites else " (leave-one-site-out)"
        return (f"cohort: {self.cohort.name}; protocol: {self.protocol}{held}; seeds: {list(self.seeds)}; "
                f"split_seed: {self.split_seed}\n"
                f"models: {'quick stand-ins' if self.settings.stand_ins else 'paper architectures'}, "
                f"{'ImageNet weights' if self.settings.pretrained else 'random initialisation'}")

    # ------------------------------------------------------------------ protocol

    def splits(self) -> list[tuple[pd.DataFrame, int, int]]:
        """The patients' splits of every training context: ``(patients, fold, repeat)``, the same for every seed.

        The validation carve and the cross-validation folds are drawn from :attr:`split_seed`, never from a
        training seed, so every training seed trains, validates and tests on the same patients (and the seed
        ensemble of :mod:`pdstudy.evaluate` keeps every validation patient). Patients sharing a same-person key
        (:meth:`pdstudy.data.cache.PreparedCohort.same_patient_keys`) stay in one fold and on one side of the
        validation carve.

        Returns
        -------
        list of (pandas.DataFrame, int, int)
            Included patients with ``split`` train / val / test, the fold (-1 for the fixed split) and the
            repeat; one entry (fixed) or ``cv_repeats x cv_folds`` entries (CV, repeat-major). External
            protocol: one entry per held-out set of :meth:`held_out_sites` (fold = its index, repeat 0), the
            patients with their ``site`` and split train / val / test / ``external``.

        Raises
        ------
        pdstudy.data.splits.LeakageError
            When the manifest puts the same person (by ID or a same-person key) in two splits, or (external
            protocol) at a held-out and a training site.
        ValueError
            External protocol: no ``site`` column or fewer than two sites, or ``test_sites`` the cohort lacks.
        """
        columns = ["patient_id", "split", "response", "recist"]
        patients = self.cohort.patients()
        if self.protocol == "external" and SITE_COLUMN in patients.columns:
            columns.append(SITE_COLUMN)
        base = patients[columns]
        keys = self.cohort.prepared.same_patient_keys()
        check_no_leakage(base, same_patient=keys)
        groups = same_person_groups(keys)
        if self.protocol == "fixed":
            out = [(carve_validation(base, self.val_fraction, seed=self.split_seed, groups=groups), -1, 0)]
        elif self.protocol == "external":
            held = external_splits(base, self.test_sites or None, val_fraction=self.val_fraction,
                                   seed=self.split_seed, groups=groups)
            out = [(df, fold, 0) for fold, (df, _) in enumerate(held)]
        else:
            pooled = base.assign(split="train")
            out = []
            for repeat in range(self.cv_repeats):
                folds = stratified_folds(pooled, self.cv_folds, seed=self.split_seed, repeat=repeat, groups=groups)
                for fold, df in enumerate(folds):
                    carved = carve_validation(df, self.val_fraction, seed=self.split_seed * 1000 + repeat * 100 + fold,
                                              groups=groups)
                    out.append((carved, fold, repeat))
        with warnings.catch_warnings():  # same-split pairs were reported once, by the check above
            warnings.simplefilter("ignore", DuplicatePatientWarning)
            for patients, _, _ in out:
                check_no_leakage(patients, same_patient=keys)
        return out

    def held_out_sites(self) -> list[tuple[str, ...]]:
        """The site codes held out in each fold of the external protocol (fold = list index); empty otherwise.

        Raises
        ------
        ValueError
            As :func:`pdstudy.data.splits.external_splits`: no ``site`` column, fewer than two sites, unknown
            or all sites in ``test_sites``.
        """
        if self.protocol != "external":
            return []
        patients = self.cohort.patients()
        columns = [c for c in ("patient_id", "split", "response", "recist", SITE_COLUMN) if c in patients.columns]
        # The carve is not needed here: val_fraction 0 keeps the splits and checks the sites the same way.
        return [held for _, held in external_splits(patients[columns], self.test_sites or None, val_fraction=0.0,
                                                    seed=self.split_seed)]

    @property
    def predictions_dir(self) -> Path:
        """Folder of this study's prediction files: ``<run>/predictions/``, or its ``external/`` for that protocol.

        The external protocol's files stay out of the folder that Tables 2-4 read.
        """
        base = Path(self.rundir.predictions)
        return base / EXTERNAL_PREDICTIONS if self.protocol == "external" else base

    def contexts(self) -> Iterator[Context]:
        """One training context per seed (fixed split) or per seed x repeat x fold (CV), on :meth:`splits`."""
        yield from self._contexts(self.splits())

    def _contexts(self, splits: list[tuple[pd.DataFrame, int, int]]) -> Iterator[Context]:
        for seed in self.seeds:
            for patients, fold, repeat in splits:
                yield self._context(patients, seed=seed, fold=fold, repeat=repeat)

    def top_k_short(self) -> pd.DataFrame:
        """Included patients with fewer cached slices than :attr:`top_k`, in the splits of :meth:`splits`.

        Returns
        -------
        pandas.DataFrame
            :func:`top_k_short` of the patients of every context and the cohort's slice counts.
        """
        return self._top_k_short(self.splits())

    def _top_k_short(self, splits: list[tuple[pd.DataFrame, int, int]]) -> pd.DataFrame:
        counts = self.cohort.prepared.index["patient_id"].astype(str).value_counts()
        return top_k_short([patients for patients, _, _ in splits], counts, self.top_k)

    def _context(self, patients: pd.DataFrame, *, seed: int, fold: int = -1, repeat: int = 0) -> Context:
        return Context(prepared=self.cohort.prepared, patients=patients.reset_index(drop=True),
                       train_cfg=self.train_cfg, settings=self.settings, stage_root=self.stage_root, seed=seed,
                       fold=fold, repeat=repeat, top_k=self.top_k, progress=self.progress)

    # ------------------------------------------------------------------ running

    def run(self, methods: list[Method], *, section: str) -> list[ChainResult]:
        """Run every method in every context, write predictions, record provenance; returns all results."""
        results: list[ChainResult] = []
        t0 = time.perf_counter()
        splits = self.splits()
        held = self.held_out_sites()
        short = self._top_k_short(splits)
        write_table(short, self.rundir, "top_k_short", title=TOP_K_SHORT_TITLE,
                    notes=[*TOP_K_SHORT_NOTES, f"top_k = {self.top_k}; protocol: {self.protocol}; "
                           f"{short['patient_id'].nunique()} patient(s) listed."])
        for ctx in self._contexts(splits):
            for method in methods:
                result = run_method(ctx, method)
                write_predictions(self.predictions_dir, result.method, result.predictions, seed=ctx.seed,
                                  fold=ctx.fold, repeat=ctx.repeat)
                results.append(result)
        update_provenance(self.rundir, section, {
            "methods": [m.id for m in methods], "seeds": list(self.seeds), "protocol": self.protocol,
            "split_seed": self.split_seed, "val_fraction": self.val_fraction,
            "cv": {"folds": self.cv_folds, "repeats": self.cv_repeats} if self.protocol == "cv" else None,
            "external": {"test_sites": list(self.test_sites), "held_out_sites": [list(h) for h in held]}
            if self.protocol == "external" else None,
            "top_k_short": {"top_k": self.top_k, "patients": sorted(short["patient_id"].unique().tolist())},
            "manifest_sha256": self.cohort.prepared.meta["manifest_sha256"], "parameters": self.parameters,
            "stage_keys": {r.method.id: [s.key for s in r.stages] for r in results},
            "wall_seconds": round(time.perf_counter() - t0, 1), "device": str(self.train_cfg.device),
        })
        return results


def study_configs(params: Mapping[str, Any]) -> tuple[dict[str, Any], TrainConfig, ModelSettings]:
    """Check study parameters and build the training and model settings (no cohort, no training).

    Returns the parameters (names of :data:`STUDY_PARAMETERS`, and of :data:`MODEL_PARAMETERS` when given),
    the :class:`TrainConfig` and the :class:`ModelSettings`; raises ``ValueError`` naming the offending parameter.
    """
    missing = [k for k in STUDY_PARAMETERS if k not in params]
    if missing:
        raise ValueError(f"missing study parameter(s) {missing}")
    p = {k: params[k] for k in STUDY_PARAMETERS}
    check_protocol(p["protocol"])
    if "test_sites" in params:  # notebook 09's parameter; read when given, like MODEL_PARAMETERS
        p["test_sites"] = list(check_test_sites(params["test_sites"], protocol=p["protocol"]))
    if int(p["top_k"]) < 1:
        raise ValueError(f"top_k must be >= 1, got {p['top_k']}")
    check_split_seed(p["split_seed"])
    check_crop(int(p["image_size"]), int(p["crop_size"]))
    cfg = TrainConfig(
        epochs=int(p["epochs"]), batch_size=int(p["batch_size"]), optimizer=p["optimizer"], lr=float(p["lr"]),
        weight_decay=float(p["weight_decay"]), warmup_epochs=float(p["warmup_epochs"]), schedule=p["schedule"],
        beta=float(p["beta"]), alpha=float(p["alpha"]), temperature=float(p["temperature"]),
        kd_convention=p["kd_convention"], slices_per_patient=p["slices_per_patient"] or None,
        augment=AugmentConfig(crop_size=int(p["crop_size"])), select=p["select"],
    )
    for name in MODEL_PARAMETERS:  # read with a default until every profile and notebook declares them
        if name in params:
            p[name] = params[name]
    hybrid_depth = p.get("hybrid_depth")
    settings = ModelSettings(pretrained=p["pretrained"], weights_dir=p["weights_dir"] or None,
                             stand_ins=bool(p["stand_ins"]), drop_rate=float(p["drop_rate"]),
                             drop_path_rate=float(p["drop_path_rate"]),
                             volume_depth=_positive_int(p.get("volume_depth", VOLUME_DEPTH_DEFAULT), "volume_depth"),
                             hybrid_depth=None if hybrid_depth in (None, "", 0) else
                             _positive_int(hybrid_depth, "hybrid_depth"))
    return p, cfg, settings


def _positive_int(value: Any, name: str) -> int:
    """A study parameter that must be an integer >= 1 (bool is not one); the error names it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_protocol(value: Any) -> str:
    """Check a study's ``protocol``: one of :data:`PROTOCOLS`; the error names the parameter."""
    if not isinstance(value, str) or value not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {value!r}")
    return value


def check_test_sites(value: Any, *, protocol: str = "external") -> tuple[str, ...]:
    """Check the ``test_sites`` study parameter: a list of site codes, empty for leave-one-site-out.

    Parameters
    ----------
    value : Any
        The parameter's value (a list or tuple of codes; None counts as empty).
    protocol : str
        The study's protocol: codes are only allowed with ``external``.

    Returns
    -------
    tuple of str
        The codes, sorted and without repeats.

    Raises
    ------
    ValueError
        Naming ``test_sites`` and what was expected. Whether the cohort has these sites is checked by
        :func:`pdstudy.data.splits.external_splits`.
    """
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple) or not all(is_site_code(v) for v in value):
        raise ValueError("test_sites must be a list of site codes (1-32 letters, digits, '-' or '_'), e.g. ['B']; "
                         f"empty = leave-one-site-out; got {value!r}")
    if value and protocol != "external":
        raise ValueError(f"test_sites {list(value)} applies to protocol 'external' only (protocol is {protocol!r})")
    return tuple(sorted(set(value)))


def check_split_seed(value: Any) -> int:
    """Check the ``split_seed`` study parameter: a non-negative integer (bool is not one).

    Parameters
    ----------
    value : Any
        The parameter's value.

    Returns
    -------
    int
        The value as an ``int``.

    Raises
    ------
    ValueError
        Naming ``split_seed`` and what was expected.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise ValueError(f"split_seed must be a non-negative integer (it seeds the validation carve and the CV "
                         f"folds), got {value!r}")
    return int(value)


def top_k_short(patients: pd.DataFrame | list[pd.DataFrame], n_slices: Mapping[str, int] | pd.Series,
                top_k: int) -> pd.DataFrame:
    """Patients scored on fewer slices than ``top_k`` (their score is the mean of all their slices).

    Parameters
    ----------
    patients : DataFrame or list of DataFrame
        Included patients with ``patient_id`` and ``split`` (e.g. the patients of each training context).
    n_slices : mapping or pandas.Series
        Cached slices per patient ID (e.g. ``prepared.index["patient_id"].value_counts()``).
    top_k : int
        Slices averaged into a patient's score (>= 1).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TOP_K_SHORT_COLUMNS`: one row per distinct (patient, split) with
        ``n_slices < top_k``, sorted by patient ID and split (train, val, test, external); empty when none.

    Raises
    ------
    ValueError
        On ``top_k < 1``, a frame without ``patient_id`` / ``split``, or a patient without a slice count.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    frames = [patients] if isinstance(patients, pd.DataFrame) else list(patients)
    for df in frames:
        if not isinstance(df, pd.DataFrame) or not {"patient_id", "split"} <= set(df.columns):
            raise ValueError("patients must be DataFrames with columns 'patient_id' and 'split'")
    counts = {str(k): int(v) for k, v in dict(n_slices).items()}
    rows = pd.concat([df[["patient_id", "split"]] for df in frames], ignore_index=True) if frames \
        else pd.DataFrame(columns=["patient_id", "split"])
    rows = rows.assign(patient_id=rows["patient_id"].astype(str)).drop_duplicates()
    unknown = sorted(set(rows["patient_id"]) - set(counts))
    if unknown:
        raise ValueError(f"n_slices has no slice count for patient(s) {unknown[:5]}")
    rows["n_slices"] = rows["patient_id"].map(counts).astype(int)
    rows["top_k"] = int(top_k)
    short = rows[rows["n_slices"] < top_k]
    short = short.sort_values(["patient_id", "split"], key=lambda c: c.map(_SPLIT_ORDER) if c.name == "split" else c)
    return short[list(TOP_K_SHORT_COLUMNS)].reset_index(drop=True)


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
