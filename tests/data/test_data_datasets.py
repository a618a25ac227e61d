"""Datasets, the checks before training, per-sample seeding and the samplers."""

import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from liftpool.data import (
    IGNORE_INDEX,
    CachedImageLoader,
    CamVid,
    EpochDistributedSampler,
    LabelStats,
    SeededDataset,
    ShardSampler,
    build_datasets,
    check_segmentation_labels,
    make_camvid,
    make_imagefolder,
    make_voc,
    sample_seed,
)


# ----------------------------------------------------------------------------- ImageFolder
def test_imagefolder_auto_augment_and_val_split(tmp_path):
    small = make_imagefolder(tmp_path / "s", classes=2, per_class=2, val_per_class=1, size=16, splits=("train", "test"))
    d = build_datasets("imagefolder", small)
    assert d.info["augment"] == "cifar" and d.info["val_split"] == "test" and d.info["image_size"] == 16
    assert d.train[0][0].shape == (3, 16, 16) and d.train[0][1] == 0
    big = make_imagefolder(tmp_path / "b", classes=2, per_class=1, val_per_class=1, size=80)
    d = build_datasets("imagefolder", big, image_size=40)
    assert d.info["augment"] == "imagenet" and d.info["val_split"] == "val" and d.info["val_resize"] == 46
    assert d.val[0][0].shape == (3, 40, 40)
    assert d.info["mean"] == [0.485, 0.456, 0.406]


def test_cached_image_loader_returns_the_decoded_pixels_and_decodes_once(tmp_path):
    root = make_imagefolder(tmp_path / "c", classes=2, per_class=3, val_per_class=1, size=12, splits=("train", "test"))
    files = sorted((root / "train").rglob("*.*"))
    loader = CachedImageLoader()
    for _ in range(2):
        for f in files:
            with Image.open(f) as im:
                want = np.asarray(im.convert("RGB"))
            got = loader(f)
            assert got.mode == "RGB" and np.array_equal(np.asarray(got), want)
    assert (loader.misses, loader.hits, len(loader)) == (len(files), len(files), len(files))
    assert loader.nbytes == len(files) * 12 * 12 * 3
    # a cached image handed out is a copy: changing it leaves the cache alone
    img = loader(files[0])
    img.paste((0, 0, 0), (0, 0, 12, 12))
    with Image.open(files[0]) as im:
        assert np.array_equal(np.asarray(loader(files[0])), np.asarray(im.convert("RGB")))
    with pytest.raises(FileNotFoundError):
        loader(tmp_path / "missing.jpg")


