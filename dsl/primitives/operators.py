"""The operators `+ - * / **` as instructions, and the fused kernels the compiler makes of them.

Unary minus is the primitive `neg`. `**` is the plain power (`(-8) ** (1/3)` is NaN); the
protected `pow(x, y)` primitive lowers to `abs(x) ** y`. On Python floats `/` and `**` are
`dsl.primitives.scalars._div` / `_pow` (IEEE results, never an exception). The compiler fuses
`x + s*y` into `axpy`, `x + s*y*z` into `addcmul` and `x + y/z` into `addcdiv`, in the order of
floating-point operations of torch's own kernels (the form torch.optim.Adam computes its moments
in); fused instructions only ever run on tensors.
"""

from __future__ import annotations

import operator

from .kernels import Addc, Arithmetic, Axpy
from .registry import all_nonneg, operator_entry
from .scalars import _div, _pow


def _square_sign(is_nonneg, args) -> bool:
    """x * x, or a product of values >= 0."""
    return (args[0] == args[1] and not isinstance(args[0], float)) or all_nonneg(is_nonneg, args)


def _power_sign(is_nonneg, args) -> bool:
    """x ** 2, or a power of values >= 0 (both: (-0.0) ** -1 is -inf)."""
    return (isinstance(args[1], float) and args[1] == 2.0) or all_nonneg(is_nonneg, args)


@operator_entry("add", "x y", "x + y", kernel=Arithmetic("add"), scalar=operator.add, sign=all_nonneg,
                commutative=True, weight=3.0)
def _add(x, y, bd=0):
    return x + y


@operator_entry("sub", "x y", "x - y", kernel=Arithmetic("sub"), scalar=operator.sub, weight=2.0)
def _sub(x, y, bd=0):
    return x - y


@operator_entry("mul", "x y", "x * y", kernel=Arithmetic("mul"), scalar=operator.mul, sign=_square_sign,
                commutative=True, weight=3.0)
def _mul(x, y, bd=0):
    return x * y


@operator_entry("div", "x y", "x / y", kernel=Arithmetic("div"), scalar=_div, sign=all_nonneg, weight=2.0)
def _true_div(x, y, bd=0):
    return x / y


@operator_entry("pow", "x y", "x ** y (plain)", kernel=Arithmetic("pow"), scalar=_pow, sign=_power_sign, weight=0.5)
def _power(x, y, bd=0):
    return x ** y


@operator_entry("axpy", "x y s", "x + s * y", kernel=Axpy(), scalar=None)
def _axpy(x, y, s, bd=0):
    return x + s * y


@operator_entry("addcmul", "x y z s", "x + s * y * z", kernel=Addc("addcmul"), scalar=None)
def _addcmul(x, y, z, s, bd=0):
    return x + s * y * z


@operator_entry("addcdiv", "x y z s", "x + s * y / z", kernel=Addc("addcdiv"), scalar=None)
def _addcdiv(x, y, z, s, bd=0):
    return x + s * y / z
