r"""The pooling zoo: every down-pooling method the LiftPool paper compares against.

Each class follows the core baselines' conventions (:mod:`liftpool.pooling.baselines`):
``(channels, kernel_size=..., *, ..., return_details=False, device=None, dtype=None)``,
input ``(N, C, H, W)`` -> output ``(N, C, ceil(H/2), ceil(W/2))``, bad input gets a clear
``TypeError``/``ValueError``. Each is registered in :data:`liftpool.pooling.POOLS`, so every
model accepts it through ``pool=``:

============  ==========================  ===========================================
name          class                       source
============  ==========================  ===========================================
``"mixed"``   :class:`MixedPool2d`        Lee, Gallagher & Tu, AISTATS 2016
``"gated"``   :class:`GatedPool2d`        Lee, Gallagher & Tu, AISTATS 2016
``"gauss"``   :class:`GaussianPool2d`     Kobayashi, NeurIPS 2019
``"gfgp"``    :class:`GFGPool2d`          Kobayashi, ICCV 2019
``"spectral"``:class:`SpectralPool2d`     Rippel, Snoek & Adams, NeurIPS 2015
``"wavelet"`` :class:`WaveletPool2d`      Williams & Li, ICLR 2018
``"dpp"``     :class:`DPPool2d`           Saeedan, Weber, Goesele & Roth, CVPR 2018
``"s3"``      :class:`S3Pool2d`           Zhai et al., CVPR 2017
============  ==========================  ===========================================

Window geometry (all windowed methods): windows of ``kernel_size`` taps at stride 2,
starting ``(kernel_size - 1) // 2`` samples before the first sample, exactly the windows of
:class:`~liftpool.pooling.MaxDownPool2d` / :class:`~liftpool.pooling.AvgDownPool2d`; samples
of a window that fall outside the input are *excluded* (not zero, not replicated), so a
partial window at an odd border pools only the samples it covers.

Every class has a ``num_parameters(channels, **options)`` class method giving its parameter
count in closed form; :func:`pool_parameter_count` counts the parameters of any registered
pool by building it.

Examples:
    >>> import torch
    >>> from liftpool.pooling import make_pool
    >>> x = torch.randn(2, 8, 9, 10)
    >>> [tuple(make_pool(n, 8).eval()(x).shape) for n in ("mixed", "gated", "gauss", "gfgp")]
    [(2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5)]
    >>> [tuple(make_pool(n, 8).eval()(x).shape) for n in ("spectral", "wavelet", "dpp", "s3")]
    [(2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5)]
    >>> pool_parameter_count("dpp", 64), pool_parameter_count("max", 64)
    (704, 0)
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_choice, check_int, check_positive_float
from .baselines import _check_channels, _Pool2d, binomial_filter, check_pool_input
from .registry import POOLS, register_pool

__all__ = [
    "DPPool2d",
    "GFGPool2d",
    "GatedPool2d",
    "GaussianPool2d",
    "MixedPool2d",
    "S3Pool2d",
    "SpectralPool2d",
    "WaveletPool2d",
    "ZOO",
    "gaussian_pool2d",
    "maxent_pool2d",
    "pool_parameter_count",
    "spectral_pool2d",
    "wavelet_pool2d",
]

#: names this module registers in :data:`liftpool.pooling.POOLS`.
ZOO: tuple[str, ...] = ("gated", "mixed", "gauss", "gfgp", "spectral", "wavelet", "dpp", "s3")


# --------------------------------------------------------------------------- helpers
_check_choice = check_choice
_check_positive_float = check_positive_float


def _check_hidden(hidden: Any, channels: int) -> int:
    if hidden is None:
        return max(1, channels // 2)
    return check_int("hidden", hidden, 1)


def _out_size(n: int) -> int:
    return (n + 1) // 2


def _axis_padding(n: int, k: int) -> tuple[int, int]:
    """``(left, right)`` padding giving ``ceil(n/2)`` windows of ``k`` taps at stride 2.

    ``left = (k-1)//2`` as in max/avg pooling; ``right`` may be negative (crop) for ``k = 1``.
    """
    left = (k - 1) // 2
    total = 2 * _out_size(n) - 2 - n + k
    return left, total - left


def _taps(x: Tensor, k: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """The taps of the stride-2 ``k x k`` windows of ``x``, shape ``(N, C, k*k, Ho, Wo)``.

    Returns ``(taps, mask, count)``: taps outside the input hold 0, ``mask`` (bool,
    ``(k*k, Ho, Wo)``) marks the taps inside the input (``None`` when all are) and ``count``
    is the number of inside taps of each window, shape ``(Ho, Wo)``. Tap ``i*k + j`` is row
    ``i``, column ``j`` of the window.
    """
    N, C, H, W = x.shape
    Ho, Wo = _out_size(H), _out_size(W)
    (lh, rh), (lw, rw) = _axis_padding(H, k), _axis_padding(W, k)
    xp = F.pad(x, (lw, rw, lh, rh)) if (lh, rh, lw, rw) != (0, 0, 0, 0) else x
    if k == 2:  # non-overlapping: a space-to-depth rearrangement
        taps = (
            F.pixel_unshuffle(xp, 2).contiguous().view(N, C, 4, Ho, Wo)
        )  # contiguous: reductions over taps are fastest
    else:
        taps = xp.unfold(2, k, 2).unfold(3, k, 2).permute(0, 1, 4, 5, 2, 3).reshape(N, C, k * k, Ho, Wo)
    if lh == 0 and lw == 0 and rh <= 0 and rw <= 0:  # every window lies inside the input
        return taps, None, torch.full((Ho, Wo), float(k * k), dtype=x.dtype, device=x.device)

    def valid(n: int, left: int, right: int) -> Tensor:
        v = torch.zeros(n + left + right, dtype=torch.bool, device=x.device)
        v[left:left + n] = True
        return v.unfold(0, k, 2).transpose(0, 1)  # (k, out)

    mh, mw = valid(H, lh, rh), valid(W, lw, rw)
    mask = (mh[:, None, :, None] & mw[None, :, None, :]).reshape(k * k, Ho, Wo)
    return taps, mask, mask.sum(dim=0).to(x.dtype)


def _max_avg(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Max and average pooling with exactly the geometry of MaxDownPool2d / AvgDownPool2d."""
    pad, ceil = ((k - 1) // 2, False) if k % 2 else ((k - 2) // 2, True)
    mx = F.max_pool2d(x, k, 2, pad, ceil_mode=ceil)
    av = F.avg_pool2d(x, k, 2, pad, ceil_mode=ceil, count_include_pad=False)
    return mx, av


def _param_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _finish(module: _Pool2d, y: Tensor) -> Any:
    return (y, None) if module.return_details else y


class _ZooPool(_Pool2d):
    """Shared frame of the zoo layers (channels, kernel size, ``return_details``)."""

    @classmethod
    def num_parameters(cls, channels: int, **options: Any) -> int:  # pragma: no cover - overridden
        raise NotImplementedError


# --------------------------------------------------------------------------- mixed / gated
@register_pool("mixed")
class MixedPool2d(_ZooPool):
    r"""Mixed max-average pooling (Lee, Gallagher & Tu, "Generalizing Pooling Functions in
    Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016, Sec. 2.1).

    :math:`f_{mix}(x) = a\,f_{max}(x) + (1-a)\,f_{avg}(x)` with a learned mixing proportion
    :math:`a \in [0, 1]` (stored as-is and clamped to ``[0, 1]`` in the forward pass, so
    ``a = 1`` is exactly max pooling and ``a = 0`` exactly average pooling). ``mode="layer"``
    learns one scalar per layer (the paper's "1 per layer"), ``mode="channel"`` one per
    channel. Max/avg windows are those of :class:`~liftpool.pooling.MaxDownPool2d` and
    :class:`~liftpool.pooling.AvgDownPool2d`.

    Parameters: ``1`` (layer) or ``C`` (channel).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> x = torch.randn(1, 3, 5, 6)
        >>> pool = MixedPool2d(3, init=1.0)
        >>> torch.equal(pool(x), torch.nn.functional.max_pool2d(x, 2, 2, ceil_mode=True))
        True
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, mode: Literal["layer", "channel"] = "layer",
        init: float = 0.5, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.mode = _check_choice("mode", mode, ("layer", "channel"))
        init = float(init)
        if not 0.0 <= init <= 1.0:
            raise ValueError(f"init (the mixing proportion a) must lie in [0, 1], got {init}")
        n = 1 if mode == "layer" else channels
        self.alpha = nn.Parameter(torch.full((n,), init, device=device, dtype=dtype))

    @classmethod
    def num_parameters(cls, channels: int, *, mode: str = "layer", **_: Any) -> int:
        return 1 if mode == "layer" else _check_channels(channels)

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        mx, av = _max_avg(x, self.kernel_size)
        a = self.alpha.clamp(0.0, 1.0).to(x.dtype).view(1, -1, 1, 1)
        return _finish(self, a * mx + (1 - a) * av)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}"


@register_pool("gated")
class GatedPool2d(_ZooPool):
    r"""Gated max-average pooling (Lee, Gallagher & Tu, AISTATS 2016, Sec. 2.2).

    :math:`f_{gate}(x) = \sigma(\omega^\top x)\,f_{max}(x) + (1-\sigma(\omega^\top x))\,f_{avg}(x)`:
    a learned gating mask :math:`\omega` of the pooling region's size (``k x k``) is dotted
    with each region (per channel; taps outside the input count as 0, no bias), and the
    sigmoid of the result mixes max and average pooling *per region*. ``mode="layer"``
    shares one mask over all channels (the paper's "1 per layer"), ``mode="channel"``
    learns one mask per channel.

    Parameters: ``k*k`` (layer) or ``C*k*k`` (channel). Initialised like a convolution
    (uniform in ``±1/k``).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = GatedPool2d(4)
        >>> pool(torch.randn(2, 4, 7, 7)).shape, pool.weight.numel()
        (torch.Size([2, 4, 4, 4]), 4)
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, mode: Literal["layer", "channel"] = "layer",
        return_details: bool = False, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.mode = _check_choice("mode", mode, ("layer", "channel"))
        n = 1 if mode == "layer" else channels
        self.weight = nn.Parameter(torch.empty(n, 1, kernel_size, kernel_size, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / self.kernel_size
        nn.init.uniform_(self.weight, -bound, bound)

    @classmethod
    def num_parameters(cls, channels: int, kernel_size: int = 2, *, mode: str = "layer", **_: Any) -> int:
        return kernel_size * kernel_size * (1 if mode == "layer" else _check_channels(channels))

    def gate(self, x: Tensor) -> Tensor:
        """The per-region gate :math:`\\sigma(\\omega^\\top x)`, shape ``(N, C, ceil(H/2), ceil(W/2))``."""
        k = self.kernel_size
        (lh, rh), (lw, rw) = _axis_padding(x.shape[2], k), _axis_padding(x.shape[3], k)
        w = self.weight.to(x.dtype).expand(self.channels, 1, k, k)
        return torch.sigmoid(F.conv2d(F.pad(x, (lw, rw, lh, rh)), w, stride=2, groups=self.channels))

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        mx, av = _max_avg(x, self.kernel_size)
        g = self.gate(x)
        return _finish(self, g * mx + (1 - g) * av)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode!r}"


# --------------------------------------------------------------------------- Kobayashi
def gaussian_pool2d(x: Tensor, eta: Tensor, kernel_size: int = 2, *, eps: float = 1e-6) -> Tensor:
    r"""Gaussian-based pooling with a given :math:`\eta`: :math:`\mu_X + \eta\,\sigma_X` per window.

    :math:`\mu_X`, :math:`\sigma_X` are the mean and (population) standard deviation of each
    window, :math:`\sigma_X = \sqrt{\max(E[X^2]-\mu_X^2, \epsilon)}`. ``eta`` broadcasts
    against the output ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> x = torch.tensor([[[[1., 3.], [1., 3.]]]])
        >>> gaussian_pool2d(x, torch.tensor(0.5))
        tensor([[[[2.5000]]]])
    """
    mu, m2 = _max_avg(x, kernel_size)[1], _max_avg(x * x, kernel_size)[1]
    sigma = torch.sqrt(torch.clamp(m2 - mu * mu, min=eps))
    return mu + eta * sigma


def maxent_pool2d(x: Tensor, lam: Tensor, kernel_size: int = 2) -> Tensor:
    r"""Maximum-entropy (softmax-weighted) local pooling: :math:`\sum_i x_i e^{\lambda x_i} / \sum_i e^{\lambda x_i}`.

    The local pooling form of GFGP (Kobayashi, ICCV 2019): ``lam = 0`` is average pooling,
    ``lam -> +inf`` max pooling, and for ``lam >= 0`` the output lies between the window's
    mean and maximum. ``lam`` broadcasts against the output ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> x = torch.tensor([[[[1., 3.], [1., 3.]]]])
        >>> maxent_pool2d(x, torch.tensor(0.0)), maxent_pool2d(x, torch.tensor(50.0))
        (tensor([[[[2.]]]]), tensor([[[[3.]]]]))
    """
    taps, mask, _ = _taps(x, kernel_size)
    lam = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    z = (lam.unsqueeze(2) if lam.ndim == 4 else lam) * taps
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))
    return (torch.softmax(z, dim=2) * taps).sum(dim=2)


class _GlobalEstimator(nn.Module):
    """GAP -> FC(C, h) -> BN -> ReLU: the shared trunk of Kobayashi's parameter estimators."""

    def __init__(self, channels: int, hidden: int, device: Any, dtype: Any) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, hidden, device=device, dtype=dtype)
        self.bn = nn.BatchNorm1d(hidden, device=device, dtype=dtype)

    def forward(self, x: Tensor, owner: nn.Module) -> Tensor:
        if self.training and x.shape[0] < 2:
            raise ValueError(
                f"{type(owner).__name__} estimates its pooling parameters with batch normalisation over "
                f"the batch, so training needs a batch of >= 2 samples, got N={x.shape[0]} (use .eval(), or "
                f"drop a last batch of 1 sample, e.g. DataLoader(..., drop_last=True))"
            )
        z = x.mean(dim=(2, 3)).to(self.fc.weight.dtype)
        return torch.relu(self.bn(self.fc(z)))


