"""Differential fuzz: rules made by the search's own mutator, run by ProgramOptimizer and by their
exported class, must compute the same thing in every case.

Fixed seeds give a few hundred rules (one to three mutations of a builtin seed, as the search
makes them). Each goes through print/parse (the text parses back to the same program), the
validity gate (which reports and never raises), then both optimizers: float64 parameters in two
param groups, one at lr = 0 (a frozen group, warmup from zero: the case that made exported
classes divide by zero) and one at lr = 0.01, and bf16 parameters. Trajectories must agree step
by step (float64 within 1e-9 relative, NaN where the other has NaN, infinities equal; bf16 bit for
bit, as the interpreter's bf16 result), rules with an evaluation point at it too, and neither
side may raise where the other runs; a rule both sides refuse at the same point (export or the
same step) is counted, not failed. One rule per registry entry joins the mutated ones, and every
primitive must be called by a rule both sides ran: a new entry is fuzzed by being registered.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
from export_support import SHAPES, exported_class, params
from matrix_references import USES
from zoo_references import one_thread  # noqa: F401  (autouse fixture: one thread)

from dsl import ProgramOptimizer, builtin_names, load_rule, parse, to_text
from dsl.errors import RuleError
from dsl.fingerprint import check
from dsl.ir import Call, children
from dsl.primitives import PRIMITIVES
from search.mutation import Mutator

RULES = 240
STEPS = 3
pytestmark = pytest.mark.slow


def mutated_rules(n: int, seed: int = 0) -> list:
    """n rules, each one to three mutations of a random builtin (fixed seed)."""
    rng = random.Random(seed)
    mutator = Mutator(rng)
    seeds = [load_rule(f"builtin:{name}") for name in builtin_names()]
    out = []
    for k in range(n):
        program = rng.choice(seeds)
        for _ in range(rng.randint(1, 3)):
            program, _ = mutator.mutate(program)
        out.append(program.__class__(program.hparam_items, program.routes, name=f"fuzz_{seed}_{k}"))
    return out


def primitive_rules() -> list:
    """One rule per registry entry, so that every primitive is fuzzed however rarely mutations draw
    it: its parameter-shaped use (matrix and control kinds) or a call on g, w and 0.25, in state."""
    out = []
    for name, prim in sorted(PRIMITIVES.items()):
        call = USES.get(name) or f"{name}({', '.join(['g', 'w', '0.25'][:prim.min_args])})"
        out.append(parse(f"m = lerp(m, {call}, 0.2)\nupdate = m + 0.1 * g\n", name=f"fuzz_{name}"))
    return out


def _trajectory(make, program, dtype, lrs):
    """Parameters after each step (or the exception and the step it came at: 0 is construction)."""
    ps = params(3, dtype, SHAPES)
    groups = [{"params": ps[:2], "lr": lrs[0]}, {"params": ps[2:], "lr": lrs[1]}]
    gen = torch.Generator().manual_seed(11)
    rows = []
    try:
        opt = make(groups)
    except Exception as exc:  # noqa: BLE001 -- what each side refuses is the test's subject
        return rows, (0, type(exc).__name__, str(exc))
    for step in range(1, STEPS + 1):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype)
        try:
            opt.step()
            if program.reads_curvature:
                opt.update_curvature({p: torch.rand(p.shape, generator=gen, dtype=torch.float64).to(dtype)
                                      for p in ps})
        except Exception as exc:  # noqa: BLE001
            return rows, (step, type(exc).__name__, str(exc))
        rows.append([p.detach().double().clone() for p in ps])
    if program.has_eval_point:              # the evaluation point too (eval() swaps it in)
        opt.eval()
        rows.append([p.detach().double().clone() for p in ps])
        opt.train()
    return rows, None


def _agree(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    nan = torch.isnan(a)
    if not torch.equal(nan, torch.isnan(b)):
        return False
    a, b = a[~nan], b[~nan]
    inf = torch.isinf(a) | torch.isinf(b)
    if not torch.equal(a[inf], b[inf]):
        return False
    a, b = a[~inf], b[~inf]
    return bool(((a - b).abs() <= rel * (1 + a.abs())).all())


def _compare(program, dtype, lrs, rel: float) -> str:
    """'same', 'refused' (both sides, at the same point) or a description of the difference."""
    ours, ours_err = _trajectory(lambda g: ProgramOptimizer(g, program), program, dtype, lrs)
    try:
        cls = exported_class(program)
    except RuleError as exc:
        return "refused" if ours_err is not None and ours_err[0] <= 1 else f"export failed: {exc}"
    theirs, theirs_err = _trajectory(cls, program, dtype, lrs)
    if ours_err is not None or theirs_err is not None:
        if ours_err is not None and theirs_err is not None and ours_err[0] == theirs_err[0]:
            return "refused"
        return f"interpreter: {ours_err}, export: {theirs_err}"
    for step, (x, y) in enumerate(zip(ours, theirs), start=1):
        for i, (a, b) in enumerate(zip(x, y)):
            if not _agree(a, b, rel):
                return f"step {step}, parameter {i}: max |diff| {float((a - b).abs().nan_to_num().max()):.3g}"
    return "same"


def test_mutated_rules_export_with_the_interpreters_numerics():
    tally: Counter = Counter()
    failures = []
    ran: set[str] = set()                   # the primitives of rules both sides ran in float64
    for program in mutated_rules(RULES) + primitive_rules():
        text = to_text(program, doc=False)
        assert parse(text) == program, text
        tally["gate ok" if check(program).ok else "gate refused"] += 1
        for dtype, lrs, rel in ((torch.float64, (0.0, 0.01), 1e-9), (torch.bfloat16, (0.01, 0.01), 0.0)):
            outcome = _compare(program, dtype, lrs, rel)
            tally[f"{dtype}: {outcome if outcome in ('same', 'refused') else 'DIFFERENT'}"] += 1
            if outcome not in ("same", "refused"):
                failures.append(f"{dtype}: {outcome}\n{text}")
            elif outcome == "same" and dtype == torch.float64:
                ran |= called(program)
    runs = 2 * (RULES + len(PRIMITIVES))
    assert not failures, f"{len(failures)} of {runs} runs differ ({dict(tally)}); first:\n" + failures[0]
    assert tally["torch.float64: same"] >= 0.8 * RULES, dict(tally)     # most rules really ran on both sides
    assert ran == set(PRIMITIVES), sorted(set(PRIMITIVES) - ran)        # every primitive was exercised
    print(f"fuzz: {RULES} mutated + {len(PRIMITIVES)} registry rules, {dict(sorted(tally.items()))}")   # pytest -s


def called(program) -> set[str]:
    """The primitives a program calls."""
    found, stack = set(), [st.value for st in program.statements()]
    while stack:
        e = stack.pop()
        if isinstance(e, Call):
            found.add(e.fn)
        stack.extend(children(e))
    return found


def test_the_comparison_sees_a_difference():
    """A negative control: one ulp-scale change, a NaN or an infinity of the other sign is caught."""
    a = torch.tensor([1.0, -2.0, float("inf"), float("nan")], dtype=torch.float64)
    assert _agree(a, a.clone(), 1e-9)
    assert not _agree(a, a + torch.tensor([1e-6, 0, 0, 0], dtype=torch.float64), 1e-9)
    assert not _agree(a, torch.tensor([1.0, float("nan"), float("inf"), float("nan")], dtype=torch.float64), 1e-9)
    assert not _agree(a, torch.tensor([1.0, -2.0, -float("inf"), float("nan")], dtype=torch.float64), 1e-9)
