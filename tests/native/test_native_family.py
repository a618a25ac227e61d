"""The native LiftUpPool2d and the native 1D and 3D pairs (liftpool.kernels.native) against the eager path.

Same battery as ``test_native_down2d.py``: native == eager over the option matrix (outputs and the
gradients w.r.t. every input band / x and every P/U parameter), exact up-of-down for every size,
gradcheck and opcheck of the registered ops, determinism, compile, dtypes and layouts, errors.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool1d, LiftUpPool2d, LiftUpPool3d, kernels
from liftpool.constants import band_names
from liftpool.kernels import eager, native
from liftpool.kernels.native import _build

from helpers import rel_err

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built here"
)

PADDINGS: tuple[str, ...] = ("reflect", "replicate", "zeros", "circular")
NAMES = {1: ("L", "H"), 2: ("LL", "LH", "HL", "HH"), 3: band_names(3)}


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    assert native.available(), f"native kernel failed to build: {native.build_info()['error']}"


def _random_params(layer: torch.nn.Module, seed: int = 0) -> None:
    """Parameters away from zero so that every lifter's nonlinearity matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.6)


def _bands(n: int, c: int, size: tuple[int, ...], dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    half = tuple((s + 1) // 2 for s in size)
    return {b: torch.randn((n, c, *half), dtype=dtype) for b in NAMES[len(size)]}


def _run_up(
    fn: Any, layer: Any, bands: dict[str, torch.Tensor], size: tuple[int, ...], **kw: Any
) -> list[torch.Tensor]:
    """Output and gradients (every band, every parameter) of one forward+backward with a random loss."""
    layer.zero_grad(set_to_none=True)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in bands.items()}
    out = fn(leaves, size, layer.transforms, **kw)
    gen = torch.Generator().manual_seed(3)
    (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum().backward()
    res = [out.detach()] + [leaves[k].grad for k in NAMES[len(size)]]
    res += [p.grad.clone() for p in layer.parameters()]
    return res


def _compare_up(layer: Any, bands: dict[str, torch.Tensor], size: tuple[int, ...], tol: float, **kw: Any) -> None:
    ref = _run_up(eager.fast_reconstruct, layer, bands, size)
    got = _run_up(native.reconstruct, layer, bands, size, **kw)
    assert len(ref) == len(got)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a is not None and b is not None, i
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape, a.dtype, b.dtype)
        err = rel_err(a, b)
        assert err <= tol, f"item {i} (shape {tuple(b.shape)}): rel err {err:.2e} > {tol:.0e}"


def _run_down1d(fn: Any, layer: LiftDownPool1d, x: torch.Tensor, training: bool, details: bool) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out, det, cons = fn(x, layer.transforms, 1, layer.bands, layer.scale, training, details)
    gen = torch.Generator().manual_seed(5)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    res = [out.detach()]
    if details:
        assert det is not None and len(det) == 1
        loss = loss + (det[0] * torch.randn(det[0].shape, generator=gen, dtype=out.dtype)).sum()
        res.append(det[0].detach())
    if training:
        assert cons is not None
        loss = loss + 0.37 * cons.c_u + 0.61 * cons.c_p
        res += [cons.c_u.detach(), cons.c_p.detach()]
    loss.backward()
    res.append(x.grad)
    # a lifter that no output depends on (e.g. U for band "H" alone) has no eager gradient, zeros natively
    res += [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in layer.parameters()]
    return res


def _compare_down1d(
    layer: LiftDownPool1d, x: torch.Tensor, tol: float, training: bool = True, details: bool = True
) -> None:
    ref = _run_down1d(eager.fast_pool, layer, x, training, details)
    got = _run_down1d(native.pool, layer, x, training, details)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape)
        err = rel_err(a, b)
        assert err <= tol, f"item {i} (shape {tuple(b.shape)}): rel err {err:.2e} > {tol:.0e}"


# ------------------------------------------------------------------------------ LiftUpPool2d
@pytest.mark.parametrize("H", range(1, 10))
def test_up2d_every_size(H: int) -> None:
    """Every H, W in 1..9, both layouts, float64: output and gradients of bands and parameters."""
    layer = LiftDownPool2d(3).double()
    _random_params(layer, H)
    for W in range(1, 10):
        bands = _bands(3, 3, (H, W))
        for layout in (1, 2):
            _compare_up(layer, bands, (H, W), 1e-12, layout=layout)


