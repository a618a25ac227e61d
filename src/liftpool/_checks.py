"""Argument checks shared by every layer, pool and model factory.

Each check returns the (normalised) value or raises a ``TypeError`` (wrong type) or
``ValueError`` (right type, bad value) whose message names the argument and says what was
expected, so bad input never reaches torch.  Lowest layer: imports nothing from ``liftpool``.

Examples:
    >>> check_int("channels", 8, 1)
    8
    >>> check_int("channels", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: channels must be >= 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from torch import Tensor

__all__ = [
    "check_choice",
    "check_int",
    "check_mapping",
    "check_number",
    "check_positive_float",
    "check_spatial_input",
    "shape_str",
]

T = TypeVar("T")


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: T, choices: Sequence[Any]) -> T:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_number(name: str, value: Any, *, nonnegative: bool = False) -> float:
    """``float(value)`` for a finite int/float (not a bool), ``>= 0`` when ``nonnegative``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (nonnegative and not value >= 0):
        what = "a finite number >= 0" if nonnegative else "a finite number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def check_positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """``float(value)`` for a finite number ``> 0`` (``>= 0`` with ``allow_zero``); TypeError for non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value}")
    return value


def check_mapping(name: str, value: Any) -> dict[str, Any]:
    """``dict(value)`` for a mapping of keyword arguments, ``{}`` for ``None``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of keyword arguments, got {type(value).__name__}")
    return dict(value)


def shape_str(spatial_dims: int) -> str:
    """The documented input shape for ``spatial_dims`` spatial axes, e.g. ``(N, C, H, W)``."""
    return {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[spatial_dims]


def check_spatial_input(owner: str, x: Any, *, channels: int, spatial_dims: int, name: str = "x") -> Tensor:
    """``x`` if it is a floating-point ``(N, C, *spatial)`` tensor with ``channels`` channels and no empty axis.

    ``owner`` (the class name of the layer) prefixes every message.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{owner}: {name} must have shape {shape_str(spatial_dims)} ({spatial_dims + 2} dims), "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(f"{owner}: {name} has {x.shape[1]} channels but the layer was built for channels={channels}")
    if any(n < 1 for n in x.shape[2:]):
        raise ValueError(f"{owner}: {name} has an empty spatial axis, shape {tuple(x.shape)}")
    return x
