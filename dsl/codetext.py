"""Printed Python for the exporter: one value's text with what the printer needs to know about it.

`Text` is an expression with its precedence (so operands get the parentheses they need), the
variable an in-place chain writes into (`root`), how many tensor operations it performs, whether
it is a tensor, whether it is certainly a Python float, and the helper functions it calls
(`needs`: the exporter copies their source into the file). The combinators below (`method`,
`call`, `binary`, `unary_minus`) keep those facts as texts nest, so a primitive's export text
(`dsl.primitives.kernels`) and the code printers (`dsl.codegen_scalars`, `dsl.codegen_tensor`)
build on one small vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ATOM, POW, NEG, MUL, ADD = 5, 4, 3, 2, 1
INFIX = {"add": ("+", ADD), "sub": ("-", ADD), "mul": ("*", MUL), "div": ("/", MUL), "pow": ("**", POW)}


@dataclass
class Text:
    """Printed Python for one value (see the module docstring)."""

    text: str
    prec: int = ATOM
    root: str | None = None
    ops: int = 0
    tensor: bool = True
    needs: frozenset = field(default_factory=frozenset)
    is_float: bool = False


def _needs(*parts) -> frozenset:
    out: set = set()
    for p in parts:
        out |= p.needs
    return frozenset(out)


def paren(t: Text, need: int, strict: bool = False) -> str:
    return f"({t.text})" if t.prec < need or (strict and t.prec == need) else t.text


def binary(op: str, a: Text, b: Text) -> Text:
    """`a op b` for an operator of `INFIX`, with the parentheses Python needs."""
    sym, p = INFIX[op]
    if op == "pow":
        left, right = paren(a, POW, strict=True), paren(b, NEG)
    else:
        left, right = paren(a, p), paren(b, p, strict=True)
    tensor = a.tensor or b.tensor
    return Text(f"{left} {sym} {right}", p, None, a.ops + b.ops + tensor, tensor, _needs(a, b),
                a.is_float or b.is_float)


def unary_minus(a: Text) -> Text:
    return Text(f"-{paren(a, NEG)}", NEG, None, a.ops + a.tensor, a.tensor, a.needs, a.is_float)


def method(recv: Text, name: str, args: list[Text], **kw: Text) -> Text:
    """`recv.name(args, k=v)`; an in-place method keeps recv's buffer (and its variable)."""
    items = [a.text for a in args] + [f"{k}={v.text}" for k, v in kw.items()]
    ops = recv.ops + sum(a.ops for a in args) + sum(v.ops for v in kw.values()) + 1
    root = recv.root if name.endswith("_") else None
    return Text(f"{paren(recv, ATOM)}.{name}({', '.join(items)})", ATOM, root, ops,
                needs=_needs(recv, *args, *kw.values()))


def call(fn, args: list[Text], tensor: bool = True, **kw: Text) -> Text:
    """`fn(args, k=v)`. `fn` is a name, or a function of ours whose source the file must carry."""
    name = fn if isinstance(fn, str) else fn.__name__
    own = frozenset() if isinstance(fn, str) else frozenset({fn})
    items = [a.text for a in args] + [f"{k}={v.text}" for k, v in kw.items()]
    ops = sum(a.ops for a in args) + sum(v.ops for v in kw.values()) + tensor
    return Text(f"{name}({', '.join(items)})", ATOM, None, ops, tensor, own | _needs(*args, *kw.values()),
                not tensor)


def wrap(head: str, items: list[str], tail: str, width: int = 100) -> str:
    """`head + ", ".join(items) + tail`, broken after commas (aligned under the first item) when
    longer than `width`."""
    line = head + ", ".join(items) + tail
    if len(line) <= width or not items:
        return line
    indent = " " * len(head)
    lines, current = [], head + items[0]
    for k, item in enumerate(items[1:], start=2):
        if len(current) + len(item) + 2 + (len(tail) if k == len(items) else 1) > width:
            lines.append(current + ",")
            current = indent + item
        else:
            current += ", " + item
    return "\n".join(lines + [current + tail])


def return_line(items: list[str], indent: str = "    ", tuple_of_one: bool = False) -> str:
    """`return a, b, c`, in parentheses when it has to break over lines."""
    line = wrap(f"{indent}return ", items, "," if tuple_of_one and len(items) == 1 else "")
    return line if "\n" not in line else wrap(f"{indent}return (", items, ")")
