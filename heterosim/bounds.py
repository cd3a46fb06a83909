r"""The bounds of docs/theory.md as plain functions of a problem's constants.

Every function is keyword-only, validates its inputs (``ValueError`` on bad input)
and returns either

* a :class:`Bound`: the number of iterations sufficient to reach ``eps`` in one
  metric, the step size the bound prescribes, and the guaranteed value of the
  metric after ``T`` steps (:meth:`Bound.value`); or
* for a per-step certificate, the guaranteed decrease ``f(x_t) - f(x_{t+1})``
  computed from quantities measured at step ``t`` (vectorised over a batch).

A measured run is compared with a :class:`Bound` by :meth:`Bound.holds` and
:meth:`Bound.tightness` (measured / bound), so a bound always travels beside the
measurement (PEPit's ``(pepit_tau, theoretical_tau)``).

Metrics (the quantity ``eps`` refers to; the engine's names where it has them)
-------------------------------------------------------------------------------
``grad_l2``       ||g_t||_2
``grad_l1``       ||g_t||_1
``grad_Linv``     (sum_b ||g_{t,b}||^2 / L_b)^{1/2}   (the dual norm of block-wise GD)
``subopt``        f(x_t) - f*
``dist``          ||x_t - x*||_2
``dist_P``        ||P^{-1/2} (x_t - x*)||_2 (the norm in which P-preconditioned GD contracts)
``head_frob_dist`` ||W_t - W_0||_F of a linear head

Aggregates (how the metric over a run is compared with ``eps``)
---------------------------------------------------------------
``min``           min_{t<T} metric_t <= value(T)
``mean``          (1/T) sum_{t<T} metric_t <= value(T)      (implies ``min``)
``expected_mean`` E[(1/T) sum_{t<T} metric_t] <= value(T)   (over the gradient noise)
``last``          metric_T <= value(T)                       (linear rates)
``every``         metric_t <= value(t) for every t           (growth bounds)

In every case the first index ``t`` at which the metric is <= eps is at most
``Bound.iterations`` (for ``expected_mean``: in expectation over the noise; for
``asymptotic`` bounds only in the limit).

Provenance
----------
The Tomihari & Sato (arXiv 2502.00213) theorem statements are not available to
us. The SGD-vs-SignSGD bounds here (B1-B5) are our own derivations in the same
steepest-descent framework (SGD = steepest descent in l_2, SignSGD = steepest
descent in l_inf); they stand in place of that paper's theorems and are proved in
docs/bounds.md. The other bounds are standard and cited with their theorem numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from heterosim import metrics

__all__ = [
    "Bound", "METRICS", "AGGREGATES",
    # deterministic nonconvex
    "gd_nonconvex", "gd_step_decrease", "signgd_nonconvex", "signgd_step_decrease",
    "steepest_linf_nonconvex", "steepest_linf_decrease", "blockwise_gd_nonconvex",
    "blockwise_gd_step_decrease", "gd_nonconvex_l1", "sign_vs_gd_ratio", "sign_beats_gd",
    "gradient_density", "rho_H",
    # stochastic
    "sgd_nonconvex", "signsgd_bernstein",
    # quadratics
    "gd_quadratic_rate", "blockwise_gd_quadratic_rate", "fixed_diagonal_precond_rate",
    "zhang_adam_rate", "gd_lower_bound_rate", "optimal_diagonal_precond_rate",
    "heavy_ball_quadratic_rate",
    # Kunstner and the linear head
    "kunstner_gd", "kunstner_gd_iterations", "kunstner_sign", "sign_head_growth",
    # Adam (beta1 = 0) in the l_inf geometry
    "adam_linf_nonconvex", "adam_step_decrease",
    # exact worst cases: over a function class (PEPit) and over starts on one spectrum
    "WorstCase", "worst_case", "step_decrease_worst_case", "PEP_CLASSES", "PEP_MAX_T",
    "WorstStart", "gd_worst_start", "blockwise_gd_worst_start", "heavy_ball_worst_start",
]

#: The metrics the bounds are stated in: a view of the one vocabulary, :mod:`heterosim.metrics`.
METRICS = metrics.BOUNDED
AGGREGATES = ("min", "mean", "expected_mean", "last", "every")


# --------------------------------------------------------------------------- Bound
def _sublinear_value(T, A, B, q):
    """(A / T + B) ** q, the form of every nonconvex bound here."""
    if T <= 0:
        return math.inf
    return (A / T + B) ** q


def _sublinear_iterations(eps, A, B, q):
    """Smallest real T with (A/T + B)^q <= eps: T = A / (eps^(1/q) - B)."""
    target = eps ** (1.0 / q)
    if A == 0.0:
        return 0.0
    if target <= B:
        return math.inf
    return A / (target - B)


def _linear_value(T, C, r):
    """C * r ** T: a linear (geometric) rate."""
    return C * r ** T


def _linear_iterations(eps, C, r):
    """Smallest integer T with C r^T <= eps."""
    if C <= eps:
        return 0.0
    if r == 0.0:
        return 1.0
    if r >= 1.0:
        return math.inf
    T = math.ceil(math.log(eps / C) / math.log(r))
    while T > 0 and C * r ** (T - 1) <= eps:  # guard the rounding of the logarithms
        T -= 1
    return float(T)


def _growth_value(T, a):
    """a * T: a bound that grows linearly in the step count."""
    return a * T


def _adam_memory(beta2, n):
    """S_{n-1} = sum_{s<n} sqrt(w_{n-1,s}) (the weights of Adam's bias-corrected second moment after
    n gradients) and C_n = sum_{k<n} c_k^2 with c_k^2 = (1 - beta2^(k+1)) / (1 - beta2) (the squared
    l_inf bound of step k / eta); see :func:`adam_linf_nonconvex`."""
    q = math.sqrt(beta2)
    S = math.sqrt((1.0 + q) / (1.0 - q) * (1.0 - q ** n) / (1.0 + q ** n)) if n > 0 else 0.0
    C = (n - beta2 * (1.0 - beta2 ** n) / (1.0 - beta2)) / (1.0 - beta2)
    return S, C


def _adam_value(T, Linf, delta, beta2, eta, d_eps):
    """A1's guarantee on ((1/T) sum_{t<T} ||g_t||_1^2)^(1/2) after T steps at a fixed step eta."""
    if T <= 0:
        return math.inf
    n = int(math.floor(T))
    a = Linf * eta * eta / 2.0
    S, C_T = _adam_memory(beta2, n)              # S_{T-1} and C_T
    C_prev = _adam_memory(beta2, n - 1)[1]       # C_{T-1}: f can have risen by at most a C_{T-1} by step T-1
    first = S * math.sqrt(2.0 * Linf * (delta + a * C_prev)) + d_eps
    return math.sqrt(first * (delta + a * C_T) / (eta * n))


_VALUE_FORMS = {"sublinear": _sublinear_value, "linear": _linear_value, "growth": _growth_value,
                "adam": _adam_value}


@dataclass(frozen=True)
class Bound:
    """A bound beside its prescribed step size.

    Attributes
    ----------
    name        docs/theory.md label ("B1", "Q3", ...).
    iterations  steps sufficient for the metric to reach ``eps`` (``inf`` when the
                bound never certifies ``eps``; ``nan`` when no ``eps`` was given).
    lr          the step size the bound prescribes: a float, a per-block tuple, or
                None where the bound holds for any step.
    metric, aggregate  what is bounded (see the module docstring).
    statement   the inequality in plain text; ``reference`` its source.
    eps         the target the iterations refer to (None for rate-only bounds).
    form, coef  the guarantee after T steps: "sublinear" (A/T + B)^q with
                coef = (A, B, q); "linear" C r^T with coef = (C, r);
                "growth" a T with coef = (a,); "adam" A1's formula with
                coef = (L_inf, Delta, beta2, eta, d eps_adam) (:func:`adam_linf_nonconvex`).
    momentum, batch  further prescribed hyperparameters (heavy ball, signSGD).
    asymptotic  True when only the rate as t -> inf is guaranteed.
    sense       "upper" (measured <= bound) or "lower" (a worst-case lower bound).
    constants   the constants the bound was computed from, as (name, value) pairs.
    moment      the power k in which the aggregate is stated: the bound is on the aggregate of
                metric**k and reads aggregate(metric**k) <= value(T)**k (S1 bounds the mean of
                ||g_t||^2, not of ||g_t||; for ``min`` the power changes nothing). T(eps) is the
                first T with aggregate(metric**k)^(1/k) <= eps.
    horizon     when not None, ``value`` is the guarantee only after exactly ``horizon`` steps
                (the step size or batch depends on the run's length, as in S2).
    """

    name: str
    iterations: float
    lr: float | tuple[float, ...] | None
    metric: str
    aggregate: str
    statement: str
    reference: str
    eps: float | None = None
    form: str = "sublinear"
    coef: tuple[float, ...] = ()
    momentum: float | None = None
    batch: int | None = None
    asymptotic: bool = False
    sense: str = "upper"
    constants: tuple[tuple[str, float], ...] = ()
    moment: int = 1
    horizon: int | None = None

    def __post_init__(self):
        metrics.check(self.metric, METRICS, "bound metric")

    @property
    def rate(self) -> float | None:
        """Per-step contraction factor of the metric (linear bounds), else None."""
        return self.coef[1] if self.form == "linear" else None

    def value(self, T: float) -> float:
        """The guaranteed value of the metric (in the bound's aggregate) after T steps."""
        if T < 0:
            raise ValueError(f"T must be >= 0; got {T}")
        return float(_VALUE_FORMS[self.form](T, *self.coef))

    def holds(self, measured_T: float, slack: float = 0.0) -> bool:
        """Whether a measured first-hitting index respects the bound.

        ``measured_T`` is the first step t with metric_t <= eps (``inf`` if never).
        Upper bounds: measured_T <= iterations + slack. Lower bounds: measured_T >=
        iterations - slack. A relative 1e-12 absorbs the rounding of the bound itself
        (eps = 0.1 gives 2 / 0.1**2 = 199.99999999999997).
        """
        if math.isnan(self.iterations):
            raise ValueError(f"bound {self.name} has no iteration count (no eps was given); "
                             "compare measured values with Bound.value(T) instead")
        rounding = 1e-12 * abs(self.iterations) if math.isfinite(self.iterations) else 0.0
        if self.sense == "lower":
            return measured_T >= self.iterations - slack - rounding
        return measured_T <= self.iterations + slack + rounding

    def tightness(self, measured_T: float) -> float:
        """measured / bound: in [0, 1] for an upper bound that holds (1 = tight)."""
        if self.iterations == 0.0:
            return 0.0 if measured_T == 0 else math.inf
        return float(measured_T) / self.iterations

    @property
    def constants_dict(self) -> dict:
        return dict(self.constants)

    def as_dict(self) -> dict:
        """A flat row for a results table."""
        lr = list(self.lr) if isinstance(self.lr, tuple) else self.lr
        return {"bound": self.name, "iterations": self.iterations, "lr": lr, "metric": self.metric,
                "aggregate": self.aggregate, "eps": self.eps, "rate": self.rate,
                "momentum": self.momentum, "batch": self.batch, "asymptotic": self.asymptotic,
                "sense": self.sense, "moment": self.moment, "horizon": self.horizon,
                "statement": self.statement, "reference": self.reference,
                **{f"const_{k}": v for k, v in self.constants}}


