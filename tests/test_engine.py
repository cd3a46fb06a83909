"""The batched engine against closed forms and against itself run one config at a time."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import heterosim as hs
from heterosim.engine import Target
from heterosim.problems.quadratic import BlockQuadratic


def _gd_closed_form(p, x0, eta, t):
    """x_t - x* = (I - eta H)^t (x_0 - x*), through the exact eigendecomposition."""
    V = p.eigenbasis()
    lam = p.spectrum
    c = V.T @ (x0 - p.x_star)
    return p.x_star + V @ ((1 - eta * lam) ** t * c)


@pytest.mark.parametrize("name", ["zhang_case", "block_scale"])
def test_gd_matches_closed_form(name):
    p = hs.problems.make(name)
    eta = 1.0 / p.L2
    res = hs.engine.run(p, "gd", [eta, 0.5 * eta], seeds=[3], steps=200, record="loss")
    x0 = p.initial_point(3)
    for i, lr in enumerate([eta, 0.5 * eta]):
        xt = _gd_closed_form(p, x0, lr, 200)
        assert float((res.x_final[i] - xt).abs().max()) <= 1e-10 * max(1.0, float(xt.abs().max()))
        # every recorded loss equals the closed form f_t - f* = 1/2 sum_i lam_i (1 - eta lam_i)^(2t) c_i^2
        c = p.eigenbasis().T @ (x0 - p.x_star)
        t = torch.arange(201, dtype=torch.float64).unsqueeze(1)
        f = 0.5 * (p.spectrum * (1 - lr * p.spectrum) ** (2 * t) * c ** 2).sum(1) + p.f_star
        np.testing.assert_allclose(res.losses[i], f.numpy(), rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
@pytest.mark.parametrize("opt", ["adam", "signum", "block_adam", "sgd_momentum"])
def test_batched_row_equals_config_run_alone(opt, fast):
    """A run's numbers do not depend on the batch it is in, to the bit (a BLAS product would
    round a batch of 1 differently from a batch of 6; the engine's oracle does not)."""
    p = hs.problems.make("block_scale", spread=1.5, seed=2)
    lrs, seeds = [1e-3, 1e-2, 3e-2], [0, 5]
    kw = dict(steps=150, record="loss,grad_l2,grad_l1,blocks", target=("grad_l2", 0.05, True), stop_early=False,
              fast=fast)
    res = hs.engine.run(p, opt, lrs, seeds, **kw)
    key = next(iter(res.hits))
    for i, (lr, s) in enumerate(zip(res.lrs, res.seeds)):
        alone = hs.engine.run(p, opt, [lr], [s], **kw)
        for m in ("loss", "grad_l2", "grad_l1", "blocks"):
            np.testing.assert_array_equal(res.curves[m][i], alone.curves[m][0])
        assert res.hits[key][i] == alone.hits[key][0]
    assert list(res.lrs) == [1e-3, 1e-3, 1e-2, 1e-2, 3e-2, 3e-2] and list(res.seeds) == [0, 5] * 3


def test_stochastic_rows_reproducible_and_equal_alone():
    p = BlockQuadratic.from_spectra([[1.0, 2.0, 4.0], [0.5, 8.0, 3.0]], sigma=0.3, seed=1)
    a = hs.engine.run(p, "sgd", [0.01, 0.05], [0, 1], steps=50, stochastic=True)
    b = hs.engine.run(p, "sgd", [0.01, 0.05], [0, 1], steps=50, stochastic=True)
    np.testing.assert_array_equal(a.losses, b.losses)
    alone = hs.engine.run(p, "sgd", [0.05], [1], steps=50, stochastic=True)
    np.testing.assert_allclose(a.losses[3], alone.losses[0], rtol=1e-13)
    det = hs.engine.run(p, "sgd", [0.05], [1], steps=50)
    assert not np.allclose(alone.losses[0], det.losses[0])  # the noise is really there


