"""Evaluation loops with tiny stand-in models whose answers are known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liftpool.evaluation.runners import (
    Normalized,
    draw_shift_offsets,
    evaluate_accuracy,
    evaluate_corruptions,
    evaluate_perturbations,
    evaluate_segmentation,
    evaluate_shift_consistency,
    shifted_crops,
)


class Constant(nn.Module):
    """Ignores its input: always class 1 of 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0, 0.0]]).expand(x.shape[0], 3)


class RandomOutput(nn.Module):
    """Fresh random logits on every call: predictions independent of the input."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes
        self.gen = torch.Generator().manual_seed(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn(x.shape[0], self.classes, generator=self.gen)


class GlobalMean(nn.Module):
    """Class = which channel has the largest mean: exactly invariant to circular shifts."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _loader(
    n: int, batch: int, size: int = 16, classes: int = 3, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_accuracy_by_hand() -> None:
    data = [(torch.rand(3, 3, 8, 8), torch.tensor([1, 0, 1])), (torch.rand(1, 3, 8, 8), torch.tensor([2]))]
    r = evaluate_accuracy(Constant(), data)
    assert r.images == 4 and r.top1_error == 0.5 and r.top1_accuracy == 0.5
    assert r.top5_error == 0.0  # 3 classes: every target is in the top 5
    with pytest.raises(ValueError, match="no images"):
        evaluate_accuracy(Constant(), [])


