r"""Every bound of docs/theory.md beside its check, in one registry (:data:`REGISTRY`).

A check takes a suite :class:`~heterosim.verify.suite.Case`, a
:class:`~heterosim.verify.suite.Budget` and a :class:`Context` (a run cache, whether to solve PEPs)
and returns table rows. Iteration and value bounds go through
:func:`~heterosim.verify.harness.check_bound`, per-step certificates through
:func:`~heterosim.verify.harness.check_step_inequality`; the exact rates (Q1-Q5) compare measured
per-step contractions with the prediction. Beside each bound in a PEPit function class a row
carries the exact worst case over that class (:func:`heterosim.bounds.worst_case`), and on
quadratics the exact worst start on the problem's own spectrum
(:func:`heterosim.bounds.gd_worst_start` and its block-wise twin), so that the slack of the bound
and the slack of the instance are told apart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

import heterosim.bounds as hb
from heterosim.optimizers import for_problem, make as make_optimizer
from heterosim.optimizers.primitives import adam_denominator
from heterosim.verify.harness import (FAIL, INCONCLUSIVE, PASS, STEP_RTOL, VALUE_RTOL, BoundCheck, StepCheck,
                                      check_bound, check_step_inequality, eps_for_budget, is_quadratic, run,
                                      starts)

__all__ = [
    "COLUMNS", "Context", "Entry", "REGISTRY", "CHECKS", "BOUND_NAMES", "RATE_RTOL", "RATE_ATOL", "ADAM_BETA2",
    "ADAM_EPS_REL", "ADAM_STEPS",
    "pep_columns", "worst_start_T", "as_context", "check_gd", "check_signgd", "check_steepest", "check_blockwise",
    "check_adam", "check_sgd_stochastic", "check_signsgd_stochastic", "check_gd_quadratic", "check_gd_blind",
    "check_blockwise_quadratic", "check_precond_quadratic", "check_optimal_precond", "check_heavy_ball",
    "check_kunstner", "check_head_growth",
]

#: Relative tolerance for predicted rates that are exact (Q1-Q5: attained by eigen-directions).
RATE_RTOL = 1e-8
#: Absolute floor on a measured per-step ratio: a contraction factor near 0 is measured from a
#: difference of nearly equal numbers, good to ~1e-16 absolute, not relative.
RATE_ATOL = 1e-14
#: beta2 of the Adam run checked against A1 (beta1 = 0, eps = 0).
ADAM_BETA2 = 0.9
#: A1's target, relative to ||g_0||_1, and the longest A1 run. A1 needs eps^-4 steps, so a budgeted
#: eps (as for B1-B5) would sit above ||g_0||_1 and be met at t = 0; a relative eps keeps the check
#: meaningful, the bound's count is then far above the run, and the run must reach eps within
#: ADAM_STEPS (else INCONCLUSIVE).
ADAM_EPS_REL = 0.5
ADAM_STEPS = 10_000
#: Steps of A1-step's own loop (Adam through its (init, update) pair; at least the case's cert_steps).
ADAM_CERT_STEPS = 1000
COLUMNS = ["bound", "problem", "optimizer", "step", "lr", "metric", "quantity", "measured", "predicted",
           "tightness", "sense", "tol", "status", "pass", "n", "worst_start", "pep_class", "pep_T", "pep_worst",
           "bound_over_pep", "pep_iterations", "paid_over_charged", "detail"]


@dataclass
class Context:
    """What checks share within one problem: the run cache and whether to solve PEPs."""

    cache: dict = field(default_factory=dict)
    pep: bool = True
    pep_T: int = 10


def as_context(ctx) -> Context:
    """A :class:`Context` from a Context, a run-cache dict (no PEPs: the older calling convention) or None."""
    if isinstance(ctx, Context):
        return ctx
    if ctx is None or isinstance(ctx, dict):
        return Context(cache={} if ctx is None else ctx, pep=False)
    raise ValueError(f"a check's third argument is a Context, a cache dict or None; got {type(ctx).__name__}")


def _contextual(fn):
    """Let a check take ``ctx`` as a :class:`Context`, a cache dict or None."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kw):
        *head, ctx = args if "ctx" not in kw else (*args, kw.pop("ctx"))
        return fn(*head, as_context(ctx), **kw)
    return wrapper


# ====================================================================== rows
def _num(x):
    return float(x) if x is not None else float("nan")


def _row(bound, case, *, optimizer, step, lr, metric, quantity, measured, predicted, sense, status,
         tol=0.0, n=1, detail="", **extra):
    measured, predicted = _num(measured), _num(predicted)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a predicted value at rounding level (a rate of 0, an error of 0) has no meaningful ratio
        tight = measured / predicted if abs(predicted) > 1e-12 and math.isfinite(predicted) else float("nan")
    row = {"bound": bound, "problem": case.name, "optimizer": optimizer, "step": step, "lr": _num(lr),
           "metric": metric, "quantity": quantity, "measured": measured, "predicted": predicted,
           "tightness": float(tight), "sense": sense, "tol": float(tol), "status": status,
           "pass": status == PASS, "n": int(n), "worst_start": math.nan, "pep_class": "", "pep_T": math.nan,
           "pep_worst": math.nan, "bound_over_pep": math.nan, "pep_iterations": math.nan,
           "paid_over_charged": math.nan, "detail": detail}
    row.update(extra)
    return row


def _ok(passed: bool) -> str:
    return PASS if passed else FAIL


def _iteration_row(name, case, chk: BoundCheck, *, optimizer, step, detail="", **extra):
    i = chk.worst
    note = f"max aggregate/value(T) over the run {chk.value_ratio:.3g}"
    if chk.status == INCONCLUSIVE:
        note += "; capped before the bound's T with eps unreached: INCONCLUSIVE"
    return _row(name, case, optimizer=optimizer, step=step, lr=chk.lr[min(i, len(chk.lr) - 1)],
                metric=chk.metric, quantity="T(eps)", measured=chk.measured_T[i], predicted=chk.bound_T[i],
                sense="<=", status=chk.status, n=chk.n_seeds,
                detail=(detail + "; " if detail else "") + note, **extra)


def _step_row(name, case, chk: StepCheck, *, optimizer, step, lr, n, detail="", **extra):
    return _row(name, case, optimizer=optimizer, step=step, lr=lr, metric="loss",
                quantity="min decrease / guarantee", measured=chk.min_ratio, predicted=1.0, sense=">=",
                status=chk.status, tol=STEP_RTOL, n=n, paid_over_charged=chk.paid_over_charged,
                detail=(detail + "; " if detail else "") + f"{chk.violations} violations in {chk.steps} steps x {n} "
                f"runs; paid/charged curvature at the attaining step {chk.paid_over_charged:.3g}", **extra)


