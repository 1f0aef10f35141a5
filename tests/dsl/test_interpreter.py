"""The compiled, foreach interpreter against a naive tree-walking reference on random programs
(hypothesis), plus directed cases for what the compiler does on the way: common subexpressions,
scalar precomputation, fused kernels, in-place writes into dead buffers, aliasing between state,
inputs that must never be written, and state whose shapes settle (Adafactor factors)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from strategies import programs
from torch import nn

from dsl import ProgramOptimizer, RuleError, RuleValidationError, load_rule, parse
from dsl.analysis import eliminate_dead_code
from dsl.compiler import compile_route
from dsl.interpreter import execute, specialize
from dsl.ir import INPUTS, OUTPUT, BinOp, Call, Name, Neg, Num, Program, Route, names_read
from dsl.primitives import PRIMITIVES

SHAPES = [(5, 3), (4,), (2, 3, 2), ()]
LR = 0.1


# -- a naive reference: walk the IR, one tensor at a time, no compiler -----------------------------
def _scalar_binop(op, a: float, b: float) -> float:
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float({"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "**": torch.pow}[op](x, y))


def _tensor_binop(op, a, b):
    if op == "**" and not isinstance(a, torch.Tensor):
        return torch.pow(a, b)
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
            "**": lambda: a ** b}[op]()


class Reference:
    """Values are floats (shared by the group: hparams, t, lr, literals) or lists of tensors."""

    def __init__(self, program: Program, route_of):
        self.p, self.route_of = program, route_of

    def ev(self, e, env: dict, n: int):
        if isinstance(e, Num):
            return e.value
        if isinstance(e, Name):
            return env[e.id]
        if isinstance(e, Neg):
            v = self.ev(e.operand, env, n)
            return -v if isinstance(v, float) else [-x for x in v]
        if isinstance(e, BinOp):
            a, b = self.ev(e.left, env, n), self.ev(e.right, env, n)
            if isinstance(a, float) and isinstance(b, float):
                return _scalar_binop(e.op, a, b)
            a_, b_ = (a if isinstance(a, list) else [a] * n), (b if isinstance(b, list) else [b] * n)
            return [_tensor_binop(e.op, x, y) for x, y in zip(a_, b_)]
        assert isinstance(e, Call)
        prim = PRIMITIVES[e.fn]
        args = [self.ev(a, env, n) for a in e.args]
        step = {"t": env["t"]} if e.fn == "every" else {}       # every's choice depends on the step
        if all(isinstance(a, float) for a in args):
            return float(prim.fn(*[torch.tensor(a, dtype=torch.float64) for a in args], bd=0, **step)
                         if prim.kind != "group" else prim.fn(*[torch.tensor(a, dtype=torch.float64) for a in args]))
        if prim.kind == "group":
            return list(prim.fn(*args, bd=0))
        if prim.kind == "control":     # a choice by a number: the taken branch, broadcast to a list
            taken = prim.fn(*args, bd=0, **step)
            return taken if isinstance(taken, list) else [torch.tensor(taken, dtype=torch.float64)] * n
        out = [prim.fn(*[a[i] if isinstance(a, list) else a for a in args], bd=0) for i in range(n)]
        # an expression that reads a tensor is a tensor, even where a primitive passes a float through
        return [x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64) for x in out]

    def run_route(self, route, g, w, h, states, t, w0=None):
        n = len(g)
        env = {"g": g, "w": w, "h": h, "w0": w0 if w0 is not None else w, "t": float(t), "lr": LR, **self.p.hparams}
        for s, v in states.items():
            env.setdefault(s, v)
        for st in route.body:
            env[st.target] = self.ev(st.value, env, n)
        return env[OUTPUT], {s: env[s] for s in states}

    def state_names(self, route):
        assigned, out = set(), []
        for st in route.body:
            for name in names_read(st.value):
                if name not in assigned and name not in INPUTS and name not in self.p.hparams and name not in out:
                    out.append(name)
            assigned.add(st.target)
        return out

    def train(self, init, grads, curv):
        params = [x.clone() for x in init]
        start = [x.clone() for x in init]
        routes = {}
        for i, x in enumerate(params):
            routes.setdefault(self.route_of(x), []).append(i)
        states = {}
        for rname, idx in routes.items():
            route = self.p.route(rname)
            names = self.state_names(route)
            shapes = {s: [torch.Size([])] * len(idx) for s in names}
            for _ in range(8):                         # the shapes state settles to, as `specialize` finds them
                st = {s: [torch.zeros(sh, dtype=torch.float64) for sh in shapes[s]] for s in names}
                _, new = self.run_route(route, [grads[0][i] for i in idx], [params[i] for i in idx],
                                        [curv[i] for i in idx], st, 1)
                new_shapes = {s: [v.shape if isinstance(v, torch.Tensor) else torch.Size([]) for v in
                                  (new[s] if isinstance(new[s], list) else [torch.tensor(new[s])] * len(idx))]
                              for s in names}
                if new_shapes == shapes:
                    break
                shapes = new_shapes
            states[rname] = {s: [torch.zeros(sh, dtype=torch.float64) for sh in shapes[s]] for s in names}
        for k, gk in enumerate(grads, start=1):
            for rname, idx in routes.items():
                upd, new = self.run_route(self.p.route(rname), [gk[i] for i in idx], [params[i] for i in idx],
                                          [curv[i] for i in idx], states[rname], k, [start[i] for i in idx])
                states[rname] = {s: (v if isinstance(v, list) else [torch.tensor(v, dtype=torch.float64)] * len(idx))
                                 for s, v in new.items()}
                for j, i in enumerate(idx):
                    u = upd[j] if isinstance(upd, list) else upd
                    params[i] = params[i] - LR * u
        return params


def _route_of(program: Program):
    def route_of(x):
        return "matrix" if "matrix" in program.route_names and x.dim() >= 2 else "default"
    return route_of


def _problem(seed: int, steps: int = 3, rel: float = 0.0):
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES] for _ in range(steps)]
    curv = [torch.rand(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    if rel:
        bump = torch.Generator().manual_seed(seed + 1)
        init = [x * (1 + rel * torch.randn(x.shape, generator=bump, dtype=torch.float64)) for x in init]
        grads = [[x * (1 + rel * torch.randn(x.shape, generator=bump, dtype=torch.float64)) for x in gk]
                 for gk in grads]
    return init, grads, curv


def _run_compiled(program, init, grads, curv):
    params = [nn.Parameter(x.clone()) for x in init]
    opt = ProgramOptimizer(params, program, lr=LR)
    for gk in grads:
        for p, x in zip(params, gk):
            p.grad = x.clone()
        opt.update_curvature(dict(zip(params, curv)))
        opt.step()
        for p, x in zip(params, gk):           # the interpreter never writes into g
            assert torch.equal(p.grad, x) or (torch.isnan(p.grad) == torch.isnan(x)).all()
    return [p.detach() for p in params], opt


LAYOUTS = (("default",), ("default", "matrix"))


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(programs(max_statements=5, depth=3, layouts=LAYOUTS) | programs(max_statements=4, depth=2, layouts=LAYOUTS,
                                                                        calls=True))
def test_compiled_interpreter_matches_naive_reference(program):
    assume("hbeta" not in program.hparams)
    # the compiler refuses an update that reads no tensor; make every update read g
    program = replace(program, routes=tuple(
        Route(r.name, tuple(replace(s, value=BinOp("+", s.value, Name("g"))) if s.target == OUTPUT else s
                            for s in r.body)) for r in program.routes))
    init, grads, curv = _problem(0)
    try:
        got, opt = _run_compiled(program, init, grads, curv)
    except RuleError:
        assume(False)
    ref = Reference(eliminate_dead_code(program), _route_of(program))   # as compiled: live code only
    want = ref.train(init, grads, curv)
    bumped = ref.train(*_problem(0, rel=1e-12))
    compared = 0
    for a, b, c in zip(got, want, bumped):
        b, c = b.expand_as(a), c.expand_as(a)
        same_nan = torch.isnan(b) & torch.isnan(c)
        assert torch.isnan(a)[same_nan].all(), program
        same_inf = torch.isinf(b) & (b == c)
        assert (a[same_inf] == b[same_inf]).all(), program
        stable = torch.isfinite(b) & torch.isfinite(c) & ((b - c).abs() <= 1e-9 * (1 + b.abs()))
        bad = stable & ~((a - b).abs() <= 1e-7 * (1 + b.abs()))      # NaN in `a` is bad too
        assert not bad.any(), (program, a[bad], b[bad])
        compared += int(stable.sum())


# -- directed cases ------------------------------------------------------------------------------------
def _plan(text: str, route: str = "default"):
    p = parse(text)
    return compile_route(p.route(route), p.hparams)


def test_common_subexpressions_are_computed_once():
    plan = _plan("a = sign(g) * 2\nupdate = sign(g) + a * sign(g) + lerp(g, w, 0.5) + lerp(g, w, 0.5)")
    ops = [i.op for i in plan.tensor_instrs]
    assert ops.count("sign") == 1 and ops.count("lerp") == 1


def test_commutative_cse_respects_the_sign_of_zero():
    p = parse("update = 1 / (g * 0.0) + 1 / (g * -0.0)")
    x = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = ProgramOptimizer([x], p, lr=1.0)
    x.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    assert torch.isnan(x).all()                                  # inf + -inf, not inf + inf


def test_scalars_are_computed_once_as_python_floats():
    plan = _plan(load_rule_text("adam"))
    assert all(i.scalar for i in plan.scalar_instrs) and len(plan.scalar_instrs) >= 5
    assert {i.op for i in plan.tensor_instrs} <= {"axpy", "lerp", "mul", "addcmul", "sqrt", "div", "add"}
    assert any(i.op == "addcmul" for i in plan.tensor_instrs)    # v = b2 * v + (1 - b2) * d * d, as torch
    assert not any(i.scalar for i in plan.tensor_instrs)


def load_rule_text(name: str) -> str:
    from dsl import to_text
    return to_text(load_rule(f"builtin:{name}"))


def test_dead_statements_make_no_state_and_no_work():
    plan = _plan("junk = exp(w)\nz = lerp(z, g, 0.5)\nupdate = sign(g)\nq = z * 2")
    assert plan.states == () and [i.op for i in plan.tensor_instrs] == ["sign"]
    p = nn.Parameter(torch.zeros(3))
    opt = ProgramOptimizer([p], parse("junk = exp(w)\nz = lerp(z, g, 0.5)\nupdate = sign(g)"), lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    assert set(opt.state[p]) == {"step"}


@pytest.mark.parametrize("text, expected_update, expected_state", [
    # update reads the old m, which the next statement overwrites: the old buffer must survive
    ("update = m\nm = m * 0.5 + g", [[0.0, 0.0], [1.0, 1.0], [1.5, 1.5]], {"m": [1.75, 1.75]}),
    # two state variables holding the same value must not share a buffer
    ("update = m + n\nm = g\nn = m", [[0.0, 0.0], [2.0, 2.0], [2.0, 2.0]], {"m": [1.0, 1.0], "n": [1.0, 1.0]}),
    # state that is the gradient itself must be a copy (p.grad is reused by the caller)
    ("update = m\nm = g", [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], {"m": [1.0, 1.0]}),
    # state that is the parameter itself
    ("update = m * 0 + g\nm = w", [[1.0, 1.0]] * 3, {"m": [-0.2, -0.2]}),
    # a swap through a temporary
    ("update = a\nt1 = a\na = b + g\nb = t1", [[0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], {"a": [2.0, 2.0], "b": [1.0, 1.0]}),
])
def test_state_buffers_are_never_aliased_wrongly(text, expected_update, expected_state):
    p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = ProgramOptimizer([p], parse(text.replace("t1", "tmp")), lr=0.1)
    before = p.detach().clone()
    for k in range(3):
        p.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
        assert torch.allclose((before - p.detach()) / 0.1, torch.tensor(expected_update[k], dtype=torch.float64))
        before = p.detach().clone()
    for s, v in expected_state.items():
        assert torch.allclose(opt.state[p][s], torch.tensor(v, dtype=torch.float64)), s
    bufs = [opt.state[p][s] for s in expected_state]
    assert len({b.data_ptr() for b in bufs}) == len(bufs)
    assert all(b.data_ptr() not in (p.data_ptr(), p.grad.data_ptr()) for b in bufs)


def test_inplace_writes_reuse_state_buffers():
    """AdamW updates m and v in place, as torch does (no new state tensors per step)."""
    p = nn.Parameter(torch.zeros(64, 32))
    opt = ProgramOptimizer([p], "builtin:adamw", lr=1e-3)
    p.grad = torch.ones(64, 32)
    opt.step()
    ptrs = {k: opt.state[p][k].data_ptr() for k in ("m", "v")}
    for _ in range(3):
        p.grad = torch.randn(64, 32)
        opt.step()
    assert {k: opt.state[p][k].data_ptr() for k in ("m", "v")} == ptrs


def test_state_shapes_settle_to_adafactor_factors():
    plan = _plan("r = lerp(r, row_mean(g * g), 0.1)\nc = lerp(c, col_mean(g * g), 0.1)\n"
                 "update = g / sqrt(factored(r, c) + 1e-30)")
    spec = specialize(plan, [torch.Size([6, 4]), torch.Size([3, 6, 4]), torch.Size([5])], torch.float32, hparams={})
    assert spec.state_shapes == {"r": ((6, 1), (3, 6, 1), (5,)), "c": ((1, 4), (3, 1, 4), ())}


def test_specialize_rejects_scalar_updates_and_unresolvable_shapes():
    with pytest.raises(RuleValidationError, match="^route 'default': 'update' does not depend on any tensor input$"):
        specialize(_plan("update = t * 2"), [torch.Size([3])], torch.float32, hparams={})
    with pytest.raises(RuleValidationError, match="^route 'default': shapes do not resolve: "):
        specialize(_plan("update = orthogonalize(g, w)"), [torch.Size([3, 2])], torch.float32, hparams={})


def test_execute_on_a_mixed_group_matches_per_tensor_execution():
    """One call across tensors of many shapes equals one call per tensor (foreach is transparent)."""
    text = load_rule_text("adamw").replace("update = ", "update = normalize(g) * 0.1 + rms(m) * ")
    plan = _plan(text)
    hp = parse(text).hparams
    gen = torch.Generator().manual_seed(9)
    shapes = [torch.Size(s) for s in [(4, 3), (7,), (2, 2, 2), ()]]
    g = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    w = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    states = {s: [torch.rand(sh, generator=gen, dtype=torch.float64) for sh in shapes] for s in plan.states}
    spec = specialize(plan, shapes, torch.float64, hparams=hp)
    together, new_t, _ = execute(plan, g=g, w=w, h=None, states={k: [x.clone() for x in v] for k, v in states.items()},
                                 t=3.0, lr=0.01, hparams=hp, spec=spec)
    for i, s in enumerate(shapes):
        one_spec = specialize(plan, [s], torch.float64, hparams=hp)
        alone, new_a, _ = execute(plan, g=[g[i]], w=[w[i]], h=None,
                                  states={k: [v[i].clone()] for k, v in states.items()}, t=3.0, lr=0.01,
                                  hparams=hp, spec=one_spec)
        torch.testing.assert_close(together[i], alone[0], rtol=1e-15, atol=0)
        for k in plan.states:
            torch.testing.assert_close(new_t[k][i], new_a[k][0], rtol=1e-15, atol=0)


def test_low_precision_group_mixed_with_float32():
    """bf16 and float32 params in one group are bucketed by dtype and both updated."""
    a = nn.Parameter(torch.ones(3, 2, dtype=torch.bfloat16))
    b = nn.Parameter(torch.ones(3, 2))
    opt = ProgramOptimizer([a, b], parse("update = sign(g) * 0.5"), lr=1.0)
    a.grad, b.grad = torch.ones_like(a), torch.ones_like(b)
    opt.step()
    assert a.dtype == torch.bfloat16 and torch.equal(a.float(), b.detach()) and b.detach()[0, 0] == 0.5


def test_time_and_lr_reach_the_rule():
    p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = ProgramOptimizer([p], parse("update = g * 0 + t + lr * 100"), lr=0.5)
    for k in range(1, 4):
        before = p.detach().clone()
        p.grad = torch.ones(2, dtype=torch.float64)
        opt.step()
        assert torch.allclose(before - p.detach(), torch.full((2,), 0.5 * (k + 50.0), dtype=torch.float64))
    assert math.isclose(opt.state[p]["step"], 3)


@pytest.mark.parametrize("text", ["update = g + m\nm = 0.5\n", "update = g + m\nm = lr * 2\n",
                                  "hparams b=0.9\nupdate = g * m\nm = b ** t\n"])
def test_state_with_a_tensor_free_next_value_is_a_clear_error(text):
    from dsl.fingerprint import check

    program = parse(text)
    with pytest.raises(RuleValidationError, match=r"state 'm' is assigned a value that reads no tensor"):
        compile_route(program.routes[0], program.hparams)
    report = check(program)  # the gate reports it in words, not as an internal error
    assert not report.ok and "reads no tensor" in report.reason and "list indices" not in report.reason
