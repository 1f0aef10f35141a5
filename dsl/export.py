"""Export a rule as one standalone Python file: a `torch.optim.Optimizer` that needs only torch.

    from dsl import load_rule
    from dsl.export import export_source
    source = export_source(load_rule("builtin:adamw"), class_name="AdamW",
                           provenance={"source": "builtin:adamw"})

The file is made of real code, not templates (the shape of KellerJordan/Muon: tensor functions,
update functions, a thin Optimizer class):
- the optimizer shell `dsl.shell`, copied whole: `RuleOptimizer`, the bookkeeping that
  `ProgramOptimizer` runs too (hparams validated, ValueError naming the argument; param groups
  that override any of them; lazily created state, float32 for bf16/fp16 parameters; step counts;
  closures; state_dict round trips; routing: `matrix` for parameters with two or more axes when
  the rule has that route, overridable per group; curvature when the rule reads h; `fused=True`,
  which runs each step through `torch.compile` of the route's step function);
- the primitives' functions the rule calls and the IEEE scalar functions (`_div`, `_pow`, ...),
  copied from `dsl.primitives` with what they use (`dsl.sourcecopy`): the interpreter's code;
- one set of plain functions per route, printed from the compiled plan by `dsl.codegen`;
- the route table and the class (`dsl.export_class`): the rule's hparams as keyword defaults.

The step counter and torch.compile. Each parameter's step count is a Python int in its state (as
in Keller Jordan's Muon), so in eager mode the scalars of a step (bias corrections and the like)
are exact Python floats, bit for bit those of `ProgramOptimizer`. Under torch.compile dynamo
turns the changing int into a symbolic value after its first change, and the shell hands the
coefficients that change from step to step (anything of t or lr) to the step function as 0-d
tensors, which stay graph inputs; a float used as `alpha=` would be baked into the graph and
recompiled at every new value. So a compiled training step compiles the optimizer three times
(empty state, step 1, then a generic graph) and never again, LR schedulers included; the fused
path compiles once. It also computes the coefficients outside the compiled function, so inductor
never evaluates `beta ** t` once per element.

Generated code is printed from the validated IR (names are the rule's identifiers, renamed where
Python or the file needs them; numbers are printed by `dsl.printer`); the only user text in the
file is the rule's comment and the provenance, escaped inside docstrings.
"""

from __future__ import annotations

import keyword
import re

from . import shell
from .analysis import eliminate_dead_code
from .codegen import RouteSource, route_source
from .codegen_scalars import FIXED_NAMES
from .errors import RuleValidationError
from .export_class import class_source, escape_doc, route_table
from .ir import Program
from .primitives import OPERATORS, PRIMITIVES
from .printer import to_text
from .sourcecopy import ALLOWED_MODULES, closure, module_body

CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
RESERVED_HPARAMS = frozenset({"self", "params", "fused", "route", "defaults", "super", "step"})


def check_class_name(name: str) -> None:
    """ValueError unless `name` can name the exported class."""
    if not isinstance(name, str) or not CLASS_NAME.match(name) or keyword.iskeyword(name) or name in FIXED_NAMES:
        raise ValueError(f"invalid class name {name!r}: use a Python identifier that starts with a letter")


def export_source(program: Program, class_name: str = "Found", provenance: dict | None = None) -> str:
    """The text of a standalone module defining `class_name`, an optimizer running `program`."""
    check_class_name(class_name)
    program = eliminate_dead_code(program)
    for name in program.hparams:
        if name in RESERVED_HPARAMS or keyword.iskeyword(name) or keyword.issoftkeyword(name):
            raise RuleValidationError(f"hparam '{name}' cannot be exported: the optimizer uses that name itself")
    multi = len(program.routes) > 1
    routes = [route_source(r, program.hparams, f"_{r.name}" if multi else "") for r in program.routes]
    for r in routes:
        if "step" in r.states:
            raise RuleValidationError("a state named 'step' cannot be exported: it is the step counter's key")
    docs = {e.fn: e.doc if e.doc.startswith(e.name + "(") else f"{e.signature}: {e.doc}"
            for table in (PRIMITIVES, OPERATORS) for e in table.values()}
    constants, helpers = closure(set().union(*(r.helpers for r in routes)), docs)
    parts = [_docstring(program, class_name, provenance, routes), _imports(), f'__all__ = ["{class_name}"]',
             module_body(shell)]
    if constants or helpers:
        parts.append("# The primitives' own functions (optforge's dsl.primitives), as the interpreter runs them:\n"
                     "# `bd` counts leading ensemble axes (none here); `_scalar_*`, `_div` and `_pow` are the\n"
                     "# Python-float forms, with IEEE results (x / 0 is inf) where Python would raise.")
        parts[-1] += "\n\n" + "\n".join(constants) if constants else ""
    parts += helpers
    parts += [r.code for r in routes]
    parts += [route_table(routes), class_source(program, class_name, routes)]
    source = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
    compile(source, f"<export of {class_name}>", "exec")      # our own output: a generator bug fails here
    return source


def _imports() -> str:
    stdlib = sorted(ALLOWED_MODULES - {"torch"})
    return "from __future__ import annotations\n\n" + "\n".join(f"import {m}" for m in stdlib) + "\n\nimport torch"


def _docstring(program: Program, class_name: str, provenance: dict | None, routes: list[RouteSource]) -> str:
    prov = dict(provenance or {})
    prov.setdefault("source", f"builtin:{program.name}" if program.name else "a rule")
    canonical = to_text(program, doc=False).rstrip("\n")
    states = sorted({s for r in routes for s in r.states if s != "h"})
    lines = [f"{class_name}: an optimizer exported by optforge from the rule {prov['source']}.", ""]
    if program.doc:
        lines += [program.doc, ""]
    lines += ["The update rule, in optforge's rule language (canonical text). Each step moves a parameter",
              "by w <- w - lr * update, where g is its gradient, w the parameter and t its step count",
              "(1 on the first step):", ""]
    lines += [f"    {ln}" for ln in canonical.splitlines()]
    lines += [""]
    if states:
        lines.append(f"State ({', '.join(states)}) starts at zero and is kept per parameter.")
    lines += ["sqrt, rsqrt, log and pow(x, y) are protected: they act on |x|.", "",
              "In eager mode the steps equal optforge's rule interpreter (ProgramOptimizer) bit for bit.",
              "Each parameter's state holds its step count as a Python int; under torch.compile the",
              "optimizer compiles at most three times (empty state, step 1, generic), LR schedulers",
              "included. fused=True runs each step through torch.compile of the step function.", "",
              f"structural hash: {program.structural_hash}", "provenance:"]
    for key, value in prov.items():
        lines.append(f"    {key}: {value!r}" if isinstance(value, float) else f"    {key}: {value}")
    lines += ["", "The file needs only torch and the Python standard library. Example:", "",
              f"    opt = {class_name}(model.parameters(), lr=1e-3)",
              "    for x, y in data:",
              "        opt.zero_grad()",
              "        loss_fn(model(x), y).backward()",
              "        opt.step()"]
    return '"""' + escape_doc("\n".join(lines)) + '\n"""'
