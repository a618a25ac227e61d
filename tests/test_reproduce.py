"""`liftpool reproduce`: subset builder, planner (dedup, order, resumability), aggregation, report.

The end-to-end test trains three tiny VGG13-CIFAR models (one batch each) on a generated
2-class ImageFolder through the real `liftpool train` / `liftpool eval` subprocesses."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liftpool.models import create_model
from liftpool.studies import reproduce as rp


def _imagefolder(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, base in (("cat", 40), ("dog", 200)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                px = np.clip(base + rng.integers(-30, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(d / f"{i:03d}.png")
    return root


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    rp.add_arguments(p)
    argv = []
    for k, v in kw.items():
        if isinstance(v, list):
            for x in v:
                argv += [f"--{k.replace('_', '-')}", str(x)]
        elif v is True:
            argv.append(f"--{k.replace('_', '-')}")
        else:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data
def test_class_subset_is_balanced_seeded_and_checked(tmp_path):
    src = _imagefolder(tmp_path / "src", n_train=6, n_test=3)
    a = rp.make_class_subset(src, tmp_path / "a", {"train": 4, "test": None})
    b = rp.make_class_subset(src, tmp_path / "b", {"train": 4, "test": None})
    for c in ("cat", "dog"):
        fa = sorted(p.name for p in (a / "train" / c).iterdir())
        assert len(fa) == 4 and fa == sorted(p.name for p in (b / "train" / c).iterdir())
        assert len(list((a / "test" / c).iterdir())) == 3  # None = all
        # the links point at the real images
        assert all((a / "train" / c / f).resolve().parent == (src / "train" / c).resolve() for f in fa)
    with pytest.raises(ValueError, match="fewer than the 7 per class"):
        rp.make_class_subset(src, tmp_path / "c", {"train": 7})
    with pytest.raises(ValueError, match="no val/ split"):
        rp.make_class_subset(src, tmp_path / "d", {"val": 1})


# --------------------------------------------------------------------------- plan
def _plan(tables, seeds=2):
    return rp.build_plan(tables, budget=rp.BUDGETS["tiny"], seeds=seeds, out="/o", cifar_dir="/c", camvid_dir="/v")


def test_plan_trains_shared_settings_once_and_is_seed_major():
    plan = _plan(["table1", "table2", "table3"], seeds=2)
    trains = [j.name for j in plan if j.kind == "train"]
    assert len(trains) == len(set(trains))
    # lift all-bands K=5 with constraints is a row of Tables 1, 2 and 3: trained once per seed
    assert trains.count("train lift-all-k5 seed0") == 1 and trains.count("train lift-all-k5 seed1") == 1
    n_settings = 7 + 2 + len(rp.CORE_METHODS + rp.ZOO_METHODS) - 1  # t1: 7, t2: +K3, K7, t3: all but lift
    assert len(trains) == 2 * n_settings
    # seed-major inside a table: every table1 seed-0 run comes before the seed-1 ones, then its eval
    names = [j.name for j in plan]
    assert names.index("eval table1-seed0") < names.index("train lift-LL-k5 seed1")
    assert max(names.index(f"train {s.key} seed0") for _, s in rp.table_rows("table1")) < names.index(
        "eval table1-seed0"
    )
    # each eval lists exactly its table's checkpoints (shared run included)
    ev = next(j for j in plan if j.name == "eval table2-seed1")
    assert [a for a in ev.argv if a.endswith(".pt")] == [
        f"/o/runs/lift-all-k{k}/seed1/checkpoints/last.pt" for k in (3, 5, 7)
    ]


def test_plan_all_runs_core_then_robustness_first_and_zoo_last():
    plan = _plan(["all"], seeds=1)
    names = [j.name for j in plan]
    core = [names.index(f"train {rp.method_setting(m).key} seed0") for m in rp.CORE_METHODS]
    assert max(core) < names.index("eval table5-seed0") < names.index("train lift-LL-k5 seed0")
    assert names.index("eval table6-seed0") < min(names.index(f"train {m} seed0") for m in rp.ZOO_METHODS)
    ev = next(j for j in plan if j.name == "eval table5-seed0")
    i = ev.argv.index("--metrics")
    assert ev.argv[i + 1] == "accuracy,shift,corruption" and ev.argv[ev.argv.index("--ce-baseline") + 1] == "max"
    # the zoo evaluation holds only the zoo (core methods are evaluated with Table 5)
    zoo = next(j for j in plan if j.name == "eval table3-zoo-seed0")
    assert zoo.argv[zoo.argv.index("--labels") + 1] == ",".join(rp.ZOO_METHODS)
    # the later pooling peers are Table 3 rows; APS and LPS with their up-sampling partners are Table 6 rows
    assert {"softpool", "lip", "aps", "lps"} <= set(rp.ZOO_METHODS)
    seg = next(j for j in plan if j.name == "eval table6-seed0")
    assert seg.argv[seg.argv.index("--labels") + 1].split(",")[-2:] == ["segnet-aps", "segnet-lps"]
    for m in ("aps", "lps"):
        argv = next(j for j in plan if j.name == f"train segnet-{m} seed0").argv
        assert argv[argv.index("--pool") + 1] == m


def test_lift_settings_reach_the_model_through_the_train_cli():
    plan = _plan(["table1"], seeds=1)
    argv = next(j for j in plan if j.name == "train lift-HL-k5 seed0").argv
    kw = json.loads(argv[argv.index("--model-kwargs") + 1])
    assert kw == {"pool_kwargs": {"bands": ["HL"], "kernel_size": 5}}
    nocons = next(j for j in plan if j.name == "train lift-all-k5-nocons seed0").argv
    assert "--no-constraints" in nocons and "--constraints" not in nocons
    # the model really gets the option
    from liftpool.layers import LiftDownPool2d
    m = create_model("vgg13_cifar", pool="lift", num_classes=2, width=0.0625, **kw)
    pools = [x for x in m.modules() if isinstance(x, LiftDownPool2d)]
    assert pools and all(tuple(p.bands) == ("HL",) for p in pools)
    mean = next(j for j in plan if j.name == "train lift-all-k5-scale0.25 seed0").argv
    kw = json.loads(mean[mean.index("--model-kwargs") + 1])
    m = create_model("vgg13_cifar", pool="lift", num_classes=2, width=0.0625, **kw)
    pools = [x for x in m.modules() if isinstance(x, LiftDownPool2d)]
    assert pools and all(p.scale == 0.25 and len(p.bands) == 4 for p in pools)


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="table must be one of"):
        _plan(["table9"])
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        _plan(["table1"], seeds=0)
    with pytest.raises(ValueError, match="CIFAR-10"):
        rp.build_plan(["table1"], budget=rp.BUDGETS["tiny"], seeds=1, out="/o", cifar_dir=None, camvid_dir=None)
    with pytest.raises(ValueError, match="stop-at"):
        rp.run(_args(table=["table1"], out="/tmp/x", stop_at="25:99"))


# --------------------------------------------------------------------------- aggregation
def test_mean_std_matches_statistics():
    v = [0.31, 0.27, 0.35]
    m, sd, n = rp.mean_std(v)
    assert n == 3 and m == pytest.approx(statistics.mean(v)) and sd == pytest.approx(statistics.stdev(v))
    assert rp.mean_std([0.5]) == (0.5, 0.0, 1)
    assert rp.mean_std([0.5, float("nan"), None]) == (0.5, 0.0, 1)
    assert math.isnan(rp.mean_std([])[0])


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_aggregate_and_report_from_result_files(tmp_path):
    """Fake `liftpool eval` / `liftpool train` outputs for 2 seeds -> hand-computed table entries."""
    errs = {"max": [0.40, 0.44], "lift-all-k5": [0.30, 0.36]}
    ce = {
        "max": [{"fog": 0.5, "snow": 0.6}, {"fog": 0.7, "snow": 0.8}],
        "lift-all-k5": [{"fog": 0.4, "snow": 0.3}, {"fog": 0.35, "snow": 0.4}],
    }
    for seed in range(2):
        rows = []
        for lab in errs:
            rel = {k: ce[lab][seed][k] / ce["max"][seed][k] for k in ("fog", "snow")}
            rows.append(
                {
                    "label": lab,
                    "accuracy": {"top1_error": errs[lab][seed]},
                    "shift": {"consistency": 0.8 + 0.05 * seed, "shifted_accuracy": 1 - errs[lab][seed]},
                    "corruption": {
                        "ce": ce[lab][seed],
                        "mce": sum(ce[lab][seed].values()) / 2,
                        "clean_error": errs[lab][seed],
                        "vs_baseline": {"ce_normalized": rel, "mce_normalized": sum(rel.values()) / 2},
                    },
                }
            )
            _write(
                tmp_path / "runs" / lab / f"seed{seed}" / "summary.json",
                {"status": "completed", "parameters": 123, "wall_time_s": 10.0 + seed},
            )
        _write(tmp_path / "eval" / f"table5-seed{seed}" / "results.json", {"results": rows})
        seg = {
            "label": "segnet-lift",
            "segmentation": {
                "miou": 0.5 + 0.1 * seed,
                "pixel_accuracy": 0.9,
                "iou": [0.4, 0.6 + 0.2 * seed],
                "class_names": ["Sky", "Road"],
            },
        }
        _write(tmp_path / "eval" / f"table6-seed{seed}" / "results.json", {"results": [seg]})
    agg = rp.aggregate(tmp_path, seeds=2)  # no budget: parameters only from summary.json
    t3 = {r["setting"]: r for r in agg["table3"]}
    m, sd, n = t3["lift-all-k5"]["top1_error"]
    assert n == 2 and m == pytest.approx(0.33) and sd == pytest.approx(statistics.stdev([0.30, 0.36]))
    assert t3["lift-all-k5"]["parameters"] == 123 and t3["avg"]["top1_error"][2] == 0
    t5 = {r["setting"]: r for r in agg["table5"]}
    assert t5["max"]["mce_rel_max"][:2] == pytest.approx((1.0, 0.0))
    fog = [0.4 / 0.5, 0.35 / 0.7]
    assert t5["lift-all-k5"]["ce_rel_max"]["fog"][:2] == pytest.approx((statistics.mean(fog), statistics.stdev(fog)))
    f4 = {r["setting"]: r for r in agg["fig4"]}
    assert f4["max"]["consistency"][:2] == pytest.approx((0.825, statistics.stdev([0.8, 0.85])))
    t6 = {r["setting"]: r for r in agg["table6"]}
    assert t6["segnet-lift"]["iou"][1][:2] == pytest.approx((0.7, statistics.stdev([0.6, 0.8])))
    assert t6["segnet-max"]["miou"][2] == 0
    files = rp.write_report(tmp_path, ["table3", "table5", "fig4", "table6"], seeds=2, budget=rp.BUDGETS["tiny"])
    md = (tmp_path / "report" / "results_table3.md").read_text()
    assert "| LiftDownPool | `lift-all-k5` | 123 | 33.00 ± 4.24 | 2 | 10 |" in md
    assert "| MaxPool | `max` | 123 | 42.00 ± 2.83 | 2 |" in md
    # a setting without runs: no numbers, its parameter count from building the network
    n_avg = sum(p.numel() for p in create_model("vgg13_cifar", pool="avg", num_classes=10, width=0.0625).parameters())
    assert f"| AvgPool | `avg` | {n_avg:,} | – | 0 | – |" in md
    t5md = (tmp_path / "report" / "results_table5.md").read_text()
    assert "| MaxPool | 100.0 ± 0.0 |" in t5md
    assert {p.name for p in files} >= {
        "results_table3.png",
        "results_fig4.png",
        "results_table5.png",
        "results_table6.png",
    }


def test_an_evaluation_waits_for_its_training_runs_to_complete(tmp_path):
    """The checkpoint exists from the first epoch on: an evaluation must wait for the run's summary to
    say completed, else it would score a half-trained model (and a failed run's last epoch)."""
    plan = rp.build_plan(["table2"], budget=rp.BUDGETS["tiny"], seeds=1, out=tmp_path, cifar_dir=tmp_path / "c",
                         camvid_dir=None)  # fmt: skip
    jobs = {j.name: j for j in rp.runner_jobs(plan)}
    ev = next(j for j in jobs.values() if j.kind == "eval")
    trains = [j for j in jobs.values() if j.kind == "train"]
    assert trains and all(j.resumable for j in trains) and not ev.resumable
    assert "has not completed" in ev.blocked()
    for j in trains:
        (Path(j.out) / "checkpoints").mkdir(parents=True)
        (Path(j.out) / "checkpoints" / "last.pt").write_bytes(b"x")
    assert "has not completed" in ev.blocked()  # checkpoints alone are not enough
    for j in trains:
        epochs = int(j.argv()[list(j.argv()).index("--epochs") + 1])
        (Path(j.out) / "summary.json").write_text(json.dumps({"status": "completed", "completed_epochs": epochs}))
    assert ev.blocked() is None


# --------------------------------------------------------------------------- end to end
def test_reproduce_table2_end_to_end_and_resumes(tmp_path, monkeypatch):
    _imagefolder(tmp_path / "data" / "cifar10-jpeg")
    out = tmp_path / "out"
    args = _args(table=["table2"], data_root=tmp_path / "data", out=out, budget="tiny", seeds=1)
    assert rp.run(args) == 0
    for k in (3, 5, 7):
        run_dir = out / "runs" / f"lift-all-k{k}" / "seed0"
        s = json.loads((run_dir / "summary.json").read_text())
        assert s["status"] == "completed" and s["data"]["root"] == str(out / "data" / "cifar10-4pc-2pc")
        assert "8 train / 4 val (test)" in (run_dir / "train.log").read_text()  # 4 + 2 per class of the 2 classes
    res = json.loads((out / "eval" / "table2-seed0" / "results.json").read_text())["results"]
    assert [r["label"] for r in res] == ["lift-all-k3", "lift-all-k5", "lift-all-k7"]
    assert all(r["images"] == 4 for r in res)
    md = (out / "report" / "results_table2.md").read_text()
    for r in res:  # the table shows exactly what `liftpool eval` measured (one seed: std 0)
        assert f"{100 * r['accuracy']['top1_error']:.2f} ± 0.00 (1 seed)" in md
    assert "liftpool train --model vgg13_cifar" in (out / "reproduce.log").read_text()

    # a second run finds everything done and starts no subprocess
    def boom(*a, **k):
        raise AssertionError("a finished job was started again")

    from liftpool.studies import jobs

    monkeypatch.setattr(jobs.subprocess, "Popen", boom)
    assert rp.run(args) == 0
