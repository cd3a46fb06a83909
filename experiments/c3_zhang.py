"""C3: Zhang et al.'s block-diagonal cases, read through momentum-matched pairs
(heterosim.claims.c3_zhang holds the grid, measure, criterion and its history).

Four cases with condition number 5000 (4 blocks of 25): 1 heterogeneous, 2 homogeneous, 3/4 one
shared spectrum arranged contiguously / interleaved. Every arm (GD, heavy ball, block-wise 1/L_b,
Adam's fixed preconditioner, Adam with beta1 = 0, Adam) tuned to ||g|| <= 1e-6 ||g_0||, SignGD and
Signum to 1e-3; in the block-rotated basis, one global rotation and axis-aligned. Config columns
momentum, precond and basis are the control factors. Full grid: 480 tunings, 6.5 min of CPU
on one core (17 min wall on a shared 2-core machine).

    heterosim sweep experiments/c3_zhang.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C3"   # study, grid, measure and criterion: heterosim.claims.c3_zhang

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
