"""C3: tuned T* of GD, Adam and others on the four Zhang et al. cases.

Reads results/c3_zhang/ (run `heterosim sweep experiments/c3_zhang.py` first), writes
paper_figs/out/c3_zhang.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c3_zhang.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.plots import figure_script

if __name__ == "__main__":
    sys.exit(figure_script("c3_zhang", Path(__file__).resolve().parent / "out"))
