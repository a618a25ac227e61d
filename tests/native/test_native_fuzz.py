"""Seeded random-shape fuzz of the native kernels against the eager kernel.

Every case draws one configuration: LiftDownPool or LiftUpPool in 1D/2D/3D, train/eval, kernel
size, padding, shared/unshared lifters, a band subset, details, float32/float64, a contiguous,
channels_last or strided input, the 2D layout (shape rule, plane or images innermost), 1 or 2
threads, and random small sizes (odd, even, 1); it runs forward and backward through the native
kernel and the eager kernel and compares outputs, constraint terms and every gradient.

The normal test run draws ``LIFTPOOL_FUZZ_CASES`` cases (default 24, a few seconds);
``make sanitize`` runs many more under AddressSanitizer + UndefinedBehaviorSanitizer
(``LIFTPOOL_FUZZ_CASES``, ``LIFTPOOL_FUZZ_SEED`` choose the count and the seed).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d
from liftpool.constants import band_names
from liftpool.kernels import eager, native
from liftpool.kernels.native import _build

from helpers import rel_err

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built here"
)

CASES = int(os.environ.get("LIFTPOOL_FUZZ_CASES", "24"))
SEED = int(os.environ.get("LIFTPOOL_FUZZ_SEED", "0"))
DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
PADDINGS = ("reflect", "replicate", "zeros", "circular")
TOL = {torch.float32: 2e-4, torch.float64: 1e-10}
#: Absolute tolerance beside the relative one: a float32 parameter gradient that cancels to ~1e-4 of its
#: terms (e.g. a 2-sample map) differs by float32 rounding only (float64 agrees to 1e-12 there).
ATOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@dataclass(frozen=True)
class Case:
    dims: int
    up: bool
    training: bool
    kernel_size: int
    padding: str
    share: bool
    bands: tuple[str, ...]
    details: bool
    dtype: torch.dtype
    memory: str  # "contiguous", "channels_last" or "strided"
    layout: int | None
    threads: int
    n: int
    c: int
    size: tuple[int, ...]
    seed: int

    def __str__(self) -> str:
        kind = "up" if self.up else "down"
        return (
            f"{kind}{self.dims}d-{'train' if self.training else 'eval'}-K{self.kernel_size}-{self.padding}-"
            f"{'shared' if self.share else 'unshared'}-{'+'.join(self.bands)}-det{int(self.details)}-"
            f"{str(self.dtype)[6:]}-{self.memory}-layout{self.layout}-t{self.threads}-"
            f"{self.n}x{self.c}x{'x'.join(map(str, self.size))}"
        )


def draw(index: int, seed: int = SEED) -> Case:
    """The configuration of case ``index`` (the same for a given seed, whatever the case count)."""
    rng = random.Random(seed * 1_000_003 + index)
    dims = rng.choice((1, 2, 2, 3))
    names = band_names(dims)
    bands = tuple(n for n in names if rng.random() < 0.5) or (rng.choice(names),)
    max_size = {1: 40, 2: 30, 3: 9}[dims]
    size = tuple(rng.choice((1, 2, 3, rng.randint(1, max_size))) for _ in range(dims))
    memory = rng.choice(("contiguous", "channels_last", "strided") if dims > 1 else ("contiguous", "strided"))
    return Case(
        dims=dims,
        up=rng.random() < 0.35,
        training=rng.random() < 0.6,
        kernel_size=rng.choice((1, 3, 5, 7)),
        padding=rng.choice(PADDINGS),
        share=rng.random() < 0.5,
        bands=bands,
        details=rng.random() < 0.5,
        dtype=rng.choice((torch.float32, torch.float64)),
        memory=memory,
        layout=rng.choice((None, 1, 2)) if dims == 2 else None,
        threads=rng.choice((1, 2)),
        n=rng.choice((1, 2, rng.randint(1, 5))),
        c=rng.randint(1, 5),
        size=size,
        seed=rng.randrange(2**31),
    )


def _layer(case: Case) -> Any:
    layer = DOWN[case.dims](
        case.c,
        case.kernel_size,
        bands=case.bands,
        share_weights=case.share,
        padding_mode=case.padding,  # type: ignore[arg-type]
    ).to(case.dtype)
    gen = torch.Generator().manual_seed(case.seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.6)
    return layer


def _input(case: Case, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """A random tensor of ``shape``, channels_last when the case says so."""
    t = torch.randn(shape, generator=gen, dtype=case.dtype)
    if case.memory == "channels_last":
        return t.contiguous(memory_format=torch.channels_last if len(shape) == 4 else torch.channels_last_3d)
    return t


def _view(case: Case, leaf: torch.Tensor) -> torch.Tensor:
    """``leaf`` itself, or (strided case) the same values as every other element of a wider tensor."""
    if case.memory != "strided":
        return leaf
    wide = torch.stack((leaf, torch.zeros_like(leaf)), dim=-1).flatten(-2)
    view = wide[..., ::2]
    assert not view.is_contiguous() or view.numel() <= 1
    return view


def _grads(layer: Any, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    out = [torch.zeros_like(t) if t.grad is None else t.grad.clone() for t in leaves]
    # a lifter no output depends on has no eager gradient and zeros natively
    out += [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in layer.parameters()]
    return out


def _run_down(case: Case, layer: Any, x: torch.Tensor, use_native: bool) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    args = (layer.transforms, case.dims, layer.bands, layer.scale, case.training, case.details)
    if use_native:
        out, det, cons = native.pool(_view(case, leaf), *args, layout=case.layout)
    else:
        out, det, cons = eager.fast_pool(_view(case, leaf), *args)
    gen = torch.Generator().manual_seed(case.seed + 1)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    res = [out.detach()]
    if case.details:
        assert det is not None and len(det) == 2**case.dims - 1
        for d in det:
            loss = loss + (d * torch.randn(d.shape, generator=gen, dtype=d.dtype)).sum()
            res.append(d.detach())
    if case.training:
        assert cons is not None
        loss = loss + 0.37 * cons.c_u + 0.61 * cons.c_p
        res += [cons.c_u.detach(), cons.c_p.detach()]
    loss.backward()
    return res + _grads(layer, [leaf])


def _run_up(
    case: Case, layer: Any, bands: dict[str, torch.Tensor], use_native: bool
) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    leaves = {k: v.detach().clone(memory_format=torch.preserve_format).requires_grad_(True) for k, v in bands.items()}
    views = {k: _view(case, v) for k, v in leaves.items()}
    if use_native:
        out = native.reconstruct(views, case.size, layer.transforms, layout=case.layout)
    else:
        out = eager.fast_reconstruct(views, case.size, layer.transforms)
    gen = torch.Generator().manual_seed(case.seed + 2)
    (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum().backward()
    return [out.detach()] + _grads(layer, list(leaves.values()))


def check_case(case: Case) -> None:
    """Native == eager for one drawn case (raises AssertionError with the case in the message)."""
    layer = _layer(case)
    gen = torch.Generator().manual_seed(case.seed + 3)
    before = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    try:
        if case.up:
            half = tuple((s + 1) // 2 for s in case.size)
            bands = {b: _input(case, (case.n, case.c, *half), gen) for b in band_names(case.dims)}
            assert native.applicable(bands[band_names(case.dims)[0]], layer.transforms, case.dims), str(case)
            got = _run_up(case, layer, bands, True)
            ref = _run_up(case, layer, bands, False)
        else:
            x = _input(case, (case.n, case.c, *case.size), gen)
            assert native.applicable(x, layer.transforms, case.dims), str(case)
            got = _run_down(case, layer, x, True)
            ref = _run_down(case, layer, x, False)
    finally:
        torch.set_num_threads(before)
    assert len(got) == len(ref), str(case)
    for i, (a, b) in enumerate(zip(got, ref)):
        assert a.shape == b.shape and a.dtype == b.dtype, (str(case), i, a.shape, b.shape, a.dtype, b.dtype)
        err = rel_err(a, b)
        diff = (a - b).abs().max().item() if b.numel() else 0.0
        assert err <= TOL[case.dtype] or diff <= ATOL[case.dtype], (
            f"{case}: item {i} (shape {tuple(b.shape)}): rel err {err:.2e}, abs err {diff:.2e}"
        )


@pytest.fixture(scope="module", autouse=True)
def _built() -> None:
    assert native.available(), f"native kernel failed to build: {native.build_info()['error']}"


def test_draw_covers_the_option_matrix() -> None:
    """The draws reach every layer, padding, dtype, memory layout, 2D layout and thread count."""
    cases = [draw(i, seed=0) for i in range(400)]
    assert {(c.dims, c.up) for c in cases} == {(d, u) for d in (1, 2, 3) for u in (False, True)}
    assert {c.padding for c in cases} == set(PADDINGS)
    assert {c.kernel_size for c in cases} == {1, 3, 5, 7}
    assert {c.memory for c in cases} == {"contiguous", "channels_last", "strided"}
    assert {c.layout for c in cases if c.dims == 2} == {None, 1, 2}
    assert {c.threads for c in cases} == {1, 2} and {c.dtype for c in cases} == {torch.float32, torch.float64}
    assert {c.training for c in cases} == {c.details for c in cases} == {c.share for c in cases} == {False, True}
    assert any(1 in c.size for c in cases) and draw(7, seed=0) == draw(7, seed=0)


@pytest.mark.parametrize("index", range(CASES))
def test_native_fuzz(index: int) -> None:
    check_case(draw(index))
