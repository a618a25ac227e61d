"""Profile one LiftDownPool2d forward+backward (fast path, no-recompute fast path, or paper-literal).

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_layer.py [--impl fast|keep|literal]
        [--shape 32 64 56 56] [--channels-last] [--eval] [--rows 25]

Prints torch.profiler's table sorted by self CPU time; this is how the kernels listed in
docs/performance.md were found.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import profile

from liftpool import LiftDownPool2d
from liftpool.kernels import eager as _fast
from liftpool.testing.reference import reference_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impl", choices=("fast", "keep", "literal"), default="fast")
    p.add_argument("--shape", type=int, nargs=4, default=[32, 64, 56, 56], metavar=("N", "C", "H", "W"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--eval", action="store_true", help="profile an inference forward instead")
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    torch.set_num_threads(1)
    n, c, h, w = args.shape
    x = torch.randn(n, c, h, w)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    layer = LiftDownPool2d(c)
    if args.impl == "literal":
        layer = reference_of(layer)
    mode = "never" if args.impl == "keep" else _fast.RECOMPUTE

    def step() -> None:
        with _fast.recompute_mode(mode):
            if args.eval:
                layer.eval()
                with torch.no_grad():
                    layer(x)
                return
            layer.train()
            xg = x.detach().requires_grad_()
            y = layer(xg)
            torch.autograd.backward([y, layer.lifting_loss()], [torch.ones_like(y).normal_(), torch.ones(())])

    step()  # warm-up
    with profile() as prof:
        step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
