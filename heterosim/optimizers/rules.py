"""The registered rules, each a :func:`chain` of the primitives of
:mod:`heterosim.optimizers.primitives`, and the registry: :func:`make`, :func:`names`,
:func:`register`, :func:`for_problem`.

Hyperparameters take torch.optim's names (momentum, dampening, nesterov, betas, eps,
weight_decay, alpha, lr_decay, initial_accumulator_value, centered) and where torch.optim has
the rule the chain follows its arithmetic, so that the two agree to rounding in float64
(tests/test_optimizers.py).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

from heterosim.blocks import Blocks
from heterosim.optimizers.checks import _betas, _in01, _nonneg, _positive_vector, check_flag, check_real
from heterosim.optimizers.primitives import (Transform, add_decayed_weights, chain_init, chain_update, ema, normalize,
                                             scale_by_adagrad, scale_by_adam, scale_by_block,
                                             scale_by_first_moment_rms, scale_by_linf_steepest, scale_by_lr,
                                             scale_by_rms, scale_by_sign, trace)

__all__ = ["Optimizer", "chain", "make", "for_problem", "names", "register"]

Tensor = torch.Tensor


@dataclass(frozen=True)
class Optimizer:
    """A pure optimizer rule: ``init(x, blocks) -> state`` and
    ``update(g, state, x, lr, blocks) -> (step, new_state)`` (module doc).

    ``transforms``: the chain of primitives the rule is made of (:func:`chain`), or None for a
    plain (init, update) pair. ``equivariant`` declares that the step commutes with
    block-diagonal rotations, so a quadratic may be run in its eigenbasis (a chain is when all
    its primitives are). ``torch_optim``: the torch.optim class name and keyword arguments that
    take the same steps, where torch has the rule (the test matrix checks each against it)."""

    name: str
    init: Callable[[Tensor, Blocks], Any]
    update: Callable[..., tuple[Tensor, Any]]
    hyper: Mapping[str, Any] = field(default_factory=dict)
    equivariant: bool = False
    transforms: tuple | None = field(default=None, compare=False, repr=False)
    torch_optim: tuple | None = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        h = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items() if k != "L")
        return f"Optimizer({self.name}{', ' + h if h else ''})"

    def label(self) -> str:
        """A short, stable text naming the rule and its hyperparameters (for tables)."""
        h = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.hyper.items()) if k != "L")
        return f"{self.name}({h})" if h else self.name

    @property
    def elementwise(self) -> bool:
        """A chain of elementwise primitives only (the engine may fuse it into one loop)."""
        return self.transforms is not None and all(tr.elementwise for tr in self.transforms)


def chain(*transforms: Transform, name: str = "chain", hyper: Mapping[str, Any] | None = None,
          torch_optim: tuple | None = None) -> Optimizer:
    """The rule that applies ``transforms`` in turn to the gradient; the last one's output is the
    step (end with :func:`scale_by_lr`). ``name`` and ``hyper`` label it in tables.

    Example (Adam with decoupled weight decay, as ``make("adamw")``)::

        opt = chain(scale_by_adam(0.9, 0.999, 1e-8), add_decayed_weights(1e-2), scale_by_lr(), name="adamw")
    """
    transforms = tuple(transforms)
    bad = [t for t in transforms if not isinstance(t, Transform)]
    if not transforms or bad:
        raise ValueError(f"chain takes one or more Transforms (heterosim.optimizers.primitives); got "
                         f"{[type(t).__name__ for t in bad] or 'none'}")

    def init(x, blocks):
        return chain_init(transforms, x, blocks)

    def update(g, state, x, lr, blocks):
        return chain_update(transforms, g, state, x, lr, blocks)

    return Optimizer(name, init, update, dict(hyper or {}), equivariant=all(t.equivariant for t in transforms),
                     transforms=transforms, torch_optim=torch_optim)


def _short(v):
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_short(u) for u in v) + ")"
    return f"{v:g}" if isinstance(v, float) else str(v)


_REGISTRY: dict[str, Callable[..., Optimizer]] = {}


def register(name: str):
    """Decorator: register a rule factory ``factory(**hyper) -> Optimizer`` under ``name``."""
    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn
    return deco


def names() -> list[str]:
    """Names accepted by :func:`make` (aliases included)."""
    return sorted(_REGISTRY)


def make(name: str, /, **hyper) -> Optimizer:
    """Build the registered rule ``name`` with hyperparameters ``hyper`` (torch.optim's names).

    An :class:`Optimizer` passes through unchanged (hyperparameters then are an error). A
    keyword the rule does not take is a ``ValueError`` naming it and the ones the rule takes;
    a value out of range or of the wrong type is a ``ValueError`` naming the hyperparameter,
    the value given and the values allowed."""
    if isinstance(name, Optimizer):
        if hyper:
            raise ValueError(f"got the built optimizer {name!r} and hyperparameters {sorted(hyper)}; pass "
                             "hyperparameters with a registered name, make(name, **hyper)")
        return name
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; registered optimizers: {', '.join(names())}")
    fn = _REGISTRY[name]
    allowed = list(inspect.signature(fn).parameters)
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        takes = f"it takes: {', '.join(allowed)}" if allowed else "it takes none"
        lr = ("; the learning rate is not a hyperparameter of the rule: pass it to engine.run(..., lrs=...), "
              "to update(...) or to RuleOptimizer(..., lr=...)") if "lr" in unknown else ""
        raise ValueError(f"optimizer {name!r} does not take the hyperparameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; {takes}{lr}")
    try:
        return fn(**hyper)
    except TypeError as e:  # every value goes through the checks below, so this is a value no check foresaw
        raise ValueError(f"optimizer {name!r} could not be built from "
                         f"{', '.join(f'{k}={v!r}' for k, v in hyper.items())}: {e}") from e


# hyperparameters that some rules read from the problem's ground truth
_FROM_PROBLEM = {"blockwise_gd": {"L": "L_blocks"}, "steepest_linf": {"Linf": "Linf"}}


def _needs_problem(name: str, hyper: str, attr: str) -> str:
    """The advice of the error a rule raises when built without the constant it reads from the problem."""
    return (f"{name} needs {hyper} (the problem's {attr}); build it with "
            f"hs.optimizers.for_problem({name!r}, problem), which sets {hyper} = problem.{attr}, and pass "
            f"that optimizer (not the name {name!r}) to engine.run / engine.tune, or give {hyper}=... to make")


def for_problem(name: str, problem, **hyper) -> Optimizer:
    """:func:`make` with the hyperparameters a rule reads from the problem filled in
    (blockwise_gd: ``L = problem.L_blocks``; steepest_linf: ``Linf = problem.Linf``).

    Example::

        opt = hs.optimizers.for_problem("blockwise_gd", problem)
        hs.engine.run(problem, opt, lrs=[1.0])
    """
    if isinstance(name, Optimizer):
        return make(name, **hyper)
    filled = {k: getattr(problem, attr) for k, attr in _FROM_PROBLEM.get(name, {}).items() if k not in hyper}
    return make(name, **filled, **hyper)


# --------------------------------------------------------------------------- the registered rules
def _decay(weight_decay):
    """The coupled weight decay of torch.optim (g + lambda x), when lambda is not 0."""
    return (add_decayed_weights(weight_decay),) if weight_decay else ()


def _sgd(name, default_momentum):
    def factory(momentum: float = default_momentum, dampening: float = 0.0, nesterov: bool = name == "nesterov",
                weight_decay: float = 0.0) -> Optimizer:
        r"""SGD with torch.optim.SGD's momentum convention (heavy ball for nesterov=False):

        .. math::
            g \leftarrow g + \lambda x,\quad b_t = \mu b_{t-1} + (1-\tau) g_t\ (b_1 = g_1),\quad
            x_{t+1} = x_t - \eta\,(g_t + \mu b_t \text{ if nesterov else } b_t)

        With momentum = 0 this is (stochastic) gradient descent. Polyak 1964 (heavy ball);
        Sutskever et al. 2013 (Nesterov form); torch.optim.SGD.
        Chain: add_decayed_weights (if lambda) -> trace (if mu) -> scale_by_lr.
        """
        mu = _nonneg("momentum", momentum)
        tau = _nonneg("dampening", dampening)
        wd = _nonneg("weight_decay", weight_decay)
        nesterov = check_flag("nesterov", nesterov)
        if nesterov and (mu <= 0 or tau != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening = 0; got momentum={mu:g}, "
                             f"dampening={tau:g}")
        hyper = dict(momentum=mu, dampening=tau, nesterov=bool(nesterov), weight_decay=wd) if mu or wd else {}
        return chain(*_decay(wd), *((trace(mu, tau, nesterov),) if mu else ()), scale_by_lr(), name=name,
                     hyper=hyper, torch_optim=("SGD", dict(momentum=mu, dampening=tau, nesterov=bool(nesterov),
                                                           weight_decay=wd)))
    return factory


register("sgd")(_sgd("sgd", 0.0))
register("gd")(_sgd("gd", 0.0))
register("sgd_momentum")(_sgd("sgd_momentum", 0.9))
register("nesterov")(_sgd("nesterov", 0.9))


@register("blockwise_gd")
def blockwise_gd(L=None) -> Optimizer:
    r"""Block-wise learning rates eta_b = lr / L_b:  x_b <- x_b - (lr / L_b) g_b.

    ``L``: the per-block smoothness constants (the problem's ``L_blocks``), one per block.
    With lr = 1 this is the block-Lipschitz step of docs/theory.md B4/Q2 (Nesterov 2012,
    block coordinate descent with step 1/L_b, applied to all blocks at once).
    Chain: scale_by_block(1 / L_b) -> scale_by_lr.
    """
    if L is None:
        raise ValueError(_needs_problem("blockwise_gd", "L", "L_blocks"))
    Lt = _positive_vector("L (blockwise_gd's per-block constants L_b)", L)
    opt = chain(scale_by_block(1.0 / Lt), scale_by_lr(), name="blockwise_gd", hyper=dict(L=tuple(Lt.tolist())))

    def init(x, blocks):
        if blocks.n != Lt.numel():
            raise ValueError(f"blockwise_gd has {Lt.numel()} constants L_b for {blocks.n} blocks")
        return opt.init(x, blocks)

    return Optimizer(opt.name, init, opt.update, opt.hyper, opt.equivariant, opt.transforms)  # no torch twin


@register("signsgd")
def signsgd(weight_decay: float = 0.0) -> Optimizer:
    r"""SignSGD: x <- x - eta (sign(g) + lambda x) (steepest descent in l_inf with a constant
    step). Bernstein et al. 2018, "signSGD: Compressed optimisation for non-convex problems",
    Alg. 1. Chain: scale_by_sign -> add_decayed_weights (if lambda) -> scale_by_lr."""
    wd = _nonneg("weight_decay", weight_decay)
    return chain(scale_by_sign(), *_decay(wd), scale_by_lr(), name="signsgd", hyper=dict(weight_decay=wd) if wd else {})


@register("signum")
def signum(beta: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    r"""Signum, the sign of the momentum: m_t = beta m_{t-1} + (1 - beta) g_t (m_0 = 0),
    x <- x - eta (sign(m_t) + lambda x). Bernstein et al. 2018, Alg. 3.
    Chain: ema -> scale_by_sign -> add_decayed_weights (if lambda) -> scale_by_lr."""
    b = _in01("beta", beta)
    wd = _nonneg("weight_decay", weight_decay)
    return chain(ema(b), scale_by_sign(), *_decay(wd), scale_by_lr(), name="signum",
                 hyper=dict(beta=b, weight_decay=wd) if wd else dict(beta=b))


@register("sign_momentum")
def sign_momentum(beta: float = 0.9) -> Optimizer:
    r"""Momentum of the signs (not Signum): m_t = beta m_{t-1} + (1 - beta) sign(g_t) (m_0 = 0),
    x <- x - eta m_t. The step is an average of past sign vectors, so it is no longer a sign;
    kept apart from :func:`signum` because the two behave differently (docs/theory.md C6).
    Chain: scale_by_sign -> ema -> scale_by_lr."""
    b = _in01("beta", beta)
    return chain(scale_by_sign(), ema(b), scale_by_lr(), name="sign_momentum", hyper=dict(beta=b))


@register("steepest_linf")
def steepest_linf(Linf=None) -> Optimizer:
    r"""Steepest descent in l_inf with the step of the quadratic upper model:
    x <- x - lr (||g||_1 / L_inf) sign(g). With lr = 1 each step decreases f by at least
    ||g||_1^2 / (2 L_inf) (docs/theory.md B3; Kelner et al. 2014 and Bernstein et al. 2018 use the
    same l_inf steepest-descent step). ``Linf``: the problem's L_inf (or an upper bound).
    Chain: scale_by_linf_steepest -> scale_by_lr."""
    if Linf is None:
        raise ValueError(_needs_problem("steepest_linf", "Linf", "Linf"))
    Li = check_real("Linf", Linf, 0.0, lo_open=True)
    return chain(scale_by_linf_steepest(Li), scale_by_lr(), name="steepest_linf", hyper=dict(Linf=Li))


@register("normalized_gd")
def normalized_gd() -> Optimizer:
    r"""Normalised GD: x <- x - eta g / ||g||_2 (steepest descent in l_2 with a fixed step length).
    Chain: normalize -> scale_by_lr."""
    return chain(normalize(), scale_by_lr(), name="normalized_gd")


@register("block_normalized_gd")
def block_normalized_gd() -> Optimizer:
    r"""Block-normalised GD: x_b <- x_b - eta g_b / ||g_b||_2 for every block b
    (every block moves by eta in l_2, whatever its gradient scale; LARS-like, You et al. 2017).
    Chain: normalize(per_block=True) -> scale_by_lr."""
    return chain(normalize(per_block=True), scale_by_lr(), name="block_normalized_gd")


def _adam(name, decoupled):
    def factory(betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2 if decoupled else 0.0) -> Optimizer:
        r"""Adam (Kingma & Ba 2015, Alg. 1), torch.optim.Adam's arithmetic:

.. math::
    m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\ v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\
    x_{t+1} = x_t - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

``weight_decay`` is coupled (added to g), as in torch.optim.Adam; ``adamw`` decouples it
(x <- x - eta lambda x; Loshchilov & Hutter 2019).
Chains: adam = add_decayed_weights (if lambda) -> scale_by_adam -> scale_by_lr;
adamw = scale_by_adam -> add_decayed_weights (if lambda) -> scale_by_lr."""
        b1, b2 = _betas(betas)
        e = _nonneg("eps", eps)
        wd = _nonneg("weight_decay", weight_decay)
        core = scale_by_adam(b1, b2, e)
        parts = (core, *_decay(wd)) if decoupled else (*_decay(wd), core)
        hyper = dict(betas=(b1, b2), eps=e, weight_decay=wd)
        return chain(*parts, scale_by_lr(), name=name, hyper=hyper,
                     torch_optim=("AdamW" if decoupled else "Adam", hyper))
    return factory


register("adam")(_adam("adam", decoupled=False))
register("adamw")(_adam("adamw", decoupled=True))


@register("block_adam")
def block_adam(betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> Optimizer:
    r"""Adam with one second moment per block (Adam-mini; Zhang et al. 2024, arXiv 2406.16793):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_{t,b} = \beta_2 v_{t-1,b} + (1-\beta_2)\,\tfrac{1}{d_b}\|g_{t,b}\|^2,\quad
        x_{t+1,b} = x_{t,b} - \frac{\eta}{1-\beta_1^t}\frac{m_{t,b}}{\sqrt{v_{t,b}/(1-\beta_2^t)}+\epsilon}

    Its step depends on the block partition; with one coordinate per block it is Adam.
    Chain: add_decayed_weights (if lambda) -> scale_by_adam(per_block=True) -> scale_by_lr.
    """
    b1, b2 = _betas(betas)
    e = _nonneg("eps", eps)
    wd = _nonneg("weight_decay", weight_decay)
    return chain(*_decay(wd), scale_by_adam(b1, b2, e, per_block=True), scale_by_lr(), name="block_adam",
                 hyper=dict(betas=(b1, b2), eps=e, weight_decay=wd))


@register("adam_fixed_precond")
def adam_fixed_precond(eps: float = 0.0) -> Optimizer:
    r"""Adam with beta1 = 0, beta2 = 1 and v_0 = g_0^2, the variant Zhang et al. 2024
    (arXiv 2402.16788, Sec. 4) analyse: a fixed diagonal preconditioner
    P = diag(1 / (|g_0| + eps)), x_{t+1} = x_t - eta P g_t. Its rate on a quadratic is set by
    kappa(P^{1/2} H P^{1/2}) (docs/theory.md Q3). A zero first-gradient coordinate needs eps > 0.
    Chain: scale_by_first_moment_rms -> scale_by_lr."""
    e = _nonneg("eps", eps)
    return chain(scale_by_first_moment_rms(e), scale_by_lr(), name="adam_fixed_precond", hyper=dict(eps=e))


@register("rmsprop")
def rmsprop(alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0,
            centered: bool = False) -> Optimizer:
    r"""RMSprop (Tieleman & Hinton 2012, lecture 6.5), torch.optim.RMSprop's arithmetic:
    v_t = alpha v_{t-1} + (1 - alpha) g_t^2, x <- x - eta g_t / (sqrt(v_t) + eps);
    ``centered`` subtracts the squared running mean of g; ``momentum`` accumulates
    b_t = mu b_{t-1} + g_t / (sqrt(v_t) + eps) and steps along b_t.
    Chain: add_decayed_weights (if lambda) -> scale_by_rms -> trace (if mu) -> scale_by_lr."""
    a = _in01("alpha", alpha, closed_right=True)
    e = _nonneg("eps", eps)
    wd = _nonneg("weight_decay", weight_decay)
    mu = _nonneg("momentum", momentum)
    centered = check_flag("centered", centered)
    hyper = dict(alpha=a, eps=e, weight_decay=wd, momentum=mu, centered=bool(centered))
    return chain(*_decay(wd), scale_by_rms(a, e, centered), *((trace(mu),) if mu else ()), scale_by_lr(),
                 name="rmsprop", hyper=hyper, torch_optim=("RMSprop", hyper))


@register("adagrad")
def adagrad(lr_decay: float = 0.0, weight_decay: float = 0.0, initial_accumulator_value: float = 0.0,
            eps: float = 1e-10) -> Optimizer:
    r"""Adagrad (Duchi et al. 2011), torch.optim.Adagrad's arithmetic:
    s_t = s_{t-1} + g_t^2, x <- x - eta_t g_t / (sqrt(s_t) + eps), eta_t = eta / (1 + (t-1) lr_decay).
    Chain: add_decayed_weights (if lambda) -> scale_by_adagrad -> scale_by_lr(lr_decay)."""
    dec = _nonneg("lr_decay", lr_decay)
    wd = _nonneg("weight_decay", weight_decay)
    acc = _nonneg("initial_accumulator_value", initial_accumulator_value)
    e = _nonneg("eps", eps)
    hyper = dict(lr_decay=dec, weight_decay=wd, initial_accumulator_value=acc, eps=e)
    return chain(*_decay(wd), scale_by_adagrad(acc, e), scale_by_lr(dec), name="adagrad", hyper=hyper,
                 torch_optim=("Adagrad", hyper))
