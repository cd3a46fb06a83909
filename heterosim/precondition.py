r"""Semidefinite constants of a quadratic: L_inf and the optimal diagonal preconditioner.

L_inf = sup_{||u||_inf <= 1} u^T H u
-------------------------------------
The l_inf smoothness constant of f = 1/2 x^T H x (docs/theory.md, B2). When diag(H) >= 0
the quadratic is convex in each coordinate separately, so the supremum over the box
is attained at a vertex u in {-1, 1}^d. Valid values, from tight to loose:

=============  =================================================================
``exact``      max over the 2^(d-1) vertices with u_0 = 1 (u and -u give the same value);
               :func:`linf_exact`, d <= 20
``sdp``        the relaxation max tr(H X) s.t. X psd, diag(X) = 1 (X = u u^T is feasible),
               certified through its dual min sum(y) s.t. diag(y) >= H; :func:`linf_sdp`
``sum_dbLb``   sum_b d_b L_b, valid when H <= blockdiag(L_b I) (block-separable smoothness);
               :func:`linf_sum_block`
``abs_sum``    ||H||_{1,1} = sum_ij |H_ij| >= sum_ij u_i u_j H_ij; :func:`linf_abs_sum`
``d_L2``       d lambda_max(H) (||u||_2^2 <= d)
=============  =================================================================

and :func:`linf_upper` picks the tightest that is available. For psd H, Nesterov's
pi/2 theorem bounds the relaxation's gap: exact >= (2/pi) sdp (Nesterov 1998,
*Semidefinite relaxation and nonconvex quadratic optimization*, Optim. Methods Softw. 9).
The SDP's dual variable y is a coordinate-wise smoothness vector (diag(y) >= H), and
sum(y) is the smallest ||L_vec||_1 of Bernstein et al.'s signSGD theorem.

kappa*: the optimal diagonal preconditioner
--------------------------------------------
kappa* = min { kappa : D <= H <= kappa D, D diagonal } (docs/theory.md, Q4): the best
condition number any fixed coordinate-wise scaling reaches. It is quasi-convex in
(kappa, D) (bisection on kappa, an SDP feasibility each), and dividing by kappa makes
it one SDP: with s = 1/kappa, max s s.t. s H <= D <= H (Qu, Ye & Zhou 2020,
*Diagonal preconditioning: theory and algorithms*). Every answer carries a certificate
checked by eigenvalues: the spectrum of D^{-1/2} H D^{-1/2} lies in [1, kappa*].

Solvers
-------
cvxpy with Clarabel (or SCS) is the reference: ``method="cvxpy"`` (and
``method="bisection"`` for kappa*). Clarabel's KKT system is dense for a dense
d x d LMI, so it takes tens of seconds at d = 64 (measured: 54 s for kappa*, 12 s
for L_inf on a loaded 2-core machine). The default ``method="barrier"`` is a
log-det barrier (path-following Newton) method written for these two problems:
they have only d or d + 1 variables, so its gradient and Hessian are closed-form
O(d^3) expressions (Boyd & Vandenberghe 2004, *Convex Optimization*, Alg. 11.1).
The tests pin it to the cvxpy reference. Whatever the solver returns, the value
reported is certified afterwards by eigenvalues, so it is valid even when the solve
was inexact; solver accuracy affects only how close to optimal it is.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "linf_exact", "linf_sdp", "linf_sum_block", "linf_abs_sum", "linf_upper",
    "DiagonalPreconditioner", "optimal_diagonal_preconditioner", "check_diagonal_certificate",
    "MAX_EXACT_DIM",
]

MAX_EXACT_DIM = 20            # 2^19 vertices: about a second of numpy
_EIG_MARGIN = 64.0            # eigvalsh is backward stable: error <= c d eps ||A||; c = 64 is generous
_BLOCK_TOL = 1e-12            # off-block entries below this (relative to max |H|) count as zero


# ------------------------------------------------------------------ threads
def _single_threaded(fn):
    """Run ``fn`` with one BLAS thread. These are small dense problems (d <= a few
    hundred): threading them gains nothing, and on a loaded machine it costs 100x
    (measured at d = 128 on 2 busy cores: 28 s threaded, 0.2 s single-threaded)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
            ctx = threadpool_limits(limits=1, user_api="blas")
        except ImportError:                      # threadpoolctl comes with scikit-learn
            ctx = contextlib.nullcontext()
        with ctx:
            return fn(*args, **kwargs)
    return wrapper


