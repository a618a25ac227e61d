"""Why the xl study comes out as it does: figures and a Markdown section from the runs' ``diagnostics.json``.

Every final run of ``liftpool reproduce --budget xl`` is trained with ``liftpool train
--diagnostics`` (:mod:`liftpool.training.diagnostics`).  :func:`write_diagnosis` reads
``<out>/runs/<setting>/seed<k>/diagnostics.json`` and writes, under the report folder, one figure
per question and ``diagnosis.md`` with the numbers behind them:

* ``diag_pu.png`` - are LiftDownPool's P and U still near zero?  ``p_rel = rms(P(x_e)) / rms(x_o)``
  and ``u_rel = rms(U(d)) / rms(x_e)`` per pooling stage over training (0 = the plain polyphase
  split, i.e. the band mean is average pooling);
* ``diag_constraints.png`` - the constraint terms ``c_u`` and ``c_p`` per stage over training (they
  are recorded with and without the constraint losses in the objective);
* ``diag_grads.png`` - the gradient norm at every pooling stage's output, per method (mean over the
  last epoch's records), and at the last stage over training.

Curves are means over the seeds that have the file (records are matched by step).  How well each
setting fits its training set (:func:`load_fit`, from the last row of every finished run's
``metrics.csv``: training error on the augmented batches, test error, task loss and the weighted
constraint loss) comes as a table, and, where both runs exist, as the difference the constraint
losses make (:func:`fit_findings`).
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_save_figure, atomic_write_text
from .common import read_json as _read_json
from .xl_summary import setting_color

__all__ = ["NEAR_ZERO", "findings", "fit_findings", "load_diagnostics", "load_fit", "summarize", "write_diagnosis"]


def _completed_runs(out: str | os.PathLike[str], key: str, seeds: int) -> list[Path]:
    """The folders of setting ``key``'s final runs that finished (``summary.json`` says so), by seed."""
    dirs = [Path(out) / "runs" / key / f"seed{k}" for k in range(seeds)]
    return [d for d in dirs if (_read_json(d / "summary.json") or {}).get("status") == "completed"]


def load_diagnostics(out: str | os.PathLike[str], settings: Sequence[str], seeds: int) -> dict[str, list[Any]]:
    """``{setting: [diagnostics of seed 0, 1, ...]}`` for the completed runs (``summary.json`` says so)
    that have a ``diagnostics.json`` (a run still training is left out)."""
    res: dict[str, list[Any]] = {}
    for key in settings:
        found = [_read_json(d / "diagnostics.json") for d in _completed_runs(out, key, seeds)]
        found = [d for d in found if d and d.get("records")]
        if found:
            res[key] = found
    return res


#: metrics.csv columns of the fit table -> its keys (accuracies become errors in %)
_FIT_COLUMNS = {"train_acc": "train_error", "val_acc": "test_error", "train_loss": "task_loss",
                "train_lift_loss": "lift_loss"}  # fmt: skip


