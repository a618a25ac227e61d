"""Transforms: exact values of the deterministic parts, alignment of joint transforms."""

import numpy as np
import pytest
import torch
from PIL import Image

from liftpool.data.transforms import (
    IGNORE_INDEX,
    JointPad,
    JointRandomScale,
    classification_transform,
    default_val_resize,
    segmentation_transform,
)

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_val_transform_is_to_tensor_and_normalise():
    arr = _img(32, 32)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x = classification_transform("cifar", train=False, image_size=32, mean=mean, std=std)(Image.fromarray(arr))
    expect = (torch.from_numpy(arr).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(
        std
    )[:, None, None]
    torch.testing.assert_close(x, expect, rtol=0, atol=1e-6)


def test_cifar_train_is_a_shifted_window_of_the_padded_image_maybe_flipped():
    arr = _img(32, 32, 1)
    t = classification_transform("cifar", train=True, image_size=32, mean=ZERO, std=ONE)
    padded = np.pad(arr, ((4, 4), (4, 4), (0, 0)))
    seen_flip = set()
    for s in range(12):
        torch.manual_seed(s)
        x = (t(Image.fromarray(arr)) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        matches = [
            (dy, dx, f)
            for f in (False, True)
            for dy in range(9)
            for dx in range(9)
            if np.array_equal((padded[:, ::-1] if f else padded)[dy : dy + 32, dx : dx + 32], x)
        ]
        assert matches, "output is not a 32x32 window of the zero-padded (flipped) image"
        seen_flip.add(matches[0][2])
    assert seen_flip == {False, True}


def test_imagenet_transforms_sizes():
    img = Image.fromarray(_img(60, 90))
    tr = classification_transform("imagenet", train=True, image_size=48, mean=ZERO, std=ONE)
    va = classification_transform("imagenet", train=False, image_size=48, mean=ZERO, std=ONE)
    assert tr(img).shape == va(img).shape == (3, 48, 48)
    assert default_val_resize("imagenet", 224) == 256 and default_val_resize("cifar", 32) == 32


@pytest.mark.parametrize("bad", [dict(augment="foo"), dict(image_size=0), dict(std=(1, 0, 1)), dict(mean=(0, 0))])
def test_classification_transform_rejects_bad_arguments(bad):
    kw = dict(augment="cifar", train=True, image_size=32, mean=ZERO, std=ONE) | bad
    with pytest.raises(ValueError):
        classification_transform(kw.pop("augment"), **kw)


def _encoded_pair(h, w, seed=0):
    """Image whose red channel is 10 * label (+ noise in the other channels)."""
    rng = np.random.default_rng(seed)
    lbl = rng.integers(0, 20, (h, w), dtype=np.uint8)
    img = np.stack([lbl * 10, rng.integers(0, 256, (h, w)), rng.integers(0, 256, (h, w))], -1).astype(np.uint8)
    return Image.fromarray(img), Image.fromarray(lbl)


def test_joint_crop_flip_keep_image_and_label_aligned_and_pad_with_ignore():
    img, lbl = _encoded_pair(20, 27)
    t = segmentation_transform(train=True, crop_size=(24, 24), mean=ZERO, std=ONE)
    for s in range(10):
        torch.manual_seed(s)
        x, y = t(img, lbl)
        assert x.shape == (3, 24, 24) and y.shape == (24, 24) and y.dtype == torch.int64
        red = (x[0] * 255).round().long()
        pad = y == IGNORE_INDEX
        assert pad.any(), "20 rows < 24: the bottom must be padded"
        assert torch.equal(red[~pad], y[~pad] * 10)
        assert torch.all(x[:, pad] == 0)


def test_joint_random_scale_uses_nearest_for_labels():
    img, lbl = _encoded_pair(16, 16)
    values = set(np.unique(np.asarray(lbl)).tolist())
    torch.manual_seed(0)
    for _ in range(5):
        i2, l2 = JointRandomScale((0.5, 2.0))(img, lbl)
        assert i2.size == l2.size
        assert set(np.unique(np.asarray(l2)).tolist()) <= values
    with pytest.raises(ValueError, match="scale_range"):
        JointRandomScale((2.0, 1.0))


def test_segmentation_val_pad_and_centre_crop_or_full_image():
    img, lbl = _encoded_pair(10, 14)
    x, y = segmentation_transform(train=False, crop_size=(12, 12), mean=ZERO, std=ONE)(img, lbl)
    assert x.shape == (3, 12, 12) and (y == IGNORE_INDEX).any()
    x, y = segmentation_transform(train=False, crop_size=None, mean=ZERO, std=ONE)(img, lbl)
    assert y.shape == (10, 14) and torch.equal(y, torch.from_numpy(np.array(lbl)).long())
    i2, l2 = JointPad((4, 4))(img, lbl)
    assert i2.size == img.size  # never crops


def test_label_size_mismatch_is_an_error():
    img, _ = _encoded_pair(10, 14)
    with pytest.raises(ValueError, match="label size"):
        segmentation_transform(train=False, crop_size=None, mean=ZERO, std=ONE)(
            img, Image.fromarray(np.zeros((9, 14), np.uint8))
        )
