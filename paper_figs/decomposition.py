"""Hessian-only vs gradient-only heterogeneity: tuned T* against the spread, one column per
problem, one row per matched pair.

Reads results/decomposition/ (run `heterosim sweep experiments/decomposition.py` first), writes
paper_figs/out/decomposition.png and .pdf, and prints the verdict with its statistic.

    python paper_figs/decomposition.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("decomposition", DEFAULT_OUT))
