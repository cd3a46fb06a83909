"""What both loops of the engine share: the metric vocabulary it records, the stop target, the
set-up of a batch at x_0 and the outcome of a loop, the oracle of the reference arithmetic, and
tree helpers for a rule's state."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from heterosim import _native, metrics
from heterosim.optimizers import Optimizer
from heterosim.problems.base import Problem

# views of the one vocabulary (heterosim.metrics): what the engine records, and what it can target
METRICS = metrics.RECORDED
SCALAR_METRICS = metrics.TARGETS
_STOP_CHECK_EVERY = 8  # early-exit test cadence (hits themselves are tracked every step)
DIVERGE_FACTOR = 1e6  # a run is diverged once f - f* exceeds this multiple of f_0 - f*


@dataclass(frozen=True)
class Target:
    """Stop criterion: metric <= eps (times the metric at x_0 when relative)."""

    metric: str
    eps: float
    relative: bool = False

    def __post_init__(self):
        _check_metric(self.metric)
        _check_eps(self.eps)


def _check_metric(metric):
    metrics.check(metric, SCALAR_METRICS)


def _check_eps(eps):
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")


def _metric_values(problem, X, f, G, names, f_star, x_star):
    out = {}
    for m in names:
        if m == "loss":
            out[m] = f
        elif m == "subopt":
            out[m] = f - f_star
        elif m == "grad_l2":
            out[m] = _native.tree_norm(G)  # summed as the C oracle sums it
        elif m == "grad_l1":
            out[m] = G.abs().sum(1)
        elif m == "dist":
            if x_star is None:
                raise ValueError(f"metric 'dist' needs a known minimiser; {problem.name} has x_star = None")
            out[m] = _native.tree_norm(X - x_star)
        elif m == "blocks":
            out[m] = problem.blocks.norms(G)
    return out


def _engine_oracle(problem, like: torch.Tensor, native: bool = True):
    """The problem's oracle in the engine's fixed arithmetic (``Problem.engine_oracle``), or None."""
    fn = getattr(problem, "engine_oracle", None)
    return fn(like, native) if fn is not None else None


def _reference_oracle(problem, like: torch.Tensor, native: bool = False):
    """``X -> (f, G)`` for the plain loop (the torch twin of the C oracle, ``native`` False) and
    x_0 (either: the same bits): the problem's ``engine_oracle`` where it has one, else its
    ``loss_and_grad``."""
    twin = _engine_oracle(problem, like, native=native)
    if twin is None:
        return problem.loss_and_grad

    def loss_and_grad(X):
        X = X.contiguous()
        G, f = torch.empty_like(X), X.new_empty(X.shape[0])
        twin(X, G, f)
        return f, G
    return loss_and_grad


@dataclass
class _Setup:
    """Everything both loops share: the batch at x_0 and what to measure."""

    problem: Problem
    opt: Optimizer
    X: torch.Tensor            # (B, d) x_0
    G: torch.Tensor            # (B, d) gradient at x_0
    lr: torch.Tensor           # (B, 1)
    blocks: object
    names: tuple               # recorded metrics
    rec_steps: np.ndarray
    target: Target | None
    thr: torch.Tensor | None   # (B,) threshold of the target
    hit: torch.Tensor          # (B,) first hit so far (inf: none)
    f_limit: torch.Tensor      # (B,) a row diverges once f > f_limit (or f is nan)
    active: torch.Tensor       # (B,) bool: finite at x_0
    curves0: dict              # metric -> value at x_0 (when step 0 is recorded)
    steps: int
    stop_early: bool
    stop_when: object
    gens: list | None          # stochastic: (generator, rows) per seed
    f_star: float
    x_star: torch.Tensor | None
    oracle: object = None      # X -> (f, G): the reference oracle (_reference_oracle)


@dataclass
class _Outcome:
    X: torch.Tensor            # (B, d) final iterates (diverged rows: their last good iterate)
    state: object              # the rule's final state
    steps_run: int
    curves: dict               # metric -> (B, K[, n]) tensor, K columns up to steps_run
    active: torch.Tensor       # (B,) bool
    diverged_at: torch.Tensor  # (B,) int64, -1: never
    hit: torch.Tensor          # (B,)


def map_tensors(fn, state):
    """``state`` with ``fn`` applied to every tensor in it (NamedTuples and tuples, nested, as a
    chain's :class:`~heterosim.optimizers.RuleState`); other values pass through."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple):
        items = [map_tensors(fn, v) for v in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


def tensors_of(state) -> list:
    """Every tensor in ``state``, in order (see :func:`map_tensors`)."""
    out = []
    map_tensors(lambda t: out.append(t) or t, state)
    return out
