"""heterosim.testing: the strategies produce what they promise, and the bound helpers accept
true bounds and catch wrong ones (each against a closed form or an exact eigendecomposition)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings

import heterosim.bounds as hb
from heterosim.problems.quadratic import BlockQuadratic
from heterosim.testing import (assert_bound_holds, assert_step_inequality, block_quadratics, block_spectra,
                               check_bound, check_step_inequality, initial_points, softmax_problems,
                               with_initial_points)

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)


# ------------------------------------------------------------------ strategies
@given(block_spectra(n_blocks=(2, 5), block_size=(1, 4), min_kappa=10.0, max_kappa=1e4))
@SETTINGS
def test_block_spectra_respect_their_bounds(spectra):
    assert 2 <= len(spectra) <= 5 and all(1 <= len(s) <= 4 for s in spectra)
    eig = np.concatenate([np.asarray(s) for s in spectra])
    assert np.all(eig > 0) and np.all(np.isfinite(eig))
    kappa = eig.max() / eig.min()
    assert 10.0 * (1 - 1e-9) <= kappa <= 1e4 * (1 + 1e-9)
    assert 10.0 ** -2 * (1 - 1e-12) <= eig.min() <= 10.0 ** 2 * (1 + 1e-12)      # default scale range


@given(block_quadratics(block_size=(1, 5), max_kappa=100.0))
@SETTINGS
def test_block_quadratics_spectrum_matches_the_hessian(p):
    """The problem's spectrum is the Hessian's (exact eigendecomposition), its blocks are the
    spectra's sizes, its ground truth is consistent, and axis-aligned means a diagonal Hessian."""
    H = p.hessian()
    ev = torch.linalg.eigvalsh(H)
    torch.testing.assert_close(ev, torch.sort(p.spectrum).values, rtol=1e-10, atol=0)
    assert p.L2 == pytest.approx(float(ev.max()), rel=1e-12) and p.mu == pytest.approx(float(ev.min()), rel=1e-12)
    if p.diagonal:
        assert torch.equal(H, torch.diag(torch.diagonal(H)))
    f, g = p.loss_and_grad(p.x_star.unsqueeze(0))
    assert float(f[0]) == pytest.approx(p.f_star) and float(g.abs().max()) == 0.0


@given(block_quadratics(x_star="zero", sigma=0.5, block_size=(1, 3)))
@SETTINGS
def test_block_quadratics_options(p):
    assert float(p.x_star.abs().max()) == 0.0
    assert p.has_oracle and p.sigma2 == pytest.approx(0.25 * p.d)


@given(softmax_problems())
@settings(max_examples=5, deadline=None, derandomize=True)
def test_softmax_problems_are_small_and_certified(p):
    assert 16 <= p.n <= 64 and 2 <= p.p <= 6 and 2 <= p.C <= 5 and p.d == p.C * p.p
    # f* from L-BFGS with its strong-convexity certificate: the gradient there is tiny
    assert p.f_star_gap_bound < 1e-8
    x = p.x_star.unsqueeze(0) + 0.1
    assert float(p.loss(x)[0]) >= p.f_star - p.f_star_gap_bound


@given(with_initial_points(block_quadratics(block_size=(1, 3)), scale=(0.5, 2.0)))
@SETTINGS
def test_initial_points_are_seeded_and_scaled(pair):
    p, x0 = pair
    assert x0.shape == (p.d,) and bool(torch.isfinite(x0).all())
    r = float((x0 - p.x_star).norm()) / math.sqrt(p.d)
    assert 0.0 < r < 2.0 * 6.0                     # s in [0.5, 2] times N(0, I): loose, but scaled


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_initial_points_replay():
    p = BlockQuadratic.from_spectra([[1.0, 2.0], [3.0]], rotate=True, seed=1)
    s = initial_points(p)
    a, b = s.example(), s.example()
    assert a.shape == b.shape == (3,)