@pytest.mark.parametrize(("padding", "share", "layout"), list(itertools.product(PADDINGS, (True, False), (1, 2))))
def test_up2d_option_matrix(padding: str, share: bool, layout: int) -> None:
    for i, (H, W) in enumerate([(1, 1), (2, 3), (4, 4), (5, 7), (9, 2), (6, 9)]):
        k = (5, 3, 7, 1)[i % 4]
        layer = LiftDownPool2d(4, k, padding_mode=padding, share_weights=share).double()
        _random_params(layer, i)
        _compare_up(layer, _bands((1, 11, 9)[i % 3], 4, (H, W)), (H, W), 1e-12, layout=layout)


@pytest.mark.parametrize(("H", "W"), [(2, 2), (3, 4), (8, 7)])
def test_up2d_large_batch_small_maps(H: int, W: int) -> None:
    """More images than one item's group (up to 64 at 2x2), a partial last group."""
    layer = LiftDownPool2d(2, share_weights=False).double()
    _random_params(layer)
    _compare_up(layer, _bands(70, 2, (H, W)), (H, W), 1e-12, layout=2)


@pytest.mark.parametrize("layout", [1, 2])
def test_up2d_float32(layout: int) -> None:
    layer = LiftDownPool2d(8, share_weights=False)
    for n, H, W in ((9, 56, 56), (3, 7, 5), (1, 16, 16)):
        _compare_up(layer, _bands(n, 8, (H, W), torch.float32), (H, W), 1e-5, layout=layout)


def test_up2d_channels_last_and_low_precision() -> None:
    layer = LiftDownPool2d(4).double()
    bands = {k: v.contiguous(memory_format=torch.channels_last) for k, v in _bands(3, 4, (10, 7)).items()}
    out = native.reconstruct(bands, (10, 7), layer.transforms)
    assert out.is_contiguous(memory_format=torch.channels_last)
    _compare_up(layer, bands, (10, 7), 1e-12)
    low = LiftDownPool2d(4).to(torch.bfloat16)
    b16 = {k: v.to(torch.bfloat16) for k, v in _bands(2, 4, (9, 8)).items()}
    got = native.reconstruct(b16, (9, 8), low.transforms)
    ref = copy.deepcopy(low).double()
    exact = eager.fast_reconstruct({k: v.double() for k, v in b16.items()}, (9, 8), ref.transforms)
    assert got.dtype == torch.bfloat16 and rel_err(got.double(), exact) <= 1e-2


@pytest.mark.parametrize("layout", [1, 2])
@pytest.mark.parametrize("share", [True, False])
def test_up_of_down_exact_every_size(layout: int, share: bool) -> None:
    """Native down (LL + details) then native up gives x back, float64 <= 1e-12, H, W in 1..9."""
    down = LiftDownPool2d(3, bands="LL", return_details=True, share_weights=share, padding_mode="reflect").double()
    _random_params(down)
    for H, W in itertools.product(range(1, 10), range(1, 10)):
        x = torch.randn(3, 3, H, W, dtype=torch.float64)
        y, det, _ = native.pool(x, down.transforms, 2, ("LL",), 1.0, False, True, layout=layout)
        assert det is not None
        back = native.reconstruct(dict(zip(NAMES[2], [y, *det])), (H, W), down.transforms, layout=layout)
        assert rel_err(back, x) <= 1e-12, (H, W)


def test_layers_take_native_and_stay_exact() -> None:
    """LiftDownPool2d(return_details=True) + LiftUpPool2d on the default backend: native both ways, exact."""
    down = LiftDownPool2d(4, bands="LL", return_details=True).double()
    _random_params(down)
    up = LiftUpPool2d(down)
    x = torch.randn(2, 4, 13, 10, dtype=torch.float64)
    assert kernels.selected(x, down.transforms, 2) == "native"
    y, det = down(x)
    assert rel_err(up(y, det), x) <= 1e-12
    bands = down.decompose(x)
    assert rel_err(down.reconstruct(bands), x) <= 1e-12
    ref = LiftDownPool2d(4, bands="LL", return_details=True, backend="eager").double()
    ref.load_state_dict(down.state_dict())
    ref_bands = ref.decompose(x)
    for a, b in zip(bands[:4], ref_bands[:4]):
        assert rel_err(a, b) <= 1e-12


