"""C4: loss per class-frequency group on Kunstner's heavy-tailed softmax data.

Reads results/c4_class_imbalance/ (run `heterosim sweep experiments/c4_class_imbalance.py` first), writes
paper_figs/out/c4_class_imbalance.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c4_class_imbalance.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.plots import figure_script

if __name__ == "__main__":
    sys.exit(figure_script("c4_class_imbalance", Path(__file__).resolve().parent / "out"))
