"""Stage scores, their noise, and the promotion rules (search.funnel), on hand-made numbers."""

import math

import pytest

from search.funnel import FunnelPlan, Promotion, Stage, pooled_cv, promotes, score

REF = {"a": {"losses": {"0": 1.0, "1": 1.0, "2": 1.1, "3": 0.9}, "cv": 0.1, "n": 3},
       "b": {"losses": {"0": 2.0, "1": 2.0, "2": 2.2, "3": 1.8}, "cv": 0.1, "n": 3}}


def test_one_seed_uses_the_tuning_seed_and_adamws_noise():
    s = score({"a": {"losses": {"0": 0.5}}, "b": {"losses": {"0": 4.0}}}, REF)
    assert s.status == "ok" and s.seeds == 1
    assert s.ratios == {"a": 0.5, "b": 2.0} and s.fitness == pytest.approx(1.0)
    assert s.se == pytest.approx(math.sqrt(0.1**2 + 0.1**2) / 2)  # delta method, cv / sqrt(n) per task


def test_several_seeds_compare_on_the_same_seeds_and_pool_the_noise():
    s = score({"a": {"losses": {"1": 0.5, "2": 0.6}}}, REF)
    assert s.ratios["a"] == pytest.approx(0.55 / 1.05) and s.seeds == 2
    own = pooled_cv([0.5, 0.6], 0.1, 3)
    assert s.se == pytest.approx(own / math.sqrt(2))
    assert pooled_cv([1.0], 0.2, 4) == pytest.approx(0.2)  # one seed of its own: AdamW's
    assert math.isnan(pooled_cv([1.0], math.nan, 0))


def test_a_failed_task_fails_the_stage_and_missing_reference_seeds_are_an_error():
    assert score({"a": {"losses": {"0": None}}}, REF).status == "failed"
    assert score({"a": {"losses": {"0": math.inf}}}, REF).fitness == 1e6
    with pytest.raises(ValueError, match="lacks seeds 7"):
        score({"a": {"losses": {"7": 1.0}}}, REF)


def _stage(**promote):
    return Stage("s", "proxy", (("a", None),), promote=Promotion(**promote))


def test_hurdle_gives_the_benefit_of_the_doubt_by_z_standard_errors():
    s = score({"a": {"losses": {"0": 1.3}}}, {"a": REF["a"]})  # ratio 1.3, se 0.1
    assert not promotes(_stage(hurdle=1.2), s, [], z=0.0)
    assert promotes(_stage(hurdle=1.2), s, [], z=1.0)  # 1.3 * exp(-0.1) = 1.18 <= 1.2


def test_top_fraction_keeps_at_least_the_best_and_compares_with_results_so_far():
    s = score({"a": {"losses": {"0": 1.0}}}, {"a": REF["a"]})
    rule = _stage(top_fraction=0.25)
    assert promotes(rule, s, [], 0.0)  # alone: the best so far goes on
    assert not promotes(rule, s, [0.5], 0.0)  # the best 1 of 2 is the other
    assert promotes(rule, s, [1.5, 2.0, 3.0], 0.0)
    worse = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert not promotes(rule, s, [0.8, 0.9, *worse[:5]], 0.0)  # the best 2 of 8 are the others
    assert promotes(rule, s, [0.8, 0.9, *worse], 0.0)  # the best 3 of 12 include it


def test_remeasure_seeds_follow_the_last_stages_own():
    one = FunnelPlan((Stage("a", "p", (("t", None),), seeds=1),), remeasure_top_k=2, remeasure_seeds=2)
    three = FunnelPlan((Stage("a", "p", (("t", None),), seeds=3),), remeasure_top_k=2, remeasure_seeds=2)
    assert one.remeasure_seed_list() == [1, 2] and one.seeds_needed() == 2
    assert three.remeasure_seed_list() == [4, 5] and three.seeds_needed() == 5


def test_expected_duration_comes_from_adamws_measured_time_per_run():
    from search.engine import expected_seconds

    cheap = Stage("cheap", "p", (("t", None),), seeds=1, budget=4, promote=Promotion(top_fraction=0.5))
    full = Stage("full", "p", (("t", None), ("u", None)), seeds=3, budget=4)
    plan = FunnelPlan((cheap, full))
    # AdamW: 4 trials + 5 fresh seeds on each task, 9 runs, 1 s per run
    measured = {"trials": 4, "losses": {str(s): 1.0 for s in range(6)}, "wall_time_s": 9.0}
    reference = {"cheap": {"t": measured}, "full": {"t": measured, "u": measured}}
    low, high = expected_seconds(reference, plan, rules=10, workers=2)
    assert low == pytest.approx(10 * 4 / 2)  # every rule stops after the cheap stage: 4 runs each
    assert high == pytest.approx(10 * (4 + 2 * (4 + 3)) / 2)  # all of them go on: no bound in 0.5


def test_revised_estimate_extrapolates_the_measured_rate():
    from search.engine import revised_estimate

    line = revised_estimate(done=20, elapsed_s=600.0, left=180)
    assert "20 rules trained in 10.0 min (30 s per rule" in line
    assert "the 180 left take about 90.0 min" in line
