"""Baselines, knowledge distillation (KD) and Progressive Distill (PD) chains, with a stage cache.

:func:`run_method` trains (or reuses, by :func:`stage_key`) every stage of a method's chain and returns
the patient predictions of every stage. See docs/training.md, "Chains", "The stage cache" and
"Predictions".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import pandas as pd
import torch

from pdstudy.core.hashing import derive_seed, sha256_file, stable_hash
from pdstudy.core.io import write_csv, write_json
from pdstudy.core.methods import QUICK_STAND_INS, Method
from pdstudy.core.vocab import PREDICTION_SPLITS
from pdstudy.data.cache import PreparedCohort
from pdstudy.data.predictions import PREDICTION_COLUMNS
from pdstudy.data.splits import ids_hash
from pdstudy.learn import distributed
from pdstudy.learn.dataset import SliceSet
from pdstudy.learn.models import build_model, get_architecture, local_weights_file, weights_file_sha256
from pdstudy.learn.train import (
    TrainConfig,
    load_checkpoint,
    patient_scores,
    predict_slices,
    save_checkpoint,
    train_model,
)
from pdstudy.learn.volumes import VolumeSet
from pdstudy.stats import roc_auc

#: Version of the training code's results, part of every stage key (:func:`stage_key`). Bump it whenever
#: a change to training (``pdstudy.learn.train``, ``dataset``, ``losses``, ``models``, this module) would
#: give a stage other weights or slice probabilities for the same settings, so that no stage trained by
#: the old code is reused.
TRAINING_CODE_VERSION: Final = "1"


def parse_chain(chain: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"a>b>c"`` or a list -> tuple of architecture names (validated).

    A chain is all slice models or all volume models: a teacher scores the student's own inputs.
    """
    parts = tuple(p.strip() for p in (chain.split(">") if isinstance(chain, str) else chain))
    if not parts or any(not p for p in parts):
        raise ValueError(f"chain {chain!r} must name architectures separated by '>'")
    kinds = {p: get_architecture(p).kind == "volume" for p in parts}  # raises with the valid choices
    if len(set(kinds.values())) > 1:
        volumes = [p for p, v in kinds.items() if v]
        raise ValueError(f"chain {chain!r} mixes volume models ({', '.join(volumes)}) with slice models; a chain's "
                         "teacher and students must take the same inputs")
    return parts


@dataclass(frozen=True)
class ModelSettings:
    """How models are built: weights, stand-ins and the students' noise.

    Parameters
    ----------
    pretrained : bool or "auto"
        ImageNet weights from timm's hub cache (Algorithm 1 initialises every model from them).
    weights_dir : str, optional
        Folder of local weight files named ``<timm tag>.safetensors``, ``.pth`` or ``.pt`` (offline use;
        see :func:`pdstudy.learn.models.local_weights_file`). A file found there is loaded whatever
        ``pretrained`` says, and its SHA-256 is part of the stage key.
    stand_ins : bool
        Build the quick-profile stand-in of each paper architecture (tiny timm test models).
    drop_rate, drop_path_rate : float
        Students' model noise in PD (0 for teachers and KD students).
    volume_depth : int
        Slices per patient volume for volume models (:class:`pdstudy.learn.volumes.VolumeSet`); part of
        their stage keys only.
    hybrid_depth : int, optional
        Transformer blocks of the CNN + Transformer hybrid (None: the architecture table's default: 4 for
        the paper's hybrid, 1 for its quick stand-in); part of the hybrids' stage keys only.
    """

    pretrained: bool | str = False
    weights_dir: str | None = None
    stand_ins: bool = False
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    volume_depth: int = 16
    hybrid_depth: int | None = None

    def __post_init__(self) -> None:
        checks = {"volume_depth": self.volume_depth}
        if self.hybrid_depth is not None:
            checks["hybrid_depth"] = self.hybrid_depth
        for name, value in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def built_arch(self, name: str) -> str:
        """The architecture actually built for a study name."""
        if not self.stand_ins:
            return name
        if name in QUICK_STAND_INS:
            return QUICK_STAND_INS[name]
        raise ValueError(f"no quick-profile stand-in for {name!r}; stand-ins exist for {sorted(QUICK_STAND_INS)}")

    def weights_file(self, name: str) -> Path | None:
        """The local weights file :meth:`build` loads for a study name (None: none in ``weights_dir``)."""
        return local_weights_file(self.weights_dir, self.built_arch(name))

    def model_overrides(self, name: str) -> dict[str, Any]:
        """Overrides of the built architecture's ``model_kwargs`` (the hybrid's ``hybrid_depth``; else none)."""
        if self.hybrid_depth is not None and get_architecture(self.built_arch(name)).kind == "hybrid":
            return {"depth": self.hybrid_depth}
        return {}

    def volumetric(self, name: str) -> bool:
        """Whether the architecture built for ``name`` takes one volume per patient."""
        return get_architecture(self.built_arch(name)).kind == "volume"

    def build(self, name: str, *, noisy: bool) -> torch.nn.Module:
        arch = self.built_arch(name)
        return build_model(arch, pretrained=self.pretrained, weights_path=self.weights_file(name),  # type: ignore[arg-type]
                           drop_rate=self.drop_rate if noisy else 0.0,
                           drop_path_rate=self.drop_path_rate if noisy else 0.0,
                           model_kwargs=self.model_overrides(name) or None)


