"""The xl study's results in one file, and the report generated from it.

``<out>/summary.json`` (:func:`build_summary`, written by :func:`liftpool.studies.reproduce_xl.run`
after every finished job) holds the recipe and one row per finished and evaluated run::

    {"recipe": {...},
     "runs": [{"setting": "max", "seed": 0, "lr": 0.05, "epochs": 30, "train_images": 50000,
               "test_images": 10000, "top1_error": 9.87, "shift_consistency": 88.1,
               "mce_rel_max": 100.0, "corruption_error": 25.3, "wall_s": 1800, "threads": 2,
               "cpu": "...", "commit": "..."}]}

Errors and consistency are in %; ``mce_rel_max`` is the run's mCE relative to the MaxPool run of
the same seed (mean over the 15 corruptions of CE / CE of MaxPool, in %; None until that MaxPool
run is evaluated); ``corruption_error`` is the unnormalised mCE (mean top-1 error over the 15
corruptions x 5 severities); ``wall_s`` is the training run's wall time.

:func:`summary_markdown` turns it into the report: mean ± std and n per setting, the per-seed
paired differences LiftDownPool - MaxPool and - AvgPool with the number of seeds that agree in
sign, and a verdict per claim (:data:`CLAIMS`).  :func:`plot_curves` draws test error per epoch per
setting (mean over seeds, band = min-max) and :func:`plot_error_vs_mce` error against mCE per run.

Examples:
    >>> verdict([-1.0, -0.8, -1.2], lower_is_better=True)
    'supported (3/3 seeds; 95 % CI [-1.50, -0.50])'
    >>> verdict([-1.0, -0.1, -0.2], lower_is_better=True)
    'same direction, within seed noise (3/3 seeds; 95 % CI [-1.66, +0.79])'
    >>> verdict([-1.0, 0.5, -0.2], lower_is_better=True)
    'inconclusive (2/3 seeds; 95 % CI [-2.10, +1.63])'
    >>> verdict([-0.4], lower_is_better=True, planned=3)
    'pending (1 of 3 seeds; 1/1 in the claimed direction so far)'
"""

from __future__ import annotations

import csv
import functools
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..io import atomic_save_figure
from .common import read_json

__all__ = [
    "CLAIMS",
    "setting_color",
    "RUN_FIELDS",
    "Claim",
    "build_summary",
    "eval_row",
    "paired",
    "paired_interval",
    "plot_curves",
    "plot_error_vs_mce",
    "readme_markdown",
    "summary_markdown",
    "verdict",
]

#: the keys of every row of ``summary.json``'s ``"runs"``, in this order
RUN_FIELDS: tuple[str, ...] = (
    "setting", "seed", "lr", "epochs", "train_images", "test_images", "top1_error", "shift_consistency",
    "mce_rel_max", "corruption_error", "wall_s", "threads", "cpu", "commit",
)  # fmt: skip


class Claim(NamedTuple):
    """A claim checked by the study: ``setting`` beats ``baseline`` on ``metric``."""

    name: str
    setting: str
    baseline: str
    metric: str
    lower_is_better: bool


#: the paper's claims (and the two questions about the layer's training) as paired comparisons
CLAIMS: tuple[Claim, ...] = (
    Claim("LiftDownPool has a lower top-1 error than MaxPool", "lift", "max", "top1_error", True),
    Claim("LiftDownPool has a lower top-1 error than AvgPool", "lift", "avg", "top1_error", True),
    Claim("LiftDownPool is more shift-consistent than MaxPool", "lift", "max", "shift_consistency", False),
    Claim("LiftDownPool is more robust to corruptions than MaxPool (mCE < 100 %)", "lift", "max", "mce_rel_max",
          True),
    Claim("the constraint losses help (lower error than without them)", "lift", "lift-nocons", "top1_error", True),
    Claim("starting as average pooling helps (lower error than the default start)", "lift-avginit", "lift",
          "top1_error", True),
)  # fmt: skip


