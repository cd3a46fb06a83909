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
is marked diverged and frozen; the batch goes on. (f_0 - f* is floored, so that a run
started at the minimiser, where the gap is 0, is not diverged by the first noisy step.) With a ``target`` the engine
tracks the first hit exactly even when it records nothing, and stops as soon as
every row has hit or diverged.

``tune`` takes the learning-rate grid, then a refinement around the best, and
returns the tuned complexity T*(eps) = min over lr, the argmin lr, every T, and a
flag when the best lr sits on the grid's edge.

Speed
-----
``run(..., fast=True)`` (the default) takes the fast path, :class:`_FastLoop`;
``fast=False`` runs :func:`_loop_plain`, the obviously correct reference: the rule's
pure ``update`` on the whole batch, one step at a time. The two compute the same numbers
(next section), state included, for every registered rule (tests/test_engine_fast.py).
The fast path:

- steps in place into buffers the engine owns where a C kernel reproduces the rule's pure
  ``update`` to the bit (:func:`heterosim._native.stepper`: Adam/AdamW, the SGD family and
  the sign family), writing x + step into a second iterate buffer; other rules take their
  pure ``update`` (the in-place torch twins ``update_`` of :mod:`heterosim.optimizers`
  round differently, so the engine does not use them); a block quadratic's fused oracle
  (C, or its torch twin where the kernels are off: the same bits) writes the gradient, f,
  ||g|| and the divergence count in one pass, skipping the rows that diverged (their
  iterate is restored in the same pass); softmax regression has a C oracle of its own,
  and a stochastic softmax run computes every row's minibatch gradient in one call
  (``native_minibatch``);
- does no per-step work beyond the step, the loss (divergence needs it) and the target's
  metric: first hits are read from a ring of the last ``_STOP_CHECK_EVERY`` values at each
  stop check, curves are recorded only on their schedule, and the batch stops as soon as
  every row has hit (early exit);
