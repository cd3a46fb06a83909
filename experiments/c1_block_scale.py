"""C1: tuned iteration complexity against block-scale heterogeneity (docs/theory.md, C1).

Block quadratics H_b = s_b A_b with s_b spread over ``spread`` decades (8 rotated blocks of
16, within-block condition number 10); block b's initial error scaled by s_b^(-gamma)
(gamma = 0 equal error, 1/2 equal loss, 1 equal gradient norm per block). Each optimizer's
learning rate is tuned for the fewest steps to f - f* <= 1e-4 (f_0 - f*). The verdict
reports the slope of log10 T* against the spread per optimizer and gamma.

    heterosim sweep experiments/c1_block_scale.py [-j N] [--quick]
    python experiments/c1_block_scale.py [-j N] [--quick]
"""
import sys

from heterosim import studies, sweep

STUDY = "c1_block_scale"
measure = studies.measure_tuned


def grid(quick: bool = False) -> dict:
    return {
        "problem": ["block_scale"],
        "gamma": [0.5] if quick else [0.0, 0.5, 1.0],
        "spread": [0.0, 1.0] if quick else [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
        "optimizer": (["sgd", "signsgd", "adam"] if quick else
                      ["sgd", "sgd_momentum", "signsgd", "signum", "adam", "blockwise_gd"]),
        "seed": [0] if quick else [0, 1, 2],
        "eps": [1e-4], "metric": ["subopt"], "relative": [True],
        "steps": [5_000] if quick else [40_000],
    }


def summarize(table) -> str:
    return str(studies.verdict_c1(table))


if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
