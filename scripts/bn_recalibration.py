"""Is a checkpoint's test error held up by stale BatchNorm statistics?

Evaluates a classification checkpoint written by ``liftpool train`` twice on the test split of an
ImageFolder dataset: with the BatchNorm running statistics it was saved with, and with statistics
recomputed from training images (``torch.optim.swa_utils.update_bn``: a cumulative average over
``--train-images`` images in train mode, no gradient, no augmentation). A large drop means the
running averages lag behind the weights (typical in the middle of training at a high learning
rate), not that the network has not learnt.

    python scripts/bn_recalibration.py --checkpoint RUN/checkpoints/last.pt --data-dir DATA
    # DATA holds train/<class>/*.jpg and test/<class>/*.jpg (the xl study's results/xl/data/cifar10-all-all)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset


def _loader(root: Path, n: int | None, mean: list[float], std: list[float], batch: int, seed: int) -> DataLoader:
    import torchvision
    import torchvision.transforms as T

    ds = torchvision.datasets.ImageFolder(str(root), T.Compose([T.ToTensor(), T.Normalize(mean, std)]))
    if n is not None and n < len(ds):
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        return DataLoader(Subset(ds, idx), batch_size=batch)
    return DataLoader(ds, batch_size=batch)


@torch.no_grad()
def top1_error(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 error (%) of ``model`` in eval mode over ``loader``."""
    model.eval()
    wrong = total = 0
    for x, y in loader:
        wrong += int((model(x).argmax(1) != y).sum())
        total += len(y)
    return 100.0 * wrong / max(total, 1)


def recalibrate_batchnorm(model: nn.Module, loader: DataLoader) -> None:
    """Replace every BatchNorm layer's running statistics by their cumulative average over ``loader``
    (train-mode forward passes without gradient; the earlier statistics play no part)."""
    torch.optim.swa_utils.update_bn(loader, model)
    model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="a checkpoint of your own liftpool train run (last.pt, best.pt, weights_fp16.pt)")
    p.add_argument("--data-dir", required=True, type=Path, help="folder with train/ and test/ ImageFolder splits")
    p.add_argument("--train-images", type=int, default=2000, help="training images for the statistics [2000]")
    p.add_argument("--test-images", type=int, default=None, help="evaluate on a seeded subset [all]")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    for name in ("train_images", "batch_size", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if a.test_images is not None and a.test_images < 1:
        p.error(f"--test-images must be >= 1, got {a.test_images}")
    for split in ("train", "test"):
        if not (a.data_dir / split).is_dir():
            p.error(f"--data-dir must hold a {split}/ folder of class folders, not found: {a.data_dir / split}")
    from liftpool.training.checkpoint import load_model

    torch.set_num_threads(a.threads)
    try:
        # a training checkpoint holds RNG states, which torch's restricted unpickler refuses: load your own runs only
        model, cfg = load_model(a.checkpoint, weights_only=False)
    except ValueError as e:
        p.error(str(e))
    model.float()
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        p.error(f"{a.checkpoint}: the model has no BatchNorm layer, nothing to recalibrate")
    mean, std = cfg["data"]["mean"], cfg["data"]["std"]
    test = _loader(a.data_dir / "test", a.test_images, mean, std, a.batch_size, a.seed)
    before = top1_error(model, test)
    train = _loader(a.data_dir / "train", a.train_images, mean, std, a.batch_size, a.seed)
    recalibrate_batchnorm(model, train)
    after = top1_error(model, test)
    n_test = len(test.dataset)  # type: ignore[arg-type]
    print(f"{a.checkpoint}: top-1 error on {n_test} test images: {before:.2f} % with the saved BatchNorm "
          f"statistics, {after:.2f} % with statistics recomputed on {len(train.dataset)} training images "  # type: ignore[arg-type]
          f"({after - before:+.2f} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