def load_fit(out: str | os.PathLike[str], settings: Sequence[str], seeds: int) -> dict[str, list[dict[str, float]]]:
    """``{setting: [last epoch of seed 0, 1, ...]}`` of the completed runs: ``train_error`` (%, the
    epoch's augmented training batches), ``test_error`` (%), ``task_loss`` (training cross-entropy)
    and ``lift_loss`` (the weighted constraint loss ``0.01 c_u + 0.1 c_p``; computed, and reported,
    also when it is not in the objective); and over the middle of training (epochs n/6 to 5n/6 of n):
    ``mid_train_error``, ``mid_test_error`` (means) and ``mid_jump`` (mean change of the test error
    from one epoch to the next)."""
    res: dict[str, list[dict[str, float]]] = {}
    for key in settings:
        rows = []
        for d in _completed_runs(out, key, seeds):
            try:
                with open(d / "metrics.csv", newline="") as f:
                    table = list(csv.DictReader(f))
                row = {new: float(table[-1][old]) for old, new in _FIT_COLUMNS.items()}
                n = len(table)  # the middle of training: epochs n/6 ... 5n/6
                mid = [(100.0 * (1.0 - float(r["train_acc"])), 100.0 * (1.0 - float(r["val_acc"])))
                       for r in table if math.ceil(n / 6) <= int(r["epoch"]) <= (5 * n) // 6]  # fmt: skip
            except (OSError, IndexError, KeyError, ValueError):
                continue
            row["train_error"] = 100.0 * (1.0 - row["train_error"])
            row["test_error"] = 100.0 * (1.0 - row["test_error"])
            if len(mid) >= 2:
                row["mid_train_error"] = statistics.mean(a for a, _ in mid)
                row["mid_test_error"] = statistics.mean(b for _, b in mid)
                row["mid_jump"] = statistics.mean(abs(b2 - b1) for (_, b1), (_, b2) in zip(mid, mid[1:]))
            rows.append(row)
        if rows:
            res[key] = rows
    return res


def _fit_means(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean over seeds of every last-epoch value of :func:`load_fit`."""
    return {k: statistics.mean(r[k] for r in rows) for k in _FIT_COLUMNS.values()}


def fit_findings(fit: Mapping[str, Sequence[Mapping[str, float]]]) -> list[str]:
    """How far each setting's test error sits above its training error in the middle of training (and
    how much it jumps between epochs), and what the constraint losses do to the fit at the end
    (``lift`` against ``lift-nocons``, means over seeds): their share of the objective, and the
    differences in training loss, training error and test error."""
    out: list[str] = []
    mids = {k: rows for k, rows in fit.items() if all("mid_test_error" in r for r in rows)}
    if mids:
        out.append(
            "Middle of training (epochs n/6 to 5n/6), test error − training error (points; the test error's "
            "mean change from one epoch to the next): " + ", ".join(
                f"`{k}` {statistics.mean(r['mid_test_error'] - r['mid_train_error'] for r in rows):+.1f} "
                f"({statistics.mean(r['mid_jump'] for r in rows):.1f})" for k, rows in mids.items()
            ) + "."
        )
    if "lift" not in fit or "lift-nocons" not in fit:
        return out
    a, b = _fit_means(fit["lift"]), _fit_means(fit["lift-nocons"])
    share = 100.0 * a["lift_loss"] / (a["task_loss"] + a["lift_loss"]) if a["task_loss"] + a["lift_loss"] > 0 else 0.0
    return out + [
        f"Fit at the last epoch, with − without the constraint losses (`lift` − `lift-nocons`, means over "
        f"{len(fit['lift'])} and {len(fit['lift-nocons'])} seeds): training task loss {a['task_loss']:.3g} vs "
        f"{b['task_loss']:.3g} ({100.0 * (a['task_loss'] / b['task_loss'] - 1.0):+.0f} %), training error "
        f"{a['train_error'] - b['train_error']:+.2f} points, test error {a['test_error'] - b['test_error']:+.2f} "
        f"points; the weighted constraint loss is {share:.1f} % of `lift`'s objective at the end."
    ]


def _fit_table(fit: Mapping[str, Sequence[Mapping[str, float]]]) -> list[str]:
    lines = [
        "**Fit at the last epoch** (mean over seeds; training error on that epoch's augmented batches; the "
        "weighted constraint loss 0.01 c_u + 0.1 c_p is computed for every LiftDownPool run, in the objective "
        "only where the constraints are on).",
        "",
        "| setting | seeds | training error (%) | test error (%) | gap (points) | training task loss | "
        "weighted constraint loss |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, rows in fit.items():
        m = _fit_means(rows)
        lift = f"{m['lift_loss']:.3g}" if m["lift_loss"] > 0 else "–"
        lines.append(
            f"| {key} | {len(rows)} | {m['train_error']:.2f} | {m['test_error']:.2f} | "
            f"{m['test_error'] - m['train_error']:.2f} | {m['task_loss']:.3g} | {lift} |"
        )
    return lines


def _mean(v: Sequence[float | None]) -> float:
    x = [float(a) for a in v if a is not None and not math.isnan(float(a))]
    return sum(x) / len(x) if x else math.nan


def _series(runs: Sequence[Mapping[str, Any]], layer: str, get: Any) -> tuple[list[float], list[float]]:
    """(epochs, seed-mean of ``get(layer record)``) over the records, matched by step."""
    by_step: dict[int, tuple[float, list[float | None]]] = {}
    for d in runs:
        for r in d["records"]:
            rec = r["layers"].get(layer)
            if rec is None:
                continue
            ep, vals = by_step.setdefault(int(r["step"]), (float(r["epoch"]), []))
            vals.append(get(rec))
    steps = sorted(by_step)
    return [by_step[s][0] for s in steps], [_mean(by_step[s][1]) for s in steps]


def _layers(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [x["name"] for x in runs[0].get("layers", [])]


def _probe(key: str) -> Any:
    return lambda rec: (rec.get("probe") or {}).get(key)


def summarize(diags: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The numbers of ``diagnosis.md``: per setting and stage, the first / last record's probe,
    constraint terms and weight RMS, and the mean gradient norms over the last epoch."""
    out: dict[str, Any] = {}
    for key, runs in diags.items():
        per_layer: dict[str, Any] = {}
        last_epoch = max(int(math.floor(r["epoch"])) for d in runs for r in d["records"])
        for name in _layers(runs):
            firsts = [d["records"][0]["layers"].get(name, {}) for d in runs]
            lasts = [d["records"][-1]["layers"].get(name, {}) for d in runs]
            tail = [r["layers"].get(name, {}) for d in runs for r in d["records"] if int(r["epoch"]) == last_epoch]
            row: dict[str, Any] = {
                "grad_output_norm": _mean([x.get("grad_output_norm") for x in tail]),
                "grad_input_norm": _mean([x.get("grad_input_norm") for x in tail]),
            }
            if any("weights" in x for x in lasts):
                for which, f in (("first", firsts), ("last", lasts)):
                    row[which] = {
                        "p_rel": _mean([(x.get("probe") or {}).get("p_rel") for x in f]),
                        "u_rel": _mean([(x.get("probe") or {}).get("u_rel") for x in f]),
                        "c_u": _mean([x.get("c_u") for x in f]),
                        "c_p": _mean([x.get("c_p") for x in f]),
                        "P_w2": _mean([((x.get("weights") or {}).get("P") or {}).get("w2") for x in f]),
                        "U_w2": _mean([((x.get("weights") or {}).get("U") or {}).get("w2") for x in f]),
                    }
            per_layer[name] = row
        out[key] = {"seeds": len(runs), "layers": per_layer}
    return out


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}g}"


