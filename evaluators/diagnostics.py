"""Diagnostics of a training run: why a rule did well or badly, beside how well it did.

Measured by the trainer (`evaluators.train`) in every run, cheaply, and recorded in
``RunResult.diagnostics`` (so every ``results.json``, the search's validation files included,
carries them); a stacked ensemble run gives each member its own values:

- **generalisation gap**: final validation loss minus final training loss (the mean minibatch
  loss of the last evaluation window), the quantity behind the "Adam generalises worse than SGD"
  debate (Wilson et al. 2017, "The Marginal Value of Adaptive Gradient Methods in Machine
  Learning");
- **update RMS** and its **ratio to the weight RMS**: the applied step ``Δw = w_before - w_after``
  (learning rate included) over all trainable parameters, measured on the step before each
  evaluation point (so about ten times a run: ``UpdateProbe``); the run's value is the median
  over those points, the curve is kept. The ratio is the usual health check of a training run
  (around 1e-3 per step is typical for Adam on networks);
- **sharpness**: the largest eigenvalue of the training loss's Hessian at the end of training, on
  the first training batch (the same for every rule at a seed), by power iteration on
  Hessian-vector products (double backward; Keskar et al. 2017, "On Large-Batch Training for Deep
  Learning: Generalization Gap and Sharp Minima"; Cohen et al. 2021, "Gradient Descent on Neural
  Networks Typically Occurs at the Edge of Stability", who track the same number). Power
  iteration finds the eigenvalue of largest magnitude; when that one is negative a second
  iteration on ``H - λ I`` finds the largest. It costs up to ``2 * SHARPNESS_ITERS``
  Hessian-vector products, so it is measured only on **small tasks**: at most
  ``SHARPNESS_MAX_PARAMS`` parameters per model (the quadratics, digits logistic regression, the
  `cpu` digits MLP, CNN and autoencoder; not the character transformers or the deep MLP at the
  `cpu` preset). Elsewhere it is ``None``. Measured on a shared 2-core CPU (4-lr stacked grids
  at the `cpu` preset, 20 iterations), it added 1.7% to the training time of the quadratic,
  5.7% of the digits MLP and 8.9% of the digits CNN;
- **steps to target** is ``RunResult.steps_to_target`` itself (not repeated here).

A value that could not be measured (a diverged run, a task too large for sharpness) is ``None``,
so results round-trip through strict JSON unchanged.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

SHARPNESS_MAX_PARAMS = 30_000  # per model (per member of a stacked run)
SHARPNESS_ITERS = 20  # power-iteration steps (each one Hessian-vector product)
SHARPNESS_TOL = 1e-3  # stop when every member's Rayleigh quotient moved less than this, relatively


@dataclass(frozen=True)
class Diagnostics:
    """The diagnostics of one run (one member of a stacked run); None where not measured."""

    generalization_gap: float | None = None  # final val loss - final train loss
    update_rms: float | None = None  # median over the measured steps of RMS(Δw)
    update_ratio: float | None = None  # median of RMS(Δw) / RMS(w)
    update_curve: tuple[tuple[int, float | None, float | None], ...] = ()  # (step, RMS(Δw), ratio)
    sharpness: float | None = None  # top Hessian eigenvalue of the training loss at the end
    sharpness_iters: int = 0  # power-iteration steps it took (0: not measured)
    params: int = 0  # trainable parameters of the model (per member)

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["update_curve"] = [list(p) for p in self.update_curve]
        return out

    @classmethod
    def from_dict(cls, data: Mapping | None) -> Diagnostics:
        """Inverse of `to_dict` (missing keys take their defaults; an old result has none)."""
        data = dict(data or {})
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        if "update_curve" in known:
            known["update_curve"] = tuple((int(s), u, r) for s, u, r in known["update_curve"])
        return cls(**known)


def _finite_or_none(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def summarize(final_val: float, final_train: float, curve: Sequence[tuple[int, float, float]],
              sharpness: tuple[float, int] | None, params: int) -> Diagnostics:
    """One member's `Diagnostics` from what the trainer measured (curve: (step, RMS(Δw),
    ratio) per probed step; sharpness: (value, iterations) or None)."""
    points = tuple((s, _finite_or_none(u), _finite_or_none(r)) for s, u, r in curve)
    updates = [u for _, u, _ in points if u is not None]
    ratios = [r for _, _, r in points if r is not None]
    value, iters = sharpness if sharpness is not None else (None, 0)
    return Diagnostics(
        generalization_gap=_finite_or_none(final_val - final_train),
        update_rms=statistics.median(updates) if updates else None,
        update_ratio=statistics.median(ratios) if ratios else None,
        update_curve=points, sharpness=_finite_or_none(value),
        sharpness_iters=iters if value is not None else 0, params=params)


# -- per-member reductions over a list of tensors with `batch_dims` leading member axes ----------
def _members(tensors: Sequence[torch.Tensor], batch_dims: int) -> int:
    return tensors[0].shape[0] if batch_dims else 1


def _sum_sq(tensors: Sequence[torch.Tensor], batch_dims: int) -> torch.Tensor:
    """Per member sum of squares, shape [E] (E = 1 without a member axis), in float64."""
    e = _members(tensors, batch_dims)
    return sum(t.detach().double().reshape(e, -1).pow(2).sum(1) for t in tensors)


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], batch_dims: int) -> torch.Tensor:
    e = _members(a, batch_dims)
    return sum((x.double() * y.double()).reshape(e, -1).sum(1) for x, y in zip(a, b))


def _per_member(values: torch.Tensor, like: torch.Tensor, batch_dims: int) -> torch.Tensor:
    """[E] values shaped to broadcast against a tensor with `batch_dims` member axes."""
    shape = (-1, *[1] * (like.dim() - 1)) if batch_dims else [1] * like.dim()
    return values.to(like.dtype).reshape(shape)


def member_params(params: Sequence[torch.Tensor], batch_dims: int) -> int:
    """Trainable parameters of one member."""
    return sum(p.numel() for p in params) // _members(params, batch_dims)


class UpdateProbe:
    """RMS of the applied step and its ratio to the weights' RMS, per member, at chosen steps.

    ``before(params)`` copies the weights; ``after(params)`` returns one (RMS(Δw), ratio) per
    member. Only the steps before an evaluation are probed, so the cost is one copy of the
    weights about ten times a run."""

    def __init__(self, batch_dims: int):
        self.batch_dims = batch_dims
        self._saved: list[torch.Tensor] | None = None

    @torch.no_grad()
    def before(self, params: Sequence[torch.Tensor]) -> None:
        self._saved = [p.detach().clone() for p in params]

    @torch.no_grad()
    def after(self, params: Sequence[torch.Tensor]) -> list[tuple[float, float]]:
        saved, self._saved = self._saved, None
        if saved is None:
            raise RuntimeError("UpdateProbe.after without before")
        count = member_params(params, self.batch_dims)
        step = _sum_sq([p.detach() - s for p, s in zip(params, saved)], self.batch_dims)
        weight = _sum_sq(saved, self.batch_dims)
        out = []
        for du, w in zip(step.tolist(), weight.tolist()):
            rms_u, rms_w = math.sqrt(du / count), math.sqrt(w / count)
            out.append((rms_u, rms_u / rms_w if rms_w > 0 else math.nan))
        return out


def top_hessian_eigenvalue(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                           batch_dims: int = 0, iters: int = SHARPNESS_ITERS,
                           tol: float = SHARPNESS_TOL, seed: int = 0) -> tuple[list[float], int]:
    """Largest Hessian eigenvalue of each member's loss, by power iteration on Hessian-vector
    products; returns (values, iterations used).

    ``loss_fn()`` returns the per-member losses ([E], or [1]); members' Hessians are
    block-diagonal in the stacked parameters, so one product serves them all. The start vector
    is drawn once in the member shape from ``seed`` and shared by the members, so member i
    computes what its lone run computes. If the eigenvalue of largest magnitude is negative, the
    largest one is found by a second iteration on ``H - λ I`` (all of whose eigenvalues are >= 0).
    """
    params = list(params)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn().sum(), params, create_graph=True)

        def hvp(vectors: list[torch.Tensor]) -> list[torch.Tensor]:
            out = torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True,
                                      allow_unused=True)
            return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, out)]

        gen = torch.Generator().manual_seed(seed)
        start = [torch.randn(p.shape[batch_dims:], generator=gen, dtype=p.dtype).to(p.device)
                 .expand_as(p).clone() for p in params]
        dominant, used = _power(hvp, start, None, batch_dims, iters, tol)
        negative = dominant < 0
        if bool(negative.any()):
            shift = torch.where(negative, dominant, torch.zeros_like(dominant))
            top, more = _power(hvp, start, shift, batch_dims, iters, tol)
            dominant = torch.where(negative, top + shift, dominant)
            used += more
    return dominant.tolist(), used


def _power(hvp, start, shift, batch_dims, iters, tol) -> tuple[torch.Tensor, int]:
    """Power iteration on H (or H - shift I, shift per member); Rayleigh quotients [E]."""
    v = _normalized(start, batch_dims)
    value = None
    for k in range(1, iters + 1):
        hv = hvp(v)
        if shift is not None:
            hv = [h - _per_member(shift, x, batch_dims) * x for h, x in zip(hv, v)]
        new = _dot(v, hv, batch_dims)
        v = _normalized(hv, batch_dims)
        settled = ((new - value).abs() <= tol * new.abs()) | ~torch.isfinite(new) \
            if value is not None else None
        if settled is not None and bool(settled.all()):  # diverged members do not hold it up
            return new, k
        value = new
    return value, iters


def _normalized(vectors: Sequence[torch.Tensor], batch_dims: int) -> list[torch.Tensor]:
    norm = _sum_sq(vectors, batch_dims).sqrt().clamp(min=1e-300)
    return [x / _per_member(norm, x, batch_dims) for x in vectors]


def end_sharpness(loss_fn: Callable[[], torch.Tensor], params: Sequence[torch.Tensor],
                  batch_dims: int, alive: Sequence[bool], seed: int
                  ) -> list[tuple[float, int] | None]:
    """Per member (value, iterations), or None for a diverged member or a model larger than
    ``SHARPNESS_MAX_PARAMS``; never raises (a failure to measure is None)."""
    if member_params(params, batch_dims) > SHARPNESS_MAX_PARAMS or not any(alive):
        return [None] * len(alive)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:  # the fused attention kernels have no double backward; the plain one computes the same
        with sdpa_kernel([SDPBackend.MATH]):
            values, used = top_hessian_eigenvalue(loss_fn, params, batch_dims, seed=seed)
    except RuntimeError:  # another op without double backward: not measured
        return [None] * len(alive)
    return [(v, used) if ok and math.isfinite(v) else None for v, ok in zip(values, alive)]
