"""A native build that says what it does: one stderr line when a compile starts (what, where, roughly
how long) and one when it ends; ``liftpool build`` prebuilds and prints the cache location, or exits
non-zero with the reason; the extension machinery's "No CUDA runtime is found" line never shows."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from liftpool.kernels.native import _build

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _fake_compile(build_dir: Path, name: str) -> Any:
    (build_dir / f"{name}.so").write_bytes(b"")  # what a finished build leaves behind
    return types.ModuleType(name)


def test_compile_announces_start_and_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> None:
    monkeypatch.setenv("LIFTPOOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_build, "STATE", _build.BuildState())
    monkeypatch.setattr(_build, "_compile", _fake_compile)
    _build.load_extension()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert "compiling the native CPU kernel" in err[0] and str(tmp_path) in err[0] and "minutes" in err[0]
    assert "built in" in err[1]
    # a later process finds the build in the cache: silent
    monkeypatch.setattr(_build, "STATE", _build.BuildState())
    _build.load_extension()
    assert capsys.readouterr().err == ""


def test_failed_compile_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any) -> None:
    def broken(build_dir: Path, name: str) -> Any:
        raise OSError("simulated compiler failure")

    monkeypatch.setenv("LIFTPOOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_build, "STATE", _build.BuildState())
    monkeypatch.setattr(_build, "_compile", broken)
    with pytest.raises(RuntimeError, match="simulated compiler failure"):
        _build.load_extension()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "compiling" in err[0] and "did not build" in err[1], err


def test_no_cuda_runtime_line_is_filtered(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING):
        log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")
        log.warning("some other warning")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["some other warning"]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, OMP_NUM_THREADS="1", **env)
    full["PYTHONPATH"] = SRC + os.pathsep + full.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "liftpool.cli", "build", *args], capture_output=True, text=True, env=full, timeout=900
    )


@pytest.mark.skipif(_build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built")
def test_build_command_prints_the_cache() -> None:
    proc = _cli()
    assert proc.returncode == 0, proc.stderr
    root = str(_build.cache_root())
    assert f"cache directory: {root}" in proc.stdout and "native CPU kernel ready" in proc.stdout
    ops_line = [line for line in proc.stdout.splitlines() if line.startswith("ops library")]
    assert len(ops_line) == 1 and Path(ops_line[0].rsplit(": ", 1)[1]).is_file()
    assert ops_line[0].startswith(f"ops library (no Python; load it in C++ to run an AOTInductor package): {root}")


def test_build_command_fails_with_the_reason(tmp_path: Path) -> None:
    proc = _cli("--cache-dir", str(tmp_path), CXX=str(tmp_path / "no-such-compiler"))
    assert proc.returncode == 1
    assert "cannot be built here" in proc.stderr and "no C++ compiler found" in proc.stderr
    assert str(tmp_path) in proc.stderr


def test_sources_are_staged_in_the_build_folder_so_checkouts_share_a_build(tmp_path: Path) -> None:
    """Two checkouts with the same sources compile the same files (no rebuild because of their
    paths): the sources are copied into the build folder, and an unchanged copy keeps its time."""
    src = _build._stage_sources(tmp_path)
    assert src == tmp_path / "csrc"
    for name in _build.SOURCES + _build.HEADERS:
        assert (src / name).read_bytes() == (_build.CSRC / name).read_bytes()
    first = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    (src / "module.cpp").write_text("// stale\n")
    _build._stage_sources(tmp_path)
    again = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    assert (src / "module.cpp").read_bytes() == (_build.CSRC / "module.cpp").read_bytes()
    assert all(again[n] == first[n] for n in first if n != "module.cpp")
    assert not list(src.glob(".*.tmp"))
