"""Behaviour pinned where only a repr (or nothing) pinned it.

* the default ``kernel_size=5``: a LiftDownPool's predictor/updater reads exactly 5 neighbouring
  samples (an impulse moves exactly 5 outputs; ``kernel_size=3`` moves 3);
* the letter order of the eight 3D bands (W step, H step, D step), against a Haar 3D written out
  by hand on a 2x2x2 cube.
"""

from __future__ import annotations

import pytest
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d
from liftpool.layers import Bands3d, Details3d


def _support(lifter: torch.nn.Module, n: int = 21) -> list[int]:
    """Positions of the lifter's output that change when one input sample (the middle) changes."""
    x = torch.zeros(1, lifter.channels, n)
    bump = x.clone()
    bump[..., n // 2] = 1.0
    with torch.no_grad():
        diff = (lifter(bump, -1) - lifter(x, -1)).abs().amax(dim=(0, 1))
    return [i - n // 2 for i in range(n) if diff[i] > 1e-7]


def _positive(lifter: torch.nn.Module) -> torch.nn.Module:
    # all taps positive and no bias: ReLU passes the impulse, tanh is strictly increasing
    with torch.no_grad():
        lifter.weight.fill_(0.1)
        lifter.bias.zero_()
        lifter.pw_weight.fill_(1.0)
        lifter.pw_bias.zero_()
    return lifter


@pytest.mark.parametrize("layer_cls", [LiftDownPool1d, LiftDownPool2d, LiftDownPool3d])
def test_default_kernel_size_is_five_taps(layer_cls: type) -> None:
    layer = layer_cls(2)  # defaults
    for t in layer.transforms:
        for lifter in (*t.P, *t.U):
            assert _support(_positive(lifter)) == [-2, -1, 0, 1, 2]
    narrow = layer_cls(2, 3)
    assert _support(_positive(narrow.transforms[0].P[0])) == [-1, 0, 1]


def test_default_kernel_size_sets_the_reach_of_the_pooled_output() -> None:
    """End to end: an impulse at an even input sample 2m moves the details d_{m-2..m+2} (P reads
    +-2 even samples) and then the approximations s_{m-4..m+4} (U reads +-2 details): the pooled
    output moves up to 4 positions away with 5 taps, 2 with 3 taps."""

    def reach(layer: LiftDownPool1d, n: int = 41) -> int:
        for t in layer.transforms:
            for p in t.P:
                _positive(p)
            for u in t.U:  # the details fall where the bump raised P: negative taps let them through the ReLU
                with torch.no_grad():
                    _positive(u).weight.fill_(-0.1)
        x = torch.zeros(1, 2, n)
        bump = x.clone()
        bump[..., n // 2] = 1.0  # n // 2 = 20: an even sample
        with torch.no_grad():
            diff = (layer(bump) - layer(x)).abs().amax(dim=(0, 1))
        moved = [i for i in range(diff.numel()) if diff[i] > 1e-7]
        return max(abs(i - n // 4) for i in moved)

    assert reach(LiftDownPool1d(2).eval()) == 4
    assert reach(LiftDownPool1d(2, 3).eval()) == 2


def test_3d_band_letters_against_a_hand_computed_haar_cube() -> None:
    # x[d, h, w]: powers of two, so every band is a distinct number
    cube = torch.tensor([[[1.0, 2.0], [4.0, 8.0]], [[16.0, 32.0], [64.0, 128.0]]])
    layer = LiftDownPool3d.from_wavelet("haar", 1)
    bands = layer.decompose(cube[None, None])
    # Haar per axis: L = (x_0 + x_1) / 2, H = x_1 - x_0.  Letters: W step, H step, D step.
    expected = {
        "LLL": (1 + 2 + 4 + 8 + 16 + 32 + 64 + 128) / 8,
        # H along W (w=1 minus w=0), mean over h and d
        "HLL": ((2 - 1) + (8 - 4) + (32 - 16) + (128 - 64)) / 4,
        # H along H (h=1 minus h=0), mean over w and d
        "LHL": ((4 - 1) + (8 - 2) + (64 - 16) + (128 - 32)) / 4,
        # H along D (d=1 minus d=0), mean over w and h
        "LLH": ((16 - 1) + (32 - 2) + (64 - 4) + (128 - 8)) / 4,
        # H along W and H, mean over d: ((x11 - x10) - (x01 - x00)) averaged over the two d slices
        "HHL": (((8 - 4) - (2 - 1)) + ((128 - 64) - (32 - 16))) / 2,
        # H along W and D, mean over h
        "HLH": (((32 - 16) - (2 - 1)) + ((128 - 64) - (8 - 4))) / 2,
        # H along H and D, mean over w
        "LHH": (((64 - 16) - (4 - 1)) + ((128 - 32) - (8 - 2))) / 2,
        # H along all three
        "HHH": ((128 - 64) - (32 - 16)) - ((8 - 4) - (2 - 1)),
    }
    assert Bands3d._fields[:8] == ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")
    for name, value in expected.items():
        assert getattr(bands, name).item() == pytest.approx(value), name
    assert len(set(expected.values())) == 8
    # the details a LiftUpPool3d receives carry the same seven bands under the same names
    y, det = LiftDownPool3d.from_wavelet("haar", 1, bands="LLL", return_details=True)(cube[None, None])
    assert isinstance(det, Details3d) and y.item() == pytest.approx(expected["LLL"])
    for name in Details3d._fields[:7]:
        assert getattr(det, name).item() == pytest.approx(expected[name]), name
