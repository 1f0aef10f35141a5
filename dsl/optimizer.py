"""`ProgramOptimizer`: a real `torch.optim.Optimizer` that runs a rule.

    opt = ProgramOptimizer(model.parameters(), load_rule("builtin:adamw"), lr=1e-3, wd=0.1)

The bookkeeping (param groups, validation, routing, lazily created state, step counts, closures,
curvature, state_dict) is the optimizer shell `dsl.shell.RuleOptimizer`, the same code every
exported optimizer carries. What is the interpreter's own is the route: per step, a route's
parameters are bucketed by (step count, dtype, device) and each bucket runs the route's compiled
plan foreach-style, then applies w <- w - lr * update. State is created on a parameter's first
step at the shapes the rule settles to; low-precision (bf16/fp16) parameters keep float32 state
and are updated in float32, then rounded back.

Param groups accept `lr`, any of the rule's hparams, `route` ("matrix" or "default"; by default
parameters with two or more non-ensemble axes take `matrix` when the rule has that route) and
`batch_dims` (leading ensemble axes: with `batch_dims=1` and a 1-D tensor `lr` of length E, member
i is updated exactly as if trained alone with lr[i]).
"""

from __future__ import annotations

import functools

import torch

from .compiler import compile_route
from .errors import RuleRuntimeError
from .interpreter import Frame, Spec, run_frames, specialize
from .ir import Program
from .loader import load_rule
from .primitives import PRIMITIVES
from .shell import RuleOptimizer, _compute_dtype

CPU_CHUNK = 1 << 18      # entries per foreach call on the CPU (see InterpretedRoute._chunks)


