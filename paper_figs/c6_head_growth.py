"""C6: linear-head growth ||W_t - W_0||_F / (eta t sqrt(C h)) under SignSGD, Signum and Adam, by
class count, feature mean and batch size, with the held-out ECE and NLL it costs.

Reads results/c6_head_growth/ (run `heterosim sweep experiments/c6_head_growth.py` first), writes
paper_figs/out/c6_head_growth.png and .pdf, and prints the claim's verdict.

    python paper_figs/c6_head_growth.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C6", DEFAULT_OUT))
