r"""``liftpool reproduce --budget xl``: the classification claims on full CIFAR-10 with SGD.

The study, one command, resumable::

    liftpool reproduce --budget xl --data-root DIR --out runs/reproduce-xl --seeds 3 [--stop-at HH:MM]

* **Data**: the full CIFAR-10 ImageFolder (50,000 train / 10,000 test), random crop with 4-pixel
  padding and horizontal flips (``--augment cifar``).
* **Recipe**: VGG13-BN CIFAR at width 0.25, SGD (momentum 0.9, weight decay 5e-4), cosine
  schedule, 30 epochs, batch 128.
* **Learning rate per setting** from a sweep (0.025 / 0.05 / 0.1, seed 0, 10 epochs) trained on
  45,000 training images and scored on a class-balanced, seeded, held-out 5,000-image split of the
  *training* set (listed in ``<out>/holdout.json``); the test set is never looked at: the sweep's
  data folder has no test split, and :func:`select_lr` refuses a run validated on anything but
  the held-out split.  The final runs train on all 50,000 images with the chosen rate.
* **Settings** (:data:`XL_SETTINGS`, in this priority order): MaxPool, AvgPool, LiftDownPool
  (all bands, K = 5, the paper's constraint weights), LiftDownPool without constraints,
  LiftDownPool started as average pooling, Skip, BlurPool (max + blur), Gated, Mixed.
  ``liftpool train``'s LiftDownPool default already is the band *mean* (``scale="mean"`` = 1/4,
  docs/training.md), so the "starts as average pooling" variant is ``scale="mean"`` *with*
  ``zero_init=True`` (P = U = 0 at initialisation: the layer then computes exactly 2x2 average
  pooling); the plain band sum (scale 1) diverges under SGD at these learning rates.
* **Evaluation** of every final checkpoint (one ``liftpool eval`` per run): clean top-1 error,
  shift consistency (pad-and-crop, Zhang's protocol as implemented), and the 15 benchmark
  corruptions at 5 severities on the whole test set; mCE relative to the MaxPool run of the same
  seed is computed when aggregating (:func:`aggregate_xl`).
* **Diagnostics**: every final run is trained with ``--diagnostics``; :mod:`.diagnosis` turns the
  ``diagnostics.json`` files into figures and a Markdown section.

Layout under ``--out``: ``data/`` (links), ``holdout.json``, ``sweep/<setting>/lr<lr>/`` (sweep
runs), ``sweep.json`` (held-out accuracies and the chosen rates), ``runs/<setting>/seed<k>/``,
``eval/<setting>-seed<k>/``, ``logs/``, ``reproduce.log`` (every command, its duration and an
ETA), ``report/`` (tables, figures, ``diagnosis.md``), ``estimate.json`` / ``estimate.md``
(``--estimate``).

Examples:
    >>> plan = build_xl_plan(budget=XL_BUDGETS["xl"], settings=["max", "lift"], seeds=2, out="/o", cifar_dir="/c")
    >>> [j.name for j in plan]  # doctest: +NORMALIZE_WHITESPACE
    ['sweep max lr0.025', 'sweep max lr0.05', 'sweep max lr0.1', 'sweep lift lr0.025', 'sweep lift lr0.05',
     'sweep lift lr0.1', 'train max seed0', 'eval max seed0', 'train lift seed0', 'eval lift seed0',
     'train max seed1', 'eval max seed1', 'train lift seed1', 'eval lift seed1']
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from ..io import atomic_save_figure, atomic_write_json, atomic_write_text
from .common import (
    Setting,
    eval_done,
    link_or_copy,
    make_class_subset,
    mean_std,
    resolve_data_dirs,
    train_done,
)
from .common import fmt_mean_std as _fmt
from .common import read_json as _read_json
from .jobs import History, Job, cpu_model, expected_rest, git_commit, parse_deadline, run_jobs
from .xl_summary import (
    build_summary,
    eval_row,
    plot_curves,
    plot_error_vs_mce,
    readme_markdown,
    setting_color,
    summary_markdown,
)

__all__ = [
    "XL_BUDGETS",
    "XL_LABELS",
    "XL_PRIORITY",
    "XL_SETTINGS",
    "XLBudget",
    "XLJob",
    "aggregate_xl",
    "build_xl_plan",
    "epochs_done",
    "estimate",
    "make_holdout",
    "parse_settings",
    "run",
    "select_lr",
    "sweep_table",
    "write_xl_report",
]

#: the settings in the order they run (the first five answer the main questions)
XL_SETTINGS: dict[str, Setting] = {
    "max": Setting("max", "cls", "max", {}),
    "avg": Setting("avg", "cls", "avg", {}),
    "lift": Setting("lift", "cls", "lift", {"kernel_size": 5, "scale": "mean"}),
    "lift-nocons": Setting("lift-nocons", "cls", "lift", {"kernel_size": 5, "scale": "mean"}, False),
    "lift-avginit": Setting("lift-avginit", "cls", "lift", {"kernel_size": 5, "scale": "mean", "zero_init": True}),
    "skip": Setting("skip", "cls", "skip", {}),
    "maxblur": Setting("maxblur", "cls", "maxblur", {}),
    "gated": Setting("gated", "cls", "gated", {}),
    "mixed": Setting("mixed", "cls", "mixed", {}),
    # the later pooling peers: extra settings, run only when named in --settings
    "softpool": Setting("softpool", "cls", "softpool", {}),
    "lip": Setting("lip", "cls", "lip", {}),
    "aps": Setting("aps", "cls", "aps", {}),
    "lps": Setting("lps", "cls", "lps", {}),
}
#: the five settings that answer the main questions (run first; the status line counts them apart)
XL_PRIORITY: tuple[str, ...] = ("max", "avg", "lift", "lift-nocons", "lift-avginit")
#: the settings of the study when --settings is not given (the peers are opt-in)
XL_DEFAULT_SETTINGS: tuple[str, ...] = ("max", "avg", "lift", "lift-nocons", "lift-avginit", "skip", "maxblur",
                                        "gated", "mixed")  # fmt: skip
XL_LABELS: dict[str, str] = {
    "max": "MaxPool", "avg": "AvgPool", "lift": "LiftDownPool (all bands, c_u, c_p)",
    "lift-nocons": "LiftDownPool, no constraints", "lift-avginit": "LiftDownPool, starts as AvgPool (P = U = 0)",
    "skip": "Skip (strided)", "maxblur": "BlurPool (max s1 + blur)", "gated": "Gated", "mixed": "Mixed",
    "softpool": "SoftPool", "lip": "LIP", "aps": "APS (polyphase, max norm)", "lps": "LPS (learned polyphase)",
}  # fmt: skip
EVAL_METRICS: tuple[str, ...] = ("accuracy", "shift", "corruption")
JobKind = Literal["sweep", "train", "eval"]


@dataclass(frozen=True)
class XLBudget:
    """The xl recipe (same for every setting)."""

    name: str
    width: float = 0.25
    epochs: int = 30
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    lrs: tuple[float, ...] = (0.025, 0.05, 0.1)  #: the sweep's grid
    sweep_epochs: int = 10
    sweep_seed: int = 0
    holdout_per_class: int = 500  #: held-out training images per class (x 10 classes = 5,000)
    train_per_class: int | None = None  #: None = every training image
    test_per_class: int | None = None
    corruption_images: int | None = None  #: per corruption and severity; None = the whole test set
    limit_train_batches: int | None = None  #: smoke tests only
    #: first guesses of one job's wall time (s) for the deadline, per kind, until a job of that kind has finished
    #: here (measured on the 2-core CPU with two 1-thread workers: a sweep run ~11 min, a training run ~40 min)
    guess_s: tuple[tuple[str, float], ...] = (("sweep", 900.0), ("train", 2700.0), ("eval", 600.0))

    def describe(self) -> str:
        tr = "all" if self.train_per_class is None else f"{self.train_per_class}/class"
        te = "all" if self.test_per_class is None else f"{self.test_per_class}/class"
        ci = "the whole test set" if self.corruption_images is None else f"{self.corruption_images} images"
        return (
            f"budget {self.name}: VGG13-BN CIFAR width {self.width}, train {tr}, test {te}, pad-4 crop + flip, "
            f"SGD momentum {self.momentum} wd {self.weight_decay} {self.schedule}, {self.epochs} epochs, batch "
            f"{self.batch_size}; lr per setting from {list(self.lrs)} ({self.sweep_epochs} epochs, seed "
            f"{self.sweep_seed}, held-out {self.holdout_per_class}/class of the training set); corruptions: 15 x 5 "
            f"severities x {ci}"
        )


XL_BUDGETS: dict[str, XLBudget] = {
    # ~25 h on an idle 2-core CPU (measure with --estimate): docs/results.md
    "xl": XLBudget("xl"),
    # seconds: the whole pipeline on a tiny image folder (tests)
    "xl-tiny": XLBudget(
        "xl-tiny",
        width=0.0625,
        epochs=1,
        batch_size=4,
        lrs=(0.01, 0.05),
        sweep_epochs=1,
        holdout_per_class=1,
        train_per_class=4,
        test_per_class=2,
        corruption_images=2,
        limit_train_batches=1,
        guess_s=(("sweep", 20.0), ("train", 20.0), ("eval", 20.0)),
    ),  # fmt: skip
}


#: one job of the xl plan (a ``liftpool train`` or ``liftpool eval`` subprocess)
XLJob = Job


# --------------------------------------------------------------------------- inputs
def parse_settings(text: str | Sequence[str] | None) -> list[str]:
    """``"max,lift"`` (or a list) -> setting names in :data:`XL_SETTINGS` priority order; None = the
    study's nine (:data:`XL_DEFAULT_SETTINGS`; the peers ``softpool``, ``lip``, ``aps``, ``lps`` are opt-in).

    >>> parse_settings("lift, max")
    ['max', 'lift']
    """
    if text is None:
        return list(XL_DEFAULT_SETTINGS)
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in parts if p not in XL_SETTINGS]
    if bad or not parts:
        raise ValueError(f"--settings must be a comma list of {', '.join(XL_SETTINGS)}; got {text!r}")
    if "max" not in parts:
        print("note: --settings without max: mCE relative to MaxPool needs the max runs", file=sys.stderr)
    return [s for s in XL_SETTINGS if s in parts]


def _lr_tag(lr: float) -> str:
    return f"lr{lr:g}"


def _data_name(b: XLBudget) -> str:
    def f(n: int | None) -> str:
        return "all" if n is None else f"{n}pc"

    return f"cifar10-{f(b.train_per_class)}-{f(b.test_per_class)}"


def data_dirs(out: str | os.PathLike[str], b: XLBudget) -> tuple[Path, Path]:
    """(folder of the final runs and evaluations, folder of the sweep: train = rest, val = held out)."""
    full = Path(out) / "data" / _data_name(b)
    return full, Path(out) / "data" / f"{_data_name(b)}-holdout{b.holdout_per_class}pc"


def make_holdout(
    train_dir: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    per_class: int,
    *,
    seed: int = 0,
    record: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Split the ImageFolder split ``train_dir`` (``<class>/<image>``) into ``dst/train`` (the rest)
    and ``dst/val`` (``per_class`` held-out images per class), as symbolic links.

    The held-out images are a seeded random sample of each class's sorted file names, so the split
    is the same on every machine; it is written to ``record`` (JSON, atomically) when given.
    Returns that record: ``{"seed", "per_class", "source", "holdout": {class: [file, ...]},
    "train_images", "holdout_images"}``.  An existing complete split is reused.
    """
    src, dst = Path(train_dir), Path(dst)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an int >= 1, got {per_class!r}")
    if not src.is_dir():
        raise ValueError(f"train_dir {src} is not a folder (expected an ImageFolder split <class>/<image>)")
    classes = sorted(d.name for d in src.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"train_dir {src} holds no class folders")
    held: dict[str, list[str]] = {}
    n_train = 0
    for c in classes:
        files = sorted(f.name for f in (src / c).iterdir() if not f.name.startswith("."))
        if len(files) <= per_class:
            raise ValueError(
                f"class {c!r} of {src} has {len(files)} images; holding out {per_class} would leave none to train on"
            )
        held[c] = sorted(random.Random(f"holdout/{seed}/{c}").sample(files, per_class))
        n_train += len(files) - per_class
    rec = {
        "seed": seed,
        "per_class": per_class,
        "source": f"{src.parent.name}/{src.name}",
        "train_images": n_train,
        "holdout_images": per_class * len(classes),
        "holdout": held,
    }
    if not (dst / ".complete").exists():
        for c in classes:
            hs = set(held[c])
            for f in sorted(p.name for p in (src / c).iterdir() if not p.name.startswith(".")):
                d = dst / ("val" if f in hs else "train") / c
                d.mkdir(parents=True, exist_ok=True)
                link_or_copy(src / c / f, d / f)
        atomic_write_text(dst / ".complete", "ok\n")
    if record is not None:
        atomic_write_json(record, rec)
    return rec


