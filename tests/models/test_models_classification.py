import pytest
import torch
import torchvision
from torch import nn

from liftpool import LiftDownPool2d
from liftpool.convert import PooledConv2d
from liftpool.models import ScaledResNet, create_model
from liftpool.models.resnet import BasicBlock, Bottleneck, PostActPoolBasicBlock, PostActPoolBottleneck
from liftpool.pooling import POOLS

from models.model_utils import count, train_steps

CORE = ["max", "avg", "skip", "blur", "lift"]
TINY = {
    "vgg13_cifar": dict(width=0.0625),
    "resnet18": dict(width=0.0625),
    "resnet50": dict(width=0.0625),
    "mobilenet_v2": dict(width=0.125),
}


@pytest.mark.parametrize("pool", CORE)
@pytest.mark.parametrize("name", list(TINY))
def test_trains_a_few_steps(name, pool):
    net = create_model(name, pool=pool, num_classes=3, **TINY[name])
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    losses = train_steps(net, name, torch.randn(4, 3, 32, 32), 3, steps=3)
    after = net.state_dict()
    changed = [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert changed, "SGD changed no parameter"
    assert len(losses) == 3


@pytest.mark.parametrize("pool", ["max", "lift"])
def test_vgg13_overfits_one_batch(pool):
    """Loss on one fixed batch falls: the pooling passes useful gradients."""
    net = create_model("vgg13_cifar", pool=pool, num_classes=3, width=0.125)
    losses = train_steps(net, "vgg13_cifar", torch.randn(8, 3, 32, 32), 3, steps=8, lr=0.02)
    assert losses[-1] < 0.7 * losses[0], losses


def test_vgg13_structure():
    net = create_model("vgg13_cifar", pool="lift", num_classes=100, width=1.0)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    assert count(net, nn.BatchNorm2d) == 10
    assert [m.channels for m in net.modules() if isinstance(m, LiftDownPool2d)] == [64, 128, 256, 512, 512]
    assert net.classifier.in_features == 512 and net.classifier.out_features == 100
    # 32x32 -> 1x1 after five poolings
    feats = net.features(torch.randn(1, 3, 32, 32))
    assert feats.shape == (1, 512, 1, 1)
    nobn = create_model("vgg13_cifar", pool="max", num_classes=10, batch_norm=False, width=0.25)
    assert count(nobn, nn.BatchNorm2d) == 0
    assert count(nobn, POOLS["max"]) == 5
    # odd input sizes work (ceil pooling): 33 -> 17 -> 9 -> 5 -> 3 -> 2
    assert nobn.features(torch.randn(1, 3, 33, 33)).shape[-2:] == (2, 2)


@pytest.mark.parametrize(
    "block,layers,tv", [(BasicBlock, [2, 2, 2, 2], "resnet18"), (Bottleneck, [3, 4, 6, 3], "resnet50")]
)
def test_scaled_resnet_width1_is_torchvision(block, layers, tv):
    ours = ScaledResNet(block, layers, num_classes=1000).state_dict()
    ref = getattr(torchvision.models, tv)(weights=None).state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_resnet_pool_max_is_torchvision():
    net = create_model("resnet18", pool="max", num_classes=10)
    assert type(net.maxpool) is nn.MaxPool2d and net.maxpool.kernel_size == 3
    assert count(net, PooledConv2d) == 0


@pytest.mark.parametrize("position", ["after_act", "after_conv"])
@pytest.mark.parametrize("name,n_strided", [("resnet18", 6), ("resnet50", 6)])
def test_resnet_lift_placement(name, n_strided, position):
    net = create_model(name, pool="lift", num_classes=10, width=0.0625)
    assert isinstance(net.maxpool, LiftDownPool2d)
    assert count(net, LiftDownPool2d) == 1
    net = create_model(name, pool="lift", num_classes=10, width=0.0625, strided_conv=True, pool_position=position)
    assert count(net, LiftDownPool2d) == 1 + n_strided
    post = count(net, PostActPoolBasicBlock) + count(net, PostActPoolBottleneck)
    if position == "after_act":
        assert post == 3 and count(net, PooledConv2d) == 3  # the 3 shortcuts are pooled before their 1x1 conv
    else:
        assert post == 0 and count(net, PooledConv2d) == n_strided
    assert all(m.pool_first for m in net.modules() if isinstance(m, PooledConv2d) and m.kernel_size == (1, 1))
    assert net.conv1.stride == (2, 2)  # the stem convolution stays strided
    # every conv now has stride 1 except the stem
    assert [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)] == ["conv1"]
    x = torch.randn(2, 3, 37, 41)
    ref = create_model(name, pool="max", num_classes=10, width=0.0625)
    assert net(x).shape == ref(x).shape


