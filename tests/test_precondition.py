"""L_inf (exact, SDP, closed-form bounds) and the optimal diagonal preconditioner,
against brute force, closed forms, eigenvalue certificates and the cvxpy reference."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import heterosim.precondition as pc
from heterosim.blocks import Blocks

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


def random_psd(d, seed, *, rank=None, ridge=0.0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, rank or d))
    return A @ A.T / (rank or d) + ridge * np.eye(d)


def block_diag(mats):
    d = sum(m.shape[0] for m in mats)
    H, i = np.zeros((d, d)), 0
    for m in mats:
        H[i:i + m.shape[0], i:i + m.shape[0]] = m
        i += m.shape[0]
    return H


def brute_force_linf(H):
    d = H.shape[0]
    return max(np.array(u) @ H @ np.array(u) for u in itertools.product([-1.0, 1.0], repeat=d))


# -------------------------------------------------------------------- L_inf
@given(st.integers(1, 7), st.integers(0, 10_000))
@SETTINGS
def test_linf_exact_matches_brute_force(d, seed):
    H = random_psd(d, seed)
    value, u = pc.linf_exact(H, return_vertex=True, chunk=8)   # small chunks: the loop is exercised
    assert value == pytest.approx(brute_force_linf(H), rel=1e-12)
    assert u[0] == 1.0 and u @ H @ u == pytest.approx(value, rel=1e-12)


@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=12))
@SETTINGS
def test_linf_exact_diagonal_is_trace(diag):
    H = np.diag(diag)
    assert pc.linf_exact(H) == pytest.approx(sum(diag), rel=1e-12, abs=1e-15)
    assert pc.linf_sdp(H) == pytest.approx(sum(diag), rel=1e-6, abs=1e-9)


def test_linf_rank_one_closed_form():
    """H = a a^T: L_inf = ||a||_1^2 = ||H||_{1,1}, and the SDP is tight."""
    a = np.array([1.0, -2.0, 0.5, 3.0, -0.25])
    H = np.outer(a, a)
    assert pc.linf_exact(H) == pytest.approx(np.abs(a).sum() ** 2)
    assert pc.linf_abs_sum(H) == pytest.approx(np.abs(a).sum() ** 2)
    assert pc.linf_sdp(H) == pytest.approx(np.abs(a).sum() ** 2, rel=1e-7)


@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(0, 10_000))
@SETTINGS
def test_linf_chain_exact_le_sdp_le_closed_forms(sizes, seed):
    """exact <= SDP <= min(sum_b d_b L_b, ||H||_{1,1}) on random block-diagonal psd H,
    and exact >= (2/pi) SDP (Nesterov's pi/2 theorem for psd H)."""
    mats = [random_psd(s, seed + 7 * i) for i, s in enumerate(sizes)]
    H = block_diag(mats)
    L_blocks = [np.linalg.eigvalsh(m)[-1] for m in mats]
    exact = pc.linf_exact(H)
    sdp, y = pc.linf_sdp(H, return_certificate=True)
    closed = min(pc.linf_sum_block(L_blocks, sizes), pc.linf_abs_sum(H))
    assert exact <= sdp * (1 + 1e-12)
    assert sdp <= closed * (1 + 1e-7)
    assert exact >= 2 / math.pi * sdp * (1 - 1e-9)
    # the certificate: diag(y) - H is psd, so sum(y) bounds tr(H X) for every feasible X
    assert np.linalg.eigvalsh(np.diag(y) - H)[0] >= 0
    assert y.sum() == pytest.approx(sdp)


@pytest.mark.parametrize("seed", [0, 1])
def test_linf_sdp_barrier_matches_cvxpy(seed):
    H = random_psd(7, seed, rank=3)
    assert pc.linf_sdp(H) == pytest.approx(pc.linf_sdp(H, method="cvxpy"), rel=1e-6)


def test_linf_sum_block_and_abs_sum_closed_form():
    assert pc.linf_sum_block([1.0, 4.0], [3, 2]) == 11.0
    assert pc.linf_sum_block(torch.tensor([2.0]), (5,)) == 10.0
    H = np.array([[2.0, -1.0], [-1.0, 3.0]])
    assert pc.linf_abs_sum(H) == 7.0
    assert pc.linf_exact(H) == 7.0        # u = (1, -1)


def test_linf_upper_uses_additivity_over_blocks():
    mats = [random_psd(s, 30 + s) for s in (6, 10, 9)]
    H = block_diag(mats)                  # d = 25 > 20: no whole-matrix enumeration
    value, kind = pc.linf_upper(H, blocks=[6, 10, 9])
    assert kind == "exact"
    assert value == pytest.approx(sum(pc.linf_exact(m) for m in mats), rel=1e-12)
    value_b, _ = pc.linf_upper(H, blocks=Blocks.from_sizes([6, 10, 9]))
    assert value_b == pytest.approx(value, rel=1e-12)
    # without the blocks: the SDP on the whole matrix, which is additive too
    whole, kind_whole = pc.linf_upper(H)
    assert kind_whole == "sdp"
    assert whole == pytest.approx(sum(pc.linf_sdp(m) for m in mats), rel=1e-6)
    assert value <= whole * (1 + 1e-12)


def test_linf_upper_ignores_blocks_of_a_coupled_matrix():
    H = random_psd(6, 3)                  # dense: sum_b d_b lambda_max(H_b) would not be valid
    value, kind = pc.linf_upper(H, blocks=[3, 3])
    assert kind == "exact" and value == pytest.approx(brute_force_linf(H))
    big = random_psd(30, 4)
    value, kind = pc.linf_upper(big, max_sdp_dim=10)
    assert kind in ("abs_sum", "d_L2")
    assert value == pytest.approx(min(pc.linf_abs_sum(big), 30 * np.linalg.eigvalsh(big)[-1]))


# ---------------------------------------------------------------- kappa*
def eig_certificate(H, D):
    s = 1.0 / np.sqrt(D)
    lam = np.linalg.eigvalsh(s[:, None] * H * s[None, :])
    return lam[0], lam[-1]


@given(st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=10))
@SETTINGS
def test_kappa_star_is_one_for_diagonal(diag):
    H = np.diag(diag)
    r = pc.optimal_diagonal_preconditioner(H)
    assert r.kappa_star == pytest.approx(1.0, abs=1e-12)
    assert r.kappa_solver == pytest.approx(1.0, rel=1e-4)   # the SDP itself finds it too
    lo, hi = eig_certificate(H, r.D)
    assert lo == pytest.approx(1.0, abs=1e-12) and hi == pytest.approx(1.0, abs=1e-12)


