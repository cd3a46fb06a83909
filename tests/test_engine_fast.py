"""The engine's fast path pinned to the plain reference path (STYLE 4: every fast path has a
slow twin that it must match, state included).

- every registered rule that is a chain of elementwise primitives gets a fused C step generated
  from its primitives (:mod:`heterosim.optimizers.fused`) that equals its ``update`` to the bit,
  state included, without touching its inputs; a kernel that rounds differently is never used;
- the C quadratic oracle equals its torch twin to the bit, with or without -march=native;
- ``run(fast=True)`` equals ``run(fast=False)`` for every rule on quadratics of each matvec kind
  (stacked blocks, unequal blocks, axis-aligned), to the bit in the x frame (kernels on and
  off) and to 1e-12 in the eigenbasis, and on softmax regression to rounding: curves, final
  iterates, final state, T(eps) and divergence;
- the demo's tunings (every demo problem and optimizer, the demo's learning-rate grid) give the
  same T* and the same T per learning rate on the fast path with the kernels, without them, and
  on the plain path ("One T per config", heterosim.engine);
- the eigenbasis path for rotation-equivariant rules equals the plain path and GD's closed form;
- chunking (forced small), per-chunk early exit with resumption, ``stop_when`` and the
  stochastic oracle change nothing.
"""
import math
import sys

import numpy as np
import pytest
import torch

import heterosim as hs
from heterosim import _native
from heterosim.engine import _EigenFrame, map_tensors, tensors_of
from heterosim.optimizers import fused
from heterosim.problems.quadratic import BlockQuadratic

# hyperparameter variants beyond the defaults, so that every branch of every twin runs
VARIANTS = {
    "adam": [dict(weight_decay=0.1), dict(betas=(0.3, 0.9))],
    "adamw": [dict(weight_decay=0.2)],
    "rmsprop": [dict(momentum=0.5, centered=True, weight_decay=0.01), dict(centered=True), dict(momentum=0.3)],
    "adagrad": [dict(weight_decay=0.1, lr_decay=0.01)],
    "nesterov": [dict(weight_decay=0.01)],
    "sgd": [dict(weight_decay=0.05)],
    "sgd_momentum": [dict(dampening=0.3, weight_decay=0.01)],
    "signsgd": [dict(weight_decay=0.1)],
    "signum": [dict(weight_decay=0.1)],
    "block_adam": [dict(weight_decay=0.1)],
    "adam_fixed_precond": [dict(eps=1e-3)],
}
CASES = [(name, h) for name in hs.optimizers.names() for h in [{}] + VARIANTS.get(name, [])]
LRS = [1e-3, 3e-3, 1e-2]


def _problem():
    return hs.problems.make("block_scale", spread=2.0, n_blocks=4, block_size=8, seed=3)


def _copy(state):
    return map_tensors(torch.clone, state)


def _assert_state_close(a, b, rtol=1e-13, rows=None):
    assert type(a) is type(b) and getattr(a, "count", None) == getattr(b, "count", None)
    ta, tb = tensors_of(a), tensors_of(b)
    assert len(ta) == len(tb)
    for fa, fb in zip(ta, tb):
        fa, fb = (fa, fb) if rows is None else (fa[rows], fb[rows])
        scale = max(float(fa.abs().max()), 1e-300)
        assert float((fa - fb).abs().max()) <= rtol * scale


ELEMENTWISE = [(n, h) for n, h in CASES if hs.optimizers.for_problem(n, _problem(), **h).elementwise]


def test_which_rules_are_fused():
    """Every registered rule made only of elementwise primitives is fused; the block and row
    reductions (block Adam, normalisation, l_inf steepest descent, block-wise rates) are not."""
    p = _problem()
    fused_names = {n for n in hs.optimizers.names() if hs.optimizers.for_problem(n, p).elementwise}
    assert fused_names == {"adagrad", "adam", "adam_fixed_precond", "adamw", "gd", "nesterov", "rmsprop", "sgd",
                           "sgd_momentum", "sign_momentum", "signsgd", "signum"}


