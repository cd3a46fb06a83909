r"""The measurements behind the claims of docs/theory.md, and their analyses.

Two halves, kept apart (compute -> table -> figures):

* ``measure_*(config) -> rows``: one sweep config in, its measured rows out. The
  experiment scripts (``experiments/*.py``) pair each with a grid and hand both to
  :func:`heterosim.sweep.run`. Everything is seeded from the config.
* ``verdict_*(table) -> Verdict`` and ``figure_*(table) -> Figure``: read a results
  table, never run an optimizer. :data:`STUDIES` maps each study name to its figure
  and verdict; ``heterosim plot <study>`` and ``paper_figs/*.py`` use it.

Claims (docs/theory.md): C1 block-scale spread, C2 bound tightness, C3 Zhang cases, C4 class
imbalance, C5 SignGD learning rate vs dimension, C6 linear-head growth, and the
Hessian-only vs gradient-only decomposition. Each verdict states its pass criterion
beside the statistic; a claim that does not reproduce is reported as such.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = [
    "Verdict", "Study", "STUDIES", "fit_slope", "trajectory", "problem_constants",
    "measure_tuned", "measure_bounds", "measure_class_imbalance", "measure_sign_lr", "measure_head_growth",
    "random_instance", "sign_lr_problem", "slopes", "zhang_gaps", "bound_summary", "class_progress",
    "class_iterations", "lr_exponents", "head_fractions",
    "verdict_c1", "verdict_c2", "verdict_c3", "verdict_c4", "verdict_c5", "verdict_c6", "verdict_decomposition",
    "figure_c1", "figure_c2", "figure_c3", "figure_c4", "figure_c5", "figure_c6", "figure_decomposition",
]

#: Learning-rate grid of every tuning (two per decade, then refined around the best),
#: wide enough that no tuned rate of these studies sits on its edge (the ``edge`` column says).
LR_RANGE = (1e-5, 100.0)
LR_PER_DECADE = 2
LR_REFINE = 3

# ----------------------------------------------------------------------------- helpers


@dataclass
class Verdict:
    """A claim's pass/fail check: what was tested, the criterion, the numbers behind it."""

    claim: str
    reproduced: bool | None          # None: not decidable from this table
    criterion: str
    statistic: str
    table: pd.DataFrame | None = field(default=None, repr=False)

    def __str__(self) -> str:
        word = {True: "REPRODUCED", False: "NOT REPRODUCED", None: "UNDECIDED"}[self.reproduced]
        return f"{self.claim}: {word}\n  criterion: {self.criterion}\n  {self.statistic}"


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


def _ok(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "ok"] if "status" in table.columns else table


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


def _quadratic_bounds(p, eps: float, metric: str, relative: bool) -> dict:
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
    row.update(_quadratic_bounds(p, eps, metric, relative))
    if config["problem"] == "zhang_case":
        row["JS0"] = _js0(p)
    return _beside(row, config)


def _beside(row: dict, config: dict) -> dict:
    """The measured row without the keys the config already holds (the config's value is the
    one asked for; e.g. kappa = 5000 asked, 5000.000000000004 computed)."""
    return {k: v for k, v in row.items() if k not in config}


def _js0(p) -> float:
    """JS0 of the exact block spectra (Zhang et al. 2024's block-heterogeneity measure)."""
    from heterosim import measures
    grid = measures.spectrum_grid(torch.cat(p.block_spectra))
    dens = measures.exact_block_density(p.block_spectra, grid)
    return float(measures.js0(dens, grid)[0])


def slopes(table: pd.DataFrame, knob: str = "spread", by: Sequence[str] = ("gamma", "optimizer")) -> pd.DataFrame:
    """Per group: the slope of log10 T* against ``knob`` (median over seeds at each knob value),
    T* at the smallest and largest knob, and how many knob values reached eps."""
    t = _ok(table)
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


# ----------------------------------------------------------------------------- C1


def verdict_c1(table: pd.DataFrame) -> Verdict:
    """C1: tuned GD's T* grows with the block-scale spread when the flat blocks hold a real
    share of the loss (gamma >= 1/2), about like kappa (slope 1 in decades); Adam stays flat;
    constant-step SignGD in between."""
    s = slopes(table, "spread", ("gamma", "optimizer"))
    S = s.set_index(["gamma", "optimizer"])["slope"]
    lines, ok = [], True
    for gamma in sorted(s["gamma"].unique()):  # ok: True/False, None once a needed optimizer is missing
        row = {o: S.get((gamma, o), math.nan) for o in s.loc[s["gamma"] == gamma, "optimizer"]}
        lines.append(f"gamma={gamma:g}: " + ", ".join(f"{o} {v:+.2f}" for o, v in row.items()))
        if gamma >= 0.5:
            if not {"sgd", "adam", "signsgd"} <= set(row):
                ok = None
                continue
            sgd, adam, sign = row["sgd"], row["adam"], row["signsgd"]
            ok = ok and bool(sgd >= 0.5 and abs(adam) <= 0.2 and adam < sign < sgd)
    kappa_slope = fit_slope(table["spread"], np.log10(table["kappa"])) if "kappa" in table else math.nan
    return Verdict(
        "C1 block-scale spread", ok,
        "for every gamma >= 1/2: slope of log10 T* vs spread (decades) is >= 0.5 for GD, |.| <= 0.2 for "
        f"Adam, and Adam < SignGD < GD (the global condition number has slope {kappa_slope:.2f})",
        "slopes of log10 T* per decade of spread -- " + "; ".join(lines), s)


