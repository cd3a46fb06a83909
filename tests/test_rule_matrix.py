"""The registry-driven matrix (STYLE 10): every rule in ``hs.optimizers.names()`` -- a rule
registered tomorrow included -- is checked here without a line of its own:

- its state is a chain's (``RuleState``) and round-trips through torch.save / weights_only load;
- agreement with torch.optim, step by step, parameters and state, wherever the rule declares
  its torch.optim counterpart (``opt.torch_optim``);
- its fused C step (when it is a chain of elementwise primitives) equals its ``update`` to the bit;
- the engine on CUDA equals the engine on CPU in float64, every problem kind (skipped without a
  GPU).

The other cells of the matrix live beside the code they pin: finite, deterministic, pure and
converging (tests/test_optimizers.py::test_every_rule_is_finite_deterministic_pure_and_converges),
fast path == reference path with state (tests/test_engine_fast.py::test_fast_run_equals_plain_run
and ..._to_the_bit), adapter == engine (tests/test_adapter.py).
"""
import io

import numpy as np
import pytest
import torch

import heterosim as hs
from heterosim import _native
from heterosim.engine import tensors_of
from heterosim.optimizers import RuleState, fused

NAMES = hs.optimizers.names()
STEPS = 60


def _problem():
    return hs.problems.make("block_scale", spread=2.0, n_blocks=4, block_size=6, seed=11)


def _close(a, b, rtol=1e-10):
    scale = max(float(b.abs().max()), 1e-300)
    return float((a - b).abs().max()) <= rtol * scale


