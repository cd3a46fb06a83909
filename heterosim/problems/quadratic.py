r"""Block-diagonal quadratics with prescribed block spectra, and the families built on them.

.. math::

    f(x) = \tfrac12 (x - x^\star)^\top H (x - x^\star) + f^\star,\qquad
    H = \mathrm{blockdiag}(H_1, \dots, H_n),\quad H_b = Q_b\,\mathrm{diag}(\lambda_b)\,Q_b^\top

with Q_b Haar-random (``rotate=True``) or the identity (axis-aligned). The ground
truth is exact: L_b = max lambda_b, mu_b = min lambda_b, L_2 = max_b L_b, and
L_inf = sum_b L_inf(H_b) (the box sup is additive over diagonal blocks), exact
for axis-aligned blocks (it is then tr H_b) and for rotated blocks of size <= 16
(vertex enumeration), otherwise the certified SDP relaxation max tr(H_b X),
X psd, diag X = 1 (an upper bound), and ``Linf_kind`` says which.

Initial points are drawn in the eigenbasis and assigned by eigenvalue rank: for
seed s, z ~ N(0, I_d) is drawn once and the eigen-direction holding the k-th
smallest eigenvalue of the *whole* spectrum receives z_k (times its block's
``init_scale``). Two problems with the same global spectrum, arranged into blocks
differently, therefore start with the same initial error in eigen-coordinates,
and GD follows the same loss curve on both (docs/theory.md Q1, Zhang cases 3/4).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from heterosim import _native
from heterosim.blocks import Blocks
from heterosim.problems import register
from heterosim.problems.base import (Problem, Recipe, check_batch, check_choice, check_flag, check_int, check_numbers,
                                     check_real, describe)

__all__ = ["BlockQuadratic", "haar_orthogonal", "zhang_case", "block_scale", "hessian_only",
           "gradient_only", "kunstner_diag", "class_frequencies"]

DTYPE = torch.float64
_DENSE_MAX_D = 128  # up to this d the Hessian is also kept dense for the matvec
_EXACT_LINF_MAX_BLOCK = 16  # vertex enumeration visits 2^(d_b - 1) sign vectors


def haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed n x n orthogonal matrix (QR of a Gaussian matrix with the
    signs of R's diagonal folded into Q; Mezzadri 2007, "How to generate random
    matrices from the classical compact groups", Sec. 5)."""
    A = torch.randn(n, n, generator=generator, dtype=DTYPE)
    Q, R = torch.linalg.qr(A)
    return Q * torch.sign(torch.diagonal(R)).unsqueeze(0)


def _linf_block(H: torch.Tensor, diagonal: bool) -> tuple[float, str]:
    """sup_{||u||_inf <= 1} u^T H u for one PSD block, or the tightest upper bound available,
    and its kind: the trace for a diagonal block (exact), else
    :func:`heterosim.precondition.linf_upper` (vertex enumeration up to size
    ``_EXACT_LINF_MAX_BLOCK``, the SDP relaxation up to 256, else d_b L_b or ||H_b||_{1,1})."""
    if diagonal:
        return float(torch.diagonal(H).sum()), "exact"
    from heterosim.precondition import linf_upper
    value, kind = linf_upper(H.numpy(), max_exact_dim=_EXACT_LINF_MAX_BLOCK)
    return value, ("sum_dbLb" if kind == "d_L2" else kind)