# ---------------------------------------------------------------------- validation
def _scalar(name, x):
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name} must be a scalar; got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number; got {x!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite; got {x}")
    return x


def _pos(name, x):
    x = _scalar(name, x)
    if x <= 0:
        raise ValueError(f"{name} must be > 0; got {x}")
    return x


def _nonneg(name, x):
    x = _scalar(name, x)
    if x < 0:
        raise ValueError(f"{name} must be >= 0; got {x}")
    return x


def _vector(name, x, *, positive=True, allow_zero=False):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{name} must be non-empty")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite; got {v}")
    if positive and allow_zero and np.any(v < 0):
        raise ValueError(f"every entry of {name} must be >= 0; got {v}")
    if positive and not allow_zero and np.any(v <= 0):
        raise ValueError(f"every entry of {name} must be > 0; got {v}")
    return v


def _sizes(sizes, n):
    s = np.asarray(list(sizes), dtype=np.int64).reshape(-1)
    if s.size != n:
        raise ValueError(f"got {s.size} block sizes for {n} block constants")
    if np.any(s <= 0):
        raise ValueError(f"block sizes must be >= 1; got {s.tolist()}")
    return s


def _eps(eps):
    return None if eps is None else _pos("eps", eps)


def _array(x):
    """Measured quantities: keep tensors and arrays as they are, lift lists/floats."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x
    if isinstance(x, (list, tuple)):
        return torch.as_tensor(x, dtype=torch.float64)
    return float(x)


def _check_positive_array(name, x):
    bad = (x <= 0).any() if isinstance(x, (torch.Tensor, np.ndarray)) else x <= 0
    if bool(bad):
        raise ValueError(f"{name} must be > 0 everywhere; got {x}")


def _sublinear(name, *, A, B, q, eps, lr, metric, aggregate, statement, reference, **extra):
    iters = math.nan if eps is None else _sublinear_iterations(eps, A, B, q)
    return Bound(name=name, iterations=iters, lr=lr, metric=metric, aggregate=aggregate,
                 statement=statement, reference=reference, eps=eps, form="sublinear",
                 coef=(float(A), float(B), float(q)), **extra)


def _linear(name, *, C, r, eps, lr, metric, statement, reference, aggregate="last", **extra):
    iters = math.nan if eps is None else _linear_iterations(eps, C, r)
    return Bound(name=name, iterations=iters, lr=lr, metric=metric, aggregate=aggregate,
                 statement=statement, reference=reference, eps=eps, form="linear",
                 coef=(float(C), float(r)), **extra)


# ---------------------------------------------------------- B1, B1': GD, nonconvex
def gd_nonconvex(*, L2, delta, eps=None, eta=None) -> Bound:
    r"""B1: gradient descent on an L_2-smooth function.

    Statement: with x_{t+1} = x_t - eta g_t and 0 < eta < 2/L_2,
    \min_{t<T} ||g_t||_2^2 <= Delta / (eta (1 - eta L_2/2) T); at eta = 1/L_2 this
    is 2 L_2 Delta / T, so T >= 2 L_2 Delta / eps^2 steps give min_t ||g_t||_2 <= eps.

    Assumptions: f is L_2-smooth (||grad f(x) - grad f(y)|| <= L_2 ||x - y||) and
    bounded below; Delta = f(x_0) - inf f.

    Reference: Nesterov, *Lectures on Convex Optimization* (2018), Sec. 1.2.3 (the
    gradient method on nonconvex smooth f; the bound on min_k ||grad f(x_k)||).

    Proof sketch: the descent lemma gives f(x_{t+1}) <= f(x_t) - eta (1 - eta L_2/2)
    ||g_t||^2; summing over t < T telescopes to at most Delta, and the minimum is at
    most the average.
    """
    L2, delta = _pos("L2", L2), _nonneg("delta", delta)
    eta = 1.0 / L2 if eta is None else _pos("eta", eta)
    if eta >= 2.0 / L2:
        raise ValueError(f"eta must be < 2/L2 = {2.0 / L2:.6g} for GD to descend; got {eta}")
    c = eta * (1.0 - eta * L2 / 2.0)
    return _sublinear("B1", A=delta / c, B=0.0, q=0.5, eps=_eps(eps), lr=eta, metric="grad_l2",
                      aggregate="min",
                      statement="min_{t<T} ||g_t||_2^2 <= Delta / (eta (1 - eta L2/2) T) "
                                "(= 2 L2 Delta / T at eta = 1/L2)",
                      reference="Nesterov (2018), Lectures on Convex Optimization, Sec. 1.2.3",
                      constants=(("L2", L2), ("delta", delta)), moment=2)


def gd_step_decrease(*, g_block_sq, L_blocks, eta):
    r"""B1': the guaranteed one-step decrease of (block-wise) gradient descent.

    Statement: for x_{t+1} = x_t - eta_b g_{t,b} on each block b,
    f(x_t) - f(x_{t+1}) >= sum_b eta_b (1 - eta_b L_b / 2) ||g_{t,b}||^2.
    With one eta for all blocks this is docs/theory.md's B1'; with eta_b = 1/L_b it is B4's
    sum_b ||g_b||^2 / (2 L_b). Check it at every step of a run.

    Assumptions: block-separable smoothness f(x+u) <= f(x) + <g,u> + 1/2 sum_b L_b ||u_b||^2
    (exact for block-diagonal quadratics with L_b = lambda_max(H_b)).

    Reference: Nesterov (2012), *Efficiency of coordinate descent methods on huge-scale
    optimization problems*, SIAM J. Optim. 22(2), Sec. 2 (the block descent lemma).

    Proof sketch: insert u_b = -eta_b g_b into the separable upper bound:
    f(x+u) <= f(x) - sum_b eta_b ||g_b||^2 + 1/2 sum_b L_b eta_b^2 ||g_b||^2.

    Parameters: ``g_block_sq`` (..., n) measured ||g_{t,b}||^2; ``L_blocks`` (n,);
    ``eta`` a scalar, an (n,) per-block step or a (B, 1) batch of steps.
    Returns the (...,) guaranteed decreases, same array type as ``g_block_sq``.
    """
    g_block_sq, L_blocks, eta = _array(g_block_sq), _array(L_blocks), _array(eta)
    _check_positive_array("L_blocks", L_blocks)
    _check_positive_array("eta", eta)
    terms = eta * (1.0 - eta * L_blocks / 2.0) * g_block_sq
    return terms.sum(-1) if hasattr(terms, "sum") else terms


def blockwise_gd_step_decrease(*, g_block_sq, L_blocks):
    r"""B4 per step: with eta_b = 1/L_b, f(x_t) - f(x_{t+1}) >= sum_b ||g_{t,b}||^2 / (2 L_b).

    Same assumptions, reference and proof as :func:`gd_step_decrease` (its special case).
    """
    g_block_sq, L_blocks = _array(g_block_sq), _array(L_blocks)
    _check_positive_array("L_blocks", L_blocks)
    return (g_block_sq / (2.0 * L_blocks)).sum(-1)


# ------------------------------------------------------ B2, B3: sign descent, l_inf
def signgd_nonconvex(*, Linf, delta, eps=None, eta=None) -> Bound:
    r"""B2: SignGD x_{t+1} = x_t - eta sign(g_t) with a constant step.

    Statement: (1/T) sum_{t<T} ||g_t||_1 <= Delta/(eta T) + eta L_inf / 2. With the
    prescribed eta = eps / L_inf, T >= 2 L_inf Delta / eps^2 steps give
    min_{t<T} ||g_t||_1 <= eps. The right step shrinks like 1/L_inf, i.e. like 1/d at
    fixed mean curvature (sum_b d_b L_b = d * mean L_b).

    Assumptions: f is smooth w.r.t. l_inf: f(x+u) <= f(x) + <g,u> + (L_inf/2) ||u||_inf^2,
    e.g. L_inf = sup_x sup_{||u||_inf <= 1} u^T grad^2 f(x) u; bounded below.

    Reference: our derivation (steepest descent in l_inf), standing in for Tomihari &
    Sato (arXiv 2502.00213), whose theorem text is not available; cf. Bernstein et al.
    (2018), *signSGD*, ICML, Thm 1 (the stochastic version, see :func:`signsgd_bernstein`).

    Proof sketch: u = -eta sign(g) has ||u||_inf <= eta and <g,u> = -eta ||g||_1, so
    f(x_{t+1}) <= f(x_t) - eta ||g_t||_1 + eta^2 L_inf / 2; sum over t < T and divide by eta T.
    """
    Linf, delta = _pos("Linf", Linf), _nonneg("delta", delta)
    eps = _eps(eps)
    if eta is None:
        if eps is None:
            raise ValueError("signgd_nonconvex needs eps (the step is eps / Linf) or an explicit eta")
        eta = eps / Linf
    eta = _pos("eta", eta)
    return _sublinear("B2", A=delta / eta, B=eta * Linf / 2.0, q=1.0, eps=eps, lr=eta,
                      metric="grad_l1", aggregate="mean",
                      statement="(1/T) sum_{t<T} ||g_t||_1 <= Delta/(eta T) + eta Linf/2 "
                                "(T = 2 Linf Delta / eps^2 at eta = eps/Linf)",
                      reference="our l_inf steepest-descent derivation (docs/bounds.md, B2), in place of "
                                "Tomihari & Sato 2025; cf. Bernstein et al. 2018, Thm 1",
                      constants=(("Linf", Linf), ("delta", delta)))


def signgd_step_decrease(*, g_l1, Linf, eta):
    r"""B2 per step: f(x_t) - f(x_{t+1}) >= eta ||g_t||_1 - eta^2 L_inf / 2 for a sign step.

    Same assumptions, reference and proof as :func:`signgd_nonconvex`. ``g_l1`` (...,)
    measured ||g_t||_1; ``eta`` scalar or broadcastable. Returns (...,) decreases.
    """
    g_l1, eta = _array(g_l1), _array(eta)
    Linf = _pos("Linf", Linf)
    _check_positive_array("eta", eta)
    return eta * g_l1 - eta * eta * Linf / 2.0


def steepest_linf_decrease(*, g_l1, Linf):
    r"""B3 per step: steepest descent in l_inf, x_{t+1} = x_t - (||g_t||_1 / L_inf) sign(g_t),
    decreases f by at least ||g_t||_1^2 / (2 L_inf).

    Assumptions: l_inf-smoothness with constant L_inf (see :func:`signgd_nonconvex`).

    Reference: our derivation (docs/bounds.md, B3); the l_inf case of steepest descent
    in a general norm, Kelner et al. (2014) / Nesterov (2012), in place of Tomihari & Sato.

    Proof sketch: the bound eta ||g||_1 - eta^2 L_inf / 2 of a sign step is maximised
    at eta = ||g||_1 / L_inf, where it equals ||g||_1^2 / (2 L_inf).
    """
    g_l1 = _array(g_l1)
    Linf = _pos("Linf", Linf)
    return g_l1 * g_l1 / (2.0 * Linf)


def steepest_linf_nonconvex(*, Linf, delta, eps=None) -> Bound:
    r"""B3: steepest descent in l_inf (step ||g_t||_1 / L_inf along -sign g_t).

    Statement: min_{t<T} ||g_t||_1^2 <= 2 L_inf Delta / T, so T >= 2 L_inf Delta / eps^2
    steps give min_t ||g_t||_1 <= eps. The prescribed ``lr`` is 1/L_inf: the step at
    time t is lr * ||g_t||_1 along -sign(g_t).

    Assumptions: l_inf-smoothness with constant L_inf; bounded below.
    Reference: our derivation (docs/bounds.md, B3), in place of Tomihari & Sato 2025.
    Proof sketch: sum the per-step decrease ||g_t||_1^2/(2 L_inf) of
    :func:`steepest_linf_decrease` over t < T; it is at most Delta.
    """
    Linf, delta = _pos("Linf", Linf), _nonneg("delta", delta)
    return _sublinear("B3", A=2.0 * Linf * delta, B=0.0, q=0.5, eps=_eps(eps), lr=1.0 / Linf,
                      metric="grad_l1", aggregate="min",
                      statement="min_{t<T} ||g_t||_1^2 <= 2 Linf Delta / T "
                                "(step ||g_t||_1/Linf along -sign g_t)",
                      reference="our l_inf steepest-descent derivation (docs/bounds.md, B3), "
                                "in place of Tomihari & Sato 2025",
                      constants=(("Linf", Linf), ("delta", delta)), moment=2)


# ------------------------------------------------------------ B4: block-wise steps
def blockwise_gd_nonconvex(*, L_blocks, delta, eps=None) -> Bound:
    r"""B4: block-wise gradient descent with eta_b = 1/L_b.

    Statement: min_{t<T} sum_b ||g_{t,b}||^2 / L_b <= 2 Delta / T: T >= 2 Delta / eps^2
    steps give min_t ||g_t||_{L^{-1}} <= eps (metric "grad_Linv"). Since
    sum_b ||g_b||^2 / L_b >= ||g||^2 / max_b L_b this also certifies ||g||_2 <= eps
    within 2 (max_b L_b) Delta / eps^2 steps, no worse than B1.

    Assumptions: block-separable smoothness with constants L_b; bounded below.
    Reference: Nesterov (2012), SIAM J. Optim. 22(2), Sec. 2 (the block descent lemma),
    applied to all blocks at once.
    Proof sketch: sum the per-step decrease sum_b ||g_b||^2/(2 L_b)
    (:func:`blockwise_gd_step_decrease`) over t < T; it is at most Delta.
    """
    L = _vector("L_blocks", L_blocks)
    delta = _nonneg("delta", delta)
    return _sublinear("B4", A=2.0 * delta, B=0.0, q=0.5, eps=_eps(eps), lr=tuple(1.0 / L),
                      metric="grad_Linv", aggregate="min",
                      statement="min_{t<T} sum_b ||g_{t,b}||^2 / L_b <= 2 Delta / T (eta_b = 1/L_b)",
                      reference="Nesterov (2012), SIAM J. Optim. 22(2), Sec. 2 (block descent lemma)",
                      constants=(("delta", delta), ("max_L_b", float(L.max())),
                                 ("min_L_b", float(L.min()))), moment=2)


# ------------------------------------------------- B5: one metric, two geometries
def gd_nonconvex_l1(*, L2, delta, eps=None, d) -> Bound:
    r"""B5: what GD certifies in the l_1 metric that SignGD is measured in.

    Statement: with eta = 1/L_2, min_{t<T} ||g_t||_1^2 <= 2 d L_2 Delta / T, so GD
    certifies ||g||_1 <= eps within 2 d L_2 Delta / eps^2 steps. The ratio of the
    SignGD bound (B2) to this one is L_inf / (d L_2) <= rho_H (:func:`sign_vs_gd_ratio`).

    Assumptions: as B1; d the dimension.
    Reference: B1 with ||g||_1 <= sqrt(d) ||g||_2; the same comparison as Bernstein et
    al. (2018), Sec. 3 (density phi vs. curvature).
    Proof sketch: ||g||_1^2 <= d ||g||_2^2 and B1.
    """
    L2, delta = _pos("L2", L2), _nonneg("delta", delta)
    d = int(_pos("d", d))
    return _sublinear("B5", A=2.0 * d * L2 * delta, B=0.0, q=0.5, eps=_eps(eps), lr=1.0 / L2,
                      metric="grad_l1", aggregate="min",
                      statement="min_{t<T} ||g_t||_1^2 <= 2 d L2 Delta / T (GD, eta = 1/L2)",
                      reference="B1 with ||g||_1 <= sqrt(d) ||g||_2 (docs/bounds.md, B5)",
                      constants=(("L2", L2), ("delta", delta), ("d", float(d))), moment=2)


def sign_vs_gd_ratio(*, Linf, d, L2) -> float:
    r"""B5: the ratio of the SignGD and GD iteration bounds in the l_1 metric,
    (2 L_inf Delta / eps^2) / (2 d L_2 Delta / eps^2) = L_inf / (d L_2).

    It lies in [tr(H)/(d L_2), 1] and is <= rho_H when L_inf <= sum_b d_b L_b.
    Reference: docs/bounds.md, B5. Proof sketch: divide B2 (at eta = eps/L_inf) by B5.
    """
    return _pos("Linf", Linf) / (_pos("d", d) * _pos("L2", L2))


def sign_beats_gd(phi, Linf, d, L2):
    r"""B5 criterion: at their best step sizes, sign descent's guaranteed one-step
    decrease beats GD's iff phi(g) > L_inf / (d L_2).

    Statement: steepest l_inf guarantees ||g||_1^2/(2 L_inf) = phi d ||g||_2^2 / (2 L_inf),
    GD at 1/L_2 guarantees ||g||_2^2 / (2 L_2); the first is larger iff phi > L_inf/(d L_2):
    gradient density against Hessian heterogeneity.

    Reference: docs/bounds.md (B5); Bernstein et al. (2018), Sec. 3 make the same
    comparison with the density phi. Proof sketch: divide the two decreases.

    ``phi`` a float or a tensor/array of densities (see :func:`gradient_density`);
    returns a bool or a boolean array of the same shape.
    """
    threshold = sign_vs_gd_ratio(Linf=Linf, d=d, L2=L2)
    phi = _array(phi)
    return phi > threshold


def gradient_density(g):
    r"""Gradient density phi(g) = ||g||_1^2 / (d ||g||_2^2) in [1/d, 1].

    phi = 1 for a dense vector with equal-magnitude entries, 1/d for a one-hot one
    (Bernstein et al. 2018, Sec. 3). ``g`` (..., d) tensor or array; returns (...,).
    A zero vector has no density: NaN there.
    """
    if isinstance(g, torch.Tensor):
        if g.dim() == 0 or g.shape[-1] == 0:
            raise ValueError(f"gradient_density needs a (..., d) tensor with d >= 1; got shape {tuple(g.shape)}")
        l1, l2sq = g.abs().sum(-1), (g * g).sum(-1)
        d = g.shape[-1]
        return torch.where(l2sq > 0, l1 * l1 / (d * l2sq), torch.full_like(l1, math.nan))
    g = np.asarray(g, dtype=np.float64)
    if g.ndim == 0 or g.shape[-1] == 0:
        raise ValueError("gradient_density needs a (..., d) array with d >= 1")
    l1, l2sq = np.abs(g).sum(-1), (g * g).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(l2sq > 0, l1 * l1 / (g.shape[-1] * l2sq), np.nan)


def rho_H(L_blocks, sizes, L2) -> float:
    r"""Hessian heterogeneity factor rho_H = (sum_b d_b L_b) / (d L_2) in (0, 1].

    rho_H = 1 when every block is as sharp as the sharpest; it is small when a few
    small blocks carry the curvature. (sum_b d_b L_b) is an upper bound on L_inf,
    so rho_H bounds the sign/GD ratio of B5.
    """
    L = _vector("L_blocks", L_blocks)
    s = _sizes(sizes, L.size)
    return float((s * L).sum() / (s.sum() * _pos("L2", L2)))


# ---------------------------------------------------------------- S1, S2: stochastic
def sgd_nonconvex(*, L2, delta, sigma2, eps=None, eta=None) -> Bound:
    r"""S1: SGD with unbiased gradients, E||noise||^2 <= sigma^2, constant eta <= 1/L_2.

    Statement: (1/T) sum_{t<T} E||g_t||_2^2 <= 2 Delta / (eta T) + eta L_2 sigma^2.
    Default step eta = min(1/L_2, eps^2 / (2 L_2 sigma^2)) keeps the noise floor at
    eps^2/2 or below; then T = 2 Delta / (eta (eps^2 - eta L_2 sigma^2)) steps give
    mean E||g_t||^2 <= eps^2 (and so min_t E-mean ||g_t||_2 <= eps, by Jensen). The bound is
    on the mean of ||g_t||^2, so it carries ``moment=2``: a check compares the mean of the
    squares with value(T)^2.

    Assumptions: f L_2-smooth, bounded below; the oracle is unbiased with
    E||g~ - g||^2 <= sigma^2 (sigma2 = sigma^2; for a minibatch of size n, the
    per-sample variance divided by n).

    Reference: Ghadimi & Lan (2013), SIAM J. Optim. 23(4), Theorem 2.1 and
    Corollary 2.2 (constant step).
    Proof sketch: E f(x_{t+1}) <= f(x_t) - eta ||g_t||^2 + (L_2 eta^2 / 2)(||g_t||^2 + sigma^2)
    <= f(x_t) - (eta/2) ||g_t||^2 + L_2 eta^2 sigma^2 / 2 for eta <= 1/L_2; sum and divide.
    """
    L2, delta, sigma2 = _pos("L2", L2), _nonneg("delta", delta), _nonneg("sigma2", sigma2)
    eps = _eps(eps)
    if eta is None:
        if eps is None:
            raise ValueError("sgd_nonconvex needs eps (to choose the step) or an explicit eta")
        eta = 1.0 / L2 if sigma2 == 0 else min(1.0 / L2, eps * eps / (2.0 * L2 * sigma2))
    eta = _pos("eta", eta)
    if eta > 1.0 / L2 * (1.0 + 1e-12):
        raise ValueError(f"S1 needs eta <= 1/L2 = {1.0 / L2:.6g}; got {eta}")
    return _sublinear("S1", A=2.0 * delta / eta, B=eta * L2 * sigma2, q=0.5, eps=eps, lr=eta,
                      metric="grad_l2", aggregate="expected_mean",
                      statement="(1/T) sum_{t<T} E||g_t||^2 <= 2 Delta/(eta T) + eta L2 sigma^2, eta <= 1/L2",
                      reference="Ghadimi & Lan (2013), SIAM J. Optim. 23(4), Thm 2.1 / Cor. 2.2",
                      constants=(("L2", L2), ("delta", delta), ("sigma2", sigma2)), moment=2)


def signsgd_bernstein(*, L_vec, sigma_vec, delta, eps=None, K=None) -> Bound:
    r"""S2: signSGD with a batch of K and step 1/sqrt(||L_vec||_1 K), run for K steps.

    Statement: E[(1/K) sum_{k<K} ||g_k||_1]^2 <= (1/sqrt(N)) [sqrt(||L_vec||_1)(Delta + 1/2)
    + 2 ||sigma_vec||_1]^2 with N = K^2 gradient calls, i.e. <= A / K with
    A = [sqrt(||L||_1)(Delta + 1/2) + 2 ||sigma||_1]^2. Given eps, K = ceil(A / eps^2);
    given K, eps = sqrt(A / K). The step and the batch depend on K: ``value(T)`` is the
    guarantee only for the run with T = K.

    Assumptions (Bernstein et al. 2018, Assumptions 1-3): f bounded below; coordinate
    smoothness |f(y) - f(x) - g^T(y-x)| <= 1/2 sum_i L_i (y_i - x_i)^2; unbiased
    stochastic gradients with per-coordinate variance <= sigma_i^2 (per sample; the
    batch of K divides it by K). For a quadratic, L_vec with diag(L_vec) >= H and
    >= -H is valid; the smallest ||L_vec||_1 is the SDP value of L_inf
    (:func:`heterosim.precondition.linf_sdp`).

    Reference: Bernstein, Wang, Azizzadenesheli & Anandkumar (2018), *signSGD:
    Compressed Optimisation for Non-Convex Problems*, ICML, Theorem 1.
    Proof sketch: per step f decreases by delta ||g||_1 - (delta^2/2) ||L||_1 minus
    2 delta sum_i |g_i| P[sign wrong], and P[sign wrong] <= sigma_i / (sqrt(K) |g_i|)
    (Markov/Chebyshev); sum over K steps with delta = 1/sqrt(||L||_1 K).
    """
    L = _vector("L_vec", L_vec)
    s = _vector("sigma_vec", sigma_vec, allow_zero=True)
    delta = _nonneg("delta", delta)
    L1, s1 = float(L.sum()), float(s.sum())
    A = (math.sqrt(L1) * (delta + 0.5) + 2.0 * s1) ** 2
    if (eps is None) == (K is None):
        raise ValueError("signsgd_bernstein needs exactly one of eps (to choose K) or K; "
                         f"got eps={eps!r}, K={K!r}")
    if eps is not None:
        eps = _pos("eps", eps)
        K = max(1, math.ceil(A / (eps * eps)))
    else:
        K = int(_pos("K", K))
        eps = math.sqrt(A / K)
    return Bound(name="S2", iterations=float(K), lr=1.0 / math.sqrt(L1 * K), metric="grad_l1",
                 aggregate="expected_mean",
                 statement="E[(1/K) sum_k ||g_k||_1]^2 <= (1/K) [sqrt(||L||_1)(Delta + 1/2) "
                           "+ 2 ||sigma||_1]^2 (step 1/sqrt(||L||_1 K), batch K)",
                 reference="Bernstein et al. (2018), signSGD, ICML, Theorem 1",
                 eps=eps, form="sublinear", coef=(A, 0.0, 0.5), batch=K, horizon=K,
                 constants=(("L1", L1), ("sigma1", s1), ("delta", delta),
                            ("noise_share", 2.0 * s1 / math.sqrt(A)) if A > 0 else ("noise_share", 0.0)))


# ------------------------------------------------------ Q1-Q5: strongly convex quadratics
_STEP_RULES = {
    "1/L": lambda L, mu: 1.0 / L,
    "2/(L+mu)": lambda L, mu: 2.0 / (L + mu),
}
_DEFAULT_METRIC = {"1/L": "subopt", "2/(L+mu)": "dist"}


def _step(step, L, mu):
    """A named step rule or an explicit positive float."""
    if isinstance(step, str):
        if step not in _STEP_RULES:
            raise ValueError(f"unknown step rule {step!r}; use one of {sorted(_STEP_RULES)} or a float")
        return _STEP_RULES[step](L, mu)
    return _pos("step", step)


def _contraction(eta, L, mu):
    """max over the spectrum [mu, L] of |1 - eta lambda|: the per-step factor of ||x - x*||."""
    return max(abs(1.0 - eta * mu), abs(1.0 - eta * L))


def _metric_rate(r, metric, allowed):
    if metric not in allowed:
        raise ValueError(f"metric must be one of {allowed}; got {metric!r}")
    return r * r if metric == "subopt" else r


def _L_mu(L, mu):
    L, mu = _pos("L", L), _pos("mu", mu)
    if mu > L:
        raise ValueError(f"need mu <= L; got mu = {mu}, L = {L}")
    return L, mu


def gd_quadratic_rate(*, L, mu, step="1/L", metric=None, eps=None, initial=1.0) -> Bound:
    r"""Q1: gradient descent on f = 1/2 (x-x*)^T H (x-x*) + f*, spectrum of H in [mu, L].

    Statement: x_t - x* = (I - eta H)^t (x_0 - x*), so with r = max(|1-eta mu|, |1-eta L|)
    ||x_t - x*|| <= r^t ||x_0 - x*|| and f_t - f* <= r^{2t} (f_0 - f*).
    eta = 1/L: r = 1 - 1/kappa (docs/theory.md Q1: f_t - f* <= (1 - 1/kappa)^{2t} (f_0 - f*));
    eta = 2/(L+mu): r = (kappa - 1)/(kappa + 1), the best constant step.
    Both are exact: the contraction is attained along the eigenvector of mu (and of L).

    ``step``: "1/L", "2/(L+mu)" or a float eta. ``metric``: "subopt" (rate r^2) or
    "dist" (rate r); default "subopt" for 1/L and "dist" for 2/(L+mu), as in docs/theory.md (Q1).
    ``initial``: the metric at t = 0 (1.0 makes ``eps`` relative).

    Assumptions: H symmetric with spectrum in [mu, L], mu > 0.
    Reference: Nesterov (2018), *Lectures on Convex Optimization*, Thm 2.1.15 (step
    2/(L+mu)); Polyak (1987), *Introduction to Optimization*, Sec. 1.4.
    Proof sketch: diagonalise H; each eigen-coordinate is multiplied by (1 - eta lambda_i)
    per step, and |1 - eta lambda| is largest at the ends of [mu, L].
    """
    L, mu = _L_mu(L, mu)
    eta = _step(step, L, mu)
    metric = metric or (_DEFAULT_METRIC[step] if isinstance(step, str) else "subopt")
    r = _contraction(eta, L, mu)
    rate = _metric_rate(r, metric, metrics.of_bound("Q1"))
    return _linear("Q1", C=_pos("initial", initial), r=rate, eps=_eps(eps), lr=eta, metric=metric,
                   statement=f"{metric}_t <= r^t {metric}_0, r = max|1 - eta lambda|"
                             f"{'^2' if metric == 'subopt' else ''} over [mu, L] (step {step})",
                   reference="Nesterov (2018), Lectures on Convex Optimization, Thm 2.1.15; "
                             "Polyak (1987), Introduction to Optimization, Sec. 1.4",
                   constants=(("L", L), ("mu", mu), ("kappa", L / mu)))


def blockwise_gd_quadratic_rate(*, L_blocks, mu_blocks, step="1/L", metric="subopt", eps=None,
                                initial=1.0) -> Bound:
    r"""Q2: block-wise step sizes on a block-diagonal quadratic.

    Statement: with eta_b = 1/L_b, f_t - f* <= max_b (1 - 1/kappa_b)^{2t} (f_0 - f*),
    kappa_b = L_b / mu_b. With eta_b = 2/(L_b + mu_b) the factor is
    max_b ((kappa_b - 1)/(kappa_b + 1))^2. The best block scalars give condition
    number max_b kappa_b instead of kappa = max_b L_b / min_b mu_b.

    Assumptions: H = blockdiag(H_b), spectrum of H_b in [mu_b, L_b], mu_b > 0.
    Reference: Q1 applied to each block (Nesterov 2018, Thm 2.1.15); Zhang et al.
    (2024), Sec. 4, make the same observation for block-wise learning rates.
    Proof sketch: the blocks evolve independently; f - f* is the sum over blocks, each
    contracting by at most the largest block factor.
    """
    L = _vector("L_blocks", L_blocks)
    mu = _vector("mu_blocks", mu_blocks)
    if L.size != mu.size:
        raise ValueError(f"L_blocks and mu_blocks must have the same length; got {L.size} and {mu.size}")
    if np.any(mu > L):
        raise ValueError("need mu_b <= L_b for every block")
    etas = tuple(_step(step, float(Lb), float(mb)) for Lb, mb in zip(L, mu))
    factors = [_contraction(e, float(Lb), float(mb)) for e, Lb, mb in zip(etas, L, mu)]
    r = max(factors)
    rate = _metric_rate(r, metric, metrics.of_bound("Q2"))
    kappas = L / mu
    slow = int(np.argmax(factors))     # the block that sets the rate (for the worst case over its class)
    return _linear("Q2", C=_pos("initial", initial), r=rate, eps=_eps(eps), lr=etas, metric=metric,
                   statement=f"{metric}_t <= max_b r_b^t {metric}_0, r_b = max|1 - eta_b lambda| over "
                             f"[mu_b, L_b]{' squared' if metric == 'subopt' else ''} (step {step})",
                   reference="Q1 per block (Nesterov 2018, Thm 2.1.15); Zhang et al. (2024), Sec. 4",
                   constants=(("max_kappa_b", float(kappas.max())),
                              ("kappa", float(L.max() / mu.min())),
                              ("kappa_rate_block", float(kappas[slow])),
                              ("eta_L_rate_block", float(etas[slow] * L[slow]))))


def fixed_diagonal_precond_rate(*, H, p, step="2/(L+mu)", metric="subopt", eps=None,
                                initial=1.0) -> Bound:
    r"""Q3: a fixed diagonal preconditioner, x_{t+1} = x_t - eta P g_t, P = diag(p).

    Statement: with M = P^{1/2} H P^{1/2}, spectrum [lambda_min, lambda_max],
    kappa_P = lambda_max / lambda_min, the error z_t = P^{-1/2}(x_t - x*) obeys
    z_{t+1} = (I - eta M) z_t, so ||z_t|| <= r^t ||z_0|| ("dist_P") and
    f_t - f* <= r^{2t} (f_0 - f*) ("subopt"), r = max|1 - eta lambda| over the spectrum
    of M. At the best scalar step eta = 2/(lambda_min + lambda_max),
    r = (kappa_P - 1)/(kappa_P + 1); exact (attained by the extreme eigenvectors).
    Adam with beta1 = 0, beta2 = 1, v_0 = g_0^2 is this method with
    p = 1/(|g_0| + eps_adam). Zhang et al.'s statement for it is :func:`zhang_adam_rate`.

    ``step``: "2/(L+mu)", "1/L" (with L, mu the extreme eigenvalues of M) or a float eta.
    Assumptions: H symmetric positive definite, p > 0.
    Reference: Q1 applied to M (a change of variables x = P^{1/2} z); Nesterov (2018),
    Thm 2.1.15.
    Proof sketch: in z = P^{-1/2} x the method is plain GD on 1/2 z^T M z, and
    f - f* = 1/2 z^T M z.
    """
    from heterosim.precondition import _symmetric  # one validation of symmetric matrices
    H = _symmetric(H, "H")
    p = _vector("p", p)
    if p.size != H.shape[0]:
        raise ValueError(f"p must have length d = {H.shape[0]}; got {p.size}")
    sp = np.sqrt(p)
    lam = np.linalg.eigvalsh(sp[:, None] * H * sp[None, :])
    if lam[0] <= 0:
        raise ValueError(f"H must be positive definite; its smallest eigenvalue (after scaling) is {lam[0]:.3g}")
    lmin, lmax = float(lam[0]), float(lam[-1])
    eta = _step(step, lmax, lmin)
    r = _contraction(eta, lmax, lmin)
    rate = _metric_rate(r, metric, metrics.of_bound("Q3"))
    return _linear("Q3", C=_pos("initial", initial), r=rate, eps=_eps(eps), lr=eta, metric=metric,
                   statement=f"{metric}_t <= r^t {metric}_0 with r from kappa(P^1/2 H P^1/2) "
                             f"= {lmax / lmin:.6g} (step {step})",
                   reference="Q1 on P^{1/2} H P^{1/2} (Nesterov 2018, Thm 2.1.15)",
                   constants=(("kappa_P", lmax / lmin), ("lambda_min", lmin), ("lambda_max", lmax)))


def zhang_adam_rate(*, kappa_blocks, r, eps=None, initial=1.0) -> Bound:
    r"""Q3, Zhang et al.'s statement: Adam with beta1 = 0, beta2 = 1 on a block-diagonal
    quadratic contracts f - f* by at least max_l (1 - 1/(r kappa_l)) per step.

    kappa_l is the condition number of block l; r >= 1 is the constant of their
    theorem, which depends on the initialisation (through v_0 = g_0^2) and the block
    Hessians; it is passed in, not computed here. Compare with the exact rate of the
    same method from :func:`fixed_diagonal_precond_rate`.

    Reference: Zhang, Chen, Ding, Li, Sun & Luo (2024), *Why Transformers Need Adam:
    A Hessian Perspective*, NeurIPS, Sec. 4 (the Adam upper bound, stated there for the
    quadratic with block-diagonal Hessian; we recall it as Theorem 1, a numbering we
    could not check against the paper's text).
    Proof sketch (theirs): with v fixed at g_0^2, each block is preconditioned GD whose
    effective condition number is at most r kappa_l.
    """
    k = _vector("kappa_blocks", kappa_blocks)
    if np.any(k < 1):
        raise ValueError(f"condition numbers must be >= 1; got {k}")
    r = _scalar("r", r)
    if r < 1:
        raise ValueError(f"r must be >= 1; got {r}")
    rate = float(np.max(1.0 - 1.0 / (r * k)))
    return _linear("Q3-zhang", C=_pos("initial", initial), r=rate, eps=_eps(eps), lr=None,
                   metric="subopt",
                   statement="f_{t+1} - f* <= max_l (1 - 1/(r kappa_l)) (f_t - f*) (Adam, beta1=0, beta2=1)",
                   reference="Zhang et al. (2024), Why Transformers Need Adam, NeurIPS, Sec. 4 (Adam upper bound)",
                   constants=(("r", r), ("max_kappa_l", float(k.max()))))


def gd_lower_bound_rate(*, kappa, eps=None, initial=1.0) -> Bound:
    r"""Q3, Zhang et al.'s GD lower bound: for any constant step eta there is an
    initialisation with f_{t+1} - f* >= (1 - 2/(kappa + 1))^2 (f_t - f*) for all t.

    A *lower* bound (``sense = "lower"``): measured T(eps) on the worst initialisation
    (error along the eigenvectors of mu and L) is >= ``iterations``.

    Assumptions: H symmetric with extreme eigenvalues mu and L, kappa = L/mu.
    Reference: Zhang et al. (2024), Sec. 4 (the GD lower bound; we recall it as
    Proposition 1, unchecked against the text); classical: Polyak (1987), Sec. 1.4.
    Proof sketch: the factor max(|1-eta mu|, |1-eta L|) is >= (kappa-1)/(kappa+1) for
    every eta, and an error along the worse eigenvector is multiplied by it exactly.
    """
    kappa = _scalar("kappa", kappa)
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1; got {kappa}")
    rate = (1.0 - 2.0 / (kappa + 1.0)) ** 2
    return _linear("Q3-gd-lower", C=_pos("initial", initial), r=rate, eps=_eps(eps), lr=None,
                   metric="subopt", sense="lower",
                   statement="for any eta, some x_0 has f_{t+1} - f* >= (1 - 2/(kappa+1))^2 (f_t - f*)",
                   reference="Zhang et al. (2024), Sec. 4 (GD lower bound); Polyak (1987), Sec. 1.4",
                   constants=(("kappa", kappa),))


def optimal_diagonal_precond_rate(*, kappa_star, step="2/(L+mu)", metric="subopt", eps=None,
                                  initial=1.0) -> Bound:
    r"""Q4: the rate of GD preconditioned by the optimal diagonal D (D <= H <= kappa* D).

    Statement: x_{t+1} = x_t - eta D^{-1} g_t with eta = 2/(1 + kappa*) gives
    f_t - f* <= ((kappa* - 1)/(kappa* + 1))^{2t} (f_0 - f*): the best any fixed
    coordinate-wise scaling with a constant step can guarantee, a lower envelope for
    Adam-like methods on plots. kappa* from
    :func:`heterosim.precondition.optimal_diagonal_preconditioner`.

    Assumptions: D diagonal, D <= H <= kappa* D (so the spectrum of D^{-1/2} H D^{-1/2}
    lies in [1, kappa*]).
    Reference: Q3 with P = D^{-1}; the SDP characterisation of kappa* is Qu, Ye &
    Zhou (2020), *Diagonal preconditioning: theory and algorithms*.
    Proof sketch: Q1 with mu = 1, L = kappa* in the variable D^{1/2} x.
    """
    k = _scalar("kappa_star", kappa_star)
    if k < 1:
        raise ValueError(f"kappa_star must be >= 1; got {k}")
    eta = _step(step, k, 1.0)
    r = _contraction(eta, k, 1.0)
    rate = _metric_rate(r, metric, metrics.of_bound("Q4"))
    return _linear("Q4", C=_pos("initial", initial), r=rate, eps=_eps(eps), lr=eta, metric=metric,
                   statement=f"{metric}_t <= r^t {metric}_0, r from kappa* = {k:.6g} (step {step} on D^-1 g)",
                   reference="Q3 with P = D^-1; Qu et al. (2020), Diagonal preconditioning: theory and algorithms",
                   constants=(("kappa_star", k),))


def heavy_ball_quadratic_rate(*, L, mu, eps=None, initial=1.0) -> Bound:
    r"""Q5: Polyak's heavy ball with the optimal parameters on a quadratic, spectrum [mu, L].

    Statement: x_{t+1} = x_t - eta g_t + beta (x_t - x_{t-1}) with
    eta = 4/(sqrt L + sqrt mu)^2, beta = ((sqrt kappa - 1)/(sqrt kappa + 1))^2 converges
    with asymptotic rate (sqrt kappa - 1)/(sqrt kappa + 1): ||x_t - x*||^{1/t} -> r.
    (torch.optim.SGD with momentum=beta and lr=eta runs the same iterates.) Only
    asymptotic: at the spectrum's ends the 2x2 iteration matrix has a double eigenvalue
    r, so ||x_t - x*|| <= c (1 + t) r^t and no constant-free r^t bound holds. Exactly, with
    torch's first step x_1 = x_0 - eta g_0: an error along the eigenvector of mu obeys
    ||x_t - x*|| = (1 + 2t/(sqrt(kappa) + 1)) r^t ||x_0 - x*||, one along that of L
    (1 + 2 sqrt(kappa) t/(sqrt(kappa) + 1)) r^t ||x_0 - x*|| (``heterosim verify`` checks both).

    Assumptions: H symmetric, spectrum in [mu, L], mu > 0.
    Reference: Polyak (1964), *Some methods of speeding up the convergence of iteration
    methods*, USSR Comp. Math. Math. Phys. 4(5), Theorem 9; Polyak (1987), Sec. 3.2.1.
    Proof sketch: each eigen-coordinate follows a 2x2 linear recursion with characteristic
    polynomial z^2 - (1 + beta - eta lambda) z + beta; for lambda in [mu, L] its roots are
    complex (or double) with modulus sqrt(beta) = r.
    """
    L, mu = _L_mu(L, mu)
    sk = math.sqrt(L / mu)
    r = (sk - 1.0) / (sk + 1.0)
    eta = 4.0 / (math.sqrt(L) + math.sqrt(mu)) ** 2
    return _linear("Q5", C=_pos("initial", initial), r=r, eps=_eps(eps), lr=eta, metric="dist",
                   momentum=r * r, asymptotic=True,
                   statement="||x_t - x*||^{1/t} -> (sqrt(kappa) - 1)/(sqrt(kappa) + 1) "
                             "(eta = 4/(sqrt L + sqrt mu)^2, beta = r^2)",
                   reference="Polyak (1964), USSR Comp. Math. Math. Phys. 4(5), Thm 9; Polyak (1987), Sec. 3.2.1",
                   constants=(("L", L), ("mu", mu), ("kappa", L / mu)))


# ------------------------------------------------------ Kunstner's model, the head
def kunstner_gd(*, pi, eta, t, w0=1.0):
    r"""Kunstner closed form: GD on f(W) = sum_k pi_k 1/2 ||w_k||^2 gives
    w_k(t) = (1 - eta pi_k)^t w_k(0).

    Class k needs about pi_1 / pi_k times more steps than the most frequent class
    (:func:`kunstner_gd_iterations`), while sign descent does not depend on pi_k
    (:func:`kunstner_sign`).

    ``pi`` (C,) class frequencies (> 0); ``t`` an integer >= 0 or an array of them;
    ``w0`` scalar or (C,) (or (C, h), with rows per class). Returns (C, ...) for a
    scalar t and (len(t), C, ...) for an array.

    Reference: exact (the gradient of class k is pi_k w_k); the model of Kunstner,
    Yadav, Milligan, Schmidt & Bietti (2024), *Heavy-tailed class imbalance and why
    Adam outperforms gradient descent on language models*, NeurIPS, Sec. 4.
    Proof sketch: w_k(t+1) = w_k(t) - eta pi_k w_k(t).
    """
    p = _vector("pi", pi)
    eta = _pos("eta", eta)
    factors = 1.0 - eta * p
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.ndim >= 1 and w0.shape[0] != p.size:
        raise ValueError(f"w0 must be a scalar or have {p.size} rows (one per class); got shape {w0.shape}")
    t_arr = np.asarray(t)
    if np.any(t_arr < 0) or not np.all(np.equal(np.mod(t_arr, 1), 0)):
        raise ValueError(f"t must be integers >= 0; got {t}")
    extra = (1,) * max(w0.ndim - 1, 0)
    if t_arr.ndim == 0:
        return factors.reshape(-1, *extra) ** int(t_arr) * w0
    powers = factors[None, :] ** t_arr.astype(np.float64).reshape(-1, 1)
    return powers.reshape(*powers.shape, *extra) * w0


def kunstner_gd_iterations(*, pi, eta, eps):
    r"""Steps for GD to shrink every w_k by the factor eps in Kunstner's model:
    t_k = log(eps) / log|1 - eta pi_k| (``inf`` where |1 - eta pi_k| >= 1, 0 if eps >= 1).

    For eta pi_k << 1, t_k ~ log(1/eps) / (eta pi_k): proportional to 1/pi_k.
    Returns a (C,) array of real step counts (round up for an integer).
    Reference and proof: :func:`kunstner_gd`.
    """
    p = _vector("pi", pi)
    eta, eps = _pos("eta", eta), _pos("eps", eps)
    f = np.abs(1.0 - eta * p)
    out = np.full(p.size, math.inf)
    if eps >= 1:
        return np.zeros(p.size)
    zero = f == 0
    out[zero] = 1.0
    ok = (f > 0) & (f < 1)
    out[ok] = math.log(eps) / np.log(f[ok])
    return out


def kunstner_sign(*, eta, t, w0):
    r"""Sign descent on any objective whose coordinates are minimised at 0 with gradient
    sign(w) (Kunstner's sum_k pi_k 1/2 ||w_k||^2 included): the exact |w(t)|.

    Statement: |w(t)| = |w0| - eta t while t <= n0 = floor(|w0| / eta); afterwards it
    alternates between rho = |w0| - n0 eta and eta - rho (0 if rho = 0). It does not
    depend on pi_k: every class moves at the same speed eta.

    ``w0`` scalar or array; ``t`` an integer >= 0. Returns |w(t)| with w0's shape.
    Reference: exact; the contrast with GD drawn by Kunstner et al. (2024), Sec. 4.
    Proof sketch: the step -eta sign(w) reduces |w| by eta until |w| < eta; then
    |w - eta sign w| = eta - |w|, a 2-cycle.
    """
    eta = _pos("eta", eta)
    t = int(_nonneg("t", t))
    a = np.abs(np.asarray(w0, dtype=np.float64))
    n0 = np.floor(a / eta)
    rho = np.maximum(a - n0 * eta, 0.0)
    after = np.where((t - n0) % 2 == 0, rho, eta - rho)
    after = np.where(rho == 0, 0.0, after)
    return np.where(t <= n0, a - t * eta, after)


def sign_head_growth(*, eta, C, h) -> Bound:
    r"""Linear-head growth under sign updates: ||W_t - W_0||_F <= eta t sqrt(C h).

    Statement: for a C x h head updated by W_{t+1} = W_t - eta sign(M_t) with any M_t
    (SignSGD: M_t = G_t; Signum / sign-momentum: M_t a momentum buffer), every entry
    moves by at most eta per step, so |(W_t - W_0)_{ij}| <= eta t and the Frobenius norm
    is at most eta t sqrt(C h); equality iff every entry moves in one direction all the way.
    ``value(t)`` is the bound after t steps; the tightness of a run is
    ||W_t - W_0||_F / value(t).

    Assumptions: constant step eta, no weight decay.
    Reference: elementary (the triangle inequality per entry); the growth claim of
    Tomihari & Sato (2025) concerns how close a run comes to it (docs/theory.md, C6).
    Proof sketch: |sign(.)| <= 1 entrywise; sum t steps, then ||.||_F <= sqrt(C h) ||.||_max.
    """
    eta = _pos("eta", eta)
    C, h = int(_pos("C", C)), int(_pos("h", h))
    return Bound(name="head-growth", iterations=math.nan, lr=eta, metric="head_frob_dist",
                 aggregate="every",
                 statement="||W_t - W_0||_F <= eta t sqrt(C h) for sign-based updates",
                 reference="elementary (entrywise |sign| <= 1); docs/theory.md C6",
                 form="growth", coef=(eta * math.sqrt(C * h),),
                 constants=(("C", float(C)), ("h", float(h))))


# ------------------------------------------------------------ A1: Adam (beta1 = 0), l_inf
def adam_linf_nonconvex(*, Linf, delta, beta2, eps=None, T=None, eta=None, d=None, adam_eps=0.0) -> Bound:
    r"""A1: Adam with beta1 = 0 (RMSProp with bias correction) on an l_inf-smooth function.

    The rule (torch.optim.Adam with betas = (0, beta2), no weight decay): v_t = beta2 v_{t-1} +
    (1 - beta2) g_t^2 (v_{-1} = 0), \hat v_t = v_t / (1 - beta2^{t+1}),
    x_{t+1} = x_t - eta g_t / (\sqrt{\hat v_t} + eps_adam).

    Statement: for every T >= 1 at a fixed eta,

        (1/T) sum_{t<T} ||g_t||_1^2 <= [S_{T-1} sqrt(2 L_inf (Delta + a C_{T-1})) + d eps_adam]
                                       * (Delta + a C_T) / (eta T),

    a = L_inf eta^2 / 2, c_k^2 = (1 - beta2^{k+1})/(1 - beta2), C_n = sum_{k<n} c_k^2 <= n/(1-beta2),
    S_{T-1} = sqrt((1+q)/(1-q) (1-q^T)/(1+q^T)) <= K = sqrt((1+q)/(1-q)), q = sqrt(beta2).
    With the prescribed step eta = sqrt(2 Delta (1 - beta2) / (L_inf T)) (so a C_T <= Delta) and
    eps_adam = 0 this is at most 2 sqrt(2) K L_inf Delta / (sqrt(1 - beta2) sqrt(T)): min_{t<T}
    ||g_t||_1 <= eps after T = 8 K^2 L_inf^2 Delta^2 / ((1 - beta2) eps^4) steps (with eps_adam > 0,
    T = 2 L_inf Delta (2 K sqrt(L_inf Delta) + d eps_adam)^2 / ((1 - beta2) eps^4)).

    The bound depends on the curvature only through L_inf (the l_inf smoothness constant, at most
    ||H||_{1,1} and sum_b d_b L_b), never through L_2 or d, as Xie, Mohamadi & Li argue for Adam.
    It is much weaker in T than SignGD's B2 (eps^-4 against eps^-2): the second-moment memory can
    hold the step far below eta when gradients shrink, and the bound pays for that worst case.

    Assumptions: f(x+u) <= f(x) + <g,u> + (L_inf/2) ||u||_inf^2 for all x, u; bounded below
    (Delta = f(x_0) - inf f); beta2 in [0, 1); eps_adam >= 0 (with eps_adam = 0 no coordinate of
    g_0 may vanish).

    Reference: our derivation (docs/bounds.md, A1), in the l_inf-smoothness framework of Xie,
    Mohamadi & Li (2025), *Adam Exploits l_inf-geometry of Loss Landscape via Coordinate-wise
    Adaptivity*, ICLR, arXiv 2410.08198 (their theorem is stochastic and carries logarithmic
    factors; this deterministic version has explicit constants).

    Proof sketch: \hat v_t is a convex combination of g_0^2..g_t^2 whose last weight is
    1/c_t^2, so |u_{t,i}| <= eta c_t; the l_inf descent lemma gives f_{t+1} <= f_t -
    eta sum_i g_i^2/D_i + a c_t^2 (D = sqrt(\hat v) + eps_adam). Cauchy-Schwarz gives
    sum_i g_i^2/D_i >= ||g_t||_1^2 / sum_i D_i, and sum_i D_i <= S_t max_{s<=t} ||g_s||_1 + d eps_adam
    (sqrt of a weighted sum <= weighted sum of sqrt). Finally ||g_s||_1^2 <= 2 L_inf (f(x_s) - inf f)
    <= 2 L_inf (Delta + a C_s); sum over t < T.

    Exactly one of ``eps`` (choose T, then eta), ``T`` (choose eta; eps = value(T)) or ``eta``
    (a given step; no iteration count) is needed. ``d`` is required when ``adam_eps > 0``.
    """
    Linf, delta = _pos("Linf", Linf), _nonneg("delta", delta)
    beta2 = _scalar("beta2", beta2)
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"beta2 must be in [0, 1); got {beta2}")
    adam_eps = _nonneg("adam_eps", adam_eps)
    if adam_eps > 0 and d is None:
        raise ValueError("adam_linf_nonconvex needs d (the dimension) when adam_eps > 0")
    d_eps = adam_eps * int(_pos("d", d)) if adam_eps > 0 else 0.0
    if sum(v is not None for v in (eps, T, eta)) != 1:
        raise ValueError(f"give exactly one of eps, T or eta; got eps={eps!r}, T={T!r}, eta={eta!r}")
    K2, c2 = (1.0 + math.sqrt(beta2)) / (1.0 - math.sqrt(beta2)), 1.0 / (1.0 - beta2)
    iters = math.nan
    if eps is not None:
        eps = _pos("eps", eps)
        need = 2.0 * Linf * c2 * delta * (2.0 * math.sqrt(K2 * Linf * delta) + d_eps) ** 2 / eps ** 4
        iters = float(max(1, math.ceil(need)))
        T = iters
    if T is not None:
        T = int(_pos("T", T))
        if delta == 0.0:
            raise ValueError("delta = 0: x_0 is already a minimiser; there is no step to prescribe")
        eta = math.sqrt(2.0 * delta / (Linf * c2 * T))
    eta = _pos("eta", eta)
    if eps is None and T is not None:
        eps = _adam_value(T, Linf, delta, beta2, eta, d_eps)
    return Bound(name="A1", iterations=iters, lr=eta, metric="grad_l1", aggregate="mean", eps=eps,
                 statement="(1/T) sum_{t<T} ||g_t||_1^2 <= [S sqrt(2 Linf (Delta + a C_{T-1})) + d eps_adam] "
                           "(Delta + a C_T) / (eta T), a = Linf eta^2/2 (Adam, beta1 = 0)",
                 reference="ours (docs/bounds.md, A1), in the l_inf framework of Xie, Mohamadi & Li (2025), "
                           "ICLR, arXiv 2410.08198",
                 form="adam", coef=(Linf, delta, beta2, eta, d_eps), moment=2, momentum=0.0,
                 constants=(("Linf", Linf), ("delta", delta), ("beta2", beta2), ("K_beta", math.sqrt(K2)),
                            ("c2", c2), ("adam_eps", adam_eps)))


def adam_step_decrease(*, g, denom, eta, Linf):
    r"""A1 per step: the l_inf descent lemma on Adam's actual step u = -eta g / D.

    Statement: f(x_t) - f(x_{t+1}) >= eta sum_i g_i^2 / D_i - (L_inf/2) eta^2 max_i (g_i / D_i)^2,
    D = sqrt(\hat v_t) + eps_adam the denominator Adam used at step t. Returns (guarantee,
    first_order) with first_order = eta sum_i g_i^2 / D_i = -<g, u> (the decrease before curvature),
    each of shape (...,) for ``g``, ``denom`` of shape (..., d); ``eta`` a scalar or of shape (...,).

    Assumptions, reference: as :func:`adam_linf_nonconvex` (its first step).
    """
    g, denom, eta = _array(g), _array(denom), _array(eta)
    Linf = _pos("Linf", Linf)
    _check_positive_array("eta", eta)
    ratio = g / denom
    first = eta * (g * ratio).sum(-1)
    top = ratio.abs().amax(-1) if isinstance(ratio, torch.Tensor) else np.abs(ratio).max(-1)
    return first - 0.5 * Linf * (eta * top) ** 2, first


# ------------------------------------------------- exact worst case over a function class (PEP)
#: Bound label -> the PEPit function classes its exact worst case is available for (first: default).
#: B4 is B1 in the variables z_b = L_b^{1/2} x_b (then every block is 1-smooth); Q2's rate is set by
#: its slowest block, whose class is Q1's with that block's kappa_b.
PEP_CLASSES = {
    "B1": ("smooth", "smooth_convex"),
    "B4": ("smooth", "smooth_convex"),
    "Q1": ("smooth_strongly_convex", "quadratic"),
    "Q2": ("smooth_strongly_convex", "quadratic"),
    "Q5": ("quadratic", "smooth_strongly_convex"),
}
#: Longest horizon solved by default: the SDP grows like T^2 (T = 10 takes ~0.5 s, T = 20 ~3 s).
PEP_MAX_T = 10
_RATE_T = 2          # horizon of the linear-rate PEPs (the per-step worst case compounds exactly)
_CLASS_WORDS = {"smooth": "L-smooth (nonconvex)", "smooth_convex": "L-smooth convex",
                "smooth_strongly_convex": "L-smooth mu-strongly convex",
                "quadratic": "quadratics with mu I <= H <= L I"}


@dataclass(frozen=True)
class WorstCase:
    """The exact worst case of a bound's quantity over a function class, beside the bound.

    ``worst``: the largest value the bound's aggregate (in the metric's units) can take after ``T``
    steps of the method at the bound's step, over every function of ``function_class`` and every
    start with the bound's initial gap (PEPit's SDP value). ``bound_value`` = ``bound.value(T)``;
    ``ratio`` = (bound_value / worst)^moment, in the quantity the bound states (B1 and B4 bound the
    squared norm), (1 = the bound is the exact worst case; > 1 its own slack;
    < 1 the bound fails somewhere on the class, e.g. an asymptotic rate at finite T). For a
    per-step certificate (:func:`step_decrease_worst_case`) both are decrease coefficients and
    ratio = guarantee / worst <= 1. ``closed_form``: the known exact value where there is one;
    ``iterations``: the worst-case T(eps) over the class at the bound's eps (nan where not known)."""

    bound: str
    function_class: str
    T: int
    worst: float
    bound_value: float
    ratio: float
    closed_form: float | None = None
    iterations: float = math.nan
    note: str = ""
    solver: str = ""
    seconds: float = 0.0
    cached: bool = False

    def as_dict(self) -> dict:
        return {"pep_class": self.function_class, "pep_T": self.T, "pep_worst": self.worst,
                "pep_bound_value": self.bound_value, "bound_over_pep": self.ratio,
                "pep_closed_form": self.closed_form, "pep_iterations": self.iterations}


