"""Fair tuning: exact budgets, grid widening at the edges, TPE, and equal budgets per rule."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from evaluators import tuning
from evaluators.tuning import GridTuner, TPETuner, make_tuner


def bowl(optimum: float):
    """A loss with its minimum at lr = optimum, quadratic in log10(lr)."""
    return lambda lrs: [(math.log10(lr) - math.log10(optimum)) ** 2 + 0.1 for lr in lrs]


def counting(objective):
    calls: list[list[float]] = []

    def wrapped(lrs):
        calls.append(list(lrs))
        return objective(lrs)

    return wrapped, calls


OBJECTIVES = {
    "interior": bowl(3e-3),
    "far_low": bowl(1e-6),
    "far_high": bowl(3.0),
    "all_nan": lambda lrs: [math.nan] * len(lrs),
    "diverge_above_1e-3": lambda lrs: [math.inf if lr > 1e-3 else 1.0 / (1 + lr) for lr in lrs],
}


@pytest.mark.parametrize("name", sorted(tuning.TUNERS))
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("budget", [1, 2, 3, 4, 6, 9])
def test_every_tuner_spends_exactly_the_budget(name, objective, budget):
    fn, calls = counting(OBJECTIVES[objective])
    result = make_tuner(name).tune(fn, budget)
    assert result.n_trials == budget == sum(len(c) for c in calls)
    assert result.budget == budget and result.tuner == name
    assert len({t.lr for t in result.trials}) == budget  # no trial wasted on a repeated lr
    finite = [t.loss for t in result.trials if math.isfinite(t.loss)]
    assert result.best_loss == (min(finite) if finite else math.inf)
    assert all(t.loss == math.inf for t in result.trials if t.lr and not math.isfinite(t.loss))


def test_grid_runs_its_initial_grid_as_one_batch():
    fn, calls = counting(bowl(3e-3))
    GridTuner().tune(fn, 6)
    assert len(calls[0]) == 5 and all(len(c) == 1 for c in calls[1:])
    ratios = [b / a for a, b in zip(calls[0], calls[0][1:], strict=False)]
    assert ratios == pytest.approx([math.sqrt(10)] * 4)


def test_grid_widens_down_when_the_best_is_at_the_low_edge():
    result = GridTuner().tune(bowl(1e-5), budget=9)
    initial = GridTuner().initial_grid(9)
    assert result.widened >= 2
    assert min(t.lr for t in result.trials) < min(initial) / 10
    assert result.best_lr == pytest.approx(1e-5, rel=0.5)


def test_grid_widens_up_when_the_best_is_at_the_high_edge():
    result = GridTuner().tune(bowl(1.0), budget=8)
    assert result.widened >= 2 and result.best_lr == pytest.approx(1.0, rel=0.5)
    assert not result.at_edge or result.best_lr >= max(GridTuner().initial_grid(8)) * 10


def test_grid_refines_instead_of_widening_when_the_best_is_interior():
    result = GridTuner().tune(bowl(2e-3), budget=8)
    initial = GridTuner().initial_grid(8)
    assert result.widened == 0 and not result.at_edge
    extra = [t.lr for t in result.trials[len(initial):]]
    assert all(min(initial) < lr < max(initial) for lr in extra)
    assert abs(math.log10(result.best_lr / 2e-3)) < 0.25 / 2  # finer than the grid's half-step


def test_grid_widens_down_when_every_run_fails():
    result = GridTuner().tune(OBJECTIVES["all_nan"], budget=6)
    assert result.widened == 1 and result.best_lr == min(t.lr for t in result.trials)
    assert result.best_loss == math.inf


def test_grid_stops_widening_at_its_bounds():
    tuner = GridTuner(center=1.0, factor=10.0, initial_points=3, lr_max=10.0)
    result = tuner.tune(bowl(1e4), budget=6)
    assert max(t.lr for t in result.trials) <= 10.0
    assert result.best_lr == 10.0 and result.at_edge


def test_edge_flag_tells_a_too_narrow_budget():
    result = GridTuner().tune(bowl(1e-7), budget=4)
    assert result.at_edge and result.best_lr == min(t.lr for t in result.trials)


def test_tpe_is_seeded_in_range_and_finds_the_basin():
    a = TPETuner(seed=3).tune(bowl(1e-3), 20)
    b = TPETuner(seed=3).tune(bowl(1e-3), 20)
    assert [t.lr for t in a.trials] == [t.lr for t in b.trials]
    assert all(1e-5 <= t.lr <= 1.0 for t in a.trials)
    assert abs(math.log10(a.best_lr) + 3) < 0.5


def test_bad_budget_and_unknown_tuner_raise():
    with pytest.raises(ValueError, match="budget"):
        GridTuner().tune(bowl(1e-3), 0)
    with pytest.raises(ValueError, match="unknown tuner"):
        make_tuner("bayes")
    with pytest.raises(ValueError, match="losses"):
        GridTuner().tune(lambda lrs: [1.0], 4)


@pytest.mark.parametrize("tuner", sorted(tuning.TUNERS))
def test_protocol_gives_candidate_and_every_baseline_the_same_budget(tuner, monkeypatch):
    from evalfakes import FakeRunner, fake_rules

    from evaluators import evaluate as protocol
    from evaluators.evaluate import Settings, TaskPlan, evaluate

    monkeypatch.setattr(protocol, "rule_text", lambda rule: f"# {rule.name}")
    fake_runner = FakeRunner()
    settings = Settings(suite="fake", tasks=(TaskPlan("quad"), TaskPlan("digits")), seeds=2,
                        budget=5, tuner=tuner, preset="tiny")
    candidate, baselines = fake_rules("mine", "adamw", "lion", "sgd")
    report = evaluate(candidate, baselines, settings, runner=fake_runner)
    tune_runs = Counter((r["label"], r["task"]) for r in report.runs if r["phase"] == "tune")
    eval_runs = Counter((r["label"], r["task"]) for r in report.runs if r["phase"] == "eval")
    labels = ["mine", "adamw", "lion", "sgd"]
    assert tune_runs == {(lab, t): 5 for lab in labels for t in ("quad", "digits")}
    assert eval_runs == {(lab, t): 2 for lab in labels for t in ("quad", "digits")}
    for t in report.tasks:
        assert {r.tuning.n_trials for r in t.rules.values()} == {5}
        assert {r.tuning.tuner for r in t.rules.values()} == {tuner}
        assert {tuple(x.seed for x in r.runs) for r in t.rules.values()} == {(1, 2)}
    # the trainer really was called once per (rule, task, seed, lr): no hidden extra budget
    assert len(fake_runner.calls) == sum(tune_runs.values()) + sum(eval_runs.values())


def test_scale_moves_the_whole_grid_and_its_bounds():
    plain, scaled = make_tuner("grid"), make_tuner("grid", scale=100.0)
    assert scaled.initial_grid(6) == pytest.approx([100 * x for x in plain.initial_grid(6)])
    assert scaled.lr_min == pytest.approx(100 * plain.lr_min) and scaled.lr_max == pytest.approx(100 * plain.lr_max)
    # a bowl 100x further up gives the same trials, 100x larger: the same tuned loss
    a = plain.tune(bowl(3e-3), 6)
    b = scaled.tune(bowl(3e-1), 6)
    assert [t.loss for t in a.trials] == pytest.approx([t.loss for t in b.trials])
    assert b.best_lr == pytest.approx(100 * a.best_lr) and b.scale == 100.0
    tpe = make_tuner("tpe", scale=0.01)
    assert (tpe.low, tpe.high) == pytest.approx((1e-7, 1e-2))
    with pytest.raises(ValueError, match="scale"):
        make_tuner("grid", scale=0.0)


def test_max_extra_widens_past_the_budget_until_the_best_is_interior():
    strict = GridTuner().tune(bowl(1e-5), budget=4)
    assert strict.at_edge and strict.n_trials == 4 and strict.extra == 0
    wide = GridTuner(max_extra=6).tune(bowl(1e-5), budget=4)
    assert not wide.at_edge and wide.extra > 0 and wide.n_trials == 4 + wide.extra
    assert wide.best_lr == pytest.approx(1e-5, rel=0.5)
    interior = GridTuner(max_extra=6).tune(bowl(3e-3), budget=4)
    assert interior.extra == 0 and interior.n_trials == 4  # nothing extra when already interior
    capped = GridTuner(max_extra=1).tune(bowl(1e-7), budget=4)
    assert capped.extra == 1 and capped.at_edge  # the cap holds
    assert GridTuner(max_extra=5).tune(OBJECTIVES["all_nan"], budget=4).extra == 0  # nothing to centre on
