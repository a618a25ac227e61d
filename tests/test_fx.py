"""torch.fx on models holding LiftPool layers: ``symbolic_trace``, torchvision's
``create_feature_extractor`` (train and eval nodes) and timm's ``features_only`` with
``aa_layer=LiftDownPool2d``.

Every LiftDownPool/LiftUpPool layer is an FX leaf (one ``call_module`` node that runs the layer
itself), so the traced module computes exactly what the model does, with whichever kernel the
layer picks; the features equal the model's own.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from liftpool import (
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
    lifting_loss,
)

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}


class EncoderDecoder(nn.Module):
    """conv -> LiftDownPool (details) -> conv -> LiftDownPool -> LiftUpPool (the first pool's details) -> head."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.stem = CONV[dims](3, 4, 3, padding=1)
        self.pool = DOWN[dims](4, return_details=True)
        self.mid = CONV[dims](4, 4, 3, padding=1)
        self.pool2 = DOWN[dims](4, share_weights=False, bands=("L" * dims,))
        self.unpool = UP[dims](self.pool)
        self.head = CONV[dims](4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, det = self.pool(self.stem(x))
        y = self.mid(y)
        small = self.pool2(y)
        return self.head(self.unpool(y, det)), small


def _input(dims: int) -> torch.Tensor:
    return torch.randn((2, 3, *(9, 8, 7)[:dims]), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_symbolic_trace_every_layer(dims: int) -> None:
    """The layers are single call_module nodes; the GraphModule equals the model, train and eval."""
    torch.manual_seed(0)
    model = EncoderDecoder(dims)
    gm = torch.fx.symbolic_trace(model)
    targets = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert {"pool", "pool2", "unpool"} <= targets
    x = _input(dims)
    for mode in (True, False):
        model.train(mode)
        gm.train(mode)
        with torch.no_grad():
            ref, got = model(x), gm(x)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    # training through the traced module: the layers record their constraint terms as usual
    gm.train()
    out, small = gm(x)
    (out.sum() + small.sum() + lifting_loss(gm)).backward()
    assert model.pool.transforms[0].P[0].weight.grad is not None


def test_symbolic_trace_of_the_layer_itself_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="cannot be the root of an FX trace"):
        torch.fx.symbolic_trace(LiftDownPool2d(4))


def test_create_feature_extractor_train_and_eval() -> None:
    """torchvision's FX feature extraction on a model with every 2D LiftPool layer, train and eval nodes."""
    feature_extraction = pytest.importorskip("torchvision.models.feature_extraction")
    torch.manual_seed(0)
    model = EncoderDecoder(2)
    train_nodes, eval_nodes = feature_extraction.get_graph_node_names(model)
    assert "pool" in train_nodes and "unpool" in eval_nodes
    nodes = {"pool": "pooled", "pool2": "small", "unpool": "up", "head": "head"}
    extractor = feature_extraction.create_feature_extractor(model, train_return_nodes=nodes, eval_return_nodes=nodes)
    x = _input(2)
    for mode in (True, False):
        model.train(mode)
        extractor.train(mode)
        with torch.no_grad():
            feats = extractor(x)
            y, det = model.pool(model.stem(x))
            small = model.pool2(model.mid(y))
            up = model.unpool(model.mid(y), det)
        torch.testing.assert_close(feats["pooled"][0], y, rtol=0, atol=0)
        torch.testing.assert_close(feats["small"], small, rtol=0, atol=0)
        torch.testing.assert_close(feats["up"], up, rtol=0, atol=0)
        torch.testing.assert_close(feats["head"], model.head(up), rtol=0, atol=0)


def test_create_feature_extractor_converted_resnet() -> None:
    """A torchvision resnet18 whose stride-2 poolings are LiftDownPool2d: FX features equal eager features."""
    models = pytest.importorskip("torchvision.models")
    feature_extraction = pytest.importorskip("torchvision.models.feature_extraction")
    torch.manual_seed(0)
    net = models.resnet18(num_classes=10)
    net.maxpool = LiftDownPool2d(64)
    net.eval()
    extractor = feature_extraction.create_feature_extractor(net, return_nodes={"maxpool": "p", "layer1": "l1"})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = extractor(x)
        p = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        torch.testing.assert_close(feats["p"], p, rtol=0, atol=0)
        torch.testing.assert_close(feats["l1"], net.layer1(p), rtol=0, atol=0)


def test_timm_features_only_with_liftpool_aa_layer() -> None:
    """timm ``features_only=True`` with ``aa_layer=LiftDownPool2d`` (anti-aliased resnet18), through timm's FX
    feature extractor (``feature_cls="fx"``) and its default one: the same features, train and eval."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    fx_net: Any = timm.create_model("resnet18", features_only=True, feature_cls="fx", aa_layer=LiftDownPool2d)
    ref: Any = timm.create_model("resnet18", features_only=True, aa_layer=LiftDownPool2d)
    assert any(isinstance(m, LiftDownPool2d) for m in fx_net.modules())
    ref.load_state_dict({k.removeprefix("graph_module."): v for k, v in fx_net.state_dict().items()})
    x = torch.randn(2, 3, 64, 64)
    for mode in (False, True):
        fx_net.train(mode)
        ref.train(mode)
        with torch.no_grad():
            feats, ref_feats = fx_net(x), ref(x)
        assert len(feats) == len(ref_feats) == 5
        for a, b in zip(feats, ref_feats):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
