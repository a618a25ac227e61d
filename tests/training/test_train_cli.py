"""``liftpool train`` end to end on tiny generated data: outputs, metrics against an
independent recomputation, exact resume, constraints, AMP, and every bad-input path."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liftpool import LiftDownPool2d
from liftpool.cli import main
from liftpool.data import build_datasets, make_camvid, make_imagefolder
from liftpool.training import load_checkpoint, load_model
from liftpool.training import trainer as trainer_mod

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the plug-in model module train_tiny_models
TINY = "train_tiny_models:tiny_cnn"
TIMING = {"epoch_time_s", "train_samples_per_s"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_imagefolder(tmp_path_factory.mktemp("imgs"), classes=3, per_class=8, val_per_class=4, size=16)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    return make_camvid(tmp_path_factory.mktemp("camvid"), sizes={"train": 4, "val": 3})


def _cls_args(folder, out, *extra):
    return ["train", "--dataset", "imagefolder", "--data-dir", str(folder), "--out", str(out), "--num-workers", "0",
            "--batch-size", "8", "--lr", "0.05", "--no-plot", *extra]  # fmt: skip


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _strip(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def test_classification_run_writes_everything_and_val_acc_is_right(folder, tmp_path):
    out = tmp_path / "run"
    rc = main(
        _cls_args(
            folder, out, "--model", "vgg13_cifar", "--width", "0.0625", "--pool", "lift", "--epochs", "2", "--plot"
        )
    )
    assert rc == 0
    for name in (
        "config.json",
        "train.log",
        "metrics.csv",
        "curves.png",
        "summary.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
    ):
        assert (out / name).is_file(), name
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"lr", "train_loss", "train_lift_loss", "train_acc", "val_loss", "val_acc", "val_top5"} <= set(rows[0])
    assert float(rows[0]["train_lift_loss"]) > 0  # 5 LiftDownPool layers add their constraints
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["completed_epochs"] == 2 and summary["lift_layers"] == 5
    assert "epoch 2/2" in (out / "train.log").read_text()
    assert not list(out.rglob("*.tmp")), "no temporary files left behind"

    # best.pt rebuilt through load_model, accuracy recomputed by hand on the val images
    model, config = load_model(out / "checkpoints" / "best.pt")
    assert (
        not model.training
        and config["model"]["name"] == "vgg13_cifar"
        # lift: the band mean by default (training/config.py POOL_DEFAULTS)
        and config["model"]["kwargs"] == {"width": 0.0625, "pool_kwargs": {"scale": "mean"}}
    )
    assert config["data"]["class_names"] == ["class0", "class1", "class2"] and config["task"] == "classification"
    val = build_datasets("imagefolder", folder).val
    with torch.no_grad():
        pred = torch.cat([model(torch.stack([val[i][0] for i in range(len(val))])).argmax(1)])
    acc = (pred == torch.tensor([val[i][1] for i in range(len(val))])).double().mean().item()
    best = summary["best"]
    assert best["metric"] == "val_acc" and acc == pytest.approx(best["value"], abs=1e-12)
    assert float(rows[best["epoch"] - 1]["val_acc"]) == pytest.approx(acc, abs=1e-6)


def test_segmentation_run_miou_matches_numpy_confusion(camvid, tmp_path):
    out = tmp_path / "seg"
    rc = main(
        [
            "train",
            "--model",
            "segnet",
            "--width",
            "0.03125",
            "--pool",
            "lift",
            "--dataset",
            "camvid",
            "--data-dir",
            str(camvid),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--crop-size",
            "16",
            "24",
            "--scale-range",
            "0.75",
            "1.25",
            "--class-weighting",
            "median_freq",
            "--num-workers",
            "0",
            "--lr",
            "0.01",
            "--no-plot",
        ]
    )
    assert rc == 0
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    row = ckpt["history"][-1]
    assert {"train_miou", "val_miou", "val_pixel_acc", "val_mean_acc"} <= set(row)
    assert len(ckpt["config"]["data"]["class_weights"]) == 11
    model, config = load_model(out / "checkpoints" / "last.pt")
    val = build_datasets("camvid", camvid).val
    cm = np.zeros((11, 11), np.int64)
    with torch.no_grad():
        for i in range(len(val)):
            x, y = val[i]
            assert x.shape[-2:] == (24, 32)  # validation on the full image
            p = model(x[None]).argmax(1)[0].numpy().ravel()
            t = y.numpy().ravel()
            keep = t != config["data"]["ignore_index"]
            np.add.at(cm, (t[keep], p[keep]), 1)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    miou = (tp[union > 0] / union[union > 0]).mean()
    assert row["val_miou"] == pytest.approx(miou, abs=1e-9)
    assert row["val_pixel_acc"] == pytest.approx(tp.sum() / cm.sum(), abs=1e-9)


def test_resume_after_interruption_equals_uninterrupted_run_bit_exactly(folder, tmp_path, monkeypatch):
    # dropout (global RNG), BN, LiftDownPool, a lr milestone and augmentation all in play
    args = [
        "--model",
        TINY,
        "--pool",
        "lift",
        "--model-kwargs",
        '{"dropout": 0.5}',
        "--epochs",
        "3",
        "--batch-size",
        "6",
        "--schedule",
        "multistep",
        "--milestones",
        "2",
        "--gamma",
        "0.5",
    ]
    assert main(_cls_args(folder, tmp_path / "full", *args)) == 0

    real_save = trainer_mod.save_checkpoint

    def save_then_crash(path, **kw):
        real_save(path, **kw)
        if kw["epoch"] == 1:
            raise KeyboardInterrupt  # "killed" right after the first checkpoint

    monkeypatch.setattr(trainer_mod, "save_checkpoint", save_then_crash)
    assert main(_cls_args(folder, tmp_path / "cut", *args)) == 130
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 1
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--no-plot"]) == 0

    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["global_step"] == b["global_step"]
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    for sa, sb in zip(a["optimizer_state"]["state"].values(), b["optimizer_state"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert _strip(a["history"]) == _strip(b["history"])
    assert torch.equal(a["rng_states"][0]["torch"], b["rng_states"][0]["torch"])
    assert [r["epoch"] for r in _rows(tmp_path / "cut" / "metrics.csv")] == ["1", "2", "3"]
    assert "resumed from" in (tmp_path / "cut" / "train.log").read_text()

    # the resume guards: identity settings may not change, the length may
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--pool", "max"]) == 2
    assert main(["train", "--resume", "--out", str(tmp_path / "cut"), "--epochs", "4", "--no-plot"]) == 0
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["epoch"] == 4


def test_no_constraints_is_the_same_as_zero_lambdas(folder, tmp_path):
    base = [
        "--model",
        TINY,
        "--pool",
        "lift",
        "--epochs",
        "1",
        "--limit-train-batches",
        "2",
        "--limit-val-batches",
        "1",
    ]
    runs = {
        "on": [],
        "off": ["--no-constraints"],
        "zero": ["--lambda-u", "0", "--lambda-p", "0"],
    }
    states = {}
    for name, extra in runs.items():
        assert main(_cls_args(folder, tmp_path / name, *base, *extra)) == 0
        ck = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
        states[name] = ck["model_state"]
        if name == "off":
            assert ck["history"][0]["train_lift_loss"] > 0  # still logged, just not optimised
    lift_keys = [k for k in states["on"] if "transforms" in k]
    assert lift_keys
    assert all(torch.equal(states["off"][k], states["zero"][k]) for k in states["on"])
    assert not all(torch.equal(states["on"][k], states["off"][k]) for k in lift_keys)


def test_amp_bf16_channels_last_deterministic_smoke(folder, tmp_path):
    was = torch.are_deterministic_algorithms_enabled()
    rc = main(
        _cls_args(
            folder,
            tmp_path / "amp",
            "--model",
            TINY,
            "--pool",
            "lift",
            "--epochs",
            "1",
            "--amp",
            "--channels-last",
            "--deterministic",
            "--limit-train-batches",
            "2",
            "--tensorboard",
        )
    )
    assert rc == 0
    assert torch.are_deterministic_algorithms_enabled() == was, "--deterministic must not leak out of the run"
    row = load_checkpoint(tmp_path / "amp" / "checkpoints" / "last.pt")["history"][0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])


def test_compile_trains_like_eager_and_saves_the_bare_model(folder, tmp_path):
    """--compile: the same losses and weights as the eager run (to float tolerance), a checkpoint of
    the bare model (no torch.compile prefix) that load_model rebuilds, and resuming without it."""
    runs = {}
    for name, extra in (("eager", ()), ("compiled", ("--compile",))):
        args = _cls_args(folder, tmp_path / name, "--model", TINY, "--pool", "lift", "--epochs", "1",
                         "--limit-train-batches", "3", *extra)  # fmt: skip
        assert main(args) == 0
        runs[name] = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
    a, b = runs["eager"], runs["compiled"]
    assert b["config"]["train"]["compile"] is True and a["config"]["train"]["compile"] is False
    assert list(a["model_state"]) == list(b["model_state"])  # no "_orig_mod." keys
    for k, v in a["model_state"].items():
        assert torch.allclose(v.float(), b["model_state"][k].float(), rtol=1e-3, atol=1e-5), k
    for key in ("train_loss", "train_lift_loss", "val_loss"):
        assert b["history"][0][key] == pytest.approx(a["history"][0][key], rel=1e-4, abs=1e-6), key
    model, _ = load_model(tmp_path / "compiled" / "checkpoints" / "last.pt")
    assert sum(isinstance(m, LiftDownPool2d) for m in model.modules()) == 2
    # a resumed run may switch compile off (or on): it changes speed, not the maths
    more = _cls_args(folder, tmp_path / "compiled", "--model", TINY, "--pool", "lift", "--epochs", "2",
                     "--limit-train-batches", "3", "--resume", "--no-compile")  # fmt: skip
    assert main(more) == 0
    resumed = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "last.pt")
    assert resumed["epoch"] == 2 and resumed["config"]["train"]["compile"] is False


# --------------------------------------------------------------------------- bad input
def _fail(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    return err


def test_bad_inputs_fail_before_training_with_clear_messages(folder, camvid, tmp_path, capsys):
    out = tmp_path / "o"
    tiny = ["--model", TINY, "--epochs", "1"]
    cases = [
        (_cls_args(folder, out, *tiny, "--compile", "--diagnostics"), "compile must be off with --diagnostics"),
        (_cls_args(tmp_path / "nowhere", out, *tiny), "does not exist"),
        (_cls_args(folder, out, *tiny, "--train-split", "empty_split"), "not found"),
        (_cls_args(folder, out, "--model", "no_such_model"), "unknown model 'no_such_model'"),
        (_cls_args(folder, out, "--model", "vgg13_cifar", "--pool", "nopool"), "unknown pool 'nopool'"),
        (_cls_args(folder, out, "--model", "segnet"), "segmentation model but dataset 'imagefolder'"),
        (_cls_args(folder, out, "--model", "nomodule_xyz:f"), "cannot import module"),
        (_cls_args(folder, out, *tiny, "--batch-size", "1000"), "fewer than one batch"),
        (_cls_args(folder, out, *tiny, "--num-classes", "2"), "num_classes=2"),
        (_cls_args(folder, out, *tiny, "--lr", "-1"), "lr must be"),
        (_cls_args(folder, out, *tiny, "--model-kwargs", '{"nonsense": 1}'), "nonsense"),
        (["train", "--dataset", "imagefolder", "--data-dir", str(folder), "--out", str(out)], "model must be"),
    ]
    for argv, msg in cases:
        assert msg in _fail(capsys, argv), argv
        assert not out.exists(), f"{argv} created the output folder"

    (tmp_path / "emptydir").mkdir()
    assert "is empty" in _fail(capsys, _cls_args(tmp_path / "emptydir", out, *tiny))

    bad = tmp_path / "badcam"
    make_camvid(bad, sizes={"train": 2, "val": 2})
    from PIL import Image

    lbl = np.array(Image.open(bad / "trainannot" / "img000.png"))
    lbl[0, 0] = 40
    Image.fromarray(lbl).save(bad / "trainannot" / "img000.png")
    err = _fail(
        capsys,
        [
            "train",
            "--model",
            "segnet",
            "--width",
            "0.03125",
            "--dataset",
            "camvid",
            "--data-dir",
            str(bad),
            "--out",
            str(out),
        ],
    )
    assert "img000.png" in err and "[40]" in err and not out.exists()

    cfg = tmp_path / "c.json"
    cfg.write_text('{"preset": "no-such-preset"}')
    assert "unknown preset" in _fail(capsys, ["train", "--config", str(cfg)])
    cfg.write_text('{"learning_rate": 0.1}')
    assert "unknown setting 'learning_rate'" in _fail(capsys, ["train", "--config", str(cfg)])
    with pytest.raises(SystemExit):
        main(["train", "--preset", "no-such-preset"])


def test_existing_outputs_are_never_clobbered(folder, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = _cls_args(folder, out, "--model", TINY, "--epochs", "1", "--limit-train-batches", "1")
    assert "not empty" in _fail(capsys, args)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

    # a corrupt checkpoint is refused before anything is touched
    ck = tmp_path / "r" / "checkpoints"
    ck.mkdir(parents=True)
    (ck / "last.pt").write_bytes(b"\x00garbage")
    (tmp_path / "r" / "metrics.csv").write_text("old")
    err = _fail(capsys, ["train", "--resume", "--out", str(tmp_path / "r")])
    assert "corrupt" in err and (tmp_path / "r" / "metrics.csv").read_text() == "old"
    assert "does not exist" in _fail(
        capsys, ["train", "--resume", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r")]
    )

    assert main([*args, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "summary.json").is_file()


def test_print_config_precedence(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('preset = "vgg13-cifar100"\nlr = 0.2\nepochs = 7\ndata-dir = "/d"\nout = "/o"\n')
    assert main(["train", "--config", str(cfg), "--epochs", "3", "--print-config"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert (got["epochs"], got["lr"], got["batch_size"], got["milestones"], got["model"]) == (
        3,
        0.2,
        100,
        [80, 120],
        "vgg13_cifar",
    )
    assert main(["train", "--list-presets"]) == 0
    assert "segnet-camvid" in json.loads(capsys.readouterr().out)


def test_distributed_only_checks(folder, tmp_path):
    from liftpool.training.config import resolve_config
    from liftpool.training.distributed import DistInfo

    two_cpu = DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), initialized_here=False)
    cfg = resolve_config(
        {"model": TINY, "dataset": "imagefolder", "data_dir": str(folder), "out": str(tmp_path / "o"), "batch_size": 7}
    )
    with pytest.raises(ValueError, match="divisible by the number of processes 2"):
        trainer_mod.preflight(cfg, two_cpu)
    cfg.batch_size, cfg.sync_bn = 8, True
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):
        trainer_mod.preflight(cfg, two_cpu)
    assert not (tmp_path / "o").exists()
