"""Checkpoint format, load_model, atomic writes and the corrupt-file errors."""

import pickle

import pytest
import torch

from liftpool.io import atomic_torch_save, atomic_write_json
from liftpool.models import create_model
from liftpool.training import CheckpointError, load_checkpoint, load_model, save_checkpoint
from liftpool.training.checkpoint import CHECKPOINT_FORMAT, unwrap_model

SPEC = {"name": "vgg13_cifar", "pool": "lift", "num_classes": 4, "kwargs": {"width": 0.0625}}
CONFIG = {"model": SPEC, "task": "classification", "data": {"mean": [0.5] * 3, "std": [0.25] * 3}, "train": {}}


def _trained_like_model():
    torch.manual_seed(1)
    m = create_model(SPEC["name"], pool=SPEC["pool"], num_classes=4, **SPEC["kwargs"])
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # not the init: load_model must really load
    return m.eval()


def test_load_model_rebuilds_an_identical_model(tmp_path):
    m = _trained_like_model()
    save_checkpoint(tmp_path / "c.pt", model=torch.nn.parallel.DataParallel(m), config=CONFIG, epoch=3)
    ck = torch.load(tmp_path / "c.pt", weights_only=False)
    assert ck["format"] == CHECKPOINT_FORMAT and ck["format_version"] == 1 and ck["epoch"] == 3
    assert not any(k.startswith("module.") for k in ck["model_state"]), "wrappers are stripped"
    m2, config = load_model(tmp_path / "c.pt")
    assert config == CONFIG and not m2.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert unwrap_model(torch.nn.parallel.DataParallel(m)) is m


def test_corrupt_foreign_and_mismatched_files(tmp_path):
    m = _trained_like_model()
    good = save_checkpoint(tmp_path / "good.pt", model=m, config=CONFIG)
    raw = good.read_bytes()
    cases = {
        "trunc.pt": (raw[: len(raw) // 2], "corrupt"),
        "empty.pt": (b"", "empty"),
        "text.pt": (b"hello world", "corrupt"),
    }
    for name, (data, msg) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=msg):
            load_model(tmp_path / name)
    torch.save({"state_dict": m.state_dict()}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a liftpool checkpoint"):
        load_model(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    other = {**CONFIG, "model": {**SPEC, "num_classes": 5}}
    save_checkpoint(tmp_path / "mismatch.pt", model=m, config=other)
    with pytest.raises(ValueError, match="weights do not match"):
        load_model(tmp_path / "mismatch.pt")
    future = torch.load(good, weights_only=False) | {"format_version": 99}
    torch.save(future, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format_version 99"):
        load_checkpoint(tmp_path / "future.pt")


class _Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("boom")


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "c.pt"
    atomic_torch_save({"a": 1}, path)
    with pytest.raises(pickle.PicklingError):
        atomic_torch_save({"a": _Unpicklable()}, path)
    assert torch.load(path, weights_only=False) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "the temporary file is cleaned up"
    atomic_write_json(tmp_path / "s.json", {"x": float("nan"), "y": [1.5]})
    assert (tmp_path / "s.json").read_text() == '{\n  "x": null,\n  "y": [\n    1.5\n  ]\n}\n'
