"""The fast path (liftpool.kernels.eager) against the paper-literal reference (liftpool.testing.reference).

Same outputs, bands, constraint terms and gradients for 1D/2D/3D, shared and separate
weights, every padding mode, odd and tiny sizes, grouped convolutions, both memory
formats, with and without the chunked recomputation; exact up-pooling.
"""

import pytest
import torch

import liftpool
from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool1d, LiftUpPool2d, LiftUpPool3d
from liftpool.constants import band_names
from liftpool.kernels import eager as _fast
from liftpool.testing.reference import (
    ReferenceLiftDownPool2d,
    ReferenceLiftUpPool2d,
    reference_of,
)

from helpers import rel_err

DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}
MODES = ["reflect", "replicate", "zeros", "circular"]
SIZES = {
    1: [(1,), (2,), (7,), (10,)],
    2: [(1, 1), (2, 2), (7, 5), (1, 9), (6, 4), (5, 8)],
    3: [(1, 1, 1), (3, 4, 5), (2, 2, 2)],
}


@pytest.fixture
def recompute(monkeypatch):
    """Force the chunked recomputation with one sample per chunk."""

    def set_mode(mode: str) -> None:
        monkeypatch.setattr(_fast, "RECOMPUTE", mode)
        monkeypatch.setattr(_fast, "CHUNK_BYTES", 1)
        monkeypatch.setattr(_fast, "RECOMPUTE_MIN_BYTES", 0)

    return set_mode


def _compare(fast, ref, x, *, tol=1e-10, details=False):
    """Forward, constraints and gradients of ``fast`` and ``ref`` on ``x`` (float64)."""
    xf = x.detach().clone().requires_grad_()
    xr = x.detach().clone().requires_grad_()
    fast.train()
    ref.train()
    of, orr = fast(xf), ref(xr)
    if details:
        (yf, df), (yr, dr) = of, orr
        assert df.size == dr.size
        for a, b in zip(df[:-1], dr[:-1]):
            assert a.shape == b.shape
            assert rel_err(a, b) <= tol
    else:
        yf, yr = of, orr
    assert yf.shape == yr.shape
    assert rel_err(yf, yr) <= tol
    for a, b in zip(fast.constraints, ref.constraints):
        assert abs(float(a.detach()) - float(b.detach())) <= tol * max(1.0, abs(float(b.detach())))
    g = torch.randn_like(yf)
    lf = (yf * g).sum() + fast.lifting_loss()
    lr = (yr * g).sum() + ref.lifting_loss()
    if details:
        lf = lf + sum((t * t).sum() for t in df[:-1])
        lr = lr + sum((t * t).sum() for t in dr[:-1])
    lf.backward()
    lr.backward()
    assert rel_err(xf.grad, xr.grad) <= tol
    for (name, pf), (_, pr) in zip(fast.named_parameters(), ref.named_parameters()):
        assert pf.grad is not None and pr.grad is not None, name
        assert rel_err(pf.grad, pr.grad) <= tol, name


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_fast_matches_literal_forward_constraints_and_gradients(dims, mode, share):
    torch.manual_seed(dims * 10 + MODES.index(mode))
    for size in SIZES[dims]:
        fast = DOWN[dims](3, 5, padding_mode=mode, share_weights=share, dtype=torch.float64)
        ref = reference_of(fast)
        assert fast._fast() and not ref._fast()
        _compare(fast, ref, torch.randn(2, 3, *size, dtype=torch.float64))


@pytest.mark.parametrize("groups", [(1, 1), (2, 4), (4, 2)])
@pytest.mark.parametrize("share", [True, False])
def test_fast_matches_literal_with_grouped_convolutions(groups, share):
    torch.manual_seed(1)
    fast = LiftDownPool2d(4, 3, groups=groups, share_weights=share, dtype=torch.float64)
    _compare(fast, reference_of(fast), torch.randn(2, 4, 7, 6, dtype=torch.float64))


