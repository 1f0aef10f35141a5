"""Run a compiled plan on real (or meta) tensors.

`execute` evaluates the scalar part of a plan in Python floats (as torch does for bias
corrections) with each instruction's registry scalar form (IEEE results: x / 0 is inf, never an
exception; the exported optimizers run the same functions), then every tensor instruction across
the whole group with its entry's foreach kernel (`dsl.primitives.kernels`), or its per-tensor
function where the kernel does not cover the case, skipping the blocks of the branches that the
step's lazy choices (`when`) do not take. `execute_frames` runs several buckets of one route (one
per step count and dtype) in lockstep, so a group reduction covers all of them: the same tensors
an exported optimizer reduces over. `specialize` prepares a plan for one set of
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
    clone_states: frozenset[str]    # state outputs (and "eval_w") that are not private buffers (copy them)


@dataclass
class Frame:
    """One bucket of a route's parameters (one step count, dtype and device): its inputs, state
    lists, scalars and its plan specialization."""

    g: list
    w: list
    states: dict[str, list]
    t: float
    lr: object
    hparams: dict[str, float]
    h: list | None = None
    w0: list | None = None
    spec: Spec | None = None


def _start(plan: Plan, f: Frame) -> list:
    """The value table of one frame with its loads and every scalar instruction computed."""
    vals: list = [None] * plan.n_values
    inputs = {"g": f.g, "w": f.w, "h": f.h, "w0": f.w0, "t": float(f.t), "lr": f.lr}
    for name, vid in plan.loads.items():
        if name in inputs:
            vals[vid] = inputs[name]
        elif name in f.hparams:
            vals[vid] = f.hparams[name]
        else:
            vals[vid] = f.states[name]
    for ins in plan.scalar_instrs:
        vals[ins.out] = eval_scalar(ins.op, [vals[a] if isinstance(a, int) else a for a in ins.args])
    return vals


def _group_step(ins, frames: list[Frame], tables: list[list], bd: int) -> None:
    """A whole-group reduction over every tensor of every frame (one bucket per step count and dtype):
    its arguments' lists concatenated, the per-tensor results split back."""
    entry = instruction(ins.op)
    args = [[vals[a] if isinstance(a, int) else a for a in ins.args] for vals in tables]
    sizes = [len(f.g) for f in frames]
    joined = [[x for frame_args in args for x in frame_args[k]] for k in range(len(ins.args))]
    out = entry.fn(*joined, bd=bd)
    start = 0
    for vals, n in zip(tables, sizes):
        vals[ins.out] = out[start:start + n]
        start += n


def execute_frames(plan: Plan, frames: list[Frame], *, bd: int = 0, record: bool = False, lazy: bool = True):
    """Run one step of `plan` for several frames together: group reductions (`global_norm`,
    `global_sum`, `global_dot`) reduce over every tensor of all of them, everything else runs frame by
    frame; with `lazy`, the branches a choice does not take are skipped. Returns one
    (update, new state lists (with "eval_w"), value table if `record`) per frame."""
    tables = [_start(plan, f) for f in frames]
    skips = [plan.skipped(vals) if lazy else frozenset() for vals in tables]
    nonneg = plan.nonneg_ids
    for idx, ins in enumerate(plan.tensor_instrs):
        if instruction(ins.op).kind == "group":
            _group_step(ins, frames, tables, bd)
            continue
        first = ins.args[0]
        first_nonneg = isinstance(first, int) and first in nonneg
        for f, vals, skip in zip(frames, tables, skips):
            if idx in skip:
                continue
            args = [vals[a] if isinstance(a, int) else a for a in ins.args]
            dest = f.spec.dests.get(idx) if f.spec is not None else None
            vals[ins.out] = run_instr(ins.op, args, dest, bd, first_nonneg, len(f.g))
    results = []
    for f, vals in zip(frames, tables):
        update = vals[plan.update] if isinstance(plan.update, int) else plan.update
        outs = dict(plan.state_out)
        if plan.eval_w is not None:
            outs["eval_w"] = plan.eval_w
        new_states = {}
        for s, vid in outs.items():
            v = vals[vid]
            if f.spec is not None and s in f.spec.clone_states:
                v = [x.clone() for x in v]
            new_states[s] = v
        results.append((update, new_states, vals if record else None))
    return results


