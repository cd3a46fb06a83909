r"""The one check harness: a bound (:mod:`heterosim.bounds`) against the engine's measurement.

:func:`check_bound` runs an optimizer at the step a :class:`~heterosim.bounds.Bound` prescribes and
compares the measured first-hitting step T(eps) and the aggregate the bound names (min, running
mean, last, every; of metric**moment) with the bound; :func:`check_step_inequality` checks a
per-step certificate at every step. ``heterosim verify``, the C2 study and
:mod:`heterosim.testing` all call these two functions, so a bound is judged one way everywhere.

Each check ends in one of three statuses:

* ``PASS``: the run reached the bound's target within its iteration count, or ran at least that
  long, and the aggregate never exceeded ``value(T)``;
* ``FAIL``: a measurement exceeded the bound (T(eps) past the iteration count, a value above
  ``value(T)``, a run that diverged at the prescribed step, a decrease below its certificate);
* ``INCONCLUSIVE``: the run was capped before the bound's iteration count and had not reached eps,
  and nothing measured so far exceeded the bound. It is never a pass.

Stochastic bounds on an expectation are judged by one statistic: the mean over the noise seeds less
``SIGMA_MARGIN`` = 3 standard errors (one-sided) must be at most the bound.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

import heterosim.bounds as hb
from heterosim import engine, metrics
from heterosim.optimizers import Optimizer, make as make_optimizer

__all__ = [
    "PASS", "FAIL", "INCONCLUSIVE", "STATUSES", "SIGMA_MARGIN", "VALUE_RTOL", "VALUE_ATOL", "STEP_RTOL",
    "MAX_STEPS", "centred", "Anchored", "f_star_lower", "Start", "starts", "eps_for_budget",
    "BoundCheck", "check_bound", "StepCheck", "check_step_inequality", "judge_steps", "is_quadratic", "run",
    "measure",
]

PASS, FAIL, INCONCLUSIVE = "pass", "FAIL", "INCONCLUSIVE"
STATUSES = (PASS, FAIL, INCONCLUSIVE)
_WORD = {PASS: "holds", FAIL: "VIOLATED", INCONCLUSIVE: "INCONCLUSIVE (capped before the bound's T, eps unreached)"}
#: One-sided confidence margin for stochastic bounds, in standard errors of the mean over
#: the noise seeds: mean - 3 SE <= bound. Under the normal approximation of a mean of >= 32
#: independent runs a true bound fails this with probability about 0.13% per comparison.
SIGMA_MARGIN = 3.0
#: Relative slack on value curves (min / mean / last / every): the rounding of the measured metric.
VALUE_RTOL = 1e-9
#: Absolute slack on value curves, relative to the metric at x_0: its rounding floor (a metric
#: computed from x_t - x* is good to ~1e-16 of ||x*||, so a converged run cannot go below it).
VALUE_ATOL = 1e-13
#: Rounding allowance of a per-step decrease, relative to max(|f_t|, |f_{t+1}|): the two losses are
#: each computed with a relative error of a few d * 2^-53; 1e-12 covers d up to ~10^3.
STEP_RTOL = 1e-12
#: Step cap of :func:`check_bound` when a bound asks for more (a capped, unreached run is INCONCLUSIVE).
MAX_STEPS = 20_000
# views of the one vocabulary (heterosim.metrics): what a check records (run() adds dist where x* is
# known), and what measure() can give a curve of (engine metrics and those derived from them)
_RECORD = tuple(m for m in metrics.RECORDED if m != "dist")
_MEASURABLE = metrics.MEASURABLE


# =============================================================== problem views
def is_quadratic(problem) -> bool:
    return hasattr(problem, "block_hessians") and hasattr(problem, "eigenbasis")


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

    def to(self, device) -> "Anchored":
        """The same view with the problem and the anchor on ``device`` (engine.run(device=...))."""
        return Anchored(self._problem.to(device), self.x_star.to(device))


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
    return [Start(x0=X0[i].clone(), f0=float(f[i]), delta=max(float(f[i]) - lo, 0.0), subopt=float(f[i]) - fs,
                  grad_l2=float(g[i].norm()), grad_l1=float(g[i].abs().sum()), dist=float(dist[i]),
                  seed=None if seeds is None else int(seeds[i]))
            for i in range(X0.shape[0])]


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


def run(problem, opt, lrs, X0, steps, *, stochastic=False, noise_seeds=(0,), record=_RECORD, cache=None,
        target=None):
    """engine.run with one row per start (lrs: one per row) or, stochastic, one start and one
    row per noise seed. Returns the Result (memoised in ``cache``, a dict, when given). With a
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


