"""Regularized evolution and the random-search control (search.strategies.evolution / random_search):
seed mutations before anything is told, tournaments that find the best, age-based removal, no
place for gate refusals, restarts from the best, crossover, canonical text, determinism."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from dsl import load_rule, parse, to_text
from dsl.analysis import update_depends_on
from populations.candidate import Candidate, Outcome
from search.strategies.base import seed_candidates
from search.strategies.evolution import EvolutionStrategy
from search.strategies.random_search import RandomStrategy

WORST = 1e6  # evaluators.fitness.WORST_FITNESS
SEED_NAMES = ("adamw", "lion", "sgd")


def seeds(with_ids: bool = True) -> list[Candidate]:
    texts = {n: to_text(load_rule(f"builtin:{n}"), doc=False) for n in SEED_NAMES}
    out = seed_candidates(texts)
    return [c.with_id(f"s{i}") for i, c in enumerate(out)] if with_ids else out


def member(i: int, name: str = "adamw") -> Candidate:
    return Candidate(to_text(load_rule(f"builtin:{name}"), doc=False), "mutation", (), "test", f"c{i}")


def ok(f: float) -> Outcome:
    return Outcome(f, "ok")


def assert_canonical(c: Candidate) -> None:
    program = parse(c.text)
    assert to_text(program, doc=False) == c.text
    assert update_depends_on(program, "g")
    assert c.id == "" and c.change and "\n" not in c.change


def test_ask_before_any_tell_mutates_the_seeds_round_robin():
    strategy = EvolutionStrategy(seeds(), seed=1)
    asked = strategy.ask(7)
    assert len(asked) == 7
    assert [c.origin for c in asked] == ["mutation"] * 7
    assert [c.parents for c in asked] == [("s0",), ("s1",), ("s2",), ("s0",), ("s1",), ("s2",), ("s0",)]
    for c in asked:
        assert_canonical(c)
    anonymous = EvolutionStrategy(seeds(with_ids=False), seed=1).ask(3)
    assert all(c.parents == () and c.origin == "mutation" for c in anonymous)
    assert EvolutionStrategy(seeds()).ask(0) == []


def test_tournaments_pick_a_clear_best():
    strategy = EvolutionStrategy(seeds(), population_size=8, tournament_size=8, crossover_rate=0.0, seed=2)
    for i in range(8):
        strategy.tell(member(i, SEED_NAMES[i % 3]), ok(0.5 if i == 3 else 1.0 + i / 10))
    children = strategy.ask(30)
    assert all(c.parents == ("c3",) and c.origin == "mutation" for c in children)
    for c in children:
        assert_canonical(c)
    # tournaments of 4 out of 8 contain the best half of the time
    strategy = EvolutionStrategy(seeds(), population_size=8, tournament_size=4, crossover_rate=0.0, seed=3)
    for i in range(8):
        strategy.tell(member(i), ok(0.5 if i == 3 else 1.0 + i / 10))
    share = Counter(c.parents for c in strategy.ask(200))[("c3",)] / 200
    assert 0.35 <= share <= 0.65


def test_failed_candidates_stay_and_lose_and_complete_beats_hurdle():
    strategy = EvolutionStrategy(seeds(), population_size=4, tournament_size=4, crossover_rate=0.0)
    strategy.tell(member(0), Outcome(WORST, "failed", error="diverged"))
    strategy.tell(member(1), Outcome(0.2, "hurdle"))
    strategy.tell(member(2), ok(3.0))
    strategy.tell(member(3), Outcome(WORST, "failed"))
    assert len(strategy.population) == 4
    assert {c.parents for c in strategy.ask(10)} == {("c2",)}
    assert strategy.best_ever[0].id == "c2"


def test_invalid_outcomes_are_not_added():
    strategy = EvolutionStrategy(seeds(), seed=4)
    for i in range(5):
        strategy.tell(member(i), Outcome(WORST, "invalid", error="gate"))
    assert len(strategy.population) == 0 and strategy.best_ever is None
    assert [c.parents for c in strategy.ask(3)] == [("s0",), ("s1",), ("s2",)]
    strategy.tell(member(9), ok(1.0))
    assert [c.id for c, _ in strategy.population] == ["c9"]


def test_age_based_removal_keeps_population_size():
    strategy = EvolutionStrategy(seeds(), population_size=4)
    for i in range(10):
        strategy.tell(member(i), ok(0.1 if i == 0 else 1.0))   # the best is the oldest: it leaves too
    assert [c.id for c, _ in strategy.population] == ["c6", "c7", "c8", "c9"]
    assert strategy.best_ever[0].id == "c0"
    assert all("c0" not in c.parents for c in strategy.ask(20))


def test_restart_from_the_best():
    strategy = EvolutionStrategy(seeds(), population_size=6, restart_every=5, crossover_rate=0.0)
    for i in range(5):
        assert strategy.restarts == 0
        strategy.tell(member(i), ok(0.3 if i == 2 else 1.0))
    assert strategy.restarts == 1
    assert len(strategy.population) == 6 and {c.id for c, _ in strategy.population} == {"c2"}
    assert {c.parents for c in strategy.ask(10)} == {("c2",)}
    strategy.tell(member(5), ok(2.0))
    assert len(strategy.population) == 6 and strategy.population[-1][0].id == "c5"


def test_crossover_children_have_two_parents():
    strategy = EvolutionStrategy(seeds(), population_size=4, crossover_rate=1.0, seed=5)
    for i in range(4):
        strategy.tell(member(i, SEED_NAMES[i % 3]), ok(1.0 + i))
    children = strategy.ask(20)
    assert all(c.origin == "crossover" and len(c.parents) == 2 for c in children)
    assert all(c.change.startswith("crossover") for c in children)
    for c in children:
        assert_canonical(c)


def test_deterministic_given_seed_and_calls():
    def run(seed: int) -> list[dict]:
        strategy = EvolutionStrategy(seeds(), population_size=5, seed=seed, crossover_rate=0.3)
        out = []
        for step in range(6):
            asked = strategy.ask(3)
            out += [c.to_dict() for c in asked]
            for k, c in enumerate(asked):
                strategy.tell(c.with_id(f"c{step}_{k}"), ok(1.0 + ((step * 7 + k * 3) % 5) / 10))
        return out
    assert run(0) == run(0)
    assert run(0) != run(1)


def test_strange_tells_do_not_raise():
    strategy = EvolutionStrategy(seeds(), population_size=4, tournament_size=4)
    strategy.tell(seeds()[0], ok(1.0))                                      # a seed the driver evaluated
    strategy.tell(Candidate("update = import(g)\n", "mutation", (), "", "bad"), ok(0.1))   # unparsable
    strategy.tell(member(1), Outcome(math.nan, "failed"))
    strategy.tell(member(2), ok(0.9))
    assert [c.id for c, _ in strategy.population] == ["s0", "c1", "c2"]
    assert strategy.best_ever[0].id == "c2"
    assert {c.parents for c in strategy.ask(5)} == {("c2",)}


def test_without_seeds_or_population_it_proposes_random_rules():
    asked = EvolutionStrategy([], seed=0).ask(4)
    assert [c.origin for c in asked] == ["random"] * 4
    for c in asked:
        assert_canonical(c)


def test_a_short_search_loop_stays_valid_and_bounded():
    strategy = EvolutionStrategy(seeds(), population_size=8, seed=6, max_statements=6,
                                 primitives=["sign", "sqrt", "lerp", "abs"])
    for step in range(15):
        for k, c in enumerate(strategy.ask(4)):
            assert_canonical(c)
            program = parse(c.text)
            assert all(len(r.body) <= 6 for r in program.routes)
            fitness = 1.0 + len(c.text) / 1000              # a stand-in objective: shorter is better
            strategy.tell(c.with_id(f"c{step}_{k}"), ok(fitness) if k % 3 else Outcome(WORST, "failed"))
        assert len(strategy.population) <= 8


def test_random_strategy():
    strategy = RandomStrategy(seeds(), seed=3, max_statements=6, min_statements=3)
    asked = strategy.ask(15)
    assert len(asked) == 15
    for c in asked:
        assert_canonical(c)
        assert c.origin == "random" and c.parents == ()
        assert 3 <= len(parse(c.text).routes[0].body) <= 6
    assert [c.text for c in asked] == [c.text for c in RandomStrategy(seeds(), seed=3, max_statements=6,
                                                                      min_statements=3).ask(15)]
    strategy.tell(asked[0].with_id("r0"), ok(2.0))
    strategy.tell(asked[1].with_id("r1"), Outcome(WORST, "invalid"))
    strategy.tell(asked[2].with_id("r2"), ok(1.5))
    assert len(strategy.told) == 3 and strategy.best[0].id == "r2"
    assert RandomStrategy([]).name == "random" and EvolutionStrategy([]).name == "evolution"
    with pytest.raises(ValueError):
        RandomStrategy([], min_statements=5, max_statements=4)
