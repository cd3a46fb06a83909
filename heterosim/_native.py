r"""Fused CPU kernels for the engine's hot loops, compiled from C on first use, and their
torch twins.

One step of Adam on a (B, d) float64 batch is a handful of elementwise operations; done
as separate torch operations, each streams the whole state through memory and pays a
dispatch, and on a CPU that costs several times the arithmetic. The step kernels below do
the work of a rule's pure ``update`` (:mod:`heterosim.optimizers`) in one or two passes over
each row, with the same operations in the same order, so that they take the same steps to
the bit: :func:`stepper` hands the engine a kernel only after checking that on this machine.
The block quadratic's whole oracle (error, block product, f and ||g||, the divergence test)
is one kernel too, row-major in and out, with a GEMM-style register-blocked block product
(on the 2-core EPYC it runs the reference sweep's oracle, 128 rows x 8 blocks of 32, faster
than torch's batched matmul), and :func:`quadratic_oracle_torch` is its torch twin, the same
operations in the same order: one arithmetic for the engine's every path (heterosim.engine,
"One T per config"). tests/test_engine_fast.py pins every kernel to the pure rule and to its
twin, bit for bit.

No compiler flag changes a value: -O3 without fast-math (no reassociation), -ffp-contract=off
(no multiply-add fused behind the source's back; fma() is written out where torch itself
fuses, in its lerp), -fno-math-errno (the sqrt instruction, correctly rounded). -march=native
picks instructions, not results (tests/test_engine_fast.py builds without it and compares).

The source is compiled once per machine with the C compiler named by ``$CC`` (default
``cc``/``gcc``) into ``$HETEROSIM_CACHE`` (default ``~/.cache/heterosim``), keyed by a hash
of the source, the flags and the CPU, and loaded with ctypes. Where no compiler works, or
``HETEROSIM_NATIVE=0``, :func:`lib` returns None (:func:`why_off` says why) and every caller
takes its torch path: the kernels are an accelerator, never a requirement, and change no
number the engine reports.
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

__all__ = ["lib", "build", "why_off", "usable", "disabled", "rows", "quadratic_oracle",
           "quadratic_oracle_torch", "block_product_", "tree_sum_", "tree_norm", "sqrt_exact",
           "stepper", "STEPPED", "lerp_fused"]

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* Every operation below is one IEEE operation, rounded once, in the order of the torch code it
   stands for (the rules' pure ``update``, the reference oracle): the unit is compiled without
   contraction (-ffp-contract=off) and without fast-math, and fma() appears only where torch
   itself computes a fused multiply-add (its lerp). */

/* torch.lerp(a, b, w) as torch computes it: its CPU kernels fuse the multiply-add (fused != 0),
   w < 1/2: a + w (b - a), else b + (w - 1)(b - a); unfused: each product and sum rounded. */
static inline double lerp(double a, double b, double w, const int fused) {
    const double diff = b - a;
    if (fused) return (w < 0.5) ? fma(w, diff, a) : fma(w - 1.0, diff, b);
    return (w < 0.5) ? a + w * diff : b - diff * (1.0 - w);
}
/* torch.sign: -1, 0 or +1 (0 for nan) */
static inline double sgn(double g) { return (double)(g > 0.0) - (double)(g < 0.0); }

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

/* Every step kernel updates rows r0 <= r < r1 of (R, d) row-major buffers (callers split the
   rows between threads), with the learning rate of row r at lr[r * ls] (ls = 0: one for all).

   Adam / AdamW, one step, as heterosim.optimizers' pure adam update (torch.optim.Adam's
   arithmetic), operation for operation, in two passes around torch's own sqrt (torch's float64
   sqrt on CPU need not be the correctly rounded one: the caller applies torch.sqrt to v in
   between, so the bits are torch's):
       adam_moments: g <- g + wd x (coupled), m <- lerp(m, g, w1), v <- b2 v + w2 (g g);
       adam_apply:   s = sqrt(v) (given), step = nlr (m / (s / c2 + eps)), nlr = -(lr_r / bc1),
                     step <- step - (lr_r dwd) x (decoupled), out = x + step.
   The flags are constants at each call of the row loops (one branch-free vector loop per case). */
static inline void adam_moments_row(int64_t d, const double *restrict x, const double *restrict g,
                                    double *restrict m, double *restrict v, double w1, double b2, double w2,
                                    double wd, const int fused, const int coupled) {
    for (int64_t j = 0; j < d; j++) {
        const double gj = coupled ? g[j] + wd * x[j] : g[j];
        m[j] = lerp(m[j], gj, w1, fused);
        v[j] = b2 * v[j] + w2 * (gj * gj);
    }
}

void adam_moments(int64_t r0, int64_t r1, int64_t d, const double *x, const double *g, double *m, double *v,
                  double w1, double b2, double w2, double wd, int fused) {
    const int coupled = wd != 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
#define MOM(F, C) adam_moments_row(d, x + o, g + o, m + o, v + o, w1, b2, w2, wd, F, C)
        if (fused) { if (coupled) MOM(1, 1); else MOM(1, 0); }
        else { if (coupled) MOM(0, 1); else MOM(0, 0); }
#undef MOM
    }
}

/* The same step in one pass, with C's (correctly rounded) sqrt: the same bits where the pure
   update's sqrt is the correctly rounded one (stepper checks which of the two reproduces it). */
static inline void adam_update_row(int64_t d, const double *restrict x, const double *restrict g,
                                   double *restrict m, double *restrict v, double *restrict out, double nlr,
                                   double dlr, double w1, double b2, double w2, double c2, double eps, double wd,
                                   const int fused, const int coupled, const int decoupled) {
    for (int64_t j = 0; j < d; j++) {
        const double gj = coupled ? g[j] + wd * x[j] : g[j];
        const double mj = lerp(m[j], gj, w1, fused);
        const double vj = b2 * v[j] + w2 * (gj * gj);
        m[j] = mj;
        v[j] = vj;
        const double step = nlr * (mj / (sqrt(vj) / c2 + eps));
        out[j] = x[j] + (decoupled ? step - dlr * x[j] : step);
    }
}

void adam_update(int64_t r0, int64_t r1, int64_t d, const double *x, const double *g, double *m, double *v,
                 double *out, const double *lr, int64_t ls, double bc1, double c2, double dwd, double w1,
                 double b2, double w2, double eps, double wd, int fused) {
    const int coupled = wd != 0.0, decoupled = dwd != 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
        const double nlr = -(lr[r * ls] / bc1), dlr = lr[r * ls] * dwd;
#define ADAM(F, C, D) adam_update_row(d, x + o, g + o, m + o, v + o, out + o, nlr, dlr, w1, b2, w2, c2, eps, wd, F, C, D)
        if (fused) {
            if (coupled) ADAM(1, 1, 0); else if (decoupled) ADAM(1, 0, 1); else ADAM(1, 0, 0);
        } else {
            if (coupled) ADAM(0, 1, 0); else if (decoupled) ADAM(0, 0, 1); else ADAM(0, 0, 0);
        }
#undef ADAM
    }
}

static inline void adam_apply_row(int64_t d, const double *restrict x, const double *restrict m,
                                  const double *restrict s, double *restrict out, double nlr, double dlr,
                                  double c2, double eps, const int decoupled) {
    for (int64_t j = 0; j < d; j++) {
        const double step = nlr * (m[j] / (s[j] / c2 + eps));
        out[j] = x[j] + (decoupled ? step - dlr * x[j] : step);
    }
}

void adam_apply(int64_t r0, int64_t r1, int64_t d, const double *x, const double *m, const double *s,
                double *out, const double *lr, int64_t ls, double bc1, double c2, double eps, double dwd) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * d;
        const double nlr = -(lr[r * ls] / bc1), dlr = lr[r * ls] * dwd;
        if (dwd != 0.0) adam_apply_row(d, x + o, m + o, s + o, out + o, nlr, dlr, c2, eps, 1);
        else adam_apply_row(d, x + o, m + o, s + o, out + o, nlr, dlr, c2, eps, 0);
    }
}

/* The arithmetic of heterosim.optimizers' in-place adam twin (update_), which folds
   c = sqrt(1 - beta2^t) into the step: row r steps by lr_r * scale * m / (sqrt(v) + ce), with
   scale = -c / (1 - beta1^t), ce = eps c; wd: coupled weight decay; dscale != 0: decoupled decay,
   out <- out + lr_r dscale x. It rounds differently from the pure update (adam_moments and adam_apply do not):
   the engine does not use it. */
static inline void adam_twin_row(int64_t d, const double *restrict x, const double *restrict g,
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
#define ADAM(L, C, D) adam_twin_row(d, x + o, g + o, m + o, v + o, out + o, c, dc, w1, b2, w2, ce, wd, L, C, D)
        if (low && !coupled && !decoupled) ADAM(1, 0, 0);
        else if (low && coupled) ADAM(1, 1, 0);
        else if (low && decoupled) ADAM(1, 0, 1);
        else if (!coupled && !decoupled) ADAM(0, 0, 0);
        else if (coupled) ADAM(0, 1, 0);
        else ADAM(0, 0, 1);
#undef ADAM
    }
}

/* SGD with torch.optim.SGD's momentum, as the pure sgd update: g <- g + wd x,
   b <- g (first step) or mu b + damp g, d = g + mu b (nesterov) or b, out = x + (-lr_r) d.
   mu = 0: plain (stochastic) GD, out = x + (-lr_r) g. */
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
        out[j] = x[j] + a * dj;
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

/* The sign family, as the pure updates; kind 0: signSGD, 1: Signum (sign of the momentum),
   2: momentum of the signs. One straight-line loop per kind (branches in the loop body would
   keep it scalar). */
static inline void signsgd_row(int64_t d, const double *restrict x, const double *restrict g,
                               double *restrict out, double a, double wd, const int coupled) {
    for (int64_t j = 0; j < d; j++) {
        double dj = sgn(g[j]);
        if (coupled) dj = dj + wd * x[j];
        out[j] = x[j] + a * dj;
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
        out[j] = x[j] + a * dj;
    }
}

static inline void signmom_row(int64_t d, const double *restrict x, const double *restrict g,
                               double *restrict buf, double *restrict out, double a, double beta, double w) {
    for (int64_t j = 0; j < d; j++) {
        double mj = beta * buf[j] + w * sgn(g[j]);
        buf[j] = mj;
        out[j] = x[j] + a * mj;
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

_I, _P, _D, _C = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double, ctypes.c_int
_SIGNATURES = {
    "adam_update": [_I] * 3 + [_P] * 6 + [_I] + [_D] * 8 + [_C],
    "adam_moments": [_I] * 3 + [_P] * 4 + [_D] * 4 + [_C],
    "adam_apply": [_I] * 3 + [_P] * 5 + [_I] + [_D] * 4,
    "adam_step": [_I] * 3 + [_P] * 6 + [_I] + [_D] * 7,
    "sgd_step": [_I] * 3 + [_P] * 5 + [_I] + [_D] * 2 + [_C, _D, _C],
    "sign_step": [_I] * 3 + [_P] * 5 + [_I, _C, _D, _D],
}
_RETURNS = {"block_oracle": ctypes.c_int64, "diag_oracle": ctypes.c_int64, "softmax_oracle": ctypes.c_int64,
            "rows_f_and_norm": ctypes.c_int64, "rows_norm": ctypes.c_int64}
_SIGNATURES["softmax_oracle"] = [_I] * 5 + [_P] * 6 + [_I, _D] + [_P] * 4 + [_C] + [_P] * 3
_SIGNATURES["block_oracle"] = [_I] * 4 + [_P] * 9 + [_C, _D, _P, _P]
_SIGNATURES["diag_oracle"] = [_I] * 3 + [_P] * 7 + [_C, _D, _P, _P]
_SIGNATURES["rows_f_and_norm"] = [_I] * 3 + [_P] * 6 + [_C, _D, _P]
_SIGNATURES["rows_norm"] = [_I] * 3 + [_P] * 2 + [_C]
# No flag that changes a value: -O3 vectorises but never reassociates (no -ffast-math, no
# -fassociative-math), -ffp-contract=off forbids fusing a * b + c into an FMA (fma() is written
# out where torch fuses), -fno-math-errno only lets sqrt be the (correctly rounded) instruction.
# -march=native (linux, when it compiles) picks the instructions, not the results: every
# operation is an IEEE-754 one, correctly rounded on any x86-64 or arm64 unit
# (tests/test_engine_fast.py builds the kernels with and without it and compares the bits).
_FLAGS = ["-O3", "-fPIC", "-fno-math-errno", "-ffp-contract=off"]
_UNITS = (_SOURCE, _MATVEC_SOURCE)

_lock = threading.Lock()
_state = {"lib": None, "tried": False, "off": False, "why": None}


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
    """Each unit to an object, linked into one shared library; None on failure."""
    objects = []
    for i, source in enumerate(_UNITS):
        src, obj = os.path.join(tmp, f"unit{i}.c"), os.path.join(tmp, f"unit{i}.o")
        with open(src, "w") as fh:
            fh.write(source)
        done = subprocess.run([cc, *_FLAGS, *arch, "-c", "-o", obj, src], capture_output=True, timeout=120)
        if done.returncode != 0:
            return None
        objects.append(obj)
    so = os.path.join(tmp, "fused.so")
    done = subprocess.run([cc, "-shared", "-o", so, *objects, "-lm"], capture_output=True, timeout=120)
    return so if done.returncode == 0 else None


def build(root: str | None = None, native_arch: bool = True):
    """Compile (or find in the cache ``root``, default ``$HETEROSIM_CACHE`` or
    ``~/.cache/heterosim``) and load the kernels: a ctypes library, or None where no compiler
    works. ``native_arch``: try -march=native first (linux). The cache key is the source, the
    flags, the compiler and the CPU, so a changed kernel is rebuilt."""
    cc = _compiler()
    if cc is None:
        _state["why"] = "no C compiler"
        return None
    arch = ["-march=native"] if native_arch and sys.platform.startswith("linux") else []
    key = "".join(_UNITS) + " ".join(_FLAGS + arch) + cc + sys.platform + _cpu_tag()
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = root or os.environ.get("HETEROSIM_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "heterosim"))
    path = os.path.join(root, f"fused-{tag}.so")
    if not os.path.exists(path):
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            so = _compile(cc, tmp, arch) or (_compile(cc, tmp, []) if arch else None)  # without -march
            if so is None:
                _state["why"] = "the C kernels failed to compile"
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
                    if off:
                        _state["why"] = "HETEROSIM_NATIVE=0"
                    _state["lib"] = None if off else build()
                except (OSError, subprocess.SubprocessError) as e:
                    _state["why"] = f"the C kernels failed to load ({type(e).__name__})"
                    _state["lib"] = None
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
    were. The arithmetic is fixed (g_i = sum_j e_j H_ji in order j = 0, 1, ..., no FMA; f and
    ||g||^2 as :func:`tree_sum_`; sqrt correctly rounded) and row by row: :func:`quadratic_oracle_torch`
    gives the same bits. None where the kernels are not available."""
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