def _head(hidden: int, channels: int, device: Any, dtype: Any) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, channels, device=device, dtype=dtype),
                         nn.BatchNorm1d(channels, device=device, dtype=dtype))


@register_pool("gauss")
class GaussianPool2d(_ZooPool):
    r"""Gaussian-based pooling (Kobayashi, "Gaussian-Based Pooling for Convolutional Neural
    Networks", NeurIPS 2019; the LiftPool paper cites it as Kobayashi 2019a).

    Each window's activations are summarised by their mean :math:`\mu_X` and standard
    deviation :math:`\sigma_X`, and pooled to :math:`Y = \mu_X + \eta\,\sigma_X`, where
    :math:`\eta` follows the paper's *inverse-softplus Gaussian* (iSP-Gaussian): in training
    :math:`\eta = \mathrm{softplus}(\mu_\eta + \sigma_\eta\,\epsilon)`,
    :math:`\epsilon \sim \mathcal N(0, 1)`, and at test time :math:`\eta = \mathrm{softplus}(\mu_\eta)`.
    So :math:`\eta > 0` and the output always lies *above the local mean* (it is not confined
    to the convex hull of the window: it may exceed the local max). :math:`\mu_\eta` (and
    :math:`\sigma_\eta \in (0, 1)` via a sigmoid) are estimated per sample and channel from the
    input's global average: ``GAP -> FC(C, h) -> BN -> ReLU``, then ``FC(h, C) -> BN`` for
    :math:`\mu_\eta` and ``FC(h, C) -> BN -> sigmoid`` for :math:`\sigma_\eta` (``h = C//2``
    by default), as in the author's code.

    ``stochastic``: ``"element"`` draws :math:`\epsilon` per output element (default),
    ``"channel"`` per sample and channel, ``"none"`` disables the noise (and the
    :math:`\sigma_\eta` head). Training needs a batch of >= 2 (batch normalisation).

    Parameters: trunk ``C*h + 3h``, each head ``h*C + 3C`` (weights, biases, BN affine);
    ``2*C*h + 3*h + 3*C`` without noise, ``3*C*h + 3*h + 6*C`` with it.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = GaussianPool2d(8).eval()
        >>> x = torch.randn(2, 8, 6, 6)
        >>> mean = torch.nn.functional.avg_pool2d(x, 2)
        >>> bool((pool(x) >= mean).all())
        True
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, hidden: int | None = None,
        stochastic: Literal["element", "channel", "none"] = "element", eps: float = 1e-6,
        return_details: bool = False, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.hidden = _check_hidden(hidden, channels)
        self.stochastic = _check_choice("stochastic", stochastic, ("element", "channel", "none"))
        self.eps = _check_positive_float("eps", eps)
        self.trunk = _GlobalEstimator(channels, self.hidden, device, dtype)
        self.to_mean = _head(self.hidden, channels, device, dtype)
        self.to_sigma = _head(self.hidden, channels, device, dtype) if stochastic != "none" else None

    @classmethod
    def num_parameters(cls, channels: int, *, hidden: int | None = None, stochastic: str = "element", **_: Any) -> int:
        c = _check_channels(channels)
        h = _check_hidden(hidden, c)
        heads = 1 if stochastic == "none" else 2
        return c * h + 3 * h + heads * (h * c + 3 * c)

    def eta(self, x: Tensor) -> Tensor:
        """The pooling parameter :math:`\\eta` for input ``x`` (random in training unless ``stochastic="none"``)."""
        z = self.trunk(x, self)
        mean = self.to_mean(z)[:, :, None, None]
        if self.training and self.to_sigma is not None:
            sigma = torch.sigmoid(self.to_sigma(z))[:, :, None, None]
            if self.stochastic == "element":
                shape = (x.shape[0], self.channels, _out_size(x.shape[2]), _out_size(x.shape[3]))
            else:
                shape = (x.shape[0], self.channels, 1, 1)
            noise = torch.randn(shape, dtype=mean.dtype, device=mean.device)
            return F.softplus(mean + sigma * noise)
        return F.softplus(mean)

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        y = gaussian_pool2d(x, self.eta(x).to(x.dtype), self.kernel_size, eps=self.eps)
        return _finish(self, y)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.hidden}, stochastic={self.stochastic!r}"


@register_pool("gfgp")
class GFGPool2d(_ZooPool):
    r"""Global-Feature-Guided local Pooling, GFGP (Kobayashi, "Global Feature Guided Local
    Pooling", ICCV 2019; the LiftPool paper cites it as Kobayashi 2019b).

    Local pooling as a maximum-entropy (softmax-weighted) mean,
    :math:`Y = \sum_{i\in R} x_i\,e^{\lambda x_i} / \sum_{i\in R} e^{\lambda x_i}`
    (:func:`maxent_pool2d`), whose parameter :math:`\lambda \ge 0` is estimated per sample and
    channel from the *global* feature of the input: ``GAP -> FC(C, h) -> BN -> ReLU ->
    FC(h, C) -> BN -> sigmoid`` (``h = C//2`` by default; ``activation="softplus"`` for an
    unbounded :math:`\lambda`), as in the author's code. :math:`\lambda = 0` gives average
    pooling, :math:`\lambda \to \infty` max pooling; the output always lies between the local
    mean and the local max. Training needs a batch of >= 2 (batch normalisation).

    Parameters: ``2*C*h + 3*h + 3*C``.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = GFGPool2d(8).eval()
        >>> x = torch.randn(2, 8, 6, 6)
        >>> y = pool(x)
        >>> lo, hi = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.max_pool2d(x, 2)
        >>> bool((y >= lo - 1e-6).all() and (y <= hi + 1e-6).all())
        True
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, hidden: int | None = None,
        activation: Literal["sigmoid", "softplus"] = "sigmoid", return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.hidden = _check_hidden(hidden, channels)
        self.activation = _check_choice("activation", activation, ("sigmoid", "softplus"))
        self.trunk = _GlobalEstimator(channels, self.hidden, device, dtype)
        self.to_lambda = _head(self.hidden, channels, device, dtype)

    @classmethod
    def num_parameters(cls, channels: int, *, hidden: int | None = None, **_: Any) -> int:
        c = _check_channels(channels)
        h = _check_hidden(hidden, c)
        return 2 * c * h + 3 * h + 3 * c

    def lam(self, x: Tensor) -> Tensor:
        """The per-sample, per-channel :math:`\\lambda`, shape ``(N, C, 1, 1)``."""
        z = self.to_lambda(self.trunk(x, self))
        z = torch.sigmoid(z) if self.activation == "sigmoid" else F.softplus(z)
        return z[:, :, None, None]

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        return _finish(self, maxent_pool2d(x, self.lam(x).to(x.dtype), self.kernel_size))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, hidden={self.hidden}, activation={self.activation!r}"


# --------------------------------------------------------------------------- frequency domain
def _low_freqs(n: int, m: int) -> Tensor:
    """DFT bins of a length-``n`` signal kept by a centred crop to ``m`` bins: ``-floor(m/2) .. ceil(m/2)-1``."""
    return torch.cat([torch.arange(0, (m + 1) // 2), torch.arange(n - m // 2, n)])


def spectral_pool2d(x: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    r"""Spectral pooling (Rippel, Snoek & Adams, NeurIPS 2015, Algorithm 1).

    Takes the 2D DFT, keeps the centred ``size`` block of frequencies
    (``-floor(m/2) .. ceil(m/2)-1`` on each axis; default ``size = (ceil(H/2), ceil(W/2))``),
    treats the corner cases so the result is real, and inverts. Normalised so that a constant
    stays the same constant. Every frequency strictly below the output's Nyquist frequency is
    kept exactly. Corner cases: for an even output size the kept bin :math:`-m/2` has no
    conjugate partner in the crop; the output is the real part of the inverse DFT, which is
    exactly the orthogonal projection of the cropped spectrum onto conjugate-symmetric
    (real-signal) spectra: self-conjugate bins (DC and Nyquist corners) keep their real part,
    as in the paper's ``TreatCornerCases``, so that bin becomes
    :math:`\mathrm{Re}\,X_{-m/2} = (X_{-m/2} + X_{m/2})/2`. A cosine lying exactly at the
    output's Nyquist frequency thus comes out at half its cosine amplitude and without its
    (unrepresentable) sine part. Half-precision inputs are computed in float32.

    Examples:
        >>> n = torch.arange(8.)
        >>> x = torch.cos(2 * math.pi * n / 8).expand(1, 1, 8, 8)  # frequency 1 of 8
        >>> y = spectral_pool2d(x)
        >>> torch.allclose(y[0, 0, 0], torch.cos(2 * math.pi * torch.arange(4.) / 4), atol=1e-6)
        True
    """
    H, W = x.shape[-2:]
    Ho, Wo = size if size is not None else (_out_size(H), _out_size(W))
    if not (1 <= Ho <= H and 1 <= Wo <= W):
        raise ValueError(f"size must lie in [1, {H}] x [1, {W}], got {(Ho, Wo)}")
    # The map is separable: y = Re(A_h x A_w^T) with the complex per-axis operators
    # A = F_m^-1 crop F_n; so y = Re(A_h) x Re(A_w)^T - Im(A_h) x Im(A_w)^T, two real matmuls.
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    ah, aw = _spectral_matrix(H, Ho), _spectral_matrix(W, Wo)
    ah = ah.to(device=x.device, dtype=work.dtype)
    aw = aw.to(device=x.device, dtype=work.dtype)
    if Ho % 2 == 0 and Wo % 2 == 0:  # only an even output size has a (half) Nyquist bin, i.e. Im(A) != 0
        t = torch.matmul(ah, work)  # (..., 2*Ho, W): real rows, then imaginary rows
        y = torch.matmul(t[..., :Ho, :], aw[:Wo].transpose(0, 1)) - torch.matmul(
            t[..., Ho:, :], aw[Wo:].transpose(0, 1)
        )
    else:  # one of the products Im(A_h) x Im(A_w)^T vanishes
        y = torch.matmul(torch.matmul(ah[:Ho], work), aw[:Wo].transpose(0, 1))
    return y.to(x.dtype)


@functools.lru_cache(maxsize=64)
def _spectral_matrix(n: int, m: int) -> Tensor:
    """``[Re(A); Im(A)]``, shape ``(2m, n)``, of ``A = ifft_m(crop_m(fft_n(.)))`` (``norm="forward"``)."""
    k = _low_freqs(n, m).to(torch.float64)
    k = torch.where(k > n // 2, k - n, k)  # signed frequencies
    phase = (
        2
        * math.pi
        * k[None, None, :]
        * (
            torch.arange(m, dtype=torch.float64)[:, None, None] / m
            - torch.arange(n, dtype=torch.float64)[None, :, None] / n
        )
    )
    a = torch.complex(torch.cos(phase), torch.sin(phase)).sum(dim=-1) / n
    return torch.cat([a.real, a.imag])


@register_pool("spectral")
class SpectralPool2d(_ZooPool):
    r"""Spectral pooling (Rippel, Snoek & Adams, "Spectral Representations for Convolutional
    Neural Networks", NeurIPS 2015): :func:`spectral_pool2d` to ``(ceil(H/2), ceil(W/2))``.

    Keeps the low frequencies of the DFT exactly and discards the rest (see
    :func:`spectral_pool2d` for the Nyquist/conjugate-symmetry treatment). No parameters and
    no kernel: ``kernel_size`` must be left at ``None``.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> y = SpectralPool2d(2)(torch.full((1, 2, 7, 7), 3.0))
        >>> y.shape, torch.allclose(y, torch.full_like(y, 3.0))
        (torch.Size([1, 2, 4, 4]), True)
    """

    def __init__(
        self, channels: int, kernel_size: None = None, *, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        if kernel_size is not None:
            raise ValueError(f"SpectralPool2d works on the whole spectrum and has no kernel; "
                             f"kernel_size must be None, got {kernel_size!r}")
        super().__init__(channels, 1, return_details=return_details)

    @classmethod
    def num_parameters(cls, channels: int, **_: Any) -> int:
        return 0

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        return _finish(self, spectral_pool2d(x))

    def extra_repr(self) -> str:
        return f"{self.channels}"


def wavelet_pool2d(x: Tensor) -> Tensor:
    r"""Wavelet pooling (Williams & Li, ICLR 2018) with the Haar wavelet.

    Second-level Haar decomposition, then one inverse level from the level-2 approximation
    alone (the level-1 and level-2 details are discarded), giving a map of ``ceil(n/2)``:
    each output sample is the mean of the 4x4 input block it lies in (a 2x2 block of the
    output per 4x4 block of the input). This equals PyWavelets'
    ``idwt2((cA2, (None, None, None)), "haar")`` (``mode="symmetric"``) divided by 2, i.e.
    normalised so that constants are preserved. Odd sizes extend the last sample (Haar with
    symmetric extension) and crop back.

    Examples:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> wavelet_pool2d(x)
        tensor([[[[7.5000, 7.5000],
                  [7.5000, 7.5000]]]])
    """
    Ho, Wo = _out_size(x.shape[-2]), _out_size(x.shape[-1])
    a1 = F.avg_pool2d(x, 2, 2, ceil_mode=True)  # level-1 approximation (partial windows: mean of what is there)
    a2 = F.avg_pool2d(a1, 2, 2, ceil_mode=True)  # level-2 approximation
    return a2.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :Ho, :Wo]


@register_pool("wavelet")
class WaveletPool2d(_ZooPool):
    r"""Wavelet pooling (Williams & Li, "Wavelet Pooling for Convolutional Neural Networks",
    ICLR 2018), Haar wavelet: :func:`wavelet_pool2d`.

    The paper decomposes each map to the second level with the fast wavelet transform and
    reconstructs one level from the second-level sub-bands. Reconstructing from *all* the
    level-2 sub-bands would give back the level-1 approximation, i.e. plain (scaled) 2x2
    average pooling; following the comparison the LiftPool paper makes, this layer keeps
    only the level-2 approximation, so the output is the level-2 approximation upsampled to
    half size (4x4-block means). No parameters; ``kernel_size`` is the Haar filter length
    and must be 2.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> WaveletPool2d(3)(torch.randn(2, 3, 9, 5)).shape
        torch.Size([2, 3, 5, 3])
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        if kernel_size != 2:
            raise ValueError(f"WaveletPool2d uses the Haar wavelet, whose filters have 2 taps; "
                             f"kernel_size must be 2, got {kernel_size}")

    @classmethod
    def num_parameters(cls, channels: int, **_: Any) -> int:
        return 0

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        return _finish(self, wavelet_pool2d(x))


# --------------------------------------------------------------------------- DPP
@register_pool("dpp")
class DPPool2d(_ZooPool):
    r"""Detail-Preserving Pooling, DPP (Saeedan, Weber, Goesele & Roth, "Detail-Preserving
    Pooling in Deep Networks", CVPR 2018).

    An inverse-bilateral weighted average over each pooling region :math:`\Omega_p`:

    .. math::
        \mathrm{DPP}(I)[p] = \frac{\sum_{q\in\Omega_p} w[p,q]\, I[q]}{\sum_{q\in\Omega_p} w[p,q]},\qquad
        w[p,q] = \alpha + \rho_\lambda\big(I[q] - \tilde I[p]\big),

    with the symmetric reward :math:`\rho_{Sym}(x) = (\sqrt{x^2+\varepsilon^2})^\lambda` or the
    asymmetric one :math:`\rho_{Asym}(x) = (\sqrt{\max(0,x)^2+\varepsilon^2})^\lambda`
    (:math:`\varepsilon = 10^{-3}`), so pixels that differ from the linearly downscaled
    :math:`\tilde I` are rewarded. :math:`\tilde I` is the box mean over :math:`\Omega_p`
    (``variant="lite"``) or that box mean filtered with a learned 3x3 filter :math:`F` per
    channel (``variant="full"``, Full-DPP, initialised to the normalised binomial
    ``[1 2 1]^T [1 2 1] / 16`` of the DPID downscaler it builds on; edge-replicated at the
    border). :math:`\alpha \ge 0` and :math:`\lambda \ge 0` are learned per channel (clamped at
    0 in the forward pass).

    Special cases: :math:`\lambda = 0` gives equal weights, i.e. **average pooling** (the
    paper's documented special case), and with the asymmetric reward, :math:`\alpha = 0` and
    :math:`\lambda \to \infty` the weight concentrates on the largest value: max pooling.

    Parameters: ``2*C`` (lite) or ``11*C`` (full).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = DPPool2d(3, lam=0.0)
        >>> x = torch.randn(1, 3, 5, 5)
        >>> torch.allclose(pool(x), torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True), atol=1e-6)
        True
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, variant: Literal["full", "lite"] = "full",
        reward: Literal["symmetric", "asymmetric"] = "symmetric", alpha: float = 1.0, lam: float = 1.0,
        eps: float = 1e-3, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.variant = _check_choice("variant", variant, ("full", "lite"))
        self.reward = _check_choice("reward", reward, ("symmetric", "asymmetric"))
        self.eps = _check_positive_float("eps", eps)
        alpha = _check_positive_float("alpha", alpha, allow_zero=True)
        lam = _check_positive_float("lam", lam, allow_zero=True)
        self.alpha = nn.Parameter(torch.full((channels,), alpha, device=device, dtype=dtype))
        self.lam = nn.Parameter(torch.full((channels,), lam, device=device, dtype=dtype))
        if variant == "full":
            b = binomial_filter(3)
            f = (b[:, None] * b[None, :]).to(device=device, dtype=dtype or torch.get_default_dtype())
            self.filter = nn.Parameter(f.expand(channels, 1, 3, 3).clone())
        else:
            self.register_parameter("filter", None)

    @classmethod
    def num_parameters(cls, channels: int, *, variant: str = "full", **_: Any) -> int:
        return (11 if variant == "full" else 2) * _check_channels(channels)

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        taps, mask, count = _taps(x, self.kernel_size)
        ref = taps.sum(dim=2) / count  # box mean over each region (outside taps hold 0)
        if self.filter is not None:
            ref = F.conv2d(F.pad(ref, (1, 1, 1, 1), mode="replicate"), self.filter.to(x.dtype), groups=self.channels)
        shape = (1, self.channels, 1, 1, 1)
        lam = self.lam.clamp(min=0).to(x.dtype).view(shape)
        alpha = self.alpha.clamp(min=0).to(x.dtype).view(shape)
        d = taps - ref.unsqueeze(2)
        if self.reward == "asymmetric":
            d = torch.relu(d)
        w = alpha + torch.pow(d * d + self.eps ** 2, lam / 2)
        if mask is not None:
            w = w * mask
        y = (w * taps).sum(dim=2) / w.sum(dim=2)
        return _finish(self, y)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, variant={self.variant!r}, reward={self.reward!r}"


# --------------------------------------------------------------------------- S3Pool
def _order_stat_probs(length: int, picks: int, dtype: torch.dtype) -> Tensor:
    """``P[j, r]``: probability that the ``j``-th smallest of ``picks`` rows drawn without
    replacement from ``range(length)`` is ``r``."""
    P = torch.zeros(picks, length, dtype=torch.float64)
    total = math.comb(length, picks)
    for j in range(picks):
        for r in range(length):
            P[j, r] = math.comb(r, j) * math.comb(length - 1 - r, picks - 1 - j) / total
    return P.to(dtype)


@register_pool("s3")
class S3Pool2d(_ZooPool):
    r"""S3Pool: pooling with stochastic spatial sampling (Zhai, Wu, Kumar, Cheng, Lu, Zhang &
    Feris, "S3Pool: Pooling with Stochastic Spatial Sampling", CVPR 2017).

    Step 1: max pooling with stride 1 (``kernel_size`` taps, the end edge-extended so the
    size is kept). Step 2, in training: the map is cut into horizontal and vertical strips
    of ``grid_size`` rows/columns; in each strip ``grid_size/2`` rows (columns) are drawn
    uniformly without replacement, kept in order, and the output is the map at the drawn
    rows and columns (a shorter last strip of ``L`` rows gives ``ceil(L/2)``). The same rows
    and columns are used for the whole batch (as in the authors' code) and are drawn from
    torch's global RNG (or ``generator``). In eval mode the layer is deterministic and
    returns the *expectation* of its training output over the draws, computed exactly; for
    the default ``grid_size=2`` that is 2x2 average pooling of the stride-1 max-pooled map,
    which is what the authors use at test time. No parameters.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = S3Pool2d(2)
        >>> x = torch.randn(1, 2, 8, 8)
        >>> pool.train()(x).shape, torch.equal(pool.eval()(x), pool(x))
        (torch.Size([1, 2, 4, 4]), True)
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, grid_size: int = 2, generator: torch.Generator | None = None,
        return_details: bool = False, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        if isinstance(grid_size, bool) or not isinstance(grid_size, int):
            raise TypeError(f"grid_size must be an int, got {type(grid_size).__name__}")
        if grid_size < 2 or grid_size % 2:
            raise ValueError(
                f"grid_size must be an even int >= 2 (it holds grid_size/2 samples per strip), got {grid_size}"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.grid_size = grid_size
        self.generator = generator

    @classmethod
    def num_parameters(cls, channels: int, **_: Any) -> int:
        return 0

    def _strips(self, n: int) -> list[tuple[int, int]]:
        g = self.grid_size
        return [(start, min(g, n - start)) for start in range(0, n, g)]

    def sample_indices(self, n: int) -> Tensor:
        """Draw the ``ceil(n/2)`` kept indices of an axis of length ``n`` (sorted, one set per strip)."""
        g = self.grid_size
        full = n // g
        parts = []
        if full:
            r = torch.rand(full, g, generator=self.generator).argsort(dim=1)[:, : g // 2]
            parts.append((r.sort(dim=1).values + torch.arange(full)[:, None] * g).flatten())
        rest = n - full * g
        if rest:
            r = torch.randperm(rest, generator=self.generator)[: (rest + 1) // 2]
            parts.append(r.sort().values + full * g)
        return torch.cat(parts)

    def expectation_matrix(self, n: int, dtype: torch.dtype = torch.float64) -> Tensor:
        """``(ceil(n/2), n)`` matrix ``A`` with ``A @ v`` = expectation of ``v[sample_indices(n)]``."""
        A = torch.zeros(_out_size(n), n, dtype=dtype)
        row = 0
        for start, length in self._strips(n):
            picks = (length + 1) // 2
            A[row:row + picks, start:start + length] = _order_stat_probs(length, picks, dtype)
            row += picks
        return A

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        k = self.kernel_size
        m = F.max_pool2d(F.pad(x, (0, k - 1, 0, k - 1), mode="replicate"), k, 1) if k > 1 else x
        H, W = x.shape[-2:]
        if self.training:
            rows = self.sample_indices(H).to(x.device)
            cols = self.sample_indices(W).to(x.device)
            y = m.index_select(2, rows).index_select(3, cols)
        elif self.grid_size == 2:
            y = F.avg_pool2d(m, 2, 2, ceil_mode=True)
        else:
            Ah = self.expectation_matrix(H, x.dtype).to(x.device)
            Aw = self.expectation_matrix(W, x.dtype).to(x.device)
            y = torch.matmul(torch.matmul(Ah, m), Aw.transpose(0, 1))
        return _finish(self, y)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, grid_size={self.grid_size}"


# --------------------------------------------------------------------------- counting
def pool_parameter_count(name: str, channels: int, **kwargs: Any) -> int:
    """Number of learnable parameters of the registered pool ``name`` built for ``channels``.

    Works for every entry of :data:`liftpool.pooling.POOLS` (it builds the layer and counts).

    Examples:
        >>> pool_parameter_count("mixed", 64), pool_parameter_count("gated", 64), pool_parameter_count("wavelet", 64)
        (1, 4, 0)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if name not in POOLS:
        raise ValueError(f"unknown pool {name!r}; choose one of {tuple(POOLS)}")
    layer = POOLS[name](channels, **kwargs)
    return sum(p.numel() for p in layer.parameters())
