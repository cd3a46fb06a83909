"""C6 in a transformer: linear-head growth ||W_t - W_0||_F under SignSGD, Signum, Adam and SGD
for C = 10, 100, 1000 classes, against the sign-method bound eta t sqrt(C h). The compact
model is pretrained briefly on another synthetic task (50 classes, other prototypes), then
fine-tuned on each C-class task with a fresh head.

    python experiments/bridge_c6_head_growth.py [--size gpu] [--tiny] [--feature-mean 0]

Three seeds, as C6's transformer verdict (``heterosim claims``) needs. Stores its table in the results store, results/bridge_head_growth/ (one row per recorded
step, optimizer, C; read it with ``heterosim.sweep.load("bridge_head_growth")``).
"""
import sys

from heterosim.bridge.cli import run_experiment

GRIDS = {
    "cpu": {"classes": [10, 100, 1000], "optimizers": ["signsgd", "signum", "adam", "sgd"],
            "lrs": [1e-3, 1e-3, 1e-3, 1e-1], "layers": 2, "d_model": 32, "steps": 1500, "batch_size": 32,
            "pretrain_steps": 300, "record_every": 10, "seeds": [0, 1, 2]},
    # H100: about 13 ms per step -> 12 runs of 2000 steps in about 6 minutes
    "gpu": {"classes": [10, 100, 1000], "optimizers": ["signsgd", "signum", "adam", "sgd"],
            "lrs": [1e-3, 1e-3, 1e-3, 1e-1], "layers": 4, "d_model": 256, "steps": 2000, "batch_size": 32,
            "pretrain_steps": 1000, "record_every": 10, "seeds": [0, 1, 2], "device": "cuda"},
}


if __name__ == "__main__":
    sys.exit(run_experiment("head-growth", GRIDS, sys.argv[1:]))
