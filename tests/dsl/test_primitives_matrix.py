"""The matrix and control primitives against their float64 numpy references (matrix_references.py).

Walks the registry's `matrix` and `control` kinds (the elementwise walk of test_primitives.py
covers the rest): every matrix primitive on a tall and a wide matrix, a vector (one row), a conv
filter (its out x in*kh*kw view) and a number (c I), in float64 against numpy and in float32 to
float32 rounding, with ensemble axes (bd = 1) equal to each member alone, through the compiled
interpreter as through the function; eigenvectors compared up to their signs (numpy's and
torch's LAPACK calls may pick either). Then the facts the primitives rest on: inv_root shifts
negative eigenvalues up and damps by eps as Distributed Shampoo does, eigvecs sorts descending,
qr_step re-sorts the columns (and sort_rows/sort_cols permute alike), numbers settle state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matrix_references import MATRIX_REF

from dsl import parse
from dsl.compiler import compile_route
from dsl.interpreter import execute, specialize
from dsl.primitives import PRIMITIVES

MATRIX = sorted(n for n, p in PRIMITIVES.items() if p.kind == "matrix")
CONTROL = sorted(n for n, p in PRIMITIVES.items() if p.kind == "control")
SHAPES = {"tall": (5, 3), "wide": (3, 5), "vector": (4,), "filter": (2, 3, 2, 2), "number": ()}
SIGNED = {"eigvecs", "qr_step"}          # eigenvector / QR columns: up to a sign each


def _rows(shape) -> int:
    return shape[0] if len(shape) >= 2 else 1


def _cols(shape) -> int:
    return int(np.prod(shape[1:])) if len(shape) >= 2 else (shape[0] if shape else 1)


def _psd(n: int, rng, shift: float = 0.0) -> np.ndarray:
    x = rng.standard_normal((n, n + 2))
    return x @ x.T / n - shift * np.eye(n)


def _args(name: str, shape, rng) -> list:
    """Arguments of `name` for a parameter of `shape` (numpy; numbers stay 0-d)."""
    x = rng.standard_normal(shape)
    r, c = _rows(shape), _cols(shape)

    def square(n):
        return np.asarray(rng.standard_normal()) if not shape else _psd(n, rng)

    def basis(n):
        return np.asarray(1.0) if not shape else np.linalg.qr(rng.standard_normal((n, n)))[0]

    return {
        "matmul": [x, rng.standard_normal((c, 2)) if shape else np.asarray(rng.standard_normal())],
        "transpose": [x], "lgram": [x], "rgram": [x],
        "inv_root": [square(r), 4.0, 1e-6],
        "eigvecs": [square(r)],
        "qr_step": [square(r), basis(r)],
        "sort_rows": [x, square(r), basis(r)],
        "sort_cols": [x, square(c), basis(c)],
    }[name]


def _signs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a with each column's sign flipped to agree with b's."""
    s = np.sign(np.sum(a * b, axis=-2, keepdims=True))
    return a * np.where(s == 0, 1.0, s)


def _compare(name: str, got: torch.Tensor, ref: np.ndarray, rtol: float, atol: float) -> None:
    got = got.detach().double().numpy()
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (name, got.shape, ref.shape)
    if name in SIGNED and got.ndim >= 2:
        got = _signs(got, ref)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("where", list(SHAPES))
@pytest.mark.parametrize("name", MATRIX)
def test_matches_numpy_float64_and_float32(name, where):
    rng = np.random.default_rng(7)
    args = _args(name, SHAPES[where], rng)
    ref = MATRIX_REF[name](*args)
    fn = PRIMITIVES[name].fn
    for dtype, rtol, atol in ((torch.float64, 1e-10, 1e-12), (torch.float32, 2e-4, 2e-5)):
        tensors = [torch.tensor(a, dtype=dtype) if isinstance(a, np.ndarray) else a for a in args]
        out = fn(*tensors, bd=0)
        assert out.dtype == dtype, (name, where)
        _compare(name, out, ref, rtol, atol)


@pytest.mark.parametrize("name", MATRIX)
def test_ensemble_axes_equal_each_member(name):
    rng = np.random.default_rng(8)
    members = [_args(name, SHAPES["tall"], rng) for _ in range(3)]
    stacked = [torch.tensor(np.stack([m[k] for m in members])) if isinstance(members[0][k], np.ndarray)
               else members[0][k] for k in range(len(members[0]))]
    got = PRIMITIVES[name].fn(*stacked, bd=1)
    for i, m in enumerate(members):
        alone = PRIMITIVES[name].fn(*[torch.tensor(a) if isinstance(a, np.ndarray) else a for a in m], bd=0)
        _compare(name, got[i], alone.numpy(), 1e-10, 1e-12)


def _interpret(text: str, shapes, seed: int = 0, steps: int = 1):
    """`text` run by the compiled interpreter on float64 parameters of `shapes` (g random, w ones)."""
    program = parse(text)
    plan = compile_route(program.routes[0], program.hparams)
    gen = torch.Generator().manual_seed(seed)
    g = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    w = [torch.ones(s, dtype=torch.float64) for s in shapes]
    spec = specialize(plan, [x.shape for x in g], torch.float64, hparams=program.hparams)
    states = {s: [torch.zeros(spec.state_shapes[s][i], dtype=torch.float64) for i in range(len(g))]
              for s in plan.states}
    for t in range(1, steps + 1):
        update, states, _ = execute(plan, g=g, w=w, h=None, states=states, t=t, lr=1.0, hparams=program.hparams,
                                    spec=spec)
    return g, update, states, spec


