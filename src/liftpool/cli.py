"""The ``liftpool`` command line: ``liftpool {demo,train,eval,bench,info,build,reproduce} ...``.

Each subcommand lives in its own module, which provides ``add_arguments(parser)``
and ``run(args) -> int``; modules are imported only when their subcommand runs,
so ``liftpool demo`` does not import the training stack.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "liftpool.studies.demo",
        "pool a picture with Max/Avg/LiftDownPool, show the sub-bands and the up-pooling",
    ),
    "train": ("liftpool.training.cli", "train a classifier or a segmentation network (CPU, GPU, torchrun DDP)"),
    "eval": ("liftpool.evaluation.cli", "accuracy, shift consistency, corruption robustness, mIoU, figures"),
    "bench": ("liftpool.studies.bench", "speed and memory of LiftPool against the poolings it replaces"),
    "info": ("liftpool.kernels.info", "which kernel (native C++ / eager) runs the layers, its build flags and cache"),
    "build": (
        "liftpool.kernels.prebuild",
        "compile the native CPU kernel ahead of time (containers, clusters) and print where it is cached",
    ),
    "reproduce": ("liftpool.studies.reproduce", "rerun the paper-claim experiments of docs/results.md"),
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="liftpool", description="LiftPool: bidirectional ConvNet pooling.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"liftpool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (_, help_) in COMMANDS.items():
        subparsers[name] = sub.add_parser(name, help=help_, description=help_)
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = build_parser()
    if not argv or argv[0] not in COMMANDS:
        # let argparse print usage / --help / --version / the unknown-command error
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(COMMANDS[name][0])
    module.add_arguments(subparsers[name])
    args = parser.parse_args(argv)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