@given(st.integers(2, 9), st.integers(0, 10_000), st.floats(0.0, 3.0))
@SETTINGS
def test_kappa_star_bounded_by_kappa_H_with_certificate(d, seed, spread):
    """kappa* <= kappa(H) and <= kappa(Jacobi), certificate checked by eigenvalues;
    the solver's optimum agrees with the certified value; no random diagonal beats it."""
    rng = np.random.default_rng(seed)
    S = 10.0 ** rng.uniform(-spread, spread, d)          # badly scaled coordinates
    H = S[:, None] * random_psd(d, seed, ridge=0.05) * S[None, :]
    r = pc.optimal_diagonal_preconditioner(H)
    lam = np.linalg.eigvalsh(H)
    assert r.kappa_star <= lam[-1] / lam[0] * (1 + 1e-12)
    assert r.kappa_H == pytest.approx(lam[-1] / lam[0])
    lo, hi = eig_certificate(H, r.D)
    assert lo >= 1 - 1e-9 and hi <= r.kappa_star * (1 + 1e-9)
    assert r.verify(H) and pc.check_diagonal_certificate(H, r.D, r.kappa_star)
    jlo, jhi = eig_certificate(H, np.diag(H))
    assert r.kappa_star <= jhi / jlo * (1 + 1e-12)
    assert r.kappa_star == pytest.approx(r.kappa_solver, rel=1e-5)
    for _ in range(20):                                  # optimality against random scalings
        Dr = np.diag(H) * 10.0 ** rng.uniform(-0.5, 0.5, d)
        a, b = eig_certificate(H, Dr)
        assert b / a >= r.kappa_star * (1 - 1e-5)


@given(st.floats(0.1, 10.0), st.floats(0.1, 10.0), st.floats(-0.99, 0.99))
@SETTINGS
def test_kappa_star_2x2_closed_form(a, c, rho):
    """Forsythe & Straus (1955): Jacobi is optimal for 2x2, kappa* = (1 + |r|)/(1 - |r|)."""
    H = np.array([[a, rho * math.sqrt(a * c)], [rho * math.sqrt(a * c), c]])
    r = pc.optimal_diagonal_preconditioner(H)
    assert r.kappa_star == pytest.approx((1 + abs(rho)) / (1 - abs(rho)), rel=1e-9)


