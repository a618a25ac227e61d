import logging

import pytest
import timm
import torch
import torchvision
from torch import nn

from liftpool import LiftDownPool2d, lifting_loss
from liftpool.convert import (
    ConversionReport,
    PooledConv2d,
    SizeMatchedPool2d,
    TimmLiftDownPool2d,
    compare_outputs,
    convert,
)
from liftpool.pooling import AvgDownPool2d, BlurPool2d
from liftpool.studies.conversion import measure_init, random_images, recalibrate_batchnorm


def lift_param_keys(model: nn.Module) -> set[str]:
    """State-dict keys that belong to LiftDownPool2d layers (an independent walk of the module tree)."""
    keys = set()
    for path, m in model.named_modules():
        if isinstance(m, LiftDownPool2d):
            keys |= {f"{path}.{k}" if path else k for k in m.state_dict()}
    return keys


def lift_param_count(model: nn.Module) -> int:
    # per LiftDownPool2d(C, K=5): P and U each have C*K + C (K-tap conv) + C + C (1x1 conv) weights
    return sum(
        2 * (m.channels * m.kernel_size + 3 * m.channels) for m in model.modules() if isinstance(m, LiftDownPool2d)
    )


def tv(name):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).eval()


EXPECTED = {
    # name: (paths replaced without strided_conv, number replaced with strided_conv)
    "resnet18": (["maxpool"], 7),
    "resnet50": (["maxpool"], 7),
    "mobilenet_v2": ([], 4),
    "vgg13_bn": (["features.6", "features.13", "features.20", "features.27", "features.34"], 5),
}


@pytest.mark.parametrize(
    "name,strided", [(n, s) for n in EXPECTED for s in (False, True) if (n, s) != ("vgg13_bn", True)]
)
def test_torchvision_conversion(name, strided):
    model = tv(name)
    conv, report = convert(model, strided_conv=strided, return_report=True)
    paths, n_strided = EXPECTED[name]
    if strided:
        assert len(report.replaced) == n_strided
    else:
        assert [r.path for r in report.replaced] == paths
    # the original is untouched (inplace=False)
    assert not any(isinstance(m, LiftDownPool2d) for m in model.modules())
    # added-parameter count: report == independent count == difference of the two models
    n_new = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in model.parameters())
    assert report.added_parameters == lift_param_count(conv) == n_new
    # a pretrained state_dict loads with only the LiftPool keys missing
    missing, unexpected = conv.load_state_dict(model.state_dict(), strict=False)
    assert unexpected == []
    assert set(missing) == lift_param_keys(conv)
    assert len(missing) == 8 * len(report.replaced)  # 4 tensors per P/U, one shared P/U pair per layer
    sd = conv.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(sd[k], v), k
    # output shapes unchanged, also on odd sizes
    conv.eval()
    with torch.no_grad():
        for size in [(64, 64), (65, 63), (37, 50)]:
            x = torch.randn(1, 3, *size)
            assert conv(x).shape == model(x).shape


def test_resnet18_strided_report_paths_and_placement():
    conv, report = convert(tv("resnet18"), strided_conv=True, return_report=True)
    assert [r.path for r in report.replaced] == [
        "maxpool",
        "layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv1", "layer3.0.downsample.0",
        "layer4.0.conv1", "layer4.0.downsample.0",
    ]
    assert ("conv1", "the stem convolution (keep_stem=True)") in report.skipped
    c = conv.layer2[0].conv1
    assert isinstance(c, PooledConv2d) and not c.pool_first and c.pool.channels == 128 and c.stride == (1, 1)
    d = conv.layer2[0].downsample[0]
    assert isinstance(d, PooledConv2d) and d.pool_first and d.pool.channels == 64  # pooled before the 1x1 conv
    assert "layer2.0.conv1" in str(report) and "+" in str(report)
    assert isinstance(report, ConversionReport)


def test_mobilenet_v2_strided_paths_and_stem():
    conv, report = convert(tv("mobilenet_v2"), strided_conv=True, return_report=True)
    assert [r.path for r in report.replaced] == [
        "features.2.conv.1.0", "features.4.conv.1.0", "features.7.conv.1.0", "features.14.conv.1.0"
    ]
    assert [m.pool.channels for m in conv.modules() if isinstance(m, PooledConv2d)] == [96, 144, 192, 576]
    _, rep2 = convert(tv("mobilenet_v2"), strided_conv=True, keep_stem=False, return_report=True)
    assert rep2.replaced[0].path == "features.0.0"
    _, rep3 = convert(tv("mobilenet_v2"), return_report=True)
    assert rep3.replaced == () and rep3.added_parameters == 0


