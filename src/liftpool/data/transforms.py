"""Input pipelines: CIFAR and ImageNet-style classification transforms, joint
(image, label) segmentation transforms.

All randomness comes from torch's global generator, which
:class:`liftpool.data.SeededDataset` seeds per ``(seed, epoch, index)`` so that an
augmented sample does not depend on worker count, rank layout or resumption.

Examples:
    >>> from PIL import Image
    >>> import numpy as np, torch
    >>> img = Image.fromarray(np.zeros((20, 30, 3), np.uint8))
    >>> lbl = Image.fromarray(np.ones((20, 30), np.uint8))
    >>> t = segmentation_transform(train=True, crop_size=(16, 16), mean=(0, 0, 0), std=(1, 1, 1))
    >>> x, y = t(img, lbl)
    >>> x.shape, y.shape, y.dtype
    (torch.Size([3, 16, 16]), torch.Size([16, 16]), torch.int64)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T
from torchvision.transforms import functional as TF

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Augment",
    "JointCompose",
    "JointRandomHorizontalFlip",
    "JointRandomCrop",
    "JointRandomScale",
    "JointCenterCrop",
    "JointPad",
    "JointToTensor",
    "classification_transform",
    "default_val_resize",
    "segmentation_transform",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: label value ignored by the segmentation loss and mIoU (void / object boundary)
IGNORE_INDEX = 255

Augment = Literal["cifar", "imagenet", "none"]


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std must have 3 values (RGB), got mean={mean}, std={std}")
    if any(not s > 0 for s in std):
        raise ValueError(f"std values must be > 0, got {std}")
    return mean, std


def classification_transform(
    augment: Augment,
    *,
    train: bool,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    val_resize: int | None = None,
    padding: int = 4,
) -> Callable[[Image.Image], Tensor]:
    """PIL image -> normalised ``(3, S, S)`` float tensor.

    ``augment="cifar"``: train = random crop ``image_size`` with ``padding`` zero pad +
    horizontal flip; val = resize/centre crop to ``image_size`` (identity on native
    CIFAR).  ``"imagenet"``: train = RandomResizedCrop(``image_size``) + flip; val =
    resize to ``val_resize`` (default ``image_size * 256 / 224``) + centre crop.
    ``"none"``: resize + centre crop only.
    """
    if augment not in ("cifar", "imagenet", "none"):
        raise ValueError(f"augment must be 'cifar', 'imagenet' or 'none', got {augment!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    mean, std = _check_stats(mean, std)
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if val_resize is None:
        val_resize = default_val_resize(augment, image_size)
    if train and augment == "cifar":
        return T.Compose(
            [
                T.Resize(image_size),
                T.CenterCrop(image_size),
                T.RandomCrop(image_size, padding=padding),
                T.RandomHorizontalFlip(),
                *tail,
            ]
        )
    if train and augment == "imagenet":
        return T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *tail])
    return T.Compose([T.Resize(val_resize), T.CenterCrop(image_size), *tail])


def default_val_resize(augment: Augment, image_size: int) -> int:
    """Validation resize before the centre crop: ``image_size`` for CIFAR, ``image_size * 256 / 224`` otherwise.

    Examples:
        >>> default_val_resize("imagenet", 224), default_val_resize("cifar", 32)
        (256, 32)
    """
    return image_size if augment == "cifar" else int(math.floor(image_size * 256 / 224 + 0.5))


# ---------------------------------------------------------------- segmentation: joint transforms
Pair = tuple[Any, Any]


class JointCompose:
    """Apply joint transforms ``t(image, label) -> (image, label)`` in order."""

    def __init__(self, transforms: Sequence[Callable[[Any, Any], Pair]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Any, label: Any) -> Pair:
        for t in self.transforms:
            image, label = t(image, label)
        return image, label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms})"


class JointRandomScale:
    """Resize both by one factor ``s ~ U(min, max)``: image bilinear, label nearest."""

    def __init__(self, scale_range: Sequence[float]) -> None:
        lo, hi = (float(v) for v in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {tuple(scale_range)}")
        self.lo, self.hi = lo, hi

    def __call__(self, image: Image.Image, label: Image.Image) -> Pair:
        if self.lo == self.hi == 1.0:
            return image, label
        s = self.lo + (self.hi - self.lo) * float(torch.rand(()))
        w, h = image.size
        size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
        return image.resize(size, Image.Resampling.BILINEAR), label.resize(size, Image.Resampling.NEAREST)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.lo}, {self.hi})"


class JointPad:
    """Pad right/bottom up to at least ``(H, W)``: image with 0, label with ``ignore_index``."""

    def __init__(self, size: Sequence[int], ignore_index: int = IGNORE_INDEX) -> None:
        self.h, self.w = (int(v) for v in size)
        self.ignore_index = int(ignore_index)

    def __call__(self, image: Image.Image, label: Image.Image) -> Pair:
        w, h = image.size
        ph, pw = max(self.h - h, 0), max(self.w - w, 0)
        if ph or pw:
            image = TF.pad(image, [0, 0, pw, ph], fill=0)
            label = TF.pad(label, [0, 0, pw, ph], fill=self.ignore_index)
        return image, label


class JointRandomCrop:
    """Crop the same random ``(H, W)`` window from both (inputs must be at least that big)."""

    def __init__(self, size: Sequence[int]) -> None:
        self.h, self.w = (int(v) for v in size)

    def __call__(self, image: Image.Image, label: Image.Image) -> Pair:
        w, h = image.size
        top = int(torch.randint(0, h - self.h + 1, ())) if h > self.h else 0
        left = int(torch.randint(0, w - self.w + 1, ())) if w > self.w else 0
        box = (left, top, left + self.w, top + self.h)
        return image.crop(box), label.crop(box)


class JointCenterCrop:
    """Crop the central ``(H, W)`` window from both."""

    def __init__(self, size: Sequence[int]) -> None:
        self.size = [int(v) for v in size]

    def __call__(self, image: Image.Image, label: Image.Image) -> Pair:
        return TF.center_crop(image, self.size), TF.center_crop(label, self.size)


class JointRandomHorizontalFlip:
    """Mirror both left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = float(p)

    def __call__(self, image: Image.Image, label: Image.Image) -> Pair:
        if float(torch.rand(())) < self.p:
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), label.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return image, label


