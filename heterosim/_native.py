r"""Fused CPU kernels for the engine's hot loops, compiled from C on first use, and their
torch twins.

The rules' steps are not written here: :mod:`heterosim.optimizers.fused` generates each one from
the rule's primitives and builds it with :func:`compile_unit`. The block quadratic's whole oracle (error, block product, f and ||g||, the divergence test)
is one kernel too, row-major in and out, with a GEMM-style register-blocked block product
(on the 2-core EPYC it runs the reference sweep's oracle, 128 rows x 8 blocks of 32, faster
than torch's batched matmul), and :func:`quadratic_oracle_torch` is its torch twin, the same
operations in the same order: one arithmetic for the engine's every path (heterosim.engine,
"One T per config"). tests/test_engine_fast.py pins every kernel to its twin, bit for bit.

No compiler flag changes a value: -O3 without fast-math (no reassociation), -ffp-contract=off
(no multiply-add fused behind the source's back; fma() is written out where torch itself
fuses, in its lerp), -fno-math-errno (the sqrt instruction, correctly rounded). -march=native
picks instructions, not results (tests/test_engine_fast.py builds without it and compares).

The sources are built once per machine with cffi (API mode; the C compiler setuptools runs:
``$CC`` or the one Python was built with) into a private cache, ``$HETEROSIM_CACHE`` (default
``~/.cache/heterosim/native``): created 0700, and loaded from only while it and the module are
this user's and no one else can write them (else the build goes to a private temporary
directory; :func:`cache_why`). The cache key hashes the source, the flags, the compiler, the
platform, the CPU and cffi's version. :func:`compile_unit` builds other (generated) C units the
same way. Where the kernels cannot be had, or ``HETEROSIM_NATIVE=0``, :func:`lib` returns None
(:func:`why_off` says why; a reason the user did not choose also emits one RuntimeWarning per
process) and every caller takes its torch path: the kernels are an accelerator, never a
requirement, and change no number the engine reports. Every entry here that takes tensors
checks their device, dtype, layout and shapes before C sees them (ValueError, never a crash).
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import itertools
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings

import torch

__all__ = ["lib", "build", "why_off", "usable", "disabled", "rows", "compile_unit", "unit_why_off", "cache_why",
           "Kernels", "check_buffer", "check_index", "check_batch", "check_oracle_buffers",
           "check_softmax_data", "check_draws", "quadratic_oracle",
           "quadratic_oracle_torch", "block_product_", "tree_sum_", "tree_norm", "sqrt_exact",
           "lerp_fused"]

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Every operation below is one IEEE operation, rounded once, in the order of the torch code it
   stands for (the rules' pure ``update``, the reference oracle): the unit is compiled without
   contraction (-ffp-contract=off) and without fast-math, and fma() appears only where torch
   itself computes a fused multiply-add (its lerp). */


/* The sum of v[0..n) in the kernels' fixed order (n >= 1), destroying v: halve until one is
   left, v[k] += v[k + m] for k < n/2 (m = n - n/2). heterosim._native.tree_sum_ is its torch twin. */
static inline void add_into(double *restrict a, const double *restrict b, int64_t h) {
    for (int64_t k = 0; k < h; k++) a[k] += b[k];
}
static inline double tree_sum(double *v, int64_t n) {
    while (n > 1) {
        const int64_t h = n / 2, m = n - h;
        add_into(v, v + m, h);  /* [0, h) and [m, m + h) do not overlap (h <= m) */
        n = m;
    }
    return v[0];
}

/* f and ||g|| of row x with gradient g (error e = x - xs): f = 0.5 tree(e g) + f*, nrm = tree(g g)
   (its root if root); p, q: scratch of d. The order of heterosim._native.quadratic_oracle_torch. */
static inline void f_and_norm(int64_t d, const double *restrict x, const double *restrict xs,
                              const double *restrict g, double *restrict p, double *restrict q,
                              double *f, double *nrm, int root, double fstar) {
    for (int64_t j = 0; j < d; j++) {
        const double e = x[j] - xs[j];
        p[j] = e * g[j];
        q[j] = g[j] * g[j];
    }
    *f = 0.5 * tree_sum(p, d) + fstar;
    if (nrm) {
        const double s = tree_sum(q, d);
        *nrm = root ? sqrt(s) : s;
    }
}

/* The oracle of a diagonal quadratic f(x) = f* + 1/2 sum_j lam_j (x_j - x*_j)^2 (an axis-aligned
   block quadratic, or a rotated one in its eigenbasis) for rows r0 <= r < r1 of (R, d) X:
   G[r] <- lam (X[r] - x*), f[r], nrm[r] = ||G[r]|| (root) or ^2 (sums: tree_sum); returns the
   number of rows with !(f[r] <= flim[r]) (flim not NULL), -1 if scratch memory fails. Frozen
   rows as in block_oracle: X[r] <- Xprev[r], nothing else. */
int64_t diag_oracle(int64_t r0, int64_t r1, int64_t d, double *X, const double *xs, const double *lam,
                    double *G, double *f, double *nrm, const double *flim, int root, double fstar,
                    const uint8_t *frozen, const double *Xprev) {
    int64_t bad = 0;
    double *p = malloc(sizeof(double) * 2 * (d > 0 ? d : 1));
    if (!p) return -1;
    for (int64_t r = r0; r < r1; r++) {
        if (frozen && frozen[r]) {
            if (Xprev) for (int64_t j = 0; j < d; j++) X[r * d + j] = Xprev[r * d + j];
            continue;
        }
        const double *restrict x = X + r * d;
        double *restrict g = G + r * d;
        for (int64_t j = 0; j < d; j++) g[j] = (x[j] - xs[j]) * lam[j];
        f_and_norm(d, x, xs, g, p, p + d, f + r, nrm ? nrm + r : 0, root, fstar);
        if (flim) bad += !(f[r] <= flim[r]);
    }
    free(p);
    return bad;
}

/* out[r] = ||V[r]||_2 (root) or its square, for rows r0 <= r < r1 of (R, d) V: the sum as
   tree_sum, the root correctly rounded (heterosim._native.tree_norm). -1 if scratch fails. */
int64_t rows_norm(int64_t r0, int64_t r1, int64_t d, const double *V, double *out, int root) {
    double *q = malloc(sizeof(double) * (d > 0 ? d : 1));
    if (!q) return -1;
    for (int64_t r = r0; r < r1; r++) {
        const double *restrict v = V + r * d;
        for (int64_t j = 0; j < d; j++) q[j] = v[j] * v[j];
        const double s = tree_sum(q, d);
        out[r] = root ? sqrt(s) : s;
    }
    free(q);
    return 0;
}

/* The same f and ||g|| for rows r0 <= r < r1 whose gradient G[r] is already written (the block
   oracle's last pass); rows with frozen[r] skipped. -1 if scratch memory fails. */
int64_t rows_f_and_norm(int64_t r0, int64_t r1, int64_t d, const double *X, const double *xs, const double *G,
                        double *f, double *nrm, const double *flim, int root, double fstar, const uint8_t *frozen) {
    int64_t bad = 0;
    double *p = malloc(sizeof(double) * 2 * (d > 0 ? d : 1));
    if (!p) return -1;
    for (int64_t r = r0; r < r1; r++) {
        if (frozen && frozen[r]) continue;
        f_and_norm(d, X + r * d, xs, G + r * d, p, p + d, f + r, nrm ? nrm + r : 0, root, fstar);
        if (flim) bad += !(f[r] <= flim[r]);
    }
    free(p);
    return bad;
}
"""

_MATVEC_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* in the other unit: f and ||g|| of rows whose gradient is written, summed as tree_sum */
int64_t rows_f_and_norm(int64_t r0, int64_t r1, int64_t d, const double *X, const double *xs, const double *G,
                        double *f, double *nrm, const double *flim, int root, double fstar, const uint8_t *frozen);

