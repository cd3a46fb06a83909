"""The bound functions of heterosim.bounds against hand-computed values and against
simulated iterates (plain torch loops and torch.optim.SGD, independent of the engine)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import heterosim.bounds as hb
from heterosim.precondition import linf_exact

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


# ----------------------------------------------------------------- helpers
def random_spd(d, kappa, seed, *, gap=False):
    """A rotated SPD matrix with spectrum exactly [1, kappa] (both ends present).
    With gap=True the interior eigenvalues sit in [2, kappa/2], so the two extreme
    modes dominate quickly and per-step contractions converge fast."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = (2.0, kappa / 2.0) if gap else (1.0, kappa)
    inner = lo + (hi - lo) * torch.rand(d - 2, generator=g, dtype=torch.float64)
    lam = torch.cat([torch.tensor([1.0, float(kappa)], dtype=torch.float64), inner])
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (Q * lam) @ Q.T, lam


def block_diag_spd(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    blocks = []
    for s in sizes:
        A = torch.randn(s, s, generator=g, dtype=torch.float64)
        blocks.append(A @ A.T / s + 0.1 * torch.eye(s, dtype=torch.float64))
    return torch.block_diag(*blocks)


# --------------------------------------------------------- closed-form values
def test_gd_nonconvex_closed_form():
    b = hb.gd_nonconvex(L2=2.0, delta=3.0, eps=0.1)
    assert b.iterations == pytest.approx(2 * 2 * 3 / 0.1 ** 2)          # 1200
    assert b.lr == 0.5 and b.metric == "grad_l2" and b.aggregate == "min"
    assert b.value(1200) == pytest.approx(0.1)
    assert b.value(300) == pytest.approx(math.sqrt(2 * 2 * 3 / 300))
    b2 = hb.gd_nonconvex(L2=2.0, delta=3.0, eps=0.1, eta=0.25)          # eta (1 - eta L/2) = 0.1875
    assert b2.iterations == pytest.approx(3.0 / 0.1875 / 0.01)          # 1600
    assert hb.gd_nonconvex(L2=2.0, delta=0.0, eps=0.1).iterations == 0.0


def test_signgd_and_steepest_linf_closed_form():
    b = hb.signgd_nonconvex(Linf=4.0, delta=2.0, eps=0.5)
    assert b.lr == pytest.approx(0.125)                                  # eps / Linf
    assert b.iterations == pytest.approx(2 * 4 * 2 / 0.25)               # 64
    assert b.value(64) == pytest.approx(2 / (0.125 * 64) + 0.125 * 4 / 2)
    assert b.aggregate == "mean" and b.metric == "grad_l1"
    # a step too large for eps: the floor eta Linf / 2 = 2 is above eps = 1
    assert hb.signgd_nonconvex(Linf=4.0, delta=2.0, eps=1.0, eta=1.0).iterations == math.inf
    s = hb.steepest_linf_nonconvex(Linf=4.0, delta=2.0, eps=0.5)
    assert s.iterations == pytest.approx(64.0) and s.lr == 0.25
    assert hb.steepest_linf_decrease(g_l1=3.0, Linf=2.0) == pytest.approx(9 / 4)
    assert hb.signgd_step_decrease(g_l1=3.0, Linf=2.0, eta=0.5) == pytest.approx(1.5 - 0.25)
    # the best constant sign step (eta = ||g||_1 / Linf) attains the steepest-descent decrease
    assert hb.signgd_step_decrease(g_l1=3.0, Linf=2.0, eta=1.5) == pytest.approx(9 / 4)


def test_block_decreases_closed_form():
    g2, L = torch.tensor([4.0, 1.0], dtype=torch.float64), torch.tensor([2.0, 1.0], dtype=torch.float64)
    assert float(hb.gd_step_decrease(g_block_sq=g2, L_blocks=L, eta=0.5)) == pytest.approx(0.5 * 0.5 * 4 + 0.5 * 0.75 * 1)
    per_block = hb.gd_step_decrease(g_block_sq=g2, L_blocks=L, eta=1.0 / L)
    assert float(per_block) == pytest.approx(4 / 4 + 1 / 2)
    assert float(hb.blockwise_gd_step_decrease(g_block_sq=g2, L_blocks=L)) == pytest.approx(1.5)
    batch = hb.gd_step_decrease(g_block_sq=torch.stack([g2, 2 * g2]), L_blocks=L,
                                eta=torch.tensor([[0.5], [0.25]], dtype=torch.float64))
    assert batch.shape == (2,)
    assert float(batch[1]) == pytest.approx(0.25 * (1 - 0.25) * 8 + 0.25 * (1 - 0.125) * 2)
    b = hb.blockwise_gd_nonconvex(L_blocks=[1.0, 4.0], delta=2.0, eps=0.5)
    assert b.iterations == pytest.approx(16.0) and b.lr == (1.0, 0.25) and b.metric == "grad_Linv"


def test_b5_helpers_closed_form():
    assert hb.gd_nonconvex_l1(L2=1.0, delta=1.0, eps=1.0, d=10).iterations == pytest.approx(20.0)
    assert hb.sign_vs_gd_ratio(Linf=5.0, d=10, L2=1.0) == pytest.approx(0.5)
    assert hb.sign_beats_gd(0.6, 5.0, 10, 1.0) and not hb.sign_beats_gd(0.4, 5.0, 10, 1.0)
    phis = torch.tensor([0.2, 0.7])
    assert hb.sign_beats_gd(phis, 5.0, 10, 1.0).tolist() == [False, True]
    assert hb.rho_H([1.0, 4.0], [3, 1], 4.0) == pytest.approx(7 / 16)
    # the B5 ratio of the two iteration bounds is the helper's ratio
    sign = hb.signgd_nonconvex(Linf=5.0, delta=1.0, eps=0.1).iterations
    gd = hb.gd_nonconvex_l1(L2=1.0, delta=1.0, eps=0.1, d=10).iterations
    assert sign / gd == pytest.approx(0.5)


def test_gradient_density_closed_form():
    assert float(hb.gradient_density(torch.ones(4))) == pytest.approx(1.0)
    assert float(hb.gradient_density(np.array([1.0, 0, 0, 0]))) == pytest.approx(0.25)
    assert float(hb.gradient_density([3.0, 4.0])) == pytest.approx(49 / 50)
    batch = hb.gradient_density(torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64))
    assert batch.shape == (2,) and batch[0] == pytest.approx(0.98) and torch.isnan(batch[1])


