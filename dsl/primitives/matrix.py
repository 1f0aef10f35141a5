"""Matrix algebra: matmul transpose lgram rgram inv_root eigvecs qr_step sort_rows sort_cols trace, and
the shape scalars rows cols numel.

Every tensor is read as a matrix, its *matrix view*: the leading `bd` ensemble axes stay, the rest
is (rows, cols) = (shape[0], prod(shape[1:])): a 2-D weight as it is, a conv filter as
out x (in * kh * kw) (as Muon flattens it), a vector as one row 1 x n. A number (a 0-d tensor:
a scalar parameter, or state before its first step) is c I: a product with it scales, and the
functions of numbers are numbers; so state starting at zero settles to its matrix shape. A
result with the matrix shape of an operand that is not 2-D takes that operand's shape back (so
L @ G of a conv filter's gradient is filter-shaped); other results are matrices, such as the
rows x rows and cols x cols state of Shampoo and SOAP, whose shapes the interpreter discovers.

- `lgram(x)` = X Xᵀ and `rgram(x)` = Xᵀ X: Shampoo's Kronecker factors (Gupta, Koren & Singer
  2018, "Shampoo: Preconditioned Stochastic Tensor Optimization"), in the AlgoPerf form of
  Distributed Shampoo (Shi et al. 2023, arXiv:2309.06497);
- `inv_root(A, p[, eps])`: A^(-1/p) of a symmetric A by its eigendecomposition, the eigenvalues
  shifted up by -min(lambda_min, 0) (so numerically PSD) and by eps, as Distributed Shampoo's
  `_matrix_root_eigen` does;
- `eigvecs(A)`, `qr_step(A, Q)`, `sort_rows(x, A, Q)`, `sort_cols(x, A, Q)`: SOAP's eigenbasis
  (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321):
  the eigenvectors by descending eigenvalue, then one power iteration A Q with a QR
  decomposition, its columns first sorted by the estimated eigenvalues diag(Qᵀ A Q), descending,
  and the same permutation applied to the second moment's rows (L's order) or columns (R's).

The eigendecomposition's primitives do not batch exactly (`batches_exactly=False`): the null
space of a rank-deficient factor (the first steps' G Gᵀ) has no preferred basis, and a stacked
run (whose batched products round differently) gets another one than E separate runs do: SOAP's
rotated Adam then differs, and inv_root's eps amplifies the rounding there. An lr grid of a rule
that calls them trains one member after another unless asked otherwise (`evaluators.ensemble`).

Of numbers: matmul is a * b, transpose x, the Grams x * x, inv_root (x - min(x, 0) + eps) ** (-1/p),
eigvecs and qr_step 1 (as LAPACK's 1 x 1 Q), the sorts x; rows, cols and numel are 1.
"""

from __future__ import annotations

import math
import operator

import torch

from .common import _constant, _first_tensor, _tensor, passthrough
from .elementwise import _scalar_min
from .registry import primitive
from .scalars import _div, _pow


def _number(x, bd=0) -> bool:
    """A number (a Python float, or a tensor with no axes but ensemble axes): c I in a product."""
    return not isinstance(x, torch.Tensor) or x.dim() <= bd


def _as_matrix(x, bd=0):
    """The matrix view of a tensor that is not a number (see the module docstring)."""
    m = x.dim() - bd
    if m == 2:
        return x
    if m == 1:
        return x.reshape(*x.shape[:bd], 1, x.shape[-1])
    return x.reshape(*x.shape[:bd + 1], -1)


def _back(out, operands, bd):
    """`out` in the shape of the first operand that is not 2-D and whose matrix view has out's shape."""
    for x in operands:
        if not _number(x, bd) and x.dim() - bd != 2 and _as_matrix(x, bd).shape == out.shape:
            return out.reshape(x.shape)
    return out


