"""C2: every measured T(eps) against its bound over random block quadratics, beside the exact worst
start on the instance's spectrum and the exact worst case over the bound's function class
(heterosim.claims.c2_bound_tightness holds the grid, measure, criterion and its history).

Each instance (2-6 blocks of 2-12 coordinates, random scales, condition numbers, rotations and
initial errors) runs GD, SignGD, steepest l_inf descent, block-wise GD, Adam (beta1 = 0), GD on
quadratics, the fixed Adam preconditioner, heavy ball and noisy SGD at the steps their bounds
prescribe (B1-B5, A1, Q1-Q3, Q5, S1), every check through heterosim.verify.check_bound. Full grid:
32 instances, about 15-25 minutes on one core.

    heterosim sweep experiments/c2_bound_tightness.py [-j N] [--quick]
    python experiments/c2_bound_tightness.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C2"   # study, grid, measure and criterion: heterosim.claims.c2_bound_tightness

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