/* The oracle of a block quadratic, f(x) = f* + 1/2 (x - x*)^T H (x - x*) with H = blockdiag(H_k)
   dense blocks, for rows r0 <= r < r1 of a row-major (R, d) batch X:
       G[r] <- H (X[r] - x*),  f[r] <- f* + 1/2 (X[r] - x*).G[r],  nrm[r] <- ||G[r]||_2 (root) or ^2,
   block k spanning columns off[k] .. off[k+1] - 1 with H_k row-major at H + hoff[k].
   Returns the number of rows with !(f[r] <= flim[r]) (flim not NULL): diverged or NaN.
   Rows with frozen[r] != 0 (frozen not NULL; diverged runs) are skipped: X[r] <- Xprev[r] (Xprev
   not NULL), and G[r], f[r], nrm[r] are left as they were. Returns -1 if scratch memory fails.

   The arithmetic is fixed, row by row, whatever the batch and the split of rows between threads
   (heterosim._native.quadratic_oracle_torch does the same operations in torch): the error
   e = x - x*, then every gradient entry G[c0 + i] = sum_j e_j H_k[j][i] summed in order
   j = 0..db-1 from 0, each product and each sum rounded (no FMA: the unit is compiled with
   -ffp-contract=off), then f and ||g||^2 as tree sums (tree_sum). The block product
   w = e^T H_k (row vector times matrix, H_k symmetric) is done as in a GEMM micro-kernel: MR rows
   times 8 columns of accumulators held in registers, over j = 0..db-1 (the same order); each
   block is applied to all rows of the call before the next, so H_k stays in cache. */

typedef double v4d __attribute__((vector_size(32)));
static inline v4d ld4(const double *p) { v4d v; memcpy(&v, p, sizeof v); return v; }
static inline void st4(double *p, v4d v) { memcpy(p, &v, sizeof v); }
static inline v4d splat4(double a) { return (v4d){a, a, a, a}; }
#define MR 6

/* A[q] = sum_j e[q][j] Hc[j][0..8) for q < rt (Hc: column i of a row-major db x db block) */
static inline void strip8(int64_t db, const double *restrict e, const double *restrict Hc,
                          v4d A[MR][2], const int rt) {
    v4d a[MR][2];
    for (int q = 0; q < MR; q++) a[q][0] = a[q][1] = splat4(0.0);
    for (int64_t j = 0; j < db; j++) {
        const v4d h0 = ld4(Hc + j * db), h1 = ld4(Hc + j * db + 4);
        for (int q = 0; q < MR; q++)
            if (q < rt) {
                const v4d b = splat4(e[q * db + j]);
                a[q][0] += b * h0;
                a[q][1] += b * h1;
            }
    }
    for (int q = 0; q < MR; q++) { A[q][0] = a[q][0]; A[q][1] = a[q][1]; }
}

int64_t block_oracle(int64_t r0, int64_t r1, int64_t d, int64_t n, const int64_t *off, const int64_t *hoff,
                     double *X, const double *xs, const double *H, double *G, double *f, double *nrm,
                     const double *flim, int root, double fstar, const uint8_t *frozen, const double *Xprev) {
    if (r1 <= r0) return 0;
    int64_t dmax = 1, R = 0;
    for (int64_t k = 0; k < n; k++) if (off[k + 1] - off[k] > dmax) dmax = off[k + 1] - off[k];
    int64_t *live = malloc(sizeof(int64_t) * (r1 - r0));
    for (int64_t r = r0; r < r1; r++) {
        if (frozen && frozen[r]) {  /* X[r] <- Xprev[r]; nothing else is computed or written */
            if (Xprev) memcpy(X + r * d, Xprev + r * d, sizeof(double) * d);
        } else if (live) {
            live[R++] = r;
        }
    }
    double *e = malloc(sizeof(double) * MR * dmax);
    if (!live || !e) { free(live); free(e); return -1; }
    for (int64_t k = 0; k < n; k++) {
        const int64_t c0 = off[k], db = off[k + 1] - off[k];
        const double *Hk = H + hoff[k], *sk = xs + c0;
        for (int64_t p = 0; p < R; p += MR) {  /* MR live rows live[p..p+rt) at a time */
            const int rt = (int)(R - p < MR ? R - p : MR);
            const int64_t *rw = live + p;
            for (int q = 0; q < rt; q++)
                for (int64_t j = 0; j < db; j++) e[q * db + j] = X[rw[q] * d + c0 + j] - sk[j];
            int64_t i = 0;
            for (; i + 8 <= db; i += 8) {
                v4d A[MR][2];
                if (rt == MR) strip8(db, e, Hk + i, A, MR);
                else strip8(db, e, Hk + i, A, rt);
                for (int q = 0; q < rt; q++) {
                    double *g = G + rw[q] * d + c0 + i;
                    st4(g, A[q][0]);
                    st4(g + 4, A[q][1]);
                }
            }
            for (; i < db; i++)  /* the last db mod 8 columns */
                for (int q = 0; q < rt; q++) {
                    double s = 0.0;
                    for (int64_t j = 0; j < db; j++) s += e[q * db + j] * Hk[j * db + i];
                    G[rw[q] * d + c0 + i] = s;
                }
        }
    }
    free(live);
    free(e);
    return rows_f_and_norm(r0, r1, d, X, xs, G, f, nrm, flim, root, fstar, frozen);
}

/* exp(x) for 4 lanes with x <= 0 (softmax weights): x = k ln2 + r, |r| <= ln2/2, e^r by its
   Taylor polynomial to r^13 (truncation below 2e-16 relative), times 2^k from the exponent bits.
   x is clamped at -700 (e^-700 ~ 1e-304 stands in for smaller weights: an absolute error below
   1e-300 on a probability). Relative error a few ulp; NaN lanes are caught by the caller. */
typedef int64_t v4i __attribute__((vector_size(32)));
/* lanes of b where b > a, else a (a NaN lane of b is not taken) */
static inline v4d vmax4(v4d a, v4d b) {
    const v4i take = b > a;
    return (v4d)(((v4i)b & take) | ((v4i)a & ~take));
}

