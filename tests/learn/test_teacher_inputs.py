"""The teacher sees the augmented batch normalised with its own ``pretrained_cfg`` statistics, not the student's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pdstudy.learn.dataset import AugmentConfig, SliceSet
from pdstudy.learn.losses import distillation_loss
from pdstudy.learn.train import TrainConfig, input_norm, train_model, train_step

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
INCEPTION = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
CFG = TrainConfig(epochs=1, batch_size=8, lr=1e-2, device="cpu", amp=False, slices_per_patient=2,
                  augment=AugmentConfig(crop_size=28))


class Recorder(nn.Module):
    """A tiny classifier that keeps every input it is called with (``seen``)."""

    def __init__(self, pretrained_cfg: dict, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)
        self.pretrained_cfg = dict(pretrained_cfg)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _by_hand(raw: torch.Tensor, stats: dict) -> torch.Tensor:
    """(B, 1, H, W) in [0, 1] -> three channels, each (x - mean_c) / std_c."""
    return torch.cat([(raw - m) / s for m, s in zip(stats["mean"], stats["std"])], dim=1)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, 1, 12, 12, generator=g), torch.tensor([0, 1, 0, 1, 1, 0])


def test_teacher_gets_its_own_normalisation_in_train_step():
    student, teacher = Recorder(IMAGENET, 0), Recorder(INCEPTION, 1).eval()
    raw, y = _batch()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    train_step(student, opt, raw, y, cfg=CFG, device=torch.device("cpu"), norm=input_norm(student), noise_seed=3,
               teacher=teacher)
    torch.testing.assert_close(student.seen[0], _by_hand(raw, IMAGENET), rtol=0, atol=1e-6)
    torch.testing.assert_close(teacher.seen[0], _by_hand(raw, INCEPTION), rtol=0, atol=1e-6)
    assert not torch.allclose(teacher.seen[0], student.seen[0])


def test_teacher_gets_its_own_normalisation_in_train_model(tiny_prepared, tmp_path):
    prepared, patients = tiny_prepared
    train_set = SliceSet(prepared, patients[patients["split"] == "train"])
    student, teacher = Recorder(IMAGENET, 0), Recorder(INCEPTION, 1)
    train_model(student, train_set, CFG, seed=0, ckpt_dir=tmp_path / "ckpt", teacher=teacher, progress=False)
    assert len(teacher.seen) == len(student.seen) == train_set.steps_per_epoch(CFG.batch_size, CFG.slices_per_patient)
    for xs, xt in zip(student.seen, teacher.seen):  # one augmented batch, normalised twice
        raw = xs[:, :1] * IMAGENET["std"][0] + IMAGENET["mean"][0]
        torch.testing.assert_close(xt, _by_hand(raw, INCEPTION), rtol=0, atol=1e-5)


def test_shared_statistics_leave_the_step_unchanged():
    """Same statistics: the teacher sees the student's tensor and the step equals the one-normalisation step."""
    student, teacher = Recorder(INCEPTION, 0), Recorder(INCEPTION, 1).eval()
    reference = copy.deepcopy(student)
    raw, y = _batch(1)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    loss = train_step(student, opt, raw, y, cfg=CFG, device=torch.device("cpu"), norm=input_norm(student),
                      noise_seed=5, teacher=teacher)
    assert torch.equal(teacher.seen[0], student.seen[0])
    # the step as it was before teacher statistics: one normalised tensor for both models
    x = _by_hand(raw, INCEPTION)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    with torch.no_grad():
        t_logits = teacher(x)
    ref_loss = distillation_loss(reference(x), t_logits, y, alpha=CFG.alpha, temperature=CFG.temperature,
                                 beta=CFG.beta, convention=CFG.kd_convention)
    ref_opt.zero_grad()
    ref_loss.backward()
    ref_opt.step()
    assert float(loss) == pytest.approx(float(ref_loss.detach()), abs=1e-6)
    for p, q in zip(student.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_explicit_teacher_norm_wins():
    student, teacher = Recorder(IMAGENET, 0), Recorder(IMAGENET, 1).eval()
    raw, y = _batch()
    train_step(student, torch.optim.SGD(student.parameters(), lr=0.1), raw, y, cfg=CFG, device=torch.device("cpu"),
               norm=input_norm(student), noise_seed=0, teacher=teacher,
               teacher_norm=(INCEPTION["mean"], INCEPTION["std"]))
    torch.testing.assert_close(teacher.seen[0], _by_hand(raw, INCEPTION), rtol=0, atol=1e-6)
