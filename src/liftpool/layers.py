r"""LiftDownPool and LiftUpPool layers in 1D, 2D and 3D.

A ``LiftDownPool{1,2,3}d`` lifts its input along each spatial axis in turn (W,
then H, then D), splitting it into ``2**dims`` sub-bands of half the size, and
returns the sum of the chosen bands.  The paired ``LiftUpPool{1,2,3}d`` runs the
same transform backwards with the *same* predictor/updater weights, taking the
decoder's map in place of the all-low band and the details the down layer
recorded.  See ``docs/design.md`` for the band naming rule, size rule and
weight sharing.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, NamedTuple, Union

import torch
from torch import Tensor, nn

from . import functional as LF
from . import kernels
from ._checks import check_choice, check_int, check_number, check_spatial_input
from .constants import (
    LAMBDA_P,
    LAMBDA_U,
    PADDING_MODES,
    WAVELET_NAMES,
    FactoryKwargs,
    PaddingMode,
    WaveletName,
    band_names,
)
from .kernels import Backend
from .lifters import LearnedLifter, LiftingTransform, wavelet_transform

__all__ = [
    "LiftDownPoolNd",
    "LiftUpPoolNd",
    "Bands1d",
    "Bands2d",
    "Bands3d",
    "Details1d",
    "Details2d",
    "Details3d",
    "LiftDownPool1d",
    "LiftDownPool2d",
    "LiftDownPool3d",
    "LiftUpPool1d",
    "LiftUpPool2d",
    "LiftUpPool3d",
]


class Bands1d(NamedTuple):
    """All sub-bands of a 1D lifting step and the input's spatial size ``(L,)``."""

    L: Tensor
    H: Tensor
    size: tuple[int, ...]


class Details1d(NamedTuple):
    """What :class:`LiftUpPool1d` needs besides the low band: the detail band and the input size."""

    H: Tensor
    size: tuple[int, ...]


class Bands2d(NamedTuple):
    """All four 2D sub-bands and the input's spatial size ``(H, W)``.

    First letter: band of the horizontal (W) step; second: band of the vertical (H) step.
    """

    LL: Tensor
    LH: Tensor
    HL: Tensor
    HH: Tensor
    size: tuple[int, ...]


class Details2d(NamedTuple):
    """What :class:`LiftUpPool2d` needs besides ``LL``: ``LH, HL, HH`` and the input size ``(H, W)``."""

    LH: Tensor
    HL: Tensor
    HH: Tensor
    size: tuple[int, ...]


class Bands3d(NamedTuple):
    """All eight 3D sub-bands (letters: W step, H step, D step) and the input size ``(D, H, W)``."""

    LLL: Tensor
    LLH: Tensor
    LHL: Tensor
    LHH: Tensor
    HLL: Tensor
    HLH: Tensor
    HHL: Tensor
    HHH: Tensor
    size: tuple[int, ...]


class Details3d(NamedTuple):
    """What :class:`LiftUpPool3d` needs besides ``LLL``: the seven other bands and the input size."""

    LLH: Tensor
    LHL: Tensor
    LHH: Tensor
    HLL: Tensor
    HLH: Tensor
    HHL: Tensor
    HHH: Tensor
    size: tuple[int, ...]


AnyBands = Union[Bands1d, Bands2d, Bands3d]
AnyDetails = Union[Details1d, Details2d, Details3d]
BandSelection = Union[Literal["all"], str, Sequence[str]]


_LAYER_IDS = itertools.count(1)
#: attribute set on the first detail tensor a LiftDownPool returns: the id of that layer
_OWNER_ATTR = "_liftpool_down_id"


def _jit_tracing() -> bool:
    jit: Any = torch.jit  # is_tracing is not re-exported in torch's stubs
    return bool(jit.is_tracing())


def _tracing() -> bool:
    jit: Any = torch.jit  # is_scripting/is_tracing are not re-exported in torch's stubs
    return bool(jit.is_scripting() or jit.is_tracing() or torch.compiler.is_compiling())


