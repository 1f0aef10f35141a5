"""Elementwise primitives: neg abs sign sqrt rsqrt square exp log tanh cos clip max min pow lerp mod safe_div.

`sqrt`, `rsqrt`, `log` and `pow` are protected on |x| so random programs stay finite where the
plain form would give NaN; on their natural domain they are the plain forms. `lerp` is torch.lerp
(an EMA is `lerp(m, g, 1 - beta)`). Each entry is its per-tensor function, decorated with its
facts, and (where Python's own function would raise or differ from torch) its scalar form on
Python floats just above it.
"""

from __future__ import annotations

import math
import operator

import torch

from .common import _first_tensor, _tensor
from .kernels import Extreme, Lerp, Negate, Protected, Square, Unary
from .registry import all_nonneg, any_nonneg, primitive
from .scalars import _div, _pow


@primitive("neg", "x", "elementwise", "-x", kernel=Negate(), scalar=operator.neg)
def _neg(x, bd=0):
    return torch.neg(x)


def _scalar_sign(x):
    """sign(x) of a Python float, as torch.sign: 0 at 0 and at NaN."""
    return float(x > 0) - float(x < 0)


@primitive("sign", "x", "elementwise", "sign of x (0 at 0, and 0 at NaN as torch.sign)", kernel=Unary("sign"),
           scalar=_scalar_sign, slot=True)
def _sign(x, bd=0):
    return torch.sign(x)


def _scalar_sqrt(x):
    """sqrt(|x|) of a Python float."""
    return math.sqrt(abs(x))


@primitive("sqrt", "x", "elementwise", "sqrt(|x|): protected square root", kernel=Protected("sqrt"),
           scalar=_scalar_sqrt, sign=True, slot=True)
def _sqrt(x, bd=0):
    return torch.sqrt(torch.abs(x))


def _scalar_rsqrt(x):
    """1 / sqrt(|x|) of a Python float: inf at 0."""
    root = math.sqrt(abs(x))
    return 1.0 / root if root else math.inf


@primitive("rsqrt", "x", "elementwise", "1/sqrt(|x|): protected reciprocal square root (inf at 0)",
           scalar=_scalar_rsqrt, sign=True, slot=True)
def _rsqrt(x, bd=0):
    return torch.rsqrt(torch.abs(x))


def _scalar_square(x):
    """x * x of a Python float."""
    return x * x


@primitive("square", "x", "elementwise", "x * x", kernel=Square(), scalar=_scalar_square, sign=True, slot=True)
def _square(x, bd=0):
    return torch.square(x)


@primitive("abs", "x", "elementwise", "|x|", kernel=Unary("abs"), scalar=abs, sign=True, slot=True)
def _abs(x, bd=0):
    return torch.abs(x)


