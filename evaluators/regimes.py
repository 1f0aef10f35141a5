"""Regime maps: where a rule works and where it fails, measured across axes a user cares about.

An **axis** changes the tasks in one way and has levels (the registry `AXES` drives the CLI's
choices and the tests):

- ``batch``: the minibatch size of the digits MLP and of the noisy quadratic (the `batch_size`
  field of their preset configs). Small batches mean noisy gradients; large ones are where
  adaptive and sign-based rules are said to shine (Zhang et al. 2019, "Which Algorithmic Choices
  Matter at Which Batch Sizes?", with the noisy quadratic model used here);
- ``condition``: the condition number of the noisy quadratic's Hessian (its `condition` field:
  eigenvalues log-spaced from top/condition to top) -- where preconditioning should matter;
- ``noise``: the gradient noise scale of the noisy quadratic (its `noise` field: per-sample
  noise covariance noise^2 H; also raises the loss floor noise^2 dim / 2 for every rule alike);
- ``lr``: the learning rate multiplied by each level around the rule's own tuned value (tuned once
  at the task's default settings; robustness to tuning), each rule against AdamW at the same
  multiplier of *its* tuned lr;
- ``steps``: the training length multiplied by each level (the same schedule shape: warmup and
  cosine decay stretched to the new length).

Every cell is measured with the evaluation protocol of ``optforge evaluate``
(``evaluators.evaluate``): at each level every rule's lr is tuned with the same budget (except on
the ``lr`` axis, by design), then trained on fresh seeds; the cell's value is the rule's ratio to
AdamW's validation loss on the same seeds under the same regime, and an axis level's value for a
rule is the geometric mean over the axis's tasks (``evaluators.fitness``: below 1 beats AdamW;
a diverged run is a failed cell). Task settings are changed through
``evaluators.train.task_settings``; a level equal to the task's own setting reuses the runs of
the task as it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .evaluate import REFERENCE, Settings, TaskPlan, evaluate, label_rules
from .fitness import TaskFitness, fitness

SCHEMA = "optforge.regimes/1"


@dataclass(frozen=True)
class Axis:
    """One axis of a regime map: what it changes, on which tasks, at which levels."""

    name: str
    help: str  # one line for --help
    tasks: tuple[str, ...]
    levels: tuple[float, ...]
    setting: str = ""  # the task config field it sets ("" for the lr and steps axes)

    def overrides(self, level: float) -> dict:
        """The task config fields a level sets."""
        return {self.setting: level} if self.setting else {}


AXES: dict[str, Axis] = {a.name: a for a in (
    Axis("batch", "minibatch size of the digits MLP and the noisy quadratic",
         ("digits_mlp", "quadratic"), (8, 32, 128, 512), "batch_size"),
    Axis("condition", "condition number of the noisy quadratic's Hessian",
         ("quadratic",), (1e1, 1e2, 1e3, 1e4, 1e5), "condition"),
    Axis("noise", "gradient noise scale of the noisy quadratic",
         ("quadratic",), (0.001, 0.003, 0.01, 0.03), "noise"),
    Axis("lr", "learning rate x level around each rule's tuned value",
         ("quadratic", "digits_mlp"), (0.25, 0.5, 1.0, 2.0, 4.0)),
    Axis("steps", "training length x level (schedule stretched)",
         ("quadratic", "digits_mlp"), (0.25, 0.5, 1.0, 2.0)),
)}


def level_text(axis: str, level: float) -> str:
    """How a level reads in tables: ``batch 32``, ``lr x0.5``."""
    if axis in ("lr", "steps"):
        return f"{axis} x{level:g}"
    return f"{axis} {level:g}"


@dataclass(frozen=True)
class Cell:
    """One rule on one task at one level of an axis."""

    axis: str
    level: float
    task: str
    rule: str
    ratio: float  # to AdamW's loss on the same seeds (WORST_FITNESS when it failed)
    status: str  # ok | failed | excluded
    loss_mean: float
    losses: tuple[float, ...]
    lr: float  # the lr its evaluation runs used

    def to_dict(self) -> dict:
        return dict(self.__dict__, losses=list(self.losses))


@dataclass(frozen=True)
class RegimeMap:
    """Every cell, the settings and the rules; `value` aggregates a rule's cells per level."""

    cells: tuple[Cell, ...]
    rules: tuple[str, ...]  # labels, candidate first
    axes: tuple[tuple[str, tuple[float, ...]], ...]  # axis name and the levels measured
    settings: Settings
    wall_time_s: float = 0.0

    def value(self, axis: str, level: float, rule: str) -> tuple[float, str]:
        """Geometric mean over the axis's tasks of the rule's ratios, and ok/failed."""
        cells = {c.task: TaskFitness(c.ratio, c.loss_mean, math.nan, c.status) for c in self.cells
                 if c.axis == axis and c.level == level and c.rule == rule}
        fit = fitness(cells)
        return fit.value, "failed" if fit.failed else "ok"

    def to_dict(self) -> dict:
        from .results import jsonable

        table = {rule: {level_text(a, lv): self.value(a, lv, rule)[0] for a, levels in self.axes
                        for lv in levels} for rule in self.rules}
        return jsonable({"schema": SCHEMA, "rules": list(self.rules),
                         "axes": [{"name": a, "levels": list(lv), "tasks": list(AXES[a].tasks),
                                   "help": AXES[a].help} for a, lv in self.axes],
                         "table": table, "cells": [c.to_dict() for c in self.cells],
                         "settings": self.settings.to_dict(), "wall_time_s": self.wall_time_s})


