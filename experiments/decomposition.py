"""Hessian-only vs gradient-only heterogeneity: which one slows tuned GD
(heterosim.claims.decomposition holds the grid, measure, criterion and its history).

``hessian_only``: H_b = s_b A_b with every block's gradient norm equal at x_0; ``gradient_only``:
identical blocks, the initial error of block b scaled by s_b; s_b spread over 0-3 decades. GD,
heavy ball, Adam with beta1 = 0, Adam, SignGD and Signum tuned to f - f* <= 1e-4 (f_0 - f*).
Full grid: 144 tunings, half a minute of CPU on one core.

    heterosim sweep experiments/decomposition.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "decomposition"   # study, grid, measure and criterion: heterosim.claims.decomposition

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
