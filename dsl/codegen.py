"""One route of a rule -> the plain Python functions of an exported optimizer (see `dsl.export`).

Everything is printed from the compiled plan (`dsl.compiler`), never from rule text:

- `init_state(p, dtype)`: zeros at the shapes the rule's state settles to. As the interpreter does,
  the plan is run on meta tensors of every rank (0 to 5), and each state's shape is written as an
  expression of `p.shape` (`torch.zeros_like(p)` for the usual full-size moment);
- `coefficients(group, t)`: the scalars of one step as Python floats. Whatever depends on `t` or
  calls a function is computed here once per parameter and step, as torch computes its bias
  corrections; cheap arithmetic of hparams (`1 - beta1`) stays inline in the tensor code;
- `update(g, w, <state>, <coefficients>)`: one parameter's step. The tensor instructions are
  printed one to one with the interpreter's kernels (same torch calls in the same order, results
  written into dead buffers exactly where the interpreter writes them), so trajectories agree bit
  for bit with `ProgramOptimizer`. An instruction whose result feeds only the next one is chained
  into it (`v.mul_(beta2).addcmul_(g, g, value=1 - beta2)`); names come from the rule;
- `step(params, grads, <state lists>, coefficients)`: the loop that applies w <- w - lr * update
  (low-precision parameters are stepped in float32 and rounded once). `fused=True` compiles it.

A reduction over the whole group (`global_norm`) splits `update` into phases around it.
"""

from __future__ import annotations

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
    states: tuple[str, ...]          # per-parameter state keys, in the step function's order
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
    states = (("h",) if "h" in plan.reads else ()) + plan.states
    fn = {role: f"{prefix}_{role}" for role in ("init_state", "coefficients", "update", "step")}
    scalars = Scalars(plan, namer)
    body = TensorCode(plan, dests or {}, clones, namer, scalars)
    blocks = [_init_state(fn["init_state"], plan, specs),
              scalars.function(fn["coefficients"], fn["update"]),
              *body.phase_functions(fn["update"], states),
              body.step_function(fn["step"], fn["update"], states)]
    return RouteSource(route.name, fn, "\n\n\n".join(blocks), states, body.helpers | scalars.helpers,
                       scalars.varying)


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


def _shape_text(shape: tuple[int, ...], rank: int) -> str:
    """A state's shape for the parameter RANK_SHAPES[rank], as an expression of `p.shape` that
    holds for every parameter of that rank (negative indices, so ranks share one text)."""
    axes = RANK_SHAPES[rank]
    entries: list[int | None] = []   # the parameter axis a state axis has, or None for 1
    for d in shape:
        if d != 1 and d not in axes:
            raise RuleValidationError(f"state shape {tuple(shape)} is not expressible from the parameter's")
        entries.append(None if d == 1 else axes.index(d))
    if entries == list(range(rank)):
        return FULL
    if not entries:
        return SCALAR
    lead = 0
    while lead < min(len(entries), rank) and entries[lead] == lead:
        lead += 1
    items = [f"*p.shape[:{lead - rank}]" if lead < rank else "*p.shape"]
    items += ["1" if e is None else f"p.shape[{e - rank}]" for e in entries[lead:]]
    return f"p.new_zeros(({', '.join(items)}), dtype=dtype)"


def _init_state(name: str, plan: Plan, specs: dict[int, Spec | None]) -> str:
    keys = (["h"] if "h" in plan.reads else []) + list(plan.states)
    rows: dict[int, tuple[str, ...] | None] = {}
    for rank, spec in specs.items():
        if spec is None:
            rows[rank] = None
            continue
        row = [FULL] if "h" in plan.reads else []
        row += [_shape_text(tuple(spec.state_shapes[s][0]), rank) for s in plan.states]
        rows[rank] = tuple(row)
    if rows[0] is not None and rows[1] is not None and set(rows[1]) <= {FULL, SCALAR}:
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
