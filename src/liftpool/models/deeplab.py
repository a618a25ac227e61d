"""DeepLabV3+ (Chen et al. 2018) with a ResNet50 backbone whose down-sampling is a chosen pool.

Backbone: torchvision-layout ResNet50 (see :class:`~liftpool.models.resnet.ScaledResNet`) at
output stride 16 (the last stage dilated instead of strided).  ``pool`` replaces the stem max
pool and, with ``strided_conv=True``, the stride-2 convolutions of ``layer2``/``layer3`` (see
:func:`liftpool.convert`).  Head: ASPP with rates 6/12/18 plus image pooling (256 channels),
decoder at 1/4 resolution concatenating a 48-channel projection of ``layer1``, two 3x3
convolutions, a 1x1 classifier and bilinear up-sampling to the input size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck
from torchvision.models.segmentation.deeplabv3 import ASPP

from ..pooling.placement import Init
from ._common import check_num_classes, check_pool, check_width, scaled
from .resnet import PoolPosition, ScaledResNet, apply_pool

__all__ = ["DeepLabV3Plus", "deeplabv3plus_resnet50"]


def _cbr(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ on a ResNet50 backbone at output stride 16.

    Args:
        num_classes: output channels.
        pool: pooling of the backbone (any :func:`liftpool.pooling.available_pools` name;
            ``"max"`` = torchvision's ResNet50).
        width: channel multiplier of backbone and head (``0.125`` for tests).
        strided_conv: also pool the backbone's stride-2 convolutions (``pool != "max"``).
        pool_position: ``"after_act"`` (default) or ``"after_conv"``, see :func:`liftpool.models.resnet.apply_pool`.
        atrous_rates: ASPP dilation rates (default 6, 12, 18 for output stride 16).
        pool_kwargs, init: see :func:`liftpool.convert`.

    Shape:
        - Input ``(N, 3, H, W)``; output ``(N, num_classes, H, W)`` logits. ASPP's image-pooling
          branch has a BatchNorm on a 1x1 map, so training needs ``N >= 2``.

    Examples:
        >>> net = DeepLabV3Plus(4, pool="lift", width=0.0625).eval()
        >>> net(torch.randn(1, 3, 33, 29)).shape
        torch.Size([1, 4, 33, 29])
    """

    def __init__(self, num_classes: int, *, pool: str = "max", width: float = 1.0, strided_conv: bool = False,
                 atrous_rates: Sequence[int] = (6, 12, 18), pool_kwargs: Mapping[str, Any] | None = None,
                 init: Init = "paper", pool_position: PoolPosition = "after_act") -> None:
        super().__init__()
        check_num_classes(num_classes)
        self.pool_name = check_pool(pool)
        width = check_width(width)
        backbone = ScaledResNet(Bottleneck, [3, 4, 6, 3], num_classes=1, width=width,
                                replace_stride_with_dilation=(False, False, True))
        backbone.fc = nn.Identity()  # type: ignore[assignment]  # a Linear slot; the backbone's own forward (used by convert's probe) still works
        self.backbone = apply_pool(backbone, pool, strided_conv=strided_conv, pool_kwargs=pool_kwargs, init=init,
                                   pool_position=pool_position)
        low_ch = scaled(256, width)
        high_ch = scaled(2048, width)
        head = scaled(256, width)
        self.aspp = ASPP(high_ch, list(atrous_rates), head)
        proj = scaled(48, width)
        self.low_proj = nn.Sequential(*_cbr(low_ch, proj, 1))
        self.decoder = nn.Sequential(*_cbr(head + proj, head, 3), *_cbr(head, head, 3))
        self.classifier = nn.Conv2d(head, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        b: Any = self.backbone  # a torchvision ResNet (untyped)
        f = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        low = b.layer1(f)
        high = b.layer4(b.layer3(b.layer2(low)))
        y = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, self.low_proj(low)], dim=1))
        return F.interpolate(self.classifier(y), size=size, mode="bilinear", align_corners=False)


def deeplabv3plus_resnet50(*, num_classes: int, pool: str = "max", width: float = 1.0, strided_conv: bool = False,
                           pool_kwargs: Mapping[str, Any] | None = None, init: Init = "paper",
                           pool_position: PoolPosition = "after_act", **kwargs: Any) -> DeepLabV3Plus:
    """DeepLabV3+-ResNet50 (see :class:`DeepLabV3Plus`)."""
    return DeepLabV3Plus(num_classes, pool=pool, width=width, strided_conv=strided_conv, pool_kwargs=pool_kwargs,
                         init=init, pool_position=pool_position, **kwargs)
