"""``liftpool train`` with its default recipe (SGD lr 0.1, momentum 0.9,
wd 5e-4, default init) trains every pool that ``--pool`` accepts, on a tiny real-image folder.

Before the per-pool default (``POOL_DEFAULTS``: the band mean for ``lift``) the plain band sum
of LiftDownPool made this recipe diverge (loss 40-190 within 40 iterations, docs/training.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liftpool.cli import main
from liftpool.layers import LiftDownPool2d
from liftpool.pooling import available_pools
from liftpool.training.checkpoint import load_model
from liftpool.training.config import TrainConfig, apply_pool_defaults, resolve_config
from liftpool.training.trainer import train


def _stripes_folder(root: Path, per_class: int = 16, val_per_class: int = 8, seed: int = 0) -> Path:
    """2 classes of 32x32 RGB PNGs: horizontal vs vertical stripes (random period, phase,
    colour) plus noise: real image files that a small CNN separates in a few steps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    for split, n in (("train", per_class), ("val", val_per_class)):
        for cls in (0, 1):
            d = root / split / f"class{cls}"
            d.mkdir(parents=True)
            for i in range(n):
                period = rng.integers(4, 9)
                phase = rng.uniform(0, 2 * np.pi)
                coord = yy if cls == 0 else xx
                wave = 0.5 + 0.5 * np.sin(2 * np.pi * coord / period + phase)
                colour = rng.uniform(0.3, 1.0, size=3)
                img = wave[..., None] * colour + rng.normal(0, 0.1, size=(32, 32, 3))
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def stripes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _stripes_folder(tmp_path_factory.mktemp("stripes"))


def _train_defaults(data: Path, out: Path, pool: str, *extra: str) -> dict:
    """``liftpool train`` with the CLI defaults except size knobs (tiny width, batch 16, 4 epochs)."""
    rc = main(
        [
            "train",
            "--model",
            "vgg13_cifar",
            "--width",
            "0.125",
            "--pool",
            pool,
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(data),
            "--batch-size",
            "16",
            "--epochs",
            "4",
            "--out",
            str(out),
            "--limit-val-batches",
            "0",
            "--no-progress",
            "--no-plot",
            "--num-workers",
            "0",
            *extra,
        ]
    )
    assert rc == 0, f"pool {pool}: liftpool train exited with {rc}"
    return json.loads((out / "summary.json").read_text())


def _assert_trains(summary: dict, pool: str, out: Path) -> None:
    import csv

    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    train = [float(r["train_loss"]) for r in rows]
    assert len(train) == 4 and all(math.isfinite(v) for v in train), (pool, train)
    # falls: the last epoch's mean training loss is below the first epoch's
    assert train[-1] < train[0], f"pool {pool}: training loss did not fall: {train}"
    # and never blows up (the plain-sum LiftDownPool reached 40-190 at lr 0.1; chance is ln 2 = 0.69)
    assert max(train) < 5.0, f"pool {pool}: training loss {train}"


@pytest.mark.parametrize("pool", available_pools())
def test_default_recipe_trains_every_pool(stripes: Path, tmp_path: Path, pool: str) -> None:
    """Every ``--pool`` name (all 14 together take ~20 s on 2 cores)."""
    summary = _train_defaults(stripes, tmp_path / pool, pool)
    _assert_trains(summary, pool, tmp_path / pool)


def test_lift_default_is_the_band_mean_and_is_stored(stripes: Path, tmp_path: Path) -> None:
    """The per-pool default is visible in the run's config, rebuilt from the checkpoint, and
    an explicit choice (the paper's plain sum) is kept."""
    cfg = resolve_config(
        {"model": "vgg13_cifar", "pool": "lift", "dataset": "imagefolder", "data_dir": "d", "out": "o"}
    )
    assert cfg.model_kwargs == {"pool_kwargs": {"scale": "mean"}}
    mine = resolve_config(
        {
            "model": "vgg13_cifar",
            "pool": "lift",
            "dataset": "imagefolder",
            "data_dir": "d",
            "out": "o",
            "model_kwargs": {"pool_kwargs": {"scale": 1.0, "kernel_size": 3}},
        }
    )
    assert mine.model_kwargs == {"pool_kwargs": {"scale": 1.0, "kernel_size": 3}}
    # other pools and plug-in models get nothing
    assert (
        resolve_config(
            {"model": "vgg13_cifar", "pool": "max", "dataset": "imagefolder", "data_dir": "d", "out": "o"}
        ).model_kwargs
        == {}
    )
    plug = apply_pool_defaults(TrainConfig(model="train_tiny_models:tiny_cnn", pool="lift"))
    assert plug.model_kwargs == {}
    # the Python API: a TrainConfig built by hand gets it too (train() applies it), the caller's object is kept
    mine_cfg = TrainConfig(
        model="vgg13_cifar",
        pool="lift",
        width=0.125,
        dataset="imagefolder",
        data_dir=str(stripes),
        out=str(tmp_path / "api"),
        batch_size=16,
        epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_workers=0,
        progress=False,
        plot=False,
    )
    summary = train(mine_cfg)
    assert summary["model"]["kwargs"]["pool_kwargs"] == {"scale": "mean"} and mine_cfg.model_kwargs == {}

    out = tmp_path / "r"
    main(
        [
            "train",
            "--model",
            "vgg13_cifar",
            "--width",
            "0.125",
            "--pool",
            "lift",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(stripes),
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--limit-train-batches",
            "1",
            "--limit-val-batches",
            "1",
            "--out",
            str(out),
            "--no-progress",
            "--no-plot",
            "--num-workers",
            "0",
        ]
    )
    model, _ = load_model(out / "checkpoints" / "last.pt")
    pools = [m for m in model.modules() if isinstance(m, LiftDownPool2d)]
    assert len(pools) == 5 and all(p.scale == 0.25 and p.bands == ("LL", "LH", "HL", "HH") for p in pools)


def test_scale_mean_is_one_over_the_pooled_bands() -> None:
    import torch

    assert LiftDownPool2d(4, scale="mean").scale == 0.25
    assert LiftDownPool2d(4, bands=("LL", "HH"), scale="mean").scale == 0.5
    assert LiftDownPool2d.from_wavelet("haar", 4, bands="LL", scale="mean").scale == 1.0
    # P = U = 0 and the band mean: exactly 2x2 average pooling
    layer = LiftDownPool2d(3, scale="mean", zero_init=True).eval()
    x = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(layer(x), torch.nn.functional.avg_pool2d(x, 2), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="scale"):
        LiftDownPool2d(4, scale="sum")  # type: ignore[arg-type]
