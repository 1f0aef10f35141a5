"""The steady-state search driver: keep the executor full, journal everything, resume from it.

For each candidate a strategy proposes, in order:

1. **canonicalise**: parse the text; a rule that does not parse is ``invalid``;
2. **dedup by structure**: the structural hash (dead code, renaming and statement order do not
   change it) of an already evaluated rule -> that rule's outcome, no training;
3. **validity gate** (``dsl.fingerprint.check``): update depends on g, shapes resolve, the fixed
   problem's trajectory stays finite; refused -> ``invalid``;
4. **dedup by function**: the same functional fingerprint as an evaluated rule -> its outcome
   (AutoML-Zero's functional equivalence checking, Real et al. 2020); a duplicate of a rule still
   in flight waits for it;
5. **evaluate** as an executor job (``search.evaluation.evaluate_job``: the proxy funnel);
6. **tell** the strategy and append the outcome to the journal.

A new candidate is asked for as soon as a slot frees (steady state, never generation barriers),
and the driver waits on whichever job finishes first. The search's budget counts trained
candidates only. Every step is a journal record on disk before the next begins, so after a kill
``--resume`` rebuilds the population, tells the strategy every finished outcome again in order,
re-submits what was in flight, and goes on; nothing finished is ever trained twice.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from dataclasses import dataclass, field

from dsl.errors import RuleError
from evaluators.fitness import WORST_FITNESS
from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from populations.population import Population

from .evaluation import ProxySettings, evaluate_job

PROPOSALS_PER_EVALUATION = 50  # give up when a strategy only repeats itself this much


@dataclass
class Admission:
    """What the checks before training decided for a candidate."""

    outcome: Outcome | None = None  # set: finished without training (invalid or duplicate)
    waits_for: str = ""  # set: a duplicate of this in-flight candidate
    hash: str = ""
    fingerprint: str = ""


@dataclass
class Driver:
    """Run a search to its evaluation budget; ``run()`` returns the population."""

    journal: Journal
    strategy: object  # search.strategies.base.Strategy
    executor: object  # search.executors.base.Executor
    proxy: ProxySettings
    seeds: list[Candidate]
    evaluations: int
    on_outcome: Callable[[Candidate, Outcome, Population], None] | None = None
    log: Callable[[str], None] = print
    population: Population = field(init=False)

    def __post_init__(self) -> None:
        self.population = Population.from_records(self.journal.records)
        self._in_flight: dict[cf.Future, Candidate] = {}
        self._fp_in_flight: dict[str, str] = {}  # fingerprint -> id of the candidate in flight
        self._waiting: dict[str, list[Candidate]] = {}  # in-flight id -> its duplicates
        self._proposals = 0

    # -- the reference -------------------------------------------------------------------
    def ensure_reference(self, reference_text: str) -> dict:
        """AdamW's tuned loss per proxy task: from the journal, or one job now (then journaled)."""
        if self.population.reference is None:
            self.log("tuning the AdamW reference on the proxy tasks ...")
            payload = {"id": "reference", "text": reference_text,
                       "settings": self.proxy.to_dict(), "reference": None}
            result = self.executor.submit(evaluate_job, payload).result()
            tasks = {t: v["loss"] for t, v in result["losses"].items()}
            record = self.journal.append("reference", tasks=tasks, lrs={
                t: v["lr"] for t, v in result["losses"].items()})
            self.population.apply(record)
        return self.population.reference

    # -- admission -----------------------------------------------------------------------
    def _admit(self, cand: Candidate) -> Admission:
        from dsl.fingerprint import check

        pop = self.population
        try:
            program = cand.program
            digest = program.structural_hash
        except RuleError as exc:
            return Admission(Outcome(WORST_FITNESS, "invalid", error=str(exc)))
        same = pop.by_hash.get(digest)
        if same and same != cand.id:
            done = pop.entries[same].outcome
            if done is not None:
                return Admission(done.reused_by(same), hash=digest)
            return Admission(waits_for=same, hash=digest)
        gate = check(program)
        if not gate.ok:
            return Admission(Outcome(WORST_FITNESS, "invalid", error=gate.reason), hash=digest,
                             fingerprint=gate.fingerprint or "")
        fp = gate.fingerprint or ""
        same = pop.by_fingerprint.get(fp)
        if same and same != cand.id:
            return Admission(pop.entries[same].outcome.reused_by(same), hash=digest, fingerprint=fp)
        if fp in self._fp_in_flight and self._fp_in_flight[fp] != cand.id:
            return Admission(waits_for=self._fp_in_flight[fp], hash=digest, fingerprint=fp)
        return Admission(hash=digest, fingerprint=fp)

    def _propose(self, cand: Candidate, reference: dict) -> None:
        """Journal a new candidate (or take back a pending one) and admit it."""
        self._proposals += 1
        adm = self._admit(cand)
        if not cand.id:
            cand = cand.with_id(self.population.next_id())
            record = self.journal.append("proposed", candidate=cand.to_dict(), hash=adm.hash,
                                         fingerprint=adm.fingerprint)
            self.population.apply(record)
        if adm.outcome is not None:
            self._finish(cand, adm.outcome)
        elif adm.waits_for:
            self._waiting.setdefault(adm.waits_for, []).append(cand)
        else:
            payload = {"id": cand.id, "text": cand.text, "settings": self.proxy.to_dict(),
                       "reference": reference}
            self._in_flight[self.executor.submit(evaluate_job, payload)] = cand
            self._fp_in_flight[adm.fingerprint] = cand.id

    def _finish(self, cand: Candidate, outcome: Outcome) -> None:
        record = self.journal.append("finished", id=cand.id, outcome=outcome.to_dict())
        self.population.apply(record)
        self.strategy.tell(cand, outcome)
        if self.on_outcome:
            self.on_outcome(cand, outcome, self.population)
        for dup in self._waiting.pop(cand.id, []):
            self._finish(dup, outcome.reused_by(cand.id))

    def _collect(self, timeout: float | None) -> None:
        done, _ = cf.wait(list(self._in_flight), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        for fut in [f for f in self._in_flight if f in done]:  # submission order: deterministic
            cand = self._in_flight.pop(fut)
            self._fp_in_flight.pop(self.population.entries[cand.id].fingerprint, None)
            try:
                outcome = Outcome.from_dict(fut.result()["outcome"])
            except Exception as exc:  # noqa: BLE001 -- timeouts, lost workers, bugs: a failed result
                message = str(exc).splitlines()[0] if str(exc) else ""
                outcome = Outcome(WORST_FITNESS, "failed", error=f"{type(exc).__name__}: {message}")
            self._finish(cand, outcome)

    # -- the loop ------------------------------------------------------------------------
    def _budget_left(self) -> int:
        return self.evaluations - self.population.trained_count - len(self._in_flight)

    def run(self, reference_text: str) -> Population:
        reference = self.ensure_reference(reference_text)
        for entry in self.population.finished():  # resume: the strategy relearns in order
            self.strategy.tell(entry.candidate, entry.outcome)
        proposed_seeds = {e.candidate.change for e in self.population.entries.values()
                          if e.candidate.origin == "seed"}
        queue = self.population.pending() + [s for s in self.seeds if s.change not in proposed_seeds]
        limit = PROPOSALS_PER_EVALUATION * max(1, self.evaluations)
        capacity = max(1, int(getattr(self.executor, "capacity", 1)))
        while True:
            while self._budget_left() > 0 and len(self._in_flight) < capacity:
                if not queue:
                    if self._proposals >= limit:
                        break
                    queue = list(self.strategy.ask(capacity - len(self._in_flight)))
                    if not queue:
                        break
                self._propose(queue.pop(0), reference)
            if not self._in_flight:
                break
            self._collect(timeout=None)
        if self._budget_left() > 0 and not self._in_flight:
            if self._proposals >= limit:
                self.log(f"stopped early: {self._proposals} proposals gave only "
                         f"{self.population.trained_count} new rules to train")
            elif self._waiting:
                self.log("stopped with duplicates still waiting")
        return self.population

    def in_flight(self) -> list[Candidate]:
        return list(self._in_flight.values())


def seed_candidates(names: list[str]) -> tuple[list[Candidate], str]:
    """One ``seed`` candidate per rule spec (builtin name or .opt path), and AdamW's text."""
    from dsl.loader import load_rule
    from dsl.printer import to_text

    seeds = []
    for spec in names:
        program = load_rule(spec if spec.endswith(".opt") or ":" in spec else f"builtin:{spec}")
        seeds.append(Candidate(to_text(program, doc=False), "seed", (), spec))
    return seeds, to_text(load_rule("builtin:adamw"), doc=False)
