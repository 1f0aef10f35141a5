"""How well a cheap fitness predicts the expensive one: rank correlations and top-k recovery.

A funnel stage is useful in proportion to how well the order it gives a panel of rules agrees
with the order the held-out suite gives them (the *fidelity* of a multi-fidelity method: Li et
al. 2018, "Hyperband"; Klein et al. 2017). ``bench/proxy_fidelity.py`` measures it for every
stage with these statistics:

- **Spearman's rho**: Pearson correlation of the ranks, ties given their average rank;
- **Kendall's tau-b**: (concordant - discordant) pairs over sqrt of the untied pairs on each
  side (Kendall 1945), which treats ties (e.g. several failed rules) as the standard does;
- **top-k recovery**: the share of the held-out top k that the stage's top k also holds.

Numbers only (no scipy at run time); ``tests/search/test_fidelity.py`` checks them against scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    sxy = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = math.fsum((a - mx) ** 2 for a in x)
    syy = math.fsum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (nan with fewer than 3 points or a constant side)."""
    if len(x) != len(y):
        raise ValueError("spearman needs two sequences of the same length")
    return _pearson(ranks(x), ranks(y)) if len(x) >= 3 else math.nan


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (nan with fewer than 3 points or a constant side)."""
    if len(x) != len(y):
        raise ValueError("kendall needs two sequences of the same length")
    n = len(x)
    if n < 3:
        return math.nan
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom > 0 else math.nan


def top_k_recovery(predicted: Sequence[float], truth: Sequence[float], k: int = 5) -> float:
    """Share of the ``k`` lowest ``truth`` values whose items are also among the ``k`` lowest
    ``predicted`` values (ties broken by position)."""
    k = min(k, len(truth))
    if k == 0:
        return math.nan
    best_true = set(sorted(range(len(truth)), key=lambda i: (truth[i], i))[:k])
    best_pred = set(sorted(range(len(predicted)), key=lambda i: (predicted[i], i))[:k])
    return len(best_true & best_pred) / k
