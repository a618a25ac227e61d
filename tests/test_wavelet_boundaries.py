"""``from_wavelet(..., padding_mode=...)`` honours its padding mode.

The boundary samples of CDF 5/3 (the paper's Eq. 13-14) and Haar, for every padding mode,
against the equations written out sample by sample here.  The boundary extension acts on the
polyphase sequence the lifter reads (``x_e`` for the predictor, ``d`` for the updater), as
``liftpool.functional.pad_axis`` defines the modes: reflect mirrors without repeating the edge
sample, replicate repeats it, zeros pads 0, circular wraps around.  An odd-length signal is first
extended by one copy of its last sample (``liftpool.functional.split``).
"""

from __future__ import annotations

import pytest
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d
from liftpool.constants import PADDING_MODES

X8 = [3.0, -1.0, 4.0, 1.0, -5.0, 9.0, 2.0, 6.0]  # x_0 .. x_7, no symmetry
X7 = X8[:7]


def _ext_right(seq: list[float], mode: str) -> float:
    """The sample one past the right end of ``seq`` under ``mode``."""
    return {"reflect": seq[-2], "replicate": seq[-1], "zeros": 0.0, "circular": seq[0]}[mode]


def _ext_left(seq: list[float], mode: str) -> float:
    """The sample one before the left end of ``seq`` under ``mode``."""
    return {"reflect": seq[1], "replicate": seq[0], "zeros": 0.0, "circular": seq[-1]}[mode]


def eq13_14(x: list[float], mode: str) -> tuple[list[float], list[float]]:
    """CDF 5/3, the paper's Eq. 13-14, every sample including the boundaries:
    ``d_k = x_{2k+1} - (x_{2k} + x_{2k+2}) / 2`` (Eq. 13), ``s_k = x_{2k} + (d_{k-1} + d_k) / 4`` (Eq. 14)."""
    if len(x) % 2:
        x = x + [x[-1]]
    xe, xo = x[0::2], x[1::2]
    n = len(xe)
    xe_next = xe[1:] + [_ext_right(xe, mode)]  # x_{2k+2}; the last one comes from the padding
    d = [xo[k] - (xe[k] + xe_next[k]) / 2 for k in range(n)]
    d_prev = [_ext_left(d, mode)] + d[:-1]  # d_{k-1}; the first one comes from the padding
    s = [xe[k] + (d_prev[k] + d[k]) / 4 for k in range(n)]
    return s, d


def haar(x: list[float]) -> tuple[list[float], list[float]]:
    """Haar lifting: ``d_k = x_{2k+1} - x_{2k}``, ``s_k = x_{2k} + d_k / 2``; no sample outside is read."""
    if len(x) % 2:
        x = x + [x[-1]]
    d = [x[2 * k + 1] - x[2 * k] for k in range(len(x) // 2)]
    s = [x[2 * k] + d[k] / 2 for k in range(len(x) // 2)]
    return s, d


@pytest.mark.parametrize("x", [X8, X7], ids=["even", "odd"])
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_cdf53_boundaries_follow_the_padding_mode(x: list[float], mode: str) -> None:
    layer = LiftDownPool1d.from_wavelet("cdf53", 1, padding_mode=mode)
    assert layer.padding_mode == mode
    bands = layer.decompose(torch.tensor([[x]], dtype=torch.float64).float())
    s, d = eq13_14(x, mode)
    torch.testing.assert_close(bands.H[0, 0].double(), torch.tensor(d, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(bands.L[0, 0].double(), torch.tensor(s, dtype=torch.float64), atol=1e-6, rtol=0)


def test_the_modes_really_differ_at_the_boundary() -> None:
    """The oracle above is not mode-blind: the four modes give four different boundary values,
    so a layer that ignored ``padding_mode`` fails the test for three of them."""
    last_d = {m: eq13_14(X8, m)[1][-1] for m in PADDING_MODES}
    first_s = {m: eq13_14(X8, m)[0][0] for m in PADDING_MODES}
    assert len(set(last_d.values())) == 4 and len(set(first_s.values())) == 4


@pytest.mark.parametrize("x", [X8, X7], ids=["even", "odd"])
@pytest.mark.parametrize("mode", PADDING_MODES)
def test_haar_every_padding_mode(x: list[float], mode: str) -> None:
    layer = LiftDownPool1d.from_wavelet("haar", 1, padding_mode=mode)
    bands = layer.decompose(torch.tensor([[x]]))
    s, d = haar(x)
    torch.testing.assert_close(bands.H[0, 0], torch.tensor(d), atol=1e-6, rtol=0)
    torch.testing.assert_close(bands.L[0, 0], torch.tensor(s), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_cdf53_2d_boundaries_are_the_1d_equations_per_axis(mode: str) -> None:
    """2D from_wavelet: Eq. 13-14 along W for every row, then along H for every column."""
    g = torch.Generator().manual_seed(0)
    img = torch.randint(-9, 10, (6, 5), generator=g).double()
    layer = LiftDownPool2d.from_wavelet("cdf53", 1, padding_mode=mode).double()
    bands = layer.decompose(img[None, None])
    rows = [eq13_14(r.tolist(), mode) for r in img]  # W step: (s, d) per row
    lw = torch.tensor([r[0] for r in rows]).double()  # (6, 3): W-low
    hw = torch.tensor([r[1] for r in rows]).double()  # (6, 3): W-high
    for first, plane in (("L", lw), ("H", hw)):
        cols = [eq13_14(c.tolist(), mode) for c in plane.T]  # H step on each column
        low = torch.tensor([c[0] for c in cols]).double().T
        high = torch.tensor([c[1] for c in cols]).double().T
        torch.testing.assert_close(getattr(bands, first + "L")[0, 0], low, atol=1e-9, rtol=0)
        torch.testing.assert_close(getattr(bands, first + "H")[0, 0], high, atol=1e-9, rtol=0)
