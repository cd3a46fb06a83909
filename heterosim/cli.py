"""The ``heterosim`` command (also ``python -m heterosim``).

Every subcommand checks its arguments before doing any work: a bad value ends the
command with argparse's usage line and one line saying what was wrong and what is
allowed (exit status 2). A ``ValueError`` that the library raises later, for a
combination only the run can detect, is reported as one line
``heterosim <command>: error: ...`` with exit status 2 too, never as a traceback.
The argument types and :func:`dispatch` below are shared by every subcommand's parser.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "dispatch", "report_error", "CommandError", "positive_int", "nonneg_int",
           "int_at_least", "positive_float", "finite_float", "jobs_int", "check_distinct", "check_out_folder",
           "check_new_file"]


class CommandError(Exception):
    """A failure that a command reports as one line ``<prog>: error: ...`` and exit status ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ argument types
def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None


def int_at_least(low: int, what: str | None = None):
    """An argparse type: an integer >= ``low``."""
    what = what or f"an integer >= {low}"

    def parse(text: str) -> int:
        v = _int(text, what)
        if v < low:
            raise argparse.ArgumentTypeError(f"must be {what}; got {v}")
        return v
    parse.__name__ = f"int >= {low}"   # argparse names the type in "invalid <name> value" messages
    return parse


positive_int = int_at_least(1, "a positive integer (>= 1)")
nonneg_int = int_at_least(0, "a non-negative integer (>= 0)")


def jobs_int(text: str) -> int:
    """An argparse type: worker processes, a positive integer or -1 (all cores)."""
    v = _int(text, "a positive integer or -1 (all cores)")
    if v == 0 or v < -1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or -1 (all cores); got {v}")
    return v


def finite_float(text: str) -> float:
    """An argparse type: a finite real number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}")
    return v


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (learning rates, clipping thresholds)."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text!r}")
    return v


finite_float.__name__ = "finite number"
positive_float.__name__ = "positive number"
jobs_int.__name__ = "worker count"


# ------------------------------------------------------------- checks after parsing
def check_distinct(args, *names: str) -> None:
    """Raise ValueError when a list option repeats a value (``--seeds 0 0``)."""
    for name in names:
        vals = getattr(args, name, None)
        if vals is not None and len(set(vals)) != len(vals):
            raise ValueError(f"--{name.replace('_', '-')} repeats a value ({' '.join(map(str, vals))}); "
                             "give each value once")


def check_out_folder(path, option: str) -> None:
    """Raise ValueError when ``path`` exists and is not a folder (it is created otherwise)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{option} {str(p)!r} is a file; give a folder (it is created if missing)")


