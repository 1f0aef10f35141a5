"""IR -> canonical rule text.

The printer emits the minimum parentheses that keep the tree intact, numbers in their shortest
round-tripping form (an hparam written as an integer stays one: `ns_steps=5`, `d=1.0`), one
statement per line, and routes under `route NAME:` headers. For every program
`parse(to_text(p)) == p`.
"""

from __future__ import annotations

import math

from .ir import Assign, BinOp, Call, Expr, Name, Neg, Num, Program

# Binding strength (higher binds tighter) and associativity, as in Python.
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4}
_ATOM = 5


def format_number(v: float) -> str:
    """Shortest text that parses back to exactly `v` (integers without a trailing `.0`)."""
    if not math.isfinite(v):
        raise ValueError(f"cannot print non-finite number {v!r}")
    if v == int(v) and abs(v) < 1e16:
        s = str(int(v))
        return "-0.0" if v == 0 and math.copysign(1.0, v) < 0 else s
    return repr(v)


def format_hparam(v: float | int) -> str:
    """An hparam default: an int as written (`5`), a float always as a float (`1.0`, `0.001`)."""
    if isinstance(v, int):
        return str(v)
    s = format_number(v)
    return s if any(c in s for c in ".en") else s + ".0"


def _prec(e: Expr) -> int:
    if isinstance(e, Num):
        return _PREC["neg"] if e.value < 0 or (e.value == 0 and math.copysign(1, e.value) < 0) else _ATOM
    if isinstance(e, Neg):
        return _PREC["neg"]
    if isinstance(e, BinOp):
        return _PREC[e.op]
    return _ATOM


def expr_text(e: Expr) -> str:
    """Canonical text of an expression. Iterative in spirit: depth is bounded by the parser."""
    if isinstance(e, Num):
        return format_number(e.value)
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(expr_text(a) for a in e.args)})"
    if isinstance(e, Neg):
        op = e.operand
        inner = expr_text(op)
        if isinstance(op, (Name, Call)) or (isinstance(op, BinOp) and op.op == "**"):
            return f"-{inner}"
        return f"-({inner})"
    assert isinstance(e, BinOp)
    p = _PREC[e.op]
    left, right = expr_text(e.left), expr_text(e.right)
    if e.op == "**":
        # right-associative; the base binds tighter than unary minus (-x ** 2 == -(x ** 2))
        if _prec(e.left) <= p:
            left = f"({left})"
        if _prec(e.right) < _PREC["neg"]:
            right = f"({right})"
    else:
        if _prec(e.left) < p:
            left = f"({left})"
        if _prec(e.right) <= p:
            right = f"({right})"
    return f"{left} {e.op} {right}"


def statement_text(s: Assign) -> str:
    return f"{s.target} = {expr_text(s.value)}"


def to_text(program: Program, *, doc: bool = True) -> str:
    """Canonical text of a whole program (with its doc comment unless `doc=False`)."""
    lines: list[str] = []
    if doc and program.doc:
        lines += [f"# {ln}".rstrip() for ln in program.doc.splitlines()]
    if program.hparam_items:
        lines.append("hparams " + " ".join(f"{k}={format_hparam(v)}" for k, v in program.hparam_items))
    routed = len(program.routes) > 1 or program.routes[0].name != "default"
    for route in program.routes:
        if routed:
            lines.append(f"route {route.name}:")
        for st in route.body:
            lines.append(("    " if routed else "") + statement_text(st))
    return "\n".join(lines) + "\n"
