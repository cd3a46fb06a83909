r"""The primitives every rule is made of, each written once.

A primitive (a :class:`Transform`, after optax's ``GradientTransformation``) maps an update
direction ``u`` to a new one, with an explicit state of its own::

    state = tr.init(x, blocks)                       # a NamedTuple of tensors (maybe empty)
    u, state = tr.update(u, state, x, p, blocks)     # nothing is mutated

``x`` is the iterate (B, d) (one row per run; a parameter tensor's values in the adapter) and
``p`` the numbers of this step: ``tr.params(t)`` (the hyperparameters and the per-step scalars
of step t = 1, 2, ..., such as Adam's bias corrections) plus the learning rate ``p.lr`` (a
float or a (B, 1) tensor). A rule is a :func:`chain` of primitives that starts from the
gradient and ends with :func:`scale_by_lr`, whose output is the step: x_{t+1} = x_t + step.

An *elementwise* primitive (``tr.elementwise``) computes each coordinate from the same
coordinate of its inputs, with ``+ - * /`` and the functions of :mod:`heterosim.optimizers.ops`
(``sqrt``, ``sign``, ``lerp``), branching in Python only on booleans of ``p``. Its one
``update`` then serves three ways, unchanged:

- on tensors: the reference arithmetic (the engine's plain loop, users' calls);
- on :class:`heterosim.optimizers.fused` symbols: it is traced into one fused C loop for the
  whole chain, which the engine takes only after checking, per rule, that it reproduces the
  tensor arithmetic to the bit;
- on lists of tensors (:class:`heterosim.optimizers.adapter.TensorList`): torch's foreach
  kernels over a model's parameters, in the torch.optim adapter.

Primitives that reduce over blocks or rows (block-wise Adam, normalisation, l_inf steepest
descent) are written on tensors only and say so (``elementwise=False``).

``equivariant`` declares that the map commutes with block-diagonal rotations of (u, state, x);
a chain of such primitives may be run by the engine in a quadratic's eigenbasis.

Arithmetic follows torch.optim operation for operation where torch has the rule, so that the
two agree to rounding (tests/test_optimizers.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import torch

from heterosim.optimizers.ops import (block_zeros, clamp_min, full_like, lerp, row_abs_sum, row_norm, sign, sqrt,
                                      tiny, zeros_like)

__all__ = ["Transform", "Params", "RuleState", "chain_init", "chain_update", "add_decayed_weights", "trace", "ema",
           "adam_denominator",
           "scale_by_sign", "scale_by_adam", "scale_by_rms", "scale_by_adagrad", "scale_by_first_moment_rms",
           "scale_by_block", "normalize", "scale_by_linf_steepest", "scale_by_lr"]

Tensor = torch.Tensor


class Params(dict):
    """The numbers of one step, read as attributes (``p.b1``): floats, static booleans, and
    ``lr``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Empty(NamedTuple):
    """The state of a primitive that keeps none."""


def _no_params(t: int) -> dict:
    return {}


@dataclass(frozen=True)
class Transform:
    """One primitive: ``init(x, blocks) -> state``; ``update(u, state, x, p, blocks) -> (u, state)``;
    ``params(t) -> dict`` the numbers of step t (module doc)."""

    name: str
    init: Callable[[Tensor, Any], tuple]
    update: Callable[..., tuple]
    params: Callable[[int], dict] = _no_params
    elementwise: bool = True
    equivariant: bool = False
    hyper: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        h = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{self.name}({h})"


def _empty(x, blocks):
    return Empty()


