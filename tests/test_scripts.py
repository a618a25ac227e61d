"""The analysis scripts under ``scripts/`` that the documentation quotes."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image

from liftpool.training.checkpoint import load_model, save_checkpoint
from liftpool.training.factory import build_model

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _folder(root: Path) -> Path:
    """train/ and test/ splits of 2 classes of 32x32 PNGs (dark vs bright noise)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        for cls in (0, 1):
            d = root / split / f"c{cls}"
            d.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(0.3 + 0.4 * cls, 0.2, size=(32, 32, 3)), 0, 1)
                Image.fromarray((img * 255).astype(np.uint8)).save(d / f"{i}.png")
    return root


def test_bn_recalibration_recomputes_the_statistics_from_scratch(tmp_path, capsys):
    """Two checkpoints with the same weights, one with garbage BatchNorm running statistics: the
    saved-statistics errors may differ, the recomputed-statistics errors are identical."""
    mod = _script("bn_recalibration")
    data = _folder(tmp_path / "data")
    spec = {"name": "vgg13_cifar", "pool": "lift", "num_classes": 2, "kwargs": {"width": 0.125}}
    torch.manual_seed(0)
    model = build_model(spec)
    config = {"model": spec, "data": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    save_checkpoint(tmp_path / "good.pt", model=model, config=config, epoch=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(50.0)
                m.running_var.fill_(1e-4)
    save_checkpoint(tmp_path / "stale.pt", model=model, config=config, epoch=0)
    after = []
    for name in ("good", "stale"):
        args = ["--checkpoint", str(tmp_path / f"{name}.pt"), "--data-dir", str(data), "--train-images", "16"]
        assert mod.main(args) == 0
        out = capsys.readouterr().out
        m = re.search(r"on 12 test images: ([\d.]+) % with the saved BatchNorm statistics, ([\d.]+) % with "
                      r"statistics recomputed on 16 training images \(([-+][\d.]+) points\)", out)  # fmt: skip
        assert m, out
        assert float(m.group(3)) == pytest.approx(float(m.group(2)) - float(m.group(1)), abs=0.011)
        after.append(m.group(2))
    assert after[0] == after[1]
    # the statistics themselves: the same after recalibration, whatever was saved
    stats = []
    for name in ("good", "stale"):
        model, _ = load_model(tmp_path / f"{name}.pt")
        mod.recalibrate_batchnorm(model, mod._loader(data / "train", 16, [0.5] * 3, [0.25] * 3, 8, 0))
        stats.append([t.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
                      for t in (m.running_mean, m.running_var)])  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(*stats))
    assert float(stats[1][0].max()) < 50.0 and not model.training


def test_bn_recalibration_argument_errors(tmp_path, capsys):
    mod = _script("bn_recalibration")
    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit):
        mod.main(["--checkpoint", str(tmp_path / "x.pt"), "--data-dir", str(tmp_path)])
    assert "must hold a test/ folder" in capsys.readouterr().err
    (tmp_path / "test").mkdir()
    with pytest.raises(SystemExit):
        mod.main(["--checkpoint", str(tmp_path / "x.pt"), "--data-dir", str(tmp_path), "--train-images", "0"])
    assert "--train-images must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mod.main(["--checkpoint", str(tmp_path / "x.pt"), "--data-dir", str(tmp_path)])
    assert "does not exist" in capsys.readouterr().err