def figure_c1(table: pd.DataFrame):
    from heterosim import plots
    return plots.complexity_curves(_ok(table), x="spread", y="T", hue="optimizer", facet="gamma",
                                   bounds={"bound_gd_T": "Q1: GD bound", "bound_blockwise_T": "Q2: block-wise GD bound"},
                                   xlabel="block-scale spread (decades)", ylabel="tuned T*(eps)",
                                   title="C1: f - f* <= 1e-4 (f0 - f*), 8 rotated blocks of 16")


def verdict_decomposition(table: pd.DataFrame) -> Verdict:
    """Which heterogeneity slows tuned GD: Hessian-only (block curvatures spread, equal block
    gradients at x_0) or gradient-only (identical blocks, initial errors spread)."""
    s = slopes(table, "spread", ("problem", "optimizer"))
    S = s.set_index(["problem", "optimizer"])["slope"]
    h, g = S.get(("hessian_only", "sgd"), math.nan), S.get(("gradient_only", "sgd"), math.nan)
    ok = bool(h >= 0.5 and abs(g) <= 0.2)
    lines = [f"{pr}: " + ", ".join(f"{o} {S[(pr, o)]:+.2f}" for o in s.loc[s["problem"] == pr, "optimizer"])
             for pr in s["problem"].unique()]
    return Verdict("Decomposition (Hessian-only vs gradient-only)", ok,
                   "GD's slope of log10 T* vs spread is >= 0.5 on hessian_only and within +-0.2 on "
                   "gradient_only (Hessian heterogeneity, not gradient heterogeneity, slows GD)",
                   "slopes per decade -- " + "; ".join(lines), s)


def figure_decomposition(table: pd.DataFrame):
    from heterosim import plots
    return plots.complexity_curves(_ok(table), x="spread", y="T", hue="optimizer", facet="problem",
                                   bounds={"bound_gd_T": "Q1: GD bound"},
                                   xlabel="spread (decades)", ylabel="tuned T*(eps)",
                                   title="Hessian-only vs gradient-only heterogeneity")


# ----------------------------------------------------------------------------- C2
#: Relative target of the linear-rate (quadratic) bounds Q1-Q3.
EPS_LINEAR = 1e-4
#: Longest run of a bound check; a bound above it whose target was not reached is 'undecided'.
MAX_CHECK_STEPS = 100_000
#: Seeds of the stochastic (S1) check, and the normal quantile of its confidence margin.
S1_SEEDS = 32
S1_Z = 2.0


def random_instance(seed: int, sigma: float | None = None):
    """A random block-diagonal quadratic for the bound checks (C2), all from ``seed``:
    2-6 blocks of 2-12 coordinates (so L_inf is exact by vertex enumeration), block scales
    spread over up to 2 decades, within-block condition numbers up to 10^1.5, rotated or
    axis-aligned, per-block initial error scales in [0.1, 10]. ``sigma`` adds Gaussian
    gradient noise of that per-coordinate standard deviation."""
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


def _first_hit(p, opt, lr, metric, eps, relative, steps, seed) -> float:
    from heterosim import engine
    target = engine.Target(metric, float(eps), relative)
    res = engine.run(p, opt, [lr], [seed], steps=steps, record="none", target=target)
    return float(res.hits[target][0])


def _steps_for(bound) -> int:
    it = bound.iterations
    return int(min(math.ceil(it) + 1, MAX_CHECK_STEPS)) if math.isfinite(it) else MAX_CHECK_STEPS


def _check_row(check, bound, T, optimizer, lr, steps_run) -> dict:
    it = float(bound.iterations)
    decided = math.isfinite(T) or steps_run > it
    holds = bound.holds(T) if decided else None
    return {"check": check, "bound": bound.name, "optimizer": optimizer, "metric": bound.metric, "eps_abs": float(bound.eps),
            "T": float(T), "T_bound": it, "tightness": float(T) / it if math.isfinite(T) and it > 0 else math.nan,
            "holds": holds, "lr": float(lr), "statement": bound.statement}