static inline v4d vexp_nonpos(v4d x) {
    x = vmax4(x, splat4(-700.0));
    const v4d kf = __builtin_convertvector(__builtin_convertvector(x * 1.4426950408889634 - 0.5, v4i), v4d);
    /* kf = trunc(x log2e - 0.5): round-half-down for x <= 0 */
    const v4d r = (x - kf * 0.6931471803691238) - kf * 1.9082149292705877e-10;
    v4d p = splat4(1.0 / 6227020800.0);
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const v4i bits = (__builtin_convertvector(kf, v4i) + 1023) << 52;
    v4d scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* The oracle of softmax regression f(W) = (1/m) sum_{i in S} CE(W x_i, y_i) + ridge/2 ||W||^2
   for rows r0 <= r < r1 of (R, C p) X (W row-major C x p), with F (n, p) the features (FT, its
   (p, n) transpose, or NULL) and y (n,) the labels: S = all n samples (idx NULL) or the m samples idx[which[r] m .. which[r] m + m)
   (per-row minibatches: which[r] picks row r's draw). Writes G[r] = grad, and where not NULL
   f[r], nrm[r] = ||G[r]|| (root) or ^2; returns the number of rows with !(f[r] <= flim[r]).
   Frozen rows as in block_oracle. Four samples at a time in the lanes of a vector: logits
   z_c = W_c . x_i, a stable softmax (max subtracted), the weights e^(z - max) / sum,
   G_c += (p_c - [c = y_i]) x_i (per-lane partial sums, added at the end). A row with a
   non-finite logit gets f = G = nan (a diverged run). */
int64_t softmax_oracle(int64_t r0, int64_t r1, int64_t C, int64_t p, int64_t n, const double *X,
                       const double *F, const double *FT, const int64_t *y, const int64_t *idx, const int64_t *which, int64_t m,
                       double ridge, double *G, double *f, double *nrm, const double *flim, int root,
                       const uint8_t *frozen, double *Xmut, const double *Xprev) {
    const int64_t d = C * p;
    v4d *acc = aligned_alloc(sizeof(v4d), sizeof(v4d) * (size_t)(d + 2 * C + p));
    if (!acc) return -1;
    v4d *z = acc + d, *e = z + C, *xv = e + C;
    int64_t bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        if (frozen && frozen[r]) {
            if (Xprev) memcpy(Xmut + r * d, Xprev + r * d, sizeof(double) * d);
            continue;
        }
        const double *W = X + r * d;
        const int64_t *S = idx ? idx + (which ? which[r] : 0) * m : 0;
        const int64_t M = idx ? m : n;
        for (int64_t k = 0; k < d; k++) acc[k] = splat4(0.0);
        v4d ce = splat4(0.0);
        int finite = 1;
        for (int64_t i = 0; i < M; i += 4) {
            int64_t s[4];
            v4d w = splat4(1.0);  /* lane weights: 0 for the padding past the last sample */
            for (int q = 0; q < 4; q++) {
                const int64_t ii = (i + q < M) ? i + q : M - 1;
                s[q] = S ? S[ii] : ii;
                if (i + q >= M) w[q] = 0.0;
            }
            if (FT && i + 4 <= M)  /* four consecutive samples: one load per feature */
                for (int64_t j = 0; j < p; j++) xv[j] = ld4(FT + j * n + i);
            else
                for (int64_t j = 0; j < p; j++)
                    xv[j] = (v4d){F[s[0] * p + j], F[s[1] * p + j], F[s[2] * p + j], F[s[3] * p + j]};
            v4d mx = splat4(-INFINITY);
            int64_t c = 0;
            for (; c + 4 <= C; c += 4) {  /* four classes at once: four independent sums */
                const double *W0 = W + c * p, *W1 = W0 + p, *W2 = W1 + p, *W3 = W2 + p;
                v4d a0 = splat4(0.0), a1 = a0, a2 = a0, a3 = a0;
                for (int64_t j = 0; j < p; j++) {
                    const v4d xj = xv[j];
                    a0 += W0[j] * xj;
                    a1 += W1[j] * xj;
                    a2 += W2[j] * xj;
                    a3 += W3[j] * xj;
                }
                z[c] = a0; z[c + 1] = a1; z[c + 2] = a2; z[c + 3] = a3;
                mx = vmax4(vmax4(mx, a0), vmax4(a1, vmax4(a2, a3)));
            }
            for (; c < C; c++) {
                const double *Wc = W + c * p;
                v4d a = splat4(0.0);
                for (int64_t j = 0; j < p; j++) a += Wc[j] * xv[j];
                z[c] = a;
                mx = vmax4(mx, a);
            }
            v4d sum = splat4(0.0), zy;
            for (int64_t c = 0; c < C; c++) {
                e[c] = vexp_nonpos(z[c] - mx);
                sum += e[c];
            }
            const double *zl = (const double *)z;
            for (int q = 0; q < 4; q++) {
                zy[q] = zl[4 * y[s[q]] + q];
                if (!(mx[q] - mx[q] == 0.0) || !(sum[q] - sum[q] == 0.0)) finite = 0;  /* inf or nan */
            }
            const v4d lse = mx + (v4d){log(sum[0]), log(sum[1]), log(sum[2]), log(sum[3])};
            ce += w * (lse - zy);
            const v4d inv = w / sum;
            for (int64_t c = 0; c < C; c++) e[c] *= inv;
            double *el = (double *)e;  /* p - onehot(y), lane by lane */
            for (int q = 0; q < 4; q++) el[4 * y[s[q]] + q] -= w[q];
            for (c = 0; c + 2 <= C; c += 2) {
                const v4d g0 = e[c], g1 = e[c + 1];
                v4d *G0 = acc + c * p, *G1 = G0 + p;
                for (int64_t j = 0; j < p; j++) {
                    const v4d xj = xv[j];
                    G0[j] += g0 * xj;
                    G1[j] += g1 * xj;
                }
            }
            for (; c < C; c++) {
                const v4d g = e[c];
                v4d *Gc = acc + c * p;
                for (int64_t j = 0; j < p; j++) Gc[j] += g * xv[j];
            }
        }
        double *g = G + r * d, sq = 0.0, ww = 0.0;
        for (int64_t k = 0; k < d; k++) {
            const v4d a = acc[k];
            const double v = ((a[0] + a[1]) + (a[2] + a[3])) / (double)M + ridge * W[k];
            g[k] = finite ? v : NAN;
            sq += g[k] * g[k];
            ww += W[k] * W[k];
        }
        const double fr = finite ? ((ce[0] + ce[1]) + (ce[2] + ce[3])) / (double)M + 0.5 * ridge * ww : NAN;
        if (f) f[r] = fr;
        if (nrm) nrm[r] = root ? sqrt(sq) : sq;
        if (flim) bad += !(fr <= flim[r]);
    }
    free(acc);
    return bad;
}
"""

# ------------------------------------------------------------------ building and loading
# The kernels are built with cffi (API mode): the two C units above, unchanged and each its own
# translation unit as before, plus a generated unit of thin wrappers (``hs_<name>``) that take
# every address as an intptr_t, so that a call passes Python ints (tensor.data_ptr()) straight
# through cffi's generated C (no ctypes marshalling; cffi releases the GIL over every call).
#
# No flag that changes a value: -O3 vectorises but never reassociates (no -ffast-math, no
# -fassociative-math), -ffp-contract=off forbids fusing a * b + c into an FMA (fma() is written
# out where torch fuses), -fno-math-errno only lets sqrt be the (correctly rounded) instruction.
# -march=native (linux, when it compiles) picks the instructions, not the results: every
# operation is an IEEE-754 one, correctly rounded on any x86-64 or arm64 unit
# (tests/test_engine_fast.py builds the kernels with and without it and compares the bits).
# setuptools puts Python's own sysconfig CC, CFLAGS and CCSHARED before these (here
# "-Wsign-compare -DNDEBUG -g -fwrapv -O3 -Wall" and "-fPIC"): warnings, debug information,
# NDEBUG (the kernels have no assert) and -fwrapv, none of which changes a floating-point value;
# -fno-wrapv below undoes -fwrapv, whose only effect on these integer-indexed loops is slower
# code (with it the kernels' machine code is the one a plain `cc` build gives: checked with
# objdump, GCC 12). Flags come after sysconfig's, so ours win where they meet (-ffp-contract);
# _value_changing() refuses a build where Python's own flags (or $CC, $LDSHARED) carry a
# value-changing one, and the build runs without $CFLAGS/$CPPFLAGS/$LDFLAGS from the environment.
# -fopenmp (tried first, dropped where the compiler lacks it) only enables the pragmas of the
# *_par wrappers, which run a kernel on contiguous parts of its rows: no arithmetic changes.
_FLAGS = ["-O3", "-fPIC", "-fno-math-errno", "-ffp-contract=off", "-fno-wrapv"]
_UNITS = (_SOURCE, _MATVEC_SOURCE)
_VALUE_CHANGING = ("-ffast-math", "-Ofast", "-funsafe-math-optimizations", "-fassociative-math",
                   "-freciprocal-math", "-ffinite-math-only", "-fno-signed-zeros", "-fcx-limited-range",
                   "-mfpmath=387", "-ffp-model=fast", "-ffp-model=aggressive", "-fapprox-func", "-mrecip",
                   "-fexcess-precision=fast", "-mdaz-ftz")
_BUILD_TIMEOUT = 300

_lock = threading.Lock()  # lib()'s first call
_build_lock = threading.RLock()  # builds and the per-process module table
_state = {"lib": None, "tried": False, "off": False, "why": None, "warned": False, "private": None}
_modules = {}  # module file -> loaded cffi module (per process)
_unit_why = {}  # compile_unit name -> why it returned None
_cache_warned = set()  # cache directories warned about
_file_notes = {}  # cache directory -> why a module file in it was not loaded


def _compiler() -> str | None:
    """The C compiler setuptools will run ($CC, else the one Python was built with), or None.
    On Windows, None: setuptools builds with MSVC there, and the kernels use GCC vector
    extensions (vector_size, __builtin_convertvector) and C11 aligned_alloc, which it lacks."""
    if sys.platform == "win32":
        return None
    words = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "")
    return shutil.which(words[0]) if words else None


def _no_compiler_why() -> str:
    if sys.platform == "win32":
        return ("Windows: the C kernels use GCC vector extensions (vector_size, __builtin_convertvector) "
                "and C11 aligned_alloc, which MSVC, the compiler Python builds extensions with there, "
                "does not compile")
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return f"no C compiler ({shlex.split(cc)[0] if cc.strip() else cc!r} not found; set $CC)"


def _value_changing() -> str | None:
    """A value-changing flag among those setuptools adds (sysconfig CC/CFLAGS/CCSHARED/LDSHARED,
    $CC, $LDSHARED), or None."""
    words = []
    for v in ("CC", "CFLAGS", "CCSHARED", "LDSHARED"):
        words += shlex.split(sysconfig.get_config_var(v) or "")
    for v in ("CC", "LDSHARED"):
        words += shlex.split(os.environ.get(v, ""))
    bad = [w for w in words if w in _VALUE_CHANGING]
    return f"the compiler flags setuptools adds carry {' '.join(bad)}, which would change values" if bad else None


@functools.lru_cache(maxsize=None)
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


# ---- the private cache
def _default_cache() -> str:
    return os.environ.get("HETEROSIM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "heterosim",
                                                              "native")


def _not_private(path: str, directory: bool) -> str | None:
    """Why ``path`` is not ours alone (another user could have written it), or None."""
    st = os.lstat(path)
    if directory and not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not directory and not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by this user (uid {os.getuid()})"
    if os.name == "posix" and st.st_mode & 0o022:
        return f"group- or world-writable (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _private_dir() -> str:
    """This process's own build directory (mode 0700, removed at exit)."""
    with _build_lock:
        if _state["private"] is None:
            d = tempfile.mkdtemp(prefix="heterosim-native-")
            atexit.register(shutil.rmtree, d, True)
            _state["private"] = d
        return _state["private"]


def _cache_root(root: str | None = None) -> tuple[str, str | None]:
    """(directory to load and build in, why the cache ``root`` is not it or None). The cache
    (``root``, default ``$HETEROSIM_CACHE`` or ``~/.cache/heterosim/native``) is created 0700;
    it is used only while it is a directory of this user's that no group or other user can
    write to, else this process's private temporary directory is."""
    root = os.path.abspath(root or _default_cache())
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        why = _not_private(root, directory=True)
    except OSError as e:
        why = f"cannot be created ({type(e).__name__}: {e})"
    if why is None:
        return root, None
    why = f"the kernel cache {root} is {why}: not loaded from, built in a private temporary directory instead"
    if root not in _cache_warned:
        _cache_warned.add(root)
        warnings.warn(f"heterosim: {why} (rebuilt in every process)", RuntimeWarning, stacklevel=4)
    return _private_dir(), why


def cache_why(root: str | None = None) -> str | None:
    """Why the kernel cache (``root``, default ``$HETEROSIM_CACHE`` or
    ``~/.cache/heterosim/native``) is not used, or why a module in it was not loaded in this
    process (None where neither)."""
    root = os.path.abspath(root or _default_cache())
    return _cache_root(root)[1] or _file_notes.get(root)


# ---- building with cffi
_BUILD_SCRIPT = r"""
import json, sys
import cffi
spec = json.load(open(sys.argv[1]))
ffi = cffi.FFI()
ffi.cdef(spec["cdef"])
ffi.set_source(spec["module"], spec["preamble"], sources=spec["sources"], extra_compile_args=spec["flags"],
               extra_link_args=[f for f in spec["flags"] if f == "-fopenmp"], libraries=spec["libraries"])
ffi.compile(tmpdir=".", target=spec["target"])
"""
# cffi's compile changes the process's working directory and patches distutils while it runs:
# it runs in a child interpreter, so that no thread of this process sees either.


def _ext_suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def _tag(*parts) -> str:
    import cffi
    key = "\0".join([*parts, cffi.__version__, sys.platform, _ext_suffix(), _cpu_tag(),
                     *(sysconfig.get_config_var(v) or "" for v in ("CC", "CFLAGS", "CCSHARED"))])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def _compile_into(directory, module, preamble, cdef, units, flags) -> str:
    """Build ``module`` in a private temporary directory inside ``directory`` and move it in
    (atomic: a concurrent process sees all of it or nothing). Its path; RuntimeError with the
    compiler's last words on failure."""
    tmp = tempfile.mkdtemp(prefix=".build-", dir=directory)
    try:
        sources = []
        for i, text in enumerate(units):
            sources.append(f"{module}_unit{i}.c")
            with open(os.path.join(tmp, sources[-1]), "w") as fh:
                fh.write(text)
        with open(os.path.join(tmp, "spec.json"), "w") as fh:
            json.dump({"module": module, "target": module + _ext_suffix(), "preamble": preamble, "cdef": cdef,
                       "sources": sources, "flags": flags, "libraries": ["m"] if os.name == "posix" else []}, fh)
        env = {k: v for k, v in os.environ.items() if k not in ("CFLAGS", "CPPFLAGS", "LDFLAGS")}
        done = subprocess.run([sys.executable, "-c", _BUILD_SCRIPT, "spec.json"], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=_BUILD_TIMEOUT)
        built = os.path.join(tmp, module + _ext_suffix())
        if done.returncode == 0 and not os.path.isfile(built):
            raise RuntimeError(f"cffi reported success but wrote no {module + _ext_suffix()}")
        if done.returncode != 0:
            said = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            errors = [ln for ln in said if "error" in ln.lower()]
            raise RuntimeError((errors or said or ["no output"])[0][:300])
        final = os.path.join(directory, module + _ext_suffix())
        os.replace(built, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load(name: str, preamble: str, cdef: str, units=(), root: str | None = None, native_arch: bool = True):
    """The cffi module ``name`` built from ``preamble`` (cffi's own unit, with the glue),
    ``units`` (further C units) and ``cdef`` with :data:`_FLAGS` (and -march=native first,
    linux), from the private cache or built into it: (module, flags, cache note); raises
    RuntimeError with the reason where it cannot be built."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError(_no_compiler_why())
    bad = _value_changing()
    if bad:
        raise RuntimeError(bad)
    for needed in ("cffi", "setuptools"):  # cffi compiles through setuptools' build_ext
        if importlib.util.find_spec(needed) is None:
            raise RuntimeError(f"{needed} is not installed (pip install {needed})")
    if not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        raise RuntimeError("no Python.h (cffi needs the Python development headers, e.g. python3-dev)")
    arch = [["-march=native"]] if native_arch and sys.platform.startswith("linux") else []
    # OpenMP splits a call's rows between threads (the *_par entries); a compiler without it
    # builds the same kernels without the split (the pragmas are then ignored)
    tries = [a + ["-fopenmp"] for a in arch + [[]]] + arch + [[]]
    with _build_lock:
        root = os.path.abspath(root or _default_cache())
        directory, note = _cache_root(root)
        why = None
        for arch in tries:
            flags = _FLAGS + arch
            module = f"_hs_{name}_{_tag(name, preamble, cdef, *units, ' '.join(flags), cc)}"
            path = os.path.join(directory, module + _ext_suffix())
            if path in _modules:
                return _modules[path], flags, note
            if os.path.lexists(path):
                bad = _not_private(path, directory=False)
                if bad:  # never load a file another user could have written
                    note = f"{path} is {bad}: not loaded, built in a private temporary directory instead"
                    _file_notes[root] = note
                    warnings.warn(f"heterosim: {note}", RuntimeWarning, stacklevel=3)
                    directory = _private_dir()
                    path = os.path.join(directory, module + _ext_suffix())
                    if path in _modules:
                        return _modules[path], flags, note
            if not os.path.exists(path):
                try:
                    path = _compile_into(directory, module, preamble, cdef, units, flags)
                except (RuntimeError, subprocess.SubprocessError) as e:
                    why = why or f"the C kernels failed to compile: {e}"
                    continue  # without -march=native
            spec = importlib.util.spec_from_file_location(module, path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _modules[path] = mod
            return mod, flags, note
        raise RuntimeError(why)


# ---- the kernels' wrappers
_EXPORTED = re.compile(r"^(int64_t|void)\s+(\w+)\(([^)]*)\)\s*\{", re.M)


def _exported(units=_UNITS):
    """(return type, name, [(C type, is pointer)]) of every external function of the units."""
    out = []
    for text in units:
        for ret, name, params in _EXPORTED.findall(text):
            args = []
            for p in (p.strip() for p in params.split(",")):
                star = p.rfind("*")
                args.append((p[:star + 1] if star >= 0 else p.rsplit(None, 1)[0], star >= 0))
            out.append((ret, name, args))
    return out


def _wrappers(units=_UNITS) -> tuple[str, str]:
    """(preamble, cdef) for the units: each external function f gets a wrapper hs_f taking its
    addresses as intptr_t (0 for NULL) and calling f with them cast to f's pointer types."""
    protos, defs, cdef = [], [], []
    for ret, name, args in _exported(units):
        protos.append(f"{ret} {name}({', '.join(f'{t} a{i}' for i, (t, _) in enumerate(args))});")
        outer = ", ".join(f"{'intptr_t' if ptr else t} a{i}" for i, (t, ptr) in enumerate(args))
        inner = ", ".join(f"({t})a{i}" if ptr else f"a{i}" for i, (t, ptr) in enumerate(args))
        defs.append(f"{ret} hs_{name}({outer}) {{ {'' if ret == 'void' else 'return '}{name}({inner}); }}")
        cdef.append(f"{ret} hs_{name}({outer});")
        if _row_kernel(args):
            defs.append(_par_wrapper(ret, f"hs_{name}_par", name, outer, [f"({t})a{i}" if ptr else f"a{i}"
                                                                        for i, (t, ptr) in enumerate(args)]))
            cdef.append(f"{ret} hs_{name}_par(int64_t nt, {outer});")
    preamble = "\n".join(["#include <stdint.h>", "/* the kernels, in their own units */", *protos,
                          "/* addresses as Python ints */", *defs]) + "\n"
    return preamble, "\n".join(cdef) + "\n"


def _row_kernel(args) -> bool:
    """A kernel over rows r0 <= r < r1: its first two parameters are int64_t (r0, r1)."""
    return len(args) >= 2 and all(t.strip() == "int64_t" and not ptr for t, ptr in args[:2])


def _par_wrapper(ret: str, wname: str, name: str, outer: str, inner: list) -> str:
    """C of ``wname(nt, ...)``: ``name`` over rows [a0, a1) split into nt contiguous parts run by nt
    OpenMP threads (rows are independent: the result does not depend on the split); the sum of
    the parts' counts for an int64_t kernel. Without OpenMP the parts run in turn."""
    rest = ", ".join(inner[2:])
    call = f"{name}(lo, hi{', ' + rest if rest else ''})"
    acc = ret != "void"
    return "\n".join([
        f"{ret} {wname}(int64_t nt, {outer}) {{",
        "    const int64_t r0 = a0, r1 = a1;" + ("\n    int64_t acc = 0;" if acc else ""),
        "    #pragma omp parallel for num_threads((int)nt) schedule(static, 1)" + (" reduction(+:acc)" if acc else ""),
        "    for (int64_t t = 0; t < nt; t++) {",
        "        const int64_t lo = r0 + (r1 - r0) * t / nt, hi = r0 + (r1 - r0) * (t + 1) / nt;",
        f"        {'acc += ' if acc else ''}{call};",
        "    }",
        "    return acc;" if acc else "",
        "}"])


def _nullable(fn, nargs: int, pointers) -> object:
    """fn with None accepted for an address (NULL), as the ctypes kernels took it: one Python
    call around the cffi one, ``a or 0`` per address."""
    params = ", ".join(f"a{i}" for i in range(nargs))
    call = ", ".join(f"a{i} or 0" if i in pointers else f"a{i}" for i in range(nargs))
    ns = {"_f": fn}
    exec(f"def call({params}):\n    return _f({call})\n", ns)  # noqa: S102 - generated from the C prototypes
    return ns["call"]


class Kernels:
    """The loaded kernels: one attribute per C function of the units (``block_oracle``,
    ``diag_oracle``, ...), called as ``k.name(r0, r1, ..., addr, ...)`` with Python ints for the
    addresses (``tensor.data_ptr()``, None or 0 for NULL); ``flags``: the compiler flags of
    this build; ``ffi``/``raw``: cffi's objects (``raw.hs_<name>`` take 0, not None, for NULL)."""

    def __init__(self, module, flags):
        self.ffi, self.raw, self.flags = module.ffi, module.lib, tuple(flags)
        self.openmp = "-fopenmp" in self.flags
        for _, name, args in _exported():
            pointers = {i for i, (_, ptr) in enumerate(args) if ptr}
            fn = _nullable(getattr(module.lib, "hs_" + name), len(args), pointers)
            if _row_kernel(args) and self.openmp:
                fn.par = _nullable(getattr(module.lib, f"hs_{name}_par"), len(args) + 1, {i + 1 for i in pointers})
            setattr(self, name, fn)


def build(root: str | None = None, native_arch: bool = True):
    """Build with cffi (or find in the private cache ``root``, default ``$HETEROSIM_CACHE`` or
    ``~/.cache/heterosim/native``) and load the kernels: a :class:`Kernels`, or None where they
    cannot be built (:func:`why_off` says why). ``native_arch``: try -march=native first
    (linux). The cache key hashes the source, the flags, the compiler, Python's build flags,
    the platform, the CPU and cffi's version, so a changed kernel is rebuilt."""
    preamble, cdef = _wrappers()
    try:
        module, flags, _ = _load("fused", preamble, cdef, _UNITS, root, native_arch)
    except RuntimeError as e:
        _state["why"] = str(e)
        return None
    return Kernels(module, flags)


def compile_unit(name: str, source: str, cdef: str):
    """Compile the C ``source`` with the kernels' flags (no value-changing one; -march=native
    first, linux) through cffi into the private cache, load it and return its cffi ``lib``:
    the functions declared in ``cdef`` (C prototypes, as cffi's ``FFI.cdef`` reads them),
    callable with Python ints where they take ``intptr_t``/``int64_t`` addresses
    (``tensor.data_ptr()``). None where it cannot be had: :func:`unit_why_off` (name) says why
    (HETEROSIM_NATIVE=0, :func:`disabled`, no compiler, a compile error, ...). Thread-safe;
    each (source, cdef, flags, compiler, platform, CPU, cffi version) is built once per cache
    and loaded once per process. ``name``: a Python identifier naming the unit."""
    if not name.isidentifier():
        raise ValueError(f"compile_unit: name must be a Python identifier, got {name!r}")
    if _state["off"]:
        _unit_why[name] = "switched off (heterosim._native.disabled)"
        return None
    if os.environ.get("HETEROSIM_NATIVE", "1") == "0":
        _unit_why[name] = "HETEROSIM_NATIVE=0"
        return None
    try:
        module, _, _ = _load(name, source, cdef)
    except Exception as e:  # noqa: BLE001 - an accelerator: any failure is a reason, reported
        why = str(e) if isinstance(e, RuntimeError) else f"failed to load ({type(e).__name__}: {e})"
        _unit_why[name] = why = f"unit {name}: {why}"
        _warn_off(why)
        return None
    _unit_why.pop(name, None)
    return module.lib


def unit_why_off(name: str) -> str | None:
    """Why :func:`compile_unit` last returned None for ``name`` (None if it returned a lib)."""
    return _unit_why.get(name)


def _warn_off(why: str) -> None:
    """One RuntimeWarning per process, for kernels off for a reason the user did not choose."""
    if not _state["warned"]:
        _state["warned"] = True
        warnings.warn(f"heterosim: the C kernels are off ({why}); every computation takes its torch "
                      "path instead, with the same results, only slower", RuntimeWarning, stacklevel=3)


def lib():
    """The loaded kernels (a :class:`Kernels`), or None where they cannot be built or are off."""
    if _state["off"]:
        return None
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                off = os.environ.get("HETEROSIM_NATIVE", "1") == "0"
                try:
                    if off:
                        _state["why"] = "HETEROSIM_NATIVE=0"
                    _state["lib"] = None if off else build()
                except Exception as e:  # noqa: BLE001 - an accelerator: any failure is a reason
                    _state["why"] = f"the C kernels failed to load ({type(e).__name__}: {e})"
                    _state["lib"] = None
                if _state["lib"] is None and not off:
                    _warn_off(_state["why"])
                _state["tried"] = True
    return _state["lib"]


def why_off() -> str | None:
    """Why :func:`lib` returns None (None while it returns the kernels)."""
    if lib() is not None:
        return None
    return "switched off (heterosim._native.disabled)" if _state["off"] else _state.get("why", "unavailable")


_F64 = torch.float64


def usable(*tensors) -> bool:
    """Whether the kernels may read and write these tensors: CPU float64, contiguous, no autograd."""
    for t in tensors:
        if not (t.is_cpu and t.dtype is _F64 and t.is_contiguous()) or t.requires_grad:
            return False
    return True


_FROZEN = (torch.bool, torch.uint8)


def _describe(t) -> str:
    if not isinstance(t, torch.Tensor):
        return f"a {type(t).__name__}"
    return (f"shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')} on {t.device}"
            + ("" if t.is_contiguous() else ", not contiguous") + (", requires grad" if t.requires_grad else ""))


def check_buffer(where: str, what: str, t, shape, dtype=_F64) -> None:
    """ValueError unless ``t`` is a contiguous CPU tensor of ``dtype`` (or one of a tuple of
    dtypes) and exactly ``shape``: what a C kernel may be handed. Attribute comparisons only (no
    pass over the data)."""
    if (not isinstance(t, torch.Tensor) or t.shape != shape
            or (t.dtype not in dtype if isinstance(dtype, tuple) else t.dtype is not dtype)
            or not t.is_cpu or not t.is_contiguous()):
        kinds = " or ".join(str(x).replace("torch.", "") for x in (dtype if isinstance(dtype, tuple) else (dtype,)))
        raise ValueError(f"{where}: {what} must be a contiguous CPU {kinds} tensor of shape {tuple(shape)}; "
                         f"got {_describe(t)}")


def check_index(where: str, what: str, t, upper: int) -> None:
    """ValueError unless every entry of the int64 tensor ``t`` lies in 0..upper-1 (one min/max)."""
    if t.numel():
        lo, hi = (int(v) for v in torch.aminmax(t))
        if lo < 0 or hi >= upper:
            raise ValueError(f"{where}: {what} must lie in 0..{upper - 1}; got {lo}..{hi}")


def check_batch(where: str, d: int, X, G) -> int:
    """The checks of a (R, d) batch X and its gradient buffer G (contiguous CPU float64): R."""
    return check_oracle_buffers(where, d, X, G, None, _need_f=False)


def _fits(t, shape) -> bool:
    return t.shape == shape and t.dtype is _F64 and t.is_cpu and t.is_contiguous()


def check_oracle_buffers(where: str, d: int, X, G, f, norm=None, f_limit=None, frozen=None, X_prev=None,
                         _need_f=True) -> int:
    """The checks of an oracle's buffers before C sees them (X, G, X_prev: (R, d); f, norm,
    f_limit: (R,); all contiguous CPU float64; frozen: (R,) bool or uint8; norm, f_limit, frozen
    and X_prev may be None): R, or ValueError saying which buffer is wrong and what it must be.
    A few attribute comparisons per buffer (about 0.3 us each)."""
    try:  # the engine's case, all right: one expression
        R = X.shape[0]
        rd, r1 = (R, d), (R,)
        if (_fits(X, rd) and _fits(G, rd) and (f is None and not _need_f or _fits(f, r1))
                and (norm is None or _fits(norm, r1)) and (f_limit is None or _fits(f_limit, r1))
                and (X_prev is None or _fits(X_prev, rd))
                and (frozen is None or frozen.shape == r1 and frozen.dtype in _FROZEN and frozen.is_cpu
                     and frozen.is_contiguous())):
            return R
    except (AttributeError, IndexError, TypeError):
        pass
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or X.shape[1] != d:  # say what is wrong
        raise ValueError(f"{where}: X must be a contiguous CPU float64 (R, {d}) batch; got {_describe(X)}")
    R = X.shape[0]
    check_buffer(where, "X", X, (R, d))
    check_buffer(where, "G", G, (R, d))
    if _need_f:
        check_buffer(where, "f", f, (R,))
    for what, t in (("norm", norm), ("f_limit", f_limit)):
        if t is not None:
            check_buffer(where, what, t, (R,))
    if frozen is not None:
        check_buffer(where, "frozen", frozen, (R,), _FROZEN)
    if X_prev is not None:
        check_buffer(where, "X_prev", X_prev, (R, d))
    raise ValueError(f"{where}: the buffers do not fit X {_describe(X)}")  # (not reached: one check above fails)


def check_softmax_data(where: str, F, y, C: int, FT=None) -> None:
    """The checks of a softmax problem's data as ``softmax_oracle`` reads it (once per oracle
    made): F (n, p) and FT (its (p, n) transpose) contiguous CPU float64, y (n,) int64 labels
    in 0..C-1 (one min/max)."""
    if not isinstance(F, torch.Tensor) or F.dim() != 2:
        raise ValueError(f"{where}: the features must be an (n, p) float64 matrix; got {_describe(F)}")
    n, p = F.shape
    check_buffer(where, "the features", F, (n, p))
    if FT is not None:
        check_buffer(where, "the transposed features", FT, (p, n))
    check_buffer(where, "the labels", y, (n,), torch.int64)
    check_index(where, "the labels", y, C)


def check_draws(where: str, idx, which, R: int, n: int):
    """The checks of per-row minibatch draws: idx (S, m) int64 sample indices in 0..n-1, m >= 1,
    which (R,) int64 draw numbers in 0..S-1 (one min/max each). Returns them contiguous."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.shape[1] < 1:
        raise ValueError(f"{where}: idx must be an (S, m) int64 tensor of draws, m >= 1; got {_describe(idx)}")
    idx = idx.contiguous()
    which = which.contiguous() if isinstance(which, torch.Tensor) else which
    check_buffer(where, "idx", idx, tuple(idx.shape), torch.int64)
    check_buffer(where, "which", which, (R,), torch.int64)
    check_index(where, "idx", idx, n)
    check_index(where, "which", which, idx.shape[0])
    return idx, which


_pool = {}
PARALLEL_MIN_ELEMENTS = 1 << 18
"""Below this many elements per call a kernel runs on one thread (handing work to a second
thread costs tens of microseconds)."""


OPENMP_MIN_ELEMENTS = 1 << 14
"""Calls with at least this much work split their rows between OpenMP threads (entering a
parallel region costs a few microseconds, against tens for handing work to a Python thread)."""
_first_pid = []


def _openmp_safe() -> bool:
    """Whether this is the process that first split a call: threads (OpenMP's team, the Python
    pool) do not survive fork, so a forked child runs every call on its own thread."""
    if not _first_pid:
        _first_pid.append(os.getpid())
    return _first_pid[0] == os.getpid()


def rows(kernel, R: int, work: int, *args):
    """Run ``kernel(r0, r1, *args)`` over the rows 0..R-1, split across torch's thread count
    (``torch.get_num_threads()``): in C by OpenMP threads where the kernel has an OpenMP entry
    (``kernel.par``) and the call does at least OPENMP_MIN_ELEMENTS elements' work, else by
    Python threads when it does at least PARALLEL_MIN_ELEMENTS (cffi releases the GIL over each
    call, so the parts run at once); never in a forked child of the process that first split a
    call (no thread survives fork). Rows are independent: the result
    does not depend on the split. Returns the sum of the parts' results (kernels that count
    rows), or None (kernels that return nothing)."""
    threads = min(torch.get_num_threads(), R)
    if threads <= 1 or work < min(OPENMP_MIN_ELEMENTS, PARALLEL_MIN_ELEMENTS) or not _openmp_safe():
        return kernel(0, R, *args)
    par = getattr(kernel, "par", None)
    if par is not None and work >= OPENMP_MIN_ELEMENTS:
        return par(threads, 0, R, *args)  # the split in C: OpenMP threads, microseconds per call
    if work < PARALLEL_MIN_ELEMENTS:
        return kernel(0, R, *args)
    if threads not in _pool:
        from concurrent.futures import ThreadPoolExecutor
        _pool[threads] = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="heterosim-native")
    cuts = [R * i // threads for i in range(threads + 1)]
    futures = [_pool[threads].submit(kernel, cuts[i], cuts[i + 1], *args) for i in range(1, threads)]
    first = kernel(cuts[0], cuts[1], *args)
    rest = [fut.result() for fut in futures]
    return None if first is None else first + sum(rest)


def quadratic_oracle(x_star: torch.Tensor, f_star: float, diag: torch.Tensor | None = None,
                     blocks: list[torch.Tensor] | None = None):
    """The fused oracle of f(x) = f* + 1/2 (x - x*)^T H (x - x*), H = diag(``diag``) or
    blockdiag(``blocks``) (dense square blocks in order), as a function
    ``oracle(X, G, f, norm=None, f_limit=None, root=True) -> int`` over caller-owned contiguous
    CPU float64 buffers (X, G: (R, d); f, norm, f_limit: (R,)): G <- H (X - x*) row-wise,
    f <- f(X), norm <- ||G_r|| (``root``) or ||G_r||^2 if given; returns the number of rows with
    not f <= f_limit (0 without f_limit). Rows r with ``frozen[r]`` (a (R,) bool tensor: runs
    that diverged) are skipped: X[r] <- X_prev[r] if X_prev is given, G, f, norm left as they
    were. The arithmetic is fixed (g_i = sum_j e_j H_ji in order j = 0, 1, ..., no FMA; f and
    ||g||^2 as :func:`tree_sum_`; sqrt correctly rounded) and row by row: :func:`quadratic_oracle_torch`
    gives the same bits. None where the kernels are not available."""
    k = lib()
    if k is None:
        return None
    as64 = lambda t: t.detach().to("cpu", torch.float64).contiguous()  # noqa: E731
    xs = as64(x_star).reshape(-1)
    d = xs.numel()
    if diag is not None:
        lam = as64(diag).reshape(-1)
        if lam.numel() != d:
            raise ValueError(f"quadratic_oracle: diag has {lam.numel()} entries, x* has {d}")
        head, work, kernel = (d,), d, k.diag_oracle
        keep = (xs, lam)
        tail = (xs.data_ptr(), lam.data_ptr())
    else:
        if blocks is None or any(b.dim() != 2 or b.shape[0] != b.shape[1] for b in blocks):
            raise ValueError("quadratic_oracle: give diag, or blocks as a list of square matrices; got "
                             + ("neither" if blocks is None else str([tuple(b.shape) for b in blocks])))
        sizes = [int(b.shape[0]) for b in blocks]
        H = torch.cat([as64(b).reshape(-1) for b in blocks])
        off = torch.tensor([0, *itertools.accumulate(sizes)], dtype=torch.int64)
        hoff = torch.tensor([0, *itertools.accumulate(n * n for n in sizes[:-1])], dtype=torch.int64)
        if int(off[-1]) != d:
            raise ValueError(f"the blocks cover {int(off[-1])} coordinates, x* has {d}")
        head, work, kernel = (d, len(sizes), off.data_ptr(), hoff.data_ptr()), sum(n * n for n in sizes), k.block_oracle
        keep = (xs, H, off, hoff)
        tail = (xs.data_ptr(), H.data_ptr())
    f_star = float(f_star)

    def oracle(X, G, f, norm=None, f_limit=None, root=True, frozen=None, X_prev=None) -> int:
        R = check_oracle_buffers("quadratic oracle", d, X, G, f, norm, f_limit, frozen, X_prev)
        bad = rows(kernel, R, R * work, *head, X.data_ptr(), *tail, G.data_ptr(), f.data_ptr(),
                   None if norm is None else norm.data_ptr(), None if f_limit is None else f_limit.data_ptr(),
                   int(bool(root)), f_star, None if frozen is None else frozen.data_ptr(),
                   None if X_prev is None else X_prev.data_ptr())
        if bad < 0:
            raise MemoryError("the C oracle could not allocate its scratch")
        return bad
    oracle.buffers = keep  # the packed operands live as long as the function
    return oracle


# ----------------------------------------------------------------- the oracles' torch twins
def tree_sum_(V: torch.Tensor) -> torch.Tensor:
    """The sum over the last dimension of V (..., n), n >= 1, in the kernels' order
    (``tree_sum``), destroying V: halve until one entry is left, V[..., k] += V[..., k + m] for
    k < n/2 (m = n - n/2). Every addition is one rounded IEEE addition of the same two numbers
    as in C, so the two agree to the bit. Returns a view of V[..., 0]."""
    if not isinstance(V, torch.Tensor) or V.dim() < 1 or V.shape[-1] < 1:
        raise ValueError(f"tree_sum_: V must be a tensor whose last dimension is at least 1; got {_describe(V)}")
    n = V.shape[-1]
    while n > 1:
        h = n // 2
        m = n - h
        V[..., :h].add_(V[..., m:n])
        n = m
    return V[..., 0]


def sqrt_exact(t: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root (IEEE-754), as C's sqrt: torch's CPU kernel for float64
    need not be (it misrounds about 1% of values by one ulp), numpy's is."""
    if t.device.type == "cpu" and t.dtype in (torch.float64, torch.float32) and not t.requires_grad:
        import numpy as np
        return torch.from_numpy(np.sqrt(t.detach().contiguous().numpy()))
    return torch.sqrt(t)


def tree_norm(G: torch.Tensor, root: bool = True) -> torch.Tensor:
    """||G_r||_2 of every row of G (R, d) (or its square; root False), summed as the kernels
    sum it (:func:`tree_sum_`) and rooted with the correctly rounded sqrt: (R,). The C kernel
    where it applies (G a contiguous CPU float64 batch), else the same operations in torch (the
    same bits; any device, dtype or layout). ValueError where G is not (R, d) with d >= 1."""
    if not isinstance(G, torch.Tensor) or G.dim() != 2 or G.shape[1] < 1:
        raise ValueError(f"tree_norm: G must be an (R, d) tensor with d >= 1; got {_describe(G)}")
    k = lib()
    if k is not None and usable(G):
        out = G.new_empty(G.shape[0])
        rows(k.rows_norm, G.shape[0], G.numel(), G.shape[1], G.data_ptr(), out.data_ptr(), int(bool(root)))
        return out
    s = tree_sum_(G * G)
    return sqrt_exact(s) if root else s.clone()


def block_product_(E: torch.Tensor, mats, out: torch.Tensor, stacked: torch.Tensor | None = None) -> torch.Tensor:
    """out <- E blockdiag(mats) row by row, in the C block product's order: out[r, c0 + i] =
    sum_j E[r, c0 + j] M[j, i] summed j = 0, 1, ... from 0, each product and each sum rounded
    (no FMA): the products in one elementwise multiply, then their running sum over j (torch's
    CPU cumsum, where it is that sequential sum: :func:`_cumsum_is_sequential`; else one
    elementwise add per j). ``stacked``: the (n, db, db) stack of equal-size ``mats`` (all
    blocks at once). Row r's result depends on row r only. Returns out. The C product where E,
    out and the blocks are contiguous CPU float64, else torch (any device, dtype or layout);
    ValueError where the shapes do not fit: E (R, d), out like E, square blocks covering d."""
    if not isinstance(E, torch.Tensor) or E.dim() != 2:
        raise ValueError(f"block_product_: E must be an (R, d) tensor; got {_describe(E)}")
    if not isinstance(out, torch.Tensor) or out.shape != E.shape:
        raise ValueError(f"block_product_: out must have E's shape {tuple(E.shape)}; got {_describe(out)}")
    if (not mats or any(not isinstance(M, torch.Tensor) or M.dim() != 2 or M.shape[0] != M.shape[1] for M in mats)
            or sum(M.shape[0] for M in mats) != E.shape[1]):
        raise ValueError(f"block_product_: mats must be square blocks covering E's {E.shape[1]} columns; got "
                         f"{[tuple(M.shape) if isinstance(M, torch.Tensor) else type(M).__name__ for M in mats]}")
    if stacked is not None and tuple(stacked.shape) != (len(mats), *mats[0].shape):
        raise ValueError(f"block_product_: stacked must be the ({len(mats)}, {mats[0].shape[0]}, "
                         f"{mats[0].shape[0]}) stack of the blocks; got {_describe(stacked)}")
    R = E.shape[0]
    k = lib()
    if k is not None and E.dim() == 2 and R > 0 and usable(E, out) and all(usable(M) for M in mats):
        return _block_product_c(k, E, mats, out)  # the C block product: the same operations
    scan = E.device.type == "cpu" and _cumsum_is_sequential()
    parts = ([(E.reshape(R, len(mats), -1), stacked, out.view(R, len(mats), -1))] if stacked is not None else
             [(E[:, c0:c0 + M.shape[0]], M, out[:, c0:c0 + M.shape[0]])
              for c0, M in zip(itertools.accumulate([0] + [m.shape[0] for m in mats[:-1]]), mats)])
    for Eb, M, Ob in parts:  # Eb (R, [n,] db), M ([n,] db, db), Ob like Eb
        db = M.shape[-1]
        step = max(1, _TWIN_ELEMENTS // max(1, M.numel() * db // M.shape[-2]))  # rows per pass
        for r0 in range(0, R, step):
            P = torch.mul(Eb[r0:r0 + step].unsqueeze(-1), M)  # P[..., j, i] = E[..., j] M[..., j, i]
            O = Ob[r0:r0 + step]
            if scan:
                O.copy_(torch.cumsum(P, dim=-2).select(-2, db - 1))
            else:
                O.zero_()
                for j in range(db):
                    O.add_(P.select(-2, j))
    return out


def _block_product_c(k, E, mats, out):
    """block_product_ by the C block oracle (x* = 0, so its error is E itself, exactly)."""
    R, d = E.shape
    sizes = [int(M.shape[0]) for M in mats]
    H = torch.cat([M.reshape(-1) for M in mats])
    off = torch.tensor([0, *itertools.accumulate(sizes)], dtype=torch.int64)
    hoff = torch.tensor([0, *itertools.accumulate(n * n for n in sizes[:-1])], dtype=torch.int64)
    zero, f = E.new_zeros(d), E.new_empty(R)
    bad = rows(k.block_oracle, R, R * sum(n * n for n in sizes), d, len(sizes), off.data_ptr(), hoff.data_ptr(),
               E.data_ptr(), zero.data_ptr(), H.data_ptr(), out.data_ptr(), f.data_ptr(), None, None, 0, 0.0,
               None, None)
    if bad < 0:
        raise MemoryError("the C block product could not allocate its scratch")
    return out


_TWIN_ELEMENTS = 1 << 21
"""The most products block_product_ holds at once (16 MiB of float64)."""


def _cumsum_is_sequential() -> bool:
    """Whether torch's CPU cumsum over a middle dimension is the running sum s_j = s_{j-1} + p_j
    from 0, each addition rounded (so its last entry is the sequential sum): probed once."""
    if "cumsum" not in _lerp:
        gen = torch.Generator().manual_seed(7)
        P = torch.randn(3, 2, 37, 11, generator=gen, dtype=torch.float64)
        P = P * 10.0 ** torch.randint(-6, 6, P.shape, generator=gen).to(torch.float64)
        seq = torch.zeros(3, 2, 11, dtype=torch.float64)
        for j in range(37):
            seq.add_(P[:, :, j, :])
        _lerp["cumsum"] = bool(torch.equal(torch.cumsum(P, dim=-2)[:, :, -1, :], seq))
    return _lerp["cumsum"]


def quadratic_oracle_torch(x_star: torch.Tensor, f_star: float, diag: torch.Tensor | None = None,
                           blocks: list[torch.Tensor] | None = None, device=None, dtype=torch.float64):
    """The torch twin of :func:`quadratic_oracle`: the same function, signature and arithmetic
    (error, block product in :func:`block_product_`'s order, f = 0.5 tree(e.g) + f*, ||g||^2 =
    tree(g.g)), so that it returns the same bits as the C oracle, on any device and dtype. Rows
    are independent: a row's values do not depend on the batch it is in."""
    dev = torch.device(device) if device is not None else x_star.device
    cast = lambda t: t.detach().to(dev, dtype)  # noqa: E731
    xs = cast(x_star).reshape(-1)
    d = xs.numel()
    lam = cast(diag).reshape(-1) if diag is not None else None
    mats = [cast(b).contiguous() for b in blocks] if blocks is not None else None
    if mats is not None and sum(int(M.shape[0]) for M in mats) != d:
        raise ValueError(f"the blocks cover {sum(int(M.shape[0]) for M in mats)} coordinates, x* has {d}")
    stacked = torch.stack(mats) if mats is not None and len({M.shape[0] for M in mats}) == 1 else None
    f_star = float(f_star)

    def compute(X, G, f, norm, root):
        E = torch.sub(X, xs)
        if lam is not None:
            torch.mul(E, lam, out=G)
        else:
            block_product_(E, mats, G, stacked)
        if norm is None:
            f.copy_(tree_sum_(E.mul_(G)).mul(0.5).add_(f_star))
            return
        S = tree_sum_(torch.mul(torch.stack((E, G)), G))  # e.g and g.g together: (2, R)
        f.copy_(S[0].mul(0.5).add_(f_star))
        norm.copy_(sqrt_exact(S[1]) if root else S[1])

    def oracle(X, G, f, norm=None, f_limit=None, root=True, frozen=None, X_prev=None) -> int:
        live = None
        if frozen is not None and bool(frozen.any()):
            if X_prev is not None:
                X[frozen] = X_prev[frozen]
            live = torch.nonzero(~frozen).flatten()
        if live is None:
            compute(X, G, f, norm, root)
            return 0 if f_limit is None else int((~(f <= f_limit)).sum())
        if live.numel() == 0:
            return 0
        Xl = X.index_select(0, live)
        Gl, fl = torch.empty_like(Xl), Xl.new_empty(live.numel())
        nl = Xl.new_empty(live.numel()) if norm is not None else None
        compute(Xl, Gl, fl, nl, root)
        G.index_copy_(0, live, Gl)
        f.index_copy_(0, live, fl)
        if norm is not None:
            norm.index_copy_(0, live, nl)
        return 0 if f_limit is None else int((~(fl <= f_limit.index_select(0, live))).sum())
    return oracle


# ------------------------------------- how torch.lerp rounds (the fused steps of heterosim.optimizers.fused)
_lerp = {}


def lerp_fused() -> bool | None:
    """How torch.lerp rounds on this machine: True where its CPU kernels fuse the multiply-add
    (one rounding; the vectorised kernels on CPUs with FMA), False where each operation is
    rounded, None where it mixes the two (then no kernel can match it). Probed once, on both
    branches of the weight (w < 1/2 and w >= 1/2) and on the vector body and scalar tail."""
    if "fused" not in _lerp:
        from fractions import Fraction
        gen = torch.Generator().manual_seed(12345)
        a = torch.randn(67, generator=gen, dtype=torch.float64)
        b = torch.randn(67, generator=gen, dtype=torch.float64)
        fused = plain = True
        for w in (0.1, 0.9):
            got = torch.lerp(a, b, w).tolist()
            for x, y, z in zip(a.tolist(), b.tolist(), got):
                diff = y - x
                if w < 0.5:
                    fz, pz = float(Fraction(w) * Fraction(diff) + Fraction(x)), x + w * diff
                else:
                    fz, pz = float(Fraction(w - 1.0) * Fraction(diff) + Fraction(y)), y - diff * (1.0 - w)
                fused &= z == fz
                plain &= z == pz
        _lerp["fused"] = True if fused else (False if plain else None)
    return _lerp["fused"]


@contextlib.contextmanager
def disabled():
    """Within the block every caller takes its torch path (to test one against the other)."""
    old = _state["off"]
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = old
