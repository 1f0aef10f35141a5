"""Ablation of a rule: which of its parts carry it?

Each part of the rule is removed or neutralised in turn, the variant is measured with the same
protocol as the rule (``search.rule_scoring``: per-seed log fitness against tuned AdamW, lr
tuned for every variant as for the rule), and the change in fitness is reported with its seeds,
its standard error and a two-sided Welch p-value. The parts:

- **statements**: each live statement is removed, i.e. replaced by its identity ``x = x``: the
  name keeps its earlier value in the step, or zero for state (removing ``m = lerp(m, g, 0.1)``
  leaves ``m`` at zero). A statement that reaches neither ``update`` nor live state (dead code)
  is listed with no effect and not trained;
- **constants**: each literal is set to the identity of the operation it is an operand of (0
  for ``+`` and the right of ``-``; 1 for ``*`` and the right of ``/`` and ``**``), and to 0
  elsewhere (a call argument, the left of ``-``, ``/`` or ``**``: the term switched off);
- **hparams**: each hparam a live statement reads is set to 0 (no momentum for a ``beta``, no
  decay for ``wd``, no ``eps``).

A variant that equals the rule (a constant already neutral) is not listed; one that computes
what the rule computes (same functional fingerprint) gets its samples without training (effect 0);
one that the validity gate refuses (``update`` no longer depends on ``g``) or that diverges
is the largest effect there is: the rule cannot work without that part. Verdicts use
``alpha``: "carries the rule" (significantly worse without it), "better without it",
"no significant effect". Papers ablate an optimizer's parts by hand, one experiment per part;
here it is one command, ``optforge ablate``, with the same protocol and statistics as every other
comparison in optforge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dsl.analysis import eliminate_dead_code, live_statements
from dsl.ir import Assign, BinOp, Num, Program, children, names_read
from dsl.printer import expr_text, format_number, statement_text, to_text

from .program_edit import paths, replace_at
from .rule_scoring import ALPHA, Comparison, Measurement, Measurer, compare
from .simplify import statements, where, with_hparam, with_statement

SCHEMA = "optforge.ablate/1"
_IDENTITY = {("+", 0): 0.0, ("+", 1): 0.0, ("-", 1): 0.0, ("*", 0): 1.0, ("*", 1): 1.0,
             ("/", 1): 1.0, ("**", 1): 1.0}


@dataclass(frozen=True)
class Part:
    """One ablated part: its kind (statement, constant, hparam), its text and what was done."""

    kind: str
    text: str
    change: str
    dead: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def neutral_value(parent, side: int) -> float:
    """The neutral value of a literal that is operand ``side`` of ``parent`` (see module doc)."""
    if isinstance(parent, BinOp):
        return _IDENTITY.get((parent.op, side), 0.0)
    return 0.0


def _literal_sites(value) -> Iterator[tuple[tuple[int, ...], Num, float]]:
    """(path, literal, neutral value) of each literal of an expression."""
    if isinstance(value, Num):
        yield (), value, 0.0
    for path, node in paths(value):
        for side, child in enumerate(children(node)):
            if isinstance(child, Num):
                yield path + (side,), child, neutral_value(node, side)


def variants(program: Program) -> list[tuple[Part, Program | None]]:
    """Every (part, variant) of ``program``; the variant is None for dead code."""
    live = eliminate_dead_code(program)
    alive = {(r.name, i) for r in program.routes for i in live_statements(r, program.hparams)}
    out: list[tuple[Part, Program | None]] = []
    for route, i, st in statements(program):
        text = statement_text(st) + where(program, route)
        if (route, i) not in alive:
            out.append((Part("statement", text, "dead code: reaches neither update nor state",
                             dead=True), None))
            continue
        out.append((Part("statement", text, "removed (identity: the name keeps its value)"),
                    with_statement(program, route, i, None)))
    read = {n for st in live.statements() for n in names_read(st.value)}
    for name, value in program.hparam_items:
        if name in read and value != 0.0:
            out.append((Part("hparam", f"{name}={format_number(value)}", f"{name} -> 0"),
                        with_hparam(program, name, 0.0)))
    for route, i, st in statements(live):
        for path, literal, neutral in _literal_sites(st.value):
            if literal.value == neutral:
                continue
            new = Assign(st.target, replace_at(st.value, path, Num(neutral)))
            out.append((Part("constant", f"{format_number(literal.value)} in "
                                         f"{statement_text(st)}{where(program, route)}",
                             f"{format_number(literal.value)} -> {format_number(neutral)} "
                             f"(now: {expr_text(new.value)})"),
                        with_statement(live, route, i, new)))
    return out


@dataclass(frozen=True)
class Row:
    """One part's result: the variant's measurement and its comparison with the rule."""

    part: Part
    variant: str  # the variant's canonical text ("" for dead code)
    measurement: Measurement
    comparison: Comparison

    def verdict(self, alpha: float = ALPHA) -> str:
        m, c = self.measurement, self.comparison
        if self.part.dead:
            return "dead code: no effect"
        if m.status == "invalid":
            return f"carries the rule: invalid without it ({m.reason})"
        if m.status == "failed":
            return "carries the rule: diverges without it"
        if c.effect == 0.0 and c.se == 0.0:  # the rule's own samples: the same function
            return "no effect: computes the same without it"
        if c.worse(alpha):
            return "carries the rule (significantly worse without it)"
        if c.better(alpha):
            return "better without it (significantly)"
        return "no significant effect"

    def to_dict(self, alpha: float = ALPHA) -> dict:
        return {"part": self.part.to_dict(), "variant": self.variant,
                "measurement": self.measurement.to_dict(), **self.comparison.to_dict(),
                "fitness_factor": math.exp(self.comparison.effect)
                if math.isfinite(self.comparison.effect) else math.inf,
                "verdict": self.verdict(alpha)}


@dataclass(frozen=True)
class Ablation:
    """The rule's own measurement and one row per part."""

    rule: Program
    base: Measurement
    rows: tuple[Row, ...]
    alpha: float

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "rule": to_text(self.rule, doc=False),
                "base": self.base.to_dict(), "alpha": self.alpha,
                "rows": [r.to_dict(self.alpha) for r in self.rows]}


def ablate(program: Program, measurer: Measurer, alpha: float = ALPHA,
           on_row: Callable[[Row], None] | None = None) -> Ablation:
    """Measure ``program`` and each of its `variants` (module docstring). Raises ValueError if
    the rule itself cannot be measured with at least two finite samples."""
    base = measurer.measure(program)
    if base.status != "ok" or len(base.samples) < 2:
        raise ValueError(f"cannot ablate: the rule itself measured {base.status}"
                         f"{' (' + base.reason + ')' if base.reason else ''} with "
                         f"{len(base.samples)} sample(s); a Welch test needs >= 2 finite ones")
    rows = []
    for part, variant in variants(program):
        if variant is None:
            row = Row(part, "", base, Comparison(0.0, 0.0, 1.0))
        else:
            found = measurer.measure(variant)
            row = Row(part, to_text(eliminate_dead_code(variant), doc=False).strip(), found,
                      compare(found, base))
        rows.append(row)
        if on_row:
            on_row(row)
    return Ablation(program, base, tuple(rows), alpha)
