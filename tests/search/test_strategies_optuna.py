"""The `optuna` strategy (search/strategies/optuna_slots.py): slot programs sampled define-by-run,
valid and canonical; reproducible; tell reaches the study; TPE learns a toy objective; NSGA-II
for two objectives; a journal-file study resumes; Optuna's logs and warnings stay quiet."""

from __future__ import annotations

import logging
import math
import re
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from dsl.analysis import eliminate_dead_code, state_names, update_depends_on
from dsl.parser import parse
from dsl.printer import to_text
from evaluators.fitness import WORST_FITNESS
from populations.candidate import Candidate, Outcome
from search.strategies.base import seed_candidates
from search.strategies.optuna_slots import MISSING_STATE_BYTES, OptunaStrategy


def states(strategy: OptunaStrategy) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in strategy.study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def handed_out(strategy: OptunaStrategy) -> int:
    return sum("text" in t.user_attrs for t in strategy.study.get_trials(deepcopy=False))


def toy(candidate: Candidate) -> float:
    """A synthetic fitness: rules that take a sign are good."""
    return 1.0 if "sign(" in candidate.text else 2.0


def test_asked_programs_are_valid_canonical_and_read_g():
    s = OptunaStrategy([], sampler="random", seed=0)
    cands = s.ask(150)
    assert len(cands) == 150
    numbers = [c.meta["trial"] for c in cands]
    assert numbers == sorted(set(numbers))
    for c in cands:
        assert c.origin == "optuna" and c.parents == ()
        p = parse(c.text)  # validates
        assert to_text(p, doc=False) == c.text
        assert parse(to_text(p, doc=False)) == p
        assert eliminate_dead_code(p) == p
        assert update_depends_on(p, "g")
        assert s.study.trials[c.meta["trial"]].user_attrs["text"] == c.text
    assert len({c.text for c in cands}) > 100  # a varied space, not a handful of programs
    assert any(p.routes[0].body and len(p.routes[0].body) >= 3 for p in (c.program for c in cands))


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_most_samples_are_valid(sampler):
    s = OptunaStrategy([], sampler=sampler, seed=1)
    for _ in range(15):
        for c in s.ask(4):
            s.tell(c, Outcome(toy(c), "ok"))
    counts = states(s)
    fraction = handed_out(s) / sum(counts.values())
    print(f"{sampler}: valid fraction {fraction:.2f} over {sum(counts.values())} samples")
    assert handed_out(s) == 60
    assert fraction >= 0.6
    rejected = [t for t in s.study.trials if "rejected" in t.user_attrs]
    assert all(t.state == TrialState.FAIL for t in rejected)


def test_same_seed_same_programs():
    def run(seed: int) -> list[str]:
        s = OptunaStrategy([], seed=seed)
        texts = []
        for _ in range(6):  # past TPE's 10 startup trials; tells out of ask order
            batch = s.ask(3)
            texts += [c.text for c in batch]
            for c in reversed(batch):
                s.tell(c, Outcome(len(c.text) / 10, "ok"))
        return texts

    a = run(7)
    assert len(a) == 18
    assert a == run(7)
    assert a != run(8)


def test_tell_reaches_the_study():
    s = OptunaStrategy([], seed=2)
    cands = s.ask(6)
    rejected = states(s).get("FAIL", 0)
    outcomes = [Outcome(0.9, "ok"), Outcome(1.3, "hurdle"), Outcome(WORST_FITNESS, "failed"),
                Outcome(WORST_FITNESS, "invalid"), Outcome(math.nan, "failed"), Outcome(0.9, "duplicate")]
    for c, o in zip(cands, outcomes):
        s.tell(c, o)
    assert states(s) == {"COMPLETE": 5, "FAIL": rejected + 1}
    values = [s.study.trials[c.meta["trial"]].values for c in cands]
    assert values == [[0.9], [1.3], [WORST_FITNESS], None, [WORST_FITNESS], [0.9]]
    assert s.study.best_value == 0.9
    n = len(s.study.trials)
    s.tell(cands[0], Outcome(0.1, "ok"))  # told twice (a journal replay): no effect
    for seed in seed_candidates({"sgd": "update = g\n"}):  # not asked by this strategy: ignored
        s.tell(seed, Outcome(0.5, "ok"))
    s.tell(Candidate("update = g\n", "optuna", meta={"trial": 10**6}), Outcome(0.5, "ok"))
    s.tell(Candidate("update = g\n", "optuna", meta={"trial": "x"}), Outcome(0.5, "ok"))
    assert len(s.study.trials) == n and s.study.best_value == 0.9
    assert s.ask(0) == []


def test_tpe_learns_a_toy_objective():
    first = last = 0
    for seed in range(3):
        s = OptunaStrategy([], sampler="tpe", seed=seed)
        good = []
        for _ in range(80):
            [c] = s.ask(1)
            good.append(toy(c) == 1.0)
            s.tell(c, Outcome(toy(c), "ok"))
        first += sum(good[:30])
        last += sum(good[-30:])
    print(f"good programs: first 30 trials {first}/90, last 30 trials {last}/90")
    assert last > first + 5


