import pytest
import torch
from torch import nn

from liftpool import LiftDownPool2d
from liftpool.convert import PooledConv2d
from liftpool.models import DeepLabV3Plus, create_model
from liftpool.models.resnet import PostActPoolBottleneck

from models.model_utils import count, train_steps


@pytest.mark.parametrize("pool", ["max", "avg", "skip", "blur", "lift"])
def test_deeplab_trains_a_few_steps(pool):
    net = create_model("deeplabv3plus_resnet50", pool=pool, num_classes=3, width=0.0625)
    train_steps(net, "deeplabv3plus_resnet50", torch.randn(2, 3, 33, 31), 3, steps=2)


@pytest.mark.parametrize("size", [(16, 16), (33, 29), (47, 18)])
def test_deeplab_output_at_input_size(size):
    net = create_model("deeplabv3plus_resnet50", pool="lift", num_classes=5, width=0.0625).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, *size)).shape == (1, 5, *size)


def test_deeplab_structure():
    net = DeepLabV3Plus(21, pool="lift", width=1.0)
    b = net.backbone
    assert isinstance(b.maxpool, LiftDownPool2d) and b.maxpool.channels == 64
    # output stride 16: layer4 dilated (rate 2), not strided
    assert b.layer4[0].conv2.stride == (1, 1) and b.layer4[0].conv2.dilation == (1, 1)
    assert b.layer4[1].conv2.dilation == (2, 2)
    assert b.layer3[0].conv2.stride == (2, 2)
    rates = [m[0].dilation for m in net.aspp.convs[1:4]]
    assert rates == [(6, 6), (12, 12), (18, 18)]
    assert net.aspp.convs[0][0].in_channels == 2048 and net.aspp.project[0].out_channels == 256
    assert net.low_proj[0].in_channels == 256 and net.low_proj[0].out_channels == 48
    assert net.decoder[0].in_channels == 256 + 48
    assert net.classifier.out_channels == 21


def test_deeplab_feature_resolutions():
    """Low-level features at 1/4, ASPP input at 1/16 of the input."""
    net = create_model("deeplabv3plus_resnet50", pool="lift", num_classes=2, width=0.0625).eval()
    shapes = {}
    net.backbone.layer1.register_forward_hook(lambda m, i, o: shapes.__setitem__("low", o.shape[-2:]))
    net.aspp.register_forward_hook(lambda m, i, o: shapes.__setitem__("high", i[0].shape[-2:]))
    with torch.no_grad():
        net(torch.randn(1, 3, 64, 96))
    assert tuple(shapes["low"]) == (16, 24) and tuple(shapes["high"]) == (4, 6)


@pytest.mark.parametrize("position,n_pooled_convs", [("after_act", 2), ("after_conv", 4)])
def test_deeplab_strided_conv_option(position, n_pooled_convs):
    net = create_model("deeplabv3plus_resnet50", pool="lift", num_classes=2, width=0.0625, strided_conv=True,
                       pool_position=position)
    # layer2 and layer3 each have a strided 3x3 conv and a strided 1x1 shortcut; layer4 is dilated
    assert count(net, PooledConv2d) == n_pooled_convs  # after_act: only the shortcuts are PooledConv2d
    assert count(net, PostActPoolBottleneck) == (2 if position == "after_act" else 0)
    assert count(net, LiftDownPool2d) == 5
    assert [n for n, m in net.backbone.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)] == ["conv1"]
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 35, 30)).shape == (1, 2, 35, 30)
    assert count(create_model("deeplabv3plus_resnet50", pool="max", num_classes=2, width=0.0625), LiftDownPool2d) == 0
    assert isinstance(create_model("deeplabv3plus_resnet50", pool="max", num_classes=2, width=0.0625).backbone.maxpool,
                      nn.MaxPool2d)
