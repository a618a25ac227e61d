"""LiftPool: bidirectional ConvNet pooling with the lifting scheme (Zhao & Snoek, ICLR 2021).

The layers :class:`LiftDownPool2d` / :class:`LiftUpPool2d` (and 1D/3D), the
constraint loss :func:`lifting_loss`, the pure maths in :mod:`liftpool.functional`,
:func:`convert` and the baseline poolings in :mod:`liftpool.pooling`.

``import liftpool`` loads only those; the heavier subpackages (``models``, ``data``,
``training``, ``evaluation``, ``viz``, ``studies``, ``testing``, and the pooling zoo) load on
first use, e.g. ``liftpool.models.create_model(...)`` right after ``import liftpool``.
The layering of the package is drawn in ``docs/design.md``.
"""

from __future__ import annotations

from typing import Any

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

#: the package version; the single source (pyproject.toml reads it: ``[tool.setuptools.dynamic]``).
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

#: subpackages imported on first attribute access (PEP 562), so ``import liftpool`` stays light.
_LAZY_SUBMODULES: tuple[str, ...] = (
    "data",
    "evaluation",
    "io",
    "kernels",
    "models",
    "pooling",
    "studies",
    "testing",
    "training",
    "viz",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
