r"""Fused CPU kernels for the engine's hot loops, compiled from C on first use.

One step of Adam on a (B, d) float64 batch is a handful of elementwise operations; done
as separate torch operations, each streams the whole state through memory and pays a
dispatch, and on a CPU that costs several times the arithmetic. The kernels below do the
work of a rule's in-place twin (:mod:`heterosim.optimizers`, ``update_``) in one pass over
each row, with the same operations in the same order (no fast-math, no contraction into
FMAs), so they agree with the torch twins to the last bit or to one rounding; the quadratic's
block-major error/gradient shuffles (:meth:`~heterosim.problems.quadratic.BlockQuadratic.
loss_and_grad_into`) are here too. tests/test_engine_fast.py pins every kernel to the pure
rule, the torch twins with the kernels switched off, and the plain engine loop.

The source is compiled once per machine with the C compiler named by ``$CC`` (default
``cc``/``gcc``) into ``$HETEROSIM_CACHE`` (default ``~/.cache/heterosim``), keyed by a hash
of the source, and loaded with ctypes. Where no compiler works, or ``HETEROSIM_NATIVE=0``,
:func:`lib` returns None and every caller takes its torch path: the kernels are an
accelerator, never a requirement.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import torch

__all__ = ["lib", "usable", "disabled", "rows"]

_SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* torch.lerp(a, b, w): a + w (b - a) for |w| < 1/2, else b - (b - a)(1 - w) */
static inline double lerp(double a, double b, double w) {
    return (w < 0.5) ? a + w * (b - a) : b - (b - a) * (1.0 - w);
}
/* torch.sign: -1, 0 or +1 (0 for nan) */
static inline double sgn(double g) { return (double)(g > 0.0) - (double)(g < 0.0); }

/* Every step kernel updates rows r0 <= r < r1 of (R, d) row-major buffers (callers split the
   rows between threads), with the learning rate of row r at lr[r * ls] (ls = 0: one for all).

   Adam / AdamW, one step in place. Row r steps by lr_r * scale * m / (sqrt(v) + ce), with
   scale = -c / (1 - beta1^t), c = sqrt(1 - beta2^t), ce = eps c; wd: coupled weight decay
   (g <- g + wd x); dscale != 0: decoupled decay, out <- out + lr_r dscale x. The flags are
   constants at each call of adam_row, so the compiler emits one branch-free vector loop per case. */
static inline void adam_row(int64_t d, const double *restrict x, const double *restrict g,
                            double *restrict m, double *restrict v, double *restrict out, double c, double dc,
                            double w1, double b2, double w2, double ce, double wd,
                            const int low, const int coupled, const int decoupled) {
    for (int64_t j = 0; j < d; j++) {
        double gj = coupled ? g[j] + wd * x[j] : g[j];
        double mj = low ? m[j] + w1 * (gj - m[j]) : gj - (gj - m[j]) * (1.0 - w1);
        double vj = b2 * v[j] + (w2 * gj) * gj;
        m[j] = mj;
        v[j] = vj;
        double y = x[j] + (mj / (sqrt(vj) + ce)) * c;
        out[j] = decoupled ? y + x[j] * dc : y;
    }
}

void adam_step(int64_t r0, int64_t r1, int64_t d, const double *x, const double *g, double *m, double *v,
               double *out, const double *lr, int64_t ls, double scale, double dscale, double w1, double b2,
               double w2, double ce, double wd) {
    const int low = w1 < 0.5, coupled = wd != 0.0, decoupled = dscale != 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
        const double c = lr[r * ls] * scale, dc = decoupled ? lr[r * ls] * dscale : 0.0;
#define ADAM(L, C, D) adam_row(d, x + o, g + o, m + o, v + o, out + o, c, dc, w1, b2, w2, ce, wd, L, C, D)
        if (low && !coupled && !decoupled) ADAM(1, 0, 0);
        else if (low && coupled) ADAM(1, 1, 0);
        else if (low && decoupled) ADAM(1, 0, 1);
        else if (!coupled && !decoupled) ADAM(0, 0, 0);
        else if (coupled) ADAM(0, 1, 0);
        else ADAM(0, 0, 1);
#undef ADAM
    }
}

/* SGD with torch.optim.SGD's momentum. mu = 0: plain (stochastic) GD. */
static inline void sgd_row(int64_t d, const double *restrict x, const double *restrict g, double *restrict buf,
                           double *restrict out, double a, double mu, double damp, double wd,
                           const int mom, const int nesterov, const int coupled, const int first) {
    for (int64_t j = 0; j < d; j++) {
        double gj = coupled ? g[j] + wd * x[j] : g[j];
        double dj = gj;
        if (mom) {
            double bj = first ? gj : mu * buf[j] + damp * gj;
            buf[j] = bj;
            dj = nesterov ? gj + mu * bj : bj;
        }
        out[j] = x[j] + dj * a;
    }
}

void sgd_step(int64_t r0, int64_t r1, int64_t d, const double *x, const double *g, double *buf, double *out,
              const double *lr, int64_t ls, double mu, double damp, int nesterov, double wd, int first) {
    const int mom = mu != 0.0, coupled = wd != 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
        double *b = mom ? buf + o : 0;
#define SGD(M, N, C, F) sgd_row(d, x + o, g + o, b, out + o, -lr[r * ls], mu, damp, wd, M, N, C, F)
        if (!mom) { if (coupled) SGD(0, 0, 1, 0); else SGD(0, 0, 0, 0); }
        else if (first) { if (nesterov) SGD(1, 1, coupled, 1); else SGD(1, 0, coupled, 1); }
        else if (nesterov) { if (coupled) SGD(1, 1, 1, 0); else SGD(1, 1, 0, 0); }
        else { if (coupled) SGD(1, 0, 1, 0); else SGD(1, 0, 0, 0); }
#undef SGD
    }
}

/* The sign family; kind 0: signSGD, 1: Signum (sign of the momentum), 2: momentum of the signs.
   One straight-line loop per kind (branches in the loop body would keep it scalar). */
static inline void signsgd_row(int64_t d, const double *restrict x, const double *restrict g,
                               double *restrict out, double a, double wd, const int coupled) {
    for (int64_t j = 0; j < d; j++) {
        double dj = sgn(g[j]);
        if (coupled) dj = dj + wd * x[j];
        out[j] = x[j] + dj * a;
    }
}

static inline void signum_row(int64_t d, const double *restrict x, const double *restrict g,
                              double *restrict buf, double *restrict out, double a, double beta, double w,
                              double wd, const int coupled) {
    for (int64_t j = 0; j < d; j++) {
        double mj = beta * buf[j] + w * g[j];
        buf[j] = mj;
        double dj = sgn(mj);
        if (coupled) dj = dj + wd * x[j];
        out[j] = x[j] + dj * a;
    }
}

static inline void signmom_row(int64_t d, const double *restrict x, const double *restrict g,
                               double *restrict buf, double *restrict out, double a, double beta, double w) {
    for (int64_t j = 0; j < d; j++) {
        double mj = beta * buf[j] + w * sgn(g[j]);
        buf[j] = mj;
        out[j] = x[j] + mj * a;
    }
}

void sign_step(int64_t r0, int64_t r1, int64_t d, const double *x, const double *g, double *buf, double *out,
               const double *lr, int64_t ls, int kind, double beta, double wd) {
    const double w = 1.0 - beta;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
        const double a = -lr[r * ls];
        if (kind == 0) {
            if (wd != 0.0) signsgd_row(d, x + o, g + o, out + o, a, wd, 1);
            else signsgd_row(d, x + o, g + o, out + o, a, wd, 0);
        } else if (kind == 1) {
            if (wd != 0.0) signum_row(d, x + o, g + o, buf + o, out + o, a, beta, w, wd, 1);
            else signum_row(d, x + o, g + o, buf + o, out + o, a, beta, w, wd, 0);
        } else {
            signmom_row(d, x + o, g + o, buf + o, out + o, a, beta, w);
        }
    }
}

/* E (n, R, db) <- X (R, n db) - x* (n db), block-major; rows r0 <= r < r1. */
void error_block_major(int64_t r0, int64_t r1, int64_t R, int64_t n, int64_t db, const double *X,
                       const double *xs, double *E) {
    for (int64_t r = r0; r < r1; r++)
        for (int64_t k = 0; k < n; k++) {
            const double *xr = X + r * n * db + k * db, *s = xs + k * db;
            double *e = E + (k * R + r) * db;
            for (int64_t j = 0; j < db; j++) e[j] = xr[j] - s[j];
        }
}

/* G (R, n db) <- W (n, R, db) row-major; f[r] = f* + 1/2 sum E.W over row r, and (sq not NULL)
   sq[r] = sum W^2 = ||g_r||^2; rows r0 <= r < r1. Sums run in eight interleaved partial sums
   (a single running sum would wait on every addition). */
void gather_grad_loss(int64_t r0, int64_t r1, int64_t R, int64_t n, int64_t db, const double *E,
                      const double *W, double *G, double *f, double *sq, double fstar) {
    for (int64_t r = r0; r < r1; r++) {
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t k = 0; k < n; k++) {
            const double *restrict w = W + (k * R + r) * db, *restrict e = E + (k * R + r) * db;
            double *restrict gr = G + r * n * db + k * db;
            int64_t j = 0;
            for (; j + 8 <= db; j += 8)
                for (int q = 0; q < 8; q++) {
                    gr[j + q] = w[j + q];
                    acc[q] += e[j + q] * w[j + q];
                    acc2[q] += w[j + q] * w[j + q];
                }
            for (; j < db; j++) {
                gr[j] = w[j];
                acc[0] += e[j] * w[j];
                acc2[0] += w[j] * w[j];
            }
        }
        f[r] = 0.5 * (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) + fstar;
        if (sq) sq[r] = ((acc2[0] + acc2[1]) + (acc2[2] + acc2[3])) + ((acc2[4] + acc2[5]) + (acc2[6] + acc2[7]));
    }
}
"""