@pytest.mark.parametrize(
    "name,strided,n", [("resnet50", False, 1), ("resnet50", True, 7), ("efficientnet_b0", True, 4)]
)
def test_timm_conversion(name, strided, n):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    conv, report = convert(model, strided_conv=strided, return_report=True)
    assert len(report.replaced) == n
    missing, unexpected = conv.load_state_dict(model.state_dict(), strict=False)
    assert unexpected == [] and set(missing) == lift_param_keys(conv)
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        assert conv.eval()(x).shape == model(x).shape == (1, 1000)
        x = torch.randn(1, 3, 67, 61)
        assert conv.forward_features(x).shape == model.forward_features(x).shape


def test_timm_efficientnet_has_no_pools():
    model = timm.create_model("efficientnet_b0", pretrained=False)
    _, report = convert(model, return_report=True)
    assert report.replaced == ()
    _, report = convert(model, strided_conv=True, return_report=True)
    assert ("conv_stem", "the stem convolution (keep_stem=True)") in report.skipped


def test_timm_aa_layer():
    """timm calls aa_layer(channels=C, stride=2): after each strided stage and in the stem."""
    model = timm.create_model("resnet50", pretrained=False, aa_layer=LiftDownPool2d)
    lifts = [(n, m.channels) for n, m in model.named_modules() if isinstance(m, LiftDownPool2d)]
    assert lifts == [("maxpool.1", 64), ("layer2.0.aa", 128), ("layer3.0.aa", 256), ("layer4.0.aa", 512)]
    assert model.layer2[0].conv2.stride == (1, 1)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 1000)
    assert lifting_loss(model).item() > 0
    model.eval()
    assert model(torch.randn(1, 3, 65, 63)).shape == (1, 1000)


def test_timm_aa_layer_dilated():
    with pytest.raises(ValueError, match="always pools by 2"):
        timm.create_model("resnet50", pretrained=False, aa_layer=LiftDownPool2d, output_stride=16)
    model = timm.create_model("resnet50", pretrained=False, aa_layer=TimmLiftDownPool2d, output_stride=16).eval()
    assert sum(isinstance(m, LiftDownPool2d) for m in model.modules()) == 3
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 2048, 4, 4)


def test_init_match_is_average_pooling_exactly():
    torch.manual_seed(0)
    model = tv("resnet18")
    avg = convert(model, pool="avg", strided_conv=True).eval()
    match = convert(model, init="match", strided_conv=True).eval()
    x = torch.randn(2, 3, 64, 61)
    with torch.no_grad():
        torch.testing.assert_close(match(x), avg(x), rtol=1e-4, atol=1e-5)
    lifts = [m for m in match.modules() if isinstance(m, LiftDownPool2d)]
    assert lifts and all(m.scale == 0.25 and m.zero_init for m in lifts)
    paper = convert(model).maxpool
    assert paper.scale == 1.0 and not paper.zero_init
    # the "match" layer still learns: P/U get gradients
    match.train()
    match(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for m in lifts for p in m.parameters())
    # the zero-initialised 1x1 stage gets a non-zero gradient at once
    assert all(m.transforms[0].P[0].pw_weight.grad.abs().sum() > 0 for m in lifts)
    assert all(m.transforms[0].U[0].pw_weight.grad.abs().sum() > 0 for m in lifts)