@pytest.mark.parametrize("name,hyper", ELEMENTWISE, ids=[f"{n}-{sorted(h)}" for n, h in ELEMENTWISE])
def test_fused_step_reproduces_the_chain_to_the_bit(name, hyper):
    """The engine's fused step, generated from the rule's primitives, takes the chain's steps to
    the bit, iterate and state, over 60 steps of a trajectory with one learning rate per row, and
    leaves g and x untouched."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    p = hs.problems.make("zhang_case", case=2, seed=0)
    opt = hs.optimizers.for_problem(name, p, **hyper)
    x = p.initial_points([0, 1, 2, 3])
    lr = torch.tensor([1e-3, 3e-2, 0.3, 3.0], dtype=torch.float64).unsqueeze(1)
    step = fused.stepper(opt, x)
    assert step is not None
    state = opt.init(x, p.blocks)
    mine = _copy(state)
    out = torch.empty_like(x)
    for _ in range(60):
        g = p.grad(x)
        g_copy, x_copy = g.clone(), x.clone()
        delta, state = opt.update(g, state, x, lr, p.blocks)
        mine = step(g, mine, x, lr, out)
        assert torch.equal(g, g_copy) and torch.equal(x, x_copy)
        assert torch.equal(out, x + delta)
        assert mine.count == state.count
        assert all(torch.equal(a, b) for a, b in zip(tensors_of(mine), tensors_of(state)))
        x = out.clone()


def test_stepper_takes_only_kernels_that_reproduce_the_rule(monkeypatch):
    """A plain (init, update) rule, a chain with a reduction, a float32 batch, or a kernel that
    rounds differently from the chain (here: one step off by an ulp) is never used."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    x = PROBLEMS["stacked"].initial_points([0, 1])
    adam = hs.optimizers.make("adam")
    assert fused.stepper(adam, x) is not None
    own = hs.optimizers.Optimizer("adam", adam.init, lambda g, s, x, lr, b: adam.update(g, s, x, lr, b), adam.hyper)
    assert fused.stepper(own, x) is None
    assert fused.stepper(hs.optimizers.make("block_adam"), x) is None
    assert fused.stepper(adam, x.float()) is None
    real = fused._make_step

    def off_by_an_ulp(opt, lib, variants):
        step = real(opt, lib, variants)

        def stepped(g, state, x, lr, out, tmp=None):
            new = step(g, state, x, lr, out)
            out[0, 0] = torch.nextafter(out[0, 0], out[0, 0] + 1)
            return new
        return stepped
    monkeypatch.setattr(fused, "_make_step", off_by_an_ulp)
    monkeypatch.setattr(fused, "_verified", {})
    assert fused.stepper(hs.optimizers.make("adam", betas=(0.8, 0.99)), x) is None


def test_a_users_chain_is_fused_too():
    """A chain the package has never seen (Adam's direction, then the sign, then momentum) gets its
    own kernel from the primitives, and the engine's fast path equals the reference to the bit."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    O = hs.optimizers
    mine = O.chain(O.scale_by_adam(0.8, 0.99, 1e-6), O.scale_by_sign(), O.trace(0.5), O.scale_by_lr(), name="mine")
    p = PROBLEMS["unequal"]
    assert fused.stepper(mine, p.initial_points([0, 1])) is not None
    kw = dict(steps=40, record="loss,grad_l2", target=("grad_l2", 0.3, True), stop_early=False)
    _compare_exact(hs.engine.run(p, mine, LRS, [0, 1], fast=False, **kw),
                   hs.engine.run(p, mine, LRS, [0, 1], fast=True, **kw))
    src, _, variants = fused.kernel_source(mine)
    assert len(variants) == 2 and src.count("sqrt(") == 2  # trace's first step or not; one sqrt per entry in each


def _problems():
    return {
        "stacked": hs.problems.make("block_scale", spread=1.5, n_blocks=8, block_size=20, seed=1),  # d = 160
        "unequal": BlockQuadratic.from_spectra([[1.0, 3.0, 9.0], [2.0, 50.0], [0.5, 4.0, 8.0, 20.0]], seed=4),
        "diagonal": hs.problems.make("kunstner_diag", n_classes=6, h=3),
        "softmax": hs.problems.make("softmax", n=48, p=5, C=3, seed=2),
    }


PROBLEMS = _problems()


def _compare_exact(a, b):
    """Two runs to the bit: curves (nan where diverged), hits, divergence, final iterate and state."""
    assert a.steps_run == b.steps_run
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
    for m in a.curves:
        np.testing.assert_array_equal(a.curves[m], b.curves[m], err_msg=m)
    for key in a.hits:
        np.testing.assert_array_equal(a.hits[key], b.hits[key])
    assert torch.equal(a.x_final, b.x_final)
    live = torch.from_numpy(~a.diverged)  # a diverged row's state goes on, unused (engine doc)
    assert getattr(a.state, "count", None) == getattr(b.state, "count", None)
    for fa, fb in zip(tensors_of(a.state), tensors_of(b.state)):
        assert torch.equal(fa[live], fb[live])


def _compare(a, b, rtol=1e-10):
    """fast vs plain: everything recorded, the final iterate and state (of the live rows),
    the target's hits and the divergence flags."""
    assert a.steps_run == b.steps_run
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
    for m in a.curves:
        x, y = a.curves[m], b.curves[m]
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        scale = np.nanmax(np.abs(x[..., :1])) if np.isfinite(x).any() else 1.0
        np.testing.assert_allclose(np.nan_to_num(y), np.nan_to_num(x), rtol=rtol, atol=rtol * scale)
    scale = float(a.x_final.abs().max())
    assert float((a.x_final - b.x_final).abs().max()) <= rtol * scale
    live = torch.from_numpy(~a.diverged)
    if live.any():
        _assert_state_close(a.state, b.state, rtol=rtol, rows=live)
    for key in a.hits:
        np.testing.assert_array_equal(a.hits[key], b.hits[key])


