"""Search strategies: one registry drives the config, the CLI and the tests.

Each speaks ask/tell (``search.strategies.base``): ``evolution`` (regularized evolution, Real et
al. 2019), ``optuna`` (statement slots sampled define-by-run by TPE or NSGA-II, Akiba et al.
2019) and ``random`` (the control every search result is compared against).
"""

from __future__ import annotations

from pathlib import Path

from populations.candidate import Candidate

STRATEGIES = ("evolution", "optuna", "random")


def make_strategy(config, seeds: list[Candidate], run_dir: str | Path | None = None,
                  session: int = 0):
    """The strategy a ``SearchConfig`` names. ``session`` (how many times this search started
    before) varies the random stream, so a resumed search does not replay its first proposals."""
    seed = config.seed * 1000 + session
    mut = config.mutation
    if config.strategy == "evolution":
        from .evolution import EvolutionStrategy

        ev = config.evolution
        return EvolutionStrategy(seeds, population_size=ev.population_size,
                                 tournament_size=ev.tournament_size,
                                 crossover_rate=ev.crossover_rate, restart_every=ev.restart_every,
                                 seed=seed, max_statements=mut.max_statements,
                                 primitives=mut.primitives, z=config.noise_z)
    if config.strategy == "random":
        from .random_search import RandomStrategy

        return RandomStrategy(seeds, seed=seed, max_statements=mut.max_statements,
                              primitives=mut.primitives)
    if config.strategy == "optuna":
        from .optuna_slots import OptunaStrategy

        op = config.optuna
        storage = None if run_dir is None else Path(run_dir) / "optuna.journal"
        stages = len(config.funnel) if config.funnel else (2 if len(config.proxy.tasks or [0, 0]) > 1 else 1)
        pruner = op.pruner
        if pruner == "auto":
            pruner = "successive_halving" if stages > 1 and len(op.objectives) == 1 else "none"
        return OptunaStrategy(seeds, slots=op.slots, sampler=op.sampler,
                              objectives=tuple(op.objectives), seed=seed, storage=storage,
                              study_name=config.name, primitives=mut.primitives, pruner=pruner,
                              reduction_factor=op.reduction_factor, stages=stages)
    raise ValueError(f"unknown strategy {config.strategy!r}; choose from {', '.join(STRATEGIES)}")
