"""``liftpool info``: which kernel computes the layers here, how the native one was built, where it is cached.

Examples:
    >>> from liftpool.kernels.info import describe
    >>> sorted(describe(build=False))[:3]
    ['backend_env', 'default_backend', 'liftdownpool2d_cpu']
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import torch

from . import DEFAULT_BACKEND, native

__all__ = ["add_arguments", "describe", "format_text", "run"]


def describe(build: bool = True) -> dict[str, Any]:
    """Versions, the backend choice and the native kernel's build state (``build``: build/load it first)."""
    ok = native.available() if build else native._build.STATE.module is not None
    default = DEFAULT_BACKEND
    if default == "auto":
        cpu_2d = "native" if ok else "eager"
    else:
        cpu_2d = "native" if default == "native" and ok else ("literal" if default == "literal" else "eager")
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "threads": torch.get_num_threads(),
        "backend_env": os.environ.get("LIFTPOOL_BACKEND"),
        "default_backend": default,
        "liftdownpool2d_cpu": cpu_2d,  # every learned layer (1D/2D/3D, down and up) follows this choice
        "native": native.build_info(),
    }


def format_text(d: dict[str, Any]) -> str:
    """The human-readable form of :func:`describe`'s result."""
    nat = d["native"]
    lines = [
        f"torch {d['torch']}, Python {d['python']}, {d['machine']}, {d['threads']} threads",
        f"LIFTPOOL_BACKEND: {d['backend_env'] or '(unset)'} -> backend='auto' means {d['default_backend']!r}",
        f"LiftDownPool/LiftUpPool 1D/2D/3D (learned P/U, groups=(C, C)) on CPU run: {d['liftdownpool2d_cpu']}",
        "grouped P/U, CUDA/MPS tensors: eager; wavelets: literal",
        f"native kernel: {'loaded' if nat.get('active') else 'NOT available'}",
    ]
    if nat.get("error"):
        lines.append(f"  build error: {nat['error']}")
    for key in (
        "compiler", "cxx_flags", "cache_root", "build_dir", "ops_library", "build_seconds", "load_seconds", "built_now"
    ):
        value = nat.get(key)
        if isinstance(value, (list, tuple)):
            value = " ".join(value)
        elif isinstance(value, float):
            value = f"{value:.1f} s"
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the information as JSON")
    parser.add_argument("--no-build", action="store_true", help="do not build/load the native kernel first")


def run(args: argparse.Namespace) -> int:
    d = describe(build=not args.no_build)
    print(json.dumps(d, indent=2, default=str) if args.json else format_text(d))
    return 0