@pytest.mark.parametrize("pname", sorted(PROBLEMS))
@pytest.mark.parametrize("name", hs.optimizers.names())
def test_fast_run_equals_plain_run(name, pname):
    """Every registered rule, every matvec kind: the fast path is the plain path, to rounding."""
    p = PROBLEMS[pname]
    opt = hs.optimizers.for_problem(name, p)
    record = "loss,grad_l2,grad_l1,blocks" + (",dist,subopt" if pname != "softmax" else "")
    kw = dict(steps=40, record=record, target=("grad_l2", 0.3, True), stop_early=False)
    a = hs.engine.run(p, opt, LRS, [0, 1], fast=False, **kw)
    b = hs.engine.run(p, opt, LRS, [0, 1], fast=True, **kw)
    _compare(a, b)


@pytest.mark.parametrize("native", [True, False], ids=["kernels", "torch"])
@pytest.mark.parametrize("pname", ["stacked", "unequal", "diagonal"])
@pytest.mark.parametrize("name", hs.optimizers.names())
def test_fast_run_equals_plain_run_to_the_bit(name, pname, native):
    """On block quadratics the fast path (C kernels on or off) does the plain path's arithmetic:
    the same bits, so the same T(eps) (engine doc, "One T per config"). Equivariant rules on
    rotated blocks run in the eigenbasis, whose rotation rounds differently: there the curves
    agree to 1e-12 relative (the tolerance the engine doc states) and T is the same here."""
    p = PROBLEMS[pname]
    opt = hs.optimizers.for_problem(name, p)
    kw = dict(steps=40, record="loss,grad_l2,grad_l1,blocks,dist,subopt", target=("grad_l2", 0.3, True),
              stop_early=False)
    a = hs.engine.run(p, opt, LRS + [50.0], [0, 1], fast=False, **kw)  # lr 50 diverges for most rules
    with (torch.no_grad() if native else _native.disabled()):
        b = hs.engine.run(p, opt, LRS + [50.0], [0, 1], fast=True, **kw)
    if _EigenFrame.applies(p, opt, False, None):
        _compare(a, b, rtol=1e-12)
    else:
        _compare_exact(a, b)


def test_equivariant_rules_run_in_the_eigenbasis_exactly():
    """GD-type rules on a rotated quadratic take the eigenbasis path; it matches the plain path
    and GD's closed form x_t - x* = V (1 - eta Lambda)^t V^T (x_0 - x*)."""
    p = PROBLEMS["stacked"]
    for name in ("gd", "sgd_momentum", "nesterov", "block_adam", "normalized_gd", "block_normalized_gd",
                 "blockwise_gd"):
        opt = hs.optimizers.for_problem(name, p)
        assert opt.equivariant and _EigenFrame.applies(p, opt, False, None)
    for name in ("adam", "signsgd", "rmsprop", "steepest_linf"):
        assert not _EigenFrame.applies(p, hs.optimizers.for_problem(name, p), False, None)
    assert not _EigenFrame.applies(p, hs.optimizers.make("gd"), True, None)  # stochastic: x frame
    eta = 1.0 / p.L2
    res = hs.engine.run(p, "gd", [eta], [5], steps=150, record="loss,dist", fast=True)
    V, lam = p.eigenbasis(), p.spectrum
    x0 = p.initial_point(5)
    xt = p.x_star + V @ ((1 - eta * lam) ** 150 * (V.T @ (x0 - p.x_star)))
    assert float((res.x_final[0] - xt).abs().max()) <= 1e-12 * float(xt.abs().max())
    c = V.T @ (x0 - p.x_star)
    t = torch.arange(151, dtype=torch.float64).unsqueeze(1)
    f = 0.5 * (lam * (1 - eta * lam) ** (2 * t) * c ** 2).sum(1) + p.f_star
    np.testing.assert_allclose(res.losses[0], f.numpy(), rtol=1e-10)


@pytest.mark.parametrize("name", ["adam", "signsgd", "sgd_momentum", "block_adam"])
def test_chunks_early_exit_divergence_and_stop_when(name, monkeypatch):
    """Small chunks (forced), per-chunk early exit and resumption, a diverging row and tune's
    pruning rule: the fast path still reproduces the plain path."""
    monkeypatch.setattr(hs.engine.fast, "CHUNK_BYTES", 1)  # one row per chunk (where the engine chunks)
    lrs = [1e-3, 1e-2, 3e-2, 5.0]  # the last one diverges for gd-type rules and stalls the sign rules
    kw = dict(steps=300, record="loss,grad_l2", record_every=7, target=("grad_l2", 0.05, True))
    for p in (PROBLEMS["stacked"], PROBLEMS["diagonal"]):
        for extra in ({}, {"stop_when": lambda hit, active, t: bool(torch.isfinite(hit).sum() >= 3)}):
            a = hs.engine.run(p, name, lrs, [0, 2], fast=False, **kw, **extra)
            b = hs.engine.run(p, name, lrs, [0, 2], fast=True, **kw, **extra)
            _compare(a, b)
            assert a.steps_run < 300 or not np.isfinite(a.hits[next(iter(a.hits))]).all()