def _pct(x: Any) -> float | None:
    return None if not isinstance(x, (int, float)) or not math.isfinite(x) else round(100.0 * float(x), 4)


def eval_row(out: Path, key: str, seed: int) -> dict[str, Any] | None:
    """The evaluation result of setting ``key``, seed ``seed`` (``<out>/eval/<key>-seed<k>/results.json``)."""
    r = read_json(out / "eval" / f"{key}-seed{seed}" / "results.json")
    rows = [x for x in (r or {}).get("results", []) if x.get("label") == key]
    return rows[0] if rows else None


def _mce_rel(row: Mapping[str, Any], base: Mapping[str, Any] | None) -> float | None:
    from ..evaluation.metrics import corruption_summary

    if base is None or "corruption" not in base:
        return None
    s = corruption_summary(row["corruption"]["errors"], baseline=base["corruption"]["errors"])
    return _pct(s.mce_normalized)


def build_summary(
    out: str | os.PathLike[str], *, settings: Sequence[str], seeds: int, recipe: Mapping[str, Any]
) -> dict[str, Any]:
    """``{"recipe": recipe, "runs": [...]}`` from the finished, evaluated final runs under ``out``
    (rows in seed-major, then ``settings`` order; keys :data:`RUN_FIELDS`)."""
    out = Path(out)
    runs = []
    for seed in range(seeds):
        base = eval_row(out, "max", seed)
        for key in settings:
            row = eval_row(out, key, seed)
            run_dir = out / "runs" / key / f"seed{seed}"
            tr = read_json(run_dir / "summary.json") or {}
            if not row or tr.get("status") != "completed" or not all(m in row for m in ("accuracy", "shift")):
                continue
            cfg = read_json(run_dir / "config.json") or {}
            job = read_json(out / "jobs" / f"train_{key}_seed{seed}.json") or {}
            corr = row.get("corruption") or {}
            runs.append({
                "setting": key,
                "seed": seed,
                "lr": (cfg.get("train") or {}).get("lr"),
                "epochs": tr.get("completed_epochs"),
                "train_images": tr.get("train_images"),
                "test_images": row.get("images"),
                "top1_error": _pct(row["accuracy"].get("top1_error")),
                "shift_consistency": _pct(row["shift"].get("consistency")),
                "mce_rel_max": _mce_rel(row, base) if corr else None,
                "corruption_error": _pct(corr.get("mce")),
                "wall_s": round(float(tr.get("wall_time_s", math.nan)), 1),
                "threads": job.get("threads", tr.get("threads")),
                "cpu": job.get("cpu"),
                "commit": job.get("commit"),
            })  # fmt: skip
    return {"recipe": dict(recipe), "runs": runs}


# --------------------------------------------------------------------------- statistics
def _by(runs: Sequence[Mapping[str, Any]], key: str, metric: str) -> dict[int, float]:
    return {int(r["seed"]): float(r[metric]) for r in runs
            if r["setting"] == key and isinstance(r.get(metric), (int, float))}  # fmt: skip


def paired(runs: Sequence[Mapping[str, Any]], setting: str, baseline: str, metric: str) -> dict[int, float]:
    """Per seed: ``metric(setting) - metric(baseline)`` for the seeds that have both."""
    a, b = _by(runs, setting, metric), _by(runs, baseline, metric)
    return {k: a[k] - b[k] for k in sorted(a) if k in b}