def test_normalized_wrapper() -> None:
    seen = {}

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen["x"] = x
            return x.mean(dim=(2, 3))

    m = Normalized(Spy(), (0.5, 0.5, 0.5), (0.25, 0.5, 1.0))
    m(torch.ones(1, 3, 2, 2))
    assert torch.allclose(seen["x"][0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="std"):
        Normalized(Spy(), (0.5,), (0.0,))


def test_consistency_of_input_ignoring_model_is_one() -> None:
    r = evaluate_shift_consistency(Constant(), _loader(40, 8), max_shift=4, seed=0)
    assert r.consistency == 1.0 and r.images == 40


def test_consistency_of_random_model_is_one_over_classes() -> None:
    classes = 10
    r = evaluate_shift_consistency(
        RandomOutput(classes), _loader(3000, 500, size=8, classes=classes), max_shift=2, per_image=True
    )
    # Binomial(3000, 0.1): sd 0.0055
    assert abs(r.consistency - 1 / classes) < 0.025
    assert abs(r.shifted_accuracy - 1 / classes) < 0.025


def test_circular_shift_invariant_model_is_fully_consistent() -> None:
    r = evaluate_shift_consistency(GlobalMean(), _loader(32, 8), max_shift=5, pad_mode="circular", per_image=True)
    assert r.consistency == 1.0
    # with zero padding the mean changes with the shift: not always consistent
    r0 = evaluate_shift_consistency(GlobalMean(), _loader(200, 50), max_shift=6, pad_mode="zeros", per_image=True)
    assert r0.consistency < 1.0


def test_shift_is_reproducible_and_modes_differ() -> None:
    data = _loader(64, 16, classes=10)
    m = RandomOutput(10)
    a = evaluate_shift_consistency(m, data, max_shift=3, seed=5)
    m.gen.manual_seed(1)
    b = evaluate_shift_consistency(m, data, max_shift=3, seed=5)
    assert a == b
    g = torch.Generator().manual_seed(0)
    pa, pb = draw_shift_offsets(6, 8, 8, per_image=False, generator=g)
    assert (pa == pa[:1]).all() and (pb == pb[:1]).all()
    pa, pb = draw_shift_offsets(200, 8, 8, per_image=True, generator=g)
    assert len({tuple(r) for r in pa.tolist()}) > 1 and int(pa.min()) == 0 and int(pa.max()) == 8


def test_shifted_crops_match_roll_for_circular_padding() -> None:
    x = torch.rand(2, 3, 6, 7)
    off = torch.tensor([[0, 3], [4, 1]])
    out = shifted_crops(x, off, (6, 7), pad=2, pad_mode="circular")
    # offset o in the padded image = a shift by (o - pad)
    for i, (top, left) in enumerate(off.tolist()):
        assert torch.equal(out[i], torch.roll(x[i], shifts=(2 - top, 2 - left), dims=(1, 2)))
    with pytest.raises(ValueError, match="outside"):
        shifted_crops(x, torch.tensor([[0, 0], [5, 0]]), (6, 7), pad=2)


def test_crop_mode_and_argument_errors() -> None:
    data = _loader(8, 4, size=20)
    r = evaluate_shift_consistency(Constant(), data, crop=16, max_shift=None)
    assert r.crop == (16, 16) and r.consistency == 1.0
    with pytest.raises(ValueError, match="larger than the images"):
        evaluate_shift_consistency(Constant(), data, crop=24, max_shift=None)
    with pytest.raises(ValueError, match="max_shift"):
        evaluate_shift_consistency(Constant(), data, max_shift=-1)
    with pytest.raises(ValueError, match="pad_mode"):
        evaluate_shift_consistency(Constant(), data, pad_mode="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smaller than the image side"):
        evaluate_shift_consistency(Constant(), data, max_shift=20)
    with pytest.raises(ValueError, match="float image batches"):
        evaluate_shift_consistency(Constant(), [(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.zeros(2))])


def test_corruption_errors_of_input_ignoring_model_equal_clean_error() -> None:
    data = _loader(6, 3)
    clean = evaluate_accuracy(Constant(), data).top1_error
    errs = evaluate_corruptions(Constant(), data, corruptions=("gaussian_noise", "fog"), severities=(1, 5))
    assert errs == {"gaussian_noise": [clean, clean], "fog": [clean, clean]}
    with pytest.raises(ValueError, match="unknown corruptions"):
        evaluate_corruptions(Constant(), data, corruptions=("rain",))
    with pytest.raises(ValueError, match="severities"):
        evaluate_corruptions(Constant(), data, severities=(0,))


def test_corruption_errors_are_seeded() -> None:
    data = _loader(8, 4, classes=3)

    class Bright(nn.Module):  # class by brightness bucket: sensitive to noise
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([-(m - 0.45).abs(), -(m - 0.5).abs(), -(m - 0.55).abs()], dim=1)

    a = evaluate_corruptions(Bright(), data, corruptions=("shot_noise",), seed=3)
    b = evaluate_corruptions(Bright(), data, corruptions=("shot_noise",), seed=3)
    assert a == b and len(a["shot_noise"]) == 5


def test_corruption_cache_gives_the_same_errors_and_is_reused(tmp_path, monkeypatch) -> None:
    from liftpool.evaluation import runners

    data = _loader(10, 4, classes=3)  # batches of 4, 4, 2

    class Bright(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([-(m - 0.45).abs(), -(m - 0.5).abs(), -(m - 0.55).abs()], dim=1)

    names = ("shot_noise", "fog", "jpeg_compression")
    plain = evaluate_corruptions(Bright(), data, corruptions=names, severities=(1, 4), seed=2)
    cached = evaluate_corruptions(Bright(), data, corruptions=names, severities=(1, 4), seed=2, cache_dir=tmp_path)
    assert cached == plain
    files = sorted(p.name for p in tmp_path.rglob("*.npy"))
    assert files == sorted(f"{n}-s{s}.npy" for n in names for s in (1, 4))
    # the copies are bit-identical to new ones: a second evaluation only reads them
    batches = [x for x, _ in data]
    for n in names:
        assert torch.equal(runners.corrupted_copy(batches, n, 4, seed=2, cache_dir=tmp_path),
                           runners.corrupted_copy(batches, n, 4, seed=2))  # fmt: skip

    def no_generation(*a, **k):
        raise AssertionError("corrupted again although cached")

    monkeypatch.setattr(runners, "corrupt", no_generation)
    again = evaluate_corruptions(Bright(), data, corruptions=names, severities=(1, 4), seed=2, cache_dir=tmp_path)
    assert again == plain
    # other pixels, another seed or another batching are other keys: never a stale copy
    with pytest.raises(AssertionError, match="corrupted again"):
        evaluate_corruptions(Bright(), data, corruptions=names, severities=(1, 4), seed=3, cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="corrupted again"):
        evaluate_corruptions(Bright(), _loader(10, 5, classes=3), corruptions=names, severities=(1,), seed=2,
                             cache_dir=tmp_path)  # fmt: skip


def test_flip_rates() -> None:
    data = _loader(4, 2)
    fr = evaluate_perturbations(Constant(), data, perturbations=("translate", "gaussian_noise"), frames=4)
    assert fr == {"translate": 0.0, "gaussian_noise": 0.0}
    fr = evaluate_perturbations(RandomOutput(4), _loader(60, 30), perturbations=("rotate",), frames=5)
    assert abs(fr["rotate"] - 0.75) < 0.1  # independent predictions flip with prob 1 - 1/4
    with pytest.raises(ValueError, match="unknown perturbations"):
        evaluate_perturbations(Constant(), data, perturbations=("wobble",))


class LabelReader(nn.Module):
    """Reads the class encoded in channel 0 (value = class / 10): a perfect segmenter."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.register_buffer("c", torch.arange(classes, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x[:, :1] * 10 - self.c) ** 2)


def test_segmentation_perfect_and_void() -> None:
    labels = torch.tensor([[[0, 1, 2, 2], [1, 1, 0, 2]]])
    images = torch.zeros(1, 3, 2, 4)
    images[:, 0] = labels.float() / 10
    void = labels.clone()
    void[0, 0, 0] = 255
    s = evaluate_segmentation(LabelReader(3), [(images, void)], num_classes=3, ignore_index=255)
    assert s.miou == 1.0 and s.pixel_accuracy == 1.0
    # a wrong pixel: class 2 predicted as 0 at one place
    images[0, 0, 1, 3] = 0.0
    s = evaluate_segmentation(LabelReader(3), [(images, labels)], num_classes=3, ignore_index=None)
    # class 0: TP 2, FP 1 -> 2/3; class 1: 1; class 2: TP 2, FN 1 -> 2/3
    assert s.iou == pytest.approx([2 / 3, 1.0, 2 / 3])
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        evaluate_segmentation(LabelReader(3), [(images, labels)], num_classes=4)