def execute(plan: Plan, *, g: list, w: list, h: list | None, states: dict[str, list], t: float, lr,
            hparams: dict[str, float], bd: int = 0, spec: Spec | None = None, record: bool = False,
            w0: list | None = None, lazy: bool = True):
    """Run one step of `plan` on one bucket. Returns (update list, new state lists, value table if
    `record`); the new state lists hold the evaluation point under "eval_w" when the route has one."""
    frame = Frame(g, w, states, t, lr, hparams, h=h, w0=w0, spec=spec)
    return execute_frames(plan, [frame], bd=bd, record=record, lazy=lazy)[0]


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
    w0 = [_meta_like(s, dtype) for s in shapes]
    lr = [_meta_like(tuple(s[:bd]) + (1,) * (len(s) - bd), dtype) for s in shapes] if lr_tensor else 1.0
    states = {s: [_meta_like(settled[i][s] if settled else (), dtype) for i in range(n)] for s in plan.states}
    try:
        for _ in range(MAX_SHAPE_ROUNDS):     # every branch runs (lazy=False): shapes of all of them
            update, new_states, vals = execute(plan, g=g, w=w, h=h, states=states, t=1.0, lr=lr, hparams=hparams,
                                               bd=bd, record=True, w0=w0, lazy=False)
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
        raise RuleValidationError(f"route '{plan.route}': '{plan.apply}' does not depend on any tensor input")
    for u, s in zip(update, shapes):
        if torch.broadcast_shapes(u.shape, s) != s:
            raise RuleValidationError(f"route '{plan.route}': {plan.apply} has shape {tuple(u.shape)} "
                                      f"but the parameter has shape {tuple(s)}")
    if plan.eval_w is not None:
        for e, s in zip(new_states["eval_w"], shapes):
            if e.shape != s:
                raise RuleValidationError(f"route '{plan.route}': eval_w has shape {tuple(e.shape)} "
                                          f"but the parameter has shape {tuple(s)}")
    _check_branches(plan, vals)
    return Spec({s: tuple(x.shape for x in new_states[s]) for s in plan.states},
                _choose_dests(plan, vals, n), _clones(plan, vals))


def _check_branches(plan: Plan, vals: list) -> None:
    """Both branches of a lazy tensor choice are tensors of one shape, so a value (and the state it
    becomes) keeps its shape whichever branch a step takes."""
    for k in plan.branches:
        ins = plan.tensor_instrs[k]
        x, y = (vals[a] if isinstance(a, int) else a for a in ins.args[1:])
        if not (isinstance(x, list) and isinstance(y, list)) or _shapes(x) != _shapes(y):
            describe = [str(_shapes(v)[0]) if isinstance(v, list) else "a number" for v in (x, y)]
            raise RuleValidationError(f"route '{plan.route}': the branches of {ins.op}() must be tensors of one "
                                      f"shape (here {describe[0]} and {describe[1]})")


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
    outs = dict(plan.state_out)
    if plan.eval_w is not None:
        outs["eval_w"] = plan.eval_w
    for s, vid in outs.items():
        if vid not in owned or vid in seen:
            clones.add(s)
        seen.add(vid)
    return frozenset(clones)


def run_frames(plan: Plan, frames: list[Frame], bd: int = 0) -> list:
    """`execute_frames` with errors from torch turned into RuleRuntimeError."""
    try:
        return execute_frames(plan, frames, bd=bd)
    except (RuntimeError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise RuleRuntimeError(f"route '{plan.route}' failed: {_first_line(exc)}") from None
