"""C7 at initialization: Pre-LN vs Post-LN gradient-norm spread over depth, width, init and seed,
and the last layer's FFN gradient against Xiong et al. 2020's depth and width trends
(heterosim/claims/c7_ln_spread.py holds the grid, the fixed criterion and the figure).

    python experiments/bridge_c7_init_spread.py                 # full CPU grid (about a minute), then the verdict
    python experiments/bridge_c7_init_spread.py --size gpu      # wider and deeper, --device cuda
    python experiments/bridge_c7_init_spread.py --tiny          # smoke run (seconds; its verdict is UNDECIDED)

Stores its table in the results store, results/bridge_init_spread/ (one row per placement,
depth, width, seed, init); any further option goes to ``heterosim bridge init-spread`` and
overrides the grid. ``heterosim claims --only C7`` prints the verdict again from the store.
"""
import sys

from heterosim.bridge.cli import run_experiment
from heterosim.claims import c7_ln_spread as claim

STUDY = claim.STUDY
GRIDS = claim.GRIDS


def summarize(table, size: str = "cpu") -> str:
    return str(claim.criterion(table, size))


def main(argv) -> int:
    code = run_experiment("init-spread", GRIDS, argv)
    if code == 0 and "--tiny" not in argv and "--help" not in argv and "-h" not in argv:
        from heterosim import sweep
        out = argv[argv.index("--out") + 1] if "--out" in argv else "results"
        size = argv[argv.index("--size") + 1] if "--size" in argv else "cpu"
        print(summarize(sweep.load(STUDY, out), size))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
