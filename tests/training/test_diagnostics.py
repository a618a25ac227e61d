"""``liftpool train --diagnostics``: the recorded weight magnitudes, constraint terms and gradient
norms against independent recomputations on tiny models, the file a run writes, and resuming."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from liftpool.cli import main
from liftpool.data import make_imagefolder
from liftpool.layers import LiftDownPool2d, LiftDownPoolNd
from liftpool.losses import lifting_loss
from liftpool.models import create_model
from liftpool.pooling import make_pool
from liftpool.testing.reference import reference_of
from liftpool.training import load_checkpoint
from liftpool.training.config import TrainConfig, validate_config
from liftpool.training.diagnostics import PoolDiagnostics, default_every, lifter_magnitudes, pooling_layers

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the plug-in model module train_tiny_models
TINY = "train_tiny_models:tiny_cnn"


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        LiftDownPool2d(4, 3),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        make_pool("max", 4),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    ).double()


def _rms(t: torch.Tensor) -> float:
    return math.sqrt(float((t.detach().double() ** 2).sum()) / t.numel())


def test_step_record_matches_autograd_and_the_literal_layer():
    net = _net()
    x = torch.randn(5, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    diag = PoolDiagnostics(net, every=1)
    assert [n for n, _ in diag.layers] == ["2", "5"]
    diag.arm(7)
    loss = nn.functional.cross_entropy(net(x), y) + lifting_loss(net)
    loss.backward()
    rec = diag.record(step=7, epoch=0.5, loss=float(loss.detach()), lr=0.1)
    assert rec["step"] == 7 and set(rec["layers"]) == {"2", "5"}
    lift_grads = [p.grad.clone() for p in net[2].parameters()]

    # independent: the same network run layer by layer with retained intermediate gradients
    net.zero_grad()
    h1 = net[1](net[0](x))
    h1.retain_grad()
    p1 = net[2](h1)
    p1.retain_grad()
    h2 = net[4](net[3](p1))
    h2.retain_grad()
    p2 = net[5](h2)
    p2.retain_grad()
    loss2 = nn.functional.cross_entropy(net[7](net[6](p2)), y) + lifting_loss(net)
    loss2.backward()
    assert float(loss2.detach()) == pytest.approx(float(loss.detach()), rel=1e-12)
    lift, mx = rec["layers"]["2"], rec["layers"]["5"]
    assert lift["grad_output_norm"] == pytest.approx(float(p1.grad.norm()), rel=1e-9)
    assert lift["grad_input_norm"] == pytest.approx(float(h1.grad.norm()), rel=1e-9)
    assert mx["grad_output_norm"] == pytest.approx(float(p2.grad.norm()), rel=1e-9)
    assert mx["grad_input_norm"] == pytest.approx(float(h2.grad.norm()), rel=1e-9)
    assert mx["grad_param_norm"] is None and "weights" not in mx
    want = math.sqrt(sum(float((g**2).sum()) for g in lift_grads))
    assert lift["grad_param_norm"] == pytest.approx(want, rel=1e-9) and want > 0
    # weights: straight from the parameters
    P = net[2].transforms[0].P[0]
    U = net[2].transforms[0].U[0]
    assert lift["weights"]["P"]["w2"] == pytest.approx(_rms(P.pw_weight), rel=1e-12)
    assert lift["weights"]["U"]["w1"] == pytest.approx(_rms(U.weight), rel=1e-12)
    allp = torch.cat([t.detach().flatten() for t in (P.weight, P.bias, P.pw_weight, P.pw_bias)])
    assert lift["weights"]["P"]["norm"] == pytest.approx(float(allp.norm()), rel=1e-12)
    # constraint terms: the paper-literal layer on the same input
    ref = reference_of(net[2], share=True).train()
    ref(h1.detach())
    assert lift["c_u"] == pytest.approx(float(ref.constraints.c_u.detach()), rel=1e-9)
    assert lift["c_p"] == pytest.approx(float(ref.constraints.c_p.detach()), rel=1e-9)
    # probe: P applied to the even columns, relative to the odd ones
    xe, xo = h1.detach()[..., 0::2], h1.detach()[..., 1::2]
    p = P(xe, -1)
    assert lift["probe"]["p_rel"] == pytest.approx(_rms(p) / _rms(xo), rel=1e-9)
    assert lift["probe"]["u_rel"] == pytest.approx(_rms(U(xo - p, -1)) / _rms(xe), rel=1e-9)


def test_zero_init_layer_reads_as_zero_and_hooks_are_removed():
    layer = LiftDownPool2d(4, zero_init=True, scale="mean").double()
    net = nn.Sequential(nn.Conv2d(3, 4, 1), layer).double()
    diag = PoolDiagnostics(net, every=3)
    assert diag.due(0) and not diag.due(1) and diag.due(6)
    diag.arm(0)
    net(torch.randn(2, 3, 8, 8, dtype=torch.float64)).sum().backward()
    rec = diag.record(step=0, epoch=0.0, loss=0.0, lr=0.1, grad_scale=4.0)
    w = rec["layers"]["1"]["weights"]
    assert w["P"]["w2"] == 0.0 and w["P"]["b2"] == 0.0 and w["U"]["w2"] == 0.0
    assert rec["layers"]["1"]["probe"]["p_rel"] == 0.0
    assert not layer._forward_hooks  # record() disarms
    with pytest.raises(RuntimeError, match="without arm"):
        diag.record(step=1, epoch=0.0, loss=0.0, lr=0.1)


def test_grad_scale_divides_the_gradient_norms():
    net = _net()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    norms = []
    for scale in (1.0, 8.0):
        net.zero_grad()
        d = PoolDiagnostics(net)
        d.arm(0)
        (scale * net(x).sum()).backward()
        norms.append(d.record(step=0, epoch=0, loss=0, lr=0, grad_scale=scale)["layers"]["2"]["grad_output_norm"])
    assert norms[0] == pytest.approx(norms[1], rel=1e-12)


@pytest.mark.parametrize("pool", ["max", "avg", "skip", "maxblur", "gated", "mixed", "lift"])
def test_pooling_layers_finds_the_five_vgg_stages(pool):
    net = create_model("vgg13_cifar", pool=pool, num_classes=10, width=0.0625)
    layers = pooling_layers(net)
    assert len(layers) == 5
    assert all(isinstance(m, LiftDownPoolNd) for _, m in layers) == (pool == "lift")


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="every"):
        PoolDiagnostics(nn.Linear(2, 2), every=0)
    with pytest.raises(TypeError, match="model"):
        pooling_layers("net")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="diagnostics_every"):
        validate_config(TrainConfig(model="m", dataset="imagefolder", out="o", diagnostics_every=0))
    assert default_every(390) == 24 and default_every(3) == 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("imgs"), classes=3, per_class=8, val_per_class=2, size=16)


def _train(folder, out, *extra):
    argv = ["train", "--model", TINY, "--pool", "lift", "--dataset", "imagefolder", "--data-dir", str(folder),
            "--out", str(out), "--num-workers", "0", "--batch-size", "8", "--lr", "0.05", "--no-plot",
            "--no-progress", "--diagnostics", "--diagnostics-every", "1", *extra]  # fmt: skip
    assert main(argv) == 0


def test_train_writes_diagnostics_that_match_the_checkpoint_and_resume(folder, tmp_path):
    out = tmp_path / "run"
    _train(folder, out, "--epochs", "1")
    first = json.loads((out / "diagnostics.json").read_text())
    assert [r["step"] for r in first["records"]] == [0, 1, 2]  # 24 images / batch 8
    _train(folder, out, "--epochs", "2", "--resume")
    d = json.loads((out / "diagnostics.json").read_text())
    assert [r["step"] for r in d["records"]] == list(range(6))  # continued, nothing twice
    assert d["records"][:3] == first["records"]
    assert [e["epoch"] for e in d["epochs"]] == [1, 2]
    assert [x["name"] for x in d["layers"]] == ["3", "7"]  # tiny_cnn: conv, BN, ReLU, pool x 2
    # the epoch-2 snapshot is the weights of last.pt
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    sd = ckpt["model_state"]
    for name in ("3", "7"):
        w2 = sd[f"{name}.transforms.0.P.0.pw_weight"]
        assert d["epochs"][1]["layers"][name]["P"]["w2"] == pytest.approx(_rms(w2), rel=1e-9)
        b1 = sd[f"{name}.transforms.0.U.0.bias"]
        assert d["epochs"][1]["layers"][name]["U"]["b1"] == pytest.approx(_rms(b1), rel=1e-9)
    # every record's lifting loss is the lambda-weighted sum of its layers' constraint terms
    for r in d["records"]:
        terms = sum(0.01 * v["c_u"] + 0.1 * v["c_p"] for v in r["layers"].values())
        assert r["lift_loss"] == pytest.approx(terms, rel=1e-5)
        assert all(v["grad_output_norm"] > 0 for v in r["layers"].values())
    assert d["meta"]["constraints"] is True and d["meta"]["lambda_p"] == 0.1


def test_lifter_magnitudes_of_a_wavelet_layer_are_empty():
    assert lifter_magnitudes(LiftDownPool2d.from_wavelet("haar", 2)) == {}
