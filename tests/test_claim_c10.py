"""C10 (sign beats GD per step iff phi > L_inf/(d L_2)): the per-step decreases against their
closed forms and B5's guarantees, the measure against a plain numpy GD loop and the exact L_inf by
vertex enumeration, and the fixed criterion on synthetic tables made to give each outcome."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import heterosim as hs
from heterosim import precondition
from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import c10_sign_vs_gd as c10


def _closed_forms(p, X):
    H = p.hessian().numpy()
    E = X.numpy() - p.x_star.numpy()
    G = E @ H
    S = np.sign(G)
    l1 = np.abs(G).sum(1)
    gg, gHg, sHs = (G * G).sum(1), np.einsum("ij,jk,ik->i", G, H, G), np.einsum("ij,jk,ik->i", S, H, S)
    L2, Linf = p.L2, p.Linf
    return {"dec_gd": gg / L2 - gHg / (2 * L2 ** 2), "dec_sign": l1 ** 2 / Linf - l1 ** 2 * sHs / (2 * Linf ** 2),
            "dec_gd_ls": gg ** 2 / (2 * gHg), "dec_sign_ls": l1 ** 2 / (2 * sHs),
            "phi": l1 ** 2 / (p.d * gg), "B1": gg / (2 * L2), "B3": l1 ** 2 / (2 * Linf)}


def test_step_decreases_match_closed_forms_and_b5_guarantees():
    p = hs.problems.make("block_scale", spread=2.0, gamma=0.5, n_blocks=3, block_size=4, rotate=True, seed=1)
    X = p.initial_points([0, 1, 2, 3]) + 0.1 * torch.randn(4, p.d, generator=torch.Generator().manual_seed(0),
                                                          dtype=torch.float64)
    m = c10.step_decreases(p, X)
    ref = _closed_forms(p, X)
    for k in ("dec_gd", "dec_sign", "dec_gd_ls", "dec_sign_ls", "phi"):
        np.testing.assert_allclose(m[k], ref[k], rtol=1e-9)
    assert (m["dec_gd"] >= ref["B1"] * (1 - 1e-12)).all() and (m["dec_gd"] <= 2 * ref["B1"] * (1 + 1e-12)).all()
    assert (m["dec_sign"] >= ref["B3"] * (1 - 1e-12)).all() and (m["dec_sign"] <= 2 * ref["B3"] * (1 + 1e-12)).all()
    np.testing.assert_array_equal(m["predicted"], ref["phi"] > p.Linf / (p.d * p.L2))


def test_measure_matches_a_numpy_gd_loop_and_the_exact_linf():
    config = {"problem": "block_scale", "gamma": 0.5, "spread": 2.0, "rotate": True, "seed": 0, "eps": 1e-4,
              "steps": 20_000, "n_blocks": 2, "block_size": 5}
    rows = c10.measure(config)
    traj = {r["trajectory"]: r for r in rows if r["kind"] == "trajectory"}
    p = hs.problems.make("block_scale", spread=2.0, gamma=0.5, n_blocks=2, block_size=5, rotate=True, seed=0)
    H = p.hessian().numpy()
    assert traj["gd"]["Linf"] == pytest.approx(precondition.linf_exact(H), rel=1e-9)     # vertex enumeration
    assert traj["gd"]["threshold"] == pytest.approx(precondition.linf_exact(H) / (10 * p.L2), rel=1e-9)
    gd = traj["gd"]
    x, xs = p.initial_point(0).numpy(), p.x_star.numpy()
    f = lambda z: 0.5 * (z - xs) @ H @ (z - xs)                                         # noqa: E731
    f0, X = f(x), []
    while f(x) > 1e-4 * f0:                                                               # GD at the tuned lr
        X.append(x.copy())
        x = x - gd["lr"] * H @ (x - xs)
    assert gd["n_steps"] == len(X) == gd["T_star"]
    ref = _closed_forms(p, torch.as_tensor(np.array(X)))
    pred = ref["phi"] > gd["threshold"]
    assert gd["n_agree"] == int(((ref["dec_sign"] > ref["dec_gd"]) == pred).sum())
    assert gd["n_agree_ls"] == int(((ref["dec_sign_ls"] > ref["dec_gd_ls"]) == pred).sum())
    assert gd["n_pred_sign"] == int(pred.sum())
    steps = [r for r in rows if r["kind"] == "step" and r["trajectory"] == "gd"]
    assert steps and all(r["ratio_predicted"] == pytest.approx(ref["phi"][r["t"]] / gd["threshold"]) for r in steps)
    assert traj["signgd"]["n_steps"] == traj["signgd"]["T_star"] > 0


# ----------------------------------------------------------------------------- criterion
FAMS = [c10.family_label(p, k.get("gamma")) for p, k in c10.FAMILIES]


def _table(agree_of, seeds=4, steps=c10.STEPS, unreached=0):
    """Trajectory rows for every family, spread (4), basis (2), seed and trajectory; agreement per
    trajectory from ``agree_of(family, i)``, 100 steps each."""
    rows, i = [], 0
    for fam in FAMS:
        for spread in c10.SPREADS:
            for rot in (True, False):
                for seed in range(seeds):
                    for name in c10.TRAJECTORIES:
                        a = agree_of(fam, i)
                        rows.append({"family": fam, "spread": spread, "rotate": rot, "seed": seed, "eps": c10.EPS,
                                     "steps": steps, "status": "ok", "kind": "trajectory", "trajectory": name,
                                     "T_star": 100.0, "edge": False, "n_steps": 100, "n_agree": round(100 * a),
                                     "n_agree_ls": round(80 * a), "n_pred_sign": 40, "n_sign_wins": 35,
                                     "n_sign_wins_ls": 10, "n_ambiguous": 60})
                        i += 1
    t = pd.DataFrame(rows)
    if unreached:
        t.loc[:unreached - 1, ["T_star", "n_steps"]] = [math.inf, 0]
    return t


def test_reproduced_when_every_family_agrees():
    v = c10.criterion(_table(lambda fam, i: 0.9 + 0.05 * (i % 3 == 0)))
    assert v.outcome == REPRODUCED, v
    assert v.n_reached == v.n_runs == 5 * 4 * 2 * 4 * 2 and v.ci[0] >= 0.8
    t = _table(lambda fam, i: 0.9 + 0.05 * (i % 3 == 0))
    pooled = t.groupby("family").apply(lambda g: g["n_agree"].sum() / g["n_steps"].sum())
    assert v.value == pytest.approx(pooled.min())


def test_not_reproduced_when_a_family_disagrees():
    v = c10.criterion(_table(lambda fam, i: 0.4 if fam == "hessian_only" else 0.95))
    assert v.outcome == NOT_REPRODUCED and "hessian_only" in v.statistic and v.ci[1] < 0.8, v


def test_undecided_when_a_family_straddles_the_threshold():
    v = c10.criterion(_table(lambda fam, i: (0.5 if i % 2 else 1.0) if fam == "gradient_only" else 0.95))
    assert v.outcome == UNDECIDED and any("straddles" in r for r in v.reasons), v


@pytest.mark.parametrize("kw,why", [({"unreached": 2}, "did not reach"), ({"steps": 2_000}, "reduced budget"),
                                     ({"seeds": 2}, "seed(s)")])
def test_undecided_when_the_table_cannot_decide(kw, why):
    v = c10.criterion(_table(lambda fam, i: 0.95, **kw))
    assert v.outcome == UNDECIDED and any(why in r for r in v.reasons), v
    if "unreached" in kw:
        assert v.n_reached == v.n_runs - 2


def test_missing_family_failed_config_and_empty_table_are_undecided():
    t = _table(lambda fam, i: 0.95)
    assert c10.criterion(t[t["family"] != "gradient_only"]).outcome == UNDECIDED
    t.loc[0, "status"] = "error"
    assert c10.criterion(t).outcome == UNDECIDED
    assert c10.criterion(t.iloc[0:0]).outcome == UNDECIDED


def test_figure_has_named_axes():
    import matplotlib.figure
    t = _table(lambda fam, i: 0.9)
    steps = pd.DataFrame({"family": FAMS * 4, "kind": "step", "status": "ok",
                          "ratio_predicted": np.geomspace(0.1, 3, 20),
                          "ratio_measured": np.geomspace(0.1, 3, 20) * 1.3})
    fig = c10.figure(pd.concat([t, steps], ignore_index=True))
    assert isinstance(fig, matplotlib.figure.Figure)
    assert all(a.get_xlabel() for a in fig.axes) and "decrease ratio" in fig.axes[0].get_ylabel()
