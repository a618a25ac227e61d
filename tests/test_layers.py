"""LiftDownPool / LiftUpPool layers: exact inverse, sizes, gradients, parity, dtypes, errors."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import liftpool
from liftpool import (
    Bands2d,
    Details2d,
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
)
from liftpool import functional as LF
from liftpool.constants import band_names

from helpers import rel_err

DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}
MODES = ["reflect", "replicate", "zeros", "circular"]
SIZES = {
    1: [(1,), (2,), (3,), (8,), (11,)],
    2: [(1, 1), (2, 2), (7, 5), (1, 9), (6, 1), (4, 6)],
    3: [(1, 1, 1), (2, 3, 5), (4, 4, 3)],
}


def _roundtrip(dims, size, k, mode, share, dtype=torch.float64, batch=2, channels=3, memory=None, device="cpu"):
    down = DOWN[dims](channels, k, padding_mode=mode, share_weights=share, bands=band_names(dims)[0],
                      return_details=True, dtype=dtype, device=device)
    x = torch.randn(batch, channels, *size, dtype=dtype).to(device)
    if memory is not None:
        x = memory(x)
    with torch.no_grad():
        y, details = down(x)
        xr = UP[dims](down)(y, details)
    return x, xr


@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_up_of_down_is_exact_float64(dims, k, mode, share, device):
    for size in SIZES[dims]:
        if dims == 3 and k == 7 and size == (4, 4, 3):
            continue  # keeps the 3D sweep short; (2, 3, 5) covers K=7
        x, xr = _roundtrip(dims, size, k, mode, share, device=device)
        assert xr.device == x.device == torch.device(device)
        assert xr.shape == x.shape
        assert rel_err(xr, x) <= 1e-12, (size, k, mode, share)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_up_of_down_is_exact_float32(dims, mode, device):
    for size in SIZES[dims]:
        for share in (True, False):
            x, xr = _roundtrip(dims, size, 5, mode, share, dtype=torch.float32, device=device)
            assert rel_err(xr, x) <= 1e-5, (size, mode, share)


def test_roundtrip_channels_last_and_non_contiguous_inputs():
    down = LiftDownPool2d(4, return_details=True, bands="LL").double()
    base = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    variants = {
        "contiguous": base,
        "channels_last": base.contiguous(memory_format=torch.channels_last),
        "transposed": base.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": torch.randn(2, 4, 18, 7, dtype=torch.float64)[:, :, ::2].copy_(base),
    }
    ref, _ = down(base)
    for name, x in variants.items():
        y, det = down(x)
        assert torch.allclose(y, ref, rtol=0, atol=1e-13), name
        assert rel_err(LiftUpPool2d(down)(y, det), base) <= 1e-12, name
    channels_last = torch.randn(2, 4, 3, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last_3d)
    x, xr = channels_last, None
    d3 = LiftDownPool3d(4, return_details=True, bands="LLL").double()
    y, det = d3(x)
    xr = LiftUpPool3d(d3)(y, det)
    assert rel_err(xr, x) <= 1e-12


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), k=st.sampled_from([1, 3, 5, 7]),
    mode=st.sampled_from(MODES), share=st.booleans(), groups=st.sampled_from([None, 1, (2, 4), (4, 1)]),
)
def test_reconstruct_of_decompose_property(h, w, k, mode, share, groups):
    layer = LiftDownPool2d(4, k, padding_mode=mode, share_weights=share, groups=groups, dtype=torch.float64)
    x = torch.randn(1, 4, h, w, dtype=torch.float64)
    bands = layer.decompose(x)
    assert bands.size == (h, w)
    assert bands.LL.shape[2:] == ((h + 1) // 2, (w + 1) // 2)
    assert rel_err(layer.reconstruct(bands), x) <= 1e-12


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_output_size_is_ceil_half(dims, device, dtype):
    layer = DOWN[dims](2, device=device, dtype=dtype)
    for size in SIZES[dims]:
        y = layer(torch.randn(1, 2, *size, device=device, dtype=dtype))
        assert tuple(y.shape[2:]) == tuple((n + 1) // 2 for n in size)
        assert y.device == torch.device(device) and y.dtype == dtype


def test_pooled_output_is_sum_of_chosen_bands_times_scale(device, dtype, tol):
    layer = LiftDownPool2d(3, bands=("HH", "LL"), scale=0.5, device=device, dtype=dtype)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64).to(device, dtype)
    b = layer.decompose(x)
    assert layer.bands == ("LL", "HH")  # canonical order
    assert rel_err(layer(x), 0.5 * (b.LL + b.HH)) <= tol
    all_bands = LiftDownPool2d(3, device=device, dtype=dtype)
    all_bands.load_state_dict(layer.state_dict())
    assert rel_err(all_bands(x), b.LL + b.LH + b.HL + b.HH) <= tol


def test_zero_init_with_quarter_scale_is_average_pooling(device, dtype, tol):
    layer = LiftDownPool2d(5, zero_init=True, scale=0.25, device=device, dtype=dtype)
    x = torch.randn(2, 5, 8, 6, dtype=torch.float64).to(device, dtype)
    assert rel_err(layer(x), nn.functional.avg_pool2d(x, 2)) <= tol
    # and the all-band plain sum is 4x average pooling (the scale the spec documents)
    plain = LiftDownPool2d(5, zero_init=True, device=device, dtype=dtype)
    assert rel_err(plain(x), 4 * nn.functional.avg_pool2d(x, 2)) <= tol


def test_bands_are_oriented_as_named():
    """LH = low-pass along W, high-pass along H: a map varying only along H has LH != 0, HL == 0."""
    layer = LiftDownPool2d.from_wavelet("haar", 1).double()
    rows = torch.arange(8.0, dtype=torch.float64).pow(2).view(1, 1, 8, 1).expand(1, 1, 8, 8)
    b = layer.decompose(rows)
    assert b.HL.abs().max() == 0 and b.HH.abs().max() == 0
    assert b.LH.abs().max() > 0
    cols = rows.transpose(2, 3)
    b = layer.decompose(cols)
    assert b.LH.abs().max() == 0 and b.HH.abs().max() == 0
    assert b.HL.abs().max() > 0


@pytest.mark.parametrize("dims,size", [(1, (5,)), (2, (3, 4)), (3, (2, 3, 3))])
@pytest.mark.parametrize("share", [True, False])
def test_gradcheck_down_and_up(dims, size, share, device):
    torch.manual_seed(1)
    down = DOWN[dims](2, 3, share_weights=share, return_details=True, bands=band_names(dims)[:2], dtype=torch.float64,
                      device=device)
    up = UP[dims](down)
    x = torch.randn(1, 2, *size, dtype=torch.float64).to(device).requires_grad_(True)

    def f_down(inp):
        y, det = down(inp)
        return (y,) + tuple(det[:-1])

    assert torch.autograd.gradcheck(f_down, (x,), fast_mode=True)
    with torch.no_grad():
        y0, det0 = down(x)
    y0 = y0.clone().requires_grad_(True)
    details = [t.clone().requires_grad_(True) for t in det0[:-1]]

    def f_up(y, *dets):
        return up(y, type(det0)(*dets, size=det0.size))

    assert torch.autograd.gradcheck(f_up, (y0, *details), fast_mode=True)


def test_gradcheck_wrt_parameters():
    down = LiftDownPool2d(2, 3, dtype=torch.float64)
    names, params = zip(*down.named_parameters())
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64)

    def f(*ps):
        return torch.func.functional_call(down, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, tuple(p.detach().clone().requires_grad_(True) for p in params), fast_mode=True)


def test_module_equals_functional(device):
    layer = LiftDownPool2d(3, 5, share_weights=False, device=device).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64).to(device)
    steps = [t.steps for t in layer.transforms]
    bands, _ = LF.decompose(x, 2, steps)
    got = layer.decompose(x)
    for name in band_names(2):
        torch.testing.assert_close(getattr(got, name), bands[name], rtol=0, atol=1e-14)


def test_shared_weights_run_as_1xK_and_Kx1_kernels():
    """One P/U pair serves every 1D step: lifting along H equals lifting the transpose along W."""
    layer = LiftDownPool2d(3, 5).double()
    t = layer.transforms[0]
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    s_h, d_h, _ = t(x, -2)
    s_w, d_w, _ = t(x.transpose(2, 3), -1)
    torch.testing.assert_close(s_h, s_w.transpose(2, 3), rtol=0, atol=1e-14)
    torch.testing.assert_close(d_h, d_w.transpose(2, 3), rtol=0, atol=1e-14)


@pytest.mark.parametrize("share,n_pairs", [(True, 1), (False, 3)])
def test_parameter_count(share, n_pairs):
    c, k = 8, 5
    layer = LiftDownPool2d(c, k, share_weights=share)
    per_lifter = c * k + c + c + c  # K taps + 1x1 weights, plus their biases
    assert sum(p.numel() for p in layer.parameters()) == n_pairs * 2 * per_lifter
    grouped = LiftDownPool2d(c, k, groups=(2, 4))
    per = c * (c // 2) * k + c + c * (c // 4) + c
    assert sum(p.numel() for p in grouped.parameters()) == 2 * per
    assert sum(p.numel() for p in LiftDownPool3d(c, k, share_weights=False).parameters()) == 7 * 2 * per_lifter


def test_up_layer_shares_parameters_and_state_dict_roundtrip():
    class EncDec(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = LiftDownPool2d(4, bands="LL", return_details=True)
            self.mid = nn.Conv2d(4, 4, 3, padding=1)
            self.up = LiftUpPool2d(self.down)

        def forward(self, x):
            y, det = self.down(x)
            return self.up(self.mid(y), det)

    m = EncDec()
    ids = [id(p) for p in m.parameters()]
    assert len(ids) == len(set(ids)) == len(list(m.down.parameters())) + 2
    m2 = EncDec()
    m2.load_state_dict(m.state_dict())
    x = torch.randn(2, 4, 9, 10)
    torch.testing.assert_close(m2(x), m(x))
    assert m2.up.down is m2.down
    m3 = copy.deepcopy(m)
    assert m3.up.down is m3.down


def test_empty_batch(device, dtype):
    layer = LiftDownPool2d(3, return_details=True, device=device, dtype=dtype)
    y, det = layer(torch.randn(0, 3, 5, 5, device=device, dtype=dtype))
    assert y.shape == (0, 3, 3, 3)
    assert LiftUpPool2d(layer)(y, det).shape == (0, 3, 5, 5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_low_precision(dtype):
    layer = LiftDownPool2d(8, return_details=True, bands="LL")
    x = torch.randn(4, 8, 16, 16)
    ref, _ = layer(x)
    with torch.autocast("cpu", dtype=dtype):
        y, det = layer(x)
        xr = LiftUpPool2d(layer)(y, det)
    assert torch.isfinite(y).all() and torch.isfinite(xr).all()
    assert rel_err(y.float(), ref) < 3e-2
    assert rel_err(xr.float(), x) < 3e-2


def test_dtype_mismatch_gets_clear_error():
    with pytest.raises(TypeError, match="dtype"):
        LiftDownPool2d(2)(torch.randn(1, 2, 4, 4, dtype=torch.float64))


BAD_CTOR = [
    (dict(channels=0), ValueError, "channels"),
    (dict(channels=2.0), TypeError, "channels"),
    (dict(channels=2, kernel_size=4), ValueError, "odd"),
    (dict(channels=2, kernel_size=0), ValueError, "kernel_size"),
    (dict(channels=2, kernel_size=True), TypeError, "kernel_size"),
    (dict(channels=2, bands="LX"), ValueError, "unknown band"),
    (dict(channels=2, bands=()), ValueError, "empty"),
    (dict(channels=2, bands=("LL", "LL")), ValueError, "twice"),
    (dict(channels=2, bands=3), TypeError, "bands"),
    (dict(channels=2, padding_mode="symmetric"), ValueError, "padding_mode"),
    (dict(channels=4, groups=3), ValueError, "groups"),
    (dict(channels=4, groups=(2,)), TypeError, "groups"),
    (dict(channels=2, lambda_u=-1.0), ValueError, "lambda_u"),
    (dict(channels=2, stride=1), ValueError, "stride"),
    (dict(channels=2, scale=float("nan")), ValueError, "scale"),
]


@pytest.mark.parametrize("kwargs,exc,msg", BAD_CTOR)
def test_constructor_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        LiftDownPool2d(**kwargs)


def test_forward_errors():
    layer = LiftDownPool2d(3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        layer(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        layer(torch.randn(1, 4, 8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.ones(1, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer([[1.0]])
    with pytest.raises(ValueError, match="empty spatial"):
        layer(torch.randn(1, 3, 0, 4))
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        LiftDownPool3d(3)(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, L\)"):
        LiftDownPool1d(3)(torch.randn(1, 3, 8, 8))


def test_up_errors():
    down = LiftDownPool2d(3, bands="LL", return_details=True)
    up = LiftUpPool2d(down)
    y, det = down(torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="paired LiftDownPool2d"):
        LiftUpPool2d(LiftDownPool1d(3))
    with pytest.raises(TypeError, match="Details2d"):
        up(y, (det.LH, det.HL, det.HH, det.size))
    with pytest.raises(ValueError, match="does not match size"):
        up(y, det._replace(size=(16, 16)))
    with pytest.raises(ValueError, match="details.HH"):
        up(y, det._replace(HH=det.HH[:, :, :2]))
    with pytest.raises(ValueError, match="channels"):
        up(torch.randn(1, 2, 4, 4), det)
    with pytest.raises(ValueError, match="size must be a tuple of 2"):
        up(y, det._replace(size=(8,)))
    with pytest.raises(TypeError, match="Bands2d"):
        down.reconstruct({"LL": y})


def test_details_type_and_bands_type():
    down = LiftDownPool2d(2, return_details=True)
    x = torch.randn(1, 2, 5, 3)
    _, det = down(x)
    assert isinstance(det, Details2d) and det.size == (5, 3)
    assert isinstance(down.decompose(x), Bands2d)


def test_reset_parameters_and_repr():
    layer = LiftDownPool2d(4, zero_init=True)
    assert all(
        float(m.pw_weight.detach().abs().sum()) == 0 for m in layer.modules() if isinstance(m, liftpool.LearnedLifter)
    )
    layer.zero_init = False
    layer.reset_parameters()
    assert any(
        float(m.pw_weight.detach().abs().sum()) > 0 for m in layer.modules() if isinstance(m, liftpool.LearnedLifter)
    )
    assert "kernel_size=5" in repr(layer)
    assert "wavelet='cdf53'" in repr(LiftDownPool2d.from_wavelet("cdf53", 4))


def test_factory_kwargs():
    layer = LiftDownPool2d(4, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in layer.parameters())
