"""Hessian-only vs gradient-only heterogeneity: which one slows tuned GD (docs/theory.md, Constructions).

``hessian_only``: H_b = s_b A_b with the initial error rescaled so that every block has the
same gradient norm at x_0; ``gradient_only``: identical blocks H_b = A, the initial error of
block b scaled by s_b. s_b spreads over ``spread`` decades; T* to f - f* <= 1e-4 (f_0 - f*).

    heterosim sweep experiments/decomposition.py [-j N] [--quick]
"""
import sys

from heterosim import studies, sweep

STUDY = "decomposition"
measure = studies.measure_tuned


def grid(quick: bool = False) -> dict:
    return {
        "problem": ["hessian_only", "gradient_only"],
        "spread": [0.0, 1.0] if quick else [0.0, 1.0, 2.0, 3.0],
        "optimizer": ["sgd", "adam"] if quick else ["sgd", "signsgd", "adam"],
        "seed": [0] if quick else [0, 1, 2],
        "eps": [1e-4], "metric": ["subopt"], "relative": [True],
        "steps": [5_000] if quick else [40_000],
    }


def summarize(table) -> str:
    return str(studies.verdict_decomposition(table))


if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
