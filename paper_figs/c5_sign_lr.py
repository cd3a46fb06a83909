"""C5: SignGD's tuned learning rate against d (axis-aligned and rotated), eps/L_inf dashed.

Reads results/c5_sign_lr/ (run `heterosim sweep experiments/c5_sign_lr.py` first), writes
paper_figs/out/c5_sign_lr.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c5_sign_lr.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C5", DEFAULT_OUT))
