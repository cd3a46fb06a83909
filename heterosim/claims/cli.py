"""``heterosim claims`` (every claim's verdict from the stored tables) and ``heterosim plot``
(one claim's figure and verdict); ``paper_figs/<study>.py`` scripts call :func:`figure_script`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from heterosim.claims import EXTRA, MODULES, get, verdicts

__all__ = ["claims_main", "plot_main", "figure_script", "cli_main"]


def _claim_arg(text: str) -> str:
    try:
        return get(text).label
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _claims_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="heterosim claims",
        description="Print the verdict of every claim C1-C10 (REPRODUCED, NOT REPRODUCED or UNDECIDED, with "
                    "its statistic, confidence interval and n_reached) from the tables stored under --root. "
                    "A claim with no stored table is UNDECIDED and names the command that stores it.")
    p.add_argument("--root", default="results", help="results folder (default results/)")
    p.add_argument("--quick", action="store_true", help="read the reduced grids' tables (<study>_quick); "
                   "their verdicts are UNDECIDED wherever the budget is below the full run's")
    p.add_argument("--only", nargs="+", type=_claim_arg, metavar="CLAIM", help="only these claims (C1 C3 ...)")
    p.add_argument("--json", action="store_true", help="print the verdicts as a JSON list")
    return p


def claims_main(argv: Sequence[str] | None = None) -> int:
    """``heterosim claims [--root results] [--quick] [--only C1 ...] [--json]``; exit 0."""
    parser = _claims_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not Path(args.root).is_dir():
        parser.error(f"argument --root: {args.root!r} is not a folder; give the results folder the claims "
                     "were run into")
    out = verdicts(args.root, args.quick, args.only)
    if args.json:
        print(json.dumps([v.as_dict() for v in out], indent=1))
    else:
        print("\n\n".join(str(v) for v in out))
    return 0


def _plot_parser(prog: str, default_out: str | None, with_claim: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Draw a claim's figure from its stored results "
                                "(PNG and PDF) and print its verdict.")
    if with_claim:
        p.add_argument("claim", type=_claim_arg,
                       help=f"a claim ({', '.join(MODULES)}) or study name ({', '.join(EXTRA)}, c1_block_scale, ...)")
    p.add_argument("--root", default="results", help="results folder (default results/)")
    p.add_argument("--out", default=default_out,
                   help="figure folder" + (f" (default {default_out})" if default_out else
                                           " (default <root>/<study>/figures)"))
    p.add_argument("--quick", action="store_true", help="use the reduced grid's results (<study>_quick)")
    return p


def _draw(parser: argparse.ArgumentParser, label: str, args) -> int:
    from heterosim import plots
    from heterosim.cli import report_error
    from heterosim.sweep import load
    claim = get(label)
    stored = claim.study + ("_quick" if args.quick else "")
    if not Path(args.root).is_dir():
        parser.error(f"--root {args.root!r} is not a folder; give the results folder the study was run into")
    if not (Path(args.root) / stored).is_dir():
        parser.error(f"no results for {stored!r} under {args.root!r}; run it first ({claim.how_to_run(args.quick)})")
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out!r} is a file; give a folder (it is created if missing)")
    out = args.out or str(Path(args.root) / stored / "figures")
    try:
        table = load(stored, args.root)
        fig = claim.figure(table)
        v = claim.criterion(table)
    except ValueError as e:
        report_error(parser.prog, e)
        return 2
    paths = plots.save(fig, out, claim.study)
    print(f"figure: {', '.join(str(p) for p in paths)}")
    print(v)
    return 0


def plot_main(argv: Sequence[str] | None = None) -> int:
    """``heterosim plot CLAIM [--root results] [--out DIR] [--quick]``."""
    parser = _plot_parser("heterosim plot", None, True)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return _draw(parser, args.claim, args)


def figure_script(claim: str, default_out: str | Path, argv: Sequence[str] | None = None) -> int:
    """What a ``paper_figs/<study>.py`` script runs: read ``results/<study>/``, write
    ``<out>/<study>.png`` and ``.pdf``, print the verdict."""
    c = get(claim)
    parser = _plot_parser(f"paper_figs/{c.study}.py", str(default_out), False)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    return _draw(parser, c.label if c.label in MODULES else claim, args)


cli_main = claims_main
