r"""``heterosim verify``: every bound of docs/theory.md checked against the engine's measurements.

A bound (:mod:`heterosim.bounds`) is returned beside the measurement it bounds, and
the two meet here. For each bound and each problem of a suite the optimizer runs at
the step size the bound prescribes, through :func:`heterosim.engine.run`, and the
measurement is compared with the bound:

===========  ================================================  ==========================
kind         measured                                          passes when
===========  ================================================  ==========================
iterations   T(eps) = first t with metric(x_t) <= eps          T(eps) <= bound T, and the
             (eps chosen so that the bound is ``budget.T``)    aggregate (min / running
                                                               mean) <= value(T) at every T
per step     f(x_t) - f(x_{t+1}) and the guaranteed decrease   decrease >= guarantee at
             from the metrics measured at x_t                  every step of every run
rate         per-step contraction of f - f* (or ||x - x*||)    equal to the predicted rate
                                                               to ``RATE_RTOL`` where exact,
                                                               >= a lower bound
stochastic   the mean over >= 32 noise seeds                   mean - ``SIGMA_MARGIN``
                                                               standard errors <= bound
===========  ================================================  ==========================

Every row of :func:`verify`'s table carries the bound's name, the problem, the
prescribed step, the measured value, the bound's value (``predicted``), the
tightness ratio measured / predicted and a boolean ``pass``.

Measurements that the engine does not record are derived here, never by changing
the engine: ``grad_Linv`` = (sum_b ||g_b||^2 / L_b)^{1/2} from the per-block norms,
``head_frob_dist`` = ||x_t - x_0|| as the engine's ``dist`` of an :class:`Anchored`
view of the problem, and eigen-coordinates of x_t from ``Result.x_final``.

Quadratics with x* != 0 lose relative precision in x_t - x* once the error is
small. The suite's quadratics are therefore :func:`centred` copies (the same problem
translated so that x* = 0); every optimizer used here is translation-equivariant,
so the iterates are the translated ones.

Public helpers, reused by :mod:`heterosim.testing` for users' own bounds:
:func:`check_bound` (an iteration / value bound), :func:`check_step_inequality`
(a per-step certificate), :func:`eps_for_budget`, :func:`starts`, :func:`centred`.

Example::

    from heterosim.verify import verify
    table = verify(quick=True)                    # pandas.DataFrame, one row per (bound, problem)
    assert table["pass"].all()

    $ heterosim verify --quick            # prints the table; exit code 1 on a violation
    $ heterosim verify --json             # a list of row dicts, each with a boolean "pass"
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

import heterosim.bounds as hb
from heterosim import engine
from heterosim.optimizers import Optimizer, for_problem, make as make_optimizer

__all__ = [
    "verify", "cli_main", "default_suite", "format_table", "rows_as_json",
    "Case", "Budget", "FULL", "QUICK", "CHECKS", "BOUND_NAMES",
    "check_bound", "check_step_inequality", "BoundCheck", "StepCheck", "Start", "starts",
    "eps_for_budget", "centred", "Anchored", "f_star_lower",
    "check_gd", "check_signgd", "check_steepest", "check_blockwise", "check_sgd_stochastic",
    "check_signsgd_stochastic", "check_gd_quadratic", "check_gd_blind", "check_blockwise_quadratic",
    "check_precond_quadratic", "check_optimal_precond", "check_heavy_ball", "check_kunstner",
    "check_head_growth",
    "SIGMA_MARGIN", "RATE_RTOL", "RATE_ATOL", "VALUE_RTOL", "VALUE_ATOL", "STEP_RTOL", "MAX_STEPS",
]

#: One-sided confidence margin for stochastic bounds, in standard errors of the mean over
#: the noise seeds: mean - 3 SE <= bound. Under the normal approximation of a mean of >= 32
#: independent runs a true bound fails this with probability about 0.13% per comparison.
SIGMA_MARGIN = 3.0
#: Relative tolerance for predicted rates that are exact (Q1-Q5: attained by eigen-directions).
RATE_RTOL = 1e-8
#: Relative slack on value curves (min / mean / last / every): the rounding of the measured metric.
VALUE_RTOL = 1e-9
#: Absolute slack on value curves, relative to the metric at x_0: its rounding floor (a metric
#: computed from x_t - x* is good to ~1e-16 of ||x*||, so a converged run cannot go below it).
VALUE_ATOL = 1e-13
#: Rounding allowance of a per-step decrease, relative to max(|f_t|, |f_{t+1}|): the two losses are
#: each computed with a relative error of a few d * 2^-53; 1e-12 covers d up to ~10^3.
STEP_RTOL = 1e-12
#: Step cap of :func:`check_bound` when a bound asks for more.
MAX_STEPS = 20_000
_RECORD = ("loss", "subopt", "grad_l2", "grad_l1", "blocks")
_MEASURABLE = ("loss", "subopt", "grad_l2", "grad_l1", "dist", "grad_Linv", "head_frob_dist")


# =============================================================== problem views
def centred(problem):
    """The same block quadratic translated so that x* = 0 (H, f*, spectra and the initial
    errors x_0 - x* unchanged). Errors x_t - x* then keep full relative precision down to
    underflow. Every optimizer here (without weight decay) is translation-equivariant, so
    its iterates on the copy are the original ones minus x*."""
    if getattr(problem, "x_star", None) is None:
        raise ValueError(f"centred needs a problem with a known minimiser; {problem.name} has none")
    if not hasattr(problem, "block_hessians"):
        raise ValueError(f"centred applies to block quadratics (BlockQuadratic); got {type(problem).__name__}")
    out = copy.copy(problem)
    out.x_star = torch.zeros_like(problem.x_star)
    return out


class Anchored:
    """A view of ``problem`` whose ``x_star`` is ``anchor``: the engine's ``dist`` metric then
    records ||x_t - anchor|| (with anchor = x_0: how far a run has moved, e.g. a linear head's
    ||W_t - W_0||_F). Everything else is the problem's own."""

    def __init__(self, problem, anchor):
        anchor = torch.as_tensor(anchor, dtype=torch.float64).flatten()
        if anchor.numel() != problem.d:
            raise ValueError(f"anchor has {anchor.numel()} entries; the problem has d = {problem.d}")
        self._problem = problem
        self.x_star = anchor

    def __getattr__(self, name):
        if name.startswith("__") or name == "_problem":   # copy/pickle probe before __init__ ran
            raise AttributeError(name)
        return getattr(self._problem, name)


def _is_quadratic(problem) -> bool:
    return hasattr(problem, "block_hessians") and hasattr(problem, "eigenbasis")


def f_star_lower(problem) -> float:
    """A certified lower bound on inf f: f* minus its certified gap where f* is computed
    (softmax regression: ``f_star_gap_bound`` from strong convexity), else f*."""
    gap = float(getattr(problem, "f_star_gap_bound", 0.0))
    return float(problem.f_star) - (gap if math.isfinite(gap) else 0.0)


# ====================================================================== starts
@dataclass(frozen=True)
class Start:
    """What a bound may depend on at one run's starting point x_0."""

    x0: torch.Tensor
    f0: float
    delta: float          # f(x_0) - inf f (certified: f* minus its gap bound where f* is computed)
    subopt: float         # f(x_0) - f*
    grad_l2: float
    grad_l1: float
    dist: float           # ||x_0 - x*|| (nan when x* is unknown)
    seed: int | None = None


def starts(problem, X0: torch.Tensor, seeds: Sequence[int] | None = None) -> list[Start]:
    """:class:`Start` of every row of ``X0`` (B, d)."""
    X0 = torch.as_tensor(X0, dtype=torch.float64)
    X0 = X0.unsqueeze(0) if X0.dim() == 1 else X0
    f, g = problem.loss_and_grad(X0)
    lo, fs = f_star_lower(problem), float(problem.f_star)
    xs = getattr(problem, "x_star", None)
    dist = torch.linalg.vector_norm(X0 - xs, dim=1) if xs is not None else torch.full_like(f, math.nan)
    out = []
    for i in range(X0.shape[0]):
        out.append(Start(x0=X0[i].clone(), f0=float(f[i]), delta=max(float(f[i]) - lo, 0.0),
                         subopt=float(f[i]) - fs, grad_l2=float(g[i].norm()),
                         grad_l1=float(g[i].abs().sum()), dist=float(dist[i]),
                         seed=None if seeds is None else int(seeds[i])))
    return out


def _start_points(problem, seeds, x0):
    if x0 is None:
        seeds = [int(s) for s in np.atleast_1d(seeds)]
        if not seeds:
            raise ValueError("need at least one seed (or an x0)")
        return problem.initial_points(seeds).to(torch.float64), seeds
    X0 = torch.as_tensor(x0, dtype=torch.float64)
    X0 = X0.unsqueeze(0) if X0.dim() == 1 else X0
    if X0.dim() != 2 or X0.shape[1] != problem.d:
        raise ValueError(f"x0 must have shape ({problem.d},) or (B, {problem.d}); got {tuple(X0.shape)}")
    return X0, None


def eps_for_budget(make_bound: Callable[[float], hb.Bound], T: float) -> float:
    """The eps at which the sublinear bound ``make_bound(eps)`` asks for (just under) T iterations.

    Bisection on log eps: every bound here needs more iterations for a smaller eps. Choosing eps
    from a budget keeps every check's run at most T steps whatever the problem's constants.
    """
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"T must be a finite number > 0; got {T}")

    def its(e):
        v = make_bound(e).iterations
        return math.inf if math.isnan(v) else v

    lo = hi = 1.0
    while its(hi) > T:
        hi *= 10.0
        if hi > 1e300:
            raise ValueError("no eps makes the bound ask for fewer than T iterations")
    while its(lo) <= T and lo > 1e-300:
        lo /= 10.0
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if its(mid) <= T:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-13:
            break
    return hi


