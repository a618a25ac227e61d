"""torch.compile (fullgraph, inductor), ONNX export and torch.export agree with eager."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from liftpool import (
    LiftDownPool1d,
    LiftDownPool2d,
    LiftDownPool3d,
    LiftUpPool1d,
    LiftUpPool2d,
    LiftUpPool3d,
    lifting_loss,
)
from liftpool.kernels.native import _build


class EncDec(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.down = LiftDownPool2d(c, bands="LL", return_details=True)
        self.pool = LiftDownPool2d(c, 3, padding_mode="zeros")
        self.up = LiftUpPool2d(self.down)

    def forward(self, x, relu: bool = True):
        y, det = self.down(x)
        return self.up(torch.relu(y) if relu else y, det), self.pool(x)


def test_compile_fullgraph_matches_eager_forward_and_backward():
    torch.manual_seed(0)
    m = EncDec().train()
    x = torch.randn(2, 4, 11, 10, requires_grad=True)

    def loss_fn(model, inp):
        a, b = model(inp)
        return a.square().mean() + b.mean() + lifting_loss(model)

    eager = loss_fn(m, x)
    (g_eager,) = torch.autograd.grad(eager, x)
    compiled_fn = torch.compile(loss_fn, fullgraph=True)
    out = compiled_fn(m, x)
    (g_comp,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_comp, g_eager, rtol=1e-4, atol=1e-5)


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    m = EncDec().eval()
    x = torch.randn(2, 4, 9, 12)
    path = tmp_path / "liftpool.onnx"
    torch.onnx.export(m, (x, False), str(path), opset_version=18, input_names=["x"],
                      output_names=["up", "pooled"], dynamo=True)
    opset = {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""]
    assert opset >= 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    up, pooled = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref_up, ref_pooled = m(x, False)
    np.testing.assert_allclose(up, ref_up.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled, ref_pooled.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(up, x.numpy(), rtol=1e-5, atol=1e-4)  # exact inverse survives export


# ------------------------------------------------------------------ torch.export
_DOWN = {1: LiftDownPool1d, 2: LiftDownPool2d, 3: LiftDownPool3d}
_UP = {1: LiftUpPool1d, 2: LiftUpPool2d, 3: LiftUpPool3d}
_SIZES = {1: (37,), 2: (13, 10), 3: (5, 6, 7)}


class DownUp(nn.Module):
    """A LiftDownPool and its LiftUpPool: exports every layer of one dimensionality."""

    def __init__(self, dims: int, c: int = 4, relu: bool = True) -> None:
        super().__init__()
        self.down = _DOWN[dims](c, return_details=True)
        self.up = _UP[dims](self.down)
        self.relu = relu

    def forward(self, x):
        y, det = self.down(x)
        return y, self.up(torch.relu(y) if self.relu else y, det)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_export_dynamic_batch_every_layer(dims: int) -> None:
    """torch.export with a dynamic batch (1..512): LiftDownPool and LiftUpPool, any batch equals eager."""
    torch.manual_seed(dims)
    m = DownUp(dims).eval()
    x = torch.randn(3, 4, *_SIZES[dims])
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("n", min=1, max=512)},))
    for n in (1, 2, 5):
        xi = torch.randn(n, 4, *_SIZES[dims])
        with torch.no_grad():
            ref = m(xi)
        got = ep.module()(xi)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_export_pt2_save_load(tmp_path) -> None:
    """An exported LiftDownPool2d/LiftUpPool2d pair survives torch.export.save/load (.pt2) with its dynamic batch."""
    torch.manual_seed(0)
    m = DownUp(2).eval()
    x = torch.randn(2, 4, *_SIZES[2])
    ep = torch.export.export(m, (x,), dynamic_shapes=({0: torch.export.Dim("n", min=1, max=512)},))
    path = tmp_path / "liftpool.pt2"
    torch.export.save(ep, str(path))
    loaded = torch.export.load(str(path))
    xi = torch.randn(3, 4, *_SIZES[2])
    with torch.no_grad():
        ref = m(xi)
    for a, b in zip(loaded.module()(xi), ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _eager_kernel_copy(m: nn.Module) -> nn.Module:
    """``m`` with every LiftPool layer on the eager kernel (the reference of the native one)."""
    ref = copy.deepcopy(m)
    for layer in ref.modules():
        if hasattr(layer, "backend"):
            layer.backend = "eager"
    return ref


_needs_native = pytest.mark.skipif(
    _build.find_compiler() is None,
    reason="dynamic H/W export goes through the native op (no C++ compiler here to build it)",
)
#: Sizes per spatial axis the exported programs run at: 1, 2, odd and even, mixed across axes.
_RUN_SIZES = {1: [(1,), (2,), (7,), (40,)], 2: [(1, 2), (2, 1), (2, 2), (5, 8), (9, 3)],
              3: [(1, 2, 3), (2, 2, 2), (5, 4, 7)]}


def _dynamic(dims: int) -> dict[int, torch.export.Dim]:
    dyn = {0: torch.export.Dim("n", min=1, max=512)}
    for i, name in enumerate(("d", "h", "w")[3 - dims :]):
        dyn[2 + i] = torch.export.Dim(name, min=2, max=512)
    return dyn


@_needs_native
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_export_dynamic_sizes_every_layer(dims: int) -> None:
    """torch.export with dynamic N and every spatial size (2..512): LiftDownPool and LiftUpPool 1D/2D/3D;
    the exported program at sizes 1, 2, odd and even equals the eager kernel.

    No other op touches the pooled maps: an ATen op (e.g. relu) on a map of size ceil(H / 2), which is 1
    for H = 2, adds torch's own guard ceil(H / 2) != 1 (torch's MaxPool2d(2, ceil_mode=True) followed by a
    ReLU does not export with Dim(min=2) either)."""
    torch.manual_seed(dims)
    m = DownUp(dims, relu=False).eval()
    ref = _eager_kernel_copy(m)
    x = torch.randn(3, 4, *_SIZES[dims])
    ep = torch.export.export(m, (x,), dynamic_shapes=(_dynamic(dims),))
    assert any("liftpool" in str(n.target) for n in ep.graph.nodes)  # the fused op, one node per layer
    run = ep.module()
    for n, size in zip((1, 2, 3, 1, 2), _RUN_SIZES[dims]):
        xi = torch.randn(n, 4, *size)
        with torch.no_grad():
            want = ref(xi)
        for a, b in zip(run(xi), want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@_needs_native
def test_export_dynamic_sizes_pt2_save_load(tmp_path) -> None:
    """A dynamic-size export of a LiftDownPool2d/LiftUpPool2d pair saved as .pt2 and loaded runs every size."""
    torch.manual_seed(0)
    m = DownUp(2, relu=False).eval()
    ep = torch.export.export(m, (torch.randn(2, 4, 13, 10),), dynamic_shapes=(_dynamic(2),))
    path = tmp_path / "liftpool-dynamic.pt2"
    torch.export.save(ep, str(path))
    run = torch.export.load(str(path)).module()
    ref = _eager_kernel_copy(m)
    for size in _RUN_SIZES[2]:
        xi = torch.randn(2, 4, *size)
        with torch.no_grad():
            want = ref(xi)
        for a, b in zip(run(xi), want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kw", [{}, {"return_details": True}, {"kernel_size": 3, "padding_mode": "zeros"}])
def test_export_eager_kernel_dynamic_sizes_down_layers(dims: int, kw: dict) -> None:
    """The eager kernel (CUDA, grouped P/U, no C++ compiler) exports LiftDownPool 1D/2D/3D with dynamic N
    and every spatial size from 3 (pooled maps of at least 2: torch's convolution meta asks whether a
    map is 1 wide); the program at N = 1, odd and even sizes equals the layer bit for bit."""
    torch.manual_seed(dims)
    m = _DOWN[dims](4, backend="eager", **kw).eval()
    dyn = {0: torch.export.Dim("n", min=1, max=512)}
    for i, name in enumerate(("d", "h", "w")[3 - dims :]):
        dyn[2 + i] = torch.export.Dim(name, min=3, max=512)
    ep = torch.export.export(m, (torch.randn(3, 4, *_SIZES[dims]),), dynamic_shapes=(dyn,))
    run = ep.module()
    for n, size in [(1, (3,) * dims), (2, (4,) * dims), (1, (5, 3, 4)[:dims]), (3, (8, 7, 3)[:dims])]:
        xi = torch.randn(n, 4, *size)
        with torch.no_grad():
            want, got = m(xi), run(xi)
        want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            b = tuple(b) if isinstance(b, tuple) else b
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------ AOTInductor
class ConvPoolNet(nn.Module):
    """Conv -> LiftDownPool2d (details kept) -> Conv -> LiftDownPool2d, and LiftUpPool2d of the first pool."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.pool1 = LiftDownPool2d(c, return_details=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.pool2 = LiftDownPool2d(c, 3, padding_mode="zeros")
        self.up = LiftUpPool2d(self.pool1)

    def forward(self, x):
        y, det = self.pool1(torch.relu(self.conv1(x)))
        return self.pool2(torch.relu(self.conv2(y))), self.up(y, det)


