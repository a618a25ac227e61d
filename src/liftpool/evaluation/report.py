"""Result files of ``liftpool eval``: ``results.json`` and a Markdown table, written atomically.

Examples:
    >>> rows = [{"label": "max", "accuracy": {"top1_error": 0.1, "top5_error": 0.01}}]
    >>> print(markdown_report(rows).splitlines()[2])
    | label | pool | images | top-1 err (%) | top-5 err (%) |
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_text
from .corruptions import ALL_CORRUPTIONS

__all__ = ["atomic_write_text", "markdown_report", "write_results"]


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _pct(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * float(v):.{digits}f}"


def _get(row: Mapping[str, Any], *keys: str) -> Any:
    cur: Any = row
    for k in keys:
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


def markdown_report(rows: Sequence[Mapping[str, Any]], *, title: str = "liftpool eval") -> str:
    """One summary table over all evaluated checkpoints, then per-type detail tables.

    Every normalised number names its normalisation: "AlexNet-norm." uses the published
    AlexNet ImageNet-C errors; "unnorm." is the plain mean top-1 error.
    """
    lines = [f"# {title}", ""]
    cols: list[tuple[str, Any]] = [
        ("label", lambda r: r.get("label", "?")),
        ("pool", lambda r: _get(r, "model", "pool") or "-"),
    ]
    cols.append(("images", lambda r: str(r.get("images", "-"))))
    if any("accuracy" in r for r in rows):
        cols += [
            ("top-1 err (%)", lambda r: _pct(_get(r, "accuracy", "top1_error"))),
            ("top-5 err (%)", lambda r: _pct(_get(r, "accuracy", "top5_error"))),
        ]
    if any("shift" in r for r in rows):
        cols += [
            ("consistency (%)", lambda r: _pct(_get(r, "shift", "consistency"))),
            ("shifted acc (%)", lambda r: _pct(_get(r, "shift", "shifted_accuracy"))),
        ]
    # "mCE" only for the mean over all 15 benchmark corruptions (rows without the flag are older results)
    complete = all(_get(r, "corruption", "mce_complete") is not False for r in rows if "corruption" in r)
    mce = "mCE" if complete else "mean CE"
    if any("corruption" in r for r in rows):
        cols.append((f"{mce} unnorm. (%)", lambda r: _pct(_get(r, "corruption", "mce"))))
        if any(_get(r, "corruption", "mce_normalized") is not None for r in rows):
            cols.append((f"{mce} AlexNet-norm. (%)", lambda r: _pct(_get(r, "corruption", "mce_normalized"))))
        cols += [
            (f"rel. {mce} unnorm. (%)", lambda r: _pct(_get(r, "corruption", "relative_mce"))),
            ("extra-4 CE unnorm. (%)", lambda r: _pct(_get(r, "corruption", "mce_extra"))),
        ]
        if any(_get(r, "corruption", "vs_baseline") for r in rows):
            cols.append(
                (
                    f"{mce} vs "
                    + str(
                        next(
                            _get(r, "corruption", "vs_baseline", "baseline")
                            for r in rows
                            if _get(r, "corruption", "vs_baseline")
                        )
                    )
                    + " (%)",
                    lambda r: _pct(_get(r, "corruption", "vs_baseline", "mce_normalized")),
                )
            )
    if any("perturbation" in r for r in rows):
        cols.append(("mFR raw (%)", lambda r: _pct(_get(r, "perturbation", "mfr"))))
    if any("segmentation" in r for r in rows):
        cols += [
            ("mIoU (%)", lambda r: _pct(_get(r, "segmentation", "miou"))),
            ("pixel acc (%)", lambda r: _pct(_get(r, "segmentation", "pixel_accuracy"))),
            ("class acc (%)", lambda r: _pct(_get(r, "segmentation", "mean_class_accuracy"))),
        ]
    lines.append("| " + " | ".join(c for c, _ in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(f(r)) for _, f in cols) + " |")
    lines.append("")

    if any("shift" in r for r in rows):
        r0 = next(r for r in rows if "shift" in r)["shift"]
        crop = r0.get("crop")
        mode = (
            f"crops of {crop} inside the image"
            if crop
            else f"pad {r0.get('max_shift')} px ({r0.get('pad_mode')}) and crop"
        )
        lines += [
            f"Shift consistency (Zhang 2019): {mode}, offsets drawn per "
            f"{'image' if r0.get('per_image') else 'batch'}, seed {r0.get('seed')}.",
            "",
        ]
    corr = [r for r in rows if "corruption" in r]
    if corr:
        names = [c for c in ALL_CORRUPTIONS if any(c in (_get(r, "corruption", "ce") or {}) for r in corr)]
        lines += [
            "## Corruption error per corruption (unnormalised: mean top-1 error over severities, %)",
            "",
            "| corruption | " + " | ".join(str(r["label"]) for r in corr) + " |",
            "|---|" + "|".join("---" for _ in corr) + "|",
        ]
        for c in names:
            lines.append(f"| {c} | " + " | ".join(_pct(_get(r, "corruption", "ce", c)) for r in corr) + " |")
        if mce == "mCE":
            scope = "mCE = mean CE over the 15 ImageNet-C corruptions"
        else:
            k = min(int(_get(r, "corruption", "benchmark_corruptions") or 0) for r in corr)
            scope = (f"mean CE = mean CE over the evaluated benchmark corruptions ({k} of the 15 in the least "
                     "complete row): not an mCE, which needs all 15")
        lines += [
            "",
            f"{scope}; extra-4 = speckle_noise, gaussian_blur, spatter, saturate. "
            + ("AlexNet-norm. = CE / AlexNet's published ImageNet-C error (Hendrycks & Dietterich 2019); it is only "
               "comparable to published numbers on ImageNet-C at 224x224. "
               if any(_get(r, "corruption", "mce_normalized") is not None for r in corr)
               else "No AlexNet normalisation: it applies to ImageNet-sized 1000-class data only. ")
            + f"rel. {mce} = mean over corruptions of (CE - clean error).",
            "",
        ]
        sev = _get(corr[0], "corruption", "severities")
        if sev:
            lines += [f"Severities evaluated: {sev}; corruption images: {_get(corr[0], 'corruption', 'images')}.", ""]
    pert = [r for r in rows if "perturbation" in r]
    if pert:
        names = list((_get(pert[0], "perturbation", "fr") or {}).keys())
        lines += [
            "## Flip rate per perturbation (raw, %; no AlexNet normalisation)",
            "",
            "| perturbation | " + " | ".join(str(r["label"]) for r in pert) + " |",
            "|---|" + "|".join("---" for _ in pert) + "|",
        ]
        for p in names:
            lines.append(f"| {p} | " + " | ".join(_pct(_get(r, "perturbation", "fr", p)) for r in pert) + " |")
        lines += [
            "",
            "Noise types compare every frame with the first, the others consecutive frames. "
            f"Frames per sequence: {_get(pert[0], 'perturbation', 'frames')}; sequences: "
            f"{_get(pert[0], 'perturbation', 'images')}.",
            "",
        ]
    seg = [r for r in rows if "segmentation" in r]
    if seg:
        names = _get(seg[0], "segmentation", "class_names") or [
            str(i) for i in range(len(_get(seg[0], "segmentation", "iou")))
        ]
        lines += [
            "## IoU per class (%, void ignored)",
            "",
            "| class | " + " | ".join(str(r["label"]) for r in seg) + " |",
            "|---|" + "|".join("---" for _ in seg) + "|",
        ]
        for i, n in enumerate(names):
            vals = []
            for r in seg:
                iou = _get(r, "segmentation", "iou") or []
                vals.append(_pct(iou[i]) if i < len(iou) else "-")
            lines.append(f"| {n} | " + " | ".join(vals) + " |")
        lines.append("")
    figs = sorted({f for r in rows for f in r.get("figures", [])})
    if figs:
        lines += ["## Figures", ""] + [f"- [{Path(f).name}]({f})" for f in figs] + [""]
    return "\n".join(lines)


def write_results(
    out_dir: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]], *, meta: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``results.json`` (``{"meta", "results"}``) and ``results.md`` atomically."""
    out = Path(out_dir)
    data = {"meta": dict(meta), "results": list(rows)}
    j = atomic_write_text(out / "results.json", json.dumps(_json_safe(data), indent=2, sort_keys=False) + "\n")
    m = atomic_write_text(out / "results.md", markdown_report(rows))
    return j, m
