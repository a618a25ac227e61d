"""The native CPU LiftDownPool2d kernel (liftpool.kernels.native) against the eager path.

Every test compares the native kernel with the eager implementation of the same layer (outputs,
constraints, details, and the gradients w.r.t. x and every P/U parameter), or checks a property
(gradcheck, opcheck, determinism, exact reconstruction).  Skipped only when no C++ compiler exists;
a compiler with a failing build makes the tests fail.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from liftpool import LiftDownPool2d, LiftUpPool2d
from liftpool.kernels import native
from liftpool.kernels.eager import fast_pool as eager_pool
from liftpool.kernels.native import _build
from liftpool.layers import Details2d

from helpers import rel_err

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built here"
)

BANDS = ("LL", "LH", "HL", "HH")
PADDINGS: tuple[Any, ...] = ("reflect", "replicate", "zeros", "circular")


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    assert native.available(), f"native kernel failed to build: {native.build_info()['error']}"


def _run(
    pool_fn: Callable[..., Any],
    layer: LiftDownPool2d,
    x: torch.Tensor,
    *,
    training: bool = True,
    details: bool = True,
    seed: int = 1,
    **kw: Any,
) -> list[torch.Tensor]:
    """Outputs and gradients (x, every parameter) of one forward+backward with a random loss."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out, det, cons = pool_fn(x, layer.transforms, 2, layer.bands, layer.scale, training, details, **kw)
    gen = torch.Generator().manual_seed(seed)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    res = [out.detach()]
    if details:
        assert det is not None and len(det) == 3
        for d in det:
            loss = loss + (d * torch.randn(d.shape, generator=gen, dtype=d.dtype)).sum()
            res.append(d.detach())
    else:
        assert det is None
    if training:
        assert cons is not None
        loss = loss + 0.37 * cons.c_u + 0.61 * cons.c_p
        res += [cons.c_u.detach(), cons.c_p.detach()]
    else:
        assert cons is None
    loss.backward()
    res.append(x.grad)
    for p in layer.parameters():
        assert p.grad is not None
        res.append(p.grad.clone())
    return res


def _compare(layer: LiftDownPool2d, x: torch.Tensor, tol: float, **kw: Any) -> None:
    layout = kw.pop("layout", None)
    ref = _run(eager_pool, layer, x, **kw)
    got = _run(native.pool, layer, x, layout=layout, **kw)
    assert len(ref) == len(got)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, (i, a.shape, b.shape, a.dtype, b.dtype)
        err = rel_err(a, b)
        assert err <= tol, f"item {i} (shape {tuple(b.shape)}): rel err {err:.2e} > {tol:.0e}"


# ------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("H", range(1, 10))
def test_default_options_every_size(H: int) -> None:
    """Every H, W in 1..9 with the default layer, both layouts, float64."""
    layer = LiftDownPool2d(3).double()
    for W in range(1, 10):
        for layout in (1, 2):
            x = torch.randn(3, 3, H, W, dtype=torch.float64)
            _compare(layer, x, 1e-12, layout=layout)


_SIZES = [(1, 1), (2, 3), (4, 4), (5, 7), (9, 2), (6, 9)]
_CASES = list(itertools.product(PADDINGS, (True, False), (1, 2)))


@pytest.mark.parametrize(("padding", "share", "layout"), _CASES)
def test_option_matrix(padding: str, share: bool, layout: int) -> None:
    """Paddings x shared/unshared weights x layouts, over odd/tiny sizes, band subsets, scale, details."""
    band_sets: list[Any] = ["all", "LL", ("LH", "HH"), ("LL", "HL", "HH"), "HH", ("LL", "LH")]
    for i, (H, W) in enumerate(_SIZES):
        bands = band_sets[i % len(band_sets)]
        scale = (1.0, 0.25, -1.5)[i % 3]
        layer = LiftDownPool2d(4, 5, padding_mode=padding, share_weights=share, bands=bands, scale=scale).double()
        n = (1, 11, 9)[i % 3]
        x = torch.randn(n, 4, H, W, dtype=torch.float64)
        _compare(layer, x, 1e-12, layout=layout, details=i % 2 == 0)


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("layout", [1, 2])
def test_kernel_sizes_and_eval(k: int, layout: int) -> None:
    """Other tap counts (incl. K=1 and taps longer than the map), eval mode without constraints."""
    layer = LiftDownPool2d(2, k, padding_mode="reflect").double()
    for H, W in ((3, 3), (8, 6), (2, 13)):
        x = torch.randn(5, 2, H, W, dtype=torch.float64)
        _compare(layer, x, 1e-12, layout=layout, training=False, details=False)