@dataclass
class StageResult:
    """A trained (or reused) stage: its checkpoint, slice probabilities and bookkeeping."""

    key: str
    folder: Path
    checkpoint: Path
    checkpoint_sha256: str
    slice_probs: dict[int, float]
    wall_seconds: float
    reused: bool
    meta: dict[str, Any]

    def load_model(self, settings: ModelSettings) -> torch.nn.Module:
        model = settings.build(self.meta["arch"], noisy=self.meta["noisy"])
        state = load_checkpoint(self.checkpoint)
        if state is None:
            raise RuntimeError(f"stage checkpoint {self.checkpoint} failed its hash check")
        model.load_state_dict(state["model"])
        return model.eval()


@dataclass(frozen=True)
class Context:
    """Everything a stage needs besides its own architecture."""

    prepared: PreparedCohort
    patients: pd.DataFrame  # included patients with split (train / val / test / external), response, recist
    train_cfg: TrainConfig
    settings: ModelSettings
    stage_root: Path
    seed: int = 0
    fold: int = -1
    repeat: int = 0
    top_k: int = 10
    progress: bool = True

    def subset(self, *splits: str) -> SliceSet:
        return SliceSet(self.prepared, self.patients[self.patients["split"].isin(splits)])

    def data(self, arch: str, *splits: str) -> SliceSet | VolumeSet:
        """The patients of ``splits`` as ``arch`` takes them: slices, or one volume each (volume models)."""
        if self.settings.volumetric(arch):
            return VolumeSet(self.prepared, self.patients[self.patients["split"].isin(splits)],
                             self.settings.volume_depth)
        return self.subset(*splits)


