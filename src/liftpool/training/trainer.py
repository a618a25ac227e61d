"""The training loop behind ``liftpool train``: :func:`train` runs a resolved
:class:`~liftpool.training.config.TrainConfig` to completion (single process or
one rank of a torchrun DDP job).

Everything that can be wrong with the inputs (data folder, labels, model/pool
names, checkpoint to resume, output folder) is checked before anything is written
or trained.  Outputs in ``cfg.out``::

    config.json           resolved config + dataset info (written at start)
    train.log             human-readable log
    metrics.csv           one row per epoch (rewritten atomically from the history)
    curves.png            loss / accuracy or mIoU / lr per epoch
    checkpoints/last.pt   after every epoch (atomic)
    checkpoints/best.pt   best validation accuracy (classification) or mIoU (segmentation)
    summary.json          final summary (atomic)
    diagnostics.json      with --diagnostics: pooling-layer weights, constraint terms, gradient norms (atomic)
    tensorboard/          with --tensorboard, when tensorboard is installed
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .. import __version__
from ..data import Datasets, EpochDistributedSampler, SeededDataset, ShardSampler, build_datasets, dataset_task
from ..io import atomic_open, atomic_write_json, atomic_write_text
from ..losses import lifting_loss
from . import distributed as D
from .checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from .config import RESUME_MUTABLE, TrainConfig, apply_pool_defaults, lr_factor, validate_config
from .diagnostics import DIAGNOSTICS_FILE, PoolDiagnostics, default_every
from .factory import build_model, model_task, set_lifting_lambdas
from .metrics import confusion_matrix, segmentation_scores, topk_correct

__all__ = ["OUTPUT_FILES", "Preflight", "checkpoint_path_for_resume", "preflight", "train"]

OUTPUT_FILES = (
    "config.json",
    "train.log",
    "metrics.csv",
    "curves.png",
    "summary.json",
    "checkpoints/last.pt",
    "checkpoints/best.pt",
    DIAGNOSTICS_FILE,
)


# ----------------------------------------------------------------------------- logging
class RunLog:
    """Timestamped lines to ``train.log`` (append) and to stderr; silent on non-main ranks."""

    def __init__(self, path: Path | None, echo: bool = True) -> None:
        self.file: TextIO | None = open(path, "a", encoding="utf-8") if path is not None else None
        self.echo = echo

    def __call__(self, msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        if self.echo:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


# --------------------------------------------------------------------------- set-up
def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def checkpoint_path_for_resume(cfg: TrainConfig) -> Path:
    """``cfg.resume`` as a path (``"auto"`` = ``<out>/checkpoints/last.pt``)."""
    if cfg.resume in (None, ""):
        raise ValueError("resume is not set")
    if cfg.resume == "auto":
        if cfg.out is None:
            raise ValueError("--resume without a path needs --out")
        return Path(cfg.out) / "checkpoints" / "last.pt"
    return Path(cfg.resume)


def merge_resume_config(stored: Mapping[str, Any], given: Mapping[str, Any]) -> TrainConfig:
    """The checkpoint's config with the settings the user gave now.  Only the fields of
    ``RESUME_MUTABLE`` (epochs, workers, limits, data_dir, out, ...) may differ."""
    base = {k: v for k, v in stored.items() if k in TrainConfig.__dataclass_fields__}
    for k, v in given.items():
        if k in RESUME_MUTABLE or k == "preset":
            if k != "preset":
                base[k] = v
            continue
        if k in base and base[k] != v:
            raise ValueError(
                f"cannot change {k!r} when resuming (checkpoint has {base[k]!r}, got {v!r}); "
                f"only {sorted(RESUME_MUTABLE)} may change"
            )
    cfg = TrainConfig(**base)
    validate_config(cfg)
    return cfg


def _len(dataset: Any) -> int:
    """``len`` of a map-style dataset (``torch.utils.data.Dataset`` does not declare ``__len__``)."""
    return len(dataset)


@dataclass
class Preflight:
    """Everything checked and built before training starts (nothing written yet)."""

    cfg: TrainConfig
    task: str
    out: Path
    data: Datasets
    data_info: dict[str, Any]
    spec: dict[str, Any]
    model: nn.Module
    n_lift: int
    workers: int
    val_batch_size: int


def _check_out_dir(cfg: TrainConfig) -> Path:
    out = Path(cfg.out).expanduser()  # type: ignore[arg-type]
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not cfg.resume and not cfg.overwrite:
        raise ValueError(
            f"output directory {str(out)!r} is not empty; pass --resume to continue that run or --overwrite to "
            "replace it"
        )
    return out


def preflight(cfg: TrainConfig, info: D.DistInfo, resume_ckpt: Mapping[str, Any] | None = None) -> Preflight:
    """Validate ``cfg`` against the data, the model registry and the output folder; build
    datasets and the model.  Raises ``ValueError`` / ``FileNotFoundError`` / ``TypeError``."""
    task = dataset_task(cfg.dataset)  # type: ignore[arg-type]
    mtask = model_task(cfg.model)  # type: ignore[arg-type]
    if mtask is not None and mtask != task:
        raise ValueError(f"model {cfg.model!r} is a {mtask} model but dataset {cfg.dataset!r} is a {task} dataset")
    from ..pooling import available_pools

    if ":" not in cfg.model and cfg.pool not in available_pools():  # type: ignore[operator]
        raise ValueError(f"unknown pool {cfg.pool!r}; choose one of {available_pools()}")
    out = _check_out_dir(cfg)
    if cfg.batch_size % info.world_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} (global) must be divisible by the number of processes {info.world_size}"
        )
    vbs = cfg.val_batch_size or cfg.batch_size
    if cfg.sync_bn and info.distributed and info.device.type != "cuda":
        raise ValueError(
            "--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on CPU); drop it for CPU/gloo runs"
        )
    if cfg.amp and info.device.type == "cpu" and not _cpu_bf16_ok():
        raise ValueError("--amp on CPU uses bfloat16, which this torch build/CPU does not support")
    workers = cfg.num_workers if cfg.num_workers is not None else default_num_workers(info)
    stored_data = (resume_ckpt or {}).get("config", {}).get("data", {})
    weighting = cfg.class_weighting if not stored_data.get("class_weights") else "none"
    # --download under torchrun: rank 0 fetches while the others wait, then all read the files
    if cfg.download and info.distributed and not info.is_main:
        D.barrier()
    data = build_datasets(
        cfg.dataset,  # type: ignore[arg-type]
        cfg.data_dir,
        train_split=cfg.train_split,
        val_split=cfg.val_split,
        augment=cfg.augment,  # type: ignore[arg-type]
        image_size=cfg.image_size,
        val_resize=cfg.val_resize,
        crop_size=tuple(cfg.crop_size) if cfg.crop_size else None,  # type: ignore[arg-type]
        scale_range=tuple(cfg.scale_range),  # type: ignore[arg-type]
        mean=tuple(cfg.mean) if cfg.mean else None,  # type: ignore[arg-type]
        std=tuple(cfg.std) if cfg.std else None,  # type: ignore[arg-type]
        num_classes=cfg.num_classes,
        download=cfg.download and info.is_main,
        check_labels=cfg.check_labels,
        class_weighting=weighting,
        workers=max(1, workers),
        cache_images=cfg.cache_images,
    )
    if cfg.download and info.distributed and info.is_main:
        D.barrier()
    data_info = dict(data.info)
    if stored_data.get("class_weights"):
        data_info["class_weights"] = stored_data["class_weights"]
        data_info["class_weighting"] = stored_data.get("class_weighting", cfg.class_weighting)
    per_rank = cfg.batch_size // info.world_size
    n_train = len(data.train)  # type: ignore[arg-type]
    if math.ceil(n_train / info.world_size) < per_rank:
        raise ValueError(
            f"the training set has {n_train} samples, fewer than one batch ({cfg.batch_size}); lower --batch-size"
        )
    if len(data.val) == 0:  # type: ignore[arg-type]
        raise ValueError("the validation split is empty")
    spec = cfg.model_spec(data_info["num_classes"])
    _seed_all(cfg.seed)
    model = build_model(spec)
    n_lift = set_lifting_lambdas(model, cfg.lambda_u, cfg.lambda_p)
    if resume_ckpt is not None:
        if resume_ckpt["config"]["model"] != spec:
            raise ValueError(
                f"checkpoint model {resume_ckpt['config']['model']!r} differs from the configured {spec!r}"
            )
        try:
            model.load_state_dict(resume_ckpt["model_state"], strict=True)
        except RuntimeError as e:
            raise ValueError(f"checkpoint weights do not fit the model: {e}") from None
    return Preflight(
        cfg=cfg,
        task=task,
        out=out,
        data=data,
        data_info=data_info,
        spec=spec,
        model=model,
        n_lift=n_lift,
        workers=workers,
        val_batch_size=vbs,
    )


def _cpu_bf16_ok() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        return True
    except Exception:  # pragma: no cover - depends on the build
        return False


def default_num_workers(info: D.DistInfo) -> int:
    """Loader workers per process when ``--num-workers`` is not given: the CPU cores
    shared by the local processes, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
    return max(0, min(8, cores // max(1, local)))


# ---------------------------------------------------------------------------- steps
def _logits(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping) and "out" in out:
        return out["out"]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"the model returned {type(out).__name__}; expected a logits tensor")


def _match_size(logits: Tensor, target: Tensor) -> Tensor:
    if logits.ndim == 4 and logits.shape[-2:] != target.shape[-2:]:
        return F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return logits


class _Accum:
    """Sums of a few scalars (on device, reduced over ranks at the end)."""

    def __init__(self, device: torch.device, num_classes: int, segmentation: bool) -> None:
        self.t = torch.zeros(6, dtype=torch.float64, device=device)  # loss_sum, lift_sum, n_loss, n, top1, top5
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device) if segmentation else None
        self.num_classes = num_classes

    def add(
        self, loss: Tensor, lift: Tensor | float, n_loss: int, logits: Tensor, target: Tensor, ignore_index: int | None
    ) -> None:
        self.t[0] += loss.detach().double() * n_loss
        self.t[1] += (lift.detach().double() if isinstance(lift, Tensor) else lift) * n_loss
        self.t[2] += n_loss
        with torch.no_grad():
            if self.cm is None:
                c1, c5 = topk_correct(logits.detach().float(), target, (1, 5))
                self.t[3] += target.shape[0]
                self.t[4] += c1
                self.t[5] += c5
            else:
                self.cm += confusion_matrix(logits.detach().argmax(1), target, self.num_classes, ignore_index)

    def reduce(self) -> dict[str, float]:
        D.all_reduce_sum(self.t)
        n_loss = max(float(self.t[2]), 1.0)
        res = {"loss": float(self.t[0]) / n_loss, "lift_loss": float(self.t[1]) / n_loss}
        if self.cm is None:
            n = max(float(self.t[3]), 1.0)
            res.update(acc=float(self.t[4]) / n, top5=float(self.t[5]) / n)
        else:
            D.all_reduce_sum(self.cm)
            s = segmentation_scores(self.cm.cpu())
            res.update(miou=s["miou"], pixel_acc=s["pixel_acc"], mean_acc=s["mean_acc"])
        return res


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: bars only on a terminal (log files stay clean)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        leave=False,
        dynamic_ncols=True,
        mininterval=1.0,
        file=sys.stderr,
        disable=None,
    )


