"""The constraint losses c_u, c_p and ``lifting_loss`` over a model."""

import numpy as np
import pytest
import torch
from torch import nn

from liftpool import LiftDownPool1d, LiftDownPool2d, lifting_loss


def _haar_step(x: np.ndarray, axis: int):
    xe = np.take(x, np.arange(0, x.shape[axis], 2), axis=axis)
    xo = np.take(x, np.arange(1, x.shape[axis], 2), axis=axis)
    d = xo - xe
    s = xe + d / 2
    return s, d, np.mean((s - xo) ** 2), np.mean(d**2)


def test_constraints_match_hand_computation_haar_2d():
    x = np.random.randn(2, 3, 4, 6)
    s, d, cu1, cp1 = _haar_step(x, 3)
    _, _, cu2, cp2 = _haar_step(s, 2)
    _, _, cu3, cp3 = _haar_step(d, 2)
    layer = LiftDownPool2d.from_wavelet("haar", 3).double().train()
    layer(torch.tensor(x))
    c = layer.constraints
    np.testing.assert_allclose(float(c.c_u), cu1 + cu2 + cu3, rtol=1e-12)
    np.testing.assert_allclose(float(c.c_p), cp1 + cp2 + cp3, rtol=1e-12)
    np.testing.assert_allclose(
        float(lifting_loss(layer)), 0.01 * (cu1 + cu2 + cu3) + 0.1 * (cp1 + cp2 + cp3), rtol=1e-12
    )


def test_constraints_match_hand_computation_learned_1d():
    layer = LiftDownPool1d(2, 3, lambda_u=0.5, lambda_p=2.0).double().train()
    x = torch.randn(1, 2, 6, dtype=torch.float64)
    layer(x)
    P, U = layer.transforms[0].P[0], layer.transforms[0].U[0]
    # independent evaluation of P/U: torch conv1d with reflect padding of 1
    def f(m, t):
        tp = torch.nn.functional.pad(t, (1, 1), mode="reflect")
        h = torch.relu(torch.nn.functional.conv1d(tp, m.weight, m.bias, groups=2))
        return torch.tanh(h * m.pw_weight.view(1, 2, 1) + m.pw_bias.view(1, 2, 1))
    xe, xo = x[..., 0::2], x[..., 1::2]
    d = xo - f(P, xe)
    s = xe + f(U, d)
    want = 0.5 * ((s - xo) ** 2).mean() + 2.0 * (d**2).mean()
    torch.testing.assert_close(lifting_loss(layer), want, rtol=1e-12, atol=0)


def test_lifting_loss_sums_layers_and_ignores_eval():
    net = nn.Sequential(LiftDownPool2d(2), nn.Conv2d(2, 2, 1), LiftDownPool2d(2, lambda_u=0.0))
    assert float(lifting_loss(net)) == 0.0
    net.eval()
    net(torch.randn(1, 2, 8, 8))
    assert net[0].constraints is None  # eval forwards record nothing
    net.train()
    net(torch.randn(1, 2, 8, 8))
    want = net[0].lifting_loss() + 0.1 * net[2].constraints.c_p
    torch.testing.assert_close(lifting_loss(net), want)
    lifting_loss(net).backward()
    assert net[0].transforms[0].P[0].weight.grad is not None


def test_lifting_loss_type_error():
    with pytest.raises(TypeError, match="nn.Module"):
        lifting_loss(torch.zeros(1))


def test_lifting_loss_inside_torch_compile():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), LiftDownPool2d(4), nn.ReLU(), LiftDownPool2d(4)).train()

    def step(x):
        out = net(x)
        return out.mean() + lifting_loss(net)

    x = torch.randn(2, 3, 12, 12)
    eager = step(x)
    compiled = torch.compile(step, fullgraph=True, backend="eager")(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
