"""Train one rule on one task with the shared recipe, and measure the run.

`run_training(task, rule, lr, seed)` builds the task, trains it with `rule` under the recipe of
`evaluators.recipe` (warmup + cosine, per-member gradient clipping, no decay on vectors, routed
groups, curvature for rules that read `h`) and returns a `RunResult`: loss curves, final losses,
steps to the task's target, divergence, wall time and optimizer state bytes. A run that diverges
(non-finite loss, or loss above `divergence_factor` times the initial validation loss) stops
early and is a result with `diverged=True` and infinite final losses; it never raises.
Validation runs at the optimizer's evaluation point (`evaluation_point`: optimizer.eval() and
.train() around it, Schedule-Free's averaged x), training at its training point.

Every run also records its diagnostics (`evaluators.diagnostics`: generalisation gap, update
RMS and its ratio to the weights', sharpness at the end on small tasks), per member of a stacked
run. `task_settings({task: {key: value}})` changes fields of a task's preset config for the
runs started inside it (the regime maps of `evaluators.regimes` use it), whichever path (lone run,
stacked ensemble, update-scale probe) builds the problem.

`run_lr_grid` runs a list of learning rates, as one stacked model when the task and the rule
allow (`evaluators.ensemble`), else one run after another; both give the same numbers (bit for
bit on the dense tasks, to ~1e-7 per step where batched kernels round differently).

The loop (`train_members`) is written once for E members with a leading member axis; the
sequential run is the case E = 1 with a plain, unstacked model. `make_optimizer` is the one place
that turns a rule into a `torch.optim.Optimizer`: a rule-language `Program` becomes a
`dsl.ProgramOptimizer`; a `TorchRule` wraps a torch optimizer for tests that must not depend on
the rule language. Example::

    from evaluators.train import run_training
    result = run_training("digits_mlp", "builtin:adamw", lr=3e-3, seed=0, preset="tiny")
    print(result.final_val_loss, result.steps_to_target)
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType

import torch

from evaluators import diagnostics as dg
from evaluators import recipe as rc
from evaluators.diagnostics import Diagnostics
from evaluators.tasks import get_task
from evaluators.tasks.base import Problem

# Training runs single-threaded on the CPU side. The models here are small, so intra-op threads
# mostly add synchronisation (on a shared 2-core machine, 1 thread ran the cpu presets 2-8x
# faster than 2, and the evaluator tests 10 s vs 8 min); the numbers then do not depend on the
# machine's core count (a multi-threaded GEMM splits its sums differently, which changes results
# in the last bits and, at the largest stable learning rates, visibly); and a stacked ensemble
# member then equals its lone run bit for bit on the dense tasks. Parallelism comes from running
# several evaluations at once (search executors), not from threads inside one.
CPU_THREADS = 1


@dataclass(frozen=True)
class RunResult:
    """Everything measured in one training run (one task, rule, seed and lr)."""

    task: str
    preset: str
    seed: int
    lr: float
    steps: int  # optimizer steps taken (fewer than planned when the run diverged)
    train_curve: tuple[tuple[int, float], ...]  # (step, mean minibatch loss over the window)
    val_curve: tuple[tuple[int, float], ...]  # (step, validation loss); starts at step 0
    final_val_loss: float  # inf when diverged
    final_train_loss: float  # inf when diverged
    steps_to_target: int | None  # first evaluated step with val loss <= target; None if never
    diverged: bool
    wall_time_s: float  # for a batched run: the sweep's time divided by the number of members
    state_bytes: int  # optimizer state of this run's model (per member for a batched run)
    rule_hash: str
    diagnostics: Diagnostics = field(default_factory=Diagnostics, kw_only=True)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (curves as lists of [step, loss]; inf stays a float)."""
        out = asdict(self)
        out["train_curve"] = [list(p) for p in self.train_curve]
        out["val_curve"] = [list(p) for p in self.val_curve]
        out["diagnostics"] = self.diagnostics.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> RunResult:
        """Inverse of `to_dict` (a result from before diagnostics gets empty ones)."""
        fields = dict(data)
        for key in ("train_curve", "val_curve"):
            fields[key] = tuple((int(s), float(v)) for s, v in fields[key])
        fields["diagnostics"] = Diagnostics.from_dict(fields.get("diagnostics"))
        return cls(**fields)


