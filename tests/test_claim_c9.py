"""C9 (what predicts the GD/Adam gap): the construction, the predictors and the measure against
references (the spectrum is what was asked, GD is blind to the arrangement (Q1), Q3's kappa_P,
torch.optim.Adam and a plain GD loop), and the fixed criterion on synthetic tables made to give
each outcome."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import heterosim as hs
from heterosim import bounds, precondition
from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import base
from heterosim.claims import c9_zhang_mechanism as c9


@pytest.fixture
def fast_ci(monkeypatch):
    """The criterion's Spearman intervals with 200 resamples instead of 2000 (the rule is the same;
    each interval then costs milliseconds, not a second). The full intervals are checked against
    base.spearman_ci in test_spearman_table_uses_the_package_interval."""
    def quick(x, y, seed=0):
        rho = float(stats.spearmanr(x, y).statistic) if np.ptp(x) and np.ptp(y) else math.nan
        if not math.isfinite(rho) or len(x) < 4:
            return rho, None
        rx, ry = stats.rankdata(x), stats.rankdata(y)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(x), (200, len(x)))
        sims = [np.corrcoef(stats.rankdata(rx[i]), stats.rankdata(ry[i]))[0, 1] for i in idx]
        return rho, (float(np.nanpercentile(sims, 2.5)), float(np.nanpercentile(sims, 97.5)))
    monkeypatch.setattr(c9, "spearman_ci", quick)

# ----------------------------------------------------------------------------- construction


def test_instances_hold_the_global_spectrum_and_swaps_move_eigenvalues_across_blocks():
    base = c9.instance("logspaced", "contiguous", 0.0, seed=2)
    glob = np.exp(np.linspace(0.0, math.log(c9.KAPPA), 100))
    for b, s in enumerate(base.block_spectra):                       # contiguous: block b = ranks 25b..25b+24
        np.testing.assert_allclose(s.numpy(), glob[25 * b:25 * (b + 1)], rtol=1e-12)
    p = c9.instance("logspaced", "contiguous", 0.1, seed=2)
    assert p.knobs["n_moved"] == 10                                   # round(0.1 * 100 / 2) = 5 pairs
    np.testing.assert_allclose(np.sort(p.spectrum.numpy()), glob, rtol=1e-12)   # the same multiset
    moved = sum(int(np.sum(~np.isin(s.numpy(), b.numpy()))) for s, b in zip(p.block_spectra, base.block_spectra))
    assert moved == 10                                               # each swapped eigenvalue changed block
    inter = c9.instance("logspaced", "interleaved", 0.0, seed=2)
    np.testing.assert_allclose(inter.block_spectra[1].numpy(), glob[1::4], rtol=1e-12)
    assert float(p.L2 / p.mu_blocks.min()) == pytest.approx(c9.KAPPA, rel=1e-12)


def test_swaps_are_nested_and_cross_blocks():
    block_of = np.arange(100) // 25
    small, large = c9.swap_pairs(block_of, 2, seed=5), c9.swap_pairs(block_of, 20, seed=5)
    assert small == large[:2]
    assert all(block_of[a] != block_of[b] for a, b in large)
    assert len({i for pr in large for i in pr}) == 40                 # disjoint pairs
    full = c9.instance("loguniform", "contiguous", 1.0, seed=1)
    assert full.knobs["n_moved"] == 100                               # every eigenvalue moved once


def test_gd_is_blind_to_the_arrangement():
    """Q1: same spectrum and start, any arrangement into rotated blocks: the same GD loss curve."""
    a = c9.instance("logspaced", "contiguous", 0.0, seed=0, kappa=100.0)
    b = c9.instance("logspaced", "contiguous", 0.6, seed=0, kappa=100.0)
    ra, rb = (hs.engine.run(p, "sgd", [0.01], [0], steps=200, record="loss") for p in (a, b))
    np.testing.assert_allclose(ra.curves["loss"], rb.curves["loss"], rtol=1e-9)


def test_predictors_match_their_references():
    p = c9.instance("loguniform", "contiguous", 0.06, seed=4)
    got = c9.predictors(p, seed=4)
    H = p.hessian().numpy()
    g0 = p.grad(p.initial_point(4).unsqueeze(0))[0].numpy()
    q3 = bounds.fixed_diagonal_precond_rate(H=H, p=1.0 / np.abs(g0))
    assert got["kappa_adam0"] == pytest.approx(q3.constants_dict["kappa_P"], rel=1e-9)
    kb = [float(s.max() / s.min()) for s in p.block_spectra]
    assert got["max_kappa_b"] == pytest.approx(max(kb), rel=1e-12)
    sizes = [len(s) for s in p.block_spectra]
    assert got["rho_H"] == pytest.approx(bounds.rho_H([float(s.max()) for s in p.block_spectra], sizes, p.L2))
    assert got["h11_ratio"] == pytest.approx(np.abs(H).sum() / (100 * p.L2), rel=1e-12)
    assert 1.0 <= got["kappa_star"] <= got["max_kappa_b"] * (1 + 1e-9)
    D = precondition.optimal_diagonal_preconditioner(H, blocks=p.blocks)
    assert D.verify(H) and got["kappa_star"] == pytest.approx(D.kappa_star)


def _first_hit(values, thr):
    hit = np.nonzero(np.asarray(values) <= thr)[0]
    return float(hit[0]) if hit.size else math.inf


def test_measure_matches_a_plain_gd_loop_and_torch_adam():
    config = {"spectrum": "logspaced", "arrangement": "contiguous", "swap": 0.1, "seed": 0, "kappa": 100.0,
              "eps": 1e-6, "steps": 5_000}
    row = c9.measure(config)
    p = c9.instance("logspaced", "contiguous", 0.1, 0, kappa=100.0)
    H, xs = p.hessian(), p.x_star
    x0 = p.initial_point(0)

    def f(x):
        e = x - xs
        return float(0.5 * e @ H @ e)
    f0 = f(x0)
    x, vals = x0.clone(), [f0]
    for _ in range(int(row["T_gd"]) + 1):                              # GD at the tuned lr
        x = x - row["lr_gd"] * (H @ (x - xs))
        vals.append(f(x))
    assert _first_hit(vals, 1e-6 * f0) == row["T_gd"]
    w = torch.nn.Parameter(x0.clone())                                  # Adam(beta1 = 0) by torch.optim
    opt = torch.optim.Adam([w], lr=row["lr_adam_b1_0"], betas=(0.0, 0.999), eps=1e-8)
    vals = [f0]
    for _ in range(int(row["T_adam_b1_0"]) + 1):
        opt.zero_grad()
        w.grad = (H @ (w.detach() - xs)).clone()
        opt.step()
        vals.append(f(w.detach()))
    assert _first_hit(vals, 1e-6 * f0) == row["T_adam_b1_0"]
    assert row["gap_precond"] == pytest.approx(math.log10(row["T_gd"] / row["T_adam_b1_0"]))
    assert row["n_moved"] == 10 and not row["edge_gd"]


# ----------------------------------------------------------------------------- criterion
def _table(gap_of, n=96, seeds=6, steps=c9.STEPS, unreached=0, seed=0):
    """Synthetic instances: predictors drawn at random (js0 and kappa_star monotone in a latent
    heterogeneity h), the primary gap set by ``gap_of(h, columns, rng)``."""
    rng = np.random.default_rng(seed)
    h = rng.random(n)
    cols = {"js0_log": 0.05 + 0.75 * h, "kappa_star": 10 ** (4 - 3 * h), "max_kappa_b": 10 ** (1 + 3 * rng.random(n)),
            "kappa_adam0": 10 ** (2 + 3 * rng.random(n)), "rho_H": rng.random(n), "h11_ratio": rng.random(n),
            "js0_zhang": 0.83 - 0.01 * rng.random(n), "linf_ratio": rng.random(n)}
    gap = gap_of(h, cols, rng)
    T_fast = np.full(n, 500.0)
    T_slow = T_fast * 10 ** gap
    T_slow[:unreached] = np.inf
    t = pd.DataFrame({"spectrum": "logspaced", "arrangement": "contiguous", "swap": h, "seed": np.arange(n) % seeds,
                      "kappa": c9.KAPPA, "eps": c9.EPS, "steps": steps, "status": "ok",
                      "T_gd": T_slow, "T_adam_b1_0": T_fast, "T_heavy_ball": 300.0, "T_adam": 200.0,
                      "edge_gd": False, "edge_adam_b1_0": False, "edge_heavy_ball": False, "edge_adam": False,
                      "gap_precond": np.where(np.isfinite(T_slow), np.log10(T_slow / T_fast), np.nan),
                      "gap_momentum": math.log10(1.5), **cols})
    return t


def _js_driven(h, cols, rng):          # JS0 best; kappa* only loosely related
    return 1.5 * cols["js0_log"] + 0.02 * rng.standard_normal(len(h))


def _kappa_driven(h, cols, rng):       # kappa* decides; JS0 a noisy proxy
    k = np.log10(cols["kappa_star"]) + 0.0
    cols["js0_log"] = 0.05 + 0.75 * rng.random(len(h))
    return -0.5 * k + 0.01 * rng.standard_normal(len(h))


def test_reproduced_when_js0_predicts_best(fast_ci):
    def gap(h, cols, rng):
        cols["kappa_star"] = 10 ** (4 - 3 * np.clip(h + 0.6 * rng.standard_normal(len(h)), 0, 1))
        return _js_driven(h, cols, rng)
    t = _table(gap)
    v = c9.criterion(t)
    assert v.outcome == REPRODUCED, v
    ref = stats.spearmanr(t["js0_log"], t["gap_precond"]).statistic
    assert v.value == pytest.approx(ref) and v.ci[0] > 0.5
    assert v.n_reached == v.n_runs == 4 * 96 and "best predictor: js0_log" in v.factor


def test_not_reproduced_when_another_predictor_beats_js0(fast_ci):
    v = c9.criterion(_table(_kappa_driven))
    assert v.outcome == NOT_REPRODUCED, v
    assert "best predictor: kappa_star" in v.factor and abs(v.value) < 0.5


def test_undecided_when_two_predictors_tie(fast_ci):
    # JS0 and kappa* are both exact monotone functions of h: their |Spearman| intervals coincide
    v = c9.criterion(_table(lambda h, cols, rng: 2 * h))
    assert v.outcome == UNDECIDED and any("overlaps" in r for r in v.reasons), v


@pytest.mark.parametrize("kw,why", [({"unreached": 3}, "did not reach"), ({"steps": 5_000}, "reduced budget"),
                                     ({"seeds": 2}, "seed(s)"), ({"n": 40}, "instance(s)")])
def test_undecided_when_the_table_cannot_decide(kw, why, fast_ci):
    def gap(h, cols, rng):
        cols["kappa_star"] = 10 ** (4 - 3 * np.clip(h + 0.6 * rng.standard_normal(len(h)), 0, 1))
        return _js_driven(h, cols, rng)
    v = c9.criterion(_table(gap, **kw))
    assert v.outcome == UNDECIDED and any(why in r for r in v.reasons), v
    if "unreached" in kw:
        assert v.n_reached == v.n_runs - 3


def test_spearman_table_uses_the_package_interval():
    t = _table(_js_driven, n=64)[["js0_log", "rho_H", "gap_precond"]]
    st = c9.spearman_table(t).set_index("predictor")
    for name in ("js0_log", "rho_H"):
        rho, ci = base.spearman_ci(t[name].to_numpy(), t["gap_precond"].to_numpy(), seed=c9.BOOT_SEED)
        assert st.loc[name, "spearman"] == pytest.approx(stats.spearmanr(t[name], t["gap_precond"]).statistic)
        assert (st.loc[name, "lo"], st.loc[name, "hi"]) == pytest.approx(ci)
    assert st.loc["rho_H", "abs_hi"] == pytest.approx(max(abs(st.loc["rho_H", "lo"]), abs(st.loc["rho_H", "hi"])))


def test_failed_configs_and_empty_tables_are_undecided(fast_ci):
    t = _table(_js_driven)
    t.loc[0, "status"] = "error"
    assert c9.criterion(t).outcome == UNDECIDED
    assert c9.criterion(t.iloc[0:0]).outcome == UNDECIDED


def test_figure_has_named_axes(fast_ci):
    import matplotlib.figure
    fig = c9.figure(_table(_js_driven))
    assert isinstance(fig, matplotlib.figure.Figure)
    axes = [a for a in fig.axes if a.get_visible() and a.get_xlabel()]
    assert len(axes) >= 7 and all(a.get_xlabel() for a in axes)
    assert "T*_GD" in axes[0].get_ylabel()
