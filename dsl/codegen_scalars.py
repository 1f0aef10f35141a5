"""Printing a compiled plan as Python, part 1: names and the scalar side.

`Namer` keeps the rule's own names where Python allows them. `Scalars` decides where each scalar
of the plan is computed: cheap arithmetic of hparams and `lr` (`1 - beta1`; a division only by a
nonzero literal) is printed inline where it is used; everything that depends on `t`, divides or
calls a function becomes a named *coefficient*, computed once per parameter and step in plain
Python floats (as torch computes its bias corrections) by the route's coefficient function. Each
scalar instruction is printed as its registry entry's scalar form (`dsl.primitives`): Python's
own `+ - *`, `abs`, `math.tanh`, or one of optforge's IEEE functions (`_div`, `_pow`,
`_scalar_sqrt`, ...) whose source the file carries, the very functions the interpreter runs,
so an exported optimizer computes the interpreter's scalars in every case (x / 0 is inf). Each
lazy choice's condition becomes a Python bool coefficient (`branch1 = c > 0`), the `if` of the
update function. The tensor side is `dsl.codegen_tensor`.
"""

from __future__ import annotations

import keyword
import operator
from collections import Counter

from . import primitives, shell
from .codetext import ADD, ATOM, NEG, Text, binary, call, paren, return_line, unary_minus
from .compiler import Instr, Plan
from .ir import INPUTS, Route
from .primitives import instruction
from .primitives.common import passthrough
from .printer import format_number
from .sourcecopy import defined_names

_CHEAP = ("add", "sub", "mul", "neg")
_INFIX = {operator.add: "add", operator.sub: "sub", operator.mul: "mul"}
_MODULES = (primitives.common, primitives.elementwise, primitives.kernels, primitives.operators,
            primitives.reductions, primitives.scalars, primitives.structure, shell)
# names the exported file defines or uses itself, which a rule's variables must not shadow
FIXED_NAMES = frozenset({
    "abs", "bool", "dict", "enumerate", "float", "int", "isinstance", "len", "list", "max", "min", "range",
    "round", "super", "tuple", "zip", "ValueError", "TypeError", "torch", "math", "functools", "numbers",
    "collections", "group", "params", "grads", "coefficients", "which", "row", "rows", "values", "i", "p",
    "dtype", "self", "state", "closure", "loss"}) | defined_names(*_MODULES)


class Namer:
    """Python identifiers for a route: the rule's own names where they are safe (else with a
    trailing underscore), and fresh names for temporaries that avoid all of them."""

    def __init__(self, route: Route, hparams: dict[str, float], plan: Plan):
        self.rule: dict[str, str] = {}
        names = [*INPUTS, *hparams, *plan.states, *(st.target for st in route.body)]
        used: set[str] = set()
        for name in dict.fromkeys(names):
            py = name
            while keyword.iskeyword(py) or keyword.issoftkeyword(py) or py in FIXED_NAMES or py in used \
                    or py.startswith(("_", "carry")):
                py = py + "_" if not py.startswith("_") else "u" + py
            self.rule[name] = py
            used.add(py)
        self.taken = set(used)

    def fresh(self, base: str, numbered: bool = False) -> str:
        """A new name based on `base` (`base1`, `base2`, ... when `numbered`), unused in this route."""
        k = 1
        name = f"{base}1" if numbered else base
        while name in self.taken or name in FIXED_NAMES or keyword.iskeyword(name):
            k += 1
            name = f"{base}{k}"
        self.taken.add(name)
        return name


