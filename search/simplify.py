"""Automatic simplification of a rule: make it shorter while it is not significantly worse.

Lion was found as a longer program and simplified by hand into the rule that was published
(Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms": redundant statements removed,
constants rounded, the quality kept). Here it is automatic: a greedy local search over three
kinds of edit, tried in this order on the current program:

1. **drop a statement** (the name then keeps its earlier value, or zero for state);
2. **replace a sub-expression by one of its arguments** (``m / (sqrt(v) + eps)`` ->
   ``m / sqrt(v)``; largest sub-expressions first);
3. **round a constant** (a literal or an hparam default) to 1, then 2, significant digits.

Each edited program is canonicalised (dead code removed, hparams nothing reads dropped) and
measured with the given scorer (``score(program) -> per-seed samples``, lower is better; see
``search.rule_scoring``), through a `Measurer` that gates invalid programs for free and reuses
the samples of structurally or functionally equal ones. An edit is **kept** unless it is
significantly worse than the *original* rule (Welch p < alpha with a higher mean; comparing
with the original, not the last accepted program, keeps small losses from adding up) **and**
its mean is at most ``tolerance`` worse (in log fitness: 0.02 is 2%). The second condition is
what keeps a test with few seeds, which has little power, from waving through edits that are
clearly worse on average (two seeds on a tiny task accepted "drop the momentum" otherwise); an
edit that computes the same function costs nothing and changes nothing, so it is always kept.
An edit that is strictly better is kept too. After a kept edit the search starts over on the new
program; it ends when no edit is kept, or when ``max_calls`` scorer calls are spent.

    result = simplify(program, protocol_scorer("proxy", preset="cpu", seeds=3), max_calls=30)
    print(to_text(result.simplified), result.calls)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from dsl.analysis import eliminate_dead_code
from dsl.ir import Assign, Num, Program, Route, children, names_read
from dsl.printer import expr_text, format_number, statement_text, to_text

from .program_edit import paths, replace_at
from .rule_scoring import ALPHA, Measurement, Measurer, compare

DEFAULT_MAX_CALLS = 40
DEFAULT_TOLERANCE = 0.02  # the largest mean loss in log fitness an edit may cost


# -- editing helpers, shared with search.ablation ----------------------------------------------
def with_statement(program: Program, route: str, index: int, new: Assign | None) -> Program:
    """``program`` with statement ``index`` of ``route`` replaced by ``new`` (None: dropped)."""
    routes = []
    for r in program.routes:
        body = list(r.body)
        if r.name == route:
            body[index:index + 1] = [] if new is None else [new]
        routes.append(Route(r.name, tuple(body)))
    return dataclasses.replace(program, routes=tuple(routes))


def with_hparam(program: Program, name: str, value: float) -> Program:
    items = tuple((k, value if k == name else v) for k, v in program.hparam_items)
    return dataclasses.replace(program, hparam_items=items)


def canonical(program: Program) -> Program:
    """Dead code removed and hparams that no statement reads dropped."""
    live = eliminate_dead_code(program)
    read = {n for st in live.statements() for n in names_read(st.value)}
    return dataclasses.replace(live, hparam_items=tuple((k, v) for k, v in live.hparam_items
                                                        if k in read))


def statements(program: Program) -> list[tuple[str, int, Assign]]:
    """(route, index, statement) of every statement, in print order."""
    return [(r.name, i, st) for r in program.routes for i, st in enumerate(r.body)]


def where(program: Program, route: str) -> str:
    """`` (route matrix)`` for a multi-route rule, else nothing: for one-line descriptions."""
    return f" (route {route})" if len(program.routes) > 1 else ""


def round_significant(value: float, digits: int) -> float:
    return float(f"{value:.{digits - 1}e}") if value and math.isfinite(value) else value


# -- the edits ---------------------------------------------------------------------------------
def edits(program: Program) -> Iterator[tuple[str, Program]]:
    """(description, edited program) for every edit of the three kinds, in trying order."""
    sts = statements(program)
    for route, i, st in sts:
        yield f"drop: {statement_text(st)}{where(program, route)}", with_statement(program, route, i, None)
    for route, i, st in sts:
        for path, node in paths(st.value):
            for child in children(node):
                new = Assign(st.target, replace_at(st.value, path, child))
                yield (f"replace: {expr_text(node)} -> {expr_text(child)} in {st.target}"
                       f"{where(program, route)}", with_statement(program, route, i, new))
    for digits in (1, 2):
        for name, value in program.hparam_items:
            rounded = round_significant(value, digits)
            if rounded != value:
                yield (f"round: {name}={format_number(value)} -> {format_number(rounded)}",
                       with_hparam(program, name, rounded))
        for route, i, st in sts:
            for path, node in paths(st.value):
                if isinstance(node, Num) and round_significant(node.value, digits) != node.value:
                    rounded = Num(round_significant(node.value, digits))
                    new = Assign(st.target, replace_at(st.value, path, rounded))
                    yield (f"round: {format_number(node.value)} -> {format_number(rounded.value)}"
                           f" in {st.target}{where(program, route)}",
                           with_statement(program, route, i, new))


@dataclass(frozen=True)
class Step:
    """One edit tried: what it did, whether it was kept, and the numbers behind the decision."""

    change: str
    kept: bool
    status: str  # the measurement's: ok, failed, invalid, unmeasured
    mean: float  # mean sample (nan when not measured)
    effect: float  # mean minus the original's mean (inf when failed or invalid)
    p_value: float
    reused: str = ""  # "structure" | "function" when no scorer call was needed

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Simplification:
    """The outcome: both programs, their samples, every edit tried, the scorer calls spent."""

    original: Program
    simplified: Program
    original_samples: tuple[float, ...]
    simplified_samples: tuple[float, ...]
    steps: tuple[Step, ...]
    calls: int
    exhausted: bool  # stopped because max_calls were spent
    alpha: float

    @property
    def changed(self) -> bool:
        return to_text(self.simplified, doc=False) != to_text(canonical(self.original), doc=False)

    def to_dict(self) -> dict:
        return {"original": to_text(self.original, doc=False),
                "simplified": to_text(self.simplified, doc=False), "changed": self.changed,
                "original_samples": list(self.original_samples),
                "simplified_samples": list(self.simplified_samples),
                "kept": [s.change for s in self.steps if s.kept],
                "steps": [s.to_dict() for s in self.steps], "calls": self.calls,
                "exhausted": self.exhausted, "alpha": self.alpha}


def simplify(program: Program, score: Callable[[Program], Sequence[float]] | Measurer,
             alpha: float = ALPHA, max_calls: int = DEFAULT_MAX_CALLS,
             on_step: Callable[[Step], None] | None = None,
             tolerance: float = DEFAULT_TOLERANCE) -> Simplification:
    """Simplify ``program`` greedily (module docstring). ``score`` is a scorer or a `Measurer`
    (to share its cache); ``max_calls`` bounds the scorer calls, the original's included.
    Raises ValueError if the original cannot be measured with at least two samples."""
    measurer = score if isinstance(score, Measurer) else Measurer(score)
    first_call, own_budget = measurer.calls, measurer.max_calls
    limit = measurer.calls + max_calls
    measurer.max_calls = limit if own_budget is None else min(own_budget, limit)
    try:
        return _simplify(program, measurer, alpha, on_step, first_call, tolerance)
    finally:
        measurer.max_calls = own_budget


def _simplify(program: Program, measurer: Measurer, alpha: float,
              on_step: Callable[[Step], None] | None, first_call: int, tolerance: float) -> Simplification:
    current = canonical(program)
    base = measurer.measure(current)
    if base.status != "ok" or len(base.samples) < 2:
        raise ValueError(f"cannot simplify: the rule itself measured {base.status}"
                         f"{' (' + base.reason + ')' if base.reason else ''} with "
                         f"{len(base.samples)} sample(s); a Welch test needs >= 2 finite ones")
    best, steps, exhausted = base, [], False
    improved = True
    while improved and not exhausted:
        improved = False
        seen = {to_text(current, doc=False)}
        for change, edited in edits(current):
            candidate = canonical(edited)
            text = to_text(candidate, doc=False)
            if text in seen:
                continue
            seen.add(text)
            found = measurer.measure(candidate)
            if found.status == "unmeasured":
                exhausted = True
                break
            step = _decide(change, found, base, alpha, tolerance)
            steps.append(step)
            if on_step:
                on_step(step)
            if step.kept:
                current, best, improved = candidate, found, True
                break
    return Simplification(program, current, base.samples, best.samples, tuple(steps),
                          measurer.calls - first_call, exhausted, alpha)


def _decide(change: str, found: Measurement, base: Measurement, alpha: float, tolerance: float) -> Step:
    if found.status != "ok":
        return Step(change, False, found.status, math.nan, math.inf, 0.0, found.reused)
    cmp = compare(found, base)
    keep = not cmp.worse(alpha) and cmp.effect <= tolerance
    return Step(change, keep, "ok", found.mean, cmp.effect, cmp.p_value, found.reused)
