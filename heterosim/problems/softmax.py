r"""Softmax regression: a linear head on fixed features, with its ground truth.

The objective. Features :math:`x_i \in \mathbb{R}^p` (rows of ``features``, n x p),
labels :math:`y_i \in \{0, \dots, C-1\}`, a head :math:`W \in \mathbb{R}^{C \times p}`:

.. math::

    f(W) = \frac1n \sum_{i=1}^n \Big[\operatorname{logsumexp}(W x_i) - (W x_i)_{y_i}\Big]
           + \frac{\lambda}{2} \|W\|_F^2 ,

with :math:`\lambda` = ``ridge``. The parameter vector is W flattened row-major,
:math:`x[c p + j] = W_{cj}`, d = C p. Gradient and Hessian (p_i = softmax(W x_i),
e_y the one-hot label, :math:`A(p) = \operatorname{diag}(p) - p p^\top`):

.. math::

    \nabla f(W) = \frac1n \sum_i (p_i - e_{y_i}) x_i^\top + \lambda W, \qquad
    \nabla^2 f(W) = \frac1n \sum_i A(p_i) \otimes x_i x_i^\top + \lambda I_d .

Smoothness (proved in ``docs/softmax_smoothness.md``). Boehning's bound
(Boehning 1992, Ann. Inst. Statist. Math. 44:197, Lemma; here via Gershgorin: row c of A(p)
has diagonal p_c(1-p_c) and off-diagonal absolute sum p_c(1-p_c), so
:math:`\lambda_{\max}(A(p)) \le 2 p_c (1-p_c) \le 1/2`) gives, for every W,

.. math::

    \nabla^2 f(W) \preceq \bar H := \tfrac12 I_C \otimes \Sigma + \lambda I_d,
    \qquad \Sigma = \tfrac1n \sum_i x_i x_i^\top = X^\top X / n ,

since :math:`(\tfrac12 I - A(p_i)) \otimes x_i x_i^\top \succeq 0` (a Kronecker product
of PSD matrices). With Taylor's formula with integral remainder,
:math:`f(x+u) \le f(x) + \langle g, u\rangle + \tfrac12 u^\top \bar H u`, so any
:math:`L_b` with :math:`\bar H \preceq \operatorname{blockdiag}(L_b I_{d_b})` is a valid
block-separable smoothness constant. :math:`u^\top \bar H u = \sum_c
(\tfrac12 u_c^\top \Sigma u_c + \lambda \|u_c\|^2)` (u_c the c-th row of U):

* ``blocks="class"`` (one block per class row, d_b = p):
  :math:`L_c = \lambda_{\max}(\Sigma)/2 + \lambda`.
* ``blocks="feature"`` (block g = every class's coefficients on feature group g,
  d_b = C d_g; not contiguous in the flattening) and ``blocks="class_feature"``
  (block (c, g), d_b = d_g): :math:`L_g = \Lambda_g / 2 + \lambda` for any
  :math:`\Lambda_g` with :math:`\Sigma \preceq \operatorname{blockdiag}(\Lambda_g I_{d_g})`.
  :func:`feature_group_bounds` gives three such choices, each proved there:
  ``uniform`` (:math:`\Lambda_g = \lambda_{\max}(\Sigma)`), ``cauchy_schwarz``
  (weighted Cauchy-Schwarz over groups, which improves the factor-G bound
  :math:`\Sigma \preceq G\,\operatorname{blockdiag}(\Sigma_{gg})`) and ``block_gershgorin``
  (:math:`\Lambda_g = \lambda_{\max}(\Sigma_{gg}) + \sum_{h\ne g}\|\Sigma_{gh}\|_2`). The
  problem uses the one with the smallest :math:`\sum_b d_b L_b` and names it in
  ``L_blocks_kind``.
* ``blocks="single"``: one block, :math:`L = L_2`.

:math:`L_2 = \lambda_{\max}(\Sigma)/2 + \lambda = \lambda_{\max}(\bar H)`, an upper bound
on :math:`\sup_W \lambda_{\max}(\nabla^2 f(W))`. :math:`L_\infty = \sup_{\|u\|_\infty\le 1}
u^\top \bar H u = \tfrac C2 M(\Sigma) + \lambda d` with :math:`M(\Sigma) = \max_{v \in
\{\pm1\}^p} v^\top \Sigma v` (the sup of a convex quadratic over a box sits at a vertex,
and :math:`\bar H` separates over class rows). M is computed exactly by enumeration for
p <= 16 (``Linf_kind = "bohning_sign_exact"``), otherwise bounded by the smaller of
:math:`\sum_{jk} |\Sigma_{jk}|` (``"bohning_abs_sum"``; it is itself <=
mean_i ||x_i||_1^2) and :math:`\sum_g d_g \Lambda_g` for each feature-group choice
(``"sum_dbLb"``: then :math:`L_\infty` equals :math:`\sum_b d_b L_b` of the class or
feature blocking). mu_b = lambda for every block (f is convex plus the ridge).

Ground truth. ``f_star`` and ``x_star`` come from L-BFGS (scipy, exact gradients,
float64, gtol 1e-10) computed on first use. With lambda > 0, f is lambda-strongly convex,
so :math:`f(x) - f^* \le \|\nabla f(x)\|^2 / (2\lambda)`: the solution carries this
certificate (``f_star_gap_bound``). Where the data are separable (Kunstner's
construction has p > n) the unregularised infimum is not attained, which is why
:func:`kunstner` defaults to ``ridge=1e-3``. :meth:`SoftmaxRegression.f_star_cvxpy`
recomputes f* with cvxpy (exponential cones via ``log_sum_exp``) on small instances.

Factories (registered): ``"softmax"`` (:func:`synthetic`: Gaussian features with a mean,
feature-group scales, Zipf class frequencies) and ``"kunstner_softmax"`` (:func:`kunstner`:
the exact heavy-tailed construction of Kunstner et al. 2024, *Heavy-tailed class
imbalance and why Adam outperforms gradient descent on language models*).
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence

import numpy as np
import scipy.optimize
import torch

from heterosim import _native
from heterosim.blocks import Blocks
from heterosim.problems import register
from heterosim.problems.base import (Problem, check_batch, check_choice, check_int, check_numbers, check_real,
                                     describe)

__all__ = ["SoftmaxRegression", "synthetic", "kunstner", "kunstner_data", "zipf_frequencies",
           "feature_group_bounds", "max_sign_quadratic", "group_sizes", "BLOCKINGS"]

#: Block partitions a :class:`SoftmaxRegression` can carry.
BLOCKINGS = ("class", "feature", "class_feature", "single")

#: Largest p for which M(Sigma) = max over sign vectors is enumerated (2^(p-1) vectors).
EXACT_SIGN_MAX_P = 16

#: Largest d for which :meth:`SoftmaxRegression.hessian_at` builds a dense (d, d) matrix.
DENSE_HESSIAN_MAX_D = 4096


# --------------------------------------------------------------------- pure math
def group_sizes(p: int, feature_groups) -> tuple[int, ...]:
    """Sizes of contiguous feature groups: an int G splits p features as evenly as
    possible (the first p mod G groups one larger); a sequence gives the sizes."""
    if isinstance(feature_groups, (int, np.integer)) and not isinstance(feature_groups, bool):
        G = int(feature_groups)
        if not 1 <= G <= p:
            raise ValueError(f"feature_groups must be an int in 1..p = {p} or a list of sizes "
                             f"summing to p; got {G}")
        q, r = divmod(p, G)
        return tuple(q + 1 if g < r else q for g in range(G))
    try:
        if isinstance(feature_groups, (str, bytes)):
            raise TypeError
        sizes = tuple(check_int("a feature group size", s, 1) for s in feature_groups)
    except (TypeError, ValueError):
        raise ValueError(f"feature_groups must be an int in 1..p = {p} or a list of group sizes (integers >= 1) "
                         f"summing to p; got {describe(feature_groups)}") from None
    if len(sizes) == 0 or any(s < 1 for s in sizes) or sum(sizes) != p:
        raise ValueError(f"feature group sizes must be >= 1 and sum to p = {p}; got {list(sizes)}")
    return sizes


def zipf_frequencies(C: int, alpha: float) -> torch.Tensor:
    r"""Class frequencies :math:`\pi_k \propto k^{-\alpha}`, k = 1..C (float64, sums to 1).
    alpha = 0 is balanced; alpha = 1 is Zipf's law."""
    C = check_int("C", C, 2)
    alpha = check_real("alpha", alpha, 0.0)
    w = torch.arange(1, C + 1, dtype=torch.float64).pow(-alpha)
    return w / w.sum()


