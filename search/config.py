"""A search's configuration: one YAML file, checked key by key, with every default written down.

    name: quickstart                 # the run folder is runs/NAME unless --out says otherwise
    strategy: evolution              # evolution | optuna | random
    evaluations: 40                  # candidates trained (duplicates and invalid rules are free)
    seed: 0
    seeds: [adamw, lion, signum]     # builtin rules (or .opt paths): the start and the baselines
    proxy: {suite: proxy, tasks: [digits_logreg, digits_mlp], preset: tiny, budget: 4, hurdle: 1.5}
    evolution: {population_size: 16, tournament_size: 4, crossover_rate: 0.1, restart_every: 0}
    optuna: {slots: 6, sampler: auto, objectives: [fitness]}   # auto: TPE, NSGA-II if several
    mutation: {max_statements: 12, primitives: null}
    executor: {kind: serial, address: null, num_cpus: 1, num_gpus: 0, timeout_s: 900, max_retries: 2}
    validation: {top_k: 3, suite: heldout, tasks: null, preset: tiny, seeds: 3, budget: 4,
                 baselines: [adamw, lion]}
    device: cpu

Unknown keys are errors (a typo must not silently fall back to a default); every error names
the key. ``resolved()`` is the full config with defaults filled in; the run folder keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from search.strategies import STRATEGIES


class ConfigError(ValueError):
    """A config problem, one line naming the key."""


@dataclass
class ProxyConfig:
    suite: str = "proxy"
    tasks: list[str] | None = None  # a subset of the suite's tasks, in this order; None: all
    preset: str = "tiny"
    budget: int = 4
    tuner: str = "grid"
    hurdle: float = 1.5


@dataclass
class EvolutionConfig:
    population_size: int = 16
    tournament_size: int = 4
    crossover_rate: float = 0.1
    restart_every: int = 0


@dataclass
class OptunaConfig:
    slots: int = 6
    sampler: str = "auto"  # tpe for one objective, nsga2 for several; or random
    objectives: list[str] = field(default_factory=lambda: ["fitness"])


@dataclass
class MutationConfig:
    max_statements: int = 12
    primitives: list[str] | None = None


@dataclass
class ExecutorConfig:
    kind: str = "serial"
    address: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0
    timeout_s: float | None = 900
    max_retries: int = 2
    max_in_flight: int | None = None


@dataclass
class ValidationConfig:
    top_k: int = 3
    suite: str = "heldout"
    tasks: list[str] | None = None
    preset: str = "tiny"
    seeds: int = 3
    budget: int = 4
    baselines: list[str] = field(default_factory=lambda: ["adamw", "lion"])


@dataclass
class SearchConfig:
    name: str = "search"
    strategy: str = "evolution"
    evaluations: int = 40
    seed: int = 0
    seeds: list[str] = field(default_factory=lambda: ["adamw", "lion", "signum"])
    device: str = "cpu"
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def resolved(self) -> dict:
        return asdict(self)


def _check_type(value: Any, annotation: str, key: str) -> Any:
    """Accept ``value`` for a field annotated ``annotation`` (types are checked loosely)."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {key!r} may not be null")
    if "list" in annotation:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key {key!r}: expected a list of names, got {value!r}")
        return value
    if "float" in annotation:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if "int" in annotation:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "<top level>"
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key {where!r}: expected a mapping, got {type(data).__name__}")
    obj = cls()
    known = {f.name: f for f in fields(cls)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown config key {prefix + str(key)!r} "
                              f"(allowed: {', '.join(known)})")
        f = known[key]
        default = getattr(obj, key)
        if is_dataclass(default):
            setattr(obj, key, _build(type(default), value or {}, f"{prefix}{key}."))
        else:
            setattr(obj, key, _check_type(value, str(f.type), prefix + key))
    return obj


def _positive(value: float | None, key: str, allow_zero: bool = False) -> None:
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise ConfigError(f"config key {key!r} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(cfg: SearchConfig) -> SearchConfig:
    """Range and name checks that need no training; returns ``cfg``."""
    from evaluators.suites import PRESETS

    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"config key 'strategy': {cfg.strategy!r} is not one of "
                          f"{', '.join(STRATEGIES)}")
    for key, value in (("evaluations", cfg.evaluations), ("proxy.budget", cfg.proxy.budget),
                       ("proxy.hurdle", cfg.proxy.hurdle), ("evolution.population_size",
                       cfg.evolution.population_size), ("evolution.tournament_size",
                       cfg.evolution.tournament_size), ("optuna.slots", cfg.optuna.slots),
                      ("mutation.max_statements", cfg.mutation.max_statements),
                      ("executor.num_cpus", cfg.executor.num_cpus),
                      ("executor.timeout_s", cfg.executor.timeout_s),
                      ("executor.max_in_flight", cfg.executor.max_in_flight),
                      ("validation.seeds", cfg.validation.seeds),
                      ("validation.budget", cfg.validation.budget)):
        _positive(value, key)
    for key, value in (("validation.top_k", cfg.validation.top_k),
                       ("executor.num_gpus", cfg.executor.num_gpus),
                       ("executor.max_retries", cfg.executor.max_retries),
                       ("evolution.restart_every", cfg.evolution.restart_every)):
        _positive(value, key, allow_zero=True)
    if not 0 <= cfg.evolution.crossover_rate <= 1:
        raise ConfigError("config key 'evolution.crossover_rate' must be in [0, 1]")
    for key, preset in (("proxy.preset", cfg.proxy.preset), ("validation.preset", cfg.validation.preset)):
        if preset not in PRESETS:
            raise ConfigError(f"config key {key!r}: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if cfg.device not in ("cpu", "cuda"):
        raise ConfigError(f"config key 'device': {cfg.device!r} is not cpu or cuda")
    if not cfg.seeds:
        raise ConfigError("config key 'seeds': a search needs at least one seed rule")
    if "adamw" not in cfg.validation.baselines:
        cfg.validation.baselines = ["adamw", *cfg.validation.baselines]  # the fitness normaliser
    return cfg


def parse_config(data: Any) -> SearchConfig:
    return validate(_build(SearchConfig, data if data is not None else {}, ""))


def load_config(path: str | Path) -> SearchConfig:
    """Load and check a search config from a YAML file (a name without a path: configs/NAME.yaml)."""
    p = Path(path)
    if not p.exists() and p.suffix not in (".yaml", ".yml") and "/" not in str(path):
        from importlib import resources

        shipped = resources.files("configs") / f"{path}.yaml"
        if shipped.is_file():
            return parse_config(yaml.safe_load(shipped.read_text()))
    if not p.is_file():
        raise ConfigError(f"no config file {str(path)!r} (give a .yaml path, or a shipped name "
                          "such as quickstart)")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_config(data)
