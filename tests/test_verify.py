"""heterosim verify: the default suite passes, the table and JSON have their documented shape,
and a bound made to fail (monkeypatched to claim more than is true) gives a failing row and
exit code 1."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import heterosim.bounds as hb
from heterosim import verify as hv
from heterosim.cli import main as heterosim_main
from heterosim.problems.quadratic import BlockQuadratic

COLUMNS = ["bound", "problem", "optimizer", "step", "lr", "metric", "quantity", "measured", "predicted",
           "tightness", "sense", "tol", "pass", "n", "detail"]


@pytest.fixture(scope="module")
def quick_table():
    return hv.verify(quick=True)


def test_default_suite_passes(quick_table):
    df = quick_table
    assert list(df.columns) == COLUMNS
    assert bool(df["pass"].all()), df.loc[~df["pass"], ["bound", "problem", "detail"]].to_string()
    # every bound of docs/theory.md has rows (Q1-blind needs the full suite's zhang3/zhang4 pair)
    expected = set(hv.BOUND_NAMES) - {"Q1-blind"}
    assert expected <= set(df["bound"]), expected - set(df["bound"])
    # one row per (bound, problem, optimizer)
    assert not df.duplicated(["bound", "problem", "optimizer"]).any()
    # tightness is measured / predicted, and upper bounds hold with it <= 1
    finite = df["tightness"].notna()
    assert ((df.loc[finite, "measured"] / df.loc[finite, "predicted"] - df.loc[finite, "tightness"]).abs()
            <= 1e-12 * df.loc[finite, "tightness"].abs()).all()
    upper = df[(df["sense"] == "<=") & finite]
    assert (upper["tightness"] <= 1 + 1e-9).all()
    assert set(df["sense"]) <= {"<=", ">=", "=="}
    # stochastic checks use >= 32 seeds
    assert (df.loc[df["bound"].isin(["S1", "S2"]), "n"] >= 32).all()
    assert df.attrs["seconds"] < 120


def test_cli_json_shape_and_exit_code(capsys):
    code = hv.cli_main(["--quick", "--json", "--only", "B4,Kunstner"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and isinstance(rows, list) and rows
    assert {r["bound"] for r in rows} == {"B4", "B4-step", "Kunstner-GD", "Kunstner-sign"}
    for r in rows:
        assert set(r) == set(COLUMNS) and isinstance(r["pass"], bool) and r["pass"]
        assert r["measured"] is None or isinstance(r["measured"], float)


def test_cli_table_and_delegation(capsys):
    code = heterosim_main(["verify", "--quick", "--only", "Kunstner"])
    out = capsys.readouterr().out
    assert code == 0 and "tightness" in out and "Kunstner-GD" in out and "0 violated" in out


def test_cli_help_and_bad_input(capsys):
    with pytest.raises(SystemExit) as e:
        hv.cli_main(["--help"])
    assert e.value.code == 0 and "--json" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        hv.cli_main(["--only", "B9"])
    assert e.value.code == 2 and "unknown bound" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown suite"):
        hv.verify(suite="huge")


def _wrapped(fn, change):
    def wrong(**kw):
        return change(fn, kw)
    return wrong


def test_iteration_bound_made_to_fail(monkeypatch, capsys):
    """B1 claiming 10^4 times less initial suboptimality: eps is chosen for it and the measured
    T(eps) overshoots: a failing row, exit code 1, and pass: false in JSON."""
    real = hb.gd_nonconvex
    monkeypatch.setattr(hb, "gd_nonconvex", _wrapped(real, lambda f, kw: f(**{**kw, "delta": kw["delta"] * 1e-4})))
    code = hv.cli_main(["--quick", "--json", "--only", "B1"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1
    b1 = [r for r in rows if r["bound"] == "B1"]
    assert b1 and not any(r["pass"] for r in b1)
    assert all(r["measured"] == "inf" or r["measured"] > r["predicted"] for r in b1)
    # B1' comes from the same GD runs and is untouched
    assert all(r["pass"] for r in rows if r["bound"] == "B1'")


def test_per_step_certificate_made_to_fail(monkeypatch):
    real = hb.gd_step_decrease
    monkeypatch.setattr(hb, "gd_step_decrease", _wrapped(real, lambda f, kw: 3.0 * f(**kw)))
    df = hv.verify(quick=True, only=["B1'"])
    assert len(df) > 0 and not df["pass"].any() and (df["measured"] < 1).all()


def test_rate_made_to_fail(monkeypatch):
    """Q5 with mu overstated 10%: the predicted rate is no longer the measured contraction."""
    real = hb.heavy_ball_quadratic_rate
    monkeypatch.setattr(hb, "heavy_ball_quadratic_rate",
                        _wrapped(real, lambda f, kw: f(**{**kw, "mu": kw["mu"] * 1.1})))
    suite = [("q", BlockQuadratic.from_spectra([[1.0, 5.0], [30.0, 100.0]], rotate=True, seed=0))]
    df = hv.verify(suite=suite, quick=True, only=["Q5"])
    assert len(df) == 1 and not bool(df["pass"].iloc[0])


def test_stochastic_bound_made_to_fail(monkeypatch):
    """S2 claiming a tenth of Bernstein et al.'s guarantee is refuted beyond the 3-SE margin."""
    real = hb.signsgd_bernstein
    monkeypatch.setattr(hb, "signsgd_bernstein",
                        _wrapped(real, lambda f, kw: dataclasses.replace(f(**kw), eps=f(**kw).eps / 10)))
    df = hv.verify(quick=True, only=["S2"])
    assert len(df) == 1 and not bool(df["pass"].iloc[0])


