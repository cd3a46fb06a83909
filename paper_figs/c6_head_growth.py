"""C6: linear-head growth ||W_t - W_0||_F of SignSGD, Signum and Adam against eta t sqrt(C h).

Reads results/c6_head_growth/ (run `heterosim sweep experiments/c6_head_growth.py` first), writes
paper_figs/out/c6_head_growth.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c6_head_growth.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.plots import figure_script

if __name__ == "__main__":
    sys.exit(figure_script("c6_head_growth", Path(__file__).resolve().parent / "out"))
