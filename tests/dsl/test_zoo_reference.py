"""Every builtin rule matches its reference implementation numerically.

One table (`CASES`) maps a builtin rule and hparams to a reference optimizer with the same
hparams: torch.optim and lion-pytorch where installed, else the transcriptions in
`zoo_references.py`. Each case runs 100 steps on two problems from the same initial weights:
- `random`: fixed random gradients for a vector, a tall and a wide matrix and a 4-D conv filter;
- `network`: a small conv + MLP classifier on fixed random data, gradients computed once per step
  from the REFERENCE's weights and fed to both optimizers (so only the update rules differ).
Tolerances (max |delta theta| over all parameters after 100 steps): 1e-10 in float64, 1e-5 in
float32. Non-default hparams are used so that every term of each rule is exercised. One
documented exception: Adafactor at lr=0.3 is judged relative to the weight scale (see its case).

Muon's Newton-Schulz runs in bfloat16, where op order changes results by a few percent
(references/optimizers.md sections 1.10 and 14.3). So Muon is checked (a) in float64 against
Keller's code (and against torch.optim.Muon for 2-D weights, with its Newton-Schulz replaced by
the float64 one: torch's differs only by max(||X||, eps) vs ||X|| + eps and addmm fusion), and
(b) in float32 with the real bfloat16 iteration, step by step, weights re-synchronised after
every step: each update within 5e-2 (relative, Frobenius) of Keller's; against torch.optim.Muon,
whose own bf16 op order is up to 14% away from Keller's on small matrices, within 5e-2 on
average and never further from torch than Keller's code is.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
import zoo_references as Z
from frontier_references import frontier_rules
from lion_pytorch import Lion
from zoo_references import one_thread  # noqa: F401  (autouse fixture)

import dsl
from dsl import ProgramOptimizer

STEPS = 100
CURVATURE_EVERY = 10
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}
MUON_BF16_RTOL = 5e-2
SHAPES = ((7,), (12, 5), (5, 12), (4, 3, 3, 2))  # vector, tall, wide, conv filter (kh != kw)


# -- problems -----------------------------------------------------------------------------------
@dataclass
class Problem:
    init: list[torch.Tensor]
    grads: Callable[[int, list[torch.Tensor]], list[torch.Tensor]]
    curvature: Callable[[int, list[torch.Tensor]], list[torch.Tensor]]
    heads: tuple[int, ...] = ()     # classifier heads: Muon puts them on its Adam (default) route


def clone_params(prob: Problem) -> list[torch.Tensor]:
    params = [p.clone() for p in prob.init]
    for i in prob.heads:
        params[i].zoo_head = True
    return params


def is_head(p: torch.Tensor) -> bool:
    return getattr(p, "zoo_head", False)


def our_optimizer(params, rule: str, lr: float, **hparams) -> ProgramOptimizer:
    """ProgramOptimizer over `params`, heads in a group of their own on the default route."""
    groups = [{"params": [p for p in params if not is_head(p)]}]
    if any(is_head(p) for p in params):
        groups.append({"params": [p for p in params if is_head(p)], "route": "default"})
    return ProgramOptimizer(groups, f"builtin:{rule}", lr=lr, **hparams)


def random_problem(dtype: torch.dtype) -> Problem:
    gen = torch.Generator().manual_seed(0)
    init = [0.5 * torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in SHAPES]
    drift = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
    seq = [[(0.3 * d + torch.randn(s, generator=gen, dtype=torch.float64)
             * (1 + 0.5 * math.sin(k))).to(dtype) for s, d in zip(SHAPES, drift)]
           for k in range(STEPS)]
    est = [[torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in SHAPES]
           for _ in range(STEPS)]
    return Problem(init, lambda k, _: seq[k], lambda k, _: est[k])


def _loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    cw, cb, w1, b1, w2, b2, w3, b3 = params
    h = torch.relu(F.conv2d(x, cw, cb)).flatten(1)
    h = torch.tanh(F.linear(h, w1, b1))
    h = torch.tanh(F.linear(h, w2, b2))
    return F.cross_entropy(F.linear(h, w3, b3), y)


def network_problem(dtype: torch.dtype) -> Problem:
    """conv (4,2,3,2) -> relu -> linear 64->10 (wide) -> tanh -> 10->24 (tall) -> tanh -> 24->3.

    The 24->3 head's gradient has rank 2 (softmax gradients sum to 0 over the classes): Muon
    routes it to Adam, as Keller's README does for heads (bf16 Newton-Schulz of a rank-deficient
    matrix amplifies rounding noise in the null direction: 60% away from float64)."""
    gen = torch.Generator().manual_seed(1)

    def rand(*shape, scale=1.0):
        return (scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)

    init = [rand(4, 2, 3, 2, scale=0.4), rand(4, scale=0.1), rand(10, 64, scale=0.15),
            rand(10, scale=0.1), rand(24, 10, scale=0.3), rand(24, scale=0.1),
            rand(3, 24, scale=0.2), rand(3, scale=0.1)]
    xs = [rand(16, 2, 6, 5) for _ in range(4)]
    ys = [torch.randint(0, 3, (16,), generator=gen) for _ in range(4)]

    def grads(k, params):
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        return list(torch.autograd.grad(_loss(leaves, xs[k % 4], ys[k % 4]), leaves))

    def curvature(k, params):
        # Gauss-Newton-Bartlett as in Sophia: labels sampled from the model's own logits.
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        x = xs[(k + 1) % 4]
        with torch.no_grad():
            cw, cb, w1, b1, w2, b2, w3, b3 = leaves
            h = torch.tanh(F.linear(torch.relu(F.conv2d(x, cw, cb)).flatten(1), w1, b1))
            logits = F.linear(torch.tanh(F.linear(h, w2, b2)), w3, b3)
            y = torch.multinomial(torch.softmax(logits.double(), -1), 1, generator=gen)[:, 0]
        return list(torch.autograd.grad(_loss(leaves, x, y), leaves))

    return Problem(init, grads, curvature, heads=(6,))


PROBLEMS = {"random": random_problem, "network": network_problem}


# -- the table ------------------------------------------------------------------------------
Factory = Callable[[list[torch.Tensor], float], torch.optim.Optimizer]


@dataclass(frozen=True)
class Case:
    id: str
    rule: str                       # builtin name
    hparams: dict                   # the rule's hparams
    reference: Factory              # (params, lr) -> reference optimizer, same hparams
    lr: float
    dtypes: tuple = (torch.float64, torch.float32)
    curvature: bool = False         # feed Sophia-style curvature every CURVATURE_EVERY steps
    ref_step: dict = field(default_factory=dict)
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    # Compare max |dtheta| / max(1, max |theta|): for rules whose step is relative to the weights
    # (Adafactor), which grow far from unit scale on the random problem.
    relative_to_weights: bool = False


def torch_opt(cls, **kw) -> Factory:
    return lambda params, lr: cls(params, lr=lr, foreach=False, **kw)


class DecoupledDecay(torch.optim.Optimizer):
    """A reference with decoupled decay w <- w*(1 - lr*wd) applied before its step: the `+ wd*w`
    that powersign/addsign add to Bello et al.'s rules, which have none."""

    def __init__(self, inner: torch.optim.Optimizer, wd: float):
        self.inner, self.wd = inner, wd
        super().__init__([p for g in inner.param_groups for p in g["params"]], {})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.inner.param_groups:
            for p in g["params"]:
                p.mul_(1 - g["lr"] * self.wd)
        self.inner.step()


