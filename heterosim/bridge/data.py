"""Classification tasks for the bridge, offline first.

Every task is a :class:`Task`: train and validation tensors, the class count C,
and what a model needs to read it (``vocab_size`` for token ids, or ``in_dim`` for
real-valued tokens). All builders are deterministic under their ``seed``.

Offline tasks (nothing is downloaded):

* :func:`digits_task` -- scikit-learn's bundled 8x8 digits (1797 images), cut into
  p x p patches: p = 4 gives 4 tokens of 16 values, p = 2 gives 16 tokens of 4.
* :func:`docstrings_task` -- docstrings of the Python standard library (read with
  ``ast`` from the source files, nothing is imported), each labelled by the module
  it comes from; C modules are taken in alphabetical order among those with at
  least ``min_docs`` docstrings (``class_offset`` skips the first ones, so that
  disjoint class sets give a pretraining and a fine-tuning task). Tokenized with a
  Hugging Face tokenizer when one is given, else with :class:`SimpleTokenizer`.
* :func:`synthetic_task` -- many-class task with controllable C (up to thousands)
  and class frequencies pi_k proportional to k^(-alpha) (Kunstner et al. 2024's
  heavy tail at alpha = 1); tokens x = m 1 + P_y + noise, with class prototypes P_k
  and a feature mean m (non-centred features when m != 0, the case of docs/theory.md C6).

Online: :func:`hf_text_task` loads a Hugging Face dataset by name through the
``datasets`` library (real code, not exercised in the tests: the test machines
have no network).
"""
from __future__ import annotations

import ast
import os
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np
import torch

__all__ = ["Task", "SimpleTokenizer", "digits_task", "docstrings_task", "synthetic_task",
           "hf_text_task", "make_task", "TASKS", "stdlib_docstrings"]


