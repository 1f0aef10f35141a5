"""Small tensor helpers the primitives' functions share (copied into an exported file with them).

`bd` is the number of leading ensemble axes (a stacked lr grid, `evaluators.ensemble`): a
reduction never reduces over them. An exported optimizer has none (bd = 0).
"""

from __future__ import annotations

import torch


def _tensor(x, like):
    """x as a tensor of `like`'s dtype and device (a Python float becomes a 0-d tensor)."""
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype, device=like.device)


def _first_tensor(*xs):
    """The first tensor among xs (a float64 0-d tensor of the first value if there is none)."""
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x
    return torch.tensor(xs[0], dtype=torch.float64)


def _dims(x, bd):
    """The axes a reduction reduces over: all but the leading `bd` ensemble axes."""
    return tuple(range(bd, x.dim()))


def _norm(x, bd=0):
    """Euclidean norm over all but the leading `bd` axes (kept as size-1 axes when bd > 0)."""
    if bd == 0:
        return torch.linalg.vector_norm(x)
    dims = _dims(x, bd)
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True) if dims else torch.abs(x)


def passthrough(x, *rest):
    """The scalar form of a primitive that returns its first argument for scalars (mean of a number)."""
    return x


_CONSTANTS = {}   # (value, dtype, device) -> 0-d tensor: shape facts cost no allocation per step


def _constant(value, like):
    """`value` as a cached 0-d tensor of `like`'s dtype and device (never written to: fresh=False)."""
    key = (value, like.dtype, like.device)
    out = _CONSTANTS.get(key)
    if out is None:
        out = _CONSTANTS[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return out
