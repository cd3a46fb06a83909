"""How to make a rule's step fast from its one source: the options, measured side by side.

The engine needs x + step and the new state of a chain of primitives on a (B, d) float64 batch,
thousands of times per sweep, and the same bits as the chain's tensor ``update`` (the
engine's "One T per config"). Candidates, each fed the chain itself, nothing written per rule:

  eager     the chain's ``update`` on tensors (torch ops, one pass over memory per operation)
  fused_c   heterosim.optimizers.fused: the chain traced into one C loop, built with cffi
  compile   torch.compile (inductor: C++ on CPU) over the same ``update``
  numba     the same trace emitted as Python and compiled by numba.njit (optional; skipped
            when numba is not installed)

For each: the cold time of the first step in this process (tracing and compiling included;
fused_c and numba also keep a disk cache, so a second process is warm, see --fresh-cache),
the warm time per step (best of 5 x 200 steps), and whether its step equals eager's to the bit.
Torch is held to one thread (the engine's setting at these sizes).

    python benchmarks/step_options.py [--rule adam] [--B 128] [--d 256]
"""
from __future__ import annotations

import argparse
import math
import os
import re
import time

import torch


def _bench(fn, n=200, repeat=5):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def _numba_step(opt, like):
    """The fused trace as a numba kernel (C lines rewritten to Python), or a reason it cannot be."""
    try:
        import numba
    except ImportError:
        return None, "numba not installed (pip install numba)"
    from heterosim.optimizers import fused
    source, _, variants = fused.kernel_source(opt, like)
    fname = variants[fused._numbers(opt.transforms, 2)[1]]  # the variant of steps t >= 2
    body = source[source.index(f"void {fname}("):]
    body = body[:body.index("\n}") + 2]
    args = re.search(r"\((.*?)\)", body).group(1)
    names = [a.split()[-1] for a in args.split(",")]
    reason = ("no fma in numba: torch's fused lerp cannot be reproduced (unfused lerp used, bits differ)"
              if "lerp_f(" in body else None)
    lines = []
    for ln in body.split("\n"):
        ln = ln.strip()
        m = re.match(r"const double (t\d+) = (.*);", ln)
        if m:
            expr = re.sub(r"\((-?0x[0-9a-fp.+-]+)\)", lambda mm: repr(float.fromhex(mm.group(1))), m.group(2))
            expr = expr.replace("lerp_f(", "lerp_p(").replace("sqrt(", "math.sqrt(")
            expr = re.sub(r"(\w+)\[j\]", r"\1[j]", expr)
            lines.append((m.group(1), expr))
        m = re.match(r"(s\d+|out)\[j\] = (t\d+);", ln)
        if m:
            lines.append((f"{m.group(1)}[j]", m.group(2)))
    consts = [(n, e) for n, e in lines  # no t-variable, array or lr: the same value for the whole call
              if not re.search(r"\bt\d+\b|\[j\]|\blr\b", e) and not n.endswith("[j]")]
    per = [(n, e) for n, e in lines if (n, e) not in consts]
    arrays = [n[1:] for n in names if n.startswith("p") and n not in ("plr",)]
    src = ["def kern(r0, r1, d, " + ", ".join(arrays) + ", lrs, ls, " + ", ".join(n for n in names if n.startswith("a")) + "):"]
    src += [f"    {n} = {e}" for n, e in consts]
    src += ["    for r in range(r0, r1):", "        lr = lrs[r * ls]"]
    src += ["        for j in range(r * d, (r + 1) * d):"]
    src += [f"            {n} = {e}" for n, e in per]
    ns = {"math": math}
    pre = ("def sgn(g):\n    return float(g > 0.0) - float(g < 0.0)\n"
           "def lerp_p(a, b, w):\n    diff = b - a\n    return a + w * diff if w < 0.5 else b - diff * (1.0 - w)\n")
    exec(pre, ns)
    ns["sgn"] = numba.njit(ns["sgn"])
    ns["lerp_p"] = numba.njit(ns["lerp_p"])
    exec("\n".join(src), ns)
    kern = numba.njit(ns["kern"], fastmath=False)
    return kern, reason


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rule", default="adam")
    ap.add_argument("--B", type=int, default=128)
    ap.add_argument("--d", type=int, default=256)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    import heterosim as hs
    from heterosim.blocks import Blocks
    from heterosim.engine import map_tensors, tensors_of
    from heterosim.optimizers import fused
    opt = hs.optimizers.make(a.rule)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(a.B, a.d, dtype=torch.float64, generator=gen)
    g = torch.randn(a.B, a.d, dtype=torch.float64, generator=gen)
    lr = torch.logspace(-4, 0, a.B, dtype=torch.float64).unsqueeze(1)
    blocks = Blocks.single(a.d)
    s1 = opt.update(g, opt.init(x, blocks), x, lr, blocks)[1]  # a state after one step
    ref_step, ref_state = opt.update(g, s1, x, lr, blocks)
    ref_out = x + ref_step
    print(f"{a.rule} step on a ({a.B}, {a.d}) float64 batch, 1 thread; cold = first call in this process")
    print(f"{'option':10s} {'cold s':>8s} {'warm us/step':>13s}  bit-equal to eager")

    print(f"{'eager':10s} {'-':>8s} {_bench(lambda: opt.update(g, s1, x, lr, blocks)) * 1e6:13.1f}  (the reference)")

    t0 = time.perf_counter()
    step = fused.stepper(opt, x)
    cold = time.perf_counter() - t0
    if step is None:
        print(f"{'fused_c':10s} unavailable: {hs._native.why_off()}")
    else:
        own = map_tensors(torch.clone, s1)
        out = torch.empty_like(x)
        own = step(g, own, x, lr, out)
        same = torch.equal(out, ref_out) and all(torch.equal(p, q) for p, q in zip(tensors_of(own), tensors_of(ref_state)))
        work = map_tensors(torch.clone, s1)
        print(f"{'fused_c':10s} {cold:8.2f} {_bench(lambda: step(g, work, x, lr, out)) * 1e6:13.1f}  {same}")

    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")  # a cold compile, as a first run sees it
    comp = torch.compile(lambda g, leaves, x, lr: opt.update(g, _rebuild(s1, leaves), x, lr, blocks))
    t0 = time.perf_counter()
    try:
        got, st = comp(g, tensors_of(s1), x, lr)
        cold = time.perf_counter() - t0
        same = torch.equal(x + got, ref_out) and all(torch.equal(p, q) for p, q in zip(tensors_of(st), tensors_of(ref_state)))
        print(f"{'compile':10s} {cold:8.2f} {_bench(lambda: comp(g, tensors_of(s1), x, lr)) * 1e6:13.1f}  {same}")
    except Exception as e:  # noqa: BLE001 - report any failure of the option as its result
        print(f"{'compile':10s} failed: {type(e).__name__}: {str(e)[:200]}")

    t0 = time.perf_counter()
    kern, why = _numba_step(opt, x)
    if kern is None:
        print(f"{'numba':10s} skipped: {why}")
        return
    leaves = [v.clone() for v in tensors_of(s1)]
    out = torch.empty_like(x)
    floats = [v for _, _, v in fused._numbers(opt.transforms, 2)[0]]
    arrs = [x.view(-1).numpy(), g.view(-1).numpy(), out.view(-1).numpy()] + [v.view(-1).numpy() for v in leaves]
    kern(0, a.B, a.d, *arrs, lr.view(-1).numpy(), 1, *floats)
    cold = time.perf_counter() - t0
    same = torch.equal(out, ref_out)
    warm = _bench(lambda: kern(0, a.B, a.d, *arrs, lr.view(-1).numpy(), 1, *floats))
    print(f"{'numba':10s} {cold:8.2f} {warm * 1e6:13.1f}  {same}{'; ' + why if why else ''}")


def _rebuild(template, leaves):
    from heterosim.optimizers.fused import _rebuild as rebuild
    return rebuild(template, list(leaves), template.count)


if __name__ == "__main__":
    main()
