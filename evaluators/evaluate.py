"""The evaluation protocol: tune every rule the same way, train on fresh seeds, compare, report.

For each task of a suite and each rule (the candidate, then the baselines; AdamW is always among
them because it is the fitness normaliser):

1. **tune** the learning rate on ``tune_seed`` with the same tuner and the same number of trials
   for every rule (``evaluators.tuning``; the grid's first batch goes to ``run_lr_grid`` so an
   ensemble trainer runs it as one model), the grid placed at the rule's own update scale
   relative to AdamW's (``evaluators.scale``: a rule times a constant gets the same fitness), and
   widened past the budget by up to ``max_extra`` trials while its best lr sits at an edge;
2. **train** at the tuned lr on ``seeds`` fresh seeds ``tune_seed + 1 .. tune_seed + seeds``
   (not the tuning seed, whose loss is the minimum over the grid and so biased low);
3. **compare** on those seeds: mean ± std of the final validation loss, the ratio to AdamW
   (``evaluators.fitness``), and the candidate against each baseline with a Welch t-test and a
   bootstrap p-value (``evaluators.stats``); for held-out suites also AlgoPerf performance
   profiles, where a rule's time on a task is the median over seeds of its steps to the task's
   target loss.

Identical runs (same rule structure and hparams, task, seed and lr) are trained once: AdamW
evaluated against itself reuses the baseline's runs, so its fitness is exactly 1.

``Report.to_dict()`` is the content of ``results.json``; its top-level keys are
``schema, rule, fitness, verdict, settings, provenance, rules, fitness_by_rule, tasks, runs,
profiles, plots, wall_time_s, usage``; ``usage`` (and each task's) holds wall time and peak memory
on the device (``evaluators.resources``: CUDA allocated bytes on a GPU, peak RSS on a CPU).
``runs`` holds every run (phase ``tune`` or ``eval``, the rule's label and hash, task, seed, lr,
curves and final metrics, as ``RunResult.to_dict()`` gives them).
``evaluators.results`` writes it (strict JSON, atomically) with the run's provenance.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dsl.errors import RuleError

from . import stats
from .fitness import Fitness, TaskFitness, fitness
from .resources import Usage, measure
from .results import jsonable, provenance
from .train import RunResult
from .tuning import DEFAULT_BUDGET, TuningResult, make_tuner

SCHEMA = "optforge.evaluate/1"
REFERENCE = "adamw"
ALPHA = 0.05  # significance level of the verdict
MIN_SEEDS = 3  # fewer seeds than this: no significance claim


@dataclass(frozen=True)
class TaskPlan:
    """One task of a suite as the protocol runs it: its name and, optionally, its step count."""

    name: str
    steps: int | None = None


@dataclass(frozen=True)
class Settings:
    """Everything that decides the numbers; saved in results.json for provenance."""

    suite: str
    tasks: tuple[TaskPlan, ...]
    suite_source: str = ""
    seeds: int = 3
    budget: int = DEFAULT_BUDGET
    tuner: str = "grid"
    preset: str = "cpu"
    device: str = "cpu"
    tune_seed: int = 0
    profiles: bool = False
    scale_invariant: bool = True  # place each rule's lr grid at its own update scale
    max_extra: int = 0  # extra grid points allowed while the best lr is at an edge

    @property
    def eval_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.tune_seed + 1, self.tune_seed + 1 + self.seeds))

    def total_runs(self, n_rules: int) -> int:
        """Training runs an evaluation of ``n_rules`` rules performs (cache hits included; the
        grid's extra widening trials, when any, come on top)."""
        return len(self.tasks) * n_rules * (self.budget + self.seeds)

    def to_dict(self) -> dict:
        return {"suite": self.suite, "suite_source": self.suite_source,
                "tasks": [t.__dict__ for t in self.tasks], "seeds": self.seeds,
                "eval_seeds": list(self.eval_seeds), "budget": self.budget, "tuner": self.tuner,
                "preset": self.preset, "device": self.device, "tune_seed": self.tune_seed,
                "profiles": self.profiles, "scale_invariant": self.scale_invariant,
                "max_extra": self.max_extra}


@dataclass(frozen=True)
class RuleInfo:
    """Identity of an evaluated rule: its label in tables, role, name, hash and canonical text."""

    label: str
    role: str  # "candidate" | "baseline"
    name: str
    hash: str
    text: str
    source: str  # where it was loaded from: builtin:NAME or a file path


@dataclass(frozen=True)
class RuleOnTask:
    """One rule on one task: its tuning, its evaluation runs and their statistics."""

    tuning: TuningResult
    runs: tuple[Any, ...]  # RunResult, one per eval seed
    summary: stats.Summary
    vs_adamw: TaskFitness
    welch_p: float  # candidate vs this rule (nan for the candidate itself)
    bootstrap_p: float
    steps_to_target: float  # median over seeds, inf if not reached

    @property
    def losses(self) -> list[float]:
        return [r.final_val_loss for r in self.runs]

    def to_dict(self) -> dict:
        return {"tuned_lr": self.tuning.best_lr, "tuning": self.tuning.to_dict(),
                "seeds": [r.seed for r in self.runs], "val_losses": self.losses,
                "val_loss_mean": self.summary.mean, "val_loss_std": self.summary.std,
                "diverged_seeds": [r.seed for r in self.runs if r.diverged],
                "ratio_to_adamw": self.vs_adamw.ratio, "status": self.vs_adamw.status,
                "welch_p_vs_candidate": self.welch_p, "bootstrap_p_vs_candidate": self.bootstrap_p,
                "median_steps_to_target": self.steps_to_target}


@dataclass(frozen=True)
class TaskReport:
    """All rules on one task, keyed by label (candidate first)."""

    task: str
    rules: Mapping[str, RuleOnTask]
    usage: Usage = field(default_factory=Usage)  # wall time and peak memory of this task

    def best_baseline(self, candidate: str) -> str:
        others = {k: v.summary.mean for k, v in self.rules.items() if k != candidate}
        return min(others, key=lambda k: others[k] if math.isfinite(others[k]) else math.inf)


@dataclass
class Report:
    """The outcome of one evaluation; ``to_dict()`` is results.json."""

    settings: Settings
    rules: tuple[RuleInfo, ...]  # candidate first
    tasks: tuple[TaskReport, ...]
    fitness: Mapping[str, Fitness]
    runs: list[dict]
    profiles: dict | None
    wall_time_s: float
    provenance: dict
    plots: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)  # the whole evaluation

    @property
    def candidate(self) -> RuleInfo:
        return self.rules[0]

    def verdict(self) -> str:
        """One line: fitness, then better/worse per task against the best tuned baseline."""
        c, fit = self.candidate.label, self.fitness[self.candidate.label]
        n_tasks = len(self.tasks)
        if fit.failed:
            bad = [t for t, f in fit.tasks.items() if f.status != "ok"]
            return (f"verdict: {c} failed (diverged or non-finite on {', '.join(bad)}): "
                    f"worst fitness {fit.value:g}")
        head = f"verdict: {c} fitness {fit.value:.3f} (AdamW = 1, lower is better)"
        better = worse = sig_better = sig_worse = 0
        for t in self.tasks:
            base = t.rules[t.best_baseline(c)]
            diff = t.rules[c].summary.mean - base.summary.mean
            significant = self.settings.seeds >= MIN_SEEDS and base.welch_p < ALPHA
            better += diff < 0
            worse += diff > 0
            sig_better += diff < 0 and significant
            sig_worse += diff > 0 and significant
        counts = (f"vs the best tuned baseline per task: lower loss on {better}/{n_tasks}, "
                  f"higher on {worse}/{n_tasks}")
        if self.settings.seeds < MIN_SEEDS:
            return (f"{head}; {counts}; {self.settings.seeds} seed(s) < {MIN_SEEDS}: "
                    "no significance claim possible")
        if sig_better == sig_worse == 0:
            return f"{head}; {counts}; not significant (Welch p >= {ALPHA} on every task)"
        return (f"{head}; {counts}; significant (Welch p < {ALPHA}, {self.settings.seeds} "
                f"seeds): better on {sig_better}, worse on {sig_worse}")

    def to_dict(self) -> dict:
        c = self.candidate
        return jsonable({
            "schema": SCHEMA,
            "rule": c.__dict__,
            "fitness": self.fitness[c.label].value,
            "verdict": self.verdict(),
            "settings": self.settings.to_dict(),
            "provenance": self.provenance,
            "rules": [r.__dict__ for r in self.rules],
            "fitness_by_rule": {k: f.to_dict() for k, f in self.fitness.items()},
            "tasks": [{"task": t.task, "usage": t.usage.to_dict(),
                       "rules": {k: v.to_dict() for k, v in t.rules.items()}} for t in self.tasks],
            "runs": self.runs,
            "profiles": self.profiles,
            "plots": self.plots,
            "wall_time_s": self.wall_time_s,
            "usage": self.usage.to_dict(),
        })


