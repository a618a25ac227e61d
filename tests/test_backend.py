"""The kernel dispatch point: ``backend=`` on the layers, ``LIFTPOOL_BACKEND``, ``liftpool info``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
import torch

from liftpool import LiftDownPool1d, LiftDownPool2d, LiftDownPool3d, LiftUpPool2d, kernels
from liftpool.kernels import native

from helpers import rel_err

needs_native = pytest.mark.skipif(not native.available(), reason="native kernel could not be built here")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = os.path.abspath(src) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_backend_option_is_validated() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        LiftDownPool2d(4, backend="cuda")  # type: ignore[arg-type]
    assert "backend='eager'" in repr(LiftDownPool2d(4, backend="eager"))
    assert "backend" not in repr(LiftDownPool2d(4))


@needs_native
def test_auto_takes_native_for_learned_layers_and_eager_elsewhere() -> None:
    x = torch.randn(2, 4, 6, 6)
    assert kernels.selected(x, LiftDownPool2d(4).transforms, 2) == "native"
    assert kernels.selected(x, LiftDownPool2d(4).transforms, 2, "eager") == "eager"
    assert kernels.selected(x, LiftDownPool2d(4).transforms, 2, "literal") == "literal"
    assert kernels.selected(torch.randn(2, 4, 6), LiftDownPool1d(4).transforms, 1) == "native"
    assert kernels.selected(torch.randn(2, 4, 6, 6, 6), LiftDownPool3d(4).transforms, 3) == "native"
    # grouped lifters (groups != (C, C)) have no native kernel: eager
    assert kernels.selected(x, LiftDownPool2d(4, groups=(2, 4)).transforms, 2) == "eager"
    haar = LiftDownPool2d.from_wavelet("haar", 4)
    assert kernels.selected(x, haar.transforms, 2) == "literal"


@needs_native
@pytest.mark.parametrize("size", [(7, 5), (2, 9), (16, 16)])
def test_every_backend_computes_the_same_layer(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, *size, dtype=torch.float64, requires_grad=True)
    layers = {b: LiftDownPool2d(4, backend=b, dtype=torch.float64) for b in ("native", "eager", "literal")}
    for layer in layers.values():
        layer.load_state_dict(layers["native"].state_dict())
    outs = {}
    for b, layer in layers.items():
        y = layer(x)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum() + layer.lifting_loss()
        gx, gw = torch.autograd.grad(loss, (x, layer.transforms[0].P[0].weight))
        outs[b] = (y.detach(), gx, gw)
    for b in ("eager", "literal"):
        for a, r in zip(outs["native"], outs[b]):
            assert rel_err(a, r) <= 1e-12, b


@needs_native
def test_native_round_trip_with_lift_up_pool() -> None:
    x = torch.randn(2, 3, 11, 6, dtype=torch.float64)
    down = LiftDownPool2d(3, bands="LL", return_details=True, dtype=torch.float64)
    assert kernels.selected(x, down.transforms, 2) == "native"
    y, details = down(x)
    assert rel_err(LiftUpPool2d(down)(y, details), x) <= 1e-12


def test_native_request_that_cannot_run_falls_back_with_one_warning() -> None:
    layer = LiftDownPool2d(4, groups=2, backend="native")  # grouped P/U: no native kernel
    ref = LiftDownPool2d(4, groups=2, backend="eager")
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 6, 6)
    kernels._warned_native.clear()
    with pytest.warns(RuntimeWarning, match="falls back to the eager kernel"):
        y = layer(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer(x)  # the same reason warns once only
    assert torch.equal(y, ref(x))


def test_environment_variable_selects_the_default() -> None:
    code = (
        "import torch; from liftpool import LiftDownPool2d, kernels; "
        "print(kernels.DEFAULT_BACKEND, kernels.selected(torch.randn(1, 2, 4, 4), LiftDownPool2d(2).transforms, 2))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(LIFTPOOL_BACKEND="eager"), capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["eager", "eager"]
    bad = subprocess.run(
        [sys.executable, "-c", code], env=_env(LIFTPOOL_BACKEND="fast"), capture_output=True, text=True, check=True
    )
    assert "LIFTPOOL_BACKEND='fast' is not one of" in bad.stderr
    assert bad.stdout.split()[0] == "auto"


def test_info_command_reports_backend_and_build() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "liftpool.cli", "info", "--json", "--no-build"],
        env=_env(LIFTPOOL_BACKEND="eager"),
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(out.stdout)
    assert d["default_backend"] == "eager" and d["liftdownpool2d_cpu"] == "eager"
    assert d["torch"] == torch.__version__
    assert {"cxx_flags", "cache_root", "error"} <= set(d["native"])