_CL = {2: torch.channels_last, 3: torch.channels_last_3d}


@pytest.mark.parametrize(("dims", "size"), [(2, (9, 6)), (2, (4, 4)), (3, (5, 4, 7))])
def test_channels_last_gradients_follow_the_input(dims: int, size: tuple[int, ...]) -> None:
    """channels_last x (down) and bands (up): the outputs and the gradients w.r.t. them come back
    channels_last, bit for bit the values of the contiguous run (the kernel runs on an NCHW copy), and
    the create_graph backward still differentiates through the channels_last input."""
    down_cls, up_cls = {2: (LiftDownPool2d, LiftUpPool2d), 3: (LiftDownPool3d, LiftUpPool3d)}[dims]
    down = down_cls(3, return_details=True, backend="native").double()
    _random_params(down, seed=4)
    up = up_cls(down)
    x0 = torch.randn(2, 3, *size, dtype=torch.float64)
    runs = []
    for fmt in (torch.contiguous_format, _CL[dims]):
        x = x0.clone(memory_format=fmt).requires_grad_(True)
        y, det = down(x)
        low = y.detach().clone(memory_format=fmt).requires_grad_(True)
        rec = up(low, det)
        gen = torch.Generator().manual_seed(1)
        loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum() + (rec * torch.randn(
            rec.shape, generator=gen, dtype=rec.dtype)).sum()
        # autograd.grad, not .grad: a leaf's .grad is re-laid out like the leaf whatever the backward returns
        params = list(down.parameters())
        g_x, g_low, *g_params = torch.autograd.grad(loss, [x, low, *params])
        for t in (y, rec, g_x, g_low):
            assert t.is_contiguous(memory_format=fmt), (fmt, t.stride())
        runs.append([y.detach(), rec.detach(), g_x, g_low, *g_params])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    # second derivatives (gradient penalty) with a channels_last input equal the contiguous ones
    pens = []
    for fmt in (torch.contiguous_format, _CL[dims]):
        x = x0.clone(memory_format=fmt).requires_grad_(True)
        (g,) = torch.autograd.grad(down(x)[0].square().sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x)
        pens.append(gg.contiguous())
    assert rel_err(pens[1], pens[0]) <= 1e-12


