r"""C10: sign descent against GD, step by step (Tomihari & Sato in its own form; docs/theory.md,
C10 and bound B5).

Claim
-----
At their best step sizes, steepest l_inf descent guarantees the one-step decrease
||g||_1^2 / (2 L_inf) = phi(g) d ||g||_2^2 / (2 L_inf) and GD guarantees ||g||_2^2 / (2 L_2),
so sign descent's guarantee is the larger iff the gradient density
phi(g) = ||g||_1^2 / (d ||g||_2^2) exceeds L_inf / (d L_2) (:func:`heterosim.bounds.sign_beats_gd`):
gradient density against Hessian heterogeneity. Tomihari & Sato (arXiv 2502.00213) read Adam's
edge in transformers this way. C10 checks the prediction, step by step along real
trajectories, against the decreases the two steps actually achieve.

Construction
------------
The knob families of docs/theory.md (:mod:`heterosim.problems.quadratic`; 8 blocks of 16, block
condition number 10, so L_inf is exact for rotated blocks by vertex enumeration and is the
trace for axis-aligned ones): ``block_scale`` with gamma = 0, 1/2, 1 (gradient and Hessian
heterogeneity together), ``hessian_only`` and ``gradient_only``; spread 0, 1, 2, 3 decades;
Haar-rotated and axis-aligned blocks; 4 seeds. That is 5 families x 4 spreads x 2 bases x
4 seeds = 160 problems, two trajectories each.

Trajectories: GD (``sgd``) and SignGD (``signsgd``), each at its tuned constant learning rate
(:func:`heterosim.engine.tune`, :data:`LR_RANGE` = 1e-8..100, 2 per decade, refined: the fewest
steps to f - f* <= 1e-4 (f_0 - f*) within 100 000 steps), from the problem's seeded start. The
iterates x_0, ..., x_{T*-1} (every iterate before the target) are the points of the test.

The per-step test (fixed before the run)
----------------------------------------
At every iterate x = x_t, with g = grad f(x), s = sign(g):

* prediction: sign wins iff phi(g) > L_inf / (d L_2) (``sign_beats_gd``);
* measured, at the best step sizes of B5 (the steps that maximise each method's guaranteed
  decrease under its own smoothness constant): GD's decrease
  f(x) - f(x - g / L_2) against steepest l_inf's f(x) - f(x - (||g||_1 / L_inf) s), both by the
  problem's loss oracle; sign wins iff its decrease is strictly larger;
* reported beside it, not decided on: the same comparison at each direction's exact line-search
  step (eta = <g, u> / u^T H u along u = g and u = s), the best any step size could do.

At B5's steps each measured decrease lies between its guarantee and twice it, so the
prediction can only fail where the predicted ratio R = phi d L_2 / L_inf lies within a factor
2 of 1; the table reports that fraction (``ambiguous``) so the agreement can be read against it.

Criterion (:func:`criterion`, fixed before the full run)
--------------------------------------------------------
Per family (block_scale gamma = 0, 1/2, 1; hessian_only; gradient_only; bases, spreads, seeds and
both trajectories pooled), the agreement is the fraction of all steps where prediction and
measurement agree, with a 95% bootstrap interval over trajectories (a trajectory's steps are
resampled together, since successive steps are not independent).

* REPRODUCED: every family's interval lies at or above :data:`PASS_AGREEMENT` = 0.8.
* NOT REPRODUCED: some family's interval lies below 0.8.
* UNDECIDED: otherwise, or when the table cannot decide: a trajectory whose tuning reached no
  target (no best constant step), a best learning rate on the grid's edge, a failed config, a
  missing family, fewer than 4 seeds, a tuning budget or target other than the full run's.

The statistic is the lowest family agreement, with its interval.

Result of the full run (160 problems, 320 trajectories, about 3 minutes on one core)
-----------------------------------------------------------------------------------
UNDECIDED: lowest family agreement 0.787, 95% CI [0.678, 0.863] (block_scale gamma = 1/2);
block_scale gamma = 1 0.821 [0.744, 0.872] and hessian_only 0.822 [0.759, 0.867] also straddle
0.8; block_scale gamma = 0 0.911 [0.858, 0.951] and gradient_only 0.997 [0.993, 0.999] pass;
n_reached 320/320. Where it errs, the prediction favours sign: in hessian_only it predicts
"sign wins" at 38% of the steps and sign wins at 20%. Most steps are in the ambiguous band
(R within 2x of 1: 77-80% of the steps in those families), where GD's measured decrease is near
twice its guarantee and steepest l_inf's near its own. At exact line search, sign wins at
<= 7% of steps in every family and the agreement falls to 0.30-0.68 (gradient_only 0.996).

History
-------
* docs/theory.md listed C10 with a draft criterion (from each iterate, steepest l_inf's
  decrease at B3's step against GD's at 1/L_2, compared with ``sign_beats_gd``; agreement rate
  with a confidence interval per knob family and basis) and "no study yet". This module fixes
  that draft: the decision is per family with bases pooled (each basis is reported in the
  details), threshold 0.8, and the line-search comparison is reported beside it.
* Issue 12 asked for the check "at the best constant steps"; B5 compares the two methods at
  the step sizes that maximise their guarantees (GD: the constant 1/L_2; sign: ||g_t||_1 / L_inf,
  constant within the step), which are the steps used here. The trajectories themselves run at
  each method's tuned constant step.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from heterosim.claims.base import (LEVEL, NOT_REPRODUCED, REPRODUCED, UNDECIDED, Claim, Verdict, bootstrap_ci,
                                   fmt_ci, n_failed, ok_rows, undecided_reasons)

__all__ = ["STUDY", "FAMILIES", "SPREADS", "SEEDS", "EPS", "STEPS", "N_SAMPLE", "PASS_AGREEMENT", "TRAJECTORIES",
           "family_label", "step_decreases", "measure", "grid", "agreement", "criterion", "figure", "CLAIM"]

STUDY = "c10_sign_vs_gd"
#: (problem, extra knobs) of every family.
FAMILIES = (("block_scale", {"gamma": 0.0}), ("block_scale", {"gamma": 0.5}), ("block_scale", {"gamma": 1.0}),
            ("hessian_only", {}), ("gradient_only", {}))
SPREADS = (0.0, 1.0, 2.0, 3.0)
SEEDS = (0, 1, 2, 3)
EPS = 1e-4
METRIC = "subopt"
STEPS = 100_000
#: Learning-rate range of the tunings: wider below than ``claims.common.LR_RANGE``, since SignGD's step
#: is absolute and hessian_only at 3 decades puts almost no error in its sharp blocks (a pilot found
#: its best SignGD step below 1e-5, on the common grid's edge).
LR_RANGE = (1e-8, 100.0)
#: Steps of each trajectory kept as rows for the figure (log-spaced).
N_SAMPLE = 30
PASS_AGREEMENT = 0.8
#: The trajectories: name -> registered optimizer.
TRAJECTORIES = {"gd": "sgd", "signgd": "signsgd"}
BOOT_SEED = 0
_CHUNK = 4096


def family_label(problem: str, gamma=None) -> str:
    """``block_scale g=0.5``, ``hessian_only``, ``gradient_only``."""
    if problem == "block_scale":
        return f"block_scale g={float(gamma):g}"
    return str(problem)


# ----------------------------------------------------------------------------- per step
def step_decreases(problem, X: torch.Tensor) -> dict:
    """At each row x of X (T, d): phi(g), the prediction, and the one-step decreases of GD at
    1/L_2 and of steepest l_inf at ||g||_1 / L_inf along -sign(g) (measured by the loss oracle),
    and of both directions at their exact line-search steps. Returns numpy arrays of length T."""
    from heterosim import bounds
    d, L2, Linf = int(problem.d), float(problem.L2), float(problem.Linf)
    out = {k: [] for k in ("phi", "predicted", "dec_gd", "dec_sign", "dec_gd_ls", "dec_sign_ls")}
    for s in range(0, X.shape[0], _CHUNK):
        x = X[s:s + _CHUNK]
        f, g = problem.loss_and_grad(x)
        sg = torch.sign(g)
        l1 = g.abs().sum(1, keepdim=True)
        phi = bounds.gradient_density(g)
        step_sign = (l1 / Linf) * sg
        f_gd = problem.loss(x - g / L2)
        f_sign = problem.loss(x - step_sign)
        Hg, Hs = problem.hvp(x, g), problem.hvp(x, sg)
        eta_g = (g * g).sum(1, keepdim=True) / (g * Hg).sum(1, keepdim=True)
        eta_s = l1 / (sg * Hs).sum(1, keepdim=True)
        f_gd_ls = problem.loss(x - eta_g * g)
        f_sign_ls = problem.loss(x - eta_s * sg)
        out["phi"].append(phi.numpy())
        out["predicted"].append(np.asarray(bounds.sign_beats_gd(phi.numpy(), Linf, d, L2)))
        out["dec_gd"].append((f - f_gd).numpy())
        out["dec_sign"].append((f - f_sign).numpy())
        out["dec_gd_ls"].append((f - f_gd_ls).numpy())
        out["dec_sign_ls"].append((f - f_sign_ls).numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def _sample_steps(T: int, n: int) -> np.ndarray:
    if T <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.round(np.geomspace(1, T, n)).astype(int) - 1)


def measure(config: dict) -> list[dict]:
    """One problem: for each trajectory of :data:`TRAJECTORIES`, one ``kind="trajectory"`` row
    (tuned lr, T*, steps, the agreement counts at B5's steps and at line search, the share of
    steps where sign wins, predicted and measured, and the ``ambiguous`` share) and
    :data:`N_SAMPLE` log-spaced ``kind="step"`` rows (phi, the predicted ratio
    R = phi d L_2 / L_inf, the measured ratios of the decreases).

    Config: ``problem``, ``spread``, ``gamma`` (block_scale only), ``rotate``, ``seed``,
    ``eps``, ``steps``; optional ``n_blocks``, ``block_size`` (default 8 x 16)."""
    import heterosim as hs
    from heterosim.claims.common import LR_PER_DECADE, LR_REFINE, trajectory
    knobs = {"spread": float(config["spread"]), "rotate": bool(config["rotate"]), "seed": int(config["seed"])}
    if config["problem"] == "block_scale":
        knobs["gamma"] = float(config["gamma"])
    for k in ("n_blocks", "block_size"):   # the families' defaults (8 x 16) unless the config sets them
        if config.get(k) is not None:
            knobs[k] = int(config[k])
    p = hs.problems.make(config["problem"], **knobs)
    seed = int(config["seed"])
    eps, steps = float(config.get("eps", EPS)), int(config.get("steps", STEPS))
    d, L2, Linf = int(p.d), float(p.L2), float(p.Linf)
    threshold = Linf / (d * L2)
    common = {"family": family_label(config["problem"], config.get("gamma")), "d": d, "L2": L2, "Linf": Linf,
              "Linf_kind": str(p.Linf_kind), "threshold": threshold}
    rows = []
    for name, opt_name in TRAJECTORIES.items():
        opt = hs.optimizers.make(opt_name)
        r = hs.engine.tune(p, opt, eps=eps, metric=METRIC, relative=True,
                           lrs=hs.engine.lr_grid(*LR_RANGE, per_decade=LR_PER_DECADE), seeds=(seed,), steps=steps,
                           refine=LR_REFINE)
        row = {**common, "kind": "trajectory", "trajectory": name, "lr": float(r.lr), "T_star": float(r.T),
               "edge": bool(r.edge)}
        if not math.isfinite(r.T) or r.T < 1:
            rows.append({**row, "n_steps": 0})
            continue
        T = int(r.T)
        X = torch.stack(trajectory(p, opt, [r.lr], T - 1, record=range(T), observe=lambda t, X: X[0].clone(),
                                   seed=seed))
        m = step_decreases(p, X)
        sign_wins = m["dec_sign"] > m["dec_gd"]
        sign_wins_ls = m["dec_sign_ls"] > m["dec_gd_ls"]
        R = m["phi"] / threshold
        row.update({"n_steps": T, "n_agree": int((sign_wins == m["predicted"]).sum()),
                    "n_agree_ls": int((sign_wins_ls == m["predicted"]).sum()),
                    "n_pred_sign": int(m["predicted"].sum()), "n_sign_wins": int(sign_wins.sum()),
                    "n_sign_wins_ls": int(sign_wins_ls.sum()), "n_ambiguous": int(((R > 0.5) & (R < 2.0)).sum()),
                    "phi_min": float(m["phi"].min()), "phi_median": float(np.median(m["phi"])),
                    "phi_max": float(m["phi"].max()),
                    "min_dec_gd": float(m["dec_gd"].min()), "min_dec_sign": float(m["dec_sign"].min())})
        rows.append(row)
        for t in _sample_steps(T, N_SAMPLE):
            rows.append({**common, "kind": "step", "trajectory": name, "t": int(t), "phi": float(m["phi"][t]),
                         "ratio_predicted": float(R[t]),
                         "ratio_measured": float(m["dec_sign"][t] / m["dec_gd"][t]),
                         "ratio_ls": float(m["dec_sign_ls"][t] / m["dec_gd_ls"][t]),
                         "predicted": bool(m["predicted"][t]), "agree": bool(sign_wins[t] == m["predicted"][t])})
    return rows


def grid(quick: bool = False) -> list[dict]:
    """160 problems (module docstring); ``quick``: spread 0 and 2, rotated, one seed, 2 000 steps."""
    spreads = [0.0, 2.0] if quick else list(SPREADS)
    rot = [True] if quick else [True, False]
    seeds = [0] if quick else list(SEEDS)
    steps = [2_000] if quick else [STEPS]
    out = []
    for prob, extra in FAMILIES:
        if quick and extra.get("gamma", 0.5) != 0.5:   # one block_scale gamma in the reduced grid
            continue
        out.append({"problem": [prob], **{k: [v] for k, v in extra.items()}, "spread": spreads, "rotate": rot,
                    "seed": seeds, "eps": [EPS], "steps": steps})
    return out


# ----------------------------------------------------------------------------- criterion
def _ratio(a, n) -> float:
    return float(np.sum(a) / np.sum(n)) if np.sum(n) > 0 else math.nan


def agreement(table: pd.DataFrame, line_search: bool = False, by=("family",)) -> pd.DataFrame:
    """Per group: the fraction of steps where prediction and measurement agree (at B5's steps,
    or at exact line search with ``line_search``), its 95% bootstrap interval over trajectories,
    the per-trajectory mean, and the shares of steps predicted and measured as sign wins, and
    ambiguous (R within a factor 2 of 1)."""
    column, wins = ("n_agree_ls", "n_sign_wins_ls") if line_search else ("n_agree", "n_sign_wins")
    t = ok_rows(table)
    t = t[(t["kind"] == "trajectory") & (t["n_steps"] > 0)] if "kind" in t.columns else t.iloc[0:0]
    rows = []
    for key, g in t.groupby(list(by), sort=True):
        a, n = g[column].to_numpy(float), g["n_steps"].to_numpy(float)
        ci = bootstrap_ci((a, n), _ratio, paired=True, seed=BOOT_SEED)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "agreement": _ratio(a, n),
                     "lo": ci[0] if ci else math.nan, "hi": ci[1] if ci else math.nan,
                     "per_trajectory": float(np.mean(a / n)), "n_trajectories": int(len(g)), "n_steps": int(n.sum()),
                     "pred_sign": _ratio(g["n_pred_sign"], n), "sign_wins": _ratio(g[wins], n),
                     "ambiguous": _ratio(g["n_ambiguous"], n)})
    return pd.DataFrame(rows)


def criterion(table: pd.DataFrame) -> Verdict:
    """C10's fixed rule (module docstring) on a stored table."""
    title = "sign beats GD per step iff phi(g) > L_inf/(d L_2)"
    rule = (f"at every iterate of GD and SignGD trajectories (tuned constant steps, to f - f* <= {EPS:g} (f_0 - f*)) "
            f"on the knob families, 'sign wins' is measured as "
            f"f(x) - f(x - ||g||_1/L_inf sign g) > f(x) - f(x - g/L_2) "
            f"and predicted as phi(g) > L_inf/(d L_2); REPRODUCED iff in every family (block_scale gamma 0, 1/2, 1; "
            f"hessian_only; gradient_only) the fraction of steps where they agree has its {LEVEL:.0%} bootstrap CI "
            f"(over trajectories) at or above {PASS_AGREEMENT}; NOT REPRODUCED iff some family's CI lies below it")
    failed = n_failed(table)
    t = ok_rows(table)
    traj = t[t["kind"] == "trajectory"] if "kind" in t.columns else t.iloc[0:0]
    n_runs = len(traj)
    reached = np.isfinite(traj["T_star"].to_numpy(float)) if n_runs else np.zeros(0, bool)
    n_reached = int(reached.sum())
    extra = []
    edge = int(traj["edge"].astype(bool).sum()) if n_runs else 0
    if edge:
        extra.append(f"{edge} trajectory tuning(s) had their best learning rate on the grid's edge")
    want = {family_label(p, k.get("gamma")) for p, k in FAMILIES}
    have = set(traj["family"]) if n_runs else set()
    if have and want - have:
        extra.append(f"family(ies) missing: {', '.join(sorted(want - have))}")
    if n_runs and "eps" in traj.columns and not np.allclose(traj["eps"].to_numpy(float), EPS):
        extra.append(f"trajectory target other than the full run's eps = {EPS:g}")
    reasons = undecided_reasons(n_runs=n_runs, n_unreached=n_runs - n_reached, n_failed=failed,
                                n_seeds=int(traj["seed"].nunique()) if n_runs and "seed" in traj.columns else 0,
                                min_seeds=len(SEEDS),
                                budget=float(traj["steps"].min()) if n_runs and "steps" in traj.columns else None,
                                full_budget=float(STEPS), extra=extra)
    ag = agreement(t)
    ls = agreement(t, line_search=True)
    if ag.empty:
        return Verdict("C10", title, UNDECIDED, rule, "lowest family agreement", math.nan, None, n_reached, n_runs,
                       reasons=tuple(reasons or ["no trajectory with steps in the table"]))
    worst = ag.loc[ag["agreement"].idxmin()]
    value = float(worst["agreement"])
    ci = (float(worst["lo"]), float(worst["hi"])) if np.isfinite(worst["lo"]) else None
    if ag["lo"].isna().any() and not reasons:
        reasons = ["a family has too few trajectories for an interval"]
    outcome = UNDECIDED
    if not reasons:
        if (ag["lo"] >= PASS_AGREEMENT).all():
            outcome = REPRODUCED
        elif (ag["hi"] < PASS_AGREEMENT).any():
            outcome = NOT_REPRODUCED
        else:
            reasons = [f"{r.family}'s interval [{r.lo:.2f}, {r.hi:.2f}] straddles {PASS_AGREEMENT}"
                       for r in ag.itertuples() if r.lo < PASS_AGREEMENT <= r.hi]
    per = "; ".join(f"{r.family} {r.agreement:.3f}{fmt_ci((r.lo, r.hi))} over {r.n_steps} steps "
                    f"(sign wins measured {r.sign_wins:.2f}, predicted {r.pred_sign:.2f}, ambiguous {r.ambiguous:.2f})"
                    for r in ag.itertuples())
    lsd = "; ".join(f"{r.family} {r.agreement:.3f}{fmt_ci((r.lo, r.hi))} (sign wins {r.sign_wins:.2f})"
                    for r in ls.itertuples())
    basis = ""
    if "rotate" in t.columns:
        b = agreement(t, by=("family", "rotate"))
        basis = "; ".join(f"{r.family} {'rotated' if r.rotate else 'axis'} {r.agreement:.3f}" for r in b.itertuples())
    details = (f"agreement per family at B5's steps: {per}. At exact line search (reported only): {lsd}. "
               f"Per basis: {basis}.")
    return Verdict("C10", title, outcome, rule, f"lowest family agreement ({worst['family']})", value, ci,
                   n_reached, n_runs, details=details, reasons=tuple(reasons), table=ag)


