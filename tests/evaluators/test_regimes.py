"""Regime maps: every axis of the registry changes its tasks for real; axes and levels are
checked (the map itself runs in tests/search/test_cli_regimes.py)."""

from __future__ import annotations

import pytest

from evaluators.regimes import AXES, default_steps, parse_axes
from evaluators.tasks import get_task


@pytest.mark.parametrize("name", list(AXES))
def test_every_axis_changes_its_tasks(name):
    axis = AXES[name]
    assert axis.tasks and len(set(axis.levels)) == len(axis.levels) >= 3
    for task in axis.tasks:
        if axis.setting:  # a field of the task's preset config, set to each level
            assert axis.setting in get_task(task).settings("tiny")
            built = [get_task(task).config_with("tiny", axis.overrides(level)) for level in axis.levels]
            assert [getattr(c, axis.setting) for c in built] == list(axis.levels)
        else:  # the trainer's length or the learning rate: regime_map applies it
            assert name in ("lr", "steps") and axis.overrides(axis.levels[0]) == {}
            assert 1.0 in axis.levels  # the task as it is, for reference
    if name == "batch":
        problem = get_task("digits_mlp").build(0, "tiny", overrides=axis.overrides(8))
        assert problem.train_batch(0)[0].shape[0] == 8


def test_axes_and_levels_are_checked():
    assert parse_axes(["noise"], {"noise": [0.01]}) == [("noise", (0.01,))]
    assert parse_axes(["steps"])[0][1] == AXES["steps"].levels
    with pytest.raises(ValueError, match="unknown axis 'size'; choose from batch"):
        parse_axes(["size"])
    with pytest.raises(ValueError, match="must be positive numbers"):
        parse_axes(["lr"], {"lr": [-1.0]})
    assert default_steps("quadratic", "tiny") == 60
