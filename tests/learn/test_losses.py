"""Tests of pdstudy.learn.losses: Eq. 3 label smoothing, Algorithm 1 / Eq. 1 distillation, timm agreement."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pdstudy.learn.losses import distillation_loss, label_smoothing_ce, soft_target_loss


def _logits(batch: int = 6, classes: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, classes, generator=gen) * 2
    teacher = torch.randn(batch, classes, generator=gen) * 2
    target = torch.randint(0, classes, (batch,), generator=gen)
    return student, teacher, target


def _eq3_ce(logits: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Explicit Eq. 3: soft target q (1 - beta on the true class, beta / (K - 1) elsewhere)."""
    k = logits.shape[1]
    q = torch.full_like(logits, beta / (k - 1))
    q[torch.arange(len(target)), target] = 1 - beta
    return -(q * logits.log_softmax(dim=1)).sum(dim=1).mean()


def _kl_t2(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    p_t = (teacher / t).softmax(dim=1)
    return t**2 * (p_t * (p_t.log() - (student / t).log_softmax(dim=1))).sum(dim=1).mean()


@pytest.mark.parametrize("classes", [2, 5])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3, 1.0])
def test_label_smoothing_ce_is_eq3(classes: int, fraction: float) -> None:
    student, _, target = _logits(classes=classes)
    beta = fraction * (classes - 1) / classes
    torch.testing.assert_close(label_smoothing_ce(student, target, beta), _eq3_ce(student, target, beta))


def test_label_smoothing_ce_beta0_is_plain_ce() -> None:
    student, _, target = _logits()
    torch.testing.assert_close(label_smoothing_ce(student, target, 0.0), F.cross_entropy(student, target))


def test_label_smoothing_ce_validates() -> None:
    student, _, target = _logits(classes=2)
    with pytest.raises(ValueError, match="beta"):
        label_smoothing_ce(student, target, 0.6)
    with pytest.raises(ValueError, match="beta"):
        label_smoothing_ce(student, target, -0.1)
    with pytest.raises(ValueError, match="target"):
        label_smoothing_ce(student, target.float(), 0.1)
    with pytest.raises(ValueError, match="target"):
        label_smoothing_ce(student, target[:-1], 0.1)
    with pytest.raises(ValueError, match="shape"):
        label_smoothing_ce(student[0], target, 0.1)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_loss_algorithm1(temperature: float) -> None:
    student, teacher, target = _logits()
    alpha, beta = 0.7, 0.1
    expected = alpha * _kl_t2(student, teacher, temperature) + (1 - alpha) * _eq3_ce(student, target, beta)
    got = distillation_loss(student, teacher, target, alpha=alpha, temperature=temperature, beta=beta)
    torch.testing.assert_close(got, expected)


def test_distillation_loss_eq1_swaps_weights() -> None:
    student, teacher, target = _logits()
    kwargs = dict(temperature=3.0, beta=0.1)
    eq1 = distillation_loss(student, teacher, target, alpha=0.2, convention="eq1", **kwargs)
    alg1 = distillation_loss(student, teacher, target, alpha=0.8, convention="algorithm1", **kwargs)
    torch.testing.assert_close(eq1, alg1)
    expected = 0.2 * _eq3_ce(student, target, 0.1) + 0.8 * _kl_t2(student, teacher, 3.0)
    torch.testing.assert_close(eq1, expected)


def test_distillation_loss_limits() -> None:
    student, teacher, target = _logits()
    alpha0 = distillation_loss(student, teacher, target, alpha=0.0, temperature=2.0, beta=0.1)
    torch.testing.assert_close(alpha0, label_smoothing_ce(student, target, 0.1))
    alpha1 = distillation_loss(student, teacher, target, alpha=1.0, temperature=2.0, beta=0.1)
    torch.testing.assert_close(alpha1, _kl_t2(student, teacher, 2.0))
    torch.testing.assert_close(alpha1, soft_target_loss(student, teacher, temperature=2.0))
    beta0 = distillation_loss(student, teacher, target, alpha=0.0, temperature=2.0, beta=0.0)
    torch.testing.assert_close(beta0, F.cross_entropy(student, target))


def test_soft_term_zero_when_student_matches_teacher() -> None:
    _, teacher, _ = _logits()
    assert soft_target_loss(teacher.clone(), teacher, temperature=3.0).abs().item() < 1e-6


def test_gradients_reach_student_only() -> None:
    student, teacher, target = _logits()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss = distillation_loss(student, teacher, target, alpha=0.5, temperature=4.0, beta=0.1)
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert torch.isfinite(student.grad).all()


def test_distillation_loss_validates() -> None:
    student, teacher, target = _logits()
    ok = dict(alpha=0.5, temperature=2.0, beta=0.1)
    for bad in (dict(alpha=-0.1), dict(alpha=1.5), dict(temperature=0.0), dict(temperature=-1.0)):
        with pytest.raises(ValueError):
            distillation_loss(student, teacher, target, **{**ok, **bad})
    with pytest.raises(ValueError, match="convention"):
        distillation_loss(student, teacher, target, convention="eq2", **ok)
    with pytest.raises(ValueError, match="shape"):
        distillation_loss(student, teacher[:, :1], target, **ok)
    with pytest.raises(ValueError, match="shape"):
        distillation_loss(student, teacher[:-1], target, **ok)


class _FixedLogits(nn.Module):
    """Returns fixed logits whatever the input; carries the attributes timm's task reads."""

    def __init__(self, logits: torch.Tensor, *, trainable: bool) -> None:
        super().__init__()
        if trainable:
            self.logits = nn.Parameter(logits.clone())
        else:
            self.register_buffer("logits", logits.clone())
        self.num_classes = logits.shape[1]
        self.in_chans = 3
        self.pretrained_cfg = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits + 0 * x.sum()


@pytest.mark.parametrize("convention", ["algorithm1", "eq1"])
def test_agrees_with_timm_logit_distillation_task(convention: str) -> None:
    from timm.task.distillation import LogitDistillationTask

    student_logits, teacher_logits, target = _logits(batch=8)
    alpha, temperature, beta = 0.3, 4.0, 0.1
    student = _FixedLogits(student_logits, trainable=True)
    # timm weights complementarily: task_loss_weight * task + (1 - task_loss_weight) * T^2 KL(batchmean)
    hard_weight = 1 - alpha if convention == "algorithm1" else alpha
    task = LogitDistillationTask(
        student_model=student,
        teacher_model=_FixedLogits(teacher_logits, trainable=False),
        criterion=lambda logits, y: label_smoothing_ce(logits, y, beta),
        task_loss_weight=hard_weight,
        temperature=temperature,
        verbose=False,
    )
    result = task(torch.zeros(8, 3, 4, 4), target)
    result["loss"].backward()
    timm_grad = student.logits.grad.clone()

    ours_logits = student_logits.clone().requires_grad_(True)
    ours = distillation_loss(
        ours_logits, teacher_logits, target, alpha=alpha, temperature=temperature, beta=beta, convention=convention
    )
    ours.backward()
    torch.testing.assert_close(ours, result["loss"])
    torch.testing.assert_close(ours_logits.grad, timm_grad)
    torch.testing.assert_close(
        soft_target_loss(student_logits, teacher_logits, temperature=temperature), result["kd_loss"]
    )