@given(st.integers(1, 30), st.integers(0, 10_000))
@SETTINGS
def test_gradient_density_range(d, seed):
    g = torch.randn(5, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    phi = hb.gradient_density(g)
    assert bool(((phi >= 1 / d - 1e-12) & (phi <= 1 + 1e-12)).all())


def test_stochastic_closed_form():
    b = hb.sgd_nonconvex(L2=1.0, delta=1.0, sigma2=1.0, eps=1.0)
    assert b.lr == pytest.approx(0.5)                                    # min(1/L, eps^2 / (2 L sigma^2))
    assert b.iterations == pytest.approx((2 / 0.5) / (1 - 0.5))          # 8
    assert b.value(8) == pytest.approx(1.0) and b.aggregate == "expected_mean"
    assert hb.sgd_nonconvex(L2=1.0, delta=1.0, sigma2=0.0, eps=1.0).iterations == pytest.approx(2.0)
    s = hb.signsgd_bernstein(L_vec=[1.0, 1.0, 2.0], sigma_vec=[0.5, 0.5, 0.0], delta=1.5, eps=1.0)
    A = (math.sqrt(4.0) * 2.0 + 2.0 * 1.0) ** 2                          # 36
    assert s.iterations == 36 and s.batch == 36 and s.lr == pytest.approx(1 / math.sqrt(4 * 36))
    assert s.value(36) == pytest.approx(1.0)
    k = hb.signsgd_bernstein(L_vec=[1.0, 1.0, 2.0], sigma_vec=[0.5, 0.5, 0.0], delta=1.5, K=9)
    assert k.eps == pytest.approx(math.sqrt(A / 9)) and k.lr == pytest.approx(1 / 6)


def test_quadratic_rates_closed_form():
    q = hb.gd_quadratic_rate(L=10.0, mu=1.0)
    assert q.rate == pytest.approx(0.81) and q.lr == 0.1 and q.metric == "subopt"
    q = hb.gd_quadratic_rate(L=10.0, mu=1.0, eps=1e-3)
    assert q.iterations == math.ceil(math.log(1e-3) / math.log(0.81))      # 33
    q2 = hb.gd_quadratic_rate(L=10.0, mu=1.0, step="2/(L+mu)")
    assert q2.rate == pytest.approx(9 / 11) and q2.lr == pytest.approx(2 / 11) and q2.metric == "dist"
    assert hb.gd_quadratic_rate(L=10.0, mu=1.0, step=0.3, eps=0.1).iterations == math.inf
    assert hb.gd_quadratic_rate(L=1.0, mu=1.0, eps=0.1).iterations == 1.0  # kappa = 1: one step
    q3 = hb.blockwise_gd_quadratic_rate(L_blocks=[10.0, 100.0], mu_blocks=[1.0, 50.0])
    assert q3.rate == pytest.approx(0.81) and q3.lr == (0.1, 0.01)
    p3 = hb.fixed_diagonal_precond_rate(H=np.diag([2.0, 8.0]), p=[1.0, 1.0])
    assert p3.rate == pytest.approx((3 / 5) ** 2) and p3.lr == pytest.approx(0.2)
    exact = hb.fixed_diagonal_precond_rate(H=np.diag([1.0, 100.0]), p=[1.0, 0.01], eps=0.5)
    assert exact.rate == pytest.approx(0.0, abs=1e-15) and exact.iterations == 1.0
    assert hb.zhang_adam_rate(kappa_blocks=[2.0, 10.0], r=2.0).rate == pytest.approx(0.95)
    low = hb.gd_lower_bound_rate(kappa=3.0, eps=0.01)
    assert low.rate == pytest.approx(0.25) and low.sense == "lower"
    assert low.holds(low.iterations + 5) and not low.holds(low.iterations - 1)
    q4 = hb.optimal_diagonal_precond_rate(kappa_star=3.0)
    assert q4.rate == pytest.approx(0.25) and q4.lr == pytest.approx(0.5)
    hbq = hb.heavy_ball_quadratic_rate(L=100.0, mu=1.0)
    assert hbq.rate == pytest.approx(9 / 11) and hbq.momentum == pytest.approx(81 / 121)
    assert hbq.lr == pytest.approx(4 / 121) and hbq.asymptotic


def test_bound_methods():
    b = hb.gd_nonconvex(L2=1.0, delta=1.0, eps=0.1)                     # 200 iterations
    assert b.holds(150) and b.holds(200) and not b.holds(201)
    assert b.tightness(50) == pytest.approx(0.25)
    row = b.as_dict()
    assert row["bound"] == "B1" and row["const_L2"] == 1.0 and row["iterations"] == pytest.approx(200)
    rate_only = hb.gd_quadratic_rate(L=2.0, mu=1.0)
    assert math.isnan(rate_only.iterations) and rate_only.value(3) == pytest.approx(0.25 ** 3)
    with pytest.raises(ValueError, match="no iteration count"):
        rate_only.holds(3)
    with pytest.raises(ValueError, match="T must be"):
        b.value(-1)
    # linear iterations are the first integer T with C r^T <= eps
    q = hb.gd_quadratic_rate(L=4.0, mu=1.0, eps=0.05, initial=2.0)
    T = int(q.iterations)
    assert q.value(T) <= 0.05 < q.value(T - 1)


def test_kunstner_closed_form_and_simulation():
    out = hb.kunstner_gd(pi=[0.5, 0.25], eta=1.0, t=2)
    np.testing.assert_allclose(out, [0.25, 0.5625])
    it = hb.kunstner_gd_iterations(pi=[0.5, 0.25], eta=1.0, eps=0.25)
    np.testing.assert_allclose(it, [2.0, math.log(0.25) / math.log(0.75)])
    # GD on f(W) = sum_k pi_k / 2 ||w_k||^2 (autograd) against the closed form
    g = torch.Generator().manual_seed(0)
    C, h, eta, T = 6, 3, 0.7, 25
    pi = torch.tensor([2.0 ** -k for k in range(C)], dtype=torch.float64)
    pi = pi / pi.sum()
    W0 = torch.randn(C, h, generator=g, dtype=torch.float64)
    W = W0.clone().requires_grad_(True)
    traj = [W0.clone()]
    for _ in range(T):
        loss = 0.5 * (pi[:, None] * W * W).sum()
        (grad,) = torch.autograd.grad(loss, W)
        with torch.no_grad():
            W -= eta * grad
        traj.append(W.detach().clone())
    pred = hb.kunstner_gd(pi=pi, eta=eta, t=np.arange(T + 1), w0=W0.numpy())
    np.testing.assert_allclose(torch.stack(traj).numpy(), pred, rtol=1e-12, atol=1e-15)


def test_kunstner_sign_against_simulation():
    w0 = torch.tensor([2.3, -0.7, 1.0, 0.0, -3.05], dtype=torch.float64)
    eta = 0.5
    w = w0.clone()
    for t in range(12):
        np.testing.assert_allclose(w.abs().numpy(), hb.kunstner_sign(eta=eta, t=t, w0=w0.numpy()),
                                   atol=1e-12)
        w = w - eta * torch.sign(w)          # the gradient of pi_k w^2 / 2 has sign(w) whatever pi_k


def test_head_growth_bound_and_equality():
    b = hb.sign_head_growth(eta=0.1, C=4, h=9)
    assert b.value(10) == pytest.approx(0.1 * 10 * 6)
    g = torch.Generator().manual_seed(1)
    W0 = torch.randn(4, 9, generator=g, dtype=torch.float64)
    W, m = W0.clone(), torch.zeros_like(W0)
    for t in range(1, 40):                     # Signum with random gradients: inside the bound
        m = 0.9 * m + torch.randn(4, 9, generator=g, dtype=torch.float64)
        W = W - 0.1 * torch.sign(m)
        assert float((W - W0).norm()) <= b.value(t) + 1e-12
    fixed = torch.sign(torch.randn(4, 9, generator=g, dtype=torch.float64))
    W = W0 - 0.1 * 7 * fixed                   # seven steps in a fixed direction: equality
    assert float((W - W0).norm()) == pytest.approx(b.value(7))


# ------------------------------------------- per-step certificates, simulated
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(0, 10_000),
       st.floats(0.2, 1.9))
