"""The registry of pooling layers by name: :data:`POOLS`, :func:`register_pool`, :func:`make_pool`, :func:`make_updown`.

Pooling modules register their classes with :func:`register_pool` when they are imported
(:mod:`liftpool.pooling.baselines`, then ``"lift"``, by the package ``__init__``).  The pooling zoo
(:mod:`liftpool.pooling.zoo`) is a *plugin module*: it is imported the first time a name the
registry does not know yet is looked up, or the registry is listed, so ``import liftpool``
does not load it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from torch import nn

from ..layers import LiftDownPool2d, LiftUpPool2d

__all__ = [
    "POOLS",
    "UPDOWN",
    "PoolRegistry",
    "available_pools",
    "lift_updown",
    "make_pool",
    "make_updown",
    "register_pool",
    "register_updown",
]

PoolFactory = Callable[..., nn.Module]

#: modules that register further pools when imported (loaded on first need, in this order).
PLUGIN_MODULES: tuple[str, ...] = ("liftpool.pooling.zoo",)


class PoolRegistry(MutableMapping[str, PoolFactory]):
    """``name -> down-pooling class`` (a mutable mapping); plugin modules load on the first miss or listing."""

    def __init__(self, plugins: tuple[str, ...]) -> None:
        self._entries: dict[str, PoolFactory] = {}
        self._pending: list[str] = list(plugins)

    def _load_plugins(self) -> None:
        while self._pending:
            importlib.import_module(self._pending.pop(0))

    def __getitem__(self, name: str) -> PoolFactory:
        if name not in self._entries:
            self._load_plugins()
        return self._entries[name]

    def __setitem__(self, name: str, cls: PoolFactory) -> None:
        self._entries[name] = cls

    def __delitem__(self, name: str) -> None:
        self._load_plugins()
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"PoolRegistry({dict(self)!r})"


#: name -> down-pooling class; every entry accepts ``(channels, **kwargs)``.
POOLS: PoolRegistry = PoolRegistry(PLUGIN_MODULES)


def register_pool(name: str) -> Callable[[PoolFactory], PoolFactory]:
    """Class decorator adding a down-pooling layer to :data:`POOLS` under ``name``."""

    def deco(cls: PoolFactory) -> PoolFactory:
        known = POOLS._entries.get(name)  # no plugin loading: a plugin may be registering right now
        if known is not None and known is not cls:
            raise ValueError(f"a pooling layer named {name!r} is already registered")
        POOLS[name] = cls
        return cls

    return deco


def available_pools() -> tuple[str, ...]:
    """Names accepted by :func:`make_pool` (and every model's ``pool=``)."""
    return tuple(POOLS)


def make_pool(name: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build the down-pooling layer ``name`` for ``channels`` channels (kwargs go to its constructor)."""
    if not isinstance(name, str):
        raise TypeError(f"pool must be a string, got {type(name).__name__}")
    try:
        cls = POOLS[name]
    except KeyError:
        raise ValueError(f"unknown pool {name!r}; choose one of {available_pools()}") from None
    return cls(channels, **kwargs)


UpDownFactory = Callable[..., tuple[nn.Module, nn.Module]]

#: name -> factory of a paired (down, up) for encoder-decoders (SegNet).
UPDOWN: dict[str, UpDownFactory] = {}


def register_updown(name: str) -> Callable[[UpDownFactory], UpDownFactory]:
    """Decorator adding a paired ``(down, up)`` factory to :data:`UPDOWN` under ``name``."""

    def deco(fn: UpDownFactory) -> UpDownFactory:
        if name in UPDOWN and UPDOWN[name] is not fn:
            raise ValueError(f"an up/down pool named {name!r} is already registered")
        UPDOWN[name] = fn
        return fn

    return deco


def lift_updown(channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """``LiftDownPool2d`` keeping ``LL`` (unless ``bands`` is given) with ``return_details``, and its LiftUpPool2d."""
    kwargs.setdefault("bands", ("LL",))
    down = LiftDownPool2d(channels, return_details=True, **kwargs)
    return down, LiftUpPool2d(down)


def make_updown(name: str, channels: int, **kwargs: Any) -> tuple[nn.Module, nn.Module]:
    """A paired ``(down, up)``: ``down(x) -> (y, details)``, ``up(y, details) -> x``-sized map.

    ``"max"``: max pooling / max-unpooling; ``"maxblur"``: max-unpooling followed by a
    blur; ``"lift"``: LiftDownPool2d keeping ``LL`` (as the paper's SegNet) and its
    LiftUpPool2d.
    """
    if name not in UPDOWN:
        raise ValueError(f"unknown up/down pool {name!r}; choose one of {tuple(UPDOWN)}")
    return UPDOWN[name](channels, **kwargs)