# --------------------------------------------------------------------------- Task
@dataclass
class Task:
    """A supervised classification task held in memory.

    ``x_*`` are (N, T) int64 token ids or (N, T, in_dim) floats; ``mask_*`` (N, T)
    bool marks real tokens (None: all real); ``y_*`` (N,) int64 in 0..C-1.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    mask_train: torch.Tensor | None = None
    mask_val: torch.Tensor | None = None
    vocab_size: int | None = None
    in_dim: int | None = None
    tokenizer: object | None = None
    class_names: tuple[str, ...] | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        for split in ("train", "val"):
            x, y, m = getattr(self, f"x_{split}"), getattr(self, f"y_{split}"), getattr(self, f"mask_{split}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{split}: {x.shape[0]} inputs but {y.shape[0]} labels")
            if m is not None and tuple(m.shape) != tuple(x.shape[:2]):
                raise ValueError(f"{split}: mask shape {tuple(m.shape)} != inputs' (N, T) {tuple(x.shape[:2])}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
                raise ValueError(f"{split}: labels must lie in 0..{self.n_classes - 1}")

    @property
    def max_len(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    def model_kwargs(self) -> dict:
        """Keyword arguments that make a :class:`~heterosim.bridge.models.TinyTransformer` fit this task."""
        return dict(n_classes=self.n_classes, vocab_size=self.vocab_size, in_dim=self.in_dim,
                    max_len=self.max_len)

    def class_counts(self, split: str = "train") -> torch.Tensor:
        y = self.y_train if split == "train" else self.y_val
        return torch.bincount(y, minlength=self.n_classes)

    def batch(self, idx: torch.Tensor | None = None, split: str = "train", device=None, dtype=None):
        """(x, mask, y) for rows ``idx`` (all rows when None), moved to ``device``;
        real-valued inputs are cast to ``dtype`` when given."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val'; got {split!r}")
        x, y, m = getattr(self, f"x_{split}"), getattr(self, f"y_{split}"), getattr(self, f"mask_{split}")
        if idx is not None:
            x, y = x[idx], y[idx]
            m = None if m is None else m[idx]
        if dtype is not None and x.is_floating_point():
            x = x.to(dtype)
        if device is not None:
            x, y = x.to(device), y.to(device)
            m = None if m is None else m.to(device)
        return x, m, y

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
        """Endless stream of minibatch indices: reshuffled epochs, drawn from
        ``torch.Generator().manual_seed(seed)``; a batch may straddle two epochs."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        gen = torch.Generator().manual_seed(int(seed))
        buf = torch.empty(0, dtype=torch.int64)
        while True:
            while buf.numel() < batch_size:
                buf = torch.cat([buf, torch.randperm(self.n_train, generator=gen)])
            yield buf[:batch_size]
            buf = buf[batch_size:]


def _split(n: int, val_frac: float, seed: int, labels: np.ndarray | None = None):
    """Deterministic train/validation split (stratified by label when given)."""
    if not 0.0 < val_frac < 1.0:
        raise ValueError(f"val_frac must lie in (0, 1); got {val_frac}")
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        k = max(1, int(round(val_frac * n)))
        return np.sort(perm[k:]), np.sort(perm[:k])
    tr, va = [], []
    for c in np.unique(labels):
        ids = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(val_frac * len(ids))) if len(ids) > 1 else 0
        va.append(ids[:k])
        tr.append(ids[k:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))


# ------------------------------------------------------------------------ digits
def digits_task(patch: int = 4, classes: Sequence[int] | None = None, val_frac: float = 0.2,
                seed: int = 0) -> Task:
    """scikit-learn's bundled digits (8x8, values 0..16, scaled to [0, 1]) as patch tokens.

    ``patch`` p in {1, 2, 4, 8}: (8/p)^2 tokens of p^2 values each, row-major.
    ``classes``: keep only these digits, relabelled 0..k-1 in the given order.
    """
    if patch not in (1, 2, 4, 8):
        raise ValueError(f"patch must be 1, 2, 4 or 8 (it must divide 8); got {patch}")
    from sklearn.datasets import load_digits

    data = load_digits()
    img = data.images.astype(np.float32) / 16.0  # (N, 8, 8)
    y = data.target.astype(np.int64)
    if classes is not None:
        classes = [int(c) for c in classes]
        if len(set(classes)) != len(classes) or not all(0 <= c <= 9 for c in classes) or not classes:
            raise ValueError(f"classes must be distinct digits in 0..9; got {classes}")
        keep = np.isin(y, classes)
        img, y = img[keep], y[keep]
        y = np.array([classes.index(c) for c in y], dtype=np.int64)
    n, g = img.shape[0], 8 // patch
    tokens = img.reshape(n, g, patch, g, patch).transpose(0, 1, 3, 2, 4).reshape(n, g * g, patch * patch)
    tr, va = _split(n, val_frac, seed, y)
    x = torch.from_numpy(np.ascontiguousarray(tokens))
    yt = torch.from_numpy(y)
    C = int(len(classes)) if classes is not None else 10
    names = tuple(str(c) for c in (classes if classes is not None else range(10)))
    return Task(name=f"digits_p{patch}", x_train=x[tr], y_train=yt[tr], x_val=x[va], y_val=yt[va],
                n_classes=C, in_dim=patch * patch, class_names=names,
                info=dict(patch=patch, classes=None if classes is None else list(classes), seed=seed))


# ---------------------------------------------------------------------- tokenizer
_WORD = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


class SimpleTokenizer:
    """Word-level tokenizer: lowercase, split into letter runs, digit runs and single
    symbols; the vocabulary holds [PAD] = 0, [UNK] = 1 and the ``max_vocab - 2`` most
    frequent words of the texts it was fitted on (ties broken alphabetically)."""

    PAD, UNK = 0, 1

    def __init__(self, vocab: Sequence[str]):
        vocab = list(vocab)
        if vocab[:2] != ["[PAD]", "[UNK]"]:
            raise ValueError("a vocabulary must start with '[PAD]', '[UNK]'")
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}

    @classmethod
    def fit(cls, texts: Sequence[str], max_vocab: int = 5000) -> "SimpleTokenizer":
        if max_vocab < 3:
            raise ValueError(f"max_vocab must be >= 3; got {max_vocab}")
        counts = Counter(w for t in texts for w in _WORD.findall(t.lower()))
        words = sorted(counts, key=lambda w: (-counts[w], w))[: max_vocab - 2]
        return cls(["[PAD]", "[UNK]"] + words)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (N, max_len) int64, mask (N, max_len) bool); truncates and pads; an
        empty text becomes a single [UNK] so that every row has one real token."""
        ids = torch.zeros(len(texts), max_len, dtype=torch.int64)
        mask = torch.zeros(len(texts), max_len, dtype=torch.bool)
        for i, t in enumerate(texts):
            toks = [self.index.get(w, self.UNK) for w in _WORD.findall(t.lower())][:max_len] or [self.UNK]
            ids[i, : len(toks)] = torch.tensor(toks)
            mask[i, : len(toks)] = True
        return ids, mask


def _encode(tokenizer, texts, max_len):
    if isinstance(tokenizer, SimpleTokenizer):
        return tokenizer.encode(texts, max_len)
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    return enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.bool)