# --------------------------------------------------------------------------- sweep
def _sweep_dir(out: Path, key: str, lr: float) -> Path:
    return out / "sweep" / key / _lr_tag(lr)


def _diverged(run_dir: Path) -> bool:
    return (run_dir / "diverged.json").exists()


def select_lr(
    out: str | os.PathLike[str], key: str, budget: XLBudget
) -> tuple[float | None, dict[float, float | None]]:
    """The sweep's learning rate for setting ``key``: the highest accuracy on the held-out split.

    Returns ``(lr or None while a sweep run is unfinished, {lr: held-out accuracy or None})``;
    a diverged run counts as accuracy None and is never chosen; ties go to the smaller rate.
    Only the runs' own validation on the held-out split is read: a sweep run validated on any
    other split (e.g. ``test``) raises ``ValueError``.
    """
    out = Path(out)
    _, hold = data_dirs(out, budget)
    accs: dict[float, float | None] = {}
    complete = True
    for lr in budget.lrs:
        d = _sweep_dir(out, key, lr)
        if _diverged(d):
            accs[lr] = None
            continue
        s = _read_json(d / "summary.json")
        if not (s and s.get("status") == "completed" and s.get("completed_epochs") == budget.sweep_epochs):
            accs[lr] = None
            complete = False
            continue
        data = s.get("data") or {}
        if data.get("val_split") != "val" or Path(str(data.get("root", ""))).name != hold.name:
            raise ValueError(
                f"sweep run {d} was validated on split {data.get('val_split')!r} of {data.get('root')!r}; the "
                f"learning rate is chosen on the held-out split ({hold}/val) only"
            )
        acc = (s.get("final") or {}).get("val_acc")
        accs[lr] = float(acc) if isinstance(acc, (int, float)) and math.isfinite(acc) else None
    if not complete:
        return None, accs
    ok = [(a, -lr, lr) for lr, a in accs.items() if a is not None]
    if not ok:
        raise ValueError(f"every sweep run of {key!r} diverged ({list(budget.lrs)}); widen the grid")
    return max(ok)[2], accs