# ------------------------------------------------------------------ validation
def _symmetric(H, name="H") -> np.ndarray:
    if isinstance(H, torch.Tensor):
        H = H.detach().cpu().numpy()
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] == 0:
        raise ValueError(f"{name} must be a square (d, d) matrix with d >= 1; got shape {H.shape}")
    if not np.all(np.isfinite(H)):
        raise ValueError(f"{name} must be finite")
    scale = np.abs(H).max()
    asym = np.abs(H - H.T).max()
    if asym > 1e-10 * max(scale, 1e-300):
        raise ValueError(f"{name} must be symmetric; max |H - H^T| = {asym:.3g} (max |H| = {scale:.3g})")
    return (H + H.T) / 2.0


def _nonneg_diag(H):
    if np.any(np.diag(H) < 0):
        raise ValueError("L_inf needs diag(H) >= 0 (then the sup over the box is at a vertex); "
                         f"got min diag {np.diag(H).min():.3g}")


def _eig_margin(d, norm):
    return _EIG_MARGIN * d * np.finfo(np.float64).eps * norm


# --------------------------------------------------------------- L_inf: exact
@_single_threaded
def linf_exact(H, *, max_dim: int = MAX_EXACT_DIM, chunk: int = 1 << 15, return_vertex: bool = False):
    r"""Exact L_inf = max_{u in {-1,1}^d} u^T H u by vertex enumeration (d <= ``max_dim``).

    With diag(H) >= 0, u^T H u is convex in each u_i, so the sup over the box
    ||u||_inf <= 1 is attained at a vertex; u and -u give the same value, so u_0 = 1
    is fixed and 2^(d-1) vertices are scored, ``chunk`` at a time (vectorised).
    Returns the value (and the maximising vertex with ``return_vertex=True``).
    For diagonal H it is tr(H); for H = a a^T it is ||a||_1^2 = ||H||_{1,1}.
    """
    H = _symmetric(H)
    _nonneg_diag(H)
    d = H.shape[0]
    if d > max_dim:
        raise ValueError(f"vertex enumeration is limited to d <= {max_dim} (2^(d-1) vertices); got d = {d}. "
                         "Use linf_sdp or linf_upper for larger matrices.")
    n = 1 << (d - 1)
    shifts = np.arange(d - 1, dtype=np.int64)
    best, best_u = -math.inf, None
    for start in range(0, n, chunk):
        k = np.arange(start, min(n, start + chunk), dtype=np.int64)
        U = np.ones((k.size, d))
        U[:, 1:] = 1.0 - 2.0 * ((k[:, None] >> shifts) & 1)
        vals = np.einsum("ki,ki->k", U @ H, U)
        i = int(np.argmax(vals))
        if vals[i] > best:
            best, best_u = float(vals[i]), U[i].copy()
    return (best, best_u) if return_vertex else best


# ---------------------------------------------------------------- L_inf: SDP
@_single_threaded
def linf_sdp(H, *, method: str = "barrier", tol: float = 1e-9, return_certificate: bool = False):
    r"""Certified upper bound on L_inf from the SDP relaxation.

    Primal: max tr(H X) s.t. X psd, diag(X) = 1 (every vertex u gives X = u u^T).
    Dual: min sum(y) s.t. diag(y) - H psd; any dual-feasible y bounds every X:
    tr(H X) <= tr(diag(y) X) = sum(y). We solve the dual (``method="barrier"``, or
    ``"cvxpy"`` with Clarabel/SCS), then certify: m = lambda_min(diag(y) - H) by
    eigvalsh, and y is raised by max(0, -m) plus a rounding margin
    64 d eps_mach ||diag(y) - H||_2 (eigvalsh is backward stable), so the returned
    sum(y) is an upper bound on the relaxation and on L_inf whatever the solver's
    accuracy; ``tol`` is the relative duality gap the solve aims for.

    Returns the value, or (value, y) with ``return_certificate=True``.
    """
    H = _symmetric(H)
    _nonneg_diag(H)
    if method not in _LINF_DUAL_SOLVERS:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(_LINF_DUAL_SOLVERS)}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    d = H.shape[0]
    scale = float(np.abs(H).max())
    if scale == 0.0:
        return (0.0, np.zeros(d)) if return_certificate else 0.0
    Hn = H / scale
    y = _LINF_DUAL_SOLVERS[method](Hn, tol)
    F = np.diag(y) - Hn
    lam = np.linalg.eigvalsh(F)
    shift = max(0.0, -float(lam[0])) + _eig_margin(d, float(np.abs(lam).max()))
    y = (y + shift) * scale
    value = float(y.sum())
    return (value, y) if return_certificate else value


