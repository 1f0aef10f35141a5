"""Matrix and structure primitives: orthogonalize aspect row_mean col_mean factored normalize trust_ratio.

`orthogonalize` is the Newton–Schulz quintic of Muon (Jordan et al. 2024, KellerJordan/Muon
`zeropower_via_newtonschulz5`): coefficients (3.4445, -4.7750, 2.0315), X / (||X||_F + 1e-7),
transposed when rows > cols, run in bfloat16 (in float64 when the input is float64, which checks
the algebra exactly); conv filters are flattened to 2-D, vectors are one row. `row_mean`,
`col_mean` and `factored` are Adafactor's factored second moment (Shazeer & Stern 2018), factoring
the last two axes as torch.optim.Adafactor does. `trust_ratio` is LAMB's ||w|| / ||u|| (You et al.
2020) with its zero guards. Of a scalar, these are sign(x), 1, x, x, r, x / |x| and |w| / |u|.
"""

from __future__ import annotations

import math

import torch

from .common import _constant, _first_tensor, _norm, _tensor, passthrough
from .elementwise import _scalar_max, _scalar_sign
from .reductions import _mean
from .registry import primitive

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)   # Muon's quintic (a, b, c)
NS_EPS = 1e-7
MAX_NS_STEPS = 20


def newton_schulz(x, steps=5):
    """Approximate U V^T of x's SVD by Muon's quintic Newton–Schulz iteration on the last two axes.

    Runs in bfloat16 (float64 for float64 input). The coefficients overshoot on purpose: they
    maximise the slope at zero so that small singular values grow fast, at the price of
    converging to roughly [0.68, 1.14] rather than exactly 1.
    """
    X = x.to(torch.float64 if x.dtype == torch.float64 else torch.bfloat16)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + NS_EPS)
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X


def _scalar_orthogonalize(x, steps=5.0):
    """orthogonalize of a Python float: its sign."""
    return _scalar_sign(x)


@primitive("orthogonalize", "x [steps]", "structure",
           "orthogonalize(x[, steps=5]): Newton–Schulz quintic (Muon); conv filters flattened to 2-D",
           scalar=_scalar_orthogonalize, batches_exactly=False, weight=0.1, constants=(2.0, 3.0, 5.0))
def _orthogonalize(x, steps=5.0, bd=0):
    if not isinstance(x, torch.Tensor):           # a number (with a tensor step count): its sign
        return torch.sign(_tensor(x, steps))
    n = int(min(max(round(float(steps)), 0), MAX_NS_STEPS)) if math.isfinite(float(steps)) else 5
    m = x.dim() - bd
    if m == 0:
        return torch.sign(x)
    if m == 1:
        X = x.unsqueeze(-2)
    elif m > 2:
        X = x.reshape(*x.shape[: bd + 1], -1)
    else:
        X = x
    return newton_schulz(X, n).reshape(x.shape).to(x.dtype)


def _scalar_aspect(x):
    """aspect of a Python float: 1."""
    return 1.0


@primitive("aspect", "x", "structure", "sqrt(max(1, rows / cols)) of the last two axes (1 for vectors)",
           scalar=_scalar_aspect, sign=True, fresh=False)
def _aspect(x, bd=0):
    value = math.sqrt(max(1.0, x.size(-2) / max(x.size(-1), 1))) if x.dim() - bd >= 2 else 1.0
    return _constant(value, x)


@primitive("row_mean", "x", "structure", "mean over the last axis (Adafactor row factor); x itself for vectors",
           scalar=passthrough)
def _row_mean(x, bd=0):
    return x.mean(dim=-1, keepdim=True) if x.dim() - bd >= 2 else x.clone()


@primitive("col_mean", "x", "structure",
           "mean over the second-last axis (Adafactor column factor); the mean for vectors", scalar=passthrough)
def _col_mean(x, bd=0):
    return x.mean(dim=-2, keepdim=True) if x.dim() - bd >= 2 else _mean(x, bd)


@primitive("factored", "r c [eps]", "structure",
           "factored(r, c[, eps=1e-30]) = r * c / max(mean(r), eps): Adafactor's second moment; r for vectors",
           scalar=passthrough, constants=(1e-30, 1e-8))
def _factored(r, c, eps=1e-30, bd=0):
    if not isinstance(r, torch.Tensor):           # a number r passes through, as a tensor like c
        return _tensor(r, _first_tensor(c, eps))
    if r.dim() - bd < 2:
        return r.clone()
    denom = r.mean(dim=-2, keepdim=True)
    denom = torch.maximum(denom, eps) if isinstance(eps, torch.Tensor) else torch.clamp(denom, min=eps)
    return (r * c) / denom


def _scalar_normalize(x):
    """x / max(|x|, 1e-30) of a Python float (0 stays 0)."""
    return x / _scalar_max(abs(x), 1e-30)


@primitive("normalize", "x", "structure", "x / norm(x) (0 stays 0)", scalar=_scalar_normalize)
def _normalize(x, bd=0):
    return x / torch.clamp(_norm(x, bd), min=1e-30)


def _scalar_trust_ratio(w, u):
    """|w| / |u| of Python floats, or 1 where either is 0 or NaN."""
    return abs(w) / abs(u) if abs(w) > 0 and abs(u) > 0 else 1.0


@primitive("trust_ratio", "w u", "structure", "norm(w) / norm(u), or 1 when either norm is 0 or NaN (LAMB/LARS)",
           scalar=_scalar_trust_ratio, sign=True)
def _trust_ratio(w, u, bd=0):
    like = _first_tensor(w, u)
    nw, nu = _norm(_tensor(w, like), bd), _norm(_tensor(u, like), bd)
    ok = (nw > 0) & (nu > 0)
    return torch.where(ok, nw / torch.where(ok, nu, torch.ones_like(nu)), torch.ones_like(nw))
