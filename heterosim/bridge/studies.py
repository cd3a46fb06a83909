r"""The bridge studies (docs/theory.md C6-C8), each a function returning a tidy table.

* :func:`init_spread` (C7): Pre-LN vs Post-LN gradient-norm spread at initialization
  over depth L and width d, with the last layer's FFN gradient ||dL/dW^{2,L}||_F beside
  Xiong et al. 2020's trend (Thm 1 and Thm 2, Xavier init): O(d sqrt(ln d)) for Post-LN
  whatever L, O(d sqrt(ln d / L)) for Pre-LN. :func:`spread_along_finetune` follows the
  spread along fine-tuning.
* :func:`head_growth` (C6): the linear head's distance from its start under SignSGD,
  Signum, Adam and SGD for C classes, beside the sign-method bound
  ||W_t - W_0||_F <= eta t sqrt(C h) (every entry moves by exactly eta per step).
* :func:`gap` (C8): per model and placement, heterogeneity at the start of
  fine-tuning (gradient-norm spread, block top-eigenvalue spread, JS0) beside the
  SGD-vs-Adam gap after fine-tuning with tuned learning rates.

"Fine-tuning" of the compact model starts from a short pretraining in the package
(:func:`heterosim.bridge.train.pretrain`) on another task, not from a pretrained
language model; MiniLM is a real pretrained model.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from heterosim.bridge.data import Task, digits_task, docstrings_task, synthetic_task
from heterosim.bridge.models import TinyTransformer
from heterosim.bridge.monitors import StepMonitor, hessian_measures
from heterosim.bridge.train import (build_model, default_device, finetune, lr_range, model_label, pretrain,
                                    provenance, tune_lr, tune_result)
from heterosim.engine import TuneResult, lr_grid, select_lr

__all__ = ["xiong_last_layer_trend", "init_spread", "spread_along_finetune", "head_growth", "gap", "tune_extending",
           "offline_task", "transfer_tasks", "pretrained_tiny", "fit_loglog"]


def xiong_last_layer_trend(ln: str, d: int, L: int) -> float:
    r"""Xiong et al. 2020's order of ||dL/dW^{2,L}||_F at Xavier init, constants dropped:
    d sqrt(ln d) for Post-LN (Thm 1), d sqrt(ln d / L) for Pre-LN (Thm 2)."""
    if ln not in ("pre", "post") or d < 2 or L < 1:
        raise ValueError(f"need ln in ('pre', 'post'), d >= 2, L >= 1; got {ln!r}, {d}, {L}")
    return d * math.sqrt(math.log(d) / (L if ln == "pre" else 1))


def fit_loglog(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x (the exponent of a power law)."""
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("need at least two distinct x values to fit a slope")
    return float(np.polyfit(x, y, 1)[0])


def offline_task(name: str, n_classes: int | None = None, seed: int = 0, **kw) -> Task:
    """The offline tasks by short name: ``digits`` (4x4 patches), ``docstrings`` (C modules),
    ``synthetic`` (C classes)."""
    if name == "digits":
        return digits_task(patch=kw.pop("patch", 4), seed=seed, **kw)
    if name == "docstrings":
        return docstrings_task(n_classes=n_classes or 10, seed=seed, **kw)
    if name == "synthetic":
        return synthetic_task(n_classes=n_classes or 100, seed=seed, **kw)
    raise ValueError(f"unknown offline task {name!r}; allowed: digits, docstrings, synthetic")


def transfer_tasks(name: str, n_classes: int | None = None, max_len: int = 32, seed: int = 0,
                   **kw) -> tuple[Task, Task]:
    """(pretraining task, fine-tuning task) on the same inputs with disjoint classes:

    * ``digits``: digits 0-4, then digits 5-9 (4x4 patches);
    * ``docstrings``: C modules after the first C, then the first C (one vocabulary,
      fitted on the pretraining texts);
    * ``synthetic``: 50 classes with other prototypes (seed + 1), then C classes.
    """
    if name == "digits":
        return digits_task(classes=[0, 1, 2, 3, 4], seed=seed), digits_task(classes=[5, 6, 7, 8, 9], seed=seed)
    if name == "docstrings":
        C = n_classes or 10
        pre = docstrings_task(n_classes=C, class_offset=C, max_len=max_len, seed=seed, **kw)
        return pre, docstrings_task(n_classes=C, tokenizer=pre.tokenizer, max_len=max_len, seed=seed, **kw)
    if name == "synthetic":
        kw.setdefault("n_train", 4096)
        return (synthetic_task(n_classes=50, seed=seed + 1, **kw),
                synthetic_task(n_classes=n_classes or 100, seed=seed, **kw))
    raise ValueError(f"unknown offline task {name!r}; allowed: digits, docstrings, synthetic")


