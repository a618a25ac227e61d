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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Union, overload

import torch
from torch import Tensor, nn

from .pooling import available_pools, make_pool
from .pooling.placement import (
    Init,
    PooledConv2d,
    SizeMatchedPool2d,
    TimmLiftDownPool2d,
    init_kwargs,
    pair,
    pool_out_size,
)

__all__ = [
    "ConversionReport",
    "Init",
    "PooledConv2d",
    "Replacement",
    "OutputDifference",
    "SizeMatchedPool2d",
    "Target",
    "TimmLiftDownPool2d",
    "compare_outputs",
    "convert",
    "init_kwargs",
]

logger = logging.getLogger(__name__)

Target = Literal["maxpool", "avgpool"]
"""Kinds of pooling layer :func:`convert` can replace."""


_TARGET_TYPES: dict[str, type[nn.Module]] = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d}


class Replacement(NamedTuple):
    """One replaced module: its dotted path, the old module's repr, the new layer and its added parameters."""

    path: str
    old: str
    new: str
    added_parameters: int


class ConversionReport(NamedTuple):
    """What :func:`convert` did.

    ``replaced``: one :class:`Replacement` per converted module; ``skipped``: ``(path, reason)``
    for each down-sampling layer left alone (excluded, stride not 2, the stem, a strided
    convolution with ``strided_conv=False``, a pool kind not in ``targets``, a pooling layer
    convert does not handle such as ``MaxPool1d``/``MaxPool3d``, ...);
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


#: down-sampling layers convert never replaces (it only handles 2D max/avg pooling and Conv2d).
_UNHANDLED_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d,
)


def _strides_by_more_than_one(m: nn.Module) -> bool:
    stride = getattr(m, "stride", None)
    if stride is None:  # pooling layers default to stride = kernel_size
        stride = getattr(m, "kernel_size", 1)
    values = stride if isinstance(stride, (tuple, list)) else (stride,)
    return any(v != 1 for v in values)


def _not_a_candidate(m: nn.Module, targets: tuple[str, ...], strided_conv: bool) -> str | None:
    """Why a down-sampling module that is not a candidate of this conversion is left alone (None: not one)."""
    if isinstance(m, nn.Conv2d) and pair(m.stride) != (1, 1):
        return "strided convolution (strided_conv=False)" if not strided_conv else None
    for kind, cls in _TARGET_TYPES.items():
        if type(m) is cls and kind not in targets and _strides_by_more_than_one(m):
            return f"{kind} is not in targets={targets}"
    if isinstance(m, (nn.FractionalMaxPool2d, nn.FractionalMaxPool3d)):
        return f"{type(m).__name__} is not handled (random output size)"
    if isinstance(m, _UNHANDLED_POOLS) and _strides_by_more_than_one(m):
        return f"{type(m).__name__} is not handled (only 2D max/avg pooling and Conv2d are converted)"
    return None


def _warn_nothing_replaced(model_name: str, strided_conv: bool, skipped: Sequence[tuple[str, str]]) -> None:
    hint = (
        " If it down-samples with strided convolutions, pass strided_conv=True to pool them."
        if not strided_conv
        else ""
    )
    why = f" Skipped: {len(skipped)} layer(s), see ConversionReport.skipped (return_report=True)." if skipped else ""
    warnings.warn(f"liftpool.convert replaced nothing in {model_name}.{hint}{why}", UserWarning, stacklevel=3)


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
                    c = modules[first].in_channels if first is not None else 3
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
    target_names, exclude_patterns, kw = _check_options(
        pool, targets, strided_conv, bands, kernel_size, init, exclude, example_input, pool_kwargs
    )
    if not inplace:
        model = copy.deepcopy(model)
    pools, convs, skipped = _find_candidates(model, target_names, strided_conv, exclude_patterns, keep_stem)
    channels = _probe_channels(model, pools, example_input) if pools else {}
    replaced = _replace_pools(model, pools, channels, pool, kw, skipped) + _replace_convs(model, convs, pool, kw)
    order = {path: i for i, (path, _) in enumerate(model.named_modules())}
    replaced.sort(key=lambda r: order.get(r.path, len(order)))
    report = ConversionReport(tuple(replaced), tuple(skipped), sum(r.added_parameters for r in replaced))
    logger.info("%s", report)
    if not replaced:
        _warn_nothing_replaced(type(model).__name__, strided_conv, skipped)
    if return_report:
        return model, report
    return model


def _check_options(
    pool: str,
    targets: Iterable[Target],
    strided_conv: bool,
    bands: BandSelection,
    kernel_size: int | None,
    init: Init,
    exclude: Iterable[str],
    example_input: Tensor | tuple[int, ...] | None,
    pool_kwargs: Mapping[str, Any] | None,
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]:
    """Validate :func:`convert`'s options; the target kinds, the exclude patterns and the pool's keyword arguments."""
    if not isinstance(pool, str) or pool not in available_pools():
        raise ValueError(f"pool must be one of {available_pools()}, got {pool!r}")
    target_names = (targets,) if isinstance(targets, str) else tuple(targets)
    for t in target_names:
        if t not in _TARGET_TYPES:
            raise ValueError(f"targets must be a subset of {tuple(_TARGET_TYPES)}, got {t!r}")
    if not target_names and not strided_conv:
        raise ValueError("nothing to convert: targets is empty and strided_conv=False")
    exclude_patterns = (exclude,) if isinstance(exclude, str) else tuple(exclude)
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
    return target_names, exclude_patterns, kw


def _find_candidates(
    model: nn.Module, targets: tuple[str, ...], strided_conv: bool, exclude: tuple[str, ...], keep_stem: bool
) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Paths of the pools and of the strided convolutions to replace, and ``(path, reason)`` of those left alone."""
    target_types = tuple(_TARGET_TYPES[t] for t in targets)
    stem = _first_conv(model) if (strided_conv and keep_stem) else None
    pools: list[str] = []
    convs: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path, m in model.named_modules():
        if not path:
            continue
        is_pool = bool(target_types) and isinstance(m, target_types)
        is_conv = strided_conv and isinstance(m, nn.Conv2d) and pair(m.stride) != (1, 1)
        if not (is_pool or is_conv):
            why = _not_a_candidate(m, targets, strided_conv)
            if why is not None:
                skipped.append((path, why))
            continue
        if any(fnmatch.fnmatchcase(path, pat) for pat in exclude):
            skipped.append((path, "excluded"))
            continue
        if is_pool:
            stride = pair(m.stride if m.stride is not None else m.kernel_size)
            if stride != (2, 2):
                skipped.append((path, f"stride {stride} is not 2"))
            elif getattr(m, "return_indices", False):
                skipped.append((path, "return_indices=True (its indices feed an unpooling layer)"))
            else:
                pools.append(path)
        elif is_conv:
            if type(m) is not nn.Conv2d:
                skipped.append((path, f"{type(m).__name__} is not a plain nn.Conv2d (its forward may differ)"))
            elif pair(m.stride) != (2, 2):
                skipped.append((path, f"stride {pair(m.stride)} is not 2"))
            elif path == stem:
                skipped.append((path, "the stem convolution (keep_stem=True)"))
            elif isinstance(m.padding, str):
                skipped.append((path, f"string padding {m.padding!r}"))
            else:
                convs.append(path)
    return pools, convs, skipped


