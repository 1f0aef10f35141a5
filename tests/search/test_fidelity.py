"""Rank correlations and top-k recovery (search.fidelity) against scipy, ties included."""

import math
import random

import pytest
from scipy import stats

from search.fidelity import kendall, ranks, spearman, top_k_recovery


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy_with_and_without_ties(seed):
    rng = random.Random(seed)
    x = [rng.random() for _ in range(20)]
    y = [a + rng.gauss(0, 0.3) for a in x]
    y[3] = y[4] = y[5] = 1e6  # three failed rules tie at the worst fitness
    x[7] = x[8]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_edge_cases():
    assert ranks([3.0, 1.0, 1.0, 2.0]) == [4.0, 1.5, 1.5, 3.0]
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0) and kendall([1, 2, 3], [1, 2, 3]) == 1.0
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(kendall([1, 2], [1, 2]))
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_top_k_recovery_counts_the_shared_best():
    truth = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert top_k_recovery(truth, truth, 3) == 1.0
    assert top_k_recovery([0.6, 0.5, 0.4, 0.3, 0.2, 0.1], truth, 3) == 0.0
    assert top_k_recovery([0.1, 0.9, 0.3, 0.4, 0.2, 0.6], truth, 3) == pytest.approx(2 / 3)