# ----------------------------------------------------------------------------- figure
def figure(table: pd.DataFrame):
    """Left: the measured ratio of the two decreases (sign over GD, at B5's steps) against the
    predicted ratio R = phi d L_2 / L_inf, for log-spaced steps of every trajectory, by family;
    the prediction is right in the shaded quadrants (both ratios on the same side of 1), and
    B5 confines the points to the band R/2 .. 2R. Right: the fraction of steps where prediction
    and measurement agree, per family, at B5's steps and at exact line search, with 95% CIs over
    trajectories; the dashed line is the criterion's 0.8."""
    from heterosim import plots
    plt = plots._plt()
    t = ok_rows(table)
    steps = t[t["kind"] == "step"] if "kind" in t.columns else t.iloc[0:0]
    with plt.rc_context(plots.PAPER_RC):
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(7.0, 2.9), gridspec_kw={"width_ratios": [1.0, 1.1]})
        fams = sorted(set(t["family"])) if "family" in t.columns else []
        for i, fam in enumerate(fams):
            s = steps[steps["family"] == fam]
            y = s["ratio_measured"].to_numpy(float)
            ok = np.isfinite(y) & (y > 0)
            ax.scatter(s["ratio_predicted"].to_numpy(float)[ok], y[ok], s=5, alpha=0.5, color=f"C{i}", linewidths=0,
                       label=fam)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lim = ax.get_xlim()
        xs = np.geomspace(*lim, 50)
        ax.fill_between(xs, xs / 2, xs * 2, color="0.85", zorder=0, label="B5 band R/2..2R")
        ax.axvline(1.0, color="0.3", lw=0.7, ls="--")
        ax.axhline(1.0, color="0.3", lw=0.7, ls="--")
        ax.set_xlim(lim)
        ax.set_xlabel("predicted ratio R = phi(g) d L_2 / L_inf")
        ax.set_ylabel("measured decrease ratio,\nsign step / GD step")
        ax.legend(fontsize=6, frameon=False, loc="upper left", markerscale=2)
        ag, ls = agreement(t), agreement(t, line_search=True)
        if not ag.empty:
            y = np.arange(len(ag))
            for off, frame, lab, col in ((-0.18, ag, "B5 steps (decided)", "C0"), (0.18, ls, "line search", "C1")):
                err = np.vstack([frame["agreement"] - frame["lo"], frame["hi"] - frame["agreement"]])
                bx.barh(y + off, frame["agreement"], height=0.34, color=col, label=lab,
                        xerr=np.nan_to_num(err), capsize=2, error_kw={"lw": 0.8})
            bx.set_yticks(y, ag["family"])
        bx.axvline(PASS_AGREEMENT, color="k", lw=0.8, ls="--")
        bx.set_xlim(0, 1.0)
        bx.set_xlabel("fraction of steps where\nprediction = measurement")
        bx.legend(fontsize=7, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
        fig.suptitle("C10: sign descent vs GD per step: gradient density against L_inf / (d L_2)")
        fig.tight_layout()
        fig.subplots_adjust(top=0.8)
    return fig


CLAIM = Claim(label="C10", title="sign beats GD per step iff phi(g) > L_inf/(d L_2)", study=STUDY,
              criterion=criterion, figure=figure, grid=grid, measure=measure, experiment=f"{STUDY}.py")