# ====================================================================== running
def _make(opt) -> Optimizer:
    return make_optimizer(opt) if isinstance(opt, str) else opt


def _run(problem, opt, lrs, X0, steps, *, stochastic=False, noise_seeds=(0,), record=_RECORD, cache=None,
         target=None):
    """engine.run with one row per start (lrs: one per row) or, stochastic, one start and one
    row per noise seed. Returns the Result (cached within one verify() call). With a
    ``target`` the engine stops once every row has reached it (the curves end there)."""
    opt = _make(opt)
    record = tuple(record) + (("dist",) if getattr(problem, "x_star", None) is not None
                              and "dist" not in record else ())
    lrs = np.asarray(lrs, dtype=float).reshape(-1)
    key = None
    if cache is not None:
        key = (id(problem), opt.label(), lrs.tobytes(), X0.numpy().tobytes(), int(steps), bool(stochastic),
               tuple(int(s) for s in noise_seeds), record, target)
        if key in cache:
            return cache[key]
    if stochastic:
        if X0.shape[0] != 1 or lrs.size != 1:
            raise ValueError("a stochastic check runs one start and one step size over many noise seeds")
        res = engine.run(problem, opt, lrs, seeds=noise_seeds, steps=steps, record=record, x0=X0[0],
                         stochastic=True)
    else:
        if lrs.size == 1 and X0.shape[0] > 1:
            lrs = np.full(X0.shape[0], lrs[0])
        if lrs.size != X0.shape[0]:
            raise ValueError(f"got {lrs.size} step sizes for {X0.shape[0]} starts")
        res = engine.run(problem, opt, lrs, seeds=(0,), steps=steps, record=record, x0=X0, target=target)
    if cache is not None:
        cache[key] = res
    return res


def _curves(problem, res, names) -> dict:
    """Metric curves (B, K) as numpy, derived ones included."""
    out = {}
    for m in names:
        if m == "grad_Linv":
            L = problem.L_blocks.detach().cpu().numpy()
            out[m] = np.sqrt((res.curves["blocks"] ** 2 / L).sum(-1))
        elif m == "head_frob_dist":
            out[m] = res.curves["dist"]
        else:
            out[m] = res.curves[m]
    return out


def _measure(problem, opt, lrs, X0, steps, metric, *, stochastic=False, noise_seeds=(0,), cache=None,
             target=None):
    """Curves of ``metric`` (B, steps+1) for every row, with the anchored view for head_frob_dist."""
    if metric not in _MEASURABLE:
        raise ValueError(f"cannot measure metric {metric!r}; measurable: {', '.join(_MEASURABLE)}")
    if metric == "dist" and getattr(problem, "x_star", None) is None:
        raise ValueError(f"metric 'dist' needs a known minimiser; {problem.name} has none")
    if metric != "head_frob_dist":
        res = _run(problem, opt, lrs, X0, steps, stochastic=stochastic, noise_seeds=noise_seeds, cache=cache,
                   target=target)
        return _curves(problem, res, [metric])[metric], res
    rows, last = [], None
    lrs = np.broadcast_to(np.asarray(lrs, dtype=float).reshape(-1), (X0.shape[0],)) if not stochastic else lrs
    groups = [(X0, lrs)] if (stochastic or bool((X0 == X0[0]).all())) else \
        [(X0[i:i + 1], lrs[i:i + 1]) for i in range(X0.shape[0])]
    for Xg, lg in groups:
        view = Anchored(problem, Xg[0])
        last = _run(view, opt, lg if not stochastic else lrs, Xg, steps, stochastic=stochastic,
                    noise_seeds=noise_seeds, record=("loss", "dist"), cache=None)
        rows.append(last.curves["dist"])
    return np.concatenate(rows, 0), last


# =============================================================== check_bound
@dataclass
class BoundCheck:
    """A measured run against a :class:`heterosim.bounds.Bound`.

    ``measured_T``/``bound_T`` per row: first t with metric <= eps, and the bound's
    iterations (nan where the bound has no eps). ``value_ratio``: the largest aggregate /
    value(T) over every T run (<= 1 + VALUE_RTOL when the bound holds). ``tightness``: the
    largest measured_T / bound_T (or value_ratio when there is no iteration count).
    ``conclusive`` is False when the run was capped before the bound's iteration count and
    the metric had not reached eps (nothing could be refuted).
    """

    name: str
    metric: str
    aggregate: str
    holds: bool
    T_ok: bool
    value_ok: bool
    conclusive: bool
    measured_T: np.ndarray
    bound_T: np.ndarray
    tightness: float
    value_ratio: float
    worst: int
    steps: int
    lr: np.ndarray
    eps: np.ndarray
    n_seeds: int
    message: str
    final: np.ndarray | None = None

    def as_dict(self) -> dict:
        return {"bound": self.name, "metric": self.metric, "aggregate": self.aggregate, "holds": self.holds,
                "T_ok": self.T_ok, "value_ok": self.value_ok, "conclusive": self.conclusive,
                "measured_T": self.measured_T.tolist(), "bound_T": self.bound_T.tolist(),
                "tightness": self.tightness, "value_ratio": self.value_ratio, "steps": self.steps,
                "message": self.message}


def _first_hit(curve, eps):
    below = curve <= eps[:, None]
    return np.where(below.any(1), below.argmax(1), np.inf).astype(float)


def _aggregate_curve(curve, aggregate):
    """(B, K+1) metric -> (B, K+1) aggregate indexed by T, and the T of each column."""
    K1 = curve.shape[1]
    if aggregate == "min":       # min_{t<T} m_t for T = 1..K+1
        return np.minimum.accumulate(curve, axis=1), np.arange(1, K1 + 1)
    if aggregate in ("mean", "expected_mean"):
        return np.cumsum(curve, axis=1) / np.arange(1, K1 + 1), np.arange(1, K1 + 1)
    if aggregate in ("last", "every"):  # m_T for T = 0..K
        return curve, np.arange(K1)
    raise ValueError(f"unknown aggregate {aggregate!r}; allowed: {', '.join(hb.AGGREGATES)}")


def _early_target(bounds, st, metric, aggregate, stochastic):
    """An engine target that may stop the run early, or None.

    Only for an ``min`` bound (min_{t<T} m_t <= value(T)): value decreases to eps at T = iterations,
    so once m_t <= eps nothing later in [t, iterations] can violate it. The engine tracks one eps
    for all rows, absolute or relative to m_0: usable when every row has the same eps, or the same
    eps / m_0."""
    if stochastic or aggregate != "min" or metric not in engine.SCALAR_METRICS:
        return None
    eps = np.array([np.nan if b.eps is None else b.eps for b in bounds], dtype=float)
    if not np.all(np.isfinite(eps)) or not np.all(eps > 0):
        return None
    if np.allclose(eps, eps[0], rtol=1e-15, atol=0):
        return engine.Target(metric, float(eps.min()))
    m0 = np.array([getattr(s, metric) if metric != "loss" else s.f0 for s in st], dtype=float)
    if np.all(m0 > 0):
        rel = eps / m0
        if np.allclose(rel, rel[0], rtol=1e-12, atol=0):
            return engine.Target(metric, float(rel.min()), relative=True)
    return None