# --------------------------------------------------------------------------- chains
class RuleState(NamedTuple):
    """The state of a chain: the step count t (steps taken) and one state per primitive.
    A field of a primitive's state reads as an attribute (``state.exp_avg``)."""

    count: int
    parts: tuple

    def __getattr__(self, name):
        if not name.startswith("_"):
            for part in tuple.__getitem__(self, 1):
                if name in getattr(type(part), "_fields", ()):
                    return getattr(part, name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def fields(self) -> dict:
        """Every tensor of the state by its field name (the primitives' names are distinct within
        a registered rule; a repeated name is prefixed with the primitive's index)."""
        out = {}
        for i, part in enumerate(self.parts):
            for k, v in zip(getattr(type(part), "_fields", ()), part):
                out[k if k not in out else f"{i}.{k}"] = v
        return out


def chain_init(transforms, x, blocks) -> RuleState:
    return RuleState(0, tuple(tr.init(x, blocks) for tr in transforms))


def chain_update(transforms, g, state: RuleState, x, lr, blocks):
    """One step of the chain: (step, new state). Each primitive gets ``params(t)`` and the lr."""
    t = state.count + 1
    u, parts = g, []
    for tr, s in zip(transforms, state.parts):
        p = Params(tr.params(t))
        p["lr"] = lr
        u, s = tr.update(u, s, x, p, blocks)
        parts.append(s)
    return u, RuleState(t, tuple(parts))


# --------------------------------------------------------------------------- elementwise primitives
def add_decayed_weights(weight_decay: float) -> Transform:
    r"""u + \lambda x: L2 weight decay added to the gradient (torch.optim's coupled weight decay,
    first in the chain) or to the step direction (decoupled, as in AdamW: after the scaling)."""
    def update(u, s, x, p, blocks):
        return u + p.wd * x, s
    return Transform("add_decayed_weights", _empty, update, lambda t: {"wd": weight_decay}, equivariant=True,
                     hyper=dict(weight_decay=weight_decay))


class TraceState(NamedTuple):
    momentum_buffer: Tensor


def trace(momentum: float, dampening: float = 0.0, nesterov: bool = False) -> Transform:
    r"""Momentum, torch.optim.SGD's convention (Polyak 1964; Sutskever et al. 2013 for Nesterov):

    .. math::
        b_1 = u_1,\quad b_t = \mu b_{t-1} + (1-\tau) u_t,\quad
        \text{out} = u_t + \mu b_t \text{ (nesterov) or } b_t

    With a zero-initialised buffer and no dampening the first step is the same number, so
    torch.optim.RMSprop's momentum (b_t = mu b_{t-1} + u_t from b_0 = 0) is this too."""
    def init(x, blocks):
        return TraceState(zeros_like(x))

    def update(u, s, x, p, blocks):
        buf = u if p.first else p.mu * s.momentum_buffer + p.damp * u
        return (u + p.mu * buf if nesterov else buf), TraceState(buf)

    return Transform("trace", init, update, lambda t: {"mu": momentum, "damp": 1 - dampening, "first": t == 1},
                     equivariant=True, hyper=dict(momentum=momentum, dampening=dampening, nesterov=nesterov))


class EmaState(NamedTuple):
    exp_avg: Tensor


def ema(beta: float) -> Transform:
    r"""Exponential moving average from zero: m_t = \beta m_{t-1} + (1-\beta) u_t (Signum's
    momentum, Bernstein et al. 2018, Alg. 3; no bias correction)."""
    def init(x, blocks):
        return EmaState(zeros_like(x))

    def update(u, s, x, p, blocks):
        m = p.beta * s.exp_avg + (1 - p.beta) * u
        return m, EmaState(m)

    return Transform("ema", init, update, lambda t: {"beta": beta}, equivariant=True, hyper=dict(beta=beta))


def scale_by_sign() -> Transform:
    """sign(u), coordinate by coordinate (-1, 0 or +1; steepest descent in l_inf)."""
    def update(u, s, x, p, blocks):
        return sign(u), s
    return Transform("scale_by_sign", _empty, update)


def adam_denominator(v, c2, eps):
    """Adam's denominator sqrt(v) / sqrt(1 - beta2^t) + eps (``c2`` = sqrt(1 - beta2^t)), as
    torch.optim.Adam computes it; the A1 certificate of heterosim.verify reads the same one."""
    return sqrt(v) / c2 + eps


class AdamMoments(NamedTuple):
    exp_avg: Tensor     # m, like x
    exp_avg_sq: Tensor  # v, like x; (B, n) per block for block-wise Adam


def scale_by_adam(b1: float, b2: float, eps: float, per_block: bool = False) -> Transform:
    r"""Adam's direction (Kingma & Ba 2015, Alg. 1), torch.optim.Adam's arithmetic:

    .. math::
        m_t = \mathrm{lerp}(m_{t-1}, u_t, 1-\beta_1),\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) u_t^2,\quad
        \text{out} = \frac{1}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    ``per_block``: one second moment per block, v_{t,b} = beta2 v_{t-1,b} + (1 - beta2) mean_b(u^2)
    (Adam-mini; Zhang et al. 2024, arXiv 2406.16793); with one coordinate per block it is Adam."""
    def init(x, blocks):
        v = block_zeros(x, blocks) if per_block else zeros_like(x)
        return AdamMoments(zeros_like(x), v)

    def update(u, s, x, p, blocks):
        m = lerp(s.exp_avg, u, 1 - p.b1)
        if per_block:
            v = p.b2 * s.exp_avg_sq + (1 - p.b2) * blocks.mean(u * u)
            vx = blocks.expand(v)
        else:
            v = vx = p.b2 * s.exp_avg_sq + (1 - p.b2) * (u * u)
        return m / adam_denominator(vx, p.c2, p.eps) * p.k1, AdamMoments(m, v)

    def params(t):  # k1 = 1 / (1 - beta1^t): torch.optim.Adam folds it into its step size, lr / (1 - beta1^t)
        return {"b1": b1, "b2": b2, "eps": eps, "k1": 1 / (1 - b1 ** t), "c2": (1 - b2 ** t) ** 0.5}

    return Transform("scale_by_adam", init, update, params, elementwise=not per_block, equivariant=per_block,
                     hyper=dict(betas=(b1, b2), eps=eps, per_block=per_block))


class RmsState(NamedTuple):
    square_avg: Tensor


class CenteredRmsState(NamedTuple):
    square_avg: Tensor
    grad_avg: Tensor


def scale_by_rms(alpha: float, eps: float, centered: bool = False) -> Transform:
    r"""RMSprop's direction (Tieleman & Hinton 2012), torch.optim.RMSprop's arithmetic:
    v_t = alpha v_{t-1} + (1 - alpha) u_t^2 and out = u_t / (sqrt(v_t) + eps); ``centered``
    subtracts the square of the running mean g_avg = lerp(g_avg, u, 1 - alpha) under the root."""
    def init(x, blocks):
        return CenteredRmsState(zeros_like(x), zeros_like(x)) if centered else RmsState(zeros_like(x))

    def update(u, s, x, p, blocks):
        sq = p.alpha * s.square_avg + (1 - p.alpha) * (u * u)
        if centered:
            gavg = lerp(s.grad_avg, u, 1 - p.alpha)
            return u / (sqrt(sq - gavg * gavg) + p.eps), CenteredRmsState(sq, gavg)
        return u / (sqrt(sq) + p.eps), RmsState(sq)

    return Transform("scale_by_rms", init, update, lambda t: {"alpha": alpha, "eps": eps},
                     hyper=dict(alpha=alpha, eps=eps, centered=centered))


class AdagradState(NamedTuple):
    sum: Tensor


def scale_by_adagrad(initial_accumulator_value: float, eps: float) -> Transform:
    r"""Adagrad's direction (Duchi et al. 2011), torch.optim.Adagrad's arithmetic:
    s_t = s_{t-1} + u_t^2 (s_0 = the initial accumulator value), out = u_t / (sqrt(s_t) + eps)."""
    def init(x, blocks):
        return AdagradState(full_like(x, initial_accumulator_value))

    def update(u, s, x, p, blocks):
        acc = s.sum + u * u
        return u / (sqrt(acc) + p.eps), AdagradState(acc)

    return Transform("scale_by_adagrad", init, update, lambda t: {"eps": eps},
                     hyper=dict(initial_accumulator_value=initial_accumulator_value, eps=eps))


class FirstMomentState(NamedTuple):
    v0: Tensor  # u_1^2, frozen after the first step


def scale_by_first_moment_rms(eps: float) -> Transform:
    r"""A diagonal preconditioner fixed at the first step: out = u_t / (|u_1| + eps), written
    u_t / (sqrt(v_0) + eps) with v_0 = u_1^2: Adam with beta1 = 0, beta2 = 1 (Zhang et al. 2024,
    arXiv 2402.16788, Sec. 4)."""
    def init(x, blocks):
        return FirstMomentState(zeros_like(x))

    def update(u, s, x, p, blocks):
        v0 = u * u if p.first else s.v0
        return u / (sqrt(v0) + p.eps), FirstMomentState(v0)

    return Transform("scale_by_first_moment_rms", init, update, lambda t: {"eps": eps, "first": t == 1},
                     hyper=dict(eps=eps))


def scale_by_lr(lr_decay: float = 0.0) -> Transform:
    r"""The step: -eta_t u with eta_t = eta (the run's learning rate, ``p.lr``), or with
    ``lr_decay`` torch.optim.Adagrad's eta_t = eta / (1 + (t - 1) lr_decay). Last in every chain."""
    if lr_decay:
        def update(u, s, x, p, blocks):
            return -(p.lr / p.k) * u, s
        return Transform("scale_by_lr", _empty, update, lambda t: {"k": 1 + (t - 1) * lr_decay}, equivariant=True,
                         hyper=dict(lr_decay=lr_decay))

    def update(u, s, x, p, blocks):
        return -p.lr * u, s
    return Transform("scale_by_lr", _empty, update, equivariant=True)


# --------------------------------------------------------------------------- block and row reductions
def scale_by_block(values) -> Transform:
    r"""u_b times a constant per block: with values 1 / L_b, block-wise learning rates
    eta_b = eta / L_b (Nesterov 2012's block step; docs/theory.md B4/Q2)."""
    def update(u, s, x, p, blocks):
        c = values.to(device=u.device, dtype=u.dtype) if isinstance(u, Tensor) else values
        return u * blocks.expand(c), s
    return Transform("scale_by_block", _empty, update, elementwise=False, equivariant=True,
                     hyper=dict(values=tuple(values.tolist())))


def normalize(per_block: bool = False) -> Transform:
    r"""u / ||u||_2 over each row (steepest descent in l_2 with a fixed length) or, ``per_block``,
    u_b / ||u_b||_2 in every block (LARS-like, You et al. 2017); a zero u gives a zero out."""
    def update(u, s, x, p, blocks):
        if per_block:
            n = blocks.expand(blocks.norms(u))
        else:
            n = row_norm(u)
        return u / clamp_min(n, tiny(u)), s  # a zero u gives a zero out, whatever the dtype
    return Transform("normalize", _empty, update, elementwise=False, equivariant=True,
                     hyper=dict(per_block=per_block))


def scale_by_linf_steepest(Linf: float) -> Transform:
    r"""Steepest descent in l_inf under the quadratic upper model: (||u||_1 / L_inf) sign(u)
    (docs/theory.md B3; Kelner et al. 2014, Bernstein et al. 2018)."""
    def update(u, s, x, p, blocks):
        return (row_abs_sum(u) / Linf) * sign(u), s
    return Transform("scale_by_linf_steepest", _empty, update, elementwise=False, hyper=dict(Linf=Linf))
