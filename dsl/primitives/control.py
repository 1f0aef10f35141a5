"""Control primitives: when(c, x, y) and every(k, x, y), lazy choices by a scalar condition.

A rule stays a straight-line program: `when(c, x, y)` is x where c > 0 and y otherwise, with c
a scalar of t, hparams and numbers (never of lr: an lr grid trained as one ensemble has one lr
per member), so the choice is made once per step for a whole bucket of parameters, and only the
statements the taken branch needs run (the compiler groups each branch's own instructions; the
exporter prints them as an `if`). `every(k, x, y)` is x every k steps from the first, when
(t - 1) mod k < 1 (for an integer k >= 1: (t - 1) % k == 0), else y: Shampoo's and SOAP's periodic
preconditioner refresh (Gupta et al. 2018, `precondition_frequency`; Vyas et al. 2024). Both
branches of a tensor choice must have one shape (the gate checks it), so state keeps its shape
whichever branch runs. NaN conditions take y.
"""

from __future__ import annotations

from .elementwise import _scalar_mod
from .kernels import Select
from .registry import primitive


def _branch(c) -> int:
    """The argument position `when` takes for condition c: 1 (x) where c > 0, else 2 (y)."""
    return 1 if c > 0 else 2


def _scalar_when(c, x, y):
    """x where c > 0, else y (Python floats)."""
    return x if c > 0 else y


@primitive("when", "c x y", "control", "when(c, x, y): x where the scalar c > 0, else y; only that branch runs",
           kernel=Select(), scalar=_scalar_when, fresh=False, branch=_branch, weight=0.2)
def _when(c, x, y, bd=0):
    return x if c > 0 else y


def _scalar_every(k, x, y, t=1.0):
    """x when (t - 1) mod k < 1, else y (Python floats; at step t, 1 by default)."""
    return x if 1.0 - _scalar_mod(t - 1.0, k) > 0 else y


def _lower_every(b, k, x, y):
    """every(k, x, y) is when(1 - mod(t - 1, k), x, y)."""
    phase = b.emit("mod", (b.emit("sub", (b.load("t"), 1.0)), k))
    return b.emit("when", (b.emit("sub", (1.0, phase)), x, y))


@primitive("every", "k x y", "control",
           "every(k, x, y): x every k steps from the first ((t - 1) mod k < 1), else y; only that branch runs",
           scalar=_scalar_every, fresh=False, lower=_lower_every, weight=0.2, constants=())
def _every(k, x, y, bd=0, t=1.0):
    return x if 1.0 - _scalar_mod(t - 1.0, float(k)) > 0 else y