@SETTINGS
def test_gd_per_step_certificate_on_block_quadratics(sizes, seed, c):
    """B1' holds at every step of GD on block-diagonal quadratics, for any eta < 2/L_2;
    with eta_b = 1/L_b (B4) as well."""
    H = block_diag_spd(sizes, seed)
    idx = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    L_blocks = torch.stack([torch.linalg.eigvalsh(H[idx == b][:, idx == b])[-1] for b in range(len(sizes))])
    L2 = float(L_blocks.max())
    x = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    f = lambda v: 0.5 * v @ H @ v
    for eta in (c / L2, 1.0 / L_blocks[idx]):
        y = x.clone()
        for _ in range(20):
            g = H @ y
            gsq = torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, idx, g * g)
            eta_b = eta if isinstance(eta, float) else 1.0 / L_blocks
            guaranteed = hb.gd_step_decrease(g_block_sq=gsq, L_blocks=L_blocks, eta=eta_b)
            y_new = y - eta * g
            assert float(f(y) - f(y_new)) >= float(guaranteed) - 1e-12 * (1 + float(f(y)))
            y = y_new


@given(st.integers(2, 8), st.integers(0, 10_000), st.floats(0.05, 2.0))
@SETTINGS
def test_sign_per_step_certificates(d, seed, c):
    """B2 and B3 per step, with the exact L_inf, on random psd quadratics."""
    g_ = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g_, dtype=torch.float64)
    H = A @ A.T / d
    Linf = linf_exact(H.numpy())
    x = torch.randn(d, generator=g_, dtype=torch.float64)
    f = lambda v: 0.5 * v @ H @ v
    eta = c * float((H @ x).abs().sum()) / Linf / 5.0
    y, z = x.clone(), x.clone()
    for _ in range(15):
        g = H @ y
        y_new = y - eta * torch.sign(g)
        bound = hb.signgd_step_decrease(g_l1=float(g.abs().sum()), Linf=Linf, eta=eta)
        assert float(f(y) - f(y_new)) >= bound - 1e-12 * (1 + float(f(y)))
        y = y_new
        gz = H @ z
        l1 = float(gz.abs().sum())
        z_new = z - (l1 / Linf) * torch.sign(gz)
        assert float(f(z) - f(z_new)) >= hb.steepest_linf_decrease(g_l1=l1, Linf=Linf) - 1e-12 * (1 + float(f(z)))
        z = z_new


