import pytest
import torch
from torch import nn

from liftpool.models import MODELS, SEGNET_POOLS, TASKS, available_models, create_model, task_of
from liftpool.pooling import UPDOWN


def test_names_and_tasks():
    assert set(available_models()) == {
        "vgg13_cifar", "resnet18", "resnet50", "mobilenet_v2", "segnet", "deeplabv3plus_resnet50"
    }
    assert TASKS == {k: v.task for k, v in MODELS.items()}
    assert task_of("vgg13_cifar") == "classification"
    assert task_of("resnet50") == "classification"
    assert task_of("segnet") == "segmentation"
    assert task_of("deeplabv3plus_resnet50") == "segmentation"
    assert SEGNET_POOLS == tuple(UPDOWN) == ("max", "maxblur", "lift", "aps", "lps")


def test_unknown_model_and_pool_errors():
    with pytest.raises(ValueError, match="unknown model 'vgg99'.*vgg13_cifar"):
        create_model("vgg99", num_classes=10)
    with pytest.raises(ValueError, match="unknown model"):
        task_of("nope")
    with pytest.raises(TypeError, match="model name must be a string"):
        create_model(3, num_classes=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown pool 'maxx'.*lift"):
        create_model("vgg13_cifar", pool="maxx", num_classes=10)
    with pytest.raises(ValueError, match="unknown pool 'avg'.*maxblur"):
        create_model("segnet", pool="avg", num_classes=10)
    for name in available_models():
        with pytest.raises(ValueError, match="num_classes must be >= 1"):
            create_model(name, num_classes=0, width=0.0625)
        with pytest.raises(TypeError, match="num_classes must be an int"):
            create_model(name, num_classes=2.0, width=0.0625)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="width must be"):
            create_model(name, num_classes=2, width=0)
    with pytest.raises(TypeError, match="pool_kwargs must be a mapping"):
        create_model("vgg13_cifar", num_classes=2, pool="lift", pool_kwargs=5)
    with pytest.raises(ValueError, match="init='match' only applies to pool='lift'"):
        create_model("resnet18", num_classes=2, pool="avg", init="match", width=0.0625)
    with pytest.raises(ValueError, match="pool_kwargs has no effect with pool='max'"):
        create_model("resnet18", num_classes=2, pool="max", pool_kwargs={"kernel_size": 3}, width=0.0625)


@pytest.mark.parametrize("name", ["vgg13_cifar", "resnet18", "segnet"])
def test_every_registered_pool_builds(name):
    """Any registered pool name (the zoo included) is accepted where the model takes down-pools."""
    from liftpool.pooling import available_pools

    pools = SEGNET_POOLS if name == "segnet" else available_pools()
    x = torch.randn(2, 3, 16, 16)
    for pool in pools:
        net = create_model(name, pool=pool, num_classes=3, width=0.0625).eval()
        with torch.no_grad():
            out = net(x)
        assert out.shape[:2] == (2, 3), pool
        assert torch.isfinite(out).all(), pool


def test_pool_kwargs_reach_every_pool_layer():
    from liftpool import LiftDownPool2d

    net = create_model("vgg13_cifar", pool="lift", num_classes=2, width=0.0625,
                       pool_kwargs={"kernel_size": 3, "bands": ("LL", "HH")})
    lifts = [m for m in net.modules() if isinstance(m, LiftDownPool2d)]
    assert len(lifts) == 5
    assert all(m.kernel_size == 3 and m.bands == ("LL", "HH") for m in lifts)
    assert isinstance(net, nn.Module)
