"""C8: heterogeneity at the start of fine-tuning (gradient-norm spread, block Hessian JS0 and
top-eigenvalue spread) against the tuned SGD-vs-Adam gap, over compact Pre-LN / Post-LN
transformers of several depths (each pretrained briefly on other docstring modules) and,
with --minilm, all-MiniLM-L6-v2.

    python experiments/bridge_c8_gap.py [--tiny] [--minilm]     # CPU grid; --minilm adds MiniLM
    heterosim bridge export-hf --src minilm --dst checkpoints/minilm-fp16    # once, before --size gpu
    python experiments/bridge_c8_gap.py --size gpu               # carries MiniLM as a float16 copy

Stores two tables in the results store: results/bridge_gap/ (one row per model and seed) and
results/bridge_gap_runs/ (every step of the best run per optimizer), under the same config hash.
"""
import sys

from heterosim.bridge.cli import run_experiment

GRIDS = {
    # CPU: small models and a light Hessian probe (each Lanczos step costs one HVP per block and probe)
    "cpu": {"task": "docstrings", "classes": 10, "layers": [1, 2, 4], "lns": ["pre", "post"], "d_model": 32,
            "optimizers": ["sgd", "adam"], "n_lrs": 4, "steps": 300, "pretrain_steps": 400,
            "hessian_batch": 8, "hessian_steps": 10, "probes": 1},
    # H100: 4 compact models (3.6 M parameters at L = 4) and MiniLM (22.6 M), 8 runs each of 600
    # steps (13 ms and 22 ms per step) plus the Hessian measures (about 10 s and 30 s): about
    # 8 minutes; one device command may run 10 minutes.
    "gpu": {"task": "docstrings", "classes": 20, "layers": [2, 4], "lns": ["pre", "post"], "d_model": 256,
            "optimizers": ["sgd", "adam"], "n_lrs": 4, "steps": 600, "pretrain_steps": 1000, "seeds": [0],
            "hessian_batch": 32, "hessian_steps": 20, "probes": 2,
            "device": "cuda", "hf": ["minilm=checkpoints/minilm-fp16"]},
}


if __name__ == "__main__":
    sys.exit(run_experiment("gap", GRIDS, sys.argv[1:]))
