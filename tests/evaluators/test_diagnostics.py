"""Diagnostics of training runs: sharpness against exact eigenvalues, update RMS per member,
the generalisation gap, JSON round trips, and the task-config override hook."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from evaluators import diagnostics as dg
from evaluators.results import jsonable
from evaluators.tasks import get_task
from evaluators.train import RunResult, run_lr_grid, run_training, task_settings


def _symmetric(eigenvalues, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen,
                                       dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def _quadratic_loss(matrices: torch.Tensor, w: torch.Tensor):
    """Per-member 0.5 w^T A w for stacked w [E, d] and A [E, d, d]: Hessian A per member."""
    return lambda: 0.5 * torch.einsum("ei,eij,ej->e", w, matrices, w)


def test_sharpness_matches_the_exact_top_eigenvalue_of_a_quadratic():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    matrix = a @ a.T / 12  # positive semi-definite, a spread spectrum
    w = torch.randn(12, generator=gen, dtype=torch.float64, requires_grad=True)
    values, used = dg.top_hessian_eigenvalue(lambda: (0.5 * w @ matrix @ w).reshape(1), [w],
                                             iters=2000, tol=1e-13)
    exact = float(np.linalg.eigvalsh(matrix.numpy()).max())
    assert values[0] == pytest.approx(exact, rel=1e-9) and used < 2000


def test_a_dominant_negative_eigenvalue_is_shifted_away_to_find_the_largest():
    matrix = _symmetric([-5.0, 3.0, 1.0, 0.5])
    w = torch.ones(1, 4, dtype=torch.float64, requires_grad=True)
    values, _ = dg.top_hessian_eigenvalue(_quadratic_loss(matrix[None], w), [w], batch_dims=1,
                                          iters=3000, tol=1e-14)
    assert values[0] == pytest.approx(3.0, rel=1e-8)


def test_stacked_members_get_their_own_eigenvalue():
    matrices = torch.stack([_symmetric([7.0, 2.0, 1.0]), _symmetric([0.5, 0.25, 0.1], seed=1)])
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    values, _ = dg.top_hessian_eigenvalue(_quadratic_loss(matrices, w), [w], batch_dims=1,
                                          iters=2000, tol=1e-13)
    assert values == pytest.approx([7.0, 0.5], rel=1e-8)


def test_a_training_run_records_its_diagnostics():
    run = run_training("quadratic", "builtin:adamw", 1e-2, seed=1, preset="tiny")
    d = run.diagnostics
    top = get_task("quadratic").config("tiny").top_eigenvalue  # the loss's Hessian is H exactly
    assert d.sharpness == pytest.approx(top, rel=1e-3) and d.sharpness_iters > 0
    assert d.params == 16
    assert d.generalization_gap == pytest.approx(run.final_val_loss - run.final_train_loss)
    steps = [s for s, _, _ in d.update_curve]
    assert steps == [s for s, _ in run.val_curve[1:]]  # probed on the step before each evaluation
    assert all(u > 0 and r > 0 for _, u, r in d.update_curve)
    assert d.update_rms == pytest.approx(float(np.median([u for _, u, _ in d.update_curve])))
    # warmup then cosine decay to zero: the last probed step is far smaller than the first
    assert d.update_curve[-1][1] < 0.01 * d.update_curve[0][1]


def test_sharpness_is_skipped_on_models_above_the_parameter_limit(monkeypatch):
    monkeypatch.setattr(dg, "SHARPNESS_MAX_PARAMS", 10)
    run = run_training("quadratic", "builtin:adamw", 1e-2, seed=1, preset="tiny")
    assert run.diagnostics.sharpness is None and run.diagnostics.sharpness_iters == 0
    assert run.diagnostics.update_rms is not None


def test_a_diverged_run_has_no_gap_and_no_sharpness():
    run = run_training("quadratic", "builtin:sgd", 1e3, seed=1, preset="tiny")
    assert run.diverged
    assert run.diagnostics.generalization_gap is None and run.diagnostics.sharpness is None


def test_stacked_runs_give_each_member_its_own_diagnostics():
    lrs = [1e-3, 3e-2]
    stacked = run_lr_grid("digits_mlp", "builtin:adamw", lrs, seed=2, preset="tiny", batched=True)
    alone = run_lr_grid("digits_mlp", "builtin:adamw", lrs, seed=2, preset="tiny", batched=False)
    for s, a in zip(stacked, alone):
        assert s.diagnostics.update_rms == pytest.approx(a.diagnostics.update_rms, rel=1e-5)
        assert s.diagnostics.update_ratio == pytest.approx(a.diagnostics.update_ratio, rel=1e-5)
        assert s.diagnostics.sharpness == pytest.approx(a.diagnostics.sharpness, rel=2e-3)
    assert stacked[0].diagnostics.update_rms < stacked[1].diagnostics.update_rms


def test_run_results_round_trip_through_strict_json_with_diagnostics():
    run = run_training("digits_logreg", "builtin:adamw", 1e-2, seed=1, preset="tiny")
    text = json.dumps(jsonable(run.to_dict()), allow_nan=False)
    assert RunResult.from_dict(json.loads(text)) == run
    old = run.to_dict()
    del old["diagnostics"]  # a results.json from before diagnostics still loads
    assert RunResult.from_dict(old).diagnostics == dg.Diagnostics()


def test_task_settings_change_the_preset_config_and_bad_keys_name_themselves():
    task = get_task("digits_mlp")
    assert task.settings("tiny")["batch_size"] == 32
    problem = task.build(0, "tiny", overrides={"batch_size": 8})
    assert problem.train_batch(0)[0].shape[0] == 8
    with task_settings({"digits_mlp": {"batch_size": 4}}):
        run = run_training("digits_mlp", "builtin:adamw", 1e-2, seed=1, preset="tiny", steps=6)
    assert math.isfinite(run.final_val_loss)
    with pytest.raises(ValueError, match="no setting 'batch'"):
        task.config_with("tiny", {"batch": 8})
    with pytest.raises(ValueError, match="'batch_size': expected int"):
        task.config_with("tiny", {"batch_size": 2.5})
    assert get_task("quadratic").config_with("tiny", {"condition": 10}).condition == 10.0
