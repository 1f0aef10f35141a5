"""A rule's own update scale on a task, so that learning-rate tuning does not reward a constant.

The learning rate and a constant factor on the update are the same degree of freedom:
``w - lr * (c * u)`` is ``w - (lr * c) * u``. A tuner that searches a fixed lr grid therefore
gives a rule and the same rule times 100 different fitnesses (one of them tuned far from its
optimum), and a search then "discovers" constant factors that only move a rule towards the
grid. Here each rule's grid is placed relative to its own update scale instead:

    scale(rule, task) = RMS of the rule's update over the first ``PROBE_STEPS`` steps,

measured at the task's initial weights (each step's update is measured and the weights are put
back, so every step sees the initial point with a fresh minibatch, as the first steps of training
do), with the trainer's own gradient clipping and parameter groups. The gradients do not depend
on the rule, so ``c * u`` is measured on exactly the gradients of ``u``; the update is read as the
float64 difference of the weights before and after a step at ``lr = 1``, exact up to the float32
rounding of the step itself (relative error below 1e-6 for updates above 1e-3 of the weights).
The grid of a rule is then centred where its first steps have the same size as AdamW's at the
default centre,

    center(rule) = DEFAULT_CENTER * scale(AdamW) / scale(rule),

so ``c * u`` gets the grid of ``u`` divided by ``c`` and trains exactly the same steps (up to the
rounding of ``lr / c * c``): the tuned loss, and so the fitness, does not depend on ``c``. The
widening bounds of the grid move with it. A rule whose first updates are zero or not finite
(an ADOPT-like first step that only initialises state) is measured over the steps that are
finite and non-zero; if there are none it keeps the default grid.

This is the usual remedy for the lr-scale confound in optimizer comparisons: tune around each
optimizer's own scale (Choi et al. 2019, "On Empirical Comparisons of Optimizers for Deep
Learning", §3) rather than on one shared grid. The update RMS is also what Moonlight matches
between Muon and AdamW to reuse AdamW's learning rate (Liu et al. 2025, arXiv 2502.16982).
Rules that read the ``lr`` input see ``lr = 1`` during the probe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from evaluators import recipe as rc
from evaluators.train import build_problem, cpu_threads, make_optimizer, resolve_rule

PROBE_STEPS = 8


@torch.no_grad()
def _restore(params: list[torch.Tensor], saved: list[torch.Tensor]) -> None:
    for p, s in zip(params, saved):
        p.copy_(s)


def update_scale(task: str, rule, seed: int = 0, preset: str = "cpu", device: str = "cpu",
                 steps: int | None = None, probe_steps: int = PROBE_STEPS,
                 hparams: Mapping | None = None) -> float:
    """RMS of ``rule``'s update on ``task`` at its initial weights (see the module docstring);
    nan when no probe step gave a finite, non-zero update (or the rule cannot run there)."""
    from dsl.errors import RuleError

    rule = resolve_rule(rule)
    problem = build_problem(task, seed, preset, device, steps)
    model = problem.model
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        with cpu_threads(1):
            opt = make_optimizer(rc.param_groups(params, rule), rule, 1.0, hparams)
            saved = [p.detach().clone() for p in params]
            wide = [s.double() for s in saved]
            squares = []
            for step in range(probe_steps):
                x, y = problem.train_batch(step)
                with torch.enable_grad():
                    loss = problem.loss(model(x).unsqueeze(0), y).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                rc.clip_grad_norm(params, problem.recipe.clip_norm)
                opt.step()
                total = sum(float((s - p.detach().double()).pow(2).sum()) for p, s in zip(params, wide))
                _restore(params, saved)
                if math.isfinite(total) and total > 0:
                    squares.append(total)
    except (RuleError, RuntimeError, ValueError):
        return math.nan
    if not squares:
        return math.nan
    count = sum(p.numel() for p in params)
    return math.sqrt(math.fsum(squares) / len(squares) / count)


def relative_scale(rule_scale: float, reference_scale: float) -> float:
    """The factor by which a rule's grid moves: reference / rule (1 when either is unusable)."""
    ok = all(math.isfinite(s) and s > 0 for s in (rule_scale, reference_scale))
    return reference_scale / rule_scale if ok else 1.0
