r"""One fine-tuning loop for every optimizer, with the monitors, into a tidy table.

Every rule registered in :mod:`heterosim.optimizers` (sgd, signsgd, signum, adam,
block_adam, ...) runs on a model through the one adapter
:class:`heterosim.optimizers.RuleOptimizer` (one block per parameter tensor), the
very rule the synthetic studies use; ``torch_sgd``, ``torch_adam`` and
``torch_adamw`` run ``torch.optim``'s own implementations as references (same
hyperparameter names). The loss is the mean cross-entropy of a minibatch,
f_B(theta) = -(1/|B|) sum_{i in B} log softmax(z_i)_{y_i}.

:func:`finetune` returns a ``pandas.DataFrame`` with one row per step: config
columns (model, ln, task, optimizer, lr, seed, ...) and measured columns (batch loss
and accuracy, the monitors of :mod:`heterosim.bridge.monitors`, evaluations, times).
Row t (t >= 1) holds the loss and gradient at theta_{t-1} (the batch of step t) and
the head after the update, W_t; row 0 holds the start (head, evaluation, Hessian).

"Fine-tuning" the compact :class:`~heterosim.bridge.models.TinyTransformer` means:
:func:`pretrain` trains it briefly on one task and saves a checkpoint; a later run
loads that checkpoint with a fresh head for another task (:func:`build_model` with
``{"model": "checkpoint", "path": ...}``). This is a short pretraining in the
package, not a pretrained language model; MiniLM (``{"model": "minilm"}``) is a real
one.
"""
from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import heterosim
from heterosim import optimizers as hopt
from heterosim.bridge.checkpoints import load_checkpoint, save_checkpoint
from heterosim.bridge.data import Task
from heterosim.bridge.models import TinyConfig, TinyTransformer
from heterosim.bridge.monitors import StepMonitor, hessian_measures, logit_stats
from heterosim.engine import TuneResult, lr_grid, select_lr

__all__ = ["REFERENCE_OPTIMIZERS", "optimizer_names", "make_optimizer", "default_device", "lr_range",
           "build_model", "model_label", "finetune", "evaluate", "tune_lr", "tune_result", "pretrain",
           "provenance"]

REFERENCE_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "torch_sgd": torch.optim.SGD,
    "torch_adam": torch.optim.Adam,
    "torch_adamw": torch.optim.AdamW,
}


def optimizer_names() -> list[str]:
    """Every name :func:`make_optimizer` accepts: the registered rules and the torch references."""
    return sorted(set(hopt.names()) | set(REFERENCE_OPTIMIZERS))


def make_optimizer(name: str, model: nn.Module, lr: float, blocks="tensor", **hyper) -> torch.optim.Optimizer:
    """A ``torch.optim.Optimizer`` over ``model``'s trainable parameters: a registered rule
    through :class:`~heterosim.optimizers.RuleOptimizer` (blocks = parameter tensors, named),
    or a torch reference (``torch_sgd``, ``torch_adam``, ``torch_adamw``)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameter")
    if name in REFERENCE_OPTIMIZERS:
        hopt.validate_lr(lr, "lr")
        return REFERENCE_OPTIMIZERS[name]([p for _, p in named], lr=lr, **hyper)
    if name not in hopt.names():
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(optimizer_names())}")
    return hopt.RuleOptimizer([p for _, p in named], name, lr=lr, blocks=blocks,
                              names=[n for n, _ in named], **hyper)


def default_device(device=None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None and str(device) != "auto":
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# the usual learning-rate range of each family: the bridge's grids are lr_grid over it (tune_lr)
_LR_RANGES = {
    "sgd": (1e-3, 1.0), "gd": (1e-3, 1.0), "torch_sgd": (1e-3, 1.0), "sgd_momentum": (1e-4, 1e-1),
    "nesterov": (1e-4, 1e-1), "normalized_gd": (1e-3, 1.0), "block_normalized_gd": (1e-4, 1e-1),
    "signsgd": (1e-5, 1e-2), "signum": (1e-5, 1e-2), "sign_momentum": (1e-5, 1e-2),
    "adam": (1e-5, 1e-2), "adamw": (1e-5, 1e-2), "torch_adam": (1e-5, 1e-2), "torch_adamw": (1e-5, 1e-2),
    "block_adam": (1e-5, 1e-2), "rmsprop": (1e-5, 1e-2), "adagrad": (1e-4, 1e-1),
    "adam_fixed_precond": (1e-5, 1e-2),
}
_DEFAULT_LR_RANGE = (1e-5, 1e-1)


def lr_range(name: str) -> tuple[float, float]:
    """(lo, hi): the usual learning-rate range of optimizer ``name`` ((1e-5, 1e-1) for one not
    listed). A grid of n rates over it is ``heterosim.engine.lr_grid(lo, hi, num=n)``; where the
    bridge tunes over a single rate it takes the range's geometric centre sqrt(lo hi)."""
    return _LR_RANGES.get(name, _DEFAULT_LR_RANGE)


