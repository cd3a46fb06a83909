"""heterosim verify: the default suite passes, the table and JSON have their documented shape (the
PEP worst case and the worst start beside the bounds), a bound made to fail (monkeypatched to claim
more than is true) gives a failing row and exit code 1, and a capped, unreached run is INCONCLUSIVE,
never a pass."""
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
           "tightness", "sense", "tol", "status", "pass", "n", "worst_start", "pep_class", "pep_T", "pep_worst",
           "bound_over_pep", "pep_iterations", "paid_over_charged", "detail"]


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
    assert (df["status"] == "pass").all() and df.attrs["seconds"] < 180


def test_pep_worst_case_beside_every_bound_in_a_pepit_class(quick_table):
    """B1, B4 (L-smooth), Q1, Q2 (smooth strongly convex), Q5 (quadratics) and the per-step B1', B4-step
    carry the exact worst case and bound/worst; B1 at 1/L matches (3T - 1)/(2T) within 1%."""
    df = quick_table
    in_class = df[df["bound"].isin(["B1", "B1'", "B4", "B4-step", "Q1 1/L", "Q1 2/(L+mu)", "Q2", "Q5"])]
    assert in_class["bound_over_pep"].notna().all() and (in_class["pep_class"] != "").all()
    b1 = df[df["bound"] == "B1"]
    T = b1["pep_T"].to_numpy()
    assert ((b1["bound_over_pep"] / ((3 * T - 1) / (2 * T)) - 1).abs() < 0.01).all()
    assert (df.loc[df["bound"].isin(["Q1 1/L", "Q1 2/(L+mu)", "Q2", "B1'", "B4-step"]), "bound_over_pep"]
            .sub(1).abs() < 1e-5).all()
    assert (df.loc[df["bound"] == "Q5", "bound_over_pep"] < 1).all()          # only asymptotic
    # rows outside PEPit's classes say nothing
    assert df.loc[df["bound"].isin(["B2", "B3", "S1", "S2", "A1"]), "bound_over_pep"].isna().all()


def test_worst_start_between_measured_and_bound(quick_table):
    """On quadratics B1 and B4 carry the exact worst start on the problem's spectrum: the measured T is
    at most it, it is at most the bound (GD can use at most ~1/(2e) of B1's steps)."""
    rows = quick_table[quick_table["bound"].isin(["B1", "B4"]) & quick_table["worst_start"].notna()]
    assert len(rows) >= 6
    assert (rows["measured"] <= rows["worst_start"]).all() and (rows["worst_start"] <= rows["predicted"]).all()
    b1 = rows[rows["bound"] == "B1"]
    assert (b1["worst_start"] / b1["predicted"] <= 1 / (2 * math.e) + 0.01).all()


def test_s2_noise_dominated_regime_and_long_softmax_certificates(quick_table):
    df = quick_table
    s2 = df[(df["bound"] == "S2") & (df["problem"] == "noisy_s2")]
    share = float(s2["detail"].iloc[0].split("noise_share ")[1].split(")")[0])
    assert share >= 0.5 and bool(s2["pass"].iloc[0])
    certs = df[(df["problem"] == "softmax") & df["bound"].isin(["B1'", "B2-step", "B3-step", "B4-step", "A1-step"])]
    assert len(certs) == 5 and all(int(d.split(" violations in ")[1].split()[0]) >= 1000 for d in certs["detail"])
    # paid/charged curvature is reported beside every per-step certificate
    assert certs["paid_over_charged"].between(0, 1 + 1e-6).all()


def test_capped_unreached_run_is_inconclusive_never_a_pass(capsys):
    """check_bound(..., steps=3) on a problem that needs ~10^6 steps: INCONCLUSIVE, holds is False, and
    verify's exit status says so (3) while counting it apart from passes and violations."""
    p = BlockQuadratic.from_spectra([[1e-3, 1.0]], rotate=False, seed=0, x_star=torch.zeros(2))
    b = hb.gd_nonconvex(L2=p.L2, delta=1.0, eps=1e-3)
    assert b.iterations > 1e5
    chk = hv.check_bound(p, "gd", b, x0=torch.tensor([30.0, 1.0]), steps=3)
    assert chk.status == hv.INCONCLUSIVE and not chk.holds and not chk.conclusive and "INCONCLUSIVE" in chk.message
    with pytest.raises(AssertionError, match="INCONCLUSIVE"):
        from heterosim.testing import assert_bound_holds
        assert_bound_holds(p, "gd", b, x0=torch.tensor([30.0, 1.0]), steps=3)
    # a capped run that already exceeds the bound's value is a violation, not inconclusive
    wrong = hb.gd_nonconvex(L2=p.L2, delta=1e-9, eps=1e-3)
    assert hv.check_bound(p, "gd", wrong, x0=torch.tensor([30.0, 1.0]), steps=3).status == hv.FAIL
    # the table and the exit status
    import pandas as pd
    row = {**{c: float("nan") for c in hv.COLUMNS}, "bound": "B1", "status": hv.INCONCLUSIVE, "pass": False}
    df = pd.DataFrame([row, {**row, "status": "pass", "pass": True}], columns=hv.COLUMNS)
    assert hv.summary_line(df) == "2 checks: 1 passed, 0 violated, 1 inconclusive"


def test_exit_status_for_inconclusive(monkeypatch, capsys):
    real = hv.check_bound

    def capped(*a, **kw):
        return real(*a, **{**kw, "max_steps": 1}) if kw.get("steps") is None else real(*a, **kw)
    monkeypatch.setattr("heterosim.verify.checks.check_bound", capped)
    code = hv.cli_main(["--quick", "--json", "--only", "B5", "--no-pep"])
    rows = json.loads(capsys.readouterr().out)
    statuses = {r["status"] for r in rows}
    assert "INCONCLUSIVE" in statuses and not any(r["pass"] for r in rows if r["status"] == "INCONCLUSIVE")
    assert code == (hv.EXIT_VIOLATED if "FAIL" in statuses else hv.EXIT_INCONCLUSIVE)


def test_one_registry_pairs_every_bound_with_its_check():
    for name, entry in hv.REGISTRY.items():
        assert entry.bounds and all(callable(b) for b in entry.bounds) and callable(entry.check)
        assert all(any(r.startswith(n) for n in (name,)) or name in ("Kunstner", "head-growth") or r == "B5"
                   or r == "B5-ratio" or r == "Q3-gd-lower" for r in entry.rows)
    assert set(hv.CHECKS) == set(hv.REGISTRY)


def test_c2_and_verify_share_check_bound():
    from heterosim.claims import c2_bound_tightness
    import inspect
    src = inspect.getsource(c2_bound_tightness)
    assert "from heterosim.verify import check_bound" in src and "_first_hit" not in src


def test_cli_json_shape_and_exit_code(capsys):
    code = hv.cli_main(["--quick", "--json", "--only", "B4,Kunstner"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and isinstance(rows, list) and rows
    assert {r["bound"] for r in rows} == {"B4", "B4-step", "Kunstner-GD", "Kunstner-sign"}
    for r in rows:
        assert set(r) == set(COLUMNS) and isinstance(r["pass"], bool) and r["pass"] and r["status"] == "pass"
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
    def tenth(f, kw):
        b = f(**kw)
        return dataclasses.replace(b, eps=b.eps / 10, coef=(b.coef[0] / 100, 0.0, 0.5))
    monkeypatch.setattr(hb, "signsgd_bernstein", _wrapped(real, tenth))
    df = hv.verify(quick=True, only=["S2"], pep=False)
    assert len(df) == 2 and not df["pass"].any() and (df["status"] == "FAIL").all()


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
