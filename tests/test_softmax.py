"""Tests of heterosim.problems.softmax against references: torch.autograd, finite differences,
cvxpy, exact Hessians and eigenvalues, vertex enumeration, exhaustive minibatch enumeration,
and the counts of Kunstner et al. 2024's construction."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

import heterosim.problems as problems
from heterosim.problems.softmax import (BLOCKINGS, SoftmaxRegression, feature_group_bounds, group_sizes,
                                        kunstner, kunstner_data, max_sign_quadratic, synthetic,
                                        zipf_frequencies)

F64 = torch.float64
HYP = settings(deadline=None, max_examples=20, derandomize=True)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every tensor here is tiny: intra-op threads only add synchronisation, which on a
    busy 2-core machine made this file 5x slower. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------- helpers
def hetero(blocks="class", **kw) -> SoftmaxRegression:
    """A small, deliberately awkward instance: non-centred features, informative labels,
    three feature groups over two decades of scale, imbalanced classes."""
    args = dict(n=60, p=6, C=4, alpha=1.0, feature_mean=1.0, class_sep=2.0, feature_groups=3,
                scale_spread=2.0, ridge=1e-2, blocks=blocks, batch_size=7, seed=3)
    args.update(kw)
    return synthetic(**args)


def reference_loss(prob: SoftmaxRegression, x: torch.Tensor) -> torch.Tensor:
    """f(W) written with torch.nn.functional.cross_entropy, for one (d,) vector."""
    W = x.reshape(prob.C, prob.p)
    ce = torch.nn.functional.cross_entropy(prob.features @ W.T, prob.labels)
    return ce + prob.ridge / 2 * (W * W).sum()


def random_points(prob, B, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(B, prob.d, generator=g, dtype=F64)


def block_diag_upper(prob) -> torch.Tensor:
    """Diagonal matrix with L_b on block b's coordinates."""
    return torch.diag(prob.blocks.expand(prob.L_blocks))


def bohning_majorant(prob) -> torch.Tensor:
    """H_bar = 1/2 I_C (x) Sigma + ridge I: the Hessian bound every constant is derived from."""
    return 0.5 * torch.kron(torch.eye(prob.C, dtype=F64), prob.Sigma) + prob.ridge * torch.eye(prob.d, dtype=F64)


# ------------------------------------------------------------------------- oracle correctness
def test_loss_and_grad_match_autograd():
    prob = hetero()
    X = random_points(prob, 5, 3.0, seed=0)
    loss, grad = prob.loss_and_grad(X)
    for r in range(X.shape[0]):
        x = X[r].clone().requires_grad_(True)
        ref = reference_loss(prob, x)
        (g_ref,) = torch.autograd.grad(ref, x)
        assert loss[r].item() == pytest.approx(ref.item(), rel=1e-12, abs=1e-12)
        torch.testing.assert_close(grad[r], g_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(prob.loss(X), loss, rtol=0, atol=0)
    torch.testing.assert_close(prob.grad(X), grad, rtol=0, atol=0)


def test_grad_matches_central_differences():
    prob = hetero(ridge=0.0)
    x = random_points(prob, 1, 1.0, seed=1)[0]
    g = prob.grad(x)[0]
    gen = torch.Generator().manual_seed(2)
    h = 1e-5
    for _ in range(5):
        v = torch.randn(prob.d, generator=gen, dtype=F64)
        fd = (prob.loss(x + h * v) - prob.loss(x - h * v)).item() / (2 * h)
        assert fd == pytest.approx(float(g @ v), rel=1e-7, abs=1e-9)


def test_loss_is_stable_at_huge_logits():
    """logsumexp keeps the loss finite and exact where exp would overflow."""
    prob = hetero(ridge=0.0)
    x = 1e4 * random_points(prob, 1, 1.0, seed=4)[0]
    loss, grad = prob.loss_and_grad(x)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
    ref = reference_loss(prob, x)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)


