"""The default study behind ``heterosim demo``: a reduced C1 + C3 + C2.

Three cached sweeps (:mod:`heterosim.sweep`) under ``<root>/demo/``:

- ``demo/c1_block_scale``: the block-scale family at spreads of 0, 1 and 2 decades with
  gamma = 1/2 (equal initial loss per block), T to f - f* <= 1e-4 (f_0 - f*) (docs/theory.md C1);
- ``demo/c3_zhang``: the four Zhang et al. cases (kappa = 5000, 4 rotated blocks of 25),
  T to ||g_t||_2 <= 1e-6 ||g_0||_2 (docs/theory.md C3);
- ``demo/c2_bound_tightness``: six random block quadratics, every bound of C2 checked.

Every optimizer of :data:`DEMO_OPTIMIZERS` is tuned on each C1/C3 problem (C3 without the
constant-step sign methods, which cannot reach its target; a coarse
learning-rate grid, two per decade from 1e-5 to 100, refined around its best point; a
tuning stops as soon as no unfinished learning rate can beat the best finished one). The
demo prints the table of tuned T*(eps) per optimizer and problem and the three claims'
verdicts, and writes ``<root>/demo/table.csv`` and ``<root>/demo/figures/*.png`` (and
``.pdf``). A second run reuses the stored results (about a minute on 2 cores the first time).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

__all__ = ["DEMO_OPTIMIZERS", "DEMO_INSTANCES", "demo_problems", "demo_grids", "run_demo", "format_table"]

#: One representative per family: plain, heavy-ball, sign, sign with momentum, Adam, block-wise steps.
DEMO_OPTIMIZERS = ("sgd", "sgd_momentum", "signsgd", "signum", "adam", "blockwise_gd")
#: Random instances of the reduced C2.
DEMO_INSTANCES = tuple(range(6))
C1_EPS, C3_EPS = 1e-4, 1e-6
#: Constant-step sign methods oscillate at a floor of order eta L and never reach C3's relative
#: 1e-6 gradient (every learning rate would run its full budget): C3 leaves them out.
CONSTANT_SIGN_STEPS = ("signsgd", "signum", "sign_momentum")


def demo_problems(spreads=(0.0, 1.0, 2.0)):
    """(label, make kwargs, eps, metric) for every demo problem of the T* table."""
    out = [(f"zhang_case{c}", dict(name="zhang_case", case=c), C3_EPS, "grad_l2") for c in (1, 2, 3, 4)]
    out += [(f"block_scale r={s:g}", dict(name="block_scale", spread=s, gamma=0.5), C1_EPS, "subopt")
            for s in spreads]
    return out


def demo_grids(optimizers=DEMO_OPTIMIZERS, spreads=(0.0, 1.0, 2.0), steps: int = 20_000, seeds=(0,),
               instances=DEMO_INSTANCES) -> dict:
    """The three sweep grids of the demo, by study name (relative to ``<root>``)."""
    common = {"optimizer": list(optimizers), "seed": list(seeds), "relative": [True], "steps": [int(steps)]}
    return {
        "demo/c1_block_scale": {"problem": ["block_scale"], "gamma": [0.5], "spread": [float(s) for s in spreads],
                                "eps": [C1_EPS], "metric": ["subopt"], **common},
        "demo/c3_zhang": {"problem": ["zhang_case"], "case": [1, 2, 3, 4], "eps": [C3_EPS], "metric": ["grad_l2"],
                          **dict(common, optimizer=[o for o in optimizers if o not in CONSTANT_SIGN_STEPS])},
        "demo/c2_bound_tightness": {"instance": list(instances), "eps_rel": [0.1], "sigma_rel": [0.3]},
    }


def _t_table(c1: pd.DataFrame, c3: pd.DataFrame) -> pd.DataFrame:
    """One row per (problem, optimizer): the demo's tuned T* table (median over seeds)."""
    parts = []
    for t, label in ((c3, lambda r: f"zhang_case{int(r['case'])}"),
                     (c1, lambda r: f"block_scale r={r['spread']:g}")):
        t = t[t["status"] == "ok"].copy()
        if t.empty:
            continue
        t["problem"] = [label(r) for _, r in t.iterrows()]
        parts.append(t)
    t = pd.concat(parts, ignore_index=True)
    keep = [c for c in ("d", "kappa", "rho_H") if c in t.columns]
    g = t.groupby(["problem", "optimizer"], sort=False)
    out = g.agg(T=("T", "median"), lr=("lr", "median"), edge=("edge", "any"), eps=("eps", "first"),
                metric=("metric", "first"), seconds=("seconds", "sum"), **{k: (k, "first") for k in keep})
    return out.reset_index()


def run_demo(optimizers=DEMO_OPTIMIZERS, spreads=(0.0, 1.0, 2.0), steps: int = 20_000, seeds=(0,),
             n_jobs: int = -1, verbose: bool = True, root: str | Path = "results", force: bool = False,
             instances=DEMO_INSTANCES) -> pd.DataFrame:
    """Run (or reuse) the three demo sweeps, write the table and figures under
    ``<root>/demo/``, print the T* table and the verdicts; returns the T* table (one row per
    (problem, optimizer))."""
    from heterosim import plots, studies, sweep
    t0 = time.perf_counter()
    grids = demo_grids(optimizers, spreads, steps, seeds, instances)
    fns = {"demo/c1_block_scale": studies.measure_tuned, "demo/c3_zhang": studies.measure_tuned,
           "demo/c2_bound_tightness": studies.measure_bounds}
    tables = {name: sweep.run(grid, name, fns[name], root=root, n_jobs=n_jobs, force=force, progress=verbose,
                              verbose=verbose) for name, grid in grids.items()}
    table = _t_table(tables["demo/c1_block_scale"], tables["demo/c3_zhang"])
    out = Path(root) / "demo"
    table.to_csv(out / "table.csv", index=False)
    verdicts = []
    for name, claim in (("demo/c1_block_scale", "c1_block_scale"), ("demo/c3_zhang", "c3_zhang"),
                        ("demo/c2_bound_tightness", "c2_bound_tightness")):
        ok = tables[name][tables[name]["status"] == "ok"]
        if ok.empty:
            continue
        spec = studies.STUDIES[claim]
        plots.save(spec.figure(ok), out / "figures", claim)
        verdicts.append(str(spec.verdict(ok)))
    if verbose:
        print(format_table(table, steps))
        print()
        print("\n".join(verdicts))
        print(f"\n{len(table)} tunings and {len(tables['demo/c2_bound_tightness'])} bound checks in "
              f"{time.perf_counter() - t0:.1f} s; table {out / 'table.csv'}, figures {out / 'figures'}")
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
    wide = wide.astype(object).where(wide.notna(), "-")
    head = ("Tuned iterations T*(eps) (zhang: ||g|| <= 1e-6 ||g0||; block_scale: f - f* <= 1e-4 (f0 - f*))\n"
            "'>N' = not reached within N steps, '*' = best lr at the edge of the grid, '-' = not run\n")
    return head + wide.to_string()


if __name__ == "__main__":  # pragma: no cover
    run_demo()
