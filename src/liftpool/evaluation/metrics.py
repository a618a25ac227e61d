"""Metrics: top-k error, shift consistency, corruption error (CE/mCE), flip rate (FR/mFR), mIoU.

Everything here is plain arithmetic on predictions, so it is exact and testable by hand;
the loops that run a model over data live in :mod:`liftpool.evaluation.runners`.

Corruption error (Hendrycks & Dietterich 2019, Sec. 4): with ``E[s, c]`` the top-1 error
under corruption ``c`` at severity ``s = 1..5``,

* unnormalised ``CE_c = mean_s E[s, c]`` (the reference code's "CE (unnormalized)");
* normalised ``CE_c = sum_s E[s, c] / sum_s E_AlexNet[s, c]`` (the paper's CE), which is
  ``mean_s E[s, c] / ALEXNET_ERR[c]`` because :data:`ALEXNET_ERR` holds AlexNet's errors
  averaged over the 5 severities;
* relative ``rCE_c = sum_s (E[s, c] - E_clean) / sum_s (E_base[s, c] - E_base_clean)``; without
  a baseline clean error only the unnormalised ``mean_s (E[s, c] - E_clean)`` is reported;
* ``mCE`` = mean of ``CE_c`` over the 15 benchmark corruptions (the 4 extra ones are averaged
  separately as ``mce_extra``).

Examples:
    >>> import torch
    >>> shift_consistency(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4]))
    0.75
    >>> flip_rate(torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]]), reference="consecutive")
    0.16666666666666666
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS

__all__ = [
    "ALEXNET_ERR",
    "ALEXNET_ERR_SOURCE",
    "ConfusionMatrix",
    "CorruptionSummary",
    "PerturbationSummary",
    "SegmentationScores",
    "corruption_summary",
    "flip_rate",
    "perturbation_summary",
    "shift_consistency",
    "topk_correct",
]

#: AlexNet's top-1 error on ImageNet-C per corruption, averaged over the 5 severities, as
#: published with Hendrycks & Dietterich's reference code (the mCE spreadsheet linked from
#: github.com/hendrycks/robustness, "Calculating the mCE"; reproduced as ``ALEXNET_ERR`` in
#: github.com/google-research/augmix ``imagenet.py``).  Only meaningful for ImageNet-C-like
#: evaluation at 224x224 with ImageNet classes.
ALEXNET_ERR: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
    "speckle_noise": 0.845388,
    "gaussian_blur": 0.787108,
    "spatter": 0.717512,
    "saturate": 0.658248,
}
ALEXNET_ERR_SOURCE = (
    "AlexNet ImageNet-C top-1 errors (mean over 5 severities) from Hendrycks & Dietterich (ICLR 2019), "
    "mCE spreadsheet of github.com/hendrycks/robustness (as ALEXNET_ERR in google-research/augmix imagenet.py)"
)


def topk_correct(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, int]:
    """Number of samples whose target is among the ``k`` highest logits, for each ``k``.

    ``k`` larger than the number of classes counts every sample as correct.

    Examples:
        >>> import torch
        >>> topk_correct(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]), torch.tensor([1, 2]), ks=(1, 2))
        {1: 1, 2: 1}
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (N, num_classes), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must be (N,) = ({logits.shape[0]},), got {tuple(targets.shape)}")
    out: dict[int, int] = {}
    if logits.shape[0] == 0:
        return {int(k): 0 for k in ks}
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top == targets.unsqueeze(1)
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        out[int(k)] = int(hit[:, : min(k, kmax)].any(dim=1).sum())
    return out


def shift_consistency(pred_a: Tensor, pred_b: Tensor) -> float:
    """Fraction of images whose top-1 class agrees under two shifts (Zhang 2019)."""
    if pred_a.shape != pred_b.shape or pred_a.dim() != 1:
        raise ValueError(
            f"pred_a and pred_b must be 1-D of equal length, got {tuple(pred_a.shape)}, {tuple(pred_b.shape)}"
        )
    if pred_a.numel() == 0:
        raise ValueError("shift_consistency needs at least one image")
    return float((pred_a == pred_b).double().mean())


def flip_rate(predictions: Tensor, *, reference: Literal["first", "consecutive"]) -> float:
    """Flip probability of top-1 predictions over perturbation sequences (ImageNet-P's FP).

    Args:
        predictions: ``(num_sequences, frames)`` top-1 classes, ``frames >= 2``.
        reference: ``"consecutive"`` compares frame ``t`` with ``t-1`` (geometric, blur,
            brightness, ... sequences); ``"first"`` compares every frame with frame 0 (noise
            sequences, whose frames are independent noise draws).

    Returns:
        mean over sequences of the fraction of compared pairs whose prediction differs.
    """
    if predictions.dim() != 2 or predictions.shape[1] < 2 or predictions.shape[0] == 0:
        raise ValueError(f"predictions must be (num_sequences >= 1, frames >= 2), got {tuple(predictions.shape)}")
    if reference == "consecutive":
        flips = predictions[:, 1:] != predictions[:, :-1]
    elif reference == "first":
        flips = predictions[:, 1:] != predictions[:, :1]
    else:
        raise ValueError(f"reference must be 'first' or 'consecutive', got {reference!r}")
    return float(flips.double().mean(dim=1).mean())


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


