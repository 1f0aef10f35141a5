"""Functional fingerprint, validity gate and state memory of a rule.

All three run the rule on one fixed tiny problem: a 64x32 matrix and a 32-vector, float64,
gradients of a fixed ill-conditioned quadratic plus fixed noise, `h` its exact diagonal
curvature, 10 steps with the rule's default hparams. The fingerprint hashes the rounded
parameter trajectory, so programs that compute the same thing in different ways share it
(AutoML-Zero's functional equivalence checking, Real et al. 2020; Lion's search cached fitness
this way, Chen et al. 2023). It is scale-normalised: the trajectory runs at lr = 0.01 / s, s the
RMS of the rule's first finite, non-zero update at lr = 1 (the probe of `evaluators.scale`), so a
rule and the same rule with its update times a constant (`2 * adam`, which the search's
scale-invariant fitness cannot tell apart) share a fingerprint and are trained once. The gate
answers "can this rule be trained at all?" on the trajectory at lr = 0.01, before any compute is
spent on it, and never raises.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from .analysis import update_depends_on
from .errors import RuleError
from .ir import Program
from .optimizer import ProgramOptimizer
from .parser import validate

REFERENCE_SHAPES: tuple[tuple[int, ...], ...] = ((64, 32), (32,))
STEPS = 10
LR = 0.01
DECIMALS = 8


@dataclass(frozen=True)
class GateReport:
    ok: bool
    reason: str = ""
    fingerprint: str | None = None
    state_bytes_per_param: float | None = None


def _problem(seed: int = 1234):
    gen = torch.Generator().manual_seed(seed)
    params, curv, targets, noise = [], [], [], []
    for shape in REFERENCE_SHAPES:
        params.append(torch.randn(shape, generator=gen, dtype=torch.float64))
        curv.append(torch.logspace(-2, 1, int(np.prod(shape)), dtype=torch.float64).reshape(shape))
        targets.append(torch.randn(shape, generator=gen, dtype=torch.float64))
        noise.append([0.1 * torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(STEPS)])
    return params, curv, targets, noise


def _steps(program: Program, lr: float):
    """The parameters (flat, float64) after each step of the fixed problem at `lr`."""
    params0, curv, targets, noise = _problem()
    params = [torch.nn.Parameter(p.clone()) for p in params0]
    opt = ProgramOptimizer(params, program, lr=lr)
    reads_h = opt.reads_curvature
    for k in range(STEPS):
        for p, d, tgt, nz in zip(params, curv, targets, noise):
            p.grad = d * (p.detach() - tgt) + nz[k]
        opt.step()
        if reads_h:
            opt.update_curvature({p: d for p, d in zip(params, curv)})
        yield torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()


def trajectory(program: Program, lr: float = LR) -> np.ndarray:
    """Parameter values after each of the fixed problem's steps, shape [STEPS, n_params]."""
    return np.stack(list(_steps(program, lr)))


def update_scale(program: Program) -> float:
    """RMS of the rule's first finite, non-zero update at lr = 1 on the fixed problem (1 if none)."""
    before = torch.cat([p.reshape(-1) for p in _problem()[0]]).numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        for after in _steps(program, 1.0):
            rms = float(np.sqrt(np.mean(np.square(after - before))))
            if math.isfinite(rms) and rms > 0:
                return rms
            before = after
    return 1.0


def _hash_array(x: np.ndarray) -> str:
    with np.errstate(over="ignore", invalid="ignore"):   # |x| near float max rounds to inf: fine
        q = np.round(x, DECIMALS)
    q[q == 0] = 0.0                     # fold -0.0 into 0.0
    q[np.isnan(q)] = np.nan             # one NaN bit pattern
    return hashlib.blake2b(q.astype("<f8").tobytes(), digest_size=16).hexdigest()


def fingerprint(program: Program) -> str:
    """Hash of the rounded, scale-normalised trajectory on the fixed problem (raises RuleError if
    it cannot run)."""
    return _hash_array(trajectory(program, LR / update_scale(program)))


def state_bytes_per_param(program: Program) -> float:
    """Bytes of float32 optimizer state per parameter on the reference shapes (the step counter
    is bookkeeping and not counted, as for every optimizer compared)."""
    params = [torch.nn.Parameter(torch.zeros(s, dtype=torch.float32)) for s in REFERENCE_SHAPES]
    opt = ProgramOptimizer(params, program, lr=LR)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_bytes() / sum(p.numel() for p in params)


def check(program: Program) -> GateReport:
    """The validity gate: `update` depends on `g`, shapes resolve, the trajectory is finite."""
    try:
        validate(program)    # a Program built directly (search mutations) may lack `update`
        if not update_depends_on(program, "g"):
            return GateReport(False, "'update' does not depend on the gradient g")
        traj = trajectory(program)
        fp = fingerprint(program)
        if not np.all(np.isfinite(traj)):
            step = int(np.argmax(~np.all(np.isfinite(traj), axis=1))) + 1
            return GateReport(False, f"non-finite parameters at step {step} of the fixed problem", fp)
        return GateReport(True, "", fp, state_bytes_per_param(program))
    except RuleError as exc:
        return GateReport(False, str(exc))
    except Exception as exc:  # noqa: BLE001 -- the gate reports; it never raises into the search
        return GateReport(False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
