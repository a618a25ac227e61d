"""``liftpool build``: compile the native CPU kernel ahead of time and say where it is cached.

For container images and clusters: run it once where the image is built (or once per CPU type on a
shared file system) and point ``LIFTPOOL_CACHE_DIR`` of every process at the same directory; the
cache key holds the CPU, torch and Python versions, so nodes with another CPU build their own entry
beside it.  Exits 0 with the cache location, or 1 with the reason when the kernel cannot be built.

Examples:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_arguments(parser)
    >>> parser.parse_args(["--cache-dir", "/tmp/lp"]).cache_dir
    '/tmp/lp'
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="build into this directory (sets LIFTPOOL_CACHE_DIR for the build; default: $LIFTPOOL_CACHE_DIR "
        "or ~/.cache/liftpool/native)",
    )
    parser.add_argument("--json", action="store_true", help="print the build information as JSON")


def run(args: argparse.Namespace) -> int:
    if args.cache_dir:
        os.environ["LIFTPOOL_CACHE_DIR"] = os.path.abspath(os.path.expanduser(args.cache_dir))
    from .native import _build

    try:
        _build.load_extension()
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"liftpool build: the native CPU kernel cannot be built here: {reason}", file=sys.stderr)
        print(f"liftpool build: cache directory {_build.cache_root()}", file=sys.stderr)
        return 1
    info = _build.info()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    how = (
        f"built now in {info['build_seconds']:.0f} s"
        if info["built_now"] and info["build_seconds"]
        else "already built (loaded from the cache)"
    )
    print(f"native CPU kernel ready: {how}")
    print(f"cache directory: {info['cache_root']}")
    print(f"this build: {info['build_dir']}")
    print(f"ops library (no Python; load it in C++ to run an AOTInductor package): {info['ops_library']}")
    print("share it: set LIFTPOOL_CACHE_DIR to this cache directory in every process (same CPU type, torch, Python)")
    return 0
