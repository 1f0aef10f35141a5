"""Random search: the control every search result is compared against.

Each proposal is an independent random rule of ``min_statements``..``max_statements`` statements
over the inputs and constants (`search.mutation.Mutator.random_program`), drawn from the same
language and the same primitives as the other strategies; outcomes change nothing. AutoML-Zero
(Real et al. 2020) and the Lion search (Chen et al. 2023) report their evolution against such a
baseline: a search method earns its cost only by beating it at equal evaluation budget.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from dsl.printer import to_text
from populations.candidate import Candidate, Outcome
from search.mutation import Mutator
from search.strategies.base import best


class RandomStrategy:
    """Independent random rules; ``tell`` only records (see the module docstring)."""

    name = "random"

    def __init__(self, seeds: Sequence[Candidate], *, seed: int = 0, max_statements: int = 12,
                 primitives: Sequence[str] | None = None, min_statements: int = 2):
        if not 1 <= min_statements <= max_statements:
            raise ValueError("need 1 <= min_statements <= max_statements")
        self.seeds = list(seeds)       # kept for reference only: random search does not start from them
        self.min_statements = min_statements
        self.max_statements = max_statements
        self.rng = random.Random(seed)
        self.mutator = Mutator(self.rng, max_statements=max_statements, primitives=primitives)
        self.told: list[tuple[Candidate, Outcome]] = []

    def ask(self, n: int) -> list[Candidate]:
        out = []
        for _ in range(max(0, n)):
            program, change = self.mutator.random_program(self.rng.randint(self.min_statements, self.max_statements))
            out.append(Candidate(to_text(program, doc=False), "random", (), change))
        return out

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        self.told.append((candidate, outcome))

    @property
    def best(self) -> tuple[Candidate, Outcome] | None:
        """The best told candidate that was evaluated (gate refusals excluded)."""
        return best([co for co in self.told if co[1].status != "invalid"])
