"""C9: which quantity predicts the GD/Adam gap on block-diagonal quadratics (docs/theory.md, C9).

144 instances of d = 100 (4 rotated blocks of 25, kappa 5000), from heterogeneous to homogeneous
by partial swaps of eigenvalues across blocks; per instance the tuned T* (f - f* <= 1e-6 f_0) of
GD, Adam with beta1 = 0 (the primary, preconditioning-only pair), heavy ball and Adam, and six
predictors (JS0 on log eigenvalues, kappa*, max_b kappa_b, kappa of Adam's first preconditioned
Hessian, rho_H, ||H||_11/(d L_2)). The grid, measure and fixed criterion live in
:mod:`heterosim.claims.c9_zhang_mechanism`.

    heterosim sweep experiments/c9_zhang_mechanism.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C9"   # study, grid, measure and criterion: heterosim.claims.c9_zhang_mechanism

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
