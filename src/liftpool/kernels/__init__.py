"""The one dispatch point between the layers and the kernels that compute the lifting scheme.

Layers (:mod:`liftpool.layers`) call :func:`pool`, :func:`decompose` and :func:`reconstruct`
and never a kernel module directly.  Today there are two kernels:

* **eager** (:mod:`liftpool.kernels.eager`): the batched channels_last path for learned
  predictor/updater pairs (one ``(P, U)`` pair per transform, no final scaling);
* **literal** (:mod:`liftpool.functional`): every 1D lifting step on its own, used for the
  classic wavelets (fixed linear lifters, final scaling).

Both compute the same maths (``tests/test_fast_path.py`` checks outputs, constraint
terms and gradients against the paper-literal oracle of :mod:`liftpool.testing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from .. import functional as LF
from ..constants import band_names
from ..functional import Constraints
from ..lifters import LiftingTransform
from . import eager

__all__ = [
    "Constraints",
    "decompose",
    "literal_decompose",
    "literal_pool",
    "literal_reconstruct",
    "pool",
    "reconstruct",
    "uses_eager",
]


def uses_eager(transforms: nn.ModuleList) -> bool:
    """True when ``transforms`` take the eager fast path (learned P/U), False for the literal path."""
    return eager.fast_applicable(transforms)


def _transforms(transforms: nn.ModuleList) -> list[LiftingTransform]:
    out = [t for t in transforms if isinstance(t, LiftingTransform)]
    if len(out) != len(transforms):
        raise TypeError("transforms must hold LiftingTransform modules only")
    return out


def _literal_steps(transforms: nn.ModuleList) -> LF.Steps | Sequence[LF.Steps]:
    ts = _transforms(transforms)
    if len(ts) == 1:
        return ts[0].steps
    return [t.steps for t in ts]


def _literal_scale(transforms: nn.ModuleList) -> tuple[float, float] | None:
    return _transforms(transforms)[0].scale


def literal_decompose(
    x: Tensor, transforms: nn.ModuleList, spatial_dims: int, constraints: bool
) -> tuple[dict[str, Tensor], Constraints | None]:
    """:func:`decompose` through the literal path (:func:`liftpool.functional.decompose`), whatever the lifters."""
    return LF.decompose(
        x, spatial_dims, _literal_steps(transforms), scale=_literal_scale(transforms), constraints=constraints
    )


def literal_reconstruct(bands: Mapping[str, Tensor], size: Sequence[int], transforms: nn.ModuleList) -> Tensor:
    """:func:`reconstruct` through the literal path (:func:`liftpool.functional.reconstruct`)."""
    return LF.reconstruct(bands, size, _literal_steps(transforms), scale=_literal_scale(transforms))


def literal_pool(
    x: Tensor,
    transforms: nn.ModuleList,
    spatial_dims: int,
    bands: Sequence[str],
    scale: float,
    constraints: bool,
    details: bool,
) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
    """:func:`pool` through the literal path: all bands, then the sum of the chosen ones."""
    all_bands, cons = literal_decompose(x, transforms, spatial_dims, constraints)
    pooled = all_bands[bands[0]]
    for name in bands[1:]:
        pooled = pooled + all_bands[name]
    if scale != 1.0:
        pooled = pooled * scale
    rest = [all_bands[n] for n in band_names(spatial_dims)[1:]] if details else None
    return pooled, rest, cons


def decompose(
    x: Tensor, transforms: nn.ModuleList, spatial_dims: int, constraints: bool
) -> tuple[dict[str, Tensor], Constraints | None]:
    """All ``2**spatial_dims`` sub-bands of ``x`` by name, and the constraint terms when ``constraints``."""
    if uses_eager(transforms):
        return eager.fast_decompose(x, transforms, spatial_dims, constraints)
    return literal_decompose(x, transforms, spatial_dims, constraints)


def reconstruct(bands: Mapping[str, Tensor], size: Sequence[int], transforms: nn.ModuleList) -> Tensor:
    """Exact inverse of :func:`decompose`: the input of spatial size ``size`` from all its bands."""
    if uses_eager(transforms):
        return eager.fast_reconstruct(bands, size, transforms)
    return literal_reconstruct(bands, size, transforms)


def pool(
    x: Tensor,
    transforms: nn.ModuleList,
    spatial_dims: int,
    bands: Sequence[str],
    scale: float,
    constraints: bool,
    details: bool,
) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
    """The pooled output (sum of ``bands`` times ``scale``), the detail bands when ``details`` and the constraints.

    The detail bands are every band but the all-low one, in :func:`liftpool.constants.band_names` order.
    """
    if uses_eager(transforms):
        return eager.fast_pool(x, transforms, spatial_dims, bands, scale, constraints, details)
    return literal_pool(x, transforms, spatial_dims, bands, scale, constraints, details)
