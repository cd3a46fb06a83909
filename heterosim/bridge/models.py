"""A compact transformer encoder with one switch: where the LayerNorms sit.

``TinyTransformer(ln="pre")`` and ``TinyTransformer(ln="post")`` built with the same
arguments and seed have the same parameter names, the same parameter count and the
same initial values; only the placement of the two LayerNorms of each block differs
(Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture", eqs. in
their Table 1):

    Post-LN:  x <- LN_1(x + Attn(x));          x <- LN_2(x + FFN(x))
    Pre-LN:   x <- x + Attn(LN_1(x));          x <- x + FFN(LN_2(x))

Both end with a final LayerNorm ``ln_f`` before pooling (for Post-LN it re-normalizes
an already normalized state; it is kept so that the switch moves nothing but LN_1 and
LN_2). Features are mean-pooled over the unmasked tokens (or read from a learned
[CLS] token) and mapped to the C logits by a single ``nn.Linear`` named ``head``:
z = W h + b, W in R^{C x h}, the linear head of docs/theory.md C6.

Attention is written out, softmax(Q K^T / sqrt(d_head)) V (``attn="math"``), so that
the model can be differentiated twice: block Hessian-vector products (Zhang et al.
2024's block spectra) need double backward, which fused attention kernels lack.
``attn="sdpa"`` uses ``torch.nn.functional.scaled_dot_product_attention`` for speed
where only first derivatives are needed.

Inputs are token ids (``vocab_size`` given: (B, T) int64) or real-valued tokens such
as image patches (``in_dim`` given: (B, T, in_dim) float); an optional boolean mask
(B, T) marks real tokens (True) against padding.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinyConfig", "TinyTransformer", "LN_PLACEMENTS", "ATTN_KINDS", "INITS"]

LN_PLACEMENTS = ("pre", "post")
ATTN_KINDS = ("math", "sdpa")
INITS = ("normal", "xavier")
POOLS = ("mean", "cls")


@dataclass(frozen=True)
class TinyConfig:
    """Everything that defines a :class:`TinyTransformer` (saved with checkpoints)."""

    ln: str = "pre"
    layers: int = 2
    d_model: int = 32
    heads: int = 2
    n_classes: int = 10
    vocab_size: int | None = None
    in_dim: int | None = None
    max_len: int = 64
    mlp_ratio: int = 4
    pool: str = "mean"
    attn: str = "math"
    init: str = "normal"
    init_std: float = 0.02
    seed: int = 0

    def __post_init__(self):
        if self.ln not in LN_PLACEMENTS:
            raise ValueError(f"ln must be one of {LN_PLACEMENTS}; got {self.ln!r}")
        if self.attn not in ATTN_KINDS:
            raise ValueError(f"attn must be one of {ATTN_KINDS}; got {self.attn!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}")
        if self.pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}; got {self.pool!r}")
        for name in ("layers", "d_model", "heads", "n_classes", "max_len", "mlp_ratio"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        if self.d_model % self.heads != 0:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if (self.vocab_size is None) == (self.in_dim is None):
            raise ValueError("give exactly one of vocab_size (token ids) or in_dim (real-valued tokens, "
                             f"e.g. image patches); got vocab_size={self.vocab_size}, in_dim={self.in_dim}")
        for name in ("vocab_size", "in_dim"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive integer or None; got {v!r}")
        if not self.init_std > 0:
            raise ValueError(f"init_std must be > 0; got {self.init_std}")

    def to_dict(self) -> dict:
        return asdict(self)


class MathAttention(nn.Module):
    """Multi-head self-attention written out: softmax(Q K^T / sqrt(d_head) + M) V.

    Q, K, V and the output projection are separate ``nn.Linear`` layers (``q``, ``k``,
    ``v``, ``o``), so that each is its own parameter block, as in Zhang et al. 2024's
    block-wise Hessian analysis. K has no bias: a key bias b adds q_i^T b to every score
    of row i, which the softmax cancels, so its gradient is identically zero (up to
    rounding, which would otherwise dominate the gradient-norm spread statistics).
    """

    def __init__(self, d_model: int, heads: int, kind: str = "math"):
        super().__init__()
        self.heads, self.kind = heads, kind
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, D = x.shape
        H = self.heads

        def split(t):
            return t.view(B, T, H, D // H).transpose(1, 2)  # (B, H, T, d_head)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if self.kind == "sdpa":
            attn_mask = None if mask is None else mask[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(D // H)
            if mask is not None:
                # a large finite negative (not -inf) keeps every row finite
                scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
            out = torch.softmax(scores, dim=-1) @ v
        return self.o(out.transpose(1, 2).reshape(B, T, D))


class FeedForward(nn.Module):
    """FFN(x) = W_2 GELU(W_1 x + b_1) + b_2 (``fc1``, ``fc2``)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """One encoder layer; ``ln`` says where LN_1 and LN_2 act (the only switch)."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.ln_place = cfg.ln
        # registration order fixes parameter order: identical for both placements
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = MathAttention(cfg.d_model, cfg.heads, cfg.attn)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = FeedForward(cfg.d_model, cfg.mlp_ratio * cfg.d_model)

    def forward(self, x, mask):
        if self.ln_place == "pre":
            x = x + self.attn(self.ln1(x), mask)
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x, mask))
        return self.ln2(x + self.mlp(x))


class TinyTransformer(nn.Module):
    """Compact transformer encoder classifier with a LayerNorm-placement switch.

    Parameters (keyword arguments; see :class:`TinyConfig`): ``ln`` ("pre" or "post"),
    ``layers`` L, ``d_model`` d, ``heads``, ``n_classes`` C, ``vocab_size`` (token ids)
    or ``in_dim`` (real-valued tokens, e.g. 4x4 image patches have in_dim 16),
    ``max_len``, ``mlp_ratio`` (FFN width / d), ``pool`` ("mean" or "cls"), ``attn``
    ("math" or "sdpa"), ``init`` ("normal": N(0, init_std^2) weights as in BERT/GPT-2;
    "xavier": Xavier-uniform weights, the setting of Xiong et al. 2020), ``seed``.

    Initialization draws from one ``torch.Generator(seed)`` over the parameters in
    registration order, so equal names give equal initial values whatever ``ln`` is.
    Biases and LayerNorm shifts start at 0, LayerNorm gains at 1.

    ``forward(x, mask=None) -> logits (B, C)``; ``features(x, mask) -> (B, d)`` are the
    pooled features h that the head sees.

    Example::

        >>> m = TinyTransformer(ln="post", layers=2, d_model=32, heads=2, n_classes=10, in_dim=16, max_len=4)
        >>> m(torch.randn(5, 4, 16)).shape
        torch.Size([5, 10])
    """

    def __init__(self, config: TinyConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = TinyConfig(**kwargs)
        elif kwargs:
            raise ValueError("give a TinyConfig or keyword arguments, not both")
        cfg = self.config = config
        if cfg.vocab_size is not None:
            self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        else:
            self.embed = nn.Linear(cfg.in_dim, cfg.d_model)
        n_pos = cfg.max_len + (1 if cfg.pool == "cls" else 0)
        self.pos = nn.Parameter(torch.zeros(n_pos, cfg.d_model))
        if cfg.pool == "cls":
            self.cls = nn.Parameter(torch.zeros(cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        self.reset_parameters(cfg.seed)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw all parameters from ``torch.Generator().manual_seed(seed)``."""
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed if seed is None else int(seed))
        owner = {}
        for mname, mod in self.named_modules():
            for pname, _ in mod.named_parameters(recurse=False):
                owner[f"{mname}.{pname}" if mname else pname] = mod
        for name, p in self.named_parameters():
            mod, leaf = owner[name], name.rsplit(".", 1)[-1]
            if isinstance(mod, nn.LayerNorm):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                p.zero_()
            elif isinstance(mod, nn.Linear) and cfg.init == "xavier":
                fan_out, fan_in = p.shape
                a = math.sqrt(6.0 / (fan_in + fan_out))
                p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64).mul_(2).sub_(1).mul_(a))
            else:  # Linear weights ("normal"), token embeddings, positions, [CLS]
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).mul_(cfg.init_std))

    # --------------------------------------------------------------- forward
    def _check(self, x, mask):
        cfg = self.config
        if cfg.vocab_size is not None:
            if x.ndim != 2 or x.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"this model takes token ids (B, T) int64; got {tuple(x.shape)} {x.dtype}")
        elif x.ndim != 3 or x.shape[-1] != cfg.in_dim:
            raise ValueError(f"this model takes real-valued tokens (B, T, {cfg.in_dim}); got {tuple(x.shape)}")
        if x.shape[1] > cfg.max_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds max_len {cfg.max_len}")
        if mask is not None and tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"mask must have shape (B, T) = {tuple(x.shape[:2])}; got {tuple(mask.shape)}")

    def hidden(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final token states after ``ln_f``: (B, T', d) (T' = T + 1 with a CLS token)."""
        self._check(x, mask)
        if mask is not None:
            mask = mask.to(torch.bool)
        h = self.embed(x)
        if self.config.pool == "cls":
            h = torch.cat([self.cls.expand(h.shape[0], 1, -1), h], dim=1)
            if mask is not None:
                mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        h = h + self.pos[: h.shape[1]]
        for blk in self.blocks:
            h = blk(h, mask)
        return self.ln_f(h)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled features h (B, d) fed to the linear head."""
        h = self.hidden(x, mask)
        if self.config.pool == "cls":
            return h[:, 0]
        if mask is None:
            return h.mean(dim=1)
        m = mask.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, mask))

    # -------------------------------------------------------------- helpers
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def last_layer_ffn(self) -> str:
        """Name of W^{2,L}, the last layer's second FFN weight (Xiong et al. 2020, Thm 1)."""
        return f"blocks.{self.config.layers - 1}.mlp.fc2.weight"
