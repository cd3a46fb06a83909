r"""Monitors for fine-tuning runs: cheap ones every step, Hessian ones on a schedule.

Every step (:class:`StepMonitor`, a few foreach reductions; no extra forward or
backward pass):

* per-block gradient norms ||g_b||_2 (one block per parameter tensor, through
  ``torch._foreach_norm``) and the heterogeneity statistics of
  :func:`heterosim.measures.grad_heterogeneity` (spread of the block RMS
  r_b = ||g_b|| / sqrt(d_b): ``std_log10_rms``, ``max_min_ratio``, ``cv_rms``,
  ``gini_rms``), the gradient density phi = ||g||_1^2 / (d ||g||_2^2), ||g||_2;
* the linear head z = W h + b: ||W_t||_F, the distance ||W_t - W_0||_F from its start
  (docs/theory.md C6: for sign methods ||W_t - W_0||_F <= eta t sqrt(C h), since every
  entry moves by exactly eta per step), ||b_t||;
* the logits of the batch: mean_i ||z_i||_2 and max_{i,c} |z_ic|.

On a schedule (:func:`hessian_measures`): the top eigenvalue of every diagonal Hessian
block H_bb (block smoothness L_b at the current point, by Lanczos) and the block
spectral densities by stochastic Lanczos quadrature with their mean pairwise
Jensen-Shannon distance JS0 (Zhang et al. 2024), all through
:mod:`heterosim.measures` on the model flattened by ``flatten_model``. These need
double backward: the model must use plain math attention (``attn="math"`` for
:class:`~heterosim.bridge.models.TinyTransformer`, ``attn_implementation="eager"``
for Hugging Face models) and no dropout; they run on a float64 copy by default.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from heterosim import measures
from heterosim.bridge.models import MathAttention

__all__ = ["StepMonitor", "STRUCTURAL_ZEROS", "logit_stats", "head_stats", "hessian_measures", "select_hessian_params"]


def logit_stats(logits: torch.Tensor) -> dict:
    """``logit_norm`` = mean_i ||z_i||_2 and ``logit_max`` = max |z_ic| of a (B, C) batch."""
    z = logits.detach()
    norm, mx = torch.stack([torch.linalg.vector_norm(z, dim=-1).mean(), z.abs().max()]).tolist()  # one sync
    return {"logit_norm": norm, "logit_max": mx}


def head_stats(weight: torch.Tensor, weight0: torch.Tensor, bias: torch.Tensor | None = None) -> dict:
    """``head_norm`` = ||W||_F, ``head_dist`` = ||W - W_0||_F, ``head_bias_norm`` = ||b||_2."""
    w = weight.detach()
    vals = [torch.linalg.vector_norm(w), torch.linalg.vector_norm(w - weight0)]
    if bias is not None:
        vals.append(torch.linalg.vector_norm(bias.detach()).to(w.dtype))
    vals = torch.stack(vals).tolist()  # one sync
    return {"head_norm": vals[0], "head_dist": vals[1], "head_bias_norm": vals[2] if bias is not None else 0.0}


# parameters whose gradient is identically zero whatever the data: the attention key
# bias (softmax(q (K + 1 b^T)^T) = softmax(q K^T), the shift q^T b is the same for every key)
STRUCTURAL_ZEROS = ("attention.self.key.bias", "attn.k.bias")


class StepMonitor:
    """Per-step monitors of a model with a linear head (attribute ``head``, an ``nn.Linear``).

    Create it before training (it stores W_0); call :meth:`gradients` after
    ``backward()`` and before the optimizer step, :meth:`after_step` after it.
    ``names`` and ``sizes`` (the parameters with a gradient) are fixed at the first call.
    The spread statistics leave out parameters whose name ends with one of ``exclude``
    (default :data:`STRUCTURAL_ZEROS`, gradients that are zero up to rounding and would
    otherwise set the spread); ``block_grad_norms`` lists every parameter.
    """

    def __init__(self, model: nn.Module, head: str = "head", exclude: Sequence[str] = STRUCTURAL_ZEROS):
        lin = getattr(model, head, None)
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"the model needs a linear head nn.Linear at attribute {head!r}; got {type(lin).__name__}")
        self.head = lin
        self.weight0 = lin.weight.detach().clone()
        self.exclude = tuple(exclude)
        self.names: list[str] | None = None
        self.sizes: list[int] | None = None
        self._keep: torch.Tensor | None = None

    @property
    def head_shape(self) -> tuple[int, int]:
        """(C, h) of the head's weight."""
        return tuple(self.weight0.shape)

    def gradients(self, model: nn.Module) -> dict:
        """Gradient monitors of the current ``.grad`` fields (after backward): two foreach
        reductions (l2 and l1 norm of every block) and one device-to-host copy."""
        if self.names is None:
            named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
            if not named:
                raise ValueError("the model has no parameter with a gradient: call backward() first")
            self.names, self._params = [n for n, _ in named], [p for _, p in named]
            self.sizes = [p.numel() for p in self._params]
            self._keep = torch.tensor([not n.endswith(self.exclude) for n in self.names])
        grads = [p.grad for p in self._params]
        if any(g is None for g in grads):
            raise ValueError("a parameter that had a gradient at the first step has none now")
        n = len(grads)
        both = torch.stack(torch._foreach_norm(grads, 2) + torch._foreach_norm(grads, 1)).to(torch.float64).cpu()
        norms, l1 = both[:n], both[n:]
        sizes = torch.tensor(self.sizes, dtype=torch.float64)
        out = measures.grad_heterogeneity(norms[self._keep], sizes[self._keep])
        sq = float((norms ** 2).sum())
        out["grad_phi"] = float(l1.sum()) ** 2 / (float(sizes.sum()) * sq) if sq > 0 else float("nan")
        out["grad_norm"] = sq ** 0.5
        out["block_grad_norms"] = norms.tolist()
        return out

    def after_step(self) -> dict:
        """Head monitors at the current weights."""
        return head_stats(self.head.weight, self.weight0, self.head.bias)


