"""Transcriptions of the published optimizers that have no installed reference.

Each class is a line-by-line transcription of the code named in its docstring, kept in the same
operation order, so it runs in any dtype (float64 checks the algebra to ~1e-15, float32 the
rounding). They exist only to verify `configs/optimizers/*.opt`; nothing in optforge imports them.
Each rule file (configs/optimizers/*.opt) names its paper and reference and the details that break
comparisons.
"""

from __future__ import annotations

import pytest
import torch
from torch.optim import Optimizer


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in the zoo tests: tiny tensors gain nothing from intra-op threads, and their barrier
    waits stall badly on a loaded 2-core machine (seconds per test instead of milliseconds)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# -- Muon: KellerJordan/Muon muon.py (commit 00ba60d) ----------------------------------------
def zeropower_via_newtonschulz5(G: torch.Tensor, steps: int,
                                dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Keller's `zeropower_via_newtonschulz5`; `dtype` replaces the hard-coded bfloat16 so the
    algebra can be checked in float64."""
    assert G.ndim >= 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.to(dtype)
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


def muon_update(grad, momentum, beta=0.95, ns_steps=5, nesterov=True, dtype=torch.bfloat16):
    """Keller's `muon_update` (it overwrites `grad` with the Nesterov mix, as the original)."""
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp_(momentum, beta) if nesterov else momentum
    if update.ndim == 4:  # conv filters
        update = update.view(len(update), -1)
    update = zeropower_via_newtonschulz5(update, steps=ns_steps, dtype=dtype)
    update *= max(1, grad.size(-2) / grad.size(-1)) ** 0.5
    return update


def adam_update(grad, buf1, buf2, step, betas, eps):
    """Keller's `adam_update` (the aux Adam of MuonWithAuxAdam): eps form (b)."""
    buf1.lerp_(grad, 1 - betas[0])
    buf2.lerp_(grad.square(), 1 - betas[1])
    buf1c = buf1 / (1 - betas[0] ** step)
    buf2c = buf2 / (1 - betas[1] ** step)
    return buf1c / (buf2c.sqrt() + eps)


class KellerMuonWithAuxAdam(Optimizer):
    """Keller's `SingleDeviceMuonWithAuxAdam`; groups carry `use_muon`. `ns_dtype` is the
    Newton-Schulz dtype (bfloat16 in the original)."""

    def __init__(self, param_groups, ns_dtype: torch.dtype = torch.bfloat16):
        for group in param_groups:
            assert "use_muon" in group
            if group["use_muon"]:
                group.setdefault("lr", 0.02)
                group.setdefault("momentum", 0.95)
                group.setdefault("weight_decay", 0)
                assert set(group) == {"params", "lr", "momentum", "weight_decay", "use_muon"}
            else:
                group.setdefault("lr", 3e-4)
                group.setdefault("betas", (0.9, 0.95))
                group.setdefault("eps", 1e-10)
                group.setdefault("weight_decay", 0)
                assert set(group) == {"params", "lr", "betas", "eps", "weight_decay", "use_muon"}
        self.ns_dtype = ns_dtype
        super().__init__(param_groups, {})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                state = self.state[p]
                if group["use_muon"]:
                    if len(state) == 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    update = muon_update(p.grad, state["momentum_buffer"], beta=group["momentum"],
                                         dtype=self.ns_dtype)
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update.reshape(p.shape), alpha=-group["lr"])
                else:
                    if len(state) == 0:
                        state["exp_avg"] = torch.zeros_like(p)
                        state["exp_avg_sq"] = torch.zeros_like(p)
                        state["step"] = 0
                    state["step"] += 1
                    update = adam_update(p.grad, state["exp_avg"], state["exp_avg_sq"],
                                         state["step"], group["betas"], group["eps"])
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"])


# -- LAMB: tensorflow/addons tensorflow_addons/optimizers/lamb.py ----------------------------
class TFAddonsLAMB(Optimizer):
    """TF-Addons `LAMB._resource_apply_dense` without the name-based exclusion lists."""

    def __init__(self, params, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 weight_decay=0.0):
        super().__init__(params, dict(lr=lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["beta_1"], group["beta_2"]
            eps, wd = group["epsilon"], group["weight_decay"]
            for var in group["params"]:
                grad, state = var.grad, self.state[var]
                if len(state) == 0:
                    state["step"] = 0
                    state["m"], state["v"] = torch.zeros_like(var), torch.zeros_like(var)
                state["step"] += 1
                t = state["step"]
                m_t = state["m"] * b1 + grad * (1 - b1)
                v_t = state["v"] * b2 + (grad * grad) * (1 - b2)
                state["m"], state["v"] = m_t, v_t
                m_t_hat = m_t / (1.0 - b1 ** t)
                v_t_hat = v_t / (1.0 - b2 ** t)
                update = m_t_hat / (torch.sqrt(v_t_hat) + eps)
                if wd:
                    update = update + wd * var
                w_norm, g_norm = torch.linalg.norm(var), torch.linalg.norm(update)
                one = torch.ones_like(w_norm)
                ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, w_norm / g_norm, one), one)
                var.sub_(ratio * group["lr"] * update)


