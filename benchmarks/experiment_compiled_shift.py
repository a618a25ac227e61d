"""Experiment, kept for the record (docs/performance.md, "Tried and not kept").

LiftDownPool2d written as shift-and-add pointwise ops (no convolution calls), so that
``torch.compile`` can fuse each predict/update into one loop; timed against the eager
fast path (``liftpool.LiftDownPool2d``) and MaxPool2d, forward+backward with the
constraint loss, in one process (process CPU time, median of 7 interleaved rounds).
The shift formulation is checked against the layer (output and lifting loss) first.

    OMP_NUM_THREADS=1 python benchmarks/experiment_compiled_shift.py [N C H W] [--channels-last]
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

import liftpool

K = 5


def pu(x, w1, b1, w2, b2, dim):
    """tanh(w2 * relu(sum_k w1[:, k] * x_shifted_k + b1) + b2) along ``dim`` (-1 = W, -2 = H)."""
    n, p = x.shape[dim], K // 2
    if dim == -1:
        xp = F.pad(x, (p, p, 0, 0), mode="reflect")
        z = sum(w1[:, k].view(1, -1, 1, 1) * xp[..., k : k + n] for k in range(K))
    else:
        xp = F.pad(x, (0, 0, p, p), mode="reflect")
        z = sum(w1[:, k].view(1, -1, 1, 1) * xp[..., k : k + n, :] for k in range(K))
    r = torch.relu(z + b1.view(1, -1, 1, 1))
    return torch.tanh(w2.view(1, -1, 1, 1) * r + b2.view(1, -1, 1, 1))


def lift(x, P, U):
    """All-band LiftDownPool2d (shared P/U, even H and W) and its lifting loss."""
    xe, xo = x[..., ::2], x[..., 1::2]
    d = xo - pu(xe, *P, -1)
    s = xe + pu(d, *U, -1)
    cu, cp = (s - xo).pow(2).mean(), d.pow(2).mean()
    t = torch.cat([s, d], 0)  # both vertical steps at once
    e, o = t[..., ::2, :], t[..., 1::2, :]
    dd = o - pu(e, *P, -2)
    ss = e + pu(dd, *U, -2)
    cu = cu + 2 * (ss - o).pow(2).mean()  # sum over the two steps of per-step means
    cp = cp + 2 * dd.pow(2).mean()
    n = x.shape[0]
    return ss[:n] + dd[:n] + ss[n:] + dd[n:], 0.01 * cu + 0.1 * cp


def params(m):
    t = m.transforms[0]
    g = lambda L: (L.weight[:, 0, :], L.bias, L.pw_weight[:, 0], L.pw_bias)  # noqa: E731
    return g(t.P[0]), g(t.U[0])


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    N, C, H, W = (int(v) for v in args) if args else (32, 64, 56, 56)
    torch.manual_seed(0)
    m = liftpool.LiftDownPool2d(4, K).double().train()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    y, (y2, l2) = m(x), lift(x, *params(m))
    assert torch.allclose(y, y2, atol=1e-12) and torch.allclose(liftpool.lifting_loss(m), l2, atol=1e-12)
    print("shift formulation == LiftDownPool2d (float64): ok")

    m = liftpool.LiftDownPool2d(C, K).train()
    P, U = params(m)
    x = torch.randn(N, C, H, W)
    if "--channels-last" in sys.argv:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    mp = torch.nn.MaxPool2d(2)
    clift = torch.compile(lift)

    def f_max():
        mp(x).sum().backward()

    def f_mod():
        (m(x).sum() + liftpool.lifting_loss(m)).backward()

    def f_comp():
        y, loss = clift(x, P, U)
        (y.sum() + loss).backward()

    t0 = time.time()
    f_comp()
    print(f"compile + first call: {time.time() - t0:.1f} s")
    fs = {"MaxPool2d": f_max, "LiftDownPool2d (eager)": f_mod, "shift + torch.compile": f_comp}
    for f in fs.values():
        f()
    res: dict[str, list[float]] = {k: [] for k in fs}
    for _ in range(7):
        for k, f in fs.items():
            t = time.process_time()
            f()
            res[k].append(time.process_time() - t)
    base = statistics.median(res["MaxPool2d"])
    print(
        f"({N}, {C}, {H}, {W}) float32, forward+backward, torch {torch.__version__}, {torch.get_num_threads()} "
        "thread(s)"
    )
    for k, v in res.items():
        print(f"{k:24s} {statistics.median(v) * 1e3:8.1f} ms  {statistics.median(v) / base:5.2f}x MaxPool2d")


if __name__ == "__main__":
    main()