def test_batched_rows_equal_single_rows():
    prob = hetero(blocks="class_feature")
    X = random_points(prob, 4, 2.0, seed=5)
    V = random_points(prob, 4, 1.0, seed=6)
    loss, grad = prob.loss_and_grad(X)
    hv, cl = prob.hvp(X, V), prob.class_losses(X)
    for r in range(4):
        l1, g1 = prob.loss_and_grad(X[r])
        torch.testing.assert_close(l1[0], loss[r], rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(g1[0], grad[r], rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(prob.hvp(X[r], V[r])[0], hv[r], rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(prob.class_losses(X[r])[0], cl[r], rtol=1e-14, atol=1e-14)


def test_hessian_at_and_hvp_match_autograd():
    prob = hetero()
    x = random_points(prob, 1, 1.5, seed=7)[0]
    H = prob.hessian_at(x)
    H_ref = torch.autograd.functional.hessian(lambda w: reference_loss(prob, w), x)
    torch.testing.assert_close(H, H_ref, rtol=1e-10, atol=1e-12)
    V = random_points(prob, 3, 1.0, seed=8)
    torch.testing.assert_close(prob.hvp(x.expand(3, -1), V), V @ H, rtol=1e-10, atol=1e-12)
    # mu_b = ridge: the Hessian is >= ridge I everywhere (f is convex plus the ridge)
    assert float(torch.linalg.eigvalsh(H)[0]) >= prob.ridge * (1 - 1e-9)
    torch.testing.assert_close(prob.mu_blocks, torch.full((prob.blocks.n,), prob.ridge, dtype=F64))
    with pytest.raises(ValueError, match="hessian_at"):
        prob.hessian()


def test_class_losses_match_per_sample_reference():
    prob = hetero()
    X = random_points(prob, 3, 1.0, seed=9)
    cl = prob.class_losses(X)
    for r in range(3):
        W = X[r].reshape(prob.C, prob.p)
        ce = torch.nn.functional.cross_entropy(prob.features @ W.T, prob.labels, reduction="none")
        for c in range(prob.C):
            assert cl[r, c].item() == pytest.approx(ce[prob.labels == c].mean().item(), rel=1e-12)
    # the data term is the frequency-weighted mean of the class losses
    data_term = prob.loss(X) - prob.ridge / 2 * (X * X).sum(1)
    torch.testing.assert_close((cl * prob.class_frequencies).sum(1), data_term, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("make", [
    lambda: synthetic(n=40, p=4, C=3, alpha=0.5, feature_mean=1.0, class_sep=1.5, ridge=1e-2, seed=1),
    lambda: kunstner(2, ridge=1e-2),  # separable data: the ridge makes f* attained
])
def test_f_star_matches_cvxpy_and_is_stationary(make):
    prob = make()
    f_cvx = prob.f_star_cvxpy()
    assert prob.f_star == pytest.approx(f_cvx, rel=1e-6, abs=1e-7)
    assert prob.f_star <= f_cvx + 1e-9  # L-BFGS is certified to 1e-15; cvxpy's interior point is looser
    g = prob.grad(prob.x_star)[0]
    assert float(g.norm()) <= 1e-8
    assert prob.f_star_kind == "lbfgs_certified"
    assert prob.f_star_gap_bound == pytest.approx(float(g.norm()) ** 2 / (2 * prob.ridge), rel=1e-6)
    assert prob.f_star_gap_bound <= 1e-12
    assert prob.loss(prob.x_star).item() == prob.f_star


# --------------------------------------------------------------------------- smoothness bounds
@pytest.mark.parametrize("kw", [dict(), dict(feature_mean=0.0, class_sep=0.0), dict(scale_spread=0.0)])
def test_feature_group_bounds_are_valid_and_cauchy_schwarz_beats_factor_G(kw):
    prob = hetero(**kw)
    Sigma, sizes = prob.Sigma, prob.group_sizes
    G = len(sizes)
    starts = [0, *itertools.accumulate(sizes)]
    lam_g = torch.tensor([float(torch.linalg.eigvalsh(Sigma[a:b, a:b])[-1]) for a, b in zip(starts, starts[1:])])
    d_g = torch.tensor(sizes, dtype=F64)
    for name, Lam in feature_group_bounds(Sigma, sizes).items():
        D = torch.diag(torch.repeat_interleave(Lam, torch.tensor(sizes)))
        assert float(torch.linalg.eigvalsh(D - Sigma)[0]) >= -1e-10 * float(Lam.max()), name
        if name == "cauchy_schwarz":
            assert float((d_g * Lam).sum()) <= G * float((d_g * lam_g).sum()) * (1 + 1e-12)


@pytest.mark.parametrize("blocks", BLOCKINGS)
@pytest.mark.parametrize("kw", [dict(), dict(feature_mean=0.0, class_sep=0.0)])
def test_block_constants_dominate_the_bohning_majorant(blocks, kw):
    """blockdiag(L_b I) - H_bar is PSD, and H_bar >= H(x): the chain the bound rests on."""
    prob = hetero(blocks=blocks, **kw)
    Hbar = bohning_majorant(prob)
    assert float(torch.linalg.eigvalsh(block_diag_upper(prob) - Hbar)[0]) >= -1e-10 * prob.L2
    assert prob.L2 == pytest.approx(float(torch.linalg.eigvalsh(Hbar)[-1]), rel=1e-12)
    for x in random_points(prob, 3, 2.0, seed=10):
        assert float(torch.linalg.eigvalsh(Hbar - prob.hessian_at(x))[0]) >= -1e-10 * prob.L2


def test_feature_blocking_picks_the_smallest_sum_and_records_it():
    prob = hetero(blocks="feature", feature_mean=0.0, class_sep=0.0)
    choices = feature_group_bounds(prob.Sigma, prob.group_sizes)
    d_g = torch.tensor(prob.group_sizes, dtype=F64)
    best = min(choices, key=lambda k: float((d_g * choices[k]).sum()))
    assert prob.L_blocks_kind == "bohning_" + best
    torch.testing.assert_close(prob.L_blocks, choices[best] / 2 + prob.ridge)
    # block g holds every class's coefficients on feature group g: C * d_g coordinates, not contiguous
    assert prob.blocks.sizes == tuple(prob.C * s for s in prob.group_sizes)
    assert prob.blocks.index[: prob.p].tolist() == torch.repeat_interleave(
        torch.arange(3), torch.tensor(prob.group_sizes)).tolist() == prob.blocks.index[prob.p: 2 * prob.p].tolist()


def sharpest_direction(prob, x) -> torch.Tensor:
    """The u maximising u^T H(x) u / sum_b L_b ||u_b||^2: D^{-1/2} times the top eigenvector of
    D^{-1/2} H(x) D^{-1/2}, D = blockdiag(L_b I). Along it a too-small L_b shows first."""
    d_isqrt = prob.blocks.expand(prob.L_blocks).rsqrt()
    M = d_isqrt[:, None] * prob.hessian_at(x) * d_isqrt[None, :]
    return d_isqrt * torch.linalg.eigh(M).eigenvectors[:, -1]


@pytest.mark.parametrize("blocks", BLOCKINGS)
@HYP
@given(seed=st.integers(0, 10 ** 6), C=st.sampled_from([2, 4]),
       x_scale=st.one_of(st.just(0.0), st.floats(0.0, 5.0)), u_scale=st.floats(1e-4, 10.0),
       spread=st.sampled_from([0.0, 1.0, 2.0]))
def test_separable_upper_bound_holds(blocks, seed, C, x_scale, u_scale, spread):
    """f(x+u) <= f(x) + <g,u> + 1/2 sum_b L_b ||u_b||^2 at random points, along a random
    direction, one supported on a single block, and the sharpest one, each at the drawn
    length and at length 1e-3. With C = 2 near x = 0 the softmax Hessian meets Boehning's
    bound (p_i = (1/2, 1/2)), so there the sharpest direction makes the check nearly tight."""
    prob = hetero(blocks=blocks, C=C, scale_spread=spread)
    x = random_points(prob, 1, x_scale, seed)
    f0, g = prob.loss_and_grad(x)
    u = random_points(prob, 1, 1.0, seed + 1)
    directions = [u, u * (prob.blocks.index == seed % prob.blocks.n), sharpest_direction(prob, x[0]).unsqueeze(0)]
    for v in directions:
        for length in (u_scale, 1e-3):
            w = length * v / v.norm()
            upper = f0 + (g * w).sum(1) + 0.5 * (prob.L_blocks * prob.blocks.sq_norms(w)).sum(1)
            assert float(prob.loss(x + w)) <= float(upper) + 1e-13 * (1 + abs(float(upper)))


@pytest.mark.parametrize("blocks", ["class", "single"])
def test_separable_bound_is_nearly_tight_at_the_origin_for_two_classes(blocks):
    """The flip side: at W = 0 with C = 2 the class-row constants (and L2) cannot be lowered by 1%."""
    prob = hetero(blocks=blocks, C=2)
    x = torch.zeros(prob.d, dtype=F64)
    u = 1e-3 * sharpest_direction(prob, x)
    f0, g = prob.loss_and_grad(x)
    curvature = 2 * (prob.loss(x + u) - f0 - (g * u).sum()) / (prob.L_blocks * prob.blocks.sq_norms(u)).sum()
    assert 0.99 < float(curvature) <= 1.0


@HYP
@given(seed=st.integers(0, 10 ** 6), x_scale=st.floats(0.0, 10.0))
def test_L2_bounds_the_hessian_spectrum(seed, x_scale):
    prob = hetero()
    x = random_points(prob, 1, x_scale, seed)[0]
    assert float(torch.linalg.eigvalsh(prob.hessian_at(x))[-1]) <= prob.L2 * (1 + 1e-12)


@HYP
@given(seed=st.integers(0, 10 ** 6), x_scale=st.floats(0.0, 10.0))
def test_Linf_bounds_u_H_u_on_sign_vectors(seed, x_scale):
    prob = hetero(p=20, C=5, feature_groups=4)  # p > 16: Linf from a closed-form bound
    x = random_points(prob, 1, x_scale, seed)[0]
    H = prob.hessian_at(x)
    gen = torch.Generator().manual_seed(seed)
    U = torch.randint(0, 2, (64, prob.d), generator=gen).to(F64) * 2 - 1
    assert float(((U @ H) * U).sum(1).max()) <= prob.Linf * (1 + 1e-12)
    assert prob.Linf_kind in ("bohning_abs_sum", "sum_dbLb")


def all_sign_vectors(d: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product((1.0, -1.0), repeat=d)), dtype=F64)


def test_Linf_is_exact_for_the_majorant_and_bounds_exact_vertex_maxima():
    """d = C p = 16: enumerate every vertex of the cube. Linf = max_u u^T H_bar u exactly,
    and Linf >= max_u u^T H(x) u at several points x."""
    prob = hetero(p=8, C=2, feature_groups=2)
    assert prob.Linf_kind == "bohning_sign_exact"
    U = all_sign_vectors(prob.d)
    Hbar = bohning_majorant(prob)
    assert prob.Linf == pytest.approx(float(((U @ Hbar) * U).sum(1).max()), rel=1e-12)
    for x in random_points(prob, 3, 2.0, seed=11):
        H = prob.hessian_at(x)
        assert float(((U @ H) * U).sum(1).max()) <= prob.Linf * (1 + 1e-12)
    # Linf never exceeds the simple bounds it improves on
    l1_sq = (prob.features.abs().sum(1) ** 2).mean()
    assert prob.Linf <= prob.C / 2 * float(l1_sq) + prob.ridge * prob.d + 1e-9
    assert prob.Linf <= float((prob.blocks.sizes_tensor() * prob.L_blocks).sum()) + 1e-9


def test_max_sign_quadratic_matches_enumeration():
    gen = torch.Generator().manual_seed(12)
    A = torch.randn(7, 7, generator=gen, dtype=F64)
    Sigma = A @ A.T
    V = all_sign_vectors(7)
    assert max_sign_quadratic(Sigma) == pytest.approx(float(((V @ Sigma) * V).sum(1).max()), rel=1e-14)


# ----------------------------------------------------------------------------- constructions
@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_kunstner_construction_counts(m):
    prob = kunstner(m)
    assert (prob.n, prob.C, prob.p, prob.d) == (m * 2 ** m, 2 ** m - 1, (m + 1) * 2 ** m,
                                                (2 ** m - 1) * (m + 1) * 2 ** m)
    expected = [2 ** (m - i) for i in range(m) for _ in range(2 ** i)]  # 2^i classes of 2^(m-i) samples
    assert prob.class_counts.tolist() == expected
    # every frequency group holds 2^m samples: half the classes hold 1/m of the data in 2 samples each
    assert sum(expected[2 ** (m - 1) - 1:]) == 2 ** m
    assert float(prob.features.min()) >= 0.0 and float(prob.features.max()) < 1.0
    assert prob.ridge == 1e-3 and prob.name == "kunstner_softmax"
    f1, y1 = kunstner_data(m, seed=0)
    f2, y2 = kunstner_data(m, seed=0)
    assert torch.equal(f1, f2) and torch.equal(y1, y2) and torch.equal(f1, prob.features)
    assert not torch.equal(kunstner_data(m, seed=1)[0], f1)


def test_labels_follow_zipf_frequencies():
    pi = zipf_frequencies(5, 1.0)
    ref = torch.tensor([1 / k for k in range(1, 6)], dtype=F64)
    torch.testing.assert_close(pi, ref / ref.sum(), rtol=1e-15, atol=0)
    torch.testing.assert_close(zipf_frequencies(4, 0.0), torch.full((4,), 0.25, dtype=F64))
    n = 20000
    prob = synthetic(n=n, p=2, C=5, alpha=1.0, seed=0)
    se = torch.sqrt(pi * (1 - pi) / n)
    assert bool(((prob.class_frequencies - pi).abs() <= 5 * se).all())
    assert prob.class_counts.sum().item() == n


def test_feature_scales_and_mean_are_applied():
    n = 4000
    prob = synthetic(n=n, p=6, C=3, feature_mean=1.0, feature_groups=3, feature_scales=[1.0, 0.1, 10.0], seed=2)
    s = torch.tensor([1.0, 1.0, 0.1, 0.1, 10.0, 10.0], dtype=F64)
    z = prob.features / s  # back to N(1, I)
    torch.testing.assert_close(z.mean(0), torch.ones(6, dtype=F64), rtol=0, atol=5 / math.sqrt(n))
    torch.testing.assert_close(z.std(0), torch.ones(6, dtype=F64), rtol=0, atol=5 / math.sqrt(n))
    spread = synthetic(n=10, p=6, C=3, feature_groups=3, scale_spread=2.0, seed=2)
    same = synthetic(n=10, p=6, C=3, feature_groups=3, feature_scales=[1.0, 0.1, 0.01], seed=2)
    torch.testing.assert_close(spread.features, same.features, rtol=1e-14, atol=0)
    assert group_sizes(7, 3) == (3, 2, 2)


def test_registry_builds_both_families():
    p = problems.make("softmax", n=30, p=3, C=3, blocks="feature", feature_groups=3)
    k = problems.make("kunstner_softmax", m=2, blocks="class_feature", feature_groups=4)
    assert isinstance(p, SoftmaxRegression) and isinstance(k, SoftmaxRegression)
    assert p.blocks.n == 3 and k.blocks.n == 3 * 4 and k.knobs["m"] == 2
    assert {"softmax", "kunstner_softmax"} <= set(problems.names())


def test_initial_point():
    prob = hetero()
    assert torch.equal(prob.initial_point(5), torch.zeros(prob.d, dtype=F64))
    noisy = hetero(init_scale=0.01, n=60, p=100, C=10)
    x0 = noisy.initial_point(1)
    assert torch.equal(x0, noisy.initial_point(1)) and not torch.equal(x0, noisy.initial_point(2))
    assert float(x0.std()) == pytest.approx(0.01, rel=0.1)  # 1000 draws: 5 standard errors of a std
    torch.testing.assert_close(noisy.initial_points([1, 2])[0], x0)


# --------------------------------------------------------------------------- stochastic oracle
def test_minibatch_mean_over_all_batches_is_the_full_gradient():
    """Exact unbiasedness: averaging the minibatch gradient over all C(n, b) batches."""
    prob = synthetic(n=7, p=3, C=3, feature_mean=1.0, class_sep=1.0, ridge=0.1, batch_size=3, seed=4)
    X = random_points(prob, 2, 1.0, seed=13)
    batches = list(itertools.combinations(range(prob.n), prob.batch_size))
    mean = sum(prob.minibatch_grad(X, torch.tensor(S)) for S in batches) / len(batches)
    torch.testing.assert_close(mean, prob.grad(X), rtol=1e-12, atol=1e-14)


def test_stochastic_grad_is_unbiased_and_deterministic():
    prob = hetero()
    X = random_points(prob, 2, 1.0, seed=14)
    gen = torch.Generator().manual_seed(0)
    K = 3000
    draws = torch.stack([prob.stochastic_grad(X, gen) for _ in range(K)])  # (K, 2, d)
    se = draws.std(0) / math.sqrt(K)
    # 6 standard errors per coordinate: a false alarm among 2 d = 48 coordinates has probability ~1e-7
    assert bool(((draws.mean(0) - prob.grad(X)).abs() <= 6 * se + 1e-12).all())
    # same seed, same draws; rows share one draw
    g1 = prob.stochastic_grad(X, torch.Generator().manual_seed(7))
    g2 = prob.stochastic_grad(X, torch.Generator().manual_seed(7))
    assert torch.equal(g1, g2)
    idx = torch.randperm(prob.n, generator=torch.Generator().manual_seed(7))[: prob.batch_size]
    torch.testing.assert_close(g1, prob.minibatch_grad(X, idx), rtol=0, atol=0)
    full = synthetic(n=20, p=3, C=3, batch_size=20, seed=1)
    x = random_points(full, 1, 1.0, seed=15)
    torch.testing.assert_close(full.stochastic_grad(x, torch.Generator().manual_seed(0)), full.grad(x),
                               rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda: synthetic(C=1), "C must be an integer >= 2"),
    (lambda: synthetic(n=0), "n must be"),
    (lambda: synthetic(alpha=-0.5), "alpha"),
    (lambda: synthetic(n=10, batch_size=0), "batch_size"),
    (lambda: synthetic(n=10, batch_size=11), "batch_size"),
    (lambda: synthetic(ridge=-1.0), "ridge"),
    (lambda: synthetic(ridge=float("nan")), "ridge"),
    (lambda: synthetic(blocks="rows"), "blocks must be one of .class., .feature., .class_feature., .single.; got .rows."),
    (lambda: synthetic(p=4, feature_groups=5), "feature_groups"),
    (lambda: synthetic(p=4, feature_groups=[2, 1]), "sum to p"),
    (lambda: synthetic(p=4, feature_groups=2, feature_scales=[1.0]), "feature_scales"),
    (lambda: synthetic(p=4, feature_groups=2, feature_scales=[1.0, -1.0]), "feature_scales"),
    (lambda: synthetic(feature_scales=[1.0], scale_spread=1.0), "not both"),
    (lambda: synthetic(init_scale=-1.0), "init_scale"),
    (lambda: kunstner(1), "m must be"),
    (lambda: SoftmaxRegression(torch.zeros(3, 2), torch.tensor([0, 1])), "length n"),
    (lambda: SoftmaxRegression(torch.zeros(3), torch.tensor([0, 1, 1])), r"\(n, p\)"),
    (lambda: SoftmaxRegression(torch.zeros(3, 2), torch.tensor([0, 1, 5]), C=3), "0..C-1"),
    (lambda: SoftmaxRegression(torch.zeros(3, 2), torch.tensor([0.0, 1.0, 1.0])), "integers"),
    (lambda: SoftmaxRegression(torch.zeros(3, 2), torch.tensor([0, 0, 0])), "C >= 2"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_batch_shapes_raise_value_error():
    prob = hetero()
    with pytest.raises(ValueError, match="expected a batch"):
        prob.loss(torch.zeros(2, prob.d + 1, dtype=F64))
    with pytest.raises(ValueError, match="shape of X"):
        prob.hvp(torch.zeros(2, prob.d, dtype=F64), torch.zeros(3, prob.d, dtype=F64))
    with pytest.raises(ValueError, match="one point"):
        prob.hessian_at(torch.zeros(2, prob.d, dtype=F64))
