"""Loops that run a model over a data loader: accuracy, shift consistency, corruptions,
perturbations and segmentation.

Every loader yields ``(images, targets)`` with **un-normalised** images (float in [0, 1],
``(N, 3, H, W)``): corruptions and shifts act on pixels, so input normalisation belongs to
the model; wrap a network trained on normalised inputs in :class:`Normalized`.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> class Constant(nn.Module):  # ignores its input
    ...     def forward(self, x):
    ...         return torch.tensor([[0.0, 1.0, 0.0]]).expand(x.shape[0], 3)
    >>> data = [(torch.rand(4, 3, 16, 16), torch.tensor([1, 1, 0, 2]))]
    >>> evaluate_shift_consistency(Constant(), data, max_shift=2, seed=0).consistency
    1.0
    >>> evaluate_accuracy(Constant(), data).top1_error
    0.5
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import corruptions as _corruptions_module
from .corruptions import ALL_CORRUPTIONS, Profile, corrupt
from .metrics import ConfusionMatrix, SegmentationScores, flip_rate, topk_correct
from .perturbations import PERTURBATIONS, flip_reference, perturbation_sequence

__all__ = [
    "AccuracyResult",
    "Normalized",
    "ShiftResult",
    "corrupted_copy",
    "draw_shift_offsets",
    "evaluate_accuracy",
    "evaluate_corruptions",
    "evaluate_perturbations",
    "evaluate_segmentation",
    "evaluate_shift_consistency",
    "model_output",
    "shifted_crops",
]

PadMode = Literal["reflect", "replicate", "zeros", "circular"]


class Normalized(nn.Module):
    """``model((x - mean) / std)``: feeds pixel-range images to a network trained on normalised ones."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor([float(m) for m in mean]).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor([float(s) for s in std]).reshape(1, -1, 1, 1)
        if mean_t.numel() != std_t.numel() or (std_t <= 0).any():
            raise ValueError(
                f"mean and std must have the same length and std > 0, got mean={list(mean)}, std={list(std)}"
            )
        self.model = model
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: Tensor) -> Any:
        mean, std = cast(Tensor, self.mean), cast(Tensor, self.std)  # registered buffers
        return self.model((x - mean.to(x.dtype)) / std.to(x.dtype))


def model_output(model: nn.Module, x: Tensor) -> Tensor:
    """Logits of ``model(x)``; accepts models returning a tensor, a tuple (first item) or a dict ("out")."""
    out = model(x)
    if isinstance(out, dict):
        out = out["out"]
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return logits as a tensor, got {type(out).__name__}")
    return out


