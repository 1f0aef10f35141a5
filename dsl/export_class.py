"""The rule-specific end of an exported file: its route table and its optimizer class (see `dsl.export`).

The class's methods are the shell's (`dsl.shell.RuleOptimizer`, copied); what is printed here is
what differs from rule to rule: the table of routes (name -> the route's printed functions, its
state keys and which coefficients vary from step to step), the class's docstring, its attributes
and an `__init__` that takes the rule's hparams as keyword arguments with the rule's defaults
(integers stay integers: `ns_steps=5`) and does what `RuleOptimizer.__init__` does.
"""

from __future__ import annotations

import textwrap

from .codegen import RouteSource
from .codetext import wrap
from .ir import NEXT_W, OUTPUT, Program, primary_output
from .printer import format_number
from .shell import RuleOptimizer
from .sourcecopy import methods_after

FUSED_DOC = ("fused: run each step through torch.compile of the step function (one fused kernel per\n"
             "            parameter; the first step compiles for a few seconds). Default False.")


def escape_doc(text: str) -> str:
    """Text safe inside a triple-quoted docstring: backslashes, runs of quotes and control characters
    escaped."""
    out = []
    for k, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"' and '"' in text[max(k - 1, 0):k] + text[k + 1:k + 2]:   # only runs of quotes
            out.append('\\"')
        elif ch == "\n" or ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def route_table(routes: list[RouteSource]) -> str:
    """`_ROUTES = {name: Route(...)}` for the printed routes."""
    lines = ["# each route's functions, its state keys, and which coefficients change from step to step",
             "_ROUTES = {"]
    for r in routes:
        keys = "(" + ", ".join(f'"{s}"' for s in r.states) + ("," if len(r.states) == 1 else "") + ")"
        items = [r.functions["init_state"], r.functions["coefficients"], r.functions["step"], keys, repr(r.varying)]
        lines.append(wrap(f'    "{r.route}": Route(', items, "),"))
    return "\n".join(lines + ["}"])


def class_source(program: Program, class_name: str, routes: list[RouteSource], lr: float = 1e-3) -> str:
    """The optimizer class of a program whose routes were printed as `routes`."""
    names = [r.name for r in program.routes]
    reads_h = any("h" in r.states for r in routes)
    evaluates = any("eval_w" in r.states for r in routes)
    hp = program.hparams
    group_route = f", and set route (one of {', '.join(repr(n) for n in names)})" if names != ["default"] else ""
    arg_docs = [f"        {k}: (default {v!r})." for k, v in hp.items()]
    init = wrap("    def __init__(", ["self", "params", f"lr={format_number(lr)}", "*"]
                + [f"{k}={v!r}" for k, v in hp.items()] + ["fused=False"], "):")
    defaults = wrap("        defaults = {", ['"lr": lr'] + [f'"{k}": {k}' for k in hp] + ['"route": None']
                    + (['"train_mode": True'] if evaluates else []), "}")
    hparam_names = "(" + ", ".join(f'"{k}"' for k in hp) + ("," if len(hp) == 1 else "") + ")"
    lines = [f"class {class_name}(torch.optim.Optimizer):",
             f'    """{_summary(program, class_name)}',
             "",
             "    Args:",
             "        params: an iterable of parameters, or of dicts defining parameter groups; a group may",
             f"            override lr and any hparam{group_route}.",
             f"        lr: learning rate, the step is {_step_text(program)} (default {format_number(lr)}).",
             *arg_docs,
             f"        {FUSED_DOC}",
             '    """',
             "",
             "    _routes = _ROUTES",
             wrap("    _hparam_names = ", [hparam_names], ""),
             "    _failure = RuntimeError          # the error of a step that cannot run",
             f"    reads_curvature = {reads_h}" + ("           # feed h with update_curvature()" if reads_h else ""),
             "",
             init,
             "        _check_fused(fused)",
             "        self.fused = fused",
             defaults,
             "        super().__init__(params, defaults)",
             "",
             methods_after(RuleOptimizer, "__init__", frozenset(() if reads_h else ("update_curvature",))
                           | frozenset(() if evaluates else ("eval", "train", "_set_mode")))]
    return "\n".join(lines)


def _step_text(program: Program) -> str:
    if all(primary_output(r) == NEXT_W for r in program.routes):
        return "w <- next_w, with lr inside the rule"
    return "w <- w - lr * update" + ("" if all(primary_output(r) == OUTPUT for r in program.routes) else " (or next_w)")


def _summary(program: Program, class_name: str) -> str:
    first = f"{class_name}, an optimizer found by optforge."
    if program.doc:                  # the doc's first sentence
        lines = []
        for line in program.doc.splitlines()[:4]:
            lines.append(line.strip())
            if line.rstrip().endswith("."):
                break
        first = " ".join(lines)
    lines = textwrap.wrap(escape_doc(first), 92) or [""]
    return "\n    ".join(lines) + "\n\n    The update rule and its provenance are in the module docstring."
