"""The default study behind ``heterosim demo``.

Every registered optimizer (aliases counted once) is tuned on

- the four Zhang et al. cases (kappa = 5000, 4 rotated blocks of 25): T to
  ||g_t||_2 <= 1e-6 ||g_0||_2 (THEORY.md C3), and
- the block-scale family at spreads of 0, 1 and 2 decades with gamma = 1/2 (equal
  initial loss per block): T to f_t - f* <= 1e-4 (f_0 - f*) (THEORY.md C1),

and a table of tuned T*(eps) per optimizer and problem is printed. Problems run in
parallel worker processes (joblib); each tuning is a coarse learning-rate grid (two
per decade, 1e-5 to 100) refined around its best point; a tuning stops as soon as
no unfinished learning rate can beat the best finished one.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

__all__ = ["DEMO_OPTIMIZERS", "demo_problems", "run_demo", "format_table"]

# distinct rules of the registry (gd is an alias of sgd)
DEMO_OPTIMIZERS = ("sgd", "sgd_momentum", "nesterov", "blockwise_gd", "normalized_gd", "block_normalized_gd",
                   "signsgd", "signum", "sign_momentum", "steepest_linf", "adam", "adamw", "rmsprop", "adagrad", "block_adam",
                   "adam_fixed_precond")


def demo_problems(spreads=(0.0, 1.0, 2.0)):
    """(label, make kwargs, eps, metric) for every demo problem."""
    out = [(f"zhang_case{c}", dict(name="zhang_case", case=c), 1e-6, "grad_l2") for c in (1, 2, 3, 4)]
    out += [(f"block_scale r={s:g}", dict(name="block_scale", spread=s, gamma=0.5), 1e-4, "subopt")
            for s in spreads]
    return out


LR_GRID = (1e-5, 100.0)  # two points per decade, then refined around the best


def _tune_one(label, spec, eps, metric, name, steps, seeds):
    import torch

    import heterosim as hs
    torch.set_num_threads(1)
    spec = dict(spec)
    p = hs.problems.make(spec.pop("name"), **spec)
    opt = hs.optimizers.for_problem(name, p)
    t0 = time.perf_counter()
    r = hs.engine.tune(p, opt, eps=eps, metric=metric, relative=True, lrs=hs.engine.lr_grid(*LR_GRID, per_decade=2),
                       seeds=seeds, steps=steps, refine=3)
    gt = p.ground_truth()
    return dict(problem=label, optimizer=name, T=r.T, lr=r.lr, edge=r.edge, eps=eps, metric=metric,
                seconds=time.perf_counter() - t0, d=gt["d"], kappa=gt["kappa"], rho_H=gt["rho_H"])


def run_demo(optimizers=DEMO_OPTIMIZERS, spreads=(0.0, 1.0, 2.0), steps: int = 20_000, seeds=(0,),
             n_jobs: int = -1, verbose: bool = True) -> pd.DataFrame:
    """Tune every optimizer on every demo problem; returns one row per (problem, optimizer)."""
    from joblib import Parallel, delayed
    probs = demo_problems(spreads)
    t0 = time.perf_counter()
    rows = Parallel(n_jobs=n_jobs, backend="loky")(
        delayed(_tune_one)(label, spec, eps, metric, name, steps, tuple(seeds))
        for label, spec, eps, metric in probs for name in optimizers)
    table = pd.DataFrame(rows)
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
