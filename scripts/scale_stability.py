"""Does the pooled output's scale matter for training? A short SGD probe on real images.

Trains VGG13-CIFAR (width 0.25, BN) from the same seed with MaxPool, LiftDownPool with the
paper's plain band sum (scale 1) and LiftDownPool with the band mean (scale 1/4) for a few
SGD steps (lr 0.05, momentum 0.9, wd 5e-4) on the same real CIFAR-10 batches, printing
the cross-entropy every third step.

    python scripts/scale_stability.py --data-dir /path/to/cifar10-jpeg --steps 25
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="ImageFolder root with a train/ folder (e.g. CIFAR-10 JPEGs)")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--width", type=float, default=0.25)
    args = p.parse_args()

    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from liftpool import lifting_loss
    from liftpool.models import create_model

    torch.manual_seed(0)
    ds = ImageFolder(
        f"{args.data_dir}/train",
        transform=T.Compose([T.ToTensor(), T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))]),
    )
    idx = torch.randperm(len(ds))[: args.batch_size * args.steps]
    X = torch.stack([ds[int(i)][0] for i in idx])
    Y = torch.tensor([ds[int(i)][1] for i in idx])
    settings = [("max", {"pool": "max"}), ("lift, plain sum (scale 1)", {"pool": "lift"}),
                ("lift, band mean (scale 1/4)", {"pool": "lift", "pool_kwargs": {"scale": 0.25}})]
    for name, kw in settings:
        torch.manual_seed(1)
        m = create_model("vgg13_cifar", num_classes=10, width=args.width, **kw).train()
        opt = torch.optim.SGD(m.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
        losses, t = [], time.time()
        for i in range(args.steps):
            x, y = X[i * args.batch_size:(i + 1) * args.batch_size], Y[i * args.batch_size:(i + 1) * args.batch_size]
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            (loss + lifting_loss(m)).backward()
            opt.step()
            losses.append(loss.item())
        print(
            f"{name:30s} CE every 3rd step: {[round(v, 2) for v in losses[::3]]} ({time.time() - t:.0f} s)", flush=True
        )


if __name__ == "__main__":
    main()
