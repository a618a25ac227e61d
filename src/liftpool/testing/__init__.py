"""Tools for testing LiftPool code: the paper-literal oracle of the layers (:mod:`liftpool.testing.reference`)."""

from .reference import (
    ReferenceLiftDownPool1d,
    ReferenceLiftDownPool2d,
    ReferenceLiftDownPool3d,
    ReferenceLiftUpPool1d,
    ReferenceLiftUpPool2d,
    ReferenceLiftUpPool3d,
    reference_of,
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