@given(st.integers(2, 6), st.integers(0, 10_000), st.floats(0.01, 1.0))
@SETTINGS
def test_b1_and_b2_iteration_bounds_hold_on_simulated_runs(d, seed, rel_eps):
    """Measured first-hitting steps of GD (1/L_2) and SignGD (eps / L_inf) respect B1 and B2."""
    g_ = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g_, dtype=torch.float64)
    H = A @ A.T / d + 0.05 * torch.eye(d, dtype=torch.float64)
    x0 = torch.randn(d, generator=g_, dtype=torch.float64)
    delta = float(0.5 * x0 @ H @ x0)
    L2, Linf = float(torch.linalg.eigvalsh(H)[-1]), linf_exact(H.numpy())
    for bound, metric, step in (
        (hb.gd_nonconvex(L2=L2, delta=delta, eps=rel_eps * float((H @ x0).norm())),
         lambda g: float(g.norm()), lambda g, b: b.lr * g),
        (hb.signgd_nonconvex(Linf=Linf, delta=delta, eps=rel_eps * float((H @ x0).abs().sum())),
         lambda g: float(g.abs().sum()), lambda g, b: b.lr * torch.sign(g)),
    ):
        x, hit = x0.clone(), math.inf
        for t in range(int(bound.iterations) + 2):
            g = H @ x
            if metric(g) <= bound.eps:
                hit = t
                break
            x = x - step(g, bound)
        assert bound.holds(hit), (bound.name, hit, bound.iterations)


