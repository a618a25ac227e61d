"""Why the plain band sum diverges under ``liftpool train``'s default SGD recipe.

VGG13-CIFAR width 0.25 (BN), SGD lr 0.1, momentum 0.9, wd 5e-4, batch 16 (the CLI defaults at
the batch size of the report), the same seed and batches for every variant: prints each pooling
stage's gain at initialisation (std(out) / std(in) on 64 real images), the logits' std, the
gradient norm of the classifier at step 0 and the cross-entropy every 4th of 40 steps.

    python scripts/lift_gain_probe.py --data-dir DATA/cifar10-jpeg --per-class 64
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="ImageFolder root with a train/ folder (e.g. CIFAR-10 JPEGs)")
    p.add_argument("--per-class", type=int, default=64, help="training images per class (the first N files)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()

    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    from liftpool import lifting_loss
    from liftpool.models import create_model

    torch.set_num_threads(1)
    ds = ImageFolder(
        f"{args.data_dir}/train",
        transform=T.Compose([T.ToTensor(), T.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))]),
    )
    keep: list[int] = []
    seen: dict[int, int] = {}
    for i, (_, c) in enumerate(ds.samples):
        if seen.get(c, 0) < args.per_class:
            keep.append(i)
            seen[c] = seen.get(c, 0) + 1
    order = torch.randperm(len(keep), generator=torch.Generator().manual_seed(0))
    X = torch.stack([ds[keep[int(i)]][0] for i in order])
    Y = torch.tensor([ds[keep[int(i)]][1] for i in order])
    B = args.batch_size

    def run(
        name: str, lr: float = 0.1, frozen: str | None = None, stage_scales: list[float] | None = None, **kw: Any
    ) -> None:
        torch.manual_seed(1)
        m = create_model("vgg13_cifar", num_classes=len(ds.classes), width=0.25, **kw).train()
        gains: list[float] = []
        pools = [
            mod for mod in m.features if not isinstance(mod, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU))
        ]
        for mod, sc in zip(pools, stage_scales or []):
            mod.scale = sc
        hooks = [
            mod.register_forward_hook(lambda mod, i, o: gains.append(round(float(o.std() / i[0].std()), 2)))
            for mod in pools
        ]
        with torch.no_grad():
            logits = m(X[:64])
        for h in hooks:
            h.remove()
        params = [q for n, q in m.named_parameters() if frozen is None or frozen not in n]
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
        losses, g0 = [], 0.0
        for i in range(args.steps):
            x, y = X[i * B : (i + 1) * B], Y[i * B : (i + 1) * B]
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            (loss + lifting_loss(m)).backward()
            if i == 0:
                g0 = float(m.classifier.weight.grad.norm())
            opt.step()
            losses.append(loss.item())
        print(
            f"| {name} | {gains} | {logits.std():.2f} | {g0:.1f} | {', '.join(f'{v:.2f}' for v in losses[::4])} |",
            flush=True,
        )

    print("| variant | gain per pooling stage at init | logit std | classifier grad norm, step 0 | CE every 4th step |")
    print("|---|---|---|---|---|")
    run("max", pool="max")
    run("avg", pool="avg")
    run("lift, plain sum (scale 1)", pool="lift", pool_kwargs={"scale": 1.0})
    run("lift, plain sum, P/U frozen", pool="lift", pool_kwargs={"scale": 1.0}, frozen="transforms")
    run("lift, plain sum, zero_init", pool="lift", pool_kwargs={"scale": 1.0, "zero_init": True})
    run("lift, plain sum, lr 0.025", lr=0.025, pool="lift", pool_kwargs={"scale": 1.0})
    run("lift, 1/4 on the last stage only", pool="lift", stage_scales=[1.0, 1.0, 1.0, 1.0, 0.25])
    run("lift, 1/4 on stages 1-4, plain sum on the last", pool="lift", stage_scales=[0.25, 0.25, 0.25, 0.25, 1.0])
    run("lift, band mean (scale 'mean' = 1/4)", pool="lift", pool_kwargs={"scale": "mean"})
    run(
        "lift, band mean + zero_init (= avg pool at init)",
        pool="lift",
        pool_kwargs={"scale": "mean", "zero_init": True},
    )


if __name__ == "__main__":
    main()