def test_mobilenet_v2_lift_converts_strided_convs():
    net = create_model("mobilenet_v2", pool="lift", num_classes=10, width=0.25)
    assert count(net, PooledConv2d) == 0 and count(net, LiftDownPool2d) == 4
    # after_act: the pool follows BN + ReLU6 of each stride-2 depthwise unit; the stem stays strided
    for i in (2, 4, 7, 14):
        unit = net.features[i].conv[1]
        assert unit[0].stride == (1, 1) and isinstance(unit[2], nn.ReLU6) and isinstance(unit[3], LiftDownPool2d)
    assert net.features[0][0].stride == (2, 2)
    net = create_model("mobilenet_v2", pool="lift", num_classes=10, width=0.25, pool_position="after_conv")
    assert count(net, PooledConv2d) == 4 and count(net, LiftDownPool2d) == 4
    base = create_model("mobilenet_v2", pool="max", num_classes=10, width=0.25)
    assert count(base, PooledConv2d) == 0 and count(base, LiftDownPool2d) == 0
    off = create_model("mobilenet_v2", pool="lift", num_classes=10, width=0.25, strided_conv=False)
    assert count(off, LiftDownPool2d) == 0


def test_resnet_init_match_starts_as_average_pooling():
    net = create_model("resnet18", pool="lift", num_classes=10, width=0.0625, init="match").eval()
    x = torch.randn(2, net.maxpool.channels, 10, 9)
    expect = torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True)
    torch.testing.assert_close(net.maxpool(x), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_weights_load_into_lift_models(name):
    """width=1.0: torchvision's (pretrained) state_dict loads; only LiftPool parameters are missing."""
    ref = getattr(torchvision.models, name)(weights=None, num_classes=10)
    net = create_model(name, pool="lift", num_classes=10, strided_conv=True, init="match")
    missing, unexpected = net.load_state_dict(ref.state_dict(), strict=False)
    assert unexpected == []
    lift_keys = {f"{p}.{k}" for p, m in net.named_modules() if isinstance(m, LiftDownPool2d) for k in m.state_dict()}
    assert set(missing) == lift_keys and lift_keys
    net.eval()
    ref.eval()
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        assert net(x).shape == ref(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_post_activation_block_order(name):
    """Oracle written out by hand: conv(stride 1) -> BN -> ReLU -> pool -> rest of the block, shortcut pooled first."""
    net = create_model(name, pool="lift", num_classes=4, width=0.125, strided_conv=True).eval()
    block = net.layer2[0]
    x = torch.randn(2, block.conv1.in_channels, 9, 12)
    with torch.no_grad():
        relu = torch.relu
        if isinstance(block, PostActPoolBasicBlock):
            out = block.pool(relu(block.bn1(block.conv1(x))))
            out = block.bn2(block.conv2(out))
        else:
            out = relu(block.bn1(block.conv1(x)))
            out = block.pool(relu(block.bn2(block.conv2(out))))
            out = block.bn3(block.conv3(out))
        ds = block.downsample
        short = ds[1](torch.nn.functional.conv2d(ds[0].pool(x), ds[0].weight, ds[0].bias))
        expect = relu(out + short)
        torch.testing.assert_close(block(x), expect)
    assert block(x).shape[-2:] == (5, 6)


def test_pool_position_errors():
    with pytest.raises(ValueError, match="pool_position must be one of"):
        create_model("resnet18", pool="lift", num_classes=2, width=0.0625, strided_conv=True, pool_position="before")
