"""``liftpool train``: train a classifier or a segmentation network.

Examples (see docs/training.md)::

    liftpool train --preset vgg13-cifar100 --data-dir ~/data/cifar --out runs/vgg13-lift --pool lift
    liftpool train --model vgg13_cifar --width 0.25 --dataset imagefolder --data-dir cifar10-jpeg \\
        --epochs 3 --batch-size 128 --lr 0.05 --out runs/smoke
    torchrun --nproc_per_node=4 -m liftpool train --preset resnet-imagenet --pool lift \\
        --data-dir /data/imagenet --out runs/r18-lift --amp --channels-last
    liftpool train --resume --out runs/vgg13-lift          # continue from checkpoints/last.pt
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .config import FIELD_NAMES, PRESET_DOCS, PRESETS, TrainConfig, load_config_file, resolve_config

__all__ = ["add_arguments", "run"]

S = argparse.SUPPRESS


def _json_object(text: str) -> dict[str, Any]:
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"batch_norm\": false}}', got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``train`` flags.  Flags default to "not given" so that the precedence
    preset < --config file < flags can be applied (see :mod:`liftpool.training.config`)."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    B = argparse.BooleanOptionalAction
    g = parser.add_argument_group("recipe")
    g.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=S,
        help="a named recipe: " + "; ".join(f"{k}: {v}" for k, v in PRESET_DOCS.items()),
    )
    g.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="JSON or TOML file of settings (keys = flag names); flags override it",
    )
    g.add_argument("--print-config", action="store_true", help="print the resolved settings as JSON and exit")
    g.add_argument("--list-presets", action="store_true", help="print the presets as JSON and exit")

    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=S,
        help="create_model name (vgg13_cifar, resnet18, resnet50, mobilenet_v2, segnet, deeplabv3plus_resnet50) or "
             "'module:factory'",
    )
    g.add_argument("--pool", default=S, help="pooling layer (max, avg, lift, ...; segnet: max, maxblur, lift) [max]")
    g.add_argument("--width", type=float, default=S, help="channel-width multiplier of the model")
    g.add_argument(
        "--model-kwargs",
        type=_json_object,
        default=S,
        metavar="JSON",
        help="extra create_model keyword arguments, e.g. '{\"batch_norm\": false}'",
    )
    g.add_argument("--num-classes", type=int, default=S, help="model outputs (default: the dataset's class count)")
    g.add_argument("--lambda-u", type=float, default=S, help="weight of the LiftPool update constraint c_u [0.01]")
    g.add_argument("--lambda-p", type=float, default=S, help="weight of the LiftPool predict constraint c_p [0.1]")
    g.add_argument(
        "--constraints",
        action=B,
        default=S,
        help="add lifting_loss(model) to the task loss (--no-constraints to ablate) [on]",
    )

    g = parser.add_argument_group("data")
    g.add_argument(
        "--dataset", choices=("cifar10", "cifar100", "imagefolder", "camvid", "voc"), default=S, help="dataset format"
    )
    g.add_argument("--data-dir", default=S, help="dataset folder")
    g.add_argument(
        "--download", action=B, default=S, help="download cifar10/cifar100/voc into --data-dir (needs internet)"
    )
    g.add_argument(
        "--train-split", default=S, help="training split (ImageFolder sub-folder / CamVid list / VOC image set) [train]"
    )
    g.add_argument("--val-split", default=S, help="validation split ['auto': val, else test]")
    g.add_argument(
        "--augment", choices=("auto", "cifar", "imagenet", "none"), default=S, help="classification augmentation [auto]"
    )
    g.add_argument("--image-size", type=int, default=S, help="classification crop size [32 CIFAR-like, 224 ImageNet]")
    g.add_argument(
        "--val-resize", type=int, default=S, help="validation resize before the centre crop [image_size*256/224]"
    )
    g.add_argument("--crop-size", type=int, nargs=2, metavar=("H", "W"), default=S, help="segmentation training crop")
    g.add_argument(
        "--scale-range", type=float, nargs=2, metavar=("MIN", "MAX"), default=S, help="segmentation random scale [1 1]"
    )
    g.add_argument("--mean", type=float, nargs=3, default=S, help="normalisation mean (RGB, 0-1 scale)")
    g.add_argument("--std", type=float, nargs=3, default=S, help="normalisation std")
    g.add_argument(
        "--check-labels",
        action=B,
        default=S,
        help="scan segmentation label maps for out-of-range values before training [on]",
    )
    g.add_argument(
        "--class-weighting", choices=("none", "median_freq"), default=S, help="segmentation class weights [none]"
    )
    g.add_argument(
        "--num-workers",
        type=int,
        default=S,
        help="data-loader processes per training process [cores / local processes, max 8]",
    )
    g.add_argument(
        "--cache-images",
        action=B,
        default=S,
        help="imagefolder: decode each image once and keep its pixels in memory (small images, e.g. CIFAR "
        "JPEGs; pays off with --num-workers 0) [off]",
    )

    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=S)
    g.add_argument("--batch-size", type=int, default=S, help="GLOBAL batch size (split evenly over torchrun processes)")
    g.add_argument("--val-batch-size", type=int, default=S)
    g.add_argument("--optimizer", choices=("sgd", "adamw"), default=S)
    g.add_argument("--lr", type=float, default=S)
    g.add_argument("--momentum", type=float, default=S)
    g.add_argument("--nesterov", action=B, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--schedule", choices=("constant", "multistep", "step", "exp", "poly", "cosine"), default=S)
    g.add_argument("--milestones", type=int, nargs="*", default=S, help="multistep: epochs at which lr *= gamma")
    g.add_argument("--gamma", type=float, default=S)
    g.add_argument("--step-size", type=int, default=S, help="step: lr *= gamma every this many epochs")
    g.add_argument("--power", type=float, default=S, help="poly: (1 - t/T)^power")
    g.add_argument("--warmup-epochs", type=float, default=S, help="linear warm-up length (fractional epochs allowed)")
    g.add_argument("--label-smoothing", type=float, default=S)

    g = parser.add_argument_group("run")
    g.add_argument("--out", default=S, help="output folder (must be empty or new unless --resume/--overwrite)")
    g.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=S,
        metavar="CKPT",
        help="continue from CKPT [default <out>/checkpoints/last.pt]",
    )
    g.add_argument(
        "--overwrite", action=B, default=S, help="allow a non-empty --out (replaces this tool's files there)"
    )
    g.add_argument("--device", default=S, help="auto, cpu, cuda or cuda:N [auto]")
    g.add_argument("--amp", action=B, default=S, help="mixed precision: fp16 + GradScaler on CUDA, bf16 on CPU")
    g.add_argument("--channels-last", action=B, default=S, help="NHWC memory format")
    g.add_argument(
        "--compile",
        action=B,
        default=S,
        help="train through torch.compile (the first steps compile; validation runs the plain model) [off]",
    )
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--deterministic", action=B, default=S, help="torch deterministic algorithms, no cuDNN benchmark")
    g.add_argument("--sync-bn", action=B, default=S, help="SyncBatchNorm across torchrun processes (CUDA only)")
    g.add_argument("--find-unused-parameters", action=B, default=S, help="DDP option for models with unused parameters")
    g.add_argument(
        "--limit-train-batches", type=int, default=S, help="stop each training epoch after N batches (smoke runs)"
    )
    g.add_argument("--limit-val-batches", type=int, default=S, help="evaluate only N batches (0 = no validation)")
    g.add_argument("--progress", action=B, default=S, help="tqdm progress bars [on]")
    g.add_argument("--tensorboard", action=B, default=S, help="also log to <out>/tensorboard (needs tensorboard)")
    g.add_argument("--plot", action=B, default=S, help="write curves.png every epoch [on]")
    g.add_argument(
        "--diagnostics",
        action=B,
        default=S,
        help="record the pooling layers' P/U magnitudes, constraint terms and gradient norms to "
        "<out>/diagnostics.json [off]",
    )
    g.add_argument(
        "--diagnostics-every",
        type=int,
        default=S,
        metavar="N",
        help="with --diagnostics: record every N steps [about 16 records per epoch]",
    )
    defaults = TrainConfig()
    for action in parser._actions:
        if action.dest in FIELD_NAMES and action.help is None:
            action.help = f"[{getattr(defaults, action.dest)}]"


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in FIELD_NAMES if hasattr(args, k)}


def _error(msg: str) -> int:
    print(f"liftpool train: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Resolve the settings, check every input, train; returns the exit status
    (0 done, 2 bad input with the reason on stderr, 130 interrupted)."""
    if getattr(args, "list_presets", False):
        print(json.dumps({k: {"description": PRESET_DOCS[k], **v} for k, v in PRESETS.items()}, indent=2))
        return 0
    debug = bool(os.environ.get("LIFTPOOL_DEBUG"))
    try:
        given = _given(args)
        config_file = getattr(args, "config", None)
        file_values = load_config_file(config_file) if config_file else {}
        resume = given.get("resume", file_values.get("resume"))
        if resume:
            explicit = {k: v for k, v in {**file_values, **given}.items() if k != "preset"}
            cfg = TrainConfig(resume=resume, out=explicit.get("out"), device=explicit.get("device", "auto"))
            if getattr(args, "print_config", False):
                return _error("--print-config cannot be combined with --resume (the settings come from the checkpoint)")
        else:
            explicit = {}
            cfg = resolve_config(given, config_file=config_file)
            if getattr(args, "print_config", False):
                print(json.dumps(cfg.to_dict(), indent=2))
                return 0
        from .trainer import train

        summary = train(cfg, given=explicit)
    except KeyboardInterrupt:
        print(
            "liftpool train: interrupted; the last finished epoch is in <out>/checkpoints/last.pt (continue with "
            "--resume)",
            file=sys.stderr,
        )
        return 130
    except (ValueError, TypeError, OSError, FloatingPointError) as e:
        if debug:
            raise
        return _error(str(e) if isinstance(e, (ValueError, FloatingPointError)) else f"{type(e).__name__}: {e}")
    best = summary["best"]
    print(
        json.dumps(
            {
                "out": summary["out"],
                "best": best,
                "final": summary["final"],
                "wall_time_s": round(summary["wall_time_s"], 1),
            }
        )
    )
    return 0
