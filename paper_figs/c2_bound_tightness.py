"""C2: measured T(eps), the worst start on each instance's spectrum and the worst case over the
bound's function class (PEPit), against each bound, one panel per bound family.

Reads results/c2_bound_tightness/ (run `heterosim sweep experiments/c2_bound_tightness.py` first), writes
paper_figs/out/c2_bound_tightness.png and .pdf, and prints the claim's verdict with its statistic.

    python paper_figs/c2_bound_tightness.py [--root results] [--out paper_figs/out] [--quick]
"""
import sys
from pathlib import Path

from heterosim.claims.cli import figure_script

DEFAULT_OUT = Path(__file__).resolve().parent / "out"

if __name__ == "__main__":
    sys.exit(figure_script("C2", DEFAULT_OUT))