#: two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom (beyond: the normal's 1.96)
_T975: tuple[float, ...] = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def paired_interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    """Mean and the paired 95 % t-interval ``(mean, low, high)`` of per-seed differences (two or more)."""
    if len(diffs) < 2:
        raise ValueError(f"a paired interval needs two or more differences, got {len(diffs)}")
    n = len(diffs)
    mean = statistics.mean(diffs)
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * statistics.stdev(diffs) / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(diffs: Sequence[float], *, lower_is_better: bool, planned: int | None = None) -> str:
    """The claim's verdict from its per-seed paired differences (claimed direction: below 0 when
    ``lower_is_better``, else above):

    * ``pending``: fewer seeds than ``planned`` (the count so far in the claimed direction is given);
    * ``supported``: every seed goes the claimed way and the paired 95 % t-interval excludes 0;
    * ``same direction, within seed noise``: every seed goes the claimed way, the interval holds 0
      (or there is one seed only);
    * ``contradicted`` / ``not supported``: every seed goes the other way, with / without an interval
      that excludes 0;
    * ``inconclusive``: the seeds disagree; ``no data`` without pairs.
    """
    if not diffs:
        return "no data"
    n = len(diffs)
    good = sum((d < 0) if lower_is_better else (d > 0) for d in diffs)
    if planned is not None and n < planned:
        return f"pending ({n} of {planned} seeds; {good}/{n} in the claimed direction so far)"
    interval = paired_interval(diffs) if n >= 2 else None
    sign = -1.0 if lower_is_better else 1.0
    clear = interval is not None and (sign * interval[1] > 0 and sign * interval[2] > 0)
    contrary = interval is not None and (sign * interval[1] < 0 and sign * interval[2] < 0)
    if good == n:
        word = "supported" if clear else "same direction, within seed noise"
    elif good == 0:
        word = "contradicted" if contrary else "not supported"
    else:
        word = "inconclusive"
    ci = f"; 95 % CI [{interval[1]:+.2f}, {interval[2]:+.2f}]" if interval is not None else ""
    return f"{word} ({good}/{n} seeds{ci})"


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _values(runs: Sequence[Mapping[str, Any]], key: str, metric: str) -> list[float]:
    """The numeric ``metric`` of every run of setting ``key``."""
    return [float(r[metric]) for r in runs if r["setting"] == key and isinstance(r.get(metric), (int, float))]


def _cpu_name(cpu: Any) -> str:
    """A job record's CPU model, short: ``"Intel(R) Xeon(R) Processor"`` -> ``"Intel Xeon"``."""
    if not isinstance(cpu, str) or not cpu.strip():
        return "unknown CPU"
    words = [w.replace("(R)", "").replace("(TM)", "") for w in cpu.split()]
    return " ".join(w for w in words if w and w.lower() not in ("processor", "cpu")) or cpu


def _wall_by_cpu(runs: Sequence[Mapping[str, Any]], key: str) -> str:
    """Mean training wall time (min) of setting ``key``'s runs per CPU model, most runs first:
    ``"59 (Intel Xeon, 2); 80 (AMD EPYC, 1)"`` (times on different CPUs are not averaged together)."""
    per: dict[str, list[float]] = {}
    for r in runs:
        if r["setting"] == key and isinstance(r.get("wall_s"), (int, float)) and math.isfinite(r["wall_s"]):
            per.setdefault(_cpu_name(r.get("cpu")), []).append(float(r["wall_s"]))
    order = sorted(per, key=lambda c: (-len(per[c]), c))
    return "; ".join(f"{statistics.mean(per[c]) / 60:.0f} ({c}, {len(per[c])})" for c in order) or "–"


def _claim_verdicts(summary: Mapping[str, Any]) -> list[tuple[Claim, list[float], str]]:
    """Per claim of :data:`CLAIMS`: its per-seed paired differences and verdict (pending until the
    recipe's planned seeds are in)."""
    planned = summary.get("recipe", {}).get("seeds")
    planned = planned if isinstance(planned, int) and not isinstance(planned, bool) else None
    out = []
    for c in CLAIMS:
        d = list(paired(summary["runs"], c.setting, c.baseline, c.metric).values())
        out.append((c, d, verdict(d, lower_is_better=c.lower_is_better, planned=planned)))
    return out