def keller_muon(momentum, betas, eps, wd, aux_lr_ratio, ns_dtype=None, torch_2d=False) -> Factory:
    """Keller's SingleDeviceMuonWithAuxAdam (Muon for ndim >= 2, aux Adam at lr*aux_lr_ratio);
    with `torch_2d`, torch.optim.Muon takes the 2-D matrices instead."""

    def make(params, lr):
        dtype = ns_dtype or params[0].dtype
        body = [p for p in params if p.ndim >= 2 and not is_head(p)]
        mats = [p for p in body if not (torch_2d and p.ndim == 2)]
        vecs = [p for p in params if p.ndim < 2 or is_head(p)]
        groups = [dict(params=vecs, lr=lr * aux_lr_ratio, betas=betas, eps=eps, weight_decay=wd,
                       use_muon=False)]
        if mats:
            groups.append(dict(params=mats, lr=lr, momentum=momentum, weight_decay=wd,
                               use_muon=True))
        keller = Z.KellerMuonWithAuxAdam(groups, ns_dtype=dtype)
        if not torch_2d:
            return keller
        two_d = [p for p in body if p.ndim == 2]
        return Z.Composite(torch.optim.Muon(two_d, lr=lr, weight_decay=wd, momentum=momentum,
                                            nesterov=True, adjust_lr_fn="original"), keller)
    return make


