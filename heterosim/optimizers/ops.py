"""The functions a primitive may call besides ``+ - * /``.

Elementwise: ``sqrt``, ``sign``, ``lerp``. Reductions over a row (a run; in the adapter, a
parameter group): ``row_norm``, ``row_abs_sum``. State: ``zeros_like``, ``full_like``,
``block_zeros``. On tensors they are torch's (sqrt: the correctly rounded one, see
:func:`sqrt`); any other operand (a traced symbol of :mod:`heterosim.optimizers.fused`, a list
of a model's tensors in :mod:`heterosim.optimizers.adapter`) supplies the method of the same
name (``.sqrt()``, ``.lerp(end, weight)``, ``.row_norm()``, ...)."""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["sqrt", "sign", "lerp", "zeros_like", "full_like", "block_zeros", "row_norm", "row_abs_sum", "clamp_min",
           "tiny"]

Tensor = torch.Tensor


def sqrt(v):
    """Elementwise square root, correctly rounded (IEEE 754) on every path: on CPU tensors
    numpy's kernel (torch's float64 CPU sqrt differs from the correctly rounded value in about
    1% of entries, which would make the engine's fused kernels, whose sqrt is the exact one,
    disagree with this reference); torch.sqrt elsewhere (CUDA's is correctly rounded) and
    under autograd."""
    if isinstance(v, Tensor):
        if v.device.type == "cpu" and v.dtype in (torch.float64, torch.float32) and not v.requires_grad:
            return torch.from_numpy(np.sqrt(v.numpy()))
        return torch.sqrt(v)
    if isinstance(v, (int, float)):
        return math.sqrt(v)
    return v.sqrt()


def sign(v):
    """-1, 0 or +1 per entry (0 for 0 and nan, as torch.sign)."""
    if isinstance(v, Tensor):
        return torch.sign(v)
    if isinstance(v, (int, float)):
        return float((v > 0) - (v < 0))
    return v.sign()


def lerp(start, end, weight: float):
    """start + weight (end - start), as torch.lerp computes it (torch.optim.Adam's first moment)."""
    if isinstance(start, Tensor):
        return torch.lerp(start, end, weight)
    return start.lerp(end, weight)


def zeros_like(x):
    """Zeros shaped like x."""
    return torch.zeros_like(x) if isinstance(x, Tensor) else x.zeros_like()


def full_like(x, value: float):
    """``value`` everywhere, shaped like x."""
    return torch.full_like(x, value) if isinstance(x, Tensor) else x.full_like(value)


def block_zeros(x, blocks):
    """Zeros with one entry per block of each row of x (a per-block state)."""
    return x.new_zeros(*x.shape[:-1], blocks.n) if isinstance(x, Tensor) else blocks.zeros(x)


def row_norm(u):
    """||u||_2 of each row, keeping the row's axis ((B, 1) for a (B, d) batch)."""
    return torch.linalg.vector_norm(u, dim=-1, keepdim=True) if isinstance(u, Tensor) else u.row_norm()


def row_abs_sum(u):
    """||u||_1 of each row, keeping the row's axis."""
    return u.abs().sum(-1, keepdim=True) if isinstance(u, Tensor) else u.row_abs_sum()


def clamp_min(u, lo: float):
    """max(u, lo) per entry."""
    return u.clamp_min(lo) if isinstance(u, Tensor) else u.clamp_min(lo)


def tiny(u) -> float:
    """The smallest positive normal number of u's floating dtype (a guard for 0/0: a zero norm
    divides a zero vector into zeros, in float32 as in float64)."""
    return torch.finfo(u.dtype).tiny