def check_bound(problem, optimizer, bound, *, lr=None, seeds=(0,), x0=None, steps=None,
                max_steps: int = MAX_STEPS, stochastic: bool = False, noise_seeds=range(32),
                margin: float = SIGMA_MARGIN, _cache=None) -> BoundCheck:
    r"""Run ``optimizer`` on ``problem`` at the bound's step size and compare with ``bound``.

    Args:
        problem: any :class:`heterosim.problems.Problem`.
        optimizer: a registered name or an :class:`~heterosim.optimizers.Optimizer`.
        bound: a :class:`~heterosim.bounds.Bound`, or ``bound(problem, start) -> Bound`` called
            for every start (a :class:`Start`: x0, f0, delta, subopt, grad_l2, grad_l1, dist).
        lr: the step size given to the engine; default the bound's ``lr`` (a float).
        seeds / x0: the starting points (the problem's ``initial_point(seed)``, or x0 (d,)/(B, d)).
        steps: how many steps to run; default ceil(bound iterations), capped at ``max_steps``
            (1000 when the bound has no iteration count).
        stochastic: use the stochastic oracle. One start (the first seed, or x0) is run once per
            ``noise_seeds``. A bound on an expectation (aggregate ``expected_mean``) is checked on
            the mean over the seeds: mean - ``margin`` standard errors <= value(T) at every T. Any
            other bound must hold on every seed's run.

    The check: T(eps) = first t with metric(x_t) <= eps is at most the bound's iterations, and
    the aggregate the bound names (min or mean over t < T, m_T, m_t at every t) is at most
    ``value(T)`` at every T of the run (plus ``VALUE_RTOL`` relative and ``VALUE_ATOL`` times the
    metric at x_0 for rounding). Returns a :class:`BoundCheck` (``final``: the metric at the last
    step of every run).
    """
    X0, sds = _start_points(problem, seeds, x0)
    if stochastic:
        X0, sds = X0[:1], (sds[:1] if sds else None)
        noise_seeds = [int(s) for s in noise_seeds]
        if len(noise_seeds) < 2:
            raise ValueError(f"a stochastic check needs at least 2 noise seeds (use >= 32); got {len(noise_seeds)}")
    st = starts(problem, X0, sds)
    bounds = [bound if isinstance(bound, hb.Bound) else bound(problem, s) for s in st]
    for b in bounds:
        if not isinstance(b, hb.Bound):
            raise ValueError(f"bound must be a heterosim.bounds.Bound or a function returning one; "
                             f"got {type(b).__name__}")
    b0 = bounds[0]
    metric, aggregate = b0.metric, b0.aggregate
    if any(b.metric != metric or b.aggregate != aggregate for b in bounds):
        raise ValueError("the bounds of different starts must share one metric and aggregate")
    expectation = aggregate == "expected_mean"
    if expectation and not stochastic:
        raise ValueError(f"bound {b0.name} bounds an expectation over the gradient noise: pass stochastic=True")
    if lr is None:
        if any(not isinstance(b.lr, float) for b in bounds):
            raise ValueError(f"bound {b0.name} prescribes lr = {b0.lr!r}, not one float: pass lr= (and an "
                             "optimizer that applies per-block steps, e.g. blockwise_gd)")
        lrs = np.array([b.lr for b in bounds])
    else:
        lrs = np.full(len(bounds), float(lr))
    its = np.array([b.iterations for b in bounds], dtype=float)
    finite = its[np.isfinite(its)]
    if steps is None:
        steps = int(min(max_steps, math.ceil(finite.max()))) if finite.size else min(max_steps, 1000)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    steps = int(steps)
    target = _early_target(bounds, st, metric, aggregate, stochastic)
    curve, _ = _measure(problem, optimizer, lrs, X0, steps, metric, stochastic=stochastic,
                        noise_seeds=noise_seeds if stochastic else (0,), cache=_cache, target=target)
    K = curve.shape[1] - 1
    # the engine freezes a run whose loss is non-finite or above f* + 1e6 (f_0 - f*) and records
    # NaN from then on: a run diverged at the prescribed step refutes the bound
    diverged = int(np.isnan(curve).any(1).sum())
    if stochastic and not expectation:                   # an almost-sure bound: every seed's run is a row
        bounds, its, lrs = bounds * curve.shape[0], np.repeat(its, curve.shape[0]), np.repeat(lrs, curve.shape[0])
    eps = np.array([np.nan if b.eps is None else b.eps for b in bounds])

    agg, Ts = _aggregate_curve(curve, aggregate)
    if expectation:
        mean, se = agg.mean(0), agg.std(0, ddof=1) / math.sqrt(agg.shape[0])
        judged = (mean - margin * se)[None, :]          # the one-sided lower confidence limit
        point = mean[None, :]
        m0 = np.abs(curve[:, :1]).mean(0, keepdims=True)
    else:
        judged, point, m0 = agg, agg, np.abs(curve[:, :1])
    values = np.array([[b.value(float(T)) for T in Ts] for b in bounds])
    ok = judged <= values * (1 + VALUE_RTOL) + VALUE_ATOL * m0
    value_ok = bool(np.all(ok | ~np.isfinite(values)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(values > 0, judged / values, np.where(judged <= 0, 0.0, np.inf))
    value_ratio = float(np.nanmax(ratios)) if ratios.size and not np.all(np.isnan(ratios)) else float("nan")

    # T(eps): the first t with metric <= eps; for an expectation the first T at which the seed mean
    # of (1/T) sum_{t<T} m_t is <= eps (a point estimate: the margin is applied by the value check)
    if np.all(np.isnan(eps)):
        measured = np.full(len(bounds), np.nan)
    elif expectation:
        j = _first_hit(point, eps)
        measured = np.array([Ts[int(v)] if np.isfinite(v) else np.inf for v in j], dtype=float)
    else:
        measured = _first_hit(curve, np.nan_to_num(eps, nan=-np.inf))
    T_ok, conclusive = True, True
    for i, b in enumerate(bounds):
        if math.isnan(b.iterations) or math.isnan(measured[i]):
            continue
        if not math.isfinite(measured[i]) and K < b.iterations - 1e-9:
            conclusive = False                          # capped before the bound's T: nothing refuted
            continue
        if not expectation:
            T_ok &= b.holds(measured[i])
    with np.errstate(divide="ignore", invalid="ignore"):
        tight = np.where(its > 0, measured / its, np.where(measured == 0, 0.0, np.inf))
    if np.any(np.isfinite(tight)):
        worst = int(np.nanargmax(np.where(np.isnan(tight), -np.inf, tight)))
        tightness = float(tight[worst])
    else:
        worst = int(np.nanargmax(np.nanmax(ratios, axis=1))) if ratios.size else 0
        tightness = value_ratio
    holds = bool(T_ok and value_ok and not diverged)
    msg = (f"{b0.name} ({metric}, {aggregate}) on {problem.name}: T(eps) = {measured[worst]:g} vs bound "
           f"{its[worst]:g}; max aggregate/value(T) = {value_ratio:.6g}"
           f"{'' if conclusive else ' (capped run: inconclusive)'}"
           f"{f'; {diverged} run(s) diverged (loss non-finite or above f* + 1e6 (f_0 - f*))' if diverged else ''}"
           f" -> {'holds' if holds else 'VIOLATED'}")
    return BoundCheck(name=b0.name, metric=metric, aggregate=aggregate, holds=holds, T_ok=bool(T_ok),
                      value_ok=value_ok, conclusive=conclusive, measured_T=measured, bound_T=its,
                      tightness=tightness, value_ratio=value_ratio, worst=worst, steps=K, lr=lrs, eps=eps,
                      n_seeds=len(noise_seeds) if stochastic else len(bounds), message=msg, final=curve[:, -1])


# ====================================================== check_step_inequality
@dataclass
class StepCheck:
    """A per-step certificate f(x_t) - f(x_{t+1}) >= guarantee_t checked at every step.

    ``min_ratio``: the smallest decrease / guarantee over steps whose guarantee is at least 10^6
    times the rounding allowance (>= 1 - 1e-6 when the certificate holds; 1 = tight). ``violations``: how many (run, step)
    pairs had decrease < guarantee - rounding allowance.
    """

    holds: bool
    min_ratio: float
    violations: int
    checked: int
    worst: tuple
    steps: int
    message: str


def check_step_inequality(problem, optimizer, lr, guarantee, *, seeds=(0,), x0=None, steps: int = 200,
                          rtol: float = STEP_RTOL, _cache=None) -> StepCheck:
    r"""Check a per-step certificate at every step of a run.

    ``guarantee(at, lr) -> (B, K)``: the guaranteed decrease f(x_t) - f(x_{t+1}) for t = 0..K-1
    from metrics measured at x_t: ``at[m]`` is the metric m at the start of each step, (B, K)
    ('blocks': (B, K, n) per-block gradient norms), and ``lr`` the (B, 1) step sizes. Available:
    loss, subopt, grad_l2, grad_l1, blocks (and dist with a known x*).

    Example (B1', GD at eta = 1/L_2)::

        L = problem.L_blocks.numpy()
        check_step_inequality(problem, "gd", 1 / problem.L2,
            lambda at, lr: hb.gd_step_decrease(g_block_sq=at["blocks"] ** 2, L_blocks=L, eta=lr[..., None]))
    """
    X0, _ = _start_points(problem, seeds, x0)
    lrs = np.broadcast_to(np.asarray(lr, dtype=float).reshape(-1), (X0.shape[0],)).copy()
    res = _run(problem, optimizer, lrs, X0, int(steps), cache=_cache)
    f = res.curves["loss"]
    at = {m: c[:, :-1] for m, c in res.curves.items()}
    dec = f[:, :-1] - f[:, 1:]
    guar = np.asarray(guarantee(at, lrs[:, None]), dtype=float)
    if guar.shape != dec.shape:
        raise ValueError(f"guarantee returned shape {guar.shape}; expected {dec.shape} (runs, steps)")
    tol = rtol * np.maximum(np.abs(f[:, :-1]), np.abs(f[:, 1:]))
    if "dist" in res.curves and "grad_l2" in res.curves:
        # rounding of the iterates themselves: x_t is stored to eps ||x_t||, which moves f by up to
        # ||g_t|| eps ||x_t|| (||x_t|| <= ||x_t - x*|| + ||x*||); it matters once the decrease is tiny
        xn = res.curves["dist"] + float(torch.linalg.vector_norm(problem.x_star))
        g = res.curves["grad_l2"]
        tol = tol + 16 * np.finfo(float).eps * (g[:, :-1] * xn[:, :-1] + g[:, 1:] * xn[:, 1:])
    bad = dec < guar - tol
    bad &= np.isfinite(dec)
    meaningful = guar > 1e6 * tol            # ratios only where rounding moves them by < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(meaningful, dec / np.where(meaningful, guar, 1.0), np.inf)
    min_ratio = float(ratio.min()) if ratio.size and np.isfinite(ratio).any() else float("nan")
    where = np.unravel_index(int(np.argmin(np.where(bad, dec - guar, np.inf) if bad.any() else ratio)), ratio.shape) \
        if ratio.size else (0, 0)
    holds = not bool(bad.any())
    n_bad = int(bad.sum())
    msg = (f"per-step certificate on {problem.name}: {n_bad} violation(s) in {dec.size} steps; "
           f"min decrease/guarantee = {min_ratio:.6g}")
    return StepCheck(holds=holds, min_ratio=min_ratio, violations=n_bad, checked=int(meaningful.sum()),
                     worst=(int(where[0]), int(where[1])), steps=int(dec.shape[1]), message=msg)


# ======================================================================= suite
@dataclass(frozen=True)
class Budget:
    """How much each check runs. ``T``: the iteration count every sublinear bound is given
    (eps is chosen so that the bound asks for T steps); ``seeds``: starting points per
    deterministic check; ``T_stoch``: S1's iteration count; ``noise_seeds``: runs per stochastic
    check (>= 32); ``K``: S2's batch and step count; ``rate_steps``: steps of the quadratic rate
    checks from random starts; ``exact_steps``: steps from eigenvector starts."""

    T: int = 800
    T_stoch: int = 250
    seeds: int = 3
    noise_seeds: int = 64
    K: int = 150
    rate_steps: int = 300
    exact_steps: int = 40

    def __post_init__(self):
        for k in ("T", "T_stoch", "seeds", "K", "rate_steps", "exact_steps"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"Budget.{k} must be an integer >= 1; got {getattr(self, k)!r}")
        if self.noise_seeds < 2:
            raise ValueError(f"Budget.noise_seeds must be >= 2 (use >= 32); got {self.noise_seeds}")


FULL = Budget()
QUICK = Budget(T=300, T_stoch=150, seeds=2, noise_seeds=32, K=100, rate_steps=150, exact_steps=25)


@dataclass
class Case:
    """A problem of the suite, with the tags that select its checks:
    ``deterministic`` (B1-B5), ``quadratic`` (Q1-Q5), ``stochastic`` (S1, S2),
    ``kunstner`` (closed forms), ``head`` (sign-update head growth); ``pair``: the name of
    a case with the same spectrum arranged differently (Q1's block-arrangement blindness)."""

    name: str
    problem: object
    tags: frozenset
    pair: str | None = None
    base: int = 0
    note: str = ""

    def seeds(self, budget: Budget) -> list[int]:
        """Seeds of the starting points: base, base + 1, ..."""
        return [self.base + i for i in range(budget.seeds)]


def _auto_tags(problem) -> frozenset:
    tags = set()
    if _is_quadratic(problem):
        tags |= {"deterministic", "quadratic"}
        if problem.sigma is not None:
            tags.add("stochastic")
        if problem.name == "kunstner_diag":
            tags.add("kunstner")
    elif hasattr(problem, "features"):
        tags |= {"deterministic", "head"}
    else:
        tags.add("deterministic")
    return frozenset(tags)


def _case(name, problem, tags=None, **kw):
    if _is_quadratic(problem):
        problem = centred(problem)
    return Case(name, problem, frozenset(tags) if tags is not None else _auto_tags(problem), **kw)


def default_suite(quick: bool = False, seed: int = 0) -> list[Case]:
    """The built-in problems. ``seed`` moves every rotation, spectrum draw and data set
    (so ``heterosim verify --seed 7`` checks instances nobody has seen).

    - zhang1 / zhang2: Zhang et al.'s heterogeneous / homogeneous block quadratics,
      kappa = 5000, 4 rotated blocks of 12; zhang3 / zhang4 (full suite): one shared
      spectrum arranged contiguously / interleaved (GD must not see the difference).
    - block_scale: 4 rotated blocks of 8 spread over 2 decades, equal loss per block (gamma 1/2);
      block_scale_axis (full): the same, axis-aligned; hessian_only (full).
    - noisy: 3 rotated blocks of 4 (scales 1, 10, 100, within-block kappa <= 5) with Gaussian
      gradient noise of std 1 per coordinate (S1, S2).
    - kunstner: Kunstner's diagonal model, 16 classes with Zipf frequencies.
    - softmax: a 6-class linear head on non-centred features (mean 1), n = 128, p = 8.
    """
    from heterosim.problems import make
    from heterosim.problems.quadratic import BlockQuadratic
    s = int(seed)
    base = 1000 * s                                       # seeds of the starting points

    def case(name, problem, tags=None, **kw):
        return _case(name, problem, tags, base=base, **kw)

    cases = [
        case("zhang1", make("zhang_case", case=1, n_blocks=4, block_size=12, seed=s)),
        case("zhang2", make("zhang_case", case=2, n_blocks=4, block_size=12, seed=s)),
        case("block_scale", make("block_scale", spread=2.0, gamma=0.5, n_blocks=4, block_size=8, seed=s)),
    ]
    if not quick:
        cases += [
            case("zhang3", make("zhang_case", case=3, n_blocks=4, block_size=12, seed=s), pair="zhang4"),
            case("zhang4", make("zhang_case", case=4, n_blocks=4, block_size=12, seed=s), tags={"quadratic"}),
            case("block_scale_axis", make("block_scale", spread=2.0, gamma=0.5, n_blocks=4, block_size=8,
                                          rotate=False, seed=s)),
            case("hessian_only", make("hessian_only", spread=2.0, n_blocks=4, block_size=8, seed=s)),
        ]
    g = torch.Generator().manual_seed(s + 5)
    spectra = [float(10.0 ** b) * torch.exp(torch.rand(4, generator=g, dtype=torch.float64) * math.log(5.0))
               for b in range(3)]
    # start close enough (init_scale 0.3) that the noise term of S1 and S2 is not negligible
    noisy = BlockQuadratic.from_spectra(spectra, rotate=True, seed=s, sigma=1.0, init_scale=0.3, name="noisy")
    cases += [
        case("noisy", noisy, tags={"stochastic"}),
        case("kunstner", make("kunstner_diag", n_classes=16, h=4, alpha=1.0), tags={"kunstner"}),
        case("softmax", make("softmax", n=128, p=8, C=6, feature_mean=1.0, seed=s)),
    ]
    return cases


def _as_cases(suite, quick, seed) -> list[Case]:
    if isinstance(suite, str):
        if suite != "default":
            raise ValueError(f"unknown suite {suite!r}; use 'default' or a list of problems / Case objects")
        return default_suite(quick=quick, seed=seed)
    out = []
    for i, item in enumerate(suite):
        if isinstance(item, Case):
            out.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            out.append(_case(str(item[0]), item[1]))
        else:
            out.append(_case(f"{getattr(item, 'name', 'problem')}{i}", item))
    if not out:
        raise ValueError("the suite is empty")
    return out


# ====================================================================== rows
def _num(x):
    return float(x) if x is not None else float("nan")


def _row(bound, case, *, optimizer, step, lr, metric, quantity, measured, predicted, sense, passed,
         tol=0.0, n=1, detail=""):
    measured, predicted = _num(measured), _num(predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a predicted value at rounding level (a rate of 0, an error of 0) has no meaningful ratio
        tight = measured / predicted if abs(predicted) > 1e-12 and math.isfinite(predicted) else float("nan")
    return {"bound": bound, "problem": case.name, "optimizer": optimizer, "step": step, "lr": _num(lr),
            "metric": metric, "quantity": quantity, "measured": measured, "predicted": predicted,
            "tightness": float(tight), "sense": sense, "tol": float(tol), "pass": bool(passed), "n": int(n),
            "detail": detail}


def _iteration_row(name, case, chk: BoundCheck, *, optimizer, step, detail=""):
    i = chk.worst
    extra = f"max aggregate/value(T) over the run {chk.value_ratio:.3g}"
    if not chk.conclusive:
        extra += "; capped run (inconclusive)"
    return _row(name, case, optimizer=optimizer, step=step, lr=chk.lr[min(i, len(chk.lr) - 1)],
                metric=chk.metric, quantity="T(eps)", measured=chk.measured_T[i], predicted=chk.bound_T[i],
                sense="<=", passed=chk.holds, n=chk.n_seeds, detail=(detail + "; " if detail else "") + extra)


def _step_row(name, case, chk: StepCheck, *, optimizer, step, lr, n, detail=""):
    return _row(name, case, optimizer=optimizer, step=step, lr=lr, metric="loss",
                quantity="min decrease / guarantee", measured=chk.min_ratio, predicted=1.0, sense=">=",
                passed=chk.holds, tol=STEP_RTOL, n=n,
                detail=(detail + "; " if detail else "") + f"{chk.violations} violations in {chk.steps} steps x {n} runs")


# ============================================================ deterministic B1-B5
def _budget_bound(make_bound, T):
    return make_bound(eps_for_budget(make_bound, T))


def check_gd(case, budget, cache=None):
    """B1 (T(eps) for ||g||_2), B1' (per step, eta = 1/L_2), B5 (GD in the l_1 metric) and the
    B5 ratio L_inf / (d L_2) <= rho_H, from one GD run per start."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    L = p.L_blocks.detach().cpu().numpy()
    rows = []
    b1 = check_bound(p, "gd", lambda q, s: _budget_bound(
        lambda e: hb.gd_nonconvex(L2=q.L2, delta=s.delta, eps=e), T), seeds=seeds, _cache=cache)
    rows.append(_iteration_row("B1", case, b1, optimizer="gd", step="1/L2"))
    st = check_step_inequality(p, "gd", 1.0 / p.L2, lambda at, lr: hb.gd_step_decrease(
        g_block_sq=at["blocks"] ** 2, L_blocks=L, eta=lr[..., None]), seeds=seeds, steps=b1.steps, _cache=cache)
    rows.append(_step_row("B1'", case, st, optimizer="gd", step="1/L2", lr=1.0 / p.L2, n=len(seeds),
                          detail="f_t - f_t+1 >= eta sum_b (1 - eta L_b/2) ||g_t,b||^2"))
    b5 = check_bound(p, "gd", lambda q, s: _budget_bound(
        lambda e: hb.gd_nonconvex_l1(L2=q.L2, delta=s.delta, eps=e, d=q.d), T), seeds=seeds, _cache=cache)
    rows.append(_iteration_row("B5", case, b5, optimizer="gd", step="1/L2", detail="GD certified in ||g||_1"))
    ratio = hb.sign_vs_gd_ratio(Linf=p.Linf, d=p.d, L2=p.L2)
    rho = hb.rho_H(p.L_blocks, p.blocks.sizes, p.L2)
    rows.append(_row("B5-ratio", case, optimizer="-", step="-", lr=None, metric="constants",
                     quantity="Linf/(d L2) vs rho_H", measured=ratio, predicted=rho, sense="<=",
                     passed=ratio <= rho * (1 + 1e-12), detail=f"Linf kind {p.Linf_kind}"))
    return rows


def check_signgd(case, budget, cache=None):
    """B2: SignGD at eta = eps / L_inf (T(eps) for ||g||_1, running mean <= Delta/(eta T) +
    eta L_inf/2 at every T) and its per-step descent inequality."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    b2 = check_bound(p, "signsgd", lambda q, s: _budget_bound(
        lambda e: hb.signgd_nonconvex(Linf=q.Linf, delta=s.delta, eps=e), T), seeds=seeds, _cache=cache)
    rows = [_iteration_row("B2", case, b2, optimizer="signsgd", step="eps/Linf")]
    st = check_step_inequality(p, "signsgd", b2.lr, lambda at, lr: hb.signgd_step_decrease(
        g_l1=at["grad_l1"], Linf=p.Linf, eta=lr), seeds=seeds, steps=b2.steps, _cache=cache)
    rows.append(_step_row("B2-step", case, st, optimizer="signsgd", step="eps/Linf", lr=float(b2.lr.max()),
                          n=len(seeds), detail="f_t - f_t+1 >= eta ||g_t||_1 - eta^2 Linf/2"))
    return rows


def check_steepest(case, budget, cache=None):
    """B3: steepest descent in l_inf (step ||g||_1/L_inf along -sign g): T(eps) for ||g||_1 and
    the per-step decrease ||g_t||_1^2 / (2 L_inf)."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    opt = make_optimizer("steepest_linf", Linf=1.0)     # step = lr ||g||_1 sign(g), lr = 1/L_inf
    b3 = check_bound(p, opt, lambda q, s: _budget_bound(
        lambda e: hb.steepest_linf_nonconvex(Linf=q.Linf, delta=s.delta, eps=e), T), seeds=seeds, _cache=cache)
    rows = [_iteration_row("B3", case, b3, optimizer="steepest_linf", step="||g||_1/Linf")]
    st = check_step_inequality(p, opt, 1.0 / p.Linf, lambda at, lr: hb.steepest_linf_decrease(
        g_l1=at["grad_l1"], Linf=p.Linf), seeds=seeds, steps=b3.steps, _cache=cache)
    rows.append(_step_row("B3-step", case, st, optimizer="steepest_linf", step="||g||_1/Linf",
                          lr=1.0 / p.Linf, n=len(seeds), detail="f_t - f_t+1 >= ||g_t||_1^2 / (2 Linf)"))
    return rows


def check_blockwise(case, budget, cache=None):
    """B4: block-wise steps eta_b = 1/L_b: T(eps) for (sum_b ||g_b||^2/L_b)^{1/2} and the
    per-step decrease sum_b ||g_b||^2 / (2 L_b)."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    opt = for_problem("blockwise_gd", p)
    L = p.L_blocks.detach().cpu().numpy()
    b4 = check_bound(p, opt, lambda q, s: _budget_bound(
        lambda e: hb.blockwise_gd_nonconvex(L_blocks=L, delta=s.delta, eps=e), T), lr=1.0, seeds=seeds,
        _cache=cache)
    rows = [_iteration_row("B4", case, b4, optimizer="blockwise_gd", step="1/L_b per block")]
    st = check_step_inequality(p, opt, 1.0, lambda at, lr: hb.blockwise_gd_step_decrease(
        g_block_sq=at["blocks"] ** 2, L_blocks=L), seeds=seeds, steps=b4.steps, _cache=cache)
    rows.append(_step_row("B4-step", case, st, optimizer="blockwise_gd", step="1/L_b per block", lr=1.0,
                          n=len(seeds), detail="f_t - f_t+1 >= sum_b ||g_t,b||^2 / (2 L_b)"))
    return rows


# ================================================================= S1, S2
def _with_sigma(problem, sigma):
    """The same quadratic with another per-block noise level (an exact minibatch: the mean of K
    independent N(0, sigma^2) draws is N(0, sigma^2 / K))."""
    out = copy.copy(problem)
    out.sigma = torch.as_tensor(sigma, dtype=torch.float64)
    out.has_oracle = True
    return out


def _mean_se(x):
    return x.mean(0), x.std(0, ddof=1) / math.sqrt(x.shape[0])


def check_sgd_stochastic(case, budget, cache=None, margin=SIGMA_MARGIN):
    """S1 (Ghadimi & Lan): SGD with E||noise||^2 = sigma^2 at the bound's eta: the mean over the
    noise seeds of (1/T) sum_{t<T} ||g_t||^2, less ``margin`` standard errors, is at most
    2 Delta/(eta T) + eta L_2 sigma^2 at every T of the run."""
    p = case.problem
    X0 = p.initial_points(case.seeds(budget)[:1])
    s0 = starts(p, X0)[0]
    b = _budget_bound(lambda e: hb.sgd_nonconvex(L2=p.L2, delta=s0.delta, sigma2=p.sigma2, eps=e), budget.T_stoch)
    steps = int(math.ceil(b.iterations))
    seeds = list(range(budget.noise_seeds))
    res = _run(p, "sgd", [b.lr], X0, steps, stochastic=True, noise_seeds=seeds, cache=cache)
    g2 = res.curves["grad_l2"] ** 2                       # (S, K+1) true gradients
    run_mean = np.cumsum(g2, axis=1) / np.arange(1, g2.shape[1] + 1)   # (1/T) sum_{t<T}, T = 1..K+1
    m, se = _mean_se(run_mean)
    Ts = np.arange(1, g2.shape[1] + 1)
    value2 = np.array([b.value(float(T)) ** 2 for T in Ts])
    ok = bool(np.all(m - margin * se <= value2 * (1 + VALUE_RTOL)))
    hit = np.nonzero(m <= b.eps ** 2)[0]
    T_meas = float(Ts[hit[0]]) if hit.size else math.inf
    return [_row("S1", case, optimizer="sgd", step="min(1/L2, eps^2/(2 L2 sigma^2))", lr=b.lr,
                 metric="mean_t E||g_t||^2", quantity="T(eps) of the seed mean", measured=T_meas,
                 predicted=b.iterations, sense="<=", passed=ok, n=len(seeds),
                 detail=(f"mean - {margin:g} SE <= 2 Delta/(eta T) + eta L2 sigma^2 at every T <= {steps}; "
                         f"max (mean/bound) {float(np.max(m / value2)):.3g}; "
                         f"at T: mean {float(m[-1]):.4g} +- {float(se[-1]):.2g} vs eps^2 {b.eps ** 2:.4g}"))]


def check_signsgd_stochastic(case, budget, cache=None, margin=SIGMA_MARGIN):
    """S2 (Bernstein et al. 2018, Thm 1): signSGD with batch K and step 1/sqrt(||L||_1 K) for K
    steps: mean over seeds of (1/K) sum_k ||g_k||_1, less ``margin`` SE, <= sqrt(A / K).
    L_vec is the SDP certificate y (diag(y) >= H, sum(y) = the SDP bound on L_inf), the
    per-coordinate noise sigma_i the problem's; the batch of K is drawn exactly as one
    N(0, sigma_i^2 / K) draw."""
    from heterosim.precondition import linf_sdp
    p = case.problem
    K = budget.K
    H = p.hessian().numpy()
    _, y = linf_sdp(H, return_certificate=True)
    sigma_vec = p.blocks.expand(p.sigma).numpy()
    X0 = p.initial_points(case.seeds(budget)[:1])
    s0 = starts(p, X0)[0]
    b = hb.signsgd_bernstein(L_vec=y, sigma_vec=sigma_vec, delta=s0.delta, K=K)
    batched = _with_sigma(p, p.sigma / math.sqrt(K))
    seeds = list(range(budget.noise_seeds))
    res = _run(batched, "signsgd", [b.lr], X0, K, stochastic=True, noise_seeds=seeds, cache=cache)
    l1 = res.curves["grad_l1"][:, :K]                     # ||g_k||_1, k = 0..K-1
    per_seed = l1.mean(1)
    m, se = float(per_seed.mean()), float(per_seed.std(ddof=1) / math.sqrt(len(seeds)))
    ok = m - margin * se <= b.eps * (1 + VALUE_RTOL)
    return [_row("S2", case, optimizer="signsgd", step="1/sqrt(||L||_1 K), batch K", lr=b.lr,
                 metric="E mean_k ||g_k||_1", quantity=f"value at K = {K}", measured=m, predicted=b.eps,
                 sense="<=", passed=ok, n=len(seeds),
                 detail=f"mean {m:.4g} +- {se:.2g} (SE); margin {margin:g} SE; ||L||_1 = {float(y.sum()):.4g}")]


# ===================================================== Q1-Q5: quadratic rates
#: Absolute floor on a measured per-step ratio: a contraction factor near 0 is measured from a
#: difference of nearly equal numbers, good to ~1e-16 absolute, not relative.
RATE_ATOL = 1e-14


def _ratios(curve):
    """Per-step ratios m_{t+1}/m_t (B, K); nan once m_t has fallen below 1e-150 m_0 (where the
    metric is rounding, not the mode being measured)."""
    a, b = curve[:, :-1], curve[:, 1:]
    live = a > 1e-150 * curve[:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(live, b / np.where(live, a, 1.0), np.nan)


def _eig_start(p, index):
    """x* + the unit eigenvector of H holding spectrum[index]."""
    return (p.x_star + p.eigenbasis()[:, index]).unsqueeze(0)


def _rate_from(p, opt, lr, x0, steps, metric, cache):
    res = _run(p, opt, [lr], x0, steps, cache=cache)
    return _ratios(res.curves[metric])[0]


def _exact(ratios, rate, rtol=RATE_RTOL):
    """(ok, the measured ratio farthest from ``rate``, its relative deviation): ok when every
    ratio is within rtol * rate + RATE_ATOL of the rate."""
    r = np.asarray(ratios, dtype=float).reshape(-1)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return False, float("nan"), float("nan")
    err = np.abs(r - rate)
    i = int(np.argmax(err))
    return bool(err[i] <= rtol * rate + RATE_ATOL), float(r[i]), float(err[i] / rate) if rate > 0 else float(err[i])


def check_gd_quadratic(case, budget, cache=None):
    """Q1 at eta = 1/L (f - f*, rate (1 - 1/kappa)^2) and eta = 2/(L+mu) (||x - x*||, rate
    (kappa-1)/(kappa+1)): from the mu-eigenvector every per-step ratio equals the rate
    (to RATE_RTOL); from random starts the bound holds at every step."""
    p = case.problem
    rows = []
    i_mu = int(torch.argmin(p.spectrum))
    for step in ("1/L", "2/(L+mu)"):
        b = hb.gd_quadratic_rate(L=p.L2, mu=p.mu, step=step)
        rat = _rate_from(p, "gd", b.lr, _eig_start(p, i_mu), budget.exact_steps, b.metric, cache)
        exact, worst, dev = _exact(rat, b.rate)
        chk = check_bound(p, "gd", lambda q, s: hb.gd_quadratic_rate(
            L=q.L2, mu=q.mu, step=step, initial=getattr(s, b.metric)), seeds=case.seeds(budget),
            steps=budget.rate_steps, _cache=cache)
        rows.append(_row(f"Q1 {step}", case, optimizer="gd", step=step, lr=b.lr, metric=b.metric,
                         quantity="per-step contraction", measured=worst, predicted=b.rate,
                         sense="==", tol=RATE_RTOL, passed=exact and chk.holds, n=len(case.seeds(budget)),
                         detail=(f"mu-eigenvector start: max |ratio/rate - 1| = {dev:.2g}; random starts: "
                                 f"max m_t/(r^t m_0) = {chk.value_ratio:.3g} over {chk.steps} steps")))
    return rows


def check_gd_blind(case, other, budget, cache=None):
    """Q1 corollary: GD's loss curve depends only on the spectrum and the initial eigen-
    coordinates, never on how the eigenvalues are arranged into blocks (Zhang cases 3 and 4)."""
    p, q = case.problem, other.problem
    if not torch.allclose(torch.sort(p.spectrum).values, torch.sort(q.spectrum).values, rtol=1e-14, atol=0):
        raise ValueError(f"{case.name} and {other.name} must share one spectrum")
    seeds = case.seeds(budget)
    f1 = _run(p, "gd", [1.0 / p.L2], p.initial_points(seeds), budget.rate_steps, cache=cache).curves["subopt"]
    f2 = _run(q, "gd", [1.0 / q.L2], q.initial_points(seeds), budget.rate_steps, cache=cache).curves["subopt"]
    dev = float(np.max(np.abs(f1 - f2) / np.maximum(np.abs(f1), 1e-300)))
    return [_row("Q1-blind", case, optimizer="gd", step="1/L", lr=1.0 / p.L2, metric="subopt",
                 quantity=f"max rel. diff vs {other.name}", measured=dev, predicted=0.0, sense="==", tol=1e-10,
                 passed=dev <= 1e-10, n=len(seeds), detail="same spectrum, different block arrangement")]


def check_blockwise_quadratic(case, budget, cache=None):
    """Q2: eta_b = 1/L_b: f - f* contracts by max_b (1 - 1/kappa_b)^2, exactly from the
    mu_b-eigenvector of the block with the largest kappa_b; the bound holds from random starts."""
    p = case.problem
    opt = for_problem("blockwise_gd", p)
    L, mu = p.L_blocks.numpy(), p.mu_blocks.numpy()
    b = hb.blockwise_gd_quadratic_rate(L_blocks=L, mu_blocks=mu)
    bw = int(np.argmax(L / mu))
    offset = int(sum(p.blocks.sizes[:bw]))
    i = offset + int(torch.argmin(p.block_spectra[bw]))
    rat = _rate_from(p, opt, 1.0, _eig_start(p, i), budget.exact_steps, "subopt", cache)
    exact, worst, dev = _exact(rat, b.rate)
    chk = check_bound(p, opt, lambda q, s: hb.blockwise_gd_quadratic_rate(L_blocks=L, mu_blocks=mu,
                                                                          initial=s.subopt),
                      lr=1.0, seeds=case.seeds(budget), steps=budget.rate_steps, _cache=cache)
    return [_row("Q2", case, optimizer="blockwise_gd", step="1/L_b per block", lr=1.0, metric="subopt",
                 quantity="per-step contraction", measured=worst, predicted=b.rate, sense="==",
                 tol=RATE_RTOL, passed=exact and chk.holds, n=len(case.seeds(budget)),
                 detail=(f"max_b kappa_b = {float(np.max(L / mu)):.4g} vs kappa = {p.kappa:.4g}; eigenvector start: "
                         f"max |ratio/rate - 1| = {dev:.2g}; random starts: max m_t/(r^t m_0) = {chk.value_ratio:.3g}"))]


def _modal_rate(p, P, x0, x1):
    """The largest per-step factor |c_1,i / c_0,i| of the eigen-coordinates c = V^T P^{-1/2}(x - x*)
    of M = P^{1/2} H P^{1/2}, over modes present at x0 (|c_0,i| >= 1e-6 max |c_0|)."""
    H = p.hessian()
    s = P.sqrt()
    lam, V = torch.linalg.eigh(s[:, None] * H * s[None, :])
    c0 = V.T @ ((x0 - p.x_star) / s)
    c1 = V.T @ ((x1 - p.x_star) / s)
    present = c0.abs() >= 1e-6 * c0.abs().max()
    return float((c1[present] / c0[present]).abs().max())


def _precond_run(p, P, x0, cache, steps=1):
    """adam_fixed_precond (beta1 = 0, beta2 = 1, v_0 = g_0^2) from x0 whose first gradient has
    |g_0| = 1/P, at the best step 2/(lambda_min + lambda_max) of M = P^{1/2} H P^{1/2};
    returns (the Q3 bound, measured modal contraction, the run's subopt curve)."""
    b = hb.fixed_diagonal_precond_rate(H=p.hessian(), p=P, metric="dist_P")
    res = _run(p, "adam_fixed_precond", [b.lr], x0.unsqueeze(0), steps, cache=cache)
    x1 = _run(p, "adam_fixed_precond", [b.lr], x0.unsqueeze(0), 1, cache=cache).x_final[0]
    return b, _modal_rate(p, P, x0, x1), res


def _start_with_grad(p, target_abs, seed):
    """x0 = x* + H^{-1}(target_abs * s) for random signs s: the first gradient is target_abs * s."""
    g = torch.Generator().manual_seed(int(seed) + 4242)
    sgn = torch.where(torch.rand(p.d, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0).to(torch.float64)
    return p.x_star + torch.linalg.solve(p.hessian(), target_abs * sgn)


def check_precond_quadratic(case, budget, cache=None):
    """Q3: Adam with beta1 = 0, beta2 = 1, v_0 = g_0^2 is GD preconditioned by P = diag(1/|g_0|).
    At eta = 2/(lambda_min + lambda_max) of M = P^{1/2} H P^{1/2} the predicted rate
    r = (kappa_P - 1)/(kappa_P + 1) (r^2 on f - f*) equals the measured contraction of the
    worst eigen-coordinate of M (to RATE_RTOL); every per-step ratio of f - f* stays <= r^2
    (f_t is a positive combination of the modes' r_i^(2t), so its ratios rise towards r^2) and
    f_t <= r^(2t) f_0 at every step. Also Zhang et al.'s GD lower bound (Q3-gd-lower)."""
    p = case.problem
    seeds = case.seeds(budget)
    worst = None
    ok = True
    max_loss_ratio, max_value_ratio = 0.0, 0.0
    for x0 in p.initial_points(seeds):
        P = 1.0 / p.grad(x0.unsqueeze(0))[0].abs()
        b, r_meas, res = _precond_run(p, P, x0, cache, steps=budget.rate_steps)
        r2 = b.rate ** 2
        exact, _, dev = _exact([r_meas], b.rate)
        f = res.curves["subopt"][0]
        lr_ = float(np.nanmax(_ratios(res.curves["subopt"])[0]))
        vr = float(np.max(f / (f[0] * (r2 ** np.arange(len(f))) * (1 + VALUE_RTOL) + 1e-26 * f[0])))
        max_loss_ratio = max(max_loss_ratio, lr_ / r2 if r2 > 0 else 0.0)
        max_value_ratio = max(max_value_ratio, vr)
        ok &= exact and lr_ <= r2 * (1 + VALUE_RTOL) + RATE_ATOL and vr <= 1.0
        if worst is None or dev > worst[0]:
            worst = (dev, r_meas ** 2, r2, b.constants_dict["kappa_P"], b.lr)
    dev, measured, predicted, kP, lr_w = worst
    rows = [_row("Q3", case, optimizer="adam_fixed_precond", step="2/(lmin+lmax) of P^1/2 H P^1/2",
                 lr=lr_w, metric="subopt", quantity="per-step contraction (worst mode)",
                 measured=measured, predicted=predicted, sense="==", tol=RATE_RTOL, passed=ok, n=len(seeds),
                 detail=(f"kappa_P = {kP:.4g} vs kappa = {p.kappa:.4g}; max |modal/r - 1| = {dev:.2g}; "
                         f"max loss ratio / r^2 = {max_loss_ratio:.6f}; max f_t/(r^2t f_0) = {max_value_ratio:.3g}"))]
    # Zhang et al.'s GD lower bound: from the worse extreme eigenvector, any step contracts f - f*
    # by no less than (1 - 2/(kappa+1))^2 per step
    low = hb.gd_lower_bound_rate(kappa=p.kappa)
    i_mu, i_L = int(torch.argmin(p.spectrum)), int(torch.argmax(p.spectrum))
    meas = []
    for eta in (1.0 / p.L2, 2.0 / (p.L2 + p.mu), 1.5 / p.L2, 0.5 / p.L2):
        worse = i_mu if abs(1 - eta * p.mu) >= abs(1 - eta * p.L2) else i_L
        rat = _rate_from(p, "gd", eta, _eig_start(p, worse), budget.exact_steps, "subopt", cache)
        meas.append(float(np.nanmin(rat)))
    m = min(meas)
    rows.append(_row("Q3-gd-lower", case, optimizer="gd", step="1/L, 2/(L+mu), 1.5/L, 0.5/L", lr=None,
                     metric="subopt", quantity="min per-step contraction", measured=m, predicted=low.rate,
                     sense=">=", tol=RATE_RTOL, passed=m >= low.rate * (1 - RATE_RTOL) - RATE_ATOL, n=4,
                     detail="worst-case start (the worse extreme eigenvector) for each step"))
    return rows


def check_optimal_precond(case, budget, cache=None):
    """Q4: kappa* of the optimal diagonal preconditioner (SDP, certified by eigenvalues) is a
    lower envelope: the measured contraction of GD preconditioned by Adam's P = 1/|g_0|, by
    Jacobi (diag H) and by the identity, each at its own best step, is >= the predicted
    ((kappa*-1)/(kappa*+1))^2, and with D* itself (at eta = 2/(1 + kappa*)) it is attained."""
    from heterosim.precondition import optimal_diagonal_preconditioner
    p = case.problem
    H = p.hessian()
    opt = optimal_diagonal_preconditioner(H.numpy(), blocks=p.blocks)
    q4 = hb.optimal_diagonal_precond_rate(kappa_star=opt.kappa_star, metric="dist_P")
    x_adam = p.initial_points(case.seeds(budget)[:1])[0]
    cands = {
        "adam": (1.0 / p.grad(x_adam.unsqueeze(0))[0].abs(), x_adam),
        "jacobi": (1.0 / torch.diagonal(H), None),
        "identity": (torch.ones(p.d, dtype=torch.float64), None),
    }
    measured = {}
    for name, (P, x0) in cands.items():
        x0 = _start_with_grad(p, 1.0 / P, 0) if x0 is None else x0
        _, r_meas, _ = _precond_run(p, P, x0, cache)
        measured[name] = r_meas ** 2
    best = min(measured, key=measured.get)
    r_star2 = q4.rate ** 2
    rows = [_row("Q4", case, optimizer="adam_fixed_precond", step="2/(lmin+lmax) of each P", lr=None,
                 metric="subopt", quantity=f"best diagonal contraction ({best})", measured=measured[best],
                 predicted=r_star2, sense=">=", tol=RATE_RTOL,
                 passed=all(v >= r_star2 * (1 - RATE_RTOL) - RATE_ATOL for v in measured.values()), n=len(measured),
                 detail=(f"kappa* = {opt.kappa_star:.4g} (certificate ok: {opt.verify(H.numpy())}) vs kappa = "
                         f"{p.kappa:.4g}; " + ", ".join(f"{k} {v:.6f}" for k, v in measured.items())))]
    D = torch.as_tensor(opt.D, dtype=torch.float64)
    x0 = _start_with_grad(p, D, 1)
    res = _run(p, "adam_fixed_precond", [q4.lr], x0.unsqueeze(0), 1, cache=cache)
    r_att = _modal_rate(p, 1.0 / D, x0, res.x_final[0])
    exact, _, dev = _exact([r_att], q4.rate)
    rows.append(_row("Q4-attained", case, optimizer="adam_fixed_precond", step="2/(1+kappa*), P = D*^-1",
                     lr=q4.lr, metric="subopt", quantity="per-step contraction (worst mode)",
                     measured=r_att ** 2, predicted=r_star2, sense="==", tol=RATE_RTOL, passed=exact,
                     n=1, detail=(f"|modal/r* - 1| = {dev:.2g}; kappa* is certified from D* by eigenvalues, "
                                  "so the rate of D* is r* exactly")))
    return rows


def check_heavy_ball(case, budget, cache=None):
    """Q5: heavy ball (sgd_momentum) with eta = 4/(sqrt L + sqrt mu)^2, beta = r^2. At the ends
    of the spectrum the 2x2 recursion has a double root, so from the mu-eigenvector
    ||x_t - x*|| = (1 + 2t/(sqrt(kappa)+1)) r^t ||x_0 - x*|| exactly, and from the
    L-eigenvector (1 + 2 sqrt(kappa) t/(sqrt(kappa)+1)) r^t (torch's convention: the first step
    is plain GD): the per-step ratio with the polynomial factor divided out equals r to
    RATE_RTOL. For r >= 0.5 (kappa >= 9) the asymptotic rate ||x_t - x*||^{1/t} -> r is also
    checked from random starts, on the envelope (window maxima) between T/2 and T with
    r^T = 1e-30, within [0.99 r, 1.01 r 2^{2/T}] (the factor (1 + ct) contributes at most
    2^{2/T})."""
    p = case.problem
    b = hb.heavy_ball_quadratic_rate(L=p.L2, mu=p.mu)
    opt = make_optimizer("sgd_momentum", momentum=b.momentum)
    sk = math.sqrt(p.kappa)
    worst, exact_ok = (0.0, b.rate), True
    for idx, c in ((int(torch.argmin(p.spectrum)), 2.0 / (sk + 1.0)),
                   (int(torch.argmax(p.spectrum)), 2.0 * sk / (sk + 1.0))):
        res = _run(p, opt, [b.lr], _eig_start(p, idx), budget.exact_steps, cache=cache)
        dist = res.curves["dist"]
        corrected = dist / (1.0 + c * np.arange(dist.shape[1]))
        ok, r_w, dev = _exact(_ratios(corrected), b.rate)
        exact_ok &= ok
        if not math.isnan(dev) and dev >= worst[0]:
            worst = (dev, r_w)
    gd_best = hb.gd_quadratic_rate(L=p.L2, mu=p.mu, step="2/(L+mu)").rate
    if b.rate < 0.5:           # kappa < 9: the asymptote is reached in a few steps, the exact check covers it
        asym_ok, env = True, "r < 0.5: no separate asymptotic check"
    else:
        T = int(min(4000, math.ceil(30 * math.log(10) / -math.log(b.rate))))     # r^T = 1e-30
        res = _run(p, opt, [b.lr], p.initial_points(case.seeds(budget)), T, cache=cache)
        dist = res.curves["dist"]
        w = max(10, T // 20)
        early, late = dist[:, T // 2 - w:T // 2 + 1].max(1), dist[:, T - w:].max(1)
        est = (late / early) ** (1.0 / (T - T // 2))
        hi = b.rate * 2 ** (2.0 / (T - T // 2)) * 1.01
        asym_ok = bool(np.all((est >= 0.99 * b.rate) & (est <= hi)))
        env = (f"random starts over {T} steps: ||x_t - x*||^(1/t) envelope "
               f"{float(est.min()):.6f}..{float(est.max()):.6f}")
    return [_row("Q5", case, optimizer="sgd_momentum", step="4/(sqrt L+sqrt mu)^2, beta = r^2", lr=b.lr,
                 metric="dist", quantity="per-step contraction", measured=worst[1], predicted=b.rate,
                 sense="==", tol=RATE_RTOL, passed=exact_ok and asym_ok, n=len(case.seeds(budget)),
                 detail=(f"extreme-eigenvector starts: max |ratio/r - 1| = {worst[0]:.2g}; {env} vs r "
                         f"{b.rate:.6f} (GD's best {gd_best:.6f})"))]


# ================================================================ Kunstner, head
def check_kunstner(case, budget, cache=None):
    """Kunstner's model f(W) = sum_k pi_k 1/2 ||w_k||^2: GD's iterate equals the closed form
    (1 - eta pi_k)^t w_k(0), and class k reaches ||g_k|| <= eps ||g_k(0)|| at exactly
    ceil(log eps / log|1 - eta pi_k|); sign descent's |w(t)| equals its closed form (independent of pi)."""
    p = case.problem
    C, h = p.knobs["n_classes"], p.knobs["h"]
    pi = p.L_blocks.numpy()
    eta = 1.0 / p.L2
    eps = 1e-2
    T = int(math.ceil(float(np.max(hb.kunstner_gd_iterations(pi=pi, eta=eta, eps=eps))))) + 2
    x0 = p.initial_points(case.seeds(budget)[:1])
    res = _run(p, "gd", [eta], x0, T, cache=cache)
    pred = hb.kunstner_gd(pi=pi, eta=eta, t=T, w0=x0[0].reshape(C, h).numpy())
    err = float(np.max(np.abs(res.x_final[0].reshape(C, h).numpy() - pred)) / np.max(np.abs(x0.numpy())))
    blocks = res.curves["blocks"][0]                      # (T+1, C): ||g_k(t)|| = pi_k ||w_k(t)||
    ratio = blocks / blocks[0]
    T_meas = np.array([np.argmax(ratio[:, k] <= eps) if (ratio[:, k] <= eps).any() else np.inf for k in range(C)])
    T_pred = np.ceil(hb.kunstner_gd_iterations(pi=pi, eta=eta, eps=eps))
    steps_ok = bool(np.all(np.abs(T_meas - T_pred) <= 1))
    rows = [_row("Kunstner-GD", case, optimizer="gd", step="1/L (= 1/pi_1)", lr=eta, metric="||g_k|| / ||g_k(0)||",
                 quantity="T(eps) of the rarest class", measured=T_meas[-1], predicted=T_pred[-1], sense="==",
                 tol=1.0, passed=steps_ok and err <= 1e-12, n=C,
                 detail=(f"per-class T within 1 step for all {C} classes: {steps_ok}; x_T vs closed form "
                         f"max rel. err {err:.2g}; T_rare/T_freq = {T_meas[-1] / max(T_meas[1], 1):.3g} "
                         f"(pi_2/pi_C = {pi[1] / pi[-1]:.3g})"))]
    eta_s, Ts = 0.05, 120
    res = _run(p, "signsgd", [eta_s], x0, Ts, cache=cache)
    pred = hb.kunstner_sign(eta=eta_s, t=Ts, w0=x0[0].numpy())
    err_s = float(np.max(np.abs(res.x_final[0].abs().numpy() - pred)))
    tol = 8 * Ts * np.finfo(float).eps * float(x0.abs().max())
    rows.append(_row("Kunstner-sign", case, optimizer="signsgd", step="constant", lr=eta_s, metric="|w(T)|",
                     quantity="max |error| vs closed form", measured=err_s, predicted=0.0, sense="==", tol=tol,
                     passed=err_s <= tol, n=1, detail=f"T = {Ts}; the same speed eta for every class"))
    return rows


def check_head_growth(case, budget, cache=None):
    """Linear-head growth under sign updates: ||W_t - W_0||_F <= eta t sqrt(C h) at every step of
    every minibatch run, for SignSGD and Signum (beta 0.9) (docs/theory.md C6). The tightness is the
    fraction of that ceiling reached at the last step (the quantity claim C6 measures)."""
    p = case.problem
    eta, T = 1e-2, max(50, budget.T // 4)
    bound = hb.sign_head_growth(eta=eta, C=p.C, h=p.p)
    noise = list(range(max(2, budget.seeds)))
    rows = []
    for name, opt in (("signsgd", make_optimizer("signsgd")), ("signum", make_optimizer("signum", beta=0.9))):
        chk = check_bound(p, opt, bound, lr=eta, seeds=case.seeds(budget)[:1], steps=T, stochastic=True,
                          noise_seeds=noise)
        rows.append(_row("head-growth", case, optimizer=name, step="constant", lr=eta, metric="||W_t - W_0||_F",
                         quantity=f"||W_T - W_0||_F at T = {T}", measured=float(chk.final.max()),
                         predicted=bound.value(float(T)), sense="<=", passed=chk.holds, n=len(noise),
                         detail=(f"C = {p.C}, h = {p.p}, batch {p.batch_size}, feature mean "
                                 f"{p.knobs.get('feature_mean', 'n/a')}; max over t of ||W_t - W_0||/(eta t "
                                 f"sqrt(Ch)) = {chk.value_ratio:.3f}")))
    return rows


# ============================================================ registry, verify
#: Every check: name -> (the case tag it applies to, function(case, budget, cache) -> rows,
#: the bound names of the rows it returns).
CHECKS = {
    "B1": ("deterministic", check_gd, ("B1", "B1'", "B5", "B5-ratio")),
    "B2": ("deterministic", check_signgd, ("B2", "B2-step")),
    "B3": ("deterministic", check_steepest, ("B3", "B3-step")),
    "B4": ("deterministic", check_blockwise, ("B4", "B4-step")),
    "S1": ("stochastic", check_sgd_stochastic, ("S1",)),
    "S2": ("stochastic", check_signsgd_stochastic, ("S2",)),
    "Q1": ("quadratic", check_gd_quadratic, ("Q1 1/L", "Q1 2/(L+mu)")),
    "Q2": ("quadratic", check_blockwise_quadratic, ("Q2",)),
    "Q3": ("quadratic", check_precond_quadratic, ("Q3", "Q3-gd-lower")),
    "Q4": ("quadratic", check_optimal_precond, ("Q4", "Q4-attained")),
    "Q5": ("quadratic", check_heavy_ball, ("Q5",)),
    "Kunstner": ("kunstner", check_kunstner, ("Kunstner-GD", "Kunstner-sign")),
    "head-growth": ("head", check_head_growth, ("head-growth",)),
}
#: Bound names of every row :func:`verify` can return.
BOUND_NAMES = tuple(n for _, _, names in CHECKS.values() for n in names) + ("Q1-blind",)


def _wanted(only, name) -> bool:
    """A row's bound is selected by ``only`` when one entry is a prefix of its name."""
    return not only or any(name.startswith(o) for o in only)


def verify(suite="default", seed: int = 0, quick: bool = False, only: Sequence[str] | None = None,
           progress: bool = False):
    """Run every bound on every problem of the suite at the prescribed step size.

    Args:
        suite: "default" (:func:`default_suite`) or a list of problems, (name, problem) pairs or
            :class:`Case` objects (checks chosen by the problem's kind).
        seed: moves every random draw of the default suite (instances nobody has seen).
        quick: the smaller :data:`QUICK` budget and suite.
        only: check names (keys of :data:`CHECKS`) or bound-name prefixes to run, e.g. ["B1", "Q3"].

    Returns a pandas.DataFrame, one row per (bound, problem): bound, problem, optimizer, step
    (the prescribed rule), lr, metric, quantity, measured, predicted, tightness (= measured /
    predicted), sense ("<=", ">=", "=="), tol, pass, n (runs), detail. ``df.attrs["seconds"]``
    holds the runtime.
    """
    import pandas as pd
    t0 = time.perf_counter()
    budget = QUICK if quick else FULL
    cases = _as_cases(suite, quick, seed)
    by_name = {c.name: c for c in cases}
    only = [str(o) for o in only] if only else None
    if only:
        bad = [o for o in only if not any(n.startswith(o) for n in BOUND_NAMES)]
        if bad:
            raise ValueError(f"unknown bound(s) {bad}; known: {', '.join(BOUND_NAMES)}")
    rows = []
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for case in cases:
            cache: dict = {}
            for cname, (tag, fn, names) in CHECKS.items():
                if tag not in case.tags or not any(_wanted(only, n) for n in names):
                    continue
                t1 = time.perf_counter()
                rows += [r for r in fn(case, budget, cache) if _wanted(only, r["bound"])]
                if progress:
                    print(f"  {case.name:<18} {cname:<12} {time.perf_counter() - t1:6.2f} s", file=sys.stderr)
            if case.pair and case.pair in by_name and _wanted(only, "Q1-blind"):
                rows += check_gd_blind(case, by_name[case.pair], budget, cache)
    finally:
        torch.set_num_threads(prev)
    df = pd.DataFrame(rows, columns=["bound", "problem", "optimizer", "step", "lr", "metric", "quantity",
                                     "measured", "predicted", "tightness", "sense", "tol", "pass", "n", "detail"])
    df.attrs["seconds"] = time.perf_counter() - t0
    df.attrs["budget"] = budget
    return df


# ========================================================================= CLI
def format_table(df, detail: bool = False) -> str:
    """The table as text: bound, problem, step, lr, measured, predicted, tightness, pass."""
    cols = ["bound", "problem", "optimizer", "lr", "quantity", "measured", "sense", "predicted", "tightness", "pass"]
    if detail:
        cols.append("detail")
    view = df[cols].copy()
    view["pass"] = view["pass"].map({True: "ok", False: "FAIL"})
    fmt = {c: (lambda v: f"{v:.6g}") for c in ("lr", "measured", "predicted")}
    fmt["tightness"] = lambda v: f"{v:.4f}"
    return view.to_string(index=False, formatters=fmt, max_colwidth=60)


def _json_safe(v):
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return v


def rows_as_json(df) -> list[dict]:
    """The table as a list of JSON-safe dicts (nan -> null, inf -> "inf"), each with a boolean "pass"."""
    return [{k: _json_safe(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def cli_main(argv=None) -> int:
    """``heterosim verify [--quick] [--seed S] [--json] [--only B1,Q3] [--detail]``."""
    parser = argparse.ArgumentParser(
        prog="heterosim verify",
        description=("Check every bound of docs/theory.md (B1-B5, S1-S2, Q1-Q5, Kunstner's closed form, the "
                     "sign-update head growth) against the engine's measurements on a built-in suite of "
                     "problems, at the step size each bound prescribes. Prints one row per (bound, problem) "
                     "with the measured value, the bound, the tightness ratio measured/bound and pass; "
                     "exits with status 1 if any bound is violated."))
    from heterosim.cli import nonneg_int
    parser.add_argument("--quick", action="store_true", help="smaller suite and budgets (about a quarter of the time)")
    parser.add_argument("--seed", type=nonneg_int, default=0,
                        help="seed of every instance of the suite, an integer >= 0 (default 0)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of row dicts (each with a boolean 'pass')")
    parser.add_argument("--only", default="", help="comma-separated bound names or prefixes to run, e.g. B1,Q3,S2 (B1 also selects B1')")
    parser.add_argument("--detail", action="store_true", help="add the detail column to the printed table")
    parser.add_argument("--progress", action="store_true", help="print the time of each check to stderr")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    bad = [o for o in only or () if not any(n.startswith(o) for n in BOUND_NAMES)]
    if bad:  # checked here, before the suite is built
        parser.error(f"--only: unknown bound(s) {', '.join(bad)}; known: {', '.join(BOUND_NAMES)}")
    try:
        df = verify(seed=args.seed, quick=args.quick, only=only, progress=args.progress)
    except ValueError as e:
        from heterosim.cli import report_error
        report_error(parser.prog, e)
        return 2
    failed = int((~df["pass"]).sum())
    if args.json:
        print(json.dumps(rows_as_json(df), indent=1))
    else:
        print(format_table(df, detail=args.detail))
        print(f"\n{len(df)} checks, {failed} violated; {df.attrs['seconds']:.1f} s"
              f" ({'quick' if args.quick else 'full'} suite, seed {args.seed})")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(cli_main())
