r"""The pooling peers compared with today: SoftPool, LIP, APS and LPS down-sampling, APS-U and LPS up-sampling.

Every down-pooling class follows the zoo's conventions (:mod:`liftpool.pooling.zoo`):
``(channels, kernel_size=..., *, ..., return_details=False, device=None, dtype=None)``, input
``(N, C, H, W)`` -> output ``(N, C, ceil(H/2), ceil(W/2))`` for every size down to 1x1,
parameters cast to the input's dtype in the forward pass, a ``num_parameters(channels, **options)``
class method, and registration in :data:`liftpool.pooling.POOLS`:

=============  ========================  ==========================================================
name           class                     source
=============  ========================  ==========================================================
``"softpool"`` :class:`SoftPool2d`       Stergiou, Poppe & Kalliatakis, ICCV 2021
``"lip"``      :class:`LIPPool2d`        Gao, Wang & Wu, ICCV 2019
``"aps"``      :class:`APSPool2d`        Chaman & Dokmanić, CVPR 2021
``"lps"``      :class:`LPSPool2d`        Rojas-Gomez, Lim, Schwing, Do & Yeh, NeurIPS 2022
=============  ========================  ==========================================================

The two polyphase samplers also come as down/up pairs for encoder-decoders
(:func:`liftpool.pooling.make_updown` ``"aps"`` and ``"lps"``, SegNet's ``pool=``): the down
layer records which of the four polyphase components it kept (:class:`PolyphaseDetails2d`) and
the up layer (:class:`APSUpPool2d`, :class:`LPSUpPool2d`) puts each value back at that phase,
zeros elsewhere, and crops to the recorded input size like :class:`~liftpool.LiftUpPool2d`.

Polyphase components: component ``k = 2*i + j`` (``i, j`` in ``{0, 1}``) of a map is
``x[..., i::2, j::2]`` (the order of :func:`torch.nn.functional.pixel_unshuffle`). An odd axis
is first extended by one sample at its end (``padding_mode``, circular by default as in the APS
authors' code), so every component has ``ceil(n/2)`` samples.

Examples:
    >>> import torch
    >>> from liftpool.pooling import make_pool, make_updown
    >>> x = torch.randn(2, 8, 9, 10)
    >>> [tuple(make_pool(n, 8).eval()(x).shape) for n in ("softpool", "lip", "aps", "lps")]
    [(2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5), (2, 8, 5, 5)]
    >>> down, up = make_updown("aps", 8)
    >>> y, details = down(x)
    >>> up(y, details).shape, details.phase.shape
    (torch.Size([2, 8, 9, 10]), torch.Size([2]))
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_choice, check_int, check_positive_float
from ..constants import PADDING_MODES
from ..functional import pad_axis
from .baselines import _check_channels, binomial_filter, check_pool_input
from .registry import register_pool, register_updown
from .zoo import _finish, _ZooPool, maxent_pool2d

__all__ = [
    "APSPool2d",
    "APSUpPool2d",
    "LIPPool2d",
    "LPSPool2d",
    "LPSUpPool2d",
    "PEERS",
    "PEER_UPDOWN",
    "PolyphaseDetails2d",
    "SoftPool2d",
    "lip2d",
    "polyphase_components",
    "polyphase_upsample",
    "softpool2d",
]

#: names this module registers in :data:`liftpool.pooling.POOLS`.
PEERS: tuple[str, ...] = ("softpool", "lip", "aps", "lps")
#: names this module registers in :data:`liftpool.pooling.UPDOWN` (paired down/up layers).
PEER_UPDOWN: tuple[str, ...] = ("aps", "lps")

#: number of polyphase components of a 2x2 stride.
PHASES = 4


def _tracing() -> bool:
    """Under ``jit.trace`` (legacy ONNX export), ``torch.compile`` or ``torch.export``: sizes may be symbolic."""
    jit: Any = torch.jit  # is_tracing/is_scripting are not re-exported in torch's stubs
    return bool(jit.is_scripting() or jit.is_tracing() or torch.compiler.is_compiling())


def _half(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)


def _pool_geometry(k: int) -> tuple[int, bool]:
    """``(padding, ceil_mode)`` of the zoo's windows: ``k`` taps at stride 2, ``ceil(n/2)`` outputs."""
    return ((k - 1) // 2, False) if k % 2 else ((k - 2) // 2, True)


def _conv_init(weight: Tensor, bias: Tensor | None) -> None:
    """Initialise like ``nn.Conv2d.reset_parameters`` (kaiming-uniform with ``a = sqrt(5)``)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


def _pad2d(x: Tensor, left: int, right: int, mode: str) -> Tensor:
    """Pad both spatial axes by ``left``/``right`` samples (``mode``: one of :data:`PADDING_MODES`)."""
    return pad_axis(pad_axis(x, -1, left, right, mode), -2, left, right, mode)


# --------------------------------------------------------------------------- SoftPool
def softpool2d(x: Tensor, kernel_size: int = 2) -> Tensor:
    r"""SoftPool (Stergiou et al., ICCV 2021): the softmax-weighted sum of each window,
    :math:`\tilde a = \sum_i e^{a_i} a_i / \sum_j e^{a_j}`, per sample and channel.

    Windows are the zoo's (``kernel_size`` taps at stride 2, starting ``(kernel_size-1)//2``
    before the first sample; taps outside the input are excluded). The exponentials are taken
    of ``a_i - max_window(a)`` (the softmax is invariant to that shift), so nothing overflows for
    any activation range and an all-equal window gives its value, never ``0/0``. The default
    2x2 window is computed with max/average pooling (``avgpool(a·e^{a-m}) / avgpool(e^{a-m})``,
    ``m`` the window maximum); other kernel sizes gather the window taps.

    Examples:
        >>> softpool2d(torch.tensor([[[[0.0, 1e4], [1e4, 1e4]]]]))
        tensor([[[[10000.]]]])
        >>> softpool2d(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]]]))
        tensor([[[[1.]]]])
    """
    if kernel_size != 2:
        return maxent_pool2d(x, torch.ones((), dtype=x.dtype, device=x.device), kernel_size)
    H, W = x.shape[-2:]
    # the window maximum, brought back to every tap of its window (a constant per window: no gradient)
    m = F.max_pool2d(x.detach(), 2, 2, ceil_mode=True)
    m = F.interpolate(m, scale_factor=2.0, mode="nearest")[..., :H, :W]
    e = torch.exp(x - m)  # in (0, 1]; 1 at each window's maximum, so the denominator is >= 1/4
    num = F.avg_pool2d(x * e, 2, 2, ceil_mode=True, count_include_pad=False)
    den = F.avg_pool2d(e, 2, 2, ceil_mode=True, count_include_pad=False)
    return num / den


@register_pool("softpool")
class SoftPool2d(_ZooPool):
    r"""SoftPool (Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with SoftPool",
    ICCV 2021): :func:`softpool2d`.

    Each output is the softmax-weighted sum of its window,
    :math:`\tilde a = \sum_{i\in R} \frac{e^{a_i}}{\sum_{j\in R} e^{a_j}}\, a_i`, per sample and
    channel; the output lies between the window's mean and its maximum. No parameters.

    Choices the paper leaves open: the window at an odd border covers only the samples that
    are there (output ``ceil(n/2)``; the reference code gives ``floor(n/2)``), and the
    exponentials are shifted by the window maximum, which leaves the result unchanged and
    keeps it finite for any activation range (the reference CPU path exponentiates the raw
    activations, which overflows above 88 in float32).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> x = torch.randn(2, 3, 7, 6)
        >>> y = SoftPool2d(3)(x)
        >>> lo = torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True)
        >>> hi = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
        >>> y.shape, bool((y >= lo - 1e-6).all() and (y <= hi + 1e-6).all())
        (torch.Size([2, 3, 4, 3]), True)
    """

    def __init__(
        self, channels: int, kernel_size: int = 2, *, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)

    @classmethod
    def num_parameters(cls, channels: int, **_: Any) -> int:
        return 0

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        return _finish(self, softpool2d(x, self.kernel_size))


# --------------------------------------------------------------------------- LIP
def lip2d(x: Tensor, logit: Tensor, kernel_size: int = 3, *, shift: float = 0.0) -> Tensor:
    r"""Local importance-based pooling: :math:`\mathrm{avgpool}(x\,e^{l}) / \mathrm{avgpool}(e^{l})`, ``l = logit``.

    ``logit`` has ``x``'s shape. Windows are the zoo's (``kernel_size`` taps at stride 2; for the
    default 3 that is LIP's ``kernel=3, stride=2, padding=1``; taps outside the input are
    excluded). ``shift`` is subtracted from the logits before exponentiating (the ratio is
    unchanged): pass an upper bound of the logits to keep half precision in range.

    Examples:
        >>> x = torch.randn(1, 2, 6, 6)
        >>> y = lip2d(x, torch.zeros_like(x))  # equal importance: average pooling
        >>> torch.allclose(y, torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False), atol=1e-6)
        True
    """
    pad, ceil = _pool_geometry(kernel_size)
    w = torch.exp(logit - shift) if shift else torch.exp(logit)
    num = F.avg_pool2d(x * w, kernel_size, 2, pad, ceil_mode=ceil, count_include_pad=False)
    den = F.avg_pool2d(w, kernel_size, 2, pad, ceil_mode=ceil, count_include_pad=False)
    return num / den


@register_pool("lip")
class LIPPool2d(_ZooPool):
    r"""LIP, local importance-based pooling (Gao, Wang & Wu, "LIP: Local Importance-based
    Pooling", ICCV 2019), with the paper's simple logit module.

    :math:`O = \mathrm{avgpool}(I\,e^{G(I)}) / \mathrm{avgpool}(e^{G(I)})` (:func:`lip2d`), where
    the importance logit :math:`G` is the authors' ``SimplifiedLIP`` module (the one LIP-ResNet
    puts in place of the stem's max pooling):
    :math:`G(I) = c\cdot\sigma(\mathrm{IN}(W * I))`, a 3x3 convolution ``C -> C`` without bias
    (zero padding), an instance normalisation with a learned per-channel affine
    (:math:`\gamma, \beta`; ``eps = 1e-5``, statistics over each map) and the "soft gate"
    :math:`c\cdot\mathrm{sigmoid}` with :math:`c` = ``coeff`` = 12. The pooling window is
    ``kernel_size`` = 3 taps at stride 2 (LIP's ``kernel=3, stride=2, padding=1``).

    Not implemented: the bottleneck logit modules LIP-ResNet uses at its stage transitions
    (1x1 and 3x3 convolutions of a shared 128-channel bottleneck). Choices: the convolution
    starts at zero (``zero_init=True``, the authors' ``init_layer``), so the layer starts as
    exact average pooling over its 3x3 windows; with ``zero_init=False`` it starts like
    ``nn.Conv2d``. The parameters are plain tensors (not an ``nn.Conv2d``) so that a network's
    own convolution initialisation does not undo that start. The instance normalisation is
    written out (a 1x1 map normalises to 0 instead of raising), and the logits are shifted by
    :math:`-c` before exponentiating (weights in :math:`(e^{-c}, 1]`; the ratio is unchanged) so
    that float16 stays in range.

    Parameters: ``9*C*C + 2*C`` (convolution, instance-norm affine).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = LIPPool2d(4)
        >>> x = torch.randn(2, 4, 7, 6)
        >>> torch.allclose(pool(x), torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False), atol=1e-6)
        True
        >>> LIPPool2d.num_parameters(64)
        36992
    """

    def __init__(
        self, channels: int, kernel_size: int = 3, *, coeff: float = 12.0, zero_init: bool = True,
        eps: float = 1e-5, return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.coeff = check_positive_float("coeff", coeff)
        self.eps = check_positive_float("eps", eps)
        self.zero_init = bool(zero_init)
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        self.logit_weight = nn.Parameter(torch.empty(channels, channels, 3, 3, **fk))
        self.norm_weight = nn.Parameter(torch.empty(channels, **fk))
        self.norm_bias = nn.Parameter(torch.empty(channels, **fk))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.zero_init:
            nn.init.zeros_(self.logit_weight)
        else:
            _conv_init(self.logit_weight, None)
        nn.init.ones_(self.norm_weight)
        nn.init.zeros_(self.norm_bias)

    @classmethod
    def num_parameters(cls, channels: int, **_: Any) -> int:
        c = _check_channels(channels)
        return 9 * c * c + 2 * c

    def logit(self, x: Tensor) -> Tensor:
        """The importance logits :math:`G(x) = c\\,\\sigma(\\mathrm{IN}(W * x))`, shape of ``x``, in ``(0, c)``."""
        z = F.conv2d(x, self.logit_weight.to(x.dtype), padding=1)
        zs = z.float() if _half(z.dtype) else z  # statistics in at least float32
        mean = zs.mean(dim=(2, 3), keepdim=True)
        var = (zs - mean).square().mean(dim=(2, 3), keepdim=True)
        zn = (zs - mean) * torch.rsqrt(var + self.eps)
        zn = zn * self.norm_weight.to(zn.dtype).view(1, -1, 1, 1) + self.norm_bias.to(zn.dtype).view(1, -1, 1, 1)
        return (self.coeff * torch.sigmoid(zn)).to(z.dtype)

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        return _finish(self, lip2d(x, self.logit(x), self.kernel_size, shift=self.coeff))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, coeff={self.coeff}"


# --------------------------------------------------------------------------- polyphase sampling
class PolyphaseDetails2d(NamedTuple):
    """What :class:`APSUpPool2d` / :class:`LPSUpPool2d` need: the selection and the input size.

    ``weights``: ``(N, 4)``, the weight of each polyphase component in the output (one-hot for
    APS and for LPS in eval mode; the Gumbel-softmax sample for LPS in training);
    ``phase``: ``(N,)`` int64, the chosen component ``2*i + j`` (the weights' arg-max);
    ``size``: the input's spatial size ``(H, W)``.
    """

    weights: Tensor
    phase: Tensor
    size: tuple[int, ...]


def _extend_to_even(x: Tensor, padding_mode: str) -> Tensor:
    """Extend each odd spatial axis by one sample at its end (``padding_mode``) so both are even."""
    tracing = _tracing()
    for dim in (-2, -1):
        n = x.shape[dim]
        if tracing:
            # no branch on the parity: pad one sample, keep 2*ceil(n/2), so one graph serves every size
            index: list[slice] = [slice(None)] * x.ndim
            index[dim] = slice(0, 2 * ((n + 1) // 2))
            x = pad_axis(x, dim, 0, 1, padding_mode)[tuple(index)]
        elif n % 2:
            x = pad_axis(x, dim, 0, 1, padding_mode)
    return x


def polyphase_components(x: Tensor, padding_mode: str = "circular") -> Tensor:
    """The four polyphase components of a 2x2 stride, stacked: ``(N, C, 4, ceil(H/2), ceil(W/2))``.

    Component ``k = 2*i + j`` is ``x[..., i::2, j::2]`` after extending each odd axis by one
    sample at its end (``padding_mode``: ``"circular"``, ``"reflect"``, ``"replicate"`` or
    ``"zeros"``).

    Examples:
        >>> x = torch.arange(16.).view(1, 1, 4, 4)
        >>> polyphase_components(x)[0, 0, :, 0, 0]
        tensor([0., 1., 4., 5.])
        >>> polyphase_components(torch.arange(3.).view(1, 1, 1, 3))[0, 0, :, 0]
        tensor([[0., 2.],
                [1., 0.],
                [0., 2.],
                [1., 0.]])
    """
    x = _extend_to_even(x, padding_mode)
    return torch.stack([x[..., i::2, j::2] for i in (0, 1) for j in (0, 1)], dim=2)


def polyphase_upsample(y: Tensor, weights: Tensor, size: tuple[int, ...] | None = None) -> Tensor:
    """Put ``y`` back on the double-size grid at each phase ``k`` with weight ``weights[:, k]``, cropped to ``size``.

    ``y``: ``(N, C, h, w)``; ``weights``: ``(N, 4)``; the output ``(N, C, 2h, 2w)`` (cropped to
    ``size`` when given) holds ``weights[n, 2*i + j] * y`` at ``[..., i::2, j::2]``. With a one-hot
    ``weights`` every value goes back to the chosen phase and the rest is zero.

    Examples:
        >>> y = torch.tensor([[[[1., 2.]]]])
        >>> polyphase_upsample(y, torch.tensor([[0., 1., 0., 0.]]))
        tensor([[[[0., 1., 0., 2.],
                  [0., 0., 0., 0.]]]])
        >>> polyphase_upsample(y, torch.tensor([[0., 0., 1., 0.]]), (1, 3))
        tensor([[[[0., 0., 0.]]]])
    """
    z = y.unsqueeze(2) * weights.to(y.dtype).reshape(-1, 1, PHASES, 1, 1)  # (N, C, 4, h, w)
    out = F.pixel_shuffle(z.flatten(1, 2), 2)  # channel c*4 + 2i + j -> position (2h + i, 2w + j)
    if size is None:
        return out
    return out[..., : size[0], : size[1]]


def _one_hot(phase: Tensor, dtype: torch.dtype) -> Tensor:
    return (torch.arange(PHASES, device=phase.device) == phase.unsqueeze(-1)).to(dtype)


def _select(comps: Tensor, phase: Tensor) -> Tensor:
    """Component ``phase[n]`` of sample ``n``: ``(N, C, 4, h, w)`` -> ``(N, C, h, w)``."""
    index = phase.view(-1, 1, 1, 1, 1).expand_as(comps[:, :, :1])
    # sum over the one gathered component, not squeeze: a fresh tensor rather than a view, whose layout
    # inductor can choose under dynamic shapes (a squeezed view fails its stride ordering, torch 2.14)
    return torch.gather(comps, 2, index).sum(dim=2)


class _PolyphasePool(_ZooPool):
    """Shared frame of APS and LPS: optional binomial blur, polyphase split, selection, details."""

    def __init__(
        self, channels: int, kernel_size: int, *, padding_mode: str, return_details: bool,
        device: torch.device | str | None, dtype: torch.dtype | None,
    ) -> None:
        super().__init__(channels, kernel_size, return_details=return_details)
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        filt = None
        if kernel_size > 1:
            f = binomial_filter(kernel_size)
            f2 = (f[:, None] * f[None, :]).to(device=device, dtype=dtype or torch.get_default_dtype())
            filt = f2.expand(channels, 1, kernel_size, kernel_size).clone()
        self.register_buffer("filt", filt, persistent=False)  # not state: rebuilt from kernel_size
        #: the phase chosen for each sample of the last eager forward pass, ``(N,)`` int64 (``None`` before one).
        self.last_phase: Tensor | None = None

    def blur(self, x: Tensor) -> Tensor:
        """The anti-aliasing binomial blur (stride 1, ``padding_mode`` padding); the identity for ``kernel_size=1``."""
        filt = self._buffers["filt"]
        if filt is None:
            return x
        k = self.kernel_size
        return F.conv2d(_pad2d(x, (k - 1) // 2, k // 2, self.padding_mode), filt.to(x.dtype), groups=self.channels)

    def _weights(self, comps: Tensor) -> tuple[Tensor | None, Tensor]:
        """``(weights or None for a hard selection, phase)`` for components ``(N, C, 4, h, w)``."""
        raise NotImplementedError  # pragma: no cover - overridden

    def forward(self, x: Tensor) -> Any:
        check_pool_input(self, x, self.channels)
        comps = polyphase_components(self.blur(x), self.padding_mode)
        weights, phase = self._weights(comps)
        if weights is None:  # a hard selection: gather the chosen component
            y = _select(comps, phase)
            weights = _one_hot(phase, x.dtype)
        else:  # a weighted sum of the components
            y = (comps * weights.to(comps.dtype).view(-1, 1, PHASES, 1, 1)).sum(dim=2)
        if not _tracing():
            self.last_phase = phase.detach()
        if self.return_details:
            return y, PolyphaseDetails2d(weights, phase, tuple(x.shape[2:]))
        return y

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["last_phase"] = None  # the last forward's selection is not state
        return state

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, padding_mode={self.padding_mode!r}"


@register_pool("aps")
class APSPool2d(_PolyphasePool):
    r"""Adaptive polyphase sampling, APS (Chaman & Dokmanić, "Truly shift-invariant convolutional
    neural networks", CVPR 2021).

    Of the four polyphase components of a 2x2 stride (:func:`polyphase_components`) the layer
    keeps, per sample, the one with the largest :math:`\ell_p` norm taken over all channels and
    positions (``p = 2`` by default, the paper's choice). With circular padding a circular shift
    of the input permutes the components and shifts them circularly, so the same component is
    chosen and the output is the original one circularly shifted on the output grid (the
    paper's invariance result; ties go to the lowest component index, as ``argmax``).

    ``kernel_size`` > 1 blurs first with the normalised binomial filter of that many taps
    (stride 1, ``padding_mode`` padding), the paper's "APS + LPF" variant; the default 1 is
    plain APS. ``padding_mode`` (default ``"circular"``, as the authors' code) extends an odd
    axis by one sample at its end and pads the blur. The chosen phase is returned in
    :class:`PolyphaseDetails2d` (``return_details=True``, what :class:`APSUpPool2d` needs) and
    kept in ``last_phase`` after each eager forward pass. No parameters; the same in training
    and evaluation.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> x = torch.zeros(1, 1, 4, 4)
        >>> x[0, 0, 1::2, 0::2] = 5.0  # all the energy in component 2 (odd rows, even columns)
        >>> pool = APSPool2d(1)
        >>> pool(x).flatten().tolist(), pool.last_phase.tolist()
        ([5.0, 5.0, 5.0, 5.0], [2])
    """

    def __init__(
        self, channels: int, kernel_size: int = 1, *, p: float = 2.0, padding_mode: str = "circular",
        return_details: bool = False, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, padding_mode=padding_mode, return_details=return_details,
                         device=device, dtype=dtype)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or p <= 0:
            raise ValueError(f"p (the norm's order) must be a number > 0 (or math.inf), got {p!r}")
        self.p = float(p)

    @classmethod
    def num_parameters(cls, channels: int, **_: Any) -> int:
        return 0

    def norms(self, comps: Tensor) -> Tensor:
        """The :math:`\\ell_p` norm of each component of each sample, ``(N, 4)`` (float32 or wider)."""
        dtype = torch.float32 if _half(comps.dtype) else comps.dtype
        return torch.linalg.vector_norm(comps, ord=self.p, dim=(1, 3, 4), dtype=dtype)

    def _weights(self, comps: Tensor) -> tuple[Tensor | None, Tensor]:
        return None, self.norms(comps).argmax(dim=1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}" + (f", p={self.p}" if self.p != 2.0 else "")


def _check_hidden(hidden: Any, channels: int) -> int:
    if hidden is None:
        return max(1, channels // 8)
    return check_int("hidden", hidden, 1)


@register_pool("lps")
class LPSPool2d(_PolyphasePool):
    r"""Learnable polyphase sampling, LPS (Rojas-Gomez, Lim, Schwing, Do & Yeh, "Learnable
    Polyphase Sampling for Shift Invariant and Equivariant Convolutional Networks", NeurIPS
    2022), its down-sampling layer LPD.

    A small network scores each polyphase component (:func:`polyphase_components`):
    :math:`\ell_k = \mathrm{mean}\big(\mathrm{conv}_2(\mathrm{ReLU}(\mathrm{conv}_1(x_k)))\big)`,
    two 3x3 convolutions ``C -> h -> h`` with biases and ``padding_mode`` padding, the mean
    over channels and positions, the same weights for all four components (the authors'
    ``LPSLogitLayersV2``). In training the output is :math:`\sum_k w_k x_k` with
    :math:`w = \mathrm{softmax}((\ell + g)/\tau)`, :math:`g` standard Gumbel noise drawn per
    sample (Gumbel-softmax); in evaluation it is the arg-max component of :math:`\ell`.

    Choices: ``hidden`` = ``h`` defaults to ``max(1, C // 8)`` (the authors' ResNet-18 setting,
    8 to 64 channels for 64 to 512); the temperature :math:`\tau` = ``tau`` is a buffer
    (default 1.0, the authors' initial value; they anneal it during training, e.g. x0.85 every
    10 epochs down to 0.025 — set it with ``layer.tau.fill_(value)``; it is saved in the
    ``state_dict``); ``hard=True`` uses the straight-through estimator (a one-hot forward, the
    soft gradient) instead of the soft sample (the authors' default, ``hard=False``);
    ``padding_mode`` (default ``"circular"``: the authors' logit convolutions are circular, their
    code zero-pads odd sizes) pads the convolutions, the optional blur and an odd axis;
    ``kernel_size`` > 1 blurs first with a binomial filter ("LPS + LPF"), 1 (default) does not.
    Gumbel noise comes from torch's global RNG. The phase chosen (the arg-max of the weights in
    training) is returned in :class:`PolyphaseDetails2d` with the weights and kept in
    ``last_phase``.

    Parameters: ``9*C*h + h + 9*h*h + h``.

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, ceil(H/2), ceil(W/2))``.

    Examples:
        >>> pool = LPSPool2d(16).eval()
        >>> x = torch.randn(2, 16, 8, 8)
        >>> y = pool(x)
        >>> comps = polyphase_components(x)
        >>> torch.equal(y, comps[torch.arange(2), :, pool.last_phase])
        True
        >>> LPSPool2d.num_parameters(64)
        5200
    """

    def __init__(
        self, channels: int, kernel_size: int = 1, *, hidden: int | None = None, tau: float = 1.0,
        hard: bool = False, padding_mode: str = "circular", return_details: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(channels, kernel_size, padding_mode=padding_mode, return_details=return_details,
                         device=device, dtype=dtype)
        self.hidden = _check_hidden(hidden, channels)
        self.hard = bool(hard)
        tau = check_positive_float("tau", tau)
        h = self.hidden
        fk: dict[str, Any] = {"device": device, "dtype": dtype}
        self.conv1_weight = nn.Parameter(torch.empty(h, channels, 3, 3, **fk))
        self.conv1_bias = nn.Parameter(torch.empty(h, **fk))
        self.conv2_weight = nn.Parameter(torch.empty(h, h, 3, 3, **fk))
        self.conv2_bias = nn.Parameter(torch.empty(h, **fk))
        self.register_buffer("tau", torch.tensor(tau, device=device, dtype=dtype or torch.get_default_dtype()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _conv_init(self.conv1_weight, self.conv1_bias)
        _conv_init(self.conv2_weight, self.conv2_bias)

    @classmethod
    def num_parameters(cls, channels: int, *, hidden: int | None = None, **_: Any) -> int:
        c = _check_channels(channels)
        h = _check_hidden(hidden, c)
        return 9 * c * h + h + 9 * h * h + h

    def logits(self, comps: Tensor) -> Tensor:
        """The score :math:`\\ell_k` of each component of each sample, ``(N, 4)``, from ``(N, C, 4, h, w)``."""
        n = comps.shape[0]
        z = torch.cat(comps.unbind(2), dim=0)  # (4*N, C, h, w), component-major: the components share the weights
        dt = z.dtype
        z = F.conv2d(_pad2d(z, 1, 1, self.padding_mode), self.conv1_weight.to(dt), self.conv1_bias.to(dt))
        z = F.conv2d(_pad2d(torch.relu(z), 1, 1, self.padding_mode), self.conv2_weight.to(dt), self.conv2_bias.to(dt))
        z = z.float() if _half(z.dtype) else z
        return z.mean(dim=(1, 2, 3)).view(PHASES, n).t()

    def _weights(self, comps: Tensor) -> tuple[Tensor | None, Tensor]:
        logits = self.logits(comps)
        if not self.training:
            return None, logits.argmax(dim=1)
        tau = self._buffers["tau"]
        assert tau is not None  # a registered buffer
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = torch.softmax((logits + gumbel) / tau.to(logits.dtype), dim=1)
        phase = soft.argmax(dim=1)
        if self.hard:  # straight-through: an exactly one-hot forward, the soft sample's gradient
            return _one_hot(phase, soft.dtype) + (soft - soft.detach()), phase
        return soft, phase

    def extra_repr(self) -> str:
        tau = self._buffers["tau"]
        s = f"{super().extra_repr()}, hidden={self.hidden}, tau={float(tau) if tau is not None else None}"
        return s + (", hard=True" if self.hard else "")


# --------------------------------------------------------------------------- up-sampling partners
class _PolyphaseUp(nn.Module):
    """Shared frame of APS-U and LPU: :func:`polyphase_upsample` with the paired down layer's details."""

    _down_type: type[_PolyphasePool] = _PolyphasePool

    def __init__(self, down: _PolyphasePool) -> None:
        super().__init__()
        if not isinstance(down, self._down_type):
            raise TypeError(
                f"{type(self).__name__} needs the paired {self._down_type.__name__}, got {type(down).__name__}"
            )
        self.channels = down.channels

    def forward(self, y: Tensor, details: PolyphaseDetails2d) -> Tensor:
        cls = type(self).__name__
        check_pool_input(self, y, self.channels, "y")
        if not isinstance(details, PolyphaseDetails2d):
            raise TypeError(f"{cls}: details must be a PolyphaseDetails2d, got {type(details).__name__}")
        size = details.size
        if not (isinstance(size, (tuple, list, torch.Size)) and len(size) == 2):
            raise ValueError(f"{cls}: details.size must be the input's (H, W), got {size!r}")
        if not _tracing():
            if tuple(details.weights.shape) != (y.shape[0], PHASES):
                got = tuple(details.weights.shape)
                raise ValueError(f"{cls}: details.weights has shape {got}, expected ({y.shape[0]}, {PHASES})")
            expect = ((size[0] + 1) // 2, (size[1] + 1) // 2)
            if tuple(y.shape[2:]) != expect:
                raise ValueError(
                    f"{cls}: y has spatial shape {tuple(y.shape[2:])} but details.size={tuple(size)} "
                    f"(expected ceil(size/2) = {expect})"
                )
        return polyphase_upsample(y, details.weights, size)

    def extra_repr(self) -> str:
        return f"{self.channels}"


class APSUpPool2d(_PolyphaseUp):
    """APS-U (Chaman & Dokmanić, CVPR 2021; the up-sampling of their shift-equivariant U-Nets):
    each value goes back to the polyphase component its paired :class:`APSPool2d` chose,
    zeros elsewhere, cropped to the recorded input size (:func:`polyphase_upsample`).

    With circular padding the pair is shift-equivariant: a circularly shifted input gives the
    circularly shifted output. No parameters.

    Shape:
        - ``y``: ``(N, C, ceil(H/2), ceil(W/2))``; ``details``: :class:`PolyphaseDetails2d`.
        - Output: ``(N, C, H, W)``.

    Examples:
        >>> down = APSPool2d(2, return_details=True)
        >>> up = APSUpPool2d(down)
        >>> x = torch.randn(1, 2, 6, 6)
        >>> y, details = down(x)
        >>> i, j = divmod(int(details.phase), 2)
        >>> out = up(y, details)
        >>> rest = out.clone()
        >>> rest[..., i::2, j::2] = 0
        >>> torch.equal(out[..., i::2, j::2], x[..., i::2, j::2]), bool((rest == 0).all())
        (True, True)
    """

    _down_type = APSPool2d


class LPSUpPool2d(_PolyphaseUp):
    """LPU, learnable polyphase up-sampling (Rojas-Gomez et al., NeurIPS 2022): each value goes
    back to the polyphase component its paired :class:`LPSPool2d` chose, zeros elsewhere,
    cropped to the recorded input size (:func:`polyphase_upsample`).

    In evaluation the down layer's selection is one-hot; in training its Gumbel-softmax
    weights are used, as the authors' LPU does: ``w_k * y`` goes to component ``k`` (a one-hot
    placement when the down layer has ``hard=True``), and the gradient reaches the down
    layer's scoring network through the weights. No parameters of its own.

    Shape:
        - ``y``: ``(N, C, ceil(H/2), ceil(W/2))``; ``details``: :class:`PolyphaseDetails2d`.
        - Output: ``(N, C, H, W)``.

    Examples:
        >>> down = LPSPool2d(4, return_details=True).eval()
        >>> y, details = down(torch.randn(2, 4, 7, 9))
        >>> LPSUpPool2d(down)(y, details).shape
        torch.Size([2, 4, 7, 9])
    """

    _down_type = LPSPool2d


@register_updown("aps", down=APSPool2d)
def aps_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """APS with ``return_details`` and APS-U, which puts each value back at the chosen phase."""
    down = APSPool2d(channels, return_details=True, **kwargs)
    return down, APSUpPool2d(down)


@register_updown("lps", down=LPSPool2d)
def lps_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """LPS (LPD) with ``return_details`` and LPU, which puts each value back at the chosen phase."""
    down = LPSPool2d(channels, return_details=True, **kwargs)
    return down, LPSUpPool2d(down)