def _barrier_solve(oracle, c, x0, nu, *, rtol, mu=10.0, max_newton=50, max_first=500, max_outer=60):
    r"""Minimise c^T x over the domain of a log-det barrier (Boyd & Vandenberghe, Alg. 11.1).

    ``oracle(x, derivatives)`` returns None outside the domain, else phi (and its
    gradient and Hessian when ``derivatives``). ``nu`` is the barrier parameter (the
    total size of the LMIs): at the centre for parameter t the duality gap is nu / t.
    Centring is damped Newton with a backtracking (Armijo) line search; the Newton
    system is solved after a symmetric Jacobi scaling (the variables can differ in
    scale by many decades). Stops when nu / t <= rtol |c^T x|, or when floating point
    can no longer resolve progress. Every returned x is strictly feasible.
    """
    x = np.array(x0, dtype=np.float64)
    t = nu / max(abs(float(c @ x)), 1e-300)
    for outer in range(max_outer):
        # the first centring starts far from the central path (damped Newton phase)
        for _ in range(max_first if outer == 0 else max_newton):
            phi, grad_phi, hess = oracle(x, True)
            g = t * c + grad_phi
            dx = _newton_direction(hess, g)
            slope = float(g @ dx)
            f0 = t * float(c @ x) + phi
            # centred: Newton decrement lambda^2 / 2 small, or below what f0's rounding resolves
            roundoff = 1e-13 * abs(f0)
            if -slope / 2.0 <= max(1e-10, roundoff):
                break
            a, moved = 1.0, False
            while a > 1e-10:
                xn = x + a * dx
                phin = oracle(xn, False)
                if phin is not None and t * float(c @ xn) + phin <= f0 + 0.25 * a * slope + roundoff:
                    x, moved = xn, True
                    break
                a *= 0.5
            if not moved:                        # no resolvable progress: stop centring here
                break
        if nu / t <= rtol * abs(float(c @ x)):
            break
        t *= mu
    return x


def _newton_direction(hess, g):
    """-hess^{-1} g via a Jacobi-scaled Cholesky solve (least squares if that fails)."""
    scale = 1.0 / np.sqrt(np.maximum(np.diag(hess), 1e-300))
    Hs = scale[:, None] * hess * scale[None, :]
    try:
        Lc = np.linalg.cholesky(Hs)
        z = np.linalg.solve(Lc.T, np.linalg.solve(Lc, -g * scale))
    except np.linalg.LinAlgError:
        z = np.linalg.lstsq(Hs, -g * scale, rcond=None)[0]
    return z * scale


def _cho_inv(A):
    """(log det A, A^{-1}) from a Cholesky factorisation, or None if A is not positive definite."""
    try:
        Lc = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return None
    logdet = 2.0 * float(np.log(np.diag(Lc)).sum())
    Li = np.linalg.inv(Lc)
    return logdet, Li.T @ Li


def _linf_dual_barrier(Hn, tol):
    r"""min 1^T y - (1/t) log det(diag(y) - H): gradient -diag(W), Hessian W o W, W = F^{-1}."""
    d = Hn.shape[0]

    def oracle(y, derivatives):
        F = np.diag(y) - Hn
        if not derivatives:
            try:
                return -2.0 * float(np.log(np.diag(np.linalg.cholesky(F))).sum())
            except np.linalg.LinAlgError:
                return None
        logdet, W = _cho_inv(F)
        return -logdet, -np.diag(W).copy(), W * W

    y0 = np.full(d, float(np.linalg.eigvalsh(Hn)[-1]) + 1.0)
    return _barrier_solve(oracle, np.ones(d), y0, float(d), rtol=tol)


