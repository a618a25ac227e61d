"""torchvision ResNet18/50 with their down-sampling turned into a chosen pool.

``pool="max"`` leaves the networks as torchvision builds them.  Any other pool replaces the
stem max pool (ResNets) and, with ``strided_conv=True``, every stride-2 convolution after the
stem runs at stride 1 with the pool placed ``pool_position="after_act"`` (default: after the
convolution's BatchNorm and activation, the antialiased-cnns layout) or ``"after_conv"``
(directly after the convolution, what :func:`liftpool.convert.convert` does).  ResNet's 1x1
stride-2 projection shortcuts are pooled before their convolution in both cases.
(MobileNetV2: :mod:`liftpool.models.mobilenet`.)  With ``width=1.0`` the module names and shapes are torchvision's, so
its
ImageNet weights load with ``strict=False`` (only the new pooling parameters are missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.misc import Conv2dNormActivation

from ..convert import convert
from ..pooling import make_pool
from ..pooling.placement import Init, PooledConv2d, init_kwargs
from ._common import check_num_classes, check_pool, check_pool_kwargs, check_width, scaled

__all__ = [
    "PoolPosition",
    "PostActPoolBasicBlock",
    "PostActPoolBottleneck",
    "ScaledResNet",
    "apply_pool",
    "resnet18",
    "resnet50",
]

PoolPosition = Literal["after_act", "after_conv"]
"""Where a strided convolution's pool goes: after its norm + activation, or right after the convolution."""

_POSITIONS: tuple[str, ...] = ("after_act", "after_conv")