def test_custom_suite_and_json_safety():
    """A user's own problems get the checks of their kind; nan/inf become null/"inf" in JSON."""
    p = BlockQuadratic.from_spectra([[1.0, 4.0], [2.0]], rotate=False, seed=0)
    df = hv.verify(suite=[p], quick=True, only=["Q1", "B5-ratio"])
    assert set(df["bound"]) == {"Q1 1/L", "Q1 2/(L+mu)", "B5-ratio"} and df["pass"].all()
    rows = hv.rows_as_json(df)
    json.dumps(rows, allow_nan=False)
    assert hv._json_safe(math.inf) == "inf" and hv._json_safe(float("nan")) is None


def test_centred_and_anchored_views():
    """centred: the same H and initial errors with x* = 0; Anchored: the engine's dist becomes
    the distance to the anchor."""
    p = BlockQuadratic.from_spectra([[1.0, 3.0], [5.0]], rotate=True, seed=1)
    c = hv.centred(p)
    assert float(c.x_star.abs().max()) == 0.0 and float(p.x_star.abs().max()) > 0
    torch.testing.assert_close(c.initial_point(3) - c.x_star, p.initial_point(3) - p.x_star)
    torch.testing.assert_close(c.loss(c.initial_point(3).unsqueeze(0)), p.loss(p.initial_point(3).unsqueeze(0)))
    a = hv.Anchored(p, torch.ones(3))
    assert a.d == 3 and a.L2 == p.L2 and torch.equal(a.x_star, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="anchor"):
        hv.Anchored(p, torch.ones(4))
    from heterosim.problems.softmax import synthetic
    with pytest.raises(ValueError, match="block quadratics"):
        hv.centred(synthetic(n=8, p=2, C=2))


def test_eps_for_budget_inverts_the_bound():
    make = lambda e: hb.gd_nonconvex(L2=3.0, delta=2.0, eps=e)
    eps = hv.eps_for_budget(make, 500)
    assert make(eps).iterations <= 500 and make(eps).iterations == pytest.approx(500, rel=1e-10)
    assert eps == pytest.approx(math.sqrt(2 * 3.0 * 2.0 / 500), rel=1e-10)
    with pytest.raises(ValueError, match="T must be"):
        hv.eps_for_budget(make, 0)
