r"""C2: every measured T(eps) respects its bound, over random instances (docs/theory.md, C2).

Claim
-----
Every measured iteration count T(eps) is at most its bound, on every random instance, and the
tightness measured/bound says how far the runs are from the worst case. The slack is split into
its two sources: the bound against the exact worst case over its function class (performance
estimation, PEPit: ``pep_iterations``), and that worst case against the worst start on the instance's own
spectrum (``worst_start``). So measured/bound = (measured/worst start) x (worst start/bound).

Construction (:func:`random_instance`)
--------------------------------------
A random block-diagonal quadratic per instance, all from its seed: 2-6 blocks of 2-12
coordinates (so L_inf is exact by vertex enumeration), block scales over up to 2 decades,
within-block condition numbers up to 10^1.5, rotated or axis-aligned, per-block initial error
scales in [0.1, 10]. On each, every method runs at the step its bound prescribes, through the
one harness (:func:`heterosim.verify.check_bound`, the function ``heterosim verify`` uses):

* B1 (GD, ||g||_2), B2 (SignGD at eps/L_inf), B3 (steepest l_inf), B4 (block-wise 1/L_b,
  (sum_b ||g_b||^2/L_b)^1/2), B5 (GD in ||g||_1), at eps = :data:`EPS_REL` times the metric at x_0;
* A1 (Adam, beta1 = 0, beta2 = 0.9, eps_adam = 0) at eps = :data:`ADAM_EPS_REL` ||g_0||_1 (its
  eps^-4 count puts a smaller target out of reach of any run);
* Q1 (GD at 1/L on f - f*, at 2/(L+mu) on ||x - x*||), Q2 (block-wise 1/L_b), Q3 (Adam's fixed
  preconditioner 1/|g_0|), Q5 (heavy ball, Polyak's parameters, ||x - x*||), at the relative target
  :data:`EPS_LINEAR`;
* S1 (SGD with Gaussian noise of per-coordinate std :data:`SIGMA_REL` ||g_0||_2 / sqrt(d)), on the
  mean over :data:`NOISE_SEEDS` noise seeds less 3 standard errors (``SIGMA_MARGIN``), the one
  statistic of every stochastic bound.

Beside each: the worst start's T(eps) on the instance's spectrum (GD, block-wise GD, heavy ball:
:func:`heterosim.bounds.gd_worst_start` and its twins) and the worst case over the function class
(:func:`heterosim.bounds.worst_case`: B1/B4 on L-smooth functions, in closed form at 1/L; Q1/Q2 on
smooth strongly convex functions).

Controls
--------
None needed: each method runs at the step its bound prescribes. Q5's bound is only asymptotic
(r^T omits the factor (1 + cT)), so Q5 rows are reported, never counted as violations.

Criterion (:func:`criterion`, fixed before the full run)
--------------------------------------------------------
Over every (instance, non-asymptotic bound) row: the statistic is the violation rate (rows whose
check FAILED over rows judged), with a 95% Clopper-Pearson interval.

* REPRODUCED: no row failed.
* NOT REPRODUCED: some row failed (a bound is wrong, or its implementation is).
* UNDECIDED: a check was INCONCLUSIVE (capped before its bound's count with eps unreached), a
  config failed, or fewer instances than the full grid's :data:`N_INSTANCES`.

Tightness (measured/bound), measured/worst start, measured/PEP worst case and bound/PEP worst case
are reported per bound family, with their medians.

History
-------
* ``studies.verdict_c2`` (before issue 13): zero violations and zero undecided checks over 32
  instances; tightness min/median/max per bound. Its measure ``studies.measure_bounds`` ran its own
  first-hit loop, called a capped unreached run "undecided" only in its own table, and judged S1
  by mean + 2 SE <= eps^2 with its own noise draws, while ``heterosim verify`` used mean - 3 SE <=
  bound: two statistics for one bound.
* Issue 13 (this module): every row goes through ``heterosim.verify.check_bound`` (statuses
  pass / FAIL / INCONCLUSIVE; one statistic for stochastic bounds, mean - 3 SE); A1 (Adam) and Q5
  (heavy ball, reported only) added; the worst start and the PEP worst case stored beside each
  row; the criterion unchanged in substance (zero violations, UNDECIDED on inconclusive runs),
  now with a Clopper-Pearson interval on the violation rate.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from heterosim.claims.base import LEVEL, UNDECIDED, Claim, Verdict, decide, n_failed, ok_rows, undecided_reasons
from heterosim.claims.common import problem_constants

__all__ = ["STUDY", "N_INSTANCES", "EPS_REL", "EPS_LINEAR", "ADAM_EPS_REL", "ADAM_BETA2", "ADAM_MAX_STEPS", "SIGMA_REL",
           "NOISE_SEEDS", "MAX_CHECK_STEPS", "FAMILIES", "random_instance", "measure", "grid", "family_summary",
           "criterion", "figure", "CLAIM"]

STUDY = "c2_bound_tightness"
N_INSTANCES = 32
#: Target of the nonconvex bounds, relative to the metric at x_0.
EPS_REL = 0.1
#: Relative target of the linear-rate (quadratic) bounds Q1-Q3, Q5.
EPS_LINEAR = 1e-4
ADAM_EPS_REL = 0.5
ADAM_BETA2 = 0.9
#: A1's runs stop here (its bound asks for 10^4-10^6 steps; the runs reach eps within a few thousand).
ADAM_MAX_STEPS = 20_000
#: S1's noise: per-coordinate std SIGMA_REL ||g_0||_2 / sqrt(d); NOISE_SEEDS runs.
SIGMA_REL = 0.3
NOISE_SEEDS = 32
#: Longest run of a check; a bound above it whose target was not reached is INCONCLUSIVE.
MAX_CHECK_STEPS = 100_000
#: Bound family (one figure panel each) of every check label.
FAMILIES = {
    "B1": "GD, L-smooth (B1, B5)", "B5": "GD, L-smooth (B1, B5)",
    "B2": "sign, l_inf (B2, B3)", "B3": "sign, l_inf (B2, B3)",
    "B4": "block-wise 1/L_b (B4)", "A1": "Adam beta1=0, l_inf (A1)",
    "Q1 1/L": "quadratic rates (Q1-Q3)", "Q1 2/(L+mu)": "quadratic rates (Q1-Q3)", "Q2": "quadratic rates (Q1-Q3)",
    "Q3": "quadratic rates (Q1-Q3)", "Q5": "heavy ball (Q5, asymptotic)", "S1": "SGD, noisy (S1)",
}
_PASS, _FAIL, _INCONCLUSIVE = "pass", "FAIL", "INCONCLUSIVE"


def random_instance(seed: int, sigma: float | None = None):
    """A random block-diagonal quadratic for the bound checks, all from ``seed``: 2-6 blocks of
    2-12 coordinates (so L_inf is exact by vertex enumeration), block scales spread over up to 2
    decades, within-block condition numbers up to 10^1.5, rotated or axis-aligned, per-block
    initial error scales in [0.1, 10]. ``sigma`` adds Gaussian gradient noise of that
    per-coordinate standard deviation."""
    from heterosim.problems.quadratic import BlockQuadratic
    rng = np.random.default_rng([int(seed), 20240531])
    n = int(rng.integers(2, 7))
    sizes = rng.integers(2, 13, n)
    spread = rng.uniform(0.0, 2.0)
    scales = 10.0 ** rng.uniform(0.0, spread, n)
    kb = 10.0 ** rng.uniform(0.0, 1.5, n)
    spectra = [s * np.exp(rng.uniform(0.0, math.log(k), int(m))) for s, k, m in zip(scales, kb, sizes)]
    rotate = bool(rng.integers(2))
    init_scale = 10.0 ** rng.uniform(-1.0, 1.0, n)
    return BlockQuadratic.from_spectra(spectra, rotate=rotate, seed=int(seed), init_scale=init_scale,
                                       sigma=sigma, name="random_quadratic",
                                       knobs={"instance": int(seed), "rotate": rotate})


# ----------------------------------------------------------------------------- measure
def _row(label, chk, bound, optimizer, *, worst_start=math.nan, pep=None, asymptotic=False) -> dict:
    """One table row from a :class:`~heterosim.verify.BoundCheck` (first start)."""
    T, TB = float(chk.measured_T[0]), float(chk.bound_T[0])
    pep = pep or {}
    return {"check": label, "bound": bound.name, "family": FAMILIES[label], "optimizer": optimizer,
            "metric": bound.metric, "eps_abs": float(bound.eps) if bound.eps is not None else math.nan,
            "T": T, "T_bound": TB, "tightness": T / TB if math.isfinite(T) and TB > 0 else math.nan,
            "outcome": chk.status, "asymptotic": bool(asymptotic), "value_ratio": float(chk.value_ratio),
            "steps_run": int(chk.steps), "lr": float(chk.lr[0]), "worst_start": float(worst_start),
            "pep_iterations": float(pep.get("pep_iterations", math.nan)),
            "bound_over_pep": float(pep.get("bound_over_pep", math.nan)),
            "statement": bound.statement}


def _pep(bound) -> dict:
    """The worst case over the bound's class: its T(eps) (``pep_iterations``) and bound/worst."""
    from heterosim.bounds import PEP_CLASSES, worst_case
    if bound.name not in PEP_CLASSES:
        return {}
    try:
        w = worst_case(bound)
    except RuntimeError:
        return {}
    return {"pep_iterations": w.iterations, "bound_over_pep": w.ratio}


