"""Edge cases and error messages, one test (or more) each.

* ``lifting_loss`` after an empty batch (N = 0) is 0, not NaN;
* a LiftUpPool refuses details recorded by a different LiftDownPool of the same shape;
* unknown keywords of ``create_model`` / pool kwargs name the bad keyword and the accepted ones;
* ``liftpool eval``: a missing ``--data-dir`` "does not exist"; a corrupt image is named (train too);
* ``liftpool eval`` on a small custom set: no AlexNet normalisation, no "mCE" for < 15 corruptions;
* training logs written to a file have an ETA; ``summary.json`` wall time after a resume counts the whole run.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liftpool import (
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
    lifting_loss,
)
from liftpool.cli import main
from liftpool.evaluation.corruptions import CORRUPTIONS
from liftpool.evaluation.pipeline import corruption_scope
from liftpool.layers import Details2d
from liftpool.models import available_models, create_model
from liftpool.pooling import make_pool, make_updown
from liftpool.training import trainer as trainer_mod
from liftpool.training.checkpoint import load_checkpoint, save_checkpoint

TRAINING_TESTS = Path(__file__).resolve().parent / "training"
if str(TRAINING_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAINING_TESTS))  # the plug-in model module train_tiny_models
TINY = "train_tiny_models:tiny_cnn"

DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}


# --------------------------------------------------------------------------- lifting_loss, N = 0
@pytest.mark.parametrize("dims,size", [(1, (7,)), (2, (5, 6)), (2, (4, 4)), (3, (3, 4, 5))])
@pytest.mark.parametrize("kind", ["learned", "cdf53"])
def test_lifting_loss_of_an_empty_batch_is_zero(dims: int, size: tuple[int, ...], kind: str) -> None:
    layer = DOWN[dims](3) if kind == "learned" else DOWN[dims].from_wavelet("cdf53", 3)
    layer.train()
    # a non-empty batch first: its loss is a real positive mean
    x = torch.randn(2, 3, *size)
    layer(x)
    assert float(lifting_loss(layer).detach()) > 0
    # then an empty one (e.g. the last shard of a DistributedSampler, a filtered batch)
    x0 = torch.randn(0, 3, *size, requires_grad=True)
    y0 = layer(x0)
    loss = lifting_loss(layer)
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) == 0.0
    (y0.sum() + loss).backward()  # and it is still differentiable
    if kind == "learned":
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in layer.parameters())


def test_lifting_loss_empty_batch_fix_keeps_the_mean() -> None:
    """The N = 0 guard must not change the value on real batches: c_p is the mean of d^2."""
    layer = LiftDownPool1d.from_wavelet("haar", 1).train()
    x = torch.tensor([[[1.0, 3.0, 2.0, 6.0]]])  # Haar: d = x_odd - x_even = (2, 4); c_p = mean(d^2) = 10 (unscaled)
    layer(x)
    d = layer.decompose(x).H
    torch.testing.assert_close(layer.constraints.c_p, d.pow(2).mean())


# --------------------------------------------------------------------------- details identity
@pytest.mark.parametrize("dims,size", [(1, (6,)), (2, (6, 5)), (3, (4, 4, 3))])
def test_up_pool_refuses_details_of_another_down_layer(dims: int, size: tuple[int, ...]) -> None:
    a = DOWN[dims](4, return_details=True)
    b = DOWN[dims](4, return_details=True)
    up_a = UP[dims](a)
    x = torch.randn(2, 4, *size)
    ya, da = a(x)
    _, db = b(x)
    torch.testing.assert_close(up_a(a.decompose(x)[0], da), x, atol=1e-5, rtol=1e-5)  # its own: fine
    with pytest.raises(ValueError, match=f"different {type(a).__name__}"):
        up_a(ya, db)  # same shapes, another layer's details


def test_details_check_in_segnet_pairs_and_rebuilt_details() -> None:
    down1, up1 = make_updown("lift", 4)
    down2, _ = make_updown("lift", 4)
    x = torch.randn(1, 4, 8, 8)
    y1, d1 = down1(x)
    _, d2 = down2(x)
    assert up1(y1, d1).shape == x.shape
    with pytest.raises(ValueError, match="different LiftDownPool2d"):
        up1(y1, d2)
    # documented limit: details rebuilt from tensors carry no tag and are accepted
    rebuilt = Details2d(*(t.clone() for t in d2[:3]), size=d2.size)
    assert up1(y1, rebuilt).shape == x.shape


# --------------------------------------------------------------------------- unknown keywords
@pytest.mark.parametrize("name", available_models())
def test_create_model_unknown_keyword_names_it_and_the_accepted_ones(name: str) -> None:
    with pytest.raises(TypeError, match=r"unknown keyword argument 'widht'; accepted: .*\bwidth\b.*pool_kwargs"):
        create_model(name, num_classes=3, widht=0.5)


def test_pool_kwargs_unknown_keyword_names_it() -> None:
    with pytest.raises(
        TypeError,
        match=r"pool 'lift' \(LiftDownPool2d\): unknown keyword argument 'kernal_size'; accepted: kernel_size",
    ):
        create_model("vgg13_cifar", num_classes=3, pool="lift", width=0.0625, pool_kwargs={"kernal_size": 3})
    with pytest.raises(TypeError, match=r"up/down pool 'lift'.*'sclae'.*scale"):
        create_model("segnet", num_classes=3, pool="lift", width=0.0625, pool_kwargs={"sclae": 0.5})
    with pytest.raises(TypeError, match=r"pool 'max' \(MaxDownPool2d\): unknown keyword argument 'bands'"):
        make_pool("max", 4, bands="LL")
    # liftpool.convert(pool_kwargs=...) goes through the same check
    from liftpool import convert

    with pytest.raises(TypeError, match=r"unknown keyword argument 'kernal'; accepted: kernel_size"):
        convert(
            torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2)), pool="lift", pool_kwargs={"kernal": 3}
        )
    # accepted keywords still work
    net = create_model(
        "vgg13_cifar", num_classes=3, pool="lift", width=0.0625, pool_kwargs={"kernel_size": 3, "scale": "mean"}
    )
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_train_cli_reports_a_bad_model_keyword(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _imagefolder(tmp_path / "d", splits=("train", "val"))
    rc = main(["train", "--model", "vgg13_cifar", "--width", "0.0625", "--model-kwargs", '{"batchnorm": false}',
               "--dataset", "imagefolder", "--data-dir", str(data), "--out", str(tmp_path / "o"), "--batch-size", "4",
               "--num-workers", "0", "--no-progress", "--no-plot"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "'batchnorm'" in err and "batch_norm" in err and "Traceback" not in err


# --------------------------------------------------------------------------- liftpool eval inputs
def _imagefolder(
    root: Path, splits: tuple[str, ...] = ("test",), classes: int = 3, per_class: int = 4, size: int = 32
) -> Path:
    g = np.random.default_rng(0)
    for split in splits:
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                arr = (g.random((size, size, 3)) * 80 + 60 * c).clip(0, 255).astype(np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _ckpt(path: Path, num_classes: int = 3) -> Path:
    torch.manual_seed(0)
    model = create_model("vgg13_cifar", pool="max", num_classes=num_classes, width=0.0625)
    cfg = {
        "model": {"name": "vgg13_cifar", "pool": "max", "num_classes": num_classes, "kwargs": {"width": 0.0625}},
        "task": "classification",
        "data": {"dataset": "imagefolder", "num_classes": num_classes, "mean": [0.5] * 3, "std": [0.25] * 3,
                 "augment": "cifar", "image_size": 32, "val_resize": 32},
    }  # fmt: skip
    return save_checkpoint(path, model=model, config=cfg)


def test_eval_missing_data_dir_says_it_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = _ckpt(tmp_path / "m.pt")
    rc = main(
        ["eval", str(ck), "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--metrics", "accuracy"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and str(tmp_path / "nope") in err and "split" not in err


def test_eval_and_train_name_a_corrupt_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _imagefolder(tmp_path / "d", splits=("train", "test"))
    for split in ("train", "test"):
        (data / split / "class1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    ck = _ckpt(tmp_path / "m.pt")
    rc = main(
        [
            "eval",
            str(ck),
            "--data-dir",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--metrics",
            "accuracy",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "cannot read image" in err and "broken.png" in err and "Traceback" not in err
    rc = main(["train", "--model", TINY, "--dataset", "imagefolder", "--data-dir", str(data), "--val-split", "test",
               "--out", str(tmp_path / "t"), "--batch-size", "4", "--epochs", "1", "--num-workers", "0",
               "--no-progress", "--no-plot"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "cannot read image" in err and "broken.png" in err


# --------------------------------------------------------------------------- mCE naming
def test_corruption_scope_names_the_mean_honestly() -> None:
    all15 = {c: [0.5] for c in CORRUPTIONS}
    s = corruption_scope(all15, (224, 224), "auto", 1000)
    assert s == {"benchmark_corruptions": 15, "mce_complete": True, "mce_name": "mCE", "alexnet_normalized": True}
    # CIFAR-sized images or a non-ImageNet class count: never divided by AlexNet's ImageNet-C errors
    assert corruption_scope(all15, (32, 32), "auto", 1000)["alexnet_normalized"] is False
    assert corruption_scope(all15, (224, 224), "auto", 10)["alexnet_normalized"] is False
    two = {"gaussian_noise": [0.5], "fog": [0.4], "saturate": [0.1]}
    s = corruption_scope(two, (224, 224), "auto", 1000)
    assert s["mce_complete"] is False and s["benchmark_corruptions"] == 2
    assert s["mce_name"] == "mean CE over 2 corruptions (not mCE: 2 of the 15 benchmark corruptions)"
    fourteen = dict(list(all15.items())[:14])
    assert corruption_scope(fourteen, (224, 224), "auto", 1000)["mce_name"].startswith("mean CE over 14 corruptions")


def test_eval_on_a_small_custom_set_prints_no_alexnet_mce(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _imagefolder(tmp_path / "d")
    ck = _ckpt(tmp_path / "m.pt")
    out = tmp_path / "o"
    rc = main(["eval", str(ck), "--data-dir", str(data), "--out", str(out), "--metrics", "corruption", "--no-progress",
               "--corruptions", "gaussian_noise,fog", "--severities", "1", "--corruption-images", "4"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in printed.splitlines() if "corruptions" in ln and "unnormalised" in ln)
    assert "AlexNet" not in printed and "mCE unnormalised" not in line
    assert "mean CE over 2 corruptions (not mCE: 2 of the 15 benchmark corruptions) unnormalised" in line
    c = json.loads((out / "results.json").read_text())["results"][0]["corruption"]
    assert c["mce_normalized"] is None and c["alexnet_normalized"] is False and c["mce_complete"] is False
    md = (out / "results.md").read_text()
    assert "AlexNet-norm." not in md and "| mean CE unnorm. (%) |" in md.replace("| label | pool | images | ", "| ")


# --------------------------------------------------------------------------- training log ETA, wall time
def test_eta_text() -> None:
    # 5 of 10 iterations in 10 s; 2 more epochs; no finished epoch yet -> 20 s per epoch
    assert trainer_mod._eta(10.0, 5, 10, 2, []) == "ETA epoch 0:00:10, run 0:00:50"
    # later epochs use the last finished epoch's time (validation included)
    assert trainer_mod._eta(10.0, 5, 10, 1, [{"epoch_time_s": 3725.0}]) == "ETA epoch 0:00:10, run 1:02:15"


def _tiny_train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--model", TINY, "--dataset", "imagefolder", "--data-dir", str(data), "--out", str(out),
                 "--batch-size", "4", "--num-workers", "0", "--no-progress", "--no-plot", *extra])  # fmt: skip


def test_training_log_file_has_an_eta_and_resumed_wall_time_counts_the_whole_run(tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "d", splits=("train", "val"))
    out = tmp_path / "run"
    assert _tiny_train(data, out, "--epochs", "1") == 0  # 12 images / batch 4: 3 iterations, a line each
    log = (out / "train.log").read_text()
    assert "it/s, ETA epoch 0:00:" in log  # stderr is not a terminal under pytest: the log-file lines
    first = json.loads((out / "summary.json").read_text())
    before = float(load_checkpoint(out / "checkpoints" / "last.pt")["wall_time_s"])
    assert 0 < before <= first["wall_time_s"]
    assert _tiny_train(data, out, "--resume", "--epochs", "2") == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["resumed"] and second["completed_epochs"] == 2
    assert second["wall_time_s"] == pytest.approx(before + second["wall_time_this_process_s"], abs=0.05)
    assert second["wall_time_s"] > second["wall_time_this_process_s"]
    assert float(load_checkpoint(out / "checkpoints" / "last.pt")["wall_time_s"]) > before
