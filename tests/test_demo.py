"""``liftpool demo``: the Figure-1-like picture and its numbers."""

import json

import pytest
import torch
import torch.nn.functional as F

from liftpool.cli import main
from liftpool.studies.demo import aliasing_ratio, ideal_lowpass, make_test_image, run_demo


def test_ideal_lowpass_is_a_projection_and_removes_high_frequencies():
    x = torch.randn(1, 1, 32, 32, dtype=torch.float64)
    lo = ideal_lowpass(x)
    torch.testing.assert_close(ideal_lowpass(lo), lo)
    # a checkerboard is pure Nyquist content: removed entirely
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2
    assert ideal_lowpass(checker.double().view(1, 1, 32, 32) - 0.5).abs().max() < 1e-12


def test_aliasing_ratio_orders_poolings_on_a_high_frequency_pattern():
    # a pattern at 0.375 cycles/sample aliases after plain subsampling, less after averaging
    n = torch.arange(64, dtype=torch.float64)
    x = torch.cos(2 * torch.pi * 0.375 * n).view(1, 1, 1, -1).expand(1, 1, 8, 64) + 1.0
    sub = aliasing_ratio(lambda t: t[..., ::2, ::2], x)
    avg = aliasing_ratio(lambda t: F.avg_pool2d(t, 2), x)
    assert 0 < avg < sub


def test_run_demo_reconstructs_exactly_and_max_unpool_does_not():
    res = run_demo(make_test_image(32), fit_steps=3)
    m = res["metrics"]
    assert m["LiftDownPool (learned)"]["reconstruction"]["LiftUpPool"] < 1e-5
    assert m["LiftDownPool (CDF 5/3)"]["reconstruction"]["LiftUpPool"] < 1e-5
    assert m["MaxPool"]["reconstruction"]["MaxUnpool"] > 0.1
    assert res["maps"]["LL"].shape == (1, 1, 16, 16)


def test_demo_cli_writes_png_and_json(tmp_path, capsys):
    out, js = tmp_path / "demo.png", tmp_path / "demo.json"
    assert main(["demo", "--out", str(out), "--size", "48", "--fit-steps", "2", "--json", str(js)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert set(data) == {"MaxPool", "AvgPool", "LiftDownPool (learned)", "LiftDownPool (CDF 5/3)"}
    printed = capsys.readouterr().out
    assert "MaxUnpool" in printed and "figure written" in printed


def test_demo_cli_user_image(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    img = tmp_path / "in.png"
    PIL.fromarray((torch.rand(21, 17) * 255).byte().numpy()).save(img)
    assert main(["demo", "--image", str(img), "--out", str(tmp_path / "o.png"), "--fit-steps", "1"]) == 0
    with pytest.raises(SystemExit, match="no such file"):
        main(["demo", "--image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "x.png")])