@pytest.mark.parametrize("kw, match", [
    (dict(n_blocks=(3, 2)), "n_blocks"),
    (dict(block_size=(0, 2)), "block_size"),
    (dict(min_kappa=0.5), "min_kappa"),
    (dict(max_kappa=1e12), "max_kappa"),
    (dict(scale=2.0), "scale must be a pair"),
])
@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_bad_strategy_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        block_spectra(**kw).example()


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_bad_quadratic_arguments():
    with pytest.raises(ValueError, match="x_star must be"):
        block_quadratics(x_star="origin").example()
    with pytest.raises(ValueError, match="rotated blocks larger than"):
        block_quadratics(block_size=(20, 20), rotate=True).example()


# ------------------------------------------------------------ the bound helpers
def _ill_conditioned():
    """Axis-aligned f = 1/2 (x1^2 + 100 x2^2), x* = 0, started on the flat coordinate: GD at
    1/L contracts ||g|| by exactly 0.99 per step."""
    p = BlockQuadratic.from_spectra([[1.0, 100.0]], rotate=False, x_star=torch.zeros(2))
    return p, torch.tensor([1.0, 0.0], dtype=torch.float64)


def test_true_bound_passes_and_reports_tightness():
    p, x0 = _ill_conditioned()
    eps = 1e-3                                     # ||g_t|| = 0.99^t: first t with 0.99^t <= 1e-3 is 688
    chk = assert_bound_holds(p, "gd", hb.gd_nonconvex(L2=p.L2, delta=0.5, eps=eps), x0=x0)
    assert chk.measured_T[0] == math.ceil(math.log(eps) / math.log(0.99))
    assert chk.bound_T[0] == pytest.approx(2 * 100 * 0.5 / eps ** 2)
    assert chk.tightness == pytest.approx(688 / 1e8)


def test_wrong_iteration_bound_is_caught():
    """A bound claiming 100x fewer iterations than the truth (Delta understated) is refuted."""
    p, x0 = _ill_conditioned()
    wrong = hb.gd_nonconvex(L2=p.L2, delta=0.5e-6, eps=1e-3)         # 100 steps, truth 688
    chk = check_bound(p, "gd", wrong, x0=x0)
    assert not chk.holds and not chk.T_ok and chk.measured_T[0] > wrong.iterations
    with pytest.raises(AssertionError, match="VIOLATED"):
        assert_bound_holds(p, "gd", wrong, x0=x0)


@given(block_quadratics(min_kappa=10.0, max_kappa=1e3, x_star="zero", block_size=(1, 4)))
@SETTINGS
def test_wrong_rate_is_caught_on_any_quadratic(p):
    """Q1 with mu overstated 4x claims a faster rate than GD has; from the mu-eigenvector the
    helper refutes it on every instance, while the true rate passes."""
    x0 = p.x_star + p.eigenbasis()[:, int(torch.argmin(p.spectrum))]
    true = lambda q, s: hb.gd_quadratic_rate(L=q.L2, mu=q.mu, initial=s.subopt)
    wrong = lambda q, s: hb.gd_quadratic_rate(L=q.L2, mu=4 * q.mu, initial=s.subopt)
    assert_bound_holds(p, "gd", true, x0=x0, steps=30)
    with pytest.raises(AssertionError):
        assert_bound_holds(p, "gd", wrong, x0=x0, steps=30)


def test_step_inequality_true_and_wrong():
    """B1' holds at every step; a 'guarantee' without the curvature term (eta ||g||^2, more than
    any step can give) is refuted at the first step."""
    p = BlockQuadratic.from_spectra([[1.0, 3.0], [10.0, 20.0, 40.0]], rotate=True, seed=2)
    L = p.L_blocks.numpy()
    eta = 1.0 / p.L2
    true = lambda at, lr: hb.gd_step_decrease(g_block_sq=at["blocks"] ** 2, L_blocks=L, eta=lr[..., None])
    chk = assert_step_inequality(p, "gd", eta, true, seeds=[0, 1], steps=50)
    assert chk.min_ratio >= 1.0 and chk.violations == 0
    wrong = lambda at, lr: lr * at["grad_l2"] ** 2
    bad = check_step_inequality(p, "gd", eta, wrong, seeds=[0], steps=10)
    assert not bad.holds and bad.violations == 10 and bad.worst[0] == 0
    with pytest.raises(AssertionError, match="violation"):
        assert_step_inequality(p, "gd", eta, wrong, seeds=[0], steps=10)


