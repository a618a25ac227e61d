"""The ``liftpool::`` ops live in C++: the ops library (schemas and CPU kernels, ``csrc/ops.cpp``) needs
no Python, runs the ops in a process that never imports liftpool, and lets a C++ program run an
AOTInductor package of a LiftPool network (``examples/cpp/run_aoti_package.cpp``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from liftpool import LiftDownPool2d, LiftUpPool2d
from liftpool.kernels import native
from liftpool.kernels.native import _build, ops

pytestmark = pytest.mark.skipif(
    _build.find_compiler() is None, reason="no C++ compiler found: the native kernel cannot be built"
)
ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "examples" / "cpp" / "run_aoti_package.cpp"


def _ops_library() -> str:
    assert native.available(), native.build_info()
    path = _build.loaded_ops_library()
    assert path is not None and Path(path).is_file()
    return path


def _elf(tool: str, *args: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} not found")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout


def _needed(path: str) -> list[str]:
    lines = _elf("readelf", "-d", path).splitlines()
    return [line.split("[", 1)[1].rstrip("]") for line in lines if "(NEEDED)" in line]


def test_ops_library_needs_no_python() -> None:
    """No Python library among its dependencies and no Python C-API symbol left to resolve; the Python
    module is the one that links torch's Python bindings (and the ops library)."""
    path = _ops_library()
    needed = _needed(path)
    assert "libtorch_cpu.so" in needed and not [n for n in needed if "python" in n], needed
    undefined = [line.split()[-1] for line in _elf("nm", "-D", "--undefined-only", path).splitlines() if line.strip()]
    assert undefined and not [s for s in undefined if s.startswith(("Py", "_Py"))]
    module_file = native._build.STATE.module.__file__
    assert Path(path).name in _needed(module_file) and "libtorch_python.so" in _needed(module_file)