@pytest.mark.parametrize("name", NAMES)
def test_state_is_a_chains_and_saves_with_weights_only(name, tmp_path):
    """Every registered rule is a chain; its state holds only tensors and ints, so torch.save and
    torch.load(weights_only=True) give it back equal."""
    p = _problem()
    opt = hs.optimizers.for_problem(name, p)
    assert opt.transforms, f"{name} is not a chain of primitives"
    x = p.initial_points([0, 1])
    state = opt.init(x, p.blocks)
    for _ in range(3):
        step, state = opt.update(p.grad(x), state, x, 0.01, p.blocks)
        x = x + step
    assert isinstance(state, RuleState) and state.count == 3
    buf = io.BytesIO()
    torch.save({"count": state.count, "fields": state.fields()}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    assert back["count"] == 3 and back["fields"].keys() == state.fields().keys()
    assert all(torch.equal(back["fields"][k], v) for k, v in state.fields().items())


WITH_TORCH = [n for n in NAMES if hs.optimizers.for_problem(n, _problem()).torch_optim is not None]


@pytest.mark.parametrize("name", WITH_TORCH)
def test_rule_agrees_with_its_torch_optim_counterpart(name):
    """Parameters and every state tensor torch.optim also keeps, 60 steps, float64, two learning
    rates (rows), from the rule's declared counterpart with the rule's own hyperparameters."""
    p = _problem()
    opt = hs.optimizers.for_problem(name, p)
    cls_name, kwargs = opt.torch_optim
    lrs = [1e-3, 3e-2]
    x = p.initial_points([0, 0])
    lr = torch.tensor(lrs, dtype=torch.float64).unsqueeze(1)
    state = opt.init(x, p.blocks)
    ws = [p.initial_point(0).clone().requires_grad_(True) for _ in lrs]
    tors = [getattr(torch.optim, cls_name)([w], lr=eta, **kwargs) for w, eta in zip(ws, lrs)]
    for _ in range(STEPS):
        step, state = opt.update(p.grad(x), state, x, lr, p.blocks)
        x = x + step
        for i, (w, tor) in enumerate(zip(ws, tors)):
            w.grad = p.grad(w.detach())[0]
            tor.step()
            assert _close(x[i], w.detach())
            for field, ours in state.fields().items():
                if field in tor.state[w]:
                    assert _close(ours[i], tor.state[w][field]), field


ELEMENTWISE = [n for n in NAMES if hs.optimizers.for_problem(n, _problem()).elementwise]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_fused_step_equals_update_to_the_bit(name):
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    p = _problem()
    opt = hs.optimizers.for_problem(name, p)
    x = p.initial_points([0, 1, 2])
    lr = torch.tensor([1e-3, 1e-2, 1.0], dtype=torch.float64).unsqueeze(1)
    step = fused.stepper(opt, x)
    assert step is not None, f"{name}: no fused step (the kernel did not reproduce the chain?)"
    ref = opt.init(x, p.blocks)
    mine = hs.engine.map_tensors(torch.clone, ref)
    out = torch.empty_like(x)
    for _ in range(STEPS):
        g = p.grad(x)
        delta, ref = opt.update(g, ref, x, lr, p.blocks)
        mine = step(g, mine, x, lr, out)
        assert torch.equal(out, x + delta)
        assert all(torch.equal(a, b) for a, b in zip(tensors_of(mine), tensors_of(ref)))
        x = out.clone()


def _gpu_problems():
    return {
        "rotated": hs.problems.make("block_scale", spread=1.5, n_blocks=4, block_size=8, seed=1),
        "diagonal": hs.problems.make("kunstner_diag", n_classes=6, h=3),
        "softmax": hs.problems.make("softmax", n=48, p=5, C=3, seed=2),
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("pname", ["rotated", "diagonal", "softmax"])
@pytest.mark.parametrize("name", NAMES)
def test_engine_on_cuda_equals_cpu(name, pname):
    """engine.run(..., device="cuda") against the CPU run, float64: curves and final iterates."""
    p = _gpu_problems()[pname]
    opt = hs.optimizers.for_problem(name, p)
    kw = dict(steps=40, record="loss,grad_l2", target=("grad_l2", 0.3, True), stop_early=False)
    a = hs.engine.run(p, opt, [1e-3, 1e-2], [0, 1], **kw)
    b = hs.engine.run(p, opt, [1e-3, 1e-2], [0, 1], device="cuda", **kw)
    for m in a.curves:
        np.testing.assert_allclose(b.curves[m], a.curves[m], rtol=1e-9, atol=1e-12)
    assert _close(b.x_final, a.x_final, rtol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_a_zero_gradient_gives_a_finite_step(name, dtype):
    """A block (or a whole row) with a zero gradient: every rule's step stays finite at the first
    step, in float32 as in float64 (normalised rules divide by a dtype-aware guard, not by 0)."""
    p = _problem()
    # adam_fixed_precond divides by |g_1| + eps and documents that a zero coordinate needs eps > 0
    opt = hs.optimizers.for_problem(name, p, **({"eps": 1e-6} if name == "adam_fixed_precond" else {}))
    x = p.initial_points([0]).to(dtype)
    g = p.grad(p.initial_points([0])).to(dtype)
    g[:, : p.blocks.sizes[0]] = 0.0  # the first block's gradient vanishes
    step, _ = opt.update(g, opt.init(x, p.blocks), x, 0.1, p.blocks)
    assert torch.isfinite(step).all()
    z = torch.zeros_like(x)
    step, _ = opt.update(z, opt.init(x, p.blocks), x, 0.1, p.blocks)
    assert torch.isfinite(step).all()


@pytest.mark.parametrize("pname", ["rotated", "diagonal", "softmax"])
def test_problem_moves_its_data_for_the_engine(pname):
    """Problem.to(device), as engine.run(..., device=...) calls it: every tensor, list of tensors
    and the block partition on the device (here the meta device, which needs no GPU); the
    original untouched; the same problem back when it is already there."""
    p = _gpu_problems()[pname]
    assert p.to("cpu") is p
    q = p.to("meta")
    moved = [v for v in vars(q).values() if isinstance(v, torch.Tensor)]
    moved += [t for v in vars(q).values() if isinstance(v, (list, tuple)) for t in v if isinstance(t, torch.Tensor)]
    assert moved and all(t.device.type == "meta" for t in moved)
    assert all(v.device.type == "cpu" for v in vars(p).values() if isinstance(v, torch.Tensor))
    assert q.blocks.sizes == p.blocks.sizes and q.d == p.d


def test_an_anchored_view_moves_with_its_anchor():
    """verify's Anchored view (x* = the start) keeps its anchor when the engine moves it."""
    from heterosim.verify.harness import Anchored
    p = _gpu_problems()["softmax"]
    a = Anchored(p, p.initial_point(0))
    m = a.to("meta")
    assert isinstance(m, Anchored) and m.x_star.device.type == "meta" and m.features.device.type == "meta"
    assert a.x_star.device.type == "cpu" and torch.equal(a.x_star, p.initial_point(0))


def test_prebuild_builds_each_structure_once():
    """heterosim kernels (fused.prebuild): one kernel per chain structure (weight decay on or off,
    ...), each checked against its chain; rules with a reduction have none."""
    if _native.lib() is None:
        pytest.skip("no C compiler: the fused kernels are not built")
    rows = fused.prebuild(["signsgd", "signum", "block_adam"])
    assert [r["rule"] for r in rows] == ["signsgd", "signsgd(weight_decay=0.01)", "signum(beta=0.9)",
                                         "signum(beta=0.9,weight_decay=0.01)"]
    assert all(r["ok"] for r in rows)


def test_kernels_command_says_why_when_off(monkeypatch, capsys):
    from heterosim import cli
    monkeypatch.setenv("HETEROSIM_NATIVE", "0")
    with _native.disabled():
        assert cli.main(["kernels"]) == 1
    assert "the C kernels are off" in capsys.readouterr().out
