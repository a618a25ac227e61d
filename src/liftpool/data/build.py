"""One entry point from a dataset name + folder to checked train/val datasets.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for split in ("train", "test"):
    ...     for cls in ("cat", "dog"):
    ...         (root / split / cls).mkdir(parents=True)
    ...         Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / cls / "0.png")
    >>> d = build_datasets("imagefolder", root)
    >>> d.info["num_classes"], d.info["augment"], d.info["val_split"], len(d.train)
    (2, 'cifar', 'test', 2)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from PIL import Image
from torch.utils.data import Dataset

from .datasets import (
    CAMVID_VOID,
    CachedImageLoader,
    CamVid,
    VOCSegmentation,
    _open_rgb,
    check_segmentation_labels,
)
from .transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    classification_transform,
    default_val_resize,
    segmentation_transform,
)

__all__ = ["DATASETS", "DatasetName", "Datasets", "build_datasets", "dataset_task"]

DatasetName = Literal["cifar10", "cifar100", "imagefolder", "camvid", "voc"]
DATASETS: tuple[str, ...] = get_args(DatasetName)
_TASK = {
    "cifar10": "classification",
    "cifar100": "classification",
    "imagefolder": "classification",
    "camvid": "segmentation",
    "voc": "segmentation",
}
#: an ImageFolder whose images are at most this many pixels on a side gets CIFAR-style augmentation under augment="auto"
SMALL_IMAGE = 64


class Datasets(NamedTuple):
    """``train`` / ``val`` datasets and ``info`` (the dict stored as a checkpoint's ``config["data"]``)."""

    train: Dataset[Any]
    val: Dataset[Any]
    info: dict[str, Any]


def dataset_task(name: str) -> str:
    """``"classification"`` or ``"segmentation"`` for a dataset name."""
    if name not in _TASK:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    return _TASK[name]


def _check_root(root: str | os.PathLike[str] | None, dataset: str) -> Path:
    if root is None or str(root) == "":
        raise ValueError(f"dataset {dataset!r} needs a data directory (--data-dir)")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"data directory {str(root)!r} is not a directory")
    if not any(root.iterdir()):
        raise ValueError(f"data directory {str(root)!r} is empty")
    return root


def _image_folder(root: Path, split: str, transform: Any, cache: bool = False) -> Any:
    from torchvision.datasets import ImageFolder

    d = root / split
    if not d.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise FileNotFoundError(f"ImageFolder split {str(d)!r} not found (sub-folders present: {have or 'none'})")
    try:
        # _open_rgb names a corrupt file; the cache decodes through it once per file
        ds = ImageFolder(str(d), transform=transform, loader=CachedImageLoader() if cache else _open_rgb)
    except FileNotFoundError as e:
        raise ValueError(f"ImageFolder split {str(d)!r} has no class folders with images ({e})") from None
    if len(ds) == 0:
        raise ValueError(f"ImageFolder split {str(d)!r} contains no images")
    return ds


def _resolve_val_split(root: Path, val_split: str, candidates: tuple[str, ...]) -> str:
    if val_split != "auto":
        return val_split
    for c in candidates:
        if (root / c).is_dir() or (root / f"{c}.txt").is_file():
            return c
    raise FileNotFoundError(f"no validation split under {str(root)!r}: looked for {candidates}; pass --val-split")


def _check_options(dataset: str, task: str, class_weighting: str, download: bool) -> None:
    """Options that do not fit the dataset (before anything is read or downloaded)."""
    if class_weighting not in ("none", "median_freq"):
        raise ValueError(f"class_weighting must be 'none' or 'median_freq', got {class_weighting!r}")
    if class_weighting != "none" and task != "segmentation":
        raise ValueError(f"class_weighting={class_weighting!r} is only for segmentation datasets, not {dataset!r}")
    if download and dataset not in ("cifar10", "cifar100", "voc"):
        raise ValueError(f"--download is only available for cifar10, cifar100 and voc, not {dataset!r}")


