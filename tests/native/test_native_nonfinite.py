"""NaN and +-inf through the native kernels exactly as through the eager kernel.

A pooling layer must not hide a diverging run: NaN and inf propagate through every native layer
(LiftDownPool/LiftUpPool in 1D, 2D with both layouts, 3D) to the same output positions, detail
bands, constraint terms and gradients (w.r.t. the input and every P/U parameter) as through the
eager kernel, with the constraint terms in the loss and without them.  The non-finite sample sits
at the first, an interior and the last position of odd and even sizes: the edges feed the padding
of the lifting convolutions (mirrored, replicated, wrapped) and an odd axis's last sample is
duplicated into its last pair.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool2d
from liftpool.constants import band_names
from liftpool.kernels import eager, native
from liftpool.kernels.native import _build

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built here"
)

LAYERS = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
SIZES = {1: [(7,), (8,)], 2: [(5, 7), (6, 6)], 3: [(3, 4, 5)]}
VALUES = (float("nan"), float("inf"), float("-inf"))
PADDINGS = ("reflect", "replicate", "zeros", "circular")


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    assert native.available(), f"native kernel failed to build: {native.build_info()['error']}"


def _layer(dims: int, padding: str, share: bool) -> Any:
    layer = LAYERS[dims](2, 3, padding_mode=padding, share_weights=share, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.6)
    return layer


def _pattern(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.isnan(t), torch.isposinf(t), torch.isneginf(t)


def _assert_same_pattern(got: list[torch.Tensor | None], ref: list[torch.Tensor | None], what: str) -> None:
    assert len(got) == len(ref)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert (a is None) == (b is None), f"{what}: item {i} is None on one side only"
        if a is None or b is None:
            continue
        for name, pa, pb in zip(("NaN", "+inf", "-inf"), _pattern(a), _pattern(b)):
            assert torch.equal(pa, pb), (
                f"{what}: item {i} (shape {tuple(b.shape)}): {name} at {int(pa.sum())} positions natively, "
                f"{int(pb.sum())} in eager"
            )


def _positions(size: tuple[int, ...]) -> list[tuple[int, ...]]:
    """First, interior and last sample of every axis (the edges feed the padding)."""
    return [tuple(0 for _ in size), tuple(s // 2 for s in size), tuple(s - 1 for s in size)]


def _down(
    fn: Any, layer: Any, x: torch.Tensor, with_constraints: bool, **kw: Any
) -> list[torch.Tensor | None]:
    dims = x.ndim - 2
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out, det, cons = fn(x, layer.transforms, dims, layer.bands, 1.0, True, True, **kw)
    loss = out.sum() + 0.5 * sum(d.sum() for d in det)
    if with_constraints:
        loss = loss + cons[0] + 0.25 * cons[1]
    loss.backward()
    res: list[torch.Tensor | None] = [out.detach(), *(d.detach() for d in det)]
    res += [cons[0].detach().reshape(1), cons[1].detach().reshape(1), x.grad]
    return res + [None if p.grad is None else p.grad.clone() for p in layer.parameters()]


def _down_cases(dims: int) -> list[tuple[Any, ...]]:
    layouts: list[int | None] = [1, 2] if dims == 2 else [None]
    return list(itertools.product(SIZES[dims], layouts))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("padding", PADDINGS)
def test_down_nonfinite_as_eager(dims: int, padding: str) -> None:
    """Outputs, details, constraint terms and gradients: the same NaN/+inf/-inf positions as eager."""
    for share in (True, False):
        layer = _layer(dims, padding, share)
        for (size, layout), value in itertools.product(_down_cases(dims), VALUES):
            for pos in _positions(size):
                x = torch.randn(2, 2, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
                x[(1, 0, *pos)] = value
                kw = {} if layout is None else {"layout": layout}
                for with_cons in (True, False):
                    ref = _down(eager.fast_pool, layer, x, with_cons)
                    got = _down(native.pool, layer, x, with_cons, **kw)
                    what = f"{dims}D {size} {padding} share={share} layout={layout} {value} at {pos} cons={with_cons}"
                    _assert_same_pattern(got, ref, what)


def _up(fn: Any, layer: Any, bands: dict[str, torch.Tensor], size: tuple[int, ...], **kw: Any) -> list[Any]:
    layer.zero_grad(set_to_none=True)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in bands.items()}
    out = fn(leaves, size, layer.transforms, **kw)
    out.sum().backward()
    names = band_names(len(size))
    return [out.detach(), *(leaves[k].grad for k in names), *(p.grad.clone() for p in layer.parameters())]


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_up_nonfinite_as_eager(dims: int) -> None:
    """LiftUpPool: a non-finite sample in any band, every padding, the same patterns as eager."""
    names = band_names(dims)
    for padding, share in itertools.product(PADDINGS, (True, False)):
        layer = _layer(dims, padding, share)
        for (size, layout), value in itertools.product(_down_cases(dims), VALUES):
            half = tuple((s + 1) // 2 for s in size)
            for band, pos in itertools.product((names[0], names[-1]), _positions(half)):
                gen = torch.Generator().manual_seed(3)
                bands = {b: torch.randn((2, 2, *half), dtype=torch.float64, generator=gen) for b in names}
                bands[band][(0, 1, *pos)] = value
                kw = {} if layout is None else {"layout": layout}
                ref = _up(eager.fast_reconstruct, layer, bands, size)
                got = _up(native.reconstruct, layer, bands, size, **kw)
                what = f"{dims}D {size} {padding} share={share} layout={layout} {value} in {band} at {pos}"
                _assert_same_pattern(got, ref, what)


@pytest.mark.parametrize("layout", [1, 2])
def test_float32_nan_as_eager(layout: int) -> None:
    """float32 (the kernel's own tanh approximation): NaN reaches the same positions as in eager."""
    layer = _layer(2, "reflect", True).float()
    x = torch.randn(3, 2, 7, 6)
    x[1, 0, 3, 2] = float("nan")
    x[2, 1, 0, 5] = float("nan")
    ref = _down(eager.fast_pool, layer, x, True)
    got = _down(native.pool, layer, x, True, layout=layout)
    _assert_same_pattern(got, ref, f"float32 layout={layout}")


def test_layer_nan_count_as_eager() -> None:
    """A NaN in a 1x4x8x8 input: the native layer's output and, in training with the lifting loss,
    its input gradient hold as many NaN as the eager layer's (the native ReLU once mapped NaN to 0)."""
    torch.manual_seed(0)
    native_layer = LiftDownPool2d(4)
    eager_layer = LiftDownPool2d(4, backend="eager")
    eager_layer.load_state_dict(native_layer.state_dict())
    x = torch.randn(1, 4, 8, 8)
    x[0, 1, 3, 4] = float("nan")
    with torch.no_grad():
        counts = [int(torch.isnan(m.eval()(x)).sum()) for m in (native_layer, eager_layer)]
    assert counts[0] == counts[1] > 1
    xt = torch.randn(2, 4, 8, 8)
    xt[1, 2, 5, 0] = float("nan")
    grads = []
    for m in (native_layer, eager_layer):
        xi = xt.clone().requires_grad_(True)
        (m.train()(xi).sum() + m.lifting_loss()).backward()
        grads.append(xi.grad)
    _assert_same_pattern([grads[0]], [grads[1]], "layer input gradient")


def test_up_layer_inf_as_eager() -> None:
    """LiftUpPool2d after a LiftDownPool2d of an input holding +inf: the same inf/NaN pattern as eager."""
    torch.manual_seed(0)
    down = LiftDownPool2d(2, return_details=True).double()
    x = torch.randn(2, 2, 9, 8, dtype=torch.float64)
    x[0, 0, 8, 7] = float("inf")
    outs = []
    for backend in ("native", "eager"):
        down.backend = backend
        up = LiftUpPool2d(down)
        y, det = down(x)
        outs.append(up(y, det))
    _assert_same_pattern([outs[0]], [outs[1]], "up(down(x))")
