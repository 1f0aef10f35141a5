"""evaluators.stats against scipy (the reference, test-only) and hand-computed profiles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as ss

from evaluators import stats

RNG = np.random.default_rng(20240601)
SAMPLES = [  # (a, b): small and larger, equal and unequal sizes and spreads
    ([0.103, 0.098, 0.110], [0.084, 0.089, 0.081]),
    ([1.0, 2.0, 3.0, 4.0], [2.5, 2.7, 2.9]),
    (list(RNG.normal(0.0, 1.0, 30)), list(RNG.normal(0.5, 2.0, 25))),
    (list(RNG.normal(3.0, 0.1, 5)), list(RNG.normal(3.0, 0.3, 12))),
]


@pytest.mark.parametrize("values", [[0.3], [1.0, 2.0], [0.1, 0.5, 0.2, 0.9], list(RNG.random(17))])
def test_summarize_matches_numpy_and_scipy(values):
    s = stats.summarize(values)
    assert s.n == len(values)
    assert s.mean == pytest.approx(np.mean(values), rel=1e-12)
    if len(values) > 1:
        assert s.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert s.sem == pytest.approx(ss.sem(values), rel=1e-12)
    else:
        assert s.std == 0.0


def test_summarize_empty_and_non_finite():
    s = stats.summarize([])
    assert s.n == 0 and math.isnan(s.mean) and math.isnan(s.std)
    s = stats.summarize([1.0, math.inf])
    assert s.n == 2 and s.mean == math.inf and math.isnan(s.std)


@pytest.mark.parametrize("df", [1.0, 2.3, 4.0, 10.7, 100.0, 1e4])
@pytest.mark.parametrize("t", [0.0, 0.01, 0.5, 1.3, 2.5, 7.0, 40.0, -3.0])
def test_t_tail_matches_scipy(t, df):
    expected = 2 * ss.t.sf(abs(t), df)
    assert stats.t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("a", "b", "x"), [(0.5, 0.5, 0.3), (2.0, 3.0, 0.9), (10.0, 0.5, 0.99),
                                           (0.1, 7.0, 1e-4), (30.0, 30.0, 0.5)])
def test_betainc_matches_scipy(a, b, x):
    from scipy.special import betainc

    assert stats.betainc(a, b, x) == pytest.approx(betainc(a, b, x), rel=1e-10)


@pytest.mark.parametrize(("a", "b"), SAMPLES)
def test_welch_matches_scipy(a, b):
    ours = stats.welch_t_test(a, b)
    ref = ss.ttest_ind(a, b, equal_var=False)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.df == pytest.approx(ref.df, rel=1e-12)


def test_welch_edge_cases():
    assert math.isnan(stats.welch_t_test([1.0], [1.0, 2.0]).p_value)  # n < 2
    assert math.isnan(stats.welch_t_test([1.0, math.nan], [1.0, 2.0]).p_value)
    assert stats.welch_t_test([1.0, 1.0], [1.0, 1.0]).p_value == 1.0  # constant and equal
    assert stats.welch_t_test([1.0, 1.0], [2.0, 2.0]).p_value == 0.0  # constant and different


@pytest.mark.parametrize(("a", "b"), SAMPLES[2:])
def test_bootstrap_p_agrees_with_welch_on_moderate_samples(a, b):
    # the studentized bootstrap approximates the same null distribution as Welch's test
    p = stats.bootstrap_p_value(a, b, n_resamples=20_000, seed=1)
    assert p == pytest.approx(ss.ttest_ind(a, b, equal_var=False).pvalue, abs=0.03)


def test_bootstrap_p_limits_and_determinism():
    a, b = [0.10, 0.11, 0.12], [0.20, 0.22, 0.19]
    assert stats.bootstrap_p_value(a, a) == 1.0
    p = stats.bootstrap_p_value(a, b, n_resamples=5000, seed=3)
    assert p == stats.bootstrap_p_value(a, b, n_resamples=5000, seed=3)
    assert 1 / 5001 <= p < 0.1
    assert math.isnan(stats.bootstrap_p_value([1.0], b))


@pytest.mark.parametrize("values", [SAMPLES[2][0], SAMPLES[3][1]])
def test_bootstrap_ci_matches_scipy_percentile(values):
    lo, hi = stats.bootstrap_ci(values, n_resamples=20_000, seed=0)
    ref = ss.bootstrap((np.asarray(values),), np.mean, method="percentile", n_resamples=20_000,
                       random_state=0).confidence_interval
    width = ref.high - ref.low
    assert lo == pytest.approx(ref.low, abs=0.05 * width)
    assert hi == pytest.approx(ref.high, abs=0.05 * width)
    assert lo < np.mean(values) < hi


def test_time_to_target():
    curve = [(0, 2.0), (10, 1.0), (20, math.nan), (30, 0.4), (40, 0.3)]
    assert stats.time_to_target(curve, 0.5) == 30
    assert stats.time_to_target(curve, 2.0) == 0
    assert stats.time_to_target(curve, 0.1) == math.inf


def test_performance_ratios_profile_and_score_by_hand():
    times = {"a": {"p1": 100, "p2": 300, "p3": None},
             "b": {"p1": 200, "p2": 100, "p3": 50},
             "c": {"p1": 500, "p2": 150, "p3": math.inf}}
    r = stats.performance_ratios(times, r_max=4)
    assert r["a"] == {"p1": 1.0, "p2": 3.0, "p3": math.inf}
    assert r["b"] == {"p1": 2.0, "p2": 1.0, "p3": 1.0}
    assert r["c"] == {"p1": math.inf, "p2": 1.5, "p3": math.inf}  # 5.0 > r_max counts as unsolved
    rho = stats.performance_profile(r, [1.0, 1.5, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(rho["a"], [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(rho["b"], [2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(rho["c"], [0, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    score = stats.profile_score(r, r_max=4)
    assert score["a"] == pytest.approx((1 + 1 / 3) / 3)
    assert score["b"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert score["c"] == pytest.approx((2.5 / 3) / 3)


def test_profile_score_equals_numerical_integral_of_profile():
    r = stats.performance_ratios({s: {f"p{i}": float(RNG.integers(1, 50)) for i in range(8)}
                                  for s in "xyz"})
    taus = np.linspace(1, stats.R_MAX, 300_001)
    rho = stats.performance_profile(r, taus)
    for s, score in stats.profile_score(r).items():
        assert score == pytest.approx(np.trapezoid(rho[s], taus) / (stats.R_MAX - 1), abs=1e-4)


def test_unsolved_problem_is_inf_for_everyone():
    r = stats.performance_ratios({"a": {"p": None}, "b": {"p": math.nan}})
    assert r == {"a": {"p": math.inf}, "b": {"p": math.inf}}
    assert stats.profile_score(r) == {"a": 0.0, "b": 0.0}


# --- power analysis: Welch's minimum detectable effect ---------------------------------------

def _scipy_welch_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Reference: E_B[P(|nct(2k, ncp)| > t_{1-alpha/2}(df_W(B)))], B ~ Beta(k/2, k/2), by quad."""
    from scipy import integrate

    k, ncp = n - 1, effect / math.sqrt(2.0 / n)

    def conditional(b: float) -> float:
        c = ss.t.ppf(1 - alpha / 2, k / (b * b + (1 - b) ** 2))
        lower = np.nan_to_num(ss.nct.cdf(-c, 2 * k, ncp))  # ~0; scipy returns nan far out
        return ss.beta.pdf(b, k / 2, k / 2) * (ss.nct.sf(c, 2 * k, ncp) + lower)

    return 2.0 * integrate.quad(conditional, 0.0, 0.5, limit=200, epsabs=1e-13)[0]