def _align(xs, bd):
    """xs as tensors of one dtype (Python floats become 0-d tensors)."""
    like = _first_tensor(*xs)
    ts = [_tensor(x, like) for x in xs]
    dtype = ts[0].dtype
    for t in ts[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return [t.to(dtype) for t in ts]


def _scale(c, x, bd):
    """c x for a number c (its ensemble axes broadcast against x's)."""
    return c.reshape(c.shape + (1,) * (x.dim() - c.dim())) * x if c.dim() else c * x


def _mm(a, b, bd):
    """a b of matrix views, where a number is c I: c b or a c."""
    if _number(a, bd):
        return _scale(a, _as_matrix(b, bd), bd) if not _number(b, bd) else a * b
    if _number(b, bd):
        return _scale(b, _as_matrix(a, bd), bd)
    return _as_matrix(a, bd) @ _as_matrix(b, bd)


@primitive("matmul", "a b", "matrix", "matmul(a, b): the matrix product of the matrix views (a number is c I)",
           scalar=operator.mul, route="matrix", weight=0.3)
def _matmul(a, b, bd=0):
    a, b = _align((a, b), bd)
    out = _mm(a, b, bd)
    return _back(out, (b, a), bd) if not (_number(a, bd) and _number(b, bd)) else out


@primitive("transpose", "x", "matrix", "transpose(x): the transposed matrix view", scalar=passthrough,
           route="matrix", weight=0.2)
def _transpose(x, bd=0):
    x, = _align((x,), bd)
    return x.clone() if _number(x, bd) else _as_matrix(x, bd).mT.clone()   # a copy: a view would alias x


def _scalar_gram(x):
    """x * x (the Gram of a number)."""
    return x * x


@primitive("lgram", "x", "matrix", "lgram(x) = X Xᵀ (rows x rows): Shampoo's left factor", scalar=_scalar_gram,
           route="matrix", weight=0.3)
def _lgram(x, bd=0):
    x, = _align((x,), bd)
    return x * x if _number(x, bd) else _mm(x, _as_matrix(x, bd).mT, bd)


@primitive("rgram", "x", "matrix", "rgram(x) = Xᵀ X (cols x cols): Shampoo's right factor", scalar=_scalar_gram,
           route="matrix", weight=0.3)
def _rgram(x, bd=0):
    x, = _align((x,), bd)
    return x * x if _number(x, bd) else _as_matrix(x, bd).mT @ _as_matrix(x, bd)


def _scalar_inv_root(a, p, eps=1e-12):
    """inv_root of a number: (a - min(a, 0) + eps) ** (-1 / p), IEEE results."""
    return _pow(a - _scalar_min(a, 0.0) + eps, _div(-1.0, p))


@primitive("inv_root", "A p [eps]", "matrix",
           "inv_root(A, p[, eps=1e-12]) = A^(-1/p) by eigh, eigenvalues shifted to >= 0, + eps (Shampoo)",
           scalar=_scalar_inv_root, constants=(1e-12, 1e-8, 1e-6), batches_exactly=False, route="matrix", weight=0.2)
def _inv_root(A, p, eps=1e-12, bd=0):
    A, = _align((A,), bd)
    alpha = _div(-1.0, p) if not isinstance(p, torch.Tensor) else -1.0 / p
    if _number(A, bd):
        return (A - torch.clamp(A, max=0.0) + eps).pow(alpha)
    lam, Q = torch.linalg.eigh(_as_matrix(A, bd))
    low = lam.amin(dim=-1, keepdim=True) if lam.shape[-1] else lam.new_zeros(lam.shape[:-1] + (1,))  # 0 x 0: none
    lam = lam - torch.clamp(low, max=0.0)
    lam = lam + eps
    return Q * lam.pow(alpha).unsqueeze(-2) @ Q.mT


def _scalar_one(*args):
    """1: the eigenvector (and QR factor) of a number, and its rows, cols and numel."""
    return 1.0


@primitive("eigvecs", "A", "matrix", "eigvecs(A): eigenvectors of the symmetric A, columns by descending eigenvalue",
           scalar=_scalar_one, batches_exactly=False, route="matrix", weight=0.1)
def _eigvecs(A, bd=0):
    A, = _align((A,), bd)
    return torch.ones_like(A) if _number(A, bd) else torch.linalg.eigh(_as_matrix(A, bd))[1].flip(-1)


def _eigen_order(A, Q, bd):
    """(A Q, the column order of the estimated eigenvalues diag(Qᵀ A Q), descending; None for a number)."""
    AQ = _mm(A, Q, bd)
    if _number(AQ, bd):
        return AQ, None
    QQ = _as_matrix(Q, bd) if not _number(Q, bd) else Q.reshape(Q.shape + (1, 1)) if Q.dim() else Q
    return AQ, torch.argsort((QQ * AQ).sum(dim=-2), dim=-1, descending=True)


@primitive("qr_step", "A Q", "matrix",
           "qr_step(A, Q): Q of the QR of A Q, its columns sorted by diag(Qᵀ A Q), descending (SOAP)",
           scalar=_scalar_one, batches_exactly=False, route="matrix", weight=0.1)
def _qr_step(A, Q, bd=0):
    A, Q = _align((A, Q), bd)
    AQ, order = _eigen_order(A, Q, bd)
    if order is None:
        return torch.ones_like(AQ)
    return torch.linalg.qr(torch.take_along_dim(AQ, order.unsqueeze(-2), dim=-1)).Q


def _sorted(x, A, Q, bd, axis):
    x, A, Q = _align((x, A, Q), bd)
    order = None if _number(x, bd) else _eigen_order(A, Q, bd)[1]
    if order is None:                  # a number, or no order to sort by: nothing moves
        return x.clone()
    index = order.unsqueeze(-1) if axis == -2 else order.unsqueeze(-2)
    return _back(torch.take_along_dim(_as_matrix(x, bd), index, dim=axis), (x,), bd)


@primitive("sort_rows", "x A Q", "matrix",
           "sort_rows(x, A, Q): x's rows in the order qr_step(A, Q) sorts its columns (SOAP's second moment)",
           scalar=passthrough, batches_exactly=False, route="matrix", weight=0.1)
def _sort_rows(x, A, Q, bd=0):
    return _sorted(x, A, Q, bd, -2)


@primitive("sort_cols", "x A Q", "matrix",
           "sort_cols(x, A, Q): x's columns in the order qr_step(A, Q) sorts its columns (SOAP)",
           scalar=passthrough, batches_exactly=False, route="matrix", weight=0.1)
def _sort_cols(x, A, Q, bd=0):
    return _sorted(x, A, Q, bd, -1)


@primitive("trace", "x", "reduction", "trace(x): sum of the diagonal of the matrix view (a number: itself)",
           scalar=passthrough, weight=0.2)
def _trace(x, bd=0):
    if _number(x, bd):
        return x.clone()
    diag = _as_matrix(x, bd).diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    return diag.reshape(x.shape[:bd] + (1,) * (x.dim() - bd)) if bd else diag


# -- shape scalars of the matrix view (Moonlight's 0.2 * sqrt(max(rows, cols))) -------------------
@primitive("rows", "x", "structure", "rows of the matrix view (shape[0]; 1 for vectors and numbers)",
           scalar=_scalar_one, sign=True, fresh=False, weight=0.2)
def _rows(x, bd=0):
    return _constant(float(x.shape[bd]) if x.dim() - bd >= 2 else 1.0, x)


@primitive("cols", "x", "structure", "cols of the matrix view (prod(shape[1:]); a vector's length)",
           scalar=_scalar_one, sign=True, fresh=False, weight=0.2)
def _cols(x, bd=0):
    m = x.dim() - bd
    return _constant(float(math.prod(x.shape[bd + 1:] if m >= 2 else x.shape[bd:])), x)


@primitive("numel", "x", "structure", "number of entries (ensemble axes excluded)", scalar=_scalar_one, sign=True,
           fresh=False, weight=0.2)
def _numel(x, bd=0):
    return _constant(float(math.prod(x.shape[bd:])), x)
