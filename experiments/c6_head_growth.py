"""C6: growth of a linear head under sign-based updates (docs/theory.md, C6).

Softmax regression (h = 32 features, Zipf class frequencies, 4096 samples, no ridge) trained
with minibatches at lr 1e-3 for 1500 steps by SignSGD, Signum (beta 0.9 and 0.99) and Adam;
||W_t - W_0||_F every 10 steps beside the bound eta t sqrt(C h). Grid: C in {10, 100, 1000}
with features N(0, I) and N(1, I) at batch 32, and the batch size at C = 100.

    heterosim sweep experiments/c6_head_growth.py [-j N] [--quick]
"""
import sys

from heterosim import studies, sweep

STUDY = "c6_head_growth"
measure = studies.measure_head_growth
OPTIMIZERS = [("signsgd", None), ("signum", 0.9), ("signum", 0.99), ("adam", None)]


def grid(quick: bool = False) -> list:
    common = {"h": [32], "alpha": [1.0], "lr": [1e-3], "every": [10], "seed": [0]}
    if quick:
        return [{"C": [10, 50], "batch_size": [16], "feature_mean": [1.0],
                 ("optimizer", "beta"): [("signsgd", None), ("signum", 0.9), ("adam", None)],
                 "n": [512], "steps": [100], **common}]
    by_classes = {"C": [10, 100, 1000], "batch_size": [32], "feature_mean": [0.0, 1.0],
                  ("optimizer", "beta"): OPTIMIZERS, "n": [4096], "steps": [1500], **common}
    by_batch = {"C": [100], "batch_size": [8, 128, 512], "feature_mean": [1.0],
                ("optimizer", "beta"): OPTIMIZERS, "n": [4096], "steps": [1500], **common}
    return [by_classes, by_batch]


def summarize(table) -> str:
    return str(studies.verdict_c6(table))


if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
