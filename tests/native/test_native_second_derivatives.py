"""Second derivatives through every native layer: a backward asked for with ``create_graph=True``
(gradient penalties such as WGAN-GP and R1, MAML, Hessian-vector products) is computed by the eager
composite on the saved inputs, so autograd differentiates it again; a plain backward stays fused.

``gradgradcheck`` in float64 for LiftDownPool and LiftUpPool in 1D, 2D (both layouts) and 3D, with
the details and the constraint terms among the outputs, and a gradient-penalty training step equal to
the eager layer's.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool2d, kernels
from liftpool.constants import band_names
from liftpool.kernels import native
from liftpool.kernels.native import _build

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built here"
)

LAYERS = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
SIZES = {1: (5,), 2: (3, 4), 3: (3, 2, 3)}


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    assert native.available(), f"native kernel failed to build: {native.build_info()['error']}"


def _layer(dims: int, share: bool = True) -> Any:
    layer = LAYERS[dims](2, 3, share_weights=share, padding_mode="reflect", dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.6)
    return layer


class _Down(nn.Module):
    """native.pool with the details and the constraint terms as outputs (parameters swappable by functional_call)."""

    def __init__(self, layer: Any, layout: int | None) -> None:
        super().__init__()
        self.layer, self.layout = layer, layout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kw = {} if self.layout is None else {"layout": self.layout}
        dims = x.ndim - 2
        out, rest, cons = native.pool(x, self.layer.transforms, dims, band_names(dims)[:2], 0.75, True, True, **kw)
        assert rest is not None and cons is not None
        return (out, *rest, cons[0], cons[1])


class _Up(nn.Module):
    def __init__(self, layer: Any, size: tuple[int, ...], layout: int | None) -> None:
        super().__init__()
        self.layer, self.size, self.layout = layer, size, layout

    def forward(self, *bands: torch.Tensor) -> torch.Tensor:
        kw = {} if self.layout is None else {"layout": self.layout}
        names = band_names(len(self.size))
        return native.reconstruct(dict(zip(names, bands)), self.size, self.layer.transforms, **kw)


def _check(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    names = [n for n, _ in module.named_parameters()]
    n_in = len(inputs)

    def fn(*tensors: torch.Tensor) -> Any:
        return torch.func.functional_call(module, dict(zip(names, tensors[n_in:])), tensors[:n_in])

    params = tuple(p.detach().clone().requires_grad_(True) for _, p in module.named_parameters())
    leaves = tuple(t.detach().clone().requires_grad_(True) for t in inputs)
    assert torch.autograd.gradgradcheck(fn, leaves + params, eps=1e-6, atol=1e-5, rtol=1e-4)


_CASES = [(1, None), (2, 1), (2, 2), (3, None)]


@pytest.mark.parametrize(("dims", "layout"), _CASES)
def test_gradgradcheck_down(dims: int, layout: int | None) -> None:
    x = torch.randn((2, 2, *SIZES[dims]), dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _check(_Down(_layer(dims, share=dims != 2), layout), (x,))


@pytest.mark.parametrize(("dims", "layout"), _CASES)
def test_gradgradcheck_up(dims: int, layout: int | None) -> None:
    size = SIZES[dims]
    half = tuple((s + 1) // 2 for s in size)
    gen = torch.Generator().manual_seed(2)
    bands = tuple(torch.randn((2, 2, *half), dtype=torch.float64, generator=gen) for _ in range(2**dims))
    _check(_Up(_layer(dims), size, layout), bands)


def _penalty_step(layer: Any, up: Any, x: torch.Tensor) -> list[torch.Tensor]:
    """One WGAN-GP/R1-style step: loss + lambda * ||d loss / d x||^2, backward into every parameter."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y, det = layer(x)
    loss = (up(y.tanh(), det) * x).sum() + layer.lifting_loss()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    (loss + 0.1 * g.square().sum()).backward()
    return [x.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.parametrize("layout_batch", [1, 4])
def test_gradient_penalty_step_as_eager(layout_batch: int) -> None:
    """A gradient-penalty step through a native LiftDownPool2d + LiftUpPool2d gives the eager layer's gradients."""
    layer = LiftDownPool2d(3, return_details=True).double()
    x = torch.randn(layout_batch, 3, 7, 6, dtype=torch.float64)
    assert kernels.selected(x, layer.transforms, 2) == "native"
    got = _penalty_step(layer, LiftUpPool2d(layer), x)
    layer.backend = "eager"
    ref = _penalty_step(layer, LiftUpPool2d(layer), x)
    for a, b in zip(got, ref):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_hessian_vector_product_and_plain_backward() -> None:
    """A Hessian-vector product w.r.t. the input; a plain backward (no graph) still runs the fused kernel."""
    layer = LiftDownPool1d(2).double()
    x = torch.randn(3, 2, 9, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(x)

    def f(t: torch.Tensor) -> torch.Tensor:
        return layer(t).square().sum()

    _, hvp = torch.autograd.functional.hvp(f, x, v)
    layer.backend = "eager"
    _, ref = torch.autograd.functional.hvp(f, x, v)
    torch.testing.assert_close(hvp, ref, rtol=1e-10, atol=1e-12)
    layer.backend = "auto"
    (gx,) = torch.autograd.grad(f(x), x)
    assert gx.grad_fn is None
