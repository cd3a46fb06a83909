"""C10: measured sign/GD decrease ratio against the predicted one, and the agreement per family.

Reads results/c10_sign_vs_gd/ (run `heterosim sweep experiments/c10_sign_vs_gd.py` first), writes
paper_figs/out/c10_sign_vs_gd.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c10_sign_vs_gd.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C10", DEFAULT_OUT))
