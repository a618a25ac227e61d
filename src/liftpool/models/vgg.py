"""VGG13 for 32x32 CIFAR images with a choice of pooling layer (the paper's Sec. 4.1 network)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..constants import FactoryKwargs
from ..pooling import make_pool
from ._common import check_num_classes, check_pool, check_pool_kwargs, check_width, scaled

__all__ = ["VGG13_CFG", "VGGCifar", "vgg13_cifar"]

#: Convolution widths of VGG13, ``"P"`` = a pooling stage (five of them: 32 -> 1).
VGG13_CFG: tuple[int | str, ...] = (64, 64, "P", 128, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P")


class VGGCifar(nn.Module):
    """VGG for CIFAR: 3x3 conv (+BN) + ReLU stacks, a pooling layer after each stage, a linear classifier.

    After five poolings a 32x32 image is 1x1x512 (times ``width``); a global average pool
    makes any input size work (for 32x32 it is the identity) and one linear layer gives the
    logits.

    Args:
        num_classes: number of classes.
        pool: pooling layer name (any :func:`liftpool.pooling.available_pools` name).
        batch_norm: BatchNorm after each convolution (default True).
        width: channel multiplier (``0.25`` for quick runs).
        pool_kwargs: passed to every pooling layer (e.g. ``{"bands": ("LL",), "kernel_size": 3}``).
        cfg: layer configuration (default :data:`VGG13_CFG`).

    Shape:
        - Input: ``(N, 3, H, W)`` (32x32 in the paper). Output: ``(N, num_classes)``.

    Examples:
        >>> net = VGGCifar(10, pool="lift", width=0.125)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int,
        *,
        pool: str = "max",
        batch_norm: bool = True,
        width: float = 1.0,
        pool_kwargs: Mapping[str, Any] | None = None,
        cfg: tuple[int | str, ...] = VGG13_CFG,
        in_channels: int = 3,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.pool_name = check_pool(pool)
        width = check_width(width)
        pk = check_pool_kwargs(pool_kwargs)
        fk = FactoryKwargs(device=device, dtype=dtype)
        layers: list[nn.Module] = []
        c = in_channels
        for v in cfg:
            if v == "P":
                layers.append(make_pool(pool, c, **fk, **pk))
            else:
                out = scaled(int(v), width)
                layers.append(nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm, **fk))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out, **fk))
                layers.append(nn.ReLU(inplace=True))
                c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes, **fk)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg13_cifar(*, num_classes: int, pool: str = "max", batch_norm: bool = True, width: float = 1.0,
                pool_kwargs: Mapping[str, Any] | None = None, **kwargs: Any) -> VGGCifar:
    """VGG13(-BN) for CIFAR (see :class:`VGGCifar`)."""
    return VGGCifar(num_classes, pool=pool, batch_norm=batch_norm, width=width, pool_kwargs=pool_kwargs, **kwargs)