@dataclass(frozen=True)
class TorchRule:
    """A torch optimizer used as a rule, for testing the trainer without the rule language.

    `factory(param_groups, lr, **hparams)` receives the recipe's groups (keys "params", "route",
    optionally "wd" and "batch_dims") and returns an optimizer; `batchable` says it accepts
    `batch_dims=1` groups with a per-member lr tensor (then the ensemble may use it).
    """

    name: str
    factory: Callable[..., torch.optim.Optimizer]
    hparams: Mapping[str, float] = field(default_factory=dict)
    route_names: tuple[str, ...] = ("default",)
    reads_curvature: bool = False
    batchable: bool = False

    @property
    def structural_hash(self) -> str:
        text = json.dumps([self.name, sorted(self.hparams.items())])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _torch_adamw(groups: list[dict], lr: float, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, wd: float = 0.01) -> torch.optim.Optimizer:
    if any(g.get("batch_dims", 0) for g in groups):
        raise ValueError("torch.optim.AdamW cannot train stacked ensembles (batch_dims > 0)")
    plain = [{"params": g["params"], **({"weight_decay": g["wd"]} if "wd" in g else {})}
             for g in groups]
    return torch.optim.AdamW(plain, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)


TORCH_ADAMW = TorchRule("torch:adamw", _torch_adamw,
                        {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "wd": 0.01})


def resolve_rule(rule):
    """A rule object from a rule, a `TorchRule`, or a rule-language spec ("builtin:NAME", path)."""
    if isinstance(rule, str):
        from dsl import load_rule

        return load_rule(rule)
    return rule


def make_optimizer(param_groups: list[dict], rule, lr, hparams: Mapping | None = None
                   ) -> torch.optim.Optimizer:
    """The one place a rule becomes an optimizer (lr: float, or [E] tensor for stacked groups)."""
    hparams = dict(hparams or {})
    if isinstance(rule, TorchRule):
        return rule.factory(param_groups, lr, **{**rule.hparams, **hparams})
    from dsl import ProgramOptimizer

    return ProgramOptimizer(param_groups, rule, lr=lr, **hparams)


def rule_hash(rule) -> str:
    return str(rule.structural_hash)


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of optimizer state: the optimizer's own count, else its tensors except the step."""
    if hasattr(opt, "state_bytes"):
        return int(opt.state_bytes())
    return sum(v.numel() * v.element_size() for s in opt.state.values() for k, v in s.items()
               if torch.is_tensor(v) and k != "step")


def _finite_and_bounded(value: float, limit: float) -> bool:
    return math.isfinite(value) and value <= limit


class _Member:
    """Bookkeeping of one member (one lr) during a run."""

    def __init__(self, lr: float):
        self.lr = lr
        self.dead_at: int | None = None
        self.window: list[float] = []
        self.train_curve: list[tuple[int, float]] = []
        self.val_curve: list[tuple[int, float]] = []
        self.update_curve: list[tuple[int, float, float]] = []  # (step, RMS(Δw), ratio)
        self.sharpness: tuple[float, int] | None = None
        self.params = 0


@contextlib.contextmanager
def evaluation_point(opt: torch.optim.Optimizer):
    """The parameters at the optimizer's evaluation point while inside: optimizer.eval() before,
    optimizer.train() after, where the optimizer has them (a rule with eval_w, Schedule-Free's x;
    a no-op for every other rule)."""
    swaps = callable(getattr(opt, "eval", None)) and callable(getattr(opt, "train", None))
    if swaps:
        opt.eval()
    try:
        yield
    finally:
        if swaps:
            opt.train()