def _fx_leaf(module: nn.Module, args: tuple[Any, ...]) -> Any:
    """Under ``torch.fx`` symbolic tracing (an argument is a ``Proxy``): one ``call_module`` node for
    ``module`` (the layer is an FX leaf, as ``nn.Conv2d`` is), else ``None``.

    The layer's forward checks sizes and picks a kernel in Python, which a Proxy cannot answer; as a
    leaf it runs as itself when the traced module runs, so ``torch.fx.symbolic_trace``, torchvision's
    ``create_feature_extractor`` and timm's FX feature extraction work on models holding it (their
    tracers call ``forward`` of every module they do not treat as a leaf: the node is made here).
    """
    proxies = [a for a in args if isinstance(a, torch.fx.Proxy)]
    if not proxies:
        return None
    tracer: Any = proxies[0].tracer  # a torch.fx.Tracer (TracerBase in the stubs has no path_of_module)
    try:
        path = tracer.path_of_module(module)
    except NameError:
        path = ""
    if not path:
        raise TypeError(
            f"{type(module).__name__} cannot be the root of an FX trace (its forward branches on sizes); "
            "trace a module that holds it: the layer is then one call_module node"
        )
    return tracer.create_proxy("call_module", path, args, {})


class LiftDownPoolNd(nn.Module):
    """Base class of :class:`LiftDownPool1d` / ``2d`` / ``3d`` (subclasses set ``spatial_dims`` and the result types).

    Public so that tools can recognise every LiftDownPool (``isinstance(m, LiftDownPoolNd)``) and
    so that :mod:`liftpool.testing` can derive its paper-literal oracle; the computation goes
    through :mod:`liftpool.kernels` (:meth:`_pool`, :meth:`_decompose`, :meth:`_reconstruct`).
    """

    spatial_dims: ClassVar[int]
    _bands_type: ClassVar[type]
    _details_type: ClassVar[type]

    def __init__(
        self,
        channels: int,
        kernel_size: int = 5,
        *,
        bands: BandSelection = "all",
        share_weights: bool = True,
        padding_mode: PaddingMode = "reflect",
        groups: int | tuple[int, int] | None = None,
        lambda_u: float = LAMBDA_U,
        lambda_p: float = LAMBDA_P,
        return_details: bool = False,
        scale: float | Literal["mean"] = 1.0,
        zero_init: bool = False,
        stride: int = 2,
        backend: Backend = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        cls = type(self).__name__
        self.channels = check_int("channels", channels, 1)
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the convolution is centred), got {kernel_size}")
        if check_int("stride", stride, 1) != 2:
            raise ValueError(f"{cls} always pools by 2 (one lifting step per axis); got stride={stride}")
        self.padding_mode = check_choice("padding_mode", padding_mode, PADDING_MODES)
        self.groups = self._check_groups(groups, channels)
        self.bands = self._check_bands(bands)
        self.lambda_u = check_number("lambda_u", lambda_u, nonnegative=True)
        self.lambda_p = check_number("lambda_p", lambda_p, nonnegative=True)
        if isinstance(scale, str) and scale == "mean":  # the band mean: unit gain for P = U = 0 (docs/design.md)
            scale = 1.0 / len(self.bands)
        if isinstance(scale, str):
            raise ValueError(f"scale must be a finite number or 'mean', got {scale!r}")
        self.return_details = bool(return_details)
        self.scale = check_number("scale", scale)
        self.share_weights = bool(share_weights)
        self.zero_init = bool(zero_init)
        self.backend: Backend = check_choice("backend", backend, kernels.BACKENDS)
        self.wavelet: str | None = None
        # identity tag recorded on the details (LiftUpPool refuses another layer's details)
        self._down_id = next(_LAYER_IDS)
        n_transforms = 1 if share_weights else 2**self.spatial_dims - 1
        fk = FactoryKwargs(device=device, dtype=dtype)
        self.transforms = nn.ModuleList(
            LiftingTransform(
                [
                    (
                        LearnedLifter(channels, kernel_size, groups=self.groups, padding_mode=padding_mode, **fk),
                        LearnedLifter(channels, kernel_size, groups=self.groups, padding_mode=padding_mode, **fk),
                    )
                ]
            )
            for _ in range(n_transforms)
        )
        self._constraints: LF.Constraints | None = None
        self.reset_parameters()

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_groups(groups: int | tuple[int, int] | None, channels: int) -> tuple[int, int]:
        if groups is None:
            return (channels, channels)
        g = (groups, groups) if isinstance(groups, int) and not isinstance(groups, bool) else groups
        if not (
            isinstance(g, (tuple, list))
            and len(g) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in g)
        ):
            raise TypeError(f"groups must be an int or a pair of ints (G1, G2), got {groups!r}")
        for v in g:
            if v < 1 or channels % v:
                raise ValueError(f"groups must divide channels={channels}, got {tuple(g)}")
        return (int(g[0]), int(g[1]))

    @classmethod
    def _check_bands(cls, bands: BandSelection) -> tuple[str, ...]:
        names = band_names(cls.spatial_dims)
        if isinstance(bands, str):
            if bands == "all":
                return names
            bands = (bands,)
        if not isinstance(bands, Sequence):
            raise TypeError(f"bands must be 'all', a band name or a sequence of band names, got {type(bands).__name__}")
        chosen = tuple(bands)
        if not chosen:
            raise ValueError(f"bands must not be empty; choose from {names} or 'all'")
        for b in chosen:
            if b not in names:
                raise ValueError(f"unknown band name {b!r} in bands; {cls.__name__} has bands {names}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"bands lists a band twice: {chosen}")
        return tuple(n for n in names if n in chosen)

    def reset_parameters(self) -> None:
        """Re-initialise every learned predictor/updater (``zero_init`` makes P = U = 0)."""
        for m in self.modules():
            if isinstance(m, LearnedLifter):
                m.reset_parameters(zero=self.zero_init)

    @classmethod
    def from_wavelet(
        cls,
        name: WaveletName,
        channels: int,
        *,
        bands: BandSelection = "all",
        padding_mode: PaddingMode = "reflect",
        return_details: bool = False,
        scale: float | Literal["mean"] = 1.0,
    ) -> Any:
        """A layer computing a classic lifting wavelet (fixed linear P/U) through the same code path.

        ``name`` is ``"haar"``, ``"cdf53"`` (LeGall 5/3, the paper's Eq. 13-14) or
        ``"cdf97"``; the approximation band has unit DC gain. The layer has no
        parameters; its constraint terms are still computed in training mode.
        """
        if name not in WAVELET_NAMES:
            raise ValueError(f"wavelet name must be one of {WAVELET_NAMES}, got {name!r}")
        layer = cls(channels, 1, bands=bands, padding_mode=padding_mode, return_details=return_details, scale=scale)
        layer.transforms = nn.ModuleList([wavelet_transform(name, padding_mode=padding_mode)])
        layer.share_weights = True
        layer.wavelet = name
        return layer

    # ------------------------------------------------------------------ core
    def _check_input(self, x: Any, name: str = "x") -> None:
        cls = type(self).__name__
        jit: Any = torch.jit  # is_tracing/TracerWarning are not re-exported in torch's stubs
        if jit.is_tracing():
            # sizes are traced values here: the checks still run on the example but do not enter
            # the graph, so jit.trace's "might not generalize" warnings would be false alarms
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jit.TracerWarning)
                check_spatial_input(cls, x, channels=self.channels, spatial_dims=self.spatial_dims, name=name)
        else:
            check_spatial_input(cls, x, channels=self.channels, spatial_dims=self.spatial_dims, name=name)
        p = next(self.parameters(), None)
        if p is not None and x.dtype != p.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(
                f"{cls}: {name} has dtype {x.dtype} but the layer's parameters are {p.dtype}; "
                f"convert one of them (e.g. layer.to({x.dtype})) or use torch.autocast"
            )

    def _fast(self) -> bool:
        # learned P/U take the batched channels_last eager kernel (same maths);
        # classic wavelets (fixed linear lifters) take the literal path of liftpool.functional
        return kernels.uses_eager(self.transforms)

    def _pool(self, x: Tensor, constraints: bool) -> tuple[Tensor, list[Tensor] | None, LF.Constraints | None]:
        return kernels.pool(
            x,
            self.transforms,
            self.spatial_dims,
            self.bands,
            self.scale,
            constraints,
            self.return_details,
            self.backend,
        )

    def _decompose(self, x: Tensor, constraints: bool) -> tuple[dict[str, Tensor], LF.Constraints | None]:
        return kernels.decompose(x, self.transforms, self.spatial_dims, constraints, self.backend)

    def _reconstruct(self, bands: dict[str, Tensor], size: Sequence[int]) -> Tensor:
        return kernels.reconstruct(bands, size, self.transforms, self.backend)

    def decompose(self, x: Tensor) -> Any:
        """All sub-bands of ``x`` as a NamedTuple (``Bands{1,2,3}d``) with the input's spatial size."""
        self._check_input(x)
        bands, _ = self._decompose(x, False)
        return self._bands_type(**bands, size=_spatial_size(x))

    def reconstruct(self, bands: AnyBands) -> Tensor:
        """Exact inverse of :meth:`decompose`."""
        if not isinstance(bands, self._bands_type):
            raise TypeError(
                f"bands must be a {self._bands_type.__name__} (from .decompose), got {type(bands).__name__}"
            )
        names = band_names(self.spatial_dims)
        low = getattr(bands, names[0])
        self._check_input(low, f"bands.{names[0]}")
        tensors = {n: getattr(bands, n) for n in names}
        _check_band_shapes(tensors, low, bands.size, self.spatial_dims, "bands")
        return self._reconstruct(tensors, bands.size)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, AnyDetails]:
        leaf = _fx_leaf(self, (x,))
        if leaf is not None:
            return leaf
        self._check_input(x)
        pooled, rest, cons = self._pool(x, self.training)
        if cons is not None:
            self._constraints = cons
        if rest is None:
            return pooled
        return pooled, self._tag(self._details_type(*rest, size=_spatial_size(x)))

    def _tag(self, details: Any) -> Any:
        """Record this layer's id on the first detail tensor (a Python attribute: no copy, no
        graph change; skipped while scripting/tracing/compiling, where it is not checked either)."""
        if not _tracing():
            setattr(details[0], _OWNER_ATTR, self._down_id)
        return details

    def __prepare_scriptable__(self) -> nn.Module:
        raise _not_scriptable(self)

    def __getstate__(self) -> dict[str, Any]:
        # The recorded constraint terms are graph tensors of the last forward; they are
        # not state (and would make copy.deepcopy / pickling fail), so copies drop them.
        state = self.__dict__.copy()
        state["_constraints"] = None
        return state

    @property
    def constraints(self) -> LF.Constraints | None:
        """``(c_u, c_p)`` from the last forward in training mode (``None`` before one)."""
        return self._constraints

    def lifting_loss(self) -> Tensor | None:
        """``lambda_u * c_u + lambda_p * c_p`` of the last training-mode forward, or ``None``."""
        c = self._constraints
        if c is None:
            return None
        return self.lambda_u * c.c_u + self.lambda_p * c.c_p

    def extra_repr(self) -> str:
        if self.wavelet is not None:
            return f"{self.channels}, wavelet={self.wavelet!r}, bands={self.bands}, padding_mode={self.padding_mode!r}"
        s = (
            f"{self.channels}, kernel_size={self.kernel_size}, bands={self.bands}, share_weights={self.share_weights}, "
            f"padding_mode={self.padding_mode!r}, lambda_u={self.lambda_u}, lambda_p={self.lambda_p}"
        )
        if self.scale != 1.0:
            s += f", scale={self.scale}"
        if self.return_details:
            s += ", return_details=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s


