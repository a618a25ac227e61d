"""Helpers shared by the reproduction studies (``liftpool reproduce`` and its xl budget) and the
diagnosis report: the data subsets they link, the done checks that make them resumable, and the
mean ± std summaries of their tables."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "CAMVID_SUBDIR",
    "CIFAR_SUBDIR",
    "Setting",
    "eval_done",
    "fmt_mean_std",
    "link_or_copy",
    "make_class_subset",
    "mean_std",
    "past",
    "read_json",
    "resolve_data_dirs",
    "train_done",
]

CIFAR_SUBDIR = "cifar10-jpeg"
CAMVID_SUBDIR = "camvid-240x180"


class Setting(NamedTuple):
    """One trained configuration (shared by every table that has it as a row)."""

    key: str  #: folder name, unique per configuration
    task: Literal["cls", "seg"]
    pool: str
    pool_kwargs: Mapping[str, Any]
    constraints: bool = True



# --------------------------------------------------------------------------- data
def link_or_copy(src: Path, target: Path) -> None:
    """``target`` becomes a symlink to ``src`` (a copy where links are not allowed); kept if it exists."""
    if target.exists() or target.is_symlink():
        return
    try:
        os.symlink(src.resolve(), target)
    except OSError:
        shutil.copyfile(src, target)


def make_class_subset(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], per_class: Mapping[str, int | None], *, seed: int = 0
) -> Path:
    """Class-balanced ImageFolder subset of ``src`` under ``dst`` (symbolic links, copies where links fail).

    ``per_class`` maps a split (``"train"``, ``"test"``) to images per class (None = all).
    The choice is a seeded random sample of each class's sorted file list, so it is the same
    on every machine.  Returns ``dst``.  An existing complete subset is reused.
    """
    src, dst = Path(src), Path(dst)
    marker = dst / ".complete"
    if marker.exists():
        return dst
    for split, n in per_class.items():
        sdir = src / split
        if not sdir.is_dir():
            raise ValueError(
                f"data folder {src} has no {split}/ split (expected an ImageFolder {split}/<class>/<image>)"
            )
        classes = sorted(d.name for d in sdir.iterdir() if d.is_dir())
        if not classes:
            raise ValueError(f"{sdir} holds no class folders")
        for c in classes:
            files = sorted(f.name for f in (sdir / c).iterdir() if f.is_file() and not f.name.startswith("."))
            if n is not None and n < len(files):
                files = sorted(random.Random(f"{seed}/{split}/{c}").sample(files, n))
            if n is not None and n > len(files):
                raise ValueError(
                    f"class {c!r} of {sdir} has {len(files)} images, fewer than the {n} per class asked for"
                )
            ddir = dst / split / c
            ddir.mkdir(parents=True, exist_ok=True)
            for f in files:
                link_or_copy(sdir / c / f, ddir / f)
    marker.write_text("ok\n")
    return dst



# --------------------------------------------------------------------------- done checks
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def train_done(run_dir: str | os.PathLike[str], epochs: int) -> bool:
    s = read_json(Path(run_dir) / "summary.json")
    return bool(s) and s.get("status") == "completed" and s.get("completed_epochs") == epochs


def eval_done(
    out: str | os.PathLike[str], labels: Sequence[str], metrics: Sequence[str], options: Mapping[str, Any] | None = None
) -> bool:
    """True when ``out/results.json`` holds exactly ``labels`` with every metric and the given eval options."""
    r = read_json(Path(out) / "results.json")
    if not r:
        return False
    have = (r.get("meta") or {}).get("options") or {}
    if any(have.get(k) != v for k, v in (options or {}).items()):
        return False
    rows = r.get("results") or []
    if sorted(x.get("label") for x in rows) != sorted(labels):
        return False
    keys = {"accuracy": "accuracy", "shift": "shift", "corruption": "corruption", "segmentation": "segmentation"}
    return all(keys[m] in x for x in rows for m in metrics if m in keys)



# --------------------------------------------------------------------------- aggregation
def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof = 1; 0 for one value) and count; NaNs and Nones are dropped.

    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0, 3)
    >>> mean_std([])[2]
    0
    """
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return (math.nan, math.nan, 0)
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return (m, sd, len(v))


def fmt_mean_std(ms: tuple[float, float, int], scale: float = 100.0, digits: int = 2) -> str:
    m, sd, n = ms
    if n == 0:
        return "–"
    return f"{scale * m:.{digits}f} ± {scale * sd:.{digits}f}" + ("" if n >= 2 else " (1 seed)")



# --------------------------------------------------------------------------- CLI helpers
def resolve_data_dirs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    root = Path(args.data_root) if args.data_root else None
    if root is not None and not root.is_dir():
        raise ValueError(f"--data-root {root} is not a folder")
    cifar = (
        Path(args.cifar_dir)
        if args.cifar_dir
        else (root / CIFAR_SUBDIR if root and (root / CIFAR_SUBDIR).is_dir() else None)
    )
    camvid = (
        Path(args.camvid_dir)
        if args.camvid_dir
        else (root / CAMVID_SUBDIR if root and (root / CAMVID_SUBDIR).is_dir() else None)
    )
    return cifar, camvid


def past(stop_at: str | None) -> bool:
    """True once the UTC clock reads ``stop_at`` (``HH:MM``) or later today (None: never)."""
    if not stop_at:
        return False
    hh, mm = (int(x) for x in stop_at.split(":"))
    now = time.gmtime()
    return (now.tm_hour, now.tm_min) >= (hh, mm)
