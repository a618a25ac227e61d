"""Evaluate several trained models on one data set and write JSON, Markdown and figures.

This is what ``liftpool eval`` runs; it is also usable from Python with models in memory::

    rows = evaluate_models([ModelEntry("max", model, config)], dataset, out_dir="eval-out",
                           options=EvalOptions(metrics=("accuracy", "shift")))

``dataset`` yields ``(image, target)`` with **un-normalised** images in [0, 1]
(:func:`raw_eval_dataset` builds it from a checkpoint's ``config["data"]``); each model is
wrapped in :class:`~liftpool.evaluation.runners.Normalized` with its config's mean/std.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .corruptions import ALL_CORRUPTIONS, CORRUPTIONS, Profile, resolve_profile
from .metrics import corruption_summary, perturbation_summary
from .perturbations import PERTURBATIONS
from .report import write_results
from .runners import (
    Normalized,
    evaluate_accuracy,
    evaluate_corruptions,
    evaluate_perturbations,
    evaluate_segmentation,
    evaluate_shift_consistency,
    model_output,
)

__all__ = [
    "CLASSIFICATION_METRICS",
    "SEGMENTATION_METRICS",
    "EvalOptions",
    "ModelEntry",
    "evaluate_models",
    "raw_eval_dataset",
    "resolve_split",
]

log = logging.getLogger("liftpool.eval")

CLASSIFICATION_METRICS = ("accuracy", "shift", "corruption", "perturbation", "figures")
SEGMENTATION_METRICS = ("segmentation", "figures")


class ModelEntry(NamedTuple):
    """A model to evaluate: display ``label``, the (un-normalised-input-unaware) network, its
    checkpoint ``config`` (needs ``config["data"]["mean"/"std"]``) and where it came from."""

    label: str
    model: nn.Module
    config: dict[str, Any]
    path: str | None = None


@dataclasses.dataclass
class EvalOptions:
    """Options of :func:`evaluate_models` (the CLI flags of ``liftpool eval``)."""

    metrics: Sequence[str] | None = None  # None: all for the task
    max_images: int | None = None
    batch_size: int = 100
    workers: int = 0
    device: str = "cpu"
    seed: int = 0
    # shift consistency
    max_shift: int | None = None  # None: side // 8 (4 px on CIFAR) in pad mode
    crop: int | None = None
    pad_mode: str = "reflect"
    per_image_shifts: bool = False
    # corruptions
    corruptions: Sequence[str] = ALL_CORRUPTIONS
    severities: Sequence[int] = (1, 2, 3, 4, 5)
    corruption_images: int | None = 500
    profile: Profile = "auto"
    ce_baseline: str | None = None  # label of an evaluated model to normalise CE/FR by
    corruption_cache: str | None = None  # folder of corrupted copies reused across evaluations
    # perturbations
    perturbations: Sequence[str] = PERTURBATIONS
    frames: int = 10
    perturbation_images: int | None = 100
    # figures
    figure_images: int = 3
    progress: bool = True


def resolve_split(data_dir: str | os.PathLike[str], dataset: str, split: str) -> str:
    """``split="auto"``: ``test`` when the data has one, else ``val``."""
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"data directory {str(root)!r} is not a directory")
    if split != "auto":
        return split
    for cand in ("test", "val"):
        if (root / cand).is_dir() or (root / f"{cand}.txt").is_file():
            return cand
    if dataset in ("cifar10", "cifar100"):
        return "test"
    raise FileNotFoundError(f"no 'test' or 'val' split under {str(root)!r}; pass --split")


def corruption_scope(
    errors: Mapping[str, Any], image_hw: tuple[int, int], profile: Profile, num_classes: Any
) -> dict[str, Any]:
    """What the mean corruption error of ``errors`` may be called and normalised by.

    ``mce_name`` is ``"mCE"`` only when all 15 benchmark corruptions were evaluated, else
    ``"mean CE over k corruptions (not mCE: j of the 15 benchmark corruptions)"``.
    ``alexnet_normalized`` (divide by AlexNet's published ImageNet-C errors) only for
    ImageNet-sized images (the ImageNet-C severity table) of a 1000-class model: on a small
    or custom data set the ratio to AlexNet's ImageNet-C errors means nothing.
    """
    bench = sum(1 for c in CORRUPTIONS if c in errors)
    complete = bench == len(CORRUPTIONS)
    if complete:
        name = "mCE"
    else:
        k = bench if bench else len(errors)
        name = (
            f"mean CE over {k} corruption{'s' if k != 1 else ''} "
            f"(not mCE: {bench} of the {len(CORRUPTIONS)} benchmark corruptions)"
        )
    table, _ = resolve_profile(int(image_hw[0]), int(image_hw[1]), profile)
    return {
        "benchmark_corruptions": bench,
        "mce_complete": complete,
        "mce_name": name,
        "alexnet_normalized": table == "imagenet" and num_classes == 1000,
    }


def raw_eval_dataset(
    config: dict[str, Any], data_dir: str | os.PathLike[str], split: str = "auto", *, image_size: int | None = None
) -> tuple[Dataset[Any], dict[str, Any]]:
    """The evaluation split of a checkpoint's data set, with its validation resizing/cropping
    but **without** normalisation: images are float ``(3, H, W)`` in [0, 1].

    ``image_size`` overrides the centre-crop size of classification data (e.g. 256 for
    Zhang's shift protocol: resize to 256, then two random 224 crops).
    Returns ``(dataset, info)`` where ``info`` is :func:`liftpool.data.build_datasets`' info.
    """
    from ..data import build_datasets

    data = config.get("data") or {}
    name = data.get("dataset")
    if not name:
        raise ValueError("the checkpoint config has no data['dataset']; cannot tell how to read --data-dir")
    split = resolve_split(data_dir, name, split)
    kw: dict[str, Any] = dict(
        val_split=split,
        train_split=split,  # only the evaluation split needs to exist
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        num_classes=data.get("num_classes") or (config.get("model") or {}).get("num_classes"),
        check_labels=False,
    )
    if config.get("task") == "segmentation":
        kw.update(augment="none", crop_size=None)
    else:
        kw.update(
            augment=data.get("augment") or "auto",
            image_size=image_size or data.get("image_size"),
            val_resize=data.get("val_resize"),
        )
    ds = build_datasets(name, data_dir, **kw)
    return ds.val, ds.info


def _subset(dataset: Dataset[Any], n: int | None, seed: int) -> Dataset[Any]:
    total = len(dataset)  # type: ignore[arg-type]
    if n is None or n >= total:
        return dataset
    if n < 1:
        raise ValueError(f"image limits must be >= 1, got {n}")
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return Subset(dataset, idx.tolist())


def _loader(dataset: Dataset[Any], opts: EvalOptions) -> DataLoader[Any]:
    return DataLoader(dataset, batch_size=opts.batch_size, shuffle=False, num_workers=opts.workers)


def _first_pool_maps(model: nn.Module, x: torch.Tensor) -> tuple[Any, torch.Tensor, Any]:
    """(capture, map to show, bands or None): the LL band for LiftDownPool, else the output."""
    from ..layers import LiftDownPool2d
    from ..viz import capture_first_pool

    cap = capture_first_pool(model, x)
    if isinstance(cap.module, LiftDownPool2d):
        with torch.no_grad():
            bands = cap.module.decompose(cap.input)
        return cap, bands.LL, bands
    return cap, cap.output, None


def _check_request(entries: Sequence[ModelEntry], opts: EvalOptions, task: str) -> tuple[str, ...]:
    """The metrics to run; raises ``ValueError`` for a bad task, metric, label or CE baseline."""
    if task not in ("classification", "segmentation"):
        raise ValueError(f"task must be 'classification' or 'segmentation', got {task!r}")
    allowed = CLASSIFICATION_METRICS if task == "classification" else SEGMENTATION_METRICS
    metrics = tuple(opts.metrics) if opts.metrics else allowed
    bad = [m for m in metrics if m not in allowed]
    if bad:
        raise ValueError(f"metrics {bad} do not apply to {task}; choose from {', '.join(allowed)}")
    if not entries:
        raise ValueError("no model to evaluate")
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"model labels must be unique, got {labels}")
    if opts.ce_baseline is not None and opts.ce_baseline not in labels:
        raise ValueError(f"--ce-baseline {opts.ce_baseline!r} is not one of the evaluated labels {labels}")
    return metrics


@dataclasses.dataclass
class _Eval:
    """What every model of one :func:`evaluate_models` call is evaluated with."""

    opts: EvalOptions
    metrics: tuple[str, ...]
    task: str
    device: torch.device
    ds: Dataset[Any]  # the evaluation images (after --max-images)
    shift_dataset: Dataset[Any] | None
    class_names: Sequence[str] | None
    ignore_index: int | None
    echo: Callable[[str], None]


def _accuracy(ev: _Eval, label: str, net: nn.Module, row: dict[str, Any]) -> None:
    opts = ev.opts
    acc = evaluate_accuracy(net, _loader(ev.ds, opts), device=ev.device, progress=opts.progress)
    row["accuracy"] = acc._asdict()
    ev.echo(f"[{label}] top-1 error {100 * acc.top1_error:.2f} %, top-5 error {100 * acc.top5_error:.2f} %")


def _shift(ev: _Eval, label: str, net: nn.Module, row: dict[str, Any]) -> None:
    opts, device = ev.opts, ev.device
    crop = opts.crop
    max_shift = opts.max_shift
    sds = ev.ds if ev.shift_dataset is None else _subset(ev.shift_dataset, opts.max_images, opts.seed)
    if crop is None and max_shift is None:
        side = min(sds[0][0].shape[-2:])
        max_shift = max(1, side // 8)
    sh = evaluate_shift_consistency(
        net, _loader(sds, opts), max_shift=max_shift, crop=crop, pad_mode=opts.pad_mode,  # type: ignore[arg-type]
        per_image=opts.per_image_shifts, seed=opts.seed, device=device, progress=opts.progress,
    )  # fmt: skip
    row["shift"] = sh._asdict()
    ev.echo(
        f"[{label}] shift consistency {100 * sh.consistency:.2f} %, accuracy on shifted crops "
        f"{100 * sh.shifted_accuracy:.2f} %"
    )


def _corruption(ev: _Eval, e: ModelEntry, net: nn.Module, row: dict[str, Any]) -> None:
    opts, device = ev.opts, ev.device
    cds = _subset(ev.ds, opts.corruption_images, opts.seed + 1)
    errs = evaluate_corruptions(
        net, _loader(cds, opts), corruptions=opts.corruptions, severities=opts.severities,
        seed=opts.seed, profile=opts.profile, device=device, progress=opts.progress, cache_dir=opts.corruption_cache,
    )  # fmt: skip
    clean = evaluate_accuracy(net, _loader(cds, opts), device=device).top1_error
    n_classes = (e.config.get("model") or {}).get("num_classes")
    scope = corruption_scope(errs, tuple(cds[0][0].shape[-2:]), opts.profile, n_classes)
    summ = corruption_summary(errs, clean_error=clean, baseline=None if scope["alexnet_normalized"] else {})
    row["corruption"] = {
        **summ._asdict(),
        **scope,
        "severities": list(opts.severities),
        "images": len(cds),  # type: ignore[arg-type]
        "profile": opts.profile,
        "normalization_note": "ce/mce: unnormalised mean top-1 error over severities ('mce' is an "
        "mCE only when mce_complete: all 15 benchmark corruptions); ce_normalized/mce_normalized: "
        "divided by AlexNet's published ImageNet-C errors (Hendrycks & Dietterich 2019), only for "
        "ImageNet-sized 1000-class data (else null)",
    }
    ev.echo(
        f"[{e.label}] {scope['mce_name']} unnormalised {100 * (summ.mce or 0):.2f} %"
        + (f", AlexNet-normalised {100 * summ.mce_normalized:.2f} %" if summ.mce_normalized is not None else "")
        + f", relative (unnormalised) {100 * (summ.relative_mce or 0):.2f} % "
        f"(clean error on these {len(cds)} images {100 * clean:.2f} %)"  # type: ignore[arg-type]
    )


def _perturbation(ev: _Eval, label: str, net: nn.Module, row: dict[str, Any]) -> None:
    opts = ev.opts
    pds = _subset(ev.ds, opts.perturbation_images, opts.seed + 2)
    fr = evaluate_perturbations(
        net, _loader(pds, opts), perturbations=opts.perturbations, frames=opts.frames,
        seed=opts.seed, device=ev.device, progress=opts.progress,
    )  # fmt: skip
    ps = perturbation_summary(fr)
    row["perturbation"] = {**ps._asdict(), "frames": opts.frames, "images": len(pds)}  # type: ignore[arg-type]
    ev.echo(f"[{label}] mFR (raw) {100 * (ps.mfr or 0):.2f} % over {len(fr)} perturbation types")


def _segmentation(ev: _Eval, e: ModelEntry, net: nn.Module, row: dict[str, Any]) -> None:
    num_classes = int((e.config.get("model") or {}).get("num_classes") or len(ev.class_names or []))
    seg = evaluate_segmentation(
        net,
        _loader(ev.ds, ev.opts),
        num_classes=num_classes,
        ignore_index=ev.ignore_index,
        device=ev.device,
        progress=ev.opts.progress,
    )
    row["segmentation"] = {
        **seg._asdict(),
        "class_names": list(ev.class_names) if ev.class_names else None,
        "ignore_index": ev.ignore_index,
    }
    ev.echo(f"[{e.label}] mIoU {100 * seg.miou:.2f} %, pixel accuracy {100 * seg.pixel_accuracy:.2f} %")


def _evaluate_entry(ev: _Eval, e: ModelEntry) -> tuple[nn.Module, dict[str, Any]]:
    """Wrap one model with its normalisation and run the requested metrics; returns (wrapped model, result row)."""
    device, metrics = ev.device, ev.metrics
    n_images = len(ev.ds)  # type: ignore[arg-type]
    data = e.config.get("data") or {}
    mean, std = data.get("mean") or (0.0, 0.0, 0.0), data.get("std") or (1.0, 1.0, 1.0)
    net = Normalized(e.model, mean, std).to(device).eval()
    row: dict[str, Any] = {
        "label": e.label,
        "checkpoint": e.path,
        "model": e.config.get("model"),
        "task": ev.task,
        "images": n_images,
        "normalization": {"mean": list(map(float, mean)), "std": list(map(float, std))},
        "figures": [],
    }
    t0 = time.time()
    ev.echo(f"[{e.label}] evaluating {n_images} images on {device} ({', '.join(m for m in metrics if m != 'figures')})")
    if ev.task == "classification":
        if "accuracy" in metrics:
            _accuracy(ev, e.label, net, row)
        if "shift" in metrics:
            _shift(ev, e.label, net, row)
        if "corruption" in metrics:
            _corruption(ev, e, net, row)
        if "perturbation" in metrics:
            _perturbation(ev, e.label, net, row)
    else:
        _segmentation(ev, e, net, row)
    row["seconds"] = round(time.time() - t0, 2)
    return net, row


def _normalise_by_baseline(rows: list[dict[str, Any]], baseline: str) -> None:
    """Add CE/FR normalised by another evaluated model (e.g. the MaxPool network) to every row."""
    base = next(r for r in rows if r["label"] == baseline)
    for r in rows:
        if "corruption" in r and "corruption" in base:
            s = corruption_summary(
                r["corruption"]["errors"],
                clean_error=r["corruption"]["clean_error"],
                baseline=base["corruption"]["errors"],
                baseline_name=baseline,
                baseline_clean_error=base["corruption"]["clean_error"],
            )
            r["corruption"]["vs_baseline"] = {
                "baseline": baseline,
                "ce_normalized": s.ce_normalized,
                "mce_normalized": s.mce_normalized,
                "relative_mce_normalized": s.relative_mce_normalized,
            }
        if "perturbation" in r and "perturbation" in base:
            p = perturbation_summary(
                r["perturbation"]["fr"], baseline=base["perturbation"]["fr"], baseline_name=baseline
            )
            r["perturbation"].update(
                fr_normalized=p.fr_normalized, mfr_normalized=p.mfr_normalized, baseline=p.baseline
            )


def evaluate_models(
    entries: Sequence[ModelEntry],
    dataset: Dataset[Any],
    *,
    out_dir: str | os.PathLike[str],
    options: EvalOptions | None = None,
    task: str = "classification",
    class_names: Sequence[str] | None = None,
    ignore_index: int | None = 255,
    meta: dict[str, Any] | None = None,
    echo: Callable[[str], None] = print,
    shift_dataset: Dataset[Any] | None = None,
) -> list[dict[str, Any]]:
    """Run the requested metrics for every entry, write ``results.json``, ``results.md`` and
    figures under ``out_dir``; returns one result dict per entry.

    ``shift_dataset`` (default ``dataset``) feeds the shift-consistency test, e.g. 256-pixel
    images for 224 crops."""
    opts = options or EvalOptions()
    metrics = _check_request(entries, opts, task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    device = torch.device(opts.device)
    ds = _subset(dataset, opts.max_images, opts.seed)
    ev = _Eval(opts, metrics, task, device, ds, shift_dataset, class_names, ignore_index, echo)
    rows: list[dict[str, Any]] = []
    wrapped: dict[str, nn.Module] = {}
    for e in entries:
        wrapped[e.label], row = _evaluate_entry(ev, e)
        rows.append(row)
    if opts.ce_baseline is not None:
        _normalise_by_baseline(rows, opts.ce_baseline)
    if "figures" in metrics:
        figs = _figures(
            entries, wrapped, ds, rows, out / "figures", opts, task, class_names, ignore_index, device, echo
        )
        for r in rows:
            r["figures"] = [os.path.relpath(f, out) for f in figs.get(r["label"], []) + figs.get("*", [])]
    j, m = write_results(
        out, rows, meta={**(meta or {}), "task": task, "metrics": list(metrics), "options": _opts_dict(opts)}
    )
    echo(f"wrote {j} and {m}")
    return rows


def _opts_dict(opts: EvalOptions) -> dict[str, Any]:
    d = dataclasses.asdict(opts)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _figures(
    entries: Sequence[ModelEntry],
    wrapped: dict[str, nn.Module],
    ds: Dataset[Any],
    rows: list[dict[str, Any]],
    fig_dir: Path,
    opts: EvalOptions,
    task: str,
    class_names: Sequence[str] | None,
    ignore_index: int | None,
    device: torch.device,
    echo: Callable[[str], None],
) -> dict[str, list[str]]:
    from ..viz import (
        plot_consistency_vs_accuracy,
        plot_metric_per_type,
        plot_pooled_feature_maps,
        plot_segmentation_overlays,
        plot_subbands,
    )

    figs: dict[str, list[str]] = {}
    def add(key: str, p: Any) -> None:
        figs.setdefault(key, []).append(str(p))

    k = max(1, min(opts.figure_images, len(ds)))  # type: ignore[arg-type]
    samples = [ds[i] for i in range(k)]
    images = torch.stack([s[0] for s in samples])
    x0 = images[:1].to(device)
    # Fig. 3 (sub-bands) per model with a LiftDownPool first, Fig. 7 (pooled maps) for all
    pooled: dict[str, torch.Tensor] = {}
    for e in entries:
        try:
            cap, shown, bands = _first_pool_maps(wrapped[e.label], x0)
        except ValueError as err:
            echo(f"[{e.label}] no pooling-layer figure: {err}")
            continue
        kind = type(cap.module).__name__
        pooled[f"{e.label}: {kind}{' LL' if bands is not None else ''}"] = shown
        if bands is not None:
            p = plot_subbands(
                bands, fig_dir / f"fig3_subbands_{_safe(e.label)}.png", image=images[0], feature=cap.input,
                title=f"{e.label}: sub-bands of the first LiftDownPool layer ({cap.name})",
            )  # fmt: skip
            add(e.label, p)
    if pooled:
        add("*", plot_pooled_feature_maps(pooled, fig_dir / "fig7_first_pool_feature_maps.png", image=images[0]))
    if task == "classification":
        pts = {r["label"]: (r["shift"]["shifted_accuracy"], r["shift"]["consistency"]) for r in rows if "shift" in r}
        if pts:
            add("*", plot_consistency_vs_accuracy(pts, fig_dir / "fig4_consistency_vs_accuracy.png"))
        ce = {r["label"]: r["corruption"]["ce"] for r in rows if "corruption" in r}
        if ce:
            add("*", plot_metric_per_type(ce, fig_dir / "fig9_ce_per_corruption.png", ylabel="CE, unnormalised (%)",
                                          title="Corruption error per corruption (mean top-1 error over "
                                                "severities)"))  # fmt: skip
        fr = {r["label"]: r["perturbation"]["fr"] for r in rows if "perturbation" in r}
        if fr:
            add("*", plot_metric_per_type(fr, fig_dir / "fig9_fr_per_perturbation.png", ylabel="flip rate, raw (%)",
                                          title="Flip rate per perturbation"))  # fmt: skip
    else:
        gts = torch.stack([s[1] for s in samples])
        preds = {}
        with torch.no_grad():
            for e in entries:
                logits = model_output(wrapped[e.label], images.to(device))
                if logits.shape[-2:] != gts.shape[-2:]:
                    logits = torch.nn.functional.interpolate(
                        logits, size=tuple(gts.shape[-2:]), mode="bilinear", align_corners=False
                    )
                preds[e.label] = logits.argmax(dim=1).cpu()
        add("*", plot_segmentation_overlays(images, preds, gts, fig_dir / "fig5_segmentation.png",
                                            class_names=class_names, ignore_index=ignore_index))  # fmt: skip
    echo(f"figures: {sum(len(v) for v in figs.values())} PNG files in {fig_dir}")
    return figs


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
