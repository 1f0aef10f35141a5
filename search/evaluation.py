"""Evaluate one candidate on the proxy suite, as a job any executor can run (plain dicts in/out).

The search's inner loop must be cheap and must treat every rule alike, so each candidate gets the
same protocol as AdamW, its normaliser:

1. for each proxy task in order, tune the learning rate with the same tuner and the same number
   of trials (``evaluators.tuning``; the grid runs as one batched model where the task allows) on
   the tuning seed, and keep the best validation loss;
2. the task's ratio is that loss over AdamW's tuned loss on the same task and seed (computed once
   per search, the ``reference``); both are minima over the same number of trials, so the bias of
   taking a minimum is the same on both sides;
3. **funnel** (successive halving in spirit: Jamieson & Talwalkar 2016; Lion's search used
   cheap proxies the same way, Chen et al. 2023): if the first task's ratio is above the
   ``hurdle``, stop there: status ``hurdle``, fitness = that ratio; otherwise run the rest;
4. fitness = geometric mean of the ratios (``evaluators.fitness``); a diverged or non-finite
   result on any task makes the candidate ``failed`` with WORST_FITNESS, never an exception.

These are proxy numbers on one seed, good for ranking inside a search; claims are made only by
the held-out meta-validation, which re-runs the best rules with several seeds.

``evaluate_job`` is a module-level function over JSON-like dicts so that it pickles cheaply to a
Ray worker; the worker parses the rule text itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from dsl.errors import RuleError
from evaluators.fitness import WORST_FITNESS, TaskFitness, fitness
from populations.candidate import Outcome


@dataclass(frozen=True)
class ProxySettings:
    """How candidates are scored inside the search (part of the search config)."""

    tasks: tuple[tuple[str, int | None], ...]  # (task name, steps or None for the preset's)
    preset: str = "tiny"
    device: str = "cpu"
    budget: int = 4  # lr trials per task, the same for every rule
    tuner: str = "grid"
    tune_seed: int = 0
    hurdle: float = 1.5  # first-task ratio above which a candidate stops early

    def to_dict(self) -> dict:
        return {"tasks": [list(t) for t in self.tasks], "preset": self.preset,
                "device": self.device, "budget": self.budget, "tuner": self.tuner,
                "tune_seed": self.tune_seed, "hurdle": self.hurdle}

    @classmethod
    def from_dict(cls, d: Mapping) -> ProxySettings:
        return cls(tuple((str(n), s) for n, s in d["tasks"]), d["preset"], d["device"],
                   int(d["budget"]), d["tuner"], int(d["tune_seed"]), float(d["hurdle"]))


def tuned_loss(task: str, steps: int | None, program, settings: ProxySettings) -> tuple[float, float]:
    """(best lr, best validation loss) of ``program`` on ``task`` after tuning (inf if none ran)."""
    from evaluators import train
    from evaluators.evaluate import run_loss
    from evaluators.tuning import make_tuner

    def objective(lrs):
        runs = train.run_lr_grid(task, program, list(lrs), seed=settings.tune_seed,
                                 preset=settings.preset, device=settings.device, steps=steps)
        return [run_loss(r) for r in runs]

    result = make_tuner(settings.tuner, seed=settings.tune_seed).tune(objective, settings.budget)
    return result.best_lr, result.best_loss


def evaluate_job(payload: dict) -> dict:
    """Run the funnel for one candidate; returns ``{"outcome": Outcome dict, "losses": ...}``.

    With ``reference`` None (the AdamW reference itself) every task runs and only the losses
    matter. Never raises for a bad rule: errors become a ``failed`` outcome.
    """
    from dsl.fingerprint import state_bytes_per_param
    from dsl.parser import parse

    settings = ProxySettings.from_dict(payload["settings"])
    reference = payload.get("reference")
    started = time.perf_counter()
    losses: dict[str, dict] = {}
    ratios: dict[str, TaskFitness] = {}
    try:
        program = parse(payload["text"], name=payload.get("id") or None)
        state_bytes = state_bytes_per_param(program)
        for i, (task, steps) in enumerate(settings.tasks):
            lr, loss = tuned_loss(task, steps, program, settings)
            losses[task] = {"lr": lr, "loss": loss}
            if reference is None:
                continue
            ratios[task] = TaskFitness.compare([loss], [reference[task]])
            if ratios[task].status == "failed":
                break
            if i == 0 and len(settings.tasks) > 1 and ratios[task].ratio > settings.hurdle:
                return _result(Outcome(ratios[task].ratio, "hurdle", _ratio_dict(ratios),
                                       state_bytes, time.perf_counter() - started), losses)
    except RuleError as exc:
        return _result(Outcome(WORST_FITNESS, "failed", _ratio_dict(ratios), None,
                               time.perf_counter() - started, str(exc)), losses)
    wall = time.perf_counter() - started
    if reference is None:
        return _result(Outcome(math.nan, "ok", {}, state_bytes, wall), losses)
    fit = fitness(ratios)
    status = "failed" if fit.failed else "ok"
    error = "" if not fit.failed else "diverged or non-finite on " + ", ".join(
        t for t, f in ratios.items() if f.status != "ok")
    return _result(Outcome(fit.value, status, _ratio_dict(ratios), state_bytes, wall, error),
                   losses)


def _ratio_dict(ratios: Mapping[str, TaskFitness]) -> dict[str, float]:
    return {t: f.ratio for t, f in ratios.items()}


def _result(outcome: Outcome, losses: dict) -> dict:
    return {"outcome": outcome.to_dict(), "losses": losses}
