"""C9: the primary GD/Adam(beta1=0) gap against each candidate predictor, Spearman with CI.

Reads results/c9_zhang_mechanism/ (run `heterosim sweep experiments/c9_zhang_mechanism.py` first), writes
paper_figs/out/c9_zhang_mechanism.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c9_zhang_mechanism.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C9", DEFAULT_OUT))