def _data_root(root: str | os.PathLike[str] | None, dataset: str, download: bool) -> Path:
    """The data folder: created for ``download``, else checked to exist and be non-empty."""
    if not download:
        return _check_root(root, dataset)
    if root is None:
        raise ValueError("--download needs --data-dir (where to put the files)")
    Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    return Path(root).expanduser()


_AugmentOption = Literal["auto", "cifar", "imagenet", "none"]


class _Classification(NamedTuple):
    """The two splits of a classification dataset and the settings resolved for them."""

    train: Any
    val: Any
    val_split: str
    augment: Augment  # "auto" resolved
    size: int  # training image size
    mean: tuple[float, float, float]  # the dataset's defaults, used where mean/std are not given
    std: tuple[float, float, float]


def _cifar(
    dataset: str,
    root_p: Path,
    augment: _AugmentOption,
    image_size: int | None,
    val_resize: int | None,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    download: bool,
) -> _Classification:
    """CIFAR-10/100 in torchvision format (``download`` fetches the training split's files)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if dataset == "cifar10" else CIFAR100
    if augment == "auto":
        augment = "cifar"
    d_mean, d_std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    size = image_size or 32
    tr = classification_transform(
        augment, train=True, image_size=size, mean=mean or d_mean, std=std or d_std, val_resize=val_resize
    )
    va = classification_transform(
        augment, train=False, image_size=size, mean=mean or d_mean, std=std or d_std, val_resize=val_resize
    )
    try:
        train = cls(str(root_p), train=True, transform=tr, download=download)
        val = cls(str(root_p), train=False, transform=va, download=False)
    except RuntimeError as e:
        raise FileNotFoundError(
            f"{dataset} not found under {str(root_p)!r} (torchvision format, e.g. cifar-10-batches-py/); "
            f"pass --download when online ({e})"
        ) from None
    return _Classification(train, val, "test", augment, size, d_mean, d_std)


def _imagefolder(
    root_p: Path,
    train_split: str,
    val_split: str,
    augment: _AugmentOption,
    image_size: int | None,
    val_resize: int | None,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    cache: bool = False,
) -> _Classification:
    """Two ImageFolder splits with the same classes; ``augment="auto"`` and the size follow the first image."""
    val_split = _resolve_val_split(root_p, val_split, ("val", "test"))
    train = _image_folder(root_p, train_split, None, cache)
    val = _image_folder(root_p, val_split, None, cache)
    if train.classes != val.classes:
        only_t = sorted(set(train.classes) - set(val.classes))
        only_v = sorted(set(val.classes) - set(train.classes))
        raise ValueError(
            f"ImageFolder splits {train_split!r} and {val_split!r} have different classes "
            f"(only in {train_split}: {only_t[:5]}, only in {val_split}: {only_v[:5]}); label indices would "
            "not match"
        )
    with Image.open(train.samples[0][0]) as im:
        first = im.size
    if augment == "auto":
        augment = "cifar" if max(first) <= SMALL_IMAGE else "imagenet"
    d_mean, d_std = IMAGENET_MEAN, IMAGENET_STD
    size = image_size or (max(first) if augment == "cifar" else 224)
    train.transform = classification_transform(
        augment, train=True, image_size=size, mean=mean or d_mean, std=std or d_std, val_resize=val_resize
    )
    val.transform = classification_transform(
        augment, train=False, image_size=size, mean=mean or d_mean, std=std or d_std, val_resize=val_resize
    )
    return _Classification(train, val, val_split, augment, size, d_mean, d_std)


def _classification_datasets(
    dataset: str,
    root_p: Path,
    info: dict[str, Any],
    *,
    train_split: str,
    val_split: str,
    augment: _AugmentOption,
    image_size: int | None,
    val_resize: int | None,
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    num_classes: int | None,
    download: bool,
    cache_images: bool = False,
) -> Datasets:
    """CIFAR or ImageFolder splits, checked against ``num_classes``, with their ``info``."""
    if dataset in ("cifar10", "cifar100"):
        c = _cifar(dataset, root_p, augment, image_size, val_resize, mean, std, download)
    else:
        c = _imagefolder(root_p, train_split, val_split, augment, image_size, val_resize, mean, std, cache_images)
    classes = list(c.train.classes)
    n = len(classes)
    if num_classes is not None and num_classes < n:
        raise ValueError(
            f"num_classes={num_classes} but {dataset} under {str(root_p)!r} has {n} classes (labels 0..{n - 1})"
        )
    info.update(
        val_split=c.val_split,
        num_classes=num_classes or n,
        class_names=classes,
        augment=c.augment,
        image_size=c.size,
        val_resize=val_resize or default_val_resize(c.augment, c.size),
        mean=list(mean or c.mean),
        std=list(std or c.std),
        crop_size=None,
        ignore_index=None,
    )
    return Datasets(c.train, c.val, info)


def _segmentation_splits(
    dataset: str, root_p: Path, train_split: str, val_split: str, seg_tr: Any, seg_va: Any, download: bool
) -> tuple[Any, Any, str, tuple[int, ...]]:
    """CamVid or VOC train/val splits, the validation split's name and the raw label values to ignore."""
    if dataset == "camvid":
        val_split = _resolve_val_split(root_p, val_split, ("val", "test"))
        train: Any = CamVid(root_p, train_split, seg_tr)
        val: Any = CamVid(root_p, val_split, seg_va)
        raw_ignore: tuple[int, ...] = (CAMVID_VOID,)
    else:
        val_split = "val" if val_split == "auto" else val_split
        train = VOCSegmentation(root_p, train_split, seg_tr, download=download)
        val = VOCSegmentation(root_p, val_split, seg_va, download=False)
        raw_ignore = (IGNORE_INDEX,)
    return train, val, val_split, raw_ignore