@pytest.mark.parametrize("q, df", [(0.975, 4.0), (0.975, 2.7), (0.8, 8.0), (0.1, 3.0), (0.5, 5.0),
                                   (0.999, 30.0)])
def test_t_quantile_matches_scipy(q, df):
    assert stats.t_quantile(q, df) == pytest.approx(ss.t.ppf(q, df), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("effect", [0.5, 2.0, 4.0])
def test_welch_power_matches_scipy_integral(n, effect):
    assert stats.welch_power(effect, n) == pytest.approx(_scipy_welch_power(effect, n), abs=2e-6)


@pytest.mark.parametrize("n", [3, 5])
def test_mde_is_the_effect_with_the_requested_power(n):
    mde = stats.minimum_detectable_effect(2.0, n)
    assert _scipy_welch_power(mde / 2.0, n) == pytest.approx(0.8, abs=1e-5)
    # and by simulation of the test the project runs (scipy's Welch test, 40,000 experiments)
    rng = np.random.default_rng(7)
    a = rng.normal(0.0, 2.0, (40_000, n))
    b = rng.normal(mde, 2.0, (40_000, n))
    power = (ss.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05).mean()
    assert power == pytest.approx(0.8, abs=0.012)  # 6 standard errors; Student df gives 0.70


def test_mde_exceeds_the_student_planning_formula():
    # Student's df = 2(n - 1) overstates Welch's power: at n = 3 its effect is ~13% smaller
    for n in (3, 5):
        df = 2 * (n - 1)
        student = (ss.t.ppf(0.975, df) + ss.t.ppf(0.8, df)) * math.sqrt(2 / n)
        assert stats.minimum_detectable_effect(1.0, n) > student
    assert stats.minimum_detectable_effect(1.0, 3) == pytest.approx(3.5074, abs=1e-4)


def test_mde_scales_with_std_and_shrinks_with_seeds_and_power():
    one = stats.minimum_detectable_effect(1.0, 4)
    assert stats.minimum_detectable_effect(0.25, 4) == pytest.approx(0.25 * one, rel=1e-12)
    mdes = [stats.minimum_detectable_effect(1.0, n) for n in (2, 3, 4, 5, 8, 20)]
    assert all(a > b for a, b in zip(mdes, mdes[1:]))
    assert stats.minimum_detectable_effect(1.0, 4, power=0.5) < one
    assert stats.minimum_detectable_effect(1.0, 4, alpha=0.01) > one


def test_mde_edge_cases():
    assert stats.minimum_detectable_effect(0.0, 3) == 0.0
    for std, n in ((1.0, 1), (math.nan, 3), (math.inf, 3), (-1.0, 3)):
        assert math.isnan(stats.minimum_detectable_effect(std, n))
    assert math.isnan(stats.minimum_detectable_effect(1.0, 3, power=0.01))


def test_seed_noise_reports_relative_figures():
    values = [0.50, 0.52, 0.48, 0.51, 0.49]
    noise = stats.seed_noise(values)
    assert noise.n == 5 and noise.mean == pytest.approx(0.5)
    assert noise.rel_std == pytest.approx(np.std(values, ddof=1) / 0.5, rel=1e-12)
    assert noise.mde == pytest.approx(stats.minimum_detectable_effect(noise.std, 5), rel=1e-12)
    assert noise.rel_mde == pytest.approx(noise.mde / 0.5, rel=1e-12)
    assert noise.to_dict()["std_over_mean"] == noise.rel_std
    assert math.isnan(stats.seed_noise([0.5]).rel_mde)
    assert math.isnan(stats.seed_noise([0.5, math.inf]).rel_std)


@pytest.mark.parametrize("seed", range(4))
def test_mann_whitney_matches_scipy_exact_without_ties(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=3 + seed), rng.normal(size=5) + 0.7
    expected = ss.mannwhitneyu(a, b, alternative="less", method="exact").pvalue
    assert stats.mann_whitney_less(a, b) == pytest.approx(expected, rel=1e-12)


def test_mann_whitney_with_ties_and_failures_is_the_exact_permutation_p():
    a, b = [0.865, 1.751, 1e6, 0.9, 1.1], [1.314, 1.314, 1.314, 1e6, 1.2]

    def u(x, y, axis):    # pairs with x < y, ties half: the statistic mann_whitney_less orders by
        x, y = np.expand_dims(x, -1), np.expand_dims(y, -2)
        return ((x < y) + 0.5 * (x == y)).sum(axis=(-1, -2))

    expected = ss.permutation_test((a, b), u, permutation_type="independent",
                                   alternative="greater", vectorized=True).pvalue
    assert stats.mann_whitney_less(a, b) == pytest.approx(expected, abs=1e-12)
    assert stats.mann_whitney_less([1, 2, 3], [4, 5, 6]) == pytest.approx(1 / 20)   # the smallest p of 3 vs 3
    assert stats.mann_whitney_less([4, 5, 6], [1, 2, 3]) == 1.0
    assert math.isnan(stats.mann_whitney_less([], [1.0]))
