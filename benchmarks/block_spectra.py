"""Block Hessian spectra of every parameter block of a tiny transformer, on CPU: batched against a loop.

* batched: :func:`heterosim.measures.block_slq` -- every block and every probe advance together, one
  vmapped forward-over-reverse call of (blocks x probes) Hessian-vector products per Lanczos step;
* sequential: the way per-layer SLQ is usually written -- for each block, for each probe, a Lanczos run
  whose every step is one (unbatched) Hessian-vector product of the block's vector.

Both use the same probes and the same Lanczos code, so the Ritz values must agree (printed), and the
time ratio measures what batching buys. The model is built here: 2 pre-LN layers of plain-math
causal self-attention (fused attention kernels cannot differentiate twice) and a GELU MLP, in float64.

    python benchmarks/block_spectra.py [--steps 10] [--probes 4] [--threads 0]
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from heterosim import measures as M


class Layer(torch.nn.Module):
    def __init__(self, e: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(e)
        self.qkv = torch.nn.Linear(e, 3 * e)
        self.proj = torch.nn.Linear(e, e)
        self.ln2 = torch.nn.LayerNorm(e)
        self.fc = torch.nn.Linear(e, 4 * e)
        self.out = torch.nn.Linear(4 * e, e)

    def attention(self, x):
        B, T, e = x.shape
        q, k, v = self.qkv(x).split(e, dim=-1)
        q, k, v = (t.reshape(B, T, self.heads, e // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(e // self.heads)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, e))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class TinyTransformer(torch.nn.Module):
    def __init__(self, vocab: int = 32, e: int = 16, heads: int = 2, layers: int = 2, context: int = 8):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, e)
        self.wpe = torch.nn.Embedding(context, e)
        self.layers = torch.nn.ModuleList(Layer(e, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(e)
        self.head = torch.nn.Linear(e, vocab, bias=False)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln_f(x))


def sequential_block_spectra(loss_fn, x, blocks, steps, probes, seed):
    """One Lanczos run per (block, probe), one unbatched Hessian-vector product per step."""
    grad_f = torch.func.grad(loss_fn)
    V = M.draw_probes(x.numel(), probes, "gaussian", seed, x.dtype)
    nodes = torch.full((blocks.n, probes, min(steps, max(blocks.sizes))), math.nan, dtype=x.dtype)
    weights = torch.zeros_like(nodes)
    for b, idx in enumerate(blocks.slices()):
        def matvec(W, idx=idx):
            u = torch.zeros_like(x)
            u[idx] = W[0]
            return torch.func.jvp(grad_f, (x,), (u,))[1][idx].unsqueeze(0)

        for j in range(probes):
            alpha, beta, _ = M.lanczos(matvec, V[j, idx], steps)
            th, w = M.gauss_quadrature(alpha, beta)
            nodes[b, j, : th.numel()], weights[b, j, : w.numel()] = th, w
    return nodes, weights


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="Lanczos steps per block (capped at the block size)")
    ap.add_argument("--probes", type=int, default=4, help="random probes per block")
    ap.add_argument("--batch", type=int, default=4, help="sequences in the loss")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    model = TinyTransformer().double().eval()
    idx = torch.randint(0, 32, (args.batch, 9), generator=torch.Generator().manual_seed(args.seed))
    loss_fn, x0, blocks = M.flatten_model(
        model, lambda fwd: F.cross_entropy(fwd(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten()))
    print(f"tiny transformer: d = {x0.numel()} parameters in {blocks.n} blocks "
          f"(sizes {min(blocks.sizes)}..{max(blocks.sizes)}); {args.probes} probes, {args.steps} Lanczos steps; "
          f"torch threads {torch.get_num_threads()}")
    M.block_hvp(loss_fn, x0, blocks, x0)                       # warm-up: first torch.func call imports lazily

    t0 = time.perf_counter()
    res = M.block_slq(loss_fn, x0, blocks, steps=args.steps, probes=args.probes, seed=args.seed)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    nodes, weights = sequential_block_spectra(loss_fn, x0, blocks, args.steps, args.probes, args.seed)
    t_seq = time.perf_counter() - t0

    hvps = args.probes * sum(min(args.steps, s) for s in blocks.sizes)
    agree = float(torch.nan_to_num((res.nodes - nodes).abs(), nan=0.0).max())
    scale = float(torch.nan_to_num(nodes, nan=0.0).abs().max())
    js0, _ = M.js0(res.densities, res.grid)
    print(f"block Hessian-vector products: {hvps}")
    print(f"batched (vmap, all blocks and probes per step): {t_batched:8.2f} s")
    print(f"sequential (per block, per probe, per step):    {t_seq:8.2f} s")
    print(f"speed-up sequential / batched: {t_seq / t_batched:.1f}x")
    print(f"max |Ritz value difference| = {agree:.2e} (largest |Ritz value| {scale:.3g})")
    top = torch.nan_to_num(res.nodes, nan=-math.inf).amax((1, 2))
    print(f"top Ritz value per block: min {float(top.min()):.3g}, max {float(top.max()):.3g}; JS0 = {js0:.3f}")


if __name__ == "__main__":
    main()
