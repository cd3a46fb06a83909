"""The problem interface: an objective that carries its own ground truth.

Every problem evaluates a batch ``X`` of shape (B, d) at once: ``loss(X) -> (B,)``,
``grad(X) -> (B, d)``. It carries what tests and bounds need, so nothing is read
from magic numbers:

=============  ==============================================================
``d``          dimension
``blocks``     the block partition (:class:`heterosim.blocks.Blocks`)
``x_star``     a minimiser (d,), or None where none is attained
``f_star``     the minimum value (or infimum)
``L_blocks``   per-block smoothness L_b (n,): block-separable upper bound
               f(x+u) <= f(x) + <g,u> + 1/2 sum_b L_b ||u_b||^2
``mu_blocks``  per-block strong convexity mu_b (n,) (0 where there is none)
``L2``         lambda_max of the Hessian (or a valid upper bound)
``Linf``       sup_{||u||_inf <= 1} u^T H u, or a valid upper bound
``Linf_kind``  how ``Linf`` was obtained: "exact", "sdp", "sum_dbLb", "abs_sum", ...
=============  ==============================================================

and optional ``hessian()`` (dense, where small), ``hvp(X, V)`` and a seeded
stochastic oracle ``stochastic_grad(X, generator)``.

A problem built by a registered factory (or by
:meth:`~heterosim.problems.quadratic.BlockQuadratic.from_spectra`) records its ``recipe``,
the call that rebuilds it, and its ``repr`` is that call: with ``import heterosim as hs``,
``eval(repr(problem))`` builds an equal problem (a failing property test shows its problem
this way, seed and all).

Knobs are checked by :func:`check_real`, :func:`check_int`, :func:`check_numbers`,
:func:`check_flag` and :func:`check_choice` (re-exported here; they live beside
:func:`heterosim.optimizers.validate_lr`, so hyperparameters and knobs share one wording): a
bad value is a ``ValueError`` naming the knob, the value given (and its type) and what is allowed.
"""
from __future__ import annotations

import copy
import math
from typing import Any, NamedTuple

import numpy as np
import torch

from heterosim.blocks import Blocks
from heterosim.optimizers import check_choice, check_flag, check_int, check_numbers, check_real, describe

__all__ = ["Problem", "Recipe", "check_batch", "check_real", "check_int", "check_numbers", "check_flag",
           "check_choice", "describe", "literal"]


class Recipe(NamedTuple):
    """The call that rebuilds a problem: ``target(*args, **kwargs)``, ``target`` spelled as
    with ``import heterosim as hs`` (e.g. ``"hs.problems.make"``)."""

    target: str
    args: tuple
    kwargs: dict

    def __str__(self) -> str:
        parts = [literal(a) for a in self.args] + [f"{k}={literal(v)}" for k, v in self.kwargs.items()]
        return f"{self.target}({', '.join(parts)})"