def test_compare_outputs():
    model = tv("resnet18")
    same = compare_outputs(model, model, torch.randn(2, 3, 32, 32))
    assert same == (0.0, 0.0, 1.0)
    conv = convert(model).eval()
    d = compare_outputs(model, conv, torch.randn(2, 3, 32, 32))
    assert d.rel_l2 > 0 and 0 <= d.top1_agreement <= 1
    with pytest.raises(ValueError, match="output shapes differ"):
        compare_outputs(nn.Identity(), nn.Flatten(), torch.randn(1, 2, 3))


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("k,p", [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (4, 1), (4, 2), (5, 2)])
def test_pool_shapes_match_torch(k, p, ceil_mode):
    """Oracle: torch's own output size of the replaced MaxPool2d/AvgPool2d, for every small n."""
    for cls in (nn.MaxPool2d, nn.AvgPool2d):
        model = nn.Sequential(nn.Conv2d(2, 3, 1), cls(k, 2, p, ceil_mode=ceil_mode))
        conv = convert(model, kernel_size=3)
        assert isinstance(conv[1], (LiftDownPool2d, SizeMatchedPool2d))
        for h in range(max(1, k - 2 * p), 12):
            w = h + 3
            x = torch.randn(1, 2, h, w)
            assert conv(x).shape == model(x).shape, (cls, k, p, ceil_mode, h, w)


@pytest.mark.parametrize(
    "k,p,d", [(1, 0, 1), (3, 1, 1), (3, 0, 1), (4, 1, 1), (5, 2, 1), (3, 2, 2), (7, 3, 1), (2, 0, 1)]
)
def test_pooled_conv_shapes(k, p, d):
    for groups in (1, 4):
        model = nn.Sequential(nn.Conv2d(4, 8, k, stride=2, padding=p, dilation=d, groups=groups))
        conv = convert(model, strided_conv=True, keep_stem=False, kernel_size=3)
        pc = conv[0]
        assert isinstance(pc, PooledConv2d) and pc.pool_first == (k == 1 and p == 0)
        torch.testing.assert_close(pc.weight, model[0].weight)
        for n in range(max(1, d * (k - 1) + 1 - 2 * p), 14):
            x = torch.randn(1, 4, n, n + 1)
            assert conv(x).shape == model(x).shape, (k, p, d, n)


def test_inplace_shares_tensors():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    w = model[0].weight
    out = convert(model, strided_conv=True, keep_stem=False, inplace=True)
    assert out is model and isinstance(model[2], SizeMatchedPool2d) and model[0].weight is w
    # converting again finds nothing left to convert
    _, report = convert(model, strided_conv=True, keep_stem=False, return_report=True)
    assert report.replaced == ()


def test_other_pools_and_kwargs():
    model = tv("resnet18")
    conv, report = convert(model, pool="blur", strided_conv=True, return_report=True)
    assert isinstance(conv.maxpool, BlurPool2d) and report.added_parameters == 0
    conv = convert(model, bands=("LL",), kernel_size=3, pool_kwargs={"share_weights": False, "lambda_p": 0.5})
    m = conv.maxpool
    assert m.bands == ("LL",) and m.kernel_size == 3 and not m.share_weights and m.lambda_p == 0.5
    conv = convert(model, pool="avg")
    assert isinstance(conv.maxpool, AvgDownPool2d)


def test_exclude_targets_and_training_mode():
    model = tv("vgg13_bn")
    conv, report = convert(model, exclude=("features.3?",), return_report=True)
    assert [r.path for r in report.replaced] == ["features.6", "features.13", "features.20", "features.27"]
    assert ("features.34", "excluded") in report.skipped
    assert all(not m.training for m in conv.modules())  # eval-mode model gives eval-mode layers
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2), nn.AvgPool2d(2), nn.MaxPool2d(3, 1, 1))
    conv, report = convert(model, targets=("avgpool",), return_report=True)
    assert [r.path for r in report.replaced] == ["2"] and isinstance(conv[1], nn.MaxPool2d)
    _, report = convert(model, return_report=True)
    assert [r.path for r in report.replaced] == ["1", "2"]
    assert ("3", "stride (1, 1) is not 2") in report.skipped
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2, return_indices=True))
    _, report = convert(model, return_report=True)
    assert report.replaced == () and "return_indices" in report.skipped[0][1]


