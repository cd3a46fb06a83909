"""C7 along fine-tuning: the gradient-norm spread of Pre-LN and Post-LN compact transformers
(same architecture and init, only the LayerNorm placement differs; each pretrained briefly on
the task's other classes) at every step of Adam fine-tuning.

    python experiments/bridge_c7_spread_finetune.py [--size gpu] [--tiny]

Stores its table in the results store, results/bridge_spread_finetune/ (one row per step,
placement and seed; read it with ``heterosim.sweep.load("bridge_spread_finetune")``).
"""
import sys

from heterosim.bridge.cli import run_experiment

GRIDS = {
    "cpu": {"task": "digits", "layers": 4, "d_model": 64, "optimizer": "adam", "lr": 1e-3, "steps": 600,
            "pretrain_steps": 400, "seeds": [0, 1]},
    # H100: about 13 ms per step with the monitors -> about 3 minutes
    "gpu": {"task": "docstrings", "classes": 20, "layers": 8, "d_model": 256, "optimizer": "adam", "lr": 3e-4,
            "steps": 2000, "pretrain_steps": 1000, "seeds": [0, 1], "device": "cuda"},
}


if __name__ == "__main__":
    sys.exit(run_experiment("spread-finetune", GRIDS, sys.argv[1:]))
