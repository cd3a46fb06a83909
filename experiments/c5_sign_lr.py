"""C5: SignGD's tuned learning rate against the dimension (docs/theory.md, C5; bound B2).

One block of d coordinates (log-spaced spectrum [1, 10], N(0, I) initial error), axis-aligned
or Haar-rotated, d = 8..256, 8 seeds; SignGD's lr tuned for the fewest steps to ||g||_1, ||g||_2
or f - f* <= eps (relative, and ||g||_1 absolute), beside B2's eta = eps_1 / L_inf. The grid,
measure and fixed criterion live in :mod:`heterosim.claims.c5_sign_lr`. About 2 minutes on one core.

    heterosim sweep experiments/c5_sign_lr.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C5"   # study, grid, measure and criterion: heterosim.claims.c5_sign_lr

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
