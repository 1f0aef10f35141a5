"""The population of a search, rebuilt from its journal: candidates, outcomes, indexes, views.

`Population.apply(record)` folds one journal record in; `Population.from_records` replays a
whole journal, so the in-memory state after a resume is exactly the state before the crash.
Views built on it:

- **dedup indexes**: structural hash -> first candidate with it, functional fingerprint -> first
  *evaluated* candidate with it (AutoML-Zero's functional equivalence checking, Real et al. 2020);
- **leaderboard**: by the deepest funnel stage reached, then fitness (lower is better; failed
  rules last), duplicates left out (`populations.candidate.Outcome.rank_key`);
- **stage results**: the fitnesses every stage has seen, which its promotion rule compares with;
- **Pareto front** over (fitness, state bytes per parameter), both minimised (the non-dominated
  set, Deb et al. 2002);
- **lineage**: a ``networkx`` DiGraph parent -> child, each edge labelled with the change;
- **progress**: best fitness so far after each trained evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from .candidate import Candidate, Outcome


@dataclass
class Entry:
    """One candidate and what is known about it."""

    candidate: Candidate
    hash: str = ""
    fingerprint: str = ""
    outcome: Outcome | None = None
    finished_seq: int = 0  # journal seq of its outcome (0: not finished)
    validation: dict | None = None  # held-out meta-validation result, if it was validated
    stages: list[dict] = field(default_factory=list)  # its ``staged`` records, in funnel order
    remeasured: dict | None = None  # its ``remeasured`` record, if it had one

    @property
    def id(self) -> str:
        return self.candidate.id


@dataclass
class Population:
    entries: dict[str, Entry] = field(default_factory=dict)  # id -> entry, in proposal order
    by_hash: dict[str, str] = field(default_factory=dict)
    by_fingerprint: dict[str, str] = field(default_factory=dict)
    reference: dict | None = None  # AdamW per stage: {stage: {task: measurement}}
    reference_record: dict | None = None  # the whole ``reference`` record (wall times too)
    starts: int = 0  # how many times a driver started on this journal

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> Population:
        pop = cls()
        for record in records:
            pop.apply(record)
        return pop

    def apply(self, record: dict) -> None:
        event = record["event"]
        if event == "start":
            self.starts += 1
        elif event == "reference":
            self.reference_record = record
            if "stages" in record:
                self.reference = record["stages"]
            else:  # a journal from before the funnel: AdamW's loss per task, one stage
                self.reference = {"proxy": {t: {"losses": {"0": v}} for t, v in record["tasks"].items()}}
        elif event == "proposed":
            cand = Candidate.from_dict(record["candidate"])
            self.entries[cand.id] = Entry(cand, record.get("hash", ""), record.get("fingerprint", ""))
            if record.get("hash"):
                self.by_hash.setdefault(record["hash"], cand.id)
        elif event == "finished":
            entry = self.entries[record["id"]]
            entry.outcome = Outcome.from_dict(record["outcome"])
            entry.finished_seq = record["seq"]
            if entry.fingerprint and entry.outcome.trained:
                self.by_fingerprint.setdefault(entry.fingerprint, entry.id)
        elif event == "staged":
            self.entries[record["id"]].stages.append(record)
        elif event == "remeasured":
            self.entries[record["id"]].remeasured = record
        elif event == "validated":
            self.entries[record["id"]].validation = record["result"]

    # -- queries ---------------------------------------------------------------------------
    def next_id(self) -> str:
        return f"c{len(self.entries) + 1:06d}"

    def pending(self) -> list[Candidate]:
        """Proposed but not finished (in flight when the driver stopped), in proposal order."""
        return [e.candidate for e in self.entries.values() if e.outcome is None]

    def finished(self) -> list[Entry]:
        """Entries with an outcome, in the order the outcomes arrived."""
        done = [e for e in self.entries.values() if e.outcome is not None]
        return sorted(done, key=lambda e: e.finished_seq)

    @property
    def trained_count(self) -> int:
        """Evaluations that cost training runs (what a search's budget counts)."""
        return sum(1 for e in self.entries.values() if e.outcome is not None and e.outcome.trained)

    def leaderboard(self, k: int | None = None, z: float = 0.0) -> list[Entry]:
        """Trained, non-duplicate candidates, best first: deepest stage, then fitness (plus ``z``
        standard errors), failed ones last."""
        rows = [e for e in self.finished() if e.outcome.trained]
        rows.sort(key=lambda e: (*e.outcome.rank_key(z), e.finished_seq))
        return rows if k is None else rows[:k]

    def stage_fitnesses(self, stage: str, exclude: str = "") -> list[float]:
        """The fitness of every rule measured at ``stage`` so far, remeasured where it was (failed
        ones left out)."""
        out = []
        for e in self.entries.values():
            if e.id == exclude:
                continue
            for rec in e.stages:
                if rec["stage"] != stage:
                    continue
                if e.remeasured is not None and e.remeasured["stage"] == stage:
                    rec = e.remeasured
                if rec["score"]["status"] == "ok":
                    out.append(rec["score"]["fitness"])
        return out

    def pareto_front(self) -> list[Entry]:
        """Complete candidates of the deepest stage any reached, not dominated in (fitness, state
        bytes/param), by fitness (fitnesses of different stages do not compare)."""
        done = [e for e in self.leaderboard() if e.outcome.complete
                and e.outcome.state_bytes is not None and math.isfinite(e.outcome.fitness)]
        deepest = max((e.outcome.depth for e in done), default=0)
        pts = [e for e in done if e.outcome.depth == deepest]
        front = []
        for e in pts:
            f, b = e.outcome.fitness, e.outcome.state_bytes
            dominated = any(o.outcome.fitness <= f and o.outcome.state_bytes <= b
                            and (o.outcome.fitness < f or o.outcome.state_bytes < b) for o in pts)
            if not dominated:
                front.append(e)
        return front

    def lineage(self) -> nx.DiGraph:
        """parent -> child for every proposed candidate; nodes carry origin, fitness and status."""
        graph = nx.DiGraph()
        for e in self.entries.values():
            out = e.outcome
            graph.add_node(e.id, origin=e.candidate.origin, change=e.candidate.change,
                           fitness=None if out is None else out.fitness,
                           status=None if out is None else out.status)
            for parent in e.candidate.parents:
                graph.add_edge(parent, e.id, change=e.candidate.change)
        return graph

    def progress(self) -> list[tuple[int, float, float]]:
        """(evaluation number, this fitness, best complete fitness so far) per trained outcome."""
        rows, best, n = [], math.inf, 0
        for e in self.finished():
            if not e.outcome.trained:
                continue
            n += 1
            if e.outcome.complete:
                best = min(best, e.outcome.fitness)
            rows.append((n, e.outcome.fitness, best))
        return rows
