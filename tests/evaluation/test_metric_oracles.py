"""Metrics pinned against hand computations and published constants.

* frequency-weighted IoU = sum_c (ground-truth frequency of c) * IoU_c, by hand;
* crop-mode shift consistency cuts its windows centred in the image (a position-reading model);
* corruption strengths: the published CIFAR-10-C / ImageNet-C parameters of the noise,
  brightness, contrast and impulse corruptions, measured on flat / two-level images.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from liftpool.evaluation.corruptions import corrupt_array
from liftpool.evaluation.metrics import ConfusionMatrix
from liftpool.evaluation.runners import evaluate_shift_consistency


# --------------------------------------------------------------------------- frequency-weighted IoU
def test_frequency_weighted_iou_by_hand() -> None:
    # ground truth: 6 pixels of class 0, 3 of class 1, 1 of class 2 (10 labelled, 2 void)
    target = torch.tensor([[0, 0, 0, 0, 0, 0], [1, 1, 1, 2, 255, 255]])
    pred = torch.tensor([[0, 0, 0, 0, 1, 2], [1, 1, 2, 2, 0, 1]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, target)
    s = cm.compute()
    # by hand (void pixels skipped): class 0: TP 4, FN 2 (-> 1, 2), FP 0        -> IoU 4/6
    #                                 class 1: TP 2, FN 1 (-> 2), FP 1 (from 0) -> IoU 2/4
    #                                 class 2: TP 1, FN 0, FP 2 (from 0 and 1)  -> IoU 1/3
    iou = [4 / 6, 2 / 4, 1 / 3]
    assert s.iou == pytest.approx(iou)
    # weighted by the GROUND-TRUTH frequency 6/10, 3/10, 1/10 (predicted frequency would be 4/10, 3/10, 3/10)
    assert s.frequency_weighted_iou == pytest.approx(0.6 * iou[0] + 0.3 * iou[1] + 0.1 * iou[2])
    assert s.frequency_weighted_iou != pytest.approx(0.4 * iou[0] + 0.3 * iou[1] + 0.3 * iou[2])
    assert s.miou == pytest.approx(sum(iou) / 3)


# --------------------------------------------------------------------------- crop-mode windows
class _WhereAmI(nn.Module):
    """Not shift-invariant at all: reads the absolute position encoded in the window's top-left
    pixel (image value = 100*row + col) and predicts it as the class (``classes`` logits)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.register_buffer("dummy", torch.zeros(()))
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = x[:, 0, 0, 0].round().long()
        self.seen += [(int(c) // 100, int(c) % 100) for c in code]
        return nn.functional.one_hot(code, self.classes).float()


def _position_images(n: int, side: int) -> torch.Tensor:
    rows = torch.arange(side).view(side, 1).float()
    cols = torch.arange(side).view(1, side).float()
    return (100 * rows + cols).expand(n, 3, side, side).clone()


@pytest.mark.parametrize("max_shift,expected", [(2, (2, 6)), (1, (3, 5)), (None, (0, 8))])
def test_crop_mode_windows_are_centred(max_shift: int | None, expected: tuple[int, int]) -> None:
    """16x16 images, 8x8 crops: 8 possible offsets per axis; with max_shift=m the offsets must
    lie in the centred range 4-m .. 4+m (not 0 .. 2m), and both ends are reached."""
    n, side, crop = 64, 16, 8
    images = _position_images(n, side)
    centre = 100 * 4 + 4
    targets = torch.full((n,), centre)
    model = _WhereAmI(100 * side)
    res = evaluate_shift_consistency(model, [(images, targets)], max_shift=max_shift, crop=crop, per_image=True, seed=3)
    rows = [r for r, _ in model.seen]
    cols = [c for _, c in model.seen]
    lo, hi = expected
    assert (min(rows), max(rows)) == (lo, hi) and (min(cols), max(cols)) == (lo, hi)
    # the score is the oracle's: agreement = both windows at the same offset; accuracy = at the centre
    a, b = model.seen[:n], model.seen[n:]
    assert res.consistency == pytest.approx(sum(p == q for p, q in zip(a, b)) / n)
    assert res.shifted_accuracy == pytest.approx(sum(p == (4, 4) for p in model.seen) / (2 * n))


# --------------------------------------------------------------------------- corruption strengths
# Published parameters (Hendrycks & Dietterich 2019, github.com/hendrycks/robustness:
# ImageNet-C/create_c/make_cifar_c.py and make_imagenet_c.py), copied here independently.
PUBLISHED = {
    "cifar": {
        "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
        "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
        "shot_noise": [500, 250, 100, 75, 50],
        "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
        "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
        "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    },
    "imagenet": {
        "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
        "speckle_noise": [0.15, 0.2, 0.35, 0.45, 0.6],
        "shot_noise": [60, 25, 12, 5, 3],
        "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
        "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
        "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
    },
}
SIDE = {"cifar": 96, "imagenet": 224}  # many samples per measurement; the profile is forced


def _clipped_gauss_std(mean: float, sigma: float) -> float:
    """std of clip(mean + N(0, sigma^2), 0, 1), by quadrature (the clip bites at high severity)."""
    z = np.linspace(-8, 8, 160001)
    w = np.exp(-z**2 / 2)
    w /= w.sum()
    v = np.clip(mean + sigma * z, 0, 1)
    m = (w * v).sum()
    return float(math.sqrt((w * (v - m) ** 2).sum()))


def _clipped_poisson_std(x: float, lam_scale: float) -> float:
    """std of clip(Poisson(x*c) / c, 0, 1)."""
    lam = x * lam_scale
    ks = np.arange(0, int(lam + 20 * math.sqrt(lam) + 30))
    logp = ks * math.log(lam) - lam - np.array([math.lgamma(k + 1) for k in ks])
    p = np.exp(logp)
    v = np.clip(ks / lam_scale, 0, 1)
    m = (p * v).sum()
    return float(math.sqrt((p * (v - m) ** 2).sum()))


def _flat(value: float, side: int) -> np.ndarray:
    return np.full((side, side, 3), value)


@pytest.mark.parametrize("profile", ["cifar", "imagenet"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_noise_strengths_are_the_published_ones(profile: str, severity: int) -> None:
    side = SIDE[profile]
    c = {k: v[severity - 1] for k, v in PUBLISHED[profile].items()}
    rng = np.random.default_rng(severity)
    n = side * side * 3
    tol = 4 / math.sqrt(2 * n)  # ~4 standard errors of a sample std (relative)

    out = corrupt_array(_flat(0.5, side), "gaussian_noise", severity, rng=rng, profile=profile)
    assert out.std() == pytest.approx(_clipped_gauss_std(0.5, c["gaussian_noise"]), rel=tol)

    out = corrupt_array(_flat(0.5, side), "speckle_noise", severity, rng=rng, profile=profile)  # x + x*N(0, c)
    assert out.std() == pytest.approx(_clipped_gauss_std(0.5, 0.5 * c["speckle_noise"]), rel=tol)

    out = corrupt_array(_flat(0.5, side), "shot_noise", severity, rng=rng, profile=profile)  # Poisson(x*c)/c
    assert out.std() == pytest.approx(_clipped_poisson_std(0.5, c["shot_noise"]), rel=2 * tol)

    out = corrupt_array(_flat(0.5, side), "impulse_noise", severity, rng=rng, profile=profile)
    changed = float((np.abs(out - 0.5) > 1e-9).mean())  # salt or pepper on a fraction c of the values
    assert changed == pytest.approx(c["impulse_noise"], abs=4 * math.sqrt(c["impulse_noise"] / n))


@pytest.mark.parametrize("profile", ["cifar", "imagenet"])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_brightness_and_contrast_are_the_published_ones(profile: str, severity: int) -> None:
    side = 8
    c = {k: v[severity - 1] for k, v in PUBLISHED[profile].items()}
    # brightness: HSV value + c; on a grey image every channel moves by c
    out = corrupt_array(_flat(0.4, side), "brightness", severity, profile=profile)
    np.testing.assert_allclose(out, 0.4 + c["brightness"], atol=1e-9)
    # contrast: (x - mean) * c + mean; a two-level image keeps its mean and its spread scales by c
    img = np.zeros((side, side, 3))
    img[:, : side // 2] = 0.8
    img[:, side // 2 :] = 0.2
    out = corrupt_array(img, "contrast", severity, profile=profile)
    np.testing.assert_allclose(out[:, 0] - out[:, -1], 0.6 * c["contrast"], atol=1e-9)
    np.testing.assert_allclose(out.mean(), 0.5, atol=1e-9)
