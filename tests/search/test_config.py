"""Search configs: defaults, strict keys, range checks, shipped names (search.config)."""

import pytest
import yaml

from search.config import ConfigError, SearchConfig, load_config, parse_config


def test_empty_config_is_all_defaults_and_resolves_to_plain_data():
    cfg = parse_config({})
    assert cfg == SearchConfig()
    resolved = cfg.resolved()
    assert resolved["proxy"]["suite"] == "proxy" and resolved["executor"]["kind"] == "serial"
    assert yaml.safe_load(yaml.safe_dump(resolved)) == resolved  # the run folder keeps it as YAML


@pytest.mark.parametrize("name", ["quickstart", "discover", "rediscovery"])
def test_a_run_folders_config_loads_back_to_the_same_search(name):
    """RUN/config.yaml is resolved(): loading it again gives the same config (it used to hold
    both 'proxy' and 'funnel', which a config may not)."""
    cfg = load_config(name)
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.resolved(), sort_keys=False)))
    assert again == cfg and again.resolved() == cfg.resolved()


def test_shipped_quickstart_loads_by_name():
    cfg = load_config("quickstart")
    assert cfg.name == "quickstart" and cfg.strategy == "evolution"
    assert cfg.proxy.tasks and cfg.validation.baselines[0] == "adamw"


@pytest.mark.parametrize("data, message", [
    ({"strategyy": "evolution"}, "unknown config key 'strategyy'"),
    ({"proxy": {"budgett": 3}}, "unknown config key 'proxy.budgett'"),
    ({"strategy": "annealing"}, "'annealing' is not one of evolution, optuna, random"),
    ({"evaluations": 0}, "'evaluations' must be > 0"),
    ({"evaluations": "many"}, "'evaluations': expected an integer"),
    ({"evaluations": True}, "'evaluations': expected an integer"),
    ({"proxy": {"preset": "huge"}}, "unknown preset 'huge'"),
    ({"proxy": 3}, "'proxy': expected a mapping"),
    ({"seeds": []}, "at least one seed rule"),
    ({"seeds": "adamw"}, "'seeds': expected a list of names"),
    ({"evolution": {"crossover_rate": 2}}, "crossover_rate' must be in [0, 1]"),
    ({"executor": {"num_gpus": -1}}, "'executor.num_gpus' must be >= 0"),
    ({"device": "tpu"}, "'tpu' is not cpu or cuda"),
    ({"name": None}, "'name' may not be null"),
    ({"funnel": [{"name": "a", "promote": {"top_fraction": 0}}, {"name": "b"}]},
     "'funnel[0].promote.top_fraction' must be in (0, 1]"),
    ({"funnel": [{"name": "a", "seeds": 0}]}, "'funnel[0].seeds' must be > 0"),
    ({"funnel": [{"name": "a", "budget": 2.5}]}, "'funnel[0].budget': expected an integer"),
    ({"funnel": [{"name": "a"}, {"name": "b", "promote": {"hurdle": 1.2}}]},
     "'funnel[1].promote': the last stage has nothing to promote to"),
    ({"funnel": [{"name": "a", "preset": "big"}]}, "'funnel[0].preset': unknown preset 'big'"),
    ({"funnel": [{"name": "a", "seed": 1}]}, "unknown config key 'funnel[0].seed'"),
    ({"funnel": [{"tasks": ["quadratic"]}]}, "'funnel[0].name': every stage needs a name"),
    ({"funnel": "cheap"}, "'funnel': expected a non-empty list of stages"),
    ({"funnel": [{"name": "a"}], "proxy": {"budget": 3}}, "'proxy' and 'funnel' exclude each other"),
    ({"reference": {"seeds": 1}}, "'reference.seeds' must be >= 2"),
    ({"remeasure": {"top_k": -1}}, "'remeasure.top_k' must be >= 0"),
    ({"noise_z": -1}, "'noise_z' must be >= 0"),
    ({"optuna": {"pruner": "median"}}, "'optuna.pruner': 'median' is not one of"),
])
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_numbers_are_coerced_and_adamw_is_always_a_validation_baseline():
    cfg = parse_config({"proxy": {"hurdle": 2}, "validation": {"baselines": ["lion"]},
                        "executor": {"timeout_s": None}})
    assert cfg.proxy.hurdle == 2.0 and isinstance(cfg.proxy.hurdle, float)
    assert cfg.validation.baselines == ["adamw", "lion"] and cfg.executor.timeout_s is None


def test_missing_or_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_a_funnel_resolves_against_its_suites():
    from search.engine import SearchError, funnel_plan

    cfg = parse_config({"funnel": [
        {"name": "cheap", "tasks": ["quadratic"], "preset": "tiny", "budget": 2, "promote": {"hurdle": 1.5}},
        {"name": "full", "tasks": ["quadratic", "digits_logreg"], "preset": "tiny", "seeds": 3}]})
    plan = funnel_plan(cfg)
    assert [s.name for s in plan.stages] == ["cheap", "full"] and plan.stages[0].promote.hurdle == 1.5
    assert plan.stages[1].eval_seeds == (1, 2, 3) and plan.stages[0].eval_seeds == (0,)
    shorthand = funnel_plan(parse_config({"proxy": {"tasks": ["quadratic", "digits_logreg"], "hurdle": 2.0}}))
    assert [s.name for s in shorthand.stages] == ["first", "proxy"]
    assert shorthand.stages[0].tasks == (("quadratic", None),) and shorthand.stages[0].promote.hurdle == 2.0
    with pytest.raises(SearchError, match=r"funnel\[0\]\.tasks: nope not in suite 'proxy'"):
        funnel_plan(parse_config({"funnel": [{"name": "a", "tasks": ["nope"]}]}))
