"""Training configuration: the :class:`TrainConfig` fields, the paper's recipes as
named :data:`PRESETS`, config files (JSON / TOML) and their precedence.

Precedence (later wins): field defaults < ``--preset`` < ``--config FILE`` < command-line flags.
A config file is a flat JSON object or TOML table whose keys are field names
(``-`` or ``_``); it may name a ``preset`` itself.

Examples:
    >>> cfg = resolve_config({"dataset": "cifar100", "data_dir": "/d", "out": "/o", "lr": 0.05},
    ...                      preset="vgg13-cifar100")
    >>> cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.milestones
    ('vgg13_cifar', 160, 100, 0.05, [80, 120])
    >>> resolve_config({}, preset="nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown preset 'nope'; choose one of ('vgg13-cifar100', 'resnet-imagenet', ..., 'deeplab-voc')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from ..constants import LAMBDA_P, LAMBDA_U

__all__ = [
    "POOL_DEFAULTS",
    "PRESETS",
    "PRESET_DOCS",
    "TrainConfig",
    "apply_pool_defaults",
    "load_config_file",
    "lr_factor",
    "resolve_config",
    "validate_config",
]

Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["constant", "multistep", "step", "exp", "poly", "cosine"]
ClassWeighting = Literal["none", "median_freq"]


@dataclass
class TrainConfig:
    """Every setting of a training run (stored in checkpoints as ``config["train"]``)."""

    # what
    preset: str | None = None
    model: str | None = None
    pool: str = "max"
    width: float | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    # data
    dataset: str | None = None
    data_dir: str | None = None
    download: bool = False
    train_split: str = "train"
    val_split: str = "auto"
    augment: str = "auto"
    image_size: int | None = None
    val_resize: int | None = None
    crop_size: list[int] | None = None
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])
    mean: list[float] | None = None
    std: list[float] | None = None
    check_labels: bool = True
    class_weighting: ClassWeighting = "none"
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    val_batch_size: int | None = None
    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Schedule = "constant"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    step_size: int = 30
    power: float = 0.9
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    # LiftPool constraints
    lambda_u: float = LAMBDA_U
    lambda_p: float = LAMBDA_P
    constraints: bool = True
    # machinery
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    find_unused_parameters: bool = False
    num_workers: int | None = None
    cache_images: bool = False
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None
    device: str = "auto"
    out: str | None = None
    resume: str | None = None
    overwrite: bool = False
    progress: bool = True
    tensorboard: bool = False
    plot: bool = True
    diagnostics: bool = False
    diagnostics_every: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_spec(self, num_classes: int) -> dict[str, Any]:
        """``{"name", "pool", "num_classes", "kwargs"}`` for :func:`liftpool.training.factory.build_model`."""
        kwargs = dict(self.model_kwargs)
        if self.width is not None:
            kwargs["width"] = self.width
        return {"name": self.model, "pool": self.pool, "num_classes": int(num_classes), "kwargs": kwargs}


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
#: fields that a --resume run may change (the rest must match the checkpoint)
RESUME_MUTABLE = frozenset(
    {
        "epochs",
        "num_workers",
        "cache_images",
        "data_dir",
        "download",
        "limit_train_batches",
        "limit_val_batches",
        "device",
        "out",
        "resume",
        "overwrite",
        "progress",
        "tensorboard",
        "plot",
        "check_labels",
        "diagnostics",
        "diagnostics_every",
        "compile",
    }
)

PRESETS: dict[str, dict[str, Any]] = {
    # Paper, Appendix "Experiment Settings": VGG13 on CIFAR-100.
    "vgg13-cifar100": dict(
        model="vgg13_cifar", dataset="cifar100", augment="cifar", image_size=32,
        epochs=160, batch_size=100, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
        schedule="multistep", milestones=[80, 120], gamma=0.1,
    ),
    # torchvision references/classification recipe for ResNets (lr 0.1, batch 32x8 GPUs, wd 1e-4,
    # /10 every 30 epochs), with the paper's 100 epochs instead of 90.
    "resnet-imagenet": dict(
        model="resnet18", dataset="imagefolder", augment="imagenet", image_size=224, val_resize=256,
        epochs=100, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
        schedule="step", step_size=30, gamma=0.1,
    ),
    # torchvision references/classification recipe for MobileNetV2 (lr 0.045, wd 4e-5,
    # lr-step-size 1, gamma 0.98, batch 32x8 GPUs), with the paper's 150 epochs instead of 300.
    "mobilenetv2-imagenet": dict(
        model="mobilenet_v2", dataset="imagefolder", augment="imagenet", image_size=224, val_resize=256,
        epochs=150, batch_size=256, optimizer="sgd", lr=0.045, momentum=0.9, weight_decay=4e-5,
        schedule="exp", gamma=0.98,
    ),
    # Our setting (the paper gives none for CamVid): SGD + poly, median-frequency class
    # weights as in SegNet, random scale 0.75-1.25 / crop / flip on the 240x180 images.
    "segnet-camvid": dict(
        model="segnet", dataset="camvid", crop_size=[176, 240], scale_range=[0.75, 1.25],
        class_weighting="median_freq", epochs=200, batch_size=8, val_batch_size=8,
        optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="poly", power=0.9,
    ),
    # DeepLabV3+ common recipe (e.g. VainF/DeepLabV3Plus-Pytorch): SGD lr 0.01 poly 0.9, wd 1e-4,
    # batch 16, 512x512 crops (the paper's input size), random scale 0.5-2.0, flip.
    "deeplab-voc": dict(
        model="deeplabv3plus_resnet50", dataset="voc", crop_size=[512, 512], scale_range=[0.5, 2.0],
        epochs=50, batch_size=16, val_batch_size=8, optimizer="sgd", lr=0.01, momentum=0.9,
        weight_decay=1e-4, schedule="poly", power=0.9,
    ),
}  # fmt: skip

PRESET_DOCS: dict[str, str] = {
    "vgg13-cifar100": "paper: SGD b100 lr0.1 m0.9 wd5e-4, x0.1 at 80/120, 160 epochs",
    "resnet-imagenet": "torchvision ResNet recipe (b256 lr0.1 wd1e-4 /10 every 30), 100 epochs (paper)",
    "mobilenetv2-imagenet": "torchvision MobileNetV2 recipe (b256 lr0.045 wd4e-5 x0.98/epoch), 150 epochs (paper)",
    "segnet-camvid": "ours: SGD b8 lr0.05 poly, median-freq weights, scale 0.75-1.25 crop 176x240, 200 epochs",
    "deeplab-voc": "ours/DeepLabV3+ common: SGD b16 lr0.01 poly wd1e-4, crop 512 scale 0.5-2, 50 epochs",
}


# ----------------------------------------------------------------------------- files
def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a flat JSON (``.json``) or TOML (``.toml``) config; keys are normalised to field names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
        elif suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                try:
                    import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]  # py < 3.11
                except ImportError:
                    raise ValueError("TOML config files need Python >= 3.11 or the 'tomli' package; use JSON") from None
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            raise ValueError(f"config file {str(path)!r}: use a .json or .toml file, got {suffix or 'no suffix'!r}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {str(path)!r} is not valid JSON: {e}") from None
    except Exception as e:
        if type(e).__name__ == "TOMLDecodeError":
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None
        raise
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold an object/table of settings, got {type(data).__name__}")
    return _normalise_keys(data, f"config file {str(path)!r}")


def _normalise_keys(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if key not in FIELD_NAMES:
            raise ValueError(f"{where}: unknown setting {k!r}; valid settings: {', '.join(FIELD_NAMES)}")
        out[key] = v
    return out


# ------------------------------------------------------------------------ validation
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(cfg: TrainConfig) -> None:
    """Raise ``ValueError`` naming the first setting with a wrong type or value."""
    def need(cond: bool, name: str, what: str) -> None:
        if not cond:
            raise ValueError(f"{name} must be {what}, got {getattr(cfg, name)!r}")

    need(isinstance(cfg.model, str) and cfg.model != "", "model", "a model name (--model or a --preset)")
    need(isinstance(cfg.dataset, str) and cfg.dataset != "", "dataset", "a dataset name (--dataset or a --preset)")
    need(isinstance(cfg.out, str) and cfg.out != "", "out", "an output directory (--out)")
    need(isinstance(cfg.pool, str) and cfg.pool != "", "pool", "a pool name")
    need(cfg.width is None or (_is_num(cfg.width) and cfg.width > 0), "width", "a number > 0")
    need(isinstance(cfg.model_kwargs, dict), "model_kwargs", "a JSON object")
    need(cfg.num_classes is None or (_is_int(cfg.num_classes) and cfg.num_classes >= 1), "num_classes", "an int >= 1")
    for name in ("epochs", "batch_size"):
        need(_is_int(getattr(cfg, name)) and getattr(cfg, name) >= 1, name, "an int >= 1")
    need(
        cfg.val_batch_size is None or (_is_int(cfg.val_batch_size) and cfg.val_batch_size >= 1),
        "val_batch_size",
        "an int >= 1",
    )
    for name in ("limit_train_batches", "limit_val_batches"):
        v = getattr(cfg, name)
        need(v is None or (_is_int(v) and v >= (1 if name == "limit_train_batches" else 0)), name, "a positive int")
    need(
        cfg.diagnostics_every is None or (_is_int(cfg.diagnostics_every) and cfg.diagnostics_every >= 1),
        "diagnostics_every",
        "an int >= 1",
    )
    need(
        not (cfg.compile is True and cfg.diagnostics is True),
        "compile",
        "off with --diagnostics (its per-step tensor hooks would recompile the graph)",
    )
    need(cfg.num_workers is None or (_is_int(cfg.num_workers) and cfg.num_workers >= 0), "num_workers", "an int >= 0")
    need(cfg.optimizer in get_args(Optimizer), "optimizer", f"one of {get_args(Optimizer)}")
    need(cfg.schedule in get_args(Schedule), "schedule", f"one of {get_args(Schedule)}")
    need(cfg.class_weighting in get_args(ClassWeighting), "class_weighting", f"one of {get_args(ClassWeighting)}")
    need(
        cfg.augment in ("auto", "cifar", "imagenet", "none"), "augment", "one of ('auto', 'cifar', 'imagenet', 'none')"
    )
    need(_is_num(cfg.lr) and cfg.lr > 0, "lr", "a number > 0")
    for name in ("momentum", "weight_decay", "lambda_u", "lambda_p", "warmup_epochs", "label_smoothing"):
        need(_is_num(getattr(cfg, name)) and getattr(cfg, name) >= 0, name, "a number >= 0")
    need(cfg.label_smoothing < 1, "label_smoothing", "< 1")
    need(_is_num(cfg.gamma) and cfg.gamma > 0, "gamma", "a number > 0")
    need(_is_num(cfg.power) and cfg.power > 0, "power", "a number > 0")
    need(_is_int(cfg.step_size) and cfg.step_size >= 1, "step_size", "an int >= 1")
    need(
        isinstance(cfg.milestones, list) and all(_is_int(m) and m >= 1 for m in cfg.milestones),
        "milestones",
        "a list of epochs >= 1",
    )
    need(_is_int(cfg.seed) and cfg.seed >= 0, "seed", "an int >= 0")
    need(cfg.image_size is None or (_is_int(cfg.image_size) and cfg.image_size >= 1), "image_size", "an int >= 1")
    need(cfg.val_resize is None or (_is_int(cfg.val_resize) and cfg.val_resize >= 1), "val_resize", "an int >= 1")
    need(
        cfg.crop_size is None
        or (
            isinstance(cfg.crop_size, list)
            and len(cfg.crop_size) == 2
            and all(_is_int(v) and v >= 1 for v in cfg.crop_size)
        ),
        "crop_size",
        "[H, W] positive ints",
    )
    sr = cfg.scale_range
    need(
        isinstance(sr, list) and len(sr) == 2 and all(_is_num(v) for v in sr) and 0 < sr[0] <= sr[1],
        "scale_range",
        "[min, max] with 0 < min <= max",
    )
    for name in ("mean", "std"):
        v = getattr(cfg, name)
        need(v is None or (isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v)), name, "3 numbers (RGB)")
    need(cfg.std is None or all(x > 0 for x in cfg.std), "std", "positive")
    need(
        isinstance(cfg.device, str) and (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")),
        "device",
        "'auto', 'cpu', 'cuda' or 'cuda:N'",
    )
    for f in fields(TrainConfig):
        if f.type == "bool" and not isinstance(getattr(cfg, f.name), bool):
            raise ValueError(f"{f.name} must be true or false, got {getattr(cfg, f.name)!r}")


def _coerce(data: dict[str, Any]) -> dict[str, Any]:
    """JSON/TOML give lists where we store lists, ints where floats are fine: normalise a few."""
    out = dict(data)
    for name in (
        "width",
        "lr",
        "momentum",
        "weight_decay",
        "gamma",
        "power",
        "warmup_epochs",
        "label_smoothing",
        "lambda_u",
        "lambda_p",
    ):
        if _is_int(out.get(name)):
            out[name] = float(out[name])
    for name in ("crop_size", "scale_range", "mean", "std", "milestones"):
        if isinstance(out.get(name), tuple):
            out[name] = list(out[name])
    if isinstance(out.get("scale_range"), list):
        out["scale_range"] = [float(v) if _is_int(v) else v for v in out["scale_range"]]
    return out


def resolve_config(
    cli: Mapping[str, Any], *, preset: str | None = None, config_file: str | os.PathLike[str] | None = None
) -> TrainConfig:
    """Merge defaults < preset < config file < ``cli`` (only the flags the user gave) and validate."""
    file_values = load_config_file(config_file) if config_file is not None else {}
    cli_values = _normalise_keys(cli, "command line")
    name = cli_values.pop("preset", None) or preset or file_values.get("preset")
    merged: dict[str, Any] = {}
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {tuple(PRESETS)}")
        merged.update(PRESETS[name])
        merged["preset"] = name
    merged.update({k: v for k, v in file_values.items() if k != "preset"})
    merged.update(cli_values)
    cfg = TrainConfig(**_coerce(merged))
    validate_config(cfg)
    return apply_pool_defaults(cfg)


#: ``pool_kwargs`` that ``liftpool train`` adds for a pool when the user did not set them.
#: LiftDownPool: the band mean (``scale="mean"``) instead of the paper's plain band sum, whose
#: ~4-5x gain at initialisation (measured) reaches the classifier through the last pooling
#: stage and makes SGD at the default lr 0.1 diverge (docs/training.md, "Per-pool defaults").
POOL_DEFAULTS: dict[str, dict[str, Any]] = {"lift": {"scale": "mean"}}


def apply_pool_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with :data:`POOL_DEFAULTS` for ``cfg.pool`` added to ``model_kwargs["pool_kwargs"]``
    where the user did not choose (built-in models only; a plug-in ``module:factory`` gets none).
    Returns a new config (``cfg`` is not changed). The result is stored in the run's config, so
    checkpoints rebuild the same model."""
    extra = POOL_DEFAULTS.get(cfg.pool)
    if not extra or not isinstance(cfg.model, str) or ":" in cfg.model:
        return cfg
    pk = cfg.model_kwargs.get("pool_kwargs")
    if pk is None:
        pk = {}
    if not isinstance(pk, dict):
        return cfg  # the model factory reports the bad type
    missing = {k: v for k, v in extra.items() if k not in pk}
    if not missing:
        return cfg
    return dataclasses.replace(cfg, model_kwargs={**cfg.model_kwargs, "pool_kwargs": {**pk, **missing}})