def _vocab_size(tokenizer) -> int:
    if isinstance(tokenizer, SimpleTokenizer):
        return tokenizer.vocab_size
    return int(len(tokenizer))


# -------------------------------------------------------------------- docstrings
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "tkinter",
              "turtledemo", "ensurepip", "__pycache__", "config-3"}


def _stdlib_files() -> list[tuple[str, str]]:
    """(module name, path) of the standard library's public .py files, sorted by name."""
    root = sysconfig.get_paths()["stdlib"]
    out = []
    for dp, dns, fns in os.walk(root):
        dns[:] = [d for d in dns if d not in _SKIP_DIRS and not d.startswith((".", "_", "config-"))]
        rel = os.path.relpath(dp, root)
        pkg = "" if rel == "." else rel.replace(os.sep, ".")
        for fn in fns:
            if not fn.endswith(".py") or (fn.startswith("_") and fn != "__init__.py"):
                continue
            stem = fn[:-3]
            mod = pkg if stem == "__init__" else (f"{pkg}.{stem}" if pkg else stem)
            if mod:
                out.append((mod, os.path.join(dp, fn)))
    return sorted(out)


@lru_cache(maxsize=1024)
def _docstrings_of(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
        return ()
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and doc.strip():
                docs.append(" ".join(doc.split()))
    return tuple(docs)


def stdlib_docstrings(n_classes: int, min_docs: int = 10, class_offset: int = 0
                      ) -> list[tuple[str, tuple[str, ...]]]:
    """The first ``class_offset + n_classes`` standard-library modules (alphabetical)
    with at least ``min_docs`` docstrings, minus the first ``class_offset``:
    a list of (module name, docstrings). Source files are parsed, never imported."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2; got {n_classes}")
    if min_docs < 1 or class_offset < 0:
        raise ValueError(f"min_docs must be >= 1 and class_offset >= 0; got {min_docs}, {class_offset}")
    need = class_offset + n_classes
    found = []
    for mod, path in _stdlib_files():
        docs = _docstrings_of(path)
        if len(docs) >= min_docs:
            found.append((mod, docs))
            if len(found) == need:
                return found[class_offset:]
    raise ValueError(f"the standard library here has only {len(found)} modules with >= {min_docs} docstrings; "
                     f"asked for {need} (n_classes + class_offset); lower min_docs or n_classes")


def docstrings_task(n_classes: int = 10, max_len: int = 32, min_docs: int = 10,
                    max_per_class: int | None = None, class_offset: int = 0, tokenizer=None,
                    max_vocab: int = 5000, val_frac: float = 0.2, seed: int = 0) -> Task:
    """Text classification: which standard-library module does a docstring come from?

    ``n_classes`` C modules (see :func:`stdlib_docstrings`), every docstring of a
    module (or a seeded sample of ``max_per_class``) labelled with the module.
    ``tokenizer``: a Hugging Face tokenizer or a :class:`SimpleTokenizer`; by default a
    :class:`SimpleTokenizer` is fitted on the training texts (pass the returned
    ``task.tokenizer`` to the next task so that a pretrained model keeps its vocabulary).
    """
    groups = stdlib_docstrings(n_classes, min_docs, class_offset)
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for c, (_, docs) in enumerate(groups):
        docs = list(docs)
        if max_per_class is not None and len(docs) > max_per_class:
            docs = [docs[i] for i in sorted(rng.choice(len(docs), max_per_class, replace=False))]
        texts += docs
        labels += [c] * len(docs)
    y = np.asarray(labels, dtype=np.int64)
    tr, va = _split(len(texts), val_frac, seed, y)
    if tokenizer is None:
        tokenizer = SimpleTokenizer.fit([texts[i] for i in tr], max_vocab=max_vocab)
    ids, mask = _encode(tokenizer, texts, max_len)
    yt = torch.from_numpy(y)
    return Task(name=f"docstrings_C{n_classes}", x_train=ids[tr], y_train=yt[tr], x_val=ids[va], y_val=yt[va],
                mask_train=mask[tr], mask_val=mask[va], n_classes=n_classes,
                vocab_size=_vocab_size(tokenizer), tokenizer=tokenizer,
                class_names=tuple(m for m, _ in groups),
                info=dict(min_docs=min_docs, class_offset=class_offset, max_per_class=max_per_class, seed=seed))


# --------------------------------------------------------------------- synthetic
def class_frequencies(n_classes: int, alpha: float) -> np.ndarray:
    """pi_k = k^(-alpha) / sum_j j^(-alpha), k = 1..C (alpha = 0: balanced)."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2; got {n_classes}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0; got {alpha}")
    w = np.arange(1, n_classes + 1, dtype=np.float64) ** (-float(alpha))
    return w / w.sum()


