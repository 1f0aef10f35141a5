"""Scalar arithmetic with IEEE results: the one implementation of `/` and `**` on Python floats.

A rule's scalars (bias corrections, `1 / (lr * sqrt(t))`, ...) are computed in Python floats, once
per parameter group and step, by the interpreter and by every exported optimizer alike (the
exporter copies these functions into the file). Python raises where IEEE 754 (and torch) give a
value: `x / 0` raises ZeroDivisionError, `0.0 ** -1` too, `10.0 ** 400` raises OverflowError and a
negative base with a fractional power returns a complex number. Here they are what torch.pow and
torch.div give on float64: ±inf (the sign of a zero divisor counts), inf for 0 ** -1 (-inf for
(-0.0) ** -1), ±inf on overflow, NaN for 0 / 0 and for (-8) ** (1/3). `+ - *` need nothing: on
floats Python already overflows to inf and never raises.
"""

from __future__ import annotations

import math


def _odd_integer(y):
    """Whether the float y is an odd integer (huge floats are even)."""
    return math.isfinite(y) and y % 2 == 1


def _div(a, b):
    """a / b of Python floats with IEEE results: x / ±0 is ±inf (signs multiply), 0 / 0 is NaN."""
    if b == 0:
        if a != a or a == 0:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _pow(a, b):
    """a ** b of Python floats with IEEE results (as torch.pow): 0 ** -1 is inf, overflow is ±inf,
    a negative base with a fractional power is NaN."""
    a, b = float(a), float(b)
    if a < 0 and math.isfinite(a) and math.isfinite(b) and b != int(b):
        return math.nan
    try:
        r = a ** b
    except ZeroDivisionError:      # a zero base, a negative power: inf, signed by -0.0 for odd powers
        return math.copysign(math.inf, a) if _odd_integer(b) else math.inf
    except OverflowError:          # too large: negative only for a negative base and an odd power
        return -math.inf if a < 0 and _odd_integer(b) else math.inf
    return r