# ============================================================ exact worst cases beside the rows
def pep_columns(bound: hb.Bound, ctx: Context, T: int | None = None, function_class: str | None = None) -> dict:
    """The PEP columns of a row: the exact worst case over the bound's function class at horizon
    min(T, ctx.pep_T) (nothing when PEPs are off or the bound has no PEPit class)."""
    if not ctx.pep or bound.name not in hb.PEP_CLASSES:
        return {}
    if T is None and (bound.form != "linear" or bound.name == "Q5"):
        it = bound.iterations
        T = int(min(ctx.pep_T, max(1, math.ceil(it)))) if math.isfinite(it) else ctx.pep_T
    try:
        w = hb.worst_case(bound, T=T, function_class=function_class)
    except RuntimeError as e:                  # no SDP solver succeeded: say so, do not fail the check
        return {"pep_class": f"unsolved: {e}"[:80]}
    keep = ("pep_class", "pep_T", "pep_worst", "bound_over_pep", "pep_iterations")
    return {k: v for k, v in w.as_dict().items() if k in keep}


def worst_start_T(problem, method: str, bound: hb.Bound, start) -> float:
    """The exact worst start's T(eps) on ``problem``'s spectrum for ``bound``'s metric and eps (GD:
    grad_l2, subopt, dist; block-wise GD: grad_Linv, subopt, dist; heavy ball: dist), nan where the
    problem is not a quadratic."""
    if not is_quadratic(problem) or bound.eps is None:
        return math.nan
    absolute = bound.metric in ("grad_l2", "grad_Linv")
    eps = bound.eps if absolute else bound.eps / bound.coef[0]
    delta = start.delta if absolute else None
    if method == "gd":
        return hb.gd_worst_start(eigenvalues=problem.spectrum.numpy(), eta=bound.lr, eps=eps, metric=bound.metric,
                                 delta=delta).iterations
    if method == "blockwise_gd":
        L = problem.L_blocks.numpy()
        etas = np.asarray(bound.lr if isinstance(bound.lr, tuple) else 1.0 / L, dtype=float)
        return hb.blockwise_gd_worst_start(block_eigenvalues=[s.numpy() for s in problem.block_spectra],
                                           eta_blocks=etas, eps=eps, metric=bound.metric, delta=delta,
                                           L_blocks=L).iterations
    if method == "heavy_ball":
        return hb.heavy_ball_worst_start(eigenvalues=problem.spectrum.numpy(), eta=bound.lr,
                                         momentum=bound.momentum, eps=eps).iterations
    raise ValueError(f"no worst start for method {method!r}; known: gd, blockwise_gd, heavy_ball")


def _budget_bound(make_bound, T):
    return make_bound(eps_for_budget(make_bound, T))


def _worst_start_of(case, budget, chk: BoundCheck, make, method) -> tuple[float, hb.Bound, object]:
    """(worst-start T, the bound, the start) for the row's reported start ``chk.worst``."""
    p = case.problem
    st = starts(p, p.initial_points(case.seeds(budget)))[min(chk.worst, len(case.seeds(budget)) - 1)]
    b = make(p, st)
    return worst_start_T(p, method, b, st), b, st


# ============================================================ deterministic B1-B5
@_contextual
def check_gd(case, budget, ctx):
    """B1 (T(eps) for ||g||_2), B1' (per step, eta = 1/L_2), B5 (GD in the l_1 metric) and the
    B5 ratio L_inf / (d L_2) <= rho_H, from one GD run per start; B1 beside its worst start and its
    exact worst case over L-smooth functions (PEP)."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    L = p.L_blocks.detach().cpu().numpy()
    make_b1 = lambda q, s: _budget_bound(lambda e: hb.gd_nonconvex(L2=q.L2, delta=s.delta, eps=e), T)
    b1 = check_bound(p, "gd", make_b1, seeds=seeds, _cache=ctx.cache)
    ws, bound, _ = _worst_start_of(case, budget, b1, make_b1, "gd")
    extra = pep_columns(bound, ctx)
    note = _convex_note(bound, ctx, case)
    rows = [_iteration_row("B1", case, b1, optimizer="gd", step="1/L2", worst_start=ws, detail=note, **extra)]
    rows.append(_b1_step(case, budget, ctx, b1, L))
    make_b5 = lambda q, s: _budget_bound(lambda e: hb.gd_nonconvex_l1(L2=q.L2, delta=s.delta, eps=e, d=q.d), T)
    b5 = check_bound(p, "gd", make_b5, seeds=seeds, _cache=ctx.cache)
    rows.append(_iteration_row("B5", case, b5, optimizer="gd", step="1/L2", detail="GD certified in ||g||_1"))
    ratio = hb.sign_vs_gd_ratio(Linf=p.Linf, d=p.d, L2=p.L2)
    rho = hb.rho_H(p.L_blocks, p.blocks.sizes, p.L2)
    rows.append(_row("B5-ratio", case, optimizer="-", step="-", lr=None, metric="constants",
                     quantity="Linf/(d L2) vs rho_H", measured=ratio, predicted=rho, sense="<=",
                     status=_ok(ratio <= rho * (1 + 1e-12)), detail=f"Linf kind {p.Linf_kind}"))
    return rows


def _convex_note(bound, ctx, case) -> str:
    """On convex problems: the bound against the worst case over L-smooth *convex* functions."""
    if not (ctx.pep and is_quadratic(case.problem)):
        return ""
    T = int(min(ctx.pep_T, max(1, math.ceil(bound.iterations))))
    try:
        w = hb.worst_case(bound, T=T, function_class="smooth_convex")
    except RuntimeError:
        return ""
    return f"over L-smooth convex functions bound/worst = {w.ratio:.4g} at T = {T}"


def _b1_step(case, budget, ctx, b1, L):
    p = case.problem
    seeds = case.seeds(budget)
    steps = max(b1.steps, case.cert_steps)
    st = check_step_inequality(p, "gd", 1.0 / p.L2, lambda at, lr: hb.gd_step_decrease(
        g_block_sq=at["blocks"] ** 2, L_blocks=L, eta=lr[..., None]), seeds=seeds, steps=steps,
        first_order=lambda at, lr: lr * at["grad_l2"] ** 2, _cache=ctx.cache)
    extra = _step_pep(1.0 / p.L2, p.L2, ctx)
    return _step_row("B1'", case, st, optimizer="gd", step="1/L2", lr=1.0 / p.L2, n=len(seeds),
                     detail="f_t - f_t+1 >= eta sum_b (1 - eta L_b/2) ||g_t,b||^2", **extra)


def _step_pep(eta, L, ctx) -> dict:
    """The one-step worst case of GD over L-smooth functions beside a per-step certificate."""
    if not ctx.pep:
        return {}
    try:
        w = hb.step_decrease_worst_case(eta=eta, L=L)
    except RuntimeError:
        return {}
    return {"pep_class": w.function_class, "pep_T": 1, "pep_worst": w.worst, "bound_over_pep": w.ratio}


@_contextual
def check_signgd(case, budget, ctx):
    """B2: SignGD at eta = eps / L_inf (T(eps) for ||g||_1, running mean <= Delta/(eta T) +
    eta L_inf/2 at every T) and its per-step descent inequality (no PEPit class: l_inf smoothness)."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    b2 = check_bound(p, "signsgd", lambda q, s: _budget_bound(
        lambda e: hb.signgd_nonconvex(Linf=q.Linf, delta=s.delta, eps=e), T), seeds=seeds, _cache=ctx.cache)
    rows = [_iteration_row("B2", case, b2, optimizer="signsgd", step="eps/Linf")]
    st = check_step_inequality(p, "signsgd", b2.lr, lambda at, lr: hb.signgd_step_decrease(
        g_l1=at["grad_l1"], Linf=p.Linf, eta=lr), seeds=seeds, steps=max(b2.steps, case.cert_steps),
        first_order=lambda at, lr: lr * at["grad_l1"], _cache=ctx.cache)
    rows.append(_step_row("B2-step", case, st, optimizer="signsgd", step="eps/Linf", lr=float(b2.lr.max()),
                          n=len(seeds), detail="f_t - f_t+1 >= eta ||g_t||_1 - eta^2 Linf/2"))
    return rows


