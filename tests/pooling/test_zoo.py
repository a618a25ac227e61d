"""Contract tests shared by every pool of the zoo: shapes, dtypes, odd/tiny sizes, errors,
gradients (gradcheck, float64) and parameter counts."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from liftpool.pooling import POOLS, make_pool
from liftpool.pooling.zoo import (
    ZOO,
    DPPool2d,
    GatedPool2d,
    GaussianPool2d,
    GFGPool2d,
    MixedPool2d,
    S3Pool2d,
    SpectralPool2d,
    WaveletPool2d,
    pool_parameter_count,
)

CLASSES = {
    "gated": GatedPool2d, "mixed": MixedPool2d, "gauss": GaussianPool2d, "gfgp": GFGPool2d,
    "spectral": SpectralPool2d, "wavelet": WaveletPool2d, "dpp": DPPool2d, "s3": S3Pool2d,
}
WINDOWED = ("gated", "mixed", "gauss", "gfgp", "dpp", "s3")


def test_every_zoo_name_is_registered_to_its_class():
    assert set(ZOO) == set(CLASSES)
    for name, cls in CLASSES.items():
        assert POOLS[name] is cls
        assert isinstance(make_pool(name, 3), cls)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("hw", [(1, 1), (1, 5), (2, 2), (3, 2), (7, 7), (8, 6), (9, 12)])
def test_shape_odd_and_tiny_sizes(name, hw):
    pool = make_pool(name, 3).eval()
    x = torch.randn(2, 3, *hw)
    y = pool(x)
    assert y.shape == (2, 3, (hw[0] + 1) // 2, (hw[1] + 1) // 2)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ZOO)
def test_train_mode_shape(name):
    pool = make_pool(name, 4).train()
    y = pool(torch.randn(3, 4, 9, 6))
    assert y.shape == (3, 4, 5, 3) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", WINDOWED)
@pytest.mark.parametrize("k", [1, 3, 4])
def test_other_kernel_sizes_keep_ceil_half(name, k):
    pool = make_pool(name, 2, kernel_size=k).eval()
    for hw in [(1, 1), (5, 6), (8, 7)]:
        assert pool(torch.randn(2, 2, *hw)).shape == (2, 2, (hw[0] + 1) // 2, (hw[1] + 1) // 2)


@pytest.mark.parametrize("name", ZOO)
def test_dtype_float64_module_and_input(name):
    pool = make_pool(name, 3, dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in pool.parameters())
    y = pool(torch.randn(2, 3, 6, 5, dtype=torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize("name", ZOO)
def test_dtype_follows_input(name):
    pool = make_pool(name, 3).eval()  # float32 parameters
    assert pool(torch.randn(2, 3, 6, 6, dtype=torch.float64)).dtype == torch.float64
    assert pool(torch.randn(2, 3, 6, 6)).dtype == torch.float32
    yb = pool(torch.randn(2, 3, 6, 6).to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and torch.isfinite(yb.float()).all()


@pytest.mark.parametrize("name", ZOO)
def test_channels_last_matches_contiguous(name):
    pool = make_pool(name, 4).eval()
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(pool(x.to(memory_format=torch.channels_last)), pool(x))


@pytest.mark.parametrize("name", ZOO)
def test_return_details_gives_pair(name):
    y, details = make_pool(name, 2, return_details=True).eval()(torch.randn(2, 2, 5, 5))
    assert y.shape == (2, 2, 3, 3) and details is None


@pytest.mark.parametrize("name", tuple(POOLS))
def test_every_registered_pool_is_deterministic_in_eval(name):
    pool = make_pool(name, 4).eval()
    x = torch.randn(2, 4, 11, 10)
    with torch.no_grad():
        a, b = pool(x), pool(x)
    a = a[0] if isinstance(a, tuple) else a
    b = b[0] if isinstance(b, tuple) else b
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ZOO)
def test_backward_reaches_input_and_parameters(name):
    pool = make_pool(name, 3).train()
    x = torch.randn(2, 3, 7, 6, requires_grad=True)
    pool(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in pool.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


# --------------------------------------------------------------------------- gradcheck
GRAD_CASES = [
    ("mixed", {}, "train"), ("mixed", {"mode": "channel"}, "train"), ("mixed", {"kernel_size": 3}, "train"),
    ("gated", {}, "train"), ("gated", {"mode": "channel", "kernel_size": 3}, "train"),
    ("gauss", {"stochastic": "none"}, "train"), ("gauss", {}, "eval"),
    ("gfgp", {}, "train"), ("gfgp", {"activation": "softplus"}, "eval"), ("gfgp", {"kernel_size": 3}, "eval"),
    ("spectral", {}, "train"), ("wavelet", {}, "train"),
    ("dpp", {}, "train"), ("dpp", {"variant": "lite", "reward": "asymmetric"}, "train"),
    ("dpp", {"kernel_size": 3}, "train"),
    ("s3", {}, "eval"), ("s3", {"grid_size": 4}, "eval"),
]


@pytest.mark.parametrize("name,kw,mode", GRAD_CASES)
def test_gradcheck_input_and_parameters(name, kw, mode):
    torch.manual_seed(1)
    pool = make_pool(name, 2, dtype=torch.float64, **kw)
    pool.train(mode == "train")
    if name == "gauss" and mode == "eval":  # non-trivial running statistics
        with torch.no_grad():
            pool.to_mean[1].running_mean.uniform_(-1, 1)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in pool.named_parameters()}
    buffers = dict(pool.named_buffers())
    names = list(params)
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        out = functional_call(pool, ({**dict(zip(names, ps)), **buffers},), (x,))
        return out

    assert torch.autograd.gradcheck(f, (x, *params.values()), eps=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- parameter counts
COUNT_CASES = [
    ("mixed", {}), ("mixed", {"mode": "channel"}), ("gated", {}), ("gated", {"mode": "channel"}),
    ("gated", {"kernel_size": 3}), ("gauss", {}), ("gauss", {"stochastic": "none"}), ("gauss", {"hidden": 5}),
    ("gfgp", {}), ("gfgp", {"hidden": 7}), ("spectral", {}), ("wavelet", {}), ("dpp", {}),
    ("dpp", {"variant": "lite"}), ("s3", {}),
]


@pytest.mark.parametrize("name,kw", COUNT_CASES)
@pytest.mark.parametrize("channels", [1, 3, 64])
def test_parameter_count_formula_matches_built_layer(name, kw, channels):
    layer = make_pool(name, channels, **kw)
    actual = sum(p.numel() for p in layer.parameters())
    assert type(layer).num_parameters(channels, **kw) == actual == pool_parameter_count(name, channels, **kw)


def test_parameter_counts_for_64_channels_by_hand():
    # mixed: 1; gated: 2*2; gauss: h=32 -> 64*32 + 3*32 + 2*(32*64 + 3*64); gfgp: 2*64*32 + 3*32 + 3*64; dpp: 11*64
    expected = {"mixed": 1, "gated": 4, "gauss": 2048 + 96 + 2 * (2048 + 192), "gfgp": 4096 + 96 + 192,
                "spectral": 0, "wavelet": 0, "dpp": 704, "s3": 0, "max": 0, "avg": 0}
    assert {n: pool_parameter_count(n, 64) for n in expected} == expected


def test_parameter_count_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown pool 'nope'"):
        pool_parameter_count("nope", 4)
    with pytest.raises(TypeError, match="name must be a string"):
        pool_parameter_count(3, 4)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ZOO)
def test_bad_input_errors(name):
    pool = make_pool(name, 3)
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        pool([[1.0]])
    with pytest.raises(TypeError, match="floating-point"):
        pool(torch.ones(2, 3, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        pool(torch.randn(3, 4, 4))
    with pytest.raises(ValueError, match="channels=3"):
        pool(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="empty spatial axis"):
        pool(torch.randn(2, 3, 0, 4))


@pytest.mark.parametrize("name", ZOO)
def test_bad_channels(name):
    with pytest.raises(ValueError, match="channels must be >= 1"):
        make_pool(name, 0)
    with pytest.raises(TypeError, match="channels must be an int"):
        make_pool(name, 2.5)


@pytest.mark.parametrize(
    "name,kw,exc,match",
    [
        ("mixed", {"mode": "region"}, ValueError, "mode must be one of"),
        ("mixed", {"init": 1.5}, ValueError, r"init .* \[0, 1\]"),
        ("gated", {"mode": "pixel"}, ValueError, "mode must be one of"),
        ("gated", {"kernel_size": 0}, ValueError, "kernel_size must be >= 1"),
        ("gauss", {"stochastic": "yes"}, ValueError, "stochastic must be one of"),
        ("gauss", {"hidden": 0}, ValueError, "hidden must be >= 1"),
        ("gauss", {"eps": 0.0}, ValueError, "eps must be > 0"),
        ("gfgp", {"activation": "relu"}, ValueError, "activation must be one of"),
        ("gfgp", {"hidden": 2.0}, TypeError, "hidden must be an int"),
        ("spectral", {"kernel_size": 2}, ValueError, "kernel_size must be None"),
        ("wavelet", {"kernel_size": 3}, ValueError, "kernel_size must be 2"),
        ("dpp", {"variant": "medium"}, ValueError, "variant must be one of"),
        ("dpp", {"reward": "linear"}, ValueError, "reward must be one of"),
        ("dpp", {"alpha": -1.0}, ValueError, "alpha must be >= 0"),
        ("dpp", {"lam": float("nan")}, ValueError, "lam must be >= 0"),
        ("dpp", {"kernel_size": 2.0}, TypeError, "kernel_size must be an int"),
        ("s3", {"grid_size": 3}, ValueError, "grid_size must be an even int"),
        ("s3", {"grid_size": "2"}, TypeError, "grid_size must be an int"),
        ("s3", {"generator": 5}, TypeError, "generator must be a torch.Generator"),
    ],
)
def test_bad_arguments(name, kw, exc, match):
    with pytest.raises(exc, match=match):
        make_pool(name, 4, **kw)


@pytest.mark.parametrize("name", ["gauss", "gfgp"])
def test_batch_norm_estimators_need_two_samples_in_training(name):
    pool = make_pool(name, 4).train()
    with pytest.raises(ValueError, match="batch of >= 2"):
        pool(torch.randn(1, 4, 6, 6))
    assert pool.eval()(torch.randn(1, 4, 6, 6)).shape == (1, 4, 3, 3)
