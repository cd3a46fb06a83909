"""The ``heterosim`` command."""
from __future__ import annotations

import argparse
import importlib.util
import sys

__all__ = ["main", "build_parser", "dispatch"]


def _cmd_demo(args) -> int:
    from heterosim.demo import run_demo
    optimizers = None
    if args.all_optimizers:
        import heterosim as hs
        optimizers = tuple(n for n in hs.optimizers.names() if n != "gd")  # gd is an alias of sgd
    kw = {"optimizers": optimizers} if optimizers else {}
    table = run_demo(steps=args.steps, n_jobs=args.jobs, root=args.root, force=args.force, **kw)
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"table written to {args.out}")
    return 0


def _cmd_list(args) -> int:
    import heterosim as hs
    print("problems:  ", ", ".join(hs.problems.names()))
    print("optimizers:", ", ".join(hs.optimizers.names()))
    return 0


DELEGATED = {
    "sweep": ("heterosim.sweep", "run an experiment script's grid as a cached, resumable sweep"),
    "plot": ("heterosim.plots", "draw a study's figures from its stored results"),
    "verify": ("heterosim.verify", "check every bound against measured iterations; exits 1 on a violation"),
    "bridge": ("heterosim.bridge.cli", "transformer fine-tuning with the same optimizers and monitors"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heterosim", description=(
        "Gradient and Hessian heterogeneity across parameter blocks, and why Adam beats SGD: "
        "synthetic problems, optimizers written once, measured iteration complexity, bounds."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="the default study: a reduced C1 + C3 + C2 (optimizers tuned on a "
                                    "block-scale sweep and the Zhang cases, bounds on random instances); "
                                    "prints T*(eps) and the verdicts, writes results/demo/ (1-3 min on 2 cores)")
    d.add_argument("--steps", type=int, default=20_000, help="step budget per run (default 20000)")
    d.add_argument("-j", "--jobs", type=int, default=-1, help="worker processes (default: all cores)")
    d.add_argument("--out", default=None, help="also write the table as CSV here")
    d.add_argument("--root", default="results", help="results folder (default results/)")
    d.add_argument("--force", action="store_true", help="recompute instead of reusing stored results")
    d.add_argument("--all-optimizers", action="store_true",
                   help="tune every registered optimizer, not only one representative per family")
    d.set_defaults(func=_cmd_demo)

    ls = sub.add_parser("list", help="list the registered problems and optimizers")
    ls.set_defaults(func=_cmd_list)

    # subcommands whose parser lives with their module (heterosim.<module>.cli_main(argv));
    # listed here for --help, dispatched directly by main()
    for command, (module, text) in DELEGATED.items():
        if importlib.util.find_spec(module) is not None:
            sub.add_parser(command, help=text, add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED and importlib.util.find_spec(DELEGATED[argv[0]][0]) is not None:
        import importlib as _il
        return int(_il.import_module(DELEGATED[argv[0]][0]).cli_main(argv[1:]) or 0)
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv) -> int:
    """Parse ``argv`` and call the chosen subcommand's ``func`` (help when none is chosen);
    shared by every ``heterosim`` subcommand parser."""
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
