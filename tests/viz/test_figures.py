"""Every figure writer produces a valid PNG; the pool capture finds the first pooling layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from liftpool import LiftDownPool2d
from liftpool.pooling import MaxDownPool2d
from liftpool.viz import (
    capture_first_pool,
    colorize_labels,
    plot_consistency_vs_accuracy,
    plot_metric_per_type,
    plot_pooled_feature_maps,
    plot_segmentation_overlays,
    plot_subbands,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _valid_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 50 and im.size[1] > 50
        return im.size


def _net(pool: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), pool, nn.Conv2d(4, 4, 3, padding=1), MaxDownPool2d(4))


def test_capture_first_pool_and_subbands(tmp_path: Path) -> None:
    lift = LiftDownPool2d(4)
    net = _net(lift)
    x = torch.rand(1, 3, 12, 12)
    cap = capture_first_pool(net, x)
    assert cap.module is lift and cap.name == "1"
    assert cap.input.shape == (1, 4, 12, 12) and cap.output.shape == (1, 4, 6, 6)
    bands = lift.decompose(cap.input)
    # the pooled output is the sum of the four bands (default bands="all")
    assert torch.allclose(bands.LL + bands.LH + bands.HL + bands.HH, cap.output, atol=1e-6)
    p = plot_subbands(bands, tmp_path / "sub" / "fig3.png", image=x[0], feature=cap.input)
    _valid_png(p)
    assert not list((tmp_path / "sub").glob(".*tmp"))  # no temp file left behind
    with pytest.raises(ValueError, match="channels"):
        plot_subbands(bands, tmp_path / "x.png", channels=[9])
    with pytest.raises(ValueError, match="no down-pooling"):
        capture_first_pool(nn.Conv2d(3, 3, 1), x)


def test_pooled_feature_maps(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 16, 16)
    maxcap = capture_first_pool(_net(MaxDownPool2d(4)), x)
    liftcap = capture_first_pool(_net(LiftDownPool2d(4)), x)
    ll = liftcap.module.decompose(liftcap.input).LL
    _valid_png(
        plot_pooled_feature_maps({"MaxPool": maxcap.output, "LiftDownPool (LL)": ll}, tmp_path / "fig7.png", image=x[0])
    )
    with pytest.raises(ValueError, match="at least one"):
        plot_pooled_feature_maps({}, tmp_path / "y.png")


def test_metric_bars_and_consistency_scatter(tmp_path: Path) -> None:
    ce = {"max": {"gaussian_noise": 0.5, "fog": 0.3}, "lift": {"gaussian_noise": 0.4, "fog": 0.25}}
    _valid_png(plot_metric_per_type(ce, tmp_path / "fig9.png", ylabel="CE (%)"))
    _valid_png(plot_consistency_vs_accuracy({"max": (0.9, 0.8), "lift": (0.91, 0.88)}, tmp_path / "fig4.png"))
    with pytest.raises(ValueError):
        plot_metric_per_type({}, tmp_path / "z.png", ylabel="x")


def test_segmentation_overlays(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 18, 24, generator=g)
    gt = torch.randint(0, 11, (2, 18, 24), generator=g)
    gt[:, :3] = 255
    preds = {
        name: torch.randint(0, 11, (2, 18, 24), generator=g) for name in ("MaxUnpool", "MaxUnpool+Blur", "LiftUpPool")
    }
    w, h = _valid_png(
        plot_segmentation_overlays(imgs, preds, gt, tmp_path / "fig5.png", class_names=[f"c{i}" for i in range(11)])
    )
    assert w > h  # five columns, two rows
    with pytest.raises(ValueError, match="same non-zero length"):
        plot_segmentation_overlays(imgs, {"a": preds["LiftUpPool"][:1]}, gt, tmp_path / "bad.png")


def test_colorize_labels() -> None:
    lab = np.array([[0, 3], [255, 20]])
    rgb = colorize_labels(lab)
    assert rgb.shape == (2, 2, 3)
    assert np.allclose(rgb[0, 0], np.array([128, 128, 128]) / 255) and np.allclose(
        rgb[0, 1], np.array([128, 64, 128]) / 255
    )
    assert np.allclose(rgb[1, 0], 0)  # void is black
    assert rgb[1, 1].sum() > 0  # a class past the palette still gets a colour
