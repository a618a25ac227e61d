"""torch.compile (fullgraph, inductor) and ONNX export agree with eager."""

import numpy as np
import pytest
import torch
from torch import nn

from liftpool import LiftDownPool2d, LiftUpPool2d, lifting_loss


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