class InterpretedRoute:
    """One route of a rule in the shell's route protocol (`dsl.shell.Route`), run by the
    interpreter, for groups with `bd` ensemble axes and a scalar or per-member (`lr_tensor`) lr."""

    def __init__(self, program: Program, name: str, bd: int, lr_tensor: bool):
        self.plan = compile_route(program.route(name), program.hparams, lr_is_tensor=lr_tensor)
        self.bd, self.lr_tensor = bd, lr_tensor
        self.hparam_names = tuple(program.hparams)
        self.defaults = {k: float(v) for k, v in program.hparams.items()}
        self.inputs = tuple(k for k in ("h", "w0") if k in self.plan.reads)   # input state: curvature, start
        self.state = self.inputs + self.plan.states + (("eval_w",) if self.plan.eval_w is not None else ())
        self.varying = ()
        self.specs: dict[tuple, Spec] = {}
        # a whole-group reduction (global_norm) needs every bucket in one step, unchunked
        self.whole = any(PRIMITIVES.get(i.op) is not None and PRIMITIVES[i.op].kind == "group"
                         for i in self.plan.tensor_instrs)

    def _spec(self, shapes: tuple, cd: torch.dtype) -> Spec:
        """The plan specialized to a bucket of `shapes` (each shape's state shapes found once)."""
        key = (shapes, cd)
        spec = self.specs.get(key)
        if spec is None:
            settled = None if len(shapes) == 1 else [self._state_shapes(s, cd) for s in shapes]
            spec = self.specs[key] = specialize(self.plan, list(shapes), cd, bd=self.bd, lr_tensor=self.lr_tensor,
                                                hparams=self.defaults, settled=settled)
        return spec

    def _state_shapes(self, shape: torch.Size, cd: torch.dtype) -> dict:
        return {s: shapes[0] for s, shapes in self._spec((shape,), cd).state_shapes.items()}

    def init_state(self, p: torch.Tensor, dtype: torch.dtype) -> dict:
        state = {s: torch.zeros(shape, dtype=dtype, device=p.device)
                 for s, shape in self._state_shapes(p.shape, dtype).items()}
        if "h" in self.inputs:
            state["h"] = torch.zeros_like(p, dtype=dtype)
        for key in ("w0", "eval_w"):          # the start, and the evaluation point before any step
            if key in self.state:
                state[key] = p.detach().to(dtype, copy=True)
        return state

    def coefficients(self, group: dict, t: float) -> tuple:
        lr = group["lr"]
        if isinstance(lr, torch.Tensor) and not self.lr_tensor:
            lr = float(lr)
        return lr, {k: float(group[k]) for k in self.hparam_names}, t

    def step(self, params: list, grads: list, *args) -> None:
        *state_lists, coefficients, which = args
        buckets: dict[tuple, list[int]] = {}
        for i, p in enumerate(params):
            buckets.setdefault((which[i], p.dtype, p.device), []).append(i)
        chunks = [(chunk, coefficients[row]) for (row, _, device), idx in buckets.items()
                  for chunk in self._chunks(device, idx, params)]
        if self.whole:      # one step over every bucket: group reductions cover all of them
            frames = [self._frame(chunk, params, grads, state_lists, row) for chunk, row in chunks]
            for frame, result in zip(frames, run_frames(self.plan, [f for f, _ in frames], self.bd)):
                self._finish(frame, result, state_lists)
        else:
            for chunk, row in chunks:
                frame = self._frame(chunk, params, grads, state_lists, row)
                self._finish(frame, run_frames(self.plan, [frame[0]], self.bd)[0], state_lists)

    def _chunks(self, device: torch.device, idx: list[int], params: list) -> list[list[int]]:
        """A CPU bucket runs in chunks of about CPU_CHUNK entries. The foreach temporaries of a
        whole bucket are megabytes that the allocator hands back to the OS and page-faults in
        again every step (2.5x torch's for-loop AdamW at 1M parameters; chunked, about 1.2x)."""
        if device.type != "cpu" or self.whole:
            return [idx]
        chunks, size = [[]], 0
        for i in idx:
            if size >= CPU_CHUNK:
                chunks.append([])
                size = 0
            chunks[-1].append(i)
            size += params[i].numel()
        return chunks

    def _frame(self, idx: list[int], params: list, grads: list, state_lists: list, row: tuple):
        """(the interpreter's frame for parameters idx, what applying its result needs)."""
        lr, hp, t = row
        bd = self.bd
        ps = [params[i] for i in idx]
        cd = _compute_dtype(ps[0])
        if self.lr_tensor:  # one lr per ensemble member
            for p in ps:
                if bd < 1 or p.dim() < 1 or lr.numel() not in (1, p.shape[0]):
                    raise RuleRuntimeError(f"lr has {lr.numel()} entries but the parameter's leading axis has "
                                           f"{p.shape[0] if p.dim() else 0} (batch_dims={bd})")
        plan = self.plan
        spec = self._spec(tuple(p.shape for p in ps), cd)
        low = cd != ps[0].dtype
        g = [grads[i].to(cd) for i in idx] if low else [grads[i] for i in idx]
        w = [p.to(cd) for p in ps] if low else ps
        keys = self.state
        column = {key: [state_lists[keys.index(key)][i] for i in idx] for key in self.inputs}
        states = {s: [state_lists[keys.index(s)][i] for i in idx] for s in plan.states}
        if self.lr_tensor:
            lrv = lr.to(device=ps[0].device, dtype=cd)
            lr_in = [lrv.reshape(lrv.shape + (1,) * (p.dim() - bd)) for p in ps]
        else:
            lr_in = float(lr)
        frame = Frame(g, w, states, t, lr_in, hp, h=column.get("h"), w0=column.get("w0"), spec=spec)
        return frame, (idx, ps, w, low)

    def _finish(self, frame, result, state_lists: list) -> None:
        """Store a frame's new state and move its parameters: w - lr * update, or w <- next_w."""
        frame, (idx, ps, w, low) = frame
        update, new_states, _ = result
        keys = self.state
        for s, vs in new_states.items():
            column = state_lists[keys.index(s)]
            for i, v in zip(idx, vs):
                column[i] = v
        if self.plan.apply == "next_w":
            if low:
                for p, nw in zip(ps, update):
                    p.copy_(nw)
            else:
                torch._foreach_copy_(ps, update)
        elif self.lr_tensor:
            neg = [-x for x in frame.lr]
            if low:
                for p, wi, u, nl in zip(ps, w, update, neg):
                    p.copy_(wi.addcmul(u, nl))
            else:
                torch._foreach_addcmul_(ps, update, neg)
        elif low:
            for p, wi, u in zip(ps, w, update):
                p.copy_(wi.add(u, alpha=-frame.lr))
        else:
            torch._foreach_add_(ps, update, alpha=-frame.lr)