def float64_torch_ns(grad, ns_coefficients, ns_steps, eps):
    """torch.optim.Muon's Newton-Schulz hook, replaced by the float64 quintic (Keller's form)."""
    assert ns_coefficients == (3.4445, -4.7750, 2.0315) and eps == 1e-7
    return Z.zeropower_via_newtonschulz5(grad, ns_steps, dtype=torch.float64)


def patched_torch_muon():
    return mock.patch.object(torch.optim._muon, "_zeropower_via_newtonschulz", float64_torch_ns)


S = torch.optim
ADAM_HP = dict(beta1=0.8, beta2=0.99, eps=1e-6)
ADAM_KW = dict(betas=(0.8, 0.99), eps=1e-6)
CASES: list[Case] = [
    Case("sgd-momentum-dampening", "sgd", dict(momentum=0.9, dampening=0.3, wd=0.05),
         torch_opt(S.SGD, momentum=0.9, dampening=0.3, weight_decay=0.05), lr=0.05),
    Case("sgd-nesterov", "sgd", dict(momentum=0.8, nesterov=1, wd=0.01),
         torch_opt(S.SGD, momentum=0.8, nesterov=True, weight_decay=0.01), lr=0.05),
    Case("sgd-plain", "sgd", dict(momentum=0, dampening=0.5, wd=0.02),
         torch_opt(S.SGD, momentum=0, dampening=0.5, weight_decay=0.02), lr=0.05),
    Case("adagrad", "adagrad",
         dict(lr_decay=0.01, eps=1e-6, initial_accumulator_value=0.1, wd=0.01),
         torch_opt(S.Adagrad, lr_decay=0.01, eps=1e-6, initial_accumulator_value=0.1,
                   weight_decay=0.01), lr=0.1),
    Case("rmsprop", "rmsprop", dict(alpha=0.9, eps=1e-6, wd=0.01),
         torch_opt(S.RMSprop, alpha=0.9, eps=1e-6, weight_decay=0.01), lr=0.01),
    Case("rmsprop-centered", "rmsprop_centered", dict(alpha=0.9, eps=1e-6, wd=0.01),
         torch_opt(S.RMSprop, alpha=0.9, eps=1e-6, weight_decay=0.01, centered=True), lr=0.01),
    Case("rmsprop-momentum", "rmsprop_momentum", dict(alpha=0.9, eps=1e-6, momentum=0.8, wd=0.01),
         torch_opt(S.RMSprop, alpha=0.9, eps=1e-6, momentum=0.8, weight_decay=0.01), lr=0.01),
    Case("adam", "adam", dict(ADAM_HP, wd=0.05), torch_opt(S.Adam, **ADAM_KW, weight_decay=0.05),
         lr=0.01),
    Case("adamw", "adamw", dict(ADAM_HP, wd=0.1), torch_opt(S.AdamW, **ADAM_KW, weight_decay=0.1),
         lr=0.01),
    Case("amsgrad", "amsgrad", dict(ADAM_HP, wd=0.1),
         torch_opt(S.AdamW, **ADAM_KW, weight_decay=0.1, amsgrad=True), lr=0.01),
    Case("nadam", "nadam", dict(ADAM_HP, momentum_decay=0.01, wd=0.05),
         torch_opt(S.NAdam, **ADAM_KW, momentum_decay=0.01, weight_decay=0.05), lr=0.01),
    Case("radam", "radam", dict(ADAM_HP, wd=0.05),
         torch_opt(S.RAdam, **ADAM_KW, weight_decay=0.05), lr=0.01),
    Case("adamax", "adamax", dict(ADAM_HP, wd=0.05),
         torch_opt(S.Adamax, **ADAM_KW, weight_decay=0.05), lr=0.01),
    # lr=0.3 > 1/sqrt(t) from t = 12 on: both branches of min(lr, 1/sqrt(t)); eps1 large enough
    # for the max(V, eps1**2) clamp to bite. Steps relative to RMS(theta) make the weights of the
    # random problem grow to |theta| ~ 40, where a float32 ulp is 3.8e-6 and the step size feeds
    # back through RMS(theta): the two trajectories stay ~10 ulps apart (4e-5 absolute, 1e-6 of
    # the weight scale; 8e-14 in float64), so this case is judged relative to the weight scale.
    Case("adafactor", "adafactor", dict(beta2_decay=-0.7, eps1=0.05, eps2=2e-3, d=1.0, wd=0.05),
         torch_opt(S.Adafactor, beta2_decay=-0.7, eps=(0.05, 2e-3), d=1.0, weight_decay=0.05),
         lr=0.3, relative_to_weights=True),
    Case("adafactor-default-eps1", "adafactor", dict(wd=0.05),
         torch_opt(S.Adafactor, weight_decay=0.05), lr=0.01, dtypes=(torch.float32,)),
    Case("lion", "lion", dict(beta1=0.8, beta2=0.95, wd=0.5),
         lambda p, lr: Lion(p, lr=lr, betas=(0.8, 0.95), weight_decay=0.5), lr=1e-3),
    Case("signum", "signum", dict(momentum=0.85, wd=0.01, wd_lh=0.1),
         lambda p, lr: Z.MXNetSignum(p, lr=lr, momentum=0.85, wd=0.01, wd_lh=0.1), lr=1e-3),
    Case("lamb", "lamb", dict(beta1=0.85, beta2=0.99, eps=1e-5, wd=0.05),
         lambda p, lr: Z.TFAddonsLAMB(p, lr=lr, beta_1=0.85, beta_2=0.99, epsilon=1e-5,
                                      weight_decay=0.05), lr=0.01),
    Case("lars", "lars",
         dict(momentum=0.9, dampening=0.1, trust_coeff=0.02, always_adapt=0, wd=5e-3),
         lambda p, lr: Z.TimmLars(p, lr=lr, momentum=0.9, dampening=0.1, trust_coeff=0.02,
                                  weight_decay=5e-3), lr=0.5),
    Case("lars-nesterov-always-adapt", "lars",
         dict(momentum=0.8, nesterov=1, trust_coeff=0.02, eps=1e-6, always_adapt=1, wd=0),
         lambda p, lr: Z.TimmLars(p, lr=lr, momentum=0.8, nesterov=True, trust_coeff=0.02, eps=1e-6,
                                  always_adapt=True), lr=0.5),
    Case("sophia", "sophia", dict(beta1=0.9, hbeta=0.95, rho=0.05, bs=32, wd=0.2),
         lambda p, lr: Z.SophiaG(p, lr=lr, betas=(0.9, 0.95), rho=0.05, weight_decay=0.2),
         lr=1e-3, curvature=True, ref_step=dict(bs=32)),
    Case("powersign", "powersign", dict(beta=0.8, logbase=0.7, sign_decay=0.9, wd=0.05),
         lambda p, lr: DecoupledDecay(Z.TFPowerSign(p, lr=lr, beta=0.8, logbase=0.7,
                                                    sign_decay=0.9), 0.05), lr=0.01),
    Case("addsign", "addsign", dict(beta=0.8, alpha=1.2, sign_decay=0.6, wd=0.05),
         lambda p, lr: DecoupledDecay(Z.TFAddSign(p, lr=lr, beta=0.8, alpha=1.2, sign_decay=0.6),
                                      0.05), lr=0.01),
    Case("muon-keller", "muon",
         dict(momentum=0.9, beta1=0.85, beta2=0.9, eps=1e-8, aux_lr_ratio=0.2, wd=0.1),
         keller_muon(0.9, (0.85, 0.9), 1e-8, 0.1, 0.2), lr=0.02, dtypes=(torch.float64,)),
    Case("muon-torch-2d", "muon",
         dict(momentum=0.9, beta1=0.85, beta2=0.9, eps=1e-8, aux_lr_ratio=0.2, wd=0.1),
         keller_muon(0.9, (0.85, 0.9), 1e-8, 0.1, 0.2, torch_2d=True), lr=0.02,
         dtypes=(torch.float64,), context=patched_torch_muon),
]


