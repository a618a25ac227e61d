"""Argument checks shared by the model builders."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..pooling import available_pools

__all__ = ["check_num_classes", "check_pool", "check_width", "scaled", "check_pool_kwargs"]


def check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return num_classes


def check_width(width: Any) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    return float(width)


def check_pool(pool: Any, allowed: tuple[str, ...] | None = None) -> str:
    names = available_pools() if allowed is None else allowed
    if not isinstance(pool, str):
        raise TypeError(f"pool must be a string, got {type(pool).__name__}")
    if pool not in names:
        raise ValueError(f"unknown pool {pool!r}; choose one of {names}")
    return pool


def check_pool_kwargs(pool_kwargs: Any) -> dict[str, Any]:
    if pool_kwargs is None:
        return {}
    if not isinstance(pool_kwargs, Mapping):
        raise TypeError(f"pool_kwargs must be a mapping of keyword arguments, got {type(pool_kwargs).__name__}")
    return dict(pool_kwargs)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1."""
    return max(1, int(round(channels * width)))
