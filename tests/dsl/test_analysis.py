"""Analysis: dead-code elimination, state detection, the structural hash (invariant to names,
order of independent statements and dead code; sensitive to everything else), the functional
fingerprint (equal for programs that compute the same thing) and the validity gate (a report,
never an exception)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs

from dsl import load_rule, parse, to_text
from dsl.analysis import (
    dataflow_graph,
    eliminate_dead_code,
    inputs_read,
    live_statements,
    state_names,
    structural_hash,
    update_depends_on,
)
from dsl.fingerprint import REFERENCE_SHAPES, GateReport, check, fingerprint, state_bytes_per_param
from dsl.ir import INPUTS, Assign, BinOp, Call, Name, Neg, Program, Route, names_read

ADAM = "hparams b1=0.9 b2=0.999 eps=1e-8\nm = lerp(m, g, 1 - b1)\nv = b2 * v + (1 - b2) * g * g\n" \
       "update = m / (1 - b1 ** t) / (sqrt(v) / sqrt(1 - b2 ** t) + eps)\n"
ADAM_RENAMED_REORDERED = "hparams b1=0.9 b2=0.999 eps=1e-8\nvel = b2 * vel + (1 - b2) * g * g\n" \
    "mom = lerp(mom, g, 1 - b1)\njunk = exp(w) * mom\nk = 1 - b1 ** t\n" \
    "update = mom / k / (sqrt(vel) / sqrt(1 - b2 ** t) + eps)\n"

# Pairs that compute exactly the same thing.
EQUIVALENT = {
    "x*2 vs x+x": ("update = g * 2", "update = g + g"),
    "commuted": ("update = 2 * g + w", "update = w + g * 2"),
    "reordered independent statements": ("a = g * g\nb = sign(g)\nupdate = a + b",
                                         "b = sign(g)\na = g * g\nupdate = a + b"),
    "dead code": ("update = sign(g)", "junk = exp(w)\nupdate = sign(g)\nmore = junk * 2\nz = lerp(z, w, 0.5)"),
    "renamed temporaries": ("tmp = g * g\nupdate = tmp / (1 + tmp)", "sq = g * g\nupdate = sq / (1 + sq)"),
    "renamed and reordered state": (ADAM, ADAM_RENAMED_REORDERED),
    "inlined temporary": ("d = g + w\nupdate = d * d", "update = (g + w) * (g + w)"),
    "symmetric state, reordered": ("m = lerp(m, g, 0.1)\nn = lerp(n, g, 0.3)\nupdate = m - 2 * n",
                                   "n = lerp(n, g, 0.3)\nm = lerp(m, g, 0.1)\nupdate = m - 2 * n"),
    "twin state, swapped names": ("m = lerp(m, g, 0.1)\nn = lerp(n, g, 0.1)\nupdate = m - 2 * n",
                                  "n = lerp(n, g, 0.1)\nm = lerp(m, g, 0.1)\nupdate = m - 2 * n"),
    "hparam vs same-valued hparam name": ("hparams a=0.5\nupdate = g * a", "hparams beta=0.5\nupdate = g * beta"),
}
# Pairs that share the function but not the structure: the hash tells them apart.
SAME_FUNCTION_DIFFERENT_STRUCTURE = {"x*2 vs x+x"}   # temporaries are inlined by the hash

DIFFERENT = {
    "sign vs identity": ("update = g", "update = sign(g)"),
    "scale of one term": ("update = sign(g) + g * 2", "update = sign(g) + g * 3"),
    "subtraction order": ("update = g - w", "update = w - g"),
    "lerp operand order": ("m = lerp(m, g, 0.1)\nupdate = m", "m = lerp(g, m, 0.1)\nupdate = m"),
    "state vs temporary": ("update = m\nm = g", "m = g\nupdate = m"),
    "hparam default": (ADAM, ADAM.replace("b1=0.9", "b1=0.8")),
    "weight decay": (ADAM, ADAM.replace("+ eps)\n", "+ eps) + 0.01 * w\n")),
    "extra route": ("update = sign(g)", "route default:\n  update = sign(g)\nroute matrix:\n  update = g"),
    "route name": ("route default:\n  update = g\nroute matrix:\n  update = sign(g)",
                   "route default:\n  update = sign(g)\nroute matrix:\n  update = g"),
    "different twin weights": ("m = lerp(m, g, 0.1)\nn = lerp(n, g, 0.3)\nupdate = m - 2 * n",
                               "m = lerp(m, g, 0.1)\nn = lerp(n, g, 0.3)\nupdate = n - 2 * m"),
}


@pytest.mark.parametrize("case", sorted(EQUIVALENT))
def test_equivalent_programs_share_a_fingerprint(case):
    a, b = (parse(x) for x in EQUIVALENT[case])
    assert fingerprint(a) == fingerprint(b)
    if case in SAME_FUNCTION_DIFFERENT_STRUCTURE:
        assert structural_hash(a) != structural_hash(b)
    else:
        assert structural_hash(a) == structural_hash(b)


@pytest.mark.parametrize("case", sorted(DIFFERENT))
def test_different_programs_differ(case):
    a, b = (parse(x) for x in DIFFERENT[case])
    assert structural_hash(a) != structural_hash(b)
    if case != "route name" and case != "extra route":   # those differ only on parameters the problem routes alike
        assert fingerprint(a) != fingerprint(b)


@pytest.mark.parametrize("factor", ["2", "0.001", "37.5"])
def test_a_constant_factor_on_the_update_shares_the_fingerprint(factor):
    """Fitness is scale-invariant (evaluators.scale: c * update gets the lr grid of update / c), so
    the fingerprint runs its problem at lr / RMS(first update): `c * adam` is adam, trained once.
    The gate still judges the rule at the fixed lr, and its structure stays its own."""
    adam = parse(ADAM)
    scaled = parse(ADAM.replace("update = ", f"update = {factor} * (").rstrip("\n") + ")\n")
    assert fingerprint(scaled) == fingerprint(adam)
    assert structural_hash(scaled) != structural_hash(adam)
    report = check(scaled)
    assert report.ok and report.fingerprint == fingerprint(adam)
    assert fingerprint(parse(ADAM.replace("update = ", f"update = g * {factor} + ")))  != fingerprint(adam)


def test_fingerprint_sees_routes_and_curvature():
    two = parse("route matrix:\n  update = g\nroute default:\n  update = sign(g)")
    swapped = parse("route matrix:\n  update = sign(g)\nroute default:\n  update = g")
    assert fingerprint(two) != fingerprint(swapped)
    assert fingerprint(parse("update = g / (h + 1)")) != fingerprint(parse("update = g / (w * 0 + 1)"))
    assert parse("update = g / (h + 1)").reads_curvature and not parse("x = h\nupdate = g").reads_curvature


def test_fingerprint_is_deterministic_and_hex():
    p = load_rule("builtin:adamw")
    f = fingerprint(p)
    assert f == fingerprint(parse(to_text(p))) and len(f) == 32 and int(f, 16) >= 0
    assert p.structural_hash == structural_hash(parse(to_text(p))) and len(p.structural_hash) == 32


def test_fingerprint_rounds_away_last_bit_noise():
    # lerp and the EMA written out differ in the last bits only
    assert fingerprint(parse("m = lerp(m, g, 0.1)\nupdate = m")) == \
        fingerprint(parse("m = 0.9 * m + 0.1 * g\nupdate = m"))


# -- the structural hash under random renaming, reordering and dead code ------------------------
def _rename(p: Program, suffix: str) -> Program:
    hp = set(p.hparams)

    def fix(e):
        if isinstance(e, Name):
            return Name(e.id + suffix) if e.id not in hp and e.id not in INPUTS else e
        if isinstance(e, Neg):
            return Neg(fix(e.operand))
        if isinstance(e, BinOp):
            return BinOp(e.op, fix(e.left), fix(e.right))
        if isinstance(e, Call):
            return Call(e.fn, tuple(fix(a) for a in e.args))
        return e

    def target(t):
        return t if t == "update" else t + suffix

    routes = tuple(Route(r.name, tuple(Assign(target(s.target), fix(s.value)) for s in r.body)) for r in p.routes)
    return replace(p, routes=routes)


def _swap_first_independent_pair(p: Program) -> Program | None:
    for ri, r in enumerate(p.routes):
        b = list(r.body)
        for i in range(len(b) - 1):
            x, y = b[i], b[i + 1]
            if x.target != y.target and x.target not in names_read(y.value) and y.target not in names_read(x.value):
                b[i], b[i + 1] = y, x
                routes = list(p.routes)
                routes[ri] = Route(r.name, tuple(b))
                return replace(p, routes=tuple(routes))
    return None


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_statements=6, depth=3), st.data())
def test_structural_hash_invariances(p, data):
    h = structural_hash(p)
    assert structural_hash(_rename(p, "_r9")) == h
    assert structural_hash(eliminate_dead_code(p)) == h
    dead = Assign("zz_dead", data.draw(st.sampled_from([Name("g"), Neg(Name("w"))])))
    with_dead = replace(p, routes=tuple(Route(r.name, (dead,) + r.body) for r in p.routes))
    assert structural_hash(with_dead) == h
    swapped = _swap_first_independent_pair(p)
    if swapped is not None:
        assert structural_hash(swapped) == h
    # DCE keeps what matters and is idempotent
    live = eliminate_dead_code(p)
    assert eliminate_dead_code(live) == live
    assert state_names(live) == state_names(p)


# -- dead code and state --------------------------------------------------------------------------
DCE_INPUT = """hparams k=2
a = g * k
a = sign(g)
junk = exp(w)
n = lerp(n, g, 0.5)
update = a + m
m = lerp(m, g, 0.1)
b = m * 2
"""


def test_dead_code_elimination_output():
    p = parse(DCE_INPUT)
    assert live_statements(p.routes[0], p.hparams) == [1, 4, 5]
    assert to_text(eliminate_dead_code(p)) == "hparams k=2\na = sign(g)\nupdate = a + m\nm = lerp(m, g, 0.1)\n"
    assert state_names(p) == ("m",)
    assert inputs_read(p) == frozenset({"g"})
    graph = dataflow_graph(p.routes[0], p.hparams)
    assert graph.graph["state"] == ("n", "m")            # before DCE, n is state too (read first)
    assert graph.has_edge(5, 4) and graph.edges[5, 4]["carry"]   # m's next value feeds next step's update
    assert graph.has_edge(1, 4) and not graph.edges[1, 4]["carry"]


@pytest.mark.parametrize("text, state", [
    ("update = m\nm = g", ("m",)),
    ("m = g\nupdate = m", ()),
    ("m = m + g\nupdate = m", ("m",)),
    ("update = v * g", ("v",)),                                 # never assigned: a zero that stays zero
    ("hparams v=1\nupdate = v * g", ()),
    ("update = g * t * lr + w + h", ()),
    ("a = b\nb = a + g\nupdate = b", ("b",)),
    ("update = p + q\nq = lerp(q, g, 0.5)\np = lerp(p, q, 0.5)", ("p", "q")),
    ("route matrix:\n  update = m\n  m = g\nroute default:\n  update = v + m\n  v = g\n  m = w", ("m", "v")),
    ("x = y\nupdate = g\ny = x", ()),                            # state that update never reads is dead
])
def test_state_is_what_is_read_before_it_is_written(text, state):
    assert state_names(parse(text)) == state


@pytest.mark.parametrize("text, depends", [
    ("update = m\nm = g", True), ("update = w * 2\nm = g", False), ("update = 1", False),
    ("a = g\nupdate = a * 0", True), ("update = m\nm = m + w", False),
    ("route matrix:\n  update = g\nroute default:\n  update = w", False),
])
def test_update_depends_on_g(text, depends):
    assert update_depends_on(parse(text), "g") is depends


@pytest.mark.parametrize("text, per_param_bytes", [
    ("update = sign(g)", 0),
    ("update = m\nm = lerp(m, g, 0.1)", 4 * 2080),
    ("hparams b1=0.9 b2=0.999\nm = lerp(m, g, 1 - b1)\nv = lerp(v, g * g, 1 - b2)\nupdate = m / sqrt(v)", 8 * 2080),
    ("r = lerp(r, row_mean(g * g), 0.1)\nc = lerp(c, col_mean(g * g), 0.1)\nupdate = g / sqrt(factored(r, c))",
     4 * (64 + 32 + 32 + 1)),                    # matrix: 64x1 + 1x32; vector: r is 32, c a scalar
    ("update = g + m\nm = m + 1", 4 * 2),         # a scalar state per tensor
])
def test_state_bytes_per_param(text, per_param_bytes):
    n = sum(math.prod(s) for s in REFERENCE_SHAPES)
    assert n == 2080
    assert state_bytes_per_param(parse(text)) == pytest.approx(per_param_bytes / n, rel=1e-12)


def test_builtin_state_and_bytes():
    for name in ("adam", "adamw"):
        p = load_rule(f"builtin:{name}")
        assert state_names(p) == ("m", "v")
        assert state_bytes_per_param(p) == 8.0


# -- the validity gate: a report, never an exception ------------------------------------------------
@pytest.mark.parametrize("text, ok, reason", [
    ("update = sign(g)", True, ""),
    ("update = w", False, "'update' does not depend on the gradient g"),
    ("update = 1", False, "'update' does not depend on the gradient g"),
    ("update = m\nm = m + w", False, "'update' does not depend on the gradient g"),
    ("update = g / 0", False, "non-finite parameters at step 1 of the fixed problem"),
    ("update = g * 0 + exp(t * 100)", False, "non-finite parameters at step 8 of the fixed problem"),
    ("update = log(g * 0) * 0 + g", False, "non-finite parameters at step 1 of the fixed problem"),
    ("update = orthogonalize(g, g)", False,
     "route 'default': shapes do not resolve: only one element tensors can be converted to Python scalars"),
    ("route matrix:\n  update = g", False, "rule has no 'default' route for a parameter of shape (32,)"),
])
def test_validity_gate(text, ok, reason):
    report = check(parse(text))
    assert isinstance(report, GateReport)
    assert (report.ok, report.reason) == (ok, reason)
    if ok:
        assert report.fingerprint == fingerprint(parse(text)) and report.state_bytes_per_param == 0
    elif reason.startswith("non-finite"):
        assert report.fingerprint is not None and report.state_bytes_per_param is None


def _deep(n: int):
    e = Name("g")
    for _ in range(n):
        e = Neg(e)
    return e


@pytest.mark.parametrize("program, reason", [
    (Program((), (Route("default", (Assign("m", Name("g")),)),)), "the rule never assigns 'update'"),
    (Program((), ()), "the rule has no statements; it must assign 'update'"),
    (Program((), (Route("default", (Assign("g", Name("w")), Assign("update", Name("g")))),)),
     "'g' is an input and cannot be assigned"),
    (Program((), (Route("default", (Assign("update", _deep(5000)),)),)), "RecursionError"),
])
def test_gate_reports_broken_ir_built_without_the_parser(program, reason):
    report = check(program)
    assert not report.ok and report.reason.startswith(reason)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(max_statements=4, depth=3, layouts=(("default",), ("default", "matrix"))))
def test_gate_never_raises_on_random_programs(p):
    report = check(p)
    assert isinstance(report, GateReport)
    if report.ok:
        assert report.reason == "" and report.fingerprint and report.state_bytes_per_param is not None
    else:
        assert report.reason and "\n" not in report.reason
