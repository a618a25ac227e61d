"""torchrun + DistributedDataParallel on CPU (gloo): 2 processes with global batch B reach the
same weights as 1 process with batch B (no BatchNorm, mean-reduced loss, equal per-rank
batches, per-sample seeded augmentation), with the LiftPool constraint loss on."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liftpool.cli import main
from liftpool.data import make_imagefolder
from liftpool.training import load_checkpoint
from liftpool.training.factory import build_model

pytest.importorskip("torch.distributed")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():  # pragma: no cover
    pytest.skip("gloo backend not available", allow_module_level=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one_process(tmp_path):
    data = make_imagefolder(tmp_path / "data", classes=3, per_class=8, val_per_class=3, size=16)
    common = [
        "--model",
        "vgg13_cifar",
        "--width",
        "0.0625",
        "--pool",
        "lift",
        "--model-kwargs",
        '{"batch_norm": false}',
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(data),
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "0.05",
        "--schedule",
        "multistep",
        "--milestones",
        "1",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--no-plot",
    ]
    assert main(["train", *common, "--out", str(tmp_path / "single")]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    env.pop("WORLD_SIZE", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "liftpool",
        "train",
        *common,
        "--out",
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert b["world_size"] == 2 and len(b["rng_states"]) == 2
    assert a["global_step"] == b["global_step"] == 6
    lift_params = [k for k in a["model_state"] if "transforms" in k]
    assert lift_params, "the LiftDownPool parameters must be trained (and compared)"
    for k, v in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][k], v, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    torch.manual_seed(0)  # the run seeds with --seed (0) right before building the model
    init = build_model(a["config"]["model"]).state_dict()
    for k in lift_params:
        assert (a["model_state"][k] - init[k]).abs().max() > 1e-4, f"{k} did not move: the comparison would be vacuous"
    ha, hb = a["history"], b["history"]
    for ra, rb in zip(ha, hb, strict=True):
        assert ra["val_acc"] == rb["val_acc"]  # counts summed over the two validation shards
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
        assert ra["train_lift_loss"] == pytest.approx(rb["train_lift_loss"], rel=1e-4)
        assert ra["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-4)
    assert ha[0]["train_lift_loss"] > 0


@pytest.mark.parametrize("rank,world", [(2, 2), (-1, 2), (0, 0)])
def test_setup_rejects_inconsistent_torchrun_environment(monkeypatch, rank, world):
    from liftpool.training.distributed import setup

    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="RANK"):
        setup("cpu")
