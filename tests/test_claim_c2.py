"""Claim C2 (heterosim.claims.c2_bound_tightness): the criterion on synthetic tables built to give
each outcome, the measure on one instance against the bounds it checks and the worst starts
(exact, from the spectrum), and the figure."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from heterosim.claims import REPRODUCED, NOT_REPRODUCED, UNDECIDED, get
from heterosim.claims import c2_bound_tightness as c2

#: A small rotated instance (d = 25, kappa 2.5) keeps the measure test short; S1 (32 noise seeds through
#: the engine, the same check_bound as heterosim verify's S1, tested there) is left out here.
INSTANCE = 9
CHECKS = [label for label in c2.FAMILIES if label != "S1"]


def _table(n_inst=c2.N_INSTANCES, fail=None, inconclusive=None, config_failed=False, q5_fail=True):
    """Rows as measure() writes them: every family on every instance, tightness 0.1-0.9."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n_inst):
        for label in c2.FAMILIES:
            TB = float(rng.uniform(100, 1000))
            T = TB * float(rng.uniform(0.05, 0.9))
            outcome = "pass"
            if label == "Q5":
                outcome = "FAIL" if q5_fail else "pass"
            if (i, label) == fail:
                T, outcome = 1.2 * TB, "FAIL"
            if (i, label) == inconclusive:
                T, outcome = math.inf, "INCONCLUSIVE"
            rows.append({"instance": i, "seed": 0, "check": label, "family": c2.FAMILIES[label], "T": T,
                         "T_bound": TB, "tightness": T / TB, "outcome": outcome, "asymptotic": label == "Q5",
                         "worst_start": 1.1 * T, "pep_iterations": TB / 1.45, "bound_over_pep": 1.45,
                         "status": "ok"})
    t = pd.DataFrame(rows)
    if config_failed:
        t.loc[len(t)] = {**rows[0], "instance": n_inst, "status": "failed"}
    return t


def test_criterion_reproduced_and_its_interval():
    v = c2.criterion(_table())
    assert v.outcome == REPRODUCED and v.value == 0.0 and not v.reasons
    n = c2.N_INSTANCES * (len(c2.FAMILIES) - 1)            # Q5 is asymptotic: reported, not judged
    assert v.n_runs == n and v.n_reached == n
    lo, hi = v.ci                                          # Clopper-Pearson: 1 - (0.025)^(1/n)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-6)
    assert "Q5 (asymptotic, not judged)" in v.details and "measured/worst start" in v.details


def test_criterion_not_reproduced_on_a_violation():
    v = c2.criterion(_table(fail=(3, "B2")))
    n = c2.N_INSTANCES * (len(c2.FAMILIES) - 1)
    assert v.outcome == NOT_REPRODUCED and v.value == pytest.approx(1 / n) and "1 VIOLATED" in v.details


@pytest.mark.parametrize("kind", ["inconclusive", "reduced", "config_failed"])
def test_criterion_undecided(kind):
    t = {"inconclusive": lambda: _table(inconclusive=(2, "A1")), "reduced": lambda: _table(n_inst=2),
         "config_failed": lambda: _table(config_failed=True)}[kind]()
    v = c2.criterion(t)
    assert v.outcome == UNDECIDED
    word = {"inconclusive": "INCONCLUSIVE", "reduced": "reduced budget", "config_failed": "failed"}[kind]
    assert any(word in r for r in v.reasons), v.reasons


def test_quick_grid_is_undecided_by_construction():
    g = c2.grid(quick=True)
    assert len(g["instance"]) < c2.N_INSTANCES


@pytest.fixture(scope="module")
def one_instance():
    return pd.DataFrame(c2.measure({"instance": INSTANCE, "seed": 0, "max_steps": 20_000, "only": CHECKS}))


def test_measure_rows_against_the_bounds_and_worst_starts(one_instance):
    """Every check passes on a random instance; the worst start is at least the measured T and at
    most the bound (GD, block-wise GD; equal to the bound for the exact quadratic rates); the PEP
    worst case of B1 sits at (3T - 1)/(2T) -> 1.5 below the bound."""
    import heterosim.bounds as hb
    t = one_instance.set_index("check")
    judged = t[~t["asymptotic"]]
    assert (judged["outcome"] == "pass").all(), judged[["outcome", "T", "T_bound"]]
    for label in ("B1", "B4", "Q1 1/L", "Q1 2/(L+mu)", "Q2"):
        r = t.loc[label]
        assert r["T"] <= r["worst_start"] <= r["T_bound"] + 1e-9
    for label in ("Q1 1/L", "Q1 2/(L+mu)", "Q2"):
        assert t.loc[label, "worst_start"] == t.loc[label, "T_bound"]       # exact rates: one eigenvector
    assert t.loc["B1", "bound_over_pep"] == pytest.approx(1.45, rel=1e-6)   # T = 10: (3T - 1)/(2T)
    # the worst start of B1, recomputed from the instance's spectrum
    p = c2.random_instance(INSTANCE)
    x0 = p.initial_point(0)
    f0 = float(p.loss(x0.unsqueeze(0))[0])
    b = hb.gd_nonconvex(L2=p.L2, delta=f0 - p.f_star, eps=0.1 * float(p.grad(x0.unsqueeze(0))[0].norm()))
    ws = hb.gd_worst_start(eigenvalues=p.spectrum.numpy(), eta=b.lr, eps=b.eps, delta=f0 - p.f_star)
    assert t.loc["B1", "worst_start"] == ws.iterations
    # heavy ball: the asymptotic r^T count is exceeded, the worst start is measured beside it
    assert t.loc["Q5", "asymptotic"] and t.loc["Q5", "T"] <= t.loc["Q5", "worst_start"]


def test_figure_has_a_panel_per_family(one_instance):
    t = one_instance.assign(instance=INSTANCE, status="ok")
    fig = c2.figure(t)
    panels = [ax for ax in fig.axes if ax.has_data()]
    assert len(panels) == t["family"].nunique()
    assert all(ax.get_xscale() == "log" for ax in panels)
    assert any(ax.get_ylabel() for ax in fig.axes) and any(ax.get_xlabel() for ax in fig.axes)


def test_claim_record():
    c = get("C2")
    assert c.study == c2.STUDY and c.experiment == "c2_bound_tightness.py" and c.measure is c2.measure