# ------------------------------------------------------------------------- models
def build_model(spec: dict, task: Task, seed: int = 0) -> nn.Module:
    """A fresh model for ``task`` from a spec dict (the same spec and seed give the same model):

    * ``{"model": "tiny", "ln": "post", "layers": 2, "d_model": 64, ...}``: a
      :class:`TinyTransformer` at init (fields of :class:`TinyConfig`; the task sets
      C, vocab_size / in_dim, max_len);
    * ``{"model": "checkpoint", "path": ...}``: a pretrained TinyTransformer with a fresh
      head for the task (drawn from ``seed``; ``"new_head": False`` keeps the stored one);
    * ``{"model": "minilm"}``: all-MiniLM-L6-v2 from the local package, fresh head;
    * ``{"model": "hf", "name": ...}``: any Hugging Face encoder (name or path).
    """
    spec = dict(spec)
    kind = spec.pop("model", "tiny")
    if kind == "tiny":
        kw = task.model_kwargs()
        kw.update(spec)
        kw["seed"] = seed
        return TinyTransformer(**kw)
    if kind == "checkpoint":
        if "path" not in spec:
            raise ValueError("a checkpoint model spec needs 'path'")
        path = spec.pop("path")
        new_head = spec.pop("new_head", True)
        model, _ = load_checkpoint(path, n_classes=task.n_classes, head_seed=seed, new_head=new_head, **spec)
        return model
    if kind == "minilm":
        from heterosim.bridge.hf import load_minilm
        return load_minilm(task.n_classes, seed=seed, **spec)[0]
    if kind == "hf":
        from heterosim.bridge.hf import load_hf_classifier
        name = spec.pop("name", None)
        if name is None:
            raise ValueError("an hf model spec needs 'name' (hub id or local path)")
        return load_hf_classifier(name, task.n_classes, seed=seed, **spec)[0]
    raise ValueError(f"unknown model kind {kind!r}; allowed: tiny, checkpoint, minilm, hf")


def model_label(model: nn.Module) -> dict:
    """Config columns describing a model: ``model``, ``ln``, ``layers``, ``d_model``, ``n_params``."""
    n_params = sum(p.numel() for p in model.parameters())
    if isinstance(model, TinyTransformer):
        c = model.config
        return dict(model=f"tiny-{c.ln}-L{c.layers}-d{c.d_model}", ln=c.ln, layers=c.layers, d_model=c.d_model,
                    n_params=n_params)
    cfg = getattr(getattr(model, "backbone", None), "config", None)
    return dict(model=getattr(model, "name", type(model).__name__), ln=getattr(model, "ln", "unknown"),
                layers=int(getattr(cfg, "num_hidden_layers", -1)) if cfg is not None else -1,
                d_model=int(getattr(cfg, "hidden_size", -1)) if cfg is not None else -1, n_params=n_params)


_PROVENANCE: dict | None = None


def provenance() -> dict:
    """``heterosim_version`` and ``git_rev`` (of the package's checkout, "unknown" if none)."""
    global _PROVENANCE
    if _PROVENANCE is None:
        rev = "unknown"
        try:
            out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(heterosim.__file__).parent,
                                 capture_output=True, text=True, timeout=5)
            if out.returncode == 0:
                rev = out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        _PROVENANCE = {"heterosim_version": heterosim.__version__, "git_rev": rev}
    return dict(_PROVENANCE)


# ----------------------------------------------------------------------- training
@torch.no_grad()
def evaluate(model: nn.Module, task: Task, split: str = "val", max_samples: int | None = 2048,
             batch_size: int = 256, device=None, dtype=None) -> dict:
    """Mean cross-entropy and accuracy on ``split`` (the first ``max_samples`` rows)."""
    n = task.n_train if split == "train" else int(task.y_val.shape[0])
    n = n if max_samples is None else min(n, max_samples)
    was = model.training
    model.eval()
    tot_loss, tot_acc = 0.0, 0.0
    for s in range(0, n, batch_size):
        idx = torch.arange(s, min(n, s + batch_size))
        x, m, y = task.batch(idx, split, device=device, dtype=dtype)
        z = model(x, m)
        tot_loss += float(F.cross_entropy(z.float(), y, reduction="sum"))
        tot_acc += float((z.argmax(-1) == y).sum())
    model.train(was)
    return {"loss": tot_loss / max(n, 1), "acc": tot_acc / max(n, 1)}


