"""Training diagnostics of the pooling layers (``liftpool train --diagnostics``).

Every ``every`` optimisation steps :class:`PoolDiagnostics` records, per pooling layer of the
model (in network order, named by their module path):

* ``grad_output_norm`` / ``grad_input_norm``: L2 norm (over the whole batch) of the gradient of
  the training loss (task loss plus the constraint losses when they are on) with respect to the
  layer's output and its input, from tensor hooks of that step's forward pass;
* ``grad_param_norm``: L2 norm of the gradient of the layer's own parameters (LiftDownPool's P/U);
* for a LiftDownPool: the constraint terms ``c_u``, ``c_p`` of that forward pass (unweighted, as
  :meth:`liftpool.layers.LiftDownPoolNd.constraints` holds them), the weights' magnitudes (RMS of
  the K-tap convolution ``w1``/``b1`` and of the 1x1 "gate" ``w2``/``b2`` of P and U, whose zero
  makes P or U exactly zero, and the L2 norm of all of P's / U's parameters) and a probe of the
  learned operators' size on the step's real input: along the last axis, ``p_rel =
  rms(P(x_e)) / rms(x_o)`` and ``u_rel = rms(U(d)) / rms(x_e)`` with ``d = x_o - P(x_e)`` (the
  layer's first 1D lifting step, first transform): 0 means the layer still is the polyphase
  (Haar-like) split it starts from with ``zero_init``.

Besides the step records, :meth:`PoolDiagnostics.snapshot_epoch` stores the weight magnitudes at
the end of every epoch (the weights that epoch's checkpoint holds).  Everything goes to
``diagnostics.json`` through :func:`liftpool.io.atomic_write_json`; a resumed run keeps the
records up to its checkpoint's step and appends to them.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from liftpool import LiftDownPool2d
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), LiftDownPool2d(4), nn.Flatten())
    >>> diag = PoolDiagnostics(net, every=1)
    >>> diag.arm(0)
    >>> loss = net(torch.randn(2, 3, 8, 8)).pow(2).mean()
    >>> loss.backward()
    >>> rec = diag.record(step=0, epoch=0.0, loss=float(loss.detach()), lr=0.1)
    >>> sorted(rec["layers"]["2"])  # doctest: +NORMALIZE_WHITESPACE
    ['c_p', 'c_u', 'grad_input_norm', 'grad_output_norm', 'grad_param_norm', 'kind', 'probe', 'weights']
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..io import atomic_write_json
from ..layers import LiftDownPoolNd
from ..lifters import LearnedLifter

__all__ = ["DIAGNOSTICS_FILE", "PoolDiagnostics", "default_every", "lifter_magnitudes", "pooling_layers"]

DIAGNOSTICS_FILE = "diagnostics.json"
FORMAT_VERSION = 1
_TORCH_POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d,
)  # fmt: skip


def _is_pool(m: nn.Module) -> bool:
    if isinstance(m, (LiftDownPoolNd, *_TORCH_POOLS)):
        return True
    return type(m).__module__.startswith("liftpool.pooling.") and not isinstance(m, nn.Sequential)


def pooling_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the down-sampling layers of ``model``, outermost only, in network order.

    A pooling layer is a :class:`~liftpool.layers.LiftDownPoolNd`, a torch max/avg/LP pooling
    module (not the adaptive ones, which are global poolings) or any layer made by
    :func:`liftpool.pooling.make_pool`; a pooling layer inside another one is not listed.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    found: list[tuple[str, nn.Module]] = []
    for name, m in model.named_modules():
        if not name or not _is_pool(m):
            continue
        if any(name.startswith(prev + ".") for prev, _ in found):
            continue
        found.append((name, m))
    return found


def default_every(iters_per_epoch: int, per_epoch: int = 16) -> int:
    """The recording interval for about ``per_epoch`` records per epoch (at least every step)."""
    if iters_per_epoch < 1 or per_epoch < 1:
        raise ValueError(f"iters_per_epoch and per_epoch must be >= 1, got {iters_per_epoch}, {per_epoch}")
    return max(1, iters_per_epoch // per_epoch)


def _rms(t: Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt()) if t.numel() else 0.0


def _lifters(layer: LiftDownPoolNd, which: str) -> Iterator[LearnedLifter]:
    for tr in layer.transforms:
        for m in getattr(tr, which):
            if isinstance(m, LearnedLifter):
                yield m


def lifter_magnitudes(layer: LiftDownPoolNd) -> dict[str, dict[str, float]]:
    """RMS of ``w1``, ``b1``, ``w2``, ``b2`` and the L2 ``norm`` of all parameters, for P and for U
    (over every transform and lifting step of the layer).  Empty for a fixed (wavelet) layer."""
    out: dict[str, dict[str, float]] = {}
    for which in ("P", "U"):
        mods = list(_lifters(layer, which))
        if not mods:
            continue
        parts = {
            "w1": torch.cat([m.weight.detach().flatten() for m in mods]),
            "b1": torch.cat([m.bias.detach().flatten() for m in mods]),
            "w2": torch.cat([m.pw_weight.detach().flatten() for m in mods]),
            "b2": torch.cat([m.pw_bias.detach().flatten() for m in mods]),
        }
        rec = {k: _rms(v) for k, v in parts.items()}
        rec["norm"] = float(torch.cat(list(parts.values())).double().norm())
        out[which] = rec
    return out


def _probe(layer: LiftDownPoolNd, x: Tensor) -> dict[str, float] | None:
    """``p_rel``, ``u_rel`` of the layer's first lifting step along the last axis on input ``x``."""
    if not layer.transforms or x.shape[-1] < 2:
        return None
    tr: Any = layer.transforms[0]
    P, U = tr.P[0], tr.U[0]
    if not isinstance(P, LearnedLifter) or not isinstance(U, LearnedLifter):
        return None
    with torch.no_grad():
        n = x.shape[-1] // 2
        xe = x[..., 0 : 2 * n : 2].to(P.weight.dtype)
        xo = x[..., 1 : 2 * n : 2].to(P.weight.dtype)
        p = P(xe, -1)
        d = xo - p
        u = U(d, -1)
        den_o, den_e = _rms(xo), _rms(xe)
        return {
            "p_rel": _rms(p) / den_o if den_o > 0 else math.nan,
            "u_rel": _rms(u) / den_e if den_e > 0 else math.nan,
            "p_rms": _rms(p),
            "u_rms": _rms(u),
            "x_rms": _rms(x),
        }


