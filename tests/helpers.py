"""Small shared test utilities (importable as ``helpers``; tests/ is on pytest's pythonpath)."""

from collections.abc import Iterator

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (the absolute error for an all-zero reference)."""
    scale = b.abs().max().item() if b.numel() else 0.0
    diff = (a - b).abs().max().item() if b.numel() else 0.0
    return diff / scale if scale > 0 else diff


def window_taps(x: torch.Tensor, k: int) -> Iterator[tuple[int, int, list[int], list[int]]]:
    """Yield ``(i, j, rows, cols)`` for every output position of a stride-2 pool with a ``k``-wide
    window (``(k - 1) // 2`` taps before the centre): the inside rows and columns of each window."""
    H, W = x.shape[-2:]
    left = (k - 1) // 2
    for i in range((H + 1) // 2):
        for j in range((W + 1) // 2):
            rows = [r for r in range(2 * i - left, 2 * i - left + k) if 0 <= r < H]
            cols = [c for c in range(2 * j - left, 2 * j - left + k) if 0 <= c < W]
            yield i, j, rows, cols
