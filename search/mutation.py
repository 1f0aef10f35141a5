"""Mutation and crossover of rules, and random rules: the moves of program search.

The moves follow AutoML-Zero (Real, Liang, So & Le 2020, "AutoML-Zero: Evolving Machine Learning
Algorithms From Scratch", ICML 2020: insert / delete a random instruction, randomize one argument
or operation, perturb a constant) and the program search that found Lion (Chen et al. 2023,
"Symbolic Discovery of Optimization Algorithms", NeurIPS 2023: insert, delete and modify
statements, warm-started from AdamW, constants perturbed multiplicatively). Kinds (`KINDS`):

- ``insert``: a random statement at a random position, assigning a fresh name (usually wired into
  a later live statement), an existing name (often rewritten in place: ``m = tanh(m)``) or, after
  the last ``update``, ``update`` itself (``update = sign(update)``); it reads ``g w t lr``, the
  hparams, the route's names (a name assigned only later is state) and constants; ``h`` only when
  the rule already reads it;
- ``delete``: a statement other than the last assignment of ``update``; reads of a name that no
  longer exists are rewired to a name the deleted statement read (``m`` -> ``g``);
- ``argument``: one sub-expression becomes a leaf or a small random expression, or is wrapped in one;
- ``primitive``: one call or operator becomes another of the same arity (``sign -> tanh``, ``+ -> max``);
- ``constant``: one number or hparam default is multiplied by 2**N(0,1) (a value in (0.5, 1), a
  beta, has 1 - value scaled instead, so it stays below 1), rounded to 4 significant digits.

Routed rules (Muon: ``matrix`` / ``default``) mutate one route chosen at random; hparams are shared.
Every result passes `dsl.parser.validate`, prints and parses back to an equal `Program`, reads only
inputs, hparams and names assigned in its route, keeps ``update`` dependent on ``g`` and has at
most ``max_statements`` statements per route (or the parent's count, if that was larger). Misses
are redrawn (``MAX_TRIES``); after that a constant perturbation, always valid, is returned.
Statements on the path to ``update`` are preferred, so most moves change what the rule computes;
operators and primitives are drawn by their registry weights (`dsl.primitives`: ``orthogonalize``,
slow, is rare), matrix algebra only on the ``matrix`` route (the entries' `route`), and an
optional argument takes one of its entry's constants. Rules that step with ``next_w`` (and
``eval_w``, Schedule-Free) mutate alike; new state is never read from an output.
All randomness comes from the given `random.Random`: equal seeds give equal mutations. The
expression and program edits the moves are made of, and random expressions, are in
`search.program_edit`.
"""

from __future__ import annotations

import keyword
import math
import random
from collections.abc import Sequence

from dsl.analysis import live_statements, update_depends_on
from dsl.errors import RuleError
from dsl.ir import (
    BINARY_OPS,
    INPUTS,
    OUTPUT,
    OUTPUTS,
    Assign,
    BinOp,
    Call,
    Name,
    Neg,
    Num,
    Program,
    Route,
    children,
    expr_size,
    names_read,
)
from dsl.parser import GROUP_KEYS, MAX_STATEMENTS, RESERVED, STEP_KEY, parse, validate
from dsl.primitives import PRIMITIVES
from dsl.printer import expr_text, format_number, statement_text, to_text
from search.program_edit import (
    ExprSampler,
    Limits,
    depth,
    last_update,
    paths,
    readable_names,
    readable_names_in,
    reads_curvature,
    replace_at,
    step_output,
    substitute,
    unresolved,
    with_route,
)