@pytest.mark.parametrize("bands", ["LL", ("LH", "HH"), ("HL",), "all"])
def test_fast_matches_literal_band_subsets_scale_and_details(bands):
    torch.manual_seed(2)
    fast = LiftDownPool2d(3, bands=bands, scale=0.25, return_details=True, dtype=torch.float64)
    _compare(fast, reference_of(fast), torch.randn(2, 3, 9, 7, dtype=torch.float64), details=True)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_fast_matches_literal_other_kernel_sizes(k):
    torch.manual_seed(k)
    fast = LiftDownPool2d(2, k, share_weights=False, dtype=torch.float64)
    _compare(fast, reference_of(fast), torch.randn(3, 2, 11, 10, dtype=torch.float64))


def test_decompose_bands_match_literal_3d_and_1d():
    torch.manual_seed(3)
    for dims, size in ((1, (9,)), (2, (7, 10)), (3, (3, 5, 4))):
        fast = DOWN[dims](2, share_weights=False, dtype=torch.float64)
        ref = reference_of(fast)
        x = torch.randn(2, 2, *size, dtype=torch.float64)
        bf, br = fast.decompose(x), ref.decompose(x)
        for name in band_names(dims):
            assert rel_err(getattr(bf, name), getattr(br, name)) <= 1e-12, (dims, name)
        # and the reconstructions of both paths agree with x
        assert rel_err(fast.reconstruct(bf), x) <= 1e-12
        assert rel_err(ref.reconstruct(br), x) <= 1e-12


@pytest.mark.parametrize("mode", ["always", "auto"])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_chunked_recomputation_gives_the_same_values_and_gradients(recompute, mode, dims):
    recompute(mode)
    torch.manual_seed(4)
    fast = DOWN[dims](3, share_weights=False, dtype=torch.float64)
    x = torch.randn(5, 3, *SIZES[dims][2], dtype=torch.float64, requires_grad=True)
    assert _fast.recompute_chunks(x, fast.transforms) == 5
    _compare(fast, reference_of(fast), x)


def test_chunked_recomputation_with_details(recompute):
    recompute("always")
    torch.manual_seed(5)
    fast = LiftDownPool2d(3, bands=("LL", "HH"), return_details=True, dtype=torch.float64)
    _compare(fast, reference_of(fast), torch.randn(3, 3, 7, 8, dtype=torch.float64), details=True)


def test_recompute_policy(monkeypatch):
    layer = LiftDownPool2d(4)
    big = torch.randn(64, 4, 64, 64)  # 4 MiB
    monkeypatch.setattr(_fast, "RECOMPUTE", "auto")
    monkeypatch.setattr(_fast, "RECOMPUTE_MIN_BYTES", 2 * 2**20)
    monkeypatch.setattr(_fast, "CHUNK_BYTES", 2**20)
    assert _fast.recompute_chunks(big, layer.transforms) == 4  # the parameters need gradients
    assert _fast.recompute_chunks(big[:4], layer.transforms) == 0  # small input: keep intermediates
    with torch.no_grad():
        assert _fast.recompute_chunks(big, layer.transforms) == 0
    layer.requires_grad_(False)
    assert _fast.recompute_chunks(big, layer.transforms) == 0
    assert _fast.recompute_chunks(big.requires_grad_(), layer.transforms) == 4
    monkeypatch.setattr(_fast, "RECOMPUTE", "never")
    assert _fast.recompute_chunks(big, layer.transforms) == 0
    monkeypatch.setattr(_fast, "RECOMPUTE", "sometimes")
    with pytest.raises(ValueError, match="RECOMPUTE"):
        _fast.recompute_chunks(big, layer.transforms)


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_output_memory_format_follows_input_and_values_match(fmt):
    torch.manual_seed(6)
    fast = LiftDownPool2d(4, return_details=True).double()
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    if fmt == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    y, det = fast(x)
    yr, detr = reference_of(fast)(x)
    assert rel_err(y, yr) <= 1e-12
    for t in (y, *det[:-1]):
        if fmt == "channels_last":
            assert t.is_contiguous(memory_format=torch.channels_last)
        else:
            assert t.is_contiguous()
    xr = LiftUpPool2d(fast)(fast.decompose(x).LL, det)
    assert rel_err(xr, x) <= 1e-12
    assert xr.is_contiguous(memory_format=torch.channels_last) if fmt == "channels_last" else xr.is_contiguous()


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_up_pool_fast_matches_literal_and_is_exact(dims):
    torch.manual_seed(7)
    size = SIZES[dims][2]
    fast = DOWN[dims](3, bands=band_names(dims)[0], return_details=True, share_weights=False, dtype=torch.float64)
    ref = reference_of(fast)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    y, det = fast(x)
    det = type(det)(*(t.detach() for t in det[:-1]), size=det.size)
    up_f = UP[dims](fast)
    up_r = type(up_f).__new__(type(up_f))  # the literal inverse shares the reference layer's weights
    torch.nn.Module.__init__(up_r)
    up_r.down = ref
    yy = y.detach().requires_grad_()
    a = up_f(yy, det)
    b = up_r(y.detach(), det)
    assert rel_err(a, x) <= 1e-12
    assert rel_err(a, b) <= 1e-12
    # gradients of the up-pooling w.r.t. its weights match the literal path too
    g = torch.randn_like(a)
    (a * g).sum().backward()
    ref.zero_grad()
    (up_r(y.detach(), det) * g).sum().backward()
    for pf, pr in zip(fast.parameters(), ref.parameters()):
        assert rel_err(pf.grad, pr.grad) <= 1e-10


