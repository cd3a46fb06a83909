"""C5 (SignGD's tuned lr against d): the measure against references (L_inf = tr H on axis-aligned
problems, B2's eta = eps / L_inf, a plain numpy SignGD loop at the tuned lr), and the fixed
criterion on synthetic tables made to give each outcome."""
import math

import numpy as np
import pandas as pd
import pytest

from heterosim.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED
from heterosim.claims import c5_sign_lr as c5


def test_measure_matches_a_numpy_signgd_loop_and_b2():
    config = {"d": 8, "rotate": False, "metric": "grad_l1", "eps_rel": 1e-2, "relative": True, "seed": 3,
              "steps": 5_000}
    row = c5.measure(config)
    p = c5.sign_lr_problem(8, False, 3)
    lam = p.spectrum.numpy()
    assert row["Linf"] == pytest.approx(lam.sum(), rel=1e-12) and row["Linf_kind"] == "exact"   # tr H
    x, xs = p.initial_point(3).numpy(), p.x_star.numpy()
    g0 = np.abs(lam * (x - xs)).sum()
    assert row["g0_l1"] == pytest.approx(g0, rel=1e-12)
    assert row["eta_bound"] == pytest.approx(1e-2 * g0 / lam.sum(), rel=1e-12)                 # B2: eps / L_inf
    t = 0
    while np.abs(lam * (x - xs)).sum() > 1e-2 * g0:                                            # SignGD at the tuned lr
        x = x - row["lr"] * np.sign(lam * (x - xs))
        t += 1
    assert t == row["T"] and not row["edge"]


def test_absolute_eps_is_fixed_at_the_reference_dimension():
    row = c5.measure({"d": 32, "rotate": True, "metric": "grad_l1", "eps_rel": 1e-2, "relative": False, "seed": 0,
                      "steps": 20_000})
    ref = c5.sign_lr_problem(c5.D_REF, True, 0)
    g = ref.grad(ref.initial_point(0).unsqueeze(0))[0]
    assert row["eps_abs"] == pytest.approx(1e-2 * float(g.abs().sum()), rel=1e-12)
    assert row["eta_bound"] == pytest.approx(row["eps_abs"] / row["Linf"], rel=1e-12)


def _table(delta_of, seeds=8, dims=c5.DIMS, steps=c5.STEPS, unreached=0, edge=0, seed=0):
    """Synthetic table: eta_bound ~ d^b (b = 0 relative, -1 absolute), tuned lr ~ d^(b + delta)
    with a per-seed jitter; ``delta_of(group, seed)`` sets each exponent difference."""
    rng = np.random.default_rng(seed)
    rows = []
    for relative in (True, False):
        for rotate in (False, True):
            group = c5._group_name("grad_l1", relative, rotate)
            b = 0.0 if relative else -1.0
            for s in range(seeds):
                dlt = delta_of(group, s)
                for d in dims:
                    rows.append({"d": d, "rotate": rotate, "metric": "grad_l1", "eps_rel": 1e-2, "relative": relative,
                                 "seed": s, "steps": steps, "status": "ok", "T": 100.0,
                                 "lr": 0.01 * d ** (b + dlt) * math.exp(0.02 * rng.standard_normal()),
                                 "edge": False, "eta_bound": 0.004 * d ** b, "Linf": 5.0 * d})
    t = pd.DataFrame(rows)
    t.loc[:unreached - 1, ["T", "lr"]] = [math.inf, math.nan]
    t.loc[len(t) - edge:, "edge"] = True if edge else t.loc[len(t) - edge:, "edge"]
    return t


def _reference_statistic(t):
    out = []
    for _, g in t.groupby(["relative", "rotate"]):
        deltas = [np.polyfit(np.log10(h["d"]), np.log10(h["lr"]), 1)[0]
                  - np.polyfit(np.log10(h["d"]), np.log10(h["eta_bound"]), 1)[0] for _, h in g.groupby("seed")]
        out.append(abs(np.mean(deltas)))
    return max(out)


def test_reproduced_when_the_tuned_step_follows_eps_over_linf():
    t = _table(lambda g, s: 0.02 * (s % 3 - 1))
    v = c5.criterion(t)
    assert v.outcome == REPRODUCED, v
    assert v.value == pytest.approx(_reference_statistic(t), rel=1e-9) and v.ci[1] <= 0.25
    assert v.n_reached == v.n_runs == 4 * 8 * 6


def test_not_reproduced_when_one_group_departs():
    v = c5.criterion(_table(lambda g, s: -0.6 if g == "grad_l1 rel rotated" else 0.0))
    assert v.outcome == NOT_REPRODUCED and v.ci[0] > 0.25 and "rel rotated" in v.statistic, v


def test_undecided_when_the_interval_straddles_the_tolerance():
    v = c5.criterion(_table(lambda g, s: (0.1 if s % 2 else 0.4) if g == "grad_l1 abs axis" else 0.0))
    assert v.outcome == UNDECIDED and any("straddles" in r for r in v.reasons), v


@pytest.mark.parametrize("kw,why", [({"unreached": 1}, "did not reach"), ({"steps": 5_000}, "reduced budget"),
                                     ({"seeds": 3}, "seed(s)"), ({"dims": (8, 16, 32)}, "dimension(s)"),
                                     ({"edge": 2}, "edge")])
def test_undecided_when_the_table_cannot_decide(kw, why):
    v = c5.criterion(_table(lambda g, s: 0.0, **kw))
    assert v.outcome == UNDECIDED and any(why in r for r in v.reasons), v
    if "unreached" in kw:
        e = c5.seed_exponents(_table(lambda g, s: 0.0, **kw)).set_index(["relative", "rotate", "seed"])
        assert v.n_reached == v.n_runs - 1
        assert math.isnan(e.loc[(True, False, 0), "exponent_lr"])           # never a fit over fewer points
        assert np.isfinite(e.drop((True, False, 0))["exponent_lr"]).all()


def test_failed_configs_and_empty_tables_are_undecided():
    t = _table(lambda g, s: 0.0)
    t.loc[0, "status"] = "error"
    assert c5.criterion(t).outcome == UNDECIDED
    assert c5.criterion(t.iloc[0:0]).outcome == UNDECIDED


def test_figure_has_named_axes():
    import matplotlib.figure
    fig = c5.figure(_table(lambda g, s: 0.0))
    assert isinstance(fig, matplotlib.figure.Figure)
    assert all(a.get_xlabel() == "dimension d" for a in fig.axes)
    assert "learning rate" in fig.axes[0].get_ylabel()