def _nonconvex(p, x0, s):
    """(label, bound, optimizer, lr, worst-start method) of the B-bounds and A1 at this start."""
    import heterosim.bounds as hb
    from heterosim.optimizers import for_problem, make
    L = p.L_blocks.numpy()
    linv0 = float(np.sqrt((p.blocks.sq_norms(p.grad(x0.unsqueeze(0)))[0].numpy() / L).sum()))
    gd = make("gd")
    return [
        ("B1", hb.gd_nonconvex(L2=p.L2, delta=s.delta, eps=EPS_REL * s.grad_l2), gd, None, "gd"),
        ("B2", hb.signgd_nonconvex(Linf=p.Linf, delta=s.delta, eps=EPS_REL * s.grad_l1), make("signsgd"), None, None),
        ("B3", hb.steepest_linf_nonconvex(Linf=p.Linf, delta=s.delta, eps=EPS_REL * s.grad_l1),
         make("steepest_linf", Linf=1.0), None, None),
        ("B4", hb.blockwise_gd_nonconvex(L_blocks=L, delta=s.delta, eps=EPS_REL * linv0),
         for_problem("blockwise_gd", p), 1.0, "blockwise_gd"),
        ("B5", hb.gd_nonconvex_l1(L2=p.L2, delta=s.delta, eps=EPS_REL * s.grad_l1, d=p.d), gd, None, None),
        ("A1", hb.adam_linf_nonconvex(Linf=p.Linf, delta=s.delta, beta2=ADAM_BETA2, eps=ADAM_EPS_REL * s.grad_l1),
         make("adam", betas=(0.0, ADAM_BETA2), eps=0.0), None, None),
    ]


