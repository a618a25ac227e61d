"""Data: datasets (CIFAR, ImageFolder, CamVid, PASCAL VOC), transforms, seeded sampling.

:func:`build_datasets` turns ``(name, folder)`` into checked train/val datasets plus
the ``info`` dict that checkpoints store (class names, normalisation, sizes).
"""

from .build import DATASETS, Datasets, build_datasets, dataset_task
from .datasets import (
    CAMVID_CLASSES,
    VOC_CLASSES,
    CachedImageLoader,
    CamVid,
    EpochDistributedSampler,
    LabelStats,
    SeededDataset,
    ShardSampler,
    VOCSegmentation,
    check_segmentation_labels,
    sample_seed,
)
from .synthetic import make_camvid, make_imagefolder, make_voc
from .transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    classification_transform,
    segmentation_transform,
)

__all__ = [
    "CAMVID_CLASSES",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VOC_CLASSES",
    "CachedImageLoader",
    "CamVid",
    "Datasets",
    "EpochDistributedSampler",
    "LabelStats",
    "SeededDataset",
    "ShardSampler",
    "VOCSegmentation",
    "build_datasets",
    "check_segmentation_labels",
    "classification_transform",
    "dataset_task",
    "make_camvid",
    "make_imagefolder",
    "make_voc",
    "sample_seed",
    "segmentation_transform",
]
