"""C1 (block-scale spread, momentum-matched): the criterion on synthetic tables built to give
each outcome, the censored-interval arithmetic against brute force, the measure function
against torch.optim, the global-rotation knob of the problem families, and the figure."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

import heterosim as hs
from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED, controls as ctl, get
from heterosim.claims import c1_block_scale as c1
from heterosim.sweep import expand

# slopes of log10 T* per decade of spread, and intercepts, per arm
GOOD = {"sgd": (1.0, 1.2), "adam_beta1_0": (0.2, 2.3), "sgd_momentum": (0.6, 1.9), "adam": (0.0, 1.9),
        "signsgd": (0.5, 2.3), "signum": (0.5, 2.5), "blockwise_gd": (0.0, 1.2), "adam_fixed_precond": (0.8, 2.8)}
# heavy ball nearly as flat as Adam: the momentum-matched effect is 0.05 < 0.25
MOMENTUM_ONLY = dict(GOOD, sgd_momentum=(0.05, 1.9), adam_beta1_0=(0.8, 1.0))
JITTER = (-0.02, 0.0, 0.02)   # per-seed change of every slope


def synthetic(slopes=GOOD, grid=None, steps=None, jitter=JITTER, unreached=()):
    """A stored-table look-alike: one row per config of ``grid`` (C1's full grid by default),
    T* = 10^(a + (b + jitter[seed]) * spread); ``unreached``: (arm, basis, gamma, spread, seed) -> inf."""
    rows = []
    for cfg in expand(grid if grid is not None else c1.grid(), zip=c1.CLAIM.zip):
        arm = ctl.arm_of(cfg["momentum"], cfg["precond"]).key
        b, a = slopes[arm]
        if cfg["basis"] == "global" and arm not in ("sgd", "sgd_momentum"):
            b += 0.3                           # the basis control: rotation slows the coordinate-wise arms
        T = round(10 ** (a + (b + jitter[cfg["seed"] % len(jitter)]) * cfg["spread"]))
        key = (arm, cfg["basis"], cfg["gamma"], cfg["spread"], cfg["seed"])
        if key in unreached or T > cfg["steps"]:
            T = math.inf
        if steps is not None:
            cfg["steps"] = steps
        rows.append({**cfg, "T": float(T), "reached": bool(np.isfinite(T)), "lr": 0.1, "edge": False, "arm": arm,
                     "status": "ok", "error": None})
    return pd.DataFrame(rows)


def per_seed_slope(t, arm_a, arm_b, gamma, basis="block"):
    """Reference: numpy.polyfit of log10(T_a / T_b) against the spread, per seed, then the mean."""
    s = t[(t["basis"] == basis) & (t["gamma"] == gamma)]
    out = []
    for seed, g in s.groupby("seed"):
        a = g[g["arm"] == arm_a].sort_values("spread")
        b = g[g["arm"] == arm_b].sort_values("spread")
        out.append(np.polyfit(a["spread"], np.log10(a["T"].to_numpy()) - np.log10(b["T"].to_numpy()), 1)[0])
    return float(np.mean(out))


def test_reproduced_with_the_weakest_pair_as_statistic():
    t = synthetic()
    v = c1.criterion(t)
    assert v.outcome == REPRODUCED, str(v)
    ref = min(per_seed_slope(t, "sgd", "adam_beta1_0", g) for g in (0.5, 1.0))
    ref = min(ref, *(per_seed_slope(t, "sgd_momentum", "adam", g) for g in (0.5, 1.0)))
    assert v.value == pytest.approx(ref, abs=2e-3)          # rounding T to integers moves it a little
    assert ref == pytest.approx(0.6, abs=5e-3) and v.ci[0] <= v.value <= v.ci[1] and v.ci[0] >= 0.25
    assert v.n_reached == v.n_runs == 4 * 2 * 7 * 3          # 4 gated arms x gamma 1/2, 1 x 7 spreads x 3 seeds
    assert "carries the heterogeneity effect: preconditioning" in v.factor and "global rotation" in v.factor


def test_not_reproduced_when_heavy_ball_is_as_flat_as_adam():
    v = c1.criterion(synthetic(MOMENTUM_ONLY))
    assert v.outcome == NOT_REPRODUCED, str(v)
    assert v.value == pytest.approx(0.05, abs=5e-3) and v.ci[1] < 0.25
    assert "heavy ball vs Adam" in v.statistic


def test_censored_runs_in_the_deciding_direction_decide():
    """GD not reaching eps at the two largest spreads only raises the GD-vs-Adam(beta1=0) slope:
    the verdict stands, counts them, and never drops them."""
    miss = {("sgd", "block", g, s, seed) for g in (0.5, 1.0) for s in (2.5, 3.0) for seed in (0, 1, 2)}
    v = c1.criterion(synthetic(unreached=miss))
    assert v.outcome == REPRODUCED and v.n_reached == v.n_runs - len(miss)
    assert "censored run" in v.details


def test_censored_runs_that_could_flip_it_make_it_undecided():
    """Adam not reaching eps at the largest spread could make heavy ball vs Adam anything below
    its value: the table cannot decide."""
    miss = {("adam", "block", 0.5, 3.0, 0)}
    v = c1.criterion(synthetic(unreached=miss))
    assert v.outcome == UNDECIDED and any("censored" in r for r in v.reasons), str(v)
    assert v.n_reached == v.n_runs - 1


def test_reduced_budget_too_few_seeds_quick_grid_and_failures_are_undecided():
    v = c1.criterion(synthetic(steps=5_000))
    assert v.outcome == UNDECIDED and any("reduced budget" in r for r in v.reasons)
    t = synthetic()
    v = c1.criterion(t[t["seed"] < 2])
    assert v.outcome == UNDECIDED and any("2 seed(s)" in r for r in v.reasons)
    v = c1.criterion(synthetic(grid=c1.grid(quick=True)))
    assert v.outcome == UNDECIDED and any("reduced budget" in r for r in v.reasons)
    assert any("spread value(s)" in r for r in v.reasons) and any("gamma value(s) 1.0" in r for r in v.reasons)
    t = synthetic()
    t.loc[t.index[0], "status"] = "failed"
    v = c1.criterion(t)
    assert v.outcome == UNDECIDED and any("failed" in r for r in v.reasons)
    # even a clearly failing table is UNDECIDED on a reduced budget
    assert c1.criterion(synthetic(MOMENTUM_ONLY, steps=5_000)).outcome == UNDECIDED


def test_factorial_main_effects_add_up_to_gd_vs_adam():
    E = c1.effects(synthetic())
    get = lambda c: ctl.get_effect(E, c, basis="block", gamma=0.5).lo  # noqa: E731
    assert get("main:precond") + get("main:momentum") == pytest.approx(get("total:sgd-adam"), abs=1e-12)
    assert get("slope:sgd") - get("slope:adam") == pytest.approx(get("total:sgd-adam"), abs=1e-12)
    assert get("main:precond") == pytest.approx(0.5 * ((1.0 - 0.2) + (0.6 - 0.0)), abs=5e-3)


def test_interval_arithmetic_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 6))
        lo = rng.normal(size=n)
        width = np.where(rng.random(n) < 0.3, np.inf, 0.0)
        hi = lo + width
        w = rng.normal(size=n)
        a, b = ctl.linear_bounds(lo, hi, w)
        big = np.where(np.isfinite(hi), hi, 1e30)
        corners = [float(np.dot(w, np.where(c, big, lo))) for c in itertools.product([0, 1], repeat=n)]
        assert a == pytest.approx(min(corners)) if min(corners) > -1e20 else a == -math.inf
        assert b == pytest.approx(max(corners)) if max(corners) < 1e20 else b == math.inf
    lo, hi = ctl.log_bounds([10.0, math.inf], [100, 1000])
    np.testing.assert_array_equal(lo, [1.0, 3.0])
    np.testing.assert_array_equal(hi, [1.0, math.inf])
    x = np.array([0.0, 1.0, 2.5, 3.0])
    y = np.array([1.0, -2.0, 0.5, 4.0])
    assert float(ctl.slope_weights(x) @ y) == pytest.approx(np.polyfit(x, y, 1)[0])


def test_arms_realise_their_factor_levels():
    for key, arm in ctl.ARMS.items():
        assert ctl.arm_of(arm.momentum, arm.precond).key == key
    assert dict(ctl.ARMS["adam_beta1_0"].hyper)["betas"] == (0.0, 0.999)
    for p in ctl.PAIRS.values():     # a matched pair differs in exactly one factor
        a, b = ctl.ARMS[p.a], ctl.ARMS[p.b]
        differ = {"momentum": a.momentum != b.momentum, "preconditioning": a.precond != b.precond}
        if p.factor == "preconditioning":
            assert differ["preconditioning"] and {a.momentum, b.momentum} in ({"none"}, {"heavy_ball", "ema"})
        else:
            assert differ["momentum"] and not differ["preconditioning"]
    with pytest.raises(ValueError, match="no arm has"):
        ctl.arm_of("heavy_ball", "sign")


def _first_hit_torch(p, make_opt, lr, eps, steps, seed):
    """Reference: torch.optim on f(x) = 1/2 (x - x*)^T H (x - x*) + f*, first step with
    f - f* <= eps (f0 - f*)."""
    H = p.hessian()
    x = p.initial_point(seed).clone().requires_grad_(True)
    opt = make_opt([x], lr)

    def sub(v):
        e = v - p.x_star
        return 0.5 * e @ H @ e
    target = eps * float(sub(x.detach()))
    for t in range(1, steps + 1):
        opt.zero_grad()
        loss = sub(x) + p.f_star
        loss.backward()
        opt.step()
        if float(sub(x.detach())) <= target:
            return t
    return math.inf


@pytest.mark.parametrize("momentum,precond,make", [
    ("heavy_ball", "identity", lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9)),
    ("none", "adam", lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.0, 0.999))),
])
def test_measure_matches_torch_optim_at_the_tuned_lr(momentum, precond, make):
    cfg = {"problem": "block_scale", "spread": 1.0, "gamma": 0.5, "n_blocks": 3, "block_size": 4, "basis": "block",
           "momentum": momentum, "precond": precond, "seed": 1, "eps": 1e-3, "metric": "subopt", "relative": True,
           "steps": 3000}
    row = ctl.measure(cfg)
    assert row["reached"] and row["arm"] == ctl.arm_of(momentum, precond).key and row["d"] == 12
    p = hs.problems.make("block_scale", spread=1.0, gamma=0.5, n_blocks=3, block_size=4, seed=1)
    assert _first_hit_torch(p, make, row["lr"], 1e-3, 3000, 1) == row["T"]


def test_global_rotation_keeps_spectrum_and_start_and_gd():
    kn = dict(spread=2.0, gamma=0.5, n_blocks=4, block_size=4, seed=2)
    a = hs.problems.make("block_scale", **kn)
    b = hs.problems.make("block_scale", global_rotation=True, **kn)
    assert b.blocks.n == 1 and torch.equal(a.spectrum, b.spectrum)
    H = b.hessian()
    assert float(H[:4, 4:].abs().max()) > 1e-3                     # not block-diagonal any more
    ea = a.to_eigenbasis((a.initial_point(2) - a.x_star)[None])
    eb = b.to_eigenbasis((b.initial_point(2) - b.x_star)[None])
    torch.testing.assert_close(ea, eb, rtol=0, atol=1e-12)       # the same initial eigen-coordinates
    evals = torch.linalg.eigvalsh(H)
    torch.testing.assert_close(evals, torch.sort(a.spectrum).values, rtol=1e-10, atol=1e-10)
    base = {"problem": "block_scale", "spread": 2.0, "gamma": 0.5, "n_blocks": 4, "block_size": 4,
            "momentum": "none", "precond": "identity", "seed": 2, "eps": 1e-4, "metric": "subopt",
            "relative": True, "steps": 20_000}
    # GD is rotation-equivariant: the same T* in every basis
    assert len({ctl.measure({**base, "basis": bs})["T"] for bs in ("block", "global")}) == 1
    with pytest.raises(ValueError, match="needs rotate=True"):
        hs.problems.make("block_scale", rotate=False, global_rotation=True)
    with pytest.raises(ValueError, match="basis must be one of"):
        ctl.basis_knobs("diagonal")


def test_figure_shows_pairs_side_by_side_with_labelled_axes():
    import matplotlib.figure
    fig = c1.figure(synthetic())
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = np.array(fig.axes).reshape(-1, 3)
    assert axes.shape[0] == 5                                   # 3 gammas block-rotated, global, axis
    assert all("spread (decades)" in ax.get_xlabel() for ax in axes[-1])
    assert all("tuned steps" in ax.get_ylabel() for ax in axes[:, 0])
    assert [ax.get_title().split("\n")[0] for ax in axes[0]] == [p.label for p in ctl.PAIRS.values()]


def test_claim_record():
    c = get("C1")
    assert c is c1.CLAIM and c.study == "c1_block_scale" and c.experiment == "c1_block_scale.py"
    configs = expand(c.grid(), zip=c.zip)
    assert len(configs) == 756 and {"momentum", "precond", "basis"} <= set(configs[0])
    assert len({cfg["seed"] for cfg in configs}) >= 3
