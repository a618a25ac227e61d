"""Experiments built on the library: ``bench``, ``reproduce``, ``demo`` and the conversion studies.

Each module is a ``liftpool`` subcommand (``add_arguments(parser)`` / ``run(args)``) or has its own
``main``; nothing here is imported by ``import liftpool``.
"""
