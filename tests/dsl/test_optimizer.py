"""ProgramOptimizer is a real torch.optim.Optimizer: it matches torch.optim.Adam on a real model,
round-trips its state_dict mid-run, honours param groups, closures, grad-less params, bf16 params
(fp32 state), routes and ensemble axes, validates its inputs, and reports rule failures as
RuleRuntimeError."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from ensemble_support import assert_stacked_equals_alone
from torch import nn

from dsl import ProgramOptimizer, RuleError, RuleRuntimeError, RuleValidationError, load_rule, parse


def _mlp(seed: int = 0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def _data(dtype=torch.float64):
    gen = torch.Generator().manual_seed(123)
    return torch.randn(64, 6, generator=gen, dtype=dtype), torch.randn(64, 3, generator=gen, dtype=dtype)


def _train(model, opt, steps, data):
    X, Y = data
    losses = []
    for _ in range(steps):
        def closure():
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(X), Y)
            loss.backward()
            return loss
        losses.append(opt.step(closure).item())
    return losses


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


# -- Adam against torch.optim.Adam on a real model ------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}])
def test_adam_rule_equals_torch_adam_over_100_steps(kwargs):
    data = _data()
    ref_model, our_model = _mlp(), _mlp()
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2, **kwargs)
    hp = {}
    if kwargs:
        hp = {"wd": kwargs["weight_decay"], "beta1": kwargs["betas"][0], "beta2": kwargs["betas"][1],
              "eps": kwargs["eps"]}
    ours = ProgramOptimizer(our_model.parameters(), "builtin:adam", lr=1e-2, **hp)
    ref_losses = _train(ref_model, ref, 100, data)
    our_losses = _train(our_model, ours, 100, data)
    assert our_losses[-1] < 0.95 * our_losses[0]                 # it trained
    assert _max_diff(ref_model, our_model) <= 1e-12
    assert max(abs(a - b) for a, b in zip(ref_losses, our_losses)) <= 1e-12
    for p_ref, p_ours in zip(ref_model.parameters(), our_model.parameters()):
        assert ours.state[p_ours]["step"] == 100
        torch.testing.assert_close(ours.state[p_ours]["m"], ref.state[p_ref]["exp_avg"], rtol=0, atol=1e-12)
        torch.testing.assert_close(ours.state[p_ours]["v"], ref.state[p_ref]["exp_avg_sq"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("via_bytes", [False, True])
def test_state_dict_at_step_50_continues_identically(via_bytes):
    data = _data()
    straight_model = _mlp()
    straight = ProgramOptimizer(straight_model.parameters(), "builtin:adamw", lr=1e-2, wd=0.1)
    _train(straight_model, straight, 100, data)

    first_model = _mlp()
    first = ProgramOptimizer(first_model.parameters(), "builtin:adamw", lr=1e-2, wd=0.1)
    _train(first_model, first, 50, data)
    saved_opt, saved_model = copy.deepcopy(first.state_dict()), copy.deepcopy(first_model.state_dict())
    _train(first_model, first, 10, data)                      # later steps must not leak into the save
    if via_bytes:
        buf = io.BytesIO()
        torch.save({"opt": saved_opt, "model": saved_model}, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)
        saved_opt, saved_model = loaded["opt"], loaded["model"]
    assert {k for st in saved_opt["state"].values() for k in st} == {"m", "v", "step"}
    assert all(st["step"] == 50 for st in saved_opt["state"].values())

    resumed_model = _mlp(seed=99)
    resumed_model.load_state_dict(saved_model)
    resumed = ProgramOptimizer(resumed_model.parameters(), "builtin:adamw", lr=1.0)   # groups come from the dict
    resumed.load_state_dict(saved_opt)
    assert resumed.param_groups[0]["lr"] == 1e-2 and resumed.param_groups[0]["wd"] == 0.1
    _train(resumed_model, resumed, 50, data)
    assert _max_diff(straight_model, resumed_model) == 0.0


def test_param_groups_override_hparams_and_lr():
    data = _data()
    ref_model, our_model = _mlp(), _mlp()
    r0, r1, r2 = list(ref_model.children())[::2]
    o0, o1, o2 = list(our_model.children())[::2]
    ref = torch.optim.Adam([{"params": r0.parameters(), "lr": 3e-2, "betas": (0.5, 0.999)},
                            {"params": r1.parameters(), "weight_decay": 0.3},
                            {"params": r2.parameters()}], lr=1e-2)
    ours = ProgramOptimizer([{"params": o0.parameters(), "lr": 3e-2, "beta1": 0.5},
                             {"params": o1.parameters(), "wd": 0.3},
                             {"params": o2.parameters()}], "builtin:adam", lr=1e-2)
    assert [g["lr"] for g in ours.param_groups] == [3e-2, 1e-2, 1e-2]
    assert [g["beta1"] for g in ours.param_groups] == [0.5, 0.9, 0.9]
    _train(ref_model, ref, 30, data)
    _train(our_model, ours, 30, data)
    assert _max_diff(ref_model, our_model) <= 1e-12
    # changing a group's hparams mid-run (as a scheduler would) takes effect on the next step
    for og, rg in zip(ours.param_groups, ref.param_groups):
        og["lr"], rg["lr"] = 5e-3, 5e-3
    ours.param_groups[2]["beta2"] = 0.9
    ref.param_groups[2]["betas"] = (0.9, 0.9)
    _train(ref_model, ref, 10, data)
    _train(our_model, ours, 10, data)
    assert _max_diff(ref_model, our_model) <= 1e-12


def test_closure_is_run_with_grad_and_its_loss_returned():
    model = _mlp()
    X, Y = _data()
    opt = ProgramOptimizer(model.parameters(), "builtin:adam", lr=1e-3)
    seen = []

    def closure():
        seen.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(X), Y)
        loss.backward()
        return loss

    out = opt.step(closure)
    assert seen == [True] and isinstance(out, torch.Tensor) and out.requires_grad
    assert out.item() == pytest.approx(nn.functional.mse_loss(_mlp()(X), Y).item(), rel=1e-12)
    assert opt.step() is None


def test_params_without_grad_are_skipped():
    gen = torch.Generator().manual_seed(1)
    a, b = (nn.Parameter(torch.randn(4, 3, generator=gen, dtype=torch.float64)) for _ in range(2))
    ra, rb = nn.Parameter(a.detach().clone()), nn.Parameter(b.detach().clone())
    ours = ProgramOptimizer([a, b], "builtin:adam", lr=0.1)
    ref = torch.optim.Adam([ra, rb], lr=0.1)
    b0 = b.detach().clone()
    for k in range(6):
        grad = torch.randn(4, 3, generator=gen, dtype=torch.float64)
        a.grad, ra.grad = grad.clone(), grad.clone()
        b.grad = rb.grad = None
        if k >= 3:                                            # b gets gradients from step 4 on
            b.grad, rb.grad = grad.clone() * 2, grad.clone() * 2
        ours.step()
        ref.step()
        if k < 3:
            assert b not in ours.state or not ours.state[b]
            assert torch.equal(b.detach(), b0)
    assert ours.state[a]["step"] == 6 and ours.state[b]["step"] == 3
    torch.testing.assert_close(a.detach(), ra.detach(), rtol=0, atol=1e-15)
    torch.testing.assert_close(b.detach(), rb.detach(), rtol=0, atol=1e-15)


def test_bf16_params_keep_fp32_state_and_update_in_fp32():
    gen = torch.Generator().manual_seed(2)
    init = torch.randn(8, 5, generator=gen).to(torch.bfloat16)
    p = nn.Parameter(init.clone())
    master = nn.Parameter(init.float())
    ours = ProgramOptimizer([p], "builtin:adamw", lr=1e-2)
    emul = ProgramOptimizer([master], "builtin:adamw", lr=1e-2)
    for _ in range(5):
        g = torch.randn(8, 5, generator=gen).to(torch.bfloat16)
        p.grad, master.grad = g.clone(), g.float()
        ours.step()
        emul.step()
        with torch.no_grad():            # a bf16 parameter: each step's result is rounded to bf16
            master.copy_(master.bfloat16().float())
        assert p.dtype == torch.bfloat16
        assert ours.state[p]["m"].dtype == torch.float32 and ours.state[p]["v"].dtype == torch.float32
        assert torch.equal(p.detach(), master.detach().bfloat16())
        assert torch.equal(ours.state[p]["m"], emul.state[master]["m"])
    # the state keeps float32 through a state_dict round trip (torch would cast it to bf16)
    fresh = ProgramOptimizer([p], "builtin:adamw", lr=1e-2)
    fresh.load_state_dict(copy.deepcopy(ours.state_dict()))
    assert fresh.state[p]["v"].dtype == torch.float32 and torch.equal(fresh.state[p]["v"], ours.state[p]["v"])
    assert ours.state_bytes() == 2 * 40 * 4


# -- routes ------------------------------------------------------------------------------------
TWO_ROUTES = "route matrix:\n  update = g * 2\nroute default:\n  update = g * 3\n"


def _one_step(params, rule, groups=None, **kw):
    opt = ProgramOptimizer(groups if groups is not None else params, rule, lr=1.0, **kw)
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return [round(float((b - p.detach()).flatten()[0]), 12) for b, p in zip(before, params)]


def test_default_routing_is_by_ndim():
    shapes = [(4, 3), (5,), (), (2, 3, 2, 2), (1, 7)]
    params = [nn.Parameter(torch.zeros(s)) for s in shapes]
    assert _one_step(params, parse(TWO_ROUTES)) == [2.0, 3.0, 3.0, 2.0, 2.0]


def test_a_group_may_name_its_route():
    params = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(5)), nn.Parameter(torch.zeros(4, 4))]
    groups = [{"params": params[:2], "route": "matrix"}, {"params": params[2:], "route": "default"}]
    assert _one_step(params, parse(TWO_ROUTES), groups) == [2.0, 2.0, 3.0]


def test_single_route_rules():
    params = [nn.Parameter(torch.zeros(4, 3)), nn.Parameter(torch.zeros(5))]
    assert _one_step(params, parse("update = g * 3")) == [3.0, 3.0]               # default serves all
    only_matrix = parse("route matrix:\n  update = g * 2")
    assert _one_step(params[:1], only_matrix) == [2.0]
    with pytest.raises(RuleRuntimeError, match=r"^rule has no 'default' route for a parameter of shape \(5,\)$"):
        _one_step(params, only_matrix)
    with pytest.raises(ValueError, match="route 'matrix' is not one of this rule's routes \\(default\\)"):
        ProgramOptimizer([{"params": params, "route": "matrix"}], parse("update = g"))


# -- ensemble axes ---------------------------------------------------------------------------------
ENSEMBLE_RULES = {
    "adamw": "builtin:adamw",
    "norm and rms": "hparams eps=1e-8\nm = lerp(m, g, 0.1)\n"
                    "update = m / (norm(m) + eps) + rms(g) * sign(g) + 0.01 * w\n",
    "global norm, mean, maxabs": "update = g / (global_norm(g) + 1e-6) + mean(g) - maxabs(w) * 0.01 * sign(w)\n",
    "trust ratio": "m = lerp(m, g, 0.1)\nupdate = trust_ratio(w, m) * m\n",
    "adafactor-like": "r = lerp(r, row_mean(g * g), 0.2)\nc = lerp(c, col_mean(g * g), 0.2)\n"
                      "u = g * rsqrt(factored(r, c) + 1e-12)\nupdate = u / max(1, rms(u))\n",
    "uses lr": "update = g * (1 + lr) + normalize(g) * lr\n",
    "muon routes": "route matrix:\n  m = lerp(m, g, 0.05)\n  update = orthogonalize(lerp(g, m, 0.95)) * aspect(g)\n"
                   "route default:\n  update = sign(g)\n",
}


@pytest.mark.parametrize("case", sorted(ENSEMBLE_RULES))
def test_batch_dims_with_tensor_lr_equals_separate_runs(case):
    rule = ENSEMBLE_RULES[case]
    # Newton-Schulz runs in bf16 for float32 input: a batched and a single bf16 matmul may round
    # differently on other CPUs, so the orthogonalising rule is checked on its float64 path
    dtype = torch.float64 if "orthogonalize" in rule else torch.float32
    rule = load_rule(rule) if rule.startswith("builtin:") else parse(rule)
    assert_stacked_equals_alone(rule, [(8, 4), (4,), (3, 2, 5), ()], dtype, steps=5, seed=3, atol=1e-6)


# -- validation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, groups, message", [
    ({"lr": -1.0}, None, "invalid lr: -1.0 (must be a finite number >= 0)"),
    ({"lr": math.nan}, None, "invalid lr: nan (must be a finite number >= 0)"),
    ({"lr": math.inf}, None, "invalid lr: inf (must be a finite number >= 0)"),
    ({"lr": "0.1"}, None, "invalid lr: '0.1' (must be a finite number >= 0)"),
    ({"lr": True}, None, "invalid lr: True (must be a finite number >= 0)"),
    ({"lr": torch.tensor([0.1, -0.1])}, [{"batch_dims": 1}], "lr must be finite and >= 0"),
    ({"lr": torch.tensor([0.1, math.inf])}, [{"batch_dims": 1}], "lr must be finite and >= 0"),
    ({"lr": torch.tensor([0.1, 0.2])}, None, "a tensor lr must be 0-d, or 1-d with batch_dims=1"),
    ({"lr": torch.ones(2, 2)}, [{"batch_dims": 1}], "a tensor lr must be 0-d, or 1-d with batch_dims=1"),
    ({"beta1": math.nan}, None, "invalid value for hparam 'beta1': nan (must be a finite number)"),
    ({"beta1": "0.9"}, None, "invalid value for hparam 'beta1': '0.9' (must be a finite number)"),
    ({"beta1": True}, None, "invalid value for hparam 'beta1': True (must be a finite number)"),
    ({}, [{"beta2": math.inf}], "invalid value for hparam 'beta2': inf (must be a finite number)"),
    ({}, [{"lr": -0.5}], "invalid lr: -0.5 (must be a finite number >= 0)"),
    ({"momentum": 0.9}, None, "unknown hparam(s) momentum for this rule (it has: beta1, beta2, eps, wd)"),
    ({}, [{"betas": (0.9, 0.99)}], "unknown param group key(s) betas"),
    ({}, [{"weight_decay": 0.1, "foo": 1}], "unknown param group key(s) foo, weight_decay"),
    ({}, [{"batch_dims": -1}], "batch_dims must be an int >= 0, got -1"),
    ({}, [{"batch_dims": 1.0}], "batch_dims must be an int >= 0, got 1.0"),
    ({}, [{"batch_dims": True}], "batch_dims must be an int >= 0, got True"),
    ({}, [{"route": "vector"}], "route 'vector' is not one of this rule's routes (default)"),
])
def test_bad_arguments_raise_value_error(kwargs, groups, message):
    p = nn.Parameter(torch.zeros(2, 3))
    params = [dict(params=[p], **g) for g in groups] if groups is not None else [p]
    with pytest.raises(ValueError) as info:
        ProgramOptimizer(params, "builtin:adam", **kwargs)
    assert str(info.value) == message


def test_unknown_rule_is_a_rule_error():
    with pytest.raises(RuleError, match="unknown builtin rule 'nope'"):
        ProgramOptimizer([nn.Parameter(torch.zeros(2))], "builtin:nope")


# -- failures at run time are RuleRuntimeErrors --------------------------------------------------------
def test_runtime_failures_are_rule_runtime_errors():
    p = nn.Parameter(torch.zeros(4, 3))
    opt = ProgramOptimizer([p], parse("update = g * h"), lr=0.1)
    opt.update_curvature({p: torch.ones(2, 2)})                    # wrong shape for this parameter
    p.grad = torch.ones(4, 3)
    with pytest.raises(RuleRuntimeError) as info:
        opt.step()
    assert str(info.value).startswith("route 'default' failed: The size of tensor a (3) must match")
    assert "\n" not in str(info.value) and info.value.__cause__ is None

    # a state_dict from another model: state of the wrong shape
    q = nn.Parameter(torch.zeros(4, 3))
    other = ProgramOptimizer([nn.Parameter(torch.zeros(5))], "builtin:adam", lr=0.1)
    other.param_groups[0]["params"][0].grad = torch.ones(5)
    other.step()
    opt2 = ProgramOptimizer([q], "builtin:adam", lr=0.1)
    opt2.load_state_dict(other.state_dict())
    q.grad = torch.ones(4, 3)
    with pytest.raises(RuleRuntimeError, match="^route 'default' failed: "):
        opt2.step()

    # shapes that cannot resolve are found (statically, on meta tensors) at the first step
    r = nn.Parameter(torch.zeros(4, 3))
    opt4 = ProgramOptimizer([r], parse("update = orthogonalize(g, w)"), lr=0.1)
    r.grad = torch.ones(4, 3)
    with pytest.raises(RuleValidationError, match="^route 'default': shapes do not resolve: "):
        opt4.step()
    assert torch.equal(r.detach(), torch.zeros(4, 3)) and "step" not in opt4.state[r]

    # sparse gradients
    s = nn.Parameter(torch.zeros(4, 3))
    opt3 = ProgramOptimizer([s], "builtin:adam", lr=0.1)
    s.grad = torch.zeros(4, 3).to_sparse()
    with pytest.raises(RuleRuntimeError, match="^sparse gradients are not supported$"):
        opt3.step()


def test_ensemble_lr_of_the_wrong_length_is_a_rule_error():
    p = nn.Parameter(torch.zeros(4, 3))
    opt = ProgramOptimizer([{"params": [p], "batch_dims": 1, "lr": torch.tensor([0.1, 0.2])}], "builtin:adam")
    p.grad = torch.ones(4, 3)
    with pytest.raises(RuleError, match="lr has 2 entries but the parameter's leading axis has 4"):
        opt.step()


def test_curvature_is_fed_and_averaged():
    p = nn.Parameter(torch.zeros(3))
    opt = ProgramOptimizer([p], parse("hparams hbeta=0.5\nupdate = g / (h + 1)"), lr=1.0)
    assert opt.reads_curvature
    opt.update_curvature({p: torch.full((3,), 3.0)})
    opt.update_curvature({p: torch.full((3,), 1.0)})
    # h starts at zero like all state: 0.5 * (0.5 * 0 + 0.5 * 3) + 0.5 * 1
    assert torch.equal(opt.state[p]["h"], torch.full((3,), 1.25))
    p.grad = torch.full((3,), 4.5)
    opt.step()
    assert torch.equal(p.detach(), torch.full((3,), -2.0))
    plain = ProgramOptimizer([p], parse("update = g / (h + 1)"), lr=1.0)   # no hbeta: h is the estimate
    plain.update_curvature({p: torch.full((3,), 3.0)})
    assert torch.equal(plain.state[p]["h"], torch.full((3,), 3.0))
    assert not ProgramOptimizer([p], load_rule("builtin:adam")).reads_curvature
