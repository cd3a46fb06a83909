"""RuleOptimizer (heterosim.optimizers.adapter) against references: torch.optim's parameters and
per-parameter state, the engine and the rule's own update on the flat row, an uninterrupted run
(state_dict round trips, bit for bit), and the tensor arithmetic (TensorList, bit for bit)."""
import math

import numpy as np
import pytest
import torch

import heterosim as hs
from heterosim.blocks import Blocks
from heterosim.optimizers import RuleOptimizer
from heterosim.optimizers import ops
from heterosim.optimizers import adapter
from heterosim.optimizers.adapter import ParamBlocks, TensorList

F64 = torch.float64


def _close(a, b, rtol):
    scale = max(float(b.abs().max()), 1e-300)
    return float((a - b).abs().max()) <= rtol * scale


def _mlp(seed=1, dtype=F64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 6), torch.nn.Tanh(),
                               torch.nn.Linear(6, 3)).to(dtype)


def _data(dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(16, 5, generator=gen, dtype=dtype), torch.randint(0, 3, (16,), generator=gen)


def _backward(net, X, y):
    torch.nn.functional.cross_entropy(net(X), y).backward()


# ----------------------------------------------------------------------------- torch.optim, per parameter
TORCH_STATE = [
    ("adam", dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), torch.optim.Adam,
     dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), ["exp_avg", "exp_avg_sq", "step"]),
    ("adamw", dict(weight_decay=0.1), torch.optim.AdamW, dict(weight_decay=0.1), ["exp_avg", "exp_avg_sq", "step"]),
    ("sgd_momentum", dict(momentum=0.7, dampening=0.3), torch.optim.SGD, dict(momentum=0.7, dampening=0.3),
     ["momentum_buffer"]),
    ("nesterov", dict(momentum=0.8, weight_decay=0.01), torch.optim.SGD,
     dict(momentum=0.8, nesterov=True, weight_decay=0.01), ["momentum_buffer"]),
    ("rmsprop", dict(momentum=0.5, centered=True, alpha=0.9), torch.optim.RMSprop,
     dict(momentum=0.5, centered=True, alpha=0.9), ["square_avg", "grad_avg", "momentum_buffer", "step"]),
    ("adagrad", dict(lr_decay=0.01, initial_accumulator_value=0.1), torch.optim.Adagrad,
     dict(lr_decay=0.01, initial_accumulator_value=0.1), ["sum", "step"]),
]


@pytest.mark.parametrize("name,hyper,tcls,tkw,keys", TORCH_STATE)
def test_per_parameter_state_equals_torch_optim(name, hyper, tcls, tkw, keys):
    """Each parameter's state (same keys as torch.optim's) and value equal torch.optim's, float64, 50 steps."""
    a, b = _mlp(), _mlp()
    X, y = _data()
    ours = RuleOptimizer(a.parameters(), name, lr=1e-2, **hyper)
    tor = tcls(b.parameters(), lr=1e-2, **tkw)
    for _ in range(50):
        for net, o in ((a, ours), (b, tor)):
            o.zero_grad()
            _backward(net, X, y)
            o.step()
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert _close(pa.detach(), pb.detach(), 1e-10)
            for k in keys:
                va, vb = ours.state[pa][k], tor.state[pb][k]
                assert va.shape == vb.shape, k
                assert _close(va, vb.to(va.dtype), 1e-10), k
    for pa in a.parameters():  # a state dict of plain tensors, one per parameter
        assert all(isinstance(v, torch.Tensor) for v in ours.state[pa].values())
        assert ours.state[pa]["step"].dtype == torch.float32 and float(ours.state[pa]["step"]) == 50


def test_parameters_are_stepped_in_place():
    net = _mlp()
    X, y = _data()
    ptrs = [p.data_ptr() for p in net.parameters()]
    o = RuleOptimizer(net.parameters(), "adam", lr=1e-2)
    for _ in range(3):
        o.zero_grad()
        _backward(net, X, y)
        o.step()
    assert [p.data_ptr() for p in net.parameters()] == ptrs


# ----------------------------------------------------------------------------- the engine, every rule
class _BlockModel(torch.nn.Module):
    """One parameter per block of a problem, so that blocks="tensor" is the problem's partition."""

    def __init__(self, problem, x0):
        super().__init__()
        self.problem = problem
        self.ps = torch.nn.ParameterList([torch.nn.Parameter(v.clone()) for v in x0.split(problem.blocks.sizes)])

    def flat(self):
        return torch.cat([p.detach() for p in self.ps])

    def set_grads(self):
        g = self.problem.grad(self.flat().unsqueeze(0))[0]
        for p, v in zip(self.ps, g.split(self.problem.blocks.sizes)):
            p.grad = v.clone()