#: below this end value of both ``p_rel`` and ``u_rel`` a stage's P and U count as collapsed to zero
NEAR_ZERO: float = 0.05


def _finite(xs: Sequence[float | None]) -> list[float]:
    return [x for x in xs if x is not None and not math.isnan(x)]


def findings(summary: Mapping[str, Any]) -> list[str]:
    """What the tables show, as sentences computed from them: whether P and U are active at the end
    (or collapsed below :data:`NEAR_ZERO`), which stages' gates shrink most, how far the constraint
    terms fall with and without the constraint losses, and LiftDownPool's gradient norms per stage
    relative to MaxPool's."""
    out: list[str] = []
    falls: dict[str, tuple[float, float]] = {}  # c_u + c_p, mean over stages: first and last record
    for key, v in summary.items():
        rows = [r for r in v["layers"].values() if "last" in r]
        if not rows:
            continue
        first = _finite([r["first"]["c_u"] + r["first"]["c_p"] for r in rows if r["first"]["c_u"] is not None])
        last = _finite([r["last"]["c_u"] + r["last"]["c_p"] for r in rows if r["last"]["c_u"] is not None])
        if first and last and statistics.mean(last) > 0:
            falls[key] = (statistics.mean(first), statistics.mean(last))
        p = _finite([r["last"]["p_rel"] for r in rows])
        u = _finite([r["last"]["u_rel"] for r in rows])
        if p and u:
            dead = [i + 1 for i, r in enumerate(rows) if max(r["last"]["p_rel"], r["last"]["u_rel"]) < NEAR_ZERO]
            state = (f"P and U collapsed to near zero at stage(s) {', '.join(map(str, dead))}" if dead
                     else "P and U stay active at every stage")  # fmt: skip
            out.append(f"`{key}`: {state} (end p_rel {min(p):.2g}–{max(p):.2g}, u_rel {min(u):.2g}–{max(u):.2g}).")
        gates = [(i + 1, r["first"]["P_w2"], r["last"]["P_w2"]) for i, r in enumerate(rows)]
        gates = [(i, a, b) for i, a, b in gates if a and b is not None and not math.isnan(a) and not math.isnan(b)]
        if len(gates) >= 2:
            i_min = min(gates, key=lambda g: g[2] / g[1])
            i_max = max(gates, key=lambda g: g[2] / g[1])
            out.append(
                f"`{key}`: P's 1x1 gate shrinks most at stage {i_min[0]} (RMS x{i_min[2] / i_min[1]:.2g}) and least "
                f"at stage {i_max[0]} (x{i_max[2] / i_max[1]:.2g})."
            )
    if "lift" in falls and "lift-nocons" in falls:
        (a, b), (c, d) = falls["lift"], falls["lift-nocons"]
        out.append(
            f"Constraint terms (c_u + c_p, mean over stages): with the constraint losses (`lift`) {a:.3g} → {b:.3g} "
            f"(x{b / a:.2g}); without them (`lift-nocons`) {c:.3g} → {d:.3g} (x{d / c:.2g}): the losses leave the "
            f"terms {d / b:.2g}x smaller at the end."
        )
    ref = summary.get("max")
    if ref is not None:
        base = [r["grad_output_norm"] for r in ref["layers"].values()]
        for key in ("lift", "lift-nocons", "lift-avginit"):
            if key not in summary:
                continue
            g = [r["grad_output_norm"] for r in summary[key]["layers"].values()]
            ratios = [a / b for a, b in zip(g, base) if a is not None and b and not math.isnan(a) and not math.isnan(b)]
            if ratios:
                out.append(
                    f"`{key}`: gradient norm at the pooling outputs relative to MaxPool's, stage 1 to "
                    f"{len(ratios)}: " + ", ".join(f"{r:.2g}x" for r in ratios) + "."
                )
    return out