@contextlib.contextmanager
def cpu_threads(count: int):
    """Run the block with `count` intra-op CPU threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_members(problem: Problem, model: torch.nn.Module, stacked: bool, rule,
                  lrs: Sequence[float], hparams: Mapping | None, seed: int
                  ) -> tuple[list[_Member], int, float]:
    """Train `model` (plain with one lr, or stacked with one lr per member) under the recipe,
    with `CPU_THREADS` intra-op threads.

    Returns the members' bookkeeping, total optimizer state bytes and the elapsed seconds.
    """
    with cpu_threads(CPU_THREADS):
        return _train_members(problem, model, stacked, rule, lrs, hparams, seed)


def _train_members(problem: Problem, model: torch.nn.Module, stacked: bool, rule,
                   lrs: Sequence[float], hparams: Mapping | None, seed: int
                   ) -> tuple[list[_Member], int, float]:
    recipe = problem.recipe
    count, batch_dims = len(lrs), (1 if stacked else 0)
    if not stacked and count != 1:
        raise ValueError("a plain model trains exactly one lr")
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device

    def scheduled_lr(factor: float):
        """Each member's lr at this step, computed in Python floats as a lone run would."""
        if not stacked:
            return float(lrs[0]) * factor
        return torch.tensor([float(lr) * factor if m.dead_at is None else 0.0
                             for lr, m in zip(lrs, members)], device=device)

    members = [_Member(float(lr)) for lr in lrs]
    for m in members:
        m.params = dg.member_params(params, batch_dims)
    probe = dg.UpdateProbe(batch_dims)
    opt = make_optimizer(rc.param_groups(params, rule, batch_dims), rule, scheduled_lr(1.0),
                         hparams)
    reads_h = bool(getattr(rule, "reads_curvature", False))

    def forward(x: torch.Tensor) -> torch.Tensor:
        if stacked:
            return model(x.expand(count, *x.shape))
        return model(x).unsqueeze(0)

    @torch.no_grad()
    def validate() -> list[float]:
        total, weight = torch.zeros(count, device=device), 0
        with evaluation_point(opt):
            for x, y in problem.val_batches:
                total += problem.loss(forward(x), y).float() * x.shape[0]
                weight += x.shape[0]
        return (total / weight).tolist()

    start = time.perf_counter()
    reference = validate()[0]  # every member starts from the same initial point
    limit = recipe.divergence_factor * reference if math.isfinite(reference) else -math.inf
    for m in members:
        m.val_curve.append((0, reference))
        if not math.isfinite(reference):
            m.dead_at = 0
    for step in range(recipe.steps):
        if all(m.dead_at is not None for m in members):
            break
        lr_now = scheduled_lr(recipe.lr_factor(step))
        for group in opt.param_groups:
            group["lr"] = lr_now
        x, y = problem.train_batch(step)
        losses = problem.loss(forward(x), y)
        for m, value in zip(members, losses.detach().tolist()):
            if m.dead_at is None:
                if _finite_and_bounded(value, limit):
                    m.window.append(value)
                else:
                    m.dead_at = step
        dead = [i for i, m in enumerate(members) if m.dead_at is not None]
        if dead and not stacked:
            break
        opt.zero_grad(set_to_none=True)
        if dead:  # a stacked run goes on without them: their gradients are zero from here
            keep = torch.tensor([m.dead_at is None for m in members], device=device)
            (losses * keep).sum().backward()
            for p in params:
                if p.grad is not None:
                    p.grad[dead] = 0.0
        else:
            losses.sum().backward()
        rc.clip_grad_norm(params, recipe.clip_norm, batch_dims)
        done = step + 1
        probed = done % recipe.eval_every == 0 or done == recipe.steps
        if probed:
            probe.before(params)
        opt.step()
        if probed:
            for m, point in zip(members, probe.after(params)):
                if m.dead_at is None:
                    m.update_curve.append((done, *point))
        if reads_h and (step + 1) % rc.CURVATURE_EVERY == 0:
            h = rc.estimate_curvature(problem.kind, forward, problem.loss, (x, y), params,
                                      seed, step, batch_dims)
            opt.update_curvature(dict(zip(params, h)))
        if done % recipe.eval_every == 0 or done == recipe.steps:
            values = validate()
            for m, value in zip(members, values):
                if m.dead_at is not None:
                    continue
                m.train_curve.append((done, sum(m.window) / len(m.window)))
                m.window = []
                m.val_curve.append((done, value))
                if not _finite_and_bounded(value, limit):
                    m.dead_at = done
    elapsed = time.perf_counter() - start
    if _SHARPNESS.get():
        x, y = problem.train_batch(0)  # the same batch for every rule at this seed
        sharp = dg.end_sharpness(lambda: problem.loss(forward(x), y), params, batch_dims,
                                 [m.dead_at is None for m in members], seed)
        for m, value in zip(members, sharp):
            m.sharpness = value
    return members, state_bytes(opt), elapsed


