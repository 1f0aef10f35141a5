"""Reductions: to a per-tensor scalar (norm rms mean maxabs) and across the whole group (global_norm).

A reduction over one tensor reduces every axis but the leading `bd` ensemble axes and keeps
those (with size-1 axes for the rest, so the result broadcasts against the member). `global_norm`
is the Euclidean norm of all the group's tensors together (torch.nn.utils.clip_grad_norm_'s total
norm): it takes and returns a list, and the interpreter never splits such a group into chunks.
Of a scalar, the norms are |x| and the mean is x.
"""

from __future__ import annotations

import math

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


@primitive("global_norm", "x", "group", "norm over every tensor of the parameter group together", scalar=abs,
           sign=True, fresh=False)
def _global_norm(xs, bd=0):
    if not isinstance(xs, list):       # one tensor on its own
        return torch.abs(xs)
    if bd == 0:
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in xs]))
        return [total] * len(xs)
    per = torch.stack([_norm(x, bd).reshape(x.shape[:bd]) for x in xs])   # [n, *batch]
    total = torch.linalg.vector_norm(per, dim=0)
    return [total.reshape(x.shape[:bd] + (1,) * (x.dim() - bd)) for x in xs]
