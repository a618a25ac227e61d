"""Compile-on-first-use of the native kernel (``torch.utils.cpp_extension.load``) into a per-user cache.

Two libraries are built: the **ops library** (``<key>/ops/liftpool_ops_<key>.so``: the kernels and
``csrc/ops.cpp``, which registers the ``liftpool::`` operator schemas and CPU kernels with the PyTorch
dispatcher; it needs no Python, so a C++ program can load it to run an AOTInductor package), and the
**Python module** (``module.cpp``: pybind11 bindings of the same kernels for the eager fast path,
linked against the ops library).  :func:`load_prebuilt` loads an ops library built earlier without
compiling anything (``import liftpool`` calls it, so a program exported or packaged with the ops
loads in a fresh process).

The build directory is ``$LIFTPOOL_CACHE_DIR/<key>`` (default ``~/.cache/liftpool/native/<key>``);
``<key>`` hashes the C++ sources, the compiler flags, the torch and Python versions and the CPU
(architecture plus the model and feature-flag lines of ``/proc/cpuinfo``), because the code is
compiled with ``-march=native`` and must not be reused on another CPU.  An exclusive ``fcntl``
lock around the build keeps DDP ranks and pytest-xdist workers from compiling at once: the first
one builds, the others wait and then load the finished module.

A missing compiler or a failed build never raises from :func:`load_extension`'s callers: the
state records the error, :func:`liftpool.kernels.native.available` returns ``False`` and ONE
``RuntimeWarning`` says why (the layer then takes the eager path).

A compile says so on stderr, one line when it starts (what, where, roughly how long) and one when it
ends, so a first call that takes minutes does not look like a hang; ``liftpool build`` compiles ahead
of time (container images, clusters: see the README on sharing the cache).  The extension machinery's
"No CUDA runtime is found" log line (logged when ``torch.utils.cpp_extension`` is imported on a
machine with a CUDA toolkit but no GPU, by this build or by ``torch.compile``) is filtered out: it
concerns CUDA builds only.

``LIFTPOOL_NATIVE_SANITIZE=1`` builds an AddressSanitizer + UndefinedBehaviorSanitizer variant
(:data:`SANITIZE_FLAGS`, ``-O1 -g`` instead of ``-O3``; another cache key, so it never replaces the
ordinary build).  Python and torch are not instrumented, so the ASan runtime must be loaded first:
``LD_PRELOAD="$(c++ -print-file-name=libasan.so) $(c++ -print-file-name=libstdc++.so)"
ASAN_OPTIONS=detect_leaks=0`` (``make sanitize`` does all of this).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

__all__ = [
    "CXX_FLAGS",
    "LD_FLAGS",
    "SANITIZE_FLAGS",
    "STATE",
    "BuildState",
    "build_key",
    "cache_root",
    "cxx_flags",
    "find_compiler",
    "ld_flags",
    "load_extension",
    "load_prebuilt",
    "loaded_ops_library",
    "ops_library_path",
    "sanitize_requested",
]

CSRC = Path(__file__).resolve().parent / "csrc"
#: The ops library: the kernels and the operator registration (no Python).
OPS_SOURCES: tuple[str, ...] = ("lift_down2d.cpp", "lift_up2d.cpp", "lift_1d.cpp", "lift_3d.cpp", "ops.cpp")
#: The Python module (pybind11 bindings for the eager fast path), linked against the ops library.
MODULE_SOURCES: tuple[str, ...] = ("module.cpp",)
SOURCES: tuple[str, ...] = OPS_SOURCES + MODULE_SOURCES
HEADERS: tuple[str, ...] = ("lift_steps.h", "lift_common.h", "lift_ops.h")
#: ``-ffp-contract=fast`` lets the compiler fuse multiply-adds (FMA); float64 parity with the eager
#: path stays far inside 1e-12 (checked by tests/native).  ``-fno-trapping-math`` (no change to any
#: IEEE result, only to FP exception flags) lets GCC if-convert the selects of the tanh and ReLU
#: loops: without it those ``omp simd`` loops stay scalar ("control flow in loop").
CXX_FLAGS: tuple[str, ...] = (
    "-O3",
    "-march=native",
    "-ffp-contract=fast",
    "-fno-trapping-math",
    "-fopenmp",
    "-DNDEBUG",
)
LD_FLAGS: tuple[str, ...] = ("-fopenmp",)
#: Added to the compile and link flags by ``LIFTPOOL_NATIVE_SANITIZE=1`` (``-O3`` becomes ``-O1``):
#: ASan + UBSan, every UB report fatal; ``vptr`` is off because torch is built without RTTI checks
#: in mind (its classes would be reported from uninstrumented code).
SANITIZE_FLAGS: tuple[str, ...] = (
    "-fsanitize=address,undefined",
    "-fno-sanitize=vptr",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
    "-g",
)
#: What a first build usually takes (the six C++ files, -O3), for the line that announces it.
BUILD_TIME_HINT = "about 1-3 minutes"


class _NoCudaRuntimeFilter(logging.Filter):
    """Drops ``torch.utils.cpp_extension``'s "No CUDA runtime is found" record (irrelevant to a CPU build)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


