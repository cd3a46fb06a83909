"""The default study behind ``heterosim demo``.

Every registered optimizer (aliases counted once) is tuned on

- the four Zhang et al. cases (kappa = 5000, 4 rotated blocks of 25): T to
  ||g_t||_2 <= 1e-6 ||g_0||_2 (THEORY.md C3), and
- the block-scale family at spreads of 0, 1 and 2 decades with gamma = 1/2 (equal
  initial loss per block): T to f_t - f* <= 1e-4 (f_0 - f*) (THEORY.md C1),

and a table of tuned T*(eps) per optimizer and problem is printed. Problems run in
parallel worker processes (joblib); each tuning is a coarse learning-rate grid (one
per decade) refined around its best point.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

__all__ = ["DEMO_OPTIMIZERS", "demo_problems", "run_demo", "format_table"]

# distinct rules of the registry (gd is an alias of sgd)
DEMO_OPTIMIZERS = ("sgd", "sgd_momentum", "nesterov", "blockwise_gd", "normalized_gd", "block_normalized_gd",
                   "signsgd", "signum", "sign_momentum", "adam", "adamw", "rmsprop", "adagrad", "block_adam",
                   "adam_fixed_precond")


def demo_problems(spreads=(0.0, 1.0, 2.0)):
    """(label, make kwargs, eps, metric) for every demo problem."""
    out = [(f"zhang_case{c}", dict(name="zhang_case", case=c), 1e-6, "grad_l2") for c in (1, 2, 3, 4)]
    out += [(f"block_scale r={s:g}", dict(name="block_scale", spread=s, gamma=0.5), 1e-4, "subopt")
            for s in spreads]
    return out


def _tune_problem(label, spec, eps, metric, optimizers, steps, seeds):
    import torch

    import heterosim as hs
    torch.set_num_threads(1)
    spec = dict(spec)
    p = hs.problems.make(spec.pop("name"), **spec)
    rows = []
    grid = hs.engine.lr_grid(1e-5, 10.0, per_decade=1)
    for name in optimizers:
        hyper = {"L": p.L_blocks} if name == "blockwise_gd" else {}
        opt = hs.optimizers.make(name, **hyper)
        t0 = time.perf_counter()
        r = hs.engine.tune(p, opt, eps=eps, metric=metric, relative=True, lrs=grid, seeds=seeds,
                           steps=steps, refine=3)
        rows.append(dict(problem=label, optimizer=name, T=r.T, lr=r.lr, edge=r.edge, eps=eps, metric=metric,
                         seconds=time.perf_counter() - t0, **{k: v for k, v in p.ground_truth().items()
                                                               if k in ("d", "kappa", "rho_H")}))
    return rows


def run_demo(optimizers=DEMO_OPTIMIZERS, spreads=(0.0, 1.0, 2.0), steps: int = 15_000, seeds=(0,),
             n_jobs: int = -1, verbose: bool = True) -> pd.DataFrame:
    """Tune every optimizer on every demo problem; returns one row per (problem, optimizer)."""
    from joblib import Parallel, delayed
    probs = demo_problems(spreads)
    t0 = time.perf_counter()
    parts = Parallel(n_jobs=n_jobs, backend="loky")(
        delayed(_tune_problem)(label, spec, eps, metric, tuple(optimizers), steps, tuple(seeds))
        for label, spec, eps, metric in probs)
    table = pd.DataFrame([row for part in parts for row in part])
    if verbose:
        print(format_table(table, steps))
        print(f"\n{len(table)} tunings in {time.perf_counter() - t0:.1f} s")
    return table


def format_table(table: pd.DataFrame, steps: int) -> str:
    """Tuned T*(eps) per optimizer (rows) and problem (columns). '>N': not reached in N steps;
    '*': best lr on the grid's edge."""
    def cell(r):
        if not math.isfinite(r.T):
            return f">{steps}"
        return f"{int(r.T)}{'*' if r.edge else ''}"
    t = table.assign(cell=[cell(r) for r in table.itertuples()])
    wide = t.pivot(index="optimizer", columns="problem", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(table.optimizer)), columns=list(dict.fromkeys(table.problem)))
    head = ("Tuned iterations T*(eps) (zhang: ||g|| <= 1e-6 ||g0||; block_scale: f - f* <= 1e-4 (f0 - f*))\n"
            "'>N' = not reached within N steps, '*' = best lr at the edge of the grid\n")
    return head + wide.to_string()


if __name__ == "__main__":  # pragma: no cover
    run_demo()