def stage_key(ctx: Context, arch: str, *, noisy: bool, upstream_sha: str | None) -> str:
    """The stage-cache key (what it covers: docs/training.md, "The stage cache").

    Slice CNNs are keyed as before the hybrid and volume models existed; a hybrid's ``model_kwargs``
    include ``hybrid_depth``, and a volume model's key adds ``volume_depth``.
    """
    train_ids = ctx.patients.loc[ctx.patients["split"] == "train", "patient_id"]
    val_ids = ctx.patients.loc[ctx.patients["split"] == "val", "patient_id"]
    built = get_architecture(ctx.settings.built_arch(arch))
    extra: dict[str, Any] = {}
    if built.kind == "volume":
        extra["volume_depth"] = ctx.settings.volume_depth
    return stable_hash({
        **extra,
        "arch": arch, "built": ctx.settings.built_arch(arch), "pretrained": str(ctx.settings.pretrained),
        "model": {"tag": built.timm_tag, "kwargs": {**built.model_kwargs, **ctx.settings.model_overrides(arch)}},
        "weights": _weights_identity(ctx.settings, arch), "code": TRAINING_CODE_VERSION,
        "noise": [ctx.settings.drop_rate, ctx.settings.drop_path_rate] if noisy else [0.0, 0.0],
        "train": ctx.train_cfg.to_dict() if upstream_sha else
        {k: v for k, v in ctx.train_cfg.to_dict().items() if k not in ("alpha", "temperature", "kd_convention")},
        "train_ids": ids_hash(train_ids), "val_ids": ids_hash(val_ids), "fold": ctx.fold, "repeat": ctx.repeat,
        "seed": ctx.seed, "manifest": ctx.prepared.meta["manifest_sha256"],
        # the cache's content, not its folder name (which also keys file times): a regenerated, identical
        # cohort trains the same models
        "cache": ctx.prepared.meta.get("content_sha256", ctx.prepared.root.name),
        "upstream": upstream_sha, "top_k": ctx.top_k,
    }, length=20)


def _weights_identity(settings: ModelSettings, arch: str) -> dict[str, str] | None:
    """Suffix and SHA-256 of the local weights file a stage starts from (None: no file in ``weights_dir``)."""
    path = settings.weights_file(arch)
    return None if path is None else {"suffix": path.suffix, "sha256": weights_file_sha256(path)}


def run_stage(ctx: Context, arch: str, *, noisy: bool, teacher: StageResult | None, desc: str) -> StageResult:
    """Train one stage, or reuse it when its key matches a finished stage."""
    key = stage_key(ctx, arch, noisy=noisy, upstream_sha=teacher.checkpoint_sha256 if teacher else None)
    folder = ctx.stage_root / key
    final = folder / "final.pt"
    meta_path = folder / "meta.json"
    # torchrun: rank 0's view of the cache decides for every rank (identity in one process).
    if distributed.broadcast_object(meta_path.exists() and load_checkpoint(final) is not None):
        return _cached_stage(key, folder)
    with torch.random.fork_rng(devices=[]):
        # Random initialisation (and any randomly initialised head) is part of the stage's identity.
        torch.manual_seed(derive_seed(ctx.seed, "init", key))
        model = ctx.settings.build(arch, noisy=noisy)
    teacher_model = teacher.load_model(ctx.settings) if teacher else None
    train_set = ctx.data(arch, "train")
    val_set = ctx.data(arch, "val") if (ctx.patients["split"] == "val").any() else None
    outcome = train_model(model, train_set, ctx.train_cfg, seed=ctx.seed, ckpt_dir=folder / "checkpoints",
                          teacher=teacher_model, val_set=val_set, top_k=ctx.top_k, progress=ctx.progress,
                          desc=desc)
    if not distributed.world().main:  # rank 0 scores every patient once and writes the stage
        distributed.barrier()
        return _cached_stage(key, folder)
    everyone = ctx.data(arch, *PREDICTION_SPLITS)  # every patient of the context, a held-out site's too
    probs = predict_slices(outcome.model, everyone, ctx.train_cfg)
    write_csv(folder / "slice_probs.csv", pd.DataFrame({
        "row": list(probs), "patient_id": [_row_patient(ctx.prepared, r) for r in probs], "prob": list(probs.values()),
    }))
    sha = save_checkpoint(final, {"model": outcome.model.state_dict(), "epoch": outcome.selected_epoch})
    meta = {"key": key, "arch": arch, "built_arch": ctx.settings.built_arch(arch), "noisy": noisy,
            "teacher_key": teacher.key if teacher else None, "wall_seconds": round(outcome.wall_seconds, 2),
            "resumed_from_epoch": outcome.resumed_from_epoch, "selected_epoch": outcome.selected_epoch,
            "history": outcome.history, "seed": ctx.seed, "fold": ctx.fold, "repeat": ctx.repeat,
            "train_config": ctx.train_cfg.to_dict(), "settings": asdict(ctx.settings),
            "weights_file": _weights_identity(ctx.settings, arch), "training_code_version": TRAINING_CODE_VERSION,
            "world_size": distributed.world().size}
    write_json(meta_path, meta)
    distributed.barrier()
    return StageResult(key, folder, final, sha, probs, outcome.wall_seconds, False, meta)