_CPP_EXTENSION_LOG = logging.getLogger("torch.utils.cpp_extension")
if not any(isinstance(f, _NoCudaRuntimeFilter) for f in _CPP_EXTENSION_LOG.filters):
    _CPP_EXTENSION_LOG.addFilter(_NoCudaRuntimeFilter())


def _say(message: str) -> None:
    """One line on stderr (not a warning: the build is not a problem, only slow)."""
    print(f"liftpool: {message}", file=sys.stderr, flush=True)


class BuildState:
    """What the last attempt to load the extension did (one per process)."""

    def __init__(self) -> None:
        self.module: ModuleType | None = None
        self.tried = False
        self.error: str | None = None
        self.warned = False
        self.build_dir: str | None = None
        self.key: str | None = None
        self.built_now = False
        self.build_seconds: float | None = None
        self.load_seconds: float | None = None
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget the loaded module and any error (tests use this); a loaded ops library stays loaded."""
        self.__init__()  # type: ignore[misc]  # re-initialise in place (the lock included)


STATE = BuildState()


def cache_root() -> Path:
    """``$LIFTPOOL_CACHE_DIR`` or ``~/.cache/liftpool/native``."""
    env = os.environ.get("LIFTPOOL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "liftpool" / "native"


def _cpu_signature() -> str:
    lines: list[str] = [platform.machine(), platform.processor()]
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        seen: set[str] = set()
        for line in f:
            name = line.split(":", 1)[0].strip()
            if name in ("model name", "flags", "Features", "CPU implementer", "CPU part") and name not in seen:
                seen.add(name)
                lines.append(line.strip())
    return "\n".join(lines)


def sanitize_requested() -> bool:
    """``LIFTPOOL_NATIVE_SANITIZE`` is set to something other than ``""``/``"0"``: build the ASan + UBSan variant."""
    return os.environ.get("LIFTPOOL_NATIVE_SANITIZE", "").strip() not in ("", "0")


def cxx_flags() -> tuple[str, ...]:
    """The compile flags of this build: :data:`CXX_FLAGS`, or the sanitizer variant's."""
    if not sanitize_requested():
        return CXX_FLAGS
    return tuple("-O1" if f == "-O3" else f for f in CXX_FLAGS) + SANITIZE_FLAGS


def ld_flags() -> tuple[str, ...]:
    """The link flags of this build: :data:`LD_FLAGS`, plus the sanitizers when requested."""
    return LD_FLAGS + (SANITIZE_FLAGS if sanitize_requested() else ())


def build_key() -> str:
    """Hash of the sources, flags, torch version, Python version and CPU."""
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    h.update(repr((cxx_flags(), ld_flags())).encode())
    h.update(torch.__version__.encode())
    h.update(sys.version.encode())
    h.update(_cpu_signature().encode())
    h.update(b"sources staged in <build>/csrc")  # the build layout: commands independent of the checkout path
    h.update(b"ops library <build>/ops with its soname; module links it by soname, rpath $ORIGIN/ops")
    return h.hexdigest()[:20]