def results_of(task: str, preset: str, seed: int, rule, problem: Problem, members: list[_Member],
               total_state: int, elapsed: float) -> list[RunResult]:
    """Turn the members' bookkeeping into `RunResult`s (time and state shared equally)."""
    out = []
    for m in members:
        diverged = m.dead_at is not None
        reached = [s for s, v in m.val_curve if v <= problem.target_loss]
        out.append(RunResult(
            task=task, preset=preset, seed=seed, lr=m.lr,
            steps=m.dead_at if diverged else problem.recipe.steps,
            train_curve=tuple(m.train_curve), val_curve=tuple(m.val_curve),
            final_val_loss=math.inf if diverged else m.val_curve[-1][1],
            final_train_loss=math.inf if diverged else m.train_curve[-1][1],
            steps_to_target=None if diverged or not reached else reached[0],
            diverged=diverged, wall_time_s=elapsed / len(members),
            state_bytes=total_state // len(members), rule_hash=rule_hash(rule),
            diagnostics=dg.summarize(math.inf if diverged else m.val_curve[-1][1],
                                     math.inf if diverged else m.train_curve[-1][1],
                                     m.update_curve, m.sharpness, m.params),
        ))
    return out


_TASK_SETTINGS: contextvars.ContextVar[Mapping[str, Mapping]] = contextvars.ContextVar(
    "optforge_task_settings", default=MappingProxyType({}))
_SHARPNESS: contextvars.ContextVar[bool] = contextvars.ContextVar("optforge_sharpness", default=True)


@contextlib.contextmanager
def sharpness(enabled: bool):
    """Inside the block, runs measure end-of-training sharpness only if ``enabled`` (the search's
    funnel turns it off: it ranks by loss, and sharpness costs 2-9% of a small run)."""
    token = _SHARPNESS.set(enabled)
    try:
        yield
    finally:
        _SHARPNESS.reset(token)


@contextlib.contextmanager
def task_settings(overrides: Mapping[str, Mapping]):
    """Inside the block, problems of task ``name`` are built with ``overrides[name]`` replacing
    fields of the preset's config (`Task.build`'s ``overrides``; checked there)."""
    token = _TASK_SETTINGS.set({**_TASK_SETTINGS.get(), **overrides})
    try:
        yield
    finally:
        _TASK_SETTINGS.reset(token)


def build_problem(task: str, seed: int, preset: str, device: str, steps: int | None,
                  overrides: Mapping | None = None) -> Problem:
    """Build a task's problem; `steps` overrides the recipe's length (the number of evaluations
    stays the same: `eval_every` scales with it); `overrides` (default: those `task_settings`
    gives this task) replace fields of the preset's config."""
    if overrides is None:
        overrides = _TASK_SETTINGS.get().get(task)
    problem = get_task(task).build(seed, preset, device, overrides=overrides)
    if steps is not None:
        old = problem.recipe
        every = max(1, round(old.eval_every * steps / old.steps))
        problem.recipe = replace(old, steps=steps, eval_every=every)
    return problem


def run_training(task: str, rule, lr: float, seed: int = 0, preset: str = "cpu",
                 device: str = "cpu", hparams: dict | None = None, steps: int | None = None
                 ) -> RunResult:
    """Train `rule` on `task` at one learning rate; never raises on divergence."""
    rule = resolve_rule(rule)
    problem = build_problem(task, seed, preset, device, steps)
    members, total_state, elapsed = train_members(problem, problem.model, False, rule, [lr],
                                                  hparams, seed)
    return results_of(task, preset, seed, rule, problem, members, total_state, elapsed)[0]


def run_lr_grid(task: str, rule, lrs: list[float], seed: int = 0, preset: str = "cpu",
                device: str = "cpu", hparams: dict | None = None, batched: bool | None = None,
                steps: int | None = None) -> list[RunResult]:
    """One `RunResult` per lr, in order; `batched=None` uses the ensemble where supported."""
    from evaluators import ensemble  # ensemble builds on this module's loop

    rule = resolve_rule(rule)
    if batched is None:
        batched = len(lrs) > 1 and ensemble.supports(task, rule)
    if batched:
        return ensemble.run_ensemble(task, rule, lrs, seed, preset, device, hparams, steps)
    return [run_training(task, rule, lr, seed, preset, device, hparams, steps) for lr in lrs]
