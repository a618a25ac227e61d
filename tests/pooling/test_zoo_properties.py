"""The defining property of each zoo method, checked against hand computation or an
independent oracle (explicit loops, numpy FFT, PyWavelets, exhaustive enumeration)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liftpool.pooling import AvgDownPool2d, MaxDownPool2d, make_pool
from liftpool.pooling.zoo import (
    DPPool2d,
    GatedPool2d,
    GaussianPool2d,
    GFGPool2d,
    MixedPool2d,
    S3Pool2d,
    gaussian_pool2d,
    maxent_pool2d,
    spectral_pool2d,
    wavelet_pool2d,
)

from helpers import window_taps

SIZES = [(1, 1), (2, 3), (5, 5), (6, 7), (8, 8)]


# --------------------------------------------------------------------------- mixed / gated
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("hw", SIZES)
def test_mixed_weight_one_is_max_and_zero_is_avg(k, hw):
    x = torch.randn(2, 3, *hw)
    assert torch.equal(MixedPool2d(3, k, init=1.0)(x), MaxDownPool2d(3, k)(x))
    assert torch.equal(MixedPool2d(3, k, init=0.0)(x), AvgDownPool2d(3, k)(x))
    y = MixedPool2d(3, k, init=0.25)(x)
    torch.testing.assert_close(y, 0.25 * MaxDownPool2d(3, k)(x) + 0.75 * AvgDownPool2d(3, k)(x))


def test_mixed_per_channel_and_clamped_proportion():
    x = torch.randn(2, 2, 6, 6)
    pool = MixedPool2d(2, mode="channel")
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([1.7, -0.3]))  # clamped to [1, 0]
    y = pool(x)
    assert torch.equal(y[:, 0], F.max_pool2d(x, 2)[:, 0])
    assert torch.equal(y[:, 1], F.avg_pool2d(x, 2)[:, 1])


def test_gated_matches_hand_computed_gate():
    torch.manual_seed(3)
    pool = GatedPool2d(2, 3, mode="channel", dtype=torch.float64)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64)
    y = pool(x)
    for c in range(2):
        w = pool.weight[c, 0]
        for i, j, rows, cols in window_taps(x, 3):
            left = 1
            logit = sum(w[r - 2 * i + left, q - 2 * j + left] * x[0, c, r, q] for r in rows for q in cols)
            g = torch.sigmoid(logit)
            vals = x[0, c][rows][:, cols]
            expected = g * vals.max() + (1 - g) * vals.mean()
            torch.testing.assert_close(y[0, c, i, j], expected)


def test_gated_zero_mask_is_half_max_half_avg():
    pool = GatedPool2d(3)
    with torch.no_grad():
        pool.weight.zero_()
    x = torch.randn(2, 3, 7, 6)
    torch.testing.assert_close(
        pool(x), 0.5 * F.max_pool2d(x, 2, ceil_mode=True) + 0.5 * F.avg_pool2d(x, 2, ceil_mode=True)
    )


# --------------------------------------------------------------------------- Gaussian pooling
def test_gaussian_pool_functional_by_hand():
    x = torch.tensor([[[[1.0, 3.0, 0.0], [1.0, 3.0, 4.0]]]])
    # window 1: {1,3,1,3}: mean 2, std 1; window 2 (partial): {0,4}: mean 2, std 2
    y = gaussian_pool2d(x, torch.tensor(0.5))
    torch.testing.assert_close(y, torch.tensor([[[[2.5, 3.0]]]]))


def test_gaussian_pool_eval_is_mean_plus_softplus_mu_times_std():
    torch.manual_seed(0)
    pool = GaussianPool2d(4, dtype=torch.float64)
    x = torch.randn(3, 4, 8, 6, dtype=torch.float64)
    pool.train()(x)  # update running statistics
    pool.eval()
    y = pool(x)
    mu = F.avg_pool2d(x, 2)
    sd = (F.avg_pool2d(x * x, 2) - mu**2).clamp_min(1e-6).sqrt()
    eta = (y - mu) / sd
    # eta > 0 (output lies above the local mean) and one eta per sample and channel
    assert (eta > 0).all()
    torch.testing.assert_close(eta, eta[..., :1, :1].expand_as(eta))
    # ... equal to softplus of the estimated mean of the iSP-Gaussian
    z = pool.trunk(x, pool)
    torch.testing.assert_close(eta[..., 0, 0], F.softplus(pool.to_mean(z)))


@pytest.mark.parametrize("stochastic", ["element", "channel"])
def test_gaussian_pool_is_random_in_training_and_above_mean(stochastic):
    pool = GaussianPool2d(4, stochastic=stochastic).train()
    x = torch.randn(3, 4, 8, 8)
    a, b = pool(x), pool(x)
    assert not torch.equal(a, b)
    mu = F.avg_pool2d(x, 2)
    assert (a >= mu).all() and (b >= mu).all()
    eta = (a - mu) / (F.avg_pool2d(x * x, 2) - mu**2).clamp_min(1e-6).sqrt()
    per_channel = torch.allclose(eta, eta[..., :1, :1].expand_as(eta), rtol=1e-4, atol=1e-5)
    assert per_channel == (stochastic == "channel")


def test_gaussian_pool_without_noise_is_deterministic_in_training():
    pool = GaussianPool2d(4, stochastic="none").train()
    x = torch.randn(3, 4, 8, 8)
    assert torch.equal(pool(x), pool(x)) and pool.to_sigma is None


# --------------------------------------------------------------------------- GFGP
def test_maxent_pool_by_hand_and_limits():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    lam = torch.rand(2, 3, 1, 1, dtype=torch.float64) * 3
    y = maxent_pool2d(x, lam, 3)
    for n, c in itertools.product(range(2), range(3)):
        for i, j, rows, cols in window_taps(x, 3):
            v = x[n, c][rows][:, cols].flatten()
            w = torch.exp(lam[n, c, 0, 0] * v)
            torch.testing.assert_close(y[n, c, i, j], (w * v).sum() / w.sum())
    assert torch.allclose(maxent_pool2d(x, torch.tensor(0.0), 2), AvgDownPool2d(3)(x))
    assert torch.allclose(maxent_pool2d(x, torch.tensor(1e4), 2), MaxDownPool2d(3)(x))


def test_gfgp_output_between_local_mean_and_max_with_estimated_lambda():
    pool = GFGPool2d(6, dtype=torch.float64)
    x = 3 * torch.randn(4, 6, 9, 9, dtype=torch.float64)
    for mode in (True, False):
        pool.train(mode)
        y = pool(x)
        assert (y >= AvgDownPool2d(6)(x) - 1e-12).all() and (y <= MaxDownPool2d(6)(x) + 1e-12).all()
        lam = pool.lam(x)
        assert lam.shape == (4, 6, 1, 1) and ((lam > 0) & (lam < 1)).all()  # sigmoid
        torch.testing.assert_close(y, maxent_pool2d(x, lam, 2))


# --------------------------------------------------------------------------- spectral
def spectral_oracle(x: np.ndarray) -> np.ndarray:
    """Centred crop of the fftshift-ed spectrum, explicit conjugate symmetrisation, inverse."""
    H, W = x.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    X = np.fft.fftshift(np.fft.fft2(x) / (H * W))
    ch, cw = H // 2, W // 2  # index of frequency 0 after fftshift
    Z = X[ch - Ho // 2: ch - Ho // 2 + Ho, cw - Wo // 2: cw - Wo // 2 + Wo]  # freqs -floor(m/2) .. ceil(m/2)-1
    Z = np.fft.ifftshift(Z)
    mirror = np.conj(np.roll(Z[::-1, ::-1], 1, axis=(0, 1)))  # conj(Z[-k mod m])
    Zs = (Z + mirror) / 2
    y = np.fft.ifft2(Zs) * (Ho * Wo)
    assert np.abs(y.imag).max() < 1e-9
    return y.real


@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (3, 4), (5, 5), (6, 9), (8, 8), (12, 7)])
def test_spectral_pool_matches_numpy_oracle(hw):
    x = np.random.randn(*hw)
    y = spectral_pool2d(torch.tensor(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(y, spectral_oracle(x), atol=1e-12)


@pytest.mark.parametrize("hw", [(8, 8), (9, 7), (6, 10)])
def test_spectral_pool_keeps_low_frequencies_exactly(hw):
    H, W = hw
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    y = spectral_pool2d(x)
    X, Y = torch.fft.fft2(x, norm="forward"), torch.fft.fft2(y, norm="forward")
    for kh in range(-((Ho - 1) // 2), (Ho - 1) // 2 + 1):  # strictly below the output Nyquist
        for kw in range(-((Wo - 1) // 2), (Wo - 1) // 2 + 1):
            torch.testing.assert_close(Y[..., kh % Ho, kw % Wo], X[..., kh % H, kw % W])


def test_spectral_pool_resamples_a_band_limited_cosine():
    n = torch.arange(12, dtype=torch.float64)
    m = torch.arange(6, dtype=torch.float64)
    x = torch.cos(2 * math.pi * 2 * n / 12 + 0.3)[:, None] * torch.cos(2 * math.pi * 1 * n / 12 - 1.1)[None, :]
    y = spectral_pool2d(x[None, None])[0, 0]
    expected = torch.cos(2 * math.pi * 2 * m / 6 + 0.3)[:, None] * torch.cos(2 * math.pi * 1 * m / 6 - 1.1)[None, :]
    torch.testing.assert_close(y, expected)


def test_spectral_pool_output_nyquist_keeps_cosine_part_only():
    # frequency 2 of 8 samples is the Nyquist frequency of the 4-sample output. Only its bin -2
    # is kept, with amplitude exp(-i*phi)/2; keeping the real part of that self-conjugate bin
    # (Rippel et al.'s TreatCornerCases) gives cos(phi)/2 * (-1)^m: half the cosine part, no sine part.
    phi = 0.7
    n = torch.arange(8, dtype=torch.float64)
    x = torch.cos(2 * math.pi * 2 * n / 8 + phi).expand(1, 1, 8, 8)
    y = spectral_pool2d(x)[0, 0, 0]
    torch.testing.assert_close(y, math.cos(phi) / 2 * torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64))


# --------------------------------------------------------------------------- wavelet
@pytest.mark.parametrize("hw", [(4, 4), (8, 12), (9, 7), (5, 6), (3, 3), (2, 2), (1, 1), (7, 13)])
def test_wavelet_pool_matches_pywavelets_level2_approximation(hw):
    pywt = pytest.importorskip("pywt")
    x = np.random.rand(*hw)
    with np.testing.suppress_warnings() as sup:
        sup.filter(UserWarning)
        cA2 = pywt.wavedec2(x, "haar", mode="symmetric", level=2)[0]
    rec = pywt.idwt2((cA2, (None, None, None)), "haar", mode="symmetric")
    Ho, Wo = (hw[0] + 1) // 2, (hw[1] + 1) // 2
    y = wavelet_pool2d(torch.tensor(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(y, rec[:Ho, :Wo] / 2, atol=1e-12)  # orthonormal Haar gains 2 per inverse level


def test_wavelet_pool_of_haar_smooth_signal_is_its_level2_approximation():
    blocks = torch.randn(2, 3, 3, 2, dtype=torch.float64)  # piecewise constant on 4x4 blocks
    x = blocks.repeat_interleave(4, -2).repeat_interleave(4, -1)  # (2, 3, 12, 8)
    y = make_pool("wavelet", 3)(x)
    torch.testing.assert_close(y, blocks.repeat_interleave(2, -2).repeat_interleave(2, -1))
    # ...and it differs from average pooling when the signal is not 4x4-smooth
    z = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(wavelet_pool2d(z), F.avg_pool2d(z, 2))


# --------------------------------------------------------------------------- DPP
def dpp_by_hand(x, pool: DPPool2d):
    k = pool.kernel_size
    N, C, H, W = x.shape
    Ho, Wo = (H + 1) // 2, (W + 1) // 2
    box = torch.zeros(N, C, Ho, Wo, dtype=x.dtype)
    for i, j, rows, cols in window_taps(x, k):
        box[:, :, i, j] = x[:, :, rows][:, :, :, cols].mean(dim=(-1, -2))
    ref = box.clone()
    if pool.filter is not None:
        for i in range(Ho):
            for j in range(Wo):
                acc = 0
                for a in range(3):
                    for b in range(3):
                        ii, jj = min(max(i + a - 1, 0), Ho - 1), min(max(j + b - 1, 0), Wo - 1)
                        acc = acc + pool.filter[:, 0, a, b] * box[:, :, ii, jj]
                ref[:, :, i, j] = acc
    y = torch.zeros_like(box)
    for i, j, rows, cols in window_taps(x, k):
        for c in range(C):
            v = x[:, c][:, rows][:, :, cols].flatten(1)
            d = v - ref[:, c, i, j][:, None]
            if pool.reward == "asymmetric":
                d = d.clamp_min(0)
            w = pool.alpha[c] + torch.sqrt(d**2 + pool.eps**2) ** pool.lam[c]
            y[:, c, i, j] = (w * v).sum(1) / w.sum(1)
    return y


@pytest.mark.parametrize("variant", ["full", "lite"])
@pytest.mark.parametrize("reward", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("k", [2, 3])
def test_dpp_matches_the_paper_formula(variant, reward, k):
    torch.manual_seed(2)
    pool = DPPool2d(2, k, variant=variant, reward=reward, dtype=torch.float64)
    with torch.no_grad():
        pool.alpha.copy_(torch.tensor([0.3, 1.2]))
        pool.lam.copy_(torch.tensor([0.8, 2.5]))
        if pool.filter is not None:
            pool.filter.add_(0.05 * torch.randn_like(pool.filter))
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(pool(x), dpp_by_hand(x, pool))


@pytest.mark.parametrize("variant", ["full", "lite"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("hw", SIZES)
def test_dpp_lambda_zero_is_average_pooling(variant, k, hw):
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    pool = DPPool2d(3, k, variant=variant, lam=0.0, alpha=0.0, dtype=torch.float64)
    torch.testing.assert_close(pool(x), AvgDownPool2d(3, k)(x))


def test_dpp_asymmetric_large_lambda_approaches_max_pooling():
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    pool = DPPool2d(3, variant="lite", reward="asymmetric", alpha=0.0, lam=60.0, dtype=torch.float64)
    torch.testing.assert_close(pool(x), MaxDownPool2d(3)(x), atol=0.05, rtol=0)
    assert (pool(x) > AvgDownPool2d(3)(x)).all()


# --------------------------------------------------------------------------- S3Pool
def test_s3_random_in_training_deterministic_in_eval():
    pool = S3Pool2d(3, grid_size=4)
    x = torch.randn(2, 3, 16, 16)
    outs = [pool.train()(x) for _ in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    pool.eval()
    assert torch.equal(pool(x), pool(x))
    g = torch.Generator().manual_seed(5)
    a = S3Pool2d(3, grid_size=4, generator=g).train()(x)
    g.manual_seed(5)
    assert torch.equal(a, S3Pool2d(3, grid_size=4, generator=g).train()(x))


@pytest.mark.parametrize("grid_size", [2, 4, 6])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
def test_s3_samples_half_of_each_strip_in_order(grid_size, n):
    pool = S3Pool2d(1, 1, grid_size=grid_size)  # kernel 1: no max step, the sampled map is the input
    x = (torch.arange(n, dtype=torch.float64)[:, None] * 100 + torch.arange(n)[None, :]).expand(1, 1, n, n)
    for _ in range(5):
        y = pool.train()(x)[0, 0]
        rows, cols = (y[:, 0] // 100).long(), (y[0] % 100).long()
        for idx in (rows, cols):
            assert len(idx) == (n + 1) // 2
            assert torch.all(idx[1:] > idx[:-1])
            strips = idx // grid_size
            for s in strips.unique():
                length = min(grid_size, n - int(s) * grid_size)
                assert int((strips == s).sum()) == (length + 1) // 2


def test_s3_max_step_is_stride_one_max_pooling():
    x = torch.randn(1, 2, 6, 6)
    pool = S3Pool2d(2).train()
    y = pool(x)
    m = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
    # every output is a value of the stride-1 max map, taken from its own 2x2 cell
    for i in range(3):
        for j in range(3):
            cell = m[0, :, 2 * i: 2 * i + 2, 2 * j: 2 * j + 2].flatten(1)
            assert all((cell[c] == y[0, c, i, j]).any() for c in range(2))


@pytest.mark.parametrize("grid_size", [2, 4, 6])
@pytest.mark.parametrize("n", [1, 3, 6, 9])
def test_s3_eval_is_exact_expectation_of_training(grid_size, n):
    pool = S3Pool2d(1, 1, grid_size=grid_size)
    A = pool.expectation_matrix(n)
    # exhaustive enumeration of the draws, strip by strip
    expected = torch.zeros((n + 1) // 2, n, dtype=torch.float64)
    row = 0
    for start in range(0, n, grid_size):
        length = min(grid_size, n - start)
        picks = (length + 1) // 2
        combos = list(itertools.combinations(range(length), picks))
        for combo in combos:
            for j, r in enumerate(combo):
                expected[row + j, start + r] += 1 / len(combos)
        row += picks
    torch.testing.assert_close(A, expected)
    x = torch.randn(2, 1, n, n + 1, dtype=torch.float64)
    y = pool.eval()(x)
    torch.testing.assert_close(y, A @ x @ pool.expectation_matrix(n + 1).T)


def test_s3_grid2_eval_fast_path_equals_expectation_matrices():
    pool = S3Pool2d(2).eval()
    x = torch.randn(2, 2, 7, 10, dtype=torch.float64)
    m = F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
    torch.testing.assert_close(pool(x), pool.expectation_matrix(7) @ m @ pool.expectation_matrix(10).T)


def test_s3_monte_carlo_mean_approaches_eval_output():
    torch.manual_seed(0)
    pool = S3Pool2d(1, grid_size=4)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    mean = torch.stack([pool.train()(x) for _ in range(3000)]).mean(0)
    torch.testing.assert_close(mean, pool.eval()(x), atol=0.08, rtol=0)
