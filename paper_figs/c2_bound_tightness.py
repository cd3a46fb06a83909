"""C2: measured iterations against their bounds (B1-B5, Q1-Q3, S1) over random instances.

Reads results/c2_bound_tightness/ (run `heterosim sweep experiments/c2_bound_tightness.py` first), writes
paper_figs/out/c2_bound_tightness.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c2_bound_tightness.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.plots import figure_script

if __name__ == "__main__":
    sys.exit(figure_script("c2_bound_tightness", Path(__file__).resolve().parent / "out"))
