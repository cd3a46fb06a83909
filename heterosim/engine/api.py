"""The engine's entry points: :func:`run`, :func:`tune`, :func:`lr_grid`, :func:`engine_path`; the one
:class:`TuneResult` and :func:`select_lr`, which the bridge's tuning shares."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from heterosim import _native
from heterosim.engine import fast as fast_loop, reference
from heterosim.engine.common import (DIVERGE_FACTOR, METRICS, Target, _check_eps, _check_metric, _metric_values,
                                     _reference_oracle, _Setup)
from heterosim.engine.result import Result
from heterosim.optimizers import Optimizer, make as make_optimizer, validate_lr
from heterosim.problems.base import Problem

def engine_path() -> str:
    """Which path ``run`` takes by default in this process, as a short string for provenance:
    ``"native-c"`` (the fast path with the C kernels of :mod:`heterosim._native` compiled and
    loaded) or ``"torch-fast (<why>)"`` (the fast path in torch; why: ``HETEROSIM_NATIVE=0``,
    ``no C compiler``, ``the C kernels failed to compile``, ...). Both give the same T(eps), as
    does ``fast=False`` (module doc, "One T per config"); the string records how, not what.
    The first call builds (or loads) the kernels."""
    why = _native.why_off()
    return "native-c" if why is None else f"torch-fast ({why})"


@contextlib.contextmanager
def threads_for(B: int, d: int):
    """Within the block torch (and the engine's C kernels, which follow torch's count) use the
    thread count that suits a batch of B runs of dimension d: one thread below
    :data:`heterosim._native.OPENMP_MIN_ELEMENTS` entries, where a second thread costs more than
    it saves, torch's count above it (the C kernels then split their rows between OpenMP threads,
    and batches of :data:`heterosim.engine.fast.PARALLEL_MIN_ELEMENTS` entries or more run
    independent chunks on Python threads at once). The count is restored on exit. Results do not
    depend on it (package doc, "One T per config")."""
    before = torch.get_num_threads()
    want = 1 if B * d < _native.OPENMP_MIN_ELEMENTS else before
    if want != before:
        torch.set_num_threads(want)
    try:
        yield want
    finally:
        if want != before:
            torch.set_num_threads(before)


def lr_grid(lo: float = 1e-4, hi: float = 1.0, num: int | None = None, per_decade: int = 4) -> np.ndarray:
    """Geometric grid of learning rates from ``lo`` to ``hi`` (inclusive): ``num`` points, or
    ``per_decade`` points per decade. A grid of one point is ``[lo]``. The package's one grid of
    learning rates: the engine's, the claims' and the bridge's (whose per-optimizer ranges are
    :func:`heterosim.bridge.train.lr_range`)."""
    if not (0 < lo <= hi) or not math.isfinite(hi):
        raise ValueError(f"lr_grid needs 0 < lo <= hi < inf; got lo={lo!r}, hi={hi!r}")
    if num is None:
        if per_decade < 1:
            raise ValueError(f"per_decade must be >= 1; got {per_decade}")
        num = max(1, int(round(math.log10(hi / lo) * per_decade)) + 1)
    if num < 1:
        raise ValueError(f"num must be >= 1; got {num}")
    return np.geomspace(lo, hi, num)


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
        diverge_factor: float = DIVERGE_FACTOR, device=None, stop_when=None, fast: bool = True,
        diverge_floor: float | None = None) -> Result:
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
        diverge_factor: a row diverges when f - f* > diverge_factor max(f_0 - f*, floor), or on
            non-finite values.
        diverge_floor: the floor of that gap; default 1e-6 times the largest gap f_0 - f* of
            the batch, or 1 + |f*| when every row starts at a minimiser.
        stop_when: with a target, an extra stopping rule ``stop_when(hit, active, t) -> bool``
            (``hit``: (B,) first-hit steps, inf while not hit), checked with the early exit.
        fast: take the fast path (module doc, "Speed"); ``False`` runs the plain reference
            loop, the rule's pure ``update`` on the whole batch step by step. The two compute
            the same numbers, so the same T(eps) (module doc, "One T per config").
    """
    t0 = time.perf_counter()
    opt = make_optimizer(opt) if isinstance(opt, str) else opt
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0; got {steps!r}")
    steps = int(steps)
    if not diverge_factor > 1:
        raise ValueError(f"diverge_factor must be > 1; got {diverge_factor!r}")
    if diverge_floor is not None and not (diverge_floor > 0 and math.isfinite(diverge_floor)):
        raise ValueError(f"diverge_floor must be finite and > 0 (or None for the default); got {diverge_floor!r}")
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
    X = X.contiguous()
    if dev.type != "cpu" and hasattr(problem, "to"):
        problem = problem.to(dev)  # its data where the batch is
    lr = torch.as_tensor(row_lrs, dtype=dtype, device=dev).unsqueeze(1)
    blocks = problem.blocks.to(dev)
    x_star = problem.x_star.to(dev) if problem.x_star is not None else None
    f_star = float(problem.f_star)

    rec_steps = _record_steps(steps, record_every) if names else np.zeros(0, dtype=int)
    tracked = set(names) | ({target.metric} if target else set()) | {"loss"}

    gens = None
    if stochastic:
        uniq = np.unique(row_seeds)
        gens = [(torch.Generator().manual_seed(int(s) * 1_000_003 + 17),
                 torch.as_tensor(np.nonzero(row_seeds == s)[0], device=dev)) for s in uniq]

    oracle = _reference_oracle(problem, X)
    f, G = (_reference_oracle(problem, X, native=True) if fast else oracle)(X)
    vals = _metric_values(problem, X, f, G, tracked, f_star, x_star)
    initial = {m: v.detach().cpu().numpy().copy() for m, v in vals.items() if m != "blocks"}
    # f - f* above diverge_factor max(f_0 - f*, floor), +inf and NaN all fail `f <= f_limit`
    gap = (f - f_star).nan_to_num(nan=0.0, posinf=0.0)
    if diverge_floor is None:
        top = float(gap.max()) if gap.numel() else 0.0
        diverge_floor = 1e-6 * top if top > 0 else 1.0 + abs(float(f_star))
    f_limit = f_star + diverge_factor * gap.clamp_min(diverge_floor)
    active = torch.isfinite(f) & torch.isfinite(G).all(1)
    hit = torch.full((B,), math.inf, dtype=dtype, device=dev)
    thr = None
    if target is not None:
        thr = torch.full((B,), target.eps, dtype=dtype, device=dev)
        if target.relative:
            thr = thr * vals[target.metric]
        hit = torch.where(vals[target.metric] <= thr, 0.0, hit)
    curves0 = {m: vals[m] for m in names} if (rec_steps.size and rec_steps[0] == 0) else {}

    setup = _Setup(problem=problem, opt=opt, X=X, G=G, lr=lr, blocks=blocks, names=names, rec_steps=rec_steps,
                   target=target, thr=thr, hit=hit, f_limit=f_limit, active=active, curves0=curves0,
                   steps=steps, stop_early=bool(stop_early), stop_when=stop_when, gens=gens,
                   f_star=f_star, x_star=x_star, oracle=oracle)
    with threads_for(B, problem.d):
        out = fast_loop._FastLoop(setup).run() if fast else reference._loop_plain(setup)

    kept = rec_steps[rec_steps <= out.steps_run]
    out_curves = {m: out.curves[m][:, :len(kept)].detach().cpu().numpy() for m in names}
    diverged_at = out.diverged_at.cpu().numpy()
    hits = {target: out.hit.cpu().numpy().astype(float)} if target is not None else {}
    return Result(problem=problem.name, optimizer=opt.label(), lrs=row_lrs, seeds=row_seeds, steps=steps,
                  steps_run=out.steps_run, record_steps=kept, curves=out_curves, diverged=diverged_at >= 0,
                  diverged_at=diverged_at, initial=initial, hits=hits, x_final=out.X.detach().cpu(),
                  f_star=f_star, seconds=time.perf_counter() - t0, state=out.state)


