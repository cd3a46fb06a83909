r"""C5: SignGD's tuned learning rate against the dimension (docs/theory.md, C5; bound B2).

Claim
-----
B2 prescribes the SignGD step eta = eps / L_inf, which falls like 1/d when the per-coordinate
curvature is held fixed. How does the *tuned* step scale with d, and does it follow eps / L_inf?
On axis-aligned problems the coordinates decouple; a rotation couples them (a sign step has l2
length eta sqrt(d)). The exponent depends on the criterion (l1, l2 or loss; relative or absolute
eps), which is always stated.

Construction (:func:`sign_lr_problem`)
--------------------------------------
One block of d coordinates with the log-spaced spectrum [1, 10] and an N(0, I) initial error
(curvature and gradient scale per coordinate fixed as d grows), axis-aligned or Haar-rotated;
d in {8, 16, 32, 64, 128, 256}; 8 seeds (rotation and start). L_inf is the trace for
axis-aligned problems, exact by vertex enumeration for rotated d <= 16 and the certified SDP
upper bound above (``Linf_kind``). SignGD's constant learning rate is tuned (4 per decade over
``claims.common.LR_RANGE``, refined 4 times) for the fewest steps, within 40 000, to
metric <= eps. Criteria: ||g||_1, ||g||_2 and f - f* relative to their values at x_0 (eps_rel
1e-2, 1e-2, 1e-4), and ||g||_1 with an absolute eps (1e-2 times ||g_0||_1 of the d = 16
instance with the same seed). Beside each tuned step: B2's eta = eps_1 / L_inf, eps_1 the l1
target built the same way (from eps_rel for gradient criteria, from sqrt(eps_rel) for f - f*).

Controls
--------
Basis: axis-aligned against Haar-rotated instances of the same spectrum. Criterion: relative
against absolute eps (reported side by side).

Criterion (:func:`criterion`, fixed before the full run)
--------------------------------------------------------
On B2's metric ||g||_1 <= eps, four groups: {relative, absolute eps} x {axis-aligned, rotated}.
For each seed and group, the exponents of the tuned lr and of eps/L_inf against d are the
least-squares slopes of log10 lr and log10 eta_bound on log10 d; Delta = their difference.
Statistic: max over groups of |mean over seeds of Delta|, with a 95% bootstrap interval over
seeds (the seeds resampled together for every group).

* REPRODUCED: the interval lies at or below :data:`TOLERANCE` = 0.25 (the tuned step scales
  like eps/L_inf within 0.25 in the exponent, in every group).
* NOT REPRODUCED: the interval lies above 0.25.
* UNDECIDED: otherwise, or when the table cannot decide: an l1 run that reached eps at no
  learning rate or whose best learning rate sat on the grid's edge, a failed config, fewer than
  :data:`MIN_SEEDS` = 5 seeds, fewer dimensions than the full grid's six, a budget below 40 000
  steps.

Exponents for ||g||_2 and f - f* are reported, not decided on.

Result of the full run (384 configs, about 2.5 minutes on one core)
-------------------------------------------------------------------
REPRODUCED: max over groups of |Delta| = 0.098, 95% CI [0.093, 0.138], n_reached 192/192 (all 384
runs reached eps). Relative eps: tuned lr ~ d^-0.07 (axis-aligned) and d^-0.13 (rotated) against
eps/L_inf ~ d^+0.03 and d^-0.03: the tuned step barely depends on d, and neither does B2's step
once eps scales with ||g_0||_1. Absolute eps: lr ~ d^-1.08 and d^-1.14 against d^-0.99 and d^-1.05.
In every group the tuned step falls about 0.1 faster than eps/L_inf and sits above it
(median ratio 2.0 axis-aligned, 2.7-2.8 rotated; range 1.6-5.4).

History
-------
* ``studies.verdict_c5`` (before issue 12): the exponent of the median (over 3 seeds) tuned lr
  against d within 0.25 of the exponent of eps/L_inf, on the l1 criteria, axis-aligned and
  rotated; no interval; runs that reached nothing dropped out of the fit silently (a nan lr is
  skipped by the slope fit), and a reduced grid printed NOT REPRODUCED. Measured then (README):
  under relative criteria the tuned step barely depends on d, rotated or not.
* Issue 12 (this module): the same threshold, now on per-seed exponents with a bootstrap
  interval over 8 seeds, UNDECIDED for unreached or edge runs, too few seeds or dimensions and
  reduced budgets. The construction and measure are unchanged (moved from
  ``studies.sign_lr_problem`` / ``studies.measure_sign_lr``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from heterosim.claims.base import (LEVEL, UNDECIDED, Claim, Verdict, bootstrap_ci, decide, fmt_ci, n_failed, ok_rows,
                                   undecided_reasons)
from heterosim.claims.common import LR_RANGE, fit_slope, problem_constants

__all__ = ["STUDY", "DIMS", "SEEDS", "STEPS", "D_REF", "TOLERANCE", "MIN_SEEDS", "sign_lr_problem", "measure",
           "grid", "seed_exponents", "lr_exponents", "criterion", "figure", "CLAIM"]

STUDY = "c5_sign_lr"
DIMS = (8, 16, 32, 64, 128, 256)
SEEDS = tuple(range(8))
STEPS = 40_000
#: Reference dimension of the absolute-eps criterion (eps = eps_rel x the metric at x_0 at this d).
D_REF = 16
TOLERANCE = 0.25
MIN_SEEDS = 5
LR_PER_DECADE = 4
LR_REFINE = 4
BOOT_SEED = 0
#: The criteria of the full grid: (metric, eps_rel, relative).
CRITERIA = (("grad_l1", 1e-2, True), ("grad_l2", 1e-2, True), ("subopt", 1e-4, True), ("grad_l1", 1e-2, False))


def sign_lr_problem(d: int, rotate: bool, seed: int, kappa_block: float = 10.0):
    """C5's problem: one block of d coordinates with the log-spaced spectrum [1, kappa_block]
    (per-coordinate curvature and, with the N(0, I) initial error, gradient scale fixed as d
    grows), Haar-rotated or axis-aligned."""
    from heterosim.problems.quadratic import BlockQuadratic, _base_spectrum
    return BlockQuadratic.from_spectra([_base_spectrum(int(d), float(kappa_block))], rotate=bool(rotate),
                                       seed=int(seed), name="sign_lr_quadratic",
                                       knobs={"d": int(d), "rotate": bool(rotate), "kappa_block": float(kappa_block)})


def _initial_metric(p, seed, metric) -> float:
    x0 = p.initial_point(seed).unsqueeze(0)
    f, g = p.loss_and_grad(x0)
    return {"grad_l1": float(g.abs().sum()), "grad_l2": float(g.norm()), "subopt": float(f[0] - p.f_star)}[metric]


def measure(config: dict) -> dict:
    """SignGD's tuned learning rate on :func:`sign_lr_problem` (``d``, ``rotate``, ``seed``) for
    the criterion ``metric`` <= eps with eps = ``eps_rel`` times the metric at x_0 (``relative``)
    or times the metric at x_0 of the d = :data:`D_REF` instance (absolute). Beside it: the B2
    step ``eta_bound`` = eps_1 / L_inf, eps_1 the l1 target built the same way (from ``eps_rel``
    for gradient criteria, from ``sqrt(eps_rel)`` for f - f*), and ||g_0||_1."""
    import heterosim as hs
    d, rotate, seed = int(config["d"]), bool(config["rotate"]), int(config.get("seed", 0))
    metric, relative, eps_rel = config["metric"], bool(config["relative"]), float(config["eps_rel"])
    p = sign_lr_problem(d, rotate, seed)
    ref = p if relative else sign_lr_problem(D_REF, rotate, seed)
    eps = eps_rel if relative else eps_rel * _initial_metric(ref, seed, metric)
    r = hs.engine.tune(p, "signsgd", eps=eps, metric=metric, relative=relative,
                       lrs=hs.engine.lr_grid(*LR_RANGE, per_decade=LR_PER_DECADE), seeds=(seed,),
                       steps=int(config.get("steps", STEPS)), refine=LR_REFINE)
    # B2's l1 target matching the criterion: the same relative size for gradient norms, the square
    # root of it for f - f* (which scales like ||g||^2 on a quadratic)
    eps_l1 = (math.sqrt(eps_rel) if metric == "subopt" else eps_rel) * _initial_metric(ref, seed, "grad_l1")
    row = {"T": float(r.T), "lr": float(r.lr), "edge": bool(r.edge),
           "eps_abs": float(eps) if not relative else math.nan,
           "eta_bound": eps_l1 / p.Linf, "g0_l1": _initial_metric(p, seed, "grad_l1")}
    row.update(problem_constants(p))
    return {k: v for k, v in row.items() if k not in config}


def grid(quick: bool = False) -> list:
    """Full: 6 dimensions x 2 bases x 4 criteria x 8 seeds = 384 configs; ``quick``: d 8-32, one
    seed, the relative l1 criterion, 5 000 steps."""
    if quick:
        return [{"d": [8, 16, 32], "rotate": [False, True], ("metric", "eps_rel"): [("grad_l1", 1e-2)],
                 "relative": [True], "seed": [0], "steps": [5_000]}]
    rel = {"d": list(DIMS), "rotate": [False, True],
           ("metric", "eps_rel"): [(m, e) for m, e, r in CRITERIA if r], "relative": [True], "seed": list(SEEDS),
           "steps": [STEPS]}
    absolute = {"d": list(DIMS), "rotate": [False, True], "metric": ["grad_l1"], "eps_rel": [1e-2],
                "relative": [False], "seed": list(SEEDS), "steps": [STEPS]}
    return [rel, absolute]


# ----------------------------------------------------------------------------- analysis
def _group_name(metric, relative, rotate) -> str:
    return f"{metric} {'rel' if relative else 'abs'} {'rotated' if rotate else 'axis'}"


def seed_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per (criterion, rotation, seed): the fitted exponents of the tuned lr and of eps/L_inf
    against d (least squares in log-log), their difference ``delta``, the number of dimensions and
    of unreached / edge runs. An unreached run (lr nan) makes that seed's exponent nan, never a fit
    over fewer points."""
    t = ok_rows(table)
    rows = []
    for (metric, relative, rotate, seed), g in t.groupby(["metric", "relative", "rotate", "seed"], sort=True):
        g = g.sort_values("d")
        x = np.log10(g["d"].to_numpy(float))
        lr = g["lr"].to_numpy(float)
        unreached = int((~np.isfinite(lr)).sum())
        e_lr = fit_slope(x, np.log10(lr)) if unreached == 0 else math.nan
        e_eta = fit_slope(x, np.log10(g["eta_bound"].to_numpy(float)))
        rows.append({"metric": metric, "relative": bool(relative), "rotate": bool(rotate), "seed": int(seed),
                     "group": _group_name(metric, relative, rotate), "exponent_lr": e_lr, "exponent_eta_bound": e_eta,
                     "exponent_Linf": fit_slope(x, np.log10(g["Linf"].to_numpy(float))), "delta": e_lr - e_eta,
                     "n_d": int(g["d"].nunique()), "unreached": unreached, "edge": int(g["edge"].astype(bool).sum())})
    return pd.DataFrame(rows)