def max_sign_quadratic(Sigma: torch.Tensor) -> float:
    r""":math:`M(\Sigma) = \max_{v \in \{\pm 1\}^p} v^\top \Sigma v`, by enumeration of the
    2^(p-1) sign vectors with v_0 = +1 (v and -v give the same value). p <= 16."""
    p = Sigma.shape[0]
    if p > EXACT_SIGN_MAX_P:
        raise ValueError(f"exact enumeration of sign vectors needs p <= {EXACT_SIGN_MAX_P}; got p = {p}")
    if p == 1:
        return float(Sigma[0, 0])
    tail = torch.tensor(list(itertools.product((1.0, -1.0), repeat=p - 1)), dtype=Sigma.dtype)
    V = torch.cat([torch.ones(tail.shape[0], 1, dtype=Sigma.dtype), tail], dim=1)
    return float(((V @ Sigma) * V).sum(1).max())


def feature_group_bounds(Sigma: torch.Tensor, sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    r"""Per-group constants :math:`\Lambda_g` with
    :math:`\Sigma \preceq \operatorname{blockdiag}(\Lambda_1 I_{d_1}, \dots, \Lambda_G I_{d_G})`
    for a PSD :math:`\Sigma = \frac1n\sum_i x_i x_i^\top` split into contiguous groups.

    Write :math:`a_{g} = x_{i,g}^\top u_g`, so :math:`u^\top\Sigma u = \frac1n\sum_i(\sum_g a_g)^2`.
    Let :math:`\lambda_g = \lambda_{\max}(\Sigma_{gg})`.

    * ``uniform``: :math:`\Lambda_g = \lambda_{\max}(\Sigma)`.
    * ``cauchy_schwarz``: for weights :math:`w_g > 0`, :math:`\sum_g w_g = 1`,
      :math:`(\sum_g a_g)^2 \le \sum_g a_g^2 / w_g` (Cauchy-Schwarz), hence
      :math:`\Sigma \preceq \operatorname{blockdiag}(\Sigma_{gg}/w_g)`. The weights
      :math:`w_g \propto \sqrt{d_g\lambda_g}` minimise :math:`\sum_g d_g\lambda_g/w_g`, giving
      :math:`\Lambda_g = S\sqrt{\lambda_g/d_g}`, :math:`S = \sum_h\sqrt{d_h\lambda_h}`, and
      :math:`\sum_g d_g\Lambda_g = S^2 \le G\sum_g d_g\lambda_g`: never worse than the
      equal-weight bound :math:`\Sigma \preceq G\,\operatorname{blockdiag}(\Sigma_{gg})`.
      (A group with :math:`\Sigma_{gg} = 0` has :math:`\Sigma_{gh} = 0` too, and gets 0.)
    * ``block_gershgorin``: :math:`2 u_g^\top\Sigma_{gh}u_h \le \|\Sigma_{gh}\|_2
      (\|u_g\|^2 + \|u_h\|^2)`, so :math:`\Lambda_g = \lambda_g + \sum_{h \ne g}\|\Sigma_{gh}\|_2`
      (tight when the groups are nearly uncorrelated, e.g. centred independent features).

    Returns a dict name -> (G,) float64 tensor.
    """
    sizes = tuple(int(s) for s in sizes)
    if sum(sizes) != Sigma.shape[0]:
        raise ValueError(f"group sizes {list(sizes)} do not sum to p = {Sigma.shape[0]}")
    G = len(sizes)
    lam_max = float(torch.linalg.eigvalsh(Sigma)[-1])
    starts = np.cumsum((0,) + sizes)
    blocks = [slice(int(starts[g]), int(starts[g + 1])) for g in range(G)]
    lam = torch.tensor([float(torch.linalg.eigvalsh(Sigma[b, b])[-1]) for b in blocks],
                       dtype=torch.float64).clamp_min(0.0)
    d_g = torch.tensor(sizes, dtype=torch.float64)
    S = torch.sqrt(d_g * lam).sum()
    cs = S * torch.sqrt(lam / d_g)
    if len(set(sizes)) == 1:  # all groups equal: one batched spectral norm over (G, G) blocks
        s = sizes[0]
        tiles = Sigma.reshape(G, s, G, s).permute(0, 2, 1, 3)
        off = torch.linalg.matrix_norm(tiles, ord=2)
    else:
        off = torch.zeros(G, G, dtype=torch.float64)
        for g, h in itertools.combinations(range(G), 2):
            off[g, h] = off[h, g] = torch.linalg.matrix_norm(Sigma[blocks[g], blocks[h]], ord=2)
    off.fill_diagonal_(0.0)
    return {
        "uniform": torch.full((G,), lam_max, dtype=torch.float64),
        "cauchy_schwarz": cs,
        "block_gershgorin": lam + off.sum(1),
    }


def _cross_entropy_parts(W: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                         need_probs: bool):
    """Per-sample cross-entropy (B, n) of logits W x_i, and, if asked, the softmax
    probabilities P (B, C, n). Logits are laid out (B, C, n) = W @ features^T."""
    Z = torch.matmul(W, features.T)                                  # (B, C, n)
    lse = torch.logsumexp(Z, dim=1)                                  # (B, n)
    zy = Z.gather(1, labels.expand(W.shape[0], 1, -1)).squeeze(1)    # (B, n)
    ce = lse - zy
    P = torch.exp(Z - lse.unsqueeze(1)) if need_probs else None
    return ce, P


def _ce_grad(P: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i (p_i - e_{y_i}) x_i^T for probabilities P (B, C, n): (B, C, p).
    Overwrites P (a temporary of the caller)."""
    n = features.shape[0]
    P[:, labels, torch.arange(n)] -= 1.0
    return torch.matmul(P, features) / n


# ---------------------------------------------------------------------- problem
class SoftmaxRegression(Problem):
    r"""Multinomial logistic regression :math:`f(W) = \frac1n\sum_i \mathrm{CE}(W x_i, y_i)
    + \frac\lambda2\|W\|_F^2` over a (C x p) head, flattened row-major (d = C p).

    Parameters
    ----------
    features : (n, p) tensor of inputs x_i (stored as float64).
    labels : (n,) integer tensor with values in 0..C-1.
    C : number of classes (default: labels.max() + 1; classes with no sample are allowed,
        their rows are only pulled down).
    ridge : lambda >= 0.
    blocks : one of :data:`BLOCKINGS` ("class", "feature", "class_feature", "single").
    feature_groups : int G (contiguous, near-equal groups) or a list of group sizes; used by
        the "feature" and "class_feature" blockings.
    batch_size : minibatch size of :meth:`stochastic_grad`, 1..n (default min(32, n)).
    init_scale : :meth:`initial_point` is ``init_scale * N(0, I)`` drawn from the seed
        (0, the default, starts every seed at W = 0).
    name, knobs : recorded for results tables.

    Attributes beyond :class:`~heterosim.problems.base.Problem`: ``n, p, C, ridge``,
    ``features``, ``labels``, ``Sigma`` (p x p, X^T X / n), ``group_sizes``, ``blocking``,
    ``L_blocks_kind``, ``L2_kind``, ``class_counts``, ``class_frequencies``; ``x_star``,
    ``f_star``, ``f_star_kind``, ``f_star_gap_bound`` (computed by L-BFGS on first use).
    """

    has_oracle = True

    def __init__(self, features, labels, C: int | None = None, *, ridge: float = 0.0,
                 blocks: str = "class", feature_groups=1, batch_size: int | None = None,
                 init_scale: float = 0.0, name: str = "softmax", knobs: dict | None = None):
        features = torch.as_tensor(features, dtype=torch.float64)
        labels = torch.as_tensor(labels)
        if features.dim() != 2 or features.shape[0] < 1 or features.shape[1] < 1:
            raise ValueError(f"features must be an (n, p) matrix with n >= 1 and p >= 1; "
                             f"got shape {tuple(features.shape)}")
        if not bool(torch.isfinite(features).all()):
            raise ValueError("features must be finite (no nan or inf)")
        n, p = features.shape
        if labels.dim() != 1 or labels.shape[0] != n:
            raise ValueError(f"labels must be a vector of length n = {n}; got shape {tuple(labels.shape)}")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers; got dtype {labels.dtype}")
        labels = labels.to(torch.int64)
        if C is None:
            C = int(labels.max()) + 1
            if C < 2:
                raise ValueError(f"need C >= 2 classes; got C = {C} (from the labels: give C or labels of two classes)")
        C = check_int("C", C, 2)
        if int(labels.min()) < 0 or int(labels.max()) >= C:
            raise ValueError(f"labels must lie in 0..C-1 = 0..{C - 1}; got range "
                             f"{int(labels.min())}..{int(labels.max())}")
        ridge = check_real("ridge", ridge, 0.0)
        blocks = check_choice("blocks", blocks, BLOCKINGS)
        batch_size = check_int(f"batch_size (n = {n})", min(32, n) if batch_size is None else batch_size, 1, n)
        init_scale = check_real("init_scale", init_scale, 0.0)

        self.name = name
        self.features, self.labels = features, labels
        self.n, self.p, self.C = n, p, C
        self.ridge = float(ridge)
        self.batch_size = int(batch_size)
        self.init_scale = float(init_scale)
        self.group_sizes = group_sizes(p, feature_groups)
        self.blocking = blocks
        self.knobs = dict(knobs) if knobs is not None else {
            "C": C, "ridge": self.ridge, "blocks": blocks, "batch_size": self.batch_size}
        self.class_counts = torch.bincount(labels, minlength=C)
        self.class_frequencies = self.class_counts.to(torch.float64) / n

        # ---- smoothness constants (module docstring; docs/softmax_smoothness.md)
        self.Sigma = features.T @ features / n
        gram = self.Sigma if p <= n else features @ features.T / n  # same nonzero spectrum
        lam_max = float(torch.linalg.eigvalsh(gram)[-1])
        G = len(self.group_sizes)
        d_g = torch.tensor(self.group_sizes, dtype=torch.float64)
        group_choices = (feature_group_bounds(self.Sigma, self.group_sizes) if G > 1
                         else {"uniform": torch.tensor([lam_max], dtype=torch.float64)})
        group_kind = min(group_choices, key=lambda k: float((d_g * group_choices[k]).sum()))
        Lam = group_choices[group_kind]

        self.blocks, L_half, self.L_blocks_kind = self._partition(blocks, lam_max, Lam, group_kind)
        self.L_blocks = L_half / 2 + self.ridge
        self.mu_blocks = torch.full((self.blocks.n,), self.ridge, dtype=torch.float64)
        self.L2 = lam_max / 2 + self.ridge
        self.L2_kind = "bohning_bound"

        # M(Sigma) = max over sign vectors of v^T Sigma v, or an upper bound on it; "uniform"
        # (in group_choices) gives p lambda_max(Sigma), the class blocking's sum_b d_b L_b
        M_bounds = {"bohning_abs_sum": float(self.Sigma.abs().sum()),
                    "sum_dbLb": min(float((d_g * v).sum()) for v in group_choices.values())}
        if p <= EXACT_SIGN_MAX_P:
            M_bounds["bohning_sign_exact"] = max_sign_quadratic(self.Sigma)
        self.Linf_kind = min(M_bounds, key=M_bounds.get)
        self.Linf = C / 2 * M_bounds[self.Linf_kind] + self.ridge * C * p

    def _partition(self, kind: str, lam_max: float, Lam: torch.Tensor, group_kind: str):
        """Blocks, per-block bound on the Sigma part (L_b = that / 2 + ridge), and its name."""
        C, p, sizes = self.C, self.p, self.group_sizes
        G = len(sizes)
        group_of = torch.repeat_interleave(torch.arange(G), torch.tensor(sizes))  # (p,)
        if kind == "single":
            return Blocks.single(C * p), torch.tensor([lam_max], dtype=torch.float64), "bohning_lambda_max"
        if kind == "class":
            blocks = Blocks.from_sizes([p] * C, names=[f"class{c}" for c in range(C)])
            return blocks, torch.full((C,), lam_max, dtype=torch.float64), "bohning_lambda_max"
        if kind == "feature":
            blocks = Blocks.from_index(group_of.repeat(C), names=[f"features{g}" for g in range(G)])
            return blocks, Lam.clone(), "bohning_" + group_kind
        index = (torch.arange(C).unsqueeze(1) * G + group_of.unsqueeze(0)).flatten()  # class_feature
        names = [f"class{c}/features{g}" for c in range(C) for g in range(G)]
        return Blocks.from_index(index, names=names), Lam.repeat(C), "bohning_" + group_kind

    # ------------------------------------------------------------- oracles
    def _heads(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch as (B, d) float64 and as heads W (B, C, p) (a view)."""
        X = check_batch(self, X).to(torch.float64)
        return X, X.reshape(X.shape[0], self.C, self.p)

    def loss(self, X: torch.Tensor) -> torch.Tensor:
        """f at each row of X (B, d): (B,)."""
        X, W = self._heads(X)
        ce, _ = _cross_entropy_parts(W, self.features, self.labels, need_probs=False)
        return ce.mean(1) + self.ridge / 2 * (X * X).sum(1)

    def grad(self, X: torch.Tensor) -> torch.Tensor:
        """grad f at each row of X: (B, d)."""
        return self.loss_and_grad(X)[1]

    def loss_and_grad(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        X, W = self._heads(X)
        ce, P = _cross_entropy_parts(W, self.features, self.labels, need_probs=True)
        G = _ce_grad(P, self.features, self.labels)
        loss = ce.mean(1) + self.ridge / 2 * (X * X).sum(1)
        return loss, G.reshape(X.shape) + self.ridge * X

    def class_losses(self, X: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over each class's samples (no ridge): (B, C).
        A class with no sample gets nan."""
        X, W = self._heads(X)
        ce, _ = _cross_entropy_parts(W, self.features, self.labels, need_probs=False)
        sums = ce.new_zeros(X.shape[0], self.C).index_add_(1, self.labels, ce)
        return sums / self.class_counts.to(ce.dtype)

    def minibatch_grad(self, X: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Gradient of (1/|S|) sum_{i in S} CE(W x_i, y_i) + ridge/2 ||W||^2 for the sample
        indices S = idx, at every row of X: (B, d)."""
        X, W = self._heads(X)
        idx = torch.as_tensor(idx, dtype=torch.int64)
        F, y = self.features[idx], self.labels[idx]
        _, P = _cross_entropy_parts(W, F, y, need_probs=True)
        return _ce_grad(P, F, y).reshape(X.shape) + self.ridge * X

    def draw_minibatch(self, generator: torch.Generator) -> torch.Tensor:
        """The sample indices of one minibatch: ``batch_size`` of 0..n-1 uniformly without
        replacement, one draw from ``generator`` (what :meth:`stochastic_grad` uses)."""
        return torch.randperm(self.n, generator=generator)[: self.batch_size]

    def stochastic_grad(self, X: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Minibatch gradient on ``batch_size`` samples drawn uniformly without replacement
        (one draw per call from ``generator``, shared by every row of X). Unbiased: every
        sample is in the batch with probability b/n, so E[(1/b) sum_S g_i] = (1/n) sum_i g_i."""
        return self.minibatch_grad(X, self.draw_minibatch(generator))

    # ------------------------------------------------------------- fused C oracles
    def _native_kernel(self, X):
        if X.dim() != 2 or X.shape[1] != self.d or not _native.usable(X):
            return None
        if type(self).minibatch_grad is not SoftmaxRegression.minibatch_grad \
                or type(self).loss_and_grad is not SoftmaxRegression.loss_and_grad:
            return None  # a subclass with an oracle of its own
        k = _native.lib()
        return None if k is None else k.softmax_oracle

    def native_oracle(self, X: torch.Tensor):
        """The full-batch oracle as one fused C call (:mod:`heterosim._native`,
        ``softmax_oracle``) for batches like X, or None where it does not apply (no compiler,
        kernels off, X not a CPU float64 (B, d) batch). Same interface as
        :meth:`heterosim.problems.quadratic.BlockQuadratic.native_oracle`:
        ``oracle(X, G, f, norm=None, f_limit=None, root=True, frozen=None, X_prev=None)``."""
        kernel = self._native_kernel(X)
        if kernel is None:
            return None
        F, FT, y = self.features.contiguous(), self.features.T.contiguous(), self.labels.contiguous()
        C, p, n, ridge = self.C, self.p, self.n, self.ridge
        _native.check_softmax_data("softmax native_oracle", F, y, C, FT)
        d, where = self.d, "softmax native_oracle"
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731

        def oracle(X, G, f, norm=None, f_limit=None, root=True, frozen=None, X_prev=None) -> int:
            R = _native.check_oracle_buffers(where, d, X, G, f, norm, f_limit, frozen, X_prev)
            bad = _native.rows(kernel, R, R * n * C * p, C, p, n, X.data_ptr(), F.data_ptr(), FT.data_ptr(),
                               y.data_ptr(), None, None, 0, ridge, G.data_ptr(), f.data_ptr(), ptr(norm), ptr(f_limit),
                               int(bool(root)), ptr(frozen), X.data_ptr(), ptr(X_prev))
            if bad < 0:
                raise MemoryError("softmax_oracle could not allocate its scratch")
            return bad
        oracle.buffers = (F, FT, y)
        return oracle

    def native_minibatch(self, X: torch.Tensor):
        """Minibatch gradients of many rows in one fused C call, or None (as :meth:`native_oracle`):
        ``grads(X, G, idx, which)`` writes into G (R, d) the gradient of row r on the samples
        idx[which[r]] (idx: (S, m) int64 draws, which: (R,) int64), as :meth:`minibatch_grad`."""
        kernel = self._native_kernel(X)
        if kernel is None:
            return None
        F, y = self.features.contiguous(), self.labels.contiguous()
        C, p, n, ridge = self.C, self.p, self.n, self.ridge
        _native.check_softmax_data("softmax native_minibatch", F, y, C)
        d, where = self.d, "softmax native_minibatch"

        def grads(X, G, idx, which) -> None:
            R = _native.check_batch(where, d, X, G)
            idx, which = _native.check_draws(where, idx, which, R, n)
            m = idx.shape[1]
            if _native.rows(kernel, R, R * m * C * p, C, p, n, X.data_ptr(), F.data_ptr(), None, y.data_ptr(),
                            idx.data_ptr(), which.data_ptr(), m, ridge, G.data_ptr(), None, None, None, 0,
                            None, X.data_ptr(), None) < 0:
                raise MemoryError("softmax_oracle could not allocate its scratch")
        grads.buffers = (F, y)
        return grads

    def hvp(self, X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        r"""Hessian-vector products :math:`\nabla^2 f(x_r) v_r` for rows x_r of X and v_r of V:
        :math:`\frac1n\sum_i (A(p_i) V x_i) x_i^\top + \lambda V`, (B, d)."""
        X, W = self._heads(X)
        V = torch.as_tensor(V, dtype=torch.float64)
        V = V.unsqueeze(0) if V.dim() == 1 else V
        if V.shape != X.shape:
            raise ValueError(f"V must have the shape of X, {tuple(X.shape)}; got {tuple(V.shape)}")
        _, P = _cross_entropy_parts(W, self.features, self.labels, need_probs=True)
        Zv = torch.matmul(V.reshape(W.shape), self.features.T)       # (B, C, n)
        PZv = P * Zv
        AZv = PZv - P * PZv.sum(1, keepdim=True)
        return (torch.matmul(AZv, self.features) / self.n).reshape(X.shape) + self.ridge * V

    def hessian_at(self, x: torch.Tensor) -> torch.Tensor:
        r"""The exact dense Hessian :math:`\frac1n\sum_i A(p_i)\otimes x_i x_i^\top + \lambda I`
        at the point x (d,): (d, d). Only for d <= 4096."""
        if self.d > DENSE_HESSIAN_MAX_D:
            raise ValueError(f"hessian_at builds a dense (d, d) matrix only for d <= {DENSE_HESSIAN_MAX_D}; "
                             f"d = {self.d}: use hvp(X, V)")
        X, W = self._heads(x)
        if X.shape[0] != 1:
            raise ValueError(f"hessian_at takes one point (a vector of length {self.d}); got shape {tuple(x.shape)}")
        _, P = _cross_entropy_parts(W, self.features, self.labels, need_probs=True)
        P = P[0].T                                                   # (n, C)
        A = torch.diag_embed(P) - P.unsqueeze(2) * P.unsqueeze(1)    # (n, C, C)
        F = self.features
        H = torch.einsum("iab,ij,ik->ajbk", A, F, F) / self.n
        return H.reshape(self.d, self.d) + self.ridge * torch.eye(self.d, dtype=torch.float64)

    def hessian(self) -> torch.Tensor:
        raise ValueError(f"{self.name}: the softmax Hessian depends on the point; use hessian_at(x) "
                         "or hvp(X, V); global bounds are L_blocks, L2 and Linf")

    def initial_point(self, seed: int = 0) -> torch.Tensor:
        """W_0 = init_scale * N(0, I), drawn from ``seed`` (zeros when init_scale = 0)."""
        if self.init_scale == 0.0:
            return torch.zeros(self.d, dtype=torch.float64)
        gen = torch.Generator().manual_seed(int(seed))
        return self.init_scale * torch.randn(self.d, generator=gen, dtype=torch.float64)

    # ------------------------------------------------------------ ground truth
    def solve(self, gtol: float = 1e-10, maxiter: int = 50_000) -> dict:
        """Minimise f with L-BFGS (scipy, exact gradients, float64) from W = 0.

        Returns ``{"x_star", "f_star", "grad_norm", "gap_bound", "kind", "iterations"}``.
        ``gap_bound`` = ||grad f||^2 / (2 ridge) bounds f(x_star) - inf f when ridge > 0
        (strong convexity); it is inf when ridge = 0.
        """
        def fun(w):
            loss, g = self.loss_and_grad(torch.from_numpy(w).unsqueeze(0))
            return float(loss[0]), g[0].numpy()

        res = scipy.optimize.minimize(fun, np.zeros(self.d), jac=True, method="L-BFGS-B",
                                      options={"maxiter": maxiter, "maxfun": 2 * maxiter,
                                               "maxcor": 30, "gtol": gtol, "ftol": 1e-16})
        x = torch.from_numpy(res.x).clone()
        loss, g = self.loss_and_grad(x)
        gnorm = float(g.norm())
        if self.ridge > 0:
            gap, kind = gnorm ** 2 / (2 * self.ridge), "lbfgs_certified"
        else:
            gap, kind = math.inf, "lbfgs"
        return {"x_star": x, "f_star": float(loss[0]), "grad_norm": gnorm, "gap_bound": gap,
                "kind": kind, "iterations": int(res.nit)}

    @functools.cached_property
    def _solution(self) -> dict:
        return self.solve()

    @property
    def x_star(self) -> torch.Tensor:
        return self._solution["x_star"]

    @property
    def f_star(self) -> float:
        return self._solution["f_star"]

    @property
    def f_star_kind(self) -> str:
        return self._solution["kind"]

    @property
    def f_star_gap_bound(self) -> float:
        return self._solution["gap_bound"]

    def f_star_cvxpy(self, solver: str | None = None) -> float:
        """f* by cvxpy: the same objective with ``log_sum_exp`` (exponential cones).
        For small instances (a cross-check of the L-BFGS value)."""
        import cvxpy as cp

        W = cp.Variable((self.C, self.p))
        F = self.features.numpy()
        Z = F @ W.T                                                   # (n, C)
        onehot = np.eye(self.C)[self.labels.numpy()]
        picked = cp.sum(cp.multiply(onehot, Z))
        obj = (cp.sum(cp.log_sum_exp(Z, axis=1)) - picked) / self.n + self.ridge / 2 * cp.sum_squares(W)
        prob = cp.Problem(cp.Minimize(obj))
        prob.solve(solver=solver)
        if prob.status not in ("optimal", "optimal_inaccurate"):
            raise ValueError(f"cvxpy did not solve the problem: status {prob.status}")
        return float(prob.value)

    def ground_truth(self) -> dict:
        out = super().ground_truth()
        out.update({"n": self.n, "p": self.p, "C": self.C, "ridge": self.ridge,
                    "f_star_kind": self.f_star_kind, "f_star_gap_bound": self.f_star_gap_bound,
                    "L2_kind": self.L2_kind, "L_blocks_kind": self.L_blocks_kind})
        return out


# -------------------------------------------------------------------- factories
@register("softmax")
def synthetic(n: int = 512, p: int = 16, C: int = 10, *, alpha: float = 1.0, feature_mean: float = 0.0,
              feature_groups=1, feature_scales: Sequence[float] | None = None, scale_spread: float = 0.0,
              class_sep: float = 0.0, ridge: float = 1e-3, blocks: str = "class",
              batch_size: int | None = None, init_scale: float = 0.0, seed: int = 0) -> SoftmaxRegression:
    r"""Synthetic softmax regression with class imbalance and feature-group scales.

    Labels :math:`y_i \sim \pi`, :math:`\pi_k \propto k^{-\alpha}` (:func:`zipf_frequencies`);
    features :math:`x_i = s \odot (m \mathbf{1} + \text{class\_sep}\,\nu_{y_i} + \xi_i)`,
    :math:`\xi_i \sim N(0, I_p)`, m = ``feature_mean`` (m != 0 gives non-centred features,
    as after a bias or an activation; claim C6 uses m = 1), :math:`\nu_k` uniform on the
    unit sphere (``class_sep = 0``, the default, makes the labels independent of the
    features), and s_g the scale of feature group g: ``feature_scales`` (one per group)
    or ``scale_spread`` r decades, s_g = 10^(-r g / (G - 1)). All draws come from ``seed``.
    ``ridge`` defaults to 1e-3 so that f* is attained (and certified) even when the
    sample is separable. A class may draw no sample when alpha is large; its
    :meth:`~SoftmaxRegression.class_losses` entry is nan.
    """
    n, p = check_int("n", n, 1), check_int("p", p, 1)
    C = check_int("C", C, 2)
    pi = zipf_frequencies(C, alpha)
    sizes = group_sizes(p, feature_groups)
    G = len(sizes)
    feature_mean = check_real("feature_mean", feature_mean)
    class_sep = check_real("class_sep", class_sep, 0.0)
    scale_spread = check_real("scale_spread (decades)", scale_spread, 0.0)
    ridge = check_real("ridge", ridge, 0.0)
    seed = check_int("seed", seed)
    if feature_scales is not None and scale_spread != 0.0:
        raise ValueError("give feature_scales or scale_spread, not both")
    if feature_scales is not None:
        s = check_numbers("feature_scales", feature_scales, f"finite numbers > 0, one per feature group (G = {G})")
        if s.numel() != G or not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
            raise ValueError(f"feature_scales must be {G} finite positive numbers (one per feature group); "
                             f"got {list(map(float, s))}")
    else:
        s = torch.logspace(0.0, -scale_spread, G, dtype=torch.float64) if G > 1 else torch.ones(1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.multinomial(pi, n, replacement=True, generator=gen)
    noise = torch.randn(n, p, generator=gen, dtype=torch.float64)
    nu = torch.randn(C, p, generator=gen, dtype=torch.float64)
    nu = nu / nu.norm(dim=1, keepdim=True)
    scale = torch.repeat_interleave(s, torch.tensor(sizes))
    features = scale * (feature_mean + class_sep * nu[labels] + noise)
    knobs = {"n": n, "p": p, "C": C, "alpha": alpha, "feature_mean": feature_mean,
             "feature_groups": feature_groups, "feature_scales": None if feature_scales is None else list(map(float, s)),
             "scale_spread": scale_spread, "class_sep": class_sep, "ridge": ridge, "blocks": blocks,
             "batch_size": batch_size, "init_scale": init_scale, "seed": seed}
    return SoftmaxRegression(features, labels, C, ridge=ridge, blocks=blocks, feature_groups=sizes,
                             batch_size=batch_size, init_scale=init_scale, name="softmax", knobs=knobs)


def kunstner_data(m: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The heavy-tailed data set of Kunstner et al. 2024 (*Heavy-tailed class imbalance
    and why Adam outperforms gradient descent on language models*): for i = 0..m-1, 2^i
    classes with 2^(m-i) samples each, so n = m 2^m samples, C = 2^m - 1 classes
    (class 0 the most frequent; every frequency group holds 2^m samples), inputs of
    dimension p = (m+1) 2^m drawn uniformly on [0, 1) from ``seed``. Returns
    (features (n, p) float64, labels (n,) int64), samples ordered by class."""
    m = check_int("m", m, 2)
    seed = check_int("seed", seed)
    per_class = torch.cat([torch.full((2 ** i,), 2 ** (m - i), dtype=torch.int64) for i in range(m)])
    labels = torch.repeat_interleave(torch.arange(2 ** m - 1), per_class)
    gen = torch.Generator().manual_seed(seed)
    features = torch.rand(m * 2 ** m, (m + 1) * 2 ** m, generator=gen, dtype=torch.float64)
    return features, labels


@register("kunstner_softmax")
def kunstner(m: int = 5, *, ridge: float = 1e-3, blocks: str = "class", feature_groups=1,
             batch_size: int | None = None, init_scale: float = 0.0, seed: int = 0) -> SoftmaxRegression:
    """Softmax regression on :func:`kunstner_data` (m >= 2). p > n, so the data are
    separable and the unregularised infimum (0) is not attained: ``ridge`` defaults to
    1e-3, which makes f* attained and certified; pass ridge=0 for the paper's exact loss."""
    features, labels = kunstner_data(m, seed)
    knobs = {"m": m, "ridge": ridge, "blocks": blocks, "feature_groups": feature_groups,
             "batch_size": batch_size, "init_scale": init_scale, "seed": seed}
    return SoftmaxRegression(features, labels, 2 ** m - 1, ridge=ridge, blocks=blocks,
                             feature_groups=feature_groups, batch_size=batch_size,
                             init_scale=init_scale, name="kunstner_softmax", knobs=knobs)