@dataclass(frozen=True)
class FailedRun(RunResult):
    """A run the rule could not perform (a ``RuleError`` while training): diverged, inf losses."""

    error: str = ""


def failed_run(task: str, preset: str, seed: int, lr: float, rule_hash: str,
               error: str) -> FailedRun:
    """The record of a failed run, shaped like every other run (plus the error's one line)."""
    return FailedRun(task, preset, seed, lr, 0, (), (), math.inf, math.inf, None, True, 0.0, 0,
                     rule_hash, error)


def _rule_key(rule: Any) -> tuple:
    return (rule.structural_hash, tuple(sorted(rule.hparams.items())))


def run_loss(run: Any) -> float:
    """A run's final validation loss, or inf when it diverged or ended non-finite."""
    v = run.final_val_loss
    return math.inf if run.diverged or not math.isfinite(v) else v


def _median_steps(runs: Sequence[Any]) -> float:
    steps = [math.inf if r.steps_to_target is None else float(r.steps_to_target) for r in runs]
    return float(np.median(steps)) if steps else math.inf


def rule_text(rule: Any) -> str:
    """The rule's canonical text (the printer's output), recorded for provenance."""
    from dsl.printer import to_text

    return to_text(rule)


def describe(label: str, role: str, rule: Any, source: str | None = None) -> RuleInfo:
    """The identity recorded for a rule: label, role, name, hash, canonical text, source."""
    if source is None:
        from dsl.loader import rule_source

        source = rule_source(rule)
    return RuleInfo(label, role, rule.name or label, rule.structural_hash, rule_text(rule),
                    source)


