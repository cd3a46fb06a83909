"""C7 along fine-tuning: the gradient-norm spread of Pre-LN and Post-LN compact transformers
(same architecture and init, only the LayerNorm placement differs; each pretrained briefly on
the task's other classes) at every step of Adam fine-tuning, over 3 seeds
(heterosim/claims/c7_ln_spread.py: FINETUNE_GRIDS, finetune_summary, finetune_figure).

    python experiments/bridge_c7_spread_finetune.py [--size gpu] [--tiny]

Stores its table in the results store, results/bridge_spread_finetune/ (one row per step,
placement and seed), and prints the paired Post-minus-Pre spread over the first and the last
tenth of the steps (a description; C7's verdict is decided at initialization).
"""
import sys

from heterosim.bridge.cli import run_experiment
from heterosim.claims import c7_ln_spread as claim

STUDY = claim.FINETUNE_STUDY
GRIDS = claim.FINETUNE_GRIDS


def main(argv) -> int:
    code = run_experiment("spread-finetune", GRIDS, argv)
    if code == 0 and "--help" not in argv and "-h" not in argv:
        from heterosim import sweep
        out = argv[argv.index("--out") + 1] if "--out" in argv else "results"
        print(claim.finetune_summary(sweep.load(STUDY, out)))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