# ---------------------------------------------------------------------------- Hessian
def select_hessian_params(model: nn.Module, max_elements: int | None = None,
                          exclude: Sequence[str] = ("embed", "embeddings", "pos", "pooler")) -> list[str]:
    """Parameter names for the block Hessian measures: every parameter except embedding
    tables (``exclude`` substrings; an embedding row has curvature only for tokens seen
    in the batch), unused poolers, and :data:`STRUCTURAL_ZEROS` (zero gradient, so a zero
    Hessian block); with ``max_elements``, parameters are dropped from the middle of the
    list (keeping the first and last layers and the head) until the total fits."""
    names = [n for n, p in model.named_parameters()
             if p.requires_grad and p.numel() > 0 and not any(s in n for s in exclude)
             and not n.endswith(STRUCTURAL_ZEROS)]
    if max_elements is None:
        return names
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    while len(names) > 1 and sum(sizes[n] for n in names) > max_elements:
        names.pop(len(names) // 2)
    return names


SYMLOG_SIGMA2 = 1e-4
"""Smoothing variance of ``js0_symlog``, in decades^2 (a 0.01-decade Gaussian)."""


def hessian_measures(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, y: torch.Tensor,
                     params: Sequence[str] | None = None, top_steps: int = 20, slq_steps: int = 30,
                     probes: int = 2, sigma2: float = measures.SIGMA2_ZHANG, seed: int = 0,
                     dtype: torch.dtype | None = torch.float64, chunk_size: int | str | None = "auto",
                     slq: bool = True, max_elements: int | None = 2_000_000) -> dict:
    r"""Block Hessian measures of the cross-entropy loss on the batch (x, mask, y).

    Returns ``hess_names`` (the blocks), ``block_top_eig`` (lambda_max(H_bb) per block, by
    ``top_steps`` Lanczos steps), ``top_eig_max_min_ratio`` (max_b / min_b of the
    positive ones) and, with ``slq``, ``js0`` = the mean pairwise JS distance between
    the SLQ block densities (``slq_steps`` steps, ``probes`` probes, smoothing
    ``sigma2``; :func:`heterosim.measures.block_slq`, :func:`heterosim.measures.js0`) and
    ``js0_symlog``, the same on the symlog axis (:data:`SYMLOG_SIGMA2`; no extra products),
    which keeps blocks whose curvature is orders of magnitude below the largest resolved.
    Works on a copy of the model cast to ``dtype`` (float64 by default), with math
    attention; the model itself is untouched. ``params`` default:
    :func:`select_hessian_params` (no embedding tables; at most ``max_elements``
    entries, since every Lanczos step holds (probes x blocks) vectors of that length).
    ``chunk_size`` bounds how many HVPs are vmapped at once (each holds a forward and
    double backward of the whole model on the batch); "auto": all at once for models
    under 1 M parameters, 8 at a time above.
    """
    work = copy.deepcopy(model)
    for mod in work.modules():  # plain math attention for double backward
        if isinstance(mod, MathAttention):
            mod.kind = "math"
    if dtype is not None:
        work = work.to(dtype)
        if x.is_floating_point():
            x = x.to(dtype)
    work.eval()
    if chunk_size == "auto":
        chunk_size = None if sum(p.numel() for p in work.parameters()) < 1_000_000 else 8
    if params is None:
        params = select_hessian_params(work, max_elements)
    for p in work.parameters():  # only the flattened vector is differentiated
        p.requires_grad_(False)

    def closure(forward):
        return F.cross_entropy(forward(x, mask), y)

    loss_fn, x0, blocks = measures.flatten_model(work, closure, params=params)
    top = measures.block_top_eigenvalues(loss_fn, x0, blocks, k=1, steps=top_steps, seed=seed,
                                         chunk_size=chunk_size)[:, 0].detach()
    pos = top[torch.isfinite(top) & (top > 0)]
    out = {"hess_names": list(blocks.names), "block_top_eig": top.tolist(),
           "top_eig_max_min_ratio": float(pos.max() / pos.min()) if pos.numel() else float("nan")}
    if slq:
        res = measures.block_slq(loss_fn, x0, blocks, steps=slq_steps, probes=probes, sigma2=sigma2,
                                 seed=seed, chunk_size=chunk_size)
        out["js0"] = float(measures.js0(res.densities.detach(), res.grid)[0])
        # the same Lanczos runs on a symlog axis: blocks far below the largest stay resolved
        grid, dens, _ = measures.slq_densities(res.nodes.detach(), res.weights.detach(), SYMLOG_SIGMA2,
                                               scale="symlog")
        out["js0_symlog"] = float(measures.js0(dens, grid)[0])
    return out
