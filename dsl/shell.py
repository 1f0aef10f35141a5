"""The optimizer shell: the bookkeeping every optimizer that runs a rule shares, written once.

`ProgramOptimizer` (the rule interpreter, `dsl.optimizer`) subclasses `RuleOptimizer`, and the
exporter copies this module's code into every exported file: its functions, and the methods of
`RuleOptimizer` after `__init__` into the exported optimizer class (whose own `__init__` takes the
rule's hparams as keyword arguments and does what `RuleOptimizer.__init__` does). So both
validate hyperparameters, keep
param groups, route parameters, create and count state, run closures, feed curvature and round
trip their state_dict with the same code (KellerJordan/Muon's lesson: four classes that copy one
step loop needed one bug fix four times). This module imports only torch and the standard
library, and nothing of optforge.

A route (`Route`) is the core type: `init_state(p, dtype)` gives a parameter's fresh state,
`coefficients(group, t)` the scalars of step t as Python floats (`lr` first), and
`step(params, grads, *state_lists, coefficients, which)` moves parameter i by
w <- w - lr * update (or w <- next_w) with the coefficients of row `which[i]`, replacing its
entries of the state lists. `state` names the per-parameter state keys, `varying` which
coefficients change from step to step (t or lr): under torch.compile those enter the graph as
tensors, so an LR schedule or a new step count does not recompile.

The evaluation point. A rule that assigns `eval_w` (Schedule-Free's x: Defazio et al. 2024, "The
Road Less Scheduled", arXiv:2405.15682) keeps it in each parameter's state under "eval_w"; the
optimizer is then in train mode (each param group's "train_mode" is True) and `eval()` swaps the
evaluation point into the parameters, `train()` swaps the training point back, as the reference
`schedulefree` optimizers' eval()/train() do (exactly: a swap, no arithmetic). While in eval mode
state["eval_w"] holds the training point and step() refuses to run. "train_mode" is saved with
the param groups, so a state_dict saved in either mode resumes in that mode (a checkpoint taken
in eval mode holds the evaluation weights in the model, as the reference recommends). BatchNorm
caveat: running statistics are accumulated at the training point; the reference recomputes them
at the evaluation point before evaluating (optforge's tasks have no BatchNorm).
"""

from __future__ import annotations

import collections
import functools
import math
import numbers

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)  # stepped in float32, with float32 state

Route = collections.namedtuple("Route", "init_state coefficients step state varying")


def _compute_dtype(p):
    """float32 for bfloat16/float16 parameters, else the parameter's own dtype."""
    return torch.float32 if p.dtype in _LOW_PRECISION else p.dtype


def _apply(p, w, update, lr):
    """w <- w - lr * update: in place, or in float32 and rounded once into a low-precision p."""
    if w is p:
        p.add_(update, alpha=-lr)
    else:
        p.copy_(w.add_(update, alpha=-lr))


def _assign(p, next_w):
    """w <- next_w (rounded once into a low-precision p)."""
    p.copy_(next_w)


def _as_tensors(row, varying):
    """The coefficients that change from step to step as 0-d float64 tensors, for torch.compile.

    Written as 0 + c: dynamo keeps a float symbolic when it enters tensor arithmetic, while
    torch.as_tensor(c) or an alpha=c argument would bake its value into the graph.
    """
    return tuple(torch.zeros((), dtype=torch.float64) + c if v else c for c, v in zip(row, varying))


