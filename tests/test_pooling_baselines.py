"""The core's baseline poolings and the pool registry."""

import pytest
import torch
import torch.nn.functional as F

from liftpool.pooling import (
    AvgDownPool2d,
    BlurPool2d,
    MaxBlurPool2d,
    MaxDownPool2d,
    MaxUpBlurPool2d,
    MaxUpPool2d,
    SkipDownPool2d,
    available_pools,
    binomial_filter,
    make_pool,
    make_updown,
    register_pool,
)

CORE = ["max", "avg", "skip", "blur", "maxblur", "lift"]
SIZES = [(1, 1), (2, 2), (7, 5), (1, 9), (8, 8), (33, 32)]


@pytest.mark.parametrize("name", CORE)
def test_output_size_is_ceil_half(name):
    pool = make_pool(name, 3)
    for h, w in SIZES:
        y = pool(torch.randn(2, 3, h, w))
        assert y.shape == (2, 3, (h + 1) // 2, (w + 1) // 2), (name, h, w)


@pytest.mark.parametrize("name", ["max", "avg"])
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_max_avg_kernel_sizes_keep_ceil_half(name, k):
    pool = make_pool(name, 2, kernel_size=k)
    for h, w in SIZES:
        assert pool(torch.randn(1, 2, h, w)).shape[2:] == ((h + 1) // 2, (w + 1) // 2)


def test_max_and_avg_equal_torch_on_even_sizes():
    x = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(MaxDownPool2d(3)(x), F.max_pool2d(x, 2))
    torch.testing.assert_close(AvgDownPool2d(3)(x), F.avg_pool2d(x, 2))
    torch.testing.assert_close(MaxDownPool2d(3, 3)(x), F.max_pool2d(x, 3, 2, 1))


def test_binomial_filter_rows():
    torch.testing.assert_close(binomial_filter(1), torch.tensor([1.0], dtype=torch.float64))
    torch.testing.assert_close(binomial_filter(5), torch.tensor([1, 4, 6, 4, 1], dtype=torch.float64) / 16)


def test_blurpool_equals_zhang_definition():
    """Zhang 2019: reflect-pad, depthwise conv with outer(binomial, binomial), stride 2."""
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    a = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    filt = (a[:, None] * a[None, :] / 16).expand(2, 1, 3, 3)
    want = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), filt, stride=2, groups=2)
    torch.testing.assert_close(BlurPool2d(2, 3, dtype=torch.float64)(x), want)
    c = torch.full((1, 2, 7, 7), 3.0)
    torch.testing.assert_close(BlurPool2d(2, 5)(c), torch.full((1, 2, 4, 4), 3.0))  # DC gain 1


def test_maxblur_is_max_stride1_then_blur():
    x = torch.randn(1, 2, 8, 8)
    xp = F.pad(x, (0, 1, 0, 1), mode="replicate")
    torch.testing.assert_close(MaxBlurPool2d(2)(x), BlurPool2d(2)(F.max_pool2d(xp, 2, 1)))


def test_skip_is_a_learned_strided_conv():
    pool = SkipDownPool2d(4, 3)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(pool(x), F.conv2d(x, pool.conv.weight, pool.conv.bias, stride=2, padding=1))
    assert sum(p.numel() for p in pool.parameters()) == 4 * 4 * 9 + 4


def test_max_unpool_places_values_at_argmax():
    down = MaxDownPool2d(2, return_details=True)
    x = torch.rand(2, 2, 7, 6) + 0.5  # positive, so max-pooling the unpooled map recovers y
    y, det = down(x)
    up = MaxUpPool2d(down)(y, det)
    assert up.shape == x.shape
    nz = up != 0
    torch.testing.assert_close(up[nz], x[nz])  # kept values sit where they came from
    assert int(nz.sum()) == y.numel()
    torch.testing.assert_close(F.max_pool2d(up, 2, ceil_mode=True), y)


def test_max_unpool_blur_is_blur_of_unpool():
    down = MaxDownPool2d(2, return_details=True)
    y, det = down(torch.randn(1, 2, 6, 6))
    want = BlurPool2d(2, 3, stride=1)(MaxUpPool2d(down)(y, det))
    torch.testing.assert_close(MaxUpBlurPool2d(down)(y, det), want)


@pytest.mark.parametrize("name", ["max", "maxblur", "lift"])
def test_make_updown_shapes(name):
    down, up = make_updown(name, 3)
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w)
        y, det = down(x)
        assert up(y, det).shape == x.shape


@pytest.mark.parametrize("name", ["skip", "blur", "avg", "maxblur"])
def test_gradcheck_baselines(name):
    pool = make_pool(name, 2).double()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pool, (x,), fast_mode=True)


def test_registry_errors_and_registration():
    assert set(CORE) <= set(available_pools())
    with pytest.raises(ValueError, match="unknown pool"):
        make_pool("median", 3)
    with pytest.raises(TypeError, match="string"):
        make_pool(None, 3)
    with pytest.raises(ValueError, match="unknown up/down"):
        make_updown("avg", 3)
    with pytest.raises(ValueError, match="already registered"):
        register_pool("max")(AvgDownPool2d)


@pytest.mark.parametrize("name", CORE)
def test_bad_input_errors(name):
    pool = make_pool(name, 3)
    with pytest.raises(ValueError, match="channels"):
        pool(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError):
        pool(torch.randn(3, 8, 8))
    with pytest.raises(TypeError):
        pool(torch.ones(1, 3, 8, 8, dtype=torch.int32))


def test_constructor_errors():
    with pytest.raises(ValueError, match="kernel_size"):
        MaxDownPool2d(3, 0)
    with pytest.raises(TypeError, match="channels"):
        BlurPool2d("3")
    with pytest.raises(ValueError, match="groups"):
        SkipDownPool2d(4, groups=3)
    with pytest.raises(ValueError, match="stride"):
        BlurPool2d(3, stride=3)
    with pytest.raises(TypeError, match="MaxDownPool2d"):
        MaxUpPool2d(AvgDownPool2d(3))
