"""torch.func.vmap, torch.jit.trace and torch.jit.script on the layers.

* vmap: maps over an extra leading batch dim, and per-sample gradients (vmap of grad) work,
  matching a Python loop.  (Before: "querying is_contiguous inside of vmap".)
* jit.trace: the traced graph is valid for every input size, not just the example's (odd-size
  handling is shape arithmetic), and the trace passes its own sanity check.
* jit.script: not supported; a clear error names what to use instead.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool2d

SIZES_2D = [(9, 6), (8, 7), (8, 8), (7, 7), (2, 2), (1, 1), (1, 4), (5, 2)]


class Pair(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.down = LiftDownPool2d(c, bands="LL", return_details=True)
        self.up = LiftUpPool2d(self.down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, details = self.down(x)
        return self.up(torch.tanh(y), details)


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: LiftDownPool1d(3), (4, 2, 3, 7)),
        (lambda: LiftDownPool2d(3), (4, 2, 3, 7, 6)),
        (lambda: LiftDownPool2d(3, padding_mode="replicate"), (3, 2, 3, 3, 2)),
        (lambda: LiftDownPool3d(3), (2, 1, 3, 3, 4, 5)),
        (lambda: Pair(3), (3, 2, 3, 5, 6)),
    ],
)
def test_vmap_matches_loop(make, shape) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    layer = make().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expect = torch.stack([layer(xb) for xb in x])
        got = torch.func.vmap(layer)(x)
    torch.testing.assert_close(got, expect, rtol=1e-6, atol=1e-6)
    # also with autograd enabled (parameters require grad: the non-in-place path)
    torch.testing.assert_close(torch.func.vmap(layer)(x), expect, rtol=1e-6, atol=1e-6)


def test_vmap_per_sample_gradients_match_loop() -> None:
    torch.manual_seed(0)
    layer = LiftDownPool2d(2).train()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    x = torch.randn(4, 1, 2, 5, 6)  # 4 samples, each a batch of 1

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, p, (xb,)).square().sum()

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x)
    for i in range(x.shape[0]):
        ref = torch.func.grad(loss)(params, x[i])
        for k in params:
            torch.testing.assert_close(per_sample[k][i], ref[k], rtol=1e-5, atol=1e-6)


def _trace(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # a warning would mean a size got frozen
        warnings.filterwarnings("ignore", category=FutureWarning)  # jit.trace itself is deprecated
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.trace(model, example)  # check_trace=True: the trace's own sanity check


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "zeros", "circular"])
def test_jit_trace_valid_for_every_size(padding_mode: str) -> None:
    torch.manual_seed(0)
    layer = LiftDownPool2d(3, padding_mode=padding_mode).eval()
    traced = _trace(layer, torch.randn(2, 3, 9, 6))
    for h, w in SIZES_2D:
        x = torch.randn(3, 3, h, w)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), layer(x), rtol=1e-5, atol=1e-5, msg=lambda m, s=(h, w): f"{s}: {m}")


def test_jit_trace_pair_and_1d_3d_valid_for_every_size() -> None:
    torch.manual_seed(0)
    pair = Pair(2).eval()
    traced = _trace(pair, torch.randn(1, 2, 9, 6))
    for h, w in SIZES_2D:
        x = torch.randn(2, 2, h, w)
        with torch.no_grad():
            torch.testing.assert_close(traced(x), pair(x), rtol=1e-5, atol=1e-5)
    d1 = LiftDownPool1d(2).eval()
    t1 = _trace(d1, torch.randn(1, 2, 9))
    d3 = LiftDownPool3d(2).eval()
    t3 = _trace(d3, torch.randn(1, 2, 3, 4, 5))
    with torch.no_grad():
        for n in (1, 2, 7, 10):
            x = torch.randn(2, 2, n)
            torch.testing.assert_close(t1(x), d1(x), rtol=1e-5, atol=1e-5)
        for size in ((1, 1, 1), (2, 3, 4), (5, 5, 2)):
            x = torch.randn(1, 2, *size)
            torch.testing.assert_close(t3(x), d3(x), rtol=1e-5, atol=1e-5)


def test_jit_trace_gradients_on_another_size() -> None:
    torch.manual_seed(0)
    layer = LiftDownPool2d(2).eval()
    traced = _trace(layer, torch.randn(1, 2, 6, 6))
    x = torch.randn(2, 2, 7, 5, requires_grad=True)
    (g_traced,) = torch.autograd.grad(traced(x).square().sum(), x)
    (g_eager,) = torch.autograd.grad(layer(x).square().sum(), x)
    torch.testing.assert_close(g_traced, g_eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: LiftDownPool2d(3), "LiftDownPool2d"),
        (lambda: LiftDownPool1d(3), "LiftDownPool1d"),
        (lambda: LiftUpPool2d(LiftDownPool2d(3)), "LiftUpPool2d"),
        (lambda: Pair(3), "LiftDownPool2d"),
    ],
)
def test_jit_script_raises_clear_error(make, name: str) -> None:  # type: ignore[no-untyped-def]
    model = nn.Sequential(nn.Identity(), make())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=rf"^{name} does not support torch\.jit\.script.*torch\.jit\.trace"):
            torch.jit.script(model)


def test_readme_supported_tooling_names_existing_tests() -> None:
    """Every ``file::test`` the README's "Supported tooling" table cites exists."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text.split("## Supported tooling", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section)
    assert len(cited) >= 15
    for path, name in cited:
        source = (root / path).read_text()
        assert re.search(rf"^def {name}\(", source, flags=re.MULTILINE), f"{path}::{name} does not exist"
    tools = ("torch.compile", "dynamo=True", "dynamo=False", "autocast", "channels_last", "DDP", "vmap")
    for tool in (*tools, "jit.trace", "jit.script"):
        assert tool in section, tool


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_axis_keeps_channels_last_and_works_under_vmap(mode: str) -> None:
    """The gathered edge extension keeps the input's memory layout (no mixed-layout copies) and maps under vmap."""
    import numpy as np

    from liftpool.functional import pad_axis

    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    x = torch.randn(2, 3, 5, 6).contiguous(memory_format=torch.channels_last)
    for dim in (-1, -2):
        got = pad_axis(x, dim, 2, 2, mode)
        assert got.is_contiguous(memory_format=torch.channels_last)
        width = [(0, 0)] * 4
        width[dim] = (2, 2)
        np.testing.assert_array_equal(got.numpy(), np.pad(x.numpy(), width, mode=np_mode))
        batched = torch.func.vmap(lambda t, d=dim: pad_axis(t, d, 2, 2, mode))(x)
        torch.testing.assert_close(batched, torch.stack([pad_axis(t, dim, 2, 2, mode) for t in x]))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_no_grad_in_place_path_matches_autograd_path(dims: int) -> None:
    """Without autograd the fast path reuses buffers in place (also what vmap and eval take); same values."""
    from liftpool.constants import band_names
    from liftpool.layers import LIFT_DOWN, LIFT_UP

    torch.manual_seed(0)
    down = LIFT_DOWN[dims](3, bands=band_names(dims)[0], return_details=True).eval()
    up = LIFT_UP[dims](down)
    x = torch.randn((2, 3) + (5, 6, 7)[:dims])
    y, details = down(x)  # parameters require grad: the out-of-place path
    rec = up(y, details)
    with torch.no_grad():
        y0, details0 = down(x)
        rec0 = up(y0, details0)
    torch.testing.assert_close(y0, y.detach(), rtol=0, atol=0)
    torch.testing.assert_close(rec0, rec.detach(), rtol=0, atol=0)
    torch.testing.assert_close(rec0, x, rtol=1e-5, atol=1e-5)