def test_reference_up_pool_class_pairs_with_reference_down():
    down = ReferenceLiftDownPool2d(2, bands="LL", return_details=True).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    y, det = down(x)
    assert rel_err(ReferenceLiftUpPool2d(down)(y, det), x) <= 1e-12
    with pytest.raises(TypeError, match="ReferenceLiftDownPool2d"):
        ReferenceLiftUpPool2d(LiftDownPool2d(2))


def test_reference_of_errors_and_weight_sharing():
    with pytest.raises(TypeError, match="LiftDownPool"):
        reference_of(torch.nn.Conv2d(2, 2, 1))
    with pytest.raises(TypeError, match="LiftDownPool2d"):
        ReferenceLiftDownPool2d.from_layer(LiftDownPool1d(2))
    layer = LiftDownPool2d(2)
    shared = reference_of(layer, share=True)
    copied = reference_of(layer)
    assert next(shared.parameters()) is next(layer.parameters())
    assert next(copied.parameters()) is not next(layer.parameters())
    assert torch.equal(next(copied.parameters()), next(layer.parameters()))


def test_wavelet_layers_take_the_literal_path():
    layer = LiftDownPool2d.from_wavelet("haar", 1)
    assert not layer._fast()
    x = torch.arange(16.0).view(1, 1, 4, 4)
    b = layer.decompose(x)
    assert torch.allclose(b.LL, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_fast_path_float32_and_bfloat16_close_to_literal():
    torch.manual_seed(8)
    fast = LiftDownPool2d(8)
    x = torch.randn(4, 8, 12, 11)
    assert rel_err(fast(x), reference_of(fast)(x)) <= 1e-5
    fb = LiftDownPool2d(8).to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    assert rel_err(fb(xb).float(), reference_of(fb)(xb).float()) <= 3e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = fast(x)
        yra = reference_of(fast)(x)
    assert rel_err(ya.float(), yra.float()) <= 3e-2


def test_no_grad_and_frozen_inputs_work():
    layer = LiftDownPool2d(2)
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        y = layer(x)
    assert not y.requires_grad
    # a training-mode forward under no_grad still records its constraint terms (without a graph)
    recorded = layer.constraints
    assert recorded is not None and not recorded.c_u.requires_grad and not recorded.c_p.requires_grad
    loss = liftpool.lifting_loss(layer)
    assert torch.isfinite(loss) and float(loss) > 0 and not loss.requires_grad
    layer.eval()
    assert layer(x).requires_grad  # parameters still need gradients
    assert layer.constraints is recorded  # an eval-mode forward records nothing
    assert float(liftpool.lifting_loss(layer)) == float(loss)


def test_gradcheck_fast_path_with_recomputation(recompute):
    recompute("always")
    torch.manual_seed(9)
    layer = LiftDownPool2d(2, 3, share_weights=False, dtype=torch.float64)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))
