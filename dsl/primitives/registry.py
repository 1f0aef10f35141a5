"""The registry's entry type, the two tables and the decorator that fills them.

One `Primitive` holds every fact about one function a rule may call (see `dsl.primitives`); the
operators of the language (`+ - * / **`) and the fused kernels the compiler makes of them (`axpy`,
`addcmul`, `addcdiv`) are entries of the same type in `OPERATORS`, so the interpreter, compiler
and exporter treat every instruction alike (`instruction(op)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .kernels import PER_TENSOR, Kernel

KINDS = ("elementwise", "reduction", "group", "structure", "matrix", "control")


@dataclass(frozen=True)
class Primitive:
    """Everything about one primitive (or operator); see the `dsl.primitives` docstring."""

    name: str
    args: tuple[str, ...]              # argument names; optional ones in brackets, e.g. ("x", "[steps]")
    doc: str
    kind: str
    fn: Callable | None                # per-tensor reference: fn(*args, bd=0)
    scalar: Callable | None            # the same on Python floats, IEEE results, never an exception
    kernel: Kernel = PER_TENSOR        # foreach form and export text (default: fn per tensor)
    sign: bool | Callable = False      # result >= 0 (or NaN): always, or a rule sign(is_nonneg, args)
    fresh: bool = True                 # each call returns a new tensor the caller may overwrite
    commutative: bool = False          # f(x, y) == f(y, x): one value for both orders
    batches_exactly: bool = True       # a stacked ensemble run equals the separate runs to rounding
    weight: float = 1.0                # how often the search's mutations pick it (relative)
    constants: tuple[float, ...] = ()  # values the search draws for its optional argument
    slot: bool = False                 # offered by the Optuna slot strategy by default
    lower: Callable | None = None      # the compiler emits it as other instructions: lower(builder, *args)
    route: str | None = None           # the only route the search's mutations use it on ("matrix")
    branch: Callable | None = None     # lazy: branch(condition) is the argument taken; the other's code is skipped

    @property
    def min_args(self) -> int:
        return sum(not a.startswith("[") for a in self.args)

    @property
    def max_args(self) -> int:
        return len(self.args)

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.args)})"

    def proves_nonneg(self, is_nonneg: Callable, args: tuple) -> bool:
        """Whether the result is >= 0 (or NaN), given which arguments are (`is_nonneg(arg)`)."""
        return self.sign if isinstance(self.sign, bool) else bool(self.sign(is_nonneg, args))


PRIMITIVES: dict[str, Primitive] = {}
OPERATORS: dict[str, Primitive] = {}


def _entry(table: dict, name: str, args: str, kind: str, doc: str, facts: dict) -> Callable:
    def deco(fn: Callable) -> Callable:
        if name in table:
            raise ValueError(f"'{name}' is registered twice")
        table[name] = Primitive(name, tuple(args.split()), doc, kind, fn, **facts)
        return fn
    return deco


def primitive(name: str, args: str, kind: str, doc: str, **facts) -> Callable:
    """Register the decorated reference function as primitive `name` (args: "x [steps]")."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return _entry(PRIMITIVES, name, args, kind, doc, facts)


def operator_entry(name: str, args: str, doc: str, **facts) -> Callable:
    """Register the decorated reference function as the instruction `name` of an operator."""
    return _entry(OPERATORS, name, args, "operator", doc, facts)


def instruction(op: str) -> Primitive:
    """The entry behind instruction `op` (operators first: `pow` is `**` there)."""
    return OPERATORS.get(op) or PRIMITIVES[op]


# -- sign rules ---------------------------------------------------------------------------------------
def all_nonneg(is_nonneg: Callable, args: tuple) -> bool:
    return all(is_nonneg(a) for a in args)


def any_nonneg(is_nonneg: Callable, args: tuple) -> bool:
    return any(is_nonneg(a) for a in args)
