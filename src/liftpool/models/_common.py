"""Argument checks shared by the model builders."""

from __future__ import annotations

import math
from typing import Any

from .._checks import check_int, check_mapping
from ..pooling import available_pools

__all__ = ["check_num_classes", "check_pool", "check_width", "scaled", "check_pool_kwargs"]


def check_num_classes(num_classes: Any) -> int:
    return check_int("num_classes", num_classes, 1)


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
    return check_mapping("pool_kwargs", pool_kwargs)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1."""
    return max(1, int(round(channels * width)))
