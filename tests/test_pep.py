"""Exact worst cases by performance estimation (heterosim.pep, heterosim.bounds.worst_case):
PEPit's value against the known closed forms, the private on-disk cache, and what has no PEPit class."""
from __future__ import annotations

import json
import math
import os
import stat

import pytest

import heterosim.bounds as hb
from heterosim import pep


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    folder = tmp_path / "pep-cache"
    monkeypatch.setenv("HETEROSIM_PEP_CACHE", str(folder))
    monkeypatch.setattr(pep, "_MEMORY", {})
    return folder


@pytest.mark.parametrize("T", [1, 2, 5, 10])
def test_b1_at_one_over_L_matches_the_closed_form(T):
    """GD at 1/L on L-smooth functions: the exact worst case of min_{t<T} ||g_t||^2 is 4 L Delta/(3T - 1)
    (Abbaszadehpeivasti, de Klerk & Zamani 2022), so B1 / worst = (3T - 1)/(2T) (issue 13: within 1%)."""
    b = hb.gd_nonconvex(L2=7.0, delta=3.0, eps=0.5)
    w = hb.worst_case(b, T=T)
    assert w.ratio == pytest.approx((3 * T - 1) / (2 * T), rel=1e-6)   # issue 13 asks 1%; solver precision holds
    assert w.worst == pytest.approx(math.sqrt(4 * 7.0 * 3.0 / (3 * T - 1)), rel=1e-6)
    assert w.closed_form == pytest.approx(w.worst, rel=1e-6)
    # the worst-case iteration count at the bound's eps: (4 L Delta/eps^2 + 1)/3 against 2 L Delta/eps^2
    assert w.iterations == pytest.approx((4 * 7.0 * 3.0 / 0.25 + 1) / 3)


def test_convex_class_is_below_the_nonconvex_one():
    b = hb.gd_nonconvex(L2=1.0, delta=1.0, eps=0.3)
    smooth, convex = hb.worst_case(b, T=5), hb.worst_case(b, T=5, function_class="smooth_convex")
    assert convex.worst < smooth.worst and convex.ratio > smooth.ratio > 1


def test_b4_is_b1_in_rescaled_variables():
    b4 = hb.blockwise_gd_nonconvex(L_blocks=[1.0, 30.0], delta=2.0, eps=0.2)
    w = hb.worst_case(b4, T=4)
    assert w.ratio == pytest.approx(11 / 8, rel=1e-6) and w.worst == pytest.approx(math.sqrt(2.0 * 4 / 11), rel=1e-6)


@pytest.mark.parametrize("cls", ["smooth_strongly_convex", "quadratic"])
@pytest.mark.parametrize("step", ["1/L", "2/(L+mu)"])
def test_q1_rates_are_the_exact_worst_case(cls, step):
    """Taylor, Hendrickx & Glineur (2018): GD's worst-case contraction over smooth strongly convex
    functions is max(|1 - eta mu|, |1 - eta L|) per step, the quadratic rate (bound/worst = 1)."""
    b = hb.gd_quadratic_rate(L=10.0, mu=0.25, step=step, eps=1e-3)
    w = hb.worst_case(b, function_class=cls)
    assert w.ratio == pytest.approx(1.0, abs=1e-6) and w.iterations == b.iterations


def test_heavy_ball_bound_is_only_asymptotic():
    """On quadratics the worst case after T steps is (1 + 2 sqrt(kappa) T/(sqrt(kappa) + 1)) r^T (the double
    root at L), above the asymptotic r^T; on smooth strongly convex functions Polyak's parameters do not
    even contract (Lessard, Recht & Packard 2016)."""
    kappa, T = 100.0, 8
    b = hb.heavy_ball_quadratic_rate(L=kappa, mu=1.0)
    sk = math.sqrt(kappa)
    w = hb.worst_case(b, T=T)
    assert w.worst == pytest.approx((1 + 2 * sk * T / (sk + 1)) * b.rate ** T, rel=1e-4)   # SDP tolerance
    assert w.ratio < 1
    assert hb.worst_case(b, T=T, function_class="smooth_strongly_convex").worst > 1


def test_one_step_descent_lemma_is_tight():
    for eta, L in ((0.1, 10.0), (1.5, 1.0)):
        w = hb.step_decrease_worst_case(eta=eta, L=L)
        assert w.ratio == pytest.approx(1.0, rel=1e-6) and w.worst == pytest.approx(eta * (1 - eta * L / 2), rel=1e-6)


def test_bounds_without_a_pepit_class_are_refused():
    for b in (hb.signgd_nonconvex(Linf=1.0, delta=1.0, eps=0.1), hb.sgd_nonconvex(L2=1.0, delta=1.0, sigma2=1.0, eps=0.5),
              hb.adam_linf_nonconvex(Linf=1.0, delta=1.0, beta2=0.9, eps=1.0)):
        with pytest.raises(ValueError, match="no PEPit function class"):
            hb.worst_case(b)
    with pytest.raises(ValueError, match="function_class"):
        hb.worst_case(hb.gd_nonconvex(L2=1.0, delta=1.0, eps=0.1), function_class="quadratic")


def test_cache_is_private_keyed_and_robust(private_cache):
    prob = pep.PEPProblem("gd", "smooth", 3, 1.0, "f0_minus_fT", "min_grad_sq")
    first = pep.solve(prob)
    assert not first.cached and first.value == pytest.approx(4 / 8, rel=1e-6)
    assert stat.S_IMODE(os.stat(private_cache).st_mode) == 0o700
    files = list(private_cache.glob("*.json"))
    assert len(files) == 1 and stat.S_IMODE(os.stat(files[0]).st_mode) & 0o077 == 0
    assert json.loads(files[0].read_text())["problem"] == prob.as_dict()
    pep._MEMORY.clear()
    again = pep.solve(prob)
    assert again.cached and again.value == first.value
    # another problem gets another key; a corrupt file is solved again, not trusted
    other = pep.PEPProblem("gd", "smooth", 4, 1.0, "f0_minus_fT", "min_grad_sq")
    assert other.key("CLARABEL") != prob.key("CLARABEL")
    files[0].write_text("{not json")
    pep._MEMORY.clear()
    fresh = pep.solve(prob)
    assert not fresh.cached and fresh.value == pytest.approx(first.value, rel=1e-9)


def test_group_readable_cache_folder_is_made_private(private_cache):
    private_cache.mkdir(mode=0o755)
    os.chmod(private_cache, 0o755)
    assert pep.cache_dir() == private_cache and stat.S_IMODE(os.stat(private_cache).st_mode) == 0o700


def test_bad_problems_are_refused():
    with pytest.raises(ValueError, match="unknown function class"):
        pep.PEPProblem("gd", "lipschitz", 2, 1.0, "subopt", "subopt")
    with pytest.raises(ValueError, match="mu"):
        pep.PEPProblem("gd", "quadratic", 2, 1.0, "subopt", "subopt")
    with pytest.raises(ValueError, match="T must be"):
        pep.PEPProblem("gd", "smooth", 0, 1.0, "f0_minus_fT", "min_grad_sq")
