r"""The lifting scheme as pure functions of tensors and predictor/updater callables.

This module is the mathematical core of the package; the layers in
:mod:`liftpool.layers` are thin, parameter-holding wrappers around it.

A *lifter* is any callable ``f(x, dim) -> Tensor`` that maps a tensor to one of
the same shape, acting along the (negative) tensor dimension ``dim``; the
learned ``P``/``U`` of the paper (:class:`liftpool.lifters.LearnedLifter`) and
the fixed linear filters of the classic wavelets
(:class:`liftpool.lifters.LinearLifter`) are both lifters.

One 1D lifting transform along ``dim`` with steps ``[(P_1, U_1), ..., (P_m, U_m)]``:

.. math::

    x_e = x[0::2],\quad x_o = x[1::2] \\
    d \leftarrow x_o,\ s \leftarrow x_e;\quad
    \text{for } j = 1..m:\ d \leftarrow d - P_j(s),\ s \leftarrow s + U_j(d) \\
    (s, d) \leftarrow (\zeta_s s, \zeta_d d)\ \text{(optional final scaling)}

and its inverse runs the same steps backwards, which is exact for *any* P and U.
An odd-length axis is extended by one edge sample before the split; the inverse
crops it away.  The constraint terms of the paper for one 1D transform are
``c_u = mean((s - x_o)^2)`` and ``c_p = mean(d^2)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .constants import AXIS_ORDER, PADDING_MODES, band_names

Lifter = Callable[[Tensor, int], Tensor]
"""A predictor or updater: ``f(x, dim)`` returns a tensor shaped like ``x``."""

Steps = Sequence[tuple[Lifter, Lifter]]
"""A sequence of ``(P, U)`` pairs making up one 1D lifting transform."""

__all__ = [
    "Constraints",
    "Lifter",
    "Steps",
    "decompose",
    "lift_1d",
    "merge",
    "pad_axis",
    "reconstruct",
    "split",
    "unlift_1d",
]


class Constraints(NamedTuple):
    """The paper's constraint terms, summed over the 1D transforms of a layer."""

    c_u: Tensor
    c_p: Tensor


def _check_dim(x: Tensor, dim: int) -> int:
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim={dim} is out of range for a tensor with {x.ndim} dims")
    return dim - x.ndim if dim >= 0 else dim


def _physical_order(x: Tensor) -> list[int]:
    """The dims of ``x`` from the largest stride to the smallest (its memory order; ties keep dim order)."""
    strides = x.stride()
    # insertion sort with explicit comparisons: dynamo cannot trace sorted() on symbolic strides
    order = list(range(x.ndim))
    for i in range(1, x.ndim):
        j = i
        while j > 0 and strides[order[j - 1]] < strides[order[j]]:
            order[j - 1], order[j] = order[j], order[j - 1]
            j -= 1
    return order


