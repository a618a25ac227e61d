"""torchvision MobileNetV2 with its strided convolutions turned into a chosen pool.

MobileNetV2 has no pooling layer, so ``strided_conv`` defaults to True when ``pool != "max"``;
the pool placement is that of :func:`liftpool.models.resnet.apply_pool`.  With ``width=1.0`` the
module names and shapes are torchvision's, so its ImageNet weights load with ``strict=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2

from ..pooling.placement import Init
from ._common import check_num_classes, check_pool, check_width
from .resnet import PoolPosition, apply_pool

__all__ = ["MobileNetV2", "mobilenet_v2"]


def mobilenet_v2(*, num_classes: int, pool: str = "max", width: float = 1.0, strided_conv: bool | None = None,
                 pool_kwargs: Mapping[str, Any] | None = None, init: Init = "paper",
                 pool_position: PoolPosition = "after_act", **kwargs: Any) -> nn.Module:
    """torchvision MobileNetV2 (``width`` = its ``width_mult``) with strided convolutions pooled by ``pool``.

    MobileNetV2 has no pooling layer: ``strided_conv`` defaults to ``pool != "max"``, i.e. each
    stride-2 depthwise convolution after the stem runs at stride 1 and the pool follows its
    BN + ReLU6 (``pool_position="after_act"``, default) or the convolution itself (``"after_conv"``).

    Examples:
        >>> import torch
        >>> mobilenet_v2(num_classes=4, pool="lift", width=0.25)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 4])
    """
    check_num_classes(num_classes)
    check_pool(pool)
    width = check_width(width)
    if strided_conv is None:
        strided_conv = pool != "max"
    net = MobileNetV2(num_classes=num_classes, width_mult=width, **kwargs)
    return apply_pool(net, pool, strided_conv=bool(strided_conv), pool_kwargs=pool_kwargs, init=init,
                      pool_position=pool_position)
