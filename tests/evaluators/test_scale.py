"""A rule's own update scale places its lr grid (evaluators.scale): constants do not pay.

A rule and the same rule with its update multiplied by c are one optimizer with a different lr;
the fitness must not tell them apart. Before this, `optforge evaluate` gave SGD-momentum 1.256
and the same rule x 0.01 a fitness of 16.45 on the proxy suite (the grid never reached its lr).
"""

import pytest

from dsl import load_rule
from dsl.parser import parse
from evaluators.evaluate import Settings, TaskPlan, evaluate
from evaluators.scale import relative_scale, update_scale

MOMENTUM = "hparams momentum=0.9\nbuf = momentum * buf + g\nupdate = {c} * buf\n"


def rule(c, name="m"):
    return parse(MOMENTUM.format(c=c), name=name)


def test_the_measured_scale_is_proportional_to_the_update():
    base = update_scale("digits_mlp", rule(1), preset="tiny")
    for c in (0.01, 100.0):
        assert update_scale("digits_mlp", rule(c), preset="tiny") / base == pytest.approx(c, rel=1e-5)
    adamw = update_scale("digits_mlp", "builtin:adamw", preset="tiny")
    assert 0.1 < adamw < 1.5  # Adam's first steps are about sign(g): RMS near 1


def test_a_rule_without_a_usable_update_keeps_the_default_grid():
    assert relative_scale(float("nan"), 1.0) == 1.0 and relative_scale(0.0, 1.0) == 1.0
    assert relative_scale(2.0, 1.0) == 0.5


@pytest.mark.slow
def test_fitness_does_not_depend_on_a_constant_factor():
    settings = Settings(suite="t", tasks=(TaskPlan("digits_mlp"), TaskPlan("quadratic")), seeds=2, budget=4,
                        preset="tiny")
    baselines = {"adamw": load_rule("builtin:adamw")}
    fits = {c: evaluate(rule(c, f"x{c}"), baselines, settings).fitness[f"x{c}"].value for c in (0.01, 1, 100)}
    assert max(fits.values()) / min(fits.values()) - 1 < 0.01, fits
    # without the scale the grid rewards the constant that lands the rule near it: the old bug
    fixed = Settings(**{**settings.__dict__, "scale_invariant": False})
    old = {c: evaluate(rule(c, f"x{c}"), baselines, fixed).fitness[f"x{c}"].value for c in (0.01, 100)}
    assert old[0.01] / old[100] > 2
