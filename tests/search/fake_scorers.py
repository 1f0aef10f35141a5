"""Scorers with a known answer for simplification and ablation tests (no training).

`function_scorer(text)`: per-seed samples that are the same small noise for every rule that
computes what ``text`` computes (the same trajectory on the fixed problem of
``dsl.fingerprint``), and far higher for any rule that computes something else, so a correct
simplification must return a rule with exactly that function. `indifferent_scorer`: the same
samples for every rule (every valid edit is "not worse").
"""

from __future__ import annotations

import math

import numpy as np

from dsl.fingerprint import trajectory
from dsl.parser import parse

NOISE = (0.011, -0.007, 0.004, -0.013)


def function_scorer(text: str, calls: list | None = None):
    reference = trajectory(parse(text))

    def score(program) -> list[float]:
        if calls is not None:
            calls.append(program)
        path = trajectory(program)
        distance = float(np.abs(path - reference).max()) if np.isfinite(path).all() else math.inf
        return [math.log1p(1e6 * distance) + n for n in NOISE]

    return score


def indifferent_scorer(program) -> list[float]:
    return list(NOISE)