# learning rates at which every rule makes progress without diverging in 50 steps
_LR = {"normalized_gd": 0.05, "block_normalized_gd": 0.02, "steepest_linf": 0.5, "blockwise_gd": 0.5, "gd": 1e-3,
       "sgd": 1e-3, "sgd_momentum": 1e-3, "nesterov": 1e-3, "adam_fixed_precond": 1e-3}


@pytest.mark.parametrize("name", hs.optimizers.names())
def test_adapter_equals_engine_for_every_rule(name):
    """Parameters = the blocks of a quadratic: RuleOptimizer equals the rule's update on the flat row at
    every step and the engine's reference loop at the end, to 1e-12, over 50 steps."""
    problem = hs.problems.make("block_scale", spread=2.0, n_blocks=4, block_size=8, seed=3)
    rule = hs.optimizers.for_problem(name, problem)
    lr = _LR.get(name, 1e-2)
    x0 = problem.initial_point(0)
    model = _BlockModel(problem, x0)
    opt = RuleOptimizer(model.parameters(), rule, lr=lr, blocks="tensor")
    x = x0.unsqueeze(0).clone()
    st = rule.init(x, problem.blocks)
    for _ in range(50):
        model.set_grads()
        opt.step()
        step, st = rule.update(problem.grad(x), st, x, lr, problem.blocks)
        x = x + step
        assert _close(model.flat(), x[0], 1e-12)
    ref = hs.engine.run(problem, rule, [lr], seeds=[0], steps=50, record="loss", fast=False, stop_early=False)
    assert np.isfinite(ref.losses[0]).all() and len(ref.losses[0]) == 51 and ref.losses[0][-1] < ref.losses[0][0]
    assert _close(model.flat(), ref.x_final[0].to(F64), 1e-12)
    rs = opt.rule_state()  # the read-out: the rule's state on the flat row
    for k, v in st.fields().items():
        assert _close(rs.fields()[k], v, 1e-12), k
    assert rs.count == 50


def _steps_equal_the_flat_rule(net, opt, rule, blocks, X, y, steps, lr=1e-2):
    """Step ``opt`` (lr 1e-2) and ``rule`` on the concatenated parameters with partition ``blocks``
    side by side; the parameters agree to 1e-12 after every step. Returns the rule's state."""
    ps = list(net.parameters())
    x = torch.cat([p.detach().reshape(-1) for p in ps]).unsqueeze(0)
    st = rule.init(x, blocks)
    for _ in range(steps):
        opt.zero_grad()
        _backward(net, X, y)
        g = torch.cat([p.grad.reshape(-1) for p in ps]).unsqueeze(0)
        opt.step()
        step, st = rule.update(g, st, x, lr, blocks)
        x = x + step
        assert _close(torch.cat([p.detach().reshape(-1) for p in ps]), x[0], 1e-12)
    return st


