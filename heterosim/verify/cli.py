r"""``heterosim verify``: run the registry's checks over a suite and print (or return) the table."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Sequence

import numpy as np
import torch

from heterosim.verify.checks import BOUND_NAMES, COLUMNS, REGISTRY, Context, check_gd_blind
from heterosim.verify.harness import FAIL, INCONCLUSIVE
from heterosim.verify.suite import FULL, QUICK, as_cases

__all__ = ["verify", "format_table", "rows_as_json", "cli_main", "summary_line", "EXIT_VIOLATED", "EXIT_INCONCLUSIVE"]

#: Exit status when some bound is violated; when none is but some check was inconclusive.
EXIT_VIOLATED, EXIT_INCONCLUSIVE = 1, 3


def _wanted(only, name) -> bool:
    """A row's bound is selected by ``only`` when one entry is a prefix of its name."""
    return not only or any(name.startswith(o) for o in only)


def _check_only(only):
    only = [str(o) for o in only] if only else None
    bad = [o for o in only or () if not any(n.startswith(o) for n in BOUND_NAMES)]
    if bad:
        raise ValueError(f"unknown bound(s) {bad}; known: {', '.join(BOUND_NAMES)}")
    return only


def _case_rows(case, by_name, budget, only, pep, progress) -> list[dict]:
    ctx = Context(pep=pep, pep_T=budget.pep_T)
    rows = []
    for cname, entry in REGISTRY.items():
        if entry.tag not in case.tags or not any(_wanted(only, n) for n in entry.rows):
            continue
        t1 = time.perf_counter()
        rows += [r for r in entry.check(case, budget, ctx) if _wanted(only, r["bound"])]
        if progress:
            print(f"  {case.name:<18} {cname:<12} {time.perf_counter() - t1:6.2f} s", file=sys.stderr)
    if case.pair and case.pair in by_name and _wanted(only, "Q1-blind"):
        rows += check_gd_blind(case, by_name[case.pair], budget, ctx)
    return rows


def verify(suite="default", seed: int = 0, quick: bool = False, only: Sequence[str] | None = None,
           progress: bool = False, pep: bool = True):
    """Run every bound on every problem of the suite at the prescribed step size.

    Args:
        suite: "default" (:func:`~heterosim.verify.suite.default_suite`) or a list of problems,
            (name, problem) pairs or :class:`~heterosim.verify.suite.Case` objects.
        seed: moves every random draw of the default suite (instances nobody has seen).
        quick: the smaller :data:`~heterosim.verify.suite.QUICK` budget and suite.
        only: check names (keys of :data:`~heterosim.verify.checks.REGISTRY`) or bound-name prefixes.
        pep: add the exact worst case over each bound's function class (PEPit; cached on disk).

    Returns a pandas.DataFrame, one row per (bound, problem), with the columns
    :data:`~heterosim.verify.checks.COLUMNS`: the measurement beside the bound (measured,
    predicted, tightness = measured / predicted, sense), ``status`` (pass / FAIL / INCONCLUSIVE) and
    ``pass`` (True only for pass), the exact worst start on the problem's spectrum
    (``worst_start``), the exact worst case over the function class (``pep_class``, ``pep_T``,
    ``pep_worst``, ``bound_over_pep``, ``pep_iterations``), the paid/charged curvature of per-step
    certificates, and a ``detail``. ``df.attrs["seconds"]`` holds the runtime.
    """
    import pandas as pd
    t0 = time.perf_counter()
    budget = QUICK if quick else FULL
    cases = as_cases(suite, quick, seed)
    by_name = {c.name: c for c in cases}
    only = _check_only(only)
    rows = []
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for case in cases:
            rows += _case_rows(case, by_name, budget, only, pep, progress)
    finally:
        torch.set_num_threads(prev)
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["seconds"] = time.perf_counter() - t0
    df.attrs["budget"] = budget
    return df


