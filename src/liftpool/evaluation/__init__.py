"""Evaluation of trained models: accuracy, shift consistency, corruption robustness
(ImageNet-C style CE/mCE), perturbation stability (ImageNet-P style FR/mFR) and
segmentation mIoU, plus the ``liftpool eval`` command (:mod:`liftpool.evaluation.cli`).

* :mod:`~liftpool.evaluation.corruptions` - the 19 corruptions, 5 severities, any image size;
* :mod:`~liftpool.evaluation.perturbations` - perturbation sequences for flip rates;
* :mod:`~liftpool.evaluation.metrics` - the arithmetic (top-k, consistency, CE, FR, mIoU);
* :mod:`~liftpool.evaluation.runners` - loops running a model over a loader;
* :mod:`~liftpool.evaluation.pipeline` - several models -> JSON + Markdown + figures.
"""

from .corruptions import ALL_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt, severity_parameters
from .metrics import (
    ALEXNET_ERR,
    ConfusionMatrix,
    CorruptionSummary,
    PerturbationSummary,
    SegmentationScores,
    corruption_summary,
    flip_rate,
    perturbation_summary,
    shift_consistency,
    topk_correct,
)
from .perturbations import PERTURBATIONS, perturbation_sequence
from .pipeline import EvalOptions, ModelEntry, evaluate_models, raw_eval_dataset
from .runners import (
    AccuracyResult,
    Normalized,
    ShiftResult,
    evaluate_accuracy,
    evaluate_corruptions,
    evaluate_perturbations,
    evaluate_segmentation,
    evaluate_shift_consistency,
)

__all__ = [
    "ALEXNET_ERR",
    "ALL_CORRUPTIONS",
    "AccuracyResult",
    "CORRUPTIONS",
    "ConfusionMatrix",
    "CorruptionSummary",
    "EXTRA_CORRUPTIONS",
    "EvalOptions",
    "ModelEntry",
    "Normalized",
    "PERTURBATIONS",
    "PerturbationSummary",
    "SegmentationScores",
    "ShiftResult",
    "corrupt",
    "corruption_summary",
    "evaluate_accuracy",
    "evaluate_corruptions",
    "evaluate_models",
    "evaluate_perturbations",
    "evaluate_segmentation",
    "evaluate_shift_consistency",
    "flip_rate",
    "perturbation_sequence",
    "perturbation_summary",
    "raw_eval_dataset",
    "severity_parameters",
    "shift_consistency",
    "topk_correct",
]