# ----------------------------------------------------------------- the oracles' torch twins
def tree_sum_(V: torch.Tensor) -> torch.Tensor:
    """The sum over the last dimension of V (..., n), n >= 1, in the kernels' order
    (``tree_sum``), destroying V: halve until one entry is left, V[..., k] += V[..., k + m] for
    k < n/2 (m = n - n/2). Every addition is one rounded IEEE addition of the same two numbers
    as in C, so the two agree to the bit. Returns a view of V[..., 0]."""
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
    where it applies, else the same operations in torch (the same bits)."""
    k = lib()
    if k is not None and G.dim() == 2 and G.shape[1] > 0 and usable(G):
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
    blocks at once). Row r's result depends on row r only. Returns out."""
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


# ----------------------------------------------------------------------- the rules' steps
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


def _lr_rows(lr):
    """The learning rates as a kernel reads them: (tensor, stride between rows); keep it alive."""
    if isinstance(lr, torch.Tensor):
        return lr, 1
    return torch.tensor([float(lr)], dtype=torch.float64), 0


STEPPED = ("sgd", "gd", "sgd_momentum", "nesterov", "signsgd", "signum", "sign_momentum", "adam", "adamw")
"""The registered rules that :func:`stepper` may run in C."""

_verified = {}


def stepper(opt, like: torch.Tensor):
    """An in-place step of the registered rule ``opt`` by the C kernels, with the arithmetic of
    its pure ``update`` operation for operation, so that it takes the same steps to the bit:
    ``step(g, state, x, lr, out, tmp) -> new_state`` writes out = x + step (lr: a float or a
    (R, 1) tensor; tmp: scratch shaped like x) and updates the state's tensors in place (they
    must be the caller's own). None where no kernel does this rule (:data:`STEPPED`, as built by
    its registered factory), the kernels are off, ``like`` is not a CPU float64 (R, d) batch, or
    the kernel does not reproduce ``update`` here: each (rule, hyperparameters) is checked once
    per process against the pure update, bit for bit, over a few steps of a probe batch
    (values over many magnitudes, one learning rate per row), so a kernel that rounds
    differently from the reference on this machine is never used."""
    k = lib()
    if k is None or opt.name not in STEPPED or like.dim() != 2 or not usable(like):
        return None
    from heterosim import optimizers
    try:
        ref = optimizers.make(opt.name, **dict(opt.hyper))
    except (ValueError, TypeError):
        return None
    if (getattr(opt.update, "__code__", None) is not ref.update.__code__
            or getattr(opt.init, "__code__", None) is not ref.init.__code__):
        return None  # a rule of its own under a registered name
    key = (opt.name, repr(sorted(dict(opt.hyper).items())))
    if key not in _verified:  # the first candidate that reproduces the pure update, or None
        _verified[key] = next((i for i, step in enumerate(_step_fns(k, opt, optimizers))
                               if _reproduces_update(opt, step)), None)
    i = _verified[key]
    return None if i is None else _step_fns(k, opt, optimizers)[i]


