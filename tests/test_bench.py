"""Smoke test of ``liftpool bench`` in a tiny configuration, and its measuring helpers.

No timing assertions: only that every section runs, the table and JSON hold the rows
they should, ratios are computed against MaxPool of the same run, and the PNGs are
real images.
"""

import json
import re

import pytest
import torch

from liftpool.cli import main
from liftpool.studies import bench

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tiny_args(out):
    return [
        "bench", "--out", str(out), "--quiet", "--shapes", "2,4,9,8", "--dtypes", "float32",
        "--formats", "contiguous", "channels_last", "--modes", "eager", "--repeats", "1", "--warmup", "1",
        "--nets", "vgg13_cifar", "segnet", "--net-batch", "2", "--net-size", "32", "--net-width", "0.0625",
        "--net-repeats", "1", "--nd-shapes", "2,3,16", "1,2,4,6,8",
        "--net-pools", "max", "lift", "lift_ref",
        "--scale-base", "1", "4", "8", "--scale-sizes", "4", "8", "12",
        "--scale-channels", "2", "4", "--scale-batches", "1", "2",
    ]


def test_bench_cli_writes_table_json_and_plots(tmp_path):
    assert main(_tiny_args(tmp_path)) == 0
    md = (tmp_path / "bench.md").read_text()
    assert "torch threads: 1" in md and torch.__version__ in md
    assert "liftpool bench --out" in md  # the command that made it
    for heading in ("## Layer level", "## Up-pooling", "## 1D and 3D", "## Network level", "## Scaling"):
        assert heading in md
    for method in bench.LAYER_METHODS:
        assert f"| {method} |" in md
    # MaxPool is the reference of every layer table: ratio exactly 1.00x
    max_rows = [line for line in md.splitlines() if line.startswith("| max | ")]
    assert len(max_rows) == 2 and all(line.split("|")[3].strip() == "1.00x" for line in max_rows)
    assert "lift (default backend) vs paper-literal" in md and "lift (default backend) vs the eager kernel" in md
    assert re.search(r"against HW: t = .* R\^2 = ", md)

    payload = json.loads((tmp_path / "bench.json").read_text())
    rows = payload["rows"]
    assert payload["machine"]["threads"] == 1
    layer = [r for r in rows if r["section"] == "layer"]
    assert len(layer) == 2 * len(bench.LAYER_METHODS)
    assert all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 for r in layer)
    lift = next(r for r in layer if r["method"] == "lift" and r["config"]["format"] == "contiguous")
    # the native layer keeps only x and the parameters for backward (excluded by saved_bytes)
    assert lift["saved_mb"] >= 0 and lift["peak_mb"] > 0
    up_methods = [r["method"] for r in rows if r["section"] == "up"]
    assert up_methods == ["max_unpool", "lift_up", "lift_up_eager", "lift_down"]
    nd = [r for r in rows if r["section"] == "nd"]
    assert {tuple(r["config"]["shape"]) for r in nd} == {(2, 3, 16), (1, 2, 4, 6, 8)}
    assert {r["method"] for r in nd} == {"max", "max_unpool", "lift", "lift_eager", "lift_up", "lift_up_eager"}
    assert len(nd) == 2 * 6 and all(r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 for r in nd)
    net = [(r["config"]["net"], r["method"]) for r in rows if r["section"] == "net"]
    # SegNet runs the pools that have an up-pooling partner (lift_ref has none)
    assert net == [("vgg13_cifar", "max"), ("vgg13_cifar", "lift"), ("vgg13_cifar", "lift_ref"),
                   ("segnet", "max"), ("segnet", "lift")]
    scale = [r for r in rows if r["section"] == "scale"]
    assert {r["config"]["axis"] for r in scale} == {"HW", "C", "N"} and len(scale) == 3 + 2 + 2

    for name in ("bench_layer.png", "bench_scaling.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temp files


def test_time_interleaved_runs_each_callable_in_rounds():
    calls = []
    t = bench.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())
    with pytest.raises(ValueError, match="repeats"):
        bench.time_interleaved({"a": lambda: None}, repeats=0)


def test_linear_fit_recovers_a_line_and_reports_r2():
    a, b, r2 = bench.linear_fit([1.0, 2.0, 4.0, 8.0], [2.5 + 3 * x for x in (1.0, 2.0, 4.0, 8.0)])
    assert a == pytest.approx(2.5) and b == pytest.approx(3.0) and r2 == pytest.approx(1.0)
    _, _, r2_noisy = bench.linear_fit([1, 2, 3, 4], [1, 3, 2, 4])
    assert 0 < r2_noisy < 1
    with pytest.raises(ValueError):
        bench.linear_fit([1.0], [1.0])


def test_saved_and_peak_bytes_measure_real_tensors():
    x = torch.randn(256, 256, requires_grad=True)  # 256 KiB
    # exp saves its output (256 KiB); the input is excluded
    assert bench.saved_bytes(lambda: torch.exp(x).sum(), exclude=[x]) == 256 * 256 * 4
    peak = bench.peak_bytes(lambda: torch.empty(1024, 1024).fill_(1.0).sum())
    if peak is not None:  # the private profiler API may be unavailable
        assert peak >= 1024 * 1024 * 4


def test_make_layer_covers_every_method_and_rejects_unknown():
    x = torch.randn(1, 4, 8, 8)
    for m in bench.LAYER_METHODS:
        assert bench.make_layer(m, 4)(x).shape == (1, 4, 4, 4)
    with pytest.raises(ValueError, match="unknown method"):
        bench.make_layer("nope", 4)
    # "lift" is the layer as users get it (default backend), "lift_eager" forces the eager kernel
    assert bench.make_layer("lift", 4).backend == "auto"
    assert bench.make_layer("lift_eager", 4).backend == "eager"


def test_bad_shape_argument_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--shapes", "1,2,3"])
    assert "N,C,H,W" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_device_option_without_the_device_is_a_clear_error(tmp_path):
    for device, match in (("cuda", "no such device is available"), ("gpu0", "must be a torch device")):
        with pytest.raises(ValueError, match=match):
            main(["bench", "--quick", "--sections", "layer", "--device", device, "--out", str(tmp_path)])