def test_kappa_star_invariant_under_diagonal_scaling():
    H = random_psd(8, 5, ridge=0.01)
    S = 10.0 ** np.linspace(-2, 2, 8)
    k1 = pc.optimal_diagonal_preconditioner(H).kappa_star
    k2 = pc.optimal_diagonal_preconditioner(S[:, None] * H * S[None, :]).kappa_star
    assert k2 == pytest.approx(k1, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_kappa_star_barrier_matches_cvxpy_and_bisection(seed):
    H = random_psd(5, 20 + seed, ridge=0.02)
    barrier = pc.optimal_diagonal_preconditioner(H).kappa_star
    sdp = pc.optimal_diagonal_preconditioner(H, method="cvxpy")
    bis = pc.optimal_diagonal_preconditioner(H, method="bisection", tol=1e-4)
    assert barrier == pytest.approx(sdp.kappa_star, rel=1e-6)
    assert barrier == pytest.approx(bis.kappa_star, rel=2e-4)
    assert bis.verify(H) and sdp.verify(H)


def test_kappa_star_blockwise_is_max_over_blocks():
    mats = [random_psd(s, 40 + s, ridge=0.05) for s in (4, 6, 5)]
    H = block_diag(mats)
    r = pc.optimal_diagonal_preconditioner(H, blocks=[4, 6, 5])
    per_block = [pc.optimal_diagonal_preconditioner(m).kappa_star for m in mats]
    assert r.kappa_star == pytest.approx(max(per_block), rel=1e-9)
    assert r.verify(H)
    whole = pc.optimal_diagonal_preconditioner(H)
    assert whole.kappa_star == pytest.approx(r.kappa_star, rel=1e-5)


def test_q4_rate_from_kappa_star_matches_preconditioned_gd():
    """GD preconditioned by D^-1 with eta = 2/(1 + kappa*) contracts f - f* exactly at
    ((kappa* - 1)/(kappa* + 1))^2 per step (the spectrum of D^-1/2 H D^-1/2 is [1, kappa*])."""
    from heterosim.bounds import optimal_diagonal_precond_rate
    rng = np.random.default_rng(8)
    S = 10.0 ** rng.uniform(-1, 1, 8)
    H = S[:, None] * random_psd(8, 8, ridge=0.05) * S[None, :]
    r = pc.optimal_diagonal_preconditioner(H)
    b = optimal_diagonal_precond_rate(kappa_star=r.kappa_star)
    x = rng.standard_normal(8)
    f = lambda v: 0.5 * v @ H @ v
    f0, fs = f(x), []
    for t in range(400):
        x = x - b.lr * (H @ x) / r.D
        fs.append(f(x))
        assert fs[-1] <= b.value(t + 1) * f0 * (1 + 1e-9)
    assert (fs[-1] / fs[-201]) ** (1 / 200) == pytest.approx(b.rate, rel=1e-3)


def test_linf_upper_prefers_exact_on_ties():
    assert pc.linf_upper(np.eye(3)) == (3.0, "exact")             # = abs_sum = d lambda_max
    value, kind = pc.linf_upper(np.diag([1.0, 2.0, 3.0]), blocks=[1, 2])
    assert (value, kind) == (6.0, "exact")


def test_linf_upper_reports_mixed_kinds():
    mats = [random_psd(5, 50), random_psd(24, 51)]
    value, kind = pc.linf_upper(block_diag(mats), blocks=[5, 24])
    assert kind == "exact+sdp"
    assert value == pytest.approx(pc.linf_exact(mats[0]) + pc.linf_sdp(mats[1]), rel=1e-9)


def test_kappa_star_fast_at_d64():
    import time
    H = random_psd(64, 6, ridge=0.01)
    t0 = time.perf_counter()
    r = pc.optimal_diagonal_preconditioner(H)
    v = pc.linf_sdp(H)
    assert time.perf_counter() - t0 < 10.0              # measured ~0.2 s
    assert r.verify(H) and pc.linf_exact(H[:12, :12]) <= v <= pc.linf_abs_sum(H)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda: pc.linf_exact(np.ones((2, 3))), "square"),
    (lambda: pc.linf_exact(np.array([[1.0, 2.0], [0.0, 1.0]])), "symmetric"),
    (lambda: pc.linf_exact(np.diag([1.0, -1.0])), "diag\\(H\\) >= 0"),
    (lambda: pc.linf_exact(np.eye(21)), "d <= 20"),
    (lambda: pc.linf_exact(np.array([[np.nan]])), "finite"),
    (lambda: pc.linf_sdp(np.eye(2), method="mosek"), "unknown method"),
    (lambda: pc.linf_sdp(np.eye(2), tol=0.0), "tol must be > 0"),
    (lambda: pc.linf_sum_block([1.0, 2.0], [1]), "one size per block"),
    (lambda: pc.linf_sum_block([1.0], [0]), "sizes must be >= 1"),
    (lambda: pc.linf_sum_block([-1.0], [1]), ">= 0"),
    (lambda: pc.linf_upper(np.eye(4), blocks=[2, 1]), "sum to d"),
    (lambda: pc.optimal_diagonal_preconditioner(np.diag([1.0, 0.0])), "positive definite"),
    (lambda: pc.optimal_diagonal_preconditioner(np.eye(2), method="newton"), "unknown method"),
    (lambda: pc.optimal_diagonal_preconditioner(np.eye(2), tol=2.0), "tol must be in"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
