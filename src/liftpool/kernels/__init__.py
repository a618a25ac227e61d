"""The one dispatch point between the layers and the kernels that compute the lifting scheme.

Layers (:mod:`liftpool.layers`) call :func:`pool`, :func:`decompose` and :func:`reconstruct`
and never a kernel module directly.  There are three kernels:

* **native** (:mod:`liftpool.kernels.native`): fused C++ kernels, one work item per plane
  (1D: per row, 3D: per volume), for the learned LiftDownPool{1,2,3}d and LiftUpPool{1,2,3}d on
  CPU (forward and backward, registered as ``torch.library`` ops); compiled on first
  use, the default wherever it applies;
* **eager** (:mod:`liftpool.kernels.eager`): the batched channels_last path for learned
  predictor/updater pairs (one ``(P, U)`` pair per transform, no final scaling);
* **literal** (:mod:`liftpool.functional`): every 1D lifting step on its own, used for the
  classic wavelets (fixed linear lifters, final scaling).

All compute the same maths (``tests/test_fast_path.py`` checks eager and literal outputs,
constraint terms and gradients against the paper-literal oracle of :mod:`liftpool.testing`;
``tests/native`` checks native == eager).

Choosing: every layer has ``backend="auto"|"native"|"eager"|"literal"``.  ``"auto"`` (default)
takes the environment variable ``LIFTPOOL_BACKEND`` when it is set (read at import), else the
native kernel where it applies (CPU, learned P/U with ``groups == (C, C)``, not while
tracing or exporting, and it built) and the eager kernel elsewhere.  ``"native"`` asks for the
native kernel and falls back to eager, with one warning saying why, where it cannot run.
Fixed wavelet lifters always take the literal path.  :func:`selected` tells which kernel a
call takes.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .. import functional as LF
from ..constants import band_names
from ..functional import Constraints
from ..lifters import LiftingTransform
from . import eager, native

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Backend",
    "Constraints",
    "selected",
    "decompose",
    "literal_decompose",
    "literal_pool",
    "literal_reconstruct",
    "pool",
    "reconstruct",
    "uses_eager",
]


Backend = Literal["auto", "native", "eager", "literal"]
#: The values of a layer's ``backend`` option.
BACKENDS: tuple[str, ...] = ("auto", "native", "eager", "literal")


def _env_backend() -> str:
    value = os.environ.get("LIFTPOOL_BACKEND", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        warnings.warn(
            f"LIFTPOOL_BACKEND={value!r} is not one of {BACKENDS}; using 'auto'", RuntimeWarning, stacklevel=2
        )
        return "auto"
    return value


#: What ``backend="auto"`` means: ``LIFTPOOL_BACKEND`` at import time, else ``"auto"``.
DEFAULT_BACKEND: str = _env_backend()
_warned_native: set[str] = set()


def _functorch_wrapped(x: Tensor) -> bool:
    """``x`` is a torch.func (vmap/grad/jvp) wrapper tensor."""
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(x)) if check is not None else False


def _native_ready(x: Tensor, transforms: nn.ModuleList, spatial_dims: int) -> str | None:
    """``None`` when the native kernel can run this call, else why not."""
    if not torch.compiler.is_compiling() and _functorch_wrapped(x):
        return "torch.func transforms (vmap, grad, ...) run the eager kernel (the native op has no batching rule)"
    if native._tracing_or_exporting():
        return "jit tracing/scripting and ONNX export take the eager composite of ATen ops"
    if not native.applicable(x, transforms, spatial_dims):
        return (
            "it covers LiftDownPool2d/LiftUpPool2d with learned P/U and groups=(C, C) on non-empty CPU tensors "
            "(not while tracing or exporting)"
        )
    if torch.compiler.is_compiling():
        # never build inside a traced graph: compile uses the op if it is already loaded
        if native._build.STATE.module is not None:
            return None
        # torch.export without dynamo (its default) runs this Python: it may load (or build) the extension
        if torch.compiler.is_exporting() and not torch.compiler.is_dynamo_compiling() and native.available():
            return None
        return "the extension was not loaded before torch.compile traced the layer"
    if not native.available():
        return f"the extension could not be built ({native.build_info().get('error')})"
    return None


@contextlib.contextmanager
def _export_sizes() -> Iterator[None]:
    """While ``torch.export`` traces a LiftPool kernel call: treat a symbolic size as not 1 where torch
    only asks to choose between layouts (``guard_or_false``).

    Native op: its outputs have the half sizes ``ceil(H / 2)``, which are 1 for ``H = 2``; recording
    their metadata asks whether each is 1 (a contiguity test), and with a backed size that question
    becomes a guard that ``Dim(min=2)`` rejects.  The answer only fills in the recorded layout of the
    node's outputs (they are row-major whatever it is), so no value of the exported program depends on it.
    Eager composite: torch's stride rules for elementwise ops on its channels_last half-size maps ask
    the same questions (plus an unprovable ``1 % (C * ceil(W / 2)) != 0``); the answers again decide
    only strides.  What remains there is torch's convolution meta asking whether a map is 1 wide
    (LiftDownPool exports from size 3) and the crop of an odd size in LiftUpPool (a parity guard).
    """
    if not torch.compiler.is_exporting():
        yield
        return
    from torch.fx.experimental import _config as fx_config

    patch: Any = getattr(fx_config, "patch")  # noqa: B009  (added by install_config_module: not in the stubs)
    with patch(backed_size_oblivious=True):
        yield

def selected(x: Tensor, transforms: nn.ModuleList, spatial_dims: int, backend: str = "auto") -> str:
    """The kernel (``"native"``, ``"eager"`` or ``"literal"``) that :func:`pool` runs for this call."""
    choice = DEFAULT_BACKEND if backend == "auto" else backend
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if choice == "literal" or not uses_eager(transforms):
        return "literal"
    if choice == "eager":
        return "eager"
    why = _native_ready(x, transforms, spatial_dims)
    if why is None:
        return "native"
    if choice == "native" and why not in _warned_native and not torch.compiler.is_compiling():
        _warned_native.add(why)
        warnings.warn(f"liftpool: backend='native' falls back to the eager kernel: {why}", RuntimeWarning, stacklevel=3)
    return "eager"


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
    x: Tensor, transforms: nn.ModuleList, spatial_dims: int, constraints: bool, backend: str = "auto"
) -> tuple[dict[str, Tensor], Constraints | None]:
    """All ``2**spatial_dims`` sub-bands of ``x`` by name, and the constraint terms when ``constraints``."""
    kernel = selected(x, transforms, spatial_dims, backend)
    if kernel == "native":
        names = band_names(spatial_dims)
        low, rest, cons = native.pool(x, transforms, spatial_dims, names[:1], 1.0, constraints, True)
        assert rest is not None
        return dict(zip(names, [low, *rest])), cons
    if kernel == "eager":
        with _export_sizes():
            return eager.fast_decompose(x, transforms, spatial_dims, constraints)
    return literal_decompose(x, transforms, spatial_dims, constraints)


def reconstruct(
    bands: Mapping[str, Tensor], size: Sequence[int], transforms: nn.ModuleList, backend: str = "auto"
) -> Tensor:
    """Exact inverse of :func:`decompose`: the input of spatial size ``size`` from all its bands."""
    spatial_dims = len(size)
    kernel = selected(bands[band_names(spatial_dims)[0]], transforms, spatial_dims, backend)
    if kernel == "native":
        with _export_sizes():
            return native.reconstruct(bands, size, transforms)
    if kernel == "eager":
        with _export_sizes():
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
    backend: str = "auto",
) -> tuple[Tensor, list[Tensor] | None, Constraints | None]:
    """The pooled output (sum of ``bands`` times ``scale``), the detail bands when ``details`` and the constraints.

    The detail bands are every band but the all-low one, in :func:`liftpool.constants.band_names` order.
    ``backend`` chooses the kernel (see the module docstring and :func:`selected`).
    """
    kernel = selected(x, transforms, spatial_dims, backend)
    if kernel == "native":
        with _export_sizes():
            return native.pool(x, transforms, spatial_dims, bands, scale, constraints, details)
    if kernel == "eager":
        with _export_sizes():
            return eager.fast_pool(x, transforms, spatial_dims, bands, scale, constraints, details)
    return literal_pool(x, transforms, spatial_dims, bands, scale, constraints, details)
