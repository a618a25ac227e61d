"""The ``torch.library`` ops of the native kernel (namespace ``liftpool``): their fake kernels and
autograd formulas.  The schemas and CPU kernels are registered in C++ (``csrc/ops.cpp``, the ops
library: see :mod:`._build`), which names this module as the ops' Python module.

* ``liftpool::down2d(x, params, padding, bands, scale, constraints, details, layout)
  -> (pooled, details, constraints)``
* ``liftpool::down2d_backward(x, params, grad_pooled?, grad_details?, grad_constraints, padding, bands,
  scale, layout) -> [grad_x, grad of every tensor of params]``

* ``liftpool::up2d(bands, params, H, W, padding, layout) -> x``: the inverse (LiftUpPool2d) of the four
  bands ``[LL, LH, HL, HH]`` (each ``(N, C, ceil(H / 2), ceil(W / 2))``) to ``x`` of size ``(H, W)``
* ``liftpool::up2d_backward(bands, params, grad_x, padding, layout) -> [grad per band, grad of every
  tensor of params]``

* ``liftpool::down1d`` / ``down1d_backward`` / ``up1d`` / ``up1d_backward``: the same for 1D
  (``x`` is ``(N, C, L)``, bands ``[L, H]``, details ``(N, C, ceil(L / 2))``, no ``layout``)
* ``liftpool::down3d`` / ``down3d_backward`` / ``up3d`` / ``up3d_backward``: the same for 3D (``x`` is
  ``(N, C, D, H, W)``, 8 bands in :func:`liftpool.constants.band_names` order, details
  ``(7, N, C, d, h, w)``, params 8 or 56 tensors (1 or 7 transforms), no ``layout``)

``x`` is ``(N, C, H, W)`` float32/float64; ``params`` is the list of the lifters' own tensors, 4 per
lifter (``weight (C, 1, K)``, ``bias (C,)``, ``pw_weight (C, 1)``, ``pw_bias (C,)``), ``P`` then ``U``
per transform: 8 (one shared pair) or 24 (3 pairs in the order of the 1D transforms), in ``x``'s
dtype.  Passing them unpacked (the kernel packs them in C++) saves a chain of ``cat``/``stack``
calls and their backward on every layer call.  ``padding`` indexes :data:`PADDING_CODES`;
``bands`` is a bit mask (LL=1, LH=2, HL=4, HH=8); ``layout`` 1 = plane, 2 = images innermost,
0 = chosen by the op from the shape (what the layers pass: no shape-dependent branch in Python, so
``torch.export`` with dynamic sizes sees none).  ``grad_cons`` of a backward op may be empty: the
constraint terms then have no incoming gradient and are left out.
``details`` is ``(3, N, C, h, w)`` (LH, HL, HH) when asked for, else an empty tensor; ``constraints``
is ``(c_u, c_p)`` (zeros when not asked for).

The ops exist once the ops library is loaded: importing this module loads it when it was built
before (no compile), and the first native call builds it otherwise (:func:`liftpool.kernels.native.available`).
They are registered for CPU tensors (a CUDA tensor gets the dispatcher's clear "no kernel" error,
never a CPU read of device memory; the C++ checks the device of every tensor too).  Every op has a
fake (meta) implementation and the forward has an autograd formula that calls the backward op
(both registered from here as the library loads), so
``torch.compile(fullgraph=True)`` keeps them in one graph.  The backward ops are not themselves
differentiable (the layers' eager autograd, below, computes a backward with ``create_graph=True`` by
the eager composite instead).  The compiled module is loaded on the first real call.
In eager mode :func:`liftpool.kernels.native.pool` calls the same C++ functions through the Python
module's bindings and a plain ``torch.autograd.Function`` (cheaper than the dispatcher's Python
autograd layer); under ``torch.compile`` and ``torch.export``, these ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from . import _build

__all__ = ["BAND_BITS", "OP_NAMES", "PADDING_CODES"]

PADDING_CODES: dict[str, int] = {"reflect": 0, "replicate": 1, "zeros": 2, "circular": 3}
BAND_BITS: dict[str, int] = {"LL": 1, "LH": 2, "HL": 4, "HH": 8}
#: The ops of the ``liftpool`` namespace (each forward ``<name>`` has a ``<name>_backward``).
OP_NAMES: tuple[str, ...] = tuple(
    f"{kind}{d}d{suffix}" for d in (1, 2, 3) for kind in ("down", "up") for suffix in ("", "_backward")
)


def _ext() -> Any:
    return _build.load_extension()


def _grads_like(*groups: Sequence[Tensor]) -> list[Tensor]:
    """Contiguous empty tensors shaped like every tensor of ``groups``: the fake of a backward op."""
    return [torch.empty_like(t, memory_format=torch.contiguous_format) for group in groups for t in group]


# --------------------------------------------------------------------------- fake kernels
def _down_fake(dims: int) -> Callable[..., tuple[Tensor, Tensor, Tensor]]:
    """``down{dims}d(x, params, padding, bands, scale, constraints, details[, layout])``: the pooled map
    ``(N, C, ceil(S / 2) ...)``, the details (1D: one map; 2D/3D: ``2**dims - 1`` stacked) or an empty
    tensor, the two constraint terms."""

    def fake(
        x: Tensor,
        params: list[Tensor],
        padding: int,
        bands: int,
        scale: float,
        constraints: bool,
        details: bool,
        *layout: int,
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, c, *sizes = x.shape
        half = (n, c, *((s + 1) // 2 for s in sizes))
        det_shape = half if dims == 1 else ((1 << dims) - 1, *half)
        det = x.new_empty(det_shape) if details else x.new_empty((0,))
        return x.new_empty(half), det, x.new_empty((2,))

    return fake


def _up_fake(dims: int) -> Callable[..., Tensor]:
    """``up{dims}d(bands, params, *sizes, padding[, layout])``: ``x`` of the given spatial sizes."""

    def fake(bands: list[Tensor], params: list[Tensor], *rest: int) -> Tensor:
        n, c = bands[0].shape[:2]
        return bands[0].new_empty((n, c, *rest[:dims]))

    return fake


def _down_backward_fake(x: Tensor, params: list[Tensor], *rest: Any) -> list[Tensor]:
    return _grads_like([x], params)


def _up_backward_fake(bands: list[Tensor], params: list[Tensor], *rest: Any) -> list[Tensor]:
    return _grads_like(bands, params)


# --------------------------------------------------------------------------- autograd
def _register_down_autograd(name: str) -> None:
    """Autograd of ``liftpool::<name>`` ``(x, params, padding, bands, scale, constraints, details, *extra)``:
    the backward op ``(x, params, grad_out, grad_details, grad_cons, padding, bands, scale, *extra)``;
    only ``x`` and the parameters are saved."""
    op_backward = getattr(torch.ops.liftpool, f"{name}_backward").default

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, params, padding, bands, scale, _constraints, details, *extra = inputs
        ctx.save_for_backward(x, *params)
        ctx.details, ctx.op_args, ctx.n_inputs = details, (padding, bands, scale, *extra), len(inputs)

    def backward(
        ctx: Any, grad_out: Tensor | None, grad_det: Tensor | None, grad_cons: Tensor | None
    ) -> tuple[Any, ...]:
        x, *params = ctx.saved_tensors
        if grad_cons is None:  # no gradient reaches the constraint terms: left out of the backward
            grad_cons = x.new_zeros((0,))
        grads = op_backward(x, params, grad_out, grad_det if ctx.details else None, grad_cons, *ctx.op_args)
        return (grads[0], grads[1:], *([None] * (ctx.n_inputs - 2)))

    torch.library.register_autograd(f"liftpool::{name}", backward, setup_context=setup_context)


def _register_up_autograd(name: str, n_sizes: int) -> None:
    """Autograd of ``liftpool::<name>`` ``(bands, params, *sizes, *rest)`` (``n_sizes`` sizes): the backward
    op ``(bands, params, grad_x, *rest)``."""
    op_backward = getattr(torch.ops.liftpool, f"{name}_backward").default

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        bands, params = inputs[0], inputs[1]
        ctx.save_for_backward(*bands, *params)
        ctx.nb, ctx.op_args, ctx.n_inputs = len(bands), inputs[2 + n_sizes :], len(inputs)

    def backward(ctx: Any, grad_x: Tensor) -> tuple[Any, ...]:
        nb, saved = ctx.nb, ctx.saved_tensors
        grads = op_backward(list(saved[:nb]), list(saved[nb:]), grad_x, *ctx.op_args)
        return (grads[:nb], grads[nb:], *([None] * (ctx.n_inputs - 2)))

    torch.library.register_autograd(f"liftpool::{name}", backward, setup_context=setup_context)


def _register_python_parts() -> None:
    """Once the ops library is loaded (the ops exist): every op's fake kernel, the forwards' autograd."""
    for d in (1, 2, 3):
        torch.library.register_fake(f"liftpool::down{d}d", _down_fake(d))
        torch.library.register_fake(f"liftpool::down{d}d_backward", _down_backward_fake)
        torch.library.register_fake(f"liftpool::up{d}d", _up_fake(d))
        torch.library.register_fake(f"liftpool::up{d}d_backward", _up_backward_fake)
        _register_down_autograd(f"down{d}d")
        _register_up_autograd(f"up{d}d", d)


_build._ON_OPS_LOADED.append(_register_python_parts)
_build.load_prebuilt()  # a build from an earlier run: the ops exist from import on (no compile)
