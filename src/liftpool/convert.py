r"""Turn the down-sampling layers of any ``nn.Module`` into LiftDownPool (or another registered pool).

:func:`convert` walks a model and

* replaces every stride-2 ``nn.MaxPool2d`` / ``nn.AvgPool2d`` by the chosen pooling layer
  (``LiftDownPool2d`` by default), and
* with ``strided_conv=True`` turns every stride-2 ``nn.Conv2d`` into the same convolution at
  stride 1 followed by the pooling layer (the anti-aliasing placement of Zhang 2019,
  "Making Convolutional Networks Shift-Invariant Again"); a 1x1 stride-2 convolution
  (ResNet's projection shortcut) is pooled *before* the convolution instead, which gives the
  same output size at a quarter of the cost.

Every existing parameter and buffer keeps its name and its tensor, so a pretrained
``state_dict`` of the original architecture still loads with ``strict=False`` and the only
missing keys are the new pooling layers' parameters.  Output shapes are unchanged for every
input size (a replaced pool whose output size rule differs from ``ceil(n/2)`` is wrapped in
:class:`SizeMatchedPool2d`, which crops or edge-pads to the old size).

Pretrained networks: ``init="match"`` builds each ``LiftDownPool2d`` with ``P = U = 0`` at the
start (``zero_init=True``) and ``scale=1/4``, so it starts as exactly 2x2 average pooling
instead of the paper's plain 4-band sum (about 4x average pooling plus learned detail).  How
close each option stays to the original network is measured in ``docs/networks.md``.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    >>> net2, report = convert(net, return_report=True)
    >>> [(r.path, r.new) for r in report.replaced]
    [('2', 'SizeMatched(LiftDownPool2d(8))')]
    >>> net2(torch.randn(1, 3, 9, 9)).shape == net(torch.randn(1, 3, 9, 9)).shape
    True
    >>> missing, unexpected = net2.load_state_dict(net.state_dict(), strict=False)
    >>> all(k.startswith("2.") for k in missing), unexpected
    (True, [])
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Union, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .io import atomic_save_figure, atomic_write_text
from .layers import LiftDownPool2d
from .pooling import available_pools, make_pool

__all__ = [
    "ConversionReport",
    "Init",
    "PooledConv2d",
    "Replacement",
    "OutputDifference",
    "SizeMatchedPool2d",
    "Target",
    "TimmLiftDownPool2d",
    "FinetuneMeasurement",
    "InitMeasurement",
    "PlacementMeasurement",
    "cifar_study",
    "compare_outputs",
    "convert",
    "measure_init",
    "placement_study",
    "random_images",
    "recalibrate_batchnorm",
    "init_kwargs",
]

logger = logging.getLogger(__name__)

Target = Literal["maxpool", "avgpool"]
"""Kinds of pooling layer :func:`convert` can replace."""

Init = Literal["paper", "match"]
"""``"paper"``: LiftDownPool2d's defaults (plain band sum, random P/U); ``"match"``: start as AvgPool2d(2)."""

_TARGET_TYPES: dict[str, type[nn.Module]] = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}
_INITS: tuple[str, ...] = ("paper", "match")


class Replacement(NamedTuple):
    """One replaced module: its dotted path, the old module's repr, the new layer and its added parameters."""

    path: str
    old: str
    new: str
    added_parameters: int


class ConversionReport(NamedTuple):
    """What :func:`convert` did.

    ``replaced``: one :class:`Replacement` per converted module; ``skipped``: ``(path, reason)``
    for each candidate left alone (excluded, stride not 2, the stem, ...);
    ``added_parameters``: total number of new parameters.
    """

    replaced: tuple[Replacement, ...]
    skipped: tuple[tuple[str, str], ...]
    added_parameters: int

    def __str__(self) -> str:
        lines = [f"converted {len(self.replaced)} module(s), +{self.added_parameters} parameters"]
        for r in self.replaced:
            lines.append(f"  {r.path}: {r.old} -> {r.new} (+{r.added_parameters})")
        for path, why in self.skipped:
            lines.append(f"  skipped {path}: {why}")
        return "\n".join(lines)