def _pep(method, cls, T, h, initial, performance, momentum=0.0, mu=0.0, cache=True):
    from heterosim.pep import PEPProblem, solve
    strongly = cls in ("smooth_strongly_convex", "quadratic")
    mu = min(max(mu, 1e-12), 1.0 - 1e-9) if strongly else 0.0
    return solve(PEPProblem(method, cls, int(T), float(h), initial, performance, momentum=momentum, mu=mu),
                 cache=cache)


def _default_T(bound: Bound, T):
    if T is not None:
        T = int(T)
        if T < 1:
            raise ValueError(f"T must be an integer >= 1; got {T}")
        return T
    if bound.form == "linear" and bound.name != "Q5":
        return _RATE_T
    it = bound.iterations
    return int(min(PEP_MAX_T, max(1, math.ceil(it)))) if math.isfinite(it) else PEP_MAX_T


def _worst_gradient(bound: Bound, cls, T, cache):
    """B1 (L = L_2, step eta) and B4 (L = 1, step 1 in z_b = L_b^{1/2} x_b): min_{t<T} ||g_t||^2."""
    c = bound.constants_dict
    delta = c["delta"]
    scale, h = (c["L2"] * delta, bound.lr * c["L2"]) if bound.name == "B1" else (delta, 1.0)
    res = _pep("gd", cls, T, h, "f0_minus_fT" if cls == "smooth" else "subopt", "min_grad_sq", cache=cache)
    closed = iters = None
    if cls == "smooth" and abs(h - 1.0) < 1e-12:
        from heterosim.pep import gd_nonconvex_closed_form
        closed = math.sqrt(scale * gd_nonconvex_closed_form(T))
        if bound.eps is not None:
            iters = (4.0 * scale / bound.eps ** 2 + 1.0) / 3.0      # smallest T with 4 s/(3T - 1) <= eps^2
    note = ("B4 in z_b = L_b^1/2 x_b: -diag(L_b) <= Hessian <= diag(L_b) makes f 1-smooth in z"
            if bound.name == "B4" else "")
    return res, math.sqrt(scale * max(res.value, 0.0)), closed, iters, note