def _heads(d: int) -> int:
    return max(1, d // 32) if d % max(1, d // 32) == 0 else 1


# --------------------------------------------------------------------------- C7
def init_spread(depths: Sequence[int] = (1, 2, 4, 8), widths: Sequence[int] = (32, 64, 128),
                lns: Sequence[str] = ("pre", "post"), seeds: Sequence[int] = (0, 1, 2), task: Task | None = None,
                init: str = "xavier", batch_size: int = 64, device=None, dtype=torch.float32,
                progress: bool = True) -> pd.DataFrame:
    r"""Gradient heterogeneity at initialization, one row per (ln, L, d, seed).

    The gradient of the mean cross-entropy on the first ``batch_size`` training samples of
    ``task`` (default: digits as 4x4 patches) at a fresh :class:`TinyTransformer`
    (``init`` "xavier" as in Xiong et al., or "normal"). Columns: the spread statistics
    of :class:`~heterosim.bridge.monitors.StepMonitor` (``std_log10_rms``, the headline,
    ``max_min_ratio``, ``cv_rms``, ``gini_rms``), ``last_ffn_grad`` = ||dL/dW^{2,L}||_F,
    ``xiong_trend`` (:func:`xiong_last_layer_trend`), ``block_grad_norms`` and
    ``block_names``.
    """
    task = task or digits_task(patch=4)
    dev = default_device(device)
    x, m, y = task.batch(torch.arange(min(batch_size, task.n_train)), device=dev, dtype=dtype)
    combos = [(ln, L, d, s) for L in depths for d in widths for ln in lns for s in seeds]
    if progress:
        from tqdm.auto import tqdm
        combos = tqdm(combos, desc="init-spread", leave=False)
    rows = []
    for ln, L, d, s in combos:
        model = TinyTransformer(ln=ln, layers=int(L), d_model=int(d), heads=_heads(int(d)), init=init, seed=int(s),
                                **task.model_kwargs()).to(device=dev, dtype=dtype)
        mon = StepMonitor(model)
        loss = F.cross_entropy(model(x, m), y)
        loss.backward()
        g = mon.gradients(model)
        norms = dict(zip(mon.names, g["block_grad_norms"]))
        rows.append(dict(ln=ln, layers=int(L), d_model=int(d), seed=int(s), init=init, task=task.name,
                         loss=float(loss.detach()), last_ffn_grad=norms[model.last_layer_ffn()],
                         xiong_trend=xiong_last_layer_trend(ln, int(d), int(L)),
                         block_names=list(mon.names), n_params=model.n_params(), device=dev.type,
                         **{k: v for k, v in g.items()}))
    df = pd.DataFrame(rows)
    for k, v in provenance().items():
        df[k] = v
    return df


def spread_along_finetune(specs: dict[str, dict], task: Task, optimizer: str = "adam", lr: float = 1e-3,
                          steps: int = 300, seeds: Sequence[int] = (0,), **kwargs) -> pd.DataFrame:
    """The per-step table of :func:`~heterosim.bridge.train.finetune` for each placement:
    ``specs`` maps "pre"/"post" to a model spec (e.g. checkpoints of the same architecture
    pretrained with each placement, see :func:`pretrained_tiny`)."""
    out = []
    for ln, spec in specs.items():
        for s in seeds:
            df = finetune(build_model(spec, task, s), task, optimizer=optimizer, lr=lr, steps=steps, seed=s,
                          tags={"study": "spread_along_finetune", "start": spec.get("model", "tiny")}, **kwargs)
            if df["ln"].iloc[0] != ln:
                raise ValueError(f"spec for {ln!r} built a {df['ln'].iloc[0]}-LN model")
            out.append(df)
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------- C6
DEFAULT_HEAD_LRS = {"signsgd": 1e-3, "signum": 1e-3, "adam": 1e-3, "sgd": 1e-1}


def head_growth(classes: Sequence[int] = (10, 100, 1000), optimizers: Sequence[str] = ("signsgd", "signum", "adam", "sgd"),
                lrs: dict | None = None, spec: dict | None = None, steps: int = 300, batch_size: int = 32,
                seeds: Sequence[int] = (0,), task_kwargs: dict | None = None, device=None, progress: bool = True,
                record_every: int = 1) -> pd.DataFrame:
    r"""Linear-head growth during fine-tuning on a synthetic C-class task (docs/theory.md C6).

    For each C, :func:`~heterosim.bridge.data.synthetic_task` (non-centred tokens,
    ``feature_mean`` 1 by default; ``task_kwargs`` override) and each optimizer at its
    learning rate (``lrs``, default :data:`DEFAULT_HEAD_LRS`), fine-tune the model of
    ``spec`` (default a 2-layer, 32-wide Pre-LN TinyTransformer at init; pass a checkpoint
    spec to start from a pretraining) and record per step ``head_dist`` =
    ||W_t - W_0||_F, ``bound`` = eta t sqrt(C h) and ``ratio`` = head_dist / bound
    (<= 1 for sign methods; for Adam and SGD only a yardstick), every ``record_every``
    steps.
    """
    lrs = {**DEFAULT_HEAD_LRS, **(lrs or {})}
    spec = spec or {"model": "tiny", "ln": "pre", "layers": 2, "d_model": 32, "heads": 2}
    out = []
    for C in classes:
        tk = dict(n_train=max(4096, 4 * int(C)), n_val=512, feature_mean=1.0)
        tk.update(task_kwargs or {})
        task = synthetic_task(n_classes=int(C), seed=0, **tk)
        for opt in optimizers:
            if opt not in lrs:
                raise ValueError(f"no learning rate for {opt!r}; pass lrs={{'{opt}': ...}}")
            for s in seeds:
                df = finetune(build_model(spec, task, s), task, optimizer=opt, lr=lrs[opt], steps=steps,
                              batch_size=batch_size, seed=s, device=device, progress=progress,
                              eval_samples=512, tags={"study": "head_growth", "feature_mean": tk["feature_mean"]})
                Cc, h = df.attrs["head_shape"]
                df["head_h"] = h
                df["bound"] = lrs[opt] * df["step"] * math.sqrt(Cc * h)
                df["ratio"] = np.where(df["step"] > 0, df["head_dist"] / df["bound"].where(df["bound"] > 0), np.nan)
                if record_every > 1:
                    df = df[(df["step"] % record_every == 0) | (df["step"] == df["step"].max())]
                out.append(df.drop(columns=["block_grad_norms"], errors="ignore"))
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------- C8
def _start_batch(task: Task, batch: int, device, dtype):
    idx = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(12345))[:batch]
    return task.batch(idx, device=device, dtype=dtype)


