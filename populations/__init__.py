"""The population of a search: seeding from known optimizers, the append-only journal, lineage,
Pareto fronts and leaderboards. Empty until the search lands."""