def _cvxpy_solver():
    import cvxpy as cp
    installed = cp.installed_solvers()
    for name in ("CLARABEL", "SCS"):
        if name in installed:
            return name
    raise ValueError(f"cvxpy has neither CLARABEL nor SCS installed (has {installed}); use method='barrier'")


def _linf_dual_cvxpy(Hn, tol):
    import cvxpy as cp
    d = Hn.shape[0]
    y = cp.Variable(d)
    prob = cp.Problem(cp.Minimize(cp.sum(y)), [cp.diag(y) - Hn >> 0])
    prob.solve(solver=_cvxpy_solver())
    if y.value is None:
        raise ValueError(f"the L_inf SDP did not solve (status {prob.status})")
    return np.asarray(y.value, dtype=np.float64)


_LINF_DUAL_SOLVERS = {"barrier": _linf_dual_barrier, "cvxpy": _linf_dual_cvxpy}


# --------------------------------------------------------- L_inf: closed forms
def linf_sum_block(L_blocks, sizes) -> float:
    r"""sum_b d_b L_b: an upper bound on L_inf under block-separable smoothness.

    If H <= blockdiag(L_b I) then u^T H u <= sum_b L_b ||u_b||^2 <= sum_b d_b L_b ||u||_inf^2.
    """
    if isinstance(L_blocks, torch.Tensor):
        L_blocks = L_blocks.detach().cpu().numpy()
    L = np.asarray(L_blocks, dtype=np.float64).reshape(-1)
    s = np.asarray(list(sizes), dtype=np.int64).reshape(-1)
    if L.size == 0 or L.size != s.size:
        raise ValueError(f"need one size per block constant; got {L.size} constants and {s.size} sizes")
    if np.any(s <= 0):
        raise ValueError(f"block sizes must be >= 1; got {s.tolist()}")
    if np.any(~np.isfinite(L)) or np.any(L < 0):
        raise ValueError(f"block constants L_b must be finite and >= 0; got {L.tolist()}")
    return float((s * L).sum())


def linf_abs_sum(H) -> float:
    r"""||H||_{1,1} = sum_ij |H_ij| >= u^T H u for every ||u||_inf <= 1 (any symmetric H)."""
    return float(np.abs(_symmetric(H)).sum())


