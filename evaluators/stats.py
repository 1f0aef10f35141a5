"""Statistics behind every comparison optforge prints: summaries, tests, performance profiles.

A claim that rule A beats rule B carries the number of seeds, the mean and spread of each, and a
test. This module supplies those pieces with numpy only
(scipy is a test-time reference, never a runtime dependency):

- :func:`summarize` -- n, mean, sample standard deviation (ddof=1), standard error.
- :func:`welch_t_test` -- two-sided Welch t-test for unequal variances (Welch 1947),
  with the Student-t tail from the regularised incomplete beta function.
- :func:`bootstrap_p_value` -- two-sided studentized bootstrap test of equal means without
  assuming equal variances (Efron & Tibshirani 1993, §16.4, Algorithm 16.2: both samples shifted
  to the pooled mean, resampled, and the observed Welch t compared with the resampled ones;
  p = (b + 1) / (B + 1), Phipson & Smyth 2010).
- :func:`bootstrap_ci` -- percentile bootstrap confidence interval of a statistic.
- :func:`mann_whitney_less` -- one-sided exact Mann-Whitney U (Wilcoxon rank-sum) test that a's
  values tend to be smaller than b's (Mann & Whitney 1947), by enumerating every split of the
  pooled sample, ties counted half: for samples with failures (a diverged rule's fitness is a
  sentinel, which no mean or t-test should average).
- :func:`minimum_detectable_effect` -- the smallest true difference of means that a two-sided
  Welch test with n seeds per arm detects with a given power (exact: noncentral t integrated
  over Welch's random degrees of freedom); :func:`seed_noise` puts it beside a sample's std.
- :func:`performance_ratios`, :func:`performance_profile`, :func:`profile_score` --
  performance profiles (Dolan & Moré 2002, "Benchmarking optimization software with performance
  profiles") as used by AlgoPerf (Dahl et al. 2023, "Benchmarking Neural Network Training
  Algorithms"): on each problem, a solver's time to reach the target divided by the fastest
  solver's time; ratios above ``r_max`` (4 in AlgoPerf) and targets never reached count as
  infinite; the profile rho_s(tau) is the fraction of problems with ratio <= tau, and the score is
  its integral over [1, r_max] divided by (r_max - 1), 1 for a solver that is fastest everywhere.

Example::

    >>> welch_t_test([0.10, 0.11, 0.12], [0.20, 0.22, 0.19]).p_value < 0.05
    True
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA_DEFAULT = 0.05  # significance level of the detectable-effect figure
DEFAULT_POWER = 0.8  # probability of detecting that effect
R_MAX = 4.0  # AlgoPerf's largest performance ratio that still earns credit


@dataclass(frozen=True)
class Summary:
    """n, mean, sample standard deviation (ddof=1; 0 for n=1) and standard error of a sample."""

    n: int
    mean: float
    std: float
    sem: float


@dataclass(frozen=True)
class TestResult:
    """A two-sided test of equal means: statistic, degrees of freedom (nan if none), p-value."""

    statistic: float
    df: float
    p_value: float


def summarize(values: Sequence[float]) -> Summary:
    """Summary of a sample; empty: n=0 and nan elsewhere; a non-finite value: nan std and sem."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan)
    with np.errstate(invalid="ignore"):
        mean = float(x.mean())
    if not np.isfinite(x).all():
        return Summary(n, mean, math.nan, math.nan)
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    return Summary(n, mean, std, std / math.sqrt(n))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta (modified Lentz, Numerical Recipes §6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0
    return float(min(1.0, betainc(float(df) / 2.0, 0.5, float(df / (df + t * t)))))


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided Welch t-test of mean(a) == mean(b); nan p-value when it is undefined.

    t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b), with Welch-Satterthwaite degrees of
    freedom. Each sample needs n >= 2 and finite values; two constant samples give p = 1 if their
    means are equal and p = 0 otherwise.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return TestResult(math.nan, math.nan, math.nan)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if va + vb == 0.0:
        return TestResult(0.0 if diff == 0 else math.copysign(math.inf, diff), math.nan,
                          1.0 if diff == 0 else 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return TestResult(float(t), float(df), t_two_sided_p(t, df))


def bootstrap_p_value(a: Sequence[float], b: Sequence[float], n_resamples: int = 10_000,
                      seed: int = 0) -> float:
    """Two-sided bootstrap p-value for equal means (nan unless both samples have n >= 2, finite)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan
    observed = abs(_welch_t(x, y))
    pooled = np.concatenate([x, y]).mean()
    x0, y0 = x - x.mean() + pooled, y - y.mean() + pooled
    rng = np.random.default_rng(seed)
    xs = x0[rng.integers(0, x.size, size=(n_resamples, x.size))]
    ys = y0[rng.integers(0, y.size, size=(n_resamples, y.size))]
    t = np.abs(_welch_t(xs, ys))
    extreme = t >= observed * (1 - 1e-12)
    return float((extreme.sum() + 1) / (n_resamples + 1))


def mann_whitney_less(a: Sequence[float], b: Sequence[float]) -> float:
    """One-sided exact p-value of the Mann-Whitney U test that a tends to be smaller than b.

    U counts the pairs (x in a, y in b) with x < y, ties as 1/2; p is the fraction of the
    C(n_a + n_b, n_a) equally likely splits of the pooled values (under the null of exchangeable
    samples) whose U is at least the observed one. Exact with ties; nan for an empty sample or
    more than 2e6 splits (use a t-test there).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0 or math.comb(x.size + y.size, x.size) > 2_000_000:
        return math.nan
    pooled = np.concatenate([x, y])
    # pairwise score 1 (i < j), 1/2 (tie), 0: U of a split is the sum over pairs (i in a, j in b)
    less = (pooled[:, None] < pooled[None, :]) + 0.5 * (pooled[:, None] == pooled[None, :])

    def u(idx: tuple[int, ...]) -> float:
        rest = [k for k in range(pooled.size) if k not in idx]
        return float(less[np.ix_(idx, rest)].sum())

    observed = u(tuple(range(x.size)))
    splits = [u(idx) for idx in itertools.combinations(range(pooled.size), x.size)]
    return float(np.mean(np.asarray(splits) >= observed - 1e-9))


def _welch_t(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Welch's t along the last axis: 0 for equal means (to rounding), +-inf for zero variance."""
    mx, my = x.mean(axis=-1), y.mean(axis=-1)
    se = np.sqrt(x.var(axis=-1, ddof=1) / x.shape[-1] + y.var(axis=-1, ddof=1) / y.shape[-1])
    diff = mx - my
    equal = np.abs(diff) <= 1e-12 * (np.abs(mx) + np.abs(my))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(equal, 0.0, diff / se)


def bootstrap_ci(values: Sequence[float],
                 statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                 confidence: float = 0.95, n_resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (default: the mean) over ``values``.

    ``statistic`` maps an array of shape (n_resamples, n) to shape (n_resamples,).
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or not np.isfinite(x).all():
        return (math.nan, math.nan)
    stat = statistic or (lambda s: s.mean(axis=-1))
    rng = np.random.default_rng(seed)
    dist = stat(x[rng.integers(0, x.size, size=(n_resamples, x.size))])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(dist, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with ``df`` degrees of freedom (0 < q < 1), by bisection on
    :func:`t_two_sided_p` (monotone in |t|), to ~1e-12 relative."""
    if not 0.0 < q < 1.0 or not df > 0:
        return math.nan
    if q == 0.5:
        return 0.0
    tail = 2.0 * min(q, 1.0 - q)  # two-sided p of the quantile's |t|
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > tail:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_p(mid, df) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return math.copysign(0.5 * (lo + hi), q - 0.5)


def _chi_nodes(df: float, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
    """Nodes s = sqrt(V / df) and weights for E[f(s)] with V ~ chi^2(df).

    V / 2 ~ Gamma(a = df / 2); in u = log(V / 2) the density exp(a u - e^u) / Gamma(a) is smooth
    and decays exponentially on both sides, so the trapezoid rule on a wide grid is accurate to
    rounding (1e-13 against scipy's noncentral t at 101 points); weights are renormalised.
    """
    a = df / 2.0
    u = np.linspace(math.log(a) - max(40.0 / a, 10.0 / math.sqrt(a)), math.log(a) + 4.0, points)
    w = np.exp(a * u - np.exp(u) - math.lgamma(a))
    w[[0, -1]] *= 0.5
    return np.sqrt(2.0 * np.exp(u) / df), w / w.sum()


def _welch_nodes(n: int, points: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Welch's degrees of freedom at nodes of B = V_1 / (V_1 + V_2) ~ Beta(k/2, k/2), k = n - 1,
    and their weights (for two arms of n seeds with equal spread).

    df_W = k / (B^2 + (1 - B)^2) runs from k to 2k. With B = sin^2(theta) the density in theta is
    proportional to sin(2 theta)^(n - 2), smooth and symmetric about pi/4, so Gauss-Legendre
    nodes on [0, pi/4] integrate it to ~1e-12.
    """
    x, w = np.polynomial.legendre.leggauss(points)
    theta = (x + 1.0) * math.pi / 8.0
    b = np.sin(theta) ** 2
    w = w * np.sin(2.0 * theta) ** (n - 2)
    return (n - 1) / (b**2 + (1.0 - b) ** 2), w / w.sum()


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return 0.5 * _ERFC(-z / math.sqrt(2.0)).astype(float)


def welch_power(effect: float, n: int, alpha: float = ALPHA_DEFAULT) -> float:
    """Power of the two-sided Welch test at level ``alpha`` with ``n`` seeds per arm, both arms of
    spread 1 (so ``effect`` is the true difference of means in units of the seed std).

    With sample variances s_i^2 = V_i / k (V_i ~ chi^2(k), k = n - 1) the statistic is
    Z' / sqrt(R / 2k) with Z' ~ N(ncp, 1), ncp = effect / sqrt(2 / n) and R = V_1 + V_2 ~
    chi^2(2k): noncentral t with 2k degrees of freedom, whatever B = V_1 / R is. B (independent of
    R) only sets the critical value t_{1 - alpha/2} at Welch's df_W(B). So the power is
    E_B E_R[Phi(ncp - c(B) S) + Phi(-ncp - c(B) S)], S = sqrt(R / 2k), integrated numerically.
    """
    if n < 2:
        return math.nan
    crit, weights = _welch_critical(int(n), float(alpha))
    return float(weights @ _conditional_power(effect / math.sqrt(2.0 / n), crit, 2.0 * (n - 1)))


@functools.lru_cache(maxsize=64)
def _welch_critical(n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Critical values t_{1 - alpha/2} at the nodes of Welch's df (:func:`_welch_nodes`), weights."""
    df_w, weights = _welch_nodes(n)
    return np.array([t_quantile(1.0 - alpha / 2.0, d) for d in df_w]), weights


def _conditional_power(ncp: float, crit: np.ndarray, df: float) -> np.ndarray:
    """P(|T'| > c) for noncentral t T'(df, ncp), at each critical value c of ``crit``."""
    s, ws = _chi_nodes(df)
    cs = np.outer(crit, s)
    return (_normal_cdf(ncp - cs) + _normal_cdf(-ncp - cs)) @ ws


@functools.lru_cache(maxsize=64)
def _mde_factor(n: int, alpha: float, power: float) -> float:
    """The detectable effect in units of the seed std: the root of welch_power(x, n) = power."""
    lo, hi = 0.0, 1.0
    while welch_power(hi, n, alpha) < power:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-9 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if welch_power(mid, n, alpha) < power else (lo, mid)
    return 0.5 * (lo + hi)


def minimum_detectable_effect(std: float, n: int, alpha: float = ALPHA_DEFAULT,
                              power: float = DEFAULT_POWER) -> float:
    """The smallest true difference of means that a two-sided Welch test with ``n`` seeds per arm
    detects at level ``alpha`` with probability ``power``, when both arms have seed std ``std``.

    Exact for Welch's test (:func:`welch_power`: noncentral t integrated over the distribution of
    Welch's degrees of freedom), not the Student planning formula with df = 2(n - 1) nor the
    quantile-sum approximation (t_{1-alpha/2} + t_power) std sqrt(2/n) (Cohen 1988, ch. 2): at
    n = 3 those give 3.07 and 3.04 std, where Welch's test has only ~70% power (its df can fall
    to n - 1); the exact figure is 3.51 std (n = 4: 2.51, n = 5: 2.08, n = 8: 1.52). It scales
    linearly with ``std``. nan for n < 2 or a non-finite std.

        >>> round(minimum_detectable_effect(1.0, 3), 2)  # in units of the seed std
        3.51
    """
    if n < 2 or not math.isfinite(std) or std < 0 or not 0.0 < alpha < 1.0 \
            or not alpha < power < 1.0:
        return math.nan
    return std * _mde_factor(int(n), float(alpha), float(power))


@dataclass(frozen=True)
class SeedNoise:
    """Seed-to-seed noise of one rule on one task, and what it lets a Welch test detect."""

    n: int
    mean: float
    std: float
    rel_std: float  # std / |mean|
    mde: float  # minimum_detectable_effect(std, n): same units as the values
    rel_mde: float  # mde / |mean|

    def to_dict(self) -> dict:
        return {"seeds": self.n, "mean": self.mean, "std": self.std,
                "std_over_mean": self.rel_std, "mde": self.mde, "mde_over_mean": self.rel_mde,
                "alpha": ALPHA_DEFAULT, "power": DEFAULT_POWER}


def seed_noise(values: Sequence[float]) -> SeedNoise:
    """:class:`SeedNoise` of a sample of final losses (one per seed), at ``ALPHA_DEFAULT`` and
    ``DEFAULT_POWER``; nan fields where the sample is too small or not finite."""
    s = summarize(values)
    mde = minimum_detectable_effect(s.std, s.n)
    scale = abs(s.mean) if math.isfinite(s.mean) and s.mean != 0 else math.nan
    return SeedNoise(s.n, s.mean, s.std, s.std / scale, mde, mde / scale)


def time_to_target(curve: Sequence[tuple[float, float]], target: float) -> float:
    """First x (step or seconds) at which the curve's loss is <= target; inf if never."""
    for x, loss in curve:
        if math.isfinite(loss) and loss <= target:
            return float(x)
    return math.inf


def performance_ratios(times: Mapping[str, Mapping[str, float | None]],
                       r_max: float = R_MAX) -> dict[str, dict[str, float]]:
    """Per solver and problem, time / fastest time; inf if unreached (None/inf/nan) or > r_max.

    ``times[solver][problem]`` is a time to reach the problem's target. Problems that no solver
    solved give inf for every solver. A time of 0 (target met at the start) counts as the
    smallest positive float so that ratios stay defined.
    """
    problems = sorted({p for per in times.values() for p in per})
    ratios: dict[str, dict[str, float]] = {s: {} for s in times}
    for p in problems:
        t = {s: _as_time(times[s].get(p)) for s in times}
        best = min(t.values(), default=math.inf)
        for s, ts in t.items():
            r = ts / best if math.isfinite(best) and math.isfinite(ts) else math.inf
            ratios[s][p] = r if r <= r_max else math.inf
    return ratios


def _as_time(value: float | None) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        return math.inf
    return max(float(value), np.finfo(float).tiny)


def performance_profile(ratios: Mapping[str, Mapping[str, float]],
                        taus: Sequence[float]) -> dict[str, np.ndarray]:
    """rho_s(tau): the fraction of problems on which solver s has ratio <= tau, at each tau."""
    tau = np.asarray(taus, dtype=float)
    out = {}
    for s, per in ratios.items():
        r = np.asarray(list(per.values()), dtype=float)
        out[s] = (r[None, :] <= tau[:, None]).mean(axis=1) if r.size else np.zeros_like(tau)
    return out


def profile_score(ratios: Mapping[str, Mapping[str, float]],
                  r_max: float = R_MAX) -> dict[str, float]:
    """AlgoPerf benchmark score: integral of rho_s over [1, r_max] / (r_max - 1), in [0, 1].

    rho_s is a step function, so the integral is exact: a problem solved with ratio r <= r_max
    contributes (r_max - r) / (r_max - 1) divided by the number of problems.
    """
    scores = {}
    for s, per in ratios.items():
        r = [v for v in per.values()]
        credit = sum((r_max - v) / (r_max - 1.0) for v in r if v <= r_max)
        scores[s] = credit / len(r) if r else 0.0
    return scores