def _rates(p, x0, s):
    """(label, bound, optimizer, lr, worst-start method) of the linear-rate bounds at this start."""
    import heterosim.bounds as hb
    from heterosim.optimizers import for_problem, make
    mu = float(p.mu_blocks.min())
    g0 = p.grad(x0.unsqueeze(0))[0]
    hbb = hb.heavy_ball_quadratic_rate(L=p.L2, mu=mu, eps=EPS_LINEAR, initial=s.dist)
    return [
        ("Q1 1/L", hb.gd_quadratic_rate(L=p.L2, mu=mu, step="1/L", metric="subopt", eps=EPS_LINEAR * s.subopt,
                                        initial=s.subopt), make("gd"), None, "gd"),
        ("Q1 2/(L+mu)", hb.gd_quadratic_rate(L=p.L2, mu=mu, step="2/(L+mu)", metric="dist",
                                             eps=EPS_LINEAR * s.dist, initial=s.dist), make("gd"), None, "gd"),
        ("Q2", hb.blockwise_gd_quadratic_rate(L_blocks=p.L_blocks, mu_blocks=p.mu_blocks, step="1/L", metric="subopt",
                                              eps=EPS_LINEAR * s.subopt, initial=s.subopt),
         for_problem("blockwise_gd", p), 1.0, "blockwise_gd"),
        ("Q3", hb.fixed_diagonal_precond_rate(H=p.hessian(), p=1.0 / g0.abs(), metric="subopt",
                                              eps=EPS_LINEAR * s.subopt, initial=s.subopt),
         make("adam_fixed_precond", eps=0.0), None, None),
        ("Q5", hbb, make("sgd_momentum", momentum=hbb.momentum), None, "heavy_ball"),
    ]