def summary_markdown(
    summary: Mapping[str, Any], *, settings: Sequence[str], labels: Mapping[str, str],
    sweep: Mapping[str, Any] | None = None,
) -> str:  # fmt: skip
    """The report's tables: per setting mean ± sample std and n; the paired differences; the verdicts."""
    runs = summary["runs"]
    lines = [
        "| setting | lr (sweep) | n | top-1 error (%) | shift consistency (%) | mCE rel. MaxPool (%) | "
        "corruption error (%) | train time per run (min; CPU, runs) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in settings:
        rs = [r for r in runs if r["setting"] == key]
        chosen = (sweep or {}).get(key, {}).get("chosen")
        lr = f"{chosen:g}" if isinstance(chosen, (int, float)) else "–"
        col = functools.partial(_values, runs, key)
        lines.append(
            f"| {labels.get(key, key)} (`{key}`) | {lr} | {len(rs)} | {_ms(col('top1_error'))} | "
            f"{_ms(col('shift_consistency'))} | {_ms(col('mce_rel_max'))} | {_ms(col('corruption_error'))} | "
            f"{_wall_by_cpu(runs, key)} |" if rs else
            f"| {labels.get(key, key)} (`{key}`) | {lr} | 0 | not run | | | | |"
        )  # fmt: skip
    threads = sorted({int(r["threads"]) for r in runs if isinstance(r.get("threads"), int)})
    lines += [
        "",
        "Train time: the training run's wall time (every epoch, with a test-set evaluation after each; "
        f"threads per run: {', '.join(map(str, threads)) or 'not recorded'}; the job records in `jobs/` say "
        "how many ran side by side), per CPU model: times on different CPUs are not comparable.",
    ]
    pairs: list[str] = []
    for a, b in (("lift", "max"), ("lift", "avg")):
        for m in ("top1_error", "shift_consistency", "mce_rel_max", "corruption_error"):
            d = paired(runs, a, b, m)
            if not d:
                continue
            neg = sum(v < 0 for v in d.values())
            agree = max(neg, len(d) - neg)
            per = ", ".join(f"s{k}: {v:+.2f}" for k, v in d.items())
            pairs.append(f"| {labels.get(a, a)} − {labels.get(b, b)} | {m} | {per} | "
                         f"{statistics.mean(d.values()):+.2f} | {agree}/{len(d)} |")  # fmt: skip
    lines += ["", "Paired differences per seed (percentage points; negative = lower):", ""]
    if pairs:
        lines += ["| comparison | metric | per seed | mean | seeds agreeing in sign |", "|---|---|---|---:|---:|"]
        lines += pairs
    else:
        lines.append("(no seed has both runs yet)")
    lines += ["", "| claim | paired difference per seed | verdict |", "|---|---|---|"]
    for c, diffs, v in _claim_verdicts(summary):
        per = ", ".join(f"{x:+.2f}" for x in diffs) or "–"
        lines.append(f"| {c.name} | {c.metric}: {per} | {v} |")
    lines += [
        "",
        "Verdicts: *supported* = every seed's paired difference goes the claimed way and the paired 95 % "
        "t-interval of the differences excludes 0; *same direction, within seed noise* = every seed goes "
        "the claimed way but the interval holds 0; *not supported* / *contradicted* = every seed goes the "
        "other way (contradicted: the interval excludes 0); *inconclusive* = the seeds disagree; *pending* = "
        "fewer seeds than planned.",
    ]
    return "\n".join(lines) + "\n"


def readme_markdown(
    summary: Mapping[str, Any], *, settings: Sequence[str], labels: Mapping[str, str],
) -> str:  # fmt: skip
    """The short form for a project's front page: one column per setting that has finished runs
    (seeds, then mean ± std of top-1 error, shift consistency and mCE relative to MaxPool), and one
    line per claim with its per-seed paired differences and verdict (the same as
    :func:`summary_markdown`'s).  Settings without a finished run are named below the table."""
    runs = summary["runs"]
    have = [k for k in settings if any(r["setting"] == k for r in runs)]
    missing = [k for k in settings if k not in have]
    if not have:
        return "(no run of the study has finished yet)\n"
    head = "| | " + " | ".join(labels.get(k, k) for k in have) + " |"
    lines = [head, "|---|" + "---:|" * len(have)]
    seeds = [",".join(str(r["seed"]) for r in runs if r["setting"] == k) for k in have]
    lines.append("| seeds | " + " | ".join(seeds) + " |")
    for m, name in (("top1_error", "top-1 error (%)"), ("shift_consistency", "shift consistency (%)"),
                    ("mce_rel_max", "mCE relative to MaxPool (%)")):  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(_ms(_values(runs, k, m)) for k in have) + " |")
    if missing:
        lines += ["", "Not run yet: " + ", ".join(labels.get(k, k) for k in missing) + "."]
    claims = [
        f"- {c.name}: {', '.join(f'{x:+.2f}' for x in d)} points per seed: **{v}**"
        for c, d, v in _claim_verdicts(summary)
        if d and c.setting in settings and c.baseline in settings
    ]
    if claims:
        lines += ["", "Paired over seeds (this setting − the baseline, same seed):", "", *claims]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figures
