"""One route of a rule -> the plain Python functions of an exported optimizer (see `dsl.export`).

Everything is printed from the compiled plan (`dsl.compiler`), never from rule text:

- `init_state(p, dtype)`: zeros at the shapes the rule's state settles to. As the interpreter does,
  the plan is run on meta tensors of every rank (0 to 5), and each state's shape is written as an
  expression of `p.shape` (`torch.zeros_like(p)` for the usual full-size moment, `p.shape[0]` and
  `math.prod(p.shape[1:])` for the rows x rows and cols x cols factors of a matrix view); w0 and
  eval_w start as a copy of the parameter;
- `coefficients(group, t)`: the scalars of one step as Python floats. Whatever depends on `t` or
  calls a function is computed here once per parameter and step, as torch computes its bias
  corrections; cheap arithmetic of hparams (`1 - beta1`) stays inline in the tensor code;
- `update(g, w, <state>, <coefficients>)`: one parameter's step. The tensor instructions are
  printed one to one with the interpreter's kernels (same torch calls in the same order, results
  written into dead buffers exactly where the interpreter writes them), so trajectories agree bit
  for bit with `ProgramOptimizer`. An instruction whose result feeds only the next one is chained
  into it (`v.mul_(beta2).addcmul_(g, g, value=1 - beta2)`); names come from the rule;
- `step(params, grads, <state lists>, coefficients)`: the loop that applies w <- w - lr * update
  (or w <- next_w; low-precision parameters are stepped in float32 and rounded once) and stores
  eval_w. `fused=True` compiles it.

A reduction over the whole group (`global_norm`) splits `update` into phases around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .codegen_scalars import Namer, Scalars
from .codegen_tensor import TensorCode
from .compiler import Plan, compile_route
from .errors import RuleValidationError
from .interpreter import Spec, specialize
from .ir import Route

RANK_SHAPES = ((), (7,), (7, 5), (7, 5, 3), (7, 5, 3, 2), (11, 7, 5, 3, 2))


@dataclass
class RouteSource:
    """The printed functions of one route and what the class needs to call them."""

    route: str
    functions: dict[str, str]        # role (init_state, coefficients, step) -> function name
    code: str
    states: tuple[str, ...]          # per-parameter state keys, in the step function's order (eval_w last)
    helpers: set                     # the functions of optforge the code calls (copied into the file)
    varying: tuple[bool, ...]        # which coefficients change from step to step (depend on t or lr)


def route_source(route: Route, hparams: dict[str, float], prefix: str) -> RouteSource:
    """Print the functions of `route`; names get `prefix` (e.g. "_matrix")."""
    plan = compile_route(route, hparams)
    specs = _specs(plan, hparams)
    dests: dict[int, int] | None = None
    clones: set[str] = set()
    for spec in specs.values():
        if spec is not None:
            items = set(spec.dests.items())
            dests = dict(items) if dests is None else dict(items & set(dests.items()))
            clones |= spec.clone_states
    namer = Namer(route, hparams, plan)
    states = input_states(plan) + plan.states        # what the update function reads
    keys = states + (("eval_w",) if plan.eval_w is not None else ())
    fn = {role: f"{prefix}_{role}" for role in ("init_state", "coefficients", "update", "step")}
    scalars = Scalars(plan, namer)
    body = TensorCode(plan, dests or {}, clones, namer, scalars)
    blocks = [_init_state(fn["init_state"], plan, specs, keys),
              scalars.function(fn["coefficients"], fn["update"]),
              *body.phase_functions(fn["update"], states),
              body.step_function(fn["step"], fn["update"], states, keys)]
    return RouteSource(route.name, fn, "\n\n\n".join(blocks), keys, body.helpers | scalars.helpers,
                       scalars.varying)


def input_states(plan: Plan) -> tuple[str, ...]:
    """The inputs kept in a parameter's state: the curvature estimate h and the start w0."""
    return tuple(k for k in ("h", "w0") if k in plan.reads)


def _specs(plan: Plan, hparams: dict[str, float]) -> dict[int, Spec | None]:
    """The plan specialized to one parameter of each rank (None where it cannot run)."""
    out: dict[int, Spec | None] = {}
    error = None
    for shape in RANK_SHAPES:
        try:
            out[len(shape)] = specialize(plan, [torch.Size(shape)], torch.float32, hparams=hparams)
        except RuleValidationError as exc:
            out[len(shape)], error = None, exc
    if all(s is None for s in out.values()):
        raise error
    return out