# ------------------------------------------------------------------------- schedule
def lr_factor(cfg: TrainConfig, t: float) -> float:
    """Learning-rate multiplier at fractional epoch ``t`` (0 = start of training).

    ``multistep``: ``gamma ** #(milestones <= epoch)``; ``step``: ``gamma ** (epoch // step_size)``;
    ``exp``: ``gamma ** epoch``; these change at epoch boundaries.  ``poly``:
    ``(1 - t / epochs) ** power`` and ``cosine``: ``(1 + cos(pi t / epochs)) / 2`` change every
    iteration.  A linear warm-up from 0 over ``warmup_epochs`` multiplies all of them.

    Examples:
        >>> c = TrainConfig(schedule="multistep", milestones=[80, 120], gamma=0.1, epochs=160)
        >>> [round(lr_factor(c, e), 6) for e in (0, 79.9, 80, 119, 120, 159.9)]
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
        >>> round(lr_factor(TrainConfig(schedule="poly", power=1.0, epochs=10), 2.5), 6)
        0.75
    """
    epoch = math.floor(t + 1e-9)
    s = cfg.schedule
    if s == "constant":
        f = 1.0
    elif s == "multistep":
        f = cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)
    elif s == "step":
        f = cfg.gamma ** (epoch // cfg.step_size)
    elif s == "exp":
        f = cfg.gamma**epoch
    elif s == "poly":
        f = max(0.0, 1.0 - t / cfg.epochs) ** cfg.power
    elif s == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * min(t, cfg.epochs) / cfg.epochs))
    else:  # pragma: no cover - validated
        raise ValueError(f"unknown schedule {s!r}")
    if cfg.warmup_epochs > 0 and t < cfg.warmup_epochs:
        f *= t / cfg.warmup_epochs
    return f
