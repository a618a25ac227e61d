"""The contract every learned or fixed pool of the zoo and of the peers keeps (``make_pool(name, C)``):
``ceil(n / 2)`` outputs on odd and tiny maps for any kernel size, float64 modules and inputs, the
input's dtype, channels_last, ``return_details``, gradients (gradcheck in float64) to the input and
every parameter, parameter counts that match the formula, and errors that name the argument."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from liftpool.pooling import make_pool
from liftpool.pooling.peers import PEERS
from liftpool.pooling.zoo import ZOO, pool_parameter_count

NAMES = (*ZOO, *PEERS)
SIZES = [(1, 1), (1, 5), (2, 2), (3, 2), (7, 7), (8, 6), (9, 12)]


def _make(name: str, channels: int, **kw):
    """The pool with every parameter live (LIP starts as average pooling unless ``zero_init=False``)."""
    if name == "lip":
        kw.setdefault("zero_init", False)
    return make_pool(name, channels, **kw)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_shape_odd_and_tiny_sizes(name, hw, train):
    pool = make_pool(name, 3).train(train)
    y = pool(torch.randn(2, 3, *hw))
    assert y.shape == (2, 3, (hw[0] + 1) // 2, (hw[1] + 1) // 2)
    assert torch.isfinite(y).all()


KERNEL_CASES = [
    *((name, k) for name in ("gated", "mixed", "gauss", "gfgp", "dpp", "s3") for k in (1, 3, 4)),
    ("softpool", 1), ("softpool", 3), ("softpool", 4), ("lip", 1), ("lip", 2), ("lip", 4), ("lip", 5),
    ("aps", 2), ("aps", 3), ("aps", 5), ("lps", 3),
]  # fmt: skip


@pytest.mark.parametrize(("name", "k"), KERNEL_CASES)
def test_other_kernel_sizes_keep_ceil_half(name, k):
    pool = make_pool(name, 2, kernel_size=k).eval()
    for hw in [(1, 1), (5, 6), (8, 7)]:
        assert pool(torch.randn(2, 2, *hw)).shape == (2, 2, (hw[0] + 1) // 2, (hw[1] + 1) // 2)


# --------------------------------------------------------------------------- dtypes, memory format
@pytest.mark.parametrize("name", NAMES)
def test_float64_module_and_input(name):
    pool = make_pool(name, 3, dtype=torch.float64).eval()
    assert all(p.dtype == torch.float64 for p in pool.parameters())
    assert pool(torch.randn(2, 3, 6, 5, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_dtype_follows_input(name):
    pool = make_pool(name, 3).eval()  # float32 parameters
    assert pool(torch.randn(2, 3, 6, 6, dtype=torch.float64)).dtype == torch.float64
    x = torch.randn(2, 3, 6, 6)
    assert pool(x).dtype == torch.float32
    yb = pool(x.to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and torch.isfinite(yb.float()).all()
    if name in ("softpool", "aps"):  # no learned scoring whose arg-max could flip in low precision
        torch.testing.assert_close(yb.float(), pool(x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_channels_last_matches_contiguous(name, train):
    pool = _make(name, 4).train(train)
    x = torch.randn(2, 4, 9, 8)
    torch.manual_seed(1)  # the same random draws (stochastic pools in training) for both layouts
    a = pool(x.to(memory_format=torch.channels_last))
    torch.manual_seed(1)
    torch.testing.assert_close(a, pool(x))


@pytest.mark.parametrize("name", [*ZOO, "softpool", "lip"])
def test_return_details_gives_pair(name):
    """Pools without details to give return ``(y, None)`` when asked (APS/LPS return their phases)."""
    y, details = make_pool(name, 2, return_details=True).eval()(torch.randn(2, 2, 5, 5))
    assert y.shape == (2, 2, 3, 3) and details is None


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_input_and_parameters(name):
    pool = make_pool(name, 3).train()
    x = torch.randn(2, 3, 7, 6, requires_grad=True)
    pool(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in pool.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    if name == "lps":  # the Gumbel-softmax sample carries the gradient to the scoring network
        assert all(p.grad.abs().sum() > 0 for p in pool.parameters())


GRAD_CASES = [
    ("mixed", {}, "train"), ("mixed", {"mode": "channel"}, "train"), ("mixed", {"kernel_size": 3}, "train"),
    ("gated", {}, "train"), ("gated", {"mode": "channel", "kernel_size": 3}, "train"),
    ("gauss", {"stochastic": "none"}, "train"), ("gauss", {}, "eval"),
    ("gfgp", {}, "train"), ("gfgp", {"activation": "softplus"}, "eval"), ("gfgp", {"kernel_size": 3}, "eval"),
    ("spectral", {}, "train"), ("wavelet", {}, "train"),
    ("dpp", {}, "train"), ("dpp", {"variant": "lite", "reward": "asymmetric"}, "train"),
    ("dpp", {"kernel_size": 3}, "train"),
    ("s3", {}, "eval"), ("s3", {"grid_size": 4}, "eval"),
    ("softpool", {}, "train"), ("softpool", {"kernel_size": 3}, "train"),
    ("lip", {"zero_init": False}, "train"), ("lip", {"zero_init": False, "kernel_size": 2}, "train"),
    ("aps", {}, "train"), ("aps", {"kernel_size": 3, "p": 1.0}, "train"),
    ("lps", {}, "train"), ("lps", {"kernel_size": 3, "tau": 0.5, "padding_mode": "zeros"}, "train"),
    ("lps", {}, "eval"),
]  # fmt: skip


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
        torch.manual_seed(7)  # the same random draws on every call (LPS's Gumbel noise in training)
        return functional_call(pool, ({**dict(zip(names, ps)), **buffers},), (x,))

    assert torch.autograd.gradcheck(f, (x, *params.values()), eps=1e-6, atol=1e-5)


# --------------------------------------------------------------------------- parameter counts
COUNT_CASES = [
    ("mixed", {}), ("mixed", {"mode": "channel"}), ("gated", {}), ("gated", {"mode": "channel"}),
    ("gated", {"kernel_size": 3}), ("gauss", {}), ("gauss", {"stochastic": "none"}), ("gauss", {"hidden": 5}),
    ("gfgp", {}), ("gfgp", {"hidden": 7}), ("spectral", {}), ("wavelet", {}), ("dpp", {}),
    ("dpp", {"variant": "lite"}), ("s3", {}),
    ("softpool", {}), ("lip", {}), ("lip", {"kernel_size": 2}), ("aps", {}), ("aps", {"kernel_size": 3}),
    ("lps", {}), ("lps", {"hidden": 5}), ("lps", {"kernel_size": 3}),
]  # fmt: skip


@pytest.mark.parametrize("name,kw", COUNT_CASES)
@pytest.mark.parametrize("channels", [1, 3, 64])
def test_parameter_count_formula_matches_built_layer(name, kw, channels):
    layer = make_pool(name, channels, **kw)
    actual = sum(p.numel() for p in layer.parameters())
    assert type(layer).num_parameters(channels, **kw) == actual == pool_parameter_count(name, channels, **kw)


def test_every_name_has_a_count_case():
    assert {name for name, _ in COUNT_CASES} == set(NAMES)
    assert {name for name, _, _ in GRAD_CASES} == set(NAMES)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("name", NAMES)
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
        ("softpool", {"kernel_size": 0}, ValueError, "kernel_size must be >= 1"),
        ("lip", {"coeff": 0.0}, ValueError, "coeff must be > 0"),
        ("lip", {"eps": -1.0}, ValueError, "eps must be > 0"),
        ("aps", {"p": 0}, ValueError, r"p \(the norm's order\) must be"),
        ("aps", {"padding_mode": "wrap"}, ValueError, "padding_mode must be one of"),
        ("lps", {"tau": 0.0}, ValueError, "tau must be > 0"),
        ("lps", {"hidden": 0}, ValueError, "hidden must be >= 1"),
        ("lps", {"kernel_size": 2.0}, TypeError, "kernel_size must be an int"),
        ("lps", {"bands": "LL"}, TypeError, "unknown keyword argument 'bands'"),
    ],
)
def test_bad_arguments(name, kw, exc, match):
    with pytest.raises(exc, match=match):
        make_pool(name, 4, **kw)