def _scan_labels(
    train: Any,
    val: Any,
    num_classes: int,
    raw_ignore: tuple[int, ...],
    check_labels: bool,
    class_weighting: str,
    workers: int,
) -> list[float] | None:
    """Scan the label maps for out-of-range values (``check_labels``); the median-frequency class weights
    from the training labels when ``class_weighting="median_freq"``, else ``None``."""
    class_weights = None
    if check_labels or class_weighting != "none":
        stats = check_segmentation_labels(train.label_paths, num_classes, allowed_extra=raw_ignore, workers=workers)
        if class_weighting == "median_freq":
            class_weights = [round(float(w), 6) for w in stats.median_frequency_weights()]
    if check_labels:
        check_segmentation_labels(val.label_paths, num_classes, allowed_extra=raw_ignore, workers=workers)
    return class_weights


def _segmentation_datasets(
    dataset: str,
    root_p: Path,
    info: dict[str, Any],
    *,
    train_split: str,
    val_split: str,
    augment: _AugmentOption,
    crop_size: tuple[int, int] | None,
    scale_range: tuple[float, float],
    mean: tuple[float, float, float] | None,
    std: tuple[float, float, float] | None,
    num_classes: int | None,
    download: bool,
    check_labels: bool,
    class_weighting: Literal["none", "median_freq"],
    workers: int,
) -> Datasets:
    """CamVid or VOC splits with joint transforms, labels checked, with their ``info``."""
    if augment not in ("auto", "none"):
        raise ValueError(
            f"segmentation datasets use joint transforms; augment must be 'auto' or 'none', got {augment!r}"
        )
    d_mean, d_std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    no_aug = augment == "none"
    kw: dict[str, Any] = dict(mean=d_mean, std=d_std, ignore_index=IGNORE_INDEX)
    # CamVid images share one size: validate on the full image; VOC sizes vary: pad + centre crop to batch them
    val_crop = crop_size if dataset == "voc" else None
    seg_tr: Any = segmentation_transform(
        train=True, crop_size=crop_size, scale_range=(1.0, 1.0) if no_aug else scale_range, hflip=not no_aug, **kw
    )
    seg_va: Any = segmentation_transform(train=False, crop_size=val_crop, **kw)
    train, val, val_split, raw_ignore = _segmentation_splits(
        dataset, root_p, train_split, val_split, seg_tr, seg_va, download
    )
    n = train.num_classes
    if num_classes is not None and num_classes < n:
        raise ValueError(f"num_classes={num_classes} but {dataset} has {n} classes")
    class_weights = _scan_labels(train, val, num_classes or n, raw_ignore, check_labels, class_weighting, workers)
    info.update(
        val_split=val_split,
        num_classes=num_classes or n,
        class_names=list(train.classes),
        augment="none" if no_aug else "segmentation",
        image_size=None,
        val_resize=None,
        crop_size=list(crop_size) if crop_size is not None else None,
        val_crop_size=list(val_crop) if val_crop is not None else None,
        scale_range=list(scale_range),
        mean=list(d_mean),
        std=list(d_std),
        ignore_index=IGNORE_INDEX,
        class_weighting=class_weighting,
        class_weights=class_weights,
    )
    return Datasets(train, val, info)