def measure(problem, opt, lrs, X0, steps, metric, *, stochastic=False, noise_seeds=(0,), cache=None,
            target=None):
    """Curves of ``metric`` (B, steps+1) for every row, with the anchored view for head_frob_dist."""
    if metric not in _MEASURABLE:
        raise ValueError(f"cannot measure metric {metric!r}; measurable: {', '.join(_MEASURABLE)}")
    if metric == "dist" and getattr(problem, "x_star", None) is None:
        raise ValueError(f"metric 'dist' needs a known minimiser; {problem.name} has none")
    if metric != "head_frob_dist":
        res = run(problem, opt, lrs, X0, steps, stochastic=stochastic, noise_seeds=noise_seeds, cache=cache,
                  target=target)
        return _curves(problem, res, [metric])[metric], res
    rows, last = [], None
    lrs = np.broadcast_to(np.asarray(lrs, dtype=float).reshape(-1), (X0.shape[0],)) if not stochastic else lrs
    groups = [(X0, lrs)] if (stochastic or bool((X0 == X0[0]).all())) else \
        [(X0[i:i + 1], lrs[i:i + 1]) for i in range(X0.shape[0])]
    for Xg, lg in groups:
        last = run(Anchored(problem, Xg[0]), opt, lg if not stochastic else lrs, Xg, steps, stochastic=stochastic,
                   noise_seeds=noise_seeds, record=("loss", "dist"), cache=None)
        rows.append(last.curves["dist"])
    return np.concatenate(rows, 0), last


# =============================================================== check_bound
@dataclass
class BoundCheck:
    """A measured run against a :class:`heterosim.bounds.Bound`.

    ``status``: ``PASS``, ``FAIL`` or ``INCONCLUSIVE`` (capped before the bound's iteration count
    with eps unreached and no violation so far); ``holds`` is True only for ``PASS``.
    ``measured_T``/``bound_T`` per row: first t with metric <= eps (for an expectation: the seed
    mean of the aggregate), and the bound's iterations (nan where the bound has no eps).
    ``value_ratio``: the largest aggregate / value(T) over every T run, in the metric's units
    (<= 1 + VALUE_RTOL when the bound holds; for an expectation, of the seed mean less the margin).
    ``value_at_end``: the aggregate (the seed mean for an expectation) at the last T judged (the
    horizon where the bound has one), largest over rows, in the metric's units. ``tightness``: the largest measured_T / bound_T (or
    value_ratio when there is no iteration count). ``conclusive``: False when capped and unreached.
    """

    name: str
    metric: str
    aggregate: str
    status: str
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
    diverged: int = 0
    value_at_end: float = float("nan")

    @property
    def holds(self) -> bool:
        """True only when the check passed (never for an inconclusive run)."""
        return self.status == PASS

    def as_dict(self) -> dict:
        return {"bound": self.name, "metric": self.metric, "aggregate": self.aggregate, "status": self.status,
                "holds": self.holds, "T_ok": self.T_ok, "value_ok": self.value_ok, "conclusive": self.conclusive,
                "measured_T": self.measured_T.tolist(), "bound_T": self.bound_T.tolist(),
                "tightness": self.tightness, "value_ratio": self.value_ratio, "steps": self.steps,
                "message": self.message}


def _bounds_at(problem, bound, st) -> list[hb.Bound]:
    bounds = [bound if isinstance(bound, hb.Bound) else bound(problem, s) for s in st]
    for b in bounds:
        if not isinstance(b, hb.Bound):
            raise ValueError(f"bound must be a heterosim.bounds.Bound or a function returning one; "
                             f"got {type(b).__name__}")
    b0 = bounds[0]
    if any((b.metric, b.aggregate, b.moment) != (b0.metric, b0.aggregate, b0.moment) for b in bounds):
        raise ValueError("the bounds of different starts must share one metric, aggregate and moment")
    return bounds


def _step_sizes(bounds, lr) -> np.ndarray:
    if lr is not None:
        return np.full(len(bounds), float(lr))
    if any(not isinstance(b.lr, float) for b in bounds):
        raise ValueError(f"bound {bounds[0].name} prescribes lr = {bounds[0].lr!r}, not one float: pass lr= (and "
                         "an optimizer that applies per-block steps, e.g. blockwise_gd)")
    return np.array([b.lr for b in bounds])


def _step_count(bounds, steps, max_steps) -> int:
    its = np.array([b.iterations for b in bounds], dtype=float)
    finite = its[np.isfinite(its)]
    horizons = [b.horizon for b in bounds if b.horizon is not None]
    if steps is None:
        if horizons:
            steps = max(horizons)
        else:
            steps = int(min(max_steps, math.ceil(finite.max()))) if finite.size else min(max_steps, 1000)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    return int(steps)


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