def _arrangements(draw_spectrum, sizes, perm_seed):
    """The same global spectrum split into blocks in two ways."""
    spec = np.asarray(draw_spectrum)
    rng = np.random.default_rng(perm_seed)
    perm = rng.permutation(len(spec))
    cuts = np.cumsum(sizes)[:-1]
    return [list(b) for b in np.split(spec, cuts)], [list(b) for b in np.split(spec[perm], cuts)]


@settings(max_examples=15, deadline=None)
@given(spec=st.lists(st.floats(0.1, 10.0), min_size=6, max_size=12, unique=True),
       perm_seed=st.integers(0, 100), rot_seed=st.integers(0, 100))
def test_gd_is_blind_to_block_arrangement(spec, perm_seed, rot_seed):
    d = len(spec)
    sizes = [d // 3, d // 3, d - 2 * (d // 3)]
    A, B = _arrangements(spec, sizes, perm_seed)
    pa = BlockQuadratic.from_spectra(A, rotate=True, seed=rot_seed)
    pb = BlockQuadratic.from_spectra(B, rotate=True, seed=rot_seed + 1)
    eta = 1.0 / max(spec)
    ra = hs.engine.run(pa, "gd", [eta, 1.5 * eta], steps=60, record="loss,grad_l2")
    rb = hs.engine.run(pb, "gd", [eta, 1.5 * eta], steps=60, record="loss,grad_l2")
    # equal up to rounding, which is relative to the starting values (x* != 0)
    np.testing.assert_allclose(ra.losses, rb.losses, rtol=1e-9, atol=1e-12 * ra.losses[:, :1].max())
    np.testing.assert_allclose(ra.grad_l2s, rb.grad_l2s, rtol=1e-9, atol=1e-12 * ra.grad_l2s[:, :1].max())


def test_zhang_cases_3_and_4_same_gd_curve_but_not_for_block_and_adaptive_rules():
    a, b = hs.problems.make("zhang_case", case=3), hs.problems.make("zhang_case", case=4)
    lr = 1.0 / a.L2
    ra = hs.engine.run(a, "gd", [lr], steps=300, record="loss")
    rb = hs.engine.run(b, "gd", [lr], steps=300, record="loss")
    np.testing.assert_allclose(ra.losses, rb.losses, rtol=1e-10)
    for opt, lr in (("block_adam", 1e-2), ("block_normalized_gd", 1e-2), ("adam", 1e-2), ("signsgd", 1e-3)):
        ra = hs.engine.run(a, opt, [lr], steps=100, record="loss")
        rb = hs.engine.run(b, opt, [lr], steps=100, record="loss")
        assert np.abs(ra.losses[0, -1] / rb.losses[0, -1] - 1) > 1e-3, opt


def test_kunstner_diag_gd_closed_form():
    p = hs.problems.make("kunstner_diag", n_classes=8, h=3, alpha=1.2)
    eta = 0.7 / p.L2
    res = hs.engine.run(p, "gd", [eta], [4], steps=250, record="none")
    pi = p.blocks.expand(p.L_blocks)  # L_b = pi_k for the diagonal model
    w0 = p.initial_point(4)
    np.testing.assert_allclose(res.x_final[0].numpy(), ((1 - eta * pi) ** 250 * w0).numpy(), rtol=1e-10)


def test_iterations_to_matches_brute_force_and_target_tracking():
    p = hs.problems.make("block_scale", spread=1.0)
    lrs = hs.engine.lr_grid(1e-3, 1e-1, num=5)
    res = hs.engine.run(p, "adam", lrs, [0, 1], steps=400, record="grad_l2,subopt")
    T = res.iterations_to(1e-3, "grad_l2", relative=True)
    g = res.grad_l2s
    for i in range(res.B):
        below = np.nonzero(g[i] <= 1e-3 * g[i, 0])[0]
        assert T[i] == (below[0] if below.size else np.inf)
    tracked = hs.engine.run(p, "adam", lrs, [0, 1], steps=400, record="none",
                            target=("grad_l2", 1e-3, True), stop_early=False)
    np.testing.assert_array_equal(tracked.iterations_to(1e-3, "grad_l2", relative=True), T)
    Ts = res.iterations_to(1e-2, "subopt")
    sub = res.subopts
    for i in range(res.B):
        below = np.nonzero(sub[i] <= 1e-2)[0]
        assert Ts[i] == (below[0] if below.size else np.inf)


def test_early_exit_when_all_rows_hit():
    p = hs.problems.make("block_scale", spread=0.0)
    res = hs.engine.run(p, "gd", [1.0 / p.L2], steps=5000, record="none", target=("subopt", 1e-6, True))
    T = res.iterations_to(1e-6, "subopt", relative=True)[0]
    assert math.isfinite(T) and T <= res.steps_run < T + 8 < 5000


def test_divergence_is_recorded_and_frozen_without_crashing_the_batch():
    p = hs.problems.make("block_scale", spread=1.0)
    lrs = [0.5 / p.L2, 10.0 / p.L2]  # the second diverges: eta L > 2
    res = hs.engine.run(p, "gd", lrs, steps=200, record="loss")
    assert list(res.diverged) == [False, True]
    k = res.diverged_at[1]
    assert 0 < k < 200 and np.isnan(res.losses[1, k:]).all() and np.isfinite(res.losses[1, :k]).all()
    assert np.isfinite(res.x_final[1]).all()  # frozen at its last finite iterate
    assert np.isinf(res.iterations_to(1e-3, "loss")[1])
    # the healthy row equals its run alone
    alone = hs.engine.run(p, "gd", lrs[:1], steps=200, record="loss")
    np.testing.assert_allclose(res.losses[0], alone.losses[0], rtol=1e-13)


@pytest.mark.parametrize("fast", [True, False])
def test_a_noisy_run_started_at_the_minimiser_is_not_diverged(fast):
    """At x* the gap f_0 - f* is 0: the divergence test floors it (1 + |f*| here, every row
    starting at x*), so noise keeps the run alive while a blow-up is still caught."""
    p = BlockQuadratic.from_spectra([[1.0, 2.0], [3.0, 4.0]], sigma=0.5, seed=0, f_star=2.0)
    lrs = [0.05, 5.0]  # stable, and eta L = 20: diverges
    res = hs.engine.run(p, "sgd", lrs, [0, 1], steps=300, stochastic=True, x0=p.x_star, record="subopt",
                        fast=fast)
    assert list(res.diverged) == [False, False, True, True]
    # the stable rows wander at the noise level: SGD's stationary gap, in closed form
    # E[f - f*] = sum_i eta sigma^2 / (2 (2 - eta lambda_i)) (additive noise, eigenvalues 1..4)
    eta, lam = 0.05, np.array([1.0, 2.0, 3.0, 4.0])
    stationary = float((eta * 0.25 / (2 * (2 - eta * lam))).sum())
    gap = res.subopts[:2, 100:].mean()
    assert gap == pytest.approx(stationary, rel=0.4)
    # the floor can be set: a tiny one makes the first noisy step count as a divergence
    tight = hs.engine.run(p, "sgd", lrs[:1], [0], steps=5, stochastic=True, x0=p.x_star, record="none",
                          diverge_floor=1e-12, diverge_factor=2.0, fast=fast)
    assert bool(tight.diverged[0])
    with pytest.raises(ValueError, match="diverge_floor"):
        hs.engine.run(p, "sgd", lrs, steps=2, diverge_floor=0.0)


def test_tune_finds_the_grid_argmin_and_flags_edges():
    p = hs.problems.make("block_scale", spread=1.0)
    grid = hs.engine.lr_grid(1e-4, 1.0, per_decade=2)
    best = hs.engine.tune(p, "gd", eps=1e-4, metric="subopt", relative=True, lrs=grid, steps=3000)
    res = hs.engine.run(p, "gd", best.lrs, steps=3000, record="subopt")
    T = res.iterations_to(1e-4, "subopt", relative=True)
    fin = np.isfinite(best.Ts)
    np.testing.assert_array_equal(T[fin], best.Ts[fin])  # exact where measured to the end
    assert (T[~fin] > best.T).all()                      # pruned: certainly slower than the best
    assert best.T == T.min() and best.lr == best.lrs[np.argmin(T)]
    assert not best.edge and len(best.lrs) > len(grid)  # refined around an interior best
    # GD's best step lies near 2/(L + mu): the tuned lr is within the grid spacing of it
    assert 0.3 < best.lr * (p.L2 + p.mu) / 2 < 1.5
    edge = hs.engine.tune(p, "gd", eps=1e-4, metric="subopt", relative=True, lrs=grid[:3], steps=3000)
    assert edge.edge and edge.lr == grid[2]


def test_record_every_and_log_grid():
    p = hs.problems.make("block_scale", spread=0.5)
    full = hs.engine.run(p, "adam", [1e-2], steps=300, record="loss")
    every = hs.engine.run(p, "adam", [1e-2], steps=300, record="loss", record_every=7)
    assert every.record_steps[-1] == 300 and every.record_steps[1] == 7
    np.testing.assert_allclose(every.losses[0], full.losses[0, every.record_steps], rtol=1e-13)
    log = hs.engine.run(p, "adam", [1e-2], steps=300, record="loss", record_every="log")
    np.testing.assert_allclose(log.losses[0], full.losses[0, log.record_steps], rtol=1e-13)
    # on a sparse grid iterations_to is the first recorded step below eps: an upper bound on T
    T_full = full.iterations_to(1e-1, "loss", relative=True)
    T_every = every.iterations_to(1e-1, "loss", relative=True)
    assert math.isfinite(T_full[0])
    assert T_full[0] <= T_every[0] < T_full[0] + 7


def test_x0_shapes():
    p = hs.problems.make("block_scale", spread=0.5, n_blocks=2, block_size=3)
    x0 = torch.ones(6, dtype=torch.float64)
    r = hs.engine.run(p, "gd", [0.01, 0.02], steps=1, x0=x0, record="loss")
    np.testing.assert_allclose(r.losses[:, 0], p.loss(x0).item())
    X0 = torch.stack([x0, 2 * x0])
    r = hs.engine.run(p, "gd", [0.01, 0.02], steps=1, x0=X0, record="loss")
    np.testing.assert_allclose(r.losses[:, 0], p.loss(X0).numpy())


@pytest.mark.parametrize("bad", [
    lambda p: hs.engine.run(p, "gd", [0.0], steps=5),
    lambda p: hs.engine.run(p, "gd", [-1e-3], steps=5),
    lambda p: hs.engine.run(p, "gd", [], steps=5),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=-1),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=5, record="loss,bogus"),
    lambda p: hs.engine.run(p, "nope", [1e-3], steps=5),
    lambda p: hs.engine.run(p, "gd", [1e-3, 1e-2], steps=5, x0=torch.zeros(3, p.d)),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=5, x0=torch.zeros(p.d + 1)),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=5, stochastic=True),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=5).iterations_to(0.0),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=5).iterations_to(1e-3, "grad_linf"),
    lambda p: hs.engine.run(p, "gd", [1e-3], steps=5, record="loss").iterations_to(1e-3, "grad_l2"),
    lambda p: hs.engine.tune(p, "gd", eps=-1.0),
    lambda p: Target("grad_l2", float("nan")),
    lambda p: hs.engine.lr_grid(1.0, 0.1),
])
def test_bad_input_raises_valueerror(bad):
    p = hs.problems.make("block_scale", spread=0.5, n_blocks=2, block_size=3)
    with pytest.raises(ValueError):
        bad(p)
