"""The multi-fidelity funnel: stages from cheap to expensive, and who goes on to the next one.

A candidate that passes the validity gate enters stage 0; after each stage a **promotion rule**
decides whether it goes on. Stages are what successive halving (Jamieson & Talwalkar 2016,
"Non-stochastic Best Arm Identification and Hyperparameter Optimization") calls rungs, run
asynchronously as in ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter
Tuning", MLSys): a rule is judged against the results that stage has seen so far, never waiting
for a generation. Each stage is a list of tasks, a size preset, a number of evaluation seeds and
a tuning budget (``search.evaluation`` measures a rule on one stage), with an optional rule:

- ``hurdle``: go on only if the stage fitness, discounted by its noise, beats this ratio to
  AdamW: ``fitness * exp(-z * se) <= hurdle`` (the benefit of the doubt, so noise alone does
  not stop a good rule);
- ``top_fraction``: go on only if the fitness is among the best ``top_fraction`` of this stage's
  results so far, the rule itself included: at least the best one goes on, so a stage never
  stalls (Optuna's ``SuccessiveHalvingPruner`` decides the same way).

Both may be set (both must hold); the last stage promotes to nothing. A search ranks rules by
the deepest stage they reached, then by fitness (`populations.candidate.Outcome.rank_key`).

Stage fitness and its noise. Per task the loss is the mean over the stage's seeds (``seeds: 1``
is the tuning seed's best trial, as cheap as a search can be; ``seeds: n > 1`` are ``n`` fresh
seeds at the tuned lr), the ratio is over AdamW's loss on the **same** seeds by the same
protocol (the reference, measured once per search on more seeds), and the fitness is the
geometric mean of the ratios. Its standard error comes from seed-to-seed variation of each
task's loss: the rule's own (pooled with AdamW's, for stability) when it has several seeds, and
AdamW's measured coefficient of variation when it has one,

    se(ln fitness) = sqrt(sum_t cv_t**2 / n_t) / T,

the delta method for ln of a mean (cv = std / mean). It is the rule's own noise; AdamW's, common
to every rule of the search, is reported with the reference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Promotion:
    """When a rule goes on from a stage (None: no such condition)."""

    hurdle: float | None = None
    top_fraction: float | None = None

    @property
    def any(self) -> bool:
        return self.hurdle is not None or self.top_fraction is not None

    def to_dict(self) -> dict:
        return {"hurdle": self.hurdle, "top_fraction": self.top_fraction}


@dataclass(frozen=True)
class Stage:
    """One rung of the funnel, resolved: tasks with their step counts at ``preset``."""

    name: str
    suite: str
    tasks: tuple[tuple[str, int | None], ...]
    preset: str = "cpu"
    seeds: int = 1
    budget: int = 6
    tuner: str = "grid"
    max_extra: int = 0
    promote: Promotion = field(default_factory=Promotion)
    device: str = "cpu"
    tune_seed: int = 0

    @property
    def eval_seeds(self) -> tuple[int, ...]:
        """The seeds a loss is averaged over: the tuning seed alone, or fresh ones after it."""
        if self.seeds == 1:
            return (self.tune_seed,)
        return tuple(range(self.tune_seed + 1, self.tune_seed + 1 + self.seeds))

    def task_key(self, task: str, steps: int | None) -> str:
        """What decides a task's numbers at this stage: equal keys are measured once."""
        return f"{task}|{steps}|{self.preset}|{self.device}|{self.budget}|{self.tuner}|" \
               f"{self.max_extra}|{self.tune_seed}"

    def to_dict(self) -> dict:
        return {"name": self.name, "suite": self.suite, "tasks": [list(t) for t in self.tasks],
                "preset": self.preset, "seeds": self.seeds, "budget": self.budget,
                "tuner": self.tuner, "max_extra": self.max_extra,
                "promote": self.promote.to_dict(), "device": self.device,
                "tune_seed": self.tune_seed}

    @classmethod
    def from_dict(cls, d: Mapping) -> Stage:
        return cls(d["name"], d["suite"], tuple((str(n), s) for n, s in d["tasks"]), d["preset"],
                   int(d["seeds"]), int(d["budget"]), d["tuner"], int(d["max_extra"]),
                   Promotion(**d["promote"]), d["device"], int(d["tune_seed"]))


@dataclass(frozen=True)
class StageScore:
    """A rule's fitness at one stage, with its noise; ``status`` ok or failed."""

    fitness: float
    se: float
    seeds: int
    ratios: dict[str, float]
    status: str
    error: str = ""


def _cv(losses: Sequence[float]) -> float:
    """Sample coefficient of variation (nan with fewer than two finite values)."""
    xs = [x for x in losses if math.isfinite(x)]
    if len(xs) < 2:
        return math.nan
    mean = math.fsum(xs) / len(xs)
    var = math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return math.sqrt(var) / abs(mean) if mean else math.nan


