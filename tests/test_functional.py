"""The pure lifting maths: padding, split/merge, 1D lifting and its inverse, N-D decomposition."""

import numpy as np
import pytest
import torch

from liftpool import functional as LF
from liftpool.constants import band_names

NP_MODE = {"reflect": "reflect", "replicate": "edge", "zeros": "constant", "circular": "wrap"}


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros", "circular"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 9])
@pytest.mark.parametrize("pads", [(0, 1), (1, 1), (2, 2), (3, 0), (5, 4)])
@pytest.mark.parametrize("dim", [-1, -2])
def test_pad_axis_matches_numpy(mode, n, pads, dim):
    left, right = pads
    x = torch.randn(2, 3, n, n + 1, dtype=torch.float64)
    got = LF.pad_axis(x, dim, left, right, mode)
    np_mode = NP_MODE[mode]
    if mode == "reflect" and max(left, right) >= x.shape[dim]:
        np_mode = "edge"  # documented fallback: too short to reflect
    width = [(0, 0)] * 4
    width[dim] = (left, right)
    want = np.pad(x.numpy(), width, mode=np_mode)
    np.testing.assert_array_equal(got.numpy(), want)


@pytest.mark.parametrize("ndim", [1, 2, 3, 5, 6])
def test_pad_axis_any_rank(ndim):
    x = torch.randn(*([2] * (ndim - 1) + [5]), dtype=torch.float64)
    for mode in ["reflect", "replicate", "zeros", "circular"]:
        got = LF.pad_axis(x, -1, 2, 1, mode)
        width = [(0, 0)] * (ndim - 1) + [(2, 1)]
        np.testing.assert_array_equal(got.numpy(), np.pad(x.numpy(), width, mode=NP_MODE[mode]))


def test_pad_axis_errors():
    x = torch.randn(1, 1, 4)
    with pytest.raises(ValueError, match="padding_mode"):
        LF.pad_axis(x, -1, 1, 1, "symmetric")
    with pytest.raises(ValueError, match="pad widths"):
        LF.pad_axis(x, -1, -1, 1, "zeros")
    with pytest.raises(ValueError, match="out of range"):
        LF.pad_axis(x, 3, 1, 1, "zeros")


@pytest.mark.parametrize("n", [1, 2, 3, 8, 11])
def test_split_merge_roundtrip(n):
    x = torch.randn(3, n, 4)
    e, o = LF.split(x, 1)
    assert e.shape[1] == o.shape[1] == (n + 1) // 2
    torch.testing.assert_close(e, x[:, 0::2], rtol=0, atol=0)
    if n % 2:
        torch.testing.assert_close(o[:, -1], x[:, -1], rtol=0, atol=0)  # edge extension
    assert torch.equal(LF.merge(e, o, 1, n), x)


def test_split_empty_axis_raises():
    with pytest.raises(ValueError, match="empty axis"):
        LF.split(torch.randn(2, 0), -1)


def test_merge_rejects_bad_length():
    e = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="length"):
        LF.merge(e, e, -1, 4)
    with pytest.raises(ValueError, match="differ"):
        LF.merge(e, torch.zeros(1, 2), -1)


def test_lift_1d_inverse_is_exact_for_arbitrary_nonlinear_lifters():
    P1 = lambda t, dim: torch.sin(3 * t) + t.roll(1, dim)  # noqa: E731
    U1 = lambda t, dim: t.pow(2).tanh()  # noqa: E731
    P2 = lambda t, dim: 0.3 * t.exp().clamp(max=5)  # noqa: E731
    U2 = lambda t, dim: -t  # noqa: E731
    steps = [(P1, U1), (P2, U2)]
    for n in [1, 2, 5, 16]:
        x = torch.randn(2, 3, n, dtype=torch.float64)
        s, d, c = LF.lift_1d(x, -1, steps, scale=(0.7, 1.9), constraints=True)
        assert c is not None
        y = LF.unlift_1d(s, d, -1, steps, length=n, scale=(0.7, 1.9))
        assert (y - x).abs().max() <= 1e-12 * max(1.0, x.abs().max())


def test_lift_1d_constraints_definition():
    P = lambda t, dim: 0.5 * t  # noqa: E731
    U = lambda t, dim: 0.25 * t  # noqa: E731
    x = torch.tensor([1.0, 4.0, -2.0, 3.0, 5.0], dtype=torch.float64)
    xe = torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)
    xo = torch.tensor([4.0, 3.0, 5.0], dtype=torch.float64)  # last: edge extension
    d = xo - 0.5 * xe
    s = xe + 0.25 * d
    s2, d2, c = LF.lift_1d(x, 0, [(P, U)], constraints=True)
    torch.testing.assert_close(s2, s)
    torch.testing.assert_close(d2, d)
    torch.testing.assert_close(c.c_u, ((s - xo) ** 2).mean())
    torch.testing.assert_close(c.c_p, (d**2).mean())


def test_lift_1d_needs_steps():
    with pytest.raises(ValueError, match="at least one"):
        LF.lift_1d(torch.randn(4), 0, [])


@pytest.mark.parametrize("dims,shape", [(1, (2, 3, 7)), (2, (2, 3, 5, 6)), (3, (1, 2, 3, 4, 5))])
def test_decompose_reconstruct_per_transform_steps(dims, shape):
    n_t = 2**dims - 1
    steps = [[(lambda t, dim, a=i: a * 0.1 * t.tanh(), lambda t, dim, a=i: 0.05 * a * t)] for i in range(n_t)]
    x = torch.randn(*shape, dtype=torch.float64)
    bands, c = LF.decompose(x, dims, steps, constraints=True)
    assert tuple(bands) == band_names(dims)
    assert c is not None and c.c_u.ndim == 0
    y = LF.reconstruct(bands, shape[2:], steps)
    assert (y - x).abs().max() < 1e-12


def test_decompose_wrong_number_of_transforms():
    steps = [[(lambda t, d: t, lambda t, d: t)]] * 2
    with pytest.raises(ValueError, match="one Steps per 1D transform"):
        LF.decompose(torch.randn(1, 1, 4, 4), 2, steps)


def test_reconstruct_missing_band():
    P = lambda t, dim: t  # noqa: E731
    with pytest.raises(ValueError, match="missing"):
        LF.reconstruct({"LL": torch.zeros(1, 1, 2, 2)}, (4, 4), [(P, P)])