def _block_indices(blocks, d):
    """Coordinate index arrays of each block, from a Blocks, a list of index arrays or sizes."""
    from heterosim.blocks import Blocks
    if isinstance(blocks, Blocks):
        if blocks.d != d:
            raise ValueError(f"the block partition covers d = {blocks.d}, H has d = {d}")
        return [s.cpu().numpy() for s in blocks.slices()]
    sizes = [int(s) for s in blocks]
    if any(s <= 0 for s in sizes) or sum(sizes) != d:
        raise ValueError(f"block sizes must be >= 1 and sum to d = {d}; got {sizes}")
    edges = np.cumsum([0] + sizes)
    return [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _is_block_diagonal(H, idx):
    mask = np.ones_like(H, dtype=bool)
    for ix in idx:
        mask[np.ix_(ix, ix)] = False
    off = np.abs(H[mask]).max() if mask.any() else 0.0
    return off <= _BLOCK_TOL * max(np.abs(H).max(), 1e-300)


def _linf_candidates(M, *, max_exact_dim, max_sdp_dim, method):
    """Valid values for one matrix, tightest kind first (``min`` keeps the first on ties)."""
    d = M.shape[0]
    out = {}
    if d <= max_exact_dim:
        out["exact"] = linf_exact(M, max_dim=max_exact_dim)
    elif d <= max_sdp_dim:
        out["sdp"] = linf_sdp(M, method=method)
    out["d_L2"] = d * max(float(np.linalg.eigvalsh(M)[-1]), 0.0)
    out["abs_sum"] = linf_abs_sum(M)
    return out


@_single_threaded
def linf_upper(H, blocks=None, *, max_exact_dim: int = MAX_EXACT_DIM, max_sdp_dim: int = 256,
               method: str = "barrier") -> tuple[float, str]:
    r"""The tightest available value of L_inf and its kind: (value, kind).

    Candidates: ``exact`` (d <= max_exact_dim), ``sdp`` (d <= max_sdp_dim), ``abs_sum``
    and ``d_L2``. With ``blocks`` (a :class:`heterosim.blocks.Blocks`, or block sizes for
    contiguous blocks) and a block-diagonal H, each block is bounded on its own and
    the results summed, since L_inf is additive over diagonal blocks:
    u^T H u = sum_b u_b^T H_b u_b and the box is the product of the block boxes, so
    the sup of the sum is the sum of the sups (the same argument, with a block-diagonal
    X, makes the SDP value additive). There, d_b lambda_max(H_b) summed is the kind
    ``sum_dbLb``. If H is not block-diagonal the blocks are ignored (sum_b d_b L_b with
    L_b = lambda_max(H_b) is then not a valid bound).

    ``kind`` is one of "exact", "sdp", "sum_dbLb", "abs_sum", "d_L2", or "a+b" when
    different blocks used different kinds.
    """
    H = _symmetric(H)
    _nonneg_diag(H)
    d = H.shape[0]
    parts = [np.arange(d)]
    block_mode = False
    if blocks is not None:
        idx = _block_indices(blocks, d)
        if len(idx) > 1 and _is_block_diagonal(H, idx):
            parts, block_mode = idx, True
    total, kinds = 0.0, set()
    for ix in parts:
        cands = _linf_candidates(H[np.ix_(ix, ix)], max_exact_dim=max_exact_dim,
                                 max_sdp_dim=max_sdp_dim, method=method)
        kind = min(cands, key=cands.get)
        total += cands[kind]
        kinds.add("sum_dbLb" if (block_mode and kind == "d_L2") else kind)
    return total, "+".join(sorted(kinds))


# ------------------------------------------------------------------ kappa*
@dataclass(frozen=True, eq=False)
class DiagonalPreconditioner:
    r"""The optimal diagonal preconditioner of an SPD matrix H, with its certificate.

    ``D`` (d,) diagonal entries with D <= H <= kappa_star D; ``eigs`` (d,) the sorted
    spectrum of D^{-1/2} H D^{-1/2}, which lies in [1, kappa_star] (the certificate);
    ``kappa_H`` = kappa(H) (the identity's value; kappa_star <= kappa_H always);
    ``kappa_solver`` the solver's own optimum 1/s* (kappa_star, computed from D by
    eigenvalues, is within the solver's tolerance of it); ``source``: which candidate
    gave the best certified value ("sdp", "jacobi" = diag(H), "identity").
    Preconditioned GD x - eta D^{-1} g with eta = 2/(1 + kappa_star) then contracts at
    (kappa_star - 1)/(kappa_star + 1) (:func:`heterosim.bounds.optimal_diagonal_precond_rate`).
    """

    kappa_star: float
    D: np.ndarray
    eigs: np.ndarray
    kappa_H: float
    kappa_solver: float
    method: str
    source: str

    def verify(self, H, rtol: float = 1e-9) -> bool:
        """Recompute the certificate from H by eigenvalues."""
        return check_diagonal_certificate(H, self.D, self.kappa_star, rtol=rtol)


def check_diagonal_certificate(H, D, kappa, rtol: float = 1e-9) -> bool:
    r"""True iff D <= H <= kappa D, checked by the spectrum of D^{-1/2} H D^{-1/2}
    lying in [1 - rtol, kappa (1 + rtol)]."""
    H = _symmetric(H)
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    if D.size != H.shape[0] or np.any(D <= 0):
        return False
    s = 1.0 / np.sqrt(D)
    lam = np.linalg.eigvalsh(s[:, None] * H * s[None, :])
    return bool(lam[0] >= 1.0 - rtol and lam[-1] <= kappa * (1.0 + rtol))


def _kappa_barrier(J, tol):
    r"""max s s.t. J - diag(delta) > 0, diag(delta) - s J > 0, by the barrier method.

    x = (delta, s); with WA = A^{-1}, WB = B^{-1}, A = J - diag(delta), B = diag(delta) - s J:
    grad_delta = diag(WA) - diag(WB), grad_s = tr(WB J);
    Hess_dd = WA o WA + WB o WB, Hess_ds = -diag(WB J WB), Hess_ss = tr(WB J WB J).
    """
    d = J.shape[0]

    def oracle(x, derivatives):
        delta, s = x[:d], x[d]
        A = J - np.diag(delta)
        B = np.diag(delta) - s * J
        if not derivatives:
            try:
                la = np.log(np.diag(np.linalg.cholesky(A))).sum()
                lb = np.log(np.diag(np.linalg.cholesky(B))).sum()
            except np.linalg.LinAlgError:
                return None
            return -2.0 * float(la + lb)
        (lda, WA), (ldb, WB) = _cho_inv(A), _cho_inv(B)
        K = WB @ J
        grad = np.empty(d + 1)
        grad[:d] = np.diag(WA) - np.diag(WB)
        grad[d] = np.trace(K)
        hess = np.empty((d + 1, d + 1))
        hess[:d, :d] = WA * WA + WB * WB
        cross = -(K * WB).sum(axis=1)            # -(WB J WB)_ii, using the symmetry of WB
        hess[:d, d] = cross
        hess[d, :d] = cross
        hess[d, d] = float((K * K.T).sum())
        return -(lda + ldb), grad, hess

    lam = np.linalg.eigvalsh(J)
    x0 = np.concatenate([np.full(d, lam[0] / 2.0), [lam[0] / (4.0 * lam[-1])]])
    c = np.zeros(d + 1)
    c[d] = -1.0
    x = _barrier_solve(oracle, c, x0, float(2 * d), rtol=tol)
    return x[:d], float(x[d])


def _kappa_cvxpy(J, tol):
    import cvxpy as cp
    d = J.shape[0]
    delta, s = cp.Variable(d), cp.Variable()
    prob = cp.Problem(cp.Maximize(s), [J - cp.diag(delta) >> 0, cp.diag(delta) - s * J >> 0])
    prob.solve(solver=_cvxpy_solver())
    if delta.value is None:
        raise ValueError(f"the kappa* SDP did not solve (status {prob.status})")
    return np.asarray(delta.value, dtype=np.float64), float(s.value)


def _kappa_bisection(J, tol):
    r"""docs/theory.md's formulation: bisection on log kappa; at each kappa the feasibility SDP
    max tau s.t. J - diag(delta) >= tau I, kappa diag(delta) - J >= tau I (feasible iff tau* >= 0)."""
    import cvxpy as cp
    d = J.shape[0]
    lam = np.linalg.eigvalsh(J)
    lo, hi = 1.0, float(lam[-1] / lam[0])
    best = np.full(d, lam[0])                   # feasible at kappa(J): D = lambda_min I
    delta, tau, kappa = cp.Variable(d), cp.Variable(), cp.Parameter(nonneg=True)
    prob = cp.Problem(cp.Maximize(tau), [J - cp.diag(delta) >> tau * np.eye(d),
                                         kappa * cp.diag(delta) - J >> tau * np.eye(d), tau <= 1.0])
    solver = _cvxpy_solver()
    while hi / lo > 1.0 + tol:
        mid = math.sqrt(lo * hi)
        kappa.value = mid
        prob.solve(solver=solver)
        if tau.value is not None and tau.value >= -1e-9 and np.all(delta.value > 0):
            hi, best = mid, np.asarray(delta.value, dtype=np.float64)
        else:
            lo = mid
    return best, 1.0 / hi


_KAPPA_SOLVERS = {"barrier": _kappa_barrier, "cvxpy": _kappa_cvxpy, "bisection": _kappa_bisection}


def _certify(J, delta):
    """kappa of diag(delta)^{-1/2} J diag(delta)^{-1/2} and its spectrum (None if delta is not > 0)."""
    if delta is None or np.any(~np.isfinite(delta)) or np.any(delta <= 0):
        return None
    s = 1.0 / np.sqrt(delta)
    lam = np.linalg.eigvalsh(s[:, None] * J * s[None, :])
    if lam[0] <= 0:
        return None
    return float(lam[-1] / lam[0]), lam


def _optimal_diag_one(H, tol, method):
    """kappa* of one SPD block: (kappa*, D, eigs (scaled into [1, kappa*]), kappa_solver, source)."""
    h = np.diag(H).copy()
    sj = 1.0 / np.sqrt(h)
    J = sj[:, None] * H * sj[None, :]            # Jacobi scaling: kappa* is invariant under it
    delta, s = _KAPPA_SOLVERS[method](J, tol) if J.shape[0] > 1 else (np.ones(1), 1.0)
    # delta in J's coordinates (D = diag(delta * h)); ties go to the earlier, closed-form ones
    candidates = {"jacobi": np.ones_like(h), "identity": 1.0 / h, "sdp": delta}
    best = None
    for source, dl in candidates.items():
        cert = _certify(J, dl)
        if cert is not None and (best is None or cert[0] < best[0]):
            best = (cert[0], dl, cert[1], source)
    kappa, dl, lam, source = best
    D = dl * h * lam[0]                          # scaled so that the spectrum starts at 1
    return kappa, D, lam / lam[0], (1.0 / s if s > 0 else math.inf), source


@_single_threaded
def optimal_diagonal_preconditioner(H, *, tol: float = 1e-6, method: str = "barrier",
                                    blocks=None) -> DiagonalPreconditioner:
    r"""kappa* = min kappa s.t. D <= H <= kappa D, D diagonal psd, with its certificate.

    Solved as one SDP in s = 1/kappa: max s s.t. s H <= D <= H (``method="barrier"``,
    default, or ``"cvxpy"``), or by docs/theory.md's bisection on kappa with an SDP feasibility
    problem each (``"bisection"``, cvxpy). H is first Jacobi-scaled (kappa* does not
    change under diagonal scaling, and unit diagonal helps the solver). The solver's D
    is then certified by eigenvalues and compared with D = diag(H) (Jacobi) and D = I,
    and the best certified one is returned, so kappa_star <= min(kappa(H), kappa of
    Jacobi) always, and kappa_star = 1 exactly for diagonal H. ``tol``: relative accuracy
    of the solve (duality gap, or bisection width).

    With ``blocks`` (Blocks or sizes) and a block-diagonal H, each block is solved on
    its own: D = blockdiag(D_b) and kappa* = max_b kappa*_b, since the scale of each
    D_b is free (D_b <= H_b <= kappa D_b holds for all b iff kappa >= max_b kappa*_b).

    Reference: Qu, Ye & Zhou (2020), *Diagonal preconditioning: theory and
    algorithms* (the SDP formulation); for 2x2 matrices Jacobi scaling is optimal
    (Forsythe & Straus 1955), kappa* = (1 + |r|)/(1 - |r|), r = H_12 / sqrt(H_11 H_22).
    """
    H = _symmetric(H)
    if method not in _KAPPA_SOLVERS:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(_KAPPA_SOLVERS)}")
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1); got {tol}")
    lam = np.linalg.eigvalsh(H)
    if lam[0] <= 0:
        raise ValueError(f"H must be positive definite; its smallest eigenvalue is {lam[0]:.3g}")
    d = H.shape[0]
    parts = [np.arange(d)]
    if blocks is not None:
        idx = _block_indices(blocks, d)
        if len(idx) > 1 and _is_block_diagonal(H, idx):
            parts = idx
    D, eigs = np.empty(d), []
    kappa, kappa_solver, sources = 1.0, 1.0, set()
    for ix in parts:
        k, Db, lb, ks, src = _optimal_diag_one(H[np.ix_(ix, ix)], tol, method)
        D[ix] = Db
        eigs.append(lb)
        kappa, kappa_solver = max(kappa, k), max(kappa_solver, ks)
        sources.add(src)
    return DiagonalPreconditioner(kappa_star=kappa, D=D, eigs=np.sort(np.concatenate(eigs)),
                                  kappa_H=float(lam[-1] / lam[0]), kappa_solver=kappa_solver,
                                  method=method, source="+".join(sorted(sources)))
