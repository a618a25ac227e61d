"""Direct calls of the public ``torch.ops.liftpool.*`` ops with unusual inputs: a clear error or the
eager kernel's result, never a signal.

* an empty batch (N = 0) behaves as the eager kernel (and the layers) do: empty outputs, constraint
  terms 0 (not 0/0 = NaN), zero parameter gradients, in every op and both 2D layouts;
* no channels (C = 0) is a clear error (a layer cannot hold C = 0);
* a tensor of an integer dtype among the inputs, parameters or incoming gradients is a clear error,
  and so is one on another device given to the C++ functions the ops and the layers call (here the
  ``meta`` device: no memory a CPU pointer could read; through ``torch.ops`` a meta call runs the
  ops' fake kernels and the ops are registered for CPU tensors only).

The calls run in a child process, so that a crash (a division by zero, a read through a pointer to
no memory) fails the test with the signal instead of killing the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from liftpool.kernels.native import _build

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built here"
)

_CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d
    from liftpool.kernels import eager, native

    assert native.available(), native.build_info()["error"]
    ops = torch.ops.liftpool
    ext = native.ops._ext()  # the C++ functions behind the ops (and the layers' eager autograd)
    results = {}

    def run(name, fn):
        try:
            out = fn()
        except Exception as exc:  # the message is what the test checks
            results[name] = {"error": type(exc).__name__, "message": str(exc).splitlines()[0]}
            return
        flat = [t.detach() for t in (out if isinstance(out, (list, tuple)) else [out])]
        results[name] = {
            "shapes": [list(t.shape) for t in flat],
            "finite": all(bool(torch.isfinite(t).all()) for t in flat),
            "sums": [float(t.double().abs().sum()) for t in flat],
        }

    layers = {1: LiftDownPool1d(3), 2: LiftDownPool2d(3), 3: LiftDownPool3d(3)}
    params = {d: [p.detach() for p in native._params(m.transforms)] for d, m in layers.items()}
    sizes = {1: (7,), 2: (5, 6), 3: (3, 4, 5)}
    half = {d: tuple((s + 1) // 2 for s in sz) for d, sz in sizes.items()}
    gc = torch.tensor([0.5, 0.25])

    for d in (1, 2, 3):
        p = params[d]
        lay = (0, 1, 2) if d == 2 else (None,)
        for layout in lay:
            extra = () if layout is None else (layout,)
            tag = f"{d}d" + ("" if layout is None else f"_layout{layout}")
            x0 = torch.randn(0, 3, *sizes[d])
            down = getattr(ops, f"down{d}d")
            down_b = getattr(ops, f"down{d}d_backward")
            up = getattr(ops, f"up{d}d")
            up_b = getattr(ops, f"up{d}d_backward")
            nb = 2 ** d
            run(f"empty_down_{tag}", lambda: down(x0, p, 0, 1, 1.0, True, True, *extra))
            g0 = torch.randn(0, 3, *half[d])
            det0 = torch.randn(nb - 1, 0, 3, *half[d]) if d > 1 else torch.randn(0, 3, *half[d])
            run(f"empty_down_backward_{tag}", lambda: down_b(x0, p, g0, det0, gc, 0, 1, 1.0, *extra))
            bands0 = [torch.randn(0, 3, *half[d]) for _ in range(nb)]
            run(f"empty_up_{tag}", lambda: up(bands0, p, *sizes[d], 0, *extra))
            run(f"empty_up_backward_{tag}", lambda: up_b(bands0, p, x0, 0, *extra))
        # eager reference of an empty batch: what the layers return for N = 0
        out, rest, cons = eager.fast_pool(torch.randn(0, 3, *sizes[d]), layers[d].transforms, d,
                                          layers[d].bands, 1.0, True, True)
        results[f"eager_empty_{d}d"] = {"shapes": [list(out.shape)], "cons": [float(cons[0]), float(cons[1])]}

        extra = (0,) if d == 2 else ()
        x = torch.randn(2, 3, *sizes[d])
        g = torch.randn(2, 3, *half[d])
        det = torch.randn(nb - 1, 2, 3, *half[d]) if d > 1 else torch.randn(2, 3, *half[d])
        bands = [torch.randn(2, 3, *half[d]) for _ in range(nb)]
        meta = lambda t: torch.empty_like(t, device="meta")
        down_e = getattr(ext, f"down{d}d_forward_list")
        down_be = getattr(ext, f"down{d}d_backward_list")
        up_e = getattr(ext, f"up{d}d_forward_list")
        up_be = getattr(ext, f"up{d}d_backward_list")
        # no channels
        pc0 = [torch.empty((0, *t.shape[1:])) for t in p]
        run(f"no_channels_down_{d}d", lambda: down(torch.randn(2, 0, *sizes[d]), pc0, 0, 1, 1.0, True, False, *extra))
        run(f"no_channels_up_{d}d", lambda: up([torch.randn(2, 0, *half[d])] * nb, pc0, *sizes[d], 0, *extra))
        # devices and dtypes of every tensor received
        run(f"meta_x_{d}d", lambda: down_e(meta(x), p, 0, 1, 1.0, True, False, *extra))
        run(f"meta_param_{d}d", lambda: down_e(x, [meta(p[0]), *p[1:]], 0, 1, 1.0, True, False, *extra))
        run(f"meta_grad_out_{d}d", lambda: down_be(x, p, meta(g), None, gc, 0, 1, 1.0, *extra))
        run(f"meta_grad_details_{d}d", lambda: down_be(x, p, g, meta(det), gc, 0, 1, 1.0, *extra))
        run(f"meta_grad_cons_{d}d", lambda: down_be(x, p, g, None, meta(gc), 0, 1, 1.0, *extra))
        run(f"meta_band_{d}d", lambda: up_e([*bands[:-1], meta(bands[-1])], p, *sizes[d], 0, *extra))
        run(f"meta_up_grad_{d}d", lambda: up_be(bands, p, meta(x), 0, *extra))
        run(f"int_x_{d}d", lambda: down(x.long(), p, 0, 1, 1.0, True, False, *extra))
        run(f"int_grad_out_{d}d", lambda: down_b(x, p, g.long(), None, gc, 0, 1, 1.0, *extra))
        run(f"int_grad_cons_{d}d", lambda: down_b(x, p, g, None, gc.long(), 0, 1, 1.0, *extra))
        run(f"int_up_grad_{d}d", lambda: up_b(bands, p, x.long(), 0, *extra))
    json.dump(results, sys.stdout)
    """
)


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"the op calls ended the process (code {proc.returncode}): {proc.stderr[-2000:]}"
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_empty_batch_as_eager(results: dict[str, Any], dims: int) -> None:
    """N = 0: empty outputs, zero constraint terms (the eager kernel's 0, not NaN), zero parameter grads."""
    ref = results[f"eager_empty_{dims}d"]
    assert ref["cons"] == [0.0, 0.0]
    tags = [f"{dims}d_layout{k}" for k in (0, 1, 2)] if dims == 2 else [f"{dims}d"]
    for tag in tags:
        for op in ("down", "down_backward", "up", "up_backward"):
            r = results[f"empty_{op}_{tag}"]
            assert "error" not in r, (op, tag, r)
            assert r["finite"] and all(s == 0.0 for s in r["sums"]), (op, tag, r)
        down = results[f"empty_down_{tag}"]
        assert down["shapes"][0] == ref["shapes"][0] and down["shapes"][2] == [2]
        assert results[f"empty_down_backward_{tag}"]["shapes"][0][0] == 0
        assert results[f"empty_up_{tag}"]["shapes"][0][0] == 0


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_no_channels_is_a_clear_error(results: dict[str, Any], dims: int) -> None:
    for op in ("down", "up"):
        r = results[f"no_channels_{op}_{dims}d"]
        assert r.get("error") == "RuntimeError" and "no channels" in r["message"], r


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("meta_x", "x must be a CPU tensor"),
        ("meta_param", "parameter tensor must be a CPU tensor"),
        ("int_x", "floating-point"),
        ("meta_grad_out", "grad_out must be a CPU tensor"),
        ("meta_grad_details", "grad_details must be a CPU tensor"),
        ("meta_grad_cons", "grad_cons must be a CPU tensor"),
        ("int_grad_out", "grad_out must be a floating-point tensor"),
        ("int_grad_cons", "grad_cons must be a floating-point tensor"),
        ("meta_band", "band"),
        ("meta_up_grad", "grad_x must be a CPU tensor"),
        ("int_up_grad", "grad_x must be a floating-point tensor"),
    ],
)
def test_device_and_dtype_of_every_tensor_checked(results: dict[str, Any], dims: int, case: str, words: str) -> None:
    r = results[f"{case}_{dims}d"]
    assert r.get("error") == "RuntimeError", r
    assert words in r["message"] and "liftpool native" in r["message"], r