@pytest.mark.parametrize(("H", "W", "padding", "layout"), [(1, 1, 0, 1), (2, 3, 1, 2), (5, 4, 2, 1), (7, 6, 3, 2)])
def test_up2d_gradcheck(H: int, W: int, padding: int, layout: int) -> None:
    layer = LiftDownPool2d(2, 3, share_weights=(H + W) % 2 == 0).double()
    _random_params(layer)
    params = [p.detach().clone().requires_grad_(True) for p in native._params(layer.transforms)]
    bands = [b.requires_grad_(True) for b in _bands(3, 2, (H, W)).values()]

    def f(*ts: torch.Tensor) -> torch.Tensor:
        return torch.ops.liftpool.up2d(list(ts[:4]), list(ts[4:]), H, W, padding, layout)  # type: ignore[no-any-return]

    assert torch.autograd.gradcheck(f, (*bands, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_up2d_gradcheck_through_reconstruct() -> None:
    """float64 gradcheck of ``native.reconstruct`` itself (its eager autograd path, not the registered op)."""
    layer = LiftDownPool2d(2, 3, share_weights=False).double()
    _random_params(layer)
    params = list(layer.parameters())
    bands = _bands(3, 2, (5, 4))

    def f(*ts: torch.Tensor) -> torch.Tensor:
        return native.reconstruct(dict(zip(NAMES[2], ts[:4])), (5, 4), layer.transforms)

    inputs = tuple(b.requires_grad_(True) for b in bands.values())
    assert torch.autograd.gradcheck(f, (*inputs, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_up_opcheck() -> None:
    layer = LiftDownPool2d(3, 3, share_weights=False).double()
    params = [p.detach().clone() for p in native._params(layer.transforms)]
    for (H, W), layout in (((5, 6), 1), ((4, 3), 2)):
        bands = list(_bands(2, 3, (H, W)).values())
        torch.library.opcheck(torch.ops.liftpool.up2d.default, (bands, params, H, W, 0, layout))
        grad = [b.clone().requires_grad_(True) for b in bands]
        torch.library.opcheck(
            torch.ops.liftpool.up2d.default, (grad, [p.clone().requires_grad_(True) for p in params], H, W, 0, layout)
        )
        gx = torch.randn(2, 3, H, W, dtype=torch.float64)
        torch.library.opcheck(torch.ops.liftpool.up2d_backward.default, (bands, params, gx, 0, layout))
    layer1 = LiftDownPool1d(3, 5).double()
    p1 = [p.detach().clone() for p in native._params(layer1.transforms)]
    x = torch.randn(2, 3, 11, dtype=torch.float64)
    torch.library.opcheck(torch.ops.liftpool.down1d.default, (x, p1, 1, 3, 0.5, True, True))
    torch.library.opcheck(
        torch.ops.liftpool.down1d.default,
        (x.clone().requires_grad_(True), [p.clone().requires_grad_(True) for p in p1], 1, 3, 0.5, True, True),
    )
    g = torch.randn(2, 3, 6, dtype=torch.float64)
    cons = torch.tensor([0.3, 0.2], dtype=torch.float64)
    torch.library.opcheck(torch.ops.liftpool.down1d_backward.default, (x, p1, g, g.clone(), cons, 1, 3, 0.5))
    b1 = [torch.randn(2, 3, 6, dtype=torch.float64) for _ in range(2)]
    torch.library.opcheck(torch.ops.liftpool.up1d.default, (b1, p1, 11, 2))
    torch.library.opcheck(torch.ops.liftpool.up1d_backward.default, (b1, p1, x, 2))


@pytest.mark.parametrize("layout", [1, 2])
def test_up2d_deterministic_and_thread_independent(layout: int) -> None:
    layer = LiftDownPool2d(4, share_weights=False)
    bands = _bands(19, 4, (20, 18), torch.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _run_up(native.reconstruct, layer, bands, (20, 18), layout=layout)
        b = _run_up(native.reconstruct, layer, bands, (20, 18), layout=layout)
        torch.set_num_threads(2)
        c = _run_up(native.reconstruct, layer, bands, (20, 18), layout=layout)
    finally:
        torch.set_num_threads(old)
    for u, v, w in zip(a, b, c):
        assert torch.equal(u, v) and torch.equal(u, w)


def test_compile_fullgraph_up2d_and_1d() -> None:
    """Forward+backward of the up and 1D ops under torch.compile(fullgraph=True, backend="aot_eager")."""
    down2 = LiftDownPool2d(3, share_weights=False).double()
    down1 = LiftDownPool1d(3).double()
    _random_params(down2)
    _random_params(down1, 1)
    bands = _bands(4, 3, (9, 10))
    x1 = torch.randn(4, 3, 13, dtype=torch.float64)

    def step(b: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        up = native.reconstruct(b, (9, 10), down2.transforms)
        out, det, cons = native.pool(x, down1.transforms, 1, ("L", "H"), 0.5, True, True)
        assert det is not None and cons is not None
        back = native.reconstruct({"L": out, "H": det[0]}, (13,), down1.transforms)
        return up, back, cons.c_u + cons.c_p

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (step, compiled):
        down1.zero_grad(set_to_none=True)
        down2.zero_grad(set_to_none=True)
        b = {k: v.clone().requires_grad_(True) for k, v in bands.items()}
        x = x1.clone().requires_grad_(True)
        up, back, c = fn(b, x)
        (up.square().sum() + back.square().sum() + c).backward()
        params = [p.grad.clone() for p in (*down1.parameters(), *down2.parameters())]
        results.append([up.detach(), back.detach(), x.grad, *[b[k].grad for k in NAMES[2]], *params])
    for a, r in zip(*results):
        assert rel_err(a, r) <= 1e-12


def test_up2d_errors() -> None:
    layer = LiftDownPool2d(4)
    p = [t.detach() for t in native._params(layer.transforms)]
    bands = list(_bands(2, 4, (8, 8), torch.float32).values())
    with pytest.raises(RuntimeError, match="does not match"):
        torch.ops.liftpool.up2d(bands, p, 9, 5, 0, 1)
    with pytest.raises(RuntimeError, match="band shapes differ"):
        torch.ops.liftpool.up2d([*bands[:3], torch.randn(2, 4, 3, 4)], p, 8, 8, 0, 1)
    with pytest.raises(RuntimeError, match="4 bands"):
        torch.ops.liftpool.up2d(bands[:2], p, 8, 8, 0, 1)
    with pytest.raises(ValueError, match="missing"):
        native.reconstruct({"LL": bands[0]}, (8, 8), layer.transforms)


# -------------------------------------------------------------------------------------- 1D
@pytest.mark.parametrize("padding", PADDINGS)
def test_down1d_every_length_and_option(padding: str) -> None:
    """L in 1..20, band subsets, scales, kernel sizes, train/eval, details: native == eager, float64."""
    for L in range(1, 21):
        k = (5, 3, 1, 7)[L % 4]
        bands: Any = ("all", "L", "H")[L % 3]
        layer = LiftDownPool1d(3, k, padding_mode=padding, bands=bands, scale=(1.0, 0.5, -2.0)[L % 3]).double()
        _random_params(layer, L)
        x = torch.randn((1, 4, 9)[L % 3], 3, L, dtype=torch.float64)
        _compare_down1d(layer, x, 1e-12, training=L % 2 == 0, details=L % 5 != 0)


def test_down1d_float32_and_long_rows() -> None:
    layer = LiftDownPool1d(16)
    _compare_down1d(layer, torch.randn(5, 16, 4096), 1e-5)
    _compare_down1d(layer, torch.randn(40, 16, 7), 1e-5)  # many short rows per item


@pytest.mark.parametrize("padding", PADDINGS)
def test_up1d_parity_and_exact(padding: str) -> None:
    for L in range(1, 16):
        layer = LiftDownPool1d(2, (3, 5, 7)[L % 3], padding_mode=padding).double()
        _random_params(layer, L)
        _compare_up(layer, _bands(3, 2, (L,)), (L,), 1e-12)
        x = torch.randn(3, 2, L, dtype=torch.float64)
        low, det, _ = native.pool(x, layer.transforms, 1, ("L",), 1.0, False, True)
        assert det is not None
        assert rel_err(native.reconstruct({"L": low, "H": det[0]}, (L,), layer.transforms), x) <= 1e-12


def test_1d_gradcheck_and_layers() -> None:
    layer = LiftDownPool1d(2, 3, bands="L", return_details=True).double()
    _random_params(layer)
    params = list(layer.parameters())

    def f(x: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, det, cons = native.pool(x, layer.transforms, 1, ("L", "H"), 0.75, True, True)
        assert det is not None and cons is not None
        return out, det[0], cons.c_u, cons.c_p

    x = torch.randn(3, 2, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)

    def g(s: torch.Tensor, d: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return native.reconstruct({"L": s, "H": d}, (9,), layer.transforms)

    s, d = (torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(g, (s, d, *params), eps=1e-6, atol=1e-8, rtol=1e-6)
    # the layers take the native kernel by default and LiftUpPool1d inverts LiftDownPool1d
    assert kernels.selected(x, layer.transforms, 1) == "native"
    y, det = layer(x.detach())
    assert rel_err(LiftUpPool1d(layer)(y, det), x.detach()) <= 1e-12


def test_native_1d_applicable() -> None:
    x = torch.randn(2, 4, 16)
    assert native.applicable(x, LiftDownPool1d(4).transforms, 1)
    assert not native.applicable(x, LiftDownPool1d(4, groups=(2, 4)).transforms, 1)
    assert not native.applicable(x, LiftDownPool1d.from_wavelet("haar", 4).transforms, 1)
    assert not native.applicable(torch.randn(0, 4, 16), LiftDownPool1d(4).transforms, 1)
    assert not native.applicable(torch.randn(2, 4, 8, 8), LiftDownPool1d(4).transforms, 1)


# -------------------------------------------------------------------------------------- 3D
def _run_down3d(fn: Any, layer: LiftDownPool3d, x: torch.Tensor, training: bool, details: bool) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out, det, cons = fn(x, layer.transforms, 3, layer.bands, layer.scale, training, details)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    res = [out.detach()]
    if details:
        assert det is not None and len(det) == 7
        for d in det:
            loss = loss + (d * torch.randn(d.shape, generator=gen, dtype=d.dtype)).sum()
            res.append(d.detach())
    if training:
        assert cons is not None
        loss = loss + 0.37 * cons.c_u + 0.61 * cons.c_p
        res += [cons.c_u.detach(), cons.c_p.detach()]
    loss.backward()
    res.append(x.grad)
    res += [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in layer.parameters()]
    return res


def _compare_down3d(layer: LiftDownPool3d, x: torch.Tensor, tol: float, **kw: Any) -> None:
    ref = _run_down3d(eager.fast_pool, layer, x, **kw)
    got = _run_down3d(native.pool, layer, x, **kw)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape)
        err = rel_err(a, b)
        assert err <= tol, f"item {i} (shape {tuple(b.shape)}): rel err {err:.2e} > {tol:.0e}"


@pytest.mark.parametrize(("padding", "share"), list(itertools.product(PADDINGS, (True, False))))
def test_down3d_option_matrix(padding: str, share: bool) -> None:
    """Odd/tiny sizes, band subsets, scales, kernel sizes, train/eval, details: native == eager, float64."""
    sizes = [(1, 1, 1), (2, 3, 4), (3, 5, 2), (4, 4, 4), (5, 2, 7), (6, 7, 3)]
    band_sets: list[Any] = ["all", "LLL", ("LLL", "HHH"), ("LHL", "HLL", "HHH", "LLH"), "HLH", "all"]
    for i, size in enumerate(sizes):
        k = (5, 3, 7, 1)[i % 4]
        layer = LiftDownPool3d(
            3, k, padding_mode=padding, share_weights=share, bands=band_sets[i], scale=(1.0, 0.125, -1.5)[i % 3]
        ).double()
        _random_params(layer, i)
        x = torch.randn((1, 4, 2)[i % 3], 3, *size, dtype=torch.float64)
        _compare_down3d(layer, x, 1e-12, training=i % 2 == 0, details=i % 3 != 1)


def test_down3d_float32() -> None:
    layer = LiftDownPool3d(4, share_weights=False)
    _compare_down3d(layer, torch.randn(2, 4, 8, 14, 13), 1e-5, training=True, details=True)
    # slices wider and taller than one 8 x 8 transpose block (the width step runs on transposed slices)
    _compare_down3d(layer, torch.randn(1, 4, 3, 17, 24), 1e-5, training=True, details=False)


def test_down3d_large_slices_float64() -> None:
    layer = LiftDownPool3d(2, 5, padding_mode="reflect", share_weights=False).double()
    _random_params(layer, 3)
    _compare_down3d(layer, torch.randn(1, 2, 2, 19, 26, dtype=torch.float64), 1e-12, training=True, details=True)


@pytest.mark.parametrize("share", [True, False])
def test_up3d_parity_and_exact(share: bool) -> None:
    for i, size in enumerate([(1, 1, 1), (2, 3, 5), (5, 4, 3), (3, 6, 7)]):
        layer = LiftDownPool3d(2, (3, 5)[i % 2], padding_mode=PADDINGS[i], share_weights=share).double()
        _random_params(layer, i)
        _compare_up(layer, _bands(3, 2, size), size, 1e-12)
        x = torch.randn(2, 2, *size, dtype=torch.float64)
        low, det, _ = native.pool(x, layer.transforms, 3, ("LLL",), 1.0, False, True)
        assert det is not None
        back = native.reconstruct(dict(zip(band_names(3), [low, *det])), size, layer.transforms)
        assert rel_err(back, x) <= 1e-12, size


def test_up3d_large_slices() -> None:
    """Slices larger than one 8 x 8 transpose block: float64 exact and float32 parity."""
    layer = LiftDownPool3d(2, 5, padding_mode="replicate", share_weights=False).double()
    _random_params(layer, 5)
    size = (2, 19, 26)
    _compare_up(layer, _bands(1, 2, size), size, 1e-12)
    x = torch.randn(1, 2, *size, dtype=torch.float64)
    low, det, _ = native.pool(x, layer.transforms, 3, ("LLL",), 1.0, False, True)
    assert det is not None
    back = native.reconstruct(dict(zip(band_names(3), [low, *det])), size, layer.transforms)
    assert rel_err(back, x) <= 1e-12
    size32 = (3, 17, 24)
    _compare_up(layer.float(), _bands(2, 2, size32, torch.float32), size32, 1e-5)


def test_3d_gradcheck_opcheck_and_layers() -> None:
    layer = LiftDownPool3d(2, 3, share_weights=False, bands="LLL", return_details=True).double()
    _random_params(layer)
    params = list(layer.parameters())

    def f(x: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, det, cons = native.pool(x, layer.transforms, 3, ("LLL", "HLH"), 0.75, True, True)
        assert det is not None and cons is not None
        return out, det[3], det[6], cons.c_u, cons.c_p

    x = torch.randn(2, 2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)
    bands = [b.requires_grad_(True) for b in _bands(2, 2, (3, 4, 3)).values()]

    def g(*ts: torch.Tensor) -> torch.Tensor:
        return native.reconstruct(dict(zip(band_names(3), ts[:8])), (3, 4, 3), layer.transforms)

    assert torch.autograd.gradcheck(g, (*bands, *params), eps=1e-6, atol=1e-8, rtol=1e-6)
    p = [q.detach().clone() for q in native._params(layer.transforms)]
    xd = x.detach()
    torch.library.opcheck(torch.ops.liftpool.down3d.default, (xd, p, 0, 255, 0.5, True, True))
    gout = torch.randn(2, 2, 2, 2, 2, dtype=torch.float64)
    cons = torch.tensor([0.3, 0.2], dtype=torch.float64)
    gdet = torch.randn(7, 2, 2, 2, 2, 2, dtype=torch.float64)
    torch.library.opcheck(torch.ops.liftpool.down3d_backward.default, (xd, p, gout, gdet, cons, 0, 9, 0.5))
    bd = [b.detach() for b in bands]
    torch.library.opcheck(torch.ops.liftpool.up3d.default, (bd, p, 3, 4, 3, 1))
    torch.library.opcheck(torch.ops.liftpool.up3d_backward.default, (bd, p, xd, 1))
    # the layers take the native kernel by default and LiftUpPool3d inverts LiftDownPool3d
    assert kernels.selected(xd, layer.transforms, 3) == "native"
    y, det = layer(xd)
    assert rel_err(LiftUpPool3d(layer)(y, det), xd) <= 1e-12
    with pytest.raises(RuntimeError, match="does not match"):
        torch.ops.liftpool.up3d(bd, p, 5, 4, 3, 1)


def test_3d_compile_and_determinism() -> None:
    layer = LiftDownPool3d(3, share_weights=False)
    x = torch.randn(3, 3, 6, 9, 8)

    def step(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, det, cons = native.pool(x, layer.transforms, 3, layer.bands, 0.125, True, True)
        assert det is not None and cons is not None
        return out, det[5], cons.c_u + cons.c_p

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    results = []
    old = torch.get_num_threads()
    try:
        for fn, threads in ((step, 1), (step, 2), (compiled, 1)):
            torch.set_num_threads(threads)
            layer.zero_grad(set_to_none=True)
            xg = x.clone().requires_grad_(True)
            out, d5, c = fn(xg)
            (out.square().sum() + d5.sum() + c).backward()
            results.append([out.detach(), d5.detach(), xg.grad, *[p.grad.clone() for p in layer.parameters()]])
    finally:
        torch.set_num_threads(old)
    for a, b, c in zip(*results):
        assert torch.equal(a, b)  # the same bits for 1 and 2 threads
        assert rel_err(c, a) <= 1e-6  # compiled (aot_eager: ATen decompositions around the ops)
