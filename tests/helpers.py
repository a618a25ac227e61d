"""Small shared test utilities (importable as ``helpers``; tests/ is on pytest's pythonpath)."""

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (the absolute error for an all-zero reference)."""
    scale = b.abs().max().item() if b.numel() else 0.0
    diff = (a - b).abs().max().item() if b.numel() else 0.0
    return diff / scale if scale > 0 else diff
