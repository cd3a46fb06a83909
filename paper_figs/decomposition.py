"""Hessian-only vs gradient-only heterogeneity: tuned T* against the spread.

Reads results/decomposition/ (run `heterosim sweep experiments/decomposition.py` first), writes
paper_figs/out/decomposition.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/decomposition.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.plots import figure_script

if __name__ == "__main__":
    sys.exit(figure_script("decomposition", Path(__file__).resolve().parent / "out"))