def sweep_table(out: str | os.PathLike[str], settings: Sequence[str], budget: XLBudget) -> dict[str, Any]:
    """``{setting: {"accuracy": {lr: acc}, "chosen": lr or None}}`` for the settings' sweeps so far."""
    res: dict[str, Any] = {}
    for key in settings:
        try:
            lr, accs = select_lr(out, key, budget)
        except ValueError as e:
            lr, accs = None, {}
            res[key] = {"accuracy": {}, "chosen": None, "error": str(e)}
            continue
        res[key] = {"accuracy": {f"{k:g}": v for k, v in accs.items()}, "chosen": lr}
    return res


# --------------------------------------------------------------------------- plan
def _model_argv(s: Setting, b: XLBudget) -> list[str]:
    argv = [
        "train", "--model", "vgg13_cifar", "--width", str(b.width), "--pool", s.pool, "--dataset", "imagefolder",
        "--augment", "cifar", "--batch-size", str(b.batch_size), "--optimizer", "sgd", "--momentum", str(b.momentum),
        "--weight-decay", str(b.weight_decay), "--schedule", b.schedule,
        "--constraints" if s.constraints else "--no-constraints", "--num-workers", "0", "--cache-images",
        "--channels-last", "--no-progress", "--no-plot",
    ]  # fmt: skip
    if s.pool_kwargs:
        argv += ["--model-kwargs", json.dumps({"pool_kwargs": dict(s.pool_kwargs)}, sort_keys=True)]
    if b.limit_train_batches:
        argv += ["--limit-train-batches", str(b.limit_train_batches)]
    return argv


def _sweep_argv(s: Setting, b: XLBudget, lr: float, hold: Path, run_dir: Path) -> tuple[str, ...]:
    return (*_model_argv(s, b), "--data-dir", str(hold), "--val-split", "val", "--epochs", str(b.sweep_epochs),
            "--lr", f"{lr:g}", "--seed", str(b.sweep_seed), "--out", str(run_dir))  # fmt: skip


def _final_argv(s: Setting, b: XLBudget, out: Path, full: Path, seed: int, run_dir: Path) -> tuple[str, ...]:
    lr, _ = select_lr(out, s.key, b)
    if lr is None:
        raise ValueError(f"the sweep of {s.key!r} has not finished")
    # the test split is evaluated after every epoch for the learning curves only: the evaluated model is
    # the last epoch's, and the learning rate was chosen on the held-out split
    return (*_model_argv(s, b), "--data-dir", str(full), "--val-split", "test",
            "--epochs", str(b.epochs), "--lr", f"{lr:g}", "--seed", str(seed), "--diagnostics",
            "--out", str(run_dir))  # fmt: skip


def _eval_argv(
    key: str, b: XLBudget, full: Path, ckpt: Path, eout: Path, cache: str | None = None
) -> tuple[str, ...]:
    ci = "all" if b.corruption_images is None else str(b.corruption_images)
    argv = ("eval", str(ckpt), "--labels", key, "--data-dir", str(full), "--split", "test", "--out", str(eout),
            "--seed", "0", "--no-progress", "--metrics", ",".join(EVAL_METRICS), "--corruptions", "benchmark",
            "--corruption-images", ci)  # fmt: skip
    return argv + (("--corruption-cache", cache) if cache else ())