class CorruptionSummary(NamedTuple):
    """CE per corruption and their means; ``None`` where the needed input was not given.

    ``ce`` is unnormalised (mean top-1 error over severities); ``ce_normalized`` is divided
    by ``baseline``'s errors (AlexNet's published ImageNet-C errors by default).
    """

    errors: dict[str, list[float]]
    ce: dict[str, float]
    mce: float | None
    mce_extra: float | None
    ce_normalized: dict[str, float] | None
    mce_normalized: float | None
    relative_ce: dict[str, float] | None
    relative_mce: float | None
    relative_ce_normalized: dict[str, float] | None
    relative_mce_normalized: float | None
    clean_error: float | None
    baseline: str | None


def corruption_summary(
    errors: Mapping[str, Sequence[float]],
    *,
    clean_error: float | None = None,
    baseline: Mapping[str, float | Sequence[float]] | None = None,
    baseline_name: str = "AlexNet (Hendrycks & Dietterich 2019)",
    baseline_clean_error: float | None = None,
) -> CorruptionSummary:
    """CE / mCE / relative mCE from top-1 errors per corruption and severity.

    Args:
        errors: corruption name -> top-1 errors (fractions in [0, 1]) at the severities evaluated
            (normally 5).
        clean_error: top-1 error on clean data; enables relative CE.
        baseline: corruption -> the baseline's mean error over severities (a float) or its
            per-severity errors (a list of the same length); default :data:`ALEXNET_ERR`.
            Pass ``{}`` to skip normalisation.
        baseline_name: label written next to normalised numbers.
        baseline_clean_error: the baseline's clean error; enables normalised relative CE.

    Examples:
        >>> s = corruption_summary({"fog": [0.1, 0.2, 0.3, 0.4, 0.5]}, clean_error=0.05)
        >>> round(s.ce["fog"], 6), round(s.ce_normalized["fog"], 6), round(s.relative_ce["fog"], 6)
        (0.3, 0.366156, 0.25)
    """
    if not isinstance(errors, Mapping) or not errors:
        raise ValueError("errors must be a non-empty mapping corruption -> list of errors")
    base = ALEXNET_ERR if baseline is None else baseline
    errs: dict[str, list[float]] = {}
    for name, vals in errors.items():
        vals = [float(v) for v in vals]
        if not vals or any(not (0.0 <= v <= 1.0) or math.isnan(v) for v in vals):
            raise ValueError(f"errors[{name!r}] must be a non-empty list of fractions in [0, 1], got {vals}")
        errs[name] = vals
    for what, v in (("clean_error", clean_error), ("baseline_clean_error", baseline_clean_error)):
        if v is not None and not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{what} must be a fraction in [0, 1], got {v}")
    ce = {n: sum(v) / len(v) for n, v in errs.items()}

    def base_mean(name: str) -> float | None:
        b = base.get(name)
        if b is None:
            return None
        if isinstance(b, (int, float)):
            return float(b)
        b = [float(x) for x in b]
        if len(b) != len(errs[name]):
            raise ValueError(f"baseline[{name!r}] has {len(b)} severities, errors have {len(errs[name])}")
        return sum(b) / len(b)

    ce_norm: dict[str, float] | None = None
    if base:
        ce_norm = {}
        for n in errs:
            bm = base_mean(n)
            if bm is not None and bm > 0:
                ce_norm[n] = ce[n] / bm
    rel = rel_norm = None
    if clean_error is not None:
        rel = {n: ce[n] - float(clean_error) for n in errs}
        if baseline_clean_error is not None and base:
            rel_norm = {}
            for n in errs:
                bm = base_mean(n)
                if bm is not None and bm - baseline_clean_error > 0:
                    rel_norm[n] = rel[n] / (bm - float(baseline_clean_error))

    def means(d: Mapping[str, float] | None, names: Sequence[str]) -> float | None:
        return None if d is None else _mean([d[n] for n in names if n in d])

    main = [n for n in CORRUPTIONS if n in errs] or list(errs)
    extra = [n for n in EXTRA_CORRUPTIONS if n in errs]
    return CorruptionSummary(
        errors=errs,
        ce=ce,
        mce=means(ce, main),
        mce_extra=means(ce, extra),
        ce_normalized=ce_norm or None,
        mce_normalized=means(ce_norm, main) if ce_norm else None,
        relative_ce=rel,
        relative_mce=means(rel, main),
        relative_ce_normalized=rel_norm or None,
        relative_mce_normalized=means(rel_norm, main) if rel_norm else None,
        clean_error=None if clean_error is None else float(clean_error),
        baseline=baseline_name if (base and ce_norm) else None,
    )


class PerturbationSummary(NamedTuple):
    """Flip rate per perturbation type and their mean (raw: no AlexNet normalisation)."""

    fr: dict[str, float]
    mfr: float | None
    fr_normalized: dict[str, float] | None
    mfr_normalized: float | None
    baseline: str | None