def test_stochastic_bound_mean_with_margin():
    """S1 on a noisy quadratic holds for the mean over 32 noise seeds. Started next to x*
    (Delta ~ 1e-6) the bound is nearly its noise floor eta L_2 sigma^2; the same bound with the
    noise dropped (sigma^2 = 0: E||g_t|| -> 0) is refuted once the run sits on the floor."""
    p = BlockQuadratic.from_spectra([[1.0, 2.0], [4.0, 8.0]], rotate=True, seed=3, sigma=0.5,
                                    x_star=torch.zeros(4))
    true = lambda q, s: hb.sgd_nonconvex(L2=q.L2, delta=s.delta, sigma2=q.sigma2, eta=0.5 / q.L2)
    chk = assert_bound_holds(p, "sgd", true, seeds=[0], stochastic=True, noise_seeds=range(32), steps=150)
    assert chk.n_seeds == 32 and chk.value_ratio < 1
    near = p.x_star + 1e-3
    at_min = assert_bound_holds(p, "sgd", true, x0=near, stochastic=True, noise_seeds=range(32), steps=150)
    assert 0.3 < at_min.value_ratio < 1                  # the floor is a real, not a vacuous, ceiling
    wrong = lambda q, s: hb.sgd_nonconvex(L2=q.L2, delta=s.delta, sigma2=0.0, eta=0.5 / q.L2)
    bad = check_bound(p, "sgd", wrong, x0=near, stochastic=True, noise_seeds=range(32), steps=150)
    assert not bad.holds and bad.value_ratio > 3


def test_almost_sure_bound_on_every_noise_seed():
    """The head-growth ceiling eta t sqrt(C h) holds on every seed's run of minibatch SignSGD;
    half of it does not (a sign step moves every entry by eta)."""
    from heterosim.problems.softmax import synthetic
    p = synthetic(n=64, p=4, C=3, feature_mean=1.0, seed=0)
    eta = 0.01
    chk = assert_bound_holds(p, "signsgd", hb.sign_head_growth(eta=eta, C=3, h=4), lr=eta, steps=30,
                             stochastic=True, noise_seeds=range(4))
    assert chk.n_seeds == 4 and chk.final.shape == (4,)
    # the first step moves every entry by exactly eta (no zero gradient entries): equality
    assert chk.value_ratio == pytest.approx(1.0, rel=1e-12)
    half = hb.sign_head_growth(eta=eta / 2, C=3, h=4)
    assert not check_bound(p, "signsgd", half, lr=eta, steps=30, stochastic=True, noise_seeds=range(4)).holds


def test_helper_input_errors():
    p, x0 = _ill_conditioned()
    with pytest.raises(ValueError, match="Bound"):
        check_bound(p, "gd", lambda q, s: 3.0, x0=x0)
    with pytest.raises(ValueError, match="expectation"):
        check_bound(p, "gd", hb.sgd_nonconvex(L2=100.0, delta=1.0, sigma2=1.0, eps=1.0), x0=x0)
    with pytest.raises(ValueError, match="not one float"):
        check_bound(p, "gd", hb.blockwise_gd_nonconvex(L_blocks=[1.0], delta=1.0, eps=0.1), x0=x0)
    with pytest.raises(ValueError, match="noise seeds"):
        check_bound(p, "sgd", hb.gd_nonconvex(L2=100.0, delta=1.0, eps=0.1), x0=x0, stochastic=True,
                    noise_seeds=[0])
    with pytest.raises(ValueError, match="x0 must have shape"):
        check_bound(p, "gd", hb.gd_nonconvex(L2=100.0, delta=1.0, eps=0.1), x0=torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        check_step_inequality(p, "gd", 0.01, lambda at, lr: np.zeros(3), x0=x0, steps=5)


def test_docstring_example_runs():
    """The example in heterosim.testing's docstring, as a user would paste it."""
    import heterosim.testing as ht
    src = ht.__doc__.split("Example, to paste into your own tests::")[1].split("A bound written")[0]
    code = "\n".join(line[4:] for line in src.strip("\n").splitlines())
    ns: dict = {}
    exec(compile(code, "<testing docstring>", "exec"), ns)
    ns["test_gd_reaches_eps_within_my_bound"]()
