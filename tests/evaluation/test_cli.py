"""``liftpool eval`` end to end on tiny generated data and tiny checkpoints (real models, width 1/16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liftpool.cli import main
from liftpool.models import create_model
from liftpool.training.checkpoint import save_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"


def _imagefolder(root: Path, classes: int = 3, per_class: int = 4, size: int = 32) -> Path:
    g = np.random.default_rng(0)
    for c in range(classes):
        d = root / "test" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = (g.random((size, size, 3)) * 80 + 60 * c).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"{i}.png")
    return root


def _camvid(root: Path, n: int = 3, h: int = 24, w: int = 32) -> Path:
    g = np.random.default_rng(1)
    (root / "test").mkdir(parents=True)
    (root / "testannot").mkdir()
    lines = []
    for i in range(n):
        Image.fromarray((g.random((h, w, 3)) * 255).astype(np.uint8)).save(root / "test" / f"{i}.png")
        lab = g.integers(0, 12, (h, w)).astype(np.uint8)  # 11 = void
        Image.fromarray(lab, mode="L").save(root / "testannot" / f"{i}.png")
        lines.append(f"test/{i}.png testannot/{i}.png")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    return root


def _classifier_ckpt(path: Path, pool: str) -> Path:
    torch.manual_seed(0)
    model = create_model("vgg13_cifar", pool=pool, num_classes=3, width=0.0625)
    cfg = {
        "model": {"name": "vgg13_cifar", "pool": pool, "num_classes": 3, "kwargs": {"width": 0.0625}},
        "task": "classification",
        "data": {
            "dataset": "imagefolder",
            "num_classes": 3,
            "class_names": ["class0", "class1", "class2"],
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "augment": "cifar",
            "image_size": 32,
            "val_resize": 32,
        },
    }
    return save_checkpoint(path, model=model, config=cfg)


def _segnet_ckpt(path: Path, pool: str) -> Path:
    torch.manual_seed(0)
    model = create_model("segnet", pool=pool, num_classes=11, width=0.0625)
    cfg = {
        "model": {"name": "segnet", "pool": pool, "num_classes": 11, "kwargs": {"width": 0.0625}},
        "task": "segmentation",
        "data": {
            "dataset": "camvid",
            "num_classes": 11,
            "mean": [0.4, 0.4, 0.4],
            "std": [0.3, 0.3, 0.3],
            "ignore_index": 255,
        },
    }
    return save_checkpoint(path, model=model, config=cfg)


def test_eval_classification_two_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _imagefolder(tmp_path / "data")
    ckpts = [_classifier_ckpt(tmp_path / f"{p}.pt", p) for p in ("max", "lift")]
    out = tmp_path / "out"
    rc = main([
        "eval", *map(str, ckpts), "--data-dir", str(data), "--out", str(out), "--batch-size", "5",
        "--corruptions", "gaussian_noise,fog,saturate", "--severities", "1,5", "--corruption-images", "6",
        "--perturbations", "translate,gaussian_noise", "--frames", "3", "--perturbation-images", "2",
        "--figure-images", "2", "--ce-baseline", "vgg13_cifar-max",
    ])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    rows = res["results"]
    assert [r["label"] for r in rows] == ["vgg13_cifar-max", "vgg13_cifar-lift"]
    for r in rows:
        assert r["images"] == 12
        acc = r["accuracy"]
        assert 0 <= acc["top1_error"] <= 1 and acc["top5_error"] == 0.0  # 3 classes
        assert 0 <= r["shift"]["consistency"] <= 1 and r["shift"]["max_shift"] == 4  # 32 // 8
        assert r["shift"]["image_size"] == [32, 32]
        c = r["corruption"]
        assert set(c["ce"]) == {"gaussian_noise", "fog", "saturate"} and len(c["errors"]["fog"]) == 2
        assert c["mce"] == pytest.approx((c["ce"]["gaussian_noise"] + c["ce"]["fog"]) / 2)
        # 32x32, 3 classes, 2 of the 15 benchmark corruptions: no AlexNet normalisation, not called mCE
        assert c["mce_normalized"] is None and c["ce_normalized"] is None
        assert c["mce_complete"] is False and c["benchmark_corruptions"] == 2 and "not mCE" in c["mce_name"]
        assert c["vs_baseline"]["baseline"] == "vgg13_cifar-max"
        assert set(r["perturbation"]["fr"]) == {"translate", "gaussian_noise"}
    # the baseline normalised by itself is 1 wherever its CE is non-zero
    base = rows[0]["corruption"]["vs_baseline"]["ce_normalized"]
    assert all(v == pytest.approx(1.0) for v in base.values())
    md = (out / "results.md").read_text()
    assert "| vgg13_cifar-max |" in md and "| vgg13_cifar-lift |" in md and "AlexNet-norm." not in md
    assert "mCE" not in md.replace("not an mCE", "") and "mean CE unnorm." in md
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figs == [
        "fig3_subbands_vgg13_cifar-lift.png",
        "fig4_consistency_vs_accuracy.png",
        "fig7_first_pool_feature_maps.png",
        "fig9_ce_per_corruption.png",
        "fig9_fr_per_perturbation.png",
    ]
    for f in (out / "figures").glob("*.png"):
        assert f.read_bytes()[:8] == PNG
    assert "shift consistency" in (out / "eval.log").read_text()
    assert not list(out.glob(".*.tmp"))


def test_eval_is_reproducible(tmp_path: Path) -> None:
    data = _imagefolder(tmp_path / "data", per_class=3)
    ck = _classifier_ckpt(tmp_path / "lift.pt", "lift")
    outs = []
    for name in ("a", "b"):
        rc = main(
            [
                "eval",
                str(ck),
                "--data-dir",
                str(data),
                "--out",
                str(tmp_path / name),
                "--metrics",
                "shift,corruption",
                "--corruptions",
                "shot_noise",
                "--corruption-images",
                "4",
                "--per-image-shifts",
                "--max-shift",
                "3",
            ]
        )
        assert rc == 0
        r = json.loads((tmp_path / name / "results.json").read_text())["results"][0]
        outs.append((r["shift"], r["corruption"]["errors"]))
    assert outs[0] == outs[1]


def test_eval_segmentation(tmp_path: Path) -> None:
    data = _camvid(tmp_path / "camvid")
    ckpts = [_segnet_ckpt(tmp_path / f"{p}.pt", p) for p in ("max", "maxblur", "lift")]
    out = tmp_path / "seg"
    rc = main(["eval", *map(str, ckpts), "--data-dir", str(data), "--out", str(out), "--batch-size", "2",
               "--labels", "MaxUnpool,MaxUnpool+Blur,LiftUpPool"])  # fmt: skip
    assert rc == 0
    rows = json.loads((out / "results.json").read_text())["results"]
    for r in rows:
        s = r["segmentation"]
        assert 0 <= s["miou"] <= 1 and len(s["iou"]) == 11 and s["ignore_index"] == 255
        assert s["class_names"][0] == "sky"
        # void pixels (raw label 11) are not counted
        counted = sum(map(sum, s["confusion"]))
        labels = [np.asarray(Image.open(p)) for p in sorted((data / "testannot").glob("*.png"))]
        assert counted == sum(int((lab != 11).sum()) for lab in labels)
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "fig5_segmentation.png" in figs and "fig3_subbands_LiftUpPool.png" in figs
    assert "| LiftUpPool |" in (out / "results.md").read_text()


def test_eval_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _imagefolder(tmp_path / "data", per_class=1)
    ck = _classifier_ckpt(tmp_path / "m.pt", "max")
    assert main(["eval", str(tmp_path / "missing.pt"), "--data-dir", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(ck), "--data-dir", str(tmp_path / "nodata"), "--out", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--labels", "a,b"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert (
        main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--metrics", "segmentation"]) == 2
    )
    assert main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--ce-baseline", "nope",
                 "--metrics", "accuracy"]) == 2  # fmt: skip
    with pytest.raises(SystemExit):
        main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--corruptions", "rain"])
    with pytest.raises(SystemExit):
        main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--severities", "0,6"])
    with pytest.raises(SystemExit):
        main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--workers", "-1"])
    assert main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--device", "gpu0"]) == 2
    assert "not a device name" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", str(ck), "--data-dir", str(data), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_eval_shift_crop_mode_uses_larger_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Zhang's ImageNet protocol in miniature: resize to 40, two random crops of the 32-pixel input size."""
    data = _imagefolder(tmp_path / "data", per_class=2)
    ck = tmp_path / "m.pt"
    model = create_model("vgg13_cifar", pool="lift", num_classes=3, width=0.0625)
    cfg = {
        "model": {"name": "vgg13_cifar", "pool": "lift", "num_classes": 3, "kwargs": {"width": 0.0625}},
        "task": "classification",
        "data": {"dataset": "imagefolder", "num_classes": 3, "mean": [0.5] * 3, "std": [0.25] * 3,
                 "augment": "imagenet", "image_size": 32, "val_resize": 40},
    }  # fmt: skip
    save_checkpoint(ck, model=model, config=cfg)
    out = tmp_path / "o"
    assert (
        main(["eval", str(ck), "--data-dir", str(data), "--out", str(out), "--metrics", "shift", "--crop", "32"]) == 0
    )
    r = json.loads((out / "results.json").read_text())["results"][0]["shift"]
    assert r["crop"] == [32, 32] and r["image_size"] == [40, 40] and 0 <= r["consistency"] <= 1
    assert (
        main(["eval", str(ck), "--data-dir", str(data), "--out", str(out), "--metrics", "shift", "--crop", "48"]) == 2
    )
    assert "larger than the crop" in capsys.readouterr().err
