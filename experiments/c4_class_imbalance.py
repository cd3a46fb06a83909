"""C4: class imbalance and per-class losses (docs/theory.md, C4; Kunstner et al. 2024).

Part "diag": Kunstner's model f(W) = sum_k pi_k 1/2 ||w_k||^2 (Zipf frequencies), GD and
SignGD per-class losses every step beside their closed forms. Part "softmax": the
heavy-tailed softmax data of Kunstner et al. (m = 5: 31 classes, 160 samples, 192 uniform [0, 1)
features; ridge 1e-3, without which the separable data let huge steps drive every loss to 0), full batch,
the mean loss of each frequency group at log-spaced steps for GD, SignGD, Signum and Adam, each
at its best learning rate on a grid, and GD at the descent-lemma step 1/L_2.

    heterosim sweep experiments/c4_class_imbalance.py [-j N] [--quick]
"""
import sys

from heterosim import studies, sweep

STUDY = "c4_class_imbalance"
measure = studies.measure_class_imbalance


def grid(quick: bool = False) -> list:
    diag = {"part": ["diag"], "n_classes": [8] if quick else [16], "h": [4], "alpha": [1.0],
            "optimizer": ["sgd", "signsgd"], "steps": [100] if quick else [400],
            "lr_scale": [0.5], "sign_lr": [0.01]}
    softmax = {"part": ["softmax"], "m": [3] if quick else [5],
               "optimizer": ["sgd", "signsgd", "adam"] if quick else ["sgd", "signsgd", "signum", "adam"],
               "lr_rule": ["tuned"], "steps": [100] if quick else [1500], "ridge": [1e-3], "seed": [0]}
    gd_theory = dict(softmax, optimizer=["sgd"], lr_rule=["1/L"])
    return [diag, softmax, gd_theory]


def summarize(table) -> str:
    return str(studies.verdict_c4(table))


if __name__ == "__main__":
    sys.exit(sweep.script_main(__file__))