def test_block_adam_rows_equals_rule_on_flat_row():
    """blocks="rows": one block per output row of each matrix, the same partition as Blocks.from_sizes."""
    net = _mlp()
    X, y = _data()
    ps = list(net.parameters())
    opt = RuleOptimizer(ps, "block_adam", lr=1e-2, blocks="rows")
    sizes = []
    for p in ps:
        rows = p.shape[0] if p.dim() >= 2 else 1
        sizes += [p.numel() // rows] * rows
    blocks = Blocks.from_sizes(sizes)
    assert opt.blocks().sizes == blocks.sizes
    st = _steps_equal_the_flat_rule(net, opt, hs.optimizers.make("block_adam"), blocks, X, y, 30)
    v = torch.cat([opt.state[p]["exp_avg_sq"] for p in ps])
    assert v.shape == (blocks.n,) and _close(v, st.exp_avg_sq[0], 1e-12)


@pytest.mark.parametrize("how", ["single", "callable"])
def test_block_partitions_single_and_callable(how):
    """blocks="single" (one block over the group, its value replicated per parameter) and a callable
    partition equal the rule on the flat row with the same partition."""
    net = _mlp()
    X, y = _data()
    ps = list(net.parameters())
    if how == "single":
        spec, blocks = "single", Blocks.single(sum(p.numel() for p in ps))
    else:
        def spec(p):
            n = p.numel()
            return [n] if n < 4 else [n // 2, n - n // 2 - 1, 1]
        blocks = Blocks.from_sizes([s for p in ps for s in spec(p)])
    for name in ("block_adam", "block_normalized_gd"):
        net = _mlp()
        ps = list(net.parameters())
        opt = RuleOptimizer(ps, name, lr=1e-2, blocks=spec)
        _steps_equal_the_flat_rule(net, opt, hs.optimizers.make(name), blocks, X, y, 20)
        assert opt.blocks().sizes == blocks.sizes


# ----------------------------------------------------------------------------- per-group hyperparameters
def test_per_group_hyperparameters_match_torch_adam():
    a, b = _mlp(), _mlp()
    X, y = _data()
    pa, pb = list(a.parameters()), list(b.parameters())
    ours = RuleOptimizer([{"params": pa[:2], "betas": (0.5, 0.9)}, {"params": pa[2:4]}], "adam", lr=1e-2)
    tor = torch.optim.Adam([{"params": pb[:2], "betas": (0.5, 0.9)}, {"params": pb[2:4]}], lr=1e-2)
    assert ours.param_groups[0]["betas"] == (0.5, 0.9) and ours.param_groups[1]["betas"] == (0.9, 0.999)
    assert ours.param_groups[1]["eps"] == 1e-8 and ours.param_groups[1]["weight_decay"] == 0.0
    for t in range(40):
        if t == 15:  # a third group, added later, with its own values
            ours.add_param_group({"params": pa[4:], "lr": 3e-2, "eps": 1e-3, "weight_decay": 0.1})
            tor.add_param_group({"params": pb[4:], "lr": 3e-2, "eps": 1e-3, "weight_decay": 0.1})
        if t == 25:  # a value changed during the run: the group's rule is rebuilt
            ours.param_groups[1]["betas"] = (0.7, 0.95)
            tor.param_groups[1]["betas"] = (0.7, 0.95)
        for net, o in ((a, ours), (b, tor)):
            o.zero_grad()
            _backward(net, X, y)
            o.step()
        for qa, qb in zip(pa, pb):
            assert _close(qa.detach(), qb.detach(), 1e-10)
            if qb in tor.state:
                assert _close(ours.state[qa]["exp_avg_sq"], tor.state[qb]["exp_avg_sq"], 1e-10)


def test_lr_scheduler_with_momentum_cycling_matches_torch():
    """OneCycleLR sets lr and cycles betas[0] of the groups every step: the rule follows, as torch's Adam."""
    a, b = _mlp(), _mlp()
    X, y = _data()
    oa, ob = RuleOptimizer(a.parameters(), "adam", lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    sa = torch.optim.lr_scheduler.OneCycleLR(oa, max_lr=0.05, total_steps=30)
    sb = torch.optim.lr_scheduler.OneCycleLR(ob, max_lr=0.05, total_steps=30)
    for _ in range(30):
        for net, o, s in ((a, oa, sa), (b, ob, sb)):
            o.zero_grad()
            _backward(net, X, y)
            o.step()
            s.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert _close(pa.detach(), pb.detach(), 1e-10)


def test_group_keys_are_checked():
    net = _mlp()
    ps = list(net.parameters())
    with pytest.raises(ValueError, match="gamma"):
        RuleOptimizer([{"params": ps, "gamma": 0.1}], "adam", lr=1e-3)
    with pytest.raises(ValueError, match="momentum"):
        RuleOptimizer([{"params": ps, "momentum": 0.9}], "adam", lr=1e-3)
    with pytest.raises(ValueError, match="betas"):  # a value out of range: the registry's check
        RuleOptimizer([{"params": ps, "betas": (1.5, 0.9)}], "adam", lr=1e-3)
    o = RuleOptimizer(ps[:2], hs.optimizers.make("adam"), lr=1e-3)
    with pytest.raises(ValueError, match="cannot set betas"):
        o.add_param_group({"params": ps[2:], "betas": (0.5, 0.9)})
    o.add_param_group({"params": ps[2:], "lr": 1e-2})  # lr is always a group's own
    with pytest.raises(ValueError, match="pass hyperparameters"):
        RuleOptimizer(ps, hs.optimizers.make("adam"), lr=1e-3, betas=(0.5, 0.9))


# ----------------------------------------------------------------------------- state_dict round trip
@pytest.mark.parametrize("name,how", [("adam", "tensor"), ("sgd_momentum", "tensor"), ("block_adam", "rows"),
                                      ("signum", "tensor"), ("rmsprop", "tensor"), ("block_adam", "single")])
@pytest.mark.parametrize("via", ["memory", "file"])
def test_state_dict_round_trip_is_bit_for_bit(name, how, via, tmp_path):
    """10 steps, save, load into a fresh optimizer, 10 more = 20 uninterrupted steps, to the bit (float32)."""
    X, y = _data(torch.float32)
    hyper = dict(momentum=0.9) if name == "sgd_momentum" else dict(centered=True, momentum=0.3) \
        if name == "rmsprop" else {}

    def run(steps, net, opt):
        for _ in range(steps):
            opt.zero_grad()
            _backward(net, X, y)
            opt.step()

    ref = _mlp(dtype=torch.float32)
    run(20, ref, RuleOptimizer(ref.parameters(), name, lr=1e-2, blocks=how, **hyper))

    net = _mlp(dtype=torch.float32)
    opt = RuleOptimizer(net.parameters(), name, lr=1e-2, blocks=how, **hyper)
    run(10, net, opt)
    sd = opt.state_dict()
    if via == "file":
        torch.save(sd, tmp_path / "opt.pt")
        sd = torch.load(tmp_path / "opt.pt", weights_only=True)
    net2 = _mlp(dtype=torch.float32)
    net2.load_state_dict(net.state_dict())
    del opt, net
    opt2 = RuleOptimizer(net2.parameters(), name, lr=1e-2, blocks=how, **hyper)
    opt2.load_state_dict(sd)
    run(10, net2, opt2)
    for p, q in zip(net2.parameters(), ref.parameters()):
        assert torch.equal(p, q)


def test_loaded_state_is_a_copy():
    """Stepping after load_state_dict never writes into the dict that was loaded."""
    X, y = _data()
    net = _mlp()
    opt = RuleOptimizer(net.parameters(), "adam", lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        _backward(net, X, y)
        opt.step()
    sd = opt.state_dict()
    before = {k: {n: v.clone() for n, v in s.items()} for k, s in sd["state"].items()}
    opt.load_state_dict(sd)
    for _ in range(3):
        opt.zero_grad()
        _backward(net, X, y)
        opt.step()
    for k, s in sd["state"].items():
        assert all(torch.equal(v, before[k][n]) for n, v in s.items())


# ----------------------------------------------------------------------------- gradients
def test_none_grad_skips_the_parameter_like_torch():
    """A parameter with no gradient on some steps: no state change, its count does not advance (torch.optim.Adam)."""
    a, b = _mlp(), _mlp()
    X, y = _data()
    ours = RuleOptimizer(a.parameters(), "adam", lr=1e-2)
    tor = torch.optim.Adam(b.parameters(), lr=1e-2)
    for t in range(30):
        for net, o in ((a, ours), (b, tor)):
            o.zero_grad()
            _backward(net, X, y)
            ps = list(net.parameters())
            if t < 3:
                ps[1].grad = None          # never stepped yet: no state at all
            if t % 4 == 1:
                ps[4].grad = None          # skipped now and then: its count lags behind
            o.step()
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert _close(pa.detach(), pb.detach(), 1e-10)
            assert (pa in ours.state and "step" in ours.state[pa]) == (pb in tor.state and "step" in tor.state[pb])
            if pb in tor.state:
                assert float(ours.state[pa]["step"]) == float(tor.state[pb]["step"])
                assert _close(ours.state[pa]["exp_avg"], tor.state[pb]["exp_avg"], 1e-10)


def test_sparse_gradients_are_rejected():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(ValueError, match="sparse"):
        RuleOptimizer(emb.parameters(), "adam", lr=1e-2).step()


# ----------------------------------------------------------------------------- plain rules
def test_plain_rule_runs_per_parameter():
    """A rule given as a plain (init, update) pair, without transforms, is called per parameter on
    p.view(1, -1): for an elementwise rule that is the chain's result."""
    adam = hs.optimizers.make("adam")
    plain = hs.optimizers.Optimizer("plain_adam", adam.init, adam.update)
    a, b = _mlp(), _mlp()
    X, y = _data()
    oa = RuleOptimizer(a.parameters(), plain, lr=1e-2)
    ob = RuleOptimizer(b.parameters(), "adam", lr=1e-2)
    for t in range(10):
        for net, o in ((a, oa), (b, ob)):
            o.zero_grad()
            _backward(net, X, y)
            o.step()
        if t == 4:  # and it round-trips through state_dict
            oa.load_state_dict(oa.state_dict())
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


# ----------------------------------------------------------------------------- TensorList
def _lists():
    gen = torch.Generator().manual_seed(5)
    shapes = [(7,), (3, 5), (), (33,), (2, 2, 3)]
    mk = lambda: [torch.randn(s, generator=gen, dtype=F64) for s in shapes]  # noqa: E731
    return mk(), mk()


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


@pytest.mark.parametrize("expr", [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b, lambda a, b: -a,
    lambda a, b: 1 - a, lambda a, b: 0.3 - a * b, lambda a, b: 2.5 / a, lambda a, b: 0.7 * a + (1 - 0.7) * (b * b),
    lambda a, b: ops.sqrt(a * a + 1e-3), lambda a, b: ops.lerp(a, b, 0.1), lambda a, b: ops.sign(a - b),
    lambda a, b: ops.clamp_min(a, 0.2) / 3, lambda a, b: abs(a) ** 2, lambda a, b: torch.tensor(0.5) * a - b,
    lambda a, b: a / torch.tensor(3.0, dtype=F64), lambda a, b: torch.tensor(2.0, dtype=F64) / a,
])
@pytest.mark.parametrize("route", ["lists", "buffers", "recycled"])
def test_tensorlist_rounds_as_the_tensor_path(expr, route):
    """Every operation on a TensorList gives, to the bit, what it gives on the concatenated tensor,
    whether its operands are separate tensors, views of one buffer (as the optimizer's state), or
    computed into recycled buffers (as in a CPU step)."""
    a, b = _lists()
    ref = expr(_flat(a), _flat(b))
    if route == "lists":
        ta, tb = TensorList(a), TensorList(b)
    else:  # 0 + x: a buffer of the list's size holding x, owned by the computation
        ta, tb = TensorList(a).zeros_like() + TensorList(a), TensorList(b).zeros_like() + TensorList(b)
    adapter._LOCAL.pool = adapter._Pool() if route == "recycled" else None
    try:
        out = expr(ta, tb).tensors
    finally:
        adapter._LOCAL.pool = None
    assert torch.equal(_flat(out), ref)


def test_tensorlist_temporaries_are_overwritten_only_when_dead():
    a, b = _lists()
    ta, tb = TensorList(a), TensorList(b)
    m = ta * 2.0            # m is read twice below, so it must survive the first use
    u = m / (m + 1.0)
    v = m * 3.0
    assert torch.equal(_flat(u.tensors), _flat(a) * 2.0 / (_flat(a) * 2.0 + 1.0))
    assert torch.equal(_flat(v.tensors), _flat(a) * 2.0 * 3.0)
    assert torch.equal(_flat(tb.tensors), _flat(b)) and torch.equal(_flat(ta.tensors), _flat(a))


def test_tensorlist_rejects_inexact_operands():
    a, _ = _lists()
    tl = TensorList(a)
    with pytest.raises(TypeError):
        tl + torch.ones(3)
    with pytest.raises(TypeError):
        tl.lerp(1.0, 0.5)
    with pytest.raises(TypeError):
        bool(tl)


def test_tensorlist_row_reductions_span_the_list():
    a, _ = _lists()
    tl = TensorList(a)
    assert math.isclose(float(ops.row_norm(tl)), float(_flat(a).norm()), rel_tol=1e-14)
    assert math.isclose(float(ops.row_abs_sum(tl)), float(_flat(a).abs().sum()), rel_tol=1e-14)


def test_param_blocks_reductions():
    ps = [torch.randn(3, 4, dtype=F64), torch.randn(5, dtype=F64)]
    for how, blocks in (("tensor", Blocks.from_sizes([12, 5])), ("rows", Blocks.from_sizes([4, 4, 4, 5]))):
        pb = ParamBlocks(how, ps)
        assert pb.n == blocks.n and pb.sizes == blocks.sizes
        flat = _flat(ps).unsqueeze(0)
        mean = _flat(pb.mean(TensorList(ps)).tensors)
        assert torch.allclose(mean, blocks.mean(flat)[0], rtol=1e-14, atol=0)
        norms = _flat(pb.norms(TensorList(ps)).tensors)
        assert torch.allclose(norms, blocks.norms(flat)[0], rtol=1e-14, atol=0)
        ex = _flat(pb.expand(pb.mean(TensorList(ps))).tensors)
        assert torch.equal(ex, blocks.expand(blocks.mean(flat))[0]) or torch.allclose(
            ex, blocks.expand(blocks.mean(flat))[0], rtol=1e-14, atol=0)
        values = torch.arange(1.0, blocks.n + 1, dtype=F64)
        assert torch.equal(_flat(pb.expand(values).tensors), blocks.expand(values))
        assert _flat(pb.zeros(TensorList(ps)).tensors).shape == (blocks.n,)