def format_table(df, detail: bool = False) -> str:
    """The table as text: bound, problem, optimizer, lr, measured, predicted, tightness, the worst
    start and the PEP worst case beside the bound, status."""
    cols = ["bound", "problem", "optimizer", "lr", "quantity", "measured", "sense", "predicted", "tightness",
            "worst_start", "pep_T", "bound_over_pep", "status"]
    if detail:
        cols += ["pep_class", "pep_worst", "pep_iterations", "paid_over_charged", "detail"]
    view = df[cols].copy()
    fmt = {c: (lambda v: f"{v:.6g}") for c in ("lr", "measured", "predicted", "pep_worst", "pep_iterations")}
    fmt["tightness"] = lambda v: f"{v:.4f}"
    fmt["bound_over_pep"] = lambda v: "-" if v != v else f"{v:.4f}"
    fmt["worst_start"] = lambda v: "-" if v != v else f"{v:g}"
    fmt["pep_T"] = lambda v: "-" if v != v else f"{v:g}"
    fmt["paid_over_charged"] = lambda v: "-" if v != v else f"{v:.3f}"
    return view.to_string(index=False, formatters=fmt, max_colwidth=60)


def _json_safe(v):
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return v


def rows_as_json(df) -> list[dict]:
    """The table as a list of JSON-safe dicts (nan -> null, inf -> "inf"), each with a boolean
    "pass" and a "status" (pass / FAIL / INCONCLUSIVE)."""
    return [{k: _json_safe(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def summary_line(df) -> str:
    """'N checks: P passed, F violated, I inconclusive' (inconclusive runs are not passes)."""
    n_fail, n_inc = int((df["status"] == FAIL).sum()), int((df["status"] == INCONCLUSIVE).sum())
    return f"{len(df)} checks: {len(df) - n_fail - n_inc} passed, {n_fail} violated, {n_inc} inconclusive"


def _parser() -> argparse.ArgumentParser:
    from heterosim.cli import nonneg_int
    parser = argparse.ArgumentParser(
        prog="heterosim verify",
        description=("Check every bound of docs/theory.md (B1-B5, A1, S1-S2, Q1-Q5, Kunstner's closed form, the "
                     "sign-update head growth) against the engine's measurements on a built-in suite of "
                     "problems, at the step size each bound prescribes. Prints one row per (bound, problem) "
                     "with the measured value, the bound, the tightness ratio measured/bound, the exact worst "
                     "start on the problem's spectrum, the exact worst case over the bound's function class "
                     "(PEPit: bound_over_pep) and the status. Exit status 1 if any bound is violated, 3 if "
                     "none is but some run was capped before its bound's count (inconclusive), else 0."))
    parser.add_argument("--quick", action="store_true", help="smaller suite and budgets (about a quarter of the time)")
    parser.add_argument("--seed", type=nonneg_int, default=0,
                        help="seed of every instance of the suite, an integer >= 0 (default 0)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of row dicts (each with a boolean 'pass' and a 'status')")
    parser.add_argument("--only", default="", help="comma-separated bound names or prefixes to run, e.g. "
                        "B1,Q3,S2 (B1 also selects B1')")
    parser.add_argument("--detail", action="store_true", help="add the PEP, curvature and detail columns to the table")
    parser.add_argument("--no-pep", action="store_true", help="skip the exact worst cases by PEP (PEPit)")
    parser.add_argument("--progress", action="store_true", help="print the time of each check to stderr")
    return parser


def cli_main(argv=None) -> int:
    """``heterosim verify [--quick] [--seed S] [--json] [--only B1,Q3] [--detail] [--no-pep]``."""
    parser = _parser()
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    bad = [o for o in only or () if not any(n.startswith(o) for n in BOUND_NAMES)]
    if bad:  # checked here, before the suite is built
        parser.error(f"--only: unknown bound(s) {', '.join(bad)}; known: {', '.join(BOUND_NAMES)}")
    try:
        df = verify(seed=args.seed, quick=args.quick, only=only, progress=args.progress, pep=not args.no_pep)
    except ValueError as e:
        from heterosim.cli import report_error
        report_error(parser.prog, e)
        return 2
    if args.json:
        print(json.dumps(rows_as_json(df), indent=1))
    else:
        print(format_table(df, detail=args.detail))
        print(f"\n{summary_line(df)}; {df.attrs['seconds']:.1f} s ({'quick' if args.quick else 'full'} suite, "
              f"seed {args.seed})")
    if (df["status"] == FAIL).any():
        return EXIT_VIOLATED
    return EXIT_INCONCLUSIVE if (df["status"] == INCONCLUSIVE).any() else 0
