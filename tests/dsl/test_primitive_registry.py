"""The primitive registry walked entry by entry: a primitive is tested by being registered.

For every entry of `dsl.primitives.PRIMITIVES` (and the operators where it applies): it has a
float64 numpy reference (tests/dsl/primitive_references.py); its facts are well formed; its scalar
form (the one the interpreter and every export run on Python floats) equals the reference on
0, -0.0, ±1, tiny, huge, ±inf and NaN, never raises and returns a float; its function returns a
tensor whenever a tensor goes in; a stacked ensemble run equals the separate runs where the entry
says it batches exactly; and a rule that keeps it in state passes the validity gate with a stable
fingerprint and the state bytes its shapes imply. (Numerics against the reference on tensors, in
float64/float32/bf16, on a group, with ensemble axes: test_primitives.py; interpreter against
export: test_export.py's every-primitive table; both walk the same registry.)
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ensemble_support import assert_stacked_equals_alone
from matrix_references import USES
from primitive_references import EDGE, REF
from zoo_references import one_thread  # noqa: F401  (autouse fixture: one thread)

from dsl import parse
from dsl.fingerprint import REFERENCE_SHAPES, check, fingerprint, state_bytes_per_param
from dsl.ir import ROUTES
from dsl.primitives import KINDS, OPERATORS, PRIMITIVES, Kernel

NAMES = sorted(PRIMITIVES)
EDGE_FLOATS = [float(v) for v in EDGE]
ULP = 2 ** -52


def test_every_entry_has_a_reference_and_well_formed_facts():
    missing = sorted(set(PRIMITIVES) - set(REF))
    assert not missing, f"primitives without a numpy reference in primitive_references.REF: {missing}"
    for table in (PRIMITIVES, OPERATORS):
        for name, e in table.items():
            assert e.name == name and e.doc and "\n" not in e.doc
            assert e.kind in (*KINDS, "operator") and (e.kind == "operator") == (table is OPERATORS)
            assert 1 <= e.min_args <= e.max_args <= 4 and callable(e.fn) and isinstance(e.kernel, Kernel)
            assert isinstance(e.sign, bool) or callable(e.sign)
            assert e.weight > 0 and all(isinstance(c, float) for c in e.constants)
            assert not e.constants or e.max_args > e.min_args, f"{name}: constants for an optional argument it lacks"
            assert e.scalar is not None or name in ("axpy", "addcmul", "addcdiv")
            assert e.route in (None, *ROUTES) and (e.branch is not None) == (e.kind == "control" and e.lower is None)
            if e.kind in ("matrix", "control"):
                assert name in USES, f"{name}: a {e.kind} primitive needs its use in matrix_references.USES"


def _same(got: float, want: float, rel: float) -> bool:
    """Equal to rounding (`rel`), NaN equal to NaN, infinities with their sign."""
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    if math.isinf(want) or math.isinf(got):
        return got == want
    return abs(got - want) <= rel * max(abs(want), 1e-300)


def _scalar_grid(name: str):
    e = PRIMITIVES[name]
    for n in sorted({e.min_args, e.max_args}):
        yield from itertools.product(EDGE_FLOATS, repeat=n)


@pytest.mark.parametrize("name", NAMES)
def test_scalar_form_equals_the_reference_and_never_raises(name):
    """The IEEE scalar semantics: x / 0 is inf, exp(1000) is inf, log(0) is -inf; never an exception."""
    e = PRIMITIVES[name]
    bad = []
    for args in _scalar_grid(name):
        got = e.scalar(*args)
        assert isinstance(got, float), (name, args, got)
        with np.errstate(all="ignore"):
            floats = [np.float64(a) for a in args]
            ref = REF[name](*[[a] for a in floats]) if e.kind == "group" else REF[name](*floats)
        if not _same(got, float(ref), 4 * ULP):
            bad.append((args, got, float(ref)))
    assert not bad, f"{name}: {len(bad)} mismatches, e.g. {bad[:3]}"


@pytest.mark.parametrize("name", sorted(n for n, e in OPERATORS.items() if e.scalar is not None))
def test_operator_scalar_form_equals_torch_float64(name):
    e = OPERATORS[name]
    for a, b in itertools.product(EDGE_FLOATS, repeat=2):
        got = e.scalar(a, b)
        want = float(e.fn(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)))
        assert _same(float(got), want, 4 * ULP), (name, a, b, got, want)
        if want == 0 and got == 0:
            assert math.copysign(1, got) == math.copysign(1, want), (name, a, b)   # 1 / x keeps its sign


@pytest.mark.parametrize("name", [n for n in NAMES if PRIMITIVES[n].kind not in ("group", "matrix", "control")])
def test_a_tensor_in_is_a_tensor_out(name):
    """Wherever a tensor meets Python floats, the function returns a tensor (the interpreter and
    the export rely on it)."""
    e = PRIMITIVES[name]
    x = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    for n in sorted({e.min_args, e.max_args}):
        for k in range(n):
            args = [x if j == k else (3.0 if name == "orthogonalize" and j == 1 else 0.25) for j in range(n)]
            if name == "orthogonalize" and k == 1:
                args[1] = torch.tensor(3.0, dtype=torch.float64)
            out = e.fn(*args, bd=0)
            assert isinstance(out, torch.Tensor), (name, k, out)


# -- a rule that uses the primitive -----------------------------------------------------------------
def _call(name: str, first: str = "g") -> str:
    """A call of `name` on tensors and the entry's constants: name(g, w, 0.25) or the like (a
    matrix or control primitive: its parameter-shaped use, matrix_references.USES)."""
    if name in USES:
        return USES[name]
    e = PRIMITIVES[name]
    args = [first, "w", "0.25"][: e.min_args]
    if e.max_args > e.min_args and e.constants:
        args.append(repr(e.constants[-1]))
    return f"{name}({', '.join(args)})"


def _stateful_rule(name: str):
    return parse(f"m = lerp(m, {_call(name)}, 0.1)\nupdate = g + 0.001 * tanh(m)\n", name=f"uses_{name}")


@pytest.mark.parametrize("name", NAMES)
def test_gate_fingerprint_and_state_bytes(name):
    program = _stateful_rule(name)
    report = check(program)
    assert report.ok, (name, report.reason)
    assert report.fingerprint == fingerprint(_stateful_rule(name))          # the same rule built again
    e = PRIMITIVES[name]
    # the state m has the shape of the primitive's result on each reference shape
    shapes = []
    for s in REFERENCE_SHAPES:
        if name in USES:                  # parameter-shaped by construction
            shapes.append(torch.Size(s))
            continue
        g = torch.ones(s)
        args = [g, g, 0.25][: e.min_args] + list(e.constants[-1:] if e.max_args > e.min_args else [])
        out = e.fn(*[[g]] * e.min_args, bd=0)[0] if e.kind == "group" else e.fn(*args, bd=0)
        shapes.append(torch.broadcast_shapes(out.shape))
    expected = sum(4 * math.prod(s) for s in shapes) / sum(math.prod(s) for s in REFERENCE_SHAPES)
    assert state_bytes_per_param(program) == report.state_bytes_per_param == expected


@pytest.mark.parametrize("name", [n for n in NAMES if PRIMITIVES[n].batches_exactly])
def test_batches_exactly_where_the_entry_says_so(name):
    """A stacked ensemble (batch_dims=1, one lr per member) equals the members trained alone, in
    float32, as `evaluators.ensemble` relies on for every rule whose primitives all claim it."""
    program = parse(f"m = lerp(m, {_call(name)}, 0.2)\nupdate = m + 0.1 * g\n")
    assert_stacked_equals_alone(program, [(6, 4), (5,), (2, 3, 2)], torch.float32, steps=3, seed=7)
