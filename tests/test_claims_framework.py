"""The claims framework: verdict wording and rules, the statistics against scipy's own,
the registry, and the `heterosim claims` command on stored tables."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from heterosim import claims
from heterosim.claims import base
from heterosim.claims.cli import claims_main


def test_spearman_matches_scipy_and_its_interval_covers_it():
    rng = np.random.default_rng(3)
    x = rng.normal(size=60)
    y = x + rng.normal(size=60)
    y[:5] = y[5:10]                                   # ties
    rho, ci = base.spearman_ci(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert ci[0] < rho < ci[1]
    # the interval shrinks as the sample grows (same correlation, 16x the data)
    X = rng.normal(size=960)
    _, wide = base.spearman_ci(X[:60], X[:60] + rng.normal(size=60))
    _, narrow = base.spearman_ci(X, X + rng.normal(size=960))
    assert narrow[1] - narrow[0] < 0.5 * (wide[1] - wide[0])
    assert base.spearman_ci([1, 2, 3], [3, 2, 1]) == (-1.0, None)   # too few pairs for an interval
    assert math.isnan(base.spearman_ci([1, 1, 1, 1], [1, 2, 3, 4])[0])


def test_bootstrap_ci_of_a_median_is_seeded_and_brackets_it():
    x = np.arange(1.0, 41.0)
    a = base.bootstrap_ci(x, np.median, seed=0)
    assert a == base.bootstrap_ci(x, np.median, seed=0)
    assert a[0] < 20.5 < a[1] and a[0] >= 1 and a[1] <= 40
    assert base.bootstrap_ci([1.0], np.median) is None


def test_verdict_rules_and_wording():
    with pytest.raises(ValueError, match="must say why"):
        base.Verdict("C1", "t", base.UNDECIDED, "c", "s", 1.0, None, 0, 0)
    with pytest.raises(ValueError, match="outcome must be one of"):
        base.Verdict("C1", "t", "PASSED", "c", "s", 1.0, None, 0, 0)
    why = base.undecided_reasons(n_runs=8, n_unreached=2, n_seeds=1, min_seeds=3, budget=500, full_budget=40000)
    assert why == ["2 run(s) the statistic needs did not reach the target or diverged",
                   "1 seed(s); the criterion needs >= 3", "reduced budget (steps 500 < the full run's 40000)"]
    assert base.decide(True, why) == base.UNDECIDED
    assert base.decide(True, []) == base.REPRODUCED and base.decide(False, []) == base.NOT_REPRODUCED
    v = base.Verdict("C9", "mechanism", base.UNDECIDED, "rule", "rho", 0.71, (0.6, 0.78), 5, 8, reasons=tuple(why))
    text = str(v)
    assert text.splitlines()[0] == "C9 mechanism: UNDECIDED"
    assert "rho = 0.71 [0.6, 0.78] (95% CI); n_reached 5/8" in text and "reduced budget" in text
    d = v.as_dict()
    assert d["ci"] == [0.6, 0.78] and d["n_reached"] == 5 and "table" not in d and v.reproduced is None


def test_registry_names_every_claim_and_rejects_unknown_ones():
    assert claims.labels() == [f"C{i}" for i in range(1, 11)]
    with pytest.raises(ValueError, match="unknown claim 'C11'"):
        claims.get("C11")


def test_claims_command_reports_missing_tables_as_undecided(tmp_path, capsys):
    assert claims_main(["--root", str(tmp_path), "--only", "C5", "--json"]) == 0
    [v] = json.loads(capsys.readouterr().out)
    assert v["claim"] == "C5" and v["outcome"] == "UNDECIDED"
    assert "no stored results for 'c5_sign_lr'" in v["reasons"][0]
    assert "heterosim sweep experiments/c5_sign_lr.py" in v["reasons"][0]
    with pytest.raises(SystemExit) as e:
        claims_main(["--root", str(tmp_path / "missing")])
    assert e.value.code == 2


def test_vectorised_bootstrap_gives_the_same_interval():
    x = np.random.default_rng(0).lognormal(size=30)
    assert base.bootstrap_ci(x, np.median, vectorized=True) == base.bootstrap_ci(x, np.median)


def test_stored_rows_from_other_code_are_flagged_stale():
    """A verdict read from rows whose code key is not this code's says so and how to recompute;
    rows from this very code carry no note."""
    from pathlib import Path

    from heterosim import codekey
    c5 = claims.get("C5")
    script = Path(__file__).resolve().parents[1] / "experiments" / c5.experiment
    now = codekey.code_parts(c5.measure, [script])
    fresh = pd.DataFrame([dict(now.columns(), heterosim_version=now.heterosim_version)] * 3)
    assert claims.staleness(c5, fresh) == ""
    old = fresh.assign(code_key="0" * 16, source_hash="f" * 16)
    note = claims.staleness(c5, old)
    assert note.startswith("STALE: 3 of 3 stored rows were computed by other code (heterosim source changed)")
    assert "`heterosim sweep experiments/c5_sign_lr.py` recomputes them" in note
