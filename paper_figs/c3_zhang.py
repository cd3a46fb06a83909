"""C3: matched pairs side by side (GD vs Adam(beta1=0), heavy ball vs Adam, SignGD vs Signum):
tuned T* on the four Zhang et al. cases, one row per basis, with the hetero/homo gap ratios.

Reads results/c3_zhang/ (run `heterosim sweep experiments/c3_zhang.py` first), writes
paper_figs/out/c3_zhang.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c3_zhang.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C3", DEFAULT_OUT))
