"""``torch.library`` custom ops of the native kernel (namespace ``liftpool``).

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

The ops are registered for CPU tensors (a CUDA tensor gets the dispatcher's clear "no kernel" error,
never a CPU read of device memory; the C++ checks the device of every tensor too).  Every op has a
fake (meta) implementation and the forward has an autograd formula that calls the backward op, so
``torch.compile(fullgraph=True)`` keeps them in one graph.  The backward ops are not themselves
differentiable (the layers' eager autograd, below, computes a backward with ``create_graph=True`` by
the eager composite instead).  The compiled module is loaded on the first real call.
In eager mode :func:`liftpool.kernels.native.pool` calls the same C++ functions through a plain
``torch.autograd.Function`` (cheaper than the custom-op dispatch); under ``torch.compile``, these ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from . import _build

__all__ = [
    "BAND_BITS",
    "PADDING_CODES",
    "down1d",
    "down1d_backward",
    "down2d",
    "down2d_backward",
    "down3d",
    "down3d_backward",
    "up1d",
    "up1d_backward",
    "up2d",
    "up2d_backward",
    "up3d",
    "up3d_backward",
]

PADDING_CODES: dict[str, int] = {"reflect": 0, "replicate": 1, "zeros": 2, "circular": 3}
BAND_BITS: dict[str, int] = {"LL": 1, "LH": 2, "HL": 4, "HH": 8}


def _ext() -> Any:
    return _build.load_extension()


def _grads_like(*groups: Sequence[Tensor]) -> list[Tensor]:
    """Contiguous empty tensors shaped like every tensor of ``groups``: the fake of a backward op."""
    return [torch.empty_like(t, memory_format=torch.contiguous_format) for group in groups for t in group]


def _register_down_autograd(op: Any, op_backward: Callable[..., list[Tensor]]) -> None:
    """Register the autograd of a down op ``(x, params, padding, bands, scale, constraints, details,
    *extra)`` whose backward op takes ``(x, params, grad_out, grad_details, grad_cons, padding, bands, scale,
    *extra)``; only ``x`` and the parameters are saved."""

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

    op.register_autograd(backward, setup_context=setup_context)


def _register_up_autograd(op: Any, op_backward: Callable[..., list[Tensor]], n_sizes: int) -> None:
    """Register the autograd of an up op ``(bands, params, *sizes, *rest)`` (``n_sizes`` sizes) whose
    backward op takes ``(bands, params, grad_x, *rest)``."""

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        bands, params = inputs[0], inputs[1]
        ctx.save_for_backward(*bands, *params)
        ctx.nb, ctx.op_args, ctx.n_inputs = len(bands), inputs[2 + n_sizes :], len(inputs)

    def backward(ctx: Any, grad_x: Tensor) -> tuple[Any, ...]:
        nb, saved = ctx.nb, ctx.saved_tensors
        grads = op_backward(list(saved[:nb]), list(saved[nb:]), grad_x, *ctx.op_args)
        return (grads[:nb], grads[nb:], *([None] * (ctx.n_inputs - 2)))

    op.register_autograd(backward, setup_context=setup_context)


@torch.library.custom_op("liftpool::down2d", mutates_args=(), device_types="cpu")
def down2d(
    x: Tensor,
    params: list[Tensor],
    padding: int,
    bands: int,
    scale: float,
    constraints: bool,
    details: bool,
    layout: int,
) -> tuple[Tensor, Tensor, Tensor]:
    out, det, cons = _ext().down2d_forward_list(x, params, padding, bands, scale, constraints, details, layout)
    return out, det, cons


@down2d.register_fake
def _down2d_fake(
    x: Tensor,
    params: list[Tensor],
    padding: int,
    bands: int,
    scale: float,
    constraints: bool,
    details: bool,
    layout: int,
) -> tuple[Tensor, Tensor, Tensor]:
    n, c, h, w = x.shape
    ho, wo = (h + 1) // 2, (w + 1) // 2
    out = x.new_empty((n, c, ho, wo))
    det = x.new_empty((3, n, c, ho, wo)) if details else x.new_empty((0,))
    return out, det, x.new_empty((2,))


@torch.library.custom_op("liftpool::down2d_backward", mutates_args=(), device_types="cpu")
def down2d_backward(
    x: Tensor,
    params: list[Tensor],
    grad_out: Optional[Tensor],  # noqa: UP045 (custom_op parses the annotation; Python 3.9)
    grad_details: Optional[Tensor],  # noqa: UP045
    grad_cons: Tensor,
    padding: int,
    bands: int,
    scale: float,
    layout: int,
) -> list[Tensor]:
    grads: list[Tensor] = _ext().down2d_backward_list(
        x, params, grad_out, grad_details, grad_cons, padding, bands, scale, layout
    )
    return grads


@down2d_backward.register_fake
def _down2d_backward_fake(
    x: Tensor,
    params: list[Tensor],
    grad_out: Optional[Tensor],  # noqa: UP045 (custom_op parses the annotation; Python 3.9)
    grad_details: Optional[Tensor],  # noqa: UP045
    grad_cons: Tensor,
    padding: int,
    bands: int,
    scale: float,
    layout: int,
) -> list[Tensor]:
    return _grads_like([x], params)


_register_down_autograd(down2d, down2d_backward)


@torch.library.custom_op("liftpool::up2d", mutates_args=(), device_types="cpu")
def up2d(bands: list[Tensor], params: list[Tensor], H: int, W: int, padding: int, layout: int) -> Tensor:
    x: Tensor = _ext().up2d_forward_list(bands, params, H, W, padding, layout)
    return x


@up2d.register_fake
def _up2d_fake(bands: list[Tensor], params: list[Tensor], H: int, W: int, padding: int, layout: int) -> Tensor:
    n, c = bands[0].shape[:2]
    return bands[0].new_empty((n, c, H, W))


@torch.library.custom_op("liftpool::up2d_backward", mutates_args=(), device_types="cpu")
def up2d_backward(bands: list[Tensor], params: list[Tensor], grad_x: Tensor, padding: int, layout: int) -> list[Tensor]:
    grads: list[Tensor] = _ext().up2d_backward_list(bands, params, grad_x, padding, layout)
    return grads


@up2d_backward.register_fake
def _up2d_backward_fake(
    bands: list[Tensor], params: list[Tensor], grad_x: Tensor, padding: int, layout: int
) -> list[Tensor]:
    return _grads_like(bands, params)


_register_up_autograd(up2d, up2d_backward, 2)


@torch.library.custom_op("liftpool::down1d", mutates_args=(), device_types="cpu")
def down1d(
    x: Tensor, params: list[Tensor], padding: int, bands: int, scale: float, constraints: bool, details: bool
) -> tuple[Tensor, Tensor, Tensor]:
    out, det, cons = _ext().down1d_forward_list(x, params, padding, bands, scale, constraints, details)
    return out, det, cons


@down1d.register_fake
def _down1d_fake(
    x: Tensor, params: list[Tensor], padding: int, bands: int, scale: float, constraints: bool, details: bool
) -> tuple[Tensor, Tensor, Tensor]:
    n, c, length = x.shape
    out = x.new_empty((n, c, (length + 1) // 2))
    det = x.new_empty((n, c, (length + 1) // 2)) if details else x.new_empty((0,))
    return out, det, x.new_empty((2,))


@torch.library.custom_op("liftpool::down1d_backward", mutates_args=(), device_types="cpu")
def down1d_backward(
    x: Tensor,
    params: list[Tensor],
    grad_out: Optional[Tensor],  # noqa: UP045 (custom_op parses the annotation; Python 3.9)
    grad_details: Optional[Tensor],  # noqa: UP045
    grad_cons: Tensor,
    padding: int,
    bands: int,
    scale: float,
) -> list[Tensor]:
    grads: list[Tensor] = _ext().down1d_backward_list(
        x, params, grad_out, grad_details, grad_cons, padding, bands, scale
    )
    return grads


@down1d_backward.register_fake
def _down1d_backward_fake(
    x: Tensor,
    params: list[Tensor],
    grad_out: Optional[Tensor],  # noqa: UP045 (custom_op parses the annotation; Python 3.9)
    grad_details: Optional[Tensor],  # noqa: UP045
    grad_cons: Tensor,
    padding: int,
    bands: int,
    scale: float,
) -> list[Tensor]:
    return _grads_like([x], params)


_register_down_autograd(down1d, down1d_backward)


@torch.library.custom_op("liftpool::up1d", mutates_args=(), device_types="cpu")
def up1d(bands: list[Tensor], params: list[Tensor], L: int, padding: int) -> Tensor:
    x: Tensor = _ext().up1d_forward_list(bands, params, L, padding)
    return x


@up1d.register_fake
def _up1d_fake(bands: list[Tensor], params: list[Tensor], L: int, padding: int) -> Tensor:
    n, c = bands[0].shape[:2]
    return bands[0].new_empty((n, c, L))


@torch.library.custom_op("liftpool::up1d_backward", mutates_args=(), device_types="cpu")
def up1d_backward(bands: list[Tensor], params: list[Tensor], grad_x: Tensor, padding: int) -> list[Tensor]:
    grads: list[Tensor] = _ext().up1d_backward_list(bands, params, grad_x, padding)
    return grads


@up1d_backward.register_fake
def _up1d_backward_fake(bands: list[Tensor], params: list[Tensor], grad_x: Tensor, padding: int) -> list[Tensor]:
    return _grads_like(bands, params)


_register_up_autograd(up1d, up1d_backward, 1)


def _half(n: int) -> int:
    return (n + 1) // 2


@torch.library.custom_op("liftpool::down3d", mutates_args=(), device_types="cpu")
def down3d(
    x: Tensor, params: list[Tensor], padding: int, bands: int, scale: float, constraints: bool, details: bool
) -> tuple[Tensor, Tensor, Tensor]:
    out, det, cons = _ext().down3d_forward_list(x, params, padding, bands, scale, constraints, details)
    return out, det, cons


@down3d.register_fake
def _down3d_fake(
    x: Tensor, params: list[Tensor], padding: int, bands: int, scale: float, constraints: bool, details: bool
) -> tuple[Tensor, Tensor, Tensor]:
    n, c, d, h, w = x.shape
    half = (n, c, _half(d), _half(h), _half(w))
    det = x.new_empty((7, *half)) if details else x.new_empty((0,))
    return x.new_empty(half), det, x.new_empty((2,))


@torch.library.custom_op("liftpool::down3d_backward", mutates_args=(), device_types="cpu")
def down3d_backward(
    x: Tensor,
    params: list[Tensor],
    grad_out: Optional[Tensor],  # noqa: UP045 (custom_op parses the annotation; Python 3.9)
    grad_details: Optional[Tensor],  # noqa: UP045
    grad_cons: Tensor,
    padding: int,
    bands: int,
    scale: float,
) -> list[Tensor]:
    grads: list[Tensor] = _ext().down3d_backward_list(
        x, params, grad_out, grad_details, grad_cons, padding, bands, scale
    )
    return grads


@down3d_backward.register_fake
def _down3d_backward_fake(
    x: Tensor,
    params: list[Tensor],
    grad_out: Optional[Tensor],  # noqa: UP045 (custom_op parses the annotation; Python 3.9)
    grad_details: Optional[Tensor],  # noqa: UP045
    grad_cons: Tensor,
    padding: int,
    bands: int,
    scale: float,
) -> list[Tensor]:
    return _grads_like([x], params)


_register_down_autograd(down3d, down3d_backward)


@torch.library.custom_op("liftpool::up3d", mutates_args=(), device_types="cpu")
def up3d(bands: list[Tensor], params: list[Tensor], D: int, H: int, W: int, padding: int) -> Tensor:
    x: Tensor = _ext().up3d_forward_list(bands, params, D, H, W, padding)
    return x


@up3d.register_fake
def _up3d_fake(bands: list[Tensor], params: list[Tensor], D: int, H: int, W: int, padding: int) -> Tensor:
    n, c = bands[0].shape[:2]
    return bands[0].new_empty((n, c, D, H, W))


@torch.library.custom_op("liftpool::up3d_backward", mutates_args=(), device_types="cpu")
def up3d_backward(bands: list[Tensor], params: list[Tensor], grad_x: Tensor, padding: int) -> list[Tensor]:
    grads: list[Tensor] = _ext().up3d_backward_list(bands, params, grad_x, padding)
    return grads


@up3d_backward.register_fake
def _up3d_backward_fake(bands: list[Tensor], params: list[Tensor], grad_x: Tensor, padding: int) -> list[Tensor]:
    return _grads_like(bands, params)


_register_up_autograd(up3d, up3d_backward, 3)
