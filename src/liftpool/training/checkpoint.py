"""Training checkpoints: the on-disk format, atomic saving, validated loading, :func:`load_model`.

Checkpoint format (``format_version`` 1)
----------------------------------------
A checkpoint is a ``torch.save``-d ``dict`` (written atomically: temp file + ``os.replace``)::

    {
      "format": "liftpool-checkpoint",      # constant marker
      "format_version": 1,
      "liftpool_version": "0.1.0",
      "torch_version": "2.x",
      "model_state": {...},                 # state_dict of the bare model (no DDP "module." prefix)
      "config": {                           # everything needed to rebuild and to feed the model
        "model": {"name": "vgg13_cifar",    # liftpool.models.create_model name, or "module:factory"
                  "pool": "lift",
                  "num_classes": 100,
                  "kwargs": {"width": 0.25}},   # extra create_model kwargs
        "task": "classification",           # or "segmentation"
        "data": {"dataset": "cifar100",     # cifar10 | cifar100 | imagefolder | camvid | voc
                 "num_classes": 100,
                 "class_names": [...],
                 "mean": [r, g, b], "std": [r, g, b],   # input normalisation (0..1 pixel scale)
                 "augment": "cifar",        # cifar | imagenet | segmentation | none
                 "image_size": 32,          # classification input side (val centre crop)
                 "val_resize": 32,          # val resize before the centre crop (imagenet style)
                 "crop_size": null,         # segmentation training crop [H, W]
                 "ignore_index": null},     # segmentation label ignored in loss/mIoU (255)
        "train": {...},                     # the full resolved training config (see config.py)
      },
      "epoch": 3,                           # number of COMPLETED epochs (resume starts here)
      "global_step": 1200,                  # optimiser steps so far
      "optimizer_state": {...},
      "scaler_state": {...} | None,         # torch.amp.GradScaler (fp16 on CUDA)
      "rng_states": [{"torch": ByteTensor, "cuda": [ByteTensor] | None,
                      "numpy": tuple, "python": tuple}, ...],   # one per rank
      "world_size": 1,
      "history": [{"epoch": 1, "train_loss": ..., "val_acc": ..., "lr": ...}, ...],
      "best": {"metric": "val_acc", "mode": "max", "value": 0.41, "epoch": 3},
    }

``best.pt`` and ``last.pt`` share this format.  :func:`load_model` needs only
``model_state`` and ``config``; resuming needs the rest.

A *weights file* (:func:`export_weights`) is the same dict with only the markers,
``model_state`` (optionally cast, e.g. to float16) and ``config``, and nothing but
tensors and plain Python values, so it loads with ``torch.load(..., weights_only=True)``
(``load_checkpoint(path, weights_only=True)``, ``load_model(path, weights_only=True)``).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..io import atomic_torch_save
from .factory import build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "export_weights",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "unwrap_model",
]

CHECKPOINT_FORMAT = "liftpool-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("model_state", "config")


class CheckpointError(ValueError):
    """A file that is missing, unreadable, corrupt or not a liftpool checkpoint."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | os.PathLike[str], *, model: nn.Module, config: Mapping[str, Any], **state: Any) -> Path:
    """Write a checkpoint dict (format above) atomically; ``state`` adds the resume fields."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "liftpool_version": __version__,
        "torch_version": torch.__version__,
        "model_state": unwrap_model(model).state_dict(),
        "config": dict(config),
        **state,
    }
    return atomic_torch_save(ckpt, path)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu", *, weights_only: bool = False
) -> dict[str, Any]:
    """Load and validate a checkpoint; raises :class:`CheckpointError` (a ``ValueError``) with
    the path and the reason for a missing, truncated, corrupt or foreign file.

    ``weights_only=True`` loads with torch's restricted unpickler (tensors and plain Python values
    only): right for files from :func:`export_weights` and from untrusted sources; a full training
    checkpoint (it holds RNG states) is then refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty (0 bytes)")
    try:
        # a training checkpoint holds RNG states (numpy/python tuples) besides tensors: weights_only=False
        ckpt = torch.load(path, map_location=map_location, weights_only=weights_only)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
        AttributeError,
        ImportError,
        TypeError,
    ) as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a torch file: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a liftpool checkpoint (no 'format': {CHECKPOINT_FORMAT!r} marker)")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format_version {version!r}; this liftpool reads <= {CHECKPOINT_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing}")
    cfg = ckpt["config"]
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise CheckpointError(f"checkpoint {str(path)!r} has no config['model'] description")
    return ckpt


def load_model(
    path: str | os.PathLike[str], map_location: Any = "cpu", *, weights_only: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model of a checkpoint: ``(model in eval mode, config)``.

    ``config`` is the checkpoint's ``"config"`` dict (see the module docstring):
    ``config["model"]`` (name, pool, num_classes, kwargs), ``config["task"]``,
    ``config["data"]`` (dataset, class names, ``mean``/``std`` normalisation,
    ``image_size``, ``ignore_index``) and ``config["train"]``.  The model is
    built with :func:`liftpool.models.create_model` (or the stored
    ``"module:factory"``) and its weights loaded strictly.

    Raises:
        ValueError (:class:`CheckpointError`): the file is missing, corrupt or not a
            liftpool checkpoint, or its weights do not fit the rebuilt model.
    """
    ckpt = load_checkpoint(path, map_location=map_location, weights_only=weights_only)
    config = ckpt["config"]
    model = build_model(config["model"])
    try:
        model.load_state_dict(ckpt["model_state"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: weights do not match the model {config['model']!r}: {e}"
        ) from None
    if map_location is not None and not callable(map_location) and not isinstance(map_location, dict):
        model.to(map_location)
    model.eval()
    return model, config


def export_weights(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, dtype: torch.dtype | None = torch.float16
) -> Path:
    """Write the weights of checkpoint ``src`` to ``dst`` as a weights file (see the module docstring).

    Floating-point tensors are cast to ``dtype`` (None keeps them); integer buffers (BatchNorm's
    ``num_batches_tracked``) are kept.  The config is stored as plain JSON values.  The file is
    written atomically and loads with :func:`load_model` (``weights_only=True``), which casts the
    weights back to the model's dtype.
    """
    ckpt = load_checkpoint(src)
    state = {
        k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).clone()
        for k, v in ckpt["model_state"].items()
    }
    out = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "liftpool_version": str(ckpt.get("liftpool_version", __version__)),
        "torch_version": str(torch.__version__),
        "model_state": state,
        "config": json.loads(json.dumps(ckpt["config"], default=str)),
        "weights_dtype": str(dtype).replace("torch.", "") if dtype is not None else "as trained",
    }
    return atomic_torch_save(out, dst)
