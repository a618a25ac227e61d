"""Networks of the paper with a choice of pooling: ``create_model(name, pool=..., num_classes=...)``.

=========================  ==============  ==================================================
name                       task            pooling that ``pool=`` sets
=========================  ==============  ==================================================
``vgg13_cifar``            classification  the five pooling stages of VGG13(-BN), 32x32 input
``resnet18``, ``resnet50`` classification  stem max pool (+ strided convs: ``strided_conv``)
``mobilenet_v2``           classification  the stride-2 convolutions after the stem
``segnet``                 segmentation    paired down/up pools: ``max maxblur lift aps lps``
``deeplabv3plus_resnet50`` segmentation    backbone stem pool (+ strided convs)
=========================  ==============  ==================================================

Classification models return ``(N, num_classes)`` logits, segmentation models
``(N, num_classes, H, W)`` logits at the input size.

Examples:
    >>> import torch
    >>> net = create_model("vgg13_cifar", pool="lift", num_classes=10, width=0.125)
    >>> net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> task_of("segnet")
    'segmentation'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from torch import nn

from ..pooling import accepted_keywords, check_kwargs
from .deeplab import DeepLabV3Plus, deeplabv3plus_resnet50
from .mobilenet import MobileNetV2, mobilenet_v2
from .resnet import ScaledResNet, resnet18, resnet50
from .segnet import SEGNET_POOLS, SegNet, segnet
from .vgg import VGG13_CFG, VGGCifar, vgg13_cifar

__all__ = [
    "MODELS",
    "TASKS",
    "DeepLabV3Plus",
    "ModelSpec",
    "SEGNET_POOLS",
    "ScaledResNet",
    "SegNet",
    "Task",
    "VGG13_CFG",
    "VGGCifar",
    "available_models",
    "create_model",
    "model_keywords",
    "task_of",
]

Task = Literal["classification", "segmentation"]


class ModelSpec(NamedTuple):
    """A registered model: its builder (keyword-only ``num_classes``, ``pool``, ...) and task."""

    builder: Callable[..., nn.Module]
    task: Task


#: name -> :class:`ModelSpec`.
MODELS: dict[str, ModelSpec] = {
    "vgg13_cifar": ModelSpec(vgg13_cifar, "classification"),
    "resnet18": ModelSpec(resnet18, "classification"),
    "resnet50": ModelSpec(resnet50, "classification"),
    "mobilenet_v2": ModelSpec(mobilenet_v2, "classification"),
    "segnet": ModelSpec(segnet, "segmentation"),
    "deeplabv3plus_resnet50": ModelSpec(deeplabv3plus_resnet50, "segmentation"),
}

#: name -> ``"classification"`` or ``"segmentation"``.
TASKS: dict[str, Task] = {k: v.task for k, v in MODELS.items()}


def available_models() -> tuple[str, ...]:
    """Names accepted by :func:`create_model`."""
    return tuple(MODELS)


def _spec(name: Any) -> ModelSpec:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {available_models()}") from None


def task_of(name: str) -> Task:
    """``"classification"`` or ``"segmentation"`` for a model name (picks the training loss)."""
    return _spec(name).task


def create_model(name: str, *, pool: str = "max", num_classes: int, **kwargs: Any) -> nn.Module:
    """Build the model ``name`` with pooling ``pool`` and ``num_classes`` outputs.

    ``kwargs`` go to the builder: ``width`` (channel multiplier, all models),
    ``pool_kwargs`` (passed to every pooling layer), ``batch_norm`` (``vgg13_cifar``),
    ``strided_conv`` and ``init`` (``resnet*``, ``mobilenet_v2``, ``deeplabv3plus_resnet50``).
    ``pool`` is any :func:`liftpool.pooling.available_pools` name (for ``segnet`` one of
    :data:`SEGNET_POOLS`).
    """
    spec = _spec(name)
    check_kwargs(f"create_model({name!r})", kwargs, model_keywords(name))
    return spec.builder(num_classes=num_classes, pool=pool, **kwargs)


#: the class each builder hands its remaining ``**kwargs`` to
_FORWARDS_TO: dict[str, Callable[..., Any]] = {
    "vgg13_cifar": VGGCifar,
    "resnet18": ScaledResNet,
    "resnet50": ScaledResNet,
    "mobilenet_v2": MobileNetV2,
    "segnet": SegNet,
    "deeplabv3plus_resnet50": DeepLabV3Plus,
}
#: parameters the builders set themselves (never a user keyword)
_BUILDER_SET = ("self", "num_classes", "pool", "block", "layers", "width_mult")


def model_keywords(name: str) -> tuple[str, ...] | None:
    """Keyword arguments :func:`create_model` accepts for ``name`` besides ``pool`` and
    ``num_classes`` (``None``: not known, no check)."""
    spec = _spec(name)
    own = accepted_keywords(spec.builder, _BUILDER_SET)
    target = _FORWARDS_TO.get(name)
    if own is not None:
        return own
    if target is None:
        return None
    sig = inspect.signature(spec.builder).parameters
    named = tuple(p for p in sig if p not in _BUILDER_SET and sig[p].kind is not inspect.Parameter.VAR_KEYWORD)
    more = accepted_keywords(target, _BUILDER_SET)
    return None if more is None else tuple(dict.fromkeys(named + more))
