"""Which configuration trains the xl study's network fastest on this CPU?

Times one SGD training step (forward, cross-entropy + LiftPool constraints, backward, SGD update)
of VGG13-BN CIFAR width 0.25, batch 128, 32x32, for MaxPool and LiftDownPool (K = 5, band mean),
in the plain layout, ``channels_last`` and under ``torch.compile``, interleaved in one process, at
1 and 2 threads; then the steps per hour of two single-thread processes side by side against one
two-thread process.  Data loading is not included (it is single-threaded in the study's runs,
which favours side-by-side jobs further).

    python scripts/xl_step_bench.py [--steps 12] [--warmup 3] [--no-compile] [--no-side-by-side]

Prints milliseconds per step (median) and the ratios; nothing is asserted.  Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from liftpool.losses import lifting_loss
from liftpool.models import create_model

Config = tuple[str, bool, bool]  # pool, channels_last, compiled


def _name(c: Config) -> str:
    return c[0] + (" channels_last" if c[1] else "") + (" compile" if c[2] else "")


def _make(c: Config) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    pool, channels_last, compiled = c
    kw = {"kernel_size": 5, "scale": "mean"} if pool == "lift" else {}
    net = create_model("vgg13_cifar", pool=pool, num_classes=10, width=0.25, pool_kwargs=kw)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return net, (torch.compile(net) if compiled else net), opt  # type: ignore[return-value]


def _step(net: nn.Module, run: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(run(x), y) + lifting_loss(net)
    loss.backward()  # type: ignore[no-untyped-call]
    opt.step()


def time_configs(steps: int, warmup: int, threads: int, configs: list[Config]) -> dict[str, float]:
    """Median ms per step of each config (every round runs one step of each, interleaved)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    built: dict[Config, Any] = {}
    for c in configs:
        net, run, opt = _make(c)
        xx = x.contiguous(memory_format=torch.channels_last) if c[1] else x
        for _ in range(warmup):
            _step(net, run, opt, xx, y)
        built[c] = (net, run, opt, xx)
    times: dict[Config, list[float]] = {c: [] for c in built}
    for _ in range(steps):
        for c, (net, run, opt, xx) in built.items():
            t0 = time.perf_counter()
            _step(net, run, opt, xx, y)
            times[c].append(time.perf_counter() - t0)
    return {_name(c): 1e3 * statistics.median(v) for c, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--worker", type=int, default=0, help="internal: time plain max/lift at this many threads")
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile (its compile takes minutes)")
    ap.add_argument("--no-side-by-side", action="store_true", help="leave out the side-by-side processes")
    a = ap.parse_args()
    if a.steps < 1 or a.warmup < 0:
        ap.error(f"--steps must be >= 1 and --warmup >= 0, got {a.steps} and {a.warmup}")
    plain: list[Config] = [("max", False, False), ("lift", False, False)]
    if a.worker:
        print(json.dumps(time_configs(a.steps, a.warmup, a.worker, plain)))
        return
    layouts = ((False, False), (True, False)) + (() if a.no_compile else ((False, True),))
    allc: list[Config] = [(p, cl, c) for p in ("max", "lift") for cl, c in layouts]
    for threads in (2, 1):
        r = time_configs(a.steps, a.warmup, threads, allc)
        print(f"{threads} thread(s), ms per step (median, interleaved):")
        for k, v in r.items():
            print(f"  {k:24s} {v:8.1f}")
        for p in ("max", "lift"):
            cl = r[p + " channels_last"] / r[p]
            comp = "" if a.no_compile else f", compile {r[p + ' compile'] / r[p]:.2f}x"
            print(f"  {p}: channels_last {cl:.2f}x{comp}")
        print(f"  lift / max: plain {r['lift'] / r['max']:.2f}x, channels_last "
              f"{r['lift channels_last'] / r['max channels_last']:.2f}x")
    if a.no_side_by_side:
        return
    me = [sys.executable, __file__, "--steps", str(a.steps), "--warmup", str(a.warmup)]
    one = json.loads(subprocess.check_output([*me, "--worker", "2"]))
    procs = [subprocess.Popen([*me, "--worker", "1"], stdout=subprocess.PIPE) for _ in range(2)]
    side = [json.loads(p.communicate()[0]) for p in procs]
    for p in ("max", "lift"):
        ratio = (2.0 / statistics.mean(s[p] for s in side)) / (1.0 / one[p])
        print(f"{p}: one 2-thread process {one[p]:.1f} ms/step; two 1-thread processes side by side "
              f"{side[0][p]:.1f} / {side[1][p]:.1f} ms/step = {ratio:.2f}x the steps per hour")  # fmt: skip


if __name__ == "__main__":
    main()
