"""heterosim's engine against a naive torch.optim loop, JAX, and the bare kernel floor.

Every method runs the same sweep and measures the same thing, T(eps) = the first step with
||grad f(x_t)||_2 <= eps ||grad f(x_0)||_2, for every (learning rate, seed); the script checks
that all methods give the same T(eps) and prints wall times (cold: the first call in a fresh
process, compilation included; warm: best of --repeat calls), peak memory (the largest rise of
the resident set over the call, sampled) and the ratios the engine is judged by.

Methods
  naive   one torch.optim run per config, the loop a researcher writes by hand
  engine  heterosim.engine.run: all configs as one batch (fast path)
  plain   heterosim.engine.run(fast=False): the straightforward batched reference loop
  jax     jax.vmap over configs of a jax.jit-compiled jax.lax.scan over steps, with optax
          (optional: `pip install jax optax`, or the `bench` extra; skipped with a message
          when absent)
  floor   the work no method can skip: the batched block matvec alone with torch.bmm
          (quadratics), or the batched oracle alone (softmax), for every step
  floor_c the same work with heterosim's own C kernels (the engine's oracles: for a quadratic
          the error, block product, f and ||g||; for softmax regression the full oracle and the
          minibatch gradients), no update; the engine/floor target is judged against the
          faster of the two floors

Sweeps
  reference  Adam, SignSGD, SGD+momentum on a block-scale quadratic, d = 256 in 8 rotated
             blocks of 32, 16 learning rates x 8 seeds, 500 steps
  large      Adam, d = 4096 in 64 rotated blocks of 64, 32 lrs x 32 seeds = 1024 runs, 200 steps
  softmax    Adam with minibatch gradients on softmax regression (512 samples, 16 features,
             10 Zipf classes, batches of 32), 8 lrs x 4 seeds, 300 steps

Each (sweep, optimizer, method) runs in its own subprocess, so that cold times and peak memory
are its own. Torch and XLA are held to --threads threads.

    python benchmarks/engine_vs_jax.py [--sweeps reference,large,softmax] [--threads 2,1]
                                       [--repeat 3] [--methods naive,engine,plain,jax,floor,floor_c]
                                       [--fresh-cache]

Each sweep ends with its totals over its optimizers and issue 14's targets (the reference sweep
at least 100x the naive loop and 1.2x JAX warm, the large one 2x JAX warm, every cold sweep no
slower than JAX's cold one). On a machine with N cores, --threads N is the default setting a user
gets (torch's thread count); the engine then picks its own (heterosim.engine.threads_for).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time

SWEEPS = {
    "reference": dict(problem=("block_scale", dict(spread=2.0, gamma=0.5, n_blocks=8, block_size=32, seed=0)),
                      opts={"adam": ({}, 1e-3, (1e-4, 1.0)), "signsgd": ({}, 1e-1, (1e-4, 1.0)),
                            "sgd_momentum": ({"momentum": 0.9}, 1e-3, (1e-4, 1.0))},
                      n_lrs=16, seeds=8, steps=500, stochastic=False),
    "large": dict(problem=("block_scale", dict(spread=2.0, gamma=0.5, n_blocks=64, block_size=64, seed=0)),
                  opts={"adam": ({}, 1e-2, (1e-4, 1.0))}, n_lrs=32, seeds=32, steps=200, stochastic=False),
    "softmax": dict(problem=("softmax", dict(n=512, p=16, C=10, alpha=1.0, batch_size=32, seed=0)),
                    opts={"adam": ({}, 3e-1, (3e-3, 3e-1))}, n_lrs=8, seeds=4, steps=300, stochastic=True),
}
TORCH_OPTIM = {"adam": "Adam", "sgd_momentum": "SGD"}
DEFAULT_NAIVE_CONFIGS = {"large": 128}  # the naive loop is timed on a subset there and scaled up


# ------------------------------------------------------------------------------ worker side
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class _PeakRSS:
    """The largest rise of the resident set over a block, sampled every 2 ms (Linux)."""

    def __enter__(self):
        self.base = self.peak = _rss_mb() if os.path.exists("/proc/self/statm") else math.nan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            if math.isfinite(self.base):
                self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if math.isfinite(self.base):
            self.peak = max(self.peak, _rss_mb())
        self.mb = self.peak - self.base


def _setup(sweep, opt_name):
    import numpy as np
    import heterosim as hs
    spec = SWEEPS[sweep]
    pname, knobs = spec["problem"]
    p = hs.problems.make(pname, **knobs)
    hyper, eps, (lo, hi) = spec["opts"][opt_name]
    lrs = hs.engine.lr_grid(lo, hi, num=spec["n_lrs"])
    seeds = np.arange(spec["seeds"])
    return p, hyper, eps, lrs, seeds, spec["steps"], spec["stochastic"]


def _seed_generator(seed):
    import torch
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + 17)  # the engine's stream for a seed


def _naive(p, opt_name, hyper, eps, lrs, seeds, steps, stochastic, configs):
    """One torch.optim run per config; the same stopping rule (relative gradient norm) and, for a
    stochastic sweep, the same minibatch stream per seed as the engine."""
    import numpy as np
    import torch
    T = []
    for lr, s in configs:
        w = p.initial_point(int(s)).clone().requires_grad_(True)
        if opt_name == "signsgd":
            o = None
        else:
            o = getattr(torch.optim, TORCH_OPTIM[opt_name])([w], lr=float(lr), **hyper)
        gen = _seed_generator(s) if stochastic else None
        g0, hit = None, math.inf
        for t in range(steps + 1):
            g = p.grad(w.detach().unsqueeze(0))[0]
            n = float(torch.linalg.vector_norm(g))
            g0 = n if g0 is None else g0
            if n <= eps * g0:
                hit = t
                break
            if t == steps:
                break
            step_g = p.stochastic_grad(w.detach().unsqueeze(0), gen)[0] if stochastic else g
            if o is None:  # signSGD has no torch.optim class: its one-line update
                with torch.no_grad():
                    w.add_(torch.sign(step_g), alpha=-float(lr))
            else:
                w.grad = step_g
                o.step()
        T.append(hit)
    return np.array(T, dtype=float)


def _engine(p, opt_name, hyper, eps, lrs, seeds, steps, stochastic, fast):
    import heterosim as hs
    res = hs.engine.run(p, hs.optimizers.make(opt_name, **hyper), lrs, seeds, steps=steps, record="none",
                        target=("grad_l2", eps, True), stop_early=False, stochastic=stochastic, fast=fast)
    return res.iterations_to(eps, "grad_l2", relative=True)


def _floor_c(p, steps, stochastic, B, n_seeds):
    """heterosim's fused C oracle alone, every step, on B rows: the full oracle, and with
    ``stochastic`` the minibatch gradients of every row (one draw per seed)."""
    import torch
    X = p.initial_points([0]).expand(B, -1).contiguous()
    oracle = p.native_oracle(X) if hasattr(p, "native_oracle") else None
    minibatch = p.native_minibatch(X) if stochastic and hasattr(p, "native_minibatch") else None
    if oracle is None or (stochastic and minibatch is None):
        raise RuntimeError("no C oracle for this problem (or no compiler)")
    G, f, nrm = torch.empty_like(X), X.new_empty(B), X.new_empty(B)
    gens = [torch.Generator().manual_seed(s) for s in range(n_seeds)]
    which = torch.arange(B) % n_seeds
    for _ in range(steps):
        if minibatch is not None:
            minibatch(X, G, torch.stack([p.draw_minibatch(g) for g in gens]), which)
        oracle(X, G, f, nrm)
    return None


def _floor(p, steps, stochastic, B):
    """The batched block matvec H (x - x*) for B rows, contiguous block-major (quadratics); the
    batched oracle (full gradient, and a minibatch gradient per step when stochastic) otherwise."""
    import torch
    X = p.initial_points([0]).expand(B, -1).contiguous()
    if getattr(p, "_stacked", None) is not None:
        n, db = p.blocks.n, p.blocks.sizes[0]
        Eb = (X - p.x_star).view(B, n, db).transpose(0, 1).contiguous()
        Wb, H = torch.empty_like(Eb), p._stacked
        for _ in range(steps):
            torch.bmm(Eb, H, out=Wb)
        return None
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        p.loss_and_grad(X)
        if stochastic:
            p.stochastic_grad(X, gen)
    return None


def _jax(p, opt_name, hyper, eps, lrs, seeds, steps, stochastic):
    """jax.vmap over configs of a jitted jax.lax.scan over steps, optax for the rule. Returns a
    function of no arguments that runs the sweep and returns T(eps) (numpy)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    jax.config.update("jax_enable_x64", True)
    if opt_name == "adam":
        make = lambda lr: optax.adam(lr)  # noqa: E731  (eps = 1e-8 outside the sqrt, as torch)
    elif opt_name == "sgd_momentum":
        make = lambda lr: optax.sgd(lr, momentum=hyper.get("momentum", 0.9))  # noqa: E731
    elif opt_name == "signsgd":
        make = lambda lr: optax.chain(optax.scale_by_sign(), optax.scale_by_learning_rate(lr))  # noqa: E731
    else:
        raise ValueError(opt_name)
    S = len(seeds)
    lr_rows = np.repeat(np.asarray(lrs, float), S)
    seed_rows = np.tile(np.arange(S), len(lrs))
    X0 = p.initial_points([int(s) for s in seeds]).numpy()[seed_rows]

    if hasattr(p, "block_hessians"):
        H = jnp.asarray(np.stack([h.numpy() for h in p.block_hessians]))
        xs = jnp.asarray(p.x_star.numpy())
        n, db = H.shape[0], H.shape[1]

        def full_grad(x):
            return jnp.einsum("nk,nkj->nj", (x - xs).reshape(n, db), H).reshape(-1)

        def step_grad(x, key_t):
            return full_grad(x)
        keys = jnp.zeros((S, steps), dtype=jnp.int32)
    else:
        F = jnp.asarray(p.features.numpy())
        Y = jax.nn.one_hot(jnp.asarray(p.labels.numpy()), p.C, dtype=jnp.float64)
        C, q, ridge = p.C, p.p, p.ridge

        def grad_on(x, Fb, Yb):
            W = x.reshape(C, q)
            P = jax.nn.softmax(Fb @ W.T, axis=1)
            return ((P - Yb).T @ Fb / Fb.shape[0] + ridge * W).reshape(-1)

        def full_grad(x):
            return grad_on(x, F, Y)
        import torch
        draws = []  # the engine's minibatch stream: one randperm per step from each seed's generator
        for s in seeds:
            gen = _seed_generator(s)
            draws.append(torch.stack([torch.randperm(p.n, generator=gen)[: p.batch_size] for _ in range(steps)]))
        keys = jnp.asarray(torch.stack(draws).numpy())  # (S, steps, batch)

        def step_grad(x, idx):
            return grad_on(x, F[idx], Y[idx])

    def one(x0, lr, seed_row):
        tx = make(lr)
        g0 = full_grad(x0)
        thr = eps * jnp.linalg.norm(g0)

        def body(carry, inp):
            x, state, hit = carry
            t, key_t = inp
            u, state = tx.update(step_grad(x, key_t), state, x)
            x = optax.apply_updates(x, u)
            hit = jnp.where((jnp.linalg.norm(full_grad(x)) <= thr) & jnp.isinf(hit), t, hit)
            return (x, state, hit), None

        hit0 = jnp.where(jnp.linalg.norm(g0) <= thr, 0.0, jnp.inf)
        ts = jnp.arange(1, steps + 1, dtype=jnp.float64)
        (x, state, hit), _ = jax.lax.scan(body, (x0, tx.init(x0), hit0), (ts, keys[seed_row]))
        return hit

    fn = jax.jit(jax.vmap(one))
    args = (jnp.asarray(X0), jnp.asarray(lr_rows), jnp.asarray(seed_rows))
    return lambda: np.asarray(fn(*args).block_until_ready())


