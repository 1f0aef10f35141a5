"""The frontier builtins and the reference optimizers they are checked against.

One table (`FRONTIER_CASES`) maps each builtin of the frontier (AdEMAMix, ADOPT, Cautious AdamW and
Lion, MARS, SOAP, Schedule-Free AdamW, Prodigy; Shampoo and Moonlight's Muon) with non-default
hparams to the pinned reference package's optimizer class with the same hparams, on its
per-parameter (foreach=False) path, in float64 on a CPU; Shampoo's AlgoPerf form and Moonlight's
Muon are not on the package index, so frontier_transcriptions.py transcribes them. Pins: the
`test` extra of pyproject.toml (pytorch-optimizer 4.1.0, schedulefree 1.4.1, prodigyopt 1.1.2).
`test_zoo_frontier.py` runs the table; `test_zoo_reference.py`'s guard requires every builtin to
appear in one of the two tables. Shampoo and SOAP precondition conv filters by their
out x (in*kh*kw) view, which their references (one factor per axis) are handed (`FlatViews`).

Papers: Pagliardini et al. 2024 (AdEMAMix, arXiv:2409.03137); Taniguchi et al. 2024 (ADOPT,
arXiv:2411.02853); Liang et al. 2024 (Cautious optimizers, arXiv:2411.16085); Yuan et al. 2024
(MARS, arXiv:2411.10438); Vyas et al. 2024 (SOAP, arXiv:2409.11321); Defazio et al. 2024
(Schedule-Free, arXiv:2405.15682); Mishchenko & Defazio 2024 (Prodigy, arXiv:2306.06101); Shi et
al. 2023 (Distributed Shampoo, arXiv:2309.06497); Liu et al. 2025 (Moonlight, arXiv:2502.16982).
Each rule file's header states the exact form and its deviations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import prodigyopt
import pytorch_optimizer as po
import schedulefree
import torch
from frontier_transcriptions import AlgoPerfShampoo, MoonlightMuon
from pytorch_optimizer.optimizer.soap import SOAP

Groups = Callable[[list[torch.Tensor], float], list[dict]]
# (params, lr[, foreach]) -> the package's optimizer; foreach=False (the default here) is its
# per-parameter path, the one the tests check; None is the package's own default (batched on CPU).
Factory = Callable[..., torch.optim.Optimizer]
# (reference, its params, this step's gradients) -> names of the rule's branches this step takes
Probe = Callable[[torch.optim.Optimizer, list[torch.Tensor], list[torch.Tensor]], set[str]]


def one_group(params: list[torch.Tensor], lr: float) -> list[dict]:
    return [{"params": list(params)}]


@dataclass(frozen=True)
class FrontierCase:
    id: str
    rule: str                       # builtin name
    hparams: dict                   # the rule's hparams
    reference: Factory              # the package's optimizer with the same hparams
    lr: float
    groups: Groups = one_group      # (params, lr) -> our param groups (per-group lr/wd overrides)
    probe: Probe | None = None      # the branches a run must take on each problem: the hparams
    branches: frozenset = frozenset()   # are chosen so that every term of the rule acts
    dtypes: tuple = (torch.float64, torch.float32)
    problems: tuple = ("random", "network")
    tol: dict = field(default_factory=dict)     # dtype -> max |dtheta| where the default cannot hold
    frozen: dict = field(default_factory=dict)  # keys of the reference's frozen (lr = 0) group
    bench: bool = True              # bench/step_overhead.py times this reference (not a patched copy)


def ademamix(t_alpha_beta3: int) -> FrontierCase:
    hp = dict(beta1=0.8, beta2=0.99, beta3=0.995, alpha=3, t_alpha_beta3=t_alpha_beta3, eps=1e-6, wd=0.1)

    def reference(p, lr, foreach=False):
        return po.AdEMAMix(p, lr=lr, betas=(0.8, 0.99, 0.995), alpha=3, t_alpha_beta3=t_alpha_beta3 or None,
                           eps=1e-6, weight_decay=0.1, weight_decouple=True, foreach=foreach)
    return FrontierCase(f"ademamix-T{t_alpha_beta3}", "ademamix", hp, reference, lr=0.01)


def adopt_probe(ref, params, grads) -> set[str]:
    """ADOPT from step 2: the clip at t**0.25 and the eps floor of sqrt(v)."""
    done, eps = ref.param_groups[0].get("step", 0), ref.param_groups[0]["eps"]
    if done < 1:
        return set()
    hit = set()
    for p, g in zip(params, grads):
        root = ref.state[p]["exp_avg_sq"].sqrt()
        if (root < eps).any():
            hit.add("eps floor")
        if ((g / root.clamp(min=eps)).abs() > (done + 1) ** 0.25).any():
            hit.add("clip")
    return hit


def mars_probe(ref, params, grads) -> set[str]:
    """MARS on matrices: both sides of the ||c|| > 1 clip."""
    group = ref.param_groups[0]
    scale = group["gamma"] * group["betas"][0] / (1 - group["betas"][0])
    hit = set()
    for p, g in zip(params, grads):
        if p.ndim >= 2:
            last = ref.state[p]["last_grad"] if ref.state.get(p) else torch.zeros_like(g)
            hit.add("clipped" if ((g - last) * scale + g).norm() > 1 else "unclipped")
    return hit


# MARS: matrices and conv filters in one group, vectors in another with their own lr and wd (the
# reference's lr_1d and weight_decay_1d).
MARS_LR_1D_RATIO, MARS_WD, MARS_WD_1D = 0.5, 0.1, 0.05


def mars_groups(params: list[torch.Tensor], lr: float) -> list[dict]:
    return [{"params": [p for p in params if p.ndim >= 2]},
            {"params": [p for p in params if p.ndim < 2], "lr": lr * MARS_LR_1D_RATIO, "wd": MARS_WD_1D}]


def mars_reference(p, lr, foreach=False):
    return po.MARS(p, lr=lr, betas=(0.9, 0.95), gamma=0.05, eps=1e-6, betas_1d=(0.8, 0.9),
                   lr_1d=lr * MARS_LR_1D_RATIO, weight_decay=MARS_WD, weight_decay_1d=MARS_WD_1D,
                   foreach=foreach)


FRONTIER_CASES: list[FrontierCase] = [
    ademamix(40),
    ademamix(0),
    FrontierCase(
        "adopt", "adopt", dict(beta1=0.8, beta2=0.99, eps=0.01, wd=0.1),
        lambda p, lr, foreach=False: po.ADOPT(p, lr=lr, betas=(0.8, 0.99), eps=0.01, weight_decay=0.1,
                                              weight_decouple=True, foreach=foreach),
        lr=0.01, probe=adopt_probe, branches=frozenset({"clip", "eps floor"})),
    FrontierCase(
        "cautious-adamw", "cautious_adamw", dict(beta1=0.8, beta2=0.99, eps=1e-6, wd=0.1),
        lambda p, lr, foreach=False: po.AdEMAMix(p, lr=lr, betas=(0.8, 0.99, 0.9999), alpha=0, eps=1e-6,
                                                 weight_decay=0.1, weight_decouple=True, cautious=True,
                                                 foreach=foreach),
        lr=0.01),
    FrontierCase(
        "cautious-lion", "cautious_lion", dict(beta1=0.8, beta2=0.95, wd=0.5),
        lambda p, lr, foreach=False: po.Lion(p, lr=lr, betas=(0.8, 0.95), weight_decay=0.5, cautious=True,
                                             foreach=foreach),
        lr=1e-3),
    FrontierCase(
        "mars", "mars",
        dict(beta1=0.9, beta2=0.95, gamma=0.05, eps=1e-6, beta1_1d=0.8, beta2_1d=0.9, wd=MARS_WD),
        mars_reference, lr=0.01, groups=mars_groups, probe=mars_probe,
        branches=frozenset({"clipped", "unclipped"})),
]


# -- the references of the matrix optimizers, Schedule-Free and Prodigy ----------------------------
def _groups(params) -> list[dict]:
    params = list(params)
    return [dict(g) for g in params] if params and isinstance(params[0], dict) else [{"params": params}]


class FlatViews(torch.optim.Optimizer):
    """A reference stepping the out x (in*kh*kw) views of conv filters (in place: views share the
    filters' storage), its param groups shared so that LR schedulers drive it."""

    def __init__(self, params, make: Callable[[list[dict]], torch.optim.Optimizer]):
        self.pairs, groups = [], []
        for group in _groups(params):
            views = [p.view(p.shape[0], -1) if p.dim() > 2 else p for p in group["params"]]
            self.pairs += list(zip(group["params"], views))
            groups.append({**group, "params": views})
        self.inner = make(groups)
        super().__init__([p for p, _ in self.pairs], {})
        self.param_groups = self.inner.param_groups
        self.state = self.inner.state

    @torch.no_grad()
    def step(self, closure=None):
        for p, v in self.pairs:
            if v is not p:
                v.grad = None if p.grad is None else p.grad.view(v.shape)
        return self.inner.step()


def shampoo(start: int, eps: float = 1e-12) -> FrontierCase:
    hp = dict(beta1=0.8, beta2=0.95, eps=eps, beta2g=0.99, eps_g=1e-8, momentum=0.8, wd=0.05, freq=5, start=start)

    def reference(p, lr, foreach=False):
        return FlatViews(p, lambda groups: AlgoPerfShampoo(
            groups, lr=lr, betas=(0.8, 0.95), epsilon=eps, momentum=0.8, weight_decay=0.05,
            precondition_frequency=5, start_preconditioning_step=start, grafting_beta2=0.99, grafting_epsilon=1e-8))

    def probe(ref, params, grads) -> set[str]:
        t = int(ref.param_groups[0]["step"]) + 1
        hit = {"adam phase" if t < start else "shampoo phase"}
        if (t % 5 == 0 and t > start) or t == start:
            hit.add("refresh at start" if t == start else "refresh")
        return hit

    # eps = 1e-12 (the default) is below float32's rounding of the factors' small eigenvalues, where
    # two float32 eigh's then differ by a few 1e-2 after 100 steps: that case runs in float64 only
    return FrontierCase(f"shampoo-start{start}-eps{eps:g}", "shampoo", hp, reference, lr=0.01, probe=probe,
                        branches=frozenset({"adam phase", "shampoo phase", "refresh", "refresh at start"}),
                        dtypes=(torch.float64, torch.float32) if eps >= 1e-6 else (torch.float64,),
                        tol={torch.float32: 5e-5})


class SOAPFloat64QR(SOAP):
    """pytorch-optimizer's SOAP with its QR in the gradient's dtype: get_orthogonal_matrix_qr
    copied with the float32 cast removed (merge_dims and channels_last paths dropped: unused)."""

    def get_orthogonal_matrix_qr(self, state, max_precondition_dim: int = 10000, merge_dims: bool = False):
        exp_avg_sq = state["exp_avg_sq"]
        matrices = []
        for ind, (m, o) in enumerate(zip(state["GG"], state["Q"])):
            if len(m) == 0:
                matrices.append([])
                continue
            matrix_product = m @ o
            est_eig = (o * matrix_product).sum(dim=0)
            sort_idx = torch.argsort(est_eig, descending=True)
            exp_avg_sq = exp_avg_sq.index_select(ind, sort_idx)
            matrices.append(torch.linalg.qr(matrix_product.index_select(1, sort_idx))[0])
        state["exp_avg_sq"] = exp_avg_sq
        return matrices


def soap(cls, name: str, tol: dict, problems: tuple = ("random", "network")) -> FrontierCase:
    hp = dict(beta1=0.9, beta2=0.95, shampoo_beta=0.9, eps=1e-8, wd=0.05, freq=5)

    def reference(p, lr, foreach=False):
        return FlatViews(p, lambda groups: cls(groups, lr=lr, betas=(0.9, 0.95), shampoo_beta=0.9, weight_decay=0.05,
                                               precondition_frequency=5, eps=1e-8))

    def probe(ref, params, grads) -> set[str]:
        s = ref.param_groups[0].get("step", 0)          # this step is s + 1; the QR runs at s % 5 == 0
        return {"first step"} if s == 0 else {"qr refresh"} if s % 5 == 0 else {"adam"}

    return FrontierCase(name, "soap", hp, reference, lr=0.01, probe=probe,
                        branches=frozenset({"first step", "qr refresh", "adam"}), tol=tol, problems=problems,
                        bench=cls is SOAP)


def schedule_free(p, lr, foreach=False):
    opt = schedulefree.AdamWScheduleFree(p, lr=lr, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, warmup_steps=5,
                                         r=0.5, weight_lr_power=2.0, foreach=foreach if foreach is not None else True)
    opt.train()
    return opt


def schedule_free_probe(ref, params, grads) -> set[str]:
    return {"warmup" if ref.param_groups[0]["k"] < 5 else "after warmup"}


def prodigy(p, lr, foreach=False):
    return prodigyopt.Prodigy(p, lr=lr, betas=(0.8, 0.99), beta3=0.995, eps=1e-6, weight_decay=0.1, d0=1e-4,
                              d_coef=0.7, use_bias_correction=True)


def prodigy_probe(ref, params, grads) -> set[str]:
    group = ref.param_groups[0]
    return {"d grew"} if group["d"] > group["d0"] else {"d at d0"}


def moonlight(p, lr, foreach=False):
    groups = _groups(p)
    ns = torch.float64 if groups[0]["params"][0].dtype == torch.float64 else torch.bfloat16
    return MoonlightMuon(groups, lr=lr, wd=0.1, momentum=0.9, ns_steps=5, adamw_betas=(0.85, 0.9), adamw_eps=1e-8,
                         ns_dtype=ns)


FRONTIER_CASES += [
    shampoo(10, 1e-6),
    shampoo(7),
    soap(SOAPFloat64QR, "soap", {}),
    # the reference as it is: its QR in float32 (bound in soap.opt); on the network problem its
    # rank-deficient head gradient carries that rounding into every later step (not compared)
    soap(SOAP, "soap-reference-float32-qr", {torch.float64: 1e-6}, problems=("random",)),
    FrontierCase("schedule-free-adamw", "schedule_free_adamw",
                 dict(beta1=0.8, beta2=0.99, eps=1e-6, wd=0.1, r=0.5, weight_lr_power=2.0, warmup_steps=5),
                 schedule_free, lr=0.01, probe=schedule_free_probe, branches=frozenset({"warmup", "after warmup"})),
    FrontierCase("prodigy", "prodigy",
                 dict(beta1=0.8, beta2=0.99, beta3=0.995, eps=1e-6, wd=0.1, d0=1e-4, d_coef=0.7, use_bias_correction=1),
                 prodigy, lr=0.5, probe=prodigy_probe, branches=frozenset({"d grew", "d at d0"}),
                 frozen={"weight_decay": 0.0}, tol={torch.float32: 5e-5}),    # d in float32 0-d copies
    FrontierCase("muon-moonlight", "muon_moonlight",
                 dict(momentum=0.9, ns_steps=5, beta1=0.85, beta2=0.9, eps=1e-8, wd=0.1), moonlight, lr=0.02,
                 dtypes=(torch.float64,)),
]


def frontier_rules() -> set[str]:
    return {case.rule for case in FRONTIER_CASES}
