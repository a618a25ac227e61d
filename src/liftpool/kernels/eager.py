r"""Fast path of the learned LiftDownPool / LiftUpPool (same maths as :mod:`liftpool.functional`).

The paper-literal computation (:func:`liftpool.functional.decompose`, kept in
:mod:`liftpool.reference` for tests and benchmarks) runs ``2**dims - 1`` separate
1D lifting transforms, each with its own predictor and updater calls on strided
slices.  This module computes exactly the same bands with far fewer, faster
kernels (all measured with ``liftpool bench``, see ``docs/performance.md``):

* **One P call and one U call per axis.**  All bands that are lifted along the
  same axis are stacked along the channel dimension (``2**j`` groups of ``C``
  channels at level ``j``), so the predictor/updater of every 1D transform of
  that level runs as *one* grouped convolution.  With ``share_weights=True`` the
  weights are repeated per group; with separate weights they are concatenated
  (the grouped convolution keeps the groups apart), so shared and unshared
  layers take the same path.
* **channels_last inside.**  A depthwise ``(1, K)`` convolution in channels_last
  memory order is 10-20x faster on CPU than in NCHW; the layer converts once on
  entry and returns its outputs in the input's memory format.
* **tanh through sigmoid.**  ``tanh(z) = 2·sigmoid(2z) - 1``; the factor 2 is
  folded into the 1x1 weights, and on this CPU's ATen ``sigmoid`` is ~6-10x
  faster than ``tanh``.  The identity holds exactly in real arithmetic and to
  rounding in floating point (well inside the float64 1e-12 contract), and the
  inverse uses the same function, so up-of-down stays exact.

The constraint terms are the same sums: at level ``j`` the literal path adds
``2**j`` per-band means of equal-sized bands, which is ``2**j`` times the mean of
the stacked tensor.

Plain autograd only (no custom ``autograd.Function``), so ``torch.compile``,
autocast and ONNX export see ordinary ATen ops.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..constants import AXIS_ORDER, band_names
from ..functional import Constraints, _phase_index, _phase_pairs, _take_along, pad_axis
from ..lifters import LearnedLifter, LiftingTransform

__all__ = ["fast_applicable", "fast_decompose", "fast_pool", "fast_reconstruct"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CL = {4: torch.channels_last, 5: torch.channels_last_3d}


def fast_applicable(transforms: nn.ModuleList) -> bool:
    """True when every transform is one learned ``(P, U)`` pair without final scaling."""
    for t in transforms:
        if not isinstance(t, LiftingTransform) or t.scale is not None or len(t.P) != 1:
            return False
        if not isinstance(t.P[0], LearnedLifter) or not isinstance(t.U[0], LearnedLifter):
            return False
    return True


# ---------------------------------------------------------------- layout helpers
# Layouts are read from strides and made by permute + contiguous rather than with
# ``memory_format=`` queries and conversions, which torch.func.vmap does not support
# ("querying is_contiguous inside of vmap"); the resulting strides are the same.
def _is_channels_last(x: Tensor) -> bool:
    """Whether a 4D/5D ``x`` is laid out channels-first-in-memory (channels_last) rather than contiguous."""
    return x.ndim in _CL and x.stride(1) == 1 and not x.is_contiguous()


def _to_cl(t: Tensor) -> Tensor:
    """``t`` (4D/5D) in channels_last memory order; no copy when it already is."""
    last = t.ndim - 1
    return t.movedim(1, last).contiguous().movedim(last, 1)


def _to_internal(x: Tensor, spatial_dims: int) -> tuple[Tensor, bool]:
    """``x`` as a 4D/5D channels_last tensor (1D inputs get a unit H axis); also whether ``x`` was channels_last."""
    was_cl = _is_channels_last(x)
    if spatial_dims == 1:
        x = x.unsqueeze(-2)
    return _to_cl(x), was_cl


def _grad_to_cl(g: Tensor) -> Tensor:
    return g if g is None else _to_cl(g)


def _grad_to_channels_last(t: Tensor) -> Tensor:
    """Register a hook turning ``t``'s incoming gradient channels_last (eager autograd only).

    The caller's gradient arrives in the caller's memory format; every backward kernel
    of the fast path runs ~10x faster when the gradient is channels_last like the
    tensors saved for backward, so it is converted once where it enters.
    """
    if (
        t.requires_grad
        and t.ndim in _CL
        and torch.is_grad_enabled()
        and not torch.jit.is_tracing()  # type: ignore[attr-defined,no-untyped-call]  # not re-exported in stubs
        and not torch.compiler.is_compiling()
    ):
        t.register_hook(_grad_to_cl)  # type: ignore[no-untyped-call]  # untyped in torch's stubs
    return t


def _to_external(t: Tensor, spatial_dims: int, channels_last: bool) -> Tensor:
    if not (channels_last and spatial_dims > 1):
        _grad_to_channels_last(t)
    if spatial_dims == 1:
        return t.squeeze(-2).contiguous()
    if channels_last:
        return _to_cl(t)
    return t.contiguous()


def _level_prefixes(level: int) -> list[str]:
    """Band-name prefix of each channel group at ``level`` (group ``g``: letter ``k`` is ``H`` iff bit ``k`` of g)."""
    return ["".join("H" if (g >> k) & 1 else "L" for k in range(level)) for g in range(2**level)]


def _level_transforms(level: int, n_transforms: int) -> list[int]:
    """Index of the 1D transform that lifts each channel group at ``level`` (order of :func:`functional.decompose`)."""
    if n_transforms == 1:
        return [0] * 2**level
    if level == 0:
        return [0]
    canon = band_names(level)
    return [2**level - 1 + canon.index(p) for p in _level_prefixes(level)]


def _stack(params: list[Tensor]) -> Tensor:
    return params[0] if len(params) == 1 else torch.cat(params, dim=0)


class _Lifter:
    """One P or U for all channel groups of a level, as a single grouped convolution."""

    def __init__(self, lifters: Sequence[LearnedLifter], groups: int) -> None:
        first = lifters[0]
        self.channels = first.channels
        self.k = first.kernel_size
        self.padding_mode = first.padding_mode
        self.g1, self.g2 = first.groups
        self.n = groups
        uniq = {id(m): m for m in lifters}
        if len(uniq) == 1:
            m = first
            rep = (groups,)
            self.w = m.weight.repeat(rep + (1,) * (m.weight.ndim - 1)) if groups > 1 else m.weight
            self.b = m.bias.repeat(groups) if groups > 1 else m.bias
            self.pw = m.pw_weight.repeat((groups, 1)) if groups > 1 else m.pw_weight
            self.pb = m.pw_bias.repeat(groups) if groups > 1 else m.pw_bias
        else:
            self.w = _stack([m.weight for m in lifters])
            self.b = _stack([m.bias for m in lifters])
            self.pw = _stack([m.pw_weight for m in lifters])
            self.pb = _stack([m.pw_bias for m in lifters])
        # tanh(z) = 2 sigmoid(2z) - 1: fold the inner 2 into the 1x1 stage
        self.pw = self.pw * 2
        self.pb = self.pb * 2

    def sigmoid_part(self, x: Tensor, dim: int) -> Tensor:
        """``sigmoid(2 z)`` where ``P(x) = tanh(z)``; ``x`` is 4D/5D with ``n`` channel groups."""
        spatial = x.ndim - 2
        k = self.k
        shape = [1] * spatial
        shape[spatial + dim] = k
        w = self.w.reshape(tuple(self.w.shape[:2]) + tuple(shape))
        pad = k // 2
        if pad and self.padding_mode == "zeros":
            padding = [0] * spatial
            padding[spatial + dim] = pad
            y = _CONV[spatial](x, w, None, padding=tuple(padding), groups=self.g1 * self.n)
        else:
            if pad:
                x = pad_axis(x, dim, pad, pad, self.padding_mode)
            y = _CONV[spatial](x, w, None, groups=self.g1 * self.n)
        # the bias is added outside the convolution: oneDNN's depthwise bias gradient
        # in channels_last is ~20x slower than a plain reduction (measured)
        # in place where autograd allows it (the conv and addcmul outputs are not saved
        # for backward): fewer fresh allocations, each of which costs page faults here
        y = y.add_(self.b.view((1, -1) + (1,) * spatial)).relu_()
        if self.g2 == self.channels:
            view = (1, -1) + (1,) * spatial
            y = torch.addcmul(self.pb.view(view), y, self.pw.view(view))
        else:
            w2 = self.pw.reshape(tuple(self.pw.shape) + (1,) * spatial)
            y = _CONV[spatial](y, w2, self.pb, groups=self.g2 * self.n)
        return y.sigmoid_()

    @staticmethod
    def _combine(base: Tensor, sig: Tensor, alpha: float) -> Tensor:
        """``base + alpha * sig - alpha / 2`` (``alpha = +-2``); reuses ``sig``'s memory without autograd."""
        needs_grad = torch.is_grad_enabled() and (base.requires_grad or sig.requires_grad)
        # a trace takes one path whatever the grad mode (jit.trace checks the graph under no_grad)
        if needs_grad or base.dtype != sig.dtype or torch.jit.is_tracing():  # type: ignore[attr-defined,no-untyped-call]  # stubs
            out = torch.add(base, sig, alpha=alpha)
        else:
            out = sig.mul_(alpha).add_(base)  # == base + alpha * sig (alpha = +-2 is exact); in sig's memory
        return out.sub_(alpha / 2)

    def predict(self, o: Tensor, e: Tensor, dim: int) -> Tensor:
        """``o - P(e)`` computed as ``o + 1 - 2 sigmoid(2z)``."""
        return self._combine(o, self.sigmoid_part(e, dim), -2.0)

    def update(self, e: Tensor, d: Tensor, dim: int) -> Tensor:
        """``e + U(d)`` computed as ``e - 1 + 2 sigmoid(2z)``."""
        return self._combine(e, self.sigmoid_part(d, dim), 2.0)

    def unupdate(self, s: Tensor, d: Tensor, dim: int) -> Tensor:
        """``s - U(d)``."""
        return self._combine(s, self.sigmoid_part(d, dim), -2.0)

    def unpredict(self, d: Tensor, e: Tensor, dim: int) -> Tensor:
        """``d + P(e)``."""
        return self._combine(d, self.sigmoid_part(e, dim), 2.0)