class ProgramOptimizer(RuleOptimizer):
    """Run an optforge rule as a torch optimizer (see the module docstring)."""

    _failure = RuleRuntimeError

    def __init__(self, params, rule: Program | str, lr: float | torch.Tensor = 1e-3, **hparams):
        self.rule = load_rule(rule)
        unknown = sorted(set(hparams) - set(self.rule.hparams))
        if unknown:
            raise ValueError(f"unknown hparam(s) {', '.join(unknown)} for this rule "
                             f"(it has: {', '.join(self.rule.hparams) or 'none'})")
        self._hparam_names = tuple(self.rule.hparams)
        self._tables: dict[tuple, dict[str, InterpretedRoute]] = {}
        self._routes = self._table(0, False)
        defaults = dict(lr=lr, route=None, batch_dims=0, **self.rule.hparams)
        if self.rule.has_eval_point:      # eval() / train() swap the evaluation point (dsl.shell)
            defaults["train_mode"] = True
        defaults.update(hparams)
        super().__init__(params, defaults)

    def _table(self, bd: int, lr_tensor: bool) -> dict[str, InterpretedRoute]:
        """The routes for groups with `bd` ensemble axes and a scalar or per-member lr (compiled lazily)."""
        key = (bd, lr_tensor)
        if key not in self._tables:
            self._tables[key] = _LazyTable(self.rule, bd, lr_tensor)
        return self._tables[key]

    def _routes_of(self, group: dict):
        lr = group["lr"]
        return self._table(group["batch_dims"], isinstance(lr, torch.Tensor) and lr.dim() == 1)

    def _axes(self, group: dict, p: torch.Tensor) -> int:
        return p.dim() - group["batch_dims"]

    def _check_group(self, group: dict) -> None:
        bd = group["batch_dims"]
        if isinstance(bd, bool) or not isinstance(bd, int) or bd < 0:
            raise ValueError(f"batch_dims must be an int >= 0, got {bd!r}")
        super()._check_group(group)

    def _check_lr(self, lr, group: dict) -> None:
        if not isinstance(lr, torch.Tensor):
            super()._check_lr(lr, group)
        elif lr.dim() > 1 or (lr.dim() == 1 and group["batch_dims"] != 1):
            raise ValueError("a tensor lr must be 0-d, or 1-d with batch_dims=1")
        elif not bool(torch.all(torch.isfinite(lr) & (lr >= 0))):
            raise ValueError("lr must be finite and >= 0")

    @property
    def reads_curvature(self) -> bool:
        return self.rule.reads_curvature

    def state_bytes(self) -> int:
        """Bytes of the rule's optimizer state (tensors; the step counter is not counted)."""
        return sum(v.numel() * v.element_size() for st in self.state.values() for k, v in st.items()
                   if k != "step" and isinstance(v, torch.Tensor))


@functools.lru_cache(maxsize=256)
def interpreted_route(program: Program, name: str, bd: int, lr_tensor: bool) -> InterpretedRoute:
    """The compiled route, shared by every optimizer that runs the same rule (plans and their
    specializations depend only on the rule's text, the group's kind and the shapes): the gate's
    and fingerprint's optimizers, and the evaluator's runs on task after task, compile it once."""
    return InterpretedRoute(program, name, bd, lr_tensor)


class _LazyTable(dict):
    """Route name -> InterpretedRoute, compiled on first use (the names are the rule's routes)."""

    def __init__(self, program: Program, bd: int, lr_tensor: bool):
        super().__init__((r, None) for r in program.route_names)
        self.program, self.bd, self.lr_tensor = program, bd, lr_tensor

    def __getitem__(self, name: str) -> InterpretedRoute:
        route = super().__getitem__(name)
        if route is None:
            route = interpreted_route(self.program, name, self.bd, self.lr_tensor)
            self[name] = route
        return route