def test_divergence_freezes_rows_like_the_plain_loop():
    p = PROBLEMS["stacked"]
    lrs = [0.5 / p.L2, 10.0 / p.L2]
    for opt in ("gd", "sgd_momentum"):  # the eigenbasis path and (momentum, rows frozen) alike
        a = hs.engine.run(p, opt, lrs, [0, 1], steps=120, record="loss", fast=False)
        b = hs.engine.run(p, opt, lrs, [0, 1], steps=120, record="loss", fast=True)
        assert list(b.diverged) == [False, False, True, True]
        _compare(a, b)
        assert np.isfinite(b.x_final.numpy()).all()


@pytest.mark.parametrize("pname", ["noisy", "softmax"])
def test_stochastic_fast_equals_plain(pname):
    p = (BlockQuadratic.from_spectra([[1.0, 2.0, 4.0], [0.5, 8.0, 3.0]], sigma=0.3, seed=1) if pname == "noisy"
         else hs.problems.make("softmax", n=64, p=4, C=3, batch_size=8, seed=0))
    for opt in ("sgd", "adam"):
        kw = dict(steps=60, stochastic=True, record="loss,grad_l2", target=("grad_l2", 0.5, True))
        _compare(hs.engine.run(p, opt, [0.01, 0.05], [0, 1], fast=False, **kw),
                 hs.engine.run(p, opt, [0.01, 0.05], [0, 1], fast=True, **kw))


def test_rules_without_a_twin_run_on_the_fast_path():
    """A user rule with only (init, update) takes the fast loop with its pure update."""
    base = hs.optimizers.make("sgd_momentum", momentum=0.8)
    bare = hs.optimizers.Optimizer("mine", base.init, base.update, {})
    p = PROBLEMS["stacked"]
    a = hs.engine.run(p, bare, LRS, [0], steps=50, fast=False, record="loss")
    b = hs.engine.run(p, bare, LRS, [0], steps=50, fast=True, record="loss")
    _compare(a, b)


def test_tune_same_on_both_paths():
    p = hs.problems.make("block_scale", spread=1.0)
    grid = hs.engine.lr_grid(1e-3, 1.0, per_decade=2)
    fast = hs.engine.tune(p, "adam", eps=1e-3, metric="grad_l2", relative=True, lrs=grid, steps=2000)
    plain = hs.engine.tune(p, "adam", eps=1e-3, metric="grad_l2", relative=True, lrs=grid, steps=2000, fast=False)
    np.testing.assert_array_equal(fast.Ts, plain.Ts)
    assert fast.lr == plain.lr and fast.T == plain.T and math.isfinite(fast.T)


def test_kernels_split_across_threads_change_nothing(monkeypatch):
    """The fused kernels split their rows between torch's threads: the runs are the same."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    p = PROBLEMS["stacked"]
    kw = dict(steps=60, record="loss,grad_l2", target=("grad_l2", 0.1, True))
    one = {name: hs.engine.run(p, name, LRS, [0, 1], **kw) for name in ("adam", "signum", "nesterov")}
    monkeypatch.setattr(_native, "PARALLEL_MIN_ELEMENTS", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, a in one.items():
            _compare(a, hs.engine.run(p, name, LRS, [0, 1], **kw), rtol=1e-13)
    finally:
        torch.set_num_threads(threads)


def test_chunks_on_threads_change_nothing(monkeypatch):
    """Independent chunks run on two threads at once: the same runs come out."""
    p = PROBLEMS["stacked"]
    kw = dict(steps=60, record="loss,grad_l2", target=("grad_l2", 0.1, True))
    one = {name: hs.engine.run(p, name, LRS, [0, 1, 2, 3], **kw) for name in ("adam", "sgd_momentum")}
    monkeypatch.setattr(hs.engine.fast, "PARALLEL_MIN_ELEMENTS", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for name, a in one.items():
            _compare(a, hs.engine.run(p, name, LRS, [0, 1, 2, 3], **kw), rtol=1e-13)
        assert torch.get_num_threads() == 2  # restored after the run
    finally:
        torch.set_num_threads(threads)


def _oracle_case(pname):
    """(problem, 13 rows X, eigenbasis frame or None) of an oracle test: two full 6-row tiles and a
    remainder, on the problem named (eigenbasis: the stacked problem in its frame; wide: one block
    of 70). Skips where the kernels are not built."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    if pname == "wide":
        p = BlockQuadratic.from_spectra([np.geomspace(1, 100, 70).tolist(), [3.0, 4.0]], seed=5)
    else:
        p = PROBLEMS["stacked" if pname == "eigenbasis" else pname]
    X = p.initial_points(list(range(13))) * torch.linspace(0.5, 3.0, 13, dtype=torch.float64).unsqueeze(1)
    frame = None
    if pname == "eigenbasis":
        frame = _EigenFrame(p, "cpu", torch.float64)
        X = frame.to(X)
    return p, X, frame


