"""The language features of the frontier, each in the interpreter and in the exported class.

- lazy choices: the branch `every` / `when` does not take never runs (counted eigendecompositions),
  in ProgramOptimizer and in the export's `if`; conditions must be scalars of t (not tensors, not
  lr) and both branches one shape;
- `next_w` (w <- next_w) and the evaluation point `eval_w`: eval() / train() swap it exactly,
  step() refuses eval mode, a state_dict saved in eval mode resumes in eval mode;
- `w0`, the first-step parameter, kept (and counted) as state;
- group reductions over every bucket a route steps together (step counts and dtypes mixed), one
  semantics in ProgramOptimizer and in the export.
"""

from __future__ import annotations

import io
from unittest import mock

import pytest
import torch
from export_support import exported_class, exported_module, max_diff, params, run_side_by_side
from zoo_references import one_thread  # noqa: F401  (autouse fixture)

from dsl import ProgramOptimizer, RuleRuntimeError, RuleValidationError, parse

EIGH = torch.linalg.eigh


def _count_eigh(run) -> int:
    calls = []

    def counted(*args, **kwargs):
        if args[0].device.type != "meta":      # shape discovery runs every branch on meta tensors
            calls.append(1)
        return EIGH(*args, **kwargs)

    with mock.patch.object(torch.linalg, "eigh", counted):
        run()
    return len(calls)


def _steps(opt, ps, steps: int, seed: int = 5) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        opt.step()


LAZY = parse("hparams k=3\nL = lerp(L, lgram(g), 0.5)\nLi = every(k, inv_root(L, 2, 1e-6), Li)\n"
             "update = matmul(Li, g) + 0.1 * g\n", name="lazy_refresh")


@pytest.mark.parametrize("make", ["interpreter", "export"])
def test_the_branch_not_taken_never_runs(make):
    """every(3, ...) refreshes at t = 1, 4, 7: three eigh calls per matrix in seven steps."""
    ps = params(1, torch.float64, [(4, 3), (5, 2)])
    cls = ProgramOptimizer if make == "interpreter" else exported_class(LAZY)
    opt = cls(ps, LAZY, lr=0.01) if make == "interpreter" else cls(ps, lr=0.01)
    assert _count_eigh(lambda: _steps(opt, ps, 7)) == 3 * 2
    if make == "export":
        assert "    if branch1:" in exported_module(LAZY).__source__


def test_lazy_rules_export_with_the_interpreters_numerics():
    a, b, _, _ = run_side_by_side(LAZY, steps=8)
    assert max_diff(a, b) == 0.0


