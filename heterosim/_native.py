r"""Fused CPU kernels for the engine's hot loops, compiled from C on first use.

One step of Adam on a (B, d) float64 batch is a handful of elementwise operations; done
as separate torch operations, each streams the whole state through memory and pays a
dispatch, and on a CPU that costs several times the arithmetic. The kernels below do the
work of a rule's in-place twin (:mod:`heterosim.optimizers`, ``update_``) in one pass over
each row, with the same operations in the same order (no fast-math, no contraction into
FMAs), so they agree with the torch twins to the last bit or to one rounding. The block
quadratic's whole oracle (error, block product, f and ||g||, the divergence test;
:meth:`~heterosim.problems.quadratic.BlockQuadratic.loss_and_grad_into`) is one kernel too,
row-major in and out, with a GEMM-style register-blocked block product: on the 2-core EPYC
it runs the reference sweep's oracle (128 rows x 8 blocks of 32) 1.7x faster than torch's
batched matmul alone, and the large one's (1024 x 64 blocks of 64) 1.2x faster.
tests/test_engine_fast.py pins every kernel to the pure rule, the torch twins with the
kernels switched off, and the plain engine loop.

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
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import torch

__all__ = ["lib", "usable", "disabled", "rows", "quadratic_oracle"]

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

/* The oracle of a diagonal quadratic f(x) = f* + 1/2 sum_j lam_j (x_j - x*_j)^2 (an axis-aligned
   block quadratic, or a rotated one in its eigenbasis) for rows r0 <= r < r1 of (R, d) X:
   G[r] <- lam (X[r] - x*), f[r], nrm[r] = ||G[r]|| (root) or ^2; returns the number of rows with
   !(f[r] <= flim[r]) (flim not NULL). Sums in eight interleaved partial sums. Frozen rows as in
   block_oracle: X[r] <- Xprev[r], nothing else. */
int64_t diag_oracle(int64_t r0, int64_t r1, int64_t d, double *X, const double *xs, const double *lam,
                    double *G, double *f, double *nrm, const double *flim, int root, double fstar,
                    const uint8_t *frozen, const double *Xprev) {
    int64_t bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        if (frozen && frozen[r]) {
            if (Xprev) for (int64_t j = 0; j < d; j++) X[r * d + j] = Xprev[r * d + j];
            continue;
        }
        const double *restrict x = X + r * d;
        double *restrict g = G + r * d;
        double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, acc2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t j = 0;
        for (; j + 8 <= d; j += 8)
            for (int q = 0; q < 8; q++) {
                const double e = x[j + q] - xs[j + q], w = lam[j + q] * e;
                g[j + q] = w;
                acc[q] += e * w;
                acc2[q] += w * w;
            }
        for (; j < d; j++) {
            const double e = x[j] - xs[j], w = lam[j] * e;
            g[j] = w;
            acc[0] += e * w;
            acc2[0] += w * w;
        }
        f[r] = 0.5 * (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) + fstar;
        const double sq = ((acc2[0] + acc2[1]) + (acc2[2] + acc2[3])) + ((acc2[4] + acc2[5]) + (acc2[6] + acc2[7]));
        if (nrm) nrm[r] = root ? sqrt(sq) : sq;
        if (flim) bad += !(f[r] <= flim[r]);
    }
    return bad;
}
"""

_MATVEC_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The oracle of a block quadratic, f(x) = f* + 1/2 (x - x*)^T H (x - x*) with H = blockdiag(H_k)
   dense blocks, for rows r0 <= r < r1 of a row-major (R, d) batch X:
       G[r] <- H (X[r] - x*),  f[r] <- f* + 1/2 (X[r] - x*).G[r],  nrm[r] <- ||G[r]||_2 (root) or ^2,
   block k spanning columns off[k] .. off[k+1] - 1 with H_k row-major at H + hoff[k].
   Returns the number of rows with !(f[r] <= flim[r]) (flim not NULL): diverged or NaN.
   Rows with frozen[r] != 0 (frozen not NULL; diverged runs) are skipped: X[r] <- Xprev[r] (Xprev
   not NULL), and G[r], f[r], nrm[r] are left as they were. Returns -1 if scratch memory fails.

   This unit is compiled with FMA contraction (the other is not): a matrix product's rounding
   is the library's choice anyway, and the contracted product is about 1.3x faster. The block
   product w = e^T H_k (row vector times matrix, H_k symmetric) is done as in a GEMM
   micro-kernel: MR rows times 8 columns of accumulators held in registers, over k = 0..db-1;
   each block is applied to all rows of the call before the next, so H_k stays in cache. The
   sums of f and ||g||^2 run per row over the blocks in order, in 4-lane vectors (the same
   order whatever the split of rows between threads). */

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
    v4d *acc = aligned_alloc(sizeof(v4d), sizeof(v4d) * 2 * (R > 0 ? R : 1));  /* per row: e.g, g.g */
    double *e = malloc(sizeof(double) * MR * dmax);
    if (!live || !acc || !e) { free(live); free(acc); free(e); return -1; }
    for (int64_t q = 0; q < 2 * R; q++) acc[q] = splat4(0.0);
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
                    v4d *ac = acc + 2 * (p + q);
                    ac[0] += ld4(e + q * db + i) * A[q][0] + ld4(e + q * db + i + 4) * A[q][1];
                    ac[1] += A[q][0] * A[q][0] + A[q][1] * A[q][1];
                }
            }
            for (; i < db; i++)  /* the last db mod 8 columns */
                for (int q = 0; q < rt; q++) {
                    double s = 0.0;
                    for (int64_t j = 0; j < db; j++) s += e[q * db + j] * Hk[j * db + i];
                    G[rw[q] * d + c0 + i] = s;
                    acc[2 * (p + q)][0] += e[q * db + i] * s;
                    acc[2 * (p + q) + 1][0] += s * s;
                }
        }
    }
    int64_t bad = 0;
    for (int64_t p = 0; p < R; p++) {
        const int64_t r = live[p];
        const v4d a = acc[2 * p], b = acc[2 * p + 1];
        f[r] = 0.5 * ((a[0] + a[1]) + (a[2] + a[3])) + fstar;
        const double s = (b[0] + b[1]) + (b[2] + b[3]);
        if (nrm) nrm[r] = root ? sqrt(s) : s;
        if (flim) bad += !(f[r] <= flim[r]);
    }
    free(live);
    free(acc);
    free(e);
    return bad;
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