def _worst_rate(bound: Bound, cls, T, cache):
    """Q1, Q2 (GD at the bound's step on the class with the bound's kappa) and Q5 (heavy ball)."""
    c = bound.constants_dict
    C = bound.coef[0]
    if bound.name == "Q2":
        kappa, h = c["kappa_rate_block"], c["eta_L_rate_block"]
    else:
        kappa, h = c["kappa"], bound.lr * c["L"]
    if bound.name == "Q5":
        res = _pep("heavy_ball", cls, T, h, "dist", "dist_sq", momentum=bound.momentum, mu=1.0 / kappa, cache=cache)
        return res, C * math.sqrt(max(res.value, 0.0)), None, None, "asymptotic bound: the rate r^T omits the (1 + cT) factor"
    sub = bound.metric == "subopt"
    res = _pep("gd", cls, T, h, "subopt" if sub else "dist", "subopt" if sub else "dist_sq", mu=1.0 / kappa, cache=cache)
    factor = max(res.value, 0.0) if sub else math.sqrt(max(res.value, 0.0))
    iters = None
    if bound.eps is not None and factor > 0:
        iters = _linear_iterations(bound.eps, C, factor ** (1.0 / T))
    note = f"slowest block's class (kappa_b = {kappa:.4g})" if bound.name == "Q2" else ""
    return res, C * factor, None, iters, note