def measure(config: dict) -> list[dict]:
    """C2 on one random instance (config ``instance``, start ``seed``; ``max_steps``; ``only``: a subset
    of the check labels): every bound's check through :func:`heterosim.verify.check_bound`, with the
    worst start and the PEP worst case beside it."""
    from heterosim.verify import check_bound, starts, worst_start_T
    inst, seed = int(config["instance"]), int(config.get("seed", 0))
    p = random_instance(inst)
    x0 = p.initial_point(seed)
    s = starts(p, x0.unsqueeze(0))[0]
    rows, cap = [], int(config.get("max_steps", MAX_CHECK_STEPS))
    only = config.get("only")                           # a subset of the labels (tests); the grid runs all
    for label, b, opt, lr, method in _nonconvex(p, x0, s) + _rates(p, x0, s):
        if only and label not in only:
            continue
        ws = worst_start_T(p, method, b, s) if method else math.nan
        steps = None
        if b.asymptotic and math.isfinite(ws):         # run past the r^T count to measure T(eps) itself
            steps = int(max(math.ceil(b.iterations), ws)) + 1
        chk = check_bound(p, opt, b, lr=lr, x0=x0, steps=steps, max_steps=min(cap, ADAM_MAX_STEPS) if label == "A1"
                          else cap)
        rows.append(_row(label, chk, b, opt.name, worst_start=ws, pep=_pep(b), asymptotic=b.asymptotic))
    if not only or "S1" in only:
        rows.append(_s1_row(inst, seed, s, config))
    const = problem_constants(p)
    for r in rows:
        r.update(const, delta=s.delta, rotate=bool(p.bases is not None))
    return rows


def _s1_row(inst, seed, s, config) -> dict:
    """S1 on the noisy twin of the instance: the seed mean less 3 SE, as ``heterosim verify`` judges it."""
    import heterosim.bounds as hb
    from heterosim.verify import check_bound
    sigma = float(config.get("sigma_rel", SIGMA_REL)) * s.grad_l2 / math.sqrt(s.x0.numel())
    pn = random_instance(inst, sigma=sigma)
    b = hb.sgd_nonconvex(L2=pn.L2, delta=s.delta, sigma2=pn.sigma2, eps=EPS_REL * s.grad_l2)
    chk = check_bound(pn, "sgd", b, x0=s.x0, stochastic=True, noise_seeds=range(NOISE_SEEDS),
                      max_steps=int(config.get("max_steps", MAX_CHECK_STEPS)))
    return _row("S1", chk, b, "sgd")


def grid(quick: bool = False) -> dict:
    """Full: :data:`N_INSTANCES` instances, one start each; ``quick``: 2 instances, 20 000 steps."""
    if quick:
        return {"instance": [8, 9], "seed": [0], "max_steps": [20_000]}
    return {"instance": list(range(N_INSTANCES)), "seed": [0], "max_steps": [MAX_CHECK_STEPS]}


