"""Train a whole learning-rate grid as one stacked model (an ensemble over the lr axis).

Tuning a rule means training the same task at E learning rates. For small models the cost of one
run is mostly per-step overhead (Python, kernel launches, the rule interpreter), not arithmetic,
so E runs cost about E times one run. Stacking the E copies along a new leading axis turns them
into one model whose every parameter has shape [E, ...]: one forward (`baddbmm`, grouped
convolutions; see `evaluators.tasks.layers`), one backward and one optimizer step per training
step for the whole grid.

Member i is trained exactly as the sequential run at lr[i] would be: the same initial values
(copies of the seed's model), the same batches (inputs are shared and expanded, not redrawn), its
own loss (the trainer backpropagates the sum of per-member losses, whose gradients do not mix),
its own gradient clipping norm, and its own learning rate: the optimizer groups carry
`batch_dims=1` and `lr` is an [E] tensor, so the rule's reductions (norms, RMS, ...) reduce over
all axes but the member axis. A member that diverges is recorded as the sequential run would
record it, then frozen (zero gradient and lr) while the others go on.
"""

from __future__ import annotations

import copy

from torch import nn

from dsl.analysis import eliminate_dead_code
from dsl.ir import Call, children
from dsl.primitives import PRIMITIVES
from evaluators import recipe as rc
from evaluators.tasks import get_task
from evaluators.tasks.layers import MemberLayer
from evaluators.train import RunResult, TorchRule, build_problem, resolve_rule, results_of, train_members


def stackable(model: nn.Module) -> bool:
    """True when every module that owns parameters is a member-aware layer."""
    return all(isinstance(m, MemberLayer) for m in model.modules()
               if any(p is not None for p in m._parameters.values()))


def rule_batchable(rule) -> bool:
    """Rules of the language take `batch_dims` groups; a `TorchRule` must say it does."""
    return rule.batchable if isinstance(rule, TorchRule) else True


def batches_exactly(rule) -> bool:
    """Whether a stacked run equals the sequential runs to float rounding (<= 1e-5): whether every
    primitive the rule calls says so in the registry (`Primitive.batches_exactly`).

    Not for rules that orthogonalize: their Newton-Schulz iteration runs in bfloat16, where one
    batched matmul rounds differently from E single ones (losses up to ~4e-4 apart on the tiny
    tasks). Such rules still batch when asked (`batched=True`), never by default.
    """
    if isinstance(rule, TorchRule):
        return True
    return all(PRIMITIVES[prim].batches_exactly for prim in _called_primitives(resolve_rule(rule)))


def _called_primitives(program) -> set[str]:
    found, stack = set(), [st.value for st in eliminate_dead_code(program).statements()]
    while stack:
        e = stack.pop()
        if isinstance(e, Call):
            found.add(e.fn)
        stack.extend(children(e))
    return found


def supports(task: str, rule) -> bool:
    """Whether `run_lr_grid` batches this task and rule by default (exact results only)."""
    return get_task(task).stackable and rule_batchable(rule) and batches_exactly(rule)


def stack(model: nn.Module, count: int) -> nn.Module:
    """A copy of `model` whose parameters are `count` stacked copies ([count, ...]), marks kept."""
    stacked = copy.deepcopy(model)
    for source, target in zip(model.modules(), stacked.modules()):
        for name, p in source._parameters.items():
            if p is None:
                continue
            data = p.detach().unsqueeze(0).repeat(count, *[1] * p.dim())
            new = nn.Parameter(data, requires_grad=p.requires_grad)
            rc.copy_mark(p, new)
            setattr(target, name, new)
    return stacked


def run_ensemble(task: str, rule, lrs: list[float], seed: int = 0, preset: str = "cpu",
                 device: str = "cpu", hparams: dict | None = None, steps: int | None = None
                 ) -> list[RunResult]:
    """Train all `lrs` at once; the results equal `run_training` at each lr (to float rounding)."""
    if not lrs:
        return []
    if not rule_batchable(rule):
        raise ValueError(f"rule {getattr(rule, 'name', rule)!r} cannot train a stacked ensemble")
    problem = build_problem(task, seed, preset, device, steps)
    if not stackable(problem.model):
        raise ValueError(f"task {task!r} has layers that cannot be stacked")
    model = stack(problem.model, len(lrs))
    members, total_state, elapsed = train_members(problem, model, True, rule, lrs, hparams, seed)
    return results_of(task, preset, seed, rule, problem, members, total_state, elapsed)
