"""A search's configuration: one YAML file, checked key by key, with every default written down.

    name: quickstart                 # the run folder is runs/NAME unless --out says otherwise
    strategy: evolution              # evolution | optuna | random
    evaluations: 40                  # candidates trained (duplicates and invalid rules are free)
    seed: 0
    seeds: [adamw, lion, signum]     # builtin rules (or .opt paths): the start and the baselines
    proxy: {suite: proxy, tasks: [digits_logreg, digits_mlp], preset: tiny, budget: 4, hurdle: 1.5}
    funnel:                          # instead of proxy: stages from cheap to expensive
      - {name: cheap, suite: proxy, tasks: [digits_mlp], preset: cpu, seeds: 1, budget: 4,
         max_extra: 0, promote: {hurdle: 1.5, top_fraction: null}}
      - {name: selection, suite: selection, preset: cpu, seeds: 3, budget: 6}
    reference: {seeds: 5}            # AdamW's fresh seeds per task: the noise every stage uses
    remeasure: {top_k: 3, seeds: 2}  # last-stage top-k rules get this many fresh seeds more
    noise_z: 1.0                     # standard errors a noisy result is discounted by
    evolution: {population_size: 16, tournament_size: 4, crossover_rate: 0.1, restart_every: 0}
    optuna: {slots: 6, sampler: auto, objectives: [fitness], pruner: auto, reduction_factor: 3}
                                     # auto: TPE, NSGA-II if several; SHA pruner with stages
    mutation: {max_statements: 12, primitives: null}
    executor: {kind: serial, address: null, num_cpus: 1, num_gpus: 0, timeout_s: 900, max_retries: 2}
    validation: {top_k: 3, suite: heldout, tasks: null, preset: tiny, seeds: 5, budget: 4,
                 max_extra: 4, baselines: [adamw, lion]}
    simplify: {max_calls: 30, seeds: 3}   # winners, on the last funnel stage
    device: cpu

Without ``funnel`` the funnel is built from ``proxy``: its first task alone with the ``hurdle``
(when there are several), then every proxy task, one seed each (the search as it was before
stages). ``proxy`` and ``funnel`` exclude each other. Unknown keys are errors (a typo must not
silently fall back to a default); every error names the key (``funnel[1].promote.top_fraction``).
``resolved()`` is the full config with defaults filled in; the run folder keeps it.
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
class PromoteConfig:
    hurdle: float | None = None  # go on only if fitness * exp(-noise_z * se) <= hurdle
    top_fraction: float | None = None  # go on only if among the best fraction at this stage


@dataclass
class StageConfig:
    name: str = ""
    suite: str = "proxy"
    tasks: list[str] | None = None  # a subset of the suite's tasks, in this order; None: all
    preset: str = "cpu"
    seeds: int = 1  # 1: the tuning seed's best trial; n > 1: n fresh seeds at the tuned lr
    budget: int = 6  # lr trials per task, the same for every rule
    tuner: str = "grid"
    max_extra: int = 0  # extra trials while the best lr is at the grid's edge
    promote: PromoteConfig = field(default_factory=PromoteConfig)


@dataclass
class ReferenceConfig:
    seeds: int = 5


@dataclass
class RemeasureConfig:
    top_k: int = 3
    seeds: int = 2


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
    pruner: str = "auto"  # successive_halving (auto, with several stages), hyperband, or none
    reduction_factor: int = 3


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
    seeds: int = 5  # the held-out suite certifies at 5 seeds (AdamW's seed std <= 5% of its mean)
    budget: int = 4
    max_extra: int = 4  # widen each rule's grid past the budget while its best lr is at an edge
    baselines: list[str] = field(default_factory=lambda: ["adamw", "lion"])


@dataclass
class SimplifyConfig:
    max_calls: int = 30  # scorer calls per winner (0: winners are exported as found)
    seeds: int = 3  # fresh seeds per call, at least (a Welch test needs two)


@dataclass
class SearchConfig:
    name: str = "search"
    strategy: str = "evolution"
    evaluations: int = 40
    seed: int = 0
    seeds: list[str] = field(default_factory=lambda: ["adamw", "lion", "signum"])
    device: str = "cpu"
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    funnel: list[StageConfig] | None = None
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    remeasure: RemeasureConfig = field(default_factory=RemeasureConfig)
    noise_z: float = 1.0
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    mutation: MutationConfig = field(default_factory=MutationConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    simplify: SimplifyConfig = field(default_factory=SimplifyConfig)

    def resolved(self) -> dict:
        """The full config with defaults filled in, loadable again: of ``proxy`` and ``funnel``
        (which exclude each other) only the one in use."""
        data = asdict(self)
        del data["proxy" if self.funnel is not None else "funnel"]
        return data


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
        if cls is SearchConfig and key == "funnel":
            setattr(obj, key, _build_stages(value))
        elif is_dataclass(default):
            setattr(obj, key, _build(type(default), value or {}, f"{prefix}{key}."))
        else:
            setattr(obj, key, _check_type(value, str(f.type), prefix + key))
    return obj


def _build_stages(value: Any) -> list[StageConfig] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError("config key 'funnel': expected a non-empty list of stages")
    return [_build(StageConfig, item, f"funnel[{i}].") for i, item in enumerate(value)]


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
                       ("validation.max_extra", cfg.validation.max_extra),
                       ("simplify.max_calls", cfg.simplify.max_calls),
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
    _validate_funnel(cfg)
    if "adamw" not in cfg.validation.baselines:
        cfg.validation.baselines = ["adamw", *cfg.validation.baselines]  # the fitness normaliser
    return cfg


def _validate_funnel(cfg: SearchConfig) -> None:
    from evaluators.suites import PRESETS
    from evaluators.tuning import TUNERS

    _positive(cfg.noise_z, "noise_z", allow_zero=True)
    _positive(cfg.remeasure.top_k, "remeasure.top_k", allow_zero=True)
    _positive(cfg.remeasure.seeds, "remeasure.seeds", allow_zero=True)
    if cfg.optuna.pruner not in ("auto", "none", "successive_halving", "hyperband"):
        raise ConfigError(f"config key 'optuna.pruner': {cfg.optuna.pruner!r} is not one of auto, none, "
                          "successive_halving, hyperband")
    if cfg.optuna.reduction_factor < 2:
        raise ConfigError(f"config key 'optuna.reduction_factor' must be >= 2, got {cfg.optuna.reduction_factor}")
    if cfg.simplify.seeds < 2:
        raise ConfigError("config key 'simplify.seeds' must be >= 2 (a Welch test needs two samples)")
    if cfg.reference.seeds < 2:
        raise ConfigError("config key 'reference.seeds' must be >= 2 (the seed-to-seed noise needs two)")
    if cfg.proxy.tuner not in TUNERS:
        raise ConfigError(f"config key 'proxy.tuner': {cfg.proxy.tuner!r} is not one of {', '.join(TUNERS)}")
    names = set()
    for i, st in enumerate(cfg.funnel or []):
        key = f"funnel[{i}]"
        if not st.name:
            raise ConfigError(f"config key '{key}.name': every stage needs a name")
        if st.name in names:
            raise ConfigError(f"config key '{key}.name': stage name {st.name!r} is used twice")
        names.add(st.name)
        for field_name in ("seeds", "budget"):
            _positive(getattr(st, field_name), f"{key}.{field_name}")
        _positive(st.max_extra, f"{key}.max_extra", allow_zero=True)
        if st.preset not in PRESETS:
            raise ConfigError(f"config key '{key}.preset': unknown preset {st.preset!r}; choose from "
                              f"{', '.join(PRESETS)}")
        if st.tuner not in TUNERS:
            raise ConfigError(f"config key '{key}.tuner': {st.tuner!r} is not one of {', '.join(TUNERS)}")
        p = st.promote
        if p.hurdle is not None and p.hurdle <= 0:
            raise ConfigError(f"config key '{key}.promote.hurdle' must be > 0, got {p.hurdle}")
        if p.top_fraction is not None and not 0 < p.top_fraction <= 1:
            raise ConfigError(f"config key '{key}.promote.top_fraction' must be in (0, 1], got {p.top_fraction}")
        last = i == len(cfg.funnel) - 1
        if last and (p.hurdle is not None or p.top_fraction is not None):
            raise ConfigError(f"config key '{key}.promote': the last stage has nothing to promote to")


def parse_config(data: Any) -> SearchConfig:
    data = data if data is not None else {}
    if isinstance(data, Mapping) and "funnel" in data and "proxy" in data:
        raise ConfigError("config keys 'proxy' and 'funnel' exclude each other: give the stages in "
                          "'funnel' (each with its suite, tasks, preset, seeds and budget)")
    return validate(_build(SearchConfig, data, ""))


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