# -- LARS: huggingface/pytorch-image-models timm/optim/lars.py -------------------------------
class TimmLars(Optimizer):
    """timm's `Lars.step` (LARS/LARC with torch-SGD momentum)."""

    def __init__(self, params, lr=1.0, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 trust_coeff=0.001, eps=1e-8, trust_clip=False, always_adapt=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      trust_coeff=trust_coeff, eps=eps, trust_clip=trust_clip,
                                      always_adapt=always_adapt))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            wd, momentum, dampening = group["weight_decay"], group["momentum"], group["dampening"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if wd != 0 or group["always_adapt"]:
                    w_norm = p.norm(2.0)
                    g_norm = grad.norm(2.0)
                    trust_ratio = (group["trust_coeff"] * w_norm
                                   / (g_norm + w_norm * wd + group["eps"]))
                    trust_ratio = torch.where(
                        w_norm > 0, torch.where(g_norm > 0, trust_ratio, 1.0), 1.0)
                    if group["trust_clip"]:
                        trust_ratio = torch.clamp(trust_ratio / group["lr"], max=1.0)
                    grad = grad.add(p, alpha=wd).mul_(trust_ratio)
                if momentum != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        buf = state["momentum_buffer"] = torch.clone(grad).detach()
                    else:
                        buf = state["momentum_buffer"]
                        buf.mul_(momentum).add_(grad, alpha=1.0 - dampening)
                    grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(grad, alpha=-group["lr"])


# -- Signum: apache/mxnet src/operator/optimizer_op-inl.h, SignumKernel / SignSGDKernel -----
class MXNetSignum(Optimizer):
    """MXNet's Signum update (rescale_grad=1, no clip_gradient): mom is the NEGATIVE EMA."""

    def __init__(self, params, lr=0.01, momentum=0.9, wd=0.0, wd_lh=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, wd=wd, wd_lh=wd_lh))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, mom_c, wd, wd_lh = group["lr"], group["momentum"], group["wd"], group["wd_lh"]
            for w in group["params"]:
                state = self.state[w]
                if len(state) == 0:
                    state["mom"] = torch.zeros_like(w)
                mom = state["mom"]
                mom.copy_(mom_c * mom - (1 - mom_c) * wd * w - (1 - mom_c) * w.grad)
                w.copy_((1 - lr * wd_lh) * w + lr * torch.sign(mom))


# -- Sophia: Liuhong99/Sophia sophia.py (commit 195a786), SophiaG ----------------------------
class SophiaG(Optimizer):
    """SophiaG with `update_hessian()` and `step(bs=...)`, non-capturable path."""

    def __init__(self, params, lr=1e-4, betas=(0.965, 0.99), rho=0.04, weight_decay=1e-1):
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay))

    def _state(self, p):
        state = self.state[p]
        if len(state) == 0:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self):
        for group in self.param_groups:
            _, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._state(p)["hessian"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)

    @torch.no_grad()
    def step(self, closure=None, bs=5120):
        for group in self.param_groups:
            beta1, _ = group["betas"]
            lr, rho, wd = group["lr"], group["rho"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                p.mul_(1 - lr * wd)
                exp_avg, hess = state["exp_avg"], state["hessian"]
                exp_avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                ratio = (exp_avg.abs() / (rho * bs * hess + 1e-15)).clamp(None, 1)
                p.addcmul_(exp_avg.sign(), ratio, value=-lr)


# -- PowerSign / AddSign: tensorflow/tensorflow tensorflow/core/kernels/training_ops.cc ------
class TFPowerSign(Optimizer):
    """TF's ApplyPowerSign: m_t = beta*m + (1-beta)*g;
    update = exp(logbase*sign_decay*sign(g)*sign(m_t))*g; var -= lr*update."""

    def __init__(self, params, lr=0.1, beta=0.9, logbase=1.0, sign_decay=1.0):
        super().__init__(params, dict(lr=lr, beta=beta, logbase=logbase, sign_decay=sign_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta = group["beta"]
            for var in group["params"]:
                g, state = var.grad, self.state[var]
                if len(state) == 0:
                    state["m"] = torch.zeros_like(var)
                m = state["m"]
                m.copy_(m * beta + g * (1 - beta))
                sign_gm = torch.sign(g) * torch.sign(m)
                grad_scale = torch.exp(group["logbase"] * group["sign_decay"] * sign_gm)
                var.sub_(group["lr"] * grad_scale * g)


class TFAddSign(Optimizer):
    """TF's ApplyAddSign: m_t = beta*m + (1-beta)*g;
    update = (alpha + sign_decay*sign(g)*sign(m_t))*g; var -= lr*update."""

    def __init__(self, params, lr=0.1, beta=0.9, alpha=1.0, sign_decay=1.0):
        super().__init__(params, dict(lr=lr, beta=beta, alpha=alpha, sign_decay=sign_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta = group["beta"]
            for var in group["params"]:
                g, state = var.grad, self.state[var]
                if len(state) == 0:
                    state["m"] = torch.zeros_like(var)
                m = state["m"]
                m.copy_(m * beta + g * (1 - beta))
                sign_gm = torch.sign(g) * torch.sign(m)
                var.sub_(group["lr"] * (group["alpha"] + group["sign_decay"] * sign_gm) * g)


class Composite(Optimizer):
    """Several optimizers stepped as one (torch.optim.Muon for 2-D params beside another)."""

    def __init__(self, *optimizers: Optimizer):
        self.optimizers = optimizers
        params = [p for o in optimizers for g in o.param_groups for p in g["params"]]
        super().__init__(params, {})

    def step(self, closure=None):
        for o in self.optimizers:
            o.step()

