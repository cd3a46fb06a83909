"""C6 (linear-head growth): the ECE and batch-presence formulas against references, the
measure function against a hand-written sign loop and the bound, both criteria on synthetic
tables made to give each outcome, and the figure."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import heterosim as hs
from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import c6_head_growth as c6


# ----------------------------------------------------------------------------- formulas
def test_ece_known_answers():
    # 10 samples, every confidence 0.8 (two classes, logit gap ln 4), 8 correct: calibrated
    logits = torch.tensor([[math.log(4.0), 0.0]] * 10, dtype=torch.float64)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert c6.ece(logits, labels) == pytest.approx(0.0, abs=1e-15)
    # all 10 correct: |1 - 0.8| = 0.2
    assert c6.ece(logits, torch.zeros(10, dtype=torch.int64)) == pytest.approx(0.2)
    # two bins: 4 samples at confidence 0.9 with 2 correct, 6 at 0.6 with 6 correct
    a, b = math.log(9.0), math.log(1.5)
    logits = torch.tensor([[a, 0.0]] * 4 + [[b, 0.0]] * 6, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1] + [0] * 6)
    assert c6.ece(logits, labels) == pytest.approx(0.4 * abs(0.5 - 0.9) + 0.6 * abs(1.0 - 0.6))


def test_ece_matches_a_numpy_histogram():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(500, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 7, (500,), generator=gen)
    p = torch.softmax(logits, 1).numpy()
    conf, pred = p.max(1), p.argmax(1)
    correct = (pred == labels.numpy()).astype(float)
    edges = np.linspace(0, 1, c6.ECE_BINS + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, c6.ECE_BINS - 1)
    ref = sum((idx == k).mean() * abs(correct[idx == k].mean() - conf[idx == k].mean())
              for k in range(c6.ECE_BINS) if (idx == k).any())
    assert c6.ece(logits, labels) == pytest.approx(ref, rel=1e-12)


def test_presence_is_hypergeometric():
    from scipy import stats
    counts, n = np.array([1, 5, 40, 0]), 100
    for b in (1, 7, 32):
        ref = 1 - stats.hypergeom(n, counts, b).pmf(0)
        np.testing.assert_allclose(c6.presence(counts, n, b), ref, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------- measure
SMALL = {"C": 5, "h": 4, "n": 64, "n_test": 32, "alpha": 1.0, "class_sep": 2.0, "feature_mean": 1.0,
         "batch_size": 8, "lr": 0.01, "steps": 6, "every": 1, "eval_every": 3, "seed": 4}


def _problem(config):
    full = hs.problems.make("softmax", n=config["n"] + config["n_test"], p=config["h"], C=config["C"],
                            alpha=config["alpha"], feature_mean=config["feature_mean"],
                            class_sep=config["class_sep"], ridge=0.0, seed=config["seed"])
    return full.features, full.labels


def test_measure_matches_a_hand_written_signsgd_loop():
    rows = pd.DataFrame(c6.measure({**SMALL, "optimizer": "signsgd", "beta": None}))
    F, y = _problem(SMALL)
    n, C, h, b, lr = SMALL["n"], SMALL["C"], SMALL["h"], SMALL["batch_size"], SMALL["lr"]
    Ftr, ytr, Fte, yte = F[:n], y[:n], F[n:], y[n:]
    W = torch.zeros(C, h, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(SMALL["seed"] * 1_000_003 + 17)
    for t in range(1, SMALL["steps"] + 1):
        idx = torch.randperm(n, generator=gen)[:b]
        W.grad = None
        torch.nn.functional.cross_entropy(Ftr[idx] @ W.T, ytr[idx]).backward()
        with torch.no_grad():
            W -= lr * torch.sign(W.grad)
        r = rows[rows["step"] == t].iloc[0]
        assert r["head_norm"] == pytest.approx(float(W.detach().norm()), rel=1e-12)
        assert r["head_bound"] == pytest.approx(lr * t * math.sqrt(C * h))
        assert r["fraction"] <= 1 + 1e-12                      # the bound holds
        if t % SMALL["eval_every"] == 0:
            logits = Fte @ W.detach().T
            assert r["test_nll"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, yte)), rel=1e-12)
            assert r["test_acc"] == pytest.approx(float((logits.argmax(1) == yte).double().mean()))
            assert r["test_ece"] == pytest.approx(c6.ece(logits, yte), rel=1e-12)
        else:
            assert math.isnan(r["test_nll"])
    # the first sign step moves every entry by exactly eta: the bound is attained
    assert rows[rows["step"] == 1]["fraction"].iloc[0] == pytest.approx(1.0, rel=1e-12)


def test_measure_adam_stays_below_the_sign_bound_and_predicts_no_drift_when_centred():
    rows = pd.DataFrame(c6.measure({**SMALL, "feature_mean": 0.0, "optimizer": "adam", "beta": None}))
    assert rows["predicted_drift"].isna().all()
    rows = pd.DataFrame(c6.measure({**SMALL, "optimizer": "signum", "beta": 0.9}))
    q = c6.presence(np.bincount(_problem(SMALL)[1][:SMALL["n"]].numpy(), minlength=SMALL["C"]), SMALL["n"],
                    SMALL["batch_size"])
    assert rows["predicted_drift"].iloc[0] == pytest.approx(math.sqrt(np.mean((1 - 2 * q) ** 2)))
    assert (rows["fraction"].dropna() <= 1 + 1e-12).all()


# ----------------------------------------------------------------------------- criterion
CS = (10, 100, 1000)
GROW = {"signsgd": (0.2, 0.6, 0.9), "signum(beta=0.9)": (0.1, 0.3, 0.5), "signum(beta=0.99)": (0.05, 0.1, 0.2),
        "adam": (0.05, 0.05, 0.1)}
FLAT = {"signsgd": (0.3, 0.3, 0.3), "signum(beta=0.9)": (0.35, 0.35, 0.35), "signum(beta=0.99)": (0.1, 0.1, 0.1),
        "adam": (0.05, 0.05, 0.05)}


def _final_rows(fr, mean, batch, seeds=(0, 1, 2), steps=c6.STEPS, noise=0.01, n=c6.N_TRAIN):
    rows = []
    for lab, vals in fr.items():
        opt, beta = (lab.split("(")[0], float(lab.split("=")[1][:-1])) if "(" in lab else (lab, None)
        for C, v in zip(CS, vals):
            for k, s in enumerate(seeds):
                f = v + noise * (k - 1)
                for step in (0, steps):
                    rows.append({"feature_mean": mean, "batch_size": batch, "C": C, "optimizer": opt, "beta": beta,
                                 "seed": s, "step": step, "steps": steps, "n": n, "h": c6.H, "lr": c6.LR,
                                 "fraction": f if step else math.nan, "head_norm": f, "predicted_drift": math.nan,
                                 "test_acc": 0.5 - 0.1 * f if step else math.nan,
                                 "test_nll": 1 + 2 * f if step else math.nan,
                                 "test_ece": 0.3 * f if step else math.nan, "train_loss": 1.0, "status": "ok",
                                 "config_hash": f"{mean}-{batch}-{C}-{lab}-{s}-{steps}"})
    return rows


def _c6_table(main=GROW, centred=FLAT, **kw):
    return pd.DataFrame(_final_rows(main, 1.0, 32, **kw) + _final_rows(centred, 0.0, 32, **kw)
                        + _final_rows(FLAT, 1.0, 512, **kw))


def test_reproduced_with_scope_and_harm():
    v = c6.criterion(_c6_table())
    assert v.outcome == REPRODUCED, v
    assert v.value == pytest.approx(0.9 - 0.2)
    assert v.ci[0] > 0
    assert "the rule holds in mean 1/batch 32, not in mean 0/batch 32, mean 1/batch 512" in v.details
    assert "(a) growth with C holds in mean 1/batch 32, not in mean 0/batch 32, mean 1/batch 512" in v.details
    # harm: SignSGD - Adam at C = 1000 in the claim's cell: ECE 0.3 x 0.8, NLL 2 x 0.8, acc -0.1 x 0.8
    assert "[mean 1, batch 32] acc -0.08" in v.details and "NLL +1.6" in v.details and "ECE +0.24" in v.details
    # what non-centring adds at batch 32: the centred cell's gap is 0.25 x (-0.1, 2, 0.3)
    assert "[batch 32] acc -0.055" in v.details and "NLL +1.1" in v.details and "ECE +0.165" in v.details


def test_signum_above_signsgd_at_small_C_does_not_matter():
    # rule (b) reads the largest C only: no drift to cancel at C = 10 (the pilot: Signum 0.23 > SignSGD 0.20)
    v = c6.criterion(_c6_table(main={**GROW, "signum(beta=0.9)": (0.25, 0.3, 0.5)}))
    assert v.outcome == REPRODUCED, v
    v = c6.criterion(_c6_table(main={**GROW, "signum(beta=0.9)": (0.1, 0.3, 0.76)}))
    assert v.outcome == NOT_REPRODUCED, v        # 0.76 / 0.9 = 0.84 > 0.8
    assert (v.n_reached, v.n_runs) == (36 * 3, 36 * 3)


def test_not_reproduced_when_signum_does_not_stay_below():
    v = c6.criterion(_c6_table(main={**GROW, "signum(beta=0.9)": (0.1, 0.3, 0.85)}))
    assert v.outcome == NOT_REPRODUCED, v
    v = c6.criterion(_c6_table(main=FLAT))
    assert v.outcome == NOT_REPRODUCED and v.value == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("kw, needle", [
    (dict(seeds=(0, 1)), "seed(s)"),
    (dict(steps=100), "reduced budget"),
    (dict(n=512), "reduced budget"),
])
def test_undecided(kw, needle):
    v = c6.criterion(_c6_table(**kw))
    assert v.outcome == UNDECIDED, v
    assert any(needle in r for r in v.reasons), v.reasons


def test_undecided_without_the_claims_cell_or_with_failures():
    t = _c6_table()
    v = c6.criterion(t[t["batch_size"] != 32])
    assert v.outcome == UNDECIDED and any("claim's cell" in r for r in v.reasons)
    t.loc[t["config_hash"].str.startswith("1.0-32-1000-adam"), "status"] = "failed"
    v = c6.criterion(t)
    assert v.outcome == UNDECIDED and any("failed" in r for r in v.reasons)


def _bridge_table(fr, seeds=(0, 1, 2), steps=1500, mean=1.0, chash="cfg"):
    rows = []
    for lab, vals in fr.items():
        if "0.99" in lab:
            continue
        opt = lab.split("(")[0]
        for C, v in zip(CS, vals):
            for k, s in enumerate(seeds):
                for step in (0, steps):
                    rows.append({"n_classes": C, "optimizer": opt, "seed": s, "step": step,
                                 "ratio": v + 0.01 * (k - 1) if step else math.nan, "val_loss": 2 + v,
                                 "val_acc": 0.4 - v / 10, "feature_mean": mean, "batch_size": 32, "ln": "pre",
                                 "layers": 2, "d_model": 32, "device": "cpu", "status": "ok", "config_hash": chash})
    return pd.DataFrame(rows)


def test_transformer_criterion_outcomes():
    v = c6.criterion_transformer(_bridge_table(GROW))
    assert v.outcome == REPRODUCED and v.value == pytest.approx(0.7), v
    assert "harm" in v.details
    v = c6.criterion_transformer(_bridge_table(FLAT))
    assert v.outcome == NOT_REPRODUCED, v
    v = c6.criterion_transformer(_bridge_table(GROW, seeds=(0,)))
    assert v.outcome == UNDECIDED and any("seed(s)" in r for r in v.reasons)
    v = c6.criterion_transformer(_bridge_table(GROW, steps=40))
    assert v.outcome == UNDECIDED and any("reduced budget" in r for r in v.reasons)
    # a centred run beside the full one: the full, non-centred one decides, the other is listed
    both = pd.concat([_bridge_table(GROW), _bridge_table(FLAT, mean=0.0, chash="centred")])
    v = c6.criterion_transformer(both)
    assert v.outcome == REPRODUCED and "other configs" in v.details
    assert c6.SECONDARY[0][0] == "bridge_head_growth" and c6.SECONDARY[0][1] is c6.criterion_transformer


def test_figure_has_labelled_axes():
    import matplotlib
    matplotlib.use("Agg")
    fig = c6.figure(_c6_table())
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_grids():
    from heterosim import sweep
    full = sweep.expand(c6.grid())
    assert len(full) == 3 * 4 * 2 * 3 * 4
    assert {c["seed"] for c in full} == {0, 1, 2}
    assert {(c["feature_mean"], c["batch_size"]) for c in full} >= {(0.0, 512), (1.0, 32)}
    quick = sweep.expand(c6.grid(quick=True))
    assert all(c["steps"] < c6.STEPS for c in quick)
