"""A stacked ensemble run beside the same members trained alone (ProgramOptimizer with batch_dims=1
and one lr per member), for the tests of ensemble axes (test_optimizer.py, test_primitive_registry.py)."""

from __future__ import annotations

import torch
from torch import nn

from dsl import ProgramOptimizer


def assert_stacked_equals_alone(rule, shapes, dtype, steps: int, seed: int, atol: float = 1e-6) -> None:
    """Train E = 3 stacked members (lrs 1e-2, 3e-3, 0.1) and each member alone on the same
    gradients; every member's parameters must agree within `atol`."""
    lrs = torch.tensor([1e-2, 3e-3, 0.1], dtype=dtype)
    E = len(lrs)
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn((E,) + s, generator=gen, dtype=dtype) for s in shapes]
    grads = [[torch.randn((E,) + s, generator=gen, dtype=dtype) for s in shapes] for _ in range(steps)]
    stacked = [nn.Parameter(x.clone()) for x in init]
    opt = ProgramOptimizer([{"params": stacked, "batch_dims": 1, "lr": lrs}], rule)
    for k in range(steps):
        for p, gk in zip(stacked, grads[k]):
            p.grad = gk.clone()
        opt.step()
    for i in range(E):
        members = [nn.Parameter(x[i].clone()) for x in init]
        single = ProgramOptimizer(members, rule, lr=float(lrs[i]))
        for k in range(steps):
            for p, gk in zip(members, grads[k]):
                p.grad = gk[i].clone()
            single.step()
        for p, q in zip(stacked, members):
            torch.testing.assert_close(p.detach()[i], q.detach(), rtol=0, atol=atol)