def build_datasets(
    dataset: DatasetName,
    root: str | os.PathLike[str] | None,
    *,
    train_split: str = "train",
    val_split: str = "auto",
    augment: Literal["auto", "cifar", "imagenet", "none"] = "auto",
    image_size: int | None = None,
    val_resize: int | None = None,
    crop_size: tuple[int, int] | None = None,
    scale_range: tuple[float, float] = (1.0, 1.0),
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    num_classes: int | None = None,
    download: bool = False,
    check_labels: bool = True,
    class_weighting: Literal["none", "median_freq"] = "none",
    workers: int = 4,
    cache_images: bool = False,
) -> Datasets:
    """Build and check the train/val datasets of ``dataset`` under ``root``.

    * ``cifar10`` / ``cifar100``: torchvision format (``download=True`` fetches it).
    * ``imagefolder``: ``root/<train_split>/<class>/*.jpg`` and ``root/<val_split>/...``
      (``val_split="auto"``: ``val`` else ``test``).  Both splits must have the same classes.
    * ``camvid``: ``root/<split>.txt`` (``val_split="auto"``: ``val``); validation on full images.
    * ``voc``: PASCAL VOC 2012 under ``root`` (torchvision layout); validation images are
      padded (label 255) and centre-cropped to ``crop_size`` so that they batch.

    ``augment="auto"``: ``cifar`` for CIFAR and for an ImageFolder of small
    (<= 64 px) images, ``imagenet`` for other ImageFolders.  ``num_classes`` (the
    model's) must cover every label; segmentation label maps are scanned for
    out-of-range values when ``check_labels``; ``class_weighting="median_freq"``
    stores SegNet's median-frequency class weights (from the train labels) in
    ``info["class_weights"]``.  ``cache_images`` (ImageFolder; torchvision-format CIFAR is in
    memory already): decode each image once and keep its pixels in memory
    (:class:`~liftpool.data.datasets.CachedImageLoader`; for small images, e.g. CIFAR as JPEGs,
    where decoding is a large part of a training step).  Errors are ``ValueError`` /
    ``FileNotFoundError`` naming the path and the problem.
    """
    task = dataset_task(dataset)
    _check_options(dataset, task, class_weighting, download)
    root_p = _data_root(root, dataset, download)
    info: dict[str, Any] = {"dataset": dataset, "root": str(root_p), "train_split": train_split, "task": task}
    if task == "classification":
        return _classification_datasets(
            dataset,
            root_p,
            info,
            train_split=train_split,
            val_split=val_split,
            augment=augment,
            image_size=image_size,
            val_resize=val_resize,
            mean=mean,
            std=std,
            num_classes=num_classes,
            download=download,
            cache_images=cache_images,
        )
    if cache_images:
        raise ValueError(f"cache_images applies to the imagefolder dataset, not {dataset!r}")
    return _segmentation_datasets(
        dataset,
        root_p,
        info,
        train_split=train_split,
        val_split=val_split,
        augment=augment,
        crop_size=crop_size,
        scale_range=scale_range,
        mean=mean,
        std=std,
        num_classes=num_classes,
        download=download,
        check_labels=check_labels,
        class_weighting=class_weighting,
        workers=workers,
    )