def _pair(transforms: nn.ModuleList, i: int) -> tuple[LearnedLifter, LearnedLifter]:
    """The learned ``(P, U)`` of transform ``i`` (:func:`fast_applicable` checked their types)."""
    t = transforms[i]
    assert isinstance(t, LiftingTransform)
    return cast(LearnedLifter, t.P[0]), cast(LearnedLifter, t.U[0])


def _lifters(transforms: nn.ModuleList, level: int) -> tuple[_Lifter, _Lifter]:
    idx = _level_transforms(level, len(transforms))
    groups = len(idx)
    P = _Lifter([_pair(transforms, i)[0] for i in idx], groups)
    U = _Lifter([_pair(transforms, i)[1] for i in idx], groups)
    return P, U


def _even_odd(b: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Even and odd samples along ``dim``, an odd axis extended by its edge sample (gathered, no parity branch)."""
    n = b.shape[dim]
    return _take_along(b, dim, _phase_index(n, 0, b.device)), _take_along(b, dim, _phase_index(n, 1, b.device))


def _channel_groups(t: Tensor, groups: int) -> list[Tensor]:
    """``t.chunk(groups, dim=1)`` as slices: the dynamo ONNX exporter writes ``chunk`` as an
    opset-18 ``Split`` that does not convert down to opset 17; ``Slice`` does."""
    size = t.shape[1] // groups
    return [t[:, g * size : (g + 1) * size] for g in range(groups)]


def _sum_square(t: Tensor) -> Tensor:
    """``sum(t**2)`` whose gradient ``2 t g`` keeps ``t``'s memory layout (``mean``'s and
    ``mse_loss``'s backward return NCHW tensors, after which every backward kernel mixes layouts
    and runs ~10x slower) and is non-finite exactly where ``t`` is, as the paper-literal
    ``pow(2).sum()`` (the backward of ``vector_norm(t).square()`` divides by the norm: one inf
    or NaN in ``t`` made the whole gradient NaN)."""
    return (t * t).sum()


def _mean_square(t: Tensor) -> Tensor:
    """``mean(t**2)``; an empty tensor (a batch of N = 0) gives 0, not 0/0 = NaN."""
    return _sum_square(t) / max(t.numel(), 1)


def _add_constraints(
    acc: tuple[Tensor | None, Tensor | None], cu: Tensor, cp: Tensor
) -> tuple[Tensor | None, Tensor | None]:
    c_u, c_p = acc
    return (cu if c_u is None else c_u + cu, cp if c_p is None else c_p + cp)


def _channels_last_view(t: Tensor) -> Tensor:
    """``(N, *spatial, C)`` contiguous -> ``(N, C, *spatial)`` channels_last view."""
    # positive dims: the legacy ONNX exporter writes a negative dim into Transpose's perm,
    # which onnxruntime rejects ("Invalid attribute perm {0, -1, 1, 2}")
    return t.movedim(t.ndim - 1, 1)


def _split_polyphase(x: Tensor, spatial_dims: int) -> tuple[Tensor, Tensor]:
    """Even / odd columns of every row phase, as two channels_last ``(N, 2C, h, w)`` tensors.

    ``x`` is ``(N, C, H, W)`` (1D: ``(N, C, L)``), any memory format; odd axes are
    extended by one edge sample.  In 2D, channel group 0 holds the even rows and
    group 1 the odd rows, so the horizontal lifting step of both row phases is
    one convolution call and the vertical step needs no strided slicing.

    One gather (advanced indexing of the ``(N, *spatial, C)`` view with the phase indices
    of :func:`liftpool.functional._phase_pairs`): the odd-size extension is index
    arithmetic on the shape, not a branch on the parity, so a traced or exported graph
    (ONNX with dynamic H/W, ``jit.trace``) serves every size; its backward compiles.
    """
    dev = x.device
    if spatial_dims == 1:
        L = x.shape[-1]
        cols = _phase_pairs(L, dev).t().contiguous()  # (j, l)
        e, o = x.permute(0, 2, 1)[:, cols].unbind(1)  # (N, j, l, C) -> (N, l, C)
        return _channels_last_view(e.unsqueeze(1)), _channels_last_view(o.unsqueeze(1))
    H, W = x.shape[-2:]
    rows = _phase_pairs(H, dev)  # (h, i)
    cols = _phase_pairs(W, dev)  # (w, j)
    # index shapes (h, 1, 1, i) and (w, j, 1) broadcast to (h, w, j, i); their strides are static
    # (inductor with dynamic shapes cannot order a symbolic stride on a size-1 dim)
    ph = x.permute(0, 2, 3, 1)[:, rows[:, None, None, :], cols[:, :, None]]  # (N, h, w, j, i, C)
    e, o = ph.unbind(3)  # (N, h, w, i, C) each, interleaved in memory
    # dense copies: every later kernel (and its backward) runs several times slower on the interleaved views
    return _channels_last_view(e.flatten(3).contiguous()), _channels_last_view(o.flatten(3).contiguous())


def _merge_polyphase(e: Tensor, o: Tensor, size: Sequence[int]) -> Tensor:
    """Inverse of :func:`_split_polyphase` (returns a contiguous NCHW / NCL tensor)."""
    _grad_to_channels_last(e)
    _grad_to_channels_last(o)
    if len(size) == 1:
        n, c, _, lh = e.shape
        y = torch.stack((e.squeeze(2), o.squeeze(2)), dim=3).reshape(n, c, 2 * lh)
        return y[:, :, : size[0]]  # a slice, not a parity branch: crops an odd L, a no-op view otherwise
    n, c2, h, w = e.shape
    c = c2 // 2
    # (N, 2C, h, w) -> (N, i, C, h, w); stack columns -> (N, i, C, h, w, j)
    y = torch.stack((e.unflatten(1, (2, c)), o.unflatten(1, (2, c))), dim=5)  # type: ignore[no-untyped-call]  # stubs
    y = y.permute(0, 2, 3, 1, 4, 5).reshape(n, c, 2 * h, 2 * w)
    H, W = size
    return y[:, :, :H, :W]  # slices, not parity branches: one traced graph crops odd sizes


def _lift_2d(x: Tensor, transforms: nn.ModuleList, spatial_dims: int, constraints: bool):  # type: ignore[no-untyped-def]
    """1D/2D decomposition on the polyphase layout; returns the last level's stacked ``(s, d)``."""
    n, c = x.shape[:2]
    acc: tuple[Tensor | None, Tensor | None] = (None, None)
    e, o = _split_polyphase(x, spatial_dims)
    # horizontal step (level 0): one P and one U call for both row phases
    rows = 2 if spatial_dims == 2 else 1
    P = _Lifter([_pair(transforms, 0)[0]] * rows, rows)
    U = _Lifter([_pair(transforms, 0)[1]] * rows, rows)
    d = P.predict(o, e, -1)
    s = U.update(e, d, -1)
    if constraints:
        ts, td = s - o, d
        if spatial_dims == 2:
            # the literal step runs on the H unpadded rows: the duplicated last row of an odd H
            # (odd rows' group, row H // 2) does not count.  Selected out (torch.where on the row
            # index, not a branch on the parity, and not a subtraction: inf - inf would be NaN)
            H = x.shape[-2]
            dev = s.device
            # (2C, h, 1): every row of the even rows' group, the first H // 2 rows of the odd rows' group;
            # built as (h, 1, 2C) and permuted, so that its strides are channels_last like ts and td (the
            # selection and its backward then keep that layout)
            rows_ok = (torch.arange(s.shape[-2], device=dev) < H // 2).view(-1, 1, 1)
            real = (rows_ok | (torch.arange(2 * c, device=dev) < c)).permute(2, 0, 1)
            numel = n * c * H * s.shape[-1]
            # sum / max(numel, 1): the mean, and 0 (not NaN) for an empty batch
            denom = max(numel, 1)
            cu = _sum_square(torch.where(real, ts, 0.0)) / denom
            cp = _sum_square(torch.where(real, td, 0.0)) / denom
        else:
            cu, cp = _mean_square(ts), _mean_square(td)
        acc = _add_constraints(acc, cu, cp)
    if spatial_dims == 2:
        # vertical step (level 1) on the bands (L, H) of the horizontal step, stacked
        s_even, s_odd = _channel_groups(s, 2)
        d_even, d_odd = _channel_groups(d, 2)
        e = torch.cat([s_even, d_even], dim=1)
        o = torch.cat([s_odd, d_odd], dim=1)
        P, U = _lifters(transforms, 1)
        d = P.predict(o, e, -2)
        s = U.update(e, d, -2)
        if constraints:
            acc = _add_constraints(acc, _mean_square(s - o) * 2, _mean_square(d) * 2)
    c_u, c_p = acc
    cons = Constraints(c_u, c_p) if constraints and c_u is not None and c_p is not None else None
    return s, d, cons


def _unlift_2d(s: Tensor, d: Tensor, size: Sequence[int], transforms: nn.ModuleList) -> Tensor:
    spatial_dims = len(size)
    if spatial_dims == 2:
        P, U = _lifters(transforms, 1)
        e = U.unupdate(s, d, -2)
        o = P.unpredict(d, e, -2)
        # an odd H drops the last odd row: zero it before the horizontal step (selected, not a branch on
        # the parity), as the literal path crops after each axis; it is cropped from the output anyway,
        # and so a non-finite value in it cannot reach the gradients through 0 * inf or 0 * NaN
        H = size[0]
        o = torch.where((torch.arange(o.shape[-2], device=o.device) < H // 2).unsqueeze(-1), o, 0.0)
        e_s, e_d = _channel_groups(e, 2)
        o_s, o_d = _channel_groups(o, 2)
        s = torch.cat([e_s, o_s], dim=1)
        d = torch.cat([e_d, o_d], dim=1)
    rows = 2 if spatial_dims == 2 else 1
    P = _Lifter([_pair(transforms, 0)[0]] * rows, rows)
    U = _Lifter([_pair(transforms, 0)[1]] * rows, rows)
    e = U.unupdate(s, d, -1)
    o = P.unpredict(d, e, -1)
    return _merge_polyphase(e, o, size)


def _lift_levels(
    x: Tensor, transforms: nn.ModuleList, spatial_dims: int, constraints: bool
) -> tuple[Tensor, Tensor, Constraints | None]:
    """Lift ``x`` along every axis; returns the last level's stacked ``(s, d)`` (channels_last, 4D/5D)."""
    if spatial_dims < 3:
        return _lift_2d(x, transforms, spatial_dims, constraints)
    b, _ = _to_internal(x, spatial_dims)
    c_u: Tensor | None = None
    c_p: Tensor | None = None
    s = d = b
    for level in range(spatial_dims):
        dim = AXIS_ORDER[level]
        P, U = _lifters(transforms, level)
        e, o = _even_odd(b, dim)
        d = P.predict(o, e, dim)
        s = U.update(e, d, dim)
        if constraints:
            groups = 2**level
            cu = _mean_square(s - o)
            cp = _mean_square(d)
            if groups > 1:
                cu = cu * groups
                cp = cp * groups
            c_u = cu if c_u is None else c_u + cu
            c_p = cp if c_p is None else c_p + cp
        if level + 1 < spatial_dims:
            b = torch.cat([s, d], dim=1)
    cons = Constraints(c_u, c_p) if constraints and c_u is not None and c_p is not None else None
    return s, d, cons


def _band_views(s: Tensor, d: Tensor, spatial_dims: int, channels: int) -> dict[str, Tensor]:
    """Band name -> channel slice of the last level's stacked ``s`` / ``d``."""
    out: dict[str, Tensor] = {}
    for g, prefix in enumerate(_level_prefixes(spatial_dims - 1)):
        out[prefix + "L"] = s[:, g * channels : (g + 1) * channels]
        out[prefix + "H"] = d[:, g * channels : (g + 1) * channels]
    return out


def fast_decompose(
    x: Tensor, transforms: nn.ModuleList, spatial_dims: int, constraints: bool
) -> tuple[dict[str, Tensor], Constraints | None]:
    """Same result as ``functional.decompose(x, dims, steps, constraints=...)`` for learned lifters."""
    cl = _is_channels_last(x)
    s, d, cons = _lift_levels(x, transforms, spatial_dims, constraints)
    views = _band_views(s, d, spatial_dims, x.shape[1])
    bands = {n: _to_external(views[n], spatial_dims, cl) for n in band_names(spatial_dims)}
    return bands, cons


def _pool_once(
    x: Tensor,
    transforms: nn.ModuleList,
    spatial_dims: int,
    chosen: Sequence[str],
    scale: float,
    constraints: bool,
    details: bool,
) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
    cl = _is_channels_last(x)
    c = x.shape[1]
    s, d, cons = _lift_levels(x, transforms, spatial_dims, constraints)
    names = band_names(spatial_dims)
    if len(chosen) == len(names):
        t = s + d
        groups = 2 ** (spatial_dims - 1)
        parts = _channel_groups(t, groups)
        pooled = parts[0]
        for part in parts[1:]:
            pooled = pooled + part
    else:
        views = _band_views(s, d, spatial_dims, c)
        pooled = views[chosen[0]]
        for n in chosen[1:]:
            pooled = pooled + views[n]
    if scale != 1.0:
        pooled = pooled * scale
    pooled = _to_external(pooled, spatial_dims, cl)
    rest = None
    if details:
        views = _band_views(s, d, spatial_dims, c)
        rest = [_to_external(views[n], spatial_dims, cl) for n in names[1:]]
    return pooled, rest, cons


#: Recompute policy of the training-mode forward: ``"auto"`` recomputes (see
#: :func:`recompute_chunks`) when the input holds at least :data:`RECOMPUTE_MIN_BYTES`,
#: ``"always"`` whenever a gradient is needed, ``"never"`` keeps every intermediate.
#: Overridable with the environment variable ``LIFTPOOL_RECOMPUTE``.
RECOMPUTE: str = os.environ.get("LIFTPOOL_RECOMPUTE", "auto")
RECOMPUTE_MIN_BYTES: int = 8 * 2**20
#: Input bytes per recomputed batch chunk.
CHUNK_BYTES: int = 4 * 2**20


@contextlib.contextmanager
def recompute_mode(mode: str) -> Iterator[None]:
    """Temporarily set :data:`RECOMPUTE` (``"auto"``, ``"always"`` or ``"never"``)."""
    global RECOMPUTE
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"mode must be 'auto', 'always' or 'never', got {mode!r}")
    old, RECOMPUTE = RECOMPUTE, mode
    try:
        yield
    finally:
        RECOMPUTE = old


def recompute_chunks(x: Tensor, transforms: nn.ModuleList) -> int:
    """How many batch chunks the training forward of ``x`` is recomputed in (0: no recomputation).

    Without recomputation the fast path keeps ~7 input-sized tensors for backward
    (padded conv inputs, ReLU and sigmoid outputs of four P/U calls, constraint
    residuals).  With it, each batch chunk runs under
    :func:`torch.utils.checkpoint.checkpoint` (plain autograd): the forward keeps only
    the input (which the layer before usually keeps anyway) and the backward
    recomputes one chunk at a time, so the extra memory is a chunk's intermediates.
    Measured on VGG13-CIFAR (batch 128): peak memory of a training step drops from
    2.7x to 0.9x that of MaxPool, for ~10% more step time (``docs/performance.md``).
    """
    mode = RECOMPUTE
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"liftpool._fast.RECOMPUTE must be 'auto', 'always' or 'never', got {mode!r}")
    if mode == "never" or not torch.is_grad_enabled():
        return 0
    if torch.jit.is_tracing() or torch.compiler.is_compiling():  # type: ignore[attr-defined,no-untyped-call]  # stubs
        return 0  # exporters and inductor plan memory themselves
    if not (x.requires_grad or any(p.requires_grad for p in transforms.parameters())):
        return 0
    nbytes = x.numel() * x.element_size()
    if mode == "auto" and nbytes < RECOMPUTE_MIN_BYTES:
        return 0
    return max(1, min(x.shape[0], math.ceil(nbytes / CHUNK_BYTES)))


def fast_pool(
    x: Tensor,
    transforms: nn.ModuleList,
    spatial_dims: int,
    chosen: Sequence[str],
    scale: float,
    constraints: bool,
    details: bool,
) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
    """The pooled output (sum of ``chosen`` bands times ``scale``), optionally the detail bands, and the constraints."""
    chunks = recompute_chunks(x, transforms)
    if chunks == 0:
        return _pool_once(x, transforms, spatial_dims, chosen, scale, constraints, details)

    def part(xc: Tensor) -> tuple[Tensor, ...]:
        pooled, rest, cons = _pool_once(xc, transforms, spatial_dims, chosen, scale, constraints, details)
        return (pooled, *(rest or ()), *(cons or ()))

    n = x.shape[0]
    outs = [checkpoint(part, xc, use_reentrant=False) for xc in x.chunk(chunks, dim=0)]
    n_det = 2**spatial_dims - 1 if details else 0
    fields = [torch.cat([o[i] for o in outs], dim=0) if len(outs) > 1 else outs[0][i] for i in range(1 + n_det)]
    cons = None
    if constraints:
        # every constraint term is a mean over tensors whose first axis is the batch
        c_u = sum(o[1 + n_det] * (o[0].shape[0] / n) for o in outs)
        c_p = sum(o[2 + n_det] * (o[0].shape[0] / n) for o in outs)
        cons = Constraints(c_u, c_p)  # type: ignore[arg-type]
    return fields[0], (fields[1:] if details else None), cons


def fast_reconstruct(bands: Mapping[str, Tensor], size: Sequence[int], transforms: nn.ModuleList) -> Tensor:
    """Same result as ``functional.reconstruct(bands, size, steps)`` for learned lifters."""
    spatial_dims = len(size)
    low = bands[band_names(spatial_dims)[0]]
    cl = _is_channels_last(low)
    last = spatial_dims - 1
    prefixes = _level_prefixes(last)

    def internal(t: Tensor) -> Tensor:
        return t.unsqueeze(-2) if spatial_dims == 1 else t

    s_parts = [internal(bands[p + "L"]) for p in prefixes]
    d_parts = [internal(bands[p + "H"]) for p in prefixes]
    s = s_parts[0] if len(s_parts) == 1 else torch.cat(s_parts, dim=1)
    d = d_parts[0] if len(d_parts) == 1 else torch.cat(d_parts, dim=1)
    s = _to_cl(s)
    d = _to_cl(d)
    if spatial_dims < 3:
        out = _unlift_2d(s, d, size, transforms)
        return _to_cl(out) if cl and out.ndim == 4 else out.contiguous()
    b = s
    for level in reversed(range(spatial_dims)):
        dim = AXIS_ORDER[level]
        length = size[spatial_dims - 1 - level]
        P, U = _lifters(transforms, level)
        e = U.unupdate(s, d, dim)
        o = P.unpredict(d, e, dim)
        b = torch.stack((e, o), dim=dim).flatten(dim - 1, dim)
        crop: list[slice] = [slice(None)] * b.ndim
        crop[dim] = slice(0, length)
        b = b[tuple(crop)]  # a slice, not a parity branch
        if level:
            half = b.shape[1] // 2
            s = _to_cl(b[:, :half])
            d = _to_cl(b[:, half:])
    return _to_external(b, spatial_dims, cl)
