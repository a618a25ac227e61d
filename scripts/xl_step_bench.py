"""Which configuration trains the xl study's network fastest on this CPU?

Times one SGD training step (forward, cross-entropy + LiftPool constraints, backward, SGD update)
of VGG13-BN CIFAR width 0.25, batch 128, 32x32, for MaxPool and LiftDownPool (K = 5, band mean),
in the plain layout, ``channels_last`` and under ``torch.compile``, interleaved in one process;
then the throughput of two single-thread processes side by side against one two-thread process.

    python scripts/xl_step_bench.py [--steps 20] [--warmup 5]

Prints milliseconds per step (median) and the ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from liftpool.losses import lifting_loss
from liftpool.models import create_model


def make(pool: str, channels_last: bool, compiled: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:  # noqa: E501
    kw = {"kernel_size": 5, "scale": "mean"} if pool == "lift" else {}
    net = create_model("vgg13_cifar", pool=pool, num_classes=10, width=0.25, pool_kwargs=kw)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    run = torch.compile(net) if compiled else net
    return net, run, opt


def step(net: torch.nn.Module, run: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:  # noqa: E501
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(run(x), y) + lifting_loss(net)
    loss.backward()
    opt.step()


def time_configs(steps: int, warmup: int, threads: int, configs: list[tuple[str, bool, bool]]) -> dict[str, float]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    built = {}
    for pool, cl, comp in configs:
        net, run, opt = make(pool, cl, comp)
        xx = x.contiguous(memory_format=torch.channels_last) if cl else x
        t0 = time.perf_counter()
        for _ in range(warmup):
            step(net, run, opt, xx, y)
        built[(pool, cl, comp)] = (net, run, opt, xx, time.perf_counter() - t0)
    times: dict[tuple[str, bool, bool], list[float]] = {k: [] for k in built}
    for _ in range(steps):  # interleaved: every config one step per round
        for k, (net, run, opt, xx, _) in built.items():
            t0 = time.perf_counter()
            step(net, run, opt, xx, y)
            times[k].append(time.perf_counter() - t0)
    return {f"{p}{' channels_last' if cl else ''}{' compile' if c else ''}": 1e3 * statistics.median(v)
            for (p, cl, c), v in times.items()} | {
        f"warmup_s {p}{' channels_last' if cl else ''}{' compile' if c else ''}": b[4] for (p, cl, c), b in built.items()}  # noqa: E501


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="internal: one timing process")
    ap.add_argument("--configs", default="all")
    a = ap.parse_args()
    allc = [(p, cl, c) for p in ("max", "lift") for cl, c in ((False, False), (True, False), (False, True))]
    if a.threads:
        cfgs = allc if a.configs == "all" else [(p, False, False) for p in a.configs.split(",")]
        print(json.dumps(time_configs(a.steps, a.warmup, a.threads, cfgs)))
        return
    me = [sys.executable, __file__, "--steps", str(a.steps), "--warmup", str(a.warmup)]
    r2 = json.loads(subprocess.check_output([*me, "--threads", "2"]))
    print("2 threads, ms per step (median, interleaved):")
    for k, v in r2.items():
        print(f"  {k:32s} {v:8.1f}")
    for p in ("max", "lift"):
        print(f"  {p}: channels_last {r2[p + ' channels_last'] / r2[p]:.2f}x, compile {r2[p + ' compile'] / r2[p]:.2f}x plain")  # noqa: E501
    t0 = time.perf_counter()
    one = json.loads(subprocess.check_output([*me, "--threads", "2", "--configs", "max,lift"]))
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*me, "--threads", "1", "--configs", "max,lift"], stdout=subprocess.PIPE) for _ in range(2)]  # noqa: E501
    side = [json.loads(p.communicate()[0]) for p in procs]
    t_two = time.perf_counter() - t0
    print("one 2-thread process:", {k: round(v, 1) for k, v in one.items() if not k.startswith("warmup")},
          f"wall {t_one:.1f} s")
    for s in side:
        print("one of two 1-thread processes side by side:", {k: round(v, 1) for k, v in s.items() if not k.startswith("warmup")})  # noqa: E501
    for p in ("max", "lift"):
        per_hour_one = 1.0 / one[p]
        per_hour_two = 2.0 / statistics.mean(s[p] for s in side)
        print(f"  {p}: two 1-thread jobs do {per_hour_two / per_hour_one:.2f}x the steps per hour of one 2-thread job")
    print(f"  same work: 1 x 2-thread {t_one:.1f} s wall vs 2 x 1-thread {t_two:.1f} s wall (twice the work)")


if __name__ == "__main__":
    main()