def default_corruption_cache() -> Path:
    """Where the corrupted test-set copies are kept between evaluations (outside the repository):
    ``$LIFTPOOL_CACHE_DIR/corruptions``, else ``~/.cache/liftpool/corruptions``."""
    root = os.environ.get("LIFTPOOL_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "liftpool") / "corruptions"


#: the weights-only float16 copy of every setting's seed-0 model kept in the repository
WEIGHTS_FILE = "weights_fp16.pt"


def _train_finished(run_dir: Path, epochs: int, eout: Path, key: str, b: XLBudget) -> bool:
    """A final run is done when it completed its epochs and either its checkpoint is here (for the
    evaluation) or its evaluation is done; a clone holding only the committed summary of a run whose
    evaluation never finished retrains it."""
    if not train_done(run_dir, epochs):
        return False
    return (run_dir / "checkpoints" / "last.pt").exists() or _eval_finished(eout, key, b)


def _eval_finished(eout: Path, key: str, b: XLBudget) -> bool:
    return eval_done(eout, (key,), EVAL_METRICS, {"corruption_images": b.corruption_images})


def _export_seed0(run_dir: Path, seed: int) -> list[Path]:
    if seed != 0:
        return []
    from ..training.checkpoint import export_weights

    return [export_weights(run_dir / "checkpoints" / "last.pt", run_dir / WEIGHTS_FILE)]


def _sweep_blocked(out: Path, key: str, b: XLBudget) -> str | None:
    try:
        lr, _ = select_lr(out, key, b)
    except ValueError as e:
        return str(e)
    return None if lr is not None else f"the learning-rate sweep of {key} has not finished"


def _eval_blocked(run_dir: Path, epochs: int) -> str | None:
    """An evaluation waits for its training run to complete: the checkpoint exists from the first
    epoch on, so its existence alone does not say the model is final."""
    if not train_done(run_dir, epochs):
        return f"the training run {run_dir} has not completed {epochs} epochs"
    ckpt = run_dir / "checkpoints" / "last.pt"
    return None if ckpt.exists() else f"missing {ckpt}"


def epochs_done(run_dir: str | os.PathLike[str], epochs: int) -> float:
    """The share of a training run an earlier stretch finished: the epochs in its ``metrics.csv``
    over ``epochs``, when its checkpoint is there to resume from (else 0)."""
    run_dir = Path(run_dir)
    if epochs < 1 or not (run_dir / "checkpoints" / "last.pt").exists():
        return 0.0
    try:
        rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    except OSError:
        return 0.0
    return min(sum(bool(x.strip()) for x in rows), epochs) / epochs


def build_xl_plan(
    *, budget: XLBudget, settings: Sequence[str], seeds: int, out: str | os.PathLike[str],
    cifar_dir: str | os.PathLike[str] | None, corruption_cache: str | os.PathLike[str] | None = None,
) -> list[Job]:  # fmt: skip
    """The ordered jobs: for the priority settings (:data:`XL_PRIORITY`) every sweep run, then seed
    by seed each setting's final training run followed by its evaluation; then the same for the
    further settings.  An interrupted study so has whole seeds of the most important settings first,
    and no further setting takes the machine before the priority ones are done.  A training job of
    seed 0 also writes the weights-only float16 copy of its model (:data:`WEIGHTS_FILE`); a training
    job's evaluation must follow in the same stretch (``Job.then``: a clone carries no checkpoint)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    if cifar_dir is None:
        raise ValueError("the xl study needs the CIFAR-10 ImageFolder (--data-root with cifar10-jpeg/ or --cifar-dir)")
    keys = parse_settings(list(settings))
    out = Path(out)
    full, hold = data_dirs(out, budget)
    cache = None if corruption_cache is None else str(corruption_cache)
    jobs: list[Job] = []
    for group in ([k for k in keys if k in XL_PRIORITY], [k for k in keys if k not in XL_PRIORITY]):
        jobs += _group_jobs(group, budget=budget, seeds=seeds, out=out, full=full, hold=hold, cache=cache)
    return jobs


def _group_jobs(
    keys: Sequence[str], *, budget: XLBudget, seeds: int, out: Path, full: Path, hold: Path, cache: str | None
) -> list[Job]:
    """The sweep runs of ``keys``, then seed by seed each one's final run and its evaluation."""
    guess = dict(budget.guess_s)
    jobs: list[Job] = []
    for key in keys:
        s = XL_SETTINGS[key]
        for lr in budget.lrs:
            d = _sweep_dir(out, key, lr)
            done = functools.partial(lambda d: train_done(d, budget.sweep_epochs) or _diverged(d), d)
            jobs.append(Job(f"sweep {key} {_lr_tag(lr)}", "sweep", key, str(d),
                            functools.partial(_sweep_argv, s, budget, lr, hold, d), done,
                            estimate_s=guess["sweep"], seed=budget.sweep_seed, lr=lr, resumable=True,
                            progress=functools.partial(epochs_done, d, budget.sweep_epochs)))  # fmt: skip
    for seed in range(seeds):
        for key in keys:
            s = XL_SETTINGS[key]
            run_dir = out / "runs" / key / f"seed{seed}"
            ckpt = run_dir / "checkpoints" / "last.pt"
            eout = out / "eval" / f"{key}-seed{seed}"
            jobs.append(Job(f"train {key} seed{seed}", "train", key, str(run_dir),
                            functools.partial(_final_argv, s, budget, out, full, seed, run_dir),
                            functools.partial(_train_finished, run_dir, budget.epochs, eout, key, budget),
                            functools.partial(_sweep_blocked, out, key, budget), estimate_s=guess["train"],
                            seed=seed, resumable=True,
                            after=functools.partial(_export_seed0, run_dir, seed),
                            progress=functools.partial(epochs_done, run_dir, budget.epochs),
                            then=f"eval {key} seed{seed}"))  # fmt: skip
            jobs.append(Job(f"eval {key} seed{seed}", "eval", key, str(eout),
                            functools.partial(_eval_argv, key, budget, full, ckpt, eout, cache),
                            functools.partial(_eval_finished, eout, key, budget),
                            functools.partial(_eval_blocked, run_dir, budget.epochs), estimate_s=guess["eval"],
                            seed=seed))  # fmt: skip
    return jobs


# --------------------------------------------------------------------------- aggregation
def aggregate_xl(
    out: str | os.PathLike[str], *, seeds: int, budget: XLBudget, settings: Sequence[str] | None = None
) -> dict[str, Any]:
    """Rows (one per setting, mean ± sample std over seeds as ``(mean, std, n)``, fractions) and the sweep.

    ``mce_rel_max``: per seed, the mean over the 15 corruptions of CE(setting) / CE(MaxPool of the
    same seed) (:func:`liftpool.evaluation.metrics.corruption_summary` with MaxPool's errors as the
    baseline), then mean ± std over the seeds that have both.
    """
    from ..evaluation.metrics import corruption_summary

    out = Path(out)
    keys = parse_settings(list(settings) if settings is not None else None)
    sweep = sweep_table(out, keys, budget)
    rows = []
    for key in keys:
        per_seed = {k: eval_row(out, key, k) for k in range(seeds)}
        acc = {k: r["accuracy"]["top1_error"] for k, r in per_seed.items() if r and "accuracy" in r}
        sh = {k: r["shift"] for k, r in per_seed.items() if r and "shift" in r}
        rel, unnorm = [], []
        for k, r in per_seed.items():
            if not r or "corruption" not in r:
                continue
            unnorm.append(r["corruption"].get("mce"))
            base = eval_row(out, "max", k)
            if base and "corruption" in base:
                s = corruption_summary(r["corruption"]["errors"], baseline=base["corruption"]["errors"])
                rel.append(s.mce_normalized)
        times, params, lrs = [], None, []
        for k in range(seeds):
            js = _read_json(out / "runs" / key / f"seed{k}" / "summary.json")
            if js and js.get("status") == "completed":
                times.append(float(js.get("wall_time_s", math.nan)))
                params = js.get("parameters", params)
            cfg = _read_json(out / "runs" / key / f"seed{k}" / "config.json")
            if cfg:
                lrs.append((cfg.get("train") or {}).get("lr"))
        rows.append({
            "setting": key,
            "label": XL_LABELS[key],
            "lr": sweep.get(key, {}).get("chosen"),
            "parameters": params,
            "train_time_s": mean_std(times),
            "top1_error": mean_std(list(acc.values())),
            "consistency": mean_std([x["consistency"] for x in sh.values()]),
            "shifted_accuracy": mean_std([x["shifted_accuracy"] for x in sh.values()]),
            "mce_rel_max": mean_std(rel),
            "mce_unnorm": mean_std(unnorm),
            "seeds": sorted(acc),
            "lrs_used": sorted({x for x in lrs if x is not None}),
        })  # fmt: skip
    return {"budget": asdict(budget), "seeds": seeds, "rows": rows, "sweep": sweep}


def _pct(ms: tuple[float, float, int], digits: int = 2) -> str:
    return _fmt(tuple(ms), digits=digits)  # type: ignore[arg-type]  # JSON round trips give lists


def results_markdown(agg: Mapping[str, Any]) -> str:
    """The main table (values in %, mean ± sample std over seeds)."""
    lines = [
        "| setting | run folder | lr (sweep) | parameters | top-1 error (%) | shift consistency (%) | "
        "mCE rel. MaxPool (%) | mCE unnorm. (%) | seeds | train time per run (min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in agg["rows"]:
        tt = r["train_time_s"]
        lr = "–" if r["lr"] is None else f"{r['lr']:g}"
        params = "–" if r["parameters"] is None else f"{r['parameters']:,}"
        minutes = "–" if tt[2] == 0 else f"{tt[0] / 60:.0f}"
        lines.append(
            f"| {r['label']} | `{r['setting']}` | {lr} | {params} | {_pct(r['top1_error'])} | "
            f"{_pct(r['consistency'])} | {_pct(r['mce_rel_max'], 1)} | {_pct(r['mce_unnorm'], 1)} | "
            f"{len(r['seeds'])} | {minutes} |"
        )
    return "\n".join(lines) + "\n"


def sweep_markdown(agg: Mapping[str, Any], lrs: Sequence[float]) -> str:
    """The sweep: held-out top-1 error (%) per learning rate; the chosen rate in bold."""
    lines = [
        "| setting | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " | chosen |",
        "|---|" + "---|" * (len(lrs) + 1),
    ]
    for key, v in agg["sweep"].items():
        cells = []
        for lr in lrs:
            a = v["accuracy"].get(f"{lr:g}")
            c = "–" if a is None else f"{100 * (1 - a):.2f}"
            cells.append(f"**{c}**" if v["chosen"] == lr else c)
        lines.append(f"| {XL_LABELS[key]} | " + " | ".join(cells) + f" | {v['chosen'] if v['chosen'] else '–'} |")
    return "\n".join(lines) + "\n"


def _plot_results(agg: Mapping[str, Any], path: Path, title: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in agg["rows"] if r["top1_error"][2] > 0]
    if not rows:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.8))
    colors = ["tab:red" if r["setting"].startswith("lift") else "tab:gray" for r in rows]
    panels = (
        ("top1_error", "top-1 error (%)"),
        ("consistency", "shift consistency (%)"),
        ("mce_rel_max", "mCE relative to MaxPool (%)"),
    )
    for ax, (key, ylabel) in zip(axes, panels):
        vals = [r[key] for r in rows]
        ax.bar(range(len(rows)), [100 * v[0] if v[2] else 0 for v in vals],
               yerr=[100 * v[1] if v[2] else 0 for v in vals], color=colors, capsize=3)  # fmt: skip
        ax.set_xticks(range(len(rows)), [r["setting"] for r in rows], rotation=40, ha="right", fontsize=8)
        ok = [100 * v[0] for v in vals if v[2]]
        if ok:
            ax.set_ylim(max(0.0, min(ok) - 5), max(ok) + 3)
        ax.set_ylabel(ylabel + ", mean ± std")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    return True


