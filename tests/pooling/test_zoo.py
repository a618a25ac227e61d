"""The zoo's registration, determinism in evaluation, parameter counts by hand and the batch-norm
estimators' batch rule (the contract shared with the peers: tests/pooling/test_pool_contract.py)."""

from __future__ import annotations

import pytest
import torch

from liftpool.pooling import POOLS, make_pool
from liftpool.pooling.zoo import (
    ZOO,
    DPPool2d,
    GatedPool2d,
    GaussianPool2d,
    GFGPool2d,
    MixedPool2d,
    S3Pool2d,
    SpectralPool2d,
    WaveletPool2d,
    pool_parameter_count,
)

CLASSES = {
    "gated": GatedPool2d, "mixed": MixedPool2d, "gauss": GaussianPool2d, "gfgp": GFGPool2d,
    "spectral": SpectralPool2d, "wavelet": WaveletPool2d, "dpp": DPPool2d, "s3": S3Pool2d,
}


def test_every_zoo_name_is_registered_to_its_class():
    assert set(ZOO) == set(CLASSES)
    for name, cls in CLASSES.items():
        assert POOLS[name] is cls
        assert isinstance(make_pool(name, 3), cls)


@pytest.mark.parametrize("name", tuple(POOLS))
def test_every_registered_pool_is_deterministic_in_eval(name):
    pool = make_pool(name, 4).eval()
    x = torch.randn(2, 4, 11, 10)
    with torch.no_grad():
        a, b = pool(x), pool(x)
    a = a[0] if isinstance(a, tuple) else a
    b = b[0] if isinstance(b, tuple) else b
    assert torch.equal(a, b)


# --------------------------------------------------------------------------- parameter counts
def test_parameter_counts_for_64_channels_by_hand():
    # mixed: 1; gated: 2*2; gauss: h=32 -> 64*32 + 3*32 + 2*(32*64 + 3*64); gfgp: 2*64*32 + 3*32 + 3*64; dpp: 11*64
    expected = {"mixed": 1, "gated": 4, "gauss": 2048 + 96 + 2 * (2048 + 192), "gfgp": 4096 + 96 + 192,
                "spectral": 0, "wavelet": 0, "dpp": 704, "s3": 0, "max": 0, "avg": 0}
    assert {n: pool_parameter_count(n, 64) for n in expected} == expected


def test_parameter_count_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown pool 'nope'"):
        pool_parameter_count("nope", 4)
    with pytest.raises(TypeError, match="name must be a string"):
        pool_parameter_count(3, 4)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["gauss", "gfgp"])
def test_batch_norm_estimators_need_two_samples_in_training(name):
    pool = make_pool(name, 4).train()
    with pytest.raises(ValueError, match="batch of >= 2"):
        pool(torch.randn(1, 4, 6, 6))
    assert pool.eval()(torch.randn(1, 4, 6, 6)).shape == (1, 4, 3, 3)
