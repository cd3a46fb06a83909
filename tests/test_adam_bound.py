"""A1: Adam with beta1 = 0 under l_inf smoothness (heterosim.bounds.adam_linf_nonconvex): its
constants, and the bound against measured Adam runs on the built-in suite and on instances drawn by
heterosim.testing's strategies (the value at every T and the per-step l_inf descent lemma)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import heterosim.bounds as hb
from heterosim import verify as hv
from heterosim.optimizers import make
from heterosim.problems.quadratic import BlockQuadratic
from heterosim.testing import block_quadratics, softmax_problems

FEW = settings(max_examples=5, deadline=None, derandomize=True)


def test_constants_and_the_prescribed_step():
    """At the prescribed step the exact value(T) is at most eps, and T follows the closed form
    8 K^2 L_inf^2 Delta^2 / ((1 - beta2) eps^4), K^2 = (1 + sqrt beta2)/(1 - sqrt beta2)."""
    Linf, delta, beta2, eps = 12.0, 3.0, 0.9, 0.8
    b = hb.adam_linf_nonconvex(Linf=Linf, delta=delta, beta2=beta2, eps=eps)
    K2 = (1 + math.sqrt(beta2)) / (1 - math.sqrt(beta2))
    assert b.iterations == math.ceil(8 * K2 * Linf ** 2 * delta ** 2 / ((1 - beta2) * eps ** 4))
    assert b.lr == pytest.approx(math.sqrt(2 * delta * (1 - beta2) / (Linf * b.iterations)))
    assert b.value(b.iterations) <= eps and b.moment == 2 and b.aggregate == "mean"
    # beta2 = 0, T = 1: the bound reduces to ||g_0||_1^2 <= 2 Linf Delta, the l_inf twin of ||g||^2 <= 2 L Delta
    b0 = hb.adam_linf_nonconvex(Linf=Linf, delta=delta, beta2=0.0, T=1)
    assert b0.value(1) == pytest.approx(math.sqrt(2 * Linf * delta))
    # memory sums: S_{T-1} increases to K, C_T = sum_k (1 - beta2^(k+1))/(1 - beta2)
    S, C = hb._adam_memory(beta2, 50)
    assert S == pytest.approx(sum(math.sqrt((1 - beta2) * beta2 ** (49 - s) / (1 - beta2 ** 50)) for s in range(50)))
    assert C == pytest.approx(sum((1 - beta2 ** (k + 1)) / (1 - beta2) for k in range(50)))
    assert S < math.sqrt(K2)


def test_bad_input():
    with pytest.raises(ValueError, match="beta2"):
        hb.adam_linf_nonconvex(Linf=1.0, delta=1.0, beta2=1.0, eps=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        hb.adam_linf_nonconvex(Linf=1.0, delta=1.0, beta2=0.5, eps=0.1, T=3)
    with pytest.raises(ValueError, match="needs d"):
        hb.adam_linf_nonconvex(Linf=1.0, delta=1.0, beta2=0.5, eps=0.1, adam_eps=1e-8)


def test_holds_on_the_builtin_suite_with_tightness():
    df = hv.verify(quick=True, only=["A1"], pep=False)
    assert set(df["bound"]) == {"A1", "A1-step"} and (df["status"] == "pass").all(), df[["problem", "detail"]]
    a1 = df[df["bound"] == "A1"]
    assert len(a1) == 4 and ((a1["tightness"] > 0) & (a1["tightness"] < 1)).all()     # reported, and loose
    assert (df.loc[df["bound"] == "A1-step", "measured"] >= 1 - 1e-6).all()


def _value_check(p, beta2, T=300):
    """A1 at the step prescribed for T: the mean of ||g_t||_1^2 below value(t)^2 at every t <= T."""
    opt = make("adam", betas=(0.0, beta2), eps=0.0)
    bound = lambda q, s: hb.adam_linf_nonconvex(Linf=q.Linf, delta=s.delta, beta2=beta2, T=T)
    return hv.check_bound(p, opt, bound, seeds=[0, 1], steps=T)


@given(block_quadratics(block_size=(1, 6), max_kappa=1e3))
@FEW
def test_holds_on_drawn_quadratics(p):
    for beta2 in (0.0, 0.9, 0.99):
        chk = _value_check(p, beta2)
        assert chk.status == "pass" and chk.value_ratio <= 1, chk.message


@given(softmax_problems())
@settings(max_examples=3, deadline=None, derandomize=True)
def test_holds_on_drawn_softmax(p):
    chk = _value_check(p, 0.9)
    assert chk.status == "pass" and chk.value_ratio <= 1, chk.message


@given(block_quadratics(block_size=(1, 5), max_kappa=1e2))
@FEW
def test_per_step_lemma_on_drawn_quadratics(p):
    rows = hv.check_adam(hv.make_case("hyp", p, {"deterministic"}), hv.Budget(T=50, seeds=2), None)
    step = [r for r in rows if r["bound"] == "A1-step"][0]
    assert step["status"] == "pass" and step["measured"] >= 1 - 1e-6


def test_a_wrong_a1_is_caught():
    """A1 with Delta understated 10^4-fold claims less than Adam delivers: refuted."""
    p = BlockQuadratic.from_spectra([[1.0, 3.0], [20.0, 50.0]], rotate=True, seed=1, x_star=torch.zeros(4))
    opt = make("adam", betas=(0.0, 0.9), eps=0.0)
    wrong = lambda q, s: hb.adam_linf_nonconvex(Linf=q.Linf, delta=s.delta * 1e-4, beta2=0.9, eta=0.05)
    chk = hv.check_bound(p, opt, wrong, seeds=[0], steps=200)
    assert chk.status == "FAIL" and chk.value_ratio > 1