def _start_heterogeneity(model, task: Task, batch: int, device, hessian: bool, hessian_kwargs: dict | None) -> dict:
    """The gradient measures (``start_std_log10_rms``, ...) and, with ``hessian``, the block
    Hessian measures (:func:`_start_hessian`) at ``model`` on a fixed batch of ``batch``
    training samples (the same batch for every model and seed of a task)."""
    dev = default_device(device)
    model = model.to(dev)
    dtype = next(model.parameters()).dtype
    x, m, y = _start_batch(task, batch, dev, dtype)
    mon = StepMonitor(model)
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x, m), y).backward()
    g = mon.gradients(model)
    model.zero_grad(set_to_none=True)
    out = {f"start_{k}": v for k, v in g.items() if k != "block_grad_norms"}
    if hessian:
        out.update(_start_hessian(model, task, batch, device, hessian_kwargs))
    return out


def _start_hessian(model, task: Task, batch: int, device, hessian_kwargs: dict | None) -> dict:
    """``start_js0`` (Zhang et al.'s smoothing), ``start_js0_symlog``, ``start_top_eig_ratio`` and
    ``start_top_eig_std_log10`` (std over blocks of log10 lambda_max(H_bb), decades)."""
    dev = default_device(device)
    model = model.to(dev)
    x, m, y = _start_batch(task, batch, dev, next(model.parameters()).dtype)
    hm = hessian_measures(model, x, m, y, **(hessian_kwargs or {}))
    return dict(start_js0=hm.get("js0", float("nan")), start_js0_symlog=hm.get("js0_symlog", float("nan")),
                start_top_eig_ratio=hm["top_eig_max_min_ratio"],
                start_top_eig_std_log10=float(np.std(np.log10([v for v in hm["block_top_eig"] if v > 0]))))


