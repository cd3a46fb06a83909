"""C4: heavy-tailed class imbalance (docs/theory.md, C4; Kunstner et al. 2024).

Kunstner et al.'s data with m = 8 frequency groups (255 classes, 2048 samples, 2304 uniform
features, no ridge), minibatches of 64, 1000 steps, seeds 0-2: SGD, heavy ball, SignSGD,
Signum and Adam, each over its learning-rate grid; the full-batch loss of every frequency
group at about 60 recorded steps. The criterion compares the rare classes' share of the
loss at equal total loss (heterosim/claims/c4_class_imbalance.py). Full grid: 15 configs,
about 10 minutes of CPU on one core (28 minutes wall on a loaded 2-core machine).

    heterosim sweep experiments/c4_class_imbalance.py [-j N] [--quick]
"""

import sys

from heterosim import sweep

CLAIM = "C4"   # study, grid, measure and criterion: heterosim.claims.c4_class_imbalance

if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