def measure_bounds(config: dict) -> list[dict]:
    """C2: on one random instance (:func:`random_instance`, config ``instance``), run each
    method at the step its bound prescribes and compare the first step T at which the
    bound's metric is <= eps with the bound's iteration count.

    Nonconvex bounds use eps = ``eps_rel`` times the metric at x_0: B1 (GD, ||g||_2), B2
    (SignGD, eta = eps/L_inf, ||g||_1), B3 (steepest l_inf), B4 (block-wise GD,
    (sum_b ||g_b||^2/L_b)^1/2), B5 (GD in ||g||_1), S1 (SGD with noise, the running mean of
    ||g_t||^2 over :data:`S1_SEEDS` seeds plus S1_Z standard errors). Linear-rate bounds
    use the relative target :data:`EPS_LINEAR`: Q1 (GD 1/L, f - f*; GD 2/(L+mu), ||x - x*||),
    Q2 (block-wise 1/L_b, f - f*), Q3 (the fixed preconditioner 1/|g_0|, f - f*)."""
    import heterosim as hs
    from heterosim import bounds, engine
    inst, seed = int(config["instance"]), int(config.get("seed", 0))
    eps_rel = float(config.get("eps_rel", 0.1))
    p = random_instance(inst)
    x0 = p.initial_point(seed)
    f0, g0 = (v[0] for v in p.loss_and_grad(x0.unsqueeze(0)))
    delta = float(f0) - p.f_star
    g0_l2, g0_l1 = float(g0.norm()), float(g0.abs().sum())
    L_b = p.L_blocks
    g0_linv = float((p.blocks.sq_norms(g0.unsqueeze(0))[0] / L_b).sum().sqrt())
    mu = float(p.mu_blocks.min())
    rows = []

    def nonconvex(check, bound, opt, lr, label):
        steps = _steps_for(bound)
        T = _first_hit(p, opt, lr, bound.metric, bound.eps, False, steps, seed)
        rows.append(_check_row(check, bound, T, label, lr, steps))

    gd = hs.optimizers.make("sgd")
    b = bounds.gd_nonconvex(L2=p.L2, delta=delta, eps=eps_rel * g0_l2)
    nonconvex("B1 GD", b, gd, b.lr, "sgd")
    b = bounds.signgd_nonconvex(Linf=p.Linf, delta=delta, eps=eps_rel * g0_l1)
    nonconvex("B2 SignGD", b, hs.optimizers.make("signsgd"), b.lr, "signsgd")
    b = bounds.steepest_linf_nonconvex(Linf=p.Linf, delta=delta, eps=eps_rel * g0_l1)
    nonconvex("B3 steepest l_inf", b, hs.optimizers.for_problem("steepest_linf", p), 1.0, "steepest_linf")
    b = bounds.gd_nonconvex_l1(L2=p.L2, delta=delta, eps=eps_rel * g0_l1, d=p.d)
    nonconvex("B5 GD in l1", b, gd, b.lr, "sgd")

    # B4: the metric (sum_b ||g_b||^2 / L_b)^1/2 from the recorded block norms
    b = bounds.blockwise_gd_nonconvex(L_blocks=L_b, delta=delta, eps=eps_rel * g0_linv)
    steps = _steps_for(b)
    res = engine.run(p, hs.optimizers.for_problem("blockwise_gd", p), [1.0], [seed], steps=steps, record="blocks")
    linv = np.sqrt((res.curves["blocks"][0] ** 2 / L_b.numpy()).sum(-1))
    hit = np.nonzero(linv <= b.eps)[0]
    T = float(res.record_steps[hit[0]]) if hit.size else math.inf
    rows.append(_check_row("B4 block-wise GD", b, T, "blockwise_gd", 1.0, steps))

    def linear(check, bound, opt, lr, label):
        steps = _steps_for(bound)
        T = _first_hit(p, opt, lr, bound.metric, EPS_LINEAR, True, steps, seed)
        rows.append(_check_row(check, bound, T, label, lr, steps))

    b = bounds.gd_quadratic_rate(L=p.L2, mu=mu, step="1/L", metric="subopt", eps=EPS_LINEAR)
    linear("Q1 GD 1/L", b, gd, b.lr, "sgd")
    b = bounds.gd_quadratic_rate(L=p.L2, mu=mu, step="2/(L+mu)", metric="dist", eps=EPS_LINEAR)
    linear("Q1 GD 2/(L+mu)", b, gd, b.lr, "sgd")
    blockwise = hs.optimizers.for_problem("blockwise_gd", p)        # step lr g_b / L_b: lr = 1 is eta_b = 1/L_b
    b = bounds.blockwise_gd_quadratic_rate(L_blocks=L_b, mu_blocks=p.mu_blocks, step="1/L", metric="subopt",
                                           eps=EPS_LINEAR)
    linear("Q2 block-wise GD", b, blockwise, 1.0, "blockwise_gd")
    b = bounds.fixed_diagonal_precond_rate(H=p.hessian(), p=1.0 / g0.abs(), step="2/(L+mu)",
                                           metric="subopt", eps=EPS_LINEAR)
    linear("Q3 fixed precond", b, hs.optimizers.make("adam_fixed_precond", eps=0.0), b.lr, "adam_fixed_precond")

    # S1: SGD with additive noise, checked on the seed-mean of the running mean of ||g_t||^2
    sigma = float(config.get("sigma_rel", 0.3)) * g0_l2 / math.sqrt(p.d)
    pn = random_instance(inst, sigma=sigma)
    b = bounds.sgd_nonconvex(L2=pn.L2, delta=delta, sigma2=pn.sigma2, eps=eps_rel * g0_l2)
    steps = _steps_for(b)
    T = _s1_first_hit(pn, gd, b.lr, seed, steps, x0, b.eps)
    rows.append(_check_row("S1 SGD (noise)", b, T, "sgd", b.lr, steps))

    const = problem_constants(p)
    for r in rows:
        r.update(const, delta=delta, rotate=bool(p.bases is not None))
    return rows


def _s1_first_hit(p, opt, lr, seed, steps, x0, eps) -> float:
    """S1's measured T: the first T with mean_s (1/T) sum_{t<T} ||g_t||^2 + S1_Z x (its standard
    error over the runs) <= eps^2, over :data:`S1_SEEDS` independent SGD runs from x0 on the
    noisy quadratic ``p`` (oracle g + sigma_b z, z ~ N(0, I), a fresh z per run and step, all
    drawn from one generator seeded by ``seed``); ``inf`` if not within ``steps``."""
    gen = torch.Generator().manual_seed(int(seed) * 7_368_787 + 29)
    X = torch.as_tensor(x0, dtype=p.dtype).expand(S1_SEEDS, -1).clone()
    sig = p.blocks.expand(p.sigma)
    state = opt.init(X, p.blocks)
    G = p.grad(X)
    total = torch.zeros(S1_SEEDS, dtype=X.dtype)
    for T in range(1, steps + 1):
        total += (G * G).sum(1)                      # sum_{t<T} ||g_t||^2 per run
        mean_T = total / T
        if float(mean_T.mean() + S1_Z * mean_T.std() / math.sqrt(S1_SEEDS)) <= eps * eps:
            return float(T)
        noisy = G + sig * torch.randn(X.shape, generator=gen, dtype=X.dtype)
        step, state = opt.update(noisy, state, X, lr, p.blocks)
        X = X + step
        G = p.grad(X)
    return math.inf


