"""Atomic writes: a failing write leaves the previous file untouched and no temporary behind."""

import json

import pytest

from liftpool.io import atomic_save_figure, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_failed_write_keeps_previous_file(tmp_path):
    p = tmp_path / "result.json"
    atomic_write_json(p, {"a": 1.0, "nan": float("nan")})
    assert json.loads(p.read_text()) == {"a": 1.0, "nan": None}
    with pytest.raises(TypeError):
        atomic_write_json(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"a": 1.0, "nan": None}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["result.json"]


def test_bytes_text_and_figure(tmp_path):
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.md", "| a |\n")
    assert (tmp_path / "t.md").read_text() == "| a |\n"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    atomic_save_figure(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "f.png").stat().st_mode & 0o044  # readable by others, not private