def _cached_stage(key: str, folder: Path) -> StageResult:
    """A finished stage read back from its folder."""
    final = folder / "final.pt"
    meta = json.loads((folder / "meta.json").read_text())
    probs = pd.read_csv(folder / "slice_probs.csv")
    return StageResult(key, folder, final, sha256_file(final), dict(zip(probs["row"], probs["prob"])),
                       meta["wall_seconds"], True, meta)


def _row_patient(prepared: PreparedCohort, row: int) -> str:
    return str(prepared.index.at[row, "patient_id"])


@dataclass
class ChainResult:
    """All stages of one method, their predictions and the chain's training time."""

    method: Method
    stages: list[StageResult]
    predictions: pd.DataFrame
    train_seconds: float


def run_method(ctx: Context, method: Method) -> ChainResult:
    """Run every stage of a method's chain (reusing cached stages) and collect patient predictions."""
    stages: list[StageResult] = []
    teacher = None
    for i, arch in enumerate(method.chain):
        noisy = method.noisy_students and i > 0
        desc = f"{method.label} stage {i}/{len(method.chain) - 1}"
        teacher = run_stage(ctx, arch, noisy=noisy, teacher=teacher, desc=desc)
        stages.append(teacher)
    preds = pd.concat([stage_predictions(ctx, s, method, i) for i, s in enumerate(stages)], ignore_index=True)
    return ChainResult(method, stages, preds, sum(s.wall_seconds for s in stages))


def stage_predictions(ctx: Context, stage: StageResult, method: Method, index: int) -> pd.DataFrame:
    """Patient-level predictions of one stage in the documented prediction schema.

    Every patient of the context is scored: train, val, test and (external protocol) ``external``.

    ``score`` is the mean of the patient's top ``ctx.top_k`` slice probabilities (a volume model's: the
    probability of the patient's volume, no top-k); ``n_slices`` is the number of the patient's slices in
    the slice cache (its rows of ``ctx.prepared.index``; for a volume model, the slices its volume was
    resampled from), so a reader sees when ``score`` averages fewer than ``top_k`` slices.
    """
    everyone = ctx.data(stage.meta["arch"], *PREDICTION_SPLITS)
    scores = patient_scores(everyone, stage.slice_probs, k=ctx.top_k)
    pts = ctx.patients.set_index("patient_id").loc[scores.index]
    return pd.DataFrame({
        "patient_id": scores.index, "split": pts["split"].to_numpy(), "response": pts["response"].to_numpy(),
        "recist": pts["recist"].to_numpy(), "score": scores.to_numpy(), "method": method.id, "stage": index,
        "seed": ctx.seed, "fold": ctx.fold, "repeat": ctx.repeat,
        "n_slices": [len(everyone.rows[pid]) for pid in scores.index],
    }, columns=list(PREDICTION_COLUMNS))


def timing_table(results: list[ChainResult]) -> pd.DataFrame:
    """Training wall time per chain (reused stages count with the time they took when trained)."""
    return pd.DataFrame([{
        "method": r.method.label, "chain": ">".join(r.method.chain), "stages": len(r.stages),
        "train_seconds": round(r.train_seconds, 1), "stages_reused": sum(s.reused for s in r.stages),
    } for r in results])


def split_auc(predictions: pd.DataFrame, split: str = "test") -> float:
    """AUC on one split of one stage's predictions (quick summaries inside notebooks)."""
    test = predictions[predictions["split"] == split]
    return float(roc_auc((test["response"] == "poor").astype(int).to_numpy(), test["score"].to_numpy()))