class ScaledResNet(ResNet):  # type: ignore[misc]  # torchvision ships no type information
    """torchvision's :class:`~torchvision.models.ResNet` with every width multiplied by ``width``.

    ``width=1.0`` gives exactly torchvision's module tree (same state_dict keys and shapes).

    Examples:
        >>> import torch
        >>> net = ScaledResNet(BasicBlock, [2, 2, 2, 2], num_classes=5, width=0.125)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        width: float = 1.0,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        width = check_width(width)
        check_num_classes(num_classes)
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = (False, False, False)
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(f"replace_stride_with_dilation must have 3 entries, got {replace_stride_with_dilation!r}")
        norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        planes = [scaled(p, width) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, planes[2], layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, planes[3], layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)


class PostActPoolBasicBlock(BasicBlock):  # type: ignore[misc]  # torchvision ships no type information
    """A torchvision :class:`BasicBlock` whose stride-2 ``conv1`` runs at stride 1, pooled after ``bn1`` + ReLU.

    ``conv1 (stride 1) -> bn1 -> relu -> pool -> conv2 -> bn2 (+ shortcut) -> relu``: the
    placement of antialiased-cnns and timm's ``aa_layer``. Same parameter names as the block
    it is built from, plus ``pool``.
    """

    def __init__(self, block: BasicBlock, pool: nn.Module) -> None:
        nn.Module.__init__(self)
        self.conv1, self.bn1, self.relu = block.conv1, block.bn1, block.relu
        self.conv2, self.bn2, self.downsample = block.conv2, block.bn2, block.downsample
        self.stride = block.stride
        self.conv1.stride = (1, 1)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.pool(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class PostActPoolBottleneck(Bottleneck):  # type: ignore[misc]  # torchvision ships no type information
    """A torchvision :class:`Bottleneck` whose stride-2 ``conv2`` runs at stride 1, pooled after ``bn2`` + ReLU."""

    def __init__(self, block: Bottleneck, pool: nn.Module) -> None:
        nn.Module.__init__(self)
        self.conv1, self.bn1, self.conv2, self.bn2 = block.conv1, block.bn1, block.conv2, block.bn2
        self.conv3, self.bn3, self.relu, self.downsample = block.conv3, block.bn3, block.relu, block.downsample
        self.stride = block.stride
        self.conv2.stride = (1, 1)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.pool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _pool_after_act(net: nn.Module, pool: str, kw: dict[str, Any]) -> None:
    """Put ``pool`` after the activation of every stride-2 convolution (ResNet blocks, MobileNetV2)."""
    stem = next((n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    for name, parent in list(net.named_modules()):
        for child_name, block in list(parent.named_children()):
            path = f"{name}.{child_name}" if name else child_name
            if isinstance(block, (PostActPoolBasicBlock, PostActPoolBottleneck)):
                continue
            if isinstance(block, (BasicBlock, Bottleneck)):
                conv = block.conv1 if isinstance(block, BasicBlock) else block.conv2
                if tuple(conv.stride) != (2, 2):
                    continue
                ds = block.downsample
                if ds is not None and isinstance(ds[0], nn.Conv2d) and tuple(ds[0].stride) == (2, 2):
                    ds[0] = PooledConv2d.from_conv(ds[0], make_pool(pool, ds[0].in_channels, **kw), pool_first=True)
                cls = PostActPoolBasicBlock if isinstance(block, BasicBlock) else PostActPoolBottleneck
                setattr(parent, child_name, cls(block, make_pool(pool, conv.out_channels, **kw)))
            elif isinstance(block, Conv2dNormActivation) and tuple(block[0].stride) == (2, 2) and f"{path}.0" != stem:
                # MobileNetV2's conv-BN-ReLU6 unit; the stem convolution stays strided
                block[0].stride = (1, 1)
                block.append(make_pool(pool, block[0].out_channels, **kw))


def apply_pool(
    net: nn.Module,
    pool: str,
    *,
    strided_conv: bool,
    pool_kwargs: Mapping[str, Any] | None,
    init: Init = "paper",
    pool_position: PoolPosition = "after_act",
) -> nn.Module:
    """Convert a torchvision ResNet / MobileNetV2 ``net`` in place to ``pool``.

    Replaces the stem max pool (if any) and, with ``strided_conv``, every stride-2 convolution
    after the stem (placement ``pool_position``). Nothing changes for ``"max"`` without
    ``strided_conv``.
    """
    pk = check_pool_kwargs(pool_kwargs)
    if pool_position not in _POSITIONS:
        raise ValueError(f"pool_position must be one of {_POSITIONS}, got {pool_position!r}")
    if pool == "max" and not strided_conv:
        if pk:
            raise ValueError("pool_kwargs has no effect with pool='max' (the torchvision network is kept as built)")
        return net
    if init != "paper" and pool != "lift":
        raise ValueError(f"init={init!r} only applies to pool='lift', got pool={pool!r}")
    kw: dict[str, Any] = {"init": init} if pool == "lift" else {}
    has_pool = any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    conv_in_convert = strided_conv and pool_position == "after_conv"
    if has_pool or conv_in_convert:
        convert(net, pool=pool, targets=("maxpool",) if has_pool else (), strided_conv=conv_in_convert,
                inplace=True, pool_kwargs=pk, **kw)
    if strided_conv and pool_position == "after_act":
        _pool_after_act(net, pool, {**(init_kwargs(init) if pool == "lift" else {}), **pk})
    return net


def _resnet(block: Any, layers: list[int], *, num_classes: int, pool: str, width: float, strided_conv: bool,
            pool_kwargs: Mapping[str, Any] | None, init: Init, pool_position: PoolPosition, **kwargs: Any) -> nn.Module:
    check_pool(pool)
    net = ScaledResNet(block, layers, num_classes=num_classes, width=width, **kwargs)
    return apply_pool(net, pool, strided_conv=strided_conv, pool_kwargs=pool_kwargs, init=init,
                      pool_position=pool_position)


def resnet18(*, num_classes: int, pool: str = "max", width: float = 1.0, strided_conv: bool = False,
             pool_kwargs: Mapping[str, Any] | None = None, init: Init = "paper",
             pool_position: PoolPosition = "after_act", **kwargs: Any) -> nn.Module:
    """ResNet18 (torchvision layout) with ``pool`` in place of the stem max pool.

    Args:
        num_classes: classifier outputs.
        pool: pooling name; ``"max"`` = torchvision's network unchanged.
        width: channel multiplier (1.0 = torchvision).
        strided_conv: also replace the stride-2 convolutions of ``layer2..4`` (and their
            1x1 projection shortcuts) by stride-1 convolutions + ``pool``.
        pool_position: ``"after_act"`` (default: conv -> BN -> ReLU -> pool) or
            ``"after_conv"`` (conv -> pool -> BN -> ReLU) for the strided convolutions.
        pool_kwargs: keyword arguments of every new pooling layer.
        init: ``"paper"`` or ``"match"`` (LiftDownPool2d starting as 2x2 average pooling).

    Examples:
        >>> import torch
        >>> resnet18(num_classes=3, pool="lift", width=0.125)(torch.randn(1, 3, 33, 33)).shape
        torch.Size([1, 3])
    """
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, pool=pool, width=width,
                   strided_conv=strided_conv, pool_kwargs=pool_kwargs, init=init, pool_position=pool_position,
                   **kwargs)


def resnet50(*, num_classes: int, pool: str = "max", width: float = 1.0, strided_conv: bool = False,
             pool_kwargs: Mapping[str, Any] | None = None, init: Init = "paper",
             pool_position: PoolPosition = "after_act", **kwargs: Any) -> nn.Module:
    """ResNet50 (torchvision layout) with ``pool`` in place of the stem max pool (see :func:`resnet18`)."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes, pool=pool, width=width,
                   strided_conv=strided_conv, pool_kwargs=pool_kwargs, init=init, pool_position=pool_position,
                   **kwargs)
