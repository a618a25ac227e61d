"""``liftpool bench``: speed and memory of LiftDownPool against the poolings it replaces.

Everything is measured in one process, warmed up, as the median of interleaved
repeats (every method runs once per round, so a busy machine slows all of them
alike), and printed as a ratio to MaxPool2d measured in the same run.

Sections (``--sections``):

* ``layer``: forward (eval, no grad) and forward+backward (train mode, a dense random
  output gradient, plus the constraint loss for LiftPool) of MaxPool2d, AvgPool2d,
  Skip (stride-2 conv), BlurPool (5 taps), LiftDownPool2d (the fast path) and the
  paper-literal :class:`liftpool.testing.reference.ReferenceLiftDownPool2d`, for every shape,
  dtype, memory format and eager / ``torch.compile``; also the bytes saved for
  backward and the peak memory of one forward+backward.
* ``up``: LiftUpPool2d (default and eager kernel) against MaxUnpool2d (SegNet's
  max-unpooling) and against the paired LiftDownPool2d.
* ``nd``: LiftDownPool1d/3d and LiftUpPool1d/3d (default and eager kernel) against
  MaxPool1d/3d and MaxUnpool1d/3d at (32, 64, 4096) and (4, 32, 16, 56, 56).
* ``net``: one SGD training step (forward, loss, backward, step) and its peak memory
  for VGG13-CIFAR (32x32), ResNet18 (224x224) and SegNet (CamVid 240x180, width 1/8,
  batch 4; max-unpooling vs LiftUpPool) with each pooling.
* ``scale``: LiftDownPool forward+backward time against H*W, C and N with a
  least-squares line through each.

Outputs (``--out``): ``bench.md`` (Markdown tables with the machine, torch version,
thread count and the command in the header), ``bench.json``, ``bench_layer.png`` and
``bench_scaling.png``; each written atomically.

Examples:
    ``liftpool bench --quick`` (a few minutes on 2 cores), ``liftpool bench`` (full).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..io import atomic_save_figure, atomic_write_bytes

__all__ = ["add_arguments", "run", "time_interleaved", "saved_bytes", "peak_bytes", "linear_fit"]

#: ``lift``: LiftDownPool2d as users get it (backend "auto": the native C++ kernel where it
#: builds); ``lift_eager``: the eager ATen kernel; ``lift_keep``: eager without recomputation;
#: ``lift_ref``: the paper-literal oracle (liftpool.testing).
SECTIONS = ("layer", "up", "nd", "net", "scale")
LAYER_METHODS = ("max", "avg", "skip", "blur5", "lift", "lift_eager", "lift_keep", "lift_ref")
NET_POOLS = ("max", "avg", "skip", "blur", "lift", "lift_eager", "lift_keep", "lift_ref")
#: the 56x56 target shape (docs/performance.md), then the small maps of a CIFAR network (N=64), then large ones
SMALL_SHAPES = ((64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8), (64, 128, 4, 4), (64, 128, 2, 2))
FULL_SHAPES = ((32, 64, 56, 56), *SMALL_SHAPES, (128, 128, 32, 32), (8, 256, 14, 14), (1, 3, 512, 512))
QUICK_SHAPES = ((32, 64, 56, 56), *SMALL_SHAPES)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
#: network -> (batch, input size); segnet: CamVid's 240x180 at the reproduction's width (NET_WIDTH)
NETS: dict[str, tuple[int, int | tuple[int, int]]] = {
    "vgg13_cifar": (128, 32),
    "resnet18": (16, 224),
    "segnet": (4, (180, 240)),
}
#: default channel multiplier per network (the reproduction's SegNet width)
NET_WIDTH: dict[str, float] = {"segnet": 0.125}
#: pools whose SegNet variant exists (encoder-decoder pairs)
SEG_POOLS = ("max", "lift", "lift_eager")
#: 1D and 3D layer shapes of ``liftpool bench --sections nd`` (the targets in docs/performance.md)
ND_SHAPES: tuple[tuple[int, ...], ...] = ((32, 64, 4096), (4, 32, 16, 56, 56))


# ---------------------------------------------------------------- measuring
def _clock(kind: str) -> Callable[[], float]:
    return time.process_time if kind == "cpu" else time.perf_counter


def _no_sync() -> None:
    return None


#: called before reading the clock: waits for queued device work (``--device cuda``); no-op on CPU
_sync: Callable[[], None] = _no_sync


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, repeats: int = 5, warmup: int = 2, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds of each callable; every round calls each once, in turn (after ``warmup`` rounds).

    Examples:
        >>> t = time_interleaved({"a": lambda: sum(range(100))}, repeats=3, warmup=1)
        >>> sorted(t), t["a"] > 0
        (['a'], True)
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    now = _clock(clock)
    for _ in range(warmup):
        for f in fns.values():
            f()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            _sync()
            t0 = now()
            f()
            _sync()
            samples[k].append(now() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def saved_bytes(fn: Callable[[], Tensor], exclude: Sequence[Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs.

    Storages of the tensors in ``exclude`` (inputs, parameters) are not counted.

    Examples:
        >>> x = torch.randn(4, 4, requires_grad=True)
        >>> saved_bytes(lambda: (x * x).sum(), exclude=[x])
        0
        >>> saved_bytes(lambda: torch.exp(x).sum(), exclude=[x])  # exp saves its output
        64
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in skip and ptr != 0:
            seen[ptr] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


def peak_bytes(fn: Callable[[], Any]) -> int | None:
    """Peak bytes of live CPU tensors while ``fn()`` runs (torch's memory profiler), or None if unavailable."""
    try:
        from torch.profiler import profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with profile(profile_memory=True, record_shapes=True, with_stack=True) as prof:
                fn()
            timeline = MemoryProfileTimeline(prof._memory_profile())
            _, sizes = timeline._coalesce_timeline("cpu")  # type: ignore[no-untyped-call]  # private, untyped
        return int(max(sum(row) for row in sizes)) if sizes else None
    except Exception:  # private API: report "n/a" rather than fail the benchmark
        return None


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``y = a + b x``; returns ``(a, b, r2)``.

    Examples:
        >>> a, b, r2 = linear_fit([1, 2, 3], [3, 5, 7])
        >>> round(a, 6), round(b, 6), round(r2, 6)
        (1.0, 2.0, 1.0)
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("linear_fit needs two equally long sequences of at least 2 points")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    b = sxy / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot else 1.0
    return a, b, r2


# ---------------------------------------------------------------- building
def make_layer(method: str, channels: int, kernel_size: int = 5) -> nn.Module:
    """The down-pooling ``method`` (one of :data:`LAYER_METHODS`) for ``channels`` channels."""
    from ..layers import LiftDownPool2d
    from ..pooling import make_pool
    from ..testing.reference import reference_of

    if method == "lift":
        return LiftDownPool2d(channels, kernel_size)
    if method == "lift_eager":
        return LiftDownPool2d(channels, kernel_size, backend="eager")
    if method == "lift_keep":
        return _KeepIntermediates(LiftDownPool2d(channels, kernel_size, backend="eager"))
    if method == "lift_ref":
        return reference_of(LiftDownPool2d(channels, kernel_size))
    if method == "blur5":
        return make_pool("blur", channels, kernel_size=5)
    if method in ("max", "avg", "skip", "blur"):
        return make_pool(method, channels)
    raise ValueError(f"unknown method {method!r}; expected one of {LAYER_METHODS}")


class _KeepIntermediates(nn.Module):
    """Runs a LiftPool layer / network with the fast path's recomputation off (``lift_keep``)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any) -> Any:
        from ..kernels import eager as _fast

        with _fast.recompute_mode("never"):
            return self.inner(*args)

    def lifting_loss(self) -> Tensor | None:
        fn = getattr(self.inner, "lifting_loss", None)
        return fn() if callable(fn) else None


def _use_backend(model: nn.Module, backend: str) -> nn.Module:
    """Set ``backend`` on every LiftDownPool of ``model``."""
    from ..layers import LiftDownPoolNd

    for m in model.modules():
        if isinstance(m, LiftDownPoolNd):
            m.backend = backend  # type: ignore[assignment]  # one of kernels.BACKENDS
    return model


def _use_reference_lift(model: nn.Module) -> nn.Module:
    """Swap every LiftDownPool2d in ``model`` for its paper-literal twin (same weights)."""
    from ..layers import LiftDownPool2d
    from ..testing.reference import reference_of

    for name, child in list(model.named_children()):
        if isinstance(child, LiftDownPool2d):
            setattr(model, name, reference_of(child, share=True))
        else:
            _use_reference_lift(child)
    return model


def _loss_of(m: nn.Module) -> Tensor | None:
    fn = getattr(m, "lifting_loss", None)
    return fn() if callable(fn) else None


def _fwd_bwd(m: nn.Module, call: Callable[[], Tensor], grad: Tensor, lift_loss: nn.Module | None) -> Callable[[], None]:
    def step() -> None:
        y = call()
        outs, grads = [y], [grad]
        loss = _loss_of(lift_loss) if lift_loss is not None else None
        if loss is not None:
            outs.append(loss)
            grads.append(torch.ones((), dtype=loss.dtype))
        torch.autograd.backward(outs, grads)

    return step


# ---------------------------------------------------------------- results
@dataclass
class Row:
    section: str
    config: dict[str, Any]
    method: str
    fwd_ms: float | None = None
    fwdbwd_ms: float | None = None
    saved_mb: float | None = None
    peak_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 2**20


def _fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _ratio(v: float | None, ref: float | None) -> str:
    if v is None or ref is None or ref == 0:
        return "n/a"
    return f"{v / ref:.2f}x"


# ---------------------------------------------------------------- sections
def _progress(total: int, desc: str, quiet: bool) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, leave=False)
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()


def bench_layers(args: argparse.Namespace, log: Callable[[str], None], rows: list[Row] | None = None) -> list[Row]:
    rows = [] if rows is None else rows
    configs = [
        (shape, dt, fmt, comp)
        for comp in args.modes
        for dt in args.dtypes
        for fmt in args.formats
        for shape in args.shapes
        if comp == "eager" or (dt, fmt) in args.compile_configs or args.compile_all
    ]
    # most informative first (float32 eager, then float32 compiled), so a cut-short run keeps them
    configs.sort(key=lambda c: (c[1] != "float32", c[3] != "eager"))
    bar = _progress(len(configs), "layer", args.quiet)
    for shape, dt_name, fmt, comp in configs:
        try:
            _bench_layer_config(args, log, rows, shape, dt_name, fmt, comp)
        except Exception as err:  # one failing configuration must not lose the others
            log(f"layer {tuple(shape)} {dt_name} {fmt} {comp}: FAILED ({type(err).__name__}: {str(err)[:200]})")
        checkpoint_fn = getattr(args, "checkpoint_fn", None)
        if checkpoint_fn is not None:
            checkpoint_fn(rows)
        if hasattr(bar, "update"):
            bar.update(1)
    if hasattr(bar, "close"):
        bar.close()
    return rows


def _bench_layer_config(
    args: argparse.Namespace,
    log: Callable[[str], None],
    rows: list[Row],
    shape: Sequence[int],
    dt_name: str,
    fmt: str,
    comp: str,
) -> None:
    dtype = DTYPES[dt_name]
    n, c, h, w = shape
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, dtype=dtype)
    if fmt == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    mods = {m: make_layer(m, c).to(dtype) for m in args.methods}
    calls: dict[str, Callable[[], Tensor]] = {}
    for name, mod in mods.items():
        # dynamic=False: one static graph per shape (torch 2.14's inductor fails on the
        # automatic dynamic-shape recompile of the lifting layers)
        f = torch.compile(mod, dynamic=False) if comp == "compile" else mod
        calls[name] = functools.partial(f, x)
    fwd: dict[str, Callable[[], Any]] = {}
    fb: dict[str, Callable[[], Any]] = {}
    for name, mod in mods.items():

        def infer(mod: nn.Module = mod, call: Callable[[], Tensor] = calls[name]) -> None:
            mod.eval()
            with torch.no_grad():
                call()

        fwd[name] = infer
        mod.train()
        y = calls[name]()
        g = torch.randn_like(y)
        train_step = _fwd_bwd(mod, calls[name], g, mod)

        def train(mod: nn.Module = mod, step: Callable[[], None] = train_step) -> None:
            mod.train()
            step()
            x.grad = None
            mod.zero_grad(set_to_none=True)

        fb[name] = train
    t_fwd = time_interleaved(fwd, repeats=args.repeats, warmup=args.warmup, clock=args.clock)
    t_fb = time_interleaved(fb, repeats=args.repeats, warmup=args.warmup, clock=args.clock)
    cfg = {"shape": list(shape), "dtype": dt_name, "format": fmt, "mode": comp}
    for name, mod in mods.items():
        row = Row("layer", cfg, name, t_fwd[name] * 1e3, t_fb[name] * 1e3)
        if comp == "eager" and not args.no_memory:
            mod.train()
            exclude = [x, *mod.parameters(), *mod.buffers()]
            row.saved_mb = _mb(saved_bytes(functools.partial(mod, x), exclude))
            if args.peak and dt_name == "float32":
                row.peak_mb = _mb(peak_bytes(fb[name]))
        rows.append(row)
    ref = t_fb.get("max")
    log(
        f"layer {tuple(shape)} {dt_name} {fmt} {comp}: "
        + ", ".join(f"{k} {v * 1e3:.1f} ms ({_ratio(v, ref)})" for k, v in t_fb.items())
    )


def bench_up(args: argparse.Namespace, log: Callable[[str], None]) -> list[Row]:
    """LiftUpPool2d (default backend and eager) against MaxUnpool2d, and the paired LiftDownPool2d's cost."""
    from ..pooling import make_updown

    rows: list[Row] = []
    for shape in args.shapes:
        n, c, h, w = shape
        cfg = {"shape": list(shape), "dtype": "float32", "format": "contiguous", "mode": "eager"}
        fwd: dict[str, Callable[[], Any]] = {}
        fb: dict[str, Callable[[], Any]] = {}
        torch.manual_seed(0)
        x = torch.randn(n, c, h, w)
        for name in ("max_unpool", "lift_up", "lift_up_eager"):
            down, up = make_updown("max" if name == "max_unpool" else "lift", c)
            if name == "lift_up_eager":
                _use_backend(down, "eager")
            down.eval()
            with torch.no_grad():
                y, details = down(x)
            y = y.detach().requires_grad_()
            if name != "max_unpool":
                details = type(details)(*(t.detach().requires_grad_() for t in details[:-1]), size=details.size)
            out = up(y, details)
            g = torch.randn_like(out)

            def infer(up: nn.Module = up, y: Tensor = y, details: Any = details) -> None:
                with torch.no_grad():
                    up(y, details)

            def train(up: nn.Module = up, y: Tensor = y, details: Any = details, g: Tensor = g) -> None:
                up(y, details).backward(g)

            fwd[name], fb[name] = infer, train
        # the paired down layer (default backend), for the up / down ratio
        fwd["lift_down"], fb["lift_down"] = _down_calls(make_layer("lift", c), x)
        t_fwd = time_interleaved(fwd, repeats=args.repeats, warmup=args.warmup, clock=args.clock)
        t_fb = time_interleaved(fb, repeats=args.repeats, warmup=args.warmup, clock=args.clock)
        for name in fwd:
            rows.append(Row("up", cfg, name, t_fwd[name] * 1e3, t_fb[name] * 1e3))
        log(f"up {tuple(shape)}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t_fb.items()))
    return rows


def _down_calls(layer: nn.Module, x: Tensor) -> tuple[Callable[[], None], Callable[[], None]]:
    """Forward (no grad) and forward+backward (with its constraint loss) of a down layer."""
    xg = x.clone().requires_grad_()
    g = torch.randn_like(layer(xg))
    return (lambda: _no_grad_call(layer, x)), _fwd_bwd(layer, lambda: layer(xg), g, layer)


def _no_grad_call(m: nn.Module, x: Tensor) -> None:
    with torch.no_grad():
        m(x)


def _lift_nd_calls(
    shape: tuple[int, ...], x: Tensor, g_up: Tensor, backend: str
) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None], Callable[[], None]]:
    """Forward and forward+backward of LiftDownPool{1,3}d and LiftUpPool{1,3}d on ``backend``."""
    from ..layers import LiftDownPool1d, LiftDownPool3d, LiftUpPool1d, LiftUpPool3d

    dims, c = len(shape) - 2, shape[1]
    down_cls, up_cls = {1: (LiftDownPool1d, LiftUpPool1d), 3: (LiftDownPool3d, LiftUpPool3d)}[dims]
    down = down_cls(c, backend=backend)  # type: ignore[arg-type]  # backend is one of kernels.BACKENDS
    down_d = down_cls(c, bands="L" * dims, return_details=True, backend=backend)  # type: ignore[arg-type]
    up = up_cls(down_d)
    xg = x.clone().requires_grad_()
    gl = torch.randn_like(down(x))
    with torch.no_grad():
        low, det = down_d.eval()(x)
    low = low.requires_grad_()
    det = type(det)(*(t.requires_grad_() for t in det[:-1]), size=det.size)

    def down_fwd() -> None:
        _no_grad_call(down, x)

    def up_fwd() -> None:
        with torch.no_grad():
            up(low, det)

    def up_fb() -> None:
        up(low, det).backward(g_up)

    return down_fwd, _fwd_bwd(down, lambda: down(xg), gl, down), up_fwd, up_fb


