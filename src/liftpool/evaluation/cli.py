"""``liftpool eval``: accuracy, shift consistency, corruption robustness, flip rates, mIoU and
the paper's figures for one or more checkpoints, in one output folder.

Examples::

    liftpool eval runs/max/best.pt runs/lift/best.pt --data-dir data/cifar10-jpeg --out eval-cifar
    liftpool eval runs/segnet-*/best.pt --data-dir data/camvid-240x180 --out eval-camvid
    liftpool eval ckpt.pt --data-dir ... --metrics accuracy,shift --max-shift 8 --per-image-shifts

Writes ``results.json``, ``results.md`` (one table for all checkpoints), ``eval.log`` and
``figures/*.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path
from typing import Any

import torch

from .corruptions import ALL_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS
from .perturbations import PERTURBATIONS

__all__ = ["add_arguments", "run"]


def _csv(choices: tuple[str, ...], groups: dict[str, tuple[str, ...]] | None = None) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        out: list[str] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if groups and part in groups:
                out += list(groups[part])
            elif part in choices:
                out.append(part)
            else:
                extra = f" or one of {', '.join(groups)}" if groups else ""
                raise argparse.ArgumentTypeError(f"{part!r} is not one of {', '.join(choices)}{extra}")
        if not out:
            raise argparse.ArgumentTypeError("empty list")
        return tuple(dict.fromkeys(out))

    return parse


def _severities(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"severities must be integers 1..5 separated by commas, got {text!r}"
        ) from None
    if not vals or any(not 1 <= v <= 5 for v in vals):
        raise argparse.ArgumentTypeError(f"severities must be in 1..5, got {text!r}")
    return vals


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _limit(text: str) -> int | None:
    return None if text.lower() in ("all", "none") else _positive(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``liftpool eval``."""
    parser.add_argument(
        "checkpoints", nargs="+", help="checkpoint files written by `liftpool train` (best.pt / last.pt)"
    )
    parser.add_argument("--data-dir", required=True, help="data folder in the layout the checkpoint was trained on")
    parser.add_argument("--out", required=True, help="output folder for results.json, results.md, eval.log, figures/")
    parser.add_argument("--labels", type=lambda s: [x.strip() for x in s.split(",")], default=None,
                        help="comma-separated display names, one per checkpoint [<model>-<pool>]")  # fmt: skip
    parser.add_argument("--split", default="auto", help="evaluation split ('auto': test if present, else val) [auto]")
    metric_names = ("accuracy", "shift", "corruption", "perturbation", "segmentation", "figures")
    parser.add_argument("--metrics", type=_csv(metric_names), default=None,
                        help="comma list of " + ", ".join(metric_names) + " [all that apply to the task]")  # fmt: skip
    parser.add_argument(
        "--max-images", type=_limit, default=None, help="evaluate a seeded random subset of this many images [all]"
    )
    parser.add_argument("--batch-size", type=_positive, default=100, help="images per forward pass [100]")
    parser.add_argument("--workers", type=_nonneg, default=0, help="DataLoader worker processes [0]")
    parser.add_argument(
        "--device", default="auto", help="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ... [auto]"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of subsets, shifts, corruptions and perturbations [0]"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = parser.add_argument_group("shift consistency (Zhang 2019)")
    g.add_argument(
        "--max-shift",
        type=_nonneg,
        default=None,
        help="pad-and-crop: shifts of up to this many pixels [image side / 8]",
    )
    g.add_argument("--crop", type=_positive, default=None,
                   help="crop-inside mode: two crops of this side at random offsets; a crop >= the model's input size "
                        "uses images resized/centre-cropped to val_resize instead (ImageNet: 256 -> crops of "
                        "224)")  # fmt: skip
    g.add_argument(
        "--pad-mode",
        choices=("reflect", "replicate", "zeros", "circular"),
        default="reflect",
        help="padding of pad-and-crop [reflect]",
    )
    g.add_argument(
        "--per-image-shifts",
        action="store_true",
        help="draw offsets per image instead of per batch (the original draws per batch)",
    )
    g = parser.add_argument_group("corruptions (Hendrycks & Dietterich 2019)")
    groups = {"all": ALL_CORRUPTIONS, "benchmark": CORRUPTIONS, "extra": EXTRA_CORRUPTIONS}
    g.add_argument("--corruptions", type=_csv(ALL_CORRUPTIONS, groups), default=ALL_CORRUPTIONS,
                   help="comma list of corruption names or all / benchmark (the 15) / extra (the 4) [all]")  # fmt: skip
    g.add_argument("--severities", type=_severities, default=(1, 2, 3, 4, 5), help="comma list in 1..5 [1,2,3,4,5]")
    g.add_argument(
        "--corruption-images",
        type=_limit,
        default=500,
        help="images per corruption and severity, a seeded subset [500]; 'all' for every image",
    )
    g.add_argument("--profile", choices=("auto", "cifar", "imagenet"), default="auto",
                   help="severity table: CIFAR-10-C (below 112 px) or ImageNet-C [auto]")  # fmt: skip
    g.add_argument(
        "--corruption-cache",
        default=None,
        metavar="DIR",
        help="keep the corrupted copies of the images in DIR and reuse them in later evaluations of the same "
        "images (same results; an evaluation is then forward passes only) [off]",
    )
    g.add_argument(
        "--ce-baseline",
        default=None,
        help="label of an evaluated checkpoint to normalise CE and FR by, besides AlexNet",
    )
    g = parser.add_argument_group("perturbations (ImageNet-P style)")
    g.add_argument("--perturbations", type=_csv(PERTURBATIONS, {"all": PERTURBATIONS}), default=PERTURBATIONS,
                   help="comma list of " + ", ".join(PERTURBATIONS) + " [all]")  # fmt: skip
    g.add_argument("--frames", type=_positive, default=10, help="frames per perturbation sequence, >= 2 [10]")
    g.add_argument(
        "--perturbation-images",
        type=_limit,
        default=100,
        help="sequences per perturbation type, a seeded subset [100]; 'all' for every image",
    )
    g = parser.add_argument_group("figures")
    g.add_argument("--figure-images", type=_positive, default=3, help="images shown in the figures [3]")


def _default_labels(configs: list[dict[str, Any]], paths: list[str]) -> list[str]:
    labels = []
    for cfg in configs:
        m = cfg.get("model") or {}
        name = str(m.get("name", "model")).split(":")[-1]
        labels.append(f"{name}-{m.get('pool', '?')}")
    if len(set(labels)) != len(labels):
        labels = [f"{lab} ({Path(p).parent.name}/{Path(p).name})" for lab, p in zip(labels, paths)]
    if len(set(labels)) != len(labels):
        labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return labels


def run(args: argparse.Namespace) -> int:
    """Evaluate the checkpoints; returns 0 on success, 2 on bad input (message on stderr)."""
    from ..training.checkpoint import load_model
    from .pipeline import EvalOptions, ModelEntry, evaluate_models, raw_eval_dataset

    out = Path(args.out)
    log_lines: list[str] = []

    def echo(msg: str) -> None:
        line = f"{datetime.datetime.now().strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log_lines.append(line)

    try:
        if args.frames < 2:
            raise ValueError(f"--frames must be at least 2 (flip rates compare frames), got {args.frames}")
        if args.labels is not None and len(args.labels) != len(args.checkpoints):
            raise ValueError(f"--labels has {len(args.labels)} names for {len(args.checkpoints)} checkpoints")
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {device!r} asked for CUDA but torch sees no CUDA device; use --device cpu")
        entries_raw = []
        for p in args.checkpoints:
            model, cfg = load_model(p, map_location="cpu")
            entries_raw.append((p, model, cfg))
        configs = [c for _, _, c in entries_raw]
        tasks = {c.get("task", "classification") for c in configs}
        if len(tasks) != 1:
            raise ValueError(f"all checkpoints must share one task, got {sorted(tasks)}")
        task = tasks.pop()
        datasets = {(c.get("data") or {}).get("dataset") for c in configs}
        if len(datasets) != 1:
            raise ValueError(f"all checkpoints must come from one dataset, got {sorted(map(str, datasets))}")
        labels = args.labels or _default_labels(configs, [p for p, _, _ in entries_raw])
        entries = [ModelEntry(lab, m, c, str(p)) for lab, (p, m, c) in zip(labels, entries_raw)]
        dataset, info = raw_eval_dataset(configs[0], args.data_dir, args.split)
        for e in entries[1:]:
            if (e.config.get("data") or {}).get("image_size") != (configs[0].get("data") or {}).get("image_size"):
                raise ValueError("all checkpoints must use the same input size (config data.image_size)")
        shift_dataset = None
        if args.crop is not None and task == "classification":
            data0 = configs[0].get("data") or {}
            side = int(data0.get("image_size") or min(dataset[0][0].shape[-2:]))
            if args.crop >= side:
                larger = int(data0.get("val_resize") or 0)
                if larger <= args.crop:
                    raise ValueError(
                        f"--crop {args.crop} needs evaluation images larger than the crop; this checkpoint's "
                        f"images are {side} px (val_resize {larger or 'unset'})"
                    )
                # Zhang's protocol: resize to val_resize (e.g. 256), then crops of --crop (224)
                shift_dataset, _ = raw_eval_dataset(configs[0], args.data_dir, args.split, image_size=larger)
        metrics = args.metrics
        if metrics and task == "classification" and "segmentation" in metrics:
            raise ValueError("--metrics segmentation needs segmentation checkpoints")
        opts = EvalOptions(
            metrics=metrics,
            max_images=args.max_images,
            batch_size=args.batch_size,
            workers=args.workers,
            device=device,
            seed=args.seed,
            max_shift=args.max_shift,
            crop=args.crop,
            pad_mode=args.pad_mode,
            per_image_shifts=args.per_image_shifts,
            corruptions=args.corruptions,
            severities=args.severities,
            corruption_images=args.corruption_images,
            profile=args.profile,
            ce_baseline=args.ce_baseline,
            corruption_cache=args.corruption_cache,
            perturbations=args.perturbations,
            frames=args.frames,
            perturbation_images=args.perturbation_images,
            figure_images=args.figure_images,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
        echo(f"liftpool eval: {len(entries)} checkpoint(s), task {task}, data {args.data_dir} "
             f"(split {info.get('val_split')}, {len(dataset)} images), device {device}")  # type: ignore[arg-type]  # fmt: skip
        class_names = info.get("class_names")
        meta = {
            "command": "liftpool eval " + " ".join(sys.argv[2:] if len(sys.argv) > 2 else []),
            "data_dir": str(args.data_dir),
            "split": info.get("val_split"),
            "dataset": info.get("dataset"),
            "torch": torch.__version__,
            "device": device,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        evaluate_models(
            entries,
            dataset,
            out_dir=out,
            options=opts,
            task=task,
            class_names=class_names,
            ignore_index=info.get("ignore_index", 255) if task == "segmentation" else None,
            meta=meta,
            echo=echo,
            shift_dataset=shift_dataset,
        )
    except (ValueError, OSError) as e:  # OSError: missing folders, unreadable/corrupt images
        print(f"liftpool eval: error: {e}", file=sys.stderr)
        return 2
    finally:
        if log_lines:
            from .report import atomic_write_text

            os.makedirs(out, exist_ok=True)
            atomic_write_text(out / "eval.log", "\n".join(log_lines) + "\n")
    return 0
