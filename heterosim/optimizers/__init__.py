r"""Optimizers written once: primitives composed into rules, one source for every path.

A rule is an ``(init, update)`` pair over an explicit state, acting on a batch of iterates
``x`` of shape (B, d) (one row per run) with a block partition ``blocks`` of the d
coordinates::

    state = opt.init(x, blocks)
    step, state = opt.update(g, state, x, lr, blocks)    # new iterate: x + step

``lr`` is a float or a (B, 1) tensor (one learning rate per row). Nothing is mutated.

Every registered rule is a :func:`chain` of the primitives of
:mod:`~heterosim.optimizers.primitives` (momentum ``trace``, ``ema``, ``scale_by_adam``,
``scale_by_rms``, ``scale_by_adagrad``, ``scale_by_sign``, block-wise RMS and normalisation,
weight decay, ``scale_by_lr``), each written once as a pure function on tensors. The same
source drives

- the engine's reference loop (the chain's ``update`` on the whole batch);
- the engine's fast path: a chain of elementwise primitives is traced into one fused C loop
  (:mod:`~heterosim.optimizers.fused`), used only where it reproduces ``update`` to the bit;
- a model's parameters through :class:`RuleOptimizer` (a ``torch.optim.Optimizer`` with
  per-parameter state, stepping with torch's foreach kernels).

A rule of your own is a chain too, or any plain (init, update) pair wrapped in
:class:`Optimizer`; register its factory with :func:`register` to reach it by name.

Registry: :func:`make` ``(name, **hyper)``, :func:`names`, :func:`for_problem`.
"""
from heterosim.optimizers.checks import (check_choice, check_flag, check_int, check_numbers, check_real, describe,
                                         validate_lr)
from heterosim.optimizers.primitives import (RuleState, Transform, add_decayed_weights, ema, normalize,
                                             scale_by_adagrad, scale_by_adam, scale_by_block,
                                             scale_by_first_moment_rms, scale_by_linf_steepest, scale_by_lr,
                                             scale_by_rms, scale_by_sign, trace)
from heterosim.optimizers.rules import _REGISTRY, Optimizer, chain, for_problem, make, names, register
from heterosim.optimizers.adapter import RuleOptimizer

__all__ = ["Optimizer", "Transform", "RuleState", "chain", "make", "for_problem", "names", "register",
           "RuleOptimizer", "validate_lr", "add_decayed_weights", "trace", "ema", "scale_by_sign", "scale_by_adam",
           "scale_by_rms", "scale_by_adagrad", "scale_by_first_moment_rms", "scale_by_block", "normalize",
           "scale_by_linf_steepest", "scale_by_lr", "check_real", "check_int", "check_numbers", "check_flag",
           "check_choice", "describe"]
