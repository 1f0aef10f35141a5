"""A candidate rule as the search passes it around, and the outcome of evaluating it.

A `Candidate` is what a strategy proposes: a rule in canonical text (the printer's output, so
equal programs have equal text), where it came from (seed, mutation, crossover, random, optuna),
its parents and a one-line description of the change. An `Outcome` is what the driver tells the
strategy back: the fitness (tuned validation loss relative to tuned AdamW, geometric mean over the
tasks evaluated; lower is better; `evaluators.fitness.WORST_FITNESS` for a rule that failed) and
how far the rule got through the funnel. Both are plain data that round-trip through JSON, because
the journal stores them and Ray ships them between processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dsl.ir import Program


@dataclass(frozen=True)
class Candidate:
    """A proposed rule. ``id`` is unique within a search (the driver assigns ``c000123``)."""

    text: str  # canonical rule text (dsl.printer.to_text), the source of truth
    origin: str  # "seed" | "mutation" | "crossover" | "random" | "optuna"
    parents: tuple[str, ...] = ()  # ids of the candidates it was made from
    change: str = ""  # one line: what the mutation did ("insert: m2 = sign(g)"), or the seed name
    id: str = ""  # assigned by the driver when the candidate is journaled
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # strategy data (trial number)

    @cached_property
    def program(self) -> Program:
        from dsl.parser import parse

        return parse(self.text, name=self.id or None)

    def with_id(self, cid: str) -> Candidate:
        return Candidate(self.text, self.origin, self.parents, self.change, cid, dict(self.meta))

    def to_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "origin": self.origin,
                "parents": list(self.parents), "change": self.change, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> Candidate:
        return cls(d["text"], d["origin"], tuple(d.get("parents", ())), d.get("change", ""),
                   d.get("id", ""), dict(d.get("meta", {})))


@dataclass(frozen=True)
class Outcome:
    """What evaluating a candidate gave: fitness (lower is better) and the funnel stage reached.

    ``status``: ``ok`` (every task of the proxy suite ran), ``hurdle`` (stopped after the first
    task, whose ratio missed the hurdle: ``fitness`` is that task's ratio), ``invalid`` (the
    validity gate refused it: ``fitness`` is WORST_FITNESS and it was never trained), ``failed``
    (diverged, non-finite, an error while training, a timeout or a lost worker: WORST_FITNESS).
    A candidate that computes the same as one already evaluated (same structural hash or same
    functional fingerprint) is not trained: it gets that rule's outcome with ``same_as`` set.
    """

    fitness: float
    status: str
    tasks: dict[str, float] = field(default_factory=dict)  # task -> ratio to AdamW
    state_bytes: float | None = None  # optimizer state bytes per parameter
    wall_time_s: float = 0.0
    error: str = ""
    same_as: str = ""  # for duplicates: the id of the evaluated rule whose outcome this is

    @property
    def complete(self) -> bool:
        return self.status == "ok"

    @property
    def trained(self) -> bool:
        """Whether producing this outcome cost training runs (duplicates and invalid rules don't)."""
        return not self.same_as and self.status != "invalid"

    def reused_by(self, cid: str) -> Outcome:
        """This outcome, given to a duplicate of the rule ``cid`` (no time spent)."""
        return Outcome(self.fitness, self.status, dict(self.tasks), self.state_bytes, 0.0,
                       self.error, cid)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