def worst_case(bound: Bound, *, T: int | None = None, function_class: str | None = None,
               cache: bool = True) -> WorstCase:
    r"""The exact worst case of ``bound``'s quantity over its function class, by PEPit.

    Performance estimation (Drori & Teboulle 2014; Taylor, Hendrickx & Glineur 2017) turns "the
    largest value of the measured quantity after T steps, over every function of the class and
    every start with the same initial gap" into a semidefinite program, which
    :mod:`heterosim.pep` builds with PEPit and solves (cached on disk). Available for the bounds in
    :data:`PEP_CLASSES`:

    * B1 (GD at eta on L_2-smooth functions; ``smooth`` or ``smooth_convex``): min_{t<T} ||g_t||_2.
      At eta = 1/L_2 on the nonconvex class the exact value is sqrt(4 L_2 Delta / (3T - 1))
      (Abbaszadehpeivasti, de Klerk & Zamani 2022), so B1 / worst = sqrt((3T - 1)/(2T)) and the
      iteration counts differ by (3T - 1)/(2T) -> 1.5 (``closed_form``, ``iterations``).
    * B4 (block-wise 1/L_b): B1 in z_b = L_b^{1/2} x_b, where the function is 1-smooth when
      -diag(L_b) <= Hessian <= diag(L_b) (every block-diagonal quadratic with L_b = lambda_max(H_b)).
    * Q1, Q2 (GD on ``smooth_strongly_convex`` functions or ``quadratic`` ones): the contraction of
      f - f* or ||x - x*|| after T steps (Q2: its slowest block's class).
    * Q5 (heavy ball with Polyak's parameters): ||x_T - x*|| on quadratics, where the bound omits the
      factor (1 + cT), so ratio < 1; on the smooth strongly convex class the method need not converge
      (Lessard, Recht & Packard 2016), and the worst case grows.

    ``T``: the horizon (default: the bound's iterations, at most :data:`PEP_MAX_T`; 2 for Q1/Q2).
    Other bounds (sign methods in l_inf, S1/S2, A1, ...) have no PEPit class: ValueError.
    """
    if not isinstance(bound, Bound):
        raise ValueError(f"worst_case takes a heterosim.bounds.Bound; got {type(bound).__name__}")
    classes = PEP_CLASSES.get(bound.name)
    if classes is None:
        raise ValueError(f"bound {bound.name} has no PEPit function class (its smoothness is in l_inf, block "
                         f"norms or an expectation); available for {', '.join(PEP_CLASSES)}")
    cls = function_class or classes[0]
    if cls not in classes:
        raise ValueError(f"function_class for {bound.name} must be one of {classes}; got {cls!r}")
    T = _default_T(bound, T)
    fn = _worst_gradient if bound.name in ("B1", "B4") else _worst_rate
    res, worst, closed, iters, note = fn(bound, cls, T, cache)
    value = bound.value(float(T))
    # the ratio in the quantity the bound states (B1, B4: the squared norm, moment 2): for B1 at
    # 1/L_2 it is (3T - 1)/(2T), which is also the ratio of the iteration counts at the same eps
    ratio = (value / worst) ** bound.moment if worst > 0 else (1.0 if value == 0 else math.inf)
    return WorstCase(bound.name, _CLASS_WORDS[cls], T, worst, value, ratio, closed,
                     math.nan if iters is None else float(iters), note, res.solver, res.seconds, res.cached)