class PoolDiagnostics:
    """Records the pooling layers' weights, constraint terms and gradient norms during training.

    Use per step: ``if diag.due(step): diag.arm(step)`` before the forward pass, then after
    ``loss.backward()`` (before the optimizer step) ``diag.record(...)``.  ``arm`` installs
    forward hooks that put gradient hooks on the pooling layers' inputs and outputs for that
    one forward pass; ``record`` reads them and removes the hooks.

    Args:
        model: the network (not a DDP wrapper; hooks go on its modules).
        every: record every ``every``-th optimisation step (step 0 included).
    """

    def __init__(self, model: nn.Module, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.model = model
        self.every = every
        self.layers = pooling_layers(model)
        self.records: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self._handles: list[Any] = []
        self._grads: dict[str, dict[str, float]] = {}
        self._probes: dict[str, dict[str, float] | None] = {}
        self._armed: int | None = None

    # ------------------------------------------------------------------ recording
    def due(self, step: int) -> bool:
        """Whether step ``step`` (0-based global optimisation step) is recorded."""
        return step % self.every == 0

    def arm(self, step: int) -> None:
        """Hook the next forward pass (call just before it)."""
        self.disarm()
        self._armed = step
        self._grads = {name: {} for name, _ in self.layers}
        self._probes = {}
        for name, m in self.layers:
            self._handles.append(m.register_forward_hook(self._forward_hook(name)))

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._armed = None

    def _forward_hook(self, name: str) -> Any:
        def store(key: str) -> Any:
            def hook(g: Tensor) -> None:
                self._grads[name][key] = float(g.detach().double().norm())

            return hook

        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0] if inputs else None
            y = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(y, Tensor) and y.requires_grad:
                y.register_hook(store("grad_output_norm"))  # type: ignore[no-untyped-call]  # untyped in torch's stubs
            if isinstance(x, Tensor) and x.requires_grad:
                x.register_hook(store("grad_input_norm"))  # type: ignore[no-untyped-call]  # untyped in torch's stubs
            if isinstance(module, LiftDownPoolNd) and isinstance(x, Tensor) and name not in self._probes:
                self._probes[name] = _probe(module, x.detach())

        return hook

    def record(
        self,
        *,
        step: int,
        epoch: float,
        loss: float,
        lr: float,
        lift_loss: float | None = None,
        grad_scale: float = 1.0,
    ) -> dict[str, Any]:
        """Read the armed step's values (call after ``backward``); returns and stores the record.

        ``grad_scale``: the AMP loss scale the gradients carry (they are divided by it).
        """
        if self._armed is None:
            raise RuntimeError("record() without arm(): call arm(step) before the forward pass")
        inv = 1.0 / grad_scale if grad_scale else 1.0
        layers: dict[str, Any] = {}
        for name, m in self.layers:
            g = self._grads.get(name, {})
            params = [p.grad for p in m.parameters() if p.grad is not None]
            rec: dict[str, Any] = {
                "kind": type(m).__name__,
                "grad_output_norm": g.get("grad_output_norm", math.nan) * inv,
                "grad_input_norm": g.get("grad_input_norm", math.nan) * inv,
                "grad_param_norm": (
                    float(torch.linalg.vector_norm(torch.stack([p.detach().double().norm() for p in params]))) * inv
                    if params
                    else None
                ),
            }
            if isinstance(m, LiftDownPoolNd):
                c = m.constraints
                rec["c_u"] = float(c.c_u.detach()) if c is not None else None
                rec["c_p"] = float(c.c_p.detach()) if c is not None else None
                rec["weights"] = lifter_magnitudes(m)
                rec["probe"] = self._probes.get(name)
            layers[name] = rec
        out = {"step": int(step), "epoch": float(epoch), "loss": float(loss), "lr": float(lr), "layers": layers}
        if lift_loss is not None:
            out["lift_loss"] = float(lift_loss)
        self.records.append(out)
        self.disarm()
        return out

    def snapshot_epoch(self, epoch: int, step: int) -> dict[str, Any]:
        """The LiftDownPool layers' weight magnitudes at the end of epoch ``epoch`` (1-based)."""
        snap = {
            "epoch": int(epoch),
            "step": int(step),
            "layers": {name: lifter_magnitudes(m) for name, m in self.layers if isinstance(m, LiftDownPoolNd)},
        }
        self.epochs.append(snap)
        return snap

    # ------------------------------------------------------------------ files
    def state(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "every": self.every,
            "layers": [{"name": n, "kind": type(m).__name__} for n, m in self.layers],
            "records": self.records,
            "epochs": self.epochs,
            "meta": dict(meta or {}),
        }

    def save(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> None:
        """Write everything recorded so far to ``path`` (atomically)."""
        atomic_write_json(Path(path), self.state(meta))

    def load_existing(self, path: str | os.PathLike[str], *, upto_step: int, upto_epoch: int) -> int:
        """Continue a resumed run's file: keep its records before ``upto_step`` and its epoch
        snapshots up to ``upto_epoch``; returns how many step records were kept (0 without a file)."""
        p = Path(path)
        if not p.is_file():
            return 0
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return 0
        self.records = [r for r in data.get("records", []) if int(r.get("step", -1)) < upto_step]
        self.epochs = [e for e in data.get("epochs", []) if int(e.get("epoch", 0)) <= upto_epoch]
        return len(self.records)
