"""ImageNet-P-style perturbation sequences (Hendrycks & Dietterich 2019, Sec. 3) for flip rates.

A sequence is ``frames`` versions of one image under a slowly growing (or, for the noise
types, freshly redrawn) perturbation.  These are generated here on the fly, in the spirit
of ImageNet-P's "difficulty 1" sequences, not a copy of its videos: see
``docs/evaluation.md`` for each definition.  The flip rate (FR) of a type compares each
frame with the previous one, except the noise types, whose frames are compared with the
first (:data:`NOISE_PERTURBATIONS`), as in the reference evaluation.

Examples:
    >>> import torch
    >>> seq = perturbation_sequence(torch.rand(3, 32, 32), "translate", frames=5, rng=0)
    >>> seq.shape
    torch.Size([5, 3, 32, 32])
    >>> bool((seq[0] - seq[1]).abs().max() > 0)
    True
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .corruptions import RngLike, _as_rng, _gaussian, _motion_blur

__all__ = ["NOISE_PERTURBATIONS", "PERTURBATIONS", "flip_reference", "perturbation_sequence"]

#: The perturbation types (ImageNet-P's noise, blur, digital and geometric families).
PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "speckle_noise",
    "gaussian_blur",
    "motion_blur",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
#: Types whose frames are independent noise draws: flips are counted against frame 0.
NOISE_PERTURBATIONS: frozenset[str] = frozenset({"gaussian_noise", "shot_noise", "speckle_noise"})


def flip_reference(name: str) -> Literal["first", "consecutive"]:
    """How the flip rate of perturbation ``name`` compares frames."""
    if name not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}; got {name!r}")
    return "first" if name in NOISE_PERTURBATIONS else "consecutive"


def _warp(x: Tensor, theta: Tensor) -> Tensor:
    """Affine warp of (T, 3, H, W) by per-frame 2x3 ``theta`` (normalised coords), reflect border."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _tilt(x: Tensor, angles_deg: np.ndarray) -> Tensor:
    """Perspective tilt: rotate the image plane about its vertical axis by each angle and
    project back with a pinhole camera whose focal length equals the image width."""
    t, _, h, w = x.shape
    ys, xs = torch.meshgrid(
        torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=torch.float64),
        torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=torch.float64),
        indexing="ij",
    )
    f = 2.0  # focal length in normalised units (image half-width = 1)
    grids = []
    for a in angles_deg:
        r = math.radians(float(a))
        # the ray through output pixel (xs, ys, f) meets the tilted plane (through (0, 0, f),
        # normal (sin r, 0, cos r)) at t * (xs, ys, f); express that point in plane axes
        t_hit = f * math.cos(r) / (xs * math.sin(r) + f * math.cos(r))
        u = t_hit * xs * math.cos(r) - (t_hit * f - f) * math.sin(r)
        v = t_hit * ys
        grids.append(torch.stack([u, v], dim=-1))
    grid = torch.stack(grids).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def perturbation_sequence(
    image: Tensor,
    name: str,
    *,
    frames: int = 10,
    rng: RngLike = None,
) -> Tensor:
    """``frames`` perturbed copies of ``image`` (``(3, H, W)`` float in [0, 1]).

    Definitions (strength chosen for small steps between frames, ImageNet-P "difficulty 1"):

    * ``gaussian_noise`` / ``shot_noise`` / ``speckle_noise``: every frame a fresh draw of the
      CIFAR-10-C severity-1 noise (sigma 0.04 / Poisson with 500 photons per unit / speckle
      0.06);
    * ``gaussian_blur``: sigma rising linearly from 0.3 to 1.5 pixels (x side/32);
    * ``motion_blur``: a line kernel (see corruptions) whose radius rises from 1 to 5 pixels
      (x side/32) at a fixed random angle;
    * ``brightness``: HSV value offset rising linearly from -0.1 to +0.1;
    * ``translate``: shifts of one pixel per frame in a random direction (reflected border);
    * ``rotate``: angle rising linearly from -10 to +10 degrees;
    * ``tilt``: perspective rotation of the image plane about its vertical axis, -15 to +15 degrees;
    * ``scale``: zoom factor rising linearly from 0.9 to 1.1.

    Shape:
        ``(3, H, W)`` -> ``(frames, 3, H, W)``, same dtype, values in [0, 1].
    """
    if name not in PERTURBATIONS:
        raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}; got {name!r}")
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(
            f"image must be a float tensor (3, H, W) in [0, 1], got {getattr(image, 'shape', type(image))}"
        )
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an int >= 2, got {frames!r}")
    gen = _as_rng(rng)
    _, h, w = image.shape
    s = min(h, w) / 32.0
    x = image.detach().cpu().double().clamp(0, 1)
    ramp = np.linspace(0.0, 1.0, frames)
    arr = x.permute(1, 2, 0).numpy()
    if name == "gaussian_noise":
        out = [arr + gen.normal(scale=0.04, size=arr.shape) for _ in range(frames)]
    elif name == "shot_noise":
        out = [gen.poisson(arr * 500) / 500 for _ in range(frames)]
    elif name == "speckle_noise":
        out = [arr + arr * gen.normal(scale=0.06, size=arr.shape) for _ in range(frames)]
    elif name == "gaussian_blur":
        out = [_gaussian(arr, (0.3 + 1.2 * r) * s) for r in ramp]
    elif name == "motion_blur":
        angle = float(gen.uniform(-45, 45))
        out = [_motion_blur(arr, (1 + 4 * r) * s, (1 + 4 * r) * s / 3, angle) for r in ramp]
    elif name == "brightness":
        v = arr.max(axis=-1, keepdims=True)
        out = []
        for r in ramp:
            v_new = np.clip(v - 0.1 + 0.2 * r, 0, 1)
            out.append(np.where(v > 0, arr * v_new / np.where(v > 0, v, 1), v_new))
    else:
        xt = x.unsqueeze(0).expand(frames, -1, -1, -1).contiguous()
        theta = torch.zeros(frames, 2, 3, dtype=torch.float64)
        if name == "translate":
            ang = float(gen.uniform(0, 2 * math.pi))
            steps = torch.arange(frames, dtype=torch.float64)
            # one pixel per frame: normalised coordinates span 2 over the side
            theta[:, 0, 0] = theta[:, 1, 1] = 1
            theta[:, 0, 2] = steps * math.cos(ang) * 2 / w
            theta[:, 1, 2] = steps * math.sin(ang) * 2 / h
            seq = _warp(xt, theta)
        elif name == "rotate":
            for i, r in enumerate(ramp):
                a = math.radians(-10 + 20 * r)
                theta[i] = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 0], [math.sin(a) * w / h, math.cos(a), 0]])
            seq = _warp(xt, theta)
        elif name == "scale":
            for i, r in enumerate(ramp):
                z = 0.9 + 0.2 * r
                theta[i] = torch.tensor([[1 / z, 0, 0], [0, 1 / z, 0]])
            seq = _warp(xt, theta)
        else:  # tilt
            seq = _tilt(xt, -15 + 30 * ramp)
        return seq.clamp(0, 1).to(image.dtype)
    t = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return t.clamp(0, 1).to(image.dtype)
