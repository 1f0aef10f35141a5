"""Per-seed scores of a rule, and the cached, gated, budgeted measuring that simplification and
ablation share.

A **scorer** is any ``score(program) -> list[float]``: one sample per evaluation seed, lower is
better, on a log scale. The default one (`ProtocolScorer`) runs the evaluation protocol of
``optforge evaluate`` (``evaluators.evaluate``: the lr tuned with the same budget as AdamW's,
then fresh seeds) against AdamW on a suite, and gives for each evaluation seed ``s``

    sample_s = mean over tasks t of ln(loss(rule, t, s) / loss(AdamW, t, s)),

the log fitness of that seed (seed-paired: both rules start from the seed's weights and see its
batches, so the shared part of the seed noise cancels). A diverged or non-finite run makes its
sample ``inf``. AdamW's runs are trained once per scorer and reused for every rule it scores.
The search can plug in its own selection stage instead; anything with that signature works.

`Measurer` wraps a scorer for the searches over variants of a rule (``search.simplify``,
``search.ablation``): it runs the validity gate first (``dsl.fingerprint.check``: an invalid
variant costs nothing), caches samples by structural hash and hparams and then by functional
fingerprint (a variant that computes what a measured one computes gets its samples without
training, as the search's dedup does), and counts the scorer calls against an optional budget.
`compare` is the significance rule both apply: a two-sided Welch test over the per-seed samples
(Welch 1947; ``evaluators.stats``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dsl.ir import Program
from evaluators import stats

ALPHA = 0.05


def per_seed_log_fitness(report, label: str, reference: str = "adamw") -> list[float]:
    """The samples above from an evaluation ``Report`` (``label``'s runs against
    ``reference``'s on the same evaluation seeds)."""
    from evaluators.evaluate import run_loss

    samples = []
    for seed in report.settings.eval_seeds:
        logs = []
        for task in report.tasks:
            mine = next(r for r in task.rules[label].runs if r.seed == seed)
            theirs = next(r for r in task.rules[reference].runs if r.seed == seed)
            a, b = run_loss(mine), run_loss(theirs)
            if not (math.isfinite(a) and a > 0):
                logs.append(math.inf)
            elif math.isfinite(b) and b > 0:
                logs.append(math.log(a / b))
        samples.append(math.fsum(logs) / len(logs) if logs else math.inf)
    return samples


@dataclass
class ProtocolScorer:
    """``score(program)`` by ``evaluators.evaluate`` against AdamW on ``settings``' tasks.

    ``reports`` keeps each scored rule's evaluation (by structural hash and hparams), for tables;
    ``progress(n)`` is called after every n training runs (cache hits included)."""

    settings: object  # evaluators.evaluate.Settings
    progress: Callable[[int], None] | None = None
    runner: object = None  # a fake trainer in tests (evaluate's ``runner``)
    reports: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    def __call__(self, program: Program) -> list[float]:
        from dsl.loader import load_rule
        from evaluators.evaluate import evaluate

        report = evaluate(program, {"adamw": load_rule("builtin:adamw")}, self.settings,
                          runner=self.runner, progress=self.progress, cache=self._cache,
                          candidate_source="variant")
        self.reports[key_of(program)] = report
        return per_seed_log_fitness(report, report.candidate.label)

    @property
    def runs_per_rule(self) -> int:
        """Progress units one scored rule adds (its runs and AdamW's cached ones)."""
        return self.settings.total_runs(2)

    def report(self, key: tuple):
        """The evaluation behind the samples of the program with `key_of` ``key``."""
        return self.reports.get(key)


def protocol_scorer(suite: str = "proxy", tasks: Sequence[str] | None = None, preset: str = "cpu",
                    seeds: int = 3, budget: int | None = None, tuner: str = "grid",
                    device: str = "cpu", progress: Callable[[int], None] | None = None,
                    runner=None) -> ProtocolScorer:
    """The default scorer: the protocol on ``tasks`` of ``suite`` (all of them by default) at
    ``preset``, tuned lr (``budget`` trials), ``seeds`` fresh seeds. Bad names are ValueErrors."""
    from evaluators.evaluate import Settings, TaskPlan
    from evaluators.suites import load_suite
    from evaluators.tuning import DEFAULT_BUDGET

    chosen = load_suite(suite)
    plans = tuple(TaskPlan(n, steps) for n, steps in chosen.select(tasks, preset))
    settings = Settings(suite=chosen.name, suite_source=chosen.source, tasks=plans, seeds=seeds,
                        budget=budget or DEFAULT_BUDGET, tuner=tuner, preset=preset,
                        device=device)
    return ProtocolScorer(settings, progress=progress, runner=runner)


def key_of(program: Program) -> tuple:
    """What makes two programs score the same for sure: structure and hparam values."""
    return (program.structural_hash, tuple(program.hparam_items))


@dataclass(frozen=True)
class Measurement:
    """A rule's samples, or why there are none.

    ``status``: ``ok``; ``failed`` (a run diverged or ended non-finite: some sample is inf);
    ``invalid`` (the validity gate refused it, ``reason`` says why); ``unmeasured`` (the call
    budget was spent). ``reused``: "" when the scorer ran, else "structure" or "function" (the
    samples of an equal or functionally equal rule measured before)."""

    samples: tuple[float, ...]
    status: str
    reason: str = ""
    reused: str = ""
    key: tuple = field(default=(), compare=False)  # `key_of` the program the scorer ran

    @property
    def mean(self) -> float:
        return math.fsum(self.samples) / len(self.samples) if self.samples else math.nan

    def to_dict(self) -> dict:
        return {"samples": list(self.samples), "status": self.status, "reason": self.reason,
                "reused": self.reused, "mean": self.mean}


class Measurer:
    """Gate, cache and budget around a scorer (see the module docstring)."""

    def __init__(self, score: Callable[[Program], Sequence[float]], max_calls: int | None = None):
        self.score = score
        self.max_calls = max_calls
        self.calls = 0
        self._by_key: dict[tuple, Measurement] = {}
        self._by_fingerprint: dict[str, Measurement] = {}

    @property
    def spent(self) -> bool:
        return self.max_calls is not None and self.calls >= self.max_calls

    def measure(self, program: Program) -> Measurement:
        from dsl.errors import RuleError
        from dsl.fingerprint import check
        from dsl.parser import validate

        try:
            validate(program)  # an edited program may have lost its `update`
        except RuleError as exc:
            return Measurement((), "invalid", str(exc))
        key = key_of(program)
        if key in self._by_key:
            return _reused(self._by_key[key], "structure")
        gate = check(program)
        if not gate.ok:
            found = Measurement((), "invalid", gate.reason)
            self._by_key[key] = found
            return found
        if gate.fingerprint in self._by_fingerprint:
            found = _reused(self._by_fingerprint[gate.fingerprint], "function")
            self._by_key[key] = found
            return found
        if self.spent:
            return Measurement((), "unmeasured", f"the budget of {self.max_calls} scorer calls is spent")
        self.calls += 1
        samples = tuple(float(x) for x in self.score(program))
        status = "ok" if samples and all(math.isfinite(x) for x in samples) else "failed"
        found = Measurement(samples, status, "" if status == "ok" else "diverged or non-finite",
                            key=key)
        self._by_key[key] = found
        self._by_fingerprint[gate.fingerprint] = found
        return found


def _reused(m: Measurement, how: str) -> Measurement:
    return Measurement(m.samples, m.status, m.reason, m.reused or how, m.key)


@dataclass(frozen=True)
class Comparison:
    """``candidate`` against ``reference``: the mean difference of the samples (the effect in
    ln fitness: > 0 is worse), its standard error, and Welch's two-sided p."""

    effect: float
    se: float
    p_value: float

    def worse(self, alpha: float = ALPHA) -> bool:
        """Significantly worse: p < alpha and a higher mean (an infinite effect always is)."""
        return self.effect == math.inf or (self.effect > 0 and self.p_value < alpha)

    def better(self, alpha: float = ALPHA) -> bool:
        return self.effect < 0 and self.p_value < alpha

    def to_dict(self) -> dict:
        return {"effect": self.effect, "se": self.se, "p_value": self.p_value}


def compare(candidate: Measurement, reference: Measurement) -> Comparison:
    """The comparison of two measurements (a failed or invalid candidate: effect inf, p 0)."""
    if candidate.status != "ok":
        return Comparison(math.inf, math.nan, 0.0)
    a, b = candidate.samples, reference.samples
    if a == b:  # the same runs (an equal or functionally equal rule): no difference at all
        return Comparison(0.0, 0.0, 1.0)
    effect = candidate.mean - reference.mean
    test = stats.welch_t_test(a, b)
    spread = [stats.summarize(x) for x in (a, b)]
    se = math.sqrt(sum(s.sem ** 2 for s in spread)) if all(len(x) > 1 for x in (a, b)) else math.nan
    return Comparison(effect, se, test.p_value)