def find_compiler() -> str | None:
    """Path of the C++ compiler ``torch.utils.cpp_extension`` would use (``$CXX`` or ``c++``), or None."""
    return shutil.which(os.environ.get("CXX", "c++"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _stage_sources(build_dir: Path) -> Path:
    """Copy the C++ sources into ``<build_dir>/csrc`` (only files whose content differs, so their
    times stay put) and return that folder.  Compiling from there keeps the build commands the same
    for every checkout holding the same sources: two installs sharing the cache (say two clones, or
    a clone and a wheel) never make ninja rebuild for each other because of their paths."""
    dst = build_dir / "csrc"
    dst.mkdir(parents=True, exist_ok=True)
    for name in SOURCES + HEADERS:
        data = (CSRC / name).read_bytes()
        target = dst / name
        if not target.is_file() or target.read_bytes() != data:
            tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
    return dst


def ops_library_path(build_dir: Path, key: str) -> Path:
    """Where the ops library of build ``key`` lies in ``build_dir``."""
    return build_dir / "ops" / f"liftpool_ops_{key}.so"


def _ops_registered() -> bool:
    """The ``liftpool::`` ops are registered in this process (by an ops library loaded earlier)."""
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key("liftpool::down2d", "CPU"))
    except RuntimeError:  # "operator liftpool::down2d does not exist"
        return False


def _load_ops_library(path: Path, loader: Callable[[], object] | None = None) -> None:
    """Load the ops library at ``path`` (its static initialisers register the ops), once per process;
    ``loader`` (default ``torch.ops.load_library(path)``) does the loading, building first if need be.

    Loading a second ops library (another build, another cache) would register the same ops again,
    which aborts the process from a static initialiser: refused here with the reason instead.
    """
    global _OPS_PATH
    with _OPS_LOCK:
        if _OPS_PATH is not None:
            if os.path.realpath(_OPS_PATH) != os.path.realpath(path):
                raise RuntimeError(
                    f"the liftpool ops are already registered from {_OPS_PATH}; one native build per process "
                    f"(not also {path})"
                )
            return
        if _ops_registered():
            raise RuntimeError(f"the liftpool ops are already registered by another library; not loading {path}")
        if loader is None:
            torch.ops.load_library(str(path))  # type: ignore[no-untyped-call]
        else:
            loader()
        _OPS_PATH = str(path)
        for hook in _ON_OPS_LOADED:
            hook()


def loaded_ops_library() -> str | None:
    """Path of the ops library loaded in this process, or None."""
    return _OPS_PATH


#: The ops library loaded in this process (one per process, whatever happens to :data:`STATE`).
_OPS_PATH: str | None = None
_OPS_LOCK = threading.Lock()
#: Called once the ops are registered (``liftpool.kernels.native.ops`` adds the autograd formulas).
_ON_OPS_LOADED: list[Callable[[], None]] = []


def _compile(build_dir: Path, name: str) -> ModuleType:
    """Build (or find built) the ops library and the Python module of ``name``, load both."""
    # importing cpp_extension logs "No CUDA runtime is found" on CPU-only machines: filtered out above
    from torch.utils.cpp_extension import load

    key = name.rsplit("_", 1)[-1]
    src = _stage_sources(build_dir)
    ops_path = ops_library_path(build_dir, key)
    ops_path.parent.mkdir(parents=True, exist_ok=True)
    # --as-needed: the ops library records no dependency on torch's Python bindings (it uses none);
    # load() builds it if needed and loads it (torch.ops.load_library)
    _load_ops_library(
        ops_path,
        lambda: load(
            name=ops_path.stem,
            sources=[str(src / s) for s in OPS_SOURCES],
            extra_cflags=list(cxx_flags()),
            extra_ldflags=["-Wl,--as-needed", f"-Wl,-soname,{ops_path.name}", *ld_flags()],
            extra_include_paths=[str(src)],
            build_directory=str(ops_path.parent),
            is_python_module=False,
            verbose=False,
        ),
    )
    module: ModuleType = load(
        name=name,
        sources=[str(src / s) for s in MODULE_SOURCES],
        extra_cflags=list(cxx_flags()),
        # needs the ops library by its soname (the one loaded above), found next to it: a cache folder
        # that moves keeps working ('$$': ninja's escape of '$'; the quotes keep it from the shell)
        extra_ldflags=[*ld_flags(), f"-L{ops_path.parent}", f"-l:{ops_path.name}", "-Wl,-rpath,'$$ORIGIN/ops'"],
        extra_include_paths=[str(src)],
        build_directory=str(build_dir),
        verbose=False,
    )
    return module


def load_prebuilt() -> bool:
    """Load the ops library of this build if it was built before (no compile, no lock); never raises.

    True when the ``liftpool::`` ops are registered afterwards.  The sanitizer build is left to
    :func:`load_extension` (it needs the ASan runtime preloaded).
    """
    if _OPS_PATH is not None:
        return True
    if sanitize_requested():
        return False
    try:
        key = build_key()
        build_dir = cache_root() / key
        path = ops_library_path(build_dir, key)
        if not (path.is_file() and (build_dir / "build_info.json").is_file()):  # finished builds only
            return False
        _load_ops_library(path)
        return True
    except (OSError, RuntimeError):  # a broken cache entry: the next load_extension rebuilds or reports
        return False


def load_extension() -> ModuleType:
    """The compiled module; builds it on first use.  Raises ``RuntimeError`` when it cannot be built."""
    st = STATE
    with st.lock:
        if st.module is not None:
            return st.module
        if st.tried:
            raise RuntimeError(st.error or "the liftpool native kernel is unavailable")
        st.tried = True
        try:
            if find_compiler() is None:
                raise RuntimeError(f"no C++ compiler found (looked for {os.environ.get('CXX', 'c++')!r} on PATH)")
            if sanitize_requested() and "libasan" not in os.environ.get("LD_PRELOAD", ""):
                raise RuntimeError(
                    "LIFTPOOL_NATIVE_SANITIZE=1 needs the ASan runtime loaded first: "
                    'LD_PRELOAD="$(c++ -print-file-name=libasan.so) $(c++ -print-file-name=libstdc++.so)" '
                    "ASAN_OPTIONS=detect_leaks=0 (see make sanitize)"
                )
            key = build_key()
            build_dir = cache_root() / key
            st.key, st.build_dir = key, str(build_dir)
            name = f"liftpool_native_{key}"
            t0 = time.perf_counter()
            with _file_lock(cache_root() / f"{key}.lock"):
                fresh = not any(build_dir.glob(f"{name}*.so")) if build_dir.exists() else True
                build_dir.mkdir(parents=True, exist_ok=True)
                # torch's own build baton: under our exclusive lock nobody else builds here, so a
                # leftover one is stale (an interrupted build) and would make load() wait forever
                with contextlib.suppress(FileNotFoundError):
                    (build_dir / "lock").unlink()
                if fresh:
                    _say(
                        f"compiling the native CPU kernel (C++, once per CPU, torch and Python version; "
                        f"{BUILD_TIME_HINT}) into {build_dir}"
                    )
                try:
                    st.module = _compile(build_dir, name)
                except Exception:
                    if fresh:
                        _say(f"the native CPU kernel did not build after {time.perf_counter() - t0:.0f} s")
                    raise
                elapsed = time.perf_counter() - t0
                if fresh:
                    _say(f"native CPU kernel built in {elapsed:.0f} s")
                info_path = build_dir / "build_info.json"
                if fresh:
                    st.built_now = True
                    st.build_seconds = elapsed
                    from liftpool.io import atomic_write_json

                    atomic_write_json(info_path, {"build_seconds": elapsed, "key": key, "flags": list(cxx_flags())})
                else:
                    st.load_seconds = elapsed
                    with contextlib.suppress(OSError, ValueError):
                        st.build_seconds = float(json.loads(info_path.read_text())["build_seconds"])
            return st.module
        except Exception as exc:  # any build/load failure means: eager path
            st.module = None
            st.error = f"{type(exc).__name__}: {exc}".strip()
            raise RuntimeError(st.error) from exc


def try_load() -> ModuleType | None:
    """:func:`load_extension`, or None (with one ``RuntimeWarning`` per process) when it fails."""
    try:
        return load_extension()
    except RuntimeError:
        st = STATE
        if not st.warned:
            st.warned = True
            first = (st.error or "").splitlines()[0][:500]
            warnings.warn(
                "liftpool: the native CPU kernel could not be built, LiftDownPool2d uses the eager path "
                f"(slower, same results). Reason: {first}",
                RuntimeWarning,
                stacklevel=3,
            )
        return None


def info() -> dict[str, Any]:
    """Build state for :func:`liftpool.kernels.native.build_info`."""
    st = STATE
    return {
        "active": st.module is not None,
        "tried": st.tried,
        "error": st.error,
        "compiler": find_compiler(),
        "cxx_flags": list(cxx_flags()),
        "ld_flags": list(ld_flags()),
        "sanitize": sanitize_requested(),
        "cache_root": str(cache_root()),
        "build_dir": st.build_dir,
        "key": st.key,
        "ops_library": _OPS_PATH,
        "built_now": st.built_now,
        "build_seconds": st.build_seconds,
        "load_seconds": st.load_seconds,
    }
