#!/usr/bin/env python
"""Forward+backward cost of every down-pooling method, as a ratio to max pooling.

Every method of ``liftpool.pooling.POOLS`` (the core baselines, LiftDownPool2d and the
zoo) is timed in training mode on the same input: one forward pass, then the backward pass
of a fixed random output gradient. Methods are timed round-robin (every round runs each
method once, in a shuffled order) so that drifting machine load hits them alike; the
reported time is the median over rounds and the ratio is against max pooling *measured in
the same run*.

Usage::

    python benchmarks/bench_zoo.py                       # both default shapes, CPU
    python benchmarks/bench_zoo.py --shapes 8x64x32x32 --rounds 20 --threads 2
    python benchmarks/bench_zoo.py --device cuda --out results/zoo.md --plot results/zoo.png

A shape ending in ``:cl`` is run in channels_last memory format. Results are printed as a
Markdown table and, with ``--out``, written atomically (``.md``, ``.csv`` or ``.json`` by
suffix); ``--plot`` writes a PNG bar chart of the ratios.

``--clock cpu`` times each step by the CPU time of this process (``time.process_time``)
instead of wall-clock time: on a machine shared with other jobs (or run under ``nice``) the
time the process waits for a core then does not count, so the ratios stay readable; it
measures work, not latency, and is for the CPU device only.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from liftpool.pooling import POOLS, make_pool, pool_parameter_count

DEFAULT_SHAPES = ("32x64x56x56:cl", "8x64x32x32")


def parse_shape(text: str) -> tuple[tuple[int, int, int, int], bool]:
    """``"NxCxHxW"`` or ``"NxCxHxW:cl"`` -> ``((N, C, H, W), channels_last)``."""
    body, _, fmt = text.partition(":")
    if fmt not in ("", "cl"):
        raise argparse.ArgumentTypeError(f"shape suffix must be ':cl' (channels_last) or nothing, got {text!r}")
    try:
        dims = tuple(int(v) for v in body.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 32x64x56x56, got {text!r}") from None
    if len(dims) != 4 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"shape must have 4 positive sizes N x C x H x W, got {text!r}")
    return dims, fmt == "cl"  # type: ignore[return-value]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(pool: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    x.grad = None
    y = pool(x)
    if isinstance(y, tuple):
        y = y[0]
    y.backward(grad)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def bench_shape(
    names: Sequence[str], shape: tuple[int, int, int, int], channels_last: bool, device: torch.device,
    rounds: int, warmup: int, seed: int, progress: Any = None, clock: str = "wall",
) -> dict[str, list[float]]:
    """Seconds per forward+backward for each name (``rounds`` samples each, round-robin; ``clock``:
    ``"wall"`` time or this process's ``"cpu"`` time)."""
    now = CLOCKS[clock]
    torch.manual_seed(seed)
    n, c, h, w = shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, c, h, w, device=device).to(memory_format=fmt).requires_grad_(True)
    pools, grads = {}, {}
    for name in names:
        pool = make_pool(name, c, device=device).train().to(memory_format=fmt)
        with torch.no_grad():
            y = pool(x)
        y = y[0] if isinstance(y, tuple) else y
        pools[name] = pool
        grads[name] = torch.randn_like(y)
        for _ in range(warmup):
            _step(pool, x, grads[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    order = list(names)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            _sync(device)
            t0 = now()
            _step(pools[name], x, grads[name])
            _sync(device)
            times[name].append(now() - t0)
            for p in pools[name].parameters():
                p.grad = None
        if progress is not None:
            progress.update(1)
    return times


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores visible"
    return f"{where}; torch {torch.__version__}; {torch.get_num_threads()} intra-op threads"


def to_markdown(rows: list[dict[str, Any]], shapes: list[str]) -> str:
    head = "| method | params (C=64) | " + " | ".join(f"{s} ms | {s} ratio" for s in shapes) + " |"
    sep = "|" + "---|" * (2 + 2 * len(shapes))
    lines = [head, sep]
    for r in rows:
        cells = [r["method"], str(r["params_c64"])]
        for s in shapes:
            cells += [f"{r[s + ' ms']:.2f}", f"{r[s + ' ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot(rows: list[dict[str, Any]], shapes: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(rows) + 2), 4.0))
    width = 0.8 / len(shapes)
    xs = range(len(rows))
    for i, s in enumerate(shapes):
        ax.bar([x + i * width for x in xs], [r[s + " ratio"] for r in rows], width, label=s)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([x + width * (len(shapes) - 1) / 2 for x in xs])
    ax.set_xticklabels([r["method"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("forward+backward time / max pooling")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), help="NxCxHxW[:cl] (default: %(default)s)")
    ap.add_argument("--methods", nargs="+", default=None, help="pool names (default: every registered pool)")
    ap.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds per method (default: %(default)s)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per method first (default: %(default)s)")
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                    help="wall-clock time, or this process's CPU time (CPU only; for a loaded machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write results to .md, .csv or .json")
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG bar chart of the ratios")
    args = ap.parse_args(argv)

    names = list(args.methods) if args.methods else list(POOLS)
    unknown = [n for n in names if n not in POOLS]
    if unknown:
        ap.error(f"unknown method(s) {unknown}; choose from {tuple(POOLS)}")
    if "max" not in names:
        names.insert(0, "max")  # the reference
    if args.rounds < 1 or args.warmup < 0:
        ap.error("--rounds must be >= 1 and --warmup >= 0")
    if args.out is not None and args.out.suffix not in (".md", ".csv", ".json"):
        ap.error(f"--out must end in .md, .csv or .json, got {args.out}")
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    shapes = [parse_shape(s) for s in args.shapes]
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        ap.error("--clock cpu measures the CPU time of this process: use it with --device cpu")

    try:
        from tqdm import tqdm
        progress = tqdm(total=args.rounds * len(shapes), desc="rounds", file=sys.stderr)
    except ImportError:  # pragma: no cover
        progress = None

    labels = [f"{'x'.join(map(str, s))}{' cl' if cl else ''}" for s, cl in shapes]
    results: dict[str, dict[str, list[float]]] = {}
    for label, (shape, cl) in zip(labels, shapes):
        results[label] = bench_shape(names, shape, cl, device, args.rounds, args.warmup, args.seed, progress,
                                     args.clock)
    if progress is not None:
        progress.close()

    rows = []
    for name in names:
        row: dict[str, Any] = {"method": name, "params_c64": pool_parameter_count(name, 64)}
        for label in labels:
            med = statistics.median(results[label][name])
            row[label + " ms"] = 1000 * med
            row[label + " ratio"] = med / statistics.median(results[label]["max"])
        rows.append(row)

    machine = machine_description(device)
    cmd = "python benchmarks/bench_zoo.py " + " ".join(sys.argv[1:] if argv is None else argv)
    clock = "wall-clock time" if args.clock == "wall" else "process CPU time"
    header = (f"forward+backward, training mode, median of {args.rounds} rounds ({clock}); {machine}\n"
              f"command: {cmd}\n\n")
    table = to_markdown(rows, labels)
    print(header + table, end="")
    if args.out is not None:
        if args.out.suffix == ".md":
            text = header + table
        elif args.out.suffix == ".csv":
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            text = buf.getvalue()
        else:
            text = json.dumps({"machine": machine, "command": cmd, "rounds": args.rounds, "clock": args.clock,
                               "rows": rows, "samples_s": results}, indent=2)
        write_atomic(args.out, text)
    if args.plot is not None:
        plot(rows, labels, args.plot, machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