@dataclass
class _Values:
    ok: bool
    ratio: float            # max aggregate / value(T), metric units
    ratios: np.ndarray      # (rows, Ts) in power units
    point: np.ndarray       # the aggregate (seed mean for an expectation), power units
    Ts: np.ndarray
    end: float              # the aggregate at the last judged T, metric units


def _judge_values(curve, bounds, expectation, margin) -> _Values:
    """Compare the aggregate of metric**moment with value(T)**moment at every T of the run (only at
    T = horizon for a bound that holds only there). For an expectation: the seed mean less
    ``margin`` standard errors (the one statistic of stochastic bounds)."""
    b0 = bounds[0]
    k = b0.moment
    agg, Ts = _aggregate_curve(curve ** k, b0.aggregate)
    if expectation:
        mean = agg.mean(0)
        se = agg.std(0, ddof=1) / math.sqrt(agg.shape[0])
        judged, point = (mean - margin * se)[None, :], mean[None, :]
        m0 = (np.abs(curve[:, :1]) ** k).mean(0, keepdims=True)
    else:
        judged, point, m0 = agg, agg, np.abs(curve[:, :1]) ** k
    values = np.array([[b.value(float(T)) ** k for T in Ts] for b in bounds[:judged.shape[0]]])
    if b0.horizon is not None:
        values = np.where(Ts[None, :] == b0.horizon, values, np.nan)
    ok = judged <= values * (1 + VALUE_RTOL) + VALUE_ATOL * m0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(values > 0, judged / values, np.where(judged <= 0, 0.0, np.inf))
        ratios = np.where(np.isnan(values), np.nan, ratios)
    finite = ratios[~np.isnan(ratios)]
    ratio = float(np.max(finite)) ** (1.0 / k) if finite.size else float("nan")
    judged_cols = np.nonzero(~np.isnan(values).all(0))[0]
    end = float(np.max(point[:, judged_cols[-1]])) ** (1.0 / k) if judged_cols.size else float("nan")
    return _Values(bool(np.all(ok | ~np.isfinite(values))), ratio, ratios, point, Ts, end)


def _hitting_times(curve, vals: _Values, bounds, expectation) -> np.ndarray:
    """T(eps) per row: first t with metric <= eps; for an expectation, the first T at which the seed
    mean of the aggregate is <= eps**moment (a point estimate: the margin is applied to values)."""
    eps = np.array([np.nan if b.eps is None else b.eps for b in bounds])
    if np.all(np.isnan(eps)):
        return np.full(len(bounds), np.nan)
    if expectation:
        j = _first_hit(vals.point, eps[:1] ** bounds[0].moment)
        return np.array([vals.Ts[int(v)] if np.isfinite(v) else np.inf for v in j], dtype=float)
    return _first_hit(curve, np.nan_to_num(eps, nan=-np.inf))


def _judge_iterations(bounds, measured, K, expectation) -> tuple[bool, bool]:
    """(T_ok, conclusive): a row that never reached eps is a violation if the run was at least the
    bound's iteration count, and inconclusive if it was capped before. For an expectation the
    measured T is a point estimate of the seed mean: only the value check (with its margin) judges."""
    T_ok, conclusive = True, True
    for b, m in zip(bounds, measured):
        if math.isnan(b.iterations) or math.isnan(m):
            continue
        if not math.isfinite(m) and K < b.iterations - 1e-9:
            conclusive = False
            continue
        if not expectation:
            T_ok &= b.holds(m)
    return T_ok, conclusive


def _status(T_ok, value_ok, conclusive, diverged) -> str:
    if not (T_ok and value_ok) or diverged:
        return FAIL
    return PASS if conclusive else INCONCLUSIVE