def step_decrease_worst_case(*, eta, L, function_class: str = "smooth", cache: bool = True) -> WorstCase:
    r"""The exact smallest one-step decrease of GD at step eta over L-smooth functions, per ||g||^2.

    B1' (and B4-step in z_b = L_b^{1/2} x_b) guarantee f(x_t) - f(x_{t+1}) >= eta (1 - eta L/2) ||g_t||^2.
    PEPit's one-step worst case says how much of that is the class and how much the certificate:
    ``worst`` is the smallest (f(x_0) - f(x_1)) / ||g_0||^2 over the class, ``bound_value`` the
    certificate's eta (1 - eta L/2), ``ratio`` their quotient (1: the descent lemma is the exact worst
    case of one step, attained by a function curving at L along g)."""
    eta, L = _pos("eta", eta), _pos("L", L)
    if function_class not in ("smooth", "smooth_convex"):
        raise ValueError(f"function_class must be 'smooth' or 'smooth_convex'; got {function_class!r}")
    res = _pep("gd_step", function_class, 1, eta * L, "grad", "neg_decrease", cache=cache)
    worst = -res.value / L
    value = eta * (1.0 - eta * L / 2.0)
    return WorstCase("B1'", _CLASS_WORDS[function_class], 1, worst, value, value / worst if worst > 0 else math.nan,
                     closed_form=value, note="one step, per unit ||g||^2", solver=res.solver, seconds=res.seconds,
                     cached=res.cached)


