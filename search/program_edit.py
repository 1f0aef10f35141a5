"""Editing rule programs: the building blocks that `search.mutation.Mutator` makes its moves from.

- sub-expressions: addressed by path (`paths`: child indices from the root, pre-order), replaced
  (`replace_at`), renamed (`substitute`), measured (`depth`; sizes are `dsl.ir.expr_size`);
- programs: their numbers in print order (`numbers`), whether they read ``h`` (`reads_curvature`),
  names read but never assigned (`unresolved`), one route's body swapped (`with_route`), the last
  assignment of ``update`` or ``next_w`` (`last_update`, `step_output`), and the bounds a child
  must stay within (`Limits`);
- random expressions (`ExprSampler`): leaves, calls and operators over the names a statement may
  read (`readable_names`, weighted), drawn from one `random.Random` in a fixed order, so equal
  seeds give equal expressions.

Everything here except `ExprSampler` is a pure function of its arguments; nothing validates (that
is the mutator's job, with `dsl.parser.validate`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

from dsl.compiler import INFIX_OPS
from dsl.ir import (
    BINARY_OPS,
    EVAL_W,
    INPUTS,
    NEXT_W,
    OUTPUT,
    PRIMARY_OUTPUTS,
    Assign,
    BinOp,
    Call,
    Expr,
    Name,
    Neg,
    Num,
    Program,
    Route,
    children,
    names_read,
)
from dsl.primitives import OPERATORS, PRIMITIVES

# how often each operator / primitive is drawn, and the constants an optional argument takes:
# facts of the registry entries (dsl.primitives: `weight`, `constants`)
OP_WEIGHTS = {sym: OPERATORS[op].weight for sym, op in INFIX_OPS.items()}
CONSTANTS = (0.5, 2.0, 1.0, 0.1, 0.9, 0.99, 0.999, 1e-8, 1e-3, 3.0)
INPUT_WEIGHTS = {"g": 4.0, "w": 1.0, "t": 0.5, "lr": 0.3, "h": 1.0, "w0": 0.2}
PERIODS = (2.0, 3.0, 5.0, 10.0, 100.0)     # the step counts a control primitive's condition takes


# -- expressions -----------------------------------------------------------------------------
def neg(e: Expr) -> Expr:
    """-e, folded into the literal for numbers (the parser's convention)."""
    return Num(-e.value) if isinstance(e, Num) else Neg(e)


def rebuild(node: Expr, kids: Sequence[Expr]) -> Expr:
    if isinstance(node, Neg):
        return neg(kids[0])
    if isinstance(node, BinOp):
        return BinOp(node.op, kids[0], kids[1])
    if isinstance(node, Call):
        return Call(node.fn, tuple(kids))
    return node


def paths(e: Expr) -> list[tuple[tuple[int, ...], Expr]]:
    """Every (path, node) of `e` in pre-order; a path is the child indices from the root."""
    out, stack = [], [((), e)]
    while stack:
        path, node = stack.pop()
        out.append((path, node))
        kids = children(node)
        stack.extend((path + (k,), kids[k]) for k in range(len(kids) - 1, -1, -1))
    return out


def replace_at(e: Expr, path: tuple[int, ...], new: Expr) -> Expr:
    if not path:
        return new
    kids = list(children(e))
    kids[path[0]] = replace_at(kids[path[0]], path[1:], new)
    return rebuild(e, kids)


def substitute(e: Expr, mapping: dict[str, Expr]) -> Expr:
    """`e` with every read of a name in `mapping` replaced."""
    if isinstance(e, Name):
        return mapping.get(e.id, e)
    kids = children(e)
    return rebuild(e, [substitute(k, mapping) for k in kids]) if kids else e


def depth(e: Expr) -> int:
    best, stack = 0, [(e, 1)]
    while stack:
        node, d = stack.pop()
        best = max(best, d)
        stack.extend((k, d + 1) for k in children(node))
    return best


# -- programs --------------------------------------------------------------------------------
def numbers(program: Program) -> list[float]:
    """Every number of a program in print order: hparam defaults, then literals statement by statement."""
    out = [v for _, v in program.hparam_items]
    for st in program.statements():
        out += [n.value for _, n in paths(st.value) if isinstance(n, Num)]
    return out


def reads_curvature(program: Program) -> bool:
    return any("h" in names_read(st.value) for st in program.statements())


def with_route(program: Program, name: str, body: Sequence[Assign], hparams=None) -> Program:
    routes = tuple(Route(r.name, tuple(body)) if r.name == name else r for r in program.routes)
    items = program.hparam_items if hparams is None else tuple(hparams.items())
    return Program(items, routes)


def last_update(body: Sequence[Assign]) -> int:
    """The last assignment of the route's step output (`update`, or `next_w`)."""
    return max((i for i, st in enumerate(body) if st.target in PRIMARY_OUTPUTS), default=-1)


def step_output(body: Sequence[Assign]) -> str:
    """The name a route moves its parameters with: `next_w` when it assigns that, else `update`."""
    return NEXT_W if any(st.target == NEXT_W for st in body) else OUTPUT


def unresolved(program: Program) -> set[str]:
    """Names read that are neither inputs, hparams nor assigned in their route (state stuck at zero)."""
    out: set[str] = set()
    for route in program.routes:
        known = set(INPUTS) | set(program.hparams) | {st.target for st in route.body}
        out |= {n for st in route.body for n in names_read(st.value)} - known
    return out


class Limits(NamedTuple):
    """What a child may be: statements per route (`statements`, or a route's own bound in
    `per_route`), nodes and depth per statement, names it may read besides hparams and its route's
    own names."""

    statements: int
    nodes: int
    depth: int
    free_names: frozenset[str]
    per_route: tuple[tuple[str, int], ...] = ()

    def route_statements(self, name: str) -> int:
        return dict(self.per_route).get(name, self.statements)


# -- random expressions ----------------------------------------------------------------------
def readable_names(hparams: Sequence[str], targets: Sequence[str], pos: int,
                   curvature: bool) -> list[tuple[str, float]]:
    """Names a statement at ``pos`` of a route assigning ``targets`` may read, with weights
    (a name assigned only at or after ``pos`` is state; ``h`` only when ``curvature``)."""
    out = [(x, INPUT_WEIGHTS[x]) for x in ("g", "w", "t", "lr", "w0")]
    if curvature:
        out.append(("h", INPUT_WEIGHTS["h"]))
    out += [(k, 0.5) for k in hparams]
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if target in seen or (target in (OUTPUT, NEXT_W, EVAL_W) and i >= pos):
            continue
        seen.add(target)
        out.append((target, 2.5 if i < pos else 1.0))
    return out


def readable_names_in(program: Program, body: Sequence[Assign], pos: int) -> list[tuple[str, float]]:
    """`readable_names` for position ``pos`` of ``body``, a route of ``program``."""
    return readable_names(list(program.hparams), [st.target for st in body], pos, reads_curvature(program))


class ExprSampler:
    """Random expressions whose new calls use only ``primitives`` (and only those a primitive's
    registry `route` allows on ``route``: matrix algebra on the matrix route); all randomness from
    ``rng``."""

    def __init__(self, rng: random.Random, primitives: Sequence[str], route: str = "default"):
        self.rng = rng
        self.every = tuple(primitives)
        self.route = route

    @property
    def primitives(self) -> tuple[str, ...]:
        return tuple(p for p in self.every if PRIMITIVES[p].route in (None, self.route))

    def leaf(self, readable: Sequence[tuple[str, float]]) -> Expr:
        if self.rng.random() < 0.2:
            return Num(self.rng.choice(CONSTANTS))
        names, weights = zip(*readable)
        return Name(self.rng.choices(names, weights)[0])

    def prims(self, arity: int, exclude: str = "") -> list[str]:
        """The allowed primitives that take ``arity`` arguments, other than ``exclude``."""
        return [p for p in self.primitives
                if PRIMITIVES[p].min_args <= arity <= PRIMITIVES[p].max_args and p != exclude]

    def pick(self, options: Sequence[str]) -> str:
        """One of ``options`` (operators and primitives), by their registry weights."""
        weights = [OP_WEIGHTS[o] if o in OP_WEIGHTS else PRIMITIVES[o].weight for o in options]
        return self.rng.choices(options, weights)[0]

    def call(self, fn: str, args: list[Expr]) -> Call:
        """A call of ``fn`` on ``args``; optional arguments, when drawn, are constants (the entry's own).
        A control primitive's condition is one of t (the compiler refuses tensor conditions):
        ``every(k, x, y)`` takes a period k, ``when(k - t, x, y)`` the first k - 1 steps."""
        prim = PRIMITIVES[fn]
        if prim.kind == "control":
            k = Num(self.rng.choice(PERIODS))
            args = [k if fn == "every" else BinOp("-", k, Name("t"))] + list(args[1:])
        while len(args) < prim.max_args and self.rng.random() < 0.2:
            args.append(Num(self.rng.choice(prim.constants or CONSTANTS)))
        return Call(fn, tuple(args))

    def expr(self, readable: Sequence[tuple[str, float]], levels: int) -> Expr:
        """A random expression with at most ``levels`` operators on any path."""
        if levels <= 0 or self.rng.random() < 0.25:
            return self.leaf(readable)
        r = self.rng.random()
        fns = self.prims(1) if r < 0.75 else [p for p in self.primitives if PRIMITIVES[p].min_args > 1]
        if r < 0.4 or not fns:
            return BinOp(self.pick(BINARY_OPS), self.expr(readable, levels - 1), self.expr(readable, levels - 1))
        fn = self.pick(fns)
        return self.call(fn, [self.expr(readable, levels - 1) for _ in range(PRIMITIVES[fn].min_args)])

    def wrap(self, e: Expr, readable: Sequence[tuple[str, float]]) -> Expr:
        """``e`` inside one new operation: op(e) or e <op> leaf."""
        unary = self.prims(1)
        if unary and self.rng.random() < 0.5:
            return self.call(self.pick(unary), [e])
        return BinOp(self.pick(BINARY_OPS), e, self.leaf(readable))
