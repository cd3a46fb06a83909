"""Figures of the bridge studies (THEORY.md C6-C8) from results/bridge_*/ to paper_figs/figures/.

    python paper_figs/bridge_figures.py [--results results] [--out paper_figs/figures] [--only c7_init c6 ...]

Each figure reads the most recent table of its study (run experiments/bridge_*.py first)
and is skipped with a note when that study has no results yet.
"""
import argparse
import sys
from pathlib import Path

from heterosim.bridge import figures as bf

FIGURES = {
    "c7_init": ("bridge_init_spread", "*.parquet", bf.init_spread_figure, "bridge_c7_init_spread"),
    "c7_finetune": ("bridge_spread_finetune", "*.parquet", bf.spread_finetune_figure, "bridge_c7_spread_finetune"),
    "c6": ("bridge_head_growth", "*.parquet", bf.head_growth_figure, "bridge_c6_head_growth"),
    "c8": ("bridge_gap", "*.parquet", bf.gap_figure, "bridge_c8_gap"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="paper_figs/figures")
    p.add_argument("--only", nargs="+", choices=sorted(FIGURES), default=sorted(FIGURES))
    p.add_argument("--formats", nargs="+", default=["png", "pdf"])
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for key in args.only:
        study, pattern, fn, name = FIGURES[key]
        try:
            table = bf.latest_table(Path(args.results) / study, pattern)
        except ValueError as e:
            print(f"{key}: skipped ({e})")
            continue
        fig = fn(table)
        for fmt in args.formats:
            fig.savefig(out / f"{name}.{fmt}", dpi=130)
        print(f"{key}: {out / name}.{{{','.join(args.formats)}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
