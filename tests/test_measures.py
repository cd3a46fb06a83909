"""Tests of heterosim.measures against references: hand computations, exact eigendecompositions,
matrix powers, finite differences, a slow per-block loop and proven bounds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from heterosim import measures as M
from heterosim.blocks import Blocks
from heterosim.problems.quadratic import BlockQuadratic

F64 = torch.float64
HYP = settings(deadline=None, max_examples=25, derandomize=True)


# --------------------------------------------------------------------------------------- helpers
def quadratic_loss(H: torch.Tensor):
    """x -> 1/2 x^T H x, whose Hessian is H everywhere."""
    return lambda x: 0.5 * x @ (H @ x)


def block_diagonal_part(H: torch.Tensor, blocks: Blocks) -> torch.Tensor:
    out = torch.zeros_like(H)
    for idx in blocks.slices():
        out[idx[:, None], idx] = H[idx[:, None], idx]
    return out


def rayleigh_moment(Hb: torch.Tensor, v: torch.Tensor, k: int) -> float:
    """v^T H_b^k v / ||v||^2 by an explicit matrix power."""
    return float(v @ torch.linalg.matrix_power(Hb, k) @ v / (v @ v))


class MLP(torch.nn.Module):
    def __init__(self, d_in=5, h=7, c=3):
        super().__init__()
        self.fc1 = torch.nn.Linear(d_in, h)
        self.fc2 = torch.nn.Linear(h, c)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyAttention(torch.nn.Module):
    """One head of plain-math self-attention, a LayerNorm and a linear head (mean-pooled)."""

    def __init__(self, e=4, c=3):
        super().__init__()
        self.qkv = torch.nn.Linear(e, 3 * e)
        self.ln = torch.nn.LayerNorm(e)
        self.head = torch.nn.Linear(e, c)

    def forward(self, x):                                   # x (B, T, e)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        return self.head(self.ln(x + att @ v).mean(1))


def model_problem(kind: str):
    torch.manual_seed(0)
    if kind == "mlp":
        model = MLP().to(F64)
        X = torch.randn(6, 5, dtype=F64)
    else:
        model = TinyAttention().to(F64)
        X = torch.randn(3, 4, 4, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 2][: X.shape[0]])
    loss_fn, x0, blocks = M.flatten_model(model, lambda fwd: torch.nn.functional.cross_entropy(fwd(X), y))
    return model, X, y, loss_fn, x0, blocks


# ------------------------------------------------------------------------- gradient statistics
def test_block_grad_norms_batch_matches_loop_on_noncontiguous_blocks():
    g = torch.Generator().manual_seed(1)
    G = torch.randn(4, 9, generator=g, dtype=F64)
    index = torch.tensor([2, 0, 1, 2, 0, 0, 1, 2, 2])
    blocks = Blocks.from_index(index)
    ref = torch.stack([G[:, index == b].norm(dim=1) for b in range(3)], dim=1)
    torch.testing.assert_close(M.block_grad_norms(G, blocks), ref, rtol=1e-14, atol=0)
    torch.testing.assert_close(M.block_grad_norms(G[0], [3, 3, 3]),
                               torch.stack([G[0, :3].norm(), G[0, 3:6].norm(), G[0, 6:].norm()]))


def _stats_by_hand(norms: np.ndarray, sizes: np.ndarray) -> dict:
    rms = norms / np.sqrt(sizes)
    n = len(rms)
    srt = np.sort(rms)
    gini = 2 * np.sum(np.arange(1, n + 1) * srt) / (n * srt.sum()) - (n + 1) / n   # sorted-rank formula
    return {"max_min_ratio": rms.max() / rms.min(), "std_log10_rms": np.std(np.log10(rms)),
            "cv_rms": np.std(rms) / np.mean(rms), "gini_rms": gini}


def test_model_gradient_statistics_equal_hand_computation_from_named_parameters():
    torch.manual_seed(3)
    model = TinyAttention().to(F64)
    model.unused = torch.nn.Parameter(torch.ones(2, dtype=F64))        # never used: grad stays None
    model.ln.weight.requires_grad_(False)                                # frozen: grad None
    X = torch.randn(2, 5, 4, dtype=F64)
    torch.nn.functional.cross_entropy(model(X), torch.tensor([0, 2])).backward()

    names, norms = M.block_grad_norms(model)
    with_grad = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    assert names == [n for n, _ in with_grad]
    assert "unused" not in names and "ln.weight" not in names
    ref_norms = np.array([float(torch.sqrt((p.grad ** 2).sum())) for _, p in with_grad])
    np.testing.assert_allclose(norms.numpy(), ref_norms, rtol=1e-13)

    sizes = np.array([p.numel() for _, p in with_grad])
    ref = _stats_by_hand(ref_norms, sizes)
    stats = M.model_grad_heterogeneity(model)
    for key, value in ref.items():
        assert stats[key] == pytest.approx(value, rel=1e-12), key
    flat = torch.cat([p.grad.flatten() for _, p in with_grad])
    phi = float(flat.abs().sum() ** 2 / (flat.numel() * (flat ** 2).sum()))
    assert stats["phi"] == pytest.approx(phi, rel=1e-12)
    assert stats["sizes"] == sizes.tolist()
    assert M.HEADLINE_STAT in stats


@HYP
@given(st.lists(st.tuples(st.floats(1e-3, 1e3), st.integers(1, 50)), min_size=2, max_size=8),
       st.floats(1e-3, 1e3), st.randoms(use_true_random=False))
def test_grad_heterogeneity_scale_and_permutation_invariant_and_bounded(pairs, c, rnd):
    norms = torch.tensor([p[0] for p in pairs], dtype=F64)
    sizes = [p[1] for p in pairs]
    base = M.grad_heterogeneity(norms, sizes)
    ref = _stats_by_hand(norms.numpy(), np.array(sizes))
    perm = list(range(len(sizes)))
    rnd.shuffle(perm)
    scaled = M.grad_heterogeneity(c * norms[perm], [sizes[i] for i in perm])
    for key in base:
        assert base[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-12), key
        assert scaled[key] == pytest.approx(base[key], rel=1e-9, abs=1e-12), key
    n = len(sizes)
    assert base["max_min_ratio"] >= 1.0
    assert -1e-12 <= base["gini_rms"] <= 1 - 1 / n + 1e-12
    assert base["cv_rms"] <= math.sqrt(n - 1) + 1e-12


@pytest.mark.parametrize("n,r", [(2, 1.0), (5, 2.0), (8, 3.0)])
def test_std_log10_rms_is_linear_in_decades_of_spread(n, r):
    """Scales log-uniform over r decades: std log10 = r sqrt((n + 1) / (12 (n - 1))) (module docstring)."""
    sizes = [3 + b for b in range(n)]
    rms = 10.0 ** (r * torch.arange(n, dtype=F64) / (n - 1))
    stats = M.grad_heterogeneity(rms * torch.tensor(sizes, dtype=F64).sqrt(), sizes)
    assert stats["std_log10_rms"] == pytest.approx(r * math.sqrt((n + 1) / (12 * (n - 1))), rel=1e-12)
    assert stats["max_min_ratio"] == pytest.approx(10.0 ** r, rel=1e-12)


def test_batched_statistics_equal_row_by_row_and_zero_block():
    norms = torch.tensor([[1.0, 2.0, 4.0], [3.0, 0.0, 1.0]], dtype=F64)
    out = M.grad_heterogeneity(norms, [1, 1, 1])
    for i in range(2):
        row = M.grad_heterogeneity(norms[i], [1, 1, 1])
        for key in row:
            assert float(out[key][i]) == pytest.approx(row[key]), key
    assert math.isinf(out["max_min_ratio"][1])          # a dead block: the ratio is infinite ...
    assert float(out["std_log10_rms"][1]) == pytest.approx(np.std(np.log10([3.0, 1.0])))   # ... and left out here
    for bad in ([0.0, 0.0, 0.0], [1.0, math.inf, 2.0], [1.0, math.nan, 2.0]):     # no gradient, or diverged
        assert all(math.isnan(v) for v in M.grad_heterogeneity(torch.tensor(bad, dtype=F64), [1, 1, 1]).values())


@HYP
@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=30).filter(lambda v: any(abs(a) > 1e-6 for a in v)),
       st.floats(1e-3, 1e3))
def test_gradient_density_bounds_and_scale_invariance(values, c):
    g = torch.tensor(values, dtype=F64)
    phi = float(M.gradient_density(g))
    d = len(values)
    assert 1 / d - 1e-12 <= phi <= 1 + 1e-12
    assert float(M.gradient_density(c * g)) == pytest.approx(phi, rel=1e-12)


def test_gradient_density_known_values():
    assert float(M.gradient_density(torch.full((7,), -2.0, dtype=F64))) == pytest.approx(1.0)
    assert float(M.gradient_density(torch.eye(6, dtype=F64)[2])) == pytest.approx(1 / 6)
    torch.testing.assert_close(M.gradient_density(torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=F64)),
                               torch.tensor([1.0, 0.5], dtype=F64))


# ------------------------------------------------------------------------------ flatten a model
def test_flatten_model_gives_the_models_loss_and_gradient():
    model, X, y, loss_fn, x0, blocks = model_problem("attention")
    names = [n for n, _ in model.named_parameters()]
    assert blocks.names == tuple(names)
    assert blocks.sizes == tuple(p.numel() for p in model.parameters())
    loss = torch.nn.functional.cross_entropy(model(X), y)
    loss.backward()
    assert loss_fn(x0).item() == pytest.approx(loss.item(), rel=1e-14)
    ref = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(torch.func.grad(loss_fn)(x0), ref, rtol=1e-12, atol=1e-14)
    sub_fn, sub_x0, sub_blocks = M.flatten_model(model, lambda fwd: torch.nn.functional.cross_entropy(fwd(X), y),
                                                 params=["head.weight"])
    assert sub_blocks.names == ("head.weight",) and sub_x0.numel() == model.head.weight.numel()
    torch.testing.assert_close(torch.func.grad(sub_fn)(sub_x0), model.head.weight.grad.flatten())


# ------------------------------------------------------------------------- block Hessian products
def test_block_hvp_on_coupled_quadratic_keeps_only_the_diagonal_blocks():
    g = torch.Generator().manual_seed(2)
    d = 11
    A = torch.randn(d, d, generator=g, dtype=F64)
    H = A + A.T                                           # dense, indefinite, strongly coupled
    x = torch.randn(d, generator=g, dtype=F64)
    V = torch.randn(3, d, generator=g, dtype=F64)
    for blocks in (Blocks.from_sizes([4, 2, 5]), Blocks.from_index([1, 0, 2, 1, 1, 0, 2, 2, 0, 1, 2])):
        ref = V @ block_diagonal_part(H, blocks)
        torch.testing.assert_close(M.block_hvp(quadratic_loss(H), x, blocks, V), ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(M.block_hvp(quadratic_loss(H), x, blocks, V[0]), ref[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(M.block_hvp(quadratic_loss(H), x, blocks, V, chunk_size=2), ref,
                                   rtol=1e-12, atol=1e-12)


def test_block_hvp_on_block_quadratic_problem_equals_H_b_v():
    p = BlockQuadratic.from_spectra([[1.0, 2.0, 3.0], [10.0, 20.0], [0.5, 0.7, 0.9, 1.1]], rotate=True, seed=4)
    V = torch.randn(2, p.d, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(M.block_hvp(M.problem_loss_fn(p), p.initial_point(0), p.blocks, V),
                               V @ p.hessian(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["mlp", "attention"])
def test_block_hvp_equals_central_finite_differences(kind):
    _, _, _, loss_fn, x0, blocks = model_problem(kind)
    x0 = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    v = torch.randn(x0.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
    u = M.block_hvp(loss_fn, x0, blocks, v)

    def grad(x):                                          # first-order autograd only
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(loss_fn(x), x)[0]

    h = 1e-4
    for idx in blocks.slices():
        e = torch.zeros_like(v)
        e[idx] = v[idx]
        fd = (grad(x0 + h * e) - grad(x0 - h * e))[idx] / (2 * h)
        torch.testing.assert_close(u[idx], fd, rtol=1e-6, atol=1e-7 * float(fd.abs().max() + 1))


# --------------------------------------------------------------------- Lanczos and quadrature
def _spectra_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    spectra = [0.5 + 2.5 * torch.rand(s, generator=g, dtype=F64) for s in (6, 9, 12)]
    return BlockQuadratic.from_spectra(spectra, rotate=True, seed=seed)


def test_block_top_eigenvalues_equal_exact_block_spectra():
    p = _spectra_problem(1)
    top = M.block_top_eigenvalues(M.problem_loss_fn(p), p.x_star, p.blocks, k=3, steps=30)
    exact = torch.stack([s.sort(descending=True).values[:3] for s in p.block_spectra])
    torch.testing.assert_close(top, exact, rtol=0, atol=1e-8)
    torch.testing.assert_close(top[:, 0], p.L_blocks, rtol=0, atol=1e-8)


def test_one_lanczos_step_gives_each_blocks_rayleigh_quotient():
    """steps=1 (no beta at all): the single Ritz value of block b is v_b^T H_bb v_b / ||v_b||^2
    for the seeded start vector v."""
    p = _spectra_problem(2)
    top = M.block_top_eigenvalues(M.problem_loss_fn(p), p.x_star, p.blocks, k=2, steps=1, seed=4)
    v, H = M.draw_probes(p.d, 1, seed=4)[0], p.hessian()
    rq = torch.stack([v[s] @ H[s][:, s] @ v[s] / (v[s] @ v[s]) for s in p.blocks.slices()])
    torch.testing.assert_close(top[:, 0], rq, rtol=1e-12, atol=0)
    assert bool(top[:, 1].isnan().all())  # one Ritz value per block: the second is padding
    nodes, weights = M.gauss_quadrature(torch.tensor([[2.0], [3.0]]), torch.zeros(2, 0))
    assert nodes.flatten().tolist() == [2.0, 3.0] and weights.flatten().tolist() == [1.0, 1.0]


def test_top_eigenvalue_converges_before_the_krylov_space_is_full_and_on_noncontiguous_blocks():
    g = torch.Generator().manual_seed(7)
    lam = torch.cat([torch.linspace(0.1, 1.0, 149, dtype=F64), torch.tensor([2.0], dtype=F64)])
    Q, _ = torch.linalg.qr(torch.randn(150, 150, generator=g, dtype=F64))
    Hbig = (Q * lam) @ Q.T
    small = torch.diag(torch.tensor([3.0, 1.0, 0.2], dtype=F64))
    index = torch.cat([torch.zeros(150, dtype=torch.long), torch.ones(3, dtype=torch.long)])
    perm = torch.randperm(153, generator=g)
    H = torch.block_diag(Hbig, small)[perm][:, perm]
    blocks = Blocks.from_index(index[perm])
    top = M.block_top_eigenvalues(quadratic_loss(H), torch.zeros(153, dtype=F64), blocks, k=2, steps=40)
    assert float(top[0, 0]) == pytest.approx(2.0, abs=1e-8)      # 40 steps < 150: gap 2.0 vs 1.0
    torch.testing.assert_close(top[1], torch.tensor([3.0, 1.0], dtype=F64), rtol=0, atol=1e-10)


@HYP
@given(st.integers(2, 7), st.lists(st.floats(0.1, 1.0), min_size=7, max_size=7), st.integers(0, 10 ** 6))
def test_lanczos_with_full_krylov_space_reproduces_the_spectrum(d, gaps, seed):
    lam = torch.cumsum(torch.tensor(gaps[:d], dtype=F64), 0) - 2.0       # distinct, gaps >= 0.1, indefinite
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    A = (Q * lam) @ Q.T
    v0 = torch.randn(d, generator=g, dtype=F64)
    alpha, beta, Qk = M.lanczos(lambda V: V @ A, v0, m=d + 3)
    assert alpha.shape == (d,) and Qk.shape == (d, d)                 # capped at the dimension
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    torch.testing.assert_close(Qk @ Qk.T, torch.eye(d, dtype=F64), rtol=0, atol=1e-10)
    torch.testing.assert_close(Qk @ A @ Qk.T, T, rtol=0, atol=1e-10)
    nodes, weights = M.gauss_quadrature(alpha, beta)
    torch.testing.assert_close(nodes, lam, rtol=0, atol=1e-8)
    torch.testing.assert_close(weights, (Q.T @ v0) ** 2 / (v0 @ v0), rtol=1e-6, atol=1e-10)


def test_lanczos_stops_on_an_invariant_subspace_without_spurious_ritz_values():
    """A block with 3 distinct eigenvalues: its Krylov space has dimension 3 whatever the steps."""
    lam = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 5.0, 5.0, 5.0, 5.0, 5.0], dtype=F64)
    p = BlockQuadratic.from_spectra([lam, torch.tensor([4.0, 6.0], dtype=F64)], rotate=True, seed=3)
    loss_fn = M.problem_loss_fn(p)
    top = M.block_top_eigenvalues(loss_fn, p.x_star, p.blocks, k=4, steps=10)
    torch.testing.assert_close(top[0, :3], torch.tensor([5.0, 2.0, 1.0], dtype=F64), rtol=0, atol=1e-10)
    assert math.isnan(float(top[0, 3])) and math.isnan(float(top[1, 2])) and math.isnan(float(top[1, 3]))
    res = M.block_slq(loss_fn, p.x_star, p.blocks, steps=10, probes=3, seed=1)
    assert res.steps.tolist() == [10, 2]
    w = res.weights[0]
    assert bool(((w > 0).sum(-1) == 3).all())                         # three nodes per probe, the rest padded
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=F64))
    valid = w > 0
    torch.testing.assert_close(torch.sort(res.nodes[0][valid].reshape(3, 3), -1).values,
                               torch.tensor([[1.0, 2.0, 5.0]] * 3, dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("steps", [6, 12])
def test_each_probe_gauss_rule_reproduces_rayleigh_moments(steps):
    """sum_i w_i theta_i^k = v_b^T H_b^k v_b / ||v_b||^2 for k < 2 m_b, m_b = min(steps, d_b)."""
    p = _spectra_problem(2)
    probes = 3
    res = M.block_slq(M.problem_loss_fn(p), p.x_star, p.blocks, steps=steps, probes=probes, seed=11,
                      probe="rademacher")
    V = M.draw_probes(p.d, probes, "rademacher", 11)
    for b, (idx, Hb) in enumerate(zip(p.blocks.slices(), p.block_hessians)):
        m = min(steps, len(idx))
        assert int(res.steps[b]) == m
        for j in range(probes):
            theta, w = res.nodes[b, j, :m], res.weights[b, j, :m]
            for k in range(2 * m):
                exact = rayleigh_moment(Hb, V[j, idx], k)
                assert float((w * theta ** k).sum()) == pytest.approx(exact, rel=1e-8), (b, j, k)


def test_probe_averaged_moments_within_three_standard_errors_of_normalised_traces():
    p = _spectra_problem(3)
    probes = 30
    res = M.block_slq(M.problem_loss_fn(p), p.x_star, p.blocks, steps=4, probes=probes, seed=5)
    for k in range(1, 7):
        est = res.moments(k)                                              # (n, P)
        for b, lam in enumerate(p.block_spectra):
            target = float((lam ** k).mean())
            se = float(est[b].std() / math.sqrt(probes))
            assert abs(float(est[b].mean()) - target) <= 3 * se, (k, b)


@pytest.mark.parametrize("steps", [40, 12])
def test_slq_density_is_close_to_the_exact_block_density_in_wasserstein1(steps):
    r"""Tolerance, per block with spectrum in [a, b] and m = steps Lanczos steps, P probes:
    * Gaussian probes give weights (u_i^T v)^2 / ||v||^2 ~ Dirichlet(1/2, ..., 1/2), so the probe
      CDF at t has variance 2 q (1 - q) / (d_b + 2) (q the exact CDF), and
      E W1(probe average, spectrum) <= (b - a) sqrt(1 / (2 (d_b + 2) P));
    * an m-point Gauss rule matches 2m - 1 moments, so by Jackson's theorem
      W1(rule, probe measure) <= 2 * pi (b - a) / (4 (2m)) = pi (b - a) / (4 m), 0 when m = d_b;
    * equal smoothing and cell averaging never increase W1; the trapezoid CDFs cost O(dx).
    We allow 3x the first (seeded draw) plus the second plus 2 dx."""
    g = torch.Generator().manual_seed(8)
    spectra = [1.0 + 2.0 * torch.rand(40, generator=g, dtype=F64), 3.0 + torch.rand(40, generator=g, dtype=F64)]
    p = BlockQuadratic.from_spectra(spectra, rotate=True, seed=8)
    P = 10
    res = M.block_slq(M.problem_loss_fn(p), p.x_star, p.blocks, steps=steps, probes=P, seed=2, sigma2=1e-3)
    exact = M.exact_block_density(p.block_spectra, res.grid, sigma2=1e-3)
    dx = float(res.grid[1] - res.grid[0])
    for b, lam in enumerate(p.block_spectra):
        span = float(lam.max() - lam.min())
        tol = 3 * span * math.sqrt(1 / (2 * (len(lam) + 2) * P)) + 2 * dx
        if steps < len(lam):
            tol += math.pi * span / (4 * steps)
        w1 = float(M.wasserstein1(res.densities[b], exact[b], res.grid))
        assert w1 <= tol, (b, w1, tol)
    # and the blocks are told apart: W1 between the two exact blocks is far larger
    assert float(M.wasserstein1(exact[0], exact[1], res.grid)) > 1.0


def test_batched_block_slq_equals_a_sequential_per_block_per_probe_loop():
    """The vmapped all-blocks, all-probes Lanczos against one Lanczos run per (block, probe) with a
    reverse-over-reverse autograd Hessian-vector product."""
    _, _, _, loss_fn, x0, blocks = model_problem("mlp")
    steps, probes = 5, 2
    res = M.block_slq(loss_fn, x0, blocks, steps=steps, probes=probes, seed=4)
    plain = M.block_slq(loss_fn, x0, blocks, steps=steps, probes=probes, seed=4, reorth=False, chunk_size=7)
    torch.testing.assert_close(plain.nodes, res.nodes, rtol=1e-7, atol=1e-9, equal_nan=True)
    V = M.draw_probes(x0.numel(), probes, "gaussian", 4)

    def hvp(u):
        x = x0.detach().requires_grad_(True)
        (gx,) = torch.autograd.grad(loss_fn(x), x, create_graph=True)
        return torch.autograd.grad(gx @ u, x)[0]

    for b, idx in enumerate(blocks.slices()):
        def matvec(W, idx=idx):
            out = []
            for w in W:
                u = torch.zeros_like(x0)
                u[idx] = w
                out.append(hvp(u)[idx])
            return torch.stack(out)

        for j in range(probes):
            alpha, beta, _ = M.lanczos(matvec, V[j, idx], steps)
            nodes, weights = M.gauss_quadrature(alpha, beta)
            m = alpha.numel()
            torch.testing.assert_close(res.nodes[b, j, :m], nodes, rtol=1e-8, atol=1e-10)
            torch.testing.assert_close(res.weights[b, j, :m], weights, rtol=1e-6, atol=1e-10)


def test_exact_block_eigenvalues_and_density_mass():
    p = _spectra_problem(4)
    eigs = M.exact_block_eigenvalues(p.hessian(), p.blocks)
    for e, s in zip(eigs, p.block_spectra):
        torch.testing.assert_close(e, s.sort().values, rtol=0, atol=1e-12)
    grid = M.spectrum_grid(p.spectrum, 1e-5, 4000)
    dens = M.exact_block_density(eigs, grid)
    torch.testing.assert_close(torch.trapezoid(dens, grid), torch.ones(3, dtype=F64), rtol=0, atol=1e-3)


# -------------------------------------------------------------------------------- JS divergence
def _gaussian_bump(grid, mu, s):
    return torch.exp(-((grid - mu) ** 2) / (2 * s * s))


def test_js_zero_on_identical_symmetric_and_ln2_on_disjoint_supports():
    grid = torch.linspace(0.0, 10.0, 2001, dtype=F64)
    p, q = _gaussian_bump(grid, 3.0, 0.5), _gaussian_bump(grid, 4.0, 0.7)
    assert float(M.js_divergence(p, 5.0 * p, grid)) == pytest.approx(0.0, abs=1e-14)   # normalised first
    assert float(M.js_divergence(p, q, grid)) == pytest.approx(float(M.js_divergence(q, p, grid)), abs=1e-15)
    far = _gaussian_bump(grid, 9.0, 0.1)
    near_zero = _gaussian_bump(grid, 1.0, 0.1)
    assert float(M.js_divergence(near_zero, far, grid)) == pytest.approx(M.LN2, rel=1e-9)
    assert float(M.js_distance(near_zero, far, grid)) == pytest.approx(math.sqrt(M.LN2), rel=1e-9)


def test_js_between_two_gaussians_matches_numerical_integral_of_the_definition():
    """Reference: scipy quad of 1/2 KL(p||m) + 1/2 KL(q||m) for two normal densities."""
    from scipy import integrate, stats

    pd, qd = stats.norm(0.0, 1.0), stats.norm(1.5, 2.0)

    def integrand(t):
        a, b = pd.pdf(t), qd.pdf(t)
        m = (a + b) / 2
        return 0.5 * (a * math.log(a / m) + b * math.log(b / m))

    ref = integrate.quad(integrand, -15, 20, limit=200)[0]
    grid = torch.linspace(-15.0, 20.0, 20001, dtype=F64)
    p = torch.from_numpy(pd.pdf(grid.numpy()))
    q = torch.from_numpy(qd.pdf(grid.numpy()))
    assert float(M.js_divergence(p, q, grid)) == pytest.approx(ref, rel=1e-6)


@HYP
@given(st.integers(0, 10 ** 6), st.integers(3, 40), st.floats(0.0, 0.9))
def test_js_invariants_on_random_densities(seed, G, zero_frac):
    g = torch.Generator().manual_seed(seed)
    grid = torch.sort(torch.rand(G, generator=g, dtype=F64)).values + torch.arange(G, dtype=F64)
    p = torch.rand(G, generator=g, dtype=F64) * (torch.rand(G, generator=g, dtype=F64) > zero_frac)
    q = torch.rand(G, generator=g, dtype=F64)
    p[0] = 1.0                                                          # never all zero
    js = float(M.js_divergence(p, q, grid))
    assert 0.0 <= js <= M.LN2
    assert js == pytest.approx(float(M.js_divergence(q, p, grid)), abs=1e-14)
    assert float(M.js_divergence(q, q, grid)) == pytest.approx(0.0, abs=1e-14)
    mean, mat = M.js0(torch.stack([p, q, 0.5 * p + q]), grid)
    torch.testing.assert_close(mat, mat.T)
    assert bool((torch.diagonal(mat) == 0).all()) and bool((mat <= math.sqrt(M.LN2) + 1e-15).all())
    assert mean == pytest.approx(float(mat[0, 1] + mat[0, 2] + mat[1, 2]) / 3)
    assert float(mat[0, 1]) == pytest.approx(math.sqrt(js), abs=1e-7)


def test_js0_larger_for_contiguous_log_spaced_blocks_than_interleaved():
    lam = torch.logspace(0, math.log10(5000), 100, dtype=F64)
    heterogeneous = [lam[25 * b: 25 * (b + 1)] for b in range(4)]
    homogeneous = [lam[b::4] for b in range(4)]
    grid = M.spectrum_grid(lam)
    het, mat = M.js0(M.exact_block_density(heterogeneous, grid), grid)
    hom, _ = M.js0(M.exact_block_density(homogeneous, grid), grid)
    assert hom < het <= math.sqrt(M.LN2)
    assert float(mat[0, 3]) == pytest.approx(math.sqrt(M.LN2), rel=1e-6)    # disjoint ranges
    het_div, _ = M.js0(M.exact_block_density(heterogeneous, grid), grid, kind="divergence")
    assert het_div <= M.LN2


def test_js0_orders_the_zhang_cases_exactly_and_by_slq():
    from heterosim import problems

    values = {}
    for case in (1, 2, 3, 4):
        p = problems.make("zhang_case", case=case)
        grid = M.spectrum_grid(p.spectrum)
        values[case] = M.js0(M.exact_block_density(p.block_spectra, grid), grid)[0]
    assert values[1] > values[2] and values[3] > values[4]
    slq = {}
    for case in (3, 4):
        p = problems.make("zhang_case", case=case)
        res = M.block_slq(M.problem_loss_fn(p), p.x_star, p.blocks, probes=2)
        slq[case] = M.js0(res.densities, res.grid)[0]
    assert slq[3] > slq[4]


def test_symlog_scale_resolves_small_blocks_that_a_linear_grid_merges():
    """Blocks A (1e-6..1e-5) and A' (1e-4..1e-3) differ by two decades, but next to a block B
    at 1..1e3 a linear grid puts both into its first cell: JS(A, A') ~ 0. In symlog
    coordinates they are disjoint (JS distance sqrt(ln 2)), and SLQ's symlog densities match
    the exact ones (eigen-decomposition) in JS0 and pair by pair."""
    spectra = [torch.logspace(-6, -5, 10, dtype=F64), torch.logspace(-4, -3, 10, dtype=F64),
               torch.logspace(0, 3, 10, dtype=F64)]
    p = BlockQuadratic.from_spectra(spectra, rotate=True, seed=3)
    lin_grid = M.spectrum_grid(p.spectrum)
    _, lin = M.js0(M.exact_block_density(spectra, lin_grid), lin_grid)
    assert float(lin[0, 1]) < 0.01                           # merged by the linear grid
    res = M.block_slq(M.problem_loss_fn(p), p.x_star, p.blocks, steps=10, probes=4, seed=5,
                      scale="symlog", sigma2=1e-4)
    assert res.scale == "symlog" and res.unit == pytest.approx(1e-8 * float(p.spectrum.max()), rel=1e-6)
    exact = M.exact_block_density([M.symlog(s, res.unit) for s in spectra], res.grid, sigma2=1e-4)
    js_exact, mat_exact = M.js0(exact, res.grid)
    js_slq, mat_slq = M.js0(res.densities, res.grid)
    assert float(mat_exact[0, 1]) == pytest.approx(math.sqrt(M.LN2), rel=1e-3)
    assert js_slq == pytest.approx(js_exact, abs=0.02)
    torch.testing.assert_close(mat_slq, mat_exact, rtol=0, atol=0.05)
    # symlog itself: odd, monotone, decades above the unit
    v = torch.tensor([-1e3, -1.0, 0.0, 1.0, 1e3], dtype=F64)
    torch.testing.assert_close(M.symlog(v, 1.0), torch.sign(v) * torch.log10(1 + v.abs()))
    with pytest.raises(ValueError, match="symlog unit"):
        M.symlog(v, 0.0)
    with pytest.raises(ValueError, match="unknown scale"):
        M.block_slq(M.problem_loss_fn(p), p.x_star, p.blocks, scale="log")


def test_wasserstein1_of_shifted_narrow_densities_is_the_shift():
    grid = torch.linspace(0.0, 10.0, 5001, dtype=F64)
    p, q = _gaussian_bump(grid, 2.0, 0.05), _gaussian_bump(grid, 6.5, 0.05)
    assert float(M.wasserstein1(p, q, grid)) == pytest.approx(4.5, rel=1e-6)
    assert float(M.wasserstein1(p, p, grid)) == 0.0


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call, match", [
    (lambda: M.block_grad_norms(torch.zeros(2, 5), [2, 2]), "covers d = 4"),
    (lambda: M.block_grad_norms(torch.zeros(2, 5)), "block partition is required"),
    (lambda: M.grad_heterogeneity(torch.tensor([1.0, -1.0]), [1, 1]), ">= 0"),
    (lambda: M.grad_heterogeneity(torch.tensor([1.0, 1.0]), [1]), "2 block norms"),
    (lambda: M.draw_probes(4, 2, "uniform"), "allowed: gaussian, rademacher"),
    (lambda: M.lanczos(lambda V: V, torch.ones(3), 0), "m must be >= 1"),
    (lambda: M.smoothed_density(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([0.0, 1.0]), 0.0), "sigma2"),
    (lambda: M.js_divergence(torch.ones(3), torch.ones(3), torch.tensor([0.0, 2.0, 1.0])), "strictly increasing"),
    (lambda: M.js_divergence(torch.ones(3), -torch.ones(3), torch.arange(3.0)), ">= 0"),
    (lambda: M.js_divergence(torch.zeros(3), torch.ones(3), torch.arange(3.0)), "integrates to 0"),
    (lambda: M.js0(torch.ones(1, 3), torch.arange(3.0)), "n >= 2"),
    (lambda: M.js0(torch.ones(2, 3), torch.arange(3.0), kind="kl"), "allowed: distance, divergence"),
    (lambda: M.block_hvp(lambda x: (x ** 2).sum(), torch.zeros(3), [3], torch.zeros(4)), r"shape \(3,\)"),
    (lambda: M.flatten_model(MLP(), lambda f: f(torch.zeros(1, 5)).sum(), params=["nope"]), "unknown parameter"),
])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