@dataclass
class TuneResult:
    """A tuned learning rate: the best ``lr`` of a grid by a score to minimise, beside every score.

    The engine's :func:`tune` scores a learning rate by its iteration complexity T(eps) and
    returns T*(eps) = min over learning rates of T(eps; lr) (``T`` and ``Ts`` are its names for
    ``score`` and ``scores``); the bridge's :func:`heterosim.bridge.train.tune_lr` scores one by
    the final value of a training criterion (``metric``) and adds its tables. Both pick the best
    with :func:`select_lr`."""

    lr: float                 # the argmin learning rate (engine: nan when no lr reached eps)
    score: float              # its score: T*(eps) (inf when no lr reached eps), or the final criterion
    lrs: np.ndarray           # every learning rate tried, ascending
    scores: np.ndarray        # the score per lr (engine: T(eps), aggregated over seeds)
    edge: bool                # the best lr sat on the grid's edge (engine: of the coarse grid, or none reached eps)
    diverged: np.ndarray | None = None  # per lr: fraction of seeds (runs) that diverged
    eps: float | None = None  # engine: the target
    metric: str | None = None  # what the score measures: the engine's metric, or the bridge's criterion column
    relative: bool | None = None  # engine: eps relative to the metric at x_0
    summary: object = None    # bridge: pandas.DataFrame, one row per lr tried (column ``best`` marks the best)
    runs: object = None       # bridge: pandas.DataFrame, every step of every lr

    @property
    def T(self) -> float:
        """The engine's name for ``score``: T*(eps)."""
        return self.score

    @property
    def Ts(self) -> np.ndarray:
        """The engine's name for ``scores``: T(eps) per lr."""
        return self.scores

    def as_dict(self) -> dict:
        return {"lr": self.lr, "T" if self.eps is not None else "score": self.score, "edge": self.edge,
                "eps": self.eps, "metric": self.metric, "relative": self.relative, "n_lrs": len(self.lrs)}