# ----------------------------------------------------------------------------- analysis
def family_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per family: rows, violations (asymptotic bounds apart: ``beyond_asymptotic``), inconclusive,
    and the medians of measured/bound,
    measured/worst start, measured/PEP worst-case T and bound/PEP (the bound's own slack)."""
    t = ok_rows(table)
    out = []
    for fam, g in t.groupby("family", sort=False):
        T, TB = g["T"].to_numpy(float), g["T_bound"].to_numpy(float)
        ws, pt = g["worst_start"].to_numpy(float), g["pep_iterations"].to_numpy(float)

        def med(x):
            x = x[np.isfinite(x)]
            return float(np.median(x)) if x.size else math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            asym = g["asymptotic"].astype(bool).to_numpy() if "asymptotic" in g.columns else np.zeros(len(g), bool)
            out.append({"family": fam, "rows": len(g),
                        "violations": int(((g["outcome"] == _FAIL).to_numpy() & ~asym).sum()),
                        "beyond_asymptotic": int(((g["outcome"] == _FAIL).to_numpy() & asym).sum()),
                        "inconclusive": int((g["outcome"] == _INCONCLUSIVE).sum()),
                        "tightness_median": med(T / TB), "tightness_min": float(np.nanmin(T / TB)) if len(g) else math.nan,
                        "tightness_max": float(np.nanmax(np.where(np.isfinite(T / TB), T / TB, np.nan))),
                        "vs_worst_start_median": med(T / ws), "worst_start_over_bound_median": med(ws / TB),
                        "vs_pep_median": med(T / pt), "bound_over_pep_median": med(g["bound_over_pep"].to_numpy(float))})
    return pd.DataFrame(out)


def _clopper_pearson(k: int, n: int) -> tuple[float, float] | None:
    from scipy import stats
    if n == 0:
        return None
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=LEVEL, method="exact")
    return float(ci.low), float(ci.high)


def _violations(family: str, n: int) -> str:
    if not n:
        return ""
    if "asymptotic" in family:  # an asymptotic rate is not a bound at finite T: reported, never judged
        return f", {n} run(s) above its asymptotic rate (not judged)"
    return f", {n} VIOLATED"


def criterion(table: pd.DataFrame) -> Verdict:
    """C2's fixed rule (module docstring) on a stored table."""
    title = "every measured T(eps) respects its bound"
    rule = ("over every (instance, non-asymptotic bound) row, checked by heterosim.verify.check_bound: REPRODUCED iff no "
            "row FAILED; NOT REPRODUCED iff one did; UNDECIDED on an INCONCLUSIVE (capped, unreached) row, a failed "
            f"config or fewer than {N_INSTANCES} instances. Statistic: violation rate with a {LEVEL:.0%} "
            "Clopper-Pearson interval")
    failed = n_failed(table)
    t = ok_rows(table)
    judged = t[~t["asymptotic"].astype(bool)] if "asymptotic" in t.columns else t
    n = len(judged)
    k = int((judged["outcome"] == _FAIL).sum()) if n else 0
    inconclusive = int((judged["outcome"] == _INCONCLUSIVE).sum()) if n else 0
    n_inst = int(t["instance"].nunique()) if "instance" in t.columns else 0
    extra = [f"{inconclusive} check(s) INCONCLUSIVE (capped before the bound's count, eps unreached)"] if inconclusive else []
    reasons = undecided_reasons(n_runs=n, n_failed=failed, budget=float(n_inst), full_budget=float(N_INSTANCES),
                                budget_name="instances", extra=extra)
    rate = k / n if n else math.nan
    outcome = decide(k == 0, reasons) if n else UNDECIDED
    s = family_summary(t) if n else pd.DataFrame()
    details = "; ".join(f"{r.family}: measured/bound {r.tightness_median:.3g}, measured/worst start "
                        f"{r.vs_worst_start_median:.3g}, measured/PEP {r.vs_pep_median:.3g}, bound/PEP "
                        f"{r.bound_over_pep_median:.3g}" + _violations(r.family, r.violations)
                        for r in s.itertuples()) if n else ""
    asym = t[t["asymptotic"].astype(bool)] if n and "asymptotic" in t.columns else t.iloc[0:0]
    if len(asym):
        details += (f"; Q5 (asymptotic, not judged): {int((asym['outcome'] == _FAIL).sum())}/{len(asym)} runs beyond "
                    f"the r^T count")
    return Verdict("C2", title, outcome, rule, "violation rate", rate, _clopper_pearson(k, n),
                   n - k - inconclusive, n, details=details, reasons=tuple(reasons or ([] if n else ["no rows"])),
                   table=s)