def lr_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per (criterion, rotation): the mean over seeds of the per-seed exponents, with the 95%
    bootstrap interval of the mean difference ``delta`` over seeds."""
    e = seed_exponents(table)
    rows = []
    for (metric, relative, rotate), g in e.groupby(["metric", "relative", "rotate"], sort=False):
        dl = g["delta"].to_numpy(float)
        ci = bootstrap_ci(dl, np.mean, seed=BOOT_SEED) if np.isfinite(dl).all() else None
        rows.append({"metric": metric, "relative": bool(relative), "rotate": bool(rotate),
                     "group": _group_name(metric, relative, rotate), "exponent_lr": float(g["exponent_lr"].mean()),
                     "exponent_eta_bound": float(g["exponent_eta_bound"].mean()),
                     "exponent_Linf": float(g["exponent_Linf"].mean()), "delta": float(np.mean(dl)),
                     "lo": ci[0] if ci else math.nan, "hi": ci[1] if ci else math.nan, "n_seeds": int(len(g)),
                     "unreached": int(g["unreached"].sum()), "edge": int(g["edge"].sum())})
    return pd.DataFrame(rows)


def criterion(table: pd.DataFrame) -> Verdict:
    """C5's fixed rule (module docstring) on a stored table."""
    title = "SignGD's tuned learning rate scales like eps/L_inf with d"
    rule = (f"criterion ||g||_1 <= eps (B2's metric; eps relative to ||g_0||_1, or absolute, fixed at the d={D_REF} "
            f"value), axis-aligned and rotated: per seed, the exponent (log-log slope against d) of the tuned "
            f"SignGD lr "
            f"minus that of eps/L_inf; REPRODUCED iff the {LEVEL:.0%} bootstrap CI (over seeds) of max over the four "
            f"groups of |mean difference| lies at or below {TOLERANCE}; NOT REPRODUCED iff it lies above; "
            f"else UNDECIDED")
    failed = n_failed(table)
    t = ok_rows(table)
    l1 = t[t["metric"] == "grad_l1"] if "metric" in t.columns else t.iloc[0:0]
    n_runs = len(l1)
    n_reached = int(np.isfinite(l1["T"].to_numpy(float)).sum()) if n_runs else 0
    e = seed_exponents(l1) if n_runs else pd.DataFrame()
    extra = []
    if n_runs:
        edge = int(l1["edge"].astype(bool).sum())
        if edge:
            extra.append(f"{edge} l1 run(s) had their best learning rate on the grid's edge")
        if l1["d"].nunique() < len(DIMS):
            extra.append(f"{l1['d'].nunique()} dimension(s); the full grid has {len(DIMS)}")
        groups = {(r, rot) for r in (True, False) for rot in (True, False)}
        have = set(zip(l1["relative"].astype(bool), l1["rotate"].astype(bool)))
        if groups - have:
            missing = ", ".join(_group_name("grad_l1", r, o) for r, o in sorted(groups - have))
            extra.append(f"l1 group(s) missing: {missing}")
        if not e.empty and (e["n_d"] < l1["d"].nunique()).any():
            extra.append("a seed lacks some dimensions")
    reasons = undecided_reasons(n_runs=n_runs, n_unreached=n_runs - n_reached, n_failed=failed,
                                n_seeds=int(l1["seed"].nunique()) if n_runs else 0, min_seeds=MIN_SEEDS,
                                budget=float(l1["steps"].min()) if n_runs and "steps" in l1.columns else None,
                                full_budget=float(STEPS), extra=extra)
    if e.empty:
        return Verdict("C5", title, UNDECIDED, rule, "max_group |exponent(lr) - exponent(eps/L_inf)|", math.nan, None,
                       n_reached, n_runs, reasons=tuple(reasons or ["no l1 runs in the table"]))
    piv = e.pivot_table(index="seed", columns="group", values="delta", aggfunc="first", dropna=False)

    def stat(idx):
        rows = piv.to_numpy(float)[np.asarray(idx, int)]
        return float(np.max(np.abs(rows.mean(0))))
    value = stat(np.arange(len(piv)))
    ci = bootstrap_ci(np.arange(len(piv), dtype=float), stat, seed=BOOT_SEED) if np.isfinite(value) else None
    if ci is None and not reasons:
        reasons = ["no interval for the statistic (too few seeds or a missing exponent)"]
    passed = ci is not None and ci[1] <= TOLERANCE
    if not reasons and not passed and not (ci[0] > TOLERANCE):
        reasons = [f"the interval [{ci[0]:.3f}, {ci[1]:.3f}] straddles {TOLERANCE}"]
    outcome = decide(passed, reasons)
    ex = lr_exponents(t)
    l1g = ex[ex["metric"] == "grad_l1"]
    worst = l1g.loc[l1g["delta"].abs().idxmax(), "group"] if not l1g.empty and l1g["delta"].notna().any() else ""
    n_all = int(np.isfinite(t["T"].to_numpy(float)).sum()) if "T" in t.columns else 0
    details = (f"all criteria (l2 and f - f* reported only): {n_all}/{len(t)} runs reached eps; "
               "exponents (mean over seeds): ") + "; ".join(
        f"{r.group}: lr ~ d^{r.exponent_lr:+.2f} vs eps/L_inf ~ d^{r.exponent_eta_bound:+.2f} "
        f"(difference {r.delta:+.2f}{fmt_ci((r.lo, r.hi)) if np.isfinite(r.lo) else ''})" for r in ex.itertuples())
    basis = "; ".join(
        f"{'relative' if rel else 'absolute'} eps: lr ~ " + " vs ".join(
            f"d^{g.loc[g['rotate'] == rot, 'exponent_lr'].iloc[0]:+.2f} {'rotated' if rot else 'axis-aligned'}"
            for rot in (False, True) if (g["rotate"] == rot).any())
        for rel, g in l1g.groupby("relative", sort=False))
    return Verdict("C5", title, outcome, rule, f"max_group |exponent(lr) - exponent(eps/L_inf)| (worst: {worst})",
                   value, ci, n_reached, n_runs, factor=f"basis (l1 criteria): {basis}",
                   details=details, reasons=tuple(reasons), table=ex)


