"""Exact worst starts on a quadratic's spectrum (heterosim.bounds.gd_worst_start and twins): against
a brute-force maximum over mixtures of eigen-directions (a linear program over the simplex), against
runs of the engine from the attaining start, and against the bounds they sit under."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import heterosim.bounds as hb
from heterosim import engine
from heterosim.bounds import _heavy_ball_modes, _lp_max_min
from heterosim.optimizers import make as make_optimizer
from heterosim.problems.quadratic import BlockQuadratic
from heterosim.testing import block_quadratics

FEW = settings(max_examples=6, deadline=None, derandomize=True)


def _lp_worst(A):
    """Brute force: the largest t with max_w min_{s<=t} (A w)_s > 1, plus one (A scaled by 1/eps^2)."""
    t = -1
    while t + 1 < A.shape[0] and _lp_max_min(A[: t + 2])[0] > 1 + 1e-9:
        t += 1
    return t + 1


@pytest.mark.parametrize("eta_L", [1.0, 1.9])
def test_gd_single_eigenvector_is_the_worst_start(eta_L):
    """The closed form (one eigenvector) equals the maximum over all mixtures, found by LP."""
    lam = np.array([0.05, 0.3, 1.0, 2.0, 4.0])
    eta, delta, eps = eta_L / lam.max(), 1.0, 0.05
    ws = hb.gd_worst_start(eigenvalues=lam, eta=eta, eps=eps, delta=delta)
    t = np.arange(400)[:, None]
    A = 2 * delta * lam * (1 - eta * lam) ** (2 * t) / eps ** 2        # ||g_t||^2 / eps^2 of each pure mode
    assert ws.iterations == _lp_worst(A)
    assert ws.eigenvalue in lam


def test_worst_start_is_attained_by_the_engine():
    """GD from the attaining eigenvector, scaled to f_0 - f* = Delta, first reaches ||g|| <= eps at
    exactly the worst-start count."""
    p = BlockQuadratic.from_spectra([[0.1, 1.0, 3.0], [0.5, 10.0]], rotate=True, seed=3, x_star=torch.zeros(5))
    delta, eps = 2.0, 1e-2
    ws = hb.gd_worst_start(eigenvalues=p.spectrum.numpy(), eta=1 / p.L2, eps=eps, delta=delta)
    i = int(np.argmin(np.abs(p.spectrum.numpy() - ws.eigenvalue)))
    x0 = p.eigenbasis()[:, i] * math.sqrt(2 * delta / ws.eigenvalue)
    res = engine.run(p, "gd", [1 / p.L2], seeds=[0], steps=int(ws.iterations) + 5, record="grad_l2", x0=x0)
    g = res.curves["grad_l2"][0]
    assert int(np.argmax(g <= eps)) == ws.iterations


@given(block_quadratics(block_size=(1, 5), max_kappa=1e3, x_star="zero"))
@FEW
def test_measured_le_worst_start_le_bound(p):
    """From random starts GD's T(eps) is at most the worst start's, which is at most B1's count; the
    same for block-wise GD under B4."""
    x0 = p.initial_point(0)
    f0 = float(p.loss(x0.unsqueeze(0))[0]) - p.f_star
    g0 = float(p.grad(x0.unsqueeze(0))[0].norm())
    b1 = hb.gd_nonconvex(L2=p.L2, delta=f0, eps=0.1 * g0)
    ws = hb.gd_worst_start(eigenvalues=p.spectrum.numpy(), eta=b1.lr, eps=b1.eps, delta=f0)
    res = engine.run(p, "gd", [b1.lr], seeds=[0], steps=int(ws.iterations) + 1, record="grad_l2", x0=x0)
    measured = int(np.argmax(res.curves["grad_l2"][0] <= b1.eps))
    assert measured <= ws.iterations <= b1.iterations
    L = p.L_blocks.numpy()
    linv0 = float(np.sqrt((p.blocks.sq_norms(p.grad(x0.unsqueeze(0)))[0].numpy() / L).sum()))
    b4 = hb.blockwise_gd_nonconvex(L_blocks=L, delta=f0, eps=0.1 * linv0)
    wb = hb.blockwise_gd_worst_start(block_eigenvalues=[s.numpy() for s in p.block_spectra], eta_blocks=1 / L,
                                     eps=b4.eps, metric="grad_Linv", delta=f0, L_blocks=L)
    assert wb.iterations <= b4.iterations


def test_gd_uses_at_most_one_over_2e_of_b1():
    """On a spectrum filling (0, L], the worst start approaches 1/(2e) ~ 18.4% of B1's count from below."""
    L, delta = 1.0, 1.0
    lam = np.logspace(-9, 0, 20_001)                  # resolves the maximiser lambda* = e eps^2 / (2 Delta)
    for eps in (1e-2, 1e-3):
        w = hb.gd_worst_start(eigenvalues=lam, eta=1 / L, eps=eps, delta=delta)
        ratio = w.iterations / hb.gd_nonconvex(L2=L, delta=delta, eps=eps).iterations
        assert 0.18 < ratio <= 1 / (2 * math.e) + 1e-3
        assert w.eigenvalue == pytest.approx(math.e * eps ** 2 / (2 * delta), rel=5e-2)


