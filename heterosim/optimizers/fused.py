r"""The engine's fast step, generated from the primitives: a chain of elementwise primitives
traced into one fused C loop.

A rule whose primitives are all elementwise (:attr:`Optimizer.elementwise`) is run once on
symbols instead of tensors: every ``+ - * /``, ``sqrt``, ``sign`` and ``lerp`` its primitives
apply becomes one line of C, in the same order, on doubles. The result is one loop over the
coordinates of a batch that reads g, x and the state, and writes the new state and x + step
in place, a single pass over memory where the tensor arithmetic makes one pass per operation.
Nothing is written by hand per rule: a new chain of elementwise primitives gets its kernel the
same way.

Bit for bit
-----------
The kernel is compiled without contraction of a * b + c into an FMA and without fast-math
(:mod:`heterosim._native`), so each line is one IEEE-754 operation rounded once, as torch
rounds the same operation on a float64 tensor. Two functions need care:

- ``sqrt``: C's is the correctly rounded one; so is the reference's
  (:func:`heterosim.optimizers.ops.sqrt`, numpy's kernel on CPU);
- ``lerp``: torch's CPU kernel fuses its multiply-add on machines with FMA; the kernel does what
  torch does here (:func:`heterosim._native.lerp_fused`), and no kernel is made where torch mixes
  the two.

Before the engine takes a kernel, :func:`stepper` checks, once per (chain, hyperparameters) and
process, that it reproduces the chain's tensor ``update`` to the bit (iterate and state) over a
few steps of a probe batch with values over twelve decades and one learning rate per row. A
kernel that differs is never used: the engine then runs the tensor ``update``, with the same
results, more slowly.

Per-step numbers (Adam's bias corrections, a momentum's first step) are computed in Python by the
primitive's ``params(t)`` on both paths and passed to the kernel; booleans among them select one
of the kernel's variants (one per value seen at steps 1 and 2).
"""
from __future__ import annotations

import hashlib
import math
import threading

import torch

from heterosim import _native
from heterosim.optimizers.primitives import Params, RuleState

__all__ = ["stepper", "kernel_source", "TraceError"]

Tensor = torch.Tensor


class TraceError(Exception):
    """The chain cannot be traced (it branches on a traced value, or uses an operation the
    tracer does not know)."""


# ---------------------------------------------------------------------------- the tracer
_LEVELS = 3  # 0: fixed over the call, 1: per row (the learning rate), 2: per coordinate


class _Tracer:
    def __init__(self):
        self.lines = [[] for _ in range(_LEVELS)]
        self.count = 0

    def emit(self, expr: str, level: int) -> "Sym":
        name = f"t{self.count}"
        self.count += 1
        self.lines[level].append(f"const double {name} = {expr};")
        return Sym(self, name, level)