def pooled_cv(rule_losses: Sequence[float], reference_cv: float, reference_n: int) -> float:
    """The rule's CV pooled with AdamW's (weights: degrees of freedom); AdamW's alone when the
    rule has one seed; nan when neither is known."""
    own = _cv(rule_losses)
    n = len(rule_losses)
    terms = [(c, k - 1) for c, k in ((own, n), (reference_cv, reference_n))
             if math.isfinite(c) and k > 1]
    if not terms:
        return math.nan
    return math.sqrt(math.fsum(c * c * k for c, k in terms) / sum(k for _, k in terms))


def score(rule_tasks: Mapping[str, Mapping], reference: Mapping[str, Mapping]) -> StageScore:
    """Fitness and noise of a rule from its per-task measurements at one stage.

    ``rule_tasks[task]``: ``{"losses": {seed: loss}, ...}``; ``reference[task]``: AdamW's
    ``{"losses": {seed: loss}, "cv": float, "n": int}`` on at least the rule's seeds.
    """
    from evaluators.fitness import WORST_FITNESS, TaskFitness, geometric_mean

    ratios, variances, seeds = {}, [], 0
    for task, measured in rule_tasks.items():
        ref = reference[task]
        own = {str(k): v for k, v in measured["losses"].items()}
        theirs = {str(k): v for k, v in ref["losses"].items()}
        missing = sorted(set(own) - set(theirs))
        if missing:
            raise ValueError(f"reference for {task} lacks seeds {', '.join(missing)}")
        keys = sorted(own, key=int)
        rule_losses = [_loss(own[k]) for k in keys]
        fit = TaskFitness.compare(rule_losses, [_loss(theirs[k]) for k in keys])
        seeds = max(seeds, len(keys))
        if fit.status == "failed":
            return StageScore(WORST_FITNESS, math.nan, seeds, {**ratios, task: fit.ratio}, "failed",
                              f"diverged or non-finite on {task}")
        if fit.status != "ok":
            continue  # the reference could not normalise this task: left out, as evaluate does
        ratios[task] = fit.ratio
        cv = pooled_cv(rule_losses, ref.get("cv", math.nan), int(ref.get("n", 0)))
        variances.append(cv * cv / len(keys))
    if not ratios:
        return StageScore(WORST_FITNESS, math.nan, seeds, ratios, "failed", "no usable task")
    se = math.sqrt(math.fsum(variances)) / len(variances) if all(map(math.isfinite, variances)) \
        else math.nan
    return StageScore(min(geometric_mean(list(ratios.values())), WORST_FITNESS), se, seeds, ratios,
                      "ok")


def _loss(x) -> float:
    return math.inf if x is None else float(x)


def promotes(stage: Stage, result: StageScore, others: Sequence[float], z: float) -> bool:
    """The stage's promotion rule for ``result`` given the fitnesses ``others`` that earlier
    rules reached at this stage (failed ones excluded)."""
    if result.status != "ok":
        return False
    rule = stage.promote
    if rule.hurdle is not None:
        se = result.se if math.isfinite(result.se) else 0.0
        if result.fitness * math.exp(-z * se) > rule.hurdle:
            return False
    if rule.top_fraction is not None:
        field_ = sorted([*others, result.fitness])
        k = max(1, int(len(field_) * rule.top_fraction))
        if result.fitness > field_[k - 1]:
            return False
    return True


@dataclass(frozen=True)
class FunnelPlan:
    """A whole funnel: the stages, AdamW's reference seeds, the noise discount ``z`` used by
    promotion and ranking, and the re-measurement of incumbents (top ``remeasure_top_k`` of the
    last stage get ``remeasure_seeds`` fresh seeds before they are final)."""

    stages: tuple[Stage, ...]
    reference_seeds: int = 5
    z: float = 1.0
    remeasure_top_k: int = 0
    remeasure_seeds: int = 0

    @property
    def last(self) -> int:
        return len(self.stages) - 1

    def remeasure_seed_list(self) -> list[int]:
        """The fresh seeds a remeasurement of the last stage adds, after the stage's own."""
        stage = self.stages[-1]
        start = stage.tune_seed + 1 + (stage.seeds if stage.seeds > 1 else 0)
        return list(range(start, start + self.remeasure_seeds))

    def seeds_needed(self) -> int:
        """Fresh seeds the reference must cover so every comparison has matching seeds."""
        fresh = max(s.seeds if s.seeds > 1 else 0 for s in self.stages)
        if self.remeasure_top_k:
            last = self.stages[-1]
            fresh = max(fresh, (last.seeds if last.seeds > 1 else 0) + self.remeasure_seeds)
        return fresh

    def to_dict(self) -> dict:
        return {"stages": [s.to_dict() for s in self.stages], "reference_seeds": self.reference_seeds,
                "z": self.z, "remeasure_top_k": self.remeasure_top_k,
                "remeasure_seeds": self.remeasure_seeds}
