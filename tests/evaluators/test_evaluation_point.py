"""Validation runs at the optimizer's evaluation point: the trainer brackets every validation with
optimizer.eval() / optimizer.train() where the optimizer has them (Schedule-Free's x), and trains
in train mode; a rule with an eval point trains and reports through the whole recipe."""

from __future__ import annotations

import math

import pytest
import schedulefree
import torch

from evaluators.train import TorchRule, run_training


class _Modal(torch.optim.SGD):
    """SGD that records the trainer's eval()/train() calls and refuses to step in eval mode."""

    log: list[str] = []

    def eval(self):
        _Modal.log.append("eval")

    def train(self):
        _Modal.log.append("train")

    def step(self, closure=None):
        modes = [e for e in _Modal.log if e != "step"]
        assert not modes or modes[-1] == "train", "step() at the evaluation point"
        _Modal.log.append("step")
        return super().step(closure)


MODAL = TorchRule("test:modal-sgd", lambda groups, lr: _Modal([{"params": g["params"]} for g in groups], lr=lr))


def test_every_validation_is_at_the_evaluation_point():
    _Modal.log = []
    result = run_training("quadratic", MODAL, 1e-2, preset="tiny")
    evals = [k for k, e in enumerate(_Modal.log) if e == "eval"]
    assert len(evals) == len(result.val_curve)          # the initial point and every evaluation
    assert all(_Modal.log[k + 1] == "train" for k in evals)
    assert _Modal.log.count("step") == result.steps


def _reference_schedule_free(groups, lr):
    opt = schedulefree.AdamWScheduleFree([{"params": g["params"]} for g in groups], lr=lr, foreach=False)
    opt.train()
    return opt


SCHEDULE_FREE = TorchRule("test:schedulefree-1.4.1", _reference_schedule_free)


@pytest.mark.parametrize("lr", [1e-2, 3e-2])
def test_schedule_free_through_the_recipe_equals_the_reference(lr):
    """builtin:schedule_free_adamw and schedulefree's AdamWScheduleFree (same defaults), each
    validated at its x by the trainer: the same curves (float32 training; at lr = 3e-2 both leave
    the divergence bound at the same step, y overshooting the tiny quadratic)."""
    ours = run_training("quadratic", "builtin:schedule_free_adamw", lr, preset="tiny")
    ref = run_training("quadratic", SCHEDULE_FREE, lr, preset="tiny")
    assert (ours.diverged, ours.steps, len(ours.val_curve)) == (ref.diverged, ref.steps, len(ref.val_curve))
    for (s, a), (r, b) in zip(ours.val_curve, ref.val_curve):
        assert s == r and math.isclose(a, b, rel_tol=1e-4), (s, a, b)
    assert ours.diverged or ours.val_curve[-1][1] < ours.val_curve[0][1]
