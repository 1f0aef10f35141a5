"""The stage job (search.evaluation): real training at the tiny preset."""

import math

import pytest

from evaluators.fitness import WORST_FITNESS
from search.driver import seed_candidates
from search.evaluation import stage_job
from search.funnel import Promotion, Stage, score

STAGE = Stage("proxy", "proxy", (("digits_logreg", None), ("quadratic", None)), "tiny", 1, 3,
              promote=Promotion(hurdle=1.5))
FRESH = Stage("sel", "proxy", (("digits_logreg", None),), "tiny", 2, 3)
MOMENTUM = "hparams momentum=0.9\nbuf = momentum * buf + g\nupdate = {c} * buf\n"


def _reference(stage):
    _, adamw = seed_candidates(["adamw"])
    out = stage_job({"id": "reference", "text": adamw, "stage": stage.to_dict(), "reference": None,
                     "reference_seeds": 3})
    assert not out["error"]
    return adamw, out["tasks"]


@pytest.fixture(scope="module")
def reference():
    return _reference(STAGE)


def _score(text, ref, stage=STAGE, **extra):
    out = stage_job({"id": "c1", "text": text, "stage": stage.to_dict(), "reference": ref, **extra})
    return out, score(out["tasks"], ref)


def test_the_reference_has_the_tuning_seed_and_fresh_seeds_with_their_noise(reference):
    _, ref = reference
    for m in ref.values():
        assert set(m["losses"]) == {"0", "1", "2", "3"} and m["n"] == 3
        assert 0 < m["cv"] < 0.5 and m["scale"] > 0 and m["trials"] == 3


def test_adamw_against_its_own_reference_is_exactly_one(reference):
    adamw, ref = reference
    out, s = _score(adamw, ref)
    assert s.status == "ok" and s.fitness == 1.0 and s.seeds == 1
    assert s.ratios == {"digits_logreg": 1.0, "quadratic": 1.0} and out["state_bytes"] == 8.0
    assert 0 < s.se < 0.5  # one seed: AdamW's measured noise stands in for the rule's


def test_a_constant_factor_on_the_update_does_not_change_the_fitness(reference):
    _, ref = reference
    fits = [_score(MOMENTUM.format(c=c), ref)[1].fitness for c in (0.01, 1, 100)]
    assert max(fits) / min(fits) - 1 < 0.01, fits


def test_fresh_seeds_and_a_remeasurement_extend_the_same_lrs():
    adamw, ref = _reference(FRESH)
    out, s = _score(MOMENTUM.format(c=1), ref, FRESH)
    measured = out["tasks"]["digits_logreg"]
    assert set(measured["losses"]) == {"1", "2"} and s.seeds == 2
    again = stage_job({"id": "c1", "text": MOMENTUM.format(c=1), "stage": FRESH.to_dict(), "reference": ref,
                       "remeasure": {"seeds": [3], "lrs": {"digits_logreg": measured["lr"]}}})
    assert set(again["tasks"]["digits_logreg"]["losses"]) == {"3"}


def test_an_earlier_identical_measurement_is_reused_not_retrained(reference):
    adamw, ref = reference
    first, _ = _score(adamw, ref)
    previous = {m["key"]: m for m in first["tasks"].values()}
    again, s = _score(adamw, ref, previous=previous)
    assert all(m.get("reused") for m in again["tasks"].values()) and again["wall_time_s"] < 0.5
    assert s.fitness == 1.0


def test_a_rule_that_blows_up_is_failed_with_the_worst_fitness(reference):
    _, ref = reference
    out, s = _score("m = m * 3 + g\nupdate = exp(m)\n", ref)
    assert s.status == "failed" and s.fitness == WORST_FITNESS and s.error
    assert list(out["tasks"]) == ["digits_logreg"]  # stopped at the first task that failed


def test_text_that_does_not_parse_fails_cleanly(reference):
    _, ref = reference
    out = stage_job({"id": "c1", "text": "update = g +\n", "stage": STAGE.to_dict(), "reference": ref})
    assert "syntax" in out["error"].lower() and out["tasks"] == {}
    assert Stage.from_dict(STAGE.to_dict()) == STAGE and math.isfinite(out["wall_time_s"])