def test_two_objectives_use_nsga2():
    s = OptunaStrategy([], objectives=("fitness", "state_bytes"), seed=0)
    assert s.sampler_name == "nsga2"
    assert isinstance(s.study.sampler, optuna.samplers.NSGAIISampler)
    assert len(s.study.directions) == 2
    for c in s.ask(30):
        nstate = len(state_names(c.program))  # unknown (None) for stateless rules, as a stand-in
        s.tell(c, Outcome(len(c.text) / 20, "ok", state_bytes=4.0 * nstate if nstate else None))
    front = s.study.best_trials
    assert front and all(len(t.values) == 2 for t in front)
    assert any(t.values[1] == MISSING_STATE_BYTES for t in s.study.trials if t.values)
    tpe = OptunaStrategy([], objectives=("fitness", "state_bytes"), sampler="tpe", seed=0)
    assert isinstance(tpe.study.sampler, optuna.samplers.TPESampler)


def test_journal_storage_resumes(tmp_path):
    path = tmp_path / "study" / "optuna.journal"
    s = OptunaStrategy([], storage=path, seed=0, study_name="run1")
    cands = s.ask(3)
    told_before = len(s.study.trials)
    s.tell(cands[0], Outcome(1.5, "ok"))
    s.tell(cands[1], Outcome(WORST_FITNESS, "invalid"))
    assert path.exists()

    r = OptunaStrategy([], storage=path, seed=0, study_name="run1")  # the driver died; a new process
    trials = r.study.trials
    assert len(trials) == told_before
    assert trials[cands[0].meta["trial"]].values == [1.5]
    assert trials[cands[1].meta["trial"]].state == TrialState.FAIL
    assert trials[cands[2].meta["trial"]].state == TrialState.FAIL  # stale RUNNING: failed on resume
    assert not r.study.get_trials(states=(TrialState.RUNNING,))
    new = r.ask(2)
    assert min(c.meta["trial"] for c in new) == told_before
    # the driver re-submits the unfinished candidate and tells it: added once as a new trial
    r.tell(cands[2], Outcome(0.8, "ok"))
    r.tell(cands[2], Outcome(0.8, "ok"))
    r.tell(cands[0], Outcome(9.0, "ok"))  # replayed from the driver's journal: no effect
    again = OptunaStrategy([], storage=path, seed=0, study_name="run1")
    again.tell(cands[2], Outcome(0.8, "ok"))
    done = again.study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.value for t in done) == [0.8, 1.5]
    retold = [t for t in done if t.value == 0.8][0]
    assert retold.user_attrs["retold_from"] == cands[2].meta["trial"]
    assert retold.params == trials[cands[2].meta["trial"]].params
    assert retold.user_attrs["text"] == cands[2].text
    with pytest.raises(ValueError, match="objectives"):
        OptunaStrategy([], storage=path, study_name="run1", objectives=("fitness", "state_bytes"))


@pytest.mark.parametrize("kwargs", [{"sampler": "cmaes"}, {"sampler": "bogus"}, {"objectives": ("loss",)},
                                    {"objectives": ()}, {"primitives": ("nope",)}, {"slots": 0},
                                    {"inputs": ("w",)}])
def test_bad_settings_are_value_errors(kwargs):
    with pytest.raises(ValueError):
        OptunaStrategy([], **kwargs)


def test_primitives_restrict_the_space():
    s = OptunaStrategy([], sampler="random", seed=3, primitives=("sign",), slots=3)
    calls = set()
    for c in s.ask(60):
        assert len(c.program.routes[0].body) <= 3
        calls |= set(re.findall(r"([a-z_]+)\(", c.text))
    assert calls == {"sign"}


def test_optuna_stays_quiet_and_user_settings_survive(capfd):
    optuna.logging.set_verbosity(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s = OptunaStrategy([], seed=0)
            for c in s.ask(12):
                s.tell(c, Outcome(1.0, "ok"))
        assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
        assert optuna.logging.get_verbosity() == logging.INFO
    finally:
        optuna.logging.set_verbosity(logging.INFO)
    out, err = capfd.readouterr()
    assert "Trial" not in out + err and "study" not in out + err


def test_the_successive_halving_pruner_decides_promotion_for_its_own_trials():
    s = OptunaStrategy([], seed=0, slots=4, pruner="successive_halving", reduction_factor=3, stages=3)
    cands = s.ask(9)
    decisions = [s.promote(c, 0, f) for c, f in zip(cands, [1.0, 0.5, 2.0, 3.0, 0.4, 4.0, 5.0, 6.0, 0.45])]
    assert decisions[:2] == [True, True]  # the best so far goes on
    assert decisions[2] is False and decisions[3] is False  # worse than the best third
    assert decisions[4] is True and decisions[8] is True  # 0.45 is among the best 3 of 9
    seed = Candidate("update = g\n", "seed", (), "sgd")
    assert s.promote(seed, 0, 0.1) is None  # not its trial: the stage's rule decides
    s.tell(cands[0], Outcome(1.0, "ok"))
    assert s.promote(cands[0], 1, 1.0) is None  # finished trials are not pruned any more
    assert OptunaStrategy([], seed=0).promote(cands[1], 0, 0.1) is None  # no pruner


def test_a_pruner_needs_one_objective():
    with pytest.raises(ValueError, match="single objective"):
        OptunaStrategy([], objectives=("fitness", "state_bytes"), pruner="hyperband")
