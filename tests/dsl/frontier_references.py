"""The frontier builtins and the reference optimizers they are checked against.

One table (`FRONTIER_CASES`) maps each builtin of the frontier (AdEMAMix, ADOPT, Cautious AdamW and
Lion, MARS) with non-default hparams to the pinned reference package's optimizer class with the
same hparams. All of them run in float64 on a CPU, so no transcription is needed: the classes are
used as they are, on their per-parameter (foreach=False) path. Pins: the `test` extra of
pyproject.toml (pytorch-optimizer 4.1.0 for all five). `test_zoo_frontier.py` runs the table;
`test_zoo_reference.py`'s guard requires every builtin to appear in one of the two tables.

Papers: Pagliardini et al. 2024 (AdEMAMix, arXiv:2409.03137); Taniguchi et al. 2024 (ADOPT,
arXiv:2411.02853); Liang et al. 2024 (Cautious optimizers, arXiv:2411.16085); Yuan et al. 2024
(MARS, arXiv:2411.10438). Each rule file's header states the exact form and its deviations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytorch_optimizer as po
import torch

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


def frontier_rules() -> set[str]:
    return {case.rule for case in FRONTIER_CASES}
