"""The steady-state driver: dedup, gate, budget, failures and resume (search.driver).

The executor here is a fake that never trains: it scores a rule by its text, so these tests pin
the driver's bookkeeping exactly and run in well under a second each.
"""

import concurrent.futures as cf

import pytest

from populations.candidate import Candidate, Outcome
from populations.journal import Journal
from search.driver import Driver, seed_candidates
from search.evaluation import ProxySettings

PROXY = ProxySettings((("quadratic", None), ("digits_logreg", None)), "tiny")


class FakeExecutor:
    """Scores a rule by its text length; ``crash_on`` raises KeyboardInterrupt at that submit."""

    capacity = 2

    def __init__(self, crash_on=None, fail=()):
        self.calls, self.crash_on, self.fail = [], crash_on, set(fail)

    def submit(self, fn, payload):
        self.calls.append(payload["id"])
        if self.crash_on is not None and len(self.calls) == self.crash_on:
            raise KeyboardInterrupt
        fut = cf.Future()
        if payload["reference"] is None:
            fut.set_result({"outcome": {}, "losses": {t: {"lr": 0.01, "loss": 1.0} for t, _ in PROXY.tasks}})
        elif payload["text"] in self.fail:
            fut.set_exception(TimeoutError("took too long"))
        else:
            fit = 0.5 + 0.01 * len(payload["text"])
            fut.set_result({"outcome": Outcome(fit, "ok", {"quadratic": fit}, 4.0, 0.1).to_dict(), "losses": {}})
        return fut


class ListStrategy:
    """Proposes the given texts in order, then nothing; records what it is told."""

    name = "list"

    def __init__(self, texts):
        self.texts, self.told = list(texts), []

    def ask(self, n):
        out, self.texts = self.texts[:n], self.texts[n:]
        return [Candidate(t, "mutation", (), "test") for t in out]

    def tell(self, cand, outcome):
        self.told.append((cand.id, outcome.status, outcome.same_as))


SIGN = "update = sign(g)\n"
TEXTS = [
    "m = lerp(m, g, 0.1)\nupdate = sign(m)\n",
    "update = sign(g)\nx = g * 2\n",            # same structure as SIGN (dead code): not trained
    "update = g + g\n",
    "update = 2 * g\n",                          # same function as g + g: not trained
    "update = w\n",                              # does not read g: refused by the gate
    "update = tanh(g)\n",
    "update = g / (abs(g) + 1e-8)\n",
]


def _driver(tmp_path, strategy, executor, evaluations, seeds=("sgd",)):
    cands, adamw = seed_candidates(list(seeds))
    journal = Journal(tmp_path / "journal.jsonl")
    return Driver(journal, strategy, executor, PROXY, cands, evaluations, log=lambda s: None), adamw


def test_seeds_first_then_strategy_with_dedup_and_gate(tmp_path):
    strategy = ListStrategy([SIGN, *TEXTS])
    ex = FakeExecutor()
    driver, adamw = _driver(tmp_path, strategy, ex, evaluations=5)
    pop = driver.run(adamw)
    assert ex.calls[0] == "reference" and ex.calls[1] == "c000001"  # the seed is trained first
    assert pop.entries["c000001"].candidate.origin == "seed"
    by_text = {e.candidate.text: e for e in pop.entries.values()}
    assert by_text[TEXTS[1]].outcome.same_as == by_text[SIGN].id  # structural duplicate
    assert by_text[TEXTS[3]].outcome.same_as == by_text[TEXTS[2]].id  # functional duplicate
    assert by_text[TEXTS[4]].outcome.status == "invalid" and "does not depend" in by_text[TEXTS[4]].outcome.error
    assert pop.trained_count == 5 and len(ex.calls) == 1 + 5
    assert len(strategy.told) == len(pop.finished())  # every outcome is told, duplicates included
    assert "update = g / (abs(g) + 1e-8)\n" not in by_text  # the budget was spent before it
    journal_events = [r["event"] for r in driver.journal.records]
    assert journal_events.count("reference") == 1 and journal_events.count("finished") == len(pop.entries)


def test_executor_failure_is_a_failed_result_not_a_crash(tmp_path):
    ex = FakeExecutor(fail={SIGN})
    driver, adamw = _driver(tmp_path, ListStrategy([SIGN, TEXTS[0]]), ex, evaluations=3)
    pop = driver.run(adamw)
    failed = [e for e in pop.entries.values() if e.outcome.status == "failed"]
    assert len(failed) == 1 and failed[0].candidate.text == SIGN
    assert failed[0].outcome.error == "TimeoutError: took too long" and failed[0].outcome.fitness == 1e6
    assert pop.trained_count == 3


def test_resume_after_a_crash_trains_nothing_twice(tmp_path):
    texts = [SIGN, *TEXTS]
    crashing = FakeExecutor(crash_on=5)  # reference, seed, then the third rule's submit dies
    driver, adamw = _driver(tmp_path, ListStrategy(texts), crashing, evaluations=6)
    with pytest.raises(KeyboardInterrupt):
        driver.run(adamw)
    driver.journal.close()
    before = {e.id for e in driver.population.entries.values() if e.outcome is not None and e.outcome.trained}

    ex = FakeExecutor()
    strategy = ListStrategy(texts[len(driver.population.entries) - 1:])
    driver2, _ = _driver(tmp_path, strategy, ex, evaluations=6)
    pop = driver2.run(adamw)
    assert "reference" not in ex.calls  # journaled: not recomputed
    assert not before & set(ex.calls)  # nothing finished before the crash is trained again
    pending_before = [c.id for c in driver.population.pending()]
    assert ex.calls[: len(pending_before)] == pending_before  # in-flight work is re-submitted first
    assert pop.trained_count == 6
    trained = [e.id for e in pop.entries.values() if e.outcome.trained]
    assert len(trained) == len(set(trained)) == 6
    finished_before = [e.id for e in driver.population.finished()]
    assert [s for s, _, _ in strategy.told[: len(finished_before)]] == finished_before  # replayed in order


def test_a_strategy_that_only_repeats_itself_stops(tmp_path):
    class Repeat(ListStrategy):
        def ask(self, n):
            return [Candidate(SIGN, "mutation", (), "again")]

    ex = FakeExecutor()
    driver, adamw = _driver(tmp_path, Repeat([]), ex, evaluations=3)
    pop = driver.run(adamw)
    assert pop.trained_count == 2  # the seed and SIGN once; every repeat is a duplicate
    assert len(pop.entries) == 3 * 50  # gave up after PROPOSALS_PER_EVALUATION x budget proposals


def test_seed_candidates_are_canonical_text_and_adamw_is_the_reference():
    seeds, adamw = seed_candidates(["adamw", "lion"])
    assert [s.change for s in seeds] == ["adamw", "lion"] and all(s.origin == "seed" for s in seeds)
    assert seeds[0].text == adamw and "update" in adamw and not adamw.startswith("#")