def _scalar_exp(x):
    """e ** x of a Python float: inf where it overflows (math.exp raises)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


@primitive("exp", "x", "elementwise", "e ** x", kernel=Unary("exp"), scalar=_scalar_exp, sign=True)
def _exp(x, bd=0):
    return torch.exp(x)


def _scalar_log(x):
    """log(|x|) of a Python float: -inf at 0 (math.log raises)."""
    return math.log(abs(x)) if x else -math.inf


@primitive("log", "x", "elementwise", "log(|x|): protected natural log (-inf at 0)", kernel=Protected("log"),
           scalar=_scalar_log)
def _log(x, bd=0):
    return torch.log(torch.abs(x))


@primitive("tanh", "x", "elementwise", "hyperbolic tangent", kernel=Unary("tanh"), scalar=math.tanh, slot=True)
def _tanh(x, bd=0):
    return torch.tanh(x)


def _scalar_cos(x):
    """cos(x) of a Python float: NaN at ±inf (math.cos raises)."""
    return math.cos(x) if math.isfinite(x) else math.nan


@primitive("cos", "x", "elementwise", "cosine (cos(pi * t / T): cosine schedules and restarts)", kernel=Unary("cos"),
           scalar=_scalar_cos)
def _cos(x, bd=0):
    return torch.cos(x)


def _scalar_max(a, b):
    """max(a, b) of Python floats, NaN-propagating as torch.maximum (a where they are equal)."""
    if a != a or b != b:
        return math.nan
    return float(b if a < b else a)


def _scalar_min(a, b):
    """min(a, b) of Python floats, NaN-propagating as torch.minimum (a where they are equal)."""
    if a != a or b != b:
        return math.nan
    return float(b if b < a else a)


def _scalar_clip(x, c):
    """x clamped to [-|c|, |c|], for Python floats (NaN in x or c gives NaN, as torch.clamp)."""
    return _scalar_min(_scalar_max(x, -abs(c)), abs(c))


@primitive("clip", "x c", "elementwise", "clip(x, c): x clamped to [-|c|, |c|]", scalar=_scalar_clip, slot=True)
def _clip(x, c, bd=0):
    if isinstance(c, torch.Tensor):
        c = torch.abs(c)
        return torch.minimum(torch.maximum(_tensor(x, c), -c), c)
    c = abs(c)
    return torch.clamp(x, -c, c)


@primitive("max", "x y", "elementwise", "elementwise maximum of x and y (NaN propagates)",
           kernel=Extreme("maximum", "clamp_min"), scalar=_scalar_max, sign=any_nonneg, slot=True, commutative=True)
def _max(a, b, bd=0):
    like = _first_tensor(a, b)
    return torch.maximum(_tensor(a, like), _tensor(b, like))


@primitive("min", "x y", "elementwise", "elementwise minimum of x and y (NaN propagates)",
           kernel=Extreme("minimum", "clamp_max"), scalar=_scalar_min, sign=all_nonneg, commutative=True)
def _min(a, b, bd=0):
    like = _first_tensor(a, b)
    return torch.minimum(_tensor(a, like), _tensor(b, like))


def _scalar_pow(x, y):
    """|x| ** y of Python floats, with IEEE results (0 ** -1 is inf)."""
    return _pow(abs(x), y)


def _lower_pow(b, x, y):
    """pow(x, y) is |x| ** y: the operator `**` on abs(x), so the abs pass is shared."""
    return b.emit("pow", (b.emit("abs", (x,)), y))


@primitive("pow", "x y", "elementwise", "pow(x, y) = |x| ** y: protected power (x ** y for x >= 0)",
           scalar=_scalar_pow, sign=True, lower=_lower_pow)
def _pow_abs(x, y, bd=0):
    return torch.pow(torch.abs(x) if isinstance(x, torch.Tensor) else abs(x), y)


def _scalar_lerp(a, b, w):
    """torch.lerp of Python floats (the same two-sided formula, so the rounding agrees)."""
    return a + w * (b - a) if abs(w) < 0.5 else b - (b - a) * (1 - w)


def _lerp_sign(is_nonneg, args) -> bool:
    """Between two values >= 0 when the weight is a constant in [0, 1]."""
    a, b, w = args
    return isinstance(w, float) and 0.0 <= w <= 1.0 and is_nonneg(a) and is_nonneg(b)


@primitive("lerp", "a b w", "elementwise",
           "lerp(a, b, w) = a + w * (b - a), as torch.lerp (EMA: lerp(m, g, 1 - beta))",
           kernel=Lerp(), scalar=_scalar_lerp, sign=_lerp_sign, slot=True)
def _lerp(a, b, w, bd=0):
    like = _first_tensor(a, b, w)
    a, b = _tensor(a, like), _tensor(b, like)
    if a.dtype != b.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    if isinstance(w, torch.Tensor) and w.dtype != a.dtype:
        w = w.to(a.dtype)
    return torch.lerp(a, b, w)


def _scalar_mod(x, y):
    """math.fmod of Python floats with IEEE results: NaN for y = 0 or an infinite x (math.fmod raises)."""
    if y == 0 or x != x or y != y or math.isinf(x):
        return math.nan
    return math.fmod(x, y)


@primitive("mod", "x y", "elementwise",
           "mod(x, y) = x - y * trunc(x / y): the remainder with x's sign (C fmod); NaN for y = 0",
           scalar=_scalar_mod, weight=0.3)
def _mod(x, y, bd=0):
    like = _first_tensor(x, y)
    return torch.fmod(_tensor(x, like), y)


def _scalar_safe_div(x, y):
    """x / y of Python floats, and 0 where y is 0 (tf.math.divide_no_nan)."""
    return 0.0 if y == 0 else _div(x, y)


@primitive("safe_div", "x y", "elementwise", "safe_div(x, y) = x / y, and 0 where y is 0 (tf.math.divide_no_nan)",
           scalar=_scalar_safe_div, weight=0.3)
def _safe_div(x, y, bd=0):
    like = _first_tensor(x, y)
    x, y = _tensor(x, like), _tensor(y, like)
    return torch.where(y == 0, torch.zeros((), dtype=like.dtype, device=like.device), x / y)
