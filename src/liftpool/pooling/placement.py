"""Where a pooling layer sits in a network: the building blocks of :func:`liftpool.convert` and the models.

* :class:`PooledConv2d`: a convolution run at stride 1 with a down-pooling layer after (or before) it;
* :class:`SizeMatchedPool2d`: a ``ceil(n/2)`` pool cropped/padded to another pool's size rule;
* :class:`TimmLiftDownPool2d`: :class:`~liftpool.LiftDownPool2d` as timm's ``aa_layer``;
* :data:`Init` / :func:`init_kwargs`: how a LiftDownPool2d starts in a pretrained network.
"""

from __future__ import annotations

from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import LiftDownPool2d

__all__ = ["Init", "PooledConv2d", "SizeMatchedPool2d", "TimmLiftDownPool2d", "init_kwargs", "pair", "pool_out_size"]

Init = Literal["paper", "match"]
"""``"paper"``: LiftDownPool2d's defaults (plain band sum, random P/U); ``"match"``: start as AvgPool2d(2)."""

_INITS: tuple[str, ...] = ("paper", "match")


def init_kwargs(init: Init) -> dict[str, Any]:
    """``LiftDownPool2d`` keyword arguments for an ``init`` choice.

    Examples:
        >>> init_kwargs("match")
        {'scale': 0.25, 'zero_init': True}
        >>> init_kwargs("paper")
        {}
    """
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    return {"scale": 0.25, "zero_init": True} if init == "match" else {}


def pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def pool_out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Output length of a PyTorch max/avg pooling along one axis (its documented formula)."""
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


class SizeMatchedPool2d(nn.Module):
    """A pooling layer whose ``ceil(n/2)`` output is cropped (or edge-padded) to another layer's size rule.

    :func:`convert` uses it when the replaced ``MaxPool2d``/``AvgPool2d`` does not produce
    ``ceil(n/2)`` for every ``n`` (e.g. ``MaxPool2d(2)`` gives ``floor(n/2)``), so the
    converted network keeps its output shapes on odd inputs.

    Args:
        pool: a stride-2 down-pooling layer with output ``ceil(n/2)``.
        kernel_size, padding, dilation, ceil_mode: the replaced layer's settings (stride 2).

    Examples:
        >>> import torch
        >>> m = SizeMatchedPool2d(LiftDownPool2d(2), kernel_size=2)
        >>> m(torch.randn(1, 2, 7, 9)).shape
        torch.Size([1, 2, 3, 4])
    """

    def __init__(
        self,
        pool: nn.Module,
        *,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.kernel_size = pair(kernel_size)
        self.padding = pair(padding)
        self.dilation = pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """The replaced layer's output size for an ``h x w`` input."""
        return tuple(  # type: ignore[return-value]
            pool_out_size(n, k, 2, p, d, self.ceil_mode)
            for n, k, p, d in zip((h, w), self.kernel_size, self.padding, self.dilation)
        )

    def forward(self, x: Tensor) -> Tensor:
        th, tw = self.out_size(int(x.shape[-2]), int(x.shape[-1]))
        if th < 1 or tw < 1:
            raise ValueError(
                f"{type(self).__name__}: input {tuple(x.shape)} is too small for the replaced pooling layer"
            )
        y = self.pool(x)
        y = y[..., :th, :tw]
        ph, pw = th - y.shape[-2], tw - y.shape[-1]
        if ph or pw:
            y = F.pad(y, (0, pw, 0, ph), mode="replicate")
        return y

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, padding={self.padding}, dilation={self.dilation}, "
            f"ceil_mode={self.ceil_mode}"
        )


class PooledConv2d(nn.Conv2d):
    """A ``Conv2d`` run at stride 1 with a down-pooling layer ``pool`` after it (or before it).

    It is what :func:`convert` makes of a stride-2 convolution: it *is* an ``nn.Conv2d``
    (same ``weight``/``bias`` names, so pretrained weights load) whose stride is 1, followed by
    ``pool`` (stride 2, output ``ceil(n/2)``).  For ``pool_first=True`` (used for 1x1,
    unpadded convolutions) the pooling runs on the input instead, which gives the same output
    size at a quarter of the cost.  A stride-2 convolution's output size is
    ``floor((m - 1)/2) + 1 = ceil(m/2)`` where ``m`` is its stride-1 output size, so the
    converted layer's output shape always equals the original's.

    Examples:
        >>> import torch
        >>> conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        >>> pc = PooledConv2d.from_conv(conv, LiftDownPool2d(8))
        >>> pc(torch.randn(1, 3, 11, 6)).shape == conv(torch.randn(1, 3, 11, 6)).shape
        True
        >>> pc.weight is conv.weight, pc.stride
        (True, (1, 1))
    """

    def __init__(self, *args: Any, pool: nn.Module | None = None, pool_first: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if tuple(self.stride) != (1, 1):
            raise ValueError(f"PooledConv2d runs its convolution at stride 1, got stride={self.stride}")
        self.pool = pool if pool is not None else nn.Identity()
        self.pool_first = bool(pool_first)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, pool: nn.Module, *, pool_first: bool = False) -> PooledConv2d:
        """Wrap ``conv`` (stride 2), sharing its parameter tensors, with ``pool``."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=1, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, device="meta", pool=pool, pool_first=pool_first,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        for name, buf in conv.named_buffers(recurse=False):
            new.register_buffer(name, buf)
        new.train(conv.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if self.pool_first:
            return super().forward(self.pool(x))
        return self.pool(super().forward(x))

    def extra_repr(self) -> str:
        base: str = super().extra_repr()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
        return base + (", pool_first=True" if self.pool_first else "")


class TimmLiftDownPool2d(LiftDownPool2d):
    """:class:`~liftpool.LiftDownPool2d` as timm's ``aa_layer``, also for dilated (``output_stride`` 8/16) networks.

    ``timm.create_model(name, aa_layer=LiftDownPool2d)`` works for the default output stride:
    timm calls ``aa_layer(channels=C, stride=2)`` after each stride-2 stage's activation (and,
    in a ResNet stem, after a stride-1 3x3 max pool).  With ``output_stride=16`` or ``8`` timm
    also asks for an anti-aliasing layer with ``stride=1`` where a stage switches to dilation;
    a lifting step always halves the map, so this class returns ``nn.Identity()`` there (no
    subsampling happens, so there is nothing to pool) and a LiftDownPool2d otherwise.

    Examples:
        >>> import torch
        >>> TimmLiftDownPool2d(channels=8, stride=1)
        Identity()
        >>> TimmLiftDownPool2d(channels=8, stride=2)(torch.randn(1, 8, 5, 5)).shape
        torch.Size([1, 8, 3, 3])
    """

    def __new__(cls, *args: Any, stride: int = 2, **kwargs: Any) -> Any:  # noqa: D102
        if stride == 1:
            return nn.Identity()
        return super().__new__(cls)
