r"""Predictors and updaters (``P`` and ``U``) and the 1D lifting transforms built from them.

* :class:`LearnedLifter` — the paper's ``Tanh ∘ Conv(k=1, groups=G2) ∘ ReLU ∘ Conv(k=K, groups=G1)``
  applied along one spatial axis (a ``(1, K)`` kernel along W, ``(K, 1)`` along H, ...).
* :class:`LinearLifter` — a fixed linear filter, for the classic wavelets (Haar, CDF 5/3, CDF 9/7).
* :class:`LiftingTransform` — a sequence of ``(P, U)`` pairs plus an optional final scaling:
  one 1D lifting transform, with ``forward`` and its exact ``inverse``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import functional as LF
from .constants import PADDING_MODES, WAVELET_NAMES, PaddingMode

__all__ = ["LearnedLifter", "LinearLifter", "LiftingTransform", "wavelet_transform"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _axis_kernel_shape(ndim: int, dim: int, k: int) -> tuple[int, ...]:
    """Kernel spatial shape with ``k`` taps along ``dim`` (negative) and 1 elsewhere."""
    spatial = ndim - 2
    shape = [1] * spatial
    shape[spatial + dim] = k
    return tuple(shape)


class LearnedLifter(nn.Module):
    r"""The paper's learned predictor / updater, acting along one axis.

    .. math::
        f(x) = \tanh\big(W_2 * \mathrm{ReLU}(W_1 *_{K} x + b_1) + b_2\big)

    where :math:`W_1` is a K-tap convolution along the lifting axis with
    ``groups=G1`` (default depthwise, ``G1 = C``) and :math:`W_2` a 1x1
    convolution with ``groups=G2`` (default per-channel, ``G2 = C``). The K-tap
    convolution is "same"-padded with ``padding_mode``, so the output has the
    input's shape. The same weights serve every axis: the taps run as a
    ``(1, K)`` kernel along W and a ``(K, 1)`` kernel along H.

    Args:
        channels: number of channels ``C``.
        kernel_size: odd number of taps ``K``.
        groups: ``(G1, G2)``; each must divide ``channels``.
        padding_mode: boundary extension of the K-tap convolution.

    Shape:
        - Input: ``(N, C, *spatial)`` with 1 to 3 spatial dims; ``dim`` picks the axis.
        - Output: same as input.

    Examples:
        >>> f = LearnedLifter(4, 5)
        >>> f(torch.randn(2, 4, 6, 6), -1).shape
        torch.Size([2, 4, 6, 6])
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        *,
        groups: tuple[int, int] | None = None,
        padding_mode: PaddingMode = "reflect",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        g1, g2 = groups if groups is not None else (channels, channels)
        self.channels = channels
        self.kernel_size = kernel_size
        self.groups = (g1, g2)
        self.padding_mode = padding_mode
        self.weight = nn.Parameter(torch.empty(channels, channels // g1, kernel_size, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(channels, device=device, dtype=dtype))
        self.pw_weight = nn.Parameter(torch.empty(channels, channels // g2, device=device, dtype=dtype))
        self.pw_bias = nn.Parameter(torch.empty(channels, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self, zero: bool = False) -> None:
        """PyTorch's default convolution init; ``zero=True`` zeroes the 1x1 stage so ``f == 0``."""
        for w, b in ((self.weight, self.bias), (self.pw_weight, self.pw_bias)):
            fan_in = w[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            # kaiming_uniform_(a=sqrt(5)) as nn.Conv uses gives the same bound
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)
        if zero:
            nn.init.zeros_(self.pw_weight)
            nn.init.zeros_(self.pw_bias)

    def forward(self, x: Tensor, dim: int) -> Tensor:
        spatial = x.ndim - 2
        k = self.kernel_size
        w = self.weight.reshape(self.weight.shape[:2] + _axis_kernel_shape(x.ndim, dim, k))
        xp = LF.pad_axis(x, dim, k // 2, k // 2, self.padding_mode)
        y = _CONV[spatial](xp, w, self.bias, groups=self.groups[0])
        y = torch.relu(y)
        g2 = self.groups[1]
        if g2 == self.channels:
            view = (1, -1) + (1,) * spatial
            y = torch.addcmul(self.pw_bias.view(view), y, self.pw_weight.view(view))
        else:
            w2 = self.pw_weight.reshape(self.pw_weight.shape + (1,) * spatial)
            y = _CONV[spatial](y, w2, self.pw_bias, groups=g2)
        return torch.tanh(y)

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, kernel_size={self.kernel_size}, groups={self.groups}, "
            f"padding_mode={self.padding_mode!r}"
        )


class LinearLifter(nn.Module):
    r"""A fixed linear filter along one axis: ``f(x)[k] = Σ_j taps[j] · x[k + offset + j]``.

    Samples outside the signal come from ``padding_mode``.  Used for the classic
    lifting wavelets; it has no parameters.

    Examples:
        CDF 5/3 predictor ``P(x_e)[k] = (x_e[k] + x_e[k+1]) / 2``:

        >>> P = LinearLifter((0.5, 0.5), offset=0, padding_mode="replicate")
        >>> P(torch.tensor([[[0.0, 2.0, 4.0]]]), -1)
        tensor([[[1., 3., 4.]]])
    """

    def __init__(self, taps: Sequence[float], offset: int = 0, *, padding_mode: PaddingMode = "reflect") -> None:
        super().__init__()
        if len(taps) == 0:
            raise ValueError("taps must not be empty")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.taps = tuple(float(t) for t in taps)
        self.offset = int(offset)
        self.padding_mode = padding_mode

    def forward(self, x: Tensor, dim: int) -> Tensor:
        n = x.shape[dim]
        left = max(0, -self.offset)
        right = max(0, self.offset + len(self.taps) - 1)
        xp = LF.pad_axis(x, dim, left, right, self.padding_mode)
        out = None
        for j, t in enumerate(self.taps):
            term = xp.narrow(dim, left + self.offset + j, n) * t
            out = term if out is None else out + term
        assert out is not None
        return out

    def extra_repr(self) -> str:
        return f"taps={self.taps}, offset={self.offset}, padding_mode={self.padding_mode!r}"


class LiftingTransform(nn.Module):
    """One 1D lifting transform: ``(P_1, U_1), ..., (P_m, U_m)`` and an optional final scaling.

    ``forward(x, dim)`` returns ``(s, d, constraints)`` (see
    :func:`liftpool.functional.lift_1d`); :meth:`inverse` undoes it exactly.

    Examples:
        >>> t = LiftingTransform([(LearnedLifter(3, 3), LearnedLifter(3, 3))]).double()
        >>> x = torch.randn(1, 3, 9, dtype=torch.float64)
        >>> s, d, _ = t(x, -1)
        >>> torch.allclose(t.inverse(s, d, -1, 9), x, rtol=0, atol=1e-12)
        True
    """

    def __init__(self, pairs: Sequence[tuple[nn.Module, nn.Module]], scale: tuple[float, float] | None = None) -> None:
        super().__init__()
        if len(pairs) == 0:
            raise ValueError("pairs must hold at least one (P, U) pair")
        self.P = nn.ModuleList(p for p, _ in pairs)
        self.U = nn.ModuleList(u for _, u in pairs)
        self.scale = scale

    @property
    def steps(self) -> list[tuple[nn.Module, nn.Module]]:
        return list(zip(self.P, self.U))

    def forward(self, x: Tensor, dim: int, constraints: bool = False) -> tuple[Tensor, Tensor, LF.Constraints | None]:
        return LF.lift_1d(x, dim, self.steps, scale=self.scale, constraints=constraints)

    def inverse(self, s: Tensor, d: Tensor, dim: int, length: int | None = None) -> Tensor:
        return LF.unlift_1d(s, d, dim, self.steps, length=length, scale=self.scale)


# CDF 9/7 lifting factorisation (Daubechies & Sweldens 1998). The final scaling
# (1/K, K) with K = 1.230174104914001 gives the approximation unit DC gain (a
# constant signal keeps its value) and the detail the same scale as Haar and 5/3
# (all three map to PyWavelets as cA = sqrt(2)·s, cD = -d/sqrt(2)).
_A, _B, _G, _D = -1.586134342059924, -0.052980118572961, 0.882911075530934, 0.443506852043971
_K97 = 1.230174104914001


def wavelet_transform(name: str, *, padding_mode: PaddingMode = "reflect") -> LiftingTransform:
    """The classic lifting wavelets as fixed-filter :class:`LiftingTransform` objects.

    * ``haar``: ``d = x_o - x_e``, ``s = x_e + d/2`` (``s`` = pairwise mean).
    * ``cdf53`` (LeGall 5/3, the paper's Eq. 13-14): ``d_k = x_{2k+1} - (x_{2k} + x_{2k+2})/2``,
      ``s_k = x_{2k} + (d_{k-1} + d_k)/4``.
    * ``cdf97``: two predict/update pairs and a final scaling ``(1/K, K)``,
      ``K = 1.230174...``, so that ``s`` has unit DC gain.

    Examples:
        >>> t = wavelet_transform("cdf53")
        >>> s, d, _ = t(torch.arange(8.0).view(1, 1, 8), -1)
        >>> d  # a linear signal has zero detail in the interior
        tensor([[[0., 0., 0., 2.]]])
    """
    pm = padding_mode
    if name == "haar":
        pairs = [(LinearLifter((1.0,), 0, padding_mode=pm), LinearLifter((0.5,), 0, padding_mode=pm))]
        return LiftingTransform(pairs)
    if name == "cdf53":
        pairs = [(LinearLifter((0.5, 0.5), 0, padding_mode=pm), LinearLifter((0.25, 0.25), -1, padding_mode=pm))]
        return LiftingTransform(pairs)
    if name == "cdf97":
        pairs = [
            (LinearLifter((-_A, -_A), 0, padding_mode=pm), LinearLifter((_B, _B), -1, padding_mode=pm)),
            (LinearLifter((-_G, -_G), 0, padding_mode=pm), LinearLifter((_D, _D), -1, padding_mode=pm)),
        ]
        return LiftingTransform(pairs, scale=(1.0 / _K97, _K97))
    raise ValueError(f"wavelet must be one of {WAVELET_NAMES}, got {name!r}")
