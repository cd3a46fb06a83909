"""C1: tuned iteration complexity against block-scale spread, read through momentum-matched
pairs (heterosim.claims.c1_block_scale holds the grid, measure, criterion and its history).

Block quadratics H_b = s_b A_b, s_b spread over 0-3 decades (8 rotated blocks of 16), block b's
initial error scaled by s_b^(-gamma); every arm (GD, heavy ball, block-wise 1/L_b, Adam's fixed
preconditioner, Adam with beta1 = 0, Adam, SignGD, Signum) tuned for the fewest steps to
f - f* <= 1e-4 (f_0 - f*); the basis controls (one global rotation, axis-aligned) at gamma = 1/2.
Config columns momentum, precond and basis are the control factors. Full grid: 756 tunings,
3.4 min of CPU on one core (11 min wall on a shared 2-core machine).

    heterosim sweep experiments/c1_block_scale.py [-j N] [--quick]
    python experiments/c1_block_scale.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C1"   # study, grid, measure and criterion: heterosim.claims.c1_block_scale

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