def bound_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per bound: checks, violations, undecided, and the tightness measured/bound (min, median, max)."""
    t = _ok(table)
    rows = []
    for name, g in t.groupby("check", sort=False):
        decided = g["holds"].notna()
        tight = g["tightness"].to_numpy(float)
        rows.append({"check": name, "optimizer": g["optimizer"].iloc[0], "metric": g["metric"].iloc[0],
                     "checks": int(len(g)), "violations": int((g.loc[decided, "holds"] == False).sum()),  # noqa: E712
                     "undecided": int((~decided).sum()),
                     "tightness_min": float(np.nanmin(tight)) if np.isfinite(tight).any() else math.nan,
                     "tightness_median": float(np.nanmedian(tight)) if np.isfinite(tight).any() else math.nan,
                     "tightness_max": float(np.nanmax(tight)) if np.isfinite(tight).any() else math.nan})
    return pd.DataFrame(rows)


def verdict_c2(table: pd.DataFrame) -> Verdict:
    s = bound_summary(table)
    viol, und = int(s["violations"].sum()), int(s["undecided"].sum())
    n_inst = _ok(table)["instance"].nunique()
    stat = "; ".join(f"{r.check}: tightness median {r.tightness_median:.3g} "
                     f"[{r.tightness_min:.3g}, {r.tightness_max:.3g}]" + (f", {r.violations} VIOLATED" if r.violations else "")
                     for r in s.itertuples())
    return Verdict("C2 bound tightness", viol == 0 and und == 0,
                   f"every measured T(eps) <= its bound, over {n_inst} random instances x {len(s)} bounds "
                   "(tightness = measured / bound)",
                   f"{viol} violations, {und} undecided -- {stat}", s)


def figure_c2(table: pd.DataFrame):
    from heterosim import plots
    return plots.bound_scatter(_ok(table), measured="T", bound="T_bound", hue="check",
                               title="C2: measured T(eps) vs its bound, random block quadratics")


# ----------------------------------------------------------------------------- C3


def zhang_gaps(table: pd.DataFrame, slow: str = "sgd", fast: str = "adam") -> pd.DataFrame:
    """Per Zhang case: median T* of ``slow`` and ``fast`` over seeds and the gap slow/fast."""
    t = _ok(table)
    med = t.groupby(["case", "optimizer"])["T"].median().unstack("optimizer").reindex(columns=[slow, fast])
    out = pd.DataFrame({"case": med.index, f"T_{slow}": med[slow].to_numpy(), f"T_{fast}": med[fast].to_numpy()})
    out["gap"] = out[f"T_{slow}"] / out[f"T_{fast}"]
    out["kind"] = out["case"].map({1: "heterogeneous", 2: "homogeneous", 3: "heterogeneous (shared spectrum)",
                                   4: "homogeneous (shared spectrum)"})
    if "JS0" in t.columns:
        out["JS0"] = t.groupby("case")["JS0"].median().reindex(out["case"]).to_numpy()
    return out.reset_index(drop=True)


def verdict_c3(table: pd.DataFrame) -> Verdict:
    g = zhang_gaps(table).set_index("case")
    t = _ok(table)
    if not {"sgd", "adam"} <= set(t["optimizer"]):
        return Verdict("C3 Zhang cases", None, "needs tuned GD ('sgd') and Adam on the cases",
                       f"optimizers in the table: {sorted(set(t['optimizer']))}", g.reset_index())
    gd = t[t["optimizer"] == "sgd"].pivot_table(index="seed", columns="case", values="T")
    same34 = bool(3 in gd.columns and 4 in gd.columns and (gd[3] == gd[4]).all())
    pairs = [(h, o) for h, o in ((1, 2), (3, 4)) if h in g.index and o in g.index]
    ratios = [g.loc[h, "gap"] / g.loc[o, "gap"] for h, o in pairs]
    ok = bool(pairs) and all(r >= 3 for r in ratios) and same34
    stat = "; ".join(f"case {c} ({g.loc[c, 'kind']}): GD {g.loc[c, 'T_sgd']:.0f}, Adam {g.loc[c, 'T_adam']:.0f}, "
                     f"gap {g.loc[c, 'gap']:.1f}x" for c in g.index)
    stat += "; gap ratio hetero/homo " + ", ".join(f"{h}/{o} {r:.1f}" for (h, o), r in zip(pairs, ratios))
    stat += f"; GD identical on cases 3 and 4: {same34}"
    return Verdict("C3 Zhang cases", ok,
                   "the GD/Adam gap (median tuned T*, ||g|| <= 1e-6 ||g0||) on heterogeneous blocks is >= 3x "
                   "the gap on homogeneous blocks (cases 1 vs 2 and 3 vs 4), and GD's T* is identical on 3 and 4",
                   stat, g.reset_index())


def figure_c3(table: pd.DataFrame):
    from heterosim import plots
    t = _ok(table).copy()
    names = {1: "1 hetero", 2: "2 homo", 3: "3 hetero\n(shared)", 4: "4 homo\n(shared)"}
    t["case_label"] = t["case"].map(names)
    return plots.grouped_bars(t, x="case_label", y="T", hue="optimizer", ylabel="tuned T*(||g|| <= 1e-6 ||g0||)",
                              title="C3: Zhang et al. cases, kappa = 5000, 4 rotated blocks of 25")


# ----------------------------------------------------------------------------- C4


#: Learning-rate grid of the softmax part of C4 (two per decade; the best final loss wins).
SOFTMAX_LR_RANGE = (1e-4, 10.0)


def _log_steps(steps: int, n: int = 80) -> list[int]:
    """0..10 and about ``n`` log-spaced steps up to ``steps`` (dense where losses move fast)."""
    pts = np.unique(np.concatenate([np.arange(min(steps, 10) + 1), np.round(np.geomspace(1, max(steps, 1), n))]))
    return [int(t) for t in pts if t <= steps]


def kunstner_groups(m: int) -> np.ndarray:
    """Frequency group of each class of Kunstner's data (group i: 2^i classes, 2^(m-i) samples each)."""
    return np.concatenate([np.full(2 ** i, i) for i in range(m)])


