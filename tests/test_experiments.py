"""Every claim's experiment script runs at its reduced size through the sweep command, its
criterion calls the reduced run UNDECIDED (never a pass or a failure), and its figure script
draws the stored table; the demo writes its table, figures and verdicts.

References: the verdict rules of docs/theory.md (a budget below the full run's cannot decide
a claim), and the quick tables' own construction constants (kappa of the block-scale family,
GD's blindness to the block arrangement on the Zhang cases)."""
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from heterosim import claims, sweep
from heterosim.claims.base import UNDECIDED, Verdict

ROOT = Path(__file__).resolve().parents[1]
#: Every claim (and extra study) that a sweep script measures; C7 and C8 are the bridge's.
SWEPT = [lab for lab in [*claims.labels(), *claims.EXTRA] if claims.get(lab).experiment]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run every sweep script's quick grid once (serially) into a temporary root."""
    root = tmp_path_factory.mktemp("results")
    for lab in SWEPT:
        script = ROOT / "experiments" / claims.get(lab).experiment
        code = sweep.cli_main([str(script), "--quick", "-j", "1", "--root", str(root), "--no-progress"])
        assert code == 0, f"{script.name} --quick failed"
    return root


def test_every_claim_has_a_measure_or_a_bridge_command_and_a_figure_script():
    assert set(SWEPT) >= {"C1", "C2", "C3", "C4", "C5", "C6", "C9", "C10", "decomposition"}
    for lab in [*claims.labels(), *claims.EXTRA]:
        c = claims.get(lab)
        assert (c.experiment and c.measure is not None and c.grid is not None) or c.command, lab
        if c.experiment:
            assert (ROOT / "experiments" / c.experiment).is_file()
            assert (ROOT / "paper_figs" / c.experiment).is_file()


@pytest.mark.parametrize("label", SWEPT)
def test_a_reduced_run_is_undecided_with_its_counts(results, label):
    c = claims.get(label)
    v = claims.verdict(label, results, quick=True)
    assert isinstance(v, Verdict) and v.claim == c.label
    assert v.outcome == UNDECIDED and v.reasons, str(v)
    table = sweep.load(f"{c.study}_quick", results)
    assert 0 <= v.n_reached <= v.n_runs and v.n_runs > 0
    assert (table["status"] == "ok").all()


def test_c1_quick_rows_carry_the_construction(results):
    t = sweep.load("c1_block_scale_quick", results, ok_only=True)
    np.testing.assert_allclose(t["kappa"], 10.0 * 10.0 ** t["spread"], rtol=1e-12)   # kappa_block 10^(1 + spread)


def test_c3_gd_is_blind_to_the_block_arrangement(results):
    t = sweep.load("c3_zhang_quick", results, ok_only=True)
    arm = "arm" if "arm" in t.columns else "optimizer"
    gd = t[(t[arm] == "sgd") & (t["basis"] == "block") if "basis" in t.columns else (t[arm] == "sgd")]
    gd = gd.groupby(["case", "seed"])["T"].first().unstack("case")
    np.testing.assert_array_equal(gd[3].to_numpy(), gd[4].to_numpy())   # same spectrum and start: same run (Q1)


@pytest.mark.parametrize("label", SWEPT)
def test_figure_script_draws_the_quick_table(results, label, tmp_path, monkeypatch, capsys):
    c = claims.get(label)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", [c.experiment, "--quick", "--root", str(results), "--out", str(out)])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "paper_figs" / c.experiment), run_name="__main__")
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "UNDECIDED" in text and "criterion:" in text
    png = out / f"{c.study}.png"
    assert png.stat().st_size < 400_000 and (out / f"{c.study}.pdf").is_file()


def test_missing_results_are_reported_not_raised(tmp_path, capsys):
    from heterosim.claims.cli import plot_main
    with pytest.raises(SystemExit) as e:   # argparse-style: usage, one line, exit 2
        plot_main(["C1", "--root", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no results for 'c1_block_scale'" in err and "Traceback" not in err


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


def test_a_claim_script_takes_its_study_grid_measure_and_criterion_from_the_claim(tmp_path):
    c5 = claims.get("C5")
    mod = sweep.load_experiment(ROOT / "experiments" / "c5_sign_lr.py")
    assert mod.STUDY == c5.study and mod.measure is c5.measure and mod.grid is c5.grid
    quick = sweep.expand(mod.grid(quick=True))
    assert quick == sweep.expand(c5.grid(quick=True)) and len(quick) > 0
    bridge = tmp_path / "c8.py"
    bridge.write_text('CLAIM = "C8"\n')
    with pytest.raises(ValueError, match="measured by `python experiments/bridge_c8_gap.py`, not by a sweep"):
        sweep.load_experiment(bridge)
