"""The paper's constraint losses, collected over a whole model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import LiftDownPoolNd

__all__ = ["lifting_loss"]


def lifting_loss(model: nn.Module) -> Tensor:
    r"""``Σ λ_u·c_u + λ_p·c_p`` over every LiftDownPool in ``model``.

    Each layer contributes the constraint terms of its last forward pass in
    training mode (``c_u = mean((s - x_o)^2)``, ``c_p = mean(d^2)``, summed over
    its 1D lifting steps) weighted by its own ``lambda_u`` / ``lambda_p``.  Layers
    that have not run in training mode contribute nothing; with none, the result
    is a zero scalar on the model's device.  Works on DDP-wrapped and compiled
    models (it walks ``model.modules()``).

    Examples:
        >>> from liftpool import LiftDownPool2d
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), LiftDownPool2d(8))
        >>> loss = net(torch.randn(2, 3, 16, 16)).mean() + lifting_loss(net)
        >>> loss.backward()
        >>> float(lifting_loss(nn.Linear(2, 2)))
        0.0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    total: Tensor | None = None
    for m in model.modules():
        if isinstance(m, LiftDownPoolNd):
            term = m.lifting_loss()
            if term is not None:
                total = term if total is None else total + term
    if total is None:
        p = next(model.parameters(), None)
        return torch.zeros(
            (),
            device=p.device if p is not None else None,
            dtype=p.dtype if p is not None and p.is_floating_point() else None,
        )
    return total