def _nd_calls(shape: tuple[int, ...]) -> tuple[dict[str, Callable[[], Any]], dict[str, Callable[[], Any]]]:
    """Forward and forward+backward callables of every method of the ``nd`` section at ``shape``."""
    dims = len(shape) - 2
    pool = {1: nn.MaxPool1d, 3: nn.MaxPool3d}[dims](2)
    pool_idx = {1: nn.MaxPool1d, 3: nn.MaxPool3d}[dims](2, return_indices=True)
    unpool = {1: nn.MaxUnpool1d, 3: nn.MaxUnpool3d}[dims](2)
    torch.manual_seed(0)
    x = torch.randn(*shape)
    xg = x.clone().requires_grad_()
    g_pool = torch.randn_like(pool(x))
    y, idx = pool_idx(x)
    yg = y.clone().requires_grad_()
    g_up = torch.randn_like(x)

    def unpool_fwd() -> None:
        with torch.no_grad():
            unpool(y, idx)

    fwd: dict[str, Callable[[], Any]] = {"max": lambda: _no_grad_call(pool, x), "max_unpool": unpool_fwd}
    fb: dict[str, Callable[[], Any]] = {
        "max": lambda: pool(xg).backward(g_pool),
        "max_unpool": lambda: unpool(yg, idx).backward(g_up),
    }
    for backend, suffix in (("auto", ""), ("eager", "_eager")):
        down_fwd, down_fb, up_fwd, up_fb = _lift_nd_calls(shape, x, g_up, backend)
        fwd["lift" + suffix], fb["lift" + suffix] = down_fwd, down_fb
        fwd["lift_up" + suffix], fb["lift_up" + suffix] = up_fwd, up_fb
    return fwd, fb