# -- state shapes -----------------------------------------------------------------------------
FULL = "torch.zeros_like(p, dtype=dtype)"
SCALAR = "p.new_zeros((), dtype=dtype)"
COPY = "p.detach().to(dtype, copy=True)"     # w0 (the start) and eval_w (the evaluation point)


def _axes_text(d: int, rank: int) -> str:
    """A state axis of length d as an expression of p.shape: 1, one parameter axis, or the product
    of a run of them (the cols of a matrix view: prod(shape[1:])). RANK_SHAPES are distinct primes,
    so each run's product is unique."""
    axes = RANK_SHAPES[rank]
    if d == 1:
        return "1"
    if d in axes:
        return f"p.shape[{axes.index(d) - rank}]"
    for a in range(rank):
        for b in range(a + 2, rank + 1):
            if math.prod(axes[a:b]) == d:
                return f"math.prod(p.shape[{a}:{'' if b == rank else b - rank}])"
    raise RuleValidationError(f"state shape with an axis of length {d} is not expressible from the parameter's")


def _shape_text(shape: tuple[int, ...], rank: int) -> str:
    """A state's shape for the parameter RANK_SHAPES[rank], as an expression of `p.shape` that
    holds for every parameter of that rank (negative indices, so ranks share one text)."""
    axes = RANK_SHAPES[rank]
    if tuple(shape) == axes:
        return FULL
    if not shape:
        return SCALAR
    lead = 0                         # a prefix of the parameter's own axes, in their places
    while lead < min(len(shape), rank) and shape[lead] == axes[lead]:
        lead += 1
    single = [d for d in shape if d != 1]
    if len(set(single)) < len(single) or not set(single) <= set(axes):
        lead = 0                     # a matrix view's factor (rows x rows, cols x cols): axis by axis
        if rank >= 1:
            items = [_axes_text(d, rank).replace(f"p.shape[{-rank}]", "p.shape[0]") for d in shape]
            return f"p.new_zeros(({', '.join(items)}{',' if len(items) == 1 else ''}), dtype=dtype)"
    items = ([f"*p.shape[:{lead - rank}]" if lead < rank else "*p.shape"] if lead else [])
    items += [_axes_text(d, rank) for d in shape[lead:]]
    return f"p.new_zeros(({', '.join(items)}{',' if len(items) == 1 else ''}), dtype=dtype)"


def _init_state(name: str, plan: Plan, specs: dict[int, Spec | None], keys: tuple[str, ...]) -> str:
    fixed = {"h": FULL, "w0": COPY, "eval_w": COPY}
    rows: dict[int, tuple[str, ...] | None] = {}
    for rank, spec in specs.items():
        if spec is None:
            rows[rank] = None
            continue
        rows[rank] = tuple(fixed[k] if k in fixed else _shape_text(tuple(spec.state_shapes[k][0]), rank)
                           for k in keys)
    if rows[0] is not None and rows[1] is not None and set(rows[1]) <= {FULL, SCALAR, COPY}:
        rows[0] = rows[1]            # for a 0-d parameter both forms are 0-d
    top = max(rows)
    branches: list[tuple[str, tuple[str, ...] | None]] = []
    rank = top
    while rank >= 0:                 # runs of ranks with one text, highest first
        low = rank
        while low > 0 and rows[low - 1] == rows[rank]:
            low -= 1
        if rank == top:
            cond = f"p.dim() >= {low}"
        else:
            cond = f"p.dim() == {rank}" if low == rank else f"p.dim() >= {low}"
        branches.append((cond, rows[rank]))
        rank = low - 1
    lines = [f"def {name}(p, dtype):",
             '    """Fresh state for parameter p: zeros in `dtype`, at the shapes the rule settles to."""']

    def ret(row: tuple[str, ...] | None, indent: str) -> list[str]:
        if row is None:
            return [f'{indent}raise ValueError(f"this rule cannot update a {{p.dim()}}-d parameter")']
        if not keys:
            return [f"{indent}return {{}}"]
        return [f"{indent}return {{"] + [f'{indent}    "{k}": {t},' for k, t in zip(keys, row)] + [f"{indent}}}"]

    if len(branches) == 1:
        lines += ret(branches[0][1], "    ")
    for k, (cond, row) in enumerate(branches if len(branches) > 1 else []):
        head = "else:" if k == len(branches) - 1 else f"{'if' if k == 0 else 'elif'} {cond}:"
        lines += [f"    {head}"] + ret(row, "        ")
    return "\n".join(lines)