@pytest.mark.parametrize("text, message", [
    ("update = when(g, g, 2 * g)", "condition of when"),
    ("update = when(lr - 0.1, g, 2 * g)", "not of lr"),
    ("x = every(g, g, w)\nupdate = x", "every()'s k"),
    ("update = when(2 - t, g, lgram(g))", "branches of when() must be tensors of one shape"),
    ("update = when(2 - t, g, 1)", "branches of when() must be tensors of one shape"),
])
def test_conditions_are_scalars_of_t_and_branches_one_shape(text, message):
    ps = params(1, torch.float64, [(4, 3)])
    opt = ProgramOptimizer(ps, parse(text), lr=0.01)
    with pytest.raises(RuleValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _steps(opt, ps, 1)


# -- next_w and the evaluation point ---------------------------------------------------------------
def test_next_w_sets_the_weights():
    """w <- next_w: `next_w = w - lr * g` is SGD, and a frozen group at lr = 0 stays bit for bit."""
    rule = parse("next_w = w + -lr * g\n", name="sgd_by_next_w")
    a, b = params(2, torch.float64), params(2, torch.float64)
    ours = ProgramOptimizer([{"params": a[:1], "lr": 0.0}, {"params": a[1:]}], rule, lr=0.1)
    sgd = torch.optim.SGD([{"params": b[:1], "lr": 0.0}, {"params": b[1:]}], lr=0.1)
    for _ in range(3):
        for x, y in zip(a, b):
            x.grad = torch.randn(x.shape, dtype=torch.float64)
            y.grad = x.grad.clone()
        ours.step()
        sgd.step()
    assert max_diff(a, b) == 0.0 and torch.equal(a[0], params(2, torch.float64)[0])


@pytest.mark.parametrize("text, message", [
    ("update = g\nnext_w = w - g", "both 'update' and 'next_w'"),
    ("x = next_w\nnext_w = w - g", "'next_w' cannot be state"),
    ("m = eval_w\nupdate = g\neval_w = w", "'eval_w' cannot be state"),
])
def test_outputs_are_written_not_read(text, message):
    with pytest.raises(RuleValidationError, match=message):
        parse(text)


AVERAGED = parse("hparams beta=0.5\nnext_w = w - lr * g\nx = lerp(x, next_w, when(2 - t, 1, 1 - beta))\n"
                 "eval_w = x\n", name="averaged_sgd")


@pytest.mark.parametrize("make", ["interpreter", "export"])
def test_eval_and_train_swap_the_evaluation_point_exactly(make):
    ps = params(3, torch.float64, [(4, 3), (5,)])
    opt = ProgramOptimizer(ps, AVERAGED, lr=0.1) if make == "interpreter" else exported_class(AVERAGED)(ps, lr=0.1)
    _steps(opt, ps, 4)
    train_point = [p.detach().clone() for p in ps]
    averages = [opt.state[p]["eval_w"].clone() for p in ps]
    opt.eval()
    assert max_diff(ps, averages) == 0.0 and all(not g["train_mode"] for g in opt.param_groups)
    with pytest.raises((RuleRuntimeError, RuntimeError), match="eval mode"):
        opt.step()
    opt.eval()                                       # twice: still the evaluation point
    assert max_diff(ps, averages) == 0.0
    opt.train()
    assert max_diff(ps, train_point) == 0.0
    assert max_diff([opt.state[p]["eval_w"] for p in ps], averages) == 0.0


@pytest.mark.parametrize("make", ["interpreter", "export"])
def test_a_state_dict_saved_in_eval_mode_resumes_in_eval_mode(make):
    """Saved at the evaluation point (as the reference recommends checkpoints): the model holds x,
    the state holds y; after load, train() and more steps equal the run never interrupted."""
    def build(ps):
        return ProgramOptimizer(ps, AVERAGED, lr=0.1) if make == "interpreter" else \
            exported_class(AVERAGED)(ps, lr=0.1)

    full = params(4, torch.float64, [(4, 3), (5,)])
    opt = build(full)
    _steps(opt, full, 3, seed=6)
    opt.eval()
    buffer = io.BytesIO()
    torch.save({"params": [p.detach().clone() for p in full], "opt": opt.state_dict()}, buffer)
    opt.train()
    _steps(opt, full, 3, seed=7)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed = [torch.nn.Parameter(p) for p in saved["params"]]
    fresh = build(resumed)
    fresh.load_state_dict(saved["opt"])
    assert all(not g["train_mode"] for g in fresh.param_groups)
    fresh.train()
    _steps(fresh, resumed, 3, seed=7)
    assert max_diff(full, resumed) == 0.0


def test_rules_without_an_evaluation_point_have_no_mode():
    ps = params(5, torch.float64, [(3,)])
    opt = ProgramOptimizer(ps, "builtin:adamw", lr=0.1)
    opt.eval()
    opt.train()
    assert "train_mode" not in opt.param_groups[0]
    assert not hasattr(exported_class("builtin:adamw"), "eval")


# -- w0 -----------------------------------------------------------------------------------------------
def test_w0_is_the_first_step_parameter_kept_as_state():
    rule = parse("update = g + 0.5 * (w - w0)\n", name="pull_back")
    a, b, opt_a, opt_b = run_side_by_side(rule, steps=4)
    assert max_diff(a, b) == 0.0
    start = params()
    for p, p0 in zip(a, start):
        torch.testing.assert_close(opt_a.state[p]["w0"], p0.detach(), rtol=0, atol=0)
    assert opt_a.state_bytes() == sum(p.numel() * 8 for p in a)        # w0 in float64, nothing else


# -- group reductions over every bucket -------------------------------------------------------------
GROUP = parse("s = global_sum(abs(g))\nn = global_dot(g, w)\nupdate = g / (s + 1) + 0.01 * n\n",
              name="group_sums")


def _two_buckets(cls, dtype_b):
    """Three parameters of one group: the third misses step 1 (another step count), the second
    may have another dtype: every step reduces over all that have a gradient."""
    ps = [torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3)),
          torch.nn.Parameter(torch.linspace(0, 2, 4, dtype=dtype_b)),
          torch.nn.Parameter(torch.linspace(1, 3, 3, dtype=torch.float64))]
    opt = cls(ps)
    gen = torch.Generator().manual_seed(9)
    for k in range(3):
        for i, p in enumerate(ps):
            grad = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            p.grad = None if (k == 0 and i == 2) else grad
        opt.step()
    return ps, opt


@pytest.mark.parametrize("dtype_b", [torch.float64, torch.float32])
def test_group_reductions_cover_every_bucket_in_both(dtype_b):
    ours, opt = _two_buckets(lambda ps: ProgramOptimizer(ps, GROUP, lr=0.1), dtype_b)
    theirs, _ = _two_buckets(lambda ps: exported_class(GROUP)(ps, lr=0.1), dtype_b)
    assert [opt.state[p]["step"] for p in ours] == [3, 3, 2]          # two step counts in one group
    assert max_diff(ours, theirs) == 0.0
    # by hand: the first step reduces over the two parameters with a gradient
    ps = [torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3), torch.linspace(0, 2, 4, dtype=dtype_b)]
    gen = torch.Generator().manual_seed(9)
    g = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) for p in ps]
    s = sum(float(x.abs().sum()) for x in g)
    n = sum(float((x * p).sum()) for x, p in zip(g, ps))
    first = ps[0] - 0.1 * (g[0] / (s + 1) + 0.01 * n)
    probe = [torch.nn.Parameter(p.clone()) for p in ps]
    one = ProgramOptimizer(probe, GROUP, lr=0.1)
    for p, x in zip(probe, g):
        p.grad = x.clone()
    one.step()
    torch.testing.assert_close(probe[0].detach(), first, rtol=1e-12, atol=1e-12)