def _not_scriptable(layer: nn.Module) -> RuntimeError:
    """``torch.jit.script`` calls ``__prepare_scriptable__`` on every submodule before compiling it."""
    return RuntimeError(
        f"{type(layer).__name__} does not support torch.jit.script (TorchScript cannot compile its batched "
        "fast path). Use torch.jit.trace(model.eval(), example) instead (the traced graph is valid for every "
        "input size), or torch.export.export / torch.onnx.export / torch.compile."
    )


def _spatial_size(x: Tensor) -> tuple[int, ...]:
    """The input size recorded in bands / details: ints in eager; kept symbolic under ``torch.export``,
    ONNX export and ``jit.trace`` (not ``int()``-ed), so a traced graph crops to every input size."""
    return tuple(x.shape[2:])


def _is_size(n: Any) -> bool:
    if isinstance(n, bool):
        return False
    # traced sizes are 0-dim integer tensors under jit.trace (and the legacy ONNX exporter)
    return isinstance(n, (int, torch.SymInt)) or (_jit_tracing() and isinstance(n, Tensor) and n.ndim == 0)


def _check_band_shapes(tensors: dict[str, Tensor], low: Tensor, size: Any, dims: int, what: str) -> None:
    if not (isinstance(size, (tuple, list, torch.Size)) and len(size) == dims and all(_is_size(n) for n in size)):
        raise ValueError(f"{what}.size must be a tuple of {dims} ints (the input's spatial size), got {size!r}")
    for n, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}.{n} must be a tensor, got {type(t).__name__}")
    if _jit_tracing():
        return  # shapes are traced values here: comparing them would freeze the example's sizes
    expect = tuple((n + 1) // 2 for n in size)
    if tuple(low.shape[2:]) != expect:
        raise ValueError(
            f"{what}: band spatial shape {tuple(low.shape[2:])} does not match size={tuple(size)} "
            f"(expected ceil(size/2) = {expect})"
        )
    for n, t in tensors.items():
        if t.shape != low.shape:
            raise ValueError(f"{what}.{n} has shape {tuple(t.shape)} but the low band has {tuple(low.shape)}")


class LiftUpPoolNd(nn.Module):
    """Base class of :class:`LiftUpPool1d` / ``2d`` / ``3d``: the inverse of a paired :class:`LiftDownPoolNd`."""

    _down_type: ClassVar[type]
    spatial_dims: ClassVar[int]

    def __init__(self, down: LiftDownPoolNd) -> None:
        super().__init__()
        if not isinstance(down, self._down_type):
            raise TypeError(
                f"{type(self).__name__} needs the paired {self._down_type.__name__}, got {type(down).__name__}"
            )
        self.down = down

    def __prepare_scriptable__(self) -> nn.Module:
        raise _not_scriptable(self)

    def forward(self, y: Tensor, details: AnyDetails) -> Tensor:
        leaf = _fx_leaf(self, (y, details))
        if leaf is not None:
            return leaf
        cls = type(self).__name__
        dt = self.down._details_type
        if not isinstance(details, dt):
            raise TypeError(
                f"{cls}: details must be a {dt.__name__} (from the paired down layer), got {type(details).__name__}"
            )
        self.down._check_input(y, "y")
        owner = None if _tracing() else getattr(details[0], _OWNER_ATTR, None)
        if owner is not None and owner != self.down._down_id:
            raise ValueError(
                f"{cls}: details were recorded by a different {type(self.down).__name__} than this layer's paired one "
                f"(pass the details of self.down's forward; details rebuilt from tensors are not checked)"
            )
        names = band_names(self.spatial_dims)
        tensors = {names[0]: y, **{n: getattr(details, n) for n in names[1:]}}
        _check_band_shapes(tensors, y, details.size, self.spatial_dims, "details")
        return self.down._reconstruct(tensors, details.size)


_DOC_ARGS = """
    Args:
        channels: number of input channels ``C``.
        kernel_size: odd number of taps ``K`` of the predictor/updater convolution (default 5).
        bands: ``"all"`` (default) or the band names whose sum is the pooled output.
        share_weights: one P/U pair for every 1D step of the layer (default, as the
            authors did) or one pair per step.
        padding_mode: ``"reflect"`` (default), ``"replicate"``, ``"zeros"`` or
            ``"circular"`` boundary of the K-tap convolution; reflect falls back to
            replicate on axes too short to reflect.
        groups: ``(G1, G2)`` groups of the K-tap and the 1x1 convolution (or one int
            for both); default ``(C, C)``: ``C*K + C`` weights plus biases per P or U.
        lambda_u, lambda_p: weights of the constraint terms ``c_u`` and ``c_p`` in
            :func:`liftpool.lifting_loss`.
        return_details: return ``(pooled, details)`` for a paired up-pooling layer.
        scale: multiplies the pooled output (1.0 = the paper's plain sum). With
            ``P = U = 0`` the all-band sum is ``2**dims`` times average pooling, so
            ``scale=1/2**dims`` with ``zero_init=True`` starts as average pooling.
            ``"mean"`` is ``1 / len(bands)`` (the band mean; ``liftpool train``'s default).
        zero_init: initialise the 1x1 stage of P and U at zero so that P = U = 0
            at the start of training (the K-tap stage keeps its random init).
        stride: must be 2; accepted for drop-in use as timm's ``aa_layer``.
        backend: the kernel that computes the layer: ``"auto"`` (default: the native C++ kernel
            where it applies, else eager; the environment variable ``LIFTPOOL_BACKEND`` overrides
            ``"auto"``), ``"native"``, ``"eager"`` (batched ATen ops) or ``"literal"`` (the
            paper's steps one by one). All compute the same maths; see :mod:`liftpool.kernels`.
        device, dtype: factory kwargs for the parameters.
"""


class LiftDownPool1d(LiftDownPoolNd):
    __doc__ = (
        """1D LiftDownPool: one lifting step along the last axis; bands ``L`` and ``H``.
"""
        + _DOC_ARGS
        + """
    Shape:
        - Input: ``(N, C, L)``
        - Output: ``(N, C, ceil(L/2))``; with ``return_details`` also ``Details1d(H, size)``.

    Examples:
        >>> pool = LiftDownPool1d(8)
        >>> pool(torch.randn(4, 8, 101)).shape
        torch.Size([4, 8, 51])
"""
    )
    spatial_dims = 1
    _bands_type = Bands1d
    _details_type = Details1d


class LiftDownPool2d(LiftDownPoolNd):
    __doc__ = (
        """2D LiftDownPool: lift along W, then along H on both halves; bands ``LL, LH, HL, HH``.

    Band names: first letter = band of the horizontal (W) step, second = band of the
    vertical (H) step, ``L`` = approximation (update), ``H`` = detail (predict).
"""
        + _DOC_ARGS
        + """
    Shape:
        - Input: ``(N, C, H, W)``
        - Output: ``(N, C, ceil(H/2), ceil(W/2))``; with ``return_details`` also
          ``Details2d(LH, HL, HH, size)``.

    Examples:
        >>> pool = LiftDownPool2d(16)
        >>> pool(torch.randn(2, 16, 7, 5)).shape
        torch.Size([2, 16, 4, 3])
        >>> bands = pool.decompose(torch.randn(2, 16, 8, 8))
        >>> bands.LL.shape, bands.size
        (torch.Size([2, 16, 4, 4]), (8, 8))
"""
    )
    spatial_dims = 2
    _bands_type = Bands2d
    _details_type = Details2d


class LiftDownPool3d(LiftDownPoolNd):
    __doc__ = (
        """3D LiftDownPool: lift along W, H, then D; eight bands ``LLL`` ... ``HHH``.
"""
        + _DOC_ARGS
        + """
    Shape:
        - Input: ``(N, C, D, H, W)``
        - Output: ``(N, C, ceil(D/2), ceil(H/2), ceil(W/2))``; with ``return_details`` also
          ``Details3d(LLH, ..., HHH, size)``.

    Examples:
        >>> LiftDownPool3d(2)(torch.randn(1, 2, 5, 6, 7)).shape
        torch.Size([1, 2, 3, 3, 4])
"""
    )
    spatial_dims = 3
    _bands_type = Bands3d
    _details_type = Details3d


class LiftUpPool1d(LiftUpPoolNd):
    """1D LiftUpPool: the exact inverse of its paired :class:`LiftDownPool1d`, sharing its weights.

    ``forward(y, details)`` treats ``y`` as the ``L`` band. Feeding the down layer's own
    ``L`` band gives back its input exactly.

    Shape:
        - ``y``: ``(N, C, ceil(L/2))``; ``details``: ``Details1d`` from the down layer.
        - Output: ``(N, C, L)``.

    Examples:
        >>> down = LiftDownPool1d(3, bands="L", return_details=True)
        >>> up = LiftUpPool1d(down)
        >>> x = torch.randn(2, 3, 9)
        >>> y, details = down(x)
        >>> torch.allclose(up(y, details), x, atol=1e-5)
        True
    """

    spatial_dims = 1
    _down_type = LiftDownPool1d


class LiftUpPool2d(LiftUpPoolNd):
    """2D LiftUpPool: the exact inverse of its paired :class:`LiftDownPool2d`, sharing its weights.

    ``forward(y, details)`` treats ``y`` as the ``LL`` band and recombines it with the
    ``LH, HL, HH`` bands the down layer recorded; the output is cropped to the
    recorded input size. Its parameters are the down layer's (they appear once in
    ``model.parameters()``). Details recorded by a *different* LiftDownPool2d (of the
    same shape) raise ``ValueError``: the down layer tags them with its id (eager mode;
    see docs/design.md, "Which layer recorded the details").

    Shape:
        - ``y``: ``(N, C, ceil(H/2), ceil(W/2))``; ``details``: ``Details2d`` from the down layer.
        - Output: ``(N, C, H, W)``.

    Examples:
        >>> down = LiftDownPool2d(4, bands="LL", return_details=True)
        >>> up = LiftUpPool2d(down)
        >>> x = torch.randn(2, 4, 7, 6)
        >>> y, details = down(x)
        >>> torch.allclose(up(y, details), x, atol=1e-5)
        True
    """

    spatial_dims = 2
    _down_type = LiftDownPool2d


class LiftUpPool3d(LiftUpPoolNd):
    """3D LiftUpPool: the exact inverse of its paired :class:`LiftDownPool3d`, sharing its weights.

    Shape:
        - ``y``: ``(N, C, ceil(D/2), ceil(H/2), ceil(W/2))``; ``details``: ``Details3d``.
        - Output: ``(N, C, D, H, W)``.

    Examples:
        >>> down = LiftDownPool3d(2, bands="LLL", return_details=True)
        >>> x = torch.randn(1, 2, 3, 4, 5)
        >>> y, details = down(x)
        >>> torch.allclose(LiftUpPool3d(down)(y, details), x, atol=1e-5)
        True
    """

    spatial_dims = 3
    _down_type = LiftDownPool3d


#: Old private names of the base classes, kept for code that imported them.
_LiftDownPoolNd = LiftDownPoolNd
_LiftUpPoolNd = LiftUpPoolNd

LIFT_DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
LIFT_UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}