_I, _P, _D, _C = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
_SIGNATURES = {
    "adam_step": [_I] * 3 + [_P] * 6 + [_I] + [_D] * 7,
    "sgd_step": [_I] * 3 + [_P] * 5 + [_I] + [_D] * 2 + [_C, _D, _C],
    "sign_step": [_I] * 3 + [_P] * 5 + [_I, _C, _D, _D],
    "error_block_major": [_I] * 5 + [_P] * 3,
    "gather_grad_loss": [_I] * 5 + [_P] * 5 + [_D],
}
_FLAGS = ["-O3", "-fPIC", "-shared", "-fno-math-errno", "-ffp-contract=off"]  # IEEE arithmetic, vector sqrt

_lock = threading.Lock()
_state = {"lib": None, "tried": False, "off": False}


def _compiler():
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_tag() -> str:
    """What -march=native compiles for: the CPU's model and feature flags (Linux), so that a
    cache directory shared between machines never hands one CPU another's instructions."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        import platform
        return platform.machine() + platform.processor()


def _build():
    cc = _compiler()
    if cc is None:
        return None
    key = _SOURCE + " ".join(_FLAGS) + cc + sys.platform + _cpu_tag()
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = os.environ.get("HETEROSIM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "heterosim"))
    path = os.path.join(root, f"fused-{tag}.so")
    if not os.path.exists(path):
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            src, so = os.path.join(tmp, "fused.c"), os.path.join(tmp, "fused.so")
            with open(src, "w") as fh:
                fh.write(_SOURCE)
            arch = ["-march=native"] if sys.platform.startswith("linux") else []
            for flags in (_FLAGS + arch, _FLAGS):  # -march=native where the compiler takes it
                done = subprocess.run([cc, *flags, "-o", so, src, "-lm"], capture_output=True, timeout=120)
                if done.returncode == 0:
                    break
            else:
                return None
            os.replace(so, path)  # atomic: a concurrent process sees all of it or nothing
    handle = ctypes.CDLL(path)
    for name, args in _SIGNATURES.items():
        fn = getattr(handle, name)
        fn.argtypes, fn.restype = args, None
    return handle


def lib():
    """The loaded kernels (a ctypes library), or None where they cannot be built or are off."""
    if _state["off"]:
        return None
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                try:
                    off = os.environ.get("HETEROSIM_NATIVE", "1") == "0"
                    _state["lib"] = None if off else _build()
                except (OSError, subprocess.SubprocessError):
                    _state["lib"] = None
                _state["tried"] = True
    return _state["lib"]


_F64 = torch.float64


def usable(*tensors) -> bool:
    """Whether the kernels may read and write these tensors: CPU float64, contiguous, no autograd."""
    for t in tensors:
        if not (t.is_cpu and t.dtype is _F64 and t.is_contiguous()) or t.requires_grad:
            return False
    return True


_pool = {}
PARALLEL_MIN_ELEMENTS = 1 << 18
"""Below this many elements per call a kernel runs on one thread (handing work to a second
thread costs tens of microseconds)."""


def rows(kernel, R: int, work: int, *args) -> None:
    """Run ``kernel(r0, r1, *args)`` over the rows 0..R-1, split across torch's thread count
    (``torch.get_num_threads()``) when the call touches at least PARALLEL_MIN_ELEMENTS elements;
    ctypes releases the GIL, so the parts run at once. Rows are independent: the result does
    not depend on the split."""
    threads = min(torch.get_num_threads(), R)
    if threads <= 1 or work < PARALLEL_MIN_ELEMENTS:
        kernel(0, R, *args)
        return
    if threads not in _pool:
        from concurrent.futures import ThreadPoolExecutor
        _pool[threads] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="heterosim-native")
    cuts = [R * i // threads for i in range(threads + 1)]
    futures = [_pool[threads].submit(kernel, cuts[i], cuts[i + 1], *args) for i in range(1, threads)]
    kernel(cuts[0], cuts[1], *args)
    for fut in futures:
        fut.result()


@contextlib.contextmanager
def disabled():
    """Within the block every caller takes its torch path (to test one against the other)."""
    old = _state["off"]
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = old