def init_kwargs(init: Init) -> dict[str, Any]:
    """``LiftDownPool2d`` keyword arguments for an ``init`` choice.

    Examples:
        >>> init_kwargs("match")
        {'scale': 0.25, 'zero_init': True}
        >>> init_kwargs("paper")
        {}
    """
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    return {"scale": 0.25, "zero_init": True} if init == "match" else {}


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def _pool_out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Output length of a PyTorch max/avg pooling along one axis (its documented formula)."""
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


class SizeMatchedPool2d(nn.Module):
    """A pooling layer whose ``ceil(n/2)`` output is cropped (or edge-padded) to another layer's size rule.

    :func:`convert` uses it when the replaced ``MaxPool2d``/``AvgPool2d`` does not produce
    ``ceil(n/2)`` for every ``n`` (e.g. ``MaxPool2d(2)`` gives ``floor(n/2)``), so the
    converted network keeps its output shapes on odd inputs.

    Args:
        pool: a stride-2 down-pooling layer with output ``ceil(n/2)``.
        kernel_size, padding, dilation, ceil_mode: the replaced layer's settings (stride 2).

    Examples:
        >>> m = SizeMatchedPool2d(LiftDownPool2d(2), kernel_size=2)
        >>> m(torch.randn(1, 2, 7, 9)).shape
        torch.Size([1, 2, 3, 4])
    """

    def __init__(
        self,
        pool: nn.Module,
        *,
        kernel_size: int | tuple[int, int],
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.kernel_size = _pair(kernel_size)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        """The replaced layer's output size for an ``h x w`` input."""
        return tuple(  # type: ignore[return-value]
            _pool_out_size(n, k, 2, p, d, self.ceil_mode)
            for n, k, p, d in zip((h, w), self.kernel_size, self.padding, self.dilation)
        )

    def forward(self, x: Tensor) -> Tensor:
        th, tw = self.out_size(int(x.shape[-2]), int(x.shape[-1]))
        if th < 1 or tw < 1:
            raise ValueError(f"{type(self).__name__}: input {tuple(x.shape)} is too small for the replaced pooling layer")
        y = self.pool(x)
        y = y[..., :th, :tw]
        ph, pw = th - y.shape[-2], tw - y.shape[-1]
        if ph or pw:
            y = F.pad(y, (0, pw, 0, ph), mode="replicate")
        return y

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, padding={self.padding}, dilation={self.dilation}, ceil_mode={self.ceil_mode}"


