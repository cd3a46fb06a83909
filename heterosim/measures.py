r"""Heterogeneity measures: gradient-norm spread, block Hessian spectra, Jensen-Shannon distance.

The two source papers measure heterogeneity across parameter blocks differently, and
heterosim computes both with one ruler, on a synthetic problem (a loss of a flat
vector ``x``) and on a torch model (flattened by :func:`flatten_model`):

* **Gradient heterogeneity** (Tomihari & Sato, arXiv 2502.00213): the spread of the
  per-block gradient norms ||g_b||_2. :func:`block_grad_norms` gives the norms (of a
  (B, d) batch with a :class:`~heterosim.blocks.Blocks` partition, or of a model's
  parameters through ``torch._foreach_norm``); :func:`grad_heterogeneity` turns them
  into spread statistics of the block RMS r_b = ||g_b||_2 / sqrt(d_b);
  :func:`gradient_density` is phi(g) = ||g||_1^2 / (d ||g||_2^2) in [1/d, 1]
  (docs/theory.md, bound B5: sign descent beats GD per step iff phi(g) > L_inf / (d L_2)).
* **Hessian (block) heterogeneity** (Zhang et al., arXiv 2402.16788): the spectra of
  the diagonal Hessian blocks H_bb. :func:`block_hvp` multiplies by the block-diagonal
  part of the Hessian (forward-over-reverse through ``torch.func``, all blocks and
  probes in one ``vmap``); :func:`lanczos` tridiagonalises every block at once;
  :func:`block_top_eigenvalues` gives each block's top Ritz values (L_b at x);
  :func:`block_slq` estimates each block's spectral density by stochastic Lanczos
  quadrature (SLQ); :func:`exact_block_density` smooths a known spectrum the same way;
  :func:`js_divergence`, :func:`js_distance` and :func:`js0` compare densities.

Which gradient statistic the figures use
----------------------------------------
``HEADLINE_STAT = "std_log10_rms"``: the standard deviation, over blocks, of
log10 r_b -- the spread of the block RMS in decades. Reasons:

1. *Scale-free*: multiplying the whole gradient by c shifts every log10 r_b by
   log10 c and leaves the spread unchanged (as do the other three statistics), so
   runs with different losses, learning rates or steps are comparable.
2. *Robust*: ``max_min_ratio`` is set by the two extreme blocks alone (one nearly
   dead block sends it to any value); ``cv_rms`` and ``gini_rms`` are dominated by
   the largest blocks and saturate once the RMS span several decades (Gini <= 1 - 1/n,
   CV <= sqrt(n - 1)): for 8 blocks log-uniform over 2, 4 and 6 decades, Gini is
   0.62, 0.78, 0.84 and CV 1.25, 1.90, 2.25, while std log10 r_b is 0.65, 1.31, 1.96.
   The log-spread uses every block and grows linearly with the spread.
3. *It is the knob*: for block scales s_b spread log-uniformly over r decades
   (docs/theory.md, "block scale spread"), std log10 r_b = r sqrt((n + 1) / (12 (n - 1)))
   exactly, linear in r, so measured models and synthetic problems sit on one axis.
4. RMS rather than norm: a block twice as large with the same per-coordinate scale
   has a sqrt(2)-larger norm but is not more heterogeneous; r_b removes d_b.

Conventions
-----------
Blocks are a :class:`~heterosim.blocks.Blocks` or a list of block sizes (contiguous).
Hessian-vector products need a deterministic loss (``model.eval()``, no dropout) and
an attention written in plain math (fused attention kernels cannot differentiate
twice). Lanczos runs in the dtype of ``x``: use float64 for spectra (``model.double()``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from heterosim.blocks import Blocks
from heterosim.bounds import gradient_density  # noqa: F401  (phi(g), defined once, re-exported)

__all__ = [
    "HEADLINE_STAT", "block_grad_norms", "block_rms", "grad_heterogeneity", "gradient_density",
    "model_grad_heterogeneity", "flatten_model", "problem_loss_fn", "block_hvp", "lanczos", "gauss_quadrature",
    "draw_probes", "block_top_eigenvalues", "SLQResult", "block_slq", "spectrum_grid", "symlog",
    "slq_densities",
    "smoothed_density", "exact_block_density", "exact_block_eigenvalues", "js_divergence",
    "js_distance", "js0", "wasserstein1",
]

HEADLINE_STAT = "std_log10_rms"
"""The gradient-heterogeneity statistic the figures use (see the module docstring)."""

LN2 = math.log(2.0)
"""Upper bound of the Jensen-Shannon divergence in nats."""

SIGMA2_ZHANG = 1e-5
"""Variance of the Gaussian smoothing of SLQ densities in Zhang et al.'s code (sigma = 1e-5 ** 0.5)."""


# ---------------------------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------------------------
def _as_blocks(blocks, d: int) -> Blocks:
    """A :class:`Blocks` covering ``d`` coordinates, from a Blocks or a list of block sizes."""
    if isinstance(blocks, Blocks):
        out = blocks
    elif blocks is None:
        raise ValueError("a block partition is required: pass a heterosim.blocks.Blocks or a list of block sizes")
    else:
        try:
            sizes = [int(s) for s in blocks]
        except TypeError:
            raise ValueError(f"blocks must be a heterosim.blocks.Blocks or a list of block sizes; got {blocks!r}") from None
        out = Blocks.from_sizes(sizes)
    if out.d != d:
        raise ValueError(f"the block partition covers d = {out.d} coordinates, the vector has {d}")
    return out


# ---------------------------------------------------------------------------------------------
# gradient heterogeneity
# ---------------------------------------------------------------------------------------------
def block_grad_norms(grads, blocks=None):
    r"""Per-block gradient l2 norms ||g_b||_2.

    * ``grads`` a tensor (d,) or (B, d) and ``blocks`` a :class:`Blocks` (or list of
      sizes): returns (n,) or (B, n).
    * ``grads`` an ``nn.Module`` after ``backward()``: returns ``(names, norms)``, the
      names of the parameters that have a gradient (in ``named_parameters()`` order;
      parameters whose ``.grad`` is None are left out) and the (n,) tensor of their
      gradient l2 norms, computed with one ``torch._foreach_norm`` call (float64).
    """
    if isinstance(grads, torch.nn.Module):
        if blocks is not None:
            raise ValueError("for a model the blocks are its parameter tensors; do not pass blocks")
        named = [(name, p) for name, p in grads.named_parameters() if p.grad is not None]
        if not named:
            raise ValueError("the model has no parameter with a gradient: call backward() first")
        norms = torch._foreach_norm([p.grad for _, p in named], 2)
        return [name for name, _ in named], torch.stack([n.to(torch.float64) for n in norms])
    if not isinstance(grads, torch.Tensor):
        raise ValueError(f"grads must be a (B, d) or (d,) tensor or an nn.Module; got {type(grads).__name__}")
    if grads.dim() not in (1, 2):
        raise ValueError(f"grads must have shape (d,) or (B, d); got {tuple(grads.shape)}")
    return _as_blocks(blocks, grads.shape[-1]).norms(grads)


