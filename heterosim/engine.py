r"""The batched engine: many runs as the rows of one (B, d) batch, and iteration complexity.

``run(problem, opt, lrs, seeds, steps)`` runs every (lr, seed) pair as one row
(rows ordered lr-major: ``for lr in lrs: for seed in seeds``), from the problem's
seeded starting points or from ``x0``, and records what ``record`` names:

========== ==============================================================
loss       f(x_t)
subopt     f(x_t) - f*
grad_l2    ||grad f(x_t)||_2
grad_l1    ||grad f(x_t)||_1
dist       ||x_t - x*||_2 (problems with a known minimiser)
blocks     per-block ||g_{t,b}||_2, shape (B, K, n)
========== ==============================================================

The iteration complexity of a run is T(eps) = the first t with metric(x_t) <= eps
(``Result.iterations_to``); ``relative=True`` measures eps against the metric at
x_0. A run whose loss turns non-finite or exceeds f* + ``diverge_factor`` (f_0 - f*)
is marked diverged and frozen; the batch goes on. With a ``target`` the engine
tracks the first hit exactly even when it records nothing, and stops as soon as
every row has hit or diverged.

``tune`` takes the learning-rate grid, then a refinement around the best, and
returns the tuned complexity T*(eps) = min over lr, the argmin lr, every T, and a
flag when the best lr sits on the grid's edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from heterosim.optimizers import Optimizer, make as make_optimizer, validate_lr
from heterosim.problems.base import Problem

__all__ = ["run", "tune", "lr_grid", "Result", "TuneResult", "METRICS", "Target"]

METRICS = ("loss", "subopt", "grad_l2", "grad_l1", "dist", "blocks")
SCALAR_METRICS = ("loss", "subopt", "grad_l2", "grad_l1", "dist")
_STOP_CHECK_EVERY = 8  # early-exit test cadence (hits themselves are tracked every step)
DIVERGE_FACTOR = 1e6  # a run is diverged once f - f* exceeds this multiple of f_0 - f*


def lr_grid(lo: float = 1e-4, hi: float = 1.0, num: int | None = None, per_decade: int = 4) -> np.ndarray:
    """Geometric grid of learning rates from ``lo`` to ``hi`` (inclusive): ``num`` points, or
    ``per_decade`` points per decade."""
    if not (0 < lo <= hi) or not math.isfinite(hi):
        raise ValueError(f"lr_grid needs 0 < lo <= hi < inf; got lo={lo!r}, hi={hi!r}")
    if num is None:
        if per_decade < 1:
            raise ValueError(f"per_decade must be >= 1; got {per_decade}")
        num = max(1, int(round(math.log10(hi / lo) * per_decade)) + 1)
    if num < 1:
        raise ValueError(f"num must be >= 1; got {num}")
    return np.geomspace(lo, hi, num)


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
    if metric not in SCALAR_METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(SCALAR_METRICS)}")


def _check_eps(eps):
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0; got {eps!r}")


def _parse_record(record) -> tuple[str, ...]:
    if record is None or record == "none":
        return ()
    items = [s.strip() for s in record.split(",")] if isinstance(record, str) else list(record)
    items = [s for s in items if s]
    bad = [s for s in items if s not in METRICS]
    if bad:
        raise ValueError(f"unknown record item(s) {bad}; allowed: {', '.join(METRICS)} or 'none'")
    return tuple(dict.fromkeys(items))


def _record_steps(steps: int, every) -> np.ndarray:
    if every == "log":
        pts = np.unique(np.concatenate([np.arange(min(steps, 20) + 1),
                                        np.round(np.geomspace(1, max(steps, 1), 200)).astype(int)]))
        return pts[pts <= steps]
    every = int(every)
    if every < 1:
        raise ValueError(f"record_every must be an integer >= 1 or 'log'; got {every}")
    pts = np.arange(0, steps + 1, every)
    return pts if pts[-1] == steps else np.append(pts, steps)


@dataclass
class Result:
    """What a batched run measured. Arrays are numpy; rows follow ``lrs``/``seeds``."""

    problem: str
    optimizer: str
    lrs: np.ndarray              # (B,)
    seeds: np.ndarray            # (B,)
    steps: int                   # steps asked for
    steps_run: int               # steps taken (early exit may stop sooner)
    record_steps: np.ndarray     # (K,) the step of each recorded column
    curves: dict                 # metric -> (B, K) array, 'blocks' -> (B, K, n)
    diverged: np.ndarray         # (B,) bool
    diverged_at: np.ndarray      # (B,) step at which divergence was detected (-1: never)
    initial: dict                # metric -> (B,) value at x_0
    hits: dict = field(default_factory=dict)   # Target -> (B,) first step (inf: never)
    x_final: torch.Tensor | None = None
    f_star: float = 0.0
    seconds: float = 0.0

    @property
    def B(self) -> int:
        return len(self.lrs)

    def __getattr__(self, name):
        # losses, grad_l2s, ... as attributes: Result.losses is curves['loss']
        alias = {"losses": "loss", "subopts": "subopt", "grad_l2s": "grad_l2", "grad_l1s": "grad_l1",
                 "dists": "dist", "block_norms": "blocks"}
        if name in alias:
            key = alias[name]
            curves = self.__dict__.get("curves", {})
            if key not in curves:
                raise AttributeError(f"'{key}' was not recorded; pass record='{key},...' to run()")
            return curves[key]
        raise AttributeError(name)

    def iterations_to(self, eps: float, metric: str = "grad_l2", relative: bool = False) -> np.ndarray:
        """T(eps) per run: the first step t with metric(x_t) <= eps (times metric(x_0) when
        ``relative``); ``inf`` for a run that never got there (or diverged first).

        Exact when the metric was recorded at every step or tracked as the run's target;
        otherwise the first recorded step at or below eps (an upper bound on T)."""
        _check_metric(metric)
        _check_eps(eps)
        key = Target(metric, float(eps), bool(relative))
        if key in self.hits:
            return self.hits[key].copy()
        if metric not in self.curves:
            raise ValueError(f"metric {metric!r} was neither recorded nor the run's target; "
                             f"recorded: {sorted(self.curves)}")
        c = self.curves[metric]
        thr = eps * (self.initial[metric] if relative else np.ones(self.B))
        below = c <= thr[:, None]
        first = np.where(below.any(1), below.argmax(1), -1)
        out = np.where(first >= 0, self.record_steps[np.maximum(first, 0)], np.inf).astype(float)
        return out

    def to_frame(self, eps=None, metric="grad_l2", relative=False):
        """One row per run: lr, seed, diverged, final values (and T(eps) when eps is given)."""
        import pandas as pd
        data = {"problem": self.problem, "optimizer": self.optimizer, "lr": self.lrs, "seed": self.seeds,
                "diverged": self.diverged, "steps_run": self.steps_run}
        for m, c in self.curves.items():
            if m != "blocks":
                data[f"final_{m}"] = c[:, -1]
        if eps is not None:
            data["T"] = self.iterations_to(eps, metric, relative)
        return pd.DataFrame(data)


def _metric_values(problem, X, f, G, names, f_star, x_star):
    out = {}
    for m in names:
        if m == "loss":
            out[m] = f
        elif m == "subopt":
            out[m] = f - f_star
        elif m == "grad_l2":
            out[m] = torch.linalg.vector_norm(G, dim=1)
        elif m == "grad_l1":
            out[m] = G.abs().sum(1)
        elif m == "dist":
            if x_star is None:
                raise ValueError(f"metric 'dist' needs a known minimiser; {problem.name} has x_star = None")
            out[m] = torch.linalg.vector_norm(X - x_star, dim=1)
        elif m == "blocks":
            out[m] = problem.blocks.norms(G)
    return out


def _rows(lrs, seeds):
    lrs = np.atleast_1d(np.asarray(lrs, dtype=float))
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
    if lrs.size == 0 or seeds.size == 0:
        raise ValueError("run needs at least one learning rate and one seed")
    validate_lr(lrs)
    return np.repeat(lrs, seeds.size), np.tile(seeds, lrs.size)


def run(problem: Problem, opt: Optimizer | str, lrs: Sequence[float], seeds: Sequence[int] = (0,),
        steps: int = 100, record="loss,grad_l2", x0: torch.Tensor | None = None, record_every=1,
        target: Target | tuple | None = None, stop_early: bool = True, stochastic: bool = False,
        diverge_factor: float = DIVERGE_FACTOR, device=None, stop_when=None) -> Result:
    """Run ``opt`` on ``problem`` for every (lr, seed) as one batch.

    Args:
        problem: a :class:`heterosim.problems.Problem`.
        opt: an :class:`~heterosim.optimizers.Optimizer` or a registered name.
        lrs, seeds: learning rates (> 0) and seeds; B = len(lrs) * len(seeds) rows, lr-major.
        steps: number of optimizer steps.
        record: comma-separated metrics to record (see module doc) or 'none'.
        x0: starting point(s): (d,) for all rows or (B, d); default: the problem's
            ``initial_point(seed)`` for each row's seed.
        record_every: record every k-th step, or 'log' for a log-spaced grid.
        target: a :class:`Target` or (metric, eps[, relative]) tracked exactly every step.
        stop_early: with a target, stop once every row has hit it or diverged.
        stochastic: use the problem's stochastic oracle; every seed has its own generator
            and the rows of one seed share its draws. Metrics use the true gradient.
        diverge_factor: a row diverges when f - f* > diverge_factor (f_0 - f*), or on non-finite values.
        stop_when: with a target, an extra stopping rule ``stop_when(hit, active, t) -> bool``
            (``hit``: (B,) first-hit steps, inf while not hit), checked with the early exit.
    """
    import time
    t0 = time.perf_counter()
    opt = make_optimizer(opt) if isinstance(opt, str) else opt
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    steps = int(steps)
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1; got {diverge_factor!r}")
    row_lrs, row_seeds = _rows(lrs, seeds)
    B = row_lrs.size
    dtype = problem.dtype
    dev = torch.device(device) if device is not None else torch.device("cpu")
    names = _parse_record(record)
    if target is not None and not isinstance(target, Target):
        target = Target(*target)
    if stochastic and not problem.has_oracle:
        raise ValueError(f"stochastic=True but problem {problem.name!r} has no stochastic oracle")

    if x0 is None:
        uniq = np.unique(row_seeds)
        starts = problem.initial_points(uniq)
        X = starts[np.searchsorted(uniq, row_seeds)].to(dev)
    else:
        x0 = torch.as_tensor(x0, dtype=dtype)
        if x0.dim() == 1:
            x0 = x0.unsqueeze(0).expand(B, -1)
        if x0.shape != (B, problem.d):
            raise ValueError(f"x0 must have shape ({problem.d},) or ({B}, {problem.d}) for {B} runs; "
                             f"got {tuple(x0.shape)}")
        X = x0.to(dev).clone()
    lr = torch.as_tensor(row_lrs, dtype=dtype, device=dev).unsqueeze(1)
    blocks = problem.blocks.to(dev)
    x_star = problem.x_star.to(dev) if problem.x_star is not None else None
    f_star = float(problem.f_star)

    rec_steps = _record_steps(steps, record_every) if names else np.zeros(0, dtype=int)
    rec_set = {int(s): k for k, s in enumerate(rec_steps)}
    tracked = set(names) | ({target.metric} if target else set()) | {"loss"}
    curves = {m: [] for m in names}

    gens = None
    if stochastic:
        uniq = np.unique(row_seeds)
        gens = [(torch.Generator().manual_seed(int(s) * 1_000_003 + 17),
                 torch.as_tensor(np.nonzero(row_seeds == s)[0], device=dev)) for s in uniq]

    f, G = problem.loss_and_grad(X)
    vals = _metric_values(problem, X, f, G, tracked, f_star, x_star)
    initial = {m: v.detach().cpu().numpy().copy() for m, v in vals.items() if m != "blocks"}
    # f - f* above diverge_factor (f_0 - f*), +inf and NaN all fail `f <= f_limit`
    f_limit = f_star + diverge_factor * (f - f_star).clamp_min(1e-300)
    active = torch.isfinite(f) & torch.isfinite(G).all(1)
    bad_at_start = ~active
    alive = torch.zeros(B, dtype=torch.int64, device=dev)  # steps survived: diverged_at = alive + 1
    hit = torch.full((B,), math.inf, dtype=dtype, device=dev)
    thr = None
    if target is not None:
        thr = torch.full((B,), target.eps, dtype=dtype, device=dev)
        if target.relative:
            thr = thr * vals[target.metric]
        hit = torch.where(vals[target.metric] <= thr, 0.0, hit)
    if 0 in rec_set:
        for m in names:
            curves[m].append(vals[m])

    state = opt.init(X, blocks)
    t = 0
    for t in range(1, steps + 1):
        if stochastic:
            Gs = torch.empty_like(G)
            for gen, rows in gens:
                Gs[rows] = problem.stochastic_grad(X[rows], gen)
        else:
            Gs = G
        step, state = opt.update(Gs, state, X, lr, blocks)
        Xn = X + step
        f, G = problem.loss_and_grad(Xn)
        active = active & (f <= f_limit)
        alive += active
        X = torch.where(active.unsqueeze(1), Xn, X)  # a diverged row stays at its last good iterate
        if target is not None:
            v = _metric_values(problem, Xn, f, G, (target.metric,), f_star, x_star)[target.metric]
            hit = torch.where((v <= thr) & active, torch.clamp(hit, max=float(t)), hit)
        if t in rec_set:
            vals = _metric_values(problem, Xn, f, G, names, f_star, x_star)
            for m in names:  # diverged rows record NaN from their divergence on
                v = vals[m]
                curves[m].append(torch.where(active if v.dim() == 1 else active.unsqueeze(1), v, torch.nan))
        if target is not None and stop_early and t % _STOP_CHECK_EVERY == 0:
            done = bool((torch.isfinite(hit) | ~active).all())
            if done or (stop_when is not None and stop_when(hit, active, t)):
                break
    steps_run = t if steps > 0 else 0
    kept = rec_steps[rec_steps <= steps_run]
    out_curves = {}
    for m in names:
        arr = torch.stack(curves[m], dim=1).detach().cpu().numpy() if curves[m] else np.zeros((B, 0))
        out_curves[m] = arr[:, :len(kept)]
    diverged_at = torch.where(bad_at_start, 0, torch.where(active, -1, alive + 1))
    diverged = diverged_at.cpu().numpy() >= 0
    hits = {}
    if target is not None:
        hits[target] = hit.cpu().numpy().astype(float)
    return Result(problem=problem.name, optimizer=opt.label(), lrs=row_lrs, seeds=row_seeds, steps=steps,
                  steps_run=steps_run, record_steps=kept, curves=out_curves, diverged=diverged,
                  diverged_at=diverged_at.cpu().numpy(), initial=initial, hits=hits, x_final=X.detach().cpu(),
                  f_star=f_star, seconds=time.perf_counter() - t0)


@dataclass
class TuneResult:
    """Tuned iteration complexity: T*(eps) = min over learning rates of T(eps; lr)."""

    lr: float                 # the argmin learning rate (nan when no lr reached eps)
    T: float                  # T*(eps) (inf when no lr reached eps)
    lrs: np.ndarray           # every learning rate tried, ascending
    Ts: np.ndarray            # T(eps) per lr (aggregated over seeds)
    edge: bool                # the best lr of the coarse grid sat on its edge (or none reached eps)
    diverged: np.ndarray      # per lr: fraction of seeds that diverged
    eps: float
    metric: str
    relative: bool

    def as_dict(self) -> dict:
        return {"lr": self.lr, "T": self.T, "edge": self.edge, "eps": self.eps, "metric": self.metric,
                "relative": self.relative, "n_lrs": len(self.lrs)}


def _aggregate(T, B_lr, n_seeds, how):
    T = T.reshape(B_lr, n_seeds)
    if how == "mean":
        return T.mean(1)      # inf if any seed missed
    if how == "max":
        return T.max(1)
    if how == "median":
        return np.median(T, 1)
    raise ValueError(f"agg must be 'mean', 'max' or 'median'; got {how!r}")


def tune(problem: Problem, opt: Optimizer | str, eps: float, metric: str = "grad_l2",
         lrs: Sequence[float] | None = None, seeds: Sequence[int] = (0,), steps: int = 10_000,
         relative: bool = False, refine: int = 4, agg: str = "mean", stochastic: bool = False,
         x0=None) -> TuneResult:
    """Tune the learning rate for the fewest steps to ``metric <= eps``.

    The coarse grid ``lrs`` (default ``lr_grid(1e-5, 10, per_decade=2)``) is run as one batch
    with every seed; T(lr) aggregates the seeds (``agg``: mean, max or median; a seed that
    never reaches eps makes the mean infinite). The batch stops as soon as no unfinished
    learning rate can beat the best finished one, so ``Ts`` is exact for the best learning
    rate and for every one that finished before that point, and ``inf`` for the others (not
    reached within ``steps``, or certainly slower than the best). If the best lr is inside the grid, ``refine``
    more learning rates, log-spaced strictly between its two neighbours, are run and the best
    over all is returned. ``edge`` flags a best lr at either end of the coarse grid (the true
    optimum may lie outside), or a grid where no lr reached eps.
    """
    _check_metric(metric)
    _check_eps(eps)
    opt = make_optimizer(opt) if isinstance(opt, str) else opt
    grid = np.sort(np.asarray(lr_grid(1e-5, 10.0, per_decade=2) if lrs is None else lrs, dtype=float))
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
    target = Target(metric, float(eps), bool(relative))

    S = seeds.size

    def pruned(hit, active, t):
        # Stop once no unfinished learning rate can still beat the best finished one: a seed that
        # has not hit by step t will need more than t steps (a lower bound for its aggregate).
        h = hit.reshape(-1, S).to(torch.float64)
        done = torch.isfinite(h).all(1)
        if not bool(done.any()):
            return False
        best = _aggregate(h[done].cpu().numpy(), int(done.sum()), S, agg).min()
        lower = torch.where(torch.isfinite(h), h, float(t + 1))
        live = (~done) & active.reshape(-1, S).all(1)
        if not bool(live.any()):
            return True
        lb = _aggregate(lower[live].cpu().numpy(), int(live.sum()), S, agg)
        return bool((lb > best).all())

    def measure(lr_values):
        res = run(problem, opt, lr_values, seeds, steps, record="none", target=target, stochastic=stochastic,
                  x0=x0, stop_when=pruned)
        T = _aggregate(res.hits[target], len(lr_values), seeds.size, agg)
        div = res.diverged.reshape(len(lr_values), seeds.size).mean(1)
        return T, div

    T, div = measure(grid)
    i = int(np.argmin(T))
    edge = bool(not np.isfinite(T[i]) or i == 0 or i == len(grid) - 1)
    all_lrs, all_T, all_div = grid, T, div
    if refine and np.isfinite(T[i]) and 0 < i < len(grid) - 1:
        fine = np.geomspace(grid[i - 1], grid[i + 1], refine + 2)[1:-1]
        fine = fine[~np.isin(fine, grid)]
        if fine.size:
            Tf, dvf = measure(fine)
            all_lrs = np.concatenate([grid, fine])
            all_T = np.concatenate([T, Tf])
            all_div = np.concatenate([div, dvf])
            order = np.argsort(all_lrs)
            all_lrs, all_T, all_div = all_lrs[order], all_T[order], all_div[order]
    j = int(np.argmin(all_T))
    best_T = float(all_T[j])
    return TuneResult(lr=float(all_lrs[j]) if np.isfinite(best_T) else float("nan"), T=best_T, lrs=all_lrs,
                      Ts=all_T, edge=edge, diverged=all_div, eps=float(eps), metric=metric,
                      relative=bool(relative))