def worker(job):
    threads = job["threads"]
    if job["method"] == "jax":
        os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                                   f"intra_op_parallelism_threads={threads}")
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401
        except ImportError as e:
            return {"skipped": f"JAX is not installed ({e.name}); `pip install jax optax` to compare"}
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    p, hyper, eps, lrs, seeds, steps, stochastic = _setup(job["sweep"], job["opt"])
    p.f_star  # noqa: B018  (ground truth computed before timing, where it is lazy)
    method, B = job["method"], len(lrs) * len(seeds)
    configs = [(lr, s) for lr in lrs for s in seeds]
    subset = None
    if method == "naive":
        k = job.get("naive_configs") or B
        subset = np.linspace(0, B - 1, min(k, B)).round().astype(int)
        run = lambda: _naive(p, job["opt"], hyper, eps, lrs, seeds, steps, stochastic,  # noqa: E731
                             [configs[i] for i in subset])
    elif method in ("engine", "plain"):
        run = lambda: _engine(p, job["opt"], hyper, eps, lrs, seeds, steps, stochastic,  # noqa: E731
                              fast=method == "engine")
    elif method == "floor":
        run = lambda: _floor(p, steps, stochastic, B)  # noqa: E731
    elif method == "floor_c":
        if getattr(p, "native_oracle", None) is None or p.native_oracle(p.initial_points([0])) is None:
            return {"skipped": "no C oracle for this problem (or no C compiler)"}
        run = lambda: _floor_c(p, steps, stochastic, B, len(seeds))  # noqa: E731
    elif method == "jax":
        run = None
    else:
        raise ValueError(method)
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        if method == "jax":
            run = _jax(p, job["opt"], hyper, eps, lrs, seeds, steps, stochastic)
        T = run()
        cold = time.perf_counter() - t0
    warm = []
    for _ in range(job["repeat"] if method != "naive" else job.get("naive_repeat", 1)):
        t0 = time.perf_counter()
        run()
        warm.append(time.perf_counter() - t0)
    scale = B / len(subset) if subset is not None else 1.0
    return {"cold": cold * scale, "warm": min(warm) * scale if warm else cold * scale,
            "T": None if T is None else [float(v) for v in T],
            "subset": None if subset is None else [int(i) for i in subset],
            "scaled": scale != 1.0, "peak_mb": mem.mb, "B": B}