def measure_class_imbalance(config: dict) -> list[dict]:
    """C4, per-class losses under class imbalance. ``part``:

    * ``"diag"``: Kunstner's model f(W) = sum_k pi_k 1/2 ||w_k||^2 (``kunstner_diag``,
      ``n_classes``, ``h``, ``alpha``). GD (eta = ``lr_scale`` / L_2) and SignGD (``sign_lr``)
      per-class losses pi_k/2 ||w_k(t)||^2 for every step, beside the closed forms
      (:func:`heterosim.bounds.kunstner_gd`, :func:`heterosim.bounds.kunstner_sign`).
    * ``"softmax"``: Kunstner et al.'s heavy-tailed softmax data (``kunstner_softmax``, ``m``,
      ``ridge``), full batch. ``lr_rule`` "tuned": the grid point of :data:`SOFTMAX_LR_RANGE`
      (two per decade) with the lowest final loss among the runs whose loss never rose above
      its initial value (huge steps on these separable data give chaotic runs that still end
      low; excluding them keeps every optimizer in its stable regime); "1/L": 1/L_2, the
      descent-lemma step.
      Rows give the mean loss of each frequency group at log-spaced steps.
    """
    import heterosim as hs
    from heterosim import bounds
    part, optimizer = config["part"], config["optimizer"]
    steps = int(config["steps"])
    seed = int(config.get("seed", 0))
    if part == "diag":
        p = hs.problems.make("kunstner_diag", n_classes=int(config["n_classes"]), h=int(config["h"]),
                             alpha=float(config["alpha"]))
        pi = torch.stack([s[0] for s in p.block_spectra]).numpy()
        if optimizer in ("sgd", "gd"):
            lr = float(config.get("lr_scale", 0.5)) / p.L2
        elif optimizer == "signsgd":
            lr = float(config.get("sign_lr", 0.01))
        else:
            raise ValueError(f"part 'diag' compares 'sgd' and 'signsgd' with their closed forms; got {optimizer!r}")
        opt = hs.optimizers.make(optimizer)
        x0 = p.initial_point(seed)
        curves = trajectory(p, opt, [lr], steps, range(steps + 1),
                            lambda t, X: (p.blocks.sq_norms(X)[0] * torch.as_tensor(pi) / 2).numpy(), seed=seed)
        W0 = x0.reshape(p.blocks.n, -1).numpy()
        rows = []
        for t, losses in enumerate(curves):
            if optimizer == "signsgd":
                w = bounds.kunstner_sign(eta=lr, t=t, w0=W0)
            else:
                w = bounds.kunstner_gd(pi=pi, eta=lr, t=t, w0=W0)
            closed = pi / 2 * (np.asarray(w) ** 2).sum(1)
            for k in range(len(pi)):
                rows.append({"step": t, "class_index": k, "pi": float(pi[k]), "group": k, "loss": float(losses[k]),
                             "loss_closed_form": float(closed[k]), "lr": lr})
        return rows
    if part == "softmax":
        m = int(config["m"])
        p = hs.problems.make("kunstner_softmax", m=m, ridge=float(config.get("ridge", 0.0)), seed=seed)
        rule = config.get("lr_rule", "tuned")
        if rule == "tuned":
            lrs = hs.engine.lr_grid(*SOFTMAX_LR_RANGE, per_decade=2)
        elif rule == "1/L":
            lrs = np.array([1.0 / p.L2])
        else:
            raise ValueError(f"lr_rule must be 'tuned' or '1/L'; got {rule!r}")
        opt = hs.optimizers.make(optimizer, **(config.get("hyper") or {}))
        record = _log_steps(steps)
        groups = kunstner_groups(m)
        G = torch.as_tensor(np.eye(m)[groups].T / np.bincount(groups)[:, None])          # (m, C) group means

        def observe(t, X):
            cl = p.class_losses(X)                                                       # (B, C)
            return torch.nan_to_num(cl, nan=math.inf) @ G.T, p.loss(X)

        obs = trajectory(p, opt, lrs, steps, record, observe, seed=seed)
        totals = np.stack([o[1].numpy() for o in obs], axis=1)                    # (B, K)
        final = np.where(np.isfinite(totals[:, -1]), totals[:, -1], np.inf)
        stable = np.all(np.nan_to_num(totals, nan=np.inf) <= totals[:, :1], axis=1)   # never above f(x_0)
        best = int(np.argmin(np.where(stable, final, np.inf))) if stable.any() else int(np.argmin(final))
        rows = []
        for t, (gl, full) in zip(record, obs):
            for i in range(m):
                rows.append({"step": t, "group": i, "classes_in_group": 2 ** i, "samples_per_class": 2 ** (m - i),
                             "pi": 2.0 ** (m - i) / p.n, "loss": float(gl[best, i]), "loss_total": float(full[best]),
                             "lr": float(lrs[best]), "lr_edge": bool(rule == "tuned" and best in (0, len(lrs) - 1))})
        return rows
    raise ValueError(f"part must be 'diag' or 'softmax'; got {part!r}")


