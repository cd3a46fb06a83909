"""Every experiment script runs at its reduced size, and every figure script draws its table.

Each study's rows are checked against a reference: the construction's condition number, a
bound, a closed form, GD's blindness to the block arrangement, the L_inf of an axis-aligned
quadratic (its trace), the sign-method head-growth bound."""
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from heterosim import studies, sweep

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ["c1_block_scale", "c2_bound_tightness", "c3_zhang", "c4_class_imbalance", "c5_sign_lr",
           "c6_head_growth", "decomposition"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every experiment script's quick grid once (serially) into a temporary root."""
    root = tmp_path_factory.mktemp("results")
    for s in STUDIES:
        code = sweep.cli_main([str(ROOT / "experiments" / f"{s}.py"), "--quick", "-j", "1", "--root", str(root),
                               "--no-progress"])
        assert code == 0, f"experiments/{s}.py --quick failed"
    return root


def _table(results, study):
    return sweep.load(f"{study}_quick", results, ok_only=True)


def test_every_study_has_an_experiment_and_a_figure_script():
    assert sorted(STUDIES) == sorted(studies.STUDIES)
    for s in STUDIES:
        assert (ROOT / "experiments" / f"{s}.py").is_file() and (ROOT / "paper_figs" / f"{s}.py").is_file()


def test_c1_rows_carry_the_construction_and_gd_meets_its_bound(results):
    t = _table(results, "c1_block_scale")
    np.testing.assert_allclose(t["kappa"], 10.0 * 10.0 ** t["spread"], rtol=1e-12)   # kappa_block 10^(1 + spread)
    gd = t[t["optimizer"] == "sgd"]
    assert np.isfinite(t["T"]).all() and (gd["T"] <= gd["bound_gd_T"]).all()
    assert not t["edge"].any()


def test_decomposition_moves_only_the_curvature_it_says(results):
    t = _table(results, "decomposition")
    h, g = t[t["problem"] == "hessian_only"], t[t["problem"] == "gradient_only"]
    np.testing.assert_allclose(h["kappa"], 10.0 ** (1 + h["spread"]), rtol=1e-12)
    np.testing.assert_allclose(g["kappa"], 10.0, rtol=1e-12)


def test_c2_every_bound_holds(results):
    t = _table(results, "c2_bound_tightness")
    assert len(t) == 10 and t["holds"].all() and (t["T"] <= t["T_bound"]).all()
    assert ((t["tightness"] > 0) & (t["tightness"] <= 1)).all()


def test_c3_gd_is_blind_to_the_block_arrangement(results):
    t = _table(results, "c3_zhang")
    gd = t[t["optimizer"] == "sgd"].set_index("case")["T"]
    assert gd[3] == gd[4]                                    # same spectrum, same start: same GD run (Q1)
    js = t.drop_duplicates("case").set_index("case")["JS0"]
    assert js[3] > js[4]                                     # contiguous blocks are more heterogeneous


def test_c4_per_class_losses_match_the_closed_forms(results):
    t = _table(results, "c4_class_imbalance")
    d = t[t["part"] == "diag"]
    np.testing.assert_allclose(d["loss"], d["loss_closed_form"], rtol=1e-10, atol=1e-300)
    T = studies.class_iterations(t)
    gd = T[T["optimizer"] == "sgd"].sort_values("pi")
    assert (np.diff(gd["T_class"].to_numpy()) <= 0).all()   # rarer classes need more GD steps
    s = t[t["part"] == "softmax"]
    assert set(s["group"]) == {0, 1, 2} and (s["classes_in_group"] == 2 ** s["group"]).all()


def test_c5_bound_step_is_eps_over_linf(results):
    t = _table(results, "c5_sign_lr")
    axis = t[~t["rotate"]]
    trace = [float(studies.sign_lr_problem(d, False, 0).spectrum.sum()) for d in axis["d"]]
    np.testing.assert_allclose(axis["Linf"], trace, rtol=1e-12)          # axis-aligned: L_inf = tr H
    np.testing.assert_allclose(t["eta_bound"], 1e-2 * t["g0_l1"] / t["Linf"], rtol=1e-12)   # l1 criterion, rel 1e-2
    assert (t["Linf_kind"].isin(["exact", "sdp"])).all()


def test_c6_sign_heads_stay_within_eta_t_sqrt_ch(results):
    t = _table(results, "c6_head_growth")
    sign = t[t["optimizer"].isin(["signsgd", "signum"]) & (t["step"] > 0)]
    np.testing.assert_allclose(sign["head_bound"], 1e-3 * sign["step"] * np.sqrt(32 * sign["C"]), rtol=1e-12)
    assert (sign["fraction"] <= 1 + 1e-12).all() and (sign["fraction"] > 0).all()
    assert (t.loc[t["step"] == 0, "head_norm"] == 0).all()


@pytest.mark.parametrize("study", STUDIES)
def test_figure_script_draws_the_quick_table(results, study, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [f"{study}.py", "--quick", "--root", str(results), "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "paper_figs" / f"{study}.py"), run_name="__main__")
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert any(w in text for w in ("REPRODUCED", "UNDECIDED")) and "criterion:" in text
    png = out / f"{study}.png"
    assert png.stat().st_size < 150_000 and (out / f"{study}.pdf").is_file()


def test_missing_results_are_reported_not_raised(tmp_path, capsys):
    from heterosim import plots
    with pytest.raises(SystemExit) as e:   # argparse-style: usage, one line, exit 2
        plots.cli_main(["c1_block_scale", "--root", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no results for 'c1_block_scale'" in err and "Traceback" not in err
    assert math.isnan(studies.fit_slope([1.0], [2.0]))


def test_demo_writes_its_table_figures_and_verdicts(tmp_path, capsys):
    """A reduced demo (one momentum-matched pair, heavy ball vs Adam; one spread; 5 000 steps):
    the table shows the pair side by side and equals the stored one and the claim sweeps' rows;
    C1 and C3 say UNDECIDED (one seed, reduced budget) through their claim modules' criteria;
    every claim's figure is written."""
    import pandas as pd

    from heterosim.claims import get
    from heterosim.demo import format_table, run_demo
    table = run_demo(optimizers=("sgd_momentum", "adam"), spreads=(0.0,), steps=5_000, n_jobs=1, root=tmp_path,
                     instances=(8,))
    out = capsys.readouterr().out
    problems = ["zhang_case1", "zhang_case2", "zhang_case3", "zhang_case4", "block_scale r=0"]
    assert list(table["problem"]) == [p for p in problems for _ in range(2)]
    assert list(table["optimizer"][:2]) == ["heavy ball", "Adam"]
    assert set(table["matched_pair"]) == {"heavy ball vs Adam"}
    assert np.isfinite(table["T"]).all()
    stored = pd.read_csv(tmp_path / "demo" / "table.csv")
    np.testing.assert_array_equal(stored["T"].to_numpy(), table["T"].to_numpy())
    rows = sweep.load("demo/c3_zhang", tmp_path).set_index(["case", "arm"])["T"]
    assert table.loc[0, "T"] == rows[(1, "sgd_momentum")] and table.loc[1, "T"] == rows[(1, "adam")]
    assert "C1 block-scale spread (momentum-matched): UNDECIDED" in out
    assert "C3 Zhang cases (momentum-matched): UNDECIDED" in out and "reduced budget (steps 5000" in out
    assert "\nC2 " in out and "heavy ball vs Adam" in format_table(table, 5_000)
    for study in ("c1_block_scale", "c3_zhang", get("C2").study):
        assert (tmp_path / "demo" / "figures" / f"{study}.png").stat().st_size < 150_000