def _plot_sweep(agg: Mapping[str, Any], lrs: Sequence[float], path: Path, per_class: int) -> bool:
    """Held-out error per learning rate, one line per setting in the colour the study's other figures
    give it (``per_class``: held-out images per class, for the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(k, v) for k, v in agg["sweep"].items() if any(a is not None for a in v["accuracy"].values())]
    if not items:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    order = list(agg["sweep"])
    for k, v in items:
        xs = [lr for lr in lrs if v["accuracy"].get(f"{lr:g}") is not None]
        ax.plot(xs, [100 * (1 - v["accuracy"][f"{lr:g}"]) for lr in xs], "o-", label=k,
                color=setting_color(k, order.index(k)))  # fmt: skip
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(list(lrs), [f"{lr:g}" for lr in lrs])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("held-out top-1 error (%)")
    ax.set_title(f"learning-rate sweep (held out: {per_class} training images per class)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    return True


def xl_recipe(budget: XLBudget, settings: Sequence[str], seeds: int) -> dict[str, Any]:
    """The recipe block of ``summary.json``: the budget, the settings (with their labels and pooling
    options) and the number of seeds asked for."""
    return {
        "description": budget.describe(),
        **asdict(budget),
        "model": "vgg13_cifar (batch norm)",
        "augment": "random crop with 4-pixel padding + horizontal flip",
        "seeds": seeds,
        "settings": {k: {"label": XL_LABELS[k], "pool": XL_SETTINGS[k].pool,
                         "pool_kwargs": dict(XL_SETTINGS[k].pool_kwargs), "constraints": XL_SETTINGS[k].constraints}
                     for k in settings},
        "evaluated_model": "last epoch",
        "lr_choice": "highest held-out accuracy after sweep_epochs (seed sweep_seed), ties to the smaller rate",
    }  # fmt: skip


def write_xl_summary(
    out: str | os.PathLike[str], *, seeds: int, budget: XLBudget, settings: Sequence[str] | None = None
) -> Path:
    """``<out>/summary.json`` (:func:`liftpool.studies.xl_summary.build_summary`), written atomically."""
    keys = parse_settings(list(settings) if settings is not None else None)
    summ = build_summary(out, settings=keys, seeds=seeds, recipe=xl_recipe(budget, keys, seeds))
    return atomic_write_json(Path(out) / "summary.json", summ)


def write_xl_report(
    out: str | os.PathLike[str], *, seeds: int, budget: XLBudget, settings: Sequence[str] | None = None
) -> list[Path]:
    """``report/results_xl.md`` + ``.png``, ``sweep_xl.md`` + ``.png``, ``aggregate_xl.json``, ``sweep.json``,
    ``summary_xl.md`` (table, paired differences and verdicts from ``summary.json``), ``readme_xl.md``
    (its short form for the README), ``curves.png``,
    ``error_vs_mce.png`` and the diagnosis (``diagnosis.md`` + figures); returns the files written."""
    from .diagnosis import write_diagnosis

    out = Path(out)
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    keys = parse_settings(list(settings) if settings is not None else None)
    agg = aggregate_xl(out, seeds=seeds, budget=budget, settings=keys)
    head = f"<!-- {budget.describe()}; {seeds} seed(s); values in %, mean ± sample std over seeds -->\n"
    written = [atomic_write_text(rep / "results_xl.md", head + results_markdown(agg))]
    if _plot_results(agg, rep / "results_xl.png", f"{budget.name} budget, {seeds} seed(s)"):
        written.append(rep / "results_xl.png")
    written.append(atomic_write_text(rep / "sweep_xl.md", head + sweep_markdown(agg, budget.lrs)))
    if _plot_sweep(agg, budget.lrs, rep / "sweep_xl.png", budget.holdout_per_class):
        written.append(rep / "sweep_xl.png")
    written.append(atomic_write_json(rep / "aggregate_xl.json", agg))
    written.append(atomic_write_json(out / "sweep.json", agg["sweep"]))
    # the report reads back the summary it publishes: the tables show exactly what summary.json holds
    summ = json.loads(write_xl_summary(out, seeds=seeds, budget=budget, settings=keys).read_text())
    md = summary_markdown(summ, settings=keys, labels=XL_LABELS, sweep=agg["sweep"])
    written.append(atomic_write_text(rep / "summary_xl.md", md))
    short = {**XL_LABELS, "lift": "LiftDownPool", "lift-avginit": "LiftDownPool, starts as AvgPool"}
    written.append(atomic_write_text(rep / "readme_xl.md", readme_markdown(summ, settings=keys, labels=short)))
    if plot_curves(out, keys, seeds, rep / "curves.png"):
        written.append(rep / "curves.png")
    if plot_error_vs_mce(summ, keys, rep / "error_vs_mce.png"):
        written.append(rep / "error_vs_mce.png")
    written += write_diagnosis(out, [r["setting"] for r in agg["rows"]], seeds=seeds, report_dir=rep)
    sec = results_section(out, seeds=seeds, budget=budget, settings=keys, report_files=written)
    written.append(atomic_write_text(rep / "results_section.md", sec))
    return written


def machine_time(out: str | os.PathLike[str]) -> dict[str, Any]:
    """What the study's finished work cost: per kind the number of jobs and their summed wall hours,
    the core-hours (wall x threads) and the machine-hours of a machine with ``cores`` cores running
    them side by side (core-hours / cores, the cores being workers x threads of the job records),
    and how many job records each CPU model made (``cpus``: the study may run on several machines).

    Training and sweep runs count the ``wall_time_s`` of their completed ``summary.json``, which adds
    up every stretch of a run resumed from its checkpoint (a job record times only the stretch it ran,
    and a stretch stopped before its end (a deadline, a kill) leaves no record); evaluations and diverged sweep
    runs count their job records (``<out>/jobs/*.json``)."""
    from .jobs import History

    out = Path(out)
    recs = [r for r in History.load(out / "jobs").records if r.get("ok")]
    kinds: dict[str, dict[str, float]] = {}
    core_h = 0.0
    cores = max([1, *(int(r.get("threads") or 1) * int(r.get("workers") or 1) for r in recs)])

    def add(kind: str, wall_s: float, threads: int) -> None:
        nonlocal core_h
        k = kinds.setdefault(kind, {"jobs": 0, "wall_h": 0.0})
        k["jobs"] += 1
        k["wall_h"] += wall_s / 3600
        core_h += wall_s * threads / 3600

    for kind, pattern in (("sweep", "sweep/*/lr*/summary.json"), ("train", "runs/*/seed*/summary.json")):
        for path in sorted(out.glob(pattern)):
            summ = _read_json(path)
            wall = summ.get("wall_time_s") if summ else None
            if summ and summ.get("status") == "completed" and isinstance(wall, (int, float)):
                add(kind, float(wall), int(summ.get("threads") or 1))
    for r in recs:
        if r.get("kind") not in ("sweep", "train") or r.get("diverged"):
            add(str(r.get("kind")), float(r["wall_s"]), int(r.get("threads") or 1))
    cpus = collections.Counter(str(r.get("cpu") or "unknown") for r in recs)
    return {"kinds": {k: {"jobs": int(v["jobs"]), "wall_h": round(v["wall_h"], 2)} for k, v in kinds.items()},
            "core_hours": round(core_h, 2), "cores": cores, "machine_hours": round(core_h / cores, 2),
            "cpus": dict(sorted(cpus.items()))}  # fmt: skip


def results_section(
    out: str | os.PathLike[str], *, seeds: int, budget: XLBudget, settings: Sequence[str], report_files: Sequence[Path]
) -> str:
    """The generated part of the results page: status, cost, the summary tables and verdicts, the
    sweep, the figures (by file name, next to this file in ``report/``) and the diagnosis."""
    out = Path(out)
    summ = read_summary(out)
    runs = summ.get("runs", []) if summ else []
    done = {(r["setting"], r["seed"]) for r in runs if r["setting"] in settings and r["seed"] < seeds}
    mt = machine_time(out)
    names = {p.name for p in report_files}
    per = ", ".join(f"{k} {v['jobs']} jobs / {v['wall_h']:.1f} h" for k, v in sorted(mt["kinds"].items()))
    cpus = ", ".join(f"{k} ({v})" for k, v in mt["cpus"].items())
    further = [s for s in settings if s not in XL_PRIORITY]
    first = [s for s in settings if s in XL_PRIORITY]
    if further and first:  # the priority settings first, the further ones apart
        n_further = sum(s in further for s, _ in done)
        status = (
            f"**Status: {len(done) - n_further} of {len(first) * seeds} planned runs of the {len(first)} priority "
            f"settings finished and evaluated; further settings ({', '.join(further)}): {n_further} of "
            f"{len(further) * seeds}** ({seeds} seeds each; per setting below)."
        )
    else:
        status = (
            f"**Status: {len(done)} of {len(settings) * seeds} planned runs finished and evaluated** "
            f"({len(settings)} settings x {seeds} seeds; per setting below)."
        )
    lines = [
        f"{status}  Machine time of the finished jobs: **{mt['machine_hours']:.1f} h** "
        f"of the {mt['cores']}-core machine ({mt['core_hours']:.1f} core-hours; {per or 'none yet'})"
        + (f"; CPUs of the job records (jobs): {cpus}." if cpus else "."),
        "",
    ]
    rep = out / "report"
    for title, f in (("Results", "summary_xl.md"), ("Learning rates (held-out sweep)", "sweep_xl.md")):
        if (rep / f).exists():
            body = [x for x in (rep / f).read_text().splitlines() if not x.startswith("<!--")]
            lines += [f"### {title}", "", *body, ""]
    figs = [(n, cap) for n, cap in (
        ("curves.png", "test error per epoch per setting (mean over seeds, band = min-max)"),
        ("error_vs_mce.png", "clean error vs mCE relative to MaxPool, one point per run"),
        ("sweep_xl.png", "learning-rate sweep on the held-out split"),
        ("diag_pu.png", "LiftDownPool's P and U over training"),
        ("diag_constraints.png", "constraint terms over training"),
        ("diag_grads.png", "gradient norms per pooling stage"),
    ) if n in names]  # fmt: skip
    if figs:
        lines += ["### Figures", ""] + [f"![{cap}]({n})" for n, cap in figs] + [""]
    if (rep / "diagnosis.md").exists():
        body = (rep / "diagnosis.md").read_text().splitlines()
        lines += ["###" + x[2:] if x.startswith("## ") else x for x in body] + [""]
    return "\n".join(lines)


def read_summary(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``<out>/summary.json`` (None if missing or unreadable)."""
    s = _read_json(Path(out) / "summary.json")
    return s if isinstance(s, dict) else None


# --------------------------------------------------------------------------- estimate
def _ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


def estimate(
    *, budget: XLBudget, settings: Sequence[str], seeds: int, cifar_dir: str | os.PathLike[str],
    steps: int = 10, warmup: int = 3, echo: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Time ``steps`` SGD steps per setting (after ``warmup``) on the real data and extrapolate the study.

    Each step is what ``liftpool train`` does per batch (data loading with the pad-crop/flip
    augmentation in this process, as the runs do with ``--num-workers 0``, forward, cross-entropy
    plus the constraint losses where on, backward, SGD).  Also timed: an evaluation forward pass
    (batch 100, no gradients) per setting and the 15 corruptions at 5 severities on a few images.
    Costs: sweep = ``len(lrs) x sweep_epochs`` epochs on 90 % of the training set plus a held-out
    validation per epoch; training = ``seeds x epochs`` epochs; evaluation per run = the clean test
    set, 2 shifted copies, 75 corrupted copies and a clean pass of the corruption subset.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..data import build_datasets
    from ..evaluation.corruptions import CORRUPTIONS, corrupt
    from ..losses import lifting_loss
    from ..models import create_model

    if steps < 1 or warmup < 0:
        raise ValueError(f"--estimate-steps must be >= 1 and --estimate-warmup >= 0, got {steps}, {warmup}")
    keys = parse_settings(list(settings))
    data = build_datasets("imagefolder", cifar_dir, val_split="test", augment="cifar")
    n_train, n_test = len(data.train), len(data.val)  # type: ignore[arg-type]
    n_classes = int(data.info["num_classes"])
    if budget.train_per_class is not None:
        n_train = min(n_train, budget.train_per_class * n_classes)
    if budget.test_per_class is not None:
        n_test = min(n_test, budget.test_per_class * n_classes)
    n_hold = budget.holdout_per_class * n_classes
    steps_final = n_train // budget.batch_size
    steps_sweep = (n_train - n_hold) // budget.batch_size
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    echo(f"estimate: {threads} torch thread(s), {n_train} train / {n_test} test images, batch {budget.batch_size}, "
         f"{warmup} warm-up + {steps} timed steps per setting")  # fmt: skip
    per: dict[str, Any] = {}
    for key in keys:
        s = XL_SETTINGS[key]
        torch.manual_seed(0)
        kw: dict[str, Any] = {"pool_kwargs": dict(s.pool_kwargs)} if s.pool_kwargs else {}
        model = create_model("vgg13_cifar", pool=s.pool, num_classes=n_classes, width=budget.width, **kw)
        opt = torch.optim.SGD(model.parameters(), lr=budget.lrs[0], momentum=budget.momentum,
                              weight_decay=budget.weight_decay)  # fmt: skip
        loader = DataLoader(data.train, batch_size=budget.batch_size, shuffle=True, num_workers=0, generator=g)
        it = iter(loader)
        t_data = t_step = 0.0
        model.train()
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            x, y = next(it)
            t1 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            if s.constraints:
                loss = loss + lifting_loss(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch's stubs
            opt.step()
            t2 = time.perf_counter()
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"{key}: non-finite loss while timing")
            if i >= warmup:
                t_data += t1 - t0
                t_step += t2 - t1
        model.eval()
        xb = x[:100] if x.shape[0] >= 100 else x
        with torch.no_grad():
            model(xb)
            t0 = time.perf_counter()
            for _ in range(3):
                model(xb)
            t_fwd = (time.perf_counter() - t0) / 3 / xb.shape[0]  # seconds per image
        step_s = (t_data + t_step) / steps
        per[key] = {"step_ms": _ms(step_s), "compute_ms": _ms(t_step / steps), "data_ms": _ms(t_data / steps),
                    "eval_ms_per_image": round(1000 * t_fwd, 3),
                    "min_per_epoch": round(step_s * steps_final / 60, 2)}  # fmt: skip
        echo(f"  {key:13s} {per[key]['step_ms']:7.1f} ms/step (compute {per[key]['compute_ms']:.1f}, data "
             f"{per[key]['data_ms']:.1f}), {per[key]['min_per_epoch']:.2f} min/epoch, eval forward "
             f"{per[key]['eval_ms_per_image']:.3f} ms/image")  # fmt: skip
    # corruptions: the numpy generation cost per image, all 15 x 5
    raw = torch.rand(8, 3, 32, 32, generator=g)
    t0 = time.perf_counter()
    for c in CORRUPTIONS:
        for sev in range(1, 6):
            corrupt(raw, c, sev, rng=0)
    corr_ms = 1000 * (time.perf_counter() - t0) / (raw.shape[0] * len(CORRUPTIONS) * 5)
    echo(f"  corruptions: {corr_ms:.3f} ms per image and corruption/severity (mean over 15 x 5)")
    n_corr = n_test if budget.corruption_images is None else min(n_test, budget.corruption_images)
    hours: dict[str, float] = {"sweep": 0.0, "train": 0.0, "eval": 0.0}
    for p in per.values():
        st, fwd = p["step_ms"] / 1000, p["eval_ms_per_image"] / 1000
        sweep = len(budget.lrs) * budget.sweep_epochs * (steps_sweep * st + n_hold * fwd)
        train = seeds * budget.epochs * steps_final * st
        ev = seeds * ((n_test * 3 + n_corr * (75 + 1)) * fwd + n_corr * 75 * corr_ms / 1000)
        p.update(sweep_h=round(sweep / 3600, 2), train_h=round(train / 3600, 2), eval_h=round(ev / 3600, 2))
        hours["sweep"] += sweep / 3600
        hours["train"] += train / 3600
        hours["eval"] += ev / 3600
    total = sum(hours.values())
    res = {
        "budget": asdict(budget),
        "settings": keys,
        "seeds": seeds,
        "threads": threads,
        "steps": steps,
        "warmup": warmup,
        "steps_per_epoch": {"final": steps_final, "sweep": steps_sweep},
        "per_setting": per,
        "corruption_ms_per_image": round(corr_ms, 3),
        "hours": {k: round(v, 2) for k, v in hours.items()},
        "total_wall_h": round(total, 2),
        "core_hours": round(total * threads, 1),
        "jobs": {"sweep": len(keys) * len(budget.lrs), "train": len(keys) * seeds, "eval": len(keys) * seeds},
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    echo(f"whole study ({len(keys)} settings, {seeds} seeds): sweep {hours['sweep']:.1f} h + training "
         f"{hours['train']:.1f} h + evaluation {hours['eval']:.1f} h = {total:.1f} h wall with {threads} thread(s) "
         f"= {total * threads:.0f} core-hours")  # fmt: skip
    return res


def estimate_markdown(est: Mapping[str, Any]) -> str:
    lines = [
        "| setting | ms / step | of which data | min / epoch (50k) | sweep (h) | training (h) | evaluation (h) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, p in est["per_setting"].items():
        lines.append(f"| {k} | {p['step_ms']:.0f} | {p['data_ms']:.0f} | {p['min_per_epoch']:.2f} | {p['sweep_h']:.2f} "
                     f"| {p['train_h']:.2f} | {p['eval_h']:.2f} |")  # fmt: skip
    h = est["hours"]
    lines.append(f"| **total** | | | | {h['sweep']:.1f} | {h['train']:.1f} | {h['eval']:.1f} |")
    lines.append("")
    lines.append(f"Whole study: **{est['total_wall_h']:.1f} h wall** with {est['threads']} thread(s) = "
                 f"**{est['core_hours']:.0f} core-hours**; corruption generation "
                 f"{est['corruption_ms_per_image']:.2f} ms per image and corruption.")  # fmt: skip
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI
def run(args: argparse.Namespace) -> int:
    """``liftpool reproduce --budget xl|xl-tiny ...`` (called by :func:`liftpool.studies.reproduce.run`)."""
    if getattr(args, "table", None):
        raise ValueError("--table does not apply to the xl budgets (they have their own settings; see --settings)")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    workers = getattr(args, "workers", 1) or 1
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    deadline = parse_deadline(args.deadline) if getattr(args, "deadline", None) else None
    budget = XL_BUDGETS[args.budget]
    keys = parse_settings(getattr(args, "settings", None))
    out = Path(args.out)
    cifar, _ = resolve_data_dirs(args)
    if cifar is None and not args.report_only:
        raise ValueError("no CIFAR-10 ImageFolder: pass --data-root containing cifar10-jpeg/ or --cifar-dir")
    out.mkdir(parents=True, exist_ok=True)
    if getattr(args, "estimate", False):
        assert cifar is not None
        est = estimate(budget=budget, settings=keys, seeds=args.seeds, cifar_dir=cifar,
                       steps=args.estimate_steps, warmup=args.estimate_warmup)  # fmt: skip
        atomic_write_json(out / "estimate.json", est)
        atomic_write_text(out / "estimate.md", estimate_markdown(est))
        print(estimate_markdown(est))
        return 0
    log_path = out / "reproduce.log"

    def log(msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC] {msg}"
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    cache = getattr(args, "corruption_cache", None) or default_corruption_cache()
    plan = build_xl_plan(budget=budget, settings=keys, seeds=args.seeds, out=out, cifar_dir=cifar or "",
                         corruption_cache=cache)  # fmt: skip
    if args.dry_run:
        hist, cpu = History.load(out / "jobs"), cpu_model()
        nthreads = threads or max(1, (os.cpu_count() or 1) // workers)
        left = 0.0
        for j in plan:
            done = j.done()
            why = j.blocked()
            cmd = f"liftpool {' '.join(j.argv())}" if why is None else f"(waits: {why})"
            if done:
                print(f"done    {j.name}: {cmd}")
                continue
            exp = expected_rest(hist, j, nthreads, cpu)
            left += exp
            print(f"pending {j.name} (expected {exp / 60:.0f} min here): {cmd}")
        n = {k: sum(j.kind == k for j in plan) for k in ("sweep", "train", "eval")}
        print(f"{len(plan)} jobs: {n['sweep']} sweep runs, {n['train']} training runs, {n['eval']} evaluations; "
              f"the pending ones are expected to take {left / 3600 / workers:.1f} h with {workers} worker(s) x "
              f"{nthreads} thread(s) on this CPU ({cpu}; from the job records, scaled to this CPU where it has none)")
        return 0
    commit = bool(getattr(args, "commit", False))

    def report() -> list[Path]:
        return [*write_xl_report(out, seeds=args.seeds, budget=budget, settings=keys), out / "summary.json"]

    def on_done(job: Job, record: Mapping[str, Any], extra: Sequence[Path]) -> None:
        try:
            files = report()
        except Exception as e:  # noqa: BLE001  # a failed report must not stop the study
            log(f"report failed after {job.name}: {type(e).__name__}: {e}")
            files = []
        if commit:
            paths = [Path(job.out), out / "jobs" / f"{job.file_name}.json", out / "logs" / f"{job.file_name}.log",
                     log_path, out / "holdout.json", out / "sweep.json", *extra, *files]  # fmt: skip
            ok, msg = git_commit(paths, f"{out.name} study: {job.name} finished in {record['wall_s'] / 60:.0f} min")
            log(f"git: {'committed' if ok else 'not committed'} ({msg})")

    failed = 0
    if not args.report_only:
        assert cifar is not None
        full, hold = data_dirs(out, budget)
        log(f"{budget.describe()}; settings {', '.join(keys)}; seeds {args.seeds}; {len(plan)} jobs")
        make_class_subset(cifar, full, {"train": budget.train_per_class, "test": budget.test_per_class})
        make_holdout(full / "train", hold, budget.holdout_per_class, seed=0, record=out / "holdout.json")
        failed = run_jobs(plan, out, workers=workers, threads=threads, deadline=deadline, stop_at=args.stop_at,
                          log=log, on_done=on_done)  # fmt: skip
    files = report()
    log(f"report: {', '.join(str(f) for f in files)}")
    return 1 if failed else 0
