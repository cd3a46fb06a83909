"""C4: the rare classes' share of the loss at equal total loss on Kunstner's heavy-tailed data.

Reads results/c4_class_imbalance/ (run `heterosim sweep experiments/c4_class_imbalance.py` first),
writes paper_figs/out/c4_class_imbalance.png and .pdf, and prints the claim's verdict.

    python paper_figs/c4_class_imbalance.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C4", DEFAULT_OUT))