def _take_along(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``x.index_select(dim, index)`` laid out in memory like ``x`` (e.g. channels_last stays channels_last).

    ``index_select`` writes a fresh row-major tensor; gathering on ``x`` permuted into its
    memory order and permuting back keeps the layout, so a later ``cat`` with ``x`` (and the
    backward of both) runs without mixed-layout copies.  Only strides are queried, which
    works under ``torch.func.vmap`` too.
    """
    order = _physical_order(x)
    inverse = [order.index(d) for d in range(x.ndim)]
    return x.permute(order).index_select(order.index(dim % x.ndim), index).permute(inverse)


def _edge_index(n: int, left: int, right: int, mode: str, device: torch.device) -> Tensor:
    """Indices (into an axis of length ``n``) of the ``left`` samples before and ``right`` after it.

    Written as tensor arithmetic on ``n``, with no Python branch on its value, so a traced or
    exported graph (``torch.export``, ONNX, ``jit.trace``; ``n`` is then symbolic) serves every
    length, including the short axes on which reflection falls back to replication.
    """
    i = torch.cat([torch.arange(-left, 0, device=device), torch.arange(right, device=device) + n])
    last = n - 1
    if mode == "circular":
        # the length as a tensor: the dynamo ONNX exporter cannot translate remainder by a symbolic scalar
        return torch.remainder(i, torch.zeros_like(i) + n)
    replicate = torch.clamp(i, min=0)
    replicate = torch.where(replicate > last, torch.zeros_like(i) + last, replicate)
    if mode == "replicate":
        return replicate
    # reflect (mirror without repeating the edge): valid only when one reflection stays inside
    # the axis, i.e. n > max(left, right); otherwise the whole axis is replicated
    reflect = torch.where(i < 0, -i, i)
    reflect = torch.where(reflect > last, 2 * last - reflect, reflect)
    # a one-element comparison rather than a reduction (ONNX ReduceMin does not convert to opset 17)
    fits = torch.arange(max(left, right), max(left, right) + 1, device=device) < n
    return torch.where(fits, reflect, replicate)


def pad_axis(x: Tensor, dim: int, left: int, right: int, mode: str = "reflect") -> Tensor:
    """Pad ``x`` along one axis only.

    ``mode`` is one of ``reflect`` (mirror without repeating the edge sample),
    ``replicate`` (repeat the edge sample), ``zeros`` or ``circular``.  Reflection
    needs more samples than the pad width; where the axis is too short it falls
    back to ``replicate`` (so a 1x1 or 2x2 map never crashes).  Circular padding
    wraps around as often as needed.

    The edge samples are gathered with index arithmetic on the axis length and
    concatenated (``zeros`` uses a constant pad): one implementation for every
    tensor rank and layout, whose backward compiles with inductor (unlike
    ``replication_pad*d_backward``) and whose traced / exported graph (ONNX, with
    dynamic sizes) is valid for every length.

    Examples:
        >>> x = torch.tensor([[[1.0, 2.0, 3.0]]])
        >>> pad_axis(x, -1, 2, 1, "reflect")
        tensor([[[3., 2., 1., 2., 3., 2.]]])
        >>> pad_axis(x, -1, 1, 1, "circular")
        tensor([[[3., 1., 2., 3., 1.]]])
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    if left < 0 or right < 0:
        raise ValueError(f"pad widths must be >= 0, got left={left}, right={right}")
    if left == 0 and right == 0:
        return x
    dim = _check_dim(x, dim)
    if mode == "zeros":
        k = -dim
        pad = [0, 0] * k
        pad[2 * k - 2], pad[2 * k - 1] = left, right
        return F.pad(x, pad, mode="constant", value=0.0)
    edges = _take_along(x, dim, _edge_index(x.shape[dim], left, right, mode, x.device))
    parts = [edges.narrow(dim, 0, left)] if left else []
    parts.append(x)
    if right:
        parts.append(edges.narrow(dim, left, right))
    return torch.cat(parts, dim=dim)


def _phase_pairs(n: int, device: torch.device) -> Tensor:
    """``(ceil(n / 2), 2)`` indices: row ``i`` is ``(2i, 2i + 1)``, the even and the odd sample of pair ``i``.

    Clamped to the last sample, which extends an odd axis by one copy of its edge: shape
    arithmetic, not a branch on the parity, so one traced graph serves every length.  Both
    phases in one tensor of ``2 * ceil(n / 2) >= 2`` elements: an exported graph with a symbolic
    ``n`` then needs no guard on whether an index tensor holds a single element (``n <= 2``).
    """
    h = (n + 1) // 2
    return torch.clamp(torch.arange(2 * h, device=device), max=n - 1).view(h, 2)


def _phase_index(n: int, phase: int, device: torch.device) -> Tensor:
    """Indices ``phase, phase + 2, ...`` of the ``ceil(n / 2)`` samples of one polyphase component.

    Clamped to the last sample, which extends an odd axis by one copy of its edge: shape
    arithmetic, not a branch on the parity, so one traced graph serves every length.
    """
    h = (n + 1) // 2
    return torch.clamp(torch.arange(h, device=device) * 2 + phase, max=n - 1)


def split(x: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Polyphase split along ``dim``: ``(x[0::2], x[1::2])``.

    An odd-length axis is first extended by one copy of its last sample so that
    both halves have ``ceil(n / 2)`` samples.

    Examples:
        >>> split(torch.arange(5.0), 0)
        (tensor([0., 2., 4.]), tensor([1., 3., 4.]))
    """
    dim = _check_dim(x, dim)
    n = x.shape[dim]
    if isinstance(n, int) and n < 1:
        raise ValueError(f"cannot split an empty axis (dim {dim} has size 0)")
    return _take_along(x, dim, _phase_index(n, 0, x.device)), _take_along(x, dim, _phase_index(n, 1, x.device))


def merge(even: Tensor, odd: Tensor, dim: int, length: int | None = None) -> Tensor:
    """Interleave ``even`` and ``odd`` along ``dim`` and crop to ``length``.

    Inverse of :func:`split`.

    Examples:
        >>> e, o = split(torch.arange(5.0), 0)
        >>> merge(e, o, 0, 5)
        tensor([0., 1., 2., 3., 4.])
    """
    if even.shape != odd.shape:
        raise ValueError(f"even and odd halves differ in shape: {tuple(even.shape)} vs {tuple(odd.shape)}")
    dim = _check_dim(even, dim)
    n = even.shape[dim]
    y = torch.stack((even, odd), dim=dim)  # (..., n, 2, rest...)
    shape = list(even.shape)
    shape[dim] = 2 * n
    y = y.reshape(shape)
    if length is None:
        return y
    if isinstance(length, int) and isinstance(n, int) and length not in (2 * n - 1, 2 * n):
        raise ValueError(f"length={length} does not match halves of {n} samples (expected {2 * n - 1} or {2 * n})")
    # a slice, not a branch on the parity: a traced graph crops (or not) for every size
    index: list[slice] = [slice(None)] * y.ndim
    index[dim] = slice(0, length)
    return y[tuple(index)]


def lift_1d(
    x: Tensor, dim: int, steps: Steps, *, scale: tuple[float, float] | None = None, constraints: bool = False
) -> tuple[Tensor, Tensor, Constraints | None]:
    r"""One 1D lifting transform (split, then predict/update pairs) along ``dim``.

    Returns ``(s, d, constraints)`` where ``s`` is the approximation and ``d``
    the detail, each of ``ceil(n/2)`` samples along ``dim``; ``constraints`` is
    ``Constraints(mean((s - x_o)^2), mean(d^2))`` when asked for, else ``None``.

    Examples:
        Haar with the paper's normalisation: ``d = x_o - x_e``, ``s = x_e + d/2``.

        >>> P = lambda t, dim: t
        >>> U = lambda t, dim: t / 2
        >>> s, d, _ = lift_1d(torch.tensor([1.0, 3.0, 4.0, 8.0]), 0, [(P, U)])
        >>> s, d
        (tensor([2., 6.]), tensor([2., 4.]))
    """
    if len(steps) == 0:
        raise ValueError("steps must hold at least one (P, U) pair")
    xe, xo = split(x, dim)
    s, d = xe, xo
    for predict, update in steps:
        d = d - predict(s, dim)
        s = s + update(d, dim)
    if scale is not None:
        s = s * scale[0]
        d = d * scale[1]
    c = None
    if constraints:
        # sum / max(numel, 1): the mean, and 0 (not NaN) for an empty batch
        c = Constraints((s - xo).pow(2).sum() / max(xo.numel(), 1), d.pow(2).sum() / max(d.numel(), 1))
    return s, d, c


def unlift_1d(
    s: Tensor, d: Tensor, dim: int, steps: Steps, *, length: int | None = None, scale: tuple[float, float] | None = None
) -> Tensor:
    """Exact inverse of :func:`lift_1d`: ``x_e = s - U(d)``, ``x_o = d + P(x_e)``, merge, crop.

    Examples:
        >>> P = lambda t, dim: t.tanh()
        >>> U = lambda t, dim: 0.3 * t.sin()
        >>> x = torch.randn(2, 7, dtype=torch.float64)
        >>> s, d, _ = lift_1d(x, -1, [(P, U)])
        >>> torch.allclose(unlift_1d(s, d, -1, [(P, U)], length=7), x, rtol=0, atol=1e-12)
        True
    """
    if s.shape != d.shape:
        raise ValueError(f"s and d differ in shape: {tuple(s.shape)} vs {tuple(d.shape)}")
    if scale is not None:
        s = s / scale[0]
        d = d / scale[1]
    for predict, update in reversed(list(steps)):
        s = s - update(d, dim)
        d = d + predict(s, dim)
    return merge(s, d, dim, length)


StepsFor = Callable[[int], Steps]


def _steps_for(steps: Steps | Sequence[Steps], n_transforms: int) -> StepsFor:
    """Normalise ``steps``: one shared ``Steps`` or one per 1D transform."""
    if len(steps) > 0 and isinstance(steps[0], tuple) and len(steps[0]) == 2 and callable(steps[0][0]):
        shared = steps
        return lambda i: shared  # type: ignore[return-value]
    if len(steps) != n_transforms:
        raise ValueError(f"expected one Steps per 1D transform ({n_transforms}), got {len(steps)}")
    per = list(steps)
    return lambda i: per[i]  # type: ignore[return-value]


def decompose(
    x: Tensor,
    spatial_dims: int,
    steps: Steps | Sequence[Steps],
    *,
    scale: tuple[float, float] | None = None,
    constraints: bool = False,
) -> tuple[dict[str, Tensor], Constraints | None]:
    """Separable N-D lifting: lift along W, then H, then D, every band each time.

    ``steps`` is either one ``Steps`` shared by all 1D transforms, or a sequence
    of ``2**spatial_dims - 1`` of them, one per 1D transform in the order they
    run (2D: horizontal; vertical on ``L``; vertical on ``H``).

    Returns ``(bands, constraints)`` where ``bands`` maps band names (see
    :func:`liftpool.constants.band_names`) to tensors and ``constraints`` sums the
    terms over all 1D transforms.

    Examples:
        >>> P = lambda t, dim: t
        >>> U = lambda t, dim: t / 2
        >>> bands, _ = decompose(torch.arange(16.0).view(1, 1, 4, 4), 2, [(P, U)])
        >>> list(bands)
        ['LL', 'LH', 'HL', 'HH']
        >>> bands["LL"]  # Haar LL = mean of each 2x2 block
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
    """
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    if x.ndim < spatial_dims + 1:
        raise ValueError(f"x needs at least {spatial_dims + 1} dims, got shape {tuple(x.shape)}")
    steps_for = _steps_for(steps, 2**spatial_dims - 1)
    bands: dict[str, Tensor] = {"": x}
    c_u: Tensor | None = None
    c_p: Tensor | None = None
    t = 0
    for axis in AXIS_ORDER[:spatial_dims]:
        new: dict[str, Tensor] = {}
        for name, band in bands.items():
            s, d, c = lift_1d(band, axis, steps_for(t), scale=scale, constraints=constraints)
            t += 1
            new[name + "L"] = s
            new[name + "H"] = d
            if c is not None:
                c_u = c.c_u if c_u is None else c_u + c.c_u
                c_p = c.c_p if c_p is None else c_p + c.c_p
        bands = new
    out = {name: bands[name] for name in band_names(spatial_dims)}
    cons = Constraints(c_u, c_p) if constraints and c_u is not None and c_p is not None else None
    return out, cons


def reconstruct(
    bands: Mapping[str, Tensor],
    size: Sequence[int],
    steps: Steps | Sequence[Steps],
    *,
    scale: tuple[float, float] | None = None,
) -> Tensor:
    """Exact inverse of :func:`decompose`.

    ``size`` is the spatial size of the original input, in tensor order
    (2D: ``(H, W)``), used to crop odd axes.

    Examples:
        >>> P = lambda t, dim: 0.5 * t.tanh()
        >>> U = lambda t, dim: 0.25 * t
        >>> x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
        >>> b, _ = decompose(x, 2, [(P, U)])
        >>> torch.allclose(reconstruct(b, (5, 7), [(P, U)]), x, rtol=0, atol=1e-12)
        True
    """
    spatial_dims = len(size)
    names = band_names(spatial_dims)
    missing = [n for n in names if n not in bands]
    if missing:
        raise ValueError(f"bands is missing {missing}; expected all of {names}")
    steps_for = _steps_for(steps, 2**spatial_dims - 1)
    # transform index of (level, prefix): level j runs transforms 2**j - 1 .. 2**(j+1) - 2,
    # in the canonical order of the prefixes.
    level_bands = dict(bands)
    for level in reversed(range(spatial_dims)):
        axis = AXIS_ORDER[level]
        length = size[spatial_dims - 1 - level]
        prefixes = band_names(level) if level else ("",)
        merged: dict[str, Tensor] = {}
        for k, prefix in enumerate(prefixes):
            t = 2**level - 1 + k
            merged[prefix] = unlift_1d(
                level_bands[prefix + "L"], level_bands[prefix + "H"], axis, steps_for(t), length=length, scale=scale
            )
        level_bands = merged
    return level_bands[""]
