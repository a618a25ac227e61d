"""The pooling peers (SoftPool, LIP, APS, LPS and the APS-U / LPU up-sampling) beyond the contract
every pool keeps (tests/pooling/test_pool_contract.py): registration, the down/up pairs on odd and
tiny maps, autocast, the up layers' gradients, parameter counts by hand, state_dict round trip,
errors of the up layers, the models, convert, torch.compile (fullgraph) and ONNX export with
dynamic sizes."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import liftpool
from liftpool import models
from liftpool.pooling import POOLS, UPDOWN, available_pools, make_pool, make_updown
from liftpool.pooling.peers import (
    PEER_UPDOWN,
    PEERS,
    APSPool2d,
    APSUpPool2d,
    LIPPool2d,
    LPSPool2d,
    LPSUpPool2d,
    PolyphaseDetails2d,
    SoftPool2d,
    polyphase_components,
)
from liftpool.pooling.zoo import pool_parameter_count

CLASSES = {"softpool": SoftPool2d, "lip": LIPPool2d, "aps": APSPool2d, "lps": LPSPool2d}
UP_CLASSES = {"aps": APSUpPool2d, "lps": LPSUpPool2d}
SIZES = [(1, 1), (1, 5), (2, 2), (3, 2), (7, 7), (8, 6), (9, 12)]


def _out(y):
    return y[0] if isinstance(y, tuple) else y


def test_names_are_registered_to_their_classes():
    assert set(PEERS) == set(CLASSES) and set(PEERS) <= set(available_pools())
    for name, cls in CLASSES.items():
        assert POOLS[name] is cls and isinstance(make_pool(name, 3), cls)
    assert set(PEER_UPDOWN) == {"aps", "lps"} <= set(UPDOWN)
    assert models.SEGNET_POOLS == tuple(UPDOWN)
    for name, up_cls in UP_CLASSES.items():
        down, up = make_updown(name, 3)
        assert isinstance(down, CLASSES[name]) and down.return_details and isinstance(up, up_cls)


def test_lazy_names_of_the_package():
    import liftpool.pooling as lp
    from liftpool.pooling import peers, zoo

    assert lp.SoftPool2d is SoftPool2d and lp.LPSUpPool2d is LPSUpPool2d and lp.peers.PEERS == PEERS
    # the lazily re-exported names are exactly each module's public names, all reachable from the package
    assert set(lp._PEER_NAMES) == set(peers.__all__) and set(lp._ZOO_NAMES) == set(zoo.__all__)
    for name in (*peers.__all__, *zoo.__all__):
        assert name in lp.__all__ and getattr(lp, name) is getattr(peers if name in peers.__all__ else zoo, name)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", PEER_UPDOWN)
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_updown_restores_any_size(name, hw, train):
    down, up = make_updown(name, 3)
    down.train(train)
    x = torch.randn(2, 3, *hw)
    y, details = down(x)
    assert isinstance(details, PolyphaseDetails2d) and details.size == hw
    assert details.weights.shape == (2, 4) and details.phase.shape == (2,) and details.phase.dtype == torch.int64
    out = up(y, details)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("padding_mode", ["circular", "reflect", "replicate", "zeros"])
@pytest.mark.parametrize("name", ["aps", "lps"])
def test_every_padding_mode(name, padding_mode):
    down, up = make_updown(name, 2, padding_mode=padding_mode, kernel_size=3)
    for hw in [(1, 1), (2, 3), (5, 7)]:
        x = torch.randn(2, 2, *hw)
        y, det = down.eval()(x)
        assert up(y, det).shape == x.shape and torch.isfinite(y).all()


# --------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", PEERS)
def test_autocast(device, name, amp):
    torch.manual_seed(0)
    pool = make_pool(name, 4, device=device).eval()
    x = torch.randn(2, 4, 9, 8, device=device)
    ref = _out(pool(x))
    with torch.autocast(device.type, dtype=amp):
        y = pool(x)
    assert y.shape == ref.shape and torch.isfinite(y.float()).all()
    if name == "lps":  # the phase comes from a low-precision score: check the output is the recorded phase
        comps = polyphase_components(x)
        torch.testing.assert_close(y.float(), comps[torch.arange(2), :, pool.last_phase], atol=0.02, rtol=0.02)
    else:
        torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.05)
    # fp16 range: activations far above exp's float16 limit stay finite
    with torch.autocast(device.type, dtype=amp):
        assert torch.isfinite(_out(pool(x * 1e3)).float()).all()


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", PEER_UPDOWN)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gradcheck_up_layers(name, mode):
    torch.manual_seed(2)
    down, up = make_updown(name, 2, dtype=torch.float64)
    down.train(mode == "train")
    y, det = down(torch.randn(2, 2, 5, 7, dtype=torch.float64))
    y = y.detach().requires_grad_(True)
    w = det.weights.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda y, w: up(y, PolyphaseDetails2d(w, det.phase, det.size)), (y, w))


def test_lps_up_path_trains_the_scoring_network():
    down, up = make_updown("lps", 3)
    y, det = down.train()(torch.randn(2, 3, 6, 6))
    up(y.detach(), det).square().sum().backward()  # only through the selection weights
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in down.parameters())


# --------------------------------------------------------------------------- parameter counts
def test_parameter_counts_for_64_channels_by_hand():
    # lip: 3x3 conv 64->64 without bias + instance-norm affine; lps: h = 64 // 8 = 8, conv 64->8 and 8->8 with biases
    expected = {"softpool": 0, "lip": 9 * 64 * 64 + 2 * 64, "aps": 0, "lps": 9 * 64 * 8 + 8 + 9 * 8 * 8 + 8}
    assert {n: pool_parameter_count(n, 64) for n in expected} == expected == {
        "softpool": 0, "lip": 36992, "aps": 0, "lps": 5200}
    for name in PEER_UPDOWN:  # the up layers own no parameters (LPU uses the down layer's selection)
        _, up = make_updown(name, 64)
        assert sum(p.numel() for p in up.parameters()) == 0


# --------------------------------------------------------------------------- state
@pytest.mark.parametrize("name", PEERS)
def test_state_dict_round_trip(name):
    torch.manual_seed(0)
    a = make_pool(name, 4)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if name == "lps":
        a.tau.fill_(0.3)  # the annealed temperature is state
    b = make_pool(name, 4)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert set(a.state_dict()) == set(b.state_dict())
    assert "filt" not in a.state_dict()  # the blur filter is rebuilt from kernel_size
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(b.eval()(x), a.eval()(x))
    if name == "lps":
        assert float(b.tau) == pytest.approx(0.3)
        torch.manual_seed(3)
        ya = a.train()(x)
        torch.manual_seed(3)
        torch.testing.assert_close(b.train()(x), ya)


@pytest.mark.parametrize("name", ["aps", "lps"])
def test_last_phase_is_recorded_and_not_state(name):
    pool = make_pool(name, 2).eval()
    assert pool.last_phase is None
    pool(torch.randn(3, 2, 6, 6))
    assert pool.last_phase.shape == (3,) and pool.last_phase.dtype == torch.int64
    assert "last_phase" not in pool.state_dict() and copy.deepcopy(pool).last_phase is None


# --------------------------------------------------------------------------- errors
def test_up_layer_errors():
    down, up = make_updown("aps", 2)
    y, det = down(torch.randn(2, 2, 6, 7))
    with pytest.raises(TypeError, match="needs the paired APSPool2d"):
        APSUpPool2d(LPSPool2d(2))
    with pytest.raises(TypeError, match="needs the paired LPSPool2d"):
        LPSUpPool2d(down)
    with pytest.raises(TypeError, match="details must be a PolyphaseDetails2d"):
        up(y, (det.weights, det.phase, det.size))
    with pytest.raises(ValueError, match="details.weights has shape"):
        up(y[:1], det)
    with pytest.raises(ValueError, match=r"expected ceil\(size/2\)"):
        up(y, det._replace(size=(9, 7)))
    with pytest.raises(ValueError, match="details.size must be"):
        up(y, det._replace(size=(6,)))
    with pytest.raises(ValueError, match="channels=2"):
        up(torch.randn(2, 3, 3, 4), det)
    with pytest.raises(TypeError, match="unknown keyword argument 'hidden'"):
        make_updown("aps", 2, hidden=3)


# --------------------------------------------------------------------------- models, convert, CLI
@pytest.mark.parametrize("pool", PEERS)
@pytest.mark.parametrize("model_name,extra", [("vgg13_cifar", {}), ("resnet18", {"strided_conv": True})],
                         ids=["vgg13_cifar", "resnet18-strided"])
def test_peer_trains_one_step_in_a_network(pool, model_name, extra):
    torch.manual_seed(0)
    net = models.create_model(model_name, pool=pool, num_classes=5, width=0.25, **extra)
    layers = [m for m in net.modules() if isinstance(m, POOLS[pool])]
    assert layers
    x, target = torch.randn(4, 3, 32, 32), torch.tensor([1, 3, 0, 4])
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    loss = F.cross_entropy(net(x), target)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    own = {id(p) for layer in layers for p in layer.parameters()}
    changed = [k for k, v in net.named_parameters() if not torch.equal(v, before[k])]
    assert changed
    if own:
        assert any(id(p) in own for k, p in net.named_parameters() if k in changed)
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.isfinite(a).all() and torch.equal(a, b)


@pytest.mark.parametrize("pool", PEER_UPDOWN)
def test_segnet_takes_the_polyphase_pairs(pool):
    torch.manual_seed(0)
    net = models.create_model("segnet", pool=pool, num_classes=3, width=0.0625)
    assert sum(isinstance(m, UP_CLASSES[pool]) for m in net.modules()) == 5
    x = torch.randn(2, 3, 23, 17)
    out = net.train()(x)
    assert out.shape == (2, 3, 23, 17)
    F.cross_entropy(out, torch.randint(0, 3, (2, 23, 17))).backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    net.eval()
    with torch.no_grad():
        a = net(x)
        state = copy.deepcopy(net.state_dict())
        other = models.create_model("segnet", pool=pool, num_classes=3, width=0.0625)
        other.load_state_dict(state)
        torch.testing.assert_close(other.eval()(x), a)


@pytest.mark.parametrize("pool", PEERS)
def test_convert_replaces_pools_and_strided_convs(pool):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    x = torch.randn(2, 3, 15, 16)
    shape = net(x).shape
    out, report = liftpool.convert(net, pool=pool, strided_conv=True, example_input=x, return_report=True)
    assert sum(isinstance(m, POOLS[pool]) for m in out.modules()) == 2
    assert out.eval()(x).shape == shape


# --------------------------------------------------------------------------- compile and export
class _Peers(nn.Module):
    """Every peer, and both down/up pairs, on one input."""

    def __init__(self, c: int = 4, only: tuple[str, ...] = ("softpool", "lip", "aps", "lps")) -> None:
        super().__init__()
        self.pools = nn.ModuleDict(
            {n: make_pool(n, c, zero_init=False) if n == "lip" else make_pool(n, c) for n in only if n in PEERS}
        )
        self.pairs = nn.ModuleDict({n: nn.ModuleList(make_updown(n, c)) for n in only if n in PEER_UPDOWN})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = [p(x) for p in self.pools.values()]
        for down, up in self.pairs.values():
            y, det = down(x)
            outs.append(up(torch.tanh(y), det))
        return tuple(outs)


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return sum((o * o.detach().sign()).mean() + o.square().mean() for o in model(x))


def _check_compiled(model: nn.Module, shapes: list[tuple[int, int, int, int]]) -> None:
    compiled = torch.compile(_loss, fullgraph=True, dynamic=True)
    params = list(model.parameters())
    for shape in shapes:
        x = torch.randn(shape, requires_grad=True)
        le = _loss(model, x)
        ge = torch.autograd.grad(le, [x, *params], allow_unused=True)
        lc = compiled(model, x)
        gc = torch.autograd.grad(lc, [x, *params], allow_unused=True)
        torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5, msg=lambda m, s=shape: f"{s}: {m}")
        for a, b in zip(gc, ge):
            if b is None:  # LPS's scoring network in evaluation (arg-max): no gradient
                assert a is None or not a.abs().any()
            else:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, s=shape: f"{s}: {m}")


def test_compile_fullgraph_matches_eager():
    """Inductor, fullgraph, dynamic sizes (one graph for odd and even maps): every peer and both
    pairs on one input, forward and gradients match eager (evaluation mode). ~5 min on 2 busy cores."""
    torch.manual_seed(0)
    _check_compiled(_Peers().eval(), [(2, 4, 8, 8), (3, 4, 7, 5)])


@pytest.mark.slow
def test_compile_fullgraph_tiny_maps():
    torch.manual_seed(0)
    _check_compiled(_Peers().eval(), [(2, 4, 1, 1), (1, 4, 2, 3), (2, 4, 3, 2)])


@pytest.mark.slow
def test_compile_fullgraph_lps_training_step():
    """LPS in training (Gumbel noise drawn in the compiled graph) trains through compile."""
    torch.manual_seed(0)
    model = _Peers(only=("lps",)).train()
    compiled = torch.compile(_loss, fullgraph=True)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    grads = torch.autograd.grad(compiled(model, x), [x, *model.parameters()])
    assert all(torch.isfinite(g).all() for g in grads) and grads[1].abs().sum() > 0


RUN_SIZES = [(3, 34, 30), (3, 33, 31), (1, 34, 31), (2, 33, 30), (2, 2, 2), (2, 1, 1), (1, 2, 3), (2, 5, 8)]


@pytest.mark.parametrize(("dynamo", "opset"), [pytest.param(False, 17, id="legacy-17"),
                                               pytest.param(True, 18, id="dynamo-18", marks=pytest.mark.slow)])
def test_onnx_export_any_size(tmp_path: Path, dynamo: bool, opset: int):
    """Every peer and both pairs in evaluation, exported once from a 33x30 example with dynamic N/H/W,
    match eager in onnxruntime on sizes of every parity and on 1x1 / 2x2 maps."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = _Peers().eval()
    path = tmp_path / "peers.onnx"
    names = [f"y{i}" for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 4, 33, 30),), str(path), input_names=["x"], output_names=names,
                          opset_version=opset, dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}}, dynamo=dynamo)
    onnx.checker.check_model(onnx.load(str(path)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, h, w in RUN_SIZES:
        x = torch.randn(n, 4, h, w)
        with torch.no_grad():
            refs = model(x)
        outs = sess.run(None, {"x": x.numpy()})
        for out, ref, name in zip(outs, refs, names):
            assert out.shape == tuple(ref.shape), (name, n, h, w)
            np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"{name} {(n, h, w)}")