class BlockQuadratic(Problem):
    """Block-diagonal quadratic with known spectrum; build with :meth:`from_spectra`.

    Example::

        p = BlockQuadratic.from_spectra([[1., 2.], [10., 100.]], rotate=True, seed=0)
        p.L_blocks        # tensor([2., 100.])
        p.loss(p.initial_points([0, 1]))   # (2,)
    """

    def __init__(self, spectra: list[torch.Tensor], bases: list[torch.Tensor] | None,
                 x_star: torch.Tensor, f_star: float, init_scale: torch.Tensor,
                 sigma: torch.Tensor | None, init_target: str = "error",
                 name: str = "quadratic", knobs: dict | None = None, block_names=None):
        self.name = name
        self.knobs = dict(knobs or {})
        self.block_spectra = spectra
        self.bases = bases  # None: axis-aligned
        self.blocks = Blocks.from_sizes([len(s) for s in spectra], names=block_names)
        self.x_star = x_star
        self.f_star = float(f_star)
        self.init_scale = init_scale
        self.init_target = init_target
        self.sigma = sigma
        self.has_oracle = sigma is not None
        self.diagonal = bases is None
        if self.diagonal:
            self.block_hessians = [torch.diag(s) for s in spectra]
        else:
            self.block_hessians = [(Q * s) @ Q.T for Q, s in zip(bases, spectra)]
        self._diag = torch.cat(spectra) if self.diagonal else None
        sizes = self.blocks.sizes
        # small problems: one dense matmul beats a batched block product (fewer kernel launches)
        self._dense = self.hessian() if (not self.diagonal and self.d <= _DENSE_MAX_D) else None
        self._stacked = torch.stack(self.block_hessians) if len(set(sizes)) == 1 and not self.diagonal else None
        self._frames = {}  # (transpose, device) -> block matrices of the eigenbasis, built on first use
        self._native_fn = None  # the C oracle, built on first use
        self.L_blocks = torch.stack([s.max() for s in spectra])
        self.mu_blocks = torch.stack([s.min() for s in spectra])
        self.L2 = float(self.L_blocks.max())
        parts = [_linf_block(H, self.diagonal) for H in self.block_hessians]
        self.Linf = float(sum(v for v, _ in parts))
        kinds = sorted({k for _, k in parts})
        self.Linf_kind = kinds[0] if len(kinds) == 1 else "+".join(kinds)
        spectrum = torch.cat(spectra)
        # rank of each eigen-direction in the global ascending order (stable)
        order = torch.argsort(spectrum, stable=True)
        self._rank = torch.empty_like(order)
        self._rank[order] = torch.arange(len(order))

    # ------------------------------------------------------------------ build
    @classmethod
    def from_spectra(cls, spectra: Sequence[Sequence[float]], rotate: bool = True, seed: int = 0,
                     x_star=None, f_star: float = 0.0, init_scale=None, init_target: str = "error",
                     sigma=None, name: str = "quadratic", knobs: dict | None = None,
                     shared_basis: bool = False, block_names=None) -> "BlockQuadratic":
        r"""Block b gets H_b = Q_b diag(spectra[b]) Q_b^T.

        Args:
            spectra: one sequence of eigenvalues per block; all must be > 0 (H is PD).
            rotate: Haar-random Q_b (seeded) if True, else Q_b = I (axis-aligned).
            seed: seeds the rotations.
            x_star: the minimiser (d,); default N(0, I_d) drawn from ``seed`` (not 0, so that
                weight decay or sign rules gain nothing from the origin). f_star: the minimum value.
            init_scale: per-block multiplier of the initial error (scalar or (n,)), default 1.
            init_target: "error": ||e_b|| scales with init_scale_b (e_b = Q_b diag(c) ...);
                "grad": e_b is rescaled so that ||H_b e_b||_2 = init_scale_b exactly.
            sigma: per-coordinate standard deviation of additive Gaussian gradient noise,
                a scalar or one value per block (n,); None for no stochastic oracle.
            shared_basis: use one rotation for all blocks (needs equal block sizes).

        The problem's ``repr`` is this call with the values it used (the spectra in float64,
        the seed, every option that is not the default): ``eval`` it after
        ``import heterosim as hs`` to rebuild the problem.
        """
        if isinstance(spectra, torch.Tensor) and spectra.dim() == 1:
            spectra = [spectra]
        if isinstance(spectra, (str, bytes)) or not hasattr(spectra, "__len__"):
            raise ValueError("spectra must be a list of blocks, each a list of eigenvalues > 0; "
                             f"got {describe(spectra)}")
        if len(spectra) == 0:
            raise ValueError("spectra must hold at least one block; got an empty list")
        rotate = check_flag("rotate", rotate)
        shared_basis = check_flag("shared_basis", shared_basis)
        seed = check_int("seed", seed)
        f_star = check_real("f_star", f_star)
        init_target = check_choice("init_target", init_target, ("error", "grad"))
        spec = []
        for b, s in enumerate(spectra):
            t = check_numbers(f"spectra[{b}]", s, "eigenvalues > 0")
            if t.numel() == 0:
                raise ValueError(f"block {b} has no eigenvalues; every block must be non-empty")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"block {b} has non-finite eigenvalues; all must be finite and > 0")
            if bool((t <= 0).any()):
                raise ValueError(f"block {b} has non-positive eigenvalues (min {float(t.min()):.3g}); "
                                 "a block quadratic needs every eigenvalue > 0 (positive definite H)")
            spec.append(t)
        n = len(spec)
        d = sum(len(s) for s in spec)
        bases = None
        if rotate:
            g = torch.Generator().manual_seed(int(seed))
            if shared_basis:
                if len({len(s) for s in spec}) != 1:
                    raise ValueError("shared_basis=True needs equal block sizes")
                Q = haar_orthogonal(len(spec[0]), g)
                bases = [Q] * n
            else:
                bases = [haar_orthogonal(len(s), g) for s in spec]
        if x_star is None:  # a seeded minimiser away from 0, so that weight decay is no accidental help
            xs_given = None
            x_star = torch.randn(d, generator=torch.Generator().manual_seed(int(seed) + 31337), dtype=DTYPE)
        else:
            x_star = xs_given = check_numbers("x_star", x_star, "finite numbers")
            if x_star.numel() != d or not bool(torch.isfinite(x_star).all()):
                raise ValueError(f"x_star must be d = {d} finite numbers (d from the spectra); got {x_star.numel()} "
                                 f"entries{'' if bool(torch.isfinite(x_star).all()) else ', not all finite'}")
        scale = _per_block(init_scale, n, "init_scale", default=1.0, positive=True)
        sig = None if sigma is None else _per_block(sigma, n, "sigma", default=0.0, positive=False)
        problem = cls(spec, bases, x_star, f_star, scale, sig, init_target=init_target,
                      name=name, knobs=knobs, block_names=block_names)
        options = dict(x_star=xs_given, f_star=f_star or None,
                       init_scale=None if init_scale is None else _compact(scale),
                       init_target=None if init_target == "error" else init_target,
                       sigma=None if sig is None else _compact(sig),
                       name=None if name == "quadratic" else name, knobs=knobs,
                       shared_basis=shared_basis or None, block_names=block_names)
        problem.recipe = Recipe("hs.problems.BlockQuadratic.from_spectra", ([t.tolist() for t in spec],),
                                dict(rotate=rotate, seed=seed, **{k: v for k, v in options.items() if v is not None}))
        return problem

    # ---------------------------------------------------------------- oracles
    def _block_matmul_into(self, E: torch.Tensor, out: torch.Tensor, dense, stacked, mats) -> torch.Tensor:
        """out <- E M row-wise for the block-diagonal M = blockdiag(mats) (M dense when given,
        ``stacked`` = the (n, d_b, d_b) stack when the blocks have equal size): one matmul, one
        batched matmul over the blocks reading E and writing ``out`` in place, or one per block."""
        if dense is not None:
            return torch.mm(E, dense.to(E.device), out=out)
        if stacked is not None:
            n, db = self.blocks.n, self.blocks.sizes[0]
            E = E if E.is_contiguous() else E.contiguous()
            lhs = E.view(E.shape[0], n, db).transpose(0, 1)          # (n, B, db), a strided view
            if out.is_contiguous():
                torch.bmm(lhs, stacked.to(E.device), out=out.view(E.shape[0], n, db).transpose(0, 1))
            else:
                out.copy_(torch.bmm(lhs, stacked.to(E.device)).transpose(0, 1).reshape(E.shape))
            return out
        start = 0
        for M in mats:
            stop = start + M.shape[0]
            out[:, start:stop] = E[:, start:stop] @ M.to(E.device)
            start = stop
        return out

    def _apply_H_into(self, E: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """out <- H E^T row-wise, (B, d) into a (B, d) buffer (the matvec of every oracle)."""
        if self.diagonal:
            return torch.mul(E, self._diag.to(E.device), out=out)
        return self._block_matmul_into(E, out, self._dense, self._stacked, self.block_hessians)

    def _apply_H(self, E: torch.Tensor) -> torch.Tensor:
        """H E^T row-wise: (B, d) -> (B, d); differentiable when E requires a gradient."""
        if not E.requires_grad:
            return self._apply_H_into(E, torch.empty_like(E))
        dev = E.device  # out= products do not record gradients: the same products, out of place
        if self.diagonal:
            return E * self._diag.to(dev)
        if self._dense is not None:
            return E @ self._dense.to(dev)
        if self._stacked is not None:
            n, db = self.blocks.n, self.blocks.sizes[0]
            Eb = E.reshape(E.shape[0], n, db).transpose(0, 1)
            return torch.matmul(Eb, self._stacked.to(dev)).transpose(0, 1).reshape(E.shape)
        parts, start = [], 0
        for H in self.block_hessians:
            parts.append(E[:, start:start + H.shape[0]] @ H.to(dev))
            start += H.shape[0]
        return torch.cat(parts, dim=1)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_native_fn"] = None  # a closure over ctypes pointers: rebuilt where it is needed
        return state

    def native_oracle(self, X: torch.Tensor):
        """The fused C oracle (:func:`heterosim._native.quadratic_oracle`) for batches like X, or
        None where it does not apply (no compiler, kernels off, X not a CPU float64 (B, d) batch).
        ``oracle(X, G, f, norm=None, f_limit=None, root=True)`` writes G <- H (X - x*), f <- f(X)
        and, if given, norm <- ||G_r|| (``root``) or ||G_r||^2 into caller-owned contiguous buffers
        and returns the number of rows with not f <= f_limit."""
        if X.dim() != 2 or X.shape[1] != self.d or not _native.usable(X) or _native.lib() is None:
            return None
        if type(self).loss_and_grad is not BlockQuadratic.loss_and_grad:  # a subclass with its own oracle
            return None
        if self._native_fn is None:
            self._native_fn = (_native.quadratic_oracle(self.x_star, self.f_star, diag=self._diag) if self.diagonal
                               else _native.quadratic_oracle(self.x_star, self.f_star, blocks=self.block_hessians))
        return self._native_fn

    def _own_oracle(self) -> bool:
        """The base class's loss (a subclass may change it, and then neither method below applies)."""
        return type(self).loss_and_grad is BlockQuadratic.loss_and_grad

    def engine_oracle(self, like: torch.Tensor, native: bool = True):
        """The oracle in the engine's fixed arithmetic (:mod:`heterosim._native`): the C oracle
        (:meth:`native_oracle`) where ``native`` and the kernels apply to ``like``, else its torch
        twin; the two give the same bits. None for a subclass with its own loss."""
        if not self._own_oracle():
            return None
        if native and like.dim() == 2 and _native.usable(like):
            fn = self.native_oracle(like)
            if fn is not None:
                return fn
        args = dict(diag=self.spectrum) if self.diagonal else dict(blocks=self.block_hessians)
        return _native.quadratic_oracle_torch(self.x_star, self.f_star, device=like.device, dtype=like.dtype, **args)

    def eigen_frame(self):
        """(spectrum, bases) when the blocks are rotated (an axis-aligned or one-coordinate-per-block
        quadratic is already diagonal: None), and the loss is the base class's."""
        if not self._own_oracle() or self.diagonal or self.blocks.n >= self.d:
            return None
        return self.spectrum, list(self.bases)

    def loss_and_grad_into(self, X: torch.Tensor, G: torch.Tensor, E: torch.Tensor | None = None,
                           W: torch.Tensor | None = None, g_sqnorm: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`loss_and_grad` into caller-owned (B, d) buffers: G <- H (X - x*) row-wise; returns
        f = f* + (X - x*).G / 2 (B,). E and W are scratch (their content is unspecified); they may
        be None where :meth:`native_oracle` applies (one fused C pass, nothing else written).
        Otherwise E is required, and with W equal-size rotated blocks are multiplied in block-major
        layout (n, B, d_b), where the batched matmul reads and writes contiguous matrices. The same
        arithmetic as :meth:`loss_and_grad` up to the rounding of the block product. X has the
        problem's dtype. ``g_sqnorm`` (B,), if given, receives ||G_r||^2."""
        if type(self).loss_and_grad is not BlockQuadratic.loss_and_grad:  # a subclass's own oracle
            f, grad = self.loss_and_grad(X)
            G.copy_(grad)
            if g_sqnorm is not None:
                torch.linalg.vecdot(G, G, out=g_sqnorm)
            return f
        oracle = self.native_oracle(X)
        if oracle is not None and _native.usable(G) and (g_sqnorm is None or _native.usable(g_sqnorm)):
            f = X.new_empty(X.shape[0])
            oracle(X, G, f, g_sqnorm, root=False)
            return f
        if E is None:
            E = torch.empty_like(X)
        xs = self.x_star.to(X.device)
        if W is None or self._stacked is None or self._dense is not None:
            torch.sub(X, xs, out=E)
            self._apply_H_into(E, G)
            if g_sqnorm is not None:
                torch.linalg.vecdot(G, G, out=g_sqnorm)
            return torch.linalg.vecdot(E, G).mul_(0.5).add_(self.f_star)
        B, n, db = X.shape[0], self.blocks.n, self.blocks.sizes[0]
        Eb, Wb = E.view(n, B, db), W.view(n, B, db)
        torch.sub(X.view(B, n, db).transpose(0, 1), xs.view(n, 1, db), out=Eb)
        torch.bmm(Eb, self._stacked.to(X.device), out=Wb)
        G.view(B, n, db).copy_(Wb.transpose(0, 1))
        if g_sqnorm is not None:
            torch.linalg.vecdot(G, G, out=g_sqnorm)
        return torch.mul(Eb, Wb, out=Wb).sum((0, 2)).mul_(0.5).add_(self.f_star)

    def hvp(self, X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """H V row-wise (the Hessian does not depend on X)."""
        return self._apply_H(check_batch(self, V))

    def loss_and_grad(self, X):
        X = check_batch(self, X)
        E = X - self.x_star.to(X.device)
        G = self._apply_H(E)
        return torch.add(self.f_star, torch.linalg.vecdot(E, G), alpha=0.5), G

    def loss(self, X):
        return self.loss_and_grad(X)[0]

    def grad(self, X):
        return self.loss_and_grad(X)[1]

    def stochastic_grad(self, X, generator):
        if self.sigma is None:
            return super().stochastic_grad(X, generator)
        X = check_batch(self, X)
        noise = torch.randn(self.d, generator=generator, dtype=X.dtype).to(X.device)
        return self.grad(X) + self.blocks.expand(self.sigma).to(X.device) * noise

    @property
    def sigma2(self) -> float:
        """E||noise||^2 = sum_b d_b sigma_b^2 (0 without an oracle)."""
        if self.sigma is None:
            return 0.0
        return float((self.blocks.sizes_tensor() * self.sigma ** 2).sum())

    def hessian(self) -> torch.Tensor:
        return torch.block_diag(*self.block_hessians)

    @property
    def spectrum(self) -> torch.Tensor:
        """All eigenvalues, block by block (d,)."""
        return torch.cat(self.block_spectra)

    def eigenbasis(self) -> torch.Tensor:
        """Orthogonal V (d, d) with H = V diag(spectrum) V^T (block-diagonal)."""
        if self.diagonal:
            return torch.eye(self.d, dtype=DTYPE)
        return torch.block_diag(*self.bases)

    def _frame(self, transpose: bool, device):
        key = (transpose, str(device))
        if key not in self._frames:
            mats = [(Q.T if transpose else Q).contiguous().to(device) for Q in self.bases]
            dense = torch.block_diag(*mats) if self.d <= _DENSE_MAX_D else None
            stacked = torch.stack(mats) if len(set(self.blocks.sizes)) == 1 else None
            self._frames[key] = (dense, stacked, mats)
        return self._frames[key]

    def to_eigenbasis(self, X: torch.Tensor) -> torch.Tensor:
        """Eigen-coordinates y = V^T x of each row of X (B, d): y_b = Q_b^T x_b, block by block.
        In them H is diag(spectrum): f = f* + 1/2 sum_i lambda_i (y_i - y*_i)^2."""
        X = check_batch(self, X)
        if self.diagonal:
            return X.clone()
        return self._block_matmul_into(X, torch.empty_like(X), *self._frame(False, X.device))

    def from_eigenbasis(self, Y: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`to_eigenbasis`: x = V y row-wise."""
        Y = check_batch(self, Y)
        if self.diagonal:
            return Y.clone()
        return self._block_matmul_into(Y, torch.empty_like(Y), *self._frame(True, Y.device))

    # ---------------------------------------------------------- initial point
    def initial_point(self, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed) + 7919)  # offset keeps it apart from rotations
        z = torch.randn(self.d, generator=g, dtype=DTYPE)
        c = z[self._rank]  # eigen-coordinate by global eigenvalue rank
        parts, start = [], 0
        for b, s in enumerate(self.block_spectra):
            cb = c[start:start + len(s)]
            if self.init_target == "grad":
                cb = cb * (self.init_scale[b] / (s * cb).norm())
            else:
                cb = cb * self.init_scale[b]
            parts.append(cb if self.diagonal else self.bases[b] @ cb)
            start += len(s)
        return self.x_star + torch.cat(parts)


def _compact(t: torch.Tensor):
    """A per-block value as its recipe shows it: one float when every block has the same value."""
    return float(t[0]) if bool((t == t[0]).all()) else t.tolist()


def _per_block(value, n, what, default, positive):
    if value is None:
        value = default
    t = check_numbers(what, value, f"a number {'> 0' if positive else '>= 0'} or one per block (n = {n} values)")
    if t.numel() == 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"{what} needs one value or one per block ({n}); got {t.numel()}")
    if not bool(torch.isfinite(t).all()) or (positive and bool((t <= 0).any())) or bool((t < 0).any()):
        raise ValueError(f"{what} must be finite and {'> 0' if positive else '>= 0'}; got {t.tolist()}")
    return t


def _globally_rotated(spectra, init_scale, seed: int, name: str, knobs: dict) -> BlockQuadratic:
    """The basis control of a family (docs/theory.md, Controls): one Haar rotation Q of all d
    coordinates, H = Q diag(spectrum) Q^T, instead of one rotation per block. The spectrum, x*,
    and the initial error in eigen-coordinates (every block's ``init_scale`` kept on its own
    eigen-directions) are those of the block-rotated problem with the same seed, so a rotation-
    equivariant rule (GD, heavy ball) runs identically on both. H is dense: the problem is one
    block of d coordinates (block-wise rules see one block)."""
    p = BlockQuadratic.from_spectra([torch.cat(spectra)], rotate=True, seed=seed, name=name, knobs=knobs)
    scale = torch.as_tensor(init_scale, dtype=DTYPE).reshape(-1).expand(len(spectra))
    # one multiplier per eigen-direction of the single block (initial_point scales block 0 by init_scale[0])
    p.init_scale = torch.cat([torch.full((len(s),), float(c), dtype=DTYPE) for s, c in zip(spectra, scale)])[None]
    return p


def _global_flag(global_rotation, rotate: bool) -> bool:
    g = check_flag("global_rotation", global_rotation)
    if g and not rotate:
        raise ValueError("global_rotation=True rotates all coordinates at once; it needs rotate=True "
                         "(rotate=False is the axis-aligned basis)")
    return g


# --------------------------------------------------------------------------
# Families with knobs (docs/theory.md, Constructions); every knob is checked by the helpers of
# heterosim.problems.base, whose errors name the knob, the value and what is allowed
# --------------------------------------------------------------------------

ZHANG_KAPPA = 5000.0  # Zhang et al. 2024, Sec. 3 (block-diagonal quadratics, condition number 5000)


@register("zhang_case")
def zhang_case(case: int = 1, kappa: float = ZHANG_KAPPA, n_blocks: int = 4, block_size: int = 25,
               rotate: bool = True, seed: int = 0, global_rotation: bool = False) -> BlockQuadratic:
    """Zhang et al. 2024 (arXiv 2402.16788, Sec. 3)-style block-diagonal quadratics, all with
    condition number ``kappa``.

    - case 1, heterogeneous: block b draws its eigenvalues log-uniformly in its own range
      [kappa^(b/n), kappa^((b+1)/n)] (seeded), the global extremes pinned to 1 and kappa.
    - case 2, homogeneous: every block draws log-uniformly over the whole range [1, kappa].
    - case 3 / case 4: one global spectrum (d log-spaced values in [1, kappa]) arranged into
      blocks contiguously (3, heterogeneous) or interleaved (4, homogeneous). Same spectrum,
      same initial eigen-coordinates: GD runs identically on 3 and 4.

    ``global_rotation``: one Haar rotation of all d coordinates instead of one per block (the
    basis control; needs ``rotate``): the same spectrum and initial eigen-coordinates, H dense.
    """
    case = check_int("case", case, 1, 4)
    n = check_int("n_blocks", n_blocks, 1)
    db = check_int("block_size", block_size, 2)
    kappa = check_real("kappa", kappa, 1.0)
    rotate = check_flag("rotate", rotate)
    seed = check_int("seed", seed)
    d = n * db
    g = torch.Generator().manual_seed(seed + 104729)
    logk = math.log(kappa)
    if case in (3, 4):
        glob = torch.exp(torch.linspace(0.0, logk, d, dtype=DTYPE))
        spectra = [glob[b * db:(b + 1) * db] for b in range(n)] if case == 3 else [glob[b::n] for b in range(n)]
    elif case == 1:
        spectra = []
        for b in range(n):
            lo, hi = logk * b / n, logk * (b + 1) / n
            u = torch.sort(torch.rand(db, generator=g, dtype=DTYPE)).values
            u[0], u[-1] = 0.0, 1.0
            spectra.append(torch.exp(lo + (hi - lo) * u))
    else:
        spectra = [torch.exp(logk * torch.rand(db, generator=g, dtype=DTYPE)) for _ in range(n)]
        spectra[0][0] = 1.0
        spectra[-1][-1] = kappa
    kind = {1: "heterogeneous", 2: "homogeneous", 3: "heterogeneous (shared spectrum)",
            4: "homogeneous (shared spectrum)"}[case]
    if _global_flag(global_rotation, rotate):
        return _globally_rotated(spectra, 1.0, seed, f"zhang_case{case}", dict(
            case=case, kappa=kappa, n_blocks=n, block_size=db, rotate=rotate, seed=seed, kind=kind,
            global_rotation=True))
    return BlockQuadratic.from_spectra(
        spectra, rotate=rotate, seed=seed, name=f"zhang_case{case}",
        knobs=dict(case=case, kappa=kappa, n_blocks=n, block_size=db, rotate=rotate, seed=seed, kind=kind))


def _scales(n: int, spread: float) -> torch.Tensor:
    """s_b = 10^(spread * b / (n - 1)), b = 0..n-1: block scales spread over ``spread`` decades."""
    if n == 1:
        return torch.ones(1, dtype=DTYPE)
    return 10.0 ** (spread * torch.arange(n, dtype=DTYPE) / (n - 1))


def _base_spectrum(block_size: int, kappa_block: float) -> torch.Tensor:
    return torch.exp(torch.linspace(0.0, math.log(kappa_block), block_size, dtype=DTYPE))


@register("block_scale")
def block_scale(spread: float = 1.0, gamma: float = 0.5, n_blocks: int = 8, block_size: int = 16,
                kappa_block: float = 10.0, rotate: bool = True, seed: int = 0,
                global_rotation: bool = False) -> BlockQuadratic:
    """Block-scale spread: H_b = s_b A_b, s_b = 10^(spread b/(n-1)); A_b has the log-spaced
    spectrum [1, kappa_block] in its own random basis. Gradient and Hessian heterogeneity grow
    together. Block b's initial error is scaled by s_b^(-gamma): gamma = 0 equal error,
    1/2 equal loss per block, 1 equal gradient norm per block (in expectation).
    ``global_rotation``: one Haar rotation of all d coordinates instead of one per block (the
    basis control; needs ``rotate``): the same spectrum and initial eigen-coordinates, H dense."""
    n = check_int("n_blocks", n_blocks, 1)
    db = check_int("block_size", block_size, 1)
    spread = check_real("spread", spread, 0.0)
    gamma = check_real("gamma", gamma)
    kappa_block = check_real("kappa_block", kappa_block, 1.0)
    rotate, seed = check_flag("rotate", rotate), check_int("seed", seed)
    s = _scales(n, spread)
    base = _base_spectrum(db, kappa_block)
    if _global_flag(global_rotation, rotate):
        return _globally_rotated([sb * base for sb in s], s ** (-gamma), seed, "block_scale", dict(
            spread=spread, gamma=gamma, n_blocks=n, block_size=db, kappa_block=kappa_block, rotate=rotate,
            seed=seed, global_rotation=True))
    return BlockQuadratic.from_spectra(
        [sb * base for sb in s], rotate=rotate, seed=seed, init_scale=s ** (-gamma), name="block_scale",
        knobs=dict(spread=spread, gamma=gamma, n_blocks=n, block_size=db, kappa_block=kappa_block,
                   rotate=rotate, seed=seed))


@register("hessian_only")
def hessian_only(spread: float = 1.0, n_blocks: int = 8, block_size: int = 16, kappa_block: float = 10.0,
                 rotate: bool = True, seed: int = 0) -> BlockQuadratic:
    """Hessian heterogeneity alone: H_b = s_b A_b as in :func:`block_scale`, and the initial
    error of each block rescaled so that every block has exactly the same gradient norm
    ||H_b e_b|| = 1 at x_0."""
    n = check_int("n_blocks", n_blocks, 1)
    db = check_int("block_size", block_size, 1)
    spread = check_real("spread", spread, 0.0)
    kappa_block = check_real("kappa_block", kappa_block, 1.0)
    rotate, seed = check_flag("rotate", rotate), check_int("seed", seed)
    s = _scales(n, spread)
    base = _base_spectrum(db, kappa_block)
    return BlockQuadratic.from_spectra(
        [sb * base for sb in s], rotate=rotate, seed=seed, init_scale=1.0, init_target="grad",
        name="hessian_only", knobs=dict(spread=spread, n_blocks=n, block_size=db,
                                        kappa_block=kappa_block, rotate=rotate, seed=seed))


@register("gradient_only")
def gradient_only(spread: float = 1.0, n_blocks: int = 8, block_size: int = 16, kappa_block: float = 10.0,
                  rotate: bool = True, seed: int = 0) -> BlockQuadratic:
    """Gradient heterogeneity alone: identical blocks H_b = A (one spectrum, one basis), the
    initial error of block b scaled by s_b = 10^(spread b/(n-1))."""
    n = check_int("n_blocks", n_blocks, 1)
    db = check_int("block_size", block_size, 1)
    spread = check_real("spread", spread, 0.0)
    kappa_block = check_real("kappa_block", kappa_block, 1.0)
    rotate, seed = check_flag("rotate", rotate), check_int("seed", seed)
    base = _base_spectrum(db, kappa_block)
    return BlockQuadratic.from_spectra(
        [base] * n, rotate=rotate, seed=seed, shared_basis=True, init_scale=_scales(n, spread),
        name="gradient_only", knobs=dict(spread=spread, n_blocks=n, block_size=db,
                                         kappa_block=kappa_block, rotate=rotate, seed=seed))


def class_frequencies(n_classes: int, alpha: float) -> torch.Tensor:
    """pi_k proportional to k^(-alpha), k = 1..C, normalised to sum to 1 (Zipf-like)."""
    C = check_int("n_classes", n_classes, 1)
    alpha = check_real("alpha", alpha, 0.0)
    w = torch.arange(1, C + 1, dtype=DTYPE) ** (-alpha)
    return w / w.sum()


@register("kunstner_diag")
def kunstner_diag(n_classes: int = 16, h: int = 4, alpha: float = 1.0, freqs=None) -> BlockQuadratic:
    """Kunstner et al. 2024's diagonal model f(W) = sum_k pi_k 1/2 ||w_k||^2, W in R^{C x h}:
    one block per class row, H = diag(pi_k) (x) I_h, x* = 0. GD gives
    w_k(t) = (1 - eta pi_k)^t w_k(0)."""
    C = check_int("n_classes", n_classes, 1)
    h = check_int("h", h, 1)
    if freqs is None:
        pi = class_frequencies(C, alpha)
    else:
        pi = check_numbers("freqs", freqs, f"{C} class frequencies > 0")
        if pi.numel() != C or not bool(torch.isfinite(pi).all()) or bool((pi <= 0).any()):
            raise ValueError(f"freqs needs {C} positive class frequencies; got {pi.tolist()}")
    return BlockQuadratic.from_spectra(
        [torch.full((h,), float(p), dtype=DTYPE) for p in pi], rotate=False, name="kunstner_diag",
        x_star=torch.zeros(C * h, dtype=DTYPE),
        knobs=dict(n_classes=C, h=h, alpha=alpha), block_names=[f"class{k}" for k in range(C)])


@register("quadratic")
def quadratic(spectra, rotate: bool = True, seed: int = 0, x_star=None, f_star: float = 0.0, init_scale=None,
              init_target: str = "error", sigma=None, shared_basis: bool = False, block_names=None,
              name: str = "quadratic") -> BlockQuadratic:
    """Any block quadratic from its block spectra (the knobs of :meth:`BlockQuadratic.from_spectra`)."""
    return BlockQuadratic.from_spectra(spectra, rotate=rotate, seed=seed, x_star=x_star, f_star=f_star,
                                       init_scale=init_scale, init_target=init_target, sigma=sigma,
                                       shared_basis=shared_basis, block_names=block_names, name=name,
                                       knobs=dict(rotate=rotate, seed=seed))