def _sync(dev: torch.device):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def finetune(model: nn.Module, task: Task, optimizer: str = "adam", lr: float = 1e-3, steps: int = 100,
             batch_size: int = 32, seed: int = 0, hyper: dict | None = None, clip: float | None = None,
             device=None, dtype: torch.dtype | None = None, monitor: bool = True, hessian_every: int = 0,
             hessian_kwargs: dict | None = None, hessian_batch: int = 64, eval_every: int = 0,
             eval_samples: int = 2048, diverge_factor: float = 50.0, progress: bool = True,
             tags: dict | None = None) -> pd.DataFrame:
    r"""Train ``model`` on ``task`` for ``steps`` minibatch steps; one row per step.

    ``optimizer``: a registered rule name or a torch reference (:func:`make_optimizer`),
    with ``hyper`` its hyperparameters and ``lr`` eta. ``clip``: clip the global gradient
    norm to this value before the step (``torch.nn.utils.clip_grad_norm_``; the monitors
    see the unclipped gradient). Minibatches come from ``task.batches(batch_size, seed)``.
    ``hessian_every`` k > 0: :func:`~heterosim.bridge.monitors.hessian_measures` on a fixed
    batch of ``hessian_batch`` training samples at steps 0, k, 2k, ... ``eval_every``:
    loss/accuracy on the validation set and on up to ``eval_samples`` training samples
    (the last step and step 0 are always evaluated). A run whose loss is not finite or
    exceeds ``diverge_factor`` times its first loss stops; its rows have ``diverged``
    True. ``tags``: extra config columns.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1; got steps={steps}, batch_size={batch_size}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None; got {clip}")
    hopt.validate_lr(lr, "lr")
    dev = default_device(device)
    torch.manual_seed(seed)
    model = model.to(dev) if dtype is None else model.to(device=dev, dtype=dtype)
    dtype = next(model.parameters()).dtype  # real-valued inputs are cast to the model's dtype
    model.train()
    hyper = dict(hyper or {})
    opt = make_optimizer(optimizer, model, lr, **hyper)
    mon = StepMonitor(model) if monitor else None
    stream = task.batches(batch_size, seed)
    config = dict(model_label(model), task=task.name, n_classes=task.n_classes, optimizer=optimizer, lr=float(lr),
                  seed=int(seed), batch_size=int(batch_size), clip=float(clip) if clip else float("nan"),
                  hyper=repr(sorted(hyper.items())), device=dev.type, dtype=str(next(model.parameters()).dtype))
    config.update(provenance())
    config.update(tags or {})
    hb = None
    if hessian_every:
        idx = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(seed + 7919))[:hessian_batch]
        hb = task.batch(idx, device=dev, dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]

    def extras(t: int, row: dict):
        if hb is not None and t % hessian_every == 0:
            t0 = time.perf_counter()
            row.update(hessian_measures(model, *hb, **(hessian_kwargs or {})))
            row["hessian_ms"] = 1e3 * (time.perf_counter() - t0)
        if t == 0 or t == steps or (eval_every and t % eval_every == 0):
            ev = evaluate(model, task, "val", device=dev, dtype=dtype)
            tr = evaluate(model, task, "train", max_samples=eval_samples, device=dev, dtype=dtype)
            row.update(val_loss=ev["loss"], val_acc=ev["acc"], train_loss_eval=tr["loss"], train_acc_eval=tr["acc"])

    rows = []
    row0 = dict(step=0)
    if mon is not None:
        row0.update(mon.after_step())
    extras(0, row0)
    rows.append(row0)
    first_loss, diverged = None, False
    bar = range(1, steps + 1)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(bar, desc=f"{optimizer} lr={lr:.2g}", leave=False)
    for t in bar:
        x, m, y = task.batch(next(stream), device=dev, dtype=dtype)
        _sync(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(x, m)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        lval = float(loss.detach())
        first_loss = lval if first_loss is None else first_loss
        if not math.isfinite(lval) or lval > diverge_factor * max(first_loss, 1e-12):
            diverged = True
            rows.append(dict(step=t, loss=lval))
            break
        _sync(dev)
        t1 = time.perf_counter()
        row = dict(step=t, loss=lval, acc=float((logits.detach().argmax(-1) == y).float().mean()))
        if mon is not None:
            row.update(mon.gradients(model))
            row.update(logit_stats(logits))
        _sync(dev)
        t2 = time.perf_counter()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        _sync(dev)
        t3 = time.perf_counter()
        if mon is not None:
            row.update(mon.after_step())
        _sync(dev)
        t4 = time.perf_counter()
        row.update(step_ms=1e3 * ((t1 - t0) + (t3 - t2)), monitor_ms=1e3 * ((t2 - t1) + (t4 - t3)))
        extras(t, row)
        rows.append(row)
        if progress and t % 10 == 0:
            bar.set_postfix(loss=f"{lval:.4g}")
    df = pd.DataFrame(rows)
    for k, v in config.items():
        df[k] = [v] * len(df)
    df["diverged"] = diverged
    df["steps"] = steps
    if mon is not None and mon.names is not None:
        df.attrs["block_names"] = list(mon.names)
        df.attrs["block_sizes"] = list(mon.sizes)
        df.attrs["head_shape"] = list(mon.head_shape)
    return df


# ------------------------------------------------------------------------- tuning
def _final(df: pd.DataFrame, col: str) -> float:
    if bool(df["diverged"].iloc[0]) or col not in df:
        return math.inf
    v = df[col].dropna()
    return float(v.iloc[-1]) if len(v) else math.inf


def tune_result(summary: pd.DataFrame, runs: pd.DataFrame, criterion: str = "train_loss_eval") -> TuneResult:
    """The :class:`~heterosim.engine.TuneResult` of a tuning from its tables: ``summary`` (one row
    per lr tried: ``lr``, ``final`` (the last ``criterion``, inf when diverged), ``diverged``) and
    ``runs``. The best lr is chosen by :func:`~heterosim.engine.select_lr` (smallest final, the
    first tried of ties; ``edge``: it is the smallest or largest of two or more rates); the summary
    gains the column ``best``. ``lrs``, ``scores`` (the finals) and ``diverged`` are ascending in lr."""
    lrs = summary["lr"].to_numpy(dtype=float)
    finals = summary["final"].to_numpy(dtype=float)
    i, edge = select_lr(lrs, finals, strict=False)
    best = float(summary["lr"].iloc[i])
    summary["best"] = summary["lr"] == best
    order = np.argsort(lrs, kind="stable")
    return TuneResult(lr=best, score=float(finals[i]), lrs=lrs[order], scores=finals[order], edge=edge,
                      diverged=summary["diverged"].to_numpy(dtype=float)[order], metric=criterion,
                      summary=summary, runs=runs)


def tune_lr(spec: dict, task: Task, optimizer: str, lrs: Sequence[float] | None = None, steps: int = 100,
            seed: int = 0, criterion: str = "train_loss_eval", **kwargs) -> TuneResult:
    """Run :func:`finetune` from the same fresh model (``build_model(spec, task, seed)``)
    at each learning rate and keep the one with the smallest final ``criterion``
    (the training loss on up to 2048 samples by default; diverged runs count as inf).
    ``lrs`` defaults to 4 rates over :func:`lr_range` (optimizer) (``heterosim.engine.lr_grid``).
    Returns a :class:`~heterosim.engine.TuneResult` (:func:`tune_result`): ``lr`` the best rate,
    ``edge``, ``summary`` (one row per lr) and ``runs`` (every step of every lr)."""
    lrs = [float(v) for v in lr_grid(*lr_range(optimizer), num=4)] if lrs is None else list(lrs)
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate")
    runs, summary = [], []
    for lr in lrs:
        df = finetune(build_model(spec, task, seed), task, optimizer=optimizer, lr=lr, steps=steps, seed=seed,
                      **kwargs)
        runs.append(df)
        summary.append(dict(optimizer=optimizer, lr=lr, final=_final(df, criterion),
                            val_acc=_final(df, "val_acc"), diverged=bool(df["diverged"].iloc[0])))
    return tune_result(pd.DataFrame(summary), pd.concat(runs, ignore_index=True), criterion)


# --------------------------------------------------------------------- pretraining
def pretrain(task: Task, out, steps: int = 500, optimizer: str = "adam", lr: float = 1e-3, batch_size: int = 64,
             seed: int = 0, device=None, progress: bool = True, **model_kwargs) -> tuple[Path, pd.DataFrame]:
    """Short pretraining of a fresh :class:`TinyTransformer` on ``task``; saves a checkpoint
    at ``out`` and returns (path, training table). ``model_kwargs``: :class:`TinyConfig`
    fields (ln, layers, d_model, heads, ...); the task fixes C and the input size."""
    kw = task.model_kwargs()
    kw.update(model_kwargs)
    kw["seed"] = seed
    model = TinyTransformer(TinyConfig(**kw))
    df = finetune(model, task, optimizer=optimizer, lr=lr, steps=steps, batch_size=batch_size, seed=seed,
                  device=device, progress=progress, monitor=False, tags={"phase": "pretrain"})
    info = dict(task=task.name, task_info={k: v for k, v in task.info.items() if k != "pi"}, steps=steps,
                optimizer=optimizer, lr=lr, final_train_loss=_final(df, "train_loss_eval"),
                final_val_acc=_final(df, "val_acc"))
    path = save_checkpoint(out, model.cpu(), info=info)
    return path, df