def _sizes_tensor(sizes, n: int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(sizes, Blocks):
        sizes = sizes.sizes
    s = torch.as_tensor(sizes, dtype=like.dtype, device=like.device).flatten()
    if s.numel() != n:
        raise ValueError(f"got {s.numel()} block sizes for {n} block norms")
    if bool((s <= 0).any()):
        raise ValueError(f"block sizes must be >= 1; got {s.tolist()}")
    return s


def block_rms(norms, sizes) -> torch.Tensor:
    r"""Block RMS r_b = ||g_b||_2 / sqrt(d_b): (..., n) norms and n sizes -> (..., n)."""
    norms = torch.as_tensor(norms)
    if not norms.is_floating_point():
        norms = norms.to(torch.float64)
    if norms.dim() == 0 or norms.shape[-1] == 0:
        raise ValueError(f"norms must have shape (..., n) with n >= 1; got {tuple(norms.shape)}")
    if bool((norms < 0).any()):
        raise ValueError("block norms must be >= 0 (non-finite norms of a diverged run give nan statistics)")
    return norms / _sizes_tensor(sizes, norms.shape[-1], norms).sqrt()


def grad_heterogeneity(norms, sizes) -> dict:
    r"""Spread statistics of the block RMS r_b = ||g_b||_2 / sqrt(d_b), each block counted once.

    ``norms`` (n,) or (..., n) block l2 norms, ``sizes`` the n block sizes (or a Blocks).
    Returns a dict (Python floats for one gradient, tensors of shape (...) for a batch):

    ``max_min_ratio``  max_b r_b / min_b r_b (inf if a block has a zero gradient);
    ``std_log10_rms``  population std over blocks of log10 r_b (the spread in decades;
                       blocks with r_b = 0 are left out, having no scale): the
                       headline statistic :data:`HEADLINE_STAT`, see the module docstring;
    ``cv_rms``         std(r) / mean(r) (population std);
    ``gini_rms``       sum_{a,b} |r_a - r_b| / (2 n^2 mean(r)), in [0, 1 - 1/n].

    All four are invariant to a common rescaling of the gradient and to a permutation
    of the blocks. All are nan for an all-zero gradient or non-finite norms (a diverged run).
    """
    rms = block_rms(norms, sizes)
    n = rms.shape[-1]
    rmax = rms.amax(-1)
    rmin = rms.amin(-1)
    ratio = torch.where(rmin > 0, rmax / torch.where(rmin > 0, rmin, 1.0), torch.full_like(rmax, math.inf))
    pos = rms > 0
    logr = torch.where(pos, torch.log10(torch.where(pos, rms, 1.0)), 0.0)
    npos = pos.sum(-1).clamp_min(1).to(rms.dtype)
    mean_log = logr.sum(-1) / npos
    std_log = (torch.where(pos, (logr - mean_log.unsqueeze(-1)) ** 2, 0.0).sum(-1) / npos).sqrt()
    mean = rms.mean(-1)
    std = rms.std(-1, correction=0)
    cv = std / mean
    gini = (rms.unsqueeze(-1) - rms.unsqueeze(-2)).abs().sum((-1, -2)) / (2 * n * n * mean)
    defined = torch.isfinite(rms).all(-1) & (rmax > 0)      # nan for a diverged or an all-zero gradient
    out = {"max_min_ratio": ratio, "std_log10_rms": std_log, "cv_rms": cv, "gini_rms": gini}
    out = {k: torch.where(defined, v, math.nan) for k, v in out.items()}
    if rms.dim() == 1:
        return {k: float(v) for k, v in out.items()}
    return out


def model_grad_heterogeneity(model: torch.nn.Module) -> dict:
    r"""All gradient-heterogeneity monitors of a model after ``backward()``, cheap enough for every step.

    One block per parameter tensor with a gradient. Returns ``names``, ``sizes`` (d_b),
    ``norms`` (||g_b||_2, float64 tensor), ``rms``, the four statistics of
    :func:`grad_heterogeneity` and ``phi`` = gradient density of the whole gradient,
    computed from foreach l1 and l2 norms: (sum_b ||g_b||_1)^2 / (d sum_b ||g_b||_2^2).
    """
    names, norms = block_grad_norms(model)
    params = dict(model.named_parameters())
    grads = [params[n].grad for n in names]
    sizes = [g.numel() for g in grads]
    l1 = torch.stack([t.to(torch.float64) for t in torch._foreach_norm(grads, 1)])
    d = sum(sizes)
    out = {"names": names, "sizes": sizes, "norms": norms, "rms": block_rms(norms, sizes)}
    out.update(grad_heterogeneity(norms, sizes))
    out["phi"] = float(l1.sum() ** 2 / (d * (norms ** 2).sum()))
    return out


# ---------------------------------------------------------------------------------------------
# models as functions of a flat vector
# ---------------------------------------------------------------------------------------------
def flatten_model(model: torch.nn.Module, loss_closure: Callable, params: Sequence[str] | None = None):
    r"""A model's loss as a function of one flat parameter vector.

    ``loss_closure(forward)`` receives ``forward(*args, **kwargs)``, which runs ``model``
    with the parameters taken from the flat vector (``torch.func.functional_call``),
    and returns a scalar loss, e.g. ``lambda fwd: F.cross_entropy(fwd(X), y)``.
    ``params``: names of the parameters that form the vector (default: every parameter
    with ``requires_grad``, in ``named_parameters()`` order; empty tensors are left out);
    the others and the buffers stay at their current values.

    Returns ``(loss_fn, x0, blocks)``: ``loss_fn(x)`` maps a (d,) tensor to a scalar and is
    differentiable twice (if the model is), ``x0`` the current parameters flattened (a
    detached copy), ``blocks`` one block per parameter with the parameter names.
    """
    named = dict(model.named_parameters())
    if params is None:
        names = [n for n, p in named.items() if p.requires_grad and p.numel() > 0]
    else:
        names = [str(n) for n in params]
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"unknown parameter names {unknown}; the model has {list(named)}")
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be distinct; got {names}")
        names = [n for n in names if named[n].numel() > 0]
    if not names:
        raise ValueError("no parameter to flatten: the model has no non-empty parameter with requires_grad")
    dtypes = {named[n].dtype for n in names}
    if len(dtypes) != 1:
        raise ValueError(f"parameters must share one dtype to be flattened; got {sorted(map(str, dtypes))}")
    shapes = [named[n].shape for n in names]
    sizes = [named[n].numel() for n in names]
    x0 = torch.cat([named[n].detach().reshape(-1) for n in names]).clone()
    blocks = Blocks.from_sizes(sizes, names=names)

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        if x.shape != x0.shape:
            raise ValueError(f"the flat parameter vector must have shape {tuple(x0.shape)}; got {tuple(x.shape)}")
        tensors = {n: piece.view(shape) for n, piece, shape in zip(names, torch.split(x, sizes), shapes)}

        def forward(*args, **kwargs):
            return torch.func.functional_call(model, tensors, args, kwargs)

        loss = loss_closure(forward)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("loss_closure must return a scalar (0-dim) tensor")
        return loss

    return loss_fn, x0, blocks


