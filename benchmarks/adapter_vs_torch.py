"""RuleOptimizer's Adam step against torch.optim.Adam, on a model's parameters (run by hand).

Measures only the optimizer step, on fixed gradients (float32), warm, best of several repeats,
the three optimizers interleaved: torch.optim.Adam(foreach=True), torch.optim.Adam(foreach=False)
and heterosim's RuleOptimizer(..., "adam"); prints ms/step and the ratio RuleOptimizer /
torch foreach. CPU at torch's default number of threads and at 1 thread, and CUDA when available.

Models: ``compact`` (the compact transformer of heterosim.bridge.models at the CLI's default
size, 2 layers, d = 64), ``compact-wide`` (4 layers, d = 256: a few million parameters, where
memory traffic dominates), ``minilm`` (all-MiniLM-L6-v2, when the local package is installed;
skipped with a message otherwise) and ``minilm-shaped`` (tensors of MiniLM's shapes, no weights
needed: 22.7M parameters in 101 tensors).

    python benchmarks/adapter_vs_torch.py [--models compact minilm] [--repeats 7] [--steps 20]
"""
from __future__ import annotations

import argparse
import time

import torch

from heterosim.bridge.models import TinyTransformer
from heterosim.optimizers import RuleOptimizer


def compact(layers=2, d_model=64):
    return list(TinyTransformer(ln="pre", layers=layers, d_model=d_model, heads=max(1, d_model // 32), n_classes=10,
                                in_dim=16, max_len=64, seed=0).parameters())


def minilm_shaped(vocab=30522, d=384, layers=6, ffn=1536, max_len=512, classes=2):
    """Parameters with the shapes of all-MiniLM-L6-v2 (BERT, 6 layers, d = 384) and a linear head."""
    shapes = [(vocab, d), (max_len, d), (2, d), (d,), (d,)]
    for _ in range(layers):
        shapes += [(d, d), (d,)] * 4 + [(d,), (d,), (ffn, d), (ffn,), (d, ffn), (d,), (d,), (d,)]
    shapes += [(d, d), (d,), (classes, d), (classes,)]
    gen = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.02) for s in shapes]


def minilm():
    from heterosim.bridge.hf import load_minilm
    return [p for p in load_minilm(2)[0].parameters() if p.requires_grad]


MODELS = {"compact": compact, "compact-wide": lambda: compact(4, 256), "minilm": minilm,
          "minilm-shaped": minilm_shaped}


def _copies(params, device):
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(p.shape, generator=gen) * 1e-3 for p in params]
    out = []
    for _ in range(3):
        ps = [torch.nn.Parameter(p.detach().clone().to(device)) for p in params]
        for p, g in zip(ps, grads):
            p.grad = g.to(device)
        out.append(ps)
    return out


def _time(opt, steps, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync()
    return (time.perf_counter() - t) / steps


def bench(params, device, repeats, steps):
    a, b, c = _copies(params, device)
    opts = {"torch foreach": torch.optim.Adam(a, lr=1e-5, foreach=True),
            "torch for-loop": torch.optim.Adam(b, lr=1e-5, foreach=False),
            "RuleOptimizer": RuleOptimizer(c, "adam", lr=1e-5)}
    for o in opts.values():  # warm: state allocated, caches filled
        _time(o, 3, device)
    best = {k: float("inf") for k in opts}
    for _ in range(repeats):
        for k, o in opts.items():
            best[k] = min(best[k], _time(o, steps, device))
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=20, help="steps per repeat (the minimum over repeats is kept)")
    args = ap.parse_args(argv)
    default_threads = torch.get_num_threads()
    settings = [("cpu", default_threads), ("cpu", 1)] if default_threads > 1 else [("cpu", 1)]
    if torch.cuda.is_available():
        settings.append(("cuda", default_threads))
    print(f"torch {torch.__version__}; Adam step on fixed float32 gradients, ms/step (best of {args.repeats} x "
          f"{args.steps} steps)")
    print(f"{'model':<14} {'params':>10} {'tensors':>7} {'device':<6} {'threads':>7} {'torch foreach':>14} "
          f"{'torch loop':>11} {'RuleOptimizer':>14} {'ratio':>6}")
    for name in args.models:
        try:
            params = MODELS[name]()
        except (ImportError, ValueError, OSError) as e:
            print(f"{name:<14} skipped: {e}")
            continue
        n = sum(p.numel() for p in params)
        for dev, threads in settings:
            torch.set_num_threads(threads)
            best = bench(params, torch.device(dev), args.repeats, args.steps)
            ms = {k: v * 1e3 for k, v in best.items()}
            print(f"{name:<14} {n:>10,} {len(params):>7} {dev:<6} {threads:>7} {ms['torch foreach']:>14.3f} "
                  f"{ms['torch for-loop']:>11.3f} {ms['RuleOptimizer']:>14.3f} "
                  f"{ms['RuleOptimizer'] / ms['torch foreach']:>6.2f}")
        torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
