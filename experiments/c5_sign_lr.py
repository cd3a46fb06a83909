"""C5: SignGD's tuned learning rate against the dimension (docs/theory.md, C5; bound B2).

One block of d coordinates, log-spaced spectrum [1, 10], N(0, I) initial error (curvature
and gradient scale per coordinate fixed as d grows), axis-aligned or Haar-rotated. SignGD's
learning rate is tuned for the fewest steps to metric <= eps; criteria: ||g||_1, ||g||_2 and
f - f*, relative to x_0 (eps_rel 1e-2 for gradients, 1e-4 for f - f*), and ||g||_1 with an
absolute eps (fixed at its d = 16 value). Beside each: B2's eta = eps_1 / L_inf.

    heterosim sweep experiments/c5_sign_lr.py [-j N] [--quick]
"""
import sys

from heterosim import studies, sweep

STUDY = "c5_sign_lr"
measure = studies.measure_sign_lr


def grid(quick: bool = False) -> list:
    ds = [8, 16, 32] if quick else [8, 16, 32, 64, 128, 256]
    seeds = [0] if quick else [0, 1, 2]
    steps = [5_000] if quick else [40_000]
    rel = {"d": ds, "rotate": [False, True], ("metric", "eps_rel"): [("grad_l1", 1e-2)] if quick else
           [("grad_l1", 1e-2), ("grad_l2", 1e-2), ("subopt", 1e-4)], "relative": [True], "seed": seeds,
           "steps": steps}
    if quick:
        return [rel]
    absolute = {"d": ds, "rotate": [False, True], "metric": ["grad_l1"], "eps_rel": [1e-2], "relative": [False],
                "seed": seeds, "steps": steps}
    return [rel, absolute]


def summarize(table) -> str:
    return str(studies.verdict_c5(table))


if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