def label_rules(candidate: Any, baselines: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """label -> (role, rule), candidate first; its label gets a ``*`` if a baseline has its name."""
    label = candidate.name or "candidate"
    if label in baselines:
        label += "*"
    return {label: ("candidate", candidate), **{k: ("baseline", r) for k, r in baselines.items()}}


def evaluate(candidate: Any, baselines: Mapping[str, Any], settings: Settings,
             runner: Any = None, progress: Callable[[int], None] | None = None,
             candidate_source: str | None = None, cache: dict | None = None) -> Report:
    """Run the protocol for ``candidate`` against ``baselines`` (name -> rule, incl. ``adamw``).

    ``runner`` provides ``run_training`` and ``run_lr_grid`` (default: ``evaluators.train``), and
    optionally ``update_scale`` (default: ``evaluators.scale.update_scale``; a runner without it
    tunes every rule on the default grid);
    ``progress(n)`` is called after every n runs, ``settings.total_runs(...)`` in all;
    ``candidate_source`` (a path or builtin:NAME) is recorded for provenance. Pass the same
    ``cache`` dict to several evaluations with the same settings (a search) and the baselines'
    runs are trained once: keys are (rule hash and hparams, task, steps, preset, device, seed, lr).
    """
    if REFERENCE not in baselines:
        raise ValueError(f"baselines must include {REFERENCE!r}, the fitness normaliser")
    labelled = label_rules(candidate, baselines)
    programs = {label: rule for label, (_, rule) in labelled.items()}
    rules = [describe(label, role, rule, candidate_source if role == "candidate" else None)
             for label, (role, rule) in labelled.items()]
    scale_of = getattr(runner, "update_scale", None)
    if runner is None:
        from . import train as runner  # the real trainer; tests pass a fake
        from .scale import update_scale as scale_of
    started = _dt.datetime.now(_dt.timezone.utc)
    cache = {} if cache is None else cache
    runs_log: list[dict] = []
    common = {"preset": settings.preset, "device": settings.device}

    def train(label: str, task: TaskPlan, lrs: Sequence[float], seed: int, phase: str) -> list:
        key = (_rule_key(programs[label]), task.name, task.steps, settings.preset, settings.device,
               seed)
        todo = [lr for lr in lrs if (*key, lr) not in cache]
        try:
            if len(todo) > 1:
                new = runner.run_lr_grid(task.name, programs[label], todo, seed=seed,
                                         steps=task.steps, **common)
            else:
                new = [runner.run_training(task.name, programs[label], lr, seed=seed,
                                           steps=task.steps, **common) for lr in todo]
        except RuleError as exc:  # the rule cannot run on this task: a failed result, no crash
            new = [failed_run(task.name, settings.preset, seed, lr,
                              programs[label].structural_hash, str(exc)) for lr in todo]
        cache.update({(*key, lr): r for lr, r in zip(todo, new, strict=True)})
        out = [cache[(*key, lr)] for lr in lrs]
        runs_log.extend({"phase": phase, "label": label, **r.to_dict()} for r in out)
        if progress:
            progress(len(lrs))
        return out

    reports = []
    whole = measure(settings.device)
    with whole:
        for task in settings.tasks:
            per_rule: dict[str, tuple[TuningResult, list]] = {}
            with measure(settings.device) as usage:
                scales = _grid_scales(scale_of, programs, task, settings, cache) \
                    if settings.scale_invariant and scale_of is not None else {}
                for info in rules:
                    tuner = make_tuner(settings.tuner, seed=settings.tune_seed,
                                       scale=scales.get(info.label, 1.0),
                                       max_extra=settings.max_extra)
                    tuning = tuner.tune(lambda lrs, i=info, t=task: [run_loss(r) for r in train(
                        i.label, t, lrs, settings.tune_seed, "tune")], settings.budget)
                    runs = [train(info.label, task, [tuning.best_lr], s, "eval")[0]
                            for s in settings.eval_seeds]
                    per_rule[info.label] = (tuning, runs)
            reports.append(_task_report(task.name, rules[0].label, per_rule, usage))

    fits = {info.label: fitness({t.task: t.rules[info.label].vs_adamw for t in reports})
            for info in rules}
    profiles = _profiles(reports) if settings.profiles else None
    wall = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    return Report(settings, tuple(rules), tuple(reports), fits, runs_log, profiles, wall,
                  provenance(started), usage=whole.usage)


def _grid_scales(scale_of: Callable, programs: Mapping[str, Any], task: TaskPlan,
                 settings: Settings, cache: dict) -> dict[str, float]:
    """Each rule's grid placement on ``task``: AdamW's update RMS over the rule's (each rule's
    RMS measured once per cache)."""
    from .scale import relative_scale

    raw = {}
    for label, rule in programs.items():
        key = ("scale", _rule_key(rule), task.name, task.steps, settings.preset, settings.device,
               settings.tune_seed)
        if key not in cache:
            cache[key] = scale_of(task.name, rule, seed=settings.tune_seed, preset=settings.preset,
                                  device=settings.device, steps=task.steps)
        raw[label] = cache[key]
    return {label: relative_scale(value, raw[REFERENCE]) for label, value in raw.items()}


def _task_report(task: str, candidate: str, per_rule: Mapping[str, tuple],
                 usage: Usage | None = None) -> TaskReport:
    ref_runs = per_rule[REFERENCE][1]
    cand = [run_loss(r) for r in per_rule[candidate][1]]
    out = {}
    for label, (tuning, runs) in per_rule.items():
        losses = [run_loss(r) for r in runs]
        is_cand = label == candidate
        out[label] = RuleOnTask(
            tuning=tuning, runs=tuple(runs), summary=stats.summarize(losses),
            vs_adamw=TaskFitness.from_runs(runs, ref_runs),
            welch_p=math.nan if is_cand else stats.welch_t_test(cand, losses).p_value,
            bootstrap_p=math.nan if is_cand else stats.bootstrap_p_value(cand, losses),
            steps_to_target=_median_steps(runs))
    return TaskReport(task, out, usage or Usage())


def _profiles(reports: Sequence[TaskReport]) -> dict:
    """AlgoPerf performance ratios and scores; time = median steps to the task's target."""
    times = {label: {t.task: t.rules[label].steps_to_target for t in reports}
             for label in reports[0].rules} if reports else {}
    ratios = stats.performance_ratios(times, stats.R_MAX)
    return {"r_max": stats.R_MAX, "time": "median over eval seeds of steps to the task's target",
            "times": times, "ratios": ratios,
            "scores": stats.profile_score(ratios, stats.R_MAX)}
