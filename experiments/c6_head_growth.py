"""C6: growth of a linear head under sign updates (docs/theory.md, C6).

Softmax regression (h = 32 features with class signal, Zipf class frequencies, 4096 training
and 4096 held-out samples, no ridge) trained at lr 1e-3 for 1500 minibatch steps by SignSGD,
Signum (beta 0.9 and 0.99) and Adam; ||W_t - W_0||_F every 10 steps beside the bound
eta t sqrt(C h), held-out accuracy, NLL and ECE every 150 steps. Grid: C in {10, 100, 1000} x
batch in {8, 32, 128, 512} x feature mean in {0, 1} x seeds 0-2 (288 runs; about 9 minutes of CPU
on one core). The criterion,
its scope and the harm: heterosim/claims/c6_head_growth.py.

    heterosim sweep experiments/c6_head_growth.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C6"   # study, grid, measure and criterion: heterosim.claims.c6_head_growth

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
