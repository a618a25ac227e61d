"""Training: the ``liftpool train`` command, presets, checkpoints and the training loop.

:func:`load_model` rebuilds a trained model from a checkpoint (format in
:mod:`liftpool.training.checkpoint`); :mod:`liftpool.training.cli` is the command.
"""

from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint

__all__ = ["CheckpointError", "load_checkpoint", "load_model", "save_checkpoint"]
