r"""Helpers the claim modules share: the tuned-complexity measurement, slopes of
log T* against a knob, the problem constants a row carries, and a trajectory loop.

:func:`measure_tuned` is the measure function of every tuned-complexity study (C1, C3,
C9, the decomposition): one optimizer on one problem, its learning rate tuned for the
fewest steps to the target, and the problem's ground truth beside T*.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from heterosim.claims.base import ok_rows

__all__ = ["LR_RANGE", "LR_PER_DECADE", "LR_REFINE", "TUNE_KEYS", "fit_slope", "problem_constants", "trajectory",
           "measure_tuned", "slopes", "js0_exact", "quadratic_bounds"]

#: Learning-rate grid of every tuning (two per decade, then refined around the best),
#: wide enough for nearly every tuning of these studies; a best rate on its edge is flagged in
#: the ``edge`` column and reported by the verdicts (e.g. sign methods at 1e-5 on the most
#: spread hessian_only instances), never hidden.
LR_RANGE = (1e-5, 100.0)
LR_PER_DECADE = 2
LR_REFINE = 3



def fit_slope(x, y) -> float:
    """Least-squares slope of y against x over the finite pairs (nan with fewer than 2)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def problem_constants(p) -> dict:
    """The ground-truth scalars of a problem that a row carries (no f* solve)."""
    out = {"d": int(p.d), "n_blocks": int(p.blocks.n), "L2": float(p.L2), "Linf": float(p.Linf),
           "Linf_kind": str(p.Linf_kind), "rho_H": float(p.rho_H)}
    mu = float(p.mu_blocks.min())
    out["kappa"] = float(p.L2 / mu) if mu > 0 else math.inf
    return out


def trajectory(problem, opt, lrs: Sequence[float], steps: int, record: Sequence[int], observe: Callable,
               seed: int = 0, stochastic: bool = False, x0: torch.Tensor | None = None) -> list:
    """Run the rule ``opt`` for ``steps`` steps from the problem's seeded start, one row per
    learning rate, and return ``observe(t, X)`` for every t in ``record`` (0 included if listed).

    The batched engine (:func:`heterosim.engine.run`) records scalar metrics; this loop lets a
    study observe anything of the iterate (per-class losses, the head's distance from W_0)
    through the same (init, update) rule. ``stochastic`` uses the problem's oracle with a
    generator seeded from ``seed`` (every row shares the draws)."""
    from heterosim.optimizers import validate_lr
    validate_lr(lrs)
    lr = torch.as_tensor(np.asarray(lrs, dtype=float), dtype=problem.dtype).reshape(-1, 1)
    start = problem.initial_point(seed) if x0 is None else torch.as_tensor(x0, dtype=problem.dtype)
    X = start.expand(lr.shape[0], -1).clone()
    blocks = problem.blocks
    state = opt.init(X, blocks)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)
    rec = set(int(t) for t in record)
    out = [observe(0, X)] if 0 in rec else []
    for t in range(1, steps + 1):
        G = problem.stochastic_grad(X, gen) if stochastic else problem.grad(X)
        step, state = opt.update(G, state, X, lr, blocks)
        X = X + step
        if t in rec:
            out.append(observe(t, X))
    return out


# ----------------------------------------------------------------------------- tuned complexity
#: Config keys of :func:`measure_tuned` that are not problem knobs.
TUNE_KEYS = frozenset({"problem", "optimizer", "hyper", "seed", "eps", "metric", "relative", "steps"})


