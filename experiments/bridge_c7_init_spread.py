"""C7 at initialization: Pre-LN vs Post-LN gradient-norm spread over depth and width, and
the last layer's FFN gradient against Xiong et al. 2020's trend.

    python experiments/bridge_c7_init_spread.py                 # CPU grid (minutes)
    python experiments/bridge_c7_init_spread.py --size gpu      # realistic widths/depths, --device cuda
    python experiments/bridge_c7_init_spread.py --tiny          # smoke run (seconds)

Stores its table in the results store, results/bridge_init_spread/ (one row per placement,
depth, width, seed, init; read it with ``heterosim.sweep.load("bridge_init_spread")``).
Any further option is passed to ``heterosim bridge init-spread`` and overrides the grid;
``--tiny`` uses the command's smoke-run defaults instead of a grid.
"""
import sys

from heterosim.bridge.cli import run_experiment

GRIDS = {
    "cpu": {"depths": [1, 2, 4, 8, 16], "widths": [32, 64, 128, 256], "seeds": [0, 1, 2],
            "inits": ["normal", "xavier"], "task": "digits"},
    # H100: 600 forward/backward passes of one batch, about a minute
    "gpu": {"depths": [1, 2, 4, 8, 16, 32], "widths": [64, 128, 256, 512, 1024], "seeds": [0, 1, 2, 3, 4],
            "inits": ["normal", "xavier"], "task": "docstrings", "device": "cuda"},
}


if __name__ == "__main__":
    sys.exit(run_experiment("init-spread", GRIDS, sys.argv[1:]))