def _tightness(measured, its, vals: _Values) -> tuple[float, int]:
    with np.errstate(divide="ignore", invalid="ignore"):
        tight = np.where(its > 0, measured / its, np.where(measured == 0, 0.0, np.inf))
    if np.any(np.isfinite(tight)):
        worst = int(np.nanargmax(np.where(np.isnan(tight), -np.inf, tight)))
        return float(tight[worst]), worst
    r = vals.ratios
    worst = int(np.nanargmax(np.nanmax(np.where(np.isnan(r), -np.inf, r), axis=1))) if r.size else 0
    return vals.ratio, min(worst, len(measured) - 1)


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
        steps: how many steps to run; default the bound's ``horizon``, else ceil(its iterations)
            capped at ``max_steps`` (1000 when the bound has no iteration count). A run capped
            before the iteration count that has not reached eps is INCONCLUSIVE.
        stochastic: use the stochastic oracle. One start (the first seed, or x0) is run once per
            ``noise_seeds``. A bound on an expectation (aggregate ``expected_mean``) is checked on
            the mean over the seeds: mean - ``margin`` standard errors <= value(T). Any other bound
            must hold on every seed's run.

    The check: T(eps) is at most the bound's iterations, and the aggregate of metric**moment is at
    most value(T)**moment at every T of the run (only at T = horizon when the bound has one), plus
    ``VALUE_RTOL`` relative and ``VALUE_ATOL`` times the metric at x_0 for rounding. Returns a
    :class:`BoundCheck` (``final``: the metric at the last step of every run).
    """
    X0, sds = _start_points(problem, seeds, x0)
    if stochastic:
        X0, sds = X0[:1], (sds[:1] if sds else None)
        noise_seeds = [int(s) for s in noise_seeds]
        if len(noise_seeds) < 2:
            raise ValueError(f"a stochastic check needs at least 2 noise seeds (use >= 32); got {len(noise_seeds)}")
    st = starts(problem, X0, sds)
    bounds = _bounds_at(problem, bound, st)
    b0 = bounds[0]
    expectation = b0.aggregate == "expected_mean"
    if expectation and not stochastic:
        raise ValueError(f"bound {b0.name} bounds an expectation over the gradient noise: pass stochastic=True")
    lrs = _step_sizes(bounds, lr)
    steps = _step_count(bounds, steps, max_steps)
    target = _early_target(bounds, st, b0.metric, b0.aggregate, stochastic)
    curve, _ = measure(problem, optimizer, lrs, X0, steps, b0.metric, stochastic=stochastic,
                       noise_seeds=noise_seeds if stochastic else (0,), cache=_cache, target=target)
    # the engine freezes a run whose loss is non-finite or above f* + 1e6 (f_0 - f*) and records
    # NaN from then on: a run diverged at the prescribed step refutes the bound
    diverged = int(np.isnan(curve).any(1).sum())
    if stochastic and not expectation:                   # an almost-sure bound: every seed's run is a row
        bounds, lrs = bounds * curve.shape[0], np.repeat(lrs, curve.shape[0])
    vals = _judge_values(np.nan_to_num(curve, nan=np.inf), bounds, expectation, margin)
    measured = _hitting_times(curve, vals, bounds, expectation)
    K = curve.shape[1] - 1
    T_ok, conclusive = _judge_iterations(bounds, measured, K, expectation)
    its = np.array([b.iterations for b in bounds], dtype=float)
    tightness, worst = _tightness(measured, its, vals)
    status = _status(T_ok, vals.ok, conclusive, diverged)
    msg = (f"{b0.name} ({b0.metric}, {b0.aggregate}) on {problem.name}: T(eps) = {measured[worst]:g} vs bound "
           f"{its[worst]:g}; max aggregate/value(T) = {vals.ratio:.6g}"
           f"{' (capped run: inconclusive)' if not conclusive else ''}"
           f"{f'; {diverged} run(s) diverged (loss non-finite or above f* + 1e6 (f_0 - f*))' if diverged else ''}"
           f" -> {_WORD[status]}")
    eps = np.array([np.nan if b.eps is None else b.eps for b in bounds])
    return BoundCheck(name=b0.name, metric=b0.metric, aggregate=b0.aggregate, status=status, T_ok=bool(T_ok),
                      value_ok=vals.ok, conclusive=conclusive, measured_T=measured, bound_T=its,
                      tightness=tightness, value_ratio=vals.ratio, worst=worst, steps=K, lr=lrs, eps=eps,
                      n_seeds=len(noise_seeds) if stochastic else len(bounds), message=msg, final=curve[:, -1],
                      diverged=diverged, value_at_end=vals.end)


# ====================================================== check_step_inequality
@dataclass
class StepCheck:
    """A per-step certificate f(x_t) - f(x_{t+1}) >= guarantee_t checked at every step.

    ``min_ratio``: the smallest decrease / guarantee over steps whose guarantee is at least 10^6
    times the rounding allowance (>= 1 - 1e-6 when the certificate holds; 1 = tight), at run/step
    ``worst``. ``paid_over_charged``: at that step, the curvature the step actually paid,
    first_order - decrease, over what the certificate charged, first_order - guarantee (nan when no
    ``first_order`` was given). A ratio near 1 with a small paid/charged fraction means the
    certificate is nearly attained only because the curvature term is small there, not because
    the smoothness constant is attained. ``violations``: (run, step) pairs with decrease <
    guarantee - rounding allowance.
    """

    holds: bool
    min_ratio: float
    violations: int
    checked: int
    worst: tuple
    steps: int
    message: str
    paid_over_charged: float = float("nan")

    @property
    def status(self) -> str:
        return PASS if self.holds else FAIL


def _rounding(problem, res, f):
    tol = STEP_RTOL * np.maximum(np.abs(f[:, :-1]), np.abs(f[:, 1:]))
    if "dist" in res.curves and "grad_l2" in res.curves:
        # rounding of the iterates themselves: x_t is stored to eps ||x_t||, which moves f by up to
        # ||g_t|| eps ||x_t|| (||x_t|| <= ||x_t - x*|| + ||x*||); it matters once the decrease is tiny
        xn = res.curves["dist"] + float(torch.linalg.vector_norm(problem.x_star))
        g = res.curves["grad_l2"]
        tol = tol + 16 * np.finfo(float).eps * (g[:, :-1] * xn[:, :-1] + g[:, 1:] * xn[:, 1:])
    return tol


def check_step_inequality(problem, optimizer, lr, guarantee, *, seeds=(0,), x0=None, steps: int = 200,
                          rtol: float = STEP_RTOL, first_order=None, _cache=None) -> StepCheck:
    r"""Check a per-step certificate at every step of a run.

    ``guarantee(at, lr) -> (B, K)``: the guaranteed decrease f(x_t) - f(x_{t+1}) for t = 0..K-1
    from metrics measured at x_t: ``at[m]`` is the metric m at the start of each step, (B, K)
    ('blocks': (B, K, n) per-block gradient norms), and ``lr`` the (B, 1) step sizes. Available:
    loss, subopt, grad_l2, grad_l1, blocks (and dist with a known x*). ``first_order(at, lr)``
    (optional): -<g_t, u_t>, the decrease before curvature, for the paid/charged curvature ratio.

    Example (B1', GD at eta = 1/L_2)::

        L = problem.L_blocks.numpy()
        check_step_inequality(problem, "gd", 1 / problem.L2,
            lambda at, lr: hb.gd_step_decrease(g_block_sq=at["blocks"] ** 2, L_blocks=L, eta=lr[..., None]))
    """
    X0, _ = _start_points(problem, seeds, x0)
    lrs = np.broadcast_to(np.asarray(lr, dtype=float).reshape(-1), (X0.shape[0],)).copy()
    res = run(problem, optimizer, lrs, X0, int(steps), cache=_cache)
    f = res.curves["loss"]
    at = {m: c[:, :-1] for m, c in res.curves.items()}
    guar = np.asarray(guarantee(at, lrs[:, None]), dtype=float)
    lin = None if first_order is None else np.asarray(first_order(at, lrs[:, None]), dtype=float)
    return judge_steps(problem.name, f, guar, _rounding(problem, res, f), lin)


def judge_steps(name: str, f, guar, tol, first_order=None) -> StepCheck:
    """A per-step certificate judged from a loss curve ``f`` (B, K+1), guarantees (B, K), rounding
    allowances ``tol`` (B, K) and optionally the first-order decreases -<g_t, u_t> (B, K)."""
    dec = f[:, :-1] - f[:, 1:]
    if guar.shape != dec.shape:
        raise ValueError(f"guarantee returned shape {guar.shape}; expected {dec.shape} (runs, steps)")
    bad = (dec < guar - tol) & np.isfinite(dec)
    meaningful = guar > 1e6 * tol            # ratios only where rounding moves them by < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(meaningful, dec / np.where(meaningful, guar, 1.0), np.inf)
    min_ratio = float(ratio.min()) if ratio.size and np.isfinite(ratio).any() else float("nan")
    pick = np.where(bad, dec - guar, np.inf) if bad.any() else ratio
    where = np.unravel_index(int(np.argmin(pick)), ratio.shape) if ratio.size else (0, 0)
    paid = float("nan")
    if first_order is not None and ratio.size:
        charged = first_order[where] - guar[where]
        paid = float((first_order[where] - dec[where]) / charged) if charged > 0 else float("nan")
    n_bad = int(bad.sum())
    msg = (f"per-step certificate on {name}: {n_bad} violation(s) in {dec.size} steps; "
           f"min decrease/guarantee = {min_ratio:.6g}; paid/charged curvature there {paid:.3g}")
    return StepCheck(holds=not bool(bad.any()), min_ratio=min_ratio, violations=n_bad, checked=int(meaningful.sum()),
                     worst=(int(where[0]), int(where[1])), steps=int(dec.shape[1]), message=msg,
                     paid_over_charged=paid)
