"""The registry of pooling layers by name: :data:`POOLS`, :func:`register_pool`, :func:`make_pool`, :func:`make_updown`.

Pooling modules register their classes with :func:`register_pool` when they are imported
(:mod:`liftpool.pooling.baselines`, then ``"lift"``, by the package ``__init__``).  The pooling zoo
(:mod:`liftpool.pooling.zoo`) and the pooling peers (:mod:`liftpool.pooling.peers`) are *plugin
modules*: they are imported the first time a name the registry (:data:`POOLS`, or :data:`UPDOWN`
for the paired down/up layers) does not know yet is looked up, or a registry is listed, so
``import liftpool`` does not load them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

from torch import nn

from ..layers import LiftDownPool2d, LiftUpPool2d

__all__ = [
    "POOLS",
    "UPDOWN",
    "PoolRegistry",
    "accepted_keywords",
    "available_pools",
    "check_kwargs",
    "lift_updown",
    "make_pool",
    "make_updown",
    "register_pool",
    "register_updown",
]

PoolFactory = Callable[..., nn.Module]
_Entry = TypeVar("_Entry")

#: modules that register further pools when imported (loaded on first need, in this order).
PLUGIN_MODULES: tuple[str, ...] = ("liftpool.pooling.zoo", "liftpool.pooling.peers")


class PoolRegistry(MutableMapping[str, _Entry]):
    """``name -> factory`` (a mutable mapping); plugin modules load on the first miss or listing.

    :data:`POOLS` maps names to down-pooling classes, :data:`UPDOWN` to paired down/up factories.
    """

    def __init__(self, plugins: tuple[str, ...]) -> None:
        self._entries: dict[str, _Entry] = {}
        self._pending: list[str] = list(plugins)

    def _load_plugins(self) -> None:
        while self._pending:
            importlib.import_module(self._pending.pop(0))

    def __getitem__(self, name: str) -> _Entry:
        if name not in self._entries:
            self._load_plugins()
        return self._entries[name]

    def __setitem__(self, name: str, cls: _Entry) -> None:
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
POOLS: PoolRegistry[PoolFactory] = PoolRegistry(PLUGIN_MODULES)


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
    where = f"pool {name!r} ({getattr(cls, '__name__', cls)})"
    check_kwargs(where, kwargs, accepted_keywords(cls, ("self", "channels")))
    return cls(channels, **kwargs)


UpDownFactory = Callable[..., tuple[nn.Module, nn.Module]]

#: name -> factory of a paired (down, up) for encoder-decoders (SegNet); plugins load on the first miss or listing.
UPDOWN: PoolRegistry[UpDownFactory] = PoolRegistry(PLUGIN_MODULES)
#: name -> the down-pooling class whose keywords the factory passes on (for the keyword check).
UPDOWN_DOWN: dict[str, Callable[..., nn.Module]] = {}


def register_updown(
    name: str, down: Callable[..., nn.Module] | None = None
) -> Callable[[UpDownFactory], UpDownFactory]:
    """Decorator adding a paired ``(down, up)`` factory to :data:`UPDOWN` under ``name``.

    ``down``: the down-pooling class the factory's keyword arguments go to (checked by :func:`make_updown`).
    """

    def deco(fn: UpDownFactory) -> UpDownFactory:
        known = UPDOWN._entries.get(name)  # no plugin loading: a plugin may be registering right now
        if known is not None and known is not fn:
            raise ValueError(f"an up/down pool named {name!r} is already registered")
        UPDOWN[name] = fn
        if down is not None:
            UPDOWN_DOWN[name] = down
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
    LiftUpPool2d; ``"aps"`` / ``"lps"``: adaptive / learnable polyphase sampling and the
    up-sampling that puts each value back at the chosen phase (APS-U, LPU;
    :mod:`liftpool.pooling.peers`).
    """
    if name not in UPDOWN:
        raise ValueError(f"unknown up/down pool {name!r}; choose one of {tuple(UPDOWN)}")
    down_cls = UPDOWN_DOWN.get(name)
    if down_cls is not None:
        skip = ("self", "channels", "return_details")
        check_kwargs(f"up/down pool {name!r} ({down_cls.__name__})", kwargs, accepted_keywords(down_cls, skip))
    return UPDOWN[name](channels, **kwargs)
