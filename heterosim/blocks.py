"""Block partitions of a parameter vector.

A partition assigns each of the ``d`` coordinates of a parameter vector to one of
``n`` blocks. It is carried by every problem (``problem.blocks``) and handed to
every optimizer rule, so that block-wise rules (one second moment per block,
block-normalised steps, eta_b = lr / L_b) reduce over the same blocks on a (B, d)
batch of synthetic runs and on a model's flattened parameters.

Blocks need not be contiguous (a softmax head split by feature group is not);
when they are contiguous and of equal size the reductions use a reshape instead
of a scatter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

__all__ = ["Blocks"]


@dataclass(frozen=True, eq=False)
class Blocks:
    """A partition of ``d`` coordinates into ``n`` non-empty blocks.

    Build with :meth:`from_sizes` (contiguous blocks) or :meth:`from_index`
    (a block id per coordinate). ``sizes[b]`` is d_b; ``index[i]`` is the block
    of coordinate ``i``.
    """

    index: torch.Tensor  # (d,) int64 block id per coordinate
    sizes: tuple[int, ...]
    names: tuple[str, ...] | None = None
    _equal_contiguous: bool = field(default=False, repr=False)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_sizes(cls, sizes: Sequence[int], names: Sequence[str] | None = None) -> "Blocks":
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) == 0:
            raise ValueError("a block partition needs at least one block; got an empty list of sizes")
        bad = [s for s in sizes if s <= 0]
        if bad:
            raise ValueError(f"every block must be non-empty (size >= 1); got sizes {list(sizes)}")
        index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        names = _check_names(names, len(sizes))
        return cls(index=index, sizes=sizes, names=names,
                   _equal_contiguous=len(set(sizes)) == 1)

    @classmethod
    def from_index(cls, index, names: Sequence[str] | None = None) -> "Blocks":
        index = torch.as_tensor(index, dtype=torch.int64).flatten()
        if index.numel() == 0:
            raise ValueError("a block index needs at least one coordinate; got an empty index")
        if int(index.min()) < 0:
            raise ValueError("block ids must be >= 0")
        n = int(index.max()) + 1
        counts = torch.bincount(index, minlength=n)
        if bool((counts == 0).any()):
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise ValueError(f"block ids must be 0..n-1 with every block non-empty; blocks {empty} are empty")
        sizes = tuple(int(c) for c in counts)
        contiguous = bool((index[1:] >= index[:-1]).all())
        names = _check_names(names, n)
        return cls(index=index, sizes=sizes, names=names,
                   _equal_contiguous=contiguous and len(set(sizes)) == 1)

    @classmethod
    def single(cls, d: int) -> "Blocks":
        return cls.from_sizes([d])

    # ------------------------------------------------------------- properties
    @property
    def d(self) -> int:
        return int(self.index.numel())

    @property
    def n(self) -> int:
        return len(self.sizes)

    def __len__(self) -> int:
        return self.n

    def sizes_tensor(self, like: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.tensor(self.sizes, dtype=torch.float64)
        return t if like is None else t.to(dtype=like.dtype, device=like.device)

    def slices(self) -> list[torch.Tensor]:
        """Coordinate indices of each block (a list of n LongTensors)."""
        order = torch.argsort(self.index, stable=True)
        return list(torch.split(order, list(self.sizes)))

    def to(self, device) -> "Blocks":
        return Blocks(index=self.index.to(device), sizes=self.sizes, names=self.names,
                      _equal_contiguous=self._equal_contiguous)

    # -------------------------------------------------------------- reductions
    def sum(self, v: torch.Tensor) -> torch.Tensor:
        """Per-block sums over the last axis: (..., d) -> (..., n)."""
        if v.shape[-1] != self.d:
            raise ValueError(f"last axis has length {v.shape[-1]}, the partition covers d = {self.d}")
        if self._equal_contiguous:
            return v.reshape(*v.shape[:-1], self.n, self.sizes[0]).sum(-1)
        out = v.new_zeros(*v.shape[:-1], self.n)
        return out.index_add_(-1, self.index.to(v.device), v)

    def sq_norms(self, v: torch.Tensor) -> torch.Tensor:
        """Per-block squared l2 norms ||v_b||^2: (..., d) -> (..., n)."""
        return self.sum(v * v)

    def norms(self, v: torch.Tensor) -> torch.Tensor:
        """Per-block l2 norms ||v_b||_2: (..., d) -> (..., n)."""
        return self.sq_norms(v).sqrt()

    def mean(self, v: torch.Tensor) -> torch.Tensor:
        """Per-block means: (..., d) -> (..., n)."""
        return self.sum(v) / self.sizes_tensor(v)

    def expand(self, per_block: torch.Tensor) -> torch.Tensor:
        """Broadcast per-block values to coordinates: (..., n) -> (..., d)."""
        if per_block.shape[-1] != self.n:
            raise ValueError(f"last axis has length {per_block.shape[-1]}, the partition has n = {self.n} blocks")
        if self._equal_contiguous:
            return per_block.repeat_interleave(self.sizes[0], dim=-1)
        return per_block.index_select(-1, self.index.to(per_block.device))

    def __eq__(self, other) -> bool:
        return isinstance(other, Blocks) and self.sizes == other.sizes and torch.equal(self.index, other.index)

    def __hash__(self) -> int:
        return hash((self.sizes, tuple(self.index.tolist())))


def _check_names(names, n):
    if names is None:
        return None
    names = tuple(str(s) for s in names)
    if len(names) != n:
        raise ValueError(f"got {len(names)} block names for {n} blocks")
    return names