def problem_loss_fn(problem) -> Callable:
    """A :class:`~heterosim.problems.base.Problem`'s loss as a function of one (d,) vector,
    ``x -> problem.loss(x[None])[0]``, for the Hessian tools here (e.g.
    ``block_slq(problem_loss_fn(p), p.x_star, p.blocks)``). Needs a loss written in torch ops."""
    if not hasattr(problem, "loss") or not hasattr(problem, "blocks"):
        raise ValueError(f"expected a heterosim Problem (with .loss and .blocks); got {type(problem).__name__}")

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        return problem.loss(x.unsqueeze(0))[0]

    return loss_fn


# ---------------------------------------------------------------------------------------------
# block Hessian-vector products
# ---------------------------------------------------------------------------------------------
def _check_point(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty flat (d,) tensor; got {getattr(x, 'shape', type(x).__name__)}")
    return x


def _block_matvec(loss_fn: Callable, x: torch.Tensor, blocks: Blocks, chunk_size: int | None = None):
    r"""The map V (k, d) -> U (k, d) with U_b = H_bb V_b, H = Hessian of loss_fn at x.

    Each row of V is split into its n block parts P_b v (zero outside block b); the k n
    parts go through vmapped forward-over-reverse products
    H u = d/dt grad f(x + t u) |_{t=0} (``torch.func.jvp`` of ``torch.func.grad``), and
    the block part of each product is kept: U = sum_b P_b H P_b v. ``chunk_size`` parts
    per vmapped call (all at once when None) bound the memory to chunk_size x d.
    """
    grad_f = torch.func.grad(loss_fn)

    def hvp(u):
        return torch.func.jvp(grad_f, (x,), (u,))[1]

    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be None (all at once) or >= 1; got {chunk_size}")
    batched = torch.func.vmap(hvp)
    n = blocks.n
    index = blocks.index.to(x.device)

    def matvec(V: torch.Tensor) -> torch.Tensor:
        k = V.shape[0]
        rows = torch.arange(k, device=V.device).repeat_interleave(n)     # (probe, block) pairs
        bids = torch.arange(n, device=V.device).repeat(k)
        step = k * n if chunk_size is None else int(chunk_size)
        U = torch.zeros_like(V)
        for s in range(0, k * n, step):
            r, b = rows[s: s + step], bids[s: s + step]
            mask = (index.unsqueeze(0) == b.unsqueeze(1)).to(V.dtype)      # (c, d): P_b
            U.index_add_(0, r, batched(V[r] * mask) * mask)
        return U

    return matvec


def block_hvp(loss_fn: Callable, x: torch.Tensor, blocks, v: torch.Tensor, chunk_size: int | None = None):
    r"""Block-diagonal Hessian part times v: u_b = H_bb v_b, with H = nabla^2 loss_fn(x).

    ``v`` (d,) or (k, d) -> ``u`` of the same shape. The off-diagonal blocks H_bc (b != c)
    are dropped: u = sum_b P_b H P_b v, with P_b the projection on block b. Forward-over-
    reverse (``jvp`` of ``grad``), one ``vmap`` over the k n vectors P_b v_j
    (``chunk_size``: at most that many products per call, bounding memory to
    chunk_size x d). Cost: k n Hessian-vector products.
    """
    x = _check_point(x)
    blocks = _as_blocks(blocks, x.numel())
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if v.dim() not in (1, 2) or v.shape[-1] != x.numel():
        raise ValueError(f"v must have shape ({x.numel()},) or (k, {x.numel()}); got {tuple(v.shape)}")
    matvec = _block_matvec(loss_fn, x, blocks, chunk_size)
    return matvec(v.reshape(-1, x.numel())).reshape(v.shape)


# ---------------------------------------------------------------------------------------------
# Lanczos and Gauss quadrature
# ---------------------------------------------------------------------------------------------
def _default_tol(dtype: torch.dtype) -> float:
    return 1e3 * torch.finfo(dtype).eps


def _lanczos(matvec, v0, m, reorth, blocks, tol, keep_q=True):
    """Packed block Lanczos; see :func:`lanczos`. Returns alpha (R, n, M), beta (R, n, M-1), Q (R, M, d).

    Without ``keep_q`` (and without ``reorth``, which needs every vector) only the last two
    Lanczos vectors are kept, so memory is 2 R d instead of M R d, and Q is None."""
    keep_q = keep_q or reorth
    R, d = v0.shape
    n = blocks.n
    cap = torch.tensor([min(m, s) for s in blocks.sizes], device=v0.device)       # m_b = min(m, d_b)
    M = int(cap.max())
    bsum, expand = blocks.sum, blocks.expand
    norm0 = bsum(v0 * v0).sqrt()
    if bool((norm0 == 0).any()):
        raise ValueError("the start vector is zero on some block; every block needs a non-zero start")
    Q = v0.new_zeros(R, M if keep_q else 2, d)

    def slot(j):
        return j if keep_q else j % 2

    Q[:, 0] = v0 / expand(norm0)
    alpha = v0.new_zeros(R, n, M)
    beta = v0.new_zeros(R, n, max(M - 1, 0))
    active = torch.ones(R, n, dtype=torch.bool, device=v0.device)
    scale = v0.new_zeros(R, n)
    b_prev = v0.new_zeros(R, n)
    for j in range(M):
        q = Q[:, slot(j)]
        w = matvec(q)
        a = torch.where(active, bsum(w * q), 0.0)
        alpha[:, :, j] = a
        if j == M - 1:
            break
        r = w - expand(a) * q
        if j > 0:
            r = r - expand(b_prev) * Q[:, slot(j - 1)]
        if reorth:  # classical Gram-Schmidt, twice ("twice is enough"), within each block
            basis = Q[:, : j + 1]                                                     # (R, j+1, d)
            for _ in range(2):
                c = bsum(basis * r.unsqueeze(1))                                      # (R, j+1, n)
                r = r - (expand(c) * basis).sum(1)
        b = bsum(r * r).sqrt()
        scale = torch.maximum(scale, a.abs() + b)
        active = active & (b > tol * scale) & (j + 1 < cap)
        b = torch.where(active, b, 0.0)
        beta[:, :, j] = b
        Q[:, slot(j + 1)] = torch.where(expand(active), r / expand(torch.where(active, b, 1.0)), 0.0)
        b_prev = b
    return alpha, beta, (Q if keep_q else None)


def lanczos(matvec: Callable, v0: torch.Tensor, m: int, reorth: bool = True, blocks=None,
            tol: float | None = None):
    r"""Lanczos tridiagonalisation Q^T A Q = T = tridiag(beta, alpha, beta) of a symmetric operator.

    A q_j = beta_{j-1} q_{j-1} + alpha_j q_j + beta_j q_{j+1}, q_0 = v0 / ||v0||
    (Lanczos 1950; Golub & Van Loan, Matrix Computations, 4th ed., Sec. 10.1).
    ``reorth=True`` re-orthogonalises each new vector against all previous ones
    (classical Gram-Schmidt applied twice), which keeps Q orthonormal and the Ritz
    values free of spurious copies; ``False`` is the plain three-term recurrence.

    ``matvec`` maps (R, d) -> (R, d) (R independent rows). ``v0`` is (d,) or (R, d).
    With ``blocks`` (a Blocks or list of sizes), ``matvec`` must be block diagonal and one
    call runs n independent recurrences, one per block (inner products and norms are
    per block): this is how every block of a model is tridiagonalised at once.

    Block b runs m_b = min(m, d_b) steps (the Krylov space cannot exceed the block), or
    fewer if it breaks down (beta_j <= tol * max_i(|alpha_i| + beta_i), an invariant
    subspace: then T's eigenvalues are exact eigenvalues of A); entries after the last
    step are 0, so the effective length is 1 + the number of non-zero betas. M = max_b m_b.

    Memory: the basis Q, M R d numbers (:func:`block_slq` and :func:`block_top_eigenvalues`
    keep only two vectors when ``reorth=False``, as Zhang et al.'s code does).

    Returns ``(alpha, beta, Q)``: with ``blocks`` None and v0 (d,): alpha (M,), beta (M-1,),
    Q (M, d); otherwise alpha (..., n, M), beta (..., n, M-1), Q (..., M, d) (rows of Q
    hold all blocks' vectors side by side), where ... is v0's leading shape.
    """
    if int(m) < 1:
        raise ValueError(f"the number of Lanczos steps m must be >= 1; got {m}")
    v0 = torch.as_tensor(v0)
    if v0.dim() not in (1, 2) or v0.shape[-1] == 0 or not v0.is_floating_point():
        raise ValueError(f"v0 must be a floating (d,) or (R, d) tensor; got {tuple(v0.shape)} {v0.dtype}")
    single = blocks is None
    blocks = Blocks.single(v0.shape[-1]) if single else _as_blocks(blocks, v0.shape[-1])
    blocks = blocks.to(v0.device)
    tol = _default_tol(v0.dtype) if tol is None else float(tol)
    alpha, beta, Q = _lanczos(matvec, v0.reshape(-1, v0.shape[-1]), int(m), reorth, blocks, tol)
    lead = v0.shape[:-1]
    if single:
        alpha, beta = alpha[:, 0], beta[:, 0]
        return alpha.reshape(*lead, -1), beta.reshape(*lead, -1), Q.reshape(*lead, *Q.shape[1:])
    return (alpha.reshape(*lead, *alpha.shape[1:]), beta.reshape(*lead, *beta.shape[1:]),
            Q.reshape(*lead, *Q.shape[1:]))


def gauss_quadrature(alpha: torch.Tensor, beta: torch.Tensor):
    r"""Gauss quadrature rule of a Lanczos tridiagonal: nodes theta_i and weights w_i.

    T = U diag(theta) U^T, w_i = U_{0 i}^2 (Golub & Welsch 1969; Golub & Meurant 1994,
    "Matrices, moments and quadrature"): for the unit start vector q_0 of a Lanczos run on A,
    sum_i w_i theta_i^k = e_1^T T^k e_1 = q_0^T A^k q_0 for k <= 2m - 1 (exact on all
    polynomials of degree < 2m), and sum_i w_i = 1. Stochastic Lanczos quadrature
    averages these rules over random q_0 (Ubaru, Chen & Saad 2017; Ghorbani et al. 2019).

    ``alpha`` (..., M) and ``beta`` (..., M-1) as from :func:`lanczos`, zeros after a
    row's last step. Returns nodes (..., M) ascending and weights (..., M); entries
    past a row's effective length have node nan and weight 0.
    """
    alpha, beta = torch.as_tensor(alpha), torch.as_tensor(beta)
    M = alpha.shape[-1]
    if beta.shape[-1] != max(M - 1, 0) or alpha.shape[:-1] != beta.shape[:-1]:
        raise ValueError(f"alpha (..., M) and beta (..., M-1) do not match: {tuple(alpha.shape)}, {tuple(beta.shape)}")
    lead = alpha.shape[:-1]
    a = alpha.reshape(-1, M)
    b = beta.reshape(a.shape[0], max(M - 1, 0))  # (one-step runs have no beta: an explicit row count)
    length = 1 + (b != 0).sum(-1)
    nodes = a.new_full(a.shape, math.nan)
    weights = a.new_zeros(a.shape)
    for k in torch.unique(length).tolist():
        rows = torch.nonzero(length == k).flatten()
        T = torch.diag_embed(a[rows, :k])
        if k > 1:
            T = T + torch.diag_embed(b[rows, : k - 1], 1) + torch.diag_embed(b[rows, : k - 1], -1)
        theta, U = torch.linalg.eigh(T)
        nodes[rows, :k] = theta
        weights[rows, :k] = U[:, 0, :] ** 2
    return nodes.reshape(*lead, M), weights.reshape(*lead, M)


_PROBES = ("gaussian", "rademacher")


def draw_probes(d: int, probes: int, kind: str = "gaussian", seed: int = 0,
                dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    r"""(probes, d) random start vectors, seeded (a CPU ``torch.Generator``, so the same on any device).

    ``kind``: "gaussian" (N(0, I), as Zhang et al.'s code) or "rademacher" (+-1 entries).
    Either gives unbiased quadrature moments: E[v_b^T A^k v_b / ||v_b||^2] = tr(A^k) / d_b.
    """
    if kind not in _PROBES:
        raise ValueError(f"unknown probe kind {kind!r}; allowed: {', '.join(_PROBES)}")
    if int(probes) < 1 or int(d) < 1:
        raise ValueError(f"need probes >= 1 and d >= 1; got probes={probes}, d={d}")
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "gaussian":
        V = torch.randn(int(probes), int(d), generator=gen, dtype=torch.float64)
    else:
        V = torch.randint(0, 2, (int(probes), int(d)), generator=gen).to(torch.float64) * 2 - 1
    return V.to(dtype=dtype, device=device)


def block_top_eigenvalues(loss_fn: Callable, x: torch.Tensor, blocks, k: int = 1, steps: int = 30,
                          seed: int = 0, reorth: bool = True, chunk_size: int | None = None) -> torch.Tensor:
    r"""The k largest Ritz values of every diagonal Hessian block H_bb at x: an (n, k) tensor.

    One Lanczos run per block (all blocks at once, Gaussian start seeded by ``seed``),
    min(steps, d_b) steps. The top Ritz value converges to lambda_max(H_bb) -- the block
    smoothness L_b at x (Tomihari & Sato's per-block top eigenvalue) -- from below, and
    is exact (to rounding) once steps >= d_b. Single-vector Lanczos finds each distinct
    eigenvalue once (multiplicities are not resolved); rows are descending, padded
    with nan where a block has fewer than k Ritz values.
    """
    x = _check_point(x)
    blocks = _as_blocks(blocks, x.numel()).to(x.device)
    if int(k) < 1 or int(steps) < 1:
        raise ValueError(f"need k >= 1 and steps >= 1; got k={k}, steps={steps}")
    v0 = draw_probes(x.numel(), 1, "gaussian", seed, x.dtype, x.device)
    alpha, beta, _ = _lanczos(_block_matvec(loss_fn, x, blocks, chunk_size), v0, int(steps), reorth,
                              blocks, _default_tol(x.dtype), keep_q=False)
    nodes, _ = gauss_quadrature(alpha[0], beta[0])                                    # (n, M)
    top = torch.nan_to_num(nodes, nan=-math.inf).sort(-1, descending=True).values[:, : int(k)]
    top = torch.where(torch.isinf(top), math.nan, top)
    if top.shape[1] < k:
        top = torch.cat([top, top.new_full((blocks.n, int(k) - top.shape[1]), math.nan)], 1)
    return top


# ---------------------------------------------------------------------------------------------
# densities
# ---------------------------------------------------------------------------------------------
def _check_grid(grid) -> torch.Tensor:
    grid = torch.as_tensor(grid)
    if not grid.is_floating_point():
        grid = grid.to(torch.float64)
    if grid.dim() != 1 or grid.numel() < 2:
        raise ValueError(f"the grid must be a 1-D tensor of at least 2 points; got shape {tuple(grid.shape)}")
    if not bool(torch.isfinite(grid).all()) or not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("the grid must be finite and strictly increasing")
    return grid


def _check_sigma2(sigma2) -> float:
    sigma2 = float(sigma2)
    if not (sigma2 > 0 and math.isfinite(sigma2)):
        raise ValueError(f"the smoothing variance sigma2 must be finite and > 0; got {sigma2}")
    return sigma2


_SCALES = ("linear", "symlog")


def symlog(values, unit: float) -> torch.Tensor:
    r"""sign(v) log10(1 + |v| / unit): decades above ``unit`` (> 0), odd and monotone, ~ linear
    (v / (unit ln 10)) for |v| << unit. nan stays nan. The axis for comparing block spectra
    that differ by orders of magnitude (``block_slq(..., scale="symlog")``)."""
    unit = float(unit)
    if not (unit > 0 and math.isfinite(unit)):
        raise ValueError(f"the symlog unit must be finite and > 0; got {unit}")
    v = torch.as_tensor(values)
    if not v.is_floating_point():
        v = v.to(torch.float64)
    return torch.sign(v) * torch.log10(1 + v.abs() / unit)


def spectrum_grid(values, sigma2: float = SIGMA2_ZHANG, size: int = 2048) -> torch.Tensor:
    r"""A uniform grid of ``size`` points spanning ``values`` (eigenvalues or Ritz nodes; nan ignored).

    From min - pad to max + pad, pad = 5 sigma + 1% of the span, so the smoothed
    density's mass lies on the grid (up to a 5-sigma Gaussian tail).
    """
    v = torch.as_tensor(values).flatten()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        raise ValueError("no finite value to span with a grid")
    if int(size) < 2:
        raise ValueError(f"the grid needs size >= 2; got {size}")
    sigma = math.sqrt(_check_sigma2(sigma2))
    lo, hi = float(v.min()), float(v.max())
    pad = 5 * sigma + 0.01 * (hi - lo)
    return torch.linspace(lo - pad, hi + pad, int(size), dtype=torch.float64)


def _cell_edges(grid: torch.Tensor) -> torch.Tensor:
    mid = (grid[1:] + grid[:-1]) / 2
    return torch.cat([grid[:1] - (grid[1] - grid[0]) / 2, mid, grid[-1:] + (grid[-1] - grid[-2]) / 2])


def smoothed_density(nodes: torch.Tensor, weights: torch.Tensor, grid, sigma2: float = SIGMA2_ZHANG):
    r"""Gaussian-smoothed density of the discrete measure sum_i w_i delta_{theta_i}, on a grid.

    phi_sigma(t) = sum_i w_i N(t; theta_i, sigma2) (Lin, Saad & Yang 2016; Zhang et al.'s
    code with sigma2 = 1e-5), reported as its average over each grid cell
    [t_j - h_j^-, t_j + h_j^+] (cell edges at midpoints between grid points):
    (F(e_{j+1}) - F(e_j)) / (e_{j+1} - e_j) with F the smoothed CDF. When the spacing is
    below sigma these are the point values to O(h^2); when it is coarser the mass is
    still conserved (a histogram of the nodes with bin width h) instead of missing
    Gaussians narrower than a cell. ``nodes``, ``weights`` (..., K) (nan nodes must
    have weight 0) -> (..., G).
    """
    grid = _check_grid(grid)
    sigma2 = _check_sigma2(sigma2)
    nodes = torch.as_tensor(nodes)
    weights = torch.as_tensor(weights)
    if nodes.shape != weights.shape or nodes.dim() == 0:
        raise ValueError(f"nodes and weights must have the same shape (..., K); got {tuple(nodes.shape)}, {tuple(weights.shape)}")
    if bool((weights < 0).any()) or bool((torch.isnan(nodes) & (weights != 0)).any()):
        raise ValueError("weights must be >= 0, and nodes may be nan only where the weight is 0")
    dtype = torch.promote_types(nodes.dtype, torch.float64)
    grid = grid.to(dtype=dtype, device=nodes.device)
    edges = _cell_edges(grid)
    lead, K = nodes.shape[:-1], nodes.shape[-1]
    th = torch.nan_to_num(nodes.reshape(-1, K).to(dtype), nan=0.0)
    w = weights.reshape(-1, K).to(dtype)
    scale = math.sqrt(2 * sigma2)
    out = []
    rows = max(1, int(2 ** 23 // max(1, K * edges.numel())))          # bound the (rows, K, G+1) temporary
    for s in range(0, th.shape[0], rows):
        z = (edges - th[s: s + rows].unsqueeze(-1)) / scale                   # (rows, K, G+1)
        # Gaussian mass of each cell, from the tail on the far side of the node (no cancellation)
        right = torch.erfc(z[..., :-1]) - torch.erfc(z[..., 1:])
        left = torch.erfc(-z[..., 1:]) - torch.erfc(-z[..., :-1])
        mass = 0.5 * torch.where(z[..., :-1] >= 0, right, left).clamp_min(0)
        out.append((w[s: s + rows].unsqueeze(-1) * mass).sum(-2) / torch.diff(edges))
    return torch.cat(out).reshape(*lead, grid.numel())


def exact_block_density(eigs, grid, sigma2: float = SIGMA2_ZHANG) -> torch.Tensor:
    r"""Smoothed spectral densities of known block spectra: (n, G).

    Block b's density is (1 / d_b) sum_i N(t; lambda_{b,i}, sigma2), cell-averaged on the
    grid exactly as :func:`smoothed_density` does for SLQ, so exact and estimated
    densities are directly comparable. ``eigs``: a list of n 1-D tensors (block spectra,
    e.g. ``problem.block_spectra`` or :func:`exact_block_eigenvalues`), or one 1-D tensor.
    """
    if isinstance(eigs, torch.Tensor) and eigs.dim() == 1:
        eigs = [eigs]
    eigs = [torch.as_tensor(e, dtype=torch.float64).flatten() for e in eigs]
    if not eigs or any(e.numel() == 0 for e in eigs):
        raise ValueError("need at least one block, each with at least one eigenvalue")
    K = max(e.numel() for e in eigs)
    nodes = torch.full((len(eigs), K), math.nan, dtype=torch.float64)
    weights = torch.zeros(len(eigs), K, dtype=torch.float64)
    for b, e in enumerate(eigs):
        if not bool(torch.isfinite(e).all()):
            raise ValueError(f"block {b} has non-finite eigenvalues")
        nodes[b, : e.numel()] = e
        weights[b, : e.numel()] = 1.0 / e.numel()
    return smoothed_density(nodes, weights, grid, sigma2)


def exact_block_eigenvalues(hessian: torch.Tensor, blocks) -> list[torch.Tensor]:
    """Eigenvalues (ascending) of each diagonal block H_bb of a dense symmetric (d, d) Hessian."""
    H = torch.as_tensor(hessian)
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"the Hessian must be a square (d, d) matrix; got {tuple(H.shape)}")
    blocks = _as_blocks(blocks, H.shape[0])
    return [torch.linalg.eigvalsh(H[idx][:, idx]) for idx in blocks.slices()]


@dataclass(frozen=True)
class SLQResult:
    """Block spectral densities from stochastic Lanczos quadrature (:func:`block_slq`).

    ``grid`` (G,); ``densities`` (n, G), block b's smoothed density averaged over probes;
    ``nodes``, ``weights`` (n, P, M): each probe's Gauss quadrature rule (nan node,
    weight 0 past the block's effective length); ``steps`` (n,) Lanczos steps per block
    (min(steps, d_b)); ``names`` the block names (or None); ``sigma2`` the smoothing
    variance; ``probe`` and ``seed`` the probe distribution and seed.
    """

    grid: torch.Tensor
    densities: torch.Tensor
    nodes: torch.Tensor
    weights: torch.Tensor
    steps: torch.Tensor
    names: tuple[str, ...] | None
    sigma2: float
    probe: str
    seed: int
    scale: str = "linear"     # the axis of grid and densities: eigenvalues, or symlog(eigenvalues, unit)
    unit: float | None = None  # the symlog unit (None on the linear scale)

    def moments(self, k: int) -> torch.Tensor:
        """Quadrature estimates of tr(H_bb^k) / d_b per block and probe: (n, P)."""
        return (self.weights * torch.nan_to_num(self.nodes, nan=0.0) ** int(k)).sum(-1)


def block_slq(loss_fn: Callable, x: torch.Tensor, blocks, steps: int = 100, probes: int = 10,
              sigma2: float = SIGMA2_ZHANG, grid=None, seed: int = 0, probe: str = "gaussian",
              grid_size: int = 2048, reorth: bool = True, chunk_size: int | None = None,
              scale: str = "linear", unit: float | None = None) -> SLQResult:
    r"""Spectral density of every diagonal Hessian block H_bb at x by stochastic Lanczos quadrature.

    For probes v^(p) (:func:`draw_probes`), block b runs Lanczos on H_bb from
    v^(p)_b / ||v^(p)_b|| for m_b = min(steps, d_b) steps; the Gauss rule
    (theta_{b,p,i}, w_{b,p,i}) of :func:`gauss_quadrature` gives the density estimate
    phi_b(t) = (1/P) sum_p sum_i w_{b,p,i} N(t; theta_{b,p,i}, sigma2)
    (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019; per block as in
    Zhang et al. 2024, whose defaults -- 100 steps, 10 probes, sigma2 = 1e-5 -- are
    ours; so are Gaussian probes, ``probe="rademacher"`` for +-1 entries), reported as
    cell averages on the grid (:func:`smoothed_density`, which conserves the mass on
    any grid). All blocks and probes advance together: one vmapped call of P n
    Hessian-vector products per Lanczos step (``chunk_size`` products per call to bound
    memory). ``grid``: None for :func:`spectrum_grid` of all blocks' nodes with
    ``grid_size`` points (one common grid, as JS needs). Same ``seed``, same numbers.

    ``scale="symlog"`` smooths and grids the nodes in :func:`symlog` coordinates (decades,
    sign kept; ``sigma2`` then in decades^2, e.g. 1e-4): blocks whose eigenvalues are orders
    of magnitude below the largest block's are resolved instead of collapsing into the
    grid's first cell, where a linear grid makes them look alike (JS near 0) whatever their
    spectra. ``unit`` (default 1e-8 times the largest |node|): eigenvalues below it in
    magnitude are treated as about 0. ``nodes`` and ``weights`` stay in eigenvalues.
    """
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(_SCALES)}")
    x = _check_point(x)
    blocks = _as_blocks(blocks, x.numel()).to(x.device)
    if int(steps) < 1 or int(probes) < 1:
        raise ValueError(f"need steps >= 1 and probes >= 1; got steps={steps}, probes={probes}")
    sigma2 = _check_sigma2(sigma2)
    V = draw_probes(x.numel(), probes, probe, seed, x.dtype, x.device)
    alpha, beta, _ = _lanczos(_block_matvec(loss_fn, x, blocks, chunk_size), V, int(steps), reorth,
                              blocks, _default_tol(x.dtype), keep_q=False)
    nodes, weights = gauss_quadrature(alpha, beta)                                    # (P, n, M)
    nodes, weights = nodes.transpose(0, 1).contiguous(), weights.transpose(0, 1).contiguous()
    grid, dens, unit = slq_densities(nodes, weights, sigma2, grid, grid_size, scale, unit)
    return SLQResult(grid=grid, densities=dens, nodes=nodes, weights=weights,
                     steps=torch.tensor([min(int(steps), s) for s in blocks.sizes]),
                     names=blocks.names, sigma2=sigma2, probe=probe, seed=int(seed), scale=scale, unit=unit)


def slq_densities(nodes: torch.Tensor, weights: torch.Tensor, sigma2: float = SIGMA2_ZHANG, grid=None,
                  grid_size: int = 2048, scale: str = "linear", unit: float | None = None):
    r"""Block densities from per-probe quadrature rules (``nodes``, ``weights``: (n, P, M), as in
    :class:`SLQResult`), averaged over the P probes, on one common grid: the last step of
    :func:`block_slq`, reusable to view the same Lanczos runs on another scale or smoothing
    without new Hessian products. Returns (grid, densities (n, G), unit or None)."""
    if scale not in _SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(_SCALES)}")
    sigma2 = _check_sigma2(sigma2)
    axis = nodes
    if scale == "symlog":
        if unit is None:
            top = float(torch.nan_to_num(nodes.abs(), nan=0.0).max())
            unit = 1e-8 * top if top > 0 else 1.0
        axis = symlog(nodes, unit)
    grid = spectrum_grid(axis, sigma2, grid_size) if grid is None else _check_grid(grid)
    n, P, M = nodes.shape
    dens = smoothed_density(axis.reshape(n, P * M), weights.reshape(n, P * M) / P, grid, sigma2)
    return grid, dens, (None if scale == "linear" else float(unit))


# ---------------------------------------------------------------------------------------------
# comparing densities
# ---------------------------------------------------------------------------------------------
def _normalised(p, grid: torch.Tensor) -> torch.Tensor:
    p = torch.as_tensor(p)
    if not p.is_floating_point():
        p = p.to(torch.float64)
    if p.dim() == 0 or p.shape[-1] != grid.numel():
        raise ValueError(f"densities must have the grid's length {grid.numel()} on the last axis; got {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
        raise ValueError("densities must be finite and >= 0")
    mass = torch.trapezoid(p, grid.to(p), dim=-1)
    if bool((mass <= 0).any()):
        raise ValueError("a density integrates to 0 on the grid: nothing to normalise")
    return p / mass.unsqueeze(-1)


def js_divergence(p, q, grid) -> torch.Tensor:
    r"""Jensen-Shannon divergence between two densities on a common grid, in nats: in [0, ln 2].

    JS(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2 (Lin 1991), after
    normalising p and q to integrate to 1 with the trapezoid rule; the integral is the
    trapezoid rule too. Pointwise 0 <= p ln(p/m) + q ln(q/m) <= (p + q) ln 2 and the
    trapezoid weights are positive, so 0 <= JS <= ln 2 holds on every grid, not only
    in the limit; JS = 0 iff p = q on the grid, ln 2 iff their supports are disjoint.

    Because the densities are normalised, the value does not depend on the grid's
    extent or number of points once the grid resolves the densities, and values from
    different grids and models are comparable. This is how our numbers differ from
    Zhang et al. (2024, Table 1): they report JS distances between SLQ densities that
    are not normalised this way (their densities are point values on their own grid,
    normalised by a Riemann sum, and compared as given), so their magnitudes depend on
    their grid and smoothing and are not confined to [0, ln 2] (divergence) or
    [0, sqrt(ln 2)] (distance) as ours are. Compare orderings with theirs (transformers
    above CNNs), not magnitudes.

    ``p``, ``q`` broadcastable (..., G) -> (...).
    """
    grid = _check_grid(grid)
    p, q = _normalised(p, grid), _normalised(q, grid)
    p, q = torch.broadcast_tensors(p, q)
    m = (p + q) / 2
    f = 0.5 * (torch.xlogy(p, p) - torch.xlogy(p, m) + torch.xlogy(q, q) - torch.xlogy(q, m))
    return torch.trapezoid(f.clamp_min(0), grid.to(f), dim=-1).clamp(0.0, LN2)


def js_distance(p, q, grid) -> torch.Tensor:
    r"""Jensen-Shannon distance sqrt(JS(p, q)) (a metric; Endres & Schindelin 2003), in [0, sqrt(ln 2)]."""
    return js_divergence(p, q, grid).sqrt()


_JS_KINDS = ("distance", "divergence")


def js0(densities, grid, kind: str = "distance"):
    r"""JS0: mean Jensen-Shannon distance over all pairs of block densities (Zhang et al. 2024).

    JS0 = 2 / (n (n - 1)) sum_{a < b} JS(phi_a, phi_b)^{1/2}, with ``kind="divergence"``
    the mean divergence instead. Returns ``(mean, matrix)``, the (n, n) symmetric matrix
    with zero diagonal. Our values lie in [0, sqrt(ln 2)] for distances and [0, ln 2]
    for divergences and are comparable across grids; see :func:`js_divergence` for
    how they differ from the unnormalised values in Zhang et al.'s table.

    Resolution matters for discrete spectra: a block with a few eigenvalues far apart
    compared with the smoothing width (or the grid cell, whichever is larger) has a
    density made of separate spikes, and two such blocks are nearly disjoint even when
    their eigenvalues sample the same range, so every pair tends to sqrt(ln 2). On a
    log-spaced spectrum over [1, 5000] in 4 blocks of 25 with the default grid
    (2048 cells, wider than sigma), JS0 is 0.83 for contiguous blocks against 0.69 for
    interleaved ones: the ordering is right, the contrast modest. Compare JS0 values
    computed with one smoothing and one grid.
    """
    if kind not in _JS_KINDS:
        raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(_JS_KINDS)}")
    grid = _check_grid(grid)
    dens = torch.as_tensor(densities)
    if dens.dim() != 2 or dens.shape[0] < 2:
        raise ValueError(f"densities must be (n, G) with n >= 2 blocks; got {tuple(dens.shape)}")
    n = dens.shape[0]
    mat = torch.stack([js_divergence(dens[a], dens, grid) for a in range(n)])
    mat = (mat + mat.T) / 2                         # symmetric by definition; removes rounding asymmetry
    mat.fill_diagonal_(0.0)
    if kind == "distance":
        mat = mat.sqrt()
    iu = torch.triu_indices(n, n, 1)
    return float(mat[iu[0], iu[1]].mean()), mat


def wasserstein1(p, q, grid) -> torch.Tensor:
    r"""Wasserstein-1 distance between two densities on a common grid: int |F_p - F_q| dt.

    Both normalised as in :func:`js_divergence`; CDFs by the cumulative trapezoid rule.
    In the units of the grid (eigenvalues). ``p``, ``q`` broadcastable (..., G) -> (...).
    """
    grid = _check_grid(grid)
    p, q = _normalised(p, grid), _normalised(q, grid)
    g = grid.to(p)
    Fp = torch.cumulative_trapezoid(p, g, dim=-1)
    Fq = torch.cumulative_trapezoid(q, g, dim=-1)
    diff = torch.nn.functional.pad((Fp - Fq).abs(), (1, 0))
    return torch.trapezoid(diff, g, dim=-1)


# ---------------------------------------------------------------------------------------------
# JS0 on log eigenvalues (claim C9)
# ---------------------------------------------------------------------------------------------
JS0_LOG_REL_BANDWIDTH = 0.05
"""Smoothing of :func:`js0_log`: sigma = this fraction of the span of log10 eigenvalues."""

JS0_LOG_GRID = 1024
"""Grid points of :func:`js0_log` (cell about sigma / 30 at the default bandwidth)."""


def js0_log(block_eigs, rel_bandwidth: float = JS0_LOG_REL_BANDWIDTH, size: int = JS0_LOG_GRID,
            kind: str = "distance"):
    r"""JS0 of known block spectra on log10 eigenvalues, with a smoothing tied to the grid: a
    version of Zhang et al.'s block-heterogeneity measure that does not saturate on small blocks.

    With u = log10(lambda) and span = max u - min u over all blocks, every block's spectrum is
    smoothed by a Gaussian of width sigma = ``rel_bandwidth`` x span (span > 0; any sigma when
    every eigenvalue is equal, where JS0 = 0), cell-averaged on :func:`spectrum_grid` of u with
    ``size`` points (cell about sigma / 30 at the defaults, so the smoothing, not the grid, sets
    the resolution), and :func:`js0` is taken of the block densities.

    Why: :func:`js0` on the eigenvalue axis with Zhang's sigma^2 = 1e-5 and a 2048-point grid
    over [1, 5000] has cells (about 2.5) far wider than sigma (0.003), so a block of 25
    eigenvalues is a set of separate spikes, and any two blocks are nearly disjoint: Zhang's
    four cases all score 0.69-0.83 against the ceiling sqrt(ln 2) = 0.833. On the log axis with
    sigma = span / 20 (0.19 decades for kappa = 5000) the eigenvalues of one block overlap, and
    two blocks sampling the same range have overlapping densities.

    Invariance: JS0_log is unchanged under lambda -> c lambda^p (c > 0, p > 0), an affine map of
    u under which sigma and the grid scale with the span (the Jensen-Shannon divergence is
    invariant under an affine change of variable). It is a property of the arrangement of the
    spectrum into blocks, not of its scale.

    ``block_eigs``: a list of n >= 2 1-D sequences of eigenvalues > 0. Returns ``(mean, matrix)``
    as :func:`js0` (``kind``: "distance", in [0, sqrt(ln 2)], or "divergence", in [0, ln 2]).
    """
    eigs = [torch.as_tensor(e, dtype=torch.float64).flatten() for e in block_eigs]
    if len(eigs) < 2 or any(e.numel() == 0 for e in eigs):
        raise ValueError("js0_log needs at least 2 blocks, each with at least one eigenvalue")
    if any(not bool(torch.isfinite(e).all()) or bool((e <= 0).any()) for e in eigs):
        raise ValueError("js0_log needs finite eigenvalues > 0 (it compares log eigenvalues)")
    rel_bandwidth = float(rel_bandwidth)
    if not (rel_bandwidth > 0 and math.isfinite(rel_bandwidth)):
        raise ValueError(f"rel_bandwidth must be finite and > 0; got {rel_bandwidth}")
    logs = [torch.log10(e) for e in eigs]
    allu = torch.cat(logs)
    span = float(allu.max() - allu.min())
    sigma = rel_bandwidth * (span if span > 0 else 1.0)
    grid = spectrum_grid(allu, sigma ** 2, size)
    return js0(exact_block_density(logs, grid, sigma ** 2), grid, kind)


__all__ += ["js0_log", "JS0_LOG_REL_BANDWIDTH", "JS0_LOG_GRID"]