def class_iterations(table: pd.DataFrame, eps_rel: float = 1e-2) -> pd.DataFrame:
    """Part 'diag': per optimizer and class, the first step with loss_k <= eps_rel loss_k(0),
    and the largest deviation of the measured per-class loss from its closed form."""
    t = _ok(table)
    t = t[t["part"] == "diag"]
    rows = []
    for (opt, k), g in t.groupby(["optimizer", "class_index"]):
        g = g.sort_values("step")
        loss = g["loss"].to_numpy()
        hit = np.nonzero(loss <= eps_rel * loss[0])[0]
        dev = np.abs(loss - g["loss_closed_form"].to_numpy()) / max(loss[0], 1e-300)
        rows.append({"optimizer": opt, "class_index": k, "pi": g["pi"].iloc[0],
                     "T_class": float(g["step"].iloc[hit[0]]) if hit.size else math.inf,
                     "max_rel_dev_closed_form": float(dev.max())})
    return pd.DataFrame(rows)


def class_progress(table: pd.DataFrame) -> pd.DataFrame:
    """Part 'softmax': per optimizer and lr rule, the first step T_half(g) at which group g's loss
    is at most half its initial value, for the most frequent and the rarest group, and the
    rare-class slowdown s = T_half(rarest) / T_half(most frequent) (inf: the rarest group never
    halved within the run: a stall). Also the rarest group's largest rise above its start."""
    t = _ok(table)
    t = t[t["part"] == "softmax"]
    rows = []
    keys = [k for k in ("optimizer", "lr_rule") if k in t.columns]
    for key, g in t.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        wide = g.pivot_table(index="step", columns="group", values="loss").sort_index()
        lo, hi = wide.columns.min(), wide.columns.max()
        rel = wide / wide.iloc[0]

        def t_half(col):
            hit = rel.index[(rel[col] <= 0.5).to_numpy()]
            return float(hit[0]) if len(hit) else math.inf
        tf, tr = t_half(lo), t_half(hi)
        rows.append({**dict(zip(keys, key)), "lr": float(g["lr"].iloc[0]), "T_half_frequent": tf,
                     "T_half_rare": tr, "slowdown": tr / max(tf, 1.0),
                     "rare_rise": float(rel[hi].max() - 1.0),
                     "loss_total_final": float(g.loc[g["step"] == g["step"].max(), "loss_total"].iloc[0])})
    return pd.DataFrame(rows)


def verdict_c4(table: pd.DataFrame) -> Verdict:
    ci = class_iterations(table)
    parts = []
    ok = True
    if not ci.empty:
        pi1 = ci["pi"].max()
        sl = {o: fit_slope(np.log10(pi1 / g["pi"]), np.log10(g["T_class"].clip(lower=1))) for o, g in ci.groupby("optimizer")}
        dev = float(ci["max_rel_dev_closed_form"].max())
        ok &= bool(dev <= 1e-8 and 0.8 <= sl.get("sgd", math.nan) <= 1.2 and abs(sl.get("signsgd", math.nan)) <= 0.2)
        parts.append("diag model: slope of log T_k vs log(pi_1/pi_k): " + ", ".join(f"{o} {v:+.2f}" for o, v in sl.items())
                     + f"; max deviation from the closed forms {dev:.1e} (relative to each class's initial loss)")
    cp = class_progress(table)
    if not cp.empty:
        tuned = cp[cp["lr_rule"] == "tuned"] if "lr_rule" in cp else cp
        S = tuned.set_index("optimizer")["slowdown"]
        gd = S.get("sgd", math.nan)
        others = [o for o in S.index if o != "sgd"]
        ok &= bool(others and all(gd >= 4 * S[o] for o in others))
        parts.append("softmax, rare-class slowdown T_half(rarest group) / T_half(most frequent group): " +
                     ", ".join(f"{r.optimizer} ({r.lr_rule if 'lr_rule' in cp else 'tuned'} lr {r.lr:.3g}) "
                               f"{r.T_half_rare:.0f}/{r.T_half_frequent:.0f} = {r.slowdown:.1f}" for r in cp.itertuples()))
    if ci.empty and cp.empty:
        ok = None
    return Verdict("C4 class imbalance", ok,
                   "diag model: measured per-class losses equal the closed forms (rel. dev. <= 1e-8), GD's T_k grows "
                   "like pi_1/pi_k (slope 0.8-1.2; T_k: loss_k <= 1e-2 loss_k(0)) and SignGD's does not (|slope| <= 0.2); "
                   "softmax, each optimizer at its tuned stable lr: GD's rare-class slowdown (steps for the rarest group's "
                   "loss to halve / steps for the most frequent group's) is >= 4x that of every sign/Adam method",
                   "; ".join(parts), cp)


def figure_c4(table: pd.DataFrame):
    """Per-class losses: the diagonal model (GD, SignGD, closed forms dashed) and the softmax
    data (each optimizer at its tuned lr, GD also at 1/L), one panel each."""
    from heterosim import plots
    t = _ok(table).copy()
    rule = t["lr_rule"] if "lr_rule" in t.columns else pd.Series("tuned", index=t.index)
    t["panel"] = [f"{part}: {o}" + (" (lr 1/L)" if r == "1/L" else "") for part, o, r in zip(t["part"], t["optimizer"], rule)]
    order = {"diag": 0, "softmax": 1}
    t = t.sort_values(["part", "lr_rule"] if "lr_rule" in t.columns else ["part"], key=lambda c: c.map(
        lambda v: order.get(v, 2) if c.name == "part" else (0 if v == "1/L" else 1)), kind="stable")
    if "loss_closed_form" not in t.columns:
        t["loss_closed_form"] = np.nan
    return plots.class_loss_curves(t, step="step", loss="loss", group="group", facet="panel",
                                   reference="loss_closed_form", group_label="class/group", logx=True,
                                   title="C4: loss per class (diag: Kunstner's model) and per frequency group "
                                         "(softmax: Kunstner et al.'s heavy-tailed data)")


# ----------------------------------------------------------------------------- C5
#: Reference dimension of the absolute-eps criterion (eps = eps_rel x the metric at x_0 at this d).
D_REF = 16


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


