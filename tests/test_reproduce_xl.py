"""``liftpool reproduce --budget xl``: plan, held-out split, learning-rate choice, resume, aggregation,
report, and the xl-tiny pipeline end to end through the real ``liftpool train`` / ``eval`` subprocesses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liftpool.evaluation.corruptions import CORRUPTIONS
from liftpool.models import create_model
from liftpool.studies import reproduce as rp
from liftpool.studies import reproduce_xl as xl
from liftpool.studies import xl_summary as xs

XL = xl.XL_BUDGETS["xl"]


def _imagefolder(root: Path, n_train: int = 6, n_test: int = 3, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(n):
                px = np.clip(40 + 160 * i + rng.integers(-30, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(d / f"{k:03d}.png")
    return root


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    rp.add_arguments(p)
    argv = []
    for k, v in kw.items():
        if v is True:
            argv.append(f"--{k.replace('_', '-')}")
        else:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# --------------------------------------------------------------------------- plan
def test_plan_shape_order_and_commands():
    plan = xl.build_xl_plan(budget=XL, settings=list(xl.XL_DEFAULT_SETTINGS), seeds=3, out="/o", cifar_dir="/c")
    kinds = [j.kind for j in plan]
    assert len(plan) == 81 and kinds.count("sweep") == 27 and kinds.count("train") == kinds.count("eval") == 27
    # the five priority settings first: their sweep, then seed-major training + its evaluation;
    # then the same for the further four
    assert kinds[:15] == ["sweep"] * 15 and kinds[45:57] == ["sweep"] * 12
    assert kinds[15:45] == ["train", "eval"] * 15 and kinds[57:] == ["train", "eval"] * 12
    names = [j.name for j in plan]
    assert names[15:19] == ["train max seed0", "eval max seed0", "train avg seed0", "eval avg seed0"]
    assert names.index("eval lift-avginit seed0") < names.index("train max seed1")
    assert names.index("eval lift-avginit seed2") < names.index("sweep skip lr0.025")
    assert names.index("eval mixed seed0") < names.index("train skip seed1")
    # a training run's evaluation must follow it in the same stretch
    assert all(j.then == f"eval {j.setting} seed{j.seed}" for j in plan if j.kind == "train")
    sweep = [j.argv() for j in plan if j.kind == "sweep"]
    for argv in sweep:  # 10 epochs, seed 0, validated on the held-out split of the training set only
        a = list(argv)
        assert a[a.index("--epochs") + 1] == "10" and a[a.index("--seed") + 1] == "0"
        assert a[a.index("--val-split") + 1] == "val" and a[a.index("--data-dir") + 1].endswith("holdout500pc")
        assert a[a.index("--optimizer") + 1] == "sgd" and a[a.index("--schedule") + 1] == "cosine"
        assert a[a.index("--batch-size") + 1] == "128" and a[a.index("--width") + 1] == "0.25"
    assert sorted({a[list(a).index("--lr") + 1] for a in sweep}) == ["0.025", "0.05", "0.1"]
    ev = next(j for j in plan if j.name == "eval lift seed2").argv()
    assert ev[ev.index("--corruption-images") + 1] == "all" and ev[ev.index("--split") + 1] == "test"
    assert ev[ev.index("--metrics") + 1] == "accuracy,shift,corruption"
    # the final runs wait for their sweep
    train = next(j for j in plan if j.name == "train lift seed0")
    assert "sweep of lift" in train.blocked()
    with pytest.raises(ValueError, match="has not finished"):
        train.argv()


def test_settings_reach_the_model_and_avginit_starts_as_average_pooling():
    import torch

    from liftpool.layers import LiftDownPool2d
    from liftpool.training.config import POOL_DEFAULTS

    assert POOL_DEFAULTS["lift"] == {"scale": "mean"}  # why the third variant also sets zero_init
    nets = {}
    for key in ("avg", "lift-avginit", "lift"):
        s = xl.XL_SETTINGS[key]
        argv = xl._model_argv(s, XL)
        kw = json.loads(argv[argv.index("--model-kwargs") + 1]) if "--model-kwargs" in argv else {}
        torch.manual_seed(0)
        nets[key] = create_model("vgg13_cifar", pool=s.pool, num_classes=10, width=0.0625, **kw).eval()
    pools = [m for m in nets["lift-avginit"].modules() if isinstance(m, LiftDownPool2d)]
    assert len(pools) == 5 and all(p.scale == 0.25 and p.zero_init for p in pools)
    nets["lift-avginit"].load_state_dict(nets["avg"].state_dict(), strict=False)  # same convs, BN, classifier
    nets["lift"].load_state_dict(nets["avg"].state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(nets["lift-avginit"](x), nets["avg"](x), atol=1e-5)
    assert not torch.allclose(nets["lift"](x), nets["avg"](x), atol=1e-3)  # random P/U: not average pooling
    nocons = xl._model_argv(xl.XL_SETTINGS["lift-nocons"], XL)
    assert "--no-constraints" in nocons and "--constraints" not in nocons


def test_settings_flag_and_bad_input():
    assert xl.parse_settings("lift-avginit,max,lift") == ["max", "lift", "lift-avginit"]
    assert xl.parse_settings(None) == list(xl.XL_SETTINGS)[:9] == list(xl.XL_DEFAULT_SETTINGS)
    # the pooling peers are extra settings, in priority order after the study's nine
    assert xl.parse_settings("lps,max,softpool") == ["max", "softpool", "lps"]
    argv = xl._model_argv(xl.XL_SETTINGS["aps"], XL)
    assert argv[argv.index("--pool") + 1] == "aps" and "--model-kwargs" not in argv
    with pytest.raises(ValueError, match="--settings"):
        xl.parse_settings("max,median")
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        xl.build_xl_plan(budget=XL, settings=["max"], seeds=0, out="/o", cifar_dir="/c")
    with pytest.raises(ValueError, match="CIFAR-10"):
        xl.build_xl_plan(budget=XL, settings=["max"], seeds=1, out="/o", cifar_dir=None)
    with pytest.raises(ValueError, match="--table does not apply"):
        rp.run(_args(budget="xl", table="table1", out="/tmp/x"))
    with pytest.raises(ValueError, match="--table is required"):
        rp.run(_args(budget="small", out="/tmp/x"))
    with pytest.raises(ValueError, match="for the xl budgets"):
        rp.run(_args(budget="small", table="table1", out="/tmp/x", settings="max"))


# --------------------------------------------------------------------------- held-out split
def test_holdout_is_disjoint_complete_balanced_and_deterministic(tmp_path):
    src = _imagefolder(tmp_path / "src", n_train=12, classes=("a", "b", "c"))
    r1 = xl.make_holdout(src / "train", tmp_path / "h1", 3, record=tmp_path / "holdout.json")
    r2 = xl.make_holdout(src / "train", tmp_path / "h2", 3)
    assert r1["holdout"] == r2["holdout"] and json.loads((tmp_path / "holdout.json").read_text()) == r1
    assert r1["holdout_images"] == 9 and r1["train_images"] == 27
    for c in ("a", "b", "c"):
        val = sorted(p.name for p in (tmp_path / "h1" / "val" / c).iterdir())
        train = sorted(p.name for p in (tmp_path / "h1" / "train" / c).iterdir())
        assert val == r1["holdout"][c] and len(val) == 3
        assert not set(val) & set(train)
        assert sorted(val + train) == sorted(p.name for p in (src / "train" / c).iterdir())
        assert (tmp_path / "h1" / "val" / c / val[0]).resolve().parent == (src / "train" / c).resolve()
    # another seed draws another split
    assert xl.make_holdout(src / "train", tmp_path / "h3", 3, seed=1)["holdout"] != r1["holdout"]
    with pytest.raises(ValueError, match="would leave none"):
        xl.make_holdout(src / "train", tmp_path / "h4", 12)
    with pytest.raises(ValueError, match="per_class"):
        xl.make_holdout(src / "train", tmp_path / "h5", 0)


# --------------------------------------------------------------------------- learning-rate choice
def _sweep_summary(out: Path, key: str, lr: float, acc: float, *, split="val", epochs=10, hold=None):
    hold = hold or xl.data_dirs(out, XL)[1]
    _write(out / "sweep" / key / f"lr{lr:g}" / "summary.json", {
        "status": "completed", "completed_epochs": epochs, "final": {"val_acc": acc},
        "data": {"val_split": split, "root": str(hold)},
    })  # fmt: skip


def test_lr_is_chosen_on_the_held_out_split_only(tmp_path):
    out = tmp_path
    _sweep_summary(out, "max", 0.025, 0.70)
    _sweep_summary(out, "max", 0.05, 0.80)
    assert xl.select_lr(out, "max", XL)[0] is None  # lr 0.1 not finished: no choice yet
    _sweep_summary(out, "max", 0.1, 0.75)
    # the test set says otherwise: an evaluation of the lr-0.1 run with a lower error is ignored
    _write(out / "sweep" / "max" / "lr0.1" / "eval" / "results.json", {"results": [{"accuracy": {"top1_error": 0.0}}]})
    lr, accs = xl.select_lr(out, "max", XL)
    assert lr == 0.05 and accs == {0.025: 0.70, 0.05: 0.80, 0.1: 0.75}
    # ties go to the smaller rate; a diverged run is never chosen
    for lr_ in XL.lrs:
        _sweep_summary(out, "avg", lr_, 0.6)
    (out / "sweep" / "avg" / "lr0.025" / "diverged.json").write_text("{}")
    assert xl.select_lr(out, "avg", XL)[0] == 0.05
    # a sweep run validated on the test split is refused
    for lr_ in XL.lrs:
        _sweep_summary(out, "skip", lr_, 0.6, split="test")
    with pytest.raises(ValueError, match="held-out split"):
        xl.select_lr(out, "skip", XL)
    for lr_ in XL.lrs:
        _sweep_summary(out, "gated", lr_, 0.6, hold=tmp_path / "data" / "cifar10-all-all")
    with pytest.raises(ValueError, match="held-out split"):
        xl.select_lr(out, "gated", XL)
    # the final run gets the chosen rate
    plan = xl.build_xl_plan(budget=XL, settings=["max"], seeds=1, out=out, cifar_dir="/c")
    t = next(j for j in plan if j.kind == "train")
    assert t.blocked() is None and t.argv()[list(t.argv()).index("--lr") + 1] == "0.05"
    assert "--diagnostics" in t.argv() and t.argv()[list(t.argv()).index("--epochs") + 1] == "30"


def test_evaluation_waits_for_a_completed_training_run_not_just_its_checkpoint(tmp_path):
    """The checkpoint exists from the first epoch on: an evaluation started on it would score a
    half-trained model and be recorded as done."""
    plan = xl.build_xl_plan(budget=XL, settings=["max"], seeds=1, out=tmp_path, cifar_dir="/c")
    ev = next(j for j in plan if j.kind == "eval")
    run_dir = tmp_path / "runs" / "max" / "seed0"
    assert "has not completed 30 epochs" in ev.blocked()
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
    _write(run_dir / "summary.json", {"status": "running", "completed_epochs": 14})
    assert "has not completed 30 epochs" in ev.blocked()
    _write(run_dir / "summary.json", {"status": "completed", "completed_epochs": 29})
    assert "has not completed 30 epochs" in ev.blocked()
    _write(run_dir / "summary.json", {"status": "completed", "completed_epochs": 30})
    assert ev.blocked() is None
    (run_dir / "checkpoints" / "last.pt").unlink()
    assert "missing" in ev.blocked()


def test_repository_ignore_rules_keep_every_result_of_the_study_and_drop_checkpoints():
    """What ``--commit`` adds must not be ignored by the project's .gitignore (a general ``runs/`` or
    ``*.pt`` rule once hid every final run), while checkpoints and the data links stay out."""
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs the project's git checkout")
    kept = ["results/xl/runs/max/seed0/summary.json", "results/xl/runs/lift/seed0/diagnostics.json",
            "results/xl/runs/lift/seed0/weights_fp16.pt", "results/xl/runs/avg/seed2/metrics.csv",
            "results/xl/sweep/max/lr0.05/summary.json", "results/xl/eval/lift-seed1/results.json",
            "results/xl/jobs/train_max_seed0.json", "results/xl/logs/train_max_seed0.log",
            "results/xl/summary.json", "results/xl/report/curves.png"]  # fmt: skip
    dropped = ["results/xl/runs/max/seed0/checkpoints/last.pt", "results/xl/runs/avg/seed1/weights_fp16.pt",
               "results/xl/sweep/max/lr0.05/checkpoints/best.pt", "results/xl/data/cifar10-all-all/train"]  # fmt: skip
    res = subprocess.run(["git", "check-ignore", "--no-index", *kept, *dropped], cwd=root, capture_output=True,
                         text=True)  # fmt: skip
    ignored = set(res.stdout.split())
    assert not ignored & set(kept), sorted(ignored & set(kept))
    assert ignored >= set(dropped), sorted(set(dropped) - ignored)


# --------------------------------------------------------------------------- aggregation
def _fake_eval(out: Path, key: str, seed: int, err: float, ce: dict[str, list[float]], cons: float) -> None:
    _write(out / "eval" / f"{key}-seed{seed}" / "results.json", {"results": [{
        "label": key, "accuracy": {"top1_error": err}, "shift": {"consistency": cons, "shifted_accuracy": 1 - err},
        "corruption": {"errors": ce, "mce": float(np.mean([np.mean(v) for v in ce.values()]))},
    }]})  # fmt: skip
    _write(out / "runs" / key / f"seed{seed}" / "summary.json",
           {"status": "completed", "parameters": 1000, "wall_time_s": 600.0 * (seed + 1)})  # fmt: skip


def test_aggregate_and_report_from_fake_results(tmp_path):
    errs = {"max": [0.20, 0.22, 0.24], "lift": [0.18, 0.21, 0.21]}
    names = CORRUPTIONS
    rels = []
    for seed in range(3):
        ce_max = {n: [0.3 + 0.01 * seed] * 5 for n in names}
        ce_lift = {n: [0.3 + 0.01 * seed + (0.03 if i % 2 else -0.03)] * 5 for i, n in enumerate(names)}
        _fake_eval(tmp_path, "max", seed, errs["max"][seed], ce_max, 0.9)
        _fake_eval(tmp_path, "lift", seed, errs["lift"][seed], ce_lift, 0.8 + 0.01 * seed)
        rels.append(np.mean([ce_lift[n][0] / ce_max[n][0] for n in names]))
    for key, best in (("max", 0.05), ("lift", 0.1)):
        for lr in XL.lrs:
            _sweep_summary(tmp_path, key, lr, 0.9 if lr == best else 0.5)
    agg = xl.aggregate_xl(tmp_path, seeds=3, budget=XL, settings=["max", "lift", "avg"])
    rows = {r["setting"]: r for r in agg["rows"]}
    m, sd, n = rows["lift"]["top1_error"]
    assert (
        n == 3
        and m == pytest.approx(statistics.mean(errs["lift"]))
        and sd == pytest.approx(statistics.stdev(errs["lift"]))
    )
    assert rows["max"]["mce_rel_max"][:2] == pytest.approx((1.0, 0.0))
    assert rows["lift"]["mce_rel_max"][:2] == pytest.approx((statistics.mean(rels), statistics.stdev(rels)))
    assert rows["lift"]["consistency"][:2] == pytest.approx((0.81, 0.01))
    assert rows["avg"]["top1_error"][2] == 0 and rows["lift"]["lr"] == 0.1 and rows["max"]["lr"] == 0.05
    files = xl.write_xl_report(tmp_path, seeds=3, budget=XL, settings=["max", "lift", "avg"])
    md = (tmp_path / "report" / "results_xl.md").read_text()
    assert "| MaxPool | `max` | 0.05 | 1,000 | 22.00 ± 2.00 | 90.00 ± 0.00 | 100.0 ± 0.0 |" in md
    assert "| 3 | 20 |" in md  # mean wall time 600, 1200, 1800 s = 20 min
    assert "| AvgPool | `avg` | – | – | – |" in md
    sweep = (tmp_path / "report" / "sweep_xl.md").read_text()
    assert "| MaxPool | 50.00 | **10.00** | 50.00 | 0.05 |" in sweep
    assert {p.name for p in files} >= {"results_xl.png", "sweep_xl.png", "aggregate_xl.json", "sweep.json"}


# --------------------------------------------------------------------------- summary.json
def test_summary_json_has_exactly_the_documented_form(tmp_path):
    for seed in range(2):
        ce_max = {n: [0.30] * 5 for n in CORRUPTIONS}
        ce_lift = {n: [0.27] * 5 for n in CORRUPTIONS}
        _fake_eval(tmp_path, "max", seed, 0.10 + 0.01 * seed, ce_max, 0.88)
        _fake_eval(tmp_path, "lift", seed, 0.12, ce_lift, 0.90)
        for key, lr in (("max", 0.05), ("lift", 0.1)):
            d = tmp_path / "runs" / key / f"seed{seed}"
            _write(d / "summary.json", {"status": "completed", "completed_epochs": 30, "train_images": 50000,
                                        "wall_time_s": 1800.0, "parameters": 1000})  # fmt: skip
            _write(d / "config.json", {"train": {"lr": lr}})
            _write(tmp_path / "jobs" / f"train_{key}_seed{seed}.json",
                   {"threads": 1, "cpu": "Some CPU", "commit": "abc123", "wall_s": 1800.0})  # fmt: skip
            r = json.loads((tmp_path / "eval" / f"{key}-seed{seed}" / "results.json").read_text())
            r["results"][0]["images"] = 10000
            _write(tmp_path / "eval" / f"{key}-seed{seed}" / "results.json", r)
    path = xl.write_xl_summary(tmp_path, seeds=3, budget=XL, settings=["max", "lift", "avg"])
    summ = json.loads(path.read_text())
    assert set(summ) == {"recipe", "runs"} and summ["recipe"]["epochs"] == 30 and summ["recipe"]["seeds"] == 3
    assert [(r["setting"], r["seed"]) for r in summ["runs"]] == [("max", 0), ("lift", 0), ("max", 1), ("lift", 1)]
    for r in summ["runs"]:
        assert tuple(r) == xs.RUN_FIELDS
    m0, l1 = summ["runs"][0], summ["runs"][3]
    assert m0 == {"setting": "max", "seed": 0, "lr": 0.05, "epochs": 30, "train_images": 50000, "test_images": 10000,
                  "top1_error": 10.0, "shift_consistency": 88.0, "mce_rel_max": 100.0, "corruption_error": 30.0,
                  "wall_s": 1800.0, "threads": 1, "cpu": "Some CPU", "commit": "abc123"}  # fmt: skip
    assert l1["top1_error"] == 12.0 and l1["mce_rel_max"] == pytest.approx(90.0) and l1["corruption_error"] == 27.0
    md = xs.summary_markdown(summ, settings=["max", "lift", "avg"], labels=xl.XL_LABELS)
    assert "| MaxPool (`max`) | – | 2 | 10.50 ± 0.71 |" in md and "| 0 | not run |" in md
    assert "| 30 (Some, 2) |" in md  # training time per CPU model
    # 2 of the 3 planned seeds: every verdict waits for the third
    assert "than MaxPool | top1_error: +2.00, +1.00 | pending (2 of 3 seeds; 0/2 in the claimed direction" in md
    assert "(mCE < 100 %) | mce_rel_max: -10.00, -10.00 | pending (2 of 3 seeds; 2/2 in the claimed direction" in md
    assert "constraint losses help" in md and "no data" in md  # lift-nocons was not run
    assert "*supported* = every seed's paired difference goes the claimed way" in md
    summ["recipe"]["seeds"] = 2  # as if two seeds had been planned: verdicts with the paired interval
    md = xs.summary_markdown(summ, settings=["max", "lift", "avg"], labels=xl.XL_LABELS)
    assert "top1_error: +2.00, +1.00 | not supported (0/2 seeds; 95 % CI [-4.85, +7.85])" in md
    # the README's short form: one column per setting with runs, the same numbers and verdicts
    short = xs.readme_markdown(summ, settings=["max", "lift", "avg"], labels={"max": "MaxPool", "lift": "Lift"})
    assert short.startswith("| | MaxPool | Lift |\n|---|---:|---:|\n| seeds | 0,1 | 0,1 |\n")
    assert "| top-1 error (%) | 10.50 ± 0.71 | 12.00 ± 0.00 |" in short
    assert "| mCE relative to MaxPool (%) | 100.00 ± 0.00 | 90.00 ± 0.00 |" in short
    assert "Not run yet: avg." in short
    claim = "- LiftDownPool has a lower top-1 error than MaxPool: +2.00, +1.00 points per seed: **not supported (0/2"
    assert claim in short
    assert "constraint losses" not in short  # lift-nocons is not among the settings
    assert xs.readme_markdown({"runs": []}, settings=["max"], labels={}) == "(no run of the study has finished yet)\n"


def test_train_time_is_listed_per_cpu_model():
    """Runs on different CPUs are not averaged together; the model names lose (R) and "Processor"."""
    runs = [{"setting": "lift", "wall_s": 3600.0, "cpu": "Intel(R) Xeon(R) Processor"},
            {"setting": "lift", "wall_s": 3480.0, "cpu": "Intel(R) Xeon(R) Processor"},
            {"setting": "lift", "wall_s": 4800.0, "cpu": "AMD EPYC"},
            {"setting": "max", "wall_s": 1800.0, "cpu": None},
            {"setting": "avg", "wall_s": float("nan"), "cpu": "AMD EPYC"}]  # fmt: skip
    assert xs._wall_by_cpu(runs, "lift") == "59 (Intel Xeon, 2); 80 (AMD EPYC, 1)"
    assert xs._wall_by_cpu(runs, "max") == "30 (unknown CPU, 1)"
    assert xs._wall_by_cpu(runs, "avg") == "–" and xs._wall_by_cpu(runs, "skip") == "–"


def test_status_counts_the_priority_settings_apart(tmp_path):
    """With further settings in the report, the status line says how far the five priority settings
    are and counts the further ones apart; runs outside the planned settings and seeds do not count."""
    runs = [{"setting": s, "seed": k} for s, k in (("max", 0), ("max", 1), ("lift", 0), ("skip", 0), ("lps", 0),
                                                   ("max", 5))]  # fmt: skip
    _write(tmp_path / "summary.json", {"recipe": {"seeds": 3}, "runs": runs})
    settings = ["max", "avg", "lift", "lift-nocons", "lift-avginit", "skip", "gated"]
    sec = xl.results_section(tmp_path, seeds=3, budget=XL, settings=settings, report_files=[])
    assert sec.startswith("**Status: 3 of 15 planned runs of the 5 priority settings finished and evaluated; "
                          "further settings (skip, gated): 1 of 6** (3 seeds each")  # fmt: skip
    sec = xl.results_section(tmp_path, seeds=3, budget=XL, settings=["max", "lift"], report_files=[])
    assert sec.startswith("**Status: 3 of 6 planned runs finished and evaluated** (2 settings x 3 seeds")


def test_paired_differences_and_verdicts():
    runs = [{"setting": s, "seed": k, "top1_error": v} for s, k, v in
            (("lift", 0, 9.0), ("max", 0, 10.0), ("lift", 1, 11.0), ("max", 1, 10.0), ("lift", 2, 8.0))]  # fmt: skip
    assert xs.paired(runs, "lift", "max", "top1_error") == {0: -1.0, 1: 1.0}  # seed 2 has no MaxPool run
    assert xs.verdict([-1.0, 1.0], lower_is_better=True) == "inconclusive (1/2 seeds; 95 % CI [-12.71, +12.71])"
    # two seeds the same way but far apart: within seed noise; close together: supported
    assert xs.verdict([1.0, 2.0], lower_is_better=False).startswith("same direction, within seed noise (2/2 seeds")
    assert xs.verdict([1.0, 1.1], lower_is_better=False) == "supported (2/2 seeds; 95 % CI [+0.41, +1.69])"
    assert xs.verdict([0.5, 0.6, 0.55], lower_is_better=True) == "contradicted (0/3 seeds; 95 % CI [+0.43, +0.67])"
    assert xs.verdict([-0.3], lower_is_better=True) == "same direction, within seed noise (1/1 seeds)"
    assert xs.verdict([-0.3], lower_is_better=True, planned=3).startswith("pending (1 of 3 seeds; 1/1")
    assert xs.verdict([], lower_is_better=True) == "no data"
    # the interval: mean +- t(0.975, n-1) * s / sqrt(n), by hand for n = 3 (t = 4.303)
    mean, lo, hi = xs.paired_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and hi - mean == pytest.approx(4.303 * 1.0 / 3**0.5) and mean - lo == pytest.approx(hi - mean)
    with pytest.raises(ValueError, match="two or more"):
        xs.paired_interval([1.0])


# --------------------------------------------------------------------------- end to end
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_xl_tiny_end_to_end_two_workers_commits_resumes_and_respects_stop_at(tmp_path, monkeypatch, capsys):
    # one learning rate keeps it to 6 subprocesses (2 sweep, 2 train, 2 eval); the results live in a git repository
    monkeypatch.setitem(xl.XL_BUDGETS, "xl-tiny", dataclasses.replace(xl.XL_BUDGETS["xl-tiny"], lrs=(0.05,)))
    _imagefolder(tmp_path / "data" / "cifar10-jpeg")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "t@example.org")
    _git(repo, "config", "user.name", "t")
    ignore = "*.pt\n!res/xl/runs/*/seed0/weights_fp16.pt\nres/xl/data/\nres/xl/**/checkpoints/\n"
    (repo / ".gitignore").write_text(ignore)
    _git(repo, "add", ".gitignore")
    _git(repo, "commit", "-qm", "init")
    out = repo / "res" / "xl"
    kw = dict(budget="xl-tiny", data_root=tmp_path / "data", out=out, seeds=1, settings="max,lift",
              corruption_cache=tmp_path / "cache")  # fmt: skip
    # --stop-at in the past (00:00 is always passed): nothing starts, the report is still written
    assert rp.run(_args(**kw, stop_at="00:00")) == 0
    assert not (out / "sweep").exists() and (out / "report" / "results_xl.md").exists()
    assert "past --stop-at 00:00" in (out / "reproduce.log").read_text()
    # --dry-run lists what is pending and how long it is expected to take (the budget's first guesses here)
    capsys.readouterr()
    assert rp.run(_args(**kw, dry_run=True, workers=2, threads=1)) == 0
    listing = capsys.readouterr().out
    guess = dict(xl.XL_BUDGETS["xl-tiny"].guess_s)
    assert f"pending sweep max lr0.05 (expected {guess['sweep'] / 60:.0f} min here)" in listing
    assert "6 jobs: 2 sweep runs, 2 training runs, 2 evaluations; the pending ones are expected to take" in listing
    assert rp.run(_args(**kw, workers=2, threads=1, commit=True)) == 0
    capsys.readouterr()
    assert rp.run(_args(**kw, dry_run=True)) == 0
    assert "the pending ones are expected to take 0.0 h" in capsys.readouterr().out  # all done
    hold = json.loads((out / "holdout.json").read_text())
    assert hold["holdout_images"] == 2 and hold["train_images"] == 6
    for key in ("max", "lift"):
        s = json.loads((out / "sweep" / key / "lr0.05" / "summary.json").read_text())
        assert s["data"]["val_split"] == "val" and s["data"]["root"].endswith("holdout1pc")
        cfg = json.loads((out / "runs" / key / "seed0" / "config.json").read_text())
        assert cfg["train"]["lr"] == 0.05 and cfg["train"]["diagnostics"] is True
        res = json.loads((out / "eval" / f"{key}-seed0" / "results.json").read_text())["results"][0]
        assert set(res["corruption"]["errors"]) == set(CORRUPTIONS)
    d = json.loads((out / "runs" / "lift" / "seed0" / "diagnostics.json").read_text())
    assert len(d["layers"]) == 5 and d["records"]
    rep = out / "report"
    assert {"diagnosis.md", "diag_pu.png", "diag_constraints.png", "diag_grads.png"} <= {p.name for p in rep.iterdir()}
    md = (rep / "results_xl.md").read_text()
    assert "| MaxPool | `max` | 0.05 |" in md and "100.0 ± 0.0 (1 seed)" in md

    # every finished job was committed on its own, with its record; checkpoints and data links never
    log = _git(repo, "log", "--format=%s")
    for job in ("sweep max lr0.05", "train lift seed0", "eval max seed0", "eval lift seed0"):
        assert f"xl study: {job} finished" in log
    tracked = _git(repo, "ls-files").split()
    assert "res/xl/summary.json" in tracked and "res/xl/jobs/train_max_seed0.json" in tracked
    assert "res/xl/runs/lift/seed0/weights_fp16.pt" in tracked and "res/xl/runs/lift/seed0/summary.json" in tracked
    assert not any("/checkpoints/" in f or "/data/" in f for f in tracked)
    rec = json.loads((out / "jobs" / "train_lift_seed0.json").read_text())
    assert rec["threads"] == 1 and rec["workers"] == 2 and rec["ok"] and "commit" in rec
    summ = json.loads((out / "summary.json").read_text())
    assert [(r["setting"], r["seed"], r["epochs"], r["threads"]) for r in summ["runs"]] == [
        ("max", 0, 1, 1), ("lift", 0, 1, 1)]  # fmt: skip
    assert summ["runs"][0]["mce_rel_max"] == 100.0 and summ["runs"][1]["train_images"] == 8
    # the float16 weights-only copy loads with weights_only=True and gives the trained model's outputs
    from liftpool.training.checkpoint import load_model

    w, _ = load_model(out / "runs" / "lift" / "seed0" / "weights_fp16.pt", weights_only=True)
    full, _ = load_model(out / "runs" / "lift" / "seed0" / "checkpoints" / "last.pt")
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(w(x), full(x), atol=5e-2)
    assert (out / "runs" / "lift" / "seed0" / "weights_fp16.pt").stat().st_size < 1.5e6
    assert not (out / "runs" / "lift" / "seed1").exists()
    sec = (out / "report" / "results_section.md").read_text()
    assert "**Status: 2 of 2 planned runs finished and evaluated**" in sec and "![test error per epoch" in sec
    assert "| LiftDownPool has a lower top-1 error than MaxPool |" in sec and "### Diagnosis" in sec
    # the results page takes the section; blocks of budgets that are not there are left alone
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text("# R\n<!-- BEGIN xl/results_section.md -->\nSTALE-SECTION\n<!-- END -->\n"
                   "<!-- BEGIN small/results_table3.md -->\nkept\n<!-- END -->\n")  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text("# P\n<!-- BEGIN xl/readme_xl.md -->\nSTALE-TABLE\n<!-- END -->\ntail\n")
    script = Path(__file__).resolve().parents[1] / "scripts" / "update_results_doc.py"
    subprocess.run([sys.executable, str(script), "--runs", str(repo / "res"), "--doc", str(doc), "--doc", str(readme)],
                   check=True, capture_output=True)  # fmt: skip
    page = doc.read_text()
    assert "STALE-SECTION" not in page and "kept" in page and "**Status: 2 of 2" in page
    assert "](../repo/res/xl/report/curves.png)" in page
    front = readme.read_text()
    assert "STALE-TABLE" not in front and front.endswith("<!-- END -->\ntail\n")
    assert "| seeds | 0 | 0 |" in front and "- LiftDownPool has a lower top-1 error than MaxPool: " in front
    assert not (tmp_path / "figures").exists()  # the README links no result figure: none copied beside it
    # the corrupted copies were generated once and reused by the second evaluation
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 75

    def starts() -> int:
        return sum(" UTC] start " in line for line in (out / "reproduce.log").read_text().splitlines())

    n = starts()
    assert n == 6
    assert rp.run(_args(**kw)) == 0
    # a fresh clone has no checkpoints: the evaluated runs still count as done
    for ck in list(out.rglob("checkpoints")):
        shutil.rmtree(ck)
    assert rp.run(_args(**kw)) == 0
    assert rp.run(_args(**kw, report_only=True)) == 0
    assert starts() == n  # no finished job was started again


def test_machine_time_counts_every_stretch_of_resumed_runs_and_the_evaluations(tmp_path):
    """A run resumed from its checkpoint: its summary's wall time adds up every stretch, its job record
    only the last one; runs stopped without a record still count once completed."""
    _write(tmp_path / "runs" / "max" / "seed0" / "summary.json",
           {"status": "completed", "wall_time_s": 3600.0, "threads": 1})  # fmt: skip
    _write(tmp_path / "jobs" / "train_max_seed0.json", {"kind": "train", "setting": "max", "ok": True, "wall_s": 900.0,
                                                         "threads": 1, "workers": 2, "resumed": True})  # fmt: skip
    _write(tmp_path / "sweep" / "max" / "lr0.1" / "summary.json",
           {"status": "completed", "wall_time_s": 1800.0, "threads": 1})  # no record: an earlier stretch  # fmt: skip
    _write(tmp_path / "sweep" / "avg" / "lr0.1" / "summary.json", {"status": "running", "wall_time_s": 99.0})
    _write(tmp_path / "jobs" / "sweep_lift_lr0.1.json",
           {"kind": "sweep", "setting": "lift", "ok": True, "wall_s": 360.0, "threads": 1, "workers": 2,
            "diverged": True})  # fmt: skip
    _write(tmp_path / "jobs" / "eval_max_seed0.json", {"kind": "eval", "setting": "max", "ok": True, "wall_s": 720.0,
                                                        "threads": 1, "workers": 2, "cpu": "CPU B"})  # fmt: skip
    mt = xl.machine_time(tmp_path)
    assert mt["kinds"] == {"sweep": {"jobs": 2, "wall_h": 0.6}, "train": {"jobs": 1, "wall_h": 1.0},
                           "eval": {"jobs": 1, "wall_h": 0.2}}  # fmt: skip
    assert mt["cores"] == 2 and mt["core_hours"] == 1.8 and mt["machine_hours"] == 0.9
    assert mt["cpus"] == {"CPU B": 1, "unknown": 2}  # the machines the records were made on
    _write(tmp_path / "summary.json", {"recipe": {"seeds": 1}, "runs": []})
    sec = xl.results_section(tmp_path, seeds=1, budget=XL, settings=["max"], report_files=[])
    assert "; CPUs of the job records (jobs): CPU B (1), unknown (2)." in sec.splitlines()[0]


def test_every_setting_of_a_figure_has_its_own_colour_and_liftdownpool_is_red():
    keys = list(xl.XL_DEFAULT_SETTINGS)
    colors = [xs.setting_color(k, i) for i, k in enumerate(keys)]
    assert len(set(colors)) == len(keys) and xs.setting_color("lift", keys.index("lift")) == "tab:red"
    assert colors.count("tab:red") + colors.count("C3") == 1  # C3 is matplotlib's tab:red


# --------------------------------------------------------------------------- diagnosis
def _diag_row(p_rel, u_rel, c, w2, grad, first=(0.7, 0.7, 5.0, 0.5)):
    a_p, a_u, a_c, a_w = first
    return {"grad_output_norm": grad, "grad_input_norm": grad,
            "first": {"p_rel": a_p, "u_rel": a_u, "c_u": a_c / 2, "c_p": a_c / 2, "P_w2": a_w, "U_w2": a_w},
            "last": {"p_rel": p_rel, "u_rel": u_rel, "c_u": c / 2, "c_p": c / 2, "P_w2": w2, "U_w2": w2}}  # fmt: skip


def test_diagnosis_findings_are_computed_from_the_tables():
    from liftpool.studies import diagnosis as dg

    summary = {
        "max": {"seeds": 2, "layers": {"a": {"grad_output_norm": 0.2}, "b": {"grad_output_norm": 0.1}}},
        "lift": {"seeds": 2, "layers": {"a": _diag_row(0.5, 0.3, 0.1, 0.25, 0.6),
                                        "b": _diag_row(0.2, 0.1, 0.3, 0.05, 0.1)}},
        "lift-nocons": {"seeds": 1, "layers": {"a": _diag_row(0.01, 0.02, 0.4, 0.4, 0.2),
                                               "b": _diag_row(0.3, 0.3, 1.2, 0.3, 0.1)}},
    }  # fmt: skip
    got = dg.findings(summary)
    assert "`lift`: P and U stay active at every stage (end p_rel 0.2–0.5, u_rel 0.1–0.3)." in got
    assert "`lift`: P's 1x1 gate shrinks most at stage 2 (RMS x0.1) and least at stage 1 (x0.5)." in got
    assert any(x.startswith("`lift-nocons`: P and U collapsed to near zero at stage(s) 1 ") for x in got)
    # c_u + c_p: lift 5 -> 0.2 (x0.04), no constraints 5 -> 0.8 (x0.16): 4x smaller with the losses
    assert ("Constraint terms (c_u + c_p, mean over stages): with the constraint losses (`lift`) 5 → 0.2 (x0.04); "
            "without them (`lift-nocons`) 5 → 0.8 (x0.16): the losses leave the terms 4x smaller at the end.") in got
    assert "`lift`: gradient norm at the pooling outputs relative to MaxPool's, stage 1 to 2: 3x, 1x." in got
    assert "**What it shows**" in dg.diagnosis_markdown(summary)


def test_diagnosis_gradient_figure_uses_the_studys_colours(tmp_path, monkeypatch):
    """Every setting keeps the colour the other figures give it (LiftDownPool red, no other red)."""
    from matplotlib.colors import to_hex

    from liftpool.studies import diagnosis as dg

    order = ["max", "avg", "lift", "lift-nocons", "lift-avginit"]
    step = {"step": 0, "epoch": 0.0, "layers": {"a": {"grad_output_norm": 0.1}}}
    rec = {"layers": [{"name": "a"}], "records": [step]}
    diags = {k: [rec] for k in order}
    summary = {k: {"seeds": 1, "layers": {"a": {"grad_output_norm": 0.1 * (i + 1)}}} for i, k in enumerate(order)}
    figs = []
    monkeypatch.setattr(dg, "atomic_save_figure", lambda fig, path, **kw: figs.append(fig))
    assert dg._plot_grads(diags, summary, tmp_path / "g.png", order)
    bars = figs[0].axes[0].containers
    got = [to_hex(b.patches[0].get_facecolor()) for b in bars]
    assert got == [to_hex(xs.setting_color(k, i)) for i, k in enumerate(order)]
    assert len(set(got)) == len(order) and got[2] == to_hex("tab:red")


def test_sweep_figure_uses_the_studys_colours(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    order = ["max", "avg", "lift", "lift-nocons", "lift-avginit", "skip"]
    agg = {"sweep": {k: {"accuracy": {"0.025": 0.8, "0.05": 0.81 if k != "skip" else None, "0.1": None}}
                     for k in order}}  # fmt: skip
    figs = []
    monkeypatch.setattr(xl, "atomic_save_figure", lambda fig, path, **kw: figs.append(fig))
    assert xl._plot_sweep(agg, [0.025, 0.05, 0.1], tmp_path / "s.png", 500)
    ax = figs[0].axes[0]
    want = [to_hex(xs.setting_color(k, i)) for i, k in enumerate(order)]
    assert [to_hex(line.get_color()) for line in ax.lines] == want
    assert "500 training images per class" in ax.get_title()


def test_diagnosis_leaves_out_runs_still_training(tmp_path):
    from liftpool.studies import diagnosis as dg

    rec = {"records": [{"epoch": 1.0, "layers": {}}]}
    for seed, status in ((0, "completed"), (1, "running")):
        _write(tmp_path / "runs" / "lift" / f"seed{seed}" / "diagnostics.json", rec)
        _write(tmp_path / "runs" / "lift" / f"seed{seed}" / "summary.json", {"status": status})
    _write(tmp_path / "runs" / "max" / "seed0" / "diagnostics.json", rec)  # no summary: not finished
    assert {k: len(v) for k, v in dg.load_diagnostics(tmp_path, ["lift", "max"], 3).items()} == {"lift": 1}


def test_diagnosis_fit_reads_the_last_epoch_of_finished_runs(tmp_path):
    """The fit table and the constraint-loss finding come from the last row of metrics.csv."""
    from liftpool.studies import diagnosis as dg

    head = "epoch,lr,train_loss,train_lift_loss,train_acc,val_loss,val_acc\n"
    runs = {("lift", 0): "2,0.1,0.30,0.025,0.90,0.5,0.85\n", ("lift", 1): "2,0.1,0.26,0.023,0.92,0.5,0.86\n",
            ("lift-nocons", 0): "2,0.1,0.25,0.18,0.915,0.5,0.862\n", ("max", 0): "2,0.1,0.29,0,0.90,0.5,0.85\n"}
    for (key, seed), last in runs.items():
        d = tmp_path / "runs" / key / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.csv").write_text(head + "1,0.1,9,9,0.1,9,0.1\n" + last)
        _write(d / "summary.json", {"status": "completed"})
    still = tmp_path / "runs" / "lift-nocons" / "seed1"  # still training: left out
    still.mkdir(parents=True)
    (still / "metrics.csv").write_text(head + "1,0.1,0.1,0.1,0.99,0.1,0.99\n")
    _write(still / "summary.json", {"status": "running"})
    fit = dg.load_fit(tmp_path, ["max", "lift", "lift-nocons", "avg"], 3)
    assert {k: len(v) for k, v in fit.items()} == {"max": 1, "lift": 2, "lift-nocons": 1}
    assert fit["lift"][0] == pytest.approx({"train_error": 10.0, "test_error": 15.0, "task_loss": 0.30,
                                            "lift_loss": 0.025})  # fmt: skip
    # lift: task loss 0.28, constraint 0.024 (7.9 % of 0.304), train error 9.0, test error 14.5
    assert dg.fit_findings(fit) == [
        "Fit at the last epoch, with − without the constraint losses (`lift` − `lift-nocons`, means over 2 and 1 "
        "seeds): training task loss 0.28 vs 0.25 (+12 %), training error +0.50 points, test error +0.70 points; "
        "the weighted constraint loss is 7.9 % of `lift`'s objective at the end."
    ]
    md = dg.diagnosis_markdown({}, fit)
    assert "| lift | 2 | 9.00 | 14.50 | 5.50 | 0.28 | 0.024 |" in md
    assert "| max | 1 | 10.00 | 15.00 | 5.00 | 0.29 | – |" in md
    assert dg.fit_findings({"lift": fit["lift"]}) == []  # nothing to compare with
    # the middle of training (epochs n/6 .. 5n/6; here 1-5 of 6): test error above training error, and its jumps
    d = tmp_path / "mid" / "runs" / "max" / "seed0"
    d.mkdir(parents=True)
    rows = [f"{e},0.1,0.5,0,0.8,0.5,{0.7 if e % 2 else 0.6}\n" for e in range(1, 6)] + ["6,0.1,0.5,0,0.95,0.5,0.1\n"]
    (d / "metrics.csv").write_text(head + "".join(rows))
    _write(d / "summary.json", {"status": "completed"})
    mid = dg.load_fit(tmp_path / "mid", ["max"], 1)
    assert mid["max"][0]["mid_test_error"] == pytest.approx(34.0) and mid["max"][0]["mid_jump"] == pytest.approx(10.0)
    assert dg.fit_findings(mid) == [
        "Middle of training (epochs n/6 to 5n/6), test error − training error (points; the test error's mean change "
        "from one epoch to the next): `max` +14.0 (10.0)."
    ]


def test_epochs_done_reads_a_resumable_runs_finished_epochs(tmp_path):
    run = tmp_path / "run"
    assert xl.epochs_done(run, 30) == 0.0  # nothing yet
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,lr\n1,0.1\n2,0.1\n3,0.1\n")
    assert xl.epochs_done(run, 30) == 0.0  # no checkpoint to resume from: it starts again
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    assert xl.epochs_done(run, 30) == pytest.approx(0.1) and xl.epochs_done(run, 2) == 1.0
    plan = xl.build_xl_plan(budget=XL, settings=["max"], seeds=1, out=tmp_path / "o", cifar_dir="/c")
    train = next(j for j in plan if j.kind == "train")
    assert train.progress is not None and train.progress() == 0.0