def _loader_iter(loader: DataLoader[Any], limit: int | None) -> Iterator[Any]:
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            break
        yield batch


# ------------------------------------------------------------------------ outputs
def _csv_columns(task: str) -> list[str]:
    common = ["epoch", "lr", "train_loss", "train_lift_loss"]
    if task == "classification":
        return common + ["train_acc", "val_loss", "val_acc", "val_top5", "epoch_time_s", "train_samples_per_s"]
    return common + [
        "train_miou",
        "train_pixel_acc",
        "val_loss",
        "val_miou",
        "val_pixel_acc",
        "val_mean_acc",
        "epoch_time_s",
        "train_samples_per_s",
    ]


def _write_csv(path: Path, task: str, history: list[dict[str, Any]]) -> None:
    cols = _csv_columns(task)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def _plot(path: Path, task: str, history: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    metric = "acc" if task == "classification" else "miou"
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [r["train_loss"] for r in history], "o-", label="train")
    if any(r.get("val_loss") is not None for r in history):
        axes[0].plot(ep, [r.get("val_loss") for r in history], "s-", label="val")
    axes[0].set(xlabel="epoch", ylabel="task loss", title="loss")
    axes[1].plot(ep, [r.get(f"train_{metric}") for r in history], "o-", label="train")
    if any(r.get(f"val_{metric}") is not None for r in history):
        axes[1].plot(ep, [r.get(f"val_{metric}") for r in history], "s-", label="val")
    axes[1].set(xlabel="epoch", ylabel=metric, title="top-1 accuracy" if metric == "acc" else "mIoU")
    axes[2].plot(ep, [r["lr"] for r in history], "o-")
    axes[2].set(xlabel="epoch", ylabel="mean lr of the epoch", title="learning rate")
    for a in axes[:2]:
        a.legend()
    from matplotlib.ticker import MaxNLocator

    for a in axes:
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _hms(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _eta(elapsed: float, done: int, iters: int, epochs_left: int, history: list[dict[str, Any]]) -> str:
    """``"ETA epoch h:mm:ss, run h:mm:ss"`` from this epoch's rate; later epochs take the last
    finished epoch's time (validation included) or, in the first epoch, this one's estimate."""
    epoch_left = elapsed / done * (iters - done)
    per_epoch = float(history[-1]["epoch_time_s"]) if history else elapsed / done * iters
    return f"ETA epoch {_hms(epoch_left)}, run {_hms(epoch_left + per_epoch * epochs_left)}"


def _fmt(row: Mapping[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        if k == "epoch":
            continue
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
    return " ".join(parts)


# ---------------------------------------------------------------------------- train
def train(cfg: TrainConfig, *, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run training as configured; returns the summary dict (also written to ``summary.json``).

    With ``cfg.resume`` the checkpoint's stored config is the base and ``given``
    (the settings the user passed explicitly) may change only the resume-mutable fields.
    """
    info = D.setup(cfg.device)
    det = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        return _train(cfg, info, given or {})
    finally:
        # --deterministic changes process-wide switches: give the caller its own back
        torch.use_deterministic_algorithms(det[0], warn_only=det[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = det[2], det[3]
        D.cleanup(info)


def _resolve_config(
    cfg: TrainConfig, info: D.DistInfo, given: Mapping[str, Any]
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The config to run (with ``--resume``: the checkpoint's, merged with ``given``) and the checkpoint."""
    if not cfg.resume:
        return apply_pool_defaults(cfg), None  # also for TrainConfig objects that skipped resolve_config
    ckpt_path = checkpoint_path_for_resume(cfg)
    resume_ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    stored = resume_ckpt["config"].get("train")
    if not isinstance(stored, dict):
        raise ValueError(f"checkpoint {str(ckpt_path)!r} has no stored training config; cannot resume")
    now = {**given, "resume": cfg.resume}
    if cfg.out is not None:
        now["out"] = cfg.out
    cfg = merge_resume_config(stored, now)
    if resume_ckpt.get("world_size", 1) != info.world_size:
        raise ValueError(
            f"checkpoint was written by {resume_ckpt.get('world_size', 1)} process(es); resume with the same "
            "number "
            f"(got {info.world_size}) to continue exactly"
        )
    return cfg, resume_ckpt


def _set_determinism(cfg: TrainConfig, info: D.DistInfo) -> None:
    """The process-wide deterministic / cudnn switches for this run (``train`` restores them)."""
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _prepare_out_dir(cfg: TrainConfig, out: Path, main: bool) -> Path:
    """Create ``out/checkpoints`` and, with ``--overwrite`` (not resuming), remove the old outputs (rank 0)."""
    ckpt_dir = out / "checkpoints"
    if main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite and not cfg.resume:
            for name in OUTPUT_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
    return ckpt_dir


def _place_model(model: nn.Module, cfg: TrainConfig, info: D.DistInfo) -> nn.Module:
    """``model`` with SyncBatchNorm (``--sync-bn`` under DDP), on the device in the configured memory format."""
    if cfg.sync_bn and info.distributed:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]  # torch stubs
    mf = torch.channels_last if cfg.channels_last else torch.preserve_format
    model.to(device=info.device, memory_format=mf)  # type: ignore[call-overload]  # both at once works at runtime
    return model


def _make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> tuple[torch.optim.Optimizer, Any]:
    """The optimizer over the trainable parameters and the AMP grad scaler (enabled for ``--amp`` on CUDA)."""
    decay = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            decay,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
    else:
        optimizer = torch.optim.AdamW(decay, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")
    return optimizer, scaler


@dataclass
class _Progress:
    """What a checkpoint carries from one part of a run to the next."""

    start_epoch: int
    global_step: int
    history: list[dict[str, Any]]
    wall_before: float  # wall time of the run's earlier part(s), when resuming
    best: dict[str, Any]


def _restore_or_seed(
    cfg: TrainConfig,
    info: D.DistInfo,
    resume_ckpt: Mapping[str, Any] | None,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    log: RunLog,
) -> _Progress:
    """Resuming: load optimizer/scaler/RNG state and the counters from the checkpoint.
    Otherwise: log the versions and seed this rank."""
    best: dict[str, Any] = {"metric": None, "mode": "max", "value": None, "epoch": None}
    if resume_ckpt is None:
        log(f"liftpool {__version__}, torch {torch.__version__}, device {info.device}, {info.world_size} process(es)")
        _seed_all(cfg.seed + info.rank)
        return _Progress(start_epoch=0, global_step=0, history=[], wall_before=0.0, best=best)
    optimizer.load_state_dict(resume_ckpt["optimizer_state"])
    if resume_ckpt.get("scaler_state") and scaler.is_enabled():
        scaler.load_state_dict(resume_ckpt["scaler_state"])
    start_epoch = int(resume_ckpt["epoch"])
    global_step = int(resume_ckpt.get("global_step", 0))
    history = list(resume_ckpt.get("history", []))
    # older checkpoints have no wall time: the epochs' own times are the best estimate
    wall_before = float(resume_ckpt.get("wall_time_s", sum(float(r.get("epoch_time_s", 0.0)) for r in history)))
    best = dict(resume_ckpt.get("best", best))
    states = resume_ckpt.get("rng_states") or []
    if len(states) > info.rank:
        _set_rng_state(states[info.rank], info.device)
    log(f"resumed from {checkpoint_path_for_resume(cfg)} after epoch {start_epoch} (global step {global_step})")
    return _Progress(start_epoch, global_step, history, wall_before, best)


def _wrap_ddp(model: nn.Module, cfg: TrainConfig, info: D.DistInfo) -> nn.Module:
    """``model`` in DistributedDataParallel under torchrun, else ``model`` itself."""
    if not info.distributed:
        return model
    device = info.device
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.find_unused_parameters,
    )


@dataclass
class _Loaders:
    sampler: EpochDistributedSampler
    train: DataLoader[Any]
    val: DataLoader[Any]
    per_rank: int  # training batch per process
    iters: int  # training iterations per epoch (after --limit-train-batches)
    val_iters: int  # validation iterations per epoch (after --limit-val-batches)


def _make_loaders(cfg: TrainConfig, info: D.DistInfo, pf: Preflight) -> _Loaders:
    """This rank's training loader (seeded, epoch-shuffled shard) and validation loader (fixed shard)."""
    device = info.device
    train_set = SeededDataset(pf.data.train, cfg.seed)
    sampler = EpochDistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    per_rank = cfg.batch_size // info.world_size
    lkw: dict[str, Any] = {"num_workers": pf.workers, "pin_memory": device.type == "cuda"}
    if pf.workers > 0:
        lkw.update(persistent_workers=True, prefetch_factor=4)
    train_loader = DataLoader(
        train_set,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        **lkw,
    )
    val_order = None
    if cfg.limit_val_batches:  # a fixed random subset rather than the first (often single-class) files
        val_order = torch.randperm(_len(pf.data.val), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    val_loader = DataLoader(
        pf.data.val,
        batch_size=max(1, pf.val_batch_size // info.world_size),
        sampler=ShardSampler(_len(pf.data.val), info.rank, info.world_size, order=val_order),
        generator=torch.Generator().manual_seed(cfg.seed),
        **lkw,
    )
    iters = len(train_loader) if cfg.limit_train_batches is None else min(len(train_loader), cfg.limit_train_batches)
    val_iters = len(val_loader) if cfg.limit_val_batches is None else min(len(val_loader), cfg.limit_val_batches)
    return _Loaders(sampler, train_loader, val_loader, per_rank, iters, val_iters)


def _make_criterion(cfg: TrainConfig, pf: Preflight, device: torch.device) -> nn.Module:
    """Cross-entropy with label smoothing; for segmentation also the ignore index and any class weights."""
    if pf.task != "segmentation":
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    ignore = pf.data_info.get("ignore_index")
    weight = None
    if pf.data_info.get("class_weights"):
        weight = torch.tensor(pf.data_info["class_weights"], dtype=torch.float32, device=device)
    assert ignore is not None  # segmentation datasets always define their ignore index
    return nn.CrossEntropyLoss(weight=weight, ignore_index=ignore, label_smoothing=cfg.label_smoothing)


def _best_metric(task: str, val_iters: int) -> tuple[str, str]:
    """The metric that picks ``best.pt`` and whether higher (``"max"``) or lower is better."""
    if val_iters == 0:
        return "train_loss", "min"
    return ("val_miou" if task == "segmentation" else "val_acc"), "max"


def _open_tensorboard(out: Path, log: RunLog) -> Any:
    """A tensorboard ``SummaryWriter`` under ``out/tensorboard``, or ``None`` (logged) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(out / "tensorboard"))
    except ImportError:
        log("--tensorboard: the tensorboard package is not installed; logging to CSV only")
        return None


def _log_start(log: RunLog, cfg: TrainConfig, pf: Preflight, n_params: int, loaders: _Loaders) -> None:
    """The model, data and schedule lines at the start of a fresh run."""
    log(
        f"model {cfg.model} pool={cfg.pool} pool_kwargs={cfg.model_kwargs.get('pool_kwargs') or {}} "
        f"({n_params:,} parameters, {pf.n_lift} LiftDownPool layers, "
        f"lambda_u={cfg.lambda_u} lambda_p={cfg.lambda_p}, constraints {'on' if cfg.constraints else 'off'})"
    )
    log(
        f"data {cfg.dataset} at {pf.data_info['root']}: {_len(pf.data.train)} train / {_len(pf.data.val)} val "
        f"({pf.data_info['val_split']}), {pf.data_info['num_classes']} classes, augment={pf.data_info['augment']}, "
        f"workers={pf.workers}"
    )
    log(
        f"{cfg.epochs} epochs x {loaders.iters} iterations, global batch {cfg.batch_size} "
        f"({loaders.per_rank}/process), "
        f"{cfg.optimizer} lr={cfg.lr} schedule={cfg.schedule}, amp={cfg.amp}, channels_last={cfg.channels_last}, "
        f"compile={cfg.compile}"
    )


@dataclass
class _Run:
    """The state of a training run once everything is set up."""

    cfg: TrainConfig
    info: D.DistInfo
    pf: Preflight
    log: RunLog
    writer: Any  # tensorboard SummaryWriter or None
    config: dict[str, Any]  # what config.json and the checkpoints store
    ckpt_dir: Path
    ddp_model: nn.Module  # what the training step calls
    bare: nn.Module  # the model without its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: Any
    criterion: nn.Module
    loaders: _Loaders
    progress: _Progress
    metric_name: str
    best_mode: str
    n_params: int
    t_start: float
    show_progress: bool  # progress bars (rank 0 with --progress)
    tty: bool  # stderr is a terminal (else a line every ~quarter epoch)
    diag: PoolDiagnostics | None = None  # --diagnostics

    @property
    def device(self) -> torch.device:
        return self.info.device

    @property
    def seg(self) -> bool:
        return self.pf.task == "segmentation"

    @property
    def ignore(self) -> int | None:
        return self.pf.data_info.get("ignore_index") if self.seg else None

    @property
    def num_classes(self) -> int:
        return int(self.pf.data_info["num_classes"])

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.cfg.channels_last else torch.preserve_format


def _train_step(run: _Run, x: Tensor, y: Tensor, epoch: int, i: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward, loss, backward and optimizer step on one batch; returns (task loss, lifting loss, logits, target)."""
    cfg, device = run.cfg, run.device
    x = x.to(device, non_blocking=True, memory_format=run.memory_format)
    y = y.to(device, non_blocking=True)
    step = run.progress.global_step
    diag = run.diag if run.diag is not None and run.diag.due(step) else None
    if diag is not None:
        diag.arm(step)
    with _autocast(device, cfg.amp):
        logits = _match_size(_logits(run.ddp_model(x)), y)
        task_loss = run.criterion(logits.float(), y)
        lift = lifting_loss(run.bare) if run.pf.n_lift else torch.zeros((), device=device)
        loss = task_loss + lift if cfg.constraints else task_loss
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"non-finite loss {float(loss)} at epoch {epoch + 1}, iteration {i + 1}; lower --lr or disable --amp"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if diag is not None:
        diag.record(
            step=step,
            epoch=epoch + i / max(run.loaders.iters, 1),
            loss=float(task_loss.detach()),
            lr=float(run.optimizer.param_groups[0]["lr"]),
            lift_loss=float(lift.detach()),
            grad_scale=float(run.scaler.get_scale()) if run.scaler.is_enabled() else 1.0,
        )
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.progress.global_step += 1
    return task_loss, lift, logits, y


def _train_epoch(run: _Run, epoch: int, t0: float) -> dict[str, Any]:
    """One pass over this rank's training shard; returns the epoch's row with the training columns."""
    cfg, iters = run.cfg, run.loaders.iters
    run.loaders.sampler.set_epoch(epoch)
    run.ddp_model.train()
    acc = _Accum(run.device, run.num_classes, run.seg)
    lr_sum = 0.0
    log_every = max(1, math.ceil(iters / 4))
    bar = _progress(
        _loader_iter(run.loaders.train, cfg.limit_train_batches),
        iters,
        f"epoch {epoch + 1}/{cfg.epochs} train",
        run.show_progress,
    )
    for i, (x, y) in enumerate(bar):
        lr = cfg.lr * lr_factor(cfg, epoch + i / iters)
        lr_sum += lr
        for g in run.optimizer.param_groups:
            g["lr"] = lr
        task_loss, lift, logits, y = _train_step(run, x, y, epoch, i)
        acc.add(task_loss, lift, y.shape[0], logits, y, run.ignore)
        if run.show_progress and i % 10 == 0 and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{float(task_loss.detach()):.3f}", lr=f"{lr:.3g}")
        if run.info.is_main and not run.tty and (i + 1) % log_every == 0 and i + 1 < iters:
            # no progress bar in a log file: a line every ~quarter epoch instead
            el = time.time() - t0
            eta = _eta(el, i + 1, iters, cfg.epochs - epoch - 1, run.progress.history)
            run.log(f"epoch {epoch + 1}/{cfg.epochs} iteration {i + 1}/{iters} "
                    f"loss={float(task_loss.detach()):.4g} "
                    f"lr={lr:.4g} ({(i + 1) / el:.2f} it/s, {eta})")  # fmt: skip
    tr = acc.reduce()
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": lr_sum / max(iters, 1),
        "train_loss": tr["loss"],
        "train_lift_loss": tr["lift_loss"],
    }
    if run.seg:
        row.update(train_miou=tr["miou"], train_pixel_acc=tr["pixel_acc"])
    else:
        row.update(train_acc=tr["acc"])
    return row


def _validate(run: _Run, epoch: int) -> dict[str, Any]:
    """The validation columns of the epoch's row."""
    cfg = run.cfg
    va = evaluate(
        run.bare,
        run.loaders.val,
        run.device,
        run.num_classes,
        run.ignore,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
        limit=cfg.limit_val_batches,
        progress=run.show_progress,
        desc=f"epoch {epoch + 1}/{cfg.epochs} val",
    )
    if run.seg:
        return {
            "val_loss": va["loss"],
            "val_miou": va["miou"],
            "val_pixel_acc": va["pixel_acc"],
            "val_mean_acc": va["mean_acc"],
        }
    return {"val_loss": va["loss"], "val_acc": va["acc"], "val_top5": va["top5"]}


def _update_best(run: _Run, row: Mapping[str, Any]) -> bool:
    """Record ``row`` as the best epoch if its metric improved; returns whether it did."""
    best = run.progress.best
    value = row.get(run.metric_name)
    improved = (
        value is not None
        and not (isinstance(value, float) and math.isnan(value))
        and (best["value"] is None or (value > best["value"] if run.best_mode == "max" else value < best["value"]))
    )
    if improved:
        best.update(value=value, epoch=row["epoch"])
    return improved


def _save_epoch(run: _Run, epoch: int, row: Mapping[str, Any], improved: bool, rng: list[Any]) -> None:
    """Rank 0's outputs after an epoch: last.pt (and best.pt), metrics.csv, curves.png, tensorboard, the log line."""
    cfg, out, history = run.cfg, run.pf.out, run.progress.history
    state = {
        "epoch": epoch + 1,
        "global_step": run.progress.global_step,
        "optimizer_state": run.optimizer.state_dict(),
        "scaler_state": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "rng_states": rng,
        "world_size": run.info.world_size,
        "history": history,
        "best": dict(run.progress.best),
        "wall_time_s": run.progress.wall_before + time.time() - run.t_start,
    }
    save_checkpoint(run.ckpt_dir / "last.pt", model=run.bare, config=run.config, **state)
    if improved:
        with open(run.ckpt_dir / "last.pt", "rb") as src, atomic_open(run.ckpt_dir / "best.pt", "wb") as dst:
            shutil.copyfileobj(src, dst)
    _write_csv(out / "metrics.csv", run.pf.task, history)
    if run.diag is not None:
        run.diag.snapshot_epoch(epoch + 1, run.progress.global_step)
        run.diag.save(out / DIAGNOSTICS_FILE, meta={"model": run.pf.spec, "constraints": cfg.constraints,
                                                     "lambda_u": cfg.lambda_u, "lambda_p": cfg.lambda_p})  # fmt: skip
    if cfg.plot:
        _plot(out / "curves.png", run.pf.task, history, f"{cfg.model} pool={cfg.pool} on {cfg.dataset}")
    if run.writer is not None:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, (int, float)):
                run.writer.add_scalar(k, v, epoch + 1)
        run.writer.flush()
    left = cfg.epochs - epoch - 1
    eta = f" ETA {_hms(row['epoch_time_s'] * left)}" if left > 0 else ""
    run.log(f"epoch {epoch + 1}/{cfg.epochs} {_fmt(row)}" + (" (best)" if improved else "") + eta)


def _run_epoch(run: _Run, epoch: int) -> None:
    """Train one epoch, validate, track the best metric and (rank 0) write the epoch's outputs."""
    t0 = time.time()
    row = _train_epoch(run, epoch, t0)
    train_time = time.time() - t0
    if run.loaders.val_iters > 0:
        row.update(_validate(run, epoch))
    row["epoch_time_s"] = time.time() - t0
    row["train_samples_per_s"] = run.loaders.iters * run.cfg.batch_size / max(train_time, 1e-9)
    run.progress.history.append(row)
    improved = _update_best(run, row)
    rng = D.all_gather_objects(_rng_state(run.device))
    if run.info.is_main:
        _save_epoch(run, epoch, row, improved, rng)
    D.barrier()


def _summary(run: _Run, resumed: bool) -> dict[str, Any]:
    """What ``summary.json`` holds (and ``train`` returns)."""
    p, pf, info = run.progress, run.pf, run.info
    return {
        "status": "completed",
        "epochs": run.cfg.epochs,
        "completed_epochs": len(p.history),
        "global_step": p.global_step,
        "best": p.best,
        "final": p.history[-1] if p.history else None,
        "wall_time_s": p.wall_before + time.time() - run.t_start,  # the whole run, resumed parts included
        "wall_time_this_process_s": time.time() - run.t_start,
        "model": pf.spec,
        "parameters": run.n_params,
        "lift_layers": pf.n_lift,
        "task": pf.task,
        "data": {k: v for k, v in pf.data_info.items() if k != "class_names"},
        "train_images": len(run.loaders.train.dataset),  # type: ignore[arg-type]
        "val_images": len(run.loaders.val.dataset),  # type: ignore[arg-type]
        "threads": torch.get_num_threads(),
        "device": str(info.device),
        "world_size": info.world_size,
        "torch_version": torch.__version__,
        "liftpool_version": __version__,
        "checkpoints": {"last": str(run.ckpt_dir / "last.pt"), "best": str(run.ckpt_dir / "best.pt")},
        "resumed": resumed,
        "out": str(pf.out),
    }


def _train(cfg: TrainConfig, info: D.DistInfo, given: Mapping[str, Any]) -> dict[str, Any]:
    t_start = time.time()
    cfg, resume_ckpt = _resolve_config(cfg, info, given)
    _set_determinism(cfg, info)
    pf = preflight(cfg, info, resume_ckpt)
    D.barrier()  # every rank has checked the output folder before rank 0 writes to it
    out, main = pf.out, info.is_main
    ckpt_dir = _prepare_out_dir(cfg, out, main)
    log = RunLog(out / "train.log" if main else None, echo=main)
    writer: Any = None
    try:
        config = {"model": pf.spec, "task": pf.task, "data": pf.data_info, "train": cfg.to_dict()}
        if main:
            atomic_write_json(out / "config.json", config)
        n_params = sum(p.numel() for p in pf.model.parameters())
        model = _place_model(pf.model, cfg, info)
        optimizer, scaler = _make_optimizer(model, cfg, info.device)
        progress = _restore_or_seed(cfg, info, resume_ckpt, optimizer, scaler, log)
        ddp_model = _wrap_ddp(model, cfg, info)
        if cfg.compile:
            ddp_model = cast(nn.Module, torch.compile(ddp_model))
        loaders = _make_loaders(cfg, info, pf)
        criterion = _make_criterion(cfg, pf, info.device)
        metric_name, best_mode = _best_metric(pf.task, loaders.val_iters)
        progress.best["metric"], progress.best["mode"] = metric_name, best_mode
        if main and cfg.tensorboard:
            writer = _open_tensorboard(out, log)
        if resume_ckpt is None:
            _log_start(log, cfg, pf, n_params, loaders)
        run = _Run(
            cfg=cfg,
            info=info,
            pf=pf,
            log=log,
            writer=writer,
            config=config,
            ckpt_dir=ckpt_dir,
            ddp_model=ddp_model,
            bare=unwrap_model(ddp_model),
            optimizer=optimizer,
            scaler=scaler,
            criterion=criterion,
            loaders=loaders,
            progress=progress,
            metric_name=metric_name,
            best_mode=best_mode,
            n_params=n_params,
            t_start=t_start,
            show_progress=cfg.progress and main,
            tty=sys.stderr.isatty(),
        )
        if cfg.diagnostics:
            run.diag = PoolDiagnostics(run.bare, cfg.diagnostics_every or default_every(loaders.iters))
            if resume_ckpt is not None:
                run.diag.load_existing(
                    out / DIAGNOSTICS_FILE, upto_step=progress.global_step, upto_epoch=progress.start_epoch
                )
        for epoch in range(progress.start_epoch, cfg.epochs):
            _run_epoch(run, epoch)
        summary = _summary(run, resumed=resume_ckpt is not None)
        if main:
            atomic_write_json(out / "summary.json", summary)
            log(
                f"done in {summary['wall_time_s']:.1f} s; best {metric_name} = {progress.best['value']} at epoch "
                f"{progress.best['epoch']}; outputs in {out}"
            )
        return summary
    finally:
        log.close()
        if writer is not None:
            writer.close()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader[Any],
    device: torch.device,
    num_classes: int,
    ignore_index: int | None = None,
    *,
    amp: bool = False,
    channels_last: bool = False,
    limit: int | None = None,
    progress: bool = False,
    desc: str = "val",
) -> dict[str, float]:
    """Mean (unweighted) cross-entropy and top-1/top-5 accuracy, or mIoU / pixel accuracy
    for segmentation (``ignore_index`` pixels skipped), summed over DDP ranks."""
    was_training = model.training
    model.eval()
    seg = ignore_index is not None
    acc = _Accum(device, num_classes, seg)
    mf = torch.channels_last if channels_last else torch.preserve_format
    total = len(loader) if limit is None else min(limit, len(loader))
    try:
        for x, y in _progress(_loader_iter(loader, limit), total, desc, progress):
            x = x.to(device, non_blocking=True, memory_format=mf)
            y = y.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = _match_size(_logits(model(x)), y)
            logits = logits.float()
            if seg:
                assert ignore_index is not None  # segmentation datasets always define their ignore index
                loss_sum = F.cross_entropy(logits, y, ignore_index=ignore_index, reduction="sum")
                n = int((y != ignore_index).sum())
            else:
                loss_sum = F.cross_entropy(logits, y, reduction="sum")
                n = y.shape[0]
            acc.add(loss_sum / max(n, 1), 0.0, n, logits, y, ignore_index)
    finally:
        model.train(was_training)
    return acc.reduce()


__all__ += ["RunLog", "default_num_workers", "evaluate", "merge_resume_config"]
