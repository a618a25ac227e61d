"""Shared helpers for the model tests (import as ``models.model_utils``; tests/ is on the path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from liftpool import LiftDownPool2d, lifting_loss
from liftpool.models import task_of


def train_steps(net: nn.Module, name: str, x: torch.Tensor, num_classes: int, steps: int = 4,
                lr: float = 0.05) -> list[float]:
    """A few SGD steps on one fixed batch; returns the total losses (task + lifting) per step.

    Also checks that every parameter of every LiftDownPool2d receives a finite gradient and
    that the lifting loss is positive for LiftPool models in training mode.
    """
    torch.manual_seed(1)
    if task_of(name) == "classification":
        target = torch.randint(0, num_classes, (x.shape[0],))
    else:
        target = torch.randint(0, num_classes, (x.shape[0],) + tuple(x.shape[2:]))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    has_lift = any(isinstance(m, LiftDownPool2d) for m in net.modules())
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        out = net(x)
        if task_of(name) == "classification":
            assert out.shape == (x.shape[0], num_classes)
        else:
            assert out.shape == (x.shape[0], num_classes) + tuple(x.shape[2:])
        ll = lifting_loss(net)
        if has_lift:
            assert ll.item() > 0, "lifting_loss must be positive for a LiftPool model in train mode"
        else:
            assert ll.item() == 0
        loss = F.cross_entropy(out, target) + ll
        loss.backward()
        for m in net.modules():
            if isinstance(m, LiftDownPool2d):
                for p in m.parameters():
                    assert p.grad is not None and torch.isfinite(p.grad).all()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    return losses


def count(net: nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in net.modules())
