"""C10: sign descent against GD step by step, phi(g) against L_inf/(d L_2) (docs/theory.md, C10; B5).

The knob families (block_scale with gamma 0, 1/2, 1; hessian_only; gradient_only), spreads 0-3
decades, rotated and axis-aligned, 4 seeds; along GD and SignGD trajectories at their tuned
constant steps, every step's prediction phi(g_t) > L_inf/(d L_2) against the measured one-step
decreases at B5's steps. The grid, measure and fixed criterion live in
:mod:`heterosim.claims.c10_sign_vs_gd`.

    heterosim sweep experiments/c10_sign_vs_gd.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C10"   # study, grid, measure and criterion: heterosim.claims.c10_sign_vs_gd

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
