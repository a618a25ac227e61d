"""Baseline down- and up-pooling layers with LiftPool's conventions.

Every down-pooling layer here takes ``(channels, kernel_size=..., *, return_details=False,
device=None, dtype=None)``, halves each spatial axis to ``ceil(n/2)`` and, with
``return_details=True``, returns ``(pooled, details)`` for its paired up-pooling layer,
exactly like :class:`liftpool.LiftDownPool2d` / :class:`liftpool.LiftUpPool2d`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int, check_spatial_input
from ..functional import pad_axis
from .registry import register_pool, register_updown

__all__ = [
    "MaxDownPool2d",
    "AvgDownPool2d",
    "SkipDownPool2d",
    "BlurPool2d",
    "MaxBlurPool2d",
    "MaxUpPool2d",
    "MaxUpBlurPool2d",
    "MaxDetails2d",
    "binomial_filter",
    "check_pool_input",
]


def check_pool_input(module: nn.Module, x: Any, channels: int, name: str = "x") -> None:
    """Raise a clear ``TypeError``/``ValueError`` unless ``x`` is a float ``(N, C, H, W)`` tensor."""
    check_spatial_input(type(module).__name__, x, channels=channels, spatial_dims=2, name=name)


def _check_kernel(kernel_size: Any, minimum: int = 1) -> int:
    return check_int("kernel_size", kernel_size, minimum)


def _check_channels(channels: Any) -> int:
    return check_int("channels", channels, 1)


def binomial_filter(size: int) -> Tensor:
    """Normalised 1D binomial filter (row ``size - 1`` of Pascal's triangle / its sum).

    Examples:
        >>> binomial_filter(3)
        tensor([0.2500, 0.5000, 0.2500], dtype=torch.float64)
    """
    _check_kernel(size)
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    return row / row.sum()


class MaxDetails2d(NamedTuple):
    """What :class:`MaxUpPool2d` needs: the argmax indices and the input size ``(H, W)``."""

    indices: Tensor
    size: tuple[int, ...]


class _Pool2d(nn.Module):
    """Shared frame: channel count, kernel size, output size ``ceil(n/2)``."""

    def __init__(self, channels: int, kernel_size: int, *, return_details: bool = False) -> None:
        super().__init__()
        self.channels = _check_channels(channels)
        self.kernel_size = _check_kernel(kernel_size)
        self.return_details = bool(return_details)

    def _padding(self) -> tuple[int, bool]:
        k = self.kernel_size
        return ((k - 1) // 2, False) if k % 2 else ((k - 2) // 2, True)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}"


@register_pool("max")
class MaxDownPool2d(_Pool2d):
    """Max pooling with stride 2 (kernel 2 by default), output ``ceil(n/2)``.

    With ``return_details=True`` it returns ``(pooled, MaxDetails2d(indices, size))``
    for :class:`MaxUpPool2d` (SegNet's max-unpooling).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> MaxDownPool2d(3)(torch.randn(1, 3, 7, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, MaxDetails2d]:
        check_pool_input(self, x, self.channels)
        pad, ceil = self._padding()
        if self.return_details:
            y, idx = F.max_pool2d(x, self.kernel_size, 2, pad, ceil_mode=ceil, return_indices=True)
            return y, MaxDetails2d(idx, (int(x.shape[2]), int(x.shape[3])))
        return F.max_pool2d(x, self.kernel_size, 2, pad, ceil_mode=ceil)


@register_pool("avg")
class AvgDownPool2d(_Pool2d):
    """Average pooling with stride 2 (kernel 2 by default; padding excluded from the mean).

    Examples:
        >>> AvgDownPool2d(1)(torch.ones(1, 1, 5, 5)).shape
        torch.Size([1, 1, 3, 3])
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        pad, ceil = self._padding()
        y = F.avg_pool2d(x, self.kernel_size, 2, pad, ceil_mode=ceil, count_include_pad=False)
        return (y, None) if self.return_details else y


@register_pool("skip")
class SkipDownPool2d(_Pool2d):
    """"Skip" (Springenberg et al. 2015; Kobayashi 2019): a learned stride-2 convolution.

    ``Conv2d(C, C, kernel_size, stride=2, padding=(k-1)//2, groups=groups)``; an even
    kernel or odd input is edge-padded at the end so the output is ``ceil(n/2)``.

    Examples:
        >>> SkipDownPool2d(4)(torch.randn(2, 4, 9, 9)).shape
        torch.Size([2, 4, 5, 5])
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, *, groups: int = 1, bias: bool = True,
        return_details: bool = False, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        if channels % groups:
            raise ValueError(f"groups must divide channels={channels}, got {groups}")
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride=2, padding=0, groups=groups, bias=bias,
                              device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        k = self.kernel_size
        for dim in (-2, -1):
            n = x.shape[dim]
            # total padding so that floor((n + pad - k) / 2) + 1 == ceil(n / 2)
            total = 2 * ((n + 1) // 2) - 2 - n + k
            left = min((k - 1) // 2, total)
            x = pad_axis(x, dim, left, total - left, "zeros")
        y = self.conv(x)
        return (y, None) if self.return_details else y


@register_pool("blur")
class BlurPool2d(_Pool2d):
    """BlurPool (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019).

    Low-pass filter with the normalised binomial kernel of ``kernel_size`` taps in each
    direction (reflection padding, as in the paper's code), then subsample by 2. No
    parameters. Output ``ceil(n/2)``.

    Examples:
        >>> y = BlurPool2d(2, 3)(torch.ones(1, 2, 6, 6))
        >>> y.shape, bool(torch.allclose(y, torch.ones_like(y)))
        (torch.Size([1, 2, 3, 3]), True)
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, *, stride: int = 2, padding_mode: str = "reflect",
        return_details: bool = False, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        self.padding_mode = padding_mode
        f = binomial_filter(kernel_size)
        filt = (f[:, None] * f[None, :]).to(dtype or torch.get_default_dtype())
        self.register_buffer(
            "filt", filt.expand(channels, 1, kernel_size, kernel_size).clone().to(device), persistent=False
        )

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        k = self.kernel_size
        for dim in (-2, -1):
            x = pad_axis(x, dim, (k - 1) // 2, k // 2, self.padding_mode)
        filt = cast(Tensor, self.filt)  # a registered buffer
        y = F.conv2d(x, filt.to(x.dtype), stride=self.stride, groups=self.channels)
        return (y, None) if self.return_details else y

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}"


@register_pool("maxblur")
class MaxBlurPool2d(_Pool2d):
    """Zhang's anti-aliased max pooling: max over 2x2 at stride 1, then :class:`BlurPool2d`.

    The input is edge-padded by one sample at the end of each axis before the
    stride-1 max so the output is ``ceil(n/2)``.

    Examples:
        >>> MaxBlurPool2d(3)(torch.randn(1, 3, 7, 8)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, *, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.blur = BlurPool2d(channels, kernel_size, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        x = pad_axis(pad_axis(x, -1, 0, 1, "replicate"), -2, 0, 1, "replicate")
        y = self.blur(F.max_pool2d(x, 2, 1))
        return (y, None) if self.return_details else y


class MaxUpPool2d(nn.Module):
    """SegNet's max-unpooling, paired with a :class:`MaxDownPool2d` (``return_details=True``).

    Places each value at its recorded argmax position and zeros elsewhere.

    Examples:
        >>> down = MaxDownPool2d(2, return_details=True)
        >>> y, det = down(torch.randn(1, 2, 5, 6))
        >>> MaxUpPool2d(down)(y, det).shape
        torch.Size([1, 2, 5, 6])
    """

    def __init__(self, down: MaxDownPool2d) -> None:
        super().__init__()
        if not isinstance(down, MaxDownPool2d):
            raise TypeError(f"{type(self).__name__} needs the paired MaxDownPool2d, got {type(down).__name__}")
        self.channels = down.channels
        self.kernel_size = down.kernel_size

    def forward(self, y: Tensor, details: MaxDetails2d) -> Tensor:
        check_pool_input(self, y, self.channels, "y")
        if not isinstance(details, MaxDetails2d):
            raise TypeError(f"{type(self).__name__}: details must be a MaxDetails2d, got {type(details).__name__}")
        if details.indices.shape != y.shape:
            raise ValueError(f"details.indices has shape {tuple(details.indices.shape)} but y has {tuple(y.shape)}")
        flat = y.flatten(2)
        out = y.new_zeros(y.shape[:2] + (details.size[0] * details.size[1],))
        out = out.scatter(2, details.indices.flatten(2), flat)
        return out.view(y.shape[:2] + tuple(details.size))


class MaxUpBlurPool2d(MaxUpPool2d):
    """Max-unpooling followed by a stride-1 binomial blur (the paper's MaxUpPool + BlurPool).

    Examples:
        >>> down = MaxDownPool2d(2, return_details=True)
        >>> y, det = down(torch.randn(1, 2, 6, 6))
        >>> MaxUpBlurPool2d(down)(y, det).shape
        torch.Size([1, 2, 6, 6])
    """

    def __init__(self, down: MaxDownPool2d, kernel_size: int = 3) -> None:
        super().__init__(down)
        self.blur = BlurPool2d(down.channels, kernel_size, stride=1)

    def forward(self, y: Tensor, details: MaxDetails2d) -> Tensor:
        return self.blur(super().forward(y, details))


@register_updown("max", down=MaxDownPool2d)
def max_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """Max pooling with ``return_details`` and the max-unpooling that inverts its selection."""
    down = MaxDownPool2d(channels, return_details=True, **kwargs)
    return down, MaxUpPool2d(down)


@register_updown("maxblur", down=MaxDownPool2d)
def maxblur_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """Max pooling with ``return_details`` and max-unpooling followed by a blur."""
    down = MaxDownPool2d(channels, return_details=True, **kwargs)
    return down, MaxUpBlurPool2d(down)