# ----------------------------------------------------------------------------- figure
def figure(table: pd.DataFrame):
    """One panel per bound family: measured T(eps) (dots), the worst start's T on the instance's
    spectrum (triangles) and the worst case over the function class (squares) against the
    bound's count, log-log, with the diagonal measured = bound."""
    from heterosim import plots
    plt = plots._plt()
    t = ok_rows(table)
    fams = list(dict.fromkeys(t["family"])) if len(t) else []
    ncol = 4
    nrow = max(1, math.ceil(len(fams) / ncol))
    with plt.rc_context(plots.PAPER_RC):
        fig, axes = plt.subplots(nrow, ncol, figsize=(9.0, 2.4 * nrow), squeeze=False)
        for ax, fam in zip(axes.flat, fams):
            _panel(ax, t[t["family"] == fam], fam)
        for ax in list(axes.flat)[len(fams):]:
            ax.set_axis_off()
        for ax in axes[:, 0]:
            ax.set_ylabel("iterations T(eps)")
        for ax in axes[-1, :]:
            ax.set_xlabel("bound's iterations")
        seen = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        if seen:
            fig.legend(list(seen.values()), list(seen), loc="lower right", fontsize=7, frameon=False)
        fig.suptitle("C2: measured, worst-start and worst-case T(eps) against each bound (random block quadratics)")
        fig.tight_layout()
    return fig


def _panel(ax, g, fam):
    TB = g["T_bound"].to_numpy(float)
    lo = np.nanmin(TB[np.isfinite(TB) & (TB > 0)]) if np.any(np.isfinite(TB) & (TB > 0)) else 1.0
    hi = np.nanmax(TB[np.isfinite(TB)]) if np.any(np.isfinite(TB)) else 10.0
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="measured = bound")
    for col, mk, lab in (("T", "o", "measured"), ("worst_start", "^", "worst start (spectrum)"),
                         ("pep_iterations", "s", "worst case (class, PEP)")):
        y = g[col].to_numpy(float)
        ok = np.isfinite(y) & np.isfinite(TB) & (y > 0)
        if ok.any():
            ax.loglog(TB[ok], y[ok], mk, ms=3.5, alpha=0.7, mfc="none" if mk != "o" else None, label=lab)
    bad = g["outcome"].to_numpy() == _FAIL
    asym = g["asymptotic"].astype(bool).to_numpy() if "asymptotic" in g.columns else np.zeros(len(g), bool)
    for sel, mk, lab in ((bad & ~asym, "rx", "violation"), (bad & asym, "k+", "beyond r^T (asymptotic bound)")):
        if sel.any():
            ax.loglog(TB[sel], g["T"].to_numpy(float)[sel], mk, ms=6, label=lab)
    from matplotlib.ticker import NullFormatter
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    with np.errstate(divide="ignore", invalid="ignore"):
        med = np.nanmedian(np.where(TB > 0, g["T"].to_numpy(float) / TB, np.nan))
    ax.set_title(f"{fam}\nmedian measured/bound {med:.2g}", fontsize=8)


CLAIM = Claim(label="C2", title="every measured T(eps) respects its bound", study=STUDY, criterion=criterion,
              figure=figure, grid=grid, measure=measure, experiment=f"{STUDY}.py")
