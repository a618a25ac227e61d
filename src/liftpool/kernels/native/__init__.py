"""Native CPU backend of LiftDownPool2d with learned P/U (one fused C++ kernel, forward and backward).

The API the kernel dispatch point calls:

* :func:`available` — the extension is built and loaded (builds it on the first call); never raises.
* :func:`applicable` — this call can run natively (CPU, 2D, learned P/U with ``groups == (C, C)``,
  one ``(P, U)`` pair per transform, float32/float64/bfloat16/float16, not tracing or exporting).
* :func:`pool` — the same contract as the eager ``fast_pool``: ``(pooled, details or None,
  Constraints or None)`` with the same autograd behaviour w.r.t. ``x`` and every P/U parameter.
* :func:`build_info` — state, compiler flags, cache directory, build time, error.

Precision: float32 and float64 are computed in their own type; bfloat16/float16 inputs (and
autocast) are computed in float32 inside and the results cast to the dtype the eager path returns.
channels_last input is copied to NCHW inside (the outputs are returned channels_last again).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from liftpool.functional import Constraints
from liftpool.lifters import LearnedLifter, LiftingTransform

from . import _build, ops  # noqa: F401  (ops registers the torch.library ops)

__all__ = ["NB_MAX_WIDTH", "SUPPORTED_DTYPES", "applicable", "available", "build_info", "pool"]

#: Input dtypes the native path accepts (bfloat16/float16 are computed in float32).
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
#: Maps at most this wide (and batches of at least NB_MIN_BATCH) take the images-innermost layout.
#: Measured (fwd+bwd, 1 thread, N=64, interleaved, shared machine): images-innermost / plane time
#: = 0.85 at 16x16, 0.89 at 24x24, 1.12 at 32x32, 1.37 at 48x48 (and ~0.6 at 8x8).
NB_MAX_WIDTH: int = 24
NB_MIN_BATCH: int = 2
_BAND_ORDER = ("LL", "LH", "HL", "HH")


def available() -> bool:
    """Whether the native kernel is built and loaded (the first call builds it). Never raises.

    A failed build (or no compiler) gives ``False`` and one ``RuntimeWarning`` per process.
    """
    st = _build.STATE
    if st.module is not None:
        return True
    if st.tried:
        return False
    return _build.try_load() is not None


def build_info() -> dict[str, Any]:
    """Active state, compiler flags, cache directory, cold build time and error (if any)."""
    return _build.info()


def _lifter_ok(m: Any, channels: int, k: int, mode: str) -> bool:
    return (
        isinstance(m, LearnedLifter)
        and m.channels == channels
        and tuple(m.groups) == (channels, channels)
        and m.kernel_size == k
        and m.padding_mode == mode
        and m.weight.device.type == "cpu"
        and m.weight.dtype in SUPPORTED_DTYPES
    )


def _tracing_or_exporting() -> bool:
    """TorchScript tracing/scripting or ONNX export: those take the eager composite of ATen ops."""
    jit: Any = torch.jit
    return bool(jit.is_tracing() or jit.is_scripting() or torch.onnx.is_in_onnx_export())


def _lifters(transforms: nn.ModuleList) -> list[tuple[LearnedLifter, LearnedLifter]]:
    """The (P, U) lifter pair of every transform (call after :func:`applicable`)."""
    pairs = []
    for t in transforms:
        lt = cast(LiftingTransform, t)
        pairs.append((cast(LearnedLifter, lt.P[0]), cast(LearnedLifter, lt.U[0])))
    return pairs


def applicable(x: Tensor, transforms: nn.ModuleList, spatial_dims: int) -> bool:
    """True when :func:`pool` handles this call (it does not build or load anything)."""
    if spatial_dims != 2 or not isinstance(x, Tensor) or x.ndim != 4 or x.device.type != "cpu":
        return False
    if x.dtype not in SUPPORTED_DTYPES or x.numel() == 0:
        return False
    if _tracing_or_exporting():
        return False
    if len(transforms) not in (1, 3):
        return False
    first = transforms[0]
    if not isinstance(first, LiftingTransform) or len(first.P) != 1 or not isinstance(first.P[0], LearnedLifter):
        return False
    channels, k, mode = x.shape[1], first.P[0].kernel_size, first.P[0].padding_mode
    dtype = first.P[0].weight.dtype
    for t in transforms:
        if not isinstance(t, LiftingTransform) or t.scale is not None or len(t.P) != 1 or len(t.U) != 1:
            return False
        for m in (t.P[0], t.U[0]):
            if not _lifter_ok(m, channels, k, mode) or m.weight.dtype != dtype:
                return False
    return True


def _params(transforms: nn.ModuleList) -> list[Tensor]:
    """The op's ``params``: per transform, for P then U, ``weight``, ``bias``, ``pw_weight``, ``pw_bias``."""
    out: list[Tensor] = []
    for p_u in _lifters(transforms):
        for m in p_u:
            out += [m.weight, m.bias, m.pw_weight, m.pw_bias]
    return out


