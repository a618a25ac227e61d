"""Build a model from its stored description ``{"name", "pool", "num_classes", "kwargs"}``.

A model name is either one of :func:`liftpool.models.create_model`'s names
(``"vgg13_cifar"``, ``"resnet18"``, ``"segnet"``, ...) or an import path
``"package.module:factory"`` to a callable ``factory(*, pool, num_classes, **kwargs)``
returning an ``nn.Module``: a plug-in for your own architectures (the training
tests use this for tiny networks).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

from torch import nn

from ..layers import LiftDownPoolNd

__all__ = ["Task", "build_model", "is_plugin", "model_task", "set_lifting_lambdas"]

Task = Literal["classification", "segmentation"]


def is_plugin(name: str) -> bool:
    """True for an import-path model name ``"module:callable"``."""
    return ":" in name


def _resolve_plugin(name: str) -> Callable[..., nn.Module]:
    mod_name, _, attr = name.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"model {name!r}: an import path must look like 'package.module:factory'")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ValueError(f"model {name!r}: cannot import module {mod_name!r} ({e})") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model {name!r}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model {name!r}: {attr!r} is not callable")
    return obj


def _models_module() -> Any:
    try:
        return importlib.import_module("liftpool.models")
    except ImportError as e:  # pragma: no cover - the package ships liftpool.models
        raise ValueError(f"liftpool.models is not available ({e}); pass a model as 'module:factory'") from None


def model_task(name: str) -> Task | None:
    """``"classification"`` / ``"segmentation"`` for a built-in model, the factory's ``task``
    attribute for a plug-in (``None`` when it declares none)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"model must be a non-empty string, got {name!r}")
    if is_plugin(name):
        return getattr(_resolve_plugin(name), "task", None)
    return _models_module().task_of(name)


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate ``spec = {"name", "pool", "num_classes", "kwargs"}`` (a checkpoint's
    ``config["model"]``).  Unknown names/pools raise ``ValueError``."""
    for key in ("name", "pool", "num_classes"):
        if key not in spec:
            raise ValueError(f"model spec is missing {key!r}: {dict(spec)!r}")
    name, pool, num_classes = spec["name"], spec["pool"], spec["num_classes"]
    kwargs = dict(spec.get("kwargs") or {})
    if not isinstance(name, str) or not name:
        raise TypeError(f"model name must be a non-empty string, got {name!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if is_plugin(name):
        model = _resolve_plugin(name)(pool=pool, num_classes=num_classes, **kwargs)
    else:
        model = _models_module().create_model(name, pool=pool, num_classes=num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model factory for {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def set_lifting_lambdas(model: nn.Module, lambda_u: float, lambda_p: float) -> int:
    """Set ``lambda_u`` / ``lambda_p`` on every LiftDownPool of ``model``; returns how many."""
    for name, lam in (("lambda_u", lambda_u), ("lambda_p", lambda_p)):
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or not 0 <= lam < float("inf"):
            raise ValueError(f"{name} must be a finite number >= 0, got {lam!r}")
    n = 0
    for m in model.modules():
        if isinstance(m, LiftDownPoolNd):
            m.lambda_u, m.lambda_p = float(lambda_u), float(lambda_p)
            n += 1
    return n
