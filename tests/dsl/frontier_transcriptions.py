"""Float64 transcriptions of the frontier references that cannot be installed from a package index.

- `AlgoPerfShampoo`: facebookresearch/optimizers `DistributedShampoo` as vendored in the AlgoPerf
  submission (mlcommons/submissions_algorithms, previous_leaderboards/algoperf_v06/submissions/
  external_tuning/shampoo): `step` and `_per_group_step_impl` of distributed_shampoo.py, the
  Shampoo and Adagrad/Adam preconditioner lists of shampoo_preconditioner_list.py and
  `matrix_inverse_root`'s eigen path of matrix_functions.py, serially (no distributor), for
  `use_merge_dims=False` and dimensions within `max_preconditioner_dim` (no blocking), Adam
  grafting, `use_bias_correction`, `use_decoupled_weight_decay`, `use_ema_momentum` (its default)
  and `use_nesterov` (the submission's). Scalar state (the step, bias corrections) in the default
  dtype, as the reference's tensors are. One detail is not transcribed: the reference wraps lr
  in a float32 0-d tensor (to spare torch.compile recompiles) and multiplies by it, which rounds
  an lr such as 0.01 by 2e-8 relative; here lr stays a Python float.
- `MoonlightMuon`: MoonshotAI/Moonlight examples/toy_train.py's `Muon` (its Newton-Schulz,
  `adjust_lr_for_muon` and AdamW backup), with the iteration's dtype a parameter (the reference's
  bfloat16; float64 to check the algebra) and 2-D views of conv filters (the reference asserts
  2-D parameters).

Each is a plain torch.optim.Optimizer over the parameters it is given; the frontier table
(frontier_references.py) pairs it with its builtin rule.
"""

from __future__ import annotations

import math
from itertools import chain

import torch
import zoo_references as Z

EPSILON = 1e-16          # distributed_shampoo.py's grafting guard


def matrix_inverse_root(A: torch.Tensor, root: int, epsilon: float) -> torch.Tensor:
    """matrix_functions.matrix_inverse_root, eigen method, exponent_multiplier 1, not diagonal."""
    if torch.numel(A) == 1:
        return (A + epsilon) ** torch.as_tensor(-1.0 / root)
    L, Q = torch.linalg.eigh(A)
    L = L + -torch.minimum(torch.min(L), torch.as_tensor(0.0, dtype=L.dtype))
    L = L + epsilon
    return Q * L.pow(-1.0 / root).unsqueeze(0) @ Q.T


