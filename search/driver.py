"""The steady-state search driver: keep the executor full, journal everything, resume from it.

For each candidate a strategy proposes, in order:

1. **canonicalise**: parse the text; a rule that does not parse is ``invalid``;
2. **dedup by structure**: the structural hash (dead code, renaming and statement order do not
   change it) of an already evaluated rule -> that rule's outcome, no training;
3. **validity gate** (``dsl.fingerprint.check``): update depends on g, shapes resolve, the fixed
   problem's trajectory stays finite; refused -> ``invalid``;
4. **dedup by function**: the same functional fingerprint as an evaluated rule -> its outcome
   (AutoML-Zero's functional equivalence checking, Real et al. 2020); a duplicate of a rule still
   in the funnel waits for it;
5. **the funnel** (``search.funnel``): stage 0 as an executor job (``search.evaluation``), then,
   as long as the stage's promotion rule (or the strategy's own pruner) lets it, the next stage;
   a rule that reaches the top ``remeasure_top_k`` of the last stage is **re-measured** on fresh
   seeds before it is final, so one lucky evaluation cannot rule the population (its fitness is
   then the mean over every seed it has seen);
6. **tell** the strategy the final outcome and journal it.

Jobs of deeper stages go first when a slot frees, then new candidates (steady state, never
generation barriers); the driver waits on whichever job finishes first. The budget counts rules
that entered the funnel. Every step is a journal record on disk before the next begins
(``proposed``, ``staged`` per stage with its promotion decision, ``remeasured``, ``finished``), so
after a kill ``--resume`` rebuilds the population, tells the strategy every finished outcome again
in order, resubmits each unfinished rule at the stage it had reached, and goes on; nothing
finished is trained twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from dsl.errors import RuleError
from evaluators.fitness import WORST_FITNESS
from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from populations.population import Entry, Population

from .evaluation import assemble_reference, reference_payloads, stage_job
from .funnel import FunnelPlan, StageScore, promotes, score

PROPOSALS_PER_EVALUATION = 50  # give up when a strategy only repeats itself this much


@dataclass
class Admission:
    """What the checks before training decided for a candidate."""

    outcome: Outcome | None = None  # set: finished without training (invalid or duplicate)
    waits_for: str = ""  # set: a duplicate of this in-flight candidate
    hash: str = ""
    fingerprint: str = ""


@dataclass(frozen=True)
class Job:
    candidate: Candidate
    kind: str  # "stage" | "remeasure"
    depth: int


def outcome_of(entry: Entry, funnel: FunnelPlan) -> Outcome:
    """The outcome a rule's staged records (and remeasurement) add up to."""
    records = list(entry.stages)
    state_bytes = next((r["state_bytes"] for r in records if r.get("state_bytes") is not None), None)
    stages = {r["stage"]: {**r["score"], "promoted": r["promoted"], "wall_time_s": r["wall_time_s"]}
              for r in records}
    last = dict(records[-1]["score"])
    wall = sum(r["wall_time_s"] for r in records)
    if entry.remeasured is not None:
        last = dict(entry.remeasured["score"])
        stages[records[-1]["stage"]].update(last)
        wall += entry.remeasured["wall_time_s"]
    depth = records[-1]["depth"]
    status = last["status"]
    if status == "ok" and depth == 0 and funnel.last > 0 and not records[-1]["promoted"]:
        status = "hurdle"
    return Outcome(last["fitness"], status, dict(last["ratios"]), state_bytes, wall,
                   last.get("error", ""), stage=records[-1]["stage"], depth=depth,
                   se=math.nan if last["se"] is None else last["se"], seeds=last["seeds"],
                   stages=stages)


def _score_dict(s: StageScore) -> dict:
    return dataclasses.asdict(s)