def _factory_kw(model: nn.Module, m: nn.Module) -> dict[str, Any]:
    """``device``/``dtype`` of ``m``'s first parameter (else the model's), for the new pooling layer."""
    ref = next(m.parameters(), None)
    if ref is None:
        ref = next(model.parameters(), None)
    return {"device": ref.device, "dtype": ref.dtype} if ref is not None and ref.is_floating_point() else {}


def _put(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, new)


def _replace_pools(
    model: nn.Module,
    pools: Sequence[str],
    channels: Mapping[str, int],
    pool: str,
    kw: Mapping[str, Any],
    skipped: list[tuple[str, str]],
) -> list[Replacement]:
    """Swap each pooling layer in ``pools`` for ``pool`` (size-matched where its size rule differs)."""
    replaced: list[Replacement] = []
    for path in pools:
        old = model.get_submodule(path)
        if path not in channels:
            skipped.append((path, "not reached by the probe forward pass (channel count unknown)"))
            continue
        new: nn.Module = make_pool(pool, channels[path], **{**_factory_kw(model, old), **kw})
        k, p = pair(old.kernel_size), pair(old.padding)
        d = pair(getattr(old, "dilation", 1))
        ceil_mode = bool(old.ceil_mode)
        if any(
            pool_out_size(n, k[i], 2, p[i], d[i], ceil_mode) != (n + 1) // 2
            for i in range(2) for n in range(max(1, k[i] - 2 * p[i]), 2 * (k[i] + 2 * p[i]) + 8)
        ):
            new = SizeMatchedPool2d(new, kernel_size=k, padding=p, dilation=d, ceil_mode=ceil_mode)
        new.train(old.training)
        _put(model, path, new)
        replaced.append(Replacement(path, repr(old), _describe(new), _n_params(new)))
    return replaced


def _replace_convs(model: nn.Module, convs: Sequence[str], pool: str, kw: Mapping[str, Any]) -> list[Replacement]:
    """Turn each stride-2 convolution in ``convs`` into a :class:`PooledConv2d` with ``pool``."""
    replaced: list[Replacement] = []
    for path in convs:
        old = model.get_submodule(path)
        assert isinstance(old, nn.Conv2d)
        first = pair(old.kernel_size) == (1, 1) and pair(old.padding) == (0, 0)
        ch = old.in_channels if first else old.out_channels
        p_layer = make_pool(pool, ch, **{**_factory_kw(model, old), **kw})
        p_layer.train(old.training)
        new = PooledConv2d.from_conv(old, p_layer, pool_first=first)
        _put(model, path, new)
        where = "before" if first else "after"
        replaced.append(
            Replacement(path, repr(old), f"Conv2d(stride=1) + {_describe(p_layer)} {where}", _n_params(p_layer))
        )
    return replaced
