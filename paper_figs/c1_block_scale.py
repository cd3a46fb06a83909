"""C1: tuned T*(eps) against the block-scale spread per optimizer and gamma, Q1/Q2 bounds dashed.

Reads results/c1_block_scale/ (run `heterosim sweep experiments/c1_block_scale.py` first), writes
paper_figs/out/c1_block_scale.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c1_block_scale.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.plots import figure_script

if __name__ == "__main__":
    sys.exit(figure_script("c1_block_scale", Path(__file__).resolve().parent / "out"))
