"""The scripts in examples/ run, and what they print holds the properties they are there to show."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_unet_denoise_lift_pair_round_trips_exactly_and_trains(tmp_path):
    png = tmp_path / "denoise.png"
    r = _run("unet_denoise.py", "--updown", "lift", "max", "--steps", "3", "--size", "16", "--batch-size", "4",
             "--width", "4", "--plot", str(png))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in r.stdout
    rows = {m[0]: [float(v) for v in m[1:]] for m in re.findall(
        r"^\| (\w+) \| ([\d.e+-]+) \| ([\d.-]+) \| ([\d.-]+) \| ([\d.]+) \|$", r.stdout, flags=re.M)}  # fmt: skip
    assert set(rows) == {"lift", "max"}
    assert rows["lift"][0] < 1e-5  # LiftUpPool(LiftDownPool(x)) == x on an odd-sized map
    assert rows["max"][0] > 0.1  # MaxUnpool(MaxPool(x)) keeps a quarter of the values
    assert rows["lift"][2] == rows["max"][2]  # both are scored on the same noisy test pictures


def test_unet_denoise_network_takes_odd_sizes_and_the_details_of_its_own_layers():
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("unet_denoise", EXAMPLES / "unet_denoise.py")
    assert spec is not None and spec.loader is not None
    ud = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ud)

    net = ud.UpDownNet("lift", width=4)
    x = torch.rand(2, 1, 19, 22)
    assert net(x).shape == x.shape
    g = torch.Generator().manual_seed(0)
    p = ud.pictures(3, 24, g)
    assert p.shape == (3, 1, 24, 24) and float(p.min()) >= 0 and float(p.max()) <= 1
    assert ud.round_trip_error("lift", 9) < 1e-5


@pytest.mark.parametrize("pool", ["lift", "max"])
def test_train_cifar10_plain_loop_runs_with_the_constraint_loss(pool):
    r = _run("train_cifar10.py", "--fake", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--workers", "0",
             "--width", "4", "--pool", pool)  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = re.search(r"epoch 1: cross-entropy ([\d.]+), constraint loss ([\d.]+), test accuracy ([\d.]+) %", r.stdout)
    assert m is not None, r.stdout
    cons = float(m.group(2))
    assert (cons > 0) if pool == "lift" else (cons == 0)  # MaxPool has no constraint terms
    assert "objective: cross-entropy + constraint losses" in r.stdout


def test_train_cifar10_without_the_constraint_losses():
    """--no-constraints: the terms are still measured and printed, the objective is the cross-entropy alone."""
    r = _run("train_cifar10.py", "--fake", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--workers", "0",
             "--width", "4", "--no-constraints")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "objective: cross-entropy alone" in r.stdout
    m = re.search(r"epoch 1: cross-entropy ([\d.]+), constraint loss ([\d.]+)", r.stdout)
    assert m is not None and float(m.group(2)) > 0, r.stdout


def test_train_cifar10_refuses_bad_arguments():
    r = _run("train_cifar10.py", "--fake", "--epochs", "0")
    assert r.returncode == 2 and "--epochs" in r.stderr
    r = _run("train_cifar10.py", "--epochs", "1")
    assert r.returncode == 2 and "--data-dir" in r.stderr