def test_every_op_schema_comes_from_the_library() -> None:
    """All twelve ops are registered (C++ schemas, a CPU kernel each) with the fake and autograd
    registrations of liftpool.kernels.native.ops, which the library names as its Python module."""
    _ops_library()
    assert len(ops.OP_NAMES) == 12
    for name in ops.OP_NAMES:
        qual = f"liftpool::{name}"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qual, "CPU"), qual
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qual, "Meta"), qual  # the fake
        assert torch._C._dispatch_pystub(qual, "") == ("liftpool.kernels.native.ops", "")
        if not name.endswith("_backward"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(qual, "Autograd"), qual


def test_import_loads_a_built_ops_library_and_never_compiles(tmp_path: Path) -> None:
    """``import liftpool`` registers the ops from a finished build in the cache (so an exported program
    or AOTInductor package loads in a fresh process) without compiling; with an empty cache it does
    nothing (the first native call builds)."""
    path = _ops_library()
    script = (
        "import torch, liftpool\n"
        "from liftpool.kernels.native import _build\n"
        "print(_build.loaded_ops_library(), _build.STATE.tried, hasattr(torch.ops.liftpool, 'up3d_backward'))\n"
    )
    env = dict(os.environ, LIFTPOOL_CACHE_DIR=str(_build.cache_root()))
    built = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert built.returncode == 0 and built.stdout.split() == [path, "False", "True"], built.stderr[-2000:]
    env["LIFTPOOL_CACHE_DIR"] = str(tmp_path / "empty")
    empty = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert empty.returncode == 0 and empty.stdout.split() == ["None", "False", "False"], empty.stderr[-2000:]
    assert "compiling" not in empty.stderr and not (tmp_path / "empty").exists()


def test_ops_library_alone_runs_the_ops_in_a_fresh_process(tmp_path: Path) -> None:
    """A process that loads only the library (torch.ops.load_library, no liftpool import) computes the
    same down2d/up2d values, and never imports liftpool."""
    path = _ops_library()
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6)
    params = [p.detach() for p in native._params(LiftDownPool2d(3).transforms)]
    out, det, cons = torch.ops.liftpool.down2d(x, params, 0, 15, 0.5, True, True, 0)
    bands = [torch.randn(2, 3, 4, 3) for _ in range(4)]
    rec = torch.ops.liftpool.up2d(bands, params, 7, 6, 0, 0)
    torch.save({"x": x, "params": params, "bands": bands}, tmp_path / "in.pt")
    script = (
        "import sys, torch\n"
        "torch.ops.load_library(sys.argv[1])\n"
        "d = torch.load(sys.argv[2])\n"
        "res = torch.ops.liftpool.down2d(d['x'], d['params'], 0, 15, 0.5, True, True, 0)\n"
        "rec = torch.ops.liftpool.up2d(d['bands'], d['params'], 7, 6, 0, 0)\n"
        "assert not [m for m in sys.modules if m.startswith('liftpool')], 'liftpool was imported'\n"
        "torch.save({'res': list(res), 'rec': rec}, sys.argv[3])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt")
    for a, b in zip(got["res"], (out, det, cons)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(got["rec"], rec, rtol=0, atol=0)


class _Net(nn.Module):
    def __init__(self, c: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.pool = LiftDownPool2d(c, return_details=True)
        self.pool2 = LiftDownPool2d(c, 3, padding_mode="zeros")
        self.up = LiftUpPool2d(self.pool)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, det = self.pool(torch.relu(self.conv(x)))
        return self.pool2(y), self.up(y, det)


def _compile_runner(out: Path) -> Path:
    from torch.utils.cpp_extension import include_paths, library_paths

    cxx = _build.find_compiler()
    assert cxx is not None
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, "-std=c++20", "-O1", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", str(RUNNER), "-o", str(out)]
    cmd += [f"-I{p}" for p in include_paths()]
    libs = library_paths()
    # --no-as-needed: the package's model library needs libtorch.so loaded (the runner itself calls only
    # libtorch_cpu), and finds it by name among the loaded libraries
    cmd += [f"-L{p}" for p in libs] + ["-Wl,--no-as-needed", "-ltorch", "-ltorch_cpu", "-lc10", "-ldl"]
    cmd += [f"-Wl,-rpath,{p}" for p in libs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_aoti_package_runs_in_a_cpp_program_without_python(tmp_path: Path) -> None:
    """Export (dynamic N/H/W) -> AOTInductor package -> the example C++ runner, a program with no Python
    in it, loads the ops library and the package: its outputs equal the eager kernel's at odd and even
    sizes the package was not compiled for.  (~2 min: the runner's compile and the package's.)"""
    ops_path = _ops_library()
    torch.manual_seed(0)
    m = _Net().eval()
    dyn = {0: torch.export.Dim("n", min=1, max=64), 2: torch.export.Dim("h", min=4, max=512),
           3: torch.export.Dim("w", min=4, max=512)}  # fmt: skip
    ep = torch.export.export(m, (torch.randn(2, 3, 16, 12),), dynamic_shapes=(dyn,))
    assert any("liftpool" in str(n.target) for n in ep.graph.nodes)
    pkg = str(torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "net.pt2")))
    runner = _compile_runner(tmp_path / "run_aoti_package")
    assert not [n for n in _needed(str(runner)) if "python" in n]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for shape in [(2, 3, 11, 7), (1, 3, 16, 12)]:
        x = torch.randn(*shape)
        (tmp_path / "x.bin").write_bytes(x.numpy().tobytes())
        proc = subprocess.run([str(runner), pkg, ops_path, str(tmp_path / "x.bin"), *map(str, shape),
                               str(tmp_path / "y")], capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
        assert proc.returncode == 0 and proc.stdout.strip() == "ok 2", proc.stderr[-3000:]
        with torch.no_grad():
            want = m(x)
        for i, ref in enumerate(want):
            sizes = [int(s) for s in (tmp_path / f"y{i}.shape").read_text().split()]
            got = np.fromfile(tmp_path / f"y{i}.bin", dtype=np.float32).reshape(sizes)
            assert tuple(sizes) == tuple(ref.shape)
            np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-5)
    # without the ops library the package cannot run: the ops come from it, not from anything else loaded
    other = str(Path(torch.__file__).parent / "lib" / "libc10.so")
    args = [str(runner), pkg, other, str(tmp_path / "x.bin"), "1", "3", "16", "12", str(tmp_path / "z")]
    missing = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert missing.returncode == 1 and "liftpool::" in missing.stderr, missing.stderr[-2000:]
    # a wrong input size is refused with the reason, not read past its end
    args = [str(runner), pkg, ops_path, str(tmp_path / "x.bin"), "2", "3", "16", "12", str(tmp_path / "z")]
    bad = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode == 2 and "does not hold exactly 1152 float32 values" in bad.stderr
