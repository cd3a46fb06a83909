"""C4 (heavy-tailed class imbalance): the criterion on synthetic tables made to give each
outcome, the measure function against plain torch.optim loops, the diagonal model against
its closed forms, and the figure."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import heterosim as hs
from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import c4_class_imbalance as c4

LN_C = math.log(2 ** c4.M - 1)


def _run_rows(opt, seed, lr, share_end, *, floor=0.2, rate=None, steps=c4.STEPS, m=c4.M, batch=c4.BATCH,
              rise=False):
    """Rows of one run whose full-batch loss falls linearly from ln C to ``floor`` ln C over
    the run (``rate``: steps to reach the floor) and whose rare share is linear in the loss,
    0.5 at ln C and ``share_end`` at the floor: the share at any level is then exact."""
    rate = rate or steps
    rows = []
    for t in c4.record_steps(steps):
        L = LN_C * (1 - (1 - floor) * min(t / rate, 1.0))
        if rise and 0 < t < rate / 4:
            L = LN_C * 1.5
        s = 0.5 + (share_end - 0.5) * (LN_C - L) / (LN_C * (1 - floor))
        lr_, lf = 2 * L * s, 2 * L * (1 - s)     # rare / frequent halves: mean = L, share = s
        for i in range(m):
            rows.append({"optimizer": opt, "seed": seed, "lr": lr, "step": t, "group": i, "m": m, "steps": steps,
                         "batch_size": batch, "loss_group": lr_ if i >= m // 2 else lf, "status": "ok",
                         "config_hash": f"{opt}-{seed}"})
    return rows


def _table(shares, seeds=(0, 1, 2), noise=0.01, unreached=(), steps=c4.STEPS, m=c4.M, edge=(), rise=()):
    """Every optimizer of ``shares`` (its final share), 3 lrs per run; the middle lr is the
    fastest (rate 500), the others slower (rate 800) and ``edge`` makes the smallest the fastest."""
    rows = []
    for o, s in shares.items():
        for k, seed in enumerate(seeds):
            se = s + noise * (k - 1)
            for j, lr in enumerate((1e-4, 1e-3, 1e-2)):
                fast = (j == 0) if o in edge else (j == 1)
                floor = 0.6 if o in unreached else 0.2
                rows += _run_rows(o, seed, lr, se, floor=floor, rate=500 if fast else 800, steps=steps, m=m,
                                  rise=(o in rise and j == 1))
    return pd.DataFrame(rows)


GOOD = {"sgd": 0.72, "heavy_ball": 0.70, "signsgd": 0.69, "signum": 0.55, "adam": 0.50}


def _share_at_level(share_end, floor=0.2):
    return 0.5 + (share_end - 0.5) * (1 - c4.LEVEL) / (1 - floor)


def test_reproduced_with_exact_statistic():
    v = c4.criterion(_table(GOOD))
    assert v.outcome == REPRODUCED, v
    # Delta_Signum = 0.15, Delta_Adam = 0.20 at the end of the run; at the level they scale
    # by (1 - LEVEL) / (1 - floor) (the share is linear in the loss)
    expect = _share_at_level(0.70) - _share_at_level(0.55)
    assert v.value == pytest.approx(expect, abs=1e-12)
    assert v.ci[0] > 0 and v.ci[0] <= v.value <= v.ci[1]
    assert (v.n_reached, v.n_runs) == (15, 15)
    tt = v.table
    # the tuned lr is the fastest (middle) one, reaching the level at (1 - LEVEL) / 0.8 x 500 steps
    assert set(tt["lr"]) == {1e-3}
    assert np.allclose(tt["T"], (1 - c4.LEVEL) / 0.8 * 500)
    assert "heavy ball - Signum" in v.factor and "SGD - SignSGD" in v.factor


def test_not_reproduced_when_adam_holds_as_much_rare_loss():
    v = c4.criterion(_table({**GOOD, "adam": 0.74}))
    assert v.outcome == NOT_REPRODUCED, v
    assert v.value == pytest.approx(_share_at_level(0.70) - _share_at_level(0.74), abs=1e-12)
    assert v.value < 0


@pytest.mark.parametrize("case, needle", [
    (dict(unreached=("adam",)), "did not reach"),
    (dict(steps=200), "reduced budget"),
    (dict(m=4), "reduced budget"),
    (dict(seeds=(0, 1)), "seed(s)"),
    (dict(edge=("signum",)), "grid's edge"),
])
def test_undecided(case, needle):
    shares = dict(GOOD)
    v = c4.criterion(_table(shares, **case))
    assert v.outcome == UNDECIDED, v
    assert any(needle in r for r in v.reasons), v.reasons


def test_unreached_signsgd_does_not_block_the_rule_but_is_counted():
    v = c4.criterion(_table(GOOD, unreached=("signsgd",)))
    assert v.outcome == REPRODUCED
    assert (v.n_reached, v.n_runs) == (12, 15)
    assert "SignSGD never reached" in v.details


def test_a_run_that_rises_above_its_start_is_not_admissible():
    # heavy ball's fastest lr rises above ln C first: the next lr (rate 800) is tuned instead
    tt = c4.tuned(_table(GOOD, rise=("heavy_ball",)))
    hb = tt[tt["optimizer"] == "heavy_ball"]
    assert set(hb["lr"]) != {1e-3} and np.allclose(hb["T"], (1 - c4.LEVEL) / 0.8 * 800)
    # without the stability filter the rising run is the fastest, and the verdict reports it
    free = c4.tuned(_table(GOOD, rise=("heavy_ball",)), max_rise=math.inf)
    assert set(free[free["optimizer"] == "heavy_ball"]["lr"]) == {1e-3}
    assert "without the stability filter" in c4.criterion(_table(GOOD, rise=("heavy_ball",))).details


def test_failed_configs_make_it_undecided():
    t = _table(GOOD)
    t.loc[t["config_hash"] == "adam-0", "status"] = "failed"
    v = c4.criterion(t)
    assert v.outcome == UNDECIDED and any("failed" in r for r in v.reasons)


def test_empty_table_is_undecided():
    v = c4.criterion(pd.DataFrame({"status": pd.Series([], dtype=str)}))
    assert v.outcome == UNDECIDED and v.n_runs == 0


def test_rare_share_and_groups():
    assert c4.rare_share(np.full(8, math.log(255))) == pytest.approx(0.5)
    g = c4.group_of_class(4)
    assert np.bincount(g).tolist() == [1, 2, 4, 8]
    # every group holds 2^m samples in kunstner_data, so the total loss is the mean of the group losses
    p = hs.problems.make("kunstner_softmax", m=4, ridge=0.0, seed=3)
    counts = p.class_counts.numpy()
    assert all(counts[g == i].sum() == 2 ** 4 for i in range(4))


def _reference_losses(config, torch_opt):
    """A plain loop: torch.optim on one head per lr, the same minibatch draws, group losses by
    torch.nn.functional.cross_entropy."""
    m, b, seed = config["m"], config["batch_size"], config["seed"]
    p = hs.problems.make("kunstner_softmax", m=m, ridge=0.0, batch_size=b, seed=seed)
    F, y = p.features, p.labels
    groups = torch.as_tensor(c4.group_of_class(m))[y]
    out = {}
    for lr in config["lrs"]:
        W = torch.zeros(p.C, p.p, dtype=torch.float64, requires_grad=True)
        opt = torch_opt([W], lr)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 17)
        rec = set(c4.record_steps(config["steps"]))
        for t in range(config["steps"] + 1):
            if t in rec:
                with torch.no_grad():
                    ce = torch.nn.functional.cross_entropy(F @ W.T, y, reduction="none")
                    out[(lr, t)] = [float(ce[groups == i].mean()) for i in range(m)]
            if t == config["steps"]:
                break
            idx = torch.randperm(p.n, generator=gen)[:b]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(F[idx] @ W.T, y[idx]).backward()
            opt.step()
    return out


@pytest.mark.parametrize("label, torch_opt", [
    ("adam", lambda ps, lr: torch.optim.Adam(ps, lr=lr, betas=(0.9, 0.999))),
    ("heavy_ball", lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9)),
    ("sgd", lambda ps, lr: torch.optim.SGD(ps, lr=lr)),
])
def test_measure_matches_torch_optim(label, torch_opt):
    config = {"m": 3, "batch_size": 4, "steps": 12, "seed": 5, "optimizer": label, "lrs": [0.3, 0.03]}
    rows = pd.DataFrame(c4.measure(config))
    ref = _reference_losses(config, torch_opt)
    for (lr, t), losses in ref.items():
        got = rows[(rows["lr"] == lr) & (rows["step"] == t)].sort_values("group")
        np.testing.assert_allclose(got["loss_group"], losses, rtol=1e-10, atol=1e-12)
        assert got["loss_total"].iloc[0] == pytest.approx(np.mean(losses), rel=1e-12)
    assert rows[rows["step"] == 0]["loss_group"].to_numpy() == pytest.approx(math.log(7))


def test_measure_signsgd_matches_the_sign_rule():
    config = {"m": 3, "batch_size": 4, "steps": 8, "seed": 2, "optimizer": "signsgd", "lrs": [1e-2]}
    rows = pd.DataFrame(c4.measure(config))
    p = hs.problems.make("kunstner_softmax", m=3, ridge=0.0, batch_size=4, seed=2)
    W = torch.zeros(1, p.d, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2 * 1_000_003 + 17)
    for _ in range(8):
        W = W - 1e-2 * torch.sign(p.minibatch_grad(W, torch.randperm(p.n, generator=gen)[:4]))
    got = rows[rows["step"] == 8]["loss_total"].iloc[0]
    assert got == pytest.approx(float(p.loss(W)[0]), rel=1e-12)


def test_diag_model_matches_closed_forms():
    """Kunstner's diagonal model (formerly part of the criterion, now a check of the code): GD's
    per-class loss pi_k/2 ||w_k(t)||^2 equals the closed form Kunstner-GD, SignGD's Kunstner-sign."""
    from heterosim import bounds
    from heterosim.claims.common import trajectory
    p = hs.problems.make("kunstner_diag", n_classes=8, h=3, alpha=1.0)
    pi = torch.stack([s[0] for s in p.block_spectra]).numpy()
    W0 = p.initial_point(0).reshape(8, 3).numpy()
    for name, lr in (("sgd", 0.5 / p.L2), ("signsgd", 0.01)):
        curves = trajectory(p, hs.optimizers.make(name), [lr], 40, range(41),
                            lambda t, X: (p.blocks.sq_norms(X)[0] * torch.as_tensor(pi) / 2).numpy())
        for t in (0, 1, 7, 40):
            w = bounds.kunstner_gd(pi=pi, eta=lr, t=t, w0=W0) if name == "sgd" else \
                bounds.kunstner_sign(eta=lr, t=t, w0=W0)
            np.testing.assert_allclose(curves[t], pi / 2 * (np.asarray(w) ** 2).sum(1), rtol=1e-10, atol=1e-15)


def test_figure_has_labelled_axes():
    import matplotlib
    matplotlib.use("Agg")
    fig = c4.figure(_table(GOOD, unreached=("signsgd",)))
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
    assert "nats" in fig.axes[0].get_xlabel()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_grids():
    from heterosim import sweep
    full = sweep.expand(c4.grid())
    assert len(full) == len(c4.OPTIMIZERS) * len(c4.SEEDS)
    assert all(c["m"] >= 8 and c["batch_size"] == c4.BATCH and c["steps"] == c4.STEPS for c in full)
    quick = sweep.expand(c4.grid(quick=True))
    assert all(c["m"] < c4.M for c in quick)
