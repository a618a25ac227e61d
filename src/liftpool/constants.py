"""Names, literal types and conventions shared by the whole package.

Band naming rule
----------------
A band name has one letter per lifted axis, in the order the axes are lifted:
the **last** spatial axis (W) first, then H, then D.  ``L`` is the approximation
(update, low-pass) output of that 1D step and ``H`` the detail (predict,
high-pass) output.  So in 2D ``LH`` = low-pass along W, high-pass along H.

Size rule
---------
Every band has ``ceil(n / 2)`` samples along each lifted axis of length ``n``;
an odd axis is extended by one edge sample before splitting and the inverse
crops it away again.
"""

from __future__ import annotations

from itertools import product
from typing import Literal, TypedDict, get_args

import torch

PaddingMode = Literal["reflect", "replicate", "zeros", "circular"]
"""Boundary extension used by the K-tap convolution of a predictor/updater."""

PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)

WaveletName = Literal["haar", "cdf53", "cdf97"]
"""Classic lifting wavelets available through ``LiftDownPool*.from_wavelet``."""

WAVELET_NAMES: tuple[str, ...] = get_args(WaveletName)

#: Order in which spatial axes are lifted (negative tensor dims): W, then H, then D.
AXIS_ORDER: tuple[int, ...] = (-1, -2, -3)

#: Default constraint weights of the paper (Sec. 2.1): lambda_u, lambda_p.
LAMBDA_U: float = 0.01
LAMBDA_P: float = 0.1


def band_names(spatial_dims: int) -> tuple[str, ...]:
    """All band names for ``spatial_dims`` lifted axes, in canonical order.

    Examples:
        >>> band_names(1)
        ('L', 'H')
        >>> band_names(2)
        ('LL', 'LH', 'HL', 'HH')
        >>> len(band_names(3))
        8
    """
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return tuple("".join(p) for p in product("LH", repeat=spatial_dims))


class FactoryKwargs(TypedDict):
    """The ``device`` / ``dtype`` factory keyword arguments a layer passes on to its parameters."""

    device: torch.device | str | None
    dtype: torch.dtype | None