def check_new_file(path, option: str) -> None:
    """Raise ValueError unless ``path`` can be written as a file: its folder exists and it is
    not a folder itself."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {str(p)!r} is a folder; give a file name")
    if not p.parent.is_dir():
        raise ValueError(f"{option} {str(p)!r}: the folder {str(p.parent)!r} does not exist")


# ------------------------------------------------------------------------ commands
#: The demo's smallest step budget: below about 100 steps no optimizer reaches the C1 and C3
#: targets, so the T* table is empty and the figures have nothing to draw (checked: 10 steps
#: fail in the figure, 100 steps give every table and figure).
MIN_DEMO_STEPS = 100


def _validate_demo(args) -> None:
    if args.steps < MIN_DEMO_STEPS:
        raise ValueError(f"argument --steps: must be an integer >= {MIN_DEMO_STEPS} (below it no optimizer "
                         f"reaches the demo's targets and there is nothing to tabulate); got {args.steps}")
    check_out_folder(args.root, "--root")
    if args.out is not None:
        check_new_file(args.out, "--out")


def _cmd_demo(args) -> int:
    from heterosim.demo import run_demo
    optimizers = None
    if args.all_optimizers:
        import heterosim as hs
        from heterosim.demo import DEMO_ARMS
        # the matched-pair arms first (adam_beta1_0 is an arm, not a registry name), then every
        # other registered rule; gd is an alias of sgd
        optimizers = DEMO_ARMS + tuple(n for n in hs.optimizers.names() if n != "gd" and n not in DEMO_ARMS)
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
    "claims": ("heterosim.claims.cli", "print every claim's verdict (C1-C10) from the stored results"),
    "plot": ("heterosim.claims.cli:plot_main", "draw a claim's figure from its stored results and print its verdict"),
    "verify": ("heterosim.verify", "check every bound against measured iterations; exits 1 on a violation"),
    "bridge": ("heterosim.bridge.cli", "transformer fine-tuning with the same optimizers and monitors"),
}


def _version() -> str:
    import heterosim
    return f"heterosim {heterosim.__version__}"


def _cmd_kernels(args) -> int:
    import time
    from heterosim import _native
    from heterosim.optimizers import fused
    t0 = time.perf_counter()
    if _native.lib() is None:
        print(f"the C kernels are off: {_native.why_off()}")
        return 1
    print(f"oracle kernels: built or loaded in {time.perf_counter() - t0:.2f} s ({' '.join(_native.lib().flags)})")
    rows = fused.prebuild()
    for r in rows:
        state = "reproduces its chain" if r["ok"] else "does NOT reproduce its chain: not used"
        print(f"  {r['rule']:60s} {r['seconds']:6.2f} s  {state}")
    print(f"{len(rows)} fused steps, {time.perf_counter() - t0:.1f} s in all")
    return 0 if all(r["ok"] for r in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="heterosim", description=(
        "Gradient and Hessian heterogeneity across parameter blocks, and why Adam beats SGD: "
        "synthetic problems, optimizers written once, measured iteration complexity, bounds."))
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="the default study: a reduced C1 + C3 + C2 (optimizers tuned on a "
                                    "block-scale sweep and the Zhang cases, bounds on random instances); "
                                    "prints T*(eps) and the verdicts, writes <root>/demo/ (1-3 min on 2 cores)",
                       description="The default study: a reduced C1 + C3 + C2. Prints the tuned T*(eps) per "
                                   "optimizer and problem and the verdicts; writes <root>/demo/table.csv and "
                                   "<root>/demo/figures/. A second run reuses the stored results.")
    d.add_argument("--steps", type=positive_int, default=20_000,
                   help=f"step budget per run, at least {MIN_DEMO_STEPS} (default 20000)")
    d.add_argument("-j", "--jobs", type=jobs_int, default=-1, help="worker processes (default -1: all cores)")
    d.add_argument("--out", default=None, help="also write the table as CSV to this file (its folder must exist)")
    d.add_argument("--root", default="results", help="results folder (default results/)")
    d.add_argument("--force", action="store_true", help="recompute instead of reusing stored results")
    d.add_argument("--all-optimizers", action="store_true",
                   help="tune every registered optimizer, not only one representative per family")
    d.set_defaults(func=_cmd_demo, validate=_validate_demo, _parser=d)

    k = sub.add_parser("kernels", help="build the C kernels ahead of time (the oracles and every registered rule's "
                                       "fused step) into the private cache, so that no sweep waits for a compiler",
                       description="Build the C kernels of heterosim._native and the fused step of every registered "
                                   "elementwise rule (each structure of its hyperparameters) into the kernel cache "
                                   "($HETEROSIM_CACHE or ~/.cache/heterosim/native), and check each step against its "
                                   "rule. Exit status 1 where the kernels cannot be built (the reason is printed; "
                                   "the engine then runs its torch path, with the same results).")
    k.set_defaults(func=_cmd_kernels, _parser=k)

    ls = sub.add_parser("list", help="list the registered problems and optimizers")
    ls.set_defaults(func=_cmd_list, _parser=ls)

    # subcommands whose parser lives with their module ("module" runs module.cli_main(argv),
    # "module:func" runs module.func(argv));
    # listed here for --help, dispatched directly by main()
    for command, (target, text) in DELEGATED.items():
        if importlib.util.find_spec(target.split(":")[0]) is not None:
            sub.add_parser(command, help=text, add_help=False)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module, _, func = DELEGATED[argv[0]][0].partition(":")
        if importlib.util.find_spec(module) is not None:
            import importlib as _il
            return int(getattr(_il.import_module(module), func or "cli_main")(argv[1:]) or 0)
    return dispatch(build_parser(), argv)


def dispatch(parser: argparse.ArgumentParser, argv) -> int:
    """Parse ``argv`` and run the chosen subcommand (help when none is chosen); shared by
    every ``heterosim`` subcommand parser.

    A subcommand's parser sets the defaults ``func`` (the command), ``_parser`` (itself, for
    its usage line) and optionally ``validate(args)``, which checks and completes the parsed
    arguments before any work: a ValueError there is reported by ``_parser.error`` (usage and
    one line, exit 2). A ValueError raised by ``func`` is reported as one line
    ``<prog>: error: ...`` on stderr and gives exit status 2; a :class:`CommandError`
    likewise, with its own status."""
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    sub = getattr(args, "_parser", parser)
    validate = getattr(args, "validate", None)
    if validate is not None:
        try:
            validate(args)
        except ValueError as e:
            sub.error(str(e))
    try:
        return int(args.func(args) or 0)
    except CommandError as e:
        report_error(sub.prog, e)
        return e.code
    except ValueError as e:
        report_error(sub.prog, e)
        return 2


def report_error(prog: str, error) -> None:
    """Print ``<prog>: error: <message>`` as one line on stderr."""
    msg = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {msg}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
