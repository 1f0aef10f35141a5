"""The ask/tell interface every search strategy speaks.

``ask(n)`` proposes up to ``n`` new candidates; ``tell(candidate, outcome)`` reports how one did.
The driver may call ``ask`` again before earlier candidates are told (steady state: it keeps the
executor full), tells outcomes in completion order, not ask order, and may tell candidates the
strategy never asked for (seeds evaluated first, or records replayed from the journal on resume,
in their original order), so a strategy must accept any told candidate. A strategy never trains
anything and never raises on a strange program: it only proposes text and learns from outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from populations.candidate import Candidate, Outcome


class Strategy(Protocol):
    name: str

    def ask(self, n: int) -> list[Candidate]:
        """Up to ``n`` new candidates (fewer, or none, when the strategy has nothing to offer)."""
        ...

    def tell(self, candidate: Candidate, outcome: Outcome) -> None:
        """Learn from one evaluated candidate (its ``id`` is set)."""
        ...


def seed_candidates(texts: dict[str, str]) -> list[Candidate]:
    """The starting population: one ``seed`` candidate per known rule, name -> canonical text."""
    return [Candidate(text, "seed", (), name) for name, text in texts.items()]


def best(told: Sequence[tuple[Candidate, Outcome]], z: float = 0.0) -> tuple[Candidate, Outcome] | None:
    """The best told pair: the deepest funnel stage, then the lowest fitness discounted by ``z``
    standard errors (`populations.candidate.Outcome.rank_key`), so that between a lucky noisy
    result and a steady one of the same mean the steady one wins; the first of ties."""
    if not told:
        return None
    return min(told, key=lambda co: co[1].rank_key(z))
