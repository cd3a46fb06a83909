"""C7's criterion on synthetic tables made to give each outcome, its statistics against
closed forms (least squares with dummy variables), the measured quantities against hand
computations (autograd on the model, the spread formula), and the figure."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import c7_ln_spread as c7

GRID = c7.GRIDS["cpu"]


def synthetic(depth_exp=None, width_exp=None, delta=0.3, depths=None, widths=None, seeds=None, noise=0.02,
              nan_rows=0, status="ok", seed=0, time="2025-01-01T00:00:00"):
    """A bridge_init_spread table: last_ffn_grad = c d^w sqrt(ln d)-like power law times L^a(ln),
    spread = 1 + delta for Post-LN, 1 for Pre-LN, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    depth_exp = depth_exp or dict(c7.DEPTH_PREDICTION)
    width_exp = width_exp if width_exp is not None else c7.width_prediction(GRID["widths"])
    depths, widths = depths or GRID["depths"], widths or GRID["widths"]
    seeds = seeds if seeds is not None else GRID["seeds"]
    rows = []
    for init in GRID["inits"]:
        for L in depths:
            for d in widths:
                for s in seeds:
                    base = 1.0 + 0.1 * rng.standard_normal()
                    for ln in ("pre", "post"):
                        g = 0.01 * d ** width_exp * L ** depth_exp[ln] * math.exp(noise * rng.standard_normal())
                        rows.append(dict(ln=ln, layers=L, d_model=d, seed=s, init=init, last_ffn_grad=g,
                                         std_log10_rms=base + (delta if ln == "post" else 0.0)
                                         + noise * rng.standard_normal()))
    t = pd.DataFrame(rows)
    t.loc[t.index[:nan_rows], "last_ffn_grad"] = np.nan
    opts = dict(device="cpu", seeds=json.dumps(seeds), depths=json.dumps(depths), widths=json.dumps(widths),
                inits=json.dumps(GRID["inits"]), task=GRID["task"], batch_size=GRID["batch_size"])
    for k, v in opts.items():
        t[k] = v
    t["config_hash"] = f"h{len(depths)}{len(widths)}{len(seeds)}{status}"
    t["status"], t["time"] = status, time
    return t


def test_reproduced_on_xiong_trends():
    v = c7.criterion(synthetic())
    assert v.outcome == REPRODUCED, str(v)
    assert v.value == pytest.approx(0.3, abs=0.02) and v.ci[0] > 0.25
    assert (v.n_reached, v.n_runs) == (240, 240)
    t = v.table.set_index(["part", "init", "ln"])
    assert t.loc[("depth exponent", "xavier", "pre"), "value"] == pytest.approx(-0.5, abs=0.02)
    assert t.loc[("width exponent", "xavier", "post"), "value"] == pytest.approx(c7.width_prediction(GRID["widths"]),
                                                                                 abs=0.02)


@pytest.mark.parametrize("kw, failing", [
    (dict(delta=-0.3), "spread fails"),                                        # Pre-LN more spread
    (dict(depth_exp={"pre": -0.5, "post": -0.5}), "depth trend fails"),        # Post-LN shrinks with depth
    (dict(depth_exp={"pre": 0.0, "post": 0.0}), "depth trend fails"),          # no Pre-LN trend
    (dict(width_exp=0.5), "width trend fails"),                                # sqrt(d), not d sqrt(ln d)
    (dict(noise=0.6), "fails"),                                                # intervals too wide to show a trend
])
def test_not_reproduced(kw, failing):
    v = c7.criterion(synthetic(**kw))
    assert v.outcome == NOT_REPRODUCED, str(v)
    assert failing in v.factor


@pytest.mark.parametrize("kw, why", [
    (dict(depths=[1, 2, 4]), "depths 8, 16 not run"),                 # reduced budget (the --quick grid)
    (dict(widths=[16, 32]), "widths 64, 128, 256 not run"),
    (dict(seeds=[0, 1]), "2 seed(s); the criterion needs >= 3"),
    (dict(nan_rows=3), "3 run(s) the statistic needs"),              # a gradient that is not finite
])
def test_undecided(kw, why):
    v = c7.criterion(synthetic(**kw))
    assert v.outcome == UNDECIDED and any(why in r for r in v.reasons), v.reasons


def test_undecided_when_the_grid_config_failed_or_nothing_is_stored():
    failed = synthetic(status="failed")
    failed["error"] = "RuntimeError: boom"
    v = c7.criterion(failed)
    assert v.outcome == UNDECIDED and any("failed" in r or "no finished" in r for r in v.reasons)
    # the reduced run stored beside a failed full one: still UNDECIDED, and the failure is named
    v = c7.criterion(pd.concat([synthetic(depths=[1, 2, 4]), failed], ignore_index=True))
    assert v.outcome == UNDECIDED and any("1 config(s) failed" in r for r in v.reasons)
    assert c7.criterion(pd.DataFrame()).outcome == UNDECIDED