def test_the_interpreter_runs_the_same_functions():
    g, update, _, _ = _interpret("update = matmul(inv_root(lgram(g), 2, 1e-6), g) + sort_rows(g, lgram(g), "
                                 "eigvecs(lgram(g)))", list(SHAPES.values()))
    for x, u in zip(g, update):
        a = x.numpy()
        ref = MATRIX_REF["matmul"](MATRIX_REF["inv_root"](MATRIX_REF["lgram"](a), 2.0, 1e-6), a) + \
            MATRIX_REF["sort_rows"](a, MATRIX_REF["lgram"](a), MATRIX_REF["eigvecs"](MATRIX_REF["lgram"](a)))
        np.testing.assert_allclose(u.numpy(), ref, rtol=1e-9, atol=1e-11)


def test_state_settles_to_matrix_shapes():
    """State starts as a number (c I): the factors settle to rows x rows and cols x cols, matrix
    products of a filter's view take the filter's shape back."""
    _, update, states, spec = _interpret("L = lerp(L, lgram(g), 0.1)\nR = lerp(R, rgram(g), 0.1)\n"
                                         "update = matmul(matmul(L, g), R)", list(SHAPES.values()), steps=2)
    for shape, u, L, R in zip(SHAPES.values(), update, states["L"], states["R"]):
        r, c = _rows(shape), _cols(shape)
        assert u.shape == shape
        assert L.shape == ((r, r) if shape else ()) and R.shape == ((c, c) if shape else ())


def test_inv_root_is_distributed_shampoos():
    """Eigenvalues shifted up by -min(lambda_min, 0), plus eps, to the power -1/p: an indefinite
    matrix's root is finite; for a PSD one, X^-p is A + eps I."""
    rng = np.random.default_rng(3)
    A = torch.tensor(_psd(4, rng))
    X = PRIMITIVES["inv_root"].fn(A, 2.0, 1e-3)
    torch.testing.assert_close(torch.linalg.matrix_power(X, -2), A + 1e-3 * torch.eye(4, dtype=A.dtype),
                               rtol=1e-9, atol=1e-10)
    lam = torch.linalg.eigvalsh(A - 0.5 * torch.eye(4, dtype=A.dtype))
    assert lam.min() < 0
    Y = PRIMITIVES["inv_root"].fn(A - 0.5 * torch.eye(4, dtype=A.dtype), 4.0, 1e-6)
    assert torch.isfinite(Y).all()
    want = torch.sort(1 / (lam - lam.min() + 1e-6) ** 0.25).values
    torch.testing.assert_close(torch.sort(torch.linalg.eigvalsh(Y)).values, want, rtol=1e-9, atol=0)


def test_eigvecs_descend_and_qr_step_resorts():
    """eigvecs: columns by descending eigenvalue (SOAP flips eigh's ascending order); qr_step with
    those columns reversed puts them back in order, and sort_rows/sort_cols apply that order."""
    rng = np.random.default_rng(4)
    A = torch.tensor(_psd(5, rng))
    Q = PRIMITIVES["eigvecs"].fn(A)
    est = torch.diagonal(Q.T @ A @ Q)
    assert torch.all(est[:-1] >= est[1:])
    reversed_q = Q.flip(-1)
    step = PRIMITIVES["qr_step"].fn(A, reversed_q)
    new = torch.diagonal(step.T @ A @ step)
    assert torch.all(new[:-1] >= new[1:] - 1e-9)
    x = torch.arange(25.0, dtype=torch.float64).reshape(5, 5)
    torch.testing.assert_close(PRIMITIVES["sort_rows"].fn(x, A, reversed_q), x.flip(0))
    torch.testing.assert_close(PRIMITIVES["sort_cols"].fn(x, A, reversed_q), x.flip(1))


@pytest.mark.parametrize("name", CONTROL)
def test_control_primitives_choose_by_a_scalar_of_t(name):
    """when(c, x, y) is x where c > 0 (NaN: y); every(k, x, y) is x when (t - 1) mod k < 1."""
    text = {"when": "update = when(3 - t, g, 2 * g)", "every": "update = every(3, g, 2 * g)"}[name]
    program = parse(text)
    plan = compile_route(program.routes[0], program.hparams)
    g = [torch.ones(3, dtype=torch.float64)]
    spec = specialize(plan, [g[0].shape], torch.float64, hparams={})
    got = [float(execute(plan, g=g, w=g, h=None, states={}, t=t, lr=1.0, hparams={}, spec=spec)[0][0][0])
           for t in range(1, 8)]
    want = {"when": [1, 1, 2, 2, 2, 2, 2], "every": [1, 2, 2, 1, 2, 2, 1]}[name]
    assert got == want
    ref = [MATRIX_REF[name](3 - t, 1.0, 2.0) if name == "when" else MATRIX_REF[name](3.0, 1.0, 2.0, t=t)
           for t in range(1, 8)]
    assert ref == want
