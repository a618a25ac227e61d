"""Running metrics that can be summed over batches and over DDP ranks.

Examples:
    >>> import torch
    >>> cm = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 255]), 3, ignore_index=255)
    >>> cm.tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    >>> r = segmentation_scores(cm)
    >>> round(r["pixel_acc"], 4), round(r["miou"], 4)
    (0.6667, 0.5)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "segmentation_scores", "topk_correct"]


def topk_correct(logits: Tensor, target: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Number of samples whose target is among the top-``k`` logits, for each ``k``
    (``k`` larger than the number of classes counts every sample).

    Examples:
        >>> topk_correct(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.2]]), torch.tensor([1, 2]), (1, 2))
        [1, 2]
    """
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, C) and target (N,), got {tuple(logits.shape)} and {tuple(target.shape)}")
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top == target[:, None]
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """``(C, C)`` int64 counts, rows = true class, columns = predicted; ``ignore_index`` pixels are skipped."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    pred, target = pred.reshape(-1), target.reshape(-1)
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    idx = target[keep].long() * num_classes + pred[keep].long().clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(cm: Tensor) -> dict[str, float]:
    """Pixel accuracy, mean class accuracy and mIoU (mean over classes that occur in
    the labels or the predictions; ``nan`` when there are no labelled pixels)."""
    cm = cm.double()
    tp = cm.diag()
    gt, pr = cm.sum(1), cm.sum(0)
    union = gt + pr - tp
    total = cm.sum()
    iou = tp[union > 0] / union[union > 0]
    acc_c = tp[gt > 0] / gt[gt > 0]
    nan = float("nan")
    return {
        "pixel_acc": float(tp.sum() / total) if total > 0 else nan,
        "mean_acc": float(acc_c.mean()) if acc_c.numel() else nan,
        "miou": float(iou.mean()) if iou.numel() else nan,
    }