@pytest.mark.parametrize("pname", ["stacked", "unequal", "diagonal", "eigenbasis", "wide"])
def test_native_oracle_equals_the_torch_oracle(pname):
    """The fused C oracle (error, block product, f, ||g||, divergence count, frozen rows) against
    the torch oracle with the kernels off, on 13 rows (two full 6-row tiles and a remainder),
    blocks of 20 (8-column strips and a 4-column tail), unequal blocks, axis-aligned blocks, the
    eigenbasis frame, and one wide block of 70."""
    p, X, frame = _oracle_case(pname)
    if pname == "eigenbasis":
        oracle = frame.native_oracle(X)
        lam, ys = frame.lam, frame.y_star
        G_ref = (X - ys) * lam
        f_ref = 0.5 * ((X - ys) * G_ref).sum(1) + frame.f_star
    else:
        oracle = p.native_oracle(X)
        with _native.disabled():
            assert p.native_oracle(X) is None
            f_ref, G_ref = p.loss_and_grad(X)
    assert oracle is not None
    G, f, nrm = torch.empty_like(X), X.new_empty(13), X.new_empty(13)
    limit = f_ref * (1 + 1e-9)  # above f by far more than rounding
    limit[[2, 7, 12]] = f_ref[[2, 7, 12]] * 0.5  # three rows over their limit
    bad = oracle(X, G, f, nrm, limit, root=True)
    scale = float(G_ref.abs().max())
    assert bad == 3
    assert float((G - G_ref).abs().max()) <= 1e-14 * scale
    np.testing.assert_allclose(f.numpy(), f_ref.numpy(), rtol=1e-13)
    np.testing.assert_allclose(nrm.numpy(), G_ref.norm(dim=1).numpy(), rtol=1e-13)
    sq = X.new_empty(13)
    assert oracle(X, G, f, sq, root=False) == 0
    np.testing.assert_allclose(sq.numpy(), (G_ref * G_ref).sum(1).numpy(), rtol=1e-13)
    # frozen rows: X[r] <- X_prev[r], their G, f and norm untouched, not counted
    frozen = torch.zeros(13, dtype=torch.bool)
    frozen[[0, 7, 8]] = True
    X2, prev = X.clone(), X.flip(0).contiguous()
    G2, f2, n2 = torch.full_like(X, 7.0), X.new_full((13,), 7.0), X.new_full((13,), 7.0)
    assert oracle(X2, G2, f2, n2, limit, root=True, frozen=frozen, X_prev=prev) == 2  # rows 2, 12
    live = ~frozen
    assert torch.equal(X2[frozen], prev[frozen]) and torch.equal(X2[live], X[live])
    assert bool((G2[frozen] == 7.0).all() and (f2[frozen] == 7.0).all() and (n2[frozen] == 7.0).all())
    assert torch.equal(G2[live], G[live]) and torch.equal(f2[live], f[live])


def test_native_oracle_rows_split_across_threads_are_bitwise_equal(monkeypatch):
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    p = PROBLEMS["stacked"]
    X = p.initial_points(list(range(9)))
    oracle = p.native_oracle(X)
    outs = []
    for threshold, threads in ((1 << 40, 1), (0, 2)):
        monkeypatch.setattr(_native, "PARALLEL_MIN_ELEMENTS", threshold)
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            G, f, n = torch.empty_like(X), X.new_empty(9), X.new_empty(9)
            oracle(X, G, f, n)
            outs.append((G, f, n))
        finally:
            torch.set_num_threads(old)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_problems_with_a_native_oracle_pickle():
    """The C oracle is a closure over pointers: a pickled problem (sweep workers) rebuilds it."""
    import pickle
    p = hs.problems.make("block_scale", spread=1.0, n_blocks=2, block_size=4, seed=0)
    X = p.initial_points([0])
    p.native_oracle(X)
    q = pickle.loads(pickle.dumps(p))
    assert torch.equal(q.loss(X), p.loss(X))


@pytest.mark.parametrize("kw", [dict(n=37, p=3, C=7, seed=1, ridge=0.01, batch_size=5),
                                dict(n=64, p=8, C=12, seed=2, batch_size=16)])