def select_lr(lrs, scores, *, strict: bool = True) -> tuple[int, bool]:
    """The best learning rate of a grid: ``(i, edge)``, ``i`` the index of the smallest score (the
    first of ties) and ``edge`` whether ``lrs[i]`` is the smallest or the largest of ``lrs`` (the
    optimum may lie outside the grid). ``strict`` (the engine's rule): a best score that is not
    finite is on the edge too (no lr reached the target), and so is a grid of one lr. Otherwise
    (the bridge's rule) a grid of one lr has no edge. Used by :func:`tune` and
    :func:`heterosim.bridge.train.tune_lr` alike."""
    lrs = np.asarray(lrs, dtype=float).reshape(-1)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if lrs.size == 0 or lrs.size != scores.size:
        raise ValueError(f"select_lr needs one score per learning rate (at least one); "
                         f"got {lrs.size} lrs and {scores.size} scores")
    i = int(np.argmin(scores))
    edge = bool(lrs[i] == lrs.min() or lrs[i] == lrs.max())
    if strict:
        edge = edge or not bool(np.isfinite(scores[i]))
    else:
        edge = edge and lrs.size > 1
    return i, edge


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
         x0=None, fast: bool = True) -> TuneResult:
    """Tune the learning rate for the fewest steps to ``metric <= eps``.

    The coarse grid ``lrs`` (default ``lr_grid(1e-5, 10, per_decade=2)``) is run as one batch
    with every seed; T(lr) aggregates the seeds (``agg``: mean, max or median; a seed that
    never reaches eps makes the mean infinite). The batch stops as soon as no unfinished
    learning rate can beat the best finished one, so ``Ts`` is exact for the best learning
    rate and for every one that finished before that point, and ``inf`` for the others (not
    reached within ``steps``, or certainly slower than the best). If the best lr is inside the grid, ``refine``
    more learning rates, log-spaced strictly between its two neighbours, are run and the best
    over all is returned. ``edge`` flags a best lr at either end of the coarse grid (the true
    optimum may lie outside), or a grid where no lr reached eps. ``fast``: as in :func:`run`
    (the same T on both paths; module doc, "One T per config").
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
                  x0=x0, stop_when=pruned, fast=fast)
        T = _aggregate(res.hits[target], len(lr_values), seeds.size, agg)
        div = res.diverged.reshape(len(lr_values), seeds.size).mean(1)
        return T, div

    T, div = measure(grid)
    i, edge = select_lr(grid, T)
    all_lrs, all_T, all_div = grid, T, div
    if refine and not edge:  # a finite best strictly inside the grid: refine between its neighbours
        fine = np.geomspace(grid[i - 1], grid[i + 1], refine + 2)[1:-1]
        fine = fine[~np.isin(fine, grid)]
        if fine.size:
            Tf, dvf = measure(fine)
            all_lrs = np.concatenate([grid, fine])
            all_T = np.concatenate([T, Tf])
            all_div = np.concatenate([div, dvf])
            order = np.argsort(all_lrs)
            all_lrs, all_T, all_div = all_lrs[order], all_T[order], all_div[order]
    j, _ = select_lr(all_lrs, all_T)
    best_T = float(all_T[j])
    return TuneResult(lr=float(all_lrs[j]) if np.isfinite(best_T) else float("nan"), score=best_T, lrs=all_lrs,
                      scores=all_T, edge=edge, diverged=all_div, eps=float(eps), metric=metric,
                      relative=bool(relative))