class AlgoPerfShampoo(torch.optim.Optimizer):
    """DistributedShampoo's step for Adam grafting (see the module docstring)."""

    def __init__(self, params, lr, betas=(0.9, 0.999), epsilon=1e-12, momentum=0.9, weight_decay=0.0,
                 precondition_frequency=100, start_preconditioning_step=100, grafting_beta2=0.999,
                 grafting_epsilon=1e-8, use_nesterov=True, max_preconditioner_dim=1024):
        defaults = dict(lr=lr, betas=betas, epsilon=epsilon, momentum=momentum, weight_decay=weight_decay,
                        precondition_frequency=precondition_frequency,
                        start_preconditioning_step=start_preconditioning_step, grafting_beta2=grafting_beta2,
                        grafting_epsilon=grafting_epsilon, use_nesterov=use_nesterov)
        super().__init__(params, defaults)
        for group in self.param_groups:
            group["step"] = torch.tensor(0, dtype=torch.int64)
            for p in group["params"]:
                assert max(p.shape, default=1) <= max_preconditioner_dim, "blocking is not transcribed"
                self.state[p].update(
                    factors=[torch.zeros(d, d, dtype=p.dtype) for d in p.shape],
                    inverses=[torch.zeros(d, d, dtype=p.dtype) for d in p.shape],
                    grafting=torch.zeros_like(p), filtered=torch.zeros_like(p), momentum=torch.zeros_like(p))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            step = group["step"].add_(1)
            beta1, beta2 = group["betas"]
            beta2g, mu, wd = group["grafting_beta2"], group["momentum"], group["weight_decay"]
            start, freq = group["start_preconditioning_step"], group["precondition_frequency"]
            compute_root = (step % freq == 0 and step > start) or step == start
            for p in params:
                g, st = p.grad, self.state[p]
                order = g.dim()
                for k, factor in enumerate(st["factors"]):          # update_preconditioners
                    dims = [[*chain(range(k), range(k + 1, order))]] * 2
                    factor.mul_(beta2).add_(torch.tensordot(g, g, dims=dims), alpha=1 - beta2)
                bias_correction2 = torch.tensor(1.0) - beta2 ** step
                st["grafting"].mul_(beta2g).addcmul_(g, g, value=1 - beta2g)
                grafting_bc2 = torch.tensor(1.0) - beta2g ** step
                if compute_root:
                    for factor, inverse in zip(st["factors"], st["inverses"]):
                        inverse.copy_(matrix_inverse_root(factor / bias_correction2, 2 * order, group["epsilon"]))
                st["filtered"].mul_(beta1).add_(g, alpha=1 - beta1)
                filtered = st["filtered"] / (1.0 - beta1 ** step)
                adam = filtered / (st["grafting"] / grafting_bc2).sqrt().add(group["grafting_epsilon"])
                if step < start:
                    direction = adam
                else:
                    direction = filtered
                    for inverse in st["inverses"]:
                        direction = torch.tensordot(direction, inverse, [[0], [0]])
                    direction = direction * (torch.linalg.vector_norm(adam)
                                             / (torch.linalg.vector_norm(direction) + EPSILON))
                if wd != 0.0:
                    direction = direction.add(p, alpha=wd)
                if mu != 0.0:
                    st["momentum"].mul_(mu).add_(direction, alpha=1.0 - mu)
                    if group["use_nesterov"]:
                        direction = direction.mul(1.0 - mu).add_(st["momentum"], alpha=mu)
                    else:
                        direction = st["momentum"].clone()
                p.add_(direction * -group["lr"])


class MoonlightMuon(torch.optim.Optimizer):
    """Moonlight's toy Muon: Muon for parameters of two or more axes (conv filters by their 2-D
    view), AdamW for the rest (the reference takes the two lists; here param groups decide lr)."""

    def __init__(self, params, lr, wd=0.1, momentum=0.95, nesterov=True, ns_steps=5, adamw_betas=(0.9, 0.95),
                 adamw_eps=1e-8, ns_dtype=torch.bfloat16):
        super().__init__(params, dict(lr=lr, wd=wd, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                                      adamw_betas=adamw_betas, adamw_eps=adamw_eps))
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["use_muon"] = p.ndim >= 2

    @staticmethod
    def adjust_lr_for_muon(lr, shape):
        A, B = shape[:2]
        return lr * 0.2 * math.sqrt(max(A, B))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd, momentum = group["lr"], group["wd"], group["momentum"]
            for p in [p for p in group["params"] if self.state[p]["use_muon"]]:
                g = p.grad
                if g is None:
                    continue
                view = g.view(g.size(0), -1) if g.ndim > 2 else g
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(view)
                buf = state["momentum_buffer"]
                buf.mul_(momentum).add_(view)
                view = view.add(buf, alpha=momentum) if group["nesterov"] else buf
                u = Z.zeropower_via_newtonschulz5(view, group["ns_steps"], dtype=self.ns_dtype).to(p.dtype)
                adjusted_lr = self.adjust_lr_for_muon(lr, view.shape)
                p.data.mul_(1 - lr * wd)
                p.data.add_(u.view_as(p), alpha=-adjusted_lr)
            beta1, beta2 = group["adamw_betas"]
            for p in [p for p in group["params"] if not self.state[p]["use_muon"]]:
                g = p.grad
                if g is None:
                    continue
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["moment1"] = torch.zeros_like(g)
                    state["moment2"] = torch.zeros_like(g)
                state["step"] += 1
                step = state["step"]
                buf1, buf2 = state["moment1"], state["moment2"]
                buf1.lerp_(g, 1 - beta1)
                buf2.lerp_(g.square(), 1 - beta2)
                g = buf1 / (group["adamw_eps"] + buf2.sqrt())
                scale = (1 - beta1 ** step) / (1 - beta2 ** step) ** 0.5
                p.data.mul_(1 - lr * wd)
                p.data.add_(g, alpha=-lr / scale)
