"""Classic lifting wavelets through the same code path: the paper's Eq. 13-14 and PyWavelets.

Normalisation mapping (interior samples, PyWavelets ``mode="periodization"``):
our approximation has unit DC gain and our detail is ``x_o - prediction``, so per axis
``cA = sqrt(2) * s`` and ``cD = -d / sqrt(2)`` for haar, cdf53 (pywt ``bior2.2``) and
cdf97 (pywt ``bior4.4``). In 2D, pywt's ``(cA, (cH, cV, cD))`` map to
``(2*LL, -LH, -HL, HH/2)``: cH is low-pass along W and high-pass along H = our LH.
"""

import math

import numpy as np
import pytest
import pywt
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool2d, wavelet_transform

PYWT = {"haar": "haar", "cdf53": "bior2.2", "cdf97": "bior4.4"}
R2 = math.sqrt(2.0)


def paper_cdf53(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 13-14 of the paper, written out sample by sample (interior only)."""
    n = len(x) // 2
    d = np.full(n, np.nan)
    s = np.full(n, np.nan)
    for k in range(n - 1):
        d[k] = x[2 * k + 1] - (x[2 * k] + x[2 * k + 2]) / 2
    for k in range(1, n - 1):
        s[k] = x[2 * k] + (d[k - 1] + d[k]) / 4
    return s, d


def paper_haar(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = x[1::2] - x[0::2]
    return x[0::2] + d / 2, d


def test_cdf53_matches_paper_equations():
    x = np.random.randn(40)
    layer = LiftDownPool1d.from_wavelet("cdf53", 1, bands="L", return_details=True).double()
    s, det = layer(torch.tensor(x).view(1, 1, -1))
    s_ref, d_ref = paper_cdf53(x)
    np.testing.assert_allclose(det.H.view(-1).numpy()[:-1], d_ref[:-1], rtol=0, atol=1e-13)
    np.testing.assert_allclose(s.view(-1).numpy()[1:-1], s_ref[1:-1], rtol=0, atol=1e-13)


def test_haar_matches_paper_definition_everywhere():
    x = np.random.randn(2, 3, 16)
    layer = LiftDownPool1d.from_wavelet("haar", 3, bands="L", return_details=True).double()
    s, det = layer(torch.tensor(x))
    s_ref, d_ref = paper_haar(x.reshape(-1, 16).T)
    np.testing.assert_allclose(s.numpy().reshape(-1, 8).T, s_ref, atol=1e-14)
    np.testing.assert_allclose(det.H.numpy().reshape(-1, 8).T, d_ref, atol=1e-14)


def test_linear_signal_has_zero_cdf53_detail_and_preserves_running_average():
    x = 3.0 * np.arange(32) + 1.0
    t = wavelet_transform("cdf53").double()
    s, d, _ = t(torch.tensor(x).view(1, 1, -1), -1)
    assert np.abs(d.view(-1).numpy()[:-1]).max() < 1e-12
    # the update restores the running average: interior s_k equals x_2k for a linear signal
    np.testing.assert_allclose(s.view(-1).numpy()[1:-1], x[0::2][1:-1], atol=1e-12)


@pytest.mark.parametrize("name", ["haar", "cdf53", "cdf97"])
def test_1d_agrees_with_pywavelets_interior(name):
    x = np.random.randn(3, 64)
    t = wavelet_transform(name).double()
    s, d, _ = t(torch.tensor(x).unsqueeze(0), -1)
    s, d = s[0].numpy(), d[0].numpy()
    cA, cD = pywt.dwt(x, PYWT[name], mode="periodization", axis=-1)
    inner = slice(6, -6)
    np.testing.assert_allclose(cA[:, inner], R2 * s[:, inner], rtol=0, atol=1e-9)
    np.testing.assert_allclose(cD[:, inner], -d[:, inner] / R2, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["haar", "cdf53", "cdf97"])
def test_2d_agrees_with_pywavelets_dwt2_interior(name):
    x = np.random.randn(2, 40, 48)
    layer = LiftDownPool2d.from_wavelet(name, 2).double()
    b = layer.decompose(torch.tensor(x).unsqueeze(0))
    cA, (cH, cV, cD) = pywt.dwt2(x, PYWT[name], mode="periodization")
    inner = (slice(None), slice(6, -6), slice(6, -6))
    got = {k: getattr(b, k)[0].numpy() for k in ("LL", "LH", "HL", "HH")}
    np.testing.assert_allclose(cA[inner], 2 * got["LL"][inner], atol=1e-9)
    np.testing.assert_allclose(cH[inner], -got["LH"][inner], atol=1e-9)
    np.testing.assert_allclose(cV[inner], -got["HL"][inner], atol=1e-9)
    np.testing.assert_allclose(cD[inner], got["HH"][inner] / 2, atol=1e-9)


def test_haar_2d_equals_pywavelets_everywhere_and_inverts():
    """Haar needs no boundary samples: the agreement holds at every position."""
    x = np.random.randn(1, 3, 8, 10)
    layer = LiftDownPool2d.from_wavelet("haar", 3, bands="LL", return_details=True).double()
    y, det = layer(torch.tensor(x))
    cA, (cH, cV, cD) = pywt.dwt2(x, "haar", axes=(-2, -1))
    np.testing.assert_allclose(cA, 2 * y.numpy(), atol=1e-12)
    np.testing.assert_allclose(cH, -det.LH.numpy(), atol=1e-12)
    np.testing.assert_allclose(cD, det.HH.numpy() / 2, atol=1e-12)
    assert np.abs(LiftUpPool2d(layer)(y, det).numpy() - x).max() < 1e-13


def test_haar_3d_lll_is_block_mean():
    x = torch.randn(1, 2, 4, 6, 8, dtype=torch.float64)
    b = LiftDownPool3d.from_wavelet("haar", 2).double().decompose(x)
    torch.testing.assert_close(b.LLL, torch.nn.functional.avg_pool3d(x, 2), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", ["haar", "cdf53", "cdf97"])
def test_wavelet_roundtrip_odd_sizes(name):
    layer = LiftDownPool2d.from_wavelet(name, 2, bands="LL", return_details=True).double()
    for h, w in [(1, 1), (2, 3), (7, 5), (13, 1)]:
        x = torch.randn(1, 2, h, w, dtype=torch.float64)
        y, det = layer(x)
        assert (LiftUpPool2d(layer)(y, det) - x).abs().max() < 1e-12


def test_from_wavelet_has_no_parameters_and_rejects_unknown():
    assert sum(p.numel() for p in LiftDownPool2d.from_wavelet("cdf97", 4).parameters()) == 0
    with pytest.raises(ValueError, match="wavelet"):
        LiftDownPool2d.from_wavelet("db4", 4)
