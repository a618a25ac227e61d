"""Metrics against hand computations on tiny cases."""

from __future__ import annotations

import math

import pytest
import torch

from liftpool.evaluation.corruptions import ALL_CORRUPTIONS, CORRUPTIONS
from liftpool.evaluation.metrics import (
    ALEXNET_ERR,
    ConfusionMatrix,
    corruption_summary,
    flip_rate,
    perturbation_summary,
    shift_consistency,
    topk_correct,
)


def test_topk_by_hand() -> None:
    logits = torch.tensor([[0.1, 0.5, 0.3, 0.0], [0.9, 0.0, 0.05, 0.05], [0.2, 0.1, 0.3, 0.4]])
    targets = torch.tensor([2, 0, 0])
    # ranks of the targets: 2nd, 1st, 3rd
    assert topk_correct(logits, targets, ks=(1, 2, 3, 5)) == {1: 1, 2: 2, 3: 3, 5: 3}
    assert topk_correct(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)) == {1: 0, 5: 0}
    with pytest.raises(ValueError, match="targets"):
        topk_correct(logits, torch.tensor([1]))
    with pytest.raises(ValueError, match="logits"):
        topk_correct(torch.zeros(3), targets)


def test_shift_consistency_and_flip_rate_by_hand() -> None:
    assert shift_consistency(torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 1, 0, 0, 4])) == 0.6
    with pytest.raises(ValueError):
        shift_consistency(torch.tensor([0, 1]), torch.tensor([0]))
    preds = torch.tensor([[1, 1, 2, 2, 1], [0, 3, 0, 0, 0]])
    # consecutive: seq0 flips at 1->2 and 2->1: 2/4; seq1: 0->3, 3->0: 2/4
    assert flip_rate(preds, reference="consecutive") == 0.5
    # vs first: seq0 frames 2, 3 differ from 1: 2/4; seq1: only frame 1: 1/4
    assert flip_rate(preds, reference="first") == pytest.approx(0.375)
    with pytest.raises(ValueError, match="frames >= 2"):
        flip_rate(torch.tensor([[1], [2]]), reference="first")
    with pytest.raises(ValueError, match="reference"):
        flip_rate(preds, reference="last")  # type: ignore[arg-type]


def test_corruption_summary_by_hand() -> None:
    errors = {"gaussian_noise": [0.2, 0.4, 0.6, 0.8, 1.0], "fog": [0.1, 0.1, 0.1, 0.1, 0.1], "saturate": [0.5] * 5}
    s = corruption_summary(errors, clean_error=0.1)
    assert s.ce == pytest.approx({"gaussian_noise": 0.6, "fog": 0.1, "saturate": 0.5})
    assert s.mce == pytest.approx((0.6 + 0.1) / 2)  # the 15 benchmark corruptions only
    assert s.mce_extra == pytest.approx(0.5)
    assert s.ce_normalized["gaussian_noise"] == pytest.approx(0.6 / 0.886428)
    assert s.mce_normalized == pytest.approx((0.6 / 0.886428 + 0.1 / 0.819324) / 2)
    assert s.relative_ce == pytest.approx({"gaussian_noise": 0.5, "fog": 0.0, "saturate": 0.4})
    assert s.relative_mce == pytest.approx(0.25)
    assert s.relative_ce_normalized is None  # no baseline clean error
    assert "AlexNet" in s.baseline

    # a custom per-severity baseline with a clean error: sum ratios
    base = {"fog": [0.2, 0.2, 0.3, 0.3, 0.5]}
    s2 = corruption_summary(
        {"fog": [0.1, 0.2, 0.3, 0.4, 0.5]},
        clean_error=0.05,
        baseline=base,
        baseline_name="max",
        baseline_clean_error=0.1,
    )
    assert s2.ce_normalized["fog"] == pytest.approx(1.5 / 1.5)
    assert s2.relative_ce_normalized["fog"] == pytest.approx((1.5 - 5 * 0.05) / (1.5 - 5 * 0.1))
    assert s2.baseline == "max"
    s3 = corruption_summary({"fog": [0.3]}, baseline={})
    assert s3.ce_normalized is None and s3.baseline is None and s3.relative_ce is None


def test_corruption_summary_errors() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        corruption_summary({})
    with pytest.raises(ValueError, match="fractions"):
        corruption_summary({"fog": [1.5]})
    with pytest.raises(ValueError, match="clean_error"):
        corruption_summary({"fog": [0.5]}, clean_error=2.0)
    with pytest.raises(ValueError, match="severities"):
        corruption_summary({"fog": [0.5, 0.5]}, baseline={"fog": [0.5]})


def test_alexnet_constants_cover_all_corruptions() -> None:
    assert set(ALEXNET_ERR) == set(ALL_CORRUPTIONS)
    # published mCE normalisation: AlexNet's own mCE is 100 %
    s = corruption_summary({c: [ALEXNET_ERR[c]] * 5 for c in CORRUPTIONS})
    assert s.mce_normalized == pytest.approx(1.0)


def test_perturbation_summary() -> None:
    s = perturbation_summary({"translate": 0.2, "rotate": 0.4})
    assert s.mfr == pytest.approx(0.3) and s.fr_normalized is None and s.baseline is None
    s = perturbation_summary(
        {"translate": 0.2, "rotate": 0.4}, baseline={"translate": 0.4, "rotate": 0.4}, baseline_name="max"
    )
    assert s.fr_normalized == pytest.approx({"translate": 0.5, "rotate": 1.0}) and s.mfr_normalized == pytest.approx(
        0.75
    )


def test_confusion_matrix_miou_by_hand() -> None:
    # 3 classes, void = 255
    target = torch.tensor([[0, 0, 1, 255], [2, 2, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 1]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred[:1], target[:1])  # accumulate over two "batches"
    cm.update(pred[1:], target[1:])
    s = cm.compute()
    # labelled pixels: (t,p) = (0,0) (0,1) (1,1) (2,2) (2,0) (1,1)
    # class 0: TP 1, FP 1 (the (2,0)), FN 1 (the (0,1)) -> 1/3
    # class 1: TP 2, FP 1 (the (0,1)), FN 0 -> 2/3
    # class 2: TP 1, FP 0, FN 1 -> 1/2
    assert s.iou == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert s.miou == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert s.pixel_accuracy == pytest.approx(4 / 6)
    assert s.mean_class_accuracy == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert s.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # the void-predicted pixels did not count even though pred says 2 and 1 there
    assert sum(map(sum, s.confusion)) == 6


def test_confusion_matrix_absent_class_and_logits() -> None:
    cm = ConfusionMatrix(3)
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 0, 0, 0] = 1.0
    logits[0, 1, 0, 1] = 1.0
    cm.update(logits, torch.tensor([[[0, 1]]]))
    s = cm.compute()
    assert s.iou[:2] == [1.0, 1.0] and math.isnan(s.iou[2]) and s.miou == 1.0


def test_confusion_matrix_errors() -> None:
    cm = ConfusionMatrix(2, ignore_index=255)
    with pytest.raises(ValueError, match="outside 0..1"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="same shape"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="empty"):
        ConfusionMatrix(2, ignore_index=0).compute()
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    cm.update(torch.tensor([1, 1]), torch.tensor([255, 255]))
    with pytest.raises(ValueError, match="empty"):
        cm.compute()
