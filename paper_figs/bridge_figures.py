"""Figures of the bridge studies (docs/theory.md C6-C8) from the results store to paper_figs/figures/.

    python paper_figs/bridge_figures.py [--results results] [--out paper_figs/figures] [--only c7_init c6 ...]

Each figure reads its study from the results store (``heterosim.sweep.load``; run
experiments/bridge_*.py or ``heterosim bridge ...`` first) and draws the most recently
computed set of options (``--config HASH`` picks another one), and is skipped with a note
when that study has no results yet.
"""
import argparse
import sys
from pathlib import Path

from heterosim.bridge import figures as bf
from heterosim.sweep import load

FIGURES = {
    "c7_init": ("bridge_init_spread", bf.init_spread_figure, "bridge_c7_init_spread"),
    "c7_finetune": ("bridge_spread_finetune", bf.spread_finetune_figure, "bridge_c7_spread_finetune"),
    "c6": ("bridge_head_growth", bf.head_growth_figure, "bridge_c6_head_growth"),
    "c8": ("bridge_gap", bf.gap_figure, "bridge_c8_gap"),
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
    p.add_argument("--results", default="results", help="results root (default results)")
    p.add_argument("--out", default="paper_figs/figures", help="figure folder (default paper_figs/figures)")
    p.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=sorted(FIGURES))
    p.add_argument("--formats", nargs="+", default=["png", "pdf"])
    p.add_argument("--config", default=None, help="config hash (or prefix) to draw, with a single --only")
    args = p.parse_args(argv)
    if args.config and len(args.only) != 1:
        p.error("--config names one study's config: give a single --only")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for key in args.only:
        study, fn, name = FIGURES[key]
        try:
            table = latest_config(study, args.results, args.config)
        except ValueError as e:
            print(f"{key}: skipped ({e})")
            continue
        fig = fn(table)
        for fmt in args.formats:
            fig.savefig(out / f"{name}.{fmt}", dpi=130)
        print(f"{key}: {out / name}.{{{','.join(args.formats)}}} (config {table['config_hash'].iloc[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