class PooledConv2d(nn.Conv2d):
    """A ``Conv2d`` run at stride 1 with a down-pooling layer ``pool`` after it (or before it).

    It is what :func:`convert` makes of a stride-2 convolution: it *is* an ``nn.Conv2d``
    (same ``weight``/``bias`` names, so pretrained weights load) whose stride is 1, followed by
    ``pool`` (stride 2, output ``ceil(n/2)``).  For ``pool_first=True`` (used for 1x1,
    unpadded convolutions) the pooling runs on the input instead, which gives the same output
    size at a quarter of the cost.  A stride-2 convolution's output size is
    ``floor((m - 1)/2) + 1 = ceil(m/2)`` where ``m`` is its stride-1 output size, so the
    converted layer's output shape always equals the original's.

    Examples:
        >>> conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        >>> pc = PooledConv2d.from_conv(conv, LiftDownPool2d(8))
        >>> pc(torch.randn(1, 3, 11, 6)).shape == conv(torch.randn(1, 3, 11, 6)).shape
        True
        >>> pc.weight is conv.weight, pc.stride
        (True, (1, 1))
    """

    def __init__(self, *args: Any, pool: nn.Module | None = None, pool_first: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if tuple(self.stride) != (1, 1):
            raise ValueError(f"PooledConv2d runs its convolution at stride 1, got stride={self.stride}")
        self.pool = pool if pool is not None else nn.Identity()
        self.pool_first = bool(pool_first)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, pool: nn.Module, *, pool_first: bool = False) -> PooledConv2d:
        """Wrap ``conv`` (stride 2), sharing its parameter tensors, with ``pool``."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        new = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=1, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, device="meta", pool=pool, pool_first=pool_first,
        )
        new.weight = conv.weight
        new.bias = conv.bias
        for name, buf in conv.named_buffers(recurse=False):
            new.register_buffer(name, buf)
        new.train(conv.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if self.pool_first:
            return super().forward(self.pool(x))
        return self.pool(super().forward(x))

    def extra_repr(self) -> str:
        return super().extra_repr() + (", pool_first=True" if self.pool_first else "")


class TimmLiftDownPool2d(LiftDownPool2d):
    """:class:`~liftpool.LiftDownPool2d` as timm's ``aa_layer``, also for dilated (``output_stride`` 8/16) networks.

    ``timm.create_model(name, aa_layer=LiftDownPool2d)`` works for the default output stride:
    timm calls ``aa_layer(channels=C, stride=2)`` after each stride-2 stage's activation (and,
    in a ResNet stem, after a stride-1 3x3 max pool).  With ``output_stride=16`` or ``8`` timm
    also asks for an anti-aliasing layer with ``stride=1`` where a stage switches to dilation;
    a lifting step always halves the map, so this class returns ``nn.Identity()`` there (no
    subsampling happens, so there is nothing to pool) and a LiftDownPool2d otherwise.

    Examples:
        >>> TimmLiftDownPool2d(channels=8, stride=1)
        Identity()
        >>> TimmLiftDownPool2d(channels=8, stride=2)(torch.randn(1, 8, 5, 5)).shape
        torch.Size([1, 8, 3, 3])
    """

    def __new__(cls, *args: Any, stride: int = 2, **kwargs: Any) -> Any:  # noqa: D102
        if stride == 1:
            return nn.Identity()
        return super().__new__(cls)


class OutputDifference(NamedTuple):
    """How far a converted network's output is from the original's on the same inputs.

    ``rel_l2``: ``||f'(x) - f(x)|| / ||f(x)||`` over the whole batch; ``max_abs``: largest
    absolute difference; ``top1_agreement``: fraction of samples whose arg-max over dim 1
    agrees (per pixel for segmentation outputs).
    """

    rel_l2: float
    max_abs: float
    top1_agreement: float


@torch.no_grad()
def compare_outputs(original: nn.Module, converted: nn.Module, x: Tensor) -> OutputDifference:
    """Run both networks (in their current train/eval mode) on ``x`` and compare the outputs.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2)).eval()
        >>> d = compare_outputs(net, convert(net, init="match").eval(), torch.randn(2, 3, 8, 8))
        >>> d.rel_l2 < 1e-6, d.top1_agreement
        (True, 1.0)
    """
    a, b = original(x), converted(x)
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        raise TypeError("compare_outputs needs networks returning one tensor each")
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    diff = (b - a).double()
    rel = float(diff.norm() / a.double().norm().clamp_min(1e-300))
    agree = float((a.argmax(1) == b.argmax(1)).double().mean()) if a.ndim >= 2 else float("nan")
    return OutputDifference(rel, float(diff.abs().max()) if diff.numel() else 0.0, agree)


def _describe(m: nn.Module) -> str:
    if isinstance(m, SizeMatchedPool2d):
        return f"SizeMatched({_describe(m.pool)})"
    ch = getattr(m, "channels", None)
    return f"{type(m).__name__}({ch})" if ch is not None else type(m).__name__


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _first_conv(model: nn.Module) -> str | None:
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return name
    return None


def _probe_channels(
    model: nn.Module, paths: Sequence[str], example_input: Tensor | tuple[int, ...] | None
) -> dict[str, int]:
    """Input channel count of each module in ``paths``, from one forward pass.

    Without ``example_input`` the pass runs on the ``meta`` device (no compute, no memory)
    with a ``(1, C, 224, 224)`` input, ``C`` = the first convolution's ``in_channels``.
    """
    modules = dict(model.named_modules())
    seen: dict[str, int] = {}
    hooks = []
    for p in paths:
        def hook(mod: nn.Module, args: tuple[Any, ...], p: str = p) -> None:
            if args and isinstance(args[0], Tensor) and args[0].ndim == 4:
                seen.setdefault(p, int(args[0].shape[1]))
        hooks.append(modules[p].register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if isinstance(example_input, Tensor):
                model(example_input)
            else:
                if example_input is None:
                    first = _first_conv(model)
                    c = modules[first].in_channels if first is not None else 3  # type: ignore[union-attr]
                    shape: tuple[int, ...] = (1, c, 224, 224)
                else:
                    shape = tuple(example_input)
                state = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
                try:
                    torch.func.functional_call(model, state, (torch.zeros(shape, device="meta"),), strict=False)
                except Exception as err:  # noqa: BLE001 - fall back to a real forward
                    logger.debug("meta probe failed (%s); running a real forward pass", err)
                    p0 = next(model.parameters(), None)
                    seen.clear()
                    model(torch.zeros(shape, device=p0.device if p0 is not None else None,
                                      dtype=p0.dtype if p0 is not None else None))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return seen


BandSelection = Union[Literal["all"], str, Sequence[str]]


@overload
def convert(
    model: nn.Module, *, pool: str = ..., targets: Iterable[Target] = ..., strided_conv: bool = ...,
    bands: BandSelection = ..., kernel_size: int | None = ..., init: Init = ..., exclude: Iterable[str] = ...,
    keep_stem: bool = ..., inplace: bool = ..., example_input: Tensor | tuple[int, ...] | None = ...,
    pool_kwargs: Mapping[str, Any] | None = ..., return_report: Literal[False] = ...,
) -> nn.Module: ...


@overload
def convert(
    model: nn.Module, *, pool: str = ..., targets: Iterable[Target] = ..., strided_conv: bool = ...,
    bands: BandSelection = ..., kernel_size: int | None = ..., init: Init = ..., exclude: Iterable[str] = ...,
    keep_stem: bool = ..., inplace: bool = ..., example_input: Tensor | tuple[int, ...] | None = ...,
    pool_kwargs: Mapping[str, Any] | None = ..., return_report: Literal[True],
) -> tuple[nn.Module, ConversionReport]: ...


def convert(
    model: nn.Module,
    *,
    pool: str = "lift",
    targets: Iterable[Target] = ("maxpool", "avgpool"),
    strided_conv: bool = False,
    bands: BandSelection = "all",
    kernel_size: int | None = None,
    init: Init = "paper",
    exclude: Iterable[str] = (),
    keep_stem: bool = True,
    inplace: bool = False,
    example_input: Tensor | tuple[int, ...] | None = None,
    pool_kwargs: Mapping[str, Any] | None = None,
    return_report: bool = False,
) -> nn.Module | tuple[nn.Module, ConversionReport]:
    """Replace a network's stride-2 pooling (and optionally strided convolutions) by LiftDownPool2d.

    Args:
        model: any ``nn.Module`` working on ``(N, C, H, W)`` images.
        pool: name of the replacement (any :func:`liftpool.pooling.available_pools` name);
            ``"lift"`` (default) is :class:`liftpool.LiftDownPool2d`.
        targets: which layers to replace: ``"maxpool"`` (``nn.MaxPool2d``) and/or
            ``"avgpool"`` (``nn.AvgPool2d``); only stride-2 ones (``AdaptiveAvgPool2d`` and
            stride-1 pools are never touched).
        strided_conv: also turn each stride-2 ``nn.Conv2d`` into a :class:`PooledConv2d`
            (convolution at stride 1, then the pool, i.e. before the norm and activation that
            follow in ``forward``; 1x1 unpadded convolutions are pooled before). Needed for
            networks without pooling layers (MobileNetV2, EfficientNet). For the placement
            after the activation build the network with it (``liftpool.models``, timm's
            ``aa_layer``); see ``docs/networks.md``.
        bands: LiftDownPool2d bands summed into the output (``"lift"`` only).
        kernel_size: taps of the pool (``None``: the pool's default, 5 for ``"lift"``).
        init: ``"paper"`` (LiftDownPool2d defaults: plain sum of the bands, random P/U) or
            ``"match"`` (``P = U = 0`` and ``scale=1/4`` at the start: exactly 2x2 average
            pooling, closer to a pretrained network's original layers; ``"lift"`` only).
        exclude: ``fnmatch`` patterns of dotted module paths to leave alone.
        keep_stem: with ``strided_conv``, leave the network's first convolution strided (it
            sees the raw image; converting it quadruples the stem's cost). Default True, as
            antialiased-cnns does.
        inplace: modify ``model`` itself instead of a deep copy.
        example_input: a tensor (run for real) or a shape (run on the ``meta`` device) used to
            find each replaced pool's channel count; default a ``(1, C, 224, 224)`` shape.
        pool_kwargs: further keyword arguments for the pool's constructor (e.g.
            ``share_weights``, ``padding_mode``, ``lambda_u``, ``scale``).
        return_report: return ``(model, ConversionReport)`` instead of the model alone. The
            report is always logged on the ``liftpool.convert`` logger (level INFO).

    Returns:
        The converted model (a copy unless ``inplace``), and the report if asked for.

    Raises:
        TypeError, ValueError: on a bad argument (unknown pool, target, init ...).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(pool, str) or pool not in available_pools():
        raise ValueError(f"pool must be one of {available_pools()}, got {pool!r}")
    if isinstance(targets, str):
        targets = (targets,)  # type: ignore[assignment]
    targets = tuple(targets)
    for t in targets:
        if t not in _TARGET_TYPES:
            raise ValueError(f"targets must be a subset of {tuple(_TARGET_TYPES)}, got {t!r}")
    if not targets and not strided_conv:
        raise ValueError("nothing to convert: targets is empty and strided_conv=False")
    if isinstance(exclude, str):
        exclude = (exclude,)
    exclude = tuple(exclude)
    kw: dict[str, Any] = {}
    if pool == "lift":
        kw.update(init_kwargs(init))
        kw["bands"] = bands
    else:
        if init != "paper":
            raise ValueError(f"init={init!r} only applies to pool='lift', got pool={pool!r}")
        if bands != "all":
            raise ValueError(f"bands only applies to pool='lift', got pool={pool!r}")
    if kernel_size is not None:
        kw["kernel_size"] = kernel_size
    if pool_kwargs is not None:
        if not isinstance(pool_kwargs, Mapping):
            raise TypeError(f"pool_kwargs must be a mapping, got {type(pool_kwargs).__name__}")
        kw.update(pool_kwargs)
    if example_input is not None and not isinstance(example_input, (Tensor, tuple, list, torch.Size)):
        raise TypeError(f"example_input must be a tensor or a shape tuple, got {type(example_input).__name__}")

    if not inplace:
        model = copy.deepcopy(model)
    target_types = tuple(_TARGET_TYPES[t] for t in targets)
    stem = _first_conv(model) if (strided_conv and keep_stem) else None

    pools: list[str] = []
    convs: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, m in model.named_modules():
        if not path:
            continue
        is_pool = bool(target_types) and isinstance(m, target_types)
        is_conv = strided_conv and isinstance(m, nn.Conv2d) and _pair(m.stride) != (1, 1)
        if not (is_pool or is_conv):
            continue
        if any(fnmatch.fnmatchcase(path, pat) for pat in exclude):
            skipped.append((path, "excluded"))
            continue
        if is_pool:
            stride = _pair(m.stride if m.stride is not None else m.kernel_size)  # type: ignore[attr-defined]
            if stride != (2, 2):
                skipped.append((path, f"stride {stride} is not 2"))
            elif getattr(m, "return_indices", False):
                skipped.append((path, "return_indices=True (its indices feed an unpooling layer)"))
            else:
                pools.append(path)
        elif is_conv:
            if type(m) is not nn.Conv2d:
                skipped.append((path, f"{type(m).__name__} is not a plain nn.Conv2d (its forward may differ)"))
            elif _pair(m.stride) != (2, 2):
                skipped.append((path, f"stride {_pair(m.stride)} is not 2"))
            elif path == stem:
                skipped.append((path, "the stem convolution (keep_stem=True)"))
            elif isinstance(m.padding, str):
                skipped.append((path, f"string padding {m.padding!r}"))
            else:
                convs.append(path)

    channels = _probe_channels(model, pools, example_input) if pools else {}
    modules = dict(model.named_modules())
    replaced: list[Replacement] = []

    def factory_kw(m: nn.Module) -> dict[str, Any]:
        ref = next(m.parameters(), None)
        if ref is None:
            ref = next(model.parameters(), None)
        return {"device": ref.device, "dtype": ref.dtype} if ref is not None and ref.is_floating_point() else {}

    def put(path: str, new: nn.Module) -> None:
        parent_path, _, name = path.rpartition(".")
        setattr(modules[parent_path] if parent_path else model, name, new)

    for path in pools:
        old = modules[path]
        if path not in channels:
            skipped.append((path, "not reached by the probe forward pass (channel count unknown)"))
            continue
        new: nn.Module = make_pool(pool, channels[path], **{**factory_kw(old), **kw})
        k, p = _pair(old.kernel_size), _pair(old.padding)  # type: ignore[attr-defined]
        d = _pair(getattr(old, "dilation", 1))
        ceil_mode = bool(old.ceil_mode)  # type: ignore[attr-defined]
        if any(
            _pool_out_size(n, k[i], 2, p[i], d[i], ceil_mode) != (n + 1) // 2
            for i in range(2) for n in range(max(1, k[i] - 2 * p[i]), 2 * (k[i] + 2 * p[i]) + 8)
        ):
            new = SizeMatchedPool2d(new, kernel_size=k, padding=p, dilation=d, ceil_mode=ceil_mode)
        new.train(old.training)
        put(path, new)
        replaced.append(Replacement(path, repr(old), _describe(new), _n_params(new)))

    for path in convs:
        old = modules[path]
        assert isinstance(old, nn.Conv2d)
        first = _pair(old.kernel_size) == (1, 1) and _pair(old.padding) == (0, 0)
        ch = old.in_channels if first else old.out_channels
        p_layer = make_pool(pool, ch, **{**factory_kw(old), **kw})
        p_layer.train(old.training)
        new = PooledConv2d.from_conv(old, p_layer, pool_first=first)
        put(path, new)
        where = "before" if first else "after"
        replaced.append(Replacement(path, repr(old), f"Conv2d(stride=1) + {_describe(p_layer)} {where}",
                                    _n_params(p_layer)))

    order = {path: i for i, (path, _) in enumerate(model.named_modules())}
    replaced.sort(key=lambda r: order.get(r.path, len(order)))
    report = ConversionReport(tuple(replaced), tuple(skipped), sum(r.added_parameters for r in replaced))
    logger.info("%s", report)
    if return_report:
        return model, report
    return model


# ---------------------------------------------------------------------------------------------
# Measuring how close a converted network starts to the original (python -m liftpool.convert)
# ---------------------------------------------------------------------------------------------


def random_images(n: int, size: int, *, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Tensor:
    """``n`` random ``3 x size x size`` images with a natural-image-like spectrum.

    The sum of Gaussian noise drawn at resolutions ``size/32, size/8, size/4, size`` and
    bilinearly up-sampled (weights 1, 1/2, 1/4, 1/8), standardised per image and channel like
    ImageNet-normalised input.

    Examples:
        >>> x = random_images(2, 32, generator=torch.Generator().manual_seed(0))
        >>> x.shape, round(float(x.std()), 2)
        (torch.Size([2, 3, 32, 32]), 1.0)
    """
    out = torch.zeros(n, 3, size, size, device=device)
    for div, wt in ((32, 1.0), (8, 0.5), (4, 0.25), (1, 0.125)):
        s = max(1, size // div)
        noise = torch.randn(n, 3, s, s, generator=generator).to(device)
        out += wt * F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
    out -= out.mean(dim=(2, 3), keepdim=True)
    return out / out.std(dim=(2, 3), keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from ``batches`` (no labels, no gradients).

    Resets the statistics, runs the batches in training mode with a cumulative average
    (``momentum=None``), then restores each module's momentum and the model's mode.  A cheap
    way to re-centre a converted pretrained network on its own data before fine-tuning.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    for x in batches:
        model(x)
        n += 1
    if n == 0:
        raise ValueError("batches is empty: need at least one batch to recalibrate BatchNorm")
    for m, mom in saved:
        m.momentum = mom
    model.train(was_training)
    return model


class InitMeasurement(NamedTuple):
    """One row of :func:`measure_init`: network, setting, closeness of layers and logits."""

    model: str
    setting: str
    replaced: int
    layer_rel_l2: float
    rel_l2: float
    top1_agreement: float


@torch.no_grad()
def measure_init(
    name: str,
    model: nn.Module,
    calib: Sequence[Tensor],
    test: Tensor,
    settings: Mapping[str, Mapping[str, Any]],
) -> list[InitMeasurement]:
    """For each ``settings`` entry (``convert`` kwargs, plus ``recalibrate: True``), how close the converted net starts.

    ``model`` is put in eval mode after its BatchNorm statistics are estimated on ``calib``
    (standing in for a pretrained network whose statistics match its data).  ``layer_rel_l2``
    is the mean over replaced layers of ``||new(x) - old(x)|| / ||old(x)||`` on the inputs the
    original layer sees for ``test``; ``rel_l2`` / ``top1_agreement`` compare the logits.
    """
    recalibrate_batchnorm(model, calib).eval()
    rows = []
    for setting, kw in settings.items():
        kw = dict(kw)
        recal = bool(kw.pop("recalibrate", False))
        conv, report = convert(model, return_report=True, **kw)
        if recal:
            recalibrate_batchnorm(conv, calib)
        conv.eval()
        orig_mods = dict(model.named_modules())
        new_mods = dict(conv.named_modules())
        captured: dict[str, tuple[Tensor, Tensor]] = {}
        hooks = [
            orig_mods[r.path].register_forward_hook(
                lambda m, i, o, p=r.path: captured.__setitem__(p, (i[0], o)))
            for r in report.replaced
        ]
        try:
            model(test)
        finally:
            for h in hooks:
                h.remove()
        layer = [float((new_mods[p](i) - o).norm() / o.norm().clamp_min(1e-30)) for p, (i, o) in captured.items()]
        d = compare_outputs(model, conv, test)
        rows.append(InitMeasurement(name, setting, len(report.replaced),
                                    sum(layer) / len(layer) if layer else float("nan"), d.rel_l2, d.top1_agreement))
    return rows


_MEASURE_SETTINGS: dict[str, dict[str, Any]] = {
    "lift, init=paper": {"init": "paper"},
    "lift, init=match": {"init": "match"},
    "lift, init=match + BN recal.": {"init": "match", "recalibrate": True},
    "avg (reference)": {"pool": "avg"},
    "blur (reference)": {"pool": "blur"},
}


def _load_imagefolder(root: str, per_class: int, offset: int = 0) -> tuple[Tensor, Tensor]:
    """``per_class`` images of each class folder of ``root`` as uint8 ``(N, 3, H, W)`` and labels."""
    import os

    import numpy as np
    from PIL import Image

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise ValueError(f"no class folders under {root!r}")
    xs, ys = [], []
    for label, c in enumerate(classes):
        files = sorted(os.listdir(os.path.join(root, c)))[offset:offset + per_class]
        for f in files:
            with Image.open(os.path.join(root, c, f)) as im:
                xs.append(np.asarray(im.convert("RGB")))
            ys.append(label)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(ys)


class FinetuneMeasurement(NamedTuple):
    """One row of :func:`cifar_study`: a setting, its accuracy before/after a short fine-tune."""

    setting: str
    replaced: int
    rel_l2: float
    top1_agreement: float
    acc_start: float
    acc_finetuned: float


class _CifarBench:
    """CIFAR-10 subset in memory, a fixed-seed SGD loop (flip augmentation, one-cycle lr) and test accuracy."""

    def __init__(self, root: str, per_class: int, test_per_class: int, batch: int, seed: int) -> None:
        import os

        self.xtr, self.ytr = _load_imagefolder(os.path.join(root, "train"), per_class)
        self.xte, self.yte = _load_imagefolder(os.path.join(root, "test"), test_per_class)
        self.mean = self.xtr.float().mean(dim=(0, 2, 3), keepdim=True)
        self.std = self.xtr.float().std(dim=(0, 2, 3), keepdim=True)
        self.batch, self.seed = batch, seed

    def norm(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std

    def _batches(self, n_epochs: int, g: torch.Generator) -> Iterable[tuple[Tensor, Tensor]]:
        for _ in range(n_epochs):
            perm = torch.randperm(len(self.xtr), generator=g)
            for i in range(0, len(perm) - self.batch + 1, self.batch):
                idx = perm[i:i + self.batch]
                x = self.norm(self.xtr[idx])
                flip = torch.rand(len(idx), generator=g) < 0.5
                x[flip] = x[flip].flip(-1)
                yield x, self.ytr[idx]

    def fit(self, net: nn.Module, n_epochs: int, lr: float, desc: str, seed: int | None = None) -> None:
        from tqdm import tqdm

        from .losses import lifting_loss

        steps = n_epochs * (len(self.xtr) // self.batch)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
        net.train()
        g = torch.Generator().manual_seed((self.seed if seed is None else seed) + 1)
        for x, y in tqdm(self._batches(n_epochs, g), total=steps, desc=desc, leave=False):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y) + lifting_loss(net)
            loss.backward()
            opt.step()
            sched.step()

    @torch.no_grad()
    def accuracy(self, net: nn.Module) -> float:
        net.eval()
        xte, yte = self.xte, self.yte
        correct = sum(int((net(self.norm(xte[i:i + 500])).argmax(1) == yte[i:i + 500]).sum())
                      for i in range(0, len(xte), 500))
        return correct / len(xte)


class PlacementMeasurement(NamedTuple):
    """One row of :func:`placement_study`: a ResNet18 variant trained from scratch, per-seed test accuracies."""

    setting: str
    lift_layers: int
    accuracies: tuple[float, ...]


def placement_study(
    root: str, *, width: float = 0.5, per_class: int = 1000, test_per_class: int = 200, epochs: int = 6,
    batch: int = 128, seeds: Sequence[int] = (0, 1), settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[PlacementMeasurement]:
    """Train ResNet18 variants from scratch on a CIFAR-10 subset: where should the pool of a strided conv go?

    Default settings: max pooling (torchvision), and LiftDownPool2d in the stem and in every
    strided convolution, placed ``after_conv`` (conv -> lift -> BN -> ReLU, what
    :func:`convert` does) or ``after_act`` (conv -> BN -> ReLU -> lift, antialiased-cnns/timm).
    """
    from .models import create_model

    bench = _CifarBench(root, per_class, test_per_class, batch, seeds[0])
    settings = settings if settings is not None else {
        "max (torchvision)": {"pool": "max"},
        "lift, strided convs after_conv": {"pool": "lift", "strided_conv": True, "pool_position": "after_conv"},
        "lift, strided convs after_act": {"pool": "lift", "strided_conv": True, "pool_position": "after_act"},
    }
    rows = []
    for name, kw in settings.items():
        accs = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = create_model("resnet18", num_classes=10, width=width, **kw)
            bench.fit(net, epochs, 0.1, f"{name} (seed {seed})", seed=seed)
            accs.append(bench.accuracy(net))
        rows.append(PlacementMeasurement(name, sum(isinstance(m, LiftDownPool2d) for m in net.modules()), tuple(accs)))
    return rows


def cifar_study(
    root: str, *, width: float = 0.5, per_class: int = 1000, test_per_class: int = 200, epochs: int = 6,
    finetune_epochs: int = 1, batch: int = 128, seed: int = 0, settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[float, list[FinetuneMeasurement]]:
    """Train a small torchvision-layout ResNet18 (max pooling) on CIFAR-10, convert it, fine-tune briefly.

    ``root`` is a CIFAR-10 ImageFolder (``train/<class>/*.jpg``, ``test/<class>/*.jpg``).
    Returns the trained network's test accuracy and, per conversion setting, the logits'
    closeness on the test images, the test accuracy right after conversion and after
    ``finetune_epochs`` of SGD (lr 0.01, the lifting loss included).
    """
    from tqdm import tqdm

    from .models.resnet import BasicBlock, ScaledResNet

    torch.manual_seed(seed)
    bench = _CifarBench(root, per_class, test_per_class, batch, seed)
    fit, accuracy, norm, xtr, xte = bench.fit, bench.accuracy, bench.norm, bench.xtr, bench.xte

    base = ScaledResNet(BasicBlock, [2, 2, 2, 2], num_classes=10, width=width)
    fit(base, epochs, 0.1, "pretraining resnet18 (max)")
    base.eval()
    acc0 = accuracy(base)
    calib = [norm(xtr[i:i + batch]) for i in range(0, 4 * batch, batch)]
    test_x = norm(xte)
    settings = settings if settings is not None else {
        "max (unchanged)": {"pool": "max", "targets": ()},
        **_MEASURE_SETTINGS,
    }
    rows = []
    for sc in (False, True):
        for name, kw in tqdm(list(settings.items()), desc=f"settings (strided_conv={sc})"):
            kw = dict(kw)
            recal = bool(kw.pop("recalibrate", False))
            if kw.get("pool") == "max" and not kw.get("targets", True):
                if sc:
                    continue
                net, n = copy.deepcopy(base), 0
            else:
                net, report = convert(base, strided_conv=sc, return_report=True, **kw)
                n = len(report.replaced)
                if recal:
                    recalibrate_batchnorm(net, calib)
            net.eval()
            d = compare_outputs(base, net, test_x)
            start = accuracy(net)
            torch.manual_seed(seed + 2)
            fit(net, finetune_epochs, 0.01, f"fine-tuning {name}")
            label = f"{name}{', strided_conv' if sc else ''}"
            rows.append(FinetuneMeasurement(label, n, d.rel_l2, d.top1_agreement, start, accuracy(net)))
    return acc0, rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m liftpool.convert``: measure how close converted torchvision networks start."""
    import argparse
    import platform

    import torchvision
    from tqdm import tqdm

    parser = argparse.ArgumentParser(prog="python -m liftpool.convert", description=main.__doc__)
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,vgg13_bn")
    parser.add_argument("--size", type=int, default=128, help="image size (default 128)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the Markdown table here (atomically)")
    parser.add_argument("--png", default=None, help="write a bar plot here")
    parser.add_argument("--cifar", default=None, metavar="DIR",
                        help="instead: train a small ResNet18 on this CIFAR-10 ImageFolder, convert, fine-tune")
    parser.add_argument("--width", type=float, default=0.5, help="--cifar: ResNet18 width")
    parser.add_argument("--per-class", type=int, default=1000, help="--cifar: training images per class")
    parser.add_argument("--epochs", type=int, default=6, help="--cifar: pre-training epochs")
    parser.add_argument("--placement", action="store_true",
                        help="--cifar: instead train ResNet18 variants from scratch (pool placement study)")
    parser.add_argument("--seeds", default="0,1", help="--placement: comma-separated seeds")
    args = parser.parse_args(argv)
    if args.cifar and args.placement:
        return _placement_main(args)
    if args.cifar:
        return _cifar_main(args)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    calib = [random_images(args.batch, args.size, generator=g) for _ in range(args.calib_batches)]
    test = random_images(args.batch * 2, args.size, generator=g)
    rows: list[InitMeasurement] = []
    names = [n for n in args.models.split(",") if n]
    jobs = [(n, sc) for n in names for sc in (False, True) if not (n.startswith("vgg") and sc)]
    for name, sc in tqdm(jobs, desc="networks"):
        model = getattr(torchvision.models, name)(weights=None)
        settings = {f"{k}{', strided_conv' if sc else ''}": {**v, "strided_conv": sc} for k, v in _MEASURE_SETTINGS.items()}
        rows += measure_init(name, model, calib, test, settings)
    head = ("| network | setting | layers replaced | layer rel. diff | logits rel. diff | top-1 agreement |\n"
            "|---|---|---|---|---|---|\n")
    table = head + "".join(
        f"| {r.model} | {r.setting} | {r.replaced} | {r.layer_rel_l2:.3g} | {r.rel_l2:.3g} | {r.top1_agreement:.2f} |\n"
        for r in rows)
    info = (f"torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s); "
            f"{args.batch * 2} test images {args.size}x{args.size}, BN statistics from "
            f"{args.calib_batches}x{args.batch} images, seed {args.seed}")
    print(table + "\n" + info)
    if args.out:
        atomic_write_text(args.out, table + "\n" + info + "\n")
    if args.png:
        _plot(rows, args.png, info)
    return 0


def _placement_main(args: Any) -> int:
    import platform

    seeds = [int(v) for v in args.seeds.split(",") if v]
    rows = placement_study(args.cifar, width=args.width, per_class=args.per_class, epochs=args.epochs, seeds=seeds)
    table = ("| ResNet18 variant (from scratch) | LiftDownPool2d layers | test acc. per seed | mean |\n"
             "|---|---|---|---|\n")
    table += "".join(f"| {r.setting} | {r.lift_layers} | {', '.join(f'{a:.3f}' for a in r.accuracies)} | "
                     f"{sum(r.accuracies) / len(r.accuracies):.3f} |\n" for r in rows)
    info = (f"ResNet18 (torchvision layout, width {args.width}) trained {args.epochs} epochs on {args.per_class * 10} "
            f"CIFAR-10 images, tested on the first 200 test images of each class; seeds {seeds}; "
            f"torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s)")
    print(table + "\n" + info)
    if args.out:
        atomic_write_text(args.out, table + "\n" + info + "\n")
    return 0


def _cifar_main(args: Any) -> int:
    import platform

    acc0, rows = cifar_study(args.cifar, width=args.width, per_class=args.per_class, epochs=args.epochs,
                             seed=args.seed)
    table = ("| setting | layers replaced | logits rel. diff | top-1 agreement | test acc. at start | "
             "after 1 fine-tune epoch |\n|---|---|---|---|---|---|\n")
    table += "".join(f"| {r.setting} | {r.replaced} | {r.rel_l2:.3g} | {r.top1_agreement:.3f} | {r.acc_start:.3f} | "
                     f"{r.acc_finetuned:.3f} |\n" for r in rows)
    info = (f"ResNet18 (torchvision layout, width {args.width}) trained {args.epochs} epochs on "
            f"{args.per_class * 10} CIFAR-10 images (test acc. {acc0:.3f} on the first 200 test images of each class); "
            f"torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s), seed {args.seed}")
    print(table + "\n" + info)
    if args.out:
        atomic_write_text(args.out, table + "\n" + info + "\n")
    return 0


def _plot(rows: Sequence[InitMeasurement], path: str, info: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r.model, "strided_conv" in r.setting) for r in rows if r.replaced},
                    key=lambda t: (t[0], t[1]))
    settings = list(_MEASURE_SETTINGS)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(settings)
    for j, s in enumerate(settings):
        vals_rel, vals_top = [], []
        for m, sc in groups:
            r = next((r for r in rows if r.model == m and r.setting.startswith(s) and ("strided_conv" in r.setting) == sc), None)
            vals_rel.append(r.rel_l2 if r else float("nan"))
            vals_top.append(r.top1_agreement if r else float("nan"))
        xs = [i + j * width for i in range(len(groups))]
        axes[0].bar(xs, vals_rel, width, label=s)
        axes[1].bar(xs, vals_top, width, label=s)
    labels = [f"{m}{' +conv' if sc else ''}" for m, sc in groups]
    for ax, title in zip(axes, ("logits: relative L2 difference (lower = closer)", "top-1 agreement with original")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], labels, rotation=30, ha="right")
        ax.set_title(title)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Converted networks vs. the original at the start (" + info.split(";")[1].strip() + ")", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
