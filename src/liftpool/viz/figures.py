"""The paper's figures as reusable PNG writers (matplotlib, Agg backend).

* :func:`plot_subbands` - a trained LiftDownPool layer's four sub-bands (paper Fig. 3);
* :func:`plot_pooled_feature_maps` - MaxPool vs LiftDownPool feature maps (Fig. 7);
* :func:`plot_metric_per_type` - CE per corruption / FR per perturbation per method (Fig. 9);
* :func:`plot_consistency_vs_accuracy` - shift consistency vs accuracy per method (Fig. 4);
* :func:`plot_segmentation_overlays` - predictions of several up-poolings vs ground truth (Fig. 5).

:func:`capture_first_pool` hooks the first down-pooling layer of a network to get the
feature maps these figures show.  Every writer saves atomically (temp file + ``os.replace``)
and returns the path.

Examples:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = plot_consistency_vs_accuracy({"max": (0.90, 0.85), "lift": (0.92, 0.91)}, os.path.join(d, "c.png"))
    >>> open(p, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..io import atomic_save_figure

__all__ = [
    "CAMVID_PALETTE",
    "PoolCapture",
    "capture_first_pool",
    "colorize_labels",
    "plot_consistency_vs_accuracy",
    "plot_metric_per_type",
    "plot_pooled_feature_maps",
    "plot_segmentation_overlays",
    "plot_subbands",
    "save_figure",
]

#: SegNet-tutorial colours of the 11 CamVid classes (sky, building, pole, road, pavement,
#: tree, sign, fence, car, pedestrian, bicyclist); void is drawn black.
CAMVID_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    return atomic_save_figure(fig, path, dpi=dpi, bbox_inches="tight")


def _to_hw(t: Tensor | np.ndarray) -> np.ndarray:
    a = t.detach().float().cpu().numpy() if isinstance(t, Tensor) else np.asarray(t, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D map (H, W), got shape {a.shape}")
    return a


def _image_hwc(image: Tensor | np.ndarray) -> np.ndarray:
    a = image.detach().float().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"image must be (3, H, W), (H, W, 3) or (H, W), got shape {a.shape}")
    if a.max() > 1.0 + 1e-6:
        a = a / 255.0
    return np.clip(a, 0, 1)


def _show(ax: Any, a: np.ndarray, title: str | None = None, cmap: str = "viridis", symmetric: bool = False) -> None:
    if a.ndim == 2:
        if symmetric:
            lim = float(np.abs(a).max()) or 1.0
            ax.imshow(a, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            ax.imshow(a, cmap=cmap, interpolation="nearest")
    else:
        ax.imshow(a, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


class PoolCapture(NamedTuple):
    """The first down-pooling layer met in a forward pass, its input and its output."""

    name: str
    module: nn.Module
    input: Tensor
    output: Tensor


def _is_down_pool(m: nn.Module) -> bool:
    from ..layers import LiftDownPoolNd
    from ..pooling import POOLS

    pool_types = tuple(t for t in POOLS.values() if isinstance(t, type))
    return isinstance(m, (LiftDownPoolNd, nn.MaxPool2d, nn.AvgPool2d, *pool_types))


@torch.no_grad()
def capture_first_pool(model: nn.Module, x: Tensor) -> PoolCapture:
    """Run ``model(x)`` and return the input/output of the first down-pooling layer executed
    (a liftpool pool, ``nn.MaxPool2d`` or ``nn.AvgPool2d``)."""
    names = {m: n for n, m in model.named_modules()}
    found: list[PoolCapture] = []
    handles = []

    def hook(mod: nn.Module, inp: tuple[Tensor, ...], out: Any) -> None:
        if not found:
            o = out[0] if isinstance(out, tuple) else out
            found.append(PoolCapture(names.get(mod, type(mod).__name__), mod, inp[0].detach(), o.detach()))

    for m in model.modules():
        if _is_down_pool(m):
            handles.append(m.register_forward_hook(hook))
    try:
        was_training = model.training
        model.eval()
        model(x)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise ValueError(f"{type(model).__name__} has no down-pooling layer that ran in the forward pass")
    return found[0]


def plot_subbands(
    bands: Any,
    path: str | os.PathLike[str],
    *,
    channels: Sequence[int] | None = None,
    image: Tensor | np.ndarray | None = None,
    feature: Tensor | None = None,
    title: str | None = None,
) -> Path:
    """Fig. 3: the LL, LH, HL, HH sub-bands of selected channels of one image.

    Args:
        bands: a :class:`liftpool.Bands2d` (from ``LiftDownPool2d.decompose``) or a mapping
            with keys ``LL, LH, HL, HH``; tensors ``(N, C, h, w)`` (image 0 is shown) or ``(C, h, w)``.
        channels: channels to show, one row each (default: the 4 with most detail energy).
        image: optional input picture drawn at the top left.
        feature: optional layer input ``(C, H, W)`` or ``(N, C, H, W)`` drawn as a first column.
    """
    def get(k: str) -> Any:
        return bands[k] if isinstance(bands, Mapping) else getattr(bands, k)

    maps = {}
    for k in ("LL", "LH", "HL", "HH"):
        t = get(k)
        if not isinstance(t, Tensor) or t.dim() not in (3, 4):
            raise ValueError(f"band {k} must be a tensor (N, C, h, w) or (C, h, w)")
        maps[k] = (t[0] if t.dim() == 4 else t).detach().float().cpu()
    c = maps["LL"].shape[0]
    if channels is None:
        energy = (maps["LH"] ** 2).mean(dim=(1, 2)) + (maps["HL"] ** 2).mean(dim=(1, 2)) + (maps["HH"] ** 2).mean(
            dim=(1, 2)
        )
        channels = energy.argsort(descending=True)[: min(4, c)].tolist()
    channels = [int(ch) for ch in channels]
    if not channels or any(not 0 <= ch < c for ch in channels):
        raise ValueError(f"channels must be indices in 0..{c - 1}, got {channels}")
    feat = None
    if feature is not None:
        feat = (feature[0] if feature.dim() == 4 else feature).detach().float().cpu()
    cols = 4 + (feat is not None) + (image is not None)
    plt = _plt()
    fig, axes = plt.subplots(len(channels), cols, figsize=(2.0 * cols, 2.0 * len(channels)), squeeze=False)
    for r, ch in enumerate(channels):
        j = 0
        if image is not None:
            if r == 0:
                _show(axes[r][j], _image_hwc(image), "input image")
            else:
                axes[r][j].axis("off")
            j += 1
        if feat is not None:
            _show(axes[r][j], feat[ch].numpy(), f"layer input, ch {ch}", cmap="gray")
            j += 1
        for k in ("LL", "LH", "HL", "HH"):
            _show(
                axes[r][j],
                maps[k][ch].numpy(),
                f"{k}, ch {ch}",
                cmap="gray" if k == "LL" else "RdBu_r",
                symmetric=k != "LL",
            )
            j += 1
    fig.suptitle(title or "LiftDownPool sub-bands (first letter: W step, second: H step)", fontsize=10)
    return save_figure(fig, path)


def plot_pooled_feature_maps(
    maps: Mapping[str, Tensor],
    path: str | os.PathLike[str],
    *,
    image: Tensor | np.ndarray | None = None,
    channels: Sequence[int] = (0, 1, 2, 3),
    title: str | None = None,
) -> Path:
    """Fig. 7: feature maps after the first pooling layer, one column per method.

    ``maps``: method label -> ``(C, h, w)`` or ``(N, C, h, w)`` (image 0) pooled features (for
    LiftDownPool the paper shows the LL band).  One row per channel in ``channels``.
    """
    if not maps:
        raise ValueError("maps must hold at least one method")
    mats = {}
    for k, t in maps.items():
        if not isinstance(t, Tensor) or t.dim() not in (3, 4):
            raise ValueError(f"maps[{k!r}] must be a tensor (C, h, w) or (N, C, h, w)")
        mats[k] = (t[0] if t.dim() == 4 else t).detach().float().cpu()
    channels = [int(c) for c in channels if all(int(c) < m.shape[0] for m in mats.values())]
    if not channels:
        raise ValueError("no requested channel exists in every map")
    cols = len(mats) + (image is not None)
    plt = _plt()
    fig, axes = plt.subplots(len(channels), cols, figsize=(2.2 * cols, 2.2 * len(channels)), squeeze=False)
    for r, ch in enumerate(channels):
        j = 0
        if image is not None:
            if r == 0:
                _show(axes[r][j], _image_hwc(image), "input")
            else:
                axes[r][j].axis("off")
            j += 1
        for k, m in mats.items():
            _show(axes[r][j], m[ch].numpy(), k.replace(": ", "\n") if r == 0 else None, cmap="gray")
            if j == (image is not None):
                axes[r][j].set_ylabel(f"channel {ch}", fontsize=9)
            j += 1
    fig.suptitle(title or "Feature maps after the first pooling layer", fontsize=10)
    return save_figure(fig, path)


def plot_metric_per_type(
    values: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike[str],
    *,
    ylabel: str,
    title: str | None = None,
    percent: bool = True,
) -> Path:
    """Fig. 9: grouped bars, one group per corruption/perturbation type, one bar per method.

    ``values``: method -> {type -> value} (e.g. CE per corruption, FR per perturbation).
    """
    if not values or not any(values.values()):
        raise ValueError("values must map at least one method to at least one type")
    types: list[str] = []
    for v in values.values():
        types += [t for t in v if t not in types]
    methods = list(values)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(types) * max(1, len(methods)) ** 0.5 + 2), 3.6))
    width = 0.8 / len(methods)
    x = np.arange(len(types))
    scale = 100.0 if percent else 1.0
    for i, m in enumerate(methods):
        ys = [values[m].get(t, np.nan) * scale for t in types]
        ax.bar(x - 0.4 + width * (i + 0.5), ys, width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels([t.replace("_", " ") for t in types], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_consistency_vs_accuracy(
    points: Mapping[str, tuple[float, float]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Fig. 4: one point per method at (top-1 accuracy, shift consistency), both in %."""
    if not points:
        raise ValueError("points must hold at least one method")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    for label, (acc, cons) in points.items():
        ax.scatter([acc * 100], [cons * 100], s=50)
        ax.annotate(label, (acc * 100, cons * 100), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel("top-1 accuracy on the shifted crops (%)")
    ax.set_ylabel("shift consistency (%)")
    ax.grid(alpha=0.3)
    ax.margins(0.25)
    ax.set_title(title or "Shift consistency vs accuracy", fontsize=10)
    return save_figure(fig, path)


def colorize_labels(
    labels: Tensor | np.ndarray,
    *,
    palette: Sequence[tuple[int, int, int]] | None = None,
    ignore_index: int | None = 255,
) -> np.ndarray:
    """Label map ``(H, W)`` -> RGB ``(H, W, 3)`` floats; ``ignore_index`` (void) is black.

    Classes beyond the palette get colours from matplotlib's ``tab20``.
    """
    lab = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {lab.shape}")
    pal = [tuple(c) for c in (palette or CAMVID_PALETTE)]
    top = int(lab[lab != ignore_index].max()) + 1 if (lab != ignore_index).any() else 0
    if top > len(pal):
        cmap = _plt().get_cmap("tab20")
        pal += [tuple(int(255 * v) for v in cmap(i % 20)[:3]) for i in range(top - len(pal))]
    lut = np.array(pal + [(0, 0, 0)], dtype=np.float32) / 255.0
    idx = np.where((lab == ignore_index) | (lab < 0) | (lab >= len(pal)), len(pal), lab).astype(np.int64)
    return lut[idx]


def plot_segmentation_overlays(
    images: Sequence[Tensor] | Tensor,
    predictions: Mapping[str, Sequence[Tensor] | Tensor],
    ground_truth: Sequence[Tensor] | Tensor,
    path: str | os.PathLike[str],
    *,
    palette: Sequence[tuple[int, int, int]] | None = None,
    class_names: Sequence[str] | None = None,
    ignore_index: int | None = 255,
    alpha: float = 0.6,
    title: str | None = None,
) -> Path:
    """Fig. 5: one row per example: the image, each method's prediction over it, the ground truth.

    ``images``: ``(N, 3, H, W)`` or a list of ``(3, H, W)`` in [0, 1]; ``predictions``:
    method label (e.g. "MaxUnpool", "MaxUnpool+Blur", "LiftUpPool") -> ``(N, H, W)`` label
    maps; ``ground_truth``: ``(N, H, W)`` with ``ignore_index`` for void.
    """
    imgs = list(images)
    gts = list(ground_truth)
    preds = {k: list(v) for k, v in predictions.items()}
    if not imgs or len(gts) != len(imgs) or any(len(v) != len(imgs) for v in preds.values()):
        raise ValueError("images, ground_truth and every prediction list must have the same non-zero length")
    cols = 2 + len(preds)
    plt = _plt()
    fig, axes = plt.subplots(len(imgs), cols, figsize=(2.6 * cols, 2.1 * len(imgs) + 0.6), squeeze=False)
    for r, (img, gt) in enumerate(zip(imgs, gts)):
        base = _image_hwc(img)
        if base.ndim == 2:
            base = np.stack([base] * 3, axis=-1)
        _show(axes[r][0], base, "image" if r == 0 else None)
        for j, (k, v) in enumerate(preds.items(), start=1):
            col = colorize_labels(v[r], palette=palette, ignore_index=ignore_index)
            if col.shape[:2] != base.shape[:2]:
                raise ValueError(f"prediction {k!r} #{r} is {col.shape[:2]}, the image {base.shape[:2]}")
            _show(axes[r][j], (1 - alpha) * base + alpha * col, k if r == 0 else None)
        col = colorize_labels(gt, palette=palette, ignore_index=ignore_index)
        _show(axes[r][-1], (1 - alpha) * base + alpha * col, "ground truth" if r == 0 else None)
    if class_names:
        from matplotlib.patches import Patch

        pal = colorize_labels(np.arange(len(class_names))[None, :], palette=palette, ignore_index=None)[0]
        handles = [Patch(color=pal[i], label=n) for i, n in enumerate(class_names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    fig.suptitle(title or "Segmentation: predictions vs ground truth", fontsize=10)
    return save_figure(fig, path)
