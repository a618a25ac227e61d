"""LiftDownPool in your own training loop: plain PyTorch, no liftpool training code.

A small VGG-style CIFAR network whose stride-2 pooling is ``LiftDownPool2d`` (or ``MaxPool2d`` for
comparison), trained with SGD on the cross-entropy plus the paper's constraint losses
(``liftpool.lifting_loss(model)``: the weighted c_u and c_p terms of every LiftDownPool layer, from
its last training-mode forward).  The two lines that matter are marked ``# <- LiftPool``.

Data: a folder in torchvision's ImageFolder layout, ``DIR/train/<class>/*.png|jpg`` and
``DIR/test/<class>/...`` (CIFAR-10 as image files, for example), or ``--fake`` for random
pictures (a smoke run; accuracy stays at chance):

    python examples/train_cifar10.py --data-dir DIR --epochs 10
    python examples/train_cifar10.py --data-dir DIR --pool max      # the same network with MaxPool2d
    python examples/train_cifar10.py --fake --epochs 1 --limit 512  # no data needed
    python examples/train_cifar10.py --data-dir DIR --no-constraints  # LiftDownPool without c_u, c_p

For the full recipe (augmentation presets, schedules, checkpoints and resume, DDP, evaluation of
shift consistency and corruptions) use ``liftpool train`` / ``liftpool eval`` instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from liftpool import LiftDownPool2d, lifting_loss


def pool(kind: str, channels: int) -> nn.Module:
    if kind == "lift":
        # <- LiftPool: kernel_size=5, all four sub-bands; "mean" divides their sum by 4, so the layer
        # starts with the gain of average pooling (the plain sum makes SGD at this learning rate
        # unstable: docs/design.md, "Pooled output and its scale")
        return LiftDownPool2d(channels, scale="mean")
    return nn.MaxPool2d(2)


def vgg_small(kind: str, num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """conv-bn-relu x 2, pool; three stages (32 -> 16 -> 8 -> 4 pixels), then a linear classifier."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in (width, 2 * width, 4 * width):
        for _ in range(2):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        layers.append(pool(kind, c))
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))


def datasets(args: argparse.Namespace) -> tuple[Dataset[object], Dataset[object], int]:
    from torchvision import datasets as tvd
    from torchvision import transforms as T

    norm = T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.ToTensor(), norm])
    if args.fake:
        n = args.limit or 1024
        return (tvd.FakeData(n, (3, 32, 32), 10, transform=train_tf, random_offset=0),
                tvd.FakeData(max(n // 4, 1), (3, 32, 32), 10, transform=test_tf, random_offset=n), 10)  # fmt: skip
    train = tvd.ImageFolder(f"{args.data_dir}/train", transform=train_tf)
    test = tvd.ImageFolder(f"{args.data_dir}/test", transform=test_tf)
    if train.classes != test.classes:
        raise SystemExit(f"{args.data_dir}: train/ and test/ have different class folders")
    if args.limit:
        g = torch.Generator().manual_seed(0)
        train = Subset(train, torch.randperm(len(train), generator=g)[: args.limit].tolist())
    return train, test, len(test.classes)


def evaluate(model: nn.Module, loader: DataLoader[object]) -> float:
    model.eval()
    right = total = 0
    with torch.no_grad():
        for x, y in loader:
            right += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return right / max(total, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="ImageFolder root with train/ and test/")
    src.add_argument("--fake", action="store_true", help="random pictures instead of a data folder")
    ap.add_argument("--pool", choices=("lift", "max"), default="lift")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--limit", type=int, default=0, help="use only this many training images (0 = all)")
    ap.add_argument("--workers", type=int, default=2, help="data-loading processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--constraints", action=argparse.BooleanOptionalAction, default=True,
                    help="add the constraint losses to the objective (measured and printed either way)")  # fmt: skip
    args = ap.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.width < 1 or args.limit < 0:
        ap.error("--epochs, --batch-size and --width must be positive, --limit not negative")

    torch.manual_seed(args.seed)
    train, test, num_classes = datasets(args)
    train_loader = DataLoader(train, args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True)
    test_loader = DataLoader(test, 256, num_workers=args.workers)
    model = vgg_small(args.pool, num_classes, args.width)
    steps = args.epochs * len(train_loader)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=max(steps, 1))
    objective = "cross-entropy + constraint losses" if args.constraints else "cross-entropy alone"
    print(f"{args.pool}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{len(train)} training / {len(test)} test images, {steps} steps; objective: {objective}")  # fmt: skip
    for epoch in range(1, args.epochs + 1):
        model.train()
        start, seen, ce_sum, cons_sum = time.perf_counter(), 0, 0.0, 0.0
        for x, y in train_loader:
            ce = nn.functional.cross_entropy(model(x), y)
            constraints = lifting_loss(model)  # <- LiftPool: 0.01 c_u + 0.1 c_p of every layer (0 for MaxPool)
            loss = ce + constraints if args.constraints else ce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += 1
            ce_sum += ce.item()
            cons_sum += constraints.item()
        acc = evaluate(model, test_loader)
        n = max(seen, 1)
        print(f"epoch {epoch}: cross-entropy {ce_sum / n:.3f}, constraint loss {cons_sum / n:.4f}, "
              f"test accuracy {100 * acc:.2f} % ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