def literal(v: Any) -> str:
    """Python source that evaluates to ``v``: tensors and arrays as nested lists, floats in
    their shortest exact form (``float('nan')`` and ``float('inf')`` spelled out), numpy
    scalars as plain numbers; other objects by their ``repr``."""
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return literal(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return repr(bool(v))
    if isinstance(v, (int, np.integer)):
        return repr(int(v))
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if math.isnan(x):
            return "float('nan')"
        if math.isinf(x):
            return "float('inf')" if x > 0 else "-float('inf')"
        return repr(x)
    if isinstance(v, list):
        return "[" + ", ".join(literal(u) for u in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(literal(u) for u in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(u)}" for k, u in v.items()) + "}"
    return repr(v)


class Problem:
    """Base class. Subclasses set the ground-truth attributes in ``__init__`` and
    implement :meth:`loss` and :meth:`grad` (and :meth:`loss_and_grad` when both
    share work)."""

    name: str = "problem"
    dtype: torch.dtype = torch.float64
    blocks: Blocks
    x_star: torch.Tensor | None = None
    f_star: float = 0.0
    L_blocks: torch.Tensor
    mu_blocks: torch.Tensor
    L2: float
    Linf: float
    Linf_kind: str
    has_oracle: bool = False
    knobs: dict = {}
    recipe: Recipe | None = None  # the call that rebuilds the problem (module doc), where known

    # --------------------------------------------------------------- shape
    @property
    def d(self) -> int:
        return self.blocks.d

    @property
    def block_sizes(self) -> tuple[int, ...]:
        return self.blocks.sizes

    @property
    def mu(self) -> float:
        return float(self.mu_blocks.min())

    @property
    def kappa(self) -> float:
        """Global condition number L_2 / mu (inf when mu = 0)."""
        return self.L2 / self.mu if self.mu > 0 else math.inf

    @property
    def rho_H(self) -> float:
        """Hessian heterogeneity factor (sum_b d_b L_b) / (d L_2), in (0, 1]."""
        db = self.blocks.sizes_tensor()
        return float((db * self.L_blocks.cpu()).sum() / (self.d * self.L2))

    # ------------------------------------------------------------- oracles
    def loss(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loss(X), self.grad(X)

    def stochastic_grad(self, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """An unbiased stochastic gradient for every row of X, drawn from ``generator``.
        Rows of one call share the draw (common random numbers)."""
        raise ValueError(f"problem {self.name!r} has no stochastic oracle; "
                         "build it with noise (sigma=...) or use a problem with minibatches")

    def hessian(self) -> torch.Tensor:
        raise ValueError(f"problem {self.name!r} does not provide a dense Hessian")

    # ------------------------------------------------------------- what the engine may ask
    # heterosim.engine depends on these three methods, not on any problem class. A problem that
    # keeps the defaults runs on the engine's general path (``loss_and_grad``, or
    # ``loss_and_grad_into`` / ``native_oracle`` where it has them).
    def engine_oracle(self, like: torch.Tensor, native: bool = True):
        """The oracle in the engine's fixed arithmetic, for batches like ``like``, or None:
        ``oracle(X, G, f, norm=None, f_limit=None, root=True, frozen=None, X_prev=None) -> int``
        writes G <- grad f(X) and f <- f(X) (and, if given, norm <- ||G_r||, or its square
        without ``root``) into caller-owned contiguous buffers and returns the number of rows
        with not f <= f_limit; ``frozen`` rows are skipped, their iterate restored from X_prev.
        Its values must not depend on the batch a row is in (heterosim.engine, "One T per
        config"). ``native``: a compiled kernel may be returned (it must give the same bits
        as the torch one)."""
        return None

    def to(self, device) -> "Problem":
        """This problem with its data on ``device``: a shallow copy whose tensors (and block
        partition, and lists of tensors) are moved; the problem itself where they already are.
        The engine runs a problem on the device of its batch (``engine.run(..., device="cuda")``)."""
        device = torch.device(device)
        tensors = {k: v for k, v in vars(self).items() if isinstance(v, torch.Tensor)}
        if all(v.device == device for v in tensors.values()):
            return self
        new = copy.copy(self)
        for k, v in vars(self).items():
            if isinstance(v, torch.Tensor):
                setattr(new, k, v.to(device))
            elif isinstance(v, Blocks):
                setattr(new, k, v.to(device))
            elif isinstance(v, (list, tuple)) and v and all(isinstance(t, torch.Tensor) for t in v):
                setattr(new, k, type(v)(t.to(device) for t in v))
            elif k.startswith("_native"):  # compiled CPU oracles do not travel
                setattr(new, k, None)
        return new

    def eigen_frame(self):
        """For a quadratic whose Hessian is block-diagonal in a rotated basis: (eigenvalues (d,),
        one orthogonal basis Q_b (d_b, d_b) per block with H_b = Q_b diag(lambda_b) Q_b^T); the
        engine may then run rotation-equivariant rules in that basis. None otherwise."""
        return None

    def initial_point(self, seed: int = 0) -> torch.Tensor:
        """The problem's default starting point for ``seed``: a (d,) tensor."""
        raise NotImplementedError

    def initial_points(self, seeds) -> torch.Tensor:
        return torch.stack([self.initial_point(int(s)) for s in seeds])

    def ground_truth(self) -> dict:
        """Scalars of the ground truth, for results tables."""
        return {
            "d": self.d, "n_blocks": self.blocks.n, "f_star": float(self.f_star),
            "L2": float(self.L2), "mu": float(self.mu), "kappa": float(self.kappa),
            "Linf": float(self.Linf), "Linf_kind": self.Linf_kind, "rho_H": self.rho_H,
        }

    def __repr__(self) -> str:
        """The call that rebuilds the problem (``eval`` it after ``import heterosim as hs``) when
        its recipe is known; otherwise its class, name, size and knobs."""
        if self.recipe is not None:
            return str(self.recipe)
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.knobs.items())
        return f"<{type(self).__name__} {self.name}: d={self.d}, blocks={self.blocks.n}{', ' + knobs if knobs else ''}>"


def check_batch(problem: Problem, X: torch.Tensor) -> torch.Tensor:
    """Validate a (B, d) batch (a (d,) vector is promoted to (1, d))."""
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(X, dtype=problem.dtype)
    if X.dim() == 1:
        X = X.unsqueeze(0)
    if X.dim() != 2 or X.shape[1] != problem.d:
        raise ValueError(f"{problem.name}: expected a batch of shape (B, {problem.d}) or a vector "
                         f"of length {problem.d}; got shape {tuple(X.shape)}")
    return X
