"""Every zoo pool works inside the paper's classification networks through ``pool=``:
one SGD step on a tiny batch trains, and the network is deterministic in eval."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from liftpool import models
from liftpool.pooling import POOLS
from liftpool.pooling.zoo import ZOO

CASES = [("vgg13_cifar", {}), ("resnet18", {}), ("resnet18", {"strided_conv": True})]


@pytest.mark.parametrize("pool", ZOO)
@pytest.mark.parametrize("model_name,extra", CASES, ids=["vgg13_cifar", "resnet18", "resnet18-strided"])
def test_zoo_pool_trains_one_step_and_is_deterministic_in_eval(pool, model_name, extra):
    torch.manual_seed(0)
    net = models.create_model(model_name, pool=pool, num_classes=5, width=0.25, **extra)
    layers = [m for m in net.modules() if isinstance(m, POOLS[pool])]
    assert layers, f"{model_name} built with pool={pool!r} contains no {POOLS[pool].__name__}"
    if extra.get("strided_conv"):
        assert len(layers) > 1  # the stem pool and the strided convolutions' pools

    x, target = torch.randn(4, 3, 32, 32), torch.tensor([1, 3, 0, 4])
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    logits = net(x)
    assert logits.shape == (4, 5)
    loss = F.cross_entropy(logits, target)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    pool_params = [
        (k, p) for k, p in net.named_parameters() if any(p is q for layer in layers for q in layer.parameters())
    ]
    for k, p in pool_params:
        assert p.grad is not None and torch.isfinite(p.grad).all(), k
    opt.step()
    changed = [k for k, v in net.named_parameters() if not torch.equal(v, before[k])]
    assert changed, "the SGD step changed no parameter"
    if pool_params:  # the pool's own parameters learn too (some entries may get ~0 gradient from a tiny-batch BN)
        assert any(k in changed for k, _ in pool_params)

    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.isfinite(a).all() and torch.equal(a, b)
