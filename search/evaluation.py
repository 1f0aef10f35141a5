"""Measure one rule at one funnel stage, as a job any executor can run (plain dicts in and out).

The search's inner loop must treat every rule alike, AdamW (its normaliser) included. On each
task of the stage (``search.funnel.Stage``):

1. **scale**: the rule's update RMS at the task's initial weights (``evaluators.scale``); its
   lr grid is placed at AdamW's RMS over it, so a constant factor on the update changes nothing;
2. **tune** the learning rate on the tuning seed with the stage's tuner and budget, the same for
   every rule (``evaluators.tuning``; the grid runs as one batched model where the task allows);
3. **measure**: ``seeds: 1`` keeps the tuning seed's best trial (the cheapest measurement; AdamW's
   reference is measured the same way, so both carry the same bias of a minimum over trials);
   ``seeds: n`` trains ``n`` fresh seeds at the tuned lr. A remeasurement (``extra_seeds``) trains
   further fresh seeds at the lr already tuned.

A task that diverges or cannot run stops the job there (the stage is failed; nothing raises).
Measurements are keyed by ``Stage.task_key``: a later stage with the same protocol for a task
reuses the earlier measurement (``previous``) instead of training again.

The reference job (``reference`` None) measures AdamW itself with the tuning seed's best trial
and ``reference_seeds`` fresh seeds at its tuned lr, so every stage can compare on matching seeds
and the seed-to-seed noise of every task is known (its coefficient of variation ``cv``).

``stage_job`` is a module-level function over JSON-like dicts so that it pickles cheaply to a Ray
worker; the worker parses the rule text itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from dsl.errors import RuleError

from .funnel import Stage, _cv


def _train(task: str, steps: int | None, program, lrs: list[float], seed: int, stage: Stage):
    from evaluators import train

    if len(lrs) > 1:
        return train.run_lr_grid(task, program, lrs, seed=seed, preset=stage.preset,
                                 device=stage.device, steps=steps)
    return [train.run_training(task, program, lrs[0], seed=seed, preset=stage.preset,
                               device=stage.device, steps=steps)]


def _losses(task: str, steps: int | None, program, lr: float, seeds, stage: Stage) -> dict:
    from evaluators.evaluate import run_loss

    return {str(s): run_loss(_train(task, steps, program, [lr], s, stage)[0]) for s in seeds}


def measure_task(task: str, steps: int | None, program, stage: Stage, reference_scale: float | None,
                 fresh_seeds: int = 0) -> dict:
    """Scale, tune and measure ``program`` on one task (see the module docstring)."""
    from evaluators.evaluate import run_loss
    from evaluators.scale import relative_scale, update_scale
    from evaluators.tuning import make_tuner

    started = time.perf_counter()
    own = update_scale(task, program, seed=stage.tune_seed, preset=stage.preset,
                       device=stage.device, steps=steps)
    factor = 1.0 if reference_scale is None else relative_scale(own, reference_scale)
    tuner = make_tuner(stage.tuner, seed=stage.tune_seed, scale=factor, max_extra=stage.max_extra)
    tuning = tuner.tune(lambda lrs: [run_loss(r) for r in _train(task, steps, program, list(lrs),
                                                                 stage.tune_seed, stage)],
                        stage.budget)
    losses = {str(stage.tune_seed): tuning.best_loss} if stage.seeds == 1 or fresh_seeds else {}
    if math.isfinite(tuning.best_loss):
        seeds = stage.eval_seeds if stage.seeds > 1 else ()
        if fresh_seeds:
            seeds = tuple(range(stage.tune_seed + 1, stage.tune_seed + 1 + fresh_seeds))
        losses.update(_losses(task, steps, program, tuning.best_lr, seeds, stage))
    else:
        losses.update({str(s): math.inf for s in stage.eval_seeds})
    return {"key": stage.task_key(task, steps), "lr": tuning.best_lr, "tune_loss": tuning.best_loss,
            "losses": losses, "scale": own, "grid_scale": factor, "trials": tuning.n_trials,
            "extra": tuning.extra, "at_edge": tuning.at_edge,
            "wall_time_s": time.perf_counter() - started}


def _failed(measured: Mapping) -> bool:
    return any(v is None or not math.isfinite(v) for v in measured["losses"].values())


def stage_job(payload: dict) -> dict:
    """Measure a rule at a stage; returns ``{"tasks", "state_bytes", "wall_time_s", "error"}``.

    payload: ``text`` (canonical rule), ``stage`` (``Stage.to_dict()``), ``reference`` (AdamW's
    measurements at this stage, task -> dict with ``scale``; None to measure AdamW itself with
    ``reference_seeds`` fresh seeds), ``previous`` (task key -> an earlier stage's measurement to
    reuse), or ``remeasure`` (``{"seeds": [...], "lrs": {task: lr}}``: fresh seeds only).
    """
    from evaluators.train import sharpness

    with sharpness(False):  # diagnostics the funnel does not rank by are left to the held-out runs
        return _stage_job(payload)


def _stage_job(payload: dict) -> dict:
    from dsl.fingerprint import state_bytes_per_param
    from dsl.parser import parse

    stage = Stage.from_dict(payload["stage"])
    reference = payload.get("reference")
    previous = payload.get("previous") or {}
    started = time.perf_counter()
    tasks: dict[str, dict] = {}
    state_bytes, error = None, ""
    try:
        program = parse(payload["text"], name=payload.get("id") or None)
        state_bytes = state_bytes_per_param(program)
        remeasure = payload.get("remeasure")
        for task, steps in stage.tasks:
            if remeasure is not None:
                lr = remeasure["lrs"][task]
                tasks[task] = {"lr": lr, "losses": _losses(task, steps, program, lr,
                                                           remeasure["seeds"], stage)}
            elif stage.task_key(task, steps) in previous:
                tasks[task] = dict(previous[stage.task_key(task, steps)], reused=True)
            elif reference is None:
                tasks[task] = measure_task(task, steps, program, stage, None,
                                           fresh_seeds=int(payload["reference_seeds"]))
                fresh = [v for k, v in tasks[task]["losses"].items() if k != str(stage.tune_seed)]
                tasks[task].update(cv=_cv(fresh), n=len(fresh))
            else:
                tasks[task] = measure_task(task, steps, program, stage, reference[task]["scale"])
            if _failed(tasks[task]):
                break
    except RuleError as exc:
        error = str(exc)
    return {"tasks": tasks, "state_bytes": state_bytes, "error": error,
            "wall_time_s": time.perf_counter() - started}


def reference_payloads(plan, text: str) -> dict[str, dict]:
    """The jobs that measure AdamW (``text``) at every stage of ``plan``: one per distinct task
    protocol (``Stage.task_key``), so tasks shared by stages are measured once."""
    import dataclasses

    seeds = max(plan.reference_seeds, plan.seeds_needed())
    payloads = {}
    for stage in plan.stages:
        for task, steps in stage.tasks:
            key = stage.task_key(task, steps)
            if key not in payloads:
                single = dataclasses.replace(stage, tasks=((task, steps),))
                payloads[key] = {"id": "reference", "text": text, "stage": single.to_dict(),
                                 "reference": None, "reference_seeds": seeds}
    return payloads


def assemble_reference(plan, results: Mapping[str, dict]) -> tuple[dict, dict]:
    """(stage -> task -> AdamW's measurement, stage -> seconds) from the jobs' results."""
    stages, wall = {}, {}
    for stage in plan.stages:
        stages[stage.name] = {t: results[stage.task_key(t, s)]["tasks"][t] for t, s in stage.tasks}
        wall[stage.name] = sum(m["wall_time_s"] for m in stages[stage.name].values())
    return stages, wall