def _cells(axis: str, level: float, task: str, report, lr_factor: float = 1.0,
           runs: Mapping[str, list] | None = None) -> list[Cell]:
    """Cells of one evaluation report (or of ``runs`` at a changed lr) on one task."""
    from .evaluate import run_loss

    t = report.tasks[0]
    by_rule = runs or {label: list(r.runs) for label, r in t.rules.items()}
    out = []
    for label, rule_runs in by_rule.items():
        fit = TaskFitness.from_runs(rule_runs, by_rule[REFERENCE])
        losses = tuple(run_loss(r) for r in rule_runs)
        out.append(Cell(axis, level, task, label, fit.ratio, fit.status, fit.rule_loss, losses,
                        t.rules[label].tuning.best_lr * lr_factor))
    return out


def regime_map(candidate, baselines: Mapping, settings: Settings,
               axes: Sequence[tuple[str, Sequence[float]]], runner=None,
               progress: Callable[[int], None] | None = None) -> RegimeMap:
    """Measure ``candidate`` and ``baselines`` (with ``adamw``) at every level of ``axes``
    ((name, levels) pairs; levels default to the axis's). ``settings`` give preset, seeds,
    budget and tuner (its tasks are ignored: each axis names its own). ``runner`` as in
    ``evaluate`` (tests pass a fake)."""
    import datetime as _dt

    from . import train
    from .tasks import get_task

    started = _dt.datetime.now(_dt.timezone.utc)
    runner = runner or train
    reports: dict[tuple, object] = {}

    def measure(task: str, overrides: dict, steps: int | None):
        base = get_task(task).settings(settings.preset)
        changed = tuple(sorted((k, v) for k, v in overrides.items() if base.get(k) != v))
        key = (task, changed, steps)
        if key not in reports:
            plan = dataclasses.replace(settings, tasks=(TaskPlan(task, steps),))
            with train.task_settings({task: dict(changed)}):
                reports[key] = evaluate(candidate, baselines, plan, runner=runner,
                                        progress=progress, cache={})
        return reports[key]

    cells: list[Cell] = []
    for name, levels in axes:
        axis = AXES[name]
        for level in levels:
            for task in axis.tasks:
                default = default_steps(task, settings.preset)
                if name == "steps":
                    steps = max(1, round(default * level))
                    cells += _cells(name, level, task, measure(task, {}, None if steps == default else steps))
                elif name == "lr":
                    cells += _lr_cells(task, level, measure(task, {}, None), candidate, baselines,
                                       settings, runner, progress)
                else:
                    cells += _cells(name, level, task, measure(task, axis.overrides(level), None))
    labels = tuple(label_rules(candidate, baselines))
    wall = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    return RegimeMap(tuple(cells), labels, tuple((n, tuple(lv)) for n, lv in axes), settings, wall)


def default_steps(task: str, preset: str) -> int:
    from .tasks import get_task

    return get_task(task).config(preset).recipe.steps


def _lr_cells(task: str, factor: float, base_report, candidate, baselines, settings: Settings,
              runner, progress) -> list[Cell]:
    """The lr axis at ``factor``: every rule trained at factor x its tuned lr on the eval seeds."""
    if factor == 1.0:
        return _cells("lr", factor, task, base_report)
    programs = {label: rule for label, (_, rule) in label_rules(candidate, baselines).items()}
    t = base_report.tasks[0]
    runs = {}
    for label, program in programs.items():
        lr = t.rules[label].tuning.best_lr * factor
        runs[label] = [runner.run_training(task, program, lr, seed=s, preset=settings.preset,
                                           device=settings.device)
                       for s in settings.eval_seeds]
        if progress:
            progress(len(settings.eval_seeds))
    return _cells("lr", factor, task, base_report, factor, runs)


def parse_axes(names: Sequence[str], levels: Mapping[str, Sequence[float]] | None = None
               ) -> list[tuple[str, tuple[float, ...]]]:
    """(name, levels) for ``names`` (levels from ``levels`` where given, else the axis's); an
    unknown axis is a ValueError naming the choices."""
    levels = dict(levels or {})
    unknown = [n for n in [*names, *levels] if n not in AXES]
    if unknown:
        raise ValueError(f"unknown axis {unknown[0]!r}; choose from {', '.join(AXES)}")
    for name, values in levels.items():
        if not values or any(not (isinstance(v, (int, float)) and v > 0) for v in values):
            raise ValueError(f"levels of axis {name!r} must be positive numbers, got {list(values)}")
    return [(n, tuple(float(v) for v in levels.get(n, AXES[n].levels))) for n in names]


def total_runs(axes: Sequence[tuple[str, Sequence[float]]], settings: Settings, n_rules: int) -> int:
    """Training runs a map costs at most (levels that equal a task's setting are shared)."""
    per_cell = n_rules * (settings.budget + settings.seeds)
    total = 0
    for name, levels in axes:
        for level in levels:
            for _ in AXES[name].tasks:
                total += n_rules * settings.seeds if name == "lr" and level != 1.0 else per_cell
    return total