class Concat(nn.Module):
    """Channel count after a concatenation cannot be read off the module tree: the probe finds it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 5, 3, padding=1)
        self.b = nn.Conv2d(3, 7, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)

    def forward(self, x):
        return self.pool(torch.cat([self.a(x), self.b(x)], 1))


class NeedsRealData(Concat):
    def forward(self, x):
        if float(x.abs().sum()) < 0:  # a data-dependent branch: fails on the meta device
            raise RuntimeError
        return super().forward(x)


@pytest.mark.parametrize("cls", [Concat, NeedsRealData])
def test_channel_probe(cls):
    conv = convert(cls(), example_input=(1, 3, 16, 16))
    assert isinstance(conv.pool, LiftDownPool2d) and conv.pool.channels == 12
    assert conv(torch.randn(2, 3, 9, 9)).shape == (2, 12, 5, 5)
    conv = convert(cls(), example_input=torch.randn(1, 3, 8, 8))
    assert conv.pool.channels == 12


def test_unreached_pool_is_skipped():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.spare = nn.MaxPool2d(2)

        def forward(self, x):
            return self.conv(x)

    conv, report = convert(Unused(), return_report=True)
    assert report.replaced == () and report.skipped[0][0] == "spare"
    assert isinstance(conv.spare, nn.MaxPool2d)


def test_report_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="liftpool.convert"):
        convert(nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2)))
    assert "converted 1 module(s)" in caplog.text and "1: MaxPool2d" in caplog.text


def test_errors():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        convert("resnet")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pool must be one of"):
        convert(model, pool="lifty")
    with pytest.raises(ValueError, match="targets must be a subset"):
        convert(model, targets=("maxpool", "conv"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nothing to convert"):
        convert(model, targets=())
    with pytest.raises(ValueError, match="init must be one of"):
        convert(model, init="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="init='match' only applies to pool='lift'"):
        convert(model, pool="avg", init="match")
    with pytest.raises(ValueError, match="bands only applies"):
        convert(model, pool="avg", bands="LL")
    with pytest.raises(TypeError, match="pool_kwargs must be a mapping"):
        convert(model, pool_kwargs=[1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="example_input must be"):
        convert(model, example_input="big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown band name"):
        convert(model, bands=("LX",))


def test_converted_model_trains():
    model = torchvision.models.resnet18(weights=None, num_classes=3)
    conv = convert(model, strided_conv=True)
    conv.train()
    opt = torch.optim.SGD(conv.parameters(), lr=0.01)
    loss = nn.functional.cross_entropy(conv(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2])) + lifting_loss(conv)
    assert lifting_loss(conv).item() > 0
    loss.backward()
    opt.step()


def test_recalibrate_batchnorm_matches_batch_statistics():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=0.3), nn.ReLU()).eval()
    batches = [torch.randn(5, 3, 8, 8) * (i + 1) + i for i in range(3)]
    out = recalibrate_batchnorm(net, batches)
    assert out is net and not net.training and net[1].momentum == 0.3
    with torch.no_grad():
        feats = [net[0](b) for b in batches]
    # cumulative average of the per-batch statistics (what momentum=None computes)
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(net[1].running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[1].running_var, var, rtol=1e-5, atol=1e-5)
    assert int(net[1].num_batches_tracked) == 3
    with pytest.raises(ValueError, match="batches is empty"):
        recalibrate_batchnorm(net, [])


def test_random_images():
    a = random_images(3, 24, generator=torch.Generator().manual_seed(1))
    b = random_images(3, 24, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 24, 24) and torch.equal(a, b)
    torch.testing.assert_close(a.mean(dim=(2, 3)), torch.zeros(3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.std(dim=(2, 3)), torch.ones(3, 3), atol=1e-5, rtol=0)
    # smoother than white noise: neighbouring pixels are strongly correlated
    corr = torch.corrcoef(torch.stack([a[..., :, :-1].flatten(), a[..., :, 1:].flatten()]))[0, 1]
    assert corr > 0.5


def test_measure_init_rows():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    calib = [random_images(4, 16) for _ in range(2)]
    rows = measure_init("tiny", net, calib, random_images(6, 16),
                        {"paper": {"init": "paper"}, "match": {"init": "match"}, "avg": {"pool": "avg"}})
    by = {r.setting: r for r in rows}
    assert all(r.replaced == 1 and r.model == "tiny" for r in rows)
    # match starts as exactly average pooling
    assert by["match"].rel_l2 == pytest.approx(by["avg"].rel_l2, rel=1e-4)
    assert by["match"].layer_rel_l2 == pytest.approx(by["avg"].layer_rel_l2, rel=1e-4)
    assert by["paper"].layer_rel_l2 > 2 * by["match"].layer_rel_l2  # the plain 4-band sum is ~4x larger


def test_measure_cli_writes_table_and_plot(tmp_path):
    from liftpool.studies.conversion import main

    out, png = tmp_path / "t.md", tmp_path / "t.png"
    assert main(["--models", "resnet18", "--size", "32", "--batch", "2", "--calib-batches", "1",
                 "--out", str(out), "--png", str(png)]) == 0
    text = out.read_text()
    assert text.count("| resnet18 |") == 10 and "lift, init=match, strided_conv" in text
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cifar_study_on_generated_imagefolder(tmp_path):
    from PIL import Image

    from liftpool.studies.conversion import cifar_study

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 8), ("test", 3)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = (torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.png")
    acc0, rows = cifar_study(str(tmp_path), width=0.0625, per_class=8, test_per_class=3, epochs=1, batch=8,
                             settings={"max (unchanged)": {"pool": "max", "targets": ()}, "match": {"init": "match"}})
    assert 0 <= acc0 <= 1
    assert [r.setting for r in rows] == ["max (unchanged)", "match", "match, strided_conv"]
    assert rows[0].rel_l2 == 0 and rows[0].top1_agreement == 1 and rows[0].acc_start == acc0
    assert rows[1].replaced == 1 and rows[2].replaced == 7


def test_placement_study_on_generated_imagefolder(tmp_path):
    from PIL import Image

    from liftpool.studies.conversion import placement_study

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 8), ("test", 2)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray((torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()).save(
                    tmp_path / split / c / f"{i}.png")
    rows = placement_study(str(tmp_path), width=0.0625, per_class=8, test_per_class=2, epochs=1, batch=8, seeds=(0, 1))
    assert [r.lift_layers for r in rows] == [0, 7, 7]
    assert all(len(r.accuracies) == 2 and all(0 <= a <= 1 for a in r.accuracies) for r in rows)


def test_convert_warns_when_it_replaces_nothing():
    class ConvOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            return self.down(self.stem(x))

    with pytest.warns(UserWarning, match=r"replaced nothing in ConvOnly\..*strided_conv=True"):
        same, report = convert(ConvOnly(), return_report=True)
    assert report.replaced == () and isinstance(same.down, nn.Conv2d) and same.down.stride == (2, 2)
    assert ("down", "strided convolution (strided_conv=False)") in report.skipped
    # with the suggested option it does replace, and does not warn
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, report = convert(ConvOnly(), strided_conv=True, return_report=True)
    assert [r.path for r in report.replaced] == ["down"]


def test_convert_warning_without_hint_when_strided_conv_is_on():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 1, 1))
    with pytest.warns(UserWarning, match="replaced nothing in Sequential") as rec:
        convert(net, strided_conv=True)
    assert "pass strided_conv=True" not in str(rec[0].message)


def test_report_lists_layers_convert_does_not_handle():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # strided conv, strided_conv=False
            self.max = nn.MaxPool2d(2)  # replaced
            self.avg = nn.AvgPool2d(2)  # not in targets
            self.max_s1 = nn.MaxPool2d(3, 1, 1)  # a stride-1 candidate: reported by its stride
            self.avg_s1 = nn.AvgPool2d(3, 1, 1)  # stride 1 and not a target: not down-sampling, not listed
            self.other = nn.ModuleDict({  # down-sampling layers convert does not handle (unused in forward)
                "max3d": nn.MaxPool3d(2), "avg1d": nn.AvgPool1d(2), "lp": nn.LPPool2d(2, 2),
                "frac": nn.FractionalMaxPool2d(2, output_ratio=0.5),
            })

        def forward(self, x):
            return self.avg_s1(self.max_s1(self.avg(self.max(self.conv(x)))))

    _, report = convert(Mixed(), targets=("maxpool",), return_report=True)
    assert [r.path for r in report.replaced] == ["max"]
    why = dict(report.skipped)
    assert why["conv"] == "strided convolution (strided_conv=False)"
    assert why["avg"] == "avgpool is not in targets=('maxpool',)"
    for key, name in (
        ("max3d", "MaxPool3d"),
        ("avg1d", "AvgPool1d"),
        ("lp", "LPPool2d"),
        ("frac", "FractionalMaxPool2d"),
    ):
        assert why[f"other.{key}"].startswith(f"{name} is not handled"), (key, why[f"other.{key}"])
    assert why["max_s1"] == "stride (1, 1) is not 2"
    assert "avg_s1" not in why
    assert "skipped other.max3d: MaxPool3d is not handled" in str(report)
