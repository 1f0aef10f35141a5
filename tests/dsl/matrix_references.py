"""float64 numpy references of the matrix and control primitives, and how a rule uses each one.

Matrix primitives act on matrix views (dsl.primitives.matrix): leading ensemble axes kept, then
rows x prod(other axes); a vector is one row, a number is c I (products scale, functions of
numbers are numbers); a result with the view shape of a non-2-D operand takes its shape back.
`USES[name]` is a parameter-shaped expression of g and w that calls the primitive: the registry
walks (test_primitive_registry.py, test_primitives_matrix.py, test_export.py's every-primitive
table) run a rule built from it.
"""

from __future__ import annotations

import numpy as np


def as_matrix(x, bd: int = 0) -> np.ndarray:
    """The matrix view of a tensor that is not a number."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim - bd == 1:
        return x.reshape(*x.shape[:bd], 1, x.shape[-1])
    return x if x.ndim - bd == 2 else x.reshape(*x.shape[:bd + 1], -1)


def back(out: np.ndarray, operands, bd: int = 0) -> np.ndarray:
    for x in operands:
        x = np.asarray(x)
        if x.ndim - bd not in (0, 2) and as_matrix(x, bd).shape == out.shape:
            return out.reshape(x.shape)
    return out


def _mT(x):
    return np.swapaxes(x, -1, -2)


def _number(x) -> bool:
    return np.ndim(x) == 0


def _mm(a, b):
    """a b, a number being c I: it scales the other factor (b as it is, a as a matrix view)."""
    if _number(a):
        return np.multiply(a, b if _number(b) else as_matrix(b))
    if _number(b):
        return np.multiply(as_matrix(a), b)
    return as_matrix(a) @ as_matrix(b)


def _matmul(a, b):
    out = _mm(a, b)
    return out if _number(a) and _number(b) else back(out, (b, a))


def _inv_root(A, p, eps=1e-12):
    with np.errstate(all="ignore"):
        alpha = -1.0 / p if p != 0 else -np.copysign(np.inf, p)
        if _number(A):
            shift = np.where(np.isnan(A) | (A <= 0), A, 0.0)      # min(A, 0), A where equal
            return np.power(A - shift + eps, alpha)
        lam, Q = np.linalg.eigh(as_matrix(A))
        lam = lam - np.minimum(lam.min(axis=-1, keepdims=True), 0) + eps
        return (Q * np.power(lam, alpha)[..., None, :]) @ _mT(Q)


def _eigvecs(A):
    return np.float64(1.0) if _number(A) else np.linalg.eigh(as_matrix(A))[1][..., ::-1]


def _order(A, Q):
    AQ = _mm(A, Q)
    if _number(AQ):
        return AQ, None
    QQ = Q if _number(Q) else as_matrix(Q)
    return AQ, np.argsort(-(QQ * AQ).sum(axis=-2), axis=-1, kind="stable")


def _qr_step(A, Q):
    AQ, order = _order(A, Q)
    if order is None:
        return np.float64(1.0)            # as LAPACK's Q of a 1 x 1 matrix
    return np.linalg.qr(np.take_along_axis(AQ, order[..., None, :], axis=-1))[0]


def _sorted(x, A, Q, axis):
    order = None if _number(x) else _order(A, Q)[1]
    if order is None:
        return x
    index = order[..., :, None] if axis == -2 else order[..., None, :]
    return back(np.take_along_axis(as_matrix(x), index, axis=axis), (x,))


def _rows(x):
    return float(np.shape(x)[0]) if np.ndim(x) >= 2 else 1.0


def _cols(x):
    shape = np.shape(x)
    return float(np.prod(shape[1:])) if len(shape) >= 2 else float(shape[0]) if shape else 1.0


def _every(k, x, y, t=1.0):
    with np.errstate(invalid="ignore"):
        return x if 1.0 - np.fmod(t - 1.0, k) > 0 else y


MATRIX_REF = {
    "matmul": _matmul,
    "transpose": lambda x: x if _number(x) else _mT(as_matrix(x)),
    "lgram": lambda x: x * x if _number(x) else as_matrix(x) @ _mT(as_matrix(x)),
    "rgram": lambda x: x * x if _number(x) else _mT(as_matrix(x)) @ as_matrix(x),
    "inv_root": _inv_root,
    "eigvecs": _eigvecs,
    "qr_step": _qr_step,
    "sort_rows": lambda x, A, Q: _sorted(x, A, Q, -2),
    "sort_cols": lambda x, A, Q: _sorted(x, A, Q, -1),
    "rows": _rows,
    "cols": _cols,
    "numel": lambda x: float(np.size(x)),
    "trace": lambda x: np.trace(as_matrix(x)) if np.ndim(x) else x,
    "when": lambda c, x, y: x if c > 0 else y,
    "every": _every,
}

# a parameter-shaped expression of g and w that calls the primitive (any parameter shape; state
# that only a matrix product shapes would settle to that product's shape, so g or w gives it)
USES = {
    "matmul": "matmul(matmul(g, transpose(w)), g)",
    "transpose": "matmul(matmul(w, transpose(g)), g)",
    "lgram": "matmul(lgram(g), w)",
    "rgram": "matmul(w, rgram(g))",
    "inv_root": "matmul(inv_root(lgram(g), 4, 1e-6), w)",
    "eigvecs": "matmul(eigvecs(lgram(g)), w)",
    "qr_step": "matmul(qr_step(lgram(g), eigvecs(lgram(w))), w)",
    "sort_rows": "sort_rows(g, lgram(w), eigvecs(lgram(w)))",
    "sort_cols": "sort_cols(g, rgram(w), eigvecs(rgram(w)))",
    "when": "when(3 - t, g - 0.5 * w, 0.1 * w - g)",
    "every": "every(2, g - 0.5 * w, 0.1 * w - g)",
}