def diagnosis_markdown(
    summary: Mapping[str, Any], fit: Mapping[str, Sequence[Mapping[str, float]]] | None = None
) -> str:
    """What the diagnosis shows (:func:`findings`, :func:`fit_findings`), then three tables: P/U size,
    constraint terms (first -> last record), gradient norms per stage; and the fit table where ``fit``
    (:func:`load_fit`) has runs."""
    lift = {k: v for k, v in summary.items() if any("last" in r for r in v["layers"].values())}
    lines = ["## Diagnosis", ""]
    shown = findings(summary) + fit_findings(fit or {})
    if shown:
        lines += ["**What it shows** (computed from the tables below):", ""] + [f"- {x}" for x in shown] + [""]
    if lift:
        lines += [
            "**Are P and U still near zero?** `p_rel = rms(P(x_e)) / rms(x_o)`, `u_rel = rms(U(d)) / rms(x_e)` on the "
            "training batch (first -> last record), and the RMS of the 1x1 gate `w2` of P / U (0 = P or U is zero).",
            "",
            "| setting | stage | p_rel | u_rel | P w2 RMS | U w2 RMS |",
            "|---|---|---|---|---|---|",
        ]
        for k, v in lift.items():
            for i, (name, r) in enumerate(v["layers"].items()):
                a, b = r["first"], r["last"]
                lines.append(
                    f"| {k} | {i + 1} (`{name}`) | {_f(a['p_rel'])} → {_f(b['p_rel'])} | {_f(a['u_rel'])} → "
                    f"{_f(b['u_rel'])} | {_f(a['P_w2'])} → {_f(b['P_w2'])} | {_f(a['U_w2'])} → {_f(b['U_w2'])} |"
                )
        lines += [
            "",
            "**Constraint terms** (unweighted; the objective adds 0.01 c_u + 0.1 c_p where the constraints are on), "
            "first -> last record.",
            "",
            "| setting | stage | c_u | c_p |",
            "|---|---|---|---|",
        ]
        for k, v in lift.items():
            for i, (name, r) in enumerate(v["layers"].items()):
                a, b = r["first"], r["last"]
                lines.append(
                    f"| {k} | {i + 1} (`{name}`) | {_f(a['c_u'])} → {_f(b['c_u'])} | {_f(a['c_p'])} → {_f(b['c_p'])} |"
                )
    names = max((len(v["layers"]) for v in summary.values()), default=0)
    if names:
        lines += [
            "",
            "**Gradient norm at each pooling stage's output** (L2 over the batch, mean over the last epoch's records).",
            "",
            "| setting | " + " | ".join(f"stage {i + 1}" for i in range(names)) + " | seeds |",
            "|---|" + "---|" * (names + 1),
        ]
        for k, v in summary.items():
            g = [_f(r["grad_output_norm"]) for r in v["layers"].values()]
            lines.append(f"| {k} | " + " | ".join(g + ["–"] * (names - len(g))) + f" | {v['seeds']} |")
    if fit:
        lines += [""] + _fit_table(fit)
    return "\n".join(lines) + "\n"