# -- the harness ----------------------------------------------------------------------------
@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """torch keeps scalar state (NAdam's mu_product, step counters) in the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _set_grads(params, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = g.clone()


def run_case(case: Case, problem: str, dtype: torch.dtype, steps: int = STEPS) -> float:
    """Max |theta_ours - theta_ref| over all parameters after `steps` steps."""
    with default_dtype(dtype), case.context():
        prob = PROBLEMS[problem](dtype)
        ref_params, our_params = clone_params(prob), clone_params(prob)
        ref = case.reference(ref_params, case.lr)
        ours = our_optimizer(our_params, case.rule, case.lr, **case.hparams)
        for k in range(steps):
            if case.curvature and k % CURVATURE_EVERY == 0:
                est = prob.curvature(k, ref_params)
                _set_grads(ref_params, est)
                ref.update_hessian()
                ours.update_curvature({q: e * e for q, e in zip(our_params, est)})
            grads = prob.grads(k, ref_params)
            _set_grads(ref_params, grads)
            _set_grads(our_params, grads)
            ref.step(**case.ref_step)
            ours.step()
        for p in ref_params + our_params:
            assert torch.isfinite(p).all()
        moved = max((p - p0).abs().max().item() for p, p0 in zip(ref_params, prob.init))
        assert moved > 10 * TOL[dtype], f"{case.id}: the reference barely moved ({moved:.2e})"
        err = max((p - q).abs().max().item() for p, q in zip(ref_params, our_params))
        if case.relative_to_weights:
            err /= max(1.0, max(p.abs().max().item() for p in ref_params))
        return err


PARAMS = [pytest.param(case, problem, dtype, id=f"{case.id}-{problem}-{str(dtype)[6:]}")
          for case in CASES for dtype in case.dtypes for problem in PROBLEMS]


@pytest.mark.parametrize("case,problem,dtype", PARAMS)
def test_matches_reference(case: Case, problem: str, dtype: torch.dtype):
    err = run_case(case, problem, dtype)
    assert err <= TOL[dtype], f"{case.id} on {problem} in {dtype}: max |dtheta| = {err:.3e}"


def test_every_builtin_has_a_reference_case():
    covered = {case.rule for case in CASES} | frontier_rules()   # + test_zoo_frontier.py's table
    assert set(dsl.builtin_names()) <= covered, sorted(set(dsl.builtin_names()) - covered)


@pytest.mark.parametrize("rule,hparams,reference", [
    ("sgd", dict(momentum=0.9, nesterov=0), torch_opt(S.SGD, momentum=0.9, nesterov=True)),
    ("sgd", dict(momentum=0.9, dampening=0.3), torch_opt(S.SGD, momentum=0.9, dampening=0.0)),
    ("adam", dict(eps=1e-3), torch_opt(S.Adam, eps=1e-4)),
    ("adamw", dict(wd=0.1), torch_opt(S.AdamW, weight_decay=0.0)),
], ids=["nesterov", "dampening", "eps", "decay"])
def test_harness_detects_a_wrong_rule(rule, hparams, reference):
    """The comparison is sharp: one wrong term is far outside the float32 tolerance."""
    case = Case("negative-control", rule, hparams, reference, lr=0.01)
    assert run_case(case, "random", torch.float32, steps=30) > 100 * TOL[torch.float32]


# -- Muon in bfloat16, step by step -----------------------------------------------------------
def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_muon_bf16_step_by_step(problem: str):
    """float32 weights, bfloat16 Newton-Schulz, 100 steps, weights re-synchronised after each
    (the momentum buffers stay equal: they never read the weights).

    Against Keller's code every matrix update is within 5e-2 (relative, Frobenius) at every step,
    and the aux-Adam vectors within 1e-6. Against torch.optim.Muon (2-D weights) 5e-2 per step
    cannot hold for ANY faithful implementation of Keller's iteration: torch's bf16 op order
    (addmm, clamp) moves the result by up to 14% on small matrices (mean ~4%; references section
    1.10). There the bound is: mean over all steps <= 5e-2, and at every step ours is no further
    from torch than Keller's own code is (+5e-3)."""
    hp = dict(momentum=0.9, beta1=0.85, beta2=0.9, eps=1e-8, aux_lr_ratio=0.2, wd=0.1)
    lr = 0.02
    prob = PROBLEMS[problem](torch.float32)
    ref_params = clone_params(prob)          # Keller, bfloat16
    tch_params = clone_params(prob)          # torch.optim.Muon on 2-D, Keller for the rest
    our_params = clone_params(prob)
    ref = keller_muon(0.9, (0.85, 0.9), 1e-8, 0.1, 0.2, ns_dtype=torch.bfloat16)(ref_params, lr)
    tch = keller_muon(0.9, (0.85, 0.9), 1e-8, 0.1, 0.2, ns_dtype=torch.bfloat16,
                      torch_2d=True)(tch_params, lr)
    ours = our_optimizer(our_params, "muon", lr, **hp)
    worst_keller, vs_torch = 0.0, []
    for k in range(STEPS):
        before = [p.clone() for p in ref_params]
        grads = prob.grads(k, ref_params)
        for params in (ref_params, tch_params, our_params):
            _set_grads(params, grads)
        ref.step()
        tch.step()
        ours.step()
        for p, t, q, b in zip(ref_params, tch_params, our_params, before):
            d_ref, d_tch, d_ours = p - b, t - b, q - b
            if p.ndim >= 2 and not is_head(p):
                err = _relative(d_ours, d_ref)
                worst_keller = max(worst_keller, err)
                assert err <= MUON_BF16_RTOL, f"step {k + 1}, {tuple(p.shape)} vs Keller: {err:.3e}"
            else:
                assert (d_ours - d_ref).abs().max().item() <= 1e-6
            if p.ndim == 2 and not is_head(p):
                err_t, keller_t = _relative(d_ours, d_tch), _relative(d_ref, d_tch)
                vs_torch.append(err_t)
                assert err_t <= keller_t + 5e-3, f"step {k + 1}, {tuple(p.shape)} vs torch: " \
                    f"{err_t:.3e} (Keller's code: {keller_t:.3e})"
            t.copy_(p)
            q.copy_(p)
    assert sum(vs_torch) / len(vs_torch) <= MUON_BF16_RTOL
    assert max(vs_torch) > 0  # torch's bf16 iteration really is a different op order
