r"""Controls as first-class factors: what C1, C3 and the decomposition study share.

A gap between GD and Adam can come from three factors besides block heterogeneity
(docs/theory.md, Controls). Each is a config column of the stored table, so every row
says which level of each it ran:

* ``momentum``: ``none``; ``heavy_ball`` (torch.optim.SGD's b_t = beta b_{t-1} + g_t,
  beta = 0.9); ``ema`` (Adam's beta1 / Signum's beta = 0.9: m_t = beta m_{t-1} + (1-beta) g_t).
  Heavy ball and the EMA differ by the factor (1 - beta) in the step, which a tuned
  learning rate absorbs: they are the same momentum.
* ``precond``: ``identity`` (GD), ``blockwise`` (eta_b = eta / L_b, the oracle block
  preconditioner), ``fixed_diag`` (adam_fixed_precond: P = diag(1/|g_0|), the variant
  Zhang et al. 2024 analyse), ``adam`` (Adam's running diag(1/sqrt(v_t))), ``sign``.
* ``basis``: ``block`` (each block rotated in its own Haar basis: the families' default),
  ``global`` (one Haar rotation of all d coordinates: the same spectrum and initial
  eigen-coordinates, no block structure left; ``global_rotation=True``), ``axis``
  (axis-aligned, H diagonal; ``rotate=False``). GD and heavy ball are rotation-equivariant:
  their T* must not change with the basis (a check on the construction).

An *arm* is one (momentum, precond) cell, i.e. one optimizer (:data:`ARMS`). A *matched
pair* (:data:`PAIRS`) differs in one factor only:

* ``GD vs Adam(beta1=0)``: preconditioning without momentum;
* ``heavy ball vs Adam``: preconditioning with momentum;
* ``SignGD vs Signum``: momentum under the sign preconditioner.

Unreached runs are censored, never dropped: a run that did not reach eps within its
budget of ``steps`` has T* > steps, so log10 T* lies in [log10 steps, inf). Every
statistic here is a linear combination of log10 T* (a slope over a knob, a difference of
gaps), so it is an interval: :func:`linear_bounds` takes each run's extreme that
minimises (maximises) the combination. Per seed the statistic is averaged, and its 95%
interval is the percentile bootstrap over seeds of the lower end (its low quantile) and
of the upper end (its high quantile). A one-sided rule ``statistic >= threshold`` is

* met when the lower end of the interval is >= the threshold,
* failed when the upper end is < the threshold,
* undecided otherwise: because of censored runs (the interval is open or wide since
  runs did not reach eps), or because the interval straddles the threshold.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from heterosim.claims.base import bootstrap_ci, n_failed, ok_rows

__all__ = ["MOMENTUM", "PRECOND", "BASES", "Arm", "ARMS", "ARM_ORDER", "Pair", "PAIRS", "arm_of", "arm_grid",
           "basis_knobs", "measure", "label_arms", "log_bounds", "linear_bounds", "Cell", "cell", "judge",
           "slope_weights", "seed_contrast", "mean_ci", "MIN_SEEDS", "fmt_cell", "structural_reasons", "ZIP",
           "FACTOR_KEYS",
           "ARM_COLORS", "run_frame", "draw_arms", "log_axis", "CONTRASTS", "slope_effects", "cell_of", "get_effect",
           "EFFECT_COLUMNS", "carrier", "deciding_cell", "table_note", "report",
           "common_carrier"]

#: Momentum levels (config column ``momentum``) and their words.
MOMENTUM = {"none": "no momentum", "heavy_ball": "heavy ball (beta 0.9)", "ema": "EMA momentum (beta1 0.9)"}
#: Preconditioning levels (config column ``precond``).
PRECOND = {"identity": "none (GD)", "blockwise": "block-wise 1/L_b", "fixed_diag": "fixed diag(1/|g_0|)",
           "adam": "Adam's diag(1/sqrt(v_t))", "sign": "sign"}
#: Basis levels (config column ``basis``).
BASES = {"block": "block-rotated", "global": "one global rotation", "axis": "axis-aligned"}
#: Seeds a criterion needs for its interval.
MIN_SEEDS = 3


@dataclasses.dataclass(frozen=True)
class Arm:
    """One (momentum, precond) cell: the optimizer that realises it."""

    key: str
    momentum: str
    precond: str
    optimizer: str
    hyper: tuple = ()       # (name, value) pairs for hs.optimizers
    label: str = ""


#: Every arm, keyed by a short name (the demo's and the figures' row names).
ARMS = {a.key: a for a in (
    Arm("sgd", "none", "identity", "sgd", (), "GD"),
    Arm("sgd_momentum", "heavy_ball", "identity", "sgd_momentum", (("momentum", 0.9),), "heavy ball"),
    Arm("blockwise_gd", "none", "blockwise", "blockwise_gd", (), "block-wise 1/L_b"),
    Arm("adam_fixed_precond", "none", "fixed_diag", "adam_fixed_precond", (), "Adam, fixed precond."),
    Arm("adam_beta1_0", "none", "adam", "adam", (("betas", (0.0, 0.999)),), "Adam (beta1 = 0)"),
    Arm("adam", "ema", "adam", "adam", (("betas", (0.9, 0.999)),), "Adam"),
    Arm("signsgd", "none", "sign", "signsgd", (), "SignGD"),
    Arm("signum", "ema", "sign", "signum", (("beta", 0.9),), "Signum"),
)}
#: Arms in matched-pair order (rows of tables and legends).
ARM_ORDER = ("sgd", "adam_beta1_0", "sgd_momentum", "adam", "signsgd", "signum", "blockwise_gd",
             "adam_fixed_precond")


@dataclasses.dataclass(frozen=True)
class Pair:
    """A matched pair: ``a`` (the slower, unpreconditioned or momentum-free arm) vs ``b``;
    ``factor`` is the one factor they differ in; ``matched`` the one they share."""

    key: str
    a: str
    b: str
    factor: str
    matched: str

    @property
    def label(self) -> str:
        return f"{ARMS[self.a].label} vs {ARMS[self.b].label}"


PAIRS = {p.key: p for p in (
    Pair("precond_no_momentum", "sgd", "adam_beta1_0", "preconditioning", "no momentum"),
    Pair("precond_momentum", "sgd_momentum", "adam", "preconditioning", "momentum (beta 0.9)"),
    Pair("momentum_sign", "signsgd", "signum", "momentum", "sign preconditioner"),
)}


def arm_of(momentum: str, precond: str) -> Arm:
    """The arm with these factor levels (ValueError naming the arms that exist)."""
    for a in ARMS.values():
        if a.momentum == momentum and a.precond == precond:
            return a
    raise ValueError(f"no arm has momentum={momentum!r} and precond={precond!r}; arms: "
                     + ", ".join(f"{a.key} ({a.momentum}, {a.precond})" for a in ARMS.values()))


def arm_grid(arms: Iterable[str]) -> dict:
    """The zipped ``momentum``/``precond`` axes of a grid holding these arms (ZIP them)."""
    arms = [ARMS[k] if k in ARMS else _unknown_arm(k) for k in arms]
    return {"momentum": [a.momentum for a in arms], "precond": [a.precond for a in arms]}


def _unknown_arm(k):
    raise ValueError(f"unknown arm {k!r}; arms: {', '.join(ARMS)}")


#: What a grid with :func:`arm_grid` must pass as ``zip``.
ZIP = (("momentum", "precond"),)


def basis_knobs(basis: str) -> dict:
    """The problem knobs of a basis level."""
    knobs = {"block": {"rotate": True}, "global": {"rotate": True, "global_rotation": True},
             "axis": {"rotate": False}}
    if basis not in knobs:
        raise ValueError(f"basis must be one of {', '.join(knobs)}; got {basis!r}")
    return knobs[basis]


#: Config keys of :func:`measure` that are not problem knobs.
FACTOR_KEYS = frozenset({"momentum", "precond", "basis", "problem", "seed", "eps", "metric", "relative", "steps"})


def measure(config: dict) -> dict:
    """Tuned T*(eps) of one arm (``momentum``, ``precond``) on one problem in one ``basis``.

    Config: ``problem`` and its knobs, ``momentum``, ``precond``, ``basis``, ``seed`` (the
    problem's rotations and start), ``eps``, ``metric``, ``relative``, ``steps`` (the budget).
    The learning rate is tuned as in :func:`heterosim.claims.common.measure_tuned` (the same
    grid, refinement and pruning). Row: ``T`` (inf: not reached within ``steps``, i.e.
    censored at ``steps``), ``reached``, the tuned ``lr`` and ``edge``, the ``optimizer`` and
    ``arm`` that realise the factors, the problem's constants (d, L2, kappa, ...), the Q1/Q2
    iteration bounds of block quadratics (``bound_gd_T``, ``bound_blockwise_T``) and, on Zhang's
    cases, JS0 of the exact block spectra (nan under a global rotation: one block)."""
    import heterosim as hs
    from heterosim.claims import common
    arm = arm_of(config["momentum"], config["precond"])
    knobs = {k: v for k, v in config.items() if k not in FACTOR_KEYS}
    knobs.update(basis_knobs(config.get("basis", "block")))
    seed = int(config.get("seed", 0))
    p = hs.problems.make(config["problem"], seed=seed, **knobs)
    opt = hs.optimizers.for_problem(arm.optimizer, p, **dict(arm.hyper))
    eps, metric, relative = float(config["eps"]), config.get("metric", "subopt"), bool(config.get("relative", True))
    r = hs.engine.tune(p, opt, eps=eps, metric=metric, relative=relative,
                       lrs=hs.engine.lr_grid(*common.LR_RANGE, per_decade=common.LR_PER_DECADE), seeds=(seed,),
                       steps=int(config["steps"]), refine=common.LR_REFINE)
    row = {"T": float(r.T), "reached": bool(np.isfinite(r.T)), "lr": float(r.lr), "edge": bool(r.edge),
           "n_lrs": int(len(r.lrs)), "n_lrs_diverged": int(np.sum(np.asarray(r.diverged) > 0)),
           "arm": arm.key, "optimizer": arm.optimizer,
           "hyper": ", ".join(f"{k}={v}" for k, v in arm.hyper)}
    row.update(common.problem_constants(p))
    row["blocks_in_partition"] = int(p.blocks.n)   # 1 under a global rotation, whatever n_blocks asked
    row.update(common.quadratic_bounds(p, eps, metric, relative))   # Q1 (GD) and Q2 (block-wise GD) beside T*
    if config["problem"] == "zhang_case":
        row["JS0"] = common.js0_exact(p) if p.blocks.n >= 2 else math.nan   # no blocks left after a global rotation
    return {k: v for k, v in row.items() if k not in config}


def label_arms(table: pd.DataFrame) -> pd.DataFrame:
    """The table with an ``arm`` column (from momentum/precond where it lacks one)."""
    t = table.copy()
    if "arm" not in t.columns or t["arm"].isna().any():
        keys = [arm_of(m, p).key for m, p in zip(t["momentum"], t["precond"])]
        t["arm"] = t["arm"].fillna(pd.Series(keys, index=t.index)) if "arm" in t.columns else keys
    return t


# ----------------------------------------------------------------------------- censored statistics
def log_bounds(T, steps) -> tuple[np.ndarray, np.ndarray]:
    """log10 T* as an interval per run: [log10 T, log10 T] when reached, [log10 steps, inf)
    when not (T* > steps: censored at the budget)."""
    T, steps = np.asarray(T, float), np.asarray(steps, float)
    reached = np.isfinite(T)
    lo = np.where(reached, np.log10(np.where(reached, T, 1.0)), np.log10(steps))
    hi = np.where(reached, lo, np.inf)
    return lo, hi


def linear_bounds(lo, hi, w) -> tuple[float, float]:
    """The range of sum_i w_i y_i over y_i in [lo_i, hi_i] (the interval of a linear statistic)."""
    lo, hi, w = (np.asarray(v, float) for v in (lo, hi, w))
    nz = w != 0
    lo, hi, w = lo[nz], hi[nz], w[nz]
    low = np.where(w > 0, w * lo, w * hi).sum()
    high = np.where(w > 0, w * hi, w * lo).sum()
    return float(low), float(high)


def slope_weights(x) -> np.ndarray:
    """w with sum_i w_i y_i = the least-squares slope of y on x."""
    x = np.asarray(x, float)
    xc = x - x.mean()
    sxx = float((xc ** 2).sum())
    if sxx == 0:
        raise ValueError("a slope needs at least two distinct knob values")
    return xc / sxx


def seed_contrast(frame: pd.DataFrame, weights: Mapping[tuple, float], keys: Sequence[str]) -> pd.DataFrame:
    """Per seed: the interval of sum_k w_k log10 T*_k (:func:`linear_bounds`) and how many of
    the runs it weights were censored.

    ``frame`` holds one row per run with columns ``seed``, ``lo``, ``hi`` (:func:`log_bounds`)
    and ``keys``; a weight's key is the tuple of those columns' values, e.g. (arm, spread).
    A seed missing a weighted run is marked ``missing`` (:func:`cell` counts it, never uses it)."""
    cols = [frame[k].tolist() for k in keys]
    index = {}
    for seed, key, lo, hi in zip(frame["seed"].tolist(), zip(*cols), frame["lo"].tolist(), frame["hi"].tolist()):
        index.setdefault(seed, {})[key] = (lo, hi)
    names, w = list(weights), np.array(list(weights.values()), float)
    rows = []
    for seed in sorted(index):
        idx = index[seed]
        if not all(k in idx for k in names):
            rows.append({"seed": seed, "lo": math.nan, "hi": math.nan, "n_censored": 0, "missing": True})
            continue
        lo = np.array([idx[k][0] for k in names])
        hi = np.array([idx[k][1] for k in names])
        a, b = linear_bounds(lo, hi, w)
        rows.append({"seed": seed, "lo": a, "hi": b, "missing": False,
                     "n_censored": int(((w != 0) & ~np.isfinite(hi)).sum())})
    return pd.DataFrame(rows, columns=["seed", "lo", "hi", "n_censored", "missing"])


@dataclasses.dataclass(frozen=True)
class Cell:
    """One statistic over seeds: its point interval [lo, hi] (equal when nothing the statistic
    uses was censored), its 95% interval [ci_lo, ci_hi], and its counts."""

    lo: float
    hi: float
    ci_lo: float
    ci_hi: float
    n_seeds: int
    n_censored: int
    n_missing: int = 0

    @property
    def exact(self) -> bool:
        return self.lo == self.hi

    @property
    def value(self) -> float:
        """The point estimate where exact, else the end a ``>=`` rule decides on (the lower)."""
        return self.lo


def mean_ci(values, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (over seeds): scipy.stats.bootstrap
    with :data:`~heterosim.claims.base.BOOT_RESAMPLES` resamples at level
    :data:`~heterosim.claims.base.LEVEL`, seeded, like :func:`~heterosim.claims.base.bootstrap_ci`
    but vectorised (the mean over the last axis: 2 ms instead of 120 ms per interval)."""
    v = np.asarray(values, float)
    if v.size < 2 or not np.isfinite(v).all():
        return -math.inf, math.inf
    if np.ptp(v) == 0:
        return float(v[0]), float(v[0])
    return bootstrap_ci(v, np.mean, seed=seed, vectorized=True) or (-math.inf, math.inf)


def cell(per_seed: pd.DataFrame, seed: int = 0) -> Cell:
    """Aggregate a :func:`seed_contrast` frame: mean over seeds of each end, and the bootstrap
    interval (low quantile of the lower ends, high quantile of the upper ends)."""
    ok = per_seed[~per_seed["missing"].astype(bool)] if len(per_seed) else per_seed
    n_missing = int(len(per_seed) - len(ok))
    if ok.empty:
        return Cell(math.nan, math.nan, math.nan, math.nan, 0, 0, n_missing)
    lo, hi = ok["lo"].to_numpy(float), ok["hi"].to_numpy(float)
    lo_m, hi_m = float(np.mean(lo)), float(np.mean(hi))
    ci_lo, ci_hi = mean_ci(lo, seed)[0], mean_ci(hi, seed)[1]
    return Cell(lo_m, hi_m, float(ci_lo), float(ci_hi), int(len(ok)), int(ok["n_censored"].sum()), n_missing)


def judge(c: Cell, threshold: float, above: bool = True) -> tuple[bool | None, str]:
    """Apply ``statistic >= threshold`` (``above``) or ``<= threshold`` to a cell: True (met),
    False (failed) or None (undecided), with the reason when undecided."""
    if c.n_seeds == 0 or math.isnan(c.lo):
        return None, "no seed has every run this statistic needs"
    lo, hi = (c.ci_lo, c.ci_hi) if above else (-c.ci_hi, -c.ci_lo)
    thr = threshold if above else -threshold
    if lo >= thr:
        return True, ""
    if hi < thr:
        return False, ""
    if c.n_censored:
        return None, (f"{c.n_censored} censored run(s) (not reaching eps) leave the interval "
                      f"[{_f(c.ci_lo)}, {_f(c.ci_hi)}] on both sides of {threshold:g}")
    return None, f"the 95% CI [{_f(c.ci_lo)}, {_f(c.ci_hi)}] contains the threshold {threshold:g}"


def _f(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:+.{digits}g}" if digits else str(v)


def fmt_cell(c: Cell, unit: str = "", power10: bool = False) -> str:
    """``+0.52 [+0.48, +0.57]`` (a censored end shown as >= / <=); ``power10``: as 10^x ratios."""
    def f(v):
        if power10:
            return "inf" if v == math.inf else ("0" if v == -math.inf else f"{10 ** v:.3g}x")
        return _f(v)
    if math.isnan(c.lo):
        return "n/a"
    point = f(c.lo) if c.exact else _censored_point(c, f)
    ci = f" [{f(c.ci_lo)}, {f(c.ci_hi)}]" if c.n_seeds >= 2 else " (no CI)"
    return f"{point}{ci}{unit} ({c.n_seeds} seed{'s' if c.n_seeds != 1 else ''}" + (
        f", {c.n_censored} censored run{'s' if c.n_censored != 1 else ''})" if c.n_censored else ")")


def fmt_slope(c) -> str:
    """A slope cell for a figure: its point (or censored bound) to two decimals and its 95% CI
    where it has one; "n/a" for an empty cell (C1 and the decomposition label their panels so)."""
    if math.isnan(c.lo):
        return "n/a"
    v = f"{c.lo:+.2f}" if c.exact else _censored_point(c, lambda x: f"{x:+.2f}")
    return v + (f" [{c.ci_lo:+.2f}, {c.ci_hi:+.2f}]" if np.isfinite(c.ci_lo) or np.isfinite(c.ci_hi) else "")


def _censored_point(c: Cell, f) -> str:
    """The point interval of a censored statistic in words."""
    if not np.isfinite(c.lo) and not np.isfinite(c.hi):
        return "unbounded (censored runs on both sides)"
    if not np.isfinite(c.hi):
        return f">= {f(c.lo)}"
    if not np.isfinite(c.lo):
        return f"<= {f(c.hi)}"
    return f"in [{f(c.lo)}, {f(c.hi)}]"


def structural_reasons(t: pd.DataFrame, *, full_steps: int, min_seeds: int = MIN_SEEDS,
                       arms: Sequence[str] = (), required: Mapping[str, Sequence] | None = None) -> list[str]:
    """Why a table cannot decide whatever its numbers: failed configs, too few seeds, a budget
    below the full run's, missing arms or knob values the criterion needs (``required``:
    column -> values that must all be present among the finished runs)."""
    reasons = []
    failed = n_failed(t)
    if failed:
        reasons.append(f"{failed} config(s) failed (see their error column)")
    ok = ok_rows(t)
    if ok.empty:
        return reasons + ["no finished runs in the table"]
    n_seeds = int(ok["seed"].nunique()) if "seed" in ok.columns else 0
    if n_seeds < min_seeds:
        reasons.append(f"{n_seeds} seed(s); the criterion needs >= {min_seeds}")
    budget = float(ok["steps"].min()) if "steps" in ok.columns else math.nan
    if not budget >= full_steps:
        reasons.append(f"reduced budget (steps {budget:g} < the full run's {full_steps:g})")
    have = set(label_arms(ok)["arm"])
    missing = [a for a in arms if a not in have]
    if missing:
        reasons.append(f"arm(s) missing from the table: {', '.join(missing)}")
    for col, values in (required or {}).items():
        present = set(ok[col].tolist()) if col in ok.columns else set()
        lack = [v for v in values if v not in present]
        if lack:
            reasons.append(f"{col} value(s) {', '.join(map(str, lack))} missing (the full run has "
                           f"{', '.join(map(str, values))})")
    return reasons


# ----------------------------------------------------------------------------- tables and figures
#: One colour per arm in every figure (a matched pair: two hues of one family).
ARM_COLORS = {"sgd": "#1f77b4", "adam_beta1_0": "#ff7f0e", "sgd_momentum": "#2ca02c", "adam": "#d62728",
              "signsgd": "#9467bd", "signum": "#8c564b", "blockwise_gd": "#7f7f7f", "adam_fixed_precond": "#bcbd22"}


def run_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The finished runs with ``arm`` and the censored interval of log10 T* (``lo``, ``hi``)."""
    t = label_arms(ok_rows(table))
    lo, hi = log_bounds(t["T"], t["steps"])
    return t.assign(lo=lo, hi=hi)


def draw_arms(ax, frame: pd.DataFrame, x: str, arms: Sequence[str], styles: Mapping[str, dict] | None = None):
    """Median T* over seeds against ``x`` for each arm (a censored run counts as above every
    reached one; a median that is censored is not drawn), the min-max band over seeds of
    the reached runs, and an open triangle at the top where runs did not reach eps."""
    from heterosim import plots
    styles = dict(styles or {})
    for arm in arms:
        g = frame[frame["arm"] == arm]
        if g.empty:
            continue
        xs = np.array(sorted(g[x].unique()), float)
        med, lo, hi, n_un = [], [], [], []
        for v in xs:
            T = g.loc[g[x] == v, "T"].to_numpy(float)
            m = float(np.median(np.where(np.isfinite(T), T, np.inf)))
            med.append(m if np.isfinite(m) else np.nan)
            fin = T[np.isfinite(T)]
            lo.append(fin.min() if fin.size else np.nan)
            hi.append(fin.max() if fin.size else np.nan)
            n_un.append(int((~np.isfinite(T)).sum()))
        color = ARM_COLORS.get(arm, "k")
        st = {"marker": "o", "ms": 3.5, "lw": 1.4, "color": color, **styles.get(arm, {})}
        ax.plot(xs, med, label=ARMS[arm].label, **st)
        if np.nanmax(np.asarray(hi) - np.asarray(lo), initial=0) > 0:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)
        plots.mark_unreached(ax, xs, np.asarray(n_un), color)


def log_axis(ax, axis: str = "y", min_ratio: float = 10.0) -> None:
    """A log axis with plain-number ticks (1000, not 10^3) spanning at least ``min_ratio``
    (a nearly flat line is not blown up to fill the panel)."""
    from matplotlib import ticker
    getattr(ax, f"set_{axis}scale")("log")
    lo, hi = getattr(ax, f"get_{axis}lim")()
    if lo > 0 and hi > 0 and hi / lo < min_ratio:
        mid = math.sqrt(lo * hi)
        half = math.sqrt(min_ratio)
        getattr(ax, f"set_{axis}lim")(mid / half, mid * half)
    a = getattr(ax, f"{axis}axis")
    a.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(ticker.NullFormatter())


# ----------------------------------------------------------------------------- slope effects
#: Linear combinations of per-arm statistics: name -> ({arm: coefficient}, label). Per-arm
#: values, the matched pairs, GD vs Adam, and the 2x2 factorial (momentum x {GD, Adam's
#: preconditioner}) main effects, which add up to GD vs Adam exactly.
CONTRASTS = {
    **{f"slope:{a}": ({a: 1.0}, f"{ARMS[a].label}") for a in ARMS},
    **{f"pair:{k}": ({p.a: 1.0, p.b: -1.0}, p.label) for k, p in PAIRS.items()},
    "total:sgd-adam": ({"sgd": 1.0, "adam": -1.0}, "GD vs Adam (total)"),
    "step:momentum_identity": ({"sgd": 1.0, "sgd_momentum": -1.0}, "GD vs heavy ball (momentum, no preconditioner)"),
    "step:momentum_adam": ({"adam_beta1_0": 1.0, "adam": -1.0}, "Adam(beta1 = 0) vs Adam (momentum, Adam's "
                                                                 "preconditioner)"),
    "main:precond": ({"sgd": 0.5, "sgd_momentum": 0.5, "adam_beta1_0": -0.5, "adam": -0.5},
                     "preconditioning main effect"),
    "main:momentum": ({"sgd": 0.5, "adam_beta1_0": 0.5, "sgd_momentum": -0.5, "adam": -0.5},
                      "momentum main effect"),
}
EFFECT_COLUMNS = ["contrast", "label", "n_runs", "n_reached", "lo", "hi", "ci_lo", "ci_hi", "n_seeds", "n_censored",
                  "n_missing"]


def slope_effects(table: pd.DataFrame, by: Sequence[str], knob: str) -> pd.DataFrame:
    """Per group of ``by``: every :data:`CONTRASTS` entry applied to the slope of log10 T*
    against ``knob`` (least squares over the knob values, per seed), as a :class:`Cell` over
    seeds (columns :data:`EFFECT_COLUMNS`). A contrast whose arms are not all in the group
    is left out."""
    rows = []
    f = run_frame(table) if not ok_rows(table).empty else None
    if f is not None:
        for key, g in f.groupby(list(by), sort=False):
            key = key if isinstance(key, tuple) else (key,)
            xs = sorted(g[knob].unique())
            if len(xs) < 2:
                continue
            w = slope_weights(xs)
            have = set(g["arm"])
            for name, (coef, label) in CONTRASTS.items():
                if not set(coef) <= have:
                    continue
                weights = {(a, x): c * wk for a, c in coef.items() for x, wk in zip(xs, w)}
                sub = g[g["arm"].isin(list(coef))]
                c = cell(seed_contrast(sub, weights, ("arm", knob)))
                rows.append({**dict(zip(by, key)), "contrast": name, "label": label, "n_runs": int(len(sub)),
                             "n_reached": int(sub["reached"].sum()),
                             **{k: getattr(c, k) for k in ("lo", "hi", "ci_lo", "ci_hi", "n_seeds", "n_censored",
                                                            "n_missing")}})
    return pd.DataFrame(rows, columns=[*by, *EFFECT_COLUMNS])


def cell_of(row) -> Cell:
    """The :class:`Cell` of one effects row."""
    return Cell(row.lo, row.hi, row.ci_lo, row.ci_hi, int(row.n_seeds), int(row.n_censored), int(row.n_missing))


def split_gap(get) -> tuple | None:
    """The GD-vs-Adam gap split into its parts, from ``get(contrast) -> effects row or None``:
    (total, preconditioning, momentum, the heavy-ball path (GD vs HB, HB vs Adam) or None,
    the carrier named by :func:`carrier`), all as :class:`Cell`; None without the parts."""
    tot, pre, mom = (get(c) for c in ("total:sgd-adam", "main:precond", "main:momentum"))
    if tot is None or pre is None or mom is None:
        return None
    cp, cm = cell_of(pre), cell_of(mom)
    sm, sp = get("step:momentum_identity"), get("pair:precond_momentum")
    path = (cell_of(sm), cell_of(sp)) if sm is not None and sp is not None else None
    return cell_of(tot), cp, cm, path, carrier(cp, cm, path)


def get_effect(E: pd.DataFrame, contrast: str, **where):
    """The effects row of ``contrast`` where every column in ``where`` equals its value (None if absent)."""
    m = E["contrast"] == contrast
    for k, v in where.items():
        m &= np.isclose(E[k].astype(float), float(v)) if isinstance(v, (int, float)) else (E[k] == v)
    sub = E[m]
    return None if sub.empty else sub.iloc[0]


def carrier(precond: Cell, momentum: Cell, path: tuple[Cell, Cell] | None = None) -> str:
    """Which factor carries a gap: the main effect whose 95% interval lies above the other's.

    The 2x2 factorial needs Adam with beta1 = 0; where its runs are censored the main effects
    are unbounded, and ``path`` = (momentum step GD -> heavy ball, preconditioning step heavy
    ball -> Adam), the decomposition through the fully measured arms, decides instead (and
    says so)."""
    if min(precond.n_seeds, momentum.n_seeds) < 2:
        return "undetermined (no interval with fewer than 2 seeds)"
    via = ""
    bounded = all(np.isfinite(v) for v in (precond.ci_lo, precond.ci_hi, momentum.ci_lo, momentum.ci_hi))
    if not bounded:
        if path is None or not all(np.isfinite(v) for c in path for v in (c.ci_lo, c.ci_hi)):
            return "undetermined (censored runs leave the effects unbounded)"
        momentum, precond = path
        via = " (via GD -> heavy ball -> Adam: Adam(beta1 = 0)'s censored runs leave the factorial unbounded)"
    if precond.ci_lo > momentum.ci_hi:
        return "preconditioning" + via
    if momentum.ci_lo > precond.ci_hi:
        return "momentum" + via
    return "neither alone (their 95% intervals overlap)" + via


def deciding_cell(cells: Sequence[tuple], results: Sequence[bool | None]) -> tuple:
    """The cell a conjunction of ``>=`` rules reports: a failed one (the lowest upper end),
    else an undecided one (the lowest lower end), else the weakest (the lowest point).
    ``cells``: tuples whose last item is a :class:`Cell`; ``results``: their :func:`judge` outcomes."""
    failed = [c for c, r in zip(cells, results) if r is False]
    if failed:
        return min(failed, key=lambda x: x[-1].ci_hi)
    open_ = [c for c, r in zip(cells, results) if r is None]
    return min(open_ or list(cells), key=lambda x: x[-1].lo)


def table_note(table: pd.DataFrame) -> str:
    """How many finished runs reached eps, and how many reached it with the best learning rate
    on the grid's edge (their T* is then an upper bound of the tuned one: reported, not gated)."""
    ok = ok_rows(table)
    if ok.empty or "T" not in ok.columns:
        return "table: no finished runs"
    T = ok["T"].astype(float)
    reached = np.isfinite(T)
    edge = int((reached & ok["edge"].astype(bool)).sum()) if "edge" in ok.columns else 0
    return (f"table: {int(reached.sum())}/{len(ok)} finished runs reached eps; {edge} of them with the best "
            "learning rate on the grid's edge")


def report(c: Cell, power10: bool = False) -> tuple[float, tuple[float, float] | None]:
    """(value, ci) of a cell for a :class:`~heterosim.claims.base.Verdict`: the point (the lower
    end where censored; nan where unbounded below) and the 95% interval (None with fewer than 2
    seeds or when both ends are unbounded); ``power10``: as ratios 10^x."""
    value = c.lo if np.isfinite(c.lo) else math.nan
    ci = (c.ci_lo, c.ci_hi) if c.n_seeds >= 2 and (np.isfinite(c.ci_lo) or np.isfinite(c.ci_hi)) else None
    if power10:
        value = 10 ** value
        ci = None if ci is None else (10 ** ci[0], 10 ** ci[1])
    return float(value), ci


def common_carrier(carriers: Sequence[str], differ: str) -> str:
    """One line for several :func:`carrier` answers: the common factor (noting the heavy-ball
    path where any answer used it), or ``differ``."""
    names = [c.split(" (via")[0] for c in carriers]
    if len(set(names)) != 1:
        return differ
    return names[0] + (" (via GD -> heavy ball -> Adam where Adam(beta1 = 0)'s runs are censored)"
                       if any("(via" in c for c in carriers) else "")


def gated_outcome(reasons: list, verdicts: Sequence[bool | None], cell_reasons: list) -> tuple[str, list]:
    """The outcome of a claim decided on gated cells (C1, C3): UNDECIDED on any structural
    reason; NOT REPRODUCED if a cell's interval lies on the wrong side; UNDECIDED if one
    straddles (or none could be computed); else REPRODUCED. Returns (outcome, reasons)."""
    from heterosim.claims.base import NOT_REPRODUCED, REPRODUCED, UNDECIDED
    if reasons:
        return UNDECIDED, reasons
    if any(v is False for v in verdicts):
        return NOT_REPRODUCED, reasons
    if any(v is None for v in verdicts) or not verdicts:
        return UNDECIDED, cell_reasons or ["no gated cell could be computed"]
    return REPRODUCED, reasons


def effect_legend(ax, effect: str | None) -> None:
    """The panel's legend with the pair effect as its title (left-aligned, compact)."""
    if ax.get_legend_handles_labels()[0]:
        leg = ax.legend(loc="best", frameon=True, framealpha=0.85, edgecolor="none", fontsize=7,
                        title=effect, title_fontsize=7.5)
        leg._legend_box.align = "left"
