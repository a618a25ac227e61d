"""Down- and up-pooling layers under one API, chosen by name (``pool="max" | ... | "lift"``).

Every down-pooling class takes ``(channels, kernel_size=..., *, ..., device=None, dtype=None)``
and maps ``(N, C, H, W)`` to ``(N, C, ceil(H/2), ceil(W/2))``.

Examples:
    >>> import torch
    >>> from liftpool.pooling import make_pool, make_updown, available_pools
    >>> make_pool("lift", 8)(torch.randn(2, 8, 9, 9)).shape
    torch.Size([2, 8, 5, 5])
    >>> down, up = make_updown("lift", 8)
    >>> y, details = down(torch.randn(2, 8, 9, 9))
    >>> up(y, details).shape
    torch.Size([2, 8, 9, 9])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..layers import LiftDownPool2d, LiftUpPool2d
from .baselines import (
    AvgDownPool2d,
    BlurPool2d,
    MaxBlurPool2d,
    MaxDetails2d,
    MaxDownPool2d,
    MaxUpBlurPool2d,
    MaxUpPool2d,
    SkipDownPool2d,
    binomial_filter,
)

__all__ = [
    "AvgDownPool2d",
    "BlurPool2d",
    "MaxBlurPool2d",
    "MaxDetails2d",
    "MaxDownPool2d",
    "MaxUpBlurPool2d",
    "MaxUpPool2d",
    "SkipDownPool2d",
    "POOLS",
    "UPDOWN",
    "accepted_keywords",
    "available_pools",
    "binomial_filter",
    "check_kwargs",
    "make_pool",
    "make_updown",
    "register_pool",
]

#: name -> down-pooling class; every entry accepts ``(channels, **kwargs)``.
POOLS: dict[str, Callable[..., nn.Module]] = {
    "max": MaxDownPool2d,
    "avg": AvgDownPool2d,
    "skip": SkipDownPool2d,
    "blur": BlurPool2d,
    "maxblur": MaxBlurPool2d,
    "lift": LiftDownPool2d,
}


def register_pool(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding a down-pooling layer to :data:`POOLS` under ``name``."""

    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in POOLS and POOLS[name] is not cls:
            raise ValueError(f"a pooling layer named {name!r} is already registered")
        POOLS[name] = cls
        return cls

    return deco


def available_pools() -> tuple[str, ...]:
    """Names accepted by :func:`make_pool` (and every model's ``pool=``)."""
    return tuple(POOLS)


def accepted_keywords(fn: Callable[..., Any], skip: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The keyword arguments ``fn`` (a function or class) accepts, without ``skip``; ``None``
    when it takes ``**kwargs`` (anything goes)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in params if p.kind in kinds and p.name not in skip)


def check_kwargs(where: str, kwargs: Mapping[str, Any], accepted: tuple[str, ...] | None) -> None:
    """``TypeError`` naming the unknown keys of ``kwargs`` and the ``accepted`` ones (``None``: no check)."""
    if accepted is None:
        return
    bad = [k for k in kwargs if k not in accepted]
    if bad:
        raise TypeError(
            f"{where}: unknown keyword argument{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )


def make_pool(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build the down-pooling layer ``name`` for ``channels`` channels (kwargs go to its constructor;
    an unknown keyword raises ``TypeError`` naming it and the accepted ones)."""
    if not isinstance(name, str):
        raise TypeError(f"pool must be a string, got {type(name).__name__}")
    try:
        cls = POOLS[name]
    except KeyError:
        raise ValueError(f"unknown pool {name!r}; choose one of {available_pools()}") from None
    check_kwargs(f"pool {name!r} ({getattr(cls, '__name__', cls)})", kwargs, accepted_keywords(cls, ("self", "channels")))
    return cls(channels, **kwargs)


def _lift_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    kwargs.setdefault("bands", ("LL",))
    down = LiftDownPool2d(channels, return_details=True, **kwargs)
    return down, LiftUpPool2d(down)


def _max_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    down = MaxDownPool2d(channels, return_details=True, **kwargs)
    return down, MaxUpPool2d(down)


def _maxblur_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    down = MaxDownPool2d(channels, return_details=True, **kwargs)
    return down, MaxUpBlurPool2d(down)


#: name -> factory of a paired (down, up) for encoder-decoders (SegNet).
UPDOWN: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "max": _max_updown,
    "maxblur": _maxblur_updown,
    "lift": _lift_updown,
}


def make_updown(name: str, channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """A paired ``(down, up)``: ``down(x) -> (y, details)``, ``up(y, details) -> x``-sized map.

    ``"max"``: max pooling / max-unpooling; ``"maxblur"``: max-unpooling followed by a
    blur; ``"lift"``: LiftDownPool2d keeping ``LL`` (as the paper's SegNet) and its
    LiftUpPool2d.
    """
    if name not in UPDOWN:
        raise ValueError(f"unknown up/down pool {name!r}; choose one of {tuple(UPDOWN)}")
    down_cls = LiftDownPool2d if name == "lift" else MaxDownPool2d
    check_kwargs(f"up/down pool {name!r} ({down_cls.__name__})", kwargs, accepted_keywords(down_cls, ("self", "channels", "return_details")))
    return UPDOWN[name](channels, **kwargs)

from .zoo import *  # noqa: E402,F401,F403  registers "gated", "mixed", "gauss", "gfgp", "spectral", "wavelet", "dpp", "s3" in POOLS
__all__ += zoo.__all__  # type: ignore[name-defined]  # noqa: F405,F821 (the import above binds the submodule)
