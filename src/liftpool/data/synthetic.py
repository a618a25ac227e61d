"""Tiny generated datasets on disk, in the real layouts (ImageFolder, CamVid, VOC 2012).

For smoke runs and tests of the whole pipeline without any download: each class has
its own colour (plus noise), so a network can learn them in a few steps.

Examples:
    >>> import tempfile
    >>> from liftpool.data import build_datasets
    >>> root = make_imagefolder(tempfile.mkdtemp(), classes=3, per_class=4, val_per_class=2, size=16)
    >>> d = build_datasets("imagefolder", root)
    >>> len(d.train), len(d.val), d.info["class_names"]
    (12, 6, ['class0', 'class1', 'class2'])
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_camvid", "make_imagefolder", "make_voc"]


def _palette(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(30, 226, size=(n, 3))


def make_imagefolder(
    root: str | os.PathLike[str],
    *,
    classes: int = 3,
    per_class: int = 8,
    val_per_class: int = 4,
    size: int = 32,
    splits: tuple[str, str] = ("train", "val"),
    ext: str = "png",
    seed: int = 0,
) -> Path:
    """Write ``root/<split>/class<k>/<i>.<ext>`` images (``size`` x ``size``, colour of class
    ``k`` + noise); returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = _palette(classes, rng)
    for split, n in zip(splits, (per_class, val_per_class)):
        for k in range(classes):
            d = root / split / f"class{k}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = np.clip(colours[k] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i:04d}.{ext}")
    return root


def _blob_labels(h: int, w: int, classes: int, rng: np.random.Generator, void: int | None) -> np.ndarray:
    """A label map of axis-aligned rectangles of random classes (and a void border)."""
    lbl = np.full((h, w), rng.integers(0, classes), dtype=np.uint8)
    for _ in range(4):
        c = rng.integers(0, classes)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        lbl[y0 : y0 + rng.integers(2, max(3, h // 2)), x0 : x0 + rng.integers(2, max(3, w // 2))] = c
    if void is not None:
        lbl[0, :] = void
    return lbl


def _seg_image(lbl: np.ndarray, colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = colours[np.minimum(lbl, len(colours) - 1)]
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def make_camvid(
    root: str | os.PathLike[str],
    *,
    sizes: dict[str, int] | None = None,
    height: int = 24,
    width: int = 32,
    classes: int = 11,
    void: int = 11,
    seed: int = 0,
) -> Path:
    """Write a CamVid-layout folder: ``<split>/<name>.png`` images, ``<split>annot/<name>.png``
    8-bit labels (``void`` on the top row) and ``<split>.txt`` pair lists; returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    colours = _palette(classes + 1, rng)
    for split, n in (sizes or {"train": 6, "val": 3, "test": 3}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            lbl = _blob_labels(height, width, classes, rng, void)
            Image.fromarray(_seg_image(lbl, colours, rng)).save(root / split / f"img{i:03d}.png")
            Image.fromarray(lbl).save(root / f"{split}annot" / f"img{i:03d}.png")
            lines.append(f"{split}/img{i:03d}.png {split}annot/img{i:03d}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def make_voc(
    root: str | os.PathLike[str],
    *,
    sizes: dict[str, int] | None = None,
    height: int = 30,
    width: int = 40,
    seed: int = 0,
) -> Path:
    """Write a PASCAL VOC 2012 layout under ``root/VOCdevkit/VOC2012`` (JPEG images, palette
    PNG masks with 255 borders, ``ImageSets/Segmentation/<split>.txt``); returns ``root``."""
    root = Path(root)
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    colours = _palette(22, rng)
    palette = (rng.integers(0, 256, 768)).astype(np.uint8).tolist()
    for split, n in (sizes or {"train": 4, "val": 2}).items():
        names = []
        for i in range(n):
            name = f"2007_{split}{i:04d}"
            h, w = height + 2 * i, width - i  # VOC images differ in size
            lbl = _blob_labels(h, w, 21, rng, 255)
            Image.fromarray(_seg_image(lbl, colours, rng)).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
            m = Image.frombytes("P", (lbl.shape[1], lbl.shape[0]), lbl.tobytes())
            m.putpalette(palette)
            m.save(base / "SegmentationClass" / f"{name}.png")
            names.append(name)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root
