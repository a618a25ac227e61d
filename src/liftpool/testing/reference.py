"""Paper-literal LiftDownPool / LiftUpPool, kept as the reference for tests and benchmarks.

These layers compute the operator exactly as the paper describes it and as
:mod:`liftpool.functional` spells it out: every 1D lifting transform on its own
(2D: the horizontal transform, then the vertical transform of ``s`` and of ``d``,
i.e. three transforms and six predictor/updater applications), each split into
``x[..., ::2]`` / ``x[..., 1::2]`` slices, each P and U one
:class:`~liftpool.lifters.LearnedLifter` call (pad, K-tap conv, ReLU, 1x1, ``tanh``),
in whatever memory format the input has.  This is how every public
re-implementation computes LiftPool.

The production layers (:class:`liftpool.LiftDownPool2d` ...) take the batched,
channels_last fast path of :mod:`liftpool.kernels.eager` instead; ``tests/test_fast_path.py``
checks that both give the same outputs, constraint terms and gradients, and
``liftpool bench`` measures how much faster the fast path is.

Examples:
    >>> import torch
    >>> from liftpool import LiftDownPool2d
    >>> fast = LiftDownPool2d(4).double()
    >>> ref = ReferenceLiftDownPool2d.from_layer(fast)
    >>> x = torch.randn(2, 4, 9, 7, dtype=torch.float64)
    >>> torch.allclose(fast(x), ref(x), rtol=0, atol=1e-12)
    True
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, TypeVar

from torch import Tensor, nn

from .. import kernels
from ..functional import Constraints
from ..layers import (
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftDownPoolNd,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
)

__all__ = [
    "ReferenceLiftDownPool1d",
    "ReferenceLiftDownPool2d",
    "ReferenceLiftDownPool3d",
    "ReferenceLiftUpPool1d",
    "ReferenceLiftUpPool2d",
    "ReferenceLiftUpPool3d",
    "reference_of",
]

T = TypeVar("T", bound="_ReferenceMixin")


class _ReferenceMixin:
    """Forces the literal :mod:`liftpool.functional` path (six 1D steps on strided slices in 2D)."""

    def _fast(self) -> bool:
        return False

    def _pool(self, x: Tensor, constraints: bool) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
        layer: Any = self
        return kernels.literal_pool(
            x, layer.transforms, layer.spatial_dims, layer.bands, layer.scale, constraints, layer.return_details
        )

    def _decompose(self, x: Tensor, constraints: bool) -> tuple[dict[str, Tensor], Constraints | None]:
        layer: Any = self
        return kernels.literal_decompose(x, layer.transforms, layer.spatial_dims, constraints)

    def _reconstruct(self, bands: dict[str, Tensor], size: Sequence[int]) -> Tensor:
        return kernels.literal_reconstruct(bands, size, self.transforms)  # type: ignore[attr-defined]

    @classmethod
    def from_layer(cls: type[T], layer: LiftDownPoolNd, *, share: bool = False) -> T:
        """A reference layer with ``layer``'s configuration and weights.

        ``share=False`` (default) deep-copies the weights (so gradients of the two can be
        compared); ``share=True`` uses the very same parameter tensors.
        """
        base: Any = cls.__mro__[2]  # the production class this reference mirrors
        # compared by name and dims (not isinstance) so a module imported twice, as
        # pytest's --doctest-modules may do, still pairs up
        if not (isinstance(layer, nn.Module) and type(layer).__name__ == base.__name__
                and getattr(layer, "spatial_dims", None) == base.spatial_dims):
            raise TypeError(f"{cls.__name__}.from_layer needs a {base.__name__}, got {type(layer).__name__}")
        ref = cls.__new__(cls)
        state: dict[str, Any] = dict(layer.__dict__)
        state["_modules"] = dict(layer._modules) if share else copy.deepcopy(layer._modules)
        state["_parameters"] = dict(layer._parameters)
        state["_buffers"] = dict(layer._buffers)
        ref.__dict__.update(state)
        ref.__dict__["_constraints"] = None
        return ref


class ReferenceLiftDownPool1d(_ReferenceMixin, LiftDownPool1d):
    """:class:`~liftpool.LiftDownPool1d` computed paper-literally (same arguments)."""


class ReferenceLiftDownPool2d(_ReferenceMixin, LiftDownPool2d):
    """:class:`~liftpool.LiftDownPool2d` computed paper-literally: six 1D steps on strided slices.

    Takes the same arguments as :class:`~liftpool.LiftDownPool2d`.
    """


class ReferenceLiftDownPool3d(_ReferenceMixin, LiftDownPool3d):
    """:class:`~liftpool.LiftDownPool3d` computed paper-literally (same arguments)."""


class ReferenceLiftUpPool1d(LiftUpPool1d):
    """:class:`~liftpool.LiftUpPool1d` for a :class:`ReferenceLiftDownPool1d` (literal inverse)."""

    _down_type = ReferenceLiftDownPool1d


class ReferenceLiftUpPool2d(LiftUpPool2d):
    """:class:`~liftpool.LiftUpPool2d` for a :class:`ReferenceLiftDownPool2d`: the literal inverse."""

    _down_type = ReferenceLiftDownPool2d


class ReferenceLiftUpPool3d(LiftUpPool3d):
    """:class:`~liftpool.LiftUpPool3d` for a :class:`ReferenceLiftDownPool3d` (literal inverse)."""

    _down_type = ReferenceLiftDownPool3d


_REF: dict[int, Any] = {1: ReferenceLiftDownPool1d, 2: ReferenceLiftDownPool2d, 3: ReferenceLiftDownPool3d}


def reference_of(layer: LiftDownPoolNd, *, share: bool = False) -> LiftDownPoolNd:
    """The paper-literal twin of a ``LiftDownPool{1,2,3}d`` (see :meth:`_ReferenceMixin.from_layer`)."""
    dims = getattr(layer, "spatial_dims", None)
    if not (isinstance(layer, nn.Module) and dims in _REF and type(layer).__name__ == f"LiftDownPool{dims}d"):
        raise TypeError(f"reference_of needs a LiftDownPool1d/2d/3d, got {type(layer).__name__}")
    return _REF[layer.spatial_dims].from_layer(layer, share=share)