@dataclass
class Driver:
    """Run a search to its evaluation budget; ``run()`` returns the population."""

    journal: Journal
    strategy: object  # search.strategies.base.Strategy
    executor: object  # search.executors.base.Executor
    funnel: FunnelPlan
    seeds: list[Candidate]
    evaluations: int
    on_outcome: Callable[[Candidate, Outcome, Population], None] | None = None
    on_stage: Callable[[Candidate, dict], None] | None = None
    log: Callable[[str], None] = print
    population: Population = field(init=False)

    def __post_init__(self) -> None:
        self.population = Population.from_records(self.journal.records)
        self._jobs: dict[cf.Future, Job] = {}
        self._ready: list[Job] = []
        self._active: dict[str, Candidate] = {}  # in the funnel: admitted, not finished
        self._fp_in_flight: dict[str, str] = {}  # fingerprint -> id of the candidate in the funnel
        self._waiting: dict[str, list[Candidate]] = {}  # id in the funnel -> its duplicates
        self._proposals = 0

    # -- the reference -------------------------------------------------------------------
    def ensure_reference(self, reference_text: str) -> dict:
        """AdamW at every stage and task: from the journal, or measured now (then journaled)."""
        names = [s.name for s in self.funnel.stages]
        if self.population.reference is not None and all(n in self.population.reference for n in names):
            return self.population.reference
        self.log("measuring the AdamW reference at every funnel stage ...")
        payloads = reference_payloads(self.funnel, reference_text)
        futures = {key: self.executor.submit(stage_job, p) for key, p in payloads.items()}
        stages, wall = assemble_reference(self.funnel, {key: f.result() for key, f in futures.items()})
        seeds = next(iter(payloads.values()))["reference_seeds"]
        record = self.journal.append("reference", stages=stages, wall_time_s=wall, seeds=seeds)
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

    def _propose(self, cand: Candidate) -> None:
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
            self._enter(cand)
            self._ready.append(Job(cand, "stage", 0))

    def _enter(self, cand: Candidate) -> None:
        self._active[cand.id] = cand
        fp = self.population.entries[cand.id].fingerprint
        if fp:
            self._fp_in_flight[fp] = cand.id

    def _finish(self, cand: Candidate, outcome: Outcome) -> None:
        self._active.pop(cand.id, None)
        fp = self.population.entries[cand.id].fingerprint
        if self._fp_in_flight.get(fp) == cand.id:
            del self._fp_in_flight[fp]
        record = self.journal.append("finished", id=cand.id, outcome=outcome.to_dict())
        self.population.apply(record)
        self.strategy.tell(cand, outcome)
        if self.on_outcome:
            self.on_outcome(cand, outcome, self.population)
        for dup in self._waiting.pop(cand.id, []):
            self._finish(dup, outcome.reused_by(cand.id))

    # -- jobs ----------------------------------------------------------------------------
    def _submit(self, job: Job) -> None:
        stage = self.funnel.stages[job.depth]
        entry = self.population.entries[job.candidate.id]
        payload = {"id": job.candidate.id, "text": job.candidate.text, "stage": stage.to_dict(),
                   "reference": self.population.reference[stage.name]}
        if job.kind == "remeasure":
            lrs = {t: m["lr"] for t, m in entry.stages[-1]["tasks"].items()}
            payload["remeasure"] = {"seeds": self.funnel.remeasure_seed_list(), "lrs": lrs}
        else:
            payload["previous"] = {m["key"]: m for r in entry.stages for m in r["tasks"].values()
                                   if "key" in m}
        self._jobs[self.executor.submit(stage_job, payload)] = job

    def _collect(self) -> None:
        done, _ = cf.wait(list(self._jobs), return_when=cf.FIRST_COMPLETED)
        for fut in [f for f in self._jobs if f in done]:  # submission order: deterministic
            job = self._jobs.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 -- timeouts, lost workers, bugs: a failed result
                message = str(exc).splitlines()[0] if str(exc) else ""
                result = {"tasks": {}, "state_bytes": None, "wall_time_s": 0.0,
                          "error": f"{type(exc).__name__}: {message}"}
            if job.kind == "remeasure":
                self._remeasured(job, result)
            else:
                self._staged(job, result)

    def _staged(self, job: Job, result: dict) -> None:
        cand, k = job.candidate, job.depth
        stage = self.funnel.stages[k]
        s = score(result["tasks"], self.population.reference[stage.name])
        if result.get("error"):
            s = dataclasses.replace(s, status="failed", fitness=WORST_FITNESS, error=result["error"])
        promoted = remeasure = False
        if s.status == "ok" and k < self.funnel.last:
            decide = getattr(self.strategy, "promote", None)
            verdict = decide(cand, k, s.fitness) if decide is not None else None
            others = self.population.stage_fitnesses(stage.name, exclude=cand.id)
            promoted = promotes(stage, s, others, self.funnel.z) if verdict is None else bool(verdict)
        elif s.status == "ok" and self.funnel.remeasure_top_k and self.funnel.remeasure_seeds:
            others = sorted(self.population.stage_fitnesses(stage.name, exclude=cand.id))
            remeasure = len([f for f in others if f < s.fitness]) < self.funnel.remeasure_top_k
        record = self.journal.append("staged", id=cand.id, stage=stage.name, depth=k,
                                     tasks=result["tasks"], score=_score_dict(s), promoted=promoted,
                                     remeasure=remeasure, wall_time_s=result["wall_time_s"],
                                     state_bytes=result.get("state_bytes"))
        self.population.apply(record)
        if self.on_stage:
            self.on_stage(cand, record)
        self._next(cand)

    def _remeasured(self, job: Job, result: dict) -> None:
        cand = job.candidate
        last = self.population.entries[cand.id].stages[-1]
        merged = {t: {**m, "losses": {**m["losses"], **result["tasks"].get(t, {}).get("losses", {})}}
                  for t, m in last["tasks"].items()}
        s = score(merged, self.population.reference[last["stage"]])
        if result.get("error"):
            s = dataclasses.replace(s, status="failed", fitness=WORST_FITNESS, error=result["error"])
        record = self.journal.append("remeasured", id=cand.id, stage=last["stage"], tasks=merged,
                                     score=_score_dict(s), wall_time_s=result["wall_time_s"])
        self.population.apply(record)
        self._next(cand)

    def _next(self, cand: Candidate) -> None:
        """After a stage record: the next job of ``cand``, or its final outcome."""
        entry = self.population.entries[cand.id]
        last = entry.stages[-1]
        if last["promoted"]:
            self._ready.append(Job(cand, "stage", last["depth"] + 1))
        elif last["remeasure"] and entry.remeasured is None:
            self._ready.append(Job(cand, "remeasure", last["depth"]))
        else:
            self._finish(cand, outcome_of(entry, self.funnel))

    # -- the loop ------------------------------------------------------------------------
    def _budget_left(self) -> int:
        return self.evaluations - self.population.trained_count - len(self._active)

    def _resume_pending(self) -> list[Candidate]:
        """Unfinished candidates: those with stage records go on where they were; the others
        are proposed again (returned)."""
        again = []
        for cand in self.population.pending():
            entry = self.population.entries[cand.id]
            if not entry.stages:
                again.append(cand)
                continue
            self._enter(cand)
            self._next(cand)
        return again

    def run(self, reference_text: str) -> Population:
        self.ensure_reference(reference_text)
        for entry in self.population.finished():  # resume: the strategy relearns in order
            self.strategy.tell(entry.candidate, entry.outcome)
        proposed_seeds = {e.candidate.change for e in self.population.entries.values()
                          if e.candidate.origin == "seed"}
        queue = self._resume_pending() + [s for s in self.seeds if s.change not in proposed_seeds]
        limit = PROPOSALS_PER_EVALUATION * max(1, self.evaluations)
        capacity = max(1, int(getattr(self.executor, "capacity", 1)))
        while True:
            while len(self._jobs) < capacity:
                if self._ready:
                    self._ready.sort(key=lambda j: -j.depth)  # deeper stages first
                    self._submit(self._ready.pop(0))
                    continue
                if self._budget_left() <= 0:
                    break
                if not queue:
                    if self._proposals >= limit:
                        break
                    queue = list(self.strategy.ask(capacity - len(self._jobs)))
                    if not queue:
                        break
                self._propose(queue.pop(0))
            if not self._jobs:
                break
            self._collect()
        if self._budget_left() > 0:
            if self._proposals >= limit:
                self.log(f"stopped early: {self._proposals} proposals gave only "
                         f"{self.population.trained_count} new rules to train")
            elif self._waiting:
                self.log("stopped with duplicates still waiting")
        return self.population

    def in_flight(self) -> list[Candidate]:
        return [job.candidate for job in self._jobs.values()]


def seed_candidates(names: list[str]) -> tuple[list[Candidate], str]:
    """One ``seed`` candidate per rule spec (builtin name or .opt path), and AdamW's text."""
    from dsl.loader import load_rule
    from dsl.printer import to_text

    seeds = []
    for spec in names:
        program = load_rule(spec if spec.endswith(".opt") or ":" in spec else f"builtin:{spec}")
        seeds.append(Candidate(to_text(program, doc=False), "seed", (), spec))
    return seeds, to_text(load_rule("builtin:adamw"), doc=False)
