"""Down- and up-pooling layers under one API, chosen by name (``pool="max" | ... | "lift"``).

The pooling zoo (:mod:`liftpool.pooling.zoo`: the methods the LiftPool paper compares with) and
the pooling peers (:mod:`liftpool.pooling.peers`: SoftPool, LIP, APS, LPS and the APS-U/LPU
up-sampling) load on first use.

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

from typing import Any

from ..layers import LiftDownPool2d
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
from .registry import (
    POOLS,
    UPDOWN,
    accepted_keywords,
    available_pools,
    check_kwargs,
    lift_updown,
    make_pool,
    make_updown,
    register_pool,
    register_updown,
)

# after the baselines, so that the registry lists max, avg, skip, blur, maxblur, lift, then the zoo, then the peers
register_pool("lift")(LiftDownPool2d)
register_updown("lift", down=LiftDownPool2d)(lift_updown)

#: names of :mod:`liftpool.pooling.zoo` re-exported here; the zoo is imported on first use (so its
#: ``__all__`` cannot be read here: a test keeps the two lists equal, as for the peers).
_ZOO_NAMES: tuple[str, ...] = (
    "DPPool2d",
    "GFGPool2d",
    "GatedPool2d",
    "GaussianPool2d",
    "MixedPool2d",
    "S3Pool2d",
    "SpectralPool2d",
    "WaveletPool2d",
    "ZOO",
    "gaussian_pool2d",
    "maxent_pool2d",
    "pool_parameter_count",
    "spectral_pool2d",
    "wavelet_pool2d",
)
#: names of :mod:`liftpool.pooling.peers` re-exported here; the peers are imported on first use.
_PEER_NAMES: tuple[str, ...] = (
    "APSPool2d",
    "APSUpPool2d",
    "LIPPool2d",
    "LPSPool2d",
    "LPSUpPool2d",
    "PEERS",
    "PEER_UPDOWN",
    "PolyphaseDetails2d",
    "SoftPool2d",
    "lip2d",
    "polyphase_components",
    "polyphase_upsample",
    "softpool2d",
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
    *_ZOO_NAMES,
    *_PEER_NAMES,
]


def __getattr__(name: str) -> Any:
    # the pooling zoo and the peers load when one of their names is first used (PEP 562)
    for module, names in (("zoo", _ZOO_NAMES), ("peers", _PEER_NAMES)):
        if name in names or name == module:
            import importlib

            mod = importlib.import_module(f"{__name__}.{module}")
            return mod if name == module else getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
