"""Losses of the study: label-smoothed cross entropy (Eq. 3, teachers) and the distillation loss (students).

The two weightings of the paper (Algorithm 1 and Eq. 1) and the label-smoothing target are explained in
docs/training.md (Losses).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["distillation_loss", "label_smoothing_ce", "soft_target_loss"]

Convention = Literal["algorithm1", "eq1"]


def _check_logits(logits: Tensor, name: str) -> int:
    if logits.ndim != 2:
        raise ValueError(f"{name} must have shape (batch, classes), got {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(f"{name} needs at least 2 classes, got {num_classes}")
    return num_classes


def label_smoothing_ce(logits: Tensor, target: Tensor, beta: float) -> Tensor:
    """Cross entropy with the label smoothing of Eq. 3, averaged over the batch.

    Parameters
    ----------
    logits : Tensor
        Shape ``(B, K)``.
    target : Tensor
        Class indices, shape ``(B,)``.
    beta : float
        Probability mass moved off the true class, in ``[0, (K - 1) / K]`` (the upper end is the
        uniform target; beyond it the true class would get less mass than the others).

    Returns
    -------
    Tensor
        Scalar loss.
    """
    num_classes = _check_logits(logits, "logits")
    if target.shape != logits.shape[:1] or target.dtype != torch.long:
        raise ValueError(
            f"target must be int64 class indices, shape ({logits.shape[0]},); got {target.dtype} {tuple(target.shape)}"
        )
    max_beta = (num_classes - 1) / num_classes
    if not 0.0 <= beta <= max_beta:
        raise ValueError(
            f"beta must be in [0, (K - 1) / K] = [0, {max_beta:g}] for K = {num_classes} classes, got {beta}"
        )
    eps = min(beta * num_classes / (num_classes - 1), 1.0)
    return F.cross_entropy(logits, target, label_smoothing=eps)


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, *, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch.

    The teacher logits are detached.
    """
    _check_logits(student_logits, "student_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits shape {tuple(teacher_logits.shape)} != student_logits shape {tuple(student_logits.shape)}"
        )
    if not 0.0 < temperature < float("inf"):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    *,
    alpha: float,
    temperature: float,
    beta: float,
    convention: Convention = "algorithm1",
) -> Tensor:
    """Student loss: weighted soft (teacher) and hard (label-smoothed label) terms.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor
        Shape ``(B, K)``; the teacher's are detached.
    target : Tensor
        Class indices, shape ``(B,)``.
    alpha : float
        Weight in ``[0, 1]``: on the soft term for ``"algorithm1"``, on the hard term for ``"eq1"``.
    temperature : float
        Softmax temperature ``T > 0``; the soft term is scaled by ``T^2``.
    beta : float
        Label smoothing of the hard term (Eq. 3), see :func:`label_smoothing_ce`.
    convention : {"algorithm1", "eq1"}
        Which of the paper's two weightings ``alpha`` follows.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    if convention not in ("algorithm1", "eq1"):
        raise ValueError(f"convention must be 'algorithm1' or 'eq1', got {convention!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    soft_weight = alpha if convention == "algorithm1" else 1.0 - alpha
    soft = soft_target_loss(student_logits, teacher_logits, temperature=temperature)
    hard = label_smoothing_ce(student_logits, target, beta)
    return soft_weight * soft + (1.0 - soft_weight) * hard
