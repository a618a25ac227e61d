"""``liftpool demo``: a picture like the paper's Figure 1, with numbers.

On an embedded test image (a zone plate plus shapes, generated; nothing is
downloaded) or the user's ``--image``, it

* pools with MaxPool, AvgPool and LiftDownPool (learned P/U fitted to the image
  for ``--fit-steps`` steps of the paper's constraint loss, and the fixed CDF 5/3
  lifting wavelet through the same code path),
* shows the four LiftDownPool sub-bands LL, LH, HL, HH,
* up-pools again: MaxUnpool (fed the max indices) vs LiftUpPool (fed the LL band
  and the recorded details, and for comparison with the details zeroed),
* prints, per method, the reconstruction error and an aliasing measure, and
  writes the figure as a PNG.

Aliasing measure: the share of the pooled map's energy caused by input content
above the output's Nyquist frequency, ``||pool(x) - pool(lowpass(x))||² / ||pool(x)||²``,
where ``lowpass`` is an ideal (FFT brick-wall) low-pass at half the input's
Nyquist frequency. An ideal anti-aliasing pooling scores 0.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import atomic_save_figure, atomic_write_json
from ..layers import LiftDownPool2d, LiftUpPool2d
from ..losses import lifting_loss
from ..pooling import MaxDownPool2d, MaxUpPool2d

__all__ = ["make_test_image", "ideal_lowpass", "aliasing_ratio", "run_demo", "add_arguments", "run"]


def make_test_image(size: int = 256) -> Tensor:
    """A grey-scale test picture in [0, 1], shape ``(1, 1, size, size)``.

    The left half is a zone plate (a chirp whose frequency grows to the input's
    Nyquist at the border, so any down-sampling aliases it), the right half holds
    a disc, a square, a triangle and thin bars.

    Examples:
        >>> img = make_test_image(64)
        >>> img.shape, float(img.min()) >= 0.0, float(img.max()) <= 1.0
        (torch.Size([1, 1, 64, 64]), True, True)
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    c = (size - 1) / 2
    r2 = (yy - c) ** 2 + (xx - c) ** 2
    zone = 0.5 + 0.5 * torch.cos(math.pi * r2 / (2 * size))
    img = zone.clone()
    right = xx > c
    shapes = torch.full_like(img, 0.15)
    shapes[((yy - 0.3 * size) ** 2 + (xx - 0.72 * size) ** 2) < (0.14 * size) ** 2] = 0.9
    sq = (yy > 0.55 * size) & (yy < 0.85 * size) & (xx > 0.58 * size) & (xx < 0.74 * size)
    shapes[sq] = 0.6
    tri = (
        (yy > 0.55 * size)
        & (yy < 0.85 * size)
        & (xx - 0.8 * size > -(yy - 0.55 * size) * 0.5)
        & (xx - 0.8 * size < (yy - 0.55 * size) * 0.5)
    )
    shapes[tri] = 1.0
    bars = (yy < 0.12 * size) & (xx > 0.55 * size) & ((xx.long() // 2) % 2 == 0)
    shapes[bars] = 0.8
    img[right] = shapes[right]
    return img.float().view(1, 1, size, size)


def load_image(path: str | Path) -> Tensor:
    """Read an image file as grey-scale ``(1, 1, H, W)`` in [0, 1] (needs Pillow)."""
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - pillow comes with the vision extra
        raise ImportError("reading --image needs Pillow: pip install 'liftpool[vision]'") from e
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--image: no such file: {p}")
    try:
        im = Image.open(p).convert("L")
    except Exception as e:
        raise ValueError(f"--image: cannot read {p} as an image ({e})") from e
    t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(1, 1, im.height, im.width)
    return t.float() / 255.0


def ideal_lowpass(x: Tensor) -> Tensor:
    """Ideal (FFT brick-wall) low-pass of ``x`` keeping frequencies below half its Nyquist."""
    h, w = x.shape[-2:]
    X = torch.fft.fft2(x.double())
    fy = torch.fft.fftfreq(h, dtype=torch.float64).abs().view(-1, 1)
    fx = torch.fft.fftfreq(w, dtype=torch.float64).abs().view(1, -1)
    mask = ((fy < 0.25) & (fx < 0.25)).to(X.dtype)
    return torch.fft.ifft2(X * mask).real.to(x.dtype)


def aliasing_ratio(pool: Callable[[Tensor], Tensor], x: Tensor) -> float:
    """``||pool(x) - pool(lowpass(x))||² / ||pool(x)||²`` (0 for an ideal anti-aliasing pool).

    Examples:
        >>> x = ideal_lowpass(torch.randn(1, 1, 32, 32))
        >>> round(aliasing_ratio(lambda t: F.avg_pool2d(t, 2), x), 6)  # nothing above Nyquist/2
        0.0
    """
    with torch.no_grad():
        y = pool(x)
        y_lo = pool(ideal_lowpass(x))
    return float((y - y_lo).pow(2).sum() / y.pow(2).sum().clamp_min(1e-30))


def _rel_rmse(a: Tensor, b: Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30))


def fit_lifting(layer: LiftDownPool2d, x: Tensor, steps: int, lr: float = 0.01) -> list[float]:
    """Fit a layer's P/U to one image by minimising its constraint loss (Adam)."""
    if steps <= 0:
        return []
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    layer.train()
    history = []
    for _ in range(steps):
        opt.zero_grad()
        layer(x)
        loss = lifting_loss(layer)
        loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward is untyped in torch's stubs
        opt.step()
        history.append(float(loss.detach()))
    layer.eval()
    return history


def run_demo(image: Tensor, *, fit_steps: int = 200, kernel_size: int = 5, seed: int = 0) -> dict[str, Any]:
    """Compute everything the figure shows; returns tensors under ``"maps"`` and numbers under ``"metrics"``."""
    torch.manual_seed(seed)
    x = image
    c = x.shape[1]
    lift = LiftDownPool2d(c, kernel_size, return_details=True, scale=0.25)
    history = fit_lifting(lift, x, fit_steps)
    cdf53 = LiftDownPool2d.from_wavelet("cdf53", c, return_details=True, scale=0.25)
    maxd = MaxDownPool2d(c, return_details=True)
    with torch.no_grad():
        y_max, max_det = maxd(x)
        y_avg = F.avg_pool2d(x, 2, ceil_mode=True)
        bands = lift.decompose(x)
        y_lift, det = lift(x)
        b53 = cdf53.decompose(x)
        up_max = MaxUpPool2d(maxd)(y_max, max_det)
        up_lift = LiftUpPool2d(lift)(bands.LL, det)
        zero = det._replace(LH=torch.zeros_like(det.LH), HL=torch.zeros_like(det.HL), HH=torch.zeros_like(det.HH))
        up_lift_ll = LiftUpPool2d(lift)(bands.LL, zero)
        up_53 = LiftUpPool2d(cdf53)(b53.LL, cdf53(x)[1])
        up_avg = F.interpolate(y_avg, size=x.shape[-2:], mode="nearest")

    def pooled(layer: LiftDownPool2d) -> Callable[[Tensor], Tensor]:
        return lambda t: layer(t)[0]

    metrics = {
        "MaxPool": {
            "aliasing": aliasing_ratio(lambda t: F.max_pool2d(t, 2, ceil_mode=True), x),
            "reconstruction": {"MaxUnpool": _rel_rmse(up_max, x)},
        },
        "AvgPool": {
            "aliasing": aliasing_ratio(lambda t: F.avg_pool2d(t, 2, ceil_mode=True), x),
            "reconstruction": {"nearest upsampling": _rel_rmse(up_avg, x)},
        },
        "LiftDownPool (learned)": {
            "aliasing": aliasing_ratio(pooled(lift), x),
            "aliasing_LL_only": aliasing_ratio(lambda t: lift.decompose(t).LL, x),
            "reconstruction": {
                "LiftUpPool": _rel_rmse(up_lift, x),
                "LiftUpPool, details zeroed": _rel_rmse(up_lift_ll, x),
            },
            "fit_loss_first_last": [history[0], history[-1]] if history else None,
        },
        "LiftDownPool (CDF 5/3)": {
            "aliasing": aliasing_ratio(pooled(cdf53), x),
            "aliasing_LL_only": aliasing_ratio(lambda t: cdf53.decompose(t).LL, x),
            "reconstruction": {"LiftUpPool": _rel_rmse(up_53, x)},
        },
    }
    maps = {
        "input": x, "MaxPool": y_max, "AvgPool": y_avg, "LiftDownPool": y_lift,
        "LL": bands.LL, "LH": bands.LH, "HL": bands.HL, "HH": bands.HH,
        "MaxUnpool": up_max, "LiftUpPool": up_lift, "LiftUpPool (details zeroed)": up_lift_ll,
    }
    return {"maps": maps, "metrics": metrics}


def save_figure(result: dict[str, Any], path: str | Path) -> Path:
    """Draw the Figure-1-like panel grid and write it atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps, m = result["maps"], result["metrics"]
    panels = [
        ("input", "Input", "gray"),
        ("MaxPool", f"MaxPool\naliasing {m['MaxPool']['aliasing']:.3f}", "gray"),
        ("AvgPool", f"AvgPool\naliasing {m['AvgPool']['aliasing']:.3f}", "gray"),
        (
            "LiftDownPool",
            f"LiftDownPool (sum of bands)\naliasing {m['LiftDownPool (learned)']['aliasing']:.3f}",
            "gray",
        ),
        ("LL", "LL (low W, low H)", "gray"),
        ("LH", "LH (low W, high H)", "RdBu_r"),
        ("HL", "HL (high W, low H)", "RdBu_r"),
        ("HH", "HH (high W, high H)", "RdBu_r"),
        ("MaxUnpool", f"MaxUnpool\nrel. error {m['MaxPool']['reconstruction']['MaxUnpool']:.3f}", "gray"),
        (
            "LiftUpPool",
            f"LiftUpPool (LL + details)\nrel. error {m['LiftDownPool (learned)']['reconstruction']['LiftUpPool']:.1e}",
            "gray",
        ),
        (
            "LiftUpPool (details zeroed)",
            "LiftUpPool, details zeroed\nrel. error "
            f"{m['LiftDownPool (learned)']['reconstruction']['LiftUpPool, details zeroed']:.3f}",
            "gray",
        ),
    ]
    fig, axes = plt.subplots(3, 4, figsize=(13, 10))
    for ax in axes.flat:
        ax.axis("off")
    slots = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    for slot, (key, title, cmap) in zip(slots, panels):
        ax = axes.flat[slot]
        img = maps[key][0, 0].detach().float().numpy()
        if cmap == "RdBu_r":
            v = float(abs(img).max()) or 1.0
            ax.imshow(img, cmap=cmap, vmin=-v, vmax=v, interpolation="nearest")
        else:
            ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    axes.flat[11].text(
        0.0,
        0.5,
        "Down-pooling: 2x in each axis.\nLiftDownPool: learned P/U fitted to\nthis image with c_u + c_p; "
        "output\nscaled by 1/4 to match AvgPool.\nAliasing: share of the pooled energy\ncaused by input frequencies "
        "above\nthe output's Nyquist (0 = ideal).",
        fontsize=9,
        va="center",
    )
    fig.suptitle("LiftPool demo: MaxPool vs AvgPool vs LiftDownPool, the four sub-bands, MaxUnpool vs LiftUpPool")
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=90)


def format_table(metrics: dict[str, Any]) -> str:
    rows = [
        "| method | aliasing: pooled output | aliasing: LL band alone | up-pooling | rel. reconstruction error |",
        "|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        ll = f"{m['aliasing_LL_only']:.4f}" if "aliasing_LL_only" in m else "-"
        for up, err in m["reconstruction"].items():
            rows.append(f"| {name} | {m['aliasing']:.4f} | {ll} | {up} | {err:.2e} |")
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image", type=str, default=None, help="your own image (grey-scale is used); default: a generated test picture"
    )
    parser.add_argument("--out", type=str, default="liftpool-demo.png", help="PNG to write (default: %(default)s)")
    parser.add_argument(
        "--size", type=int, default=256, help="side of the generated test picture (default: %(default)s)"
    )
    parser.add_argument(
        "--fit-steps", type=int, default=200, help="Adam steps fitting P/U to the image with the constraint loss"
    )
    parser.add_argument("--kernel-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="also write the numbers as JSON here")


def run(args: argparse.Namespace) -> int:
    if args.fit_steps < 0:
        raise SystemExit("liftpool demo: --fit-steps must be >= 0")
    try:
        image = load_image(args.image) if args.image else make_test_image(args.size)
    except ValueError as e:
        raise SystemExit(f"liftpool demo: {e}") from None
    result = run_demo(image, fit_steps=args.fit_steps, kernel_size=args.kernel_size, seed=args.seed)
    path = save_figure(result, args.out)
    src = args.image or f"generated test picture {args.size}x{args.size}"
    print(f"input: {src}")
    print(format_table(result["metrics"]))
    print(f"figure written to {path}")
    if args.json:
        atomic_write_json(args.json, result["metrics"])
    return 0