def perturbation_summary(
    flip_rates: Mapping[str, float], *, baseline: Mapping[str, float] | None = None, baseline_name: str | None = None
) -> PerturbationSummary:
    """mFR = mean flip rate over types; normalised by ``baseline`` FRs when given.

    No AlexNet ImageNet-P constants are shipped (see docs/evaluation.md): pass a baseline
    model's flip rates (e.g. the MaxPool network's) to normalise.

    Examples:
        >>> perturbation_summary({"translate": 0.2, "gaussian_noise": 0.1}).mfr
        0.15000000000000002
    """
    if not flip_rates:
        raise ValueError("flip_rates must be a non-empty mapping perturbation -> flip rate")
    fr = {k: float(v) for k, v in flip_rates.items()}
    norm = None
    if baseline:
        norm = {k: fr[k] / float(baseline[k]) for k in fr if k in baseline and float(baseline[k]) > 0}
    return PerturbationSummary(
        fr=fr,
        mfr=_mean(list(fr.values())),
        fr_normalized=norm or None,
        mfr_normalized=_mean(list(norm.values())) if norm else None,
        baseline=baseline_name if norm else None,
    )


class SegmentationScores(NamedTuple):
    """Confusion-matrix scores; ``iou[c]`` is NaN for a class absent from both prediction and
    ground truth (it is left out of ``miou``)."""

    iou: list[float]
    miou: float
    pixel_accuracy: float
    mean_class_accuracy: float
    frequency_weighted_iou: float
    confusion: list[list[int]]


class ConfusionMatrix:
    """Accumulates a ``num_classes x num_classes`` confusion matrix (rows: ground truth,
    columns: prediction) over batches; pixels labelled ``ignore_index`` (void) are skipped.

    Ground-truth labels outside ``0..num_classes-1`` that are not ``ignore_index`` raise
    ``ValueError`` (a wrong ``ignore_index`` would otherwise silently bias the scores).

    Examples:
        >>> import torch
        >>> cm = ConfusionMatrix(2, ignore_index=255)
        >>> cm.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 255]]))
        >>> s = cm.compute()
        >>> s.iou, s.miou, round(s.pixel_accuracy, 4)
        ([0.5, 0.5], 0.5, 0.6667)
    """

    def __init__(
        self, num_classes: int, *, ignore_index: int | None = None, device: torch.device | str | None = None
    ) -> None:
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if ignore_index is not None and not isinstance(ignore_index, int):
            raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """Add a batch: ``prediction`` is class indices ``(N, H, W)`` or logits ``(N, C, H, W)``."""
        if prediction.dim() == target.dim() + 1 and prediction.is_floating_point():
            if prediction.shape[1] != self.num_classes:
                raise ValueError(f"logits have {prediction.shape[1]} classes, the matrix has {self.num_classes}")
            prediction = prediction.argmax(dim=1)
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must have the same shape"
            )
        if prediction.is_floating_point() or target.is_floating_point():
            raise TypeError("prediction and target must hold integer class indices (or pass logits (N, C, H, W))")
        pred = prediction.reshape(-1).to(self.matrix.device, torch.int64)
        tgt = target.reshape(-1).to(self.matrix.device, torch.int64)
        keep = tgt != self.ignore_index if self.ignore_index is not None else torch.ones_like(tgt, dtype=torch.bool)
        pred, tgt = pred[keep], tgt[keep]
        if tgt.numel() and (tgt.min() < 0 or tgt.max() >= self.num_classes):
            bad = torch.unique(tgt[(tgt < 0) | (tgt >= self.num_classes)])[:5].tolist()
            raise ValueError(
                f"target labels {bad} are outside 0..{self.num_classes - 1} and not ignore_index={self.ignore_index}"
            )
        if pred.numel() and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise ValueError(f"predicted classes must lie in 0..{self.num_classes - 1}")
        idx = tgt * self.num_classes + pred
        self.matrix += torch.bincount(idx, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def compute(self) -> SegmentationScores:
        """Per-class IoU = TP / (TP + FP + FN), mIoU, pixel accuracy and friends."""
        m = self.matrix.double().cpu()
        total = m.sum()
        if total == 0:
            raise ValueError("the confusion matrix is empty: no labelled (non-void) pixel was seen")
        tp = m.diag()
        gt = m.sum(dim=1)
        pr = m.sum(dim=0)
        union = gt + pr - tp
        iou = torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        present = ~torch.isnan(iou)
        acc = torch.where(gt > 0, tp / gt.clamp_min(1), torch.full_like(tp, float("nan")))
        freq = gt / total
        return SegmentationScores(
            iou=[float(v) for v in iou],
            miou=float(iou[present].mean()),
            pixel_accuracy=float(tp.sum() / total),
            mean_class_accuracy=float(acc[~torch.isnan(acc)].mean()),
            frequency_weighted_iou=float((freq[present] * iou[present]).sum()),
            confusion=[[int(v) for v in row] for row in self.matrix.cpu().tolist()],
        )
