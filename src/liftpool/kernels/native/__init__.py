"""Native CPU backend of the learned LiftDownPool / LiftUpPool in 1D, 2D and 3D (fused C++ kernels).

The API the kernel dispatch point calls:

* :func:`available` — the extension is built and loaded (builds it on the first call); never raises.
* :func:`applicable` — this call can run natively (CPU, 1D/2D/3D, learned P/U with ``groups == (C, C)``,
  one ``(P, U)`` pair per transform, float32/float64/bfloat16/float16, not tracing or exporting).
* :func:`pool` — the same contract as the eager ``fast_pool``: ``(pooled, details or None,
  Constraints or None)`` with the same autograd behaviour w.r.t. ``x`` and every P/U parameter.
* :func:`reconstruct` — the same contract as the eager ``fast_reconstruct`` (LiftUpPool), with
  gradients w.r.t. every band and every P/U parameter.
* :func:`build_info` — state, compiler flags, cache directory, build time, error.

Precision: float32 and float64 are computed in their own type; bfloat16/float16 inputs (and
autocast) are computed in float32 inside and the results cast to the dtype the eager path returns.
channels_last input is copied to NCHW inside; the outputs, and in eager autograd the gradients w.r.t.
the inputs, are returned channels_last again.

Non-finite values propagate as in the eager path (ReLU keeps NaN, its gradient passes at NaN), and
constraint terms without an incoming gradient are left out of the backward (not multiplied by 0).
Second derivatives: when a backward runs with ``create_graph=True`` (gradient penalties,
Hessian-vector products), it is computed by the eager composite on the saved inputs, so autograd
can differentiate it again; a plain backward runs the fused C++ kernel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from liftpool.constants import band_names
from liftpool.functional import Constraints
from liftpool.lifters import LearnedLifter, LiftingTransform

from . import _build, ops  # noqa: F401  (ops registers the fakes and autograd of the torch.library ops)

__all__ = ["NB_MAX_WIDTH", "SUPPORTED_DTYPES", "applicable", "available", "build_info", "pool", "reconstruct"]

#: Input dtypes the native path accepts (bfloat16/float16 are computed in float32).
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
#: Maps at most this wide (and batches of at least NB_MIN_BATCH) take the images-innermost layout.
#: The C++ op decides (``layout=0``: ``resolve_layout`` in ``csrc/lift_common.h``, the same numbers),
#: so a traced or exported graph holds no branch on the sizes; :func:`_layout` mirrors the rule.
#: Measured (fwd+bwd, 1 thread, N=64, interleaved, shared machine): images-innermost / plane time
#: = 0.85 at 16x16, 0.89 at 24x24, 1.12 at 32x32, 1.37 at 48x48 (and ~0.6 at 8x8).
NB_MAX_WIDTH: int = 24
NB_MIN_BATCH: int = 2
_BAND_ORDER = ("LL", "LH", "HL", "HH")
_BANDS: dict[int, tuple[str, ...]] = {1: ("L", "H"), 2: _BAND_ORDER, 3: band_names(3)}
#: Spatial dims the native kernels cover.
SPATIAL_DIMS: tuple[int, ...] = (1, 2, 3)
_TRANSFORMS: dict[int, tuple[int, ...]] = {1: (1,), 2: (1, 3), 3: (1, 7)}


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
    if spatial_dims not in SPATIAL_DIMS or not isinstance(x, Tensor) or x.ndim != spatial_dims + 2:
        return False
    if x.device.type != "cpu":
        return False
    if x.dtype not in SUPPORTED_DTYPES or x.numel() == 0:
        return False
    if _tracing_or_exporting():
        return False
    if len(transforms) not in _TRANSFORMS[spatial_dims]:
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


def _down_forward(dims: int, x: Tensor, params: list[Tensor], args: tuple[Any, ...]) -> list[Tensor]:
    ext = ops._ext()
    fn = {1: ext.down1d_forward_list, 2: ext.down2d_forward_list, 3: ext.down3d_forward_list}[dims]
    return fn(x, params, *args)


def _named(transforms: nn.ModuleList, params: Sequence[Tensor]) -> dict[str, Tensor]:
    """``params`` (the tensors :func:`_params` lists, or stand-ins for them) by parameter name in ``transforms``."""
    names = {id(p): n for n, p in transforms.named_parameters(remove_duplicate=False)}
    return {names[id(p)]: t for p, t in zip(_params(transforms), params)}


def _differentiable_grads(
    fn: Any, transforms: nn.ModuleList, inputs: Sequence[Tensor], params: Sequence[Tensor], outs_grads: Any
) -> list[Tensor | None]:
    """The gradients w.r.t. ``inputs`` and ``params`` of the eager composite ``fn(*inputs)`` (run with
    ``transforms`` holding ``params``), as a differentiable graph: the backward of a native call when a
    second derivative is asked for (``create_graph=True``)."""
    from torch.func import functional_call

    from .. import eager

    class _Composite(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transforms = transforms

        def forward(self, *xs: Tensor) -> Any:
            return fn(list(xs), self.transforms)

    wanted = [t for t in (*inputs, *params) if t.requires_grad]
    with torch.enable_grad(), eager.recompute_mode("never"):
        named = {f"transforms.{k}": v for k, v in _named(transforms, params).items()}
        outs = functional_call(_Composite(), named, tuple(inputs))
        pairs = [(o, g) for o, g in outs_grads(outs) if g is not None and o.requires_grad]
        got = torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g for _, g in pairs], create_graph=True, allow_unused=True
        ) if pairs else [None] * len(wanted)
    by_id = {id(t): g for t, g in zip(wanted, got)}
    return [by_id.get(id(t)) if t.requires_grad else None for t in (*inputs, *params)]


class _Down(torch.autograd.Function):
    """Eager autograd of ``liftpool::down{1,2,3}d`` (the ops' own formula, see :mod:`.ops`), called directly.

    A backward with ``create_graph=True`` runs the eager composite instead (differentiable again).
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, args: tuple[Any, ...], transforms: nn.ModuleList, *params: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        # A channels_last x is copied to NCHW for the kernel here, untracked, and its gradient is
        # returned channels_last: the layer before (ReLU, BatchNorm) then runs its backward in one
        # memory format instead of a mixed-stride one (several times slower than the copy).
        xc = _nchw(x)
        out, det, cons = _down_forward(x.ndim - 2, xc, list(params), args)
        ctx.set_materialize_grads(False)
        # x for a differentiable (create_graph) backward, the NCHW copy for the kernel's (keeping it
        # measured faster than copying x again in the backward; with channels_last input that is
        # one more saved activation unless the layer before keeps x anyway, as ReLU does)
        ctx.save_for_backward(x, xc, *params)
        ctx.channels_last = _is_channels_last(x)
        ctx.args = args
        ctx.transforms = transforms
        return out, det, cons

    @staticmethod
    def backward(ctx: Any, g_out: Tensor | None, g_det: Tensor | None, g_cons: Tensor | None) -> tuple[Any, ...]:
        x, xc, *params = ctx.saved_tensors
        padding, mask, scale, constraints, details, *layout = ctx.args
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            grads = _down_composite_grads(ctx.transforms, x, params, ctx.args, g_out, g_det, g_cons)
            return (grads[0], None, None, *grads[1:])
        if g_cons is None:  # no gradient reaches the constraint terms: their terms are left out
            g_cons = x.new_zeros((0,))
        ext = ops._ext()
        fn = {3: ext.down1d_backward_list, 4: ext.down2d_backward_list, 5: ext.down3d_backward_list}[x.ndim]
        grads = fn(xc, params, g_out, g_det if details else None, g_cons, padding, mask, scale, *layout)
        g_x = grads[0]
        if ctx.channels_last and g_x is not None:
            g_x = _to_memory_format(g_x, True)
        return (g_x, None, None, *grads[1:])


def _down_composite_grads(
    transforms: nn.ModuleList,
    x: Tensor,
    params: Sequence[Tensor],
    args: tuple[Any, ...],
    g_out: Tensor | None,
    g_det: Tensor | None,
    g_cons: Tensor | None,
) -> list[Tensor | None]:
    """Differentiable gradients of a native down call w.r.t. ``x`` and ``params`` (eager composite)."""
    from .. import eager

    _padding, mask, scale, constraints, details, *_layout = args
    dims = x.ndim - 2
    order = _BANDS[dims]
    chosen = [b for i, b in enumerate(order) if mask >> i & 1]

    def fn(xs: list[Tensor], tr: nn.ModuleList) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
        return eager.fast_pool(xs[0], tr, dims, chosen, scale, constraints, details)

    def pairs(outs: Any) -> list[tuple[Tensor, Tensor | None]]:
        out, rest, cons = outs
        res: list[tuple[Tensor, Tensor | None]] = [(out, g_out)]
        if details and rest is not None and g_det is not None:
            res += list(zip(rest, g_det.unbind(0) if dims > 1 else [g_det]))
        if constraints and cons is not None and g_cons is not None:
            res += [(cons[0], g_cons[0]), (cons[1], g_cons[1])]
        return res

    return _differentiable_grads(fn, transforms, [x], params, pairs)


def _result_dtype(x: Tensor, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype the eager path returns (autocast: its conv runs in low precision, the rest promotes)."""
    return torch.promote_types(x.dtype, param_dtype)


def _layout(n: int, width: int) -> int:
    """1 (plane) or 2 (images innermost) for a 2D call on ``n`` images of input width ``width``
    (the rule the op applies for ``layout=0``; for tests and inspection)."""
    return 2 if width <= NB_MAX_WIDTH and n >= NB_MIN_BATCH else 1


_CL_FORMAT = {4: torch.channels_last, 5: torch.channels_last_3d}


def _is_channels_last(t: Tensor) -> bool:
    fmt = _CL_FORMAT.get(t.ndim)
    if fmt is not None and torch.compiler.is_exporting():
        # strides only, no guard on symbolic sizes (a memory-format test asks whether each size is 1):
        # channels_last when the channels are innermost and the last spatial axis is not
        return statically_known_true(t.stride(1) == 1) and not statically_known_true(t.stride(-1) == 1)
    return fmt is not None and t.is_contiguous(memory_format=fmt) and not t.is_contiguous()


def _eager_autograd(tensors: Sequence[Tensor]) -> bool:
    """Whether a call records eager autograd (``_Down`` / ``_Up``): grad mode on, not compiling, and
    some input needs a gradient."""
    return torch.is_grad_enabled() and not torch.compiler.is_compiling() and any(t.requires_grad for t in tensors)


def _nchw(t: Tensor) -> Tensor:
    """``t`` in the kernels' row-major layout (no copy when it already is)."""
    return t if t.is_contiguous() else t.contiguous()


def _to_memory_format(t: Tensor, channels_last: bool) -> Tensor:
    return t.contiguous(memory_format=_CL_FORMAT[t.ndim]) if channels_last else t


def _padding_code(transforms: nn.ModuleList) -> int:
    return _PADDING[_lifters(transforms)[0][0].padding_mode]


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
    """The pooled output (sum of ``bands`` times ``scale``), the details if asked, the constraints.

    Same contract as the eager ``fast_pool``; call only when :func:`applicable` is true.  The details are
    every band but the all-low one (2D: LH, HL, HH; 1D: H).  ``layout`` (2D only) forces 1 (plane) or
    2 (images innermost) instead of the shape rule.
    """
    if spatial_dims not in SPATIAL_DIMS:
        raise ValueError(f"liftpool native: spatial_dims must be one of {SPATIAL_DIMS}, got {spatial_dims}")
    order = _BANDS[spatial_dims]
    unknown = [b for b in bands if b not in order]
    if unknown or not bands:
        raise ValueError(f"liftpool native: bands must be a non-empty subset of {order}, got {tuple(bands)}")
    if layout not in (None, 1, 2):
        raise ValueError(f"liftpool native: layout must be None, 1 or 2, got {layout!r}")
    params = _params(transforms)
    out_dtype = _result_dtype(x, params[0].dtype)
    compute = torch.float64 if out_dtype == torch.float64 else torch.float32
    channels_last = _is_channels_last(x)
    xc = x if x.dtype == compute else x.to(compute)
    eager_autograd = _eager_autograd([xc, *params])
    if not eager_autograd:  # _Down makes its own NCHW copy
        xc = _nchw(xc)
    pc = params if params[0].dtype == compute else [p.to(compute) for p in params]
    mask = 0
    for b in bands:
        mask |= 1 << order.index(b)
    args: tuple[Any, ...] = (_padding_code(transforms), mask, float(scale), bool(constraints), bool(details))
    if spatial_dims == 2:
        args += (0 if layout is None else layout,)  # 0: the op picks the layout by shape (no branch here)
    if torch.compiler.is_compiling():  # the registered op: one node in the compiled graph
        op = {1: torch.ops.liftpool.down1d, 2: torch.ops.liftpool.down2d, 3: torch.ops.liftpool.down3d}[spatial_dims]
        out, det, cons = op(xc, pc, *args)
    elif eager_autograd:
        # eager autograd: the same C++ functions and backward formula as the op's, without the dispatcher's
        # Python dispatch layers (their cost is the kernel's own at 2x2 maps)
        out, det, cons = _Down.apply(xc, args, transforms, *pc)
    else:
        out, det, cons = _down_forward(spatial_dims, xc, pc, args)

    def split(d: Tensor) -> list[Tensor]:
        return list(d.unbind(0)) if spatial_dims > 1 else [d]

    if out_dtype == compute and not channels_last:  # the common case: the op's outputs as they are
        rest = split(det) if details else None
        return out, rest, Constraints(cons[0], cons[1]) if constraints else None

    def ext(t: Tensor) -> Tensor:
        return _to_memory_format(t.to(out_dtype), channels_last)

    rest = [ext(t) for t in split(det)] if details else None
    c = Constraints(cons[0].to(out_dtype), cons[1].to(out_dtype)) if constraints else None
    return ext(out), rest, c


def _up_forward(bands: list[Tensor], params: list[Tensor], args: tuple[Any, ...]) -> Tensor:
    ext = ops._ext()
    fn = {2: ext.up1d_forward_list, 4: ext.up2d_forward_list, 8: ext.up3d_forward_list}[len(bands)]
    return fn(bands, params, *args)


class _Up(torch.autograd.Function):
    """Eager autograd of ``liftpool::up{1,2,3}d`` (the ops' own formula, see :mod:`.ops`), called directly.

    A backward with ``create_graph=True`` runs the eager composite instead (differentiable again).
    """

    @staticmethod
    def forward(ctx: Any, nbands: int, args: tuple[Any, ...], transforms: nn.ModuleList, *tensors: Tensor) -> Tensor:
        # channels_last bands: copied to NCHW here, untracked; their gradients return channels_last (see _Down)
        bands = list(tensors[:nbands])
        flat = [_nchw(b) for b in bands]
        out = _up_forward(flat, list(tensors[nbands:]), args)
        ctx.save_for_backward(*bands, *flat, *tensors[nbands:])
        ctx.channels_last = [_is_channels_last(b) for b in bands]
        ctx.nbands = nbands
        ctx.args = args
        ctx.transforms = transforms
        return out

    @staticmethod
    def backward(ctx: Any, g_x: Tensor) -> tuple[Any, ...]:
        saved, nb = ctx.saved_tensors, ctx.nbands
        bands, flat, params = list(saved[:nb]), list(saved[nb : 2 * nb]), list(saved[2 * nb :])
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return (None, None, None, *_up_composite_grads(ctx.transforms, bands, params, ctx.args, g_x))
        ext = ops._ext()
        if nb == 4:
            _h, _w, padding, layout = ctx.args
            grads = ext.up2d_backward_list(flat, params, g_x, padding, layout)
        else:
            padding = ctx.args[-1]
            fn = ext.up1d_backward_list if nb == 2 else ext.up3d_backward_list
            grads = fn(flat, params, g_x, padding)
        grads = list(grads)
        for i, cl in enumerate(ctx.channels_last):
            if cl and grads[i] is not None:
                grads[i] = _to_memory_format(grads[i], True)
        return (None, None, None, *grads)


def _up_composite_grads(
    transforms: nn.ModuleList, bands: Sequence[Tensor], params: Sequence[Tensor], args: tuple[Any, ...], g_x: Tensor
) -> list[Tensor | None]:
    """Differentiable gradients of a native up call w.r.t. every band and ``params`` (eager composite)."""
    from .. import eager

    dims = {2: 1, 4: 2, 8: 3}[len(bands)]
    size = tuple(args[:dims])
    order = _BANDS[dims]

    def fn(xs: list[Tensor], tr: nn.ModuleList) -> Tensor:
        return eager.fast_reconstruct(dict(zip(order, xs)), size, tr)

    return _differentiable_grads(fn, transforms, bands, params, lambda out: [(out, g_x)])


def reconstruct(
    bands: Mapping[str, Tensor], size: Sequence[int], transforms: nn.ModuleList, *, layout: int | None = None
) -> Tensor:
    """The input of spatial size ``size`` from all its bands (LiftUpPool); the exact inverse of :func:`pool`.

    Same contract as the eager ``fast_reconstruct``; call only when :func:`applicable` is true for the
    low band.  ``layout`` (2D only) forces 1 (plane) or 2 (images innermost) instead of the shape rule.
    """
    dims = len(size)
    if dims not in SPATIAL_DIMS:
        raise ValueError(f"liftpool native: size must have 1, 2 or 3 entries, got {tuple(size)}")
    order = _BANDS[dims]
    missing = [b for b in order if b not in bands]
    if missing:
        raise ValueError(f"liftpool native: bands must hold {order}, missing {tuple(missing)}")
    if layout not in (None, 1, 2):
        raise ValueError(f"liftpool native: layout must be None, 1 or 2, got {layout!r}")
    params = _params(transforms)
    low = bands[order[0]]
    out_dtype = params[0].dtype
    for b in order:
        out_dtype = torch.promote_types(out_dtype, bands[b].dtype)
    compute = torch.float64 if out_dtype == torch.float64 else torch.float32
    channels_last = _is_channels_last(low)
    ts = [bands[b] if bands[b].dtype == compute else bands[b].to(compute) for b in order]
    pc = params if params[0].dtype == compute else [p.to(compute) for p in params]
    eager_autograd = _eager_autograd([*ts, *pc])
    if not eager_autograd:  # _Up makes its own NCHW copies
        ts = [_nchw(t) for t in ts]
    padding = _padding_code(transforms)
    args: tuple[Any, ...]
    if dims == 2:
        args = (size[0], size[1], padding, 0 if layout is None else layout)  # 0: the op picks by shape
    else:
        args = (*size, padding)
    if torch.compiler.is_compiling():
        op = {1: torch.ops.liftpool.up1d, 2: torch.ops.liftpool.up2d, 3: torch.ops.liftpool.up3d}[dims]
        out = op(ts, pc, *args)
    elif eager_autograd:
        out = _Up.apply(len(ts), args, transforms, *ts, *pc)
    else:
        out = _up_forward(ts, pc, args)
    if out.dtype != out_dtype:
        out = out.to(out_dtype)
    return _to_memory_format(out, channels_last)