def _step_fns(k, opt, optimizers) -> list:
    """The candidate C steps of a rule, fastest first."""
    h = dict(opt.hyper)
    if opt.name in ("sgd", "gd", "sgd_momentum", "nesterov"):
        mu, damp = float(h.get("momentum", 0.0)), 1 - float(h.get("dampening", 0.0))
        nesterov, wd = int(bool(h.get("nesterov", False))), float(h.get("weight_decay", 0.0))

        def step(g, state, x, lr, out, tmp):
            R, d = x.shape
            lrt, ls = _lr_rows(lr)
            rows(k.sgd_step, R, R * d, d, x.data_ptr(), g.data_ptr(), state.buf.data_ptr() if mu else None,
                 out.data_ptr(), lrt.data_ptr(), ls, mu, damp, nesterov, wd, int(state.count == 0))
            return (optimizers.MomentumState(state.count + 1, state.buf) if mu
                    else optimizers.CountState(state.count + 1))
        return [step]
    if opt.name in ("signsgd", "signum", "sign_momentum"):
        kind = ("signsgd", "signum", "sign_momentum").index(opt.name)
        beta, wd = float(h.get("beta", 0.0)), float(h.get("weight_decay", 0.0))

        def step(g, state, x, lr, out, tmp):
            R, d = x.shape
            lrt, ls = _lr_rows(lr)
            rows(k.sign_step, R, R * d, d, x.data_ptr(), g.data_ptr(), state.buf.data_ptr() if kind else None,
                 out.data_ptr(), lrt.data_ptr(), ls, kind, beta, wd)
            return (optimizers.MomentumState(state.count + 1, state.buf) if kind
                    else optimizers.CountState(state.count + 1))
        return [step]
    fused = lerp_fused()
    if fused is None:
        return []
    b1, b2 = (float(b) for b in h["betas"])
    eps, wd = float(h["eps"]), float(h["weight_decay"])
    decoupled = opt.name == "adamw"

    def one_pass(g, state, x, lr, out, tmp):  # C's sqrt
        R, d = x.shape
        t = state.count + 1
        bc1, c2 = 1 - b1 ** t, (1 - b2 ** t) ** 0.5  # the pure update's scalars, in Python
        lrt, ls = _lr_rows(lr)
        m, v = state.exp_avg, state.exp_avg_sq
        rows(k.adam_update, R, R * d, d, x.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), out.data_ptr(),
             lrt.data_ptr(), ls, bc1, c2, wd if decoupled else 0.0, 1 - b1, b2, 1 - b2, eps,
             0.0 if decoupled else wd, int(fused))
        return optimizers.AdamState(t, m, v)

    def around_sqrt(g, state, x, lr, out, tmp):  # torch's sqrt
        R, d = x.shape
        t = state.count + 1
        bc1, c2 = 1 - b1 ** t, (1 - b2 ** t) ** 0.5
        lrt, ls = _lr_rows(lr)
        m, v = state.exp_avg, state.exp_avg_sq
        rows(k.adam_moments, R, R * d, d, x.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(),
             1 - b1, b2, 1 - b2, 0.0 if decoupled else wd, int(fused))
        torch.sqrt(v, out=tmp)  # torch's sqrt, as the pure update takes it
        rows(k.adam_apply, R, R * d, d, x.data_ptr(), m.data_ptr(), tmp.data_ptr(), out.data_ptr(),
             lrt.data_ptr(), ls, bc1, c2, eps, wd if decoupled else 0.0)
        return optimizers.AdamState(t, m, v)
    return [one_pass, around_sqrt]