def _literal(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    return f"({v.hex()})"


class Sym:
    """One double-valued C expression of the kernel being traced."""

    __slots__ = ("tracer", "name", "level")

    def __init__(self, tracer, name, level):
        self.tracer, self.name, self.level = tracer, name, level

    def _operand(self, v):
        if isinstance(v, Sym):
            return v.name, v.level
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return _literal(v), 0
        raise TraceError(f"cannot trace an operation between a value and {type(v).__name__}")

    def _bin(self, op, a, b):
        (ea, la), (eb, lb) = self._operand(a), self._operand(b)
        return self.tracer.emit(f"{ea} {op} {eb}", max(la, lb))

    def __add__(self, o): return self._bin("+", self, o)
    def __radd__(self, o): return self._bin("+", o, self)
    def __sub__(self, o): return self._bin("-", self, o)
    def __rsub__(self, o): return self._bin("-", o, self)
    def __mul__(self, o): return self._bin("*", self, o)
    def __rmul__(self, o): return self._bin("*", o, self)
    def __truediv__(self, o): return self._bin("/", self, o)
    def __rtruediv__(self, o): return self._bin("/", o, self)

    def __neg__(self):
        return self.tracer.emit(f"-{self.name}", self.level)

    def sqrt(self):
        return self.tracer.emit(f"sqrt({self.name})", self.level)

    def sign(self):
        return self.tracer.emit(f"sgn({self.name})", self.level)

    def lerp(self, end, weight):
        fused = _native.lerp_fused()
        if fused is None:
            raise TraceError("torch.lerp mixes fused and unfused rounding on this machine")
        (ee, le), (ew, lw) = self._operand(end), self._operand(weight)
        return self.tracer.emit(f"lerp_{'f' if fused else 'p'}({self.name}, {ee}, {ew})", max(self.level, le, lw))

    def __bool__(self):
        raise TraceError("an elementwise primitive branched on a traced value; branch on booleans of p only")


_PRELUDE = r"""#include <math.h>
#include <stdint.h>
/* Generated by heterosim.optimizers.fused from the chain's primitives: each line is one
   IEEE-754 operation (compiled without FMA contraction or fast-math). */
static inline double sgn(double g) { return (double)(g > 0.0) - (double)(g < 0.0); }
/* torch.lerp(a, b, w) as torch's CPU kernel rounds it: fused (f) or each operation rounded (p) */
static inline double lerp_f(double a, double b, double w) {
    const double diff = b - a;
    return (w < 0.5) ? fma(w, diff, a) : fma(w - 1.0, diff, b);
}
static inline double lerp_p(double a, double b, double w) {
    const double diff = b - a;
    return (w < 0.5) ? a + w * diff : b - diff * (1.0 - w);
}
"""


def _leaves(state):
    """The tensors of a chain's state, in order."""
    return [v for part in state.parts for v in part if isinstance(v, Tensor)]


def _rebuild(state, leaves, count):
    it = iter(leaves)
    parts = tuple(type(part)(*(next(it) if isinstance(v, Tensor) else v for v in part)) for part in state.parts)
    return RuleState(count, parts)


def _numbers(transforms, t):
    """(floats, statics) of step t: floats in chain order (kernel arguments), and the booleans."""
    floats, statics = [], []
    for i, tr in enumerate(transforms):
        for k, v in tr.params(t).items():
            if isinstance(v, bool):
                statics.append((i, k, v))
            else:
                floats.append((i, k, float(v)))
    return floats, tuple(statics)


def _trace_variant(transforms, template, statics, fname):
    """The C function of one variant (booleans fixed to ``statics``)."""
    tr_ = _Tracer()
    floats, _ = _numbers(transforms, 2)
    args = {(i, k): Sym(tr_, f"a{n}", 0) for n, (i, k, _) in enumerate(floats)}
    fixed = {(i, k): v for i, k, v in statics}
    loads = []

    def load(ptr):
        s = tr_.emit(f"{ptr}[j]", 2)
        loads.append(s.name)
        return s

    g, x = load("g"), load("x")
    leaves = _leaves(template)
    syms = [load(f"s{k}") for k in range(len(leaves))]
    state = _rebuild(template, syms, 0)
    lr = Sym(tr_, "lr", 1)
    u = g
    new_parts = []
    for i, (tr, s) in enumerate(zip(transforms, state.parts)):
        p = Params({k: fixed[(i, k)] if (i, k) in fixed else args[(i, k)] for k in tr.params(2)})
        p["lr"] = lr
        u, s = tr.update(u, s, x, p, None)
        new_parts.append(s)
    if not isinstance(u, Sym):
        raise TraceError("the chain's output is not a traced value")
    new = [v for part in new_parts for v in part]
    if len(new) != len(syms) or not all(isinstance(v, Sym) for v in new):
        raise TraceError("a primitive changed the structure of its state")
    out = tr_.emit(f"{x.name} + {u.name}", max(u.level, 2))
    ptrs = ["x", "g", "out"] + [f"s{k}" for k in range(len(leaves))]
    params = ", ".join(["int64_t r0", "int64_t r1", "int64_t d"] + [f"int64_t p{p}" for p in ptrs]
                       + ["int64_t plr", "int64_t ls"] + [f"double a{n}" for n in range(len(floats))])
    body = [f"void {fname}({params}) {{"]
    for p in ptrs:
        const = "const " if p in ("x", "g") else ""
        body.append(f"    {const}double *restrict {p} = ({const}double *)p{p};")
    body.append("    const double *lrs = (const double *)plr;")
    body += ["    " + ln for ln in tr_.lines[0]]
    body.append("    for (int64_t r = r0; r < r1; r++) {")
    body.append("        const double lr = lrs[r * ls];")
    body += ["        " + ln for ln in tr_.lines[1]]
    body.append("        for (int64_t j = r * d; j < (r + 1) * d; j++) {")
    body += ["            " + ln for ln in tr_.lines[2]]
    for k, v in enumerate(new):
        if v.name != syms[k].name:
            body.append(f"            s{k}[j] = {v.name};")
    body.append(f"            out[j] = {out.name};")
    body += ["        }", "    }", "}"]
    names = [p.split()[-1] for p in params.split(", ")]
    body += ["/* rows [r0, r1) split into nt parts run by nt OpenMP threads (rows are independent runs) */",
             f"void {fname}_par(int64_t nt, {params}) {{",
             "    #pragma omp parallel for num_threads((int)nt) schedule(static, 1)",
             "    for (int64_t t = 0; t < nt; t++)",
             f"        {fname}(r0 + (r1 - r0) * t / nt, r0 + (r1 - r0) * (t + 1) / nt, {', '.join(names[2:])});",
             "}"]
    cdef = f"void {fname}({params});\nvoid {fname}_par(int64_t nt, {params});"
    return "\n".join(body), cdef, len(floats)


def kernel_source(opt, like: Tensor | None = None):
    """(C source, cdef, variants) of the fused step of the elementwise chain ``opt``; variants maps
    each tuple of booleans (as ``params`` gives them at steps 1 and 2) to its function's name.
    Raises :class:`TraceError` where the chain cannot be traced."""
    if not getattr(opt, "elementwise", False):
        raise TraceError(f"{opt.name} has a primitive that is not elementwise")
    like = torch.zeros(1, 4, dtype=torch.float64) if like is None else like
    from heterosim.blocks import Blocks
    template = opt.init(like[:1], Blocks.single(like.shape[-1]))
    if not isinstance(template, RuleState):
        raise TraceError("not a chain's state")
    for v in _leaves(template):
        if v.shape != like[:1].shape:
            raise TraceError("a state tensor is not shaped like x")
    variants, sources, cdefs = {}, [_PRELUDE], []
    for t in (1, 2):
        _, statics = _numbers(opt.transforms, t)
        if statics in variants:
            continue
        fname = f"step_{len(variants)}"
        src, cdef, _ = _trace_variant(opt.transforms, template, statics, fname)
        variants[statics] = fname
        sources.append(src)
        cdefs.append(cdef)
    return "\n".join(sources), "\n".join(cdefs), variants


# ---------------------------------------------------------------------------- the stepper
_lock = threading.Lock()
_units = {}      # source hash -> (lib, variants) or None
_verified = {}   # (source hash, hyper numbers) -> bool


def _unit(opt, like):
    try:
        source, cdef, variants = kernel_source(opt, like)
    except TraceError:
        return None, None
    key = hashlib.sha256((source + cdef).encode()).hexdigest()[:20]
    with _lock:
        if key not in _units:
            lib = _native.compile_unit(f"step_{key}", source, cdef)
            _units[key] = None if lib is None else (lib, variants)
    return key, _units[key]


def _lr_rows(lr):
    """The learning rates as a kernel reads them: (tensor, stride between rows); keep it alive."""
    if isinstance(lr, Tensor):
        return lr, 1
    return torch.tensor([float(lr)], dtype=torch.float64), 0


class _Kernel:
    """A generated step function with its OpenMP row split (``par``), as _native.rows takes it."""

    __slots__ = ("fn", "par")

    def __init__(self, fn, par):
        self.fn, self.par = fn, par

    def __call__(self, *args):
        return self.fn(*args)


def _make_step(opt, lib, variants):
    transforms = opt.transforms
    split = bool(getattr(_native.lib(), "openmp", False))  # the same compiler built this unit
    fns = {statics: _Kernel(getattr(lib, name), getattr(lib, name + "_par") if split else None)
           for statics, name in variants.items()}

    def step(g, state, x, lr, out, tmp=None):
        """out <- x + step; the state's tensors are updated in place (they must be the caller's)."""
        t = state.count + 1
        floats, statics = _numbers(transforms, t)
        fn = fns.get(statics)
        if fn is None:  # booleans not seen at steps 1 and 2: the tensor arithmetic (the same numbers)
            delta, new = opt.update(g, state, x, lr, None)
            torch.add(x, delta, out=out)
            for a, b in zip(_leaves(state), _leaves(new)):
                a.copy_(b)
            return _rebuild(state, _leaves(state), t)
        R, d = x.shape
        lrt, ls = _lr_rows(lr)
        _native.rows(fn, R, R * d, d, x.data_ptr(), g.data_ptr(), out.data_ptr(),
                     *(s.data_ptr() for s in _leaves(state)), lrt.data_ptr(), ls, *(v for _, _, v in floats))
        return RuleState(t, state.parts)
    return step


def stepper(opt, like: Tensor):
    """The fused in-place step of ``opt`` for CPU float64 (R, d) batches like ``like``:
    ``step(g, state, x, lr, out) -> state`` writes out = x + step and updates the state's tensors
    in place (they must be the caller's own; lr a float or an (R, 1) tensor). None where the rule
    is not a chain of elementwise primitives, the kernels are off, ``like`` is not a CPU float64
    batch, or the kernel does not reproduce the chain's ``update`` to the bit (module doc)."""
    if (not getattr(opt, "elementwise", False) or like.dim() != 2 or not _native.usable(like)
            or _native.lib() is None):
        return None
    key, unit = _unit(opt, like)
    if unit is None:
        return None
    step = _make_step(opt, *unit)
    check = (key, tuple(v for _, _, v in _numbers(opt.transforms, 1)[0]),
             tuple(v for _, _, v in _numbers(opt.transforms, 2)[0]))
    if check not in _verified:
        _verified[check] = reproduces_update(opt, step)
    return step if _verified[check] else None


def reproduces_update(opt, step, rows: int = 8, d: int = 67, steps: int = 4) -> bool:
    """Whether ``step`` reproduces ``opt.update`` to the bit (iterate and state) over ``steps``
    steps of a probe batch: values over twelve decades, one learning rate per row."""
    from heterosim.blocks import Blocks
    gen = torch.Generator().manual_seed(20240611)

    def scale():
        return 10.0 ** torch.randint(-8, 4, (rows, d), generator=gen).to(torch.float64)

    x = torch.randn(rows, d, generator=gen, dtype=torch.float64) * scale()
    lr = torch.logspace(-4, 0.5, rows, dtype=torch.float64).unsqueeze(1)
    blocks = Blocks.single(d)
    state = opt.init(x, blocks)
    own = _rebuild(state, [v.clone() for v in _leaves(state)], state.count)
    out = torch.empty_like(x)
    for _ in range(steps):
        g = torch.randn(rows, d, generator=gen, dtype=torch.float64) * scale()
        delta, state = opt.update(g, state, x, lr, blocks)
        ref = x + delta
        own = step(g, own, x, lr, out)
        if not torch.equal(out, ref) or own.count != state.count:
            return False
        if not all(torch.equal(a, b) for a, b in zip(_leaves(own), _leaves(state))):
            return False
        x = ref
    return True


#: hyperparameter values that change a registered chain's structure (a primitive present or not,
#: a static branch), so that :func:`prebuild` builds each structure's kernel
STRUCTURE_VARIANTS = ({}, {"weight_decay": 0.01}, {"momentum": 0.5}, {"centered": True}, {"nesterov": True},
                      {"dampening": 0.1}, {"lr_decay": 0.01}, {"momentum": 0.5, "centered": True})


def prebuild(names=None, like: Tensor | None = None) -> list[dict]:
    """Build ahead of time the fused step of every registered elementwise rule (``names``: some of
    them), in each structure :data:`STRUCTURE_VARIANTS` gives it, into the kernel cache, so that a
    later first sweep loads them instead of compiling (``heterosim kernels``). One dict per rule
    variant: label, seconds, and whether the kernel reproduces the chain (``ok``; None where the
    kernels are off)."""
    import inspect
    import time
    from heterosim.optimizers import rules
    like = torch.zeros(2, 8, dtype=torch.float64) if like is None else like
    out, seen = [], set()
    for name in (rules.names() if names is None else names):
        takes = set(inspect.signature(rules._REGISTRY[name]).parameters)
        for hyper in STRUCTURE_VARIANTS:
            if not set(hyper) <= takes:
                continue
            try:
                opt = rules.make(name, **hyper)
            except ValueError:  # e.g. nesterov=True without momentum
                continue
            if not opt.elementwise:
                continue
            try:
                key = hashlib.sha256("".join(kernel_source(opt, like)[:2]).encode()).hexdigest()
            except TraceError:
                continue
            if key in seen:
                continue
            seen.add(key)
            t0 = time.perf_counter()
            step = stepper(opt, like)
            ok = None if _native.lib() is None else step is not None
            out.append({"rule": opt.label(), "seconds": time.perf_counter() - t0, "ok": ok})
    return out