def quadratic_bounds(p, eps: float, metric: str, relative: bool) -> dict:
    """Q1 (GD, step 2/(L+mu)) and Q2 (block-wise GD, steps 2/(L_b+mu_b)) iteration bounds for a
    relative target on a block quadratic. For ``grad_l2`` the rate of ``dist`` applies, since
    g_t = H e_t and H commutes with the iteration matrix (I - eta H) (block-wise: with P H too)."""
    from heterosim import bounds
    from heterosim.problems.quadratic import BlockQuadratic
    if not isinstance(p, BlockQuadratic) or not relative or metric not in ("subopt", "grad_l2", "dist"):
        return {}
    m = "subopt" if metric == "subopt" else "dist"
    mu = float(p.mu_blocks.min())
    q1 = bounds.gd_quadratic_rate(L=p.L2, mu=mu, step="2/(L+mu)", metric=m, eps=eps)
    q2 = bounds.blockwise_gd_quadratic_rate(L_blocks=p.L_blocks, mu_blocks=p.mu_blocks, step="2/(L+mu)",
                                            metric=m, eps=eps)
    return {"bound_gd_T": q1.iterations, "bound_blockwise_T": q2.iterations}


def measure_tuned(config: dict) -> dict:
    """Tuned iteration complexity T*(eps) of one optimizer on one problem.

    Config: ``problem`` (a registered family) and its knobs (every key not in
    :data:`TUNE_KEYS`), ``optimizer`` (+ ``hyper``, a dict), ``seed`` (the problem's
    rotations and the starting point), ``eps``, ``metric``, ``relative``, ``steps``.
    T*(eps) = min over the learning-rate grid (:data:`LR_RANGE`, refined) of the first step
    with metric <= eps (times its value at x_0 when relative); ``edge`` flags a best lr on
    the grid's edge. Block quadratics also get the Q1/Q2 bounds (``bound_gd_T``, ``bound_blockwise_T``).
    """
    import heterosim as hs
    knobs = {k: v for k, v in config.items() if k not in TUNE_KEYS}
    seed = int(config.get("seed", 0))
    p = hs.problems.make(config["problem"], seed=seed, **knobs)
    opt = hs.optimizers.for_problem(config["optimizer"], p, **(config.get("hyper") or {}))
    eps, metric = float(config["eps"]), config.get("metric", "subopt")
    relative = bool(config.get("relative", True))
    r = hs.engine.tune(p, opt, eps=eps, metric=metric, relative=relative,
                       lrs=hs.engine.lr_grid(*LR_RANGE, per_decade=LR_PER_DECADE), seeds=(seed,),
                       steps=int(config.get("steps", 20_000)), refine=LR_REFINE)
    row = {"T": float(r.T), "lr": float(r.lr), "edge": bool(r.edge), "n_lrs": int(len(r.lrs))}
    row.update(problem_constants(p))
    row.update(quadratic_bounds(p, eps, metric, relative))
    if config["problem"] == "zhang_case" and p.blocks.n >= 2:  # JS0 compares blocks: none for one block
        row["JS0"] = js0_exact(p)
    return _beside(row, config)


def _beside(row: dict, config: dict) -> dict:
    """The measured row without the keys the config already holds (the config's value is the
    one asked for; e.g. kappa = 5000 asked, 5000.000000000004 computed)."""
    return {k: v for k, v in row.items() if k not in config}


def js0_exact(p) -> float:
    """JS0 of the exact block spectra (Zhang et al. 2024's block-heterogeneity measure)."""
    from heterosim import measures
    grid = measures.spectrum_grid(torch.cat(p.block_spectra))
    dens = measures.exact_block_density(p.block_spectra, grid)
    return float(measures.js0(dens, grid)[0])


def slopes(table: pd.DataFrame, knob: str = "spread", by: Sequence[str] = ("gamma", "optimizer")) -> pd.DataFrame:
    """Per group: the slope of log10 T* against ``knob`` (median over seeds at each knob value),
    T* at the smallest and largest knob, and how many knob values reached eps."""
    t = ok_rows(table)
    by = [b for b in by if b in t.columns]
    rows = []
    for key, g in t.groupby(by, sort=False):
        med = g.groupby(knob)["T"].median()
        finite = np.isfinite(med.to_numpy())
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "slope": fit_slope(med.index.to_numpy(float), np.log10(med.to_numpy(float))),
                     "T_first": float(med.iloc[0]), "T_last": float(med.iloc[-1]),
                     "n_reached": int(finite.sum()), "n_knob": int(len(med)),
                     "edge_any": bool(g["edge"].any()) if "edge" in g else False})
    return pd.DataFrame(rows)
