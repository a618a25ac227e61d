"""How close a converted network starts to the original, and where the pool should sit (``docs/networks.md``).

The studies behind the tables of ``docs/networks.md``: :func:`measure_init` (torchvision networks
converted with each ``init``), :func:`cifar_study` (convert a trained CIFAR ResNet18 and fine-tune)
and :func:`placement_study` (pool placement trained from scratch).  Command line:
``python -m liftpool.studies.conversion --help``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..convert import compare_outputs, convert
from ..io import atomic_save_figure, atomic_write_text
from ..layers import LiftDownPool2d

__all__ = [
    "FinetuneMeasurement",
    "InitMeasurement",
    "PlacementMeasurement",
    "cifar_study",
    "main",
    "measure_init",
    "placement_study",
    "random_images",
    "recalibrate_batchnorm",
]

# ---------------------------------------------------------------------------------------------
# Measuring how close a converted network starts to the original (python -m liftpool.studies.conversion)
# ---------------------------------------------------------------------------------------------


def random_images(n: int, size: int, *, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Tensor:
    """``n`` random ``3 x size x size`` images with a natural-image-like spectrum.

    The sum of Gaussian noise drawn at resolutions ``size/32, size/8, size/4, size`` and
    bilinearly up-sampled (weights 1, 1/2, 1/4, 1/8), standardised per image and channel like
    ImageNet-normalised input.

    Examples:
        >>> x = random_images(2, 32, generator=torch.Generator().manual_seed(0))
        >>> x.shape, round(float(x.std()), 2)
        (torch.Size([2, 3, 32, 32]), 1.0)
    """
    out = torch.zeros(n, 3, size, size, device=device)
    for div, wt in ((32, 1.0), (8, 0.5), (4, 0.25), (1, 0.125)):
        s = max(1, size // div)
        noise = torch.randn(n, 3, s, s, generator=generator).to(device)
        out += wt * F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
    out -= out.mean(dim=(2, 3), keepdim=True)
    return out / out.std(dim=(2, 3), keepdim=True).clamp_min(1e-12)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Tensor]) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from ``batches`` (no labels, no gradients).

    Resets the statistics, runs the batches in training mode with a cumulative average
    (``momentum=None``), then restores each module's momentum and the model's mode.  A cheap
    way to re-centre a converted pretrained network on its own data before fine-tuning.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    was_training = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n = 0
    for x in batches:
        model(x)
        n += 1
    if n == 0:
        raise ValueError("batches is empty: need at least one batch to recalibrate BatchNorm")
    for m, mom in saved:
        m.momentum = mom
    model.train(was_training)
    return model


class InitMeasurement(NamedTuple):
    """One row of :func:`measure_init`: network, setting, closeness of layers and logits."""

    model: str
    setting: str
    replaced: int
    layer_rel_l2: float
    rel_l2: float
    top1_agreement: float


@torch.no_grad()
def measure_init(
    name: str,
    model: nn.Module,
    calib: Sequence[Tensor],
    test: Tensor,
    settings: Mapping[str, Mapping[str, Any]],
) -> list[InitMeasurement]:
    """For each ``settings`` entry (``convert`` kwargs, plus ``recalibrate: True``), how close the converted net starts.

    ``model`` is put in eval mode after its BatchNorm statistics are estimated on ``calib``
    (standing in for a pretrained network whose statistics match its data).  ``layer_rel_l2``
    is the mean over replaced layers of ``||new(x) - old(x)|| / ||old(x)||`` on the inputs the
    original layer sees for ``test``; ``rel_l2`` / ``top1_agreement`` compare the logits.
    """
    recalibrate_batchnorm(model, calib).eval()
    rows = []
    for setting, kw in settings.items():
        kw = dict(kw)
        recal = bool(kw.pop("recalibrate", False))
        conv, report = convert(model, return_report=True, **kw)
        if recal:
            recalibrate_batchnorm(conv, calib)
        conv.eval()
        orig_mods = dict(model.named_modules())
        new_mods = dict(conv.named_modules())
        captured: dict[str, tuple[Tensor, Tensor]] = {}
        hooks = [
            orig_mods[r.path].register_forward_hook(
                lambda m, i, o, p=r.path, c=captured: c.__setitem__(p, (i[0], o)))
            for r in report.replaced
        ]
        try:
            model(test)
        finally:
            for h in hooks:
                h.remove()
        layer = [float((new_mods[p](i) - o).norm() / o.norm().clamp_min(1e-30)) for p, (i, o) in captured.items()]
        d = compare_outputs(model, conv, test)
        rows.append(InitMeasurement(name, setting, len(report.replaced),
                                    sum(layer) / len(layer) if layer else float("nan"), d.rel_l2, d.top1_agreement))
    return rows


_MEASURE_SETTINGS: dict[str, dict[str, Any]] = {
    "lift, init=paper": {"init": "paper"},
    "lift, init=match": {"init": "match"},
    "lift, init=match + BN recal.": {"init": "match", "recalibrate": True},
    "avg (reference)": {"pool": "avg"},
    "blur (reference)": {"pool": "blur"},
}


def _load_imagefolder(root: str, per_class: int, offset: int = 0) -> tuple[Tensor, Tensor]:
    """``per_class`` images of each class folder of ``root`` as uint8 ``(N, 3, H, W)`` and labels."""
    import os

    import numpy as np
    from PIL import Image

    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise ValueError(f"no class folders under {root!r}")
    xs, ys = [], []
    for label, c in enumerate(classes):
        files = sorted(os.listdir(os.path.join(root, c)))[offset:offset + per_class]
        for f in files:
            with Image.open(os.path.join(root, c, f)) as im:
                xs.append(np.asarray(im.convert("RGB")))
            ys.append(label)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(ys)


class FinetuneMeasurement(NamedTuple):
    """One row of :func:`cifar_study`: a setting, its accuracy before/after a short fine-tune."""

    setting: str
    replaced: int
    rel_l2: float
    top1_agreement: float
    acc_start: float
    acc_finetuned: float


class _CifarBench:
    """CIFAR-10 subset in memory, a fixed-seed SGD loop (flip augmentation, one-cycle lr) and test accuracy."""

    def __init__(self, root: str, per_class: int, test_per_class: int, batch: int, seed: int) -> None:
        import os

        self.xtr, self.ytr = _load_imagefolder(os.path.join(root, "train"), per_class)
        self.xte, self.yte = _load_imagefolder(os.path.join(root, "test"), test_per_class)
        self.mean = self.xtr.float().mean(dim=(0, 2, 3), keepdim=True)
        self.std = self.xtr.float().std(dim=(0, 2, 3), keepdim=True)
        self.batch, self.seed = batch, seed

    def norm(self, x: Tensor) -> Tensor:
        return (x.float() - self.mean) / self.std

    def _batches(self, n_epochs: int, g: torch.Generator) -> Iterable[tuple[Tensor, Tensor]]:
        for _ in range(n_epochs):
            perm = torch.randperm(len(self.xtr), generator=g)
            for i in range(0, len(perm) - self.batch + 1, self.batch):
                idx = perm[i:i + self.batch]
                x = self.norm(self.xtr[idx])
                flip = torch.rand(len(idx), generator=g) < 0.5
                x[flip] = x[flip].flip(-1)
                yield x, self.ytr[idx]

    def fit(self, net: nn.Module, n_epochs: int, lr: float, desc: str, seed: int | None = None) -> None:
        from tqdm import tqdm

        from ..losses import lifting_loss

        steps = n_epochs * (len(self.xtr) // self.batch)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15)
        net.train()
        g = torch.Generator().manual_seed((self.seed if seed is None else seed) + 1)
        for x, y in tqdm(self._batches(n_epochs, g), total=steps, desc=desc, leave=False):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y) + lifting_loss(net)
            loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward is untyped in torch's stubs
            opt.step()
            sched.step()

    @torch.no_grad()
    def accuracy(self, net: nn.Module) -> float:
        net.eval()
        xte, yte = self.xte, self.yte
        correct = sum(int((net(self.norm(xte[i:i + 500])).argmax(1) == yte[i:i + 500]).sum())
                      for i in range(0, len(xte), 500))
        return correct / len(xte)


class PlacementMeasurement(NamedTuple):
    """One row of :func:`placement_study`: a ResNet18 variant trained from scratch, per-seed test accuracies."""

    setting: str
    lift_layers: int
    accuracies: tuple[float, ...]


def placement_study(
    root: str, *, width: float = 0.5, per_class: int = 1000, test_per_class: int = 200, epochs: int = 6,
    batch: int = 128, seeds: Sequence[int] = (0, 1), settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[PlacementMeasurement]:
    """Train ResNet18 variants from scratch on a CIFAR-10 subset: where should the pool of a strided conv go?

    Default settings: max pooling (torchvision), and LiftDownPool2d in the stem and in every
    strided convolution, placed ``after_conv`` (conv -> lift -> BN -> ReLU, what
    :func:`convert` does) or ``after_act`` (conv -> BN -> ReLU -> lift, antialiased-cnns/timm).
    """
    from ..models import create_model

    bench = _CifarBench(root, per_class, test_per_class, batch, seeds[0])
    settings = settings if settings is not None else {
        "max (torchvision)": {"pool": "max"},
        "lift, strided convs after_conv": {"pool": "lift", "strided_conv": True, "pool_position": "after_conv"},
        "lift, strided convs after_act": {"pool": "lift", "strided_conv": True, "pool_position": "after_act"},
    }
    rows = []
    for name, kw in settings.items():
        accs = []
        for seed in seeds:
            torch.manual_seed(seed)
            net = create_model("resnet18", num_classes=10, width=width, **kw)
            bench.fit(net, epochs, 0.1, f"{name} (seed {seed})", seed=seed)
            accs.append(bench.accuracy(net))
        rows.append(PlacementMeasurement(name, sum(isinstance(m, LiftDownPool2d) for m in net.modules()), tuple(accs)))
    return rows


def cifar_study(
    root: str, *, width: float = 0.5, per_class: int = 1000, test_per_class: int = 200, epochs: int = 6,
    finetune_epochs: int = 1, batch: int = 128, seed: int = 0, settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[float, list[FinetuneMeasurement]]:
    """Train a small torchvision-layout ResNet18 (max pooling) on CIFAR-10, convert it, fine-tune briefly.

    ``root`` is a CIFAR-10 ImageFolder (``train/<class>/*.jpg``, ``test/<class>/*.jpg``).
    Returns the trained network's test accuracy and, per conversion setting, the logits'
    closeness on the test images, the test accuracy right after conversion and after
    ``finetune_epochs`` of SGD (lr 0.01, the lifting loss included).
    """
    from torchvision.models.resnet import BasicBlock
    from tqdm import tqdm

    from ..models.resnet import ScaledResNet

    torch.manual_seed(seed)
    bench = _CifarBench(root, per_class, test_per_class, batch, seed)
    fit, accuracy, norm, xtr, xte = bench.fit, bench.accuracy, bench.norm, bench.xtr, bench.xte

    base = ScaledResNet(BasicBlock, [2, 2, 2, 2], num_classes=10, width=width)
    fit(base, epochs, 0.1, "pretraining resnet18 (max)")
    base.eval()
    acc0 = accuracy(base)
    calib = [norm(xtr[i:i + batch]) for i in range(0, 4 * batch, batch)]
    test_x = norm(xte)
    settings = settings if settings is not None else {
        "max (unchanged)": {"pool": "max", "targets": ()},
        **_MEASURE_SETTINGS,
    }
    rows = []
    for sc in (False, True):
        for name, kw in tqdm(list(settings.items()), desc=f"settings (strided_conv={sc})"):
            kw = dict(kw)
            recal = bool(kw.pop("recalibrate", False))
            if kw.get("pool") == "max" and not kw.get("targets", True):
                if sc:
                    continue
                net: nn.Module = copy.deepcopy(base)
                n = 0
            else:
                net, report = convert(base, strided_conv=sc, return_report=True, **kw)
                n = len(report.replaced)
                if recal:
                    recalibrate_batchnorm(net, calib)
            net.eval()
            d = compare_outputs(base, net, test_x)
            start = accuracy(net)
            torch.manual_seed(seed + 2)
            fit(net, finetune_epochs, 0.01, f"fine-tuning {name}")
            label = f"{name}{', strided_conv' if sc else ''}"
            rows.append(FinetuneMeasurement(label, n, d.rel_l2, d.top1_agreement, start, accuracy(net)))
    return acc0, rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m liftpool.studies.conversion``: measure how close converted torchvision networks start."""
    import argparse
    import platform

    import torchvision
    from tqdm import tqdm

    parser = argparse.ArgumentParser(prog="python -m liftpool.studies.conversion", description=main.__doc__)
    parser.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,vgg13_bn")
    parser.add_argument("--size", type=int, default=128, help="image size (default 128)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the Markdown table here (atomically)")
    parser.add_argument("--png", default=None, help="write a bar plot here")
    parser.add_argument("--cifar", default=None, metavar="DIR",
                        help="instead: train a small ResNet18 on this CIFAR-10 ImageFolder, convert, fine-tune")
    parser.add_argument("--width", type=float, default=0.5, help="--cifar: ResNet18 width")
    parser.add_argument("--per-class", type=int, default=1000, help="--cifar: training images per class")
    parser.add_argument("--epochs", type=int, default=6, help="--cifar: pre-training epochs")
    parser.add_argument("--placement", action="store_true",
                        help="--cifar: instead train ResNet18 variants from scratch (pool placement study)")
    parser.add_argument("--seeds", default="0,1", help="--placement: comma-separated seeds")
    args = parser.parse_args(argv)
    if args.cifar and args.placement:
        return _placement_main(args)
    if args.cifar:
        return _cifar_main(args)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    calib = [random_images(args.batch, args.size, generator=g) for _ in range(args.calib_batches)]
    test = random_images(args.batch * 2, args.size, generator=g)
    rows: list[InitMeasurement] = []
    names = [n for n in args.models.split(",") if n]
    jobs = [(n, sc) for n in names for sc in (False, True) if not (n.startswith("vgg") and sc)]
    for name, sc in tqdm(jobs, desc="networks"):
        model = getattr(torchvision.models, name)(weights=None)
        settings = {
            f"{k}{', strided_conv' if sc else ''}": {**v, "strided_conv": sc} for k, v in _MEASURE_SETTINGS.items()
        }
        rows += measure_init(name, model, calib, test, settings)
    head = ("| network | setting | layers replaced | layer rel. diff | logits rel. diff | top-1 agreement |\n"
            "|---|---|---|---|---|---|\n")
    table = head + "".join(
        f"| {r.model} | {r.setting} | {r.replaced} | {r.layer_rel_l2:.3g} | {r.rel_l2:.3g} | {r.top1_agreement:.2f} |\n"
        for r in rows)
    info = (f"torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s); "
            f"{args.batch * 2} test images {args.size}x{args.size}, BN statistics from "
            f"{args.calib_batches}x{args.batch} images, seed {args.seed}")
    print(table + "\n" + info)
    if args.out:
        atomic_write_text(args.out, table + "\n" + info + "\n")
    if args.png:
        _plot(rows, args.png, info)
    return 0


def _placement_main(args: Any) -> int:
    import platform

    seeds = [int(v) for v in args.seeds.split(",") if v]
    rows = placement_study(args.cifar, width=args.width, per_class=args.per_class, epochs=args.epochs, seeds=seeds)
    table = ("| ResNet18 variant (from scratch) | LiftDownPool2d layers | test acc. per seed | mean |\n"
             "|---|---|---|---|\n")
    table += "".join(f"| {r.setting} | {r.lift_layers} | {', '.join(f'{a:.3f}' for a in r.accuracies)} | "
                     f"{sum(r.accuracies) / len(r.accuracies):.3f} |\n" for r in rows)
    info = (f"ResNet18 (torchvision layout, width {args.width}) trained {args.epochs} epochs on {args.per_class * 10} "
            f"CIFAR-10 images, tested on the first 200 test images of each class; seeds {seeds}; "
            f"torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s)")
    print(table + "\n" + info)
    if args.out:
        atomic_write_text(args.out, table + "\n" + info + "\n")
    return 0


def _cifar_main(args: Any) -> int:
    import platform

    acc0, rows = cifar_study(args.cifar, width=args.width, per_class=args.per_class, epochs=args.epochs,
                             seed=args.seed)
    table = ("| setting | layers replaced | logits rel. diff | top-1 agreement | test acc. at start | "
             "after 1 fine-tune epoch |\n|---|---|---|---|---|---|\n")
    table += "".join(f"| {r.setting} | {r.replaced} | {r.rel_l2:.3g} | {r.top1_agreement:.3f} | {r.acc_start:.3f} | "
                     f"{r.acc_finetuned:.3f} |\n" for r in rows)
    info = (
        f"ResNet18 (torchvision layout, width {args.width}) trained {args.epochs} epochs on "
        f"{args.per_class * 10} CIFAR-10 images (test acc. {acc0:.3f} on the first 200 test images of each class); "
        f"torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} thread(s), seed {args.seed}"
    )
    print(table + "\n" + info)
    if args.out:
        atomic_write_text(args.out, table + "\n" + info + "\n")
    return 0


def _plot(rows: Sequence[InitMeasurement], path: str, info: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r.model, "strided_conv" in r.setting) for r in rows if r.replaced},
                    key=lambda t: (t[0], t[1]))
    settings = list(_MEASURE_SETTINGS)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    width = 0.8 / len(settings)
    for j, s in enumerate(settings):
        vals_rel, vals_top = [], []
        for m, sc in groups:
            r = next(
                (r for r in rows if r.model == m and r.setting.startswith(s) and ("strided_conv" in r.setting) == sc),
                None,
            )
            vals_rel.append(r.rel_l2 if r else float("nan"))
            vals_top.append(r.top1_agreement if r else float("nan"))
        xs = [i + j * width for i in range(len(groups))]
        axes[0].bar(xs, vals_rel, width, label=s)
        axes[1].bar(xs, vals_top, width, label=s)
    labels = [f"{m}{' +conv' if sc else ''}" for m, sc in groups]
    for ax, title in zip(axes, ("logits: relative L2 difference (lower = closer)", "top-1 agreement with original")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], labels, rotation=30, ha="right")
        ax.set_title(title)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=8, loc="lower left")
    fig.suptitle("Converted networks vs. the original at the start (" + info.split(";")[1].strip() + ")", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
