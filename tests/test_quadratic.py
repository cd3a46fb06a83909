"""Block quadratics and their families carry exact ground truth."""
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import heterosim as hs
from heterosim.problems.quadratic import BlockQuadratic, haar_orthogonal

spectra_st = st.lists(
    st.lists(st.floats(0.01, 100.0, allow_nan=False), min_size=1, max_size=6),
    min_size=1, max_size=4)


@settings(max_examples=30, deadline=None)
@given(spectra=spectra_st, rotate=st.booleans(), seed=st.integers(0, 1000))
def test_spectra_are_what_was_asked(spectra, rotate, seed):
    p = BlockQuadratic.from_spectra(spectra, rotate=rotate, seed=seed)
    H = p.hessian()
    assert torch.allclose(H, H.T)
    for b, (idx, s) in enumerate(zip(p.blocks.slices(), spectra)):
        Hb = H[idx][:, idx]
        ev = torch.linalg.eigvalsh(Hb)
        np.testing.assert_allclose(ev.numpy(), np.sort(s), rtol=1e-9, atol=1e-9)
        assert math.isclose(float(p.L_blocks[b]), max(s)) and math.isclose(float(p.mu_blocks[b]), min(s))
    # off-diagonal blocks are zero
    mask = p.blocks.index[:, None] != p.blocks.index[None, :]
    assert float(H[mask].abs().sum()) == 0.0
    assert math.isclose(p.L2, float(torch.linalg.eigvalsh(H)[-1]), rel_tol=1e-9)