def bench_nd(args: argparse.Namespace, log: Callable[[str], None]) -> list[Row]:
    """1D and 3D LiftDownPool / LiftUpPool (default backend and eager) against MaxPool / MaxUnpool."""
    rows: list[Row] = []
    for shape in args.nd_shapes:
        cfg = {"shape": list(shape), "dtype": "float32", "format": "contiguous", "mode": "eager"}
        fwd, fb = _nd_calls(tuple(shape))
        t_fwd = time_interleaved(fwd, repeats=args.repeats, warmup=args.warmup, clock=args.clock)
        t_fb = time_interleaved(fb, repeats=args.repeats, warmup=args.warmup, clock=args.clock)
        for name in fwd:
            rows.append(Row("nd", cfg, name, t_fwd[name] * 1e3, t_fb[name] * 1e3))
        log(f"nd {tuple(shape)}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in t_fb.items()))
    return rows


def bench_nets(args: argparse.Namespace, log: Callable[[str], None]) -> list[Row]:
    try:
        from ..models import create_model
    except ImportError as err:  # pragma: no cover - the models package is part of liftpool
        log(f"net: skipped, liftpool.models.create_model is not available ({err})")
        return []
    rows: list[Row] = []
    for net in args.nets:
        batch, size = NETS[net]
        if args.net_batch:
            batch = args.net_batch
        if args.net_size:
            size = args.net_size
        hw = size if isinstance(size, tuple) else (size, size)
        seg = net == "segnet"
        classes = 11 if seg else 10
        torch.manual_seed(0)
        x = torch.randn(batch, 3, *hw)
        if args.net_channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = torch.randint(0, classes, (batch, *hw) if seg else (batch,))
        width = NET_WIDTH.get(net, 1.0) if args.net_width is None else args.net_width
        steps: dict[str, Callable[[], Any]] = {}
        models: dict[str, nn.Module] = {}
        pools = [p for p in args.net_pools if p in SEG_POOLS] if seg else args.net_pools
        for pool in pools:
            kwargs: dict[str, Any] = {}
            if width != 1.0:
                kwargs["width"] = width
            model = create_model(net, pool="lift" if pool.startswith("lift") else pool, num_classes=classes, **kwargs)
            if pool == "lift_ref":
                _use_reference_lift(model)
            if pool in ("lift_eager", "lift_keep"):
                _use_backend(model, "eager")
            if pool == "lift_keep":
                model = _KeepIntermediates(model)
            if args.net_channels_last:
                model = model.to(memory_format=torch.channels_last)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(
                model: nn.Module = model, opt: torch.optim.Optimizer = opt, x: Tensor = x, target: Tensor = target
            ) -> None:
                from ..losses import lifting_loss

                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), target) + lifting_loss(model)
                loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward is untyped in torch's stubs
                opt.step()

            steps[pool], models[pool] = step, model
        t = time_interleaved(steps, repeats=args.net_repeats, warmup=1, clock=args.clock)
        cfg = {
            "net": net,
            "batch": batch,
            "size": list(hw),
            "width": width,
            "channels_last": bool(args.net_channels_last),
        }
        for pool, step_fn in steps.items():
            row = Row("net", cfg, pool, None, t[pool] * 1e3)
            if args.peak and not args.no_memory:
                row.peak_mb = _mb(peak_bytes(step_fn))
            rows.append(row)
        log(f"net {net} batch {batch} {hw[0]}x{hw[1]}: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in t.items()))
    return rows


def bench_scaling(args: argparse.Namespace, log: Callable[[str], None]) -> list[Row]:
    from ..layers import LiftDownPool2d

    n0, c0, s0 = args.scale_base
    grids = {
        "HW": [(n0, c0, s, s) for s in args.scale_sizes],
        "C": [(n0, c, s0, s0) for c in args.scale_channels],
        "N": [(n, c0, s0, s0) for n in args.scale_batches],
    }
    rows: list[Row] = []
    for axis, shapes in grids.items():
        fns: dict[str, Callable[[], Any]] = {}
        for shape in shapes:
            torch.manual_seed(0)
            x = torch.randn(*shape, requires_grad=True)
            m = LiftDownPool2d(shape[1]).train()
            g = torch.randn_like(m(x))
            fns[str(shape)] = _fwd_bwd(m, functools.partial(m, x), g, m)
        t = time_interleaved(fns, repeats=args.repeats, warmup=1, clock=args.clock)
        xs = [float(s[2] * s[3] if axis == "HW" else s[1] if axis == "C" else s[0]) for s in shapes]
        ys = [t[str(s)] * 1e3 for s in shapes]
        a, b, r2 = linear_fit(xs, ys)
        for shape, xv, yv in zip(shapes, xs, ys):
            rows.append(
                Row(
                    "scale",
                    {"axis": axis, "shape": list(shape), "x": xv},
                    "lift",
                    None,
                    yv,
                    extra={"fit_a": a, "fit_b": b, "r2": r2},
                )
            )
        log(f"scale {axis}: t = {a:.2f} + {b:.4g} * {axis} ms, R^2 = {r2:.4f}")
    return rows


# ---------------------------------------------------------------- reporting
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _size(size: Any) -> str:
    """``32x32`` for an int or a pair (rows of older runs recorded one int)."""
    h, w = (size, size) if isinstance(size, int) else size
    return f"{h}x{w}"


def _layer_tables(rows: list[Row]) -> list[str]:
    out: list[str] = []
    by_cfg: dict[str, list[Row]] = {}
    for r in rows:
        by_cfg.setdefault(json.dumps(r.config), []).append(r)
    for key, group in by_cfg.items():
        cfg = json.loads(key)
        ref = next((r for r in group if r.method == "max"), None)
        lit = next((r for r in group if r.method == "lift_ref"), None)
        out.append(f"#### {tuple(cfg['shape'])}, {cfg['dtype']}, {cfg['format']}, {cfg['mode']}\n")
        out.append("| method | fwd ms | fwd / max | fwd+bwd ms | fwd+bwd / max | saved MB | peak MB |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for r in group:
            out.append(
                f"| {r.method} | {_fmt(r.fwd_ms)} | {_ratio(r.fwd_ms, ref.fwd_ms if ref else None)} | "
                f"{_fmt(r.fwdbwd_ms)} | {_ratio(r.fwdbwd_ms, ref.fwdbwd_ms if ref else None)} | "
                f"{_fmt(r.saved_mb)} | {_fmt(r.peak_mb)} |"
            )
        fast = next((r for r in group if r.method == "lift"), None)
        eag = next((r for r in group if r.method == "lift_eager"), None)
        notes = []
        for other, what in ((eag, "the eager kernel"), (lit, "paper-literal")):
            if fast and other and fast.fwdbwd_ms and other.fwdbwd_ms and fast.fwd_ms and other.fwd_ms:
                notes.append(
                    f"lift (default backend) vs {what}: forward {other.fwd_ms / fast.fwd_ms:.2f}x, "
                    f"forward+backward {other.fwdbwd_ms / fast.fwdbwd_ms:.2f}x faster."
                )
        out.append("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
    return out


def render_markdown(rows: list[Row], info: dict[str, Any], command: str) -> str:
    lines = [
        "# liftpool bench",
        "",
        f"- command: `{command}`",
        f"- machine: {info['cpu']}, {info['cores']} logical cores; {info['platform']}",
        f"- torch {info['torch']}, Python {info['python']}, torch threads: {info['threads']}, "
        f"CUDA: {'yes' if info['cuda'] else 'no'}",
        f"- date: {info['date_utc']}",
        "- times are medians of interleaved repeats after warm-up; ratios are to MaxPool2d "
        "(max / max_unpool) measured in the same run",
        "",
    ]
    sections = {s: [r for r in rows if r.section == s] for s in SECTIONS}
    if sections["layer"]:
        lines += ["## Layer level", ""]
        lines += _layer_tables(sections["layer"])
    if sections["up"]:
        lines += [
            "## Up-pooling (LiftUpPool2d vs MaxUnpool2d)",
            "",
            "lift_up / lift_up_eager: LiftUpPool2d on the default (native) and the eager kernel; lift_down: the "
            "paired LiftDownPool2d (default kernel, with its constraint loss) on the same input.",
            "",
            "| shape | method | fwd ms | fwd+bwd ms | fwd+bwd / max_unpool | fwd+bwd / lift_down |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in sections["up"]:
            ref = next(q for q in sections["up"] if q.config == r.config and q.method == "max_unpool")
            down = next((q for q in sections["up"] if q.config == r.config and q.method == "lift_down"), None)
            lines.append(
                f"| {tuple(r.config['shape'])} | {r.method} | {_fmt(r.fwd_ms)} | {_fmt(r.fwdbwd_ms)} | "
                f"{_ratio(r.fwdbwd_ms, ref.fwdbwd_ms)} | "
                f"{_ratio(r.fwdbwd_ms, down.fwdbwd_ms if down else None)} |"
            )
        lines.append("")
    if sections["nd"]:
        lines += [
            "## 1D and 3D (LiftDownPool / LiftUpPool vs MaxPool / MaxUnpool)",
            "",
            "| shape | method | fwd ms | fwd+bwd ms | fwd+bwd / max | fwd+bwd / max_unpool |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for r in sections["nd"]:
            mx = next(q for q in sections["nd"] if q.config == r.config and q.method == "max")
            mu = next(q for q in sections["nd"] if q.config == r.config and q.method == "max_unpool")
            lines.append(
                f"| {tuple(r.config['shape'])} | {r.method} | {_fmt(r.fwd_ms)} | {_fmt(r.fwdbwd_ms)} | "
                f"{_ratio(r.fwdbwd_ms, mx.fwdbwd_ms)} | {_ratio(r.fwdbwd_ms, mu.fwdbwd_ms)} |"
            )
        lines.append("")
    if sections["net"]:
        lines += [
            "## Network level: one SGD training step",
            "",
            "| network | batch | pooling | step ms | step / max | peak MB | peak / max |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in sections["net"]:
            ref = next(q for q in sections["net"] if q.config == r.config and q.method == "max")
            lines.append(
                f"| {r.config['net']} {_size(r.config['size'])} | {r.config['batch']} | {r.method} | "
                f"{_fmt(r.fwdbwd_ms, 0)} | {_ratio(r.fwdbwd_ms, ref.fwdbwd_ms)} | {_fmt(r.peak_mb)} | "
                f"{_ratio(r.peak_mb, ref.peak_mb)} |"
            )
        lines.append("")
    if sections["scale"]:
        lines += [
            "## Scaling (LiftDownPool2d forward+backward)",
            "",
            "| varied | shape | x | ms |",
            "|---|---|---:|---:|",
        ]
        for r in sections["scale"]:
            lines.append(
                f"| {r.config['axis']} | {tuple(r.config['shape'])} | {r.config['x']:.0f} | {_fmt(r.fwdbwd_ms)} |"
            )
        lines.append("")
        seen = set()
        for r in sections["scale"]:
            axis = r.config["axis"]
            if axis not in seen:
                seen.add(axis)
                e = r.extra
                lines.append(
                    f"- against {axis}: t = {e['fit_a']:.2f} ms + {e['fit_b']:.4g} ms x {axis}, R^2 = {e['r2']:.4f}"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_layers(rows: list[Row], path: str) -> bool:
    rows = [r for r in rows if r.section == "layer" and r.fwdbwd_ms is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfgs: list[str] = []
    for r in rows:
        k = json.dumps(r.config)
        if k not in cfgs:
            cfgs.append(k)
    methods = list(dict.fromkeys(r.method for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cfgs) + 3), 4.5))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = []
        for k in cfgs:
            ref = next((r for r in rows if json.dumps(r.config) == k and r.method == "max"), None)
            row = next((r for r in rows if json.dumps(r.config) == k and r.method == m), None)
            vals.append(
                row.fwdbwd_ms / ref.fwdbwd_ms if row and ref and row.fwdbwd_ms and ref.fwdbwd_ms else float("nan")
            )
        ax.bar([j + i * width for j in range(len(cfgs))], vals, width, label=m)
    labels = []
    for k in cfgs:
        c = json.loads(k)
        labels.append(f"{'x'.join(map(str, c['shape']))}\n{c['dtype']} {c['format'][:2]} {c['mode']}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cfgs))])
    ax.set_xticklabels(labels, fontsize=7)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("forward+backward time / MaxPool2d")
    ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("Down-pooling layers, forward+backward, ratio to MaxPool2d (same run)")
    atomic_save_figure(fig, path, dpi=110, bbox_inches="tight")
    return True


def plot_scaling(rows: list[Row], path: str) -> bool:
    rows = [r for r in rows if r.section == "scale"]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_ = list(dict.fromkeys(r.config["axis"] for r in rows))
    fig, axs = plt.subplots(1, len(axes_), figsize=(4.2 * len(axes_), 3.6))
    if len(axes_) == 1:
        axs = [axs]
    for ax, axis in zip(axs, axes_):
        pts = [r for r in rows if r.config["axis"] == axis]
        xs = [r.config["x"] for r in pts]
        ys = [r.fwdbwd_ms for r in pts]
        e = pts[0].extra
        ax.plot(xs, ys, "o", label="measured")
        lo, hi = min(xs), max(xs)
        ax.plot(
            [lo, hi],
            [e["fit_a"] + e["fit_b"] * lo, e["fit_a"] + e["fit_b"] * hi],
            "-",
            label=f"fit, R$^2$={e['r2']:.3f}",
        )
        ax.set_xlabel({"HW": "H x W", "C": "channels C", "N": "batch N"}.get(axis, axis))
        ax.set_ylabel("fwd+bwd ms")
        ax.legend(fontsize=8)
    fig.suptitle("LiftDownPool2d forward+backward time scaling")
    atomic_save_figure(fig, path, dpi=110, bbox_inches="tight")
    return True


# ---------------------------------------------------------------- CLI
def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        parts = tuple(int(p) for p in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be N,C,H,W (e.g. 32,64,56,56), got {text!r}") from None
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"shape must be four positive ints N,C,H,W, got {text!r}")
    return parts


def _nd_shape(text: str) -> tuple[int, ...]:
    try:
        parts = tuple(int(p) for p in text.lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be N,C,L or N,C,D,H,W, got {text!r}") from None
    if len(parts) not in (3, 5) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"shape must be 3 (N,C,L) or 5 (N,C,D,H,W) positive ints, got {text!r}")
    return parts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``liftpool bench``."""
    p = parser
    p.add_argument(
        "--quick",
        action="store_true",
        help="the target configuration only: (32,64,56,56) float32 eager, VGG13-CIFAR step, small scaling grid",
    )
    p.add_argument("--out", default="bench-results", help="output directory (bench.md, bench.json, PNGs)")
    p.add_argument("--sections", nargs="+", default=None, choices=SECTIONS, help="what to measure (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: stable on a shared machine)")
    p.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="wall clock or process CPU time (auto: CPU time with 1 thread, else wall)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed rounds per measurement (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--shapes", type=_shape, nargs="+", default=None, help="layer shapes N,C,H,W")
    p.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=None)
    p.add_argument("--formats", nargs="+", choices=("contiguous", "channels_last"), default=None)
    p.add_argument(
        "--modes",
        nargs="+",
        choices=("eager", "compile"),
        default=None,
        help="eager and/or torch.compile (compile: float32 contiguous only unless --compile-all)",
    )
    p.add_argument(
        "--compile-all", action="store_true", help="torch.compile every dtype/format, not only float32 contiguous"
    )
    p.add_argument("--methods", nargs="+", choices=LAYER_METHODS, default=list(LAYER_METHODS))
    p.add_argument("--no-memory", action="store_true", help="skip the saved/peak memory measurements")
    p.add_argument("--no-peak", dest="peak", action="store_false", help="skip the (slow) peak-memory profiling")
    p.add_argument("--nets", nargs="+", choices=tuple(NETS), default=None)
    p.add_argument("--net-pools", nargs="+", choices=NET_POOLS, default=list(NET_POOLS))
    p.add_argument("--net-batch", type=int, default=None, help="override the batch size of every network")
    p.add_argument("--net-size", type=int, default=None, help="override the input size of every network")
    p.add_argument(
        "--net-width",
        type=float,
        default=None,
        help="channel multiplier of the networks (default: 1, SegNet 0.125 as in the reproduction)",
    )
    p.add_argument("--net-repeats", type=int, default=None)
    p.add_argument("--net-channels-last", action="store_true", help="model and input in channels_last")
    p.add_argument(
        "--scale-base",
        type=int,
        nargs=3,
        default=None,
        metavar=("N", "C", "S"),
        help="fixed N, C and spatial size of the scaling sweeps",
    )
    p.add_argument("--scale-sizes", type=int, nargs="+", default=None)
    p.add_argument("--scale-channels", type=int, nargs="+", default=None)
    p.add_argument("--scale-batches", type=int, nargs="+", default=None)
    p.add_argument(
        "--nd-shapes",
        type=_nd_shape,
        nargs="+",
        default=None,
        help="1D (N,C,L) and 3D (N,C,D,H,W) shapes of the nd section",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or an accelerator such as cuda / cuda:1 (wall clock, no memory measures; "
        "LiftPool runs its eager kernel there)",
    )


def _fill_defaults(args: argparse.Namespace) -> None:
    quick = args.quick
    if args.sections is None:
        args.sections = list(SECTIONS)
    if args.repeats is None:
        args.repeats = 5 if quick else 7
    if args.net_repeats is None:
        args.net_repeats = 3
    if args.shapes is None:
        args.shapes = list(QUICK_SHAPES if quick else FULL_SHAPES)
    if args.dtypes is None:
        args.dtypes = ["float32"] if quick else ["float32", "bfloat16"]
    if args.formats is None:
        args.formats = ["contiguous", "channels_last"]
    if args.modes is None:
        args.modes = ["eager"] if quick else ["eager", "compile"]
    args.compile_configs = {("float32", "contiguous")}
    if args.nets is None:
        args.nets = ["vgg13_cifar", "segnet"] if quick else list(NETS)
    if args.nd_shapes is None:
        args.nd_shapes = list(ND_SHAPES)
    if args.scale_base is None:
        args.scale_base = [8, 32, 32] if quick else [8, 64, 56]
    if args.scale_sizes is None:
        args.scale_sizes = [16, 32, 48, 64] if quick else [16, 32, 48, 64, 96, 128]
    if args.scale_channels is None:
        args.scale_channels = [16, 32, 64] if quick else [16, 32, 64, 128, 256]
    if args.scale_batches is None:
        args.scale_batches = [2, 4, 8] if quick else [2, 4, 8, 16, 32]
    if args.clock == "auto":
        args.clock = "cpu" if args.threads == 1 else "wall"


def _command_of(args: argparse.Namespace) -> str:
    """An equivalent ``liftpool bench`` command line for ``args`` (when not run from the shell)."""
    parts = ["liftpool bench", f"--out {args.out}"]
    for key, value in sorted(vars(args).items()):
        if key == "peak":
            if not value:
                parts.append("--no-peak")
            continue
        if key in ("out", "command", "compile_configs", "checkpoint_fn") or value in (None, False):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            items = [",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in value]
            parts.append(f"{flag} {' '.join(items)}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _use_device(args: argparse.Namespace) -> None:
    """Make ``args.device`` the default device of every tensor and module the sections create."""
    global _sync
    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"--device must be a torch device such as cpu or cuda, got {args.device!r}") from err
    if device.type == "cpu":
        _sync = _no_sync
        return
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ValueError(
            f"--device {args.device}: no such device is available here (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}; only cpu and cuda are supported)"
        )
    torch.set_default_device(device)
    _sync = torch.cuda.synchronize
    args.no_memory = True  # the saved/peak byte counters measure CPU storages
    args.clock = "wall"


def run(args: argparse.Namespace) -> int:
    """Run the selected sections and write ``bench.md``, ``bench.json`` and the PNG plots to ``args.out``."""
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    _fill_defaults(args)
    _use_device(args)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    command = "liftpool bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else _command_of(args)
    log_path = os.path.join(args.out, "bench.log")

    def log(msg: str) -> None:
        print(msg, flush=True)
        with open(log_path, "a") as fh:
            fh.write(msg + "\n")

    info = machine_info()
    log(
        f"liftpool bench on {info['cpu']} ({info['cores']} cores), torch {info['torch']}, {args.threads} thread(s), "
        f"clock={args.clock}"
    )
    rows: list[Row] = []
    sections: dict[str, Callable[[argparse.Namespace, Callable[[str], None]], list[Row]]] = {
        "layer": bench_layers,
        "up": bench_up,
        "nd": bench_nd,
        "net": bench_nets,
        "scale": bench_scaling,
    }
    done: list[Row] = []
    # partial layer results are written after every configuration
    args.checkpoint_fn = lambda partial: _write_outputs(args.out, done + partial, info, command)
    for name in SECTIONS:
        if name in args.sections:
            t0 = time.perf_counter()
            rows += sections[name](args, log)
            done[:] = rows
            log(f"[{name}] done in {time.perf_counter() - t0:.0f} s")
            # write what we have after each section, so an interrupted run keeps it
            _write_outputs(args.out, rows, info, command)
    log(f"wrote {os.path.join(args.out, 'bench.md')}")
    return 0


def _write_outputs(out: str, rows: list[Row], info: dict[str, Any], command: str) -> None:
    atomic_write_bytes(os.path.join(out, "bench.md"), render_markdown(rows, info, command).encode())
    payload = {"machine": info, "command": command, "rows": [asdict(r) for r in rows]}
    atomic_write_bytes(os.path.join(out, "bench.json"), json.dumps(payload, indent=1).encode())
    plot_layers(rows, os.path.join(out, "bench_layer.png"))
    plot_scaling(rows, os.path.join(out, "bench_scaling.png"))


def _iter_rows(path: str) -> Iterator[Row]:  # pragma: no cover - convenience for notebooks
    with open(path) as fh:
        for r in json.load(fh)["rows"]:
            yield Row(**r)
