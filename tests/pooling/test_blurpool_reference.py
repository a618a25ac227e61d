"""BlurPool2d against the published anti-aliased-CNN definition (Zhang 2019,
github.com/adobe/antialiased-cnns ``Downsample``): reflection padding of ``(k-1)//2`` on the left/top
and ``ceil((k-1)/2)`` on the right/bottom, the outer product of the binomial row ``C(k-1, j)``
normalised to sum 1, a depthwise convolution with stride 2.  Even sizes pad asymmetrically, so
they catch swapped left/right padding; odd sizes are included for completeness."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from liftpool.pooling import BlurPool2d


def zhang_downsample(x: torch.Tensor, filt_size: int, stride: int = 2) -> torch.Tensor:
    """Written out from the published ``Downsample.__init__`` / ``forward`` (pad_off=0, reflect)."""
    left = int(1.0 * (filt_size - 1) / 2)
    right = math.ceil(1.0 * (filt_size - 1) / 2)
    a = torch.tensor([math.comb(filt_size - 1, j) for j in range(filt_size)], dtype=x.dtype)
    filt = a[:, None] * a[None, :]
    filt = filt / filt.sum()
    c = x.shape[1]
    w = filt[None, None].repeat(c, 1, 1, 1)
    xp = F.pad(x, [left, right, left, right], mode="reflect")  # nn.ReflectionPad2d([l, r, t, b])
    return F.conv2d(xp, w, stride=stride, groups=c)


@pytest.mark.parametrize("k", [2, 4, 6, 3, 5])
@pytest.mark.parametrize("hw", [(8, 8), (9, 7), (12, 11)])
def test_blurpool_matches_the_published_downsample(k: int, hw: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 3, *hw, generator=g, dtype=torch.float64)
    ours = BlurPool2d(3, k).double()(x)
    ref = zhang_downsample(x, k)
    assert ours.shape == ref.shape == (2, 3, math.ceil(hw[0] / 2), math.ceil(hw[1] / 2))
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)


def test_even_filter_padding_is_asymmetric_the_published_way() -> None:
    """k = 2: pad 0 on the left, 1 on the right (reflect): output[i] = (x[2i] + x[2i+1]) / 2 per axis,
    and the last output of an odd axis averages x[n-1] with its reflection x[n-2]."""
    x = torch.tensor([[[[1.0, 2.0, 4.0, 8.0, 16.0]]]]).expand(1, 1, 3, 5).contiguous()
    y = BlurPool2d(1, 2)(x)
    assert y[0, 0, 0].tolist() == [1.5, 6.0, (16.0 + 8.0) / 2]
