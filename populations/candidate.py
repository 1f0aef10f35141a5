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

import math
from dataclasses import dataclass, field, replace
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

    The funnel (``search.funnel``) runs stages from cheap to expensive; ``fitness`` is the one of
    the deepest stage reached (``stage``, at index ``depth``), with ``se`` the standard error of
    its logarithm (from seed-to-seed noise: the rule's own with several seeds, AdamW's measured
    noise with one) over ``seeds`` evaluation seeds; ``stages`` keeps every stage's result in
    order (``{"fitness", "se", "seeds", "tasks": {task: ratio}, "promoted", "wall_time_s"}``), and
    ``tasks`` the deepest stage's ratios. Rankings put deeper rules first, then lower fitness.

    ``status``: ``ok`` (every task of its deepest stage ran; the funnel stopped it there or it
    finished the last stage), ``hurdle`` (stopped by the promotion rule of its first stage),
    ``invalid`` (the validity gate refused it: WORST_FITNESS, never trained, depth -1), ``failed``
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
    stage: str = ""  # the deepest funnel stage reached ("" when never trained)
    depth: int = -1  # its index in the funnel (-1 when never trained)
    se: float = math.nan  # standard error of ln(fitness) at that stage
    seeds: int = 0  # evaluation seeds behind fitness
    stages: dict[str, dict] = field(default_factory=dict)  # every stage reached, in order

    @property
    def complete(self) -> bool:
        return self.status == "ok"

    def rank_key(self, z: float = 0.0) -> tuple:
        """Sort key, best first: failed and invalid rules last, then deeper stages first (at one
        depth, rules its promotion rule stopped after the rules that completed), then
        ln(fitness) + z standard errors (a lucky, noisy result is discounted by ``z``; an unknown
        error counts as none)."""
        value = self.fitness if isinstance(self.fitness, (int, float)) else math.inf
        if not value == value:  # NaN: no usable fitness
            value = math.inf
        log = math.log(value) if value > 0 else -math.inf
        se = self.se if isinstance(self.se, (int, float)) and math.isfinite(self.se) else 0.0
        return (self.status in ("failed", "invalid"), -self.depth, self.status == "hurdle", log + z * se)

    @property
    def trained(self) -> bool:
        """Whether producing this outcome cost training runs (duplicates and invalid rules don't)."""
        return not self.same_as and self.status != "invalid"

    def reused_by(self, cid: str) -> Outcome:
        """This outcome, given to a duplicate of the rule ``cid`` (no time spent)."""
        return replace(self, wall_time_s=0.0, same_as=cid, tasks=dict(self.tasks),
                       stages={k: dict(v) for k, v in self.stages.items()})

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        data = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if data.get("se") is None:  # JSON keeps no NaN: the journal writes it as null
            data.pop("se", None)
        if "depth" not in data and data.get("status") in ("ok", "hurdle", "failed"):
            data["depth"] = 0  # a journal from before the funnel: one stage, reached
        return cls(**data)
