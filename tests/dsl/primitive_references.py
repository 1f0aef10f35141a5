"""numpy references for every primitive, and the input grids the primitive tests use.

Shared by tests/dsl/test_primitives.py (elementwise, reductions, dtypes, ensemble axes),
tests/dsl/test_primitives_structure.py (orthogonalize, aspect, Adafactor's factors) and
tests/dsl/test_primitives_matrix.py (the matrix and control primitives, whose references are in
tests/dsl/matrix_references.py).
"""

from __future__ import annotations

import math

import numpy as np
from matrix_references import MATRIX_REF

from dsl.primitives import NS_COEFFICIENTS

EDGE = np.array([0.0, -0.0, 1.0, -1.0, 0.3, -2.5, 1e-30, -1e30, 700.0, -700.0, np.inf, -np.inf, np.nan])
MILD = np.array([0.0, -0.0, 1.0, -1.0, 0.3, -2.5, 4.0, np.inf, -np.inf, np.nan])


# -- numpy references ---------------------------------------------------------------------------
def _lerp(a, b, w):  # torch's CPU formula, two branches on |w|
    w = np.broadcast_to(w, np.broadcast(a, b).shape)
    return np.where(np.abs(w) < 0.5, a + w * (b - a), b - (b - a) * (1 - w))


def ns_numpy(G: np.ndarray, steps: int = 5) -> np.ndarray:
    """Muon's zeropower_via_newtonschulz5, transcribed to numpy in float64."""
    a, b, c = NS_COEFFICIENTS
    X = np.asarray(G, dtype=np.float64)
    tall = X.shape[-2] > X.shape[-1]
    if tall:
        X = np.swapaxes(X, -1, -2)
    X = X / (np.linalg.norm(X, axis=(-2, -1), keepdims=True) + 1e-7)
    for _ in range(steps):
        A = X @ np.swapaxes(X, -1, -2)
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return np.swapaxes(X, -1, -2) if tall else X


def _orth(x, steps=5.0):
    x = np.asarray(x)
    if x.ndim == 0:                       # a number: its sign, as torch.sign (0 at NaN)
        return np.where(np.isnan(x), 0.0, np.sign(x))
    n = int(min(max(round(steps), 0), 20))
    m = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
    return ns_numpy(m, n).reshape(x.shape)


def _norm(x):
    return np.sqrt(np.sum(np.square(np.asarray(x, dtype=np.float64))))


def _trust(w, u):
    nw, nu = _norm(w), _norm(u)
    return nw / nu if nw > 0 and nu > 0 else 1.0


REF = {
    "neg": lambda x: -x,
    "abs": np.abs,
    "sign": lambda x: np.where(np.isnan(x), 0.0, np.sign(x)),
    "sqrt": lambda x: np.sqrt(np.abs(x)),
    "rsqrt": lambda x: 1.0 / np.sqrt(np.abs(x)),
    "square": lambda x: x * x,
    "exp": np.exp,
    "log": lambda x: np.log(np.abs(x)),
    "tanh": np.tanh,
    "cos": np.cos,
    "clip": lambda x, c: np.minimum(np.maximum(x, -np.abs(c)), np.abs(c)),
    "max": np.maximum,
    "min": np.minimum,
    "pow": lambda x, y: np.power(np.abs(x), y),
    "lerp": _lerp,
    "norm": _norm,
    "rms": lambda x: _norm(x) / math.sqrt(max(np.size(x), 1)),
    "mean": np.mean,
    "maxabs": lambda x: np.max(np.abs(x)),
    "global_norm": lambda xs: _norm(np.concatenate([np.ravel(x) for x in xs])),
    "orthogonalize": _orth,
    "aspect": lambda x: math.sqrt(max(1.0, x.shape[-2] / x.shape[-1])) if np.ndim(x) >= 2 else 1.0,
    "row_mean": lambda x: x.mean(axis=-1, keepdims=True) if np.ndim(x) >= 2 else x,
    "col_mean": lambda x: x.mean(axis=-2, keepdims=True) if np.ndim(x) >= 2 else np.mean(x),
    "factored": lambda r, c, eps=1e-30: (r * c / np.maximum(r.mean(axis=-2, keepdims=True), eps)
                                         if np.ndim(r) >= 2 else r),
    "normalize": lambda x: x / max(_norm(x), 1e-30),
    "trust_ratio": _trust,
    "mod": np.fmod,
    "safe_div": lambda x, y: np.where(np.asarray(y) == 0, 0.0, np.asarray(x) / np.where(np.asarray(y) == 0, 1.0, y)),
    "sum": np.sum,
    "dot": lambda x, y: np.sum(np.multiply(x, y)),
    "global_sum": lambda xs: float(np.sum(np.concatenate([np.ravel(x) for x in xs]))),
    "global_dot": lambda xs, ys: float(sum(np.sum(np.multiply(x, y)) for x, y in zip(xs, ys))),
    **MATRIX_REF,
}

# What each primitive returns for plain Python-float arguments (the compiler's scalar path).
SCALAR = {
    "neg": ((-0.7,), 0.7), "abs": ((-0.7,), 0.7), "sign": ((-0.7,), -1.0), "sqrt": ((-4.0,), 2.0),
    "rsqrt": ((-4.0,), 0.5), "square": ((-3.0,), 9.0), "exp": ((1.0,), math.e), "log": ((-math.e,), 1.0),
    "tanh": ((0.5,), math.tanh(0.5)), "clip": ((-3.0, -2.0), -2.0), "max": ((-3.0, 2.0), 2.0),
    "min": ((-3.0, 2.0), -3.0), "pow": ((-8.0, 1 / 3), 2.0), "lerp": ((1.0, 3.0, 0.25), 1.5),
    "norm": ((-0.7,), 0.7), "rms": ((-0.7,), 0.7), "mean": ((-0.7,), -0.7), "maxabs": ((-0.7,), 0.7),
    "global_norm": ((-0.7,), 0.7), "orthogonalize": ((-0.7,), -1.0), "aspect": ((5.0,), 1.0),
    "row_mean": ((-0.7,), -0.7), "col_mean": ((-0.7,), -0.7), "factored": ((-0.7, 3.0), -0.7),
    "normalize": ((-0.7,), -1.0), "trust_ratio": ((-3.0, 1.5), 2.0),
}

# Extra (non-tensor) arguments used where a primitive takes one.
SCALAR_ARGS = {"orthogonalize": (3.0,), "factored": ()}
