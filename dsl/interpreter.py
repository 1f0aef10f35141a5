"""Run a compiled plan on real (or meta) tensors.

`execute` evaluates the scalar part of a plan in Python floats (as torch does for bias
corrections) with each instruction's registry scalar form (IEEE results: x / 0 is inf, never an
exception; the exported optimizers run the same functions), then every tensor instruction across
the whole group with its entry's foreach kernel (`dsl.primitives.kernels`), or its per-tensor
function where the kernel does not cover the case. `specialize` prepares a plan for one set of
parameter shapes: it discovers the shapes state settles to (state starts as a broadcasting zero,
so Adafactor's row/column factors get their own shapes), and decides which instructions may
overwrite a dead argument's buffer instead of allocating (where the entry's kernel writes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .compiler import Plan
from .errors import RuleRuntimeError, RuleValidationError
from .primitives import instruction

MAX_SHAPE_ROUNDS = 8


# -- one instruction ------------------------------------------------------------------------
def eval_scalar(op: str, args: list[float]) -> float:
    """A scalar instruction on Python floats: the entry's scalar form (IEEE, never raises)."""
    return float(instruction(op).scalar(*args))


def run_instr(op: str, args: list, dest: int | None, bd: int, nonneg_arg: bool, n: int) -> list:
    """A tensor instruction on list/float arguments (one list entry per parameter): the entry's
    foreach kernel, else its per-tensor function; returns a list of n tensors."""
    entry = instruction(op)
    out = entry.kernel.run(args, dest, nonneg_arg, n)
    if out is not None:
        return out
    if entry.kind == "group":
        return entry.fn(args[0], bd)
    lists = [a if isinstance(a, list) else None for a in args]
    return [entry.fn(*[lst[i] if lst is not None else a for lst, a in zip(lists, args)], bd=bd) for i in range(n)]


# -- execution ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    """A plan prepared for one list of parameter shapes."""

    state_shapes: dict[str, tuple[torch.Size, ...]]
    dests: dict[int, int]           # tensor instr index -> argument position to write into
    clone_states: frozenset[str]    # state outputs that are not private buffers (copy them)


def execute(plan: Plan, *, g: list, w: list, h: list | None, states: dict[str, list], t: float, lr,
            hparams: dict[str, float], bd: int = 0, spec: Spec | None = None, record: bool = False):
    """Run one step of `plan`. Returns (update list, new state lists, value table if `record`)."""
    n = len(g)
    vals: list = [None] * plan.n_values
    for name, vid in plan.loads.items():
        if name == "g":
            vals[vid] = g
        elif name == "w":
            vals[vid] = w
        elif name == "h":
            vals[vid] = h
        elif name == "t":
            vals[vid] = float(t)
        elif name == "lr":
            vals[vid] = lr
        elif name in hparams:
            vals[vid] = hparams[name]
        else:
            vals[vid] = states[name]
    for ins in plan.scalar_instrs:
        vals[ins.out] = eval_scalar(ins.op, [vals[a] if isinstance(a, int) else a for a in ins.args])
    dests = spec.dests if spec is not None else {}
    nonneg = plan.nonneg_ids
    for idx, ins in enumerate(plan.tensor_instrs):
        args = [vals[a] if isinstance(a, int) else a for a in ins.args]
        first = ins.args[0]
        vals[ins.out] = run_instr(ins.op, args, dests.get(idx), bd, isinstance(first, int) and first in nonneg, n)
    update = vals[plan.update] if isinstance(plan.update, int) else plan.update
    new_states = {}
    for s, vid in plan.state_out.items():
        v = vals[vid]
        if spec is not None and s in spec.clone_states:
            v = [x.clone() for x in v]
        new_states[s] = v
    return update, new_states, (vals if record else None)