def _pack(transforms: nn.ModuleList) -> Tensor:
    """``(T, 2, C, K + 3)``: per transform and lifter (P, U), per channel: taps, bias, 1x1 weight, 1x1 bias.

    The layout the C++ kernel packs :func:`_params` into (kept for tests and inspection).
    """
    rows = []
    for p_u in _lifters(transforms):
        pair = []
        for m in p_u:
            c = m.channels
            pair.append(
                torch.cat(
                    [m.weight.reshape(c, -1), m.bias.reshape(c, 1), m.pw_weight.reshape(c, 1), m.pw_bias.reshape(c, 1)],
                    dim=1,
                )
            )
        rows.append(torch.stack(pair))
    return torch.stack(rows)


_PADDING = {"reflect": 0, "replicate": 1, "zeros": 2, "circular": 3}


class _Down2d(torch.autograd.Function):
    """Eager autograd of ``liftpool::down2d`` (the op's own formula, see :mod:`.ops`), called directly."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, args: tuple[Any, ...], *params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, det, cons = ops._ext().down2d_forward_list(x, list(params), *args)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, *params)
        ctx.args = args
        return out, det, cons

    @staticmethod
    @torch.autograd.function.once_differentiable  # no double backward (as the op)
    def backward(ctx: Any, g_out: Tensor | None, g_det: Tensor | None, g_cons: Tensor | None) -> tuple[Any, ...]:
        x, *params = ctx.saved_tensors
        padding, mask, scale, _constraints, details, layout = ctx.args
        if g_cons is None:
            g_cons = x.new_zeros((2,))
        grads = ops._ext().down2d_backward_list(
            x, params, g_out, g_det if details else None, g_cons, padding, mask, scale, layout
        )
        return (grads[0], None, *grads[1:])


def _result_dtype(x: Tensor, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype the eager path returns (autocast: its conv runs in low precision, the rest promotes)."""
    return torch.promote_types(x.dtype, param_dtype)


def _layout(x: Tensor) -> int:
    n, _, _, w = x.shape
    return 2 if w <= NB_MAX_WIDTH and n >= NB_MIN_BATCH else 1


def pool(
    x: Tensor,
    transforms: nn.ModuleList,
    spatial_dims: int,
    bands: Sequence[str],
    scale: float,
    constraints: bool,
    details: bool,
    *,
    layout: int | None = None,
) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
    """The pooled output (sum of ``bands`` times ``scale``), the details (LH, HL, HH) if asked, the constraints.

    Same contract as the eager ``fast_pool``; call only when :func:`applicable` is true.
    ``layout`` forces 1 (plane) or 2 (images innermost) instead of the shape rule.
    """
    if spatial_dims != 2:
        raise ValueError(f"liftpool native: spatial_dims must be 2, got {spatial_dims}")
    unknown = [b for b in bands if b not in _BAND_ORDER]
    if unknown or not bands:
        raise ValueError(f"liftpool native: bands must be a non-empty subset of {_BAND_ORDER}, got {tuple(bands)}")
    if layout not in (None, 1, 2):
        raise ValueError(f"liftpool native: layout must be None, 1 or 2, got {layout!r}")
    first = _lifters(transforms)[0][0]
    params = _params(transforms)
    out_dtype = _result_dtype(x, params[0].dtype)
    compute = torch.float64 if out_dtype == torch.float64 else torch.float32
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    xc = x if x.dtype == compute else x.to(compute)
    if not xc.is_contiguous():
        xc = xc.contiguous()
    pc = params if params[0].dtype == compute else [p.to(compute) for p in params]
    mask = 0
    for b in bands:
        mask |= 1 << _BAND_ORDER.index(b)
    args = (
        _PADDING[first.padding_mode],
        mask,
        float(scale),
        bool(constraints),
        bool(details),
        _layout(xc) if layout is None else layout,
    )
    if torch.compiler.is_compiling():  # the registered op: one node in the compiled graph
        out, det, cons = torch.ops.liftpool.down2d(xc, pc, *args)
    elif torch.is_grad_enabled() and (xc.requires_grad or any(p.requires_grad for p in pc)):
        # eager autograd: the same C++ functions and backward formula as the op's, without the custom_op
        # Python dispatch layers (their cost is the kernel's own at 2x2 maps)
        out, det, cons = _Down2d.apply(xc, args, *pc)
    else:
        out, det, cons = ops._ext().down2d_forward_list(xc, pc, *args)

    if out_dtype == compute and not channels_last:  # the common case: the op's outputs as they are
        rest = list(det.unbind(0)) if details else None
        return out, rest, Constraints(cons[0], cons[1]) if constraints else None

    def ext(t: Tensor) -> Tensor:
        t = t.to(out_dtype)
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t

    rest = [ext(t) for t in det.unbind(0)] if details else None
    c = Constraints(cons[0].to(out_dtype), cons[1].to(out_dtype)) if constraints else None
    return ext(out), rest, c
