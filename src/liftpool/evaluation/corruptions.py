"""The 19 common corruptions of Hendrycks & Dietterich (2019), 5 severities each, in numpy/scipy.

The 15 ImageNet-C corruptions (:data:`CORRUPTIONS`) and the 4 extra "hold-out" ones
(:data:`EXTRA_CORRUPTIONS`) are implemented here from the definitions of

    D. Hendrycks and T. Dietterich, "Benchmarking Neural Network Robustness to Common
    Corruptions and Perturbations", ICLR 2019 (reference code: github.com/hendrycks/robustness,
    ``ImageNet-C/create_c/make_imagenet_c.py`` and ``make_cifar_c.py``).

The severity parameters are the published ones of that reference code: the CIFAR-10-C
table for small images and the ImageNet-C table for large ones (``profile="auto"`` picks
``"cifar"`` when ``min(H, W) < 112``, else ``"imagenet"``).  Parameters measured in pixels
(blur sigmas and radii, shuffle distances, elastic displacements, ...) are multiplied by
``min(H, W) / 32`` (cifar profile) or ``min(H, W) / 224`` (imagenet profile), so a 32x32
image gets exactly the CIFAR-10-C numbers and a 224x224 image exactly the ImageNet-C ones.
Departures from the reference code (no OpenCV, ImageMagick or frost photographs) are
listed in ``docs/evaluation.md``: a line-kernel motion blur replaces ImageMagick's, a
procedural frost texture replaces the six frost photographs, spatter's Canny edge map is a
hysteresis Sobel edge map.

Images are torch tensors ``(3, H, W)`` or ``(N, 3, H, W)``: floating point in ``[0, 1]`` or
``uint8`` in ``[0, 255]``; the result has the same shape, dtype and range.

Examples:
    >>> import torch
    >>> from liftpool.evaluation.corruptions import corrupt, ALL_CORRUPTIONS
    >>> len(ALL_CORRUPTIONS)
    19
    >>> x = torch.rand(2, 3, 32, 32)
    >>> y = corrupt(x, "gaussian_noise", 3, rng=0)
    >>> y.shape, y.dtype, bool(y.min() >= 0 and y.max() <= 1)
    (torch.Size([2, 3, 32, 32]), torch.float32, True)
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image
from scipy import ndimage as ndi

__all__ = [
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "CORRUPTION_GROUPS",
    "EXTRA_CORRUPTIONS",
    "Profile",
    "corrupt",
    "corrupt_array",
    "frost_texture",
    "motion_blur_kernel_offsets",
    "plasma_fractal",
    "resolve_profile",
    "severity_parameters",
]

Profile = Literal["auto", "cifar", "imagenet"]
RngLike = Union[np.random.Generator, int, None]

#: The 15 ImageNet-C corruptions, in the benchmark's order (noise, blur, weather, digital).
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: The 4 extra (validation / hold-out) corruptions of the reference code.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS

#: Category of each corruption (as in the ImageNet-C paper; the extras as in its appendix).
CORRUPTION_GROUPS: dict[str, str] = {
    **dict.fromkeys(("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"), "noise"),
    **dict.fromkeys(("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"), "blur"),
    **dict.fromkeys(("snow", "frost", "fog", "brightness", "spatter"), "weather"),
    **dict.fromkeys(("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"), "digital"),
}

# ---------------------------------------------------------------------------------------------
# Published severity parameters (Hendrycks & Dietterich 2019 reference code).  One entry per
# severity 1..5.  "cifar" = make_cifar_c.py (32x32), "imagenet" = make_imagenet_c.py (224x224).
# ---------------------------------------------------------------------------------------------
_ZOOMS_CIFAR = [(1.0, 1.06, 0.01), (1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.01), (1.0, 1.26, 0.01)]
_ZOOMS_IMAGENET = [(1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.02), (1.0, 1.26, 0.02), (1.0, 1.31, 0.03)]

_PARAMS: dict[str, dict[str, list[Any]]] = {
    "cifar": {
        "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
        "shot_noise": [500, 250, 100, 75, 50],
        "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
        "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
        "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
        "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "zoom_blur": _ZOOMS_CIFAR,
        "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "snow": [
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ],
        "spatter": [
            (0.62, 0.1, 0.7, 0.7, 0.5, 0),
            (0.65, 0.1, 0.8, 0.7, 0.5, 0),
            (0.65, 0.3, 1, 0.69, 0.5, 0),
            (0.65, 0.1, 0.7, 0.69, 0.6, 1),
            (0.65, 0.1, 0.5, 0.68, 0.6, 1),
        ],
        "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
        "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
        "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
        "jpeg_compression": [80, 65, 58, 50, 40],
        "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
        # (alpha, sigma, affine) as fractions of the image side (reference: IMSIZE * fraction)
        "elastic_transform": [
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        ],
    },
    "imagenet": {
        "gaussian_noise": [0.08, 0.12, 0.18, 0.26, 0.38],
        "shot_noise": [60, 25, 12, 5, 3],
        "impulse_noise": [0.03, 0.06, 0.09, 0.17, 0.27],
        "speckle_noise": [0.15, 0.2, 0.35, 0.45, 0.6],
        "gaussian_blur": [1, 2, 3, 4, 6],
        "glass_blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
        "defocus_blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
        "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
        "zoom_blur": _ZOOMS_IMAGENET,
        "fog": [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],
        "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
        "snow": [
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ],
        "spatter": [
            (0.65, 0.3, 4, 0.69, 0.6, 0),
            (0.65, 0.3, 3, 0.68, 0.6, 0),
            (0.65, 0.3, 2, 0.68, 0.5, 0),
            (0.65, 0.3, 1, 0.65, 1.5, 1),
            (0.67, 0.4, 1, 0.65, 1.5, 1),
        ],
        "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
        "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
        "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
        "jpeg_compression": [25, 18, 15, 10, 7],
        "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
        # reference: 244 * fraction for 224 images ("244 should have been 224"): kept as pixels at 224
        "elastic_transform": [
            (244 * 2, 244 * 0.7, 244 * 0.1),
            (244 * 2, 244 * 0.08, 244 * 0.2),
            (244 * 0.05, 244 * 0.01, 244 * 0.02),
            (244 * 0.07, 244 * 0.01, 244 * 0.02),
            (244 * 0.12, 244 * 0.01, 244 * 0.02),
        ],
    },
}
_BASE_SIZE = {"cifar": 32, "imagenet": 224}


def resolve_profile(height: int, width: int, profile: Profile = "auto") -> tuple[str, float]:
    """The parameter table used for an ``height x width`` image and its pixel scale factor.

    Examples:
        >>> resolve_profile(32, 32)
        ('cifar', 1.0)
        >>> resolve_profile(224, 224)
        ('imagenet', 1.0)
        >>> resolve_profile(180, 240)
        ('imagenet', 0.8035714285714286)
    """
    if profile not in ("auto", "cifar", "imagenet"):
        raise ValueError(f"profile must be 'auto', 'cifar' or 'imagenet', got {profile!r}")
    if profile == "auto":
        profile = "cifar" if min(height, width) < 112 else "imagenet"
    return profile, min(height, width) / _BASE_SIZE[profile]


def _check_name_severity(corruption: str, severity: int) -> None:
    if corruption not in _CORRUPTION_FUNCS:
        raise ValueError(f"corruption must be one of {', '.join(ALL_CORRUPTIONS)}; got {corruption!r}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")


def severity_parameters(
    corruption: str, severity: int, *, size: tuple[int, int] = (32, 32), profile: Profile = "auto"
) -> dict[str, Any]:
    """The published parameters used for ``corruption`` at ``severity`` and an image of ``size``.

    Returns ``{"profile", "scale", "published"}``: the table, the pixel scale factor applied
    to spatial parameters, and the published entry of that table.

    Examples:
        >>> severity_parameters("gaussian_noise", 5)["published"]
        0.1
        >>> severity_parameters("gaussian_noise", 5, size=(224, 224))["published"]
        0.38
    """
    _check_name_severity(corruption, severity)
    prof, scale = resolve_profile(size[0], size[1], profile)
    return {"profile": prof, "scale": scale, "published": _PARAMS[prof][corruption][int(severity) - 1]}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """Spatial Gaussian blur of an (H, W) or (H, W, C) array (channels independent)."""
    if sigma <= 0:
        return x.copy()
    sig = (sigma, sigma) + (0.0,) * (x.ndim - 2)
    return ndi.gaussian_filter(x, sigma=sig, mode=mode, truncate=truncate)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of ``x`` by ``factor >= 1`` keeping its size (bilinear)."""
    h, w = x.shape[:2]
    ch, cw = max(1, int(math.ceil(h / factor))), max(1, int(math.ceil(w / factor)))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[top : top + ch, left : left + cw]
    zoom = (factor, factor) + (1.0,) * (x.ndim - 2)
    out = ndi.zoom(crop, zoom, order=1, mode="nearest", grid_mode=False)
    if out.shape[0] < h or out.shape[1] < w:  # rounding: pad by the edge value
        pad = [(0, max(0, h - out.shape[0])), (0, max(0, w - out.shape[1]))] + [(0, 0)] * (x.ndim - 2)
        out = np.pad(out, pad, mode="edge")
    th, tw = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[th : th + h, tw : tw + w]


