"""C1: matched pairs side by side (GD vs Adam(beta1=0), heavy ball vs Adam, SignGD vs Signum):
tuned T*(eps) against the block-scale spread, one row per (basis, gamma).

Reads results/c1_block_scale/ (run `heterosim sweep experiments/c1_block_scale.py` first), writes
paper_figs/out/c1_block_scale.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c1_block_scale.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C1", DEFAULT_OUT))