def _reproduces_update(opt, step, rows_: int = 8, d: int = 67, steps: int = 4) -> bool:
    """Whether ``step`` reproduces ``opt.update`` to the bit (iterate and state) over a few
    steps of a probe batch (see :func:`stepper`)."""
    from heterosim.blocks import Blocks
    gen = torch.Generator().manual_seed(20240611)
    scale = lambda: 10.0 ** torch.randint(-8, 4, (rows_, d), generator=gen).to(torch.float64)  # noqa: E731
    x = torch.randn(rows_, d, generator=gen, dtype=torch.float64) * scale()
    lr = torch.logspace(-4, 0.5, rows_, dtype=torch.float64).unsqueeze(1)
    blocks = Blocks.from_sizes([d])
    state = opt.init(x, blocks)
    own = type(state)(*(f.clone() if isinstance(f, torch.Tensor) else f for f in state))
    out, tmp = torch.empty_like(x), torch.empty_like(x)
    for _ in range(steps):
        g = torch.randn(rows_, d, generator=gen, dtype=torch.float64) * scale()
        delta, state = opt.update(g, state, x, lr, blocks)
        ref = x + delta
        own = step(g, own, x, lr, out, tmp)
        if not torch.equal(out, ref):
            return False
        for a, b in zip(own, state):
            if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
                return False
            if (not torch.equal(a, b)) if isinstance(a, torch.Tensor) else a != b:
                return False
        x = ref
    return True


@contextlib.contextmanager
def disabled():
    """Within the block every caller takes its torch path (to test one against the other)."""
    old = _state["off"]
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = old