def _meta_like(shape, dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def specialize(plan: Plan, shapes: list[torch.Size], dtype: torch.dtype, *, bd: int = 0,
               lr_tensor: bool = False, hparams: dict[str, float], settled: list[dict] | None = None) -> Spec:
    """Discover settled state shapes and safe in-place writes for parameters of `shapes`. State
    shapes of one parameter do not depend on the others': `settled` (per parameter, state ->
    shape, from an earlier specialization) skips the rounds that find them."""
    n = len(shapes)
    g = [_meta_like(s, dtype) for s in shapes]
    w = [_meta_like(s, dtype) for s in shapes]
    h = [_meta_like(s, dtype) for s in shapes]
    lr = [_meta_like(tuple(s[:bd]) + (1,) * (len(s) - bd), dtype) for s in shapes] if lr_tensor else 1.0
    states = {s: [_meta_like(settled[i][s] if settled else (), dtype) for i in range(n)] for s in plan.states}
    try:
        for _ in range(MAX_SHAPE_ROUNDS):
            update, new_states, vals = execute(plan, g=g, w=w, h=h, states=states, t=1.0, lr=lr, hparams=hparams,
                                               bd=bd, record=True)
            if all(_shapes(new_states[s]) == _shapes(states[s]) for s in plan.states):
                break                   # this round ran on the settled shapes: its values are the spec's
            states = {s: [_meta_like(x.shape, dtype) for x in new_states[s]] for s in plan.states}
        else:
            raise RuleValidationError(f"route '{plan.route}': state shapes do not settle "
                                      f"after {MAX_SHAPE_ROUNDS} steps")
    except RuleValidationError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise RuleValidationError(f"route '{plan.route}': shapes do not resolve: {_first_line(exc)}") from None
    if not isinstance(update, list):
        raise RuleValidationError(f"route '{plan.route}': 'update' does not depend on any tensor input")
    for u, s in zip(update, shapes):
        if torch.broadcast_shapes(u.shape, s) != s:
            raise RuleValidationError(f"route '{plan.route}': update has shape {tuple(u.shape)} "
                                      f"but the parameter has shape {tuple(s)}")
    return Spec({s: tuple(x.shape for x in new_states[s]) for s in plan.states},
                _choose_dests(plan, vals, n), _clones(plan, vals))


def _shapes(xs) -> tuple:
    return tuple(tuple(x.shape) if isinstance(x, torch.Tensor) else () for x in xs)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _owned_ids(plan: Plan) -> set[int]:
    """Values whose buffers belong to the plan: state loads and fresh instruction results."""
    return {plan.loads[s] for s in plan.states}


def _choose_dests(plan: Plan, vals: list, n: int) -> dict[int, int]:
    owned = _owned_ids(plan)
    outputs = plan.outputs
    dests: dict[int, int] = {}
    for idx, ins in enumerate(plan.tensor_instrs):
        out = vals[ins.out]
        choice = None
        if isinstance(out, list):
            tensor = [isinstance(a, int) and isinstance(vals[a], list) for a in ins.args]
            kernel = instruction(ins.op).kernel
            for k, a in enumerate(ins.args):
                if not tensor[k] or kernel.writes(k, tensor) != k or a not in owned or a in outputs:
                    continue
                if plan.last_use.get(a) != idx or ins.args.count(a) > 1:
                    continue
                buf = vals[a]
                if not isinstance(buf, list) or len(buf) != n:
                    continue
                if all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(buf, out)):
                    choice = k
                    break
        if choice is not None:
            dests[idx] = choice
            owned.add(ins.out)
        elif ins.fresh and isinstance(out, list):
            owned.add(ins.out)
    return dests


def _clones(plan: Plan, vals: list) -> frozenset[str]:
    """State outputs that alias an input, a shared value, or another state's output."""
    owned = _owned_ids(plan)
    for ins in plan.tensor_instrs:
        if ins.fresh:
            owned.add(ins.out)
    seen: set[int] = set()
    clones = set()
    for s, vid in plan.state_out.items():
        if vid not in owned or vid in seen:
            clones.add(s)
        seen.add(vid)
    return frozenset(clones)


def run_step(plan: Plan, spec: Spec, **kwargs):
    """`execute` with errors from torch turned into RuleRuntimeError."""
    try:
        return execute(plan, spec=spec, **kwargs)
    except (RuntimeError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise RuleRuntimeError(f"route '{plan.route}' failed: {_first_line(exc)}") from None