def test_the_full_config_is_read_and_others_are_named():
    """A reduced run stored after the full one does not change the verdict; the note says so."""
    both = pd.concat([synthetic(), synthetic(depths=[1, 2], delta=-1.0, time="2030-01-01")], ignore_index=True)
    v = c7.criterion(both)
    assert v.outcome == REPRODUCED and "1 other stored config(s) not read" in v.details


def test_quick_grid_is_reduced():
    q = c7.grid(quick=True)
    assert set(q["depths"]) < set(GRID["depths"]) and "--depths 1 2 4 8 16" in c7.command()


def test_fe_slope_equals_least_squares_with_dummies():
    rng = np.random.default_rng(3)
    g = np.repeat([0, 1, 2], 7)
    x = rng.normal(size=21)
    y = 0.7 * x + np.array([1.0, -2.0, 5.0])[g] + 0.1 * rng.normal(size=21)
    X = np.column_stack([x, g == 0, g == 1, g == 2]).astype(float)
    ref = np.linalg.lstsq(X, y, rcond=None)[0][0]
    assert c7.fe_slope(x, y, g) == pytest.approx(ref, rel=1e-12)
    assert math.isnan(c7.fe_slope(np.ones(4), np.arange(4.0), np.arange(4)))


def test_width_prediction_is_the_slope_of_d_sqrt_ln_d():
    d = np.array(GRID["widths"], float)
    ref = np.polyfit(np.log(d), np.log(d * np.sqrt(np.log(d))), 1)[0]
    assert c7.width_prediction(GRID["widths"]) == pytest.approx(ref, rel=1e-12)
    assert 1.09 < ref < 1.13


def test_measured_rows_equal_autograd_and_the_spread_formula():
    """init_spread's last_ffn_grad is ||dL/dW^{2,L}||_F by autograd on the same batch, and its
    spread is std_b log10(||g_b|| / sqrt(d_b)) over the parameters (the key bias left out)."""
    from heterosim.bridge.data import digits_task
    from heterosim.bridge.models import TinyTransformer
    from heterosim.bridge.studies import init_spread

    task = digits_task(patch=4)
    df = init_spread(depths=[2], widths=[16], seeds=[1], task=task, init="xavier", batch_size=16, progress=False)
    x, m, y = task.batch(torch.arange(16))
    for ln in ("pre", "post"):
        model = TinyTransformer(ln=ln, layers=2, d_model=16, heads=1, init="xavier", seed=1, **task.model_kwargs())
        loss = F.cross_entropy(model(x, m), y)
        names = [n for n, _ in model.named_parameters()]
        grads = dict(zip(names, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
        row = df[df["ln"] == ln].iloc[0]
        ref = float(grads["blocks.1.mlp.fc2.weight"].norm())
        assert row["last_ffn_grad"] == pytest.approx(ref, rel=1e-5)
        rms = [float(g.norm()) / math.sqrt(g.numel()) for n, g in grads.items()
               if g is not None and not n.endswith("attn.k.bias")]
        assert row["std_log10_rms"] == pytest.approx(float(np.std(np.log10(rms))), rel=1e-5)


def test_figures_have_named_axes():
    fig = c7.figure(synthetic())
    axes = fig.axes
    assert len(axes) == 3 and all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    assert "depth" in axes[1].get_xlabel() and "width" in axes[2].get_xlabel()
    steps = pd.DataFrame([dict(step=t, seed=s, ln=ln, std_log10_rms=1.0 + (ln == "post") / (1 + t), loss=1 / (1 + t),
                               model=f"tiny-{ln}-L2-d16", task="digits_p4", optimizer="adam")
                          for t in range(0, 50) for s in (0, 1, 2) for ln in ("pre", "post")])
    fig = c7.finetune_figure(steps)
    assert all(ax.get_xlabel() == "fine-tuning step" and ax.get_ylabel() for ax in fig.axes)
    text = c7.finetune_summary(steps)          # 49 steps: the first and last 4; Post-Pre = 1 / (1 + t)
    first, last = np.mean([1 / (1 + t) for t in range(1, 5)]), np.mean([1 / (1 + t) for t in range(46, 50)])
    assert f"first 4 steps: Post-Pre spread {first:+.3g}" in text
    assert f"last 4 steps: Post-Pre spread {last:+.3g}" in text
    assert "n=3" in text
