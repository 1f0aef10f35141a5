"""The intermediate representation of a rule: immutable expression trees and programs.

A `Program` is a set of hparams with defaults and one or more routes (`default`, `matrix`);
each route is a straight-line list of `Assign` statements whose outputs are `update` (or
`next_w`) and, optionally, `eval_w`. Nodes are frozen dataclasses, so
programs are hashable values and `parse(print(p)) == p` is plain equality. Source positions are
kept for error messages but take no part in equality.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

INPUTS: tuple[str, ...] = ("g", "w", "t", "lr", "h", "w0")
INPUT_DOCS: dict[str, str] = {
    "g": "gradient of the parameter",
    "w": "the parameter itself (before this step)",
    "t": "step number, 1 on the first step",
    "lr": "the current learning rate (after any schedule)",
    "h": "diagonal curvature estimate (produced by the trainer when a rule reads it)",
    "w0": "the parameter at its first step (kept as state, counted in state bytes; Prodigy's x0)",
}
OUTPUT = "update"
NEXT_W = "next_w"        # instead of `update`: the next weights, applied as w <- next_w (Schedule-Free's y)
EVAL_W = "eval_w"        # optional: the weights a user evaluates (optimizer.eval() swaps them in)
PRIMARY_OUTPUTS: tuple[str, ...] = (OUTPUT, NEXT_W)
OUTPUTS: tuple[str, ...] = (OUTPUT, NEXT_W, EVAL_W)
OUTPUT_DOCS: dict[str, str] = {
    OUTPUT: "the step direction: w <- w - lr * update",
    NEXT_W: "the next weights: w <- next_w (instead of update; lr is then the rule's to use)",
    EVAL_W: "optional: the weights to evaluate; optimizer.eval() puts them in place, optimizer.train() back",
}
ROUTES: tuple[str, ...] = ("default", "matrix")
BINARY_OPS: tuple[str, ...] = ("+", "-", "*", "/", "**")


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    id: str


@dataclass(frozen=True)
class Neg:
    operand: Expr


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Expr, ...]


Expr = Num | Name | Neg | BinOp | Call


@dataclass(frozen=True)
class Assign:
    target: str
    value: Expr
    line: int | None = field(default=None, compare=False)
    col: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Route:
    name: str
    body: tuple[Assign, ...]


@dataclass(frozen=True)
class Program:
    """A rule: hparams (name, default) in declaration order, and its routes. A default written as
    an integer is an int (printed and exported as one); everything computes with it as a float."""

    hparam_items: tuple[tuple[str, float | int], ...]
    routes: tuple[Route, ...]
    doc: str = field(default="", compare=False)
    name: str | None = field(default=None, compare=False)

    # -- convenience views -------------------------------------------------------------
    @property
    def hparams(self) -> dict[str, float | int]:
        """Hyperparameter defaults, name -> value, in declaration order."""
        return dict(self.hparam_items)

    @property
    def route_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)

    @cached_property
    def structural_hash(self) -> str:
        """Hash of the canonical dataflow graph (see `dsl.analysis`)."""
        from .analysis import structural_hash
        return structural_hash(self)

    @cached_property
    def has_eval_point(self) -> bool:
        """Whether a route assigns `eval_w` (the optimizer then has eval() / train() swaps)."""
        return any(EVAL_W in outputs_of(r) for r in self.routes)

    @cached_property
    def reads_curvature(self) -> bool:
        """Whether live code reads the curvature input `h` (the trainer must then produce it)."""
        from .analysis import inputs_read
        return "h" in inputs_read(self)

    def route(self, name: str) -> Route:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def statements(self) -> Iterator[Assign]:
        for r in self.routes:
            yield from r.body


def primary_output(route: Route) -> str:
    """The output a route moves its parameters with: `next_w` when it assigns that, else `update`."""
    return NEXT_W if any(st.target == NEXT_W for st in route.body) else OUTPUT


def outputs_of(route: Route) -> tuple[str, ...]:
    """The outputs a route assigns, in `OUTPUTS` order."""
    assigned = {st.target for st in route.body}
    return tuple(o for o in OUTPUTS if o in assigned)


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of `e`."""
    if isinstance(e, Neg):
        return (e.operand,)
    if isinstance(e, BinOp):
        return (e.left, e.right)
    if isinstance(e, Call):
        return e.args
    return ()


def names_read(e: Expr) -> list[str]:
    """Every name `e` reads, in left-to-right order (with repeats). Iterative: no recursion limit."""
    out: list[str] = []
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Name):
            out.append(x.id)
        else:
            stack.extend(reversed(children(x)))
    return out


def expr_size(e: Expr) -> int:
    """Number of nodes in `e`."""
    n, stack = 0, [e]
    while stack:
        x = stack.pop()
        n += 1
        stack.extend(children(x))
    return n