_I, _P, _D, _C = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
_SIGNATURES = {
    "adam_step": [_I] * 3 + [_P] * 6 + [_I] + [_D] * 7,
    "sgd_step": [_I] * 3 + [_P] * 5 + [_I] + [_D] * 2 + [_C, _D, _C],
    "sign_step": [_I] * 3 + [_P] * 5 + [_I, _C, _D, _D],
}
_RETURNS = {"block_oracle": ctypes.c_int64, "diag_oracle": ctypes.c_int64, "softmax_oracle": ctypes.c_int64}
_SIGNATURES["softmax_oracle"] = [_I] * 5 + [_P] * 6 + [_I, _D] + [_P] * 4 + [_C] + [_P] * 3
_SIGNATURES["block_oracle"] = [_I] * 4 + [_P] * 9 + [_C, _D, _P, _P]
_SIGNATURES["diag_oracle"] = [_I] * 3 + [_P] * 7 + [_C, _D, _P, _P]
_FLAGS = ["-O3", "-fPIC", "-fno-math-errno"]  # vector sqrt; IEEE arithmetic otherwise
_UNITS = ((_SOURCE, "-ffp-contract=off"),  # the rules: each operation rounded as torch rounds it
          (_MATVEC_SOURCE, "-ffp-contract=fast"))  # the block product: FMAs

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


def _compile(cc, tmp, arch) -> str | None:
    """Each unit to an object with its own flags, linked into one shared library; None on failure."""
    objects = []
    for i, (source, contract) in enumerate(_UNITS):
        src, obj = os.path.join(tmp, f"unit{i}.c"), os.path.join(tmp, f"unit{i}.o")
        with open(src, "w") as fh:
            fh.write(source)
        done = subprocess.run([cc, *_FLAGS, *arch, contract, "-c", "-o", obj, src], capture_output=True, timeout=120)
        if done.returncode != 0:
            return None
        objects.append(obj)
    so = os.path.join(tmp, "fused.so")
    done = subprocess.run([cc, "-shared", "-o", so, *objects, "-lm"], capture_output=True, timeout=120)
    return so if done.returncode == 0 else None


def _build():
    cc = _compiler()
    if cc is None:
        return None
    key = "".join(src + flag for src, flag in _UNITS) + " ".join(_FLAGS) + cc + sys.platform + _cpu_tag()
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = os.environ.get("HETEROSIM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "heterosim"))
    path = os.path.join(root, f"fused-{tag}.so")
    if not os.path.exists(path):
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            arch = ["-march=native"] if sys.platform.startswith("linux") else []
            so = _compile(cc, tmp, arch) or (_compile(cc, tmp, []) if arch else None)  # without -march
            if so is None:
                return None
            os.replace(so, path)  # atomic: a concurrent process sees all of it or nothing
    handle = ctypes.CDLL(path)
    for name, args in _SIGNATURES.items():
        fn = getattr(handle, name)
        fn.argtypes, fn.restype = args, _RETURNS.get(name)
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


def rows(kernel, R: int, work: int, *args):
    """Run ``kernel(r0, r1, *args)`` over the rows 0..R-1, split across torch's thread count
    (``torch.get_num_threads()``) when the call does at least PARALLEL_MIN_ELEMENTS elements'
    work; ctypes releases the GIL, so the parts run at once. Rows are independent: the result
    does not depend on the split. Returns the sum of the parts' results (kernels that count
    rows), or None (kernels that return nothing)."""
    threads = min(torch.get_num_threads(), R)
    if threads <= 1 or work < PARALLEL_MIN_ELEMENTS:
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
    were. None where the kernels are not available."""
    k = lib()
    if k is None:
        return None
    as64 = lambda t: t.detach().to("cpu", torch.float64).contiguous()  # noqa: E731
    xs = as64(x_star)
    d = xs.numel()
    if diag is not None:
        lam = as64(diag)
        head, work, kernel = (d,), d, k.diag_oracle
        keep = (xs, lam)
        tail = (xs.data_ptr(), lam.data_ptr())
    else:
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
        R = X.shape[0]
        bad = rows(kernel, R, R * work, *head, X.data_ptr(), *tail, G.data_ptr(), f.data_ptr(),
                   None if norm is None else norm.data_ptr(), None if f_limit is None else f_limit.data_ptr(),
                   int(bool(root)), f_star, None if frozen is None else frozen.data_ptr(),
                   None if X_prev is None else X_prev.data_ptr())
        if bad < 0:
            raise MemoryError("the C oracle could not allocate its scratch")
        return bad
    oracle.buffers = keep  # the packed operands live as long as the function
    return oracle


@contextlib.contextmanager
def disabled():
    """Within the block every caller takes its torch path (to test one against the other)."""
    old = _state["off"]
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = old
