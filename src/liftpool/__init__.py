"""LiftPool: bidirectional ConvNet pooling with the lifting scheme (Zhao & Snoek, ICLR 2021).

The layers :class:`LiftDownPool2d` / :class:`LiftUpPool2d` (and 1D/3D), the
constraint loss :func:`lifting_loss`, the pure maths in :mod:`liftpool.functional`
and the baseline poolings in :mod:`liftpool.pooling`.
"""

from . import functional
from .constants import band_names
from .convert import ConversionReport, convert
from .layers import (
    Bands1d,
    Bands2d,
    Bands3d,
    Details1d,
    Details2d,
    Details3d,
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
)
from .lifters import LearnedLifter, LiftingTransform, LinearLifter, wavelet_transform
from .losses import lifting_loss

__version__ = "0.1.0"

__all__ = [
    "Bands1d",
    "ConversionReport",
    "Bands2d",
    "Bands3d",
    "Details1d",
    "Details2d",
    "Details3d",
    "LearnedLifter",
    "LiftDownPool1d",
    "LiftDownPool2d",
    "LiftDownPool3d",
    "LiftUpPool1d",
    "LiftUpPool2d",
    "LiftUpPool3d",
    "LiftingTransform",
    "LinearLifter",
    "band_names",
    "convert",
    "functional",
    "lifting_loss",
    "wavelet_transform",
    "__version__",
]