class JointToTensor:
    """Image -> normalised float ``(3, H, W)``; label -> int64 ``(H, W)`` (values unchanged)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = _check_stats(mean, std)

    def __call__(self, image: Image.Image, label: Image.Image) -> tuple[Tensor, Tensor]:
        x = TF.normalize(TF.to_tensor(image), self.mean, self.std)
        y = torch.from_numpy(np.array(label, dtype=np.int64, copy=True))
        if y.shape != x.shape[1:]:
            raise ValueError(f"label size {tuple(y.shape)} differs from image size {tuple(x.shape[1:])}")
        return x, y


def segmentation_transform(
    *,
    train: bool,
    crop_size: Sequence[int] | None,
    mean: Sequence[float],
    std: Sequence[float],
    scale_range: Sequence[float] = (1.0, 1.0),
    hflip: bool = True,
    ignore_index: int = IGNORE_INDEX,
) -> JointCompose:
    """Joint ``(PIL image, PIL label) -> (float (3,H,W), int64 (H,W))`` pipeline.

    Train: random scale in ``scale_range`` -> pad to ``crop_size`` (label pad =
    ``ignore_index``) -> random crop -> random horizontal flip.  Val: pad + centre crop
    to ``crop_size`` (so variable-size images batch), or the full image when
    ``crop_size`` is ``None``.  ``crop_size`` is ``(H, W)``.
    """
    if crop_size is not None:
        crop_size = tuple(int(v) for v in crop_size)
        if len(crop_size) != 2 or min(crop_size) < 1:
            raise ValueError(f"crop_size must be (H, W) positive ints, got {crop_size}")
    ops: list[Callable[[Any, Any], Pair]] = []
    if train:
        ops.append(JointRandomScale(scale_range))
        if crop_size is not None:
            ops += [JointPad(crop_size, ignore_index), JointRandomCrop(crop_size)]
        if hflip:
            ops.append(JointRandomHorizontalFlip())
    elif crop_size is not None:
        ops += [JointPad(crop_size, ignore_index), JointCenterCrop(crop_size)]
    ops.append(JointToTensor(mean, std))
    return JointCompose(ops)