def gap(models: dict[str, tuple[dict, Task]], optimizers: Sequence[str] = ("sgd", "adam"),
        lrs: dict | None = None, n_lrs: int = 4, steps: int = 200, batch_size: int = 32, seeds: Sequence[int] = (0,),
        hessian: bool = True, hessian_kwargs: dict | None = None, hessian_batch: int = 32, device=None,
        progress: bool = True, tune_first_seed: bool = False, hessian_first_seed: bool = False,
        extend_edges: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    r"""Heterogeneity against the SGD-vs-Adam gap (docs/theory.md C8).

    ``models``: label -> (model spec, task) (the task is per model because tokenizers
    differ). For each model: the heterogeneity measures at the start of fine-tuning
    (``start_std_log10_rms`` etc. of the gradient on a fixed batch; with ``hessian``,
    ``start_js0`` and the spread of block top eigenvalues), then each optimizer tuned
    over ``lrs[opt]`` (default: :func:`heterosim.engine.lr_grid` of ``n_lrs`` rates over
    :func:`~heterosim.bridge.train.lr_range` (opt); for one rate, the range's geometric centre)
    by the final training loss. Returns (summary, runs): summary has one row per (model, seed)
    with ``loss_<opt>``, ``lr_<opt>``, ``edge_<opt>``, ``val_acc_<opt>`` and ``gap`` = loss_sgd /
    loss_adam (first two optimizers), ``log10_gap``; runs is every step of the best run of each
    optimizer.

    ``tune_first_seed``: tune each optimizer's learning rate on the first seed only and run
    the later seeds at that rate (``tuned_on_seed`` says which seed tuned a row's rates;
    ``edge_<opt>`` is the tuning's). ``hessian_first_seed``: take the block Hessian measures
    at the first seed's start only and give the later seeds the same values
    (``hessian_seed``); the seeds of one model share its body and differ in the fresh
    head's draw and the batch order, and the Hessian measures are the expensive ones.
    ``extend_edges`` k: when a tuned rate is the smallest or largest of its grid, try the
    next rate beyond that edge (one grid step, the ratio of the grid's first two rates), up
    to k times (:func:`tune_extending`); ``edge_<opt>`` is then whether the final best rate
    is still on the edge of the rates tried.
    """
    if len(optimizers) < 2:
        raise ValueError("gap needs at least two optimizers (the first is compared with the second)")
    rows, runs = [], []
    seeds = [int(s) for s in seeds]
    for label, (spec, task) in models.items():
        tuned: dict[str, tuple[float, bool]] = {}
        first_hessian: dict = {}
        for s in seeds:
            row = dict(label=label, seed=int(s), task=task.name, n_classes=task.n_classes, steps=steps)
            model = build_model(spec, task, s)
            row.update(model_label(model))
            reuse = hessian and hessian_first_seed and s != seeds[0]
            row.update(_start_heterogeneity(model, task, hessian_batch, device, hessian and not reuse,
                                            hessian_kwargs))
            if hessian:
                if not reuse:
                    first_hessian = {k: v for k, v in row.items() if k in _HESSIAN_COLUMNS}
                row.update(first_hessian)
                row["hessian_seed"] = seeds[0] if hessian_first_seed else int(s)
            del model
            for opt in optimizers:
                if tune_first_seed and s != seeds[0]:
                    grid = [tuned[opt][0]]
                else:
                    grid = (lrs or {}).get(opt)
                    if not grid:  # n_lrs rates over the optimizer's usual range (one rate: its centre)
                        lo, hi = lr_range(opt)
                        grid = ([math.sqrt(lo * hi)] if n_lrs == 1
                                else [float(v) for v in lr_grid(lo, hi, num=n_lrs)])
                res = tune_extending(spec, task, opt, grid, 0 if len(grid) < 2 else extend_edges, steps=steps,
                                     seed=s, batch_size=batch_size, device=device, progress=progress,
                                     tags={"study": "gap", "label": label})
                if not (tune_first_seed and s != seeds[0]):
                    tuned[opt] = (float(res.lr), bool(res.edge))
                best = res.summary[res.summary["best"]].iloc[0]
                row[f"loss_{opt}"] = float(best["final"])
                row[f"lr_{opt}"] = float(best["lr"])
                row[f"edge_{opt}"] = tuned[opt][1] if tune_first_seed else bool(res.edge)
                row[f"val_acc_{opt}"] = float(best["val_acc"])
                r = res.runs[res.runs["lr"] == res.lr].drop(columns=["block_grad_norms"], errors="ignore")
                runs.append(r)
            row["tuned_on_seed"] = seeds[0] if tune_first_seed else int(s)
            a, b = optimizers[0], optimizers[1]
            row["gap"] = row[f"loss_{a}"] / row[f"loss_{b}"] if row[f"loss_{b}"] > 0 else float("inf")
            row["log10_gap"] = math.log10(row["gap"]) if 0 < row["gap"] < float("inf") else float("nan")
            rows.append(row)
    summary = pd.DataFrame(rows)
    for k, v in provenance().items():
        summary[k] = v
    return summary, pd.concat(runs, ignore_index=True)


def tune_extending(spec: dict, task: Task, optimizer: str, lrs: Sequence[float], extend: int = 0,
                   **kwargs) -> TuneResult:
    """:func:`~heterosim.bridge.train.tune_lr` over ``lrs``; then, while the best rate is the
    smallest (largest) rate tried and fewer than ``extend`` rates were added, one more run
    at that rate divided (multiplied) by the grid step lrs[1] / lrs[0] (sorted). The result
    covers every rate tried; ``edge`` refers to them all. Ties go to the first rate tried."""
    res = tune_lr(spec, task, optimizer, lrs, **kwargs)
    order = sorted(float(v) for v in lrs)
    if extend <= 0 or len(order) < 2:
        return res
    ratio = order[1] / order[0]
    summary, runs = res.summary.drop(columns="best"), [res.runs]
    for _ in range(extend):
        i, edge = select_lr(summary["lr"], summary["final"], strict=False)
        if not edge:
            break
        best, lo, hi = float(summary["lr"].iloc[i]), float(summary["lr"].min()), float(summary["lr"].max())
        more = tune_lr(spec, task, optimizer, [lo / ratio if best == lo else hi * ratio], **kwargs)
        summary = pd.concat([summary, more.summary.drop(columns="best")], ignore_index=True)
        runs.append(more.runs)
    return tune_result(summary, pd.concat(runs, ignore_index=True), kwargs.get("criterion", "train_loss_eval"))


_HESSIAN_COLUMNS = ("start_js0", "start_js0_symlog", "start_top_eig_ratio", "start_top_eig_std_log10")


def pretrained_tiny(task: Task, out: str | Path, ln: str, layers: int, d_model: int, steps: int, seed: int = 0,
                    device=None, progress: bool = True, **kw) -> dict:
    """Pretrain a TinyTransformer on ``task`` (or reuse the checkpoint at ``out`` if it is
    there) and return the checkpoint model spec."""
    out = Path(out)
    if not out.is_file():
        pretrain(task, out, steps=steps, seed=seed, device=device, progress=progress, ln=ln, layers=layers,
                 d_model=d_model, heads=_heads(d_model), **kw)
    return {"model": "checkpoint", "path": str(out)}