def plasma_fractal(mapsize: int, wibbledecay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square fractal height map of side ``mapsize`` (a power of two), values in [0, 1].

    The random-midpoint-displacement "plasma" used by the fog corruption: every halving of
    the grid step adds uniform noise whose amplitude shrinks by ``wibbledecay``.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    grid = np.zeros((mapsize, mapsize), dtype=np.float64)
    step, amp = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        # square step: centre of each square = mean of its 4 corners (+ noise); wraps around
        sq = corners + np.roll(corners, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        grid[half::step, half::step] = sq / 4 + amp * rng.uniform(-amp, amp, sq.shape)
        # diamond step: edge midpoints = mean of the 2 centres and 2 corners around them
        centres = grid[half::step, half::step]
        corners = grid[0::step, 0::step]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0::step, half::step] = top / 4 + amp * rng.uniform(-amp, amp, top.shape)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half::step, 0::step] = left / 4 + amp * rng.uniform(-amp, amp, left.shape)
        step, amp = half, amp / wibbledecay
    grid -= grid.min()
    top_val = grid.max()
    return grid / top_val if top_val > 0 else grid


def motion_blur_kernel_offsets(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Taps of the one-sided line kernel of :func:`_motion_blur`: ``(weights, offsets)``.

    ``2*ceil(radius)+1`` taps at distance ``i = 0, 1, ...`` along direction ``angle`` (degrees,
    x to the right, y down), weights ``exp(-i^2 / (2 sigma^2))`` normalised to sum 1;
    ``offsets`` is ``(taps, 2)`` integer ``(dy, dx)``.  This is the kernel shape of ImageMagick's
    ``-motion-blur radius x sigma + angle`` used by the reference code.

    Examples:
        >>> w, off = motion_blur_kernel_offsets(2, 1.0, 0.0)
        >>> off[:, 1].tolist(), round(float(w.sum()), 6)
        ([0, 1, 2, 3, 4], 1.0)
    """
    width = int(2 * math.ceil(radius) + 1) if radius > 0 else 1
    i = np.arange(width, dtype=np.float64)
    sigma = max(float(sigma), 1e-6)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    weights /= weights.sum()
    a = math.radians(angle)
    offsets = np.stack([np.round(i * math.sin(a)), np.round(i * math.cos(a))], axis=1).astype(np.int64)
    return weights, offsets


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """Line-kernel motion blur: out(p) = sum_i w_i x(p + offset_i), edges replicated."""
    weights, offsets = motion_blur_kernel_offsets(radius, sigma, angle)
    h, w = x.shape[:2]
    pad = int(np.abs(offsets).max()) if offsets.size else 0
    padded = np.pad(x, [(pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 2), mode="edge")
    out = np.zeros_like(x, dtype=np.float64)
    for wt, (dy, dx) in zip(weights, offsets):
        if wt < 1e-8:
            continue
        out += wt * padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return out


def _rgb_to_hsv(x: np.ndarray) -> np.ndarray:
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    delta = v - x.min(axis=-1)
    s = np.where(v > 0, delta / np.where(v > 0, v, 1), 0.0)
    safe = np.where(delta > 0, delta, 1)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, v], axis=-1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def _gray(x: np.ndarray) -> np.ndarray:
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """Anti-aliased disk (defocus) kernel: 17x17 support up to radius 8, else 2r+1."""
    half = 8 if radius <= 8 else int(math.ceil(radius))
    ksize = 3 if radius <= 8 else 5
    coords = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(coords, coords)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    k = np.arange(ksize) - ksize // 2
    g = np.exp(-(k**2) / (2 * max(alias_blur, 1e-6) ** 2))
    g /= g.sum()
    disk = ndi.correlate1d(disk, g, axis=0, mode="mirror")
    return ndi.correlate1d(disk, g, axis=1, mode="mirror")


def _equalize_hist(img_u8: np.ndarray) -> np.ndarray:
    hist = np.bincount(img_u8.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    nz = cdf[hist > 0]
    cdf_min = nz[0] if nz.size else 0
    total = img_u8.size
    if total == cdf_min:
        return img_u8.copy()
    lut = np.clip(np.round((cdf - cdf_min) * 255.0 / (total - cdf_min)), 0, 255).astype(np.uint8)
    return lut[img_u8]


def _edges(img_u8: np.ndarray, low: float = 50, high: float = 150) -> np.ndarray:
    """Hysteresis edge map on the Sobel gradient magnitude (stand-in for OpenCV's Canny)."""
    f = img_u8.astype(np.float64)
    mag = np.abs(ndi.sobel(f, axis=0, mode="mirror")) + np.abs(ndi.sobel(f, axis=1, mode="mirror"))
    weak = mag >= low
    strong = mag >= high
    labels, n = ndi.label(weak, structure=np.ones((3, 3)))
    if n == 0:
        return strong
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels]


def frost_texture(height: int, width: int, rng: np.random.Generator, *, scale: float = 1.0) -> np.ndarray:
    """A procedural frost layer ``(H, W, 3)`` in [0, 1] (stand-in for the reference's photos).

    Ice crystals are sparse bright seeds smeared into needles by line-kernel blurs at a few
    random orientations, on top of a fractal haze; the result is tinted pale blue-white.
    Mean brightness is about 0.4-0.5, like the reference's frost photographs.
    ``scale`` is the pixel scale factor (needle length ``~ 6 * scale`` pixels, at least 2).
    """
    seeds = (rng.random((height, width)) ** 6).astype(np.float64)
    needles = np.zeros((height, width))
    length = max(2.0, 6.0 * scale)
    for angle in rng.uniform(0.0, 180.0, size=4):
        half = _motion_blur(seeds, length, length, float(angle))
        other = _motion_blur(seeds, length, length, float(angle) + 180.0)
        needles += half + other
    needles = _gaussian(needles, 0.5 * max(scale, 0.5))
    p99 = np.percentile(needles, 99.5)
    needles = np.clip(needles / p99, 0, 1) if p99 > 0 else needles
    side = 1 << max(1, int(math.ceil(math.log2(max(height, width)))))
    haze = plasma_fractal(side, 2.0, rng)[:height, :width]
    t = np.clip(0.65 * needles + 0.45 * haze, 0, 1)
    tint = np.array([0.82, 0.9, 1.0])
    return t[..., None] * tint


# ---------------------------------------------------------------------------------------------
# the corruptions: x is float64 (H, W, 3) in [0, 1]; c the published parameters; s the pixel
# scale factor; returns float64 (H, W, 3) (clipped by the caller)
# ---------------------------------------------------------------------------------------------
def _gaussian_noise(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(scale=c, size=x.shape)


def _shot_noise(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.clip(x, 0, 1) * c) / c


def _impulse_noise(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    # salt & pepper on a fraction c of all values (per channel), half salt half pepper
    out = x.copy()
    hit = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out[hit & salt] = 1.0
    out[hit & ~salt] = 0.0
    return out


def _speckle_noise(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    return x + x * rng.normal(scale=c, size=x.shape)


def _gaussian_blur(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    return _gaussian(x, c * s)


def _glass_blur(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    sigma, delta, iterations = c[0] * s, max(1, int(round(c[1] * s))), c[2]
    h, w = x.shape[:2]
    x = np.floor(np.clip(_gaussian(x, sigma), 0, 1) * 255) / 255  # the reference quantises here
    # locally shuffle pixels: walk the image bottom-right to top-left swapping each pixel with
    # one at a random offset in [-delta, delta)^2 (sequential swaps, as in the reference)
    perm = list(range(h * w))
    rows = range(h - delta, delta, -1)
    cols = range(w - delta, delta, -1)
    n = len(rows) * len(cols)
    for _ in range(iterations):
        if n == 0:
            break
        d = rng.integers(-delta, delta, size=(n, 2)).tolist()
        k = 0
        for r in rows:
            for col in cols:
                dx, dy = d[k]
                k += 1
                a, b = r * w + col, (r + dy) * w + col + dx
                perm[a], perm[b] = perm[b], perm[a]
    flat = x.reshape(h * w, -1)[np.asarray(perm)]
    return _gaussian(flat.reshape(x.shape), sigma)


def _defocus_blur(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    kernel = _disk_kernel(c[0] * s, c[1])
    return np.stack([ndi.correlate(x[..., i], kernel, mode="mirror") for i in range(x.shape[2])], axis=-1)


def _motion_blur_c(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    return _motion_blur(x, c[0] * s, c[1] * s, float(rng.uniform(-45, 45)))


def _zoom_blur(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    start, stop, step = c
    factors = np.arange(start, stop, step)
    out = x.copy()
    for z in factors:
        out += _clipped_zoom(x, float(z))
    return out / (len(factors) + 1)


def _snow(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    layer = rng.normal(loc=c[0], scale=c[1], size=(h, w))
    layer = _clipped_zoom(layer, c[2])
    layer[layer < c[3]] = 0
    layer = np.clip(layer, 0, 1)
    layer = _motion_blur(layer, c[4] * s, c[5] * s, float(rng.uniform(-135, -45)))[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2)


def _frost(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    return c[0] * x + c[1] * frost_texture(x.shape[0], x.shape[1], rng, scale=s)


def _fog(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    side = 1 << max(1, int(math.ceil(math.log2(max(h, w)))))
    top = x.max()
    x = x + c[0] * plasma_fractal(side, c[1], rng)[:h, :w, None]
    return x * top / (top + c[0])


def _brightness(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    # HSV value + c with hue and saturation kept == rgb * V'/V (grey V' where V == 0)
    v = x.max(axis=-1, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    return np.where(v > 0, x * v_new / np.where(v > 0, v, 1), v_new)


def _contrast(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def _saturate(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    hsv = _rgb_to_hsv(np.clip(x, 0, 1))
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _hsv_to_rgb(hsv)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _jpeg_compression(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(_to_u8(x)).save(buf, format="JPEG", quality=int(c))
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64) / 255


def _pixelate(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    small = (max(1, int(w * c)), max(1, int(h * c)))
    chans = []
    for i in range(x.shape[2]):
        img = Image.fromarray(x[..., i].astype(np.float32), mode="F")
        img = img.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX)
        chans.append(np.asarray(img, dtype=np.float64))
    return np.stack(chans, axis=-1)


def _elastic_fields(
    h: int, w: int, c: Any, s: float, rng: np.random.Generator, profile: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The warp of elastic_transform: ``(affine 3x3 in (x, y), dx, dy)`` (pixels)."""
    if profile == "cifar":  # fractions of the image side
        side = min(h, w)
        alpha, sigma, affine = c[0] * side, c[1] * side, c[2] * side
    else:  # pixels at 224
        alpha, sigma, affine = c[0] * s, c[1] * s, c[2] * s
    # random affine: move three reference points by up to +-affine pixels; (x, y) coordinates
    cx, cy, sq = w // 2, h // 2, max(1, min(h, w) // 3)
    src = np.array([[cx + sq, cy + sq], [cx + sq, cy - sq], [cx - sq, cy - sq]], dtype=np.float64)
    dst = src + rng.uniform(-affine, affine, size=src.shape)
    m = np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst).T  # (2, 3): [x', y'] = m @ [x, y, 1]
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    # smooth random displacement field
    dx = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    return full, dx, dy


def _elastic_transform(x: np.ndarray, c: Any, s: float, rng: np.random.Generator, profile: str) -> np.ndarray:
    h, w = x.shape[:2]
    full, dx, dy = _elastic_fields(h, w, c, s, rng, profile)
    inv = np.linalg.inv(full)  # output pixel -> input pixel, (x, y)
    mat_rc = np.array([[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]])
    off_rc = np.array([inv[1, 2], inv[0, 2]])
    x = np.stack(
        [ndi.affine_transform(x[..., i], mat_rc, offset=off_rc, order=1, mode="mirror") for i in range(x.shape[2])],
        axis=-1,
    )
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    coords = [yy + dy, xx + dx]
    return np.stack(
        [ndi.map_coordinates(x[..., i], coords, order=1, mode="reflect") for i in range(x.shape[2])], axis=-1
    )


def _spatter(x: np.ndarray, c: Any, s: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    liquid = rng.normal(loc=c[0], scale=c[1], size=(h, w))
    liquid = _gaussian(liquid, c[2] * s)
    liquid[liquid < c[3]] = 0
    if c[5] == 0:  # water drops: embossed, pale-turquoise tinted, brightening
        liq8 = np.clip(liquid * 255, 0, 255).astype(np.uint8)
        edges = _edges(liq8)
        trunc = 20.0 * max(s, 0.25)
        dist = ndi.distance_transform_edt(~edges) if edges.any() else np.full((h, w), trunc)
        dist = np.minimum(dist, trunc)
        dist = ndi.uniform_filter(dist, size=3, mode="mirror").astype(np.uint8)
        dist = _equalize_hist(dist)
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(np.round(ndi.correlate(dist.astype(np.float64), emboss, mode="mirror")), 0, 255)
        dist = ndi.uniform_filter(dist, size=3, mode="mirror")
        m = liq8.astype(np.float64) * dist
        top = m.max()
        m = (m / top if top > 0 else m) * c[4]
        color = np.array([175, 238, 238], dtype=np.float64) / 255
        return x + m[..., None] * color
    # mud: opaque brown blobs
    m = (liquid > c[3]).astype(np.float64)
    m = _gaussian(m, c[4] * s)
    m[m < 0.8] = 0
    mud = np.array([63, 42, 20], dtype=np.float64) / 255
    return x * (1 - m[..., None]) + mud * m[..., None]


_CORRUPTION_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur_c,
    "zoom_blur": _zoom_blur,
    "snow": _snow,
    "frost": _frost,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic_transform": _elastic_transform,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
    "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur,
    "spatter": _spatter,
    "saturate": _saturate,
}


def _as_rng(rng: RngLike) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def corrupt_array(
    image: np.ndarray, corruption: str, severity: int, *, rng: RngLike = None, profile: Profile = "auto"
) -> np.ndarray:
    """Corrupt one ``(H, W, 3)`` float image in [0, 1]; returns float64 ``(H, W, 3)`` in [0, 1]."""
    _check_name_severity(corruption, severity)
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a numpy array (H, W, 3), got {getattr(image, 'shape', type(image))}")
    h, w = image.shape[:2]
    if h < 2 or w < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {h}x{w}")
    prof, s = resolve_profile(h, w, profile)
    c = _PARAMS[prof][corruption][int(severity) - 1]
    gen = _as_rng(rng)
    x = np.asarray(image, dtype=np.float64)
    if corruption == "elastic_transform":
        out = _elastic_transform(x, c, s, gen, prof)
    else:
        out = _CORRUPTION_FUNCS[corruption](x, c, s, gen)
    return np.clip(out, 0.0, 1.0)


def corrupt(
    images: torch.Tensor, corruption: str, severity: int, *, rng: RngLike = None, profile: Profile = "auto"
) -> torch.Tensor:
    """Apply ``corruption`` at ``severity`` (1..5) to RGB images; shape, dtype and range are kept.

    Args:
        images: ``(3, H, W)`` or ``(N, 3, H, W)`` tensor, float in [0, 1] or uint8 in [0, 255]
            (un-normalised pixels: normalise after corrupting).
        corruption: one of :data:`ALL_CORRUPTIONS`.
        severity: 1 (mild) .. 5 (strong).
        rng: numpy ``Generator`` or int seed (same seed -> same output); images of a batch get
            successive draws of the generator.
        profile: parameter table (``"auto"``: CIFAR-10-C below 112 pixels, else ImageNet-C).

    Shape:
        ``(3, H, W)`` or ``(N, 3, H, W)`` -> the same.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    _check_name_severity(corruption, severity)
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must have shape (3, H, W) or (N, 3, H, W), got {tuple(images.shape)}")
    is_u8 = images.dtype == torch.uint8
    if not is_u8 and not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1] or uint8, got dtype {images.dtype}")
    if not is_u8 and images.numel() and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise ValueError(
            f"float images must be un-normalised pixels in [0, 1], got range "
            f"[{images.min().item():.3g}, {images.max().item():.3g}] (corrupt before normalising)"
        )
    gen = _as_rng(rng)
    batch = images.unsqueeze(0) if images.dim() == 3 else images
    arr = batch.detach().cpu().double().numpy()  # via float64: also for float16 / bfloat16
    if is_u8:
        arr = arr / 255.0
    outs = [
        corrupt_array(np.clip(a.transpose(1, 2, 0), 0, 1), corruption, severity, rng=gen, profile=profile) for a in arr
    ]
    out = np.stack(outs).transpose(0, 3, 1, 2) if outs else arr
    if is_u8:
        result = torch.from_numpy(np.clip(np.round(out * 255), 0, 255).astype(np.uint8))
    else:
        result = torch.from_numpy(np.ascontiguousarray(out)).to(images.dtype)
    result = result.to(images.device)
    return result[0] if images.dim() == 3 else result
