"""Reductions: to a per-tensor scalar (norm rms mean maxabs sum dot) and across the whole group
(global_norm global_sum global_dot).

A reduction over one tensor reduces every axis but the leading `bd` ensemble axes and keeps
those (with size-1 axes for the rest, so the result broadcasts against the member). A group
reduction takes one list per argument, every tensor of the param group's route that steps
together (all its interpreter buckets: step counts and dtypes may differ), and returns one
value per tensor, the same total in each tensor's own dtype: `global_norm` is
torch.nn.utils.clip_grad_norm_'s total norm, `global_sum` the sum of every entry, `global_dot`
the sum of x * y over every entry (Prodigy's numerator sum_i <g_i, w0_i - w_i>, Mishchenko &
Defazio 2024). So a group-wide scalar (Prodigy's d) is kept as one 0-d copy per tensor: every
copy computes the same value from the same totals, exactly. Of a scalar, the norms are |x|, the
mean and sum x, the dot x * y.
"""

from __future__ import annotations

import math
import operator

import torch

from .common import _dims, _norm, passthrough
from .registry import primitive

primitive("norm", "x", "reduction", "Euclidean (Frobenius) norm of the whole tensor", scalar=abs, sign=True)(_norm)


@primitive("rms", "x", "reduction", "root mean square: norm(x) / sqrt(numel)", scalar=abs, sign=True, slot=True)
def _rms(x, bd=0):
    return _norm(x, bd) / math.sqrt(max(math.prod(x.shape[bd:]), 1))


@primitive("mean", "x", "reduction", "mean of all entries", scalar=passthrough)
def _mean(x, bd=0):
    dims = _dims(x, bd)
    return x.mean(dim=dims, keepdim=bd > 0) if dims else x.clone()


@primitive("maxabs", "x", "reduction", "largest |entry| (infinity norm)", scalar=abs, sign=True)
def _maxabs(x, bd=0):
    dims = _dims(x, bd)
    if not dims:
        return torch.abs(x)
    if math.prod(x.shape[bd:]) == 0:   # no entries (an empty parameter): 0, as amax has no identity
        return x.new_zeros(x.shape[:bd] + ((1,) * len(dims) if bd > 0 else ()))
    return torch.abs(x).amax(dim=dims, keepdim=bd > 0)


@primitive("sum", "x", "reduction", "sum of all entries", scalar=passthrough, weight=0.5)
def _sum(x, bd=0):
    dims = _dims(x, bd)
    return x.sum(dim=dims, keepdim=bd > 0) if dims else x.clone()


@primitive("dot", "x y", "reduction", "dot(x, y) = sum(x * y) over all entries", scalar=operator.mul,
           commutative=True, weight=0.5)
def _dot(x, y, bd=0):
    return _sum(x * y, bd)


def _group_total(parts, xs, bd, combine):
    """One total over the group from per-tensor parts (each a 0-d, or [*batch] for bd > 0)."""
    stacked = torch.stack([p.reshape(x.shape[:bd]) for p, x in zip(parts, xs)])
    total = combine(stacked)
    if bd == 0:
        return [total.to(x.dtype) for x in xs]
    return [total.reshape(x.shape[:bd] + (1,) * (x.dim() - bd)).to(x.dtype) for x in xs]


@primitive("global_norm", "x", "group", "norm over every tensor of the parameter group together", scalar=abs,
           sign=True, fresh=False)
def _global_norm(xs, bd=0):
    if not isinstance(xs, list):       # one tensor on its own
        return torch.abs(xs)
    parts = [torch.linalg.vector_norm(x) if bd == 0 else _norm(x, bd) for x in xs]
    return _group_total(parts, xs, bd, lambda s: torch.linalg.vector_norm(s, dim=0))


@primitive("global_sum", "x", "group", "sum of every entry of every tensor of the parameter group (Prodigy)",
           scalar=passthrough, fresh=False, weight=0.3)
def _global_sum(xs, bd=0):
    if not isinstance(xs, list):
        return _sum(xs, bd)
    return _group_total([_sum(x, bd) for x in xs], xs, bd, lambda s: s.sum(dim=0))


@primitive("global_dot", "x y", "group",
           "global_dot(x, y) = sum of x * y over every tensor of the parameter group (Prodigy)",
           scalar=operator.mul, fresh=False, commutative=True, weight=0.3)
def _global_dot(xs, ys, bd=0):
    if not isinstance(xs, list):
        return _dot(xs, ys, bd)
    return _group_total([_dot(x, y, bd) for x, y in zip(xs, ys)], xs, bd, lambda s: s.sum(dim=0))