# ------------------------------------------------------------------------------ driver side
def _spawn(job, fresh_cache=False):
    import shutil
    import tempfile
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # heterosim from this checkout
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cache = tempfile.mkdtemp(prefix="heterosim-bench-cache-") if fresh_cache else None
    if cache:
        env["HETEROSIM_CACHE"] = cache
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        return {"skipped": "failed: " + done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_T(ref, other, subset=None):
    import numpy as np
    a = np.asarray(ref) if subset is None else np.asarray(ref)[subset]
    b = np.asarray(other)
    return int((a != b).sum()), len(a)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweeps", default="reference,large,softmax")
    ap.add_argument("--opts", default=None, help="restrict optimizers (comma list)")
    ap.add_argument("--methods", default="naive,engine,plain,jax,floor,floor_c")
    ap.add_argument("--threads", default="1", help="comma list, e.g. 1,2")
    ap.add_argument("--repeat", type=int, default=3, help="warm calls per method (best is kept)")
    ap.add_argument("--naive-configs", type=int, default=None,
                    help="time the naive loop on this many configs (evenly spread) and scale up; "
                         f"default: all, except {DEFAULT_NAIVE_CONFIGS}")
    ap.add_argument("--fresh-cache", action="store_true",
                    help="heterosim's runs build their C kernels in an empty cache, so that their cold time "
                         "includes compiling them (as on a machine's first run)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    methods = [m for m in args.methods.split(",") if m]
    failures = 0
    for threads in [int(t) for t in args.threads.split(",")]:
        for sweep in args.sweeps.split(","):
            spec = SWEEPS[sweep]
            results = []
            for opt in spec["opts"]:
                if args.opts and opt not in args.opts.split(","):
                    continue
                res = {}
                for m in methods:
                    job = dict(sweep=sweep, opt=opt, method=m, threads=threads, repeat=args.repeat,
                               naive_configs=args.naive_configs or DEFAULT_NAIVE_CONFIGS.get(sweep))
                    res[m] = _spawn(job, fresh_cache=args.fresh_cache and m in ("engine", "plain", "floor_c"))
                failures += _report(sweep, opt, spec, threads, res)
                results.append(res)
            _sweep_total(sweep, threads, results)
    return 1 if failures else 0


def _report(sweep, opt, spec, threads, res):
    pname, knobs = spec["problem"]
    B = spec["n_lrs"] * spec["seeds"]
    print(f"\n== {sweep}: {opt} on {pname} {knobs}, {B} runs ({spec['n_lrs']} lrs x {spec['seeds']} seeds), "
          f"{spec['steps']} steps{', stochastic' if spec['stochastic'] else ''}; threads={threads}")
    print(f"{'method':10s} {'cold s':>9s} {'warm s':>9s} {'peak MB':>8s}  T(eps) vs engine")
    eng = res.get("engine", {})
    bad = 0
    for m, r in res.items():
        if "skipped" in r:
            print(f"{m:10s} skipped: {r['skipped']}")
            continue
        note = ""
        if r.get("T") is not None and "T" in eng and m != "engine":
            wrong, n = _same_T(eng["T"], r["T"], r.get("subset"))
            note = f"{n - wrong}/{n} identical" + (f"  ({wrong} DIFFER)" if wrong else "")
            bad += wrong > 0
        elif m == "engine" and r.get("T") is not None:
            note = f"reached by {sum(math.isfinite(t) for t in r['T'])}/{len(r['T'])} runs"
        scaled = " (scaled from a subset)" if r.get("scaled") else ""
        print(f"{m:10s} {r['cold']:9.3f} {r['warm']:9.3f} {r['peak_mb']:8.1f}  {note}{scaled}")
    if "warm" in eng:
        e = eng["warm"]
        parts = []
        for m, label in (("naive", "naive/engine"), ("plain", "plain/engine"), ("jax", "JAX warm/engine")):
            if "warm" in res.get(m, {}):
                parts.append(f"{label} = {res[m]['warm'] / e:.2f}x")
        if "cold" in res.get("jax", {}):
            parts.append(f"JAX cold/engine cold = {res['jax']['cold'] / eng['cold']:.2f}x")
        floors = {m: res[m]["warm"] for m in ("floor", "floor_c") if "warm" in res.get(m, {})}
        for m, v in floors.items():
            parts.append(f"engine/{m} = {e / v:.2f}x")
        print("ratios: " + ", ".join(parts))
        checks = []
        if sweep == "reference" and "warm" in res.get("naive", {}):
            checks.append(("naive/engine >= 100", res["naive"]["warm"] / e >= 100))
        if sweep in ("reference", "large") and "warm" in res.get("jax", {}):
            checks.append(("JAX warm/engine >= 1", res["jax"]["warm"] / e >= 1))
        if sweep == "large" and floors:
            checks.append(("engine/(faster floor) <= 2", e / min(floors.values()) <= 2))
        if checks:
            print("targets (issue 7): " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks))
    return bad


TARGETS = {"reference": (100.0, 1.2), "large": (None, 2.0)}
"""Issue 14's targets for a whole sweep at default settings: (naive/engine, JAX warm/engine), and
JAX cold/engine cold >= 1 for every sweep (a cold first sweep no slower than JAX's)."""


def _sweep_total(sweep, threads, results):
    """The sweep's sums over its optimizers (the issue judges the sweep, not one rule)."""
    def total(m, key):
        vals = [r[m][key] for r in results if key in r.get(m, {})]
        return sum(vals) if len(vals) == len(results) else None
    eng, eng_cold = total("engine", "warm"), total("engine", "cold")
    if eng is None:
        return
    parts, checks = [f"engine {eng:.3f} s warm, {eng_cold:.3f} s cold"], []
    naive_t, jax_t = TARGETS.get(sweep, (None, None))
    naive, jax, jax_cold = total("naive", "warm"), total("jax", "warm"), total("jax", "cold")
    if naive is not None:
        parts.append(f"naive/engine = {naive / eng:.1f}x")
        if naive_t:
            checks.append((f"naive/engine >= {naive_t:g}", naive / eng >= naive_t))
    if jax is not None:
        parts.append(f"JAX warm/engine = {jax / eng:.2f}x, JAX cold/engine cold = {jax_cold / eng_cold:.2f}x")
        if jax_t:
            checks.append((f"JAX warm/engine >= {jax_t:g}", jax / eng >= jax_t))
        checks.append(("JAX cold/engine cold >= 1", jax_cold / eng_cold >= 1))
    print(f"\n== {sweep} sweep, all its optimizers, threads={threads}: " + ", ".join(parts))
    if checks:
        print("targets (issue 14): " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks))


if __name__ == "__main__":
    raise SystemExit(main())