def _device_of(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for p in list(model.parameters()) + list(model.buffers()):
        return p.device
    return torch.device("cpu")


def _batches(loader: Iterable[Any], progress: bool, desc: str, total: int | None = None) -> Iterable[Any]:
    if not progress:
        return loader
    from tqdm.auto import tqdm

    if total is None:
        try:
            total = len(loader)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return tqdm(loader, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _check_images(images: Any) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(
            "the loader must yield float image batches (N, C, H, W) in [0, 1], got "
            f"{getattr(images, 'shape', type(images))}"
        )
    return images


class AccuracyResult(NamedTuple):
    """Top-1/top-5 error (fractions) over ``images`` samples."""

    top1_error: float
    top5_error: float
    top1_accuracy: float
    images: int


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> AccuracyResult:
    """Top-1 / top-5 error of ``model`` on ``loader`` (top-5 counts a hit when the target is
    among the ``min(5, classes)`` highest logits)."""
    dev = _device_of(model, device)
    n = c1 = c5 = 0
    for images, targets in _batches(loader, progress, "accuracy"):
        logits = model_output(model, _check_images(images).to(dev))
        hits = topk_correct(logits.float().cpu(), targets.cpu(), ks=(1, 5))
        n += int(targets.shape[0])
        c1 += hits[1]
        c5 += hits[5]
    if n == 0:
        raise ValueError("the loader yielded no images")
    return AccuracyResult(top1_error=1 - c1 / n, top5_error=1 - c5 / n, top1_accuracy=c1 / n, images=n)


def draw_shift_offsets(
    n: int, range_h: int, range_w: int, *, per_image: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Two ``(n, 2)`` int64 offset tables ``(top, left)`` with values in ``0..range`` inclusive.

    ``per_image=False`` repeats one draw for the whole batch (Zhang 2019's protocol)."""
    rows = n if per_image else 1
    hi = torch.tensor([range_h + 1, range_w + 1])
    a = (torch.rand(rows, 2, generator=generator, dtype=torch.float64) * hi).long().clamp_max(hi - 1)
    b = (torch.rand(rows, 2, generator=generator, dtype=torch.float64) * hi).long().clamp_max(hi - 1)
    return a.expand(n, 2), b.expand(n, 2)


def shifted_crops(
    images: Tensor, offsets: Tensor, crop: tuple[int, int], *, pad: int = 0, pad_mode: PadMode = "reflect"
) -> Tensor:
    """Crop ``crop`` (h, w) windows at ``offsets[i] = (top, left)`` of each image, after padding
    every side by ``pad`` pixels (``pad_mode``)."""
    if pad > 0:
        mode = "constant" if pad_mode == "zeros" else pad_mode
        images = F.pad(images, (pad, pad, pad, pad), mode=mode)
    ch, cw = crop
    if offsets.shape != (images.shape[0], 2):
        raise ValueError(f"offsets must be ({images.shape[0]}, 2), got {tuple(offsets.shape)}")
    if (
        (offsets < 0).any()
        or (offsets[:, 0] + ch > images.shape[2]).any()
        or (offsets[:, 1] + cw > images.shape[3]).any()
    ):
        raise ValueError("a crop window falls outside the (padded) image")
    if bool((offsets == offsets[:1]).all()):
        top, left = (int(v) for v in offsets[0])
        return images[:, :, top : top + ch, left : left + cw]
    return torch.stack(
        [img[:, int(top) : int(top) + ch, int(left) : int(left) + cw] for img, (top, left) in zip(images, offsets)]
    )


class ShiftResult(NamedTuple):
    """Shift consistency (Zhang 2019) and the top-1 accuracy on the shifted crops."""

    consistency: float
    shifted_accuracy: float
    images: int
    max_shift: int
    crop: tuple[int, int] | None
    pad_mode: str
    per_image: bool
    seed: int
    image_size: tuple[int, int] | None = None  # (H, W) of the images the windows were cut from


@torch.no_grad()
def evaluate_shift_consistency(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    max_shift: int | None = 4,
    crop: int | tuple[int, int] | None = None,
    pad_mode: PadMode = "reflect",
    per_image: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> ShiftResult:
    """How often the top-1 class agrees for two random shifts of the same image.

    Two modes:

    * ``crop=None`` (CIFAR-style): each image is padded by ``max_shift`` pixels per side
      (``pad_mode``) and two windows of the original size are cut at offsets drawn
      uniformly from ``0..2*max_shift``: shifts of ``-max_shift..max_shift`` pixels.
    * ``crop=S`` or ``(h, w)`` (ImageNet-style, Zhang 2019: 256-pixel images, 224 crops): two
      windows of size ``crop`` are cut from the unpadded image at offsets drawn from
      ``0..H-h`` (limited to ``2*max_shift`` around the centre when ``max_shift`` is given).

    Offsets are drawn once per batch like the original code, or per image with
    ``per_image=True``, from a ``torch.Generator`` seeded with ``seed`` (reproducible).
    ``shifted_accuracy`` is the top-1 accuracy averaged over both windows.
    """
    if pad_mode not in ("reflect", "replicate", "zeros", "circular"):
        raise ValueError(f"pad_mode must be reflect, replicate, zeros or circular, got {pad_mode!r}")
    if max_shift is not None and (isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0):
        raise ValueError(f"max_shift must be a non-negative int or None, got {max_shift!r}")
    if crop is None and max_shift is None:
        raise ValueError("give max_shift (pad-and-crop mode) or crop (crop-inside mode)")
    crop_hw: tuple[int, int] | None
    if crop is None:
        crop_hw = None
    elif isinstance(crop, int) and not isinstance(crop, bool):
        crop_hw = (crop, crop)
    elif isinstance(crop, (tuple, list)) and len(crop) == 2 and all(isinstance(c, int) for c in crop):
        crop_hw = (int(crop[0]), int(crop[1]))
    else:
        raise ValueError(f"crop must be an int, an (h, w) pair or None, got {crop!r}")
    if crop_hw is not None and min(crop_hw) < 1:
        raise ValueError(f"crop must be positive, got {crop_hw}")
    dev = _device_of(model, device)
    gen = torch.Generator().manual_seed(int(seed))
    n = agree = correct = 0
    seen_size: tuple[int, int] | None = None
    for images, targets in _batches(loader, progress, "shift"):
        images = _check_images(images)
        b, _, h, w = images.shape
        seen_size = (h, w)
        if crop_hw is None:
            pad, size = int(max_shift or 0), (h, w)
            if pad_mode == "reflect" and pad >= min(h, w):
                raise ValueError(f"max_shift={pad} must be smaller than the image side {min(h, w)} for reflect padding")
            base = torch.zeros(1, 2, dtype=torch.long)
            rng_h = rng_w = 2 * pad
        else:
            pad, size = 0, crop_hw
            if size[0] > h or size[1] > w:
                raise ValueError(f"crop {size} is larger than the images ({h}, {w})")
            full_h, full_w = h - size[0], w - size[1]
            rng_h = full_h if max_shift is None else min(full_h, 2 * max_shift)
            rng_w = full_w if max_shift is None else min(full_w, 2 * max_shift)
            base = torch.tensor([[(full_h - rng_h) // 2, (full_w - rng_w) // 2]])
        off_a, off_b = draw_shift_offsets(b, rng_h, rng_w, per_image=per_image, generator=gen)
        xa = shifted_crops(images, off_a + base, size, pad=pad, pad_mode=pad_mode)
        xb = shifted_crops(images, off_b + base, size, pad=pad, pad_mode=pad_mode)
        pa = model_output(model, xa.to(dev)).argmax(dim=1).cpu()
        pb = model_output(model, xb.to(dev)).argmax(dim=1).cpu()
        t = targets.cpu()
        agree += int((pa == pb).sum())
        correct += int((pa == t).sum()) + int((pb == t).sum())
        n += b
    if n == 0:
        raise ValueError("the loader yielded no images")
    return ShiftResult(
        consistency=agree / n,
        shifted_accuracy=correct / (2 * n),
        images=n,
        max_shift=int(max_shift) if max_shift is not None else -1,
        crop=crop_hw,
        pad_mode=pad_mode,
        per_image=per_image,
        seed=int(seed),
        image_size=seen_size,
    )


def _seed_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *[int(k) for k in keys]]))


def _corruption_cache_key(batches: Sequence[Tensor], seed: int, profile: str) -> str:
    """What the cached corrupted copies depend on: the clean pixels and how they are batched (batch
    ``k`` draws from the generator seeded by ``(seed, c, s, k)``), the seed, the severity table and
    the corruption code itself."""
    h = hashlib.sha256()
    h.update(f"{seed}/{profile}/{[tuple(b.shape) for b in batches]}/{batches[0].dtype}".encode())
    h.update(hashlib.sha256(Path(_corruptions_module.__file__).read_bytes()).digest())
    for b in batches:
        h.update(b.contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def corrupted_copy(
    batches: Sequence[Tensor], name: str, severity: int, *, seed: int = 0, profile: Profile = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
) -> Tensor:  # fmt: skip
    """All ``batches`` (clean pixels) under one corruption and severity, concatenated.

    Batch ``k`` is corrupted with the generator seeded by ``(seed, c, severity, k)``, exactly as
    :func:`evaluate_corruptions` does.  With ``cache_dir`` the result is read from (or written to,
    atomically) ``<cache_dir>/<key>/<name>-s<severity>.npy``, keyed by the pixels, their batching,
    the seed, the profile and the corruption code, so a cached copy is bit-identical to a new one.
    """
    cidx = ALL_CORRUPTIONS.index(name)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / _corruption_cache_key(batches, seed, profile) / f"{name}-s{severity}.npy"
        if path.is_file():
            try:
                arr = np.load(path)
                want = (sum(b.shape[0] for b in batches), *batches[0].shape[1:])
                if arr.shape == want and arr.dtype == batches[0].numpy().dtype:
                    return torch.from_numpy(arr)
            except (OSError, ValueError):
                pass  # unreadable: regenerate below
    x = torch.cat([corrupt(b, name, severity, rng=_seed_for(seed, cidx, severity, k), profile=profile)
                   for k, b in enumerate(batches)])  # fmt: skip
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, x.numpy())
        os.replace(tmp, path)
    return x


@torch.no_grad()
def evaluate_corruptions(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    corruptions: Sequence[str] = ALL_CORRUPTIONS,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    profile: Profile = "auto",
    device: torch.device | str | None = None,
    progress: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, list[float]]:
    """Top-1 error under each corruption at each severity: ``{name: [error per severity]}``.

    The images of batch ``k`` under corruption ``c`` at severity ``s`` use a numpy generator
    seeded by ``(seed, c, s, k)``, so results do not depend on evaluation order.  With
    ``cache_dir`` the corrupted copies are generated once and reused from disk by every later
    evaluation of the same images (:func:`corrupted_copy`): the evaluation is then forward
    passes only, with the same result.
    """
    unknown = [c for c in corruptions if c not in ALL_CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruptions {unknown}; choose from {', '.join(ALL_CORRUPTIONS)}")
    if not corruptions or not severities or any(s not in (1, 2, 3, 4, 5) for s in severities):
        raise ValueError(
            f"need at least one corruption and severities in 1..5, got {list(corruptions)}, {list(severities)}"
        )
    dev = _device_of(model, device)
    wrong = {c: [0] * len(severities) for c in corruptions}
    n = 0
    if cache_dir is not None:
        pairs = [(_check_images(images).cpu(), targets.cpu()) for images, targets in loader]
        if not pairs:
            raise ValueError("the loader yielded no images")
        batches = [p[0] for p in pairs]
        t_all = torch.cat([p[1] for p in pairs])
        n = int(t_all.shape[0])
        bounds = np.cumsum([0] + [b.shape[0] for b in batches]).tolist()
        todo = [(c, si, sev) for c in corruptions for si, sev in enumerate(severities)]
        for name, si, sev in _batches(todo, progress, "corruptions", total=len(todo)):
            x = corrupted_copy(batches, name, sev, seed=seed, profile=profile, cache_dir=cache_dir)
            for a, b in zip(bounds[:-1], bounds[1:]):
                pred = model_output(model, x[a:b].to(dev)).argmax(dim=1).cpu()
                wrong[name][si] += int((pred != t_all[a:b]).sum())
        return {c: [w / n for w in wrong[c]] for c in corruptions}
    for k, (images, targets) in enumerate(_batches(loader, progress, "corruptions")):
        images = _check_images(images).cpu()
        t = targets.cpu()
        n += images.shape[0]
        for name in corruptions:
            cidx = ALL_CORRUPTIONS.index(name)
            for si, sev in enumerate(severities):
                x = corrupt(images, name, sev, rng=_seed_for(seed, cidx, sev, k), profile=profile)
                pred = model_output(model, x.to(dev)).argmax(dim=1).cpu()
                wrong[name][si] += int((pred != t).sum())
    if n == 0:
        raise ValueError("the loader yielded no images")
    return {c: [w / n for w in wrong[c]] for c in corruptions}


@torch.no_grad()
def evaluate_perturbations(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Any]],
    *,
    perturbations: Sequence[str] = PERTURBATIONS,
    frames: int = 10,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Flip rate per perturbation type over one generated sequence per image (labels unused)."""
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown or not perturbations:
        raise ValueError(f"unknown perturbations {unknown}; choose from {', '.join(PERTURBATIONS)}")
    dev = _device_of(model, device)
    preds: dict[str, list[Tensor]] = {p: [] for p in perturbations}
    img_index = 0
    for images, _ in _batches(loader, progress, "perturbations"):
        images = _check_images(images).cpu()
        for img in images:
            for pi, name in enumerate(perturbations):
                seq = perturbation_sequence(img, name, frames=frames, rng=_seed_for(seed, pi, img_index))
                preds[name].append(model_output(model, seq.to(dev)).argmax(dim=1).cpu())
            img_index += 1
    if img_index == 0:
        raise ValueError("the loader yielded no images")
    return {p: flip_rate(torch.stack(preds[p]), reference=flip_reference(p)) for p in perturbations}


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    num_classes: int,
    ignore_index: int | None = 255,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> SegmentationScores:
    """Per-class IoU, mIoU and pixel accuracy over ``loader`` (void pixels ignored); logits of a
    different size than the labels are resized bilinearly first."""
    dev = _device_of(model, device)
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for images, labels in _batches(loader, progress, "segmentation"):
        logits = model_output(model, _check_images(images).to(dev))
        if logits.dim() != 4 or logits.shape[1] != num_classes:
            raise ValueError(f"segmentation logits must be (N, {num_classes}, H, W), got {tuple(logits.shape)}")
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False)
        cm.update(logits.argmax(dim=1).cpu(), labels.cpu())
    return cm.compute()
