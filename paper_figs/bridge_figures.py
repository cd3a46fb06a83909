"""Figures of the bridge studies (docs/theory.md C6-C8) from the results store to paper_figs/out/.

    python paper_figs/bridge_figures.py [--root results] [--out paper_figs/out] [--only c7_init c8 ...]
                                        [--size cpu|gpu]

C7 at initialization and C8 are drawn by their claims' figure functions
(heterosim/claims/c7_ln_spread.py, c8_transformer_gap.py) from the rows of the grid of
``--size`` (the configs their criteria read), and their verdicts are printed beside; C7
along fine-tuning and C6 in a transformer draw the most recently computed config of their
study (``--config HASH`` picks another one). Each figure is written as PNG (150 dpi) and PDF,
and is skipped with a note when its study has no results yet (run experiments/bridge_*.py
or ``heterosim bridge ...`` first).
"""
import argparse
import sys
from pathlib import Path

from heterosim import plots
from heterosim.bridge import figures as bf
from heterosim.claims import c7_ln_spread as c7
from heterosim.claims import c8_transformer_gap as c8
from heterosim.sweep import load

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
#: key -> (study, figure(table, size), file name, criterion(table, size) or None, whole table?)
FIGURES = {
    "c7_init": ("bridge_init_spread", c7.figure, "bridge_c7_init_spread", c7.criterion, True),
    "c7_finetune": ("bridge_spread_finetune", lambda t, size: c7.finetune_figure(t), "bridge_c7_spread_finetune",
                    None, False),
    "c6": ("bridge_head_growth", lambda t, size: bf.head_growth_figure(t), "bridge_c6_head_growth", None, False),
    "c8": ("bridge_gap", c8.figure, "bridge_c8_gap", c8.criterion, True),
}


def latest_config(study: str, root, config: str | None = None):
    """The stored rows (status ok) of one config of ``study``: ``config`` (a config hash or
    its prefix) or, by default, the one whose rows were written last."""
    table = load(study, root, ok_only=True)
    if table.empty:
        raise ValueError(f"{study} holds only failed configs under {root}")
    if config is None:
        config = table.loc[table["time"].idxmax(), "config_hash"]
    rows = table[table["config_hash"].str.startswith(config)]
    if rows["config_hash"].nunique() != 1:
        raise ValueError(f"--config {config!r} matches {rows['config_hash'].nunique()} configs of {study}; "
                         f"stored: {', '.join(table['config_hash'].unique())}")
    return rows.reset_index(drop=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", "--results", dest="root", default="results", help="results root (default results)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"figure folder (default {DEFAULT_OUT})")
    p.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=sorted(FIGURES))
    p.add_argument("--size", choices=["cpu", "gpu"], default="cpu", help="the grid C7 and C8 read (default cpu)")
    p.add_argument("--config", default=None, help="config hash (or prefix) to draw, with a single --only "
                                                  "(c6 or c7_finetune)")
    args = p.parse_args(argv)
    if args.config and (len(args.only) != 1 or FIGURES[args.only[0]][4]):
        p.error("--config names one study's config: give a single --only of c6 or c7_finetune")
    for key in args.only:
        study, fn, name, crit, whole = FIGURES[key]
        try:
            table = load(study, args.root) if whole else latest_config(study, args.root, args.config)
        except ValueError as e:
            print(f"{key}: skipped ({e})")
            continue
        fig = fn(table, args.size)
        stem = name if args.size == "cpu" else name.replace("bridge_", "bridge_gpu_")
        paths = plots.save(fig, args.out, stem)
        print(f"{key}: {', '.join(str(q) for q in paths)}")
        if crit is not None:
            print(crit(table, args.size))
        elif key == "c7_finetune":
            print(c7.finetune_summary(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
