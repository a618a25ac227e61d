"""Perturbation sequences: shape/range/determinism and the identity frames of the geometric ones."""

from __future__ import annotations

import pytest
import torch

from liftpool.evaluation.perturbations import NOISE_PERTURBATIONS, PERTURBATIONS, flip_reference, perturbation_sequence


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_sequence_contract(name: str) -> None:
    x = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    s = perturbation_sequence(x, name, frames=5, rng=1)
    assert s.shape == (5, 3, 20, 24) and s.dtype == x.dtype
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    assert torch.equal(s, perturbation_sequence(x, name, frames=5, rng=1))
    # frames differ from each other
    assert all(float((s[i + 1] - s[i]).abs().max()) > 1e-4 for i in range(4))


@pytest.mark.parametrize(("name", "frame"), [("translate", 0), ("rotate", 2), ("scale", 2), ("tilt", 2)])
def test_geometric_identity_frame(name: str, frame: int) -> None:
    """The frame whose parameter is neutral (shift 0, angle 0, zoom 1) is the image itself."""
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    s = perturbation_sequence(x, name, frames=5, rng=0)
    assert torch.allclose(s[frame], x, atol=1e-9)


def test_translate_moves_one_pixel_per_frame() -> None:
    x = torch.zeros(3, 16, 16, dtype=torch.float64)
    x[:, 8, 8] = 1.0
    s = perturbation_sequence(x, "translate", frames=4, rng=0)
    # total mass is kept away from the border and the centre of mass moves by ~1 px per frame
    ys, xs = torch.meshgrid(
        torch.arange(16.0, dtype=torch.float64), torch.arange(16.0, dtype=torch.float64), indexing="ij"
    )
    com = [((f[0] * ys).sum() / f[0].sum(), (f[0] * xs).sum() / f[0].sum()) for f in s]
    steps = [float(torch.hypot(com[i + 1][0] - com[i][0], com[i + 1][1] - com[i][1])) for i in range(3)]
    assert steps == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_flip_reference_and_errors() -> None:
    assert {p for p in PERTURBATIONS if flip_reference(p) == "first"} == set(NOISE_PERTURBATIONS)
    with pytest.raises(ValueError, match="perturbation must be one of"):
        perturbation_sequence(torch.rand(3, 8, 8), "wobble")
    with pytest.raises(ValueError, match="frames"):
        perturbation_sequence(torch.rand(3, 8, 8), "rotate", frames=1)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        perturbation_sequence(torch.rand(1, 3, 8, 8), "rotate")