# ----------------------------------------------------------------------------- figure
def figure(table: pd.DataFrame):
    """Two panels (axis-aligned, rotated): the tuned SignGD lr against d per criterion (median
    over seeds, band min-max), and B2's eps/L_inf dashed for the two l1 criteria; runs that
    reached no target are marked by open triangles at the top."""
    from heterosim import plots
    plt = plots._plt()
    t = ok_rows(table).copy()
    t["criterion"] = [f"{m} {'rel' if r else 'abs'}" for m, r in zip(t["metric"], t["relative"])]
    ex = lr_exponents(t) if not t.empty else pd.DataFrame()
    with plt.rc_context(plots.PAPER_RC):
        fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.5), sharey=True)
        crits = list(dict.fromkeys(t["criterion"]))
        for ax, rot in zip(axes, (False, True)):
            s = t[t["rotate"].astype(bool) == rot]
            for i, c in enumerate(crits):
                g = s[s["criterion"] == c]
                if g.empty:
                    continue
                q = g.groupby("d")["lr"].agg(["median", "min", "max"])
                ax.plot(q.index, q["median"], "o-", color=f"C{i}", ms=3, label=f"tuned, {c}")
                ax.fill_between(q.index, q["min"], q["max"], color=f"C{i}", alpha=0.2, lw=0)
                if c.startswith("grad_l1"):
                    b = g.groupby("d")["eta_bound"].median()
                    ax.plot(b.index, b.to_numpy(), "--", color=f"C{i}", lw=1.0, label=f"eps/L_inf, {c}")
                miss = g.groupby("d")["lr"].apply(lambda v: int((~np.isfinite(v.to_numpy(float))).sum()))
                plots.mark_unreached(ax, miss.index.to_numpy(float), miss.to_numpy(), f"C{i}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("dimension d")
            geo = "rotated" if rot else "axis-aligned"
            title = geo
            if not ex.empty:
                sel = ex[(ex["rotate"] == rot) & (ex["metric"] == "grad_l1")]
                title += "\n" + ", ".join(f"{'rel' if r.relative else 'abs'}: d^{r.exponent_lr:+.2f} vs "
                                          f"d^{r.exponent_eta_bound:+.2f}" for r in sel.itertuples())
            ax.set_title(title, fontsize=8)
        axes[0].set_ylabel("SignGD learning rate")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, frameon=False, loc="lower center", ncol=3)
        fig.suptitle("C5: tuned SignGD step against d (solid, band = seeds) and B2's eps/L_inf (dashed)")
        fig.tight_layout(rect=(0, 0.17, 1, 1))
    return fig


CLAIM = Claim(label="C5", title="SignGD's tuned learning rate scales like eps/L_inf with d", study=STUDY,
              criterion=criterion, figure=figure, grid=grid, measure=measure, experiment=f"{STUDY}.py")