def _plot_lines(diags: Mapping[str, list[Any]], panels: Sequence[tuple[str, Any, str]], path: Path, title: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lift = {k: runs for k, runs in diags.items() if any(r.get("kind", "").startswith("LiftDownPool")
                                                        for r in runs[0]["records"][0]["layers"].values())}  # fmt: skip
    if not lift:
        return False
    fig, axes = plt.subplots(len(panels), len(lift), figsize=(4.2 * len(lift), 3.0 * len(panels)), squeeze=False)
    for j, (key, runs) in enumerate(lift.items()):
        for i, (_, get, ylabel) in enumerate(panels):
            ax = axes[i][j]
            for li, name in enumerate(_layers(runs)):
                ep, v = _series(runs, name, get)
                ax.plot(ep, v, "-", color=f"C{li}", label=f"stage {li + 1}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{key} ({len(runs)} seed(s))", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)
    return True


def _plot_grads(diags: Mapping[str, list[Any]], summary: Mapping[str, Any], path: Path, order: Sequence[str]) -> bool:
    """Gradient norms per stage and over training; a setting's colour is the one the study's other
    figures give it (:func:`liftpool.studies.xl_summary.setting_color` of its place in ``order``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not diags:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.0, 3.8))
    keys = list(diags)
    w = 0.8 / len(keys)
    for i, key in enumerate(keys):
        g = [r["grad_output_norm"] for r in summary[key]["layers"].values()]
        color = setting_color(key, list(order).index(key) if key in order else i)
        a1.bar([j + i * w for j in range(len(g))], g, w, label=key, color=color)
        last = _layers(diags[key])[-1]
        ep, v = _series(diags[key], last, lambda rec: rec.get("grad_output_norm"))
        a2.plot(ep, v, "-", label=key, color=color)
    n = max(len(v["layers"]) for v in summary.values())
    a1.set_xticks([j + 0.4 - w / 2 for j in range(n)], [f"stage {j + 1}" for j in range(n)])
    a1.set_ylabel("||dL/d output||, last epoch")
    a1.set_yscale("log")
    a2.set_xlabel("epoch")
    a2.set_ylabel("||dL/d output|| at the last stage")
    a2.set_yscale("log")
    a1.legend(fontsize=7, ncol=2)
    fig.suptitle("gradient norms at the pooling layers", fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=100)
    return True


def write_diagnosis(
    out: str | os.PathLike[str], settings: Sequence[str], *, seeds: int, report_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write ``diagnosis.md`` and the three figures (where there is data); returns the files written."""
    rep = Path(report_dir)
    diags = load_diagnostics(out, settings, seeds)
    if not diags:
        return []
    summary = summarize(diags)
    fit = load_fit(out, settings, seeds)
    written = [atomic_write_text(rep / "diagnosis.md", diagnosis_markdown(summary, fit))]
    pu = [
        ("p_rel", _probe("p_rel"), "p_rel = rms P(x_e) / rms x_o"),
        ("u_rel", _probe("u_rel"), "u_rel = rms U(d) / rms x_e"),
    ]
    if _plot_lines(diags, pu, rep / "diag_pu.png", "Are LiftDownPool's P and U still near zero?"):
        written.append(rep / "diag_pu.png")
    cons = [("c_u", lambda rec: rec.get("c_u"), "c_u"), ("c_p", lambda rec: rec.get("c_p"), "c_p")]
    if _plot_lines(diags, cons, rep / "diag_constraints.png", "constraint terms over training"):
        written.append(rep / "diag_constraints.png")
    if _plot_grads(diags, summary, rep / "diag_grads.png", settings):
        written.append(rep / "diag_grads.png")
    return written
