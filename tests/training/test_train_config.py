"""Presets (the paper's numbers), precedence preset < file < flags, validation, LR schedules."""

import json
import math

import pytest

from liftpool.training.config import PRESETS, TrainConfig, load_config_file, lr_factor, resolve_config

REQ = {"data_dir": "/d", "out": "/o"}


def test_vgg13_cifar100_preset_is_the_papers_recipe():
    c = resolve_config(REQ, preset="vgg13-cifar100")
    assert (c.model, c.dataset, c.optimizer, c.batch_size, c.lr, c.momentum, c.weight_decay) == (
        "vgg13_cifar",
        "cifar100",
        "sgd",
        100,
        0.1,
        0.9,
        5e-4,
    )
    assert (c.schedule, c.milestones, c.gamma, c.epochs) == ("multistep", [80, 120], 0.1, 160)
    assert (c.lambda_u, c.lambda_p, c.constraints) == (0.01, 0.1, True)
    lrs = {e: c.lr * lr_factor(c, e) for e in (0, 79, 80, 119, 120, 159)}
    assert lrs == pytest.approx({0: 0.1, 79: 0.1, 80: 0.01, 119: 0.01, 120: 0.001, 159: 0.001})


def test_imagenet_presets_follow_the_torchvision_recipes_with_the_papers_epochs():
    r = resolve_config(REQ, preset="resnet-imagenet")
    assert (r.epochs, r.batch_size, r.lr, r.weight_decay, r.schedule, r.step_size, r.image_size, r.val_resize) == (
        100,
        256,
        0.1,
        1e-4,
        "step",
        30,
        224,
        256,
    )
    assert r.lr * lr_factor(r, 30) == pytest.approx(0.01) and r.lr * lr_factor(r, 99) == pytest.approx(1e-4)
    m = resolve_config(REQ, preset="mobilenetv2-imagenet")
    assert (m.model, m.epochs, m.lr, m.weight_decay, m.schedule, m.gamma) == (
        "mobilenet_v2",
        150,
        0.045,
        4e-5,
        "exp",
        0.98,
    )
    assert m.lr * lr_factor(m, 10) == pytest.approx(0.045 * 0.98**10)
    for name in PRESETS:
        c = resolve_config(REQ, preset=name)
        assert c.preset == name and c.model and c.dataset


def test_precedence_preset_then_file_then_flags(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"preset": "segnet-camvid", "lr": 0.3, "epochs": 9, "crop-size": [8, 8]}))
    c = resolve_config({**REQ, "epochs": 2}, config_file=f)
    assert (c.preset, c.model, c.lr, c.epochs, c.crop_size, c.class_weighting) == (
        "segnet-camvid",
        "segnet",
        0.3,
        2,
        [8, 8],
        "median_freq",
    )
    c = resolve_config({**REQ, "preset": "deeplab-voc"}, config_file=f)  # a flag's preset beats the file's
    assert c.model == "deeplabv3plus_resnet50" and c.lr == 0.3
    t = tmp_path / "c.toml"
    t.write_text('model = "resnet18"\ndataset = "imagefolder"\nwidth = 1\nscale_range = [1, 2]\n')
    c = resolve_config(REQ, config_file=t)
    assert c.width == 1.0 and isinstance(c.width, float) and c.scale_range == [1.0, 2.0]
    assert load_config_file(t)["model"] == "resnet18"


@pytest.mark.parametrize(
    "content,suffix,msg",
    [("{nope", ".json", "not valid JSON"), ("a = ", ".toml", "not valid TOML"), ("[1, 2]", ".json", "must hold an "
                                                                                                    "object"),
     ("{}", ".yaml", "use a .json or .toml"), ('{"lr_rate": 1}', ".json", "unknown setting 'lr_rate'")],
)  # fmt: skip
def test_bad_config_files(tmp_path, content, suffix, msg):
    f = tmp_path / f"c{suffix}"
    f.write_text(content)
    with pytest.raises(ValueError, match=msg):
        resolve_config(REQ, config_file=f)
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "bad,msg",
    [
        ({"lr": 0}, "lr must be"),
        ({"epochs": 0}, "epochs must be"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"crop_size": [4]}, "crop_size"),
        ({"scale_range": [2, 1]}, "scale_range"),
        ({"device": "tpu"}, "device"),
        ({"amp": "yes"}, "amp must be true or false"),
        ({"width": -1}, "width"),
        ({"out": None}, "out must be"),
        ({"lambda_p": -0.1}, "lambda_p"),
        ({"milestones": [0]}, "milestones"),
    ],
)
def test_validation_names_the_setting(bad, msg):
    with pytest.raises(ValueError, match=msg):
        resolve_config({**REQ, "model": "m", "dataset": "camvid", **bad})


def test_lr_schedules_by_hand():
    c = TrainConfig(epochs=10, schedule="cosine")
    assert [lr_factor(c, t) for t in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    c = TrainConfig(epochs=10, schedule="poly", power=2.0)
    assert lr_factor(c, 2.5) == pytest.approx(0.75**2)
    c = TrainConfig(epochs=10, schedule="step", step_size=3, gamma=0.5)
    assert [lr_factor(c, e) for e in (0, 2.9, 3, 6.5, 9)] == pytest.approx([1, 1, 0.5, 0.25, 0.125])
    c = TrainConfig(epochs=10, schedule="constant", warmup_epochs=2)
    assert [lr_factor(c, t) for t in (0, 0.5, 1, 2, 5)] == pytest.approx([0, 0.25, 0.5, 1, 1])
    assert TrainConfig(epochs=3).model_spec(7) == {"name": None, "pool": "max", "num_classes": 7, "kwargs": {}}
    assert TrainConfig(width=0.5, model_kwargs={"batch_norm": False}).model_spec(2)["kwargs"] == {
        "batch_norm": False,
        "width": 0.5,
    }
    assert math.isclose(lr_factor(TrainConfig(schedule="exp", gamma=0.9), 2.99), 0.81)