def test_blockwise_with_one_block_is_gd():
    lam = np.array([0.2, 1.0, 5.0])
    a = hb.gd_worst_start(eigenvalues=lam, eta=0.2, eps=1e-3, metric="subopt")
    b = hb.blockwise_gd_worst_start(block_eigenvalues=[lam], eta_blocks=[0.2], eps=1e-3, metric="subopt")
    assert a.iterations == b.iterations == math.ceil(math.log(1e-3) / (2 * math.log(1 - 0.2 * 0.2)))


def test_heavy_ball_worst_start_beats_single_eigenvectors():
    """Heavy ball's modes oscillate: the LP's worst mixture stays above eps at least as long as any
    eigenvector, and the returned weights really keep the run unreached until the reported step."""
    lam = np.logspace(0, 2, 12)
    b = hb.heavy_ball_quadratic_rate(L=lam.max(), mu=lam.min())
    eps = 1e-3
    ws = hb.heavy_ball_worst_start(eigenvalues=lam, eta=b.lr, momentum=b.momentum, eps=eps)
    z2 = _heavy_ball_modes(lam, b.lr, b.momentum, int(ws.iterations) + 1) ** 2
    single = max(int(np.argmax(z2[:, i] <= eps ** 2)) for i in range(lam.size))
    assert ws.iterations >= single
    if ws.weights is not None:
        mix = z2 @ np.asarray(ws.weights)
        assert np.all(mix[: int(ws.iterations)] > eps ** 2 * (1 - 1e-6))
    assert ws.iterations == _lp_worst(z2[: int(ws.iterations) + 1] / eps ** 2)
    # and random starts of the engine never take longer
    p = BlockQuadratic.from_spectra([lam], rotate=True, seed=0, x_star=torch.zeros(12))
    res = engine.run(p, make_optimizer("sgd_momentum", momentum=b.momentum), [b.lr], seeds=[0, 1, 2],
                     steps=int(ws.iterations) + 2, record="dist")
    d = res.curves["dist"]
    assert all(int(np.argmax(r <= eps * r[0])) <= ws.iterations for r in d)


def test_bad_input():
    with pytest.raises(ValueError, match="delta"):
        hb.gd_worst_start(eigenvalues=[1.0], eta=1.0, eps=0.1)
    with pytest.raises(ValueError, match="diverges"):
        hb.gd_worst_start(eigenvalues=[1.0, 3.0], eta=1.0, eps=0.1, metric="subopt")
    with pytest.raises(ValueError, match="metric"):
        hb.heavy_ball_worst_start(eigenvalues=[1.0], eta=1.0, momentum=0.1, eps=0.1, metric="subopt")