def test_zero_init_and_56x56() -> None:
    layer = LiftDownPool2d(3, zero_init=True, scale=0.25).double()
    _compare(layer, torch.randn(2, 3, 56, 56, dtype=torch.float64), 1e-12)
    layer = LiftDownPool2d(3, share_weights=False).double()
    _compare(layer, torch.randn(2, 3, 56, 56, dtype=torch.float64), 1e-12)


@pytest.mark.parametrize("layout", [1, 2])
def test_float32(layout: int) -> None:
    layer = LiftDownPool2d(8, share_weights=False)
    for shape in ((9, 8, 56, 56), (3, 8, 7, 5), (1, 8, 16, 16)):
        _compare(layer, torch.randn(shape), 1e-5, layout=layout)


def test_shape_rule_picks_both_layouts() -> None:
    """The automatic layout (no ``layout=``) is checked at a small and a wide map."""
    layer = LiftDownPool2d(2).double()
    for shape in ((10, 2, 8, 8), (2, 2, 40, 34), (1, 2, 8, 8)):
        _compare(layer, torch.randn(shape, dtype=torch.float64), 1e-12)


# ------------------------------------------------------------------------ dtypes and layouts
def test_channels_last() -> None:
    layer = LiftDownPool2d(4).double()
    x = torch.randn(3, 4, 10, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    out, det, _ = native.pool(x, layer.transforms, 2, layer.bands, 1.0, True, True)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert det is not None and all(d.is_contiguous(memory_format=torch.channels_last) for d in det)
    _compare(layer, x, 1e-12)


def _exact(layer: LiftDownPool2d, x: torch.Tensor) -> list[torch.Tensor]:
    """The float64 result of the same layer and input (the reference for low-precision runs)."""
    import copy

    return _run(eager_pool, copy.deepcopy(layer).double(), x.double())


def _assert_close_as_eager(
    got: list[torch.Tensor], ref: list[torch.Tensor], exact: list[torch.Tensor], eps: float
) -> None:
    """Native is as close to the float64 result as eager (within 2x: summed gradients cancel), or within eps."""
    for i, (a, b, e) in enumerate(zip(got, ref, exact)):
        assert a.dtype == b.dtype, (i, a.dtype, b.dtype)
        err_native, err_eager = rel_err(a.double(), e), rel_err(b.double(), e)
        assert err_native <= max(2 * err_eager, eps), (i, err_native, err_eager)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_layer(dtype: torch.dtype) -> None:
    """A bfloat16/float16 layer: computed in float32 inside, the dtype out (eager rounds every op to the dtype)."""
    layer = LiftDownPool2d(4).to(dtype)
    x = torch.randn(2, 4, 9, 8).to(dtype)
    got, ref = _run(native.pool, layer, x), _run(eager_pool, layer, x)
    assert got[0].dtype == dtype
    _assert_close_as_eager(got, ref, _exact(layer, x), 1e-2 if dtype == torch.bfloat16 else 1.5e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast(dtype: torch.dtype) -> None:
    """Under autocast the native result has eager's dtype and is at least as accurate."""
    layer = LiftDownPool2d(4)
    x = torch.randn(3, 4, 12, 9)
    with torch.autocast("cpu", dtype=dtype):
        ref = _run(eager_pool, layer, x)
        got = _run(native.pool, layer, x)
    _assert_close_as_eager(got, ref, _exact(layer, x), 1e-5)


# ---------------------------------------------------------------------- autograd properties
def _op_args(
    x: torch.Tensor, params: list[torch.Tensor], padding: int, bands: int, details: bool, layout: int
) -> tuple[Any, ...]:
    return (x, params, padding, bands, 0.75, True, details, layout)


def _params(layer: LiftDownPool2d) -> list[torch.Tensor]:
    """The op's parameter list (the lifters' tensors), detached copies."""
    return [p.detach().clone() for p in native._params(layer.transforms)]


@pytest.mark.parametrize(
    ("H", "W", "padding", "layout"), [(1, 1, 0, 1), (2, 3, 1, 2), (5, 4, 2, 1), (3, 6, 3, 2), (7, 7, 0, 2)]
)
def test_gradcheck(H: int, W: int, padding: int, layout: int) -> None:
    layer = LiftDownPool2d(2, 3, share_weights=(H + W) % 2 == 0).double()
    x = torch.randn(3, 2, H, W, dtype=torch.float64, requires_grad=True)
    params = [p.requires_grad_(True) for p in _params(layer)]

    def f(x: torch.Tensor, *params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.liftpool.down2d(*_op_args(x, list(params), padding, 11, True, layout))  # type: ignore[no-any-return]

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize(("H", "W", "layout"), [(3, 4, 1), (2, 2, 2), (5, 3, 2)])
def test_gradcheck_through_pool(H: int, W: int, layout: int) -> None:
    """float64 gradcheck of ``native.pool`` itself (its eager autograd path, not the registered op)."""
    layer = LiftDownPool2d(2, 3, share_weights=H != 3).double()
    params = list(layer.parameters())

    def f(x: torch.Tensor, *ps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert all(p is q for p, q in zip(ps, params))
        out, det, cons = native.pool(x, layer.transforms, 2, ("LL", "HH"), 0.75, True, True, layout=layout)
        assert det is not None and cons is not None
        return (out, *det, cons.c_u, cons.c_p)

    x = torch.randn(3, 2, H, W, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize(("H", "W"), [(2, 2), (3, 4), (8, 7)])
def test_large_batch_small_maps(H: int, W: int) -> None:
    """Batches over one item's image group (up to 64 images at 2x2) with a partial last group, float64."""
    layer = LiftDownPool2d(2, share_weights=False).double()
    x = torch.randn(70, 2, H, W, dtype=torch.float64)
    _compare(layer, x, 1e-12, layout=2)


def test_opcheck() -> None:
    layer = LiftDownPool2d(3, 3, share_weights=False).double()
    params = _params(layer)
    for (H, W), details, layout in (((5, 6), True, 1), ((4, 3), False, 2)):
        x = torch.randn(2, 3, H, W, dtype=torch.float64)
        args = _op_args(x, params, 0, 15, details, layout)
        torch.library.opcheck(torch.ops.liftpool.down2d.default, args)
        xg = x.clone().requires_grad_(True)
        torch.library.opcheck(
            torch.ops.liftpool.down2d.default, (xg, [p.clone().requires_grad_(True) for p in params], *args[2:])
        )
        h, w = (H + 1) // 2, (W + 1) // 2
        gout = torch.randn(2, 3, h, w, dtype=torch.float64)
        gdet = torch.randn(3, 2, 3, h, w, dtype=torch.float64) if details else None
        bargs = (x, params, gout, gdet, torch.tensor([0.3, 0.2], dtype=torch.float64), 0, 15, 0.75, layout)
        torch.library.opcheck(torch.ops.liftpool.down2d_backward.default, bargs)


def _param_grads(layer: LiftDownPool2d, x: torch.Tensor, layout: int) -> list[torch.Tensor]:
    return _run(native.pool, layer, x, layout=layout)[-len(list(layer.parameters())) - 1 :]


@pytest.mark.parametrize("layout", [1, 2])
def test_deterministic_and_thread_independent(layout: int) -> None:
    """Gradients are the same bits run to run and for 1 and 2 threads."""
    layer = LiftDownPool2d(4, share_weights=False)
    x = torch.randn(19, 4, 20, 18)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = _param_grads(layer, x, layout)
        b = _param_grads(layer, x, layout)
        torch.set_num_threads(2)
        c = _param_grads(layer, x, layout)
    finally:
        torch.set_num_threads(old)
    for u, v, w in zip(a, b, c):
        assert torch.equal(u, v) and torch.equal(u, w)


def test_torch_compile_fullgraph() -> None:
    """Forward+backward under torch.compile(fullgraph=True) (aot_eager: dynamo, fake and autograd of the ops)."""
    layer = LiftDownPool2d(3, share_weights=False).double()
    x = torch.randn(4, 3, 9, 10, dtype=torch.float64)

    def step(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, det, cons = native.pool(x, layer.transforms, 2, layer.bands, 1.0, True, True)
        assert det is not None and cons is not None
        return out, det[2], cons.c_u, cons.c_p

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for fn_ in (step, compiled):
        layer.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_(True)
        outs = fn_(xg)
        (outs[0].sum() + outs[1].square().sum() + outs[2] + outs[3]).backward()
        if fn_ is step:
            ref = [*[o.detach() for o in outs], xg.grad, *[p.grad.clone() for p in layer.parameters()]]
        else:
            got = [*[o.detach() for o in outs], xg.grad, *[p.grad.clone() for p in layer.parameters()]]
    for a, b in zip(got, ref):
        assert rel_err(a, b) <= 1e-12


@pytest.mark.slow
def test_torch_compile_inductor() -> None:
    layer = LiftDownPool2d(3)
    x = torch.randn(4, 3, 16, 16)

    def step(x: torch.Tensor) -> torch.Tensor:
        out, _, cons = native.pool(x, layer.transforms, 2, layer.bands, 1.0, True, False)
        assert cons is not None
        return out.sum() + cons.c_u + cons.c_p

    compiled = torch.compile(step, fullgraph=True)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    step(xa).backward()
    compiled(xb).backward()
    assert xa.grad is not None and xb.grad is not None
    assert rel_err(xb.grad, xa.grad) <= 1e-5


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("layout", [1, 2])
def test_up_of_down_is_exact(layout: int) -> None:
    """LiftUpPool2d(down) inverts the native LL band and details exactly."""
    down = LiftDownPool2d(3, bands="LL", return_details=True, padding_mode="circular").double()
    up = LiftUpPool2d(down)
    x = torch.randn(9, 3, 11, 6, dtype=torch.float64)
    y, det, _ = native.pool(x, down.transforms, 2, down.bands, 1.0, False, True, layout=layout)
    assert det is not None
    back = up(y, Details2d(det[0], det[1], det[2], size=(11, 6)))
    assert rel_err(back, x) <= 1e-12


def test_tanh_approximation_accuracy() -> None:
    """The kernel's float32 tanh is within 5 float32 ulp of the exact tanh over [-12, 12] (measured 4.4
    in the -O3 build, whose Horner steps GCC contracts to FMAs); the -O1 sanitizer build has no
    contraction (GCC forms FMAs from -O2 on) and rounds each step twice: within 6.5 ulp (measured 6.0)."""
    bound = 6.5 if _build.sanitize_requested() else 5.0
    ext = _build.load_extension()
    v = torch.linspace(-12, 12, 400_001)
    got = ext.tanh_float(v).double()
    exact = torch.tanh(v.double())
    ulp = (torch.nextafter(exact.float().abs(), torch.tensor(2.0)) - exact.float().abs()).double()
    assert ((got - exact).abs() / ulp).max().item() <= bound
    assert torch.equal(ext.tanh_float(torch.tensor([0.0, -0.0])), torch.tensor([0.0, -0.0]))


def test_applicable() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert native.applicable(x, LiftDownPool2d(4).transforms, 2)
    assert native.applicable(x, LiftDownPool2d(4, share_weights=False).transforms, 2)
    assert not native.applicable(x, LiftDownPool2d(4, groups=(2, 4)).transforms, 2)
    assert not native.applicable(x, LiftDownPool2d.from_wavelet("haar", 4).transforms, 2)
    assert not native.applicable(x, LiftDownPool2d(4).transforms, 1)
    assert not native.applicable(x.to(torch.int32), LiftDownPool2d(4).transforms, 2)
    assert not native.applicable(torch.randn(0, 4, 8, 8), LiftDownPool2d(4).transforms, 2)
    assert not native.applicable(torch.randn(2, 4, 8, 8, device="meta"), LiftDownPool2d(4).transforms, 2)


def test_not_applicable_while_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 4, 8, 8)
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert not native.applicable(x, LiftDownPool2d(4).transforms, 2)


def test_bad_arguments_raise_clear_errors() -> None:
    layer = LiftDownPool2d(4)
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError, match="bands"):
        native.pool(x, layer.transforms, 2, ("LX",), 1.0, True, False)
    with pytest.raises(ValueError, match="layout"):
        native.pool(x, layer.transforms, 2, layer.bands, 1.0, True, False, layout=3)
    p = _params(layer)
    with pytest.raises(RuntimeError, match="channels"):
        torch.ops.liftpool.down2d(torch.randn(2, 3, 8, 8), p, 0, 15, 1.0, True, False, 1)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.liftpool.down2d(x.double(), p, 0, 15, 1.0, True, False, 1)
    with pytest.raises(RuntimeError, match="8, 24 or 56"):
        torch.ops.liftpool.down2d(x, p[:4], 0, 15, 1.0, True, False, 1)


def test_failed_build_warns_once_and_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing build: available() is False, one RuntimeWarning, build_info() names the error."""
    monkeypatch.setattr(_build, "STATE", _build.BuildState())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("simulated compiler failure")

    monkeypatch.setattr(_build, "_compile", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert native.available() is False
        assert native.available() is False
    msgs = [w for w in caught if issubclass(w.category, RuntimeWarning) and "native CPU kernel" in str(w.message)]
    assert len(msgs) == 1 and "simulated compiler failure" in str(msgs[0].message)
    info = native.build_info()
    assert info["active"] is False and "simulated compiler failure" in info["error"]


def test_build_info_and_cache_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    info = native.build_info()
    opt = "-O1" if _build.sanitize_requested() else "-O3"  # make sanitize: the ASan + UBSan build
    assert info["active"] and opt in info["cxx_flags"] and info["build_dir"]
    assert info["sanitize"] == _build.sanitize_requested()
    assert info["build_seconds"] is None or info["build_seconds"] > 0
    monkeypatch.setenv("LIFTPOOL_CACHE_DIR", str(tmp_path))
    assert _build.cache_root() == tmp_path
    key = _build.build_key()
    assert key == _build.build_key() and len(key) == 20
    monkeypatch.setattr(_build, "CXX_FLAGS", (*_build.CXX_FLAGS, "-DX"))
    assert _build.build_key() != key
    plain = _build.build_key()
    monkeypatch.setenv("LIFTPOOL_NATIVE_SANITIZE", "0" if _build.sanitize_requested() else "1")
    assert _build.build_key() != plain  # the sanitizer build never replaces the ordinary one