@_contextual
def check_steepest(case, budget, ctx):
    """B3: steepest descent in l_inf (step ||g||_1/L_inf along -sign g): T(eps) for ||g||_1 and
    the per-step decrease ||g_t||_1^2 / (2 L_inf)."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    opt = make_optimizer("steepest_linf", Linf=1.0)     # step = lr ||g||_1 sign(g), lr = 1/L_inf
    b3 = check_bound(p, opt, lambda q, s: _budget_bound(
        lambda e: hb.steepest_linf_nonconvex(Linf=q.Linf, delta=s.delta, eps=e), T), seeds=seeds, _cache=ctx.cache)
    rows = [_iteration_row("B3", case, b3, optimizer="steepest_linf", step="||g||_1/Linf")]
    st = check_step_inequality(p, opt, 1.0 / p.Linf, lambda at, lr: hb.steepest_linf_decrease(
        g_l1=at["grad_l1"], Linf=p.Linf), seeds=seeds, steps=max(b3.steps, case.cert_steps),
        first_order=lambda at, lr: lr * at["grad_l1"] ** 2, _cache=ctx.cache)
    rows.append(_step_row("B3-step", case, st, optimizer="steepest_linf", step="||g||_1/Linf",
                          lr=1.0 / p.Linf, n=len(seeds), detail="f_t - f_t+1 >= ||g_t||_1^2 / (2 Linf)"))
    return rows


@_contextual
def check_blockwise(case, budget, ctx):
    """B4: block-wise steps eta_b = 1/L_b: T(eps) for (sum_b ||g_b||^2/L_b)^{1/2}, beside its worst
    start and its exact worst case (B1 in z_b = L_b^1/2 x_b), and the per-step decrease
    sum_b ||g_b||^2 / (2 L_b)."""
    p, T = case.problem, budget.T
    seeds = case.seeds(budget)
    opt = for_problem("blockwise_gd", p)
    L = p.L_blocks.detach().cpu().numpy()
    make_b4 = lambda q, s: _budget_bound(lambda e: hb.blockwise_gd_nonconvex(L_blocks=L, delta=s.delta, eps=e), T)
    b4 = check_bound(p, opt, make_b4, lr=1.0, seeds=seeds, _cache=ctx.cache)
    ws, bound, _ = _worst_start_of(case, budget, b4, make_b4, "blockwise_gd")
    rows = [_iteration_row("B4", case, b4, optimizer="blockwise_gd", step="1/L_b per block", worst_start=ws,
                           detail="in the l2 metric B4 certifies ||g||_2 <= eps after B1's own count when "
                                  "max_b L_b = L2", **pep_columns(bound, ctx))]
    st = check_step_inequality(p, opt, 1.0, lambda at, lr: hb.blockwise_gd_step_decrease(
        g_block_sq=at["blocks"] ** 2, L_blocks=L), seeds=seeds, steps=max(b4.steps, case.cert_steps),
        first_order=lambda at, lr: (at["blocks"] ** 2 / L).sum(-1), _cache=ctx.cache)
    rows.append(_step_row("B4-step", case, st, optimizer="blockwise_gd", step="1/L_b per block", lr=1.0,
                          n=len(seeds), detail="f_t - f_t+1 >= sum_b ||g_t,b||^2 / (2 L_b)", **_step_pep(1.0, 1.0, ctx)))
    return rows


# ================================================================ A1: Adam (beta1 = 0)
def _adam_trajectory(p, opt, X0, lrs, steps, Linf):
    """Adam run through its (init, update) pair, recording the loss and, per step, A1-step's
    guarantee and first-order decrease from the denominator sqrt(v_hat) + eps Adam actually used."""
    X = X0.clone()
    lr = torch.as_tensor(np.asarray(lrs, dtype=float), dtype=X.dtype).reshape(-1, 1)
    beta2, e = opt.hyper["betas"][1], opt.hyper["eps"]
    state = opt.init(X, p.blocks)
    f, guar, lin, gx = [p.loss(X)], [], [], []
    for _ in range(steps):
        G = p.grad(X)
        step, state = opt.update(G, state, X, lr, p.blocks)
        D = adam_denominator(state.exp_avg_sq, (1.0 - beta2 ** state.count) ** 0.5, e)  # the one Adam used
        gu, fo = hb.adam_step_decrease(g=G, denom=D, eta=lr[:, 0], Linf=Linf)
        guar.append(gu)
        lin.append(fo)
        gx.append(G.norm(dim=1) * X.norm(dim=1))
        X = X + step
        f.append(p.loss(X))
    f = torch.stack(f, 1).numpy()
    gx = torch.stack(gx, 1).numpy()
    tol = STEP_RTOL * np.maximum(np.abs(f[:, :-1]), np.abs(f[:, 1:])) + 32 * np.finfo(float).eps * gx
    return f, torch.stack(guar, 1).numpy(), torch.stack(lin, 1).numpy(), tol


@_contextual
def check_adam(case, budget, ctx):
    """A1: Adam with beta1 = 0, beta2 = :data:`ADAM_BETA2`, eps = 0 at A1's step for the budget's T:
    T(eps) for ||g||_1 and the mean of ||g_t||_1^2 <= value(T)^2 at every T; A1-step (the l_inf
    descent lemma on Adam's actual step) at every step."""
    p = case.problem
    seeds = case.seeds(budget)
    opt = make_optimizer("adam", betas=(0.0, ADAM_BETA2), eps=0.0)
    make_a1 = lambda q, s: hb.adam_linf_nonconvex(Linf=q.Linf, delta=s.delta, beta2=ADAM_BETA2,
                                                  eps=ADAM_EPS_REL * s.grad_l1)
    a1 = check_bound(p, opt, make_a1, seeds=seeds, max_steps=ADAM_STEPS, _cache=ctx.cache)
    rows = [_iteration_row("A1", case, a1, optimizer="adam(beta1=0)", step="sqrt(2 Delta (1-beta2)/(Linf T))",
                           detail=f"beta2 = {ADAM_BETA2}, eps = {ADAM_EPS_REL} ||g_0||_1, run capped at "
                                  f"{ADAM_STEPS}; depends on the curvature through Linf only")]
    X0 = p.initial_points(seeds).to(torch.float64)
    f, guar, lin, tol = _adam_trajectory(p, opt, X0, a1.lr, max(min(a1.steps, ADAM_CERT_STEPS), case.cert_steps),
                                         p.Linf)
    from heterosim.verify.harness import judge_steps
    st = judge_steps(p.name, f, guar, tol, lin)
    rows.append(_step_row("A1-step", case, st, optimizer="adam(beta1=0)", step="A1's eta", lr=float(a1.lr.max()),
                          n=len(seeds), detail="f_t - f_t+1 >= eta sum_i g_i^2/D_i - Linf/2 eta^2 max_i (g_i/D_i)^2"))
    return rows


# ================================================================= S1, S2
def _with_sigma(problem, sigma):
    """The same quadratic with another per-block noise level (an exact minibatch: the mean of K
    independent N(0, sigma^2) draws is N(0, sigma^2 / K))."""
    import copy
    out = copy.copy(problem)
    out.sigma = torch.as_tensor(sigma, dtype=torch.float64)
    out.has_oracle = True
    return out


@_contextual
def check_sgd_stochastic(case, budget, ctx):
    """S1 (Ghadimi & Lan): SGD with E||noise||^2 = sigma^2 at the bound's eta, through check_bound: the
    seed mean of (1/T) sum_{t<T} ||g_t||^2 less 3 standard errors is at most value(T)^2 at every T."""
    p = case.problem
    make = lambda q, s: _budget_bound(lambda e: hb.sgd_nonconvex(L2=q.L2, delta=s.delta, sigma2=q.sigma2, eps=e),
                                      budget.T_stoch)
    seeds = list(range(budget.noise_seeds))
    chk = check_bound(p, "sgd", make, seeds=case.seeds(budget)[:1], stochastic=True, noise_seeds=seeds,
                      _cache=ctx.cache)
    return [_row("S1", case, optimizer="sgd", step="min(1/L2, eps^2/(2 L2 sigma^2))", lr=chk.lr[0],
                 metric="mean_t E||g_t||^2", quantity="T(eps) of the seed mean", measured=chk.measured_T[0],
                 predicted=chk.bound_T[0], sense="<=", status=chk.status, n=len(seeds),
                 detail=f"mean - 3 SE <= value(T)^2 at every T; max (mean - 3 SE)/bound {chk.value_ratio:.3g} "
                        f"(as a norm)")]


@_contextual
def check_signsgd_stochastic(case, budget, ctx):
    """S2 (Bernstein et al. 2018, Thm 1): signSGD with batch K and step 1/sqrt(||L||_1 K) for K steps,
    through check_bound: the seed mean of (1/K) sum_k ||g_k||_1 less 3 SE is <= sqrt(A / K). L_vec is
    the SDP certificate y (diag(y) >= H); the batch of K is drawn exactly as one N(0, sigma_i^2/K) draw.
    The detail reports the noise term's share 2 ||sigma||_1 / sqrt(A) of the bound."""
    from heterosim.precondition import linf_sdp
    p = case.problem
    _, y = linf_sdp(p.hessian().numpy(), return_certificate=True)
    sigma_vec = p.blocks.expand(p.sigma).numpy()
    make = lambda q, s: hb.signsgd_bernstein(L_vec=y, sigma_vec=sigma_vec, delta=s.delta, K=budget.K)
    seeds = list(range(budget.noise_seeds))
    chk = check_bound(_with_sigma(p, p.sigma / math.sqrt(budget.K)), "signsgd", make,
                      seeds=case.seeds(budget)[:1], stochastic=True, noise_seeds=seeds, _cache=ctx.cache)
    b = make(p, starts(p, p.initial_points(case.seeds(budget)[:1]))[0])
    share = b.constants_dict["noise_share"]
    return [_row("S2", case, optimizer="signsgd", step="1/sqrt(||L||_1 K), batch K", lr=b.lr,
                 metric="E mean_k ||g_k||_1", quantity=f"value at K = {budget.K}",
                 measured=chk.value_at_end, predicted=b.eps, sense="<=", status=chk.status, n=len(seeds),
                 detail=f"seed mean shown; passes when mean - 3 SE <= the bound; (mean - 3 SE)/bound "
                        f"{chk.value_ratio:.4g}; noise term 2||sigma||_1 is {share:.0%} of sqrt(A) "
                        f"(noise_share {share:.3f}); ||L||_1 = {float(y.sum()):.4g}")]


# ===================================================== Q1-Q5: quadratic rates
def _ratios(curve):
    """Per-step ratios m_{t+1}/m_t (B, K); nan once m_t has fallen below 1e-150 m_0 (where the
    metric is rounding, not the mode being measured)."""
    a, b = curve[:, :-1], curve[:, 1:]
    live = a > 1e-150 * curve[:, :1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(live, b / np.where(live, a, 1.0), np.nan)


def _eig_start(p, index):
    """x* + the unit eigenvector of H holding spectrum[index]."""
    return (p.x_star + p.eigenbasis()[:, index]).unsqueeze(0)


def _rate_from(p, opt, lr, x0, steps, metric, cache):
    return _ratios(run(p, opt, [lr], x0, steps, cache=cache).curves[metric])[0]


def _exact(ratios, rate, rtol=RATE_RTOL):
    """(ok, the measured ratio farthest from ``rate``, its relative deviation): ok when every
    ratio is within rtol * rate + RATE_ATOL of the rate."""
    r = np.asarray(ratios, dtype=float).reshape(-1)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return False, float("nan"), float("nan")
    err = np.abs(r - rate)
    i = int(np.argmax(err))
    return bool(err[i] <= rtol * rate + RATE_ATOL), float(r[i]), float(err[i] / rate) if rate > 0 else float(err[i])


@_contextual
def check_gd_quadratic(case, budget, ctx):
    """Q1 at eta = 1/L (f - f*, rate (1 - 1/kappa)^2) and eta = 2/(L+mu) (||x - x*||, rate
    (kappa-1)/(kappa+1)): from the mu-eigenvector every per-step ratio equals the rate
    (to RATE_RTOL); from random starts the bound holds at every step; beside, the exact worst
    case over L-smooth mu-strongly convex functions (PEP)."""
    p = case.problem
    rows = []
    i_mu = int(torch.argmin(p.spectrum))
    for step in ("1/L", "2/(L+mu)"):
        b = hb.gd_quadratic_rate(L=p.L2, mu=p.mu, step=step)
        exact, worst, dev = _exact(_rate_from(p, "gd", b.lr, _eig_start(p, i_mu), budget.exact_steps, b.metric,
                                              ctx.cache), b.rate)
        chk = check_bound(p, "gd", lambda q, s: hb.gd_quadratic_rate(
            L=q.L2, mu=q.mu, step=step, initial=getattr(s, b.metric)), seeds=case.seeds(budget),
            steps=budget.rate_steps, _cache=ctx.cache)
        rows.append(_row(f"Q1 {step}", case, optimizer="gd", step=step, lr=b.lr, metric=b.metric,
                         quantity="per-step contraction", measured=worst, predicted=b.rate, sense="==",
                         tol=RATE_RTOL, status=_ok(exact and chk.holds), n=len(case.seeds(budget)),
                         detail=(f"mu-eigenvector start: max |ratio/rate - 1| = {dev:.2g}; random starts: "
                                 f"max m_t/(r^t m_0) = {chk.value_ratio:.3g} over {chk.steps} steps"),
                         **pep_columns(b, ctx)))
    return rows


@_contextual
def check_gd_blind(case, other, budget, ctx):
    """Q1 corollary: GD's loss curve depends only on the spectrum and the initial eigen-
    coordinates, never on how the eigenvalues are arranged into blocks (Zhang cases 3 and 4)."""
    p, q = case.problem, other.problem
    if not torch.allclose(torch.sort(p.spectrum).values, torch.sort(q.spectrum).values, rtol=1e-14, atol=0):
        raise ValueError(f"{case.name} and {other.name} must share one spectrum")
    seeds = case.seeds(budget)
    f1 = run(p, "gd", [1.0 / p.L2], p.initial_points(seeds), budget.rate_steps, cache=ctx.cache).curves["subopt"]
    f2 = run(q, "gd", [1.0 / q.L2], q.initial_points(seeds), budget.rate_steps, cache=ctx.cache).curves["subopt"]
    dev = float(np.max(np.abs(f1 - f2) / np.maximum(np.abs(f1), 1e-300)))
    return [_row("Q1-blind", case, optimizer="gd", step="1/L", lr=1.0 / p.L2, metric="subopt",
                 quantity=f"max rel. diff vs {other.name}", measured=dev, predicted=0.0, sense="==", tol=1e-10,
                 status=_ok(dev <= 1e-10), n=len(seeds), detail="same spectrum, different block arrangement")]


@_contextual
def check_blockwise_quadratic(case, budget, ctx):
    """Q2: eta_b = 1/L_b: f - f* contracts by max_b (1 - 1/kappa_b)^2, exactly from the
    mu_b-eigenvector of the block with the largest kappa_b; the bound holds from random starts."""
    p = case.problem
    opt = for_problem("blockwise_gd", p)
    L, mu = p.L_blocks.numpy(), p.mu_blocks.numpy()
    b = hb.blockwise_gd_quadratic_rate(L_blocks=L, mu_blocks=mu)
    bw = int(np.argmax(L / mu))
    i = int(sum(p.blocks.sizes[:bw])) + int(torch.argmin(p.block_spectra[bw]))
    exact, worst, dev = _exact(_rate_from(p, opt, 1.0, _eig_start(p, i), budget.exact_steps, "subopt", ctx.cache),
                               b.rate)
    chk = check_bound(p, opt, lambda q, s: hb.blockwise_gd_quadratic_rate(L_blocks=L, mu_blocks=mu, initial=s.subopt),
                      lr=1.0, seeds=case.seeds(budget), steps=budget.rate_steps, _cache=ctx.cache)
    return [_row("Q2", case, optimizer="blockwise_gd", step="1/L_b per block", lr=1.0, metric="subopt",
                 quantity="per-step contraction", measured=worst, predicted=b.rate, sense="==",
                 tol=RATE_RTOL, status=_ok(exact and chk.holds), n=len(case.seeds(budget)),
                 detail=(f"max_b kappa_b = {float(np.max(L / mu)):.4g} vs kappa = {p.kappa:.4g}; eigenvector start: "
                         f"max |ratio/rate - 1| = {dev:.2g}; random starts: max m_t/(r^t m_0) = {chk.value_ratio:.3g}"),
                 **pep_columns(b, ctx))]


def _modal_rate(p, P, x0, x1):
    """The largest per-step factor |c_1,i / c_0,i| of the eigen-coordinates c = V^T P^{-1/2}(x - x*)
    of M = P^{1/2} H P^{1/2}, over modes present at x0 (|c_0,i| >= 1e-6 max |c_0|)."""
    H = p.hessian()
    s = P.sqrt()
    lam, V = torch.linalg.eigh(s[:, None] * H * s[None, :])
    c0 = V.T @ ((x0 - p.x_star) / s)
    c1 = V.T @ ((x1 - p.x_star) / s)
    present = c0.abs() >= 1e-6 * c0.abs().max()
    return float((c1[present] / c0[present]).abs().max())


def _precond_run(p, P, x0, cache, steps=1):
    """adam_fixed_precond (beta1 = 0, beta2 = 1, v_0 = g_0^2) from x0 whose first gradient has
    |g_0| = 1/P, at the best step 2/(lambda_min + lambda_max) of M = P^{1/2} H P^{1/2};
    returns (the Q3 bound, measured modal contraction, the run's subopt curve)."""
    b = hb.fixed_diagonal_precond_rate(H=p.hessian(), p=P, metric="dist_P")
    res = run(p, "adam_fixed_precond", [b.lr], x0.unsqueeze(0), steps, cache=cache)
    x1 = run(p, "adam_fixed_precond", [b.lr], x0.unsqueeze(0), 1, cache=cache).x_final[0]
    return b, _modal_rate(p, P, x0, x1), res


def _start_with_grad(p, target_abs, seed):
    """x0 = x* + H^{-1}(target_abs * s) for random signs s: the first gradient is target_abs * s."""
    g = torch.Generator().manual_seed(int(seed) + 4242)
    sgn = torch.where(torch.rand(p.d, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0).to(torch.float64)
    return p.x_star + torch.linalg.solve(p.hessian(), target_abs * sgn)


def _q3_one(p, x0, budget, cache):
    """Q3 from one start: (ok, |modal/r - 1|, measured r^2, r^2, kappa_P, lr, max loss ratio / r^2, max f_t/(r^2t f_0))."""
    P = 1.0 / p.grad(x0.unsqueeze(0))[0].abs()
    b, r_meas, res = _precond_run(p, P, x0, cache, steps=budget.rate_steps)
    r2 = b.rate ** 2
    exact, _, dev = _exact([r_meas], b.rate)
    f = res.curves["subopt"][0]
    lr_ = float(np.nanmax(_ratios(res.curves["subopt"])[0]))
    vr = float(np.max(f / (f[0] * (r2 ** np.arange(len(f))) * (1 + VALUE_RTOL) + 1e-26 * f[0])))
    ok = exact and lr_ <= r2 * (1 + VALUE_RTOL) + RATE_ATOL and vr <= 1.0
    return ok, dev, r_meas ** 2, r2, b.constants_dict["kappa_P"], b.lr, (lr_ / r2 if r2 > 0 else 0.0), vr


def _gd_lower_row(case, budget, ctx):
    """Q3-gd-lower: from the worse extreme eigenvector, any step contracts f - f* by no less than
    (1 - 2/(kappa+1))^2 per step (Zhang et al.'s GD lower bound)."""
    p = case.problem
    low = hb.gd_lower_bound_rate(kappa=p.kappa)
    i_mu, i_L = int(torch.argmin(p.spectrum)), int(torch.argmax(p.spectrum))
    meas = []
    for eta in (1.0 / p.L2, 2.0 / (p.L2 + p.mu), 1.5 / p.L2, 0.5 / p.L2):
        worse = i_mu if abs(1 - eta * p.mu) >= abs(1 - eta * p.L2) else i_L
        meas.append(float(np.nanmin(_rate_from(p, "gd", eta, _eig_start(p, worse), budget.exact_steps, "subopt",
                                               ctx.cache))))
    m = min(meas)
    return _row("Q3-gd-lower", case, optimizer="gd", step="1/L, 2/(L+mu), 1.5/L, 0.5/L", lr=None,
                metric="subopt", quantity="min per-step contraction", measured=m, predicted=low.rate,
                sense=">=", tol=RATE_RTOL, status=_ok(m >= low.rate * (1 - RATE_RTOL) - RATE_ATOL), n=4,
                detail="worst-case start (the worse extreme eigenvector) for each step")


@_contextual
def check_precond_quadratic(case, budget, ctx):
    """Q3: Adam with beta1 = 0, beta2 = 1, v_0 = g_0^2 is GD preconditioned by P = diag(1/|g_0|).
    At eta = 2/(lambda_min + lambda_max) of M = P^{1/2} H P^{1/2} the predicted rate
    r = (kappa_P - 1)/(kappa_P + 1) (r^2 on f - f*) equals the measured contraction of the
    worst eigen-coordinate of M (to RATE_RTOL); every per-step ratio of f - f* stays <= r^2
    (f_t is a positive combination of the modes' r_i^(2t), so its ratios rise towards r^2) and
    f_t <= r^(2t) f_0 at every step. Also Zhang et al.'s GD lower bound (Q3-gd-lower)."""
    p = case.problem
    seeds = case.seeds(budget)
    per = [_q3_one(p, x0, budget, ctx.cache) for x0 in p.initial_points(seeds)]
    ok = all(r[0] for r in per)
    dev, measured, predicted, kP, lr_w = max(per, key=lambda r: r[1])[1:6]
    rows = [_row("Q3", case, optimizer="adam_fixed_precond", step="2/(lmin+lmax) of P^1/2 H P^1/2",
                 lr=lr_w, metric="subopt", quantity="per-step contraction (worst mode)",
                 measured=measured, predicted=predicted, sense="==", tol=RATE_RTOL, status=_ok(ok), n=len(seeds),
                 detail=(f"kappa_P = {kP:.4g} vs kappa = {p.kappa:.4g}; max |modal/r - 1| = {dev:.2g}; "
                         f"max loss ratio / r^2 = {max(r[6] for r in per):.6f}; "
                         f"max f_t/(r^2t f_0) = {max(r[7] for r in per):.3g}"))]
    rows.append(_gd_lower_row(case, budget, ctx))
    return rows


@_contextual
def check_optimal_precond(case, budget, ctx):
    """Q4: kappa* of the optimal diagonal preconditioner (SDP, certified by eigenvalues) is a
    lower envelope: the measured contraction of GD preconditioned by Adam's P = 1/|g_0|, by
    Jacobi (diag H) and by the identity, each at its own best step, is >= the predicted
    ((kappa*-1)/(kappa*+1))^2, and with D* itself (at eta = 2/(1 + kappa*)) it is attained."""
    from heterosim.precondition import optimal_diagonal_preconditioner
    p = case.problem
    H = p.hessian()
    opt = optimal_diagonal_preconditioner(H.numpy(), blocks=p.blocks)
    q4 = hb.optimal_diagonal_precond_rate(kappa_star=opt.kappa_star, metric="dist_P")
    x_adam = p.initial_points(case.seeds(budget)[:1])[0]
    cands = {"adam": (1.0 / p.grad(x_adam.unsqueeze(0))[0].abs(), x_adam),
             "jacobi": (1.0 / torch.diagonal(H), None), "identity": (torch.ones(p.d, dtype=torch.float64), None)}
    measured = {}
    for name, (P, x0) in cands.items():
        x0 = _start_with_grad(p, 1.0 / P, 0) if x0 is None else x0
        measured[name] = _precond_run(p, P, x0, ctx.cache)[1] ** 2
    best = min(measured, key=measured.get)
    r_star2 = q4.rate ** 2
    rows = [_row("Q4", case, optimizer="adam_fixed_precond", step="2/(lmin+lmax) of each P", lr=None,
                 metric="subopt", quantity=f"best diagonal contraction ({best})", measured=measured[best],
                 predicted=r_star2, sense=">=", tol=RATE_RTOL, n=len(measured),
                 status=_ok(all(v >= r_star2 * (1 - RATE_RTOL) - RATE_ATOL for v in measured.values())),
                 detail=(f"kappa* = {opt.kappa_star:.4g} (certificate ok: {opt.verify(H.numpy())}) vs kappa = "
                         f"{p.kappa:.4g}; " + ", ".join(f"{k} {v:.6f}" for k, v in measured.items())))]
    D = torch.as_tensor(opt.D, dtype=torch.float64)
    x0 = _start_with_grad(p, D, 1)
    r_att = _modal_rate(p, 1.0 / D, x0, run(p, "adam_fixed_precond", [q4.lr], x0.unsqueeze(0), 1,
                                            cache=ctx.cache).x_final[0])
    exact, _, dev = _exact([r_att], q4.rate)
    rows.append(_row("Q4-attained", case, optimizer="adam_fixed_precond", step="2/(1+kappa*), P = D*^-1",
                     lr=q4.lr, metric="subopt", quantity="per-step contraction (worst mode)",
                     measured=r_att ** 2, predicted=r_star2, sense="==", tol=RATE_RTOL, status=_ok(exact), n=1,
                     detail=(f"|modal/r* - 1| = {dev:.2g}; kappa* is certified from D* by eigenvalues, "
                             "so the rate of D* is r* exactly")))
    return rows


def _q5_asymptotic(p, opt, b, case, budget, cache):
    """For r >= 0.5: ||x_t - x*||^(1/t) from random starts on the envelope between T/2 and T."""
    if b.rate < 0.5:           # kappa < 9: the asymptote is reached in a few steps, the exact check covers it
        return True, "r < 0.5: no separate asymptotic check"
    T = int(min(4000, math.ceil(30 * math.log(10) / -math.log(b.rate))))     # r^T = 1e-30
    dist = run(p, opt, [b.lr], p.initial_points(case.seeds(budget)), T, cache=cache).curves["dist"]
    w = max(10, T // 20)
    early, late = dist[:, T // 2 - w:T // 2 + 1].max(1), dist[:, T - w:].max(1)
    est = (late / early) ** (1.0 / (T - T // 2))
    hi = b.rate * 2 ** (2.0 / (T - T // 2)) * 1.01
    ok = bool(np.all((est >= 0.99 * b.rate) & (est <= hi)))
    return ok, (f"random starts over {T} steps: ||x_t - x*||^(1/t) envelope "
                f"{float(est.min()):.6f}..{float(est.max()):.6f}")


@_contextual
def check_heavy_ball(case, budget, ctx):
    """Q5: heavy ball (sgd_momentum) with eta = 4/(sqrt L + sqrt mu)^2, beta = r^2. At the ends
    of the spectrum the 2x2 recursion has a double root, so from the mu-eigenvector
    ||x_t - x*|| = (1 + 2t/(sqrt(kappa)+1)) r^t ||x_0 - x*|| exactly, and from the
    L-eigenvector (1 + 2 sqrt(kappa) t/(sqrt(kappa)+1)) r^t (torch's convention: the first step
    is plain GD): the per-step ratio with the polynomial factor divided out equals r to
    RATE_RTOL. For r >= 0.5 (kappa >= 9) the asymptotic rate is also checked from random starts.
    Beside it, the exact worst case over quadratics (PEP), which exceeds r^T by the factor (1 + cT)."""
    p = case.problem
    b = hb.heavy_ball_quadratic_rate(L=p.L2, mu=p.mu)
    opt = make_optimizer("sgd_momentum", momentum=b.momentum)
    sk = math.sqrt(p.kappa)
    worst, exact_ok = (0.0, b.rate), True
    for idx, c in ((int(torch.argmin(p.spectrum)), 2.0 / (sk + 1.0)),
                   (int(torch.argmax(p.spectrum)), 2.0 * sk / (sk + 1.0))):
        dist = run(p, opt, [b.lr], _eig_start(p, idx), budget.exact_steps, cache=ctx.cache).curves["dist"]
        ok, r_w, dev = _exact(_ratios(dist / (1.0 + c * np.arange(dist.shape[1]))), b.rate)
        exact_ok &= ok
        if not math.isnan(dev) and dev >= worst[0]:
            worst = (dev, r_w)
    asym_ok, env = _q5_asymptotic(p, opt, b, case, budget, ctx.cache)
    gd_best = hb.gd_quadratic_rate(L=p.L2, mu=p.mu, step="2/(L+mu)").rate
    return [_row("Q5", case, optimizer="sgd_momentum", step="4/(sqrt L+sqrt mu)^2, beta = r^2", lr=b.lr,
                 metric="dist", quantity="per-step contraction", measured=worst[1], predicted=b.rate,
                 sense="==", tol=RATE_RTOL, status=_ok(exact_ok and asym_ok), n=len(case.seeds(budget)),
                 detail=(f"extreme-eigenvector starts: max |ratio/r - 1| = {worst[0]:.2g}; {env} vs r "
                         f"{b.rate:.6f} (GD's best {gd_best:.6f}); PEP: the bound is asymptotic, r^T/worst < 1"),
                 **pep_columns(b, ctx))]


# ================================================================ Kunstner, head
@_contextual
def check_kunstner(case, budget, ctx):
    """Kunstner's model f(W) = sum_k pi_k 1/2 ||w_k||^2: GD's iterate equals the closed form
    (1 - eta pi_k)^t w_k(0), and class k reaches ||g_k|| <= eps ||g_k(0)|| at exactly
    ceil(log eps / log|1 - eta pi_k|); sign descent's |w(t)| equals its closed form (independent of pi)."""
    p = case.problem
    C, h = p.knobs["n_classes"], p.knobs["h"]
    pi = p.L_blocks.numpy()
    eta, eps = 1.0 / p.L2, 1e-2
    T = int(math.ceil(float(np.max(hb.kunstner_gd_iterations(pi=pi, eta=eta, eps=eps))))) + 2
    x0 = p.initial_points(case.seeds(budget)[:1])
    res = run(p, "gd", [eta], x0, T, cache=ctx.cache)
    pred = hb.kunstner_gd(pi=pi, eta=eta, t=T, w0=x0[0].reshape(C, h).numpy())
    err = float(np.max(np.abs(res.x_final[0].reshape(C, h).numpy() - pred)) / np.max(np.abs(x0.numpy())))
    ratio = res.curves["blocks"][0] / res.curves["blocks"][0][0]     # ||g_k(t)|| / ||g_k(0)||, (T+1, C)
    T_meas = np.array([np.argmax(ratio[:, k] <= eps) if (ratio[:, k] <= eps).any() else np.inf for k in range(C)])
    T_pred = np.ceil(hb.kunstner_gd_iterations(pi=pi, eta=eta, eps=eps))
    steps_ok = bool(np.all(np.abs(T_meas - T_pred) <= 1))
    rows = [_row("Kunstner-GD", case, optimizer="gd", step="1/L (= 1/pi_1)", lr=eta, metric="||g_k|| / ||g_k(0)||",
                 quantity="T(eps) of the rarest class", measured=T_meas[-1], predicted=T_pred[-1], sense="==",
                 tol=1.0, status=_ok(steps_ok and err <= 1e-12), n=C,
                 detail=(f"per-class T within 1 step for all {C} classes: {steps_ok}; x_T vs closed form "
                         f"max rel. err {err:.2g}; T_rare/T_freq = {T_meas[-1] / max(T_meas[1], 1):.3g} "
                         f"(pi_2/pi_C = {pi[1] / pi[-1]:.3g})"))]
    eta_s, Ts = 0.05, 120
    res = run(p, "signsgd", [eta_s], x0, Ts, cache=ctx.cache)
    err_s = float(np.max(np.abs(res.x_final[0].abs().numpy() - hb.kunstner_sign(eta=eta_s, t=Ts, w0=x0[0].numpy()))))
    tol = 8 * Ts * np.finfo(float).eps * float(x0.abs().max())
    rows.append(_row("Kunstner-sign", case, optimizer="signsgd", step="constant", lr=eta_s, metric="|w(T)|",
                     quantity="max |error| vs closed form", measured=err_s, predicted=0.0, sense="==", tol=tol,
                     status=_ok(err_s <= tol), n=1, detail=f"T = {Ts}; the same speed eta for every class"))
    return rows


@_contextual
def check_head_growth(case, budget, ctx):
    """Linear-head growth under sign updates: ||W_t - W_0||_F <= eta t sqrt(C h) at every step of
    every minibatch run, for SignSGD and Signum (beta 0.9) (docs/theory.md C6). The tightness is the
    fraction of that ceiling reached at the last step (the quantity claim C6 measures)."""
    p = case.problem
    eta, T = 1e-2, max(50, budget.T // 4)
    bound = hb.sign_head_growth(eta=eta, C=p.C, h=p.p)
    noise = list(range(max(2, budget.seeds)))
    rows = []
    for name, opt in (("signsgd", make_optimizer("signsgd")), ("signum", make_optimizer("signum", beta=0.9))):
        chk = check_bound(p, opt, bound, lr=eta, seeds=case.seeds(budget)[:1], steps=T, stochastic=True,
                          noise_seeds=noise)
        rows.append(_row("head-growth", case, optimizer=name, step="constant", lr=eta, metric="||W_t - W_0||_F",
                         quantity=f"||W_T - W_0||_F at T = {T}", measured=float(chk.final.max()),
                         predicted=bound.value(float(T)), sense="<=", status=chk.status, n=len(noise),
                         detail=(f"C = {p.C}, h = {p.p}, batch {p.batch_size}, feature mean "
                                 f"{p.knobs.get('feature_mean', 'n/a')}; max over t of ||W_t - W_0||/(eta t "
                                 f"sqrt(Ch)) = {chk.value_ratio:.3f}")))
    return rows


# ============================================================ the registry
@dataclass(frozen=True)
class Entry:
    """One registry entry: the bound functions of :mod:`heterosim.bounds` a check judges, the check
    itself, the suite tag it applies to, and the row labels it returns."""

    bounds: tuple
    check: Callable
    tag: str
    rows: tuple


#: Every check beside the bounds it judges: check name -> :class:`Entry`.
REGISTRY = {
    "B1": Entry((hb.gd_nonconvex, hb.gd_step_decrease, hb.gd_nonconvex_l1, hb.sign_vs_gd_ratio, hb.rho_H),
                check_gd, "deterministic", ("B1", "B1'", "B5", "B5-ratio")),
    "B2": Entry((hb.signgd_nonconvex, hb.signgd_step_decrease), check_signgd, "deterministic", ("B2", "B2-step")),
    "B3": Entry((hb.steepest_linf_nonconvex, hb.steepest_linf_decrease), check_steepest, "deterministic",
                ("B3", "B3-step")),
    "B4": Entry((hb.blockwise_gd_nonconvex, hb.blockwise_gd_step_decrease), check_blockwise, "deterministic",
                ("B4", "B4-step")),
    "A1": Entry((hb.adam_linf_nonconvex, hb.adam_step_decrease), check_adam, "deterministic", ("A1", "A1-step")),
    "S1": Entry((hb.sgd_nonconvex,), check_sgd_stochastic, "stochastic", ("S1",)),
    "S2": Entry((hb.signsgd_bernstein,), check_signsgd_stochastic, "stochastic", ("S2",)),
    "Q1": Entry((hb.gd_quadratic_rate,), check_gd_quadratic, "quadratic", ("Q1 1/L", "Q1 2/(L+mu)")),
    "Q2": Entry((hb.blockwise_gd_quadratic_rate,), check_blockwise_quadratic, "quadratic", ("Q2",)),
    "Q3": Entry((hb.fixed_diagonal_precond_rate, hb.gd_lower_bound_rate), check_precond_quadratic, "quadratic",
                ("Q3", "Q3-gd-lower")),
    "Q4": Entry((hb.optimal_diagonal_precond_rate,), check_optimal_precond, "quadratic", ("Q4", "Q4-attained")),
    "Q5": Entry((hb.heavy_ball_quadratic_rate,), check_heavy_ball, "quadratic", ("Q5",)),
    "Kunstner": Entry((hb.kunstner_gd, hb.kunstner_gd_iterations, hb.kunstner_sign), check_kunstner, "kunstner",
                      ("Kunstner-GD", "Kunstner-sign")),
    "head-growth": Entry((hb.sign_head_growth,), check_head_growth, "head", ("head-growth",)),
}
#: The registry as (tag, check, row labels) triples, by check name.
CHECKS = {name: (e.tag, e.check, e.rows) for name, e in REGISTRY.items()}
#: Bound names of every row :func:`heterosim.verify.verify` can return.
BOUND_NAMES = tuple(n for e in REGISTRY.values() for n in e.rows) + ("Q1-blind",)