# ------------------------------------------------- exact worst start on one spectrum (quadratics)
@dataclass(frozen=True)
class WorstStart:
    """The exact maximum over starting points of T(eps) on one quadratic's spectrum.

    ``iterations``: the largest first-hitting step over all starts with the given initial gap (for
    ``grad_l2``/``grad_Linv``: f(x_0) - f* = Delta; for relative metrics: any start);
    ``eigenvalue``: the eigenvalue whose eigenvector attains it, when one eigen-direction does (GD,
    block-wise GD); ``weights``: the attaining mixture of eigen-directions (shares of the metric at
    x_0), when it takes several (heavy ball)."""

    method: str
    metric: str
    iterations: float
    eigenvalue: float | None = None
    weights: tuple | None = None
    note: str = ""


def _first_below(q, rho, target):
    """Per mode: the first t >= 0 with q rho^(2t) <= target (inf if never)."""
    out = np.zeros(len(q))
    for i, (qi, ri) in enumerate(zip(q, rho)):
        if qi <= target:
            continue
        if ri == 0.0:
            out[i] = 1.0
            continue
        if ri >= 1.0:
            out[i] = math.inf
            continue
        t = max(1, math.ceil(math.log(target / qi) / (2.0 * math.log(ri))))
        while t > 1 and qi * ri ** (2 * (t - 1)) <= target:     # guard the rounding of the logarithms
            t -= 1
        while qi * ri ** (2 * t) > target:
            t += 1
        out[i] = t
    return out