def synthetic_task(n_classes: int = 100, alpha: float = 0.0, n_train: int = 4096, n_val: int = 1024,
                   seq_len: int = 4, in_dim: int = 16, feature_mean: float = 1.0, separation: float = 1.0,
                   noise: float = 1.0, cover: bool = True, seed: int = 0) -> Task:
    """Many-class task with real-valued tokens and class frequencies pi_k ~ k^(-alpha).

    Class k has a prototype P_k in R^{seq_len x in_dim}, entries N(0, separation^2);
    a sample of class y is x = feature_mean + P_y + noise * N(0, I). Labels are drawn
    i.i.d. from pi; with ``cover`` the first C training samples are one of each class,
    so every class is present in training (the rest follow pi).
    """
    pi = class_frequencies(n_classes, alpha)
    if n_train < (n_classes if cover else 1) or n_val < 1:
        raise ValueError(f"n_train must be >= n_classes ({n_classes}) when cover=True, and n_val >= 1; "
                         f"got n_train={n_train}, n_val={n_val}")
    if seq_len < 1 or in_dim < 1 or noise < 0 or separation < 0:
        raise ValueError("seq_len, in_dim must be >= 1 and noise, separation >= 0")
    gen = torch.Generator().manual_seed(int(seed))
    protos = torch.randn(n_classes, seq_len, in_dim, generator=gen) * separation
    pit = torch.from_numpy(pi)

    def draw(n, covered):
        y = torch.multinomial(pit, n, replacement=True, generator=gen)
        if covered:
            y[:n_classes] = torch.arange(n_classes)
        x = feature_mean + protos[y] + noise * torch.randn(n, seq_len, in_dim, generator=gen)
        return x, y

    xtr, ytr = draw(n_train, cover)
    xva, yva = draw(n_val, False)
    return Task(name=f"synthetic_C{n_classes}_a{alpha:g}", x_train=xtr, y_train=ytr, x_val=xva, y_val=yva,
                n_classes=n_classes, in_dim=in_dim,
                info=dict(alpha=alpha, feature_mean=feature_mean, separation=separation, noise=noise,
                          seed=seed, pi=pi.tolist() if n_classes <= 50 else None))


# -------------------------------------------------------------- Hugging Face data
def hf_text_task(name: str, tokenizer, config: str | None = None, text_field: str = "text",
                 label_field: str = "label", train_split: str = "train", val_split: str = "validation",
                 max_len: int = 128, n_train: int | None = None, n_val: int | None = None,
                 seed: int = 0, **load_kwargs) -> Task:
    """A Hugging Face text-classification dataset by name (``datasets.load_dataset``),
    tokenized with ``tokenizer``; e.g. ``hf_text_task("glue", tok, config="sst2",
    text_field="sentence")``. Needs the ``datasets`` package and a network (or a local
    cache). ``n_train``/``n_val`` take a seeded subsample."""
    try:
        from datasets import load_dataset
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError("hf_text_task needs the 'datasets' package: pip install datasets") from e
    ds = load_dataset(name, config, **load_kwargs)
    rng = np.random.default_rng(seed)

    def take(split, n):
        part = ds[split]
        if n is not None and n < len(part):
            part = part.select(sorted(rng.choice(len(part), n, replace=False).tolist()))
        ids, mask = _encode(tokenizer, part[text_field], max_len)
        return ids, mask, torch.as_tensor(part[label_field], dtype=torch.int64)

    xtr, mtr, ytr = take(train_split, n_train)
    xva, mva, yva = take(val_split, n_val)
    C = int(max(ytr.max(), yva.max())) + 1
    feat = ds[train_split].features.get(label_field)
    names = tuple(feat.names) if hasattr(feat, "names") else None
    if names is not None:
        C = len(names)
    return Task(name=f"hf_{name}" + (f"_{config}" if config else ""), x_train=xtr, y_train=ytr, x_val=xva,
                y_val=yva, mask_train=mtr, mask_val=mva, n_classes=C, vocab_size=_vocab_size(tokenizer),
                tokenizer=tokenizer, class_names=names, info=dict(dataset=name, config=config, seed=seed))


# ---------------------------------------------------------------------- registry
TASKS = {"digits": digits_task, "docstrings": docstrings_task, "synthetic": synthetic_task}


def make_task(name: str, **kwargs) -> Task:
    """Build a registered offline task by name: one of :data:`TASKS`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name](**kwargs)
