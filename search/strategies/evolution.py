"""Regularized evolution over rules (Real, Aggarwal, Huang & Le 2019, "Regularized Evolution for
Image Classifier Architecture Search", AAAI 2019), with the moves of AutoML-Zero (Real et al. 2020)
and of the search that found Lion (Chen et al. 2023), warm-started from known optimizers.

The population is the last ``population_size`` evaluated candidates (age-based removal: the oldest
leaves, whatever its fitness, which keeps lucky evaluations from ruling forever). A child comes
from a tournament: sample ``tournament_size`` members, take the best (the deepest funnel stage,
then the lowest fitness discounted by ``z`` standard errors of its seed noise, so a lucky
evaluation does not win tournaments on luck: `search.strategies.base.best`) and mutate it; with probability
``crossover_rate`` two tournament winners are crossed instead. Until anything has been told the
strategy proposes mutations of the seed rules, round robin. ``restart_every`` > 0 refills the
whole population with the best candidate seen so far every that many tells (a restart from the
best). Candidates the validity gate refused (status ``invalid``) have no fitness and never enter
the population; failed ones do, with their worst fitness, and lose their tournaments.

Everything random comes from one `random.Random(seed)`: equal seeds and equal call sequences give
equal proposals.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from dsl.errors import RuleError
from dsl.ir import Program
from dsl.printer import to_text
from populations.candidate import Candidate, Outcome
from search.mutation import Mutator
from search.strategies.base import best


def parent_ids(*candidates: Candidate) -> tuple[str, ...]:
    """The ids of ``candidates`` that have one (seeds built by hand may not)."""
    return tuple(c.id for c in candidates if c.id)


def parsed(candidate: Candidate) -> Program | None:
    """The candidate's program, or None when its text is not a valid rule."""
    try:
        return candidate.program
    except (RuleError, RecursionError, ValueError):
        return None


class EvolutionStrategy:
    """Regularized evolution with tournament selection (see the module docstring)."""

    name = "evolution"

    def __init__(self, seeds: list[Candidate], *, population_size: int = 32, tournament_size: int = 4,
                 crossover_rate: float = 0.1, restart_every: int = 0, seed: int = 0, max_statements: int = 12,
                 primitives: Sequence[str] | None = None, z: float = 0.0):
        if population_size < 1 or tournament_size < 1:
            raise ValueError("population_size and tournament_size must be at least 1")
        if not 0.0 <= crossover_rate <= 1.0:
            raise ValueError("crossover_rate must be in [0, 1]")
        if restart_every < 0:
            raise ValueError("restart_every must be >= 0 (0: no restarts)")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.crossover_rate = crossover_rate
        self.restart_every = restart_every
        self.z = z
        self.rng = random.Random(seed)
        self.mutator = Mutator(self.rng, max_statements=max_statements, primitives=primitives)
        self.seeds = [c for c in seeds if parsed(c) is not None]
        self.population: deque[tuple[Candidate, Outcome]] = deque(maxlen=population_size)
        self.best_ever: tuple[Candidate, Outcome] | None = None
        self.told = 0
        self.restarts = 0
        self._next_seed = 0

    # -- ask / tell ------------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        return [self._propose() for _ in range(max(0, n))]

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        self.told += 1
        if outcome.status != "invalid" and parsed(candidate) is not None:
            if not isinstance(outcome.fitness, (int, float)) or math.isnan(outcome.fitness):
                outcome = replace(outcome, fitness=math.inf)      # no usable fitness: loses every tournament
            pair = (candidate, outcome)
            self.population.append(pair)
            self.best_ever = pair if self.best_ever is None else best([self.best_ever, pair], self.z)
        if self.restart_every and self.told % self.restart_every == 0 and self.best_ever is not None:
            self.population = deque([self.best_ever] * self.population_size, maxlen=self.population_size)
            self.restarts += 1

    # -- proposals -------------------------------------------------------------------------
    def _propose(self) -> Candidate:
        if not self.population:
            if not self.seeds:
                program, change = self.mutator.random_program()
                return self._candidate(program, "random", (), change)
            seed = self.seeds[self._next_seed % len(self.seeds)]
            self._next_seed += 1
            program, change = self.mutator.mutate(seed.program)
            return self._candidate(program, "mutation", parent_ids(seed), change)
        if len(self.population) > 1 and self.rng.random() < self.crossover_rate:
            a, b = self._tournament(), self._tournament()
            program, change = self.mutator.crossover(a.program, b.program)
            return self._candidate(program, "crossover", parent_ids(a, b), change)
        parent = self._tournament()
        program, change = self.mutator.mutate(parent.program)
        return self._candidate(program, "mutation", parent_ids(parent), change)

    def _tournament(self) -> Candidate:
        k = min(self.tournament_size, len(self.population))
        contestants = self.rng.sample(range(len(self.population)), k)
        winner = best([self.population[i] for i in sorted(contestants)], self.z)
        assert winner is not None
        return winner[0]

    @staticmethod
    def _candidate(program: Program, origin: str, parents: tuple[str, ...], change: str) -> Candidate:
        return Candidate(to_text(program, doc=False), origin, parents, change)