class Scalars:
    """The scalar instructions of a plan: inline texts, coefficients and the coefficient function."""

    def __init__(self, plan: Plan, namer: Namer):
        self.plan, self.namer = plan, namer
        self.producer = {i.out: i for i in plan.scalar_instrs}
        self.load_name = {vid: name for name, vid in plan.loads.items()}
        self.helpers: set = set()          # the functions the coefficient function calls
        self.uses: Counter = Counter()
        for ins in plan.scalar_instrs + plan.tensor_instrs:
            for a in ins.args:
                if isinstance(a, int) and a in plan.scalar_ids:
                    self.uses[a] += 1
        lazy = list(plan.branches)           # each lazy choice's condition becomes a bool coefficient
        conds = [plan.tensor_instrs[k].args[0] for k in lazy]
        used = list(dict.fromkeys(a for k, ins in enumerate(plan.tensor_instrs) for pos, a in enumerate(ins.args)
                                  if isinstance(a, int) and a in plan.scalar_ids and not (pos == 0 and k in lazy)))
        self.inline = {a for a in used if a in self.producer and self._cheap(a)}
        self.computed = [a for a in used if a in self.producer and a not in self.inline]
        reads = {self.load_name[a] for a in self._reach([a for a in used if a not in self.computed])
                 if a in self.load_name}
        inner = [a for a in self._reach(self.computed) if a in self.producer]
        bound = set(self.computed) | {a for a in inner if self.uses[a] > 1 or a in plan.value_names}
        bound |= {c for c in conds if isinstance(c, int) and c in self.producer}
        self.names = {}
        for _ in range(8):      # long formulas: name their operands too, so lines stay readable
            self.names = {ins.out: "_" for ins in plan.scalar_instrs if ins.out in bound}
            long = [a for a in bound if len(self._expr(self.producer[a], True, a).text) > 72]
            more = {x for a in long for x in self.producer[a].args if isinstance(x, int) and x in self.producer}
            if more <= bound:
                break
            bound |= more
        self.names = {}
        for ins in plan.scalar_instrs:       # one name per value (a rule may assign a name twice)
            if ins.out in bound:
                name = self._name(ins.out)
                self.names[ins.out] = name if name not in self.names.values() else namer.fresh(name, numbered=True)
        hp = [n for n in plan.loads if n not in INPUTS and n not in plan.states and n in reads]
        self.order = ["lr"] + hp + (["t"] if "t" in reads else [])
        self.flags = {k: namer.fresh("branch", numbered=True) for k in lazy}
        self.conditions = dict(zip(lazy, conds))
        self.coefficients = [namer.rule[n] for n in self.order] + [self.names[a] for a in self.computed]
        self.coefficients += list(self.flags.values())
        steps = {plan.loads[n] for n in ("t", "lr") if n in plan.loads}
        # a condition is a Python bool: under torch.compile one graph per branch, never a tensor
        self.varying = tuple([n in ("lr", "t") for n in self.order]
                             + [bool(self._reach([a]) & steps) for a in self.computed] + [False] * len(lazy))
        needed = self._reach(bound) | {c for c in conds if isinstance(c, int)}
        self.loads = ["lr"] + [n for n in plan.loads if n not in ("lr", "t", "g", "w", "h", "w0")
                               and n not in plan.states and (n in reads or plan.loads[n] in needed)]

    # -- classification ----------------------------------------------------------------------
    def _cheap(self, a, budget: list | None = None) -> bool:
        """Arithmetic of hparams, lr and literals only, small enough to print where it is used
        (no division but by a nonzero literal: `_div` stays in the coefficient function)."""
        budget = [7] if budget is None else budget
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if not isinstance(a, int):
            return True
        if a in self.load_name:
            return self.load_name[a] != "t"
        ins = self.producer[a]
        by_literal = ins.op == "div" and isinstance(ins.args[1], float) and ins.args[1] != 0
        return (ins.op in _CHEAP or by_literal) and all(self._cheap(x, budget) for x in ins.args)

    def _reach(self, roots) -> set[int]:
        """The scalar values `roots` are computed from, themselves included."""
        out, stack = set(), [a for a in roots if isinstance(a, int)]
        while stack:
            a = stack.pop()
            if a not in out:
                out.add(a)
                if a in self.producer:
                    stack.extend(x for x in self.producer[a].args if isinstance(x, int))
        return out

    def _name(self, a: int) -> str:
        rule = self.plan.value_names.get(a)
        if rule is not None:
            return self.namer.rule[rule]
        ins = self.producer[a]
        base = self._bias_correction(a)
        if base is None and ins.op == "sqrt" and isinstance(ins.args[0], int) and ins.args[0] in self.producer:
            inner = self._bias_correction(ins.args[0])
            base = inner + "_sqrt" if inner else None
        return self.namer.fresh(base) if base else self.namer.fresh("c", numbered=True)

    def _bias_correction(self, a: int) -> str | None:
        """`1 - beta ** t` is named like torch's bias_correction1 / bias_correction2."""
        ins = self.producer.get(a)
        if ins is None or ins.op != "sub" or ins.args[0] != 1.0 or not isinstance(ins.args[1], int):
            return None
        inner = self.producer.get(ins.args[1])
        if inner is None or inner.op != "pow" or self.load_name.get(inner.args[1]) != "t":
            return None
        base = self.load_name.get(inner.args[0])
        if base is None:
            return None
        return "bias_correction" + (base[4:] if base.startswith("beta") and base[4:].isdigit() else "_" + base)

    # -- printing ------------------------------------------------------------------------------
    def text(self, a, inside: bool = False, defining: int | None = None) -> Text:
        """A scalar operand: a literal, a name, or an inline expression (`inside`: within the
        coefficient function, where the bound values are names; `defining`: the one being defined)."""
        if not isinstance(a, int):
            return _literal(format_number(a))
        if a in self.load_name:
            return Text(self.namer.rule[self.load_name[a]], tensor=False, is_float=True)
        if a in self.names and (a in self.computed or inside) and a != defining:
            return Text(self.names[a], tensor=False, is_float=True)
        return self._expr(self.producer[a], inside)

    def _expr(self, ins: Instr, inside: bool, defining: int | None = None) -> Text:
        args = [self.text(x, inside, defining) for x in ins.args]
        if not any(t.is_float for t in args):     # literals only: 2.0 ** 3.0, so Python never computes in ints
            args = [_literal(repr(float(x))) if not isinstance(x, int) else t for x, t in zip(ins.args, args)]
        return scalar_text(ins.op, args)

    def function(self, name: str, update: str) -> str:
        """`name(group, t)`: the coefficients of one step, in the order `update` takes them."""
        lines = [f"def {name}(group, t):",
                 f'    """Scalars of step t as Python floats, in the order `{update}` takes them."""']
        lines += [f'    {self.namer.rule[n]} = float(group["{n}"])' for n in self.loads]
        for ins in self.plan.scalar_instrs:
            if ins.out in self.names:
                text = self.text(ins.out, True, ins.out)
                self.helpers |= text.needs
                lines.append(f"    {self.names[ins.out]} = {text.text}")
        for k, flag in self.flags.items():
            text = self.text(self.conditions[k], True)
            self.helpers |= text.needs
            lines.append(f"    {flag} = {paren(text, ADD)} > 0")
        lines.append(return_line(self.coefficients, tuple_of_one=True))
        return "\n".join(lines)


def _literal(s: str) -> Text:
    return Text(s, NEG if s.startswith("-") else ATOM, tensor=False)


def scalar_text(op: str, a: list[Text]) -> Text:
    """Scalar instruction `op` on printed operands: its registry entry's scalar form, printed as
    Python's own operator or function, or as a call of optforge's (whose source the file carries)."""
    fn = instruction(op).scalar
    if fn in _INFIX:
        return binary(_INFIX[fn], *a)
    if fn is operator.neg:
        return unary_minus(a[0])
    if fn is passthrough:
        return a[0]
    if getattr(fn, "__module__", None) in ("builtins", "math"):
        name = fn.__name__ if fn.__module__ == "builtins" else f"math.{fn.__name__}"
        return call(name, a, tensor=False)
    return call(fn, a, tensor=False)