# --------------------------------------------- Q1-Q5 against simulated iterates
@pytest.mark.parametrize("step", ["1/L", "2/(L+mu)"])
def test_q1_rate_matches_gd_contraction(step):
    """Per-step contraction of GD on a rotated quadratic equals the Q1 rate to 1e-8,
    and the bound holds at every step."""
    kappa, d = 10.0, 12
    H, lam = random_spd(d, kappa, seed=3, gap=True)
    x_star = torch.zeros(d, dtype=torch.float64)   # x* = 0: no cancellation in x - x* at 1e-18 errors
    f = lambda v: 0.5 * (v - x_star) @ H @ (v - x_star)
    b = hb.gd_quadratic_rate(L=float(lam.max()), mu=float(lam.min()), step=step)
    metric = (lambda v: float(f(v))) if b.metric == "subopt" else (lambda v: float((v - x_star).norm()))
    x = x_star + torch.randn(d, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    m0, ms = metric(x), []
    for t in range(200):
        x = x - b.lr * (H @ (x - x_star))
        ms.append(metric(x))
        assert ms[-1] <= b.value(t + 1) * m0 * (1 + 1e-10)
    assert ms[-1] / ms[-2] == pytest.approx(b.rate, rel=1e-8)


def test_q2_blockwise_rate_matches_simulation():
    sizes, kappas = [5, 7], [4.0, 20.0]
    Hs, mus, Ls = [], [], []
    for i, (s, k) in enumerate(zip(sizes, kappas)):
        H, lam = random_spd(s, k, seed=10 + i, gap=True)
        scale = 10.0 ** i
        Hs.append(scale * H)
        mus.append(scale * 1.0)
        Ls.append(scale * k)
    H = torch.block_diag(*Hs)
    b = hb.blockwise_gd_quadratic_rate(L_blocks=Ls, mu_blocks=mus)
    eta = torch.cat([torch.full((s,), e, dtype=torch.float64) for s, e in zip(sizes, b.lr)])
    x = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = lambda v: float(0.5 * v @ H @ v)
    f0, fs = f(x), []
    for t in range(150):
        x = x - eta * (H @ x)
        fs.append(f(x))
        assert fs[-1] <= b.value(t + 1) * f0 * (1 + 1e-10)
    assert fs[-1] / fs[-2] == pytest.approx(b.rate, rel=1e-8)         # (1 - 1/20)^2


def test_q3_fixed_preconditioner_rate_matches_simulation():
    """Preconditioned GD x - eta P g: the exact rate from kappa(P^1/2 H P^1/2)."""
    d = 10
    H, _ = random_spd(d, 30.0, seed=7)
    p = torch.rand(d, generator=torch.Generator().manual_seed(8), dtype=torch.float64) + 0.1
    b = hb.fixed_diagonal_precond_rate(H=H, p=p)
    x = torch.randn(d, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    f = lambda v: float(0.5 * v @ H @ v)
    f0, fs = f(x), []
    for t in range(600):
        x = x - b.lr * p * (H @ x)
        fs.append(f(x))
        assert fs[-1] <= b.value(t + 1) * f0 * (1 + 1e-10)
    # the rate is attained asymptotically (the two extreme modes of M share it)
    est = (fs[-1] / fs[-201]) ** (1 / 200)
    assert est == pytest.approx(b.rate, rel=1e-3)


@pytest.mark.parametrize("kappa", [4.0, 100.0])
def test_q5_heavy_ball_rate_with_torch_sgd(kappa):
    """torch.optim.SGD(momentum) at Polyak's parameters: ||x_t - x*||^(1/t) -> r."""
    d = 10
    H, lam = random_spd(d, kappa, seed=11)
    b = hb.heavy_ball_quadratic_rate(L=float(lam.max()), mu=float(lam.min()))
    x = torch.nn.Parameter(torch.randn(d, generator=torch.Generator().manual_seed(12), dtype=torch.float64))
    opt = torch.optim.SGD([x], lr=b.lr, momentum=b.momentum)
    errs = [float(x.detach().norm())]
    T = int(100 * math.log(10) / -math.log(b.rate))   # r^T ~ 1e-100: ||x||^2 does not underflow
    for _ in range(T):
        opt.zero_grad()
        (0.5 * x @ H @ x).backward()
        opt.step()
        errs.append(float(x.detach().norm()))
    errs = np.array(errs)
    w = 20                                     # envelope over a window: the modes oscillate
    early, late = errs[T // 2 - w:T // 2].max(), errs[T - w:].max()
    est = (late / early) ** (1.0 / (T // 2))
    # the double root at the spectrum's ends adds a factor (1 + ct): at most 2^(2/T) here
    assert b.rate * 0.99 <= est <= b.rate * 1.01
    # and faster than the best plain-GD rate
    assert b.rate < hb.gd_quadratic_rate(L=float(lam.max()), mu=float(lam.min()), step="2/(L+mu)").rate


def test_q1_gd_lower_bound_attained_on_extreme_eigenvector():
    kappa = 25.0
    H, lam = random_spd(8, kappa, seed=13)
    evals, V = torch.linalg.eigh(H)
    low = hb.gd_lower_bound_rate(kappa=kappa)
    for eta in (0.5 / float(lam.max()), 2.0 / (1.0 + kappa), 1.5 / float(lam.max())):
        # the worse extreme eigenvector for this eta
        v = V[:, 0] if abs(1 - eta * evals[0]) >= abs(1 - eta * evals[-1]) else V[:, -1]
        f = lambda u: float(0.5 * u @ H @ u)
        x = v.clone()
        for _ in range(5):
            x_new = x - eta * (H @ x)
            assert f(x_new) >= low.rate * f(x) * (1 - 1e-10)
            x = x_new


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda: hb.gd_nonconvex(L2=0.0, delta=1.0, eps=0.1), "L2 must be > 0"),
    (lambda: hb.gd_nonconvex(L2=1.0, delta=-1.0, eps=0.1), "delta must be >= 0"),
    (lambda: hb.gd_nonconvex(L2=1.0, delta=1.0, eps=0.0), "eps must be > 0"),
    (lambda: hb.gd_nonconvex(L2=1.0, delta=1.0, eps=0.1, eta=2.5), "eta must be < 2/L2"),
    (lambda: hb.gd_nonconvex(L2=float("nan"), delta=1.0), "finite"),
    (lambda: hb.signgd_nonconvex(Linf=1.0, delta=1.0), "needs eps"),
    (lambda: hb.sgd_nonconvex(L2=1.0, delta=1.0, sigma2=1.0, eps=1.0, eta=2.0), "eta <= 1/L2"),
    (lambda: hb.sgd_nonconvex(L2=1.0, delta=1.0, sigma2=-1.0, eps=1.0), "sigma2 must be >= 0"),
    (lambda: hb.signsgd_bernstein(L_vec=[1.0], sigma_vec=[0.0], delta=1.0), "exactly one of eps"),
    (lambda: hb.signsgd_bernstein(L_vec=[1.0, -1.0], sigma_vec=[0.0, 0.0], delta=1.0, K=4), "L_vec"),
    (lambda: hb.blockwise_gd_nonconvex(L_blocks=[], delta=1.0), "non-empty"),
    (lambda: hb.gd_quadratic_rate(L=1.0, mu=2.0), "mu <= L"),
    (lambda: hb.gd_quadratic_rate(L=2.0, mu=1.0, step="1/mu"), "unknown step rule"),
    (lambda: hb.gd_quadratic_rate(L=2.0, mu=1.0, metric="grad_l1"), "metric must be one of"),
    (lambda: hb.blockwise_gd_quadratic_rate(L_blocks=[1.0, 2.0], mu_blocks=[1.0]), "same length"),
    (lambda: hb.fixed_diagonal_precond_rate(H=np.eye(2), p=[1.0]), "length d"),
    (lambda: hb.fixed_diagonal_precond_rate(H=np.array([[1.0, 2.0], [0.0, 1.0]]), p=[1.0, 1.0]), "symmetric"),
    (lambda: hb.fixed_diagonal_precond_rate(H=-np.eye(2), p=[1.0, 1.0]), "positive definite"),
    (lambda: hb.zhang_adam_rate(kappa_blocks=[2.0], r=0.5), "r must be >= 1"),
    (lambda: hb.optimal_diagonal_precond_rate(kappa_star=0.5), "kappa_star must be >= 1"),
    (lambda: hb.kunstner_gd(pi=[0.5, 0.5], eta=1.0, t=-1), "t must be integers"),
    (lambda: hb.kunstner_gd(pi=[0.5, 0.5], eta=1.0, t=1, w0=np.ones(3)), "one per class"),
    (lambda: hb.sign_head_growth(eta=0.0, C=2, h=2), "eta must be > 0"),
    (lambda: hb.gd_step_decrease(g_block_sq=[1.0], L_blocks=[0.0], eta=0.1), "L_blocks must be > 0"),
    (lambda: hb.rho_H([1.0, 2.0], [3], 2.0), "block sizes"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_moment_and_horizon_say_what_is_bounded():
    """B1, B3, B4, B5 and S1 state bounds on squared norms (moment 2; for min aggregates the power
    changes nothing); S2's value holds only after its K steps (horizon = K), and it reports the share
    of the noise term 2 ||sigma||_1 in sqrt(A)."""
    import heterosim.bounds as hb
    assert hb.gd_nonconvex(L2=1.0, delta=1.0, eps=0.1).moment == 2
    assert hb.signgd_nonconvex(Linf=1.0, delta=1.0, eps=0.1).moment == 1
    assert hb.sgd_nonconvex(L2=1.0, delta=1.0, sigma2=1.0, eps=0.5).moment == 2
    s2 = hb.signsgd_bernstein(L_vec=[1.0, 3.0], sigma_vec=[2.0, 2.0], delta=0.5, K=10)
    A = (2.0 * (0.5 + 0.5) + 2 * 4.0) ** 2
    assert s2.horizon == 10 and s2.constants_dict["noise_share"] == pytest.approx(8.0 / A ** 0.5)
    assert s2.as_dict()["horizon"] == 10 and s2.as_dict()["moment"] == 1
