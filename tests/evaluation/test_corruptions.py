"""The 19 corruptions: contract (shape/dtype/range, change, determinism) and growth with severity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from liftpool.evaluation import corruptions as C
from liftpool.evaluation.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt

SEED = 123


def _images(n: int, h: int, w: int) -> torch.Tensor:
    """Natural-looking test images: smoothed colour noise (about one-pixel detail) in [0.1, 0.9]."""
    out = []
    for seed in range(n):
        g = np.random.default_rng(seed)
        x = ndi.gaussian_filter(g.random((3, h, w)), (0, max(h, w) / 32, max(h, w) / 32))
        x = (x - x.min()) / (x.max() - x.min())
        out.append(0.1 + 0.8 * x)
    return torch.tensor(np.stack(out), dtype=torch.float32)


def _psnr(y: torch.Tensor, x: torch.Tensor) -> float:
    mse = ((y.double() - x.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return float((10 * torch.log10(1 / mse)).mean())


def _corr(y: torch.Tensor, x: torch.Tensor) -> float:
    """Mean Pearson correlation between clean and corrupted images (falls as more is mixed in)."""
    xc = x.double() - x.double().mean(dim=(1, 2, 3), keepdim=True)
    yc = y.double() - y.double().mean(dim=(1, 2, 3), keepdim=True)
    num = (xc * yc).sum((1, 2, 3))
    den = (xc**2).sum((1, 2, 3)).sqrt() * (yc**2).sum((1, 2, 3)).sqrt()
    return float((num / den).mean())


# Chains of severities along which the published parameters grow in one direction, so the
# distortion must grow (docs/evaluation.md, "Severity ordering").  Default: 1 < 2 < 3 < 4 < 5.
_CHAINS: dict[tuple[str, str], list[tuple[int, ...]]] = {
    # saturate: 1-2 desaturate (x0.3, x0.1), 3-5 oversaturate; severity 3 is milder than 2
    ("saturate", "cifar"): [(1, 2), (3, 4, 5)],
    ("saturate", "imagenet"): [(1, 2), (3, 4, 5)],
    # spatter: 1-3 water drops (translucent), 4-5 mud (opaque); 3 has wider but fainter drops
    ("spatter", "cifar"): [(1, 2, 4, 5), (3, 4, 5)],
    ("spatter", "imagenet"): [(1, 2, 4, 5), (3, 4, 5)],
    # glass blur (cifar): sigma 0.05, .25, .4, .25, .4 with 1, 1, 1, 2, 2 shuffle passes
    ("glass_blur", "cifar"): [(1, 4), (2, 4), (3, 5)],
    ("glass_blur", "imagenet"): [(2, 3, 4, 5), (1, 5)],
    # snow (imagenet): severities 2 and 3 trade flake density against blending
    ("snow", "imagenet"): [(1, 2, 4, 5), (1, 3, 4, 5)],
    # elastic (imagenet): 1-2 a large random affine, 3-5 a growing local warp
    ("elastic_transform", "imagenet"): [(1, 2), (3, 4, 5)],
    # motion blur (cifar): (radius, sigma) = (6, 2) and (8, 2): the same Gaussian taps, the
    # larger radius only adds taps below 1e-8, so severities 3 and 4 coincide
    ("motion_blur", "cifar"): [(1, 2, 3, 5), (1, 2, 4, 5)],
    # elastic (cifar) is tested on its warp field below
    ("elastic_transform", "cifar"): [],
}
# frost and fog scale the image down while mixing a layer in: the share of the clean image
# (correlation with it) falls with severity, while PSNR need not
_CORRELATION_MEASURED = {"frost", "fog"}


def test_names() -> None:
    assert len(CORRUPTIONS) == 15 and len(EXTRA_CORRUPTIONS) == 4 and len(set(ALL_CORRUPTIONS)) == 19
    assert set(C.CORRUPTION_GROUPS) == set(ALL_CORRUPTIONS)


@pytest.mark.parametrize(("h", "w", "n", "profile"), [(32, 32, 6, "cifar"), (160, 224, 2, "imagenet")])
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_contract_and_growth_with_severity(name: str, h: int, w: int, n: int, profile: str) -> None:
    x = _images(n, h, w)
    assert C.resolve_profile(h, w)[0] == profile
    measure = _corr if name in _CORRELATION_MEASURED else _psnr
    values = {}
    for sev in range(1, 6):
        y = corrupt(x, name, sev, rng=SEED)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert float((y - x).abs().max()) > 1e-3, f"{name} severity {sev} left the image unchanged"
        values[sev] = measure(y, x)
    chains = _CHAINS.get((name, profile), [(1, 2, 3, 4, 5)])
    for chain in chains:
        seq = [values[s] for s in chain]
        assert all(a > b for a, b in zip(seq, seq[1:])), f"{name} ({profile}) along {chain}: {seq} does not fall"


def test_elastic_cifar_warp_fields_follow_published_parameters() -> None:
    """CIFAR-10-C elastic: the affine jitter shrinks and the local warp grows with severity."""
    local, affine = [], []
    for sev in range(1, 6):
        c = C._PARAMS["cifar"]["elastic_transform"][sev - 1]
        full, dx, dy = C._elastic_fields(32, 32, c, 1.0, np.random.default_rng(SEED), "cifar")
        local.append(float(np.hypot(dx, dy).mean()))
        affine.append(float(np.abs(full[:2, :2] - np.eye(2)).sum() + np.abs(full[:2, 2]).sum() / 32))
    assert local[0] == 0.0 and all(a < b for a, b in zip(local, local[1:])), local
    assert all(a > b for a, b in zip(affine, affine[1:])), affine


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_uint8_single_image_and_determinism(name: str) -> None:
    x = (_images(1, 32, 32)[0] * 255).round().to(torch.uint8)
    y1 = corrupt(x, name, 3, rng=7)
    y2 = corrupt(x, name, 3, rng=7)
    assert y1.shape == (3, 32, 32) and y1.dtype == torch.uint8
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, x)


def test_float64_kept_and_seed_changes_random_corruptions() -> None:
    x = _images(2, 32, 32).double()
    a = corrupt(x, "gaussian_noise", 2, rng=0)
    b = corrupt(x, "gaussian_noise", 2, rng=1)
    assert a.dtype == torch.float64 and not torch.equal(a, b)
    for dt in (torch.float16, torch.bfloat16):
        y = corrupt(x.to(dt), "fog", 3, rng=0)
        assert y.dtype == dt and y.shape == x.shape


def test_exact_simple_corruptions() -> None:
    """Contrast and brightness match their definitions on a hand-made image."""
    x = torch.tensor([[[0.2, 0.4], [0.6, 0.8]]] * 3, dtype=torch.float64)  # grey, mean 0.5
    y = corrupt(x, "contrast", 1, rng=0)  # cifar c = 0.75
    assert torch.allclose(y, (x - 0.5) * 0.75 + 0.5)
    y = corrupt(x, "brightness", 5, rng=0)  # cifar c = 0.3: grey V + 0.3
    assert torch.allclose(y, (x + 0.3).clamp(0, 1))
    # saturate keeps a grey image grey (S = 0 -> S * c0 + c1 = 0 for severities 1-3)
    assert torch.allclose(corrupt(x, "saturate", 3, rng=0), x, atol=1e-12)


def test_hsv_round_trip() -> None:
    g = np.random.default_rng(0)
    x = g.random((20, 20, 3))
    assert np.allclose(C._hsv_to_rgb(C._rgb_to_hsv(x)), x, atol=1e-12)


def test_motion_kernel_is_a_line() -> None:
    w, off = C.motion_blur_kernel_offsets(3, 2.0, 90.0)
    assert off.tolist() == [[i, 0] for i in range(7)]  # straight down
    assert np.isclose(w.sum(), 1.0) and np.all(np.diff(w) < 0)
    # a blur of a constant image is the constant
    img = np.full((9, 9, 3), 0.3)
    assert np.allclose(C._motion_blur(img, 3, 2.0, 30.0), 0.3)


def test_plasma_and_frost_texture() -> None:
    g = np.random.default_rng(0)
    p = C.plasma_fractal(32, 2.0, g)
    assert p.shape == (32, 32) and p.min() == 0.0 and p.max() == 1.0
    f = C.frost_texture(40, 50, g)
    assert f.shape == (40, 50, 3) and f.min() >= 0 and f.max() <= 1 and 0.2 < f.mean() < 0.7
    with pytest.raises(ValueError, match="power of two"):
        C.plasma_fractal(30, 2.0, g)


def test_profile_and_parameters() -> None:
    assert C.resolve_profile(111, 500) == ("cifar", 111 / 32)
    assert C.severity_parameters("defocus_blur", 5, size=(224, 224)) == {
        "profile": "imagenet",
        "scale": 1.0,
        "published": (10, 0.5),
    }
    assert C.severity_parameters("gaussian_noise", 1, size=(224, 224), profile="cifar")["published"] == 0.04


def test_bad_input() -> None:
    x = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match="corruption must be one of"):
        corrupt(x, "rain", 1)
    with pytest.raises(ValueError, match="severity must be an int in 1..5"):
        corrupt(x, "fog", 0)
    with pytest.raises(ValueError, match="severity"):
        corrupt(x, "fog", 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        corrupt(torch.rand(1, 8, 8), "fog", 1)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        corrupt(torch.randn(3, 8, 8) * 3, "fog", 1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        corrupt(np.zeros((3, 8, 8)), "fog", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="float"):
        corrupt(torch.zeros(3, 8, 8, dtype=torch.int32), "fog", 1)
    with pytest.raises(ValueError, match="profile"):
        corrupt(x, "fog", 1, profile="huge")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rng"):
        corrupt(x, "fog", 1, rng="seed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2x2"):
        corrupt(torch.rand(3, 1, 5), "fog", 1)


def test_tiny_and_odd_images_work() -> None:
    x = torch.rand(3, 7, 5)
    for name in ALL_CORRUPTIONS:
        y = corrupt(x, name, 5, rng=0)
        assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