def measure_sign_lr(config: dict) -> dict:
    """C5: SignGD's tuned learning rate on :func:`sign_lr_problem` (``d``, ``rotate``, ``seed``)
    for the criterion ``metric`` <= eps with eps = ``eps_rel`` times the metric at x_0
    (``relative``) or times the metric at x_0 of the d = :data:`D_REF` instance (absolute).
    Beside it: the B2 step eta = eps_1 / L_inf, eps_1 the l1 target built the same way
    (from ``eps_rel`` for gradient criteria, from ``sqrt(eps_rel)`` for f - f*)."""
    import heterosim as hs
    d, rotate, seed = int(config["d"]), bool(config["rotate"]), int(config.get("seed", 0))
    metric, relative, eps_rel = config["metric"], bool(config["relative"]), float(config["eps_rel"])
    p = sign_lr_problem(d, rotate, seed)
    ref = p if relative else sign_lr_problem(D_REF, rotate, seed)
    eps = eps_rel if relative else eps_rel * _initial_metric(ref, seed, metric)
    r = hs.engine.tune(p, "signsgd", eps=eps, metric=metric, relative=relative,
                       lrs=hs.engine.lr_grid(*LR_RANGE, per_decade=4), seeds=(seed,),
                       steps=int(config.get("steps", 20_000)), refine=4)
    # B2's l1 target matching the criterion: the same relative size for gradient norms, the square
    # root of it for f - f* (which scales like ||g||^2 on a quadratic)
    eps_l1 = (math.sqrt(eps_rel) if metric == "subopt" else eps_rel) * _initial_metric(ref, seed, "grad_l1")
    row = {"T": float(r.T), "lr": float(r.lr), "edge": bool(r.edge), "eps_abs": float(eps) if not relative else math.nan,
           "eta_bound": eps_l1 / p.Linf, "g0_l1": _initial_metric(p, seed, "grad_l1")}
    row.update(problem_constants(p))
    return _beside(row, config)


