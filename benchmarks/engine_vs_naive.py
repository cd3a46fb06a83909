"""Engine against the naive per-config torch.optim loop, on one sweep, in one process.

Reference sweep (issue 2): Adam on a block-scale quadratic with d = 256 in 8 rotated
blocks of 32, 16 learning rates x 8 seeds, 500 steps. Both methods measure T(eps) for
every config (||g_t|| <= 1e-3 ||g_0||); the script checks that every T agrees and prints
both wall times and their ratio.

    python benchmarks/engine_vs_naive.py [--steps 500] [--threads 1] [--opt adam]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import heterosim as hs

TORCH_EQUIV = {  # our rule -> (torch.optim class, kwargs)
    "adam": (torch.optim.Adam, {}),
    "sgd_momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "sgd": (torch.optim.SGD, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
}


def naive(p, opt_name, lrs, seeds, steps, eps):
    """One torch.optim run per (lr, seed), the loop a researcher would write by hand."""
    cls, kw = TORCH_EQUIV[opt_name]
    T = []
    for lr in lrs:
        for s in seeds:
            w = p.initial_point(int(s)).clone().requires_grad_(True)
            o = cls([w], lr=float(lr), **kw)
            g0 = None
            hit = math.inf
            for t in range(steps + 1):
                g = p.grad(w.detach().unsqueeze(0))[0]
                n = float(g.norm())
                if g0 is None:
                    g0 = n
                if n <= eps * g0:
                    hit = t
                    break
                if t == steps:
                    break
                w.grad = g
                o.step()
            T.append(hit)
    return np.array(T, dtype=float)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--opt", default="adam", choices=sorted(TORCH_EQUIV))
    ap.add_argument("--eps", type=float, default=1e-3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = hs.problems.make("block_scale", spread=2.0, gamma=0.5, n_blocks=8, block_size=32, seed=0)
    lrs = hs.engine.lr_grid(1e-4, 1.0, num=16)
    seeds = list(range(8))
    _, kw = TORCH_EQUIV[args.opt]
    opt = hs.optimizers.make(args.opt, **kw)

    t0 = time.perf_counter()
    T_naive = naive(p, args.opt, lrs, seeds, args.steps, args.eps)
    t_naive = time.perf_counter() - t0

    hs.engine.run(p, opt, lrs[:2], seeds[:1], steps=5, record="none")  # warm-up
    t0 = time.perf_counter()
    res = hs.engine.run(p, opt, lrs, seeds, steps=args.steps, record="none",
                        target=("grad_l2", args.eps, True), stop_early=False)
    t_engine = time.perf_counter() - t0
    T_engine = res.iterations_to(args.eps, "grad_l2", relative=True)

    same = np.array_equal(T_naive, T_engine)
    print(f"sweep: {args.opt}, d={p.d} in {p.blocks.n} blocks, {len(lrs)} lrs x {len(seeds)} seeds, "
          f"{args.steps} steps, torch threads={args.threads}")
    print(f"naive per-config torch.optim loop : {t_naive:8.3f} s")
    print(f"heterosim engine (one batch)      : {t_engine:8.3f} s")
    print(f"ratio naive / engine              : {t_naive / t_engine:8.1f} x")
    print(f"T(eps) identical for all {len(T_naive)} configs: {same}  "
          f"(reached: {int(np.isfinite(T_naive).sum())})")
    if not same:
        bad = np.nonzero(T_naive != T_engine)[0]
        print("mismatches (row, naive, engine):", [(int(i), T_naive[i], T_engine[i]) for i in bad[:10]])
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