KINDS: tuple[str, ...] = ("insert", "delete", "argument", "primitive", "constant")
KIND_WEIGHTS: tuple[float, ...] = (3.0, 2.0, 3.0, 2.0, 2.0)
MAX_TRIES = 50
MAX_EXPR_NODES = 40      # per statement (or the parent's largest statement, if larger)
MAX_EXPR_DEPTH = 10
# Names the search never assigns: inputs, the output, primitives, Python keywords, parser words.
NOT_NAMES = frozenset(RESERVED | {*OUTPUTS, "hparams", "route", STEP_KEY} | GROUP_KEYS | set(PRIMITIVES)
                      | set(keyword.kwlist) | set(keyword.softkwlist))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Mutator:
    """Random edits of rules (see the module docstring). ``primitives`` limits the primitives that
    new calls may use (existing calls stay); ``max_statements`` bounds each route's length."""

    def __init__(self, rng: random.Random, max_statements: int = 12, primitives: Sequence[str] | None = None):
        names = sorted(PRIMITIVES) if primitives is None else sorted(set(primitives))
        unknown = [p for p in names if p not in PRIMITIVES]
        if unknown:
            raise ValueError(f"unknown primitive(s): {', '.join(unknown)}")
        if max_statements < 1:
            raise ValueError("max_statements must be at least 1")
        self.rng = rng
        self.max_statements = min(max_statements, MAX_STATEMENTS)
        self.primitives = tuple(names)
        self.exprs = ExprSampler(rng, self.primitives)

    # -- public API ------------------------------------------------------------------------
    def mutate(self, program: Program, kind: str | None = None) -> tuple[Program, str]:
        """One random mutation (of ``kind``, or one drawn from `KINDS`) and a one-line description.
        Never raises on a valid program (an invalid one is a `RuleValidationError`)."""
        validate(program)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown mutation kind {kind!r} (kinds: {', '.join(KINDS)})")
        limits = self._limits(program)
        for _ in range(MAX_TRIES):
            k = kind or self.rng.choices(KINDS, KIND_WEIGHTS)[0]
            route = self.rng.choice(program.routes)
            self.exprs.route = route.name       # matrix algebra only where matrices are
            found = getattr(self, f"_{k}")(program, route)
            if found is not None and self._acceptable(found[0], (program,), limits):
                return found
        return self._constant(program, self.rng.choice(program.routes))

    def crossover(self, a: Program, b: Program) -> tuple[Program, str]:
        """Statements of ``b`` spliced into ``a`` (a block inserted, or ``a``'s prefix + ``b``'s suffix)
        in a route both have; hparams that ``b``'s statements read come along. Falls back to a
        mutation of ``a`` when the two share no route or nothing valid turns up."""
        validate(a)
        validate(b)
        common = [r for r in a.route_names if r in b.route_names]
        if not common:
            child, desc = self.mutate(a)
            return child, f"crossover: no common route; {desc}"
        limits = self._limits(a, b)
        for _ in range(MAX_TRIES):
            found = self._splice(a, b, self.rng.choice(common))
            if found is not None and self._acceptable(found[0], (a, b), limits):
                return found
        child, desc = self._constant(a, self.rng.choice(a.routes))
        return child, f"crossover: nothing valid; {desc}"

    def random_program(self, n_statements: int | None = None) -> tuple[Program, str]:
        """A random single-route rule of ``n_statements`` statements (default: 2..max_statements)
        over ``g w t lr`` and constants; the last statement assigns ``update``."""
        top = self.max_statements
        n = n_statements if n_statements is not None else self.rng.randint(min(2, top), top)
        n = min(max(1, n), MAX_STATEMENTS)
        limits = Limits(max(n, self.max_statements), MAX_EXPR_NODES, MAX_EXPR_DEPTH, frozenset(INPUTS) - {"h"})
        desc, fallback = f"random: {n} statement{'s' if n > 1 else ''}", None
        self.exprs.route = "default"
        for _ in range(4 * MAX_TRIES):   # prefer rules whose every statement reaches `update`
            targets: list[str] = []
            for i in range(n - 1):
                new = i == 0 or self.rng.random() < 0.6
                targets.append(f"x{len(set(targets)) + 1}" if new else self.rng.choice(targets))
            body: list[Assign] = []
            for i, target in enumerate(targets + [OUTPUT]):
                readable = readable_names((), targets, i, curvature=False)
                value = self.exprs.expr(readable, self.rng.randint(1, 3))
                body.append(Assign(target, value))
            program = Program((), (Route("default", tuple(body)),))
            all_live = len(live_statements(program.routes[0])) == n
            if (all_live or fallback is None) and self._acceptable(program, (), limits):
                if all_live:
                    return program, desc
                fallback = program
        if fallback is not None:
            return fallback, desc
        return Program((), (Route("default", (Assign(OUTPUT, Name("g")),)),)), "random: fallback update = g"

    # -- checks ----------------------------------------------------------------------------
    def _limits(self, *parents: Program) -> Limits:
        """Bounds for children of ``parents``: never beyond what the parents already had."""
        sts = [st for p in parents for st in p.statements()]
        per_route = {}                   # a route may be as long as that route of a parent was
        for r in (r for p in parents for r in p.routes):
            per_route[r.name] = max(per_route.get(r.name, self.max_statements), len(r.body))
        free = set(INPUTS) - {"h"} | {"h" for p in parents if reads_curvature(p)}
        for p in parents:
            free |= unresolved(p)
        return Limits(self.max_statements, max([MAX_EXPR_NODES] + [expr_size(s.value) for s in sts]),
                      max([MAX_EXPR_DEPTH] + [depth(s.value) for s in sts]), frozenset(free),
                      tuple(sorted(per_route.items())))

    def _acceptable(self, child: Program, parents: Sequence[Program], limits: Limits) -> bool:
        if any(child == p for p in parents):
            return False
        try:
            validate(child)
        except RuleError:
            return False
        for route in child.routes:
            if len(route.body) > limits.route_statements(route.name):
                return False
            known = limits.free_names | set(child.hparams) | {st.target for st in route.body}
            for st in route.body:
                if not set(names_read(st.value)) <= known:
                    return False
                if expr_size(st.value) > limits.nodes or depth(st.value) > limits.depth:
                    return False
        if not update_depends_on(child, "g"):
            return False
        try:
            return parse(to_text(child, doc=False)) == child
        except RuleError:
            return False

    # -- building blocks -------------------------------------------------------------------
    def _statement_index(self, program: Program, route: Route, exclude: Sequence[int] = ()) -> int | None:
        """A statement index, live (on the path to ``update``) with probability 0.9 when possible."""
        idx = [i for i in range(len(route.body)) if i not in exclude]
        live = [i for i in live_statements(route, program.hparams) if i not in exclude]
        pool = live if live and self.rng.random() < 0.9 else idx
        return self.rng.choice(pool) if pool else None

    def _fresh(self, *programs: Program, taken: Sequence[str] = ()) -> str:
        """The first ``x1, x2, ...`` that no program uses and that is not reserved."""
        used = set(NOT_NAMES) | set(taken)
        for p in programs:
            used |= set(p.hparams) | {st.target for st in p.statements()}
            used |= {n for st in p.statements() for n in names_read(st.value)}
        k = 1
        while f"x{k}" in used:
            k += 1
        return f"x{k}"

    # -- the mutation kinds ----------------------------------------------------------------
    def _insert(self, program: Program, route: Route):
        body, ex = list(route.body), self.exprs
        if len(body) >= max(self.max_statements, 1):
            return None
        pos = self.rng.randint(0, len(body))
        readable = readable_names_in(program, body, pos)
        existing = sorted({st.target for st in body} - set(OUTPUTS))
        r, note = self.rng.random(), ""
        if r < 0.15 and pos > last_update(body):
            out = step_output(body)
            target, value = out, ex.wrap(Name(out), readable)
        elif r < 0.5 and existing:
            target = self.rng.choice(existing)
            in_place = self.rng.random() < 0.5
            value = ex.wrap(Name(target), readable) if in_place else ex.expr(readable, self.rng.randint(1, 2))
        else:
            target, value = self._fresh(program), ex.expr(readable, self.rng.randint(1, 2))
            later = [i for i in live_statements(route, program.hparams) if i >= pos]
            if later and self.rng.random() < 0.8:    # wire the new name into a later live statement
                i = self.rng.choice(later)
                path, node = self.rng.choice(paths(body[i].value))
                use = Name(target) if self.rng.random() < 0.5 else BinOp(ex.pick(BINARY_OPS), node, Name(target))
                body[i] = Assign(body[i].target, replace_at(body[i].value, path, use))
                note = f"; used in {body[i].target}"
        new = Assign(target, value)
        body.insert(pos, new)
        return with_route(program, route.name, body), _short(f"insert: {statement_text(new)}{note}")

    def _delete(self, program: Program, route: Route):
        last = last_update(route.body)
        i = self._statement_index(program, route, exclude=(last,))
        if i is None:
            return None
        gone = route.body[i]
        body = list(route.body[:i] + route.body[i + 1:])
        known = set(INPUTS) | set(program.hparams) | {st.target for st in body}
        dangling = {n for st in body for n in names_read(st.value)} - known
        note = ""
        if dangling:
            reads = [n for n in names_read(gone.value) if n in known and n not in program.hparams] or ["g"]
            stand_in = Name(self.rng.choice(reads))
            body = [Assign(st.target, substitute(st.value, {n: stand_in for n in dangling})) for st in body]
            note = f" ({', '.join(sorted(dangling))} -> {stand_in.id})"
        return with_route(program, route.name, body), _short(f"delete: {statement_text(gone)}") + note

    def _argument(self, program: Program, route: Route):
        i = self._statement_index(program, route)
        st = route.body[i]
        nodes = paths(st.value)
        path, old = self.rng.choice(nodes[1:] if len(nodes) > 1 else nodes)
        readable = readable_names_in(program, route.body, i)
        r, ex = self.rng.random(), self.exprs
        new = ex.leaf(readable) if r < 0.5 else ex.expr(readable, 1) if r < 0.75 else ex.wrap(old, readable)
        if new == old:
            return None
        body = list(route.body)
        body[i] = Assign(st.target, replace_at(st.value, path, new))
        return with_route(program, route.name, body), \
            _short(f"argument: {expr_text(old)} -> {expr_text(new)} in {st.target}", 120)

    def _primitive(self, program: Program, route: Route):
        i = self._statement_index(program, route)
        st = route.body[i]
        ops = [(p, n) for p, n in paths(st.value) if isinstance(n, (Call, BinOp, Neg))]
        if not ops:
            return None
        path, node = self.rng.choice(ops)
        kids = list(children(node))
        old = node.fn if isinstance(node, Call) else node.op if isinstance(node, BinOp) else "-"
        options = self.exprs.prims(len(kids), exclude=old if isinstance(node, Call) else "neg")
        if len(kids) == 2:
            options += [op for op in BINARY_OPS if op != old]
        if not options:
            return None
        choice = self.exprs.pick(options)
        new = BinOp(choice, kids[0], kids[1]) if choice in BINARY_OPS else Call(choice, tuple(kids))
        body = list(route.body)
        body[i] = Assign(st.target, replace_at(st.value, path, new))
        return with_route(program, route.name, body), f"primitive: {old} -> {choice} in {st.target}"

    def _constant(self, program: Program, route: Route):
        """Perturb one number. Always valid: the structure does not change (a rule with no number
        at all gets ``update`` scaled by a new constant)."""
        live = set(live_statements(route, program.hparams))
        use_live = self.rng.random() < 0.9
        slots: list[tuple[int, tuple[int, ...] | str]] = []
        live_reads = {n for i in live for n in names_read(route.body[i].value)}
        slots += [(-1, k) for k in program.hparams if k in live_reads or not use_live]
        for i, st in enumerate(route.body):
            if i in live or not use_live:
                slots += [(i, p) for p, n in paths(st.value) if isinstance(n, Num)]
        if not slots:
            slots = [(-1, k) for k in program.hparams]
            slots += [(i, p) for i, st in enumerate(route.body) for p, n in paths(st.value) if isinstance(n, Num)]
        if not slots:
            body = list(route.body)
            last = last_update(body)
            c = self._perturb(1.0)
            body[last] = Assign(body[last].target, BinOp("*", Num(c), body[last].value))
            return with_route(program, route.name, body), f"constant: update scaled by {format_number(c)}"
        i, where = self.rng.choice(slots)
        if i < 0:
            hp = program.hparams
            old, hp[where] = hp[where], self._perturb(hp[where])
            return with_route(program, route.name, route.body, hp), \
                f"constant: {where} {format_number(old)} -> {format_number(hp[where])}"
        st = route.body[i]
        old = dict(paths(st.value))[where].value
        new = self._perturb(old)
        body = list(route.body)
        body[i] = Assign(st.target, replace_at(st.value, where, Num(new)))
        return with_route(program, route.name, body), \
            f"constant: {format_number(old)} -> {format_number(new)} in {st.target}"

    def _perturb(self, v: float) -> float:
        """v * 2**N(0,1) (1 - (1 - v) * 2**N(0,1) for v in (0.5, 1)); a zero becomes 1e-3 * 2**N(0,1)."""
        for _ in range(20):
            f = 2.0 ** self.rng.gauss(0.0, 1.0)
            if 0.5 < v < 1:
                new = 1 - float(f"{(1 - v) * f:.4g}")
            else:
                new = float(f"{(1e-3 if v == 0 else v) * f:.4g}")
            if new != v and new != 0 and math.isfinite(new) and abs(new) < 1e30 and (v == 0 or (new > 0) == (v > 0)):
                return new
        return v * 2 if abs(v) < 1e300 else v / 2

    # -- crossover -------------------------------------------------------------------------
    def _splice(self, a: Program, b: Program, name: str):
        ra, rb = a.route(name).body, b.route(name).body
        i = self.rng.randint(0, len(ra))
        if self.rng.random() < 0.5:
            j = self.rng.randint(0, max(0, last_update(rb)))
            block, head, tail = rb[j:], ra[:i], ()
            desc = f"crossover: {name} route, a[:{i}] + b[{j}:]"
        else:
            j = self.rng.randrange(len(rb))
            k = min(len(rb), j + self.rng.randint(1, 3))
            block, head, tail = rb[j:k], ra[:i], ra[i:]
            desc = f"crossover: {name} route, b[{j}:{k}] into a at {i}"
        hparams, rename = dict(a.hparams), {}
        taken = {st.target for r in a.routes for st in r.body}
        for n in sorted({st.target for st in block} & set(hparams)):   # b's variable is a's hparam
            rename[n] = Name(self._fresh(a, b, taken=[x.id for x in rename.values()]))
        for n in sorted({x for st in block for x in names_read(st.value)} & set(b.hparams) - set(hparams)):
            target = n
            if n in taken:                                               # b's hparam is a's variable
                target = self._fresh(a, b, taken=[x.id for x in rename.values()])
                rename[n] = Name(target)
            hparams[target] = b.hparams[n]
        moved = tuple(Assign(rename[s.target].id if s.target in rename else s.target, substitute(s.value, rename))
                      for s in block)
        return with_route(a, name, head + moved + tail, hparams), desc
