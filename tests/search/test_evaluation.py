"""The proxy funnel job (search.evaluation): real training at the tiny preset."""

import math

import pytest

from evaluators.fitness import WORST_FITNESS
from populations.candidate import Outcome
from search.driver import seed_candidates
from search.evaluation import ProxySettings, evaluate_job

SETTINGS = ProxySettings((("digits_logreg", None), ("quadratic", None)), "tiny", budget=3, hurdle=1.5)


@pytest.fixture(scope="module")
def reference():
    _, adamw = seed_candidates(["adamw"])
    result = evaluate_job({"id": "reference", "text": adamw, "settings": SETTINGS.to_dict(),
                           "reference": None})
    assert set(result["losses"]) == {"digits_logreg", "quadratic"}
    return adamw, {t: v["loss"] for t, v in result["losses"].items()}


def _job(text, ref):
    return Outcome.from_dict(evaluate_job({"id": "c1", "text": text, "settings": SETTINGS.to_dict(),
                                           "reference": ref})["outcome"])


def test_adamw_against_its_own_reference_is_exactly_one(reference):
    adamw, ref = reference
    out = _job(adamw, ref)
    assert out.status == "ok" and out.fitness == 1.0
    assert out.tasks == {"digits_logreg": 1.0, "quadratic": 1.0} and out.state_bytes == 8.0


def test_a_weak_rule_stops_at_the_hurdle_after_the_first_task(reference):
    _, ref = reference
    out = _job("update = 0.001 * g\n", ref)  # SGD with a tiny step: far behind AdamW
    assert out.status == "hurdle" and list(out.tasks) == ["digits_logreg"]
    assert out.fitness == out.tasks["digits_logreg"] > SETTINGS.hurdle


def test_a_rule_that_blows_up_is_failed_with_the_worst_fitness(reference):
    _, ref = reference
    out = _job("m = m * 3 + g\nupdate = exp(m)\n", ref)
    assert out.status == "failed" and out.fitness == WORST_FITNESS and out.error


def test_settings_round_trip_and_text_that_does_not_parse_fails_cleanly():
    assert ProxySettings.from_dict(SETTINGS.to_dict()) == SETTINGS
    out = _job("update = g +\n", {"digits_logreg": 1.0, "quadratic": 1.0})
    assert out.status == "failed" and "syntax" in out.error.lower() and math.isfinite(out.fitness)
