"""Native vs eager LiftDownPool2d vs MaxPool2d / AvgPool2d / 5x5 BlurPool: interleaved ratios, 1 and 2 threads.

Usage (from the repository root)::

    PYTHONPATH=src python benchmarks/bench_native.py                 # target shape + small maps
    PYTHONPATH=src python benchmarks/bench_native.py --shapes target --rounds 9 --threads 1,2

Every round runs every case once (one thread count at a time), so load from other processes hits
all cases alike; the table gives medians (and min-max) and the ratios of the medians.  "fwd+bwd" is the
training step of the pooling layer alone: forward in training mode (LiftDownPool2d: with its
constraint loss lambda_u c_u + lambda_p c_p), ``out.sum()`` (+ loss), backward.  "eval fwd" is a
no-grad forward in eval mode.  The eager case calls the eager path's pool function directly (the
same function ``LiftDownPool2d.forward`` calls), the native case ``liftpool.kernels.native.pool``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from liftpool import LiftDownPool2d
from liftpool.kernels import native
from liftpool.kernels.eager import fast_pool as eager_fast_pool

TARGET = [(32, 64, 56, 56)]
SMALL = [(64, 16, 32, 32), (64, 32, 16, 16), (64, 64, 8, 8), (64, 128, 4, 4), (64, 128, 2, 2)]



def blur_kernel(c: int) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k2 = k[:, None] * k[None, :]
    return (k2 / k2.sum()).expand(c, 1, 5, 5).contiguous()


def cases_for(shape: tuple[int, int, int, int]) -> tuple[dict[str, Callable[[], None]], dict[str, Callable[[], None]]]:
    _, c, h, w = shape
    layer = LiftDownPool2d(c).train()
    eager = eager_fast_pool
    x = torch.randn(shape, requires_grad=True)
    xe = x.detach()
    bk = blur_kernel(c)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(
            F.pad(t, (2, 2, 2, 2), mode="reflect" if min(h, w) > 2 else "replicate"), bk, stride=2, groups=c
        )

    def lift_step(fn: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            x.grad = None
            layer.zero_grad(set_to_none=True)
            out, _, cons = fn(x, layer.transforms, 2, layer.bands, layer.scale, True, False)
            (out.sum() + layer.lambda_u * cons.c_u + layer.lambda_p * cons.c_p).backward()

        return run

    def lift_eval(fn: Callable[..., Any]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                fn(xe, layer.transforms, 2, layer.bands, layer.scale, False, False)

        return run

    def step(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            x.grad = None
            f(x).sum().backward()  # type: ignore[no-untyped-call]  # torch stub of Tensor.backward is untyped

        return run

    def fwd(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                f(xe)

        return run

    pools: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "max": lambda t: F.max_pool2d(t, 2, ceil_mode=True),
        "avg": lambda t: F.avg_pool2d(t, 2, ceil_mode=True),
        "blur5": blur,
    }
    train = {"native": lift_step(native.pool), "eager": lift_step(eager), **{k: step(f) for k, f in pools.items()}}
    evals = {"native": lift_eval(native.pool), "eager": lift_eval(eager), **{k: fwd(f) for k, f in pools.items()}}
    return train, evals


def measure(
    cases: dict[str, Callable[[], None]], threads: list[int], rounds: int
) -> dict[tuple[int, str], list[float]]:
    """Median-ready samples per (threads, case): cases interleaved within every round, one thread count at a time
    (switching the OpenMP team size inside a round lets a spinning worker of the 2-thread team steal the core of
    the next 1-thread case on a loaded machine)."""
    samples: dict[tuple[int, str], list[float]] = {}
    for th in threads:
        torch.set_num_threads(th)
        reps: dict[str, int] = {}
        for k, f in cases.items():
            f()
            t0 = time.perf_counter()
            f()
            reps[k] = max(1, int(0.05 / max(time.perf_counter() - t0, 1e-6)))
            samples[th, k] = []
        for _ in range(rounds):
            for k, f in cases.items():
                t0 = time.perf_counter()
                for _ in range(reps[k]):
                    f()
                samples[th, k].append((time.perf_counter() - t0) / reps[k])
    return samples


def report(title: str, shape: tuple[int, ...], samples: dict[tuple[int, str], list[float]], threads: list[int]) -> None:
    med = {k: statistics.median(v) for k, v in samples.items()}
    for th in threads:
        row = "  ".join(
            f"{k} {med[th, k] * 1e3:.2f} ms ({min(samples[th, k]) * 1e3:.2f}-{max(samples[th, k]) * 1e3:.2f})"
            for (t, k) in med
            if t == th
        )
        nat = med[th, "native"]
        print(f"{title} {'x'.join(map(str, shape))} threads={th}: {row}")
        print(
            f"    ratios: native/max {nat / med[th, 'max']:.2f}  native/avg {nat / med[th, 'avg']:.2f}  "
            f"native/blur5 {nat / med[th, 'blur5']:.2f}  eager/native {med[th, 'eager'] / nat:.2f}  "
            f"eager/max {med[th, 'eager'] / med[th, 'max']:.2f}"
        )
    if 1 in threads and 2 in threads:
        print(
            f"    2-thread speedup: native {med[1, 'native'] / med[2, 'native']:.2f}x  "
            f"max {med[1, 'max'] / med[2, 'max']:.2f}x  eager {med[1, 'eager'] / med[2, 'eager']:.2f}x"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", choices=("all", "target", "small"), default="all")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True, help="also time the eval forward")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    if not native.available():
        raise SystemExit(f"native kernel unavailable: {native.build_info()['error']}")
    info = native.build_info()
    print(f"torch {torch.__version__}; native build {info['build_dir']} flags {' '.join(info['cxx_flags'])}")
    with open("/proc/loadavg") as f:
        print(f"loadavg before: {f.read().strip()}  (shared machine: ratios from interleaved rounds)")
    shapes = {"all": TARGET + SMALL, "target": TARGET, "small": SMALL}[args.shapes]
    torch.manual_seed(0)
    for shape in shapes:
        train, evals = cases_for(shape)
        report("fwd+bwd ", shape, measure(train, threads, args.rounds), threads)
        if args.eval:
            report("eval fwd", shape, measure(evals, threads, args.rounds), threads)
    with open("/proc/loadavg") as f:
        print(f"loadavg after: {f.read().strip()}")


if __name__ == "__main__":
    main()
