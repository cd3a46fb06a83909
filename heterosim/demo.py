"""The default study behind ``heterosim demo``: a reduced C1 + C3 + C2, each through its claim
module (:mod:`heterosim.claims`): the claim's measure function, its criterion, its figure.

Three cached sweeps (:mod:`heterosim.sweep`) under ``<root>/demo/``:

- ``demo/c1_block_scale``: the block-scale family at spreads of 0, 1 and 2 decades with
  gamma = 1/2 (equal initial loss per block), block-rotated, T* to f - f* <= 1e-4 (f_0 - f*)
  (docs/theory.md C1; :mod:`heterosim.claims.c1_block_scale`);
- ``demo/c3_zhang``: the four Zhang et al. cases (kappa = 5000, 4 rotated blocks of 25),
  T* to ||g_t|| <= 1e-6 ||g_0|| (SignGD and Signum to 1e-3: constant-step sign methods cannot
  reach 1e-6) (docs/theory.md C3; :mod:`heterosim.claims.c3_zhang`);
- ``demo/c2_bound_tightness``: C2's reduced grid (``grid(quick=True)``; the random instances
  ``instances`` where its grid has an ``instance`` axis).

Every arm of :data:`DEMO_ARMS` -- the momentum-matched pairs GD / Adam(beta1 = 0), heavy ball /
Adam, SignGD / Signum, and block-wise 1/L_b -- is tuned on each C1/C3 problem (a coarse
learning-rate grid, two per decade from 1e-5 to 100, refined around its best point; a tuning
stops as soon as no unfinished learning rate can beat the best finished one). Registered
optimizers that are no arm (``--all-optimizers``) are tuned beside them with
:func:`heterosim.claims.common.measure_tuned` and shown in the table, outside the verdicts.

The demo prints the table of tuned T*(eps) (rows: arms, matched pairs next to each other;
columns: problems) and the three claims' verdicts. With one seed and a reduced budget the
verdicts of C1 and C3 are UNDECIDED, saying why (the full runs are
``heterosim sweep experiments/c1_block_scale.py`` and ``.../c3_zhang.py``). It writes
``<root>/demo/table.csv`` and ``<root>/demo/figures/*.png`` (and ``.pdf``). A second run
reuses the stored results (about a minute on 2 cores the first time).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from heterosim.claims.base import ok_rows

__all__ = ["DEMO_ARMS", "DEMO_OPTIMIZERS", "DEMO_INSTANCES", "demo_problems", "demo_grids", "run_demo",
           "format_table"]

#: The arms of the demo (heterosim.claims.controls.ARMS), matched pairs next to each other.
DEMO_ARMS = ("sgd", "adam_beta1_0", "sgd_momentum", "adam", "signsgd", "signum", "blockwise_gd")
#: The registered optimizers behind the demo's arms (Adam also with beta1 = 0).
DEMO_OPTIMIZERS = ("sgd", "sgd_momentum", "signsgd", "signum", "adam", "blockwise_gd")
#: Random instances of the reduced C2 (where its grid has an ``instance`` axis).
DEMO_INSTANCES = tuple(range(6))
C1_EPS, C3_EPS = 1e-4, 1e-6
#: Constant-step sign methods oscillate at a floor of order eta L and never reach C3's relative
#: 1e-6 gradient: C3 runs them to its sign target instead (heterosim.claims.c3_zhang.EPS_SIGN).
CONSTANT_SIGN_STEPS = ("signsgd", "signum", "sign_momentum")
_STUDIES = ("demo/c1_block_scale", "demo/c3_zhang", "demo/c2_bound_tightness")


def demo_problems(spreads=(0.0, 1.0, 2.0)):
    """(label, make kwargs, eps, metric) for every demo problem of the T* table."""
    out = [(f"zhang_case{c}", dict(name="zhang_case", case=c), C3_EPS, "grad_l2") for c in (1, 2, 3, 4)]
    out += [(f"block_scale r={s:g}", dict(name="block_scale", spread=s, gamma=0.5), C1_EPS, "subopt")
            for s in spreads]
    return out


def _split(optimizers) -> tuple[list[str], list[str]]:
    """(arms, other registered optimizers) of a list of names."""
    from heterosim.claims import controls
    arms = [o for o in optimizers if o in controls.ARMS]
    return arms, [o for o in optimizers if o not in controls.ARMS]


def demo_grids(optimizers=DEMO_ARMS, spreads=(0.0, 1.0, 2.0), steps: int = 20_000, seeds=(0,),
               instances=DEMO_INSTANCES) -> dict:
    """The demo's sweep grids, by study name (relative to ``<root>``): C1's and C3's grids
    reduced (their claim modules' ``make_grid``), C2's quick grid, and, for optimizers that
    are no arm, ``demo/other_optimizers`` (both families, :func:`measure_tuned` configs)."""
    from heterosim.claims import c1_block_scale as c1
    from heterosim.claims import c3_zhang as c3
    from heterosim.claims import get
    arms, others = _split(optimizers)
    main = [a for a in arms if a not in CONSTANT_SIGN_STEPS]
    sign = [a for a in arms if a in CONSTANT_SIGN_STEPS]
    grids = {}
    if arms:
        grids["demo/c1_block_scale"] = c1.make_grid(gammas=(0.5,), spreads=spreads, seeds=seeds, steps=steps,
                                                    arms=arms, bases=())
        grids["demo/c3_zhang"] = c3.make_grid(seeds=seeds, steps=steps, arms=main, sign_arms=sign, bases=("block",))
    c2_grid = get("C2").grid(quick=True)
    if instances is not None and isinstance(c2_grid, dict) and "instance" in c2_grid:
        c2_grid = dict(c2_grid, instance=list(instances))
    grids["demo/c2_bound_tightness"] = c2_grid
    if others:
        common = {"seed": list(seeds), "relative": [True], "steps": [int(steps)]}
        other = [{"problem": ["block_scale"], "gamma": [0.5], "spread": [float(s) for s in spreads], "eps": [C1_EPS],
                  "metric": ["subopt"], "optimizer": others, **common}]
        reach = [o for o in others if o not in CONSTANT_SIGN_STEPS]
        if reach:
            other.insert(0, {"problem": ["zhang_case"], "case": [1, 2, 3, 4], "eps": [C3_EPS], "metric": ["grad_l2"],
                             "optimizer": reach, **common})
        grids["demo/other_optimizers"] = other
    return grids


def _label(r) -> str:
    return f"zhang_case{int(r['case'])}" if r["problem"] == "zhang_case" else f"block_scale r={r['spread']:g}"


def _t_table(tables: dict) -> pd.DataFrame:
    """One row per (problem, arm or optimizer): the demo's tuned T* table (median over seeds)."""
    from heterosim.claims import controls
    parts = []
    for name in ("demo/c3_zhang", "demo/c1_block_scale", "demo/other_optimizers"):
        t = tables.get(name)
        if t is None:
            continue
        t = ok_rows(t).copy()
        if t.empty:
            continue
        if "arm" in t.columns:
            t["row"] = [controls.ARMS[a].label for a in t["arm"]]
            t["matched_pair"] = [next((p.label for p in controls.PAIRS.values() if a in (p.a, p.b)), "")
                                 for a in t["arm"]]
        else:
            t["row"] = t["optimizer"]
            t["matched_pair"] = ""
        t["problem"] = [_label(r) for _, r in t.iterrows()]
        parts.append(t)
    if not parts:
        return pd.DataFrame(columns=["problem", "row", "matched_pair", "T", "lr", "edge", "eps", "metric"])
    t = pd.concat(parts, ignore_index=True)
    keep = [c for c in ("d", "kappa", "rho_H") if c in t.columns]
    g = t.groupby(["problem", "row"], sort=False)
    out = g.agg(matched_pair=("matched_pair", "first"), T=("T", "median"), lr=("lr", "median"),
                edge=("edge", "any"), eps=("eps", "first"), metric=("metric", "first"),
                seconds=("seconds", "sum"), **{k: (k, "first") for k in keep})
    return out.reset_index().rename(columns={"row": "optimizer"})


def run_demo(optimizers=DEMO_ARMS, spreads=(0.0, 1.0, 2.0), steps: int = 20_000, seeds=(0,),
             n_jobs: int = -1, verbose: bool = True, root: str | Path = "results", force: bool = False,
             instances=DEMO_INSTANCES) -> pd.DataFrame:
    """Run (or reuse) the demo sweeps, write the table and figures under ``<root>/demo/``,
    print the T* table and the verdicts; returns the T* table (one row per (problem, arm)).

    ``optimizers``: arm names (:data:`heterosim.claims.controls.ARMS`; a registered optimizer
    of the same name is its arm, e.g. "adam" is Adam with beta1 0.9) and other registered
    optimizers (tuned beside them, outside the verdicts)."""
    from heterosim import plots, sweep
    from heterosim.claims import common, get
    t0 = time.perf_counter()
    grids = demo_grids(optimizers, spreads, steps, seeds, instances)
    claims = {"demo/c1_block_scale": get("C1"), "demo/c3_zhang": get("C3"), "demo/c2_bound_tightness": get("C2")}
    tables = {}
    for name, grid in grids.items():
        claim = claims.get(name)
        fn, zip_ = (claim.measure, claim.zip) if claim is not None else (common.measure_tuned, ())
        tables[name] = sweep.run(grid, name, fn, zip=zip_ or None, root=root, n_jobs=n_jobs, force=force,
                                 progress=verbose, verbose=verbose)
    table = _t_table(tables)
    out = Path(root) / "demo"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table.csv", index=False)
    verdicts = []
    for name in _STUDIES:
        t = tables.get(name)
        if t is None or ok_rows(t).empty:
            continue
        claim = claims[name]
        plots.save(claim.figure(ok_rows(t)), out / "figures", claim.study)
        verdicts.append(str(claim.criterion(t)))
    if verbose:
        print(format_table(table, steps))
        print()
        print("\n\n".join(verdicts))
        n_c2 = len(tables["demo/c2_bound_tightness"])
        print(f"\n{len(table)} tunings and {n_c2} bound checks in {time.perf_counter() - t0:.1f} s; one seed and "
              f"{steps} steps: C1 and C3 stay UNDECIDED here, their full runs decide (heterosim sweep "
              f"experiments/c1_block_scale.py, experiments/c3_zhang.py). Table {out / 'table.csv'}, figures "
              f"{out / 'figures'}")
    return table


def format_table(table: pd.DataFrame, steps: int) -> str:
    """Tuned T*(eps) per arm (rows, momentum-matched pairs next to each other) and problem
    (columns). '>N': not reached in N steps; '*': best lr on the grid's edge; '+': SignGD /
    Signum on the Zhang cases, to ||g|| <= 1e-3 ||g0||."""
    def cell(r):
        if not math.isfinite(r.T):
            return f">{steps}"
        sign = "+" if (r.problem.startswith("zhang") and r.eps > C3_EPS) else ""
        return f"{int(r.T)}{'*' if r.edge else ''}{sign}"
    t = table.assign(cell=[cell(r) for r in table.itertuples()])
    wide = t.pivot(index="optimizer", columns="problem", values="cell")
    wide = wide.reindex(index=list(dict.fromkeys(table.optimizer)), columns=list(dict.fromkeys(table.problem)))
    wide = wide.astype(object).where(wide.notna(), "-")
    pair = table.drop_duplicates("optimizer").set_index("optimizer")["matched_pair"].reindex(wide.index).fillna("")
    wide.insert(0, "matched pair", pair.replace("", "-"))
    head = ("Tuned iterations T*(eps) (zhang: ||g|| <= 1e-6 ||g0||; block_scale: f - f* <= 1e-4 (f0 - f*))\n"
            "'>N' = not reached within N steps, '*' = best lr at the edge of the grid, '+' = to ||g|| <= 1e-3 ||g0|| "
            "(constant-step sign methods), '-' = not run\n")
    return head + wide.to_string()


if __name__ == "__main__":  # pragma: no cover
    run_demo()