def test_build_datasets_cache_images_gives_the_same_batches(tmp_path):
    root = make_imagefolder(tmp_path / "c", classes=2, per_class=4, val_per_class=2, size=16, splits=("train", "test"))
    plain = build_datasets("imagefolder", root)
    cached = build_datasets("imagefolder", root, cache_images=True)
    assert isinstance(cached.train.loader, CachedImageLoader) and not isinstance(plain.train.loader, CachedImageLoader)
    for epoch in range(2):  # the second pass reads from the cache
        for i in range(len(plain.train)):
            torch.manual_seed(100 * epoch + i)  # the same random crop/flip for both
            a, ya = plain.train[i]
            torch.manual_seed(100 * epoch + i)
            b, yb = cached.train[i]
            assert ya == yb and torch.equal(a, b)
    assert cached.train.loader.hits == len(plain.train) and cached.train.loader.misses == len(plain.train)
    with pytest.raises(ValueError, match="cache_images applies to the imagefolder dataset"):
        build_datasets("camvid", make_camvid(tmp_path / "cv"), cache_images=True)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_datasets("imagefolder", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        build_datasets("imagefolder", tmp_path / "empty")
    (tmp_path / "nocls" / "train").mkdir(parents=True)
    (tmp_path / "nocls" / "val").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folders"):
        build_datasets("imagefolder", tmp_path / "nocls")
    root = make_imagefolder(tmp_path / "ok", classes=3, per_class=1, val_per_class=1, size=8)
    with pytest.raises(ValueError, match="num_classes=2 .* 3 classes"):
        build_datasets("imagefolder", root, num_classes=2)
    with pytest.raises(FileNotFoundError, match="sub-folders present"):
        build_datasets("imagefolder", root, val_split="nope")
    # a class missing from the validation split would silently shift label indices
    for f in (root / "val" / "class1").iterdir():
        f.unlink()
    (root / "val" / "class1").rmdir()
    with pytest.raises(ValueError, match="different classes"):
        build_datasets("imagefolder", root)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_datasets("mnist", root)
    with pytest.raises(ValueError, match="only for segmentation"):
        build_datasets("imagefolder", root, class_weighting="median_freq")


def test_cifar_missing_points_to_download(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="--download"):
        build_datasets("cifar10", tmp_path)


# ----------------------------------------------------------------------------- CamVid / VOC
def test_camvid_reads_pairs_and_maps_void_to_ignore(tmp_path):
    root = make_camvid(tmp_path, sizes={"train": 3, "val": 2})
    ds = CamVid(root, "train")
    img, lbl = ds[1]
    raw = np.asarray(Image.open(root / "trainannot" / "img001.png"))
    expect = np.where(raw == 11, IGNORE_INDEX, raw)
    assert np.array_equal(np.asarray(lbl), expect) and img.size == (32, 24)
    d = build_datasets("camvid", root, crop_size=(16, 16), scale_range=(0.75, 1.25))
    x, y = d.train[0]
    assert x.shape == (3, 16, 16) and y.shape == (16, 16)
    assert set(y.unique().tolist()) <= set(range(11)) | {IGNORE_INDEX}
    assert d.info["ignore_index"] == IGNORE_INDEX and d.info["num_classes"] == 11 and d.info["val_split"] == "val"
    assert d.val[0][1].shape == (24, 32)  # val: full image when no crop for val


def test_camvid_layout_errors(tmp_path):
    root = make_camvid(tmp_path, sizes={"train": 2})
    with pytest.raises(FileNotFoundError, match=r"splits present: \['train'\]"):
        CamVid(root, "val")
    (root / "val.txt").write_text("")
    with pytest.raises(ValueError, match="lists no images"):
        CamVid(root, "val")
    (root / "val.txt").write_text("train/img000.png trainannot/nothere.png\n")
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        CamVid(root, "val")
    (root / "val.txt").write_text("just-one-column\n")
    with pytest.raises(ValueError, match="expected 'image label'"):
        CamVid(root, "val")


def test_out_of_range_label_is_reported_with_its_file(tmp_path):
    root = make_camvid(tmp_path, sizes={"train": 2, "val": 2})
    lbl = np.asarray(Image.open(root / "valannot" / "img001.png")).copy()
    lbl[3, 3] = 13
    Image.fromarray(lbl).save(root / "valannot" / "img001.png")
    with pytest.raises(ValueError, match=r"valannot/img001.png.*\[13\]"):
        build_datasets("camvid", root)
    build_datasets("camvid", root, check_labels=False)  # the scan can be skipped


def test_label_stats_and_median_frequency_by_hand(tmp_path):
    a = np.array([[0, 0], [1, 255]], np.uint8)
    b = np.array([[1, 1], [1, 1]], np.uint8)
    for name, arr in (("a.png", a), ("b.png", b)):
        Image.fromarray(arr).save(tmp_path / name)
    s = check_segmentation_labels([tmp_path / "a.png", tmp_path / "b.png"], 3)
    assert s.counts.tolist() == [2, 5, 0]
    assert s.present_pixels.tolist() == [4, 8, 0]
    # f = [0.5, 0.625, -]; median = 0.5625
    np.testing.assert_allclose(s.median_frequency_weights(), [0.5625 / 0.5, 0.5625 / 0.625, 0.0])
    assert isinstance(s, LabelStats)
    with pytest.raises(ValueError, match=r"\[1\]"):
        check_segmentation_labels([tmp_path / "a.png"], 1)


def test_voc_layout(tmp_path):
    root = make_voc(tmp_path, sizes={"train": 3, "val": 2})
    d = build_datasets("voc", root, crop_size=(32, 32), scale_range=(0.5, 2.0))
    assert d.info["num_classes"] == 21 and d.info["class_names"][0] == "background"
    xs, ys = zip(*(d.val[i] for i in range(2)))
    assert {tuple(x.shape) for x in xs} == {(3, 32, 32)}  # differently sized images batch
    assert all(((y < 21) | (y == 255)).all() for y in ys)
    with pytest.raises(FileNotFoundError, match="VOC 2012 not found"):
        build_datasets("voc", tmp_path / "VOCdevkit")
    with pytest.raises(ValueError, match="only available for"):
        build_datasets("camvid", root, download=True)


# ----------------------------------------------------------------------------- seeding
class _Noise(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return torch.rand(3), random.random(), i


def test_seeded_dataset_depends_only_on_seed_epoch_index():
    ds = SeededDataset(_Noise(), seed=3)
    a = ds[(1, 4)]
    torch.manual_seed(123)
    random.seed(9)
    before = (torch.get_rng_state(), random.getstate())
    b = ds[(1, 4)]
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert torch.equal(before[0], torch.get_rng_state()) and before[1] == random.getstate(), (
        "caller RNG must be restored"
    )
    assert not torch.equal(ds[(2, 4)][0], a[0]) and not torch.equal(ds[(1, 5)][0], a[0])
    assert not torch.equal(SeededDataset(_Noise(), seed=4)[(1, 4)][0], a[0])
    assert ds[7][2] == 7  # plain keys pass through
    assert sample_seed(0, 1, 2) != sample_seed(0, 2, 1) and 0 <= sample_seed(9, 9, 9) < 2**63


def test_batches_do_not_depend_on_num_workers(tmp_path):
    root = make_imagefolder(tmp_path, classes=2, per_class=6, val_per_class=1, size=12)
    ds = SeededDataset(build_datasets("imagefolder", root).train, seed=0)

    def batches(workers):
        s = EpochDistributedSampler(ds, num_replicas=1, rank=0, seed=0)
        s.set_epoch(2)
        return [b[0] for b in DataLoader(ds, batch_size=4, sampler=s, num_workers=workers)]

    for x0, x2 in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x0, x2)


@pytest.mark.parametrize("n,world,per_rank", [(24, 2, 3), (20, 4, 1), (17, 2, 2)])
def test_rank_batches_partition_the_single_process_batches(n, world, per_rank):
    single = EpochDistributedSampler(range(n), num_replicas=1, rank=0, seed=5)
    ref = DistributedSampler(range(n), num_replicas=1, rank=0, seed=5)
    for s in (single, ref):
        s.set_epoch(3)
    keys = list(single)
    assert [i for _, i in keys] == list(ref) and {e for e, _ in keys} == {3}
    ranks = []
    for r in range(world):
        s = EpochDistributedSampler(range(n), num_replicas=world, rank=r, seed=5)
        s.set_epoch(3)
        ranks.append(list(s))
    glob = per_rank * world
    for k in range(len(ranks[0]) // per_rank):
        union = sorted(key for r in range(world) for key in ranks[r][k * per_rank : (k + 1) * per_rank])
        assert union == sorted(keys[k * glob : (k + 1) * glob])


def test_shard_sampler_covers_everything_once():
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0)).tolist()
    for o in (None, order):
        shards = [list(ShardSampler(11, r, 3, order=o)) for r in range(3)]
        assert sorted(sum(shards, [])) == list(range(11))
        assert [len(ShardSampler(11, r, 3)) for r in range(3)] == [len(s) for s in shards]
    with pytest.raises(ValueError):
        ShardSampler(5, 3, 2)
    with pytest.raises(ValueError, match="permutation"):
        ShardSampler(3, order=[0, 0, 1])