def _mode_weights(metric, lam, delta, eps, scale=None):
    """(q, target) of the single-mode hitting problem q rho^(2t) <= target for each metric."""
    if metric in ("grad_l2", "grad_Linv"):
        if delta is None:
            raise ValueError(f"metric {metric} (absolute eps) needs delta = f(x_0) - f*")
        delta = _nonneg("delta", delta)
        return 2.0 * delta * lam * (1.0 if scale is None else scale), eps * eps
    if metric == "subopt":                 # f_t - f* <= eps (f_0 - f*): shares of the loss
        return np.ones_like(lam), eps
    if metric == "dist":                   # ||x_t - x*|| <= eps ||x_0 - x*||
        return np.ones_like(lam), eps * eps
    raise ValueError(f"metric must be grad_l2, grad_Linv, subopt or dist; got {metric!r}")


def _single_mode_worst(method, metric, lam, rho, q, target, note):
    if np.any(rho > 1.0 + 1e-15):
        raise ValueError(f"{method}: some |1 - eta lambda| > 1 (the step exceeds 2/lambda): the iteration "
                         "diverges from that eigenvector and T(eps) is infinite")
    T = _first_below(q, np.minimum(rho, 1.0), target)
    i = int(np.argmax(T))
    return WorstStart(method, metric, float(T[i]), float(lam[i]), None, note)


def gd_worst_start(*, eigenvalues, eta, eps, metric="grad_l2", delta=None) -> WorstStart:
    r"""The exact maximum over starts of GD's T(eps) on a quadratic with the given spectrum.

    Statement: write x_0 - x* = sum_i c_i v_i in H's eigenbasis and w_i = lambda_i c_i^2 / 2 (the
    share of f_0 - f* = Delta in mode i). Then ||g_t||^2 = sum_i 2 lambda_i w_i (1 - eta lambda_i)^{2t}
    is linear in w, and for eta <= 2/L every term is nonincreasing in t. A start is unreached at t iff
    every s <= t has ||g_s|| > eps, and by monotonicity that is iff ||g_t|| > eps; the largest
    ||g_t||^2 over the simplex {w >= 0, sum w = Delta} sits at a vertex. So the worst start is one
    eigenvector: T_worst = max_i min{t : 2 lambda_i Delta (1 - eta lambda_i)^{2t} <= eps^2}.
    On a continuous spectrum at eta = 1/L this is at most about T_B1 / (2e) (maximise
    log(u)/(2u) over u = 2 lambda Delta/eps^2): GD on any quadratic uses at most ~18.4% of B1's steps.

    ``metric``: ``grad_l2`` (absolute eps, needs ``delta``), ``subopt`` (f_t - f* <= eps (f_0 - f*)) or
    ``dist`` (||x_t - x*|| <= eps ||x_0 - x*||); the last two are relative and start-free.
    Reference: exact (diagonalisation); the worst-start view of Nesterov (2018), Sec. 2.1.4.
    """
    lam = _vector("eigenvalues", eigenvalues, allow_zero=True)
    lam = lam[lam > 0]
    eta, eps = _pos("eta", eta), _pos("eps", eps)
    q, target = _mode_weights(metric, lam, delta, eps)
    return _single_mode_worst("gd", metric, lam, np.abs(1.0 - eta * lam), q, target,
                              "one eigenvector attains it (every mode decays monotonically)")


def blockwise_gd_worst_start(*, block_eigenvalues, eta_blocks, eps, metric="grad_Linv", delta=None,
                             L_blocks=None) -> WorstStart:
    r"""The exact maximum over starts of block-wise GD's T(eps) (x_{t+1,b} = x_{t,b} - eta_b g_{t,b}) on a
    block-diagonal quadratic with the given block spectra.

    Every eigenvector of H lies in one block b and is multiplied by 1 - eta_b lambda per step; with
    w_i the share of Delta in mode i, sum_b ||g_{t,b}||^2 / L_b = sum_i 2 w_i (lambda_i/L_b)(1 - eta_b lambda_i)^{2t}
    (metric ``grad_Linv``, B4's; needs ``L_blocks`` and ``delta``), so the argument of
    :func:`gd_worst_start` applies mode by mode: one eigenvector attains the maximum. ``grad_l2``,
    ``subopt`` and ``dist`` are as there.
    """
    spectra = [_vector(f"block_eigenvalues[{b}]", s, allow_zero=True) for b, s in enumerate(block_eigenvalues)]
    etas = _vector("eta_blocks", eta_blocks)
    if etas.size != len(spectra):
        raise ValueError(f"got {etas.size} block steps for {len(spectra)} blocks")
    eps = _pos("eps", eps)
    lam = np.concatenate(spectra)
    rho = np.concatenate([np.abs(1.0 - e * s) for e, s in zip(etas, spectra)])
    scale = None
    if metric == "grad_Linv":
        if L_blocks is None:
            raise ValueError("metric grad_Linv needs L_blocks")
        Lb = _vector("L_blocks", L_blocks)
        scale = np.concatenate([np.full(s.size, 1.0 / L) for s, L in zip(spectra, Lb)])
    q, target = _mode_weights(metric, lam, delta, eps, scale)
    keep = lam > 0
    return _single_mode_worst("blockwise_gd", metric, lam[keep], rho[keep], q[keep], target,
                              "one eigenvector attains it (every mode decays monotonically)")


def _heavy_ball_modes(lam, eta, beta, steps):
    """z_t(lambda) for t = 0..steps: z_0 = 1, z_1 = 1 - eta lambda (torch's first step),
    z_{t+1} = (1 + beta - eta lambda) z_t - beta z_{t-1}. Shape (steps + 1, n)."""
    z = np.empty((steps + 1, lam.size))
    z[0] = 1.0
    if steps >= 1:
        z[1] = 1.0 - eta * lam
    a = 1.0 + beta - eta * lam
    for t in range(1, steps):
        z[t + 1] = a * z[t] - beta * z[t - 1]
    return z


def _lp_max_min(A):
    """max over the simplex of min_s (A w)_s, and the maximiser (scipy's HiGHS)."""
    from scipy.optimize import linprog
    m, n = A.shape
    c = np.zeros(n + 1)
    c[-1] = -1.0
    res = linprog(c, A_ub=np.hstack([-A, np.ones((m, 1))]), b_ub=np.zeros(m),
                  A_eq=np.hstack([np.ones((1, n)), np.zeros((1, 1))]), b_eq=[1.0],
                  bounds=[(0, None)] * n + [(None, None)], method="highs")
    if res.status != 0:
        raise RuntimeError(f"the worst-start LP failed: {res.message}")
    return -float(res.fun), res.x[:n]


def heavy_ball_worst_start(*, eigenvalues, eta, momentum, eps, metric="dist", max_steps: int = 100_000) -> WorstStart:
    r"""The exact maximum over starts of heavy ball's T(eps) for ||x_t - x*|| <= eps ||x_0 - x*||.

    Each eigen-coordinate follows z_{t+1} = (1 + beta - eta lambda) z_t - beta z_{t-1} (torch.optim.SGD's
    first step z_1 = (1 - eta lambda) z_0), so with w_i = c_i^2 / ||x_0 - x*||^2 on the simplex,
    ||x_t - x*||^2 / ||x_0 - x*||^2 = sum_i w_i z_t(lambda_i)^2 is linear in w. Unlike GD the modes
    oscillate, so a mixture can stay above eps longer than any single eigenvector: a start is unreached
    at t iff min_{s<=t} sum_i w_i z_s(lambda_i)^2 > eps^2, and the largest such t over the simplex is
    found by bisection on t, each step a linear program (max_w min_s; scipy's HiGHS).
    ``metric``: only ``dist`` (Q5's). Returns inf if some start is still unreached after ``max_steps``.
    """
    if metric != "dist":
        raise ValueError(f"heavy_ball_worst_start measures ||x_t - x*|| (metric 'dist'); got {metric!r}")
    lam = np.unique(_vector("eigenvalues", eigenvalues))
    eta, eps = _pos("eta", eta), _pos("eps", eps)
    beta = _scalar("momentum", momentum)
    if not 0 <= beta < 1:
        raise ValueError(f"momentum must be in [0, 1); got {beta}")
    A, t_hi, n = None, None, 64
    while t_hi is None:                        # grow the horizon until every mode is below eps at once
        A = _heavy_ball_modes(lam, eta, beta, n) ** 2 / (eps * eps)
        below = np.nonzero(A.max(1) <= 1.0)[0]
        if below.size:
            t_hi = int(below[0])
        elif n >= max_steps:
            return WorstStart("heavy_ball", metric, math.inf, note=f"not reached within {max_steps} steps")
        else:
            n = min(4 * n, max_steps)
    above = A[: t_hi + 1] > 1.0                # single modes: the last t with every s <= t above eps
    runs = np.where(above.all(0), t_hi, np.argmin(above, axis=0) - 1)
    lo, best = int(runs.max()), None           # P(lo) holds (or lo = -1); P(t_hi) fails
    hi = t_hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        v, w = _lp_max_min(A[: mid + 1])
        if v > 1.0 + 1e-9:
            lo, best = mid, w
        else:
            hi = mid
    weights = tuple(float(x) for x in best) if best is not None else None
    return WorstStart("heavy_ball", metric, float(lo + 1), None, weights,
                      "max over mixtures of eigen-directions (LP); single eigenvectors can hit eps early "
                      "at a zero of their oscillation")