def _aoti_package(m: nn.Module, x: torch.Tensor, dyn: dict, path) -> str:
    ep = torch.export.export(m, (x,), dynamic_shapes=(dyn,))
    assert any("liftpool" in str(n.target) for n in ep.graph.nodes)
    return str(torch._inductor.aoti_compile_and_package(ep, package_path=str(path)))


@_needs_native
def test_aoti_package_dynamic_sizes_in_this_and_a_fresh_process(tmp_path) -> None:
    """AOTInductor (``aoti_compile_and_package`` -> ``aoti_load_package``) of a Conv/LiftDownPool2d/
    LiftUpPool2d net with dynamic N, H and W: the compiled package equals the eager kernel at odd and even
    sizes it was not compiled for, here and in a new process that only imports liftpool (which registers
    the ops the package calls)."""
    torch.manual_seed(0)
    m = ConvPoolNet().eval()
    ref = _eager_kernel_copy(m)
    dyn = {0: torch.export.Dim("n", min=1, max=64), 2: torch.export.Dim("h", min=4, max=512),
           3: torch.export.Dim("w", min=4, max=512)}  # fmt: skip
    pkg = _aoti_package(m, torch.randn(2, 3, 16, 12), dyn, tmp_path / "net.pt2")
    run = torch._inductor.aoti_load_package(pkg)
    for shape in [(2, 3, 16, 12), (1, 3, 5, 9), (3, 3, 8, 8), (1, 3, 33, 20)]:
        xi = torch.randn(*shape)
        with torch.no_grad():
            want = ref(xi)
        got = run(xi)
        assert got[1].shape == (shape[0], 6, *shape[2:])  # LiftUpPool2d restores the odd sizes
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    xi = torch.randn(2, 3, 11, 7)
    with torch.no_grad():
        want = ref(xi)
    torch.save({"x": xi, "want": list(want)}, tmp_path / "io.pt")
    script = (
        "import sys, torch, liftpool\n"
        "d = torch.load(sys.argv[2])\n"
        "got = torch._inductor.aoti_load_package(sys.argv[1])(d['x'])\n"
        "for a, b in zip(got, d['want']):\n"
        "    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", script, pkg, str(tmp_path / "io.pt")], capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


@_needs_native
@pytest.mark.slow
def test_aoti_package_vgg13_cifar_lift_dynamic_sizes(tmp_path) -> None:
    """AOTInductor of the paper's CIFAR backbone with LiftDownPool2d in every pooling stage, dynamic N, H
    and W (32..256, so the fifth pool still sees a 2x2 map): logits equal the eager kernel's at sizes and
    parities it was not compiled for."""
    from liftpool.models import create_model

    torch.manual_seed(0)
    m = create_model("vgg13_cifar", pool="lift", width=0.25, num_classes=10).eval()
    ref = _eager_kernel_copy(m)
    dyn = {0: torch.export.Dim("n", min=1, max=64), 2: torch.export.Dim("h", min=32, max=256),
           3: torch.export.Dim("w", min=32, max=256)}  # fmt: skip
    run = torch._inductor.aoti_load_package(_aoti_package(m, torch.randn(2, 3, 32, 32), dyn, tmp_path / "vgg.pt2"))
    for shape in [(2, 3, 32, 32), (1, 3, 33, 47), (3, 3, 64, 40)]:
        xi = torch.randn(*shape)
        with torch.no_grad():
            want = ref(xi)
        torch.testing.assert_close(run(xi), want, rtol=1e-5, atol=1e-5)