def _curve(run_dir: Path) -> list[tuple[int, float]]:
    """(epoch, test error in %) per epoch from a final run's ``metrics.csv``."""
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError:
        return []
    pts = []
    for r in rows:
        try:
            pts.append((int(r["epoch"]), 100.0 * (1.0 - float(r["val_acc"]))))
        except (KeyError, TypeError, ValueError):
            continue
    return pts


#: line colours of the settings in the figures: LiftDownPool red, every other setting its own colour
_OTHER_COLORS = ("C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")


def setting_color(key: str, index: int) -> str:
    """The colour of setting ``key`` (``index``: its place in the figure): red for ``lift``, never red
    (nor another setting's colour, up to 9 settings) for the rest."""
    return "tab:red" if key == "lift" else _OTHER_COLORS[index % len(_OTHER_COLORS)]


def plot_curves(out: str | os.PathLike[str], settings: Sequence[str], seeds: int, path: Path) -> bool:
    """Test error per epoch per setting: mean over the seeds, band = min-max.  False: nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    drawn = False
    for i, key in enumerate(settings):
        curves = [dict(_curve(Path(out) / "runs" / key / f"seed{k}")) for k in range(seeds)]
        curves = [c for c in curves if c]
        if not curves:
            continue
        epochs = sorted(set.intersection(*(set(c) for c in curves)))
        if not epochs:
            continue
        vals = [[c[e] for c in curves] for e in epochs]
        color = setting_color(key, i)
        ax.plot(epochs, [statistics.mean(v) for v in vals], "-", color=color, label=f"{key} (n={len(curves)})")
        ax.fill_between(epochs, [min(v) for v in vals], [max(v) for v in vals], color=color, alpha=0.15)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    ax.set_xlabel("epoch")
    ax.set_ylabel("test top-1 error (%)")
    ax.set_yscale("log")
    ax.set_title("test error per epoch (mean over seeds, band = min-max)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    return True


def plot_error_vs_mce(summary: Mapping[str, Any], settings: Sequence[str], path: Path) -> bool:
    """Top-1 error against mCE relative to MaxPool, one point per run.  False: nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in summary["runs"] if r.get("mce_rel_max") is not None and r.get("top1_error") is not None]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for i, key in enumerate(settings):
        rs = [r for r in pts if r["setting"] == key]
        if rs:
            ax.scatter([r["top1_error"] for r in rs], [r["mce_rel_max"] for r in rs], label=key, s=22,
                       color=setting_color(key, i))  # fmt: skip
    ax.axhline(100.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("clean top-1 error (%)")
    ax.set_ylabel("mCE relative to MaxPool, same seed (%)")
    ax.set_title("error vs corruption robustness, one point per run", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)
    return True
