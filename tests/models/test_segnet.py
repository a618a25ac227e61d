import pytest
import torch
from torch import nn

from liftpool import LiftDownPool2d, LiftUpPool2d
from liftpool.models import SegNet, create_model
from liftpool.pooling import MaxDownPool2d, MaxUpBlurPool2d, MaxUpPool2d

from models.model_utils import count, train_steps


@pytest.mark.parametrize("pool", ["max", "maxblur", "lift"])
def test_segnet_trains_a_few_steps(pool):
    net = create_model("segnet", pool=pool, num_classes=4, width=0.0625)
    losses = train_steps(net, "segnet", torch.randn(2, 3, 19, 13), 4, steps=3)
    assert len(losses) == 3


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (32, 32), (33, 17)])
@pytest.mark.parametrize("pool", ["max", "maxblur", "lift"])
def test_segnet_output_at_input_size(pool, size):
    net = create_model("segnet", pool=pool, num_classes=3, width=0.0625).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, *size))
    assert out.shape == (1, 3, *size)
    assert torch.isfinite(out).all()


def test_segnet_structure_vgg16_bn():
    net = SegNet(12, pool="lift", width=1.0)
    enc = [m.out_channels for e in net.encoders for m in e if isinstance(m, nn.Conv2d)]
    assert enc == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]  # VGG16's 13 convs
    assert sum(isinstance(m, nn.BatchNorm2d) for e in net.encoders for m in e) == 13
    assert net.classifier.out_channels == 12
    assert [d.channels for d in net.downs] == [64, 128, 256, 512, 512]


def test_segnet_lift_pairs_share_weights_and_keep_ll():
    net = create_model("segnet", pool="lift", num_classes=3, width=0.0625)
    assert count(net, LiftDownPool2d) == 5 and count(net, LiftUpPool2d) == 5
    for down, up in zip(net.downs, net.ups):
        assert up.down is down
        assert down.bands == ("LL",) and down.return_details
    # the up layers hold no parameters of their own: every parameter they reach is their down layer's
    for down, up in zip(net.downs, net.ups):
        assert {id(p) for p in up.parameters()} == {id(p) for p in down.parameters()} != set()


def test_segnet_max_variants():
    net = create_model("segnet", pool="max", num_classes=3, width=0.0625)
    assert all(type(u) is MaxUpPool2d for u in net.ups) and all(isinstance(d, MaxDownPool2d) for d in net.downs)
    net = create_model("segnet", pool="maxblur", num_classes=3, width=0.0625)
    assert all(isinstance(u, MaxUpBlurPool2d) for u in net.ups)


def test_segnet_lift_decoder_inverts_encoder_pooling():
    """Fed its own LL band, the decoder's LiftUpPool gives back the encoder feature map exactly."""
    net = create_model("segnet", pool="lift", num_classes=3, width=0.0625).eval().double()
    x = torch.randn(1, 3, 15, 22, dtype=torch.float64)
    feat = net.encoders[0](x)
    y, det = net.downs[0](feat)
    torch.testing.assert_close(net.ups[0](y, det), feat, rtol=0, atol=1e-10)