def _is_number(x):
    """A finite real number: an int or a float, not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _check_fused(fused):
    """ValueError unless `fused` is True or False."""
    if not isinstance(fused, bool):
        raise ValueError(f"invalid fused: {fused!r} (must be True or False)")


@functools.cache
def _compiled(step):
    """torch.compile(step), built on first use: compiling takes seconds, then steps are fused."""
    return torch.compile(step)


class RuleOptimizer(torch.optim.Optimizer):
    """A torch optimizer that runs an update rule, route by route (see `Route`).

    A subclass sets `_routes` (route name -> Route), `_hparam_names` (the rule's hyperparameters)
    and passes the defaults: `lr`, every hparam and `route` (None: parameters with two or more
    axes take the `matrix` route when there is one, the rest `default`). A param group may
    override any of them; an unknown key, a non-finite or negative lr, a non-finite hparam or an
    unknown route is a ValueError that names it. State is created on a parameter's first step
    (float32 for bfloat16/float16 parameters, which are stepped in float32 and rounded once);
    each parameter's state holds its step count as a Python int under "step".
    """

    _routes = {}
    _hparam_names = ()
    _failure = RuntimeError          # the error of a step that cannot run
    reads_curvature = False          # whether the rule reads h (feed it with update_curvature())

    def __init__(self, params, defaults, fused=False):
        _check_fused(fused)
        self.fused = fused
        super().__init__(params, defaults)

    # -- param groups ----------------------------------------------------------------------------
    def add_param_group(self, param_group):
        unknown = sorted(set(param_group) - set(self.defaults) - {"params"})
        if unknown:
            raise ValueError(f"unknown param group key(s) {', '.join(unknown)}")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        self._check_group(group)
        for p in group["params"]:
            self._route(group, p)

    def _check_group(self, group):
        """Raise ValueError, naming the setting, for a param group this optimizer cannot run."""
        self._check_lr(group["lr"], group)
        for name in self._hparam_names:
            if not _is_number(group[name]):
                raise ValueError(f"invalid value for hparam '{name}': {group[name]!r} (must be a finite number)")
        if "train_mode" in group and not isinstance(group["train_mode"], bool):
            raise ValueError(f"invalid train_mode: {group['train_mode']!r} (must be True or False)")
        route = group["route"]
        if route is not None and route not in self._routes:
            raise ValueError(f"route '{route}' is not one of this rule's routes ({', '.join(self._routes)})")

    def _check_lr(self, lr, group):
        if not _is_number(lr) or lr < 0:
            raise ValueError(f"invalid lr: {lr!r} (must be a finite number >= 0)")

    def _route(self, group, p):
        """The route of parameter p: the group's, else by its number of axes."""
        if group["route"] is not None:
            return group["route"]
        if "matrix" in self._routes and self._axes(group, p) >= 2:
            return "matrix"
        if "default" in self._routes:
            return "default"
        raise self._failure(f"rule has no 'default' route for a parameter of shape {tuple(p.shape)}")

    def _axes(self, group, p):
        """The number of axes of p that routing counts."""
        return p.dim()

    def _routes_of(self, group):
        """The route table that steps `group`."""
        return self._routes

    # -- the step --------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step; `closure` re-evaluates the model and returns the loss."""
        if any(group.get("train_mode") is False for group in self.param_groups):
            raise self._failure("the optimizer is in eval mode: call optimizer.train() before step()")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        fused = self.fused and not torch.compiler.is_compiling()
        for group in self.param_groups:
            by_route = {}
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.is_sparse:
                        raise self._failure("sparse gradients are not supported")
                    by_route.setdefault(self._route(group, p), []).append(p)
            routes = self._routes_of(group)
            for name, params in by_route.items():
                self._step_route(routes[name], group, params, fused)
        return loss

    def _step_route(self, route, group, params, fused):
        """Step the parameters of one route: lazily created state, step counts, coefficients."""
        for p in params:
            state = self.state[p]
            if "step" not in state:
                fresh = route.init_state(p, _compute_dtype(p))
                state["step"] = 0
                for key, value in fresh.items():
                    state.setdefault(key, value)
        counts = [self.state[p]["step"] + 1 for p in params]
        state_lists = [[self.state[p][key] for p in params] for key in route.state]
        if torch.compiler.is_compiling():    # one row per parameter: no branching on step counts
            which = list(range(len(params)))
            coefficients = [route.coefficients(group, float(t)) for t in counts]
        else:                                # one row per distinct step count
            rows = {}
            which = [rows.setdefault(t, len(rows)) for t in counts]
            coefficients = [route.coefficients(group, float(t)) for t in rows]
        if fused or torch.compiler.is_compiling():
            # what changes every step (t, lr) enters the graph as tensors, so it is not recompiled
            coefficients = [_as_tensors(row, route.varying) for row in coefficients]
        step = _compiled(route.step) if fused else route.step
        step(params, [p.grad for p in params], *state_lists, coefficients, which)
        for key, values in zip(route.state, state_lists):
            for p, value in zip(params, values):
                self.state[p][key] = value
        for p, t in zip(params, counts):
            self.state[p]["step"] = t

    # -- the evaluation point (eval_w) ---------------------------------------------------------------
    @torch.no_grad()
    def eval(self):
        """Put every parameter at the rule's evaluation point (a no-op for rules without eval_w)."""
        self._set_mode(False)

    @torch.no_grad()
    def train(self):
        """Put every parameter back at its training point (a no-op for rules without eval_w)."""
        self._set_mode(True)

    def _set_mode(self, train):
        for group in self.param_groups:
            if group.get("train_mode", train) == train:
                continue
            for p in group["params"]:
                other = self.state[p].get("eval_w") if p in self.state else None
                if other is not None:        # swap: p <-> state["eval_w"]
                    current = p.detach().to(other.dtype, copy=True)
                    p.copy_(other)
                    other.copy_(current)
            group["train_mode"] = train

    # -- curvature and state ---------------------------------------------------------------------
    @torch.no_grad()
    def update_curvature(self, estimates):
        """Feed a diagonal curvature estimate for the rule's input h, a dict parameter -> tensor:
        h <- hbeta * h + (1 - hbeta) * estimate when the rule has an hparam hbeta (h starts at
        zero), else h <- estimate."""
        for group in self.param_groups:
            for p in group["params"]:
                estimate = estimates.get(p)
                if estimate is None:
                    continue
                estimate = estimate.to(_compute_dtype(p))
                state = self.state[p]
                if "hbeta" in group:
                    if "h" not in state:
                        state["h"] = torch.zeros_like(p, dtype=estimate.dtype)
                    beta = float(group["hbeta"])
                    state["h"].mul_(beta).add_(estimate, alpha=1 - beta)
                else:
                    state["h"] = estimate.clone()

    def load_state_dict(self, state_dict):
        """As torch's, except that the state of bfloat16/float16 parameters stays float32."""
        saved = state_dict["state"]
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(ids, params):
            if p.dtype in _LOW_PRECISION:
                for key, value in saved.get(i, {}).items():
                    if isinstance(value, torch.Tensor) and value.is_floating_point():
                        self.state[p][key] = value.to(device=p.device, dtype=torch.float32, copy=True)