def lr_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Per (criterion, rotation): fitted exponents of the tuned lr and of eps/L_inf against d
    (log-log, medians over seeds)."""
    t = _ok(table)
    rows = []
    for (metric, relative, rotate), g in t.groupby(["metric", "relative", "rotate"], sort=False):
        med = g.groupby("d")[["lr", "eta_bound", "Linf"]].median()
        x = np.log10(med.index.to_numpy(float))
        rows.append({"metric": metric, "relative": bool(relative), "rotate": bool(rotate),
                     "exponent_lr": fit_slope(x, np.log10(med["lr"])),
                     "exponent_eta_bound": fit_slope(x, np.log10(med["eta_bound"])),
                     "exponent_Linf": fit_slope(x, np.log10(med["Linf"])),
                     "edge_any": bool(g["edge"].any())})
    return pd.DataFrame(rows)


def verdict_c5(table: pd.DataFrame) -> Verdict:
    e = lr_exponents(table)
    l1 = e[e["metric"] == "grad_l1"]
    ok = bool(not l1.empty and (abs(l1["exponent_lr"] - l1["exponent_eta_bound"]) <= 0.25).all())
    stat = "; ".join(f"{r.metric} {'rel' if r.relative else 'abs'} {'rotated' if r.rotate else 'axis'}: "
                     f"lr ~ d^{r.exponent_lr:+.2f} vs eps/L_inf ~ d^{r.exponent_eta_bound:+.2f}"
                     for r in e.itertuples())
    return Verdict("C5 SignGD learning rate vs dimension", ok,
                   "criterion ||g||_1 <= eps (B2's metric; eps relative to ||g0||_1, or absolute, fixed at the d=16 "
                   "value): the fitted exponent of the tuned lr against d is within 0.25 of that of eps/L_inf, on "
                   "axis-aligned and rotated problems",
                   stat, e)


def figure_c5(table: pd.DataFrame):
    from heterosim import plots
    t = _ok(table).copy()
    t["criterion"] = [f"{m} {'rel' if r else 'abs'}" for m, r in zip(t["metric"], t["relative"])]
    t["geometry"] = np.where(t["rotate"], "rotated", "axis-aligned")
    return plots.complexity_curves(t, x="d", y="lr", hue="criterion", facet="geometry", logx=True,
                                   bounds={"eta_bound": "B2: eps/L_inf (l1 target)"}, bound_hue=True,
                                   xlabel="dimension d", ylabel="tuned SignGD lr",
                                   title="C5: SignGD's tuned step vs d (lines: tuned; dashed: eps/L_inf)")


# ----------------------------------------------------------------------------- C6


def _presence(counts: np.ndarray, n: int, b: int) -> np.ndarray:
    """q_c: the chance that class c (n_c of the n samples) is in a batch of b drawn without replacement."""
    i = np.arange(b)
    absent = np.array([np.prod(np.clip((n - nc - i) / (n - i), 0.0, None)) for nc in counts])
    return 1.0 - absent


def measure_head_growth(config: dict) -> list[dict]:
    """C6: ||W_t - W_0||_F of a softmax-regression head (``C`` classes, ``h`` features with mean
    ``feature_mean``, Zipf ``alpha`` frequencies, ``n`` samples) trained with minibatches of
    ``batch_size`` at a constant ``lr`` by ``optimizer`` (``beta`` for Signum), recorded every
    ``every`` steps, beside the sign-method bound eta t sqrt(C h)
    (:func:`heterosim.bounds.sign_head_growth`). ``predicted_drift`` is the naive SignSGD
    fraction sqrt(mean_c (1 - 2 q_c)^2) for non-centred features, q_c the chance that class c
    is in the batch (each entry moves eta(1 - q_c) one way and eta q_c the other)."""
    import heterosim as hs
    from heterosim import bounds
    C, h, b = int(config["C"]), int(config["h"]), int(config["batch_size"])
    lr, steps, every = float(config["lr"]), int(config["steps"]), int(config.get("every", 10))
    seed = int(config.get("seed", 0))
    p = hs.problems.make("softmax", n=int(config["n"]), p=h, C=C, alpha=float(config["alpha"]),
                         feature_mean=float(config["feature_mean"]), batch_size=b, ridge=0.0, seed=seed)
    beta = config.get("beta")
    opt = hs.optimizers.make(config["optimizer"], **({} if beta is None else {"beta": float(beta)}))
    x0 = p.initial_point(seed)
    record = list(range(0, steps + 1, every))
    norms = trajectory(p, opt, [lr], steps, record, lambda t, X: float((X[0] - x0).norm()), seed=seed, stochastic=True)
    growth = bounds.sign_head_growth(eta=lr, C=C, h=h)
    q = _presence(p.class_counts.numpy(), p.n, b)
    drift = float(np.sqrt(np.mean((1 - 2 * q) ** 2))) if float(config["feature_mean"]) != 0 else math.nan
    rows = []
    for t, v in zip(record, norms):
        bd = growth.value(t)
        rows.append({"step": t, "head_norm": v, "head_bound": bd, "fraction": v / bd if bd > 0 else math.nan,
                     "predicted_drift": drift, "mean_presence": float(q.mean())})
    return rows


def head_fractions(table: pd.DataFrame) -> pd.DataFrame:
    """The final head norm as a fraction of eta t sqrt(C h), per configuration (median over seeds)."""
    t = _ok(table)
    last = t[t["step"] == t.groupby("config_hash")["step"].transform("max")].copy()
    last["label"] = [o if (b is None or (isinstance(b, float) and math.isnan(b))) else f"{o}(beta={b:g})"
                     for o, b in zip(last["optimizer"], last["beta"])]
    keys = ["feature_mean", "batch_size", "C", "label"]
    out = last.groupby(keys, sort=False).agg(fraction=("fraction", "median"),
                                              predicted_drift=("predicted_drift", "median")).reset_index()
    first_seen = {lab: i for i, lab in enumerate(dict.fromkeys(sorted(out["label"], key=_label_rank)))}
    out["_rank"] = out["label"].map(first_seen)
    return out.sort_values(["feature_mean", "batch_size", "C", "_rank"]).drop(columns="_rank").reset_index(drop=True)


def _label_rank(label: str):
    """SignSGD, then Signum by beta, then Adam, then the rest (alphabetically)."""
    order = ("signsgd", "signum", "adam")
    head = label.split("(")[0]
    return (order.index(head) if head in order else len(order), label)


def verdict_c6(table: pd.DataFrame) -> Verdict:
    f = head_fractions(table)
    main = f[(f["feature_mean"] != 0) & (f["batch_size"] == 32)]
    F = main.set_index(["C", "label"])["fraction"]
    Cs = sorted(main["C"].unique())
    ok = None
    if Cs and (Cs[-1], "signsgd") in F.index and (Cs[-1], "signum(beta=0.9)") in F.index:
        ss = [F[(c, "signsgd")] for c in Cs]
        sm = [F[(c, "signum(beta=0.9)")] for c in Cs]
        ok = bool(all(a < b for a, b in zip(sm, ss)) and sm[-1] <= 0.8 * ss[-1] and ss[-1] > ss[0])
    stat = []
    for (mean, bsz), g in f.groupby(["feature_mean", "batch_size"], sort=False):
        cells = ", ".join(f"{r.label} C={r.C}: {r.fraction:.2f}" for r in g.itertuples())
        pred = g.groupby("C")["predicted_drift"].first()
        ptxt = "" if pred.isna().all() else "; naive SignSGD drift prediction " + ", ".join(
            f"C={c}: {v:.2f}" for c, v in pred.items())
        stat.append(f"[mean {mean:g}, batch {bsz}] {cells}{ptxt}")
    return Verdict("C6 linear-head growth", ok,
                   "non-centred features (mean 1), batch 32: SignSGD's ||W_t - W_0||_F / (eta t sqrt(C h)) grows with C, "
                   "Signum (beta 0.9) stays below SignSGD at every C and at the largest C by at least 20%",
                   "final fraction of the bound -- " + " | ".join(stat), f)


def figure_c6(table: pd.DataFrame):
    from heterosim import plots
    t = _ok(table).copy()
    t = t[(t["feature_mean"] != 0) & (t["batch_size"] == 32)] if (t["batch_size"] == 32).any() else t
    t["label"] = [o if (b is None or (isinstance(b, float) and math.isnan(b))) else f"{o}(beta={b:g})"
                  for o, b in zip(t["optimizer"], t["beta"])]
    return plots.head_norm_curves(t, step="step", value="head_norm", hue="label", facet="C", bound="head_bound",
                                  title="C6: head growth, softmax regression, features N(1, I), batch 32")


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Study:
    """A study's analysis: its figure and its verdict (both read the results table only)."""

    name: str
    claim: str
    figure: Callable[[pd.DataFrame], object]
    verdict: Callable[[pd.DataFrame], Verdict]


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("c1_block_scale", "C1", figure_c1, verdict_c1),
    Study("c2_bound_tightness", "C2", figure_c2, verdict_c2),
    Study("c3_zhang", "C3", figure_c3, verdict_c3),
    Study("c4_class_imbalance", "C4", figure_c4, verdict_c4),
    Study("c5_sign_lr", "C5", figure_c5, verdict_c5),
    Study("c6_head_growth", "C6", figure_c6, verdict_c6),
    Study("decomposition", "decomposition", figure_decomposition, verdict_decomposition),
)}