def test_native_softmax_oracle_equals_the_torch_oracle(kw):
    """The fused softmax oracle (four samples per vector, its own exp) against the torch oracle:
    full batch and per-row minibatches, a sample count and a class count that are not
    multiples of 4, frozen rows, the divergence count, and a non-finite row reported as nan."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    p = hs.problems.make("softmax", **kw)
    gen = torch.Generator().manual_seed(0)
    X = 2.0 * torch.randn(9, p.d, generator=gen, dtype=torch.float64)
    with _native.disabled():
        assert p.native_oracle(X) is None and p.native_minibatch(X) is None
    f_ref, G_ref = p.loss_and_grad(X)
    oracle = p.native_oracle(X)
    G, f, nrm = torch.empty_like(X), X.new_empty(9), X.new_empty(9)
    limit = f_ref * (1 + 1e-9)
    limit[4] = f_ref[4] * 0.5
    assert oracle(X, G, f, nrm, limit) == 1
    assert float((G - G_ref).abs().max()) <= 1e-14 * float(G_ref.abs().max())
    np.testing.assert_allclose(f.numpy(), f_ref.numpy(), rtol=1e-14)
    np.testing.assert_allclose(nrm.numpy(), G_ref.norm(dim=1).numpy(), rtol=1e-14)
    # minibatches: row r on draw which[r]
    gens = [torch.Generator().manual_seed(s) for s in range(3)]
    idx = torch.stack([p.draw_minibatch(g) for g in gens])
    which = torch.tensor([0, 1, 2, 0, 1, 2, 2, 2, 0])
    Gm = torch.empty_like(X)
    p.native_minibatch(X)(X, Gm, idx, which)
    ref = torch.cat([p.minibatch_grad(X[r:r + 1], idx[which[r]]) for r in range(9)])
    assert float((Gm - ref).abs().max()) <= 1e-14 * float(ref.abs().max())
    # frozen rows and a non-finite row
    frozen = torch.zeros(9, dtype=torch.bool)
    frozen[[1, 5]] = True
    X2, prev = X.clone(), X.flip(0).contiguous()
    X2[3, 0] = math.inf
    G2, f2 = torch.full_like(X, 7.0), X.new_full((9,), 7.0)
    assert oracle(X2, G2, f2, None, limit, frozen=frozen, X_prev=prev) == 2  # rows 3 (nan) and 4
    assert torch.equal(X2[frozen], prev[frozen]) and bool((f2[frozen] == 7.0).all())
    assert math.isnan(float(f2[3])) and bool(G2[3].isnan().all())
    live = torch.tensor([0, 2, 6, 7, 8])
    torch.testing.assert_close(f2[live], f[live], rtol=0, atol=0)


def test_subclasses_with_their_own_oracle_get_no_c_oracle():
    """A user subclass that changes the loss keeps its own oracle: the C one would be wrong."""
    class Shifted(BlockQuadratic):
        def loss_and_grad(self, X):
            f, G = super().loss_and_grad(X)
            return f + 1.0, G

    base = PROBLEMS["unequal"]
    p = Shifted(base.block_spectra, base.bases, base.x_star, base.f_star, base.init_scale, None)
    X = p.initial_points([0])
    assert base.native_oracle(X) is not None or _native.lib() is None
    assert p.native_oracle(X) is None
    res = hs.engine.run(p, "adam", [0.01], [0], steps=5, record="loss")
    plain = hs.engine.run(p, "adam", [0.01], [0], steps=5, record="loss", fast=False)
    np.testing.assert_allclose(res.losses, plain.losses, rtol=1e-14)
    np.testing.assert_allclose(res.losses[0, -1], float(p.loss(res.x_final)[0]), rtol=1e-14)


# ----------------------------------------------------------------- one T per config (issue 11)
@pytest.mark.parametrize("pname", ["stacked", "unequal", "diagonal", "eigenbasis", "wide"])
def test_c_oracle_equals_its_torch_twin_to_the_bit(pname):
    """The C quadratic oracle and heterosim._native.quadratic_oracle_torch: the same G, f, ||g||
    (and ||g||^2), divergence count and frozen-row handling, bit for bit."""
    p, X, frame = _oracle_case(pname)
    if pname == "eigenbasis":
        c = frame.native_oracle(X)
        twin = _native.quadratic_oracle_torch(frame.y_star, frame.f_star, diag=frame.lam)
    else:
        c = p.native_oracle(X)
        args = dict(diag=p.spectrum) if p.diagonal else dict(blocks=p.block_hessians)
        twin = _native.quadratic_oracle_torch(p.x_star, p.f_star, **args)
    f_ref = p.loss(X) if pname != "eigenbasis" else None
    limit = X.new_full((13,), math.inf)
    limit[[2, 7, 12]] = -math.inf  # three rows over their limit
    frozen = torch.zeros(13, dtype=torch.bool)
    frozen[[0, 7, 8]] = True
    prev = X.flip(0).contiguous()
    for root in (True, False):
        for fr in (None, frozen):
            outs = []
            for oracle in (c, twin):
                X2, G, f, n = X.clone(), torch.full_like(X, 7.0), X.new_full((13,), 7.0), X.new_full((13,), 7.0)
                bad = oracle(X2, G, f, n, limit, root=root, frozen=fr, X_prev=prev if fr is not None else None)
                outs.append((bad, X2, G, f, n))
            (b1, *t1), (b2, *t2) = outs
            assert b1 == b2 == (3 if fr is None else 2)
            for u, v in zip(t1, t2):
                assert torch.equal(u, v)
    if f_ref is not None:
        G, f = torch.empty_like(X), X.new_empty(13)
        twin(X, G, f)
        np.testing.assert_allclose(f.numpy(), f_ref.numpy(), rtol=1e-13)


def test_tree_norm_c_equals_torch():
    """||g|| as every path measures it (heterosim._native.tree_norm): the C kernel and the torch
    operations give the same bits, root or not, for widths that are and are not powers of 2."""
    gen = torch.Generator().manual_seed(3)
    for d in (1, 2, 7, 64, 100, 131):
        V = torch.randn(9, d, generator=gen, dtype=torch.float64)
        V = V * 10.0 ** torch.randint(-8, 8, V.shape, generator=gen).to(torch.float64)
        for root in (True, False):
            a = _native.tree_norm(V, root)
            with _native.disabled():
                b = _native.tree_norm(V, root)
            assert torch.equal(a, b)
            np.testing.assert_allclose(a.numpy(), (V.norm(dim=1) ** (1 if root else 2)).numpy(), rtol=1e-14)


def test_block_product_c_equals_torch():
    """heterosim._native.block_product_ (the eigenbasis maps; non-symmetric blocks), C and torch
    (with torch's cumsum, and with its add loop): the same bits, equal and unequal blocks."""
    gen = torch.Generator().manual_seed(4)
    for sizes in ([5, 5, 5], [3, 8, 1, 13]):
        mats = [torch.randn(n, n, generator=gen, dtype=torch.float64) for n in sizes]
        E = torch.randn(11, sum(sizes), generator=gen, dtype=torch.float64)
        stacked = torch.stack(mats) if len(set(sizes)) == 1 else None
        a = _native.block_product_(E, mats, torch.empty_like(E), stacked)
        with _native.disabled():
            b = _native.block_product_(E, mats, torch.empty_like(E), stacked)
            scan = _native._lerp.get("cumsum")
            _native._lerp["cumsum"] = False  # the add loop
            try:
                c = _native.block_product_(E, mats, torch.empty_like(E), stacked)
            finally:
                _native._lerp["cumsum"] = scan
        assert torch.equal(a, b) and torch.equal(a, c)
        ref = E @ torch.block_diag(*mats)
        assert float((a - ref).abs().max()) <= 1e-13 * float(ref.abs().max())


@pytest.mark.parametrize("name", ["gd", "sgd_momentum", "blockwise_gd", "block_adam"])
def test_eigenbasis_runs_are_the_same_bits_with_kernels_on_and_off(name):
    p = PROBLEMS["stacked"]
    opt = hs.optimizers.for_problem(name, p)
    assert _EigenFrame.applies(p, opt, False, None)
    kw = dict(steps=60, record="loss,grad_l2,dist", target=("grad_l2", 0.1, True), stop_early=False)
    a = hs.engine.run(p, opt, LRS, [0, 1], **kw)
    with _native.disabled():
        b = hs.engine.run(p, opt, LRS, [0, 1], **kw)
    _compare_exact(a, b)


def test_march_native_changes_no_bit(tmp_path):
    """The kernels built without -march=native give the same bits as the default build:
    -march only picks instructions (no contraction, no reassociation, fma() only where written).
    Both are cffi builds (heterosim._native.build); the portable one in its own cache. (The rules'
    fused steps need no such test: each is checked against its chain's ``update`` to the bit on
    the machine that runs it before it is used, whatever the flags; heterosim.optimizers.fused.)"""
    if _native.lib() is None or not sys.platform.startswith("linux") or "-march=native" not in _native.lib().flags:
        pytest.skip("no C compiler, or no -march=native build to compare with")
    portable = _native.build(str(tmp_path), native_arch=False)
    assert portable is not None, _native.why_off()
    assert "-march=native" not in portable.flags and portable.raw is not _native.lib().raw
    assert _native.cache_why(str(tmp_path)) is None  # pytest's tmp_path is private: built and loaded there
    assert any(f.name.startswith("_hs_fused_") for f in tmp_path.iterdir())
    p = PROBLEMS["stacked"]
    X = p.initial_points(list(range(7))) * 1.3
    outs = []
    for k in (_native.lib(), portable):
        old = _native._state["lib"]
        _native._state["lib"] = k
        try:
            G, f, n = torch.empty_like(X), X.new_empty(7), X.new_empty(7)
            _native.quadratic_oracle(p.x_star, p.f_star, blocks=p.block_hessians)(X, G, f, n)
            Gd, fd = torch.empty_like(X), X.new_empty(7)
            _native.quadratic_oracle(p.x_star, p.f_star, diag=p.spectrum)(X, Gd, fd, None)
            res = [G, f, n, Gd, fd, _native.tree_norm(G)]
            outs.append(res)
        finally:
            _native._state["lib"] = old
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def _demo_tunings():
    """(label, problem, optimizer, eps, metric) for every tuning of the demo's T* table; C3's GD
    and block-wise GD at eps = 1e-3 instead of 1e-6 (10^4 steps there; the arithmetic is the same)."""
    from heterosim import demo
    out = []
    for label, kw, eps, metric in demo.demo_problems():
        kw = dict(kw)
        p = hs.problems.make(kw.pop("name"), seed=0, **kw)
        for name in demo.DEMO_OPTIMIZERS:
            if label.startswith("zhang"):
                if name in demo.CONSTANT_SIGN_STEPS:
                    continue
                e = 1e-3 if name in ("sgd", "blockwise_gd") else eps
            else:
                e = eps
            out.append((label, p, name, e, metric))
    return out


def test_demo_tunings_same_T_on_every_path():
    """Every tuning of the demo (its problems and optimizers, on the demo's learning-rate grid
    without the refinement, as heterosim.claims.common.measure_tuned runs it; 10^-0.5 is on the grid:
    Zhang case 2 with Adam there gave T = 1169 on the plain path and 1161 on the fast one before
    issue 11) gives the same T*, argmin lr, and T of every learning rate on the fast path with
    the C kernels, without them, and on the plain path."""
    from heterosim.claims import common
    grid = hs.engine.lr_grid(*common.LR_RANGE, per_decade=common.LR_PER_DECADE)
    assert np.isclose(grid, 10 ** -0.5).any()
    reached = 0
    for label, p, name, eps, metric in _demo_tunings():
        opt = hs.optimizers.for_problem(name, p)
        kw = dict(eps=eps, metric=metric, relative=True, lrs=grid, seeds=(0,), steps=20_000, refine=0)
        runs = [hs.engine.tune(p, opt, **kw)]
        with _native.disabled():
            runs.append(hs.engine.tune(p, opt, **kw))
        runs.append(hs.engine.tune(p, opt, fast=False, **kw))
        ref = runs[-1]
        for r in runs[:-1]:
            np.testing.assert_array_equal(r.lrs, ref.lrs, err_msg=f"{label} {name}")
            np.testing.assert_array_equal(r.Ts, ref.Ts, err_msg=f"{label} {name}")
            assert (r.T, r.edge) == (ref.T, ref.edge) and (r.lr == ref.lr or math.isnan(ref.lr)), (label, name)
        reached += math.isfinite(ref.T)
    assert reached == 34


def test_engine_path_names_the_default_path():
    path = hs.engine.engine_path()
    assert path == ("native-c" if _native.lib() is not None else f"torch-fast ({_native.why_off()})")
    with _native.disabled():
        assert hs.engine.engine_path().startswith("torch-fast (")


def test_openmp_row_split_changes_no_bit():
    """On two threads the C kernels (oracle and fused step) split their rows between OpenMP
    threads: the runs are the same bits as on one thread."""
    if _native.lib() is None or not _native.lib().openmp:
        pytest.skip("no OpenMP build of the kernels")
    p = PROBLEMS["stacked"]
    lrs = list(np.geomspace(1e-3, 0.3, 16))
    kw = dict(steps=60, record="loss,grad_l2", target=("grad_l2", 0.1, True), stop_early=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = {name: hs.engine.run(p, name, lrs, [0, 1, 2, 3, 4, 5, 6, 7], **kw) for name in ("adam", "signum")}
        torch.set_num_threads(2)
        for name, a in one.items():
            _compare_exact(a, hs.engine.run(p, name, lrs, [0, 1, 2, 3, 4, 5, 6, 7], **kw))
    finally:
        torch.set_num_threads(threads)


_FORK_PROBLEM = {}


def _run_in_child(queue):
    torch.set_num_threads(1)  # torch's own threads do not survive fork either
    _native.torch.get_num_threads = lambda: 2  # the kernels would split their rows between two threads
    res = hs.engine.run(_FORK_PROBLEM["p"], "adam", list(np.geomspace(1e-3, 0.3, 16)), list(range(8)), steps=30,
                        record="loss")
    queue.put((_native._openmp_safe(), res.losses[:, -1].tolist()))


def test_a_forked_child_does_not_use_the_parents_threads():
    """Threads do not survive fork (OpenMP's team, the Python pool): a forked child of a process
    that split a call in C computes every call on its own thread, with the same numbers, where
    entering the parent's OpenMP team would hang. (torch's own threads are not fork-safe either:
    the child runs torch on one thread and is told there are two for the kernels' split.)"""
    if _native.lib() is None or not _native.lib().openmp or not hasattr(__import__("os"), "fork"):
        pytest.skip("no OpenMP build of the kernels, or no fork")
    import multiprocessing as mp
    p = _FORK_PROBLEM.setdefault("p", hs.problems.make("block_scale", spread=1.5, n_blocks=8, block_size=20, seed=1))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        mine = hs.engine.run(p, "adam", list(np.geomspace(1e-3, 0.3, 16)), list(range(8)), steps=30, record="loss")
        assert _native._openmp_safe()
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        child = ctx.Process(target=_run_in_child, args=(q,))
        child.start()
        try:
            safe, losses = q.get(timeout=60)
        finally:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
    finally:
        torch.set_num_threads(threads)
    assert safe is False
    np.testing.assert_array_equal(losses, mine.losses[:, -1])