@settings(max_examples=20, deadline=None)
@given(spectra=spectra_st, seed=st.integers(0, 100))
def test_loss_grad_hessian_agree(spectra, seed):
    p = BlockQuadratic.from_spectra(spectra, rotate=True, seed=seed, x_star=None, f_star=1.5)
    X = p.initial_points([seed, seed + 1])
    H = p.hessian()
    E = X - p.x_star
    np.testing.assert_allclose(p.grad(X).numpy(), (E @ H).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(p.loss(X).numpy(), (0.5 * ((E @ H) * E).sum(1) + 1.5).numpy(), rtol=1e-12)
    assert torch.allclose(p.loss(p.x_star), torch.tensor([1.5], dtype=torch.float64))
    # autograd agrees with the closed-form gradient
    x = X[0].clone().requires_grad_(True)
    p.loss(x).sum().backward()
    assert torch.allclose(x.grad, p.grad(X[:1])[0], rtol=1e-10)


def test_haar_rotation_is_orthogonal_and_seeded():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    Q1, Q2 = haar_orthogonal(7, g1), haar_orthogonal(7, g2)
    assert torch.equal(Q1, Q2)
    assert torch.allclose(Q1 @ Q1.T, torch.eye(7, dtype=torch.float64), atol=1e-13)


def test_linf_exact_small_blocks_by_enumeration():
    p = BlockQuadratic.from_spectra([[1.0, 3.0, 9.0], [2.0, 5.0]], rotate=True, seed=4)
    assert p.Linf_kind == "exact"
    H = p.hessian()
    best = max(float(torch.tensor(u, dtype=torch.float64) @ H @ torch.tensor(u, dtype=torch.float64))
               for u in itertools.product([-1.0, 1.0], repeat=5))
    assert math.isclose(p.Linf, best, rel_tol=1e-12)
    q = BlockQuadratic.from_spectra([[1.0, 3.0], [2.0, 5.0]], rotate=False)
    assert q.Linf_kind == "exact" and math.isclose(q.Linf, 11.0)


def test_linf_upper_bound_for_large_blocks_is_valid():
    p = hs.problems.make("zhang_case", case=3)
    H = p.hessian()
    g = torch.Generator().manual_seed(0)
    U = torch.randint(0, 2, (2000, p.d), generator=g).to(torch.float64) * 2 - 1
    assert float(((U @ H) * U).sum(1).max()) <= p.Linf
    assert p.Linf <= float((p.blocks.sizes_tensor() * p.L_blocks).sum()) + 1e-9


def test_initial_point_assigns_eigen_coordinates_by_global_rank():
    """Cases 3 and 4 share the global spectrum: their initial errors in eigen-coordinates agree."""
    a, b = hs.problems.make("zhang_case", case=3, seed=1), hs.problems.make("zhang_case", case=4, seed=2)
    assert torch.equal(torch.sort(a.spectrum).values, torch.sort(b.spectrum).values)
    ca = a.eigenbasis().T @ (a.initial_point(7) - a.x_star)
    cb = b.eigenbasis().T @ (b.initial_point(7) - b.x_star)
    ia, ib = torch.argsort(a.spectrum, stable=True), torch.argsort(b.spectrum, stable=True)
    assert torch.allclose(ca[ia], cb[ib], atol=1e-12)


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_zhang_cases_have_condition_number_5000(case):
    p = hs.problems.make("zhang_case", case=case)
    ev = torch.linalg.eigvalsh(p.hessian())
    assert math.isclose(float(ev[-1] / ev[0]), 5000.0, rel_tol=1e-9)
    assert math.isclose(p.kappa, 5000.0, rel_tol=1e-9)


def test_zhang_heterogeneous_blocks_occupy_their_own_ranges():
    for case in (1, 3):
        p = hs.problems.make("zhang_case", case=case)
        for lo_block, hi_block in zip(p.block_spectra[:-1], p.block_spectra[1:]):
            assert float(lo_block.max()) <= float(hi_block.min()) + 1e-9
    for case in (2, 4):  # homogeneous: every block spans most of the range
        p = hs.problems.make("zhang_case", case=case)
        for s in p.block_spectra:
            assert float(s.max() / s.min()) > 500


def test_block_scale_family_knobs():
    p = hs.problems.make("block_scale", spread=2.0, gamma=0.5, n_blocks=5, block_size=6, kappa_block=10.0)
    s = 10.0 ** (2.0 * torch.arange(5, dtype=torch.float64) / 4)
    assert torch.allclose(p.L_blocks, 10.0 * s) and torch.allclose(p.mu_blocks, s)
    assert math.isclose(p.kappa, 10.0 * 100.0, rel_tol=1e-12)
    # gamma = 1/2: block losses at x0 are equal in expectation; with the shared eigen-coordinate
    # draw, the per-block loss is s_b * s_b^-1 * (sum_i a_i c_i^2)/2: compare with the formula
    x0 = p.initial_point(0)
    E = (x0 - p.x_star).unsqueeze(0)
    HE = p.grad(x0.unsqueeze(0))
    block_loss = 0.5 * p.blocks.sum(E * HE)[0]
    c = (p.eigenbasis().T @ E[0])
    expect = 0.5 * p.blocks.sum((p.spectrum * c * c).unsqueeze(0))[0]
    assert torch.allclose(block_loss, expect)


def test_hessian_only_equal_block_gradients_and_gradient_only_equal_hessians():
    p = hs.problems.make("hessian_only", spread=3.0, n_blocks=4, block_size=5)
    norms = p.blocks.norms(p.grad(p.initial_points([0, 3])))
    assert torch.allclose(norms, torch.ones_like(norms), rtol=1e-12)
    q = hs.problems.make("gradient_only", spread=2.0, n_blocks=4, block_size=5)
    Hs = q.block_hessians
    assert all(torch.equal(H, Hs[0]) for H in Hs)
    # the initial error of block b is s_b = 10^(2 b / 3) times that of the spread-0 problem
    flat = hs.problems.make("gradient_only", spread=0.0, n_blocks=4, block_size=5)
    e, e0 = q.initial_point(4) - q.x_star, flat.initial_point(4) - flat.x_star
    s = q.blocks.expand(10.0 ** (2.0 * torch.arange(4, dtype=torch.float64) / 3))
    assert torch.allclose(e, s * e0, rtol=1e-13)


def test_kunstner_diag_is_diag_of_class_frequencies():
    p = hs.problems.make("kunstner_diag", n_classes=6, h=3, alpha=1.0)
    pi = 1.0 / torch.arange(1, 7, dtype=torch.float64)
    pi = pi / pi.sum()
    assert torch.allclose(torch.diagonal(p.hessian()), pi.repeat_interleave(3))
    assert p.Linf_kind == "exact" and math.isclose(p.Linf, 3.0, rel_tol=1e-12)


def test_noise_oracle_is_seeded_unbiased_with_stated_variance():
    p = BlockQuadratic.from_spectra([[1.0, 2.0], [3.0, 4.0, 5.0]], sigma=[0.5, 2.0], seed=0)
    X = p.initial_points([0, 1])
    g1 = p.stochastic_grad(X, torch.Generator().manual_seed(3))
    g2 = p.stochastic_grad(X, torch.Generator().manual_seed(3))
    assert torch.equal(g1, g2)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([p.stochastic_grad(X[:1], gen)[0] for _ in range(4000)])
    noise = draws - p.grad(X[:1])[0]
    assert math.isclose(p.sigma2, 2 * 0.25 + 3 * 4.0)
    # mean within 4 standard errors, variance within 10%
    se = torch.tensor([0.5, 0.5, 2, 2, 2], dtype=torch.float64) / math.sqrt(4000)
    assert bool((noise.mean(0).abs() <= 4 * se).all())
    assert abs(float((noise ** 2).sum(1).mean()) / p.sigma2 - 1) < 0.1


@pytest.mark.parametrize("bad", [
    lambda: BlockQuadratic.from_spectra([[1.0, -2.0]]),
    lambda: BlockQuadratic.from_spectra([[1.0, 0.0]]),
    lambda: BlockQuadratic.from_spectra([[1.0], []]),
    lambda: BlockQuadratic.from_spectra([]),
    lambda: BlockQuadratic.from_spectra([[1.0, float("nan")]]),
    lambda: BlockQuadratic.from_spectra([[1.0, 2.0]], x_star=[0.0]),
    lambda: BlockQuadratic.from_spectra([[1.0, 2.0]], sigma=[-1.0]),
    lambda: hs.problems.make("no_such_problem"),
    lambda: hs.problems.make("zhang_case", case=5),
    lambda: hs.problems.make("block_scale", spread=-1.0),
    lambda: hs.problems.make("block_scale", n_blocks=0),
    lambda: hs.problems.make("zhang_case", case=1).grad(torch.zeros(3, 7, dtype=torch.float64)),
])
def test_bad_input_raises_valueerror(bad):
    with pytest.raises(ValueError):
        bad()


def test_valueerror_messages_say_what_is_allowed():
    with pytest.raises(ValueError, match="positive definite"):
        BlockQuadratic.from_spectra([[1.0, -2.0]])
    with pytest.raises(ValueError, match="registered problems"):
        hs.problems.make("nope")
    with pytest.raises(ValueError, match=r"\(B, 100\)"):
        hs.problems.make("zhang_case").loss(torch.zeros(2, 3, dtype=torch.float64))