- splits the rows into chunks that fit in cache (:data:`CHUNK_BYTES`) where a step is
  row-local work (an in-place C step and an elementwise or fused oracle), each chunk running
  all its steps before the next (rows are independent runs; with couplings across rows -- a
  stochastic oracle shared by a seed's rows, or ``stop_when`` -- the chunks advance together);
- runs rotation-equivariant rules (``opt.equivariant``: the SGD family, block-wise and
  normalised GD, block Adam) on a rotated block quadratic in its eigenbasis, where H is
  diagonal and a step needs no matvec at all (:class:`_EigenFrame`), mapping the iterate
  and state back at the end.

benchmarks/engine_vs_jax.py measures it against a per-config torch.optim loop, JAX
(vmap + jit + scan with optax) and the bare oracle (torch's and the C one). On a 2-core
EPYC, one thread: the reference sweep (Adam, 128 runs x 500 steps) 120x-173x faster than
the naive loop and 1.4x-1.5x faster than warm JAX; the large one (1024 runs, d = 4096)
1.9x-2.4x faster than warm JAX, in about the time of torch.bmm alone (0.98x-1.06x). Those
figures predate "One T per config" (below), which costs time (CPU time, one thread, the same
2-core machine): the block oracle no longer fuses multiply-adds and sums f and ||g||^2 as a
fixed tree (1.3x its former time on the reference sweep, 1.4x on the large one; still no slower
than torch.bmm), and Adam's step calls torch's own sqrt between two C passes, torch's float64
sqrt on CPU (MKL's) not being the correctly rounded one a C kernel computes: Adam takes about
1.7x its former engine time on both sweeps (1.3x with the one-pass kernel, which
:func:`heterosim._native.stepper` takes by itself where the pure update's sqrt is correctly
rounded); SGD with momentum (the eigenbasis path) is unchanged.

One T per config
----------------
T(eps) of a run does not depend on the path that runs it (fast with the C kernels, fast
without them -- ``HETEROSIM_NATIVE=0`` or no compiler -- or plain), on the batch it shares
(its learning rate alone or in a grid), on chunking or on the thread count: every path does
the same floating-point operations on each row, in the same order.

- The oracle of a block quadratic has one fixed arithmetic (:mod:`heterosim._native`):
  e = x - x*, g_i = sum_j e_j H_ji summed in order j = 0, 1, ... without FMA, f = 0.5
  tree(e.g) + f* and ||g||^2 = tree(g.g) summed as a fixed halving tree, sqrt correctly
  rounded. The C kernel and its torch twin give the same bits; the plain loop and x_0 use
  the twin. (A BLAS product would not do: its rounding depends on the batch -- MKL takes a
  different kernel for one row than for fifteen -- and on the CPU.)
- A rule's step is its pure ``update`` or a C kernel verified to reproduce it to the bit
  (each kernel is checked against ``update`` once per process; one that does not match is
  not used). The kernels are compiled with -ffp-contract=off and no fast-math; they write
  fma() only where torch fuses (its lerp) and leave the sqrt to torch where torch's is not
  the correctly rounded one.
- ||g||_2 and ||x - x*||_2 are measured with the same tree sums on every path.

Where the bits cannot agree, the tolerance:

- equivariant rules on a rotated block quadratic run in the eigenbasis on the fast path (with
  or without the kernels: the same bits there), and the rotation rounds differently from the
  plain loop's x frame. These rules' steps are linear in g, so the difference does not grow:
  curves agree with the plain loop to 1e-12 relative (pinned), and T can differ only where
  the metric passes eps within that margin. On the demo's sweeps it never does: all 34
  tunings of the demo give the same T*, argmin lr and T at every learning rate on all three
  paths (pinned, tests/test_engine_fast.py::test_demo_tunings_same_T_on_every_path);
- softmax regression's C oracle (its own exp) agrees with torch's to a few ulps, not to the
  bit: curves agree to 1e-10 relative over the tested runs, and a run whose T is sensitive
  to rounding (Adam's, late in a run) may differ between the kernels on and off there;
- problems without a C oracle (and subclasses of BlockQuadratic with their own loss) use
  ``loss_and_grad_into`` on the fast path and ``loss_and_grad`` on the plain one, which agree
  to rounding;
- a stochastic run draws its gradients from the problem's ``stochastic_grad`` on both paths
  (the same calls on the same rows: the same bits), whose own product may round a seed's
  rows differently with the batch they share.

:func:`engine_path` names the path this process takes by default (for provenance).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from heterosim import _native

from heterosim.optimizers import Optimizer, make as make_optimizer, validate_lr
from heterosim.problems.base import Problem

__all__ = ["run", "tune", "lr_grid", "Result", "TuneResult", "METRICS", "Target", "engine_path"]

METRICS = ("loss", "subopt", "grad_l2", "grad_l1", "dist", "blocks")
SCALAR_METRICS = ("loss", "subopt", "grad_l2", "grad_l1", "dist")
_STOP_CHECK_EVERY = 8  # early-exit test cadence (hits themselves are tracked every step)
DIVERGE_FACTOR = 1e6  # a run is diverged once f - f* exceeds this multiple of f_0 - f*


def engine_path() -> str:
    """Which path ``run`` takes by default in this process, as a short string for provenance:
    ``"native-c"`` (the fast path with the C kernels of :mod:`heterosim._native` compiled and
    loaded) or ``"torch-fast (<why>)"`` (the fast path in torch; why: ``HETEROSIM_NATIVE=0``,
    ``no C compiler``, ``the C kernels failed to compile``, ...). Both give the same T(eps), as
    does ``fast=False`` (module doc, "One T per config"); the string records how, not what.
    The first call builds (or loads) the kernels."""
    why = _native.why_off()
    return "native-c" if why is None else f"torch-fast ({why})"


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
    state: object = None         # the rule's final state (rows as in lrs/seeds)

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


def _base_quadratic(problem) -> bool:
    """A block quadratic whose oracle is the base class's (a subclass may change the loss)."""
    from heterosim.problems.quadratic import BlockQuadratic
    return isinstance(problem, BlockQuadratic) and type(problem).loss_and_grad is BlockQuadratic.loss_and_grad


def _quadratic_oracle(problem, like: torch.Tensor, native: bool = True):
    """The oracle of a block quadratic in the engine's fixed arithmetic (:mod:`heterosim._native`:
    the C oracle where ``native`` and the kernels apply to ``like``, else its torch twin; the two
    give the same bits, and a row's values never depend on its batch). None for other problems."""
    if not _base_quadratic(problem):
        return None
    if native and like.dim() == 2 and _native.usable(like):
        fn = problem.native_oracle(like)
        if fn is not None:
            return fn
    args = dict(diag=problem.spectrum) if problem.diagonal else dict(blocks=problem.block_hessians)
    return _native.quadratic_oracle_torch(problem.x_star, problem.f_star, device=like.device, dtype=like.dtype,
                                          **args)


def _reference_oracle(problem, like: torch.Tensor, native: bool = False):
    """``X -> (f, G)`` for the plain loop (the torch twin of the C oracle, ``native`` False) and
    x_0 (either: the same bits): the problem's ``loss_and_grad``, or for a block quadratic the
    engine's oracle (:func:`_quadratic_oracle`)."""
    twin = _quadratic_oracle(problem, like, native=native)
    if twin is None:
        return problem.loss_and_grad

    def loss_and_grad(X):
        X = X.contiguous()
        G, f = torch.empty_like(X), X.new_empty(X.shape[0])
        twin(X, G, f)
        return f, G
    return loss_and_grad


def _rows(lrs, seeds):
    lrs = np.atleast_1d(np.asarray(lrs, dtype=float))
    seeds = np.atleast_1d(np.asarray(seeds, dtype=np.int64))
    if lrs.size == 0 or seeds.size == 0:
        raise ValueError("run needs at least one learning rate and one seed")
    validate_lr(lrs)
    return np.repeat(lrs, seeds.size), np.tile(seeds, lrs.size)


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
    out = _FastLoop(setup).run() if fast else _loop_plain(setup)

    kept = rec_steps[rec_steps <= out.steps_run]
    out_curves = {m: out.curves[m][:, :len(kept)].detach().cpu().numpy() for m in names}
    diverged_at = out.diverged_at.cpu().numpy()
    hits = {target: out.hit.cpu().numpy().astype(float)} if target is not None else {}
    return Result(problem=problem.name, optimizer=opt.label(), lrs=row_lrs, seeds=row_seeds, steps=steps,
                  steps_run=out.steps_run, record_steps=kept, curves=out_curves, diverged=diverged_at >= 0,
                  diverged_at=diverged_at, initial=initial, hits=hits, x_final=out.X.detach().cpu(),
                  f_star=f_star, seconds=time.perf_counter() - t0, state=out.state)


def _loop_plain(s: _Setup) -> _Outcome:
    """The reference loop: the rule's pure ``update`` on the whole batch, one step at a time."""
    problem, opt, blocks, lr, names = s.problem, s.opt, s.blocks, s.lr, s.names
    B = s.X.shape[0]
    X, G, active, hit = s.X, s.G, s.active, s.hit
    rec_set = {int(t): k for k, t in enumerate(s.rec_steps)}
    curves = {m: [s.curves0[m]] if m in s.curves0 else [] for m in names}
    alive = torch.zeros(B, dtype=torch.int64, device=X.device)  # steps survived: diverged_at = alive + 1
    bad_at_start = ~active
    state = opt.init(X, blocks)
    t = 0
    for t in range(1, s.steps + 1):
        if s.gens is not None:
            Gs = torch.empty_like(G)
            for gen, rows in s.gens:
                Gs[rows] = problem.stochastic_grad(X[rows], gen)
        else:
            Gs = G
        step, state = opt.update(Gs, state, X, lr, blocks)
        Xn = X + step
        f, G = s.oracle(Xn)
        active = active & (f <= s.f_limit)
        alive += active
        X = torch.where(active.unsqueeze(1), Xn, X)  # a diverged row stays at its last good iterate
        if s.target is not None:
            v = _metric_values(problem, Xn, f, G, (s.target.metric,), s.f_star, s.x_star)[s.target.metric]
            hit = torch.where((v <= s.thr) & active, torch.clamp(hit, max=float(t)), hit)
        if t in rec_set:
            vals = _metric_values(problem, Xn, f, G, names, s.f_star, s.x_star)
            for m in names:  # diverged rows record NaN from their divergence on
                v = vals[m]
                curves[m].append(torch.where(active if v.dim() == 1 else active.unsqueeze(1), v, torch.nan))
        if s.target is not None and s.stop_early and t % _STOP_CHECK_EVERY == 0:
            done = bool((torch.isfinite(hit) | ~active).all())
            if done or (s.stop_when is not None and s.stop_when(hit, active, t)):
                break
    steps_run = t if s.steps > 0 else 0
    out_curves = {m: torch.stack(c, dim=1) if c else X.new_zeros(B, 0) for m, c in curves.items()}
    diverged_at = torch.where(bad_at_start, 0, torch.where(active, -1, alive + 1))
    return _Outcome(X=X, state=state, steps_run=steps_run, curves=out_curves, active=active,
                    diverged_at=diverged_at, hit=hit)


# ------------------------------------------------------------------------------- the fast path
PARALLEL_MIN_ELEMENTS = 1 << 20
"""Batches of at least this many entries (B d) run their chunks on torch's threads at once.
Below it the threads contend for the GIL between short kernels: on a 2-core EPYC the
reference sweep (128 x 256) runs 1.5x slower split across two threads, the large one
(1024 x 4096) 1.3x faster."""

CHUNK_BYTES = 6 * 2 ** 20
"""Working-set budget of one chunk of rows: the rows' iterate, gradient, scratch and state
buffers together. Sized for the shared last-level cache of a small CPU (a few MiB per core),
so that a chunk's state stays in cache from step to step. On a 2-core EPYC (32 MiB L3) the
eigenbasis path of SGD with momentum over 1024 x 4096 runs 2x faster in 6 MiB chunks than as
one batch (benchmarks/engine_vs_jax.py, the large sweep)."""


def _owned(state):
    """The state with every tensor copied into a buffer of its own (init may alias zeros)."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(f.clone() if isinstance(f, torch.Tensor) else f for f in state))
    return state


def _rows_of(state, r0, r1):
    """The chunk [r0, r1) of a batched state: views of its (B, ...) tensors."""
    return type(state)(*(f[r0:r1] if isinstance(f, torch.Tensor) else f for f in state))


class _EigenFrame:
    r"""A block quadratic in the eigenbasis of its blocks: y = V^T x with V = blockdiag(Q_b)
    orthogonal, where f = f* + 1/2 (y - y*)^T diag(lambda) (y - y*) and grad_y f = V^T grad_x f.
    A rule whose step commutes with block rotations (``opt.equivariant``) takes the same steps
    in y as in x, rotated, so the run needs no matvec: x_t = V y_t exactly, up to rounding.
    ||g||_2, per-block norms, ||x - x*|| and f are the same in both frames; ||g||_1 is not (it
    is mapped back where recorded)."""

    def __init__(self, problem, device, dtype):
        self.problem = problem
        self.lam = problem.spectrum.to(device=device, dtype=dtype)
        # y_b = Q_b^T x_b = x_b Q_b (a row times Q_b): the block product of the fixed order, so that
        # y_0 of a row does not depend on its batch (a BLAS product's rounding may)
        self.mats = [Q.to(device=device, dtype=dtype).contiguous() for Q in problem.bases]
        self.mats_t = [M.T.contiguous() for M in self.mats]  # x_b = Q_b y_b = y_b Q_b^T
        equal = len({M.shape[0] for M in self.mats}) == 1
        self.stacked = torch.stack(self.mats) if equal else None
        self.stacked_t = torch.stack(self.mats_t) if equal else None
        self.y_star = self.to(problem.x_star.to(device=device, dtype=dtype).unsqueeze(0))[0]
        self.f_star = float(problem.f_star)

    @staticmethod
    def applies(problem, opt, stochastic, target) -> bool:
        from heterosim.problems.quadratic import BlockQuadratic
        return (bool(getattr(opt, "equivariant", False)) and isinstance(problem, BlockQuadratic)
                and type(problem).loss_and_grad is BlockQuadratic.loss_and_grad and not problem.diagonal
                and problem.blocks.n < problem.d and not stochastic
                and (target is None or target.metric != "grad_l1"))

    def native_oracle(self, Y):
        """The fused C oracle of the diagonal quadratic in y (see BlockQuadratic.native_oracle),
        or None where the kernels do not apply."""
        if Y.dim() != 2 or not _native.usable(Y):
            return None
        return _native.quadratic_oracle(self.y_star, self.f_star, diag=self.lam)

    def oracle(self, Y):
        """The C oracle in y, or its torch twin (the same bits)."""
        return self.native_oracle(Y) or _native.quadratic_oracle_torch(self.y_star, self.f_star, diag=self.lam,
                                                                       device=Y.device, dtype=Y.dtype)

    def to(self, X):
        X = X.contiguous()
        return _native.block_product_(X, self.mats, torch.empty_like(X), self.stacked)

    def back(self, Y):
        Y = Y.contiguous()
        return _native.block_product_(Y, self.mats_t, torch.empty_like(Y), self.stacked_t)


class _Chunk:
    """Rows [r0, r1) of the batch: views of the engine's buffers, and the step they are at."""

    def __init__(self, loop, r0, r1):
        self.r0, self.r1 = r0, r1
        self.X = (loop.Xbuf[0][r0:r1], loop.Xbuf[1][r0:r1])
        self.G = loop.G[r0:r1]
        self.E = loop.E[r0:r1] if loop.E is not None else None
        self.W = loop.W[r0:r1] if loop.W is not None else None
        self.tmp = loop.tmp[r0:r1] if loop.tmp is not None else None
        self.F = loop.F[r0:r1]
        self.lr = loop.lr[r0:r1]
        self.f_limit = loop.f_limit[r0:r1]
        self.state = _rows_of(loop.state, r0, r1) if loop.chunked_state else loop.state
        self.dead = loop.dead[r0:r1]           # (R,) bool view
        self.dead_from = loop.dead_from[r0:r1]  # (R,) first dead step (inf: alive)
        self.dead_idx = torch.nonzero(self.dead).flatten()
        self.hit = loop.hit[r0:r1]
        self.thr = loop.thr[r0:r1] if loop.thr is not None else None
        self.t = 0
        self.flushed = 0


class _FastLoop:
    """The fast path of :func:`run`. Same semantics as :func:`_loop_plain`, less work per step:

    - the rule's step comes from :func:`heterosim._native.stepper` (a C kernel checked bit
      for bit against the rule's pure ``update``, else ``update`` itself) and x + step goes
      straight into a second iterate buffer (double buffering keeps x_{t-1} for a row that
      diverges at step t); the oracle fills gradient and error buffers: no allocation;
    - where a step is elementwise work, rows are split into chunks whose working set fits in
      cache (:data:`CHUNK_BYTES`), and each chunk runs all its steps before the next starts
      (rows are independent runs), so the state is not streamed from memory at every step;
      with couplings across rows (``stop_when``) the chunks advance together,
      :data:`_STOP_CHECK_EVERY` steps at a time; a stochastic run is one chunk;
    - the target's metric is written to a ring of the last steps and first hits are found
      from it at each stop check; divergence costs one comparison per step;
    - an equivariant rule on a block quadratic runs in the eigenbasis (:class:`_EigenFrame`).
    """

    def __init__(self, s: _Setup):
        self.s = s
        problem, opt = s.problem, s.opt
        B, d = s.X.shape
        self.B, self.d = B, d
        stochastic = s.gens is not None
        self.frame = (_EigenFrame(problem, s.X.device, s.X.dtype)
                      if _EigenFrame.applies(problem, opt, stochastic, s.target) else None)
        X0 = self.frame.to(s.X) if self.frame is not None else s.X
        # The oracle, one fused call: a block quadratic's (in x, or diagonal in its eigenbasis) in
        # the fixed arithmetic of heterosim._native, the C kernel or its torch twin (the same bits,
        # and the plain loop's); else the problem's own C oracle (softmax regression), its
        # loss_and_grad_into, or its loss_and_grad.
        self.exact_oracle = True
        self.native = self.frame.oracle(X0) if self.frame is not None else _quadratic_oracle(problem, X0)
        if self.native is None:
            self.exact_oracle = False
            self.native = problem.native_oracle(X0) if hasattr(problem, "native_oracle") else None
        self.into = getattr(problem, "loss_and_grad_into", None) if self.native is None else None
        # The step: the C kernels where they reproduce the rule's pure update to the bit
        # (heterosim._native.stepper checks), else the pure update itself.
        self.step = _native.stepper(opt, X0)
        self.inplace = self.step is not None
        self.Xbuf = (X0.clone(), torch.empty_like(X0))
        self.G = torch.empty_like(X0)
        self.F = X0.new_empty(B)  # f at the current iterate (the native oracle's output)
        scratch = self.into is not None and self.native is None
        self.E = torch.empty_like(X0) if scratch else None
        self.W = torch.empty_like(X0) if scratch and self.frame is None else None
        self.tmp = torch.empty_like(X0) if self.inplace else None
        self.Gs = torch.empty_like(X0) if stochastic else None
        # minibatch gradients of every row in one fused C call, each row on its seed's draw
        self.native_mb = None
        if stochastic and self.frame is None and hasattr(problem, "native_minibatch") \
                and hasattr(problem, "draw_minibatch"):
            self.native_mb = problem.native_minibatch(X0)
            self.which = torch.empty(B, dtype=torch.int64)
            for slot, (_, rows) in enumerate(s.gens):
                self.which[rows.cpu()] = slot
        self.lr = s.lr
        self.f_limit = s.f_limit
        self.thr = s.thr
        self.hit = s.hit.clone()
        self.dead = ~s.active
        self.dead_from = torch.where(self.dead, 0.0, math.inf).to(X0.dtype)
        self.state = opt.init(self.Xbuf[0], s.blocks)
        if self.inplace:
            self.state = _owned(self.state)
        # a rule without an in-place twin returns new state tensors: run it on the whole batch
        self.chunked_state = self.inplace and isinstance(self.state, tuple) and hasattr(self.state, "_fields")
        per_row = sum(1 for b in (*self.Xbuf, self.G, self.E, self.W, self.tmp) if b is not None) * d
        if self.chunked_state:
            per_row += sum(f[0].numel() for f in self.state if isinstance(f, torch.Tensor) and f.dim() > 0)
        rows = B
        # chunk where the step is elementwise work (eigenbasis, axis-aligned quadratics): a batch of
        # block matmuls runs no faster on few rows, and its operands do not fit in cache anyway
        # (the native oracle applies each block to all of a chunk's rows in turn: it is row-local work)
        elementwise = (self.frame is not None or bool(getattr(problem, "diagonal", False))
                       or self.native is not None)
        if self.chunked_state and not stochastic and elementwise:
            rows = max(1, min(B, CHUNK_BYTES // (per_row * X0.element_size())))
        # independent chunks run on torch's threads at once (rows are independent runs)
        self.workers = 1
        if self.chunked_state and not stochastic and s.stop_when is None and torch.get_num_threads() > 1 \
                and B * d >= PARALLEL_MIN_ELEMENTS:
            self.workers = min(torch.get_num_threads(), B)
            rows = min(rows, -(-B // self.workers))
        rows = -(-B // -(-B // rows))  # balance the chunks
        self.chunks = [_Chunk(self, r0, min(r0 + rows, B)) for r0 in range(0, B, rows)]
        self.metric = s.target.metric if s.target is not None else None
        self.ring = X0.new_empty(_STOP_CHECK_EVERY, B) if s.target is not None else None
        self.ring_steps = torch.arange(_STOP_CHECK_EVERY, dtype=X0.dtype, device=X0.device)
        self.ring_steps[0] = _STOP_CHECK_EVERY  # step t is kept in ring row t % _STOP_CHECK_EVERY
        self.rec_index = {int(t): k for k, t in enumerate(s.rec_steps)}
        self.curves = {}
        for m in s.names:
            shape = (B, len(s.rec_steps), s.blocks.n) if m == "blocks" else (B, len(s.rec_steps))
            c = X0.new_full(shape, math.nan)
            if m in s.curves0:
                c[:, 0] = s.curves0[m]
            self.curves[m] = c

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> _Outcome:
        s = self.s
        for c in self.chunks:  # gradients at x_0 in the frame of the run
            self._oracle(c, c.X[0])
        coupled = s.gens is not None or s.stop_when is not None
        may_stop = s.target is not None and s.stop_early
        if not coupled:
            self._each_chunk(lambda c: self._advance(c, s.steps, may_stop))
            steps_run = max(c.t for c in self.chunks)
            # every row runs to the step where the whole batch stopped
            self._each_chunk(lambda c: self._advance(c, steps_run, False))
        else:
            t = 0
            while t < s.steps:
                t = min(s.steps, (t // _STOP_CHECK_EVERY + 1) * _STOP_CHECK_EVERY)
                for c in self.chunks:
                    self._advance(c, t, False)
                if may_stop and t % _STOP_CHECK_EVERY == 0:
                    done = bool((torch.isfinite(self.hit) | self.dead).all())
                    if done or (s.stop_when is not None and s.stop_when(self.hit, ~self.dead, t)):
                        break
            steps_run = t
        X = self.Xbuf[steps_run % 2]
        state = self._final_state(steps_run)
        if self.frame is not None:
            X = self.frame.back(X)
            state = type(state)(*(self.frame.back(f) if isinstance(f, torch.Tensor) and f.shape == X.shape else f
                                  for f in state)) if isinstance(state, tuple) else state
        diverged_at = torch.where(self.dead, self.dead_from.nan_to_num(posinf=-1.0), -1.0).to(torch.int64)
        return _Outcome(X=X, state=state, steps_run=steps_run, curves=self.curves, active=~self.dead,
                        diverged_at=diverged_at, hit=self.hit)

    def _each_chunk(self, fn):
        """fn(chunk) for every chunk: in turn, or with ``self.workers`` threads, each taking every
        workers-th chunk and running torch single-threaded (the chunks share nothing: the same
        numbers come out either way; torch ops and the C kernels release the GIL)."""
        if self.workers <= 1 or len(self.chunks) <= 1:
            for c in self.chunks:
                fn(c)
            return
        from concurrent.futures import ThreadPoolExecutor
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="heterosim-chunks") as pool:
                parts = [self.chunks[i::self.workers] for i in range(self.workers)]
                for fut in [pool.submit(lambda part=part: [fn(c) for c in part]) for part in parts]:
                    fut.result()
        finally:
            torch.set_num_threads(threads)

    def _final_state(self, steps_run):
        """The batch's state: the engine's buffers, with the scalars (the count) of the chunks."""
        first = self.chunks[0].state
        if not self.chunked_state:
            return first
        for c in self.chunks:
            for whole, part in zip(self.state, c.state):
                if isinstance(whole, torch.Tensor) and not (isinstance(part, torch.Tensor)
                                                            and part.data_ptr() == whole[c.r0:c.r1].data_ptr()):
                    raise RuntimeError(f"the in-place step of {self.s.opt.name} replaced a state tensor "
                                       "instead of updating it in place")
        return type(self.state)(*(whole if isinstance(whole, torch.Tensor) else part
                                  for whole, part in zip(self.state, first)))

    def _oracle(self, c, X):
        """f at X and the gradient into c.G (in the frame of the run)."""
        if self.native is not None:
            self.native(X, c.G, c.F)
            return c.F
        if self.into is not None:
            return self.into(X, c.G, c.E, c.W)
        f, G = self.s.problem.loss_and_grad(X)
        c.G = G
        return f

    def _advance(self, c: _Chunk, t_end: int, may_stop: bool):
        """Run the rows of chunk ``c`` from its step to ``t_end``; with ``may_stop``, stop at the
        first multiple of _STOP_CHECK_EVERY where all its rows have hit the target or diverged."""
        s = self.s
        opt, blocks, problem = s.opt, s.blocks, s.problem
        step_, inplace = self.step, self.inplace
        rec_index, ring, track = self.rec_index, self.ring, self.metric is not None
        every = _STOP_CHECK_EVERY
        # ||g|| of the target comes with a quadratic's oracle (the same sums as _native.tree_norm)
        fused_norm = self.metric == "grad_l2" and self.exact_oracle
        numpy_checks = c.f_limit.device.type == "cpu"  # a (R,) comparison: numpy's call is the cheaper
        f_limit_np = c.f_limit.numpy() if numpy_checks else None
        native = self.native  # the oracle, ||g|| and the divergence test in one C call
        for t in range(c.t + 1, t_end + 1):
            xa, xb = c.X[(t - 1) % 2], c.X[t % 2]
            g = c.G
            if s.gens is not None:  # one draw per seed, shared by its rows (the plain loop's order)
                g = self.Gs
                if self.native_mb is not None:
                    self.native_mb(xa, g, torch.stack([problem.draw_minibatch(gen) for gen, _ in s.gens]), self.which)
                else:
                    for gen, rows in s.gens:
                        g[rows] = problem.stochastic_grad(xa[rows], gen)
            if inplace:
                c.state = step_(g, c.state, xa, c.lr, xb, c.tmp)
            else:  # a pure rule may keep references to its inputs: give it copies we will not overwrite
                step, c.state = opt.update(g.clone(), c.state, xa.clone(), c.lr, blocks)
                torch.add(xa, step, out=xb)
            row = ring[t % every, c.r0:c.r1] if track else None
            if native is not None:  # frozen (diverged) rows: x_t <- x_{t-1}, nothing computed
                f = c.F
                bad = native(xb, c.G, f, row if fused_norm else None, c.f_limit, root=True,
                             frozen=c.dead if c.dead_idx.numel() else None, X_prev=xa)
                if bad:
                    self._bury(c, ~(f <= c.f_limit) & ~c.dead, t, xa, xb, only_new=True)
            else:
                f = self._oracle(c, xb)
                if c.dead_idx.numel() == 0:
                    if not (bool((f.numpy() <= f_limit_np).all()) if numpy_checks else bool((f <= c.f_limit).all())):
                        self._bury(c, ~(f <= c.f_limit), t, xa, xb)
                else:
                    self._bury(c, ~(f <= c.f_limit) & ~c.dead, t, xa, xb)
            if track and not fused_norm:
                self._metric(self.metric, f, c, xb, out=row)
            k = rec_index.get(t)
            if k is not None:
                self._record(c, k, f, xb)
            if t % every == 0:
                self._flush(c, t)
                if may_stop and bool((torch.isfinite(c.hit) | c.dead).all()):
                    c.t = t
                    return
        if t_end > c.t:
            c.t = t_end
            self._flush(c, t_end)

    def _bury(self, c, newly, t, xa, xb, only_new=False):
        """Rows that diverged at step t keep their last good iterate x_{t-1} (as in the plain loop,
        their state and gradient go on, unused; the native oracle skips them). ``only_new``: copy
        x_{t-1} into the newly diverged rows only (the native oracle restores the others)."""
        idx = None
        if bool(newly.any()):
            c.dead |= newly
            c.dead_from.masked_fill_(newly, float(t))
            c.dead_idx = torch.nonzero(c.dead).flatten()
            if only_new:
                idx = torch.nonzero(newly).flatten()
        if not only_new:
            idx = c.dead_idx if c.dead_idx.numel() else None
        if idx is not None:
            xb.index_copy_(0, idx, xa.index_select(0, idx))

    def _metric(self, m, f, c, X, out=None):
        """The metric m of the chunk's rows at X (f: the loss there), written into ``out`` if given."""
        if m == "grad_l2":
            v = _native.tree_norm(c.G)  # summed as the C oracle sums it
            return v if out is None else out.copy_(v)
        if m == "loss":
            v = f
        elif m == "subopt":
            v = f - self.s.f_star
        elif m == "grad_l1":
            G = self.frame.back(c.G) if self.frame is not None else c.G
            v = G.abs().sum(1)
        elif m == "dist":
            if self.s.x_star is None:
                raise ValueError(f"metric 'dist' needs a known minimiser; {self.s.problem.name} has x_star = None")
            v = _native.tree_norm(X - (self.frame.y_star if self.frame is not None else self.s.x_star))
        else:
            v = self.s.blocks.norms(c.G)
        return v if out is None else out.copy_(v)

    def _record(self, c, k, f, X):
        alive = ~c.dead if c.dead_idx.numel() else None
        for m in self.s.names:
            v = self._metric(m, f, c, X)
            if alive is not None:  # diverged rows record NaN from their divergence on
                v = torch.where(alive if v.dim() == 1 else alive.unsqueeze(1), v, torch.nan)
            self.curves[m][c.r0:c.r1, k] = v

    def _flush(self, c, t):
        """First hits among the steps since the last flush, read from the ring: the first step
        with metric <= threshold while the row was alive."""
        if self.ring is None or t <= c.flushed:
            return
        k = _STOP_CHECK_EVERY
        if t - c.flushed == k and t % k == 0:  # a full ring: row j holds step t - k + j (row 0: t)
            steps, vals = self.ring_steps + (t - k), self.ring[:, c.r0:c.r1]
        else:
            idx = torch.arange(c.flushed + 1, t + 1, device=self.ring.device)
            steps, vals = idx.to(self.ring.dtype), self.ring[idx % k, c.r0:c.r1]
        steps = steps.unsqueeze(1)
        ok = (vals <= c.thr) & (steps < c.dead_from)
        torch.minimum(c.hit, torch.where(ok, steps, math.inf).amin(0), out=c.hit)
        c.flushed = t


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
