"""The defining property of each pooling peer against its literal definition, written
independently of the implementation: per-window Python loops (SoftPool, LIP), explicit
polyphase slicing and per-sample norms (APS), an ``nn.Conv2d`` scoring network (LPS), explicit
placement loops (APS-U, LPU), and the shift results the APS and LPS papers prove."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from liftpool.pooling import AvgDownPool2d, MaxDownPool2d, make_pool, make_updown
from liftpool.pooling.peers import (
    APSPool2d,
    LIPPool2d,
    LPSPool2d,
    PolyphaseDetails2d,
    lip2d,
    polyphase_upsample,
    softpool2d,
)

from helpers import window_taps

SIZES = [(1, 1), (2, 3), (5, 5), (6, 7), (8, 8)]


# --------------------------------------------------------------------------- SoftPool
def softpool_literal(x: torch.Tensor, k: int) -> torch.Tensor:
    """sum_i e^{a_i} a_i / sum_j e^{a_j} over each window, one window at a time (Python floats)."""
    N, C, H, W = x.shape
    out = torch.zeros(N, C, (H + 1) // 2, (W + 1) // 2, dtype=torch.float64)
    for n in range(N):
        for c in range(C):
            for i, j, rows, cols in window_taps(x, k):
                a = [float(x[n, c, r, q]) for r in rows for q in cols]
                top = max(a)  # e^{a_i - top} / sum e^{a_j - top}: the same ratio, in range for any a
                e = [math.exp(v - top) for v in a]
                out[n, c, i, j] = sum(ei * ai for ei, ai in zip(e, a)) / sum(e)
    return out


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("hw", SIZES)
def test_softpool_equals_the_per_window_loop(device, dtype, tol, k, hw):
    x = 3 * torch.randn(2, 3, *hw, dtype=dtype, device=device)
    y = make_pool("softpool", 3, kernel_size=k).to(device)(x)
    torch.testing.assert_close(y.cpu().double(), softpool_literal(x.cpu(), k), rtol=10 * tol, atol=10 * tol)


def test_softpool_lies_between_window_mean_and_max():
    x = 4 * torch.randn(3, 4, 9, 8, dtype=torch.float64)
    y = softpool2d(x)
    assert (y >= AvgDownPool2d(4)(x) - 1e-12).all() and (y <= MaxDownPool2d(4)(x) + 1e-12).all()


@pytest.mark.parametrize("k", [2, 3])
def test_softpool_is_stable_for_huge_and_equal_activations(device, k):
    big = 1e4
    x = torch.tensor([[[[big, -big, 0.0, big, big, big],
                        [5.0, 0.0, -big, -big, big, big],
                        [3.0, 3.0, -big, -big, 0.0, 0.0],
                        [3.0, 3.0, -big, -big, 0.0, 0.0]]]], device=device)
    x.requires_grad_(True)
    y = softpool2d(x, k)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(y.detach().cpu().double(), softpool_literal(x.detach().cpu(), k), rtol=1e-6, atol=1e-3)
    if k == 2:
        # the max wins at |a| = 1e4; all-equal windows give their value, with gradient 1/4 per tap
        assert y[0, 0].tolist() == [[big, big, big], [3.0, -big, 0.0]]
        quarter = torch.full((2, 2), 0.25, device=device)
        for rows, cols in [(slice(0, 2), slice(4, 6)), (slice(2, 4), slice(0, 2)), (slice(2, 4), slice(2, 4))]:
            torch.testing.assert_close(x.grad[0, 0, rows, cols], quarter)


def test_softpool_kernel2_fast_path_equals_the_gathered_taps():
    from liftpool.pooling.zoo import maxent_pool2d

    x = 5 * torch.randn(2, 3, 7, 10, dtype=torch.float64)
    torch.testing.assert_close(softpool2d(x), maxent_pool2d(x, torch.tensor(1.0, dtype=torch.float64), 2))


# --------------------------------------------------------------------------- LIP
def lip_literal(x: torch.Tensor, pool: LIPPool2d) -> torch.Tensor:
    """Logits with torch's own layers (conv, instance norm, 12*sigmoid), then one window at a time."""
    conv = nn.Conv2d(pool.channels, pool.channels, 3, padding=1, bias=False).double()
    norm = nn.InstanceNorm2d(pool.channels, affine=True, eps=pool.eps).double()
    with torch.no_grad():
        conv.weight.copy_(pool.logit_weight)
        norm.weight.copy_(pool.norm_weight)
        norm.bias.copy_(pool.norm_bias)
        logit = pool.coeff * torch.sigmoid(norm(conv(x)))
    N, C, H, W = x.shape
    out = torch.zeros(N, C, (H + 1) // 2, (W + 1) // 2, dtype=torch.float64)
    for n in range(N):
        for c in range(C):
            for i, j, rows, cols in window_taps(x, pool.kernel_size):
                w = [math.exp(float(logit[n, c, r, q])) for r in rows for q in cols]
                a = [float(x[n, c, r, q]) for r in rows for q in cols]
                out[n, c, i, j] = sum(wi * ai for wi, ai in zip(w, a)) / sum(w)
    return out


@pytest.mark.parametrize("k", [3, 2])
@pytest.mark.parametrize("hw", [(2, 3), (5, 5), (6, 7), (8, 8)])
def test_lip_equals_the_per_window_loop(k, hw):
    torch.manual_seed(4)
    pool = LIPPool2d(3, k, zero_init=False, dtype=torch.float64)
    with torch.no_grad():
        pool.norm_weight.uniform_(0.5, 2.0)
        pool.norm_bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    torch.testing.assert_close(pool(x), lip_literal(x, pool))


@pytest.mark.parametrize("hw", SIZES)
def test_lip_starts_as_average_pooling(hw):
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    torch.testing.assert_close(LIPPool2d(3, dtype=torch.float64)(x), AvgDownPool2d(3, 3)(x))


def test_lip_with_the_identity_logit_is_softpool():
    # the LIP authors: logit = x gives SoftPool (2x2 windows)
    x = 3 * torch.randn(2, 3, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(lip2d(x, x, 2), softpool2d(x))
    torch.testing.assert_close(lip2d(x, 0 * x, 2), AvgDownPool2d(3)(x))


def test_lip_weights_lie_in_the_soft_gate_range():
    pool = LIPPool2d(4, zero_init=False)
    logit = pool.logit(torch.randn(2, 4, 6, 6))
    assert ((logit > 0) & (logit < pool.coeff)).all()
    assert torch.equal(pool.logit(torch.randn(2, 4, 1, 1)), torch.full((2, 4, 1, 1), 6.0))  # a 1x1 map: sigmoid(0)


# --------------------------------------------------------------------------- polyphase helpers
def circular_extend(x: torch.Tensor) -> torch.Tensor:
    """Append the first row / column to an odd axis (the wrap-around sample)."""
    if x.shape[-2] % 2:
        x = torch.cat([x, x[..., :1, :]], dim=-2)
    if x.shape[-1] % 2:
        x = torch.cat([x, x[..., :1]], dim=-1)
    return x


def components_by_slicing(x: torch.Tensor) -> list[torch.Tensor]:
    x = circular_extend(x)
    return [x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]]


def place_by_loop(y: torch.Tensor, weights: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zeros of size 2h x 2w; weights[n, 2i + j] * y[n, :, a, b] at (2a + i, 2b + j); crop to size."""
    N, C, h, w = y.shape
    out = torch.zeros(N, C, 2 * h, 2 * w, dtype=y.dtype)
    for n in range(N):
        for k in range(4):
            i, j = divmod(k, 2)
            for a in range(h):
                for b in range(w):
                    out[n, :, 2 * a + i, 2 * b + j] = weights[n, k] * y[n, :, a, b]
    return out[..., : size[0], : size[1]]


# --------------------------------------------------------------------------- APS
@pytest.mark.parametrize("p", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("hw", SIZES + [(9, 4)])
def test_aps_keeps_the_largest_norm_component(device, dtype, p, hw):
    x = torch.randn(4, 3, *hw, dtype=dtype, device=device)
    pool = APSPool2d(3, p=p, return_details=True).to(device)
    y, det = pool(x)
    comps = components_by_slicing(x.cpu())
    for n in range(4):
        norms = [float(torch.linalg.norm(c[n].flatten(), ord=p)) for c in comps]
        best = max(range(4), key=lambda k: norms[k])
        assert int(det.phase[n]) == best == int(pool.last_phase[n])
        assert torch.equal(y[n].cpu(), comps[best][n])
        assert det.weights[n].tolist() == [float(k == best) for k in range(4)]


def test_aps_ties_go_to_the_first_component():
    y, det = APSPool2d(2, return_details=True)(torch.zeros(1, 2, 4, 4))
    assert int(det.phase) == 0


def shifted_output(y: torch.Tensor, phase: int, sh: int, sw: int) -> tuple[torch.Tensor, int]:
    """Where APS's proof puts the output of an input shifted by (sh, sw): component (i, j) moves to
    ((i + sh) % 2, (j + sw) % 2) and its grid is rolled by ((i + sh) // 2, (j + sw) // 2)."""
    i, j = divmod(phase, 2)
    rolled = torch.roll(y, shifts=((i + sh) // 2, (j + sw) // 2), dims=(-2, -1))
    return rolled, 2 * ((i + sh) % 2) + (j + sw) % 2


@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("hw", [(8, 10), (6, 6), (2, 4)])
def test_aps_circular_shift_gives_circularly_shifted_output(device, kernel_size, hw):
    """Chaman & Dokmanić's result: with circular padding, APS(shift(x)) = shift'(APS(x))."""
    torch.manual_seed(0)
    pool = APSPool2d(3, kernel_size, return_details=True).to(device).double()
    x = torch.randn(2, 3, *hw, dtype=torch.float64, device=device)
    y, det = pool(x)
    # a 2-sample axis blurred circularly has two equal phases: a tie, which argmax breaks by index
    norms = pool.norms(torch.stack(components_by_slicing(pool.blur(x)), 2)).sort(dim=1).values
    tied = (norms[:, -1] - norms[:, -2]) < 1e-9 * norms[:, -1]
    assert tied.any() == (hw == (2, 4) and kernel_size == 3)
    for sh in range(-3, 4):
        for sw in range(-3, 4):
            ys, dets = pool(torch.roll(x, shifts=(sh, sw), dims=(-2, -1)))
            for n in range(2):
                expect, phase = shifted_output(y[n], int(det.phase[n]), sh, sw)
                if not tied[n]:
                    assert int(dets.phase[n]) == phase
                torch.testing.assert_close(ys[n], expect, rtol=1e-12, atol=1e-12)


def test_plain_subsampling_is_not_shift_invariant():
    # the property above is APS's, not any stride-2 sampler's
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    y = x[..., ::2, ::2]
    ys = torch.roll(x, 1, dims=-1)[..., ::2, ::2]
    assert not any(torch.equal(ys, torch.roll(y, (a, b), (-2, -1))) for a in range(4) for b in range(4))


@pytest.mark.parametrize("hw", SIZES + [(9, 4)])
def test_aps_up_puts_values_back_at_the_chosen_phase(hw):
    down, up = make_updown("aps", 3, dtype=torch.float64)
    x = torch.randn(3, 3, *hw, dtype=torch.float64)
    y, det = down(x)
    out = up(y, det)
    torch.testing.assert_close(out, place_by_loop(y, det.weights, hw), rtol=0, atol=0)
    xe = circular_extend(x)[..., : 2 * y.shape[-2], : 2 * y.shape[-1]]
    for n in range(3):
        i, j = divmod(int(det.phase[n]), 2)
        keep = torch.zeros(xe.shape[-2:], dtype=torch.bool)
        keep[i::2, j::2] = True
        keep = keep[: hw[0], : hw[1]]
        assert torch.equal(out[n][:, keep], x[n][:, keep])  # the kept samples come back exactly
        assert not out[n][:, ~keep].any()  # zeros elsewhere


@pytest.mark.parametrize("hw", [(8, 10), (6, 6)])
def test_aps_pair_is_circular_shift_equivariant(hw):
    """APS-U after APS: a circularly shifted input gives the circularly shifted output."""
    down, up = make_updown("aps", 2, kernel_size=3, dtype=torch.float64)
    x = torch.randn(2, 2, *hw, dtype=torch.float64)
    y, det = down(x)
    out = up(y, det)
    for sh in range(-2, 3):
        for sw in range(-3, 4):
            ys, dets = down(torch.roll(x, (sh, sw), (-2, -1)))
            torch.testing.assert_close(up(ys, dets), torch.roll(out, (sh, sw), (-2, -1)), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- LPS
def lps_scores_literal(pool: LPSPool2d, x: torch.Tensor) -> torch.Tensor:
    """The authors' scoring network with torch's circular nn.Conv2d, applied to each sliced component."""
    C, h = pool.channels, pool.hidden
    conv1 = nn.Conv2d(C, h, 3, padding=1, padding_mode="circular").double()
    conv2 = nn.Conv2d(h, h, 3, padding=1, padding_mode="circular").double()
    with torch.no_grad():
        conv1.weight.copy_(pool.conv1_weight)
        conv1.bias.copy_(pool.conv1_bias)
        conv2.weight.copy_(pool.conv2_weight)
        conv2.bias.copy_(pool.conv2_bias)
        return torch.stack([conv2(torch.relu(conv1(c))).mean(dim=(1, 2, 3)) for c in components_by_slicing(x)], 1)


def _sharp_lps(channels: int = 3, **kw) -> LPSPool2d:
    """An LPS layer whose component scores differ clearly (random weights, scaled up)."""
    torch.manual_seed(5)
    pool = LPSPool2d(channels, hidden=4, dtype=torch.float64, **kw)
    with torch.no_grad():
        pool.conv2_weight.mul_(8.0)
    return pool


@pytest.mark.parametrize("hw", [(2, 2), (5, 5), (6, 7), (8, 8), (9, 4)])
def test_lps_eval_keeps_the_arg_max_scored_component(hw):
    pool = _sharp_lps(return_details=True).eval()
    x = torch.randn(4, 3, *hw, dtype=torch.float64)
    y, det = pool(x)
    scores = lps_scores_literal(pool, x)
    torch.testing.assert_close(pool.logits(torch.stack(components_by_slicing(x), 2)), scores)
    comps = components_by_slicing(x)
    for n in range(4):
        best = int(scores[n].argmax())
        assert int(det.phase[n]) == best == int(pool.last_phase[n])
        assert torch.equal(y[n], comps[best][n])


def test_lps_training_is_the_gumbel_softmax_mixture():
    pool = _sharp_lps(return_details=True).train()
    x = torch.randn(5, 3, 6, 7, dtype=torch.float64)
    y, det = pool(x)
    comps = components_by_slicing(x)
    w = det.weights
    assert (w > 0).all() and torch.allclose(w.sum(1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(y, sum(w[:, k, None, None, None] * comps[k] for k in range(4)))
    assert torch.equal(det.phase, w.argmax(1))
    # a second draw differs: the noise is fresh
    assert not torch.equal(pool(x)[1].weights, w)


def test_lps_gumbel_draws_follow_the_softmax_of_the_scores():
    """Gumbel-max: the arg-max of the training weights is distributed as softmax(scores), for any tau."""
    pool = _sharp_lps(channels=2)
    with torch.no_grad():
        pool.conv2_weight.mul_(0.2)  # moderate score gaps: every phase gets drawn
    pool.tau.fill_(0.5)
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64).expand(4000, -1, -1, -1)
    probs = torch.softmax(lps_scores_literal(pool, x[:1])[0], 0)
    assert probs.min() > 0.05
    torch.manual_seed(11)
    pool.train()(x)
    freq = torch.bincount(pool.last_phase, minlength=4).double() / 4000
    torch.testing.assert_close(freq, probs, atol=0.04, rtol=0)


def test_lps_temperature_and_straight_through():
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    comps = components_by_slicing(x)
    cold = _sharp_lps(tau=1e-3, return_details=True).train()
    _, det = cold(x)
    assert (det.weights.max(1).values > 0.999).all()  # a low temperature: nearly one-hot
    hard = _sharp_lps(hard=True, return_details=True).train()
    y, det = hard(x)
    assert det.weights.detach().tolist() == torch.nn.functional.one_hot(det.phase, 4).double().tolist()
    for n in range(3):
        assert torch.equal(y[n], comps[int(det.phase[n])][n])  # one-hot forward
    y.square().sum().backward()
    assert hard.conv1_weight.grad.abs().sum() > 0  # ... with the soft sample's gradient


@pytest.mark.parametrize("hw", [(8, 10), (6, 6)])
def test_lps_eval_circular_shift_gives_circularly_shifted_output(hw):
    """LPS's result: with circular padding (scoring convolutions included) the selection follows the shift."""
    pool = _sharp_lps(return_details=True).eval()
    x = torch.randn(2, 3, *hw, dtype=torch.float64)
    y, det = pool(x)
    for sh in range(-2, 3):
        for sw in range(-2, 3):
            ys, dets = pool(torch.roll(x, (sh, sw), (-2, -1)))
            for n in range(2):
                expect, phase = shifted_output(y[n], int(det.phase[n]), sh, sw)
                assert int(dets.phase[n]) == phase
                torch.testing.assert_close(ys[n], expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("hw", [(1, 1), (5, 6), (7, 7), (8, 8)])
def test_lps_up_places_by_the_down_layers_weights(train, hw):
    down, up = make_updown("lps", 3, dtype=torch.float64)
    down.train(train)
    x = torch.randn(3, 3, *hw, dtype=torch.float64)
    y, det = down(x)
    if not train:
        assert det.weights.tolist() == torch.nn.functional.one_hot(det.phase, 4).double().tolist()
    torch.testing.assert_close(up(y, det), place_by_loop(y.detach(), det.weights.detach(), hw))


def test_polyphase_upsample_inverts_the_split():
    # placing every component with weight 1 at its own phase rebuilds the (circularly extended, cropped) map
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    comps = components_by_slicing(x)
    rebuilt = sum(polyphase_upsample(c, F.one_hot(torch.full((2,), k), 4), (7, 6)) for k, c in enumerate(comps))
    torch.testing.assert_close(rebuilt, x, rtol=0, atol=0)
    assert isinstance(make_updown("lps", 3)[0](x.float())[1], PolyphaseDetails2d)
