"""C2: every measured T(eps) against its bound, over random block quadratics (docs/theory.md, C2).

Each instance (2-6 blocks of 2-12 coordinates, random scales, condition numbers, rotations
and initial errors; :func:`heterosim.studies.random_instance`) runs GD, SignGD, steepest
l_inf descent, block-wise GD, the fixed Adam preconditioner and noisy SGD at the steps their
bounds prescribe (B1-B5, Q1-Q3, S1); rows hold measured T, the bound and measured/bound.

    heterosim sweep experiments/c2_bound_tightness.py [-j N] [--quick]
"""
import sys

from heterosim import studies, sweep

STUDY = "c2_bound_tightness"
measure = studies.measure_bounds


def grid(quick: bool = False) -> dict:
    return {
        "instance": [8] if quick else list(range(32)),
        "eps_rel": [0.1],
        "sigma_rel": [0.3],
    }


def summarize(table) -> str:
    return str(studies.verdict_c2(table))


if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
